"""Source deletions in the warehouse: nothing is removed; the current rows of a deleted source row get
`etl_deleted_at` (docs/warehouse.md, Deletes), inside the load's transaction.

A dimension has one row per key: it is marked. A fact keeps every version: its current version (the one its
`current_*` view shows) is marked, so the view leaves the order out and the history stays. Foreign keys hold,
since no row goes away. Marking twice keeps the first time (a replayed or re-delivered run changes nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import psycopg
from psycopg import sql

from shared.contract import FACT_ORDER, FACTS, RECORD_IDS, TABLE_KEYS


def mark_deleted(conn: psycopg.Connection, deleted: Mapping[str, tuple[int, ...]], at: datetime) -> dict[str, int]:
    """Set etl_deleted_at = `at` on the current rows of each warehouse table's deleted keys; rows marked per table."""
    marked = {}
    for table, keys in deleted.items():
        key = sql.Identifier(TABLE_KEYS[table])
        if table in FACTS:
            record = sql.Identifier(RECORD_IDS[table])
            order = sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(c)) for c in FACT_ORDER[table])
            query = sql.SQL(
                "UPDATE {table} AS f SET etl_deleted_at = %(at)s FROM ("
                "SELECT DISTINCT ON ({key}) {record} FROM {table} WHERE {key} = ANY(%(keys)s)"
                " ORDER BY {key}, {order}, {record} DESC) AS c"
                " WHERE f.{record} = c.{record} AND f.etl_deleted_at IS NULL"
            ).format(table=sql.Identifier(table), key=key, record=record, order=order)
        else:
            query = sql.SQL(
                "UPDATE {table} SET etl_deleted_at = %(at)s WHERE {key} = ANY(%(keys)s) AND etl_deleted_at IS NULL"
            ).format(table=sql.Identifier(table), key=key)
        marked[table] = max(conn.execute(query, {"at": at, "keys": list(keys)}).rowcount, 0)
    return marked
