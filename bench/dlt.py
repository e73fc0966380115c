"""dlt side by side with `totes run --once` on the same source, in the same run, with the COPY floor (not a test).

Usage: python -m bench dlt [--scale 10 --scale 100 | --scales 10,100] [--repeat 1] [--chunk-size 100000]
       [--parallelize]

dlt is installed by this benchmark into its own venv, .local/bench-venvs/dlt (reused while its requirements
are unchanged), so the product never depends on it; bench/dlt_job.py runs there, importing dlt only. For each
scale, on the source `bench_totesys_x<scale>` (seeded once, reused), interleaved `--repeat` times, the best
time of each side kept:
1. floor: binary COPY out of every source table + binary COPY in to bare tables (bench.pipeline.baseline);
2. totes: a full first `run_cycle` (extract, transform to the star schemas, load) from a clone of the source
   into fresh containers and an empty warehouse;
3. dlt:   `sql_database` (backend="pyarrow") -> `postgres` destination with loader_file_format="parquet"
   (loaded through ADBC), every table copied as it is, from a clone of the source into an empty database;
   the row count of every table in dlt's destination is checked against the source.
Prints a table (ours/dlt, goal <= 0.5; each side / floor) and writes bench/results/dlt-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.extract import bench_source, say
from bench.pipeline import (
    RESULTS,
    create_db,
    cycle,
    database_name,
    drop_db,
    floor,
    in_child,
    scales_of,
    scratch_pipeline,
)
from shared.contract import SOURCE_TABLES
from shared.local.source.seed import table_counts
from shared.local.stack import LocalStack, StackUrls

VENV = Path(".local/bench-venvs/dlt")
REQUIREMENTS = (
    "dlt[postgres,parquet,sql_database]==1.31.*",
    "adbc-driver-postgresql",
    "pyarrow",
    "sqlalchemy",
    "psycopg2-binary",
)
JOB = Path(__file__).resolve().parent / "dlt_job.py"
GOAL = 0.5  # issue 15: our full run, star schemas included, at most half dlt's time


def dlt_python(venv: Path = VENV) -> Path:
    """The python of dlt's own venv, created and installed first when missing or its requirements changed."""
    python, marker = venv / "bin" / "python", venv / "requirements.txt"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    say(f"creating {venv} and installing {' '.join(REQUIREMENTS)} (a minute or two) ...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True)
    marker.write_text(wanted)
    return python


def dataset_counts(url: str, schema: str) -> dict[str, int]:
    """Rows per source table in dlt's dataset `schema` of database `url` (-1 where the table is missing)."""
    counts = {}
    with psycopg.connect(url) as conn:
        for table in SOURCE_TABLES:
            exists = conn.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone()
            if not exists or exists[0] is None:
                counts[table] = -1
                continue
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(*map(sql.Identifier, (schema, table))))
            counts[table] = int(row.fetchone()[0])  # type: ignore[index]
    return counts


def run_dlt(urls: StackUrls, source: str, python: Path, chunk_size: int, parallelize: bool) -> dict[str, Any]:
    """dlt's full load of a clone of `source` into an empty database, in its venv; checked row counts."""
    tag = uuid.uuid4().hex[:8]
    names = [f"bench_dlt_source_{tag}", f"bench_dlt_dest_{tag}"]
    try:
        clone = create_db(urls, names[0], template=database_name(source))
        dest = create_db(urls, names[1])
        command = [str(python), "-I", str(JOB), clone, dest, "--tables", ",".join(SOURCE_TABLES)]
        command += ["--chunk-size", str(chunk_size)] + (["--parallelize"] if parallelize else [])
        done = subprocess.run(command, check=False, capture_output=True, text=True, env=dict(os.environ))
        if done.returncode:
            raise RuntimeError(f"dlt job failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["rows"] = dataset_counts(dest, result["dataset"])
    finally:
        for name in names:
            drop_db(urls, name)
    return result


def check_dlt(result: dict[str, Any], expected: dict[str, int]) -> None:
    """Raise unless dlt loaded every source row, every table through Parquet, with no failed job."""
    wrong = {t: (n, result["rows"][t]) for t, n in expected.items() if result["rows"][t] != n}
    not_parquet = {t: f for t in SOURCE_TABLES if (f := result["file_formats"].get(t)) and set(f) != {"parquet"}}
    if wrong or not_parquet or result["failed_jobs"]:
        raise RuntimeError(
            f"dlt did not load the source as expected: rows (source, dlt) {wrong}, non-Parquet tables "
            f"{not_parquet}, failed jobs {result['failed_jobs']}"
        )


def fastest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the least seconds, with the highest peak RSS of all runs and every time kept."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    best["all_seconds"] = [r["seconds"] for r in runs]
    return best


def measure(urls: StackUrls, scale: int, repeat: int, python: Path, chunk_size: int, parallel: bool) -> dict[str, Any]:
    """Floor, totes and dlt on the x`scale` source, interleaved `repeat` times; the best of each."""
    source = bench_source(urls, scale)
    with psycopg.connect(source) as conn:
        expected = table_counts(conn)
    runs: dict[str, list[dict[str, Any]]] = {"floor": [], "totes": [], "dlt": []}
    for attempt in range(1, repeat + 1):
        say(f"x{scale} run {attempt}/{repeat}: floor (binary COPY out + COPY in) ...")
        runs["floor"].append(floor(urls, source))
        say(f"x{scale} run {attempt}/{repeat}: totes run --once on an empty warehouse ...")
        with scratch_pipeline(urls, source) as env:
            runs["totes"].append(in_child(cycle, env, 0))
        say(f"x{scale} run {attempt}/{repeat}: dlt sql_database (pyarrow) -> postgres (parquet, ADBC) ...")
        runs["dlt"].append(run_dlt(urls, source, python, chunk_size, parallel))
        check_dlt(runs["dlt"][-1], expected)
    return {"scale": scale, "source_rows": sum(expected.values()), "runs": runs} | {
        side: fastest(side_runs) for side, side_runs in runs.items()
    }


def report(results: list[dict[str, Any]], repeat: int) -> str:
    """The side-by-side table as text."""
    head = (
        f"{'scale':<6}{'rows':>11}{'floor s':>9}{'totes s':>9}{'dlt s':>8}{'totes/dlt':>11}"
        f"{'totes/floor':>13}{'dlt/floor':>11}{'totes MiB':>11}{'dlt MiB':>9}"
    )
    title = f"first full load, same source, same run (best of {repeat}); goal totes/dlt <= {GOAL}"
    lines = [title, head, "-" * len(head)]
    for r in results:
        base, ours, dlt = r["floor"]["seconds"], r["totes"]["seconds"], r["dlt"]["seconds"]
        verdict = "ok" if ours / dlt <= GOAL else "over goal"
        lines.append(
            f"x{r['scale']:<5}{r['source_rows']:>11,}{base:>9.2f}{ours:>9.2f}{dlt:>8.2f}{ours / dlt:>10.2f}x"
            f"{ours / base:>12.2f}x{dlt / base:>10.2f}x{r['totes']['peak_rss_mib']:>11.0f}"
            f"{r['dlt']['peak_rss_mib']:>9.0f}  {verdict}"
        )
    lines.append("-" * len(head))
    for r in results:
        ours = ", ".join(f"{k} {v:.2f}" for k, v in r["totes"]["stages"].items())
        dlt = ", ".join(f"{k} {v:.2f}" for k, v in r["dlt"]["steps"].items() if k != "run")
        lines.append(f"x{r['scale']}: totes {ours} (star schemas built) | dlt {dlt} (tables copied as they are)")
    dlt_run = results[0]["dlt"]
    lines.append(
        f"dlt {dlt_run['dlt_version']}: sql_database backend=pyarrow chunk_size={dlt_run['chunk_size']}"
        f"{' parallelized' if dlt_run['parallelize'] else ''} -> postgres loader_file_format=parquet (ADBC);"
        " every source row checked in dlt's destination"
    )
    return "\n".join(lines)


def main() -> None:
    """Parse the arguments, measure each scale, print the table and write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench dlt", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=int, action="append", help="repeatable; default 10 and 100")
    parser.add_argument("--scales", help="comma-separated, e.g. 10,100")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs of each side; the best is shown")
    parser.add_argument("--chunk-size", type=int, default=100_000, help="dlt sql_database chunk_size")
    parser.add_argument("--parallelize", action="store_true", help="extract dlt's tables in parallel")
    args = parser.parse_args()

    python = dlt_python()
    urls = LocalStack(Path(".local")).up()
    results = [
        measure(urls, s, args.repeat, python, args.chunk_size, args.parallelize) for s in scales_of(args, [10, 100])
    ]
    print(report(results, args.repeat))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"dlt-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"repeat": args.repeat, "results": results}, indent=2, default=str))
    say(f"results: {out}")


if __name__ == "__main__":
    main()
