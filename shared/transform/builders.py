"""Builders of the eleven warehouse tables: source frames in, warehouse rows out (pure, vectorised).

Each builder takes source frames with at least the required columns (shared.contract) and
returns exactly the output columns of its table (contract.OUTPUT_SCHEMA), one row per natural key for
dimensions (the latest version given, `latest_per_key`) and one row per distinct version for facts, sorted
by key. dim_date's calendar attributes are in English whatever the machine's locale.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache

import polars as pl
import pycountry

from shared.contract import DAY_NAMES, FACT_DATE_COLUMNS, MONTH_NAMES, OUTPUT_SCHEMA
from shared.transform.errors import InvalidValueError, MissingReferenceError, describe_ids
from shared.transform.hashing import row_hash

_FOUND = "__etl_found"
_ROW = "__etl_row"
_ORDER = "__etl_order"
_DAYS = dict(enumerate(DAY_NAMES, start=1))
_MONTHS = dict(enumerate(MONTH_NAMES, start=1))
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"


def _text(column: str) -> pl.Expr:
    """A column as text for messages, null spelled 'null'."""
    return pl.col(column).cast(pl.String).fill_null("null")


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


def is_iso_date(column: str) -> pl.Expr:
    """True where the text `column` is exactly 'YYYY-MM-DD' and a real calendar day (null stays null)."""
    text = pl.col(column)
    return text.str.contains(ISO_DATE) & text.str.to_date("%Y-%m-%d", strict=False).is_not_null()


def _conform(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """The frame with exactly the output columns of `table`, in order and with the contract dtypes."""
    schema = OUTPUT_SCHEMA[table]
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


def _join_parent(
    children: pl.DataFrame,
    parents: pl.DataFrame,
    *,
    child_table: str,
    child_key: str,
    fk: str,
    parent_table: str,
    parent_key: str,
) -> pl.DataFrame:
    """Children left-joined to their parent rows (parent columns suffixed _parent); a child whose parent
    is unknown raises MissingReferenceError naming both sides."""
    parent_rows = parents.rename(lambda c: c if c == parent_key else f"{c}_parent").with_columns(
        pl.lit(True).alias(_FOUND)
    )
    joined = children.join(parent_rows, left_on=fk, right_on=parent_key, how="left", maintain_order="left")
    orphans = joined.filter(pl.col(_FOUND).is_null())
    if orphans.height:
        pairs = orphans.sort(child_key).select(
            pl.format("{} {} -> {} {}", pl.lit(child_key), _text(child_key), pl.lit(fk), _text(fk))
        )
        raise MissingReferenceError(
            f"{orphans.height} {child_table} row(s) reference a {parent_table} that is neither in the transform "
            f"state nor in this run: {describe_ids(pairs.to_series())}. Nothing of the run was transformed; "
            f"check that the extract delivered the {parent_table} table (replaying the runs from the first "
            "rebuilds the state), then transform the run again"
        )
    return joined.drop(_FOUND)


UNKNOWN_LOCATION = "Unknown"


def build_dim_staff(staff: pl.DataFrame, department: pl.DataFrame) -> pl.DataFrame:
    """dim_staff rows: one per staff_id of `staff` (latest version), joined to its row of `department`."""
    joined = _join_parent(
        latest_per_key(staff, "staff_id"),
        latest_per_key(department, "department_id"),
        child_table="staff",
        child_key="staff_id",
        fk="department_id",
        parent_table="department",
        parent_key="department_id",
    )
    return _conform(
        joined.with_columns(
            pl.col("department_name_parent").alias("department_name"),
            # department.location is nullable in the source, dim_staff.location is NOT NULL in the contract
            pl.col("location_parent").fill_null(UNKNOWN_LOCATION).alias("location"),
            pl.max_horizontal("last_updated", "last_updated_parent").alias("etl_source_updated"),
        ),
        "dim_staff",
    )


def build_dim_location(address: pl.DataFrame) -> pl.DataFrame:
    """dim_location rows: one per address_id of `address` (latest version); location_id = address_id."""
    latest = latest_per_key(address, "address_id")
    return _conform(latest.rename({"address_id": "location_id", "last_updated": "etl_source_updated"}), "dim_location")


@cache
def _iso_currency_names() -> dict[str, str]:
    return {currency.alpha_3: currency.name for currency in pycountry.currencies}


def build_dim_currency(currency: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """dim_currency rows, one per currency_id (latest version), and warnings for codes not in ISO 4217.

    currency_name is the ISO 4217 English name (pycountry); an unknown code keeps the code as its name.
    """
    latest = latest_per_key(currency, "currency_id")
    iso_name = (
        pl.col("currency_code")
        .str.strip_chars()
        .str.to_uppercase()
        .replace_strict(_iso_currency_names(), default=None, return_dtype=pl.String)
    )
    named = latest.with_columns(iso_name.alias("iso_name"))
    unknown = named.filter(pl.col("iso_name").is_null())
    warnings = []
    if unknown.height:
        listed = unknown.select(pl.format("currency_id {} '{}'", "currency_id", _text("currency_code"))).to_series()
        warnings.append(
            f"dim_currency: {unknown.height} currency code(s) not in ISO 4217 (pycountry): "
            f"{describe_ids(listed.to_list())}; their currency_name is the code itself"
        )
    frame = named.with_columns(
        pl.coalesce("iso_name", "currency_code").alias("currency_name"),
        pl.col("last_updated").alias("etl_source_updated"),
    )
    return _conform(frame, "dim_currency"), warnings


def build_dim_design(design: pl.DataFrame) -> pl.DataFrame:
    """dim_design rows: one per design_id of `design` (latest version)."""
    latest = latest_per_key(design, "design_id")
    return _conform(latest.rename({"last_updated": "etl_source_updated"}), "dim_design")


def build_dim_counterparty(counterparty: pl.DataFrame, address: pl.DataFrame) -> pl.DataFrame:
    """dim_counterparty rows: one per counterparty_id (latest version), joined to its legal address."""
    joined = _join_parent(
        latest_per_key(counterparty, "counterparty_id"),
        latest_per_key(address, "address_id"),
        child_table="counterparty",
        child_key="counterparty_id",
        fk="legal_address_id",
        parent_table="address",
        parent_key="address_id",
    )
    frame = joined.select(
        "counterparty_id",
        "counterparty_legal_name",
        pl.col("address_line_1_parent").alias("counterparty_legal_address_line_1"),
        pl.col("address_line_2_parent").alias("counterparty_legal_address_line2"),
        pl.col("district_parent").alias("counterparty_legal_district"),
        pl.col("city_parent").alias("counterparty_legal_city"),
        pl.col("postal_code_parent").alias("counterparty_legal_postal_code"),
        pl.col("country_parent").alias("counterparty_legal_country"),
        pl.col("phone_parent").alias("counterparty_legal_phone_number"),
        pl.max_horizontal("last_updated", "last_updated_parent").alias("etl_source_updated"),
    )
    return _conform(frame, "dim_counterparty")


def build_dim_payment_type(payment_type: pl.DataFrame) -> pl.DataFrame:
    """dim_payment_type rows: one per payment_type_id (latest version); the name is the enum text."""
    latest = latest_per_key(payment_type, "payment_type_id")
    return _conform(latest.rename({"last_updated": "etl_source_updated"}), "dim_payment_type")


def build_dim_transaction(transaction: pl.DataFrame) -> pl.DataFrame:
    """dim_transaction rows: one per transaction_id (latest version); the type is the enum text."""
    latest = latest_per_key(transaction, "transaction_id")
    return _conform(latest.rename({"last_updated": "etl_source_updated"}), "dim_transaction")


def _split_timestamps(frame: pl.DataFrame, last_updated_time: str) -> pl.DataFrame:
    """created_at and last_updated split into their dates and times (milliseconds kept).

    The expressions all read the input columns, so the time may take the name `last_updated` itself.
    """
    return frame.with_columns(
        pl.col("created_at").dt.date().alias("created_date"),
        pl.col("created_at").dt.time().alias("created_time"),
        pl.col("last_updated").dt.date().alias("last_updated_date"),
        pl.col("last_updated").dt.time().alias(last_updated_time),
    )


def _parse_text_dates(frame: pl.DataFrame, table: str, key: str, columns: tuple[str, ...]) -> pl.DataFrame:
    """The source's 'YYYY-MM-DD' text columns as dates; a value that is not one raises InvalidValueError."""
    parsed = frame.with_columns([pl.col(c).str.to_date("%Y-%m-%d", strict=False).alias(f"{c}__date") for c in columns])
    for column in columns:
        bad = parsed.filter(pl.col(column).is_not_null() & ~is_iso_date(column).fill_null(False))
        if bad.height:
            listed = bad.sort(key).select(pl.format("{} {} '{}'", pl.lit(key), _text(key), pl.col(column))).to_series()
            raise InvalidValueError(
                f"{table}.{column} holds {bad.height} value(s) that are not 'YYYY-MM-DD' dates: "
                f"{describe_ids(listed.to_list())}. Nothing of the run was transformed; the raw run stays in "
                "the lake for a replay once the source is corrected"
            )
    return parsed.drop(columns).rename({f"{c}__date": c for c in columns})


def _versions(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """The fact rows with etl_row_hash, one per distinct (key, content), sorted by key and version time."""
    key = next(iter(OUTPUT_SCHEMA[table]))
    contract = [c for c in OUTPUT_SCHEMA[table] if c != "etl_row_hash"]
    rows = _conform(frame.with_columns(pl.lit(None, pl.String).alias("etl_row_hash")), table)
    rows = rows.with_columns(row_hash(rows, contract))
    updated_time = "last_updated" if table == "fact_payment" else "last_updated_time"
    order = [key, "last_updated_date", updated_time, "etl_row_hash"]
    # Equal contents have equal keys, times and hashes, so sorting made every duplicate adjacent. Only the
    # sort columns are sorted, and the kept rows gathered once: sorting and filtering whole rows would
    # hold three copies of them.
    first = (pl.col(key) != pl.col(key).shift()) | (pl.col("etl_row_hash") != pl.col("etl_row_hash").shift())
    kept = rows.select(order).with_row_index(_ROW).sort(order).filter(first.fill_null(True)).get_column(_ROW)
    return rows[kept]


def build_fact_sales_order(sales_order: pl.DataFrame) -> pl.DataFrame:
    """fact_sales_order rows: one per distinct version (content) of each sales order in `sales_order`."""
    frame = _split_timestamps(sales_order, "last_updated_time")
    frame = _parse_text_dates(frame, "sales_order", "sales_order_id", ("agreed_delivery_date", "agreed_payment_date"))
    return _versions(frame.rename({"staff_id": "sales_staff_id"}), "fact_sales_order")


def build_fact_purchase_order(purchase_order: pl.DataFrame) -> pl.DataFrame:
    """fact_purchase_order rows: one per distinct version (content) of each purchase order."""
    frame = _split_timestamps(purchase_order, "last_updated_time")
    frame = _parse_text_dates(
        frame, "purchase_order", "purchase_order_id", ("agreed_delivery_date", "agreed_payment_date")
    )
    return _versions(frame, "fact_purchase_order")


def build_fact_payment(payment: pl.DataFrame) -> pl.DataFrame:
    """fact_payment rows: one per distinct version (content) of each payment; `last_updated` is a time."""
    frame = _split_timestamps(payment, "last_updated")
    return _versions(_parse_text_dates(frame, "payment", "payment_id", ("payment_date",)), "fact_payment")


def fact_dates(table: str, frame: pl.DataFrame) -> pl.Series:
    """The distinct dates (named date_id, nulls kept) that the date columns of fact `table`'s rows reference."""
    columns = FACT_DATE_COLUMNS.get(table, ())
    if not columns:
        return pl.Series("date_id", [], dtype=pl.Date)
    return pl.concat([frame.get_column(c).alias("date_id") for c in columns]).unique()


def calendar_rows(dates: pl.Series) -> pl.DataFrame:
    """One dim_date row per distinct non-null date of `dates`, sorted by date_id."""
    date_id = pl.col("date_id")
    return (
        pl.DataFrame({"date_id": dates.cast(pl.Date)})
        .drop_nulls()
        .unique()
        .sort("date_id")
        .select(
            date_id,
            date_id.dt.year().cast(pl.Int32).alias("year"),
            date_id.dt.month().cast(pl.Int32).alias("month"),
            date_id.dt.day().cast(pl.Int32).alias("day"),
            date_id.dt.weekday().cast(pl.Int32).alias("day_of_week"),  # ISO: Monday=1 .. Sunday=7
            date_id.dt.weekday().replace_strict(_DAYS, return_dtype=pl.String).alias("day_name"),
            date_id.dt.month().replace_strict(_MONTHS, return_dtype=pl.String).alias("month_name"),
            date_id.dt.quarter().cast(pl.Int32).alias("quarter"),
        )
    )


def build_dim_date_of(dates: Iterable[pl.Series]) -> pl.DataFrame:
    """dim_date rows: one per distinct non-null date of any of the `dates` series."""
    series = [d.alias("date_id") for d in dates]
    if not series:
        return calendar_rows(pl.Series("date_id", [], dtype=pl.Date))
    return calendar_rows(pl.concat(series))


def build_dim_date(facts: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """dim_date rows: one per distinct date that any date column of the given fact frames references."""
    return build_dim_date_of(fact_dates(table, frame) for table, frame in facts.items() if FACT_DATE_COLUMNS.get(table))
