#!/usr/bin/env bash
# Runs the model-based test (model_test.go) for a time budget and prints
# what it ran: the sequences and steps, and any failing sequence in full.
#
#   scripts/model.sh 2m      (make testmodel)
#   scripts/model.sh 30m     (make soak SOAK=30m)
set -euo pipefail
cd "$(dirname "$0")/.."
# With pipefail the status is go test's: the filter always prints the
# summary lines.
${GO:-go} test -count=1 -run '^TestModel$' -v -timeout 0 . -model.budget="${1:-2m}" |
	grep -v -e '^=== ' -e 'OK, passed'
