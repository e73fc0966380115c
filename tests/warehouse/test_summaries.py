"""The dashboard's summary tables (shared/warehouse/summaries.py) on a warehouse the pipeline loaded: after a
first load, a run of changed orders and payments (one order's agreed payment date moved, which changes its
payments' due date) and a reconcile run that deletes an order and a payment, each summary equals one built
from scratch, and every page shows the same figures from the summaries as from the facts."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest
from psycopg import sql

import shared.load as load_module
from shared.contract import TABLE_KEYS
from shared.dashboard import queries
from shared.lake import Lake
from shared.load import load
from shared.local.source.simulate import simulate
from shared.pipeline import run_cycle
from shared.reconcile import reconcile
from shared.settings import Settings
from shared.transform.stage import transform
from shared.warehouse import staging, summaries
from shared.warehouse.figures import Figures
from shared.warehouse.summaries import SUMMARIES


def _url(secret: object) -> str:
    assert secret is not None
    return secret.reveal()  # type: ignore[attr-defined, no-any-return]


def summary_rows(conn: psycopg.Connection, table: str) -> list[tuple[object, ...]]:
    rows = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))).fetchall()
    return sorted(rows, key=repr)


def assert_summaries_exact(url: str) -> None:
    """Each summary equals a rebuild from the facts (done in a transaction that is rolled back), and each
    star page's figures are the same read from the summaries and from the facts."""
    with psycopg.connect(url) as conn:
        kept = {table: summary_rows(conn, table) for table in SUMMARIES.values()}
        assert all(kept.values()), "the load filled every summary"
        conn.execute("TRUNCATE sales_summary, purchase_summary, payment_summary")
        for table, function in summaries.FIGURES.items():
            conn.execute(
                sql.SQL("INSERT INTO {} SELECT * FROM {}(NULL)").format(
                    sql.Identifier(table), sql.Identifier("etl", function)
                )
            )
        for table in SUMMARIES.values():
            assert summary_rows(conn, table) == kept[table], table
        conn.rollback()

        # Each figures function has two queries, all ids (NULL) and some: given every id, the second gives the
        # rows of the first, and leaves the session's parallel workers as it found them.
        workers = "SELECT current_setting('max_parallel_workers_per_gather')"
        before = conn.execute(workers).fetchone()
        for fact, summary in SUMMARIES.items():
            every = sql.SQL("SELECT array_agg(DISTINCT {}) FROM {}").format(
                sql.Identifier(TABLE_KEYS[fact]), sql.Identifier(fact)
            )
            function = sql.Identifier("etl", summaries.FIGURES[summary])
            per_id = conn.execute(sql.SQL("SELECT * FROM {}(({}))").format(function, every)).fetchall()
            assert sorted(per_id, key=repr) == kept[summary], f"{summary}: the figures of every id"
            assert conn.execute(workers).fetchone() == before

        filters = queries.default_filters(conn)
        assert filters.whole_range
        for page in ("sales", "purchases", "payments"):
            read = " ".join(q for _, q, _ in queries.page_queries(page, filters))
            facts = ("sales_order_amount", "purchase_order_amount", "payment_detail")
            assert "_summary" in read and not any(view in read for view in facts), f"{page}: read from the summaries"
            shown = {}
            for use_summaries in (True, False):
                picked = dataclasses.replace(filters, use_summaries=use_summaries)
                shown[use_summaries] = [conn.execute(q, p).fetchall() for _, q, p in queries.page_queries(page, picked)]
            assert shown[True] == shown[False], page


@pytest.mark.slow
def test_summaries_stay_exact_through_changes_and_deletes(settings: Settings, lake: Lake) -> None:
    source, warehouse = _url(settings.totesys_db_url), _url(settings.warehouse_db_url)
    run_cycle(settings, lake)  # a first load: copied straight in, the summaries built whole
    assert_summaries_exact(warehouse)

    simulate(source, seed=11, changes=80)
    with psycopg.connect(source) as src:  # an order whose payment is unpaid: its due date moves
        order = src.execute(
            "SELECT t.sales_order_id FROM transaction t JOIN payment p USING (transaction_id)"
            " WHERE NOT p.paid AND t.sales_order_id IS NOT NULL ORDER BY t.sales_order_id LIMIT 1"
        ).fetchone()
        assert order is not None
        src.execute(
            "UPDATE sales_order SET agreed_payment_date = '2020-01-01', last_updated = now() WHERE sales_order_id = %s",
            order,
        )
        src.execute(
            "UPDATE payment SET paid = NOT paid, last_updated = now() WHERE payment_id ="
            " (SELECT min(payment_id) FROM payment)"
        )
        # a currency id gets another code: the summaries are per code, so this run rebuilds them
        src.execute("UPDATE currency SET currency_code = 'EUR', last_updated = now() WHERE currency_code = 'GBP'")
    run_cycle(settings, lake)
    assert_summaries_exact(warehouse)
    with psycopg.connect(warehouse) as conn:
        due = conn.execute(
            "SELECT count(*) FROM payment_summary WHERE figure = 'by_due_date' AND due_date = '2020-01-01'"
        ).fetchone()
        assert due is not None and due[0] > 0, "the moved agreed payment date reached the payments' due dates"
        codes = conn.execute("SELECT DISTINCT currency_code FROM sales_summary ORDER BY 1").fetchall()
        assert ("GBP",) not in codes, "the renamed currency's figures moved to its new code"

    with psycopg.connect(source) as src:  # the date moves on (a run of changes, not a rebuild): its row empties
        src.execute(
            "UPDATE sales_order SET agreed_payment_date = '2019-02-03', last_updated = now() WHERE sales_order_id = %s",
            order,
        )
    run_cycle(settings, lake)
    assert_summaries_exact(warehouse)
    with psycopg.connect(warehouse) as conn:
        dates = conn.execute(
            "SELECT DISTINCT due_date::text FROM payment_summary WHERE figure = 'by_due_date'"
            " AND due_date IN ('2019-02-03', '2020-01-01')"
        ).fetchall()
        assert dates == [("2019-02-03",)], "the emptied due date's row is deleted, the new one added"

    with psycopg.connect(source) as src:  # hard deletes, found by a reconcile
        src.execute("DELETE FROM sales_order WHERE sales_order_id = 9")
        src.execute("DELETE FROM payment WHERE payment_id = (SELECT max(payment_id) FROM payment)")
    run_id = reconcile(settings, lake).run_id
    assert run_id is not None
    assert transform(lake, run_id).status == "transformed"
    load(settings, lake, run_id)
    assert_summaries_exact(warehouse)


FILENODES = "SELECT relname::text, relfilenode FROM pg_class WHERE relname = ANY(%s) ORDER BY 1"


@pytest.mark.slow
@pytest.mark.parametrize("large", [False, True], ids=["few ids: withdrawn and restored", "a large share: rebuilt"])
def test_a_run_touching_a_large_share_of_a_fact_rebuilds_that_summary_alone(
    settings: Settings, lake: Lake, monkeypatch: pytest.MonkeyPatch, large: bool
) -> None:
    source, warehouse = _url(settings.totesys_db_url), _url(settings.warehouse_db_url)
    run_cycle(settings, lake)
    with psycopg.connect(warehouse) as conn:
        before = dict(conn.execute(FILENODES, (list(SUMMARIES.values()),)).fetchall())
    if large:  # every touched fact counts as a large share
        monkeypatch.setattr(summaries, "REBUILD_IDS", 1)
        monkeypatch.setattr(summaries, "REBUILD_RATIO", 10**9)
    with psycopg.connect(source) as src:  # three paid-for purchase orders change: their payments are touched too
        src.execute(
            "UPDATE purchase_order SET item_quantity = item_quantity + 1, last_updated = now() WHERE purchase_order_id"
            " IN (SELECT t.purchase_order_id FROM transaction t JOIN payment USING (transaction_id)"
            " WHERE t.purchase_order_id IS NOT NULL ORDER BY 1 LIMIT 3)"
        )
    run_cycle(settings, lake)

    assert_summaries_exact(warehouse)
    with psycopg.connect(warehouse) as conn:
        after = dict(conn.execute(FILENODES, (list(SUMMARIES.values()),)).fetchall())
    rebuilt = {table for table in before if after[table] != before[table]}  # a TRUNCATE gives a new file
    assert rebuilt == ({"purchase_summary", "payment_summary"} if large else set())


@pytest.mark.slow
@pytest.mark.parametrize("streamed", [False, True], ids=["files read whole", "files streamed in slices"])
def test_a_first_load_computes_its_summaries_from_the_rows_it_copies_as_a_rebuild_would(
    settings: Settings, lake: Lake, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    source, warehouse = _url(settings.totesys_db_url), _url(settings.warehouse_db_url)
    with psycopg.connect(source) as src:
        # In the snapshot an unpaid payment's date is its order's agreed payment date: move those apart, for sales
        # and purchase orders; and give two currency ids one code (the summaries are per code).
        for table, key in (("sales_order", "sales_order_id"), ("purchase_order", "purchase_order_id")):
            src.execute(
                sql.SQL(
                    "UPDATE {table} SET agreed_payment_date = (agreed_payment_date::date + {key} % 40)::text"
                    " WHERE {key} IN (SELECT t.{key} FROM transaction t JOIN payment p USING (transaction_id)"
                    " WHERE NOT p.paid)"
                ).format(table=sql.Identifier(table), key=sql.Identifier(key))
            )
        src.execute("UPDATE currency SET currency_code = 'EUR' WHERE currency_code = 'GBP'")
    computed: list[str] = []
    restore = summaries.restore

    def spied(conn: psycopg.Connection, run: summaries.Touched, figures: object = None, deleted: object = ()) -> None:
        assert isinstance(figures, Figures)
        computed.extend(figures.ready())
        restore(conn, run, figures, ())

    monkeypatch.setattr(summaries, "restore", spied)
    if streamed:  # the payments and transactions (15,836 rows each) are downloaded and read in slices, as at x1000
        monkeypatch.setattr(load_module, "PREFETCH_ROWS", 12_000)
        monkeypatch.setattr(staging, "STREAM_ROWS", 12_000)
        monkeypatch.setattr(staging, "SLICE_ROWS", 5_000)
    run_cycle(settings, lake)

    assert computed == list(SUMMARIES.values()), "each summary computed from the copied rows"
    assert_summaries_exact(warehouse)
    with psycopg.connect(warehouse) as conn:
        due = conn.execute(
            "SELECT count(*) FROM payment_summary p WHERE figure = 'by_due_date' AND due_date IS NOT NULL"
            " AND NOT EXISTS (SELECT FROM fact_payment f WHERE f.payment_date = p.due_date)"
        ).fetchone()
        assert due is not None and due[0] > 0, "some payments are due on a day no payment is dated"
