"""Temporary probe (not committed): what two simultaneous extracts cost today."""
from __future__ import annotations

import threading

import polars as pl

from shared.extract import extract
from shared.lake import Lake
from shared.settings import Settings
from tests.extract.runs import execute, manifests, read_run, state


def test_probe(extract_settings: Settings, lake: Lake, source_db: str) -> None:
    extract(extract_settings, lake)
    seen = set(manifests(lake))
    report = []
    for attempt in range(10):
        ids = [attempt * 3 + i + 1 for i in range(3)]
        execute(source_db, f"UPDATE sales_order SET units_sold = units_sold + 1, last_updated = now() WHERE sales_order_id IN ({','.join(map(str, ids))})")
        barrier = threading.Barrier(2)
        results = []

        def one() -> None:
            barrier.wait()
            results.append(extract(extract_settings, lake))

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        new = [m for m in manifests(lake) if m not in seen]
        seen |= set(new)
        rows = []
        for m in new:
            _, frames = read_run(lake, m)
            rows += frames["sales_order"].get_column("sales_order_id").to_list() if "sales_order" in frames else []
        advanced = [r.watermark_advanced for r in results]
        # next normal cycle: re-reads?
        follow = extract(extract_settings, lake)
        frows = []
        if follow.manifest:
            seen.add(follow.manifest)
            _, frames = read_run(lake, follow.manifest)
            frows = frames["sales_order"].get_column("sales_order_id").to_list() if "sales_order" in frames else []
        missing = set(ids) - set(rows) - set(frows)
        report.append((attempt, len(new), sorted(rows), advanced, sorted(frows), sorted(missing)))
    for line in report:
        print("PROBE", line)
