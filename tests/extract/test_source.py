"""The source as the extract reads it: a read-only snapshot whose errors name the host and setting, never the
password; catalog types mapped to Parquet dtypes; COPY's CSV parsed into source-typed frames, and the tail of
already archived rows (pure)."""

from __future__ import annotations

import logging
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal
from psycopg import sql

from shared.connection import describe_server
from shared.errors import TerminalError, TransientError
from shared.extract import STATE_BLOB, extract
from shared.extract.source import (
    SourceColumn,
    SourceTable,
    Tail,
    copy_query,
    drop_archived,
    parse_batch,
    polars_type,
    read_batches,
    read_catalog,
    source_snapshot,
)
from shared.lake import Lake
from shared.local.source.seed import SNAPSHOT_COUNTS
from shared.local.stack import free_port
from shared.settings import Settings, load_settings
from tests.extract.runs import raw_blobs

PASSWORD = "pw-Do-Not-Leak-7f3a9c"


def test_the_snapshot_is_repeatable_read_and_read_only(extract_settings: Settings) -> None:
    with source_snapshot(extract_settings) as conn:
        assert conn.execute("SHOW transaction_isolation").fetchone() == ("repeatable read",)
        assert conn.execute("SHOW transaction_read_only").fetchone() == ("on",)
        assert conn.execute("SHOW TimeZone").fetchone() == ("UTC",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("UPDATE currency SET currency_code = 'XXX'")


def test_read_batches_types_every_row_and_closing_early_cancels_the_copy(extract_settings: Settings) -> None:
    with source_snapshot(extract_settings) as conn:
        table = read_catalog(conn)["payment"]
        frames = list(read_batches(conn, table, None, batch_rows=4_000))
        full, rest = divmod(SNAPSHOT_COUNTS["payment"], 4_000)
        assert [f.height for f in frames] == [4_000] * full + [rest]
        assert all(f.schema == table.polars_schema for f in frames)
        assert pl.concat(frames)["payment_id"].n_unique() == SNAPSHOT_COUNTS["payment"]

        batches = read_batches(conn, table, None, batch_rows=100)
        assert next(batches).height == 100
        batches.close()  # cancels the COPY: the connection is idle again, in a transaction the cancel aborted
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):  # not "another command is already in progress"
            conn.execute("SELECT 1")


def test_describe_source_never_shows_user_or_password() -> None:
    text = describe_server(f"postgresql://totes:{PASSWORD}@db.example.com:6432/totesys?sslmode=require")
    assert text == "host=db.example.com port=6432 dbname=totesys"
    text = describe_server(f"host=10.0.0.5 user=totes password={PASSWORD} dbname=totesys")
    assert text == "host=10.0.0.5 dbname=totesys"


def _failing_extract(env: dict[str, str], url: str, lake: Lake) -> pytest.ExceptionInfo[Exception]:
    settings = load_settings({**env, "TOTESYS_DB_URL": url}, needs=("source", "lake"))
    with pytest.raises((TransientError, TerminalError)) as error:
        extract(settings, lake)
    return error


def test_an_unreachable_source_names_host_and_setting_and_changes_nothing(
    extract_settings: Settings, source_env: dict[str, str], lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    extract(extract_settings, lake)
    blobs, before = raw_blobs(lake), lake.read_versioned(lake.raw, STATE_BLOB).data
    caplog.set_level(logging.DEBUG)
    url = f"postgresql://totes:{PASSWORD}@127.0.0.1:{free_port()}/totesys?connect_timeout=5"

    error = _failing_extract(source_env, url, lake)

    assert error.type is TransientError
    message = str(error.value)
    assert "host=127.0.0.1" in message and "TOTESYS_DB_URL" in message and "dbname=totesys" in message
    assert PASSWORD not in message and PASSWORD not in repr(error.value.__cause__)
    assert raw_blobs(lake) == blobs
    assert lake.read_versioned(lake.raw, STATE_BLOB).data == before
    assert not any(PASSWORD in r.getMessage() for r in caplog.records)


def test_bad_credentials_name_host_and_setting_and_write_nothing(
    source_env: dict[str, str], source_db: str, lake: Lake
) -> None:
    # The local server trusts its socket, so an unknown role stands for rejected credentials.
    head, _, query = source_db.partition("?")
    database = head.rsplit("/", 1)[1]
    url = f"postgresql://no_such_role:{quote(PASSWORD)}@/{database}?{query}"

    error = _failing_extract(source_env, url, lake)

    assert error.type is TransientError
    message = str(error.value)
    assert "TOTESYS_DB_URL" in message and "host=/" in message and "no_such_role" in message
    assert PASSWORD not in message
    assert raw_blobs(lake) == []


def test_an_unparseable_url_is_terminal_and_not_echoed(source_env: dict[str, str], lake: Lake) -> None:
    error = _failing_extract(source_env, f"host=x password={PASSWORD} bogus_option=1", lake)
    assert error.type is TerminalError
    assert "TOTESYS_DB_URL" in str(error.value) and PASSWORD not in str(error.value)


def test_no_password_appears_in_any_log_line(
    source_env: dict[str, str], source_db: str, lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    # A URL carrying a password (the local server trusts the socket, so it connects anyway).
    head, _, query = source_db.partition("?")
    scheme, _, rest = head.partition("://")
    user, _, location = rest.partition("@")
    with_password = f"{scheme}://{user.rstrip(':')}:{PASSWORD}@{location}?{query}"
    settings = load_settings({**source_env, "TOTESYS_DB_URL": with_password}, needs=("source", "lake"))
    caplog.set_level(logging.DEBUG)

    result = extract(settings, lake)
    assert result.rows == SNAPSHOT_COUNTS
    assert extract(settings, lake).run_id is None
    with pytest.raises(TransientError) as error:
        bad = f"postgresql://totes:{PASSWORD}@127.0.0.1:{free_port()}/totesys"
        extract(load_settings({**source_env, "TOTESYS_DB_URL": bad}, needs=("source", "lake")), lake)

    assert caplog.records
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()
        assert PASSWORD not in str(getattr(record, "custom_dimensions", ""))
    assert PASSWORD not in str(error.value)
    assert PASSWORD not in repr(settings)
    for name in raw_blobs(lake):
        if name.endswith(".json"):
            assert PASSWORD.encode() not in lake.get(lake.raw, name)


def test_read_only_credentials_suffice_and_a_missing_grant_is_terminal(
    source_env: dict[str, str], source_db: str, admin_url: str, lake: Lake
) -> None:
    role = f"reader_{uuid.uuid4().hex[:8]}"
    head, _, query = source_db.partition("?")
    url = f"postgresql://{role}@/{head.rsplit('/', 1)[1]}?{query}"
    settings = load_settings({**source_env, "TOTESYS_DB_URL": url}, needs=("source", "lake"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        with psycopg.connect(source_db, autocommit=True) as conn:
            conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
        with pytest.raises(TerminalError, match="USAGE on the source schema"):
            extract(settings, lake)
        with psycopg.connect(source_db, autocommit=True) as conn:
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        assert extract(settings, lake).rows == SNAPSHOT_COUNTS

        with psycopg.connect(source_db, autocommit=True) as conn:
            conn.execute(sql.SQL("REVOKE SELECT ON payment FROM {}").format(sql.Identifier(role)))
            conn.execute("UPDATE staff SET first_name = 'Renamed', last_updated = now() WHERE staff_id = 3")
        with pytest.raises(TerminalError) as error:
            extract(settings, lake)
        assert "table payment" in str(error.value) and "grants" in str(error.value)
    finally:
        with psycopg.connect(source_db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


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


TABLE = SourceTable(
    "public",
    "thing",
    (
        SourceColumn("thing_id", "integer", pl.Int32(), True),
        SourceColumn("name", "text", pl.String(), True),
        SourceColumn("price", "numeric(10,2)", pl.Decimal(10, 2), True),
        SourceColumn("paid", "boolean", pl.Boolean(), True),
        SourceColumn("last_updated", "timestamp(3) without time zone", pl.Datetime("ms"), True),
        SourceColumn("seen", "timestamp(6) with time zone", pl.Datetime("us", "UTC"), False),
        SourceColumn("day", "date", pl.Date(), False),
        SourceColumn("meta", "jsonb", pl.String(), False, as_text=True),
        SourceColumn("stamp", "timestamp(3) with time zone", pl.Datetime("ms", "UTC"), False),
    ),
)


def test_parse_batch_types_every_column_and_keeps_null_apart_from_empty() -> None:
    csv = (
        b'1,"a ""b"", c",12.50,t,1731666069962,2024-11-15 10:21:09.5+00,2024-11-15,"{""k"": 1}",-1\n'
        b'2,"",0.00,f,1731666069000,,,,\n'
        b'3,,-3.10,,1731666069900,,,"line\nbreak",0\n'
    )
    expected = pl.DataFrame(
        {
            "thing_id": [1, 2, 3],
            "name": ['a "b", c', "", None],
            "price": [Decimal("12.50"), Decimal("0.00"), Decimal("-3.10")],
            "paid": [True, False, None],
            "last_updated": [
                datetime(2024, 11, 15, 10, 21, 9, 962000),
                datetime(2024, 11, 15, 10, 21, 9),
                datetime(2024, 11, 15, 10, 21, 9, 900000),
            ],
            "seen": [datetime(2024, 11, 15, 10, 21, 9, 500000), None, None],
            "day": [date(2024, 11, 15), None, None],
            "meta": ['{"k": 1}', None, "line\nbreak"],
            "stamp": [datetime(1969, 12, 31, 23, 59, 59, 999000), None, datetime(1970, 1, 1)],
        },
        schema={
            "thing_id": pl.Int32,
            "name": pl.String,
            "price": pl.Decimal(10, 2),
            "paid": pl.Boolean,
            "last_updated": pl.Datetime("ms"),
            "seen": pl.Datetime("us", "UTC"),
            "day": pl.Date,
            "meta": pl.String,
            "stamp": pl.Datetime("ms", "UTC"),
        },
    )
    assert_frame_equal(parse_batch(TABLE, csv), expected)


def test_a_value_that_does_not_parse_is_terminal_and_names_the_table() -> None:
    with pytest.raises(TerminalError, match="thing"):
        parse_batch(TABLE, b"x,a,1.00,t,1731666069000,,,,\n")


def test_copy_query_quotes_identifiers_and_passes_the_bound_as_a_parameter() -> None:
    after = datetime(2024, 11, 15, 10, 0)
    query, params = copy_query(TABLE, after)
    text = query.as_string()
    assert text == (
        'COPY (SELECT "thing_id", "name", "price", "paid", round(date_part(\'epoch\', "last_updated") * 1000)::int8, '
        '"seen", "day", "meta"::text, round(date_part(\'epoch\', "stamp") * 1000)::int8 '
        'FROM "public"."thing" WHERE "last_updated" > %s) TO STDOUT (FORMAT csv)'
    )
    assert params == (after,)
    assert copy_query(TABLE, None)[1] == ()


def _rows(ids: list[int], minutes: list[int]) -> pl.DataFrame:
    start = datetime(2024, 1, 1)
    return pl.DataFrame(
        {"thing_id": ids, "last_updated": [start + timedelta(minutes=m) for m in minutes]},
        schema={"thing_id": pl.Int32, "last_updated": pl.Datetime("ms")},
    )


def test_the_tail_keeps_the_rows_within_the_lookback_of_the_newest() -> None:
    tail = Tail("thing_id", None, timedelta(minutes=10))
    tail.add(_rows([1, 2, 3], [0, 5, 12]))
    tail.add(_rows([4, 5], [20, 1]))
    rows = tail.rows()
    assert rows is not None
    assert sorted(rows["thing_id"].to_list()) == [3, 4]  # newest is minute 20: rows after minute 10
    tail = Tail("thing_id", datetime(2024, 1, 1) + timedelta(minutes=15), timedelta(minutes=10))
    tail.add(_rows([1, 2, 3], [0, 6, 12]))
    assert sorted(tail.rows()["thing_id"].to_list()) == [2, 3]  # type: ignore[index]


def test_rows_identical_to_archived_ones_are_dropped() -> None:
    frame = _rows([1, 2, 3, 4], [1, 2, 3, 4])
    tail = Tail("thing_id", None, timedelta(minutes=10))
    tail.add(frame.filter(pl.col("thing_id") != 4))
    archived = tail.rows()
    assert archived is not None and archived.height == 3
    changed = frame.with_columns(
        pl.when(pl.col("thing_id") == 2).then(pl.col("last_updated") + timedelta(seconds=1)).otherwise("last_updated")
    )
    kept = drop_archived(changed, archived, "thing_id")
    assert kept["thing_id"].to_list() == [2, 4]  # 2 changed, 4 was never archived; order kept
    assert drop_archived(frame.head(0), archived, "thing_id").height == 0


def test_a_tail_too_long_to_keep_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.extract.source

    monkeypatch.setattr(shared.extract.source, "TAIL_LIMIT", 2)
    tail = Tail("thing_id", None, timedelta(minutes=10))
    tail.add(_rows([1, 2, 3], [1, 2, 3]))
    assert tail.rows() is None
    empty = Tail("thing_id", None, timedelta(minutes=10)).rows()
    assert empty is not None and empty.height == 0
