#!/usr/bin/env bash
# mkca.sh DIR [ec|rsa] [root|intermediate]
# Writes an Istio-style "cacerts" directory with the openssl CLI:
#   root-cert.pem, root-key.pem   self-signed root (always EC P-256)
#   ca-cert.pem, ca-key.pem       signing CA: the root itself ("root"), or an
#                                 intermediate signed by the root
#                                 ("intermediate", default), key EC P-256
#                                 (SEC1) or RSA 2048 (PKCS#8)
#   cert-chain.pem                ca-cert.pem followed by root-cert.pem
# Everything is local and valid for 2 days.
set -euo pipefail
dir=$1
alg=${2:-ec}
shape=${3:-intermediate}
mkdir -p "$dir"
cd "$dir"

cat >ca.cnf <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
O = ztunnel-c test
CN = test root
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF

openssl ecparam -name prime256v1 -genkey -noout -out root-key.pem 2>/dev/null
openssl req -x509 -new -key root-key.pem -days 2 -config ca.cnf -extensions v3_ca \
	-subj "/O=ztunnel-c test/CN=test root $$" -out root-cert.pem 2>/dev/null

if [ "$shape" = root ]; then
	cp root-cert.pem ca-cert.pem
	cp root-key.pem ca-key.pem
	cp root-cert.pem cert-chain.pem
	exit 0
fi

case $alg in
ec) openssl ecparam -name prime256v1 -genkey -noout -out ca-key.pem 2>/dev/null ;;
rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ca-key.pem 2>/dev/null ;;
*)
	echo "mkca.sh: algorithm ec or rsa" >&2
	exit 1
	;;
esac
openssl req -new -key ca-key.pem -subj "/O=ztunnel-c test/CN=test intermediate $$" -out ca.csr 2>/dev/null
openssl x509 -req -in ca.csr -CA root-cert.pem -CAkey root-key.pem -CAcreateserial -days 2 \
	-extfile ca.cnf -extensions v3_ca -out ca-cert.pem 2>/dev/null
cat ca-cert.pem root-cert.pem >cert-chain.pem
rm -f ca.csr root-cert.srl
