-- Analysts' views: what the dashboard (shared/dashboard) shows, and what Power BI can point at.
-- Applied right after schema.sql (shared.warehouse.schema_sql). Rules every view keeps:
--   * facts are their current versions only (the current_* views of schema.sql);
--   * an amount always comes with its currency_code and is never summed across currencies;
--   * dates are the warehouse's own (dim_date), months as the first day of the month.

-- One row per current sales order, with the names the charts group by; revenue = units_sold * unit_price.
CREATE OR REPLACE VIEW sales_order_detail AS
SELECT
    s.sales_order_id,
    s.created_date,
    date_trunc('month', s.created_date)::date AS created_month,
    c.currency_code,
    s.units_sold,
    s.unit_price,
    s.units_sold * s.unit_price AS revenue,
    s.design_id,
    d.design_name,
    s.counterparty_id,
    cp.counterparty_legal_name,
    s.agreed_delivery_location_id AS delivery_location_id,
    l.city AS delivery_city,
    l.country AS delivery_country,
    s.sales_staff_id AS staff_id,
    st.first_name || ' ' || st.last_name AS staff_name,
    st.department_name,
    s.agreed_payment_date,
    s.agreed_delivery_date
FROM current_sales_order s
JOIN dim_currency c USING (currency_id)
JOIN dim_design d USING (design_id)
JOIN dim_counterparty cp USING (counterparty_id)
JOIN dim_location l ON l.location_id = s.agreed_delivery_location_id
JOIN dim_staff st ON st.staff_id = s.sales_staff_id;

-- One row per current purchase order; spend = item_quantity * item_unit_price, supplier = counterparty.
CREATE OR REPLACE VIEW purchase_order_detail AS
SELECT
    p.purchase_order_id,
    p.created_date,
    date_trunc('month', p.created_date)::date AS created_month,
    c.currency_code,
    p.item_code,
    p.item_quantity,
    p.item_unit_price,
    p.item_quantity * p.item_unit_price AS spend,
    p.counterparty_id,
    cp.counterparty_legal_name AS supplier_name,
    p.staff_id,
    p.agreed_payment_date,
    p.agreed_delivery_date
FROM current_purchase_order p
JOIN dim_currency c USING (currency_id)
JOIN dim_counterparty cp USING (counterparty_id);

-- One row per current payment, with the agreed payment date of the order it settles (through
-- dim_transaction) and, while unpaid, how many days it is past that date (0 when not yet due).
CREATE OR REPLACE VIEW payment_detail AS
SELECT
    p.payment_id,
    p.created_date,
    p.payment_date,
    date_trunc('month', p.payment_date)::date AS payment_month,
    c.currency_code,
    pt.payment_type_name,
    t.transaction_type,
    p.paid,
    p.payment_amount,
    p.counterparty_id,
    coalesce(so.agreed_payment_date, po.agreed_payment_date, p.payment_date) AS agreed_payment_date,
    CASE
        WHEN p.paid THEN 0
        ELSE greatest(current_date - coalesce(so.agreed_payment_date, po.agreed_payment_date, p.payment_date), 0)
    END AS days_overdue
FROM current_payment p
JOIN dim_currency c USING (currency_id)
JOIN dim_payment_type pt USING (payment_type_id)
JOIN dim_transaction t USING (transaction_id)
LEFT JOIN current_sales_order so ON so.sales_order_id = t.sales_order_id
LEFT JOIN current_purchase_order po ON po.purchase_order_id = t.purchase_order_id;

-- The pipeline's runs from the ledger: one row per loaded run, rows per table unnested, and the lag
-- from the newest source change it carried to its commit in the warehouse.
CREATE OR REPLACE VIEW pipeline_run AS
SELECT
    r.run_id,
    r.extracted_at,
    r.source_max_updated,
    r.loaded_at,
    (r.timings ->> 'total')::float8 AS load_seconds,
    extract(epoch FROM r.loaded_at - (r.source_max_updated AT TIME ZONE 'UTC'))::float8 AS lag_seconds,
    coalesce((SELECT sum(value::bigint) FROM jsonb_each_text(r.row_counts)), 0)::bigint AS total_rows
FROM etl.load_run r;

CREATE OR REPLACE VIEW pipeline_run_rows AS
SELECT r.run_id, r.loaded_at, c.key AS table_name, c.value::bigint AS row_count
FROM etl.load_run r
CROSS JOIN LATERAL jsonb_each_text(r.row_counts) c;

-- Freshness now: the newest source change in the warehouse and how old it is, the last load, runs.
CREATE OR REPLACE VIEW pipeline_freshness AS
SELECT
    max(source_max_updated) AS newest_source_change,
    max(loaded_at) AS last_loaded_at,
    extract(epoch FROM now() - (max(source_max_updated) AT TIME ZONE 'UTC'))::float8 AS freshness_lag_seconds,
    extract(epoch FROM now() - max(loaded_at))::float8 AS since_last_load_seconds,
    count(*) AS runs_loaded
FROM etl.load_run;
