"""Where the dashboard reads from: the warehouse (read-only) and, when configured, the lake's run markers.

In Azure the App Service's managed identity signs in to the warehouse with an Entra token: its
WAREHOUSE_DB_URL names the server, database and role but holds no password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from shared.extract import RUNS_PREFIX
from shared.lake import Lake
from shared.settings import Settings

# Entra ID scope of Azure Database for PostgreSQL; the token is the password of the identity's role.
ENTRA_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
AZURE_POSTGRES_SUFFIX = ".postgres.database.azure.com"
# The lake layout (spec/design.md): a quarantined run's record is curated/_quarantine/<run_id>.json.
QUARANTINE_PREFIX = "_quarantine/"
BACKLOG_DAYS = 7
# The pages sort and group whole fact tables (current versions): in memory rather than spilled to disk.
WORK_MEM = "256MB"


def connect(url: str) -> psycopg.Connection:
    """A read-only connection to the warehouse; an Azure server with no password in `url` gets an Entra token."""
    params: dict[str, Any] = conninfo_to_dict(url)
    if not params.get("password") and str(params.get("host", "")).endswith(AZURE_POSTGRES_SUFFIX):
        from azure.identity import DefaultAzureCredential

        params["password"] = DefaultAzureCredential().get_token(ENTRA_SCOPE).token
        params.setdefault("sslmode", "require")
    conn = psycopg.connect(**params, application_name="totes-dashboard")
    conn.execute("SELECT set_config('work_mem', %s, false)", (WORK_MEM,))
    conn.commit()
    conn.read_only = True
    return conn


@dataclass(frozen=True)
class LakeRuns:
    """What the lake knows that the warehouse does not: runs extracted but not loaded, quarantined runs."""

    backlog: list[str]  # run ids with a raw manifest of the last BACKLOG_DAYS days and no ledger row
    quarantined: list[dict[str, Any]]  # the newest quarantine records, newest first


def lake_runs(settings: Settings, loaded: set[str], now: datetime | None = None, limit: int = 20) -> LakeRuns:
    """Backlog and quarantines from the lake of `settings`, given the run ids the ledger holds."""
    lake = Lake.from_settings(settings)
    today = (now or datetime.now(UTC)).date()
    backlog = []
    for back in range(BACKLOG_DAYS - 1, -1, -1):  # run ids start with their UTC date: list day by day
        prefix = f"{RUNS_PREFIX}{(today - timedelta(days=back)):%Y%m%d}"
        for name in lake.list(lake.raw, prefix):
            run_id = name.removeprefix(RUNS_PREFIX).removesuffix(".json")
            if run_id not in loaded:
                backlog.append(run_id)
    names = sorted(lake.list(lake.curated, QUARANTINE_PREFIX), reverse=True)[:limit]
    quarantined = [lake.read_json(lake.curated, name) for name in names]
    return LakeRuns(backlog=backlog, quarantined=quarantined)


def grant_reader(conn: psycopg.Connection, role: str) -> None:
    """Make the existing login `role` a read-only warehouse reader: SELECT on the star, etl and views,
    also on tables and views the connected owner creates later, and read-only transactions by default."""
    who = sql.Identifier(role)
    for statement in (
        "GRANT USAGE ON SCHEMA public, etl TO {who}",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public, etl TO {who}",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public, etl GRANT SELECT ON TABLES TO {who}",
        "ALTER ROLE {who} SET default_transaction_read_only = on",
    ):
        conn.execute(sql.SQL(statement).format(who=who))
