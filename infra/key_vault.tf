# Key Vault in RBAC mode with purge protection. It holds two database connection secrets;
# no secret value appears in this code, in tfvars, in outputs or in Terraform state:
# - totesys-db-url is set by an operator (docs/deploy.md) and read by the extract;
# - warehouse-admin-url (break-glass, for operators only: the Function App signs in to the warehouse
#   with an Entra token, see warehouse.tf) is written with a write-only argument from an ephemeral password.

resource "azurerm_key_vault" "main" {
  #checkov:skip=CKV_AZURE_109:Default-allow network rules: the platform resolves Key Vault references for a Flex Consumption app without VNet integration over the public endpoint, and the deploy workflow writes from GitHub-hosted runners with no fixed addresses. Access is RBAC-only.
  #checkov:skip=CKV_AZURE_189:Public network access is needed for the same reason; every data-plane call is authorised by Entra ID and RBAC.
  #checkov:skip=CKV2_AZURE_32:No private endpoint for the same reason; a VNet-integrated deployment can add one.
  name                       = local.names.key_vault
  location                   = azurerm_resource_group.main.location
  resource_group_name        = azurerm_resource_group.main.name
  tenant_id                  = data.azurerm_client_config.current.tenant_id
  sku_name                   = "standard"
  rbac_authorization_enabled = true
  purge_protection_enabled   = true
  soft_delete_retention_days = 90

  enabled_for_deployment          = false
  enabled_for_disk_encryption     = false
  enabled_for_template_deployment = false

  # The platform resolves Key Vault references for a Flex Consumption app without VNet
  # integration over the public endpoint, and the deploy workflow writes secrets from a
  # GitHub-hosted runner; access is by Entra ID and RBAC only.
  public_network_access_enabled = true

  network_acls {
    bypass         = "AzureServices"
    default_action = "Allow"
  }

  tags = local.tags
}

resource "azurerm_monitor_diagnostic_setting" "key_vault" {
  name                       = "audit-to-workspace"
  target_resource_id         = azurerm_key_vault.main.id
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_log {
    category_group = "audit"
  }
}

resource "azurerm_role_assignment" "function_key_vault_secrets" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.function.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Resolve the TOTESYS_DB_URL Key Vault reference"
}

# The identity running Terraform writes warehouse-admin-url; operators set totesys-db-url.
resource "azurerm_role_assignment" "deployer_key_vault_secrets" {
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
  description          = "Terraform writes the generated warehouse administrator secret"
}

resource "azurerm_role_assignment" "operator_key_vault_secrets" {
  for_each             = toset(var.key_vault_secret_officer_ids)
  scope                = azurerm_key_vault.main.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = each.value
  description          = "Operators set totesys-db-url"
}

resource "time_sleep" "key_vault_roles" {
  create_duration = "60s"

  triggers = {
    deployer = azurerm_role_assignment.deployer_key_vault_secrets.id
  }
}

# Generated on every run and never stored; it is sent to the server and to Key Vault only when
# warehouse_password_version changes (write-only arguments), so both always agree.
ephemeral "random_password" "warehouse_admin" {
  length           = 40
  special          = true
  override_special = "-_.~"
  min_lower        = 2
  min_upper        = 2
  min_numeric      = 2
  min_special      = 2
}

# The administrator's URI, for operators (break-glass, first-time setup); no app setting refers to it.
resource "azurerm_key_vault_secret" "warehouse_admin_url" {
  #checkov:skip=CKV_AZURE_41:An expiry date would lock operators out of the break-glass administrator login without warning; the password is rotated by raising warehouse_password_version.
  name         = local.warehouse_admin_secret_name
  key_vault_id = azurerm_key_vault.main.id
  content_type = "libpq connection URI"

  # A libpq URI: scheme postgresql, user info "login:password", the server FQDN, port 5432,
  # database warehouse, sslmode=require. The password uses URI-unreserved characters only.
  value_wo = format(
    "%s://%s@%s:5432/%s?sslmode=require",
    "postgresql",
    join(":", [var.warehouse_admin_login, ephemeral.random_password.warehouse_admin.result]),
    azurerm_postgresql_flexible_server.warehouse.fqdn,
    azurerm_postgresql_flexible_server_database.warehouse.name,
  )
  value_wo_version = var.warehouse_password_version

  tags = local.tags

  depends_on = [time_sleep.key_vault_roles]
}
