"""The whole pure transform of one run: raw source rows and the previous state in, star rows out.

The state is the current rows of the parent tables that joins need (STATE_TABLES: department, staff,
address, counterparty); every merge is "latest last_updated wins", so applying changes in any order ends in
the same state. A run's source deletions (a reconcile run's `deleted` ids) are dropped from it, so that a
later department or address change does not re-emit a deleted staff member or counterparty, and carried to
the curated manifest per warehouse table for the load to mark. shared.transform.store keeps the state in
the lake; nothing here does I/O.

Propagation (docs/architecture.md, rule 5): a changed department re-emits dim_staff for every staff row of it, a
changed address re-emits dim_location and every dim_counterparty whose legal address it is; changed
staff and counterparty rows join to the current department and address (the state merged with the
run's own changes). Dimension rows are always built from that merged current state, so a replayed old
run emits today's values, never older ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial

import polars as pl

from shared.contract import (
    DELETED_IN,
    NULLABLE_OUTPUT,
    OUTPUT_SCHEMA,
    SOURCE_SCHEMA,
    TABLE_KEYS,
    primary_key,
    required_columns,
    required_schema,
)
from shared.transform.builders import (
    build_dim_counterparty,
    build_dim_currency,
    build_dim_date_of,
    build_dim_design,
    build_dim_location,
    build_dim_payment_type,
    build_dim_staff,
    build_dim_transaction,
    build_fact_payment,
    build_fact_purchase_order,
    build_fact_sales_order,
    fact_dates,
    latest_per_key,
)
from shared.transform.errors import InvalidValueError, MissingColumnError, MissingReferenceError, describe_ids

__all__ = [
    "FACT_SOURCES",
    "SOURCE_OF",
    "STATE_TABLES",
    "InvalidValueError",
    "MissingColumnError",
    "MissingReferenceError",
    "TransformResult",
    "advance_state",
    "build_from_source",
    "build_run",
    "build_state_dimensions",
    "conform_source",
    "deleted_in_warehouse",
    "drop_deleted",
    "merge_state",
    "null_warnings",
    "required_columns",
    "transform_run",
]


@dataclass(frozen=True)
class TransformResult:
    """What one run produced.

    tables: warehouse table -> its rows from this run, ONLY for tables with at least one row, in
        load order (dim_date, dimensions, facts); columns exactly contract.OUTPUT_SCHEMA[table].
    state: the new current state of every STATE_TABLES table (all four, possibly empty), columns
        contract.required_columns(table), one row per key, sorted by key.
    warnings: human-readable problems that did not stop the run (e.g. an unknown currency code).
    """

    tables: dict[str, pl.DataFrame]
    state: dict[str, pl.DataFrame]
    warnings: list[str] = field(default_factory=list)


def conform_source(frame: pl.DataFrame, table: str, origin: str = "raw") -> pl.DataFrame:
    """`frame` reduced to the required columns of source `table`, cast to their source dtypes.

    Extra columns are dropped (the caller warns about them); a missing one raises MissingColumnError,
    a value that does not fit its dtype InvalidValueError. `origin` ('raw' or 'state') is for messages.
    """
    schema = required_schema(table)
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise MissingColumnError(
            f"{origin} table {table!r} lacks column(s) {', '.join(missing)} that the transform needs; "
            f"nothing of the run was transformed. Deliver {table} with its full column list (a source "
            "schema change needs a pipeline change first), then transform the run again"
        )
    try:
        return frame.select([pl.col(c).cast(t) for c, t in schema.items()])
    except pl.exceptions.PolarsError as exc:
        raise InvalidValueError(
            f"{origin} table {table!r} has values that do not fit the source types {schema}: {exc}; "
            "nothing of the run was transformed"
        ) from exc


def _empty_source(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=required_schema(table))


def _ids(frame: pl.DataFrame | None, column: str) -> pl.Series:
    if frame is None:
        return pl.Series(column, [], dtype=pl.Int32)
    return frame.get_column(column).unique()


def null_warnings(table: str, frame: pl.DataFrame) -> list[str]:
    """A warning per NOT NULL column of output `table` that holds nulls in `frame` (the load would reject it)."""
    key = TABLE_KEYS[table]
    warnings = []
    for column in OUTPUT_SCHEMA[table]:
        if column in NULLABLE_OUTPUT.get(table, ()) or not frame.get_column(column).null_count():
            continue
        ids = frame.filter(pl.col(column).is_null()).get_column(key).to_list()
        warnings.append(
            f"{table}.{column} is null for {key} {describe_ids(ids)}, but the warehouse column is NOT NULL: "
            "the load will reject this run until the source value is set"
        )
    return warnings


# The source tables whose current rows the transform keeps between runs (the parents that joins need).
STATE_TABLES: tuple[str, ...] = ("department", "staff", "address", "counterparty")


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
    # The old rows first, so that on equal last_updated the change, later in frame order, wins.
    return latest_per_key(pl.concat([old.select(changed.columns).cast(changed.schema), changed], how="vertical"), key)


def deleted_in_warehouse(deleted: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Source table -> deleted ids, as warehouse table -> natural keys to mark (a department has no rows)."""
    return {DELETED_IN[table]: ids for table, ids in deleted.items() if table in DELETED_IN and ids}


def drop_deleted(state: Mapping[str, pl.DataFrame], deleted: Mapping[str, tuple[int, ...]]) -> dict[str, pl.DataFrame]:
    """The transform state without the rows of `deleted` (source table -> ids)."""
    return {
        table: frame.filter(~pl.col(primary_key(table)).is_in(list(deleted[table]))) if deleted.get(table) else frame
        for table, frame in state.items()
    }


def advance_state(run: Mapping[str, pl.DataFrame], state: Mapping[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The new current rows of every STATE_TABLES table: the previous `state` merged with the run's conformed rows."""
    current: dict[str, pl.DataFrame] = {}
    for table in STATE_TABLES:
        old = conform_source(state[table], table, "state") if table in state else None
        if table in run:
            current[table] = merge_state(old, run[table], primary_key(table))
        else:
            current[table] = old if old is not None else _empty_source(table)
    return current


def build_state_dimensions(
    run: Mapping[str, pl.DataFrame], current: Mapping[str, pl.DataFrame]
) -> dict[str, pl.DataFrame]:
    """dim_staff, dim_location and dim_counterparty rows for what the run's parent tables changed (rule 5)."""
    tables: dict[str, pl.DataFrame] = {}
    changed_departments = _ids(run.get("department"), "department_id")
    staff = current["staff"].filter(
        pl.col("staff_id").is_in(_ids(run.get("staff"), "staff_id").implode())
        | pl.col("department_id").is_in(changed_departments.implode())
    )
    tables["dim_staff"] = build_dim_staff(staff, current["department"])

    changed_addresses = _ids(run.get("address"), "address_id")
    address = current["address"].filter(pl.col("address_id").is_in(changed_addresses.implode()))
    tables["dim_location"] = build_dim_location(address)
    counterparty = current["counterparty"].filter(
        pl.col("counterparty_id").is_in(_ids(run.get("counterparty"), "counterparty_id").implode())
        | pl.col("legal_address_id").is_in(changed_addresses.implode())
    )
    tables["dim_counterparty"] = build_dim_counterparty(counterparty, current["address"])
    return tables


def build_from_source(table: str, source: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Output `table` (one of SOURCE_OF) from its conformed source rows; and its warnings."""
    if table == "dim_currency":
        return build_dim_currency(source)
    return _SINGLE_SOURCE_BUILDERS[table](source), []


_SINGLE_SOURCE_BUILDERS: dict[str, Callable[[pl.DataFrame], pl.DataFrame]] = {
    "fact_sales_order": build_fact_sales_order,
    "fact_purchase_order": build_fact_purchase_order,
    "fact_payment": build_fact_payment,
    "dim_design": build_dim_design,
    "dim_payment_type": build_dim_payment_type,
    "dim_transaction": build_dim_transaction,
}
# Output tables built from one source table alone, in build order (facts first: dim_date needs their dates).
FACT_SOURCES: dict[str, str] = {
    "fact_sales_order": "sales_order",
    "fact_purchase_order": "purchase_order",
    "fact_payment": "payment",
}
SOURCE_OF: dict[str, str] = {
    **FACT_SOURCES,
    "dim_currency": "currency",
    "dim_design": "design",
    "dim_payment_type": "payment_type",
    "dim_transaction": "transaction",
}


# Build one output table from one run's tables: a loader per source table present in the run, giving its
# conformed rows in chunks, each holding every row of its keys, in ascending key ranges (one chunk for all but
# very large tables; called once per table that needs it, so a file can stay on disk until then).
Sources = Mapping[str, Callable[[], Iterable[pl.DataFrame]]]
# Receives each output table's rows as chunks (sorted by key across chunks when each is sorted); it may
# receive no rows at all, or empty chunks never.
Emit = Callable[[str, Iterable[pl.DataFrame]], None]


def build_run(
    sources: Sources, state: Mapping[str, pl.DataFrame], emit: Emit
) -> tuple[dict[str, pl.DataFrame], list[str]]:
    """Build every output table of one run, one at a time and chunk by chunk, and hand each to `emit`;
    return the new state (all STATE_TABLES) and the warnings (builders' first, then nulls in contract order).

    Facts first (dim_date needs their dates), then dim_date, the state dimensions (docs/architecture.md, rule 5) and the
    single-source dimensions. The caller decides what `emit` does (keep the frames, or encode them and drop
    them): the memory needed is then that of the largest single chunk, not of the run. Every builder works
    per key, so a table built chunk by chunk holds the same rows as one built whole.
    """
    null_found: dict[str, list[str]] = {}
    warnings: list[str] = []

    def out(table: str, chunks: Iterable[pl.DataFrame]) -> None:
        found = null_found.setdefault(table, [])

        def checked() -> Iterator[pl.DataFrame]:
            for frame in chunks:
                if frame.height:
                    found.extend(null_warnings(table, frame))
                    yield frame

        emit(table, checked())

    def built(name: str, source: str, dates: list[pl.Series] | None = None) -> Iterator[pl.DataFrame]:
        for chunk in sources[source]():
            frame, built_warnings = build_from_source(name, chunk)
            warnings.extend(built_warnings)
            if dates is not None:
                dates.append(fact_dates(name, frame))
            yield frame

    dates: list[pl.Series] = []
    for name, source in FACT_SOURCES.items():
        if source in sources:
            out(name, built(name, source, dates))
    out("dim_date", [build_dim_date_of(dates)])
    parents = {t: _whole(sources[t]()) for t in STATE_TABLES if t in sources}
    current = advance_state(parents, state)
    for name, frame in build_state_dimensions(parents, current).items():
        out(name, [frame])
    for name, source in SOURCE_OF.items():
        if name not in FACT_SOURCES and source in sources:
            out(name, built(name, source))
    for table in OUTPUT_SCHEMA:
        warnings += null_found.get(table, [])
    return current, warnings


def _whole(chunks: Iterable[pl.DataFrame]) -> pl.DataFrame:
    frames = list(chunks)
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")


def transform_run(raw: Mapping[str, pl.DataFrame], state: Mapping[str, pl.DataFrame]) -> TransformResult:
    """One run's raw source rows (changed tables only) and the previous state -> star rows and new state."""
    warnings: list[str] = []
    run: dict[str, pl.DataFrame] = {}
    for table, frame in raw.items():
        if table not in SOURCE_SCHEMA:
            warnings.append(f"raw table {table!r} is not a source table the transform knows; it was ignored")
            continue
        run[table] = conform_source(frame, table, "raw")

    tables: dict[str, pl.DataFrame] = {}

    def keep(table: str, chunks: Iterable[pl.DataFrame]) -> None:
        if frames := list(chunks):
            tables[table] = _whole(frames)

    current, built = build_run({t: partial(_same, f) for t, f in run.items()}, state, keep)
    produced = {t: tables[t] for t in OUTPUT_SCHEMA if t in tables}
    return TransformResult(tables=produced, state=current, warnings=warnings + built)


def _same(frame: pl.DataFrame) -> list[pl.DataFrame]:
    return [frame]
