#!/usr/bin/env bash
# Stops the Vault dev server that scripts/dev.sh started, by its pid file.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PID_FILE=${DEV_DIR:-$ROOT/.dev}/vault.pid

if [[ ! -f $PID_FILE ]]; then
	echo "No dev server from this checkout is running (no $PID_FILE)."
	exit 0
fi
PID=$(cat "$PID_FILE")
if ! kill -0 "$PID" 2>/dev/null; then
	echo "Dev server (pid $PID) is not running; removing the stale pid file."
	rm -f "$PID_FILE"
	exit 0
fi
# The pid may have been reused since the server died: only stop a vault.
if [[ $(ps -o comm= -p "$PID") != vault ]]; then
	echo "pid $PID is not a vault process; removing the stale pid file." >&2
	rm -f "$PID_FILE"
	exit 0
fi

echo "Stopping the dev server (pid $PID)."
kill -TERM "$PID"
for _ in $(seq 1 100); do
	kill -0 "$PID" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$PID" 2>/dev/null; then
	echo "Still running after 10s; killing it."
	kill -KILL "$PID"
fi
rm -f "$PID_FILE"
