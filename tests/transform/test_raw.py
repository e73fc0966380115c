"""The raw side's strict input: text dates exactly 'YYYY-MM-DD', real days, inside DATE_WINDOW_YEARS of the run;
and the row hash's memory with one wide value."""

from __future__ import annotations

import itertools
import tracemalloc
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from shared.lake import Lake
from shared.local.source.seed import read_snapshot
from shared.settings import SettingsError, date_window_years
from shared.transform import raw
from shared.transform.builders import build_fact_sales_order
from shared.transform.errors import InvalidValueError
from shared.transform.hashing import row_hash
from shared.transform.raw import DateWindow, bad_dates
from shared.transform.stage import transform
from tests.transform.test_stage import RUN, put_raw_run

MALFORMED = ("202-12-01", "24-12-01", "2024-1-5", "2024-02-30")
WINDOW = DateWindow.around(datetime(2026, 11, 22, tzinfo=UTC), 50)


def test_the_window_is_years_either_side_of_the_extract_time() -> None:
    assert DateWindow(date(1976, 11, 22), date(2076, 11, 22), 50) == WINDOW
    assert DateWindow.around(datetime(2024, 2, 29, tzinfo=UTC), 1).first == date(2023, 2, 28)


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_dates_are_named_by_id_and_value(value: str) -> None:
    frame = pl.DataFrame({"payment_id": [7, 3], "payment_date": ["2024-12-01", value]})
    assert bad_dates(frame, "payment", WINDOW) == {"payment_date": f"1 value(s): payment_id 3 '{value}'"}


def test_dates_outside_the_window_are_bad_and_nulls_are_not() -> None:
    frame = pl.DataFrame({"payment_id": [1, 2, 3], "payment_date": ["1900-01-01", None, "2076-11-22"]})
    assert bad_dates(frame, "payment", WINDOW) == {"payment_date": "1 value(s): payment_id 1 '1900-01-01'"}
    assert bad_dates(frame, "payment", None) == {}
    assert bad_dates(frame, "department", WINDOW) == {}


def test_the_pure_builder_refuses_a_three_digit_year() -> None:
    orders = (
        read_snapshot("sales_order")
        .head(2)
        .with_columns(pl.Series("agreed_delivery_date", ["2024-12-01", "202-12-01"]))
    )
    with pytest.raises(InvalidValueError, match=r"agreed_delivery_date.*'202-12-01'"):
        build_fact_sales_order(orders)


def test_date_window_setting() -> None:
    assert date_window_years({}) == 50
    assert date_window_years({"DATE_WINDOW_YEARS": "5"}) == 5
    with pytest.raises(SettingsError, match="DATE_WINDOW_YEARS='0'"):
        date_window_years({"DATE_WINDOW_YEARS": "0"})


@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_date_quarantines_the_run_naming_run_table_column_id_and_value(lake: Lake, value: str) -> None:
    orders = read_snapshot("sales_order").head(3)
    bad_id = orders.get_column("sales_order_id")[1]
    orders = orders.with_columns(
        pl.when(pl.col("sales_order_id") == bad_id)
        .then(pl.lit(value))
        .otherwise("agreed_delivery_date")
        .alias("agreed_delivery_date")
    )
    put_raw_run(lake, RUN, {"sales_order": orders})

    outcome = transform(lake, RUN)

    assert outcome.status == "quarantined"
    record = lake.read_json(lake.curated, f"_quarantine/{RUN}.json")
    assert record["columns"] == ["agreed_delivery_date"]
    named = (f"run {RUN}", "table sales_order", "column agreed_delivery_date", f"sales_order_id {bad_id} '{value}'")
    for part in named:
        assert part in record["reason"]
    assert not list(lake.list(lake.curated, "fact_sales_order/"))


def test_a_date_outside_the_window_quarantines(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATE_WINDOW_YEARS", "1")
    put_raw_run(lake, RUN, {"payment": read_snapshot("payment").head(2)})  # 2022-2023 dates, extracted 2026

    outcome = transform(lake, RUN)

    assert outcome.status == "quarantined"
    assert "between 2025-11-22 and 2027-11-22 (DATE_WINDOW_YEARS=1)" in (outcome.reason or "")


def test_a_bad_date_in_a_late_chunk_quarantines_before_any_curated_blob(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(raw, "CHUNK_ROWS", 1000)
    orders = read_snapshot("sales_order")
    bad_id = orders.get_column("sales_order_id").max()  # in the last of several chunks
    orders = orders.with_columns(
        pl.when(pl.col("sales_order_id") == bad_id)
        .then(pl.lit("2024-02-30"))
        .otherwise("agreed_payment_date")
        .alias("agreed_payment_date")
    )
    put_raw_run(lake, RUN, {"sales_order": orders, "currency": read_snapshot("currency")})

    outcome = transform(lake, RUN)

    assert orders.height > 3000
    assert outcome.status == "quarantined"
    assert f"sales_order_id {bad_id} '2024-02-30'" in (outcome.reason or "")
    assert [n for n in lake.list(lake.curated, "") if not n.startswith("_quarantine/")] == []


def test_raw_chunks_hold_whole_keys_in_ascending_ranges(lake: Lake, tmp_path: Path) -> None:
    orders = read_snapshot("sales_order")
    # a key twice (a merged retry): both its rows must land in one chunk; rows shuffled, as a source's heap
    twice = orders.filter(pl.col("sales_order_id") == 1000).with_columns(units_sold=pl.lit(1))
    rows = pl.concat([orders, twice]).sample(fraction=1.0, shuffle=True, seed=7)
    path = tmp_path / "sales_order.parquet"
    rows.write_parquet(path, row_group_size=500)
    staged = raw.StagedFile("sales_order", path, "raw/sales_order.parquet", RUN, (), rows=rows.height)

    chunks = list(raw.raw_chunks(staged, 1000))

    assert len(chunks) == -(-orders.height // 1000)
    assert all(0 < c.height <= 1001 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        assert before.get_column("sales_order_id").max() < after.get_column("sales_order_id").min()
    whole = pl.concat(chunks)
    assert whole.height == rows.height
    assert whole.sort(whole.columns).equals(raw.load_raw(staged).sort(whole.columns))
    assert [c.height for c in raw.raw_chunks(staged, rows.height)] == [rows.height]  # not larger: one chunk


def test_one_wide_value_costs_about_its_own_size_in_the_row_hash() -> None:
    """A 64 KB text among 20,000 rows: padding it with the whole batch would allocate 1.3 GB."""
    texts = ["x" * 20] * 20_000
    texts[123] = "w" * 65_536
    frame = pl.DataFrame({"id": range(20_000), "text": texts})
    tracemalloc.start()
    try:
        hashes = row_hash(frame, ["id", "text"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20
    for i in (0, 123, 19_999):  # chunking by width gives each row the hash it has alone
        assert hashes[i] == row_hash(frame.slice(i, 1), ["id", "text"])[0]
