# The warehouse: Azure Database for PostgreSQL flexible server 16 with Entra authentication and
# a database named "warehouse". Network access is either private (delegated subnet, no public
# endpoint) or public limited by firewall rules; see the warehouse_* variables.

resource "azurerm_postgresql_flexible_server" "warehouse" {
  #checkov:skip=CKV2_AZURE_57:Network access is a variable: private access through a delegated subnet (warehouse_delegated_subnet_id, no public endpoint) or public access limited by firewall rules. A private endpoint is not the only private option.
  name                = local.names.postgres
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  version             = "16"
  sku_name            = var.warehouse_sku_name
  storage_mb          = var.warehouse_storage_mb
  auto_grow_enabled   = true

  backup_retention_days        = var.warehouse_backup_retention_days
  geo_redundant_backup_enabled = var.warehouse_geo_redundant_backup

  administrator_login               = var.warehouse_admin_login
  administrator_password_wo         = ephemeral.random_password.warehouse_admin.result
  administrator_password_wo_version = var.warehouse_password_version

  authentication {
    active_directory_auth_enabled = true
    password_auth_enabled         = true
    tenant_id                     = data.azurerm_client_config.current.tenant_id
  }

  public_network_access_enabled = !local.warehouse_private
  delegated_subnet_id           = var.warehouse_delegated_subnet_id
  private_dns_zone_id           = var.warehouse_private_dns_zone_id

  tags = local.tags

  lifecycle {
    # Azure picks the availability zone at creation; it is not ours to change afterwards.
    ignore_changes = [zone]
  }
}

resource "azurerm_postgresql_flexible_server_database" "warehouse" {
  name      = "warehouse"
  server_id = azurerm_postgresql_flexible_server.warehouse.id
  charset   = "UTF8"
  collation = "en_US.utf8"
}

# Server parameters that keep connections encrypted and auditable.
resource "azurerm_postgresql_flexible_server_configuration" "require_secure_transport" {
  name      = "require_secure_transport"
  server_id = azurerm_postgresql_flexible_server.warehouse.id
  value     = "on"
}

resource "azurerm_postgresql_flexible_server_configuration" "log_connections" {
  name      = "log_connections"
  server_id = azurerm_postgresql_flexible_server.warehouse.id
  value     = "on"
}

resource "azurerm_postgresql_flexible_server_configuration" "log_disconnections" {
  name      = "log_disconnections"
  server_id = azurerm_postgresql_flexible_server.warehouse.id
  value     = "on"
}

resource "azurerm_postgresql_flexible_server_configuration" "connection_throttling" {
  name      = "connection_throttle.enable"
  server_id = azurerm_postgresql_flexible_server.warehouse.id
  value     = "on"
}

resource "azurerm_postgresql_flexible_server_firewall_rule" "azure_services" {
  #checkov:skip=CKV2_AZURE_26:Only with public access and warehouse_allow_azure_services: a Flex Consumption app without VNet integration has no fixed outbound addresses. Logins still need an Entra token (or the break-glass password) over TLS; set warehouse_delegated_subnet_id and friends for private access instead.
  count            = !local.warehouse_private && var.warehouse_allow_azure_services ? 1 : 0
  name             = "allow-azure-services"
  server_id        = azurerm_postgresql_flexible_server.warehouse.id
  start_ip_address = "0.0.0.0"
  end_ip_address   = "0.0.0.0"
}

resource "azurerm_postgresql_flexible_server_firewall_rule" "allowed" {
  for_each         = local.warehouse_private ? {} : var.warehouse_firewall_rules
  name             = each.key
  server_id        = azurerm_postgresql_flexible_server.warehouse.id
  start_ip_address = each.value.start_ip_address
  end_ip_address   = each.value.end_ip_address
}

# The Function App's identity is an Entra administrator of the server: the server maps it to a PostgreSQL
# role named after the identity, which the load signs in as with an Entra token (WAREHOUSE_AUTH=entra).
# The load creates and alters the warehouse tables, so it needs the rights the administrator login had;
# the generated administrator password is not used at run time (warehouse-admin-url is break-glass).
resource "azurerm_postgresql_flexible_server_active_directory_administrator" "function" {
  server_name         = azurerm_postgresql_flexible_server.warehouse.name
  resource_group_name = azurerm_resource_group.main.name
  tenant_id           = data.azurerm_client_config.current.tenant_id
  object_id           = azurerm_user_assigned_identity.function.principal_id
  principal_name      = azurerm_user_assigned_identity.function.name
  principal_type      = "ServicePrincipal"
}

locals {
  # WAREHOUSE_DB_URL of the Function App: the mapped role, no password, TLS required.
  warehouse_entra_url = format(
    "postgresql://%s@%s:5432/%s?sslmode=require",
    azurerm_user_assigned_identity.function.name,
    azurerm_postgresql_flexible_server.warehouse.fqdn,
    azurerm_postgresql_flexible_server_database.warehouse.name,
  )
}

# An optional person or group as a further Entra administrator, for operators.
resource "azurerm_postgresql_flexible_server_active_directory_administrator" "warehouse" {
  count               = var.warehouse_entra_admin == null ? 0 : 1
  server_name         = azurerm_postgresql_flexible_server.warehouse.name
  resource_group_name = azurerm_resource_group.main.name
  tenant_id           = data.azurerm_client_config.current.tenant_id
  object_id           = var.warehouse_entra_admin.object_id
  principal_name      = var.warehouse_entra_admin.principal_name
  principal_type      = var.warehouse_entra_admin.principal_type
}

resource "azurerm_monitor_diagnostic_setting" "warehouse" {
  name                       = "logs-to-workspace"
  target_resource_id         = azurerm_postgresql_flexible_server.warehouse.id
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_log {
    category = "PostgreSQLLogs"
  }
}
