"""Fixtures of the extract tests: settings over the snapshot source and a private lake, the app's functions."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator

import pytest
from azure.functions.decorators.function_app import Function

from shared.lake import Lake
from shared.localstack import PROJECT_ROOT
from shared.settings import Settings, load_settings


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
    lake = Lake.from_settings(load_settings(env))
    lake.ensure()
    yield lake
    for container in (lake.raw, lake.curated):
        lake.blobs.delete_container(container)
    for queue in (lake.load_queue, f"{lake.load_queue}-poison"):
        lake.queues.delete_queue(queue)


@pytest.fixture(scope="session")
def registered_functions() -> dict[str, Function]:
    """The functions of function_app.py by name, from a private import of the module.

    FunctionApp.get_functions() works once per app object and other test modules index the app too:
    a module of our own has its own app object.
    """
    spec = importlib.util.spec_from_file_location("function_app_under_extract_tests", PROJECT_ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {str(f.get_function_name()): f for f in module.app.get_functions()}
