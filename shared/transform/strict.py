"""Strict input: the source's text dates must be exactly 'YYYY-MM-DD', real calendar days, and inside a window
around the run's extract time (DATE_WINDOW_YEARS); anything else quarantines the run instead of being guessed.

polars' `str.to_date("%Y-%m-%d", strict=False)` reads '202-12-01' as the year 202 and '2024-1-5' as
2024-01-05: one such value added 665,454 rows to dim_date. The window is relative to the run's own
`extracted_at` (not the clock), so a re-run of the same run decides the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from shared.contract import primary_key
from shared.transform.errors import describe_ids

# The source columns that hold dates as text (the source's documented format is 'YYYY-MM-DD').
TEXT_DATE_COLUMNS: dict[str, tuple[str, ...]] = {
    "sales_order": ("agreed_delivery_date", "agreed_payment_date"),
    "purchase_order": ("agreed_delivery_date", "agreed_payment_date"),
    "payment": ("payment_date",),
}
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"


@dataclass(frozen=True)
class DateWindow:
    """The dates a source text date may hold: `first` .. `last`, both included."""

    first: date
    last: date
    years: int

    @classmethod
    def around(cls, as_of: datetime, years: int) -> DateWindow:
        """`years` years either side of `as_of`'s date (29 February falls back to the 28th)."""
        day = as_of.date()

        def shifted(delta: int) -> date:
            year = min(max(day.year + delta, 1), 9999)
            return day.replace(year=year, day=min(day.day, 28) if day.month == 2 else day.day)

        return cls(shifted(-years), shifted(years), years)


def is_iso_date(column: str) -> pl.Expr:
    """True where the text `column` is exactly 'YYYY-MM-DD' and a real calendar day (null stays null)."""
    text = pl.col(column)
    return text.str.contains(ISO_DATE) & text.str.to_date("%Y-%m-%d", strict=False).is_not_null()


def bad_dates(frame: pl.DataFrame, table: str, window: DateWindow | None) -> dict[str, str]:
    """Per text date column of source `table` with a bad value: 'id <id> '<value>'' for each (a short list).

    A value is bad when it is not exactly 'YYYY-MM-DD', not a calendar day, or outside `window`. Only the
    key and the offending column are gathered, never whole rows."""
    key = primary_key(table)
    found: dict[str, str] = {}
    for column in TEXT_DATE_COLUMNS.get(table, ()):
        if column not in frame.columns:
            continue
        ok = is_iso_date(column)
        if window is not None:
            day = pl.col(column).str.to_date("%Y-%m-%d", strict=False)
            ok = ok & day.is_between(window.first, window.last)
        bad = frame.select(key, column).filter(pl.col(column).is_not_null() & ~ok.fill_null(False)).sort(key)
        if bad.height:
            listed = bad.select(pl.format("{} {} '{}'", pl.lit(key), pl.col(key), pl.col(column).str.slice(0, 40)))
            found[column] = f"{bad.height} value(s): " + describe_ids(listed.to_series().to_list())
    return found


def date_problem(run_id: str, table: str, column: str, listed: str, window: DateWindow | None) -> str:
    """The quarantine reason for bad dates in one column: names run, table, column, ids and values."""
    bounds = f" between {window.first} and {window.last} (DATE_WINDOW_YEARS={window.years})" if window else ""
    return (
        f"run {run_id} table {table} column {column}: not 'YYYY-MM-DD' dates{bounds}: {listed}. Nothing of the "
        "run was transformed; fix the source rows (the next extract archives them) or the setting, then "
        f"`totes transform {run_id}`"
    )
