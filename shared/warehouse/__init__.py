"""The warehouse: its DDL (docs/warehouse.md), applied idempotently, and the SQL the load runs."""

from __future__ import annotations

from importlib import resources

import psycopg

# Advisory lock key that serialises DDL application across concurrent loads.
_DDL_LOCK = 0x7074_6573


def schema_sql() -> str:
    """The warehouse DDL as one idempotent SQL script: the tables, then the analysts' views (views.sql)."""
    return "\n".join(resources.files("shared.warehouse").joinpath(f).read_text() for f in ("schema.sql", "views.sql"))


def apply_schema(conn: psycopg.Connection) -> None:
    """Create every warehouse table, view and the etl schema that is missing, in the caller's transaction."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
    conn.execute(schema_sql().encode())
