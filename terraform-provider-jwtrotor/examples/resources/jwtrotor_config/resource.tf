resource "jwtrotor_config" "this" {
  issuer       = "https://vault.example.com/v1/jwt"
  jwks_max_age = "15m"
  verifiers    = ["gateway", "billing"]
}
