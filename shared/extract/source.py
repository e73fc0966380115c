"""What the extract reads from totesys, and how: the snapshot, the catalog, and a table's changed rows.

- The snapshot: one REPEATABLE READ, READ ONLY transaction per extract run. Errors name the server (host,
  port, database) and the setting TOTESYS_DB_URL, never the URL itself.
- The catalog: the source tables as it shows them, checked against the fixed list in shared.contract
  (SOURCE_SCHEMA), each column with the Parquet dtype it is archived as. Only names from that list (and
  column names the catalog returns for those tables) ever reach SQL, always quoted with psycopg.sql.Identifier.
- The rows: one table's changed rows streamed out of PostgreSQL into one local Parquet file.
  `COPY (SELECT ...) TO STDOUT (FORMAT csv)` is read by a reader thread into batches of `batch_rows` rows;
  polars parses each batch into a frame typed like the source and its streaming Parquet sink writes it
  and lets it go. At most QUEUE_DEPTH raw batches wait between the two, so memory is bounded by the
  batch size, never by the table size, and reading the socket overlaps parsing and compressing.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import polars as pl
import psycopg
from polars.io.plugins import register_io_source
from psycopg import sql

from shared.connection import connect
from shared.contract import SOURCE_SCHEMA, SOURCE_TABLES, primary_key
from shared.errors import TerminalError
from shared.settings import Settings

# --- the snapshot ------------------------------------------------------------------------------------

SETTING = "TOTESYS_DB_URL"
APPLICATION_NAME = "totes-extract"
# Session settings that make COPY's text output parse the same way on every server (transaction-local).
SESSION_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "client_encoding": "UTF8"}


def connect_source(settings: Settings) -> psycopg.Connection:
    """A connection to the source named by TOTESYS_DB_URL within DB_CONNECT_TIMEOUT; TerminalError if the
    setting is malformed, TransientError naming host and setting if it cannot be opened."""
    secret = settings.require("source").totesys_db_url
    assert secret is not None
    return connect(
        secret,
        SETTING,
        timeout_s=settings.db_connect_timeout,
        what="extract",
        role="source database",
        application_name=APPLICATION_NAME,
        consequence="nothing was extracted and the watermark is unchanged; the next scheduled run tries again",
    )


@contextlib.contextmanager
def source_snapshot(settings: Settings) -> Iterator[psycopg.Connection]:
    """A source connection inside one REPEATABLE READ, READ ONLY transaction: every query sees the same
    consistent snapshot and nothing can be written."""
    conn = connect_source(settings)
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            for name, value in SESSION_SETTINGS.items():
                conn.execute("SELECT set_config(%s, %s, true)", (name, value))
            yield conn
    finally:
        conn.close()


def database_now(conn: psycopg.Connection) -> datetime:
    """The database clock at the start of the snapshot transaction (transaction_timestamp()), in UTC."""
    row = conn.execute("SELECT transaction_timestamp()").fetchone()
    assert row is not None and isinstance(row[0], datetime)
    return row[0].astimezone(UTC)


# --- the catalog -------------------------------------------------------------------------------------

# typname, typtype, atttypmod, format_type for every live column of the tables in the current schema.
CATALOG_QUERY = """
SELECT c.relname, a.attname, t.typname, t.typtype, a.atttypmod,
       format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)
ORDER BY c.relname, a.attnum
"""
_INTEGERS: dict[str, pl.DataType] = {"int2": pl.Int16(), "int4": pl.Int32(), "int8": pl.Int64()}
_FLOATS: dict[str, pl.DataType] = {"float4": pl.Float32(), "float8": pl.Float64()}
_TEXTS = {"text", "varchar", "bpchar", "name", "citext"}
MAX_DECIMAL_PRECISION = 38


@dataclass(frozen=True)
class SourceColumn:
    """One column of a source table: its name, catalog type, Parquet dtype and whether it is known."""

    name: str
    pg_type: str
    dtype: pl.DataType
    known: bool
    # Types with no faithful Parquet mapping are read through ::text and archived as strings.
    as_text: bool = False


@dataclass(frozen=True)
class SourceTable:
    """One source table as it exists now: schema, name and columns in catalog order."""

    schema: str
    name: str
    columns: tuple[SourceColumn, ...]

    @property
    def extra_columns(self) -> tuple[str, ...]:
        """Names of the columns the pipeline does not know (archived as found)."""
        return tuple(c.name for c in self.columns if not c.known)

    @property
    def polars_schema(self) -> dict[str, pl.DataType]:
        """Column name -> dtype of the Parquet file."""
        return {c.name: c.dtype for c in self.columns}


def polars_type(typname: str, typtype: str, typmod: int) -> tuple[pl.DataType, bool]:
    """The Parquet dtype for a PostgreSQL column type, and whether it must be read as ::text."""
    if typtype == "e" or typname in _TEXTS:
        return pl.String(), False
    if typname in _INTEGERS:
        return _INTEGERS[typname], False
    if typname in _FLOATS:
        return _FLOATS[typname], False
    if typname == "bool":
        return pl.Boolean(), False
    if typname == "date":
        return pl.Date(), False
    if typname in ("timestamp", "timestamptz"):
        unit: Literal["ms", "us"] = "ms" if 0 <= typmod <= 3 else "us"
        return pl.Datetime(unit, "UTC" if typname == "timestamptz" else None), False
    if typname == "numeric" and typmod >= 4:
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
        if 0 < precision <= MAX_DECIMAL_PRECISION and scale <= precision:
            return pl.Decimal(precision, scale), False
    # Unbounded numeric, json, uuid, arrays, intervals, ...: keep the exact text form.
    return pl.String(), True


def read_catalog(conn: psycopg.Connection) -> dict[str, SourceTable]:
    """Every table of SOURCE_TABLES as the catalog shows it; TerminalError naming what is missing or
    changed type."""
    schema_row = conn.execute("SELECT current_schema()").fetchone()
    if schema_row is None or schema_row[0] is None:
        raise TerminalError(
            "the extract's database role can use no schema on its search_path: grant it USAGE on the "
            "source schema (and SELECT on its tables); the extract stops without writing anything"
        )
    schema = str(schema_row[0])
    rows = conn.execute(CATALOG_QUERY, (list(SOURCE_TABLES),)).fetchall()
    found: dict[str, list[SourceColumn]] = {}
    for table, column, typname, typtype, typmod, formatted in rows:
        dtype, as_text = polars_type(typname, typtype, typmod)
        known = column in SOURCE_SCHEMA[table]
        # Enum names are quoted mixed-case identifiers: report them bare, as the catalog names them.
        pg_type = typname if typtype == "e" else formatted
        found.setdefault(table, []).append(SourceColumn(column, pg_type, dtype, known, as_text))
    missing_tables = [t for t in SOURCE_TABLES if t not in found]
    if missing_tables:
        raise TerminalError(
            f"source table(s) missing in schema {schema!r}: {', '.join(missing_tables)}; "
            "the extract stops without writing anything until the source schema is restored"
        )
    problems = []
    for table, expected in SOURCE_SCHEMA.items():
        columns = {c.name: c for c in found[table]}
        for name, dtype in expected.items():
            column = columns.get(name)
            if column is None:
                problems.append(f"{table}.{name} is missing")
            elif column.dtype != dtype:
                problems.append(f"{table}.{name} is {column.pg_type}, expected a type read as {dtype}")
    if problems:
        raise TerminalError(
            "source columns the pipeline requires do not match: " + "; ".join(problems) + "; "
            "the extract stops without writing anything until the source schema is fixed"
        )
    return {t: SourceTable(schema, t, tuple(found[t])) for t in SOURCE_TABLES}


# --- the rows ----------------------------------------------------------------------------------------

DEFAULT_BATCH_ROWS = 100_000
QUEUE_DEPTH = 2
WATERMARK_COLUMN = "last_updated"
ROW_HASH = "__totes_row_hash"
_INDEX = "__totes_index"
# Rows of a table's lookback tail kept in the state (12 bytes each there, encoded): at 100 changes/s the
# simulated source writes about 90 payment rows/s, 54,000 in the default 10-minute lookback.
TAIL_LIMIT = 100_000
_TIMESTAMP = "%Y-%m-%d %H:%M:%S%.f"
_HASH_CHUNK = 1 << 20
_END = object()


@dataclass(frozen=True)
class TableFile:
    """A Parquet file of one table's changed rows on local disk, with what the manifest says of it."""

    path: Path
    rows: int
    bytes: int
    sha256: str
    max_last_updated: datetime


@dataclass(frozen=True)
class TableRead:
    """One table's read: rows in the window, the file of those not archived yet (None when every row
    was), the tail to skip next time (None: too many rows to keep), the newest last_updated written that
    is not past the `ceiling` (what the watermark may follow), and (key, last_updated) of the rows written
    that are stamped past it."""

    rows_read: int
    file: TableFile | None
    tail: pl.DataFrame | None
    newest: datetime | None = None
    future: pl.DataFrame | None = None


def copy_query(table: SourceTable, after: datetime | None) -> tuple[sql.Composed, tuple[datetime, ...]]:
    """The COPY statement for the rows of `table` changed after `after` (every row when None), and its
    parameters."""
    columns = sql.SQL(", ").join(select_expression(c) for c in table.columns)
    select = sql.SQL("SELECT {} FROM {}").format(columns, sql.Identifier(table.schema, table.name))
    params: tuple[datetime, ...] = ()
    if after is not None:
        select = sql.SQL("{} WHERE {} > %s").format(select, sql.Identifier(WATERMARK_COLUMN))
        params = (after,)
    return sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(select), params


def _epoch_ms(column: SourceColumn) -> bool:
    return isinstance(column.dtype, pl.Datetime) and column.dtype.time_unit == "ms"


def select_expression(column: SourceColumn) -> sql.Composable:
    """How COPY reads `column`: as it is, through ::text (no faithful dtype), or a millisecond timestamp
    as its exact epoch milliseconds (cheaper to send and to parse than its text)."""
    name = sql.Identifier(column.name)
    if column.as_text:
        return sql.SQL("{}::text").format(name)
    if _epoch_ms(column):
        return sql.SQL("round(date_part('epoch', {}) * 1000)::int8").format(name)
    return name


def parse_expression(column: SourceColumn) -> pl.Expr:
    """The polars expression turning COPY's CSV text of `column` into its Parquet dtype."""
    col = pl.col(column.name)
    dtype = column.dtype
    if isinstance(dtype, pl.String):
        return col
    if isinstance(dtype, pl.Boolean):
        return col == "t"
    if isinstance(dtype, pl.Datetime) and _epoch_ms(column):
        epoch = col.cast(pl.Int64).cast(pl.Datetime("ms"))
        return epoch.dt.replace_time_zone(dtype.time_zone) if dtype.time_zone else epoch
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            return col.str.to_datetime(_TIMESTAMP + "%#z", time_unit=dtype.time_unit, time_zone="UTC")
        return col.str.to_datetime(_TIMESTAMP, time_unit=dtype.time_unit)
    if isinstance(dtype, pl.Date):
        return col.str.to_date("%Y-%m-%d")
    return col.cast(dtype)


def parse_batch(table: SourceTable, csv: bytes) -> pl.DataFrame:
    """A batch of COPY CSV rows of `table` as a frame typed like the source.

    CSV keeps NULL (an empty unquoted field) apart from the empty string (a quoted empty field)."""
    text_schema = {c.name: pl.String() for c in table.columns}
    try:
        frame = pl.read_csv(csv, has_header=False, schema=text_schema, quote_char='"')
        return frame.select(parse_expression(c) for c in table.columns)
    except pl.exceptions.PolarsError as exc:
        raise TerminalError(
            f"source table {table.name}: a value could not be read as its column type ({exc}); "
            "nothing of this run is committed and the next run tries again"
        ) from exc


class _Stopped(Exception):
    """The consumer gave up: the reader leaves its COPY."""


class _CopyReader(threading.Thread):
    """Reads a COPY into raw CSV batches of `batch_rows` rows on a bounded queue; stoppable."""

    def __init__(
        self, conn: psycopg.Connection, query: sql.Composed, params: tuple[datetime, ...], batch_rows: int
    ) -> None:
        super().__init__(name="totes-extract-copy", daemon=True)
        self.conn, self.query, self.params, self.batch_rows = conn, query, params, batch_rows
        self.batches: queue.Queue[object] = queue.Queue(maxsize=QUEUE_DEPTH)
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            with self.conn.cursor().copy(self.query, self.params) as copy:
                buffer, rows = bytearray(), 0
                # libpq hands COPY data over one row at a time.
                while chunk := copy.read():
                    buffer += chunk
                    rows += 1
                    if rows == self.batch_rows:
                        if not self._put(bytes(buffer)):
                            raise _Stopped  # leaving the block by an exception cancels the COPY
                        buffer, rows = bytearray(), 0
                if buffer:
                    self._put(bytes(buffer))
            self._put(_END)
        except _Stopped:
            pass
        except BaseException as exc:
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self.stopped.is_set():
            try:
                self.batches.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[bytes]:
        while (item := self.batches.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item

    def stop(self) -> None:
        """Make the reader give up (it cancels its COPY as it leaves) and wait for it."""
        self.stopped.set()
        if self.is_alive():
            self.join()


def read_batches(
    conn: psycopg.Connection, table: SourceTable, after: datetime | None, batch_rows: int = DEFAULT_BATCH_ROWS
) -> Generator[pl.DataFrame]:
    """The rows of `table` with last_updated > `after` (all rows when None), as frames typed like the source
    of up to `batch_rows` rows each: COPY read by a thread at most QUEUE_DEPTH batches ahead. Closing the
    generator early cancels the COPY, which aborts the caller's transaction."""
    query, params = copy_query(table, after)
    reader = _CopyReader(conn, query, params, batch_rows)
    reader.start()
    try:
        for csv in reader:
            yield parse_batch(table, csv)
    finally:
        reader.stop()


def write_table_parquet(
    conn: psycopg.Connection,
    table: SourceTable,
    after: datetime | None,
    path: Path,
    *,
    lookback: timedelta,
    archived: pl.DataFrame | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    ceiling: datetime | None = None,
) -> TableRead:
    """Read the rows of `table` with last_updated > `after` (all rows when None) and write those not in
    `archived` (key, row hash) to Parquet at `path`; the file (None if no row is new) and the new tail.

    Rows stamped after `ceiling` (the source's clock, UTC) are written but kept out of the tail and of
    `newest`: they are archived again by every run until their time comes, and never move the watermark."""
    frames = read_batches(conn, table, after, batch_rows)
    key = primary_key(table.name)
    rows = rows_read = 0
    max_last_updated: datetime | None = None
    limit = None if ceiling is None else like_column(ceiling, table)
    tail = Tail(key, None if after is None else after + lookback, lookback, limit)
    stamps = Stamps(key, limit)
    errors: list[BaseException] = []

    def batches(
        _columns: list[str] | None, _predicate: pl.Expr | None, _n_rows: int | None, _size: int | None
    ) -> Iterator[pl.DataFrame]:
        nonlocal rows, rows_read, max_last_updated
        try:
            for frame in frames:
                rows_read += frame.height
                tail.add(frame)
                if archived is not None and archived.height:
                    frame = drop_archived(frame, archived, key)
                rows += frame.height
                newest = frame.get_column(WATERMARK_COLUMN).max()
                if isinstance(newest, datetime) and (max_last_updated is None or newest > max_last_updated):
                    max_last_updated = newest
                stamps.add(frame)
                yield frame
        except BaseException as exc:
            errors.append(exc)  # polars re-raises it wrapped or not: keep it for an exact re-raise
            raise

    source = register_io_source(batches, schema=table.polars_schema, explain_name=f"COPY {table.name}")
    try:
        source.sink_parquet(path, compression="zstd", row_group_size=batch_rows, statistics=True)
    except Exception:
        if errors:
            raise errors[0] from None
        raise
    finally:
        frames.close()  # the COPY is cancelled if polars stopped reading early
    if rows == 0:
        path.unlink(missing_ok=True)
        return TableRead(rows_read, None, tail.rows())
    if max_last_updated is None:
        raise TerminalError(
            f"source table {table.name}: {rows} new rows have no {WATERMARK_COLUMN}, so no watermark can "
            "follow them; the extract stops without committing anything"
        )
    size, digest = file_digest(path)
    file = TableFile(path, rows, size, digest, max_last_updated)
    return TableRead(rows_read, file, tail.rows(), stamps.newest, stamps.future)


def like_column(clock: datetime, table: SourceTable) -> datetime:
    """The UTC `clock` comparable with `table`'s last_updated: naive for a timestamp without time zone."""
    dtype = next((c.dtype for c in table.columns if c.name == WATERMARK_COLUMN), None)
    aware = isinstance(dtype, pl.Datetime) and dtype.time_zone is not None
    utc = clock.astimezone(UTC)
    return utc if aware else utc.replace(tzinfo=None)


class Stamps:
    """The newest last_updated not past `ceiling`, and (key, last_updated) of the rows past it."""

    def __init__(self, key: str, ceiling: datetime | None) -> None:
        self.key, self.ceiling = key, ceiling
        self.newest: datetime | None = None
        self.future: pl.DataFrame | None = None

    def add(self, frame: pl.DataFrame) -> None:
        """Take a batch of written rows into account."""
        stamp = pl.col(WATERMARK_COLUMN)
        present = frame if self.ceiling is None else frame.filter(stamp <= self.ceiling)
        newest = present.get_column(WATERMARK_COLUMN).max()
        if isinstance(newest, datetime) and (self.newest is None or newest > self.newest):
            self.newest = newest
        if self.ceiling is None or present.height == frame.height:
            return
        future = frame.filter(stamp > self.ceiling).select(self.key, WATERMARK_COLUMN)
        self.future = future if self.future is None else pl.concat([self.future, future])


def drop_archived(frame: pl.DataFrame, archived: pl.DataFrame, key: str) -> pl.DataFrame:
    """`frame` without the rows identical to an archived one: same key and same row hash."""
    suspects = frame.with_row_index(_INDEX).filter(pl.col(key).is_in(archived.get_column(key).implode()))
    if suspects.height == 0:
        return frame
    hashes = suspects.drop(_INDEX).hash_rows(seed=0).alias(ROW_HASH)
    same = suspects.select(_INDEX, key).with_columns(hashes).join(archived, on=[key, ROW_HASH], how="semi")
    if same.height == 0:
        return frame
    index = same.get_column(_INDEX).implode()
    return frame.with_row_index(_INDEX).filter(~pl.col(_INDEX).is_in(index)).drop(_INDEX)


class Tail:
    """The (key, row hash) of the rows read within `lookback` of the newest last_updated seen so far.

    The next run's window starts `lookback` before the watermark, so it re-reads these rows: the ones
    still identical are already archived and are not written again (else an idle source would yield a
    run of the same rows on every tick). More than TAIL_LIMIT rows are not kept: the next run then
    re-writes its whole window, which downstream dedupes.
    """

    def __init__(
        self, key: str, watermark: datetime | None, lookback: timedelta, ceiling: datetime | None = None
    ) -> None:
        self.key, self.newest, self.lookback, self.ceiling = key, watermark, lookback, ceiling
        self.frame: pl.DataFrame | None = None
        self.overflow = False

    def add(self, frame: pl.DataFrame) -> None:
        """Take a batch of rows into account (only the rows near the newest are hashed; rows stamped
        past the ceiling never are, so every run archives them again)."""
        if self.ceiling is not None:
            frame = frame.filter(pl.col(WATERMARK_COLUMN) <= self.ceiling)
        if self.overflow or frame.height == 0:
            return
        batch_newest = frame.get_column(WATERMARK_COLUMN).max()
        assert isinstance(batch_newest, datetime)
        if self.newest is None or batch_newest > self.newest:
            self.newest = batch_newest
        near = frame.filter(pl.col(WATERMARK_COLUMN) > self.newest - self.lookback)
        candidates = near.select(self.key, WATERMARK_COLUMN).with_columns(near.hash_rows(seed=0).alias(ROW_HASH))
        if self.frame is not None:
            candidates = pl.concat([self.frame, candidates])
        # The newest only grows, so what falls out of its lookback now never belongs to the final tail.
        self.frame = candidates.filter(pl.col(WATERMARK_COLUMN) > self.newest - self.lookback)
        if self.frame.height > TAIL_LIMIT:
            self.overflow, self.frame = True, None

    def rows(self) -> pl.DataFrame | None:
        """(key, ROW_HASH) of the tail rows; an empty frame when none were read; None on overflow."""
        if self.overflow:
            return None
        if self.frame is None:
            return pl.DataFrame(schema={self.key: pl.Int32(), ROW_HASH: pl.UInt64()})
        return self.frame.select(self.key, ROW_HASH)


def file_digest(path: Path) -> tuple[int, str]:
    """Size and sha256 hex of a file, read in 1 MiB chunks."""
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()
