"""Every source table read through ADBC into Arrow record batches, timed (run by bench/extract.py in the
bench's own venv, the one bench/dlt.py installs, since the product does not depend on ADBC or pyarrow).

Usage: <bench venv>/bin/python -I bench/adbc_read.py SOURCE_URL --tables a,b,...

Standalone on purpose: the standard library, adbc-driver-postgresql and pyarrow only. In one REPEATABLE READ,
READ ONLY transaction, as the extract reads, each table's `SELECT *` is streamed with `fetch_record_batch`
(adbc-driver-postgresql reads PostgreSQL's binary COPY into Arrow) and each batch dropped once counted: the
issue's "ADBC fetch_arrow_table" without holding a whole table. Prints one JSON line: seconds and rows per
table, the driver's version, CPU seconds and the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any


def quoted(name: str) -> str:
    """A PostgreSQL identifier, quoted (the names come from the bench's fixed table list)."""
    return '"' + name.replace('"', '""') + '"'


def main() -> None:
    """Parse the arguments, read every table, print the JSON line."""
    import adbc_driver_postgresql
    import adbc_driver_postgresql.dbapi

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--tables", required=True)
    args = parser.parse_args()
    seconds: dict[str, float] = {}
    rows: dict[str, int] = {}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    with adbc_driver_postgresql.dbapi.connect(args.url) as conn, conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.execute("SELECT current_setting('transaction_isolation')")
        isolation = cur.fetchone()
        if not isolation or isolation[0] != "repeatable read":  # the driver had not begun a transaction
            raise SystemExit(f"ADBC read: expected one REPEATABLE READ transaction, got {isolation}")
        for table in args.tables.split(","):
            started, count = time.perf_counter(), 0
            cur.execute(f"SELECT * FROM {quoted(table)}")  # nosec B608: a table name of the bench's own list, quoted
            for batch in cur.fetch_record_batch():
                count += batch.num_rows
            seconds[table], rows[table] = time.perf_counter() - started, count
        conn.rollback()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result: dict[str, Any] = {
        "seconds": seconds,
        "rows": rows,
        "version": adbc_driver_postgresql.__version__,
        "cpu_s": usage.ru_utime + usage.ru_stime - cpu_before,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
