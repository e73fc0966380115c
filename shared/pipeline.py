"""Chain the stages in-process (extract -> transform -> load): the same code the triggers call."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.backlog import record_backlog
from shared.contract import quarantine_name
from shared.drain import TRANSFORM_LEASE_SECONDS, TransformDrain, drain, drain_loads, drain_transforms
from shared.errors import EtlError, TerminalError
from shared.extract import ExtractResult, extract
from shared.lake import Lake
from shared.load import LoadResult
from shared.settings import Settings
from shared.transform.stage import TransformOutcome

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class CycleSummary:
    """One extract -> transform -> load cycle: what each stage did and how long it took."""

    run_id: str | None
    extract: ExtractResult
    transform: TransformOutcome | None = None
    load: LoadResult | None = None
    durations: dict[str, float] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether the source had changes (a run was produced)."""
        return self.run_id is not None


def run_cycle(settings: Settings, lake: Lake | None = None, *, progress: Progress = _quiet) -> CycleSummary:
    """Extract the source's changes, then drain every pending run (transform, then load, oldest first: the
    backlog, then the new run); raise while a quarantined run holds runs back. An extract that fails or yields
    to another still drains the backlog before it returns (or raises)."""
    settings.require("source", "warehouse", "lake")
    lake = lake or Lake.from_settings(settings)
    lake.ensure()
    durations: dict[str, float] = {}

    started = time.perf_counter()
    progress("extract: reading changed rows from totesys ...")
    try:
        extracted = extract(settings, lake)
    except EtlError:
        _drain(settings, lake, progress, "backlog")
        raise
    durations["extract"] = time.perf_counter() - started
    if extracted.yielded:
        progress("extract: another extract is running; this cycle yielded")
        _drain(settings, lake, progress, "backlog")
        return CycleSummary(run_id=None, extract=extracted, durations=durations)
    if extracted.run_id is None:
        progress(f"extract: no changes ({durations['extract']:.2f} s)")
        started = time.perf_counter()
        transformed = _drain(settings, lake, progress, "backlog")
        durations["backlog"] = time.perf_counter() - started
        _check_blocked(lake, transformed.blocked_by)
        record_backlog(lake, settings)
        return CycleSummary(run_id=None, extract=extracted, durations=durations)
    for table, rows in extracted.rows.items():
        progress(f"extract: {table:<16} {rows:>10,} rows")
    progress(f"extract: run {extracted.run_id} written ({durations['extract']:.2f} s)")

    started = time.perf_counter()
    progress("transform: building the star schemas ...")
    transformed = drain_transforms(lake, wait_s=TRANSFORM_LEASE_SECONDS + 5, settings=settings)
    durations["transform"] = time.perf_counter() - started
    _report(progress, "backlog", [o for o in transformed.outcomes if o.run_id != extracted.run_id], [])
    _check_blocked(lake, transformed.blocked_by)
    outcome = next((o for o in transformed.outcomes if o.run_id == extracted.run_id), None)
    for table, rows in (outcome.rows if outcome else {}).items():
        progress(f"transform: {table:<20} {rows:>10,} rows")
    progress(f"transform: done ({durations['transform']:.2f} s)")

    started = time.perf_counter()
    progress("load: merging into the warehouse in one transaction per run ...")
    loads = drain_loads(settings, lake, transformed.pending)
    durations["load"] = time.perf_counter() - started
    _report(progress, "backlog", [], [r for r in loads if r.run_id != extracted.run_id])
    loaded = next((r for r in loads if r.run_id == extracted.run_id), None)
    for table, rows in (loaded.rows if loaded else {}).items():
        progress(f"load: {table:<20} {rows:>10,} rows")
    progress(f"load: done ({durations['load']:.2f} s)")
    record_backlog(lake, settings)
    return CycleSummary(run_id=extracted.run_id, extract=extracted, transform=outcome, load=loaded, durations=durations)


def _drain(settings: Settings, lake: Lake, progress: Progress, what: str) -> TransformDrain:
    """Every pending run, transform then load, oldest first; the transform drain's result."""
    transformed, loads = drain(settings, lake, wait_s=TRANSFORM_LEASE_SECONDS + 5)
    _report(progress, what, transformed.outcomes, loads)
    return transformed


def _report(progress: Progress, what: str, outcomes: list[TransformOutcome], loads: list[LoadResult]) -> None:
    """A progress line per run transformed and per run loaded."""
    for outcome in outcomes:
        progress(f"{what}: transform of run {outcome.run_id}: {outcome.status}")
    for result in loads:
        progress(f"{what}: load of run {result.run_id}: {'already loaded' if result.already_loaded else 'loaded'}")


def _check_blocked(lake: Lake, blocked_by: str | None) -> None:
    """Raise while a quarantined run holds the runs after it back."""
    if blocked_by is None:
        return
    raise TerminalError(
        f"run {blocked_by} was quarantined by transform (see {lake.curated}/{quarantine_name(blocked_by)}) and holds "
        f"the runs after it back. The raw files are kept; fix the source rows, then `totes retry {blocked_by}` "
        "re-extracts them as a superseding run (or fix the cause and `totes transform "
        f"{blocked_by}`)"
    )
