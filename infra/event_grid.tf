# Event Grid drives transform's blob trigger (Flex Consumption supports only the Event Grid
# source): a system topic on the lake, filtered to committed manifests raw/_runs/*.json,
# delivering to the Functions blobs extension webhook of the "transform" function.

resource "azurerm_eventgrid_system_topic" "lake" {
  name                = local.names.event_grid_topic
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  source_resource_id  = azurerm_storage_account.lake.id
  topic_type          = "Microsoft.Storage.StorageAccounts"
  tags                = local.tags
}

# The blobs extension system key exists only once the deployed code's blob trigger has started,
# hence transform_events_enabled (the deploy workflow applies with false on a first deployment).
data "azurerm_function_app_host_keys" "main" {
  count               = var.transform_events_enabled ? 1 : 0
  name                = azurerm_function_app_flex_consumption.main.name
  resource_group_name = azurerm_resource_group.main.name
}

resource "azurerm_eventgrid_system_topic_event_subscription" "transform" {
  count               = var.transform_events_enabled ? 1 : 0
  name                = local.names.event_grid_subscr
  system_topic        = azurerm_eventgrid_system_topic.lake.name
  resource_group_name = azurerm_resource_group.main.name

  event_delivery_schema = "EventGridSchema"
  included_event_types  = ["Microsoft.Storage.BlobCreated"]

  subject_filter {
    subject_begins_with = "/blobServices/default/containers/${local.raw_container}/blobs/_runs/"
    subject_ends_with   = ".json"
    case_sensitive      = true
  }

  advanced_filter {
    # Only a committed blob: not the empty file an ADLS "create" makes before its flush.
    string_in {
      key    = "data.api"
      values = ["PutBlob", "PutBlockList", "FlushWithClose", "CopyBlob"]
    }
  }

  webhook_endpoint {
    url                               = "https://${azurerm_function_app_flex_consumption.main.default_hostname}/runtime/webhooks/blobs?functionName=Host.Functions.${local.transform_function}&code=${data.azurerm_function_app_host_keys.main[0].blobs_extension_key}"
    max_events_per_batch              = 1
    preferred_batch_size_in_kilobytes = 64
  }

  retry_policy {
    max_delivery_attempts = 30
    event_time_to_live    = 1440
  }
}
