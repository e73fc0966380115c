"""Parsing COPY's CSV into source-typed frames, and the tail of already archived rows (pure)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shared.errors import TerminalError
from shared.extract.catalog import SourceColumn, SourceTable
from shared.extract.parquet import Tail, copy_query, drop_archived, parse_batch

TABLE = SourceTable(
    "public",
    "thing",
    (
        SourceColumn("thing_id", "integer", pl.Int32(), True),
        SourceColumn("name", "text", pl.String(), True),
        SourceColumn("price", "numeric(10,2)", pl.Decimal(10, 2), True),
        SourceColumn("paid", "boolean", pl.Boolean(), True),
        SourceColumn("last_updated", "timestamp(3) without time zone", pl.Datetime("ms"), True),
        SourceColumn("seen", "timestamp(6) with time zone", pl.Datetime("us", "UTC"), False),
        SourceColumn("day", "date", pl.Date(), False),
        SourceColumn("meta", "jsonb", pl.String(), False, as_text=True),
        SourceColumn("stamp", "timestamp(3) with time zone", pl.Datetime("ms", "UTC"), False),
    ),
)


def test_parse_batch_types_every_column_and_keeps_null_apart_from_empty() -> None:
    csv = (
        b'1,"a ""b"", c",12.50,t,1731666069962,2024-11-15 10:21:09.5+00,2024-11-15,"{""k"": 1}",-1\n'
        b'2,"",0.00,f,1731666069000,,,,\n'
        b'3,,-3.10,,1731666069900,,,"line\nbreak",0\n'
    )
    expected = pl.DataFrame(
        {
            "thing_id": [1, 2, 3],
            "name": ['a "b", c', "", None],
            "price": [Decimal("12.50"), Decimal("0.00"), Decimal("-3.10")],
            "paid": [True, False, None],
            "last_updated": [
                datetime(2024, 11, 15, 10, 21, 9, 962000),
                datetime(2024, 11, 15, 10, 21, 9),
                datetime(2024, 11, 15, 10, 21, 9, 900000),
            ],
            "seen": [datetime(2024, 11, 15, 10, 21, 9, 500000), None, None],
            "day": [date(2024, 11, 15), None, None],
            "meta": ['{"k": 1}', None, "line\nbreak"],
            "stamp": [datetime(1969, 12, 31, 23, 59, 59, 999000), None, datetime(1970, 1, 1)],
        },
        schema={
            "thing_id": pl.Int32,
            "name": pl.String,
            "price": pl.Decimal(10, 2),
            "paid": pl.Boolean,
            "last_updated": pl.Datetime("ms"),
            "seen": pl.Datetime("us", "UTC"),
            "day": pl.Date,
            "meta": pl.String,
            "stamp": pl.Datetime("ms", "UTC"),
        },
    )
    assert_frame_equal(parse_batch(TABLE, csv), expected)


def test_a_value_that_does_not_parse_is_terminal_and_names_the_table() -> None:
    with pytest.raises(TerminalError, match="thing"):
        parse_batch(TABLE, b"x,a,1.00,t,1731666069000,,,,\n")


def test_copy_query_quotes_identifiers_and_passes_the_bound_as_a_parameter() -> None:
    after = datetime(2024, 11, 15, 10, 0)
    query, params = copy_query(TABLE, after)
    text = query.as_string()
    assert text == (
        'COPY (SELECT "thing_id", "name", "price", "paid", round(date_part(\'epoch\', "last_updated") * 1000)::int8, '
        '"seen", "day", "meta"::text, round(date_part(\'epoch\', "stamp") * 1000)::int8 '
        'FROM "public"."thing" WHERE "last_updated" > %s) TO STDOUT (FORMAT csv)'
    )
    assert params == (after,)
    assert copy_query(TABLE, None)[1] == ()


def _rows(ids: list[int], minutes: list[int]) -> pl.DataFrame:
    start = datetime(2024, 1, 1)
    return pl.DataFrame(
        {"thing_id": ids, "last_updated": [start + timedelta(minutes=m) for m in minutes]},
        schema={"thing_id": pl.Int32, "last_updated": pl.Datetime("ms")},
    )


def test_the_tail_keeps_the_rows_within_the_lookback_of_the_newest() -> None:
    tail = Tail("thing_id", None, timedelta(minutes=10))
    tail.add(_rows([1, 2, 3], [0, 5, 12]))
    tail.add(_rows([4, 5], [20, 1]))
    rows = tail.rows()
    assert rows is not None
    assert sorted(rows["thing_id"].to_list()) == [3, 4]  # newest is minute 20: rows after minute 10
    tail = Tail("thing_id", datetime(2024, 1, 1) + timedelta(minutes=15), timedelta(minutes=10))
    tail.add(_rows([1, 2, 3], [0, 6, 12]))
    assert sorted(tail.rows()["thing_id"].to_list()) == [2, 3]  # type: ignore[index]


def test_rows_identical_to_archived_ones_are_dropped() -> None:
    frame = _rows([1, 2, 3, 4], [1, 2, 3, 4])
    tail = Tail("thing_id", None, timedelta(minutes=10))
    tail.add(frame.filter(pl.col("thing_id") != 4))
    archived = tail.rows()
    assert archived is not None and archived.height == 3
    changed = frame.with_columns(
        pl.when(pl.col("thing_id") == 2).then(pl.col("last_updated") + timedelta(seconds=1)).otherwise("last_updated")
    )
    kept = drop_archived(changed, archived, "thing_id")
    assert kept["thing_id"].to_list() == [2, 4]  # 2 changed, 4 was never archived; order kept
    assert drop_archived(frame.head(0), archived, "thing_id").height == 0


def test_a_tail_too_long_to_keep_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.extract.parquet

    monkeypatch.setattr(shared.extract.parquet, "TAIL_LIMIT", 2)
    tail = Tail("thing_id", None, timedelta(minutes=10))
    tail.add(_rows([1, 2, 3], [1, 2, 3]))
    assert tail.rows() is None
    empty = Tail("thing_id", None, timedelta(minutes=10)).rows()
    assert empty is not None and empty.height == 0
