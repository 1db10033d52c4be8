#!/usr/bin/env bash
# Decodes each golden protobuf file (<name>.bin, written by
# tests/unit/xds/test_golden.c) with protoc against our proto/*.proto and
# compares the text with the committed <name>.txt; --decode_raw output (bare
# field numbers, independent of our .proto files) is compared with
# <name>.raw.txt. Exits non-zero on any difference or decode error.
#   check.sh            compare
#   check.sh --update   rewrite the .txt files from the .bin files
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../.." && pwd)
cd "$root" || exit 2
command -v protoc >/dev/null || { echo "check.sh: protoc not found (apt-get install protobuf-compiler)"; exit 2; }

# name  message type  .proto file (relative to proto/)
goldens=(
  "workload istio.workload.Address workload.proto"
  "service istio.workload.Address workload.proto"
  "authorization istio.security.Authorization authorization.proto"
  "delta_request envoy.service.discovery.v3.DeltaDiscoveryRequest discovery.proto"
  "delta_response envoy.service.discovery.v3.DeltaDiscoveryResponse discovery.proto"
  "cert_request istio.v1.auth.IstioCertificateRequest ca.proto"
  "cert_response istio.v1.auth.IstioCertificateResponse ca.proto"
  "route ztunnel.routes.v1.Route routes.proto"
  "authz_policy ztunnel.policy.v1.AuthorizationPolicy policies.proto"
  "authn_policy ztunnel.policy.v1.RequestAuthentication policies.proto"
  "ratelimit_policy ztunnel.policy.v1.RateLimit policies.proto"
)

update=0
[ "${1:-}" = "--update" ] && update=1
bad=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for g in "${goldens[@]}"; do
  read -r name type file <<<"$g"
  bin="$here/$name.bin"
  if [ ! -f "$bin" ]; then echo "check.sh: $name.bin missing"; bad=1; continue; fi
  # Imports also need workload.proto etc. (for Any expansion of Resource).
  if ! protoc --decode="$type" --proto_path=proto --proto_path=/usr/include \
      "$file" workload.proto authorization.proto <"$bin" >"$tmp/$name.txt" 2>"$tmp/err"; then
    echo "check.sh: $name: protoc --decode=$type failed:"; cat "$tmp/err"; bad=1; continue
  fi
  if ! protoc --decode_raw <"$bin" >"$tmp/$name.raw.txt" 2>"$tmp/err"; then
    echo "check.sh: $name: protoc --decode_raw failed:"; cat "$tmp/err"; bad=1; continue
  fi
  for kind in txt raw.txt; do
    if [ "$update" = 1 ]; then
      cp "$tmp/$name.$kind" "$here/$name.$kind"
    elif ! diff -u "$here/$name.$kind" "$tmp/$name.$kind"; then
      echo "check.sh: $name.$kind differs from the decoded $name.bin"; bad=1
    fi
  done
done
[ "$bad" = 0 ] && echo "check.sh: ${#goldens[@]} golden files decode as committed"
exit "$bad"
