#!/usr/bin/env bash
# Inbound HBONE for waypoints, against the independent Go HBONE client
# (tests/interop/hbone_peer.go): a service-hostname :authority reaches the
# app of the pod that accepted it, on the port the service maps to, and an
# unknown hostname or an unmappable port is refused with 503; a pod whose
# workload has an application tunnel (PROXY, port 15088: a sandwiched
# waypoint) accepts a target that is not its own address and gets a PROXY v2
# header (parsed by an independent Python listener) naming the client, the
# target and the client's identity, while a pod without one still refuses
# such a target with 400; a waypoint pod without a tunnel (pw, a plain
# sandwich) accepts a foreign target only when that target names pw as its
# waypoint; traffic from a waypoint is authorized as the waypoint's
# identity. Needs root, Go and python3.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: g (Go client, not enrolled)
# node 2: c (echo app, endpoint of $SVC), d (allows only the waypoint's
#         identity), e (allows only the client's), w (application tunnel)
G=10.200.1.2
C=10.200.2.2 D=10.200.2.3 E=10.200.2.4 W=10.200.2.5 PW=10.200.2.6
# t: a workload (no pod needed) and s2: a service, both behind pw.
T=10.200.2.9 VIP_S2=10.96.0.20
VIP=10.96.0.10
SVC=echo.default.svc.cluster.local
TD=${MESH_TD}
zt_test "setup: Go client on node 1; c, d, e and a waypoint w with a PROXY application tunnel on node 2"
setup() {
	peer=$(mesh_peer) || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	g=$(zt_pod_add 1 1 g) || return 1
	c=$(zt_pod_add 2 1 c) && d=$(zt_pod_add 2 2 d) && e=$(zt_pod_add 2 3 e) &&
		w=$(zt_pod_add 2 4 w) && pw=$(zt_pod_add 2 5 pw) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n2.yaml" <<-Y
		workloads:
		- uid: c
		  name: c
		  namespace: default
		  serviceAccount: sa-c
		  workloadIps: ["$C"]
		  protocol: HBONE
		  node: node2
		  services: {"default/$SVC": {80: 8080, 82: 0, 90: 15006}}
		- {uid: d, name: d, namespace: default, serviceAccount: sa-d, workloadIps: ["$D"], protocol: HBONE, node: node2, authorizationPolicies: [default/allow-waypoint]}
		- {uid: e, name: e, namespace: default, serviceAccount: sa-e, workloadIps: ["$E"], protocol: HBONE, node: node2, authorizationPolicies: [default/allow-client]}
		- uid: w
		  name: w
		  namespace: default
		  serviceAccount: waypoint
		  workloadIps: ["$W"]
		  protocol: HBONE
		  node: node2
		  applicationTunnel: {protocol: PROXY, port: 15088}
		- {uid: pw, name: pw, namespace: default, serviceAccount: waypoint-plain, workloadIps: ["$PW"], protocol: HBONE, node: node2}
		- {uid: t, name: t, namespace: default, workloadIps: ["$T"], protocol: HBONE, node: node2, waypoint: {destination: "/$PW", hboneMtlsPort: 15008}}
		services:
		- {name: echo, namespace: default, hostname: $SVC, vips: ["/$VIP"], ports: {80: 8080, 82: 0, 90: 15006}}
		- {name: s2, namespace: default, hostname: s2.default.svc.cluster.local, vips: ["/$VIP_S2"], ports: {8080: 8080}, waypoint: {destination: "/$PW", hboneMtlsPort: 15008}}
		policies:
		- {name: allow-waypoint, namespace: default, scope: WorkloadSelector, action: Allow, rules: [[[{principals: [{Exact: $TD/ns/default/sa/waypoint}]}]]]}
		- {name: allow-client, namespace: default, scope: WorkloadSelector, action: Allow, rules: [[[{principals: [{Exact: $TD/ns/default/sa/client}]}]]]}
	Y
	mesh_node_up 2 || return 1
	mesh_enroll 2 "$c" c sa-c && mesh_enroll 2 "$d" d sa-d && mesh_enroll 2 "$e" e sa-e &&
		mesh_enroll 2 "$w" w waypoint && mesh_enroll 2 "$pw" pw waypoint-plain || return 1
	for ns in "$c" "$d" "$e" "$pw"; do zt_echo_server "$ns" 8080 || return 1; done
	# The waypoint's app listens on loopback only, where the tunnel goes.
	zt_bg "$w" ppv2 python3 "$here/ppv2_listener.py" 127.0.0.1 15088 "$ZT_WORK/ppv2.rec" || return 1
	local deadline=$(($(zt_now_ms) + 10000))
	until zt_ns_exec "$w" ss -Hltn "sport = :15088" | grep -q .; do
		[ "$(zt_now_ms)" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# go_client SA CONNECT_IP AUTHORITY SERVER_SA: one tunnel from pod g as
# identity SA to CONNECT_IP:15008; stdin/stdout are the tunnel, stderr goes
# to $ZT_WORK/go-client.err; returns the peer's exit.
go_client() {
	zt_ns_exec "$g" timeout 20 "$peer" client -ca-dir "$MESH_CA" -id "$(mesh_id "$1")" \
		-expect-id "$(mesh_id "$4")" -connect "$2:15008" -authority "$3" -timeout 10s \
		2>"$ZT_WORK/go-client.err"
}

# expect_status SA CONNECT_IP AUTHORITY SERVER_SA STATUS: the client gets
# STATUS and no data.
expect_status() {
	local out rc
	out=$(printf 'x' | go_client "$1" "$2" "$3" "$4")
	rc=$?
	if [ $rc = 3 ] && grep -q "status $5" "$ZT_WORK/go-client.err" && [ -z "$out" ]; then
		zt_pass
	else
		zt_fail "exit $rc, out '$out': $(tr '\n' ' ' <"$ZT_WORK/go-client.err")"
	fi
}

# expect_echo SA CONNECT_IP AUTHORITY SERVER_SA: the tunnel is answered 200
# and echoes.
expect_echo() {
	local out rc
	out=$(printf 'sandwich-%s' "$3" | go_client "$1" "$2" "$3" "$4")
	rc=$?
	if [ $rc = 0 ] && [ "$out" = "sandwich-$3" ]; then zt_pass; else
		zt_fail "exit $rc, reply '$out': $(tr '\n' ' ' <"$ZT_WORK/go-client.err")"
	fi
}

# ---- service hostnames ----
m2=$(mesh_mark 2)
zt_test "CONNECT $SVC:80 to c reaches c's app on the mapped port 8080"
expect_echo client $C "$SVC:80" sa-c

zt_test "...logged with the service and the address it resolved to"
line=$(mesh_wait_access 2 "$m2" "direction=inbound" 5)
mesh_expect_fields "$line" "dst.service=$SVC" "dst.hbone_addr=$C:8080" "dst.workload=c" \
	"src.identity=$(mesh_id client)"

zt_test "unknown hostname: 503"
expect_status client $C "nope.default.svc.cluster.local:80" sa-c 503

zt_test "a port the service does not have: 503"
expect_status client $C "$SVC:81" sa-c 503

zt_test "a named (unnumbered) port: 503"
expect_status client $C "$SVC:82" sa-c 503

zt_test "a port that maps to the proxy's 15006: 503"
expect_status client $C "$SVC:90" sa-c 503

# ---- application tunnel (sandwiched waypoint) ----
zt_test "no application tunnel: a target that is not the pod's address ($VIP:80 to c) gets 400"
expect_status client $C "$VIP:80" sa-c 400

zt_test "application tunnel: $VIP:80 to w is accepted and relayed"
expect_echo client $W "$VIP:80" waypoint

# record_line N: the Nth line of the listener's record.
record_line() { sed -n "${1}p" "$ZT_WORK/ppv2.rec" 2>/dev/null; }

zt_test "...w's app got a PROXY v2 header: PROXY, TCP/IPv4, client address, target, client identity"
rec=$(record_line 1)
if [[ $rec =~ ^peer=127\.0\.0\.1:[0-9]+\ cmd=1\ fam=11\ src=$G:[1-9][0-9]*\ dst=$VIP:80\ tlvs=d0:$(mesh_id client)$ ]]; then
	zt_pass
else zt_fail "record: '$rec'"; fi

zt_test "application tunnel: hostname $SVC:80 to w (not an endpoint) is accepted"
expect_echo client $W "$SVC:80" waypoint

zt_test "...and the header names a VIP of the service with the requested port"
rec=$(record_line 2)
if [[ $rec =~ ^peer=127\.0\.0\.1:[0-9]+\ cmd=1\ fam=11\ src=$G:[1-9][0-9]*\ dst=$VIP:80\ tlvs=d0:$(mesh_id client)$ ]]; then
	zt_pass
else zt_fail "record: '$rec'"; fi

zt_test "application tunnel: a proxy port as target is still refused (503), and nothing reaches the app"
expect_status client $W "$VIP:15008" waypoint 503
zt_test "...no third connection was recorded by w's app"
# The next accepted tunnel writes the third line: if the refused one had
# reached the app, its line would be third instead.
out=$(printf 'after' | go_client client $W "$C:8080" waypoint)
rec=$(record_line 3)
if [ "$out" = after ] && [[ $rec == *"dst=$C:8080 "* ]] && [ -z "$(record_line 4)" ]; then zt_pass; else
	zt_fail "reply '$out', record 3: '$rec'"
fi

zt_test "control: the listener reads a header written by hand from the specification"
# 10.1.2.3:4660 -> 10.4.5.6:80, TLV 0xD0 "id", then data.
out=$(printf '\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x11\x0a\x01\x02\x03\x0a\x04\x05\x06\x12\x34\x00\x50\xd0\x00\x02idhand' |
	zt_ns_exec "$w" timeout 5 socat -t 5 - TCP:127.0.0.1:15088)
rec=$(record_line 4)
if [ "$out" = hand ] && [[ $rec =~ ^peer=127\.0\.0\.1:[0-9]+\ cmd=1\ fam=11\ src=10\.1\.2\.3:4660\ dst=10\.4\.5\.6:80\ tlvs=d0:id$ ]]; then
	zt_pass
else zt_fail "reply '$out', record 4: '$rec'"; fi

# ---- a sandwich without a tunnel ----
zt_test "plain sandwich: pw accepts $T:8080 (t's waypoint is pw) and its app answers"
expect_echo client $PW "$T:8080" waypoint-plain

zt_test "plain sandwich: pw accepts $VIP_S2:8080 (the service's waypoint is pw)"
expect_echo client $PW "$VIP_S2:8080" waypoint-plain

zt_test "plain sandwich: a target whose waypoint is not pw ($C:8080) gets 400 at pw"
expect_status client $PW "$C:8080" waypoint-plain 400

# ---- traffic from a waypoint is authorized as the waypoint ----
zt_test "d allows the waypoint's principal: the Go client as the waypoint gets through"
expect_echo waypoint $D "$D:8080" sa-d

zt_test "e allows only the original client's principal: the waypoint gets 401"
expect_status waypoint $E "$E:8080" sa-e 401

zt_test "e admits the client's own identity (control for the 401)"
expect_echo client $E "$E:8080" sa-e

mesh_finish
