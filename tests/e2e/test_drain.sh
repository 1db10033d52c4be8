#!/usr/bin/env bash
# Draining (wire facts §9.4): on SIGTERM the proxy stops accepting, lets
# connections in flight finish, and exits; a connection still open at the
# termination deadline is cut. A second SIGINT stops at once.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

export CONNECTION_TERMINATION_DEADLINE=4s
A=10.200.1.2 C=10.200.2.2
zt_test "setup: a on node 1, c on node 2"
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && c=$(zt_pod_add 2 1 c) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2}
	Y
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$c" c sa-c || return 1
	zt_echo_server "$c" 8080
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# slow_client SECONDS OUT: a client sending one line per second for SECONDS.
slow_client() {
	(for i in $(seq 1 "$1"); do echo "line-$i"; sleep 1; done) |
		zt_ns_exec "$a" timeout 20 socat -t 2 - "TCP:$C:8080" >"$2" 2>/dev/null &
}
# term_and_time N: SIGTERM node N's proxy; prints how long it took to exit (ms).
term_and_time() {
	local pid t0
	pid=$(mesh_pid "$1" proxy)
	t0=$(zt_now_ms)
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
	while kill -0 "$pid" 2>/dev/null && [ $(($(zt_now_ms) - t0)) -lt 15000 ]; do sleep 0.05; done
	echo $(($(zt_now_ms) - t0))
	rm -f "$ZT_WORK/proxy$1.pid"
	sed -i "/^$pid /d" "$ZT_WORK/pids"
}

zt_test "an in-flight transfer completes during a graceful drain, then the proxy exits"
slow_client 3 "$ZT_WORK/slow.out"
client=$!
sleep 0.5
pid=$(mesh_pid 2 proxy)
t0=$(zt_now_ms)
kill -TERM "$pid"
sleep 0.3
during=$(zt_send "$a" $C 8080 during-drain 2)
while kill -0 "$pid" 2>/dev/null && [ $(($(zt_now_ms) - t0)) -lt 15000 ]; do sleep 0.05; done
took=$(($(zt_now_ms) - t0))
rm -f "$ZT_WORK/proxy2.pid"
wait "$client"
got=$(tr '\n' ' ' <"$ZT_WORK/slow.out")
if [ "$got" = "line-1 line-2 line-3 " ] && [ "$took" -lt 4000 ] &&
	grep -q "drained: every connection finished" "$(mesh_log 2 proxy)"; then
	zt_pass
else
	zt_fail "echo '$got', exit after ${took} ms, log: $(tail -2 "$(mesh_log 2 proxy)")"
fi

zt_test "while draining, the proxy accepted no new connection"
zt_expect_eq "$during" ""

mesh_proxy_start 2
zt_test "a restarted proxy serves again"
zt_expect_eq "$(zt_send "$a" $C 8080 again)" again

zt_test "a transfer longer than the deadline is cut at the deadline"
slow_client 8 "$ZT_WORK/long.out"
client=$!
sleep 0.5
took=$(term_and_time 2)
wait "$client"
n=$(grep -c '^line-' "$ZT_WORK/long.out")
if [ "$took" -ge 3500 ] && [ "$took" -lt 7000 ] && [ "$n" -ge 2 ] && [ "$n" -lt 8 ] &&
	grep -q "drain deadline reached" "$(mesh_log 2 proxy)"; then
	zt_pass
else
	zt_fail "exit after ${took} ms, $n/8 lines echoed"
fi

zt_test "the cut connection is logged with its reason"
if grep -q "closed at the end of the drain period" "$(mesh_log 2 proxy)"; then zt_pass; else zt_fail "no access line"; fi

mesh_proxy_start 2
zt_test "a second SIGINT stops at once"
slow_client 8 "$ZT_WORK/int.out"
client=$!
sleep 0.5
pid=$(mesh_pid 2 proxy)
t0=$(zt_now_ms)
kill -INT "$pid"
sleep 0.2
kill -INT "$pid"
while kill -0 "$pid" 2>/dev/null && [ $(($(zt_now_ms) - t0)) -lt 10000 ]; do sleep 0.05; done
took=$(($(zt_now_ms) - t0))
rm -f "$ZT_WORK/proxy2.pid"
wait "$client"
if [ "$took" -lt 1500 ] && grep -q "again: stopping now" "$(mesh_log 2 proxy)"; then zt_pass; else zt_fail "exit after ${took} ms"; fi

mesh_proxy_start 2
mesh_finish
