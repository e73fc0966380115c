"""The transform's declared contract agrees with the warehouse DDL and the source schema."""

from __future__ import annotations

import pytest

from shared.contract import (
    FACT_DATE_COLUMNS,
    NULLABLE_OUTPUT,
    OUTPUT_SCHEMA,
    TABLE_KEYS,
    required_columns,
)
from shared.schema import SOURCE_SCHEMA, SOURCE_TABLES
from tests.transform.frames import LOAD_COLUMNS, ddl_tables, expected_output_schema


def test_output_schema_is_the_ddl_minus_what_the_load_adds() -> None:
    expected = expected_output_schema()
    assert list(OUTPUT_SCHEMA) == list(expected)
    for table, columns in expected.items():
        assert list(OUTPUT_SCHEMA[table].items()) == list(columns.items()), table


def test_etl_columns_are_source_updated_on_dimensions_and_row_hash_on_facts() -> None:
    for table, columns in OUTPUT_SCHEMA.items():
        etl = [c for c in columns if c.startswith("etl_")]
        if table == "dim_date":
            assert etl == []
        elif table.startswith("dim_"):
            assert etl == ["etl_source_updated"]
        else:
            assert etl == ["etl_row_hash"]


def test_nullable_columns_are_exactly_the_ddl_nullable_ones() -> None:
    for table, columns in ddl_tables().items():
        nullable = [c for c, _, null in columns if null and c not in LOAD_COLUMNS]
        assert list(NULLABLE_OUTPUT.get(table, ())) == nullable, table


def test_keys_and_date_columns() -> None:
    assert all(next(iter(OUTPUT_SCHEMA[t])) == key for t, key in TABLE_KEYS.items())
    assert FACT_DATE_COLUMNS == {
        "fact_sales_order": ("created_date", "last_updated_date", "agreed_payment_date", "agreed_delivery_date"),
        "fact_purchase_order": ("created_date", "last_updated_date", "agreed_delivery_date", "agreed_payment_date"),
        "fact_payment": ("created_date", "last_updated_date", "payment_date"),
    }


@pytest.mark.parametrize("table", SOURCE_TABLES)
def test_required_columns_are_source_columns_in_source_order(table: str) -> None:
    required = required_columns(table)
    assert "last_updated" in required
    assert list(required) == [c for c in SOURCE_SCHEMA[table] if c in required]


def test_required_columns_of_an_unknown_table_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        required_columns("customers")
