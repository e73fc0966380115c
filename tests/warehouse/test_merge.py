"""shared.warehouse.merge on a real warehouse: staging round-trips, version precedence, DDL once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal

import polars as pl
import psycopg
import pytest

from shared.warehouse import ledger, merge, staging

T0 = datetime(2024, 3, 1, 9, 0, 0, 125000)
T1 = datetime(2024, 3, 2, 9, 0, 0, 0)
STAFF = {
    "staff_id": pl.Int32(),
    "first_name": pl.String(),
    "last_name": pl.String(),
    "department_name": pl.String(),
    "location": pl.String(),
    "email_address": pl.String(),
    "etl_source_updated": pl.Datetime("ms"),
}


def staff(*rows: tuple[int, str, datetime]) -> pl.DataFrame:
    return pl.DataFrame(
        [(i, name, "F", "Sales", "Leeds", f"{i}@totes.example", at) for i, name, at in rows],
        schema=STAFF,
        orient="row",
    )


@pytest.fixture
def conn(empty_warehouse: str) -> Iterator[psycopg.Connection]:
    """A connection to a warehouse with the DDL applied, in an open transaction."""
    with psycopg.connect(empty_warehouse) as connection:
        ledger.ensure_schema(connection)
        yield connection


def test_staging_round_trips_every_contract_type(conn: psycopg.Connection) -> None:
    frame = pl.DataFrame(
        [
            (
                *(1, date(2024, 2, 29), time(23, 59, 59, 999000), date(2024, 3, 1), time(0, 0, 0, 1000)),
                *(2, 3, 1, Decimal("12345678.99"), 1, False, date(2024, 3, 2), "h,1"),
            ),
        ],
        schema={
            "payment_id": pl.Int32(),
            "created_date": pl.Date(),
            "created_time": pl.Time(),
            "last_updated_date": pl.Date(),
            "last_updated": pl.Time(),
            "transaction_id": pl.Int32(),
            "counterparty_id": pl.Int32(),
            "payment_type_id": pl.Int32(),
            "payment_amount": pl.Decimal(10, 2),
            "currency_id": pl.Int32(),
            "paid": pl.Boolean(),
            "payment_date": pl.Date(),
            "etl_row_hash": pl.String(),
        },
        orient="row",
    )
    texts = pl.DataFrame(
        {
            "location_id": [1, 2, 3],
            "address_line_1": ['6826 "Herzog", Via\nLine two', "Zürich ✓", "\\N"],
            "address_line_2": ["", None, "NULL"],
            "district": [None, "", " "],
            "city": ["a", "b", "c"],
            "postal_code": ["1", "2", "3"],
            "country": ["x", "y", "z"],
            "phone": ["p", "q", "r"],
            "etl_source_updated": [T0, T0, T0],
        },
        schema_overrides={"location_id": pl.Int32(), "etl_source_updated": pl.Datetime("ms")},
    )

    assert staging.stage(conn, "fact_payment", frame) == 1
    assert staging.stage(conn, "dim_location", texts) == 3

    assert conn.execute(
        "SELECT created_time, last_updated, payment_amount, paid, etl_row_hash FROM stg_fact_payment"
    ).fetchall() == [(time(23, 59, 59, 999000), time(0, 0, 0, 1000), Decimal("12345678.99"), False, "h,1")]
    assert conn.execute(
        "SELECT address_line_1, address_line_2, district, etl_source_updated FROM stg_dim_location ORDER BY 1"
    ).fetchall() == [
        ('6826 "Herzog", Via\nLine two', "", None, T0),
        ("Zürich ✓", None, "", T0),
        ("\\N", "NULL", " ", T0),
    ]


def test_a_dimension_row_changes_only_for_a_newer_version(conn: psycopg.Connection) -> None:
    columns = list(STAFF)
    staging.stage(conn, "dim_staff", staff((1, "a", T1), (2, "b", T0), (3, "c", T0)))
    assert merge.merge_dimension(conn, "dim_staff", columns, "r2") == merge.Merged(inserted=3)
    conn.execute("DROP TABLE stg_dim_staff")

    # Older (1), same version from an earlier run (2), same version from a later run (3), new key (4).
    staging.stage(conn, "dim_staff", staff((1, "old", T0), (2, "earlier", T0), (3, "later", T0), (4, "d", T0)))
    assert merge.merge_dimension(conn, "dim_staff", columns, "r1") == merge.Merged(inserted=1, updated=0)
    conn.execute("DROP TABLE stg_dim_staff")
    staging.stage(conn, "dim_staff", staff((3, "later", T0)))
    assert merge.merge_dimension(conn, "dim_staff", columns, "r3") == merge.Merged(inserted=0, updated=1)

    assert conn.execute("SELECT staff_id, first_name, etl_run_id FROM dim_staff ORDER BY 1").fetchall() == [
        (1, "a", "r2"),
        (2, "b", "r2"),
        (3, "later", "r3"),
        (4, "d", "r1"),
    ]


def test_a_repeated_key_in_one_file_keeps_its_newest_version(conn: psycopg.Connection) -> None:
    staging.stage(conn, "dim_staff", staff((1, "old", T0), (1, "new", T1)))
    assert merge.merge_dimension(conn, "dim_staff", list(STAFF), "r1").rows == 1
    assert conn.execute("SELECT first_name FROM dim_staff").fetchall() == [("new",)]


def test_run_ids_compare_bytewise_whatever_the_collation(conn: psycopg.Connection) -> None:
    staging.stage(conn, "dim_staff", staff((1, "upper", T0)))
    merge.merge_dimension(conn, "dim_staff", list(STAFF), "20240301T000000Z-B")
    conn.execute("DROP TABLE stg_dim_staff")
    staging.stage(conn, "dim_staff", staff((1, "lower", T0)))
    # 'a' > 'B' bytewise (C), though many linguistic collations put 'a' first.
    assert merge.merge_dimension(conn, "dim_staff", list(STAFF), "20240301T000000Z-a").updated == 1


def test_the_ddl_is_applied_once_per_version(empty_warehouse: str) -> None:
    with psycopg.connect(empty_warehouse) as conn:
        assert ledger.ensure_schema(conn) is True
        assert ledger.ensure_schema(conn) is False
        conn.execute("UPDATE etl.schema_applied SET sha256 = 'an older script'")
        assert ledger.ensure_schema(conn) is True
        assert conn.execute("SELECT count(*) FROM etl.schema_applied").fetchone() == (2,)
        assert ledger.ensure_schema(conn) is False


def test_code_rolled_back_to_a_version_applied_before_applies_its_ddl_again(empty_warehouse: str) -> None:
    with psycopg.connect(empty_warehouse) as conn:
        assert ledger.ensure_schema(conn) is True
        # a newer version's DDL, applied after this one's, dropped a function this version's load calls
        conn.execute("INSERT INTO etl.schema_applied VALUES ('a newer script', clock_timestamp())")
        conn.execute("DROP FUNCTION etl.sales_figures(integer[]) CASCADE")
        assert ledger.ensure_schema(conn) is True
        assert conn.execute("SELECT to_regprocedure('etl.sales_figures(integer[])') IS NOT NULL").fetchone() == (True,)
        assert ledger.ensure_schema(conn) is False


CONSTRAINTS = (
    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
    "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
)


def payments(*rows: tuple[int, str, int]) -> pl.DataFrame:
    """fact_payment versions (payment_id, etl_row_hash, minute of last_updated) on 2024-03-01."""
    return pl.DataFrame(
        [
            (
                *(pid, date(2024, 3, 1), time(9), date(2024, 3, 1), time(9, minute)),
                *(1, 1, Decimal("1.00"), 1, 1, True, date(2024, 3, 1), row_hash),
            )
            for pid, row_hash, minute in rows
        ],
        schema={
            "payment_id": pl.Int32(),
            "created_date": pl.Date(),
            "created_time": pl.Time(),
            "last_updated_date": pl.Date(),
            "last_updated": pl.Time(),
            "transaction_id": pl.Int32(),
            "counterparty_id": pl.Int32(),
            "payment_amount": pl.Decimal(10, 2),
            "currency_id": pl.Int32(),
            "payment_type_id": pl.Int32(),
            "paid": pl.Boolean(),
            "payment_date": pl.Date(),
            "etl_row_hash": pl.String(),
        },
        orient="row",
    )


@pytest.mark.parametrize("bulk", [False, True])
def test_facts_insert_new_versions_once_oldest_first_in_either_mode(conn: psycopg.Connection, bulk: bool) -> None:
    conn.execute(
        "INSERT INTO dim_date VALUES ('2024-03-01', 2024, 3, 1, 5, 'Friday', 'March', 1);"
        "INSERT INTO dim_transaction VALUES (1, 'SALE', 1, NULL, now(), 'r0');"
        "INSERT INTO dim_counterparty VALUES (1, 'n', 'a', NULL, NULL, 'c', 'p', 'k', 't', now(), 'r0');"
        "INSERT INTO dim_currency VALUES (1, 'GBP', 'Pound Sterling', now(), 'r0');"
        "INSERT INTO dim_payment_type VALUES (1, 'SALES_RECEIPT', now(), 'r0');"
    )
    before = conn.execute(CONSTRAINTS).fetchall()
    columns = list(payments().columns)
    staging.stage(conn, "fact_payment", payments((1, "a", 1)))
    merge.insert_facts(conn, "fact_payment", columns, "r1", bulk=bulk)
    conn.execute("DROP TABLE stg_fact_payment")

    # Known version (1, a), a repeated new one (2, b), and 1's newer version listed first.
    staged = staging.stage(conn, "fact_payment", payments((1, "c", 5), (2, "b", 3), (1, "a", 1), (2, "b", 3)))
    assert staged == 3
    assert merge.insert_facts(conn, "fact_payment", columns, "r2", bulk=bulk) == merge.Merged(inserted=2)

    assert conn.execute(
        "SELECT payment_record_id, payment_id, etl_row_hash, etl_run_id FROM fact_payment ORDER BY 1"
    ).fetchall() == [(1, 1, "a", "r1"), (2, 2, "b", "r2"), (3, 1, "c", "r2")]
    assert conn.execute(CONSTRAINTS).fetchall() == before  # same keys, names and definitions, validated


def test_a_bulk_insert_rejects_a_missing_dimension_and_rolls_back_to_every_constraint(
    conn: psycopg.Connection,
) -> None:
    conn.commit()
    before = conn.execute(CONSTRAINTS).fetchall()
    staging.stage(conn, "fact_payment", payments((1, "a", 1)))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        merge.insert_facts(conn, "fact_payment", list(payments().columns), "r1", bulk=True)
    conn.rollback()
    assert conn.execute(CONSTRAINTS).fetchall() == before
    assert conn.execute("SELECT count(*) FROM fact_payment").fetchone() == (0,)
