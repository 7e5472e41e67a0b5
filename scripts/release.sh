#!/usr/bin/env bash
# Builds the release binaries into OUTDIR: the plugin and the Terraform
# provider for each platform, named <name>_<version>_<os>_<arch>, and
# SHA256SUMS over them. The same commit gives the same bytes on any machine
# and in any checkout directory:
#
#   - the Go toolchain is the one go.mod pins (GOTOOLCHAIN), not whatever
#     newer one the machine has;
#   - CGO_ENABLED=0: no C toolchain or libc in the build;
#   - -trimpath: no file system paths in the binary;
#   - -buildid= and -buildvcs=false: no build id and no VCS stamp (the
#     version, which names the commit, is stamped instead).
#
#   scripts/release.sh OUTDIR              every platform (make release)
#   scripts/release.sh --native OUTDIR     the plugin for this machine only
#
# Environment: VERSION (default: scripts/version.sh), GO (default go).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

PLATFORMS="linux/amd64 linux/arm64 darwin/arm64"
PROVIDER=1
if [[ ${1:-} == --native ]]; then
	shift
	PLATFORMS="$(go env GOOS)/$(go env GOARCH)"
	PROVIDER=0
fi
OUT=${1:?usage: scripts/release.sh [--native] OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

GO=${GO:-go}
VERSION=${VERSION:-$(scripts/version.sh)}
GOTOOLCHAIN=$(sed -n 's/^toolchain //p' go.mod)
[[ -n $GOTOOLCHAIN ]] || { echo "go.mod pins no toolchain" >&2; exit 1; }
export GOTOOLCHAIN CGO_ENABLED=0
MODULE=github.com/jwt-rotor/vault-plugin-jwt-rotor
FLAGS=(-trimpath -buildvcs=false)

for platform in $PLATFORMS; do
	os=${platform%/*} arch=${platform#*/}
	echo "==> $VERSION $os/$arch"
	GOOS=$os GOARCH=$arch $GO build "${FLAGS[@]}" \
		-ldflags "-buildid= -X $MODULE.Version=$VERSION" \
		-o "$OUT/vault-plugin-jwt-rotor_${VERSION}_${os}_${arch}" ./cmd/vault-plugin-jwt-rotor
	if [[ $PROVIDER == 1 ]]; then
		(cd terraform-provider-jwtrotor && GOOS=$os GOARCH=$arch $GO build "${FLAGS[@]}" \
			-ldflags "-buildid= -X main.version=$VERSION" \
			-o "$OUT/terraform-provider-jwtrotor_${VERSION}_${os}_${arch}" .)
	fi
done

(cd "$OUT" && rm -f SHA256SUMS && sha256sum -- *_"${VERSION}"_* >SHA256SUMS.new && mv SHA256SUMS.new SHA256SUMS)
echo "==> $OUT/SHA256SUMS"
cat "$OUT/SHA256SUMS"
