"""Benchmark of the dashboard: each page's queries and a full page render on a x<scale> warehouse (not a test).

Usage: python -m bench.dashboard [--scale 100] [--repeat 3]   (or `python -m bench dashboard`)

On the local stack (.local): the source `bench_totesys_x<scale>` (seeded once, reused, as for the other
benchmarks) and a warehouse `bench_dashboard_x<scale>` filled by one `totes run --once` from it (reused
when its ledger holds a run; --reload makes a new one). Then, per page of shared/dashboard:
1. queries: every query of the page (shared.dashboard.queries) with the default filters, run directly,
   each timed (best of --repeat) with its row count;
2. render: the whole page run by Streamlit's AppTest (the app's script, its queries, the charts' specs),
   timed cold (cache cleared) and warm (cached, what a second viewer gets), after one untimed render
   that pays the process's imports.
Prints a table and writes bench/results/dashboard-*.json.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.extract import bench_source, say
from bench.pipeline import RESULTS, create_db
from shared.dashboard.queries import Page
from shared.local.stack import LocalStack, StackUrls, with_database


def bench_warehouse(urls: StackUrls, scale: int, reload: bool) -> str:
    """URL of a warehouse loaded from the x`scale` source: reused when its ledger has a run, else loaded."""
    name = f"bench_dashboard_x{scale}"
    url = with_database(urls.warehouse_db_url, name)
    admin = with_database(urls.totesys_db_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
    if exists and not reload:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT to_regclass('etl.load_run') IS NOT NULL AND EXISTS (SELECT FROM etl.load_run)"
            ).fetchone()
        if row and row[0]:
            say(f"reusing warehouse {name}")
            return url
    source = bench_source(urls, scale)
    url = create_db(urls, name)
    from shared.lake import Lake
    from shared.pipeline import run_cycle
    from shared.settings import load_settings

    tag = uuid.uuid4().hex[:8]
    env = {
        "TOTESYS_DB_URL": source,
        "WAREHOUSE_DB_URL": url,
        "LAKE_STORAGE": urls.lake_storage,
        "RAW_CONTAINER": f"raw-{tag}",
        "CURATED_CONTAINER": f"curated-{tag}",
        "LOAD_QUEUE": f"load-jobs-{tag}",
    }
    settings = load_settings(env, needs=("source", "warehouse", "lake"))
    lake = Lake.from_settings(settings)
    say(f"loading {name}: totes run --once from the x{scale} source ...")
    started = time.perf_counter()
    try:
        run_cycle(settings, lake)
    finally:
        for container in (lake.raw, lake.curated):
            lake.blobs.delete_container(container)
        for queue in (lake.load_queue, f"{lake.load_queue}-poison"):
            lake.queues.delete_queue(queue)
    say(f"loaded in {time.perf_counter() - started:.1f} s")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # what autovacuum does soon after a first load
    return url


def time_queries(url: str, page: Page, repeat: int) -> list[dict[str, Any]]:
    """Every query of `page` with the default filters: best seconds of `repeat` runs and rows returned."""
    from shared.dashboard import queries
    from shared.dashboard.sources import connect

    results = []
    with connect(url) as conn:  # the dashboard's own session settings
        filters = queries.default_filters(conn)
        for name, query, params in queries.page_queries(page, filters):
            best, rows = float("inf"), 0
            for _ in range(repeat):
                started = time.perf_counter()
                rows = len(conn.execute(query, params).fetchall())
                best = min(best, time.perf_counter() - started)
            results.append({"query": name, "seconds": best, "rows": rows})
    return results


def time_render(url: str, page: str, repeat: int, params: dict[str, str] | None = None) -> dict[str, float]:
    """A full render of `page` by Streamlit's AppTest: cold (caches cleared) and warm (best of `repeat`);
    `params`: more query parameters (the app's filters, e.g. from/to)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from shared.dashboard.server import APP

    def render() -> float:
        at = AppTest.from_file(str(APP), default_timeout=120)
        at.query_params["page"] = page
        for name, value in (params or {}).items():
            at.query_params[name] = value
        started = time.perf_counter()
        at.run()
        seconds = time.perf_counter() - started
        if at.exception:
            raise RuntimeError(f"page {page} failed: {at.exception[0].message}")
        return seconds

    st.cache_data.clear()
    cold = render()
    warm = min(render() for _ in range(repeat))
    return {"cold_s": cold, "warm_s": warm}


def main() -> None:
    """Prepare the warehouse, time every page, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reload", action="store_true", help="load a new warehouse even if one exists")
    args = parser.parse_args()

    from shared.dashboard import queries

    urls = LocalStack(Path(".local")).up()
    url = bench_warehouse(urls, args.scale, args.reload)
    with psycopg.connect(url) as conn:
        facts = {
            t: int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0])  # type: ignore[index]
            for t in ("fact_sales_order", "fact_purchase_order", "fact_payment")
        }
    import os

    os.environ["WAREHOUSE_DB_URL"] = url
    pages: dict[str, Any] = {}
    lines = [f"dashboard at x{args.scale} ({', '.join(f'{t} {n:,}' for t, n in facts.items())})"]
    lines.append(f"{'page':<12}{'query':<28}{'seconds':>9}{'rows':>9}")
    # One untimed render first: the process's first AppTest run imports and compiles the app, Streamlit
    # and Altair (about 2 s), which is not a page's cost and would otherwise land on the first page's cold render.
    time_render(url, "pipeline", 1)
    for page in queries.PAGES:
        timed = time_queries(url, page, args.repeat)
        render = time_render(url, page, args.repeat)
        pages[page] = {"queries": timed, **render}
        for q in timed:
            lines.append(f"{page:<12}{q['query']:<28}{q['seconds']:>9.3f}{q['rows']:>9,}")
        total = sum(q["seconds"] for q in timed)
        lines.append(f"{page:<12}{'(sum of queries)':<28}{total:>9.3f}")
        lines.append(f"{page:<12}{'render, cold':<28}{render['cold_s']:>9.3f}")
        lines.append(f"{page:<12}{'render, warm':<28}{render['warm_s']:>9.3f}")
    # A date filter narrower than the warehouse reads the facts, not the summaries: the last year's pages.
    with psycopg.connect(url) as conn:
        last = conn.execute("SELECT max(date_id) FROM dim_date").fetchone()[0]  # type: ignore[index]
        timings = conn.execute("SELECT timings FROM etl.load_run ORDER BY loaded_at LIMIT 1").fetchone()[0]  # type: ignore[index]
    year = {"from": (last - timedelta(days=364)).isoformat(), "to": last.isoformat()}
    for page in ("sales", "purchases", "payments"):
        render = time_render(url, page, 1, year)
        pages[page]["last_year"] = render
        lines.append(f"{page:<12}{'render, cold, last year':<28}{render['cold_s']:>9.3f}")
    summaries = float(timings.get("summaries", 0.0))
    load_total = float(timings.get("total", 0.0))
    lines.append(
        f"first load: {load_total:.1f} s, of which the summaries {summaries:.1f} s ({summaries / load_total:.0%})"
    )
    print("\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = {
        "scale": args.scale,
        "facts": facts,
        "pages": pages,
        "first_load": {"total_s": load_total, "summaries_s": summaries},
    }
    (RESULTS / f"dashboard-{stamp}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
