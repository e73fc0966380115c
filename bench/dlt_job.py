"""One full dlt load, source PostgreSQL -> destination PostgreSQL, timed (run by bench/dlt.py in dlt's own venv).

Usage: <dlt venv>/bin/python -I bench/dlt_job.py SOURCE_URL DEST_URL --tables a,b,... [--chunk-size N] [--parallelize]

Standalone on purpose: it imports dlt and the standard library only, never our package, so the product
does not depend on dlt. dlt's fastest documented path: `sql_database` with `backend="pyarrow"` (rows read
as Arrow tables) into the `postgres` destination with `loader_file_format="parquet"`, which dlt loads
through ADBC (adbc-driver-postgresql). Prints one JSON line: seconds (pipeline.run), seconds per dlt step,
the file format of each table's loaded jobs, dlt's version and the peak RSS of this process and its children.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any


def with_host(url: str) -> str:
    """A libpq URL with a host name, which dlt requires; a unix socket in ?host= still wins over it."""
    head, _, tail = url.partition("@")
    return f"{head}@localhost{tail}" if tail.startswith("/") else url


def sqlalchemy_url(url: str) -> str:
    """A libpq URL (postgresql://user:pw@host/db?host=/socket) as a SQLAlchemy psycopg2 URL."""
    return with_host(url).replace("postgresql://", "postgresql+psycopg2://", 1)


def peak_rss_mib() -> float:
    """The larger of this process's and its children's peak RSS, MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def run(source: str, dest: str, tables: list[str], chunk_size: int, parallelize: bool) -> dict[str, Any]:
    """Load every table of `source` into a fresh dataset of `dest`; timings and what was loaded."""
    import dlt
    from dlt.sources.sql_database import sql_database

    with tempfile.TemporaryDirectory(prefix="bench-dlt-") as work:
        os.chdir(work)  # no .dlt/ config of the caller's working directory is picked up
        pipeline = dlt.pipeline(
            pipeline_name="bench_dlt",
            pipelines_dir=str(Path(work) / "pipelines"),
            destination=dlt.destinations.postgres(credentials=with_host(dest)),
            dataset_name="totesys",
        )
        data = sql_database(
            credentials=sqlalchemy_url(source), table_names=tables, backend="pyarrow", chunk_size=chunk_size
        )
        if parallelize:  # extract the tables in parallel threads (dlt's default is one after another)
            data = data.parallelize()
        started = time.perf_counter()
        info = pipeline.run(data, loader_file_format="parquet")
        seconds = time.perf_counter() - started
        steps = {
            step.step: (step.finished_at - step.started_at).total_seconds()
            for step in pipeline.last_trace.steps
            if step.finished_at is not None
        }
        formats: dict[str, list[str]] = {}
        for package in info.load_packages:
            for job in package.jobs["completed_jobs"]:
                file = job.job_file_info
                formats.setdefault(file.table_name, []).append(file.file_format)
        failed = [job.file_path for package in info.load_packages for job in package.jobs["failed_jobs"]]
    return {
        "seconds": seconds,
        "steps": steps,
        "file_formats": formats,
        "failed_jobs": failed,
        "dataset": "totesys",
        "dlt_version": dlt.__version__,
        "chunk_size": chunk_size,
        "parallelize": parallelize,
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    """Parse the arguments, run the load, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("source")
    parser.add_argument("dest")
    parser.add_argument("--tables", required=True)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--parallelize", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    print(json.dumps(run(args.source, args.dest, args.tables.split(","), args.chunk_size, args.parallelize)))


if __name__ == "__main__":
    main()
