"""Benchmark of reconcile against a plain COPY of the same tables, and of replay against a first load (not a test).

Usage: python -m bench.reconcile [--scale 100]   (or `python -m bench reconcile`, `make bench`)

On the source `bench_totesys_x<scale>` (bench.extract seeds or reuses it), each in a fresh child process:
1. baseline: `COPY (SELECT * FROM t) TO STDOUT` of every table in one REPEATABLE READ transaction;
2. archive: one extract into private containers, transformed, then loaded into an empty warehouse
   database: the transform's and the load's seconds are the replay baseline (a first load of the same rows);
3. reconcile: shared.reconcile.reconcile over that archive, twice: the first folds every raw file into its
   index, the second (the figure per table) reads only the source and the index; nothing differs;
4. replay: shared.replay.replay of the archive into another empty warehouse database;
5. verify: shared.verify.verify of the live warehouse against the source, in its own child (its peak RSS
   is verify's alone: it streams both sides, so it stays flat as the scale grows).
Prints per table rows, COPY and reconcile seconds, and the ratios. Results go to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from bench.extract import LOCAL, RESULTS, bench_source, child, peak_rss_mib, run_baseline, say
from shared.contract import SOURCE_TABLES
from shared.local.stack import LocalStack, with_database


def run_reconcile(env: dict[str, str], replay_url: str) -> dict[str, Any]:
    """Child: archive the source (extract, transform, first load), then time reconcile and a replay."""
    from shared.extract import extract
    from shared.lake import Lake
    from shared.load import load
    from shared.reconcile import reconcile
    from shared.replay import replay
    from shared.settings import load_settings
    from shared.transform.stage import transform

    settings = load_settings(env, needs=("source", "warehouse", "lake"))
    lake = Lake.from_settings(settings)
    lake.ensure()
    try:
        run_id = extract(settings, lake).run_id
        assert run_id is not None
        started = time.perf_counter()
        transform(lake, run_id)
        first_transform = time.perf_counter() - started
        first_load = load(settings, lake, run_id).duration_s
        folding = reconcile(settings, lake)  # the first one folds the whole archive into its index
        checked = reconcile(settings, lake)  # steady state: the source side and the index only
        replayed = replay(settings, lake, replay_url)
    finally:
        for container in (lake.raw, lake.curated):
            lake.blobs.delete_container(container)
        for queue in (lake.load_queue, f"{lake.load_queue}-poison"):
            lake.queues.delete_queue(queue)
    return {
        "rows": {t.table: t.compared for t in checked.tables},
        "seconds": {t.table: t.seconds for t in checked.tables},
        "differences": sum(t.edited + t.deleted + t.missing for t in checked.tables),
        "reconcile_s": checked.duration_s,
        "first_reconcile_s": folding.duration_s,
        "first_transform_s": first_transform,
        "first_load_s": first_load,
        "replay_s": replayed.duration_s,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_verify(source_url: str, warehouse_url: str) -> dict[str, Any]:
    """Child: `totes verify` of the live warehouse, timed, with this process's peak RSS."""
    from shared.verify import verify

    started = time.perf_counter()
    checked = verify(source_url, warehouse_url)
    return {
        "verify_s": time.perf_counter() - started,
        "differences": checked.differences,
        "peak_rss_mib": peak_rss_mib(),
    }


def report(scale: int, baseline: dict[str, Any], result: dict[str, Any], verified: dict[str, Any]) -> str:
    """The result table as text."""
    head = f"{'table':<15} {'rows':>10} {'COPY s':>8} {'reconcile s':>12} {'ratio':>6}"
    lines = [f"reconcile vs plain COPY, snapshot x{scale}", head, "-" * len(head)]
    for table in SOURCE_TABLES:
        rows, base, rec = result["rows"][table], baseline["seconds"][table], result["seconds"][table]
        lines.append(f"{table:<15} {rows:>10,} {base:>8.2f} {rec:>12.2f} {rec / max(base, 1e-6):>6.2f}")
    base, rec = sum(baseline["seconds"].values()), result["reconcile_s"]
    first = result["first_transform_s"] + result["first_load_s"]
    lines += [
        "-" * len(head),
        f"{'total':<15} {sum(result['rows'].values()):>10,} {base:>8.2f} {rec:>12.2f} {rec / base:>6.2f}"
        f"   ({result['differences']} differences)",
        f"first reconcile of this archive (folds every raw file into the index): {result['first_reconcile_s']:.2f} s "
        f"({result['first_reconcile_s'] / base:.2f}x COPY)",
        f"replay (transform + load of the archive): {result['replay_s']:.2f} s; first transform + load of the same "
        f"rows: {first:.2f} s (replay {result['replay_s'] / first:.2f}x)",
        f"verify (every star table and dim_date against the source): {verified['verify_s']:.2f} s "
        f"({verified['verify_s'] / base:.2f}x COPY of the source), {verified['differences']} differences",
        f"peak RSS: baseline {baseline['peak_rss_mib']:,.0f} MiB, "
        f"reconcile + replay {result['peak_rss_mib']:,.0f} MiB, verify {verified['peak_rss_mib']:,.0f} MiB",
    ]
    return "\n".join(lines)


def main() -> None:
    """Parse the arguments, prepare the source and two warehouses, run the children, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=int(os.environ.get("BENCH_SCALE", "100")))
    parser.add_argument("--child", choices=("baseline", "reconcile", "verify"), help=argparse.SUPPRESS)
    parser.add_argument("--payload", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        payload = json.loads(args.payload)
        if args.child == "baseline":
            result = run_baseline(payload["url"])
        elif args.child == "verify":
            result = run_verify(payload["source"], payload["warehouse"])
        else:
            result = run_reconcile(payload["env"], payload["replay_url"])
        print(json.dumps(result))
        return

    urls = LocalStack(LOCAL).up()
    url = bench_source(urls, args.scale)
    suffix = uuid.uuid4().hex[:8]
    warehouses = [f"bench_reconcile_{suffix}_{n}" for n in ("live", "replay")]
    admin = with_database(urls.warehouse_db_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in warehouses:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        say("baseline COPY ...")
        baseline = child("baseline", {"url": url}, module="bench.reconcile")
        env = {
            "TOTESYS_DB_URL": url,
            "WAREHOUSE_DB_URL": with_database(urls.warehouse_db_url, warehouses[0]),
            "LAKE_STORAGE": urls.lake_storage,
            "RAW_CONTAINER": f"bench-raw-{suffix}",
            "CURATED_CONTAINER": f"bench-curated-{suffix}",
            "LOAD_QUEUE": f"bench-load-{suffix}",
        }
        say("archive, reconcile, replay ...")
        payload = {"env": env, "replay_url": with_database(urls.warehouse_db_url, warehouses[1])}
        result = child("reconcile", payload, module="bench.reconcile")
        say("verify ...")
        verified = child("verify", {"source": url, "warehouse": env["WAREHOUSE_DB_URL"]}, module="bench.reconcile")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in warehouses:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    print(report(args.scale, baseline, result, verified))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"reconcile-x{args.scale}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    figures = {"scale": args.scale, "baseline": baseline, "reconcile": result, "verify": verified}
    out.write_text(json.dumps(figures, indent=2))
    say(f"results: {out}")


if __name__ == "__main__":
    main()
