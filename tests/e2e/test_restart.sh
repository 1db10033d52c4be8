#!/usr/bin/env bash
# Restarts and unenroll: the node agent restarting keeps service and restores
# its enrollments; the proxy restarting (killed) gets the agent's snapshot and
# serves again; unenroll removes the pod's rules and restores the direct
# path; re-enroll brings the mesh path back. With either rules backend
# (ZT_REDIRECT, see mesh.sh). Needs root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a, b enrolled; e plain, unknown. node 2: c enrolled.
A=10.200.1.2 B=10.200.1.3 E=10.200.1.4 C=10.200.2.2
zt_test "setup: 2 nodes, 4 pods, 3 enrolled"
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && b=$(zt_pod_add 1 2 b) && e=$(zt_pod_add 1 3 e) || return 1
	c=$(zt_pod_add 2 1 c) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: b, name: b, namespace: default, serviceAccount: sa-b, workloadIps: ["$B"], protocol: HBONE, node: node1}
		- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2}
	Y
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 1 "$b" b sa-b && mesh_enroll 2 "$c" c sa-c || return 1
	for ns in "$b" "$c" "$e"; do zt_echo_server "$ns" 8080 || return 1; done
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# works_within NETNS IP MSG SECONDS: retry a round trip until it works.
works_within() {
	local deadline
	deadline=$(($(zt_now_ms) + $4 * 1000))
	while [ "$(zt_now_ms)" -lt "$deadline" ]; do
		[ "$(zt_send "$1" "$2" 8080 "$3" 2)" = "$3" ] && return 0
		sleep 0.2
	done
	return 1
}

# istio_rules NETNS: how many of our rules (either backend) NETNS holds.
istio_rules() { mesh_rules "$1" | grep -c . || true; }

zt_test "baseline: a->c and a->b through the mesh"
m1=$(mesh_mark 1)
r1=$(zt_send "$a" $C 8080 base-c)
r2=$(zt_send "$a" $B 8080 base-b)
if [ "$r1/$r2" = "base-c/base-b" ] && mesh_wait_access 1 "$m1" "dst.hbone_addr=$C:8080" 5 >/dev/null; then
	zt_pass
else zt_fail "replies '$r1' '$r2'"; fi

# ---- agent restart ----
zt_test "agent stopped: traffic keeps flowing through the proxy"
mesh_stop 1 cni
m1=$(mesh_mark 1)
r=$(zt_send "$a" $C 8080 agent-down)
if [ "$r" = agent-down ] && mesh_wait_access 1 "$m1" "dst.hbone_addr=$C:8080" 5 >/dev/null; then
	zt_pass
else zt_fail "reply '$r'"; fi

zt_test "agent stopped: pod rules left in place"
n=$(istio_rules "$a")
if [ "$n" -gt 0 ]; then zt_pass; else zt_fail "no rules of ours in a"; fi

zt_test "agent restarted: reloads 2 enrollments and the proxy takes its snapshot"
m1=$(mesh_mark 1)
mesh_cni_start 1
if grep -q "2 pods enrolled" "$(mesh_log 1 cni)" &&
	mesh_wait_grep "$(mesh_log 1 cni)" "acknowledged the snapshot" 10; then zt_pass; else
	zt_fail "agent log: $(tr '\n' ' ' <"$(mesh_log 1 cni)")"
fi

zt_test "agent restarted: proxy kept both pods (none removed)"
# The proxy removes pods missing from a snapshot before it acknowledges it
# (awaited above), so any removal is already in its log; the same pattern
# finds "pod a removed" after the unenroll below (its positive control).
if ! tail -n +"$((m1 + 1))" "$(mesh_log 1 proxy)" | grep -q "snapshot received"; then
	zt_fail "the proxy logged no snapshot after the agent restart"
elif tail -n +"$((m1 + 1))" "$(mesh_log 1 proxy)" | grep -qE "pod (a|b) removed"; then
	zt_fail "pod removed after the agent restart"
else zt_pass; fi

zt_test "agent restarted: a->c and a->b still work"
r1=$(zt_send "$a" $C 8080 after-agent-c)
r2=$(zt_send "$a" $B 8080 after-agent-b)
zt_expect_eq "$r1/$r2" "after-agent-c/after-agent-b"

# ---- proxy restart ----
zt_test "proxy killed: captured traffic from a stops (capture is real)"
pid=$(mesh_pid 1 proxy)
kill -KILL -- "-$pid" 2>/dev/null
wait "$pid" 2>/dev/null
sed -i "/^$pid /d" "$ZT_WORK/pids"
rm -f "$ZT_WORK/proxy1.pid"
r=$(zt_send "$a" $C 8080 proxy-down 2 2>/dev/null)
zt_expect_eq "$r" ""

zt_test "proxy restarted: gets both pods from the agent"
t0=$(zt_now_ms)
mesh_proxy_start 1
if mesh_wait_grep "$(mesh_log 1 proxy)" "pod a .*added" 10 && mesh_wait_grep "$(mesh_log 1 proxy)" "pod b .*added" 10; then
	zt_pass
else zt_fail "proxy log: $(tr '\n' ' ' <"$(mesh_log 1 proxy)")"; fi

zt_test "proxy restarted: a->c works again within 5 s"
if works_within "$a" $C back-again 5; then
	zt_pass
	zt_log "service restored $(($(zt_now_ms) - t0)) ms after the new proxy started"
else zt_fail "no reply"; fi

zt_test "proxy restarted: the new proxy logs the traffic"
line=$(mesh_wait_access 1 0 "dst.hbone_addr=$C:8080" 5)
mesh_expect_fields "$line" "src.identity=$(mesh_id sa-a)" "dst.identity=$(mesh_id sa-c)" direction=outbound

zt_test "proxy restarted: inbound to b (same node) works"
zt_expect_eq "$(zt_send "$a" $B 8080 to-b-again)" "to-b-again"

# ---- unenroll ----
m1=$(mesh_mark 1)
zt_test "before unenroll: a->e passes through the proxy (logged)"
r=$(zt_send "$a" $E 8080 before-unenroll)
if [ "$r" = before-unenroll ] && mesh_wait_access 1 "$m1" "src.addr=$A:.*dst.addr=$E:8080" 5 >/dev/null; then
	zt_pass
else zt_fail "reply '$r'"; fi

zt_test "unenroll a: command succeeds and the proxy removes the pod"
m1=$(mesh_mark 1)
if mesh_unenroll 1 a && mesh_wait_grep "$(mesh_log 1 proxy)" "pod a removed" 5; then zt_pass; else
	zt_fail "$(tail -3 "$ZT_WORK/enroll.log")"
fi

zt_test "unenroll a: none of our rules left in a (ISTIO_ chains, istio-ambient tables)"
zt_expect_eq "$(istio_rules "$a")" "0"

zt_test "unenroll a: no fwmark 0x111 ip rule left in a"
zt_expect_eq "$(ip -n "$a" rule show | grep -c 0x111 || true)" "0"

zt_test "unenroll a: a->e works directly, not in the proxy's access log"
r=$(zt_send "$a" $E 8080 after-unenroll)
# Positive control at the same time: b (still enrolled) -> e is logged; once
# its line is there, a line for a's earlier connection would be too.
rb=$(zt_send "$b" $E 8080 marker)
if ! mesh_wait_access 1 "$m1" "src.addr=$B:.*dst.addr=$E:8080" 5 >/dev/null; then
	zt_fail "no access line for b's marker connection (reply '$rb')"
else
	n=$(mesh_since 1 "$m1" | grep -c "src.addr=$A:" || true)
	if [ "$r" = after-unenroll ] && [ "$n" = 0 ]; then zt_pass; else zt_fail "reply '$r', $n access lines from a"; fi
fi

zt_test "unenroll a: a->c now arrives at c as plaintext (no src.identity)"
m2=$(mesh_mark 2)
r=$(zt_send "$a" $C 8080 plain-now)
line=$(mesh_wait_access 2 "$m2" "src.addr=$A:" 5)
if [ "$r" = plain-now ] && [ -n "$line" ] && [ -z "$(mesh_field "$line" src.identity)" ]; then zt_pass; else
	zt_fail "reply '$r', line '$line'"
fi

zt_test "unenroll a: a's 15008 no longer listens (b's, the control, does)"
if ! zt_ns_exec "$e" timeout 5 bash -c "exec 3<>/dev/tcp/$B/15008" 2>/dev/null; then
	zt_fail "the control: connect to $B:15008 failed"
elif zt_ns_exec "$e" timeout 5 bash -c "exec 3<>/dev/tcp/$A/15008" 2>/dev/null; then
	zt_fail "connect to $A:15008 succeeded"
else zt_pass; fi

zt_test "unenroll a: b still enrolled and served"
nb=$(istio_rules "$b")
rb=$(zt_send "$b" $C 8080 b-ok)
if [ "$nb" -gt 0 ] && [ "$rb" = b-ok ]; then zt_pass; else zt_fail "rules in b: $nb, reply '$rb'"; fi

zt_test "re-enroll a: mesh path back"
m1=$(mesh_mark 1)
if mesh_enroll 1 "$a" a sa-a && works_within "$a" $C re-enrolled 5 &&
	mesh_wait_access 1 "$m1" "src.addr=$A:.*dst.hbone_addr=$C:8080" 5 >/dev/null; then zt_pass; else
	zt_fail "$(tail -3 "$ZT_WORK/enroll.log")"
fi

mesh_finish
