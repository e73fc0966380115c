"""The curated outputs of a run: built one table at a time into a local folder (shared.transform.model.build_run),
then uploaded write-once to curated/<table>/<run_id>.parquet. Outputs are deterministic (rows sorted by
key, no clock inside), so a blob left by a crashed attempt with the same bytes counts as written."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl

from shared import telemetry
from shared.contract import PARQUET_TYPE, TABLE_KEYS, CuratedFile, curated_file_name
from shared.errors import TerminalError
from shared.lake import BlobExistsError, Lake
from shared.transform.model import build_run
from shared.transform.raw import StagedFile, load_raw

# Curated files uploaded at once: each may be buffered whole by the SDK, so fewer than raw.IO_THREADS.
UPLOAD_THREADS = 4


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
    """Every output table of the run, built by `build_run` from the staged raw files and encoded into `folder`
    as soon as it is built (its frames then dropped)."""
    outputs: dict[str, EncodedTable] = {}

    def encode(table: str, frame: pl.DataFrame) -> None:
        with telemetry.table_span("transform", table) as span:
            outputs[table] = _encode(sort_for_output(table, frame), folder / f"{table}.parquet")
            span.set(rows=frame.height, bytes=outputs[table].path.stat().st_size)

    sources = {table: partial(load_raw, file) for table, file in staged.items()}
    current, warnings = build_run(sources, state, encode)
    return BuiltRun(outputs, current, warnings)


def _encode(frame: pl.DataFrame, path: Path) -> EncodedTable:
    frame.write_parquet(path, compression="zstd", statistics=True)
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    return EncodedTable(path, frame.height, digest)


def write_outputs(lake: Lake, run_id: str, outputs: Mapping[str, EncodedTable]) -> dict[str, CuratedFile]:
    """Upload each encoded table to curated/<table>/<run_id>.parquet; the curated manifest's files."""

    def write(table: str) -> CuratedFile:
        encoded = outputs[table]
        name = curated_file_name(table, run_id)
        _write_once(lake, run_id, name, encoded.path)
        return CuratedFile(table, name, encoded.rows, encoded.sha256)

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
            lake.put_once(lake.curated, name, stream, PARQUET_TYPE)
    except BlobExistsError:
        if lake.get(lake.curated, name) != path.read_bytes():
            raise OutputConflictError(
                f"run {run_id}: {lake.curated}/{name} exists from an earlier attempt with different bytes "
                f"(the state or the code changed since). No manifest names it yet, so nothing read it: delete "
                f"it and re-run `totes transform {run_id}`"
            ) from None
