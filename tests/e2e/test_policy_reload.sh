#!/usr/bin/env bash
# LOCAL_XDS_PATH is watched: an edit that adds a DENY policy applies without
# a restart and closes live connections it now denies; an ALLOW policy turns
# on allow-listing; a broken edit is refused and the last good config stays.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# Authorization decisions at info level, to see dry-run results.
export AUTHZ_POLICY_INFO_LOGGING=true
A=10.200.1.2 B=10.200.1.3 C=10.200.2.2
zt_test "setup: a, b on node 1; c on node 2 serving 8080 and 9090"
base_yaml() {
	cat <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: b, name: b, namespace: default, serviceAccount: sa-b, workloadIps: ["$B"], protocol: HBONE, node: node1}
		- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2}
	Y
}
# write_n2 CONTENT: replace node 2's config the way editors and kubectl-like
# tools do: write a temp file, rename it over the old one.
write_n2() {
	printf '%s\n' "$1" >"$ZT_WORK/n2.yaml.tmp" && mv "$ZT_WORK/n2.yaml.tmp" "$ZT_WORK/n2.yaml"
}
# wait_reloads N: until node 2's proxy has logged N reloads (3 s at most).
wait_reloads() {
	local i
	for i in $(seq 60); do
		[ "$(grep -c 'reloaded ' "$(mesh_log 2 proxy)")" -ge "$1" ] && return 0
		sleep 0.05
	done
	return 1
}
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && b=$(zt_pod_add 1 2 b) && c=$(zt_pod_add 2 1 c) || return 1
	mesh_ca || return 1
	base_yaml >"$ZT_WORK/n1.yaml"
	base_yaml >"$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 1 "$b" b sa-b && mesh_enroll 2 "$c" c sa-c || return 1
	zt_echo_server "$c" 8080 && zt_echo_server "$c" 9090
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

zt_test "before any policy: a -> c:8080 works"
zt_expect_eq "$(zt_send "$a" $C 8080 before)" before

# A live connection: one line now, one line in 4 s.
(
	echo first
	sleep 4
	echo second
) | zt_ns_exec "$a" timeout 10 socat -t 2 - "TCP:$C:8080" >"$ZT_WORK/live.out" 2>/dev/null &
live=$!
# The connection is up once its first line came back.
for _ in $(seq 100); do grep -q first "$ZT_WORK/live.out" 2>/dev/null && break; sleep 0.05; done

zt_test "editing the file to deny port 8080 is reloaded"
m2=$(mesh_mark 2)
write_n2 "$(base_yaml)
policies:
- name: no-8080
  namespace: default
  scope: Namespace
  action: Deny
  rules: [[[ {destinationPorts: [8080]} ]]]"
if mesh_wait_grep "$(mesh_log 2 proxy)" "reloaded .*1 policies" 3; then zt_pass; else zt_fail "no reload logged"; fi

zt_test "the live connection to 8080 is closed because of the policy change"
line=$(mesh_wait_access 2 "$m2" "policy change" 3)
if [ -n "$line" ] && echo "$line" | grep -q "no-8080"; then zt_pass; else zt_fail "no access line: $(mesh_since 2 "$m2")"; fi

zt_test "...and the rest of its data never arrived"
wait "$live" 2>/dev/null
zt_expect_eq "$(tr '\n' ' ' <"$ZT_WORK/live.out")" "first "

zt_test "new connections to 8080 are denied, 9090 still works"
got8080=$(zt_send "$a" $C 8080 x 3)
got9090=$(zt_send "$a" $C 9090 y 3)
if [ -z "$got8080" ] && [ "$got9090" = y ]; then zt_pass; else zt_fail "8080 '$got8080', 9090 '$got9090'"; fi

zt_test "a broken edit is refused with file, line and key; the DENY stays"
m2=$(mesh_mark 2)
write_n2 "$(base_yaml)
policies:
- name: oops
  namespace: default
  scope: Namespace
  action: Deny
  colour: blue"
if mesh_wait_grep "$(mesh_log 2 proxy)" "n2.yaml:[0-9]+: policies\[0\].colour.*edit refused" 3 &&
	[ -z "$(zt_send "$a" $C 8080 x 3)" ] && [ "$(zt_send "$a" $C 9090 z 3)" = z ]; then
	zt_pass
else
	zt_fail "log: $(tail -3 "$(mesh_log 2 proxy)")"
fi

zt_test "an ALLOW policy for sa-b only: b gets in, a is refused"
write_n2 "$(base_yaml)
policies:
- name: only-b
  namespace: default
  scope: Namespace
  action: Allow
  rules: [[[ {principals: [{Exact: cluster.local/ns/default/sa/sa-b}]} ]]]"
wait_reloads 2
gb=$(zt_send "$b" $C 9090 from-b 3)
ga=$(zt_send "$a" $C 9090 from-a 3)
if [ "$gb" = from-b ] && [ -z "$ga" ]; then zt_pass; else zt_fail "b '$gb', a '$ga'"; fi

zt_test "a dry-run DENY is logged but not enforced"
write_n2 "$(base_yaml)
policies:
- name: would-deny
  namespace: default
  scope: Namespace
  action: Deny
  dryRun: true
  rules: [[[ {destinationPorts: [9090]} ]]]"
wait_reloads 3
got=$(zt_send "$a" $C 9090 dry 3)
if [ "$got" = dry ] && mesh_wait_grep "$(mesh_log 2 proxy)" "authz.*allowed; dry-run would deny: default/would-deny" 3; then
	zt_pass
else
	zt_fail "reply '$got'"
fi

# The watch is on the config's directory, which here also holds every
# process's log: a file growing beside the config must not wake the proxy's
# main loop on each write (on a busy node that is a wakeup per access line).
# Wakeups counted as the main thread's voluntary context switches.
zt_test "a log growing beside the config does not wake the proxy per write; an edit still reloads"
pid2=$(cat "$ZT_WORK/proxy2.pid")
switches() { awk '/^voluntary_ctxt_switches/ { print $2 }' "/proc/$pid2/task/$pid2/status"; }
s0=$(switches)
exec 7>>"$ZT_WORK/grow.log"
for i in $(seq 400); do
	echo "line $i" >&7
	sleep 0.002 # paced, so that each write is its own event
done
exec 7>&-
s1=$(switches)
n=$(grep -c 'reloaded ' "$(mesh_log 2 proxy)")
write_n2 "$(base_yaml)"
if [ $((s1 - s0)) -lt 100 ] && wait_reloads $((n + 1)); then zt_pass; else
	zt_fail "$((s1 - s0)) wakeups of the main thread for 400 writes to another file; reloads: $(grep -c 'reloaded ' "$(mesh_log 2 proxy)") (want $((n + 1)))"
fi

mesh_finish
