"""The `extract` timer trigger of function_app.py, invoked through the registered function object."""

from __future__ import annotations

import logging

import pytest
from azure.functions.decorators.function_app import Function
from azure.functions.timer import TimerRequest
from polars.testing import assert_frame_equal

from shared.contract import primary_key
from shared.extract import extract
from shared.lake import Lake
from shared.local.source.seed import SNAPSHOT_COUNTS
from shared.settings import load_settings
from tests.extract.runs import manifests, read_run


def test_the_trigger_is_a_timer_on_the_schedule_setting(registered_functions: dict[str, Function]) -> None:
    trigger = registered_functions["extract"].get_trigger()
    assert trigger is not None
    binding = trigger.get_dict_repr()
    assert binding["type"] == "timerTrigger" and binding["name"] == "timer"
    assert binding["schedule"] == "%EXTRACT_SCHEDULE%"
    assert binding["useMonitor"] is True and binding["runOnStartup"] is False


def test_the_trigger_produces_the_same_run_as_the_api(
    registered_functions: dict[str, Function],
    source_env: dict[str, str],
    lake: Lake,
    other_lake: Lake,
    empty_warehouse: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in {**source_env, "WAREHOUSE_DB_URL": empty_warehouse}.items():  # it drains the backlog first
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.INFO)

    registered_functions["extract"].get_user_function()(TimerRequest(past_due=False))

    [name] = manifests(lake)
    manifest, frames = read_run(lake, name)
    assert {t: e["rows"] for t, e in manifest["tables"].items()} == SNAPSHOT_COUNTS
    assert any(r.getMessage().startswith("extract trigger: run_id=" + manifest["run_id"]) for r in caplog.records)
    # The same extract through the API, into another lake, from the same source: the same run.
    direct = extract(load_settings(source_env, needs=("source", "lake")), other_lake)
    direct_manifest, direct_frames = read_run(other_lake, str(direct.manifest))
    for table, entry in manifest["tables"].items():
        other = direct_manifest["tables"][table]
        assert (entry["rows"], entry["columns"], entry["window"]) == (other["rows"], other["columns"], other["window"])
        key = primary_key(table)
        assert_frame_equal(frames[table].sort(key), direct_frames[table].sort(key))
