-- The warehouse contract (docs/warehouse.md), applied idempotently by shared.warehouse.apply_schema.
-- Star tables in schema public; bookkeeping columns prefixed etl_; bookkeeping tables in schema etl.
CREATE SCHEMA IF NOT EXISTS etl;

CREATE TABLE IF NOT EXISTS dim_date (
    date_id date PRIMARY KEY,
    year integer NOT NULL,
    month integer NOT NULL,
    day integer NOT NULL,
    day_of_week integer NOT NULL,
    day_name varchar NOT NULL,
    month_name varchar NOT NULL,
    quarter integer NOT NULL
);

-- Dimensions (SCD type 1). etl_source_updated + etl_run_id order versions so that runs loaded out of
-- order never put an older value over a newer one.
CREATE TABLE IF NOT EXISTS dim_staff (
    staff_id integer PRIMARY KEY,
    first_name varchar NOT NULL,
    last_name varchar NOT NULL,
    department_name varchar NOT NULL,
    location varchar NOT NULL,
    email_address varchar NOT NULL,
    etl_source_updated timestamp(3) NOT NULL,
    etl_run_id varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_location (
    location_id integer PRIMARY KEY,
    address_line_1 varchar NOT NULL,
    address_line_2 varchar,
    district varchar,
    city varchar NOT NULL,
    postal_code varchar NOT NULL,
    country varchar NOT NULL,
    phone varchar NOT NULL,
    etl_source_updated timestamp(3) NOT NULL,
    etl_run_id varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_currency (
    currency_id integer PRIMARY KEY,
    currency_code varchar NOT NULL,
    currency_name varchar NOT NULL,
    etl_source_updated timestamp(3) NOT NULL,
    etl_run_id varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_design (
    design_id integer PRIMARY KEY,
    design_name varchar NOT NULL,
    file_location varchar NOT NULL,
    file_name varchar NOT NULL,
    etl_source_updated timestamp(3) NOT NULL,
    etl_run_id varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_counterparty (
    counterparty_id integer PRIMARY KEY,
    counterparty_legal_name varchar NOT NULL,
    counterparty_legal_address_line_1 varchar NOT NULL,
    counterparty_legal_address_line2 varchar,
    counterparty_legal_district varchar,
    counterparty_legal_city varchar NOT NULL,
    counterparty_legal_postal_code varchar NOT NULL,
    counterparty_legal_country varchar NOT NULL,
    counterparty_legal_phone_number varchar NOT NULL,
    etl_source_updated timestamp(3) NOT NULL,
    etl_run_id varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_payment_type (
    payment_type_id integer PRIMARY KEY,
    payment_type_name varchar NOT NULL,
    etl_source_updated timestamp(3) NOT NULL,
    etl_run_id varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_transaction (
    transaction_id integer PRIMARY KEY,
    transaction_type varchar NOT NULL,
    sales_order_id integer,
    purchase_order_id integer,
    etl_source_updated timestamp(3) NOT NULL,
    etl_run_id varchar NOT NULL
);

-- Facts: full history, one row per distinct version; etl_row_hash identifies a version by content.
CREATE TABLE IF NOT EXISTS fact_sales_order (
    sales_record_id serial PRIMARY KEY,
    sales_order_id integer NOT NULL,
    created_date date NOT NULL REFERENCES dim_date (date_id),
    created_time time(3) NOT NULL,
    last_updated_date date NOT NULL REFERENCES dim_date (date_id),
    last_updated_time time(3) NOT NULL,
    sales_staff_id integer NOT NULL REFERENCES dim_staff (staff_id),
    counterparty_id integer NOT NULL REFERENCES dim_counterparty (counterparty_id),
    units_sold integer NOT NULL,
    unit_price numeric(10, 2) NOT NULL,
    currency_id integer NOT NULL REFERENCES dim_currency (currency_id),
    design_id integer NOT NULL REFERENCES dim_design (design_id),
    agreed_payment_date date NOT NULL REFERENCES dim_date (date_id),
    agreed_delivery_date date NOT NULL REFERENCES dim_date (date_id),
    agreed_delivery_location_id integer NOT NULL REFERENCES dim_location (location_id),
    etl_row_hash varchar NOT NULL,
    etl_run_id varchar NOT NULL,
    etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fact_sales_order_version_key UNIQUE (sales_order_id, etl_row_hash)
);

CREATE TABLE IF NOT EXISTS fact_purchase_order (
    purchase_record_id serial PRIMARY KEY,
    purchase_order_id integer NOT NULL,
    created_date date NOT NULL REFERENCES dim_date (date_id),
    created_time time(3) NOT NULL,
    last_updated_date date NOT NULL REFERENCES dim_date (date_id),
    last_updated_time time(3) NOT NULL,
    staff_id integer NOT NULL REFERENCES dim_staff (staff_id),
    counterparty_id integer NOT NULL REFERENCES dim_counterparty (counterparty_id),
    item_code varchar NOT NULL,
    item_quantity integer NOT NULL,
    item_unit_price numeric(10, 2) NOT NULL,
    currency_id integer NOT NULL REFERENCES dim_currency (currency_id),
    agreed_delivery_date date NOT NULL REFERENCES dim_date (date_id),
    agreed_payment_date date NOT NULL REFERENCES dim_date (date_id),
    agreed_delivery_location_id integer NOT NULL REFERENCES dim_location (location_id),
    etl_row_hash varchar NOT NULL,
    etl_run_id varchar NOT NULL,
    etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fact_purchase_order_version_key UNIQUE (purchase_order_id, etl_row_hash)
);

CREATE TABLE IF NOT EXISTS fact_payment (
    payment_record_id serial PRIMARY KEY,
    payment_id integer NOT NULL,
    created_date date NOT NULL REFERENCES dim_date (date_id),
    created_time time(3) NOT NULL,
    last_updated_date date NOT NULL REFERENCES dim_date (date_id),
    last_updated time(3) NOT NULL,
    transaction_id integer NOT NULL REFERENCES dim_transaction (transaction_id),
    counterparty_id integer NOT NULL REFERENCES dim_counterparty (counterparty_id),
    payment_amount numeric(10, 2) NOT NULL,
    currency_id integer NOT NULL REFERENCES dim_currency (currency_id),
    payment_type_id integer NOT NULL REFERENCES dim_payment_type (payment_type_id),
    paid boolean NOT NULL,
    payment_date date NOT NULL REFERENCES dim_date (date_id),
    etl_row_hash varchar NOT NULL,
    etl_run_id varchar NOT NULL,
    etl_loaded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fact_payment_version_key UNIQUE (payment_id, etl_row_hash)
);

-- The run ledger: a run recorded here has been loaded whole; a second delivery is a no-op.
CREATE TABLE IF NOT EXISTS etl.load_run (
    run_id varchar PRIMARY KEY,
    extracted_at timestamptz,
    source_max_updated timestamp(3),
    loaded_at timestamptz NOT NULL DEFAULT now(),
    row_counts jsonb NOT NULL,
    timings jsonb NOT NULL
);

-- Which version of this script a warehouse has (sha256 of its text): the load applies the DDL only when
-- it changed, so it does not take CREATE OR REPLACE VIEW's exclusive lock on every load.
CREATE TABLE IF NOT EXISTS etl.schema_applied (
    sha256 varchar PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Deletes (docs/warehouse.md): nothing is removed; the current rows of a row deleted in the source get the
-- time of the run that saw the deletion. Added by ALTER so that warehouses created before it gain the column.
ALTER TABLE dim_staff ADD COLUMN IF NOT EXISTS etl_deleted_at timestamptz;
ALTER TABLE dim_location ADD COLUMN IF NOT EXISTS etl_deleted_at timestamptz;
ALTER TABLE dim_currency ADD COLUMN IF NOT EXISTS etl_deleted_at timestamptz;
ALTER TABLE dim_design ADD COLUMN IF NOT EXISTS etl_deleted_at timestamptz;
ALTER TABLE dim_counterparty ADD COLUMN IF NOT EXISTS etl_deleted_at timestamptz;
ALTER TABLE dim_payment_type ADD COLUMN IF NOT EXISTS etl_deleted_at timestamptz;
ALTER TABLE dim_transaction ADD COLUMN IF NOT EXISTS etl_deleted_at timestamptz;
ALTER TABLE fact_sales_order ADD COLUMN IF NOT EXISTS etl_deleted_at timestamptz;
ALTER TABLE fact_purchase_order ADD COLUMN IF NOT EXISTS etl_deleted_at timestamptz;
ALTER TABLE fact_payment ADD COLUMN IF NOT EXISTS etl_deleted_at timestamptz;
-- Analysts' views: the current version of each order and payment, left out once deleted in the source.
CREATE OR REPLACE VIEW current_sales_order AS
SELECT * FROM (
    SELECT DISTINCT ON (sales_order_id) *
    FROM fact_sales_order
    ORDER BY sales_order_id, last_updated_date DESC, last_updated_time DESC, sales_record_id DESC
) AS v WHERE etl_deleted_at IS NULL;
CREATE OR REPLACE VIEW current_purchase_order AS
SELECT * FROM (
    SELECT DISTINCT ON (purchase_order_id) *
    FROM fact_purchase_order
    ORDER BY purchase_order_id, last_updated_date DESC, last_updated_time DESC, purchase_record_id DESC
) AS v WHERE etl_deleted_at IS NULL;
CREATE OR REPLACE VIEW current_payment AS
SELECT * FROM (
    SELECT DISTINCT ON (payment_id) *
    FROM fact_payment
    ORDER BY payment_id, last_updated_date DESC, last_updated DESC, payment_record_id DESC
) AS v WHERE etl_deleted_at IS NULL;
