"""Fault injection: an extract killed at each of its write boundaries, then the next one; the lake must then
hold every source row in its latest version, and each change archived exactly once (checked against the
source with SQL)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from shared.contract import SOURCE_TABLES, primary_key
from shared.extract import extract
from shared.lake import Lake
from shared.settings import Settings
from tests.extract.runs import execute, manifests, read_run

# Changes in three tables: a run writes 3 data files, the pending state, the manifest, the final state.
CHANGES = (
    "UPDATE staff SET first_name = 'Crash', last_updated = now() WHERE staff_id IN (2, 5)",
    "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = now() WHERE sales_order_id = 7",
    "UPDATE payment SET paid = NOT paid, last_updated = now() WHERE payment_id IN (1, 2, 3)",
)
CHANGED = {"staff": 2, "sales_order": 1, "payment": 3}
WRITES = len(CHANGED) + 3
BOUNDARIES = [(when, k) for k in range(1, WRITES + 1) for when in ("before", "after")]


class InjectedCrash(Exception):
    """The extract's process dies here (no handler in the stage catches it)."""


def crash_at(lake: Lake, monkeypatch: pytest.MonkeyPatch, when: str, k: int) -> list[str]:
    """Make the k-th write of the lake (put_once or write_versioned) crash `when` ("before"/"after") it;
    the names of the writes made, in order."""
    writes: list[str] = []

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        def write(container: str, name: str, *args: Any, **kwargs: Any) -> Any:
            if when == "before" and len(writes) + 1 == k:
                raise InjectedCrash(f"before write {k} ({name})")
            result = method(container, name, *args, **kwargs)
            writes.append(name)
            if when == "after" and len(writes) == k:
                raise InjectedCrash(f"after write {k} ({name})")
            return result

        return write

    monkeypatch.setattr(lake, "put_once", wrap(lake.put_once))
    monkeypatch.setattr(lake, "write_versioned", wrap(lake.write_versioned))
    return writes


def source_versions(url: str, table: str) -> set[tuple[int, datetime]]:
    """(key, last_updated) of every row of a source table, read with SQL."""
    query = sql.SQL("SELECT {}, last_updated FROM {}").format(sql.Identifier(primary_key(table)), sql.Identifier(table))
    with psycopg.connect(url) as conn:
        return {(int(k), v) for k, v in conn.execute(query).fetchall()}


def archived_versions(lake: Lake) -> dict[str, Counter[tuple[int, datetime]]]:
    """Per table, how many committed runs (those with a manifest) archived each (key, last_updated)."""
    counts: dict[str, Counter[tuple[int, datetime]]] = {t: Counter() for t in SOURCE_TABLES}
    for name in manifests(lake):
        _, frames = read_run(lake, name)
        for table, frame in frames.items():
            counts[table].update(frame.select(primary_key(table), "last_updated").iter_rows())
    return counts


@pytest.mark.parametrize(("when", "k"), BOUNDARIES, ids=[f"{w}-write-{k}" for w, k in BOUNDARIES])
def test_a_crash_at_any_write_then_the_next_extract_archives_each_change_exactly_once(
    extract_settings: Settings, lake: Lake, source_db: str, monkeypatch: pytest.MonkeyPatch, when: str, k: int
) -> None:
    extract(extract_settings, lake)
    baseline = archived_versions(lake)
    execute(source_db, *CHANGES)

    with monkeypatch.context() as patch:
        writes = crash_at(lake, patch, when, k)
        with pytest.raises(InjectedCrash):
            extract(extract_settings, lake)
    assert len(writes) == (k - 1 if when == "before" else k)

    extract(extract_settings, lake)  # the next scheduled run
    assert extract(extract_settings, lake).run_id is None  # and then the lake is caught up

    archived = archived_versions(lake)
    for table in SOURCE_TABLES:
        source = source_versions(source_db, table)
        assert set(archived[table]) >= source, table  # every current row, in its latest version
        new = archived[table] - baseline[table]
        assert set(new) <= source, table
        assert all(n == 1 for n in new.values()), f"{table}: a change archived twice: {new}"
        assert len(new) == CHANGED.get(table, 0), table
