"""The load's bookkeeping in the warehouse: the load lock, the DDL version applied, and the ledger
etl.load_run that makes a second delivery of a run a no-op."""

from __future__ import annotations

import hashlib

import psycopg
from psycopg.types.json import Jsonb

from shared.warehouse import apply_schema, schema_sql

# work_mem, temp_buffers and maintenance_work_mem of a load transaction (see lock_loads).
LOAD_WORK_MEM = "128MB"
LOAD_TEMP_BUFFERS = "256MB"
LOAD_MAINTENANCE_WORK_MEM = "512MB"
LOAD_LOCK = 0x7074_6C64  # pg_advisory_xact_lock key: every load, whatever its run, takes it


def lock_loads(conn: psycopg.Connection) -> None:
    """Serialise loads: wait for the transaction-level lock every load takes (released at commit).

    Also sizes this transaction's sort and hash memory: the merges sort and join whole staged tables,
    which spill to disk at the default 4MB. Loads run one at a time, so this is the load's memory.
    """
    # One statement, one round trip. Staging tables are temporary: their pages live in this session's
    # temp_buffers (default 8MB), which can only grow before the session first touches a temporary table.
    # Re-adding a fact table's version key sorts the whole table (one index build, see add_constraints).
    conn.execute(
        "SELECT pg_advisory_xact_lock(%s), set_config('work_mem', %s, true), set_config('temp_buffers', %s, true), "
        "set_config('maintenance_work_mem', %s, true)",
        (LOAD_LOCK, LOAD_WORK_MEM, LOAD_TEMP_BUFFERS, LOAD_MAINTENANCE_WORK_MEM),
    )


def ensure_schema(conn: psycopg.Connection) -> bool:
    """Apply the warehouse DDL unless this exact version was the last applied; True if it was applied.

    Re-running the DDL on every load would take CREATE OR REPLACE VIEW's exclusive lock on the
    analysts' views for the whole load transaction, so the script's digest is remembered instead. The last
    one applied, not any: code rolled back to an earlier version puts its own DDL back (a newer one may
    have dropped a function it calls).
    """
    digest = hashlib.sha256(schema_sql().encode()).hexdigest()
    row = conn.execute("SELECT to_regclass('etl.schema_applied') IS NOT NULL").fetchone()
    if row and row[0]:
        last = conn.execute("SELECT sha256 FROM etl.schema_applied ORDER BY applied_at DESC LIMIT 1").fetchone()
        if last and last[0] == digest:
            return False
    apply_schema(conn)
    conn.execute(
        "INSERT INTO etl.schema_applied (sha256, applied_at) VALUES (%s, clock_timestamp())"
        " ON CONFLICT (sha256) DO UPDATE SET applied_at = excluded.applied_at",
        (digest,),
    )
    return True


def loaded_at(conn: psycopg.Connection, run_id: str) -> object | None:
    """When `run_id` was loaded according to the ledger, or None if it never was."""
    row = conn.execute("SELECT loaded_at FROM etl.load_run WHERE run_id = %s", (run_id,)).fetchone()
    return row[0] if row else None


def record_run(
    conn: psycopg.Connection,
    run_id: str,
    *,
    extracted_at: object,
    source_max_updated: object,
    row_counts: dict[str, int],
    timings: dict[str, float],
) -> None:
    """Write the run's ledger row: from now on a second delivery of `run_id` is a no-op."""
    conn.execute(
        "INSERT INTO etl.load_run (run_id, extracted_at, source_max_updated, row_counts, timings) "
        "VALUES (%s, %s, %s, %s, %s)",
        (run_id, extracted_at, source_max_updated, Jsonb(row_counts), Jsonb(timings)),
    )
