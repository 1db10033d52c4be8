#!/usr/bin/env bash
# Builds the Go HBONE interop peer offline (standard library only) into the
# directory given as $1 (default: build/interop under the repo) and prints
# the binary's path on stdout. Go's caches live under that directory so the
# build touches nothing outside it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Default: $BUILD/interop (the caller's build dir), else build/interop.
out=${1:-${BUILD:-$here/../../build}/interop}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if ! command -v go >/dev/null 2>&1; then
	echo "build.sh: go not found (apt-get install golang-go)" >&2
	exit 1
fi

# A single file needs no module; keep every network and module lookup off.
env -u GOFLAGS \
	GOPATH="$out/go-path" GOCACHE="$out/go-cache" GOMODCACHE="$out/go-path/pkg/mod" \
	GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 \
	go build -trimpath -o "$out/hbone_peer" "$here/hbone_peer.go" >&2
echo "$out/hbone_peer"
