"""End-to-end benchmark of `totes run --once` against a raw COPY out + COPY in baseline (not a test).

Usage: python -m bench.pipeline [--scale 100] [--changes 1000] [--goal-rounds 3]   (or `python -m bench pipeline`)

On the local stack (.local), with the source `bench_totesys_x<scale>` (seeded once, reused):
1. baseline: every source table COPY (binary) out of the source and straight into a bare table of the same
   columns (no keys, no indexes) in a scratch database: the least any pipeline can do to move the rows;
   measured before the full cycle and again after the incremental one, the faster kept (the tightest floor);
2. full cycle: extract -> transform -> load (shared.pipeline.run_cycle) from a clone of the source into
   fresh containers and an empty warehouse, timed per stage;
3. incremental cycle: `--changes` simulated application changes on the clone, then one more cycle on the
   now x<scale> warehouse;
4. issue 15 item 3 (skipped with --goal-rounds 0): on a clone of the x10 source, a first load, then
   --goal-rounds cycles (default 3) each after 1,000 simulated changes and one after 100,000, each against
   its goal (0.5 s and 2 s; the median of the 1,000-change cycles).
Each step runs in its own child process, so each peak RSS is its own. Prints a table and writes
bench/results/pipeline-*.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.extract import bench_source, peak_rss_mib, say
from shared.contract import SOURCE_TABLES
from shared.local.source.seed import schema_sql
from shared.local.stack import LocalStack, StackUrls, with_database

RESULTS = Path(__file__).resolve().parent / "results"
# issue 15: seconds of one cycle after N simulated changes on the x10 source
INCREMENTAL_GOALS = {(10, 100_000): 2.0, (10, 1_000): 0.5}
GOAL_SCALE = 10


def create_db(urls: StackUrls, name: str, template: str | None = None) -> str:
    """Create database `name` (optionally a copy of `template`) on the stack; return its URL."""
    with psycopg.connect(with_database(urls.totesys_db_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        conn.execute(query)
    return with_database(urls.totesys_db_url, name)


def drop_db(urls: StackUrls, name: str) -> None:
    """Drop database `name` from the stack."""
    with psycopg.connect(with_database(urls.totesys_db_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def baseline(source: str, target: str) -> dict[str, Any]:
    """Child: COPY every table out of `source` and into bare tables in `target`; seconds, rows, peak RSS."""
    with psycopg.connect(target, autocommit=True) as dst:
        dst.execute(schema_sql().encode())
        for table in SOURCE_TABLES:  # bare tables: drop every key, index and constraint
            cons = dst.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass ORDER BY contype = 'p'", (table,)
            ).fetchall()
            for (name,) in cons:
                dst.execute(
                    sql.SQL("ALTER TABLE {} DROP CONSTRAINT {} CASCADE").format(
                        sql.Identifier(table), sql.Identifier(name)
                    )
                )
        dst.execute("DROP INDEX IF EXISTS transaction_sales_order_id_key, transaction_purchase_order_id_key")
        dst.execute("DROP INDEX IF EXISTS payment_transaction_id_key")
    started = time.perf_counter()
    rows = 0
    with psycopg.connect(source) as src, psycopg.connect(target) as dst:
        for table in SOURCE_TABLES:
            out = sql.SQL("COPY (SELECT * FROM {}) TO STDOUT (FORMAT binary)").format(sql.Identifier(table))
            into = sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(sql.Identifier(table))
            with src.cursor().copy(out) as reader, dst.cursor().copy(into) as writer:
                for block in reader:
                    writer.write(block)
            row = dst.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            rows += int(row[0]) if row else 0
        dst.commit()
    return {"seconds": time.perf_counter() - started, "rows": rows, "peak_rss_mib": peak_rss_mib()}


def cycle(env: dict[str, str], changes: int, seed: int = 1) -> dict[str, Any]:
    """Child: optionally simulate `changes` on the source (deterministic per `seed`), then one run_cycle;
    timings, rows, peak RSS."""
    from shared.lake import Lake
    from shared.local.source.simulate import simulate
    from shared.pipeline import run_cycle
    from shared.settings import load_settings

    settings = load_settings(env, needs=("source", "warehouse", "lake"))
    if changes:
        simulate(env["TOTESYS_DB_URL"], seed=seed, changes=changes)
    started = time.perf_counter()
    summary = run_cycle(settings, Lake.from_settings(settings))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "stages": summary.durations,
        "extracted_rows": sum(summary.extract.rows.values()),
        "loaded_rows": summary.load.rows if summary.load else {},
        "lag_s": summary.load.lag_s if summary.load else None,
        "load_timings": summary.load.timings if summary.load else {},
        "peak_rss_mib": peak_rss_mib(),
    }


def _child_main(conn: Any, target: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> None:
    try:
        conn.send(target(*args))
    except BaseException:
        conn.send({"error": traceback.format_exc()})
        raise


def in_child(target: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run target(*args) in a fresh process (clean peak RSS) and return its result; raise if it failed."""
    ctx = multiprocessing.get_context("spawn")
    parent, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(child_end, target, args))
    proc.start()
    child_end.close()  # else recv() would wait forever for a child that died (e.g. killed for memory)
    try:
        result: dict[str, Any] = parent.recv()
    except EOFError:
        result = {"error": "it sent no result"}
    proc.join()
    if "error" in result:
        raise RuntimeError(f"{target.__name__} failed in its child process (exit {proc.exitcode}): {result['error']}")
    return result


def scales_of(args: argparse.Namespace, default: list[int]) -> list[int]:
    """Scales from a repeated --scale and/or --scales a,b (argparse); `default` when none is given."""
    scales = list(args.scale or [])
    scales += [int(s) for s in (args.scales or "").split(",") if s.strip()]
    return scales or default


def database_name(url: str) -> str:
    """The database name of a libpq URL."""
    return url.split("?")[0].rsplit("/", 1)[1]


def floor(urls: StackUrls, source: str) -> dict[str, Any]:
    """The floor, in a child: binary COPY of every table of `source` into bare tables of a scratch database."""
    name = f"bench_copy_{uuid.uuid4().hex[:8]}"
    try:
        return in_child(baseline, source, create_db(urls, name))
    finally:
        drop_db(urls, name)


@contextmanager
def scratch_pipeline(urls: StackUrls, source: str) -> Iterator[dict[str, str]]:
    """Settings env of a pipeline on a clone of `source`, an empty warehouse and fresh lake containers; all
    dropped on exit."""
    tag = uuid.uuid4().hex[:8]
    names = [f"bench_source_{tag}", f"bench_warehouse_{tag}"]
    try:
        yield {
            "TOTESYS_DB_URL": create_db(urls, names[0], template=database_name(source)),
            "WAREHOUSE_DB_URL": create_db(urls, names[1]),
            "LAKE_STORAGE": urls.lake_storage,
            "RAW_CONTAINER": f"raw-{tag}",
            "CURATED_CONTAINER": f"curated-{tag}",
            "LOAD_QUEUE": f"load-jobs-{tag}",
        }
    finally:
        for name in names:
            drop_db(urls, name)
        from azure.storage.blob import BlobServiceClient
        from azure.storage.queue import QueueServiceClient

        blobs = BlobServiceClient.from_connection_string(urls.lake_storage)
        for container in (f"raw-{tag}", f"curated-{tag}"):
            if blobs.get_container_client(container).exists():
                blobs.delete_container(container)
        queues = QueueServiceClient.from_connection_string(urls.lake_storage)
        for queue in queues.list_queues(name_starts_with=f"load-jobs-{tag}"):
            queues.delete_queue(queue.name)


def incremental_goals(urls: StackUrls, rounds: int) -> dict[str, Any]:
    """Issue 15 item 3 on a clone of the x10 source: a first load (untimed here), then `rounds` cycles each
    after 1,000 simulated changes, then one cycle after 100,000; each in its own child process."""
    source = bench_source(urls, GOAL_SCALE)
    with scratch_pipeline(urls, source) as env:
        say(f"item 3 (x{GOAL_SCALE}): the first load ...")
        in_child(cycle, env, 0)
        after: dict[int, list[dict[str, Any]]] = {}
        for changes, runs in ((1_000, rounds), (100_000, 1)):
            after[changes] = []
            for attempt in range(runs):
                say(f"item 3 (x{GOAL_SCALE}): {changes:,} changes, then one cycle ({attempt + 1}/{runs}) ...")
                seed = 1000 + 100 * len(after) + attempt  # each round its own changes
                after[changes].append(in_child(cycle, env, changes, seed))
    return {"scale": GOAL_SCALE, "cycles": {str(changes): runs for changes, runs in after.items()}}


def goal_lines(goals: dict[str, Any]) -> list[str]:
    """The item 3 figures against their goals (the median cycle where there are several)."""
    lines = []
    for changes, runs in goals["cycles"].items():
        seconds = [r["seconds"] for r in runs]
        median = sorted(seconds)[len(seconds) // 2]
        goal = INCREMENTAL_GOALS[(goals["scale"], int(changes))]
        each = " / ".join(f"{s:.2f}" for s in seconds)
        load = " / ".join(f"{r['stages'].get('load', 0):.2f}" for r in runs)
        verdict = "ok" if median <= goal else "over goal"
        lines.append(
            f"goal: one cycle after {int(changes):,} changes at x{goals['scale']} <= {goal} s: {each} s"
            f"{f' (median {median:.2f})' if len(seconds) > 1 else ''}, load {load} s: {verdict}"
        )
    return lines


def main() -> None:
    """Run the three measurements and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument(
        "--goal-rounds",
        type=int,
        default=3,
        help="issue 15 item 3 on the x10 source: cycles after 1,000 changes (then one after 100,000); 0 skips it",
    )
    args = parser.parse_args()

    urls = LocalStack(Path(".local")).up()
    source = bench_source(urls, args.scale)
    say("baseline: COPY out + COPY in of every table ...")
    floors = [floor(urls, source)]
    with scratch_pipeline(urls, source) as env:
        say("full cycle: totes run --once on an empty warehouse ...")
        full = in_child(cycle, env, 0)
        say(f"incremental cycle: {args.changes} simulated changes, then one cycle ...")
        incremental = in_child(cycle, env, args.changes)
    # The floor once more after the run, the faster of the two kept: the tightest floor of the same minutes, so
    # that a slow moment of the machine during the floor does not flatter the ratio.
    say("baseline again: COPY out + COPY in of every table ...")
    floors.append(floor(urls, source))
    base = min(floors, key=lambda f: float(f["seconds"]))

    def stages(r: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())

    lines = [
        f"end to end at x{args.scale} ({base['rows']:,} source rows)",
        f"{'step':<28}{'seconds':>9}{'vs baseline':>13}{'peak RSS MiB':>14}  stages (s)",
        f"{'baseline COPY out + in':<28}{base['seconds']:>9.2f}{1:>12.2f}x{base['peak_rss_mib']:>14.0f}"
        f"  the faster of {' and '.join(format(f['seconds'], '.2f') for f in floors)} s (before and after the run)",
        f"{'totes run --once (full)':<28}{full['seconds']:>9.2f}{full['seconds'] / base['seconds']:>12.2f}x"
        f"{full['peak_rss_mib']:>14.0f}  {stages(full)}",
        f"{f'incremental ({args.changes} changes)':<28}{incremental['seconds']:>9.2f}{'':>13}"
        f"{incremental['peak_rss_mib']:>14.0f}  {stages(incremental)}; {incremental['extracted_rows']:,} rows"
        f" extracted, lag {incremental['lag_s']:.1f} s",
    ]
    goals = incremental_goals(urls, args.goal_rounds) if args.goal_rounds > 0 else None
    if goals is not None:
        lines += goal_lines(goals)
    elif (args.scale, args.changes) in INCREMENTAL_GOALS:  # this run's own cycle is one of item 3's
        lines += goal_lines({"scale": args.scale, "cycles": {str(args.changes): [incremental]}})
    print("\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = {
        "scale": args.scale,
        "baseline": base,
        "floors": floors,
        "full": full,
        "incremental": incremental,
        "goals": goals,
    }
    (RESULTS / f"pipeline-{stamp}.json").write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
