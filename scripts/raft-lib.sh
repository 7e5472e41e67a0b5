# Functions shared by scripts/raft-single.sh and scripts/raft-cluster.sh:
# Vault servers with integrated storage (Raft) on loopback addresses, each
# in its own directory (config, data, plugin directory, log, pid file).
# Sourced, not run.
#
# The unseal key and root token are written to <dir>/init.txt (mode 0600) so
# that the scripts can unseal after a restart. That is for drills on one
# machine only: in production, use several key shares held by different
# people, or auto-unseal.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=${VERSION:-$("$ROOT/scripts/version.sh")}
PLUGIN=vault-plugin-jwt-rotor
# make plugin names the file after the version (the Makefile's PLUGIN_BIN).
PLUGIN_BUILD=$ROOT/bin/plugins/${PLUGIN}_$VERSION
VAULT=$ROOT/bin/vault
unset VAULT_NAMESPACE VAULT_TOKEN

say() { printf '==> %s\n' "$*"; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# raft_prepare DIR: the directory layout and a copy of the plugin binary.
raft_prepare() {
	local dir=$1
	mkdir -p "$dir/data" "$dir/plugins"
	cp "$PLUGIN_BUILD" "$dir/plugins/$PLUGIN.new"
	mv -f "$dir/plugins/$PLUGIN.new" "$dir/plugins/$PLUGIN"
}

# raft_write_config DIR NODE_ID API_PORT CLUSTER_PORT [JOIN_ADDR ...]: the
# node's configuration from scripts/raft-node.hcl, which the acceptance
# tests fill in too.
raft_write_config() {
	local dir=$1 id=$2 port=$3 cport=$4
	shift 4
	local joins="" join cfg
	for join in "$@"; do
		joins+=$'  retry_join {\n    leader_api_addr = "'"$join"$'"\n  }\n'
	done
	cfg=$(<"$ROOT/scripts/raft-node.hcl")
	cfg=${cfg//@DIR@/$dir}
	cfg=${cfg//@NODE_ID@/$id}
	cfg=${cfg//@PERFORMANCE_MULTIPLIER@/1}
	cfg=${cfg//@RETRY_JOIN@/$joins}
	cfg=${cfg//@API_PORT@/$port}
	cfg=${cfg//@CLUSTER_PORT@/$cport}
	printf '%s\n' "$cfg" >"$dir/vault.hcl"
}

raft_pid() {
	local dir=$1
	[[ -f $dir/vault.pid ]] || return 1
	local pid
	pid=$(cat "$dir/vault.pid")
	kill -0 "$pid" 2>/dev/null || return 1
	[[ $(ps -o comm= -p "$pid") == vault ]] || return 1
	echo "$pid"
}

# raft_plugin_pids DIR: plugin processes started from DIR/plugins (they
# outlive a Vault killed with SIGKILL).
raft_plugin_pids() {
	local dir=$1 p argv0
	for p in /proc/[0-9]*; do
		argv0=$({ tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | head -n 1) || continue
		if [[ $argv0 == "$dir/plugins/"* ]]; then
			echo "${p#/proc/}"
		fi
	done
}

# raft_start DIR ADDR: start the server and wait for its listener.
raft_start() {
	local dir=$1 addr=$2
	local pid
	if pid=$(raft_pid "$dir"); then
		say "$(basename "$dir") already running (pid $pid)"
		return 0
	fi
	printf '\n==== start %s ====\n' "$(date -u +%FT%TZ)" >>"$dir/vault.log"
	setsid "$VAULT" server -config="$dir/vault.hcl" >>"$dir/vault.log" 2>&1 </dev/null &
	echo $! >"$dir/vault.pid"
	local _
	local rc
	for _ in $(seq 1 150); do
		rc=0
		VAULT_ADDR=$addr "$VAULT" status >/dev/null 2>&1 || rc=$?
		# 0 unsealed, 2 sealed: either way the listener answers.
		case $rc in 0 | 2) return 0 ;; esac
		raft_pid "$dir" >/dev/null || die "$(basename "$dir") exited during start; see $dir/vault.log"
		sleep 0.2
	done
	die "$(basename "$dir") did not answer at $addr in 30s; see $dir/vault.log"
}

# raft_stop DIR: SIGTERM, then SIGKILL after 20s; then any plugin left.
raft_stop() {
	local dir=$1 pid _
	if pid=$(raft_pid "$dir"); then
		kill -TERM "$pid"
		for _ in $(seq 1 200); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
	fi
	rm -f "$dir/vault.pid"
	for pid in $(raft_plugin_pids "$dir"); do
		kill -KILL "$pid" 2>/dev/null || true
	done
}

# raft_crash DIR: SIGKILL the server and its plugin processes, as a power
# cut would.
raft_crash() {
	local dir=$1 pid
	pid=$(raft_pid "$dir") || die "$(basename "$dir") is not running"
	kill -KILL "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	rm -f "$dir/vault.pid"
	for pid in $(raft_plugin_pids "$dir"); do
		kill -KILL "$pid" 2>/dev/null || true
	done
}

# raft_init DIR ADDR: initialise with one key share (drills only) and keep
# the key and root token in DIR/init.txt.
raft_init() {
	local dir=$1 addr=$2 out
	out=$(VAULT_ADDR=$addr "$VAULT" operator init -key-shares=1 -key-threshold=1) || die "operator init failed"
	(
		umask 077
		printf '%s\n' "$out" | sed -n 's/^Unseal Key 1: /unseal_key=/p; s/^Initial Root Token: /root_token=/p' >"$dir/init.txt"
	)
	grep -q '^unseal_key=' "$dir/init.txt" && grep -q '^root_token=' "$dir/init.txt" || die "could not read the init output"
}

raft_field() { sed -n "s/^$2=//p" "$1/init.txt"; }

# raft_unseal DIR ADDR KEYDIR: unseal with the key kept in KEYDIR/init.txt
# and wait until the node is unsealed (a node with retry_join joins first).
raft_unseal() {
	local dir=$1 addr=$2 keydir=$3 key _
	key=$(raft_field "$keydir" unseal_key)
	for _ in $(seq 1 120); do
		VAULT_ADDR=$addr "$VAULT" status >/dev/null 2>&1 && return 0
		VAULT_ADDR=$addr "$VAULT" operator unseal "$key" >/dev/null 2>&1 || true
		sleep 0.5
	done
	die "$(basename "$dir") still sealed after 60s; see $dir/vault.log"
}

# raft_register_and_mount ADDR ISSUER_ADDR: register the plugin by checksum
# and version, mount it at jwt/ tuned for the JWKS headers, write the config.
raft_register_and_mount() {
	local addr=$1 issuer=$2 sha
	sha=$(sha256sum "$PLUGIN_BUILD" | cut -d' ' -f1)
	say "Registering $PLUGIN $VERSION (sha256 $sha)"
	"$VAULT" plugin register -sha256="$sha" -version="$VERSION" -command="$PLUGIN" secret "$PLUGIN"
	if ! "$VAULT" secrets list -format=json | grep -q '"jwt/"'; then
		"$VAULT" secrets enable -path=jwt -plugin-version="$VERSION" "$PLUGIN"
	fi
	"$VAULT" secrets tune \
		-allowed-response-headers=ETag -allowed-response-headers=Last-Modified \
		-passthrough-request-headers=If-None-Match -passthrough-request-headers=User-Agent \
		jwt/
	"$VAULT" write jwt/config issuer="$issuer/v1/jwt" jwks_max_age=5
}
