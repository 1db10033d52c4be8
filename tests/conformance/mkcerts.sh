#!/usr/bin/env bash
# Certificates for a fake istiod run:
#   DIR/ca/{root-cert,ca-cert,ca-key,cert-chain}.pem   Istio cacerts (scripts/gen-cacerts.sh)
#   DIR/istiod-key.pem, DIR/istiod-chain.pem            server key, and leaf+intermediate
# The server leaf is signed by the intermediate, valid 1 day, with
# subjectAltName DNS:<each HOST> and IP:127.0.0.1, IP:::1.
# Usage: mkcerts.sh DIR [HOST...]   (default HOST: istiod.test)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: mkcerts.sh DIR [HOST...]}
shift
[ $# -gt 0 ] || set -- istiod.test
mkdir -p "$dir"
bash "$here/../../scripts/gen-cacerts.sh" --force "$dir/ca" >/dev/null
san=IP:127.0.0.1,IP:::1
for h in "$@"; do san="DNS:$h,$san"; done
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
	"$san" >"$dir/istiod.ext"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/istiod-key.pem" \
	-subj "/CN=$1" -out "$dir/istiod.csr" 2>/dev/null
openssl x509 -req -sha256 -days 1 -in "$dir/istiod.csr" -CA "$dir/ca/ca-cert.pem" \
	-CAkey "$dir/ca/ca-key.pem" -set_serial "0x$(openssl rand -hex 16)" -extfile "$dir/istiod.ext" \
	-out "$dir/istiod-cert.pem" 2>/dev/null
cat "$dir/istiod-cert.pem" "$dir/ca/ca-cert.pem" >"$dir/istiod-chain.pem"
rm -f "$dir/istiod.csr" "$dir/istiod.ext"
