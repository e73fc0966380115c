"""Drain the backlog: every pending run, oldest first, one stage invocation at a time.

An event (a raw manifest's blob event, a load message, a timer tick) only says "there is work". The
invocation that gets the stage's lock does every run that waits for the stage, in run-id order (run ids
start with their extract time); an invocation that finds the transform lease held yields, because the
holder drains its run too, so the transform drain re-lists until nothing waits. A load drain loads the runs
it listed (a run transformed meanwhile has a load message of its own, and a lost one is found by the
extract timer's drain). So the transform state and the warehouse advance
exactly as a strictly sequential pipeline would, whatever order and concurrency the events come in.

- transform: the blob lease curated/_state/transform.lease (finite, renewed). A run waits while its raw
  manifest has no curated manifest. A quarantined run holds back every run after it until it is
  superseded by `totes retry` (a re-extract of its rows named <run_id>.r<n>, sorting right after it) or
  transformed after a fix (`totes transform RUN_ID`).
- load: every load takes the warehouse's advisory lock and checks the ledger inside it, so two
  draining loaders load each run once, in order (the second finds the first's runs in the ledger).

Listing is bounded: the cursor curated/_state/drain.json holds the newest run up to which every run is
loaded or superseded, and only the run manifests from that run's month on are listed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.contract import (
    DRAIN_CURSOR_NAME,
    QUARANTINE_PREFIX,
    RETRY_SUFFIX,
    RUNS_PREFIX,
    TRANSFORM_LEASE_NAME,
    run_id_from_blob,
)
from shared.errors import EtlError, TransientError
from shared.lake import ConcurrentUpdateError, Lake, Versioned, io_pool
from shared.load import LoadResult, load, load_message, parse_message
from shared.settings import Settings
from shared.transform.stage import TransformOutcome, lake_from_environment, transform

log = logging.getLogger(__name__)

# The transform lease's duration: the shortest finite blob lease, so a holder killed mid-drain blocks the
# next drain for at most this long (a live holder renews it every third of it).
TRANSFORM_LEASE_SECONDS = 15


NO_CURSOR = Versioned(None, None)


@dataclass(frozen=True)
class Pending:
    """What waits, in run order: runs for the transform, the quarantined run holding later ones back
    (and those runs), and runs for the load (None when no warehouse was read)."""

    transform: list[str]
    blocked_by: str | None = None
    held: list[str] = field(default_factory=list)
    load: list[str] | None = None
    drained_through: str | None = None  # every listed run up to this one is loaded or superseded once `load` is
    cursor: Versioned = NO_CURSOR  # the cursor blob as it was read with the listing


@dataclass(frozen=True)
class Listing:
    """One look at the lake: the raw, curated and quarantined runs from the cursor's month on, and the cursor."""

    raw: set[str]
    curated: set[str]
    quarantined: set[str]
    cursor: Versioned


@dataclass(frozen=True)
class TransformDrain:
    """What one transform drain did: each run's outcome in order, whether it yielded, what holds runs back."""

    outcomes: list[TransformOutcome] = field(default_factory=list)
    yielded: bool = False
    blocked_by: str | None = None
    pending: Pending | None = None  # what the last listing found waiting (with the loads, given settings)

    @property
    def load_message(self) -> str | None:
        """A load message for the newest run transformed (the load drains every curated run anyway)."""
        done = [o for o in self.outcomes if o.load_message is not None]
        return done[-1].load_message if done else None

    def summary(self) -> str:
        """One log line: runs transformed, quarantined, yielded, held back."""
        if self.yielded:
            return "transform: yielded: another invocation holds the transform lease and drains this run too"
        runs = ", ".join(f"{o.run_id} {o.status}" for o in self.outcomes) or "nothing pending"
        held = f"; quarantined run {self.blocked_by} holds later runs back (`totes retry`)" if self.blocked_by else ""
        return f"transform drain: {runs}{held}"


def read_cursor(lake: Lake) -> str | None:
    """The run up to which every run is loaded or superseded (None before the first drain)."""
    return _cursor_in(lake.read_versioned(lake.curated, DRAIN_CURSOR_NAME).data)


def _cursor_in(data: bytes | None) -> str | None:
    """The run a cursor blob's bytes name (None if absent or unreadable)."""
    if data is None:
        return None
    try:
        value = json.loads(data).get("done_through")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def list_runs(lake: Lake, container: str, prefix: str, since: str | None, now: datetime | None = None) -> set[str]:
    """The run ids under `prefix` ('_runs/' or '_quarantine/') from the month of run `since` on (all if None)."""
    return _list_starts(lake, container, prefix, _starts(prefix, since, now))


def _starts(prefix: str, since: str | None, now: datetime | None) -> list[str]:
    """The name prefixes to list for the runs under `prefix` from the month of run `since` on."""
    month = (since or "")[:6]
    # No cursor yet (or not a time-stamped run id): the whole prefix, once.
    timed = month.isdigit() and len(month) == 6
    return [f"{prefix}{m}" for m in _months(month, now)] if timed else [prefix]


def _list_starts(lake: Lake, container: str, prefix: str, starts: list[str]) -> set[str]:
    """The run ids of the manifests (or records) whose names start with any of `starts`."""
    found = set()
    for start in starts:
        for name in lake.list(container, start):
            if name.endswith(".json"):
                found.add(name[len(prefix) : -len(".json")])
    return found


def _months(first: str, now: datetime | None) -> list[str]:
    """YYYYMM from month `first` to the month a day from now (another instance's clock may run a little ahead)."""
    last = f"{(now or datetime.now(UTC)) + timedelta(days=1):%Y%m}"
    year, month = int(first[:4]), int(first[4:])
    months: list[str] = []
    while f"{year:04d}{month:02d}" <= last and len(months) < 1200:
        months.append(f"{year:04d}{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months or [first]


def pending(lake: Lake, settings: Settings | None = None) -> Pending:
    """The runs waiting per stage, in run order, from the lake (and the ledger when `settings` name a warehouse)."""
    return _waiting(_listings(lake), settings)


def _waiting(listed: Listing, settings: Settings | None) -> Pending:
    """The runs waiting per stage in `listed` (and the ledger when `settings` name a warehouse)."""
    from shared.backlog import loaded_runs

    since = _cursor_in(listed.cursor.data)
    raw = {r for r in listed.raw if since is None or r > since}
    curated = {r for r in listed.curated if since is None or r > since}
    quarantined = listed.quarantined
    superseded = {r for r in quarantined if any(other.startswith(r + RETRY_SUFFIX) for other in raw | curated)}
    todo: list[str] = []
    held: list[str] = []
    blocked_by = None
    for run in sorted(raw - curated - superseded):
        if blocked_by is not None:
            held.append(run)
        elif run in quarantined:
            blocked_by = run
        else:
            todo.append(run)
    if settings is None or settings.warehouse_db_url is None:
        return Pending(todo, blocked_by, held, cursor=listed.cursor)
    loaded = loaded_runs(settings, curated)
    waiting = sorted(curated - loaded)
    drained = since  # the last run before the first one neither curated (so loaded by this drain) nor superseded
    for run in sorted(raw | curated):
        if run not in curated and run not in superseded:
            break
        drained = run
    return Pending(todo, blocked_by, held, waiting, drained, listed.cursor)


def _listings(lake: Lake) -> Listing:
    """The raw runs, curated runs and quarantined runs from the cursor's month on, and the cursor.

    The cursor is read alongside the listings of this month (where it nearly always is), so a drain's check
    costs one storage round trip; the months before this one (or the whole prefix, without a cursor) are
    listed once the cursor is known, only when it points before this month."""
    now = datetime.now(UTC)
    places = ((lake.raw, RUNS_PREFIX), (lake.curated, RUNS_PREFIX), (lake.curated, QUARANTINE_PREFIX))
    pool = io_pool("drain-list", 2 * len(places) + 1)
    cursor = pool.submit(lake.read_versioned, lake.curated, DRAIN_CURSOR_NAME)
    recent = [_starts(prefix, f"{now:%Y%m}", now) for _, prefix in places]
    listed = [
        pool.submit(_list_starts, lake, container, prefix, starts)
        for (container, prefix), starts in zip(places, recent, strict=True)
    ]
    read = cursor.result()
    since = _cursor_in(read.data)
    earlier = [
        pool.submit(_list_starts, lake, container, prefix, [s for s in _starts(prefix, since, now) if s not in starts])
        for (container, prefix), starts in zip(places, recent, strict=True)
    ]
    found = [a.result() | b.result() for a, b in zip(listed, earlier, strict=True)]
    return Listing(found[0], found[1], found[2], read)


def drain_transforms(lake: Lake, *, wait_s: float = 0, settings: Settings | None = None) -> TransformDrain:
    """Transform every pending raw run in run order under the transform lease; yield if another holds it
    (after waiting up to `wait_s` seconds for it: the in-process cycle waits out a killed holder's lease).
    With `settings`, its last listing also gives the runs waiting for the load (`TransformDrain.pending`)."""
    outcomes: list[TransformOutcome] = []
    deadline = time.monotonic() + wait_s
    # Listed before the lease is taken: with nothing waiting there is nothing to lease (a run extracted after
    # this listing has an event of its own). A run listed here that another drain transforms before this one
    # gets the lease is found done by `transform` ("already_done").
    listed = _listings(lake)
    waiting = _waiting(listed, None)
    while waiting.transform:
        with lake.lease(lake.curated, TRANSFORM_LEASE_NAME, TRANSFORM_LEASE_SECONDS) as lease:
            if lease is None:
                if time.monotonic() < deadline:
                    time.sleep(1)
                    listed = _listings(lake)  # the holder may have drained them meanwhile
                    waiting = _waiting(listed, None)
                    continue
                log.info(
                    "transform: another invocation holds %s/%s; it drains this run too",
                    lake.curated,
                    TRANSFORM_LEASE_NAME,
                )
                return TransformDrain(outcomes, yielded=not outcomes)
            for run_id in waiting.transform:
                lease.check()  # still the only transform: go on
                outcome = transform(lake, run_id)
                outcomes.append(outcome)
                if outcome.status == "quarantined":
                    break  # the runs after it are held back now
        # Listed once the lease is released: runs extracted meanwhile, and any whose trigger found the lease
        # held (it relied on this drain), are seen here and drained by another round.
        listed = _listings(lake)
        waiting = _waiting(listed, None)
    last = _waiting(listed, settings) if settings is not None else waiting
    return TransformDrain(outcomes, blocked_by=waiting.blocked_by, pending=last)


def drain_loads(settings: Settings, lake: Lake, waiting: Pending | None = None) -> list[LoadResult]:
    """Load every curated run with no ledger row, in run order, each in its own transaction; then move the cursor.

    The runs are those of `waiting` (a listing with the loads, e.g. a transform drain's last) or of a listing
    made now."""
    if waiting is None or waiting.load is None:
        waiting = pending(lake, settings)
    results = [load(settings, lake, run_id) for run_id in waiting.load or ()]
    _advance_cursor(lake, waiting.drained_through, waiting.cursor)
    return results


def drain(settings: Settings, lake: Lake, *, wait_s: float = 0) -> tuple[TransformDrain, list[LoadResult]]:
    """The whole backlog, oldest first: every pending transform, then every pending load."""
    transformed = drain_transforms(lake, wait_s=wait_s, settings=settings)
    return transformed, drain_loads(settings, lake, transformed.pending)


def drain_message(settings: Settings, lake: Lake, body: str) -> LoadResult:
    """The load trigger's work: drain the load backlog (oldest first); the message's run is among it, or was
    loaded before (a no-op), or is unusable (TerminalError, like an unusable message: the trigger poisons it)."""
    run_id = parse_message(body)
    loaded = next((r for r in drain_loads(settings, lake) if r.run_id == run_id), None)
    return loaded or load_message(settings, lake, body)


def drain_backlog(settings: Settings, lake: Lake) -> None:
    """The extract timer's first step: drain the whole backlog; a failure is logged (the extract goes on)."""
    try:
        transformed, loads = drain(settings, lake)
    except EtlError as exc:
        log.error("backlog not drained (the extract goes on; the next tick retries): %s", exc)
        return
    log.info("%s; %d run(s) loaded", transformed.summary(), sum(not r.already_loaded for r in loads))


def drain_blob(blob_name: str, lake: Lake | None = None) -> TransformDrain:
    """The transform trigger's work: raw manifest `blob_name` landed, so drain the transform backlog."""
    run_id_from_blob(blob_name)  # a blob that is no run manifest is refused before any work
    return drain_transforms(lake or lake_from_environment())


def _advance_cursor(lake: Lake, done_through: str | None, read: Versioned) -> None:
    """Move the cursor forward to `done_through` from `read`, the cursor blob as last read (a hint for listing:
    a lost race or a storage error is ignored)."""
    if done_through is None or (_cursor_in(read.data) or "") >= done_through:
        return
    body = json.dumps({"done_through": done_through}).encode()
    try:
        lake.write_versioned(lake.curated, DRAIN_CURSOR_NAME, body, read.etag)
    except (ConcurrentUpdateError, TransientError) as exc:
        log.info("drain cursor not moved to %s (%s); the next drain lists a little more", done_through, exc)
