"""The transform's exceptions. All are terminal: the run's raw input stays in the lake for a replay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.errors import TerminalError

# How many offending ids a message lists before it summarises the rest.
_SHOWN = 10


def describe_ids(ids: Iterable[Any]) -> str:
    """A short list of ids for a message, duplicates dropped, order kept: '1, 2, 3 and 7 more'."""
    values = list(dict.fromkeys(ids))
    shown = ", ".join(str(v) for v in values[:_SHOWN])
    rest = len(values) - _SHOWN
    return f"{shown} and {rest} more" if rest > 0 else shown


class MissingColumnError(TerminalError):
    """A raw or state frame lacks a column the builders read."""


class MissingReferenceError(TerminalError):
    """A row references a parent (department, address) that is neither in the state nor in the run."""


class InvalidValueError(TerminalError):
    """A source value cannot be converted to its warehouse type (e.g. a text date that is not a date)."""


class BadRunError(TerminalError):
    """The run's raw input cannot be transformed; the run is quarantined and its raw files are kept."""

    def __init__(self, run_id: str, reason: str, *, file: str | None = None, columns: Iterable[str] = ()) -> None:
        self.run_id = run_id
        self.reason = reason
        self.file = file
        self.columns = tuple(columns)
        where = f" file {file}" if file else ""
        what = f" column(s) {', '.join(self.columns)}" if self.columns else ""
        super().__init__(f"run {run_id}{where}{what}: {reason}")
