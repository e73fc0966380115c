"""Sign in to the warehouse: the password in WAREHOUSE_DB_URL, or an Entra token (WAREHOUSE_AUTH=entra).

In Azure the Function App's managed identity signs in with an Entra access token for Azure Database for
PostgreSQL as the password of the role mapped to it (infra/warehouse.tf); the URL then names that role and
carries no password. Locally the URL's password (or none, for a trust server) is used as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import psycopg

from shared.connection import connect
from shared.errors import TransientError
from shared.settings import Settings

# The Entra resource of Azure Database for PostgreSQL flexible server (the same in every public cloud tenant).
ENTRA_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
TokenFetcher = Callable[[], str]


def fetch_entra_token() -> str:
    """An Entra access token for the warehouse, from DefaultAzureCredential (the only token fetch).

    The managed identity is picked by AZURE_CLIENT_ID; tokens last about an hour and the credential caches
    them, and every load opens a new connection, so a token is never used after it expired.
    """
    return _credential().get_token(ENTRA_SCOPE).token


@lru_cache(maxsize=1)
def _credential() -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def connect_warehouse(
    settings: Settings,
    *,
    what: str = "warehouse",
    consequence: str = "nothing was changed",
    token: TokenFetcher | None = None,
    **options: Any,
) -> psycopg.Connection:
    """A connection to the warehouse of `settings`, signed in as WAREHOUSE_AUTH says, within DB_CONNECT_TIMEOUT;
    errors start with `what`, name the server and the setting (never the URL) and end with `consequence`;
    `options` go to psycopg."""
    url = settings.require("warehouse").warehouse_db_url
    assert url is not None
    if settings.warehouse_auth == "entra":
        try:
            options["password"] = (token or fetch_entra_token)()
        except Exception as exc:  # azure-identity's errors differ by credential; all mean "no token now"
            raise TransientError(
                f"WAREHOUSE_AUTH=entra: no Entra token for the warehouse ({type(exc).__name__}: {exc}); check the "
                f"managed identity named by AZURE_CLIENT_ID; {consequence}"
            ) from exc
    return connect(
        url,
        "WAREHOUSE_DB_URL",
        timeout_s=settings.db_connect_timeout,
        what=what,
        role="warehouse",
        consequence=consequence,
        **options,
    )
