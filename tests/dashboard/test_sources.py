"""The dashboard's read-only warehouse role, on real PostgreSQL: it reads every view and writes nothing."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.dashboard import queries
from shared.dashboard.sources import connect, grant_reader
from shared.warehouse import apply_schema


def test_reader_role_reads_every_page_and_writes_nothing(empty_warehouse: str) -> None:
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(empty_warehouse, autocommit=True) as admin:
        apply_schema(admin)
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        grant_reader(admin, role)
    as_reader = make_conninfo(**{**conninfo_to_dict(empty_warehouse), "user": role})
    try:
        with connect(as_reader) as conn:
            filters = queries.default_filters(conn)
            for page in queries.PAGES:
                for _, query, params in queries.page_queries(page, filters):
                    conn.execute(query, params).fetchall()
        with psycopg.connect(as_reader) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE public.scratch (x int)")  # read-only by default, in any session
        with psycopg.connect(as_reader) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET TRANSACTION READ WRITE")
            conn.execute("DELETE FROM etl.load_run")  # and no write privilege when it asks for read-write
    finally:
        with psycopg.connect(empty_warehouse, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
