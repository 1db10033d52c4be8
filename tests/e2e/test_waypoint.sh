#!/usr/bin/env bash
# Waypoints on the outbound side (wire facts 8), with independent Go HBONE
# servers (tests/interop/hbone_peer.go -describe) standing in for the
# waypoints: each answers a CONNECT with the identity it serves as, the
# :authority it was asked for and the client's identity, which the client
# app receives. Checked: a service VIP with a waypoint by IP, a pod IP with
# a workload waypoint, a waypoint given by hostname (its service's
# endpoint), a weighted split between two waypoints, service-addressed
# traffic skipping the endpoint's own waypoint, the waypoint's own traffic
# not sent back to it, and waypoints that cannot be used refusing the
# connection rather than bypassing it. Needs root and Go.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a (client), wps (the waypoint of b2: enrolled, sa waypoint-self),
#         imp (enrolled, sa waypoint-self too, but not the waypoint)
# node 2: b (waypoint w1 by IP), b2 (waypoint wps), c (no waypoint): all
#         enrolled, answering their name on 8080; w1 and w2, Go waypoints,
#         not enrolled (sa waypoint and waypoint-b)
A=10.200.1.2 WPS=10.200.1.3 IMP=10.200.1.4
B=10.200.2.2 B2=10.200.2.3 C=10.200.2.4 W1=10.200.2.5 W2=10.200.2.6 WREMOTE=10.200.2.7
VIP_IP=10.96.0.20 VIP_HOST=10.96.0.21 VIP_W=10.96.0.22 VIP_B=10.96.0.23
VIP_REMOTE=10.96.0.24 VIP_UNKNOWN=10.96.0.25 VIP_C=10.96.0.26
H=default.svc.cluster.local
N_SPLIT=1000

zt_test "setup: 2 nodes, 6 enrolled pods, 2 Go waypoints, services with waypoints"
setup() {
	peer=$(mesh_peer) || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && wps=$(zt_pod_add 1 2 wps) && imp=$(zt_pod_add 1 3 imp) || return 1
	b=$(zt_pod_add 2 1 b) && b2=$(zt_pod_add 2 2 b2) && c=$(zt_pod_add 2 3 c) || return 1
	w1=$(zt_pod_add 2 4 w1) && w2=$(zt_pod_add 2 5 w2) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: wps, name: wps, namespace: default, serviceAccount: waypoint-self, workloadIps: ["$WPS"], protocol: HBONE, node: node1}
		- {uid: imp, name: imp, namespace: default, serviceAccount: waypoint-self, workloadIps: ["$IMP"], protocol: HBONE, node: node1}
		- uid: b
		  name: b
		  namespace: default
		  serviceAccount: sa-b
		  workloadIps: ["$B"]
		  protocol: HBONE
		  node: node2
		  waypoint: {destination: "/$W1", hboneMtlsPort: 15008}
		  services: {"default/svc-b.$H": {80: 8080}}
		- {uid: b2, name: b2, namespace: default, serviceAccount: sa-b2, workloadIps: ["$B2"], protocol: HBONE, node: node2,
		   waypoint: {destination: "/$WPS", hboneMtlsPort: 15008}}
		- uid: c
		  name: c
		  namespace: default
		  serviceAccount: sa-c
		  workloadIps: ["$C"]
		  protocol: HBONE
		  node: node2
		  services:
		    "default/svc-ip.$H": {80: 8080}
		    "default/svc-host.$H": {80: 8080}
		    "default/svc-w.$H": {80: 8080}
		    "default/svc-remote.$H": {80: 8080}
		    "default/svc-unknown.$H": {80: 8080}
		    "default/svc-c.$H": {80: 8080}
		- {uid: w1, name: w1, namespace: default, serviceAccount: waypoint, workloadIps: ["$W1"], protocol: HBONE, node: node2}
		- {uid: w2, name: w2, namespace: default, serviceAccount: waypoint-b, workloadIps: ["$W2"], protocol: HBONE, node: node2,
		   services: {"default/waypoint.$H": {15008: 15008}}}
		- {uid: wremote, name: wremote, namespace: default, serviceAccount: waypoint, workloadIps: ["$WREMOTE"], network: net2, node: node9}
		services:
		- {name: waypoint, namespace: default, hostname: waypoint.$H, ports: {15008: 15008}}
		- {name: svc-ip, namespace: default, hostname: svc-ip.$H, vips: ["/$VIP_IP"], ports: {80: 8080},
		   waypoint: {destination: "/$W1", hboneMtlsPort: 15008}}
		- {name: svc-host, namespace: default, hostname: svc-host.$H, vips: ["/$VIP_HOST"], ports: {80: 8080},
		   waypoint: {destination: {namespace: default, hostname: waypoint.$H}, hboneMtlsPort: 15008}}
		- name: svc-w
		  namespace: default
		  hostname: svc-w.$H
		  vips: ["/$VIP_W"]
		  ports: {80: 8080}
		  weightedWaypoints:
		  - {destination: {destination: "/$W1", hboneMtlsPort: 15008}, weight: 1}
		  - {destination: {destination: {namespace: default, hostname: waypoint.$H}, hboneMtlsPort: 15008}, weight: 3}
		- {name: svc-b, namespace: default, hostname: svc-b.$H, vips: ["/$VIP_B"], ports: {80: 8080}}
		- {name: svc-remote, namespace: default, hostname: svc-remote.$H, vips: ["/$VIP_REMOTE"], ports: {80: 8080},
		   waypoint: {destination: "net2/$WREMOTE", hboneMtlsPort: 15008}}
		- {name: svc-unknown, namespace: default, hostname: svc-unknown.$H, vips: ["/$VIP_UNKNOWN"], ports: {80: 8080},
		   waypoint: {destination: {namespace: default, hostname: nothing.$H}, hboneMtlsPort: 15008}}
		- {name: svc-c, namespace: default, hostname: svc-c.$H, vips: ["/$VIP_C"], ports: {80: 8080}}
	Y
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 1 "$wps" wps waypoint-self &&
		mesh_enroll 1 "$imp" imp waypoint-self || return 1
	mesh_enroll 2 "$b" b sa-b && mesh_enroll 2 "$b2" b2 sa-b2 && mesh_enroll 2 "$c" c sa-c || return 1
	for p in b:"$b" b2:"$b2" c:"$c"; do
		zt_bg "${p#*:}" "name-${p%%:*}" socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:"echo ${p%%:*}"
		zt_wait_port "${p#*:}" 127.0.0.1 8080 5 || return 1
	done
	zt_bg "$w1" w1 "$peer" server -ca-dir "$MESH_CA" -id "$(mesh_id waypoint)" -listen "$W1:15008" \
		-timeout 0 -describe || return 1
	zt_bg "$w2" w2 "$peer" server -ca-dir "$MESH_CA" -id "$(mesh_id waypoint-b)" -listen "$W2:15008" \
		-timeout 0 -describe || return 1
	mesh_wait_grep "$ZT_WORK/w1.log" "listening on" 10 && mesh_wait_grep "$ZT_WORK/w2.log" "listening on" 10
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# seen_by SA AUTHORITY [CLIENT_SA]: the reply of the Go waypoint with
# identity SA asked for AUTHORITY by the client (default sa-a).
seen_by() { echo "server=$(mesh_id "$1") authority=$2 peer=$(mesh_id "${3:-sa-a}")"; }

# ---- service waypoint by IP ----
m1=$(mesh_mark 1)
zt_test "VIP with a waypoint by IP: arrives at w1 asking for VIP:80, with a's identity"
zt_expect_eq "$(zt_send "$a" $VIP_IP 80 "" 5)" "$(seen_by waypoint $VIP_IP:80)"

zt_test "... access log: HBONE to w1:15008 for VIP:80, service svc-ip, w1's identity expected"
line=$(mesh_wait_access 1 "$m1" "dst.hbone_addr=$VIP_IP:80" 5)
mesh_expect_fields "$line" "dst.addr=$W1:15008" "dst.service=svc-ip.$H" "dst.workload=w1" \
	"dst.identity=$(mesh_id waypoint)" "src.identity=$(mesh_id sa-a)"

zt_test "... the waypoint is told the dialed service in forwarded"
if grep -F "authority=$VIP_IP:80" "$ZT_WORK/w1.log" | grep -qF "host=svc-ip.$H"; then zt_pass; else
	zt_fail "$(grep -F "authority=$VIP_IP:80" "$ZT_WORK/w1.log" | head -1)"
fi

# ---- workload waypoint ----
m1=$(mesh_mark 1)
zt_test "pod IP of b (workload waypoint w1): arrives at w1 asking for b:8080"
zt_expect_eq "$(zt_send "$a" $B 8080 "" 5)" "$(seen_by waypoint $B:8080)"

zt_test "... access log: HBONE to w1:15008 for b:8080, no service"
line=$(mesh_wait_access 1 "$m1" "dst.hbone_addr=$B:8080" 5)
mesh_expect_fields "$line" "dst.addr=$W1:15008" "dst.workload=w1" "dst.identity=$(mesh_id waypoint)" \
	"dst.service="

zt_test "service VIP whose endpoint b has a waypoint: direct to b (service-addressed)"
zt_expect_eq "$(zt_send "$a" $VIP_B 80 "" 5)" "b"

# ---- waypoint by hostname ----
m1=$(mesh_mark 1)
zt_test "VIP with a waypoint by hostname: arrives at w2, the waypoint service's endpoint"
zt_expect_eq "$(zt_send "$a" $VIP_HOST 80 "" 5)" "$(seen_by waypoint-b $VIP_HOST:80)"

zt_test "... access log: HBONE to w2:15008 for VIP:80, service svc-host"
line=$(mesh_wait_access 1 "$m1" "dst.hbone_addr=$VIP_HOST:80" 5)
mesh_expect_fields "$line" "dst.addr=$W2:15008" "dst.service=svc-host.$H" "dst.workload=w2" \
	"dst.identity=$(mesh_id waypoint-b)"

# ---- weighted split ----
# Weights 1 (w1) : 3 (w2). Over N connections w1's count is
# Binomial(N, 1/4): for N = 1000, mean 250, standard deviation 13.7; the
# check accepts 5 standard deviations either way (a false failure about
# once in 1.7 million runs).
zt_test "weighted waypoints 1:3 over $N_SPLIT connections: w1 gets 250 +- 68, w2 the rest"
# shellcheck disable=SC2016 # expanded by the inner shell
zt_ns_exec "$a" bash -c 'for _ in $(seq 1 "$1"); do
	timeout 5 socat -t 5 - "TCP:$2:80,connect-timeout=5" </dev/null; echo; done' _ $N_SPLIT $VIP_W \
	>"$ZT_WORK/split.out" 2>"$ZT_WORK/split.err"
n1=$(grep -cxF "$(seen_by waypoint $VIP_W:80)" "$ZT_WORK/split.out")
n2=$(grep -cxF "$(seen_by waypoint-b $VIP_W:80)" "$ZT_WORK/split.out")
zt_log "weighted split: w1 $n1, w2 $n2 of $N_SPLIT"
if [ $((n1 + n2)) = $N_SPLIT ] && [ "$n1" -ge 182 ] && [ "$n1" -le 318 ]; then zt_pass; else
	zt_fail "w1 $n1, w2 $n2 of $N_SPLIT; other lines: $(grep -v "^server=" "$ZT_WORK/split.out" | grep -v '^$' | sort | uniq -c | head -3)"
fi

# ---- the waypoint's own traffic ----
m1=$(mesh_mark 1)
zt_test "source is b2's waypoint (wps: its identity and address): direct to b2"
zt_expect_eq "$(zt_send "$wps" $B2 8080 "" 5)" "b2"

zt_test "... access log: HBONE straight to b2:15008"
line=$(mesh_wait_access 1 "$m1" "src.addr=$WPS:[0-9]+ .*direction=outbound" 5)
mesh_expect_fields "$line" "dst.addr=$B2:15008" "dst.hbone_addr=$B2:8080" "dst.workload=b2"

# Control: imp has wps's identity but not its address, so it is not the
# waypoint: its connection to b2 is sent to wps:15008 (whose inbound does
# not serve it: wps is not a real waypoint).
m1=$(mesh_mark 1)
zt_test "control: imp (waypoint's identity, other address) to b2 goes to the waypoint wps"
got=$(zt_send "$imp" $B2 8080 "" 5)
line=$(mesh_wait_access 1 "$m1" "src.addr=$IMP:[0-9]+ .*direction=outbound" 5)
if [ "$got" != "b2" ] && [ "$(mesh_field "$line" dst.addr)" = "$WPS:15008" ] &&
	[ "$(mesh_field "$line" dst.hbone_addr)" = "$B2:8080" ]; then
	zt_pass
else
	zt_fail "reply '$got', line: $line"
fi

# ---- waypoints that cannot be used: refused, never bypassed ----
m1=$(mesh_mark 1)
m2=$(mesh_mark 2)
zt_test "waypoint on another network without a network gateway: refused, not sent to c"
got=$(zt_send "$a" $VIP_REMOTE 80 "x" 5)
line=$(mesh_wait_access 1 "$m1" "dst.service=svc-remote" 5)
if [ -z "$got" ] && printf '%s' "$line" | grep -q "waypoint on another network"; then zt_pass; else
	zt_fail "reply '$got', line: $line"
fi

zt_test "waypoint hostname unknown: refused, not sent to c"
got=$(zt_send "$a" $VIP_UNKNOWN 80 "x" 5)
line=$(mesh_wait_access 1 "$m1" "dst.service=svc-unknown" 5)
if [ -z "$got" ] && printf '%s' "$line" | grep -q "waypoint not found"; then zt_pass; else
	zt_fail "reply '$got', line: $line"
fi

zt_test "control: c is reachable through a service without a waypoint"
zt_expect_eq "$(zt_send "$a" $VIP_C 80 "" 5)" "c"

zt_test "nothing but the control reached c (one inbound line for it on node 2)"
if mesh_wait_access 2 "$m2" "dst.hbone_addr=$C:8080" 5 >/dev/null; then
	zt_expect_eq "$(mesh_since 2 "$m2" | grep -c "dst.hbone_addr=$C:8080")" 1
else
	zt_fail "no inbound line for the control on node 2"
fi

mesh_finish
