# A complete configuration: the hashicorp/vault provider registers the plugin
# and enables its mount; this provider then manages the mount's config, key
# rings, roles and rotations (the policy module).
#
# The hashicorp/vault part is NOT tested by this repository (that provider
# cannot be installed where the tests run); the policy module is applied
# verbatim by the provider's acceptance tests (TestAccCompleteExample).
#
#   VAULT_ADDR=... VAULT_TOKEN=... terraform apply \
#     -var plugin_sha256=$(sha256sum /etc/vault/plugins/vault-plugin-jwt-rotor | cut -d' ' -f1)

terraform {
  required_providers {
    vault = {
      source = "hashicorp/vault"
    }
    jwtrotor = {
      source = "jwt-rotor/jwtrotor"
    }
  }
}

variable "plugin_sha256" {
  type        = string
  description = "sha256 of the plugin binary in the server's plugin directory."
}

variable "vault_public_url" {
  type        = string
  default     = "https://vault.example.com"
  description = "The URL verifiers reach Vault at; the issuer is <this>/v1/<mount>."
}

provider "vault" {}

resource "vault_plugin" "jwt_rotor" {
  type    = "secret"
  name    = "vault-plugin-jwt-rotor"
  command = "vault-plugin-jwt-rotor"
  version = "v0.1.0"
  sha256  = var.plugin_sha256
}

resource "vault_mount" "jwt" {
  path           = "jwt"
  type           = vault_plugin.jwt_rotor.name
  plugin_version = vault_plugin.jwt_rotor.version

  # The JWKS caching headers pass through Vault only with this tuning.
  allowed_response_headers    = ["ETag", "Last-Modified"]
  passthrough_request_headers = ["If-None-Match", "User-Agent"]
}

# The provider's settings depend on the mount, so every jwtrotor resource is
# created after it and destroyed before it.
provider "jwtrotor" {
  mount = vault_mount.jwt.path
}

module "policy" {
  source = "./policy"
  issuer = "${var.vault_public_url}/v1/${vault_mount.jwt.path}"
}

output "payments_jwks" {
  value = module.policy.payments_jwks
}
