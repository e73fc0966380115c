"""The `totes` command: exports for eval, idempotent stack, env wins, every command documented."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import build_parser, main
from shared.dashboard import server
from shared.lake import Lake
from shared.local.stack import StackUrls

ROOT = Path(__file__).resolve().parents[1]


def _totes(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )


def _exports(stdout: str) -> dict[str, str]:
    values = {}
    for line in stdout.splitlines():
        match = re.fullmatch(r"export (\w+)=(.*)", line)
        assert match, f"not an export line: {line!r}"
        values[match[1]] = shlex.split(match[2])[0]
    return values


def _clean_env() -> dict[str, str]:
    names = ("TOTESYS_DB_URL", "WAREHOUSE_DB_URL", "LAKE_STORAGE")
    return {k: v for k, v in os.environ.items() if k not in names}


def test_up_prints_exports_is_idempotent_and_down_stops(tmp_path: Path) -> None:
    local, func_settings = tmp_path / "st", tmp_path / "local.settings.json"
    first = _totes("--local-dir", str(local), "up", "--settings-file", str(func_settings), env=_clean_env())
    assert first.returncode == 0, first.stderr
    exports = _exports(first.stdout)
    assert set(exports) == {"TOTESYS_DB_URL", "WAREHOUSE_DB_URL", "LAKE_STORAGE"}
    assert exports["TOTESYS_DB_URL"].startswith("postgresql://") and "/totesys" in exports["TOTESYS_DB_URL"]
    assert "BlobEndpoint=http://127.0.0.1:" in exports["LAKE_STORAGE"]
    assert "TableEndpoint=http://127.0.0.1:" in exports["LAKE_STORAGE"], "the Functions host uses tables too"
    _check_func_settings(func_settings, exports)
    again = _totes("--local-dir", str(local), "up", "--settings-file", str(func_settings), env=_clean_env())
    assert _exports(again.stdout) == exports  # the same servers, reused
    down = _totes("--local-dir", str(local), "down", env=_clean_env())
    assert down.returncode == 0
    assert "Azurite" in down.stderr and "PostgreSQL" in down.stderr


def _check_func_settings(path: Path, exports: dict[str, str]) -> None:
    """The local.settings.json `totes up` wrote points `func start` at the stack's Azurite ports."""
    values = json.loads(path.read_text())["Values"]
    blob_port = re.search(r"BlobEndpoint=http://127\.0\.0\.1:(\d+)/", exports["LAKE_STORAGE"])
    assert blob_port and f":{blob_port[1]}/" in values["AzureWebJobsStorage"]
    assert values["AzureWebJobsStorage"] == values["LAKE_STORAGE"] == exports["LAKE_STORAGE"]
    assert values["TOTESYS_DB_URL"] == exports["TOTESYS_DB_URL"]
    assert values["WAREHOUSE_DB_URL"] == exports["WAREHOUSE_DB_URL"]
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    assert set(example) <= set(values), "every setting of the example is written"
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["TRANSFORM_TRIGGER_SOURCE"] == "LogsAndContainerScan", "func start polls Azurite"


def test_up_uses_settings_already_set_and_starts_nothing(tmp_path: Path, local_stack: StackUrls) -> None:
    local, func_settings = tmp_path / "unused", tmp_path / "func" / "local.settings.json"
    func_settings.parent.mkdir()
    func_settings.write_text(json.dumps({"Values": {"MY_SETTING": "kept", "LAKE_STORAGE": "old"}}))
    env = {**_clean_env(), **local_stack.as_env()}
    result = _totes("--local-dir", str(local), "up", "--settings-file", str(func_settings), env=env)
    assert result.returncode == 0, result.stderr
    assert _exports(result.stdout) == local_stack.as_env()
    assert not local.exists()
    _check_func_settings(func_settings, local_stack.as_env())
    assert json.loads(func_settings.read_text())["Values"]["MY_SETTING"] == "kept", "other values are kept"


def test_up_can_skip_the_func_settings_file(tmp_path: Path, local_stack: StackUrls) -> None:
    env = {**_clean_env(), **local_stack.as_env()}
    result = _totes("--local-dir", str(tmp_path / "unused"), "up", "--settings-file", "", env=env)
    assert result.returncode == 0, result.stderr
    assert "local.settings.json" not in result.stderr


def test_every_command_is_documented_in_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:  # type: ignore[union-attr]
        assert f"totes {name}" in readme, f"`totes {name}` is not documented in README.md"


def test_pipeline_errors_become_a_clear_exit(tmp_path: Path) -> None:
    env = {**_clean_env(), "TOTESYS_DB_URL": "postgresql://u@127.0.0.1:1/x", "EXTRACT_LOOKBACK": "soon"}
    env |= {"WAREHOUSE_DB_URL": "postgresql://u@127.0.0.1:1/y", "LAKE_STORAGE": "UseDevelopmentStorage=true"}
    result = _totes("--local-dir", str(tmp_path), "extract", env=env)
    assert result.returncode == 2
    assert "EXTRACT_LOOKBACK='soon' is invalid" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_once_then_status_through_the_command(
    tmp_path: Path, source_db: str, empty_warehouse: str, lake_env: dict[str, str], lake: object
) -> None:
    env = {**_clean_env(), **lake_env, "TOTESYS_DB_URL": source_db, "WAREHOUSE_DB_URL": empty_warehouse}
    run = _totes("--local-dir", str(tmp_path / "unused"), "run", "--once", env=env)
    assert run.returncode == 0, run.stderr
    assert re.search(r"fact_sales_order\s+11,187", run.stdout)
    assert "load: fact_payment" in run.stderr  # progress per stage and table
    run_id = re.search(r"run (\d{8}T\d{6}Z-[0-9a-f]{6}): merged", run.stdout)
    assert run_id
    status = _totes("--local-dir", str(tmp_path / "unused"), "status", env=env)
    assert status.returncode == 0, status.stderr
    assert run_id[1] in status.stdout
    assert "current lag:" in status.stdout
    assert not (tmp_path / "unused").exists()


@pytest.fixture
def pipeline_env(
    monkeypatch: pytest.MonkeyPatch, source_db: str, empty_warehouse: str, lake_env: dict[str, str], lake: Lake
) -> None:
    """The environment of a whole pipeline (snapshot source, empty warehouse, private lake) for in-process runs."""
    for name, value in {**lake_env, "TOTESYS_DB_URL": source_db, "WAREHOUSE_DB_URL": empty_warehouse}.items():
        monkeypatch.setenv(name, value)


def test_demo_runs_two_cycles_and_shows_the_history_it_created(
    pipeline_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = tmp_path / "unused"
    try:
        assert main(["--local-dir", str(local), "demo", "--changes", "40", "--seed", "2"]) == 0
    finally:
        dashboard_was_running = server.stop_detached(local)

    out = capsys.readouterr().out
    assert re.search(r"fact_sales_order\s+11,187", out)
    assert "simulated changes: new_sales_order" in out
    history = re.search(r"history created by run (\S+):", out)
    assert history and re.search(r"fact_sales_order\s+\d+ rows,\s+\d+ new versions", out)
    assert "every version (oldest first):" in out
    assert dashboard_was_running and re.search(r"^dashboard: http://\S+:\d+/", out, re.M)
    # the settings were given: no local stack was started, only the dashboard's pid and log are there
    assert sorted(p.name for p in local.iterdir()) == ["dashboard.log"]


def test_each_stage_by_its_command_then_status(
    pipeline_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = ["--local-dir", str(tmp_path / "unused")]
    assert main([*local, "extract"]) == 0
    found = re.search(r"extracted run (\S+): rows per table", capsys.readouterr().out)
    assert found
    run_id = found[1]
    assert main([*local, "transform", run_id]) == 0
    assert f"transformed run {run_id} (transformed)" in capsys.readouterr().out
    assert main([*local, "load", run_id]) == 0
    loaded = capsys.readouterr().out
    assert re.search(rf"loaded run {run_id} in [\d.]+ s: rows per table", loaded)
    assert re.search(r"fact_payment\s+15,836", loaded)
    assert main([*local, "load", run_id]) == 0
    assert f"run {run_id} was already loaded" in capsys.readouterr().err
    assert main([*local, "status", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(run_id) and "current lag:" in out

    assert main([*local, "extract"]) == 0
    assert "no changes in the source since the last run" in capsys.readouterr().err
    assert main([*local, "simulate", "--changes", "3", "--seed", "5"]) == 0
    assert re.match(r"simulation \(seed 5\) made 3 of 3 changes", capsys.readouterr().out)
    assert main([*local, "seed"]) == 2  # populated: refuses without --replace
    assert "--replace" in capsys.readouterr().err
    assert main([*local, "transform", "20990101T000000Z-000000"]) == 2
    assert "no raw manifest" in capsys.readouterr().err
