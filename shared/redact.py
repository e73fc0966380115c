"""Scrub passwords and storage keys out of any text before it is logged, printed or stored.

Two nets: every secret value the settings hold (registered by `Secret` when it is made, with its parts:
a URL's password, raw and percent-decoded, a connection string's AccountKey / SharedAccessSignature /
sig) is masked wherever it appears; and credential-shaped text (`scheme://user:PASSWORD@`,
`password=...`, `AccountKey=...`, `SharedAccessSignature=...`, `sig=...`) is masked even when its value
was never registered (a URL a driver echoes back whole, a value read outside the settings).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "********"
# Shorter registered values are only masked as a whole word: "pw" must not eat "pwd" or "postgresql".
_PATTERNS = (
    # user:password@ in a URI (libpq, also inside a longer message and with an unclosed IPv6 "[").
    re.compile(r"(?P<keep>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#\[\]]*:)(?P<secret>[^\s@]+?)(?=@)"),
    # password=... in a conninfo string or a URI query (quoted or not).
    re.compile(r"(?P<keep>\bpassword\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|[^\s&;'\"]+)", re.IGNORECASE),
    # Storage connection strings and SAS tokens.
    re.compile(r"(?P<keep>\bAccountKey\s*=\s*)(?P<secret>[^;\s'\"]+)", re.IGNORECASE),
    re.compile(r"(?P<keep>\bSharedAccessSignature\s*=\s*)(?P<secret>[^;\s'\"]+)", re.IGNORECASE),
    re.compile(r"(?P<keep>[?&]sig=)(?P<secret>[^&\s'\"]+)", re.IGNORECASE),
    # Application Insights / Entra client secrets sometimes travel as key=value too.
    re.compile(r"(?P<keep>\b(?:client_?secret|secret)\s*=\s*)(?P<secret>[^;\s&'\"]+)", re.IGNORECASE),
)
_PARTS = (
    re.compile(r"://[^\s:/@?#\[\]]*:(?P<secret>[^\s@]+)@"),
    re.compile(r"\bpassword\s*=\s*'?(?P<secret>[^\s&;']+)", re.IGNORECASE),
    re.compile(r"\bAccountKey\s*=\s*(?P<secret>[^;\s]+)", re.IGNORECASE),
    re.compile(r"\bSharedAccessSignature\s*=\s*(?P<secret>[^;\s]+)", re.IGNORECASE),
    re.compile(r"[?&]sig=(?P<secret>[^&\s;]+)", re.IGNORECASE),
)
_lock = threading.Lock()
_known: set[str] = set()
_known_re: re.Pattern[str] | None = None


def register(value: str) -> None:
    """Remember a secret value, and its password / key parts, to be masked in every later message."""
    found = {value}
    for pattern in _PARTS:
        for match in pattern.finditer(value):
            part = match["secret"]
            found |= {part, unquote(part)}
    found = {f for f in found if f and f != MASK and len(f) >= 3}
    global _known_re
    with _lock:
        if found <= _known:
            return
        _known.update(found)
        alternatives = "|".join(re.escape(v) for v in sorted(_known, key=len, reverse=True))
        _known_re = re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")


def scrub(text: str) -> str:
    """`text` with every registered secret and every credential-shaped value replaced by ********."""
    known = _known_re
    if known is not None:
        text = known.sub(MASK, text)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m["keep"] + MASK, text)
    return text


def describe(exc: BaseException) -> str:
    """'<Type>: <message>' of an exception, scrubbed, on one line (the driver's own text, made safe)."""
    message = " ".join(str(exc).split())
    return scrub(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs a record's message, arguments and traceback text (never drops it)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub `record` in place; always keep it."""
        scrub_record(record)
        return True


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Render and scrub a record's message once (args folded in), and its exception and stack text."""
    if getattr(record, "_totes_scrubbed", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep what logging would show, scrubbed
        message = f"{record.msg!r} {record.args!r}"
    record.msg, record.args = scrub(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = RedactingFilter._formatter.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    record._totes_scrubbed = True
    return record


_factory_installed = False


def install(handlers: Iterable[logging.Handler] | None = None) -> None:
    """Scrub every log record: a RedactingFilter on each root handler (or `handlers`), and a record
    factory that scrubs records as they are made, for handlers added later (the Functions worker's,
    Azure Monitor's exporter). Idempotent."""
    global _factory_installed
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    with _lock:
        if _factory_installed:
            return
        make = logging.getLogRecordFactory()

        def scrubbed(*args: object, **kwargs: object) -> logging.LogRecord:
            return scrub_record(make(*args, **kwargs))

        logging.setLogRecordFactory(scrubbed)
        _factory_installed = True
