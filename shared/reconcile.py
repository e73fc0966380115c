"""Reconciliation: every source table compared with what the lake last archived for it, row by row, by a content
hash; the differences written as a correction run that the transform and the load take like any other.

The extract sees a change only when `last_updated` moves. Reconcile catches the rest: rows edited without it
(edited), rows the lake never archived (missing, treated as edited) and ids gone from the source (deleted).

The hash is md5 over the row's known columns (contract.SOURCE_SCHEMA) as text, in a fixed order, NULL and separators
marked (`row_md5_sql`). The source computes it in the database and streams (id, md5) ordered by id through a
server-side cursor, so only two short columns of a batch are in Python at a time. The archived side is the
same text built with polars from the archived values (`row_md5_frame`), for the latest archived version of
each id over every raw run in run order; so raw runs written before reconcile existed need no hash column of
their own, and the extract's COPY is unchanged. The two texts agree by construction: integers and text as
they are, numeric(10,2) with its two decimals, booleans 'true'/'false', timestamps as the exact epoch
milliseconds the extract itself reads. The two sorted id streams are merge-compared in batches.

Consistency and concurrency: reconcile opens ONE REPEATABLE READ snapshot and, while holding the extract
lease for a moment, fixes it and lists the raw runs; it then releases the lease, so the extract runs on
while the tables are compared. Every change the listed runs did not archive is visible in the snapshot (a
running extract had the lease), and a later extract reads a later snapshot. A change committed before the
snapshot but archived by an extract after the listing is archived twice at worst (facts dedupe by content,
dimensions keep the newest). The edited and missing rows are re-read by id from the same snapshot and
written as raw/<table>/.../<run_id>.parquet plus raw/_runs/<run_id>.json with `"kind": "reconcile"` and
the deleted ids per table: the commit marker that triggers the transform.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
from psycopg import sql

from shared.contract import (
    JSON_TYPE,
    PARQUET_TYPE,
    RUNS_PREFIX,
    SOURCE_SCHEMA,
    SOURCE_TABLES,
    STATE_PREFIX,
    ContractError,
    RawFile,
    RawManifest,
    manifest_name,
    primary_key,
    raw_file_name,
)
from shared.errors import TerminalError, TransientError
from shared.extract import LEASE_BLOB, new_run_id
from shared.extract.source import (
    WATERMARK_COLUMN,
    SourceTable,
    database_now,
    file_digest,
    parse_batch,
    read_catalog,
    select_expression,
    source_snapshot,
)
from shared.extract.state import iso
from shared.lake import ConcurrentUpdateError, Lake
from shared.settings import Settings

log = logging.getLogger("shared.reconcile")

RECONCILE_KIND = "reconcile"
# (id, md5) pairs fetched from the source per round trip.
BATCH_ROWS = 100_000
# How long reconcile waits for a running extract to release its lease before giving up (transient).
LEASE_WAIT_S = 90.0
_NULL, _SEP = "\x1e", "\x1f"
# The folded archive index per source table (see archived_hashes), in the raw container.
INDEX_PREFIX = f"{STATE_PREFIX}reconcile/"
_INDEX = {"id": pl.Int64, "md5": pl.String, "run_id": pl.String}


@dataclass(frozen=True)
class TableReport:
    """One source table's comparison: rows compared (in the source), edited, deleted, missing, seconds."""

    table: str
    compared: int
    edited: int
    deleted: int
    missing: int
    seconds: float

    def line(self) -> str:
        """One line of `totes reconcile`."""
        return (
            f"{self.table:<15} compared {self.compared:>9}  edited {self.edited:>6}  deleted {self.deleted:>6}  "
            f"missing {self.missing:>6}  {self.seconds:7.2f} s"
        )


@dataclass(frozen=True)
class ReconcileResult:
    """What one reconciliation did: per table its report, and the correction run written (None: all equal)."""

    tables: tuple[TableReport, ...]
    run_id: str | None
    duration_s: float
    deleted: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def summary(self) -> str:
        """One log line: the run written (or none) and the totals."""
        edited = sum(t.edited + t.missing for t in self.tables)
        deleted = sum(t.deleted for t in self.tables)
        run = f"correction run {self.run_id}" if self.run_id else "no correction run (the lake matches the source)"
        return f"reconcile: {run}; {edited} rows edited or missing, {deleted} deleted, {self.duration_s:.2f} s"


def _known(table: str) -> list[str]:
    return list(SOURCE_SCHEMA[table])


def row_md5_sql(table: str) -> sql.Composed:
    """The source side of the row hash of `table`: md5 of its known columns' text, NULLs and separators marked."""
    parts = []
    for column, dtype in SOURCE_SCHEMA[table].items():
        name = sql.Identifier(column)
        text = (
            sql.SQL("round(date_part('epoch', {}) * 1000)::int8::text").format(name)
            if isinstance(dtype, pl.Datetime)
            else sql.SQL("{}::text").format(name)
        )
        parts.append(sql.SQL("coalesce({}, {})").format(text, sql.Literal(_NULL)))
    return sql.SQL("md5(concat_ws({}, {}))").format(sql.Literal(_SEP), sql.SQL(", ").join(parts))


def row_md5_frame(frame: pl.DataFrame, table: str) -> pl.Series:
    """The archived side of the row hash: per row of archived `frame`, the md5 the source computes for it."""
    texts = []
    for column, dtype in SOURCE_SCHEMA[table].items():
        col = pl.col(column).cast(dtype)
        text = col.dt.epoch("ms").cast(pl.String) if isinstance(dtype, pl.Datetime) else col.cast(pl.String)
        texts.append(text.fill_null(_NULL))
    rows = frame.select(pl.concat_str(texts, separator=_SEP).alias("text")).to_series()
    return pl.Series("md5", [hashlib.md5(t.encode(), usedforsecurity=False).hexdigest() for t in rows])


def index_names(table: str) -> tuple[str, str]:
    """The folded archive index of source `table` in the raw container: (id, md5, run_id) Parquet, folded runs."""
    return f"{INDEX_PREFIX}{table}.parquet", f"{INDEX_PREFIX}{table}.runs.json"


def _run_versions(lake: Lake, run: RawManifest, table: str) -> list[pl.DataFrame]:
    """(id, md5, run_id) of the rows of `table` that `run` archived, and of the ids it deleted (md5 null)."""
    key = primary_key(table)
    parts = []
    if gone := run.deleted.get(table):  # a reconcile run's deletions: no archived version after it
        parts.append(pl.DataFrame({"id": list(gone), "md5": None, "run_id": run.run_id}, schema=_INDEX))
    for raw in run.files:
        if raw.table == table:
            frame = pl.read_parquet(lake.get(lake.raw, raw.file), columns=_known(table))
            parts.append(
                frame.select(pl.col(key).cast(pl.Int64).alias("id"))
                .with_columns(row_md5_frame(frame, table), pl.lit(run.run_id, pl.String).alias("run_id"))
                .select(list(_INDEX))
            )
    return parts


def archived_hashes(lake: Lake, runs: list[RawManifest], table: str) -> pl.DataFrame:
    """(id, md5) of the latest archived version of each id of source `table` over `runs`, ordered by id.

    The versions are folded into an index in raw/_state/reconcile/ (the latest run id per id wins, so folding
    is order-insensitive and idempotent): each reconcile reads only the runs not folded yet. The index is
    written before the list of folded runs, so a crash between the two only folds those runs again; a lost
    ETag race leaves the other reconcile's index and folds again next time."""
    index_name, runs_name = index_names(table)
    listed = lake.read_versioned(lake.raw, runs_name)
    folded = set(json.loads(listed.data)) if listed.data else set()
    stored = lake.read_versioned(lake.raw, index_name)
    parts = [pl.read_parquet(stored.data) if stored.data and folded else pl.DataFrame(schema=_INDEX)]
    new = [
        run
        for run in runs
        if run.run_id not in folded and (table in run.deleted or any(f.table == table for f in run.files))
    ]
    for run in new:
        parts += _run_versions(lake, run, table)
    index = pl.concat(parts).sort(["id", "run_id"]).unique("id", keep="last", maintain_order=True)
    if new:
        buffer = io.BytesIO()
        index.write_parquet(buffer, compression="zstd")
        try:
            lake.write_versioned(lake.raw, index_name, buffer.getvalue(), stored.etag)
            names = sorted(folded | {run.run_id for run in new})
            lake.write_versioned(lake.raw, runs_name, json.dumps(names).encode(), listed.etag)
        except ConcurrentUpdateError:
            log.info(
                "reconcile: another reconcile updated %s/%s meanwhile; folded again next time", lake.raw, index_name
            )
    return index.filter(pl.col("md5").is_not_null()).select("id", "md5")


def raw_runs(lake: Lake) -> list[RawManifest]:
    """Every committed raw run, in run order (run ids sort by their UTC time)."""
    runs = []
    for name in lake.list(lake.raw, RUNS_PREFIX):
        run_id = name.removeprefix(RUNS_PREFIX).removesuffix(".json")
        try:
            runs.append(RawManifest.from_json(run_id, lake.get(lake.raw, name)))
        except ContractError as exc:
            log.warning(
                "reconcile: raw manifest %s/%s is unreadable (%s); its rows are not counted", lake.raw, name, exc
            )
    return sorted(runs, key=lambda run: run.run_id)


def source_hashes(conn: psycopg.Connection, table: SourceTable) -> Iterator[pl.DataFrame]:
    """(id, md5) of every row of the source `table` in the snapshot, ordered by id, BATCH_ROWS at a time."""
    key = sql.Identifier(primary_key(table.name))
    query = sql.SQL("SELECT {key}::int8, {md5} FROM {table} ORDER BY {key}").format(
        key=key, md5=row_md5_sql(table.name), table=sql.Identifier(table.schema, table.name)
    )
    with conn.cursor(name=f"totes_reconcile_{table.name}") as cursor:
        cursor.itersize = BATCH_ROWS
        cursor.execute(query)
        while rows := cursor.fetchmany(BATCH_ROWS):
            yield pl.DataFrame(rows, schema={"id": pl.Int64, "md5": pl.String}, orient="row")


@dataclass
class Differences:
    """One table's differences: ids to re-read (edited, then missing) and ids deleted, with counts."""

    compared: int = 0
    edited: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)


def compare(source: Iterator[pl.DataFrame], archived: pl.DataFrame) -> Differences:
    """Merge-compare the source's (id, md5) batches, ordered by id, with the archived (id, md5), ordered by id."""
    found = Differences()
    ids = archived.get_column("id").to_numpy()
    start = 0
    for batch in source:
        found.compared += batch.height
        end = int(np.searchsorted(ids, batch.get_column("id").to_numpy()[-1:], side="right")[0])  # ordered by id
        window = archived.slice(start, end - start)
        joined = batch.join(window, on="id", how="left", suffix="_archived")
        found.edited += joined.filter(pl.col("md5") != pl.col("md5_archived")).get_column("id").to_list()
        found.missing += joined.filter(pl.col("md5_archived").is_null()).get_column("id").to_list()
        found.deleted += window.join(batch, on="id", how="anti").get_column("id").to_list()
        start = end
    found.deleted += archived.slice(start).get_column("id").to_list()
    return found


def reconcile(settings: Settings, lake: Lake) -> ReconcileResult:
    """Compare every source table with the lake's archive; write the differences as one correction run."""
    started = time.perf_counter()
    settings.require("source", "lake")
    with source_snapshot(settings) as conn:
        clock, runs = _fix_snapshot(conn, lake)
        tables = read_catalog(conn)
        reports, reread, deleted = [], {}, {}
        for table in SOURCE_TABLES:
            table_started = time.perf_counter()
            found = compare(source_hashes(conn, tables[table]), archived_hashes(lake, runs, table))
            reports.append(
                TableReport(
                    table,
                    found.compared,
                    len(found.edited),
                    len(found.deleted),
                    len(found.missing),
                    time.perf_counter() - table_started,
                )
            )
            if found.edited or found.missing:
                reread[table] = sorted(found.edited + found.missing)
            if found.deleted:
                deleted[table] = tuple(found.deleted)
        run_id = None
        if reread or deleted:
            run_id = new_run_id(clock)
            _write_run(conn, lake, tables, run_id, clock, reread, deleted)
    result = ReconcileResult(tuple(reports), run_id, time.perf_counter() - started, deleted)
    log.info(result.summary())
    return result


def _fix_snapshot(conn: psycopg.Connection, lake: Lake) -> tuple[datetime, list[RawManifest]]:
    """Take the snapshot and list the raw runs while holding the extract lease (so no extract is between them)."""
    deadline = time.monotonic() + LEASE_WAIT_S
    while True:
        with lake.lease(lake.raw, LEASE_BLOB) as lease:
            if lease is not None:
                clock = database_now(conn)  # the snapshot is taken by this first query
                return clock, raw_runs(lake)
        if time.monotonic() > deadline:
            raise TransientError(
                f"reconcile: an extract held {lake.raw}/{LEASE_BLOB} for {LEASE_WAIT_S:.0f} s; nothing was "
                "written; the next scheduled reconcile tries again"
            )
        time.sleep(1.0)


def _write_run(
    conn: psycopg.Connection,
    lake: Lake,
    tables: dict[str, SourceTable],
    run_id: str,
    clock: datetime,
    reread: dict[str, list[int]],
    deleted: dict[str, tuple[int, ...]],
) -> None:
    """The re-read rows as raw files, then the manifest (LAST: the commit marker)."""
    files = []
    with tempfile.TemporaryDirectory(prefix="totes-reconcile-") as folder:
        for table, ids in reread.items():
            files.append(_write_table(conn, lake, tables[table], ids, run_id, clock, Path(folder) / f"{table}.parquet"))
    manifest = RawManifest(run_id, iso(clock), tuple(files), None, kind=RECONCILE_KIND, deleted=deleted)
    lake.put_once(lake.raw, manifest_name(run_id), manifest.to_json(), JSON_TYPE)


def _write_table(
    conn: psycopg.Connection, lake: Lake, table: SourceTable, ids: list[int], run_id: str, clock: datetime, path: Path
) -> RawFile:
    """The rows of `ids` of `table`, read in the snapshot as the extract reads them, into one raw file."""
    columns = sql.SQL(", ").join(select_expression(c) for c in table.columns)
    key = sql.Identifier(primary_key(table.name))
    query = sql.SQL("COPY (SELECT {} FROM {} WHERE {} = ANY(%s) ORDER BY {}) TO STDOUT (FORMAT csv)").format(
        columns, sql.Identifier(table.schema, table.name), key, key
    )
    buffer = bytearray()
    with conn.cursor().copy(query, (ids,)) as copy:
        for chunk in copy:
            buffer += chunk
    frame = parse_batch(table, bytes(buffer))
    del buffer
    frame.write_parquet(path, compression="zstd", statistics=True)
    size, digest = file_digest(path)
    name = raw_file_name(table.name, run_id, clock)
    with path.open("rb") as stream:
        lake.put_once(lake.raw, name, stream, PARQUET_TYPE)
    newest = frame.get_column(WATERMARK_COLUMN).max() if WATERMARK_COLUMN in frame.columns else None
    if frame.height != len(ids):
        raise TerminalError(f"reconcile run {run_id}: table {table.name} gave {frame.height} of {len(ids)} rows")
    return RawFile(
        table=table.name,
        file=name,
        rows=frame.height,
        sha256=digest,
        size=size,
        max_last_updated=iso(newest) if isinstance(newest, datetime) else None,
        columns=tuple((c.name, c.pg_type) for c in table.columns),
    )
