#!/usr/bin/env bash
# The proxy as istiod's client, against an implementation that is not ours:
# a fake istiod on Node's @grpc/grpc-js (tests/conformance/fake_istiod.js)
# serves delta ADS and signs workload certificates (CreateCertificate). Checks the requests Istio's ztunnel sends (node on the
# first request of each type, Address before Authorization, bearer token,
# clusterid, ACK nonces), traffic on the workloads it pushed, readiness
# after the first ACKs, a pushed policy and a removal taking effect, a
# malformed resource NACKed by name while the rest applies, and surviving a
# control-plane outage with initial_resource_versions on reconnect.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup
conf="$mesh_repo/tests/conformance"

A=10.200.1.2 G=10.200.1.3 C=10.200.2.2 H=10.200.2.3 CP=$(zt_node_ip 1)
TOKEN=zt-e2e-token-123
zt_test "setup: fake istiod (grpc-js) on node 1, proxies on both nodes fed only by xDS"
# state_json [EXTRA]: the fake's state; workload a unless NO_A=1, workload c
# unless NO_C=1, workload h if WITH_H=1; EXTRA is appended as more top-level
# members.
state_json() {
	local wls=""
	if [ "${NO_A:-0}" != 1 ]; then
		wls='{"uid": "a", "name": "a", "namespace": "default", "serviceAccount": "sa-a", "ips": ["'$A'"], "tunnelProtocol": "HBONE", "node": "node1"}'
	fi
	if [ "${NO_C:-0}" != 1 ]; then
		wls="${wls:+$wls, }"'{"uid": "c", "name": "c", "namespace": "default", "serviceAccount": "sa-c", "ips": ["'$C'"], "tunnelProtocol": "HBONE", "node": "node2"}'
	fi
	if [ "${WITH_H:-0}" = 1 ]; then
		wls="${wls:+$wls, }"'{"uid": "h", "name": "h", "namespace": "default", "serviceAccount": "sa-h", "ips": ["'$H'"], "tunnelProtocol": "HBONE", "node": "node2"}'
	fi
	printf '{"workloads": [%s]%s}\n' "$wls" "${1:+, $1}"
}
write_state() {
	printf '%s\n' "$1" >"$ZT_WORK/state.json.tmp" && mv "$ZT_WORK/state.json.tmp" "$ZT_WORK/state.json"
}
start_fake() {
	zt_bg "$(zt_node_ns 1)" "fake-istiod-$1" node "$conf/fake_istiod.js" --listen "$CP:15012" \
		--tls-cert "$ZT_WORK/cp/istiod-chain.pem" --tls-key "$ZT_WORK/cp/istiod-key.pem" \
		--config "$ZT_WORK/state.json" --ca-dir "$ZT_WORK/cp/ca" --log "$ZT_WORK/events.jsonl" \
		--token "$TOKEN"
	FAKE_PID=$ZT_BG_PID
	mesh_wait_grep "$ZT_WORK/fake-istiod-$1.log" "listening" 20
}
start_proxy() {
	# shellcheck disable=SC2046
	mesh_start_bg "$1" proxy env $(mesh_env "$1") XDS_ADDRESS="https://$CP:15012" \
		XDS_ROOT_CA="$ZT_WORK/cp/ca/root-cert.pem" ALT_XDS_HOSTNAME=istiod.test \
		CA_ADDRESS="https://$CP:15012" ALT_CA_HOSTNAME=istiod.test \
		AUTH_TOKEN="$ZT_WORK/token" NODE_NAME="node$1" \
		POD_NAME="ztunnel-$1" POD_NAMESPACE=istio-system ISTIO_META_E2E=yes \
		RUST_LOG="${LOGLVL:-info}" "$ZT_BIN" proxy
	mesh_wait_grep "$(mesh_log "$1" proxy)" "snapshot received" 10
}
ready_code() { zt_ns_exec "$(zt_node_ns "$1")" curl -s -o /dev/null -w '%{http_code}' localhost:15021/healthz/ready; }
setup() {
	"$conf/setup.sh" || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && g=$(zt_pod_add 1 2 g) || return 1
	c=$(zt_pod_add 2 1 c) && h=$(zt_pod_add 2 2 h) || return 1
	"$conf/mkcerts.sh" "$ZT_WORK/cp" istiod.test >/dev/null || return 1
	MESH_CA="$ZT_WORK/cp/ca"
	echo "$TOKEN" >"$ZT_WORK/token"
	write_state "$(state_json)"
	mesh_cni_start 1 && mesh_cni_start 2 || return 1
	# Node 2's proxy starts before the control plane is up: not ready
	# until its first ACKs (checked below).
	start_proxy 2 || return 1
	ready_before=$(ready_code 2)
	start_fake 1 || return 1
	start_proxy 1 || return 1
	local _
	for _ in $(seq 200); do [ "$(ready_code 2)" = 200 ] && break; sleep 0.1; done
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$c" c sa-c || return 1
	zt_echo_server "$c" 8080 && zt_echo_server "$c" 9090
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi
ev() { cat "$ZT_WORK/events.jsonl"; }
py() { python3 -c "$1" "$ZT_WORK/events.jsonl"; }

zt_test "traffic between workloads known only from xDS goes through HBONE"
m1=$(mesh_mark 1)
reply=$(zt_send "$a" $C 8080 via-xds)
line=$(mesh_wait_access 1 "$m1" "direction=outbound" 5)
if [ "$reply" = via-xds ]; then
	mesh_expect_fields "$line" "dst.hbone_addr=$C:8080" "dst.identity=$(mesh_id sa-c)" "src.identity=$(mesh_id sa-a)"
else
	zt_fail "reply '$reply'"
fi

zt_test "certificates came from the CA: one CSR per workload, impersonated, P-256, critical SAN"
got=$(py '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
out = []
for sa in ("sa-a", "sa-c"):
    ident = "spiffe://cluster.local/ns/default/sa/" + sa
    cs = [e for e in ev if e["event"] == "csr" and e["identity"] == ident and e["result"] == "signed"]
    ok = bool(cs) and all(c["impersonated"] == ident and c["csr"]["key"] == "P-256" and c["csr"]["san_critical"] and c["csr"]["subject_empty"] and c["metadata"]["authorization"] == "Bearer zt-e2e-token-123" for c in cs)
    out.append("%s %s" % (sa, ok))
print(" ".join(out))')
zt_expect_eq "$got" "sa-a True sa-c True"

zt_test "each proxy's first requests: Address then Authorization, node on both, token and clusterid"
got=$(py '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
out = []
for node in ("ztunnel~1.1.1.1~ztunnel-1.istio-system~istio-system.svc.cluster.local",
             "ztunnel~1.1.1.1~ztunnel-2.istio-system~istio-system.svc.cluster.local"):
    reqs = [e for e in ev if e["event"] == "request" and e.get("node_id") == node]
    first = [r["type_url"].split("/")[-1] for r in reqs[:2]]
    ok_meta = all(r["metadata"]["authorization"] == "Bearer zt-e2e-token-123" and r["metadata"]["clusterid"] == "Kubernetes" for r in reqs)
    nm = reqs[0]["node_metadata"] if reqs else {}
    out.append("%s %s %s %s" % (",".join(first), ok_meta, nm.get("NAMESPACE"), nm.get("E2E")))
print(" | ".join(out))')
zt_expect_eq "$got" "istio.workload.Address,istio.security.Authorization True istio-system yes | istio.workload.Address,istio.security.Authorization True istio-system yes"

zt_test "every response was ACKed with its nonce, without error"
got=$(py '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
sent = {e["nonce"] for e in ev if e["event"] == "response"}
acked = {e["response_nonce"] for e in ev if e["event"] == "request" and e["response_nonce"] and not e["error_detail"]}
print(len(sent) > 0 and sent <= acked)')
zt_expect_eq "$got" True

zt_test "readiness: 500 before the control plane answered, 200 once both types were ACKed"
zt_expect_eq "$ready_before -> $(ready_code 2)" "500 -> 200"

zt_test "a pushed DENY policy applies"
write_state "$(state_json '"policies": [{"name": "no-9090", "namespace": "default", "scope": "NAMESPACE", "action": "DENY", "rules": [{"clauses": [{"matches": [{"destinationPorts": [9090]}]}]}]}]')"
ok=""
for _ in $(seq 20); do
	[ -z "$(zt_send "$a" $C 9090 x 1)" ] && [ "$(zt_send "$a" $C 8080 y 2)" = y ] && { ok=1; break; }
	sleep 0.1
done
if [ -n "$ok" ]; then zt_pass; else zt_fail "9090 still open"; fi

zt_test "a malformed resource is NACKed by name, the others still apply"
write_state "$(state_json '"raw": [{"type": "address", "name": "broken-one", "hex": "0a05ff"}]')"
for _ in $(seq 30); do
	grep -q '"broken-one' "$ZT_WORK/events.jsonl" && grep -q 'error_detail":{' "$ZT_WORK/events.jsonl" && break
	sleep 0.1
done
got=$(py '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
nacks = [e["error_detail"]["message"] for e in ev if e["event"] == "request" and e["error_detail"]]
print(any(m.startswith("broken-one: ") for m in nacks))')
# The policy was dropped from the state at the same time: 9090 open again.
if [ "$got" = True ] && [ "$(zt_send "$a" $C 9090 open 2)" = open ]; then zt_pass; else zt_fail "NACK $got"; fi

# a_to_c_meshed: one a->c connection; true if node 1 sent it through HBONE.
a_to_c_meshed() {
	local m line
	m=$(mesh_mark 1)
	zt_send "$a" $C 8080 probe 3 >/dev/null
	line=$(mesh_wait_access 1 "$m" "direction=outbound" 5)
	[ -n "$(mesh_field "$line" dst.hbone_addr)" ]
}
# until_meshed yes|no: until a->c's meshing is as asked (10 s at most).
until_meshed() {
	local _
	for _ in $(seq 20); do
		if a_to_c_meshed; then [ "$1" = yes ] && return 0; else [ "$1" = no ] && return 0; fi
		sleep 0.2
	done
	return 1
}

zt_test "a removed workload stops being meshed"
NO_C=1 write_state "$(NO_C=1 state_json)"
if until_meshed no; then zt_pass; else zt_fail "a->c still goes through HBONE"; fi
write_state "$(state_json)"
until_meshed yes || zt_log "c not meshed again after it was put back"

zt_test "the control plane goes away: traffic goes on with the last state (still HBONE to c)"
zt_bg_stop "$FAKE_PID"
sed -i "/^$FAKE_PID /d" "$ZT_WORK/pids"
# The last state has c as an HBONE workload: still meshed, not merely
# reachable (an empty state would send it plaintext).
if [ "$(zt_send "$a" $C 8080 still-here)" = still-here ] && a_to_c_meshed; then zt_pass; else
	zt_fail "a->c not carried through HBONE without the control plane"
fi

zt_test "it comes back: both proxies reconnect with initial_resource_versions"
before=$(grep -c '"event":"request"' "$ZT_WORK/events.jsonl")
start_fake 2
ok=""
for _ in $(seq 60); do
	# Distinct proxies (node ids), not requests: each proxy sends one per type.
	got=$(py '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
reqs = [e for e in ev if e["event"] == "request"]['"$before"':]
print(len({r["node_id"] for r in reqs if r["has_node"] and r["initial_resource_versions"]}))')
	[ "$got" -ge 2 ] && { ok=1; break; }
	sleep 0.2
done
if [ -n "$ok" ] && [ "$(zt_send "$a" $C 8080 back)" = back ]; then zt_pass; else zt_fail "proxies reconnected with versions: $got"; fi

# xds_metric N SERIES: the value of SERIES in node N's /metrics (0 if absent).
xds_metric() {
	zt_ns_exec "$(zt_node_ns "$1")" curl -s -m 5 localhost:15020/metrics |
		awk -v s="$2" '$1 == s { v = $2 } END { print v + 0 }'
}
ADDR_URL=type.googleapis.com/istio.workload.Address AUTHZ_URL=type.googleapis.com/istio.security.Authorization
zt_test "metrics: istio_xds_message_total and _bytes_total count both types' responses by url"
got=""
for n in 1 2; do
	got="$got node$n:$(xds_metric $n "istio_xds_message_total{url=\"$ADDR_URL\"}")"
	got="$got/$(xds_metric $n "istio_xds_message_total{url=\"$AUTHZ_URL\"}")"
	got="$got/$(xds_metric $n "istio_xds_message_bytes_total{url=\"$ADDR_URL\"}")"
done
# Every count nonzero: both types were pushed to both nodes, Address with
# workloads in it (Authorization may be empty, so its bytes are not checked).
if [[ ! $got =~ (^|[:/])0(/| |$) ]]; then zt_pass; else zt_fail "messages Address/Authorization, Address bytes: $got"; fi

zt_test "metrics: istio_xds_connection_terminations_total counts the attempts that ended"
# Node 2 started before the control plane listened (ConnectionError); both
# lost their stream when it went away (any reason).
refused=$(xds_metric 2 'istio_xds_connection_terminations_total{reason="ConnectionError"}')
ended1=0
for r in ConnectionError Error Reconnect Complete; do
	ended1=$((ended1 + $(xds_metric 1 "istio_xds_connection_terminations_total{reason=\"$r\"}")))
done
if [ "$refused" -ge 1 ] && [ "$ended1" -ge 1 ]; then zt_pass; else
	zt_fail "node 2 ConnectionError $refused, node 1 all reasons $ended1: $(zt_ns_exec "$(zt_node_ns 1)" curl -s -m 5 localhost:15020/metrics | grep istio_xds_)"
fi

zt_test "CA slow: node 2 holds at most 256 handshakes per pod and worker waiting for h's certificate"
# events_past N NAME: true once events.jsonl has more than N NAME events.
events_past() { [ "$(grep -c "\"event\":\"$2\"" "$ZT_WORK/events.jsonl" || true)" -gt "$1" ]; }
# The hold must be in force before h's certificate is asked for (an earlier
# state_loaded line, of this fake or the one before, does not say so), and
# the flood must come while the proxy still waits for the held answer (it
# gives up after 10 s): the proxy asks as soon as the state names h on its
# node, so the wait is for that CSR, counted from before the write.
loads0=$(grep -c '"event":"state_loaded"' "$ZT_WORK/events.jsonl" || true)
held0=$(grep -c '"event":"csr_held"' "$ZT_WORK/events.jsonl" || true)
write_state "$(WITH_H=1 state_json '"ca": {"hold": true}')"
mesh_eventually events_past "$loads0" state_loaded || zt_log "the fake did not load the hold"
mesh_eventually events_past "$held0" csr_held || zt_log "the fake is not holding h's CSR"
zt_echo_server "$h" 8080
mesh_enroll 2 "$h" h sa-h || zt_log "enroll h failed"
p2=$(mesh_pid 2 proxy)
fds0=$(ls /proc/"$p2"/fd | wc -l)
m2=$(mesh_mark 2)
# 700 raw connections to h's HBONE port from g, held open.
zt_bg "$g" flood python3 -c '
import socket, sys, time
socks = []
for _ in range(700):
    s = socket.socket()
    s.settimeout(10)
    s.connect(("'$H'", 15008))
    socks.append(s)
print("connected", len(socks), flush=True)
time.sleep(120)'
FLOOD_PID=$ZT_BG_PID
mesh_wait_grep "$ZT_WORK/flood.log" "connected 700" 30 >/dev/null
refused() { mesh_since 2 "$m2" | grep -c "too many connections waiting for the pod's certificate"; }
# 2 workers: at most 512 held, so at least 188 refused.
for _ in $(seq 200); do [ "$(refused)" -ge 188 ] && break; sleep 0.05; done
fds=$(ls /proc/"$p2"/fd | wc -l)
if [ "$(refused)" -ge 188 ] && [ $((fds - fds0)) -le 560 ]; then zt_pass; else
	zt_fail "refused $(refused), fds $fds0 -> $fds"
fi
zt_bg_stop "$FLOOD_PID"
sed -i "/^$FLOOD_PID /d" "$ZT_WORK/pids"

zt_test "CA answers again: h's certificate arrives and a->h works"
# Until it arrives the held sockets (their clients gone) still fill the cap.
write_state "$(WITH_H=1 state_json)"
if mesh_wait_grep "$(mesh_log 2 proxy)" "certificate for $(mesh_id sa-h) issued" 20; then
	zt_expect_eq "$(zt_send "$a" $H 8080 to-h 10)" "to-h"
else zt_fail "h's certificate never issued"; fi

zt_test "a certificate stays while a workload of the node uses it, and is forgotten after the last one"
certs() {
	zt_ns_exec "$(zt_node_ns 1)" curl -s -m 5 localhost:15000/config_dump |
		python3 -c 'import json,sys; print(" ".join(sorted(c["identity"].rsplit("/", 1)[-1] for c in json.load(sys.stdin)["certificates"])))'
}
before=$(certs)
mesh_unenroll 1 a
kept=$(certs)
NO_A=1 write_state "$(NO_A=1 state_json)"
after=$kept
for _ in $(seq 50); do
	after=$(certs)
	[ -z "$after" ] && break
	sleep 0.1
done
zt_expect_eq "$before -> $kept -> $after" "sa-a -> sa-a -> "

mesh_finish
