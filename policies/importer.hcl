# importer: adopts an existing issuer into the jwt-rotor mount at jwt/ without
# a trust cutover (docs/migrating.md): reads the mount's wrapping key, imports
# the issuer's signing key into a new ring (vault transit import reads
# wrapping_key and writes keys/<name>/import), publishes the issuer's old
# public keys for a bounded time (keys/<name>/trust), and reads the rings.
#
#   vault policy write jwt-importer policies/importer.hcl
#
# Whoever holds it can make a key they hold sign for the mount (import), or
# have tokens signed with a key they hold verify for up to 90 days (trust).
# Grant it for a migration and revoke it after; keep it apart from
# rotation-admin, which cannot import or trust. Removing a trusted key early
# is a revocation (keys/<name>/revoke, in rotation-admin).
#
# For another mount path, change "jwt/" below.

path "jwt/wrapping_key" {
  capabilities = ["read"]
}

path "jwt/keys/+/import" {
  capabilities = ["update"]
}

path "jwt/keys/+/trust" {
  capabilities = ["update"]
}

# See what the import made: the imported key, its successor, the trusted keys.
path "jwt/keys/" {
  capabilities = ["list"]
}

path "jwt/keys/+" {
  capabilities = ["read"]
}
