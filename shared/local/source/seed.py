"""Create the totesys schema and load the real 2024-11-15 snapshot, optionally scaled N times."""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from importlib import resources

import polars as pl
import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from shared.contract import SOURCE_FOREIGN_KEYS, SOURCE_SCHEMA, SOURCE_TABLES, SOURCE_TEXT_DATES, primary_key
from shared.errors import TerminalError

SNAPSHOT_COUNTS = {
    "address": 30,
    "counterparty": 20,
    "currency": 3,
    "department": 8,
    "design": 473,
    "payment_type": 4,
    "staff": 20,
    "sales_order": 11187,
    "purchase_order": 4649,
    "transaction": 15836,
    "payment": 15836,
}
# Copy k of a scaled seed is shifted k * SPREAD_DAYS / N days forward, so N copies fill the two years
# after the snapshot without passing it by more than SPREAD_DAYS (and never reaching the future).
SPREAD_DAYS = 730
# Rows per COPY batch of a scaled seed: big enough that per-batch costs vanish, small enough that
# a batch's CSV (~12 MB) and the COPY queue keep memory flat (~300 MB peak) at any scale.
BATCH_ROWS = 100_000
# schema.sql: the keys, unique indexes and foreign keys follow this line (see schema_parts).
CONSTRAINTS_MARKER = "-- @constraints"
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def schema_sql() -> str:
    """The source DDL (the totesys schema as Prisma creates it) as one SQL script."""
    return resources.files("shared.local.source").joinpath("schema.sql").read_text()


def schema_parts() -> tuple[str, str]:
    """The source DDL split for a bulk load: (types and bare tables, keys + indexes + foreign keys)."""
    tables, marker, constraints = schema_sql().partition(CONSTRAINTS_MARKER)
    if not marker:
        raise TerminalError(f"shared/local/source/schema.sql lacks the line {CONSTRAINTS_MARKER!r}")
    return tables, constraints.partition("\n")[2]


def read_snapshot(table: str) -> pl.DataFrame:
    """One table of the shipped snapshot, typed exactly as the source (contract.SOURCE_SCHEMA)."""
    schema = SOURCE_SCHEMA[table]
    path = resources.files("shared.local.source").joinpath("snapshot", f"{table}.jsonl.gz")
    with resources.as_file(path) as file:
        raw = pl.read_ndjson(file, infer_schema_length=None)
    exprs = []
    for name, dtype in schema.items():
        col = pl.col(name)
        if dtype == pl.Datetime("ms"):
            exprs.append(col.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_unit="ms").alias(name))
        elif isinstance(dtype, pl.Decimal):
            exprs.append(col.cast(pl.String).cast(dtype).alias(name))  # via text: no float rounding
        else:
            exprs.append(col.cast(dtype).alias(name))
    return raw.select(exprs)


def shift_copy(frame: pl.DataFrame, table: str, k: int, max_ids: dict[str, int], days: int) -> pl.DataFrame:
    """Copy k of a table: ids and foreign keys offset by k * max id, times and dates `days` later."""
    if k == 0:
        return frame
    offsets = {primary_key(table): max_ids[table] * k}
    offsets |= {col: max_ids[ref] * k for (t, col), ref in SOURCE_FOREIGN_KEYS.items() if t == table}
    delta = timedelta(days=days)
    exprs = [(pl.col(c) + off).cast(pl.Int32) for c, off in offsets.items()]
    exprs += [pl.col(c) + delta for c in ("created_at", "last_updated")]
    exprs += [
        (pl.col(c).str.to_date("%Y-%m-%d") + delta).dt.strftime("%Y-%m-%d").alias(c)
        for c in SOURCE_TEXT_DATES.get(table, ())
    ]
    return frame.with_columns(exprs)


def scaled_frames(scale: int, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[str, Iterator[pl.DataFrame]]]:
    """Per table (in FK order), the `scale` shifted copies of the snapshot, several copies per frame.

    A frame holds as many whole copies as fit in `batch_rows` (at least one), so memory stays bounded
    whatever the scale while the CSV writer and COPY see few, large batches.
    """
    snapshot = {t: read_snapshot(t) for t in SOURCE_TABLES}
    max_ids = {t: f.height and int(f.select(pl.col(primary_key(t)).max()).item()) for t, f in snapshot.items()}

    def copies(table: str) -> Iterator[pl.DataFrame]:
        per_batch = max(1, batch_rows // max(1, snapshot[table].height))
        for start in range(0, scale, per_batch):
            batch = range(start, min(start + per_batch, scale))
            yield pl.concat([shift_copy(snapshot[table], table, k, max_ids, k * SPREAD_DAYS // scale) for k in batch])

    for table in SOURCE_TABLES:
        yield table, copies(table)


def copy_frames(conn: psycopg.Connection, table: str, frames: Iterable[pl.DataFrame], *, freeze: bool = False) -> int:
    """COPY frames into `table` (columns by name) as CSV in one COPY statement; return the row count.

    `freeze` writes the rows frozen (COPY FREEZE), which needs the table created or truncated in
    the current transaction; later scans then need not set hint bits page by page.
    """
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        return 0
    options = sql.SQL("FORMAT csv, HEADER false, FREEZE {}").format(sql.SQL("true" if freeze else "false"))
    query = sql.SQL("COPY {} ({}) FROM STDIN ({})").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, first.columns)), options
    )
    rows = 0
    # A writer thread sends while polars writes the next batch (at most 1024 chunks of 128 kB queued).
    with conn.cursor() as cur, cur.copy(query, writer=QueuedLibpqWriter(cur)) as copy:
        for frame in itertools.chain([first], frames):
            buffer = io.BytesIO()
            frame.write_csv(buffer, include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.3f")
            copy.write(buffer.getbuffer())
            rows += frame.height
    return rows


def copy_frame(conn: psycopg.Connection, table: str, frame: pl.DataFrame) -> None:
    """COPY a frame into `table` (columns by name) as CSV."""
    copy_frames(conn, table, [frame])


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Row count of every source table that exists (a missing table counts as -1)."""
    counts = {}
    for table in SOURCE_TABLES:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",)).fetchone()
        if not (exists and exists[0]):
            counts[table] = -1
            continue
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def seed_source(url: str, *, scale: int = 1, replace: bool = False, progress: Progress = _quiet) -> dict[str, int]:
    """Create the source schema in the database at `url` and load the snapshot x scale; return counts."""
    if scale < 1:
        raise TerminalError(f"--scale must be a positive integer, got {scale}")
    with psycopg.connect(url) as conn:
        counts = table_counts(conn)
        if any(c > 0 for c in counts.values()) and not replace:
            raise TerminalError(
                "the source database already holds rows "
                f"({sum(c for c in counts.values() if c > 0)} in all): pass --replace to drop and re-seed it"
            )
        started = time.perf_counter()
        tables_ddl, constraints_ddl = schema_parts()
        # One transaction: a failed seed leaves the database as it was. The tables are created
        # without keys or foreign keys, so COPY only appends (FREEZE: this transaction created them);
        # the keys and unique indexes are then built by one sort each and every foreign key is
        # validated by one join, far cheaper than checking each row's constraints as it arrives.
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
        # Room for the bulk steps (this transaction only): the key sorts and the foreign-key hash
        # joins over millions of rows then run in memory instead of spilling to disk.
        conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
        conn.execute("SET LOCAL work_mem = '64MB'")
        conn.execute(tables_ddl.encode())
        for table, frames in scaled_frames(scale):
            rows = copy_frames(conn, table, frames, freeze=True)
            conn.execute(
                sql.SQL("SELECT setval(pg_get_serial_sequence({t}, {k}), (SELECT max({kc}) FROM {ti}))").format(
                    t=sql.Literal(table),
                    k=sql.Literal(primary_key(table)),
                    kc=sql.Identifier(primary_key(table)),
                    ti=sql.Identifier(table),
                )
            )
            progress(f"seeded {table}: {rows} rows")
        loaded = time.perf_counter()
        conn.execute(constraints_ddl.encode())
        progress(
            f"built keys and validated foreign keys in {time.perf_counter() - loaded:.1f} s "
            f"(rows loaded in {loaded - started:.1f} s)"
        )
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")
        return table_counts(conn)
