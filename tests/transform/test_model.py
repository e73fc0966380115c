"""transform_run: propagation, history, dedupe, validation, state, and the golden run on the snapshot; the state
merge: latest last_updated wins, in whatever order changes arrive."""

from __future__ import annotations

import itertools
from datetime import date, datetime, time
from decimal import Decimal

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shared.contract import OUTPUT_SCHEMA, SOURCE_SCHEMA, SOURCE_TABLES, required_columns
from shared.local.source.seed import read_snapshot
from shared.transform.errors import InvalidValueError, MissingColumnError, MissingReferenceError
from shared.transform.model import STATE_TABLES, TransformResult, conform_source, merge_state, transform_run
from tests.snapshot import SNAPSHOT_WAREHOUSE_ROWS
from tests.transform.frames import T0, T1, T2, departments, expected_output_schema, source

DEPARTMENT = source(
    "department",
    [
        {"department_id": 1, "department_name": "Sales", "location": "Manchester"},
        {"department_id": 4, "department_name": "Dispatch", "location": "Leds"},
    ],
    last_updated=T0,
)
STAFF = source(
    "staff",
    [
        {"staff_id": 1, "first_name": "Zoë", "last_name": "Ñúñez", "department_id": 4},
        {"staff_id": 2, "first_name": "Stan", "last_name": "Lehner", "department_id": 1},
        {"staff_id": 3, "first_name": "Ana", "last_name": "Glover", "department_id": 4},
    ],
    email_address="x@terrifictotes.com",
    last_updated=T0,
)
ADDRESS = source(
    "address",
    [{"address_id": 1, "address_line_1": "6826 Herzog Via"}, {"address_id": 2, "address_line_1": "179 Alexie"}],
    city="Aliso Viejo",
    postal_code="28441",
    country="Turkey",
    phone="1803 637401",
    last_updated=T0,
)
COUNTERPARTY = source(
    "counterparty",
    [
        {"counterparty_id": 10, "counterparty_legal_name": "Fahey and Sons", "legal_address_id": 2},
        {"counterparty_id": 11, "counterparty_legal_name": "Armstrong Inc", "legal_address_id": 1},
        {"counterparty_id": 12, "counterparty_legal_name": "Kohler Inc", "legal_address_id": 2},
    ],
    last_updated=T0,
)
PARENTS = {"department": DEPARTMENT, "staff": STAFF, "address": ADDRESS, "counterparty": COUNTERPARTY}
SALES_ORDER = {
    "sales_order_id": 1,
    "created_at": datetime(2022, 11, 3, 14, 20, 52, 186000),
    "last_updated": datetime(2022, 11, 3, 14, 20, 52, 186000),
    "design_id": 9,
    "staff_id": 2,
    "counterparty_id": 10,
    "units_sold": 84754,
    "unit_price": Decimal("2.43"),
    "currency_id": 3,
    "agreed_delivery_date": "2022-11-10",
    "agreed_payment_date": "2022-11-03",
    "agreed_delivery_location_id": 1,
}


def _state_after(raw: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    return transform_run(raw, {}).state


def test_first_run_emits_every_changed_table_and_returns_all_four_states() -> None:
    result = transform_run(PARENTS, {})
    assert list(result.tables) == ["dim_staff", "dim_location", "dim_counterparty"]
    assert set(result.state) == set(STATE_TABLES)
    assert_frame_equal(result.state["staff"], STAFF)
    assert result.warnings == []


def test_a_department_rename_alone_re_emits_exactly_its_staff() -> None:
    state = _state_after(PARENTS)
    renamed = source(
        "department", [{"department_id": 4, "department_name": "Logistics", "location": "Leeds", "last_updated": T1}]
    )
    result = transform_run({"department": renamed}, state)
    assert list(result.tables) == ["dim_staff"]
    expected = pl.DataFrame(
        [
            (1, "Zoë", "Ñúñez", "Logistics", "Leeds", "x@terrifictotes.com", T1),
            (3, "Ana", "Glover", "Logistics", "Leeds", "x@terrifictotes.com", T1),
        ],
        schema=OUTPUT_SCHEMA["dim_staff"],
        orient="row",
    )
    assert_frame_equal(result.tables["dim_staff"], expected)
    assert result.state["department"].filter(pl.col("department_id") == 4)["department_name"].item() == "Logistics"
    assert_frame_equal(result.state["staff"], state["staff"])


def test_a_staff_change_joins_the_current_department_from_state() -> None:
    state = _state_after(PARENTS)
    moved = STAFF.filter(pl.col("staff_id") == 2).with_columns(
        pl.lit(4, pl.Int32).alias("department_id"), pl.lit(T1).cast(pl.Datetime("ms")).alias("last_updated")
    )
    result = transform_run({"staff": moved}, state)
    staff = result.tables["dim_staff"]
    assert staff.select("staff_id", "department_name", "location").rows() == [(2, "Dispatch", "Leds")]
    assert staff["etl_source_updated"].to_list() == [T1]


def test_a_staff_and_department_change_in_one_run_use_the_newdepartments() -> None:
    state = _state_after(PARENTS)
    renamed = DEPARTMENT.filter(pl.col("department_id") == 1).with_columns(
        pl.lit("Sales & Marketing").alias("department_name"), pl.lit(T2).cast(pl.Datetime("ms")).alias("last_updated")
    )
    moved = STAFF.filter(pl.col("staff_id") == 1).with_columns(
        pl.lit(1, pl.Int32).alias("department_id"), pl.lit(T1).cast(pl.Datetime("ms")).alias("last_updated")
    )
    result = transform_run({"department": renamed, "staff": moved}, state)
    rows = result.tables["dim_staff"].select("staff_id", "department_name", "etl_source_updated").rows()
    assert rows == [(1, "Sales & Marketing", T2), (2, "Sales & Marketing", T2)]


def test_an_address_change_alone_re_emits_its_location_and_counterparties() -> None:
    state = _state_after(PARENTS)
    moved = ADDRESS.filter(pl.col("address_id") == 2).with_columns(
        pl.lit("1 New Road").alias("address_line_1"),
        pl.lit("Leeds").alias("district"),
        pl.lit(T1).cast(pl.Datetime("ms")).alias("last_updated"),
    )
    result = transform_run({"address": moved}, state)
    assert list(result.tables) == ["dim_location", "dim_counterparty"]
    location = result.tables["dim_location"]
    assert location.select("location_id", "address_line_1", "district", "etl_source_updated").rows() == [
        (2, "1 New Road", "Leeds", T1)
    ]
    counterparty = result.tables["dim_counterparty"].select(
        "counterparty_id", "counterparty_legal_address_line_1", "counterparty_legal_district", "etl_source_updated"
    )
    assert counterparty.rows() == [(10, "1 New Road", "Leeds", T1), (12, "1 New Road", "Leeds", T1)]


def test_a_replayed_older_department_emits_the_current_values_not_the_old_ones() -> None:
    newer = DEPARTMENT.with_columns(
        pl.lit("Renamed").alias("department_name"), pl.lit(T2).cast(pl.Datetime("ms")).alias("last_updated")
    )
    state = transform_run({**PARENTS, "department": newer}, {}).state
    result = transform_run({"department": DEPARTMENT}, state)
    assert set(result.tables["dim_staff"]["department_name"]) == {"Renamed"}
    assert set(result.tables["dim_staff"]["etl_source_updated"]) == {T2}
    assert_frame_equal(result.state["department"], state["department"])


def test_an_updated_sales_order_gives_two_versions_and_a_re_read_gives_none_more() -> None:
    updated = {**SALES_ORDER, "units_sold": 1, "last_updated": datetime(2022, 11, 4, 8, 0, 0, 1000)}
    raw = {"sales_order": source("sales_order", [SALES_ORDER, updated, SALES_ORDER, updated])}
    facts = transform_run(raw, {}).tables["fact_sales_order"]
    assert facts.height == 2
    assert facts["etl_row_hash"].n_unique() == 2
    assert facts.select("last_updated_date", "last_updated_time").rows() == [
        (date(2022, 11, 3), time(14, 20, 52, 186000)),
        (date(2022, 11, 4), time(8, 0, 0, 1000)),
    ]
    again = transform_run({"sales_order": source("sales_order", [SALES_ORDER])}, {}).tables["fact_sales_order"]
    assert again["etl_row_hash"].to_list() == facts["etl_row_hash"][:1].to_list()


def test_dim_date_holds_every_date_the_facts_reference() -> None:
    raw = {"sales_order": source("sales_order", [SALES_ORDER])}
    dim_date = transform_run(raw, {}).tables["dim_date"]
    assert dim_date["date_id"].to_list() == [date(2022, 11, 3), date(2022, 11, 10)]


def test_an_unknown_currency_code_warns_and_names_itself() -> None:
    currency = source(
        "currency", [{"currency_id": 1, "currency_code": "GBP"}, {"currency_id": 4, "currency_code": "ZZZ"}]
    )
    result = transform_run({"currency": currency.with_columns(pl.lit(T0).alias("last_updated"))}, {})
    assert result.tables["dim_currency"].select("currency_code", "currency_name").rows() == [
        ("GBP", "Pound Sterling"),
        ("ZZZ", "ZZZ"),
    ]
    assert len(result.warnings) == 1 and "currency_id 4 'ZZZ'" in result.warnings[0]


def test_a_null_department_location_becomes_unknown_without_a_warning() -> None:
    no_location = DEPARTMENT.with_columns(pl.lit(None, pl.String).alias("location"))
    result = transform_run({**PARENTS, "department": no_location}, {})
    assert result.tables["dim_staff"]["location"].to_list() == ["Unknown"] * 3
    assert not any("dim_staff.location" in w for w in result.warnings)


def test_extra_columns_are_ignored_and_dtypes_conformed() -> None:
    extra = STAFF.with_columns(pl.lit("?").alias("nickname"), pl.col("staff_id").cast(pl.Int64))
    result = transform_run({**PARENTS, "staff": extra}, {})
    assert_frame_equal(result.state["staff"], STAFF)
    assert result.tables["dim_staff"].schema == pl.Schema(OUTPUT_SCHEMA["dim_staff"])


def test_an_unknown_raw_table_is_ignored_with_a_warning() -> None:
    result = transform_run({"customers": pl.DataFrame({"id": [1]})}, {})
    assert result.tables == {}
    assert result.warnings == ["raw table 'customers' is not a source table the transform knows; it was ignored"]


def test_an_empty_run_produces_nothing_and_keeps_the_state() -> None:
    state = _state_after(PARENTS)
    result = transform_run({}, state)
    assert result == TransformResult(tables={}, state=result.state, warnings=[])
    for table in STATE_TABLES:
        assert_frame_equal(result.state[table], state[table])
    empty = transform_run({"staff": STAFF.clear()}, {})
    assert empty.tables == {}
    assert all(frame.height == 0 for frame in empty.state.values())


def test_a_staff_row_with_an_unknown_department_is_a_terminal_error() -> None:
    with pytest.raises(
        MissingReferenceError, match=r"staff row\(s\) reference a department .*staff_id 1 -> department_id 4"
    ):
        transform_run({"staff": STAFF.filter(pl.col("staff_id") == 1)}, {"department": DEPARTMENT.head(1)})


def test_a_missing_required_column_names_the_table_and_columns() -> None:
    with pytest.raises(MissingColumnError, match=r"raw table 'staff' lacks column\(s\) department_id, email_address"):
        transform_run({"staff": STAFF.drop("department_id", "email_address")}, {})
    with pytest.raises(MissingColumnError, match=r"state table 'address' lacks column\(s\) phone"):
        transform_run({"address": ADDRESS}, {"address": ADDRESS.drop("phone")})


def test_a_value_that_does_not_fit_its_source_type_is_a_terminal_error() -> None:
    bad = STAFF.with_columns(pl.lit("seven").alias("staff_id"))
    with pytest.raises(InvalidValueError, match="raw table 'staff'"):
        conform_source(bad, "staff")


def _snapshot_raw() -> dict[str, pl.DataFrame]:
    return {table: read_snapshot(table) for table in SOURCE_TABLES}


@pytest.fixture(scope="module")
def snapshot_result() -> TransformResult:
    """transform_run over the whole real snapshot with an empty state."""
    return transform_run(_snapshot_raw(), {})


EXPECTED_COUNTS = SNAPSHOT_WAREHOUSE_ROWS


@pytest.mark.slow
def test_snapshot_row_counts_and_contract(snapshot_result: TransformResult) -> None:
    tables = snapshot_result.tables
    assert {t: f.height for t, f in tables.items() if t != "dim_date"} == EXPECTED_COUNTS
    assert list(tables) == list(OUTPUT_SCHEMA)
    contract = expected_output_schema()
    for table, frame in tables.items():
        assert frame.schema == pl.Schema(contract[table]), table
    assert snapshot_result.warnings == []
    assert {t: f.height for t, f in snapshot_result.state.items()} == {
        "department": 8,
        "staff": 20,
        "address": 30,
        "counterparty": 20,
    }


@pytest.mark.slow
def test_snapshot_dim_date_covers_every_fact_date(snapshot_result: TransformResult) -> None:
    tables = snapshot_result.tables
    referenced = pl.concat(
        [
            tables[fact].get_column(column).alias("d")
            for fact, columns in {
                "fact_sales_order": (
                    "created_date",
                    "last_updated_date",
                    "agreed_payment_date",
                    "agreed_delivery_date",
                ),
                "fact_purchase_order": (
                    "created_date",
                    "last_updated_date",
                    "agreed_delivery_date",
                    "agreed_payment_date",
                ),
                "fact_payment": ("created_date", "last_updated_date", "payment_date"),
            }.items()
            for column in columns
        ]
    ).unique()
    dim_date = tables["dim_date"]
    assert dim_date.height == referenced.len()
    assert set(dim_date["date_id"]) == set(referenced)
    assert dim_date["date_id"].is_sorted()


def _row(frame: pl.DataFrame, key: str, value: int) -> dict[str, object]:
    rows = frame.filter(pl.col(key) == value).to_dicts()
    assert len(rows) == 1, (key, value, rows)
    return rows[0]


@pytest.mark.slow
def test_snapshot_rows_checked_by_hand(snapshot_result: TransformResult) -> None:
    # Values read from /work/shared/data/totesys-2024-11-15/<table>.jsonl.gz.
    tables = snapshot_result.tables
    sales = _row(tables["fact_sales_order"], "sales_order_id", 1)
    assert {k: v for k, v in sales.items() if k != "etl_row_hash"} == {
        "sales_order_id": 1,
        "created_date": date(2022, 11, 3),
        "created_time": time(14, 20, 52, 186000),
        "last_updated_date": date(2022, 11, 3),
        "last_updated_time": time(14, 20, 52, 186000),
        "sales_staff_id": 13,
        "counterparty_id": 18,
        "units_sold": 84754,
        "unit_price": Decimal("2.43"),
        "currency_id": 3,
        "design_id": 9,
        "agreed_payment_date": date(2022, 11, 3),
        "agreed_delivery_date": date(2022, 11, 10),
        "agreed_delivery_location_id": 4,
    }
    purchase = _row(tables["fact_purchase_order"], "purchase_order_id", 1)
    assert {k: v for k, v in purchase.items() if k != "etl_row_hash"} == {
        "purchase_order_id": 1,
        "created_date": date(2022, 11, 3),
        "created_time": time(14, 20, 52, 187000),
        "last_updated_date": date(2022, 11, 3),
        "last_updated_time": time(14, 20, 52, 187000),
        "staff_id": 12,
        "counterparty_id": 11,
        "item_code": "ZDOI5EA",
        "item_quantity": 371,
        "item_unit_price": Decimal("361.39"),
        "currency_id": 2,
        "agreed_delivery_date": date(2022, 11, 9),
        "agreed_payment_date": date(2022, 11, 7),
        "agreed_delivery_location_id": 6,
    }
    payment = _row(tables["fact_payment"], "payment_id", 1)
    assert payment["paid"] is True
    assert payment["payment_amount"] == Decimal("56925.44")
    assert payment["payment_date"] == date(2022, 11, 7)
    assert payment["last_updated_date"] == date(2022, 11, 7)
    assert payment["last_updated"] == time(7, 55, 11, 885000)
    assert payment["created_time"] == time(14, 20, 52, 186000)
    assert (payment["transaction_id"], payment["counterparty_id"], payment["currency_id"]) == (1, 17, 2)
    assert payment["payment_type_id"] == 3
    assert _row(tables["fact_payment"], "payment_id", 2)["paid"] is False

    staff = _row(tables["dim_staff"], "staff_id", 13)
    assert staff == {
        "staff_id": 13,
        "first_name": "Stan",
        "last_name": "Lehner",
        "department_name": "Dispatch",
        "location": "Leds",
        "email_address": "stan.lehner@terrifictotes.com",
        "etl_source_updated": datetime(2022, 11, 3, 14, 20, 51, 563000),
    }
    assert _row(tables["dim_staff"], "staff_id", 17)["last_name"] == "O'Keefe"
    assert _row(tables["dim_staff"], "staff_id", 1)["department_name"] == "Purchasing"

    counterparty = _row(tables["dim_counterparty"], "counterparty_id", 3)
    assert counterparty == {
        "counterparty_id": 3,
        "counterparty_legal_name": "Armstrong Inc",
        "counterparty_legal_address_line_1": "179 Alexie Cliffs",
        "counterparty_legal_address_line2": None,
        "counterparty_legal_district": None,
        "counterparty_legal_city": "Aliso Viejo",
        "counterparty_legal_postal_code": "99305-7380",
        "counterparty_legal_country": "San Marino",
        "counterparty_legal_phone_number": "9621 880720",
        "etl_source_updated": datetime(2022, 11, 3, 14, 20, 51, 563000),
    }
    location = _row(tables["dim_location"], "location_id", 1)
    assert (location["address_line_2"], location["district"], location["country"]) == (None, "Avon", "Turkey")

    assert tables["dim_currency"].select("currency_id", "currency_code", "currency_name").rows() == [
        (1, "GBP", "Pound Sterling"),
        (2, "USD", "US Dollar"),
        (3, "EUR", "Euro"),
    ]
    assert tables["dim_payment_type"]["payment_type_name"].to_list() == [
        "SALES_RECEIPT",
        "SALES_REFUND",
        "PURCHASE_PAYMENT",
        "PURCHASE_REFUND",
    ]
    assert _row(tables["dim_transaction"], "transaction_id", 1) == {
        "transaction_id": 1,
        "transaction_type": "PURCHASE",
        "sales_order_id": None,
        "purchase_order_id": 2,
        "etl_source_updated": datetime(2022, 11, 3, 14, 20, 52, 186000),
    }
    assert _row(tables["dim_transaction"], "transaction_id", 3)["transaction_type"] == "SALE"
    assert _row(tables["dim_design"], "design_id", 1)["file_name"] == "wooden-20201128-jdvi.json"


@pytest.mark.slow
def test_snapshot_run_is_deterministic_and_idempotent_over_its_own_state(snapshot_result: TransformResult) -> None:
    raw = _snapshot_raw()
    shuffled = {table: frame.reverse() for table, frame in raw.items()}
    again = transform_run(shuffled, snapshot_result.state)
    assert list(again.tables) == list(snapshot_result.tables)
    for table, frame in snapshot_result.tables.items():
        assert_frame_equal(again.tables[table], frame)
    for table, frame in snapshot_result.state.items():
        assert_frame_equal(again.state[table], frame)


def test_source_schema_and_contract_cover_the_same_tables() -> None:
    assert set(SOURCE_SCHEMA) == set(SOURCE_TABLES)
    assert all(required_columns(t) for t in SOURCE_TABLES)


def test_merge_into_no_state_keeps_the_latest_row_per_key_sorted() -> None:
    changed = departments([(2, "Purchasing", "Manchester", T0), (1, "Sales", "Leeds", T1), (1, "Sales", "Leds", T0)])
    expected = departments([(1, "Sales", "Leeds", T1), (2, "Purchasing", "Manchester", T0)])
    assert_frame_equal(merge_state(None, changed, "department_id"), expected)
    assert_frame_equal(merge_state(changed.clear(), changed, "department_id"), expected)


def test_a_newer_change_replaces_and_an_older_one_does_not() -> None:
    old = departments([(1, "Sales", "Manchester", T1), (2, "Dispatch", "Leds", T1)])
    changed = departments([(1, "Sales & Marketing", "Manchester", T2), (2, "Dispatch (old)", "Leds", T0)])
    expected = departments([(1, "Sales & Marketing", "Manchester", T2), (2, "Dispatch", "Leds", T1)])
    assert_frame_equal(merge_state(old, changed, "department_id"), expected)


def test_on_equal_last_updated_the_incoming_row_wins() -> None:
    old = departments([(4, "Dispatch", "Leds", T1)])
    changed = departments([(4, "Dispatch", "Leeds", T1)])
    assert_frame_equal(merge_state(old, changed, "department_id"), changed)


def test_applying_changes_in_any_order_ends_in_the_same_state() -> None:
    changes = [
        departments([(1, "Sales", "Manchester", T0), (2, "Purchasing", "Manchester", T0)]),
        departments([(1, "Sales v2", "Manchester", T1)]),
        departments([(1, "Sales v3", "Leeds", T2), (2, "Purchasing v2", "Leds", T1)]),
        departments([(3, "Zoë Ñúñez's team", None, T1)]),
    ]
    expected = departments(
        [
            (1, "Sales v3", "Leeds", T2),
            (2, "Purchasing v2", "Leds", T1),
            (3, "Zoë Ñúñez's team", None, T1),
        ]
    )
    for order in itertools.permutations(changes):
        state: pl.DataFrame | None = None
        for change in order:
            state = merge_state(state, change, "department_id")
        assert state is not None
        assert_frame_equal(state, expected)


def test_the_result_has_the_columns_of_the_change_and_drops_extra_old_ones() -> None:
    old = departments([(1, "Sales", "Manchester", T0)]).with_columns(pl.lit("x").alias("manager"))
    changed = departments([(2, "HR", "Leeds", T0)])
    merged = merge_state(old.select(reversed(old.columns)), changed, "department_id")
    assert merged.columns == changed.columns
    assert merged["department_id"].to_list() == [1, 2]


def test_a_state_lacking_a_column_of_the_change_is_a_terminal_error() -> None:
    old = departments([(1, "Sales", "Manchester", T0)]).drop("location")
    with pytest.raises(MissingColumnError, match="location"):
        merge_state(old, departments([(2, "HR", "Leeds", T0)]), "department_id")
