"""The cost curve: time and peak RSS of each stage of a first full load, per source scale (not a test).

Usage: python -m bench curve [--scales 1,10,100 | --scale N ...] [--cycle]
       x1000 (~48M source rows, ~20 GB of disk at its peak: source, clone, lake and warehouse) is opt-in:
       `--scales 1,10,100,1000`.

For each scale, on the source `bench_totesys_x<scale>` (seeded once, reused):
1. floor: binary COPY out of every source table + binary COPY in to bare tables (bench.pipeline.baseline);
2. a first full load from a clone of the source into fresh containers and an empty warehouse, the stages
   in order, each in its own child process so each peak RSS is that stage's own: extract
   (shared.extract.extract), transform (shared.transform.stage.transform), load (shared.load.load);
3. with --cycle, also the whole `run_cycle` (`totes run --once`) in one child: its time and peak RSS.
Prints a table (seconds and peak RSS per stage, total vs floor, microseconds per source row, source size)
and writes bench/results/curve-*.json.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.extract import bench_source, peak_rss_mib, say
from bench.pipeline import RESULTS, cycle, floor, in_child, scales_of, scratch_pipeline
from shared.local.stack import LocalStack, StackUrls

STAGES = ("extract", "transform", "load")
RSS_GOAL_MIB = 2048  # issue 15: a x1000 first load in 2 GB


def run_extract(env: dict[str, str]) -> dict[str, Any]:
    """Child: a first full extract of the clone into the fresh lake; run id, seconds, rows, peak RSS."""
    from shared.extract import extract
    from shared.lake import Lake
    from shared.settings import load_settings

    settings = load_settings(env, needs=("source", "lake"))
    lake = Lake.from_settings(settings)
    lake.ensure()
    started = time.perf_counter()
    result = extract(settings, lake)
    seconds = time.perf_counter() - started
    return {"run_id": result.run_id, "seconds": seconds, "rows": result.rows, "peak_rss_mib": peak_rss_mib()}


def run_transform(env: dict[str, str], run_id: str) -> dict[str, Any]:
    """Child: transform run `run_id` to the star schemas; seconds, rows, peak RSS (raises if quarantined)."""
    from shared.lake import Lake
    from shared.settings import load_settings
    from shared.transform.stage import transform

    lake = Lake.from_settings(load_settings(env, needs=("source", "lake")))  # mypy widens ("lake",) to tuple[str]
    started = time.perf_counter()
    outcome = transform(lake, run_id)
    seconds = time.perf_counter() - started
    if outcome.status == "quarantined":
        raise RuntimeError(f"run {run_id} was quarantined by transform: {outcome.reason}")
    return {"seconds": seconds, "rows": outcome.rows, "phases": outcome.phases, "peak_rss_mib": peak_rss_mib()}


def run_load(env: dict[str, str], run_id: str) -> dict[str, Any]:
    """Child: load run `run_id` into the empty warehouse; seconds, rows, steps, peak RSS."""
    from shared.lake import Lake
    from shared.load import load
    from shared.settings import load_settings

    settings = load_settings(env, needs=("warehouse", "lake"))
    started = time.perf_counter()
    result = load(settings, Lake.from_settings(settings), run_id)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": result.rows, "timings": result.timings, "peak_rss_mib": peak_rss_mib()}


def database_mib(url: str) -> float:
    """Size on disk of the database at `url`, MiB."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) / 2**20 if row else 0.0


def measure(urls: StackUrls, scale: int, whole_cycle: bool) -> dict[str, Any]:
    """Floor, then extract, transform and load each in its own child (and optionally run_cycle) at x`scale`."""
    source = bench_source(urls, scale)
    say(f"x{scale}: floor (binary COPY out + COPY in) ...")
    result: dict[str, Any] = {"scale": scale, "source_mib": database_mib(source), "floor": floor(urls, source)}
    result["source_rows"] = result["floor"]["rows"]
    with scratch_pipeline(urls, source) as env:
        say(f"x{scale}: extract ...")
        result["extract"] = in_child(run_extract, env)
        run_id = result["extract"]["run_id"]
        say(f"x{scale}: transform {run_id} ...")
        result["transform"] = in_child(run_transform, env, run_id)
        say(f"x{scale}: load {run_id} ...")
        result["load"] = in_child(run_load, env, run_id)
    if whole_cycle:
        with scratch_pipeline(urls, source) as env:
            say(f"x{scale}: the whole run_cycle in one process ...")
            result["cycle"] = in_child(cycle, env, 0)
    result["seconds"] = sum(result[stage]["seconds"] for stage in STAGES)
    result["peak_rss_mib"] = max(result[stage]["peak_rss_mib"] for stage in STAGES)
    return result


def report(results: list[dict[str, Any]]) -> str:
    """The curve as a text table."""
    head = (
        f"{'scale':<6}{'rows':>12}{'floor s':>9}{'extract s':>11}{'MiB':>6}{'transform s':>13}{'MiB':>6}"
        f"{'load s':>8}{'MiB':>6}{'total s':>9}{'/floor':>8}{'us/row':>8}{'source MiB':>12}"
    )
    lines = ["cost curve: first full load, each stage in its own process (seconds, peak RSS MiB)", head]
    lines.append("-" * len(head))
    for r in results:
        stages = "".join(
            f"{r[s]['seconds']:>{w}.2f}{r[s]['peak_rss_mib']:>6.0f}" for s, w in zip(STAGES, (11, 13, 8), strict=True)
        )
        lines.append(
            f"x{r['scale']:<5}{r['source_rows']:>12,}{r['floor']['seconds']:>9.2f}{stages}{r['seconds']:>9.2f}"
            f"{r['seconds'] / r['floor']['seconds']:>7.2f}x{r['seconds'] / r['source_rows'] * 1e6:>8.1f}"
            f"{r['source_mib']:>12,.0f}"
        )
    lines.append("-" * len(head))
    for r in results:
        if "cycle" in r:
            c = r["cycle"]
            lines.append(
                f"x{r['scale']}: whole run_cycle in one process {c['seconds']:.2f} s, peak RSS "
                f"{c['peak_rss_mib']:,.0f} MiB (goal at x1000: <= {RSS_GOAL_MIB:,} MiB)"
            )
    top = max(results, key=lambda r: r["scale"])
    verdict = "within" if top["peak_rss_mib"] <= RSS_GOAL_MIB else "over"
    lines.append(
        f"largest stage peak RSS at x{top['scale']}: {top['peak_rss_mib']:,.0f} MiB, {verdict} the "
        f"{RSS_GOAL_MIB:,} MiB goal set for x1000"
    )
    return "\n".join(lines)


def main() -> None:
    """Parse the arguments, measure each scale, print the curve and write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench curve", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=int, action="append", help="repeatable; default 1, 10 and 100")
    parser.add_argument("--scales", help="comma-separated, e.g. 1,10,100 (1000 is opt-in)")
    parser.add_argument("--cycle", action="store_true", help="also run the whole run_cycle in one process")
    args = parser.parse_args()

    urls = LocalStack(Path(".local")).up()
    results = [measure(urls, scale, args.cycle) for scale in scales_of(args, [1, 10, 100])]
    print(report(results))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"curve-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"results": results}, indent=2, default=str))
    say(f"results: {out}")


if __name__ == "__main__":
    main()
