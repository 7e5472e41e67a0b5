# publisher-admin: manages the publishers of the jwt-rotor mount at jwt/,
# the buckets and WebDAV servers that are to hold copies of the JWKS for
# verifiers that cannot reach Vault (docs/publishing.md): creates, changes,
# reads, lists and deletes them, with their credentials, which it can write
# but never read back.
#
#   vault policy write jwt-publisher-admin policies/publisher-admin.hcl
#
# It cannot write jwt/config: a publisher without credentials of its own
# needs publishers_allow_ambient_credentials=true there, which lends the
# publisher Vault's own environment and cloud identity, so only a config
# writer may allow it. Nor can it sign, or change rings and roles.
#
# For another mount path, change "jwt/" below.

# vault list jwt/publishers
path "jwt/publishers/" {
  capabilities = ["list"]
}

# Publishers: create (a new name), update (an existing one), read, delete.
path "jwt/publishers/+" {
  capabilities = ["create", "read", "update", "delete"]
}

# public_url publishes the discovery document when it is the issuer plus /.
path "jwt/config" {
  capabilities = ["read"]
}

# ring names one of these.
path "jwt/keys/" {
  capabilities = ["list"]
}
