"""The transform stage's I/O: one raw run (manifest + Parquet) in; curated Parquet, state and manifest out.

The pure work is `build_run` (shared.transform.model), the same orchestration `transform_run` uses, done
here one output table at a time, and a large one (a raw file over raw.CHUNK_ROWS rows) one chunk of keys at
a time, so that memory holds one chunk's frames, not the run's: the raw files are streamed into a local
temporary folder (shared.transform.raw), each builder reads only the columns of the tables it needs, and
each output chunk is encoded to that folder and dropped before the next is built (`build_outputs`,
`write_outputs`). Nothing is uploaded until every table is built, so
bad input still quarantines a run before any curated blob exists. This module reads what the raw manifest
names, checks it, and writes the results so that any step may crash and be retried:

1. curated/<table>/<run_id>.parquet   write-once; a blob left by a crashed attempt with the same bytes
                                      counts as written (outputs are deterministic: rows sorted by key,
                                      no clock inside)
2. curated/_state/<table>.parquet     current department/staff/address/counterparty, ETag-guarded; a
                                      lost race re-reads and re-merges (order-insensitive; transform.store)
3. curated/_runs/<run_id>.json        LAST: the commit marker. Its existence means data and state are
                                      done, so a re-run answers "already_done" (and the caller re-sends
                                      the load message, in case the first one was lost)

State is written before the manifest (not after) so that a crash between the two is repaired by a
re-run: the run is transformed again over a state that already holds its own rows, which gives the same
outputs because merging a row twice is a no-op. The other order would leave a crash after the manifest
with a state that never learns the run's rows.

Bad input (a malformed manifest, a missing or altered file, a missing required column, a reference the
state cannot resolve) quarantines the run: curated/_quarantine/<run_id>.json records why, an ERROR log
line carries the marker TOTES_QUARANTINE for the alert, and no load message is sent. The raw files stay;
the record does not block a later re-run of the same run_id once the cause is fixed
(shared.transform.quarantine).

Everything else raises: storage errors (TransientError from shared.lake) and a state update that lost
its ETag race STATE_ATTEMPTS times (ConcurrentUpdateError, transient) make the trigger fail so the host
retries; a curated blob with other bytes than this attempt's (OutputConflictError), an unknown run or an
unreadable state blob are terminal and need a person. None of them writes the manifest, so a retry
redoes the run.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Literal

import polars as pl

from shared import telemetry
from shared.contract import (
    JSON_TYPE,
    PARQUET_TYPE,
    TABLE_KEYS,
    ContractError,
    CuratedFile,
    CuratedManifest,
    LoadMessage,
    RawManifest,
    check_run_id,
    curated_file_name,
    instant,
    manifest_name,
    run_id_from_blob,
)
from shared.errors import TerminalError
from shared.lake import BlobExistsError, Lake, io_pool
from shared.settings import Settings, date_window_years, load_settings
from shared.transform.errors import BadRunError
from shared.transform.model import build_run, deleted_in_warehouse, drop_deleted
from shared.transform.quarantine import quarantine
from shared.transform.raw import DateWindow, StagedFile, raw_chunks, stage_raw
from shared.transform.store import read_state, write_state

log = logging.getLogger(__name__)

RunStatus = Literal["transformed", "quarantined", "already_done"]


class RunNotFoundError(TerminalError):
    """No raw manifest exists for the run_id: nothing to transform (and nothing to quarantine)."""


@dataclass(frozen=True)
class TransformOutcome:
    """What transforming one run did: its status, rows per warehouse table, warnings and the blobs written."""

    run_id: str
    status: RunStatus
    rows: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    duration_s: float = 0.0
    manifest: str | None = None  # curated/_runs/<run_id>.json, inside the curated container
    quarantine: str | None = None  # curated/_quarantine/<run_id>.json when quarantined
    reason: str | None = None  # why the run was quarantined
    phases: dict[str, float] = field(default_factory=dict)  # seconds spent in read, build, write
    traceparent: str | None = None  # the run's trace (its extract's span), carried on to the load

    @property
    def load_message(self) -> str | None:
        """The load queue message {"run_id": ...}, or None for a quarantined run (nothing to load)."""
        if self.status == "quarantined":
            return None
        return LoadMessage(self.run_id, traceparent=self.traceparent).to_json()

    def summary(self) -> str:
        """One log line: run, status, row total, table count, warnings, duration."""
        if self.status == "quarantined":
            return f"transform run {self.run_id}: quarantined ({self.reason}); see {self.quarantine}"
        return (
            f"transform run {self.run_id}: {self.status}, {sum(self.rows.values())} rows in "
            f"{len(self.rows)} tables, {len(self.warnings)} warnings, {self.duration_s:.2f} s"
        )


def transform(lake: Lake, run_id: str) -> TransformOutcome:
    """Transform raw run `run_id` into curated files + manifest + state; quarantine it on bad input."""
    check_run_id(run_id)

    def extract_trace() -> str | None:  # read only when tracing is on
        return telemetry.traceparent_in(lake.read_versioned(lake.raw, manifest_name(run_id)).data or b"")

    with telemetry.stage_span("transform", run_id, traceparent=extract_trace) as span:  # child of the extract's
        outcome = replace(_transform(lake, run_id), traceparent=span.run_trace)
        span.finish(outcome.status, outcome.rows)
    if outcome.status == "quarantined":
        telemetry.record_quarantine()
    return outcome


def _transform(lake: Lake, run_id: str) -> TransformOutcome:
    started = time.perf_counter()
    name = manifest_name(run_id)
    done = lake.read_versioned(lake.curated, name).data
    if done is not None:
        return _already_done(run_id, done, name, started)
    raw_manifest = lake.read_versioned(lake.raw, name).data
    if raw_manifest is None:
        raise RunNotFoundError(
            f"run {run_id}: no raw manifest {lake.raw}/{name}; nothing was transformed. "
            "Check the run_id (`totes status`) or extract first"
        )
    phases: dict[str, float] = {}
    # Raw files and encoded outputs wait on local disk, not in memory: one table's frames are resident
    # at a time, which keeps a x100 run within the Function instance's memory.
    with tempfile.TemporaryDirectory(prefix="totes-transform-") as folder:
        try:
            manifest = _parse_raw_manifest(run_id, raw_manifest, f"{lake.raw}/{name}")
            reading = io_pool("transform-state", 1).submit(read_state, lake)  # while the raw files come
            staged, warnings = stage_raw(lake, manifest, Path(folder), _date_window(manifest))
            state = reading.result()
            previous = {t: blob.frame for t, blob in state.items() if blob.frame is not None}
            phases["read"] = time.perf_counter() - started
            try:
                built = build_outputs(staged, previous, Path(folder))
            except BadRunError:
                raise
            except TerminalError as exc:  # the pure transform's bad-input errors (missing column, reference)
                raise BadRunError(run_id, str(exc)) from exc
            phases["build"] = time.perf_counter() - started - phases["read"]
        except BadRunError as exc:
            return TransformOutcome(
                run_id=run_id,
                status="quarantined",
                duration_s=time.perf_counter() - started,
                quarantine=quarantine(lake, exc),
                reason=str(exc),
            )

        warnings += built.warnings
        for message in built.warnings:
            log.warning("run %s: %s", run_id, message)
        # The state and the outputs are written at once: the state merges by key (order-insensitive), so a
        # run retried after a crash between the two builds the same outputs whichever was written.
        writing = io_pool("transform-state", 1).submit(
            write_state, lake, state, drop_deleted(built.state, manifest.deleted)
        )
        files = write_outputs(lake, run_id, built.outputs)
        writing.result()
    curated = CuratedManifest(
        run_id=run_id,
        extracted_at=manifest.extracted_at,
        source_max_updated=manifest.source_max_updated,
        files=files,
        warnings=tuple(warnings),
        traceparent=telemetry.trace_fields().get(telemetry.TRACEPARENT),
        deleted=deleted_in_warehouse(manifest.deleted),
    )
    try:
        lake.put_once(lake.curated, name, curated.to_json(), JSON_TYPE)
    except BlobExistsError:
        log.info("run %s: a concurrent attempt wrote %s first; its outputs are the same", run_id, name)
    phases["write"] = time.perf_counter() - started - phases["read"] - phases["build"]
    return TransformOutcome(
        run_id=run_id,
        status="transformed",
        rows=curated.rows,
        warnings=tuple(warnings),
        duration_s=time.perf_counter() - started,
        manifest=name,
        phases=phases,
    )


def transform_blob(blob_name: str, lake: Lake | None = None) -> TransformOutcome:
    """Transform the run whose raw manifest blob is `blob_name` ('<raw>/_runs/<run_id>.json'), for the trigger."""
    return transform(lake or lake_from_environment(), run_id_from_blob(blob_name))


def lake_from_environment() -> Lake:
    """The Lake of the current settings (environment), one per distinct settings per process."""
    return _lake_for(load_settings().require("lake"))


@lru_cache(maxsize=4)
def _lake_for(settings: Settings) -> Lake:
    return Lake.from_settings(settings)


def _date_window(manifest: RawManifest) -> DateWindow | None:
    """The dates the run's source text dates may hold: DATE_WINDOW_YEARS around its extract time."""
    extracted = instant(manifest.extracted_at)
    return None if extracted is None else DateWindow.around(extracted, date_window_years())


def _parse_raw_manifest(run_id: str, data: bytes, where: str) -> RawManifest:
    try:
        return RawManifest.from_json(run_id, data)
    except ContractError as exc:
        raise BadRunError(run_id, f"malformed raw manifest: {exc.reason}", file=where) from exc


def _already_done(run_id: str, data: bytes, name: str, started: float) -> TransformOutcome:
    try:
        manifest = CuratedManifest.from_json(run_id, data)
    except ContractError as exc:
        raise TerminalError(
            f"run {run_id}: curated manifest {name} exists but is unreadable ({exc.reason}); the load cannot use "
            "it either: inspect it before deleting it and re-running the transform"
        ) from exc
    return TransformOutcome(
        run_id=run_id,
        status="already_done",
        rows=manifest.rows,
        warnings=manifest.warnings,
        duration_s=time.perf_counter() - started,
        manifest=name,
    )


# --- the curated outputs -----------------------------------------------------------------------------

# Curated files uploaded at once: each may be buffered whole by the SDK, so fewer than raw.IO_THREADS.
UPLOAD_THREADS = 4
# Rows per row group of a curated file joined from chunks (what polars writes a frame with): the load
# reads a large file a few row groups at a time.
ROW_GROUP_ROWS = 512**2


class OutputConflictError(TerminalError):
    """A curated data blob of an unfinished run exists with other bytes than this attempt produced."""


@dataclass(frozen=True)
class EncodedTable:
    """One output table encoded as curated Parquet in a local file, ready to upload."""

    path: Path
    rows: int
    sha256: str


@dataclass(frozen=True)
class BuiltRun:
    """The run's encoded output tables (non-empty only), the new state and the transform's warnings."""

    outputs: dict[str, EncodedTable]
    state: dict[str, pl.DataFrame]
    warnings: list[str]


def build_outputs(staged: Mapping[str, StagedFile], state: Mapping[str, pl.DataFrame], folder: Path) -> BuiltRun:
    """Every output table of the run, built by `build_run` from the staged raw files (a large one chunk by
    chunk) and encoded into `folder` as soon as each chunk is built (its frames then dropped)."""
    outputs: dict[str, EncodedTable] = {}

    def encode(table: str, chunks: Iterable[pl.DataFrame]) -> None:
        with telemetry.table_span("transform", table) as span:
            encoded = _encode(table, chunks, folder)
            if encoded is not None:
                outputs[table] = encoded
                span.set(rows=encoded.rows, bytes=encoded.path.stat().st_size)

    sources = {table: partial(raw_chunks, file) for table, file in staged.items()}
    current, warnings = build_run(sources, state, encode)
    return BuiltRun(outputs, current, warnings)


def _encode(table: str, chunks: Iterable[pl.DataFrame], folder: Path) -> EncodedTable | None:
    """Write `table`'s chunks, each sorted, into one Parquet file (None if there are no rows): one chunk as
    polars writes a frame, several through part files joined by a streaming sink, so that memory holds
    one chunk. The chunks come in ascending key ranges, so the file is sorted as a whole."""
    path = folder / f"{table}.parquet"
    parts: list[Path] = []
    rows = 0
    for frame in chunks:
        part = folder / f"{table}.part{len(parts):05d}.parquet"
        sort_for_output(table, frame).write_parquet(part, compression="zstd", statistics=True)
        parts.append(part)
        rows += frame.height
    if not parts:
        return None
    if len(parts) == 1:
        parts[0].rename(path)
    else:
        pl.scan_parquet(parts).sink_parquet(path, compression="zstd", statistics=True, row_group_size=ROW_GROUP_ROWS)
        for part in parts:
            part.unlink()
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    return EncodedTable(path, rows, digest)


def write_outputs(lake: Lake, run_id: str, outputs: Mapping[str, EncodedTable]) -> dict[str, CuratedFile]:
    """Upload each encoded table to curated/<table>/<run_id>.parquet; the curated manifest's files."""

    def write(table: str) -> CuratedFile:
        encoded = outputs[table]
        name = curated_file_name(table, run_id)
        _write_once(lake, run_id, name, encoded.path)
        return CuratedFile(table, name, encoded.rows, encoded.sha256)

    names = sorted(outputs)
    return dict(zip(names, io_pool("curated-write", UPLOAD_THREADS).map(write, names), strict=True))


def sort_for_output(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Rows in a stable order for byte-identical files: by the table's key, then the fact row hash."""
    keys = [c for c in (TABLE_KEYS.get(table, frame.columns[0]), "etl_row_hash") if c in frame.columns]
    return frame.sort(keys, maintain_order=True)


def _write_once(lake: Lake, run_id: str, name: str, path: Path) -> None:
    try:
        with path.open("rb") as stream:
            lake.put_once(lake.curated, name, stream, PARQUET_TYPE)
    except BlobExistsError:
        if lake.get(lake.curated, name) != path.read_bytes():
            raise OutputConflictError(
                f"run {run_id}: {lake.curated}/{name} exists from an earlier attempt with different bytes "
                f"(the state or the code changed since). No manifest names it yet, so nothing read it: delete "
                f"it and re-run `totes transform {run_id}`"
            ) from None
