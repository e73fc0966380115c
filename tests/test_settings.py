"""The settings object: every missing name listed, Key Vault references, secrets masked."""

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from shared.errors import SettingsError
from shared.settings import Secret, load_settings, parse_lookback

SOURCE = "postgresql://reader:s3cret-pw@db.example:5432/totesys"


def test_defaults() -> None:
    settings = load_settings({"LAKE_STORAGE": "UseDevelopmentStorage=true"}, needs=("lake",))
    assert (settings.raw_container, settings.curated_container, settings.load_queue) == (
        "raw",
        "curated",
        "load-jobs",
    )
    assert settings.poison_queue == "load-jobs-poison"
    assert settings.extract_schedule == "0 */5 * * * *"
    assert settings.extract_lookback == timedelta(minutes=10)
    assert (settings.storage_timeout, settings.db_connect_timeout) == (10.0, 10)


def test_every_missing_name_is_listed_together() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({}, needs=("source", "warehouse", "lake"))
    message = str(err.value)
    for name in ("TOTESYS_DB_URL", "WAREHOUSE_DB_URL", "LAKE_STORAGE"):
        assert name in message


def test_invalid_values_are_listed_with_missing_ones() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"EXTRACT_LOOKBACK": "soon", "RAW_CONTAINER": "Raw_Data"}, needs=("source",))
    message = str(err.value)
    assert "TOTESYS_DB_URL" in message
    assert "EXTRACT_LOOKBACK='soon'" in message
    assert "RAW_CONTAINER='Raw_Data'" in message


def test_unresolved_key_vault_reference_is_reported_as_such() -> None:
    env = {
        "TOTESYS_DB_URL": "@Microsoft.KeyVault(SecretUri=https://kv-totes-dev.vault.azure.net/secrets/totesys-db-url/)",
        "LAKE_STORAGE": "UseDevelopmentStorage=true",
    }
    with pytest.raises(SettingsError, match="TOTESYS_DB_URL is an unresolved Key Vault reference"):
        load_settings(env, needs=("source", "lake"))


def test_key_vault_url_reads_secrets_through_the_one_reader() -> None:
    asked = []

    def reader(vault: str, name: str) -> str:
        asked.append((vault, name))
        return SOURCE

    settings = load_settings(
        {"KEY_VAULT_URL": "https://kv-totes-dev.vault.azure.net/"}, needs=("source",), read_secret=reader
    )
    assert settings.totesys_db_url is not None
    assert settings.totesys_db_url.reveal() == SOURCE
    assert ("https://kv-totes-dev.vault.azure.net/", "totesys-db-url") in asked


def test_key_vault_failure_names_the_setting_not_a_value() -> None:
    def reader(vault: str, name: str) -> str:
        raise PermissionError("forbidden")

    with pytest.raises(SettingsError, match="TOTESYS_DB_URL: could not read secret 'totesys-db-url'"):
        load_settings({"KEY_VAULT_URL": "https://kv.example/"}, needs=("source",), read_secret=reader)


def test_secrets_are_masked_in_repr_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({"TOTESYS_DB_URL": SOURCE, "LAKE_STORAGE": "AccountKey=abc123secret"})
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s %r", settings, settings)
    assert "s3cret-pw" not in repr(settings)
    assert "abc123secret" not in repr(settings)
    assert "s3cret-pw" not in caplog.text
    assert str(Secret("x")) == "********"


def test_identity_based_lake_connection() -> None:
    settings = load_settings(
        {
            "LAKE_STORAGE__blobServiceUri": "https://sttotesdevlake.blob.core.windows.net",
            "LAKE_STORAGE__queueServiceUri": "https://sttotesdevlake.queue.core.windows.net",
            "LAKE_STORAGE__clientId": "00000000-0000-0000-0000-000000000001",
        },
        needs=("lake",),
    )
    assert settings.lake is not None
    assert settings.lake.connection_string is None
    assert settings.lake.client_id == "00000000-0000-0000-0000-000000000001"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("600", timedelta(minutes=10)),
        ("10m", timedelta(minutes=10)),
        ("90s", timedelta(seconds=90)),
        ("1h", timedelta(hours=1)),
        ("00:15:00", timedelta(minutes=15)),
    ],
)
def test_lookback_forms(text: str, expected: timedelta) -> None:
    assert parse_lookback(text) == expected


ENTRA_URL = "postgresql://id-totes-dev@psql-totes-dev.postgres.database.azure.com:5432/warehouse?sslmode=require"


def test_warehouse_auth_defaults_to_the_url_password() -> None:
    settings = load_settings({"WAREHOUSE_DB_URL": SOURCE}, needs=("warehouse",))
    assert settings.warehouse_auth == "password"


@pytest.mark.parametrize("url", [ENTRA_URL, "host=psql.example user=id-totes-dev dbname=warehouse sslmode=require"])
def test_warehouse_auth_entra_takes_a_url_with_a_role_and_no_password(url: str) -> None:
    settings = load_settings({"WAREHOUSE_DB_URL": url, "WAREHOUSE_AUTH": "entra"}, needs=("warehouse",))
    assert settings.warehouse_auth == "entra"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://totes_admin:pw@psql.example/warehouse", "carries a password"),
        ("postgresql://id-totes-dev@psql.example/warehouse?password=pw", "carries a password"),
        ("host=psql.example user=u password='p w' dbname=warehouse", "carries a password"),
        ("postgresql://psql.example/warehouse", "names no user"),
    ],
)
def test_warehouse_auth_entra_rejects_a_password_or_a_missing_role(url: str, problem: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"WAREHOUSE_DB_URL": url, "WAREHOUSE_AUTH": "entra"})
    assert problem in str(err.value) and "WAREHOUSE_AUTH=entra" in str(err.value)
    assert "pw" not in str(err.value).replace("password", "")


def test_warehouse_auth_must_be_known() -> None:
    with pytest.raises(SettingsError, match="WAREHOUSE_AUTH='aad' is invalid: expected one of password, entra"):
        load_settings({"WAREHOUSE_DB_URL": ENTRA_URL, "WAREHOUSE_AUTH": "aad"})


def test_timeouts_are_read_and_checked() -> None:
    env = {"LAKE_STORAGE": "UseDevelopmentStorage=true"}
    settings = load_settings({**env, "STORAGE_TIMEOUT": "2.5", "DB_CONNECT_TIMEOUT": "3"})
    assert (settings.storage_timeout, settings.db_connect_timeout) == (2.5, 3)
    with pytest.raises(SettingsError) as err:
        load_settings({**env, "STORAGE_TIMEOUT": "0", "DB_CONNECT_TIMEOUT": "1.5"})
    assert "STORAGE_TIMEOUT='0' is invalid" in str(err.value)
    assert "DB_CONNECT_TIMEOUT='1.5' is invalid: expected a whole number of seconds, at least 2" in str(err.value)


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in ("STORAGE_TIMEOUT", "DB_CONNECT_TIMEOUT", "EXTRACT_LOOKBACK", "LAKE_STORAGE"):
        assert f"| `{name}` |" in readme or f"`{name}`," in readme, name
