#!/usr/bin/env bash
# Environment variables that change what the proxy does on the wire, seen on
# real sockets: KEEPALIVE_* on the sockets Istio's ztunnel sets them on
# (accepted on 15001/15006, every socket it dials; not accepted HBONE),
# IPV6_ENABLED=false binding IPv4 only, NETWORK naming the network inbound
# lookups use, CLUSTER_DOMAIN refused unless cluster.local. Node 1 runs KEEPALIVE_TIME=77s, node 2 KEEPALIVE_ENABLED=false,
# IPV6_ENABLED=false and NETWORK=n1, so each check has its counterpart.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

A=10.200.1.2 B=10.200.1.3 D=10.200.1.4 C=10.200.2.2
zt_test "setup: a, b and d (not enrolled) on node 1, c on node 2; d on network n2, the rest on n1"
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && b=$(zt_pod_add 1 2 b) && d=$(zt_pod_add 1 3 d) &&
		c=$(zt_pod_add 2 1 c) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1, network: n1}
		- {uid: b, name: b, namespace: default, serviceAccount: sa-b, workloadIps: ["$B"], protocol: TCP, node: node1, network: n1}
		- {uid: d, name: d, namespace: default, serviceAccount: sa-d, workloadIps: ["$D"], protocol: TCP, node: node1, network: n2}
		- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2, network: n1}
	Y
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	mesh_cni_start 1 && mesh_cni_start 2 || return 1
	KEEPALIVE_TIME=77s KEEPALIVE_INTERVAL=11s KEEPALIVE_RETRIES=5 NETWORK=n1 \
		mesh_proxy_start 1 || return 1
	KEEPALIVE_ENABLED=false IPV6_ENABLED=false NETWORK=n1 mesh_proxy_start 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$c" c sa-c || return 1
	zt_echo_server "$a" 8080 && zt_echo_server "$c" 8080
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# hold NETNS IP PORT: a connection that stays open (socat waits on a silent
# `sleep`) until the end of the script.
hold() {
	zt_bg "$1" "hold-$1-$2" socat EXEC:"sleep 120" "TCP:$2:$3"
}
# ka NETNS FILTER: the keepalive timer of the first established socket
# matching the ss FILTER, in seconds ("none" without keepalive, "" if no
# such socket yet, or while it has bytes in flight: ss then shows the
# retransmission timer, e.g. just after the HTTP/2 SETTINGS ACK left).
ka() {
	local line t
	line=$(zt_ns_exec "$1" ss -Htno state established "$2" | head -1)
	[ -n "$line" ] || return 0
	[[ $line == *"timer:(on,"* || $line == *"timer:(persist,"* ]] && return 0
	t=$(printf '%s\n' "$line" | grep -oP 'timer:\(keepalive,\K[^,]*')
	if [ -z "$t" ]; then
		echo none
	elif [[ $t =~ ^([0-9]+)min([0-9]+)sec$ ]]; then
		echo $((BASH_REMATCH[1] * 60 + BASH_REMATCH[2]))
	elif [[ $t =~ ^([0-9]+)sec$ ]]; then
		echo "${BASH_REMATCH[1]}"
	else
		echo "0"
	fi
}
# wait_ka NETNS FILTER: ka, once the socket exists (up to 5 s).
wait_ka() {
	local deadline v
	deadline=$(($(zt_now_ms) + 5000))
	while :; do
		v=$(ka "$@")
		if [ -n "$v" ] || [ "$(zt_now_ms)" -ge "$deadline" ]; then
			echo "$v"
			return
		fi
		sleep 0.05
	done
}
# expect_ka NAME NETNS FILTER WANT: WANT is "none" or "le77" (a keepalive
# timer of at most 77 s: our KEEPALIVE_TIME, not the 180 s default).
expect_ka() {
	local v
	zt_test "$1"
	v=$(wait_ka "$2" "$3")
	case $4 in
	none) zt_expect_eq "$v" none ;;
	le77) if [[ $v =~ ^[0-9]+$ ]] && [ "$v" -ge 1 ] && [ "$v" -le 77 ]; then zt_pass; else
		zt_fail "keepalive timer: '$v' s, want 1..77"
	fi ;;
	esac
}

hold "$a" $C 8080
hold "$c" $A 8080
hold "$b" $A 8080

expect_ka "node 1: accepted outbound (15001) socket has KEEPALIVE_TIME" "$a" "( sport = :15001 )" le77
expect_ka "node 1: HBONE socket it dials has KEEPALIVE_TIME" "$a" "( dport = :15008 )" le77
expect_ka "node 1: accepted plaintext inbound (15006) socket has KEEPALIVE_TIME" "$a" "( sport = :15006 )" le77
expect_ka "node 1: socket dialed to the app has KEEPALIVE_TIME" "$a" "( dst $A:8080 )" le77
expect_ka "node 1: accepted HBONE (15008) socket has no TCP keepalive, as Istio's ztunnel" "$a" "( sport = :15008 )" none
expect_ka "node 2 (KEEPALIVE_ENABLED=false): accepted outbound socket without keepalive" "$c" "( sport = :15001 )" none
expect_ka "node 2: HBONE socket it dials without keepalive" "$c" "( dport = :15008 )" none
expect_ka "node 2: socket dialed to the app without keepalive" "$c" "( dst $C:8080 )" none

# listen_addr NETNS PORT: local address of the listener on PORT.
listen_addr() {
	zt_ns_exec "$1" ss -Hltn "( sport = :$2 )" | awk '{ print $4 }' | head -1
}
zt_test "IPV6_ENABLED default: pod listeners and :15020 are dual-stack (node 1)"
got="$(listen_addr "$a" 15001) $(listen_addr "$a" 15006) $(listen_addr "$a" 15008) $(listen_addr "$(zt_node_ns 1)" 15020)"
zt_expect_eq "${got//\[::\]/*}" "*:15001 *:15006 *:15008 *:15020"
zt_test "IPV6_ENABLED=false: pod listeners, :15020 and :15021 bind IPv4 only (node 2)"
got="$(listen_addr "$c" 15001) $(listen_addr "$c" 15006) $(listen_addr "$c" 15008)"
got="$got $(listen_addr "$(zt_node_ns 2)" 15020) $(listen_addr "$(zt_node_ns 2)" 15021)"
zt_expect_eq "$got" "0.0.0.0:15001 0.0.0.0:15006 0.0.0.0:15008 0.0.0.0:15020 0.0.0.0:15021"

zt_test "traffic still flows with IPV6_ENABLED=false (a -> c, c -> a)"
zt_expect_eq "$(zt_send "$a" $C 8080 ping) $(zt_send "$c" $A 8080 pong)" "ping pong"

# NETWORK: a plaintext client is looked up by (NETWORK, its IP), as in
# Istio's ztunnel: b (on n1) is named, d (same kind of address, on n2) is
# not; with the empty network both would be "unknown".
zt_test "plaintext clients b and d reach c"
zt_expect_eq "$(zt_send "$b" $C 8080 hi) $(zt_send "$d" $C 8080 hi)" "hi hi"
zt_test "NETWORK=n1: plaintext inbound names a source on network n1, not one on n2"
got=$(zt_ns_exec "$(zt_node_ns 2)" curl -s -m 5 localhost:15020/metrics |
	grep '^istio_tcp_connections_opened_total{reporter="destination"' |
	grep 'destination_workload="c"' | grep 'connection_security_policy="unknown"' |
	grep -oP 'source_workload="\K[^"]*' | sort -u | tr '\n' ' ')
zt_expect_eq "$got" "b unknown "

# A CLUSTER_DOMAIN that is not a DNS domain, or a DNS proxy address that
# is not one, is refused at start-up with the variable and the reason (an
# empty node, where the proxy would otherwise run until `timeout` stops it).
zt_node_add 3 >/dev/null
for bad in 'CLUSTER_DOMAIN=corp..example|CLUSTER_DOMAIN="corp..example": empty label' \
	'ISTIO_META_DNS_PROXY_ADDR=nowhere|ISTIO_META_DNS_PROXY_ADDR="nowhere": expected localhost:PORT or IP:PORT'; do
	kv=${bad%%|*} want=${bad#*|}
	zt_test "$kv: the proxy refuses to start and says why"
	out=$(zt_ns_exec "$(zt_node_ns 3)" env INPOD_UDS="$ZT_WORK/n3.sock" LOCAL_CA_DIR="$MESH_CA" \
		"$kv" timeout 10 "$ZT_BIN" proxy 2>&1)
	rc=$?
	if [ $rc = 1 ] && [[ $out == *"$want"* ]]; then
		zt_pass
	else
		zt_fail "rc=$rc: $out"
	fi
done

# A start-up that fails half-way (here at CRL_PATH, after the state, the CA
# and the metrics exist) releases everything it built: under the
# sanitizers (this run turns leak detection on) a leak is reported at exit.
zt_test "a start that fails half-way (bad CRL_PATH) says why and leaves nothing behind"
printf 'not a CRL\n' >"$ZT_WORK/bad-crl.pem"
out=$(zt_ns_exec "$(zt_node_ns 3)" env ASAN_OPTIONS=detect_leaks=1 INPOD_UDS="$ZT_WORK/n3.sock" \
	LOCAL_CA_DIR="$MESH_CA" LOCAL_XDS_PATH="$ZT_WORK/n1.yaml" CRL_PATH="$ZT_WORK/bad-crl.pem" \
	timeout 10 "$ZT_BIN" proxy 2>&1)
rc=$?
if [ $rc = 1 ] && [[ $out == *CRL_PATH* ]] && [[ $out != *Sanitizer* ]] && [[ $out != *leak* ]]; then
	zt_pass
else
	zt_fail "rc=$rc: $out"
fi

mesh_finish
