#!/usr/bin/env bash
# CRL_PATH, as Istio's ztunnel: PEM CRLs made by openssl from the mesh CA,
# watched. A peer certificate listed in the CRL is refused at the handshake
# on both sides of HBONE (inbound: the Go client's certificate; outbound:
# the Go server's), live connections of a newly revoked peer are closed
# while the others stay up, istio_crl_policy_rejections_total counts both
# per reporter. A CRL file missing at start is no error; a damaged file or
# a deleted one keeps the CRLs last loaded; a new CRL without the serial
# lets the peer in again. Needs root, Go and openssl.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a (sa-a, enrolled), g (Go client, plain pod)
# node 2: c (sa-c, enrolled), gs (Go HBONE server with its own 15008, sa-gs)
A=10.200.1.2 C=10.200.2.2 GS=10.200.2.3
CRL=$ZT_WORK/crl/crl.pem
# Serials of the Go peers' leaves: X is revoked below, Y never is; S is
# the Go server's.
X=7e1001 Y=7e1002 S=7e2001
WAIT=20 # seconds any single condition may take before the check fails

# wait_until CMD...: runs CMD until it succeeds (at most $WAIT s).
wait_until() {
	local deadline=$(($(zt_now_ms) + WAIT * 1000))
	while ! "$@"; do
		[ "$(zt_now_ms)" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

# crl_write [SERIAL...]: a CRL from the mesh's issuing CA revoking the
# serials, moved into place (a rename, as a ConfigMap update).
crl_write() {
	local d=$ZT_WORK/crlca s when
	when=$(date -u -d '1 hour ago' +%y%m%d%H%M%SZ)
	mkdir -p "$d"
	: >"$d/index.txt"
	for s in "$@"; do
		printf 'R\t301231235959Z\t%s\t%s\tunknown\t/CN=revoked\n' "$when" "${s^^}" >>"$d/index.txt"
	done
	[ -f "$d/crlnumber" ] || echo 01 >"$d/crlnumber"
	cat >"$d/cnf" <<-CNF
		[ca]
		default_ca = d
		[d]
		database = $d/index.txt
		crlnumber = $d/crlnumber
		default_md = sha256
		default_crl_days = 30
	CNF
	openssl ca -gencrl -config "$d/cnf" -keyfile "$MESH_CA/ca-key.pem" -cert "$MESH_CA/ca-cert.pem" \
		-out "$d/crl.pem" 2>>"$ZT_WORK/openssl.log" || return 1
	cp "$d/crl.pem" "$CRL.tmp" && mv "$CRL.tmp" "$CRL"
}

zt_test "setup: Go peers, 2 nodes, proxies with CRL_PATH pointing at a file not there yet"
setup() {
	peer=$(mesh_peer) || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && g=$(zt_pod_add 1 2 g) || return 1
	c=$(zt_pod_add 2 1 c) && gs=$(zt_pod_add 2 2 gs) || return 1
	mesh_ca || return 1
	mkdir -p "$ZT_WORK/crl"
	for n in 1 2; do
		cat >"$ZT_WORK/n$n.yaml" <<-Y
			workloads:
			- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
			- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2}
			- {uid: gs, name: gs, namespace: default, serviceAccount: sa-gs, workloadIps: ["$GS"], protocol: HBONE, node: node2}
		Y
	done
	for n in 1 2; do
		mesh_cni_start $n || return 1
		# shellcheck disable=SC2046
		mesh_start_bg $n proxy env $(mesh_env $n) LOCAL_XDS_PATH="$ZT_WORK/n$n.yaml" \
			LOCAL_CA_DIR="$MESH_CA" NODE_NAME="node$n" CRL_PATH="$CRL" \
			RUST_LOG="${LOGLVL:-info}" "$ZT_BIN" proxy
		mesh_wait_grep "$(mesh_log $n proxy)" "snapshot received" 10 || return 1
	done
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$c" c sa-c || return 1
	zt_echo_server "$c" 8080 && zt_echo_server "$gs" 8080 || return 1
	zt_bg "$gs" go-server "$peer" server -ca-dir "$MESH_CA" -id "$(mesh_id sa-gs)" \
		-listen "$GS:15008" -timeout 0 -serial $S || return 1
	mesh_wait_grep "$ZT_WORK/go-server.log" "listening on" 10
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# go_client SERIAL: one tunnel from pod g to c:8080 presenting a leaf with
# SERIAL; prints what came back; the peer's exit is returned.
go_client() {
	printf 'hello-%s' "$1" | zt_ns_exec "$g" timeout 30 "$peer" client -ca-dir "$MESH_CA" \
		-id "$(mesh_id go-client)" -expect-id "$(mesh_id sa-c)" -connect "$C:15008" \
		-authority "$C:8080" -timeout 20s -serial "$1" 2>"$ZT_WORK/go-client-$1.err"
}

# live NAME NETNS CMD...: a long-lived connection; lines written to fd
# ${live_fd[NAME]} go in, what comes back lands in $ZT_WORK/NAME.in.out;
# its PID is ${live_pid[NAME]}.
declare -A live_fd live_pid
live() {
	local name=$1 ns=$2 fd
	shift 2
	mkfifo "$ZT_WORK/$name.in"
	# shellcheck disable=SC2016 # expanded by the inner shell
	zt_bg "$ns" "$name" bash -c 'exec "$@" <"$0" >"$0.out"' "$ZT_WORK/$name.in" "$@"
	live_pid[$name]=$ZT_BG_PID
	exec {fd}>"$ZT_WORK/$name.in"
	live_fd[$name]=$fd
}
# echoes NAME WORD: WORD goes through NAME's connection and comes back.
echoes() {
	{ echo "$2" >&"${live_fd[$1]}"; } 2>/dev/null || return 1
	wait_until grep -qx "$2" "$ZT_WORK/$1.in.out"
}
gone() { ! kill -0 "$1" 2>/dev/null; }
metric() { # metric NODE REPORTER: istio_crl_policy_rejections_total of that reporter
	zt_ns_exec "$(zt_node_ns "$1")" curl -s -m 5 localhost:15020/metrics |
		awk -v k="istio_crl_policy_rejections_total{reporter=\"$2\"}" '$1 == k { print $2 }'
}

zt_test "no CRL file yet: the proxies say so and serve (as Istio's ztunnel)"
if grep -q "CRL_PATH $CRL" "$(mesh_log 2 proxy)" && [ "$(go_client $X)" = "hello-$X" ]; then zt_pass; else
	zt_fail "log: $(grep -i crl "$(mesh_log 2 proxy)" | head -3)"
fi

zt_test "an empty CRL revokes nothing: both Go leaves get through"
crl_write
if mesh_wait_grep "$(mesh_log 2 proxy)" "CRL_PATH .*: 1 CRL\(s\), 0 revoked" $WAIT &&
	[ "$(go_client $X)" = "hello-$X" ] && [ "$(go_client $Y)" = "hello-$Y" ]; then zt_pass; else
	zt_fail "$(cat "$ZT_WORK/go-client-$X.err" "$ZT_WORK/go-client-$Y.err")"
fi

zt_test "long-lived connections up: Go X and Go Y into c (inbound), a to gs and a to c (outbound)"
peer_live() { # NAME SERIAL
	live "$1" "$g" "$peer" client -ca-dir "$MESH_CA" -id "$(mesh_id go-client)" \
		-expect-id "$(mesh_id sa-c)" -connect "$C:15008" -authority "$C:8080" -timeout 0 -serial "$2"
}
peer_live inx $X
peer_live iny $Y
live outgs "$a" socat -t 0.2 - "TCP:$GS:8080"
live outc "$a" socat -t 0.2 - "TCP:$C:8080"
if echoes inx one && echoes iny one && echoes outgs one && echoes outc one; then zt_pass; else
	zt_fail "inx $(cat "$ZT_WORK/inx.in.out") iny $(cat "$ZT_WORK/iny.in.out") outgs $(cat "$ZT_WORK/outgs.in.out") outc $(cat "$ZT_WORK/outc.in.out")"
fi
m1=$(mesh_mark 1)
m2=$(mesh_mark 2)

zt_test "X and the Go server revoked: their live connections are closed"
crl_write $X $S
if wait_until gone "${live_pid[inx]}" && wait_until gone "${live_pid[outgs]}"; then zt_pass; else
	zt_fail "still open: inx $(gone "${live_pid[inx]}" || echo yes), outgs $(gone "${live_pid[outgs]}" || echo yes)"
fi

zt_test "... and only theirs: Y into c and a to c still carry data"
if echoes iny two && echoes outc two; then zt_pass; else zt_fail "iny $(cat "$ZT_WORK/iny.in.out") outc $(cat "$ZT_WORK/outc.in.out")"; fi

zt_test "the closes are logged with the revoked identity"
if mesh_wait_grep "$(mesh_log 2 proxy)" "closing inbound HBONE connection of $(mesh_id go-client): peer certificate revoked" $WAIT &&
	mesh_wait_grep "$(mesh_log 1 proxy)" "closing outbound HBONE connection of $(mesh_id sa-gs): peer certificate revoked" $WAIT &&
	mesh_wait_access 2 "$m2" "src.identity=$(mesh_id go-client) .*error=\"peer certificate revoked" $WAIT >/dev/null &&
	mesh_wait_access 1 "$m1" "dst.identity=$(mesh_id sa-gs) .*error=\"peer certificate revoked" $WAIT >/dev/null; then zt_pass; else
	zt_fail "node 2: $(mesh_since 2 "$m2" | tail -2) node 1: $(mesh_since 1 "$m1" | tail -2)"
fi

zt_test "inbound: a new handshake with X is refused, Y still gets through"
out=$(go_client $X)
rc=$?
if [ $rc = 2 ] && [ -z "$out" ] && [ "$(go_client $Y)" = "hello-$Y" ]; then zt_pass; else
	zt_fail "X: exit $rc out '$out' $(cat "$ZT_WORK/go-client-$X.err")"
fi

zt_test "outbound: a to the revoked Go server is refused, a to c still works"
out=$(zt_send "$a" $GS 8080 to-gs 5)
if [ -z "$out" ] && [ "$(zt_send "$a" $C 8080 to-c)" = to-c ]; then zt_pass; else zt_fail "to gs: '$out'"; fi

zt_test "istio_crl_policy_rejections_total: destination 2 on node 2, source 2 on node 1"
# One live close and one refused handshake on each side.
zt_expect_eq "$(metric 2 destination) $(metric 2 source) $(metric 1 source) $(metric 1 destination)" "2 0 2 0"

zt_test "a damaged CRL file is refused; the CRLs last loaded stay in force"
m2=$(mesh_mark 2)
printf -- '-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n' >"$CRL.tmp" && mv "$CRL.tmp" "$CRL"
mesh_wait_grep "$(mesh_log 2 proxy)" "CRL_PATH.*refused" $WAIT
out=$(go_client $X)
rc=$?
if [ $rc = 2 ] && [ "$(go_client $Y)" = "hello-$Y" ]; then zt_pass; else zt_fail "X: exit $rc out '$out'"; fi

zt_test "the CRL file deleted: the CRLs last loaded stay in force"
rm -f "$CRL"
mesh_wait_grep "$(mesh_log 2 proxy)" "CRL_PATH.*cannot read" $WAIT
out=$(go_client $X)
rc=$?
if [ $rc = 2 ]; then zt_pass; else zt_fail "X: exit $rc out '$out'"; fi

zt_test "a new CRL without X lets X in again"
crl_write $S
mesh_wait_grep "$(mesh_log 2 proxy)" "CRL_PATH .*: 1 CRL\(s\), 1 revoked" $WAIT
zt_expect_eq "$(go_client $X)" "hello-$X"

zt_test "a proxy does not start on a CRL file that exists but does not load (fails closed)"
printf 'not a CRL\n' >"$ZT_WORK/bad-crl.pem"
# shellcheck disable=SC2046
out=$(zt_ns_exec "$(zt_node_ns 1)" env $(mesh_env 1) LOCAL_XDS_PATH="$ZT_WORK/n1.yaml" \
	LOCAL_CA_DIR="$MESH_CA" NODE_NAME=node1 CRL_PATH="$ZT_WORK/bad-crl.pem" "$ZT_BIN" proxy 2>&1)
rc=$?
if [ $rc = 1 ] && printf '%s' "$out" | grep -q "CRL_PATH: $ZT_WORK/bad-crl.pem: neither PEM nor a DER CRL"; then
	zt_pass
else
	zt_fail "exit $rc: $out"
fi

mesh_finish
