"""The transform's current state of the parent tables that joins need (department, staff, address,
counterparty), and the pure merge that advances it. The I/O code persists it; nothing here does I/O.

Every merge is "latest last_updated wins", so applying changes in any order ends in the same state.
"""

from __future__ import annotations

import polars as pl

from shared.transform.errors import MissingColumnError

# The source tables whose current rows the transform keeps between runs.
STATE_TABLES: tuple[str, ...] = ("department", "staff", "address", "counterparty")
_ORDER = "__etl_order"
_ARRIVAL = "__etl_arrival"


def _last_of_key(key: str) -> pl.Expr:
    """True on the last row of each run of equal keys (in a frame sorted by key): the winning version."""
    return (pl.col(key) != pl.col(key).shift(-1)).fill_null(True)


def latest_per_key(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """One row per `key`: the row with the greatest last_updated; on a tie the last in frame order.

    A tie is broken by position because the extract appends rows in read order, and a later read of a
    row whose values changed without its last_updated changing holds the newer values.
    """
    ordered = frame.with_row_index(_ORDER).sort([key, "last_updated", _ORDER])
    return ordered.filter(_last_of_key(key)).drop(_ORDER)


def merge_state(old: pl.DataFrame | None, changed: pl.DataFrame, key: str) -> pl.DataFrame:
    """Current rows (one per `key`, sorted by it) after applying `changed` to `old`, with the columns of `changed`.

    A row of `changed` replaces the current row only if its last_updated is the same or later, so an
    older change applied after a newer one keeps the newer; on equal last_updated the change wins.
    """
    if old is None or old.height == 0:
        return latest_per_key(changed, key)
    missing = [c for c in changed.columns if c not in old.columns]
    if missing:
        raise MissingColumnError(
            f"the transform state keyed by {key!r} lacks column(s) {', '.join(missing)}; "
            "rebuild the state (replay the runs from the first) before transforming further runs"
        )
    both = pl.concat(
        [
            old.select(changed.columns).cast(changed.schema).with_columns(pl.lit(0, pl.Int8).alias(_ARRIVAL)),
            changed.with_columns(pl.lit(1, pl.Int8).alias(_ARRIVAL)),
        ],
        how="vertical",
    )
    ordered = both.with_row_index(_ORDER).sort([key, "last_updated", _ARRIVAL, _ORDER])
    return ordered.filter(_last_of_key(key)).drop(_ORDER, _ARRIVAL)
