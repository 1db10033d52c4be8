#!/usr/bin/env bash
# Refusals: self-calls to the proxy's own ports from inside an enrolled pod
# (at loopback or at the pod's own address, HBONE and TCP workloads),
# plaintext inbound aimed at the proxy ports or at an address that is not the
# pod's, and an L4 Deny policy on a destination port (HBONE gets 401,
# plaintext is closed, another port works).
# Needs root and Go.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a (enrolled), p (plain), g (Go client, plain), t (enrolled, a TCP
# workload); node 2: c (enrolled; also holds X, an address that is not in
# its workload, routed to it by node 2)
A=10.200.1.2 P=10.200.1.3 T=10.200.1.5 C=10.200.2.2 X=10.200.2.99
zt_test "setup: 2 nodes, 5 pods, Deny policy on port 9090 of namespace default"
setup() {
	peer=$(mesh_peer) || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && p=$(zt_pod_add 1 2 p) && g=$(zt_pod_add 1 3 g) || return 1
	t=$(zt_pod_add 1 4 t) && c=$(zt_pod_add 2 1 c) || return 1
	ip -n "$c" addr add "$X/32" dev eth0 || return 1
	ip -n "$(zt_node_ns 2)" route replace "$X/32" dev "$(zt_pod_veth 2 1)" scope link || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: t, name: t, namespace: default, serviceAccount: sa-t, workloadIps: ["$T"], protocol: TCP, node: node1}
		- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2}
	Y
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	cat >>"$ZT_WORK/n2.yaml" <<-Y
		policies:
		- {name: no-9090, namespace: default, scope: Namespace, action: Deny, rules: [[[{destinationPorts: [9090]}]]]}
	Y
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 1 "$t" t sa-t && mesh_enroll 2 "$c" c sa-c || return 1
	zt_echo_server "$c" 8080 && zt_echo_server "$c" 9090 && zt_echo_server "$c" 7777 || return 1
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# refused NETNS IP PORT: pass if the connection yields no reply and is
# closed by the other end (socat ends on its own; exit 124 would mean the
# 10 s bound ran out: a hang or a loop, not a refusal).
refused() {
	local out rc
	# socat's own wait (-t 30) outlasts the bound, so only a close by the
	# proxy ends it before timeout does.
	out=$(printf 'ping-%s' "$3" | zt_ns_exec "$1" timeout 10 socat -t 30 - \
		"TCP:$2:$3,connect-timeout=10" 2>/dev/null)
	rc=$?
	if [ -z "$out" ] && [ "$rc" != 124 ]; then zt_pass; else
		zt_fail "reply '$out', exit $rc"
	fi
}

# ---- self-calls from inside an enrolled pod ----
m1=$(mesh_mark 1)
for port in 15001 15006 15008; do
	zt_test "self-call: a -> 127.0.0.1:$port refused"
	refused "$a" 127.0.0.1 $port
done
zt_test "self-call: a -> $A:15001 (own pod IP) refused"
refused "$a" $A 15001

zt_test "self-calls did not loop (one refusal each, none after a later connection)"
# A loop would go on logging: a connection made afterwards (a->c, logged
# once it closes) bounds the window, and the self-call lines are counted.
zt_send "$a" $C 8080 after-self-calls >/dev/null
mesh_wait_access 1 "$m1" "dst.hbone_addr=$C:8080" 5 >/dev/null
n=$(mesh_since 1 "$m1" | grep -cE "dst.addr=(127.0.0.1|$A):1500[168]" || true)
if [ "$n" = 4 ]; then zt_pass; else zt_fail "$n self-call lines after 4 self-calls"; fi

zt_test "self-call to 15001 logged as an outbound refusal"
if tail -n +"$((m1 + 1))" "$(mesh_log 1 proxy)" | grep -P '\taccess\t' |
	grep "dst.addr=127.0.0.1:15001" | grep -q "direction=outbound"; then zt_pass; else
	zt_fail "$(tail -n +"$((m1 + 1))" "$(mesh_log 1 proxy)")"
fi

zt_test "after self-calls a->c still works"
zt_expect_eq "$(zt_send "$a" $C 8080 still-ok)" "still-ok"

# self_call_line N MARK ADDR: the outbound self-call refusal for ADDR.
self_call_line() {
	mesh_wait_access "$1" "$2" "dst.addr=$3 direction=outbound error=\"self-call to a proxy port refused\"" 5
}
# At the pod's own address the outbound listener is reached directly (the
# in-pod rules let traffic to the pod itself through): the proxy must see
# it as a self-call, for an HBONE workload and for a TCP one, which would
# otherwise dial its own listener again and again.
for pod in a t; do
	if [ $pod = a ]; then ns=$a ip=$A; else ns=$t ip=$T; fi
	m1=$(mesh_mark 1)
	zt_test "self-call: $pod -> $ip:15001 (own pod IP) refused as a self-call"
	zt_send "$ns" $ip 15001 x 5 >/dev/null 2>&1
	if line=$(self_call_line 1 "$m1" "$ip:15001"); then zt_pass; else
		zt_fail "no self-call refusal: $(mesh_since 1 "$m1" | head -3)"
	fi
	zt_test "self-call: $pod -> $ip:15001 made no other connection"
	if mesh_since 1 "$m1" | grep -v "self-call" | grep -q .; then
		zt_fail "$(mesh_since 1 "$m1" | grep -v "self-call" | head -3)"
	else zt_pass; fi
done

# ---- plaintext inbound to an address that is not the pod's ----
m2=$(mesh_mark 2)
zt_test "plaintext p -> $C:7777 (the pod's address) echoed (positive control)"
zt_expect_eq "$(zt_send "$p" $C 7777 to-c)" "to-c"
zt_test "plaintext p -> $X:7777 (routed into c, not c's address) refused"
zt_expect_eq "$(zt_send "$p" $X 7777 to-x 5)" ""
zt_test "plaintext p -> $X:7777 logged as a refusal on node 2"
line=$(mesh_wait_access 2 "$m2" "dst.addr=$X:7777" 5)
case $line in
*"original destination is not one of the pod's addresses"*) zt_pass ;;
*) zt_fail "line: '$line'" ;;
esac

# ---- plaintext inbound aimed at the proxy's ports ----
m2=$(mesh_mark 2)
zt_test "plaintext p -> $C:15001 (redirected to 15006, reserved) refused"
refused "$p" $C 15001
zt_test "plaintext p -> $C:15006 refused"
refused "$p" $C 15006
zt_test "plaintext p -> $C:15008 (TLS listener) refused"
refused "$p" $C 15008
zt_test "reserved-port refusals logged inbound on node 2"
n=0
for _ in $(seq 100); do
	n=$(mesh_since 2 "$m2" | grep "direction=inbound" | grep -cE "dst.addr=$C:1500[16]" || true)
	[ "$n" -ge 2 ] && break
	sleep 0.05
done
if [ "$n" -ge 2 ]; then zt_pass; else zt_fail "$n lines: $(mesh_since 2 "$m2")"; fi

# ---- Deny policy on port 9090 ----
m1=$(mesh_mark 1)
m2=$(mesh_mark 2)
zt_test "policy: HBONE a->c:9090 denied (no reply)"
refused "$a" $C 9090

zt_test "policy: a's outbound line reports the 401"
line=$(mesh_wait_access 1 "$m1" "dst.hbone_addr=$C:9090" 5)
if printf '%s' "$line" | grep -qE 'error=.*401'; then zt_pass; else zt_fail "line: '$line'"; fi

zt_test "policy: node 2 logs the policy rejection for a"
line=$(mesh_wait_access 2 "$m2" "$C:9090" 5)
if printf '%s' "$line" | grep -qiE 'error=.*(polic|den)'; then zt_pass; else zt_fail "line: '$line'"; fi

zt_test "policy: HBONE a->c:8080 allowed"
zt_expect_eq "$(zt_send "$a" $C 8080 allowed-port)" "allowed-port"

m2=$(mesh_mark 2)
zt_test "policy: plaintext p->c:9090 closed"
refused "$p" $C 9090

zt_test "policy: node 2 logs the plaintext rejection"
line=$(mesh_wait_access 2 "$m2" "src.addr=$P:.*$C:9090" 5)
if printf '%s' "$line" | grep -qiE 'error=.*(polic|den)'; then zt_pass; else zt_fail "line: '$line'"; fi

zt_test "policy: plaintext p->c:8080 allowed"
zt_expect_eq "$(zt_send "$p" $C 8080 plain-allowed)" "plain-allowed"

zt_test "policy: Go client CONNECT $C:9090 gets 401"
out=$(printf 'x' | zt_ns_exec "$g" timeout 20 "$peer" client -ca-dir "$MESH_CA" -id "$(mesh_id go-client)" \
	-expect-id "$(mesh_id sa-c)" -connect "$C:15008" -authority "$C:9090" -timeout 10s 2>"$ZT_WORK/go-client.err")
rc=$?
if [ $rc = 3 ] && grep -q "status 401" "$ZT_WORK/go-client.err" && [ -z "$out" ]; then zt_pass; else
	zt_fail "exit $rc, out '$out': $(tr '\n' ' ' <"$ZT_WORK/go-client.err")"
fi

zt_test "policy: Go client CONNECT $C:8080 gets 200 and data"
out=$(printf 'go-allowed' | zt_ns_exec "$g" timeout 20 "$peer" client -ca-dir "$MESH_CA" -id "$(mesh_id go-client)" \
	-expect-id "$(mesh_id sa-c)" -connect "$C:15008" -authority "$C:8080" -timeout 10s 2>"$ZT_WORK/go-client.err")
zt_expect_eq "$out" "go-allowed"

mesh_finish
