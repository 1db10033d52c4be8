#!/usr/bin/env bash
# Writes an Istio "cacerts" directory for the local CA mode:
#   root-cert.pem   self-signed root (EC P-256, CA:TRUE)
#   ca-cert.pem     intermediate CA signed by the root
#   ca-key.pem      the intermediate's private key
#   cert-chain.pem  intermediate followed by root
# Usage: gen-cacerts.sh [--force] OUTDIR [TRUST_DOMAIN]
# Skips (exit 0) when the four files already exist, unless --force.
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
out=${1:?usage: gen-cacerts.sh [--force] OUTDIR [TRUST_DOMAIN]}
td=${2:-cluster.local}

if [ "$force" = 0 ] && [ -s "$out/ca-cert.pem" ] && [ -s "$out/ca-key.pem" ] &&
   [ -s "$out/root-cert.pem" ] && [ -s "$out/cert-chain.pem" ]; then
  echo "gen-cacerts: $out already populated (use --force to replace)"
  exit 0
fi

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077

cat > "$work/ext.cnf" <<CNF
[req]
distinguished_name = dn
[dn]
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[inter]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF

openssl ecparam -name prime256v1 -genkey -noout -out "$work/root.key.ec" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$work/root.key.ec" -out "$work/root-key.pem"
openssl req -new -x509 -sha256 -days 3650 -key "$work/root-key.pem" \
  -subj "/O=ztunnel-c/CN=Root CA ${td}" -config "$work/ext.cnf" -extensions root \
  -out "$work/root-cert.pem"

openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca.key.ec" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$work/ca.key.ec" -out "$work/ca-key.pem"
openssl req -new -sha256 -key "$work/ca-key.pem" -subj "/O=ztunnel-c/CN=Intermediate CA ${td}" \
  -config "$work/ext.cnf" -out "$work/ca.csr"
openssl x509 -req -sha256 -days 1825 -in "$work/ca.csr" -CA "$work/root-cert.pem" \
  -CAkey "$work/root-key.pem" -set_serial "0x$(openssl rand -hex 16)" \
  -extfile "$work/ext.cnf" -extensions inter -out "$work/ca-cert.pem" 2>/dev/null

cat "$work/ca-cert.pem" "$work/root-cert.pem" > "$work/cert-chain.pem"
openssl verify -CAfile "$work/root-cert.pem" "$work/ca-cert.pem" >/dev/null

for f in root-cert.pem ca-cert.pem ca-key.pem cert-chain.pem; do
  install -m 0644 "$work/$f" "$out/$f"
done
chmod 0600 "$out/ca-key.pem"
echo "gen-cacerts: wrote $out (root and intermediate CA, trust domain ${td})"
