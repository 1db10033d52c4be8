#!/usr/bin/env bash
# Open-file limits. The proxy raises its soft RLIMIT_NOFILE to the hard limit
# at start (as Istio's ztunnel does). When it runs out of descriptors anyway,
# a listener pauses accepting for a short back-off, logged once, instead of
# spinning on the readable socket and logging every failed accept; with
# descriptors free again, waiting connections are served. Needs root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# Start below the hard limit, so that the raise shows.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 1024 ]; then ulimit -Sn 1024; fi

# node 1: a (enrolled, echo on 8080), p (plain client)
A=10.200.1.2
zt_test "setup: 1 node, pod a (enrolled) serving echo, pod p (plain)"
setup() {
	zt_node_add 1 || return 1
	a=$(zt_pod_add 1 1 a) && p=$(zt_pod_add 1 2 p) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
	Y
	mesh_node_up 1 || return 1
	mesh_enroll 1 "$a" a sa-a || return 1
	zt_echo_server "$a" 8080 || return 1
	for _ in $(seq 1 20); do
		[ "$(zt_send "$p" $A 8080 hello 2)" = hello ] && return 0
		sleep 0.1
	done
	return 1
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi
pid=$(mesh_pid 1 proxy)

# nofile PID: "SOFT HARD" of Max open files.
nofile() { awk '/^Max open files/ {print $4, $5}' "/proc/$1/limits"; }

zt_test "the proxy runs with its soft open-file limit raised to the hard limit"
read -r soft_now hard_now <<<"$(nofile "$pid")"
if [ "$(ulimit -Sn)" != "$hard_now" ] && [ "$soft_now" = "$hard_now" ]; then zt_pass; else
	zt_fail "soft $soft_now, hard $hard_now (started with soft $(ulimit -Sn))"
fi

# The lowest free descriptor number, once the proxy holds no connection in
# pod a: a connection still being torn down would free descriptors below the
# limit set from it, and the limit would no longer bind.
lowest_free_fd() {
	local i
	for i in $(seq 1 100); do
		zt_ns_exec "$a" ss -Htnp | grep -q "pid=$pid," || break
		sleep 0.1
	done
	local n=0
	while [ -e "/proc/$pid/fd/$n" ]; do n=$((n + 1)); done
	echo "$n"
}

# Out of descriptors: a new descriptor must be numbered below the soft
# limit, so a limit at the lowest free number leaves none; then connect.
log=$(mesh_log 1 proxy)
mark=$(wc -l <"$log")
free_fd=$(lowest_free_fd)
prlimit --pid "$pid" --nofile="$free_fd":"$hard_now"
holders=()
for i in $(seq 1 12); do
	zt_bg "$p" "hold-$i" bash -c "exec 3<>/dev/tcp/$A/8080; sleep 60"
	holders+=("$ZT_BG_PID")
done
zt_test "out of descriptors: the refusal to accept is logged"
if mesh_wait_grep "$log" "accept on 15006: Too many open files" 10; then zt_pass; else
	zt_fail "no 'accept on 15006: Too many open files' line"
fi
# The window in which a spinning accept loop would flood the log.
sleep 1
zt_test "out of descriptors: accepting backs off (a few log lines, not one per loop iteration)"
lines=$(tail -n +"$((mark + 1))" "$log" | grep -c "accept on 15006")
if [ "$lines" -ge 1 ] && [ "$lines" -le 8 ]; then zt_pass; else
	zt_fail "$lines lines about accept on 15006 in about a second"
fi

prlimit --pid "$pid" --nofile="$soft_now":"$hard_now"
for h in "${holders[@]}"; do zt_bg_stop "$h"; done
zt_test "descriptors free again: connections are accepted and served"
if [ "$(zt_send "$p" $A 8080 again 10)" = again ]; then zt_pass; else
	zt_fail "no echo through the proxy after the limit was restored"
fi

# At the edge: one descriptor free. Each connection is accepted and then
# fails (no descriptor for the upstream socket, logged per connection), so a
# pause starts and ends with every connection: warned about once, not each time.
mark=$(wc -l <"$log")
free_fd=$(lowest_free_fd)
prlimit --pid "$pid" --nofile=$((free_fd + 1)):"$hard_now"
for i in $(seq 1 12); do zt_send "$p" $A 8080 edge-"$i" 2 >/dev/null 2>&1; done
zt_test "one descriptor free: connections fail one by one, the accept pause is warned about once"
failed=$(tail -n +"$((mark + 1))" "$log" | grep -c 'error="connect to.*Too many open files')
lines=$(tail -n +"$((mark + 1))" "$log" | grep -c "accept on 15006")
if [ "$failed" -ge 6 ] && [ "$lines" -le 2 ]; then zt_pass; else
	zt_fail "$failed failed connections, $lines lines about accept on 15006"
fi
prlimit --pid "$pid" --nofile="$soft_now":"$hard_now"
zt_test "...and with the limit restored, served again"
if [ "$(zt_send "$p" $A 8080 again 10)" = again ]; then zt_pass; else
	zt_fail "no echo through the proxy after the limit was restored"
fi

mesh_finish
