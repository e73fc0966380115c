"""COPY of curated frames into the warehouse: temporary staging tables (`stg_<table>`, one per curated file,
dropped at commit) and, for a first load, the tables themselves. Binary where every column's type allows
(shared.warehouse.pgcopy), CSV otherwise. Runs inside the caller's transaction and never commits."""

from __future__ import annotations

import io
from collections.abc import Sequence

import polars as pl
import psycopg
from psycopg import sql

from shared.contract import FACT_ORDER, FACTS, TABLE_KEYS, TRANSFORM_COLUMNS
from shared.warehouse import pgcopy

# Rows per chunk streamed into COPY: bounds the memory of the binary or text form of a large frame.
COPY_BATCH_ROWS = 200_000


def curated_columns(conn: psycopg.Connection, table: str) -> list[str]:
    """The columns a curated file of `table` carries: the contract columns minus serial record ids,
    plus the transform's bookkeeping column."""
    rows = conn.execute(
        "SELECT a.attname FROM pg_attribute a "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.attname NOT LIKE 'etl\\_%%' "
        "AND coalesce(pg_get_expr(d.adbin, d.adrelid), '') NOT LIKE 'nextval(%%' "
        "ORDER BY a.attnum",
        (table,),
    ).fetchall()
    return [r[0] for r in rows] + list(TRANSFORM_COLUMNS[table])


def stage(conn: psycopg.Connection, table: str, frame: pl.DataFrame) -> int:
    """COPY `frame` (a curated file of `table`) into the temporary table stg_<table>; rows staged.

    Fact rows are staged once per version (natural key, etl_row_hash) and oldest first, the order
    they are inserted in (sorting here is cheaper than in PostgreSQL, whose sort then finds them sorted).
    """
    if table in FACTS:
        frame = fact_versions(table, frame)
    staging = sql.Identifier(f"stg_{table}")
    columns = sql.SQL(", ").join(map(sql.Identifier, frame.columns))
    conn.execute(
        sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            staging, columns, sql.Identifier(table)
        )
    )
    copy_frame(conn, f"stg_{table}", frame)
    # Temporary tables are never auto-analysed; the merges below join on them, by the natural key (and a
    # fact's row hash) only: statistics of the other columns would cost the ANALYZE most of its time.
    joined = [TABLE_KEYS[table], *(["etl_row_hash"] if table in FACTS else [])]
    conn.execute(sql.SQL("ANALYZE {} ({})").format(staging, sql.SQL(", ").join(map(sql.Identifier, joined))))
    return frame.height


def fact_versions(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """A curated fact frame -> one row per version (natural key, etl_row_hash), oldest first."""
    key = TABLE_KEYS[table]
    if frame.select(pl.struct(key, "etl_row_hash").is_duplicated().any()).item():
        frame = frame.unique([key, "etl_row_hash"], keep="first", maintain_order=True)
    return frame.sort([*FACT_ORDER[table], key], maintain_order=True)


def copy_frame(conn: psycopg.Connection, table: str, frame: pl.DataFrame, *, schema: str | None = None) -> None:
    """COPY every row of `frame` into `table` (in `schema`, else on the search path: a temporary table
    first) whose columns are named like the frame's: in binary where every column's type allows (see
    shared.warehouse.pgcopy), else as CSV."""
    types = column_types(conn, table if schema is None else f"{schema}.{table}", frame.columns)
    binary = pgcopy.encodable(frame.schema, types)
    copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
        sql.Identifier(table) if schema is None else sql.Identifier(schema, table),
        sql.SQL(", ").join(map(sql.Identifier, frame.columns)),
        sql.SQL("binary" if binary else "csv"),
    )
    with conn.cursor() as cur, cur.copy(copy) as pipe:
        if binary:
            for chunk in pgcopy.encode(frame, types, COPY_BATCH_ROWS):
                pipe.write(chunk)
            return
        for offset in range(0, frame.height, COPY_BATCH_ROWS):
            buffer = io.BytesIO()
            # CSV tells null (empty) from '' (quoted); times and timestamps keep milliseconds.
            frame.slice(offset, COPY_BATCH_ROWS).write_csv(
                buffer,
                include_header=False,
                date_format="%Y-%m-%d",
                time_format="%H:%M:%S%.3f",
                datetime_format="%Y-%m-%d %H:%M:%S%.3f",
            )
            pipe.write(buffer.getbuffer())


def column_types(conn: psycopg.Connection, table: str, columns: Sequence[str]) -> list[str]:
    """The type name (pg_type.typname) of each of `columns` of `table` (temporary tables first)."""
    found: dict[str, str] = dict(
        conn.execute(
            "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
            (table,),
        ).fetchall()
    )
    missing = [c for c in columns if c not in found]
    if missing:
        raise psycopg.errors.UndefinedColumn(f"table {table} has no column(s) {', '.join(missing)}")
    return [found[c] for c in columns]
