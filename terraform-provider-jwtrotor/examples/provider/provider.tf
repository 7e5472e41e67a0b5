terraform {
  required_providers {
    jwtrotor = {
      source = "jwt-rotor/jwtrotor"
    }
  }
}

# Address and token fall back to VAULT_ADDR and VAULT_TOKEN, the namespace to
# VAULT_NAMESPACE. One provider block manages one mount; use an alias per
# mount.
provider "jwtrotor" {
  mount = "jwt"
}
