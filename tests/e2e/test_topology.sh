#!/usr/bin/env bash
# Builds 2 nodes x 2 pods with lib.sh and checks plain pod-to-pod TCP
# reachability (no proxy) within a node and across nodes, plus node-to-pod
# and pod-to-node, then tears everything down. Needs root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
zt_trap_cleanup

zt_test "topology: build 2 nodes x 2 pods"
ok=1
zt_node_add 1 || ok=0
zt_node_add 2 || ok=0
for n in 1 2; do
	for m in 1 2; do
		ns=$(zt_pod_add "$n" "$m" "pod$n$m") || ok=0
		[ "${ns:-}" = "$(zt_pod_ns "$n" "$m")" ] || ok=0
	done
done
if [ $ok = 1 ]; then zt_pass; else zt_fail "setup failed"; zt_summary; exit 1; fi

zt_test "registry: zt_pod_ip and zt_pod_lookup"
zt_expect_eq "$(zt_pod_ip 2 1) / $(zt_pod_lookup pod12)" \
	"10.200.2.2 / 1 2 $(zt_pod_ns 1 2) 10.200.1.3"

zt_test "registry: unknown pod is an error"
if zt_pod_ip 3 1 2>/dev/null; then zt_fail "zt_pod_ip 3 1 succeeded"; else zt_pass; fi

zt_test "registry: duplicate pod rejected"
if zt_pod_add 1 1 again 2>/dev/null; then zt_fail "duplicate accepted"; else zt_pass; fi

# One echo server per pod, on a port that differs per pod so a reply can only
# come from the intended pod.
for n in 1 2; do
	for m in 1 2; do
		zt_echo_server "$(zt_pod_ns "$n" "$m")" "70$n$m" || zt_fail "echo server $n/$m"
	done
done

for src in "1 1" "1 2" "2 1" "2 2"; do
	read -r sn sm <<<"$src"
	for dst in "1 1" "1 2" "2 1" "2 2"; do
		read -r dn dm <<<"$dst"
		[ "$src" = "$dst" ] && continue
		if [ "$sn" = "$dn" ]; then kind="same node"; else kind="cross node"; fi
		zt_test "pod $sn/$sm -> pod $dn/$dm ($kind)"
		msg="hello from $sn/$sm to $dn/$dm"
		zt_expect_eq "$(zt_send "$(zt_pod_ns "$sn" "$sm")" "$(zt_pod_ip "$dn" "$dm")" "70$dn$dm" "$msg" 3)" "$msg"
	done
done

zt_test "node 1 -> pod 2/2 (routed via node 2)"
zt_expect_eq "$(zt_send "$(zt_node_ns 1)" 10.200.2.3 7022 ping 3)" "ping"

zt_test "pod 1/1 -> node 2 fabric IP"
zt_echo_server "$(zt_node_ns 2)" 7100 || true
zt_expect_eq "$(zt_send "$(zt_pod_ns 1 1)" "$(zt_node_ip 2)" 7100 pong 3)" "pong"

zt_test "source address preserved across nodes"
# The echo-back above cannot show the source IP; a listener that prints its
# peer's address can.
zt_bg "$(zt_pod_ns 2 1)" peer-addr socat TCP-LISTEN:7200,fork,reuseaddr SYSTEM:'echo $SOCAT_PEERADDR'
zt_wait_port "$(zt_pod_ns 2 1)" 127.0.0.1 7200 5
zt_expect_eq "$(zt_send "$(zt_pod_ns 1 2)" 10.200.2.2 7200 x 3)" "10.200.1.3"

zt_test "unrouted address is unreachable"
if zt_send "$(zt_pod_ns 1 1)" 10.200.9.2 7011 x 1 >/dev/null 2>&1; then
	zt_fail "10.200.9.2 answered"
else
	zt_pass
fi

zt_test "cleanup removes every namespace"
pfx=$ZT_PFX
zt_cleanup
left=$(ip netns list | awk '{ print $1 }' | grep -c "^${pfx}-" || true)
zt_expect_eq "$left" "0"

zt_summary
