#!/usr/bin/env bash
# A 3-node Vault cluster with integrated storage (Raft) on loopback ports,
# for failover drills by hand: each node has its own directory and config
# file with retry_join to the others, and the plugin binary in its own
# plugin directory; the plugin is registered once (the catalog is
# replicated) and mounted at jwt/.
#
#   scripts/raft-cluster.sh start          build, start all nodes, init, unseal, mount
#   scripts/raft-cluster.sh status         which node is active, Raft peers
#   scripts/raft-cluster.sh kill N         SIGKILL node N (1-3) and its plugin process
#   scripts/raft-cluster.sh restart N      start node N again and unseal it (it rejoins)
#   scripts/raft-cluster.sh stop           stop every node
#   scripts/raft-cluster.sh destroy        stop and delete the directories
#
# A failover drill: start, create a ring with a short period, sign through
# any node, `status` to find the active node, `kill` it just before
# next_rotation, and watch the new active node activate the next key on
# time (bin/vault read jwt/keys/<ring> on another node); `restart` it.
#
# Environment: CLUSTER_DIR (default .raft-cluster), CLUSTER_PORT (first
# node's API port, default 8220; node N uses CLUSTER_PORT + 10*(N-1) and the
# port after it for cluster traffic), VERSION (plugin version).
set -euo pipefail
source "$(dirname "$0")/raft-lib.sh"

BASE=${CLUSTER_DIR:-$ROOT/.raft-cluster}
PORT0=${CLUSTER_PORT:-8220}

node_dir() { echo "$BASE/node-$1"; }
node_port() { echo $((PORT0 + 10 * ($1 - 1))); }
node_addr() { echo "http://127.0.0.1:$(node_port "$1")"; }

# wait_voters: autopilot makes a joined node a voter only after it has been
# healthy for a while (server_stabilization_time, 10s by default). Until
# then the cluster cannot elect a new leader if the active node dies.
wait_voters() {
	local _ n
	for _ in $(seq 1 120); do
		n=$("$VAULT" operator raft list-peers 2>/dev/null | awk '$4 == "true"' | wc -l)
		[[ $n -eq 3 ]] && return 0
		sleep 0.5
	done
	die "the Raft configuration does not list 3 voters after 60s"
}

check_node() {
	[[ ${1:-} =~ ^[123]$ ]] || die "name a node: 1, 2 or 3"
}

start_node() {
	local n=$1 joins=() m
	for m in 1 2 3; do
		[[ $m == "$n" ]] || joins+=("$(node_addr "$m")")
	done
	raft_prepare "$(node_dir "$n")"
	raft_write_config "$(node_dir "$n")" "node-$n" "$(node_port "$n")" $(($(node_port "$n") + 1)) "${joins[@]}"
	raft_start "$(node_dir "$n")" "$(node_addr "$n")"
}

case ${1:-start} in
start)
	make --no-print-directory -C "$ROOT" vault plugin VERSION="$VERSION"
	mkdir -p "$BASE"
	BASE=$(cd "$BASE" && pwd)
	for n in 1 2 3; do
		mkdir -p "$(node_dir "$n")"
		say "Starting node $n at $(node_addr "$n"); log $(node_dir "$n")/vault.log"
		start_node "$n"
	done
	if [[ ! -f $BASE/init.txt ]]; then
		say "Initialising through node 1 (one key share, kept in $BASE/init.txt: drills only)"
		raft_init "$BASE" "$(node_addr 1)"
	fi
	for n in 1 2 3; do
		say "Unsealing node $n"
		raft_unseal "$(node_dir "$n")" "$(node_addr "$n")" "$BASE"
	done
	export VAULT_ADDR VAULT_TOKEN
	VAULT_ADDR=$(node_addr 1)
	VAULT_TOKEN=$(raft_field "$BASE" root_token)
	raft_register_and_mount "$VAULT_ADDR" "$VAULT_ADDR"
	say "Waiting until every node is a Raft voter"
	wait_voters
	"$VAULT" operator raft list-peers
	cat <<EOF

3-node cluster up: $(node_addr 1), $(node_addr 2), $(node_addr 3)
(standbys forward every request to the active node).

  export VAULT_ADDR=$(node_addr 2) VAULT_TOKEN=$VAULT_TOKEN
  bin/vault write jwt/keys/drill algorithm=ES256 rotation_period=20s verification_ttl=120s
  bin/vault write jwt/keys/drill/rotate force=true
  bin/vault write jwt/roles/drill key=drill audiences=drill subject_template=drill ttl=20s max_ttl=30s
  bin/vault write -f jwt/sign/drill
  for n in 1 2 3; do curl -si http://127.0.0.1:\$(( $PORT0 + 10 * (n - 1) ))/v1/jwt/jwks | grep -i etag; done
  scripts/raft-cluster.sh status; scripts/raft-cluster.sh kill 1; scripts/raft-cluster.sh restart 1
EOF
	;;
status)
	for n in 1 2 3; do
		addr=$(node_addr "$n")
		if pid=$(raft_pid "$(node_dir "$n")"); then
			mode=$(VAULT_ADDR=$addr "$VAULT" status 2>/dev/null | sed -n 's/^HA Mode *//p' || true)
			echo "node $n  $addr  pid $pid  ${mode:-sealed or starting}"
		else
			echo "node $n  $addr  not running"
		fi
	done
	for n in 1 2 3; do
		if raft_pid "$(node_dir "$n")" >/dev/null; then
			VAULT_ADDR=$(node_addr "$n") VAULT_TOKEN=$(raft_field "$BASE" root_token) "$VAULT" operator raft list-peers && break
		fi
	done
	;;
kill)
	check_node "${2:-}"
	say "SIGKILL to node $2 and its plugin process"
	raft_crash "$(node_dir "$2")"
	;;
restart)
	check_node "${2:-}"
	start_node "$2"
	raft_unseal "$(node_dir "$2")" "$(node_addr "$2")" "$BASE"
	export VAULT_ADDR VAULT_TOKEN
	VAULT_ADDR=$(node_addr "$2")
	VAULT_TOKEN=$(raft_field "$BASE" root_token)
	wait_voters
	say "node $2 is back and a voter again"
	;;
stop)
	for n in 1 2 3; do raft_stop "$(node_dir "$n")"; done
	;;
destroy)
	for n in 1 2 3; do raft_stop "$(node_dir "$n")"; done
	rm -rf "$BASE"
	;;
*)
	echo "usage: $0 [start|status|kill N|restart N|stop|destroy]" >&2
	exit 2
	;;
esac
