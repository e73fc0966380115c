"""Benchmark the load stage on a ~x100 curated run (not a test).

Synthesises a curated run the size of the totesys snapshot x SCALE (facts and dim_transaction scale;
the small dimensions keep their snapshot sizes), writes it to private containers on the local stack's
Azurite (`LocalStack(Path('.local')).up()`), then in fresh child processes:
1. load():   shared.load.load into an empty warehouse database (download, verify, COPY to staging,
             merge, ledger, commit);
2. baseline: the same frames COPY'd (same COPY path: binary, CSV where a type needs it) into
             unindexed, constraint-free tables, one transaction (reading the lake is not timed).
Prints rows/s, the ratio load/baseline and each child's peak RSS (also written to
bench/results/load-x<scale>-<time>.json). Scratch databases and containers are dropped at the end;
the stack itself is left running.

    .venv/bin/python -m bench load [--scale 100]     (or: .venv/bin/python bench/load.py)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import time
import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psycopg
from psycopg import sql

from bench.extract import peak_rss_mib
from shared.lake import Lake
from shared.local.stack import LocalStack, with_database
from shared.settings import load_settings

RESULTS = Path(__file__).resolve().parent / "results"
# Snapshot sizes (shared/local/source/snapshot) of the tables that grow with the business.
SNAPSHOT = {"sales_order": 11_187, "purchase_order": 4_649, "payment": 15_836}
SMALL_DIMS = {"staff": 20, "location": 30, "counterparty": 20, "currency": 3, "design": 473, "payment_type": 4}
FIRST_DAY = date(2022, 11, 3)
DAYS = 1_100
DAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July"]
MONTH_NAMES += ["August", "September", "October", "November", "December"]
I32, TEXT, DATE, TIME, STAMP = pl.Int32, pl.String, pl.Date, pl.Time, pl.Datetime("ms")
MONEY = pl.Decimal(10, 2)


def synthesise(scale: int, seed: int = 7) -> dict[str, pl.DataFrame]:
    """A curated run: every warehouse table, facts and dim_transaction at snapshot size x `scale`."""
    rng = np.random.default_rng(seed)
    n_sales, n_purchases, n_payments = (SNAPSHOT[t] * scale for t in ("sales_order", "purchase_order", "payment"))
    stamp = datetime(2025, 11, 1, 12, 0, 0)

    def ids(n: int) -> pl.Series:
        return pl.Series(np.arange(1, n + 1, dtype=np.int32))

    def pick(n: int, high: int) -> pl.Series:
        return pl.Series(rng.integers(1, high + 1, n, dtype=np.int32))

    def day(n: int, low: int = 0, high: int = DAYS - 60) -> pl.Expr:
        return pl.lit(FIRST_DAY) + pl.duration(days=pl.lit(pl.Series(rng.integers(low, high, n))))

    def clock(n: int) -> pl.Series:
        return pl.Series(rng.integers(0, 86_400_000, n) * 1_000_000).cast(TIME)

    def money(n: int, high: int) -> pl.Series:
        return (pl.Series(rng.integers(1, high, n)).cast(pl.Float64) / 100).cast(MONEY)

    def row_hash(frame: pl.DataFrame, key: str) -> pl.DataFrame:
        h = pl.concat_str(pl.col(key).hash(1).cast(TEXT), pl.col(key).hash(2).cast(TEXT)).str.slice(0, 32)
        return frame.with_columns(etl_row_hash=h)

    def dim(table: str, n: int, **columns: Any) -> pl.DataFrame:
        return pl.DataFrame({f"{table}_id": ids(n), **columns}).with_columns(etl_source_updated=pl.lit(stamp, STAMP))

    def text(prefix: str, n: int) -> pl.Series:
        return pl.Series([f"{prefix} {i}" for i in range(1, n + 1)])

    days = pl.date_range(FIRST_DAY, FIRST_DAY + (date(2025, 11, 6) - date(2022, 11, 3)), eager=True)
    tables = {
        "dim_date": pl.DataFrame({"date_id": days}).with_columns(
            year=pl.col("date_id").dt.year().cast(I32),
            month=pl.col("date_id").dt.month().cast(I32),
            day=pl.col("date_id").dt.day().cast(I32),
            day_of_week=pl.col("date_id").dt.weekday().cast(I32),
            day_name=pl.col("date_id").dt.weekday().map_elements(lambda d: DAY_NAMES[d - 1], TEXT),
            month_name=pl.col("date_id").dt.month().map_elements(lambda m: MONTH_NAMES[m - 1], TEXT),
            quarter=pl.col("date_id").dt.quarter().cast(I32),
        ),
        "dim_staff": dim(
            "staff",
            20,
            first_name=text("First", 20),
            last_name=text("Last", 20),
            department_name=text("Dept", 20),
            location=text("Town", 20),
            email_address=text("mail", 20),
        ),
        "dim_location": dim(
            "location",
            30,
            address_line_1=text("Street", 30),
            address_line_2=pl.Series([None] * 30, dtype=TEXT),
            district=text("District", 30),
            city=text("City", 30),
            postal_code=text("PC", 30),
            country=text("Country", 30),
            phone=text("Phone", 30),
        ),
        "dim_currency": dim(
            "currency",
            3,
            currency_code=pl.Series(["GBP", "USD", "EUR"]),
            currency_name=pl.Series(["Pound Sterling", "US Dollar", "Euro"]),
        ),
        "dim_design": dim(
            "design",
            473,
            design_name=text("Design", 473),
            file_location=text("/dir", 473),
            file_name=text("file", 473),
        ),
        "dim_counterparty": dim(
            "counterparty",
            20,
            counterparty_legal_name=text("Name", 20),
            counterparty_legal_address_line_1=text("Street", 20),
            counterparty_legal_address_line2=pl.Series([None] * 20, dtype=TEXT),
            counterparty_legal_district=text("District", 20),
            counterparty_legal_city=text("City", 20),
            counterparty_legal_postal_code=text("PC", 20),
            counterparty_legal_country=text("Country", 20),
            counterparty_legal_phone_number=text("Phone", 20),
        ),
        "dim_payment_type": dim(
            "payment_type",
            4,
            payment_type_name=pl.Series(["SALES_RECEIPT", "SALES_REFUND", "PURCHASE_PAYMENT", "PURCHASE_REFUND"]),
        ),
    }
    n = n_sales
    sales = pl.DataFrame({"sales_order_id": ids(n)}).with_columns(
        created_date=day(n),
        created_time=clock(n),
        last_updated_date=day(n, DAYS - 60, DAYS - 30),
        last_updated_time=clock(n),
        sales_staff_id=pick(n, 20),
        counterparty_id=pick(n, 20),
        units_sold=pl.Series(rng.integers(1000, 100_000, n, dtype=np.int32)),
        unit_price=money(n, 400),
        currency_id=pick(n, 3),
        design_id=pick(n, 473),
        agreed_payment_date=day(n, 0, DAYS),
        agreed_delivery_date=day(n, 0, DAYS),
        agreed_delivery_location_id=pick(n, 30),
    )
    n = n_purchases
    purchases = pl.DataFrame({"purchase_order_id": ids(n)}).with_columns(
        created_date=day(n),
        created_time=clock(n),
        last_updated_date=day(n, DAYS - 60, DAYS - 30),
        last_updated_time=clock(n),
        staff_id=pick(n, 20),
        counterparty_id=pick(n, 20),
        item_code=pl.Series(rng.integers(0, 1_000_000, n)).cast(TEXT).str.zfill(7),
        item_quantity=pl.Series(rng.integers(1, 1000, n, dtype=np.int32)),
        item_unit_price=money(n, 100_000),
        currency_id=pick(n, 3),
        agreed_delivery_date=day(n, 0, DAYS),
        agreed_payment_date=day(n, 0, DAYS),
        agreed_delivery_location_id=pick(n, 30),
    )
    n = n_payments
    is_sale = rng.random(n) < n_sales / (n_sales + n_purchases)
    transactions = dim(
        "transaction",
        n,
        transaction_type=pl.Series(np.where(is_sale, "SALE", "PURCHASE")),
        sales_order_id=pick(n, n_sales),
        purchase_order_id=pick(n, n_purchases),
    ).with_columns(
        sales_order_id=pl.when(pl.col("transaction_type") == "SALE").then(pl.col("sales_order_id")),
        purchase_order_id=pl.when(pl.col("transaction_type") == "PURCHASE").then(pl.col("purchase_order_id")),
    )
    payments = pl.DataFrame({"payment_id": ids(n)}).with_columns(
        created_date=day(n),
        created_time=clock(n),
        last_updated_date=day(n, DAYS - 60, DAYS - 30),
        last_updated=clock(n),
        transaction_id=ids(n),
        counterparty_id=pick(n, 20),
        payment_amount=money(n, 10_000_000),
        currency_id=pick(n, 3),
        payment_type_id=pick(n, 4),
        paid=pl.Series(rng.random(n) < 0.5),
        payment_date=day(n, 0, DAYS),
    )
    tables["dim_transaction"] = transactions
    tables["fact_sales_order"] = row_hash(sales, "sales_order_id")
    tables["fact_purchase_order"] = row_hash(purchases, "purchase_order_id")
    tables["fact_payment"] = row_hash(payments, "payment_id")
    return tables


def write_run(lake: Lake, run_id: str, tables: dict[str, pl.DataFrame]) -> int:
    """Write the run's Parquet files and manifest (last) to the curated container; total rows."""
    entries: dict[str, dict[str, Any]] = {}
    for table, frame in tables.items():
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        data = buffer.getvalue()
        name = f"{table}/{run_id}.parquet"
        lake.put_once(lake.curated, name, data)
        entries[table] = {"file": name, "rows": frame.height, "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {
        "run_id": run_id,
        "extracted_at": "2025-11-01T12:05:00+00:00",
        "source_max_updated": "2025-11-01T12:00:00",
        "tables": entries,
    }
    lake.put_once(lake.curated, f"_runs/{run_id}.json", json.dumps(manifest).encode())
    return sum(e["rows"] for e in entries.values())


def child_load(env: dict[str, str], run_id: str) -> dict[str, Any]:
    """In a fresh process: load() the run; its result and this process's peak RSS."""
    from shared.load import load

    settings = load_settings(env, needs=("warehouse", "lake"))
    result = load(settings, Lake.from_settings(settings), run_id)
    return {"duration_s": result.duration_s, "rows": result.rows, "timings": result.timings, "rss": peak_rss_mib()}


def child_copy(env: dict[str, str], run_id: str) -> dict[str, Any]:
    """In a fresh process: COPY the run's frames into unindexed tables in one transaction (timed)."""
    from shared import contract
    from shared.load import fetch_curated, read_curated, read_manifest
    from shared.warehouse import ledger, staging

    settings = load_settings(env, needs=("warehouse", "lake"))
    lake = Lake.from_settings(settings)
    assert settings.warehouse_db_url is not None
    manifest = read_manifest(lake, run_id)
    seconds = 0.0
    rows = 0
    with psycopg.connect(settings.warehouse_db_url.reveal()) as conn:
        ledger.ensure_schema(conn)
        conn.execute("CREATE SCHEMA plain")
        conn.commit()
        for table in contract.TABLES:
            columns = staging.curated_columns(conn, table)
            entry = manifest.files[table]
            frame = read_curated(lake, run_id, entry, columns, fetch_curated(lake, run_id, entry))
            target = sql.Identifier("plain", table)
            conn.execute(
                sql.SQL("CREATE TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
                    target, sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
                )
            )
            started = time.perf_counter()
            staging.copy_frame(conn, table, frame, schema="plain")
            seconds += time.perf_counter() - started
            rows += frame.height
        started = time.perf_counter()
        conn.commit()
        seconds += time.perf_counter() - started
    return {"duration_s": seconds, "rows": rows, "rss": peak_rss_mib()}


def in_child(target: Any, *args: Any) -> dict[str, Any]:
    """Run `target(*args)` in a freshly spawned process (so its peak RSS is its own)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return dict(pool.apply(target, args))


def main() -> None:
    """Build the run, time load() against a plain COPY, print the figures, clean up."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=100)
    args = parser.parse_args()

    urls = LocalStack(Path(".local")).up()
    suffix = uuid.uuid4().hex[:8]
    admin = with_database(urls.warehouse_db_url, "postgres")
    databases = {"load": f"bench_load_{suffix}", "copy": f"bench_copy_{suffix}"}
    env = {
        "LAKE_STORAGE": urls.lake_storage,
        "RAW_CONTAINER": f"raw-bench-{suffix}",
        "CURATED_CONTAINER": f"curated-bench-{suffix}",
        "LOAD_QUEUE": f"load-bench-{suffix}",
    }
    lake = Lake.from_settings(load_settings(env))
    lake.ensure()
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in databases.values():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    run_id = f"{datetime.now():%Y%m%dT%H%M%S}Z-{suffix[:6]}"
    try:
        started = time.perf_counter()
        tables = synthesise(args.scale)
        sizes = {t: f.height for t, f in tables.items()}
        total = write_run(lake, run_id, tables)
        del tables
        print(f"synthesised and wrote run {run_id}: {total:,} rows in {time.perf_counter() - started:.1f} s")
        print("  " + ", ".join(f"{t} {n:,}" for t, n in sizes.items()))

        loaded = in_child(child_load, {**env, "WAREHOUSE_DB_URL": with_database(admin, databases["load"])}, run_id)
        copied = in_child(child_copy, {**env, "WAREHOUSE_DB_URL": with_database(admin, databases["copy"])}, run_id)

        merged = sum(loaded["rows"].values())
        print(
            f"load():     {loaded['duration_s']:8.2f} s  {total / loaded['duration_s']:>12,.0f} rows/s  "
            f"({merged:,} rows inserted/updated)  peak RSS {loaded['rss']:,.0f} MiB"
        )
        print("  steps: " + ", ".join(f"{k} {v:.2f}" for k, v in loaded["timings"].items()))
        print(
            f"plain COPY: {copied['duration_s']:8.2f} s  {copied['rows'] / copied['duration_s']:>12,.0f} rows/s  "
            f"(unindexed tables, same COPY path)  peak RSS {copied['rss']:,.0f} MiB"
        )
        ratio = loaded["duration_s"] / copied["duration_s"]
        print(f"ratio load/COPY: {ratio:.2f}")
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"load-x{args.scale}-{datetime.now():%Y%m%dT%H%M%S}Z.json"
        report = {"scale": args.scale, "rows": sizes, "load": loaded, "plain_copy": copied, "ratio": ratio}
        out.write_text(json.dumps(report, indent=2))
        print(f"results: {out}")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in databases.values():
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        for container in (lake.raw, lake.curated):
            lake.blobs.delete_container(container)
        for queue in (lake.load_queue, f"{lake.load_queue}-poison"):
            lake.queues.delete_queue(queue)


if __name__ == "__main__":
    main()
