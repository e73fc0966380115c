"""The extract's small mutable state: per-table watermarks and when the source was last checked.

One JSON blob in the raw container outside the immutable prefixes, read with its ETag and replaced only
if unchanged since (Lake.write_versioned), so two overlapping runs cannot both advance it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from shared.contract import WATERMARKS_NAME
from shared.errors import TerminalError
from shared.extract.source import ROW_HASH

STATE_BLOB = WATERMARKS_NAME


def iso(value: datetime) -> str:
    """ISO-8601 text of a timestamp, to the microsecond (source timestamps stay naive, as stored)."""
    return value.isoformat(timespec="microseconds")


@dataclass(frozen=True)
class ExtractState:
    """Watermark per table (max last_updated extracted so far), the last run, and the last check."""

    tables: dict[str, datetime] = field(default_factory=dict)
    last_run_id: str | None = None
    last_checked_at: datetime | None = None
    last_changes_at: datetime | None = None
    # Source columns the pipeline does not know, already reported (warned about once, then archived).
    extra_columns: dict[str, list[str]] = field(default_factory=dict)
    # Per table, (key, row hash) of the rows within the lookback of the watermark, already archived, encoded
    # (encode_tail: base64 of the keys as little-endian int32, then the hashes as uint64, by key; a list of
    # [key, hash] pairs in states written before 2026-12-03, read alike); None: too many to keep, so the next
    # run re-writes its whole window.
    tails: dict[str, str | None] = field(default_factory=dict)

    # A run that wrote its data files and was about to write its manifest: the state it advances to.
    # The next run adopts it if that manifest exists (the run committed) and drops it otherwise.
    pending_run_id: str | None = None
    pending: ExtractState | None = None

    @classmethod
    def parse(cls, data: bytes | None, where: str = STATE_BLOB) -> ExtractState:
        """The state stored in a blob's bytes (the empty state when the blob does not exist)."""
        if data is None:
            return cls()
        try:
            return cls._from_doc(json.loads(data))
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise TerminalError(
                f"the extract state {where} is not valid JSON state ({exc}): repair it, or delete it to "
                "re-extract every table in full (downstream dedupes the overlap)"
            ) from exc

    @classmethod
    def _from_doc(cls, doc: dict[str, Any]) -> ExtractState:
        pending = doc.get("pending")
        return cls(
            tables={t: datetime.fromisoformat(v) for t, v in doc.get("tables", {}).items()},
            last_run_id=doc.get("last_run_id"),
            last_checked_at=_parse_optional(doc.get("last_checked_at")),
            last_changes_at=_parse_optional(doc.get("last_changes_at")),
            extra_columns={t: list(v) for t, v in doc.get("extra_columns", {}).items()},
            tails={t: _stored_tail(v) for t, v in doc.get("tails", {}).items()},
            pending_run_id=None if pending is None else str(pending["run_id"]),
            pending=None if pending is None else cls._from_doc(pending["state"]),
        )

    def to_json(self) -> bytes:
        """The state as UTF-8 JSON."""
        return json.dumps(self._doc(), separators=(",", ":")).encode()

    def _doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "tables": {t: iso(v) for t, v in sorted(self.tables.items())},
            "last_run_id": self.last_run_id,
            "last_checked_at": iso(self.last_checked_at) if self.last_checked_at else None,
            "last_changes_at": iso(self.last_changes_at) if self.last_changes_at else None,
            "extra_columns": dict(sorted(self.extra_columns.items())),
            "tails": dict(sorted(self.tails.items())),
        }
        if self.pending is not None:
            doc["pending"] = {"run_id": self.pending_run_id, "state": self.pending._doc()}
        return doc

    def with_pending(self, run_id: str, advanced: ExtractState) -> ExtractState:
        """This state, recording that run `run_id` is about to commit and then advance it to `advanced`."""
        return replace(self, pending_run_id=run_id, pending=advanced)

    def resolved(self, committed: bool) -> ExtractState:
        """The state once a pending run is settled: its advanced state if it `committed` (its manifest
        exists), else this state without it."""
        if self.pending is not None and committed:
            return self.pending
        return replace(self, pending_run_id=None, pending=None)

    def lower_bound(self, table: str, lookback: timedelta) -> datetime | None:
        """The exclusive lower bound of last_updated for `table`: watermark - lookback (None: all rows)."""
        watermark = self.tables.get(table)
        return None if watermark is None else watermark - lookback

    def archived(self, table: str, key: str) -> pl.DataFrame | None:
        """(key, row hash) of `table`'s rows already archived within the lookback; None if not known."""
        encoded = self.tails.get(table)
        if encoded is None:
            return None
        raw = base64.b64decode(encoded)
        rows = len(raw) // 12
        return pl.DataFrame(
            {
                key: np.frombuffer(raw, dtype="<i4", count=rows),
                ROW_HASH: np.frombuffer(raw, dtype="<u8", count=rows, offset=4 * rows),
            },
            schema={key: pl.Int32(), ROW_HASH: pl.UInt64()},
        )

    def clamped(self, clock: datetime) -> tuple[ExtractState, dict[str, datetime]]:
        """This state with no watermark past the source's `clock` (UTC), and the watermarks moved back
        (a state written before watermarks were bounded by the clock, or a source clock set back)."""
        ahead = {t: v for t, v in self.tables.items() if v > _like(clock, v)}
        if not ahead:
            return self, {}
        return replace(self, tables={**self.tables, **{t: _like(clock, v) for t, v in ahead.items()}}), ahead

    def checked(
        self, at: datetime, extra_columns: dict[str, list[str]], tails: dict[str, pl.DataFrame | None]
    ) -> ExtractState:
        """The state after a run that found no changed rows at `at`."""
        return replace(self, last_checked_at=at, extra_columns=extra_columns, tails=_tails(tails))

    def advanced(
        self,
        run_id: str,
        at: datetime,
        maxima: dict[str, datetime],
        extra_columns: dict[str, list[str]],
        tails: dict[str, pl.DataFrame | None],
    ) -> ExtractState:
        """The state after run `run_id` extracted rows up to `maxima` (per table); never moves back."""
        tables = dict(self.tables)
        for table, newest in maxima.items():
            tables[table] = max(newest, tables.get(table, newest))
        return ExtractState(tables, run_id, at, at, extra_columns, _tails(tails))


def _tails(frames: dict[str, pl.DataFrame | None]) -> dict[str, str | None]:
    return {t: None if f is None else encode_tail(f) for t, f in frames.items()}


def encode_tail(frame: pl.DataFrame) -> str:
    """A tail's (key, row hash) rows, sorted, as base64 text: the keys as little-endian int32, then the hashes
    as uint64 (12 bytes a row: a JSON list of pairs took about 30, and its parse and dump grew each run's
    extract with the lookback's rows)."""
    ordered = frame.sort(frame.columns)
    keys = ordered.get_column(frame.columns[0]).to_numpy().astype("<i4")
    hashes = ordered.get_column(frame.columns[1]).to_numpy().astype("<u8")
    return base64.b64encode(keys.tobytes() + hashes.tobytes()).decode("ascii")


def _stored_tail(value: str | list[list[int]] | None) -> str | None:
    """A tail as stored: encoded text, or the pairs of an older state (encoded here), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(base64.b64decode(value, validate=True)) % 12:
            raise ValueError("a tail's encoded rows are not 12 bytes each")
        return value
    pairs = pl.DataFrame(
        [[int(k), int(h)] for k, h in value], schema={"key": pl.Int32(), ROW_HASH: pl.UInt64()}, orient="row"
    )
    return encode_tail(pairs)


def _like(clock: datetime, value: datetime) -> datetime:
    """The UTC `clock` comparable with `value` (naive when `value` is)."""
    utc = clock.astimezone(UTC)
    return utc.replace(tzinfo=None) if value.tzinfo is None else utc


def _parse_optional(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
