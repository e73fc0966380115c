"""A raw run's files, checked against the raw manifest and copied to a local folder, then read one
source table at a time: the raw side of the transform stage. A bad file raises BadRunError."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from shared.contract import SOURCE_SCHEMA, RawFile, RawManifest, required_columns
from shared.lake import Lake
from shared.transform.errors import BadRunError
from shared.transform.model import conform_source
from shared.transform.strict import DateWindow, bad_dates, date_problem

log = logging.getLogger(__name__)

# Blobs read or written at once: enough to overlap the storage round trips of one run's files.
IO_THREADS = 8


@dataclass(frozen=True)
class StagedFile:
    """A raw file checked against its manifest entry, waiting in a local file until its table is built."""

    table: str
    path: Path
    where: str  # <raw container>/<file>, for messages
    run_id: str
    casts: tuple[str, ...]  # columns stored in another dtype than the source's (checked to cast)
    dates: DateWindow | None = None  # the window the source's text dates must lie in (shared.transform.strict)


def stage_raw(
    lake: Lake, manifest: RawManifest, folder: Path, dates: DateWindow | None = None
) -> tuple[dict[str, StagedFile], list[str]]:
    """The run's raw files of known source tables, checked and copied into `folder`, and warnings; BadRunError
    on a bad file. Only the Parquet footers are read here; `load_raw` reads a table's rows when it is built
    (and checks its text dates against `dates`)."""
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
            staged[raw_file.table] = replace(file, dates=dates)
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
    for column, listed in bad_dates(frame, staged.table, staged.dates).items():
        reason = date_problem(staged.run_id, staged.table, column, listed, staged.dates)
        raise BadRunError(staged.run_id, reason, file=staged.where, columns=[column])
    return conform_source(frame, staged.table, "raw")
