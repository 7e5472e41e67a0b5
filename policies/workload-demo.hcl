# workload-demo: may mint tokens under role "demo" of the jwt-rotor mount at
# jwt/ by reading jwt/token/demo, as a Vault Agent or Vault Proxy template
# does, and nothing else. Read on token/<role> means "may mint": it works
# only for roles with allow_token_read=true, and each read issues a new
# token. Never grant read on jwt/* or jwt/token/* to a caller that must not
# mint. Attach it to the identity the workload's Agent logs in with (an
# approle, a Kubernetes service account role...); the default subject is
# that login's Vault entity. See docs/workloads.md.
#
#   vault policy write jwt-workload-demo policies/workload-demo.hcl
#
# For another mount path or role, change "jwt/" and "demo" below.

path "jwt/token/demo" {
  capabilities = ["read"]
}
