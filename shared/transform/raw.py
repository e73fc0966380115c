"""A raw run's files, checked against the raw manifest and copied to a local folder, then read one
source table at a time: the raw side of the transform stage. A bad file raises BadRunError.

Strict input: the source's text dates must be exactly 'YYYY-MM-DD', real calendar days, and inside a window
around the run's extract time (DATE_WINDOW_YEARS); anything else quarantines the run instead of being guessed.
polars' `str.to_date("%Y-%m-%d", strict=False)` reads '202-12-01' as the year 202 and '2024-1-5' as
2024-01-05: one such value added 665,454 rows to dim_date. The window is relative to the run's own
`extracted_at` (not the clock), so a re-run of the same run decides the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path

import polars as pl
from azure.core.exceptions import ResourceNotFoundError

from shared.contract import SOURCE_SCHEMA, SOURCE_TEXT_DATES, RawFile, RawManifest, primary_key, required_columns
from shared.lake import Lake, io_pool
from shared.transform.builders import is_iso_date
from shared.transform.errors import BadRunError, describe_ids
from shared.transform.model import conform_source

log = logging.getLogger(__name__)

# Blobs read or written at once: enough to overlap the storage round trips of one run's files.
IO_THREADS = 8
# A raw file with more rows is built in chunks of this many keys (raw_chunks): the transform's memory then
# follows the chunk, not the table (x1000: 15.8M payments, 20M transactions).
CHUNK_ROWS = 2_000_000


@dataclass(frozen=True)
class DateWindow:
    """The dates a source text date may hold: `first` .. `last`, both included."""

    first: date
    last: date
    years: int

    @classmethod
    def around(cls, as_of: datetime, years: int) -> DateWindow:
        """`years` years either side of `as_of`'s date (29 February falls back to the 28th)."""
        day = as_of.date()

        def shifted(delta: int) -> date:
            year = min(max(day.year + delta, 1), 9999)
            return day.replace(year=year, day=min(day.day, 28) if day.month == 2 else day.day)

        return cls(shifted(-years), shifted(years), years)


@dataclass(frozen=True)
class StagedFile:
    """A raw file checked against its manifest entry, waiting in a local file until its table is built."""

    table: str
    path: Path
    where: str  # <raw container>/<file>, for messages
    run_id: str
    casts: tuple[str, ...]  # columns stored in another dtype than the source's (checked to cast)
    dates: DateWindow | None = None  # the window the source's text dates must lie in (see bad_dates)
    rows: int = 0


def stage_raw(
    lake: Lake, manifest: RawManifest, folder: Path, dates: DateWindow | None = None
) -> tuple[dict[str, StagedFile], list[str]]:
    """The run's raw files of known source tables, checked and copied into `folder`, and warnings; BadRunError
    on a bad file. Only the Parquet footers are read here; `load_raw` reads a table's rows when it is built
    (and checks its text dates against `dates`)."""
    results = list(
        io_pool("raw-read", IO_THREADS).map(
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

    try:  # streamed to disk: memory never holds a whole raw file (a x1000 first run's are GBs)
        digest = lake.download(lake.raw, raw.file, path)
    except ResourceNotFoundError:
        raise bad(f"the raw manifest names this file for table {raw.table} but it does not exist") from None
    if digest != raw.sha256:
        raise bad(f"sha256 is {digest}, the raw manifest says {raw.sha256}: the file was altered or replaced")
    if raw.size is not None and (size := path.stat().st_size) != raw.size:
        raise bad(f"has {size} bytes, the raw manifest says {raw.size}")
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
    return StagedFile(raw.table, path, where, run_id, tuple(casts), rows=height), warnings


def load_raw(staged: StagedFile) -> pl.DataFrame:
    """The required columns of a staged raw file, in their source dtypes, conformed for the builders."""
    return _read(staged, pl.scan_parquet(staged.path))


def raw_chunks(staged: StagedFile, chunk_rows: int | None = None) -> Iterator[pl.DataFrame]:
    """The rows of a staged raw file as `load_raw` gives them, in chunks of at most about `chunk_rows`
    (default CHUNK_ROWS) rows, each holding every row of its keys, in ascending key ranges: one chunk
    when the file is not larger. Memory then holds one chunk (and the file's key column), not the file."""
    chunk_rows = chunk_rows or CHUNK_ROWS
    if staged.rows <= chunk_rows:
        yield load_raw(staged)
        return
    key = primary_key(staged.table)
    try:
        keys = pl.read_parquet(staged.path, columns=[key]).get_column(key).drop_nulls().unique().sort()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise BadRunError(staged.run_id, f"is not readable as Parquet ({exc})", file=staged.where) from exc
    # A key's rows all fall in one chunk (a run holds each key once, a retried or merged one maybe more).
    bounds = keys.gather_every(chunk_rows).to_list()
    del keys
    log.info(
        "run %s table %s: %d rows, built in %d chunks of up to %d keys (CHUNK_ROWS)",
        staged.run_id,
        staged.table,
        staged.rows,
        len(bounds),
        chunk_rows,
    )
    for index, low in enumerate(bounds):
        in_range = pl.col(key) >= low
        if index == 0:
            in_range |= pl.col(key).is_null()  # never lost: the builders reject them as today
        if index + 1 < len(bounds):
            in_range &= pl.col(key) < bounds[index + 1]
        yield _read(staged, pl.scan_parquet(staged.path).filter(in_range))


def _read(staged: StagedFile, scan: pl.LazyFrame) -> pl.DataFrame:
    schema = SOURCE_SCHEMA[staged.table]
    columns = list(required_columns(staged.table))
    try:
        frame = scan.select(columns).collect()
        frame = frame.with_columns([pl.col(c).cast(schema[c], strict=True) for c in staged.casts if c in columns])
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise BadRunError(staged.run_id, f"is not readable as Parquet ({exc})", file=staged.where) from exc
    for column, listed in bad_dates(frame, staged.table, staged.dates).items():
        reason = date_problem(staged.run_id, staged.table, column, listed, staged.dates)
        raise BadRunError(staged.run_id, reason, file=staged.where, columns=[column])
    return conform_source(frame, staged.table, "raw")


def bad_dates(frame: pl.DataFrame, table: str, window: DateWindow | None) -> dict[str, str]:
    """Per text date column of source `table` with a bad value: 'id <id> '<value>'' for each (a short list).

    A value is bad when it is not exactly 'YYYY-MM-DD', not a calendar day, or outside `window`. Only the
    key and the offending column are gathered, never whole rows."""
    key = primary_key(table)
    found: dict[str, str] = {}
    for column in SOURCE_TEXT_DATES.get(table, ()):
        if column not in frame.columns:
            continue
        ok = is_iso_date(column)
        if window is not None:
            day = pl.col(column).str.to_date("%Y-%m-%d", strict=False)
            ok = ok & day.is_between(window.first, window.last)
        bad = frame.select(key, column).filter(pl.col(column).is_not_null() & ~ok.fill_null(False)).sort(key)
        if bad.height:
            listed = bad.select(pl.format("{} {} '{}'", pl.lit(key), pl.col(key), pl.col(column).str.slice(0, 40)))
            found[column] = f"{bad.height} value(s): " + describe_ids(listed.to_series().to_list())
    return found


def date_problem(run_id: str, table: str, column: str, listed: str, window: DateWindow | None) -> str:
    """The quarantine reason for bad dates in one column: names run, table, column, ids and values."""
    bounds = f" between {window.first} and {window.last} (DATE_WINDOW_YEARS={window.years})" if window else ""
    return (
        f"run {run_id} table {table} column {column}: not 'YYYY-MM-DD' dates{bounds}: {listed}. Nothing of the "
        "run was transformed; fix the source rows (the next extract archives them) or the setting, then "
        f"`totes transform {run_id}`"
    )
