"""dim_date rows: ISO weekday, English names, quarters."""

from __future__ import annotations

from datetime import date

import polars as pl
from polars.testing import assert_frame_equal

from shared.contract import OUTPUT_SCHEMA
from shared.transform.dates import calendar_rows


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
