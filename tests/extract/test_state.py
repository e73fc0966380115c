"""The watermark state (pure): its JSON, lower bounds, and an advance that never moves back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from shared.errors import TerminalError
from shared.extract.source import ROW_HASH
from shared.extract.state import ExtractState

T0 = datetime(2024, 11, 15, 10, 21, 9, 962000)
AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_the_empty_state_extracts_everything() -> None:
    state = ExtractState.parse(None)
    assert state.lower_bound("staff", timedelta(minutes=10)) is None
    assert state.archived("staff", "staff_id") is None


def test_state_round_trips_through_json() -> None:
    tail = pl.DataFrame(
        {"staff_id": [2, 1], ROW_HASH: [2**64 - 1, 5]}, schema={"staff_id": pl.Int32, ROW_HASH: pl.UInt64}
    )
    state = ExtractState().advanced(
        "run-1", AT, {"staff": T0}, {"staff": ["nickname"]}, {"staff": tail, "payment": None}
    )
    again = ExtractState.parse(state.to_json())
    assert again == state
    assert again.lower_bound("staff", timedelta(minutes=10)) == T0 - timedelta(minutes=10)
    archived = again.archived("staff", "staff_id")
    assert archived is not None and archived.sort("staff_id").rows() == [(1, 5), (2, 2**64 - 1)]
    assert again.archived("payment", "payment_id") is None
    assert again.last_changes_at == again.last_checked_at == AT


def test_watermarks_never_move_back() -> None:
    state = ExtractState().advanced("run-1", AT, {"staff": T0, "design": T0}, {}, {})
    later = state.advanced("run-2", AT, {"staff": T0 - timedelta(days=1)}, {}, {})
    assert later.tables == {"staff": T0, "design": T0}
    checked = later.checked(AT + timedelta(minutes=5), {}, {})
    assert checked.tables == later.tables and checked.last_changes_at == AT
    assert checked.last_checked_at == AT + timedelta(minutes=5) and checked.last_run_id == "run-2"


def test_a_corrupt_state_is_terminal_and_says_how_to_recover() -> None:
    with pytest.raises(TerminalError, match="delete it"):
        ExtractState.parse(b'{"tables": {"staff": "not a time"}}')


def test_a_tail_is_stored_in_12_bytes_a_row_and_a_state_of_pairs_still_reads() -> None:
    keys = list(range(50_000, 0, -1))
    tail = pl.DataFrame(
        {"payment_id": keys, ROW_HASH: [k * 2**40 + 7 for k in keys]},
        schema={"payment_id": pl.Int32, ROW_HASH: pl.UInt64},
    )
    state = ExtractState().advanced("run-1", AT, {"payment": T0}, {}, {"payment": tail})
    stored = state.to_json()
    assert len(stored) < 50_000 * 12 * 4 / 3 + 1_000, "base64 of 12 bytes a row, not a JSON list of pairs"
    archived = ExtractState.parse(stored).archived("payment", "payment_id")
    assert archived is not None and archived.rows() == tail.sort("payment_id").rows()

    older = (
        b'{"tables": {"staff": "2024-11-15T10:21:09.962000"}, "tails": {"staff": [[2, 18446744073709551615], [1, 5]]}}'
    )
    from_pairs = ExtractState.parse(older).archived("staff", "staff_id")
    assert from_pairs is not None and from_pairs.rows() == [(1, 5), (2, 2**64 - 1)]
    assert from_pairs.schema == {"staff_id": pl.Int32, ROW_HASH: pl.UInt64}


@pytest.mark.parametrize("tail", ['"not base64!"', '"AAAA"'], ids=["not base64", "not 12 bytes a row"])
def test_a_corrupt_tail_is_terminal(tail: str) -> None:
    with pytest.raises(TerminalError, match="delete it"):
        ExtractState.parse(b'{"tables": {}, "tails": {"staff": ' + tail.encode() + b"}}")
