#!/usr/bin/env bash
# Mutation testing of the code that decides safety (make mutation; not part
# of make test: it takes tens of minutes). gremlins, pinned as a Go tool in
# tools/mutation, changes one operator at a time (a < into <=, a + into -,
# a condition into its negation, ...) and runs the unit tests against each
# change; a change the tests do not notice is a survivor. tools/mutation/score
# prints the share of mutants killed per file and fails when a file is below
# its scope's minimum.
#
#   scripts/mutation.sh                      every scope, one after the other
#   MUTATION_SCOPES="signing" scripts/mutation.sh
#   MUTATION_WORKERS=2 scripts/mutation.sh   mutants tested in parallel (default 1)
#
# Reports go to bin/mutation/<scope>.json and .log. Survivors judged
# equivalent (a change that alters no behaviour) are listed, each with its
# reason, in tools/mutation/equivalent.txt and left out of the score.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

# The scopes: a name, the lowest share of mutants (percent) the tests must
# kill in each of its files, and the files. This is the one list of what is
# mutated; rename a file here when it is renamed.
SCOPES=(
	"lifecycle   85 rotation.go operations.go bounds.go clock.go keyring.go"
	"maintenance 80 maintenance.go"
	"signing     80 path_sign.go path_roles.go claims.go"
	"validation  80 validate.go"
	"adoption    80 adopt.go import.go trust.go wrapping.go path_import.go path_trust.go"
)

only=${MUTATION_SCOPES:-}
workers=${MUTATION_WORKERS:-1}
out=bin/mutation
mkdir -p "$out"
$GO -C tools/mutation build -o ../../bin/gremlins github.com/go-gremlins/gremlins/cmd/gremlins
$GO -C tools/mutation build -o ../../bin/mutation-score ./score

# The model-based test draws random sequences, so whether it kills a mutant
# would be chance; its replayed failing sequences (TestModelRegressions) run.
# go vet adds nothing to a mutant's run (make lint vets the real source).
# -count=1: a cached result of the coverage run would make gremlins take
# its time, the base of every mutant's timeout, as a second.
goflags="$($GO env GOFLAGS) -count=1 -vet=off -skip=^TestModel\$"

status=0
for line in "${SCOPES[@]}"; do
	read -r name min files <<<"$line"
	if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then
		continue
	fi
	for f in $files; do
		test -f "$f" || { echo "mutation: scope $name names $f, which does not exist" >&2; exit 2; }
	done
	# gremlins takes exclusions only: leave out every file below the root
	# (cmd/, the acceptance tests, the provider, tools) and every file of the
	# plugin's package outside the scope.
	excludes=(-E /)
	for f in *.go; do
		case "$f" in *_test.go) continue ;; esac
		if [[ " $files " != *" $f "* ]]; then
			excludes+=(-E "^${f//./\\.}\$")
		fi
	done
	echo "--> scope $name: $files"
	start=$(date +%s)
	# A mutant whose tests run four times as long as the coverage run did (an
	# endless loop) is stopped and counted as detected. Not less: on a loaded
	# machine the unit tests alone took twice the coverage run, and a timeout
	# that fires on a slow but passing run counts a survivor as killed.
	GOFLAGS=$goflags bin/gremlins unleash --workers "$workers" --timeout-coefficient 4 "${excludes[@]}" -o "$out/$name.json" . >"$out/$name.log" 2>&1 || {
		echo "gremlins failed; see $out/$name.log" >&2
		tail -20 "$out/$name.log" >&2
		exit 2
	}
	echo "    $(($(date +%s) - start))s"
	bin/mutation-score -scope "$name" -min "$min" -equivalent tools/mutation/equivalent.txt "$out/$name.json" || status=1
done
exit $status
