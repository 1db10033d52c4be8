#!/usr/bin/env bash
# DNS capture rules of the node agent (wire facts 5.5): after enroll the pod
# netns has the nat rules redirecting port 53 to 15053 and the raw CT zone
# rules (IPv4 and IPv6); a UDP and a TCP query from the pod to a resolver
# address arrive at a listener on the pod's 127.0.0.1:15053 instead; a
# query sent with the proxy's mark 0x539 goes to the resolver and its
# answer comes back (zone 1 both ways); AMBIENT_DNS_CAPTURE=false installs
# no DNS rules (and an agent restarted with it takes them away); unenroll
# removes every table's rules. With any rules backend (ZT_REDIRECT, see
# mesh.sh): the rule checks read iptables-save or nft, the rest is the same;
# with ebpf, where nothing is NATed, they read the pod's entry in the
# programs' map (its DNS capture flag) and the original destinations the
# programs recorded, and check that no nat or raw rule of ours is there.
#
# Only node agents run, no proxy: the listeners on 15053 are the test's own
# (the proxy's DNS server, when it has one, would hold that port), and what
# is checked is where the rules send packets.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a (10.200.1.2, enrolled, DNS capture on), r (plain; the "resolver" on port
# 53); node 2: b (enrolled by an agent with AMBIENT_DNS_CAPTURE=false).
R=10.200.1.3
zt_test "setup: 2 nodes, agents with DNS capture on (node 1) and off (node 2), a and b enrolled"
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && r=$(zt_pod_add 1 2 r) && b=$(zt_pod_add 2 1 b) || return 1
	mesh_cni_start 1 && mesh_cni_start 2 AMBIENT_DNS_CAPTURE=false || return 1
	grep -q "DNS capture on" "$(mesh_log 1 cni)" && grep -q "DNS capture off" "$(mesh_log 2 cni)" ||
		return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$b" b sa-b || return 1
	# The resolver: UDP answers with what it got (and records it), TCP
	# records. Listeners in a and b on their 127.0.0.1:15053 record too.
	: >"$ZT_WORK/r-udp" && : >"$ZT_WORK/r-tcp" || return 1
	zt_bg "$r" r-udp socat "UDP-RECVFROM:53,fork" "SYSTEM:tee -a $ZT_WORK/r-udp" || return 1
	zt_bg "$r" r-tcp socat -u "TCP-LISTEN:53,fork,reuseaddr" "OPEN:$ZT_WORK/r-tcp,append" || return 1
	for p in a b; do
		ns=$a
		[ $p = b ] && ns=$b
		: >"$ZT_WORK/$p-udp" && : >"$ZT_WORK/$p-tcp" || return 1
		zt_bg "$ns" "$p-udp" socat -u "UDP-RECV:15053,bind=127.0.0.1" "OPEN:$ZT_WORK/$p-udp,append" ||
			return 1
		zt_bg "$ns" "$p-tcp" socat -u "TCP-LISTEN:15053,bind=127.0.0.1,fork,reuseaddr" \
			"OPEN:$ZT_WORK/$p-tcp,append" || return 1
		zt_wait_port "$ns" 127.0.0.1 15053 5 || return 1
	done
	zt_wait_port "$r" 127.0.0.1 53 5
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# udp_send NETNS IP DATA [SOCAT-OPTS]: one datagram to IP:53; prints any
# answer (socat waits at most 2 s for one).
udp_send() {
	printf '%s' "$3" | zt_ns_exec "$1" timeout 5 socat -t 2 - "UDP-SENDTO:$2:53${4:+,$4}" 2>/dev/null
}
# tcp_send NETNS IP DATA: a connection to IP:53 carrying DATA.
tcp_send() {
	printf '%s' "$3" | zt_ns_exec "$1" timeout 5 socat -u - "TCP:$2:53,connect-timeout=3" 2>/dev/null
}
# got FILE DATA: FILE (a listener's record) received DATA, waiting up to 5 s.
got() { mesh_wait_grep "$ZT_WORK/$1" "$2" 5 2>/dev/null; }
# counter NETNS TABLE CHAIN ERE: packets counted by the first rule of CHAIN
# matching ERE (see mesh_rule_packets).
counter() { mesh_rule_packets "$@" | head -1; }

# The rules as the backend in use prints them. nat_out4 NETNS: the IPv4
# rules of the nat output chain; raw_rules NETNS: the raw table's jumps and
# rules; v6_rules NETNS: where the IPv6 DNS rules show; all_rules NETNS:
# every rule (IPv4); has_raw NETNS: our raw table or chains exist.
if [ "$MESH_REDIRECT" = nftables ]; then
	nat_out4() { mesh_nft_chain "$1" istio-ambient-nat istio-output | grep -v 'ip6 '; }
	raw_rules() {
		for c in prerouting output istio-prerouting istio-output; do
			mesh_nft_chain "$1" istio-ambient-raw $c
		done
	}
	v6_rules() {
		mesh_nft_chain "$1" istio-ambient-nat istio-output
		raw_rules "$1"
	}
	all_rules() { zt_ns_exec "$1" nft list ruleset; }
	has_raw() { zt_ns_exec "$1" nft list tables | grep -q 'istio-ambient-raw$'; }
	MARK_NOT='meta mark & 0x00000fff != 0x00000539'
	DNS_UDP="oifname != \"lo\" $MARK_NOT udp dport 53 counter redirect to :15053"
	DNS_TCP4="ip daddr != 127.0.0.1 tcp dport 53 $MARK_NOT counter redirect to :15053"
	DNS_TCP6="ip6 daddr != ::1 tcp dport 53 $MARK_NOT counter redirect to :15053"
	RAW_LINES=("jump istio-output" "jump istio-prerouting"
		"udp dport 53 meta mark & 0x00000fff == 0x00000539 counter ct zone set 1"
		"udp sport 53 $MARK_NOT counter ct zone set 1")
	ORDER_RE='169.254.7.127|udp dport 53|tcp dport 53|0x00000111|oifname "lo"|:15001'
	ORDER_WANT='169.254.7.127 udp dport 53 tcp dport 53 0x00000111 oifname "lo" :15001 '
	ZONE='ct zone set 1' TO_15001='redirect to :15001' TO_15006='redirect to :15006'
	DNS_ANY='15053|dport 53|ct zone'
else
	nat_out4() { zt_ns_exec "$1" iptables-save -t nat | grep -- "^-A ISTIO_OUTPUT"; }
	raw_rules() { zt_ns_exec "$1" iptables-save -t raw; }
	v6_rules() { zt_ns_exec "$1" ip6tables-save; }
	all_rules() { zt_ns_exec "$1" iptables-save; }
	has_raw() { zt_ns_exec "$1" iptables-save -t raw | grep -q ISTIO; }
	MARK_NOT='-m mark ! --mark 0x539/0xfff'
	DNS_UDP="-A ISTIO_OUTPUT ! -o lo -p udp $MARK_NOT -m udp --dport 53 -j REDIRECT --to-ports 15053"
	DNS_TCP4="-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m tcp --dport 53 $MARK_NOT -j REDIRECT --to-ports 15053"
	DNS_TCP6="-A ISTIO_OUTPUT ! -d ::1/128 -p tcp -m tcp --dport 53 $MARK_NOT -j REDIRECT --to-ports 15053"
	RAW_LINES=("-A OUTPUT -j ISTIO_OUTPUT" "-A PREROUTING -j ISTIO_PRERT"
		"-A ISTIO_OUTPUT -p udp -m mark --mark 0x539/0xfff -m udp --dport 53 -j CT --zone 1"
		"-A ISTIO_PRERT -p udp $MARK_NOT -m udp --sport 53 -j CT --zone 1")
	ORDER_RE='169.254.7.127|udp --dport 53|tcp --dport 53|0x111/0xfff|-o lo -j ACCEPT|15001'
	ORDER_WANT='169.254.7.127 udp --dport 53 tcp --dport 53 0x111/0xfff -o lo -j ACCEPT 15001 '
	ZONE='-j CT --zone 1' TO_15001='-j REDIRECT --to-ports 15001' TO_15006='--to-ports 15006'
	DNS_ANY='15053|--dport 53|CT --zone'
fi
# has_lines TEXT LINE...: TEXT has every LINE, whole.
has_lines() {
	local text=$1 l
	shift
	for l in "$@"; do
		grep -qxF -- "$l" <<<"$text" || return 1
	done
}

# ---- rules after enroll (capture on) ----
if [ "$MESH_REDIRECT" = ebpf ]; then
	# dns_flag NETNS: 1 if the pod's zt_pods entry asks for DNS capture.
	dns_flag() { echo $(($(mesh_ebpf_pod_flags "$1") & 1)); }
	zt_test "a (ebpf): its zt_pods entry asks for DNS capture; no nat or raw rule of ours"
	if [ "$(dns_flag "$a")" = 1 ] && ! all_rules "$a" | grep -qE -- "$DNS_ANY|REDIRECT" &&
		! has_raw "$a"; then zt_pass; else
		zt_fail "flags '$(mesh_ebpf_pod_flags "$a")': $(all_rules "$a")"
	fi
else
	zt_test "a: nat output redirects UDP and TCP port 53 to 15053 (IPv4, $MESH_REDIRECT)"
	nat=$(nat_out4 "$a")
	if has_lines "$nat" "$DNS_UDP" "$DNS_TCP4"; then zt_pass; else zt_fail "$nat"; fi

	zt_test "a: the DNS rules come after the probe ACCEPT and before the other OUTPUT rules"
	order=$(echo "$nat" | grep -oE -- "$ORDER_RE" | tr '\n' ' ')
	zt_expect_eq "$order" "$ORDER_WANT"

	zt_test "a: raw OUTPUT/PREROUTING jump to chains putting the proxy's DNS in CT zone 1 (IPv4)"
	raw=$(raw_rules "$a")
	if has_lines "$raw" "${RAW_LINES[@]}"; then zt_pass; else zt_fail "$raw"; fi

	zt_test "a: the same rules for IPv6 (::1/128)"
	save6=$(v6_rules "$a")
	if has_lines "$save6" "$DNS_TCP6" "$DNS_UDP" && [ "$(echo "$save6" | grep -c -- "$ZONE")" = 2 ]; then
		zt_pass
	else zt_fail "$save6"; fi
fi

# ---- where a's DNS goes ----
zt_test "a -> $R:53 UDP arrives at a's 127.0.0.1:15053, not at the resolver"
udp_send "$a" $R a-udp-1 >/dev/null
if got a-udp a-udp-1 && ! grep -q a-udp-1 "$ZT_WORK/r-udp"; then zt_pass; else
	zt_fail "a's listener: '$(cat "$ZT_WORK/a-udp")', resolver: '$(cat "$ZT_WORK/r-udp")'"
fi

zt_test "a -> $R:53 TCP arrives at a's 127.0.0.1:15053, not at the resolver"
tcp_send "$a" $R a-tcp-1
if got a-tcp a-tcp-1 && ! grep -q a-tcp-1 "$ZT_WORK/r-tcp"; then zt_pass; else
	zt_fail "a's listener: '$(cat "$ZT_WORK/a-tcp")', resolver: '$(cat "$ZT_WORK/r-tcp")'"
fi

if [ "$MESH_REDIRECT" = ebpf ]; then
	zt_test "a: the programs recorded both sockets' original destination $R:53"
	n=$(mesh_ebpf_orig_count 53 $R)
	if [ "${n:-0}" -ge 2 ]; then zt_pass; else zt_fail "$n entries for $R:53"; fi
else
	zt_test "a: the nat DNS rules counted those packets"
	udp_n=$(counter "$a" "$MESH_NAT" "$MESH_OUT" "udp dp(t:|ort )53 .*15053")
	tcp_n=$(counter "$a" "$MESH_NAT" "$MESH_OUT" "tcp dp(t:|ort )53 .*15053")
	if [ "${udp_n:-0}" -ge 1 ] && [ "${tcp_n:-0}" -ge 1 ]; then zt_pass; else
		zt_fail "udp $udp_n, tcp $tcp_n: $(all_rules "$a")"
	fi
fi

# The proxy's own upstream queries carry SO_MARK 0x539: not redirected,
# and the answer comes back through conntrack zone 1.
zt_test "a -> $R:53 UDP with mark 0x539 reaches the resolver and gets its answer"
ans=$(udp_send "$a" $R marked-1 "setsockopt-int=1:36:1337")
if [ "$ans" = marked-1 ] && got r-udp marked-1 && ! grep -q marked-1 "$ZT_WORK/a-udp"; then zt_pass; else
	zt_fail "answer '$ans', resolver: '$(cat "$ZT_WORK/r-udp")', a's listener: '$(cat "$ZT_WORK/a-udp")'"
fi

# (ebpf: nothing is NATed, so no zone is needed; the check above is the
# behaviour the zones exist for.)
if [ "$MESH_REDIRECT" != ebpf ]; then
	zt_test "a: the raw zone-1 rules counted the marked query and its answer"
	out_n=$(counter "$a" "$MESH_RAW" "$MESH_OUT" "udp dp(t:|ort )53 .*zone( set)? 1")
	pre_n=$(counter "$a" "$MESH_RAW" "$MESH_PRE" "udp sp(t:|ort )53 .*zone( set)? 1")
	if [ "${out_n:-0}" -ge 1 ] && [ "${pre_n:-0}" -ge 1 ]; then zt_pass; else
		zt_fail "OUTPUT $out_n, PREROUTING $pre_n: $(all_rules "$a")"
	fi
fi

# ---- capture off (node 2) ----
if [ "$MESH_REDIRECT" = ebpf ]; then
	zt_test "b (AMBIENT_DNS_CAPTURE=false, ebpf): b's zt_pods entry without DNS capture"
	f=$(mesh_ebpf_pod_flags "$b")
	if [ -n "$f" ] && [ "$((f & 1))" = 0 ]; then zt_pass; else zt_fail "flags '$f'"; fi
else
	zt_test "b (AMBIENT_DNS_CAPTURE=false): the TCP rules but no DNS rule and no raw chain"
	save=$(all_rules "$b")
	if echo "$save" | grep -q -- "$TO_15001" && echo "$save" | grep -q -- "$TO_15006" &&
		! echo "$save" | grep -qE -- "$DNS_ANY" && ! has_raw "$b"; then
		zt_pass
	else zt_fail "$save"; fi
fi

zt_test "b -> $R:53 UDP reaches the resolver, not b's 127.0.0.1:15053"
ans=$(udp_send "$b" $R b-udp-1)
if [ "$ans" = b-udp-1 ] && got r-udp b-udp-1 && ! grep -q b-udp-1 "$ZT_WORK/b-udp"; then zt_pass; else
	zt_fail "answer '$ans', resolver: '$(cat "$ZT_WORK/r-udp")', b's listener: '$(cat "$ZT_WORK/b-udp")'"
fi

# ---- agent restarted with capture off: the re-install takes them away ----
zt_test "node 1's agent restarted with AMBIENT_DNS_CAPTURE=false removes a's DNS rules, keeps the others"
mesh_stop 1 cni
if ! mesh_cni_start 1 AMBIENT_DNS_CAPTURE=false; then
	zt_fail "agent did not restart: $(tail -5 "$(mesh_log 1 cni)")"
elif [ "$MESH_REDIRECT" = ebpf ]; then
	f=$(mesh_ebpf_pod_flags "$a")
	if [ -n "$f" ] && [ "$((f & 1))" = 0 ]; then zt_pass; else zt_fail "a's flags '$f'"; fi
else
	save=$(all_rules "$a")
	if echo "$save" | grep -q -- "$TO_15001" && ! echo "$save" | grep -qE -- "$DNS_ANY" && ! has_raw "$a"; then
		zt_pass
	else zt_fail "$save"; fi
fi

zt_test "a bad AMBIENT_DNS_CAPTURE value is refused at start"
out=$(AMBIENT_DNS_CAPTURE=maybe INPOD_UDS=$ZT_WORK/nobad/zt.sock ZTUNNEL_CNI_DIR=$ZT_WORK/nobad/cni \
	timeout 10 "$ZT_BIN" cni 2>&1)
rc=$?
if [ $rc = 2 ] && echo "$out" | grep -q 'AMBIENT_DNS_CAPTURE="maybe": expected true or false'; then
	zt_pass
else zt_fail "rc=$rc: $out"; fi

# ---- back on, then unenroll ----
mesh_stop 1 cni
mesh_cni_start 1
zt_test "node 1's agent restarted with capture on puts a's DNS rules back"
if [ "$MESH_REDIRECT" = ebpf ]; then
	f=$(mesh_ebpf_pod_flags "$a")
	if [ -n "$f" ] && [ "$((f & 1))" = 1 ]; then zt_pass; else zt_fail "a's flags '$f'"; fi
elif raw_rules "$a" | grep -q -- "$ZONE" && all_rules "$a" | grep -q -- "15053"; then zt_pass; else
	zt_fail "$(all_rules "$a")"
fi

zt_test "unenroll a: none of our chains, jumps or tables left, IPv4 or IPv6"
mesh_unenroll 1 a
left=$(mesh_rules "$a")
if [ -z "$left" ]; then zt_pass; else zt_fail "$left"; fi

zt_test "after unenroll a -> $R:53 UDP reaches the resolver, not a's 127.0.0.1:15053"
ans=$(udp_send "$a" $R a-udp-2)
if [ "$ans" = a-udp-2 ] && got r-udp a-udp-2 && ! grep -q a-udp-2 "$ZT_WORK/a-udp"; then zt_pass; else
	zt_fail "answer '$ans', resolver: '$(cat "$ZT_WORK/r-udp")', a's listener: '$(cat "$ZT_WORK/a-udp")'"
fi

mesh_finish
