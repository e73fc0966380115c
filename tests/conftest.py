"""Fixtures on real services: one PostgreSQL and one Azurite per test session, isolated per test.

Nothing is mocked and nothing is skipped: a service that does not start fails the run.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from shared.lake import Lake
from shared.local.source.seed import seed_source
from shared.local.stack import LocalStack, StackUrls, with_database
from shared.settings import Settings, load_settings

TEMPLATE_DB = "totesys_snapshot"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackUrls]:
    """A private PostgreSQL (databases totesys, warehouse) and Azurite for this test session."""
    stack = LocalStack(Path(tmp_path_factory.mktemp("stack")))
    urls = stack.up()
    yield urls
    stack.down()


@pytest.fixture(scope="session")
def admin_url(local_stack: StackUrls) -> str:
    """A superuser URL to the session's server (database postgres)."""
    return with_database(local_stack.totesys_db_url, "postgres")


def _create_database(admin_url: str, template: str | None = None) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        conn.execute(query)
    return name


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def snapshot_template(admin_url: str) -> str:
    """A database seeded once with the real 2024-11-15 snapshot, cloned by `source_db`."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(TEMPLATE_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    seed_source(with_database(admin_url, TEMPLATE_DB))
    return TEMPLATE_DB


@pytest.fixture
def source_db(admin_url: str, snapshot_template: str) -> Iterator[str]:
    """URL of a private source database holding the real snapshot (a fresh copy per test)."""
    name = _create_database(admin_url, template=snapshot_template)
    yield with_database(admin_url, name)
    _drop_database(admin_url, name)


@pytest.fixture
def empty_db(admin_url: str) -> Iterator[str]:
    """URL of a private, empty database."""
    name = _create_database(admin_url)
    yield with_database(admin_url, name)
    _drop_database(admin_url, name)


@pytest.fixture
def empty_warehouse(admin_url: str) -> Iterator[str]:
    """URL of a private, empty warehouse database (the load applies the DDL)."""
    name = _create_database(admin_url)
    yield with_database(admin_url, name)
    _drop_database(admin_url, name)


@pytest.fixture
def lake_env(local_stack: StackUrls) -> dict[str, str]:
    """Settings environment naming private containers and queue on the session's Azurite."""
    suffix = uuid.uuid4().hex[:10]
    return {
        "LAKE_STORAGE": local_stack.lake_storage,
        "RAW_CONTAINER": f"raw-{suffix}",
        "CURATED_CONTAINER": f"curated-{suffix}",
        "LOAD_QUEUE": f"load-jobs-{suffix}",
    }


@contextmanager
def private_lake(env: dict[str, str]) -> Iterator[Lake]:
    """A Lake over the containers and queue `env` names, created now and deleted afterwards."""
    lake = Lake.from_settings(load_settings(env))
    lake.ensure()
    yield lake
    for container in (lake.raw, lake.curated):
        lake.blobs.delete_container(container)
    for queue in (lake.load_queue, f"{lake.load_queue}-poison"):
        lake.queues.delete_queue(queue)


@pytest.fixture
def lake(lake_env: dict[str, str]) -> Iterator[Lake]:
    """A Lake over private, freshly created containers and queues."""
    with private_lake(lake_env) as lake:
        yield lake


@pytest.fixture
def settings(lake: Lake, lake_env: dict[str, str], source_db: str, empty_warehouse: str) -> Settings:
    """Settings for a whole pipeline: snapshot source, empty warehouse, private lake."""
    return load_settings(
        {**lake_env, "TOTESYS_DB_URL": source_db, "WAREHOUSE_DB_URL": empty_warehouse},
        needs=("source", "warehouse", "lake"),
    )


@pytest.fixture(scope="session")
def registered_functions() -> dict[str, Any]:
    """The Function App's functions by name, as the worker indexes them (azure.functions Function objects).

    FunctionApp.get_functions() may be called once per app object, so function_app.py is imported once,
    privately, for the whole session.
    """
    spec = importlib.util.spec_from_file_location("function_app_under_test", PROJECT_ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {str(f.get_function_name()): f for f in module.app.get_functions()}
