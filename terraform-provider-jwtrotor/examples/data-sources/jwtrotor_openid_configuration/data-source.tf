data "jwtrotor_openid_configuration" "this" {}

output "jwks_uri" {
  value = data.jwtrotor_openid_configuration.this.jwks_uri
}
