"""The `totes` command: exports for eval, idempotent stack, env wins, every command documented."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from shared.cli import build_parser
from shared.localstack import StackUrls

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
    local = tmp_path / "st"
    first = _totes("--local-dir", str(local), "up", env=_clean_env())
    assert first.returncode == 0, first.stderr
    exports = _exports(first.stdout)
    assert set(exports) == {"TOTESYS_DB_URL", "WAREHOUSE_DB_URL", "LAKE_STORAGE"}
    assert exports["TOTESYS_DB_URL"].startswith("postgresql://") and "/totesys" in exports["TOTESYS_DB_URL"]
    assert "BlobEndpoint=http://127.0.0.1:" in exports["LAKE_STORAGE"]
    again = _totes("--local-dir", str(local), "up", env=_clean_env())
    assert _exports(again.stdout) == exports  # the same servers, reused
    down = _totes("--local-dir", str(local), "down", env=_clean_env())
    assert down.returncode == 0
    assert "Azurite" in down.stderr and "PostgreSQL" in down.stderr


def test_up_uses_settings_already_set_and_starts_nothing(tmp_path: Path, local_stack: StackUrls) -> None:
    local = tmp_path / "unused"
    env = {**_clean_env(), **local_stack.as_env()}
    result = _totes("--local-dir", str(local), "up", env=env)
    assert result.returncode == 0, result.stderr
    assert _exports(result.stdout) == local_stack.as_env()
    assert not local.exists()


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
