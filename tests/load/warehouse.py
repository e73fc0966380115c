"""Reading a test warehouse back: its rows, its ledger, one query."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

# Star-table columns that differ between equal warehouses loaded in different orders.
VOLATILE = {"etl_loaded_at", "sales_record_id", "purchase_record_id", "payment_record_id"}


def warehouse_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every star table's rows, sorted, without the columns that depend on load order or time."""
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_type = 'BASE TABLE' ORDER BY 1"
            )
        ]
        found = {}
        for table in tables:
            cur = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            assert cur.description is not None
            keep = [i for i, d in enumerate(cur.description) if d.name not in VOLATILE]
            found[table] = sorted((tuple(row[i] for i in keep) for row in cur), key=repr)
    return found


def ledger(url: str) -> list[tuple[Any, ...]]:
    """The ledger's (run_id, row_counts), by run_id; [] when the warehouse has no ledger yet."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass('etl.load_run') IS NOT NULL").fetchone()
        if not (row and row[0]):
            return []
        return conn.execute("SELECT run_id, row_counts FROM etl.load_run ORDER BY run_id").fetchall()


def query(url: str, text: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of one query on the warehouse."""
    with psycopg.connect(url) as conn:
        return conn.execute(text, params or None).fetchall()
