#!/usr/bin/env bash
# Identities and HBONE interop with an independent Go peer
# (tests/interop/hbone_peer.go): a server whose identity differs from the
# client node's view is refused, a client from another trust domain is
# refused, the Go client gets 200 + data / 400 / 503 from our inbound, and our
# outbound talks to the Go HBONE server. Needs root and Go.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a (sa-a), d (sa-d, trust domain other.local), g (Go client, plain)
# node 2: c (sa-c), w (sa-w; node 1 believes sa-x), ghost (enrolled, absent
#         from the config), gs (Go HBONE server, not enrolled, HBONE in config)
A=10.200.1.2 D=10.200.1.3 # g (Go client) is 10.200.1.4
C=10.200.2.2 W=10.200.2.3 GHOST=10.200.2.4 GS=10.200.2.5
zt_test "setup: Go peer, 2 nodes, 7 pods, per-node views"
setup() {
	peer=$(mesh_peer) || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && d=$(zt_pod_add 1 2 d) && g=$(zt_pod_add 1 3 g) || return 1
	c=$(zt_pod_add 2 1 c) && w=$(zt_pod_add 2 2 w) && ghost=$(zt_pod_add 2 3 ghost) &&
		gs=$(zt_pod_add 2 4 gs) || return 1
	mesh_ca || return 1
	for n in 1 2; do
		if [ $n = 1 ]; then wsa=sa-x; else wsa=sa-w; fi
		cat >"$ZT_WORK/n$n.yaml" <<-Y
			workloads:
			- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
			- {uid: d, name: d, namespace: default, serviceAccount: sa-d, trustDomain: other.local, workloadIps: ["$D"], protocol: HBONE, node: node1}
			- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2}
			- {uid: w, name: w, namespace: default, serviceAccount: $wsa, workloadIps: ["$W"], protocol: HBONE, node: node2}
			- {uid: gs, name: gs, namespace: default, serviceAccount: sa-gs, workloadIps: ["$GS"], protocol: HBONE, node: node2}
		Y
	done
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 1 "$d" d sa-d || return 1
	mesh_enroll 2 "$c" c sa-c && mesh_enroll 2 "$w" w sa-w || return 1
	# Enrolled but unknown to the config: the agent and proxy may accept or
	# refuse; the 503 check below is what matters.
	mesh_enroll 2 "$ghost" ghost sa-ghost || zt_log "enroll ghost: exit $?"
	for ns in "$c" "$w" "$ghost" "$gs"; do zt_echo_server "$ns" 8080 || return 1; done
	zt_bg "$gs" go-server "$peer" server -ca-dir "$MESH_CA" -id "$(mesh_id sa-gs)" \
		-listen "$GS:15008" -timeout 0 || return 1
	mesh_wait_grep "$ZT_WORK/go-server.log" "listening on" 10
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# go_client AUTHORITY [CONNECT_IP] [PEER_FLAGS...]: one tunnel from pod g;
# stdin/stdout are the tunnel, stderr goes to $ZT_WORK/go-client.err;
# returns the peer's exit.
go_client() {
	local auth=$1 ip=${1%:*}
	shift
	if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
		ip=$1
		shift
	fi
	zt_ns_exec "$g" timeout 20 "$peer" client -ca-dir "$MESH_CA" -id "$(mesh_id go-client)" \
		-expect-id "$(mesh_id "${EXPECT_SA:-sa-c}")" -connect "$ip:15008" -authority "$auth" \
		-timeout 10s "$@" 2>"$ZT_WORK/go-client.err"
}

# ---- wrong server identity ----
m1=$(mesh_mark 1)
m2=$(mesh_mark 2)
zt_test "wrong server identity: a->w (node 1 expects sa-x, w is sa-w) gets no reply"
reply=$(zt_send "$a" $W 8080 should-not-arrive 5)
zt_expect_eq "$reply" ""

zt_test "wrong server identity: outbound access line has an identity error"
line=$(mesh_wait_access 1 "$m1" "dst.addr=$W:15008" 5)
if printf '%s' "$line" | grep -qiE "error=.*identit"; then zt_pass; else zt_fail "line: '$line'"; fi

zt_test "right server identity still works: a->c"
zt_expect_eq "$(zt_send "$a" $C 8080 right-id)" "right-id"

zt_test "wrong server identity: nothing reached w's app (c's line, after it, is there)"
# Node 2 logs a->c's inbound connection, which started after a->w ended: a
# stream to w's app would have been logged by then.
if ! mesh_wait_access 2 "$m2" "dst.hbone_addr=$C:8080" 5 >/dev/null; then
	zt_fail "no inbound line for a->c on node 2"
elif mesh_since 2 "$m2" | grep "dst.hbone_addr=$W:8080" | grep -qE "bytes_recv=[1-9]"; then
	zt_fail "$(mesh_since 2 "$m2" | grep "dst.hbone_addr=$W:8080")"
else zt_pass; fi

# ---- other trust domain ----
m1=$(mesh_mark 1)
m2=$(mesh_mark 2)
zt_test "other trust domain: d (other.local) -> c gets no reply"
zt_expect_eq "$(zt_send "$d" $C 8080 from-other-td 5)" ""

zt_test "other trust domain: d's outbound line carries its other.local identity and an error"
line=$(mesh_wait_access 1 "$m1" "src.addr=$D:" 5)
if [ -n "$line" ] && printf '%s' "$line" | grep -q "error="; then
	mesh_expect_fields "$line" "src.identity=$(mesh_id sa-d default other.local)"
else zt_fail "line: '$line'"; fi

zt_test "other trust domain: node 2 refused d's TLS handshake"
line=$(mesh_wait_access 2 "$m2" "src.addr=$D:" 5)
if printf '%s' "$line" | grep -q "connection failed" && printf '%s' "$line" | grep -qi "error=.*handshake"; then
	zt_pass
else zt_fail "line: '$line'"; fi

zt_test "other trust domain: no stream served on node 2"
# The handshake failure of that same connection is logged above: no stream
# can follow it.
if mesh_since 2 "$m2" | grep -q "src.identity=spiffe://other.local"; then
	zt_fail "$(mesh_since 2 "$m2" | grep "other.local")"
else zt_pass; fi

# ---- Go client against our inbound ----
m2=$(mesh_mark 2)
zt_test "Go client CONNECT $C:8080: status 200 and data round trip"
out=$(printf 'go-interop-hello' | go_client "$C:8080")
rc=$?
if [ $rc = 0 ] && [ "$out" = "go-interop-hello" ]; then zt_pass; else
	zt_fail "exit $rc, reply '$out': $(tr '\n' ' ' <"$ZT_WORK/go-client.err")"
fi

zt_test "Go client CONNECT: inbound access line names the Go client's identity"
line=$(mesh_wait_access 2 "$m2" "direction=inbound" 5)
mesh_expect_fields "$line" "src.identity=$(mesh_id go-client)" "dst.identity=$(mesh_id sa-c)" \
	"dst.hbone_addr=$C:8080" bytes_sent=16 bytes_recv=16

zt_test "Go client 4 MiB round trip through our inbound"
head -c $((4 << 20)) /dev/urandom >"$ZT_WORK/big.in"
go_client "$C:8080" <"$ZT_WORK/big.in" >"$ZT_WORK/big.out"
zt_expect_eq "$(sha256sum <"$ZT_WORK/big.out" | cut -c1-64)" "$(sha256sum <"$ZT_WORK/big.in" | cut -c1-64)"

# expect_status AUTHORITY CONNECT_IP STATUS: the Go client gets STATUS.
expect_status() {
	local out rc
	out=$(printf 'x' | go_client "$1" "$2")
	rc=$?
	if [ $rc = 3 ] && grep -q "status $3" "$ZT_WORK/go-client.err" && [ -z "$out" ]; then
		zt_pass
	else
		zt_fail "exit $rc, out '$out': $(tr '\n' ' ' <"$ZT_WORK/go-client.err")"
	fi
}

zt_test "Go client: foreign authority ($GS:8080 sent to $C:15008) gets 400"
expect_status "$GS:8080" "$C" 400

zt_test "Go client: enrolled pod absent from the config gets 503"
EXPECT_SA=sa-ghost expect_status "$GHOST:8080" "$GHOST" 503

zt_test "Go client: authority $C:15001 (illegal port) gets 503"
expect_status "$C:15001" "$C" 503

zt_test "Go client: authority $C:15006 (illegal port) gets 503"
expect_status "$C:15006" "$C" 503

zt_test "Go client: authority $C:15008 (illegal port) gets 503"
expect_status "$C:15008" "$C" 503

zt_test "Go client: authority to a closed port gets 503"
expect_status "$C:8181" "$C" 503

zt_test "Go client expecting another identity refuses our server"
out=$(printf 'x' | EXPECT_SA=sa-zzz go_client "$C:8080")
rc=$?
if [ $rc = 2 ] && [ -z "$out" ]; then zt_pass; else zt_fail "exit $rc: $(tr '\n' ' ' <"$ZT_WORK/go-client.err")"; fi

# ---- our outbound against the Go server ----
m1=$(mesh_mark 1)
zt_test "our client -> Go HBONE server: a->gs data round trip"
zt_expect_eq "$(zt_send "$a" $GS 8080 to-go-server)" "to-go-server"

zt_test "our client -> Go HBONE server: server saw a's identity and authority, status 200"
mesh_wait_grep "$ZT_WORK/go-server.log" "stream peer=" 5
sline=$(grep "stream peer=" "$ZT_WORK/go-server.log" | head -1)
case $sline in
*"peer=$(mesh_id sa-a) authority=$GS:8080 method=CONNECT status=200 up=12 down=12"*) zt_pass ;;
*) zt_fail "go server: '$sline'" ;;
esac

zt_test "our client -> Go HBONE server: outbound access line"
line=$(mesh_wait_access 1 "$m1" "dst.addr=$GS:15008" 5)
mesh_expect_fields "$line" "src.identity=$(mesh_id sa-a)" "dst.identity=$(mesh_id sa-gs)" \
	"dst.hbone_addr=$GS:8080" bytes_sent=12 bytes_recv=12

zt_test "our client -> Go HBONE server: 4 MiB round trip"
zt_ns_exec "$a" timeout 30 socat -t 10 - "TCP:$GS:8080,connect-timeout=5" \
	<"$ZT_WORK/big.in" >"$ZT_WORK/big2.out" 2>/dev/null
zt_expect_eq "$(sha256sum <"$ZT_WORK/big2.out" | cut -c1-64)" "$(sha256sum <"$ZT_WORK/big.in" | cut -c1-64)"

# ---- CONNECT headers (wire facts §2.3) ----
zt_test "our client sends Istio's baggage, forwarded and traceparent"
case $sline in
*'forwarded="for=\"10.200.1.2:'*'\""'*'baggage="k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=a"'*'traceparent="00-'[0-9a-f]*) zt_pass ;;
*) zt_fail "go server: '$sline'" ;;
esac

zt_test "inbound: a source unknown by IP is labelled from its baggage"
m2=$(mesh_mark 2)
reply=$(echo bag | go_client "$C:8080" -H 'baggage: k8s.cluster.name=far,k8s.namespace.name=ext,k8s.deployment.name=gogo,service.name=gosvc,service.version=v9' 2>/dev/null)
line=$(mesh_wait_access 2 "$m2" "direction=inbound" 5)
if [ "$reply" = bag ]; then
	mesh_expect_fields "$line" src.workload=gogo src.namespace=ext src.cluster=far
else
	zt_fail "reply '$reply' ($(cat "$ZT_WORK/go-client.err"))"
fi

zt_test "inbound: malformed baggage, forwarded and traceparent never fail the connection"
reply=$(echo junk | go_client "$C:8080" -H 'baggage: ===,%zz' -H 'forwarded: for="unterminated' -H 'traceparent: 00-XYZ' 2>/dev/null)
zt_expect_eq "$reply" junk

mesh_finish
