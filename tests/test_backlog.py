"""Runs waiting per stage, measured from the real lake and the warehouse ledger as a run moves through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.backlog import measure_backlog
from shared.extract import extract
from shared.lake import Lake
from shared.load import load
from shared.settings import Settings
from shared.transform.stage import transform


def test_a_run_waits_for_the_transform_then_the_load_then_for_nothing(settings: Settings, lake: Lake) -> None:
    assert measure_backlog(lake, settings).counts == {"transform": 0, "load": 0}

    run_id = extract(settings, lake).run_id
    assert run_id is not None
    backlog = measure_backlog(lake, settings)
    assert backlog.waiting == {"transform": [run_id], "load": []}
    extracted_at = datetime.strptime(run_id.split("-")[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    later = extracted_at + timedelta(minutes=45)
    assert measure_backlog(lake, settings, now=later).oldest_s == {"transform": 2700.0, "load": None}

    transform(lake, run_id)
    assert measure_backlog(lake, settings).waiting == {"transform": [], "load": [run_id]}
    assert measure_backlog(lake).waiting == {"transform": []}, "without a warehouse only the lake is read"
    eight_days_on = measure_backlog(lake, settings, now=extracted_at + timedelta(days=8))
    assert eight_days_on.counts == {"transform": 0, "load": 0}, "only the last BACKLOG_DAYS days are listed"

    load(settings, lake, run_id)
    assert measure_backlog(lake, settings).counts == {"transform": 0, "load": 0}


def test_a_quarantined_run_does_not_wait(settings: Settings, lake: Lake) -> None:
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-bad001"
    lake.put_once(lake.raw, f"_runs/{run_id}.json", b"{not json")
    assert measure_backlog(lake, settings).waiting["transform"] == [run_id]
    assert transform(lake, run_id).status == "quarantined"
    assert measure_backlog(lake, settings).counts == {"transform": 0, "load": 0}
