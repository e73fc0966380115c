# The lake (ADLS Gen2) and the Functions host account. Both accept Entra ID only: no shared key,
# no anonymous access, TLS 1.2+. Containers and queues are ARM child resources (storage_account_id).

resource "azurerm_storage_account" "lake" {
  name                     = local.names.lake_storage
  resource_group_name      = azurerm_resource_group.main.name
  location                 = azurerm_resource_group.main.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = var.lake_replication_type
  access_tier              = "Hot"

  is_hns_enabled                    = true
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  infrastructure_encryption_enabled = true
  cross_tenant_replication_enabled  = false
  local_user_enabled                = false
  sftp_enabled                      = false
  # The Flex Consumption app (without VNet integration) and Event Grid reach the lake over its
  # public endpoint; access is by Entra ID and role assignment only.
  public_network_access_enabled = true

  sas_policy {
    expiration_period = "00.01:00:00"
    expiration_action = "Log"
  }

  blob_properties {
    delete_retention_policy {
      days = var.blob_soft_delete_days
    }
    container_delete_retention_policy {
      days = var.blob_soft_delete_days
    }
  }

  tags = local.tags
}

resource "azurerm_storage_container" "raw" {
  name                  = local.raw_container
  storage_account_id    = azurerm_storage_account.lake.id
  container_access_type = "private"
}

resource "azurerm_storage_container" "curated" {
  name                  = local.curated_container
  storage_account_id    = azurerm_storage_account.lake.id
  container_access_type = "private"
}

resource "azurerm_storage_queue" "load_jobs" {
  name               = local.load_queue
  storage_account_id = azurerm_storage_account.lake.id
}

resource "azurerm_storage_queue" "load_jobs_poison" {
  name               = local.load_poison_queue
  storage_account_id = azurerm_storage_account.lake.id
}

# Raw blobs are immutable and read again only for replays and backfills: move them to cool.
resource "azurerm_storage_management_policy" "lake" {
  storage_account_id = azurerm_storage_account.lake.id

  rule {
    name    = "raw-to-cool"
    enabled = true

    filters {
      blob_types   = ["blockBlob"]
      prefix_match = ["${local.raw_container}/"]
    }

    actions {
      base_blob {
        tier_to_cool_after_days_since_modification_greater_than = var.raw_cool_after_days
      }
    }
  }
}

# Queue writes go to Log Analytics: the poison-queue alert looks for PutMessage on load-jobs-poison.
resource "azurerm_monitor_diagnostic_setting" "lake_queues" {
  name                       = "queue-logs-to-workspace"
  target_resource_id         = "${azurerm_storage_account.lake.id}/queueServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_log {
    category = "StorageWrite"
  }

  enabled_log {
    category = "StorageDelete"
  }
}

resource "azurerm_monitor_diagnostic_setting" "lake_blobs" {
  name                       = "blob-logs-to-workspace"
  target_resource_id         = "${azurerm_storage_account.lake.id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_log {
    category = "StorageWrite"
  }

  enabled_log {
    category = "StorageDelete"
  }
}

# Functions host storage (AzureWebJobsStorage: leases, timer state, blob receipts) and the
# Flex Consumption deployment package container.
resource "azurerm_storage_account" "host" {
  name                     = local.names.host_storage
  resource_group_name      = azurerm_resource_group.main.name
  location                 = azurerm_resource_group.main.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = "LRS"

  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  infrastructure_encryption_enabled = true
  cross_tenant_replication_enabled  = false
  local_user_enabled                = false
  public_network_access_enabled     = true

  sas_policy {
    expiration_period = "00.01:00:00"
    expiration_action = "Log"
  }

  blob_properties {
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }

  tags = local.tags
}

resource "azurerm_storage_container" "deployment" {
  name                  = local.deploy_container
  storage_account_id    = azurerm_storage_account.host.id
  container_access_type = "private"
}
