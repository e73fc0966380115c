# Names and endpoints only: no output carries a key, password or connection string.

output "resource_group_name" {
  description = "Resource group holding the whole stack."
  value       = azurerm_resource_group.main.name
}

output "function_app_name" {
  description = "Function App to deploy the package to."
  value       = azurerm_function_app_flex_consumption.main.name
}

output "function_app_hostname" {
  description = "Default host name of the Function App."
  value       = azurerm_function_app_flex_consumption.main.default_hostname
}

output "function_identity_client_id" {
  description = "Client ID of the Function App's user-assigned managed identity."
  value       = azurerm_user_assigned_identity.function.client_id
}

output "lake_storage_account_name" {
  description = "Lake storage account (ADLS Gen2)."
  value       = azurerm_storage_account.lake.name
}

output "lake_blob_endpoint" {
  description = "Blob endpoint of the lake (LAKE_STORAGE__blobServiceUri)."
  value       = azurerm_storage_account.lake.primary_blob_endpoint
}

output "key_vault_name" {
  description = "Key Vault holding totesys-db-url and warehouse-db-url."
  value       = azurerm_key_vault.main.name
}

output "key_vault_uri" {
  description = "Key Vault URI (KEY_VAULT_URL)."
  value       = azurerm_key_vault.main.vault_uri
}

output "totesys_secret_name" {
  description = "Name of the Key Vault secret an operator must set to the source database URI."
  value       = local.totesys_secret_name
}

output "warehouse_fqdn" {
  description = "Host name of the warehouse PostgreSQL server."
  value       = azurerm_postgresql_flexible_server.warehouse.fqdn
}

output "warehouse_database" {
  description = "Warehouse database name."
  value       = azurerm_postgresql_flexible_server_database.warehouse.name
}

output "application_insights_name" {
  description = "Application Insights component receiving the Function App's telemetry."
  value       = azurerm_application_insights.main.name
}

output "transform_events_enabled" {
  description = "Whether the Event Grid subscription driving transform exists."
  value       = var.transform_events_enabled
}

output "event_grid_system_topic_name" {
  description = "Event Grid system topic on the lake."
  value       = azurerm_eventgrid_system_topic.lake.name
}

output "transform_event_subscription_name" {
  description = "Event Grid subscription that delivers raw/_runs/*.json to transform (exists when transform_events_enabled)."
  value       = local.names.event_grid_subscr
}

output "dashboard_url" {
  description = "Address of the dashboard (Entra sign-in required); null when dashboard_enabled is false."
  value       = var.dashboard_enabled ? "https://${azurerm_linux_web_app.dashboard[0].default_hostname}/" : null
}

output "dashboard_warehouse_role" {
  description = "PostgreSQL role of the dashboard's identity; the warehouse's Entra admin creates it read-only (docs/deploy.md)."
  value       = var.dashboard_enabled ? local.dashboard_warehouse_role : null
}
