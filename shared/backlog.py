"""Runs waiting per stage, from what the lake and the ledger hold: the totes.backlog metrics.

A run waits for the transform while raw/_runs/<run_id>.json has neither a curated manifest nor a quarantine
record, and for the load while its curated manifest has no row in etl.load_run. Run ids start with their
extract time (20261122T031500Z-7f3a9c), so the lake is listed one day prefix at a time over the last
BACKLOG_DAYS days only (a bounded listing however old the lake is), and a run's age comes from its id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared import telemetry
from shared.lake import Lake
from shared.settings import Settings
from shared.warehouse.connect import connect_warehouse

log = logging.getLogger(__name__)

BACKLOG_DAYS = 7
RUN_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Backlog:
    """Runs waiting per stage ("transform", and "load" when the ledger was read) and the oldest one's age."""

    waiting: dict[str, list[str]]
    oldest_s: dict[str, float | None]

    @property
    def counts(self) -> dict[str, int]:
        """Runs waiting per stage."""
        return {stage: len(runs) for stage, runs in self.waiting.items()}


def measure_backlog(
    lake: Lake, settings: Settings | None = None, *, now: datetime | None = None, days: int = BACKLOG_DAYS
) -> Backlog:
    """The runs of the last `days` days waiting for the transform (lake) and the load (lake + ledger, when
    `settings` name a warehouse)."""
    now = now or datetime.now(UTC)
    days_listed = [f"{now - timedelta(days=back):%Y%m%d}" for back in range(days)]
    raw = _runs(lake, lake.raw, "_runs/", days_listed)
    curated = _runs(lake, lake.curated, "_runs/", days_listed)
    quarantined = _runs(lake, lake.curated, "_quarantine/", days_listed)
    waiting = {"transform": sorted(raw - curated - quarantined)}
    if settings is not None and settings.warehouse_db_url is not None:
        waiting["load"] = sorted(curated - loaded_runs(settings, curated))
    return Backlog(waiting, {stage: oldest_age(runs, now) for stage, runs in waiting.items()})


def record_backlog(lake: Lake, settings: Settings | None = None) -> Backlog | None:
    """Measure the backlog and record it as metrics; a failure is logged, never raised (it is only telemetry).
    Nothing is measured where no metric is exported: the listing and the ledger query cost a cycle ~0.1 s."""
    if not telemetry.metrics_enabled():
        return None
    try:
        backlog = measure_backlog(lake, settings)
    except Exception as exc:  # storage or warehouse trouble must not fail the stage that measures
        log.warning("backlog not measured: %s: %s", type(exc).__name__, exc)
        return None
    telemetry.record_backlog(backlog.counts, backlog.oldest_s)
    return backlog


def loaded_runs(settings: Settings, run_ids: Iterable[str]) -> set[str]:
    """Which of `run_ids` the warehouse ledger (etl.load_run) holds."""
    wanted = sorted(run_ids)
    if not wanted:
        return set()
    with connect_warehouse(settings, what="backlog") as conn:
        row = conn.execute("SELECT to_regclass('etl.load_run') IS NOT NULL").fetchone()
        if not (row and row[0]):
            return set()
        cursor = conn.execute("SELECT run_id FROM etl.load_run WHERE run_id = ANY(%s)", (wanted,))
        return {r[0] for r in cursor}


def _runs(lake: Lake, container: str, prefix: str, days: list[str]) -> set[str]:
    found = set()
    for day in days:
        for name in lake.list(container, f"{prefix}{day}"):
            if name.endswith(".json"):
                found.add(name[len(prefix) : -len(".json")])
    return found


def oldest_age(run_ids: list[str], now: datetime) -> float | None:
    """Seconds since the oldest of `run_ids` was extracted (from the time its id starts with), None if none."""
    times = []
    for run_id in run_ids:
        try:
            times.append(datetime.strptime(run_id.split("-", 1)[0], RUN_TIME_FORMAT).replace(tzinfo=UTC))
        except ValueError:
            continue
    return round((now - min(times)).total_seconds(), 3) if times else None


def backlog_lines(settings: Settings, lake: Lake, now: datetime | None = None) -> list[str]:
    """`totes status`'s backlog: runs waiting per stage with the oldest's age, a quarantined run holding others
    back, and when nothing waits the time since the extract last checked the source."""
    from shared.drain import pending
    from shared.extract.state import STATE_BLOB, ExtractState

    now = now or datetime.now(UTC)
    waiting = pending(lake, settings)
    lines = []
    for stage, runs in (("transform", waiting.transform), ("load", waiting.load or [])):
        age = oldest_age(runs, now)
        lines.append(f"backlog {stage}: {len(runs)} run(s) waiting" + (f", oldest {age:,.0f} s" if age else ""))
    if waiting.blocked_by is not None:
        lines.append(
            f"quarantined: run {waiting.blocked_by} holds back {len(waiting.held)} run(s); fix the source rows, "
            f"then `totes retry {waiting.blocked_by}`"
        )
    checked = ExtractState.parse(lake.read_versioned(lake.raw, STATE_BLOB).data).last_checked_at
    if checked is not None and not (waiting.transform or waiting.load or waiting.blocked_by):
        lines.append(f"source last checked {(now - checked).total_seconds():,.0f} s ago, nothing waits (idle lag)")
    return lines
