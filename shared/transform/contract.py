"""What the transform reads and writes: required source columns in, warehouse columns and dtypes out.

The output schema is the warehouse contract (shared/warehouse/schema.sql) minus the columns the load
adds (the serial record ids, etl_run_id, etl_loaded_at), plus the bookkeeping column the transform owns:
`etl_source_updated` on dimensions (the source last_updated the row version reflects) and
`etl_row_hash` on facts (the version's content hash). dim_date has no etl column.
"""

from __future__ import annotations

import polars as pl

from shared.schema import SOURCE_SCHEMA

DATE = pl.Date()
TIME = pl.Time()
INT = pl.Int32()
TEXT = pl.String()
MONEY = pl.Decimal(10, 2)
TIMESTAMP = pl.Datetime("ms")

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
WAREHOUSE_TABLES: tuple[str, ...] = tuple(OUTPUT_SCHEMA)
# The natural key of each fact (one row per distinct version of it) and of each dimension.
TABLE_KEYS: dict[str, str] = {
    "dim_date": "date_id",
    "dim_staff": "staff_id",
    "dim_location": "location_id",
    "dim_currency": "currency_id",
    "dim_design": "design_id",
    "dim_counterparty": "counterparty_id",
    "dim_payment_type": "payment_type_id",
    "dim_transaction": "transaction_id",
    "fact_sales_order": "sales_order_id",
    "fact_purchase_order": "purchase_order_id",
    "fact_payment": "payment_id",
}
# The fact columns that reference dim_date (every one of them must have a dim_date row).
FACT_DATE_COLUMNS: dict[str, tuple[str, ...]] = {
    table: tuple(c for c, t in cols.items() if t == DATE)
    for table, cols in OUTPUT_SCHEMA.items()
    if table.startswith("fact_")
}

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
    """The required columns of source `table` with their source dtypes (shared.schema)."""
    return {c: SOURCE_SCHEMA[table][c] for c in _REQUIRED[table]}


def empty_output(table: str) -> pl.DataFrame:
    """A zero-row frame with exactly the transform's output columns of warehouse `table`."""
    return pl.DataFrame(schema=OUTPUT_SCHEMA[table])


# The output columns the warehouse allows to be null; every other output column is NOT NULL.
NULLABLE_OUTPUT: dict[str, tuple[str, ...]] = {
    "dim_location": ("address_line_2", "district"),
    "dim_counterparty": ("counterparty_legal_address_line2", "counterparty_legal_district"),
    "dim_transaction": ("sales_order_id", "purchase_order_id"),
}
