#!/usr/bin/env bash
# The nftables rules backend (ZTUNNEL_REDIRECT=nftables). First what only it
# has: an nft pod holds our three inet tables and no ISTIO_ chain, an
# iptables pod the reverse (each the other's positive control); a re-enroll
# and an agent restart leave the same ruleset; restarting the agent with the
# other backend moves the pod over and back; unenroll leaves none of our
# tables; a bad ZTUNNEL_REDIRECT or a missing nft stops the agent at start.
# Then the capture scenarios as they are, every agent with nftables
# (ZT_REDIRECT, see mesh.sh), each in namespaces of its own: test_traffic
# (same node, cross node, plaintext inbound, passthrough), test_dns_capture
# and test_dns (DNS capture, conntrack zone 1), test_restart (restarts,
# unenroll, re-enroll). Their checks count here, named "nftables SCRIPT:".
# Needs root and nft.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ZT_REDIRECT=nftables
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# a on node 1 (agent with nftables), b on node 2 (agent with iptables).
zt_test "setup: 2 nodes, agents with nftables (node 1) and iptables (node 2), a and b enrolled"
setup() {
	command -v nft >/dev/null || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && b=$(zt_pod_add 2 1 b) || return 1
	mesh_cni_start 1 && mesh_cni_start 2 ZTUNNEL_REDIRECT=iptables || return 1
	grep -q "rules by nftables" "$(mesh_log 1 cni)" && grep -q "rules by iptables" "$(mesh_log 2 cni)" ||
		return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$b" b sa-b
}
if setup; then zt_pass; else
	zt_fail "setup failed (nft: $(command -v nft))"
	mesh_finish
	exit 1
fi

OURS=$'table inet istio-ambient-nat\ntable inet istio-ambient-mangle\ntable inet istio-ambient-raw'
# nft_tables NETNS: our nft tables; ipt_chains NETNS: our iptables lines.
nft_tables() { mesh_rules "$1" | grep '^table inet istio-ambient-' || true; }
ipt_chains() { mesh_rules "$1" | grep -v '^table inet istio-ambient-' || true; }
# ruleset NETNS: our nft tables in full, counters aside (the iptables
# backend, on iptables-nft, leaves tables of its own behind).
ruleset() {
	local t
	for t in nat mangle raw; do
		zt_ns_exec "$1" nft list table inet "istio-ambient-$t" 2>&1
	done | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/'
}
fwmark_rules() { ip -n "$1" rule show | grep -c 'fwmark 0x111/0xfff lookup 100' || true; }

zt_test "a (nftables): our three inet tables and no ISTIO_ chain, IPv4 or IPv6"
got=$(nft_tables "$a")
if [ "$got" = "$OURS" ] && [ -z "$(ipt_chains "$a")" ]; then zt_pass; else
	zt_fail "tables '$got', iptables: $(ipt_chains "$a")"
fi

zt_test "b (iptables): ISTIO_ chains and none of our nft tables"
if [ -n "$(ipt_chains "$b")" ] && [ -z "$(nft_tables "$b")" ]; then zt_pass; else
	zt_fail "tables '$(nft_tables "$b")', iptables: $(ipt_chains "$b")"
fi

zt_test "a: istio-cni's base chains (types, hooks, priorities) and the ip rule"
rs=$(ruleset "$a")
n=0
for want in "type nat hook prerouting priority dstnat; policy accept;" \
	"type nat hook output priority -100; policy accept;" \
	"type filter hook prerouting priority mangle; policy accept;" \
	"type route hook output priority mangle; policy accept;" \
	"type filter hook prerouting priority raw; policy accept;" \
	"type filter hook output priority raw; policy accept;"; do
	grep -qxF -- $'\t\t'"$want" <<<"$rs" && n=$((n + 1))
done
if [ "$n" = 6 ] && [ "$(fwmark_rules "$a")" = 1 ]; then zt_pass; else
	zt_fail "$n of 6 base chains, $(fwmark_rules "$a") ip rules: $rs"
fi

zt_test "re-enroll a: the same ruleset, not a second copy, one ip rule"
before=$rs
if mesh_enroll 1 "$a" a sa-a && [ "$(ruleset "$a")" = "$before" ] && [ "$(fwmark_rules "$a")" = 1 ]; then
	zt_pass
else zt_fail "$(diff <(echo "$before") <(ruleset "$a")); ip rules: $(fwmark_rules "$a")"; fi

zt_test "node 1's agent restarted: the re-install leaves the same ruleset"
mesh_stop 1 cni
if mesh_cni_start 1 && grep -q "1 pods enrolled" "$(mesh_log 1 cni)" &&
	[ "$(ruleset "$a")" = "$before" ]; then zt_pass; else
	zt_fail "$(diff <(echo "$before") <(ruleset "$a")); log: $(tail -3 "$(mesh_log 1 cni)")"
fi

zt_test "node 1's agent restarted with iptables: a has ISTIO_ chains, none of our nft tables"
mesh_stop 1 cni
if mesh_cni_start 1 ZTUNNEL_REDIRECT=iptables && [ -n "$(ipt_chains "$a")" ] &&
	[ -z "$(nft_tables "$a")" ]; then zt_pass; else
	zt_fail "tables '$(nft_tables "$a")', iptables: $(ipt_chains "$a")"
fi

zt_test "...and with nftables again: the same ruleset as before, no ISTIO_ chain"
mesh_stop 1 cni
if mesh_cni_start 1 && [ "$(ruleset "$a")" = "$before" ] && [ -z "$(ipt_chains "$a")" ]; then
	zt_pass
else zt_fail "$(diff <(echo "$before") <(ruleset "$a")); iptables: $(ipt_chains "$a")"; fi

zt_test "unenroll a: none of our tables (nft list tables), no ip rule"
mesh_unenroll 1 a
left=$(zt_ns_exec "$a" nft list tables | grep istio-ambient)
if [ -z "$left" ] && [ -z "$(mesh_rules "$a")" ] && [ "$(fwmark_rules "$a")" = 0 ]; then zt_pass; else
	zt_fail "tables: '$left', rules: $(mesh_rules "$a"), ip rules: $(fwmark_rules "$a")"
fi

zt_test "unenroll b (iptables): no ISTIO_ chain, no nft table of ours"
mesh_unenroll 2 b
zt_expect_eq "$(mesh_rules "$b")" ""

# cni_refused OUT RC: the agent exited 2 at start and said OUT.
cni_refused() {
	local out rc
	out=$(timeout 10 env INPOD_UDS="$ZT_WORK/bad/zt.sock" ZTUNNEL_CNI_DIR="$ZT_WORK/bad/cni" "${@:2}" \
		"$ZT_BIN" cni 2>&1)
	rc=$?
	if [ $rc = 2 ] && grep -qF -- "$1" <<<"$out"; then zt_pass; else zt_fail "rc=$rc: $out"; fi
}

zt_test "ZTUNNEL_REDIRECT=nft is refused at start, naming the variable"
cni_refused 'ZTUNNEL_REDIRECT="nft": expected iptables, nftables or ebpf' ZTUNNEL_REDIRECT=nft

zt_test "ZTUNNEL_REDIRECT=nftables without nft in PATH is refused at start"
mkdir -p "$ZT_WORK/nopath"
cni_refused "ZTUNNEL_REDIRECT=nftables, but no nft program in PATH ($ZT_WORK/nopath)" \
	ZTUNNEL_REDIRECT=nftables PATH="$ZT_WORK/nopath"

zt_test "ztunnel cni --help lists ZTUNNEL_REDIRECT"
if "$ZT_BIN" cni --help | grep -q "ZTUNNEL_REDIRECT  iptables (default)"; then zt_pass; else
	zt_fail "$("$ZT_BIN" cni --help 2>&1)"
fi

# ---- the capture scenarios, with nftables ----
# scenario K NAME: tests/e2e/NAME.sh on nftables (mesh_scenario), then one
# more check: every agent it started said it used nftables.
scenario() {
	local k=$1 name=$2 nft ipt
	mesh_scenario nftables "$k" "$name" || return
	zt_test "nftables $name: its agents installed the rules with nftables"
	nft=$(cat "$ZT_WORK/$name"/cni*.log 2>/dev/null | grep -c "rules by nftables")
	ipt=$(cat "$ZT_WORK/$name"/cni*.log 2>/dev/null | grep -c "rules by iptables")
	if [ "$nft" -gt 0 ] && [ "$ipt" = 0 ]; then zt_pass; else zt_fail "$nft agents on nftables, $ipt on iptables"; fi
}
k=0
for name in test_traffic test_dns_capture test_dns test_restart; do
	k=$((k + 1))
	scenario $k $name
done

mesh_finish
