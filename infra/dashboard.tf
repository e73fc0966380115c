# The dashboard (shared/dashboard, issue 14): a Linux App Service running Streamlit, behind App Service
# authentication (Entra sign-in required for every request). Its own user-assigned identity signs in to
# the warehouse with an Entra token as a read-only role, and reads the lake's run markers (backlog,
# quarantines). dashboard_enabled = false leaves all of it out.

locals {
  dashboard_count = var.dashboard_enabled ? 1 : 0

  dashboard_names = {
    service_plan = "asp-${local.base}-dashboard"
    identity     = "id-${local.base}-dashboard"
    web_app      = "app-${local.base}-dashboard${local.dash}"
  }
  # The identity's PostgreSQL role is named after it (pgaadauth_create_principal); it holds only SELECT.
  dashboard_warehouse_role = local.dashboard_names.identity
  dashboard_port           = 8000

  # The same flags as shared.dashboard.server.command: headless, no usage statistics, no file watcher.
  dashboard_command = "python -m streamlit run shared/dashboard/app.py --server.headless=true --server.port=${local.dashboard_port} --server.address=0.0.0.0 --browser.gatherUsageStats=false --server.fileWatcherType=none --client.toolbarMode=viewer"
}

resource "azurerm_user_assigned_identity" "dashboard" {
  count               = local.dashboard_count
  name                = local.dashboard_names.identity
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = local.tags
}

resource "azurerm_service_plan" "dashboard" {
  #checkov:skip=CKV_AZURE_212:One worker is enough for an internal dashboard; dashboard_sku_name can pick a plan with more instances where failover matters.
  #checkov:skip=CKV_AZURE_225:Zone redundancy needs Premium v3 workers with three instances, out of proportion for an internal read-only dashboard.
  count               = local.dashboard_count
  name                = local.dashboard_names.service_plan
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  os_type             = "Linux"
  sku_name            = var.dashboard_sku_name
  tags                = local.tags
}

resource "azurerm_linux_web_app" "dashboard" {
  #checkov:skip=CKV_AZURE_222:Public network access is on so that signed-in users reach it from their browsers; App Service authentication rejects every request without an Entra sign-in.
  #checkov:skip=CKV_AZURE_17:Client certificates are not how users sign in: App Service authentication requires an Entra sign-in on every request.
  #checkov:skip=CKV_AZURE_88:The app keeps no files: Streamlit serves pages from the warehouse, so there is no content share to mount Azure Files for.
  #checkov:skip=CKV_AZURE_13:Authentication is configured with auth_settings_v2 (Entra sign-in required), which this older check does not read.
  count               = local.dashboard_count
  name                = local.dashboard_names.web_app
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  service_plan_id     = azurerm_service_plan.dashboard[0].id

  https_only                                     = true
  public_network_access_enabled                  = true
  client_certificate_enabled                     = false
  ftp_publish_basic_authentication_enabled       = false
  webdeploy_publish_basic_authentication_enabled = false
  virtual_network_subnet_id                      = var.dashboard_subnet_id

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.dashboard[0].id]
  }

  site_config {
    always_on                               = true
    app_command_line                        = local.dashboard_command
    ftps_state                              = "Disabled"
    health_check_path                       = "/_stcore/health"
    health_check_eviction_time_in_min       = 5
    http2_enabled                           = true
    minimum_tls_version                     = "1.2"
    scm_minimum_tls_version                 = "1.2"
    remote_debugging_enabled                = false
    websockets_enabled                      = true # Streamlit talks to the browser over a websocket
    container_registry_use_managed_identity = true

    application_stack {
      python_version = "3.11"
    }
  }

  # Every request must carry an Entra sign-in (App Service authentication, "Easy Auth").
  auth_settings_v2 {
    auth_enabled           = true
    require_authentication = true
    require_https          = true
    unauthenticated_action = "RedirectToLoginPage"
    default_provider       = "azureactivedirectory"

    active_directory_v2 {
      client_id            = var.dashboard_entra_client_id
      tenant_auth_endpoint = "https://login.microsoftonline.com/${data.azurerm_client_config.current.tenant_id}/v2.0"
      allowed_audiences    = ["api://${var.dashboard_entra_client_id}"]
    }

    login {
      token_store_enabled = true
    }
  }

  logs {
    detailed_error_messages = true
    failed_request_tracing  = true

    http_logs {
      file_system {
        retention_in_days = 7
        retention_in_mb   = 35
      }
    }
  }

  app_settings = {
    # No password: the identity's Entra token is the password (shared.dashboard.sources.connect).
    "WAREHOUSE_DB_URL" = "host=${azurerm_postgresql_flexible_server.warehouse.fqdn} port=5432 dbname=${azurerm_postgresql_flexible_server_database.warehouse.name} user=${local.dashboard_warehouse_role} sslmode=require"
    "AZURE_CLIENT_ID"  = azurerm_user_assigned_identity.dashboard[0].client_id

    "LAKE_STORAGE__blobServiceUri"  = azurerm_storage_account.lake.primary_blob_endpoint
    "LAKE_STORAGE__queueServiceUri" = azurerm_storage_account.lake.primary_queue_endpoint
    "LAKE_STORAGE__credential"      = "managedidentity"
    "LAKE_STORAGE__clientId"        = azurerm_user_assigned_identity.dashboard[0].client_id
    "RAW_CONTAINER"                 = local.raw_container
    "CURATED_CONTAINER"             = local.curated_container

    "WEBSITES_PORT"                  = tostring(local.dashboard_port)
    "SCM_DO_BUILD_DURING_DEPLOYMENT" = "true"
    # Streamlit must not phone home (also set on the command line).
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS"      = "false"
    "APPLICATIONINSIGHTS_CONNECTION_STRING"     = azurerm_application_insights.main.connection_string
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" = "ClientId=${azurerm_user_assigned_identity.dashboard[0].client_id};Authorization=AAD"
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.dashboard_entra_client_id != null
      error_message = "dashboard_entra_client_id (the Entra app registration users sign in with) is required when dashboard_enabled is true."
    }
  }
}

# The dashboard reads the lake's run manifests and quarantine records, nothing else.
resource "azurerm_role_assignment" "dashboard_lake_blob" {
  count                = local.dashboard_count
  scope                = azurerm_storage_account.lake.id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = azurerm_user_assigned_identity.dashboard[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "totes dashboard reads raw/_runs and curated/_quarantine for backlog and quarantines"
}

resource "azurerm_role_assignment" "dashboard_app_insights" {
  count                = local.dashboard_count
  scope                = azurerm_application_insights.main.id
  role_definition_name = "Monitoring Metrics Publisher"
  principal_id         = azurerm_user_assigned_identity.dashboard[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Entra-authenticated telemetry ingestion from the dashboard"
}

resource "azurerm_monitor_diagnostic_setting" "dashboard" {
  count                      = local.dashboard_count
  name                       = "logs-to-workspace"
  target_resource_id         = azurerm_linux_web_app.dashboard[0].id
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_log {
    category = "AppServiceHTTPLogs"
  }

  enabled_log {
    category = "AppServiceConsoleLogs"
  }

  enabled_log {
    category = "AppServiceAuthenticationLogs"
  }
}
