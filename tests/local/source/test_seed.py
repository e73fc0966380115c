"""Seeding the source from the real snapshot, plain and scaled."""

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from shared.errors import TerminalError
from shared.local.source.seed import SNAPSHOT_COUNTS, scaled_frames, schema_sql, seed_source, table_counts

FK_QUERY = """
SELECT c.conname, c.conrelid::regclass::text FROM pg_constraint c WHERE c.contype = 'f'
"""


def test_snapshot_counts_and_sequences(source_db: str) -> None:
    with psycopg.connect(source_db) as conn:
        assert table_counts(conn) == SNAPSHOT_COUNTS
        # Identity sequences are past the max id: a new row gets the next id.
        row = conn.execute(
            "INSERT INTO currency (currency_code, last_updated) VALUES ('JPY', now()) RETURNING currency_id"
        ).fetchone()
        assert row == (4,)


def test_source_types_are_faithful(source_db: str) -> None:
    with psycopg.connect(source_db) as conn:
        types: dict[str, str] = dict(
            conn.execute(
                "SELECT table_name || '.' || column_name, "
                "CASE WHEN data_type = 'USER-DEFINED' THEN udt_name ELSE data_type END "
                "FROM information_schema.columns WHERE table_schema = 'public'"
            ).fetchall()
        )
        precision = conn.execute(
            "SELECT datetime_precision FROM information_schema.columns "
            "WHERE table_name = 'payment' AND column_name = 'last_updated'"
        ).fetchone()
    assert types["transaction.transaction_type"] == "TransactionType"
    assert types["payment_type.payment_type_name"] == "PaymentTypeName"
    assert types["payment.payment_amount"] == "numeric"
    assert types["sales_order.agreed_delivery_date"] == "text"
    assert types["currency.currency_code"] == "character varying"
    assert precision == (3,)


def test_seed_refuses_a_populated_database(source_db: str) -> None:
    with pytest.raises(TerminalError, match="--replace"):
        seed_source(source_db)


def test_scaled_seed_keeps_foreign_keys_and_multiplies_counts(empty_db: str) -> None:
    counts = seed_source(empty_db, scale=3)
    assert counts == {t: 3 * n for t, n in SNAPSHOT_COUNTS.items()}
    with psycopg.connect(empty_db) as conn:
        # Every FK was enforced while loading; check the 1:1 transaction/payment structure too.
        orphans = conn.execute(
            "SELECT count(*) FROM transaction t LEFT JOIN payment p USING (transaction_id) WHERE p.payment_id IS NULL"
        ).fetchone()
        assert orphans == (0,)
        one_side = conn.execute(
            "SELECT count(*) FROM transaction WHERE (sales_order_id IS NULL) = (purchase_order_id IS NULL)"
        ).fetchone()
        assert one_side == (0,)
        span = conn.execute("SELECT min(created_at)::date, max(last_updated)::date FROM sales_order").fetchone()
        assert span is not None
        assert str(span[0]) == "2022-11-03"
        assert span[1].year >= 2025  # later copies are spread forward in time
        fks = conn.execute(FK_QUERY).fetchall()
        assert len(fks) == 17


CATALOG_QUERY = """
SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT table_name, column_name, concat_ws(' ', ordinal_position, data_type, udt_name, is_nullable,
    column_default, is_identity, identity_generation, datetime_precision, numeric_precision, numeric_scale)
FROM information_schema.columns WHERE table_schema = 'public'
ORDER BY 1, 2, 3
"""


def test_seed_builds_the_same_schema_as_the_whole_script(source_db: str, empty_db: str) -> None:
    # The seed runs schema.sql in two parts around the bulk load; the result must be the script's.
    with psycopg.connect(empty_db) as conn:
        conn.execute(schema_sql().encode())
        expected = conn.execute(CATALOG_QUERY).fetchall()
    with psycopg.connect(source_db) as conn:
        seeded = conn.execute(CATALOG_QUERY).fetchall()
    assert seeded == expected
    names = {name for _, name, _ in seeded}
    assert {"payment_pkey", "payment_transaction_id_key", "transaction_sales_order_id_key"} <= names
    assert sum(1 for _, _, d in seeded if d.startswith("FOREIGN KEY")) == 17


def test_seeded_constraints_are_enforced(source_db: str) -> None:
    with psycopg.connect(source_db) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("UPDATE payment SET transaction_id = 999999 WHERE payment_id = 1")
        conn.rollback()
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("UPDATE payment SET transaction_id = 2 WHERE payment_id = 1")


def test_batches_do_not_change_the_copies() -> None:
    # Whole copies per frame, batched or not, give the same rows in the same order.
    for (table, batched), (_, single) in zip(scaled_frames(3), scaled_frames(3, batch_rows=1), strict=True):
        frames = list(batched)
        assert len(frames) == 1
        assert_frame_equal(frames[0], pl.concat(list(single)), check_exact=True)
        assert frames[0].height == 3 * SNAPSHOT_COUNTS[table]
