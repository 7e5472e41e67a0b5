#!/usr/bin/env bash
# Starts a local Vault dev server with the plugin registered (by checksum and
# version), mounted at jwt/ and tuned for the JWKS caching headers, then
# creates a demo ring and role, a userpass user that may sign on the demo role
# and on the README's payments-api role, and signs a token as that user.
# Its issuer is the server's own URL, so OIDC discovery resolves locally.
#
# The dev server keeps everything in memory: each start is a fresh Vault.
# Stop it with `make dev-stop` (scripts/dev-stop.sh).
#
# Environment: VERSION (plugin version, default scripts/version.sh), DEV_DIR (pid and
# log directory, default .dev), DEV_LISTEN_ADDRESS
# (default 127.0.0.1:8200). The exports that point a shell at the server are
# printed at the end and written to $DEV_DIR/env (`. .dev/env`).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

VERSION=${VERSION:-$("$ROOT/scripts/version.sh")}
PLUGIN=vault-plugin-jwt-rotor
# make plugin names the file after the version (the Makefile's PLUGIN_BIN).
PLUGIN_FILE=${PLUGIN}_$VERSION
LISTEN=${DEV_LISTEN_ADDRESS:-127.0.0.1:8200}
DEV_DIR=${DEV_DIR:-$ROOT/.dev}
PID_FILE=$DEV_DIR/vault.pid
LOG_FILE=$DEV_DIR/vault.log
VAULT=$ROOT/bin/vault
PLUGIN_DIR=$ROOT/bin/plugins

export VAULT_ADDR=http://$LISTEN
export VAULT_TOKEN=root
unset VAULT_NAMESPACE

say() { printf '==> %s\n' "$*"; }

# Build Vault (only if missing) and the plugin, through the Makefile so that
# there is one definition of each build.
make --no-print-directory -C "$ROOT" vault plugin VERSION="$VERSION"

mkdir -p "$DEV_DIR"

if [[ -f $PID_FILE ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
	say "A dev server from this checkout is already running (pid $(cat "$PID_FILE")); restarting it for a clean state and the fresh plugin build."
	"$ROOT/scripts/dev-stop.sh"
fi
if "$VAULT" status >/dev/null 2>&1; then
	echo "Something else already answers at $VAULT_ADDR (no pid file from this checkout)." >&2
	echo "Stop it, or choose another address: DEV_LISTEN_ADDRESS=127.0.0.1:8300 make dev" >&2
	exit 1
fi

say "Starting Vault dev server at $VAULT_ADDR (log: $LOG_FILE)"
# -dev-plugin-init=false: do not auto-register everything in the plugin
# directory; the plugin is registered below by checksum and version, the way
# an operator does it. setsid detaches the server from this shell's signals.
setsid "$VAULT" server -dev \
	-dev-root-token-id=root \
	-dev-listen-address="$LISTEN" \
	-dev-plugin-dir="$PLUGIN_DIR" \
	-dev-plugin-init=false \
	-dev-no-store-token \
	>"$LOG_FILE" 2>&1 </dev/null &
echo $! >"$PID_FILE"

for _ in $(seq 1 150); do
	if "$VAULT" status >/dev/null 2>&1; then
		break
	fi
	if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
		echo "Vault exited during start; last lines of $LOG_FILE:" >&2
		tail -n 30 "$LOG_FILE" >&2
		rm -f "$PID_FILE"
		exit 1
	fi
	sleep 0.2
done
if ! "$VAULT" status >/dev/null 2>&1; then
	echo "Vault did not become healthy in 30s; see $LOG_FILE" >&2
	exit 1
fi

SHA=$(sha256sum "$PLUGIN_DIR/$PLUGIN_FILE" | cut -d' ' -f1)
say "Registering $PLUGIN $VERSION (file $PLUGIN_FILE, sha256 $SHA)"
"$VAULT" plugin register -sha256="$SHA" -version="$VERSION" -command="$PLUGIN_FILE" secret "$PLUGIN"
"$VAULT" secrets enable -path=jwt -plugin-version="$VERSION" "$PLUGIN"
# Without this tuning Vault drops ETag/Last-Modified from responses and
# If-None-Match/User-Agent from requests, and conditional JWKS fetches stop
# working.
"$VAULT" secrets tune \
	-allowed-response-headers=ETag -allowed-response-headers=Last-Modified \
	-passthrough-request-headers=If-None-Match -passthrough-request-headers=User-Agent \
	jwt/

say "Configuring the issuer, a demo ring and a role"
"$VAULT" write jwt/config issuer="$VAULT_ADDR/v1/jwt" jwks_max_age=60
# publish_lead=1h lets jwt/config take a jwks_max_age up to 30m (a lead must
# be at least 2 x jwks_max_age), so the README's and docs/terraform.md's
# settings apply on this server as written.
"$VAULT" write jwt/keys/demo algorithm=ES256 rotation_period=1h publish_lead=1h verification_ttl=2h
# A new ring's first key waits publish_lead before it signs; force skips the
# wait for the demo (the response carries a warning saying so).
"$VAULT" write jwt/keys/demo/rotate force=true
"$VAULT" write jwt/roles/demo key=demo audiences=https://api.example.com \
	ttl=15m max_ttl=1h subject_template='{{identity.entity.id}}' allowed_claims=scope

say "Creating userpass user demo (password demo), allowed to sign on the roles demo and payments-api"
"$VAULT" auth enable userpass >/dev/null
# The README's usage creates the role payments-api; the policy names it
# already so that its sign example works as written.
"$VAULT" policy write jwt-dev-signer - >/dev/null <<'POLICY'
path "jwt/sign/demo" {
  capabilities = ["update"]
}
path "jwt/sign/payments-api" {
  capabilities = ["update"]
}
path "jwt/token/demo" {
  capabilities = ["read"]
}
path "jwt/token/payments-api" {
  capabilities = ["read"]
}
POLICY
"$VAULT" write auth/userpass/users/demo password=demo token_policies=jwt-dev-signer >/dev/null
USER_TOKEN=$("$VAULT" login -no-store -token-only -method=userpass username=demo password=demo)

TOKEN=$(VAULT_TOKEN=$USER_TOKEN "$VAULT" write -field=token jwt/sign/demo claims='{"scope":"read"}')

STOP_HINT=
if [[ $DEV_DIR != "$ROOT/.dev" ]]; then
	STOP_HINT=" DEV_DIR=$DEV_DIR"
fi
ENV_LINE="export PATH=\"$ROOT/bin:\$PATH\" VAULT_ADDR=$VAULT_ADDR VAULT_TOKEN=root"
printf '%s\n' "$ENV_LINE" >"$DEV_DIR/env"

cat <<EOF

A token signed by jwt/sign/demo as user demo:

$TOKEN

JWKS (no token needed):  $VAULT_ADDR/v1/jwt/jwks
OIDC discovery:          $VAULT_ADDR/v1/jwt/.well-known/openid-configuration
Issuer:                  $VAULT_ADDR/v1/jwt

Next, in your shell: put bin/vault on the PATH and point it at this server as
root (the same line is in $DEV_DIR/env, so \`. $DEV_DIR/env\` does it too):

  $ENV_LINE

Then the README's usage runs as written. Signing needs a token with an entity
(root has none): log in as the user demo, which may sign on the roles demo
and payments-api:

  SIGNER_TOKEN=\$(vault login -no-store -token-only -method=userpass username=demo password=demo)
  VAULT_TOKEN=\$SIGNER_TOKEN vault write jwt/sign/demo claims='{"scope":"read"}'

More to try:
  curl -si \$VAULT_ADDR/v1/jwt/jwks                # Cache-Control, ETag
  vault read jwt/keys/demo                         # signing keys and their schedule
  vault write -f jwt/keys/demo/rotate              # schedule the pending key for the end of its lead

Server log: $LOG_FILE
Stop it with: make dev-stop$STOP_HINT
EOF
