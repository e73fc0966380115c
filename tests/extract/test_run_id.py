"""Run ids grow with every run, even two runs in the same second (the drains apply runs in run-id order)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.contract import RUN_ID
from shared.extract import new_run_id

AT = datetime(2026, 11, 22, 3, 15, tzinfo=UTC)


def test_a_run_id_is_its_time_and_six_hex_digits() -> None:
    run_id = new_run_id(AT)
    assert run_id.startswith("20261122T031500Z-") and len(run_id) == 23 and RUN_ID.fullmatch(run_id)


def test_a_run_in_the_same_second_or_behind_the_previous_one_sorts_after_it() -> None:
    for previous in ("20261122T031500Z-000000", "20261122T031500Z-fffff0", "20261122T031501Z-7f3a9c"):
        for at in (AT, AT - timedelta(seconds=30)):
            run_id = new_run_id(at, previous)
            assert run_id > previous and RUN_ID.fullmatch(run_id) and run_id[:17] == previous[:17]
    assert new_run_id(AT + timedelta(seconds=1), "20261122T031500Z-ffffff").startswith("20261122T031501Z-")
