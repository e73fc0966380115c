"""Chain the stages in-process (extract -> transform -> load): the same code the triggers call."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.backlog import record_backlog
from shared.errors import TerminalError
from shared.extract import ExtractResult, extract
from shared.lake import Lake
from shared.load import LoadResult, load
from shared.settings import Settings
from shared.transform.stage import TransformOutcome, transform

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
    """Extract the source's changes, transform the run and load it; raise on a quarantined run."""
    settings.require("source", "warehouse", "lake")
    lake = lake or Lake.from_settings(settings)
    lake.ensure()
    durations: dict[str, float] = {}

    started = time.perf_counter()
    progress("extract: reading changed rows from totesys ...")
    extracted = extract(settings, lake)
    durations["extract"] = time.perf_counter() - started
    if extracted.yielded:
        progress("extract: another extract is running; this cycle yielded")
        return CycleSummary(run_id=None, extract=extracted, durations=durations)
    if extracted.run_id is None:
        progress(f"extract: no changes ({durations['extract']:.2f} s)")
        record_backlog(lake, settings)
        return CycleSummary(run_id=None, extract=extracted, durations=durations)
    for table, rows in extracted.rows.items():
        progress(f"extract: {table:<16} {rows:>10,} rows")
    progress(f"extract: run {extracted.run_id} written ({durations['extract']:.2f} s)")

    started = time.perf_counter()
    progress("transform: building the star schemas ...")
    transformed = transform(lake, extracted.run_id)
    durations["transform"] = time.perf_counter() - started
    if transformed.status == "quarantined":
        raise TerminalError(
            f"run {extracted.run_id} was quarantined by transform; see {lake.curated}/{transformed.quarantine}. "
            "The raw files are kept; fix and re-run `totes transform "
            f"{extracted.run_id}`"
        )
    for table, rows in transformed.rows.items():
        progress(f"transform: {table:<20} {rows:>10,} rows")
    progress(f"transform: done ({durations['transform']:.2f} s)")

    started = time.perf_counter()
    progress("load: merging into the warehouse in one transaction ...")
    loaded = load(settings, lake, extracted.run_id)
    durations["load"] = time.perf_counter() - started
    for table, rows in loaded.rows.items():
        progress(f"load: {table:<20} {rows:>10,} rows")
    progress(f"load: done ({durations['load']:.2f} s)")
    record_backlog(lake, settings)
    return CycleSummary(
        run_id=extracted.run_id, extract=extracted, transform=transformed, load=loaded, durations=durations
    )
