"""The load stage: one curated run into the warehouse, whole or not at all, recorded in etl.load_run.

One transaction per run, serialised with every other load by an advisory lock:
DDL if missing -> ledger check (a loaded run is a no-op) -> COPY every curated file into staging ->
dim_date (contiguous calendar) -> the 7 dimensions (newest version wins) -> the facts (new versions only)
-> ledger row -> commit. Any error rolls all of it back. A large fact or dimension file for an empty
table (a first load) is copied straight into it instead of staging; a fact table's constraints are
re-added at the facts step.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import psycopg
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import TextBase64EncodePolicy

from shared.connection import connect
from shared.errors import TerminalError, TransientError
from shared.lake import Lake
from shared.load.manifest import check_run_id, read_curated, read_manifest
from shared.settings import Settings
from shared.warehouse import merge

__all__ = [
    "STEPS",
    "InjectedCrash",
    "LoadResult",
    "load",
    "load_message",
    "parse_message",
    "send_to_poison",
    "status",
]

log = logging.getLogger(__name__)

Step = Literal["schema", "staging", "dim_date", "dims", "facts", "ledger"]
# The steps of a load in order; `fail_after` names one of them.
STEPS: tuple[Step, ...] = ("schema", "staging", "dim_date", "dims", "facts", "ledger")
OK_MARKER = "TOTES_LOAD_OK"


class InjectedCrash(RuntimeError):
    """A crash simulated by `load(..., fail_after=step)` inside the load transaction (tests, drills)."""


@dataclass(frozen=True)
class LoadResult:
    """What loading one run did: rows inserted or updated per warehouse table, seconds per step."""

    run_id: str
    already_loaded: bool
    rows: dict[str, int]
    timings: dict[str, float]
    duration_s: float
    lag_s: float | None


def parse_message(body: str) -> str:
    """The run id of a load-jobs message {"run_id": ...}; TerminalError if the message is unusable."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise TerminalError(f"load message is not valid JSON ({exc}): {body[:120]!r}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("run_id"), str):
        raise TerminalError(f'load message has no string "run_id": {body[:120]!r}')
    return check_run_id(doc["run_id"])


def load(settings: Settings, lake: Lake, run_id: str, *, fail_after: str | None = None) -> LoadResult:
    """Load curated run `run_id` into the warehouse in one transaction; a run in the ledger is a no-op.

    Raises TerminalError for input that cannot load (unknown run, bad manifest or file) and
    TransientError when a retry may succeed (warehouse unreachable, dimension rows not loaded yet).
    `fail_after` raises InjectedCrash right after the named step, inside the transaction.
    """
    check_run_id(run_id)
    if fail_after is not None and fail_after not in STEPS:
        raise ValueError(f"fail_after={fail_after!r} is not one of {STEPS}")
    started = time.perf_counter()
    timer = _Timer()
    try:
        with _connect(settings, f"run {run_id}") as conn:
            with conn.transaction():
                outcome = _load(conn, lake, run_id, timer, fail_after, started)
            if not outcome.already_loaded:
                timer.timings["commit"] = round(time.perf_counter() - timer.mark, 4)
    except psycopg.errors.ForeignKeyViolation as exc:
        raise TransientError(
            f"run {run_id}: {timer.where} hit a missing dimension row ({exc}); rolled back, will retry"
        ) from exc
    except psycopg.OperationalError as exc:
        raise TransientError(
            f"run {run_id}: warehouse error during {timer.where} ({exc}); rolled back, the queue retries"
        ) from exc
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        raise TerminalError(
            f"run {run_id}: the warehouse rejected {timer.where} ({exc}); rolled back, nothing is loaded. "
            "Fix the curated run and replay it"
        ) from exc
    duration = round(time.perf_counter() - started, 4)
    result = LoadResult(
        run_id=run_id,
        already_loaded=outcome.already_loaded,
        rows=outcome.rows,
        timings=timer.timings,
        duration_s=duration,
        lag_s=outcome.lag_s,
    )
    if result.already_loaded:
        log.info("load of run %s skipped: already in the ledger, nothing changed", run_id)
    else:
        log.info(
            "%s run_id=%s rows=%s duration_s=%.3f lag_s=%s",
            OK_MARKER,
            run_id,
            json.dumps(result.rows, separators=(",", ":")),
            duration,
            "null" if result.lag_s is None else f"{result.lag_s:.1f}",
        )
    return result


def load_message(settings: Settings, lake: Lake, body: str) -> LoadResult:
    """Load the run a load-jobs message names (parse_message, then load)."""
    return load(settings, lake, parse_message(body))


def send_to_poison(settings: Settings, lake: Lake, body: str) -> None:
    """Put a message on the load queue's poison queue as it came (base64 text, like the Functions host)."""
    client = lake.queues.get_queue_client(settings.poison_queue, message_encode_policy=TextBase64EncodePolicy())
    try:
        client.send_message(body)
    except ResourceNotFoundError:
        client.create_queue()
        client.send_message(body)


def status(settings: Settings, limit: int = 10) -> dict[str, Any]:
    """The newest `limit` ledger rows and the current lag: {"runs": [...], "lag_s", "source_max_updated"}.

    Each run: run_id, extracted_at, source_max_updated, loaded_at, row_counts (table -> rows inserted
    or updated), timings, duration_s, lag_s (loaded_at - source_max_updated). The current lag is now -
    the newest source change loaded (the source clock is naive UTC); None before the first load.
    """
    with _connect(settings, "status") as conn:
        row = conn.execute("SELECT to_regclass('etl.load_run') IS NOT NULL").fetchone()
        if not (row and row[0]):
            return {"runs": [], "lag_s": None, "source_max_updated": None}
        cur = conn.execute(
            "SELECT run_id, extracted_at, source_max_updated, loaded_at, row_counts, timings "
            "FROM etl.load_run ORDER BY loaded_at DESC, run_id DESC LIMIT %s",
            (limit,),
        )
        runs = []
        for run_id, extracted_at, source_max, loaded, counts, timings in cur:
            runs.append(
                {
                    "run_id": run_id,
                    "extracted_at": extracted_at,
                    "source_max_updated": source_max,
                    "loaded_at": loaded,
                    "row_counts": counts,
                    "timings": timings,
                    "duration_s": timings.get("total"),
                    "lag_s": None if source_max is None else _lag(source_max, loaded),
                }
            )
        newest_row = conn.execute("SELECT max(source_max_updated) FROM etl.load_run").fetchone()
    newest = newest_row[0] if newest_row else None
    return {
        "runs": runs,
        "source_max_updated": newest,
        "lag_s": None if newest is None else _lag(newest, datetime.now(UTC)),
    }


@dataclass(frozen=True)
class _Outcome:
    already_loaded: bool
    rows: dict[str, int]
    lag_s: float | None


def _load(
    conn: psycopg.Connection,
    lake: Lake,
    run_id: str,
    timer: _Timer,
    fail_after: str | None,
    started: float,
) -> _Outcome:
    def crash(step: Step) -> None:
        if fail_after == step:
            raise InjectedCrash(f"run {run_id}: crash injected after step {step!r}; the load rolls back")

    with timer("lock"):
        merge.lock_loads(conn)
    with timer("schema"):
        merge.ensure_schema(conn)
        crash("schema")
    with timer("ledger_check"):
        if merge.loaded_at(conn, run_id) is not None:
            return _Outcome(already_loaded=True, rows={}, lag_s=None)
    with timer("read"):
        manifest = read_manifest(lake, run_id)

    columns: dict[str, list[str]] = {}
    rows: dict[str, int] = {}
    # Facts copied straight into their empty tables (first load), constraints to re-add after the dims.
    copied: dict[str, merge.Constraints] = {}
    copied_dates: list[tuple[date, date]] = []
    for table in merge.TABLES:
        if (entry := manifest.files.get(table)) is None:
            continue
        columns[table] = merge.curated_columns(conn, table)
        with timer("read", table):
            frame = read_curated(lake, run_id, entry, columns[table])
        with timer("staging", table):
            first_load = frame.height >= merge.BULK_FACT_ROWS and merge.is_empty(conn, table)
            if first_load and table in merge.FACTS:
                copied[table] = merge.copy_facts(conn, table, frame, run_id)
                if (bounds := merge.date_bounds(frame)) is not None:
                    copied_dates.append(bounds)
            elif first_load and table in merge.DIMENSIONS:  # no date column, no foreign key
                rows[table] = merge.copy_dimension(conn, table, frame, run_id)
            else:
                merge.stage(conn, table, frame)
        del frame  # one curated frame in memory at a time
    crash("staging")

    with timer("dim_date"):
        staged = [t for t in columns if t not in copied and t not in rows]
        rows["dim_date"] = merge.merge_dim_date(conn, staged, copied_dates).rows
        crash("dim_date")
    with timer("dims"):
        for table in merge.DIMENSIONS:
            if table in columns and table not in rows:
                with timer.at(table):
                    rows[table] = merge.merge_dimension(conn, table, columns[table], run_id).rows
        crash("dims")
    facts = [t for t in merge.FACTS if t in columns]
    with timer("facts"):
        for table in facts:
            with timer.at(table):
                try:
                    with conn.transaction():  # a savepoint, so the missing ids can still be queried
                        if table in copied:
                            merge.add_constraints(conn, copied[table])
                            rows[table] = copied[table].rows
                        else:
                            rows[table] = merge.insert_facts(conn, table, columns[table], run_id).rows
                except psycopg.errors.ForeignKeyViolation as exc:
                    missing = [
                        m for fact in facts for m in merge.missing_references(conn, fact, staged=fact not in copied)
                    ]
                    if not missing:
                        raise
                    raise TransientError(
                        f"run {run_id}: dimension rows not loaded yet; will retry ("
                        + "; ".join(map(str, missing))
                        + "). An earlier run that carries them must load first; the whole run was rolled back"
                    ) from exc
        crash("facts")

    lag = _lag(manifest.source_max_updated, datetime.now(UTC)) if manifest.source_max_updated else None
    with timer("ledger"):
        merge.record_run(
            conn,
            run_id,
            extracted_at=manifest.extracted_at,
            source_max_updated=manifest.source_max_updated,
            row_counts=rows,
            timings={**timer.timings, "total": round(time.perf_counter() - started, 4)},
        )
        crash("ledger")
    return _Outcome(already_loaded=False, rows=rows, lag_s=lag)


def _lag(source_time: datetime, now: datetime) -> float:
    """Seconds from a naive source-clock (UTC) time to `now`."""
    source = source_time if source_time.tzinfo else source_time.replace(tzinfo=UTC)
    return round((now - source).total_seconds(), 3)


@contextmanager
def _connect(settings: Settings, what: str) -> Iterator[psycopg.Connection]:
    url = settings.require("warehouse").warehouse_db_url
    assert url is not None
    conn = connect(
        url,
        "WAREHOUSE_DB_URL",
        timeout_s=settings.db_connect_timeout,
        what=what,
        role="warehouse",
        consequence="nothing was loaded, the queue retries later",
        autocommit=True,
    )
    with conn:
        yield conn


class _Timer:
    """Seconds per step (accumulated over tables) and the step/table an error happened in."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.where = "connect"
        self.mark = time.perf_counter()

    @contextmanager
    def __call__(self, step: str, table: str | None = None) -> Iterator[None]:
        self.where = step if table is None else f"{step} of {table}"
        begun = time.perf_counter()
        try:
            yield
        finally:
            self.mark = time.perf_counter()
            self.timings[step] = round(self.timings.get(step, 0.0) + self.mark - begun, 4)

    @contextmanager
    def at(self, table: str) -> Iterator[None]:
        """Time `table` within the current step (as "<step>.<table>"), and name it in errors."""
        step = self.where
        self.where = f"{step} of {table}"
        begun = time.perf_counter()
        yield  # an error keeps naming the table
        self.timings[f"{step}.{table}"] = round(time.perf_counter() - begun, 4)
        self.where = step
