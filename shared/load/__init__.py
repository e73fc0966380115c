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
from datetime import UTC, datetime
from typing import Any

import psycopg
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import TextBase64EncodePolicy

from shared import telemetry
from shared.contract import ContractError, LoadMessage, check_run_id, manifest_name
from shared.errors import TerminalError, TransientError
from shared.lake import Lake
from shared.load.steps import DIMENSIONS_PENDING, Checkpoint, Timer, lag_s, no_checkpoint, run_load
from shared.settings import Settings
from shared.warehouse.connect import connect_warehouse

__all__ = [
    "DIMENSIONS_PENDING",
    "LoadResult",
    "load",
    "load_message",
    "parse_message",
    "send_to_poison",
    "status",
]

log = logging.getLogger(__name__)

OK_MARKER = "TOTES_LOAD_OK"


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
        message = LoadMessage.from_json(body)
    except ContractError as exc:
        raise TerminalError(f"load message {exc.reason}: {body[:120]!r}") from exc
    return check_run_id(message.run_id)


def load(settings: Settings, lake: Lake, run_id: str, *, traceparent: str | None = None) -> LoadResult:
    """Load curated run `run_id` into the warehouse in one transaction; a run in the ledger is a no-op.

    Raises TerminalError for input that cannot load (unknown run, bad manifest or file) and
    TransientError when a retry may succeed (warehouse unreachable, dimension rows not loaded yet).
    The load's span is a child of `traceparent` (the load message's), else of the curated manifest's trace.
    """
    return _load(settings, lake, run_id, no_checkpoint, traceparent=traceparent)


def _load(
    settings: Settings, lake: Lake, run_id: str, checkpoint: Checkpoint, *, traceparent: str | None = None
) -> LoadResult:
    check_run_id(run_id)
    with telemetry.stage_span("load", run_id, traceparent=traceparent or (lambda: _run_trace(lake, run_id))) as span:
        result = _load_run(settings, lake, run_id, checkpoint)
        span.finish("already_loaded" if result.already_loaded else "loaded", result.rows)
    if result.lag_s is not None:
        telemetry.record_lag(result.lag_s)
    return result


def _run_trace(lake: Lake, run_id: str) -> str | None:
    """The traceparent in the curated manifest of `run_id` (None if it has none or cannot be read)."""
    try:
        return telemetry.traceparent_in(lake.read_json(lake.curated, manifest_name(run_id)))
    except (ResourceNotFoundError, ValueError, TransientError):  # the load itself reports these
        return None


def _load_run(settings: Settings, lake: Lake, run_id: str, checkpoint: Checkpoint) -> LoadResult:
    started = time.perf_counter()
    timer = Timer()
    try:
        with _connect(settings, f"run {run_id}") as conn:
            with conn.transaction():
                outcome = run_load(conn, lake, run_id, timer, started, checkpoint)
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
    """Load the run a load-jobs message names (parse_message, then load), in the trace the message carries."""
    return load(settings, lake, parse_message(body), traceparent=telemetry.traceparent_in(body))


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
                    "lag_s": None if source_max is None else lag_s(source_max, loaded),
                }
            )
        newest_row = conn.execute("SELECT max(source_max_updated) FROM etl.load_run").fetchone()
    newest = newest_row[0] if newest_row else None
    return {
        "runs": runs,
        "source_max_updated": newest,
        "lag_s": None if newest is None else lag_s(newest, datetime.now(UTC)),
    }


@contextmanager
def _connect(settings: Settings, what: str) -> Iterator[psycopg.Connection]:
    conn = connect_warehouse(
        settings, what=what, consequence="nothing was loaded, the queue retries later", autocommit=True
    )
    with conn:
        yield conn
