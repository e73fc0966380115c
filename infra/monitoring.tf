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
  # Metric names the code records (shared/telemetry.py); the alerts and the workbook query them.
  metric_names = {
    rows           = "totes.rows"
    stage_duration = "totes.stage.duration"
    freshness_lag  = "totes.freshness.lag"
    backlog        = "totes.backlog"
    backlog_age    = "totes.backlog.age"
    quarantined    = "totes.runs.quarantined"
    poison         = "totes.load.poison"
  }

  # The values the alert queries (kql/alerts/*.kql) are rendered with.
  alert_query_values = {
    dimensions_pending = local.marker_dimensions_pending
    lake_account       = azurerm_storage_account.lake.name
    poison_queue       = local.load_poison_queue
    poison_metric      = local.metric_names.poison
    quarantined_metric = local.metric_names.quarantined
    lag_metric         = local.metric_names.freshness_lag
    backlog_age_metric = local.metric_names.backlog_age
    threshold_minutes  = var.freshness_threshold_minutes
  }

  # Every alert rule: what it watches, where, and the query (kql/alerts/<name>.kql) that returns rows when
  # it should fire. They read metrics and unsampled records only (requests, exceptions, storage logs), never
  # trace text, which host.json samples.
  alert_rules = {
    failed_executions = {
      display_name = "totes ${var.environment}: a function execution failed"
      description  = "A failed execution of extract, transform or load (requests with success == false), except the expected retry of a load whose dimension rows an earlier run brings."
      severity     = 1
      scope        = azurerm_application_insights.main.id
      frequency    = "PT5M"
      window       = "PT5M"
      query        = templatefile("${path.module}/kql/alerts/failed_executions.kql", local.alert_query_values)
    }
    poison_message = {
      display_name = "totes ${var.environment}: a load job went to ${local.load_poison_queue}"
      description  = "A message was put on the ${local.load_poison_queue} queue: unusable, or a load failed 5 times; it needs a replay (docs/deploy.md)."
      severity     = 1
      scope        = azurerm_log_analytics_workspace.main.id
      frequency    = "PT5M"
      window       = "PT15M"
      query        = templatefile("${path.module}/kql/alerts/poison_messages.kql", local.alert_query_values)
    }
    quarantined_runs = {
      display_name = "totes ${var.environment}: transform quarantined a run"
      description  = "The transform set a run aside (metric ${local.metric_names.quarantined}); its record is in curated/_quarantine/."
      severity     = 2
      scope        = azurerm_application_insights.main.id
      frequency    = "PT5M"
      window       = "PT5M"
      query        = templatefile("${path.module}/kql/alerts/quarantined_runs.kql", local.alert_query_values)
    }
    stale_warehouse = {
      display_name = "totes ${var.environment}: the warehouse is more than ${var.freshness_threshold_minutes} minutes behind the source"
      description  = "A run was loaded with a freshness lag (${local.metric_names.freshness_lag}) above ${var.freshness_threshold_minutes} minutes, or a run has waited that long for the transform or the load (${local.metric_names.backlog_age})."
      severity     = 1
      scope        = azurerm_application_insights.main.id
      frequency    = "PT5M"
      window       = "PT15M"
      query        = templatefile("${path.module}/kql/alerts/stale_warehouse.kql", local.alert_query_values)
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

# The operations workbook: one panel per query in kql/workbook/, in this order.
locals {
  workbook_panels = [
    { name = "runs_per_hour", title = "Stage calls per hour by outcome", visualization = "barchart" },
    { name = "rows_per_table", title = "Rows per table and stage", visualization = "table" },
    { name = "stage_durations", title = "Stage durations (s)", visualization = "linechart" },
    { name = "freshness_lag", title = "Freshness lag (minutes)", visualization = "linechart" },
    { name = "backlog", title = "Runs waiting per stage", visualization = "linechart" },
    { name = "failures_and_quarantines", title = "Failures, quarantined runs and poison messages", visualization = "barchart" },
  ]
}

resource "azurerm_application_insights_workbook" "operations" {
  name                = uuidv5("url", "https://totes/${var.environment}/workbooks/operations")
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  display_name        = "totes ${var.environment}: operations"
  source_id           = lower(azurerm_application_insights.main.id)
  category            = "workbook"

  data_json = jsonencode({
    version = "Notebook/1.0"
    items = concat(
      [{
        type    = 1
        name    = "title"
        content = { json = "## totes ${var.environment}\nRuns, rows, durations, freshness, backlog and failures of the pipeline (metrics from shared/telemetry.py)." }
      }],
      [for panel in local.workbook_panels : {
        type = 3
        name = panel.name
        content = {
          version       = "KqlItem/1.0"
          query         = file("${path.module}/kql/workbook/${panel.name}.kql")
          size          = 0
          title         = panel.title
          queryType     = 0
          resourceType  = "microsoft.insights/components"
          visualization = panel.visualization
          timeContext   = { durationMs = 86400000 }
        }
      }],
    )
    isLocked            = false
    fallbackResourceIds = [azurerm_application_insights.main.id]
  })

  tags = local.tags
}
