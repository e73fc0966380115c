"""Literal curated frames for load tests: the transform's output contract, a few rows per table."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import polars as pl

from shared.contract import OUTPUT_SCHEMA

T0 = datetime(2024, 3, 1, 9, 0, 0, 125000)
T1 = datetime(2024, 3, 2, 10, 30, 0, 500000)
T2 = datetime(2024, 3, 3, 11, 45, 0, 999000)

INT, TEXT, DATE, TIME = pl.Int32(), pl.String(), pl.Date(), pl.Time()
MONEY, STAMP, BOOL = pl.Decimal(10, 2), pl.Datetime("ms"), pl.Boolean()

# The curated files follow the transform's output contract: the load is tested against the same one.
SCHEMAS: dict[str, dict[str, pl.DataType]] = OUTPUT_SCHEMA


def frame(table: str, *rows: tuple[Any, ...]) -> pl.DataFrame:
    """A curated frame of `table` from row tuples in contract column order."""
    return pl.DataFrame(list(rows), schema=SCHEMAS[table], orient="row")


def staff(staff_id: int, first_name: str = "Jeremie", updated: datetime = T0, department: str = "Purchasing") -> tuple:
    return (staff_id, first_name, "Franey", department, "Manchester", "jeremie.franey@terrifictotes.com", updated)


def location(location_id: int, city: str = "New Patienceburgh", updated: datetime = T0) -> tuple:
    return (location_id, "6826 Herzog Via", None, "Avon", city, "28441", "Turkey", "1803 637401", updated)


def counterparty(counterparty_id: int, name: str = "Fahey and Sons", updated: datetime = T0) -> tuple:
    return (
        counterparty_id,
        name,
        "605 Haskell Trafficway",
        "",
        None,
        "East Bobbie",
        "88253-4257",
        "Chad",
        "9687 937447",
        updated,
    )


def sales_order(
    order_id: int,
    *,
    units: int = 100,
    updated: datetime = T0,
    staff_id: int = 1,
    created: date = date(2024, 3, 1),
    dates: tuple[date, date] = (date(2024, 3, 5), date(2024, 3, 4)),
    row_hash: str | None = None,
) -> tuple:
    """A fact_sales_order version referencing counterparty 1, currency 1, design 1, location 1."""
    return (
        order_id,
        created,
        time(9, 0, 0, 125000),
        updated.date(),
        updated.time(),
        staff_id,
        1,
        units,
        Decimal("2.50"),
        1,
        1,
        dates[0],
        dates[1],
        1,
        row_hash or f"so{order_id}-{units}",
    )


def base_run(updated: datetime = T0) -> dict[str, pl.DataFrame]:
    """A first run: every dimension and one row of each fact (two sales orders)."""
    return {
        "dim_date": dim_date(date(2024, 3, 1), date(2024, 3, 2)),
        "dim_staff": frame("dim_staff", staff(1, updated=updated), staff(2, "Deron", updated)),
        "dim_location": frame("dim_location", location(1, updated=updated), location(2, "Aliso Viejo", updated)),
        "dim_currency": frame("dim_currency", (1, "GBP", "Pound Sterling", updated), (2, "USD", "US Dollar", updated)),
        "dim_design": frame("dim_design", (1, "Wooden", "/usr", "wooden-20220717-npgz.json", updated)),
        "dim_counterparty": frame("dim_counterparty", counterparty(1, updated=updated)),
        "dim_payment_type": frame("dim_payment_type", (1, "SALES_RECEIPT", updated), (2, "PURCHASE_PAYMENT", updated)),
        "dim_transaction": frame("dim_transaction", (1, "SALE", 1, None, updated), (2, "PURCHASE", None, 1, updated)),
        "fact_sales_order": frame("fact_sales_order", sales_order(1), sales_order(2, units=7, staff_id=2)),
        "fact_purchase_order": frame(
            "fact_purchase_order",
            (
                1,
                date(2024, 3, 1),
                time(9, 1, 2, 3000),
                date(2024, 3, 1),
                time(9, 1, 2, 3000),
                2,
                1,
                "ZDOI5EA",
                10,
                Decimal("3.10"),
                2,
                date(2024, 3, 6),
                date(2024, 3, 7),
                2,
                "po1",
            ),
        ),
        "fact_payment": frame(
            "fact_payment",
            (
                1,
                date(2024, 3, 1),
                time(9, 2, 0),
                date(2024, 3, 1),
                time(9, 2, 0),
                1,
                1,
                Decimal("250.00"),
                1,
                1,
                False,
                date(2024, 3, 8),
                "pay1",
            ),
        ),
    }


def dim_date(*days: date) -> pl.DataFrame:
    """dim_date rows as the transform writes them (ISO weekday, English names)."""
    names = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    months = ["January", "February", "March", "April", "May", "June", "July"]
    months += ["August", "September", "October", "November", "December"]
    return frame(
        "dim_date",
        *[
            (d, d.year, d.month, d.day, d.isoweekday(), names[d.weekday()], months[d.month - 1], (d.month + 2) // 3)
            for d in days
        ],
    )
