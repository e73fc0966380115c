"""The read-only connection to totesys: one REPEATABLE READ, READ ONLY transaction per extract run.

Errors name the server (host, port, database) and the setting TOTESYS_DB_URL, never the URL itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg

from shared.connection import connect
from shared.connection import describe_server as describe_source
from shared.settings import Settings

__all__ = ["SETTING", "connect_source", "database_now", "describe_source", "source_snapshot"]

SETTING = "TOTESYS_DB_URL"
APPLICATION_NAME = "totes-extract"
# Session settings that make COPY's text output parse the same way on every server (transaction-local).
SESSION_SETTINGS = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "client_encoding": "UTF8"}


def connect_source(settings: Settings) -> psycopg.Connection:
    """A connection to the source named by TOTESYS_DB_URL within DB_CONNECT_TIMEOUT; TerminalError if the
    setting is malformed, TransientError naming host and setting if it cannot be opened."""
    secret = settings.require("source").totesys_db_url
    assert secret is not None
    return connect(
        secret,
        SETTING,
        timeout_s=settings.db_connect_timeout,
        what="extract",
        role="source database",
        application_name=APPLICATION_NAME,
        consequence="nothing was extracted and the watermark is unchanged; the next scheduled run tries again",
    )


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
    """The database clock at the start of the snapshot transaction (transaction_timestamp()), in UTC."""
    row = conn.execute("SELECT transaction_timestamp()").fetchone()
    assert row is not None and isinstance(row[0], datetime)
    return row[0].astimezone(UTC)
