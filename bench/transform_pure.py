"""Benchmark of the pure transform: transform_run over the snapshot scaled N times, empty state.

Usage: python -m bench.transform_pure [--scale 100] [--repeat 1]

Prints input rows, output rows, wall and CPU time (all threads), rows/s (input rows per second) and
peak RSS. The input is built before the measurement; where Linux allows it (/proc/self/clear_refs), the
peak RSS is reset after building it, so the figure is the transform's own high-water mark (input frames
included, since they are resident), otherwise it is the process's peak.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path

import polars as pl

from bench.extract import peak_rss_mib
from shared.local.source.seed import scaled_frames
from shared.transform.model import transform_run


def _rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc; 0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux >= 4.0); True if it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def main() -> None:
    """Build the scaled raw input, run transform_run --repeat times, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    started = time.perf_counter()
    raw = {table: pl.concat(list(frames)) for table, frames in scaled_frames(args.scale)}
    rows_in = sum(frame.height for frame in raw.values())
    built = time.perf_counter() - started
    print(f"input: scale {args.scale}, {rows_in:,} rows in {len(raw)} tables, built in {built:.1f} s")
    gc.collect()
    baseline = _rss_mib()
    reset = _reset_peak()

    timings, cpu = [], []
    for _ in range(args.repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = transform_run(raw, {})
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        rows_out = sum(frame.height for frame in result.tables.values())
        del result
        gc.collect()
    best, median = min(timings), statistics.median(timings)
    print(f"output: {rows_out:,} rows in 11 tables")
    print(f"transform_run: best {best:.2f} s, median {median:.2f} s of {args.repeat} (CPU best {min(cpu):.2f} s)")
    print(f"throughput: {rows_in / best:,.0f} input rows/s ({rows_out / best:,.0f} output rows/s)")
    scope = "since the input was built" if reset else "of the whole process (peak reset unavailable)"
    print(f"peak RSS {scope}: {peak_rss_mib():,.0f} MiB (RSS holding the input before the run: {baseline:,.0f} MiB)")


if __name__ == "__main__":
    main()
