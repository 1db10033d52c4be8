#!/usr/bin/env bash
# Identities at the SPIFFE limits (issue 8, item 1): Kubernetes allows a
# 63-character namespace and a 253-character service account, so an identity
# in cluster.local is 346 bytes (588 with the longest trust domain). Such a
# peer must be authorized as itself: denied by a namespace DENY, allowed by an
# exact-principal ALLOW, logged whole; and a pod with such an account presents
# exactly that identity outbound. The Go HBONE
# peer (not our code) plays the inbound client. Needs root and Go.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

rep() { printf "%${2}s" "" | tr ' ' "$1"; }
LNS="n$(rep a 62)"                                       # 63 characters
LSA="$(rep s 63).$(rep t 63).$(rep u 63).$(rep v 61)"    # 253 characters
LID=$(mesh_id "$LSA" "$LNS")
# node 1: l (the long identity), a (sa-a), g (Go client, not enrolled)
# node 2: c (sa-c): echo on 8080 (namespace DENY, anyone else allowed), 9090
#         (ALLOW for the long principal only), 7070 (ALLOW for every namespace
#         but the long one)
L=10.200.1.2 A=10.200.1.3 C=10.200.2.2 # g is 10.200.1.4

zt_test "the long identity is 346 bytes (63-char namespace, 253-char account)"
zt_expect_eq "${#LNS}/${#LSA}/${#LID}" "63/253/346"

zt_test "setup: Go peer, 2 nodes, policies on the long namespace and principal"
setup() {
	peer=$(mesh_peer) || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	l=$(zt_pod_add 1 1 l) && a=$(zt_pod_add 1 2 a) && g=$(zt_pod_add 1 3 g) || return 1
	c=$(zt_pod_add 2 1 c) || return 1
	mesh_ca || return 1
	for n in 1 2; do
		cat >"$ZT_WORK/n$n.yaml" <<-Y
			workloads:
			- {uid: l, name: l, namespace: $LNS, serviceAccount: $LSA, workloadIps: ["$L"], protocol: HBONE, node: node1}
			- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
			- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2}
			policies:
			- name: deny-long-namespace
			  namespace: default
			  scope: Namespace
			  action: Deny
			  rules: [[[ {namespaces: [{Exact: $LNS}], destinationPorts: [8080]} ]]]
			- name: allow-long-principal
			  namespace: default
			  scope: Namespace
			  action: Allow
			  rules: [[[ {principals: [{Exact: ${LID#spiffe://}}], destinationPorts: [9090]}, {destinationPorts: [8080]}, {notNamespaces: [{Exact: $LNS}], destinationPorts: [7070]} ]]]
		Y
	done
	mesh_node_up 1 && mesh_node_up 2 || return 1
	MESH_NS=$LNS mesh_enroll 1 "$l" l "$LSA" || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$c" c sa-c || return 1
	zt_echo_server "$c" 8080 && zt_echo_server "$c" 9090 && zt_echo_server "$c" 7070
}
if setup; then zt_pass; else
	zt_fail "setup failed: $(tail -3 "$ZT_WORK/enroll.log" 2>/dev/null)"
	mesh_finish
	exit 1
fi

# go_client PORT: one tunnel from pod g to c:PORT presenting the long identity.
go_client() {
	zt_ns_exec "$g" timeout 20 "$peer" client -ca-dir "$MESH_CA" -id "$LID" \
		-expect-id "$(mesh_id sa-c)" -connect "$C:15008" -authority "$C:$1" \
		-timeout 10s 2>"$ZT_WORK/go-client.err"
}

# ---- inbound: the Go peer presents the long identity ----
zt_test "positive control: sa-a is allowed to c:8080 (the DENY is specific)"
zt_expect_eq "$(zt_send "$a" $C 8080 from-a)" "from-a"

m2=$(mesh_mark 2)
zt_test "inbound: the long identity is refused by the namespace DENY (401)"
out=$(printf 'x' | go_client 8080)
rc=$?
if [ $rc = 3 ] && grep -q "status 401" "$ZT_WORK/go-client.err" && [ -z "$out" ]; then zt_pass; else
	zt_fail "exit $rc, out '$out': $(tr '\n' ' ' <"$ZT_WORK/go-client.err")"
fi

zt_test "inbound: the refusal is logged with the whole identity and the policy"
line=$(mesh_wait_access 2 "$m2" "deny-long-namespace" 5)
if [ -n "$line" ] && printf '%s' "$line" | grep -qF "peer $LID)"; then zt_pass; else
	zt_fail "line: '$line'"
fi

m2=$(mesh_mark 2)
zt_test "inbound: the long identity is allowed by the exact-principal ALLOW on 9090"
out=$(printf 'long-hello' | go_client 9090)
rc=$?
if [ $rc = 0 ] && [ "$out" = long-hello ]; then zt_pass; else
	zt_fail "exit $rc, out '$out': $(tr '\n' ' ' <"$ZT_WORK/go-client.err")"
fi

zt_test "inbound: its access line carries the whole identity"
line=$(mesh_wait_access 2 "$m2" "direction=inbound" 5)
mesh_expect_fields "$line" "src.identity=$LID" "dst.identity=$(mesh_id sa-c)" \
	"dst.hbone_addr=$C:9090" bytes_recv=10

zt_test "negative control: sa-a is not allowed to 9090 (the ALLOW is exact)"
zt_expect_eq "$(zt_send "$a" $C 9090 from-a 5)" ""

zt_test "positive control: sa-a is allowed to 7070 (not the long namespace)"
zt_expect_eq "$(zt_send "$a" $C 7070 from-a)" "from-a"

zt_test "inbound: the long identity is not allowed by the notNamespaces ALLOW on 7070"
out=$(printf 'x' | go_client 7070)
rc=$?
if [ $rc = 3 ] && grep -q "status 401" "$ZT_WORK/go-client.err" && [ -z "$out" ]; then zt_pass; else
	zt_fail "exit $rc, out '$out': $(tr '\n' ' ' <"$ZT_WORK/go-client.err")"
fi

# ---- outbound: pod l presents exactly its own identity ----
m1=$(mesh_mark 1)
m2=$(mesh_mark 2)
zt_test "outbound: l -> c:9090 is allowed by the exact-principal ALLOW"
zt_expect_eq "$(zt_send "$l" $C 9090 from-l)" "from-l"

zt_test "outbound: node 2 saw exactly l's 346-byte identity"
line=$(mesh_wait_access 2 "$m2" "src.addr=$L:" 5)
mesh_expect_fields "$line" "src.identity=$LID" "dst.hbone_addr=$C:9090"

zt_test "outbound: node 1's access line carries the whole identity"
line=$(mesh_wait_access 1 "$m1" "src.addr=$L:" 5)
mesh_expect_fields "$line" "src.identity=$LID" "dst.identity=$(mesh_id sa-c)"

zt_test "outbound: l -> c:8080 is refused by the namespace DENY"
m2=$(mesh_mark 2)
zt_expect_eq "$(zt_send "$l" $C 8080 from-l 5)" ""
zt_test "outbound: node 2 names the DENY and the whole identity"
line=$(mesh_wait_access 2 "$m2" "deny-long-namespace" 5)
if [ -n "$line" ] && printf '%s' "$line" | grep -qF "peer $LID)"; then zt_pass; else
	zt_fail "line: '$line'"
fi

zt_test "/config_dump lists l's certificate under the whole identity"
dump=$(zt_ns_exec "$(zt_node_ns 1)" curl -s --max-time 5 http://127.0.0.1:15000/config_dump)
if printf '%s' "$dump" | grep -qF "\"$LID\""; then zt_pass; else
	zt_fail "no $LID in: $(printf '%s' "$dump" | grep -o '"spiffe://[^"]*"' | sort -u | tr '\n' ' ')"
fi

# ---- one past the limit ----
zt_test "one past the limit: enrolling a 254-character account is refused"
if MESH_NS=$LNS mesh_enroll 1 "$g" g "${LSA}w"; then zt_fail "enrolled"; else
	if grep -q -- "--service-account must be 1 to 253 characters" "$ZT_WORK/enroll.log"; then zt_pass; else
		zt_fail "message: $(tail -3 "$ZT_WORK/enroll.log")"
	fi
fi

mesh_finish
