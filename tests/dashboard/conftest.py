"""Fixtures for the dashboard: a warehouse loaded by the pipeline from the snapshot, the app served on it,
and a headless Chromium (Debian's, `make browser`) driven by Playwright."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, sync_playwright

from shared.dashboard import server
from shared.lake import Lake
from shared.local.source.simulate import simulate
from shared.local.stack import StackUrls, with_database
from shared.pipeline import run_cycle
from shared.settings import load_settings
from tests.conftest import PROJECT_ROOT, _create_database, _drop_database

# Debian's chromium (`make browser`), or the browser CHROMIUM names (CI: the runner's Chrome).
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# As root in a closed network: no sandbox, and none of Chromium's own background connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = PROJECT_ROOT / "build" / "screenshots"


@dataclass(frozen=True)
class LoadedWarehouse:
    """A warehouse the pipeline filled (the snapshot, then simulated changes) and its lake's settings."""

    url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def loaded_warehouse(admin_url: str, snapshot_template: str, local_stack: StackUrls) -> Iterator[LoadedWarehouse]:
    """The snapshot through extract -> transform -> load, 50 simulated changes, a second cycle."""
    source = _create_database(admin_url, template=snapshot_template)
    warehouse = _create_database(admin_url)
    suffix = uuid.uuid4().hex[:10]
    env = {
        "LAKE_STORAGE": local_stack.lake_storage,
        "RAW_CONTAINER": f"raw-{suffix}",
        "CURATED_CONTAINER": f"curated-{suffix}",
        "LOAD_QUEUE": f"load-jobs-{suffix}",
        "TOTESYS_DB_URL": with_database(admin_url, source),
        "WAREHOUSE_DB_URL": with_database(admin_url, warehouse),
    }
    settings = load_settings(env, needs=("source", "warehouse", "lake"))
    lake = Lake.from_settings(settings)
    lake.ensure()
    run_cycle(settings, lake)
    simulate(env["TOTESYS_DB_URL"], seed=3, changes=50)
    run_cycle(settings, lake)
    yield LoadedWarehouse(url=env["WAREHOUSE_DB_URL"], env={k: v for k, v in env.items() if k != "TOTESYS_DB_URL"})
    for container in (lake.raw, lake.curated):
        lake.blobs.delete_container(container)
    for queue in (lake.load_queue, f"{lake.load_queue}-poison"):
        lake.queues.delete_queue(queue)
    _drop_database(admin_url, source)
    _drop_database(admin_url, warehouse)


@pytest.fixture(scope="module")
def dashboard_url(loaded_warehouse: LoadedWarehouse) -> Iterator[str]:
    """The app served by `streamlit run` (as `totes dashboard` does) on a free port."""
    port = server.free_port(0)
    process = subprocess.Popen(
        server.command(port),
        env={**os.environ, **loaded_warehouse.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        server.wait_ready(port, timeout_s=90, process=process)
        yield server.url(port)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert b"Traceback" not in output, output.decode(errors="replace")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium; Playwright never downloads a browser here."""
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
