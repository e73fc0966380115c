"""Faults give one clear line: an unreachable or misconfigured service ends `totes` with exit 2 and one
line naming the endpoint and the setting, quickly, with no secret in any output (stderr at DEBUG)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.lake import Lake
from shared.local.stack import AZURITE_KEY, StackUrls, azurite_connection_string, free_port
from shared.settings import load_settings
from tests.extract.runs import manifests, raw_blobs
from tests.test_cli import ROOT, _clean_env, _totes

PASSWORD = "Wh-7sQ2pLx"
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
RUN_ID = "20261122T031500Z-7f3a9c"
BOUND_S = 60  # the subprocess must finish well within this (azure-core's default retries took 89 s)


def _with_password(url: str) -> str:
    """The local server's URL with a password in it (trust authentication ignores it)."""
    assert url.startswith("postgresql://postgres:@"), url
    return url.replace("postgres:@", f"postgres:{PASSWORD}@", 1)


def _failure(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The one error line of a failed `totes` run; asserts exit 2, no traceback, no secret anywhere."""
    assert result.returncode == 2, result.stderr
    out, err = result.stdout, result.stderr
    for secret in (PASSWORD, WRONG_KEY, AZURITE_KEY):
        assert secret not in out and secret not in err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith(f"totes {command}: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    return errors[0]


@pytest.fixture
def good_env(local_stack: StackUrls, lake_env: dict[str, str], source_db: str, empty_warehouse: str) -> dict[str, str]:
    """A working environment (passwords in both URLs) over a private lake."""
    return {
        **_clean_env(),
        **lake_env,
        "TOTESYS_DB_URL": _with_password(source_db),
        "WAREHOUSE_DB_URL": _with_password(empty_warehouse),
    }


def test_storage_unreachable_is_one_line_naming_endpoint_and_setting(good_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = {**good_env, "LAKE_STORAGE": azurite_connection_string(port, port), "STORAGE_TIMEOUT": "3"}
    for command in (["run", "--once"], ["extract"]):
        result = _totes("-v", "--local-dir", str(tmp_path), *command, env=env, timeout=BOUND_S)
        line = _failure(result, command[0])
        assert f"lake storage at http://127.0.0.1:{port}/devstoreaccount1 (setting LAKE_STORAGE) unreachable" in line
        assert "gave up after 3 tries, STORAGE_TIMEOUT=3 s each" in line
        # bounded retries: three connection attempts, not azure-core's default ten with long backoffs
        assert len(re.findall(rf"Starting new HTTP connection \(\d\): 127\.0\.0\.1:{port}", result.stderr)) == 3


def test_source_unreachable_is_one_line_and_leaves_the_lake_untouched(
    good_env: dict[str, str], tmp_path: Path, lake: Lake
) -> None:
    env = {**good_env, "TOTESYS_DB_URL": f"postgresql://totes:{PASSWORD}@127.0.0.1:{free_port()}/totesys"}
    result = _totes("-v", "--local-dir", str(tmp_path), "extract", env=env, timeout=BOUND_S)
    line = _failure(result, "extract")
    assert "host=127.0.0.1" in line and "setting TOTESYS_DB_URL" in line and "DB_CONNECT_TIMEOUT=10 s" in line
    assert "watermark is unchanged" in line
    assert raw_blobs(lake) == [] and manifests(lake) == []


def test_warehouse_unreachable_status_names_server_and_setting(good_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = {
        **good_env,
        "WAREHOUSE_DB_URL": f"postgresql://totes:{PASSWORD}@127.0.0.1:{port}/wh",
        "DB_CONNECT_TIMEOUT": "3",
    }
    line = _failure(_totes("-v", "--local-dir", str(tmp_path), "status", env=env, timeout=BOUND_S), "status")
    assert f"host=127.0.0.1 port={port} dbname=wh (setting WAREHOUSE_DB_URL" in line
    assert "DB_CONNECT_TIMEOUT=3 s" in line


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://totes:{PASSWORD}@[::1/warehouse",  # an unclosed IPv6 host
        f"postgresql://totes:{PASSWORD}@127.0.0.1:5432/warehouse?bogus=1",  # an unknown query parameter
    ],
)
@pytest.mark.parametrize("command", [["status"], ["load", RUN_ID]])
def test_a_malformed_warehouse_url_is_one_line_without_the_password(
    good_env: dict[str, str], tmp_path: Path, url: str, command: list[str]
) -> None:
    env = {**good_env, "WAREHOUSE_DB_URL": url}
    line = _failure(_totes("-v", "--local-dir", str(tmp_path), *command, env=env, timeout=BOUND_S), command[0])
    assert "WAREHOUSE_DB_URL is not a valid libpq URI" in line and "value not shown" in line


@pytest.mark.parametrize("key", [WRONG_KEY, "not-base64!"])
@pytest.mark.parametrize("command", [["extract"], ["load", RUN_ID]])
def test_a_wrong_storage_key_is_one_line_without_the_key(
    good_env: dict[str, str], local_stack: StackUrls, tmp_path: Path, key: str, command: list[str]
) -> None:
    env = {**good_env, "LAKE_STORAGE": good_env["LAKE_STORAGE"].replace(AZURITE_KEY, key)}
    assert key in env["LAKE_STORAGE"]
    result = _totes("-v", "--local-dir", str(tmp_path), *command, env=env, timeout=BOUND_S)
    line = _failure(result, command[0])
    assert key not in result.stderr
    assert "setting LAKE_STORAGE" in line and "refused the credentials" in line


def test_a_whole_cycle_leaves_no_secret_in_the_lake_or_the_debug_log(
    good_env: dict[str, str], lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    from shared.pipeline import run_cycle

    caplog.set_level(logging.DEBUG)
    settings = load_settings(good_env, needs=("source", "warehouse", "lake"))
    summary = run_cycle(settings, lake)
    assert summary.load is not None and summary.load.rows
    secrets = (PASSWORD.encode(), AZURITE_KEY.encode())
    for container in (lake.raw, lake.curated):
        for name in lake.list(container, ""):
            data = lake.get(container, name)
            assert not any(secret in data for secret in secrets), f"{container}/{name}"
    text = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert PASSWORD not in text and AZURITE_KEY not in text
    assert repr(settings).count(PASSWORD) == 0 and AZURITE_KEY not in repr(lake)


def test_the_function_app_scrubs_its_log_records(tmp_path: Path) -> None:
    script = (
        "import logging, function_app\n"
        "logging.basicConfig(level=logging.DEBUG)\n"
        f"logging.getLogger('x').error('bad url postgresql://u:{PASSWORD}@[::1/db')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=BOUND_S, env=_clean_env()
    )
    assert result.returncode == 0, result.stderr
    assert "bad url postgresql://u:********@[::1/db" in result.stderr and PASSWORD not in result.stderr
