"""Every figure of the dashboard as one SQL query over the analysts' views (shared/warehouse/views.sql).

The queries only filter, group and rank what the views define (current fact versions, amounts with
their currency), and always group by currency_code: no amount is ever summed across currencies.
The browser test runs the same views directly to check what the pages show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

import psycopg

Page = Literal["sales", "purchases", "payments", "pipeline"]
PAGES: tuple[Page, ...] = ("sales", "purchases", "payments", "pipeline")
TITLES: dict[Page, str] = {
    "sales": "Sales",
    "purchases": "Purchases",
    "payments": "Payments",
    "pipeline": "Pipeline health",
}
TOP_N = 10
RECENT_RUNS = 200


@dataclass(frozen=True)
class Filters:
    """The sidebar's filters: an inclusive date range and the currencies shown."""

    start: date
    end: date
    currencies: tuple[str, ...]
    # The first and last date of dim_date: a range that covers them reads the load's summary tables.
    span: tuple[date, date] | None = None
    use_summaries: bool = True  # False reads the facts whatever the range (the tests compare both)

    @property
    def whole_range(self) -> bool:
        """Whether the range holds every date of the warehouse (no date filter in effect)."""
        return self.span is not None and self.start <= self.span[0] and self.end >= self.span[1]

    def params(self) -> dict[str, object]:
        """The filters as query parameters."""
        return {
            "start": self.start,
            "end": self.end,
            "currencies": list(self.currencies),
            "top": TOP_N,
            "recent": RECENT_RUNS,
        }


def default_filters(conn: psycopg.Connection) -> Filters:
    """Every date dim_date holds and every currency: what a page shows before any filter is set."""
    row = conn.execute("SELECT min(date_id), max(date_id) FROM dim_date").fetchone()
    today = date.today()
    start, end = (row[0], row[1]) if row and row[0] else (today, today)
    currencies = tuple(r[0] for r in conn.execute("SELECT DISTINCT currency_code FROM dim_currency ORDER BY 1"))
    return Filters(start=start, end=end, currencies=currencies, span=(start, end))


# One query per star page: every figure of the page in one pass over the current facts (GROUPING SETS
# on ids, names looked up for the few rows kept), one row per (figure, currency, label[, detail]) with
# generic measures amount, amount_2, amount_3, n, n_2; `rank` orders a figure's rows by amount within a
# currency and the top lists keep TOP_N. Labels carry the id where names repeat (designs, staff, ...).

_SALES = """
WITH grouped AS (
    SELECT CASE WHEN GROUPING(created_month) = 0 THEN 'by_month' WHEN GROUPING(design_id) = 0 THEN 'top_designs'
                WHEN GROUPING(counterparty_id) = 0 THEN 'top_counterparties'
                WHEN GROUPING(delivery_location_id) = 0 THEN 'by_location'
                WHEN GROUPING(staff_id) = 0 THEN 'top_staff' ELSE 'totals' END AS figure,
           currency_code, created_month, design_id, counterparty_id, delivery_location_id, staff_id,
           sum(revenue) AS amount, count(*) AS n, sum(units_sold) AS n_2
    FROM sales_order_amount WHERE created_date BETWEEN %(start)s AND %(end)s AND currency_code = ANY(%(currencies)s)
    GROUP BY GROUPING SETS ((currency_code), (currency_code, created_month), (currency_code, design_id),
        (currency_code, counterparty_id), (currency_code, delivery_location_id), (currency_code, staff_id))
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY figure, currency_code ORDER BY amount DESC,
        coalesce(design_id, counterparty_id, staff_id)) AS rank
    FROM grouped WHERE figure <> 'by_location'
)
SELECT figure, currency_code,
       coalesce(created_month::text, d.design_name || ' #' || r.design_id,
                cp.counterparty_legal_name || ' #' || r.counterparty_id,
                st.first_name || ' ' || st.last_name || ' #' || r.staff_id) AS label,
       NULL AS detail, amount, NULL::numeric AS amount_2, NULL::numeric AS amount_3, n, n_2,
       CASE WHEN figure LIKE 'top%%' THEN rank END AS rank
FROM ranked r
LEFT JOIN dim_design d ON d.design_id = r.design_id
LEFT JOIN dim_counterparty cp ON cp.counterparty_id = r.counterparty_id
LEFT JOIN dim_staff st ON st.staff_id = r.staff_id
WHERE (rank <= %(top)s OR figure NOT LIKE 'top%%')
UNION ALL
SELECT 'by_location', currency_code, l.country, l.city, sum(amount), NULL, NULL, sum(n), sum(n_2), NULL
FROM grouped g JOIN dim_location l ON l.location_id = g.delivery_location_id
WHERE figure = 'by_location'
GROUP BY currency_code, l.country, l.city
ORDER BY figure, currency_code, rank, amount DESC, label, detail"""

_PURCHASES = """
WITH grouped AS (
    SELECT CASE WHEN GROUPING(created_month) = 0 THEN 'by_month' WHEN GROUPING(counterparty_id) = 0 THEN 'top_suppliers'
                WHEN GROUPING(item_code) = 0 THEN 'top_item_codes' ELSE 'totals' END AS figure,
           currency_code, created_month, counterparty_id, item_code,
           sum(spend) AS amount, count(*) AS n, sum(item_quantity) AS n_2
    FROM purchase_order_amount WHERE created_date BETWEEN %(start)s AND %(end)s AND currency_code = ANY(%(currencies)s)
    GROUP BY GROUPING SETS ((currency_code), (currency_code, created_month), (currency_code, counterparty_id),
        (currency_code, item_code))
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY figure, currency_code ORDER BY amount DESC, counterparty_id, item_code)
        AS rank
    FROM grouped
)
SELECT figure, currency_code,
       coalesce(created_month::text, cp.counterparty_legal_name || ' #' || r.counterparty_id, item_code) AS label,
       NULL AS detail, amount, NULL::numeric AS amount_2, NULL::numeric AS amount_3, n, n_2,
       CASE WHEN figure LIKE 'top%%' THEN rank END AS rank
FROM ranked r LEFT JOIN dim_counterparty cp ON cp.counterparty_id = r.counterparty_id
WHERE (rank <= %(top)s OR figure NOT LIKE 'top%%')
ORDER BY figure, currency_code, rank, label"""

# Overdue buckets: views.sql's overdue_bucket(days); by_type_month leaves overdue out (amount_3, n_2 NULL:
# the summary keeps due dates apart from months).
_PAYMENTS = """
SELECT CASE WHEN GROUPING(payment_month) = 0 THEN 'by_type_month' WHEN GROUPING(overdue_by) = 0 THEN 'overdue'
            ELSE 'totals' END AS figure,
       currency_code, coalesce(payment_month::text, overdue_by) AS label, payment_type_name AS detail,
       coalesce(sum(payment_amount) FILTER (WHERE paid), 0) AS amount,
       coalesce(sum(payment_amount) FILTER (WHERE NOT paid), 0) AS amount_2,
       CASE WHEN GROUPING(payment_month) = 1 THEN coalesce(sum(payment_amount) FILTER (WHERE days_overdue > 0), 0)
       END AS amount_3,
       count(*) AS n, CASE WHEN GROUPING(payment_month) = 1 THEN count(*) FILTER (WHERE days_overdue > 0) END AS n_2,
       NULL AS rank
FROM (
    SELECT *, overdue_bucket(days_overdue) AS overdue_by
    FROM payment_detail WHERE payment_date BETWEEN %(start)s AND %(end)s AND currency_code = ANY(%(currencies)s)
) p
GROUP BY GROUPING SETS ((currency_code), (currency_code, payment_month, payment_type_name), (currency_code, overdue_by))
ORDER BY figure, currency_code, label, detail"""


# The same figures for the whole date range, read from the summary tables the load keeps (views.sql:
# sales_summary, purchase_summary, payment_summary; one row per figure, currency code and key): a top list
# is the first rows of the summary's (figure, currency_code, amount DESC) index, ranked as above, and the
# totals are the sums of the months.

_SALES_SUMMARY = """
SELECT figure, currency_code, created_month::text AS label, NULL AS detail, revenue AS amount,
       NULL::numeric AS amount_2, NULL::numeric AS amount_3, orders AS n, units AS n_2, NULL::bigint AS rank
FROM sales_summary WHERE figure = 'by_month' AND currency_code = ANY(%(currencies)s)
UNION ALL
SELECT 'totals', currency_code, NULL, NULL, sum(revenue), NULL, NULL, sum(orders)::bigint, sum(units)::bigint, NULL
FROM sales_summary WHERE figure = 'by_month' AND currency_code = ANY(%(currencies)s)
GROUP BY currency_code
UNION ALL
SELECT t.figure, t.currency_code,
       coalesce(d.design_name || ' #' || t.design_id, cp.counterparty_legal_name || ' #' || t.counterparty_id,
                st.first_name || ' ' || st.last_name || ' #' || t.staff_id),
       NULL, t.revenue, NULL, NULL, t.orders, t.units, t.rank
FROM unnest(ARRAY['top_designs', 'top_counterparties', 'top_staff']) f (figure)
CROSS JOIN unnest(%(currencies)s::text[]) c (code)
CROSS JOIN LATERAL (
    SELECT *, row_number() OVER (ORDER BY revenue DESC, coalesce(design_id, counterparty_id, staff_id)) AS rank
    FROM (SELECT * FROM sales_summary s WHERE s.figure = f.figure AND s.currency_code = c.code
          ORDER BY s.revenue DESC, coalesce(s.design_id, s.counterparty_id, s.staff_id) LIMIT %(top)s) top
) t
LEFT JOIN dim_design d ON d.design_id = t.design_id
LEFT JOIN dim_counterparty cp ON cp.counterparty_id = t.counterparty_id
LEFT JOIN dim_staff st ON st.staff_id = t.staff_id
UNION ALL
SELECT 'by_location', s.currency_code, l.country, l.city, sum(s.revenue), NULL, NULL, sum(s.orders), sum(s.units), NULL
FROM sales_summary s JOIN dim_location l ON l.location_id = s.location_id
WHERE s.figure = 'by_location' AND s.currency_code = ANY(%(currencies)s)
GROUP BY s.currency_code, l.country, l.city
ORDER BY figure, currency_code, rank, amount DESC, label, detail"""

_PURCHASES_SUMMARY = """
SELECT figure, currency_code, created_month::text AS label, NULL AS detail, spend AS amount,
       NULL::numeric AS amount_2, NULL::numeric AS amount_3, orders AS n, items AS n_2, NULL::bigint AS rank
FROM purchase_summary WHERE figure = 'by_month' AND currency_code = ANY(%(currencies)s)
UNION ALL
SELECT 'totals', currency_code, NULL, NULL, sum(spend), NULL, NULL, sum(orders)::bigint, sum(items)::bigint, NULL
FROM purchase_summary WHERE figure = 'by_month' AND currency_code = ANY(%(currencies)s)
GROUP BY currency_code
UNION ALL
SELECT t.figure, t.currency_code, coalesce(cp.counterparty_legal_name || ' #' || t.counterparty_id, t.item_code),
       NULL, t.spend, NULL, NULL, t.orders, t.items, t.rank
FROM unnest(ARRAY['top_suppliers', 'top_item_codes']) f (figure)
CROSS JOIN unnest(%(currencies)s::text[]) c (code)
CROSS JOIN LATERAL (
    SELECT *, row_number() OVER (ORDER BY spend DESC, counterparty_id, item_code) AS rank
    FROM (SELECT * FROM purchase_summary s WHERE s.figure = f.figure AND s.currency_code = c.code
          ORDER BY s.spend DESC, s.counterparty_id, s.item_code LIMIT %(top)s) top
) t
LEFT JOIN dim_counterparty cp ON cp.counterparty_id = t.counterparty_id
ORDER BY figure, currency_code, rank, label"""

# Paid and unpaid amounts per due date: overdue is decided here, against today's date.
_PAYMENTS_SUMMARY = """
WITH due AS (
    SELECT currency_code, paid_amount, unpaid_amount, payments, due_date < current_date AS overdue,
           overdue_bucket(coalesce(greatest(current_date - due_date, 0), 0)) AS overdue_by
    FROM payment_summary WHERE figure = 'by_due_date' AND currency_code = ANY(%(currencies)s)
)
SELECT CASE WHEN GROUPING(overdue_by) = 0 THEN 'overdue' ELSE 'totals' END AS figure,
       currency_code, overdue_by AS label, NULL AS detail, sum(paid_amount) AS amount, sum(unpaid_amount) AS amount_2,
       coalesce(sum(unpaid_amount) FILTER (WHERE overdue), 0) AS amount_3, sum(payments)::bigint AS n,
       coalesce(sum(payments) FILTER (WHERE overdue), 0)::bigint AS n_2, NULL AS rank
FROM due
GROUP BY GROUPING SETS ((currency_code), (currency_code, overdue_by))
UNION ALL
SELECT 'by_type_month', s.currency_code, s.payment_month::text, pt.payment_type_name, sum(s.paid_amount),
       sum(s.unpaid_amount), NULL, sum(s.payments)::bigint, NULL, NULL
FROM payment_summary s JOIN dim_payment_type pt USING (payment_type_id)
WHERE s.figure = 'by_type_month' AND s.currency_code = ANY(%(currencies)s)
GROUP BY s.currency_code, s.payment_month, pt.payment_type_name
ORDER BY figure, currency_code, label, detail"""

SQL: dict[Page, dict[str, str]] = {
    "sales": {"figures": _SALES},
    "purchases": {"figures": _PURCHASES},
    "payments": {"figures": _PAYMENTS},
    "pipeline": {
        "freshness": "SELECT * FROM pipeline_freshness",
        "runs": """
            SELECT run_id, loaded_at, extracted_at, total_rows, load_seconds, lag_seconds
            FROM pipeline_run ORDER BY loaded_at DESC, run_id DESC LIMIT %(recent)s""",
        "rows_per_table": """
            SELECT run_id, loaded_at, table_name, row_count FROM pipeline_run_rows
            WHERE run_id IN (SELECT run_id FROM pipeline_run ORDER BY loaded_at DESC, run_id DESC
                             LIMIT %(recent)s)
            ORDER BY loaded_at, table_name""",
    },
}


# Run ids the ledger holds from the last %(days)s days: a raw manifest among them is not backlog.
LOADED_RECENTLY = "SELECT run_id FROM etl.load_run WHERE loaded_at > now() - make_interval(days => %(days)s)"


SUMMARY_SQL: dict[Page, dict[str, str]] = {
    "sales": {"figures": _SALES_SUMMARY},
    "purchases": {"figures": _PURCHASES_SUMMARY},
    "payments": {"figures": _PAYMENTS_SUMMARY},
}


def page_queries(page: Page, filters: Filters) -> list[tuple[str, str, dict[str, object]]]:
    """The queries of `page`: (name, SQL, parameters) in the order the page shows them; for the whole date
    range the star pages read the summary tables, for a narrower one the facts."""
    params = filters.params()
    chosen = SUMMARY_SQL if filters.use_summaries and filters.whole_range and page in SUMMARY_SQL else SQL
    return [(name, query, params) for name, query in chosen[page].items()]
