"""The deploy package, built exactly as deploy.yml builds it, imports and indexes the four functions.

.github/scripts/package.sh copies the tracked files that .funcignore keeps and installs requirements.txt
into .python_packages; here a clean venv (no site-packages of ours) imports function_app from that folder
alone, as the Python worker does, and the functions are compared with what the host must index.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT_ROOT

INDEX = """
import json, function_app
functions = function_app.app.get_functions()
print(json.dumps({str(f.get_function_name()): json.loads(f.get_function_json()) for f in functions}))
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Function App package folder, built by the deploy workflow's own script."""
    target = tmp_path_factory.mktemp("package") / "functionapp"
    run = subprocess.run(
        ["bash", str(PROJECT_ROOT / ".github" / "scripts" / "package.sh"), str(target)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, f"package.sh failed:\n{run.stdout}{run.stderr}"
    return target


@pytest.fixture(scope="module")
def indexed(package: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """function_app imported in a clean venv from the package alone: {function name: function.json}."""
    env_dir = tmp_path_factory.mktemp("clean-venv")
    venv.create(env_dir, with_pip=False, system_site_packages=False)
    python = env_dir / "bin" / "python"
    run = subprocess.run(
        [str(python), "-c", INDEX],
        cwd=package,
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": f"{package}:{package / '.python_packages' / 'lib' / 'site-packages'}",
            "PYTHONNOUSERSITE": "1",
            # As in Azure (infra/function_app.tf); nothing else is set when the host indexes.
            "TRANSFORM_TRIGGER_SOURCE": "EventGrid",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, f"import function_app from the package failed:\n{run.stderr}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def bindings(function: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {binding["name"]: binding for binding in function["bindings"]}


def test_the_package_ships_the_runtime_code_only(package: Path) -> None:
    shipped = {str(p.relative_to(package)) for p in package.rglob("*") if ".python_packages" not in p.parts}
    assert {"function_app.py", "host.json", "requirements.txt", "shared/settings.py"} <= shipped
    assert "shared/warehouse/schema.sql" in shipped, "the load creates the warehouse from it"
    assert "shared/warehouse/views.sql" in shipped, "and its analysts' views from this one"
    for left_out in ("tests", "bench", "tools", "docs", "infra", "shared/local", "shared/cli.py", "shared/dashboard"):
        assert left_out not in shipped, f"{left_out} is local-only and must not be deployed (.funcignore)"
    assert not any(name.endswith(".jsonl.gz") for name in shipped), "the snapshot is not shipped"
    assert not any(name.startswith(".git") or name == "local.settings.json" for name in shipped)


def test_the_package_indexes_exactly_the_pipeline_functions(indexed: dict[str, Any]) -> None:
    assert set(indexed) == {"extract", "transform", "load", "reconcile"}


def test_extract_is_a_timer_on_the_schedule_setting(indexed: dict[str, Any]) -> None:
    timer = bindings(indexed["extract"])["timer"]
    assert timer["type"] == "timerTrigger" and timer["direction"] == "IN"
    assert timer["schedule"] == "%EXTRACT_SCHEDULE%"
    assert timer["useMonitor"] is True and timer["runOnStartup"] is False


def test_reconcile_is_a_timer_on_its_schedule_setting(indexed: dict[str, Any]) -> None:
    timer = bindings(indexed["reconcile"])["timer"]
    assert timer["type"] == "timerTrigger" and timer["schedule"] == "%RECONCILE_SCHEDULE%"
    assert timer["useMonitor"] is True and timer["runOnStartup"] is False


def test_transform_is_an_event_grid_blob_trigger_on_raw_manifests(indexed: dict[str, Any]) -> None:
    transform = bindings(indexed["transform"])
    trigger = transform["manifest"]
    assert trigger["type"] == "blobTrigger" and trigger["direction"] == "IN"
    assert trigger["path"] == "%RAW_CONTAINER%/_runs/{name}.json"
    assert trigger["connection"] == "LAKE_STORAGE"
    assert trigger["source"] == "EventGrid"
    out = transform["msg"]
    assert out["type"] == "queue" and out["direction"] == "OUT"
    assert out["queueName"] == "%LOAD_QUEUE%" and out["connection"] == "LAKE_STORAGE"


def test_load_is_a_queue_trigger_on_the_load_queue(indexed: dict[str, Any]) -> None:
    trigger = bindings(indexed["load"])["msg"]
    assert trigger["type"] == "queueTrigger" and trigger["direction"] == "IN"
    assert trigger["queueName"] == "%LOAD_QUEUE%"
    assert trigger["connection"] == "LAKE_STORAGE"
