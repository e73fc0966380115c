"""The transform's state in the lake: curated/_state/<table>.parquet per STATE_TABLES table, the current
department, staff, address and counterparty rows that joins need. Read with its ETag and written only if
unchanged since; a lost race re-reads and re-merges (the merge is order-insensitive)."""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from shared.contract import primary_key, state_name
from shared.errors import TerminalError
from shared.lake import ConcurrentUpdateError, Lake, io_pool
from shared.transform.model import STATE_TABLES, merge_state
from shared.transform.raw import IO_THREADS

# Attempts at an ETag-guarded state update before giving up with a TransientError (the trigger retries).
STATE_ATTEMPTS = 5


@dataclass(frozen=True)
class StateBlob:
    """One state table as read: its bytes and ETag (None, None before the first run) and its rows."""

    data: bytes | None
    etag: str | None
    frame: pl.DataFrame | None


def read_state(lake: Lake) -> dict[str, StateBlob]:
    """The transform's current state, per state table: its blob (bytes + ETag) and rows."""
    pool = io_pool("state-read", IO_THREADS)
    return dict(zip(STATE_TABLES, pool.map(lambda t: read_state_table(lake, t), STATE_TABLES), strict=True))


def read_state_table(lake: Lake, table: str) -> StateBlob:
    """One state table's blob and rows (all None before the first run wrote it)."""
    blob = lake.read_versioned(lake.curated, state_name(table))
    if blob.data is None:
        return StateBlob(None, None, None)
    try:
        frame = pl.read_parquet(io.BytesIO(blob.data))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TerminalError(
            f"transform state {lake.curated}/{state_name(table)} is not readable Parquet ({exc}); "
            "no run can be transformed until it is rebuilt (delete the _state blobs and replay the runs)"
        ) from exc
    return StateBlob(blob.data, blob.etag, frame)


def write_state(lake: Lake, read: Mapping[str, StateBlob], new: Mapping[str, pl.DataFrame]) -> None:
    """Store the new state tables, each only if changed (the tables at once: each blob is guarded on its own);
    on a lost ETag race re-read, re-merge, retry."""
    pool = io_pool("state-write", IO_THREADS)
    for written in [pool.submit(_write_state_table, lake, read, new, table) for table in sorted(new)]:
        written.result()


def _write_state_table(lake: Lake, read: Mapping[str, StateBlob], new: Mapping[str, pl.DataFrame], table: str) -> None:
    key = primary_key(table)
    frame = new[table].sort(key)
    blob = read.get(table, StateBlob(None, None, None))
    for attempt in range(1, STATE_ATTEMPTS + 1):
        data = _parquet(frame)
        if data == blob.data:
            return
        try:
            lake.write_versioned(lake.curated, state_name(table), data, blob.etag)
            return
        except ConcurrentUpdateError as exc:
            if attempt == STATE_ATTEMPTS:
                raise ConcurrentUpdateError(
                    f"{lake.curated}/{state_name(table)} kept changing under {STATE_ATTEMPTS} attempts "
                    "to update it; the run's manifest is not written, so a retry transforms it again"
                ) from exc
            time.sleep(0.05 * attempt)
            blob = read_state_table(lake, table)
            frame = merge_state(blob.frame, frame, key).sort(key)


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()
