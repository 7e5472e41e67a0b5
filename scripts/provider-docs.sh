#!/usr/bin/env bash
# Renders the Terraform provider's docs (terraform-provider-jwtrotor/docs)
# from its schema, examples/ and templates/ with tfplugindocs, pinned in
# tools/docs/go.mod. tfplugindocs builds the provider and reads its schema
# through the terraform binary on the PATH (terraform init -plugin-dir: no
# download).
#
#   scripts/provider-docs.sh          rewrite terraform-provider-jwtrotor/docs
#   scripts/provider-docs.sh --check  fail if those docs are not current
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
export CHECKPOINT_DISABLE=1

mkdir -p "$ROOT/bin"
$GO -C "$ROOT/tools/docs" build -o "$ROOT/bin/tfplugindocs" github.com/hashicorp/terraform-plugin-docs/cmd/tfplugindocs

out=docs
if [[ ${1:-} == --check ]]; then
	# Relative to the provider directory: bin/ is not part of the repository.
	out=../bin/provider-docs
	rm -rf "$ROOT/bin/provider-docs"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! (cd "$ROOT/terraform-provider-jwtrotor" &&
	"$ROOT/bin/tfplugindocs" generate --provider-name jwtrotor --rendered-provider-name jwtrotor \
		--rendered-website-dir "$out") >"$log" 2>&1; then
	cat "$log" >&2
	exit 1
fi
if [[ ${1:-} == --check ]]; then
	if ! diff -r "$ROOT/terraform-provider-jwtrotor/docs" "$ROOT/bin/provider-docs"; then
		echo "terraform-provider-jwtrotor/docs is not current: run make provider-docs and commit the result" >&2
		exit 1
	fi
	echo "--> provider docs are current"
fi
