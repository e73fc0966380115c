"""What the load reads from the lake: a curated run's manifest and its verified Parquet files."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
from azure.core.exceptions import ResourceNotFoundError

from shared.errors import TerminalError
from shared.lake import Lake
from shared.warehouse.merge import TABLES

# A run id is safe in a blob name (e.g. 20261122T031500Z-7f3a9c); the same rule as the transform's, so
# every run the transform writes can be loaded.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class CuratedFile:
    """One curated file of a run, as its manifest names it."""

    table: str
    file: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class RunManifest:
    """curated/_runs/<run_id>.json: the run's files, when it was extracted and how fresh its source was."""

    run_id: str
    extracted_at: datetime | None
    source_max_updated: datetime | None
    files: dict[str, CuratedFile]


def check_run_id(run_id: str) -> str:
    """Return `run_id` if it has the shape extract gives run ids; raise TerminalError otherwise."""
    if not RUN_ID.fullmatch(run_id):
        raise TerminalError(
            f"run id {run_id[:80]!r} is malformed (expected e.g. 20261122T031500Z-7f3a9c: letters, digits, "
            "'_', '.', '-'); nothing is loaded"
        )
    return run_id


def manifest_name(run_id: str) -> str:
    """The blob name of a run's curated manifest."""
    return f"_runs/{run_id}.json"


def read_manifest(lake: Lake, run_id: str) -> RunManifest:
    """Read and validate the curated manifest of `run_id`; TerminalError if it is missing or invalid."""
    name = manifest_name(check_run_id(run_id))
    where = f"{lake.curated}/{name}"
    try:
        doc = lake.read_json(lake.curated, name)
    except ResourceNotFoundError as exc:
        raise TerminalError(
            f"unknown run {run_id}: no manifest {where} (transform has not produced it); nothing is loaded"
        ) from exc
    except ValueError as exc:
        raise TerminalError(f"run {run_id}: manifest {where} is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("run_id") != run_id or not isinstance(doc.get("tables"), dict):
        raise TerminalError(f"run {run_id}: manifest {where} lacks its run_id or its tables mapping")
    files = {}
    for table, entry in doc["tables"].items():
        if table not in TABLES:
            raise TerminalError(f"run {run_id}: manifest {where} names unknown warehouse table {table!r}")
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("file"), str)
            and isinstance(entry.get("rows"), int)
            and isinstance(entry.get("sha256"), str)
        ):
            raise TerminalError(f"run {run_id}: manifest {where} entry for {table} needs file, rows and sha256")
        files[table] = CuratedFile(table, entry["file"], entry["rows"], entry["sha256"].lower())
    return RunManifest(
        run_id=run_id,
        extracted_at=_timestamp(doc, "extracted_at", where, aware=True),
        source_max_updated=_timestamp(doc, "source_max_updated", where, aware=False),
        files=files,
    )


def read_curated(lake: Lake, run_id: str, entry: CuratedFile, columns: Sequence[str]) -> pl.DataFrame:
    """Download one curated file, check its hash, row count and columns; the frame in `columns` order."""
    where = f"run {run_id}, table {entry.table}, file {lake.curated}/{entry.file}"
    try:
        data = lake.get(lake.curated, entry.file)
    except ResourceNotFoundError as exc:
        raise TerminalError(f"{where}: the file named by the manifest does not exist") from exc
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


def _timestamp(doc: dict[str, Any], key: str, where: str, *, aware: bool) -> datetime | None:
    value = doc.get(key)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise TerminalError(f"manifest {where}: {key}={value!r} is not an ISO-8601 timestamp") from exc
    if aware:
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    # The source clock is naive; a zone given anyway is converted to UTC and dropped.
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
