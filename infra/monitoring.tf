# Log Analytics + workspace-based Application Insights wired to the Function App, and the alert
# rules of the pipeline, all notifying one action group whose email address is a variable.

resource "azurerm_log_analytics_workspace" "main" {
  name                       = local.names.log_analytics
  location                   = azurerm_resource_group.main.location
  resource_group_name        = azurerm_resource_group.main.name
  sku                        = "PerGB2018"
  retention_in_days          = var.log_retention_days
  internet_ingestion_enabled = true
  internet_query_enabled     = true
  tags                       = local.tags
}

resource "azurerm_application_insights" "main" {
  name                = local.names.app_insights
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  workspace_id        = azurerm_log_analytics_workspace.main.id
  application_type    = "other"
  # Ingestion only with Entra ID (APPLICATIONINSIGHTS_AUTHENTICATION_STRING on the app).
  local_authentication_disabled = true
  tags                          = local.tags
}

resource "azurerm_monitor_action_group" "alerts" {
  name                = local.names.action_group
  resource_group_name = azurerm_resource_group.main.name
  short_name          = substr("totes${var.environment}", 0, 12)

  email_receiver {
    name                    = "pipeline-owners"
    email_address           = var.alert_email
    use_common_alert_schema = true
  }

  tags = local.tags
}

locals {
  # Every alert rule: what it watches, where, and the KQL that returns rows when it should fire.
  alert_rules = {
    failed_executions = {
      display_name = "totes ${var.environment}: a function execution failed"
      description  = "Any failed execution of extract, transform or load (Application Insights requests with success == false)."
      severity     = 1
      scope        = azurerm_application_insights.main.id
      frequency    = "PT5M"
      window       = "PT5M"
      query        = <<-KQL
        requests
        | where success == false
        | project timestamp, operation_Name, resultCode, operation_Id, cloud_RoleInstance
      KQL
    }
    poison_message = {
      display_name = "totes ${var.environment}: a load job went to ${local.load_poison_queue}"
      description  = "A message was put on the ${local.load_poison_queue} queue: a load failed 5 times and needs a replay (docs/deploy.md)."
      severity     = 1
      scope        = azurerm_log_analytics_workspace.main.id
      frequency    = "PT5M"
      window       = "PT15M"
      query        = <<-KQL
        StorageQueueLogs
        | where AccountName == "${azurerm_storage_account.lake.name}"
        | where OperationName == "PutMessage"
        | where Uri contains "/${local.load_poison_queue}/"
        | project TimeGenerated, OperationName, StatusCode, Uri
      KQL
    }
    quarantined_rows = {
      display_name = "totes ${var.environment}: transform quarantined rows"
      description  = "transform logged ${local.marker_quarantine}: source rows failed validation and were set aside."
      severity     = 2
      scope        = azurerm_application_insights.main.id
      frequency    = "PT5M"
      window       = "PT5M"
      query        = <<-KQL
        traces
        | where message contains "${local.marker_quarantine}"
        | project timestamp, severityLevel, message, operation_Name
      KQL
    }
    stale_warehouse = {
      display_name = "totes ${var.environment}: no successful load for ${var.freshness_threshold_minutes} minutes while extracts found changes"
      description  = "An extract logged ${local.marker_extract_changes} more than ${var.freshness_threshold_minutes} minutes ago and no ${local.marker_load_ok} has been logged since: the warehouse is falling behind the source."
      severity     = 1
      scope        = azurerm_application_insights.main.id
      frequency    = "PT5M"
      window       = "PT6H"
      query        = <<-KQL
        let stale_after = ${var.freshness_threshold_minutes}m;
        let last_load = toscalar(
            traces
            | where message contains "${local.marker_load_ok}"
            | summarize max(timestamp));
        traces
        | where message contains "${local.marker_extract_changes}"
        | where isnull(last_load) or timestamp > last_load
        | summarize oldest_pending_change = min(timestamp), pending_extracts = count()
        | where oldest_pending_change < ago(stale_after)
      KQL
    }
  }
}

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "pipeline" {
  for_each = local.alert_rules

  name                 = "alert-${local.base}-${replace(each.key, "_", "-")}"
  display_name         = each.value.display_name
  description          = each.value.description
  resource_group_name  = azurerm_resource_group.main.name
  location             = azurerm_resource_group.main.location
  scopes               = [each.value.scope]
  severity             = each.value.severity
  evaluation_frequency = each.value.frequency
  window_duration      = each.value.window
  enabled              = true

  auto_mitigation_enabled = true
  # Tables such as StorageQueueLogs appear only after their first row.
  skip_query_validation = true

  criteria {
    query                   = each.value.query
    time_aggregation_method = "Count"
    operator                = "GreaterThan"
    threshold               = 0

    failing_periods {
      minimum_failing_periods_to_trigger_alert = 1
      number_of_evaluation_periods             = 1
    }
  }

  action {
    action_groups = [azurerm_monitor_action_group.alerts.id]
  }

  tags = local.tags
}
