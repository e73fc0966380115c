"""The contract agrees with the warehouse DDL and the source schema; its documents read back as written."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime

import pytest

from shared.contract import (
    DIMENSIONS,
    FACT_DATE_COLUMNS,
    FACTS,
    NULLABLE_OUTPUT,
    OUTPUT_SCHEMA,
    REFERENCES,
    SOURCE_SCHEMA,
    SOURCE_TABLES,
    TABLE_KEYS,
    TABLES,
    ContractError,
    CuratedFile,
    CuratedManifest,
    LoadMessage,
    RawFile,
    RawManifest,
    check_run_id,
    manifest_name,
    quarantine_name,
    required_columns,
    run_id_from_blob,
    state_name,
)
from shared.errors import TerminalError
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


def _raw_manifest() -> RawManifest:
    files = (
        RawFile("staff", "staff/2026/11/22/r.parquet", 3, "a" * 64, 120, "2024-03-01T09:00:00", None, (("x", "int4"),)),
        RawFile("address", "address/2026/11/22/r.parquet", 1, "b" * 64, None, None, "2024-02-01T00:00:00"),
    )
    return RawManifest("20261122T031500Z-7f3a9c", "2026-11-22T03:15:00+00:00", files, 600)


def test_a_raw_manifest_reads_back_as_written_with_its_files_by_table() -> None:
    written = _raw_manifest()
    read = RawManifest.from_json(written.run_id, written.to_json())
    assert read == dataclasses.replace(written, files=tuple(sorted(written.files, key=lambda f: f.table)))
    assert read.source_max_updated == "2024-03-01T09:00:00"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"run_id": "other"}, "its run_id is 'other'"),
        ({"extracted_at": "yesterday"}, "extracted_at 'yesterday'"),
        ({"tables": []}, "tables is not an object"),
        ({"tables": {"staff": {"file": "/abs", "rows": 1, "sha256": "a" * 64, "window": {}}}}, "tables.staff.file"),
        ({"tables": {"staff": {"file": "f", "rows": -1, "sha256": "a" * 64, "window": {}}}}, "tables.staff.rows"),
        ({"tables": {"staff": {"file": "f", "rows": 1, "sha256": "zz", "window": {}}}}, "tables.staff.sha256"),
        ({"tables": {"staff": {"file": "f", "rows": 1, "sha256": "a" * 64, "window": {}}}}, "lacks max_last_updated"),
    ],
)
def test_a_raw_manifest_that_breaks_the_contract_says_what(change: dict[str, object], reason: str) -> None:
    body = {**json.loads(_raw_manifest().to_json()), **change}
    with pytest.raises(ContractError, match=re.escape(reason)):
        RawManifest.from_json("20261122T031500Z-7f3a9c", json.dumps(body).encode())


def test_a_curated_manifest_reads_back_as_written() -> None:
    written = CuratedManifest(
        "r1",
        "2026-11-22T03:15:00Z",
        "2024-03-01T09:00:00",
        {"dim_staff": CuratedFile("dim_staff", "dim_staff/r1.parquet", 2, "c" * 64)},
        ("a warning",),
    )
    read = CuratedManifest.from_json("r1", written.to_json())
    assert read == written
    assert read.rows == {"dim_staff": 2}
    assert read.extracted_time == datetime(2026, 11, 22, 3, 15, tzinfo=UTC)
    assert read.source_max_time == datetime(2024, 3, 1, 9)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[", "not valid JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"run_id": "r2", "tables": {}}', "lacks its run_id"),
        (b'{"run_id": "r1", "tables": {"dim_x": {}}}', "unknown warehouse table 'dim_x'"),
        (b'{"run_id": "r1", "tables": {"dim_staff": {"file": "f"}}}', "entry for dim_staff needs"),
        (b'{"run_id": "r1", "tables": {}, "extracted_at": "soon"}', "extracted_at='soon'"),
    ],
)
def test_a_curated_manifest_that_breaks_the_contract_says_what(body: bytes, reason: str) -> None:
    with pytest.raises(ContractError, match=re.escape(reason)):
        CuratedManifest.from_json("r1", body)


def test_a_load_message_reads_back_as_written() -> None:
    assert LoadMessage.from_json(LoadMessage("r1").to_json()) == LoadMessage("r1")
    with pytest.raises(ContractError, match="not valid JSON"):
        LoadMessage.from_json("{")
    with pytest.raises(ContractError, match='no string "run_id"'):
        LoadMessage.from_json('{"run_id": 1}')


def test_run_ids_and_blob_names() -> None:
    assert check_run_id("20261122T031500Z-7f3a9c") == "20261122T031500Z-7f3a9c"
    for bad in ("", "../x", "a/b", "x" * 129):
        with pytest.raises(TerminalError, match="malformed"):
            check_run_id(bad)
    assert manifest_name("r1") == "_runs/r1.json"
    assert run_id_from_blob("raw/_runs/r1.json") == run_id_from_blob("_runs/r1.json") == "r1"
    with pytest.raises(TerminalError, match="not a raw run manifest"):
        run_id_from_blob("raw/staff/r1.parquet")
    assert state_name("staff") == "_state/staff.parquet"
    assert quarantine_name("r1") == "_quarantine/r1.json"


def test_the_load_order_is_the_calendar_then_dimensions_then_facts() -> None:
    assert ("dim_date", *DIMENSIONS, *FACTS) == TABLES
    assert set(TABLES) == set(OUTPUT_SCHEMA)
    for fact, references in REFERENCES.items():
        for column, dimension in references:
            assert column in OUTPUT_SCHEMA[fact] and dimension in DIMENSIONS
