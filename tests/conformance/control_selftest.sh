#!/usr/bin/env bash
# Self-test of control_client.js (the grpc-js client that e2e tests point at
# `ztunnel control`) against fake_istiod.js, started the way selftest.sh
# starts it (throw-away CA, server certificate for "istiod.test", --token):
#   ads: both types arrive and decode, names match the state file, a bad and a
#        lying resource are NACKed, --nack works, a push is ACKed (the fake's
#        event log must show each ACK/NACK), --initial-versions and
#        --save-versions, exit codes on SIGTERM, --exit-after-ms, a server
#        reset (SIGUSR2 to the fake) and a wrong token;
#   csr: signed and verified (with and without impersonation), wrong token,
#        garbage CSR, injected CA failure, and chains the verifier must refuse
#        (root missing, wrong SAN).
# Prints "N passed, M failed"; exits 1 when anything failed. KEEP=1 keeps the
# temporary directory for a look.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
client=$here/control_client.js

"$here/setup.sh" || exit 1

tmp=$(mktemp -d)
pid=
cpid=
# shellcheck disable=SC2317  # called through the trap
cleanup() {
	for p in $cpid $pid; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	if [ -n "${KEEP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

pass=0
fail=0
ok() { echo "PASS $*"; pass=$((pass + 1)); }
nok() { echo "FAIL $*"; fail=$((fail + 1)); }
finish() {
	echo "$pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit
}

# check WHAT FILE JS: JS is an expression over L (FILE's JSON lines, parsed)
# and E (the fake's event log, parsed); true passes, anything else fails
# with FILE shown.
check() {
	local what=$1 file=$2 expr=$3 why
	# shellcheck disable=SC2016  # the single-quoted text is JavaScript
	if why=$(node -e '
		const fs = require("fs");
		const lines = (f) => fs.existsSync(f) ? fs.readFileSync(f, "utf8").split("\n").filter((l) => l).map((l) => JSON.parse(l)) : [];
		const L = lines(process.argv[1]);
		const E = lines(process.argv[2]);
		const AD = "type.googleapis.com/istio.workload.Address";
		const AZ = "type.googleapis.com/istio.security.Authorization";
		const names = (r) => r.resources.map((x) => x.name).sort().join(",");
		const r = (() => { return ('"$expr"'); })();
		if (r !== true) { console.log(fs.existsSync(process.argv[1]) ? fs.readFileSync(process.argv[1], "utf8").slice(0, 3000) : "(no file)"); process.exit(1); }
	' "$file" "$tmp/events.jsonl" 2>&1); then
		ok "$what"
	else
		nok "$what: $why"
	fi
}

# expect_rc WHAT WANT GOT
expect_rc() {
	if [ "$3" = "$2" ]; then ok "$1 (exit $3)"; else nok "$1: exit $3, want $2"; fi
}

# wait_for FILE PATTERN: up to 10 s for a line matching PATTERN in FILE.
wait_for() {
	for _ in $(seq 100); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# wait_lines FILE N: up to 10 s for FILE to hold N lines.
wait_lines() {
	for _ in $(seq 100); do
		[ "$(wc -l <"$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

# set_state JS: rewrites state.json with JS applied to `s`, then waits for the
# fake to log the reload.
set_state() {
	local before
	before=$(grep -c '"event":"state_loaded"' "$tmp/events.jsonl")
	node -e '
		const fs = require("fs");
		const s = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
		'"$1"';
		fs.writeFileSync(process.argv[1] + ".tmp", JSON.stringify(s));
		fs.renameSync(process.argv[1] + ".tmp", process.argv[1]);
	' "$tmp/state.json"
	for _ in $(seq 100); do
		[ "$(grep -c '"event":"state_loaded"' "$tmp/events.jsonl")" -gt "$before" ] && return 0
		sleep 0.05
	done
	nok "fake did not reload the state file"
}

# --- CA, server certificate, state --------------------------------------------
"$here/mkcerts.sh" "$tmp" istiod.test || { nok "mkcerts.sh"; finish; }
ca=$tmp/ca
# "default/liar" is an Authorization named default/other inside (hex of
# name "other", namespace "default"): the client must NACK it by name.
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
     "rules": [{"clauses": [{"matches": [{"namespaces": [{"exact": "default"}]}]}]}]}
  ],
  "raw": [{"type": "address", "name": "bad", "hex": "0a05ff"},
          {"type": "authorization", "name": "default/liar", "hex": "0a056f74686572120764656661756c74"}]
}
JSON

# --- start the fake -----------------------------------------------------------
token=control-selftest-$$
printf '%s\n' "$token" >"$tmp/token"
echo wrong >"$tmp/wrong-token"
node "$here/fake_istiod.js" --listen 127.0.0.1:0 --tls-cert "$tmp/istiod-chain.pem" --tls-key "$tmp/istiod-key.pem" \
	--config "$tmp/state.json" --ca-dir "$ca" --log "$tmp/events.jsonl" --token "$token" \
	>"$tmp/fake.out" 2>"$tmp/fake.err" &
pid=$!
addr=
for _ in $(seq 100); do
	addr=$(sed -n 's/^listening //p' "$tmp/fake.out")
	[ -n "$addr" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$addr" ]; then
	nok "fake istiod starts: $(cat "$tmp/fake.err")"
	finish
fi
ok "fake istiod listening on $addr"

common=(--target "$addr" --root-ca "$ca/root-cert.pem" --servername istiod.test --token-file "$tmp/token"
	--node-name node-a --pod-name ztunnel-x --pod-namespace istio-system --instance-ip 10.0.0.9)
node_id=ztunnel~10.0.0.9~ztunnel-x.istio-system~istio-system.svc.cluster.local

# --- usage errors ---------------------------------------------------------------
node "$client" ads --target "$addr" --out "$tmp/x" >/dev/null 2>&1
expect_rc "ads without --root-ca is a usage error" 2 $?
node "$client" frob >/dev/null 2>&1
expect_rc "unknown subcommand is a usage error" 2 $?

# --- ads: initial responses, NACKs, a push, SIGTERM -----------------------------
a=$tmp/ads1.jsonl
echo '{"type.googleapis.com/istio.workload.Address": {"c1//v1/Pod/default/gone": "x", "c1//v1/Pod/default/app": "0"}}' \
	>"$tmp/iv.json"
node "$client" ads "${common[@]}" --out "$a" --initial-versions "$tmp/iv.json" --save-versions "$tmp/saved.json" \
	--nack istio-system/allow-ns --exit-after-ms 30000 >"$tmp/ads1.stdout" 2>"$tmp/ads1.stderr" &
cpid=$!
if wait_for "$tmp/ads1.stdout" '^ready$'; then ok "ads prints ready"; else nok "ads prints ready: $(cat "$tmp/ads1.stderr")"; fi
wait_lines "$a" 2
check "ads: first response is Address, second Authorization" "$a" 'L.length >= 2 && L[0].type_url === AD && L[1].type_url === AZ'
check "ads: Address names are the state's" "$a" \
	'names(L[0]) === ["bad", "c1//v1/Pod/default/app", "c1//v1/Pod/default/db", "default/app.default.svc.cluster.local"].sort().join(",")'
check "ads: Authorization names are the state's" "$a" \
	'names(L[1]) === ["default/deny-9090", "default/liar", "istio-system/allow-ns"].join(",")'
check "ads: workload, service and policy decode" "$a" '(() => {
	const by = Object.fromEntries([...L[0].resources, ...L[1].resources].map((x) => [x.name, x]));
	const app = by["c1//v1/Pod/default/app"], svc = by["default/app.default.svc.cluster.local"], pol = by["default/deny-9090"];
	return app.kind === "workload" && app.value.workload.uid === "c1//v1/Pod/default/app" &&
		app.value.workload.tunnelProtocol === "HBONE" && app.value.workload.addresses[0] === "CgEABQ==" &&
		app.addresses.join(",") === "/10.1.0.5,/fd00::5" && svc.addresses.join(",") === "/10.96.0.10" && !("addresses" in pol) &&
		svc.kind === "service" && svc.value.service.hostname === "app.default.svc.cluster.local" &&
		pol.kind === "policy" && pol.value.action === "DENY" && pol.value.rules[0].clauses[0].matches[0].destinationPorts[0] === 9090 &&
		/^[0-9a-f]{16}$/.test(app.version) && !("error" in app);
})()'
check "ads: undecodable resource NACKed by name" "$a" \
	'L[0].acked === false && /^bad: /.test(L[0].error) && L[0].error.split("; ").length === 1 && L[0].nonce.length > 0'
check "ads: name/content mismatch and --nack NACKed" "$a" \
	'L[1].acked === false && /default\/liar: name does not match content \("default\/other"\)/.test(L[1].error) &&
	 /istio-system\/allow-ns: rejected by --nack/.test(L[1].error) && !/deny-9090/.test(L[1].error)'
check "ads: stale initial_resource_versions name removed" "$a" \
	'L[0].removed.join(",") === "c1//v1/Pod/default/gone" && L[1].removed.length === 0 && L[0].system_version_info === "1"'
# Push: app turns UNHEALTHY, db and the raw ones vanish.
set_state 's.workloads = [Object.assign(s.workloads[0], {status: "UNHEALTHY"})]; delete s.raw'
wait_lines "$a" 3
check "ads: push received and ACKed" "$a" \
	'L[2].type_url === AD && names(L[2]) === "c1//v1/Pod/default/app" && L[2].resources[0].value.workload.status === "UNHEALTHY" &&
	 L[2].removed.sort().join(",") === "bad,c1//v1/Pod/default/db" && L[2].acked === true && L[2].error === null'
check "ads: push for Authorization removes the liar" "$a" \
	'L.length >= 4 && L[3].type_url === AZ && L[3].removed.join(",") === "default/liar" && L[3].acked === true'
sleep 0.3
kill -TERM "$cpid"
wait "$cpid"
expect_rc "ads: SIGTERM ends the client cleanly" 0 $?
cpid=
check "ads: closed line on SIGTERM" "$a" \
	'(() => { const c = L[L.length - 1]; return c.event === "closed" && c.by === "client" && c.details === "SIGTERM"; })()'
check "ads: --save-versions holds accepted names only" "$tmp/saved.json" '(() => {
	const s = L[0];
	return Object.keys(s[AD]).sort().join(",") === "c1//v1/Pod/default/app,default/app.default.svc.cluster.local" &&
		s[AD]["c1//v1/Pod/default/app"] === lines("'"$a"'")[2].resources[0].version &&
		Object.keys(s[AZ]).join(",") === "default/deny-9090";
})()'

# The fake's view of stream 1 (the first ADS stream of this run).
check "events: initial requests carry node, metadata, versions" "$a" '(() => {
	const q = E.filter((e) => e.event === "request" && e.stream === 1);
	return q[0].type_url === AD && q[1].type_url === AZ && q[0].has_node && q[1].has_node &&
		q[0].node_id === "'"$node_id"'" && q[0].node_metadata.NODE_NAME === "node-a" &&
		q[0].node_metadata.NAME === "ztunnel-x" && q[0].node_metadata.NAMESPACE === "istio-system" &&
		q[0].node_metadata.INSTANCE_IPS === "10.0.0.9" &&
		q[0].metadata.authorization === "Bearer '"$token"'" && q[0].metadata.clusterid === "Kubernetes" &&
		q[0].initial_resource_versions["c1//v1/Pod/default/gone"] === "x" &&
		Object.keys(q[1].initial_resource_versions).length === 0 && q[0].resource_names_subscribe.length === 0;
})()'
check "events: NACKs with the response nonces and error_detail" "$a" '(() => {
	const q = E.filter((e) => e.event === "request" && e.stream === 1 && e.response_nonce);
	const n0 = q.find((e) => e.response_nonce === L[0].nonce), n1 = q.find((e) => e.response_nonce === L[1].nonce);
	return n0 && n1 && !n0.has_node && n0.error_detail && n0.error_detail.code === 3 && /^bad: /.test(n0.error_detail.message) &&
		n1.error_detail && /istio-system\/allow-ns: rejected by --nack/.test(n1.error_detail.message);
})()'
check "events: ACKs for the pushes" "$a" '(() => {
	const q = E.filter((e) => e.event === "request" && e.stream === 1);
	return [L[2], L[3]].every((r) => q.some((e) => e.response_nonce === r.nonce && e.error_detail === null && e.type_url === r.type_url));
})()'
check "events: the stream ended by the client" "$a" \
	'E.some((e) => e.event === "stream_end" && e.stream === 1 && (e.how === "cancelled" || e.how === "client_end"))'

# --- ads: reconnect with saved versions, --exit-after-ms --------------------------
b=$tmp/ads2.jsonl
node "$client" ads "${common[@]}" --out "$b" --initial-versions "$tmp/saved.json" --exit-after-ms 1500 \
	>"$tmp/ads2.stdout" 2>"$tmp/ads2.stderr"
expect_rc "ads: --exit-after-ms ends the client cleanly" 0 $?
check "ads: both types ACKed, nothing removed, closed by client" "$b" \
	'L.length === 3 && L[0].acked && L[1].acked && L[0].removed.length === 0 && L[1].removed.length === 0 &&
	 L[2].event === "closed" && L[2].by === "client" && L[2].details === "--exit-after-ms"'
check "events: saved versions sent as initial_resource_versions" "$b" '(() => {
	const s = Math.max(...E.filter((e) => e.event === "stream_open").map((e) => e.stream));
	const q = E.find((e) => e.event === "request" && e.stream === s && e.type_url === AZ);
	return q && q.initial_resource_versions["default/deny-9090"] === L[1].resources.find((r) => r.name === "default/deny-9090").version;
})()'

# --- ads: the server resets the stream (SIGUSR2 to the fake) ---------------------
c=$tmp/ads3.jsonl
node "$client" ads "${common[@]}" --out "$c" --exit-after-ms 15000 >"$tmp/ads3.stdout" 2>"$tmp/ads3.stderr" &
cpid=$!
wait_for "$tmp/ads3.stdout" '^ready$'
kill -USR2 "$pid"
wait "$cpid"
expect_rc "ads: server reset ends the client with 3" 3 $?
cpid=
check "ads: closed line carries UNAVAILABLE" "$c" \
	'(() => { const x = L[L.length - 1]; return x.event === "closed" && x.by === "server" && x.code === 14 && /reset/.test(x.details); })()'

# --- ads: wrong token -------------------------------------------------------------
d=$tmp/ads4.jsonl
node "$client" ads "${common[@]}" --token-file "$tmp/wrong-token" --out "$d" --exit-after-ms 10000 \
	>"$tmp/ads4.stdout" 2>"$tmp/ads4.stderr"
expect_rc "ads: wrong token ends the client with 3" 3 $?
check "ads: wrong token is UNAUTHENTICATED" "$d" 'L.length === 1 && L[0].event === "closed" && L[0].code === 16'

# --- ads: wrong server name -------------------------------------------------------
node "$client" ads "${common[@]}" --servername other.test --out "$tmp/ads5.jsonl" --exit-after-ms 10000 \
	>/dev/null 2>&1
expect_rc "ads: server certificate for another name is refused" 3 $?
check "ads: TLS failure is UNAVAILABLE" "$tmp/ads5.jsonl" 'L.length === 1 && L[0].code === 14'

# --- csr ------------------------------------------------------------------------
identity=spiffe://cluster.local/ns/default/sa/app
node "$client" csr "${common[@]}" --identity "$identity" --impersonate --ttl 3600 --out "$tmp/chain.pem" \
	--key-out "$tmp/leaf-key.pem" >"$tmp/csr1.json" 2>"$tmp/csr1.err"
expect_rc "csr: signed and verified" 0 $?
check "csr: ok, verified, chain of 3, leaf URI, ttl" "$tmp/csr1.json" '(() => {
	const o = L[0];
	return o.ok && o.code === 0 && o.verified && o.chain_len === 3 && o.leaf_uri === "'"$identity"'" &&
		Date.parse(o.not_after) - Date.parse(o.not_before) === 3600000 && o.problems.length === 0;
})()'
check "events: CSR shape, impersonation and ttl" "$tmp/csr1.json" '(() => {
	const x = E.filter((e) => e.event === "csr").pop();
	return x.result === "signed" && x.identity === "'"$identity"'" && x.impersonated === "'"$identity"'" && x.ttl === 3600 &&
		x.csr.key === "P-256" && x.csr.san_critical && x.csr.subject_empty && x.metadata.authorization === "Bearer '"$token"'";
})()'
if [ "$(openssl x509 -in "$tmp/chain.pem" -noout -pubkey)" = "$(openssl pkey -in "$tmp/leaf-key.pem" -pubout)" ]; then
	ok "csr: --out leaf matches --key-out key"
else
	nok "csr: --out leaf matches --key-out key"
fi

node "$client" csr "${common[@]}" --identity "$identity" >"$tmp/csr2.json" 2>&1
expect_rc "csr: without impersonation" 0 $?
check "events: no ImpersonatedIdentity, default ttl 86400" "$tmp/csr2.json" '(() => {
	const x = E.filter((e) => e.event === "csr").pop();
	return L[0].verified && x.impersonated === null && x.request_metadata === null && x.ttl === 86400;
})()'

node "$client" csr "${common[@]}" --token-file "$tmp/wrong-token" --identity "$identity" >"$tmp/csr3.json" 2>&1
expect_rc "csr: wrong token" 4 $?
check "csr: wrong token is UNAUTHENTICATED" "$tmp/csr3.json" 'L[0].ok === false && L[0].code === 16 && L[0].verified === false'

echo 'not a csr' >"$tmp/garbage.csr"
node "$client" csr "${common[@]}" --identity "$identity" --csr-file "$tmp/garbage.csr" >"$tmp/csr4.json" 2>&1
expect_rc "csr: garbage --csr-file" 4 $?
check "csr: garbage CSR is INVALID_ARGUMENT" "$tmp/csr4.json" 'L[0].ok === false && L[0].code === 3 && L[0].details.length > 0'

set_state 's.ca = {fail: {code: 14, message: "try later"}}'
node "$client" csr "${common[@]}" --identity "$identity" >"$tmp/csr5.json" 2>&1
expect_rc "csr: injected CA failure" 4 $?
check "csr: injected failure code and details" "$tmp/csr5.json" 'L[0].code === 14 && /try later/.test(L[0].details)'

set_state 's.ca = {omit_root: true}'
node "$client" csr "${common[@]}" --identity "$identity" >"$tmp/csr6.json" 2>&1
expect_rc "csr: chain without root is not verified" 5 $?
check "csr: ok but not verified, says why" "$tmp/csr6.json" \
	'L[0].ok && L[0].chain_len === 1 && !L[0].verified && /need leaf and root/.test(L[0].problems.join(";"))'

set_state 's.ca = {san: "spiffe://cluster.local/ns/other/sa/x"}'
node "$client" csr "${common[@]}" --identity "$identity" >"$tmp/csr7.json" 2>&1
expect_rc "csr: leaf for another identity is not verified" 5 $?
check "csr: wrong SAN reported" "$tmp/csr7.json" \
	'L[0].ok && !L[0].verified && L[0].leaf_uri === "spiffe://cluster.local/ns/other/sa/x" && L[0].problems.length === 1'

# A valid CSR given verbatim: the key to compare is the CSR's.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/own.key" -subj / \
	-addext "subjectAltName=critical,URI:$identity" -out "$tmp/own.csr" 2>/dev/null
set_state 'delete s.ca'
node "$client" csr "${common[@]}" --identity "$identity" --csr-file "$tmp/own.csr" >"$tmp/csr8.json" 2>&1
expect_rc "csr: --csr-file with a valid CSR" 0 $?

if kill -0 "$pid" 2>/dev/null; then ok "fake istiod still running"; else nok "fake istiod died: $(cat "$tmp/fake.err")"; fi
finish
