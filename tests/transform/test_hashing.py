"""The stable row hash: pinned values, injective encoding, independent of batching."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal

import polars as pl
import pytest

from shared.transform import hashing
from shared.transform.hashing import row_hash, with_row_hash

SCHEMA = {
    "id": pl.Int32(),
    "name": pl.String(),
    "day": pl.Date(),
    "price": pl.Decimal(10, 2),
    "paid": pl.Boolean(),
    "at": pl.Time(),
    "ts": pl.Datetime("ms"),
}
ROWS = [
    (1, "Zoë Ñúñez", date(2024, 3, 31), Decimal("2.43"), True, time(14, 20, 52, 186000), datetime(2024, 1, 1)),
    (None, "", date(2024, 4, 1), Decimal("1.00"), False, time(0, 0), datetime(2022, 11, 3, 14, 20, 52, 186000)),
    (3, None, None, Decimal("0"), None, None, None),
]


def _frame() -> pl.DataFrame:
    return pl.DataFrame(ROWS, schema=SCHEMA, orient="row")


M64 = (1 << 64) - 1
P1, P2, P3, P4, P5 = (
    0x9E3779B185EBCA87,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
    0x85EBCA77C2B2AE63,
    0x27D4EB2F165667C5,
)
SEEDS = (0, int.from_bytes(b"totes_v1", "big"))


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & M64


def _round(h: int, word: int) -> int:
    return (_rotl(h ^ (_rotl(word * P2 & M64, 31) * P1 & M64), 27) * P1 + P4) & M64


def _avalanche(h: int) -> int:
    h = (h ^ (h >> 33)) * P2 & M64
    h = (h ^ (h >> 29)) * P3 & M64
    return h ^ (h >> 32)


def _word(value: object, dtype: pl.DataType, seed: int) -> int:
    """Step 1 of the module doc for one value, in plain Python: an independent statement of it."""
    if dtype == pl.String:
        data = ("" if value is None else str(value)).encode()
        h = (seed + P5 + len(data)) & M64
        for i in range(0, len(data), 8):
            h = _round(h, int.from_bytes(data[i : i + 8].ljust(8, b"\0"), "little"))
        return _avalanche(h)
    if value is None:
        return 0
    if isinstance(value, datetime):  # Datetime("ms"): milliseconds since the epoch
        return (value - datetime(1970, 1, 1)) // timedelta(milliseconds=1) & M64
    if isinstance(value, date):
        return (value - date(1970, 1, 1)).days & M64
    if isinstance(value, time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 10**9 + value.microsecond * 1000
    if isinstance(value, Decimal):  # Decimal(10, 2): the value in hundredths
        return int(value.scaleb(2)) & M64
    assert isinstance(value, int)  # bool is an int: 0/1
    return value & M64


def _reference_hash(row: tuple[object, ...]) -> str:
    lanes = []
    for seed in SEEDS:
        h = (seed + P5 + len(row) + 1) & M64
        for value, dtype in zip(row, SCHEMA.values(), strict=True):
            h = _round(h, _word(value, dtype, seed))
        null_mask = sum(1 << i for i, value in enumerate(row) if value is None)
        lanes.append(_avalanche(_round(h, null_mask)))
    return "".join(f"{lane:016x}" for lane in lanes)


def test_the_hash_is_the_algorithm_of_the_module_doc() -> None:
    assert row_hash(_frame(), list(SCHEMA)).to_list() == [_reference_hash(row) for row in ROWS]


def test_pinned_values_never_change() -> None:
    # These values are the warehouse's identity of a version: changing them reloads every version.
    assert row_hash(_frame(), list(SCHEMA)).to_list() == [
        "695811e1c55cc8a8a51e547559b65edf",
        "a0abf11db14141d96bd9883d8450fdd2",
        "7bff5f93ed36d2f159f7dd3eeab23d20",
    ]


def test_null_zero_and_empty_string_hash_differently() -> None:
    frame = pl.DataFrame(
        {"n": [None, 0, 0, None], "s": ["", "", None, None]}, schema={"n": pl.Int32(), "s": pl.String()}
    )
    assert row_hash(frame, ["n", "s"]).n_unique() == 4


def test_moving_bytes_between_string_columns_changes_the_hash() -> None:
    frame = pl.DataFrame({"a": ["ab", "a", "abcdefgh", "abcdefg"], "b": ["c", "bc", "", "h"]})
    assert row_hash(frame, ["a", "b"]).n_unique() == 4


def test_trailing_nul_bytes_and_long_strings_are_distinguished() -> None:
    frame = pl.DataFrame({"s": ["a", "a\0", "a\0\0\0\0\0\0\0", "x" * 100, "x" * 99 + "y"]})
    assert row_hash(frame, ["s"]).n_unique() == 5


def test_column_order_matters_and_values_not_the_frame_layout() -> None:
    frame = _frame()
    assert row_hash(frame, ["id", "name"]).to_list() != row_hash(frame, ["name", "id"]).to_list()
    reordered = frame.select(reversed(frame.columns))
    assert row_hash(reordered, list(SCHEMA)).to_list() == row_hash(frame, list(SCHEMA)).to_list()


def test_a_row_hashes_the_same_alone_in_a_batch_of_other_widths(monkeypatch: pytest.MonkeyPatch) -> None:
    wide = pl.DataFrame({"s": ["short", "x" * 1000, "mid-length string"], "n": [1, 2, 3]})
    expected = row_hash(wide, ["s", "n"]).to_list()
    assert [row_hash(wide.slice(i, 1), ["s", "n"]).item() for i in range(3)] == expected
    monkeypatch.setattr(hashing, "BATCH_ROWS", 2)
    assert row_hash(wide, ["s", "n"]).to_list() == expected


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batches_hashed_on_threads_come_back_in_row_order(monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    frame = pl.DataFrame({"s": [f"row {i}" * (i % 7) for i in range(1000)], "n": list(range(1000))})
    alone = [row_hash(frame.slice(i, 1), ["s", "n"]).item() for i in range(0, 1000, 37)]
    monkeypatch.setattr(hashing, "BATCH_ROWS", 64)
    monkeypatch.setattr(hashing, "THREADS", threads)
    hashed = row_hash(frame, ["s", "n"]).to_list()
    assert len(hashed) == 1000 and len(set(hashed)) == 1000
    assert hashed[::37] == alone


def test_with_row_hash_appends_a_string_column_and_empty_frames_work() -> None:
    hashed = with_row_hash(_frame())
    assert hashed.columns == [*SCHEMA, "etl_row_hash"]
    assert hashed["etl_row_hash"].dtype == pl.String
    assert hashed["etl_row_hash"].str.contains("^[0-9a-f]{32}$").all()
    assert row_hash(_frame().clear(), list(SCHEMA)).to_list() == []


def test_an_unsupported_dtype_is_refused() -> None:
    with pytest.raises(TypeError, match="no stable encoding"):
        row_hash(pl.DataFrame({"f": [1.5]}), ["f"])
