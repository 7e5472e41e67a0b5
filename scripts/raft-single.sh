#!/usr/bin/env bash
# A single Vault server with persistent integrated storage (Raft) on a
# loopback address, with the plugin registered by checksum and mounted at
# jwt/, for crash drills by hand. Unlike `make dev`, everything survives a
# restart, including a SIGKILL.
#
#   scripts/raft-single.sh start     build, start (init on first use), unseal, mount
#   scripts/raft-single.sh crash     SIGKILL Vault and its plugin process
#   scripts/raft-single.sh stop      stop Vault (SIGTERM)
#   scripts/raft-single.sh status    vault status
#   scripts/raft-single.sh destroy   stop and delete the directory
#
# A crash drill: start, create a ring (see below), crash, start again, and
# check with `bin/vault read jwt/keys/drill` that every key is still there
# and one is active, and that old tokens still verify against the JWKS.
#
# Environment: RAFT_DIR (default .raft-single), RAFT_PORT (API port, default
# 8210; the cluster port is the next one), VERSION (plugin version).
set -euo pipefail
source "$(dirname "$0")/raft-lib.sh"

DIR=${RAFT_DIR:-$ROOT/.raft-single}
PORT=${RAFT_PORT:-8210}
ADDR=http://127.0.0.1:$PORT
export VAULT_ADDR=$ADDR

case ${1:-start} in
start)
	make --no-print-directory -C "$ROOT" vault plugin VERSION="$VERSION"
	mkdir -p "$DIR"
	DIR=$(cd "$DIR" && pwd)
	raft_prepare "$DIR"
	raft_write_config "$DIR" node-1 "$PORT" $((PORT + 1))
	say "Starting Vault (Raft in $DIR/data) at $ADDR; log $DIR/vault.log"
	raft_start "$DIR" "$ADDR"
	if [[ ! -f $DIR/init.txt ]]; then
		say "Initialising (one key share, kept in $DIR/init.txt: drills only)"
		raft_init "$DIR" "$ADDR"
	fi
	raft_unseal "$DIR" "$ADDR" "$DIR"
	export VAULT_TOKEN
	VAULT_TOKEN=$(raft_field "$DIR" root_token)
	# The plugin binary may have been rebuilt: register its checksum again.
	raft_register_and_mount "$ADDR" "$ADDR"
	cat <<EOF

Vault with integrated storage is up at $ADDR.

  export VAULT_ADDR=$ADDR VAULT_TOKEN=$VAULT_TOKEN
  bin/vault write jwt/keys/drill algorithm=ES256 rotation_period=10s verification_ttl=80s
  bin/vault write jwt/keys/drill/rotate force=true
  bin/vault write jwt/roles/drill key=drill audiences=drill subject_template=drill ttl=15s max_ttl=20s
  bin/vault write -f jwt/sign/drill
  curl -s $ADDR/v1/jwt/jwks
  scripts/raft-single.sh crash && scripts/raft-single.sh start

Log: $DIR/vault.log
EOF
	;;
crash)
	say "SIGKILL to Vault and its plugin process"
	raft_crash "$DIR"
	;;
stop)
	raft_stop "$DIR"
	;;
status)
	"$VAULT" status
	;;
destroy)
	raft_stop "$DIR"
	rm -rf "$DIR"
	;;
*)
	echo "usage: $0 [start|crash|stop|status|destroy]" >&2
	exit 2
	;;
esac
