#!/usr/bin/env bash
# Prints the version this checkout builds as: the one computation behind the
# Makefile's VERSION, make dev, the Raft scripts and the test harnesses.
#
#   - HEAD is tagged vX.Y.Z and no tracked file is modified: that tag.
#   - Otherwise a development build of the next release: the newest release
#     heading of CHANGELOG.md ("## vX.Y.Z - date") with its minor version
#     raised, then -dev+<short commit>, such as v0.2.0-dev+1a2b3c4. Never a
#     released version: Vault registers a plugin under the version its binary
#     reports, and a dev build must not pass for a release.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if tag=$(git describe --tags --exact-match HEAD 2>/dev/null) &&
	[[ $tag =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] &&
	git diff --quiet HEAD -- 2>/dev/null; then
	echo "$tag"
	exit 0
fi

latest=$(sed -n 's/^## \(v[0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\)\( .*\)\{0,1\}$/\1/p' CHANGELOG.md | head -n 1)
if [[ -z $latest ]]; then
	echo "scripts/version.sh: CHANGELOG.md names no release (## vX.Y.Z - date)" >&2
	exit 1
fi
IFS=. read -r major minor _ <<<"${latest#v}"
commit=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
echo "v$major.$((minor + 1)).0-dev+$commit"
