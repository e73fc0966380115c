"""shared.load against real PostgreSQL and Azurite: curated runs in, warehouse + ledger out."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time as clock
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import polars as pl
import psycopg
import pytest

from shared import load as load_stage
from shared.errors import TerminalError, TransientError
from shared.lake import Lake
from shared.load import load, parse_message, status
from shared.local.stack import free_port
from shared.settings import Secret, Settings
from shared.warehouse import bulk
from shared.warehouse.ledger import LOAD_LOCK
from tests.load.conftest import CuratedRuns
from tests.load.crash import STEPS, InjectedCrash, load_crashing_after
from tests.load.frames import T0, T1, T2, base_run, counterparty, frame, location, sales_order, staff
from tests.load.warehouse import ledger, query, warehouse_rows

R1 = "20240301T090500Z-a1b2c3"
R2 = "20240302T103500Z-d4e5f6"
R3 = "20240303T114500Z-0a0b0c"
R4 = "20240304T120000Z-99ff00"
FIRST_RUN_ROWS = {
    "dim_date": 8,  # 2024-03-01 .. 2024-03-08, every day referenced plus the gaps between
    "dim_staff": 2,
    "dim_location": 2,
    "dim_currency": 2,
    "dim_design": 1,
    "dim_counterparty": 1,
    "dim_payment_type": 2,
    "dim_transaction": 2,
    "fact_sales_order": 2,
    "fact_purchase_order": 1,
    "fact_payment": 1,
}


def url(settings: Settings) -> str:
    assert settings.warehouse_db_url is not None
    return settings.warehouse_db_url.reveal()


def later_run() -> dict[str, pl.DataFrame]:
    """A second run: newer staff 1 / location 1, an older staff 2, a tie on currency 1, order 1 v2."""
    return {
        "dim_staff": frame("dim_staff", staff(1, "Jeremy", T1), staff(2, "Old-Deron", T0)),
        "dim_location": frame("dim_location", location(1, "Leeds", T1)),
        # Same source version as the first run's, so the later run id decides: it wins in any order.
        "dim_currency": frame("dim_currency", (1, "GBP", "British Pound", T0)),
        "dim_counterparty": frame("dim_counterparty", counterparty(1, updated=T1)),
        "dim_design": frame("dim_design", (1, "Wooden", "/usr", "wooden-20220717-npgz.json", T1)),
        "fact_sales_order": frame("fact_sales_order", sales_order(1, units=150, updated=T1)),
    }


def first_run() -> dict[str, pl.DataFrame]:
    """The base run, with staff 2 at a newer version (T2) than the later run's copy of it."""
    run = base_run()
    run["dim_staff"] = frame("dim_staff", staff(1), staff(2, "Deron", T2))
    return run


def test_first_load_of_a_small_run(
    curated: CuratedRuns, lake: Lake, warehouse_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    curated.write(R1, base_run())
    with caplog.at_level(logging.INFO, logger="shared.load"):
        result = load(warehouse_settings, lake, R1)

    assert (result.run_id, result.already_loaded) == (R1, False)
    assert result.rows == FIRST_RUN_ROWS
    assert {"lock", "schema", "read", "staging", "dim_date", "dims", "facts", "ledger", "commit"} <= set(result.timings)
    assert result.duration_s > 0 and result.lag_s is not None and result.lag_s > 0
    db = url(warehouse_settings)
    assert query(db, "SELECT * FROM dim_counterparty") == [
        (
            *(1, "Fahey and Sons", "605 Haskell Trafficway", "", None),
            *("East Bobbie", "88253-4257", "Chad", "9687 937447", T0, R1, None),  # etl_deleted_at: not deleted
        )
    ]
    assert query(
        db,
        "SELECT sales_record_id, created_time, unit_price, agreed_payment_date, etl_row_hash, etl_run_id "
        "FROM fact_sales_order ORDER BY 1",
    ) == [
        (1, time(9, 0, 0, 125000), Decimal("2.50"), date(2024, 3, 5), "so1-100", R1),
        (2, time(9, 0, 0, 125000), Decimal("2.50"), date(2024, 3, 5), "so2-7", R1),
    ]
    assert query(db, "SELECT paid, payment_date FROM fact_payment") == [(False, date(2024, 3, 8))]
    ledger_row = query(db, "SELECT run_id, extracted_at, source_max_updated, row_counts, timings FROM etl.load_run")
    assert len(ledger_row) == 1
    run_id, extracted_at, source_max, counts, timings = ledger_row[0]
    assert (run_id, counts) == (R1, FIRST_RUN_ROWS)
    assert extracted_at == datetime.fromisoformat("2024-03-03T12:00:00+00:00")
    assert source_max == datetime(2024, 3, 3, 11, 45, 0, 999000)
    assert timings["total"] > 0
    ok = [r for r in caplog.records if "TOTES_LOAD_OK" in r.getMessage()]
    assert len(ok) == 1 and ok[0].levelno == logging.INFO
    line = ok[0].getMessage()
    assert f"run_id={R1}" in line and '"fact_sales_order":2' in line and "duration_s=" in line


def test_the_same_run_twice_changes_nothing(
    curated: CuratedRuns, lake: Lake, warehouse_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    curated.write(R1, base_run())
    load(warehouse_settings, lake, R1)
    db = url(warehouse_settings)
    before = warehouse_rows(db), ledger(db), query(db, "SELECT max(etl_loaded_at) FROM fact_sales_order")

    with caplog.at_level(logging.INFO, logger="shared.load"):
        again = load(warehouse_settings, lake, R1)

    assert (again.already_loaded, again.rows) == (True, {})
    assert (warehouse_rows(db), ledger(db), query(db, "SELECT max(etl_loaded_at) FROM fact_sales_order")) == before
    assert not [r for r in caplog.records if "TOTES_LOAD_OK" in r.getMessage()]


def test_runs_loaded_in_reverse_order_give_the_same_warehouse(
    fact_mode: str, curated: CuratedRuns, lake: Lake, warehouse_settings: Settings, other_warehouse: str
) -> None:
    curated.write(R1, first_run())
    curated.write(R2, later_run())
    reverse = dataclasses.replace(warehouse_settings, warehouse_db_url=Secret(other_warehouse))

    load(warehouse_settings, lake, R1)
    second = load(warehouse_settings, lake, R2)
    load(reverse, lake, R2)
    load(reverse, lake, R1)

    in_order = warehouse_rows(url(warehouse_settings))
    assert in_order == warehouse_rows(other_warehouse)
    db = url(warehouse_settings)
    assert query(db, "SELECT staff_id, first_name, etl_source_updated, etl_run_id FROM dim_staff ORDER BY 1") == [
        (1, "Jeremy", T1, R2),
        (2, "Deron", T2, R1),  # the later run's older version of staff 2 never replaces the newer one
    ]
    assert query(db, "SELECT currency_name, etl_run_id FROM dim_currency WHERE currency_id = 1") == [
        ("British Pound", R2)
    ]
    assert query(db, "SELECT city FROM dim_location WHERE location_id = 1") == [("Leeds",)]
    assert query(db, "SELECT sales_order_id, units_sold FROM fact_sales_order ORDER BY 1, 2") == [
        (1, 100),
        (1, 150),
        (2, 7),
    ]
    # staff 1, location 1, currency 1 (tie), counterparty 1, design 1 updated; staff 2 left alone.
    assert {t: n for t, n in second.rows.items() if t.startswith("dim_")} == {
        "dim_date": 0,
        "dim_staff": 1,
        "dim_location": 1,
        "dim_currency": 1,
        "dim_counterparty": 1,
        "dim_design": 1,
    }


def test_a_crash_between_staging_and_merge_leaves_warehouse_and_ledger_unchanged_and_the_retry_succeeds(
    curated: CuratedRuns, lake: Lake, warehouse_settings: Settings
) -> None:
    curated.write(R1, base_run())
    db = url(warehouse_settings)

    with pytest.raises(InjectedCrash, match="staging"):
        load_crashing_after(warehouse_settings, lake, R1, "staging")

    # Even the DDL applied by that load was rolled back: the warehouse is as empty as before.
    assert warehouse_rows(db) == {} and ledger(db) == []
    retry = load(warehouse_settings, lake, R1)
    assert (retry.already_loaded, retry.rows) == (False, FIRST_RUN_ROWS)
    assert [r[0] for r in ledger(db)] == [R1]


CONSTRAINTS = "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint ORDER BY 1"


def test_a_first_load_copied_straight_in_keeps_every_key_and_validated_foreign_key(
    monkeypatch: pytest.MonkeyPatch, curated: CuratedRuns, lake: Lake, warehouse_settings: Settings
) -> None:
    monkeypatch.setattr(bulk, "FIRST_LOAD_ROWS", 1)  # the copy path of a first load, whatever the size
    curated.write(R1, base_run())
    load(warehouse_settings, lake, R1)

    constraints = query(url(warehouse_settings), CONSTRAINTS)
    sales = {name: validated for name, _, validated in constraints if name.startswith("fact_sales_order_")}
    assert len([d for _, d, _ in constraints if d.startswith("FOREIGN KEY")]) == 24  # the REFERENCES of schema.sql
    assert len(sales) == 11 and {"fact_sales_order_pkey", "fact_sales_order_version_key"} <= set(sales)
    assert all(validated for _, _, validated in constraints), "every key and foreign key is enforced and validated"


@pytest.fixture(params=["per-row", "bulk"])
def fact_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with fact batches inserted per row (ON CONFLICT) and in bulk (keys rebuilt)."""
    if request.param == "bulk":
        monkeypatch.setattr(bulk, "BULK_FACT_ROWS", 1)
        monkeypatch.setattr(bulk, "FIRST_LOAD_ROWS", 1)
    return str(request.param)


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_after_any_step_rolls_the_whole_run_back(
    step: str, fact_mode: str, curated: CuratedRuns, lake: Lake, warehouse_settings: Settings
) -> None:
    curated.write(R1, first_run())
    curated.write(R2, later_run())
    load(warehouse_settings, lake, R1)
    db = url(warehouse_settings)
    before = warehouse_rows(db), ledger(db), query(db, CONSTRAINTS)

    with pytest.raises(InjectedCrash):
        load_crashing_after(warehouse_settings, lake, R2, step)

    assert (warehouse_rows(db), ledger(db), query(db, CONSTRAINTS)) == before
    assert load(warehouse_settings, lake, R2).rows["fact_sales_order"] == 1
    assert [r[0] for r in ledger(db)] == [R1, R2]


def test_a_database_error_mid_load_rolls_the_whole_run_back(
    curated: CuratedRuns, lake: Lake, warehouse_settings: Settings
) -> None:
    curated.write(R1, base_run())
    load(warehouse_settings, lake, R1)
    db = url(warehouse_settings)
    before = warehouse_rows(db), ledger(db)
    broken = list(sales_order(3))
    broken[7] = None  # units_sold is NOT NULL in the warehouse: rejected after the dimensions merged
    curated.write(
        R2,
        {
            "dim_staff": frame("dim_staff", staff(3, "New")),
            "fact_sales_order": frame("fact_sales_order", tuple(broken)),
        },
    )

    with pytest.raises(TerminalError, match=rf"run {R2}: the warehouse rejected facts of fact_sales_order"):
        load(warehouse_settings, lake, R2)

    assert (warehouse_rows(db), ledger(db)) == before  # staff 3 was merged, then rolled back with the rest


def test_dim_date_is_a_contiguous_english_iso_calendar(
    curated: CuratedRuns, lake: Lake, warehouse_settings: Settings
) -> None:
    run = base_run()
    del run["dim_date"], run["fact_purchase_order"], run["fact_payment"]
    edge = sales_order(1, created=date(2024, 3, 30), updated=datetime(2024, 4, 2, 8), dates=(date(2024, 4, 2),) * 2)
    run["fact_sales_order"] = frame("fact_sales_order", edge)
    curated.write(R1, run)
    db = url(warehouse_settings)

    assert load(warehouse_settings, lake, R1).rows["dim_date"] == 4
    assert query(db, "SELECT * FROM dim_date ORDER BY date_id") == [
        (date(2024, 3, 30), 2024, 3, 30, 6, "Saturday", "March", 1),
        (date(2024, 3, 31), 2024, 3, 31, 7, "Sunday", "March", 1),
        (date(2024, 4, 1), 2024, 4, 1, 1, "Monday", "April", 2),
        (date(2024, 4, 2), 2024, 4, 2, 2, "Tuesday", "April", 2),
    ]

    # Later runs extend the calendar at both ends, and it stays contiguous.
    early = sales_order(2, created=date(2024, 3, 27), updated=datetime(2024, 3, 28, 9), dates=(date(2024, 3, 28),) * 2)
    curated.write(R2, {"fact_sales_order": frame("fact_sales_order", early)})
    curated.write(R3, {"dim_date": frame("dim_date", (date(2025, 1, 1), 2025, 1, 1, 3, "Wednesday", "January", 1))})
    assert load(warehouse_settings, lake, R2).rows["dim_date"] == 3
    assert load(warehouse_settings, lake, R3).rows["dim_date"] == 274
    assert query(db, "SELECT count(*), max(date_id) - min(date_id) + 1, min(date_id) FROM dim_date") == [
        (281, 281, date(2024, 3, 27))
    ]
    assert query(db, "SELECT day_name, month_name, quarter FROM dim_date WHERE date_id = '2024-12-29'") == [
        ("Sunday", "December", 4)
    ]


def test_fact_history_keeps_every_distinct_version_once(
    fact_mode: str, curated: CuratedRuns, lake: Lake, warehouse_settings: Settings
) -> None:
    db = url(warehouse_settings)
    curated.write(R1, base_run())
    curated.write(R2, {"fact_sales_order": frame("fact_sales_order", sales_order(1, units=150, updated=T1))})
    # A replay of both known versions of order 1 (an overlapping extract window) adds nothing.
    curated.write(
        R3, {"fact_sales_order": frame("fact_sales_order", sales_order(1, units=150, updated=T1), sales_order(1))}
    )
    # Two versions of a new order in one file, newest first: record ids still follow last_updated.
    curated.write(
        R4,
        {
            "fact_sales_order": frame(
                "fact_sales_order", sales_order(3, units=9, updated=T2), sales_order(3, units=8, updated=T1)
            )
        },
    )

    load(warehouse_settings, lake, R1)
    assert load(warehouse_settings, lake, R2).rows == {"dim_date": 0, "fact_sales_order": 1}
    assert load(warehouse_settings, lake, R3).rows == {"dim_date": 0, "fact_sales_order": 0}
    assert load(warehouse_settings, lake, R4).rows["fact_sales_order"] == 2

    assert query(db, "SELECT sales_order_id, units_sold, etl_run_id FROM fact_sales_order ORDER BY 1, 2") == [
        (1, 100, R1),
        (1, 150, R2),
        (2, 7, R1),
        (3, 8, R4),
        (3, 9, R4),
    ]
    ids = dict(query(db, "SELECT units_sold, sales_record_id FROM fact_sales_order WHERE sales_order_id = 3"))
    assert ids[8] < ids[9]
    assert query(db, "SELECT sales_order_id, units_sold FROM current_sales_order ORDER BY 1") == [
        (1, 150),
        (2, 7),
        (3, 9),
    ]


def test_a_fact_whose_dimension_is_not_loaded_yet_fails_transiently_and_loads_later(
    fact_mode: str, curated: CuratedRuns, lake: Lake, warehouse_settings: Settings
) -> None:
    db = url(warehouse_settings)
    curated.write(R1, base_run())
    curated.write(R2, {"dim_staff": frame("dim_staff", staff(9, "Late", T1))})  # carries staff 9
    curated.write(R3, {"fact_sales_order": frame("fact_sales_order", sales_order(5, staff_id=9, updated=T2))})
    load(warehouse_settings, lake, R1)
    before = warehouse_rows(db), ledger(db)

    with pytest.raises(TransientError) as failure:
        load(warehouse_settings, lake, R3)  # delivered before R2

    message = str(failure.value)
    assert f"run {R3}" in message and "dimension rows not loaded yet; will retry" in message
    assert "fact_sales_order.sales_staff_id -> dim_staff ids [9]" in message
    assert (warehouse_rows(db), ledger(db)) == before
    load(warehouse_settings, lake, R2)
    assert load(warehouse_settings, lake, R3).rows["fact_sales_order"] == 1


def _corrupt(manifest: dict[str, Any], how: str) -> None:
    entry = manifest["tables"]["fact_sales_order"]
    if how == "sha256":
        entry["sha256"] = "0" * 64
    elif how == "rows":
        entry["rows"] += 1
    elif how == "table":
        manifest["tables"]["fact_sales"] = manifest["tables"].pop("fact_sales_order")
    elif how == "missing file":
        entry["file"] = entry["file"].replace(".parquet", "-gone.parquet")


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("sha256", rf"run {R1}, table fact_sales_order, file curated-\w+/fact_sales_order/{R1}.parquet: sha256"),
        ("rows", rf"run {R1}, table fact_sales_order, file .*: 2 rows, the manifest says 3"),
        ("table", rf"run {R1}: manifest .* names unknown warehouse table 'fact_sales'"),
        ("columns", rf"run {R1}, table fact_sales_order, file .*missing \['units_sold'\], extra \['units'\]"),
        ("unknown run", rf"unknown run {R1}: no manifest curated-\w+/_runs/{R1}.json"),
        (
            "missing file",
            rf"run {R1}, table fact_sales_order, file .*-gone.parquet: the file named by the manifest does not exist",
        ),
    ],
)
@pytest.mark.parametrize("prefetch_rows", [load_stage.PREFETCH_ROWS, 0], ids=["in memory", "downloaded ahead"])
def test_unusable_input_is_terminal_and_loads_nothing(
    how: str,
    message: str,
    prefetch_rows: int,
    curated: CuratedRuns,
    lake: Lake,
    warehouse_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every check holds whether a file is read from memory (a small one) or downloaded to disk in the
    background while the files before it are staged (a large one)."""
    monkeypatch.setattr(load_stage, "PREFETCH_ROWS", prefetch_rows)
    run = base_run()
    if how == "columns":
        run["fact_sales_order"] = run["fact_sales_order"].rename({"units_sold": "units"})
    if how != "unknown run":
        manifest = curated.write(R1, run, commit=False)
        _corrupt(manifest, how)
        curated.write_manifest(R1, manifest)

    with pytest.raises(TerminalError, match=message):
        load(warehouse_settings, lake, R1)

    assert ledger(url(warehouse_settings)) == []


def test_an_unreachable_warehouse_is_transient(lake: Lake, warehouse_settings: Settings) -> None:
    down = f"postgresql://loader:s3cret-pw@127.0.0.1:{free_port()}/warehouse"
    settings = dataclasses.replace(warehouse_settings, warehouse_db_url=Secret(down))

    with pytest.raises(TransientError, match=rf"(?s)run {R1}: warehouse unreachable .* the queue retries") as failure:
        load(settings, lake, R1)

    assert "s3cret-pw" not in str(failure.value)


def test_concurrent_loads_wait_for_each_other(curated: CuratedRuns, lake: Lake, warehouse_settings: Settings) -> None:
    curated.write(R1, first_run())
    curated.write(R2, later_run())
    results: dict[str, Any] = {}

    def run(run_id: str) -> None:
        try:
            results[run_id] = load(warehouse_settings, lake, run_id)
        except Exception as exc:
            results[run_id] = exc

    with psycopg.connect(url(warehouse_settings)) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (LOAD_LOCK,))
        threads = [threading.Thread(target=run, args=(r,)) for r in (R1, R2, R1)]
        for thread in threads:
            thread.start()
        clock.sleep(1.0)
        assert not results and all(t.is_alive() for t in threads)  # all three wait for the lock
        holder.commit()
    for thread in threads:
        thread.join(60)

    assert all(not isinstance(r, Exception) for r in results.values()), results
    assert [r[0] for r in ledger(url(warehouse_settings))] == [R1, R2]
    staff = query(url(warehouse_settings), "SELECT staff_id, first_name FROM dim_staff ORDER BY 1")
    # R2's facts may only load after R1's dimensions; whatever the order, the newest versions won.
    assert staff == [(1, "Jeremy"), (2, "Deron")]


def test_status_lists_recent_runs_and_the_current_lag(
    curated: CuratedRuns, lake: Lake, warehouse_settings: Settings
) -> None:
    assert status(warehouse_settings) == {"runs": [], "lag_s": None, "source_max_updated": None}
    curated.write(R1, first_run(), source_max_updated="2024-03-01T09:00:00")
    curated.write(R2, later_run(), source_max_updated=None)
    load(warehouse_settings, lake, R1)
    load(warehouse_settings, lake, R2)

    report = status(warehouse_settings, limit=5)

    assert [r["run_id"] for r in report["runs"]] == [R2, R1]
    newest, oldest = report["runs"]
    assert oldest["row_counts"] == {**FIRST_RUN_ROWS, "dim_staff": 2}
    assert oldest["source_max_updated"] == datetime(2024, 3, 1, 9) and oldest["lag_s"] > 0
    assert newest["lag_s"] is None and newest["duration_s"] > 0
    assert report["source_max_updated"] == datetime(2024, 3, 1, 9)
    expected = (datetime.now().astimezone() - datetime.fromisoformat("2024-03-01T09:00:00+00:00")).total_seconds()
    assert abs(report["lag_s"] - expected) < 60
    assert len(status(warehouse_settings, limit=1)["runs"]) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not valid JSON"),
        ('["run_id"]', 'no string "run_id"'),
        ('{"run": "x"}', 'no string "run_id"'),
        ('{"run_id": 7}', 'no string "run_id"'),
        ('{"run_id": "../etc/passwd"}', "malformed"),
        ('{"run_id": ""}', "malformed"),
    ],
)
def test_parse_message_rejects_unusable_messages(body: str, reason: str) -> None:
    with pytest.raises(TerminalError, match=reason):
        parse_message(body)


def test_parse_message_returns_the_run_id() -> None:
    assert parse_message(json.dumps({"run_id": R1, "extra": 1})) == R1
