module github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver

go 1.26.0

toolchain go1.26.10
