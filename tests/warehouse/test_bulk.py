"""shared.warehouse.bulk on a real warehouse: a first load's COPY without keys, indexes and trigger, and
every one of them back, the same, afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl
import psycopg
import pytest

from shared.warehouse import bulk, ledger, staging
from tests.warehouse.test_merge import CONSTRAINTS, payments

INDEXES = "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"
TRIGGERS = "SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2"
DIMENSIONS = (
    "INSERT INTO dim_date VALUES ('2024-03-01', 2024, 3, 1, 5, 'Friday', 'March', 1);"
    "INSERT INTO dim_counterparty VALUES (1, 'n', 'a', NULL, NULL, 'c', 'p', 'k', 't', now(), 'r0');"
    "INSERT INTO dim_currency VALUES (1, 'GBP', 'Pound Sterling', now(), 'r0');"
    "INSERT INTO dim_payment_type VALUES (1, 'SALES_RECEIPT', now(), 'r0');"
)


@pytest.fixture
def conn(empty_warehouse: str) -> Iterator[psycopg.Connection]:
    """A connection to a warehouse with the DDL applied, in an open transaction."""
    with psycopg.connect(empty_warehouse) as connection:
        ledger.ensure_schema(connection)
        yield connection


def schema_of(conn: psycopg.Connection) -> list[list[tuple[object, ...]]]:
    """Every constraint (validated or not), index and trigger (enabled or not) of the public tables."""
    return [conn.execute(query).fetchall() for query in (CONSTRAINTS, INDEXES, TRIGGERS)]


def transactions(*ids: int) -> pl.DataFrame:
    """dim_transaction rows of sales orders `ids` (transaction id = order id)."""
    return pl.DataFrame(
        {
            "transaction_id": list(ids),
            "transaction_type": ["SALE"] * len(ids),
            "sales_order_id": list(ids),
            "purchase_order_id": [None] * len(ids),
            "etl_source_updated": [datetime(2024, 3, 1, 9)] * len(ids),
        },
        schema_overrides={"transaction_id": pl.Int32, "sales_order_id": pl.Int32, "purchase_order_id": pl.Int32},
    )


@pytest.mark.parametrize("streamed", [False, True], ids=["frame", "streamed in slices"])
def test_a_copied_fact_keeps_every_key_index_and_trigger_and_marks_only_the_newest_version_current(
    conn: psycopg.Connection, streamed: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn.execute(DIMENSIONS)
    bulk.copy_dimension(conn, "dim_transaction", transactions(1), "r1")
    before = schema_of(conn)
    rows: pl.DataFrame | staging.Rows = payments((1, "a", 1), (2, "b", 3), (1, "c", 5))
    if streamed:  # as the transform writes it, by natural key: payment 1's two versions, then payment 2
        monkeypatch.setattr(staging, "SLICE_ROWS", 2)
        path = tmp_path / "fact_payment.parquet"
        rows.sort("payment_id", "etl_row_hash").write_parquet(path, row_group_size=1)
        rows = staging.Rows(path, rows.columns, rows.height)

    seen: list[pl.DataFrame] = []
    dropped = bulk.copy_facts(conn, "fact_payment", rows, "r1", seen.append)
    assert dropped.rows == 3 and dropped.indexes, "the COPY went in without the table's index"
    assert conn.execute(INDEXES).fetchall() != before[1]
    bulk.add_constraints(conn, dropped)

    assert schema_of(conn) == before  # same keys, indexes and trigger (enabled), validated
    assert conn.execute(
        "SELECT payment_record_id, payment_id, etl_row_hash, etl_current FROM fact_payment ORDER BY 1"
    ).fetchall() == [(1, 1, "a", False), (2, 2, "b", True), (3, 1, "c", True)]
    # What the load's first-load summaries were given (figures.py): the current versions alone, each once.
    assert sorted(pl.concat(seen).select("payment_id", "etl_row_hash").rows()) == [(1, "c"), (2, "b")]
    # The trigger is back: a later insert of a newer version of payment 2 moves its current flag.
    conn.execute(
        "INSERT INTO fact_payment (payment_id, created_date, created_time, last_updated_date, last_updated,"
        " transaction_id, counterparty_id, payment_amount, currency_id, payment_type_id, paid, payment_date,"
        " etl_row_hash, etl_run_id) SELECT payment_id, created_date, created_time, last_updated_date,"
        " '10:00', transaction_id, counterparty_id, payment_amount, currency_id, payment_type_id, paid,"
        " payment_date, 'd', 'r2' FROM fact_payment WHERE payment_id = 2"
    )
    assert conn.execute("SELECT etl_row_hash FROM fact_payment WHERE payment_id = 2 AND etl_current").fetchall() == [
        ("d",)
    ]


@pytest.mark.parametrize("facts", [False, True], ids=["facts empty", "facts loaded"])
def test_a_copied_dimension_gets_its_primary_key_indexes_and_the_foreign_keys_to_it_back(
    conn: psycopg.Connection, facts: bool
) -> None:
    conn.execute(DIMENSIONS)
    if facts:  # a payment references transaction 1: its primary key cannot go, the rest still can
        bulk.copy_facts(conn, "fact_payment", payments((1, "a", 1)), "r0")
        conn.execute(
            "ALTER TABLE fact_payment ADD CONSTRAINT fact_payment_transaction_id_fkey"
            " FOREIGN KEY (transaction_id) REFERENCES dim_transaction(transaction_id) NOT VALID"
        )
    before = schema_of(conn)

    assert bulk.copy_dimension(conn, "dim_transaction", transactions(3, 1, 2), "r1") == 3

    assert schema_of(conn) == before
    assert conn.execute("SELECT transaction_id, etl_run_id FROM dim_transaction ORDER BY 1").fetchall() == [
        (1, "r1"),
        (2, "r1"),
        (3, "r1"),
    ]
    conn.commit()
    with pytest.raises(psycopg.errors.UniqueViolation):  # the primary key holds
        conn.execute("INSERT INTO dim_transaction VALUES (1, 'SALE', 1, NULL, now(), 'r2')")
    conn.rollback()
    with pytest.raises(psycopg.errors.ForeignKeyViolation):  # and the payments' foreign key to it
        conn.execute(
            "INSERT INTO fact_payment (payment_id, created_date, created_time, last_updated_date, last_updated,"
            " transaction_id, counterparty_id, payment_amount, currency_id, payment_type_id, paid, payment_date,"
            " etl_row_hash, etl_run_id) VALUES (9, '2024-03-01', '09:00', '2024-03-01', '09:00', 9, 1, 1, 1, 1,"
            " true, '2024-03-01', 'z', 'r2')"
        )
