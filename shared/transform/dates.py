"""dim_date rows: the calendar attributes of dates, in English whatever the machine's locale."""

from __future__ import annotations

from datetime import date

import polars as pl

DAY_NAMES: dict[int, str] = {
    1: "Monday",
    2: "Tuesday",
    3: "Wednesday",
    4: "Thursday",
    5: "Friday",
    6: "Saturday",
    7: "Sunday",
}
MONTH_NAMES: dict[int, str] = {
    1: "January",
    2: "February",
    3: "March",
    4: "April",
    5: "May",
    6: "June",
    7: "July",
    8: "August",
    9: "September",
    10: "October",
    11: "November",
    12: "December",
}


def calendar_rows(dates: pl.Series) -> pl.DataFrame:
    """One dim_date row per distinct non-null date of `dates`, sorted by date_id."""
    date_id = pl.col("date_id")
    return (
        pl.DataFrame({"date_id": dates.cast(pl.Date)})
        .drop_nulls()
        .unique()
        .sort("date_id")
        .select(
            date_id,
            date_id.dt.year().cast(pl.Int32).alias("year"),
            date_id.dt.month().cast(pl.Int32).alias("month"),
            date_id.dt.day().cast(pl.Int32).alias("day"),
            date_id.dt.weekday().cast(pl.Int32).alias("day_of_week"),  # ISO: Monday=1 .. Sunday=7
            date_id.dt.weekday().replace_strict(DAY_NAMES, return_dtype=pl.String).alias("day_name"),
            date_id.dt.month().replace_strict(MONTH_NAMES, return_dtype=pl.String).alias("month_name"),
            date_id.dt.quarter().cast(pl.Int32).alias("quarter"),
        )
    )


def build_calendar(start: date, end: date) -> pl.DataFrame:
    """Contiguous dim_date rows for every day from `start` to `end` inclusive (none if end < start)."""
    if end < start:
        return calendar_rows(pl.Series("date_id", [], dtype=pl.Date))
    return calendar_rows(pl.date_range(start, end, interval="1d", eager=True))
