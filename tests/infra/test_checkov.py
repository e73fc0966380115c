"""checkov over infra/, offline (--skip-download); every skip carries its reason in a comment."""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest

from tests.infra.conftest import INFRA, ROOT, find_tool

SKIP_COMMENT = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


@pytest.fixture(scope="module")
def checkov_reports() -> list[dict[str, Any]]:
    """One checkov run over infra/ (it takes seconds to a minute), as its JSON reports."""
    checkov = find_tool("checkov")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run(
        [checkov, "--directory", str(INFRA), "--skip-download", "--quiet", "--compact", "--output", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
        check=False,
    )
    assert run.stdout.strip(), f"checkov printed nothing (exit {run.returncode}): {run.stderr[-2000:]}"
    reports = json.loads(run.stdout)
    return reports if isinstance(reports, list) else [reports]


def test_checkov_finds_no_failed_check(checkov_reports: list[dict[str, Any]]) -> None:
    terraform = [r for r in checkov_reports if r.get("check_type") == "terraform"]
    assert terraform, f"checkov did not scan the Terraform: {checkov_reports}"
    assert terraform[0]["summary"]["passed"] > 0
    for report in checkov_reports:
        summary = report["summary"]
        assert summary["parsing_errors"] == 0, f"checkov could not parse infra/: {report['check_type']}"
        failed = [
            f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range'][0]}): {c['check_name']}"
            for c in report.get("results", {}).get("failed_checks", [])
        ]
        assert not failed, "checkov findings (fix, or skip with a reason):\n" + "\n".join(failed)


def test_every_checkov_skip_is_justified() -> None:
    skips = []
    for path in sorted(INFRA.rglob("*.tf")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = SKIP_COMMENT.search(line)
            if match:
                reason = (match.group(2) or "").strip()
                assert len(reason) >= 40, f"{path.name}:{number}: skip of {match.group(1)} needs a real reason"
                skips.append(match.group(1))
    assert skips, "expected the documented skips; if none remain, delete this assertion"


def test_checkov_reports_skips_it_was_given(checkov_reports: list[dict[str, Any]]) -> None:
    skipped = sum(r["summary"]["skipped"] for r in checkov_reports)
    in_code = sum(len(SKIP_COMMENT.findall(p.read_text())) for p in INFRA.rglob("*.tf"))
    assert skipped >= in_code, "a skip comment did not apply (wrong check ID or placement)"
