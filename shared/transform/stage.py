"""The transform stage's I/O: one raw run (manifest + Parquet) in; curated Parquet, state and manifest out.

The pure work is that of `transform_run` (shared.transform.model), done here one output table at a time
(`build_outputs`) so that memory holds one table's frames, not the run's: the raw files wait in a local
temporary folder, each builder reads only the columns of the tables it needs, and each output is encoded
to that folder and dropped before the next is built. Nothing is uploaded until every table is built, so
bad input still quarantines a run before any curated blob exists. This module reads what the raw manifest
names, checks it, and writes the results so that any step may crash and be retried:

1. curated/<table>/<run_id>.parquet   write-once; a blob left by a crashed attempt with the same bytes
                                      counts as written (outputs are deterministic: rows sorted by key,
                                      no clock inside)
2. curated/_state/<table>.parquet     current department/staff/address/counterparty, ETag-guarded; a
                                      lost race re-reads and re-merges (the merge is order-insensitive)
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
the record does not block a later re-run of the same run_id once the cause is fixed.

Everything else raises: storage errors (TransientError from shared.lake) and a state update that lost
its ETag race STATE_ATTEMPTS times (ConcurrentUpdateError, transient) make the trigger fail so the host
retries; a curated blob with other bytes than this attempt's (OutputConflictError), an unknown run or an
unreadable state blob are terminal and need a person. None of them writes the manifest, so a retry
redoes the run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import polars as pl

from shared import telemetry
from shared.errors import TerminalError
from shared.lake import BlobExistsError, ConcurrentUpdateError, Lake
from shared.schema import SOURCE_SCHEMA, primary_key
from shared.settings import Settings, load_settings
from shared.transform.builders import build_dim_date_of, fact_dates
from shared.transform.contract import OUTPUT_SCHEMA, TABLE_KEYS, required_columns
from shared.transform.model import (
    FACTS,
    SOURCE_OF,
    advance_state,
    build_from_source,
    build_state_dimensions,
    conform_source,
    null_warnings,
)
from shared.transform.state import STATE_TABLES, merge_state

log = logging.getLogger(__name__)

RunStatus = Literal["transformed", "quarantined", "already_done"]
RUNS_PREFIX = "_runs/"
STATE_PREFIX = "_state/"
QUARANTINE_PREFIX = "_quarantine/"
QUARANTINE_MARKER = "TOTES_QUARANTINE"
PARQUET = "application/vnd.apache.parquet"
JSON = "application/json"
# Attempts at an ETag-guarded state update before giving up with a TransientError (the trigger retries).
STATE_ATTEMPTS = 5
# Blobs read or written at once: enough to overlap the storage round trips of one run's files.
IO_THREADS = 8
# Curated files uploaded at once: each may be buffered whole by the SDK, so fewer than IO_THREADS.
UPLOAD_THREADS = 4
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class RunNotFoundError(TerminalError):
    """No raw manifest exists for the run_id: nothing to transform (and nothing to quarantine)."""


class OutputConflictError(TerminalError):
    """A curated data blob of an unfinished run exists with other bytes than this attempt produced."""


class BadRunError(TerminalError):
    """The run's raw input cannot be transformed; the run is quarantined and its raw files are kept."""

    def __init__(self, run_id: str, reason: str, *, file: str | None = None, columns: Iterable[str] = ()) -> None:
        self.run_id = run_id
        self.reason = reason
        self.file = file
        self.columns = tuple(columns)
        where = f" file {file}" if file else ""
        what = f" column(s) {', '.join(self.columns)}" if self.columns else ""
        super().__init__(f"run {run_id}{where}{what}: {reason}")


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
        """The load queue message {"run_id": ..., "traceparent": ...}, or None for a quarantined run."""
        if self.status == "quarantined":
            return None
        trace = {telemetry.TRACEPARENT: self.traceparent} if self.traceparent else {}
        return json.dumps({"run_id": self.run_id, **trace})

    def summary(self) -> str:
        """One log line: run, status, row total, table count, warnings, duration."""
        if self.status == "quarantined":
            return f"transform run {self.run_id}: quarantined ({self.reason}); see {self.quarantine}"
        return (
            f"transform run {self.run_id}: {self.status}, {sum(self.rows.values())} rows in "
            f"{len(self.rows)} tables, {len(self.warnings)} warnings, {self.duration_s:.2f} s"
        )


@dataclass(frozen=True)
class RawFile:
    """One source table's file as the raw manifest names it."""

    table: str
    file: str  # path inside the raw container
    rows: int
    sha256: str
    size: int | None
    max_last_updated: str | None


@dataclass(frozen=True)
class RawManifest:
    """The parts of raw/_runs/<run_id>.json the transform relies on."""

    run_id: str
    extracted_at: str
    files: tuple[RawFile, ...]

    @property
    def source_max_updated(self) -> str | None:
        """The latest window.max_last_updated over the run's tables (as written), or None."""
        stamps = [f.max_last_updated for f in self.files if f.max_last_updated]
        return max(stamps, key=_utc) if stamps else None


@dataclass(frozen=True)
class StagedFile:
    """A raw file checked against its manifest entry, waiting in a local file until its table is built."""

    table: str
    path: Path
    where: str  # <raw container>/<file>, for messages
    run_id: str
    casts: tuple[str, ...]  # columns stored in another dtype than the source's (checked to cast)


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


@dataclass(frozen=True)
class StateBlob:
    """One state table as read: its bytes and ETag (None, None before the first run) and its rows."""

    data: bytes | None
    etag: str | None
    frame: pl.DataFrame | None


def transform(lake: Lake, run_id: str) -> TransformOutcome:
    """Transform raw run `run_id` into curated files + manifest + state; quarantine it on bad input."""
    check_run_id(run_id)

    def extract_trace() -> str | None:  # read only when tracing is on
        return telemetry.traceparent_in(lake.read_versioned(lake.raw, f"{RUNS_PREFIX}{run_id}.json").data or b"")

    with telemetry.stage_span("transform", run_id, traceparent=extract_trace) as span:  # child of the extract's
        outcome = replace(_transform(lake, run_id), traceparent=span.run_trace)
        span.finish(outcome.status, outcome.rows)
    if outcome.status == "quarantined":
        telemetry.record_quarantine()
    return outcome


def _transform(lake: Lake, run_id: str) -> TransformOutcome:
    started = time.perf_counter()
    check_run_id(run_id)
    manifest_name = f"{RUNS_PREFIX}{run_id}.json"
    done = lake.read_versioned(lake.curated, manifest_name).data
    if done is not None:
        return _already_done(run_id, done, manifest_name, started)
    raw_manifest = lake.read_versioned(lake.raw, manifest_name).data
    if raw_manifest is None:
        raise RunNotFoundError(
            f"run {run_id}: no raw manifest {lake.raw}/{manifest_name}; nothing was transformed. "
            "Check the run_id (`totes status`) or extract first"
        )
    phases: dict[str, float] = {}
    # Raw files and encoded outputs wait on local disk, not in memory: one table's frames are resident
    # at a time, which keeps a x100 run within the Function instance's memory.
    with tempfile.TemporaryDirectory(prefix="totes-transform-") as folder:
        try:
            manifest = parse_raw_manifest(run_id, raw_manifest, f"{lake.raw}/{manifest_name}")
            staged, warnings = stage_raw(lake, manifest, Path(folder))
            state = read_state(lake)
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
            return _quarantine(lake, exc, started)

        warnings += built.warnings
        for message in built.warnings:
            log.warning("run %s: %s", run_id, message)
        tables = write_outputs(lake, run_id, built.outputs)
    write_state(lake, state, built.state)
    body = {
        "run_id": run_id,
        "extracted_at": manifest.extracted_at,
        "source_max_updated": manifest.source_max_updated,
        "tables": tables,
        "warnings": warnings,
        **telemetry.trace_fields(),
    }
    try:
        lake.put_once(lake.curated, manifest_name, _json(body), JSON)
    except BlobExistsError:
        log.info("run %s: a concurrent attempt wrote %s first; its outputs are the same", run_id, manifest_name)
    phases["write"] = time.perf_counter() - started - phases["read"] - phases["build"]
    return TransformOutcome(
        run_id=run_id,
        status="transformed",
        rows={t: int(v["rows"]) for t, v in tables.items()},
        warnings=tuple(warnings),
        duration_s=time.perf_counter() - started,
        manifest=manifest_name,
        phases=phases,
    )


def transform_blob(blob_name: str, lake: Lake | None = None) -> TransformOutcome:
    """Transform the run whose raw manifest blob is `blob_name` ('<raw>/_runs/<run_id>.json'), for the trigger."""
    return transform(lake or lake_from_environment(), run_id_from_blob(blob_name))


def run_id_from_blob(blob_name: str) -> str:
    """The run_id of a raw manifest blob name '[<container>/]_runs/<run_id>.json'; TerminalError otherwise."""
    match = re.fullmatch(r"(?:[^/]+/)?_runs/([^/]+)\.json", blob_name)
    if not match:
        raise TerminalError(
            f"blob {blob_name!r} is not a raw run manifest '<raw container>/_runs/<run_id>.json'; "
            "check the transform trigger's path"
        )
    return check_run_id(match[1])


def check_run_id(run_id: str) -> str:
    """`run_id` if it is a safe blob name part (letters, digits, '_', '.', '-'); TerminalError otherwise."""
    if not _RUN_ID.fullmatch(run_id):
        raise TerminalError(f"run_id {run_id!r} is invalid: expected letters, digits, '_', '.', '-' (<= 128)")
    return run_id


def lake_from_environment() -> Lake:
    """The Lake of the current settings (environment), one per distinct settings per process."""
    return _lake_for(load_settings().require("lake"))


@lru_cache(maxsize=4)
def _lake_for(settings: Settings) -> Lake:
    return Lake.from_settings(settings)


def parse_raw_manifest(run_id: str, data: bytes, where: str) -> RawManifest:
    """Check and parse a raw run manifest (bytes of `where`); BadRunError naming what is wrong."""

    def bad(reason: str) -> BadRunError:
        return BadRunError(run_id, f"malformed raw manifest: {reason}", file=where)

    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"not valid JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise bad("not a JSON object")
    missing = [k for k in ("run_id", "extracted_at", "tables") if k not in body]
    if missing:
        raise bad(f"missing key(s) {', '.join(missing)}")
    if body["run_id"] != run_id:
        raise bad(f"its run_id is {body['run_id']!r}, not {run_id!r}")
    if not isinstance(body["extracted_at"], str) or _instant(body["extracted_at"]) is None:
        raise bad(f"extracted_at {body['extracted_at']!r} is not an ISO-8601 time")
    if not isinstance(body["tables"], dict):
        raise bad("tables is not an object")
    files = []
    for table, entry in sorted(body["tables"].items()):
        files.append(_raw_file(table, entry, bad))
    return RawManifest(run_id=run_id, extracted_at=body["extracted_at"], files=tuple(files))


def _raw_file(table: str, entry: Any, bad: Any) -> RawFile:
    if not isinstance(entry, dict):
        raise bad(f"tables.{table} is not an object")
    missing = [k for k in ("file", "rows", "sha256", "window") if k not in entry]
    if missing:
        raise bad(f"tables.{table} lacks key(s) {', '.join(missing)}")
    file, rows, sha, window = entry["file"], entry["rows"], entry["sha256"], entry["window"]
    size = entry.get("bytes")
    if not isinstance(file, str) or not file or file.startswith("/"):
        raise bad(f"tables.{table}.file {file!r} is not a path inside the raw container")
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise bad(f"tables.{table}.rows {rows!r} is not a row count")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise bad(f"tables.{table}.sha256 {sha!r} is not a hex SHA-256")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise bad(f"tables.{table}.bytes {size!r} is not a byte count")
    if not isinstance(window, dict) or "max_last_updated" not in window:
        raise bad(f"tables.{table}.window lacks max_last_updated")
    stamp = window["max_last_updated"]
    if stamp is not None and (not isinstance(stamp, str) or _instant(stamp) is None):
        raise bad(f"tables.{table}.window.max_last_updated {stamp!r} is not an ISO-8601 time")
    return RawFile(table, file, rows, sha.lower(), size, stamp)


def stage_raw(lake: Lake, manifest: RawManifest, folder: Path) -> tuple[dict[str, StagedFile], list[str]]:
    """The run's raw files of known source tables, checked and copied into `folder`, and warnings; BadRunError
    on a bad file. Only the Parquet footers are read here; `load_raw` reads a table's rows when it is built."""
    with ThreadPoolExecutor(IO_THREADS) as pool:
        results = list(
            pool.map(
                lambda item: _stage_raw_file(lake, manifest.run_id, item[1], folder / f"raw-{item[0]}.parquet"),
                enumerate(manifest.files),
            )
        )
    staged: dict[str, StagedFile] = {}
    warnings: list[str] = []
    for raw_file, (file, file_warnings) in zip(manifest.files, results, strict=True):
        warnings += file_warnings
        if file is not None:
            staged[raw_file.table] = file
    for message in warnings:
        log.warning(message)
    return staged, warnings


def _stage_raw_file(lake: Lake, run_id: str, raw: RawFile, path: Path) -> tuple[StagedFile | None, list[str]]:
    where = f"{lake.raw}/{raw.file}"

    def bad(reason: str, columns: Iterable[str] = ()) -> BadRunError:
        return BadRunError(run_id, reason, file=where, columns=columns)

    data = lake.read_versioned(lake.raw, raw.file).data
    if data is None:
        raise bad(f"the raw manifest names this file for table {raw.table} but it does not exist")
    digest = hashlib.sha256(data).hexdigest()
    if digest != raw.sha256:
        raise bad(f"sha256 is {digest}, the raw manifest says {raw.sha256}: the file was altered or replaced")
    if raw.size is not None and len(data) != raw.size:
        raise bad(f"has {len(data)} bytes, the raw manifest says {raw.size}")
    path.write_bytes(data)
    del data
    try:
        found = pl.read_parquet_schema(path)
        height = pl.scan_parquet(path).select(pl.len()).collect().item()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise bad(f"is not readable as Parquet ({exc})") from exc
    if height != raw.rows:
        raise bad(f"has {height} rows, the raw manifest says {raw.rows}")
    schema = SOURCE_SCHEMA.get(raw.table)
    if schema is None:
        return None, [f"run {run_id} file {where}: source table {raw.table!r} is unknown to the transform; ignored"]
    warnings = [
        f"run {run_id} file {where} column {column}: not a column of source table {raw.table}; ignored"
        for column in found
        if column not in schema
    ]
    missing = [c for c in required_columns(raw.table) if c not in found]
    if missing:
        raise bad(f"lacks required column(s) of source table {raw.table}", missing)
    casts = [c for c in schema if c in found and found[c] != schema[c]]
    if casts:  # rare (a source type change): check the casts now, so that a bad value quarantines before any build
        try:
            pl.read_parquet(path, columns=casts).select([pl.col(c).cast(schema[c], strict=True) for c in casts])
        except pl.exceptions.PolarsError as exc:
            raise bad(f"cannot be read as the source types ({exc})", casts) from exc
    return StagedFile(raw.table, path, where, run_id, tuple(casts)), warnings


def load_raw(staged: StagedFile) -> pl.DataFrame:
    """The required columns of a staged raw file, in their source dtypes, conformed for the builders."""
    schema = SOURCE_SCHEMA[staged.table]
    columns = list(required_columns(staged.table))
    try:
        frame = pl.read_parquet(staged.path, columns=columns)
        frame = frame.with_columns([pl.col(c).cast(schema[c], strict=True) for c in staged.casts if c in columns])
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise BadRunError(staged.run_id, f"is not readable as Parquet ({exc})", file=staged.where) from exc
    return conform_source(frame, staged.table, "raw")


def build_outputs(staged: Mapping[str, StagedFile], state: Mapping[str, pl.DataFrame], folder: Path) -> BuiltRun:
    """Every output table of the run, built one at a time from the staged raw files and encoded into `folder`.

    Each table's source and output frames are dropped once it is encoded, so the memory needed is that of
    the largest single table, not of the run. The tables, state and warnings are those of `transform_run`.
    """
    outputs: dict[str, EncodedTable] = {}
    null_found: dict[str, list[str]] = {}
    warnings: list[str] = []

    def emit(table: str, frame: pl.DataFrame) -> None:
        if frame.height:
            with telemetry.table_span("transform", table) as span:
                null_found[table] = null_warnings(table, frame)
                outputs[table] = _encode(sort_for_output(table, frame), folder / f"{table}.parquet")
                span.set(rows=frame.height, bytes=outputs[table].path.stat().st_size)

    dates = []
    for name, source in FACTS.items():
        if source in staged:
            frame, _ = build_from_source(name, load_raw(staged[source]))
            dates.append(fact_dates(name, frame))
            emit(name, frame)
            del frame
    emit("dim_date", build_dim_date_of(dates))
    parents = {t: load_raw(staged[t]) for t in STATE_TABLES if t in staged}
    current = advance_state(parents, state)
    for name, frame in build_state_dimensions(parents, current).items():
        emit(name, frame)
    for name, source in SOURCE_OF.items():
        if name not in FACTS and source in staged:
            frame, built_warnings = build_from_source(name, load_raw(staged[source]))
            warnings += built_warnings
            emit(name, frame)
            del frame
    for table in OUTPUT_SCHEMA:
        warnings += null_found.get(table, [])
    return BuiltRun(outputs, current, warnings)


def _encode(frame: pl.DataFrame, path: Path) -> EncodedTable:
    frame.write_parquet(path, compression="zstd", statistics=True)
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    return EncodedTable(path, frame.height, digest)


def read_state(lake: Lake) -> dict[str, StateBlob]:
    """The transform's current state, per state table: its blob (bytes + ETag) and rows."""
    with ThreadPoolExecutor(IO_THREADS) as pool:
        return dict(zip(STATE_TABLES, pool.map(lambda t: read_state_table(lake, t), STATE_TABLES), strict=True))


def read_state_table(lake: Lake, table: str) -> StateBlob:
    """One state table's blob and rows (all None before the first run wrote it)."""
    blob = lake.read_versioned(lake.curated, _state_name(table))
    if blob.data is None:
        return StateBlob(None, None, None)
    try:
        frame = pl.read_parquet(io.BytesIO(blob.data))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TerminalError(
            f"transform state {lake.curated}/{_state_name(table)} is not readable Parquet ({exc}); "
            "no run can be transformed until it is rebuilt (delete the _state blobs and replay the runs)"
        ) from exc
    return StateBlob(blob.data, blob.etag, frame)


def write_outputs(lake: Lake, run_id: str, outputs: Mapping[str, EncodedTable]) -> dict[str, dict[str, Any]]:
    """Upload each encoded table to curated/<table>/<run_id>.parquet; the manifest's `tables` entries."""

    def write(table: str) -> dict[str, Any]:
        encoded = outputs[table]
        name = f"{table}/{run_id}.parquet"
        _write_once(lake, run_id, name, encoded.path)
        return {"file": name, "rows": encoded.rows, "sha256": encoded.sha256}

    names = sorted(outputs)
    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        return dict(zip(names, pool.map(write, names), strict=True))


def sort_for_output(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Rows in a stable order for byte-identical files: by the table's key, then the fact row hash."""
    keys = [c for c in (TABLE_KEYS.get(table, frame.columns[0]), "etl_row_hash") if c in frame.columns]
    return frame.sort(keys, maintain_order=True)


def _write_once(lake: Lake, run_id: str, name: str, path: Path) -> None:
    try:
        with path.open("rb") as stream:
            lake.put_once(lake.curated, name, stream, PARQUET)
    except BlobExistsError:
        if lake.get(lake.curated, name) != path.read_bytes():
            raise OutputConflictError(
                f"run {run_id}: {lake.curated}/{name} exists from an earlier attempt with different bytes "
                f"(the state or the code changed since). No manifest names it yet, so nothing read it: delete "
                f"it and re-run `totes transform {run_id}`"
            ) from None


def write_state(lake: Lake, read: Mapping[str, StateBlob], new: Mapping[str, pl.DataFrame]) -> None:
    """Store the new state tables, each only if changed; on a lost ETag race re-read, re-merge, retry."""
    for table in sorted(new):
        key = primary_key(table)
        frame = new[table].sort(key)
        blob = read.get(table, StateBlob(None, None, None))
        for attempt in range(1, STATE_ATTEMPTS + 1):
            data = _parquet(frame)
            if data == blob.data:
                break
            try:
                lake.write_versioned(lake.curated, _state_name(table), data, blob.etag)
                break
            except ConcurrentUpdateError as exc:
                if attempt == STATE_ATTEMPTS:
                    raise ConcurrentUpdateError(
                        f"{lake.curated}/{_state_name(table)} kept changing under {STATE_ATTEMPTS} attempts "
                        "to update it; the run's manifest is not written, so a retry transforms it again"
                    ) from exc
                time.sleep(0.05 * attempt)
                blob = read_state_table(lake, table)
                frame = merge_state(blob.frame, frame, key).sort(key)


def _state_name(table: str) -> str:
    return f"{STATE_PREFIX}{table}.parquet"


def _quarantine(lake: Lake, exc: BadRunError, started: float) -> TransformOutcome:
    name = f"{QUARANTINE_PREFIX}{exc.run_id}.json"
    record = {
        "run_id": exc.run_id,
        "reason": exc.reason,
        "file": exc.file,
        "columns": list(exc.columns),
        "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    for attempt in range(1, STATE_ATTEMPTS + 1):
        current = lake.read_versioned(lake.curated, name)
        try:
            lake.write_versioned(lake.curated, name, _json(record), current.etag)
            break
        except ConcurrentUpdateError:
            if attempt == STATE_ATTEMPTS:
                raise
    log.error(
        "%s run=%s file=%s column=%s reason=%s; raw files kept, record %s/%s; fix the cause and re-run "
        "`totes transform %s`",
        QUARANTINE_MARKER,
        exc.run_id,
        exc.file or "-",
        ",".join(exc.columns) or "-",
        exc.reason,
        lake.curated,
        name,
        exc.run_id,
    )
    return TransformOutcome(
        run_id=exc.run_id,
        status="quarantined",
        duration_s=time.perf_counter() - started,
        quarantine=name,
        reason=str(exc),
    )


def _already_done(run_id: str, data: bytes, name: str, started: float) -> TransformOutcome:
    try:
        body = json.loads(data)
        rows = {t: int(v["rows"]) for t, v in body["tables"].items()}
        warnings = tuple(str(w) for w in body.get("warnings", ()))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TerminalError(
            f"run {run_id}: curated manifest {name} exists but is unreadable ({exc}); the load cannot use "
            "it either: inspect it before deleting it and re-running the transform"
        ) from exc
    return TransformOutcome(
        run_id=run_id,
        status="already_done",
        rows=rows,
        warnings=warnings,
        duration_s=time.perf_counter() - started,
        manifest=name,
    )


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def _json(body: Mapping[str, Any]) -> bytes:
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def _utc(text: str) -> datetime:
    """A validated ISO-8601 text as an aware UTC datetime."""
    value = _instant(text)
    assert value is not None
    return value


def _instant(text: str) -> datetime | None:
    """An ISO-8601 text as an aware UTC datetime (naive means UTC), None if it is not one."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
