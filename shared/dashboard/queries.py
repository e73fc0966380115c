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
    return Filters(start=start, end=end, currencies=currencies)


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
       NULL AS detail, amount, NULL::numeric AS amount_2, NULL::numeric AS amount_3, n, n_2, rank
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
ORDER BY figure, currency_code, rank, amount DESC"""

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
       NULL AS detail, amount, NULL::numeric AS amount_2, NULL::numeric AS amount_3, n, n_2, rank
FROM ranked r LEFT JOIN dim_counterparty cp ON cp.counterparty_id = r.counterparty_id
WHERE (rank <= %(top)s OR figure NOT LIKE 'top%%')
ORDER BY figure, currency_code, rank"""

# Overdue buckets are labelled '<n> <text>' so that they sort in order.
_PAYMENTS = """
SELECT CASE WHEN GROUPING(payment_month) = 0 THEN 'by_type_month' WHEN GROUPING(overdue_by) = 0 THEN 'overdue'
            ELSE 'totals' END AS figure,
       currency_code, coalesce(payment_month::text, overdue_by) AS label, payment_type_name AS detail,
       coalesce(sum(payment_amount) FILTER (WHERE paid), 0) AS amount,
       coalesce(sum(payment_amount) FILTER (WHERE NOT paid), 0) AS amount_2,
       coalesce(sum(payment_amount) FILTER (WHERE days_overdue > 0), 0) AS amount_3,
       count(*) AS n, count(*) FILTER (WHERE days_overdue > 0) AS n_2, NULL AS rank
FROM (
    SELECT *, CASE WHEN days_overdue = 0 THEN '0 not overdue' WHEN days_overdue <= 30 THEN '1 1-30 days'
                   WHEN days_overdue <= 90 THEN '2 31-90 days' WHEN days_overdue <= 365 THEN '3 91-365 days'
                   ELSE '4 over a year' END AS overdue_by
    FROM payment_detail WHERE payment_date BETWEEN %(start)s AND %(end)s AND currency_code = ANY(%(currencies)s)
) p
GROUP BY GROUPING SETS ((currency_code), (currency_code, payment_month, payment_type_name), (currency_code, overdue_by))
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


def page_queries(page: Page, filters: Filters) -> list[tuple[str, str, dict[str, object]]]:
    """The queries of `page`: (name, SQL, parameters) in the order the page shows them."""
    params = filters.params()
    return [(name, query, params) for name, query in SQL[page].items()]
