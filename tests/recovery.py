"""Helpers of the fault-injection suite: source changes that propagate, a crash injected into the real lake
or load at a write boundary, and the final check (`verify`: every column of every table equals the source)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from shared.extract import extract
from shared.lake import Lake
from shared.local.source.simulate import simulate
from shared.settings import Settings
from shared.verify import verify


class Crash(Exception):
    """The injected fault: an instance dies at this line."""


def urls(settings: Settings) -> tuple[str, str]:
    """(source URL, warehouse URL) of `settings`."""
    assert settings.totesys_db_url is not None and settings.warehouse_db_url is not None
    return settings.totesys_db_url.reveal(), settings.warehouse_db_url.reveal()


def assert_warehouse_equals_source(settings: Settings) -> None:
    """`totes verify`: every column of the current rows of every warehouse table equals the source."""
    report = verify(*urls(settings))
    assert report.ok, "\n".join(t.line() for t in report.tables if not t.ok)


def change(settings: Settings, seed: int, statements: tuple[str, ...] = ()) -> None:
    """Simulated application traffic (seeded), then `statements` (department renames, staff moves) stamped now."""
    source_url, _ = urls(settings)
    simulate(source_url, seed=seed, changes=20)
    with psycopg.connect(source_url) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]  # literal test SQL


def rename(department_id: int, name: str, location: str) -> str:
    """A department rename (name and location): every staff member of it changes in dim_staff."""
    return (
        f"UPDATE department SET department_name = '{name}', location = '{location}', last_updated = localtimestamp "
        f"WHERE department_id = {department_id}"
    )


def move(staff_id: int, department_id: int) -> str:
    """A staff member moved to another department."""
    return (
        f"UPDATE staff SET department_id = {department_id}, last_updated = localtimestamp WHERE staff_id = {staff_id}"
    )


def edit_staff_of(department_id: int, first_name: str) -> str:
    """An edit of the first staff member of a department (which a later rename of it re-emits)."""
    return (
        f"UPDATE staff SET first_name = '{first_name}', last_updated = localtimestamp WHERE staff_id = "
        f"(SELECT min(staff_id) FROM staff WHERE department_id = {department_id})"
    )


def two_runs(settings: Settings, lake: Lake, seed: int) -> tuple[str, str]:
    """Two extracted runs A and B whose dimension changes depend on their order: A edits a staff member of
    department 2 and moves one into it, B renames it (re-emitting its staff) and more. Transformed B before A,
    B's dim_staff rows (newer) would carry the staff member as before A's edit."""
    change(settings, seed, (edit_staff_of(2, f"Ann{seed}"), rename(2, f"Ops{seed}", f"Leeds{seed}"), move(1, 2)))
    first = extract(settings, lake).run_id
    change(settings, seed + 1, (rename(2, f"Ops{seed}b", f"York{seed}"), move(3, 2), rename(1, f"Sales{seed}", "Hull")))
    second = extract(settings, lake).run_id
    assert first is not None and second is not None and first < second
    return first, second


def crash_on(lake: Lake, method: str, when: Callable[..., bool], monkeypatch: Any) -> None:
    """Make `lake.<method>` raise Crash (instead of writing) on the first call for which `when(*args)` holds."""
    real = getattr(lake, method)
    fired = []

    def faulty(*args: Any, **kwargs: Any) -> Any:
        if not fired and when(*args):
            fired.append(args)
            raise Crash(f"{method}{args[:2]}")
        return real(*args, **kwargs)

    monkeypatch.setattr(lake, method, faulty)


def ledger(settings: Settings) -> list[str]:
    """The run ids in etl.load_run, in run order."""
    with psycopg.connect(urls(settings)[1]) as conn:
        return [r[0] for r in conn.execute("SELECT run_id FROM etl.load_run ORDER BY run_id")]
