# auditor: reads everything that describes the jwt-rotor mount at jwt/
# (configuration, key rings with their keys' states and timestamps, roles,
# the verifier report) and changes nothing. It cannot sign: it has no
# path for sign/<role>, nor for token/<role>, whose read mints. Key reads
# show public metadata only; no path returns private key material.
#
#   vault policy write jwt-auditor policies/auditor.hcl
#
# The JWKS and discovery documents need no policy: they are unauthenticated.
# For another mount path, change "jwt/" below.

path "jwt/config" {
  capabilities = ["read"]
}

path "jwt/keys/" {
  capabilities = ["list"]
}

path "jwt/keys/+" {
  capabilities = ["read"]
}

path "jwt/roles/" {
  capabilities = ["list"]
}

path "jwt/roles/+" {
  capabilities = ["read"]
}

path "jwt/snapshot/+" {
  capabilities = ["read"]
}

path "jwt/verifiers" {
  capabilities = ["read"]
}

path "jwt/metrics" {
  capabilities = ["read"]
}

path "jwt/clock" {
  capabilities = ["read"]
}
