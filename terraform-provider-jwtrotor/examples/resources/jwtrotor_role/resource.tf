resource "jwtrotor_role" "payments_api" {
  name           = "payments-api"
  key            = jwtrotor_key_ring.payments.name # the role is destroyed before the ring
  audiences      = ["https://payments.example.com"]
  ttl            = "15m"
  max_ttl        = "1h"
  allowed_claims = ["scope"]
  claims = jsonencode({
    tier = "gold"
  })
}
