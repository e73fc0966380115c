"""What the load reads from the lake: a curated run's manifest (shared.contract.CuratedManifest) and its
Parquet files, each verified against the manifest and the warehouse columns."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

import polars as pl
from azure.core.exceptions import ResourceNotFoundError

from shared.contract import ContractError, CuratedFile, CuratedManifest, check_run_id, manifest_name
from shared.errors import TerminalError
from shared.lake import Lake


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
