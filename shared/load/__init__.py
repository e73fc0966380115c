"""The load stage: one curated run into the warehouse, whole or not at all, recorded in etl.load_run.

One transaction per run, serialised with every other load by an advisory lock:
DDL if missing -> ledger check (a loaded run is a no-op) -> COPY every curated file into staging ->
dim_date (contiguous calendar) -> the 7 dimensions (newest version wins) -> the facts (new versions only)
-> ledger row -> commit. Any error rolls all of it back. A large fact or dimension file for an empty
table (a first load) is copied straight into it instead of staging; a fact table's constraints are
re-added at the facts step.

Each step is timed; `checkpoint` is called after each of STEPS (tests use it to crash a load at a given
point). What the load reads from the lake, the curated manifest (shared.contract.CuratedManifest) and its
Parquet files, is verified as it is read: each file against the manifest (sha256, rows) and the warehouse
columns. The SQL is shared.warehouse's.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

import polars as pl
import psycopg
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import TextBase64EncodePolicy

from shared import telemetry
from shared.contract import (
    DIMENSIONS,
    FACTS,
    TABLES,
    ContractError,
    CuratedFile,
    CuratedManifest,
    LoadMessage,
    check_run_id,
    manifest_name,
)
from shared.errors import TerminalError, TransientError
from shared.lake import Lake, io_pool
from shared.settings import Settings
from shared.warehouse import bulk, deletes, ledger, merge, staging, summaries
from shared.warehouse.connect import connect_warehouse
from shared.warehouse.figures import Figures

log = logging.getLogger(__name__)

OK_MARKER = "TOTES_LOAD_OK"


@dataclass(frozen=True)
class LoadResult:
    """What loading one run did: rows inserted or updated per warehouse table, seconds per step."""

    run_id: str
    already_loaded: bool
    rows: dict[str, int]
    timings: dict[str, float]
    duration_s: float
    lag_s: float | None


def parse_message(body: str) -> str:
    """The run id of a load-jobs message {"run_id": ...}; TerminalError if the message is unusable."""
    try:
        message = LoadMessage.from_json(body)
    except ContractError as exc:
        raise TerminalError(f"load message {exc.reason}: {body[:120]!r}") from exc
    return check_run_id(message.run_id)


def load(settings: Settings, lake: Lake, run_id: str, *, traceparent: str | None = None) -> LoadResult:
    """Load curated run `run_id` into the warehouse in one transaction; a run in the ledger is a no-op.

    Raises TerminalError for input that cannot load (unknown run, bad manifest or file) and
    TransientError when a retry may succeed (warehouse unreachable, dimension rows not loaded yet).
    The load's span is a child of `traceparent` (the load message's), else of the curated manifest's trace.
    """
    return _load(settings, lake, run_id, no_checkpoint, traceparent=traceparent)


def _load(
    settings: Settings, lake: Lake, run_id: str, checkpoint: Checkpoint, *, traceparent: str | None = None
) -> LoadResult:
    check_run_id(run_id)
    with telemetry.stage_span("load", run_id, traceparent=traceparent or (lambda: _run_trace(lake, run_id))) as span:
        result = _load_run(settings, lake, run_id, checkpoint)
        span.finish("already_loaded" if result.already_loaded else "loaded", result.rows)
    if result.lag_s is not None:
        telemetry.record_lag(result.lag_s)
    return result


def _run_trace(lake: Lake, run_id: str) -> str | None:
    """The traceparent in the curated manifest of `run_id` (None if it has none or cannot be read)."""
    try:
        return telemetry.traceparent_in(lake.read_json(lake.curated, manifest_name(run_id)))
    except (ResourceNotFoundError, ValueError, TransientError):  # the load itself reports these
        return None


def _load_run(settings: Settings, lake: Lake, run_id: str, checkpoint: Checkpoint) -> LoadResult:
    started = time.perf_counter()
    timer = Timer()
    try:
        with _connect(settings, f"run {run_id}") as conn:
            with conn.transaction():
                outcome = run_load(conn, lake, run_id, timer, started, checkpoint)
            if not outcome.already_loaded:
                timer.timings["commit"] = round(time.perf_counter() - timer.mark, 4)
    except psycopg.errors.ForeignKeyViolation as exc:
        raise TransientError(
            f"run {run_id}: {timer.where} hit a missing dimension row ({exc}); rolled back, will retry"
        ) from exc
    except psycopg.OperationalError as exc:
        raise TransientError(
            f"run {run_id}: warehouse error during {timer.where} ({exc}); rolled back, the queue retries"
        ) from exc
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        raise TerminalError(
            f"run {run_id}: the warehouse rejected {timer.where} ({exc}); rolled back, nothing is loaded. "
            "Fix the curated run and replay it"
        ) from exc
    duration = round(time.perf_counter() - started, 4)
    result = LoadResult(
        run_id=run_id,
        already_loaded=outcome.already_loaded,
        rows=outcome.rows,
        timings=timer.timings,
        duration_s=duration,
        lag_s=outcome.lag_s,
    )
    if result.already_loaded:
        log.info("load of run %s skipped: already in the ledger, nothing changed", run_id)
    else:
        log.info(
            "%s run_id=%s rows=%s duration_s=%.3f lag_s=%s",
            OK_MARKER,
            run_id,
            json.dumps(result.rows, separators=(",", ":")),
            duration,
            "null" if result.lag_s is None else f"{result.lag_s:.1f}",
        )
    return result


def load_message(settings: Settings, lake: Lake, body: str) -> LoadResult:
    """Load the run a load-jobs message names (parse_message, then load), in the trace the message carries."""
    return load(settings, lake, parse_message(body), traceparent=telemetry.traceparent_in(body))


def send_to_poison(settings: Settings, lake: Lake, body: str) -> None:
    """Put a message on the load queue's poison queue as it came (base64 text, like the Functions host)."""
    client = lake.queues.get_queue_client(settings.poison_queue, message_encode_policy=TextBase64EncodePolicy())
    try:
        client.send_message(body)
    except ResourceNotFoundError:
        client.create_queue()
        client.send_message(body)


def status(settings: Settings, limit: int = 10) -> dict[str, Any]:
    """The newest `limit` ledger rows and the current lag: {"runs": [...], "lag_s", "source_max_updated"}.

    Each run: run_id, extracted_at, source_max_updated, loaded_at, row_counts (table -> rows inserted
    or updated), timings, duration_s, lag_s (loaded_at - source_max_updated). The current lag is now -
    the newest source change loaded (the source clock is naive UTC); None before the first load.
    """
    with _connect(settings, "status") as conn:
        row = conn.execute("SELECT to_regclass('etl.load_run') IS NOT NULL").fetchone()
        if not (row and row[0]):
            return {"runs": [], "lag_s": None, "source_max_updated": None}
        cur = conn.execute(
            "SELECT run_id, extracted_at, source_max_updated, loaded_at, row_counts, timings "
            "FROM etl.load_run ORDER BY loaded_at DESC, run_id DESC LIMIT %s",
            (limit,),
        )
        runs = []
        for run_id, extracted_at, source_max, loaded, counts, timings in cur:
            runs.append(
                {
                    "run_id": run_id,
                    "extracted_at": extracted_at,
                    "source_max_updated": source_max,
                    "loaded_at": loaded,
                    "row_counts": counts,
                    "timings": timings,
                    "duration_s": timings.get("total"),
                    "lag_s": None if source_max is None else lag_s(source_max, loaded),
                }
            )
        newest_row = conn.execute("SELECT max(source_max_updated) FROM etl.load_run").fetchone()
    newest = newest_row[0] if newest_row else None
    return {
        "runs": runs,
        "source_max_updated": newest,
        "lag_s": None if newest is None else lag_s(newest, datetime.now(UTC)),
    }


@contextmanager
def _connect(settings: Settings, what: str) -> Iterator[psycopg.Connection]:
    conn = connect_warehouse(
        settings, what=what, consequence="nothing was loaded, the queue retries later", autocommit=True
    )
    with conn:
        yield conn


# --- the steps of one load, inside its transaction ---------------------------------------------------

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
    facts copied straight into their empty tables (constraints to re-add), those facts' date bounds, and the
    dashboard summaries of the rows copied (a first load's, figures.py; None until a table is copied)."""

    columns: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    copied: dict[str, bulk.Constraints] = field(default_factory=dict)
    copied_dates: list[tuple[date, date]] = field(default_factory=list)
    figures: Figures | None = None

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
    with timer("summaries"):  # the dashboard's summaries lose what this run touches, as it stands ...
        touched = summaries.touched(conn, batch.staged, manifest.deleted, rebuild=bool(batch.copied or batch.rows))
        summaries.withdraw(conn, touched)
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
    with timer("summaries"):  # ... and get it back as it now stands
        summaries.restore(conn, touched, batch.figures, manifest.deleted)
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
    load), straight into its table; one file's rows in memory at a time (and the bytes of the small files),
    a slice of it for a file of more than staging.STREAM_ROWS rows."""
    batch = Batch(rows=timer.rows)  # the timer's table spans report the rows counted here
    entries = [entry for table in TABLES if (entry := manifest.files.get(table)) is not None]
    # The small files are downloaded at once, while the first ones are staged. The large ones (a first load)
    # are streamed to local disk one after another, in staging order, by one background thread: the next one
    # downloads while this one is copied. Memory holds one large file at a time at most; the disk holds the
    # run's large files until the run is staged, as when each was downloaded in its turn.
    pool = io_pool("load-prefetch", PREFETCH_THREADS)
    prefetched = {
        entry.table: pool.submit(fetch_curated, lake, manifest.run_id, entry)
        for entry in entries
        if entry.rows <= PREFETCH_ROWS
    }
    with tempfile.TemporaryDirectory(prefix="totes-load-") as folder:
        downloads = ThreadPoolExecutor(1, thread_name_prefix="totes-load-download")
        try:
            downloaded = {
                entry.table: downloads.submit(
                    download_curated, lake, manifest.run_id, entry, Path(folder) / f"{entry.table}.parquet"
                )
                for entry in entries
                if entry.table not in prefetched
            }
            for entry in entries:
                future = prefetched.pop(entry.table, None) or downloaded.pop(entry.table)
                _stage_file(conn, lake, manifest.run_id, entry, future, batch, timer)
        finally:  # a failed run downloads nothing more; the one under way ends before its folder goes
            downloads.shutdown(wait=True, cancel_futures=True)
    return batch


def _stage_file(
    conn: psycopg.Connection,
    lake: Lake,
    run_id: str,
    entry: CuratedFile,
    fetched: Future[bytes] | Future[tuple[Path, str]],
    batch: Batch,
    timer: Timer,
) -> None:
    """Read one curated file (its bytes, or the local path and sha256 of its download, from `fetched`) and
    stage or copy it."""
    table = entry.table
    batch.columns[table] = staging.curated_columns(conn, table)
    with timer("read", table):
        got = fetched.result()
        if isinstance(got, bytes):
            rows = staging.rows_of(read_curated(lake, run_id, entry, batch.columns[table], got))
        else:
            rows = open_curated(lake, run_id, entry, batch.columns[table], *got)
    with timer("staging", table):
        first_load = rows.height >= bulk.FIRST_LOAD_ROWS and bulk.is_empty(conn, table)
        if table == "dim_currency" and (first_load or bulk.is_empty(conn, table)):  # the summaries' codes
            batch.figures = batch.figures or Figures()
            batch.figures.currencies(rows.frame())
        if not first_load or table not in (*FACTS, *DIMENSIONS):
            staging.stage(conn, table, rows)
            return
        # A first load's summaries are computed from the rows it copies, slice by slice (figures.py).
        figures = batch.figures = batch.figures or Figures()
        seen = partial(figures.add, table)
        if table in FACTS:
            batch.copied[table] = bulk.copy_facts(conn, table, rows, run_id, seen)
            if (bounds := merge.date_bounds(rows.lazy())) is not None:
                batch.copied_dates.append(bounds)
        else:  # a dimension: no date column, no foreign key
            batch.rows[table] = bulk.copy_dimension(conn, table, rows, run_id, seen)
            bulk.analyze(conn, table, summaries.LOOKED_UP.get(table, ()))
        figures.done(table)


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


def read_curated(lake: Lake, run_id: str, entry: CuratedFile, columns: Sequence[str], data: bytes) -> pl.DataFrame:
    """Check one curated file's bytes (`fetch_curated`): its hash, row count and columns; the frame in
    `columns` order."""
    where = _where(lake, run_id, entry)
    _check_hash(where, entry, hashlib.sha256(data).hexdigest())
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # polars raises several error types for a corrupt file
        raise TerminalError(f"{where}: not a readable Parquet file ({exc})") from exc
    _check_shape(where, entry, frame.height, frame.columns, columns)
    return frame.select(columns)


def download_curated(lake: Lake, run_id: str, entry: CuratedFile, path: Path) -> tuple[Path, str]:
    """Stream one curated file to `path`; the path and the sha256 of what was written. TerminalError if the
    file is missing."""
    try:
        return path, lake.download(lake.curated, entry.file, path)
    except ResourceNotFoundError as exc:
        raise TerminalError(f"{_where(lake, run_id, entry)}: the file named by the manifest does not exist") from exc


def open_curated(
    lake: Lake, run_id: str, entry: CuratedFile, columns: Sequence[str], path: Path, digest: str
) -> staging.Rows:
    """Check one curated file downloaded to `path` (`download_curated`, sha256 `digest`) as `read_curated`
    does; its rows, read whole or, past staging.STREAM_ROWS rows, left on disk to be read a slice at a time."""
    where = _where(lake, run_id, entry)
    _check_hash(where, entry, digest)
    try:
        found = list(pl.read_parquet_schema(path))
        height = int(pl.scan_parquet(path).select(pl.len()).collect().item())
        _check_shape(where, entry, height, found, columns)
        if height > staging.STREAM_ROWS:
            log.info(
                "run %s table %s: %d rows, read from local disk in slices of %d rows (STREAM_ROWS %d)",
                run_id,
                entry.table,
                height,
                staging.SLICE_ROWS,
                staging.STREAM_ROWS,
            )
            return staging.Rows(path, columns, height)
        return staging.Rows(pl.read_parquet(path, columns=list(columns)), columns)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TerminalError(f"{where}: not a readable Parquet file ({exc})") from exc


def _check_hash(where: str, entry: CuratedFile, digest: str) -> None:
    if digest != entry.sha256:
        raise TerminalError(f"{where}: sha256 {digest} differs from the manifest's {entry.sha256}")


def _check_shape(where: str, entry: CuratedFile, height: int, found: Sequence[str], columns: Sequence[str]) -> None:
    if height != entry.rows:
        raise TerminalError(f"{where}: {height} rows, the manifest says {entry.rows}")
    missing = [c for c in columns if c not in found]
    extra = [c for c in found if c not in columns]
    if missing or extra:
        raise TerminalError(f"{where}: columns differ from the warehouse contract (missing {missing}, extra {extra})")


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
                        bulk.analyze(conn, table, summaries.LOOKED_UP.get(table, ()))
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
