#!/usr/bin/env bash
# Starts a local Vault dev server with the plugin registered (by checksum and
# version), mounted at jwt/ and tuned for the JWKS caching headers, then
# creates a demo ring and role and signs a token as a userpass user.
#
# The dev server keeps everything in memory: each start is a fresh Vault.
# Stop it with `make dev-stop` (scripts/dev-stop.sh).
#
# Environment: VERSION (plugin version, default v0.1.0), DEV_DIR (pid and
# log directory, default .dev), DEV_LISTEN_ADDRESS
# (default 127.0.0.1:8200).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

VERSION=${VERSION:-v0.1.0}
PLUGIN=vault-plugin-jwt-rotor
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

SHA=$(sha256sum "$PLUGIN_DIR/$PLUGIN" | cut -d' ' -f1)
say "Registering $PLUGIN $VERSION (sha256 $SHA)"
"$VAULT" plugin register -sha256="$SHA" -version="$VERSION" -command="$PLUGIN" secret "$PLUGIN"
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
"$VAULT" write jwt/keys/demo algorithm=ES256 rotation_period=1h publish_lead=2m verification_ttl=2h
# A new ring's first key waits publish_lead before it signs; force skips the
# wait for the demo (the response carries a warning saying so).
"$VAULT" write jwt/keys/demo/rotate force=true
"$VAULT" write jwt/roles/demo key=demo audiences=https://api.example.com \
	ttl=15m max_ttl=1h subject_template='{{identity.entity.id}}' allowed_claims=scope

say "Creating userpass user demo (password demo) allowed to sign on jwt/sign/demo"
"$VAULT" auth enable userpass >/dev/null
"$VAULT" policy write jwt-demo-signer - >/dev/null <<'POLICY'
path "jwt/sign/demo" {
  capabilities = ["update"]
}
POLICY
"$VAULT" write auth/userpass/users/demo password=demo token_policies=jwt-demo-signer >/dev/null
# Signing as a user (not root) gives the token an entity, the default subject.
USER_TOKEN=$("$VAULT" login -no-store -token-only -method=userpass username=demo password=demo)

TOKEN=$(VAULT_TOKEN=$USER_TOKEN "$VAULT" write -field=token jwt/sign/demo claims='{"scope":"read"}')

cat <<EOF

A token signed by jwt/sign/demo as user demo:

$TOKEN

JWKS (no token needed):  $VAULT_ADDR/v1/jwt/jwks
OIDC discovery:          $VAULT_ADDR/v1/jwt/.well-known/openid-configuration

Try next (from the repository root):
  export VAULT_ADDR=$VAULT_ADDR VAULT_TOKEN=root
  curl -si \$VAULT_ADDR/v1/jwt/jwks                     # Cache-Control, ETag
  bin/vault read jwt/keys/demo                           # signing keys and their schedule
  bin/vault write -f jwt/keys/demo/rotate                # schedule the pending key for the end of its lead
  VAULT_TOKEN=$USER_TOKEN bin/vault write jwt/sign/demo claims='{"scope":"read"}'

Server log: $LOG_FILE
Stop it with: make dev-stop
EOF
