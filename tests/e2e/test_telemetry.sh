#!/usr/bin/env bash
# Telemetry and admin on real traffic: istio_tcp_* counters with Istio's
# labels on both reporters after known traffic, a DENY counted as failed,
# the exposition accepted by promtool, readiness, /config_dump, /logging,
# 404/405, the admin port refusing browsers (foreign Host, Origin), and POST
# /quitquitquit draining the proxy.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

A=10.200.1.2 C=10.200.2.2
zt_test "setup: a on node 1, c on node 2 (port 9090 denied)"
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && c=$(zt_pod_add 2 1 c) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: shop, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1, canonicalName: front, canonicalRevision: v1}
		- {uid: c, name: c, namespace: shop, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2, canonicalName: pay, canonicalRevision: v2}
		policies:
		- {name: no-9090, namespace: shop, scope: Namespace, action: Deny, rules: [[[ {destinationPorts: [9090]} ]]]}
	Y
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	MESH_NS=shop mesh_enroll 1 "$a" a sa-a && MESH_NS=shop mesh_enroll 2 "$c" c sa-c || return 1
	zt_echo_server "$c" 8080 && zt_echo_server "$c" 9090
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi
get() { zt_ns_exec "$(zt_node_ns "$1")" curl -s -m 5 "${@:2}"; }
# value N REPORTER METRIC FLAGS: the value of METRIC for a->c on node N.
value() {
	get "$1" localhost:15020/metrics | grep "^$3{reporter=\"$2\"" |
		grep 'source_workload="a"' | grep 'destination_workload="c"' |
		grep "response_flags=\"$4\"" | awk '{ s += $NF } END { print s + 0 }'
}

for i in 1 2 3; do zt_send "$a" $C 8080 hello >/dev/null; done
zt_send "$a" $C 9090 nope 2 >/dev/null
# Counted when both ends have closed: wait for the last of them (the denial
# on both nodes) rather than for a fixed time.
for _ in $(seq 100); do
	[ "$(value 2 destination istio_tcp_connections_failed_total DENY)" = 1 ] &&
		[ "$(value 1 source istio_tcp_connections_failed_total DENY)" = 1 ] &&
		[ "$(value 1 source istio_tcp_connections_closed_total -)" = 3 ] && break
	sleep 0.05
done

# The denied connection opens under response_flags "-" and closes under
# "DENY", as in Istio's ztunnel: 4 opened, 3 closed without a flag.
zt_test "source reporter: 4 opened, 3 closed cleanly, 15 bytes each way"
got="$(value 1 source istio_tcp_connections_opened_total -) $(value 1 source istio_tcp_connections_closed_total -)"
got="$got $(value 1 source istio_tcp_received_bytes_total -) $(value 1 source istio_tcp_sent_bytes_total -)"
zt_expect_eq "$got" "4 3 15 15"

zt_test "destination reporter sees the same 3 connections"
got="$(value 2 destination istio_tcp_connections_opened_total -) $(value 2 destination istio_tcp_received_bytes_total -)"
zt_expect_eq "$got" "3 15"

zt_test "labels: canonical names, principals, mutual_tls, in Istio's order"
line=$(get 1 localhost:15020/metrics | grep '^istio_tcp_connections_opened_total{reporter="source"' | grep 'response_flags="-"' | head -1)
want='reporter="source",source_workload="a",source_canonical_service="front",source_canonical_revision="v1",source_workload_namespace="shop",source_principal="spiffe://cluster.local/ns/shop/sa/sa-a",source_app="front",source_version="v1",source_cluster="Kubernetes",destination_service="unknown",destination_service_namespace="unknown",destination_service_name="unknown",destination_workload="c",destination_canonical_service="pay",destination_canonical_revision="v2",destination_workload_namespace="shop",destination_principal="spiffe://cluster.local/ns/shop/sa/sa-c",destination_app="pay",destination_version="v2",destination_cluster="Kubernetes",request_protocol="tcp",response_flags="-",connection_security_policy="mutual_tls"'
case "$line" in *"{$want,source_region="*) zt_pass ;; *) zt_fail "got: $line" ;; esac

zt_test "a denied connection is counted as failed with response_flags=DENY"
zt_expect_eq "$(value 2 destination istio_tcp_connections_failed_total DENY) $(value 1 source istio_tcp_connections_failed_total DENY)" "1 1"

zt_test "the exposition passes promtool (only Istio's own *_count gauge names are linted)"
get 1 localhost:15020/metrics >"$ZT_WORK/metrics.txt"
out=$(promtool check metrics <"$ZT_WORK/metrics.txt" 2>&1)
rc=$?
rest=$(echo "$out" | grep -v '^workload_manager_\(active\|pending\)_proxy_count non-histogram' | grep -v '^$')
if { [ $rc = 0 ] || [ $rc = 3 ]; } && [ -z "$rest" ]; then zt_pass; else zt_fail "rc=$rc: $out"; fi

zt_test "/stats/prometheus serves the same families"
get 1 localhost:15020/stats/prometheus | grep -q '^istio_tcp_connections_opened_total' && zt_pass || zt_fail "missing"

zt_test "readiness: 200 ready once the agent's snapshot is in"
zt_expect_eq "$(get 1 -o /dev/null -w '%{http_code}' localhost:15021/healthz/ready)" 200

zt_test "readiness: 500 with the blocker while the node agent is away, 200 again after"
mesh_stop 2 cni
for _ in $(seq 60); do
	[ "$(get 2 -o /dev/null -w '%{http_code}' localhost:15021/healthz/ready)" = 500 ] && break
	sleep 0.05
done
down=$(get 2 -w ' %{http_code}' localhost:15021/healthz/ready)
mesh_cni_start 2
for _ in $(seq 40); do
	[ "$(get 2 -o /dev/null -w '%{http_code}' localhost:15021/healthz/ready)" = 200 ] && break
	sleep 0.1
done
up=$(get 2 -o /dev/null -w '%{http_code}' localhost:15021/healthz/ready)
zt_expect_eq "$down / $up" "not ready, pending: {workload proxy manager}
 500 / 200"

zt_test "/config_dump: workloads, policies, a's certificate, a's workload state"
get 1 localhost:15000/config_dump >"$ZT_WORK/dump.json"
got=$(python3 - "$ZT_WORK/dump.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
uids = sorted(w["uid"] for w in d["workloads"])
pols = [p["name"] for p in d["policies"]]
certs = {c["identity"]: c["state"] for c in d["certificates"]}
ws = d["workloadState"]["a"]["state"]
print(uids, pols, certs.get("spiffe://cluster.local/ns/shop/sa/sa-a"), ws)
PY
)
zt_expect_eq "$got" "['a', 'c'] ['no-9090'] Available Up"

zt_test "POST /logging?level=debug changes the level; GET is 405; unknown paths 404"
lvl=$(get 1 -X POST 'localhost:15000/logging?level=debug')
c405=$(get 1 -o /dev/null -w '%{http_code}' localhost:15000/logging)
c404=$(get 1 -o /dev/null -w '%{http_code}' localhost:15020/nope)
c404b=$(get 1 -o /dev/null -w '%{http_code}' localhost:15021/nope)
if echo "$lvl" | grep -q "debug" && [ "$c405" = 405 ] && [ "$c404" = 404 ] && [ "$c404b" = 404 ]; then
	zt_pass
else
	zt_fail "logging '$lvl', GET $c405, 404s $c404 $c404b"
fi

zt_test "the admin port is not reachable from outside the node's loopback"
# Positive control first: from node 2 the same curl reaches node 1's
# metrics port, so a refusal on 15000 is the admin port's binding, not the
# path; curl's exit 7 is "connection refused", nothing else.
zt_ns_exec "$(zt_node_ns 2)" curl -s -m 5 -o /dev/null "http://$(zt_node_ip 1):15020/metrics"
ctl=$?
zt_ns_exec "$(zt_node_ns 2)" curl -s -m 5 -o /dev/null "http://$(zt_node_ip 1):15000/"
rc=$?
if [ "$ctl" = 0 ] && [ "$rc" = 7 ]; then zt_pass; else
	zt_fail "metrics port curl exit $ctl (want 0), admin port curl exit $rc (want 7)"
fi

# A web page in a local browser reaches 127.0.0.1:15000 by a cross-site POST
# (Origin) or by DNS rebinding (its own name in Host): both are refused, the
# proxy keeps running. The next check is the accepted twin.
zt_test "POST /quitquitquit or /logging with a foreign Host or an Origin: 403, nothing happens"
pid=$(mesh_pid 1 proxy)
lvl0=$(get 1 -X POST localhost:15000/logging)
c1=$(get 1 -o /dev/null -w '%{http_code}' -X POST -H 'Host: rebind.example:15000' localhost:15000/quitquitquit)
c2=$(get 1 -o /dev/null -w '%{http_code}' -X POST -H 'Origin: http://evil.example' localhost:15000/quitquitquit)
c3=$(get 1 -o /dev/null -w '%{http_code}' -X POST -H 'Host: rebind.example' 'localhost:15000/logging?level=trace')
lvl1=$(get 1 -X POST localhost:15000/logging)
if [ "$c1 $c2 $c3" = "403 403 403" ] && [ "$lvl1" = "$lvl0" ] && kill -0 "$pid" 2>/dev/null; then
	zt_pass
else
	zt_fail "codes $c1 $c2 $c3, level '$lvl0' -> '$lvl1'"
fi

zt_test "POST /quitquitquit drains and stops the proxy"
pid=$(mesh_pid 1 proxy)
reply=$(get 1 -X POST localhost:15000/quitquitquit)
for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
if [ "$reply" = "shutdown now" ] && ! kill -0 "$pid" 2>/dev/null; then
	zt_pass
	rm -f "$ZT_WORK/proxy1.pid"
	sed -i "/^$pid /d" "$ZT_WORK/pids"
else
	zt_fail "reply '$reply', proxy still running"
fi

zt_test "LOG_FORMAT=json: one JSON object per access line with the same fields"
LOG_FORMAT=json mesh_proxy_start 1
m1=$(mesh_mark 1)
zt_send "$a" $C 8080 json-please >/dev/null
mesh_wait_grep "$(mesh_log 1 proxy)" '"connection complete"' 5 >/dev/null
got=$(tail -n +"$((m1 + 1))" "$(mesh_log 1 proxy)" | grep '"connection complete"' | head -1 |
	python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["scope"], d["direction"], d["bytes_sent"], d["src.identity"], d["dst.workload"])')
zt_expect_eq "$got" "access outbound 11 spiffe://cluster.local/ns/shop/sa/sa-a c"

mesh_finish
