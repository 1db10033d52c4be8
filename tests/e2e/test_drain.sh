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
# term_and_time N: SIGTERM node N's proxy and wait for it to exit; prints how
# long that took (ms; for the log, not checked).
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

# wait_lines FILE N: until FILE holds N echoed lines (the transfer is live).
wait_lines() {
	local _
	for _ in $(seq 200); do
		[ "$(grep -c '^line-' "$1" 2>/dev/null)" -ge "$2" ] && return 0
		sleep 0.05
	done
	return 1
}
# wait_exit PID: until PID has exited (15 s at most: a hang, not a speed bound).
wait_exit() {
	local _
	for _ in $(seq 300); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.05
	done
	return 1
}

zt_test "an in-flight transfer completes during a graceful drain, then the proxy exits"
m2=$(wc -l <"$(mesh_log 2 proxy)")
slow_client 3 "$ZT_WORK/slow.out"
client=$!
wait_lines "$ZT_WORK/slow.out" 1
pid=$(mesh_pid 2 proxy)
kill -TERM "$pid"
mesh_wait_grep "$(mesh_log 2 proxy)" "draining: listeners closed" 10 >/dev/null
during=$(zt_send "$a" $C 8080 during-drain 2)
wait_exit "$pid"
exited=$?
rm -f "$ZT_WORK/proxy2.pid"
wait "$client"
got=$(tr '\n' ' ' <"$ZT_WORK/slow.out")
# The drain ended because the connection finished, not at the deadline.
since=$(tail -n +"$((m2 + 1))" "$(mesh_log 2 proxy)")
if [ "$got" = "line-1 line-2 line-3 " ] && [ "$exited" = 0 ] &&
	echo "$since" | grep -q "drained: every connection finished" &&
	! echo "$since" | grep -q "drain deadline reached"; then
	zt_pass
else
	zt_fail "echo '$got', exited $exited, log: $(echo "$since" | tail -2)"
fi

zt_test "while draining, the proxy accepted no new connection"
zt_expect_eq "$during" ""

mesh_proxy_start 2
zt_test "a restarted proxy serves again"
zt_expect_eq "$(zt_send "$a" $C 8080 again)" again

zt_test "a transfer longer than the deadline is cut at the deadline"
m2=$(wc -l <"$(mesh_log 2 proxy)")
slow_client 8 "$ZT_WORK/long.out"
client=$!
wait_lines "$ZT_WORK/long.out" 1
pid=$(mesh_pid 2 proxy)
term_and_time 2 >/dev/null
wait "$client"
n=$(grep -c '^line-' "$ZT_WORK/long.out")
# The cause of the cut: the deadline is logged, and only then the connection
# is closed "at the end of the drain period"; part of the transfer arrived.
since=$(tail -n +"$((m2 + 1))" "$(mesh_log 2 proxy)")
dl=$(echo "$since" | grep -n "drain deadline reached" | head -1 | cut -d: -f1)
cut=$(echo "$since" | grep -n "closed at the end of the drain period" | head -1 | cut -d: -f1)
if ! kill -0 "$pid" 2>/dev/null && [ "$n" -ge 1 ] && [ "$n" -lt 8 ] &&
	[ -n "$dl" ] && [ -n "$cut" ] && [ "$dl" -lt "$cut" ]; then
	zt_pass
else
	zt_fail "$n/8 lines echoed, deadline at log line '$dl', cut at '$cut'"
fi

zt_test "the cut connection is logged with its reason"
if grep -q "closed at the end of the drain period" "$(mesh_log 2 proxy)"; then zt_pass; else zt_fail "no access line"; fi

mesh_proxy_start 2
zt_test "a second SIGINT stops at once"
m2=$(wc -l <"$(mesh_log 2 proxy)")
slow_client 8 "$ZT_WORK/int.out"
client=$!
wait_lines "$ZT_WORK/int.out" 1
pid=$(mesh_pid 2 proxy)
kill -INT "$pid"
mesh_wait_grep "$(mesh_log 2 proxy)" "draining: listeners closed" 10 >/dev/null
kill -INT "$pid"
wait_exit "$pid"
exited=$?
rm -f "$ZT_WORK/proxy2.pid"
wait "$client"
n=$(grep -c '^line-' "$ZT_WORK/int.out")
# Stopped by the second signal: not drained, not cut by the deadline, and
# the transfer was still going.
since=$(tail -n +"$((m2 + 1))" "$(mesh_log 2 proxy)")
if [ "$exited" = 0 ] && echo "$since" | grep -q "again: stopping now" &&
	! echo "$since" | grep -qE "drain deadline reached|drained: every connection finished" &&
	[ "$n" -lt 8 ]; then
	zt_pass
else zt_fail "exited $exited, $n/8 lines, log: $(echo "$since" | tail -3)"; fi

mesh_proxy_start 2
mesh_finish
