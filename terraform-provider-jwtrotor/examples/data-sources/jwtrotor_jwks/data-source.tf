# The key set of one ring, for a consumer that takes an uploaded JWKS.
data "jwtrotor_jwks" "payments" {
  ring = "payments"
}

output "payments_jwks" {
  value = data.jwtrotor_jwks.payments.json
}
