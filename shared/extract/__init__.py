"""The extract stage: totesys changed rows -> raw Parquet files -> run manifest -> watermark state.

`extract(settings, lake)` is the whole API; the trigger, the CLI and the pipeline call it. What is read from
totesys, and how, is shared.extract.source; the watermark state is shared.extract.state.

One run, in this order, so that a crash anywhere leaves the lake consistent:

0. take the lease on raw/_state/extract.lease (60 s, renewed while the run lasts): an invocation that
   finds it held yields at once, reading and writing nothing, so two extracts never race;
1. read the watermark state (and its ETag), then open ONE REPEATABLE READ, READ ONLY transaction and
   read the source's clock in it (transaction_timestamp());
2. per table, COPY the rows with last_updated > watermark - EXTRACT_LOOKBACK (every row the first time)
   into raw/<table>/<YYYY>/<MM>/<DD>/<run_id>.parquet, write-once;
3. the state, recording this run as pending with the state it advances to, only if unchanged since
   step 1 (ETag; else another extract got there first and this run commits nothing);
4. raw/_runs/<run_id>.json, write-once and LAST of the run's blobs: the commit marker that triggers
   transform. Data files no manifest names (a crash before it) are orphans nothing reads;
5. the advanced state. A crash before it leaves the run pending: the next run adopts its watermark if its
   manifest exists and drops it otherwise, so a crash anywhere archives each change exactly once.

A watermark never passes the source clock of its run: a row stamped in the future (clock skew, a bad
import) is archived by every run until its time comes, with a warning, and never hides later changes.
A run that finds no changed row writes no data and no manifest, only last_checked_at in the state.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import polars as pl
import psycopg

from shared import telemetry
from shared.connection import describe_server
from shared.contract import (
    EXTRACT_LEASE_NAME,
    JSON_TYPE,
    PARQUET_TYPE,
    RUNS_PREFIX,
    SOURCE_TABLES,
    RawFile,
    RawManifest,
    manifest_name,
    primary_key,
    raw_file_name,
)
from shared.errors import TerminalError, TransientError
from shared.extract.source import (
    DEFAULT_BATCH_ROWS,
    SETTING,
    WATERMARK_COLUMN,
    SourceTable,
    TableFile,
    database_now,
    read_catalog,
    source_snapshot,
    write_table_parquet,
)
from shared.extract.state import STATE_BLOB, ExtractState, iso
from shared.lake import ConcurrentUpdateError, Lake, Lease
from shared.redact import describe
from shared.settings import Settings

__all__ = [
    "CHANGES_MARKER",
    "DEFAULT_BATCH_ROWS",
    "LEASE_BLOB",
    "RUNS_PREFIX",
    "STATE_BLOB",
    "ExtractResult",
    "ExtractState",
    "data_blob_name",
    "extract",
    "manifest_blob_name",
    "new_run_id",
]

log = logging.getLogger("shared.extract")

# Held by the running extract: a second invocation at the same moment yields instead of racing it.
LEASE_BLOB = EXTRACT_LEASE_NAME
CHANGES_MARKER = "TOTES_EXTRACT_CHANGES"
FUTURE_ROWS_SHOWN = 10


@dataclass(frozen=True)
class RawTableFile:
    """One table's file of this run: its blob name in the raw container, the file, the lower bound used."""

    blob: str
    file: TableFile
    after: datetime | None


@dataclass
class _Extracted:
    """What the tables loop has done so far (and which table it is on, for error messages)."""

    files: dict[str, RawTableFile] = field(default_factory=dict)
    tails: dict[str, pl.DataFrame | None] = field(default_factory=dict)
    # per table, the newest last_updated written that is not past the source clock (the new watermark)
    newest: dict[str, datetime] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    current: str | None = None

    @property
    def reading(self) -> str:
        """What was being read: a table, or the catalog before the first table."""
        return f"table {self.current}" if self.current else "the catalog"


@dataclass(frozen=True)
class ExtractResult:
    """What one extract run did: its run_id and manifest (None when nothing changed), rows per table
    (every source table, 0 when unchanged), bytes written, and timings."""

    run_id: str | None
    rows: dict[str, int]
    bytes: int
    duration_s: float
    manifest: str | None
    extracted_at: datetime
    # table -> data blob name inside the raw container, for the tables that changed
    files: dict[str, str] = field(default_factory=dict)
    # table -> seconds spent reading and converting it (its upload overlaps the tables after it)
    table_seconds: dict[str, float] = field(default_factory=dict)
    # False when another run advanced the state first (this run's files and manifest still stand)
    watermark_advanced: bool = False
    # source columns the pipeline does not know, archived in the files, per table
    extra_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # True when another extract was running: this invocation read and wrote nothing
    yielded: bool = False


def new_run_id(extracted_at: datetime, after: str | None = None) -> str:
    """A sortable, unique run id: the UTC extract time and 6 random hex digits (20261122T031500Z-7f3a9c),
    greater than run id `after` (the previous run: runs are applied in run-id order, shared.drain)."""
    run_id = f"{extracted_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    if after is None or run_id > after or not re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", after):
        return run_id
    # The same second as the previous run (or a clock behind it): its time, a greater random suffix.
    low = int(after[-6:], 16) + 1
    if low > 0xFFFFFF:
        raise TransientError(f"run id after {after} cannot be made in the same second; the next tick extracts")
    return f"{after[:-6]}{low + secrets.randbelow(0x1000000 - low):06x}"


def data_blob_name(table: str, run_id: str, extracted_at: datetime) -> str:
    """The raw container path of a run's file for `table`: <table>/<YYYY>/<MM>/<DD>/<run_id>.parquet."""
    return raw_file_name(table, run_id, extracted_at)


def manifest_blob_name(run_id: str) -> str:
    """The raw container path of a run's manifest: _runs/<run_id>.json."""
    return manifest_name(run_id)


def extract(
    settings: Settings,
    lake: Lake,
    *,
    now: datetime | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> ExtractResult:
    """One extract run: the rows of every source table changed since its watermark (minus the lookback)
    into raw Parquet files plus a manifest, then the advanced watermarks; `now` overrides the DB clock."""
    with telemetry.stage_span("extract") as span:  # starts the run's trace; the manifest carries it on
        result = _extract(settings, lake, now=now, batch_rows=batch_rows)
        span.finish("changes" if result.run_id else "no_changes", result.rows, bytes=result.bytes, run_id=result.run_id)
    return result


def _extract(settings: Settings, lake: Lake, *, now: datetime | None, batch_rows: int) -> ExtractResult:
    if batch_rows < 1:
        raise TerminalError(f"batch_rows must be a positive number of rows, got {batch_rows}")
    started = time.perf_counter()
    settings.require("source", "lake")
    with lake.lease(lake.raw, LEASE_BLOB) as lease:
        if lease is None:
            return _yielded(lake, started)
        return _extract_holding(settings, lake, lease, now, batch_rows, started)


def _settled(lake: Lake, state: ExtractState) -> ExtractState:
    """`state` with the run a crashed extract left pending adopted (its manifest exists) or dropped."""
    if state.pending_run_id is None:
        return state
    committed = lake.exists(lake.raw, manifest_blob_name(state.pending_run_id))
    log.info(
        "extract: run %s stopped before recording its watermark; its manifest %s, so its watermark is %s",
        state.pending_run_id,
        "exists" if committed else "was never written",
        "adopted" if committed else "dropped (its data files are orphans nothing reads; this run re-reads them)",
    )
    return state.resolved(committed)


def _abandoned(lake: Lake, run_id: str, extracted_at: datetime, started: float) -> ExtractResult:
    """The result of a run that found the state changed by another extract before its manifest (possible
    only past the lease): it commits nothing; its changes are in the other run or the next one."""
    log.warning(
        "extract run %s: yielded: another extract changed %s/%s meanwhile; this run wrote no manifest (its data "
        "files are orphans nothing reads) and its changes are in the other run or the next one",
        run_id,
        lake.raw,
        STATE_BLOB,
    )
    return _nothing_committed(started, extracted_at)


def _nothing_committed(started: float, extracted_at: datetime) -> ExtractResult:
    """The result of an extract that yielded to another one: no run, no rows."""
    return ExtractResult(
        run_id=None,
        rows=dict.fromkeys(SOURCE_TABLES, 0),
        bytes=0,
        duration_s=time.perf_counter() - started,
        manifest=None,
        extracted_at=extracted_at,
        yielded=True,
    )


def _yielded(lake: Lake, started: float) -> ExtractResult:
    """The result of an invocation that found another extract running: nothing read, nothing written."""
    log.info(
        "extract: yielded: another extract is running (it holds the lease on %s/%s); this invocation "
        "read and wrote nothing, the running one extracts the changes",
        lake.raw,
        LEASE_BLOB,
        extra={"custom_dimensions": {"yielded": True}},
    )
    return _nothing_committed(started, datetime.now(UTC))


def _extract_holding(
    settings: Settings, lake: Lake, lease: Lease, now: datetime | None, batch_rows: int, started: float
) -> ExtractResult:
    """The extract run proper, while this invocation holds the extract lease."""
    assert settings.totesys_db_url is not None
    lookback = settings.extract_lookback
    where = describe_server(settings.totesys_db_url.reveal())
    state_blob = lake.read_versioned(lake.raw, STATE_BLOB)
    state = _settled(lake, ExtractState.parse(state_blob.data, f"{lake.raw}/{STATE_BLOB}"))

    extracted = _Extracted()
    run_id = "(not started)"
    with source_snapshot(settings) as conn:
        try:
            clock = database_now(conn)
            extracted_at = _utc(now) if now is not None else clock
            run_id = new_run_id(
                extracted_at, max(filter(None, (state.last_run_id, state.pending_run_id)), default=None)
            )
            state = _bounded(state, clock, run_id)
            tables = read_catalog(conn)
            extra = _report_extra_columns(tables, state)
            _extract_tables(conn, lake, tables, state, settings, run_id, (extracted_at, clock), batch_rows, extracted)
        except psycopg.OperationalError as exc:
            raise TransientError(
                f"extract run {run_id}: lost the source database at {where} (setting {SETTING}) while "
                f"reading {extracted.reading} ({describe(exc)}); no manifest was "
                "written and the watermark is unchanged; the next scheduled run tries again"
            ) from None
        except psycopg.Error as exc:
            raise TerminalError(
                f"extract run {run_id}: the source database at {where} refused to read {extracted.reading} "
                f"({exc.sqlstate}: {describe(exc)}); check the grants of the extract's role (SELECT on "
                "the source tables); no manifest was written and the watermark is unchanged"
            ) from None

    files, seconds = extracted.files, extracted.seconds
    rows = {t: (files[t].file.rows if t in files else 0) for t in SOURCE_TABLES}
    extra_state = {t: list(cols) for t, cols in extra.items() if cols}
    lease.check()  # still the only extract: commit
    if not files:
        if not write_state(lake, state.checked(extracted_at, extra_state, extracted.tails), state_blob.etag):
            log.info("extract: another run updated %s/%s meanwhile; its check time stands", lake.raw, STATE_BLOB)
        duration = time.perf_counter() - started
        since = iso(state.last_changes_at) if state.last_changes_at else "the first extract"
        log.info(
            "extract: no changes since %s (checked at %s)",
            since,
            iso(extracted_at),
            extra={
                "custom_dimensions": {
                    "checked_at": iso(extracted_at),
                    "last_changes_at": since,
                    "duration_s": round(duration, 3),
                }
            },
        )
        return ExtractResult(
            run_id=None,
            rows=rows,
            bytes=0,
            duration_s=duration,
            manifest=None,
            extracted_at=extracted_at,
            table_seconds=seconds,
            extra_columns=extra,
        )

    manifest_name = manifest_blob_name(run_id)
    manifest = build_manifest(run_id, extracted_at, int(lookback.total_seconds()), tables, files)
    advanced = state.advanced(run_id, extracted_at, extracted.newest, extra_state, extracted.tails)
    # The run is recorded as pending before its manifest: a crash after the manifest still advances the
    # watermark (the next run adopts it), a crash before it drops it. Each change is archived once.
    try:
        etag = lake.write_versioned(
            lake.raw, STATE_BLOB, state.with_pending(run_id, advanced).to_json(), state_blob.etag
        )
    except ConcurrentUpdateError:
        return _abandoned(lake, run_id, extracted_at, started)
    lease.check()
    lake.put_once(lake.raw, manifest_name, manifest.to_json(), JSON_TYPE)
    watermark_advanced = write_state(lake, advanced, etag)
    if not watermark_advanced:
        log.warning(
            "extract run %s: another run changed %s/%s meanwhile; this run's files and manifest stand and the "
            "other run adopted or re-reads its changes (downstream dedupes any overlap)",
            run_id,
            lake.raw,
            STATE_BLOB,
        )

    total_bytes = sum(f.file.bytes for f in files.values())
    duration = time.perf_counter() - started
    changed = json.dumps({t: n for t, n in rows.items() if n}, separators=(",", ":"))
    log.info(
        "extract run_id=%s rows=%s bytes=%d duration_s=%.3f %s",
        run_id,
        changed,
        total_bytes,
        duration,
        CHANGES_MARKER,
        # Flat primitives only: exporters to Application Insights drop nested values.
        extra={
            "custom_dimensions": {
                "run_id": run_id,
                "rows": changed,
                "rows_total": sum(rows.values()),
                **{f"rows_{t}": n for t, n in rows.items()},
                "bytes": total_bytes,
                "duration_s": round(duration, 3),
                "manifest": f"{lake.raw}/{manifest_name}",
                "watermark_advanced": watermark_advanced,
            }
        },
    )
    return ExtractResult(
        run_id=run_id,
        rows=rows,
        bytes=total_bytes,
        duration_s=duration,
        manifest=manifest_name,
        extracted_at=extracted_at,
        files={t: f.blob for t, f in files.items()},
        table_seconds=seconds,
        watermark_advanced=watermark_advanced,
        extra_columns=extra,
    )


def build_manifest(
    run_id: str,
    extracted_at: datetime,
    lookback_seconds: int,
    tables: dict[str, SourceTable],
    files: dict[str, RawTableFile],
) -> RawManifest:
    """The run manifest: per changed table its file, rows, bytes, sha256, window and columns."""
    entries = tuple(
        RawFile(
            table=table,
            file=raw.blob,
            rows=raw.file.rows,
            sha256=raw.file.sha256,
            size=raw.file.bytes,
            max_last_updated=iso(raw.file.max_last_updated),
            after=iso(raw.after) if raw.after else None,
            columns=tuple((c.name, c.pg_type) for c in tables[table].columns),
        )
        for table, raw in files.items()
    )
    return RawManifest(
        run_id,
        iso(extracted_at),
        entries,
        lookback_seconds,
        traceparent=telemetry.trace_fields().get(telemetry.TRACEPARENT),
    )


def _extract_tables(
    conn: psycopg.Connection,
    lake: Lake,
    tables: dict[str, SourceTable],
    state: ExtractState,
    settings: Settings,
    run_id: str,
    times: tuple[datetime, datetime],
    batch_rows: int,
    extracted: _Extracted,
) -> None:
    """Per table inside the snapshot: its new rows to a local Parquet file, uploaded write-once in the
    background (RawUploads) while the next table is read; every upload is done when it returns.
    `times` is (the run's time, the source clock of the snapshot)."""
    lookback = settings.extract_lookback
    extracted_at, clock = times
    with tempfile.TemporaryDirectory(prefix="totes-extract-") as tmp, RawUploads(lake) as uploads:
        for table in SOURCE_TABLES:
            extracted.current = table
            table_started = time.perf_counter()
            after = state.lower_bound(table, lookback)
            local = Path(tmp) / f"{table}.parquet"
            with telemetry.table_span("extract", table, run_id) as span:
                read = write_table_parquet(
                    conn,
                    tables[table],
                    after,
                    local,
                    lookback=lookback,
                    archived=state.archived(table, primary_key(table)),
                    batch_rows=batch_rows,
                    ceiling=clock,
                )
                extracted.tails[table] = read.tail
                if read.newest is not None:
                    extracted.newest[table] = read.newest
                if read.future is not None:
                    _report_future_rows(run_id, table, read.future, clock)
                if read.file is not None:
                    name = data_blob_name(table, run_id, extracted_at)
                    uploads.put(name, local)  # in the background, while the next table is read
                    extracted.files[table] = RawTableFile(name, read.file, after)
                    span.set(rows=read.file.rows, bytes=read.file.bytes)
            extracted.seconds[table] = time.perf_counter() - table_started
        extracted.current = None
        uploads.wait()


class RawUploads:
    """A context of background uploads of local Parquet files into the raw container (each file is deleted
    once uploaded); leaving it waits for the upload under way and starts no other.

    One at a time and in order, while the extract reads the next table: a run's reads and its storage round
    trips overlap instead of adding up. The order of the writes is kept (each waits for the one before it)
    and the first failure stops them: no upload starts after one failed, and `wait` raises that failure, so
    a failing run writes exactly what a sequential one would have before it stopped, and never its manifest.
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="totes-extract-upload")
        self._uploads: list[Future[None]] = []
        self._stopped = threading.Event()

    def __enter__(self) -> RawUploads:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopped.set()  # an error in the run: whatever was not started yet is not written
        self._pool.shutdown(wait=True)

    def put(self, name: str, path: Path) -> None:
        """Upload `path` as blob `name` once the uploads before it are done; raise an earlier one's failure."""
        self.check()
        self._uploads.append(self._pool.submit(self._upload, name, path))

    def check(self) -> None:
        """Raise the failure of an upload that has finished, if one failed."""
        for upload in self._uploads:
            if upload.done():
                upload.result()

    def wait(self) -> None:
        """Wait for every upload; raise the first failure."""
        for upload in self._uploads:
            upload.result()

    def _upload(self, name: str, path: Path) -> None:
        if self._stopped.is_set():
            return
        try:
            with path.open("rb") as stream:
                self.lake.put_once(self.lake.raw, name, stream, PARQUET_TYPE)
        except BaseException:
            self._stopped.set()
            raise
        path.unlink()


def _bounded(state: ExtractState, clock: datetime, run_id: str) -> ExtractState:
    """`state` with no watermark past the source clock; a warning for each one moved back."""
    bounded, ahead = state.clamped(clock)
    for table, watermark in ahead.items():
        log.warning(
            "extract run %s: the watermark of table %s (%s) was ahead of the source clock (%s); it is "
            "moved back to the clock, so changes after it are read again",
            run_id,
            table,
            iso(watermark),
            iso(clock),
            extra={"custom_dimensions": {"run_id": run_id, "table": table, "watermark": iso(watermark)}},
        )
    return bounded


def _report_future_rows(run_id: str, table: str, future: pl.DataFrame, clock: datetime) -> None:
    """One warning per table naming the rows stamped after the source clock (ids and times, first ten)."""
    key = future.columns[0]
    shown = future.sort(WATERMARK_COLUMN).head(FUTURE_ROWS_SHOWN).iter_rows()
    listed = ", ".join(f"{key} {k} at {iso(v)}" for k, v in shown)
    more = f" and {future.height - FUTURE_ROWS_SHOWN} more" if future.height > FUTURE_ROWS_SHOWN else ""
    log.warning(
        "extract run %s: source table %s has %d row(s) stamped after the source clock %s: %s%s; they are "
        "archived by every run until then and do not move the watermark (check the writer's clock)",
        run_id,
        table,
        future.height,
        iso(clock),
        listed,
        more,
        extra={"custom_dimensions": {"run_id": run_id, "table": table, "future_rows": future.height}},
    )


def _report_extra_columns(tables: dict[str, SourceTable], state: ExtractState) -> dict[str, tuple[str, ...]]:
    """Columns the pipeline does not know, per table; a warning for each not reported by an earlier run."""
    extra = {t: spec.extra_columns for t, spec in tables.items() if spec.extra_columns}
    for table, columns in extra.items():
        new = [c for c in columns if c not in state.extra_columns.get(table, [])]
        if new:
            types = {c.name: c.pg_type for c in tables[table].columns}
            log.warning(
                "extract: source table %s has new column(s) %s; they are archived in the raw files as "
                "found (not used downstream until the pipeline knows them)",
                table,
                ", ".join(f"{c} ({types[c]})" for c in new),
                extra={"custom_dimensions": {"table": table, "new_columns": ",".join(new)}},
            )
    return extra


def write_state(lake: Lake, state: ExtractState, etag: str | None) -> bool:
    """Replace the state blob if unchanged since it was read at `etag`; False if another run changed it."""
    try:
        lake.write_versioned(lake.raw, STATE_BLOB, state.to_json(), etag)
    except ConcurrentUpdateError:
        return False
    return True


def _utc(value: datetime) -> datetime:
    """`value` in UTC (a naive value is taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
