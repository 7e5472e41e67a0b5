# rotation-admin: manages the key rings of the jwt-rotor mount at jwt/:
# creates, tunes and deletes rings, rotates, revokes and rolls back keys,
# and reads the mount configuration and the verifier report. It cannot sign
# tokens, change the configuration or manage roles.
#
#   vault policy write jwt-rotation-admin policies/rotation-admin.hcl
#
# For another mount path, change "jwt/" below.

# vault list jwt/keys
path "jwt/keys/" {
  capabilities = ["list"]
}

# Rings: create (a new name), update (an existing one), read, delete.
path "jwt/keys/+" {
  capabilities = ["create", "read", "update", "delete"]
}

path "jwt/keys/+/rotate" {
  capabilities = ["update"]
}

path "jwt/keys/+/revoke" {
  capabilities = ["update"]
}

path "jwt/keys/+/rollback" {
  capabilities = ["update"]
}

# jwks_max_age bounds every ring's publish_lead, so an admin needs to see it.
path "jwt/config" {
  capabilities = ["read"]
}

# Which verifiers already hold the pending key, before forcing a rotation.
path "jwt/verifiers" {
  capabilities = ["read"]
}

# The schedule clock: read it, and accept the wall clock's time after a
# held forward step (docs/invariants.md).
path "jwt/clock" {
  capabilities = ["read"]
}

path "jwt/clock/accept" {
  capabilities = ["update"]
}
