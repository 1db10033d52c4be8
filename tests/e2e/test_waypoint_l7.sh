#!/usr/bin/env bash
# `ztunnel waypoint`: the mesh's own waypoint, running in a pod of its own
# (not enrolled) with its own identity. Client a (node 1) dials service
# svc-b, whose waypoint is w (node 2): a's proxy sends the connection to w
# over HBONE, w picks an endpoint of svc-b and opens its own HBONE tunnel to
# it, presenting w's identity; b's proxy (node 2) delivers it. Checked: the
# bytes both ways (a large stream too, against the stream windows), each
# hop's access line and identities, a workload that uses w itself, and
# that w is no open proxy (a CONNECT for a destination that does not use
# it is refused; a TLS client without a mesh certificate never gets a
# session). Needs root and Go.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a (client, enrolled), p (not enrolled: runs the Go HBONE client);
# node 2: b, c (enrolled, echo on 8080), w (the waypoint: not enrolled,
# sa waypoint)
A=10.200.1.2 B=10.200.2.2 C=10.200.2.3 W=10.200.2.4
VIP_B=10.96.0.30 VIP_C=10.96.0.31 VIP_H=10.96.0.32 VIP_S=10.96.0.33
H=default.svc.cluster.local

zt_test "setup: 2 nodes, client a, servers b and c, waypoint w running ztunnel waypoint"
setup() {
	peer=$(mesh_peer) || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && p=$(zt_pod_add 1 2 p) || return 1
	b=$(zt_pod_add 2 1 b) && c=$(zt_pod_add 2 2 c) && w=$(zt_pod_add 2 3 w) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: b, name: b, namespace: default, serviceAccount: sa-b, workloadIps: ["$B"], protocol: HBONE, node: node2,
		   services: {"default/svc-b.$H": {80: 8080, 3306: 8080}, "default/svc-h.$H": {80: 8081}, "default/svc-s.$H": {80: 8081}}}
		- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2,
		   services: {"default/svc-c.$H": {80: 8080}}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		- {uid: w, name: w, namespace: default, serviceAccount: waypoint, workloadIps: ["$W"], protocol: HBONE, node: node2}
		services:
		- {name: svc-b, namespace: default, hostname: svc-b.$H, vips: ["/$VIP_B"], ports: {80: 8080, 3306: 8080},
		   waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		- {name: svc-c, namespace: default, hostname: svc-c.$H, vips: ["/$VIP_C"], ports: {80: 8080}}
		- {name: svc-h, namespace: default, hostname: svc-h.$H, vips: ["/$VIP_H"],
		   ports: {80: {targetPort: 8081, appProtocol: http}}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		- {name: svc-s, namespace: default, hostname: svc-s.$H, vips: ["/$VIP_S"], ports: {80: 8081},
		   waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
	Y
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$b" b sa-b && mesh_enroll 2 "$c" c sa-c || return 1
	zt_echo_server "$b" 8080 && zt_echo_server "$c" 8080 || return 1
	zt_bg "$b" http-b python3 "$here/http_echo.py" b 8081 && zt_wait_port "$b" 127.0.0.1 8081 5 || return 1
	mesh_waypoint_start 1 "$w" w waypoint
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi
wlog=$ZT_WORK/waypoint1.log

# wp_line MARK ERE: the first access line of w after line MARK matching ERE.
wp_line() {
	mesh_wait_grep "$wlog" "$2" 5 >/dev/null
	tail -n +"$(($1 + 1))" "$wlog" | grep -E -- "$2" | head -1
}

# go_connect AUTHORITY DATA: the Go HBONE client in p, through w as sa-a;
# its output (the bytes echoed) on stdout, its log in $ZT_WORK/go.err.
go_connect() {
	printf '%s' "$2" | zt_ns_exec "$p" timeout 10 "$peer" client -ca-dir "$MESH_CA" -id "$(mesh_id sa-a)" \
		-connect "$W:15008" -authority "$1" -expect-id "$(mesh_id waypoint)" 2>"$ZT_WORK/go.err"
}

# ---- a service through the waypoint ----
m1=$(mesh_mark 1) m2=$(mesh_mark 2) mw=$(wc -l <"$wlog")
zt_test "a -> svc-b VIP:80 through waypoint w: echoed by b"
zt_expect_eq "$(zt_send "$a" $VIP_B 80 "hello-through-w" 5)" "hello-through-w"

zt_test "... a's proxy sends it to w:15008 asking for VIP:80"
line=$(mesh_wait_access 1 "$m1" "dst.hbone_addr=$VIP_B:80" 5)
mesh_expect_fields "$line" "dst.addr=$W:15008" "dst.workload=w" "dst.identity=$(mesh_id waypoint)" \
	"src.identity=$(mesh_id sa-a)"

zt_test "... w logs the client's identity and the endpoint it picked"
line=$(wp_line "$mw" "dst.service=svc-b.*direction=waypoint")
mesh_expect_fields "$line" "src.identity=$(mesh_id sa-a)" "dst.addr=$B:15008" "dst.hbone_addr=$B:8080" \
	"dst.workload=b" "dst.identity=$(mesh_id sa-b)" "bytes_sent=15" "bytes_recv=15"

zt_test "... b's proxy sees the waypoint's identity, not a's"
line=$(mesh_wait_access 2 "$m2" "dst.hbone_addr=$B:8080" 5)
mesh_expect_fields "$line" "src.identity=$(mesh_id waypoint)" "dst.workload=b" "direction=inbound"

zt_test "a 4 MiB stream both ways through the waypoint arrives intact (beyond one stream window)"
head -c 4194304 /dev/urandom >"$ZT_WORK/big.in"
zt_ns_exec "$a" timeout 30 socat -t 10 - "TCP:$VIP_B:80,connect-timeout=5" <"$ZT_WORK/big.in" >"$ZT_WORK/big.out"
if cmp -s "$ZT_WORK/big.in" "$ZT_WORK/big.out"; then zt_pass; else
	zt_fail "sent $(stat -c %s "$ZT_WORK/big.in") bytes, got $(stat -c %s "$ZT_WORK/big.out") back (or different)"
fi

zt_test "ten connections at once through the waypoint, each echoed"
pids=()
for i in $(seq 1 10); do
	(zt_send "$a" $VIP_B 80 "conn-$i" 10 >"$ZT_WORK/par-$i.out") &
	pids+=($!)
done
wait "${pids[@]}"
ok=0
for i in $(seq 1 10); do [ "$(cat "$ZT_WORK/par-$i.out")" = "conn-$i" ] && ok=$((ok + 1)); done
zt_expect_eq "$ok" 10

# ---- a workload that uses the waypoint itself ----
mw=$(wc -l <"$wlog")
zt_test "a -> c's pod IP (c uses w): echoed by c through w"
zt_expect_eq "$(zt_send "$a" $C 8080 "to-c" 5)" "to-c"
zt_test "... w logged it for c, no service"
line=$(wp_line "$mw" "dst.workload=c.*direction=waypoint")
mesh_expect_fields "$line" "dst.hbone_addr=$C:8080" "dst.service=" "src.identity=$(mesh_id sa-a)"

# ---- HTTP/1.1 ----
# body_field BODY KEY: the value of KEY=value in the echo server's answer.
body_field() { sed -n "s/^$2=//p" <<<"$1" | head -1; }
# acurl ARGS...: curl in pod a.
acurl() { zt_ns_exec "$a" timeout 20 curl -sS --max-time 15 "$@"; }

mw=$(wc -l <"$wlog")
zt_test "HTTP port (appProtocol http): GET through w reaches b with the path and the x-forwarded-proto w adds"
out=$(acurl "http://$VIP_H/hello?x=1" -H "x-test: 1" -H "Proxy-Connection: keep-alive")
if [ "$(body_field "$out" server)" = b ] && [ "$(body_field "$out" path)" = "/hello?x=1" ] &&
	[ "$(body_field "$out" h:x-test)" = 1 ] && [ "$(body_field "$out" h:x-forwarded-proto)" = http ] &&
	[ -z "$(body_field "$out" h:proxy-connection)" ]; then zt_pass; else zt_fail "$out"; fi

zt_test "... w's access line for the request: method, path, status, client identity, endpoint"
line=$(wp_line "$mw" 'request complete.*path="?/hello')
mesh_expect_fields "$line" "method=GET" "status=200" "src.identity=$(mesh_id sa-a)" "dst.workload=b" \
	"dst.service=svc-h.$H" "upstream=$B:8081" "authority=$VIP_H"

mw=$(wc -l <"$wlog")
zt_test "two requests on one kept-alive connection: both answered, curl reuses the connection"
out=$(acurl -v "http://$VIP_H/one" "http://$VIP_H/two" 2>"$ZT_WORK/curl-ka.err")
if grep -q "path=/one" <<<"$out" && grep -q "path=/two" <<<"$out" &&
	grep -qiE "re-using existing connection|reusing existing connection" "$ZT_WORK/curl-ka.err"; then zt_pass; else
	zt_fail "$out / $(grep -i connection "$ZT_WORK/curl-ka.err" | head -5)"
fi
zt_test "... w logged both requests"
wp_line "$mw" "request complete.*path=/two" >/dev/null
zt_expect_eq "$(tail -n +"$((mw + 1))" "$wlog" | grep -cE "request complete.*path=/(one|two) ")" 2

zt_test "POST of 3 MiB with Content-Length arrives whole (SHA-256 as sent)"
head -c 3145728 /dev/urandom >"$ZT_WORK/post.bin"
out=$(acurl --data-binary @"$ZT_WORK/post.bin" -H "Content-Type: application/octet-stream" "http://$VIP_H/upload")
zt_expect_eq "$(body_field "$out" body_sha256)" "$(sha256sum <"$ZT_WORK/post.bin" | cut -d' ' -f1)"

zt_test "chunked upload (Transfer-Encoding: chunked) arrives whole"
out=$(acurl -H "Transfer-Encoding: chunked" --data-binary @"$ZT_WORK/post.bin" "http://$VIP_H/chunked-up")
zt_expect_eq "$(body_field "$out" body_len)" 3145728

zt_test "a chunked response reaches the client whole; HEAD gets headers only; statuses pass through"
out=$(acurl "http://$VIP_H/chunked")
head_out=$(acurl -I "http://$VIP_H/hello")
code=$(acurl -o /dev/null -w '%{http_code}' "http://$VIP_H/status/404")
if [ "$(body_field "$out" path)" = /chunked ] && grep -q "^HTTP/1.1 200" <<<"$head_out" && [ "$code" = 404 ]; then
	zt_pass
else
	zt_fail "chunked: $(head -3 <<<"$out") HEAD: $(head -1 <<<"$head_out") status: $code"
fi

zt_test "Expect: 100-continue upload through w is answered"
out=$(acurl -H "Expect: 100-continue" --data-binary @"$ZT_WORK/post.bin" "http://$VIP_H/expect")
zt_expect_eq "$(body_field "$out" body_len)" 3145728

mw=$(wc -l <"$wlog")
zt_test "a port of unknown protocol is sniffed: HTTP there is served as HTTP (logged per request)"
out=$(acurl "http://$VIP_S/sniffed")
if [ "$(body_field "$out" path)" = /sniffed ] && wp_line "$mw" "request complete.*path=/sniffed" | grep -q status=200; then
	zt_pass
else zt_fail "$out"; fi

raw_req=$'GET /raw HTTP/1.1\r\nHost: x\r\n\r\n'
zt_test "port 3306 of unknown protocol is TCP, never sniffed (as Istio): an HTTP request there comes back byte for byte from the echo server"
zt_expect_eq "$(zt_send "$a" $VIP_B 3306 "$raw_req" 5 | od -An -c | tr -s ' ')" "$(printf '%s' "$raw_req" | od -An -c | tr -s ' ')"
zt_test "... positive control: the same bytes to port 80 (sniffed) are taken as HTTP (the echo server's answer is no HTTP response: 502)"
out=$(zt_send "$a" $VIP_B 80 "$raw_req" 5 | head -1 | tr -d '\r')
zt_expect_eq "$out" "HTTP/1.1 502 Bad Gateway"

zt_test "request smuggling (Content-Length with Transfer-Encoding) gets 400 and a closed connection"
out=$(printf 'POST / HTTP/1.1\r\nHost: svc-h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: svc-h\r\n\r\n' |
	zt_ns_exec "$a" timeout 10 socat -t 5 - "TCP:$VIP_H:80,connect-timeout=5")
if grep -q "^HTTP/1.1 400" <<<"$out" && ! grep -q "smuggled" <<<"$out" && grep -qi "connection: close" <<<"$out"; then
	zt_pass
else zt_fail "$out"; fi

zt_test "a 70 KiB header gets 431; w goes on serving"
big=$(head -c 71680 /dev/zero | tr '\0' a)
code=$(acurl -o /dev/null -w '%{http_code}' -H "x-big: $big" "http://$VIP_H/big")
ok=$(body_field "$(acurl "http://$VIP_H/after")" path)
if [ "$code" = 431 ] && [ "$ok" = /after ]; then zt_pass; else zt_fail "code $code, then path '$ok'"; fi

zt_test "a WebSocket upgrade passes through: 101, then bytes echoed both ways"
out=$(zt_ns_exec "$a" timeout 10 python3 - "$VIP_H" <<'PY'
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=5)
s.sendall(b"GET /ws HTTP/1.1\r\nHost: svc-h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
head, rest = buf.split(b"\r\n\r\n", 1)
s.sendall(b"ping-after-upgrade")
while len(rest) < 18:
    rest += s.recv(4096)
print(head.split(b"\r\n")[0].decode(), rest.decode())
PY
)
zt_expect_eq "$out" "HTTP/1.1 101 Switching Protocols ping-after-upgrade"

# ---- L7 metrics ----
# req_count CODE: istio_requests_total of w for a's requests to svc-h with
# that response code (0 when the series does not exist yet).
req_count() {
	zt_ns_exec "$w" curl -s --max-time 5 http://127.0.0.1:15020/metrics |
		grep '^istio_requests_total{reporter="waypoint"' | grep 'source_workload_namespace="default"' |
		grep "destination_service=\"svc-h.$H\"" | grep "response_code=\"$1\"" |
		grep 'destination_principal="spiffe://cluster.local/ns/default/sa/sa-b"' |
		grep 'source_principal="spiffe://cluster.local/ns/default/sa/sa-a"' |
		grep 'request_protocol="http"' | awk '{s += $NF} END {print s + 0}'
}
zt_test "istio_requests_total (reporter waypoint, Istio's labels) counts 3 more 404s after 3 requests answered 404"
before=$(req_count 404)
for _ in 1 2 3; do acurl -o /dev/null "http://$VIP_H/status/404"; done
after=$(req_count 404)
zt_expect_eq "$((after - before))" 3
zt_test "... and the waypoint's exposition passes promtool (only Istio's own names are linted)"
zt_ns_exec "$w" curl -s --max-time 5 http://127.0.0.1:15020/metrics >"$ZT_WORK/wmetrics.txt"
out=$(promtool check metrics <"$ZT_WORK/wmetrics.txt" 2>&1)
rc=$?
rest=$(echo "$out" | grep -v '^workload_manager_\(active\|pending\)_proxy_count non-histogram' |
	grep -v '^istio_request_duration_milliseconds.*base unit' | grep -v '^$')
if { [ $rc = 0 ] || [ $rc = 3 ]; } && [ -z "$rest" ] &&
	grep -q '^istio_request_duration_milliseconds_bucket{reporter="waypoint"' "$ZT_WORK/wmetrics.txt"; then
	zt_pass
else zt_fail "rc=$rc: $out"; fi

# ---- not an open proxy ----
zt_test "positive control: the Go HBONE client through w to svc-b gets its bytes echoed"
zt_expect_eq "$(go_connect "$VIP_B:80" go-ok)" "go-ok"

zt_test "a CONNECT for svc-c (no waypoint) is refused by w with 403, and logged"
go_connect "$VIP_C:80" x >/dev/null
rc=$?
if [ "$rc" = 3 ] && grep -q "403" "$ZT_WORK/go.err" &&
	mesh_wait_grep "$wlog" "403: the destination service does not use this waypoint" 5; then zt_pass; else
	zt_fail "exit $rc: $(tail -2 "$ZT_WORK/go.err")"
fi

zt_test "a CONNECT for an address nobody has is refused (503), w goes on serving"
go_connect "10.96.9.9:80" x >/dev/null
rc=$?
if [ "$rc" = 3 ] && grep -q "503" "$ZT_WORK/go.err" &&
	[ "$(zt_send "$a" $VIP_B 80 "still" 5)" = still ]; then zt_pass; else
	zt_fail "exit $rc: $(tail -2 "$ZT_WORK/go.err")"
fi

zt_test "a TLS client without a client certificate is refused by w (no HTTP/2 session)"
printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' | zt_ns_exec "$p" timeout 5 openssl s_client -connect "$W:15008" \
	-alpn h2 -CAfile "$MESH_CA/root-cert.pem" -quiet >"$ZT_WORK/tls.out" 2>&1
if grep -qiE "alert|certificate required|handshake failure" "$ZT_WORK/tls.out"; then zt_pass; else
	zt_fail "$(head -5 "$ZT_WORK/tls.out")"
fi

mesh_finish
