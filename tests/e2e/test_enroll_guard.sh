#!/usr/bin/env bash
# Refusals of the node agent (issue 8, items 5 and 6): IPv6 capture that
# cannot be installed fails the enrollment closed (IPv4 rules rolled back);
# the agent's own netns and a netns enrolled under another uid are refused;
# a client of another uid is refused unless it is ZTUNNEL_TRUSTED_UID; a
# socket directory others can write in stops the agent at start-up.
# Needs root and setpriv (util-linux).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

v4_rules() { zt_ns_exec "$1" iptables-save 2>/dev/null | grep -c ISTIO || true; }
v6_rules() { zt_ns_exec "$1" ip6tables-save 2>/dev/null | grep -c ISTIO || true; }
mark_rules() { ip -n "$1" -4 rule show | grep -c 0x111 || true; }

# enroll_out NETNS UID [NODE [AS...]]: runs `ztunnel enroll` on NODE
# (default 1), optionally under a command such as setpriv; sets $out, $rc.
enroll_out() {
	local ns=$1 uid=$2 node=${3:-1}
	shift $(($# < 3 ? $# : 3))
	# shellcheck disable=SC2046
	out=$("$@" env $(mesh_env "$node") "$ZT_BIN" enroll --netns "$ns" --uid "$uid" --name "$uid" \
		--namespace default --service-account sa 2>&1)
	rc=$?
}
NOBODY=65534
as_nobody() { setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups "$@"; }
# The agents' sockets live where uid $NOBODY can reach their directories
# (ZT_WORK's parent may be private).
SOCKS=$(mktemp -d "${TMPDIR:-/tmp}/zt-guard.XXXXXX")
chmod 0711 "$SOCKS"
trap 'zt_cleanup; rm -rf "$SOCKS"' EXIT
mesh_env() { echo "INPOD_UDS=$SOCKS/n$1/zt.sock" "ZTUNNEL_CNI_DIR=$SOCKS/n$1/cni"; }

zt_test "setup: node 1 (agent), node 2 (agent trusting uid $NOBODY), 4 pods"
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	p6=$(zt_pod_add 1 1 v6) || return 1
	ip -n "$p6" addr add fd00:200::2/64 dev eth0 nodad || return 1
	p2=$(zt_pod_add 1 2 two) && p3=$(zt_pod_add 1 3 three) && p4=$(zt_pod_add 2 1 four) || return 1
	mesh_cni_start 1 || return 1
	# shellcheck disable=SC2046
	# Under umask 077, as a unit with UMask=0077 would start it.
	# shellcheck disable=SC2016
	mesh_start_bg 2 cni sh -c 'umask 077 && exec "$@"' sh env $(mesh_env 2) \
		ZTUNNEL_TRUSTED_UID=$NOBODY "$ZT_BIN" cni
	mesh_wait_grep "$(mesh_log 2 cni)" "serving ZDS" 10
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
[ -e "$SOCKS/n1/cni/pods/v6.json" ] && got="$got/recorded" || got="$got/none"
zt_expect_eq "$got" "0/0/none"

# ---- item 6: what may be enrolled ----
zt_test "the agent's own netns (node 1's) is refused, saying why"
enroll_out "$(zt_node_ns 1)" node1
if [ $rc -eq 1 ] && echo "$out" | grep -q "node agent's own network namespace"; then zt_pass; else
	zt_fail "rc=$rc: $out"
fi

zt_test "pod two enrolled as uid two"
enroll_out "$p2" two
if [ $rc -eq 0 ] && [ "$(v4_rules "$p2")" -gt 0 ]; then zt_pass; else zt_fail "rc=$rc: $out"; fi

zt_test "the same netns under another uid is refused, naming the uid holding it"
enroll_out "$p2" two-again
if [ $rc -eq 1 ] && echo "$out" | grep -q "already enrolled as uid two"; then zt_pass; else
	zt_fail "rc=$rc: $out"
fi

# ---- item 6: who may talk to the agent ----
zt_test "node 2: socket files owned by the trusted uid, which may enroll"
enroll_out "$p4" four 2 as_nobody
owner="$(stat -c %u "$SOCKS/n2/cni/agent.sock")/$(stat -c %u "$SOCKS/n2/zt.sock")"
if [ $rc -eq 0 ] && [ "$owner" = "$NOBODY/$NOBODY" ] && [ "$(v4_rules "$p4")" -gt 0 ]; then zt_pass; else
	zt_fail "rc=$rc, owners $owner: $out"
fi

zt_test "node 2, started under umask 077: its socket directory 0711, sockets group root and group-writable"
modes=$(stat -c '%a %u:%g' "$SOCKS/n2/cni" "$SOCKS/n2/cni/agent.sock" "$SOCKS/n2/zt.sock" | tr '\n' ' ')
zt_expect_eq "$modes" "711 0:0 660 $NOBODY:0 775 $NOBODY:0 "

# A hardened proxy unit is root without CAP_DAC_OVERRIDE: with a trusted
# uid set, it must still reach both sockets (through the group).
no_dac() { setpriv --bounding-set=-dac_override,-dac_read_search "$@"; }
zt_test "node 2: root without CAP_DAC_OVERRIDE may enroll and connect to the ZDS socket"
enroll_out "$p2" two-b 2 no_dac
# shellcheck disable=SC2016
zds=$(no_dac python3 -c 'import socket,sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
print("connected")' "$SOCKS/n2/zt.sock" 2>&1)
if [ $rc -eq 0 ] && [ "$zds" = connected ]; then zt_pass; else zt_fail "enroll rc=$rc: $out; zds: $zds"; fi

zt_test "positive control: that root without CAP_DAC_OVERRIDE cannot read uid $NOBODY's 0600 file"
echo secret >"$ZT_WORK/nobodys" && chown $NOBODY:$NOBODY "$ZT_WORK/nobodys" && chmod 0600 "$ZT_WORK/nobodys"
got="$(cat "$ZT_WORK/nobodys" 2>&1)/$(no_dac cat "$ZT_WORK/nobodys" 2>&1)"
if echo "$got" | grep -q "^secret/.*Permission denied"; then zt_pass; else zt_fail "got: $got"; fi

zt_test "node 1 without a trusted uid: uid $NOBODY cannot even reach agent.sock"
enroll_out "$p3" three 1 as_nobody
if [ $rc -eq 1 ] && echo "$out" | grep -q "Permission denied"; then zt_pass; else zt_fail "rc=$rc: $out"; fi

zt_test "node 1, agent.sock opened to all: uid $NOBODY is still refused, saying why"
chmod 0711 "$SOCKS/n1/cni"
chmod 0666 "$SOCKS/n1/cni/agent.sock"
enroll_out "$p3" three 1 as_nobody
if [ $rc -eq 1 ] && echo "$out" | grep -q "uid $NOBODY may not use the node agent"; then zt_pass; else
	zt_fail "rc=$rc: $out"
fi

zt_test "that refused enroll installed and recorded nothing"
got="$(v4_rules "$p3")"
[ -e "$SOCKS/n1/cni/pods/three.json" ] && got="$got/recorded" || got="$got/none"
zt_expect_eq "$got" "0/none"

zt_test "an agent whose socket directory others can write in refuses to start, saying why"
mkdir -m 0777 "$ZT_WORK/loose"
# timeout only guards against an agent that wrongly starts and serves.
out=$(INPOD_UDS=$ZT_WORK/loose/zt.sock ZTUNNEL_CNI_DIR=$ZT_WORK/loose-cni timeout 20 "$ZT_BIN" cni 2>&1)
rc=$?
if [ $rc -eq 1 ] && echo "$out" | grep -q "refusing to use $ZT_WORK/loose: its mode 0777"; then zt_pass; else
	zt_fail "rc=$rc: $out"
fi

mesh_finish
