"""The source tables as the catalog shows them, checked against the fixed list in shared.contract (SOURCE_SCHEMA).

Only names from that list (and column names the catalog returns for those tables) ever reach SQL,
always quoted with psycopg.sql.Identifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl
import psycopg

from shared.contract import SOURCE_SCHEMA, SOURCE_TABLES
from shared.errors import TerminalError

# typname, typtype, atttypmod, format_type for every live column of the tables in the current schema.
CATALOG_QUERY = """
SELECT c.relname, a.attname, t.typname, t.typtype, a.atttypmod,
       format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)
ORDER BY c.relname, a.attnum
"""
_INTEGERS: dict[str, pl.DataType] = {"int2": pl.Int16(), "int4": pl.Int32(), "int8": pl.Int64()}
_FLOATS: dict[str, pl.DataType] = {"float4": pl.Float32(), "float8": pl.Float64()}
_TEXTS = {"text", "varchar", "bpchar", "name", "citext"}
MAX_DECIMAL_PRECISION = 38


@dataclass(frozen=True)
class SourceColumn:
    """One column of a source table: its name, catalog type, Parquet dtype and whether it is known."""

    name: str
    pg_type: str
    dtype: pl.DataType
    known: bool
    # Types with no faithful Parquet mapping are read through ::text and archived as strings.
    as_text: bool = False


@dataclass(frozen=True)
class SourceTable:
    """One source table as it exists now: schema, name and columns in catalog order."""

    schema: str
    name: str
    columns: tuple[SourceColumn, ...]

    @property
    def extra_columns(self) -> tuple[str, ...]:
        """Names of the columns the pipeline does not know (archived as found)."""
        return tuple(c.name for c in self.columns if not c.known)

    @property
    def polars_schema(self) -> dict[str, pl.DataType]:
        """Column name -> dtype of the Parquet file."""
        return {c.name: c.dtype for c in self.columns}


def polars_type(typname: str, typtype: str, typmod: int) -> tuple[pl.DataType, bool]:
    """The Parquet dtype for a PostgreSQL column type, and whether it must be read as ::text."""
    if typtype == "e" or typname in _TEXTS:
        return pl.String(), False
    if typname in _INTEGERS:
        return _INTEGERS[typname], False
    if typname in _FLOATS:
        return _FLOATS[typname], False
    if typname == "bool":
        return pl.Boolean(), False
    if typname == "date":
        return pl.Date(), False
    if typname in ("timestamp", "timestamptz"):
        unit: Literal["ms", "us"] = "ms" if 0 <= typmod <= 3 else "us"
        return pl.Datetime(unit, "UTC" if typname == "timestamptz" else None), False
    if typname == "numeric" and typmod >= 4:
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
        if 0 < precision <= MAX_DECIMAL_PRECISION and scale <= precision:
            return pl.Decimal(precision, scale), False
    # Unbounded numeric, json, uuid, arrays, intervals, ...: keep the exact text form.
    return pl.String(), True


def read_catalog(conn: psycopg.Connection) -> dict[str, SourceTable]:
    """Every table of SOURCE_TABLES as the catalog shows it; TerminalError naming what is missing or
    changed type."""
    schema_row = conn.execute("SELECT current_schema()").fetchone()
    if schema_row is None or schema_row[0] is None:
        raise TerminalError(
            "the extract's database role can use no schema on its search_path: grant it USAGE on the "
            "source schema (and SELECT on its tables); the extract stops without writing anything"
        )
    schema = str(schema_row[0])
    rows = conn.execute(CATALOG_QUERY, (list(SOURCE_TABLES),)).fetchall()
    found: dict[str, list[SourceColumn]] = {}
    for table, column, typname, typtype, typmod, formatted in rows:
        dtype, as_text = polars_type(typname, typtype, typmod)
        known = column in SOURCE_SCHEMA[table]
        # Enum names are quoted mixed-case identifiers: report them bare, as the catalog names them.
        pg_type = typname if typtype == "e" else formatted
        found.setdefault(table, []).append(SourceColumn(column, pg_type, dtype, known, as_text))
    missing_tables = [t for t in SOURCE_TABLES if t not in found]
    if missing_tables:
        raise TerminalError(
            f"source table(s) missing in schema {schema!r}: {', '.join(missing_tables)}; "
            "the extract stops without writing anything until the source schema is restored"
        )
    problems = []
    for table, expected in SOURCE_SCHEMA.items():
        columns = {c.name: c for c in found[table]}
        for name, dtype in expected.items():
            column = columns.get(name)
            if column is None:
                problems.append(f"{table}.{name} is missing")
            elif column.dtype != dtype:
                problems.append(f"{table}.{name} is {column.pg_type}, expected a type read as {dtype}")
    if problems:
        raise TerminalError(
            "source columns the pipeline requires do not match: " + "; ".join(problems) + "; "
            "the extract stops without writing anything until the source schema is fixed"
        )
    return {t: SourceTable(schema, t, tuple(found[t])) for t in SOURCE_TABLES}
