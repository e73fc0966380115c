"""The bulk paths of a large load: a first load COPYs straight into empty tables, and a large fact batch
drops its table's version key and foreign keys, then re-adds them once (one index build, one check per
foreign key) instead of checking every inserted row. Runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace

import numpy as np
import polars as pl
import psycopg
from psycopg import sql

from shared.contract import FACT_ORDER, FACTS, RECORD_IDS, TABLE_KEYS
from shared.warehouse.staging import Rows, copy_frame, fact_versions, rows_of

# A fact batch of at least this many rows, and at least 1/BULK_FACT_RATIO of the table's rows, is
# inserted in bulk: version key rebuilt and foreign keys validated once for the whole table instead
# of per row (see merge.insert_facts). Measured at x10 (facts of 47k-160k rows, batches of 18k-80k): one
# row inserted with its 7-9 foreign-key checks costs what the bulk path costs for 10-13 rows of the table
# (a 42k-row batch of sales orders: 10.4 s inserted per row, 3.1 s in bulk, on a busy machine): the ratio is
# where the two cost the same; below BULK_FACT_ROWS a batch is cheap either way and keeps its table unlocked.
BULK_FACT_ROWS = 10_000
BULK_FACT_RATIO = 10
# A curated file of at least this many rows for an empty table (a first load) is COPYd straight in: its
# keys are then built once and each foreign key checked by one scan, where staging it and inserting per row
# checks every foreign key of every row, one at a time.
FIRST_LOAD_ROWS = 2_000
# Memory for the sorts of a rebuilt key and the hash joins of a foreign-key check (PostgreSQL runs the
# check with maintenance_work_mem as its work_mem): the default 64MB is below the version-key sort of an
# x100 fact (1.6M keys of an int and a 32-hex-digit hash, ~100 MB), which then spills to disk.
# Transaction-local (SET LOCAL); a few of a server's GB at most while one load runs.
BULK_MAINTENANCE_WORK_MEM = "256MB"


@dataclass(frozen=True)
class Constraints:
    """What was dropped from `table` for a bulk write, to re-add: its keys and foreign keys (name, definition),
    its plain indexes (CREATE INDEX statements) and the other tables' foreign keys to its primary key (table,
    name, definition), dropped with it."""

    table: str
    definitions: tuple[tuple[str, str], ...]
    rows: int = 0
    indexes: tuple[str, ...] = ()
    referencing: tuple[tuple[str, str, str], ...] = ()


def is_empty(conn: psycopg.Connection, table: str) -> bool:
    """Whether warehouse table `table` has no row at all."""
    row = conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))).fetchone()
    return bool(row and row[0])


def copy_facts(
    conn: psycopg.Connection,
    table: str,
    frame: pl.DataFrame | Rows,
    run_id: str,
    seen: Callable[[pl.DataFrame], None] | None = None,
) -> Constraints:
    """COPY a curated fact frame straight into the empty fact `table`, one row per version, oldest first;
    return the table's keys, foreign keys and indexes, dropped for the COPY, for `add_constraints`.

    The first load of a table has no known version to filter out, so staging and an INSERT ... SELECT
    would copy every row twice. The record ids are reserved from the table's sequence in one call and
    numbered here, in the order `insert_facts` would give them; the primary key, version key, foreign
    keys and indexes are rebuilt and checked once each when the dimensions are merged. The table's
    current-version trigger is off for the COPY (its transition table would hold every row): a natural
    id copied in several versions is then marked by etl.mark_current, what the trigger runs.

    A streamed file (staging.Rows) is copied a slice at a time in file order (by natural key), each row
    numbered by its rank in version order, which only the order columns give: memory holds those and one
    slice. Its versions must be distinct, as the transform writes them (the version key, rebuilt after,
    refuses a duplicate).

    `seen`, if given, is called with each slice's current versions (those etl.mark_current leaves current: the
    last of each natural id in version order), as copied.
    """
    rows = rows_of(frame)
    key = TABLE_KEYS[table]
    order = [*FACT_ORDER[table], key]
    if rows.streamed:  # copied in file order, row i numbered by its rank in version order
        keys = rows.only(*order)
        numbers = np.empty(keys.height, dtype=np.int64)
        numbers[keys.select(pl.arg_sort_by(order, maintain_order=True)).to_series().to_numpy()] = np.arange(keys.height)
    else:  # sorted into version order here, so numbered as they come
        rows = rows_of(fact_versions(table, rows.frame()))
        keys = rows.frame()
        numbers = np.arange(keys.height, dtype=np.int64)
    duplicated = keys.filter(pl.col(key).is_duplicated())
    current = None
    if seen is not None and duplicated.height:  # the current version of an id has its highest number
        numbered = keys.select(key).with_columns(number=pl.Series(numbers))
        current = numbered.select(pl.col("number") == pl.col("number").max().over(key)).to_series()
    dropped = drop_constraints(conn, table, primary=True)
    first = reserve_record_ids(conn, table, keys.height)
    triggers = sql.SQL("ALTER TABLE {} {} TRIGGER USER")
    conn.execute(triggers.format(sql.Identifier(table), sql.SQL("DISABLE")))
    offset = 0
    for chunk in rows.chunks():
        record_ids = pl.Series(RECORD_IDS[table], numbers[offset : offset + chunk.height] + first, dtype=pl.Int32)
        copy_frame(conn, table, chunk.select(record_ids, pl.all(), etl_run_id=pl.lit(run_id, pl.String)))
        if seen is not None:
            seen(chunk if current is None else chunk.filter(current.slice(offset, chunk.height)))
        offset += chunk.height
    conn.execute(triggers.format(sql.Identifier(table), sql.SQL("ENABLE")))
    if ids := duplicated[key].unique().sort().to_list():
        conn.execute(
            "SELECT etl.mark_current(%s::regclass, %s, %s, %s, %s::integer[])",
            (table, key, RECORD_IDS[table], FACT_ORDER[table][-1], ids),
        )
    return replace(dropped, rows=keys.height)


def reserve_record_ids(conn: psycopg.Connection, table: str, count: int) -> int:
    """Take `count` (>= 1) consecutive values of fact `table`'s record id sequence; return the first.

    Safe only under the load lock: no other writer draws from the sequence meanwhile.
    """
    row = conn.execute(
        "WITH s AS (SELECT pg_get_serial_sequence(%(table)s, %(column)s) AS seq) "
        "SELECT n, setval((SELECT seq FROM s), n + %(count)s - 1) FROM (SELECT nextval((SELECT seq FROM s)) AS n) AS f",
        {"table": table, "column": RECORD_IDS[table], "count": count},
    ).fetchone()
    assert row is not None
    return int(row[0])


def copy_dimension(
    conn: psycopg.Connection,
    table: str,
    frame: pl.DataFrame | Rows,
    run_id: str,
    seen: Callable[[pl.DataFrame], None] | None = None,
) -> int:
    """COPY a curated dimension frame straight into the empty dimension `table`: what `merge_dimension`
    would insert (each key once, at its newest version), without staging it first. Returns the rows.

    Its indexes are built after the COPY (x100, 1.6M transactions: 7.4 s with them, about 3 s without and
    built after), its primary key too when every table referencing it is empty (a first load). A streamed
    file is copied a slice at a time, each key's newest version per slice: the transform writes a key once
    (the primary key, rebuilt after, refuses a second). `seen`, if given, is called with each slice's rows as copied."""
    key = TABLE_KEYS[table]
    referencing = referencing_keys(conn, table)
    dropped = drop_constraints(conn, table, primary=all(is_empty(conn, t) for t, _, _ in referencing))
    copied = 0
    for chunk in rows_of(frame).chunks():
        newest = (
            chunk.sort([key, "etl_source_updated"], descending=[False, True])
            .unique(key, keep="first", maintain_order=True)
            .with_columns(etl_run_id=pl.lit(run_id, pl.String))
        )
        copy_frame(conn, table, newest)
        if seen is not None:
            seen(newest)
        copied += newest.height
    add_constraints(conn, dropped)
    return copied


def drop_constraints(conn: psycopg.Connection, table: str, *, primary: bool = False) -> Constraints:
    """Drop the unique keys, foreign keys and plain indexes of `table`, and, if `primary`, its primary key
    with the other tables' foreign keys to it; what `add_constraints` needs to re-add them all."""
    constraints = table_constraints(conn, table, primary=primary)
    referencing = referencing_keys(conn, table) if primary else []
    for other, name, _ in referencing:
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(other), sql.Identifier(name)))
    if constraints:
        conn.execute(
            sql.SQL("ALTER TABLE {} {}").format(
                sql.Identifier(table),
                sql.SQL(", ").join(sql.SQL("DROP CONSTRAINT {}").format(sql.Identifier(n)) for n, _ in constraints),
            )
        )
    indexes = plain_indexes(conn, table)
    for schema, name, _ in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name)))
    return Constraints(table, tuple(constraints), 0, tuple(d for _, _, d in indexes), tuple(referencing))


def add_constraints(conn: psycopg.Connection, dropped: Constraints) -> None:
    """Re-add what `drop_constraints` dropped: the keys and foreign keys in one ALTER TABLE (each unique
    index built by one sort, each foreign key checked by one join over the whole table), then the
    indexes, then other tables' foreign keys to the primary key."""
    if not (dropped.definitions or dropped.indexes):
        return
    conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (BULK_MAINTENANCE_WORK_MEM,))
    # Definitions as the catalog printed them (pg_get_constraintdef, pg_get_indexdef), re-added under the same names.
    if dropped.definitions:
        conn.execute(
            sql.SQL("ALTER TABLE {} {}").format(
                sql.Identifier(dropped.table),
                sql.SQL(", ").join(
                    sql.SQL("ADD CONSTRAINT {} {}").format(sql.Identifier(name), sql.SQL(definition))
                    for name, definition in dropped.definitions
                ),
            )
        )
    for index in dropped.indexes:
        conn.execute(sql.SQL(index))
    for other, name, definition in dropped.referencing:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(other), sql.Identifier(name), sql.SQL(definition)
            )
        )


def analyze(conn: psycopg.Connection, table: str, also: Collection[str] = ()) -> None:
    """Gather `table`'s statistics inside the load's transaction, after the bulk paths filled it: autovacuum
    analyses it only a minute or more after the commit, and the next load, planned without statistics, would
    take its natural ids for rare values repeated across the table (whole-table scans for a few rows).

    Only the columns the next load looks rows up by: the natural key, a fact's row hash and current flag, and
    `also` (those the dashboard summaries find a run's payments by, summaries.LOOKED_UP). Statistics of every
    column doubled a first load's fact step (x10: 1.1 s -> 2.5 s)."""
    looked_up = [
        TABLE_KEYS[table],
        *(["etl_row_hash", "etl_current"] if table in FACTS else []),
        *also,
    ]
    columns = sql.SQL(", ").join(map(sql.Identifier, looked_up))
    conn.execute(sql.SQL("ANALYZE {} ({})").format(sql.Identifier(table), columns))


def is_bulk(conn: psycopg.Connection, table: str) -> bool:
    """Whether stg_<table> (analysed) is large enough, against the rows `table` holds, to rebuild the
    table's version key and re-check its foreign keys once rather than per inserted row."""
    row = conn.execute(
        "SELECT s.reltuples, greatest(t.reltuples, 0) FROM pg_class s, pg_class t "
        "WHERE s.oid = to_regclass(%s) AND t.oid = to_regclass(%s)",
        (f"pg_temp.stg_{table}", table),
    ).fetchone()
    assert row is not None
    staged, existing = row
    return bool(staged >= BULK_FACT_ROWS and staged * BULK_FACT_RATIO >= existing)


def table_constraints(conn: psycopg.Connection, table: str, *, primary: bool = False) -> list[tuple[str, str]]:
    """(name, definition) of the unique keys, the primary key if `primary`, then the foreign keys, of `table`."""
    kinds = ["u", "p", "f"] if primary else ["u", "f"]
    return [
        (name, definition)
        for name, definition in conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            'WHERE conrelid = to_regclass(%s) AND contype = ANY(%s::"char"[]) ORDER BY contype DESC, conname',
            (table, kinds),
        )
    ]


def referencing_keys(conn: psycopg.Connection, table: str) -> list[tuple[str, str, str]]:
    """(table, name, definition) of the other tables' foreign keys to `table`."""
    return _triples(
        conn,
        "SELECT t.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "JOIN pg_class t ON t.oid = c.conrelid "
        "WHERE c.confrelid = to_regclass(%s) AND c.contype = 'f' AND c.conrelid <> c.confrelid ORDER BY 1, 2",
        table,
    )


def plain_indexes(conn: psycopg.Connection, table: str) -> list[tuple[str, str, str]]:
    """(schema, name, CREATE INDEX statement) of the indexes of `table` that back no constraint."""
    return _triples(
        conn,
        "SELECT n.nspname, c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE i.indrelid = to_regclass(%s) "
        "AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid) "
        "ORDER BY c.relname",
        table,
    )


def _triples(conn: psycopg.Connection, query: str, table: str) -> list[tuple[str, str, str]]:
    return [(str(a), str(b), str(c)) for a, b, c in conn.execute(query, (table,))]
