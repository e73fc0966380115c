# Remote state of prod. The state account itself is passed by the deploy workflow
# (-backend-config=storage_account_name=... and resource_group_name=..., see docs/deploy.md).
container_name   = "tfstate"
key              = "totes/prod.tfstate"
use_azuread_auth = true
