"""dim_date rows: the calendar attributes of dates, in English whatever the machine's locale."""

from __future__ import annotations

import polars as pl

from shared.contract import DAY_NAMES, MONTH_NAMES

_DAYS = dict(enumerate(DAY_NAMES, start=1))
_MONTHS = dict(enumerate(MONTH_NAMES, start=1))


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
            date_id.dt.weekday().replace_strict(_DAYS, return_dtype=pl.String).alias("day_name"),
            date_id.dt.month().replace_strict(_MONTHS, return_dtype=pl.String).alias("month_name"),
            date_id.dt.quarter().cast(pl.Int32).alias("quarter"),
        )
    )
