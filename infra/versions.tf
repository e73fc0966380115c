terraform {
  # 1.11+ for write-only arguments and ephemeral resources (the warehouse password never reaches state).
  required_version = ">= 1.11.0, < 2.0.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.50"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
    time = {
      source  = "hashicorp/time"
      version = "~> 0.13"
    }
  }

  # Partial configuration: the state account comes from environments/<env>.backend.hcl plus
  # -backend-config flags in the deploy workflow (see docs/deploy.md, "Remote state").
  backend "azurerm" {}
}
