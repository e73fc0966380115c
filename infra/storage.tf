# The lake (ADLS Gen2) and the Functions host account. Both accept Entra ID only: no shared key,
# no anonymous access, TLS 1.2+. Containers and queues are ARM child resources (storage_account_id).

resource "azurerm_storage_account" "lake" {
  #checkov:skip=CKV_AZURE_59:The Flex Consumption app (no VNet integration by default) and Event Grid reach the lake over its public endpoint; shared keys and anonymous access are off, so only Entra identities holding a data role get in.
  #checkov:skip=CKV2_AZURE_33:No private endpoint for the same reason; a VNet-integrated deployment can add one without changing the code.
  #checkov:skip=CKV_AZURE_206:Replication is the lake_replication_type variable (ZRS by default and in prod, LRS in dev); geo-redundancy is a per-environment cost decision, and the source database remains the system of record.
  #checkov:skip=CKV_AZURE_33:Classic Storage Analytics queue logging is superseded here by the diagnostic setting lake_queues (StorageWrite/StorageDelete to Log Analytics), which the poison-queue alert queries.
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys with infrastructure (double) encryption; a customer-managed key would add a key-rotation duty without a requirement for it.
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
  #checkov:skip=CKV2_AZURE_21:Blob reads are logged by the diagnostic setting lake_blobs (StorageRead to Log Analytics); the legacy storage-insights resource this check wants needs account keys, which are disabled.
  name                  = local.raw_container
  storage_account_id    = azurerm_storage_account.lake.id
  container_access_type = "private"
}

resource "azurerm_storage_container" "curated" {
  #checkov:skip=CKV2_AZURE_21:Blob reads are logged by the diagnostic setting lake_blobs (StorageRead to Log Analytics); the legacy storage-insights resource this check wants needs account keys, which are disabled.
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
    category = "StorageRead"
  }

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
  #checkov:skip=CKV_AZURE_59:The Functions host reaches its own storage over the public endpoint (no VNet integration by default); shared keys and anonymous access are off, access is by the app's identity only.
  #checkov:skip=CKV2_AZURE_33:No private endpoint for the same reason.
  #checkov:skip=CKV_AZURE_206:Host storage holds only transient runtime state (leases, timer status, blob receipts) and the deployment package, all recreated by a deployment; LRS is enough.
  #checkov:skip=CKV_AZURE_33:Nothing of ours runs on the host account's queues; classic Storage Analytics logging would need shared keys, which are disabled.
  #checkov:skip=CKV2_AZURE_1:Runtime state only, Microsoft-managed keys with infrastructure encryption.
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
  #checkov:skip=CKV2_AZURE_21:Deployment packages only; the legacy storage-insights resource this check wants needs account keys, which are disabled.
  name                  = local.deploy_container
  storage_account_id    = azurerm_storage_account.host.id
  container_access_type = "private"
}
