"""The steps of one load inside its transaction, in order: lock, DDL, ledger check, read and stage every
curated file, dim_date, the dimensions, the facts, the ledger row. Each step is timed; `checkpoint` is
called after each of STEPS (tests use it to crash a load at a given point).

What the load reads from the lake, the curated manifest (shared.contract.CuratedManifest) and its Parquet
files, is verified as it is read: each file against the manifest (sha256, rows) and the warehouse columns."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

import polars as pl
import psycopg
from azure.core.exceptions import ResourceNotFoundError

from shared import telemetry
from shared.contract import (
    DIMENSIONS,
    FACTS,
    TABLES,
    ContractError,
    CuratedFile,
    CuratedManifest,
    check_run_id,
    manifest_name,
)
from shared.errors import TerminalError, TransientError
from shared.lake import Lake
from shared.warehouse import bulk, deletes, ledger, merge, staging

Step = Literal["schema", "staging", "dim_date", "dims", "facts", "ledger"]
# The steps after which `checkpoint` is called, in order.
STEPS: tuple[Step, ...] = ("schema", "staging", "dim_date", "dims", "facts", "ledger")
Checkpoint = Callable[[Step], None]
# Curated files of at most this many rows are downloaded up front, PREFETCH_THREADS at a time: an incremental
# run's files are small, and their storage round trips then overlap instead of adding up.
PREFETCH_ROWS = 100_000
PREFETCH_THREADS = 8


def no_checkpoint(step: Step) -> None:
    """The checkpoint of a normal load: nothing happens between steps."""


@dataclass(frozen=True)
class Outcome:
    """What the transaction did: whether the run was loaded before, rows per table, the lag."""

    already_loaded: bool
    rows: dict[str, int]
    lag_s: float | None


@dataclass
class Batch:
    """The run's curated files once staged: columns of each table present, rows of tables already done,
    facts copied straight into their empty tables (constraints to re-add) and those facts' date bounds."""

    columns: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    copied: dict[str, bulk.Constraints] = field(default_factory=dict)
    copied_dates: list[tuple[date, date]] = field(default_factory=list)

    @property
    def staged(self) -> list[str]:
        """The tables whose rows wait in stg_<table>."""
        return [t for t in self.columns if t not in self.copied and t not in self.rows]


# In the TransientError of a run whose dimension rows an earlier run brings: an expected retry, which the
# failed-execution alert leaves out (infra/kql/alerts/failed_executions.kql).
DIMENSIONS_PENDING = "dimension rows not loaded yet"


def run_load(
    conn: psycopg.Connection,
    lake: Lake,
    run_id: str,
    timer: Timer,
    started: float,
    checkpoint: Checkpoint = no_checkpoint,
) -> Outcome:
    """Every step of loading `run_id` on `conn`, inside the caller's transaction; no commit."""
    with timer("lock"):
        ledger.lock_loads(conn)
    with timer("schema"):
        ledger.ensure_schema(conn)
        checkpoint("schema")
    with timer("ledger_check"):
        if ledger.loaded_at(conn, run_id) is not None:
            return Outcome(already_loaded=True, rows={}, lag_s=None)
    with timer("read"):
        manifest = read_manifest(lake, run_id)
    batch = stage_run(conn, lake, manifest, timer)
    checkpoint("staging")
    with timer("dim_date"):
        batch.rows["dim_date"] = merge.merge_dim_date(conn, batch.staged, batch.copied_dates).rows
        checkpoint("dim_date")
    with timer("dims"):
        merge_dimensions(conn, batch, run_id, timer)
        checkpoint("dims")
    with timer("facts"):
        merge_facts(conn, batch, run_id, timer)
        checkpoint("facts")
    if manifest.deleted:
        with timer("deletes"):
            marked = deletes.mark_deleted(conn, manifest.deleted, manifest.extracted_time or datetime.now(UTC))
            batch.rows.update({f"{table}.deleted": rows for table, rows in marked.items()})
    source_max = manifest.source_max_time
    lag = lag_s(source_max, datetime.now(UTC)) if source_max else None
    with timer("ledger"):
        ledger.record_run(
            conn,
            run_id,
            extracted_at=manifest.extracted_time,
            source_max_updated=source_max,
            row_counts=batch.rows,
            timings={**timer.timings, "total": round(time.perf_counter() - started, 4)},
        )
        checkpoint("ledger")
    return Outcome(already_loaded=False, rows=batch.rows, lag_s=lag)


def stage_run(conn: psycopg.Connection, lake: Lake, manifest: CuratedManifest, timer: Timer) -> Batch:
    """Read each curated file and COPY it into staging, or, a large file for an empty table (a first
    load), straight into its table; one frame in memory at a time (and the bytes of the small files)."""
    batch = Batch(rows=timer.rows)  # the timer's table spans report the rows counted here
    entries = [entry for table in TABLES if (entry := manifest.files.get(table)) is not None]
    with ThreadPoolExecutor(PREFETCH_THREADS) as pool:
        # The small files are downloaded at once, while the first ones are staged; a large one (a first load)
        # is downloaded when its turn comes, so memory holds one large file at a time.
        prefetched = {
            entry.table: pool.submit(fetch_curated, lake, manifest.run_id, entry)
            for entry in entries
            if entry.rows <= PREFETCH_ROWS
        }
        for entry in entries:
            _stage_file(conn, lake, manifest.run_id, entry, prefetched.pop(entry.table, None), batch, timer)
    return batch


def _stage_file(
    conn: psycopg.Connection,
    lake: Lake,
    run_id: str,
    entry: CuratedFile,
    prefetched: Future[bytes] | None,
    batch: Batch,
    timer: Timer,
) -> None:
    """Read one curated file (its bytes downloaded beforehand if `prefetched`) and stage or copy it."""
    table = entry.table
    batch.columns[table] = staging.curated_columns(conn, table)
    with timer("read", table):
        data = None if prefetched is None else prefetched.result()
        frame = read_curated(lake, run_id, entry, batch.columns[table], data)
    with timer("staging", table):
        first_load = frame.height >= bulk.FIRST_LOAD_ROWS and bulk.is_empty(conn, table)
        if first_load and table in FACTS:
            batch.copied[table] = bulk.copy_facts(conn, table, frame, run_id)
            if (bounds := merge.date_bounds(frame)) is not None:
                batch.copied_dates.append(bounds)
        elif first_load and table in DIMENSIONS:  # no date column, no foreign key
            batch.rows[table] = bulk.copy_dimension(conn, table, frame, run_id)
            bulk.analyze(conn, table)
        else:
            staging.stage(conn, table, frame)


def read_manifest(lake: Lake, run_id: str) -> CuratedManifest:
    """Read and validate the curated manifest of `run_id`; TerminalError if it is missing or invalid."""
    name = manifest_name(check_run_id(run_id))
    where = f"{lake.curated}/{name}"
    try:
        data = lake.get(lake.curated, name)
    except ResourceNotFoundError as exc:
        raise TerminalError(
            f"unknown run {run_id}: no manifest {where} (transform has not produced it); nothing is loaded"
        ) from exc
    try:
        return CuratedManifest.from_json(run_id, data)
    except ContractError as exc:
        raise TerminalError(f"run {run_id}: manifest {where} is unusable: {exc.reason}; nothing is loaded") from exc


def read_curated(
    lake: Lake, run_id: str, entry: CuratedFile, columns: Sequence[str], data: bytes | None = None
) -> pl.DataFrame:
    """Download one curated file (unless its bytes are given as `data`), check its hash, row count and
    columns; the frame in `columns` order."""
    where = _where(lake, run_id, entry)
    if data is None:
        data = fetch_curated(lake, run_id, entry)
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise TerminalError(f"{where}: sha256 {digest} differs from the manifest's {entry.sha256}")
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # polars raises several error types for a corrupt file
        raise TerminalError(f"{where}: not a readable Parquet file ({exc})") from exc
    if frame.height != entry.rows:
        raise TerminalError(f"{where}: {frame.height} rows, the manifest says {entry.rows}")
    missing = [c for c in columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in columns]
    if missing or extra:
        raise TerminalError(f"{where}: columns differ from the warehouse contract (missing {missing}, extra {extra})")
    return frame.select(columns)


def fetch_curated(lake: Lake, run_id: str, entry: CuratedFile) -> bytes:
    """The bytes of one curated file as stored (checked by `read_curated`); TerminalError if it is missing."""
    try:
        return lake.get(lake.curated, entry.file)
    except ResourceNotFoundError as exc:
        raise TerminalError(f"{_where(lake, run_id, entry)}: the file named by the manifest does not exist") from exc


def _where(lake: Lake, run_id: str, entry: CuratedFile) -> str:
    return f"run {run_id}, table {entry.table}, file {lake.curated}/{entry.file}"


def merge_dimensions(conn: psycopg.Connection, batch: Batch, run_id: str, timer: Timer) -> None:
    """Merge each staged dimension into its table (newest version wins)."""
    for table in DIMENSIONS:
        if table in batch.columns and table not in batch.rows:
            with timer.at(table):
                batch.rows[table] = merge.merge_dimension(conn, table, batch.columns[table], run_id).rows


def merge_facts(conn: psycopg.Connection, batch: Batch, run_id: str, timer: Timer) -> None:
    """Insert each fact table's new versions (or re-add the constraints of a copied one); a foreign key
    to a dimension row not loaded yet is a TransientError naming the missing ids."""
    facts = [t for t in FACTS if t in batch.columns]
    for table in facts:
        with timer.at(table):
            try:
                with conn.transaction():  # a savepoint, so the missing ids can still be queried
                    if table in batch.copied:
                        bulk.add_constraints(conn, batch.copied[table])
                        bulk.analyze(conn, table)
                        batch.rows[table] = batch.copied[table].rows
                    else:
                        batch.rows[table] = merge.insert_facts(conn, table, batch.columns[table], run_id).rows
            except psycopg.errors.ForeignKeyViolation as exc:
                missing = [
                    m for fact in facts for m in merge.missing_references(conn, fact, staged=fact not in batch.copied)
                ]
                if not missing:
                    raise
                raise TransientError(
                    f"run {run_id}: {DIMENSIONS_PENDING}; will retry ("
                    + "; ".join(map(str, missing))
                    + "). An earlier run that carries them must load first; the whole run was rolled back"
                ) from exc


def lag_s(source_time: datetime, now: datetime) -> float:
    """Seconds from a naive source-clock (UTC) time to `now`."""
    source = source_time if source_time.tzinfo else source_time.replace(tzinfo=UTC)
    return round((now - source).total_seconds(), 3)


class Timer:
    """Seconds per step (accumulated over tables) and the step/table an error happened in."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.rows: dict[str, int] = {}  # rows per table as the load counts them, for the table spans
        self.where = "connect"
        self.mark = time.perf_counter()

    @contextmanager
    def __call__(self, step: str, table: str | None = None) -> Iterator[None]:
        self.where = step if table is None else f"{step} of {table}"
        begun = time.perf_counter()
        try:
            yield
        finally:
            self.mark = time.perf_counter()
            self.timings[step] = round(self.timings.get(step, 0.0) + self.mark - begun, 4)

    @contextmanager
    def at(self, table: str) -> Iterator[None]:
        """Time `table` within the current step (as "<step>.<table>"), and name it in errors; a table span."""
        step = self.where
        self.where = f"{step} of {table}"
        begun = time.perf_counter()
        with telemetry.table_span("load", table) as span:
            yield  # an error keeps naming the table
            span.set(step=step, rows=self.rows.get(table))
        self.timings[f"{step}.{table}"] = round(time.perf_counter() - begun, 4)
        self.where = step
