"""What the shipped 2024-11-15 snapshot becomes in the warehouse: rows per star table (dim_date aside)."""

from __future__ import annotations

SNAPSHOT_WAREHOUSE_ROWS: dict[str, int] = {
    "dim_staff": 20,
    "dim_location": 30,
    "dim_currency": 3,
    "dim_design": 473,
    "dim_counterparty": 20,
    "dim_payment_type": 4,
    "dim_transaction": 15836,
    "fact_sales_order": 11187,
    "fact_purchase_order": 4649,
    "fact_payment": 15836,
}
