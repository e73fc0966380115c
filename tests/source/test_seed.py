"""Seeding the source from the real snapshot, plain and scaled."""

import psycopg
import pytest

from shared.errors import TerminalError
from shared.source.seed import SNAPSHOT_COUNTS, seed_source, table_counts

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
        types = dict(
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
            "SELECT count(*) FROM transaction t LEFT JOIN payment p USING (transaction_id) "
            "WHERE p.payment_id IS NULL"
        ).fetchone()
        assert orphans == (0,)
        one_side = conn.execute(
            "SELECT count(*) FROM transaction WHERE (sales_order_id IS NULL) = (purchase_order_id IS NULL)"
        ).fetchone()
        assert one_side == (0,)
        span = conn.execute(
            "SELECT min(created_at)::date, max(last_updated)::date FROM sales_order"
        ).fetchone()
        assert span is not None
        assert str(span[0]) == "2022-11-03"
        assert span[1].year >= 2025  # later copies are spread forward in time
        fks = conn.execute(FK_QUERY).fetchall()
        assert len(fks) == 17
