data "azurerm_client_config" "current" {}

locals {
  # Azure names follow <abbreviation>-totes-<env>; storage accounts allow no dashes.
  base = "totes-${var.environment}"
  dash = var.name_suffix == "" ? "" : "-${var.name_suffix}"

  names = {
    resource_group    = "rg-${local.base}"
    identity          = "id-${local.base}"
    lake_storage      = "sttotes${var.environment}lake${var.name_suffix}"
    host_storage      = "sttotes${var.environment}func${var.name_suffix}"
    service_plan      = "asp-${local.base}"
    function_app      = "func-${local.base}${local.dash}"
    key_vault         = "kv-${local.base}${local.dash}"
    postgres          = "psql-${local.base}${local.dash}"
    log_analytics     = "log-${local.base}"
    app_insights      = "appi-${local.base}"
    action_group      = "ag-${local.base}"
    event_grid_topic  = "evgt-${local.base}-lake"
    event_grid_subscr = "evgs-${local.base}-transform"
  }

  # Contract with the code (design.md): container, queue and function names.
  raw_container      = "raw"
  curated_container  = "curated"
  load_queue         = "load-jobs"
  load_poison_queue  = "load-jobs-poison"
  deploy_container   = "app-package"
  transform_function = "transform"

  # Secret names in Key Vault. totesys-db-url is set by an operator (docs/deploy.md);
  # warehouse-admin-url is written by Terraform from the generated password (operators only).
  totesys_secret_name         = "totesys-db-url"
  warehouse_admin_secret_name = "warehouse-admin-url"

  # In the error of the load's expected retry (shared/load DIMENSIONS_PENDING): not a failure to alert on.
  marker_dimensions_pending = "dimension rows not loaded yet"

  warehouse_private = var.warehouse_delegated_subnet_id != null

  tags = merge(var.tags, {
    project     = "totes"
    environment = var.environment
    managed-by  = "terraform"
  })
}

resource "azurerm_resource_group" "main" {
  name     = local.names.resource_group
  location = var.location
  tags     = local.tags
}

# One user-assigned identity for the Function App: host storage, lake, Key Vault references,
# Application Insights ingestion. Its client ID is known before the app exists, so the
# identity-based connection settings can name it.
resource "azurerm_user_assigned_identity" "function" {
  name                = local.names.identity
  location            = azurerm_resource_group.main.location
  resource_group_name = azurerm_resource_group.main.name
  tags                = local.tags
}
