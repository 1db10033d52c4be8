#!/usr/bin/env bash
# HTTP/2 cleartext and gRPC through `ztunnel waypoint`, with clients and
# servers that are not ours: curl (--http2-prior-knowledge), Node's http2
# module and grpc-js (tests/e2e/h2_echo.js). Ports are selected by
# appProtocol (http2, grpc) or, without one, by the HTTP/2 preface. Cases: HTTPRoute and GRPCRoute routing,
# 50 requests multiplexed on one connection, trailers, large bodies both ways, a retry on 503
# and on gRPC UNAVAILABLE, a route timeout, gRPC statuses and streaming,
# RequestMirror of h2c requests and gRPC calls (copies sent as HTTP/2),
# JWT (RequestAuthentication) and AuthorizationPolicy on gRPC calls,
# request metrics with grpc_response_status, and a client sending garbage
# after the preface (only its session ends). Needs root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a (client); node 2: b1, b2 (backends); node 3: w (the waypoint,
# on a node of neither client nor servers)
A=10.200.1.2 B1=10.200.2.2 B2=10.200.2.3 W=10.200.3.2
VIP_H2=10.96.0.50 VIP_H2V2=10.96.0.51 VIP_G=10.96.0.52 VIP_GV2=10.96.0.53 VIP_SNIFF=10.96.0.54 VIP_DECL=10.96.0.55
H=default.svc.cluster.local

config() {
	cat <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: b1, name: b1, namespace: default, serviceAccount: sa-b, workloadIps: ["$B1"], protocol: HBONE, node: node2,
		   services: {"default/svc-h2.$H": {80: 8082}, "default/svc-g.$H": {9090: 9090}, "default/svc-sniff.$H": {80: 8082},
		             "default/svc-decl.$H": {80: 8083}}}
		- {uid: b2, name: b2, namespace: default, serviceAccount: sa-b, workloadIps: ["$B2"], protocol: HBONE, node: node2,
		   services: {"default/svc-h2v2.$H": {80: 8082}, "default/svc-gv2.$H": {9090: 9090}}}
		- {uid: w, name: w, namespace: default, serviceAccount: waypoint, workloadIps: ["$W"], protocol: HBONE, node: node3}
		services:
		- {name: svc-h2, namespace: default, hostname: svc-h2.$H, vips: ["/$VIP_H2"],
		   ports: {80: {targetPort: 8082, appProtocol: http2}}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		- {name: svc-h2v2, namespace: default, hostname: svc-h2v2.$H, vips: ["/$VIP_H2V2"],
		   ports: {80: {targetPort: 8082, appProtocol: http2}}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		- {name: svc-sniff, namespace: default, hostname: svc-sniff.$H, vips: ["/$VIP_SNIFF"],
		   ports: {80: 8082}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		- {name: svc-decl, namespace: default, hostname: svc-decl.$H, vips: ["/$VIP_DECL"],
		   ports: {80: {targetPort: 8083, appProtocol: http}}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		- {name: svc-g, namespace: default, hostname: svc-g.$H, vips: ["/$VIP_G"],
		   ports: {9090: {targetPort: 9090, appProtocol: grpc}}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		- {name: svc-gv2, namespace: default, hostname: svc-gv2.$H, vips: ["/$VIP_GV2"],
		   ports: {9090: {targetPort: 9090, appProtocol: grpc}}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		---
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata: {name: h2, namespace: default}
		spec:
		  parentRefs: [{kind: Service, name: svc-h2, port: 80}]
		  rules:
		  - matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: x-canary, value: "yes"}]}]
		    backendRefs: [{name: svc-h2v2, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /rewrite}}]
		    filters:
		    - {type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /rewritten}}}
		    - type: RequestHeaderModifier
		      requestHeaderModifier: {set: [{name: x-route, value: rewrite}]}
		    - type: ResponseHeaderModifier
		      responseHeaderModifier: {add: [{name: x-resp, value: "1"}]}
		    backendRefs: [{name: svc-h2, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /flaky}}]
		    retry: {attempts: 2, codes: [503]}
		    backendRefs: [{name: svc-h2, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /noretry}}]
		    retry: {attempts: 0}
		    backendRefs: [{name: svc-h2, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /mirror}}]
		    filters:
		    - type: RequestMirror
		      requestMirror: {backendRef: {name: svc-h2v2, port: 80}}
		    backendRefs: [{name: svc-h2, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /sleep}}]
		    timeouts: {request: 500ms}
		    backendRefs: [{name: svc-h2, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /}}]
		    backendRefs: [{name: svc-h2, port: 80}]
		---
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata: {name: decl, namespace: default}
		spec:
		  parentRefs: [{kind: Service, name: svc-decl, port: 80}]
		  rules:
		  - matches: [{path: {type: PathPrefix, value: /flaky}}]
		    retry: {attempts: 2, codes: [503]}
		    backendRefs: [{name: svc-decl, port: 80}]
		  - backendRefs: [{name: svc-decl, port: 80}]
		---
		apiVersion: gateway.networking.k8s.io/v1
		kind: GRPCRoute
		metadata: {name: g, namespace: default}
		spec:
		  parentRefs: [{kind: Service, name: svc-g, port: 9090}]
		  rules:
		  - matches: [{method: {service: zt.test.Echo, method: Say}, headers: [{name: x-canary, value: "yes"}]}]
		    backendRefs: [{name: svc-gv2, port: 9090}]
		  - matches: [{method: {service: zt.test.Echo, method: Say}, headers: [{name: x-mirror, value: "yes"}]}]
		    filters:
		    - type: RequestMirror
		      requestMirror: {backendRef: {name: svc-gv2, port: 9090}}
		    backendRefs: [{name: svc-g, port: 9090}]
		  - backendRefs: [{name: svc-g, port: 9090}]
		---
		apiVersion: security.istio.io/v1
		kind: AuthorizationPolicy
		metadata: {name: no-blocked, namespace: default}
		spec:
		  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
		  action: DENY
		  rules:
		  - when: [{key: "request.headers[x-block]", values: ["yes"]}]
		  - from: [{source: {notRequestPrincipals: ["*"]}}]
		    when: [{key: "request.headers[x-need-token]", values: ["yes"]}]
		---
		apiVersion: security.istio.io/v1
		kind: RequestAuthentication
		metadata: {name: jwt, namespace: default}
		spec:
		  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
		  jwtRules:
		  - issuer: https://issuer.test
		    jwks: '$(cat "$ZT_WORK/tokens/jwks.json")'
	Y
}

zt_test "setup: client a (node 1), h2c and gRPC backends b1 and b2 and an HTTP/1.1 one on b1 (Node, node 2), waypoint w (node 3) with HTTPRoutes and a GRPCRoute"
setup() {
	"$here/../conformance/setup.sh" || return 1 # grpc-js (npm ci, once)
	zt_node_add 1 && zt_node_add 2 && zt_node_add 3 || return 1
	a=$(zt_pod_add 1 1 a) || return 1
	b1=$(zt_pod_add 2 1 b1) && b2=$(zt_pod_add 2 2 b2) && w=$(zt_pod_add 3 1 w) || return 1
	mesh_ca || return 1
	mkdir -p "$ZT_WORK/tokens" && node "$here/jwt_mint.js" "$ZT_WORK/tokens" https://issuer.test || return 1
	config >"$ZT_WORK/n1.yaml"
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$b1" b1 sa-b && mesh_enroll 2 "$b2" b2 sa-b || return 1
	local b
	for b in b1 b2; do
		local ns=$b1
		[ $b = b2 ] && ns=$b2
		zt_bg "$ns" "h2c-$b" node "$here/h2_echo.js" h2c $b 8082 &&
			zt_bg "$ns" "grpc-$b" node "$here/h2_echo.js" grpc $b 9090 "$ZT_WORK/grpc-$b.seen" || return 1
		zt_wait_port "$ns" 127.0.0.1 8082 10 && zt_wait_port "$ns" 127.0.0.1 9090 10 || return 1
	done
	zt_bg "$b1" h1-b1 node "$here/h2_echo.js" h1 b1 8083 && zt_wait_port "$b1" 127.0.0.1 8083 10 || return 1
	mesh_waypoint_start 1 "$w" w waypoint && mesh_wait_grep "$ZT_WORK/waypoint1.log" "3 route\(s\) in force" 5
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi
wlog=$ZT_WORK/waypoint1.log

body_field() { sed -n "s/^$2=//p" <<<"$1" | head -1; }
hcurl() { zt_ns_exec "$a" timeout 30 curl -sS --http2-prior-knowledge --max-time 20 "$@"; }
server_of() { body_field "$(hcurl "$@")" server; }
gcall() { zt_ns_exec "$a" timeout 30 node "$here/h2_echo.js" call "$@"; }

zt_test "h2c: /hello goes to svc-h2 (b1) over HTTP/2, logged by w as protocol=HTTP/2"
out=$(hcurl -w 'version=%{http_version}\n' "http://$VIP_H2/hello")
if [ "$(body_field "$out" server)" = b1 ] && [ "$(body_field "$out" version)" = 2 ] &&
	mesh_wait_grep "$wlog" 'request complete.*path=/hello.*protocol=HTTP/2.*status=200' 5 >/dev/null; then zt_pass; else
	zt_fail "$out"
fi

zt_test "a port without appProtocol: the h2 preface is sniffed, requests are served as HTTP/2 (access line per request)"
out=$(hcurl "http://$VIP_SNIFF/sniffed")
if [ "$(body_field "$out" server)" = b1 ] &&
	mesh_wait_grep "$wlog" 'request complete.*path=/sniffed.*protocol=HTTP/2.*status=200' 5 >/dev/null; then zt_pass; else
	zt_fail "$out"
fi

zt_test "a port declared http takes h2c (Envoy's AUTO codec) and sends it on as HTTP/1.1 (the port's protocol): the HTTP/1.1 backend answers, the client gets HTTP/2"
out=$(hcurl -w 'version=%{http_version}\nx-server=%header{x-server}\n' "http://$VIP_DECL/declared")
got="$(body_field "$out" server) $(body_field "$out" version) $(body_field "$out" authority) $(body_field "$out" x-server)"
if [ "$got" = "b1 1.1 $VIP_DECL b1" ] && [ "$(sed -n 's/^version=//p' <<<"$out" | tail -1)" = 2 ] &&
	mesh_wait_grep "$wlog" 'request complete.*path=/declared.*protocol=HTTP/2.*status=200' 5 >/dev/null; then zt_pass; else
	zt_fail "got '$got'; $out"
fi

zt_test "h2c -> HTTP/1.1: a body of unknown length goes chunked, a known one with its length; te: trailers is not sent on"
head -c 300000 /dev/urandom >"$ZT_WORK/up.bin"
chunked=$(zt_ns_exec "$a" sh -c "cat '$ZT_WORK/up.bin' | timeout 30 curl -sS --http2-prior-knowledge -H 'te: trailers' -T - http://$VIP_DECL/upload")
sized=$(hcurl --data-binary @"$ZT_WORK/up.bin" "http://$VIP_DECL/upload2")
empty=$(hcurl -X POST "http://$VIP_DECL/empty")
got="$(body_field "$chunked" transfer-encoding)/$(body_field "$chunked" body-bytes)/$(body_field "$chunked" te) $(body_field "$sized" content-length)/$(body_field "$sized" body-bytes)/$(body_field "$sized" transfer-encoding) $(body_field "$empty" content-length)"
zt_expect_eq "$got" "chunked/300000/ 300000/300000/ 0"

zt_test "h2c -> HTTP/1.1: a 20 MB response arrives whole; sequential requests reuse the upstream connection; 20 concurrent streams all answered"
n=$(hcurl "http://$VIP_DECL/big/20000000" | wc -c)
seq_out=$(zt_ns_exec "$a" timeout 30 node "$here/h2_echo.js" seq "$VIP_DECL" /k1 /k2)
conns=$(sed -n 's/^conn=//p' <<<"$seq_out" | tr '\n' ' ')
par=$(zt_ns_exec "$a" timeout 30 node "$here/h2_echo.js" multi "$VIP_DECL" 20)
c1=$(awk '{print $1}' <<<"$conns") c2=$(awk '{print $2}' <<<"$conns")
if [ "$n" -gt 20000000 ] && [ -n "$c1" ] && [ "$c1" = "$c2" ] && [ "$par" = ok=20 ]; then zt_pass; else
	zt_fail "bytes $n; conns '$conns'; parallel answers $par"
fi

zt_test "h2c -> HTTP/1.1: Connection: close from the backend ends only that upstream connection; the next request gets a new one"
o1=$(zt_ns_exec "$a" timeout 30 node "$here/h2_echo.js" seq "$VIP_DECL" /close /after-close)
cc=$(sed -n 's/^conn=//p' <<<"$o1" | tr '\n' ' ')
if [ "$(wc -w <<<"$cc")" = 2 ] && [ "$(awk '{print $1}' <<<"$cc")" != "$(awk '{print $2}' <<<"$cc")" ]; then zt_pass; else
	zt_fail "conns '$cc'; $o1"
fi

zt_test "h2c -> HTTP/1.1: the route's retry on 503 answers 200 from the second try; trailers of a chunked response pass"
out=$(hcurl -w 'code=%{http_code}\n' "http://$VIP_DECL/flaky/h1-$$")
tr_out=$(zt_ns_exec "$a" timeout 30 node -e '
const h=require("http2").connect("http://'"$VIP_DECL"'");
const r=h.request({":path":"/trailers"});
r.on("trailers",(t)=>{console.log("trailer="+t["x-trailer"]);});
r.on("data",()=>{});r.on("end",()=>h.close());')
zt_expect_eq "$(body_field "$out" code) $(body_field "$tr_out" trailer)" "200 done"

zt_test "h2c -> HTTP/1.1: a response with both Content-Length and Transfer-Encoding is refused (502), logged, and the next request is served"
code=$(hcurl -o /dev/null -w '%{http_code}' "http://$VIP_DECL/bad")
code2=$(hcurl -o /dev/null -w '%{http_code}' "http://$VIP_DECL/after-bad")
if [ "$code $code2" = "502 200" ] &&
	mesh_wait_grep "$wlog" 'request complete.*path=/bad.*status=502.*bad HTTP/1.1 response' 5 >/dev/null; then zt_pass; else
	zt_fail "codes $code $code2"
fi

zt_test "h2c routing: PathPrefix /v2 and header x-canary go to svc-h2v2 (b2); others to b1"
got="$(server_of "http://$VIP_H2/v2/x") $(server_of -H "x-canary: yes" "http://$VIP_H2/y") $(server_of "http://$VIP_H2/v2x")"
zt_expect_eq "$got" "b2 b2 b1"

# raw HOST PORT TEXT: sends TEXT (\r and \n written as such) on one TCP
# connection from a and prints all it receives until the server closes
# (Node's net module).
raw() {
	zt_ns_exec "$a" timeout 30 node -e '
const t = process.argv[3].replace(/\\r/g, "\r").replace(/\\n/g, "\n");
const s = require("net").connect(Number(process.argv[2]), process.argv[1], () => s.end(t));
s.on("data", (d) => process.stdout.write(d));
s.on("error", (e) => console.log("error=" + e.code));' "$1" "$2" "$3"
}
h1curl() { zt_ns_exec "$a" timeout 30 curl -sS --http1.1 --max-time 20 "$@"; }

zt_test "HTTP/1.1 client to a port declared http2: sent on as h2c (the port's protocol) to the h2c-only backend, answered as HTTP/1.1, logged protocol=HTTP/1.1"
out=$(h1curl -w 'version=%{http_version}\n' "http://$VIP_H2/from-h1")
got="$(body_field "$out" server) $(body_field "$out" path) $(body_field "$out" authority) $(sed -n 's/^version=//p' <<<"$out" | tail -1)"
if [ "$got" = "b1 /from-h1 $VIP_H2 1.1" ] &&
	mesh_wait_grep "$wlog" 'request complete.*path=/from-h1.*protocol=HTTP/1.1.*status=200' 5 >/dev/null; then zt_pass; else
	zt_fail "got '$got'; $out"
fi

zt_test "HTTP/1.1 -> h2c: keep-alive (two requests, one connection), the HTTPRoute (/v2 to b2), a retry on 503, a 300 KB chunked upload with Expect: 100-continue, a 5 MB answer"
two=$(h1curl -w 'connects=%{num_connects}\n' "http://$VIP_H2/v2/a" "http://$VIP_H2/b")
head -c 300000 /dev/urandom >"$ZT_WORK/up1.bin"
up=$(zt_ns_exec "$a" sh -c "cat '$ZT_WORK/up1.bin' | timeout 30 curl -sS --http1.1 -H 'expect: 100-continue' -T - http://$VIP_H2/upload")
flaky=$(h1curl -o /dev/null -w '%{http_code}' "http://$VIP_H2/flaky/h1c-$$")
big=$(h1curl "http://$VIP_H2/big/5000000" | wc -c)
got="$(sed -n 's/^server=//p' <<<"$two" | tr '\n' ' ')$(sed -n 's/^connects=//p' <<<"$two" | tr '\n' ' ')$(body_field "$up" body-bytes) $flaky"
if [ "$got" = "b2 b1 1 0 300000 200" ] && [ "$big" -gt 5000000 ]; then zt_pass; else
	zt_fail "got '$got', big $big"
fi

zt_test "HTTP/1.1 -> h2c: the backend's trailers arrive in the last chunk; pipelined requests are answered in order on one connection"
tr=$(h1curl --raw "http://$VIP_H2/trailers")
pipe=$(raw "$VIP_H2" 80 'GET /p1 HTTP/1.1\r\nHost: h\r\n\r\nGET /p2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n')
order=$(grep -o '^path=/p[12]' <<<"$pipe" | tr '\n' ' ')
if grep -qi '^x-trailer: done' <<<"$tr" && [ "$order" = "path=/p1 path=/p2 " ]; then zt_pass; else
	zt_fail "trailers: $(tail -3 <<<"$tr" | tr '\r\n' '  '); order '$order'"
fi

zt_test "HTTP/1.1 -> h2c: a smuggling attempt (Content-Length with Transfer-Encoding) gets 400 and the connection closes; so does a client closing inside a body; a WebSocket upgrade gets 501; the next client is served"
smug=$(raw "$VIP_H2" 80 'POST /s HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n')
cut=$(raw "$VIP_H2" 80 'POST /cutbody HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc' | head -1 | tr -d '\r')
ws=$(h1curl -o /dev/null -w '%{http_code}' -H 'connection: upgrade' -H 'upgrade: websocket' "http://$VIP_H2/ws")
after=$(h1curl -o /dev/null -w '%{http_code}' "http://$VIP_H2/after")
st=$(head -1 <<<"$smug" | tr -d '\r')
if [ "$st" = "HTTP/1.1 400 Bad Request" ] && ! grep -q smuggled <<<"$smug" && [ "$cut" = "$st" ] &&
	[ "$ws $after" = "501 200" ]; then zt_pass; else
	zt_fail "smuggle: '$st' $(grep -c smuggled <<<"$smug"); cut '$cut'; ws $ws; after $after"
fi

zt_test "traceparent: b1 sees the client's trace id with the waypoint's span id, and w logs both"
tid=4bf92f3577b34da6a3ce929d0e0e4736
out=$(hcurl -H "traceparent: 00-$tid-00f067aa0ba902b7-01" "http://$VIP_H2/traced")
seen=$(body_field "$out" traceparent)
span=$(cut -d- -f3 <<<"$seen")
if [[ $seen == 00-$tid-*-01 ]] && [ "$span" != 00f067aa0ba902b7 ] &&
	mesh_wait_grep "$wlog" "path=/traced.*trace_id=$tid span_id=$span" 5 >/dev/null; then zt_pass; else
	zt_fail "backend saw '$seen'"
fi
zt_test "... without one, b1 sees a new valid traceparent"
seen=$(body_field "$(hcurl "http://$VIP_H2/untraced")" traceparent)
if [[ $seen =~ ^00-[0-9a-f]{32}-[0-9a-f]{16}-00$ ]]; then zt_pass; else zt_fail "backend saw '$seen'"; fi

zt_test "h2c filters: b1 sees /rewritten/abc and x-route, the client gets x-resp"
out=$(hcurl -D "$ZT_WORK/h2rw.hdr" "http://$VIP_H2/rewrite/abc")
if [ "$(body_field "$out" path)" = /rewritten/abc ] && [ "$(body_field "$out" x-route)" = rewrite ] &&
	grep -qi "^x-resp: 1" "$ZT_WORK/h2rw.hdr"; then zt_pass; else
	zt_fail "$out / $(cat "$ZT_WORK/h2rw.hdr")"
fi

zt_test "50 concurrent requests multiplexed on one h2c connection (Node's http2 client): each answered with its own path"
zt_expect_eq "$(zt_ns_exec "$a" timeout 30 node "$here/h2_echo.js" multi "$VIP_H2" 50)" "ok=50"

zt_test "response trailers pass through (x-trailer: done)"
hcurl -v -o /dev/null "http://$VIP_H2/trailers" 2>"$ZT_WORK/h2tr.err"
if grep -qi "x-trailer: done" "$ZT_WORK/h2tr.err"; then zt_pass; else zt_fail "$(tail -5 "$ZT_WORK/h2tr.err")"; fi

zt_test "large bodies both ways: 3 MiB up is counted by b1, 5 MB down arrives whole"
head -c 3145728 /dev/zero >"$ZT_WORK/up.bin"
up=$(body_field "$(hcurl --data-binary @"$ZT_WORK/up.bin" "http://$VIP_H2/upload")" body-bytes)
down=$(hcurl -o /dev/null -w '%{size_download}' "http://$VIP_H2/big/5000000")
zt_expect_eq "$up $((down >= 5000000))" "3145728 1"

zt_test "a response head past the caps (150 fields, the cap is 100) gets 502; 50 fields pass (positive control)"
got="$(hcurl -o /dev/null -w '%{http_code}' "http://$VIP_H2/bighead/150") $(hcurl -o /dev/null -w '%{http_code}' "http://$VIP_H2/bighead/50")"
zt_expect_eq "$got" "502 200"

zt_test "retry (attempts 2, codes [503]): b1 answers the first try 503, the client gets 200"
zt_expect_eq "$(hcurl -o /dev/null -w '%{http_code}' "http://$VIP_H2/flaky/k1")" 200
zt_test "positive control: with retry attempts 0 the first 503 reaches the client"
zt_expect_eq "$(hcurl -o /dev/null -w '%{http_code}' "http://$VIP_H2/noretry/flaky/k2")" 503

zt_test "route timeout 500ms: a backend answering after 3 s gets 504; one within it 200"
got="$(hcurl -o /dev/null -w '%{http_code}' "http://$VIP_H2/sleep/3000") $(hcurl -o /dev/null -w '%{http_code}' "http://$VIP_H2/sleep/10")"
zt_expect_eq "$got" "504 200"

# RequestMirror: b2's h2c server tells what it got for a path.
seen_of() { hcurl "http://$VIP_H2V2/_seen$1"; }
# PATH N: polls b2 (every 0.2 s, at most 10 s) until it got PATH N times;
# prints its last answer.
wait_seen() {
	local out
	for _ in $(seq 1 50); do
		out=$(seen_of "$1")
		[ "$(body_field "$out" count)" = "$2" ] && break
		sleep 0.2
	done
	echo "$out"
	[ "$(body_field "$out" count)" = "$2" ]
}

zt_test "RequestMirror over h2c: a 10 KB POST to /mirror answers from b1; b2 gets the copy as HTTP/2, whole, with the -shadow authority"
head -c 10240 /dev/zero >"$ZT_WORK/ten.bin"
out=$(hcurl --data-binary @"$ZT_WORK/ten.bin" "http://$VIP_H2/mirror/ten")
seen=$(wait_seen /mirror/ten 1)
got="$(body_field "$out" server) $(body_field "$out" body-bytes) / $(body_field "$seen" count) $(body_field "$seen" authority) $(body_field "$seen" body-bytes)"
zt_expect_eq "$got" "b1 10240 / 1 $VIP_H2-shadow 10240"

zt_test "... a body over 64 KiB is not mirrored (b1 gets it whole); a small one right after is"
head -c 70000 /dev/zero >"$ZT_WORK/big.bin"
big=$(body_field "$(hcurl --data-binary @"$ZT_WORK/big.bin" "http://$VIP_H2/mirror/big")" body-bytes)
hcurl -d small "http://$VIP_H2/mirror/small" >/dev/null
ctl=$(body_field "$(wait_seen /mirror/small 1)" body-bytes)
zt_expect_eq "$big $ctl $(body_field "$(seen_of /mirror/big)" count)" "70000 5 0"

zt_test "... a rule without a mirror sends nothing: /plain reaches b1 only (after a mirrored request arrived at b2)"
plain=$(server_of "http://$VIP_H2/plain/p1")
hcurl "http://$VIP_H2/mirror/after-plain" >/dev/null
wait_seen /mirror/after-plain 1 >/dev/null
zt_expect_eq "$plain $(body_field "$(seen_of /mirror/after-plain)" count) $(body_field "$(seen_of /plain/p1)" count)" "b1 1 0"

zt_test "gRPC (grpc-js both ends): Say goes to svc-g (b1)"
zt_expect_eq "$(gcall "$VIP_G:9090" Say hi)" "text=hi server=b1"

zt_test "GRPCRoute: Say with x-canary: yes goes to svc-gv2 (b2); Flaky with it stays on b1"
got="$(gcall "$VIP_G:9090" Say c1 x-canary=yes) / $(gcall "$VIP_G:9090" Say c2 x-canary=no)"
zt_expect_eq "$got" "text=c1 server=b2 / text=c2 server=b1"

zt_test "GRPCRoute RequestMirror: Say with x-mirror: yes answers from b1; svc-gv2 (b2) gets the call too, -shadow authority"
got=$(gcall "$VIP_G:9090" Say gm1 x-mirror=yes)
if [ "$got" = "text=gm1 server=b1" ] &&
	mesh_wait_grep "$ZT_WORK/grpc-b2.seen" "^Say text=gm1 authority=$VIP_G-shadow:9090\$" 10 >/dev/null; then zt_pass; else
	zt_fail "$got; b2 saw: $(cat "$ZT_WORK/grpc-b2.seen" 2>/dev/null)"
fi
zt_test "... a call without x-mirror is not mirrored (a mirrored one right after is)"
got=$(gcall "$VIP_G:9090" Say gm2)
gcall "$VIP_G:9090" Say gm3 x-mirror=yes >/dev/null
if [ "$got" = "text=gm2 server=b1" ] && mesh_wait_grep "$ZT_WORK/grpc-b2.seen" "^Say text=gm3 " 10 >/dev/null &&
	! grep -q "text=gm2 " "$ZT_WORK/grpc-b2.seen"; then zt_pass; else
	zt_fail "$got; b2 saw: $(cat "$ZT_WORK/grpc-b2.seen" 2>/dev/null)"
fi

zt_test "gRPC UNAVAILABLE on the first try is retried (Istio's default policy): the client gets the reply"
zt_expect_eq "$(gcall "$VIP_G:9090" Flaky f1)" "text=f1 server=b1"

zt_test "AuthorizationPolicy DENY on the waypoint's Gateway: a gRPC call with x-block gets PERMISSION_DENIED (7) 'RBAC: access denied'; an h2c request 403; without it, served"
got="$(gcall "$VIP_G:9090" Say blocked x-block=yes) / $(hcurl -o /dev/null -w '%{http_code}' -H 'x-block: yes' "http://$VIP_H2/blocked") / $(gcall "$VIP_G:9090" Say ok x-block=no)"
zt_expect_eq "$got" "code=7 details=RBAC: access denied / 403 / text=ok server=b1"

zt_test "JWT on gRPC (grpc-js metadata): an expired token UNAUTHENTICATED (16) 'Jwt is expired'; x-need-token without a token PERMISSION_DENIED (7), with a valid one served"
tok() { echo "authorization=Bearer $(cat "$ZT_WORK/tokens/$1.jwt")"; }
got="$(gcall "$VIP_G:9090" Say j1 "$(tok expired)") / $(gcall "$VIP_G:9090" Say j2 x-need-token=yes) / $(gcall "$VIP_G:9090" Say j3 x-need-token=yes "$(tok alice)")"
zt_expect_eq "$got" "code=16 details=Jwt is expired / code=7 details=RBAC: access denied / text=j3 server=b1"

zt_test "gRPC statuses pass through: Fail gives NOT_FOUND (5) with its details"
zt_expect_eq "$(gcall "$VIP_G:9090" Fail "no such thing")" "code=5 details=no such thing"

zt_test "gRPC server streaming: 2000 messages arrive in order"
zt_expect_eq "$(gcall "$VIP_G:9090" Count 2000)" "count=2000 last=1999"

zt_test "w's access line for the failed call: protocol=HTTP/2 status=200 grpc_status=5"
if mesh_wait_grep "$wlog" 'request complete.*path=/zt.test.Echo/Fail.*protocol=HTTP/2.*status=200.*grpc_status=5' 5 >/dev/null; then
	zt_pass
else zt_fail "$(grep 'zt.test.Echo/Fail' "$wlog" | tail -2)"; fi

grpc_count() {
	zt_ns_exec "$w" curl -s --max-time 5 http://127.0.0.1:15020/metrics |
		grep '^istio_requests_total{reporter="waypoint"' | grep "destination_service=\"svc-g.$H\"" |
		grep 'request_protocol="grpc"' | grep "grpc_response_status=\"$1\"" |
		grep 'response_code="200"' | awk '{s += $NF} END {print s + 0}'
}
zt_test "istio_requests_total counts gRPC calls by grpc_response_status (request_protocol grpc): 2 more NOT_FOUND after 2 calls"
before=$(grpc_count 5)
gcall "$VIP_G:9090" Fail x >/dev/null
gcall "$VIP_G:9090" Fail y >/dev/null
after=$(grpc_count 5)
zt_expect_eq "$((after - before))" 2

zt_test "a client sending garbage after the HTTP/2 preface loses only its own connection; w goes on serving"
out=$(zt_ns_exec "$a" timeout 20 python3 - "$VIP_H2" <<'PY'
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=10)
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x04\x09\x00\x00\x00\x00\x07garbage!" * 4)
data = b""
try:
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
except socket.timeout:
    print("timeout")
# A GOAWAY frame (type 7) from the waypoint, then the close.
i, goaway = 0, False
while i + 9 <= len(data):
    ln = int.from_bytes(data[i:i + 3], "big")
    if data[i + 3] == 7:
        goaway = True
    i += 9 + ln
print("goaway" if goaway else "no goaway: %r" % data[:64])
PY
)
code=$(hcurl -o /dev/null -w '%{http_code}' "http://$VIP_H2/after-garbage")
zt_expect_eq "$out $code" "goaway 200"

zt_test "a rapid-reset flood (20000 streams opened and cancelled) ends that client's session or is absorbed; w goes on serving"
out=$(zt_ns_exec "$a" timeout 60 node "$here/h2_echo.js" reset "$VIP_H2" 20000)
code=$(hcurl -o /dev/null -w '%{http_code}' "http://$VIP_H2/after-flood")
echo "  flood client saw: $out"
if [ "$code" = 200 ] && [ -n "$out" ]; then zt_pass; else zt_fail "flood: $out; then $code"; fi

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$(cat "$ZT_WORK/waypoint1.pid")/status"; }
# stall_check NAME VIP: a client that never reads a 200 MB response from
# VIP; passes if another request to VIP is served meanwhile and w's RSS
# grew by less than 32 MiB.
stall_check() {
	local rss0 prev cur code rss1
	rss0=$(rss_kb)
	zt_bg "$a" "$1" node "$here/h2_echo.js" stall "$2" /big/200000000
	mesh_wait_grep "$ZT_WORK/$1.log" stalled 10 >/dev/null
	# The backend writes while windows allow: wait until w's memory stops
	# growing (two samples 0.3 s apart within 256 kB), at most 10 s.
	prev=$(rss_kb)
	for _ in $(seq 1 30); do
		sleep 0.3
		cur=$(rss_kb)
		[ $((cur - prev)) -lt 256 ] && break
		prev=$cur
	done
	code=$(hcurl -o /dev/null -w '%{http_code}' "http://$2/while-stalled")
	rss1=$(rss_kb)
	echo "  waypoint rss: $rss0 -> $rss1 kB"
	if [ "$code" = 200 ] && [ $((rss1 - rss0)) -lt 32768 ]; then zt_pass; else
		zt_fail "status $code; rss $rss0 -> $rss1 kB"
	fi
}
zt_test "a client that never reads a 200 MB response holds bounded memory in w (< 32 MiB more), and others are served meanwhile"
stall_check stall "$VIP_H2"

zt_test "h2c -> HTTP/1.1: a client that never reads a 200 MB response from the HTTP/1.1 backend holds bounded memory in w too (< 32 MiB more)"
stall_check stall-h1 "$VIP_DECL"

mesh_finish
