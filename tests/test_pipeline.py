"""End to end on real PostgreSQL + Azurite: the snapshot and then simulated changes reach the warehouse."""

import psycopg
from psycopg import sql

from shared.lake import Lake
from shared.local.source.simulate import simulate
from shared.pipeline import run_cycle
from shared.settings import Settings
from shared.warehouse.report import table_counts
from tests.snapshot import SNAPSHOT_WAREHOUSE_ROWS

EXPECTED = SNAPSHOT_WAREHOUSE_ROWS


EXPECTED_SALES = EXPECTED["fact_sales_order"]


def _url(secret: object) -> str:
    assert secret is not None
    return secret.reveal()  # type: ignore[attr-defined, no-any-return]


def test_snapshot_then_changes_end_to_end(settings: Settings, lake: Lake) -> None:
    first = run_cycle(settings, lake)
    assert first.run_id is not None
    with psycopg.connect(_url(settings.warehouse_db_url)) as wh:
        counts = table_counts(wh)
        assert {t: counts[t] for t in EXPECTED} == EXPECTED
        # dim_date is contiguous from the first to the last referenced date
        gaps = wh.execute("SELECT (max(date_id) - min(date_id) + 1) - count(*) FROM dim_date").fetchone()
        assert gaps == (0,)
        # spot rows equal the source
        row = wh.execute(
            "SELECT s.first_name, s.department_name, s.location FROM dim_staff s WHERE staff_id = 1"
        ).fetchone()
        sale = wh.execute(
            "SELECT created_date::text, created_time::text, units_sold, unit_price::text, agreed_delivery_date::text"
            " FROM fact_sales_order WHERE sales_order_id = 1"
        ).fetchone()
    with psycopg.connect(_url(settings.totesys_db_url)) as src:
        expected_staff = src.execute(
            "SELECT s.first_name, d.department_name, d.location FROM staff s JOIN department d USING (department_id)"
            " WHERE staff_id = 1"
        ).fetchone()
    assert row == expected_staff
    assert sale == ("2022-11-03", "14:20:52.186", 84754, "2.43", "2022-11-10")

    report = simulate(_url(settings.totesys_db_url), seed=7, changes=60)
    second = run_cycle(settings, lake)
    assert second.run_id is not None and second.load is not None
    with (
        psycopg.connect(_url(settings.warehouse_db_url)) as wh,
        psycopg.connect(_url(settings.totesys_db_url)) as src,
    ):
        # the warehouse's current version of every order equals the source's row
        for table, key, cols in (
            ("sales_order", "sales_order_id", "units_sold, unit_price"),
            ("purchase_order", "purchase_order_id", "item_quantity, item_unit_price"),
        ):
            select = "SELECT {}, " + cols + " FROM {}"
            source_rows = set(
                src.execute(sql.SQL(select).format(sql.Identifier(key), sql.Identifier(table))).fetchall()
            )
            view = sql.Identifier(f"current_{table}")
            current = set(wh.execute(sql.SQL(select).format(sql.Identifier(key), view)).fetchall())
            assert current == source_rows
        paid = set(src.execute("SELECT payment_id, paid FROM payment").fetchall())
        assert set(wh.execute("SELECT payment_id, paid FROM current_payment").fetchall()) == paid
        # history: amended orders now have more than one version
        amended = {c.id for c in report.changes if c.kind == "sales_order_amended" and c.id <= EXPECTED_SALES}
        versioned = {
            r[0] for r in wh.execute("SELECT sales_order_id FROM fact_sales_order GROUP BY 1 HAVING count(*) > 1")
        }
        assert amended and versioned == amended
        assert sum(report.counts.values()) == 60
        after_second = table_counts(wh)

    third = run_cycle(settings, lake)
    # nothing changed since: the rows the lookback overlap re-reads were archived already, so no run at all
    assert (third.run_id, third.transform, third.load) == (None, None, None)
    with psycopg.connect(_url(settings.warehouse_db_url)) as wh:
        assert table_counts(wh) == after_second
