#!/usr/bin/env bash
# HTTPRoute through `ztunnel waypoint`, as users write them (pasted
# Kubernetes documents in the configuration file): path, header and
# precedence routing, a 90/10 split over 1000 requests, a redirect, a
# rewrite with request and response header filters, a retry against a
# backend that fails the first attempt, a route timeout, 404 when routes
# exist and none matches, and a route edit applied to live traffic.
# Clients are curl and Python's http.client, backends Python's http.server.
# Needs root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a (client); node 2: b1 (v1), b2 (v2), w (the waypoint)
A=10.200.1.2 B1=10.200.2.2 B2=10.200.2.3 W=10.200.2.4
VIP_WEB=10.96.0.40 VIP_V2=10.96.0.41 VIP_BOTH=10.96.0.42
H=default.svc.cluster.local

# routes [EXTRA_RULE]: the HTTPRoute documents, the /v2 rule first unless
# NO_V2=1.
routes() {
	cat <<-Y
		---
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata: {name: web, namespace: default}
		spec:
		  parentRefs: [{group: "", kind: Service, name: svc-web, port: 80}]
		  rules:
	Y
	[ "${NO_V2:-0}" = 1 ] || cat <<-Y
		  - matches: [{path: {type: PathPrefix, value: /v2}}]
		    backendRefs: [{name: svc-v2, port: 80}]
	Y
	cat <<-Y
		  - matches: [{path: {type: PathPrefix, value: /}, headers: [{name: x-canary, value: "yes"}]}]
		    backendRefs: [{name: svc-v2, port: 80}]
		  - matches: [{path: {type: Exact, value: /old}}]
		    filters:
		    - type: RequestRedirect
		      requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}, statusCode: 301}
		  - matches: [{path: {type: PathPrefix, value: /rewrite}}]
		    filters:
		    - {type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /rewritten}}}
		    - type: RequestHeaderModifier
		      requestHeaderModifier: {set: [{name: x-route, value: rewrite}], remove: [x-drop]}
		    - type: ResponseHeaderModifier
		      responseHeaderModifier: {add: [{name: x-resp, value: "1"}]}
		    backendRefs: [{name: svc-web, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /split}}]
		    backendRefs: [{name: svc-web, port: 80, weight: 90}, {name: svc-v2, port: 80, weight: 10}]
		  - matches: [{path: {type: PathPrefix, value: /flaky}}]
		    retry: {attempts: 2, codes: [503]}
		    backendRefs: [{name: svc-web, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /noretry}}]
		    retry: {attempts: 0}
		    backendRefs: [{name: svc-web, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /sleep}}]
		    timeouts: {request: 500ms}
		    backendRefs: [{name: svc-web, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /slow-first}}]
		    timeouts: {backendRequest: 500ms}
		    retry: {attempts: 1}
		    backendRefs: [{name: svc-web, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /}}]
		    backendRefs: [{name: svc-web, port: 80}]
		---
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata: {name: v2-only, namespace: default}
		spec:
		  parentRefs: [{kind: Service, name: svc-v2}]
		  rules:
		  - matches: [{path: {type: Exact, value: /only}}]
		    backendRefs: [{name: svc-v2, port: 80}]
	Y
	policies
}

# policies: AuthorizationPolicy documents as users write them (NO_DENY=1
# leaves the DENY one out).
policies() {
	[ "${NO_DENY:-0}" = 1 ] || cat <<-Y
		---
		apiVersion: security.istio.io/v1
		kind: AuthorizationPolicy
		metadata: {name: no-admin, namespace: default}
		spec:
		  targetRefs: [{kind: Service, group: "", name: svc-web}]
		  action: DENY
		  rules:
		  - to: [{operation: {paths: ["/admin*"]}}]
		  - when: [{key: "request.headers[x-block]", values: ["yes"]}]
	Y
	cat <<-Y
		---
		apiVersion: security.istio.io/v1
		kind: AuthorizationPolicy
		metadata: {name: v2-readers, namespace: default}
		spec:
		  targetRefs: [{kind: Service, group: "", name: svc-v2}]
		  action: ALLOW
		  rules:
		  - from: [{source: {principals: ["cluster.local/ns/default/sa/sa-a"]}}]
		    to: [{operation: {methods: ["GET", "HEAD"]}}]
	Y
}

# config: the mesh (our schema) then the routes, in one file.
config() {
	cat <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: b1, name: b1, namespace: default, serviceAccount: sa-b, workloadIps: ["$B1"], protocol: HBONE, node: node2,
		   services: {"default/svc-web.$H": {80: 8081}, "default/svc-both.$H": {80: 8081}}}
		- {uid: b2, name: b2, namespace: default, serviceAccount: sa-b, workloadIps: ["$B2"], protocol: HBONE, node: node2,
		   services: {"default/svc-v2.$H": {80: 8081}, "default/svc-both.$H": {80: 8081}}}
		- {uid: w, name: w, namespace: default, serviceAccount: waypoint, workloadIps: ["$W"], protocol: HBONE, node: node2}
		services:
		- {name: svc-web, namespace: default, hostname: svc-web.$H, vips: ["/$VIP_WEB"],
		   ports: {80: {targetPort: 8081, appProtocol: http}}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		- {name: svc-v2, namespace: default, hostname: svc-v2.$H, vips: ["/$VIP_V2"],
		   ports: {80: {targetPort: 8081, appProtocol: http}}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		- {name: svc-both, namespace: default, hostname: svc-both.$H, vips: ["/$VIP_BOTH"],
		   ports: {80: {targetPort: 8081, appProtocol: http}}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
	Y
	routes
}

zt_test "setup: 2 nodes, client a, backends b1 (svc-web) and b2 (svc-v2), waypoint w with routes"
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) || return 1
	b1=$(zt_pod_add 2 1 b1) && b2=$(zt_pod_add 2 2 b2) && w=$(zt_pod_add 2 3 w) || return 1
	mesh_ca || return 1
	config >"$ZT_WORK/n1.yaml"
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$b1" b1 sa-b && mesh_enroll 2 "$b2" b2 sa-b || return 1
	zt_bg "$b1" http-b1 python3 "$here/http_echo.py" b1 8081 && zt_wait_port "$b1" 127.0.0.1 8081 5 || return 1
	zt_bg "$b2" http-b2 python3 "$here/http_echo.py" b2 8081 && zt_wait_port "$b2" 127.0.0.1 8081 5 || return 1
	mesh_waypoint_start 1 "$w" w waypoint && mesh_wait_grep "$ZT_WORK/waypoint1.log" "2 route\(s\) in force" 5
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi
wlog=$ZT_WORK/waypoint1.log

body_field() { sed -n "s/^$2=//p" <<<"$1" | head -1; }
acurl() { zt_ns_exec "$a" timeout 20 curl -sS --max-time 15 "$@"; }
server_of() { body_field "$(acurl "$@")" server; }

zt_test "the pasted AuthorizationPolicies load: 2 in force, none left out"
if mesh_wait_grep "$wlog" "2 L7 authorization policies in force \(0 left out\)" 5 >/dev/null; then zt_pass; else
	zt_fail "$(grep -E $'\tauthz\t' "$wlog" | head -3)"
fi

zt_test "no route errors or warnings for the pasted routes"
if grep -qE $'\t(warn|error)\troutes\t' "$wlog" || ! grep -q "(0 left out, 0 warning(s))" "$wlog"; then
	zt_fail "$(grep -E $'\troutes\t' "$wlog" | head -3)"
else zt_pass; fi

zt_test "the catch-all rule: /hello goes to svc-web (b1)"
zt_expect_eq "$(server_of "http://$VIP_WEB/hello")" b1

zt_test "PathPrefix /v2 goes to svc-v2 (b2); /v2x does not (segment prefix)"
got="$(server_of "http://$VIP_WEB/v2/x") $(server_of "http://$VIP_WEB/v2x")"
zt_expect_eq "$got" "b2 b1"

zt_test "header match x-canary: yes goes to b2, another value to b1"
got="$(server_of -H "x-canary: yes" "http://$VIP_WEB/hello") $(server_of -H "x-canary: no" "http://$VIP_WEB/hello")"
zt_expect_eq "$got" "b2 b1"

zt_test "Exact /old is redirected with 301 to /new (nothing reaches a backend)"
out=$(acurl -o /dev/null -w '%{http_code} %{redirect_url}' "http://$VIP_WEB/old")
zt_expect_eq "$out" "301 http://$VIP_WEB/new"

zt_test "URLRewrite ReplacePrefixMatch and header filters: b1 sees /rewritten/abc, x-route set, x-drop gone; the client gets x-resp"
out=$(acurl -D "$ZT_WORK/rw.hdr" -H "x-drop: 1" "http://$VIP_WEB/rewrite/abc")
if [ "$(body_field "$out" path)" = /rewritten/abc ] && [ "$(body_field "$out" h:x-route)" = rewrite ] &&
	[ -z "$(body_field "$out" h:x-drop)" ] && grep -qi "^x-resp: 1" "$ZT_WORK/rw.hdr"; then zt_pass; else
	zt_fail "$out / $(cat "$ZT_WORK/rw.hdr")"
fi

zt_test "90/10 split over 1000 requests on kept-alive connections: b2 gets 10% (55..150 of 1000)"
counts=$(zt_ns_exec "$a" timeout 120 python3 - "$VIP_WEB" <<'PY'
import http.client, sys
c = {}
conn = http.client.HTTPConnection(sys.argv[1], 80, timeout=10)
for i in range(1000):
    conn.request("GET", "/split/%d" % i)
    r = conn.getresponse()
    body = r.read().decode()
    srv = [l.split("=", 1)[1] for l in body.splitlines() if l.startswith("server=")]
    k = srv[0] if srv else "status%d" % r.status
    c[k] = c.get(k, 0) + 1
print(" ".join("%s=%d" % kv for kv in sorted(c.items())))
PY
)
n2=$(sed -n 's/.*b2=\([0-9]*\).*/\1/p' <<<"$counts")
n1=$(sed -n 's/.*b1=\([0-9]*\).*/\1/p' <<<"$counts")
if [ -n "$n2" ] && [ -n "$n1" ] && [ $((n1 + n2)) = 1000 ] && [ "$n2" -ge 55 ] && [ "$n2" -le 150 ]; then zt_pass; else
	zt_fail "counts: $counts"
fi

mw=$(wc -l <"$wlog")
zt_test "retry (attempts 2, codes [503]): b1 fails the first attempt with 503, the client gets 200"
code=$(acurl -o /dev/null -w '%{http_code}' "http://$VIP_WEB/flaky/k1")
zt_expect_eq "$code" 200
zt_test "... b1 was asked twice; w logged one request, 200, route default/web"
asked=$(grep -c "GET /flaky/k1 " "$ZT_WORK/http-b1.log")
line=$(mesh_wait_grep "$wlog" 'request complete.*path=/flaky/k1' 5 >/dev/null; tail -n +"$((mw + 1))" "$wlog" | grep "path=/flaky/k1" | head -1)
if [ "$asked" = 2 ] && grep -q "status=200" <<<"$line" && grep -q "route=default/web" <<<"$line"; then zt_pass; else
	zt_fail "asked $asked times; line: $line"
fi

zt_test "a retried HEAD (503 first) is answered 200, and the connection then serves a GET (the new try's parser knew it was HEAD)"
out=$(zt_ns_exec "$a" timeout 20 python3 - "$VIP_WEB" <<'PY'
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=8)
c.request("HEAD", "/flaky/head1")
r1 = c.getresponse(); r1.read()
c.request("GET", "/after-head")
r2 = c.getresponse(); body = r2.read().decode()
print(r1.status, r2.status, [l for l in body.splitlines() if l.startswith("path=")][0])
PY
)
zt_expect_eq "$out" "200 200 path=/after-head"

zt_test "positive control: with retry attempts 0 the first 503 reaches the client"
zt_expect_eq "$(acurl -o /dev/null -w '%{http_code}' "http://$VIP_WEB/noretry/flaky/k2")" 503

zt_test "route timeout 500ms: a backend that answers after 3 s gets 504"
zt_expect_eq "$(acurl -o /dev/null -w '%{http_code}' "http://$VIP_WEB/sleep/3000")" 504
zt_test "... and one within the timeout gets 200"
zt_expect_eq "$(acurl -o /dev/null -w '%{http_code}' "http://$VIP_WEB/sleep/10")" 200

zt_test "per-try timeout (backendRequest 500ms with a retry): a first try that takes 3 s is retried, the client gets 200"
code=$(acurl -o /dev/null -w '%{http_code} %{time_total}' "http://$VIP_WEB/slow-first/3000/x")
# The slow first try is logged by the server when it finally answers.
for _ in $(seq 1 100); do
	[ "$(grep -c "GET /slow-first/3000/x " "$ZT_WORK/http-b1.log")" -ge 2 ] && break
	sleep 0.1
done
asked=$(grep -c "GET /slow-first/3000/x " "$ZT_WORK/http-b1.log")
zt_expect_eq "${code%% *} asked=$asked" "200 asked=2"

zt_test "svc-v2 has routes and none matches /other: 404; /only matches: 200"
got="$(acurl -o /dev/null -w '%{http_code}' "http://$VIP_V2/other") $(acurl -o /dev/null -w '%{http_code}' "http://$VIP_V2/only")"
zt_expect_eq "$got" "404 200"

zt_test "20 pipelined requests to a service of two endpoints (no route): 20 answers in order, from both"
out=$(zt_ns_exec "$a" timeout 30 python3 - "$VIP_BOTH" <<'PY'
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=20)
reqs = b"".join(b"GET /p/%d HTTP/1.1\r\nHost: svc-both\r\n%s\r\n" % (i, b"Connection: close\r\n" if i == 19 else b"")
                for i in range(20))
s.sendall(reqs)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
text = data.decode(errors="replace")
paths = [l[5:] for l in text.splitlines() if l.startswith("path=")]
servers = sorted(set(l[7:] for l in text.splitlines() if l.startswith("server=")))
print(text.count("HTTP/1.1 200 OK"), "in-order" if paths == ["/p/%d" % i for i in range(20)] else paths, ",".join(servers))
PY
)
zt_expect_eq "$out" "20 in-order b1,b2"

zt_test "AuthorizationPolicy DENY (paths /admin*) on svc-web: /admin/x gets 403 'RBAC: access denied'; /adminx too; /hello 200"
out=$(acurl -w ' %{http_code}' "http://$VIP_WEB/admin/x")
got="$out $(acurl -o /dev/null -w '%{http_code}' "http://$VIP_WEB/adminx") $(acurl -o /dev/null -w '%{http_code}' "http://$VIP_WEB/hello")"
zt_expect_eq "$got" "RBAC: access denied 403 403 200"
zt_test "... w's access line names the policy (Envoy's response_code_details)"
if mesh_wait_grep "$wlog" 'path=/admin/x.*status=403.*rbac_access_denied_matched_policy\[ns\[default\]-policy\[no-admin\]-rule\[0\]\]' 5 >/dev/null; then
	zt_pass
else zt_fail "$(grep 'path=/admin/x' "$wlog" | tail -1)"; fi
zt_test "DENY by a when condition (request.headers[x-block]): 403 with the header, 200 without"
got="$(acurl -o /dev/null -w '%{http_code}' -H 'x-block: yes' "http://$VIP_WEB/hello") $(acurl -o /dev/null -w '%{http_code}' -H 'x-block: no' "http://$VIP_WEB/hello")"
zt_expect_eq "$got" "403 200"
zt_test "ALLOW on svc-v2 (a's principal, GET/HEAD): GET /only 200, POST /only 403 (no ALLOW matched: [none])"
got="$(acurl -o /dev/null -w '%{http_code}' "http://$VIP_V2/only") $(acurl -o /dev/null -w '%{http_code}' -X POST -d x "http://$VIP_V2/only")"
if [ "$got" = "200 403" ] &&
	mesh_wait_grep "$wlog" 'method=POST path=/only.*status=403.*rbac_access_denied_matched_policy\[none\]' 5 >/dev/null; then zt_pass; else
	zt_fail "got $got"
fi

zt_test "a policy edit applies to live traffic: without the DENY policy, /admin/x is served"
NO_DENY=1 config >"$ZT_WORK/n1.yaml.new" && mv "$ZT_WORK/n1.yaml.new" "$ZT_WORK/n1.yaml"
ok=0
for _ in $(seq 1 50); do
	[ "$(acurl -o /dev/null -w '%{http_code}' "http://$VIP_WEB/admin/x")" = 200 ] && ok=1 && break
	sleep 0.2
done
zt_expect_eq "$ok" 1

zt_test "a route edit applies to live traffic: without the /v2 rule, /v2/x goes to b1"
NO_DENY=1 NO_V2=1 config >"$ZT_WORK/n1.yaml.new" && mv "$ZT_WORK/n1.yaml.new" "$ZT_WORK/n1.yaml"
ok=0
for _ in $(seq 1 50); do
	[ "$(server_of "http://$VIP_WEB/v2/x")" = b1 ] && ok=1 && break
	sleep 0.2
done
zt_expect_eq "$ok" 1

mesh_finish
