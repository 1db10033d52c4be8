#!/usr/bin/env bash
# Certificate renewal under a live connection, and the enroll/unenroll CLI's
# refusals: agent not running, netns missing, uid unknown, bad arguments.
set -u
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# Workload certificates live 6 s, so they are renewed every 3 s.
export SECRET_TTL=6s

zt_fabric_up
zt_node_add 1 >/dev/null
zt_node_add 2 >/dev/null
a=$(zt_pod_add 1 1 a)
c=$(zt_pod_add 2 1 c)
ip_c=$(zt_pod_ip 2 1)
mesh_ca
for n in 1 2; do
	cat >"$ZT_WORK/n$n.yaml" <<Y
workloads:
- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$(zt_pod_ip 1 1)"], protocol: HBONE, node: node1}
- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$ip_c"], protocol: HBONE, node: node2}
Y
done

# clean_exit RC WANT OUT: the CLI exited with exactly WANT (0 ok, 1 error,
# 2 usage, 3 NACKed) and printed no sanitizer report (an abort after the
# expected message must not pass).
clean_exit() {
	[ "$1" = "$2" ] && ! printf '%s' "$3" | grep -qE "AddressSanitizer|runtime error:"
}

# ---- enroll CLI before the agent runs ----
zt_test "enroll without a running agent fails with a clear message"
mkdir -p "$ZT_WORK/n1"
# shellcheck disable=SC2046
out=$(env $(mesh_env 1) "$ZT_BIN" enroll --netns "$a" --uid a --name a --namespace default \
	--service-account sa-a 2>&1)
rc=$?
if clean_exit $rc 1 "$out" && echo "$out" | grep -qi "not running"; then zt_pass; else zt_fail "rc=$rc: $out"; fi

mesh_node_up 1
mesh_node_up 2

zt_test "enroll of a netns that does not exist fails"
# shellcheck disable=SC2046
out=$(env $(mesh_env 1) "$ZT_BIN" enroll --netns "${ZT_PFX}-nope" --uid x --name x \
	--namespace default --service-account x 2>&1)
rc=$?
if clean_exit $rc 1 "$out" && echo "$out" | grep -qiE "no such|does not exist|not found"; then zt_pass; else zt_fail "rc=$rc: $out"; fi

zt_test "unenroll of an unknown uid fails"
# shellcheck disable=SC2046
out=$(env $(mesh_env 1) "$ZT_BIN" unenroll --uid never-enrolled 2>&1)
rc=$?
if clean_exit $rc 1 "$out" && echo "$out" | grep -qi "never-enrolled"; then zt_pass; else zt_fail "rc=$rc: $out"; fi

zt_test "enroll with a missing argument is a usage error"
# shellcheck disable=SC2046
out=$(env $(mesh_env 1) "$ZT_BIN" enroll --netns "$a" --uid a 2>&1)
rc=$?
if clean_exit $rc 2 "$out" && echo "$out" | grep -q -- "--name"; then zt_pass; else zt_fail "rc=$rc: $out"; fi

mesh_enroll 1 "$a" a sa-a
mesh_enroll 2 "$c" c sa-c
zt_echo_server "$c" 8080

# ---- renewal ----
zt_test "a connection outlives two certificate renewals"
m1=$(mesh_mark 1)
out=$( (for i in $(seq 1 8); do echo "line-$i"; sleep 1; done) |
	zt_ns_exec "$a" timeout 20 socat -t 3 - "TCP:$ip_c:8080")
n=$(echo "$out" | grep -c '^line-')
renewals=$(grep -c 'renewed spiffe://cluster.local/ns/default/sa/sa-a' "$(mesh_log 1 proxy)")
if [ "$n" = 8 ] && [ "$renewals" -ge 2 ]; then
	zt_pass
else
	zt_fail "echoed $n/8 lines, $renewals renewals of sa-a's certificate"
fi

zt_test "that connection was one tunnel, logged without error"
line=$(mesh_wait_access 1 "$m1" 'direction=outbound' 5)
mesh_expect_fields "$line" bytes_sent=56 bytes_recv=56 dst.identity="$(mesh_id sa-c)"

zt_test "new connections after renewal still work"
if [ "$(zt_send "$a" "$ip_c" 8080 after-renewal)" = after-renewal ]; then zt_pass; else zt_fail "no echo"; fi

mesh_finish
