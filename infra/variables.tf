# Inputs of the totes stack. Non-secret values live in environments/<env>.tfvars; nothing here is a
# secret: database credentials are generated (ephemeral) or set in Key Vault by an operator.

variable "environment" {
  description = "Deployment environment; it names every resource (<abbreviation>-totes-<environment>)."
  type        = string

  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be \"dev\" or \"prod\"."
  }
}

variable "subscription_id" {
  description = "Azure subscription to deploy into. Null uses ARM_SUBSCRIPTION_ID from the environment (the deploy workflow sets it)."
  type        = string
  default     = null

  validation {
    condition     = var.subscription_id == null || can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", var.subscription_id))
    error_message = "subscription_id must be a GUID or null."
  }
}

variable "location" {
  description = "Azure region for every resource. It must offer the Flex Consumption plan and PostgreSQL flexible server."
  type        = string
  default     = "westeurope"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]+$", var.location))
    error_message = "location must be a region name such as \"westeurope\" (lower case, no spaces)."
  }
}

variable "name_suffix" {
  description = "Optional suffix (up to 6 lower-case letters or digits) appended to globally unique names (storage accounts, Key Vault, Function App, PostgreSQL server) when the plain names are taken."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[a-z0-9]{0,6}$", var.name_suffix))
    error_message = "name_suffix must be 0-6 lower-case letters or digits."
  }
}

variable "tags" {
  description = "Extra tags for every resource (merged over project, environment and managed-by)."
  type        = map(string)
  default     = {}
}

variable "alert_email" {
  description = "Email address that receives every alert (failed executions, poison messages, quarantined rows, stale warehouse). The deploy workflow passes it from the ALERT_EMAIL variable so it is not committed."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alert_email))
    error_message = "alert_email must be an email address."
  }
}

# ---------------------------------------------------------------------------------------------
# Lake
# ---------------------------------------------------------------------------------------------

variable "lake_replication_type" {
  description = "Replication of the lake storage account (LRS, ZRS, GRS, RAGRS, GZRS, RAGZRS)."
  type        = string
  default     = "ZRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.lake_replication_type)
    error_message = "lake_replication_type must be one of LRS, ZRS, GRS, RAGRS, GZRS, RAGZRS."
  }
}

variable "raw_cool_after_days" {
  description = "Days after its last modification when a raw blob moves to the cool tier (raw blobs are written once and rarely re-read)."
  type        = number
  default     = 30

  validation {
    condition     = var.raw_cool_after_days >= 1 && var.raw_cool_after_days <= 3650 && floor(var.raw_cool_after_days) == var.raw_cool_after_days
    error_message = "raw_cool_after_days must be a whole number of days between 1 and 3650."
  }
}

variable "blob_soft_delete_days" {
  description = "Days a deleted blob or container in the lake stays recoverable."
  type        = number
  default     = 14

  validation {
    condition     = var.blob_soft_delete_days >= 1 && var.blob_soft_delete_days <= 365
    error_message = "blob_soft_delete_days must be between 1 and 365."
  }
}

# ---------------------------------------------------------------------------------------------
# Function App
# ---------------------------------------------------------------------------------------------

variable "function_maximum_instance_count" {
  description = "Upper bound on Flex Consumption instances (caps cost and concurrent warehouse connections)."
  type        = number
  default     = 10

  validation {
    condition     = var.function_maximum_instance_count >= 1 && var.function_maximum_instance_count <= 1000
    error_message = "function_maximum_instance_count must be between 1 and 1000."
  }
}

variable "function_instance_memory_mb" {
  description = "Memory of each Flex Consumption instance in MB (transform holds a run's frames in memory)."
  type        = number
  default     = 2048

  validation {
    condition     = contains([512, 2048, 4096], var.function_instance_memory_mb)
    error_message = "function_instance_memory_mb must be 512, 2048 or 4096."
  }
}

variable "function_subnet_id" {
  description = "Optional subnet (delegated to Microsoft.App/environments) for Function App virtual network integration; required when the warehouse uses private access."
  type        = string
  default     = null
}

variable "extract_schedule" {
  description = "NCRONTAB schedule of the extract timer (six fields, seconds first)."
  type        = string
  default     = "0 */5 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.extract_schedule))) == 6
    error_message = "extract_schedule must be a six-field NCRONTAB expression, e.g. \"0 */5 * * * *\"."
  }
}

variable "reconcile_schedule" {
  description = "NCRONTAB schedule of the reconcile timer (six fields, seconds first): daily at night by default."
  type        = string
  default     = "0 30 2 * * *"

  validation {
    condition     = length(split(" ", trimspace(var.reconcile_schedule))) == 6
    error_message = "reconcile_schedule must be a six-field NCRONTAB expression, e.g. \"0 30 2 * * *\"."
  }
}

variable "extract_lookback" {
  description = "How far extract re-reads behind its watermark to catch late commits: \"10m\", \"1h\", \"600\" (seconds) or \"00:10:00\"."
  type        = string
  default     = "10m"

  validation {
    condition     = can(regex("^([0-9]+[smh]?|[0-9]{2}:[0-9]{2}:[0-9]{2})$", var.extract_lookback))
    error_message = "extract_lookback must look like \"10m\", \"600\" or \"00:10:00\"."
  }
}

variable "transform_events_enabled" {
  description = "Create the Event Grid subscription that drives transform. It needs the deployed code (the blobs extension key exists only once the blob trigger is running), so the first deployment from nothing applies with false, deploys the code, then applies with true; the deploy workflow decides this itself."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Key Vault
# ---------------------------------------------------------------------------------------------

variable "key_vault_secret_officer_ids" {
  description = "Entra object IDs (users or groups) allowed to set Key Vault secrets, e.g. the operators who store totesys-db-url. The identity running Terraform is always included."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.key_vault_secret_officer_ids : can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", id))])
    error_message = "key_vault_secret_officer_ids must be object ID GUIDs."
  }
}

# ---------------------------------------------------------------------------------------------
# Warehouse (Azure Database for PostgreSQL flexible server)
# ---------------------------------------------------------------------------------------------

variable "warehouse_sku_name" {
  description = "SKU of the warehouse server, e.g. B_Standard_B1ms (burstable) or GP_Standard_D2ds_v5."
  type        = string
  default     = "B_Standard_B1ms"

  validation {
    condition     = can(regex("^(B|GP|MO)_Standard_[A-Za-z0-9_]+$", var.warehouse_sku_name))
    error_message = "warehouse_sku_name must look like B_Standard_B1ms, GP_Standard_D2ds_v5 or MO_Standard_E2ds_v5."
  }
}

variable "warehouse_storage_mb" {
  description = "Warehouse storage size in MB."
  type        = number
  default     = 32768

  validation {
    condition     = contains([32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4193280, 4194304, 8388608, 16777216, 33553408], var.warehouse_storage_mb)
    error_message = "warehouse_storage_mb must be one of the sizes PostgreSQL flexible server offers (32768, 65536, 131072, ...)."
  }
}

variable "warehouse_backup_retention_days" {
  description = "Point-in-time-restore retention of the warehouse in days."
  type        = number
  default     = 14

  validation {
    condition     = var.warehouse_backup_retention_days >= 7 && var.warehouse_backup_retention_days <= 35
    error_message = "warehouse_backup_retention_days must be between 7 and 35."
  }
}

variable "warehouse_geo_redundant_backup" {
  description = "Keep warehouse backups geo-redundant (set at creation only; changing it recreates the server)."
  type        = bool
  default     = true
}

variable "warehouse_admin_login" {
  description = "Administrator login of the warehouse server; its password is generated and written only to Key Vault."
  type        = string
  default     = "totes_admin"

  validation {
    condition = (
      can(regex("^[a-z][a-z0-9_]{0,62}$", var.warehouse_admin_login)) &&
      !startswith(var.warehouse_admin_login, "pg_") &&
      !contains(["azure_superuser", "azure_pg_admin", "admin", "administrator", "root", "guest", "public"], var.warehouse_admin_login)
    )
    error_message = "warehouse_admin_login must be lower case, start with a letter, not start with pg_ and not be a reserved name (admin, root, ...)."
  }
}

variable "warehouse_password_version" {
  description = "Version of the generated warehouse administrator password. Increase it to rotate the password (server and Key Vault secret change together)."
  type        = number
  default     = 1

  validation {
    condition     = var.warehouse_password_version >= 1 && floor(var.warehouse_password_version) == var.warehouse_password_version
    error_message = "warehouse_password_version must be a whole number >= 1."
  }
}

variable "warehouse_entra_admin" {
  description = "Optional Entra principal made administrator of the warehouse (Entra authentication is always enabled)."
  type = object({
    object_id      = string
    principal_name = string
    principal_type = string
  })
  default = null

  validation {
    condition     = var.warehouse_entra_admin == null || contains(["User", "Group", "ServicePrincipal"], try(var.warehouse_entra_admin.principal_type, ""))
    error_message = "warehouse_entra_admin.principal_type must be User, Group or ServicePrincipal."
  }
}

variable "warehouse_delegated_subnet_id" {
  description = "Subnet delegated to Microsoft.DBforPostgreSQL/flexibleServers. Set it (with warehouse_private_dns_zone_id and function_subnet_id) for private access: the server then has no public endpoint. Null means public access limited by firewall rules."
  type        = string
  default     = null
}

variable "warehouse_private_dns_zone_id" {
  description = "Private DNS zone (*.postgres.database.azure.com) linked to the virtual network; required with warehouse_delegated_subnet_id."
  type        = string
  default     = null

  validation {
    condition     = (var.warehouse_delegated_subnet_id == null) == (var.warehouse_private_dns_zone_id == null)
    error_message = "warehouse_private_dns_zone_id and warehouse_delegated_subnet_id must be set together (private access) or both left null (firewall access)."
  }
}

variable "warehouse_firewall_rules" {
  description = "Public-access firewall rules of the warehouse: name => IPv4 start/end, e.g. an office range for analysts. Ignored with private access."
  type = map(object({
    start_ip_address = string
    end_ip_address   = string
  }))
  default = {}

  validation {
    condition = alltrue(flatten([
      for rule in values(var.warehouse_firewall_rules) : [
        can(cidrhost("${rule.start_ip_address}/32", 0)),
        can(cidrhost("${rule.end_ip_address}/32", 0)),
        rule.start_ip_address != "0.0.0.0",
      ]
    ]))
    error_message = "warehouse_firewall_rules need valid IPv4 addresses; use warehouse_allow_azure_services instead of a 0.0.0.0 rule."
  }
}

variable "warehouse_allow_azure_services" {
  description = "With public access, allow connections from Azure services (the 0.0.0.0 rule). A Flex Consumption app without virtual network integration has no fixed outbound addresses, so the function needs this unless the warehouse uses private access."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Monitoring
# ---------------------------------------------------------------------------------------------

variable "log_retention_days" {
  description = "Retention of the Log Analytics workspace (and so of Application Insights) in days."
  type        = number
  default     = 30

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be between 30 and 730."
  }
}

variable "freshness_threshold_minutes" {
  description = "The stale-warehouse alert fires when the freshness lag of a loaded run (source commit to warehouse commit), or the age of a run still waiting for the transform or the load, exceeds this many minutes."
  type        = number
  default     = 30

  validation {
    condition     = var.freshness_threshold_minutes >= 10 && var.freshness_threshold_minutes <= 600
    error_message = "freshness_threshold_minutes must be between 10 and 600."
  }
}

# ---------------------------------------------------------------------------------------------
# The dashboard (infra/dashboard.tf)
# ---------------------------------------------------------------------------------------------

variable "dashboard_enabled" {
  description = "Deploy the dashboard App Service (Streamlit behind Entra sign-in). Needs dashboard_entra_client_id."
  type        = bool
  default     = false

  validation {
    condition     = var.dashboard_enabled == true || var.dashboard_enabled == false
    error_message = "dashboard_enabled must be true or false."
  }
}

variable "dashboard_entra_client_id" {
  description = "Client ID of the Entra app registration users sign in to the dashboard with (App Service authentication); its redirect URI is https://<app>/.auth/login/aad/callback."
  type        = string
  default     = null

  validation {
    condition     = var.dashboard_entra_client_id == null || can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", var.dashboard_entra_client_id))
    error_message = "dashboard_entra_client_id must be a GUID or null."
  }
}

variable "dashboard_sku_name" {
  description = "App Service plan SKU of the dashboard (Linux). B1 is enough for a handful of analysts."
  type        = string
  default     = "B1"

  validation {
    condition     = contains(["B1", "B2", "B3", "S1", "S2", "S3", "P0v3", "P1v3", "P2v3"], var.dashboard_sku_name)
    error_message = "dashboard_sku_name must be a Linux App Service SKU that supports always_on (B1..B3, S1..S3, P0v3..P2v3)."
  }
}

variable "dashboard_subnet_id" {
  description = "Optional subnet for the dashboard's VNet integration (outbound to a private warehouse); null for none."
  type        = string
  default     = null

  validation {
    condition     = var.dashboard_subnet_id == null || can(regex("/subnets/[^/]+$", var.dashboard_subnet_id))
    error_message = "dashboard_subnet_id must be a subnet resource ID or null."
  }
}
