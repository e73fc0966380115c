"""Source deletions reach the warehouse as etl_deleted_at (real PostgreSQL + Azurite): a deleted sales order,
payment (and its transaction) and staff member are marked, the current_* views leave them out, the foreign
keys still hold and `totes verify` finds no difference."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from shared.contract import JSON_TYPE, RawManifest, manifest_name
from shared.lake import Lake
from shared.load import load
from shared.pipeline import run_cycle
from shared.settings import Settings
from shared.transform.stage import transform
from shared.verify import verify

DELETION_RUN = "20991231T235959Z-de1e7e"


def urls(settings: Settings) -> tuple[str, str]:
    assert settings.totesys_db_url is not None and settings.warehouse_db_url is not None
    return settings.totesys_db_url.reveal(), settings.warehouse_db_url.reveal()


def deletion_run(lake: Lake, deleted: dict[str, tuple[int, ...]]) -> str:
    """A raw run that carries only deletions (what a reconcile run writes for ids gone from the source)."""
    at = datetime.now(UTC).isoformat()
    manifest = RawManifest(DELETION_RUN, at, (), kind="reconcile", deleted=deleted)
    lake.put_once(lake.raw, manifest_name(DELETION_RUN), manifest.to_json(), JSON_TYPE)
    return DELETION_RUN


@pytest.mark.slow
def test_deleted_order_payment_and_staff_are_marked_and_the_warehouse_still_verifies(
    settings: Settings, lake: Lake
) -> None:
    assert run_cycle(settings, lake).run_id is not None
    source_url, warehouse_url = urls(settings)
    with psycopg.connect(source_url) as src:
        row = src.execute(
            "SELECT s.staff_id, (SELECT min(staff_id) FROM staff WHERE staff_id <> s.staff_id) FROM staff s "
            "ORDER BY (SELECT count(*) FROM sales_order o WHERE o.staff_id = s.staff_id) LIMIT 1"
        ).fetchone()
        assert row is not None
        staff, other = row
        # ON DELETE RESTRICT: the staff member's orders go to a colleague first (a normal, stamped change)
        for table in ("sales_order", "purchase_order"):
            src.execute(f"UPDATE {table} SET staff_id = %s, last_updated = now() WHERE staff_id = %s", (other, staff))
        src.execute("DELETE FROM staff WHERE staff_id = %s", (staff,))
        order = 7
        settled = [
            r[0] for r in src.execute("SELECT transaction_id FROM transaction WHERE sales_order_id = %s", (order,))
        ]
        src.execute("DELETE FROM sales_order WHERE sales_order_id = %s", (order,))  # its transactions' id -> NULL
        src.execute("UPDATE transaction SET last_updated = now() WHERE transaction_id = ANY(%s)", (settled,))
        payment, txn = src.execute(
            "SELECT p.payment_id, p.transaction_id FROM payment p WHERE (SELECT count(*) FROM payment q "
            "WHERE q.transaction_id = p.transaction_id) = 1 ORDER BY p.payment_id LIMIT 1"
        ).fetchone() or (0, 0)
        src.execute("DELETE FROM payment WHERE payment_id = %s", (payment,))
        src.execute("DELETE FROM transaction WHERE transaction_id = %s", (txn,))
    assert run_cycle(settings, lake).run_id is not None  # the reassigned orders and the orphaned transactions

    run = deletion_run(lake, {"staff": (staff,), "sales_order": (order,), "payment": (payment,), "transaction": (txn,)})
    assert transform(lake, run).status == "transformed"
    result = load(settings, lake, run)
    assert result.rows["dim_staff.deleted"] == 1 and result.rows["fact_payment.deleted"] == 1

    with psycopg.connect(warehouse_url) as wh:
        marked = {
            table: wh.execute(f"SELECT count(*) FROM {table} WHERE etl_deleted_at IS NOT NULL").fetchone()
            for table in ("dim_staff", "fact_sales_order", "fact_payment", "dim_transaction")
        }
        assert marked == {t: (1,) for t in marked}
        assert wh.execute(
            "SELECT count(*) FROM current_sales_order WHERE sales_order_id = %s", (order,)
        ).fetchone() == (0,)
        versions = wh.execute("SELECT count(*) FROM fact_sales_order WHERE sales_order_id = %s", (order,)).fetchone()
        assert versions is not None and versions[0] >= 1  # its history stays
        invalid = wh.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated").fetchone()
        assert invalid == (0,)
    report = verify(source_url, warehouse_url)
    assert report.ok, "\n".join(t.line() for t in report.tables if not t.ok)

    again = load(settings, lake, run)  # a re-delivery changes nothing
    assert again.already_loaded
