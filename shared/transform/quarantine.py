"""Quarantine: a run whose raw input cannot be transformed gets a record curated/_quarantine/<run_id>.json
and an ERROR log line with the marker TOTES_QUARANTINE; its raw files stay, and the record does not block
a later re-run of the same run_id once the cause is fixed. Until then it holds back the runs after it
(shared.drain); `totes retry` supersedes it (shared.extract.retry adds `superseded_by` to the record)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from shared.contract import quarantine_name
from shared.lake import ConcurrentUpdateError, Lake
from shared.transform.errors import BadRunError

log = logging.getLogger("shared.transform.stage")

QUARANTINE_MARKER = "TOTES_QUARANTINE"
# Attempts at writing the record against concurrent writers of the same run's record.
RECORD_ATTEMPTS = 5


def quarantine(lake: Lake, exc: BadRunError) -> str:
    """Record why run `exc.run_id` is refused and log the alert line; the record's name in the curated container."""
    name = quarantine_name(exc.run_id)
    record = {
        "run_id": exc.run_id,
        "reason": exc.reason,
        "file": exc.file,
        "columns": list(exc.columns),
        "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        current = lake.read_versioned(lake.curated, name)
        try:
            lake.write_versioned(lake.curated, name, data, current.etag)
            break
        except ConcurrentUpdateError:
            if attempt == RECORD_ATTEMPTS:
                raise
    log.error(
        "%s run=%s file=%s column=%s reason=%s; raw files kept, record %s/%s; the runs after it wait: fix the "
        "source rows and `totes retry %s` (or fix a lake-side cause and `totes transform` it)",
        QUARANTINE_MARKER,
        exc.run_id,
        exc.file or "-",
        ",".join(exc.columns) or "-",
        exc.reason,
        lake.curated,
        name,
        exc.run_id,
    )
    return name
