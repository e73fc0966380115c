"""actionlint and zizmor over every workflow, and the promises of the deploy workflow."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.conftest import ROOT, WORKFLOWS, find_tool

DEPLOY = WORKFLOWS / "deploy.yml"
ZIZMOR_CONFIG = ROOT / ".github" / "zizmor.yml"
SHA_PIN = re.compile(r"^\s*(?:-\s+)?uses:\s*([^@\s]+)@([0-9a-f]{40})\s+#\s*v\d+(\.\d+)*\s*$")
TAG_PIN = re.compile(r"^\s*(?:-\s+)?uses:\s*([^@\s]+)@(v\d+\.\d+\.\d+)\b")
# Actions allowed on an exact release tag, with the reason in .github/zizmor.yml.
TAG_PINNED = {"Azure/functions-action"}

BAD_WORKFLOW = """\
name: bad
on: pull_request_target
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}"
      - run: echo ${{ steps.missing.outputs.nothing }}
"""


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    # shellcheck and pyflakes integrations off: the result must not depend on what else the
    # machine has installed.
    return subprocess.run(
        [find_tool("actionlint"), "-no-color", "-oneline", "-shellcheck=", "-pyflakes=", *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def zizmor(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_tool("zizmor"), "--offline", "--no-progress", "--config", str(ZIZMOR_CONFIG), *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_actionlint_passes_every_workflow(workflow_files: list[Path]) -> None:
    run = actionlint(*workflow_files)
    assert run.returncode == 0, f"actionlint:\n{run.stdout}{run.stderr}"


def test_zizmor_passes_every_workflow(workflow_files: list[Path]) -> None:
    run = zizmor(WORKFLOWS)
    assert run.returncode == 0, f"zizmor (exit {run.returncode}):\n{run.stdout}{run.stderr}"


def test_the_linters_reject_a_bad_workflow(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(BAD_WORKFLOW)
    assert actionlint(bad).returncode != 0, "actionlint accepted a broken workflow"
    assert zizmor(bad).returncode != 0, "zizmor accepted an injectable, unpinned workflow"


# ---------------------------------------------------------------------------------------------
# deploy.yml
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deploy() -> dict[str, Any]:
    """deploy.yml parsed (YAML 1.1 reads the key `on` as True)."""
    workflow = yaml.safe_load(DEPLOY.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def steps(deploy: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, step) for job_id, job in deploy["jobs"].items() for step in job["steps"]]


def test_deploy_runs_only_when_ci_passed_for_the_same_commit(deploy: dict[str, Any]) -> None:
    assert set(deploy["on"]) == {"workflow_call"}, "deploy.yml is started only by ci.yml, never on its own"
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    ci["on"] = ci.pop(True, ci.get("on"))
    assert "pull_request_target" not in ci["on"]
    callers = {job_id: job for job_id, job in ci["jobs"].items() if job.get("uses") == "./.github/workflows/deploy.yml"}
    assert len(callers) == 1, "ci.yml calls deploy.yml from exactly one job"
    ((job_id, job),) = callers.items()
    assert job["needs"] == ["test"], f"{job_id} must wait for the tests of the same run (same commit)"
    assert "refs/heads/main" in job["if"] and "pull_request" not in job["if"], "only main deploys"
    assert ci["on"]["push"]["branches"] == ["main"] and "workflow_dispatch" in ci["on"]
    assert ci["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"


def test_deploy_permissions_are_least_privilege(deploy: dict[str, Any]) -> None:
    assert deploy["permissions"] == {}, "workflow-level permissions must be empty"
    for job_id, job in deploy["jobs"].items():
        permissions = job["permissions"]
        assert isinstance(permissions, dict), f"{job_id}: permissions must be listed"
        assert set(permissions.items()) <= {("contents", "read"), ("id-token", "write")}, f"{job_id}: {permissions}"
        uses_azure = any("azure/login" in step.get("uses", "").lower() for step in job["steps"])
        assert (permissions.get("id-token") == "write") == uses_azure, f"{job_id}: id-token only for Azure login"


def test_deploy_has_a_concurrency_group(deploy: dict[str, Any]) -> None:
    assert "deploy-" in deploy["concurrency"]["group"]
    assert deploy["concurrency"]["cancel-in-progress"] is False, "never cancel a running apply"


def test_every_action_is_pinned(workflow_files: list[Path]) -> None:
    for path in workflow_files:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not re.match(r"^\s*(-\s+)?uses:", line) or "uses: ./" in line:
                continue
            sha = SHA_PIN.match(line)
            tag = TAG_PIN.match(line)
            assert sha or (tag and tag.group(1) in TAG_PINNED), (
                f"{path.name}:{number}: pin actions to a full commit SHA with a '# vX.Y.Z' comment: {line.strip()}"
            )


def test_deploy_logs_in_with_oidc_only(deploy: dict[str, Any]) -> None:
    text = DEPLOY.read_text()
    logins = [step for _, step in steps(deploy) if step.get("uses", "").lower().startswith("azure/login@")]
    assert logins
    for step in logins:
        assert set(step["with"]) == {"client-id", "tenant-id", "subscription-id"}, "OIDC inputs only, no creds"
    assert deploy["env"]["ARM_USE_OIDC"] == "true"
    for forbidden in ("client-secret", "ARM_CLIENT_SECRET", "AZURE_CREDENTIALS", "creds:", "publish-profile"):
        assert forbidden not in text, f"deploy.yml must not use {forbidden}"


def test_deploy_checks_plans_and_applies_terraform_behind_approval(deploy: dict[str, Any]) -> None:
    runs = {job_id: "\n".join(step.get("run", "") for step in job["steps"]) for job_id, job in deploy["jobs"].items()}
    plan_job = next(
        job_id for job_id, text in runs.items() if "terraform plan" in text and "terraform apply" not in text
    )
    for command in ("terraform fmt -check", "terraform init", "terraform validate", "terraform plan"):
        assert command in runs[plan_job], f"{plan_job} must run {command}"
    apply_jobs = [job_id for job_id, text in runs.items() if "terraform apply" in text]
    assert apply_jobs
    for job_id in apply_jobs:
        job = deploy["jobs"][job_id]
        assert job.get("environment"), f"{job_id} applies, so it must wait for a GitHub environment"
        assert plan_job in job["needs"]
    setup = [step for _, step in steps(deploy) if "hashicorp/setup-terraform" in step.get("uses", "")]
    assert setup and all(step["with"]["terraform_version"] for step in setup)


def test_deploy_builds_deploys_then_smoke_checks(deploy: dict[str, Any]) -> None:
    names = [step.get("name", "") for _, step in steps(deploy)]
    build = "\n".join(step.get("run", "") for _, step in steps(deploy))
    assert "bash .github/scripts/package.sh build/functionapp" in build, "the script tests/test_package.py runs"
    script = (ROOT / ".github" / "scripts" / "package.sh").read_text()
    assert "-r requirements.txt" in script and ".python_packages/lib/site-packages" in script
    python = [step for _, step in steps(deploy) if "actions/setup-python" in step.get("uses", "")]
    assert python and all(step["with"]["python-version"] == "${{ env.PYTHON_VERSION }}" for step in python)
    assert deploy["env"]["PYTHON_VERSION"] == "3.11"
    functions = [step for _, step in steps(deploy) if step.get("uses", "").startswith("Azure/functions-action@")]
    assert len(functions) == 1 and functions[0]["with"]["sku"] == "flexconsumption"
    deploy_at = names.index(functions[0]["name"])
    smoke_at = next(i for i, name in enumerate(names) if "smoke" in name.lower())
    assert smoke_at > deploy_at, "the smoke check runs after the code is deployed"


def test_run_scripts_take_untrusted_values_through_env(deploy: dict[str, Any]) -> None:
    for job_id, step in steps(deploy):
        script = step.get("run", "")
        assert "${{" not in script, f"{job_id}/{step.get('name')}: pass expressions through env, not into run"


def test_deploy_doc_names_every_variable_and_secret_the_workflow_reads() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    used = set(re.findall(r"\$\{\{\s*(?:vars|secrets)\.([A-Z_]+)", DEPLOY.read_text()))
    assert used
    missing = sorted(name for name in used if name not in doc)
    assert not missing, f"docs/deploy.md must explain {missing}"
