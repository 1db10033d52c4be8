#!/usr/bin/env bash
# The eBPF redirection backend (ZTUNNEL_REDIRECT=ebpf). First what only it
# has: the pins (ten cgroup links, the maps, one sk_lookup link per pod)
# after enroll; an app's view (getpeername gives the address it dialed);
# a pod not enrolled on the same host is not redirected while an enrolled
# one is (each the other's control); inbound is refused, not let through,
# when the proxy's listener is gone; the programs stay attached while the
# agent is stopped; a re-enroll and a restart leave one link per pod;
# restarting with iptables moves the pod over (and removes the pins) and
# back; unenroll removes the pod's state; `ztunnel cni cleanup` refuses
# while the agent runs, then removes every pin and detaches every link; bad
# ZTUNNEL_REDIRECT and ZTUNNEL_BPF_DIR values stop the agent at start.
# Then the capture scenarios as they are, every agent with ebpf (ZT_REDIRECT,
# see mesh.sh), each in namespaces and a bpf filesystem of its own:
# test_traffic (same node, cross node, plaintext inbound, passthrough),
# test_dns_capture and test_dns (DNS capture), test_restart (restarts,
# unenroll, re-enroll). Their checks count here, named "ebpf SCRIPT:".
# Needs root, bpftool and a kernel with BTF and cgroup2.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ZT_REDIRECT=ebpf
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1 (agent with ebpf, proxy): a enrolled; u not enrolled; s a plain
# server. node 2 (agent with iptables): b enrolled.
A=10.200.1.2 U=10.200.1.3 S=10.200.1.4 B=10.200.2.2
DIR1=$ZT_WORK/bpffs/n1
zt_test "setup: 2 nodes, agents with ebpf (node 1) and iptables (node 2), a and b enrolled"
setup() {
	command -v bpftool >/dev/null && [ -e /sys/kernel/btf/vmlinux ] || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && u=$(zt_pod_add 1 2 u) && s=$(zt_pod_add 1 3 s) || return 1
	b=$(zt_pod_add 2 1 b) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
	Y
	mesh_node_up 1 && mesh_cni_start 2 ZTUNNEL_REDIRECT=iptables || return 1
	grep -q "rules by ebpf" "$(mesh_log 1 cni)" && grep -q "rules by iptables" "$(mesh_log 2 cni)" ||
		return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$b" b sa-b || return 1
	zt_echo_server "$s" 8080 && mesh_peer_addr_server "$s" 9000 && zt_echo_server "$a" 8080
}
if setup; then zt_pass; else
	zt_fail "setup failed (bpftool: $(command -v bpftool)); $(tail -3 "$(mesh_log 1 cni)" 2>&1)"
	mesh_finish
	exit 1
fi

LINKS="link_zt_connect4 link_zt_connect6 link_zt_getpeername4 link_zt_getpeername6 link_zt_getsockopt
link_zt_recvmsg4 link_zt_recvmsg6 link_zt_sendmsg4 link_zt_sendmsg6 link_zt_sockops"
MAPS="zt_listeners zt_local_conns zt_orig_cookie zt_orig_tuple zt_pods"
# pins DIR: the names pinned in DIR, sorted, on one line.
pins() { ls "$1" 2>/dev/null | sort | tr '\n' ' '; }
# link_id PIN: the kernel's id of a pinned link.
link_id() { bpftool -j link show pinned "$1" 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'; }
# netns_links NETNS: how many sk_lookup links are attached to NETNS.
netns_links() {
	local ino
	ino=$(zt_ns_exec "$1" stat -L -c %i /proc/self/ns/net)
	bpftool -j link show | python3 -c '
import json, sys
print(sum(1 for l in json.load(sys.stdin) if l.get("attach_type") == "sk_lookup" and l.get("netns_ino") == int(sys.argv[1])))' "$ino"
}
# ipt_nat NETNS: our iptables nat and raw lines (the ebpf backend has none).
ipt_nat() {
	{
		zt_ns_exec "$1" iptables-save -t nat
		zt_ns_exec "$1" iptables-save -t raw
	} 2>/dev/null | grep ISTIO_ || true
}

cookie_a=$(mesh_netns_cookie "$a")
zt_test "a: ten cgroup links, five maps and a's sk_lookup link pinned in the agent's directory"
want="inbound_$cookie_a $(echo $LINKS $MAPS | tr ' ' '\n' | sort | tr '\n' ' ')"
want=$(echo "$want" | tr ' ' '\n' | grep . | sort | tr '\n' ' ')
zt_expect_eq "$(pins "$DIR1")" "$want"

zt_test "a: its zt_pods entry (DNS capture, IPv4 address) and exactly one sk_lookup link on its netns"
flags=$(mesh_ebpf_pod_flags "$a")
if [ "$flags" = 3 ] && [ "$(netns_links "$a")" = 1 ]; then zt_pass; else
	zt_fail "flags '$flags', links $(netns_links "$a")"
fi

zt_test "a: the mangle rules for spoofed replies, no nat or raw rule, no nft table"
if [ -n "$(mesh_rules "$a" | grep 'CONNMARK')" ] && [ -z "$(ipt_nat "$a")" ] &&
	! mesh_rules "$a" | grep -q '^table inet'; then zt_pass; else zt_fail "$(mesh_rules "$a")"; fi

zt_test "b (iptables): nat rules and no eBPF state"
if [ -n "$(ipt_nat "$b")" ] && [ -z "$(mesh_ebpf_state "$b")" ]; then zt_pass; else
	zt_fail "nat: $(ipt_nat "$b"), ebpf: $(mesh_ebpf_state "$b")"
fi

# ---- redirection, and its control ----
zt_test "a -> s:8080 goes through the proxy (access line, src a, dst s:8080)"
m=$(mesh_mark 1)
r=$(zt_send "$a" $S 8080 via-proxy)
if [ "$r" = via-proxy ] && mesh_wait_access 1 "$m" "src.addr=$A:[0-9]+ .*dst.addr=$S:8080 .*direction=outbound" 5 >/dev/null; then
	zt_pass
else zt_fail "reply '$r'; access: $(mesh_since 1 "$m")"; fi

# The control: u's connection first, then a's; once a's access line is
# there, u's would be too had it gone through the proxy.
zt_test "u (not enrolled, same host, same programs attached) -> s:8080 goes direct: nothing recorded"
m=$(mesh_mark 1)
n0=$(mesh_ebpf_orig_count 8080 $S)
r=$(zt_send "$u" $S 8080 direct)
n1=$(mesh_ebpf_orig_count 8080 $S)
ra=$(zt_send "$a" $S 8080 after-u)
if [ "$r" = direct ] && [ "$n1" = "$n0" ] && [ "$ra" = after-u ] &&
	mesh_wait_access 1 "$m" "src.addr=$A:[0-9]+ .*dst.addr=$S:8080" 5 >/dev/null &&
	! mesh_since 1 "$m" | grep -q "src.addr=$U:"; then zt_pass; else
	zt_fail "reply '$r', entries $n0 -> $n1; access: $(mesh_since 1 "$m")"
fi

zt_test "s sees a's and u's own addresses (source preserved through the proxy, untouched for u)"
ra=$(zt_send "$a" $S 9000 x)
ru=$(zt_send "$u" $S 9000 x)
zt_expect_eq "$ra $ru" "$A $U"

zt_test "a's app sees the address it dialed (getpeername), not the proxy's 15001"
peer=$(zt_ns_exec "$a" python3 -c 'import socket, sys
c = socket.create_connection((sys.argv[1], 8080), timeout=5)
print("%s:%d" % c.getpeername())' $S)
zt_expect_eq "$peer" "$S:8080"

zt_test "plaintext u -> a:8080 is taken by a's proxy (inbound access line), reaching a's app"
m=$(mesh_mark 1)
r=$(zt_send "$u" $A 8080 plain-in)
if [ "$r" = plain-in ] && mesh_wait_access 1 "$m" "src.addr=$U:[0-9]+ dst.addr=$A:8080 .*direction=inbound" 5 >/dev/null; then
	zt_pass
else zt_fail "reply '$r'; access: $(mesh_since 1 "$m")"; fi

# (a's app echoes: a reply would mean it was reached around the proxy.)
zt_test "proxy stopped: u -> a:8080 is refused (fail closed), never delivered to a's app directly"
mesh_stop 1 proxy
out=$(printf must-not-arrive | zt_ns_exec "$u" timeout 5 socat -t 3 - "TCP:$A:8080,connect-timeout=3" 2>&1)
if grep -q "Connection refused" <<<"$out" && ! grep -q must-not-arrive <<<"$out"; then zt_pass; else
	zt_fail "$out"
fi

# 8000 more listening sockets in a (over 1 MB of /proc/net/tcp, as a busy
# pod's TIME_WAIT connections make it) while the listener is looked up.
zt_bg "$a" many-sockets bash -c 'ulimit -n 9000 && exec python3 -c "
import socket, sys, time
ss = []
for i in range(8000):
    s = socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen(1); ss.append(s)
open(sys.argv[1], \"w\").write(\"ready\\n\")
time.sleep(3600)" '"$ZT_WORK/many-sockets.ready"
many_pid=$ZT_BG_PID
zt_test "proxy back (8000 other sockets in a): its new listener is handed to sk_lookup; u -> a:8080 works again"
mesh_wait_grep "$ZT_WORK/many-sockets.ready" ready 20
mesh_proxy_start 1 && mesh_wait_grep "$(mesh_log 1 cni)" "pod a: inbound connections go to the listener of proxy pid $(mesh_pid 1 proxy)" 10
r=$(zt_send "$u" $A 8080 back-in)
zt_expect_eq "$r $(wc -c <"/proc/$(ip netns pids "$a" | head -1)/net/tcp" 2>/dev/null | awk '{ print ($1 > 1048576) }')" "back-in 1"
zt_bg_stop "$many_pid"

# ---- IPv6 ----
# a and s get routable IPv6 addresses (node 1 routes them to their veths),
# a is enrolled again so that its zt_pods entry has its IPv6 address, and s
# serves on [fd00:1::4]:8081.
A6=fd00:1::2 S6=fd00:1::4
v6_setup() {
	local n1
	n1=$(zt_node_ns 1)
	zt_ns_exec "$n1" sysctl -qw net.ipv6.conf.all.forwarding=1 || return 1
	for x in "$a p1 $A6" "$s p3 $S6"; do
		set -- $x
		ip -n "$1" addr add "$3/128" dev eth0 nodad &&
			ip -n "$n1" addr add fe80::1/64 dev "$2" nodad &&
			ip -n "$n1" -6 route add "$3/128" dev "$2" &&
			ip -n "$1" -6 route add default via fe80::1 dev eth0 || return 1
	done
	mesh_enroll 1 "$a" a sa-a || return 1
	zt_bg "$s" echo6 socat TCP6-LISTEN:8081,fork,reuseaddr EXEC:cat &&
		zt_wait_port "$s" ::1 8081 5
}
zt_test "IPv6: a -> [$S6]:8081 goes through the proxy; a's app sees the address it dialed"
if v6_setup; then
	m=$(mesh_mark 1)
	r=$(zt_send "$a" "[$S6]" 8081 via-proxy-6)
	peer=$(zt_ns_exec "$a" python3 -c 'import socket, sys
c = socket.create_connection((sys.argv[1], 8081), timeout=5)
print("%s:%d" % c.getpeername()[:2])' $S6)
	flags=$(mesh_ebpf_pod_flags "$a")
	if [ "$r" = via-proxy-6 ] && [ "$peer" = "$S6:8081" ] && [ $((flags & 4)) = 4 ] &&
		mesh_wait_access 1 "$m" "src.addr=\[$A6\]:[0-9]+ .*dst.addr=\[$S6\]:8081 .*direction=outbound" 5 >/dev/null; then
		zt_pass
	else zt_fail "reply '$r', peer '$peer', flags '$flags'; access: $(mesh_since 1 "$m")"; fi
else
	zt_fail "IPv6 setup failed: $(tail -2 "$ZT_WORK/enroll.log")"
fi

# ---- re-enroll, restarts, backend switch ----
zt_test "re-enroll a: the same pins, still one sk_lookup link on its netns"
before=$(pins "$DIR1")
if mesh_enroll 1 "$a" a sa-a && [ "$(pins "$DIR1")" = "$before" ] && [ "$(netns_links "$a")" = 1 ]; then
	zt_pass
else zt_fail "pins '$(pins "$DIR1")', links $(netns_links "$a")"; fi

id_connect=$(link_id "$DIR1/link_zt_connect4")
id_inbound=$(link_id "$DIR1/inbound_$cookie_a")
zt_test "agent stopped: the links stay attached and a's traffic still goes through the proxy"
mesh_stop 1 cni
m=$(mesh_mark 1)
r=$(zt_send "$a" $S 8080 agent-down)
if [ "$r" = agent-down ] && [ "$(link_id "$DIR1/link_zt_connect4")" = "$id_connect" ] &&
	mesh_wait_access 1 "$m" "src.addr=$A:[0-9]+ .*dst.addr=$S:8080" 5 >/dev/null; then zt_pass; else
	zt_fail "reply '$r', link $(link_id "$DIR1/link_zt_connect4") (was $id_connect)"
fi

zt_test "cleanup refused while an agent runs"
mesh_cni_start 1
# shellcheck disable=SC2046
out=$(env $(mesh_env 1) "$ZT_BIN" cni cleanup 2>&1)
rc=$?
if [ $rc = 1 ] && grep -q "a node agent is running" <<<"$out" && [ -n "$(pins "$DIR1")" ]; then
	zt_pass
else zt_fail "rc=$rc: $out"; fi

zt_test "agent restarted: the same links (updated in place), one sk_lookup link, same pins"
if [ "$(link_id "$DIR1/link_zt_connect4")" = "$id_connect" ] &&
	[ "$(link_id "$DIR1/inbound_$cookie_a")" = "$id_inbound" ] && [ "$(netns_links "$a")" = 1 ] &&
	[ "$(pins "$DIR1")" = "$before" ]; then zt_pass; else
	zt_fail "links $(link_id "$DIR1/link_zt_connect4")/$(link_id "$DIR1/inbound_$cookie_a"), pins $(pins "$DIR1")"
fi

zt_test "agent restarted with iptables: a has nat rules, no eBPF state, the pin directory is gone"
mesh_stop 1 cni
if mesh_cni_start 1 ZTUNNEL_REDIRECT=iptables && [ -n "$(ipt_nat "$a")" ] &&
	[ -z "$(mesh_ebpf_state "$a")" ] && [ ! -e "$DIR1" ] && [ "$(netns_links "$a")" = 0 ]; then zt_pass; else
	zt_fail "nat '$(ipt_nat "$a")', ebpf '$(mesh_ebpf_state "$a")', pins '$(pins "$DIR1")'"
fi

zt_test "...and with ebpf again: the pins back, no nat rule, traffic through the proxy"
mesh_stop 1 cni
m=$(mesh_mark 1)
if mesh_cni_start 1 && [ "$(pins "$DIR1")" = "$before" ] && [ -z "$(ipt_nat "$a")" ] &&
	mesh_wait_grep "$(mesh_log 1 cni)" "pod a: inbound connections go to" 10 &&
	[ "$(zt_send "$a" $S 8080 again)" = again ] &&
	mesh_wait_access 1 "$m" "src.addr=$A:[0-9]+ .*dst.addr=$S:8080" 5 >/dev/null; then zt_pass; else
	zt_fail "pins '$(pins "$DIR1")', nat '$(ipt_nat "$a")'"
fi

# ---- unenroll, cleanup ----
zt_test "unenroll a: no eBPF state, no rule of ours; a -> s:8080 goes direct, nothing recorded"
mesh_unenroll 1 a
n0=$(mesh_ebpf_orig_count 8080 $S)
r=$(zt_send "$a" $S 8080 after-unenroll)
n1=$(mesh_ebpf_orig_count 8080 $S)
if [ -z "$(mesh_rules "$a")" ] && [ "$(netns_links "$a")" = 0 ] && [ ! -e "$DIR1/inbound_$cookie_a" ] &&
	[ "$r" = after-unenroll ] && [ "$n1" = "$n0" ]; then
	zt_pass
else zt_fail "rules '$(mesh_rules "$a")', reply '$r', entries $n0 -> $n1"; fi

# Fail closed: a step of the eBPF install failing fails the enroll; what
# the enroll had done is rolled back.
zt_test "fail closed: with map zt_pods unpinned, enroll fails naming it; nothing of a left"
rm -f "$DIR1/zt_pods"
# shellcheck disable=SC2046
out=$(env $(mesh_env 1) "$ZT_BIN" enroll --netns "$a" --uid a --name a --namespace default \
	--service-account sa-a 2>&1)
rc=$?
if [ $rc = 1 ] && grep -q "zt_pods" <<<"$out" && [ ! -e "$ZT_WORK/n1/cni/pods/a.json" ] &&
	[ -z "$(mesh_rules "$a")" ] && [ "$(netns_links "$a")" = 0 ]; then zt_pass; else
	zt_fail "rc=$rc: $out; rules '$(mesh_rules "$a")', links $(netns_links "$a")"
fi

zt_test "ztunnel cni cleanup (agent stopped): every pin gone, the links detached"
mesh_stop 1 cni
# shellcheck disable=SC2046
out=$(env $(mesh_env 1) "$ZT_BIN" cni cleanup 2>&1)
rc=$?
if [ $rc = 0 ] && [ ! -e "$DIR1" ] && ! bpftool link show id "$id_connect" >/dev/null 2>&1; then
	zt_pass
else zt_fail "rc=$rc: $out; pins '$(pins "$DIR1")'"; fi

zt_test "a second cleanup finds nothing to remove"
# shellcheck disable=SC2046
out=$(env $(mesh_env 1) "$ZT_BIN" cni cleanup 2>&1)
if [ $? = 0 ] && grep -q "nothing to remove" <<<"$out"; then zt_pass; else zt_fail "$out"; fi
mesh_cni_start 1

# cni_refused RC OUT ENV...: the agent exited RC at start and said OUT.
cni_refused() {
	local out rc
	out=$(timeout 10 env INPOD_UDS="$ZT_WORK/bad/zt.sock" ZTUNNEL_CNI_DIR="$ZT_WORK/bad/cni" "${@:3}" \
		"$ZT_BIN" cni 2>&1)
	rc=$?
	if [ $rc = "$1" ] && grep -qF -- "$2" <<<"$out"; then zt_pass; else zt_fail "rc=$rc: $out"; fi
}

zt_test "ZTUNNEL_REDIRECT=bpf is refused at start, naming the variable"
cni_refused 2 'ZTUNNEL_REDIRECT="bpf": expected iptables, nftables or ebpf' ZTUNNEL_REDIRECT=bpf

zt_test "ZTUNNEL_BPF_DIR not on a bpf filesystem: the agent does not start, and says why"
mkdir -p "$ZT_WORK/notbpf"
cni_refused 1 "$ZT_WORK/notbpf/x is not on a bpf filesystem" ZTUNNEL_REDIRECT=ebpf \
	ZTUNNEL_BPF_DIR="$ZT_WORK/notbpf/x"

zt_test "ztunnel cni --help lists ebpf, ZTUNNEL_BPF_DIR and cleanup"
help=$("$ZT_BIN" cni --help)
if grep -q "ebpf: cgroup and sk_lookup programs" <<<"$help" && grep -q "ZTUNNEL_BPF_DIR" <<<"$help" &&
	grep -q "usage: ztunnel cni \[cleanup\]" <<<"$help"; then zt_pass; else zt_fail "$help"; fi

# ---- the capture scenarios, with ebpf ----
# scenario K NAME: tests/e2e/NAME.sh on ebpf (mesh_scenario; each with its
# own bpf filesystem), then one more check: every agent it started used
# ebpf, and nothing of it stays mounted.
scenario() {
	local k=$1 name=$2 n_ebpf n_other
	mesh_scenario ebpf "$k" "$name" || return
	zt_test "ebpf $name: its agents redirected with ebpf, and left nothing pinned"
	n_ebpf=$(cat "$ZT_WORK/$name"/cni*.log 2>/dev/null | grep -c "rules by ebpf")
	n_other=$(cat "$ZT_WORK/$name"/cni*.log 2>/dev/null | grep -cE "rules by (iptables|nftables)")
	if [ "$n_ebpf" -gt 0 ] && [ "$n_other" = 0 ] && ! mountpoint -q "$ZT_WORK/$name/bpffs"; then zt_pass; else
		zt_fail "$n_ebpf agents on ebpf, $n_other on another backend"
	fi
}
k=0
for name in test_traffic test_dns_capture test_dns test_restart; do
	k=$((k + 1))
	scenario $k $name
done

mesh_finish
