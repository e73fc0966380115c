"""The current-state merge: latest last_updated wins, in whatever order changes arrive."""

from __future__ import annotations

import itertools

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shared.transform.errors import MissingColumnError
from shared.transform.state import latest_per_key, merge_state
from tests.transform.frames import T0, T1, T2, source


def _department(rows: list[tuple[int, str, str | None, object]]) -> pl.DataFrame:
    return source(
        "department",
        [{"department_id": i, "department_name": n, "location": loc, "last_updated": t} for i, n, loc, t in rows],
    )


def test_merge_into_no_state_keeps_the_latest_row_per_key_sorted() -> None:
    changed = _department([(2, "Purchasing", "Manchester", T0), (1, "Sales", "Leeds", T1), (1, "Sales", "Leds", T0)])
    expected = _department([(1, "Sales", "Leeds", T1), (2, "Purchasing", "Manchester", T0)])
    assert_frame_equal(merge_state(None, changed, "department_id"), expected)
    assert_frame_equal(merge_state(changed.clear(), changed, "department_id"), expected)


def test_a_newer_change_replaces_and_an_older_one_does_not() -> None:
    old = _department([(1, "Sales", "Manchester", T1), (2, "Dispatch", "Leds", T1)])
    changed = _department([(1, "Sales & Marketing", "Manchester", T2), (2, "Dispatch (old)", "Leds", T0)])
    expected = _department([(1, "Sales & Marketing", "Manchester", T2), (2, "Dispatch", "Leds", T1)])
    assert_frame_equal(merge_state(old, changed, "department_id"), expected)


def test_on_equal_last_updated_the_incoming_row_wins() -> None:
    old = _department([(4, "Dispatch", "Leds", T1)])
    changed = _department([(4, "Dispatch", "Leeds", T1)])
    assert_frame_equal(merge_state(old, changed, "department_id"), changed)


def test_within_one_frame_a_tie_goes_to_the_later_row() -> None:
    frame = _department([(4, "Dispatch", "Leds", T1), (4, "Dispatch", "Leeds", T1), (3, "HR", None, T0)])
    expected = _department([(3, "HR", None, T0), (4, "Dispatch", "Leeds", T1)])
    assert_frame_equal(latest_per_key(frame, "department_id"), expected)


def test_applying_changes_in_any_order_ends_in_the_same_state() -> None:
    changes = [
        _department([(1, "Sales", "Manchester", T0), (2, "Purchasing", "Manchester", T0)]),
        _department([(1, "Sales v2", "Manchester", T1)]),
        _department([(1, "Sales v3", "Leeds", T2), (2, "Purchasing v2", "Leds", T1)]),
        _department([(3, "Zoë Ñúñez's team", None, T1)]),
    ]
    expected = _department(
        [
            (1, "Sales v3", "Leeds", T2),
            (2, "Purchasing v2", "Leds", T1),
            (3, "Zoë Ñúñez's team", None, T1),
        ]
    )
    for order in itertools.permutations(changes):
        state: pl.DataFrame | None = None
        for change in order:
            state = merge_state(state, change, "department_id")
        assert state is not None
        assert_frame_equal(state, expected)


def test_the_result_has_the_columns_of_the_change_and_drops_extra_old_ones() -> None:
    old = _department([(1, "Sales", "Manchester", T0)]).with_columns(pl.lit("x").alias("manager"))
    changed = _department([(2, "HR", "Leeds", T0)])
    merged = merge_state(old.select(reversed(old.columns)), changed, "department_id")
    assert merged.columns == changed.columns
    assert merged["department_id"].to_list() == [1, 2]


def test_a_state_lacking_a_column_of_the_change_is_a_terminal_error() -> None:
    old = _department([(1, "Sales", "Manchester", T0)]).drop("location")
    with pytest.raises(MissingColumnError, match="location"):
        merge_state(old, _department([(2, "HR", "Leeds", T0)]), "department_id")
