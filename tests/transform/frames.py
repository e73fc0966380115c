"""Test helpers: literal source frames, and the warehouse contract read from the DDL itself."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import polars as pl

from shared.contract import required_schema
from shared.warehouse import schema_sql

T0 = datetime(2022, 11, 3, 14, 20, 49, 962000)
T1 = datetime(2023, 1, 10, 9, 30, 0, 125000)
T2 = datetime(2024, 2, 29, 23, 59, 59, 999000)

# The columns the load adds, not the transform.
LOAD_COLUMNS = {"etl_run_id", "etl_loaded_at"}
_SQL_TYPES: dict[str, pl.DataType] = {
    "integer": pl.Int32(),
    "varchar": pl.String(),
    "numeric(10, 2)": pl.Decimal(10, 2),
    "date": pl.Date(),
    "time(3)": pl.Time(),
    "boolean": pl.Boolean(),
    "timestamp(3)": pl.Datetime("ms"),
}


def source(table: str, rows: list[dict[str, Any]], **defaults: Any) -> pl.DataFrame:
    """A frame of source `table` with exactly its required columns and source dtypes.

    Each row is `defaults` updated with the row; a required column given nowhere is null.
    """
    schema = required_schema(table)
    full = [{c: {**defaults, **row}.get(c) for c in schema} for row in rows]
    return pl.DataFrame(full, schema=schema, orient="row") if full else pl.DataFrame(schema=schema)


def departments(rows: list[tuple[int, str, str | None, object]]) -> pl.DataFrame:
    """department source rows from (department_id, department_name, location, last_updated) tuples."""
    return source(
        "department",
        [{"department_id": i, "department_name": n, "location": loc, "last_updated": t} for i, n, loc, t in rows],
    )


def ddl_tables() -> dict[str, list[tuple[str, str, bool]]]:
    """Per star table of shared/warehouse/schema.sql: (column, SQL type, nullable) in DDL order."""
    tables: dict[str, list[tuple[str, str, bool]]] = {}
    for name, body in re.findall(r"CREATE TABLE IF NOT EXISTS ((?:dim|fact)_\w+) \((.*?)\n\);", schema_sql(), re.S):
        columns = []
        for line in body.strip().splitlines():
            line = line.strip().rstrip(",")
            if line.startswith("CONSTRAINT"):
                continue
            match = re.match(r"(\w+) (\w+(?:\(\d+(?:, \d+)?\))?)(.*)", line)
            assert match, line
            column, sql_type, rest = match.groups()
            columns.append((column, sql_type, "NOT NULL" not in rest and "PRIMARY KEY" not in rest))
        tables[name] = columns
    return tables


def expected_output_schema() -> dict[str, dict[str, pl.DataType]]:
    """The transform's output contract derived from the DDL: minus serial ids and the load's columns."""
    return {
        table: {c: _SQL_TYPES[t] for c, t, _ in columns if t != "serial" and c not in LOAD_COLUMNS}
        for table, columns in ddl_tables().items()
    }
