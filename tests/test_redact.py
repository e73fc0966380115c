"""Secret scrubbing: credential-shaped text and registered secrets never reach a message or a log line."""

from __future__ import annotations

import logging

import pytest

from shared import redact
from shared.settings import Secret, load_settings

PASSWORD = "Pw-4f9Q!x"
KEY = "c2VjcmV0LWFjY291bnQta2V5LWZvci10ZXN0cw=="


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql://totes:{PASSWORD}@db.example.com:5432/totesys",
        f'end of string reached when looking for matching "]" in IPv6 host address in URI: '
        f'"postgresql://totes:{PASSWORD}@[::1/warehouse"',
        f"postgres://totes:{PASSWORD}@host/db?bogus=1 failed",
        f"host=db user=totes password={PASSWORD} dbname=totesys",
        f"host=db password='{PASSWORD}' dbname=totesys",
        f"postgresql://db/totesys?user=totes&password={PASSWORD}&sslmode=require",
        f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net",
        f"BlobEndpoint=https://acct.blob.core.windows.net;SharedAccessSignature=sv=2022&sig={KEY}",
        f"https://acct.blob.core.windows.net/raw/x.json?sv=2022-11-02&sig={KEY}&se=2030",
    ],
)
def test_credential_shaped_values_are_masked_unregistered(text: str) -> None:
    scrubbed = redact.scrub(text)
    assert PASSWORD not in scrubbed and KEY not in scrubbed and KEY[:20] not in scrubbed
    assert redact.MASK in scrubbed


def test_text_without_credentials_is_unchanged() -> None:
    text = "cannot connect to the database at host=127.0.0.1 port=1 (setting WAREHOUSE_DB_URL): postgresql://u@h/db"
    assert redact.scrub(text) == text


def test_a_registered_secret_is_masked_anywhere_as_a_whole_word() -> None:
    odd = "zq7-Registered"
    Secret(f"postgresql://totes:{odd}@db/totesys")  # making a Secret registers its parts
    assert redact.scrub(f"the server said: {odd}!") == f"the server said: {redact.MASK}!"
    assert redact.scrub(f"{odd}suffix") == f"{odd}suffix"  # part of a longer word: left alone
    encoded = "p%40ss-Encoded1"
    Secret(f"postgresql://totes:{encoded}@db/totesys")
    assert "p@ss-Encoded1" not in redact.scrub("echoed decoded: p@ss-Encoded1")


def test_reprs_of_settings_and_secrets_show_no_value() -> None:
    settings = load_settings(
        {
            "TOTESYS_DB_URL": f"postgresql://totes:{PASSWORD}@db/totesys",
            "WAREHOUSE_DB_URL": f"postgresql://totes:{PASSWORD}@[::1/warehouse",
            "LAKE_STORAGE": f"AccountName=acct;AccountKey={KEY}",
        }
    )
    for text in (repr(settings), str(settings), repr(settings.lake), repr(settings.totesys_db_url)):
        assert PASSWORD not in text and KEY not in text


def test_the_filter_scrubs_message_arguments_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.redact")
    caplog.set_level(logging.DEBUG, logger="tests.redact")
    caplog.handler.addFilter(redact.RedactingFilter())
    try:
        raise ValueError(f"bad URI postgresql://totes:{PASSWORD}@[::1/x")
    except ValueError:
        logger.debug("connecting to %s", f"host=db password={PASSWORD}", exc_info=True)
    [record] = caplog.records
    assert PASSWORD not in record.getMessage()
    assert PASSWORD not in caplog.text and "ValueError: bad URI" in caplog.text


def test_install_scrubs_records_made_for_any_handler(caplog: pytest.LogCaptureFixture) -> None:
    redact.install(handlers=[])  # only the record factory: handlers added later are covered too
    caplog.set_level(logging.DEBUG, logger="tests.redact")
    logging.getLogger("tests.redact").warning("AccountKey=%s;", KEY)
    assert KEY not in caplog.text and "AccountKey=********" in caplog.text
