"""The `load` function of function_app.py, invoked as the host does: a real QueueMessage in."""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func
import pytest
from azure.functions.decorators.core import BindingDirection
from azure.storage.queue import TextBase64DecodePolicy

from shared.errors import TransientError
from shared.lake import Lake
from shared.load import send_to_poison
from shared.local.stack import free_port
from shared.settings import Settings
from tests.load.conftest import CuratedRuns
from tests.load.frames import base_run
from tests.load.warehouse import ledger

R1 = "20240301T090500Z-a1b2c3"


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, warehouse_env: dict[str, str]) -> dict[str, str]:
    """The process environment the Functions host gives the app: lake settings and the warehouse."""
    for name, value in warehouse_env.items():
        monkeypatch.setenv(name, value)
    return warehouse_env


def message(body: str) -> func.QueueMessage:
    return func.QueueMessage(id="m1", body=body.encode(), pop_receipt="p1")


def poisoned(lake: Lake) -> list[str]:
    """The messages on the load queue's poison queue, decoded as the host would."""
    client = lake.queues.get_queue_client(f"{lake.load_queue}-poison", message_decode_policy=TextBase64DecodePolicy())
    return [m.content for m in client.receive_messages(max_messages=32)]


def test_load_is_a_queue_trigger_on_the_load_queue(registered_functions: dict[str, Any]) -> None:
    bindings = [b.get_dict_repr() for b in registered_functions["load"].get_bindings()]
    assert bindings == [
        {
            "direction": BindingDirection.IN,
            "type": "queueTrigger",
            "name": "msg",
            "queueName": "%LOAD_QUEUE%",
            "connection": "LAKE_STORAGE",
        }
    ]


def test_the_function_loads_the_run_a_message_names(
    registered_functions: dict[str, Any],
    app_env: dict[str, str],
    curated: CuratedRuns,
    lake: Lake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    curated.write(R1, base_run())
    with caplog.at_level(logging.INFO):
        assert registered_functions["load"].get_user_function()(message(json.dumps({"run_id": R1}))) is None

    assert [r[0] for r in ledger(app_env["WAREHOUSE_DB_URL"])] == [R1]
    assert [r for r in caplog.records if "TOTES_LOAD_OK" in r.getMessage() and R1 in r.getMessage()]
    assert poisoned(lake) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"run_id": "20990101T000000Z-nothere"}), "unknown run 20990101T000000Z-nothere"),
    ],
)
def test_an_unusable_message_goes_to_poison_at_once(
    body: str,
    reason: str,
    registered_functions: dict[str, Any],
    app_env: dict[str, str],
    lake: Lake,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        assert registered_functions["load"].get_user_function()(message(body)) is None  # no raise: no retries

    assert poisoned(lake) == [body]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and reason in errors[0] and f"{lake.load_queue}-poison" in errors[0]
    assert ledger(app_env["WAREHOUSE_DB_URL"]) == []


def test_an_unreachable_warehouse_raises_so_the_host_retries(
    registered_functions: dict[str, Any],
    app_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    curated: CuratedRuns,
    lake: Lake,
) -> None:
    curated.write(R1, base_run())
    monkeypatch.setenv("WAREHOUSE_DB_URL", f"postgresql://loader@127.0.0.1:{free_port()}/warehouse")

    with pytest.raises(TransientError, match="warehouse unreachable"):
        registered_functions["load"].get_user_function()(message(json.dumps({"run_id": R1})))

    assert poisoned(lake) == []


def test_send_to_poison_creates_a_missing_poison_queue(warehouse_settings: Settings, lake: Lake) -> None:
    lake.queues.delete_queue(warehouse_settings.poison_queue)

    send_to_poison(warehouse_settings, lake, "{not json")

    assert poisoned(lake) == ["{not json"]
