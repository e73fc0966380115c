# prod: zone-redundant lake, geo-redundant warehouse backups, longer retention.
# alert_email comes from the deploy workflow (TF_VAR_alert_email).
environment = "prod"
location    = "westeurope"

lake_replication_type = "ZRS"
raw_cool_after_days   = 30
blob_soft_delete_days = 30

function_maximum_instance_count = 10
function_instance_memory_mb     = 2048

warehouse_sku_name              = "GP_Standard_D2ds_v5"
warehouse_storage_mb            = 65536
warehouse_backup_retention_days = 35
warehouse_geo_redundant_backup  = true
warehouse_allow_azure_services  = true

log_retention_days = 90
