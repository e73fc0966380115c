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
        return {"start": self.start, "end": self.end, "currencies": list(self.currencies), "top": TOP_N}


def default_filters(conn: psycopg.Connection) -> Filters:
    """Every date dim_date holds and every currency: what a page shows before any filter is set."""
    row = conn.execute("SELECT min(date_id), max(date_id) FROM dim_date").fetchone()
    today = date.today()
    start, end = (row[0], row[1]) if row and row[0] else (today, today)
    currencies = tuple(r[0] for r in conn.execute("SELECT DISTINCT currency_code FROM dim_currency ORDER BY 1"))
    return Filters(start=start, end=end, currencies=currencies)


# One query per star page: every figure of the page in a single pass over the current facts (GROUPING
# SETS), one row per (figure, currency, label); `rank` orders each figure's rows by amount within a
# currency and the top lists keep TOP_N. Labels carry the id where names repeat (design, staff, ...).
_RANKED = """
    SELECT * FROM (
        SELECT figure, currency_code, label, detail, amount, amount_2, amount_3, n, n_2,
               row_number() OVER (PARTITION BY figure, currency_code ORDER BY amount DESC, label, detail) AS rank
        FROM ({grouped}) grouped
    ) ranked
    WHERE rank <= %(top)s OR figure NOT IN ({top_figures})
    ORDER BY figure, currency_code, rank"""


def _cube(view: str, period: str, figures: dict[str, str], measures: str, top: tuple[str, ...], extra: str = "") -> str:
    """A ranked GROUPING SETS query over the filtered rows of `view`: figure name -> grouping columns
    (after currency_code; label first, then detail). `measures` yields amount, amount_2, amount_3, n, n_2."""
    sets = ", ".join(f"(currency_code{', ' + cols if cols else ''})" for cols in figures.values())
    case = " ".join(
        f"WHEN {' AND '.join(f'GROUPING({c.strip()}) = 0' for c in cols.split(','))} THEN '{name}'"
        for name, cols in figures.items()
        if cols
    )
    totals = next(name for name, cols in figures.items() if not cols)
    labels = [cols.split(",")[0].strip() for cols in figures.values() if cols]
    details = [cols.split(",")[1].strip() for cols in figures.values() if "," in cols]
    grouped = f"""
        SELECT CASE {case} ELSE '{totals}' END AS figure, currency_code,
               coalesce({", ".join(f"{c}::text" for c in labels)}) AS label,
               coalesce({", ".join(f"{c}::text" for c in details) or "NULL"}) AS detail,
               {measures}
        FROM (SELECT *{extra} FROM {view}
              WHERE {period} BETWEEN %(start)s AND %(end)s AND currency_code = ANY(%(currencies)s)) filtered
        GROUP BY GROUPING SETS ({sets})"""
    return _RANKED.format(grouped=grouped, top_figures=", ".join(f"'{t}'" for t in top) or "''")


SQL: dict[Page, dict[str, str]] = {
    "sales": {
        "figures": _cube(
            "sales_order_detail",
            "created_date",
            {
                "totals": "",
                "revenue_by_month": "created_month",
                "top_designs": "design_label",
                "top_counterparties": "counterparty_label",
                "by_location": "delivery_country, delivery_city",
                "staff_leaderboard": "staff_label",
            },
            "sum(revenue) AS amount, NULL::numeric AS amount_2, NULL::numeric AS amount_3, "
            "count(*) AS n, sum(units_sold) AS n_2",
            ("top_designs", "top_counterparties", "staff_leaderboard"),
            ", design_name || ' #' || design_id AS design_label"
            ", counterparty_legal_name || ' #' || counterparty_id AS counterparty_label"
            ", staff_name || ' #' || staff_id AS staff_label",
        ),
    },
    "purchases": {
        "figures": _cube(
            "purchase_order_detail",
            "created_date",
            {
                "totals": "",
                "spend_by_month": "created_month",
                "top_suppliers": "supplier_label",
                "top_item_codes": "item_code",
            },
            "sum(spend) AS amount, NULL::numeric AS amount_2, NULL::numeric AS amount_3, "
            "count(*) AS n, sum(item_quantity) AS n_2",
            ("top_suppliers", "top_item_codes"),
            ", supplier_name || ' #' || counterparty_id AS supplier_label",
        ),
    },
    "payments": {
        "figures": _cube(
            "payment_detail",
            "payment_date",
            {
                "totals": "",
                "by_type_month": "payment_month, payment_type_name",
                "overdue": "overdue_by",
            },
            "coalesce(sum(payment_amount) FILTER (WHERE paid), 0) AS amount, "
            "coalesce(sum(payment_amount) FILTER (WHERE NOT paid), 0) AS amount_2, "
            "coalesce(sum(payment_amount) FILTER (WHERE days_overdue > 0), 0) AS amount_3, "
            "count(*) AS n, count(*) FILTER (WHERE days_overdue > 0) AS n_2",
            (),
            ", CASE WHEN days_overdue = 0 THEN '0 not overdue' WHEN days_overdue <= 30 THEN '1 1-30 days'"
            " WHEN days_overdue <= 90 THEN '2 31-90 days' WHEN days_overdue <= 365 THEN '3 91-365 days'"
            " ELSE '4 over a year' END AS overdue_by",
        ),
    },
    "pipeline": {
        "freshness": "SELECT * FROM pipeline_freshness",
        "runs": f"""
            SELECT run_id, loaded_at, extracted_at, total_rows, load_seconds, lag_seconds
            FROM pipeline_run ORDER BY loaded_at DESC, run_id DESC LIMIT {RECENT_RUNS}""",
        "rows_per_table": f"""
            SELECT run_id, loaded_at, table_name, row_count FROM pipeline_run_rows
            WHERE run_id IN (SELECT run_id FROM pipeline_run ORDER BY loaded_at DESC, run_id DESC
                             LIMIT {RECENT_RUNS})
            ORDER BY loaded_at, table_name""",
    },
}


# Run ids the ledger holds from the last %(days)s days: a raw manifest among them is not backlog.
LOADED_RECENTLY = "SELECT run_id FROM etl.load_run WHERE loaded_at > now() - make_interval(days => %(days)s)"


def page_queries(page: Page, filters: Filters) -> list[tuple[str, str, dict[str, object]]]:
    """The queries of `page`: (name, SQL, parameters) in the order the page shows them."""
    params = filters.params()
    return [(name, query, params) for name, query in SQL[page].items()]
