resource "jwtrotor_key_ring" "payments" {
  name             = "payments"
  algorithm        = "ES256"
  rotation_period  = "24h"
  publish_lead     = "24h"
  verification_ttl = "24h"
}

# A ring that can be deleted at once, for a short-lived environment.
resource "jwtrotor_key_ring" "preview" {
  name            = "preview"
  algorithm       = "EdDSA"
  rotation_period = "1h"
  force_destroy   = true
}
