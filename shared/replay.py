"""Replay: rebuild a warehouse from the raw archive alone, e.g. after a transform fix.

Every committed raw run, in run order (extract and reconcile runs alike), is transformed again into a scratch
curated container (fresh transform state, so the fixed code decides everything) and loaded into the target
warehouse; the scratch container is deleted at the end. The first run of an empty warehouse takes the
load's bulk path, so a replay costs about a first load of the same rows plus one small load per later run.
With `from_run`, every run is still transformed (the state needs the earlier parent rows) but only the runs
from `from_run` on are loaded: the target must already hold the earlier ones.

The documented way to correct history (README, "Correcting history"): replay into a new database, check it
with `totes verify`, then swap it for the live one.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from shared.errors import TerminalError
from shared.lake import Lake
from shared.load import load
from shared.reconcile import raw_runs
from shared.settings import Secret, Settings
from shared.transform.stage import transform

log = logging.getLogger("shared.replay")


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did: runs transformed, runs loaded, rows loaded per table, seconds."""

    transformed: int
    loaded: int
    rows: dict[str, int]
    duration_s: float


def replay(
    settings: Settings,
    lake: Lake,
    into: str,
    from_run: str | None = None,
    progress: Callable[[str], None] = log.info,
) -> ReplayResult:
    """Transform every raw run again into a scratch curated container and load it into warehouse URL `into`."""
    started = time.perf_counter()
    runs = [run.run_id for run in raw_runs(lake)]
    if from_run is not None and from_run not in runs:
        raise TerminalError(f"replay: run {from_run} is not a committed raw run in {lake.raw}; nothing was replayed")
    scratch = Lake(
        lake.blobs,
        lake.queues,
        raw=lake.raw,
        curated=f"{lake.curated[:40]}-replay-{secrets.token_hex(3)}",
        load_queue=lake.load_queue,
        timeout_s=lake.timeout_s,
    )
    target = replace(settings, warehouse_db_url=Secret(into))
    rows: dict[str, int] = {}
    loaded = 0
    scratch.blobs.create_container(scratch.curated)
    try:
        for run_id in runs:
            outcome = transform(scratch, run_id)
            if outcome.status == "quarantined":
                raise TerminalError(f"replay: run {run_id} is quarantined ({outcome.reason}); nothing after it loaded")
            if from_run is not None and run_id < from_run:
                continue
            result = load(target, scratch, run_id)
            loaded += 1
            for table, count in result.rows.items():
                rows[table] = rows.get(table, 0) + count
            progress(f"replay: run {run_id} loaded ({sum(result.rows.values())} rows)")
    finally:
        with contextlib.suppress(Exception):  # the scratch container is only a cache of the transform
            scratch.blobs.delete_container(scratch.curated)
    return ReplayResult(len(runs), loaded, rows, time.perf_counter() - started)
