"""The data contract every stage imports: tables, columns, keys, history rules, lake layout and messages.

Nothing else restates any of it. Four parts:
- the source tables as the pipeline knows them: names, columns and their polars types (the fixed list the
  extract checks against the catalog, the local seed loads and the transform requires), keys, foreign
  keys and text dates, and the source columns the transform reads. Types mirror the source exactly:
  integer -> Int32, numeric(10,2) -> Decimal(10, 2), timestamp(3) -> Datetime("ms"), enums and the text
  dates -> String;
- the star schemas (docs/warehouse.md): the warehouse tables in load order, the columns and dtypes a
  curated file carries, natural keys, fact record ids, foreign keys, the order of fact versions, the
  English calendar names of dim_date;
- the lake layout (docs/architecture.md): the run-id rule and the `_runs/`, `_state/`, `_quarantine/`
  prefixes of both containers;
- the typed documents that pass between stages: `RawManifest` (extract -> transform), `CuratedManifest`
  (transform -> load) and `LoadMessage` (the load queue). Each is written and read by the same type and
  checked once, on read; a reader turns `ContractError` into its own stage's error.

The output columns are the warehouse DDL (shared/warehouse/schema.sql) minus the columns the load adds
(serial record ids, etl_run_id, etl_loaded_at), plus the bookkeeping column the transform owns:
`etl_source_updated` on dimensions (the source last_updated the row version reflects) and `etl_row_hash`
on facts (the version's content hash). dim_date has no etl column.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from shared.errors import TerminalError

DATE = pl.Date()
TIME = pl.Time()
INT = pl.Int32()
TEXT = pl.String()
MONEY = pl.Decimal(10, 2)
TIMESTAMP = pl.Datetime("ms")

# --- the source tables -------------------------------------------------------------------------------

_AUDIT = {"created_at": TIMESTAMP, "last_updated": TIMESTAMP}

# Ordered so that every table comes after the tables it references.
SOURCE_SCHEMA: dict[str, dict[str, pl.DataType]] = {
    "address": {
        "address_id": pl.Int32(),
        "address_line_1": pl.String(),
        "address_line_2": pl.String(),
        "district": pl.String(),
        "city": pl.String(),
        "postal_code": pl.String(),
        "country": pl.String(),
        "phone": pl.String(),
        **_AUDIT,
    },
    "counterparty": {
        "counterparty_id": pl.Int32(),
        "counterparty_legal_name": pl.String(),
        "legal_address_id": pl.Int32(),
        "commercial_contact": pl.String(),
        "delivery_contact": pl.String(),
        **_AUDIT,
    },
    "currency": {"currency_id": pl.Int32(), "currency_code": pl.String(), **_AUDIT},
    "department": {
        "department_id": pl.Int32(),
        "department_name": pl.String(),
        "location": pl.String(),
        "manager": pl.String(),
        **_AUDIT,
    },
    "design": {
        "design_id": pl.Int32(),
        "created_at": TIMESTAMP,
        "design_name": pl.String(),
        "file_location": pl.String(),
        "file_name": pl.String(),
        "last_updated": TIMESTAMP,
    },
    "payment_type": {"payment_type_id": pl.Int32(), "payment_type_name": pl.String(), **_AUDIT},
    "staff": {
        "staff_id": pl.Int32(),
        "first_name": pl.String(),
        "last_name": pl.String(),
        "department_id": pl.Int32(),
        "email_address": pl.String(),
        **_AUDIT,
    },
    "sales_order": {
        "sales_order_id": pl.Int32(),
        **_AUDIT,
        "design_id": pl.Int32(),
        "staff_id": pl.Int32(),
        "counterparty_id": pl.Int32(),
        "units_sold": pl.Int32(),
        "unit_price": MONEY,
        "currency_id": pl.Int32(),
        "agreed_delivery_date": pl.String(),
        "agreed_payment_date": pl.String(),
        "agreed_delivery_location_id": pl.Int32(),
    },
    "purchase_order": {
        "purchase_order_id": pl.Int32(),
        **_AUDIT,
        "staff_id": pl.Int32(),
        "counterparty_id": pl.Int32(),
        "item_code": pl.String(),
        "item_quantity": pl.Int32(),
        "item_unit_price": MONEY,
        "currency_id": pl.Int32(),
        "agreed_delivery_date": pl.String(),
        "agreed_payment_date": pl.String(),
        "agreed_delivery_location_id": pl.Int32(),
    },
    "transaction": {
        "transaction_id": pl.Int32(),
        "transaction_type": pl.String(),
        "sales_order_id": pl.Int32(),
        "purchase_order_id": pl.Int32(),
        **_AUDIT,
    },
    "payment": {
        "payment_id": pl.Int32(),
        **_AUDIT,
        "transaction_id": pl.Int32(),
        "counterparty_id": pl.Int32(),
        "payment_amount": MONEY,
        "currency_id": pl.Int32(),
        "payment_type_id": pl.Int32(),
        "paid": pl.Boolean(),
        "payment_date": pl.String(),
        "company_ac_number": pl.Int32(),
        "counterparty_ac_number": pl.Int32(),
    },
}
SOURCE_TABLES: tuple[str, ...] = tuple(SOURCE_SCHEMA)

# (table, column) -> referenced table, for every foreign key of the source.
SOURCE_FOREIGN_KEYS: dict[tuple[str, str], str] = {
    ("counterparty", "legal_address_id"): "address",
    ("staff", "department_id"): "department",
    ("sales_order", "design_id"): "design",
    ("sales_order", "staff_id"): "staff",
    ("sales_order", "counterparty_id"): "counterparty",
    ("sales_order", "currency_id"): "currency",
    ("sales_order", "agreed_delivery_location_id"): "address",
    ("purchase_order", "staff_id"): "staff",
    ("purchase_order", "counterparty_id"): "counterparty",
    ("purchase_order", "currency_id"): "currency",
    ("purchase_order", "agreed_delivery_location_id"): "address",
    ("transaction", "sales_order_id"): "sales_order",
    ("transaction", "purchase_order_id"): "purchase_order",
    ("payment", "transaction_id"): "transaction",
    ("payment", "counterparty_id"): "counterparty",
    ("payment", "currency_id"): "currency",
    ("payment", "payment_type_id"): "payment_type",
}

# Text dates of the source ('YYYY-MM-DD').
SOURCE_TEXT_DATES: dict[str, tuple[str, ...]] = {
    "sales_order": ("agreed_delivery_date", "agreed_payment_date"),
    "purchase_order": ("agreed_delivery_date", "agreed_payment_date"),
    "payment": ("payment_date",),
}


def primary_key(table: str) -> str:
    """The key column of a source table: `<table>_id`."""
    return f"{table}_id"


# The source columns the builders read, per source table; anything else in a raw frame is ignored.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "address": (
        "address_id",
        "address_line_1",
        "address_line_2",
        "district",
        "city",
        "postal_code",
        "country",
        "phone",
        "last_updated",
    ),
    "counterparty": ("counterparty_id", "counterparty_legal_name", "legal_address_id", "last_updated"),
    "currency": ("currency_id", "currency_code", "last_updated"),
    "department": ("department_id", "department_name", "location", "last_updated"),
    "design": ("design_id", "design_name", "file_location", "file_name", "last_updated"),
    "payment_type": ("payment_type_id", "payment_type_name", "last_updated"),
    "staff": ("staff_id", "first_name", "last_name", "department_id", "email_address", "last_updated"),
    "sales_order": (
        "sales_order_id",
        "created_at",
        "last_updated",
        "design_id",
        "staff_id",
        "counterparty_id",
        "units_sold",
        "unit_price",
        "currency_id",
        "agreed_delivery_date",
        "agreed_payment_date",
        "agreed_delivery_location_id",
    ),
    "purchase_order": (
        "purchase_order_id",
        "created_at",
        "last_updated",
        "staff_id",
        "counterparty_id",
        "item_code",
        "item_quantity",
        "item_unit_price",
        "currency_id",
        "agreed_delivery_date",
        "agreed_payment_date",
        "agreed_delivery_location_id",
    ),
    "transaction": ("transaction_id", "transaction_type", "sales_order_id", "purchase_order_id", "last_updated"),
    "payment": (
        "payment_id",
        "created_at",
        "last_updated",
        "transaction_id",
        "counterparty_id",
        "payment_amount",
        "currency_id",
        "payment_type_id",
        "paid",
        "payment_date",
    ),
}


def required_columns(table: str) -> tuple[str, ...]:
    """The columns of source `table` that the transform reads, in source order (KeyError if unknown)."""
    return _REQUIRED[table]


def required_schema(table: str) -> dict[str, pl.DataType]:
    """The required columns of source `table` with their source dtypes (SOURCE_SCHEMA)."""
    return {c: SOURCE_SCHEMA[table][c] for c in _REQUIRED[table]}


# --- the star schemas --------------------------------------------------------------------------------

DIMENSIONS: tuple[str, ...] = (
    "dim_staff",
    "dim_location",
    "dim_currency",
    "dim_design",
    "dim_counterparty",
    "dim_payment_type",
    "dim_transaction",
)
FACTS: tuple[str, ...] = ("fact_sales_order", "fact_purchase_order", "fact_payment")
# Load order: the calendar, the dimensions, then the facts that reference both (foreign keys).
TABLES: tuple[str, ...] = ("dim_date", *DIMENSIONS, *FACTS)

# The columns and dtypes of a curated file of each warehouse table, in load order.
OUTPUT_SCHEMA: dict[str, dict[str, pl.DataType]] = {
    "dim_date": {
        "date_id": DATE,
        "year": INT,
        "month": INT,
        "day": INT,
        "day_of_week": INT,
        "day_name": TEXT,
        "month_name": TEXT,
        "quarter": INT,
    },
    "dim_staff": {
        "staff_id": INT,
        "first_name": TEXT,
        "last_name": TEXT,
        "department_name": TEXT,
        "location": TEXT,
        "email_address": TEXT,
        "etl_source_updated": TIMESTAMP,
    },
    "dim_location": {
        "location_id": INT,
        "address_line_1": TEXT,
        "address_line_2": TEXT,
        "district": TEXT,
        "city": TEXT,
        "postal_code": TEXT,
        "country": TEXT,
        "phone": TEXT,
        "etl_source_updated": TIMESTAMP,
    },
    "dim_currency": {
        "currency_id": INT,
        "currency_code": TEXT,
        "currency_name": TEXT,
        "etl_source_updated": TIMESTAMP,
    },
    "dim_design": {
        "design_id": INT,
        "design_name": TEXT,
        "file_location": TEXT,
        "file_name": TEXT,
        "etl_source_updated": TIMESTAMP,
    },
    "dim_counterparty": {
        "counterparty_id": INT,
        "counterparty_legal_name": TEXT,
        "counterparty_legal_address_line_1": TEXT,
        "counterparty_legal_address_line2": TEXT,
        "counterparty_legal_district": TEXT,
        "counterparty_legal_city": TEXT,
        "counterparty_legal_postal_code": TEXT,
        "counterparty_legal_country": TEXT,
        "counterparty_legal_phone_number": TEXT,
        "etl_source_updated": TIMESTAMP,
    },
    "dim_payment_type": {"payment_type_id": INT, "payment_type_name": TEXT, "etl_source_updated": TIMESTAMP},
    "dim_transaction": {
        "transaction_id": INT,
        "transaction_type": TEXT,
        "sales_order_id": INT,
        "purchase_order_id": INT,
        "etl_source_updated": TIMESTAMP,
    },
    "fact_sales_order": {
        "sales_order_id": INT,
        "created_date": DATE,
        "created_time": TIME,
        "last_updated_date": DATE,
        "last_updated_time": TIME,
        "sales_staff_id": INT,
        "counterparty_id": INT,
        "units_sold": INT,
        "unit_price": MONEY,
        "currency_id": INT,
        "design_id": INT,
        "agreed_payment_date": DATE,
        "agreed_delivery_date": DATE,
        "agreed_delivery_location_id": INT,
        "etl_row_hash": TEXT,
    },
    "fact_purchase_order": {
        "purchase_order_id": INT,
        "created_date": DATE,
        "created_time": TIME,
        "last_updated_date": DATE,
        "last_updated_time": TIME,
        "staff_id": INT,
        "counterparty_id": INT,
        "item_code": TEXT,
        "item_quantity": INT,
        "item_unit_price": MONEY,
        "currency_id": INT,
        "agreed_delivery_date": DATE,
        "agreed_payment_date": DATE,
        "agreed_delivery_location_id": INT,
        "etl_row_hash": TEXT,
    },
    "fact_payment": {
        "payment_id": INT,
        "created_date": DATE,
        "created_time": TIME,
        "last_updated_date": DATE,
        "last_updated": TIME,
        "transaction_id": INT,
        "counterparty_id": INT,
        "payment_amount": MONEY,
        "currency_id": INT,
        "payment_type_id": INT,
        "paid": pl.Boolean(),
        "payment_date": DATE,
        "etl_row_hash": TEXT,
    },
}
# The output columns the warehouse allows to be null; every other output column is NOT NULL.
NULLABLE_OUTPUT: dict[str, tuple[str, ...]] = {
    "dim_location": ("address_line_2", "district"),
    "dim_counterparty": ("counterparty_legal_address_line2", "counterparty_legal_district"),
    "dim_transaction": ("sales_order_id", "purchase_order_id"),
}
# The natural key of each table: one row per key in a dimension, one row per version of it in a fact.
TABLE_KEYS: dict[str, str] = {table: next(iter(columns)) for table, columns in OUTPUT_SCHEMA.items()}
# The bookkeeping column the transform writes into each curated file (the load adds etl_run_id itself).
TRANSFORM_COLUMNS: dict[str, tuple[str, ...]] = {
    table: tuple(c for c in columns if c.startswith("etl_")) for table, columns in OUTPUT_SCHEMA.items()
}
# The serial primary key of each fact table: one row per version, numbered oldest first.
RECORD_IDS: dict[str, str] = {
    "fact_sales_order": "sales_record_id",
    "fact_purchase_order": "purchase_record_id",
    "fact_payment": "payment_record_id",
}
# A fact version's position in time: record ids are assigned in this order so they grow with time.
FACT_ORDER: dict[str, tuple[str, ...]] = {
    "fact_sales_order": ("last_updated_date", "last_updated_time"),
    "fact_purchase_order": ("last_updated_date", "last_updated_time"),
    "fact_payment": ("last_updated_date", "last_updated"),
}
# Fact column -> the dimension it references (the foreign keys, dim_date aside: see FACT_DATE_COLUMNS).
REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "fact_sales_order": (
        ("sales_staff_id", "dim_staff"),
        ("counterparty_id", "dim_counterparty"),
        ("currency_id", "dim_currency"),
        ("design_id", "dim_design"),
        ("agreed_delivery_location_id", "dim_location"),
    ),
    "fact_purchase_order": (
        ("staff_id", "dim_staff"),
        ("counterparty_id", "dim_counterparty"),
        ("currency_id", "dim_currency"),
        ("agreed_delivery_location_id", "dim_location"),
    ),
    "fact_payment": (
        ("transaction_id", "dim_transaction"),
        ("counterparty_id", "dim_counterparty"),
        ("currency_id", "dim_currency"),
        ("payment_type_id", "dim_payment_type"),
    ),
}
# The fact columns that reference dim_date (every one of them must have a dim_date row).
FACT_DATE_COLUMNS: dict[str, tuple[str, ...]] = {
    table: tuple(c for c, t in OUTPUT_SCHEMA[table].items() if t == DATE) for table in FACTS
}
# The warehouse table whose current rows a source row's deletion marks (etl_deleted_at). A department is
# folded into dim_staff and has no rows of its own: its staff must be reassigned or deleted first (source FKs).
DELETED_IN: dict[str, str] = {
    "staff": "dim_staff",
    "address": "dim_location",
    "currency": "dim_currency",
    "design": "dim_design",
    "counterparty": "dim_counterparty",
    "payment_type": "dim_payment_type",
    "transaction": "dim_transaction",
    "sales_order": "fact_sales_order",
    "purchase_order": "fact_purchase_order",
    "payment": "fact_payment",
}
# dim_date's English names indexed by ISO day of week (Monday=1) and month (January=1), whatever the locale.
DAY_NAMES: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_NAMES: tuple[str, ...] = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

# --- the lake layout ---------------------------------------------------------------------------------

# In both containers: run manifests (the commit marker of a run), mutable state, quarantine records.
RUNS_PREFIX = "_runs/"
STATE_PREFIX = "_state/"
QUARANTINE_PREFIX = "_quarantine/"
# A run id is safe in a blob name, e.g. 20261122T031500Z-7f3a9c (the extract's UTC time and 6 hex digits).
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# The extract's watermarks, in the raw container.
WATERMARKS_NAME = f"{STATE_PREFIX}extract_watermarks.json"
# The blob lease the running extract holds, in the raw container (a second extract yields to it).
EXTRACT_LEASE_NAME = f"{STATE_PREFIX}extract.lease"
# The blob lease the draining transform holds, in the curated container (another transform yields to it).
TRANSFORM_LEASE_NAME = f"{STATE_PREFIX}transform.lease"
# The drains' cursor, in the curated container: every run up to it is loaded (or superseded), so the
# drains list the run manifests from its month on only.
DRAIN_CURSOR_NAME = f"{STATE_PREFIX}drain.json"
# A superseding re-extract of a quarantined run is named <run_id>.r<n>: it sorts right after it.
RETRY_SUFFIX = ".r"
PARQUET_TYPE = "application/vnd.apache.parquet"
JSON_TYPE = "application/json"
_RUN_BLOB = re.compile(r"(?:[^/]+/)?_runs/([^/]+)\.json")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def check_run_id(run_id: str) -> str:
    """`run_id` if it is a safe blob name part (letters, digits, '_', '.', '-'); TerminalError otherwise."""
    if not RUN_ID.fullmatch(run_id):
        raise TerminalError(
            f"run_id {run_id[:80]!r} is malformed (expected e.g. 20261122T031500Z-7f3a9c: letters, digits, "
            "'_', '.', '-', at most 128); nothing is processed"
        )
    return run_id


def raw_file_name(table: str, run_id: str, extracted_at: datetime) -> str:
    """The raw blob of a run's file for `table`: <table>/<YYYY>/<MM>/<DD>/<run_id>.parquet (UTC date)."""
    return f"{table}/{extracted_at.astimezone(UTC):%Y/%m/%d}/{run_id}.parquet"


def curated_file_name(table: str, run_id: str) -> str:
    """The curated blob of a run's file for warehouse `table`: <table>/<run_id>.parquet."""
    return f"{table}/{run_id}.parquet"


def manifest_name(run_id: str) -> str:
    """The blob name of a run's manifest, in the raw and in the curated container: _runs/<run_id>.json."""
    return f"{RUNS_PREFIX}{run_id}.json"


def run_id_from_blob(blob_name: str) -> str:
    """The run_id of a manifest blob name '[<container>/]_runs/<run_id>.json'; TerminalError otherwise."""
    match = _RUN_BLOB.fullmatch(blob_name)
    if not match:
        raise TerminalError(
            f"blob {blob_name!r} is not a raw run manifest '<raw container>/_runs/<run_id>.json'; "
            "check the transform trigger's path"
        )
    return check_run_id(match[1])


def state_name(table: str) -> str:
    """The blob name of one state table of the transform: _state/<table>.parquet."""
    return f"{STATE_PREFIX}{table}.parquet"


def quarantine_name(run_id: str) -> str:
    """The blob name of a run's quarantine record: _quarantine/<run_id>.json."""
    return f"{QUARANTINE_PREFIX}{run_id}.json"


def instant(text: object) -> datetime | None:
    """An ISO-8601 text as an aware UTC datetime (naive means UTC), None if it is not one."""
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- the documents between stages --------------------------------------------------------------------


class ContractError(ValueError):
    """A manifest or message does not follow the contract; `reason` says what is wrong (no run, no where)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _object(data: bytes | str) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"not valid JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise ContractError("not a JSON object")
    return body


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class RawFile:
    """One source table's file of a raw run, as the raw manifest names it."""

    table: str
    file: str  # path inside the raw container
    rows: int
    sha256: str
    size: int | None  # bytes
    max_last_updated: str | None  # the newest source last_updated in the file (ISO-8601, source clock)
    after: str | None = None  # the lower bound of the extract window (None: from the start)
    columns: tuple[tuple[str, str], ...] = ()  # (name, PostgreSQL type) of every column extracted

    def to_dict(self) -> dict[str, Any]:
        """The manifest's `tables` entry of this file."""
        return {
            "file": self.file,
            "rows": self.rows,
            "bytes": self.size,
            "sha256": self.sha256,
            "window": {"after": self.after, "max_last_updated": self.max_last_updated},
            "columns": [{"name": name, "type": kind} for name, kind in self.columns],
        }

    @classmethod
    def from_dict(cls, table: str, entry: object) -> RawFile:
        """One `tables` entry, checked; ContractError naming the key that is wrong."""
        if not isinstance(entry, dict):
            raise ContractError(f"tables.{table} is not an object")
        missing = [k for k in ("file", "rows", "sha256", "window") if k not in entry]
        if missing:
            raise ContractError(f"tables.{table} lacks key(s) {', '.join(missing)}")
        file, rows, sha, window = entry["file"], entry["rows"], entry["sha256"], entry["window"]
        size = entry.get("bytes")
        if not isinstance(file, str) or not file or file.startswith("/"):
            raise ContractError(f"tables.{table}.file {file!r} is not a path inside the raw container")
        if not _count(rows):
            raise ContractError(f"tables.{table}.rows {rows!r} is not a row count")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise ContractError(f"tables.{table}.sha256 {sha!r} is not a hex SHA-256")
        if size is not None and not _count(size):
            raise ContractError(f"tables.{table}.bytes {size!r} is not a byte count")
        if not isinstance(window, dict) or "max_last_updated" not in window:
            raise ContractError(f"tables.{table}.window lacks max_last_updated")
        stamp, after = window["max_last_updated"], window.get("after")
        if stamp is not None and instant(stamp) is None:
            raise ContractError(f"tables.{table}.window.max_last_updated {stamp!r} is not an ISO-8601 time")
        columns = tuple(
            (c["name"], c["type"])
            for c in entry.get("columns") or ()
            if isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("type"), str)
        )
        return cls(table, file, rows, sha.lower(), size, stamp, after if isinstance(after, str) else None, columns)


@dataclass(frozen=True)
class RawManifest:
    """raw/_runs/<run_id>.json: written LAST by the extract (the run's commit marker), read by the transform."""

    run_id: str
    extracted_at: str  # ISO-8601 UTC
    files: tuple[RawFile, ...]
    lookback_seconds: int | None = None
    version: int = 1
    traceparent: str | None = None  # W3C trace context of the extract's span: the run's one trace
    kind: str | None = None  # None for an extract run; "reconcile" for a correction run
    deleted: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # source table -> ids deleted there

    @property
    def source_max_updated(self) -> str | None:
        """The latest window.max_last_updated over the run's tables (as written), or None."""
        stamps = [f.max_last_updated for f in self.files if f.max_last_updated]
        return max(stamps, key=lambda s: instant(s) or datetime.min.replace(tzinfo=UTC)) if stamps else None

    def to_json(self) -> bytes:
        """The manifest as the extract writes it."""
        body = {
            "version": self.version,
            "run_id": self.run_id,
            "extracted_at": self.extracted_at,
            "lookback_seconds": self.lookback_seconds,
            "tables": {f.table: f.to_dict() for f in self.files},
            **_trace(self.traceparent),
            **({"kind": self.kind} if self.kind else {}),
            **_deleted(self.deleted),
        }
        return json.dumps(body, indent=2).encode()

    @classmethod
    def from_json(cls, run_id: str, data: bytes) -> RawManifest:
        """Check and parse the raw manifest of `run_id` (files sorted by table); ContractError if invalid."""
        body = _object(data)
        missing = [k for k in ("run_id", "extracted_at", "tables") if k not in body]
        if missing:
            raise ContractError(f"missing key(s) {', '.join(missing)}")
        if body["run_id"] != run_id:
            raise ContractError(f"its run_id is {body['run_id']!r}, not {run_id!r}")
        if instant(body["extracted_at"]) is None:
            raise ContractError(f"extracted_at {body['extracted_at']!r} is not an ISO-8601 time")
        if not isinstance(body["tables"], dict):
            raise ContractError("tables is not an object")
        files = tuple(RawFile.from_dict(table, entry) for table, entry in sorted(body["tables"].items()))
        lookback = body.get("lookback_seconds")
        return cls(
            run_id,
            body["extracted_at"],
            files,
            lookback if _count(lookback) else None,
            traceparent=_traceparent(body),
            kind=body["kind"] if isinstance(body.get("kind"), str) else None,
            deleted=_parse_deleted(body, SOURCE_SCHEMA),
        )


@dataclass(frozen=True)
class CuratedFile:
    """One warehouse table's file of a curated run, as the curated manifest names it."""

    table: str
    file: str  # path inside the curated container: <table>/<run_id>.parquet
    rows: int
    sha256: str


@dataclass(frozen=True)
class CuratedManifest:
    """curated/_runs/<run_id>.json: written LAST by the transform (the run's commit marker), read by the load."""

    run_id: str
    extracted_at: str | None
    source_max_updated: str | None  # the newest source change in the run (source clock, naive UTC)
    files: dict[str, CuratedFile]  # warehouse table -> its file, for tables with rows only
    warnings: tuple[str, ...] = ()
    traceparent: str | None = None  # the run's trace, carried on from the raw manifest
    deleted: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # warehouse table -> keys deleted

    @property
    def rows(self) -> dict[str, int]:
        """Rows per warehouse table."""
        return {table: f.rows for table, f in self.files.items()}

    @property
    def extracted_time(self) -> datetime | None:
        """extracted_at as an aware datetime (naive means UTC)."""
        return instant(self.extracted_at)

    @property
    def source_max_time(self) -> datetime | None:
        """source_max_updated as a naive UTC datetime, like the source clock."""
        value = instant(self.source_max_updated)
        return None if value is None else value.replace(tzinfo=None)

    def to_json(self) -> bytes:
        """The manifest as the transform writes it."""
        body = {
            "run_id": self.run_id,
            "extracted_at": self.extracted_at,
            "source_max_updated": self.source_max_updated,
            "tables": {t: {"file": f.file, "rows": f.rows, "sha256": f.sha256} for t, f in self.files.items()},
            "warnings": list(self.warnings),
            **_trace(self.traceparent),
            **_deleted(self.deleted),
        }
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, run_id: str, data: bytes) -> CuratedManifest:
        """Check and parse the curated manifest of `run_id`; ContractError if invalid."""
        body = _object(data)
        if body.get("run_id") != run_id or not isinstance(body.get("tables"), dict):
            raise ContractError("lacks its run_id or its tables mapping")
        files = {}
        for table, entry in body["tables"].items():
            if table not in OUTPUT_SCHEMA:
                raise ContractError(f"names unknown warehouse table {table!r}")
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("file"), str)
                and _count(entry.get("rows"))
                and isinstance(entry.get("sha256"), str)
            ):
                raise ContractError(f"entry for {table} needs file, rows and sha256")
            files[table] = CuratedFile(table, entry["file"], entry["rows"], entry["sha256"].lower())
        for key in ("extracted_at", "source_max_updated"):
            if body.get(key) is not None and instant(body[key]) is None:
                raise ContractError(f"{key}={body[key]!r} is not an ISO-8601 timestamp")
        warnings = body.get("warnings") or ()
        return cls(
            run_id,
            body.get("extracted_at"),
            body.get("source_max_updated"),
            files,
            tuple(str(w) for w in warnings) if isinstance(warnings, list) else (),
            traceparent=_traceparent(body),
            deleted=_parse_deleted(body, OUTPUT_SCHEMA),
        )


@dataclass(frozen=True)
class LoadMessage:
    """A message on the load queue: load curated run `run_id`."""

    run_id: str
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    traceparent: str | None = None  # the run's trace, so the load's span joins it

    def to_json(self) -> str:
        """The message body as the transform sends it."""
        return json.dumps({"run_id": self.run_id, **_trace(self.traceparent)})

    @classmethod
    def from_json(cls, body: str) -> LoadMessage:
        """Parse a message body; ContractError if it is not an object with a string run_id."""
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise ContractError(f"not valid JSON ({exc})") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("run_id"), str):
            raise ContractError('has no string "run_id"')
        return cls(doc["run_id"], traceparent=_traceparent(doc))


def _trace(traceparent: str | None) -> dict[str, str]:
    """The optional traceparent field of a manifest or message."""
    return {"traceparent": traceparent} if traceparent else {}


def _traceparent(body: Mapping[str, Any]) -> str | None:
    value = body.get("traceparent")
    return value if isinstance(value, str) else None


def _deleted(deleted: Mapping[str, tuple[int, ...]]) -> dict[str, dict[str, list[int]]]:
    """The optional `deleted` field of a manifest: table -> sorted ids, tables with ids only."""
    tables = {t: sorted(ids) for t, ids in sorted(deleted.items()) if ids}
    return {"deleted": tables} if tables else {}


def _parse_deleted(body: Mapping[str, Any], known: Mapping[str, object]) -> dict[str, tuple[int, ...]]:
    value = body.get("deleted") or {}
    if not isinstance(value, dict):
        raise ContractError("deleted is not an object of table -> ids")
    deleted = {}
    for table, ids in value.items():
        if table not in known:
            raise ContractError(f"deleted names unknown table {table!r}")
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ContractError(f"deleted.{table} is not a list of integer ids")
        deleted[table] = tuple(sorted(set(ids)))
    return deleted
