"""Load fixtures: curated runs written to the test lake, settings for lake + empty warehouse, the app."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from psycopg import sql

from shared.lake import Lake
from shared.local.stack import with_database
from shared.settings import Settings, load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CuratedRuns:
    """Writes curated runs (Parquet files + manifest, manifest last) the way the transform does."""

    lake: Lake

    def write(
        self,
        run_id: str,
        tables: Mapping[str, pl.DataFrame],
        *,
        extracted_at: str = "2024-03-03T12:00:00+00:00",
        source_max_updated: str | None = "2024-03-03T11:45:00.999",
        commit: bool = True,
    ) -> dict[str, Any]:
        """Write `tables` (non-empty ones) as run `run_id`, then its manifest unless not `commit`;
        return the manifest."""
        entries = {}
        for table, frame in tables.items():
            if frame.height == 0:
                continue
            buffer = io.BytesIO()
            frame.write_parquet(buffer)
            data = buffer.getvalue()
            name = f"{table}/{run_id}.parquet"
            self.lake.put_once(self.lake.curated, name, data)
            entries[table] = {"file": name, "rows": frame.height, "sha256": hashlib.sha256(data).hexdigest()}
        manifest = {
            "run_id": run_id,
            "extracted_at": extracted_at,
            "source_max_updated": source_max_updated,
            "tables": entries,
        }
        if commit:
            self.write_manifest(run_id, manifest)
        return manifest

    def write_manifest(self, run_id: str, manifest: Mapping[str, Any]) -> None:
        """Write curated/_runs/<run_id>.json as given."""
        self.lake.put_once(self.lake.curated, f"_runs/{run_id}.json", json.dumps(manifest).encode())


@pytest.fixture
def curated(lake: Lake) -> CuratedRuns:
    """Writes curated runs into the test lake."""
    return CuratedRuns(lake)


@pytest.fixture
def warehouse_env(lake: Lake, lake_env: dict[str, str], empty_warehouse: str) -> dict[str, str]:
    """The environment of a load: the private lake and an empty warehouse."""
    return {**lake_env, "WAREHOUSE_DB_URL": empty_warehouse}


@pytest.fixture
def warehouse_settings(warehouse_env: dict[str, str]) -> Settings:
    """Settings for the load: the private lake and an empty warehouse."""
    return load_settings(warehouse_env, needs=("warehouse", "lake"))


@pytest.fixture
def other_warehouse(admin_url: str) -> Iterator[str]:
    """URL of a second private, empty warehouse database."""
    name = f"w_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield with_database(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
