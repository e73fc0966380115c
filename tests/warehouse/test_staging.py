"""shared.warehouse.staging's binary COPY on a real PostgreSQL: every encoded type reads back as the same value."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal

import polars as pl
import psycopg
import pytest

from shared.warehouse import staging

COLUMNS = """
    i2 smallint, i4 integer, i8 bigint, f8 double precision, flag boolean, label varchar, code char(3),
    note text, day date, at time(3), stamp timestamp(3), money numeric(10, 2), whole numeric(6, 0)
"""
ROWS = [
    # A null in every column, extremes, zero and negative numbers, the epochs of both sides,
    # non-ASCII and empty strings, milliseconds.
    (None, None, None, None, None, None, None, None, None, None, None, None, None),
    (
        -32768,
        2**31 - 1,
        -(2**63),
        -1.5,
        True,
        "Leds",
        "GBP",
        "",
        date(1999, 12, 31),
        time(0, 0),
        datetime(1970, 1, 1),
        Decimal("-99999999.99"),
        Decimal("-999999"),
    ),
    (
        7,
        0,
        2**63 - 1,
        0.0,
        False,
        "Zoë Ångström 東京",
        "EU",
        'a\tb\nc,"d"\\',
        date(2000, 1, 1),
        time(23, 59, 59, 999000),
        datetime(2024, 11, 15, 14, 20, 52, 186000),
        Decimal("0.00"),
        Decimal("0"),
    ),
    (
        1,
        -1,
        1,
        1e300,
        None,
        "x" * 300,
        None,
        "null",
        date(2024, 3, 31),
        time(12, 30, 0, 1000),
        datetime(2000, 1, 1, 0, 0, 0, 1000),
        Decimal("12345.06"),
        Decimal("10000"),
    ),
]
SCHEMA = {
    "i2": pl.Int16,
    "i4": pl.Int32,
    "i8": pl.Int64,
    "f8": pl.Float64,
    "flag": pl.Boolean,
    "label": pl.String,
    "code": pl.String,
    "note": pl.String,
    "day": pl.Date,
    "at": pl.Time,
    "stamp": pl.Datetime("ms"),
    "money": pl.Decimal(10, 2),
    "whole": pl.Decimal(6, 0),
}


@pytest.fixture
def conn(empty_warehouse: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(empty_warehouse) as connection:
        connection.execute(f"CREATE TABLE by_binary ({COLUMNS})")
        connection.execute(f"CREATE TABLE by_csv ({COLUMNS})")
        yield connection


def frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def read(conn: psycopg.Connection, table: str) -> list[tuple]:
    return conn.execute(f"SELECT * FROM {table} ORDER BY i4 NULLS FIRST").fetchall()


def test_every_type_reads_back_as_what_csv_gives(conn: psycopg.Connection) -> None:
    data = frame(ROWS)
    types = staging.column_types(conn, "by_binary", data.columns)
    assert staging.encodable(data.schema, types)
    staging.copy_frame(conn, "by_binary", data)
    with conn.cursor() as cur, cur.copy("COPY by_csv FROM STDIN (FORMAT csv)") as pipe:
        pipe.write(data.write_csv(include_header=False, time_format="%H:%M:%S%.3f").encode())
    assert read(conn, "by_binary") == read(conn, "by_csv")
    assert read(conn, "by_binary")[2][5:8] == ("Zoë Ångström 東京", "EU ", 'a\tb\nc,"d"\\')


@pytest.mark.parametrize("batch_rows", [1, 2, 1000])
def test_batches_of_fixed_and_varying_layout_give_the_same_rows(conn: psycopg.Connection, batch_rows: int) -> None:
    # Rows 4-5 (the third batch at size 2) have no null and one width per column: the packed path.
    same_widths = (*ROWS[2][:7], "abcdefghijk", *ROWS[2][8:11], Decimal("-0.01"), ROWS[2][12])
    rows = [*ROWS, ROWS[2], same_widths]
    data = frame(rows).with_columns(i4=pl.int_range(0, len(rows), dtype=pl.Int32))
    types = staging.column_types(conn, "by_binary", data.columns)
    with conn.cursor() as cur, cur.copy("COPY by_binary FROM STDIN (FORMAT binary)") as pipe:
        for chunk in staging.encode(data, types, batch_rows):
            pipe.write(chunk)
    assert [row[1] for row in read(conn, "by_binary")] == list(range(len(rows)))
    assert [row[11] for row in read(conn, "by_binary")] == [r[11] for r in rows]
    assert [row[5] for row in read(conn, "by_binary")] == [r[5] for r in rows]


def test_a_type_it_does_not_encode_goes_as_csv(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE zoned (i4 integer, at timestamptz)")
    data = pl.DataFrame({"i4": [1], "at": [datetime(2024, 1, 1, 12)]}, schema={"i4": pl.Int32, "at": pl.Datetime("ms")})
    assert not staging.encodable(data.schema, staging.column_types(conn, "zoned", data.columns))
    staging.copy_frame(conn, "zoned", data)
    assert conn.execute("SELECT i4 FROM zoned").fetchone() == (1,)


def test_a_dtype_that_does_not_match_the_column_is_not_encodable() -> None:
    assert not staging.encodable(pl.Schema({"a": pl.String}), ["int4"])
    assert not staging.encodable(pl.Schema({"a": pl.Decimal(20, 2)}), ["numeric"])
    assert staging.encodable(pl.Schema({"a": pl.Decimal(10, 2)}), ["numeric"])


def test_copy_frame_names_a_column_the_table_lacks(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.UndefinedColumn, match="by_binary has no column"):
        staging.copy_frame(conn, "by_binary", pl.DataFrame({"i4": [1], "nope": [2]}))
