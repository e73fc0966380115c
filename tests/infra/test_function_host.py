"""host.json and local.settings.example.json against the contract in design.md."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.infra.conftest import ROOT


@pytest.fixture(scope="module")
def host() -> dict[str, Any]:
    return json.loads((ROOT / "host.json").read_text())


@pytest.fixture(scope="module")
def local_settings() -> dict[str, Any]:
    return json.loads((ROOT / "local.settings.example.json").read_text())


def test_host_uses_the_v4_extension_bundle(host: dict[str, Any]) -> None:
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }


def test_host_bounds_every_execution(host: dict[str, Any]) -> None:
    hours, minutes, seconds = map(int, host["functionTimeout"].split(":"))
    assert 0 < hours * 3600 + minutes * 60 + seconds <= 30 * 60


def test_load_queue_retries_five_times_then_poisons(host: dict[str, Any]) -> None:
    queues = host["extensions"]["queues"]
    assert queues["maxDequeueCount"] == 5, "design.md: after 5 dequeues a message goes to load-jobs-poison"
    assert 1 <= queues["batchSize"] <= 4, "a load is one warehouse transaction"
    assert re.fullmatch(r"\d{2}:\d{2}:\d{2}", queues["visibilityTimeout"])


def test_host_logging_keeps_function_logs_and_unsampled_failures(host: dict[str, Any]) -> None:
    levels = host["logging"]["logLevel"]
    assert levels["Function"] == "Information", "the TOTES_* markers the alerts search are Information"
    assert levels["Host.Results"] == "Information", "function executions become requests (failed-run alert)"
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    excluded = set(sampling["excludedTypes"].split(";"))
    assert {"Request", "Exception"} <= excluded


def test_local_settings_run_func_start_on_azurite(local_settings: dict[str, Any]) -> None:
    assert local_settings["IsEncrypted"] is False
    values = local_settings["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert values["LAKE_STORAGE"] == "UseDevelopmentStorage=true"
    assert values["TRANSFORM_TRIGGER_SOURCE"] == "LogsAndContainerScan"
    assert values["RAW_CONTAINER"] == "raw"
    assert values["CURATED_CONTAINER"] == "curated"
    assert values["LOAD_QUEUE"] == "load-jobs"
    assert values["EXTRACT_SCHEDULE"] == "0 */5 * * * *"
    assert values["EXTRACT_LOOKBACK"] == "10m"
    assert values["RECONCILE_SCHEDULE"] == "0 30 2 * * *"


@pytest.mark.parametrize(("name", "database"), [("TOTESYS_DB_URL", "totesys"), ("WAREHOUSE_DB_URL", "warehouse")])
def test_local_database_urls_are_placeholders_without_a_password(
    local_settings: dict[str, Any], name: str, database: str
) -> None:
    url = local_settings["Values"][name]
    match = re.fullmatch(r"postgresql://([^:@/]+)@localhost:5432/(\w+)", url)
    assert match, f"{name} must point at local PostgreSQL with no password in it: {url}"
    assert match.group(2) == database


def test_local_settings_hold_no_secret(local_settings: dict[str, Any]) -> None:
    text = json.dumps(local_settings)
    for marker in ("AccountKey=", "SharedAccessSignature", "@Microsoft.KeyVault", "password="):
        assert marker not in text
