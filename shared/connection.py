"""Open a PostgreSQL connection from a URL setting, with bounded waits and errors that never show it.

Errors name the server (host, port, database), the setting and DB_CONNECT_TIMEOUT, never the URL: a
malformed URL is a TerminalError ("value not shown"), an unreachable server a TransientError.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from shared.errors import TerminalError, TransientError
from shared.redact import describe, scrub
from shared.settings import Secret


def describe_server(url: str) -> str:
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


def describe_reason(reason: str) -> str:
    """libpq's reason for refusing a URL, scrubbed, without a trailing colon."""
    return scrub(reason).rstrip(": ")


def connect(
    secret: Secret,
    setting: str,
    *,
    timeout_s: int,
    what: str,
    role: str,
    consequence: str,
    application_name: str | None = None,
    **options: Any,
) -> psycopg.Connection:
    """A connection to the `role` server of URL setting `setting` within `timeout_s` seconds (unless the
    URL sets its own connect_timeout); errors start with `what`, name server and setting, and end with
    `consequence` when a retry may help."""
    url = secret.reveal()
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        # libpq quotes the whole URL, password included, in this message: only its reason is passed on.
        reason = re.sub(r'"[^"]*(://|=)[^"]*"', "(the value)", " ".join(str(exc).split()))
        raise TerminalError(
            f"{what}: {setting} is not a valid libpq URI or conninfo string ({describe_reason(reason)}; value "
            "not shown): fix the setting; nothing was read or written"
        ) from None
    if "connect_timeout" not in params:
        options["connect_timeout"] = timeout_s
    if application_name and "application_name" not in params:
        options["application_name"] = application_name
    try:
        return psycopg.connect(url, **options)
    except psycopg.Error as exc:
        # `from None`: the driver's exception is summarised here, scrubbed, instead of chained.
        raise TransientError(
            f"{what}: {role} unreachable at {describe_server(url)} (setting {setting}, waited at most "
            f"DB_CONNECT_TIMEOUT={options.get('connect_timeout', params.get('connect_timeout'))} s): "
            f"{describe(exc)}; {consequence} (check the server and the credentials in the setting)"
        ) from None
