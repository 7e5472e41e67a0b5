// Package tests holds the acceptance tests of vault-plugin-jwt-rotor. They run
// against a real Vault dev server with the plugin binary registered in its
// catalog, and check tokens with verifier libraries that share no code with
// the plugin. Build the binaries and run them with `make test` (or
// `make testacc` once ../bin/vault and ../bin/plugins exist).
package tests
