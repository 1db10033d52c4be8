#!/usr/bin/env bash
# Self-test of the fake istiod (fake_istiod.js) before our C client is pointed
# at it: a throw-away CA and a server certificate for "istiod.test"
# (mkcerts.sh), the fake on an ephemeral loopback port, then a grpc-js client
# (client_check.js) that runs delta xDS (initial requests, decode, NACK/ACK,
# push, reconnect, bad token) and CreateCertificate; the returned chain is
# checked here with `openssl verify`.
# Prints "N passed, M failed"; exits 1 when anything failed. KEEP=1 keeps the
# temporary directory (certificates, state files, events.jsonl) for a look.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)

"$here/setup.sh" || exit 1

tmp=$(mktemp -d)
pid=
# shellcheck disable=SC2317  # called through the trap
cleanup() {
	[ -n "${KEEP:-}" ] && { echo "kept $tmp"; return; }
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

pass=0
fail=0
ok() { echo "PASS $*"; pass=$((pass + 1)); }
nok() { echo "FAIL $*"; fail=$((fail + 1)); }
finish() {
	echo "$pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit
}

# --- CA and server certificate ------------------------------------------------
"$here/mkcerts.sh" "$tmp" istiod.test || { nok "mkcerts.sh"; finish; }
ca=$tmp/ca
ok "CA and server certificate made"

# --- state files --------------------------------------------------------------
cat >"$tmp/state.json" <<'JSON'
{
  "workloads": [
    {"uid": "c1//v1/Pod/default/app", "name": "app", "namespace": "default",
     "serviceAccount": "app", "ips": ["10.1.0.5", "fd00::5"], "tunnelProtocol": "HBONE",
     "node": "node-a",
     "services": {"default/app.default.svc.cluster.local": {"ports": [{"servicePort": 80, "targetPort": 8080}]}}},
    {"uid": "c1//v1/Pod/default/db", "name": "db", "namespace": "default", "ips": ["10.1.0.6"]}
  ],
  "services": [
    {"name": "app", "namespace": "default", "hostname": "app.default.svc.cluster.local",
     "addresses": [{"network": "", "ip": "10.96.0.10"}],
     "ports": [{"servicePort": 80, "targetPort": 8080}]}
  ],
  "policies": [
    {"name": "deny-9090", "namespace": "default", "scope": "NAMESPACE", "action": "DENY",
     "rules": [{"clauses": [{"matches": [{"destinationPorts": [9090]}]}]}]},
    {"name": "allow-ns", "namespace": "istio-system", "scope": "GLOBAL", "action": "ALLOW",
     "rules": [{"clauses": [{"matches": [{"sourceIps": [{"cidr": "10.0.0.0/8"}],
                                          "namespaces": [{"exact": "default"}]}]}]}]}
  ],
  "raw": [{"type": "address", "name": "bad", "hex": "0a05ff"}]
}
JSON
# Next state: app turns UNHEALTHY, db and the raw resource vanish.
node -e '
	const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
	s.workloads = [Object.assign(s.workloads[0], {status: "UNHEALTHY"})];
	delete s.raw;
	require("fs").writeFileSync(process.argv[2], JSON.stringify(s));
' "$tmp/state.json" "$tmp/next.json"

# --- a bad state file is refused with a message naming the key ----------------
echo '{"workloads": [{"uid": "x", "serviceAcount": "typo"}]}' >"$tmp/typo.json"
if out=$(timeout 20 node "$here/fake_istiod.js" --listen 127.0.0.1:0 --tls-cert "$tmp/istiod-chain.pem" \
	--tls-key "$tmp/istiod-key.pem" --config "$tmp/typo.json" --ca-dir "$ca" --log "$tmp/typo.jsonl" 2>&1); then
	nok "state file with an unknown field is refused (fake started)"
elif grep -q 'serviceAcount' <<<"$out"; then
	ok "state file with an unknown field is refused"
else
	nok "state file with an unknown field is refused: $out"
fi

# --- start the fake -----------------------------------------------------------
token=selftest-token-$$
node "$here/fake_istiod.js" --listen 127.0.0.1:0 --tls-cert "$tmp/istiod-chain.pem" --tls-key "$tmp/istiod-key.pem" \
	--config "$tmp/state.json" --ca-dir "$ca" --log "$tmp/events.jsonl" --token "$token" \
	>"$tmp/stdout" 2>"$tmp/stderr" &
pid=$!
addr=
for _ in $(seq 100); do
	addr=$(sed -n 's/^listening //p' "$tmp/stdout")
	[ -n "$addr" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$addr" ]; then
	nok "fake istiod starts: $(cat "$tmp/stderr")"
	finish
fi
ok "fake istiod listening on $addr"

# --- the grpc-js client -------------------------------------------------------
identity=spiffe://cluster.local/ns/default/sa/app
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/leaf.key" -subj / \
	-addext "subjectAltName=critical,URI:$identity" -out "$tmp/leaf.csr" 2>/dev/null
mkdir "$tmp/chain"
node "$here/client_check.js" --target "$addr" --host istiod.test --root "$ca/root-cert.pem" \
	--token "$token" --config "$tmp/state.json" --push-state "$tmp/next.json" --events "$tmp/events.jsonl" \
	--csr "$tmp/leaf.csr" --identity "$identity" --out-chain "$tmp/chain" --pid "$pid" >"$tmp/client.out" 2>&1
cat "$tmp/client.out"
pass=$((pass + $(grep -c '^PASS ' "$tmp/client.out")))
fail=$((fail + $(grep -c '^FAIL ' "$tmp/client.out")))
grep -qE '^(PASS|FAIL) ' "$tmp/client.out" || nok "client_check.js produced no results"

# --- the returned chain -------------------------------------------------------
c=$tmp/chain
if [ -s "$c/chain0.pem" ]; then
	if openssl verify -CAfile "$c/chain2.pem" -untrusted "$c/chain1.pem" "$c/chain0.pem" >/dev/null 2>&1 &&
		cmp -s "$c/chain2.pem" "$ca/root-cert.pem"; then
		ok "openssl verify: leaf <- intermediate <- root"
	else
		nok "openssl verify: leaf <- intermediate <- root"
	fi
	text=$(openssl x509 -in "$c/chain0.pem" -noout -text)
	if grep -A1 'Subject Alternative Name: critical' <<<"$text" | grep -qx "[[:space:]]*URI:$identity"; then
		ok "leaf SAN is the critical URI $identity"
	else
		nok "leaf SAN is the critical URI $identity"
	fi
	nb=$(date -d "$(openssl x509 -in "$c/chain0.pem" -noout -startdate | cut -d= -f2)" +%s)
	na=$(date -d "$(openssl x509 -in "$c/chain0.pem" -noout -enddate | cut -d= -f2)" +%s)
	if [ $((na - nb)) = 3600 ]; then ok "leaf validity is validity_duration (3600 s)"; else nok "leaf validity $((na - nb)) s, want 3600"; fi
	# Same public key as the CSR.
	if [ "$(openssl x509 -in "$c/chain0.pem" -noout -pubkey)" = "$(openssl req -in "$tmp/leaf.csr" -noout -pubkey)" ]; then
		ok "leaf carries the CSR's public key"
	else
		nok "leaf carries the CSR's public key"
	fi
else
	nok "no certificate chain returned"
fi

if kill -0 "$pid" 2>/dev/null; then ok "fake istiod still running"; else nok "fake istiod died: $(cat "$tmp/stderr")"; fi
grep -q '"event":"state_error"' "$tmp/events.jsonl" && nok "state reload error: $(grep state_error "$tmp/events.jsonl")"

finish
