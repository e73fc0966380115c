"""The load's merge SQL: staged curated rows into the star schemas, inside the caller's transaction.

Grain per step:
- dim_date: one row per calendar day from the earliest to the latest date known (contiguous);
- dimensions: one row per natural key, the newest version by (etl_source_updated, etl_run_id);
- facts: one row per distinct version (natural key, etl_row_hash), never a second identical one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl
import psycopg
from psycopg import sql

from shared.contract import DAY_NAMES, FACT_ORDER, MONTH_NAMES, REFERENCES, TABLE_KEYS
from shared.warehouse import summaries
from shared.warehouse.bulk import Constraints, add_constraints, analyze, drop_constraints, is_bulk


@dataclass(frozen=True)
class Merged:
    """What one merge statement did to one warehouse table."""

    inserted: int
    updated: int = 0

    @property
    def rows(self) -> int:
        """Rows inserted or updated."""
        return self.inserted + self.updated


@dataclass(frozen=True)
class MissingReference:
    """Fact rows of a run whose dimension id is not in the warehouse (yet)."""

    table: str
    column: str
    dimension: str
    ids: tuple[int, ...]

    def __str__(self) -> str:
        shown = ", ".join(map(str, self.ids[:20])) + (", ..." if len(self.ids) > 20 else "")
        return f"{self.table}.{self.column} -> {self.dimension} ids [{shown}]"


def date_columns(conn: psycopg.Connection, staged: Sequence[str]) -> dict[str, list[str]]:
    """The date-typed columns of each staged table (every one of them references dim_date)."""
    rows = conn.execute(
        "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "WHERE a.attrelid = ANY(%s::regclass[]) AND a.atttypid = 'date'::regtype AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
        ([f"pg_temp.stg_{t}" for t in staged],),
    ).fetchall()
    found: dict[str, list[str]] = {}
    for relname, column in rows:
        found.setdefault(relname.removeprefix("stg_"), []).append(column)
    return found


def date_bounds(frame: pl.DataFrame | pl.LazyFrame) -> tuple[date, date] | None:
    """The earliest and latest date in any date column of `frame`; None if it has none (a LazyFrame, such
    as a streamed curated file's scan, is aggregated without being read whole)."""
    dates = frame.lazy().select(pl.col(pl.Date))
    if not dates.collect_schema().len():
        return None
    lo, hi = (
        dates.select(pl.min_horizontal(pl.all().min()).alias("lo"), pl.max_horizontal(pl.all().max()).alias("hi"))
        .collect()
        .row(0)
    )
    return None if lo is None else (lo, hi)


def merge_dim_date(conn: psycopg.Connection, staged: Sequence[str], extra: Sequence[tuple[date, date]] = ()) -> Merged:
    """Add every missing day between the earliest and latest of the existing dates, the staged dates
    and the `extra` (earliest, latest) pairs (dates of frames copied without staging)."""
    bounds: list[sql.Composable] = [sql.SQL("SELECT min(date_id) AS lo, max(date_id) AS hi FROM dim_date")]
    params: dict[str, object] = {"day_names": list(DAY_NAMES), "month_names": list(MONTH_NAMES)}
    if extra:
        params["extra_lo"], params["extra_hi"] = min(lo for lo, _ in extra), max(hi for _, hi in extra)
        bounds.append(sql.SQL("SELECT %(extra_lo)s::date AS lo, %(extra_hi)s::date AS hi"))
    for table, columns in date_columns(conn, staged).items():
        cols = [sql.Identifier(c) for c in columns]
        bounds.append(
            sql.SQL("SELECT least({}) AS lo, greatest({}) AS hi FROM {}").format(
                sql.SQL(", ").join(sql.SQL("min({})").format(c) for c in cols),
                sql.SQL(", ").join(sql.SQL("max({})").format(c) for c in cols),
                sql.Identifier(f"stg_{table}"),
            )
        )
    query = sql.SQL(
        """
        WITH bounds AS (SELECT min(lo) AS lo, max(hi) AS hi FROM ({}) AS b),
        days AS (
            SELECT g::date AS d
            FROM bounds, generate_series(bounds.lo::timestamp, bounds.hi::timestamp, interval '1 day') AS g
            WHERE bounds.lo IS NOT NULL
        )
        INSERT INTO dim_date
            (date_id, year, month, day, day_of_week, day_name, month_name, quarter)
        SELECT d,
               extract(year FROM d)::int,
               extract(month FROM d)::int,
               extract(day FROM d)::int,
               extract(isodow FROM d)::int,
               (%(day_names)s::varchar[])[extract(isodow FROM d)::int],
               (%(month_names)s::varchar[])[extract(month FROM d)::int],
               extract(quarter FROM d)::int
        FROM days
        WHERE NOT EXISTS (SELECT 1 FROM dim_date e WHERE e.date_id = days.d)
        ORDER BY d
        ON CONFLICT (date_id) DO NOTHING
        """
    ).format(sql.SQL(" UNION ALL ").join(bounds))
    cur = conn.execute(query, params)
    return Merged(inserted=max(cur.rowcount, 0))


def merge_dimension(conn: psycopg.Connection, table: str, columns: Sequence[str], run_id: str) -> Merged:
    """Merge stg_<table> into `table` by natural key: update a row only for a newer version, insert
    new keys.

    Versions are ordered by (etl_source_updated, etl_run_id), so a run loaded late never puts an
    older value over a newer one, and of two runs seeing the same source version the later run wins.
    An UPDATE and an INSERT (anti-join) rather than INSERT ... ON CONFLICT DO UPDATE: a third faster
    on large batches, and as safe since loads hold the load lock. A key repeated in the staged file
    counts once, at its newest version.
    """
    key = sql.Identifier(TABLE_KEYS[table])
    newest = sql.SQL("SELECT DISTINCT ON ({key}) * FROM {staging} ORDER BY {key}, etl_source_updated DESC").format(
        key=key, staging=sql.Identifier(f"stg_{table}")
    )
    update = sql.SQL(
        """
        UPDATE {table} AS t SET {assignments}, etl_run_id = %(run_id)s
        FROM ({newest}) AS s
        WHERE t.{key} = s.{key}
          AND (s.etl_source_updated, %(run_id)s COLLATE "C") > (t.etl_source_updated, t.etl_run_id COLLATE "C")
        """
    ).format(
        table=sql.Identifier(table),
        assignments=sql.SQL(", ").join(
            sql.SQL("{0} = s.{0}").format(sql.Identifier(c)) for c in columns if c != TABLE_KEYS[table]
        ),
        newest=newest,
        key=key,
    )
    insert = sql.SQL(
        "INSERT INTO {table} ({cols}, etl_run_id) SELECT {cols}, %(run_id)s FROM ({newest}) AS s "
        "WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.{key} = s.{key}) ORDER BY {key}"
    ).format(
        table=sql.Identifier(table),
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        newest=newest,
        key=key,
    )
    updated = conn.execute(update, {"run_id": run_id}).rowcount
    inserted = conn.execute(insert, {"run_id": run_id}).rowcount
    return Merged(inserted=max(inserted, 0), updated=max(updated, 0))


def missing_references(conn: psycopg.Connection, table: str, *, staged: bool = True) -> list[MissingReference]:
    """The dimension ids stg_<table> (or, not `staged`, `table` itself) references that no dimension
    row has (at most 100 per column)."""
    source = sql.Identifier(f"stg_{table}" if staged else table)
    missing = []
    for column, dimension in REFERENCES[table]:
        query = sql.SQL(
            "SELECT DISTINCT s.{col} FROM {staging} s "
            "WHERE NOT EXISTS (SELECT 1 FROM {dim} d WHERE d.{key} = s.{col}) ORDER BY 1 LIMIT 100"
        ).format(
            col=sql.Identifier(column),
            staging=source,
            dim=sql.Identifier(dimension),
            key=sql.Identifier(TABLE_KEYS[dimension]),
        )
        ids = tuple(r[0] for r in conn.execute(query))
        if ids:
            missing.append(MissingReference(table, column, dimension, ids))
    return missing


def insert_facts(
    conn: psycopg.Connection, table: str, columns: Sequence[str], run_id: str, *, bulk: bool | None = None
) -> Merged:
    """Insert the fact versions of stg_<table> not already present, oldest first (ids grow with time).

    A normal batch inserts the versions an anti-join finds new (ON CONFLICT DO NOTHING on the version
    key as a guard), its foreign keys checked per row. A bulk batch (`bulk`, by default `is_bulk`)
    drops the table's version key, foreign keys and indexes, inserts the same way without them, and re-adds
    them before returning, in the caller's transaction: the index is built once by sort and each
    foreign key validated by one anti-join, 2-3x faster for large batches. It holds ACCESS EXCLUSIVE
    locks on the fact table and its dimensions until commit, so small batches do not use it.
    stg_<table> has one row per version (see `stage`).
    """
    key = sql.Identifier(TABLE_KEYS[table])
    if bulk is None:
        bulk = is_bulk(conn, table)
    query = sql.SQL(
        "INSERT INTO {table} ({cols}, etl_run_id) SELECT {cols}, %(run_id)s FROM {staging} AS s {where} "
        "ORDER BY {order} {conflict}"
    ).format(
        table=sql.Identifier(table),
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        staging=sql.Identifier(f"stg_{table}"),
        order=sql.SQL(", ").join(sql.Identifier(c) for c in (*FACT_ORDER[table], TABLE_KEYS[table])),
        # Known versions are filtered out first, so replays do not consume record ids (ON CONFLICT does).
        where=sql.SQL(
            "WHERE NOT EXISTS (SELECT 1 FROM {} AS f WHERE f.{} = s.{} AND f.etl_row_hash = s.etl_row_hash)"
        ).format(sql.Identifier(table), key, key),
        conflict=sql.SQL("") if bulk else sql.SQL("ON CONFLICT ({}, etl_row_hash) DO NOTHING").format(key),
    )
    dropped = drop_constraints(conn, table) if bulk else Constraints(table, ())
    cur = conn.execute(query, {"run_id": run_id})
    add_constraints(conn, dropped)
    if bulk:
        analyze(conn, table, summaries.LOOKED_UP.get(table, ()))
    return Merged(inserted=max(cur.rowcount, 0))
