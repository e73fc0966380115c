"""The transform stage on real Azurite: raw runs written here, curated files, state and manifests read back."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import azure.functions as func
import polars as pl
import pytest
from azure.functions.decorators.core import Binding
from azure.functions.decorators.function_app import Function

from shared.contract import SOURCE_TABLES, run_id_from_blob
from shared.errors import TerminalError
from shared.lake import Lake
from shared.local.source.seed import read_snapshot
from shared.settings import SettingsError, transform_trigger_source
from shared.transform import raw, stage
from shared.transform.model import transform_run
from shared.transform.quarantine import QUARANTINE_MARKER
from shared.transform.stage import OutputConflictError, RunNotFoundError, sort_for_output, transform
from shared.transform.store import read_state, write_state
from tests.snapshot import SNAPSHOT_WAREHOUSE_ROWS

RUN = "20261122T031500Z-aaaaaa"
EXTRACTED_AT = "2026-11-22T03:15:00Z"
SNAPSHOT_ROWS = SNAPSHOT_WAREHOUSE_ROWS


# ---------------------------------------------------------------------------------------------- helpers


def parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def put_raw_files(lake: Lake, run_id: str, frames: Mapping[str, pl.DataFrame]) -> dict[str, Any]:
    """Write each frame as the extract does; the raw manifest's `tables` entries for them."""
    tables = {}
    for table, frame in frames.items():
        data = parquet(frame)
        file = f"{table}/2026/11/22/{run_id}.parquet"
        lake.put_once(lake.raw, file, data)
        newest = frame.get_column("last_updated").max() if "last_updated" in frame.columns else None
        tables[table] = {
            "file": file,
            "rows": frame.height,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "window": {"after": None, "max_last_updated": newest.isoformat() if newest else None},  # type: ignore[union-attr]
            "columns": [{"name": c, "type": str(t)} for c, t in frame.schema.items()],
        }
    return tables


def put_raw_manifest(lake: Lake, run_id: str, body: Any) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    lake.put_once(lake.raw, f"_runs/{run_id}.json", data)


def put_raw_run(lake: Lake, run_id: str, frames: Mapping[str, pl.DataFrame]) -> dict[str, Any]:
    """A whole raw run: files, then the manifest (LAST, as the extract writes it)."""
    body = {
        "run_id": run_id,
        "extracted_at": EXTRACTED_AT,
        "lookback_seconds": 600,
        "tables": put_raw_files(lake, run_id, frames),
    }
    put_raw_manifest(lake, run_id, body)
    return body


def curated_blobs(lake: Lake) -> dict[str, bytes]:
    return {name: lake.get(lake.curated, name) for name in lake.list(lake.curated, "")}


def read_curated(lake: Lake, name: str) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(lake.get(lake.curated, name)))


@pytest.fixture(scope="module")
def snapshot() -> dict[str, pl.DataFrame]:
    """Every source table of the shipped snapshot, typed as the source."""
    return {table: read_snapshot(table) for table in SOURCE_TABLES}


def small_run() -> dict[str, pl.DataFrame]:
    """Departments 2 and 3, three of their staff, one currency: enough for dim_staff and dim_currency."""
    snap = {t: read_snapshot(t) for t in ("department", "staff", "currency")}
    departments = snap["department"].filter(pl.col("department_id").is_in([2, 3]))
    staff = snap["staff"].filter(pl.col("department_id").is_in([2, 3])).head(3)
    return {"department": departments, "staff": staff, "currency": snap["currency"].head(1)}


# ---------------------------------------------------------------------------------------------- snapshot


@pytest.mark.slow
def test_full_snapshot_run_writes_curated_files_manifest_and_state(
    lake: Lake, snapshot: dict[str, pl.DataFrame]
) -> None:
    raw = put_raw_run(lake, RUN, snapshot)

    outcome = transform(lake, RUN)

    assert outcome.status == "transformed"
    assert {t: n for t, n in outcome.rows.items() if t != "dim_date"} == SNAPSHOT_ROWS
    assert outcome.rows["dim_date"] > 0
    assert outcome.load_message == json.dumps({"run_id": RUN})
    assert outcome.manifest == f"_runs/{RUN}.json"
    manifest = lake.read_json(lake.curated, f"_runs/{RUN}.json")
    assert manifest["run_id"] == RUN
    assert manifest["extracted_at"] == EXTRACTED_AT
    newest = max(entry["window"]["max_last_updated"] for entry in raw["tables"].values())
    assert manifest["source_max_updated"] == newest
    assert set(manifest["tables"]) == set(outcome.rows)
    for table, entry in manifest["tables"].items():
        assert entry["file"] == f"{table}/{RUN}.parquet"
        data = lake.get(lake.curated, entry["file"])
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["rows"] == pl.read_parquet(io.BytesIO(data)).height == outcome.rows[table]
    sales = read_curated(lake, f"fact_sales_order/{RUN}.parquet")
    assert sales.get_column("sales_order_id").is_sorted()
    state = read_state(lake)
    assert {t: b.frame.height for t, b in state.items() if b.frame is not None} == {
        "department": 8,
        "staff": 20,
        "address": 30,
        "counterparty": 20,
    }
    assert not list(lake.list(lake.curated, "_quarantine/"))


def test_the_table_at_a_time_build_gives_what_transform_run_gives(
    lake: Lake, snapshot: dict[str, pl.DataFrame]
) -> None:
    # The stage builds one table at a time from files on disk; the pure transform_run builds the run in
    # memory. Both, from the snapshot and then from a department rename on its state, must agree.
    renamed = (
        snapshot["department"]
        .filter(pl.col("department_id") == 2)  # five staff
        .with_columns(department_name=pl.lit("Renamed"), last_updated=pl.col("last_updated") + timedelta(days=1))
    )
    state: dict[str, pl.DataFrame] = {}
    for run_id, frames in ((RUN, snapshot), ("20261122T033000Z-bbbbbb", {"department": renamed})):
        put_raw_run(lake, run_id, frames)
        outcome = transform(lake, run_id)
        expected = transform_run(frames, state)
        assert set(outcome.rows) == set(expected.tables)
        for table, frame in expected.tables.items():
            assert read_curated(lake, f"{table}/{run_id}.parquet").equals(sort_for_output(table, frame)), table
        state = expected.state
    assert outcome.rows == {"dim_staff": 5}


def test_large_tables_built_in_chunks_give_what_transform_run_gives(
    lake: Lake, snapshot: dict[str, pl.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks of 1,000 keys: sales orders, payments, purchase orders and transactions (4.6k-20k rows) are each
    # built in several chunks and their parts joined into one file, sorted as a whole.
    monkeypatch.setattr(raw, "CHUNK_ROWS", 1000)
    chunked = {t: f for t, f in snapshot.items() if f.height > 1000}
    assert {"sales_order", "payment", "purchase_order", "transaction"} <= set(chunked)
    chunks: dict[str, list[int]] = {}

    def counted(staged: raw.StagedFile, chunk_rows: int | None = None) -> Iterator[pl.DataFrame]:
        for frame in raw.raw_chunks(staged, chunk_rows):
            chunks.setdefault(staged.table, []).append(frame.height)
            yield frame

    monkeypatch.setattr(stage, "raw_chunks", counted)
    put_raw_run(lake, RUN, snapshot)

    outcome = transform(lake, RUN)

    expected = transform_run(snapshot, {})
    assert outcome.rows == {t: f.height for t, f in expected.tables.items()}
    for table, frame in expected.tables.items():
        assert read_curated(lake, f"{table}/{RUN}.parquet").equals(sort_for_output(table, frame)), table
    for table, frame in chunked.items():
        assert len(chunks[table]) == -(-frame.height // 1000), table  # one chunk per 1,000 keys
        assert sum(chunks[table]) == frame.height
    assert outcome.status == "transformed" and not list(lake.list(lake.curated, "_quarantine/"))


@pytest.mark.slow
def test_rerunning_a_done_run_is_already_done_with_identical_bytes(
    lake: Lake, snapshot: dict[str, pl.DataFrame]
) -> None:
    put_raw_run(lake, RUN, snapshot)
    first = transform(lake, RUN)
    before = curated_blobs(lake)

    again = transform(lake, RUN)

    assert again.status == "already_done"
    assert again.rows == first.rows
    assert again.load_message == first.load_message  # a lost load message can be sent again
    assert curated_blobs(lake) == before


@pytest.mark.slow
@pytest.mark.parametrize("lost", [["_runs/"], ["_runs/", "_state/"]], ids=["after-state", "before-state"])
def test_a_crash_before_the_manifest_is_repaired_by_a_rerun_with_the_same_bytes(
    lake: Lake, snapshot: dict[str, pl.DataFrame], lost: list[str]
) -> None:
    """A crash after the data files (and maybe the state) left no manifest: the re-run finishes the run."""
    put_raw_run(lake, RUN, snapshot)
    transform(lake, RUN)
    before = curated_blobs(lake)
    container = lake.blobs.get_container_client(lake.curated)
    for prefix in lost:
        for name in list(lake.list(lake.curated, prefix)):
            container.delete_blob(name)

    outcome = transform(lake, RUN)

    assert outcome.status == "transformed"
    assert curated_blobs(lake) == before


@pytest.mark.slow
def test_department_only_run_after_the_snapshot_re_emits_its_staff(
    lake: Lake, snapshot: dict[str, pl.DataFrame]
) -> None:
    put_raw_run(lake, RUN, snapshot)
    assert transform(lake, RUN).status == "transformed"
    renamed = (
        snapshot["department"]
        .filter(pl.col("department_id") == 2)
        .with_columns(pl.lit("Renamed").alias("department_name"), pl.col("last_updated") + timedelta(days=1))
    )
    second = "20261122T032000Z-bbbbbb"
    put_raw_run(lake, second, {"department": renamed})

    outcome = transform(lake, second)

    assert outcome.status == "transformed"
    staff_of_2 = snapshot["staff"].filter(pl.col("department_id") == 2)
    assert staff_of_2.height == 5
    assert outcome.rows == {"dim_staff": 5}
    dim_staff = read_curated(lake, f"dim_staff/{second}.parquet")
    assert dim_staff.get_column("staff_id").to_list() == sorted(staff_of_2.get_column("staff_id").to_list())
    assert set(dim_staff.get_column("department_name")) == {"Renamed"}
    department = read_state(lake)["department"].frame
    assert department is not None
    assert department.height == 8
    assert department.filter(pl.col("department_id") == 2).item(0, "department_name") == "Renamed"


def test_a_lost_state_race_re_reads_and_merges_both_changes(lake: Lake) -> None:
    put_raw_run(lake, RUN, small_run())
    transform(lake, RUN)
    stale = read_state(lake)
    department = stale["department"].frame
    assert department is not None
    # Another invocation renames department 3 after this one read the state...
    other = department.with_columns(
        pl.when(pl.col("department_id") == 3)
        .then(pl.lit("Theirs"))
        .otherwise("department_name")
        .alias("department_name"),
        pl.when(pl.col("department_id") == 3)
        .then(pl.col("last_updated") + timedelta(days=2))
        .otherwise("last_updated")
        .alias("last_updated"),
    )
    write_state(lake, stale, {"department": other})
    # ... and this one renames department 2 from the stale read: its ETag no longer matches.
    ours = department.with_columns(
        pl.when(pl.col("department_id") == 2)
        .then(pl.lit("Ours"))
        .otherwise("department_name")
        .alias("department_name"),
        pl.when(pl.col("department_id") == 2)
        .then(pl.col("last_updated") + timedelta(days=1))
        .otherwise("last_updated")
        .alias("last_updated"),
    )

    write_state(lake, stale, {"department": ours})

    merged = read_state(lake)["department"].frame
    assert merged is not None
    assert merged.sort("department_id").get_column("department_name").to_list() == ["Ours", "Theirs"]


def test_an_earlier_attempts_blob_with_other_bytes_is_an_error(lake: Lake) -> None:
    put_raw_run(lake, RUN, small_run())
    lake.put_once(lake.curated, f"dim_currency/{RUN}.parquet", b"left by an attempt with other inputs")

    with pytest.raises(OutputConflictError, match=f"dim_currency/{RUN}.parquet"):
        transform(lake, RUN)

    assert not lake.exists(lake.curated, f"_runs/{RUN}.json")


def test_an_unknown_run_is_a_terminal_error(lake: Lake) -> None:
    with pytest.raises(RunNotFoundError, match="no raw manifest"):
        transform(lake, RUN)
    with pytest.raises(TerminalError, match="run_id"):
        transform(lake, "../escape")


# ---------------------------------------------------------------------------------------------- bad input


def assert_quarantined(
    lake: Lake,
    caplog: pytest.LogCaptureFixture,
    outcome: Any,
    *,
    reason: str,
    file: str | None,
    columns: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The run is quarantined: record, ERROR line with the marker, no curated output, raw files kept."""
    assert outcome.status == "quarantined"
    assert outcome.load_message is None
    assert outcome.quarantine == f"_quarantine/{RUN}.json"
    record = lake.read_json(lake.curated, f"_quarantine/{RUN}.json")
    assert record["run_id"] == RUN
    assert reason in record["reason"]
    assert record["file"] == file
    assert tuple(record["columns"]) == columns
    assert record["at"].endswith("Z")
    lines = [r for r in caplog.records if QUARANTINE_MARKER in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR
    line = lines[0].getMessage()
    assert f"run={RUN}" in line and f"file={file or '-'}" in line
    for column in columns:
        assert column in line
    assert [n for n in lake.list(lake.curated, "") if not n.startswith("_quarantine/")] == []
    assert lake.exists(lake.raw, f"_runs/{RUN}.json")
    return record


def test_a_file_the_manifest_names_but_missing_quarantines(lake: Lake, caplog: pytest.LogCaptureFixture) -> None:
    tables = put_raw_files(lake, RUN, small_run())
    tables["staff"]["file"] = "staff/2026/11/22/nowhere.parquet"
    put_raw_manifest(lake, RUN, {"run_id": RUN, "extracted_at": EXTRACTED_AT, "tables": tables})

    outcome = transform(lake, RUN)

    where = f"{lake.raw}/staff/2026/11/22/nowhere.parquet"
    assert_quarantined(lake, caplog, outcome, reason="does not exist", file=where)
    assert RUN in (outcome.reason or "") and where in (outcome.reason or "")


def test_a_file_whose_hash_differs_quarantines(lake: Lake, caplog: pytest.LogCaptureFixture) -> None:
    tables = put_raw_files(lake, RUN, small_run())
    tables["currency"]["sha256"] = "0" * 64
    put_raw_manifest(lake, RUN, {"run_id": RUN, "extracted_at": EXTRACTED_AT, "tables": tables})

    outcome = transform(lake, RUN)

    assert_quarantined(
        lake,
        caplog,
        outcome,
        reason="the raw manifest says " + "0" * 64,
        file=f"{lake.raw}/{tables['currency']['file']}",
    )


def test_a_row_count_that_differs_quarantines(lake: Lake, caplog: pytest.LogCaptureFixture) -> None:
    tables = put_raw_files(lake, RUN, small_run())
    tables["staff"]["rows"] += 1
    put_raw_manifest(lake, RUN, {"run_id": RUN, "extracted_at": EXTRACTED_AT, "tables": tables})

    outcome = transform(lake, RUN)

    assert_quarantined(
        lake, caplog, outcome, reason="rows, the raw manifest says 4", file=f"{lake.raw}/{tables['staff']['file']}"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        ([1, 2], "not a JSON object"),
        ({"run_id": RUN, "extracted_at": EXTRACTED_AT}, "missing key(s) tables"),
        ({"run_id": "20261122T031500Z-other0", "extracted_at": EXTRACTED_AT, "tables": {}}, "its run_id is"),
        ({"run_id": RUN, "extracted_at": "yesterday", "tables": {}}, "extracted_at 'yesterday'"),
        ({"run_id": RUN, "extracted_at": EXTRACTED_AT, "tables": {"staff": {"file": "x"}}}, "tables.staff lacks"),
    ],
    ids=["bad-json", "not-object", "missing-key", "run-id-mismatch", "bad-time", "bad-table-entry"],
)
def test_a_malformed_manifest_quarantines(lake: Lake, caplog: pytest.LogCaptureFixture, body: Any, reason: str) -> None:
    put_raw_manifest(lake, RUN, body)

    outcome = transform(lake, RUN)

    record = assert_quarantined(lake, caplog, outcome, reason=reason, file=f"{lake.raw}/_runs/{RUN}.json")
    assert record["reason"].startswith("malformed raw manifest")


def test_a_missing_required_column_quarantines_and_a_fixed_new_run_goes_through(
    lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    """The raw files are immutable, so a fixed delivery of the same rows comes as a new run."""
    frames = small_run()
    broken = {**frames, "staff": frames["staff"].drop("email_address", "last_name")}
    put_raw_run(lake, RUN, broken)

    outcome = transform(lake, RUN)

    file = f"{lake.raw}/staff/2026/11/22/{RUN}.parquet"
    assert_quarantined(
        lake, caplog, outcome, reason="lacks required column", file=file, columns=("last_name", "email_address")
    )
    assert "email_address" in (outcome.reason or "") and RUN in (outcome.reason or "")
    assert lake.exists(lake.raw, f"staff/2026/11/22/{RUN}.parquet")
    assert transform(lake, RUN).status == "quarantined"  # still bad: quarantined again, nothing written

    fixed = "20261122T032000Z-fixed0"
    put_raw_run(lake, fixed, frames)
    assert transform(lake, fixed).status == "transformed"


def test_a_quarantined_run_is_transformed_by_a_rerun_once_its_cause_is_fixed(
    lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    """Staff of an unknown department quarantine; once a run delivers the department, the same run_id
    re-runs: the quarantine record does not block it."""
    frames = small_run()
    put_raw_run(lake, RUN, {"staff": frames["staff"]})

    outcome = transform(lake, RUN)

    assert_quarantined(lake, caplog, outcome, reason="reference a department", file=None)
    departments = "20261122T032000Z-dept00"
    put_raw_run(lake, departments, {"department": frames["department"]})
    assert transform(lake, departments).status == "transformed"

    again = transform(lake, RUN)

    assert again.status == "transformed"
    assert again.rows == {"dim_staff": frames["staff"].height}
    assert lake.exists(lake.curated, f"_quarantine/{RUN}.json")  # kept as history; the manifest rules


def test_an_extra_unknown_column_is_ignored_with_a_warning(lake: Lake, caplog: pytest.LogCaptureFixture) -> None:
    frames = small_run()
    extra = {**frames, "currency": frames["currency"].with_columns(pl.lit("x").alias("surprise"))}
    put_raw_run(lake, RUN, extra)

    with caplog.at_level(logging.WARNING):
        outcome = transform(lake, RUN)

    assert outcome.status == "transformed"
    file = f"{lake.raw}/currency/2026/11/22/{RUN}.parquet"
    expected = f"run {RUN} file {file} column surprise: not a column of source table currency; ignored"
    assert expected in outcome.warnings
    assert any(r.levelno == logging.WARNING and r.getMessage() == expected for r in caplog.records)
    assert expected in lake.read_json(lake.curated, f"_runs/{RUN}.json")["warnings"]
    assert "surprise" not in read_curated(lake, f"dim_currency/{RUN}.parquet").columns


# ---------------------------------------------------------------------------------------------- trigger


class Output(func.Out[str]):
    """The worker's output binding as the function sees it: set once, read back by the host."""

    def __init__(self) -> None:
        self.value: str | None = None

    def set(self, val: str) -> None:
        self.value = val

    def get(self) -> str:
        assert self.value is not None
        return self.value


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, lake: Lake, lake_env: dict[str, str]) -> Iterator[None]:
    for name, value in lake_env.items():
        monkeypatch.setenv(name, value)
    yield


def bindings(fn: Function) -> dict[str, Binding]:
    return {b.name: b for b in fn.get_bindings()}


def test_the_transform_function_is_bound_to_raw_manifests_and_the_load_queue(
    registered_functions: dict[str, Function],
) -> None:
    fn = registered_functions["transform"]
    trigger = bindings(fn)["manifest"].get_dict_repr()
    assert trigger["type"] == "blobTrigger"
    assert trigger["path"] == "%RAW_CONTAINER%/_runs/{name}.json"
    assert trigger["connection"] == "LAKE_STORAGE"
    assert trigger["source"] in ("EventGrid", "LogsAndContainerScan")
    output = bindings(fn)["msg"].get_dict_repr()
    assert (output["type"], output["queueName"], output["connection"]) == ("queue", "%LOAD_QUEUE%", "LAKE_STORAGE")


def test_the_trigger_transforms_the_run_and_sets_the_load_message(
    registered_functions: dict[str, Function], app_env: None, lake: Lake
) -> None:
    put_raw_run(lake, RUN, small_run())
    name = f"{lake.raw}/_runs/{RUN}.json"
    blob = func.blob.InputStream(name=name, data=lake.get(lake.raw, f"_runs/{RUN}.json"), uri=f"http://lake/{name}")
    msg = Output()

    registered_functions["transform"].get_user_function()(blob, msg)

    assert json.loads(msg.get()) == {"run_id": RUN}
    manifest = lake.read_json(lake.curated, f"_runs/{RUN}.json")
    assert set(manifest["tables"]) == {"dim_staff", "dim_currency"}
    assert all(lake.exists(lake.curated, e["file"]) for e in manifest["tables"].values())


def test_the_trigger_sends_no_load_message_for_a_quarantined_run(
    registered_functions: dict[str, Function], app_env: None, lake: Lake
) -> None:
    put_raw_manifest(lake, RUN, b"{not json")
    name = f"{lake.raw}/_runs/{RUN}.json"
    msg = Output()

    registered_functions["transform"].get_user_function()(func.blob.InputStream(name=name, data=b"{not json"), msg)

    assert msg.value is None
    assert lake.exists(lake.curated, f"_quarantine/{RUN}.json")


@pytest.mark.parametrize(
    ("name", "run_id"),
    [("raw/_runs/20261122T031500Z-7f3a9c.json", "20261122T031500Z-7f3a9c"), ("_runs/r1.json", "r1")],
)
def test_run_id_from_blob(name: str, run_id: str) -> None:
    assert run_id_from_blob(name) == run_id


@pytest.mark.parametrize("name", ["raw/sales_order/2026/11/22/r1.parquet", "raw/_runs/a/b.json", "raw/_runs/.json"])
def test_run_id_from_other_blobs_is_an_error(name: str) -> None:
    with pytest.raises(TerminalError, match=r"not a raw run manifest|run_id"):
        run_id_from_blob(name)


def test_trigger_source_setting() -> None:
    assert transform_trigger_source({}) == "LogsAndContainerScan"
    assert transform_trigger_source({"TRANSFORM_TRIGGER_SOURCE": "EventGrid"}) == "EventGrid"
    with pytest.raises(SettingsError, match="TRANSFORM_TRIGGER_SOURCE='Polling'"):
        transform_trigger_source({"TRANSFORM_TRIGGER_SOURCE": "Polling"})


def test_the_package_exports_the_stage_and_the_pure_run_on_first_use() -> None:
    import shared.transform

    assert shared.transform.transform is transform
    assert shared.transform.transform_run is transform_run
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = shared.transform.nothing
