#!/usr/bin/env bash
# Captured traffic through ztunnel on 2 nodes: same-node and cross-node HBONE
# (replies, access-log fields with both identities), source IP preserved to
# the app, plaintext client into a captured server (15006), passthrough to a
# TCP-protocol workload and to an unknown IP, a 1 MiB transfer, and the bytes
# on the node link being TLS. Needs root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a, b enrolled; p plain (not enrolled, not in config)
# node 2: c enrolled; t not enrolled, protocol TCP; u not enrolled, unknown
A=10.200.1.2 B=10.200.1.3 P=10.200.1.4 C=10.200.2.2 T=10.200.2.3 U=10.200.2.4
zt_test "setup: 2 nodes, 6 pods, agents, proxies, 3 enrolled pods"
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && b=$(zt_pod_add 1 2 b) && p=$(zt_pod_add 1 3 p) || return 1
	c=$(zt_pod_add 2 1 c) && t=$(zt_pod_add 2 2 t) && u=$(zt_pod_add 2 3 u) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/mesh.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: b, name: b, namespace: default, serviceAccount: sa-b, workloadIps: ["$B"], protocol: HBONE, node: node1}
		- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2}
		- {uid: t, name: t, namespace: default, serviceAccount: sa-t, workloadIps: ["$T"], protocol: TCP, node: node2}
	Y
	cp "$ZT_WORK/mesh.yaml" "$ZT_WORK/n1.yaml"
	cp "$ZT_WORK/mesh.yaml" "$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 1 "$b" b sa-b && mesh_enroll 2 "$c" c sa-c || return 1
	for ns in "$b" "$c" "$t" "$u"; do
		zt_echo_server "$ns" 8080 && mesh_peer_addr_server "$ns" 9000 || return 1
	done
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

ID_A=$(mesh_id sa-a) ID_B=$(mesh_id sa-b) ID_C=$(mesh_id sa-c)

# ---- same node ----
m1=$(mesh_mark 1)
zt_test "same node a->b: reply echoed"
zt_expect_eq "$(zt_send "$a" $B 8080 hello-local)" "hello-local"

zt_test "same node a->b: outbound access line with both identities"
line=$(mesh_wait_access 1 "$m1" "direction=outbound" 5)
mesh_expect_fields "$line" "src.identity=$ID_A" "dst.identity=$ID_B" "dst.addr=$B:15008" \
	"dst.hbone_addr=$B:8080" bytes_sent=11 bytes_recv=11

zt_test "same node a->b: inbound access line with both identities"
line=$(mesh_wait_access 1 "$m1" "direction=inbound" 5)
mesh_expect_fields "$line" "src.identity=$ID_A" "dst.identity=$ID_B" "dst.hbone_addr=$B:8080" \
	bytes_sent=11 bytes_recv=11 dst.workload=b src.workload=a

# ---- cross node ----
m1=$(mesh_mark 1)
m2=$(mesh_mark 2)
zt_test "cross node a->c: reply echoed"
zt_expect_eq "$(zt_send "$a" $C 8080 hello-cross-node)" "hello-cross-node"

zt_test "cross node a->c: outbound access line on node 1"
line=$(mesh_wait_access 1 "$m1" "direction=outbound" 5)
mesh_expect_fields "$line" "src.identity=$ID_A" "dst.identity=$ID_C" "dst.addr=$C:15008" \
	"dst.hbone_addr=$C:8080" bytes_sent=16 bytes_recv=16

zt_test "cross node a->c: inbound access line on node 2"
line=$(mesh_wait_access 2 "$m2" "direction=inbound" 5)
mesh_expect_fields "$line" "src.identity=$ID_A" "dst.identity=$ID_C" "dst.hbone_addr=$C:8080" \
	bytes_sent=16 bytes_recv=16

zt_test "cross node a->c: inbound src.addr is a's pod IP"
case $(mesh_field "$line" src.addr) in
"$A":*) zt_pass ;;
*) zt_fail "src.addr=$(mesh_field "$line" src.addr)" ;;
esac

zt_test "cross node a->c: 1 MiB of random bytes intact"
head -c $((1 << 20)) /dev/urandom >"$ZT_WORK/big.in"
zt_ns_exec "$a" timeout 20 socat -t 10 - "TCP:$C:8080,connect-timeout=5" \
	<"$ZT_WORK/big.in" >"$ZT_WORK/big.out" 2>/dev/null
zt_expect_eq "$(sha256sum <"$ZT_WORK/big.out" | cut -c1-64)" "$(sha256sum <"$ZT_WORK/big.in" | cut -c1-64)"

# ---- source IP preserved ----
zt_test "source IP preserved: same node a->b sees $A"
zt_expect_eq "$(zt_send "$a" $B 9000 x)" "$A"

zt_test "source IP preserved: cross node a->c sees $A"
zt_expect_eq "$(zt_send "$a" $C 9000 x)" "$A"

# ---- plaintext client into captured server ----
m2=$(mesh_mark 2)
zt_test "plaintext p->c: reply echoed"
zt_expect_eq "$(zt_send "$p" $C 8080 plain-hello)" "plain-hello"

zt_test "plaintext p->c: inbound access line without src.identity"
line=$(mesh_wait_access 2 "$m2" "direction=inbound" 5)
if [ -z "$line" ]; then
	zt_fail "no inbound access line on node 2"
elif [ -n "$(mesh_field "$line" src.identity)" ]; then
	zt_fail "src.identity present: $line"
else
	mesh_expect_fields "$line" "dst.addr=$C:8080" bytes_sent=11 bytes_recv=11 dst.workload=c
fi

zt_test "plaintext p->c: app sees $P"
zt_expect_eq "$(zt_send "$p" $C 9000 x)" "$P"

# ---- captured client to uncaptured servers (passthrough) ----
m1=$(mesh_mark 1)
zt_test "passthrough a->t (protocol TCP): reply echoed"
zt_expect_eq "$(zt_send "$a" $T 8080 to-tcp-workload)" "to-tcp-workload"

zt_test "passthrough a->t: outbound access line, direct, no HBONE"
line=$(mesh_wait_access 1 "$m1" "direction=outbound" 5)
if [ -n "$line" ] && [ -z "$(mesh_field "$line" dst.hbone_addr)" ] &&
	[ -z "$(mesh_field "$line" dst.identity)" ]; then
	mesh_expect_fields "$line" "dst.addr=$T:8080" bytes_sent=15 bytes_recv=15
else
	zt_fail "line: '$line'"
fi

m1=$(mesh_mark 1)
zt_test "passthrough a->u (unknown IP): reply echoed"
zt_expect_eq "$(zt_send "$a" $U 8080 to-unknown-ip)" "to-unknown-ip"

zt_test "passthrough a->u: outbound access line, direct"
line=$(mesh_wait_access 1 "$m1" "direction=outbound" 5)
if [ -n "$line" ] && [ -z "$(mesh_field "$line" dst.hbone_addr)" ]; then
	mesh_expect_fields "$line" "dst.addr=$U:8080" bytes_sent=13 bytes_recv=13
else
	zt_fail "line: '$line'"
fi

zt_test "passthrough a->u: server sees $A"
zt_expect_eq "$(zt_send "$a" $U 9000 x)" "$A"

# ---- bytes on the node link ----
# One capture on node 1's eth0 carries an HBONE transfer (a->c) and, as a
# control proving the capture sees payloads, a passthrough one (a->u).
SECRET=ZTSECRET-$$-PLAINTEXT-MUST-NOT-LEAK
CONTROL=ZTCONTROL-$$-PASSTHROUGH-VISIBLE
node1=$(zt_node_ns 1)
zt_bg "$node1" tcpdump tcpdump -i eth0 --immediate-mode -U -Z root -s 0 -w "$ZT_WORK/eth0.pcap" tcp
tcpdump_pid=$ZT_BG_PID
mesh_wait_grep "$ZT_WORK/tcpdump.log" "listening on" 5
zt_test "wire: HBONE transfer a->c during capture"
zt_expect_eq "$(zt_send "$a" $C 8080 "$SECRET$SECRET")" "$SECRET$SECRET"
zt_send "$a" $U 8080 "$CONTROL" >/dev/null
# The control string went out last: once the capture holds it (tcpdump -U
# writes each packet), it holds the HBONE transfer too.
ctl_hex=$(printf '%s' "$CONTROL" | xxd -p | tr -d '\n')
for _ in $(seq 100); do
	xxd -p "$ZT_WORK/eth0.pcap" | tr -d '\n' | grep -q "$ctl_hex" && break
	sleep 0.05
done
zt_bg_stop "$tcpdump_pid"
sed -i "/^$tcpdump_pid /d" "$ZT_WORK/pids"
hex=$(xxd -p "$ZT_WORK/eth0.pcap" | tr -d '\n')
sec_hex=$(printf '%s' "$SECRET" | xxd -p | tr -d '\n')

zt_test "wire: capture control (passthrough plaintext is visible)"
case $hex in *"$ctl_hex"*) zt_pass ;; *) zt_fail "control string not in capture ($(stat -c %s "$ZT_WORK/eth0.pcap") bytes)" ;; esac

zt_test "wire: HBONE plaintext absent from the node link"
case $hex in *"$sec_hex"*) zt_fail "secret found in capture" ;; *) zt_pass ;; esac

zt_test "wire: TLS application-data records to $C:15008, nothing to :8080"
pcap() { tcpdump -nn -r "$ZT_WORK/eth0.pcap" "$1" 2>/dev/null | wc -l; }
# A TCP payload that starts with a TLS 1.2/1.3 application-data record header.
rec='tcp[((tcp[12:1] & 0xf0) >> 2):1] = 0x17 and tcp[((tcp[12:1] & 0xf0) >> 2) + 1:2] = 0x0303'
n_tls=$(pcap "dst host $C and dst port 15008 and $rec")
n_tls_back=$(pcap "src host $C and src port 15008 and $rec")
n8080=$(pcap "host $C and port 8080")
if [ "$n_tls" -gt 0 ] && [ "$n_tls_back" -gt 0 ] && [ "$n8080" -eq 0 ]; then zt_pass; else
	zt_fail "TLS records to c:15008=$n_tls, from c:15008=$n_tls_back, packets on c:8080=$n8080"
fi

mesh_finish
