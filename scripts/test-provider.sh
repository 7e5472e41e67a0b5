#!/usr/bin/env bash
# Runs the Terraform provider's tests (terraform-provider-jwtrotor/): its unit
# tests, and its acceptance tests, which drive the real Terraform binary
# against a Vault dev server started from bin/vault with the plugin from
# bin/plugins registered by its sha256 (make vault plugin builds both).
#
# terraform-plugin-testing skips every acceptance test unless TF_ACC is set;
# this script sets it and fails when Terraform is missing or when any test
# skipped, so a green run always means Terraform ran.
#
# Environment: GO (default go), TERRAFORM (default: terraform on the PATH),
# ACC_TIMEOUT (default 30m), PROVIDER_FLAGS (extra go test flags, such as
# -run Policy).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
TERRAFORM=${TERRAFORM:-$(command -v terraform || true)}
ACC_TIMEOUT=${ACC_TIMEOUT:-30m}

if [[ -z $TERRAFORM || ! -x $TERRAFORM ]]; then
	echo "provider tests: no terraform binary (looked for ${TERRAFORM:-terraform on the PATH}); the acceptance tests need Terraform 1.11 or newer: install it or set TERRAFORM=/path/to/terraform" >&2
	exit 1
fi
echo "--> $("$TERRAFORM" version | head -n 1) at $TERRAFORM"

# The examples are Terraform code that users copy: keep them formatted.
if ! (cd "$ROOT/terraform-provider-jwtrotor" && "$TERRAFORM" fmt -check -recursive examples >/dev/null); then
	echo "provider tests: terraform fmt would change these examples:" >&2
	(cd "$ROOT/terraform-provider-jwtrotor" && "$TERRAFORM" fmt -check -recursive -list=true examples 2>/dev/null) >&2 || true
	exit 1
fi

# The docs are rendered from the schema: they must say what it says.
GO=$GO "$ROOT/scripts/provider-docs.sh" --check

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# shellcheck disable=SC2086 # PROVIDER_FLAGS is a list of flags
(cd "$ROOT/terraform-provider-jwtrotor" &&
	TF_ACC=1 TF_ACC_TERRAFORM_PATH="$TERRAFORM" \
		$GO test -count=1 -v -timeout "$ACC_TIMEOUT" ${PROVIDER_FLAGS:-} ./...) >"$log" 2>&1 || status=1
cat "$log"

skipped=$(grep -E -- '--- SKIP' "$log" || true)
if [[ -n $skipped ]]; then
	echo "provider tests: these tests skipped, so Terraform did not check what they guard:" >&2
	echo "$skipped" >&2
	status=1
fi
if ! grep -qE -- '--- PASS: TestAcc' "$log"; then
	echo "provider tests: no acceptance test passed" >&2
	status=1
fi
exit $status
