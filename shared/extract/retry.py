"""`totes retry RUN_ID`: supersede a quarantined run by a re-extract of its rows.

A quarantined run holds back every run after it (shared.drain). Its raw files are immutable, so once the
source rows are fixed the remedy is a new run: the same rows (by primary key, read from the quarantined
run's raw files) as the source holds them now, in one snapshot, named <run_id>.r<n>-<hex> so that it
sorts right after the quarantined run and before the next one. The new run's manifest is written last
(the commit marker, which fires the transform trigger); then the quarantine record names it
(`superseded_by`). The drain treats a run with a superseding run as done and goes on with the new one.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import psycopg
from psycopg import sql

from shared.contract import (
    JSON_TYPE,
    PARQUET_TYPE,
    RETRY_SUFFIX,
    RUNS_PREFIX,
    ContractError,
    RawManifest,
    check_run_id,
    manifest_name,
    primary_key,
    quarantine_name,
)
from shared.errors import TerminalError
from shared.extract import RawTableFile, build_manifest, data_blob_name
from shared.extract.source import (
    SourceTable,
    TableFile,
    file_digest,
    parse_batch,
    read_catalog,
    select_expression,
    source_snapshot,
)
from shared.lake import Lake
from shared.settings import Settings

log = logging.getLogger(__name__)


def retry(settings: Settings, lake: Lake, run_id: str) -> str:
    """Re-extract the rows of quarantined run `run_id` from the source as a superseding run; its run id."""
    check_run_id(run_id)
    record = lake.read_versioned(lake.curated, quarantine_name(run_id))
    if record.data is None:
        raise TerminalError(
            f"run {run_id} is not quarantined (no {lake.curated}/{quarantine_name(run_id)}); nothing to retry"
        )
    try:
        manifest = RawManifest.from_json(run_id, lake.get(lake.raw, manifest_name(run_id)))
    except ContractError as exc:
        raise TerminalError(
            f"run {run_id}: its raw manifest is unusable ({exc.reason}), so its rows are unknown; re-extract "
            "everything instead (delete raw/_state/extract_watermarks.json)"
        ) from exc
    earlier = sum(1 for _ in lake.list(lake.raw, f"{RUNS_PREFIX}{run_id}{RETRY_SUFFIX}"))
    new_id = check_run_id(f"{run_id}{RETRY_SUFFIX}{earlier + 1}-{secrets.token_hex(3)}")
    extracted_at = datetime.now(UTC)
    files: dict[str, RawTableFile] = {}
    with source_snapshot(settings) as conn, tempfile.TemporaryDirectory(prefix="totes-retry-") as folder:
        tables = read_catalog(conn)
        for entry in manifest.files:
            key = primary_key(entry.table)
            ids = pl.read_parquet(io.BytesIO(lake.get(lake.raw, entry.file)), columns=[key])[key].unique().to_list()
            frame = _rows(conn, tables[entry.table], key, ids)
            if frame.height == 0:
                continue
            local = Path(folder) / f"{entry.table}.parquet"
            frame.write_parquet(local, compression="zstd", statistics=True)
            size, digest = file_digest(local)
            newest = frame.get_column("last_updated").max()
            assert isinstance(newest, datetime)
            name = data_blob_name(entry.table, new_id, extracted_at)
            with local.open("rb") as stream:
                lake.put_once(lake.raw, name, stream, PARQUET_TYPE)
            files[entry.table] = RawTableFile(name, TableFile(local, frame.height, size, digest, newest), None)
    new_manifest = build_manifest(new_id, extracted_at, int(settings.extract_lookback.total_seconds()), tables, files)
    lake.put_once(lake.raw, manifest_name(new_id), new_manifest.to_json(), JSON_TYPE)
    doc = json.loads(record.data)
    doc["superseded_by"] = new_id
    lake.write_versioned(
        lake.curated, quarantine_name(run_id), (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), record.etag
    )
    log.info("run %s superseded by run %s: %d table(s) re-extracted", run_id, new_id, len(files))
    return new_id


def _rows(conn: psycopg.Connection, table: SourceTable, key: str, ids: list[int]) -> pl.DataFrame:
    """The current source rows of `table` whose `key` is in `ids`, typed like the extract's files."""
    columns = sql.SQL(", ").join(select_expression(c) for c in table.columns)
    query = sql.SQL("COPY (SELECT {} FROM {} WHERE {} = ANY(%s) ORDER BY {}) TO STDOUT (FORMAT csv)").format(
        columns, sql.Identifier(table.schema, table.name), sql.Identifier(key), sql.Identifier(key)
    )
    buffer = bytearray()
    with conn.cursor().copy(query, (ids,)) as copy:
        for chunk in copy:
            buffer += chunk
    if not buffer:
        return pl.DataFrame(schema=table.polars_schema)
    return parse_batch(table, bytes(buffer))
