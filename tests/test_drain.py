"""Order- and concurrency-independence and the self-healing backlog (issue 12, cases 1, 2, 3 and 8), on real
PostgreSQL and Azurite: whatever order and concurrency the stage invocations come in, the warehouse ends equal
to the source (shared.verify, every column of every table)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from azure.functions.timer import TimerRequest

from shared.backlog import backlog_lines
from shared.cli import main
from shared.contract import LoadMessage, manifest_name, quarantine_name
from shared.drain import _months, drain_blob, drain_loads, drain_message, pending, read_cursor
from shared.errors import TerminalError
from shared.extract import extract
from shared.lake import Lake
from shared.pipeline import run_cycle
from shared.settings import Settings
from tests.recovery import assert_warehouse_equals_source, change, ledger, move, rename, two_runs, urls


def _blob(lake: Lake, run_id: str) -> str:
    return f"{lake.raw}/{manifest_name(run_id)}"


def _together(*calls: Callable[[], Any]) -> list[Any]:
    """Run `calls` in threads released at the same moment; their results (an exception is re-raised)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # collected, re-raised in the test's thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def test_runs_triggered_in_reverse_order_are_transformed_and_loaded_in_run_order(
    settings: Settings, lake: Lake
) -> None:
    """Case 1: B's event before A's. B's trigger drains A first; load messages in reverse order change nothing."""
    run_cycle(settings, lake)
    a, b = two_runs(settings, lake, seed=11)
    drained = drain_blob(_blob(lake, b), lake)
    assert [o.run_id for o in drained.outcomes] == [a, b], "the trigger of B transformed A first"
    assert drain_blob(_blob(lake, a), lake).outcomes == [], "A's late event finds nothing pending"
    for run_id in (b, a):  # load messages in reverse order, each delivered twice, as the load trigger does
        for _ in range(2):
            drain_message(settings, lake, LoadMessage(run_id).to_json())
    assert ledger(settings)[-2:] == [a, b]
    assert_warehouse_equals_source(settings)


def test_concurrent_transform_and_load_invocations_end_as_a_sequential_pipeline(settings: Settings, lake: Lake) -> None:
    """Case 2: two transforms at the same moment (one drains, one yields), then two loads at the same moment."""
    run_cycle(settings, lake)
    for seed in (21, 23):
        a, b = two_runs(settings, lake, seed=seed)
        first, second = _together(*(lambda run=run: drain_blob(_blob(lake, run), lake) for run in (a, b)))
        done = [o.run_id for o in first.outcomes + second.outcomes if o.status == "transformed"]
        assert sorted(done) == [a, b] and len(done) == 2, "each run transformed once, by one drain"
        assert pending(lake).transform == []
        _together(lambda: drain_loads(settings, lake), lambda: drain_loads(settings, lake))
        assert ledger(settings)[-2:] == [a, b]
        assert_warehouse_equals_source(settings)


def test_a_run_extracted_alone_is_loaded_by_the_next_cycle(settings: Settings, lake: Lake) -> None:
    """Case 3 (`totes extract` alone): the next cycle drains it before extracting newer changes."""
    run_cycle(settings, lake)
    change(settings, 31, (rename(3, "Lost", "Nowhere"),))
    lost = extract(settings, lake).run_id
    assert lost is not None and pending(lake, settings).transform == [lost]
    change(settings, 32, (move(4, 3),))
    summary = run_cycle(settings, lake)
    assert summary.run_id is not None and summary.run_id > lost
    assert ledger(settings)[-2:] == [lost, summary.run_id]
    waiting = pending(lake, settings)
    assert (waiting.transform, waiting.load) == ([], [])
    assert read_cursor(lake) == summary.run_id, "the drains list from the newest loaded run's month on"
    assert_warehouse_equals_source(settings)


def test_the_extract_timer_drains_a_run_whose_event_was_lost(
    settings: Settings,
    lake: Lake,
    lake_env: dict[str, str],
    registered_functions: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Case 3 in Azure: a run whose blob event never came is loaded by the next timer tick."""
    lost = extract(settings, lake).run_id
    assert lost is not None
    source_url, warehouse_url = urls(settings)
    for name, value in {**lake_env, "TOTESYS_DB_URL": source_url, "WAREHOUSE_DB_URL": warehouse_url}.items():
        monkeypatch.setenv(name, value)
    registered_functions["extract"].get_user_function()(TimerRequest(past_due=False))
    assert ledger(settings) == [lost]
    assert_warehouse_equals_source(settings)


def test_a_quarantined_run_holds_later_runs_back_until_totes_retry_supersedes_it(
    settings: Settings,
    lake: Lake,
    lake_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Case 8: an impossible date quarantines a run; later runs wait; after the source row is fixed (without a
    new last_updated), `totes retry` re-extracts the run's rows and the next cycle loads everything."""
    run_cycle(settings, lake)
    source_url, _ = urls(settings)
    change(settings, 41, (rename(2, "Quarantined", "Bath"), move(5, 2)))
    with psycopg.connect(source_url) as conn:
        conn.execute(
            "UPDATE sales_order SET agreed_delivery_date = '2024-02-30', last_updated = localtimestamp "
            "WHERE sales_order_id = 7"
        )
    with pytest.raises(TerminalError, match="quarantined"):
        run_cycle(settings, lake)
    bad = pending(lake).blocked_by
    assert bad is not None and lake.exists(lake.curated, quarantine_name(bad))
    change(settings, 42, (rename(2, "Later", "Ely"),))
    with pytest.raises(TerminalError, match=f"totes retry {bad}"):
        run_cycle(settings, lake)
    held = pending(lake, settings)
    assert held.blocked_by == bad and len(held.held) == 1 and held.transform == []
    assert not lake.exists(lake.curated, manifest_name(held.held[0])), "the later run waits behind the quarantined one"
    assert f"quarantined: run {bad} holds back 1 run(s); fix the source rows, then `totes retry {bad}`" in (
        backlog_lines(settings, lake)
    )

    with psycopg.connect(source_url) as conn:  # the fix keeps last_updated: only the retry brings the row back
        conn.execute("UPDATE sales_order SET agreed_delivery_date = '2024-03-01' WHERE sales_order_id = 7")
    source_url, warehouse_url = urls(settings)
    for name, value in {**lake_env, "TOTESYS_DB_URL": source_url, "WAREHOUSE_DB_URL": warehouse_url}.items():
        monkeypatch.setenv(name, value)
    assert main(["retry", bad]) == 0
    superseding = lake.read_json(lake.curated, quarantine_name(bad))["superseded_by"]
    assert bad < superseding < held.held[0] and superseding.startswith(f"{bad}.r1-")
    assert main(["status"]) == 0
    assert "backlog transform: 2 run(s) waiting" in capsys.readouterr().out, "the superseding run and the held one"
    run_cycle(settings, lake)
    loaded = ledger(settings)
    assert bad not in loaded and loaded.index(superseding) + 1 == loaded.index(held.held[0])
    assert pending(lake, settings).blocked_by is None
    lines = backlog_lines(settings, lake)
    assert lines[:2] == ["backlog transform: 0 run(s) waiting", "backlog load: 0 run(s) waiting"]
    assert lines[2].startswith("source last checked ") and lines[2].endswith("nothing waits (idle lag)")
    assert_warehouse_equals_source(settings)


def test_the_drains_list_the_months_from_the_cursor_to_a_day_ahead() -> None:
    now = datetime(2027, 1, 31, 12, tzinfo=UTC)
    assert _months("202611", now) == ["202611", "202612", "202701", "202702"]
    assert _months("202702", now) == ["202702"]
