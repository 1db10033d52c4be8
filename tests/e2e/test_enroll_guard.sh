#!/usr/bin/env bash
# Refusals of the node agent (issue 8, items 5 and 6): IPv6 capture that
# cannot be installed fails the enrollment closed (IPv4 rules rolled back);
# the agent's own netns and a netns enrolled under another uid are refused.
# Needs root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

v4_rules() { zt_ns_exec "$1" iptables-save 2>/dev/null | grep -c ISTIO || true; }
v6_rules() { zt_ns_exec "$1" ip6tables-save 2>/dev/null | grep -c ISTIO || true; }
mark_rules() { ip -n "$1" -4 rule show | grep -c 0x111 || true; }

# enroll_out NETNS UID: runs `ztunnel enroll` on node 1; sets $out and $rc.
enroll_out() {
	# shellcheck disable=SC2046
	out=$(env $(mesh_env 1) "$ZT_BIN" enroll --netns "$1" --uid "$2" --name "$2" \
		--namespace default --service-account sa 2>&1)
	rc=$?
}

zt_test "setup: 1 node with its agent, pod v6 with a routable IPv6 address"
setup() {
	zt_node_add 1 || return 1
	p6=$(zt_pod_add 1 1 v6) || return 1
	ip -n "$p6" addr add fd00:200::2/64 dev eth0 nodad || return 1
	mesh_cni_start 1
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# ---- item 5: IPv6 capture fails closed ----
zt_test "v6 with IPv6 on lo: enrolled, IPv4 and IPv6 rules installed"
enroll_out "$p6" v6
n4=$(v4_rules "$p6")
n6=$(v6_rules "$p6")
if [ $rc -eq 0 ] && [ "$n4" -gt 0 ] && [ "$n6" -gt 0 ]; then zt_pass; else
	zt_fail "rc=$rc, $n4 IPv4 and $n6 IPv6 ISTIO lines: $out"
fi

zt_test "v6 unenrolled: no rules left"
# shellcheck disable=SC2046
env $(mesh_env 1) "$ZT_BIN" unenroll --uid v6 >/dev/null 2>&1
zt_expect_eq "$(v4_rules "$p6")/$(v6_rules "$p6")/$(mark_rules "$p6")" "0/0/0"

# IPv6 off on lo only: fd00:200::2 stays on eth0, but the local route in
# table 100 cannot be installed, so the IPv6 capture cannot be complete.
zt_ns_exec "$p6" sysctl -qw net.ipv6.conf.lo.disable_ipv6=1
zt_test "v6 whose IPv6 rules cannot be installed: enroll fails and says why"
enroll_out "$p6" v6
if [ $rc -eq 1 ] && echo "$out" | grep -q "IPv6" && echo "$out" | grep -q "fd00:200::2"; then
	zt_pass
else
	zt_fail "rc=$rc: $out"
fi

zt_test "that failed enroll left no IPv4 rules, no ip rule and no record"
got="$(v4_rules "$p6")/$(mark_rules "$p6")"
[ -e "$ZT_WORK/n1/cni/pods/v6.json" ] && got="$got/recorded" || got="$got/none"
zt_expect_eq "$got" "0/0/none"

mesh_finish
