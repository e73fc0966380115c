"""One frozen, typed settings object: the only module that reads the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from shared import redact
from shared.errors import SettingsError

Need = Literal["source", "warehouse", "lake"]
WarehouseAuth = Literal["password", "entra"]
WAREHOUSE_AUTHS: tuple[WarehouseAuth, ...] = ("password", "entra")
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("
DEFAULT_SCHEDULE = "0 */5 * * * *"
DEFAULT_LOOKBACK = timedelta(minutes=10)
# Bounded waits on an unreachable service, in seconds (libpq's connect_timeout takes whole seconds, >= 2).
DEFAULT_STORAGE_TIMEOUT = 10.0
DEFAULT_DB_CONNECT_TIMEOUT = 10
DEFAULT_DATE_WINDOW_YEARS = 50
DEFAULT_RECONCILE_SCHEDULE = "0 30 2 * * *"
_LOOKBACK_FORMS = "seconds ('600'), a number with unit ('10m', '90s', '1h') or 'HH:MM:SS'"
# Secret names in Key Vault when KEY_VAULT_URL is used instead of app-setting references.
KEY_VAULT_SECRET_NAMES = {"TOTESYS_DB_URL": "totesys-db-url", "WAREHOUSE_DB_URL": "warehouse-db-url"}


@dataclass(frozen=True)
class Secret:
    """A secret string that never shows its value in repr, str or logs; `.reveal()` gives it."""

    _value: str = field(repr=False)

    def __post_init__(self) -> None:
        redact.register(self._value)  # masked in every log line and error message from now on

    def reveal(self) -> str:
        """The secret value, for the one call that needs it (a connect)."""
        return self._value

    def __str__(self) -> str:
        return "********"

    def __repr__(self) -> str:
        return "Secret('********')"


@dataclass(frozen=True)
class LakeConnection:
    """How to reach the lake: a connection string (Azurite, local) or service URIs with an identity."""

    connection_string: Secret | None = None
    blob_service_uri: str | None = None
    queue_service_uri: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class Settings:
    """Every setting of the pipeline (README.md, Settings), read once from the environment."""

    totesys_db_url: Secret | None
    warehouse_db_url: Secret | None
    lake: LakeConnection | None
    raw_container: str = "raw"
    curated_container: str = "curated"
    load_queue: str = "load-jobs"
    extract_schedule: str = DEFAULT_SCHEDULE
    extract_lookback: timedelta = DEFAULT_LOOKBACK
    reconcile_schedule: str = DEFAULT_RECONCILE_SCHEDULE
    key_vault_url: str | None = None
    appinsights_connection_string: Secret | None = None
    # How the load signs in to the warehouse: the URL's password, or an Entra token (managed identity).
    warehouse_auth: WarehouseAuth = "password"
    storage_timeout: float = DEFAULT_STORAGE_TIMEOUT
    db_connect_timeout: int = DEFAULT_DB_CONNECT_TIMEOUT

    @property
    def poison_queue(self) -> str:
        """The queue the Functions host moves a load message to after 5 failed dequeues."""
        return f"{self.load_queue}-poison"

    def require(self, *needs: Need) -> Settings:
        """Return self, or raise SettingsError naming every setting the given stages need but lack."""
        missing = []
        if "source" in needs and self.totesys_db_url is None:
            missing.append("TOTESYS_DB_URL")
        if "warehouse" in needs and self.warehouse_db_url is None:
            missing.append("WAREHOUSE_DB_URL")
        if "lake" in needs and self.lake is None:
            missing.append("LAKE_STORAGE (or LAKE_STORAGE__blobServiceUri and LAKE_STORAGE__queueServiceUri)")
        if missing:
            raise SettingsError("missing settings: " + ", ".join(missing))
        return self


TriggerSource = Literal["EventGrid", "LogsAndContainerScan"]
TRIGGER_SOURCES: tuple[TriggerSource, ...] = ("EventGrid", "LogsAndContainerScan")


def transform_trigger_source(env: Mapping[str, str] | None = None) -> TriggerSource:
    """TRANSFORM_TRIGGER_SOURCE (default LogsAndContainerScan): read when function_app.py is indexed,
    because the host parses the blob trigger's `source` as an enum and cannot resolve a %SETTING% in it."""
    value = _value(os.environ if env is None else env, "TRANSFORM_TRIGGER_SOURCE") or "LogsAndContainerScan"
    for source in TRIGGER_SOURCES:
        if value == source:
            return source
    raise SettingsError(
        f"invalid settings: TRANSFORM_TRIGGER_SOURCE={value!r} is invalid: expected one of "
        + ", ".join(TRIGGER_SOURCES)
        + " (EventGrid in Azure, LogsAndContainerScan for func start on Azurite)"
    )


def date_window_years(env: Mapping[str, str] | None = None) -> int:
    """DATE_WINDOW_YEARS (default 50): the source's text dates must lie within this many years of their run's
    extract time, or the transform quarantines the run (shared.transform.raw)."""
    text = _value(os.environ if env is None else env, "DATE_WINDOW_YEARS")
    if text is None:
        return DEFAULT_DATE_WINDOW_YEARS
    if not re.fullmatch(r"\d{1,4}", text.strip()) or not 1 <= int(text) <= 1000:
        raise SettingsError(f"invalid settings: DATE_WINDOW_YEARS={text!r} is invalid: expected whole years, 1 to 1000")
    return int(text)


def telemetry_connection_string(env: Mapping[str, str] | None = None) -> str | None:
    """APPLICATIONINSIGHTS_CONNECTION_STRING, or None: read when function_app.py is imported, to configure
    telemetry once per worker before any invocation (and whatever the other settings hold)."""
    return _value(os.environ if env is None else env, "APPLICATIONINSIGHTS_CONNECTION_STRING")


SecretReader = Callable[[str, str], str]


def read_key_vault_secret(vault_url: str, name: str) -> str:
    """Read one secret from Key Vault with DefaultAzureCredential (the only Key Vault call)."""
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    client = SecretClient(vault_url=vault_url, credential=DefaultAzureCredential())
    value = client.get_secret(name).value
    if value is None:
        raise SettingsError(f"Key Vault secret {name!r} in {vault_url} has no value")
    return value


def parse_lookback(text: str) -> timedelta:
    """Parse EXTRACT_LOOKBACK: seconds, '<n>s|m|h', or 'HH:MM:SS'; raise ValueError otherwise."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return timedelta(seconds=int(text))
    if m := re.fullmatch(r"(\d+)\s*(s|sec|m|min|h)", text):
        unit = {"s": "seconds", "sec": "seconds", "m": "minutes", "min": "minutes", "h": "hours"}[m[2]]
        return timedelta(**{unit: int(m[1])})
    if m := re.fullmatch(r"(\d+):(\d{2}):(\d{2})", text):
        return timedelta(hours=int(m[1]), minutes=int(m[2]), seconds=int(m[3]))
    raise ValueError(f"expected {_LOOKBACK_FORMS}")


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    needs: Collection[Need] = (),
    defaults: Mapping[str, str] | None = None,
    read_secret: SecretReader = read_key_vault_secret,
) -> Settings:
    """Read the settings from `env` (default os.environ) over `defaults`; raise SettingsError listing
    every problem."""
    env = {**(defaults or {}), **(os.environ if env is None else env)}
    problems: list[str] = []
    key_vault_url = _value(env, "KEY_VAULT_URL")

    def secret(name: str) -> Secret | None:
        value = _value(env, name)
        if value is not None and value.startswith(KEY_VAULT_REFERENCE):
            problems.append(
                f"{name} is an unresolved Key Vault reference: the platform could not resolve it "
                "(check the app's managed identity has 'Key Vault Secrets User' and the secret exists)"
            )
            return None
        if value is None and key_vault_url and name in KEY_VAULT_SECRET_NAMES:
            try:
                value = read_secret(key_vault_url, KEY_VAULT_SECRET_NAMES[name])
            except Exception as exc:  # any SDK failure is reported by name, never with a value
                problems.append(
                    f"{name}: could not read secret {KEY_VAULT_SECRET_NAMES[name]!r} from "
                    f"KEY_VAULT_URL {key_vault_url} ({type(exc).__name__})"
                )
                return None
        return Secret(value) if value is not None else None

    totesys = secret("TOTESYS_DB_URL")
    warehouse = secret("WAREHOUSE_DB_URL")
    insights = secret("APPLICATIONINSIGHTS_CONNECTION_STRING")
    lake = _lake(env)

    lookback = DEFAULT_LOOKBACK
    if (raw_lookback := _value(env, "EXTRACT_LOOKBACK")) is not None:
        try:
            lookback = parse_lookback(raw_lookback)
        except ValueError as exc:
            problems.append(f"EXTRACT_LOOKBACK={raw_lookback!r} is invalid: {exc}")
    warehouse_auth = _warehouse_auth(env, warehouse, problems)
    storage_timeout = _seconds(env, "STORAGE_TIMEOUT", DEFAULT_STORAGE_TIMEOUT, 1, problems)
    db_connect_timeout = int(_seconds(env, "DB_CONNECT_TIMEOUT", DEFAULT_DB_CONNECT_TIMEOUT, 2, problems, whole=True))
    schedule = _value(env, "EXTRACT_SCHEDULE") or DEFAULT_SCHEDULE
    if len(schedule.split()) != 6:
        problems.append(f"EXTRACT_SCHEDULE={schedule!r} is invalid: expected a 6-field NCRONTAB expression")
    reconcile_schedule = _value(env, "RECONCILE_SCHEDULE") or DEFAULT_RECONCILE_SCHEDULE
    if len(reconcile_schedule.split()) != 6:
        problems.append(f"RECONCILE_SCHEDULE={reconcile_schedule!r} is invalid: expected a 6-field NCRONTAB expression")
    names = {}
    for name, default in (
        ("RAW_CONTAINER", "raw"),
        ("CURATED_CONTAINER", "curated"),
        ("LOAD_QUEUE", "load-jobs"),
    ):
        value = _value(env, name) or default
        if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", value):
            problems.append(f"{name}={value!r} is invalid: 3-63 lowercase letters, digits and single dashes")
        names[name] = value

    settings = Settings(
        totesys_db_url=totesys,
        warehouse_db_url=warehouse,
        lake=lake,
        raw_container=names["RAW_CONTAINER"],
        curated_container=names["CURATED_CONTAINER"],
        load_queue=names["LOAD_QUEUE"],
        extract_schedule=schedule,
        extract_lookback=lookback,
        reconcile_schedule=reconcile_schedule,
        key_vault_url=key_vault_url,
        appinsights_connection_string=insights,
        warehouse_auth=warehouse_auth,
        storage_timeout=storage_timeout,
        db_connect_timeout=db_connect_timeout,
    )
    try:
        settings.require(*needs)
    except SettingsError as exc:
        problems.insert(0, str(exc))
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return settings


def _value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value not in (None, "") else None


def _warehouse_auth(env: Mapping[str, str], url: Secret | None, problems: list[str]) -> WarehouseAuth:
    """WAREHOUSE_AUTH (default password); with entra, WAREHOUSE_DB_URL must name a role and carry no password."""
    value = _value(env, "WAREHOUSE_AUTH") or "password"
    auth = next((a for a in WAREHOUSE_AUTHS if a == value), None)
    if auth is None:
        problems.append(f"WAREHOUSE_AUTH={value!r} is invalid: expected one of {', '.join(WAREHOUSE_AUTHS)}")
        return "password"
    if auth == "entra" and url is not None:
        user, has_password = _url_login(url.reveal())
        if has_password:
            problems.append(
                "WAREHOUSE_DB_URL carries a password but WAREHOUSE_AUTH=entra signs in with an Entra token: "
                "remove the password from the URL"
            )
        if not user:
            problems.append(
                "WAREHOUSE_DB_URL names no user but WAREHOUSE_AUTH=entra needs the PostgreSQL role mapped to "
                "the managed identity (e.g. postgresql://id-totes-dev@<server>:5432/warehouse?sslmode=require)"
            )
    return auth


def _url_login(url: str) -> tuple[str | None, bool]:
    """The user of a libpq URI or key=value string, and whether it carries a password."""
    if re.match(r"postgres(ql)?://", url):
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        user = parts.username or next(iter(query.get("user", [])), None)
        return user, parts.password is not None or "password" in query
    pairs = dict(re.findall(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", url))
    return pairs.get("user"), "password" in pairs


def _seconds(
    env: Mapping[str, str], name: str, default: float, least: float, problems: list[str], *, whole: bool = False
) -> float:
    """A number of seconds >= `least` (whole seconds if `whole`), or `default` when unset; a problem if invalid."""
    text = _value(env, name)
    if text is None:
        return default
    pattern = r"\d+" if whole else r"\d+(\.\d+)?"
    if not re.fullmatch(pattern, text.strip()) or float(text) < least:
        kind = "a whole number of seconds" if whole else "a number of seconds"
        problems.append(f"{name}={text!r} is invalid: expected {kind}, at least {least:g}")
        return default
    return float(text)


def _lake(env: Mapping[str, str]) -> LakeConnection | None:
    if (conn := _value(env, "LAKE_STORAGE")) is not None:
        return LakeConnection(connection_string=Secret(conn))
    blob = _value(env, "LAKE_STORAGE__blobServiceUri")
    queue = _value(env, "LAKE_STORAGE__queueServiceUri")
    if blob and queue:
        return LakeConnection(
            blob_service_uri=blob, queue_service_uri=queue, client_id=_value(env, "LAKE_STORAGE__clientId")
        )
    return None
