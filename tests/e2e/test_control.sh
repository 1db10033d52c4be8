#!/usr/bin/env bash
# `ztunnel control` end to end: our control plane in its own network
# namespace (node 3), proxies on nodes 1 and 2 that know nothing but its
# address, the mesh root and their node's token. Workloads and policies come
# from a watched YAML directory; certificates from its CA. Checks: traffic
# with issued identities, a new workload / a removed workload / a new policy
# applied, a broken file refused with file and line while
# the last good state stays, a control-plane restart (proxies keep serving,
# reconnect and converge), a short-lived certificate renewed while a
# transfer runs through it, and node authorization of certificate requests.
# A gRPC stack that is not ours (Node's grpc-js, tests/conformance/
# control_client.js) is a client of the control plane too.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup
conf="$mesh_repo/tests/conformance"

# Start below the hard open-file limit, so that raising it at start shows.
hard_nofile=$(ulimit -Hn)
if [ "$hard_nofile" = unlimited ] || [ "$hard_nofile" -gt 1024 ]; then ulimit -Sn 1024; fi

A=10.200.1.2 C=10.200.2.2 D=10.200.2.3 E=10.200.2.4 CP=$(zt_node_ip 3)
TOKEN1=node1-token-0123456789 TOKEN2=node2-token-0123456789
CFG=$ZT_WORK/config
# Workload certificates live 60 s (the control plane's cap): renewed at 30 s.
CERT_TTL=60

wl() { # wl UID IP SA NODE
	echo "- {uid: $1, name: $1, namespace: default, serviceAccount: $3, workloadIps: [\"$2\"], protocol: HBONE, node: $4}"
}
# write_cfg FILE CONTENT: replace a config file the way tools do (rename).
write_cfg() {
	printf '%s\n' "$2" >"$CFG/.$1.tmp" && mv "$CFG/.$1.tmp" "$CFG/$1"
}
start_control() { # [EXTRA ARGS]
	mesh_start_bg 3 control "$ZT_BIN" control --listen 0.0.0.0:15012 --config-dir "$CFG" \
		--ca-dir "$MESH_CA" --node-tokens "$ZT_WORK/node-tokens" --max-cert-ttl $CERT_TTL "$@"
	mesh_wait_grep "$(mesh_log 3 control)" "listening on" 10
}
start_proxy() {
	echo "$2" >"$ZT_WORK/token$1"
	# shellcheck disable=SC2046
	mesh_start_bg "$1" proxy env $(mesh_env "$1") XDS_ADDRESS="https://$CP:15012" \
		XDS_ROOT_CA="$MESH_CA/root-cert.pem" AUTH_TOKEN="$ZT_WORK/token$1" NODE_NAME="node$1" \
		POD_NAME="ztunnel-$1" POD_NAMESPACE=istio-system RUST_LOG="${LOGLVL:-info}" "$ZT_BIN" proxy
	mesh_wait_grep "$(mesh_log "$1" proxy)" "snapshot received" 10
}
clog() { cat "$(mesh_log 3 control)"; }

zt_test "setup: control plane alone in node 3's namespace, proxies on nodes 1 and 2"
setup() {
	"$conf/setup.sh" || return 1 # grpc-js for the client checks (npm ci, once)
	zt_node_add 1 && zt_node_add 2 && zt_node_add 3 || return 1
	a=$(zt_pod_add 1 1 a) && b=$(zt_pod_add 1 2 b) && c=$(zt_pod_add 2 1 c) && d=$(zt_pod_add 2 2 d) && e=$(zt_pod_add 2 3 e) || return 1
	mesh_ca || return 1
	mkdir -p "$CFG"
	printf '# node tokens\nnode1 %s\nnode2 %s\n' "$TOKEN1" "$TOKEN2" >"$ZT_WORK/node-tokens"
	write_cfg workloads.yaml "workloads:
$(wl a $A sa-a node1)
$(wl c $C sa-c node2)"
	start_control || return 1
	mesh_cni_start 1 && mesh_cni_start 2 || return 1
	start_proxy 1 "$TOKEN1" && start_proxy 2 "$TOKEN2" || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$c" c sa-c || return 1
	zt_echo_server "$c" 8080 && zt_echo_server "$c" 9090 && zt_echo_server "$d" 8080
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# a_serial: the serial of the certificate node 1's proxy serves for sa-a
# (from /config_dump), "" if none.
a_serial() {
	zt_ns_exec "$(zt_node_ns 1)" curl -s -m 5 localhost:15000/config_dump | python3 -c '
import json, sys
for c in json.load(sys.stdin).get("certificates", []):
    if c["identity"].endswith("/sa/sa-a") and c.get("certChain"):
        print(c["certChain"][0]["serialNumber"])' 2>/dev/null
}

# A long transfer (40 s, one line every 0.5 s) runs under every test below;
# a's certificate (60 s) is renewed at half-life in the middle of it.
serial_before=$(a_serial)
(for i in $(seq 80); do
	echo "line-$i"
	sleep 0.5
done) | zt_ns_exec "$a" timeout 60 socat -t 5 - "TCP:$C:8080" >"$ZT_WORK/transfer.out" 2>&1 &
transfer=$!

zt_test "control plane, agents and proxies run with the soft open-file limit raised to the hard one"
bad=""
for p in "3 control" "1 cni" "1 proxy" "2 proxy"; do
	# shellcheck disable=SC2086
	pid=$(mesh_pid $p)
	lim=$(awk '/^Max open files/ {print $4, $5}' "/proc/$pid/limits" 2>/dev/null)
	[ -n "$lim" ] && [ "${lim% *}" = "${lim#* }" ] || bad="$bad $p: ${lim:-none};"
done
if [ "$(ulimit -Sn)" != "$hard_nofile" ] && [ -z "$bad" ]; then zt_pass; else
	zt_fail "soft != hard for$bad (started with soft $(ulimit -Sn), hard $hard_nofile)"
fi

zt_test "traffic between the workloads goes through HBONE with identities issued by the control plane"
m1=$(mesh_mark 1)
reply=$(zt_send "$a" $C 8080 via-control)
line=$(mesh_wait_access 1 "$m1" "direction=outbound" 5)
if [ "$reply" = via-control ] && clog | grep -q "issued $(mesh_id sa-a) to node node1" &&
	clog | grep -q "issued $(mesh_id sa-c) to node node2"; then
	mesh_expect_fields "$line" "dst.hbone_addr=$C:8080" "dst.identity=$(mesh_id sa-c)" "src.identity=$(mesh_id sa-a)"
else
	zt_fail "reply '$reply'; control log: $(clog | grep issued)"
fi

zt_test "proxies report ready (readiness 200)"
zt_expect_eq "$(zt_ns_exec "$(zt_node_ns 1)" curl -s -o /dev/null -w '%{http_code}' localhost:15021/healthz/ready)" 200

# eventually CMD...: runs CMD every 50 ms until it succeeds; fails after
# 10 s. (How fast a change spreads is a speed figure, not checked here.)
eventually() {
	local deadline=$(($(zt_now_ms) + 10000))
	while [ "$(zt_now_ms)" -lt "$deadline" ]; do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}

zt_test "a new workload in a new file takes effect on the proxies"
mesh_enroll 2 "$d" d sa-d || zt_log "enroll d failed"
write_cfg more.yaml "workloads:
$(wl d $D sa-d node2)"
d_meshed() {
	local m
	m=$(mesh_mark 1)
	[ "$(zt_send "$a" $D 8080 dd 1)" = dd ] || return 1
	mesh_wait_access 1 "$m" "direction=outbound" 1 | grep -q "dst.identity=$(mesh_id sa-d)"
}
if eventually d_meshed; then zt_pass; else zt_fail "d not meshed after 10 s"; fi

zt_test "a pod enrolled before its workload is configured: its first connection waits for the config"
mesh_enroll 2 "$e" e sa-e || zt_log "enroll e failed"
m2=$(mesh_mark 2)
zt_send "$e" $C 8080 early 8 >"$ZT_WORK/early.out" &
early=$!
# Not a synchronization: if the configuration came first, the connection
# would not wait at all and the check below would still hold; the second
# gives it the chance to wait, which is the case this test is for.
sleep 1
write_cfg e.yaml "workloads:
$(wl e $E sa-e node2)"
wait "$early"
line=$(mesh_wait_access 2 "$m2" "direction=outbound" 5)
if [ "$(cat "$ZT_WORK/early.out")" = early ]; then
	mesh_expect_fields "$line" "src.identity=$(mesh_id sa-e)" "dst.identity=$(mesh_id sa-c)"
else
	zt_fail "reply '$(cat "$ZT_WORK/early.out")'"
fi

zt_test "a new policy takes effect on the proxies"
write_cfg policy.yaml "policies:
- {name: no-9090, namespace: default, scope: Namespace, action: Deny, rules: [[[ {destinationPorts: [9090]} ]]]}"
denied() { [ -z "$(zt_send "$a" $C 9090 x 1)" ]; }
if eventually denied && [ "$(zt_send "$a" $C 8080 y 2)" = y ]; then zt_pass; else zt_fail "9090 still open"; fi

zt_test "a removed workload stops being meshed"
rm "$CFG/more.yaml"
d_plain() {
	local m
	m=$(mesh_mark 1)
	zt_send "$a" $D 8080 dd 1 >/dev/null
	mesh_wait_access 1 "$m" "direction=outbound" 1 | grep -vq "dst.hbone_addr=$D"
}
if eventually d_plain; then zt_pass; else zt_fail "d still meshed"; fi

zt_test "a broken file is refused with file and line; the last good state stays served"
write_cfg policy.yaml "policies:
- {name: no-9090, namespace: default, scope: Namespace, action: Deny, colour: blue}"
if mesh_wait_grep "$(mesh_log 3 control)" "configuration refused.*policy.yaml:2: policies\[0\]\.colour" 3 &&
	denied && [ "$(zt_send "$a" $C 8080 still 2)" = still ]; then
	zt_pass
else
	zt_fail "$(clog | grep -i refused)"
fi

zt_test "the control plane restarts (now with a serving certificate from files): traffic goes on meanwhile, proxies reconnect and converge"
# A serving certificate made by openssl from the mesh CA, for the node 3 address only.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=control \
	-keyout "$ZT_WORK/control-key.pem" -out "$ZT_WORK/control.csr" 2>/dev/null
printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$CP" >"$ZT_WORK/control.ext"
openssl x509 -req -in "$ZT_WORK/control.csr" -CA "$MESH_CA/ca-cert.pem" -CAkey "$MESH_CA/ca-key.pem" \
	-set_serial 7 -days 1 -extfile "$ZT_WORK/control.ext" -out "$ZT_WORK/control-leaf.pem" 2>/dev/null
cat "$ZT_WORK/control-leaf.pem" "$MESH_CA/ca-cert.pem" >"$ZT_WORK/control-chain.pem"
mesh_stop 3 control
ok_down=$([ "$(zt_send "$a" $C 8080 down)" = down ] && echo yes)
# While it is down the policy is dropped: after the restart 9090 opens again.
rm "$CFG/policy.yaml"
start_control --tls-cert "$ZT_WORK/control-chain.pem" --tls-key "$ZT_WORK/control-key.pem"
open_again() { [ "$(zt_send "$a" $C 9090 back 1)" = back ]; }
ok_up=""
for _ in $(seq 100); do
	open_again && { ok_up=yes; break; }
	sleep 0.2
done
# Both proxies come back; not necessarily together (their reconnect
# backoff is jittered), and 9090 opening proves only node 2's (the policy
# is enforced at the destination), so each stream is waited for.
streams=0
for _ in $(seq 100); do
	streams=$(grep -c "xDS stream from node" "$(mesh_log 3 control)")
	[ "$streams" -ge 2 ] && break
	sleep 0.1
done
if [ "$ok_down" = yes ] && [ "$ok_up" = yes ] && [ "$streams" -ge 2 ] &&
	! grep -q "minted from the CA" "$(mesh_log 3 control)"; then zt_pass; else
	zt_fail "down '$ok_down' up '$ok_up' streams $streams"
fi

cjs() { # cjs SUBCOMMAND TOKEN ARGS...: the grpc-js client against the control plane
	local sub=$1 tok=$2
	shift 2
	echo "$tok" >"$ZT_WORK/jstoken"
	zt_ns_exec "$(zt_node_ns 1)" node "$conf/control_client.js" "$sub" --target "$CP:15012" \
		--root-ca "$MESH_CA/root-cert.pem" --token-file "$ZT_WORK/jstoken" --node-name node1 "$@" \
		2>>"$ZT_WORK/cjs.err"
}

# A client that connects and says nothing (no TLS, no stream): the control
# plane closes it 10 s later. It runs under the tests below; checked at the end.
(
	t0=$(zt_now_ms)
	zt_ns_exec "$(zt_node_ns 1)" timeout 40 bash -c "exec 3<>/dev/tcp/$CP/15012 && cat <&3 >/dev/null"
	echo "$(($(zt_now_ms) - t0))" >"$ZT_WORK/idle.ms"
) &
idle=$!

zt_test "grpc-js as an xDS client: both types arrive, decode and match the directory; a NACK is logged"
write_cfg policy.yaml "policies:
- {name: no-9090, namespace: default, scope: Namespace, action: Deny, rules: [[[ {destinationPorts: [9090]} ]]]}"
eventually denied || zt_log "the policy did not reach the proxies"
cjs ads "$TOKEN1" --out "$ZT_WORK/ads.jsonl" --exit-after-ms 1500 --nack default/no-9090 >/dev/null
rc=$?
got=$(python3 -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
names = {}
for l in lines:
    if "resources" in l:
        names.setdefault(l["type_url"].split(".")[-1], []).extend(r["name"] for r in l["resources"])
print(sorted(names.get("Address", [])), names.get("Authorization"), lines[-1].get("by"))' "$ZT_WORK/ads.jsonl")
if [ $rc = 0 ] && [ "$got" = "['a', 'c', 'e'] ['default/no-9090'] client" ] &&
	mesh_wait_grep "$(mesh_log 3 control)" "node node1 rejected type.googleapis.com/istio.security.Authorization.*default/no-9090" 3; then
	zt_pass
else
	zt_fail "rc $rc, got $got"
fi

zt_test "grpc-js reconnecting with initial_resource_versions gets only the difference"
cjs ads "$TOKEN1" --out "$ZT_WORK/ads1.jsonl" --exit-after-ms 1000 --save-versions "$ZT_WORK/versions.json" >/dev/null
# Claim a stale version of workload a and a resource that no longer exists.
python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
addr = "type.googleapis.com/istio.workload.Address"
v[addr]["a"] = "0000000000000000"
v[addr]["gone"] = "1234"
json.dump(v, open(sys.argv[1], "w"))' "$ZT_WORK/versions.json"
cjs ads "$TOKEN1" --out "$ZT_WORK/ads2.jsonl" --exit-after-ms 1000 --initial-versions "$ZT_WORK/versions.json" >/dev/null
got=$(python3 -c '
import json, sys
out = []
for l in open(sys.argv[1]):
    l = json.loads(l)
    if "resources" in l:
        out.append("%s:%s-%s" % (l["type_url"].split(".")[-1], ",".join(r["name"] for r in l["resources"]), ",".join(l["removed"])))
print(" ".join(out))' "$ZT_WORK/ads2.jsonl")
zt_expect_eq "$got" "Address:a-gone Authorization:-"

zt_test "grpc-js without a valid node token: UNAUTHENTICATED"
cjs ads not-a-token-0123456789 --out "$ZT_WORK/ads-bad.jsonl" --exit-after-ms 3000 >/dev/null
rc=$?
zt_expect_eq "$rc $(tail -1 "$ZT_WORK/ads-bad.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["code"])')" "3 16"

zt_test "a node asking for another node's identity is refused (PERMISSION_DENIED) and logged"
out=$(cjs csr "$TOKEN1" --identity "$(mesh_id sa-c)" --impersonate)
rc=$?
if [ $rc = 4 ] && echo "$out" | grep -q '"code":7' &&
	mesh_wait_grep "$(mesh_log 3 control)" "certificate refused to node node1.*no workload with identity $(mesh_id sa-c) runs on node node1" 3; then
	zt_pass
else
	zt_fail "rc $rc: $out"
fi

zt_test "a proxy asking for another node's identity (a pod on node 1 claiming sa-c) is refused"
mesh_enroll 1 "$b" b sa-c || zt_log "enroll b failed"
if mesh_wait_grep "$(mesh_log 3 control)" "certificate refused to node node1 \($(zt_node_ip 1):[0-9]+\): no workload with identity $(mesh_id sa-c) runs on node node1" 5 &&
	mesh_wait_grep "$(mesh_log 1 proxy)" "certificate for $(mesh_id sa-c) failed" 5; then
	zt_pass
else
	zt_fail "no refusal seen"
fi

zt_test "...and node 1's /config_dump shows that identity as unavailable, with no certificate"
state=$(zt_ns_exec "$(zt_node_ns 1)" curl -s -m 5 localhost:15000/config_dump | python3 -c '
import json, sys
for c in json.load(sys.stdin)["certificates"]:
    if c["identity"].endswith("/sa/sa-c"):
        print(c["state"].split(":")[0], len(c["certChain"]))')
zt_expect_eq "$state" "Unavailable 0"
mesh_unenroll 1 b

zt_test "...while its own workload's identity is issued and verifies (chain to the mesh root)"
out=$(cjs csr "$TOKEN1" --identity "$(mesh_id sa-a)" --impersonate --ttl 600)
zt_expect_eq "$? $(echo "$out" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["ok"], j["verified"], j["chain_len"])')" "0 True True 3"

zt_test "an unparseable CSR gets INVALID_ARGUMENT with the reason"
echo "not a CSR" >"$ZT_WORK/garbage.csr"
out=$(cjs csr "$TOKEN1" --identity "$(mesh_id sa-a)" --csr-file "$ZT_WORK/garbage.csr")
if [ $? = 4 ] && echo "$out" | grep -q '"code":3' && echo "$out" | grep -q "bad CSR"; then zt_pass; else zt_fail "$out"; fi

zt_test "monitoring port: /ready, and istiod's metric names counting what happened since the restart"
metrics=$(zt_ns_exec "$(zt_node_ns 3)" curl -s -m 5 127.0.0.1:15014/metrics)
ready=$(zt_ns_exec "$(zt_node_ns 3)" curl -s -m 5 -o /dev/null -w '%{http_code}' 127.0.0.1:15014/ready)
val() { echo "$metrics" | awk -v k="$1" '$1 == k {print $2}'; }
# Lint: only the _total/_count naming notes that istiod's own names draw.
lint=$(echo "$metrics" | promtool check metrics 2>&1 | grep -v -E '^(citadel_server|pilot)_[a-z_]+ (counter metrics should have "_total" suffix|non-histogram and non-summary metrics should not have "_count" suffix)$')
# unauthorized: the grpc-js request and at least one from node 1's proxy.
unauthorized=$(val ztunnel_control_csr_unauthorized_total)
got="ready=$ready xds=$(val pilot_xds) unauthorized>=2:$([ "${unauthorized:-0}" -ge 2 ] && echo yes)"
got="$got bad_csr=$(val citadel_server_csr_parsing_err_count) rejects=$(val 'pilot_total_xds_rejects{type="authorization"}')"
got="$got unauthenticated=$(val ztunnel_control_xds_unauthenticated_total) lint='$lint'"
issued=$(val citadel_server_success_cert_issuance_count)
if [ "${issued:-0}" -ge 1 ]; then
	zt_expect_eq "$got" "ready=200 xds=2 unauthorized>=2:yes bad_csr=1 rejects=1 unauthenticated=1 lint=''"
else
	zt_fail "issued '$issued'; $got"
fi

zt_test "a connection that opens no authenticated stream is closed after 10 s (proxies' connections stay)"
wait "$idle"
idle_ms=$(cat "$ZT_WORK/idle.ms" 2>/dev/null || echo none)
if [ "$idle_ms" != none ] && [ "$idle_ms" -ge 9500 ] && [ "$idle_ms" -lt 20000 ]; then zt_pass; else
	zt_fail "the idle connection ended after $idle_ms ms"
fi

zt_test "a short-lived certificate was renewed during the 40 s transfer, which went through unbroken"
wait "$transfer"
# The proof is the certificate node 1 actually serves: another serial than
# the one it served when the transfer started.
serial_after=$(a_serial)
lines=$(grep -c '^line-' "$ZT_WORK/transfer.out")
if [ "$lines" = 80 ] && [ "$(tail -1 "$ZT_WORK/transfer.out")" = line-80 ] &&
	[ -n "$serial_before" ] && [ -n "$serial_after" ] && [ "$serial_before" != "$serial_after" ]; then
	zt_pass
else
	zt_fail "$lines lines echoed, sa-a's serial '$serial_before' -> '$serial_after'"
fi

mesh_finish
