#!/usr/bin/env bash
# Proof that the model-based test finds bugs by itself (make model-check).
#
# Each patch in testdata/model-check/ is a plausible regression of the
# plugin's code that breaks one documented invariant (its "Invariant:"
# header line says which). For each patch this script copies the repository
# (tracked files as they are in the work tree) to a scratch directory,
# applies the patch, builds the root package's test binary once, and runs
# only the model test (TestModel) RUNS times for BUDGET each, stopping a run
# at its first failure. A run that fails has caught the regression; the time
# to catch is the wall time from the start of the run to the failure rapid
# reports ("[rapid] failed after N tests"), with shrinking cut to SHRINK
# (rapid's default of 30 s would otherwise be most of every time measured;
# the failing sequence is kept and replays either way). The unpatched code
# is run once for BUDGET first and must pass.
#
#   scripts/model-check.sh                      every patch, RUNS=20, BUDGET=2m
#   RUNS=3 BUDGET=90s scripts/model-check.sh testdata/model-check/04-*.patch
#
# Environment:
#   RUNS     runs per patch (default 20)
#   BUDGET   -model.budget of each run (default 2m, the make test budget)
#   LOGDIR   where each run's output is kept (default: removed at exit)
#   SHRINK   -rapid.shrinktime of each run (default 1s)
#   BASELINE=0  skip the unpatched run (to split the patches across two
#            invocations; one of them must keep it)
#   SEEDED=1 pass -rapid.seed=<run number> to each run. Off by default:
#            with a fixed seed every rapid.Check of TestModel's loop, in both
#            workers, draws the same sequences, so a run would explore only
#            one check's worth of sequences for its whole budget. Without it
#            each run draws fresh seeds, and a caught run's log names the
#            seed and fail file that replay it.
#
# Exits non-zero if the unpatched code fails, a patch does not apply or
# build, or any run of any patch passes (a regression missed).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
GO=${GO:-go}
RUNS=${RUNS:-20}
BUDGET=${BUDGET:-2m}
SHRINK=${SHRINK:-1s}

if [ $# -gt 0 ]; then
	patches=("$@")
else
	patches=(testdata/model-check/*.patch)
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/model-check.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
if [ -z "${LOGDIR:-}" ]; then
	LOGDIR=$scratch/logs
fi
mkdir -p "$LOGDIR"
mkdir "$scratch/base"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$scratch/base"

# Seconds since the epoch, with milliseconds.
now() { date +%s.%3N; }

# run_once DIR LOG SEED: runs the model test once in DIR, stopping at the
# first failure. Prints "pass", "fail <seconds>" or "hung <seconds>".
run_once() {
	local dir=$1 log=$2 seed=$3 start pid status elapsed
	local seedflag=()
	if [ "${SEEDED:-0}" = 1 ]; then
		seedflag=(-rapid.seed="$seed")
	fi
	# A failing sequence kept by an earlier run would be replayed first.
	rm -rf "$dir"/testdata/rapid/TestModel_*
	start=$(now)
	(cd "$dir" && exec ./model.test -test.count=1 -test.run '^TestModel$' -test.v \
		-test.timeout 0 -model.budget="$BUDGET" -rapid.shrinktime="$SHRINK" "${seedflag[@]}") >"$log" 2>&1 &
	pid=$!
	status=""
	while kill -0 "$pid" 2>/dev/null; do
		if grep -qs -e '\[rapid\] failed after' -e '^--- FAIL' -e '^panic:' "$log"; then
			status=fail
			elapsed=$(echo "$(now) - $start" | bc)
			kill "$pid" 2>/dev/null
			break
		fi
		# A run that outlives its budget by ten minutes is stuck.
		if [ "$(echo "$(now) - $start > $(budget_seconds) + 600" | bc)" = 1 ]; then
			status=hung
			elapsed=$(echo "$(now) - $start" | bc)
			kill "$pid" 2>/dev/null
			break
		fi
		sleep 1
	done
	wait "$pid"
	local rc=$?
	if [ -z "$status" ]; then
		elapsed=$(echo "$(now) - $start" | bc)
		if [ $rc -eq 0 ] && ! grep -q -e '\[rapid\] failed after' -e '^--- FAIL' "$log"; then
			status=pass
		else
			status=fail
		fi
	fi
	echo "$status $elapsed"
}

# budget_seconds converts BUDGET (Go duration: 90s, 2m, 1m30s) to seconds.
budget_seconds() {
	local d=$BUDGET s=0
	[[ $d =~ ([0-9]+)h ]] && s=$((s + BASH_REMATCH[1] * 3600))
	[[ $d =~ ([0-9]+)m($|[0-9]) ]] && s=$((s + BASH_REMATCH[1] * 60))
	[[ $d =~ ([0-9]+)s ]] && s=$((s + BASH_REMATCH[1]))
	echo "$s"
}

# build DIR: the root package's test binary, built once per copy so that a
# run's time to catch does not include compiling.
build() {
	(cd "$1" && "$GO" test -c -o model.test .) >"$2" 2>&1
}

median() {
	sort -n | awk '{v[NR]=$1} END {if (NR == 0) {print "-"; exit} if (NR % 2) m = v[(NR+1)/2]; else m = (v[NR/2] + v[NR/2+1]) / 2; printf "%.0f s\n", m}'
}

failed=0
if [ "${BASELINE:-1}" != 0 ]; then
	echo "==> unpatched code, one run of $BUDGET"
	cp -a "$scratch/base" "$scratch/unpatched"
	if ! build "$scratch/unpatched" "$LOGDIR/unpatched.build.log"; then
		echo "unpatched: does not build (see $LOGDIR/unpatched.build.log)"
		exit 1
	fi
	read -r status secs < <(run_once "$scratch/unpatched" "$LOGDIR/unpatched.log" 1)
	echo "unpatched: $status after ${secs%.*} s"
	if [ "$status" != pass ]; then
		echo "the unpatched code fails the model test: a regression's failure would prove nothing"
		grep -m3 -A3 -e '\[rapid\] failed after' "$LOGDIR/unpatched.log"
		failed=1
	fi
	rm -rf "$scratch/unpatched"
fi

table=$scratch/table
printf '%-32s  %-8s  %-10s  %s\n' patch caught "median" invariant >"$table"
for p in "${patches[@]}"; do
	name=$(basename "$p" .patch)
	invariant=$(sed -n 's/^Invariant: //p' "$p" | head -1)
	dir=$scratch/$name
	cp -a "$scratch/base" "$dir"
	if ! (cd "$dir" && git apply "$root/$p") >"$LOGDIR/$name.apply.log" 2>&1; then
		echo "$name: does not apply (see $LOGDIR/$name.apply.log)"
		printf '%-32s  %-8s  %-10s  %s\n' "$name" "no apply" - "$invariant" >>"$table"
		failed=1
		rm -rf "$dir"
		continue
	fi
	if ! build "$dir" "$LOGDIR/$name.build.log"; then
		echo "$name: does not build (see $LOGDIR/$name.build.log)"
		printf '%-32s  %-8s  %-10s  %s\n' "$name" "no build" - "$invariant" >>"$table"
		failed=1
		rm -rf "$dir"
		continue
	fi
	caught=0
	: >"$scratch/times"
	for i in $(seq 1 "$RUNS"); do
		log=$LOGDIR/$name.run$i.log
		read -r status secs < <(run_once "$dir" "$log" "$i")
		case $status in
		fail | hung)
			caught=$((caught + 1))
			echo "$secs" >>"$scratch/times"
			why=$(grep -m1 -e '\[rapid\] failed after' -e '^panic:' "$log" | sed 's/^.*\[rapid\] //' | cut -c1-200)
			echo "$name run $i: caught ($status) after ${secs%.*} s: $why"
			;;
		*)
			echo "$name run $i: NOT caught in $BUDGET"
			failed=1
			;;
		esac
	done
	printf '%-32s  %-8s  %-10s  %s\n' "$name" "$caught/$RUNS" "$(median <"$scratch/times")" "$invariant" >>"$table"
	rm -rf "$dir"
done

echo
echo "==> RUNS=$RUNS BUDGET=$BUDGET"
cat "$table"
exit $failed
