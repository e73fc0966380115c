# dev: small and cheap. alert_email comes from the deploy workflow (TF_VAR_alert_email).
environment = "dev"
location    = "westeurope"

lake_replication_type = "LRS"
raw_cool_after_days   = 30
blob_soft_delete_days = 7

function_maximum_instance_count = 4
function_instance_memory_mb     = 2048

warehouse_sku_name              = "B_Standard_B1ms"
warehouse_storage_mb            = 32768
warehouse_backup_retention_days = 7
warehouse_geo_redundant_backup  = false
warehouse_allow_azure_services  = true

log_retention_days = 30
