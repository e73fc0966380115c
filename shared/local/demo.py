"""`totes demo`: the main job on the local stack: seed if empty, a cycle, simulated changes, another
cycle, then the warehouse counts and the history the second run created (printed on stdout)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from shared.cli import print_counts, print_cycle
from shared.local.source.seed import seed_source, table_counts
from shared.local.source.simulate import simulate
from shared.pipeline import run_cycle
from shared.settings import Settings
from shared.warehouse import report
from shared.warehouse.connect import connect_warehouse


def run_demo(settings: Settings, *, changes: int, seed: int, say: Callable[[str], None]) -> None:
    """Two cycles around `changes` simulated source changes (deterministic per `seed`); progress to `say`."""
    assert settings.totesys_db_url is not None and settings.warehouse_db_url is not None
    source_url = settings.totesys_db_url.reveal()
    with psycopg.connect(source_url) as conn:
        counts = table_counts(conn)
    if all(c <= 0 for c in counts.values()):
        say("== seeding totesys with the real 2024-11-15 snapshot")
        counts = seed_source(source_url, progress=say)
    print_counts("source (totesys)", counts)

    say("== cycle 1: extract -> transform -> load")
    print_cycle(run_cycle(settings, progress=say))

    say(f"== simulating {changes} application changes on totesys (seed {seed})")
    simulated = simulate(source_url, seed=seed, changes=changes, progress=say)
    print("simulated changes: " + ", ".join(f"{k} {v}" for k, v in simulated.counts.items()))

    say("== cycle 2: only the changed rows flow through")
    second = run_cycle(settings, progress=say)
    print_cycle(second)

    with connect_warehouse(settings) as conn:
        print_counts("warehouse", report.table_counts(conn))
        if second.run_id is not None:
            print_history(conn, second.run_id)


def print_history(conn: psycopg.Connection, run_id: str) -> None:
    """What `run_id` added to each fact table, and every version of one order it amended."""
    print(f"history created by run {run_id}:")
    history = report.run_history(conn, run_id)
    for h in history:
        print(f"  {h.table:<20} {h.rows:>6,} rows, {h.new_versions:>5,} new versions")
    example = next((h for h in history if h.examples), None)
    if example is not None:
        natural_id = example.examples[0][0]
        print(f"  e.g. {example.table} id {natural_id}, every version (oldest first):")
        for version in report.versions(conn, example.table, natural_id):
            shown = {k: v for k, v in version.items() if not k.startswith("etl_")}
            print("    " + ", ".join(f"{k}={v}" for k, v in list(shown.items())[1:10]))
