"""Policy over infra/dashboard.tf: the dashboard's App Service (issue 14) behind Entra sign-in, reading
the warehouse as a read-only Entra role, switched off by one variable."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from shared.dashboard import server
from tests.infra.conftest import INFRA, Terraform, attr, blocks, load_terraform

IDENTITY = "azurerm_user_assigned_identity.dashboard[0]"


def web_app(config: Terraform) -> dict:  # type: ignore[type-arg]
    return config.resource("azurerm_linux_web_app", "dashboard")


def test_every_dashboard_resource_is_switched_by_the_variable(terraform: Terraform) -> None:
    parsed = load_terraform(INFRA)
    dashboard_text = parsed.files["dashboard.tf"]
    labels = re.findall(r'^resource "([a-z_]+)" "([a-z_]+)"', dashboard_text, re.MULTILINE)
    assert len(labels) >= 6
    for type_, name in labels:
        assert attr(terraform.resource(type_, name), "count") == "${local.dashboard_count}", f"{type_}.{name}"
    assert terraform.locals["dashboard_count"] == "${var.dashboard_enabled ? 1 : 0}"
    assert terraform.variables["dashboard_enabled"]["type"] in ("bool", "${bool}")


def test_dashboard_runs_python_311_on_linux_over_https_only(terraform: Terraform) -> None:
    plan = terraform.resource("azurerm_service_plan", "dashboard")
    assert attr(plan, "os_type") == "Linux"
    app = web_app(terraform)
    assert attr(app, "https_only") is True
    assert attr(app, "ftp_publish_basic_authentication_enabled") is False
    assert attr(app, "webdeploy_publish_basic_authentication_enabled") is False
    site = blocks(app, "site_config")[0]
    assert attr(blocks(site, "application_stack")[0], "python_version") == "3.11"
    assert attr(site, "minimum_tls_version") == "1.2"
    assert attr(site, "ftps_state") == "Disabled"
    assert attr(site, "websockets_enabled") is True, "Streamlit needs its websocket"
    assert attr(site, "health_check_path") == "/_stcore/health"


def test_every_request_needs_an_entra_sign_in(terraform: Terraform) -> None:
    auth = blocks(web_app(terraform), "auth_settings_v2")
    assert len(auth) == 1
    assert attr(auth[0], "auth_enabled") is True
    assert attr(auth[0], "require_authentication") is True
    assert attr(auth[0], "unauthenticated_action") == "RedirectToLoginPage"
    assert attr(auth[0], "default_provider") == "azureactivedirectory"
    entra = blocks(auth[0], "active_directory_v2")[0]
    assert attr(entra, "client_id") == "${var.dashboard_entra_client_id}"
    assert "${data.azurerm_client_config.current.tenant_id}" in attr(entra, "tenant_auth_endpoint")


def test_warehouse_is_read_with_the_identity_token_not_a_password(terraform: Terraform) -> None:
    app = web_app(terraform)
    settings = attr(app, "app_settings")
    url = settings["WAREHOUSE_DB_URL"]
    assert "password" not in url and "@Microsoft.KeyVault" not in url
    assert "user=${local.dashboard_warehouse_role}" in url and "sslmode=require" in url
    assert terraform.locals["dashboard_warehouse_role"] == "${local.dashboard_names.identity}"
    assert settings["AZURE_CLIENT_ID"] == f"${{{IDENTITY}.client_id}}"
    assert settings["LAKE_STORAGE__credential"] == "managedidentity"
    identity = blocks(app, "identity")[0]
    assert attr(identity, "type") == "UserAssigned"
    for key, value in settings.items():
        assert not re.search(r"AccountKey=|password=|SharedAccessSignature", str(value), re.I), key


def test_dashboard_identity_only_reads(terraform: Terraform) -> None:
    granted = {
        (attr(body, "scope"), attr(body, "role_definition_name"))
        for body in terraform.of_type("azurerm_role_assignment").values()
        if attr(body, "principal_id") == f"${{{IDENTITY}.principal_id}}"
    }
    assert granted == {
        ("${azurerm_storage_account.lake.id}", "Storage Blob Data Reader"),
        ("${azurerm_application_insights.main.id}", "Monitoring Metrics Publisher"),
    }


def test_startup_command_is_the_one_the_cli_serves(terraform: Terraform) -> None:
    command = shlex.split(terraform.locals["dashboard_command"].replace("${local.dashboard_port}", "8000"))
    served = server.command(8000, "0.0.0.0")  # noqa: S104 - the App Service container listens on all interfaces
    assert command[:3] == ["python", "-m", "streamlit"] and command[3] == "run"
    assert command[4] == str(Path(served[4]).relative_to(INFRA.parent))
    assert sorted(command[5:]) == sorted(served[5:])
    assert "--browser.gatherUsageStats=false" in command


def test_dashboard_names_follow_the_convention(terraform: Terraform) -> None:
    for key, value in terraform.locals["dashboard_names"].items():
        assert re.match(r"^[a-z]+-\$\{local\.base\}-dashboard", value), f"{key}: {value}"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("require_authentication = true", "require_authentication = false"),
        ('role_definition_name = "Storage Blob Data Reader"', 'role_definition_name = "Storage Blob Data Contributor"'),
    ],
)
def test_dashboard_policy_fails_on_a_mutated_copy(tmp_path: Path, old: str, new: str) -> None:
    for path in INFRA.glob("*.tf"):
        text = path.read_text()
        if path.name == "dashboard.tf":
            assert old in text
            text = text.replace(old, new)
        (tmp_path / path.name).write_text(text)
    mutated = load_terraform(tmp_path)
    checks = (test_every_request_needs_an_entra_sign_in, test_dashboard_identity_only_reads)
    failures = 0
    for check in checks:
        try:
            check(mutated)
        except AssertionError:
            failures += 1
    assert failures == 1
