"""Source deletions in a raw run (a reconcile run's `deleted` ids): carried to the curated manifest per warehouse
table for the load to mark (etl_deleted_at), and dropped from the transform's state so that a later department
or address change does not re-emit a deleted staff member or counterparty."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from shared.contract import DELETED_IN, primary_key


def deleted_in_warehouse(deleted: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Source table -> deleted ids, as warehouse table -> natural keys to mark (a department has no rows)."""
    return {DELETED_IN[table]: ids for table, ids in deleted.items() if table in DELETED_IN and ids}


def drop_deleted(state: Mapping[str, pl.DataFrame], deleted: Mapping[str, tuple[int, ...]]) -> dict[str, pl.DataFrame]:
    """The transform state without the rows of `deleted` (source table -> ids)."""
    return {
        table: frame.filter(~pl.col(primary_key(table)).is_in(list(deleted[table]))) if deleted.get(table) else frame
        for table, frame in state.items()
    }
