provider "azurerm" {
  subscription_id = var.subscription_id

  # Shared keys are off on every storage account, so the provider talks to storage with Entra ID only.
  storage_use_azuread = true

  features {
    storage {
      # Containers, queues and lifecycle rules are created through Azure Resource Manager
      # (storage_account_id), so no data-plane call needs a network path or a data role.
      data_plane_available = false
    }
    key_vault {
      # Purge protection is on: a destroyed vault stays recoverable for its retention period.
      purge_soft_delete_on_destroy    = false
      recover_soft_deleted_key_vaults = true
    }
    resource_group {
      prevent_deletion_if_contains_resources = true
    }
  }
}
