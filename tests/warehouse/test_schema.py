"""The warehouse DDL matches the contract in docs/warehouse.md and shared/contract.py, column for column."""

import psycopg

from shared.warehouse import apply_schema

INT, VARCHAR, DATE, TIME, NUMERIC, BOOL = "integer", "character varying", "date", "time", "numeric", "boolean"
CONTRACT: dict[str, list[tuple[str, str, bool]]] = {
    # table: [(column, type, nullable)]
    "dim_date": [
        ("date_id", DATE, False),
        ("year", INT, False),
        ("month", INT, False),
        ("day", INT, False),
        ("day_of_week", INT, False),
        ("day_name", VARCHAR, False),
        ("month_name", VARCHAR, False),
        ("quarter", INT, False),
    ],
    "dim_staff": [
        ("staff_id", INT, False),
        ("first_name", VARCHAR, False),
        ("last_name", VARCHAR, False),
        ("department_name", VARCHAR, False),
        ("location", VARCHAR, False),
        ("email_address", VARCHAR, False),
    ],
    "dim_location": [
        ("location_id", INT, False),
        ("address_line_1", VARCHAR, False),
        ("address_line_2", VARCHAR, True),
        ("district", VARCHAR, True),
        ("city", VARCHAR, False),
        ("postal_code", VARCHAR, False),
        ("country", VARCHAR, False),
        ("phone", VARCHAR, False),
    ],
    "dim_currency": [
        ("currency_id", INT, False),
        ("currency_code", VARCHAR, False),
        ("currency_name", VARCHAR, False),
    ],
    "dim_design": [
        ("design_id", INT, False),
        ("design_name", VARCHAR, False),
        ("file_location", VARCHAR, False),
        ("file_name", VARCHAR, False),
    ],
    "dim_counterparty": [
        ("counterparty_id", INT, False),
        ("counterparty_legal_name", VARCHAR, False),
        ("counterparty_legal_address_line_1", VARCHAR, False),
        ("counterparty_legal_address_line2", VARCHAR, True),
        ("counterparty_legal_district", VARCHAR, True),
        ("counterparty_legal_city", VARCHAR, False),
        ("counterparty_legal_postal_code", VARCHAR, False),
        ("counterparty_legal_country", VARCHAR, False),
        ("counterparty_legal_phone_number", VARCHAR, False),
    ],
    "dim_payment_type": [("payment_type_id", INT, False), ("payment_type_name", VARCHAR, False)],
    "dim_transaction": [
        ("transaction_id", INT, False),
        ("transaction_type", VARCHAR, False),
        ("sales_order_id", INT, True),
        ("purchase_order_id", INT, True),
    ],
    "fact_sales_order": [
        ("sales_record_id", INT, False),
        ("sales_order_id", INT, False),
        ("created_date", DATE, False),
        ("created_time", TIME, False),
        ("last_updated_date", DATE, False),
        ("last_updated_time", TIME, False),
        ("sales_staff_id", INT, False),
        ("counterparty_id", INT, False),
        ("units_sold", INT, False),
        ("unit_price", NUMERIC, False),
        ("currency_id", INT, False),
        ("design_id", INT, False),
        ("agreed_payment_date", DATE, False),
        ("agreed_delivery_date", DATE, False),
        ("agreed_delivery_location_id", INT, False),
    ],
    "fact_purchase_order": [
        ("purchase_record_id", INT, False),
        ("purchase_order_id", INT, False),
        ("created_date", DATE, False),
        ("created_time", TIME, False),
        ("last_updated_date", DATE, False),
        ("last_updated_time", TIME, False),
        ("staff_id", INT, False),
        ("counterparty_id", INT, False),
        ("item_code", VARCHAR, False),
        ("item_quantity", INT, False),
        ("item_unit_price", NUMERIC, False),
        ("currency_id", INT, False),
        ("agreed_delivery_date", DATE, False),
        ("agreed_payment_date", DATE, False),
        ("agreed_delivery_location_id", INT, False),
    ],
    "fact_payment": [
        ("payment_record_id", INT, False),
        ("payment_id", INT, False),
        ("created_date", DATE, False),
        ("created_time", TIME, False),
        ("last_updated_date", DATE, False),
        ("last_updated", TIME, False),
        ("transaction_id", INT, False),
        ("counterparty_id", INT, False),
        ("payment_amount", NUMERIC, False),
        ("currency_id", INT, False),
        ("payment_type_id", INT, False),
        ("paid", BOOL, False),
        ("payment_date", DATE, False),
    ],
}
FOREIGN_KEYS = {
    ("fact_sales_order", "sales_staff_id", "dim_staff"),
    ("fact_sales_order", "counterparty_id", "dim_counterparty"),
    ("fact_sales_order", "currency_id", "dim_currency"),
    ("fact_sales_order", "design_id", "dim_design"),
    ("fact_sales_order", "agreed_delivery_location_id", "dim_location"),
    ("fact_purchase_order", "staff_id", "dim_staff"),
    ("fact_purchase_order", "counterparty_id", "dim_counterparty"),
    ("fact_purchase_order", "currency_id", "dim_currency"),
    ("fact_purchase_order", "agreed_delivery_location_id", "dim_location"),
    ("fact_payment", "transaction_id", "dim_transaction"),
    ("fact_payment", "counterparty_id", "dim_counterparty"),
    ("fact_payment", "currency_id", "dim_currency"),
    ("fact_payment", "payment_type_id", "dim_payment_type"),
} | {(t, c, "dim_date") for t, cols in CONTRACT.items() if t.startswith("fact_") for c, typ, _ in cols if typ == DATE}


def _catalog(conn: psycopg.Connection) -> dict[str, list[tuple[str, str, bool]]]:
    rows = conn.execute(
        "SELECT table_name, column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = ANY(%s) ORDER BY table_name, ordinal_position",
        (list(CONTRACT),),
    ).fetchall()
    catalog: dict[str, list[tuple[str, str, bool]]] = {}
    for table, column, dtype, nullable in rows:
        if not column.startswith("etl_"):
            catalog.setdefault(table, []).append((column, dtype.split(" without")[0], nullable))
    return catalog


def test_every_contract_column_and_type(empty_warehouse: str) -> None:
    with psycopg.connect(empty_warehouse) as conn:
        apply_schema(conn)
        assert _catalog(conn) == CONTRACT
        money = conn.execute(
            "SELECT numeric_precision, numeric_scale, datetime_precision FROM information_schema.columns "
            "WHERE table_name = 'fact_sales_order' AND column_name IN ('unit_price', 'created_time') "
            "ORDER BY column_name"
        ).fetchall()
        assert money == [(None, None, 3), (10, 2, None)]


def test_every_foreign_key(empty_warehouse: str) -> None:
    with psycopg.connect(empty_warehouse) as conn:
        apply_schema(conn)
        rows = conn.execute(
            "SELECT c.conrelid::regclass::text, a.attname, c.confrelid::regclass::text FROM pg_constraint c "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] WHERE c.contype = 'f'"
        ).fetchall()
    assert set(rows) == FOREIGN_KEYS


def test_apply_is_idempotent_and_keeps_data(empty_warehouse: str) -> None:
    with psycopg.connect(empty_warehouse) as conn:
        apply_schema(conn)
        conn.execute("INSERT INTO dim_payment_type VALUES (1, 'SALES_RECEIPT', now(), 'r1')")
        apply_schema(conn)
        assert conn.execute("SELECT count(*) FROM dim_payment_type").fetchone() == (1,)
        extra = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name LIKE ANY(ARRAY['dim_%%', 'fact_%%']) AND column_name NOT LIKE 'etl\\_%%' "
        ).fetchone()
        assert extra == (sum(len(c) for c in CONTRACT.values()),)
