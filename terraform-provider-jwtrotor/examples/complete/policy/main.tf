# The rotation policy of one mount: the provider configured by the caller
# (see ../main.tf) names the mount.

terraform {
  required_providers {
    jwtrotor = {
      source = "jwt-rotor/jwtrotor"
    }
  }
}

variable "issuer" {
  type        = string
  description = "The iss of every token: the URL verifiers reach the mount at."
}

variable "payments_generation" {
  type        = string
  default     = "1"
  description = "Change it to rotate the payments ring once more."
}

resource "jwtrotor_config" "this" {
  issuer       = var.issuer
  jwks_max_age = "5m"
  verifiers    = ["gateway"]
}

# Daily keys, each published a day before it signs and for a day after.
resource "jwtrotor_key_ring" "payments" {
  name             = "payments"
  algorithm        = "ES256"
  rotation_period  = "24h"
  publish_lead     = "24h"
  verification_ttl = "24h"

  # publish_lead must be at least twice the config's jwks_max_age.
  depends_on = [jwtrotor_config.this]
}

# Weekly RSA keys for a verifier that only speaks RS256.
resource "jwtrotor_key_ring" "legacy" {
  name             = "legacy"
  algorithm        = "RS256"
  rsa_bits         = 3072
  rotation_period  = "168h"
  publish_lead     = "48h"
  verification_ttl = "48h"

  depends_on = [jwtrotor_config.this]
}

# Roles name their ring by reference: Terraform creates the ring first and
# destroys the role first (the plugin refuses to delete a ring in use).
resource "jwtrotor_role" "payments_api" {
  name           = "payments-api"
  key            = jwtrotor_key_ring.payments.name
  audiences      = ["https://payments.example.com"]
  ttl            = "15m"
  max_ttl        = "1h"
  allowed_claims = ["scope"]
}

resource "jwtrotor_role" "legacy_batch" {
  name             = "legacy-batch"
  key              = jwtrotor_key_ring.legacy.name
  audiences        = ["https://batch.example.com"]
  subject_template = "batch-exporter"
  ttl              = "5m"
  max_ttl          = "30m"
  token_type       = "at+jwt"
}

# A new ring's first key signs after publish_lead. In a fresh environment,
# where no verifier has cached the JWKS yet, force it to sign at once; later
# generations rotate the same way, once each.
resource "jwtrotor_rotation" "payments" {
  ring     = jwtrotor_key_ring.payments.name
  force    = true
  triggers = { generation = var.payments_generation }
}

data "jwtrotor_jwks" "payments" {
  ring       = jwtrotor_key_ring.payments.name
  depends_on = [jwtrotor_rotation.payments]
}

output "payments_jwks" {
  description = "The payments ring's JWKS, for a consumer that takes an uploaded key set."
  value       = data.jwtrotor_jwks.payments.json
}

output "payments_active_kid" {
  value = jwtrotor_rotation.payments.promoted_kid
}
