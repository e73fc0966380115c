"""Mapping catalog types to Parquet dtypes (pure)."""

from __future__ import annotations

import polars as pl
import pytest

from shared.extract.catalog import polars_type


def _typmod(precision: int, scale: int) -> int:
    return ((precision << 16) | scale) + 4


@pytest.mark.parametrize(
    ("typname", "typtype", "typmod", "dtype", "as_text"),
    [
        ("int4", "b", -1, pl.Int32(), False),
        ("int2", "b", -1, pl.Int16(), False),
        ("int8", "b", -1, pl.Int64(), False),
        ("numeric", "b", _typmod(10, 2), pl.Decimal(10, 2), False),
        ("numeric", "b", -1, pl.String(), True),
        ("numeric", "b", _typmod(60, 2), pl.String(), True),
        ("timestamp", "b", 3, pl.Datetime("ms"), False),
        ("timestamp", "b", -1, pl.Datetime("us"), False),
        ("timestamptz", "b", 6, pl.Datetime("us", "UTC"), False),
        ("text", "b", -1, pl.String(), False),
        ("varchar", "b", 7, pl.String(), False),
        ("TransactionType", "e", -1, pl.String(), False),
        ("bool", "b", -1, pl.Boolean(), False),
        ("date", "b", -1, pl.Date(), False),
        ("float8", "b", -1, pl.Float64(), False),
        ("jsonb", "b", -1, pl.String(), True),
        ("uuid", "b", -1, pl.String(), True),
        ("_int4", "b", -1, pl.String(), True),
    ],
)
def test_catalog_types_map_to_parquet_dtypes(
    typname: str, typtype: str, typmod: int, dtype: pl.DataType, as_text: bool
) -> None:
    assert polars_type(typname, typtype, typmod) == (dtype, as_text)
