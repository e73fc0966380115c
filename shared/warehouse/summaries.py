"""The dashboard's summary tables (views.sql: sales_summary, purchase_summary, payment_summary), kept exact by
the load inside its transaction.

Each summary row is a sum over current, not deleted orders or payments, so a run changes only the rows of
the ones it touches: before the run is merged, `withdraw` keeps their figures as they stand in a temporary
table; after its facts and deletes, `restore` adds what their figures changed by (as they now stand minus as
they stood) in one upsert of the rows that changed. A payment is touched by a new
version or deletion of itself, and (its due date is its order's agreed payment date) by a new version of
its transaction or of the order that transaction settles. A run that bulk-copied a table (a first load),
or that gives a currency another code (the summaries are per currency code), rebuilds them whole instead;
so does, for one summary, a run that touches a large share of its fact's rows (REBUILD_RATIO).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import polars as pl
import psycopg
from psycopg import sql

from shared.contract import TABLE_KEYS
from shared.warehouse import bulk, figures
from shared.warehouse.figures import Figures
from shared.warehouse.staging import copy_frame

SUMMARIES: dict[str, str] = {  # fact table -> its summary table
    "fact_sales_order": "sales_summary",
    "fact_purchase_order": "purchase_summary",
    "fact_payment": "payment_summary",
}
# Each summary table -> the views.sql function that computes its rows from the facts (read-only).
FIGURES: dict[str, str] = {
    "sales_summary": "sales_figures",
    "purchase_summary": "purchase_figures",
    "payment_summary": "payment_figures",
}
# Each summary table -> its grouping columns (its unique key, NULLS NOT DISTINCT) and its figures (views.sql, as
# figures.py states them); the last figure counts the orders (payments) in the row, which is deleted when none is left.
COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    summary: (("figure", "currency_code", *figures.KEYS[summary]), figures.FIGURES[summary]) for summary in figures.KEYS
}

# The columns `touched` finds a run's payments by: the first load's ANALYZE covers them (bulk.analyze), or the
# next run would plan these lookups without statistics (whole-table scans: 40 ms of a 1,000-change run at x10).
LOOKED_UP: dict[str, tuple[str, ...]] = {
    "dim_transaction": ("sales_order_id", "purchase_order_id"),
    "fact_payment": ("transaction_id",),
}


# A run that touches at least REBUILD_IDS natural ids of a fact table, and at least 1/REBUILD_RATIO of its rows,
# rebuilds that table's summary whole instead: each touched id's figures are taken twice and upserted, several
# times what one row costs a rebuild (x10, 100,000 changes, when it was two upserts: withdraw + restore of the
# three 2.3 s, rebuilding them 0.7 s).
REBUILD_IDS = 10_000
REBUILD_RATIO = 8
# The work_mem of a whole rebuild's figures (transaction-local, restored after): their grouping sets and the
# payments' joins to every transaction and order spill past the load's 128MB from about x300 (x1000: 2 GB of
# temporary files per fact; 126 s at 128MB, about 80 s at 512MB). A cap: a small warehouse uses what its rows need.
REBUILD_WORK_MEM = "512MB"


@dataclass(frozen=True)
class Touched:
    """The natural ids per fact table whose figures a run may change, and the fact tables whose summary it
    rebuilds whole instead (their ids are not listed)."""

    ids: Mapping[str, list[int]]
    rebuilt: frozenset[str] = frozenset()


def touched(
    conn: psycopg.Connection, staged: Collection[str], deleted: Mapping[str, tuple[int, ...]], *, rebuild: bool
) -> Touched:
    """The ids a run touches, from its staging tables (`staged`: tables in stg_<table>) and deletions; to be
    called before its dimensions and facts are merged (a transaction's order as it stood is looked up).
    Every summary is rebuilt if `rebuild`, or if the run gives a currency another code."""
    if rebuild or ("dim_currency" in staged and _currency_code_changes(conn)):
        return Touched(ids={}, rebuilt=frozenset(SUMMARIES))
    ids: dict[str, set[int]] = {table: set(deleted.get(table, ())) for table in SUMMARIES}
    for table in SUMMARIES:
        key = TABLE_KEYS[table]
        if table in staged:
            query = sql.SQL("SELECT DISTINCT {} FROM {}").format(sql.Identifier(key), sql.Identifier(f"stg_{table}"))
            ids[table].update(r[0] for r in conn.execute(query))
    transactions: set[int] = set()
    if "dim_transaction" in staged:
        transactions.update(r[0] for r in conn.execute("SELECT transaction_id FROM stg_dim_transaction"))
    orders = {"sales_order_id": "fact_sales_order", "purchase_order_id": "fact_purchase_order"}
    for column, table in orders.items():
        if table in staged and ids[table]:
            query = sql.SQL("SELECT transaction_id FROM dim_transaction WHERE {} = ANY(%s)").format(
                sql.Identifier(column)
            )
            transactions.update(r[0] for r in conn.execute(query, (sorted(ids[table]),)))
    if transactions:
        ids["fact_payment"].update(
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT payment_id FROM fact_payment WHERE etl_current AND transaction_id = ANY(%s)",
                (sorted(transactions),),
            )
        )
    large = {table for table, found in ids.items() if len(found) >= REBUILD_IDS}
    rows = _rows(conn, large)
    rebuilt = frozenset(table for table in large if len(ids[table]) * REBUILD_RATIO >= rows[table])
    return Touched(ids={t: sorted(found) for t, found in ids.items() if found and t not in rebuilt}, rebuilt=rebuilt)


def _rows(conn: psycopg.Connection, tables: Collection[str]) -> dict[str, float]:
    """The planner's row count of each of `tables` (0 for one never analysed)."""
    if not tables:
        return {}
    found: dict[str, float] = dict(
        conn.execute(
            "SELECT relname::text, greatest(reltuples, 0) FROM pg_class WHERE oid = ANY(%s::regclass[])",
            (sorted(tables),),
        ).fetchall()
    )
    return {table: float(found.get(table, 0)) for table in tables}


def _currency_code_changes(conn: psycopg.Connection) -> bool:
    """Whether the staged currencies give a loaded currency id another code (the summaries are per code)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM stg_dim_currency s JOIN dim_currency d USING (currency_id)"
        " WHERE s.currency_code IS DISTINCT FROM d.currency_code)"
    ).fetchone()
    return bool(row and row[0])


def withdraw(conn: psycopg.Connection, run: Touched) -> None:
    """Keep the touched ids' figures as they stand (before the run's merge) in stg_before_<summary>."""
    for table, ids in run.ids.items():
        summary = SUMMARIES[table]
        conn.execute(
            sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT * FROM {}(%s::integer[])").format(
                sql.Identifier(f"stg_before_{summary}"), sql.Identifier("etl", FIGURES[summary])
            ),
            (ids,),
        )


def restore(
    conn: psycopg.Connection,
    run: Touched,
    copied: Figures | None = None,
    deleted: Collection[str] = (),
) -> None:
    """Add to each summary what the touched ids' figures changed by (as they now stand, after the run's facts and
    deletes, minus as they stood); rebuild the summaries of `run.rebuilt`, from `copied` (the figures of a first
    load's rows as copied; `deleted`: the tables the run deletes from) those it gives whole."""
    rebuilt = {SUMMARIES[fact] for fact in run.rebuilt}
    computed = copied.summaries([s for s in copied.ready(deleted) if s in rebuilt]) if copied is not None else {}
    rebuild(conn, run.rebuilt, computed)
    for table, ids in run.ids.items():
        _add_change(conn, SUMMARIES[table], ids)


def rebuild(
    conn: psycopg.Connection, facts: Collection[str] = tuple(SUMMARIES), computed: Mapping[str, pl.DataFrame] = {}
) -> None:
    """The summaries of fact tables `facts` afresh: emptied, filled with their figures (the rows in `computed`,
    figures.py, else those of the views.sql function), and their keys built after (one sort each, where inserting
    into them checked and updated both indexes row by row)."""
    tables = [summary for fact, summary in SUMMARIES.items() if fact in facts]
    if not tables:
        return
    conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))
    row = conn.execute("SELECT current_setting('work_mem'), set_config('work_mem', %s, true)", (REBUILD_WORK_MEM,))
    before = row.fetchone()
    for summary in tables:
        dropped = bulk.drop_constraints(conn, summary)
        if summary in computed:
            copy_frame(conn, summary, computed[summary])
        else:
            conn.execute(
                sql.SQL("INSERT INTO {} SELECT * FROM {}(NULL)").format(
                    sql.Identifier(summary), sql.Identifier("etl", FIGURES[summary])
                )
            )
        bulk.add_constraints(conn, dropped)
    if before is not None:
        conn.execute("SELECT set_config('work_mem', %s, true)", (before[0],))


def _add_change(conn: psycopg.Connection, summary: str, ids: list[int]) -> None:
    """One upsert of the rows of `summary` whose figures changed (new figures of `ids` minus stg_before_<summary>),
    then the deletion of those left with no order (payment)."""
    keys, figures = COLUMNS[summary]
    key = sql.SQL(", ").join(map(sql.Identifier, keys))
    change = sql.SQL(
        "WITH changed AS (INSERT INTO {summary} AS t ({key}, {figures}) "
        "SELECT {key}, {sums} FROM (SELECT {key}, {figures} FROM {new}(%s::integer[]) "
        "UNION ALL SELECT {key}, {negated} FROM {old}) d GROUP BY {key} HAVING {nonzero} "
        "ON CONFLICT ON CONSTRAINT {constraint} DO UPDATE SET {added} RETURNING t.ctid, t.{count}) "
        "SELECT ctid FROM changed WHERE {count} = 0"
    ).format(
        summary=sql.Identifier(summary),
        key=key,
        figures=sql.SQL(", ").join(map(sql.Identifier, figures)),
        sums=sql.SQL(", ").join(sql.SQL("sum({})").format(sql.Identifier(f)) for f in figures),
        new=sql.Identifier("etl", FIGURES[summary]),
        negated=sql.SQL(", ").join(sql.SQL("-{}").format(sql.Identifier(f)) for f in figures),
        old=sql.Identifier(f"stg_before_{summary}"),
        nonzero=sql.SQL(" OR ").join(sql.SQL("sum({}) <> 0").format(sql.Identifier(f)) for f in figures),
        constraint=sql.Identifier(f"{summary}_key"),
        added=sql.SQL(", ").join(sql.SQL("{0} = t.{0} + excluded.{0}").format(sql.Identifier(f)) for f in figures),
        count=sql.Identifier(figures[-1]),
    )
    emptied = [row[0] for row in conn.execute(change, (ids,))]
    if emptied:
        conn.execute(sql.SQL("DELETE FROM {} WHERE ctid = ANY(%s::tid[])").format(sql.Identifier(summary)), (emptied,))
