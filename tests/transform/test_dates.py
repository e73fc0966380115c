"""dim_date rows: ISO weekday, English names, quarters, contiguous calendars."""

from __future__ import annotations

from datetime import date

import polars as pl
from polars.testing import assert_frame_equal

from shared.transform.contract import OUTPUT_SCHEMA
from shared.transform.dates import build_calendar, calendar_rows


def _dim_date(rows: list[tuple[date, int, int, int, int, str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=OUTPUT_SCHEMA["dim_date"], orient="row")


def test_calendar_rows_on_a_quarter_boundary_and_a_sunday() -> None:
    dates = pl.Series([date(2024, 4, 1), date(2024, 3, 31), None, date(2024, 4, 1), date(2022, 11, 3)])
    expected = _dim_date(
        [
            (date(2022, 11, 3), 2022, 11, 3, 4, "Thursday", "November", 4),
            (date(2024, 3, 31), 2024, 3, 31, 7, "Sunday", "March", 1),
            (date(2024, 4, 1), 2024, 4, 1, 1, "Monday", "April", 2),
        ]
    )
    assert_frame_equal(calendar_rows(dates), expected)


def test_build_calendar_is_contiguous_and_inclusive() -> None:
    calendar = build_calendar(date(2023, 12, 30), date(2024, 1, 2))
    expected = _dim_date(
        [
            (date(2023, 12, 30), 2023, 12, 30, 6, "Saturday", "December", 4),
            (date(2023, 12, 31), 2023, 12, 31, 7, "Sunday", "December", 4),
            (date(2024, 1, 1), 2024, 1, 1, 1, "Monday", "January", 1),
            (date(2024, 1, 2), 2024, 1, 2, 2, "Tuesday", "January", 1),
        ]
    )
    assert_frame_equal(calendar, expected)


def test_build_calendar_over_a_leap_year_has_every_day_once() -> None:
    calendar = build_calendar(date(2024, 1, 1), date(2024, 12, 31))
    assert calendar.height == 366
    assert calendar["date_id"].is_unique().all()
    assert calendar.filter(pl.col("date_id") == date(2024, 2, 29))["day_name"].to_list() == ["Thursday"]
    assert calendar.group_by("quarter").len().sort("quarter")["len"].to_list() == [91, 91, 92, 92]
    assert calendar["day_of_week"].min() == 1 and calendar["day_of_week"].max() == 7


def test_build_calendar_of_one_day_and_of_a_reversed_range() -> None:
    assert build_calendar(date(2024, 3, 31), date(2024, 3, 31)).height == 1
    empty = build_calendar(date(2024, 4, 1), date(2024, 3, 31))
    assert_frame_equal(empty, _dim_date([]))
