# Remote state of dev. The state account itself is passed by the deploy workflow
# (-backend-config=storage_account_name=... and resource_group_name=..., see docs/deploy.md).
container_name   = "tfstate"
key              = "totes/dev.tfstate"
use_azuread_auth = true
