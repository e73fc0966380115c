"""Signing in to the warehouse: the URL's password locally, an Entra token as the password with WAREHOUSE_AUTH=entra.

There is no Entra here: the token comes from a stand-in for the one token function, and the real PostgreSQL
of the fixtures takes the connection (its roles are the mapped managed identity's stand-in).
"""

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from shared.errors import TransientError
from shared.settings import load_settings
from shared.warehouse import connect
from shared.warehouse.connect import connect_warehouse

ROLE = "id-totes-test"
TOKEN = "eyJ0eXAiOiJKV1Qi.stand-in-token.not-a-secret"


@pytest.fixture
def identity_role(admin_url: str, empty_warehouse: str) -> Iterator[str]:
    """A login role named like the Function App's identity, and a password-less URL of the warehouse for it."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(ROLE)))
    yield psycopg.conninfo.make_conninfo(empty_warehouse, user=ROLE)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(ROLE)))


def test_entra_signs_in_as_the_mapped_role_with_the_token_as_password(
    identity_role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connect, "fetch_entra_token", lambda: TOKEN)
    settings = load_settings({"WAREHOUSE_DB_URL": identity_role, "WAREHOUSE_AUTH": "entra"}, needs=("warehouse",))
    with connect_warehouse(settings) as conn:
        assert conn.info.password == TOKEN
        row = conn.execute("SELECT current_user").fetchone()
    assert row == (ROLE,)


def test_a_password_url_is_used_as_it_is(empty_warehouse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_entra() -> str:
        raise AssertionError("no token is fetched for a password URL")

    monkeypatch.setattr(connect, "fetch_entra_token", no_entra)
    url = psycopg.conninfo.make_conninfo(empty_warehouse, password="local-pw")
    settings = load_settings({"WAREHOUSE_DB_URL": url}, needs=("warehouse",))
    with connect_warehouse(settings) as conn:
        assert conn.info.password == "local-pw"


def test_no_token_is_a_transient_error_naming_the_setting(identity_role: str) -> None:
    def unavailable() -> str:
        raise RuntimeError("ManagedIdentityCredential: no managed identity endpoint found")

    settings = load_settings({"WAREHOUSE_DB_URL": identity_role, "WAREHOUSE_AUTH": "entra"}, needs=("warehouse",))
    with pytest.raises(TransientError, match=r"WAREHOUSE_AUTH=entra: no Entra token .* AZURE_CLIENT_ID"):
        connect_warehouse(settings, token=unavailable)
