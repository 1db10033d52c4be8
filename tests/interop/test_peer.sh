#!/usr/bin/env bash
# Self-test of the Go HBONE peer: peer client against peer server across two
# netns "nodes" (lib.sh), with a socat echo upstream in a pod. Needs root.
#   HBONE_PEER=/path/to/hbone_peer  reuse a built binary
#   INTEROP_BUILD=DIR               where to build it (default: the work dir)
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../e2e/lib.sh
. "$here/../e2e/lib.sh"
zt_trap_cleanup

peer=${HBONE_PEER:-}
if [ -z "$peer" ]; then
	peer=$("$here/build.sh" "${INTEROP_BUILD:-$ZT_WORK/interop}") || {
		echo "build failed"
		exit 1
	}
fi

ca=$ZT_WORK/ca
"$here/mkca.sh" "$ca" ec intermediate
"$here/mkca.sh" "$ZT_WORK/ca-rsa" rsa intermediate
"$here/mkca.sh" "$ZT_WORK/ca-other" ec root

zt_node_add 1 && zt_node_add 2 || exit 1
cli_ns=$(zt_pod_add 1 1 client) || exit 1
app_ns=$(zt_pod_add 2 1 app) || exit 1
node2=$(zt_node_ns 2)
hbone=$(zt_node_ip 2):15008
app=$(zt_pod_ip 2 1):7000
srv_id=spiffe://cluster.local/ns/default/sa/server
cli_id=spiffe://cluster.local/ns/default/sa/client
zt_echo_server "$app_ns" 7000 || exit 1

# start_server NAME CA-DIR [ARGS...]: HBONE server on node 2, waits for it.
start_server() {
	local name=$1 cadir=$2
	shift 2
	zt_bg "$node2" "$name" "$peer" server -ca-dir "$cadir" -id "$srv_id" -listen "$hbone" -timeout 0 "$@"
	zt_wait_port "$(zt_node_ns 1)" "$(zt_node_ip 2)" 15008 10
}

# client CA-DIR ID EXPECT AUTHORITY: one stdin/stdout tunnel from pod 1/1.
# stdin is the caller's; stderr goes to $ZT_WORK/client.err. Exit status is
# the peer's.
client() {
	zt_ns_exec "$cli_ns" timeout 20 "$peer" client -ca-dir "$1" -id "$2" -expect-id "$3" \
		-connect "$hbone" -authority "$4" -timeout 15s 2>"$ZT_WORK/client.err"
}

start_server server "$ca" || exit 1
srv_pid=$ZT_BG_PID

zt_test "round trip of a short message"
zt_expect_eq "$(printf 'hello hbone' | client "$ca" "$cli_id" "$srv_id" "$app")" "hello hbone"

zt_test "round trip of 4 MiB of random bytes"
head -c $((4 << 20)) /dev/urandom >"$ZT_WORK/big.in"
client "$ca" "$cli_id" "$srv_id" "$app" <"$ZT_WORK/big.in" >"$ZT_WORK/big.out"
zt_expect_eq "$(sha256sum <"$ZT_WORK/big.out")" "$(sha256sum <"$ZT_WORK/big.in")"

zt_test "server logs the client identity"
sleep 0.2
if grep -q "stream peer=$cli_id authority=$app method=CONNECT status=200" "$ZT_WORK/server.log"; then
	zt_pass
else
	zt_fail "no stream line in server.log"
fi

zt_test "client of another trust domain is rejected"
out=$(printf x | client "$ca" spiffe://other.td/ns/default/sa/client "$srv_id" "$app")
rc=$?
if [ $rc = 2 ] && [ -z "$out" ] && grep -q 'trust domain "cluster.local"' "$ZT_WORK/server.log"; then
	zt_pass
else
	zt_fail "rc=$rc out='$out'"
fi

zt_test "wrong -expect-id is rejected by the client"
out=$(printf x | client "$ca" "$cli_id" spiffe://cluster.local/ns/default/sa/other "$app")
rc=$?
if [ $rc = 2 ] && [ -z "$out" ] && grep -q "does not match expected" "$ZT_WORK/client.err"; then
	zt_pass
else
	zt_fail "rc=$rc out='$out'"
fi

zt_test "-expect-id list matches any entry"
zt_expect_eq "$(printf ok | client "$ca" "$cli_id" "spiffe://cluster.local/ns/x/sa/y,$srv_id" "$app")" "ok"

zt_test "client from an untrusted CA is rejected"
printf x | client "$ZT_WORK/ca-other" "$cli_id" "$srv_id" "$app" >/dev/null
zt_expect_eq "$?" 2

zt_test "upstream refused gives 503, exit 3"
printf x | client "$ca" "$cli_id" "$srv_id" "$(zt_pod_ip 2 1):7999" >/dev/null
rc=$?
zt_expect_eq "$rc $(grep -o 'status [0-9]*' "$ZT_WORK/client.err")" "3 status 503"

zt_test "client -listen: several connections over one tunnel source"
zt_bg "$cli_ns" client-listen "$peer" client -ca-dir "$ca" -id "$cli_id" -expect-id "$srv_id" \
	-connect "$hbone" -authority "$app" -listen 127.0.0.1:15001 -timeout 0
zt_wait_port "$cli_ns" 127.0.0.1 15001 10 >/dev/null 2>&1
got=""
for i in 1 2 3; do got="$got$(zt_send "$cli_ns" 127.0.0.1 15001 "msg$i" 5)"; done
zt_expect_eq "$got" "msg1msg2msg3"

zt_test "server -status 401 makes the client exit 3"
zt_bg_stop "$srv_pid"
start_server server401 "$ca" -status 401 || zt_fail "server did not start"
printf x | client "$ca" "$cli_id" "$srv_id" "$app" >/dev/null
rc=$?
zt_expect_eq "$rc $(grep -o 'status [0-9]*' "$ZT_WORK/client.err")" "3 status 401"
zt_bg_stop "$ZT_BG_PID"

zt_test "RSA intermediate CA (PKCS#8 key) with cert-chain.pem"
start_server server-rsa "$ZT_WORK/ca-rsa" || zt_fail "server did not start"
zt_expect_eq "$(printf rsa | client "$ZT_WORK/ca-rsa" "$cli_id" "$srv_id" "$app")" "rsa"
zt_bg_stop "$ZT_BG_PID"

zt_test "client sends no SNI, offers only h2, TLS 1.3"
# openssl s_server prints the ClientHello; the peer client then fails, as
# s_server speaks no HTTP/2, which does not matter here.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$ZT_WORK/s.key" \
	-subj "/" -out "$ZT_WORK/s.csr" 2>/dev/null
printf 'subjectAltName=critical,URI:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$srv_id" >"$ZT_WORK/s.ext"
openssl x509 -req -in "$ZT_WORK/s.csr" -CA "$ca/ca-cert.pem" -CAkey "$ca/ca-key.pem" -CAcreateserial \
	-days 1 -extfile "$ZT_WORK/s.ext" -out "$ZT_WORK/s.crt" 2>/dev/null
# s_server stops at EOF on stdin, so feed it a pipe that stays open.
zt_bg "$node2" s_server timeout 15 bash -c 'sleep 15 | openssl s_server -accept "$1" -tls1_3 -alpn h2 \
	-trace -cert "$2.crt" -cert_chain "$3/ca-cert.pem" -key "$2.key" -Verify 2 -CAfile "$3/root-cert.pem" \
	-naccept 1' _ "$hbone" "$ZT_WORK/s" "$ca"
sleep 0.5
printf x | client "$ca" "$cli_id" "$srv_id" "$app" >/dev/null
sleep 0.3
hello=$(sed -n '/ClientHello/,/ServerHello/p' "$ZT_WORK/s_server.log" | tr -cd '[:print:]\n')
# supported_versions of length 3 = a one-entry list, i.e. TLS 1.3 only.
if [ -n "$hello" ] && ! grep -q "server_name" <<<"$hello" &&
	grep -qx 'ALPN protocols advertised by the client: h2' <<<"$hello" &&
	grep -q 'extension_type=supported_versions(43), length=3' <<<"$hello"; then
	zt_pass
else
	zt_fail "see $ZT_WORK/s_server.log"
fi

zt_test "server sends leaf + intermediate; leaf has empty subject and critical SPIFFE SAN"
start_server server-chain "$ca" || zt_fail "server did not start"
zt_ns_exec "$cli_ns" timeout 10 openssl s_client -connect "$hbone" -alpn h2 -showcerts \
	-cert "$ZT_WORK/s.crt" -cert_chain "$ca/ca-cert.pem" -key "$ZT_WORK/s.key" </dev/null \
	>"$ZT_WORK/s_client.log" 2>&1
ncerts=$(grep -c 'BEGIN CERTIFICATE' "$ZT_WORK/s_client.log")
sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/{p;/END CERTIFICATE/q}' "$ZT_WORK/s_client.log" |
	openssl x509 -noout -text >"$ZT_WORK/leaf.txt" 2>&1
if [ "$ncerts" = 2 ] && grep -q 'Subject Alternative Name: critical' "$ZT_WORK/leaf.txt" &&
	grep -q "URI:$srv_id\$" "$ZT_WORK/leaf.txt" && grep -qE '^ *Subject: *$' "$ZT_WORK/leaf.txt" &&
	grep -q 'ASN1 OID: prime256v1' "$ZT_WORK/leaf.txt"; then
	zt_pass
else
	zt_fail "ncerts=$ncerts; see $ZT_WORK/leaf.txt"
fi
zt_bg_stop "$ZT_BG_PID"

zt_summary
