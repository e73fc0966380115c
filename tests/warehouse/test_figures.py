"""shared.warehouse.figures on literal frames: a first load's summaries from the rows it copies, per currency code
(two currency ids of one code are one row), and an unpaid payment due from its sales or purchase order's agreed
payment date, else its own payment date. tests/warehouse/test_summaries.py compares them with the views.sql
rebuild on a loaded warehouse."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import polars as pl
from polars.testing import assert_frame_equal

from shared.warehouse.figures import FIGURES, KEYS, Figures, Lookup

# dim_currency rows of the run: currency 2 was USD, then GBP (its newest code counts); 1 and 2 share a code.
CURRENCIES = pl.DataFrame(
    {
        "currency_id": [2, 1, 2, 3],
        "currency_code": ["GBP", "GBP", "USD", "EUR"],
        "etl_source_updated": [datetime(2024, 3, 2), datetime(2024, 3, 1), datetime(2024, 3, 1), datetime(2024, 3, 1)],
    },
    schema_overrides={"currency_id": pl.Int32},
)
SALES = pl.DataFrame(
    {
        "sales_order_id": [1, 2, 3],
        "created_date": [date(2024, 3, 5), date(2024, 3, 20), date(2024, 4, 2)],
        "sales_staff_id": [40, 41, 40],
        "counterparty_id": [20, 21, 20],
        "units_sold": [2, 1, 5],
        "unit_price": [Decimal("1.50"), Decimal("10.00"), Decimal("0.99")],
        "currency_id": [1, 2, 3],
        "design_id": [10, 10, 11],
        "agreed_payment_date": [date(2024, 4, 1), None, date(2024, 4, 30)],
        "agreed_delivery_location_id": [30, 30, 31],
    },
    schema_overrides={"unit_price": pl.Decimal(10, 2), "units_sold": pl.Int32, "currency_id": pl.Int32},
)
PURCHASES = pl.DataFrame(
    {
        "purchase_order_id": [5, 6],
        "created_date": [date(2024, 3, 1), date(2024, 3, 31)],
        "counterparty_id": [20, 22],
        "item_code": ["AB1", "AB1"],
        "item_quantity": [3, 4],
        "item_unit_price": [Decimal("2.00"), Decimal("1.25")],
        "currency_id": [1, 2],
        "agreed_payment_date": [date(2024, 5, 5), date(2024, 5, 6)],
    },
    schema_overrides={"item_unit_price": pl.Decimal(10, 2), "item_quantity": pl.Int32, "currency_id": pl.Int32},
)
TRANSACTIONS = pl.DataFrame(
    {
        "transaction_id": [100, 101, 102, 103],
        "sales_order_id": [None, 1, None, None],
        "purchase_order_id": [None, None, 5, None],
    },
    schema={"transaction_id": pl.Int32, "sales_order_id": pl.Int32, "purchase_order_id": pl.Int32},
)
PAYMENTS = pl.DataFrame(
    {
        "payment_id": [1, 2, 3, 4],
        "transaction_id": [100, 101, 102, 103],
        "payment_amount": [Decimal("5.00"), Decimal("7.00"), Decimal("2.00"), Decimal("1.00")],
        "currency_id": [1, 2, 1, 1],
        "payment_type_id": [1, 1, 2, 1],
        "paid": [True, False, False, False],
        "payment_date": [date(2024, 3, 3), date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 9)],
    },
    schema_overrides={"payment_amount": pl.Decimal(10, 2), "currency_id": pl.Int32, "transaction_id": pl.Int32},
)


def loaded(*, payments_first: bool = False) -> Figures:
    """Figures given the literal rows in load order (dimensions, then facts), each table in two slices."""
    figures = Figures()
    figures.currencies(CURRENCIES)
    tables = [("dim_transaction", TRANSACTIONS), ("fact_sales_order", SALES), ("fact_purchase_order", PURCHASES)]
    if payments_first:
        tables.insert(0, ("fact_payment", PAYMENTS))
    else:
        tables.append(("fact_payment", PAYMENTS))
    for table, frame in tables:
        figures.add(table, frame.head(1))
        figures.add(table, frame.slice(1))
        figures.done(table)
    return figures


def rows(summary: str, *values: tuple[object, ...]) -> pl.DataFrame:
    amounts, counts = FIGURES[summary][:-1], FIGURES[summary][-1:]
    if summary != "payment_summary":  # the order summaries: an amount, then counts of orders and units
        amounts, counts = FIGURES[summary][:1], FIGURES[summary][1:]
    schema = {
        "figure": pl.String(),
        "currency_code": pl.String(),
        **KEYS[summary],
        **dict.fromkeys(amounts, pl.Decimal(38, 2)),
        **dict.fromkeys(counts, pl.Int64()),
    }
    return pl.DataFrame(list(values), schema=schema, orient="row")


def summary(figures: Figures, name: str) -> pl.DataFrame:
    return figures.summaries([name])[name].sort(pl.all())


def test_sales_figures_per_currency_code() -> None:
    got = summary(loaded(), "sales_summary")
    d = Decimal
    expected = rows(
        "sales_summary",
        ("by_location", "EUR", None, None, None, 31, None, d("4.95"), 1, 5),
        ("by_location", "GBP", None, None, None, 30, None, d("13.00"), 2, 3),
        ("by_month", "EUR", date(2024, 4, 1), None, None, None, None, d("4.95"), 1, 5),
        ("by_month", "GBP", date(2024, 3, 1), None, None, None, None, d("13.00"), 2, 3),
        ("top_counterparties", "EUR", None, None, 20, None, None, d("4.95"), 1, 5),
        ("top_counterparties", "GBP", None, None, 20, None, None, d("3.00"), 1, 2),
        ("top_counterparties", "GBP", None, None, 21, None, None, d("10.00"), 1, 1),
        ("top_designs", "EUR", None, 11, None, None, None, d("4.95"), 1, 5),
        ("top_designs", "GBP", None, 10, None, None, None, d("13.00"), 2, 3),
        ("top_staff", "EUR", None, None, None, None, 40, d("4.95"), 1, 5),
        ("top_staff", "GBP", None, None, None, None, 40, d("3.00"), 1, 2),
        ("top_staff", "GBP", None, None, None, None, 41, d("10.00"), 1, 1),
    ).sort(pl.all())
    assert_frame_equal(got, expected)


def test_purchase_figures_per_currency_code() -> None:
    got = summary(loaded(), "purchase_summary")
    expected = rows(
        "purchase_summary",
        ("by_month", "GBP", date(2024, 3, 1), None, None, Decimal("11.00"), 2, 7),
        ("top_item_codes", "GBP", None, None, "AB1", Decimal("11.00"), 2, 7),
        ("top_suppliers", "GBP", None, 20, None, Decimal("6.00"), 1, 3),
        ("top_suppliers", "GBP", None, 22, None, Decimal("5.00"), 1, 4),
    ).sort(pl.all())
    assert_frame_equal(got, expected)


def test_an_unpaid_payment_is_due_from_its_orders_agreed_payment_date_else_its_own_date() -> None:
    got = summary(loaded(), "payment_summary")
    d = Decimal
    expected = rows(
        "payment_summary",
        ("by_due_date", "GBP", None, None, None, d("5.00"), d("0"), 1),  # paid: no due date
        ("by_due_date", "GBP", None, None, date(2024, 3, 9), d("0"), d("1.00"), 1),  # no order: its own date
        ("by_due_date", "GBP", None, None, date(2024, 4, 1), d("0"), d("7.00"), 1),  # its sales order's
        ("by_due_date", "GBP", None, None, date(2024, 5, 5), d("0"), d("2.00"), 1),  # its purchase order's
        ("by_type_month", "GBP", date(2024, 3, 1), 1, None, d("5.00"), d("8.00"), 3),
        ("by_type_month", "GBP", date(2024, 3, 1), 2, None, d("0"), d("2.00"), 1),
    ).sort(pl.all())
    assert_frame_equal(got, expected)


def test_a_summary_is_given_only_when_every_table_it_reads_was_copied_and_nothing_deleted() -> None:
    assert loaded().ready() == ["sales_summary", "purchase_summary", "payment_summary"]
    assert loaded().ready(deleted={"fact_payment": (1,)}) == []
    # Payments copied before their transactions and orders were (never so in a load) cannot be summarised.
    assert loaded(payments_first=True).ready() == ["sales_summary", "purchase_summary"]
    figures = Figures()
    figures.add("fact_sales_order", SALES)
    figures.done("fact_sales_order")
    assert figures.ready() == [], "the currencies' codes unknown (dim_currency was not empty)"
    figures = Figures()
    figures.currencies(CURRENCIES)
    figures.add("fact_sales_order", SALES)
    figures.done("fact_sales_order")
    figures.add("fact_payment", PAYMENTS)
    figures.done("fact_payment")
    assert figures.ready() == ["sales_summary"]


def test_a_lookup_finds_each_key_in_unsorted_rows_and_gives_null_for_null_or_unknown_keys() -> None:
    lookup = Lookup(pl.Series([30, 10, 20], dtype=pl.Int32), pl.Series([date(2024, 1, 3), None, date(2024, 1, 2)]))
    got = lookup.get(pl.Series([20, 5, None, 30, 10, 40], dtype=pl.Int32))
    assert got.to_list() == [date(2024, 1, 2), None, None, date(2024, 1, 3), None, None]
    empty = Lookup(pl.Series([], dtype=pl.Int32), pl.Series([], dtype=pl.Date))
    assert empty.get(pl.Series([1, None], dtype=pl.Int32)).to_list() == [None, None]
