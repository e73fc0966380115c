"""The source connection: a read-only snapshot, and errors that name the host and setting, never the password."""

from __future__ import annotations

import logging
import uuid
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from shared.errors import TerminalError, TransientError
from shared.extract import STATE_BLOB, extract
from shared.extract.source import describe_source, source_snapshot
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


def test_describe_source_never_shows_user_or_password() -> None:
    text = describe_source(f"postgresql://totes:{PASSWORD}@db.example.com:6432/totesys?sslmode=require")
    assert text == "host=db.example.com port=6432 dbname=totesys"
    text = describe_source(f"host=10.0.0.5 user=totes password={PASSWORD} dbname=totesys")
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
