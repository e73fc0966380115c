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
    # The whole date range is read from the load's summary tables; False reads the facts (tests compare both).
    use_summaries: bool = True

    def params(self) -> dict[str, object]:
        """The filters as query parameters."""
        return {
            "start": self.start,
            "end": self.end,
            "currencies": list(self.currencies),
            "top": TOP_N,
            "recent": RECENT_RUNS,
            "use_summaries": self.use_summaries,
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

_WHOLE_RANGE = """
WITH whole AS (
    SELECT %(use_summaries)s AND coalesce(min(date_id) >= %(start)s AND max(date_id) <= %(end)s, false) AS range
    FROM dim_date
)"""

_SALES = (
    _WHOLE_RANGE
    + """, grouped AS (
    SELECT s.figure, c.currency_code, s.created_month, s.design_id, s.counterparty_id,
           s.location_id AS delivery_location_id, s.staff_id,
           sum(s.revenue) AS amount, sum(s.orders)::bigint AS n, sum(s.units)::bigint AS n_2
    FROM sales_summary s JOIN dim_currency c USING (currency_id)
    WHERE (SELECT range FROM whole) AND c.currency_code = ANY(%(currencies)s)
    GROUP BY s.figure, c.currency_code, s.created_month, s.design_id, s.counterparty_id, s.location_id, s.staff_id
    UNION ALL
    SELECT CASE WHEN GROUPING(created_month) = 0 THEN 'by_month' WHEN GROUPING(design_id) = 0 THEN 'top_designs'
                WHEN GROUPING(counterparty_id) = 0 THEN 'top_counterparties'
                WHEN GROUPING(delivery_location_id) = 0 THEN 'by_location'
                WHEN GROUPING(staff_id) = 0 THEN 'top_staff' ELSE 'totals' END AS figure,
           currency_code, created_month, design_id, counterparty_id, delivery_location_id, staff_id,
           sum(revenue) AS amount, count(*) AS n, sum(units_sold) AS n_2
    FROM sales_order_amount
    WHERE NOT (SELECT range FROM whole)
      AND created_date BETWEEN %(start)s AND %(end)s AND currency_code = ANY(%(currencies)s)
    GROUP BY GROUPING SETS ((currency_code), (currency_code, created_month), (currency_code, design_id),
        (currency_code, counterparty_id), (currency_code, delivery_location_id), (currency_code, staff_id))
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY figure, currency_code ORDER BY amount DESC,
        coalesce(design_id, counterparty_id, staff_id)) AS rank
    FROM (
        SELECT * FROM grouped WHERE figure IN ('totals', 'by_month')
        UNION ALL
        SELECT top.* FROM (SELECT DISTINCT figure, currency_code FROM grouped WHERE figure LIKE 'top%%') k
        CROSS JOIN LATERAL (
            SELECT * FROM grouped g WHERE g.figure = k.figure AND g.currency_code = k.currency_code
            ORDER BY amount DESC, coalesce(design_id, counterparty_id, staff_id) LIMIT %(top)s
        ) top
    ) kept
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
)

_PURCHASES = (
    _WHOLE_RANGE
    + """, grouped AS (
    SELECT s.figure, c.currency_code, s.created_month, s.counterparty_id, s.item_code,
           sum(s.spend) AS amount, sum(s.orders)::bigint AS n, sum(s.items)::bigint AS n_2
    FROM purchase_summary s JOIN dim_currency c USING (currency_id)
    WHERE (SELECT range FROM whole) AND c.currency_code = ANY(%(currencies)s)
    GROUP BY s.figure, c.currency_code, s.created_month, s.counterparty_id, s.item_code
    UNION ALL
    SELECT CASE WHEN GROUPING(created_month) = 0 THEN 'by_month' WHEN GROUPING(counterparty_id) = 0 THEN 'top_suppliers'
                WHEN GROUPING(item_code) = 0 THEN 'top_item_codes' ELSE 'totals' END AS figure,
           currency_code, created_month, counterparty_id, item_code,
           sum(spend) AS amount, count(*) AS n, sum(item_quantity) AS n_2
    FROM purchase_order_amount
    WHERE NOT (SELECT range FROM whole)
      AND created_date BETWEEN %(start)s AND %(end)s AND currency_code = ANY(%(currencies)s)
    GROUP BY GROUPING SETS ((currency_code), (currency_code, created_month), (currency_code, counterparty_id),
        (currency_code, item_code))
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY figure, currency_code ORDER BY amount DESC, counterparty_id, item_code)
        AS rank
    FROM (
        SELECT * FROM grouped WHERE figure IN ('totals', 'by_month')
        UNION ALL
        SELECT top.* FROM (SELECT DISTINCT figure, currency_code FROM grouped WHERE figure LIKE 'top%%') k
        CROSS JOIN LATERAL (
            SELECT * FROM grouped g WHERE g.figure = k.figure AND g.currency_code = k.currency_code
            ORDER BY amount DESC, counterparty_id, item_code LIMIT %(top)s
        ) top
    ) kept
)
SELECT figure, currency_code,
       coalesce(created_month::text, cp.counterparty_legal_name || ' #' || r.counterparty_id, item_code) AS label,
       NULL AS detail, amount, NULL::numeric AS amount_2, NULL::numeric AS amount_3, n, n_2, rank
FROM ranked r LEFT JOIN dim_counterparty cp ON cp.counterparty_id = r.counterparty_id
WHERE (rank <= %(top)s OR figure NOT LIKE 'top%%')
ORDER BY figure, currency_code, rank"""
)

# Overdue buckets are labelled '<n> <text>' so that they sort in order; by_type_month leaves overdue out
# (amount_3, n_2 NULL: the summary keeps due dates apart from months).
_OVERDUE_BY = """CASE WHEN {days} = 0 THEN '0 not overdue' WHEN {days} <= 30 THEN '1 1-30 days'
                   WHEN {days} <= 90 THEN '2 31-90 days' WHEN {days} <= 365 THEN '3 91-365 days'
                   ELSE '4 over a year' END"""

_PAYMENTS = (
    _WHOLE_RANGE
    + """, due AS (
    SELECT c.currency_code, s.paid_amount, s.unpaid_amount, s.payments, s.due_date < current_date AS overdue,
           """
    + _OVERDUE_BY.format(days="coalesce(greatest(current_date - s.due_date, 0), 0)")
    + """ AS overdue_by
    FROM payment_summary s JOIN dim_currency c USING (currency_id)
    WHERE (SELECT range FROM whole) AND s.figure = 'by_due_date' AND c.currency_code = ANY(%(currencies)s)
)
SELECT CASE WHEN GROUPING(overdue_by) = 0 THEN 'overdue' ELSE 'totals' END AS figure,
       currency_code, overdue_by AS label, NULL AS detail, sum(paid_amount) AS amount, sum(unpaid_amount) AS amount_2,
       coalesce(sum(unpaid_amount) FILTER (WHERE overdue), 0) AS amount_3, sum(payments)::bigint AS n,
       coalesce(sum(payments) FILTER (WHERE overdue), 0)::bigint AS n_2, NULL AS rank
FROM due
GROUP BY GROUPING SETS ((currency_code), (currency_code, overdue_by))
UNION ALL
SELECT 'by_type_month', c.currency_code, s.payment_month::text, pt.payment_type_name, sum(s.paid_amount),
       sum(s.unpaid_amount), NULL, sum(s.payments)::bigint, NULL, NULL
FROM payment_summary s JOIN dim_currency c USING (currency_id) JOIN dim_payment_type pt USING (payment_type_id)
WHERE (SELECT range FROM whole) AND s.figure = 'by_type_month' AND c.currency_code = ANY(%(currencies)s)
GROUP BY c.currency_code, s.payment_month, pt.payment_type_name
UNION ALL
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
    SELECT *, """
    + _OVERDUE_BY.format(days="days_overdue")
    + """ AS overdue_by
    FROM payment_detail
    WHERE NOT (SELECT range FROM whole)
      AND payment_date BETWEEN %(start)s AND %(end)s AND currency_code = ANY(%(currencies)s)
) p
GROUP BY GROUPING SETS ((currency_code), (currency_code, payment_month, payment_type_name), (currency_code, overdue_by))
ORDER BY figure, currency_code, label, detail"""
)

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
