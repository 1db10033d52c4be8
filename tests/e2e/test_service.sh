#!/usr/bin/env bash
# Service VIPs: a captured client dials a VIP and port that exist nowhere on
# the network; the proxy picks a healthy endpoint, maps the service port to
# the endpoint's target port, and uses HBONE or plain TCP per endpoint. An
# unhealthy endpoint is never picked, a service without a usable endpoint
# refuses the connection. Needs root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

A=10.200.1.2 C=10.200.2.2 D=10.200.2.3 T=10.200.2.4
VIP=10.96.0.10 VIP_TCP=10.96.0.11 VIP_NONE=10.96.0.12
SVC=echo.default.svc.cluster.local
zt_test "setup: client a on node 1; endpoints c (HBONE), d (HBONE, unhealthy), t (TCP) on node 2"
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) || return 1
	c=$(zt_pod_add 2 1 c) && d=$(zt_pod_add 2 2 d) && t=$(zt_pod_add 2 3 t) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- uid: c
		  name: c
		  namespace: default
		  serviceAccount: sa-c
		  workloadIps: ["$C"]
		  protocol: HBONE
		  node: node2
		  services: {"default/$SVC": {80: 8080}}
		- uid: d
		  name: d
		  namespace: default
		  serviceAccount: sa-d
		  workloadIps: ["$D"]
		  protocol: HBONE
		  node: node2
		  status: Unhealthy
		  services: {"default/$SVC": {80: 8080}}
		- uid: t
		  name: t
		  namespace: default
		  serviceAccount: sa-t
		  workloadIps: ["$T"]
		  protocol: TCP
		  node: node2
		  services: {"default/plain.default.svc.cluster.local": {80: 8080}}
		services:
		- {name: echo, namespace: default, hostname: $SVC, vips: ["/$VIP"], ports: {80: 8080}}
		- {name: plain, namespace: default, hostname: plain.default.svc.cluster.local, vips: ["/$VIP_TCP"], ports: {80: 8080}}
		- {name: empty, namespace: default, hostname: empty.default.svc.cluster.local, vips: ["/$VIP_NONE"], ports: {80: 8080}}
	Y
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$c" c sa-c && mesh_enroll 2 "$d" d sa-d || return 1
	for ns in "$c" "$d" "$t"; do
		# Each endpoint answers with its own name, so the test sees who served.
		zt_bg "$ns" "name-$ns" socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:"echo ${ns##*-p}"
		zt_wait_port "$ns" 127.0.0.1 8080 5 || return 1
	done
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

zt_test "VIP:80 reaches the healthy HBONE endpoint on 8080, ten times out of ten"
answers=""
for i in $(seq 1 10); do answers="$answers $(zt_send "$a" $VIP 80 "" 3)"; done
zt_expect_eq "$(echo $answers | tr ' ' '\n' | sort | uniq -c | awk '{print $1 "x" $2}')" "10x2-1"

zt_test "the service connection is HBONE to c with the service named in the access log"
m1=$(mesh_mark 1)
m2=$(mesh_mark 2)
zt_send "$a" $VIP 80 "" 3 >/dev/null
line=$(mesh_wait_access 1 "$m1" "direction=outbound" 5)
mesh_expect_fields "$line" "dst.addr=$C:15008" "dst.hbone_addr=$C:8080" "dst.service=$SVC" \
	"dst.workload=c" "dst.identity=$(mesh_id sa-c)"

zt_test "the destination learns the dialed service from the forwarded header"
line=$(mesh_wait_access 2 "$m2" "direction=inbound" 5)
mesh_expect_fields "$line" "dst.service=$SVC" "dst.workload=c" src.workload=a

zt_test "VIP of a TCP-protocol endpoint: plain TCP to t:8080, port mapped by the proxy"
m1=$(mesh_mark 1)
got=$(zt_send "$a" $VIP_TCP 80 "" 3)
line=$(mesh_wait_access 1 "$m1" "direction=outbound" 5)
if [ "$got" = "2-3" ] && [ "$(mesh_field "$line" dst.addr)" = "$T:8080" ] &&
	[ -z "$(mesh_field "$line" dst.hbone_addr)" ]; then
	zt_pass
else
	zt_fail "reply '$got', line: $line"
fi

zt_test "a service with no endpoint: connection refused and logged"
m1=$(mesh_mark 1)
got=$(zt_send "$a" $VIP_NONE 80 "x" 3)
line=$(mesh_wait_access 1 "$m1" "direction=outbound" 5)
if [ -z "$got" ] && echo "$line" | grep -q "no healthy upstream"; then zt_pass; else zt_fail "reply '$got', line: $line"; fi

mesh_finish
