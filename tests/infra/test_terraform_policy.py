"""Policy over the parsed Terraform of infra/: what issue 6 and design.md require of the stack."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared import telemetry
from shared.load import DIMENSIONS_PENDING
from tests.infra.conftest import INFRA, ROOT, Terraform, attr, blocks, load_terraform
from tests.infra.kql import parse as kql_parse

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]*$")


def resolve(config: Terraform, value: Any) -> Any:
    """Substitute `${local.NAME}` references to string locals (the contract names live in locals)."""
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        local = config.locals.get(match.group(1))
        return local if isinstance(local, str) and "${" not in local else match.group(0)

    return re.sub(r"\$\{local\.([a-z_]+)\}", replace, value)


def app_settings(config: Terraform) -> dict[str, str]:
    app = config.resource("azurerm_function_app_flex_consumption", "main")
    settings = attr(app, "app_settings")
    if isinstance(settings, str):  # app_settings = local.<name>
        match = re.fullmatch(r"\$\{local\.([a-z_]+)\}", settings)
        assert match, f"app_settings must be a map or a local, not {settings!r}"
        settings = config.locals[match.group(1)]
    assert isinstance(settings, dict)
    return {key: resolve(config, value) for key, value in settings.items()}


# ---------------------------------------------------------------------------------------------
# Lake and host storage
# ---------------------------------------------------------------------------------------------


def test_lake_has_hierarchical_namespace(terraform: Terraform) -> None:
    lake = terraform.resource("azurerm_storage_account", "lake")
    assert attr(lake, "is_hns_enabled") is True
    assert attr(lake, "account_kind") == "StorageV2"


@pytest.mark.parametrize("name", ["lake", "host"])
def test_storage_accounts_accept_only_entra_over_tls(terraform: Terraform, name: str) -> None:
    account = terraform.resource("azurerm_storage_account", name)
    assert attr(account, "min_tls_version") in ("TLS1_2", "TLS1_3")
    assert attr(account, "https_traffic_only_enabled", True) is True
    assert attr(account, "allow_nested_items_to_be_public") is False, "no anonymous blob access"
    assert attr(account, "shared_access_key_enabled") is False, "shared key access must be off"
    assert attr(account, "default_to_oauth_authentication") is True


def test_every_storage_account_is_locked_down(terraform: Terraform) -> None:
    accounts = terraform.of_type("azurerm_storage_account")
    assert set(accounts) == {"lake", "host"}, "a new storage account needs its own policy test"


def test_lake_has_raw_and_curated_containers(terraform: Terraform) -> None:
    containers = {
        resolve(terraform, attr(body, "name")): body
        for body in terraform.of_type("azurerm_storage_container").values()
        if attr(body, "storage_account_id") == "${azurerm_storage_account.lake.id}"
    }
    assert set(containers) == {"raw", "curated"}
    for body in containers.values():
        assert attr(body, "container_access_type") == "private"


def test_lake_has_load_queue_and_its_poison_queue(terraform: Terraform) -> None:
    queues = {
        resolve(terraform, attr(body, "name"))
        for body in terraform.of_type("azurerm_storage_queue").values()
        if attr(body, "storage_account_id") == "${azurerm_storage_account.lake.id}"
    }
    assert queues == {"load-jobs", "load-jobs-poison"}


def test_old_raw_blobs_move_to_cool_tier(terraform: Terraform) -> None:
    policy = terraform.resource("azurerm_storage_management_policy", "lake")
    assert attr(policy, "storage_account_id") == "${azurerm_storage_account.lake.id}"
    cool_rules = []
    for rule in blocks(policy, "rule"):
        prefixes = [resolve(terraform, p) for p in attr(blocks(rule, "filters")[0], "prefix_match")]
        base_blob = blocks(blocks(rule, "actions")[0], "base_blob")[0]
        if "raw/" in prefixes and "tier_to_cool_after_days_since_modification_greater_than" in base_blob:
            cool_rules.append(rule)
    assert cool_rules, "a lifecycle rule must move raw/ blobs to the cool tier"
    assert attr(cool_rules[0], "enabled", True) is True


# ---------------------------------------------------------------------------------------------
# Function App
# ---------------------------------------------------------------------------------------------


def test_function_app_runs_python_311_on_flex_consumption(terraform: Terraform) -> None:
    plan = terraform.resource("azurerm_service_plan", "main")
    assert attr(plan, "sku_name") == "FC1"
    assert attr(plan, "os_type") == "Linux"
    app = terraform.resource("azurerm_function_app_flex_consumption", "main")
    assert attr(app, "service_plan_id") == "${azurerm_service_plan.main.id}"
    assert attr(app, "runtime_name") == "python"
    assert attr(app, "runtime_version") == "3.11"
    assert attr(app, "https_only") is True
    assert attr(app, "webdeploy_publish_basic_authentication_enabled") is False


def test_function_app_uses_its_user_assigned_identity_everywhere(terraform: Terraform) -> None:
    app = terraform.resource("azurerm_function_app_flex_consumption", "main")
    identity = blocks(app, "identity")
    assert len(identity) == 1 and attr(identity[0], "type") == "UserAssigned"
    uami = "${azurerm_user_assigned_identity.function.id}"
    assert attr(identity[0], "identity_ids") == [uami]
    assert attr(app, "key_vault_reference_identity_id") == uami, "Key Vault references resolve with it"
    assert attr(app, "storage_authentication_type") == "UserAssignedIdentity"
    assert attr(app, "storage_user_assigned_identity_id") == uami


def test_the_source_url_is_a_key_vault_reference(terraform: Terraform) -> None:
    value = app_settings(terraform)["TOTESYS_DB_URL"]
    assert value.startswith("@Microsoft.KeyVault(SecretUri="), "TOTESYS_DB_URL must be a Key Vault reference"
    assert value.endswith(")")
    assert "azurerm_key_vault" in value, "TOTESYS_DB_URL must point into this stack's vault"


def test_the_warehouse_is_reached_with_an_entra_token_not_a_password(terraform: Terraform) -> None:
    settings = app_settings(terraform)
    assert settings["WAREHOUSE_AUTH"] == "entra"
    assert settings["WAREHOUSE_DB_URL"] == "${local.warehouse_entra_url}"
    url = terraform.locals["warehouse_entra_url"]
    assert url.startswith('${format("postgresql://%s@%s:5432/%s?sslmode=require"'), "no password, TLS required"
    assert "azurerm_user_assigned_identity.function.name" in url, "it signs in as the identity's role"
    assert "password" not in url and "random_password" not in url and "key_vault" not in url
    assert settings["AZURE_CLIENT_ID"] == "${local.identity_client_id}", "DefaultAzureCredential picks the identity"
    # The administrator password is not needed at run time: no app setting refers to its secret.
    for name, value in settings.items():
        assert "warehouse_admin" not in str(value), f"app setting {name} refers to the administrator secret"


def test_the_function_identity_is_mapped_to_a_warehouse_role(terraform: Terraform) -> None:
    admin = terraform.resource("azurerm_postgresql_flexible_server_active_directory_administrator", "function")
    assert "count" not in admin and "for_each" not in admin, "the mapping is not optional"
    assert attr(admin, "server_name") == "${azurerm_postgresql_flexible_server.warehouse.name}"
    assert attr(admin, "object_id") == "${azurerm_user_assigned_identity.function.principal_id}"
    assert attr(admin, "principal_name") == "${azurerm_user_assigned_identity.function.name}"
    assert attr(admin, "principal_type") == "ServicePrincipal"
    assert attr(admin, "tenant_id") == "${data.azurerm_client_config.current.tenant_id}"
    app = terraform.resource("azurerm_function_app_flex_consumption", "main")
    assert "${azurerm_postgresql_flexible_server_active_directory_administrator.function}" in attr(app, "depends_on")


@pytest.mark.parametrize("connection", ["LAKE_STORAGE", "AzureWebJobsStorage"])
def test_storage_connections_are_identity_based(terraform: Terraform, connection: str) -> None:
    settings = app_settings(terraform)
    account = "lake" if connection == "LAKE_STORAGE" else "host"
    for service in ("blob", "queue"):
        expected = f"${{azurerm_storage_account.{account}.primary_{service}_endpoint}}"
        assert settings[f"{connection}__{service}ServiceUri"] == expected
    assert settings[f"{connection}__credential"] == "managedidentity"
    client_id = settings[f"{connection}__clientId"]
    if client_id == "${local.identity_client_id}":
        client_id = terraform.locals["identity_client_id"]
    assert client_id == "${azurerm_user_assigned_identity.function.client_id}"
    assert settings.get(connection, "") == "", f"{connection} must not carry a connection string"


def test_app_settings_match_the_design_contract(terraform: Terraform) -> None:
    settings = app_settings(terraform)
    assert settings["RAW_CONTAINER"] == "raw"
    assert settings["CURATED_CONTAINER"] == "curated"
    assert settings["LOAD_QUEUE"] == "load-jobs"
    assert settings["TRANSFORM_TRIGGER_SOURCE"] == "EventGrid"
    assert settings["EXTRACT_SCHEDULE"] == "${var.extract_schedule}"
    assert settings["EXTRACT_LOOKBACK"] == "${var.extract_lookback}"
    assert settings["KEY_VAULT_URL"] == "${azurerm_key_vault.main.vault_uri}"
    assert terraform.variables["extract_schedule"]["default"] == "0 */5 * * * *"
    assert settings["RECONCILE_SCHEDULE"] == "${var.reconcile_schedule}"
    assert terraform.variables["reconcile_schedule"]["default"] == "0 30 2 * * *"
    assert terraform.variables["extract_lookback"]["default"] == "10m"
    app = terraform.resource("azurerm_function_app_flex_consumption", "main")
    site_config = blocks(app, "site_config")[0]
    assert attr(site_config, "application_insights_connection_string") == (
        "${azurerm_application_insights.main.connection_string}"
    )


def test_no_app_setting_carries_a_key(terraform: Terraform) -> None:
    for name, value in app_settings(terraform).items():
        text = str(value)
        for forbidden in ("AccountKey=", "SharedAccessSignature=", "primary_access_key", "primary_connection_string"):
            assert forbidden not in text, f"app setting {name} carries a key ({forbidden})"


# ---------------------------------------------------------------------------------------------
# Role assignments: exactly these, each scoped to one resource
# ---------------------------------------------------------------------------------------------

FUNCTION_ROLES = {
    ("${azurerm_storage_account.lake.id}", "Storage Blob Data Contributor"),
    ("${azurerm_storage_account.lake.id}", "Storage Queue Data Contributor"),
    ("${azurerm_key_vault.main.id}", "Key Vault Secrets User"),
    ("${azurerm_storage_account.host.id}", "Storage Blob Data Owner"),
    ("${azurerm_storage_account.host.id}", "Storage Queue Data Contributor"),
    ("${azurerm_storage_account.host.id}", "Storage Table Data Contributor"),
    ("${azurerm_application_insights.main.id}", "Monitoring Metrics Publisher"),
}


def test_function_identity_holds_exactly_the_roles_it_needs(terraform: Terraform) -> None:
    granted = {
        (attr(body, "scope"), attr(body, "role_definition_name"))
        for body in terraform.of_type("azurerm_role_assignment").values()
        if attr(body, "principal_id") == "${azurerm_user_assigned_identity.function.principal_id}"
    }
    assert granted == FUNCTION_ROLES


def test_no_role_assignment_is_broad(terraform: Terraform) -> None:
    for name, body in terraform.of_type("azurerm_role_assignment").items():
        scope = attr(body, "scope")
        assert re.fullmatch(r"\$\{azurerm_[a-z_]+\.[a-z_]+\.id\}", scope), (
            f"role assignment {name} must be scoped to one resource of this stack, not {scope}"
        )
        assert "resource_group" not in scope and "subscription" not in scope
        assert attr(body, "role_definition_name") not in ("Owner", "Contributor", "User Access Administrator")


# ---------------------------------------------------------------------------------------------
# Key Vault and secrets
# ---------------------------------------------------------------------------------------------


def test_key_vault_uses_rbac_and_purge_protection(terraform: Terraform) -> None:
    vault = terraform.resource("azurerm_key_vault", "main")
    assert attr(vault, "rbac_authorization_enabled") is True
    assert attr(vault, "purge_protection_enabled") is True
    assert attr(vault, "soft_delete_retention_days") >= 7
    assert not blocks(vault, "access_policy"), "RBAC mode: no access policies"


def test_key_vault_secrets_never_hold_a_value_in_terraform(terraform: Terraform) -> None:
    secrets = terraform.of_type("azurerm_key_vault_secret")
    assert "warehouse_admin_url" in secrets
    for name, body in secrets.items():
        assert "value" not in body, f"azurerm_key_vault_secret.{name} must use value_wo (write-only)"
        assert attr(body, "value_wo_version") is not None
        assert "ephemeral." in attr(body, "value_wo"), "the value must come from an ephemeral source"


def test_warehouse_password_is_write_only_and_ephemeral(terraform: Terraform) -> None:
    server = terraform.resource("azurerm_postgresql_flexible_server", "warehouse")
    assert "administrator_password" not in server
    assert attr(server, "administrator_password_wo") == "${ephemeral.random_password.warehouse_admin.result}"
    assert "random_password" in terraform.ephemeral
    assert not terraform.of_type("random_password"), "a managed random_password would store it in state"


SECRET_PATTERNS = [
    re.compile(r"AccountKey=[A-Za-z0-9+/=]{8,}"),
    re.compile(r"SharedAccessSignature=|[?&]sig=[A-Za-z0-9%+/=]{8,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)\b(password|passwd|secret|client_secret|api_key|access_key)\b\s*=\s*\"[^\"$]+\""),
    re.compile(r"[a-z][a-z0-9+.-]*://[^\s/:@\"]+:[^\s/@\"$]+@"),  # credentials inside a URL
    re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\."),  # a JWT
]


def committed_infra_files() -> list[Path]:
    return sorted(
        path
        for path in INFRA.rglob("*")
        if path.is_file() and ".terraform" not in path.parts and path.suffix in (".tf", ".tfvars", ".hcl", ".example")
    )


def test_no_secret_literal_in_infra(terraform: Terraform) -> None:
    files = committed_infra_files()
    assert any(path.suffix == ".tfvars" for path in files)
    for path in files:
        text = path.read_text()
        for pattern in SECRET_PATTERNS:
            match = pattern.search(text)
            assert match is None, f"{path.relative_to(INFRA)} looks like it holds a secret: {match.group(0)!r}"


def test_no_output_exposes_a_secret(terraform: Terraform) -> None:
    forbidden = re.compile(
        r"password|connection_string|access_key|(extension|primary|secondary|instrumentation)_key"
        r"|\.result\b|\.value\b|\bsas|secret_value|host_keys"
    )
    for name, body in terraform.outputs.items():
        value = str(attr(body, "value"))
        assert body.get("sensitive") is not True, f"output {name}: sensitive outputs are not allowed at all"
        match = forbidden.search(value)
        assert match is None, f"output {name} exposes {match and match.group(0)}: {value}"


# ---------------------------------------------------------------------------------------------
# Warehouse
# ---------------------------------------------------------------------------------------------


def test_warehouse_is_postgresql_16_with_entra_authentication(terraform: Terraform) -> None:
    server = terraform.resource("azurerm_postgresql_flexible_server", "warehouse")
    assert attr(server, "version") == "16"
    auth = blocks(server, "authentication")
    assert len(auth) == 1
    assert attr(auth[0], "active_directory_auth_enabled") is True


def test_warehouse_database_exists(terraform: Terraform) -> None:
    database = terraform.resource("azurerm_postgresql_flexible_server_database", "warehouse")
    assert attr(database, "name") == "warehouse"
    assert attr(database, "server_id") == "${azurerm_postgresql_flexible_server.warehouse.id}"


WHOLE_INTERNET = ("0.0.0.0", "255.255.255.255")  # noqa: S104 (an address range, not a socket bind)


def test_warehouse_network_access_is_limited(terraform: Terraform) -> None:
    server = terraform.resource("azurerm_postgresql_flexible_server", "warehouse")
    public = attr(server, "public_network_access_enabled")
    assert public is not True, "public access must depend on the private-access variables"
    assert attr(server, "delegated_subnet_id") == "${var.warehouse_delegated_subnet_id}"
    assert "warehouse_firewall_rules" in terraform.variables
    for name, rule in terraform.of_type("azurerm_postgresql_flexible_server_firewall_rule").items():
        start, end = attr(rule, "start_ip_address"), attr(rule, "end_ip_address")
        assert (start, end) != WHOLE_INTERNET, f"firewall rule {name} opens the world"
        assert "count" in rule or "for_each" in rule, f"firewall rule {name} must be driven by variables"


# ---------------------------------------------------------------------------------------------
# Event Grid
# ---------------------------------------------------------------------------------------------


def test_event_grid_drives_transform_from_committed_manifests(terraform: Terraform) -> None:
    topic = terraform.resource("azurerm_eventgrid_system_topic", "lake")
    assert attr(topic, "source_resource_id") == "${azurerm_storage_account.lake.id}"
    assert attr(topic, "topic_type") == "Microsoft.Storage.StorageAccounts"

    subscription = terraform.resource("azurerm_eventgrid_system_topic_event_subscription", "transform")
    assert attr(subscription, "system_topic") == "${azurerm_eventgrid_system_topic.lake.name}"
    assert attr(subscription, "included_event_types") == ["Microsoft.Storage.BlobCreated"]
    subject = blocks(subscription, "subject_filter")[0]
    assert resolve(terraform, attr(subject, "subject_begins_with")) == (
        "/blobServices/default/containers/raw/blobs/_runs/"
    )
    assert attr(subject, "subject_ends_with") == ".json"
    url = resolve(terraform, attr(blocks(subscription, "webhook_endpoint")[0], "url"))
    assert url.startswith("https://${azurerm_function_app_flex_consumption.main.default_hostname}/")
    assert "/runtime/webhooks/blobs?functionName=Host.Functions.transform&code=" in url
    assert "blobs_extension_key" in url


# ---------------------------------------------------------------------------------------------
# Monitoring and alerts
# ---------------------------------------------------------------------------------------------


def test_application_insights_is_workspace_based(terraform: Terraform) -> None:
    insights = terraform.resource("azurerm_application_insights", "main")
    assert attr(insights, "workspace_id") == "${azurerm_log_analytics_workspace.main.id}"
    terraform.resource("azurerm_log_analytics_workspace", "main")


def test_action_group_emails_the_configured_address(terraform: Terraform) -> None:
    group = terraform.resource("azurerm_monitor_action_group", "alerts")
    receivers = blocks(group, "email_receiver")
    assert [attr(r, "email_address") for r in receivers] == ["${var.alert_email}"]
    assert "validation" in terraform.variables["alert_email"]


TEMPLATEFILE = re.compile(
    r'^\$\{templatefile\("\$\{path\.module\}/(kql/alerts/[a-z_]+\.kql)",\s*local\.alert_query_values\)\}$'
)


def local_value(config: Terraform, value: Any) -> Any:
    """A `${local.NAME}` or `${local.NAME.KEY}` reference replaced by the local's literal value."""
    if isinstance(value, str) and (match := re.fullmatch(r"\$\{local\.([a-z_]+)(?:\.([a-z_]+))?\}", value)):
        found = config.locals.get(match[1])
        found = found.get(match[2]) if match[2] and isinstance(found, dict) else found
        if isinstance(found, str | int | float) and "${" not in str(found):
            return found
    return value


def render_alert_query(config: Terraform, expression: str) -> str:
    """The KQL an alert rule's `templatefile(...)` renders, with the literal values of its locals (references
    to variables and resources stay as `${...}`)."""
    match = TEMPLATEFILE.match(expression)
    assert match, f"an alert query must be templatefile(<kql/alerts/*.kql>, local.alert_query_values): {expression}"
    values = {key: local_value(config, value) for key, value in config.locals["alert_query_values"].items()}
    template = (INFRA / match[1]).read_text()
    used = set(re.findall(r"\$\{([a-z_]+)\}", template))
    assert used <= set(values), f"{match[1]} uses values alert_query_values lacks: {used - set(values)}"
    return re.sub(r"\$\{([a-z_]+)\}", lambda m: str(values[m[1]]), template)


def alert_queries(terraform: Terraform) -> dict[str, str]:
    rule = terraform.resource("azurerm_monitor_scheduled_query_rules_alert_v2", "pipeline")
    assert attr(rule, "for_each") == "${local.alert_rules}"
    assert "${azurerm_monitor_action_group.alerts.id}" in attr(blocks(rule, "action")[0], "action_groups")
    return {
        name: render_alert_query(terraform, body["query"]) for name, body in terraform.locals["alert_rules"].items()
    }


def without_comments(kql: str) -> str:
    return "\n".join(line.split("//", 1)[0] for line in kql.splitlines())


def test_every_alert_rule_is_present(terraform: Terraform) -> None:
    queries = {name: without_comments(kql) for name, kql in alert_queries(terraform).items()}
    assert set(queries) == {"failed_executions", "poison_message", "quarantined_runs", "stale_warehouse"}
    assert "success == false" in queries["failed_executions"]
    assert "load-jobs-poison" in queries["poison_message"] and "PutMessage" in queries["poison_message"]
    assert '"totes.load.poison"' in queries["poison_message"]
    assert 'name == "totes.runs.quarantined"' in queries["quarantined_runs"]
    assert terraform.variables["freshness_threshold_minutes"]["default"] == 30


def test_no_alert_searches_sampled_trace_text(terraform: Terraform) -> None:
    sampling = json.loads((ROOT / "host.json").read_text())["logging"]["applicationInsights"]["samplingSettings"]
    unsampled = set(sampling["excludedTypes"].split(";"))
    assert {"Request", "Exception"} <= unsampled
    for name, kql in alert_queries(terraform).items():
        tables = kql_parse(kql).tables
        assert "traces" not in tables and "AppTraces" not in tables, f"alert {name} reads sampled trace text"
        assert tables <= {"requests", "exceptions", "customMetrics", "AppMetrics", "StorageQueueLogs"}, (name, tables)


def test_the_failed_execution_alert_leaves_out_the_expected_dimension_retry(terraform: Terraform) -> None:
    kql = without_comments(alert_queries(terraform)["failed_executions"])
    assert f'has "{DIMENSIONS_PENDING}"' in kql, "the retry is recognised by the load's own message"
    assert "operation_Id !in (expected_retries)" in kql
    assert terraform.locals["marker_dimensions_pending"] == DIMENSIONS_PENDING


def test_the_freshness_alert_reads_the_lag_metric_against_the_threshold_variable(terraform: Terraform) -> None:
    kql = without_comments(alert_queries(terraform)["stale_warehouse"])
    assert "let threshold_s = ${var.freshness_threshold_minutes} * 60;" in kql
    assert f'"{telemetry.FRESHNESS_LAG}"' in kql and f'"{telemetry.BACKLOG_AGE}"' in kql
    assert "worst_s > threshold_s" in kql
    threshold = terraform.variables["freshness_threshold_minutes"]
    assert threshold["default"] == 30 and threshold["type"] == "${number}"


def test_terraform_metric_names_are_the_code_s(terraform: Terraform) -> None:
    assert sorted(terraform.locals["metric_names"].values()) == sorted(telemetry.METRIC_NAMES)


WORKBOOK_PANELS = {
    "runs_per_hour": [telemetry.STAGE_DURATION],
    "rows_per_table": [telemetry.ROWS],
    "stage_durations": [telemetry.STAGE_DURATION],
    "freshness_lag": [telemetry.FRESHNESS_LAG],
    "backlog": [telemetry.BACKLOG, telemetry.BACKLOG_AGE],
    "failures_and_quarantines": [telemetry.QUARANTINED, telemetry.POISON],
}


def test_the_operations_workbook_shows_every_panel_from_its_kql_file(terraform: Terraform) -> None:
    workbook = terraform.resource("azurerm_application_insights_workbook", "operations")
    assert attr(workbook, "source_id") == "${lower(azurerm_application_insights.main.id)}"
    assert attr(workbook, "category") == "workbook"
    assert attr(workbook, "name").startswith("${uuidv5("), "a workbook's name is a stable UUID"
    panels = [panel["name"] for panel in terraform.locals["workbook_panels"]]
    assert panels == list(WORKBOOK_PANELS)
    assert {path.stem for path in (INFRA / "kql" / "workbook").glob("*.kql")} == set(panels), "one file per panel"
    data = attr(workbook, "data_json")
    for needed in (
        "Notebook/1.0",
        "KqlItem/1.0",
        "for panel in local.workbook_panels",
        "microsoft.insights/components",
    ):
        assert needed in data, f"workbook data_json lacks {needed}"
    assert 'file("${path.module}/kql/workbook/${panel.name}.kql")' in terraform.files["monitoring.tf"]
    for panel, metrics in WORKBOOK_PANELS.items():
        kql = without_comments((INFRA / "kql" / "workbook" / f"{panel}.kql").read_text())
        for metric in metrics:
            assert f'"{metric}"' in kql, f"workbook panel {panel} must chart {metric}"
    failures = without_comments((INFRA / "kql" / "workbook" / "failures_and_quarantines.kql").read_text())
    assert "success == false" in failures and DIMENSIONS_PENDING in failures


def test_poison_queue_writes_reach_the_workspace(terraform: Terraform) -> None:
    setting = terraform.resource("azurerm_monitor_diagnostic_setting", "lake_queues")
    assert attr(setting, "target_resource_id") == "${azurerm_storage_account.lake.id}/queueServices/default"
    assert "StorageWrite" in [attr(log, "category") for log in blocks(setting, "enabled_log")]


# ---------------------------------------------------------------------------------------------
# Variables, outputs, versions, environments, naming
# ---------------------------------------------------------------------------------------------

# Variables whose type says it all (bool, free-form map, optional resource IDs).
UNVALIDATED = {
    "tags",
    "transform_events_enabled",
    "warehouse_geo_redundant_backup",
    "warehouse_allow_azure_services",
    "warehouse_delegated_subnet_id",
    "function_subnet_id",
}


def test_every_variable_is_described_and_validated(terraform: Terraform) -> None:
    for name, body in terraform.variables.items():
        assert SNAKE_CASE.match(name)
        assert len(body.get("description", "")) >= 20, f"variable {name} needs a description"
        assert "type" in body, f"variable {name} needs a type"
        if name not in UNVALIDATED:
            assert blocks(body, "validation"), f"variable {name} needs a validation block"


def test_every_output_is_described(terraform: Terraform) -> None:
    assert {"function_app_name", "resource_group_name", "key_vault_name"} <= set(terraform.outputs)
    for name, body in terraform.outputs.items():
        assert body.get("description"), f"output {name} needs a description"


def test_versions_are_pinned_and_state_is_remote(terraform: Terraform) -> None:
    settings = terraform.settings[0]
    assert ">=" in attr(settings, "required_version")
    providers = attr(settings, "required_providers")
    if isinstance(providers, list):
        providers = providers[0]
    for name in ("azurerm", "random", "time"):
        version = (
            attr(providers[name], "version")
            if isinstance(providers[name], dict)
            else attr(providers[name][0], "version")
        )
        assert version.startswith("~>"), f"provider {name} must be pinned with ~>, not {version}"
    assert "azurerm" in attr(settings, "backend"), "state lives in an azurerm backend"
    assert attr(terraform.providers["azurerm"], "storage_use_azuread") is True


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_each_environment_has_variables_and_its_own_state(environment: str) -> None:
    tfvars = (INFRA / "environments" / f"{environment}.tfvars").read_text()
    assert re.search(rf'^environment\s*=\s*"{environment}"$', tfvars, re.MULTILINE)
    backend = (INFRA / "environments" / f"{environment}.backend.hcl").read_text()
    assert re.search(rf'^key\s*=\s*"totes/{environment}\.tfstate"$', backend, re.MULTILINE)
    assert (INFRA / "terraform.tfvars.example").exists()


def test_names_follow_the_convention(terraform: Terraform) -> None:
    for type_, by_name in terraform.resources.items():
        for name in by_name:
            assert SNAKE_CASE.match(name), f"Terraform label {type_}.{name} must be snake_case"
    names = terraform.locals["names"]
    for key, value in names.items():
        if key.endswith("_storage"):
            assert value.startswith("sttotes${var.environment}"), f"{key}: {value}"
        else:
            assert re.match(r"^[a-z]+-\$\{local\.base\}", value), f"{key}: {value}"
    assert terraform.locals["base"] == "totes-${var.environment}"


# ---------------------------------------------------------------------------------------------
# The policy catches regressions: each mutation of a copy of infra/ must fail its test.
# ---------------------------------------------------------------------------------------------

MUTATIONS = [
    (
        "storage.tf",
        "shared_access_key_enabled         = false",
        "shared_access_key_enabled         = true",
        lambda config: test_storage_accounts_accept_only_entra_over_tls(config, "lake"),
    ),
    (
        "storage.tf",
        "is_hns_enabled                    = true",
        "is_hns_enabled                    = false",
        test_lake_has_hierarchical_namespace,
    ),
    (
        "key_vault.tf",
        "purge_protection_enabled   = true",
        "purge_protection_enabled   = false",
        test_key_vault_uses_rbac_and_purge_protection,
    ),
    (
        "function_app.tf",
        '"TOTESYS_DB_URL" = "@Microsoft.KeyVault(',
        '"TOTESYS_DB_URL" = "postgresql://x@h/d?x=(',
        test_the_source_url_is_a_key_vault_reference,
    ),
    (
        "function_app.tf",
        '"WAREHOUSE_AUTH"   = "entra"',
        '"WAREHOUSE_AUTH"   = "password"',
        test_the_warehouse_is_reached_with_an_entra_token_not_a_password,
    ),
    (
        "warehouse.tf",
        "object_id           = azurerm_user_assigned_identity.function.principal_id",
        "object_id           = var.warehouse_entra_admin.object_id",
        test_the_function_identity_is_mapped_to_a_warehouse_role,
    ),
    (
        "monitoring.tf",
        'quarantined    = "totes.runs.quarantined"',
        'quarantined    = "totes.quarantine"',
        test_terraform_metric_names_are_the_code_s,
    ),
    (
        "monitoring.tf",
        "kql/alerts/failed_executions.kql",
        "kql/alerts/quarantined_runs.kql",
        test_the_failed_execution_alert_leaves_out_the_expected_dimension_retry,
    ),
    (
        "monitoring.tf",
        "threshold_minutes  = var.freshness_threshold_minutes",
        "threshold_minutes  = 30",
        test_the_freshness_alert_reads_the_lag_metric_against_the_threshold_variable,
    ),
    (
        "function_app.tf",
        "scope                = azurerm_storage_account.lake.id",
        "scope                = azurerm_resource_group.main.id",
        test_no_role_assignment_is_broad,
    ),
]


@pytest.mark.parametrize(("file", "old", "new", "check"), MUTATIONS, ids=[m[2][:40] for m in MUTATIONS])
def test_policy_fails_on_a_mutated_copy(
    tmp_path: Path, file: str, old: str, new: str, check: Callable[[Terraform], None]
) -> None:
    for path in INFRA.glob("*.tf"):
        text = path.read_text()
        if path.name == file:
            assert old in text, f"mutation target not found in {file}: {old!r}"
            text = text.replace(old, new, 1)
        (tmp_path / path.name).write_text(text)
    with pytest.raises(AssertionError):
        check(load_terraform(tmp_path))
