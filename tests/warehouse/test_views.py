"""The analysts' views (shared/warehouse/views.sql) on a warehouse the pipeline loaded: etl_current marks
exactly the versions current_* returns, whatever order the versions arrive in."""

from __future__ import annotations

import psycopg
from psycopg import sql

from shared.lake import Lake
from shared.local.source.simulate import simulate
from shared.pipeline import run_cycle
from shared.settings import Settings
from shared.warehouse.report import FACTS


def _url(secret: object) -> str:
    assert secret is not None
    return secret.reveal()  # type: ignore[attr-defined, no-any-return]


def marked_equals_current(conn: psycopg.Connection) -> None:
    for table, (_, record, _) in FACTS.items():
        marked = sql.SQL("SELECT {} FROM {} WHERE etl_current").format(sql.Identifier(record), sql.Identifier(table))
        current = sql.SQL("SELECT {} FROM {}").format(
            sql.Identifier(record), sql.Identifier(table.replace("fact_", "current_"))
        )
        assert set(conn.execute(marked).fetchall()) == set(conn.execute(current).fetchall()), table


def add_version(conn: psycopg.Connection, sales_order_id: int, days: int, units: int) -> int:
    """Insert a copy of the order's current version moved `days` in last_updated_date; its record id."""
    row = conn.execute(
        "INSERT INTO fact_sales_order (sales_order_id, created_date, created_time, last_updated_date,"
        " last_updated_time, sales_staff_id, counterparty_id, units_sold, unit_price, currency_id, design_id,"
        " agreed_payment_date, agreed_delivery_date, agreed_delivery_location_id, etl_row_hash, etl_run_id)"
        " SELECT sales_order_id, created_date, created_time, last_updated_date + %s, last_updated_time,"
        " sales_staff_id, counterparty_id, %s, unit_price, currency_id, design_id, agreed_payment_date,"
        " agreed_delivery_date, agreed_delivery_location_id, md5(random()::text), 'test'"
        " FROM current_sales_order WHERE sales_order_id = %s RETURNING sales_record_id",
        (days, units, sales_order_id),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_current_flag_follows_every_new_version(settings: Settings, lake: Lake) -> None:
    run_cycle(settings, lake)
    simulate(_url(settings.totesys_db_url), seed=5, changes=80)
    run_cycle(settings, lake)
    with psycopg.connect(_url(settings.warehouse_db_url)) as conn:
        versions = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM fact_sales_order GROUP BY sales_order_id HAVING count(*) > 1) v"
        ).fetchone()
        assert versions and versions[0] > 0, "the simulated changes made second versions"
        marked_equals_current(conn)

        # A late, older version (a run loaded out of order) leaves the current one current ...
        current = conn.execute("SELECT sales_record_id FROM current_sales_order WHERE sales_order_id = 5000").fetchone()
        late = add_version(conn, 5000, -1, 1)
        flags = dict(
            conn.execute("SELECT sales_record_id, etl_current FROM fact_sales_order WHERE sales_order_id = 5000")
        )
        assert current and flags[current[0]] is True and flags[late] is False
        # ... and a newer one takes over, the older ones all marked not current.
        newer = add_version(conn, 5000, 30, 2)
        flags = dict(
            conn.execute("SELECT sales_record_id, etl_current FROM fact_sales_order WHERE sales_order_id = 5000")
        )
        assert [r for r, is_current in flags.items() if is_current] == [newer]
        marked_equals_current(conn)
        units = conn.execute("SELECT units_sold FROM sales_order_detail WHERE sales_order_id = 5000").fetchall()
        assert units == [(2,)]
