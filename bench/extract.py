"""Benchmark of the extract stage against plain COPY and ADBC reads of the same tables (not a test).

Usage: python -m bench.extract [--scale 100] [--batch-rows 100000] [--repeat 1]
       (or `python -m bench extract`, `make bench`; BENCH_SCALE=N sets the default scale)

Starts (or reuses) the local stack under .local and a source database `bench_totesys_x<scale>` seeded
with the snapshot x scale (reused when its counts match). Then, each in a fresh child process so its
peak RSS is its own, every table inside one REPEATABLE READ transaction, as the extract reads:
1. baseline: `COPY (SELECT * FROM t) TO STDOUT` of every table, read and dropped, in text format and
   then in binary format (the tightest floor of a read);
2. ADBC:     every table's `SELECT *` streamed into Arrow record batches by adbc-driver-postgresql
   (bench/adbc_read.py, in the bench's own venv that bench/dlt.py installs: the product does not depend
   on ADBC or pyarrow), each batch dropped once counted;
3. read:     the extract's own read, shared.extract.source.read_batches (COPY CSV -> typed polars frames),
   each frame dropped: what compares with ADBC;
4. extract:  shared.extract.extract into private containers on the stack's Azurite (a first run: every
   row), i.e. COPY CSV -> polars -> Parquet -> sha256 -> upload, manifest and state.
Prints per table rows and the seconds of each, the extract's ratio to the binary COPY, extract rows/s, the
read's ratio to ADBC, and each child's CPU and peak RSS; with --repeat N the best time of N per table.
Results also go to bench/results/extract-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from shared.contract import SOURCE_TABLES
from shared.local.source.seed import SNAPSHOT_COUNTS, seed_source, table_counts
from shared.local.stack import LocalStack, StackUrls, with_database

LOCAL = Path(".local")
RESULTS = Path(__file__).resolve().parent / "results"
ADBC_JOB = Path(__file__).resolve().parent / "adbc_read.py"


def say(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def peak_rss_mib() -> float:
    """This process's own peak resident set size in MiB: VmHWM, because ru_maxrss carries the parent's peak
    across fork and exec (a child started by a 600 MiB parent reports 600 MiB however little it uses)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_s() -> float:
    """CPU seconds (user + system, all threads) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_source(urls: StackUrls, scale: int) -> str:
    """URL of a source database holding the snapshot x scale: reused if its counts match, else seeded."""
    name = f"bench_totesys_x{scale}"
    admin = with_database(urls.totesys_db_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(urls.totesys_db_url, name)
    with psycopg.connect(url) as conn:
        counts = table_counts(conn)
    expected = {t: n * scale for t, n in SNAPSHOT_COUNTS.items()}
    if counts != expected:
        say(f"seeding {name} with the snapshot x{scale} (a few minutes at x100) ...")
        seed_source(url, scale=scale, replace=True, progress=say)
    else:
        say(f"reusing {name} ({sum(counts.values()):,} rows)")
    return url


def run_baseline(url: str) -> dict[str, Any]:
    """Child: plain COPY of every table, read and dropped, in text then in binary format; seconds and bytes
    per table (text), seconds per table (binary), CPU, peak RSS."""
    seconds: dict[str, float] = {}
    sizes: dict[str, int] = {}
    binary: dict[str, float] = {}
    cpu_before = cpu_s()
    with psycopg.connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            for form, timings in (("text", seconds), ("binary", binary)):
                for table in SOURCE_TABLES:
                    started, size = time.perf_counter(), 0
                    query = sql.SQL("COPY (SELECT * FROM {}) TO STDOUT (FORMAT {})").format(
                        sql.Identifier(table), sql.SQL(form)
                    )
                    with conn.cursor().copy(query) as copy:
                        while data := copy.read():
                            size += len(data)
                    timings[table] = time.perf_counter() - started
                    if form == "text":
                        sizes[table] = size
    return {
        "seconds": seconds,
        "bytes": sizes,
        "binary_seconds": binary,
        "cpu_s": cpu_s() - cpu_before,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_read(url: str, batch_rows: int) -> dict[str, Any]:
    """Child: the extract's read of every table (read_batches: COPY CSV -> typed polars frames), each frame
    dropped; seconds and rows per table, CPU, peak RSS."""
    from shared.extract.source import read_batches, read_catalog, source_snapshot
    from shared.settings import Need, load_settings

    seconds, rows = {}, {}
    cpu_before = cpu_s()
    source: tuple[Need] = ("source",)  # (mypy widens a literal ("source",) to tuple[str])
    settings = load_settings({"TOTESYS_DB_URL": url}, needs=source)
    with source_snapshot(settings) as conn:
        tables = read_catalog(conn)
        for table in SOURCE_TABLES:
            started, count = time.perf_counter(), 0
            for frame in read_batches(conn, tables[table], None, batch_rows):
                count += frame.height
            seconds[table], rows[table] = time.perf_counter() - started, count
    return {"seconds": seconds, "rows": rows, "cpu_s": cpu_s() - cpu_before, "peak_rss_mib": peak_rss_mib()}


def run_adbc(url: str) -> dict[str, Any]:
    """Every table read through ADBC (bench/adbc_read.py) in the bench's own venv; its JSON result."""
    from bench.dlt import dlt_python

    command = [str(dlt_python()), "-I", str(ADBC_JOB), url, "--tables", ",".join(SOURCE_TABLES)]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the ADBC read failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_extract(env: dict[str, str], batch_rows: int) -> dict[str, Any]:
    """Child: one full extract into fresh private containers (deleted after); its timings, peak RSS."""
    from shared.extract import extract
    from shared.lake import Lake
    from shared.settings import load_settings

    settings = load_settings(env, needs=("source", "lake"))
    lake = Lake.from_settings(settings)
    lake.ensure()
    cpu_before = cpu_s()
    try:
        result = extract(settings, lake, batch_rows=batch_rows)
        cpu = cpu_s() - cpu_before
    finally:
        for container in (lake.raw, lake.curated):
            lake.blobs.delete_container(container)
        for queue in (lake.load_queue, f"{lake.load_queue}-poison"):
            lake.queues.delete_queue(queue)
    return {
        "run_id": result.run_id,
        "rows": result.rows,
        "seconds": result.table_seconds,
        "duration_s": result.duration_s,
        "bytes": result.bytes,
        "cpu_s": cpu,
        "peak_rss_mib": peak_rss_mib(),
    }


def child(kind: str, payload: dict[str, Any], module: str = "bench.extract") -> dict[str, Any]:
    """Run `kind` (baseline|extract, or a child of `module`) in a fresh interpreter and return its JSON result."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--child", kind, "--payload", json.dumps(payload)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def report(
    scale: int, baseline: dict[str, Any], adbc: dict[str, Any], read: dict[str, Any], extracted: dict[str, Any]
) -> str:
    """The result table as text."""
    head = (
        f"{'table':<15} {'rows':>10} {'COPY s':>7} {'binary s':>9} {'ADBC s':>7} {'read s':>7} "
        f"{'extract s':>10} {'/binary':>8} {'rows/s':>10}"
    )
    lines = [f"extract vs plain COPY (text, binary) and ADBC, snapshot x{scale}", head, "-" * len(head)]

    def line(name: str, rows: int, text: float, binary: float, arrow: float, ours: float, ext: float) -> str:
        return (
            f"{name:<15} {rows:>10,} {text:>7.2f} {binary:>9.2f} {arrow:>7.2f} {ours:>7.2f} "
            f"{ext:>10.2f} {ext / binary:>8.2f} {rows / ext:>10,.0f}"
        )

    for table in SOURCE_TABLES:
        lines.append(
            line(
                table,
                extracted["rows"][table],
                baseline["seconds"][table],
                baseline["binary_seconds"][table],
                adbc["seconds"][table],
                read["seconds"][table],
                extracted["seconds"][table],
            )
        )
    total = {key: sum(run["seconds"].values()) for key, run in (("text", baseline), ("adbc", adbc), ("read", read))}
    binary, ext = sum(baseline["binary_seconds"].values()), extracted["duration_s"]
    rows = sum(extracted["rows"].values())
    lines += [
        "-" * len(head),
        line("total", rows, total["text"], binary, total["adbc"], total["read"], ext),
        f"extract total includes catalog, manifest and state; Parquet written: {extracted['bytes'] / 2**20:,.1f} MiB",
        f"extract / binary COPY out: {ext / binary:.2f}x; the extract's read (COPY CSV -> typed polars frames) / "
        f"ADBC record batches (adbc-driver-postgresql {adbc['version']}): {total['read'] / total['adbc']:.2f}x",
        f"client CPU (user+sys, all threads): baseline {baseline['cpu_s']:.2f} s (text and binary), ADBC "
        f"{adbc['cpu_s']:.2f} s, read {read['cpu_s']:.2f} s, extract {extracted['cpu_s']:.2f} s",
        f"peak RSS: baseline {baseline['peak_rss_mib']:,.0f} MiB, ADBC {adbc['peak_rss_mib']:,.0f} MiB, "
        f"read {read['peak_rss_mib']:,.0f} MiB, extract {extracted['peak_rss_mib']:,.0f} MiB",
    ]
    return "\n".join(lines)


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of several runs per table (and in total); the highest peak RSS."""
    merged = dict(runs[0])
    for key in ("seconds", "binary_seconds"):
        if key in merged:
            merged[key] = {t: min(r[key][t] for r in runs) for t in SOURCE_TABLES}
    if "duration_s" in merged:
        merged["duration_s"] = min(r["duration_s"] for r in runs)
    merged["cpu_s"] = min(r["cpu_s"] for r in runs)
    merged["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    return merged


def main() -> None:
    """Parse the arguments, prepare the source, run baseline and extract children, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.extract", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=int(os.environ.get("BENCH_SCALE", "100")))
    parser.add_argument("--batch-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best time is shown")
    parser.add_argument("--child", choices=("baseline", "read", "extract"), help=argparse.SUPPRESS)
    parser.add_argument("--payload", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        payload = json.loads(args.payload)
        if args.child == "baseline":
            result = run_baseline(payload["url"])
        elif args.child == "read":
            result = run_read(payload["url"], payload["batch_rows"])
        else:
            result = run_extract(payload["env"], payload["batch_rows"])
        print(json.dumps(result))
        return

    urls = LocalStack(LOCAL).up()
    url = bench_source(urls, args.scale)
    baselines, adbcs, reads, extracts = [], [], [], []
    for attempt in range(1, args.repeat + 1):
        say(f"run {attempt}/{args.repeat}: baseline COPY, text and binary ...")
        baselines.append(child("baseline", {"url": url}))
        say(f"run {attempt}/{args.repeat}: ADBC read ...")
        adbcs.append(run_adbc(url))
        say(f"run {attempt}/{args.repeat}: the extract's read (no Parquet) ...")
        reads.append(child("read", {"url": url, "batch_rows": args.batch_rows}))
        suffix = uuid.uuid4().hex[:8]
        env = {
            "TOTESYS_DB_URL": url,
            "LAKE_STORAGE": urls.lake_storage,
            "RAW_CONTAINER": f"bench-raw-{suffix}",
            "CURATED_CONTAINER": f"bench-curated-{suffix}",
            "LOAD_QUEUE": f"bench-load-{suffix}",
        }
        say(f"run {attempt}/{args.repeat}: extract ...")
        extracts.append(child("extract", {"env": env, "batch_rows": args.batch_rows}))
    baseline, extracted = best(baselines), best(extracts)
    print(report(args.scale, baseline, best(adbcs), best(reads), extracted))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"extract-x{args.scale}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    runs = {"baseline": baselines, "adbc": adbcs, "read": reads, "extract": extracts}
    out.write_text(json.dumps({"scale": args.scale, **runs}, indent=2))
    say(f"results: {out}")


if __name__ == "__main__":
    main()
