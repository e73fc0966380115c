"""Each builder on small literal frames: exact output rows, columns and dtypes; the latest version per key and
dim_date's calendar rows (ISO weekday, English names, quarters)."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shared.contract import OUTPUT_SCHEMA
from shared.transform.builders import (
    build_dim_counterparty,
    build_dim_currency,
    build_dim_date,
    build_dim_design,
    build_dim_location,
    build_dim_payment_type,
    build_dim_staff,
    build_dim_transaction,
    build_fact_payment,
    build_fact_purchase_order,
    build_fact_sales_order,
    calendar_rows,
    latest_per_key,
)
from shared.transform.errors import InvalidValueError, MissingReferenceError
from tests.transform.frames import T0, T1, T2, departments, source

CREATED = datetime(2022, 11, 3, 14, 20, 52, 186000)
UPDATED = datetime(2024, 3, 31, 23, 5, 7, 9000)


def _out(table: str, rows: list[tuple[object, ...]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=OUTPUT_SCHEMA[table], orient="row")


def _no_hash(frame: pl.DataFrame) -> pl.DataFrame:
    assert frame["etl_row_hash"].str.contains("^[0-9a-f]{32}$").all()
    return frame.drop("etl_row_hash")


DEPARTMENTS = source(
    "department",
    [
        {"department_id": 4, "department_name": "Dispatch", "location": "Leds", "last_updated": T1},
        {"department_id": 1, "department_name": "Sales", "location": "Manchester", "last_updated": T0},
    ],
)
ADDRESSES = source(
    "address",
    [
        {
            "address_id": 2,
            "address_line_1": "179 Alexie Cliffs",
            "address_line_2": None,
            "district": None,
            "city": "Aliso Viejo",
            "postal_code": "99305-7380",
            "country": "San Marino",
            "phone": "9621 880720",
            "last_updated": T2,
        },
        {
            "address_id": 1,
            "address_line_1": "6826 Herzog Via",
            "address_line_2": "Flat 2",
            "district": "Avon",
            "city": "Saint-Étienne",
            "postal_code": "28441",
            "country": "Turkey",
            "phone": "1803 637401",
            "last_updated": T0,
        },
    ],
)


def test_dim_staff_joins_the_department_and_takes_the_later_last_updated() -> None:
    staff = source(
        "staff",
        [
            {"staff_id": 2, "first_name": "Zoë", "last_name": "Ñúñez", "department_id": 4, "last_updated": T0},
            {"staff_id": 1, "first_name": "Irving", "last_name": "O'Keefe", "department_id": 1, "last_updated": T2},
        ],
        email_address="someone@terrifictotes.com",
    )
    expected = _out(
        "dim_staff",
        [
            (1, "Irving", "O'Keefe", "Sales", "Manchester", "someone@terrifictotes.com", T2),
            (2, "Zoë", "Ñúñez", "Dispatch", "Leds", "someone@terrifictotes.com", T1),
        ],
    )
    assert_frame_equal(build_dim_staff(staff, DEPARTMENTS), expected)


def test_dim_staff_keeps_the_latest_version_of_a_staff_row() -> None:
    staff = source(
        "staff",
        [
            {"staff_id": 1, "last_name": "New", "last_updated": T2},
            {"staff_id": 1, "last_name": "Old", "last_updated": T0},
        ],
        first_name="A",
        department_id=1,
        email_address="a@b",
    )
    assert build_dim_staff(staff, DEPARTMENTS)["last_name"].to_list() == ["New"]


def test_dim_staff_with_an_unknown_department_names_the_staff_and_thedepartments() -> None:
    staff = source(
        "staff",
        [{"staff_id": 7, "department_id": 99}, {"staff_id": 8, "department_id": 4}, {"staff_id": 9}],
        first_name="A",
        last_name="B",
        email_address="a@b",
        last_updated=T0,
    )
    with pytest.raises(MissingReferenceError) as caught:
        build_dim_staff(staff, DEPARTMENTS)
    message = str(caught.value)
    assert "2 staff row(s) reference a department" in message
    assert "staff_id 7 -> department_id 99" in message
    assert "staff_id 9 -> department_id null" in message
    assert "staff_id 8" not in message


def test_dim_location_keeps_null_address_line_2_and_district() -> None:
    expected = _out(
        "dim_location",
        [
            (1, "6826 Herzog Via", "Flat 2", "Avon", "Saint-Étienne", "28441", "Turkey", "1803 637401", T0),
            (2, "179 Alexie Cliffs", None, None, "Aliso Viejo", "99305-7380", "San Marino", "9621 880720", T2),
        ],
    )
    assert_frame_equal(build_dim_location(ADDRESSES), expected)


def test_dim_currency_names_from_iso_4217() -> None:
    currency = source(
        "currency",
        [
            {"currency_id": 3, "currency_code": "EUR"},
            {"currency_id": 1, "currency_code": "GBP"},
            {"currency_id": 2, "currency_code": "USD"},
        ],
        last_updated=T0,
    )
    frame, warnings = build_dim_currency(currency)
    expected = _out(
        "dim_currency", [(1, "GBP", "Pound Sterling", T0), (2, "USD", "US Dollar", T0), (3, "EUR", "Euro", T0)]
    )
    assert_frame_equal(frame, expected)
    assert warnings == []


def test_dim_currency_with_an_unknown_code_uses_the_code_and_warns() -> None:
    currency = source(
        "currency",
        [{"currency_id": 1, "currency_code": "GBP"}, {"currency_id": 9, "currency_code": "XTT"}],
        last_updated=T1,
    )
    frame, warnings = build_dim_currency(currency)
    assert_frame_equal(frame, _out("dim_currency", [(1, "GBP", "Pound Sterling", T1), (9, "XTT", "XTT", T1)]))
    assert len(warnings) == 1
    assert "currency_id 9 'XTT'" in warnings[0]
    assert "currency_name is the code itself" in warnings[0]


def test_dim_design() -> None:
    design = source(
        "design",
        [
            {"design_id": 9, "design_name": "Wooden", "file_location": "/lib", "file_name": "wooden.json"},
            {"design_id": 3, "design_name": "Bronze", "file_location": "/usr", "file_name": "bronze-ß.json"},
        ],
        last_updated=T1,
    )
    expected = _out(
        "dim_design", [(3, "Bronze", "/usr", "bronze-ß.json", T1), (9, "Wooden", "/lib", "wooden.json", T1)]
    )
    assert_frame_equal(build_dim_design(design), expected)


def test_dim_counterparty_joins_the_legal_address() -> None:
    counterparty = source(
        "counterparty",
        [
            {"counterparty_id": 18, "counterparty_legal_name": "Zoë Ñúñez Ltd", "legal_address_id": 2},
            {"counterparty_id": 1, "counterparty_legal_name": "Fahey and Sons", "legal_address_id": 1},
        ],
        last_updated=T1,
    )
    expected = _out(
        "dim_counterparty",
        [
            (1, "Fahey and Sons", "6826 Herzog Via", "Flat 2", "Avon", "Saint-Étienne", "28441", "Turkey",
             "1803 637401", T1),
            (18, "Zoë Ñúñez Ltd", "179 Alexie Cliffs", None, None, "Aliso Viejo", "99305-7380", "San Marino",
             "9621 880720", T2),
        ],
    )  # fmt: skip
    assert_frame_equal(build_dim_counterparty(counterparty, ADDRESSES), expected)


def test_dim_counterparty_with_an_unknown_address_raises() -> None:
    counterparty = source(
        "counterparty",
        [{"counterparty_id": 5, "counterparty_legal_name": "X", "legal_address_id": 31, "last_updated": T0}],
    )
    with pytest.raises(MissingReferenceError, match=r"counterparty_id 5 -> legal_address_id 31"):
        build_dim_counterparty(counterparty, ADDRESSES)


def test_dim_payment_type_and_dim_transaction_keep_the_enum_text() -> None:
    payment_type = source(
        "payment_type",
        [
            {"payment_type_id": 2, "payment_type_name": "SALES_REFUND"},
            {"payment_type_id": 1, "payment_type_name": "SALES_RECEIPT"},
        ],
        last_updated=T0,
    )
    assert_frame_equal(
        build_dim_payment_type(payment_type),
        _out("dim_payment_type", [(1, "SALES_RECEIPT", T0), (2, "SALES_REFUND", T0)]),
    )
    transaction = source(
        "transaction",
        [
            {"transaction_id": 3, "transaction_type": "SALE", "sales_order_id": 1},
            {"transaction_id": 1, "transaction_type": "PURCHASE", "purchase_order_id": 2},
        ],
        last_updated=T1,
    )
    assert_frame_equal(
        build_dim_transaction(transaction),
        _out("dim_transaction", [(1, "PURCHASE", None, 2, T1), (3, "SALE", 1, None, T1)]),
    )


SALES_ORDER_1 = {
    "sales_order_id": 1,
    "created_at": CREATED,
    "last_updated": CREATED,
    "design_id": 9,
    "staff_id": 13,
    "counterparty_id": 18,
    "units_sold": 84754,
    "unit_price": Decimal("2.43"),
    "currency_id": 3,
    "agreed_delivery_date": "2022-11-10",
    "agreed_payment_date": "2022-11-03",
    "agreed_delivery_location_id": 4,
}


def test_fact_sales_order_splits_timestamps_and_parses_text_dates() -> None:
    later = {**SALES_ORDER_1, "sales_order_id": 2, "last_updated": UPDATED, "agreed_delivery_date": "2024-04-01"}
    facts = build_fact_sales_order(source("sales_order", [later, SALES_ORDER_1]))
    expected = _out(
        "fact_sales_order",
        [
            (1, date(2022, 11, 3), time(14, 20, 52, 186000), date(2022, 11, 3), time(14, 20, 52, 186000), 13, 18,
             84754, Decimal("2.43"), 3, 9, date(2022, 11, 3), date(2022, 11, 10), 4, None),
            (2, date(2022, 11, 3), time(14, 20, 52, 186000), date(2024, 3, 31), time(23, 5, 7, 9000), 13, 18,
             84754, Decimal("2.43"), 3, 9, date(2022, 11, 3), date(2024, 4, 1), 4, None),
        ],
    )  # fmt: skip
    assert_frame_equal(_no_hash(facts), expected.drop("etl_row_hash"))
    assert facts.schema == pl.Schema(OUTPUT_SCHEMA["fact_sales_order"])


def test_fact_versions_distinct_by_content_not_by_arrival() -> None:
    updated = {**SALES_ORDER_1, "last_updated": UPDATED, "units_sold": 90000}
    same_content_later_read = dict(SALES_ORDER_1)
    facts = build_fact_sales_order(source("sales_order", [updated, SALES_ORDER_1, same_content_later_read]))
    assert facts.height == 2
    assert facts["units_sold"].to_list() == [84754, 90000]  # oldest version first
    assert facts["etl_row_hash"].n_unique() == 2
    alone = build_fact_sales_order(source("sales_order", [SALES_ORDER_1]))
    assert alone["etl_row_hash"].item() == facts["etl_row_hash"][0]


def test_fact_hash_ignores_columns_outside_the_contract() -> None:
    first = source("sales_order", [SALES_ORDER_1]).with_columns(pl.lit("x").alias("unknown"))
    second = source("sales_order", [SALES_ORDER_1]).with_columns(pl.lit("y").alias("unknown"))
    assert build_fact_sales_order(first).equals(build_fact_sales_order(second))


def test_fact_with_a_text_date_that_is_not_a_date_names_the_row() -> None:
    bad = {**SALES_ORDER_1, "sales_order_id": 77, "agreed_payment_date": "2022-02-30"}
    with pytest.raises(InvalidValueError, match=r"sales_order\.agreed_payment_date .*sales_order_id 77 '2022-02-30'"):
        build_fact_sales_order(source("sales_order", [SALES_ORDER_1, bad]))


def test_fact_purchase_order() -> None:
    row = {
        "purchase_order_id": 5,
        "created_at": CREATED,
        "last_updated": UPDATED,
        "staff_id": 12,
        "counterparty_id": 11,
        "item_code": "ZDOI5EA",
        "item_quantity": 371,
        "item_unit_price": Decimal("361.39"),
        "currency_id": 1,
        "agreed_delivery_date": "2024-03-31",
        "agreed_payment_date": "2024-04-01",
        "agreed_delivery_location_id": 6,
    }
    expected = _out(
        "fact_purchase_order",
        [
            (5, date(2022, 11, 3), time(14, 20, 52, 186000), date(2024, 3, 31), time(23, 5, 7, 9000), 12, 11,
             "ZDOI5EA", 371, Decimal("361.39"), 1, date(2024, 3, 31), date(2024, 4, 1), 6, None),
        ],
    )  # fmt: skip
    assert_frame_equal(
        _no_hash(build_fact_purchase_order(source("purchase_order", [row]))), expected.drop("etl_row_hash")
    )


def test_fact_payment_has_last_updated_as_a_time() -> None:
    row = {
        "payment_id": 1,
        "created_at": CREATED,
        "last_updated": datetime(2022, 11, 7, 7, 55, 11, 885000),
        "transaction_id": 1,
        "counterparty_id": 17,
        "payment_amount": Decimal("56925.44"),
        "currency_id": 2,
        "payment_type_id": 3,
        "paid": True,
        "payment_date": "2022-11-07",
    }
    unpaid = {**row, "paid": False, "last_updated": CREATED}
    expected = _out(
        "fact_payment",
        [
            (1, date(2022, 11, 3), time(14, 20, 52, 186000), date(2022, 11, 3), time(14, 20, 52, 186000), 1, 17,
             Decimal("56925.44"), 2, 3, False, date(2022, 11, 7), None),
            (1, date(2022, 11, 3), time(14, 20, 52, 186000), date(2022, 11, 7), time(7, 55, 11, 885000), 1, 17,
             Decimal("56925.44"), 2, 3, True, date(2022, 11, 7), None),
        ],
    )  # fmt: skip
    facts = build_fact_payment(source("payment", [row, unpaid]))
    assert_frame_equal(_no_hash(facts), expected.drop("etl_row_hash"))


def test_dim_date_covers_every_date_of_every_fact() -> None:
    sales = build_fact_sales_order(
        source("sales_order", [{**SALES_ORDER_1, "last_updated": UPDATED, "agreed_delivery_date": "2024-04-01"}])
    )
    dim_date = build_dim_date({"fact_sales_order": sales})
    expected = pl.DataFrame(
        [
            (date(2022, 11, 3), 2022, 11, 3, 4, "Thursday", "November", 4),
            (date(2024, 3, 31), 2024, 3, 31, 7, "Sunday", "March", 1),
            (date(2024, 4, 1), 2024, 4, 1, 1, "Monday", "April", 2),
        ],
        schema=OUTPUT_SCHEMA["dim_date"],
        orient="row",
    )
    assert_frame_equal(dim_date, expected)
    assert build_dim_date({}).height == 0


def test_dim_staff_location_of_a_department_without_one_is_unknown() -> None:
    department = source(
        "department", [{"department_id": 5, "department_name": "Facilities"}], location=None, last_updated=T0
    )
    staff = source(
        "staff",
        [{"staff_id": 3, "department_id": 5}],
        first_name="A",
        last_name="B",
        email_address="a@b",
        last_updated=T0,
    )
    assert build_dim_staff(staff, department)["location"].to_list() == ["Unknown"]


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


def test_within_one_frame_a_tie_goes_to_the_later_row() -> None:
    frame = departments([(4, "Dispatch", "Leds", T1), (4, "Dispatch", "Leeds", T1), (3, "HR", None, T0)])
    expected = departments([(3, "HR", None, T0), (4, "Dispatch", "Leeds", T1)])
    assert_frame_equal(latest_per_key(frame, "department_id"), expected)
