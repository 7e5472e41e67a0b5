# signer-demo: may sign tokens under role "demo" of the jwt-rotor mount at
# jwt/, and nothing else. Attach it to the identity of a workload (an approle,
# a userpass user, a Kubernetes service account role...). Tokens get their
# default subject from the caller's Vault entity, so sign with a login token,
# not a root token.
#
#   vault policy write jwt-signer-demo policies/signer-demo.hcl
#
# For another mount path or role, change "jwt/" and "demo" below.

path "jwt/sign/demo" {
  capabilities = ["update"]
}
