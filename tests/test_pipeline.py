"""End to end on real PostgreSQL + Azurite: the snapshot and then simulated changes reach the warehouse."""

import logging
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from shared import load
from shared.lake import Lake
from shared.local.source.simulate import simulate
from shared.pipeline import run_cycle
from shared.settings import Settings
from shared.transform import raw
from shared.verify import verify
from shared.warehouse import bulk, staging
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


FACT_VERSION_ORDER = {
    "fact_sales_order": ("sales_record_id", "last_updated_date, last_updated_time, sales_order_id"),
    "fact_purchase_order": ("purchase_record_id", "last_updated_date, last_updated_time, purchase_order_id"),
    "fact_payment": ("payment_record_id", "last_updated_date, last_updated, payment_id"),
}


def test_large_files_streamed_in_chunks_and_slices_load_what_the_source_holds(
    settings: Settings, lake: Lake, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # What a x1000 first load does with its 11-20M-row tables, at the snapshot's size: the transform builds
    # every table over 1,000 rows in chunks, the load copies every file over 1,000 rows in slices of 700.
    monkeypatch.setattr(raw, "CHUNK_ROWS", 1000)
    monkeypatch.setattr(staging, "STREAM_ROWS", 1000)
    monkeypatch.setattr(staging, "SLICE_ROWS", 700)
    monkeypatch.setattr(load, "PREFETCH_ROWS", 100)  # larger files are downloaded to disk, as at x1000
    streamed: dict[str, bool] = {}
    for name in ("copy_facts", "copy_dimension", "stage"):
        module = staging if name == "stage" else bulk
        monkeypatch.setattr(module, name, spy(getattr(module, name), streamed))
    source, warehouse = _url(settings.totesys_db_url), _url(settings.warehouse_db_url)

    caplog.set_level(logging.INFO)
    assert run_cycle(settings, lake).load is not None

    said = [r.getMessage() for r in caplog.records]
    assert any("table payment: 15836 rows, built in 16 chunks of up to 1000 keys (CHUNK_ROWS)" in m for m in said)
    assert any("table fact_payment: 15836 rows, read from local disk in slices of 700 rows" in m for m in said)
    assert {t for t, s in streamed.items() if s} == {
        "fact_sales_order",
        "fact_purchase_order",
        "fact_payment",
        "dim_transaction",
    }
    report = verify(source, warehouse)
    assert report.ok, "\n".join(t.line() for t in report.tables if not t.ok)
    with psycopg.connect(warehouse) as wh:
        for table, (record_id, order) in FACT_VERSION_ORDER.items():
            # record ids numbered in version order although the rows were copied in natural-key order
            query = f"SELECT count(*) FROM (SELECT {record_id}, row_number() OVER (ORDER BY {order}) AS n, "
            query += f"row_number() OVER (ORDER BY {record_id}) AS m FROM {table}) AS f WHERE n <> m"
            assert wh.execute(query).fetchone() == (0,), table

    # An incremental run's files over the threshold are staged in slices too.
    streamed.clear()
    monkeypatch.setattr(staging, "STREAM_ROWS", 5)
    monkeypatch.setattr(staging, "SLICE_ROWS", 4)
    monkeypatch.setattr(load, "PREFETCH_ROWS", 2)
    simulate(source, seed=11, changes=80)
    assert run_cycle(settings, lake).load is not None

    assert any(streamed.values())
    report = verify(source, warehouse)
    assert report.ok, "\n".join(t.line() for t in report.tables if not t.ok)


def spy(function: Callable[..., Any], streamed: dict[str, bool]) -> Callable[..., Any]:
    """`function(conn, table, rows, ...)`, recording whether each table's rows came streamed."""

    def recorded(conn: psycopg.Connection, table: str, rows: Any, *args: Any) -> Any:
        streamed[table] = isinstance(rows, staging.Rows) and rows.streamed
        return function(conn, table, rows, *args)

    return recorded
