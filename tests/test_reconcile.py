"""Reconciliation on real PostgreSQL + Azurite: silent edits of a fact, a dimension and a department feeding
dim_staff, and hard deletes of a sales order, a payment (with its transaction) and a staff member reach the
warehouse after one reconcile; `totes verify` then finds no difference."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest

from shared.cli import main
from shared.contract import SOURCE_TABLES, RawManifest, manifest_name
from shared.lake import Lake
from shared.load import load
from shared.pipeline import run_cycle
from shared.reconcile import RECONCILE_KIND, compare, index_names, reconcile
from shared.replay import replay
from shared.settings import Settings
from shared.transform.stage import transform
from shared.verify import verify
from tests.conftest import _create_database, _drop_database, with_database
from tests.load.warehouse import warehouse_rows


@pytest.fixture
def second_warehouse(admin_url: str) -> Iterator[str]:
    """URL of another empty warehouse database: the target of a replay."""
    name = _create_database(admin_url)
    yield with_database(admin_url, name)
    _drop_database(admin_url, name)


def urls(settings: Settings) -> tuple[str, str]:
    assert settings.totesys_db_url is not None and settings.warehouse_db_url is not None
    return settings.totesys_db_url.reveal(), settings.warehouse_db_url.reveal()


def test_compare_finds_edited_missing_and_deleted_ids_across_batches() -> None:
    archived = pl.DataFrame({"id": [1, 2, 3, 5, 8, 9], "md5": ["a", "b", "c", "e", "h", "i"]})
    source = iter(
        [
            pl.DataFrame({"id": [1, 2, 4], "md5": ["a", "B", "d"]}),
            pl.DataFrame({"id": [5, 6], "md5": ["e", "f"]}),
        ]
    )
    found = compare(source, archived)
    assert (found.compared, found.edited, found.missing, found.deleted) == (5, [2], [4, 6], [3, 8, 9])


@pytest.mark.slow
def test_silent_edits_and_deletes_reach_the_warehouse_after_one_reconcile_and_a_replay_equals_it(
    settings: Settings, lake: Lake, second_warehouse: str
) -> None:
    run_cycle_id = run_cycle(settings, lake).run_id
    assert run_cycle_id is not None
    source_url, warehouse_url = urls(settings)

    quiet = reconcile(settings, lake)  # the archive matches the source: the hashes agree on every row
    assert quiet.run_id is None
    assert {t.table for t in quiet.tables} == set(SOURCE_TABLES)
    assert all(t.edited == t.deleted == t.missing == 0 for t in quiet.tables)
    assert {t.table: t.compared for t in quiet.tables}["sales_order"] == 11187

    with psycopg.connect(source_url) as src:  # every change leaves last_updated as it was
        src.execute("UPDATE sales_order SET units_sold = units_sold + 1 WHERE sales_order_id = 5")
        src.execute("UPDATE design SET design_name = 'Silently renamed' WHERE design_id = 8")
        src.execute(  # the oldest department: out of the extract's lookback window
            "UPDATE department SET department_name = 'Renamed' WHERE department_id = "
            "(SELECT department_id FROM department ORDER BY last_updated LIMIT 1)"
        )
        staff, other = 1, 2
        for table in ("sales_order", "purchase_order"):
            src.execute(f"UPDATE {table} SET staff_id = %s WHERE staff_id = %s", (other, staff))
        src.execute("DELETE FROM staff WHERE staff_id = %s", (staff,))
        src.execute("DELETE FROM sales_order WHERE sales_order_id = 7")  # its transactions' sales_order_id -> NULL
        row = src.execute(
            "SELECT p.payment_id, p.transaction_id FROM payment p WHERE (SELECT count(*) FROM payment q "
            "WHERE q.transaction_id = p.transaction_id) = 1 ORDER BY p.payment_id LIMIT 1"
        ).fetchone()
        assert row is not None
        payment, txn = row
        src.execute("DELETE FROM payment WHERE payment_id = %s", (payment,))
        src.execute("DELETE FROM transaction WHERE transaction_id = %s", (txn,))

    result = reconcile(settings, lake)

    assert result.run_id is not None
    by_table = {t.table: t for t in result.tables}
    assert by_table["design"].edited == 1 and by_table["department"].edited == 1
    assert by_table["sales_order"].deleted == 1 and by_table["staff"].deleted == 1
    assert by_table["payment"].deleted == 1 and by_table["transaction"].deleted == 1
    manifest = RawManifest.from_json(result.run_id, lake.get(lake.raw, manifest_name(result.run_id)))
    assert manifest.kind == RECONCILE_KIND
    assert manifest.deleted["sales_order"] == (7,) and manifest.deleted["staff"] == (staff,)

    assert transform(lake, result.run_id).status == "transformed"
    load(settings, lake, result.run_id)

    report = verify(source_url, warehouse_url)
    assert report.ok, "\n".join(t.line() for t in report.tables if not t.ok)
    with psycopg.connect(warehouse_url) as wh:
        assert wh.execute(
            "SELECT etl_deleted_at IS NOT NULL FROM dim_staff WHERE staff_id = %s", (staff,)
        ).fetchone() == (True,)
        assert wh.execute("SELECT count(*) FROM current_sales_order WHERE sales_order_id = 7").fetchone() == (0,)
        assert wh.execute("SELECT count(*) FROM current_payment WHERE payment_id = %s", (payment,)).fetchone() == (0,)
        # the dashboard's views leave them out too
        assert wh.execute("SELECT count(*) FROM sales_order_amount WHERE sales_order_id = 7").fetchone() == (0,)
        assert wh.execute("SELECT count(*) FROM payment_detail WHERE payment_id = %s", (payment,)).fetchone() == (0,)
        invalid = wh.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated").fetchone()
        assert invalid == (0,)
    assert reconcile(settings, lake).run_id is None  # the correction run is archived: nothing left to correct
    index, folded = index_names("sales_order")  # folded: each reconcile reads only the runs it has not folded
    assert lake.read_json(lake.raw, folded) == sorted([run_cycle_id, result.run_id])
    assert pl.read_parquet(lake.get(lake.raw, index)).filter(pl.col("id") == 7).get_column("md5").to_list() == [None]

    replayed = replay(settings, lake, second_warehouse)  # the raw archive alone, into a fresh database
    assert (replayed.transformed, replayed.loaded) == (2, 2)
    again = verify(source_url, second_warehouse)
    assert again.ok, "\n".join(t.line() for t in again.tables if not t.ok)
    assert warehouse_rows(second_warehouse) == warehouse_rows(warehouse_url)


@pytest.mark.slow
def test_the_commands_reconcile_an_empty_lake_and_replay_it(
    lake_env: dict[str, str],
    lake: Lake,
    source_db: str,
    second_warehouse: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Nothing archived yet: every source row is missing, so one reconcile archives the whole source, and a replay
    of that archive gives a warehouse equal to the source. Neither needs WAREHOUSE_DB_URL (unset here), so neither
    starts a local stack."""
    for name, value in {**lake_env, "TOTESYS_DB_URL": source_db}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WAREHOUSE_DB_URL", raising=False)
    unused = tmp_path / "no-stack"
    assert main(["--local-dir", str(unused), "reconcile"]) == 0
    out = capsys.readouterr().out
    assert "sales_order     compared     11187  edited      0  deleted      0  missing  11187" in out
    assert "next: totes transform" in out
    assert main(["--local-dir", str(unused), "replay", "--into", second_warehouse]) == 0
    assert "replayed 1 of 1 runs" in capsys.readouterr().out
    assert not unused.exists()
    report = verify(source_db, second_warehouse)
    assert report.ok, "\n".join(t.line() for t in report.tables if not t.ok)
