"""Helpers of the extract tests: read back what a run wrote, checked the way transform checks it."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import polars as pl
import psycopg

from shared.contract import RUNS_PREFIX
from shared.extract import LEASE_BLOB, STATE_BLOB
from shared.lake import Lake


def execute(url: str, *statements: str) -> None:
    """Run SQL statements on the source and commit (the application's own writes, in tests)."""
    with psycopg.connect(url) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def manifests(lake: Lake) -> list[str]:
    """Names of the run manifests in the raw container."""
    return list(lake.list(lake.raw, RUNS_PREFIX))


def raw_blobs(lake: Lake) -> list[str]:
    """Every blob name in the raw container but the extract's (empty) lease blob."""
    return [name for name in lake.list(lake.raw, "") if name != LEASE_BLOB]


def state(lake: Lake) -> dict[str, Any] | None:
    """The extract's watermark state, or None before the first run wrote it."""
    data = lake.read_versioned(lake.raw, STATE_BLOB).data
    return None if data is None else dict(json.loads(data))


def read_run(lake: Lake, manifest_name: str) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """A run's manifest and its files as frames, after checking each file's size, sha256 and rows."""
    manifest = lake.read_json(lake.raw, manifest_name)
    frames = {}
    for table, entry in manifest["tables"].items():
        data = lake.get(lake.raw, entry["file"])
        assert len(data) == entry["bytes"], table
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], table
        frame = pl.read_parquet(io.BytesIO(data))
        assert frame.height == entry["rows"] > 0, table
        assert frame.columns == [c["name"] for c in entry["columns"]], table
        frames[table] = frame
    return manifest, frames
