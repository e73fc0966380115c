"""The read-only connection to totesys: one REPEATABLE READ, READ ONLY transaction per extract run.

Errors name the server (host, port, database) and the setting TOTESYS_DB_URL, never the URL itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from shared.errors import TerminalError, TransientError
from shared.settings import Settings

SETTING = "TOTESYS_DB_URL"
CONNECT_TIMEOUT_S = 15
APPLICATION_NAME = "totes-extract"
# Session settings that make COPY's text output parse the same way on every server (transaction-local).
SESSION_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "client_encoding": "UTF8"}


def describe_source(url: str) -> str:
    """'host=... port=... dbname=...' of a libpq URL or conninfo: no user, no password, no options."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "an unparseable address"
    host = params.get("host") or params.get("hostaddr") or "localhost (libpq default)"
    parts = [f"host={host}"]
    if params.get("port"):
        parts.append(f"port={params['port']}")
    if params.get("dbname"):
        parts.append(f"dbname={params['dbname']}")
    return " ".join(parts)


def _scrub(message: str, url: str) -> str:
    """`message` with the password of `url` (if any) masked, in case a driver ever echoes it."""
    with contextlib.suppress(psycopg.Error):
        password = conninfo_to_dict(url).get("password")
        if password:
            message = message.replace(str(password), "********")
    return message.strip()


def connect_source(settings: Settings) -> psycopg.Connection:
    """A connection to the source named by TOTESYS_DB_URL; TransientError naming host and setting if it
    cannot be opened (server down, refused, bad credentials)."""
    secret = settings.require("source").totesys_db_url
    assert secret is not None
    url = secret.reveal()
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        raise TerminalError(
            f"{SETTING} is not a valid libpq URI or conninfo string (value not shown): fix the setting; "
            "nothing was extracted"
        ) from None
    options: dict[str, Any] = {}
    if "connect_timeout" not in params:
        options["connect_timeout"] = CONNECT_TIMEOUT_S
    if "application_name" not in params:
        options["application_name"] = APPLICATION_NAME
    try:
        return psycopg.connect(url, **options)
    except psycopg.Error as exc:
        # `from None`: the driver's exception is summarised here, scrubbed, instead of chained.
        raise TransientError(
            f"cannot connect to the source database at {describe_source(url)} (setting {SETTING}): "
            f"{_scrub(str(exc), url)}; nothing was extracted and the watermark is unchanged; "
            "the next scheduled run tries again (check the server and the credentials in the setting)"
        ) from None


@contextlib.contextmanager
def source_snapshot(settings: Settings) -> Iterator[psycopg.Connection]:
    """A source connection inside one REPEATABLE READ, READ ONLY transaction: every query sees the same
    consistent snapshot and nothing can be written."""
    conn = connect_source(settings)
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            for name, value in SESSION_SETTINGS.items():
                conn.execute("SELECT set_config(%s, %s, true)", (name, value))
            yield conn
    finally:
        conn.close()


def database_now(conn: psycopg.Connection) -> datetime:
    """The database clock at the start of the snapshot transaction, in UTC."""
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None and isinstance(row[0], datetime)
    return row[0].astimezone(UTC)
