"""`totes verify` on real PostgreSQL + Azurite: 0 differences after a run, and every kind of difference found."""

from __future__ import annotations

from datetime import date, timedelta

import psycopg
import pytest

from shared.cli import main
from shared.lake import Lake
from shared.pipeline import run_cycle
from shared.settings import Settings
from shared.verify import CHECKS, verify
from shared.warehouse.summaries import FIGURES

STAR_TABLES = {check.table for check in CHECKS} | {"dim_date"} | set(FIGURES)


@pytest.fixture
def loaded(settings: Settings, lake: Lake) -> tuple[str, str]:
    """(source URL, warehouse URL) after one cycle over the snapshot."""
    assert run_cycle(settings, lake).run_id is not None
    assert settings.totesys_db_url is not None and settings.warehouse_db_url is not None
    return settings.totesys_db_url.reveal(), settings.warehouse_db_url.reveal()


def test_a_loaded_warehouse_equals_the_source_in_every_table(loaded: tuple[str, str]) -> None:
    report = verify(*loaded)
    assert {t.table for t in report.tables} == STAR_TABLES
    assert report.ok, "\n".join(t.line() for t in report.tables if not t.ok)
    rows = {t.table: t.equal for t in report.tables}
    assert rows["fact_sales_order"] == 11187 and rows["fact_payment"] == 15836 and rows["dim_staff"] == 20


def test_verify_names_missing_unexpected_and_different_rows(loaded: tuple[str, str]) -> None:
    source_url, warehouse_url = loaded
    with psycopg.connect(source_url) as src:
        # a silent edit (last_updated unchanged), a department rename, a new order delivered on a day not in dim_date
        src.execute("UPDATE sales_order SET units_sold = units_sold + 1 WHERE sales_order_id = 5")
        src.execute("UPDATE department SET department_name = 'Renamed' WHERE department_id = 2")
        src.execute(
            "INSERT INTO sales_order (created_at, last_updated, design_id, staff_id, counterparty_id, units_sold,"
            " unit_price, currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id)"
            " SELECT created_at, last_updated, design_id, staff_id, counterparty_id, units_sold, unit_price,"
            " currency_id, '2031-01-01', agreed_payment_date, agreed_delivery_location_id"
            " FROM sales_order WHERE sales_order_id = 1"
        )
    with psycopg.connect(warehouse_url) as wh:
        wh.execute("UPDATE dim_currency SET currency_name = 'Wrong' WHERE currency_id = 1")
        last_day = wh.execute("SELECT max(date_id) FROM dim_date").fetchone()
        assert last_day is not None
        wh.execute("UPDATE dim_date SET day_name = 'Funday' WHERE date_id = (SELECT min(date_id) FROM dim_date)")
        wh.execute("INSERT INTO dim_payment_type SELECT 99, 'GIFT', now(), 'x'")
        # the dashboard's summaries: one sum wrong, one row lost
        wh.execute(
            "UPDATE sales_summary SET revenue = revenue + 1"
            " WHERE ctid = (SELECT ctid FROM sales_summary WHERE figure = 'by_month' ORDER BY created_month LIMIT 1)"
        )
        wh.execute("DELETE FROM payment_summary WHERE ctid = (SELECT min(ctid) FROM payment_summary)")
    report = verify(source_url, warehouse_url)
    by_table = {t.table: t for t in report.tables}
    assert not report.ok
    sales = by_table["fact_sales_order"]
    assert (sales.missing, sales.different, sales.unexpected) == (1, 1, 0)
    assert sales.examples["different"] == ["5 (units_sold)"]
    staff = by_table["dim_staff"]
    renamed = psycopg.connect(source_url).execute("SELECT count(*) FROM staff WHERE department_id = 2").fetchone()
    assert renamed is not None and staff.different == renamed[0] > 0
    assert all("department_name" in e for e in staff.examples["different"])
    assert by_table["dim_currency"].different == 1 and by_table["dim_currency"].examples["different"] == [
        "1 (currency_name)"
    ]
    assert (by_table["dim_payment_type"].unexpected, by_table["dim_payment_type"].examples["unexpected"]) == (1, ["99"])
    dates = by_table["dim_date"]
    beyond = (date(2031, 1, 1) - last_day[0]).days
    assert (dates.missing, dates.different) == (beyond, 1)
    assert dates.examples["missing"][0] == str(last_day[0] + timedelta(days=1))
    summary = by_table["sales_summary"]
    assert (summary.missing, summary.unexpected) == (1, 1)  # the sum the facts give, and the wrong one kept
    assert summary.examples["missing"][0].startswith("('by_month'")
    assert (by_table["payment_summary"].missing, by_table["payment_summary"].unexpected) == (1, 0)
    assert report.differences == 1 + 1 + staff.different + 1 + 1 + beyond + 1 + 2 + 1
    changed = {"fact_sales_order", "dim_staff", "dim_currency", "dim_payment_type", "dim_date"}
    for name in STAR_TABLES - changed - {"sales_summary", "payment_summary"}:
        assert by_table[name].ok, by_table[name].line()


def test_the_command_exits_1_on_a_difference_and_0_when_equal(
    loaded: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source_url, warehouse_url = loaded
    monkeypatch.setenv("TOTESYS_DB_URL", source_url)
    monkeypatch.setenv("WAREHOUSE_DB_URL", warehouse_url)
    monkeypatch.setenv("LAKE_STORAGE", "UseDevelopmentStorage=true")
    assert main(["verify"]) == 0
    assert "the warehouse equals the source" in capsys.readouterr().out
    with psycopg.connect(source_url) as src:
        src.execute("UPDATE payment SET paid = NOT paid WHERE payment_id = 3")
    assert main(["verify", "--table", "fact_payment"]) == 1
    out = capsys.readouterr().out
    assert "fact_payment" in out and "DIFFERS" in out and "3 (paid)" in out and "dim_staff" not in out
