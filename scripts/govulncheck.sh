#!/usr/bin/env bash
# Runs govulncheck on the plugin module, the test-server harness module
# (testserver/), the acceptance-test module and the Terraform provider
# module against a vulnerability database built locally, without network
# access to the online database.
#
# Both tools and the data are pinned in tools/vuln/go.mod:
#   - golang.org/x/vuln provides govulncheck;
#   - golang.org/x/vulndb provides the OSV reports (data/osv) and cmd/indexdb,
#     which turns them into the database layout govulncheck reads.
# The module proxy serves golang.org/x/vulndb like any module, so the data
# arrives (and is checked against tools/vuln/go.sum) with `go mod download`.
#
# The database is rebuilt only when the pinned vulndb version changes. To
# update the data: cd tools/vuln && go get golang.org/x/vulndb@latest.
#
# Exit status: 0 when no module has a called finding outside
# tools/vuln/accepted.txt (reviewed findings with no fixed version), 1
# otherwise (each module is
# checked even if an earlier one failed).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
BIN=$ROOT/bin
DB=$BIN/vulndb
TOOLS=$ROOT/tools/vuln

say() { printf -- '--> %s\n' "$*"; }

mkdir -p "$BIN"
say "building govulncheck and indexdb from tools/vuln"
(cd "$TOOLS" && $GO build -o "$BIN/govulncheck" golang.org/x/vuln/cmd/govulncheck)
(cd "$TOOLS" && $GO build -o "$BIN/vulndb-indexdb" golang.org/x/vulndb/cmd/indexdb)

VULNDB_VERSION=$(cd "$TOOLS" && $GO list -m -f '{{.Version}}' golang.org/x/vulndb)
(cd "$TOOLS" && $GO mod download golang.org/x/vulndb)
VULNDB_DIR=$(cd "$TOOLS" && $GO list -m -f '{{.Dir}}' golang.org/x/vulndb)
if [[ -z $VULNDB_DIR || ! -d $VULNDB_DIR/data/osv ]]; then
	echo "golang.org/x/vulndb $VULNDB_VERSION has no data/osv directory at '$VULNDB_DIR'" >&2
	exit 1
fi

STAMP=$DB/.source
if [[ -f $STAMP && $(cat "$STAMP") == "$VULNDB_VERSION" && -f $DB/index/db.json ]]; then
	say "vulnerability database $DB is current (golang.org/x/vulndb $VULNDB_VERSION)"
else
	say "building the vulnerability database from golang.org/x/vulndb $VULNDB_VERSION data/osv"
	rm -rf "$DB" "$DB.tmp"
	"$BIN/vulndb-indexdb" -vulns "$VULNDB_DIR/data/osv" -out "$DB.tmp"
	mv "$DB.tmp" "$DB"
	printf '%s\n' "$VULNDB_VERSION" >"$STAMP"
fi
reports=$(find "$VULNDB_DIR/data/osv" -name '*.json' | wc -l)
# The reports in the repository carry no modification times (they are set
# when the online database is published): the module version, a
# pseudo-version with the commit's date, says how current the data is.
say "database: $reports OSV reports from golang.org/x/vulndb $VULNDB_VERSION"

# called_ids prints the OSV ids of findings whose vulnerable code is called
# (the ones govulncheck fails on), from its JSON output on stdin.
called_ids() {
	python3 -c '
import json, sys
dec, buf, ids = json.JSONDecoder(), sys.stdin.read(), set()
i = 0
while i < len(buf):
    while i < len(buf) and buf[i].isspace():
        i += 1
    if i >= len(buf):
        break
    obj, i = dec.raw_decode(buf, i)
    f = obj.get("finding")
    if f and f.get("trace") and f["trace"][0].get("function"):
        ids.add(f["osv"])
print("\n".join(sorted(ids)))
'
}
ACCEPTED=$(grep -o '^GO-[0-9]*-[0-9]*' "$TOOLS/accepted.txt" || true)

status=0
for module in . testserver tests terraform-provider-jwtrotor; do
	say "govulncheck -test ./... in $module"
	if (cd "$ROOT/$module" && "$BIN/govulncheck" -db "file://$DB" -test ./...); then
		continue
	fi
	ids=$(cd "$ROOT/$module" && "$BIN/govulncheck" -db "file://$DB" -test -format json ./... | called_ids)
	unaccepted=$(comm -23 <(printf '%s\n' "$ids" | sort -u) <(printf '%s\n' "$ACCEPTED" | sort -u) | grep . || true)
	if [[ -n $unaccepted ]]; then
		echo "findings not accepted in tools/vuln/accepted.txt: $unaccepted" >&2
		status=1
	else
		say "every finding above is accepted in tools/vuln/accepted.txt (reviewed, no fixed version): $(echo $ids)"
	fi
done
if [[ $status -ne 0 ]]; then
	echo "govulncheck reported findings (see above): update the affected modules or the Go toolchain" >&2
fi
exit $status
