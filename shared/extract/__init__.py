"""The extract stage: totesys (read-only, one snapshot per run) -> raw Parquet + run manifest in the lake.

`extract(settings, lake)` is the whole API; the trigger, the CLI and the pipeline call it.
"""

from shared.contract import RUNS_PREFIX
from shared.extract.source import DEFAULT_BATCH_ROWS
from shared.extract.stage import (
    CHANGES_MARKER,
    LEASE_BLOB,
    ExtractResult,
    data_blob_name,
    extract,
    manifest_blob_name,
    new_run_id,
)
from shared.extract.state import STATE_BLOB, ExtractState

__all__ = [
    "CHANGES_MARKER",
    "DEFAULT_BATCH_ROWS",
    "LEASE_BLOB",
    "RUNS_PREFIX",
    "STATE_BLOB",
    "ExtractResult",
    "ExtractState",
    "data_blob_name",
    "extract",
    "manifest_blob_name",
    "new_run_id",
]
