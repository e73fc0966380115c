"""The fault-injection suite (issue 12): a crash at every write boundary of the transform and the load (an
injected exception, and SIGKILL of a child process), storage and warehouse unreachable mid-cycle, a row stamped
in the future. After each, the documented recovery (`totes run --once`, i.e. `run_cycle`) and then `verify`:
every column of the current rows of every warehouse table equals the source. Real PostgreSQL and Azurite."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from azure.storage.blob import BlobLeaseClient

import shared.drain
from shared.drain import drain_loads, drain_transforms, pending
from shared.errors import TransientError
from shared.extract import LEASE_BLOB, extract
from shared.lake import Lake
from shared.load import STEPS, Step, _load
from shared.local.stack import azurite_connection_string, free_port
from shared.pipeline import run_cycle
from shared.settings import Settings, load_settings
from tests.conftest import PROJECT_ROOT
from tests.recovery import Crash, assert_warehouse_equals_source, change, crash_on, ledger, move, rename, urls

# Transform boundaries: (what has been written when it dies, the Lake method and the call it dies on).
TRANSFORM_BOUNDARIES: dict[str, tuple[str, Any]] = {
    "some curated files": ("put_once", lambda c, n, *_: n.startswith("dim_staff/")),
    "every curated file, no state": ("write_versioned", lambda c, n, *_: n.startswith("_state/")),
    "state written, no manifest": ("put_once", lambda c, n, *_: n.startswith("_runs/")),
}


def _changes_and_extract(settings: Settings, lake: Lake, seed: int) -> str:
    change(settings, seed, (rename(seed % 3 + 1, f"Dept{seed}", f"Town{seed}"), move(seed % 20 + 1, seed % 3 + 1)))
    run_id = extract(settings, lake).run_id
    assert run_id is not None
    return run_id


def test_a_transform_crashing_at_any_write_boundary_is_repaired_by_the_next_cycle(
    settings: Settings, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_cycle(settings, lake)
    for i, (boundary, (method, when)) in enumerate(TRANSFORM_BOUNDARIES.items()):
        lost = _changes_and_extract(settings, lake, seed=50 + i)
        with monkeypatch.context() as patch:
            crash_on(lake, method, when, patch)
            with pytest.raises(Crash):
                drain_transforms(lake)
        assert pending(lake).transform == [lost], f"the run crashed at '{boundary}' is still pending"
        later = _changes_and_extract(settings, lake, seed=60 + i)  # a run built on the missing one
        run_cycle(settings, lake)
        assert ledger(settings)[-2:] == [lost, later]
        assert_warehouse_equals_source(settings)


def test_a_load_crashing_after_any_step_is_rolled_back_and_repaired_by_the_next_cycle(
    settings: Settings, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_cycle(settings, lake)
    for i, step in enumerate(STEPS):
        lost = _changes_and_extract(settings, lake, seed=70 + i)
        drain_transforms(lake)

        def crash(at: Step, step: Step = step) -> None:
            if at == step:
                raise Crash(f"after {step}")

        with monkeypatch.context() as patch:
            patch.setattr(shared.drain, "load", lambda s, lk, run_id: _load(s, lk, run_id, crash))
            with pytest.raises(Crash):
                drain_loads(settings, lake)
        assert pending(lake, settings).load == [lost], f"a crash after {step} rolled the whole run back"
        run_cycle(settings, lake)
        assert lost in ledger(settings)
        assert_warehouse_equals_source(settings)


def _child(stage: str, env: dict[str, str]) -> int:
    return subprocess.run(
        [sys.executable, "-m", "tests.recovery_child", stage], env=env, cwd=PROJECT_ROOT, timeout=120
    ).returncode


def test_a_sigkilled_transform_and_load_are_repaired_by_the_next_cycle(
    settings: Settings, lake: Lake, lake_env: dict[str, str]
) -> None:
    """SIGKILL, no clean-up: the transform's lease is left to expire (the cycle waits it out) and the load's
    transaction is rolled back by PostgreSQL when its connection drops."""
    source_url, warehouse_url = urls(settings)
    env = {**os.environ, **lake_env, "TOTESYS_DB_URL": source_url, "WAREHOUSE_DB_URL": warehouse_url}
    run_cycle(settings, lake)
    killed = _changes_and_extract(settings, lake, seed=81)
    assert _child("transform", env) == -9
    assert pending(lake).transform == [killed]
    run_cycle(settings, lake)
    assert killed in ledger(settings)
    assert_warehouse_equals_source(settings)

    killed = _changes_and_extract(settings, lake, seed=82)
    drain_transforms(lake)
    assert _child("load", env) == -9
    assert pending(lake, settings).load == [killed]
    later = _changes_and_extract(settings, lake, seed=83)
    run_cycle(settings, lake)
    assert ledger(settings)[-2:] == [killed, later]
    assert_warehouse_equals_source(settings)


@pytest.mark.parametrize("boundary", ["extract-data", "extract-manifest"])
def test_a_sigkilled_extract_is_repaired_by_the_next_cycle(
    settings: Settings, lake: Lake, lake_env: dict[str, str], boundary: str
) -> None:
    """An extract killed after its first data file (no manifest) or right after its manifest (watermarks not
    advanced): its lease expires within LEASE_SECONDS (broken here instead of waited for), and the next cycle
    archives and loads every change once."""
    source_url, warehouse_url = urls(settings)
    env = {**os.environ, **lake_env, "TOTESYS_DB_URL": source_url, "WAREHOUSE_DB_URL": warehouse_url}
    run_cycle(settings, lake)
    change(settings, 91, (rename(2, "Dept91", "Town91"), move(5, 2)))
    assert _child(boundary, env) == -9
    lease = BlobLeaseClient(lake.blobs.get_blob_client(lake.raw, LEASE_BLOB))
    lease.break_lease(lease_break_period=0)  # what LEASE_SECONDS of waiting would do
    change(settings, 92)
    run_cycle(settings, lake)
    assert pending(lake, settings).transform == [] and pending(lake, settings).load == []
    assert_warehouse_equals_source(settings)


def test_storage_and_warehouse_unreachable_mid_cycle_then_back(
    settings: Settings, lake: Lake, lake_env: dict[str, str]
) -> None:
    """Storage and then the warehouse pointed at a closed port (and back); a row stamped in the future too."""
    source_url, warehouse_url = urls(settings)
    port = free_port()
    no_storage = load_settings(
        {
            **lake_env,
            "LAKE_STORAGE": azurite_connection_string(port, port),
            "STORAGE_TIMEOUT": "2",
            "TOTESYS_DB_URL": source_url,
            "WAREHOUSE_DB_URL": warehouse_url,
        }
    )
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/warehouse"
    no_warehouse = load_settings(
        {**lake_env, "TOTESYS_DB_URL": source_url, "WAREHOUSE_DB_URL": closed, "DB_CONNECT_TIMEOUT": "2"}
    )
    run_cycle(settings, lake)
    change(
        settings,
        91,
        (
            rename(1, "Far", "Future"),
            "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = localtimestamp + "
            "interval '1 day' WHERE sales_order_id = 9",
        ),
    )
    stranded = extract(settings, lake).run_id
    assert stranded is not None
    with pytest.raises(TransientError, match="unreachable"):
        run_cycle(no_storage)
    drain_transforms(lake)
    with pytest.raises(TransientError, match="unreachable"):
        drain_loads(no_warehouse, lake)
    with pytest.raises(TransientError, match="unreachable"):
        run_cycle(no_warehouse, lake)
    waiting = pending(lake, settings).load
    assert waiting is not None and waiting[0] == stranded, "the stranded run waits first"
    assert len(waiting) == 2, "the cycle without a warehouse still extracted and transformed the source's changes"
    change(settings, 92, (move(2, 1),))
    run_cycle(settings, lake)
    assert set(waiting) <= set(ledger(settings))
    assert_warehouse_equals_source(settings)
