"""Simulated application traffic on copies of the real snapshot: deterministic, consistent, stamped."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from psycopg import sql

from shared.cli import main
from shared.contract import SOURCE_FOREIGN_KEYS, SOURCE_SCHEMA, SOURCE_TABLES, primary_key
from shared.errors import TerminalError
from shared.local.source.seed import SNAPSHOT_COUNTS
from shared.local.source.simulate import CHANGE_KINDS, MIX, plan_size, simulate, summarise_ids
from shared.local.stack import StackUrls

AUDIT = ("created_at", "last_updated")


def _contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in key order, without the clock-stamped audit columns."""
    contents = {}
    with psycopg.connect(url) as conn:
        for table in SOURCE_TABLES:
            columns = [c for c in SOURCE_SCHEMA[table] if c not in AUDIT]
            query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.Identifier(table),
                sql.Identifier(primary_key(table)),
            )
            contents[table] = conn.execute(query).fetchall()
    return contents


def test_the_same_seed_makes_the_same_changes(source_db: str, other_source_db: str) -> None:
    first = simulate(source_db, seed=1, changes=300)
    second = simulate(other_source_db, seed=1, changes=300)
    assert first.changes == second.changes
    assert first.counts == second.counts
    assert _contents(source_db) == _contents(other_source_db)
    # and the changes are real: the sources moved away from the snapshot
    with psycopg.connect(source_db) as conn:
        row = conn.execute("SELECT count(*) FROM sales_order").fetchone()
    assert row is not None and row[0] == SNAPSHOT_COUNTS["sales_order"] + first.counts["new_sales_order"]


def test_another_seed_makes_other_changes(source_db: str) -> None:
    one = simulate(source_db, seed=1, changes=50)
    two = simulate(source_db, seed=2, changes=50)
    assert [c.kind for c in one.changes] != [c.kind for c in two.changes]


def test_counts_add_up_and_follow_the_mix(source_db: str) -> None:
    report = simulate(source_db, seed=5, changes=400)
    assert len(report.changes) == 400
    assert sum(report.counts.values()) == 400
    assert list(report.counts) == list(CHANGE_KINDS)
    for kind, count in report.counts.items():
        assert count == sum(1 for c in report.changes if c.kind == kind)
    # the common kinds land near their share of 400 (binomial: well within 3 sigma)
    for kind in CHANGE_KINDS[:4]:  # new sales and purchase orders, payments paid, sales amended
        assert abs(report.counts[kind] - 4 * MIX[kind]) < 30, (kind, report.counts)


def test_foreign_keys_and_business_rules_still_hold(source_db: str) -> None:
    simulate(source_db, seed=3, changes=300)
    with psycopg.connect(source_db) as conn:
        for (table, column), ref in SOURCE_FOREIGN_KEYS.items():
            orphans = conn.execute(
                sql.SQL("SELECT count(*) FROM {t} x WHERE x.{c} IS NOT NULL AND NOT EXISTS ").format(
                    t=sql.Identifier(table), c=sql.Identifier(column)
                )
                + sql.SQL("(SELECT 1 FROM {r} y WHERE y.{k} = x.{c})").format(
                    r=sql.Identifier(ref), k=sql.Identifier(primary_key(ref)), c=sql.Identifier(column)
                )
            ).fetchone()
            assert orphans == (0,), (table, column)
        checks = {
            "every transaction has exactly one payment": (
                "SELECT count(*) FROM transaction t WHERE (SELECT count(*) FROM payment p "
                "WHERE p.transaction_id = t.transaction_id) <> 1"
            ),
            "exactly one order side, matching the type": (
                "SELECT count(*) FROM transaction WHERE NOT ("
                "(transaction_type = 'SALE'::\"TransactionType\" AND sales_order_id IS NOT NULL "
                "AND purchase_order_id IS NULL) OR (transaction_type = 'PURCHASE'::\"TransactionType\" "
                "AND purchase_order_id IS NOT NULL AND sales_order_id IS NULL))"
            ),
            "sales are paid by SALES_RECEIPT at units x price": (
                "SELECT count(*) FROM sales_order s JOIN transaction t USING (sales_order_id) "
                "JOIN payment p USING (transaction_id) JOIN payment_type pt USING (payment_type_id) "
                "WHERE p.payment_amount <> s.units_sold * s.unit_price OR p.currency_id <> s.currency_id "
                "OR p.counterparty_id <> s.counterparty_id OR pt.payment_type_name <> 'SALES_RECEIPT'"
            ),
            "purchases are paid by PURCHASE_PAYMENT at quantity x price": (
                "SELECT count(*) FROM purchase_order o JOIN transaction t USING (purchase_order_id) "
                "JOIN payment p USING (transaction_id) JOIN payment_type pt USING (payment_type_id) "
                "WHERE p.payment_amount <> o.item_quantity * o.item_unit_price "
                "OR pt.payment_type_name <> 'PURCHASE_PAYMENT'"
            ),
            "an unpaid payment is due on its order's agreed payment date": (
                "SELECT count(*) FROM payment p JOIN transaction t USING (transaction_id) "
                "LEFT JOIN sales_order s USING (sales_order_id) LEFT JOIN purchase_order o USING (purchase_order_id) "
                "WHERE NOT p.paid AND p.payment_date <> coalesce(s.agreed_payment_date, o.agreed_payment_date)"
            ),
            "text dates stay 'YYYY-MM-DD'": (
                "SELECT count(*) FROM sales_order WHERE agreed_delivery_date !~ '^\\d{4}-\\d{2}-\\d{2}$' "
                "OR agreed_payment_date::date IS NULL"
            ),
            "department names stay distinct": (
                "SELECT count(*) FROM (SELECT department_name FROM department GROUP BY 1 HAVING count(*) > 1) d"
            ),
        }
        for rule, query in checks.items():
            assert conn.execute(query).fetchone() == (0,), rule


def test_every_changed_row_is_stamped_and_no_other(source_db: str) -> None:
    report = simulate(source_db, seed=4, changes=200)
    touched = {row for change in report.changes for row in change.rows}
    with psycopg.connect(source_db) as conn:
        stamped = set()
        for table in SOURCE_TABLES:
            key = sql.Identifier(primary_key(table))
            rows = conn.execute(
                sql.SQL("SELECT {k}, created_at, last_updated FROM {t} WHERE last_updated >= %s").format(
                    k=key, t=sql.Identifier(table)
                ),
                (report.started_at,),
            ).fetchall()
            for key_value, created_at, last_updated in rows:
                assert report.started_at <= last_updated <= report.finished_at
                if key_value > SNAPSHOT_COUNTS[table]:  # inserted by the simulation
                    assert report.started_at <= created_at <= last_updated
                else:
                    assert created_at < report.started_at
                stamped.add((table, key_value))
    # every row a change reports was stamped, and nothing else moved
    assert stamped == touched
    assert {t for t, _ in touched} >= {"sales_order", "purchase_order", "transaction", "payment"}


def test_a_paced_run_makes_the_same_changes_in_the_time_asked(source_db: str, other_source_db: str) -> None:
    started = time.monotonic()
    paced = simulate(source_db, seed=9, duration_s=1.0, rate=40)
    elapsed = time.monotonic() - started
    assert len(paced.changes) == 40
    assert 0.9 <= elapsed < 10
    assert paced.elapsed_s >= 0.99
    unpaced = simulate(other_source_db, seed=9, changes=40)
    assert paced.changes == unpaced.changes


def test_only_unpaid_payments_and_orders_are_paid_or_amended(source_db: str) -> None:
    with psycopg.connect(source_db) as conn:
        conn.execute("UPDATE payment SET paid = true")
    report = simulate(source_db, seed=1, changes=100)
    assert sum(report.counts.values()) == 100
    # with the whole snapshot paid, only what this run created can be paid or amended
    table_of = {
        "payment_paid": "payment",
        "sales_order_amended": "sales_order",
        "purchase_order_amended": "purchase_order",
    }
    settled = [c for c in report.changes if c.kind in table_of]
    assert settled
    assert all(c.id > SNAPSHOT_COUNTS[table_of[c.kind]] for c in settled)
    paid = [c.id for c in report.changes if c.kind == "payment_paid"]
    assert len(paid) == len(set(paid))  # a payment is paid once


def test_an_unseeded_database_is_refused(empty_db: str) -> None:
    with pytest.raises(TerminalError, match="totes seed"):
        simulate(empty_db, changes=1)


@pytest.mark.parametrize(
    ("changes", "duration_s", "rate", "expected"),
    [
        (10, None, None, (10, None)),
        (10, None, 5.0, (10, 0.2)),
        (None, 3.0, 2.0, (6, 0.5)),
        (None, 2.0, None, (2, 1.0)),
        (0, None, None, (0, None)),
    ],
)
def test_plan_size(changes: int | None, duration_s: float | None, rate: float | None, expected: Any) -> None:
    assert plan_size(changes, duration_s, rate) == expected


@pytest.mark.parametrize(
    ("changes", "duration_s", "rate"), [(None, None, None), (5, 1.0, None), (-1, None, None), (None, 1.0, 0.0)]
)
def test_plan_size_refuses_what_makes_no_sense(
    changes: int | None, duration_s: float | None, rate: float | None
) -> None:
    with pytest.raises(TerminalError):
        plan_size(changes, duration_s, rate)


def test_summarise_ids() -> None:
    assert summarise_ids([5, 3, 4, 9, 11, 12]) == "3..5, 9, 11..12"
    assert summarise_ids(list(range(0, 40, 2)), most=3) == "0, 2, 4, (+17 more)"
    assert summarise_ids([]) == ""


def test_cli_simulate_prints_the_report(
    source_db: str, local_stack: StackUrls, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {**local_stack.as_env(), "TOTESYS_DB_URL": source_db}.items():
        monkeypatch.setenv(name, value)
    assert main(["simulate", "--changes", "20", "--seed", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("simulation (seed 3) made 20 of 20 changes")
    assert [line.split()[0] for line in out[1:]] == list(CHANGE_KINDS)
    assert sum(int(line.split()[1]) for line in out[1:]) == 20
    assert main(["simulate"]) == 2
    assert "--changes N" in capsys.readouterr().err
