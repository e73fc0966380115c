"""The source tables as the pipeline knows them: names, columns and their polars types.

This is the fixed list extract checks against the catalog, seed loads, and transform requires.
Types mirror the source exactly: integer -> Int32, numeric(10,2) -> Decimal(10, 2),
timestamp(3) -> Datetime("ms"), enums and the text dates -> String.
"""

from __future__ import annotations

import polars as pl

TS = pl.Datetime("ms")
MONEY = pl.Decimal(10, 2)
_AUDIT = {"created_at": TS, "last_updated": TS}

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
        "created_at": TS,
        "design_name": pl.String(),
        "file_location": pl.String(),
        "file_name": pl.String(),
        "last_updated": TS,
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
