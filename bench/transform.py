"""Benchmark of the transform stage end to end on Azurite: read raw Parquet + build + write curated.

Usage: python -m bench.transform [--scale 100] [--keep]

Starts (or reuses) the local stack under .local, writes one raw run holding the snapshot scaled N times
(shared.local.source.seed.scaled_frames) into private bench containers, then times `transform(lake, run_id)`:
manifest and hash checks, Parquet reads, transform_run, the curated writes, state and manifest. Prints
rows in and out, the time per phase, rows/s and the peak RSS of the transform (where Linux allows
resetting the peak after the raw run was written; otherwise the process's peak). The containers are
deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from shared.lake import Lake
from shared.local.source.seed import scaled_frames
from shared.local.stack import LocalStack
from shared.settings import load_settings
from shared.transform.stage import transform


def _status_mib(field: str) -> float:
    """A /proc/self/status memory field (VmRSS, VmHWM) in MiB; 0 where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux >= 4.0); True if it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def write_raw_run(lake: Lake, run_id: str, scale: int) -> tuple[int, int]:
    """Write the snapshot x `scale` as one raw run (files, then the manifest); its rows and Parquet bytes."""
    tables = {}
    rows = size = 0
    for table, frames in scaled_frames(scale):
        frame = pl.concat(list(frames))
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd")
        data = buffer.getvalue()
        file = f"{table}/{run_id[:4]}/{run_id[4:6]}/{run_id[6:8]}/{run_id}.parquet"
        lake.put_once(lake.raw, file, data)
        newest = frame.get_column("last_updated").max()
        tables[table] = {
            "file": file,
            "rows": frame.height,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "window": {"after": None, "max_last_updated": newest.isoformat() if newest else None},  # type: ignore[union-attr]
            "columns": [{"name": c, "type": str(t)} for c, t in frame.schema.items()],
        }
        rows += frame.height
        size += len(data)
    body = {
        "run_id": run_id,
        "extracted_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "lookback_seconds": 600,
        "tables": tables,
    }
    lake.put_once(lake.raw, f"_runs/{run_id}.json", json.dumps(body).encode())
    return rows, size


def main() -> None:
    """Write the scaled raw run, transform it once, print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the bench containers for inspection")
    args = parser.parse_args()

    urls = LocalStack(Path(".local")).up()
    suffix = uuid.uuid4().hex[:8]
    settings = load_settings(
        {
            "LAKE_STORAGE": urls.lake_storage,
            "RAW_CONTAINER": f"bench-raw-{suffix}",
            "CURATED_CONTAINER": f"bench-curated-{suffix}",
            "LOAD_QUEUE": f"bench-load-{suffix}",
        }
    )
    lake = Lake.from_settings(settings)
    lake.ensure()
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-bench{suffix[:2]}"
    try:
        started = time.perf_counter()
        rows_in, raw_bytes = write_raw_run(lake, run_id, args.scale)
        written = time.perf_counter() - started
        print(
            f"raw run {run_id}: scale {args.scale}, {rows_in:,} rows, {raw_bytes / 2**20:,.1f} MiB Parquet, "
            f"written in {written:.1f} s"
        )
        gc.collect()
        baseline = _status_mib("VmRSS")
        reset = _reset_peak()

        outcome = transform(lake, run_id)

        peak = _status_mib("VmHWM")
        rows_out = sum(outcome.rows.values())
        out_bytes = sum(
            lake.blobs.get_blob_client(lake.curated, f"{t}/{run_id}.parquet").get_blob_properties().size
            for t in outcome.rows
        )
        print(
            f"status: {outcome.status}; output {rows_out:,} rows in {len(outcome.rows)} tables, "
            f"{out_bytes / 2**20:,.1f} MiB Parquet"
        )
        for table, rows in outcome.rows.items():
            print(f"  {table:<20} {rows:>12,}")
        phases = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in outcome.phases.items())
        print(f"transform: {outcome.duration_s:.2f} s end to end ({phases})")
        print(
            f"throughput: {rows_in / outcome.duration_s:,.0f} input rows/s "
            f"({rows_out / outcome.duration_s:,.0f} output rows/s)"
        )
        scope = "of the transform" if reset else "of the whole process (peak reset unavailable)"
        print(f"peak RSS {scope}: {peak:,.0f} MiB (RSS before it: {baseline:,.0f} MiB)")
    finally:
        if args.keep:
            print(f"kept containers {lake.raw}, {lake.curated}")
        else:
            for container in (lake.raw, lake.curated):
                lake.blobs.delete_container(container)
            for queue in (lake.load_queue, f"{lake.load_queue}-poison"):
                lake.queues.delete_queue(queue)


if __name__ == "__main__":
    main()
