#!/usr/bin/env bash
# Side-by-side load test: starts a Vault dev server with the plugin (through
# scripts/dev.sh, in its own state directory and port), runs
# tests/cmd/loadbench against it, and stops the server.
#
# Environment: BENCH_ROUNDS (default 5), BENCH_DURATION (default 3s),
# BENCH_CLIENTS (default 8), BENCH_LISTEN_ADDRESS (default 127.0.0.1:8299),
# BENCH_MEMORY (1: also measure the plugin RSS with 1,000 rings and 10,000
# tracked verifiers; default 1), BENCH_ONLY (comma-separated words: run only
# the groups whose first scenario contains one, such as "token,batch").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export DEV_DIR=$ROOT/.bench
export DEV_LISTEN_ADDRESS=${BENCH_LISTEN_ADDRESS:-127.0.0.1:8299}

"$ROOT/scripts/dev.sh" >"$ROOT/.bench.log" 2>&1 || {
	echo "starting the bench server failed:" >&2
	tail -n 30 "$ROOT/.bench.log" >&2
	exit 1
}
trap '"$ROOT/scripts/dev-stop.sh" >/dev/null' EXIT

cd "$ROOT/tests"
go run ./cmd/loadbench \
	-addr "http://$DEV_LISTEN_ADDRESS" \
	-rounds "${BENCH_ROUNDS:-5}" \
	-duration "${BENCH_DURATION:-3s}" \
	-clients "${BENCH_CLIENTS:-8}" \
	-only "${BENCH_ONLY:-}"
if [[ ${BENCH_MEMORY:-1} == 1 ]]; then
	go run ./cmd/loadbench -addr "http://$DEV_LISTEN_ADDRESS" -memory
fi
