resource "azurerm_service_plan" "main" {
  #checkov:skip=CKV_AZURE_212:FC1 (Flex Consumption) has no fixed workers to keep for failover: the platform scales instances from zero per function.
  #checkov:skip=CKV_AZURE_225:Zone balancing of dedicated workers does not apply to the FC1 serverless plan.
  name                = local.names.service_plan
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = local.tags
}

locals {
  identity_client_id = azurerm_user_assigned_identity.function.client_id

  # Settings the code reads (design.md "Settings"). The storage connections are identity-based:
  # <connection>__<service>Uri + credential=managedidentity + the user-assigned identity's client ID.
  app_settings = {
    # Blank on purpose: the provider would otherwise write a key-based value, and the host must
    # use the AzureWebJobsStorage__* identity settings below.
    "AzureWebJobsStorage"                  = ""
    "AzureWebJobsStorage__blobServiceUri"  = azurerm_storage_account.host.primary_blob_endpoint
    "AzureWebJobsStorage__queueServiceUri" = azurerm_storage_account.host.primary_queue_endpoint
    "AzureWebJobsStorage__tableServiceUri" = azurerm_storage_account.host.primary_table_endpoint
    "AzureWebJobsStorage__credential"      = "managedidentity"
    "AzureWebJobsStorage__clientId"        = local.identity_client_id

    "LAKE_STORAGE__blobServiceUri"  = azurerm_storage_account.lake.primary_blob_endpoint
    "LAKE_STORAGE__queueServiceUri" = azurerm_storage_account.lake.primary_queue_endpoint
    "LAKE_STORAGE__credential"      = "managedidentity"
    "LAKE_STORAGE__clientId"        = local.identity_client_id

    # A Key Vault reference, resolved by the platform with the user-assigned identity
    # (key_vault_reference_identity_id). Versionless, so a rotated secret is picked up.
    "TOTESYS_DB_URL" = "@Microsoft.KeyVault(SecretUri=${azurerm_key_vault.main.vault_uri}secrets/${local.totesys_secret_name})"
    # No secret: the load signs in as the PostgreSQL role mapped to the identity (warehouse.tf) with an
    # Entra token from DefaultAzureCredential (AZURE_CLIENT_ID below) as the password.
    "WAREHOUSE_DB_URL" = local.warehouse_entra_url
    "WAREHOUSE_AUTH"   = "entra"

    "RAW_CONTAINER"            = local.raw_container
    "CURATED_CONTAINER"        = local.curated_container
    "LOAD_QUEUE"               = local.load_queue
    "EXTRACT_SCHEDULE"         = var.extract_schedule
    "EXTRACT_LOOKBACK"         = var.extract_lookback
    "RECONCILE_SCHEDULE"       = var.reconcile_schedule
    "KEY_VAULT_URL"            = azurerm_key_vault.main.vault_uri
    "TRANSFORM_TRIGGER_SOURCE" = "EventGrid"

    # DefaultAzureCredential in the package picks the user-assigned identity.
    "AZURE_CLIENT_ID" = local.identity_client_id
    # Telemetry is sent with Entra ID (local authentication is off on Application Insights).
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" = "ClientId=${local.identity_client_id};Authorization=AAD"
  }
}

resource "azurerm_function_app_flex_consumption" "main" {
  name                = local.names.function_app
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  service_plan_id     = azurerm_service_plan.main.id

  runtime_name           = "python"
  runtime_version        = "3.11"
  maximum_instance_count = var.function_maximum_instance_count
  instance_memory_in_mb  = var.function_instance_memory_mb

  storage_container_type            = "blobContainer"
  storage_container_endpoint        = "${azurerm_storage_account.host.primary_blob_endpoint}${azurerm_storage_container.deployment.name}"
  storage_authentication_type       = "UserAssignedIdentity"
  storage_user_assigned_identity_id = azurerm_user_assigned_identity.function.id

  https_only                                     = true
  public_network_access_enabled                  = true
  webdeploy_publish_basic_authentication_enabled = false
  client_certificate_enabled                     = false
  virtual_network_subnet_id                      = var.function_subnet_id

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.function.id]
  }
  key_vault_reference_identity_id = azurerm_user_assigned_identity.function.id

  site_config {
    application_insights_connection_string = azurerm_application_insights.main.connection_string
    minimum_tls_version                    = "1.2"
    scm_minimum_tls_version                = "1.2"
    http2_enabled                          = true
    remote_debugging_enabled               = false
  }

  app_settings = local.app_settings

  tags = local.tags

  # The identity must hold its data roles before the host starts, or the first start fails to
  # reach its storage and Key Vault references stay unresolved.
  depends_on = [
    azurerm_role_assignment.function_host_blob,
    azurerm_role_assignment.function_host_queue,
    azurerm_role_assignment.function_host_table,
    azurerm_role_assignment.function_key_vault_secrets,
    azurerm_postgresql_flexible_server_active_directory_administrator.function,
    time_sleep.function_roles,
  ]
}

# ---------------------------------------------------------------------------------------------
# Role assignments of the function identity, each scoped to the one resource it needs.
# ---------------------------------------------------------------------------------------------

resource "azurerm_role_assignment" "function_lake_blob" {
  scope                = azurerm_storage_account.lake.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
  description          = "totes functions read and write the raw and curated containers"
}

resource "azurerm_role_assignment" "function_lake_queue" {
  scope                = azurerm_storage_account.lake.id
  role_definition_name = "Storage Queue Data Contributor"
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
  description          = "transform enqueues load jobs; load dequeues them and the host moves poison messages"
}

resource "azurerm_role_assignment" "function_host_blob" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Functions host storage: leases, timer state, blob receipts, deployment package"
}

resource "azurerm_role_assignment" "function_host_queue" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Queue Data Contributor"
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Functions host storage: blob trigger bookkeeping queues"
}

resource "azurerm_role_assignment" "function_host_table" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Table Data Contributor"
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Functions host storage: diagnostic events table"
}

resource "azurerm_role_assignment" "function_app_insights" {
  scope                = azurerm_application_insights.main.id
  role_definition_name = "Monitoring Metrics Publisher"
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Entra-authenticated telemetry ingestion"
}

# Role assignments take a minute or two to reach the data plane.
resource "time_sleep" "function_roles" {
  create_duration = "90s"

  triggers = {
    lake_blob  = azurerm_role_assignment.function_lake_blob.id
    lake_queue = azurerm_role_assignment.function_lake_queue.id
    host_blob  = azurerm_role_assignment.function_host_blob.id
    key_vault  = azurerm_role_assignment.function_key_vault_secrets.id
  }
}
