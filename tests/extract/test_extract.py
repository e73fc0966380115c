"""The extract stage end to end on real PostgreSQL (the snapshot) and real Azurite."""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import psycopg
import pytest
from azure.storage.blob import BlobServiceClient
from polars.testing import assert_frame_equal
from psycopg import sql

import shared.extract
import shared.extract.source
from shared.contract import SOURCE_SCHEMA, SOURCE_TABLES, primary_key
from shared.errors import TerminalError
from shared.extract import CHANGES_MARKER, STATE_BLOB, extract
from shared.extract.source import SourceTable
from shared.lake import BlobExistsError, Lake
from shared.local.source.seed import SNAPSHOT_COUNTS, read_snapshot
from shared.settings import Settings, load_settings
from tests.extract.runs import execute, manifests, raw_blobs, read_run, state

RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
NO_CHANGE = dict.fromkeys(SOURCE_TABLES, 0)


def changes(**rows: int) -> dict[str, int]:
    """Rows per source table: the given ones, 0 for the rest."""
    return {**NO_CHANGE, **rows}


def table_max(url: str, table: str) -> datetime:
    """max(last_updated) of a source table."""
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.SQL("SELECT max(last_updated) FROM {}").format(sql.Identifier(table))).fetchone()
    assert row is not None
    return row[0]


def test_first_run_extracts_every_row_with_the_source_types(
    extract_settings: Settings, lake: Lake, source_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shared.extract")
    result = extract(extract_settings, lake)

    assert result.rows == SNAPSHOT_COUNTS
    assert result.run_id is not None and RUN_ID.fullmatch(result.run_id)
    assert result.manifest == f"_runs/{result.run_id}.json"
    assert manifests(lake) == [result.manifest]
    manifest, frames = read_run(lake, result.manifest)
    assert manifest["run_id"] == result.run_id
    assert datetime.fromisoformat(manifest["extracted_at"]) == result.extracted_at
    assert manifest["lookback_seconds"] == 600
    assert list(manifest["tables"]) == list(SOURCE_TABLES)
    assert result.bytes == sum(e["bytes"] for e in manifest["tables"].values())
    day = result.extracted_at.strftime("%Y/%m/%d")
    for table, entry in manifest["tables"].items():
        assert entry["file"] == f"{table}/{day}/{result.run_id}.parquet"
        assert entry["rows"] == SNAPSHOT_COUNTS[table]
        assert entry["window"]["after"] is None
        assert datetime.fromisoformat(entry["window"]["max_last_updated"]) == table_max(source_db, table)
        # Exact source types, every column in source order, and the very values of the snapshot.
        assert frames[table].schema == pl.Schema(SOURCE_SCHEMA[table])
        key = primary_key(table)
        assert_frame_equal(frames[table].sort(key), read_snapshot(table).sort(key))
    types = {(t, c["name"]): c["type"] for t, e in manifest["tables"].items() for c in e["columns"]}
    assert types[("payment", "payment_amount")] == "numeric(10,2)"
    assert types[("payment", "paid")] == "boolean"
    assert types[("transaction", "transaction_type")] == "TransactionType"
    assert types[("payment_type", "payment_type_name")] == "PaymentTypeName"
    assert types[("sales_order", "agreed_delivery_date")] == "text"
    assert types[("currency", "currency_code")] == "character varying(3)"
    assert types[("staff", "last_updated")] == "timestamp(3) without time zone"
    assert types[("staff", "staff_id")] == "integer"

    after = state(lake)
    assert after is not None and after["last_run_id"] == result.run_id
    assert {t: datetime.fromisoformat(v) for t, v in after["tables"].items()} == {
        t: table_max(source_db, t) for t in SOURCE_TABLES
    }
    summary = [r for r in caplog.records if CHANGES_MARKER in r.getMessage()]
    assert len(summary) == 1
    assert summary[0].levelno == logging.INFO and summary[0].name == "shared.extract"
    assert f"run_id={result.run_id}" in summary[0].getMessage()
    dims = summary[0].custom_dimensions  # type: ignore[attr-defined]
    assert dims["run_id"] == result.run_id and json.loads(dims["rows"]) == SNAPSHOT_COUNTS
    assert dims["rows_payment"] == SNAPSHOT_COUNTS["payment"] and dims["rows_total"] == sum(SNAPSHOT_COUNTS.values())
    assert all(isinstance(v, str | int | float | bool) for v in dims.values())
    assert dims["bytes"] == result.bytes and dims["duration_s"] >= 0


def test_run_id_and_paths_follow_the_given_time(extract_settings: Settings, lake: Lake) -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    result = extract(extract_settings, lake, now=now)
    assert result.run_id is not None and result.run_id.startswith("20300102T030405Z-")
    assert result.files["staff"] == f"staff/2030/01/02/{result.run_id}.parquet"
    assert lake.read_json(lake.raw, f"_runs/{result.run_id}.json")["extracted_at"] == now.isoformat(
        timespec="microseconds"
    )


def test_next_run_extracts_exactly_the_changed_rows(
    extract_settings: Settings, lake: Lake, source_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = extract(extract_settings, lake)
    # Every staff row lies within the lookback of the staff watermark: the next run re-reads all 20,
    # but writes only the one that changed.
    with psycopg.connect(source_db) as conn:
        overlap = conn.execute(
            "SELECT count(*) FROM staff WHERE last_updated > "
            "(SELECT max(last_updated) - interval '10 minutes' FROM staff)"
        ).fetchone()
    assert overlap == (20,)
    execute(
        source_db,
        "UPDATE staff SET first_name = 'Renamed', last_updated = now() WHERE staff_id = 3",
        "UPDATE department SET department_name = 'Moved', last_updated = now() WHERE department_id = 2",
        "INSERT INTO currency (currency_code, last_updated) VALUES ('JPY', now())",
        "UPDATE payment SET paid = NOT paid, last_updated = now() WHERE payment_id IN (10, 11)",
    )

    second = extract(extract_settings, lake)

    assert second.rows == changes(staff=1, department=1, currency=1, payment=2)
    assert second.run_id is not None and second.run_id != first.run_id
    assert second.manifest is not None
    manifest, frames = read_run(lake, second.manifest)
    assert set(manifest["tables"]) == {"staff", "department", "currency", "payment"}
    assert frames["staff"]["first_name"].to_list() == ["Renamed"]
    assert frames["department"]["department_name"].to_list() == ["Moved"]
    assert frames["currency"].select("currency_id", "currency_code").rows() == [(4, "JPY")]
    assert sorted(frames["payment"]["payment_id"].to_list()) == [10, 11]
    first_manifest = lake.read_json(lake.raw, str(first.manifest))
    for table, entry in manifest["tables"].items():
        watermark = datetime.fromisoformat(first_manifest["tables"][table]["window"]["max_last_updated"])
        assert entry["window"]["after"] == (watermark - timedelta(minutes=10)).isoformat(timespec="microseconds")

    caplog.clear()
    caplog.set_level(logging.INFO, logger="shared.extract")
    third = extract(extract_settings, lake)
    assert (third.run_id, third.manifest, third.rows) == (None, None, NO_CHANGE)
    assert len(manifests(lake)) == 2
    after = state(lake)
    assert after is not None and after["last_run_id"] == second.run_id
    assert datetime.fromisoformat(after["last_checked_at"]) == third.extracted_at
    assert datetime.fromisoformat(after["last_changes_at"]) == second.extracted_at
    [line] = [r.getMessage() for r in caplog.records if r.name == "shared.extract"]
    assert line.startswith("extract: no changes since ") and "(checked at " in line
    assert CHANGES_MARKER not in line


def test_without_a_kept_tail_the_next_run_rereads_the_lookback_overlap(
    extract_settings: Settings, lake: Lake, source_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TAIL_LIMIT 0: no (key, hash) of the overlap rows is kept, as when very many changed in the lookback.
    monkeypatch.setattr(shared.extract.source, "TAIL_LIMIT", 0)
    extract(extract_settings, lake)
    overlap = {}
    with psycopg.connect(source_db) as conn:
        for table in SOURCE_TABLES:
            query = sql.SQL("SELECT count(*) FROM {} WHERE last_updated > %s").format(sql.Identifier(table))
            row = conn.execute(query, (table_max(source_db, table) - timedelta(minutes=10),)).fetchone()
            assert row is not None
            overlap[table] = row[0]
    execute(source_db, "UPDATE staff SET first_name = 'Renamed', last_updated = now() WHERE staff_id = 3")

    second = extract(extract_settings, lake)

    # Every table: the rows within the lookback of its watermark, again (staff's include the changed one).
    assert second.rows == overlap
    _, frames = read_run(lake, str(second.manifest))
    assert frames["staff"].filter(pl.col("staff_id") == 3)["first_name"].to_list() == ["Renamed"]


def test_a_late_commit_within_the_lookback_is_extracted_by_a_later_run(
    extract_settings: Settings, lake: Lake, source_db: str
) -> None:
    extract(extract_settings, lake)
    late = psycopg.connect(source_db)  # its now() is its transaction's start, before the commit below
    try:
        late.execute("UPDATE staff SET first_name = 'Late', last_updated = now() WHERE staff_id = 1")
        time.sleep(0.05)
        execute(source_db, "UPDATE staff SET last_name = 'Early', last_updated = now() WHERE staff_id = 2")

        during = extract(extract_settings, lake)  # sees staff 2, not the open transaction's staff 1
        assert during.rows == changes(staff=1)
        _, frames = read_run(lake, str(during.manifest))
        assert frames["staff"]["staff_id"].to_list() == [2]
        late.commit()
    finally:
        late.close()

    after = extract(extract_settings, lake)

    assert after.rows == changes(staff=1)
    _, frames = read_run(lake, str(after.manifest))
    row = frames["staff"].row(0, named=True)
    assert (row["staff_id"], row["first_name"]) == (1, "Late")
    # It is a late row: its last_updated is older than the watermark the run before had reached.
    watermark = lake.read_json(lake.raw, str(during.manifest))["tables"]["staff"]["window"]["max_last_updated"]
    assert row["last_updated"] < datetime.fromisoformat(watermark)


def test_a_crash_before_the_manifest_leaves_orphans_and_the_next_run_is_complete(
    extract_settings: Settings, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated crash after the data files")

    with monkeypatch.context() as patch:
        patch.setattr(shared.extract, "build_manifest", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            extract(extract_settings, lake)
    orphans = raw_blobs(lake)
    assert len(orphans) == len(SOURCE_TABLES) and manifests(lake) == []
    assert state(lake) is None

    result = extract(extract_settings, lake)

    assert result.rows == SNAPSHOT_COUNTS
    manifest, _ = read_run(lake, str(result.manifest))
    named = {e["file"] for e in manifest["tables"].values()}
    assert not named & set(orphans)  # a new run_id: the orphans are named by no manifest
    assert state(lake) is not None


def test_a_crash_after_the_manifest_is_adopted_by_the_next_run(
    extract_settings: Settings, lake: Lake, source_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = extract(extract_settings, lake)
    execute(source_db, "UPDATE staff SET first_name = 'Renamed', last_updated = now() WHERE staff_id = 3")

    def crash(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("simulated crash after the manifest")

    with monkeypatch.context() as patch:
        patch.setattr(shared.extract, "write_state", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            extract(extract_settings, lake)
    [crashed] = [m for m in manifests(lake) if m != first.manifest]
    crashed_manifest, crashed_frames = read_run(lake, crashed)  # complete: transform may load it
    assert crashed_frames["staff"].get_column("staff_id").to_list() == [3]
    before = state(lake)
    assert before is not None and before["last_run_id"] == first.run_id
    assert before["pending"]["run_id"] == crashed_manifest["run_id"]

    # The next run adopts the crashed run's watermark: the change is not archived a second time.
    result = extract(extract_settings, lake)

    assert result.run_id is None and result.rows == NO_CHANGE
    after = state(lake)
    assert after is not None and after["last_run_id"] == crashed_manifest["run_id"] and "pending" not in after


def test_past_the_lease_two_overlapping_runs_cannot_both_advance_the_watermark(
    extract_settings: Settings, lake: Lake, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = shared.extract._extract_tables
    inner: list[str | None] = []

    def racing(*args: object, **kwargs: object) -> None:
        original(*args, **kwargs)  # type: ignore[arg-type]
        if not inner:  # another invocation runs to completion while this one is still reading
            inner.append(None)
            # as if this run's lease had run out and another invocation had taken one: the ETag still holds
            with monkeypatch.context() as patch:
                patch.setattr(shared.extract, "LEASE_BLOB", "_state/another.lease")
                inner[0] = extract(extract_settings, lake).run_id

    monkeypatch.setattr(shared.extract, "_extract_tables", racing)
    caplog.set_level(logging.WARNING, logger="shared.extract")
    outer = extract(extract_settings, lake)

    # The later one commits nothing: no manifest, so no duplicate; its rows are all in the other run.
    assert outer.yielded and outer.run_id is None and outer.watermark_advanced is False
    after = state(lake)
    assert after is not None and after["last_run_id"] == inner[0]
    assert manifests(lake) == [f"_runs/{inner[0]}.json"]
    read_run(lake, manifests(lake)[0])
    assert any("wrote no manifest" in r.getMessage() for r in caplog.records)


def test_raw_blobs_are_write_once(
    extract_settings: Settings, lake: Lake, source_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = extract(extract_settings, lake)
    assert result.manifest is not None
    before = {name: lake.get(lake.raw, name) for name in [*result.files.values(), result.manifest]}
    for name in before:
        with pytest.raises(BlobExistsError, match="never overwrites"):
            lake.put_once(lake.raw, name, b"overwritten")
    # The extract itself cannot overwrite either: a (forced) second run with the same run_id fails.
    monkeypatch.setattr(shared.extract, "new_run_id", lambda *_: str(result.run_id))
    execute(source_db, "UPDATE payment SET paid = NOT paid, last_updated = now() WHERE payment_id = 1")
    with pytest.raises(BlobExistsError):
        extract(extract_settings, lake, now=result.extracted_at)
    assert {name: lake.get(lake.raw, name) for name in before} == before


def test_text_values_round_trip_exactly(extract_settings: Settings, lake: Lake, source_db: str) -> None:
    tricky = 'a "quoted", comma\nnewline \\N, ünïcödé 🚚'
    execute(
        source_db,
        "INSERT INTO address (address_id, address_line_1, address_line_2, district, city, postal_code, "
        "country, phone, last_updated) VALUES "
        f"(1001, '{tricky.replace(chr(39), chr(39) * 2)}', '', NULL, '\\N', '', 'X', ' ', now())",
    )
    result = extract(extract_settings, lake)
    _, frames = read_run(lake, str(result.manifest))
    row = frames["address"].filter(pl.col("address_id") == 1001).row(0, named=True)
    assert row["address_line_1"] == tricky
    assert row["address_line_2"] == ""  # an empty string stays an empty string ...
    assert row["district"] is None  # ... and NULL stays NULL
    assert (row["city"], row["postal_code"], row["phone"]) == ("\\N", "", " ")


def test_small_batches_give_the_same_rows(extract_settings: Settings, lake: Lake, other_lake: Lake) -> None:
    whole = extract(extract_settings, lake)
    batched = extract(extract_settings, other_lake, batch_rows=1000)
    assert batched.rows == whole.rows == SNAPSHOT_COUNTS
    _, expected = read_run(lake, str(whole.manifest))
    _, actual = read_run(other_lake, str(batched.manifest))
    for table in SOURCE_TABLES:
        key = primary_key(table)
        assert_frame_equal(actual[table].sort(key), expected[table].sort(key))


def test_new_source_columns_are_archived_with_one_warning(
    extract_settings: Settings, lake: Lake, source_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    execute(
        source_db,
        "ALTER TABLE staff ADD COLUMN nickname text, ADD COLUMN prefs jsonb, ADD COLUMN score numeric, "
        "ADD COLUMN badge smallint, ADD COLUMN seen timestamptz(3), ADD COLUMN born date",
        "UPDATE staff SET nickname = 'Bob', prefs = '{\"a\": [1, 2]}', score = 1.50, badge = 7, "
        "seen = '2024-11-15 10:21:09.962+02', born = '2000-02-29' WHERE staff_id = 1",
    )
    caplog.set_level(logging.WARNING, logger="shared.extract")
    first = extract(extract_settings, lake)
    execute(source_db, "UPDATE staff SET nickname = 'Rob', last_updated = now() WHERE staff_id = 1")
    second = extract(extract_settings, lake)

    new = ("nickname", "prefs", "score", "badge", "seen", "born")
    for result in (first, second):
        manifest, frames = read_run(lake, str(result.manifest))
        columns = {c["name"]: c["type"] for c in manifest["tables"]["staff"]["columns"]}
        assert [columns[c] for c in new] == [
            "text",
            "jsonb",
            "numeric",
            "smallint",
            "timestamp(3) with time zone",
            "date",
        ]
        assert [frames["staff"].schema[c] for c in new] == [
            pl.String,
            pl.String,  # no faithful Parquet type: its text form
            pl.String,  # unbounded numeric: its exact text
            pl.Int16,
            pl.Datetime("ms", "UTC"),
            pl.Date,
        ]
        assert result.extra_columns == {"staff": new}
    one = frames["staff"].filter(pl.col("staff_id") == 1).row(0, named=True)
    assert [one[c] for c in new] == [
        "Rob",
        '{"a": [1, 2]}',
        "1.50",
        7,
        datetime(2024, 11, 15, 8, 21, 9, 962000, tzinfo=UTC),
        date(2000, 2, 29),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "staff" in warnings[0] and "nickname (text)" in warnings[0] and "prefs (jsonb)" in warnings[0]


@pytest.mark.parametrize(
    ("statement", "names"),
    [
        ("DROP TABLE payment", ["payment"]),
        ("ALTER TABLE design DROP COLUMN file_name", ["design.file_name", "missing"]),
        ("ALTER TABLE payment ALTER COLUMN company_ac_number TYPE bigint", ["payment.company_ac_number", "bigint"]),
    ],
    ids=["missing-table", "missing-column", "changed-type"],
)
def test_a_source_schema_the_pipeline_cannot_read_stops_the_run(
    extract_settings: Settings, lake: Lake, source_db: str, statement: str, names: list[str]
) -> None:
    first = extract(extract_settings, lake)
    before = lake.read_versioned(lake.raw, STATE_BLOB).data
    blobs = raw_blobs(lake)
    execute(source_db, statement)

    with pytest.raises(TerminalError) as error:
        extract(extract_settings, lake)

    for name in names:
        assert name in str(error.value)
    assert raw_blobs(lake) == blobs and manifests(lake) == [first.manifest]
    assert lake.read_versioned(lake.raw, STATE_BLOB).data == before


def test_the_default_clock_is_the_database_clock(extract_settings: Settings, lake: Lake) -> None:
    before = datetime.now(UTC)
    result = extract(extract_settings, lake)
    assert before - timedelta(seconds=5) <= result.extracted_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert result.extracted_at.tzinfo is not None


def test_lookback_comes_from_the_setting(source_env: dict[str, str], lake: Lake, source_db: str) -> None:
    settings = load_settings({**source_env, "EXTRACT_LOOKBACK": "90s"}, needs=("source", "lake"))
    first = extract(settings, lake)
    execute(source_db, "UPDATE staff SET first_name = 'Renamed', last_updated = now() WHERE staff_id = 3")
    second = extract(settings, lake)
    manifest = lake.read_json(lake.raw, str(second.manifest))
    assert manifest["lookback_seconds"] == 90
    watermark = lake.read_json(lake.raw, str(first.manifest))["tables"]["staff"]["window"]["max_last_updated"]
    expected = datetime.fromisoformat(watermark) - timedelta(seconds=90)
    assert manifest["tables"]["staff"]["window"]["after"] == expected.isoformat(timespec="microseconds")


def test_write_once_holds_for_streamed_uploads_in_blocks(lake: Lake, tmp_path: Path) -> None:
    # Files over max_single_put_size go up as staged blocks; the commit carries If-None-Match: * too.
    conn = lake.blobs.credential
    small = BlobServiceClient(lake.blobs.url, credential=conn, max_single_put_size=1024, max_block_size=512)
    chunked = Lake(small, lake.queues, raw=lake.raw, curated=lake.curated, load_queue=lake.load_queue)
    path = tmp_path / "big.parquet"
    path.write_bytes(bytes(range(256)) * 40)
    with path.open("rb") as stream:
        chunked.put_once(lake.raw, "x/big.parquet", stream)
    with path.open("rb") as stream, pytest.raises(BlobExistsError):
        chunked.put_once(lake.raw, "x/big.parquet", b"\0" * 4096 + stream.read())
    assert lake.get(lake.raw, "x/big.parquet") == path.read_bytes()


def test_a_failure_mid_table_cancels_the_copy_and_commits_nothing(
    extract_settings: Settings, lake: Lake, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = shared.extract.source.parse_batch
    batches: list[str] = []

    def failing(table: SourceTable, csv: bytes) -> pl.DataFrame:
        batches.append(table.name)
        if batches.count("payment") == 2:
            raise TerminalError("simulated: a payment value could not be read")
        return original(table, csv)

    monkeypatch.setattr(shared.extract.source, "parse_batch", failing)
    caplog.set_level(logging.WARNING)
    with pytest.raises(TerminalError, match="simulated"):
        extract(extract_settings, lake, batch_rows=1000)

    assert manifests(lake) == [] and state(lake) is None
    # The COPY was cancelled and the transaction rolled back cleanly, with nothing left to warn about.
    assert not [r for r in caplog.records if r.name.startswith("psycopg")]
