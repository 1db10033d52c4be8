#!/usr/bin/env bash
# Upgrade in place (issue 14, docs/upgrade.md): SIGHUP makes node 1's proxy
# start a new proxy beside itself; the new one gets the node agent's
# snapshot, listens in every pod beside the old one (SO_REUSEPORT) and, once
# it serves them all, tells the old one to drain. Checked under load: two
# long transfers (out of node 1 and into node 1) started before the upgrade
# arrive byte for byte after it, and two tight loops of new connections
# (outbound from a pod of node 1, inbound to one; 8 connections at a time
# each) see no failure during the hand-over. (That the connections queued on
# a closing listener move to the new one is tests/unit/loop/test_migrate.c:
# on veth the instant is too short for a loop to hit reliably.) Afterwards the new proxy carries the traffic (its metrics, its
# admin ports) and the old one has exited. Before that, a new binary that
# fails at start leaves the old proxy serving; the good one then replaces it
# as a package upgrade would (renamed over the running file). Then the same
# upgrade with the node agent stopped before it and started again in the
# middle of it. Then the way Kubernetes does it: a second proxy started on
# its own, SIGTERM to the first. Last, the positive control: the same loop
# does see failures when the proxy just stops without a successor. Needs
# root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# Long enough that the transfers through the old proxy are never cut: the
# test ends them itself.
export CONNECTION_TERMINATION_DEADLINE=120s
A=10.200.1.2 B=10.200.1.3 E=10.200.1.4 C=10.200.2.2 D=10.200.2.3
N1=$(zt_node_ns 1)
zt_test "setup: a, b on node 1, c, d on node 2, all enrolled"
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && b=$(zt_pod_add 1 2 b) && e=$(zt_pod_add 1 3 e) || return 1
	c=$(zt_pod_add 2 1 c) && d=$(zt_pod_add 2 2 d) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: b, name: b, namespace: default, serviceAccount: sa-b, workloadIps: ["$B"], protocol: HBONE, node: node1}
		- {uid: e, name: e, namespace: default, serviceAccount: sa-e, workloadIps: ["$E"], protocol: HBONE, node: node1}
		- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2}
		- {uid: d, name: d, namespace: default, serviceAccount: sa-d, workloadIps: ["$D"], protocol: HBONE, node: node2}
	Y
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	# Node 1's proxy runs from a copy of the binary, which the test
	# replaces as a package upgrade would (a new file renamed over it).
	mkdir -p "$ZT_WORK/bin" && cp "$ZT_BIN" "$ZT_WORK/bin/ztunnel" || return 1
	mesh_cni_start 1 && ZT_BIN=$ZT_WORK/bin/ztunnel mesh_proxy_start 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 1 "$b" b sa-b || return 1
	mesh_enroll 2 "$c" c sa-c && mesh_enroll 2 "$d" d sa-d || return 1
	zt_echo_server "$b" 8080 && zt_echo_server "$c" 8080 || return 1
	head -c $((8 << 20)) /dev/urandom >"$ZT_WORK/data.bin"
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi
SUM=$(sha256sum <"$ZT_WORK/data.bin" | cut -d' ' -f1)

# ---- helpers ----

# until_ok CMD...: CMD every 50 ms until it succeeds; 60 s at most (a hang
# guard, not a speed requirement).
until_ok() {
	local deadline=$(($(zt_now_ms) + 60000))
	while [ "$(zt_now_ms)" -lt "$deadline" ]; do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}

exited() { ! kill -0 "$1" 2>/dev/null; }
# listening NETNS PORT: something listens on TCP PORT in NETNS.
listening() { zt_ns_exec "$1" ss -Hltn "sport = :$2" | grep -q .; }

# loop_start NAME NETNS IP: tight loops of new connections from NETNS to
# the echo server IP:8080 (conn_loop.py), LOOP_THREADS of them at once, so
# that connections wait in the listeners' accept queues when the old proxy
# closes them.
LOOP_THREADS=${LOOP_THREADS:-8}
loop_start() {
	rm -f "$ZT_WORK/stop-$1"
	zt_bg "$2" "loop-$1" python3 "$here/conn_loop.py" "$3" 8080 "$ZT_WORK/stop-$1" "$ZT_WORK/loop-$1.count" "$LOOP_THREADS"
	echo "$ZT_BG_PID" >"$ZT_WORK/loop-$1.lpid"
}
loop_attempts() { cut -d' ' -f1 "$ZT_WORK/loop-$1.count" 2>/dev/null || echo 0; }
loop_failures() { cut -d' ' -f2 "$ZT_WORK/loop-$1.count" 2>/dev/null || echo 0; }
loop_past() { [ "$(loop_attempts "$1")" -ge "$2" ]; }
loop_failed() { [ "$(loop_failures "$1")" -gt 0 ]; }
# loops_past TAG N: the two loops of upgrade TAG made N attempts together.
loops_past() { [ $(($(loop_attempts "out$1") + $(loop_attempts "in$1"))) -ge "$2" ]; }
# loop_stop NAME: ends the loop; its final "attempts failures" stay in the
# count file.
loop_stop() {
	local pid
	pid=$(cat "$ZT_WORK/loop-$1.lpid")
	touch "$ZT_WORK/stop-$1"
	until_ok exited "$pid"
	sed -i "/^$pid /d" "$ZT_WORK/pids"
}

# xfer_start NAME CLIENT_NS SERVER_NS IP: a one-connection transfer of
# data.bin from CLIENT_NS to IP:9000, a receiver in SERVER_NS (xfer.py).
# Returns once the first half is sent: the connection is open through the
# proxy serving now. xfer_finish sends the rest.
xfer_start() {
	local name=$1
	rm -f "$ZT_WORK/xfer-$name.sum" "$ZT_WORK/ctl-$name.half"
	zt_bg "$3" "recv-$name" python3 "$here/xfer.py" recv 9000 "$ZT_WORK/xfer-$name.sum"
	until_ok listening "$3" 9000
	mkfifo "$ZT_WORK/ctl-$name"
	zt_bg "$2" "send-$name" python3 "$here/xfer.py" send "$4" 9000 "$ZT_WORK/data.bin" "$ZT_WORK/ctl-$name"
	echo "$ZT_BG_PID" >"$ZT_WORK/send-$name.spid"
	until_ok test -e "$ZT_WORK/ctl-$name.half"
}
# xfer_finish NAME: lets the sender finish; XFER_RESULT is "SHA256 BYTES"
# as the receiver got them and the sender's exit status. (Not from a
# command substitution: `wait` needs the shell that started the sender.)
xfer_finish() {
	local pid rc
	pid=$(cat "$ZT_WORK/send-$1.spid")
	echo go >"$ZT_WORK/ctl-$1"
	until_ok test -e "$ZT_WORK/xfer-$1.sum"
	until_ok exited "$pid"
	wait "$pid"
	rc=$?
	sed -i "/^$pid /d" "$ZT_WORK/pids"
	XFER_RESULT="$(cat "$ZT_WORK/xfer-$1.sum" 2>/dev/null) sender-exit=$rc"
}

# new_pid_after MARK: the pid of the proxy the old one started after log
# line MARK.
new_pid_after() {
	tail -n +"$(($1 + 1))" "$(mesh_log 1 proxy)" | sed -n 's/.*started the new proxy .* as pid \([0-9]*\);.*/\1/p' | head -1
}
has_new_pid() { [ -n "$(new_pid_after "$1")" ]; }
drain_logged() {
	tail -n +"$(($1 + 1))" "$(mesh_log 1 proxy)" | grep -q "replaced by the new proxy (pid $2): draining"
}
took_over() { tail -n +"$(($1 + 1))" "$(mesh_log 1 proxy)" | grep -q "pid $2 serves every pod"; }
port_owner() {
	zt_ns_exec "$N1" ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2
}
owns_ports() { [ "$(port_owner 15020)" = "$1" ] && [ "$(port_owner 15021)" = "$1" ] && [ "$(port_owner 15000)" = "$1" ]; }
# opened_source: the node 1 proxy's count of outbound connections opened
# (the process now answering on 15020).
opened_source() {
	zt_ns_exec "$N1" curl -s -m 5 http://127.0.0.1:15020/metrics |
		grep '^istio_tcp_connections_opened_total{reporter="source"' | awk '{ s += $NF } END { print s + 0 }'
}
counted_both() { [ "$(opened_source)" -gt 0 ] && [ "$(opened_destination)" -gt 0 ]; }
opened_destination() {
	zt_ns_exec "$N1" curl -s -m 5 http://127.0.0.1:15020/metrics |
		grep '^istio_tcp_connections_opened_total{reporter="destination"' | awk '{ s += $NF } END { print s + 0 }'
}
# marker_seen NETNS LOG: adds and removes a marker rule in NETNS; true once
# the `ip monitor` writing LOG has reported it (it is listening).
marker_seen() {
	ip -n "$1" rule add pref 31000 from 192.0.2.1 lookup 200
	ip -n "$1" rule del pref 31000 from 192.0.2.1 lookup 200
	grep -q "192.0.2.1" "$2"
}

# upgrade_under_load TAG WITH_AGENT_RESTART: the whole scenario, checks
# included.
upgrade_under_load() {
	local tag=$1 restart=$2 old new mark a0 a1 ok
	old=$(mesh_pid 1 proxy)
	loop_start "out$tag" "$a" $C
	loop_start "in$tag" "$d" $B
	xfer_start "out$tag" "$a" "$c" $C
	xfer_start "in$tag" "$d" "$b" $B

	zt_test "[$tag] before: both loops run through the old proxy (pid $old)"
	if until_ok loop_past "out$tag" 50 && until_ok loop_past "in$tag" 50; then zt_pass; else
		zt_fail "attempts out $(loop_attempts "out$tag"), in $(loop_attempts "in$tag")"
	fi

	if [ "$restart" = 1 ]; then
		# Watch a's policy-routing rules while the agent restarts: the
		# restart re-installs every pod's rules, and the fwmark rule must
		# never be missing meanwhile (replies to the proxy's connections
		# would leave the pod and those connections be reset).
		zt_test "[$tag] a's rule changes are watched (a marker rule shows up)"
		zt_bg "$a" "rulemon-$tag" stdbuf -oL ip monitor rule
		if until_ok marker_seen "$a" "$ZT_WORK/rulemon-$tag.log"; then zt_pass; else
			zt_fail "ip monitor saw nothing: $(cat "$ZT_WORK/rulemon-$tag.log")"
		fi
		zt_test "[$tag] node agent stopped before the upgrade"
		mesh_stop 1 cni
		if [ -z "$(mesh_pid 1 cni)" ]; then zt_pass; else zt_fail "agent still running"; fi
	fi

	mark=$(mesh_mark 1)
	a0=$(($(loop_attempts "out$tag") + $(loop_attempts "in$tag")))
	kill -HUP "$old"
	zt_test "[$tag] SIGHUP: the old proxy starts a new one"
	if until_ok has_new_pid "$mark"; then
		new=$(new_pid_after "$mark")
		echo "$new proxy1-$tag" >>"$ZT_WORK/pids"
		zt_pass
	else
		zt_fail "no new proxy in the log"
		return 1
	fi

	if [ "$restart" = 1 ]; then
		zt_test "[$tag] node agent started again in the middle of the upgrade"
		if mesh_cni_start 1; then zt_pass; else zt_fail "agent did not start"; fi
	fi

	if [ "$restart" = 1 ]; then
		zt_test "[$tag] the agent's restart left a's fwmark rule in place (never deleted)"
		if grep -q "0x111" "$ZT_WORK/rulemon-$tag.log"; then
			zt_fail "$(grep 0x111 "$ZT_WORK/rulemon-$tag.log" | head -3 | tr '\n' ' ')"
		else zt_pass; fi
	fi

	zt_test "[$tag] the new proxy (pid $new) serves every pod and the old one drains"
	if until_ok took_over "$mark" "$new" &&
		until_ok drain_logged "$mark" "$new"; then
		zt_pass
	else zt_fail "no hand-over in the log"; fi

	zt_test "[$tag] tcp_migrate_req is on in the pods (queued connections move to the new listeners)"
	zt_expect_eq "$(zt_ns_exec "$a" sysctl -n net.ipv4.tcp_migrate_req)/$(zt_ns_exec "$b" sysctl -n net.ipv4.tcp_migrate_req)" "1/1"

	zt_test "[$tag] the new proxy binds the admin, stats and readiness ports the old one released"
	if until_ok owns_ports "$new"; then zt_pass; else
		zt_fail "owners: 15000 $(port_owner 15000), 15020 $(port_owner 15020), 15021 $(port_owner 15021)"
	fi

	zt_test "[$tag] the loops go on through the new proxy (its metrics count them)"
	if until_ok counted_both; then zt_pass; else
		zt_fail "source $(opened_source), destination $(opened_destination)"
	fi

	zt_test "[$tag] the transfers started before the upgrade complete byte for byte"
	local s1 s2 want
	want="$SUM $((8 << 20)) sender-exit=0"
	xfer_finish "out$tag"
	s1=$XFER_RESULT
	xfer_finish "in$tag"
	s2=$XFER_RESULT
	if [ "$s1" = "$want" ] && [ "$s2" = "$want" ]; then zt_pass; else
		zt_fail "out: $s1; in: $s2; want $want"
	fi

	zt_test "[$tag] the old proxy (pid $old) exits once its connections are done"
	if until_ok exited "$old"; then
		zt_pass
		sed -i "/^$old /d" "$ZT_WORK/pids"
		echo "$new" >"$ZT_WORK/proxy1.pid"
	else zt_fail "pid $old still running"; fi
	a1=$(($(loop_attempts "out$tag") + $(loop_attempts "in$tag")))
	# The loops ran across the hand-over, and on for a while after it.
	until_ok loops_past "$tag" $((a1 + 100))
	loop_stop "out$tag"
	loop_stop "in$tag"

	zt_test "[$tag] no connection of either loop failed across the hand-over"
	ok=1
	[ "$a1" -gt "$a0" ] || ok=0
	[ "$(loop_failures "out$tag")" = 0 ] && [ "$(loop_failures "in$tag")" = 0 ] || ok=0
	zt_log "[$tag] loops: out $(cat "$ZT_WORK/loop-out$tag.count"), in $(cat "$ZT_WORK/loop-in$tag.count") (attempts failures); $((a1 - a0)) attempts between SIGHUP and the old proxy's exit"
	if [ $ok = 1 ]; then zt_pass; else
		zt_fail "out: $(cat "$ZT_WORK/loop-out$tag.count") $(head -3 "$ZT_WORK/loop-out$tag.count.err" | tr '\n' ' '); in: $(cat "$ZT_WORK/loop-in$tag.count") $(head -3 "$ZT_WORK/loop-in$tag.count.err" | tr '\n' ' '); attempts during the hand-over $((a1 - a0))"
	fi
}

# ---- a new binary that does not start ----
# Installed as a package upgrade would, renamed over the running one's path.
install_bin() {
	cp "$1" "$ZT_WORK/bin/ztunnel.new" && chmod 755 "$ZT_WORK/bin/ztunnel.new" &&
		mv -f "$ZT_WORK/bin/ztunnel.new" "$ZT_WORK/bin/ztunnel"
}
zt_test "a new binary that fails at start: the old proxy logs it and keeps serving"
printf '#!/bin/sh\necho "broken build" >&2\nexit 3\n' >"$ZT_WORK/broken.sh"
install_bin "$ZT_WORK/broken.sh"
old=$(mesh_pid 1 proxy)
mark=$(mesh_mark 1)
kill -HUP "$old"
gone() { tail -n +"$((mark + 1))" "$(mesh_log 1 proxy)" | grep -q "went away before serving every pod; pid $old keeps serving"; }
if until_ok gone && [ "$(zt_send "$a" $C 8080 still-here)" = still-here ] && kill -0 "$old" &&
	tail -n +"$((mark + 1))" "$(mesh_log 1 proxy)" | grep -q "exited with status 3"; then
	zt_pass
else zt_fail "$(tail -n +"$((mark + 1))" "$(mesh_log 1 proxy)" | grep -E 'upgrade|broken' | tail -3 | tr '\n' ' ')"; fi
# The good binary goes back the same way: the running proxy's own file is
# now a deleted one, and the next SIGHUP must start the file at its path.
install_bin "$ZT_BIN"

upgrade_under_load 1 0

zt_test "the new proxy runs the binary now at the path, not the deleted file the old one ran"
exe=$(readlink "/proc/$(mesh_pid 1 proxy)/exe")
zt_expect_eq "$exe" "$ZT_WORK/bin/ztunnel"

upgrade_under_load 2 1

zt_test "after both upgrades: a pod enrolled now is served by the newest proxy"
cur=$(mesh_pid 1 proxy)
if mesh_enroll 1 "$e" e sa-e && [ "$(zt_send "$e" $C 8080 late-pod)" = late-pod ] &&
	tail -2 "$ZT_WORK/enroll.log" | grep -q "proxy acknowledged"; then zt_pass; else
	zt_fail "$(tail -2 "$ZT_WORK/enroll.log")"
fi

# ---- by hand, as Kubernetes does it ----
# A second proxy started on its own (no SIGHUP, no pipe: a DaemonSet's new
# pod), then SIGTERM to the first once the second serves every pod.
zt_test "[3] a second proxy started by hand serves every pod beside the first"
old=$(mesh_pid 1 proxy)
loop_start out3 "$a" $C
loop_start in3 "$d" $B
xfer_start out3 "$a" "$c" $C
xfer_start in3 "$d" "$b" $B
until_ok loop_past out3 50
until_ok loop_past in3 50
a0=$(($(loop_attempts out3) + $(loop_attempts in3)))
# It waits for the agent's snapshot, which it acknowledges once every pod of
# it is served.
if ZT_BIN=$ZT_WORK/bin/ztunnel mesh_proxy_start 1; then
	new=$(mesh_pid 1 proxy)
	zt_pass
else zt_fail "the second proxy did not start: $(tail -3 "$(mesh_log 1 proxy)" | tr '\n' ' ')"; fi

zt_test "[3] SIGTERM to the first: it drains, the second binds the ports and carries the traffic"
kill -TERM "$old"
if until_ok owns_ports "$new" && until_ok counted_both; then zt_pass; else
	zt_fail "owners: 15020 $(port_owner 15020); counts $(opened_source) $(opened_destination)"
fi
zt_test "[3] the transfers complete byte for byte, the first proxy exits"
xfer_finish out3
s1=$XFER_RESULT
xfer_finish in3
s2=$XFER_RESULT
want="$SUM $((8 << 20)) sender-exit=0"
if [ "$s1" = "$want" ] && [ "$s2" = "$want" ] && until_ok exited "$old"; then
	zt_pass
	sed -i "/^$old /d" "$ZT_WORK/pids"
else zt_fail "out: $s1; in: $s2; want $want; pid $old $(exited "$old" && echo exited || echo running)"; fi
a1=$(($(loop_attempts out3) + $(loop_attempts in3)))
until_ok loops_past 3 $((a1 + 100))
loop_stop out3
loop_stop in3
zt_test "[3] no connection of either loop failed"
zt_log "[3] loops: out $(cat "$ZT_WORK/loop-out3.count"), in $(cat "$ZT_WORK/loop-in3.count"); $((a1 - a0)) attempts between the second proxy's start and the first one's exit"
if [ "$a1" -gt "$a0" ] && [ "$(loop_failures out3)" = 0 ] && [ "$(loop_failures in3)" = 0 ]; then zt_pass; else
	zt_fail "out: $(cat "$ZT_WORK/loop-out3.count") $(head -3 "$ZT_WORK/loop-out3.count.err" | tr '\n' ' '); in: $(cat "$ZT_WORK/loop-in3.count") $(head -3 "$ZT_WORK/loop-in3.count.err" | tr '\n' ' ')"
fi

# ---- positive control ----
cur=$(mesh_pid 1 proxy)
zt_test "control: the same loop sees failures when the proxy stops without a successor"
loop_start ctl "$a" $C
until_ok loop_past ctl 50
kill -TERM "$cur"
if until_ok loop_failed ctl; then
	zt_pass
	zt_log "control: $(cat "$ZT_WORK/loop-ctl.count") (attempts failures), first: $(head -1 "$ZT_WORK/loop-ctl.count.err")"
else zt_fail "no failure counted: $(cat "$ZT_WORK/loop-ctl.count")"; fi
loop_stop ctl
until_ok exited "$cur"
rm -f "$ZT_WORK/proxy1.pid"

mesh_finish
