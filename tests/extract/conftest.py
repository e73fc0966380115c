"""Fixtures of the extract tests: settings over the snapshot source and a private lake, the app's functions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shared.lake import Lake
from shared.settings import Settings, load_settings
from tests.conftest import private_lake


@pytest.fixture
def source_env(lake_env: dict[str, str], source_db: str) -> dict[str, str]:
    """Settings environment of the extract: a fresh snapshot source and private lake containers."""
    return {**lake_env, "TOTESYS_DB_URL": source_db}


@pytest.fixture
def extract_settings(source_env: dict[str, str], lake: Lake) -> Settings:
    """Settings for the extract over `source_db` and `lake` (default lookback, 10 minutes)."""
    return load_settings(source_env, needs=("source", "lake"))


@pytest.fixture
def other_lake(lake_env: dict[str, str]) -> Iterator[Lake]:
    """A second private lake on the same Azurite, to compare two runs side by side."""
    suffix = uuid.uuid4().hex[:10]
    env = {
        **lake_env,
        "RAW_CONTAINER": f"raw2-{suffix}",
        "CURATED_CONTAINER": f"curated2-{suffix}",
        "LOAD_QUEUE": f"load2-{suffix}",
    }
    with private_lake(env) as lake:
        yield lake
