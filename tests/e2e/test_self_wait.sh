#!/usr/bin/env bash
# Inbound for a pod whose workload is not configured yet (issue 8, item 16):
# as outbound does, and as Istio's ztunnel does, an HBONE request or a
# plaintext connection waits for the pod's workload (up to 5 s) instead of
# being refused at once; bytes the client sends meanwhile are kept; once the
# wait is over it is refused as before. The Go HBONE peer is one of the
# clients. Needs root and Go.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a (enrolled), p (plain), g (Go client, plain)
# node 2: c (enrolled, in node 2's config only after the clients started),
#         x (enrolled, never in node 2's config)
A=10.200.1.2 P=10.200.1.3 C=10.200.2.2 X=10.200.2.3

n2_yaml() {
	printf 'workloads:\n'
	printf -- '- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["%s"], protocol: HBONE, node: node1}\n' $A
	if [ "${1:-}" = with-c ]; then
		printf -- '- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["%s"], protocol: HBONE, node: node2}\n' $C
	fi
}
write_n2() {
	n2_yaml "$@" >"$ZT_WORK/n2.yaml.tmp" && mv "$ZT_WORK/n2.yaml.tmp" "$ZT_WORK/n2.yaml"
}
# waits N: how many inbound waits node 2 has logged.
waits() { grep -c "waits for the pod's workload" "$(mesh_log 2 proxy)"; }

zt_test "setup: 2 nodes, node 2 does not know c and x yet"
setup() {
	peer=$(mesh_peer) || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && p=$(zt_pod_add 1 2 p) && g=$(zt_pod_add 1 3 g) || return 1
	c=$(zt_pod_add 2 1 c) && x=$(zt_pod_add 2 2 x) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2}
		- {uid: x, name: x, namespace: default, serviceAccount: sa-x, workloadIps: ["$X"], protocol: HBONE, node: node2}
	Y
	write_n2
	mesh_node_up 1 || return 1
	mesh_cni_start 2 && LOGLVL=debug mesh_proxy_start 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$c" c sa-c && mesh_enroll 2 "$x" x sa-x || return 1
	zt_echo_server "$c" 8080 && zt_echo_server "$x" 8080
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# ---- three clients start while node 2 does not know c ----
m2=$(mesh_mark 2)
w0=$(waits)
zt_send "$a" $C 8080 hbone-early 20 >"$ZT_WORK/hbone.out" 2>/dev/null &
hb=$!
zt_send "$p" $C 8080 plain-early 20 >"$ZT_WORK/plain.out" 2>/dev/null &
pl=$!
printf 'go-early' | zt_ns_exec "$g" timeout 20 "$peer" client -ca-dir "$MESH_CA" \
	-id "$(mesh_id go-client)" -expect-id "$(mesh_id sa-c)" -connect "$C:15008" \
	-authority "$C:8080" -timeout 15s >"$ZT_WORK/go.out" 2>"$ZT_WORK/go.err" &
go=$!

zt_test "node 2 holds the three (HBONE from a, plaintext from p, the Go client)"
deadline=$(($(zt_now_ms) + 4000))
while [ $(($(waits) - w0)) -lt 3 ] && [ "$(zt_now_ms)" -lt "$deadline" ]; do sleep 0.05; done
n=$(($(waits) - w0))
if [ "$n" -ge 3 ]; then zt_pass; else zt_fail "$n waits logged: $(tail -5 "$(mesh_log 2 proxy)")"; fi

zt_test "nothing was refused while they wait"
if mesh_since 2 "$m2" | grep -q "unknown local workload"; then
	zt_fail "$(mesh_since 2 "$m2" | grep "unknown local workload" | head -2)"
else zt_pass; fi

write_n2 with-c
zt_test "c configured: the HBONE connection from a completes"
wait "$hb"
zt_expect_eq "$(cat "$ZT_WORK/hbone.out")" "hbone-early"
zt_test "c configured: the plaintext connection from p completes"
wait "$pl"
zt_expect_eq "$(cat "$ZT_WORK/plain.out")" "plain-early"
zt_test "c configured: the Go client's tunnel completes with its bytes"
wait "$go"
rc=$?
if [ $rc = 0 ] && [ "$(cat "$ZT_WORK/go.out")" = go-early ]; then zt_pass; else
	zt_fail "exit $rc, out '$(cat "$ZT_WORK/go.out")': $(tr '\n' ' ' <"$ZT_WORK/go.err")"
fi
zt_test "node 2's inbound access lines name c as the destination"
line=$(mesh_wait_access 2 "$m2" "connection complete.*src.addr=$A:.*direction=inbound" 5)
mesh_expect_fields "$line" "src.identity=$(mesh_id sa-a)" "dst.identity=$(mesh_id sa-c)" \
	bytes_recv=11 bytes_sent=11

# ---- a pod that never gets configured: refused once the wait is over ----
m2=$(mesh_mark 2)
w0=$(waits)
zt_test "x never configured: the connection from a gets no reply"
zt_expect_eq "$(zt_send "$a" $X 8080 never 15)" ""
zt_test "x never configured: node 2 held it first, then refused it (503)"
line=$(mesh_wait_access 2 "$m2" "503: unknown local workload" 10)
if [ $(($(waits) - w0)) -ge 1 ] && [ -n "$line" ]; then zt_pass; else
	zt_fail "waits $(($(waits) - w0)), line '$line'"
fi

mesh_finish
