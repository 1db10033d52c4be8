#!/usr/bin/env bash
# RequestAuthentication (JWT) at `ztunnel waypoint`, as users write it
# (pasted Kubernetes documents in the configuration file), with tokens
# minted by Node's crypto (tests/e2e/jwt_mint.js): valid RS256 and ES256
# tokens pass and their claims reach the backend as configured; expired,
# not yet valid, wrong issuer, wrong audience, bad signature, alg none, key
# confusion, garbage and oversized tokens get 401 with Envoy's reason and
# www-authenticate; no token passes authentication and is left to an
# AuthorizationPolicy (requestPrincipals, request.auth.claims); a CORS
# preflight is not authenticated; a service without a RequestAuthentication
# is untouched; JWKS rotation by a config edit applies to live traffic;
# HTTP/2 (h2c) requests get the same answers; jwksUri over HTTPS; TCP through
# the waypoint obeys its policies; an L4 policy at the destination node
# proxy works together with the waypoint's. Clients: curl. Needs root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

A=10.200.1.2 B1=10.200.2.2 W=10.200.2.4
VIP_WEB=10.96.0.40 VIP_OPEN=10.96.0.41 VIP_REMOTE=10.96.0.42 VIP_TCP=10.96.0.43
H=default.svc.cluster.local
ISS=https://issuer.test
TOK=$ZT_WORK/tokens

# authn [JWKS_FILE]: the RequestAuthentication and AuthorizationPolicy
# documents (keys inline from JWKS_FILE, default the first set).
authn() {
	local jwks
	jwks=$(cat "${1:-$TOK/jwks.json}")
	cat <<-Y
		---
		apiVersion: security.istio.io/v1
		kind: RequestAuthentication
		metadata: {name: web-jwt, namespace: default}
		spec:
		  targetRefs: [{kind: Service, group: "", name: svc-web}]
		  jwtRules:
		  - issuer: "$ISS"
		    audiences: [svc-web]
		    jwks: '$jwks'
		    outputPayloadToHeader: x-jwt-payload
		    outputClaimToHeaders:
		    - {header: x-jwt-sub, claim: sub}
		    - {header: x-jwt-tier, claim: realm.tier}
		---
		apiVersion: security.istio.io/v1
		kind: AuthorizationPolicy
		metadata: {name: web-authz, namespace: default}
		spec:
		  targetRefs: [{kind: Service, group: "", name: svc-web}]
		  action: DENY
		  rules:
		  - to: [{operation: {paths: ["/secure/*"]}}]
		    from: [{source: {notRequestPrincipals: ["*"]}}]
		  - to: [{operation: {paths: ["/admin/*"]}}]
		    when: [{key: "request.auth.claims[groups]", notValues: ["admin"]}]
		  - to: [{operation: {paths: ["/alice-only/*"]}}]
		    from: [{source: {notRequestPrincipals: ["$ISS/alice"]}}]
		---
		apiVersion: security.istio.io/v1
		kind: AuthorizationPolicy
		metadata:
		  name: would-deny-dry
		  namespace: default
		  annotations: {istio.io/dry-run: "true"}
		spec:
		  targetRefs: [{kind: Service, group: "", name: svc-web}]
		  action: DENY
		  rules: [{to: [{operation: {paths: ["/dry/*"]}}]}]
		---
		apiVersion: security.istio.io/v1
		kind: AuthorizationPolicy
		metadata: {name: tcp-deny-post, namespace: default}
		spec:
		  targetRefs: [{kind: Service, group: "", name: svc-tcp}]
		  action: DENY
		  rules: [{to: [{operation: {methods: [POST], ports: ["9000"]}}]}]
		---
		apiVersion: security.istio.io/v1
		kind: AuthorizationPolicy
		metadata: {name: tcp-deny-path, namespace: default}
		spec:
		  targetRefs: [{kind: Service, group: "", name: svc-tcp}]
		  action: DENY
		  rules: [{to: [{operation: {paths: [/x], ports: ["9002"]}}]}]
		---
		apiVersion: security.istio.io/v1
		kind: RequestAuthentication
		metadata: {name: remote-jwt, namespace: default}
		spec:
		  targetRefs: [{kind: Service, group: "", name: svc-remote}]
		  jwtRules:
		  - issuer: "$ISS"
		    jwksUri: "https://127.0.0.1:$JWKS_PORT/file/jwks.json"
		---
		apiVersion: security.istio.io/v1
		kind: RequestAuthentication
		metadata: {name: broken, namespace: default}
		spec:
		  targetRefs: [{kind: Service, group: "", name: svc-open}]
		  jwtRules:
		  - issuer: "$ISS"
		    jwks: '{"keys": "not a list"}'
	Y
}

config() {
	cat <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: b1, name: b1, namespace: default, serviceAccount: sa-b, workloadIps: ["$B1"], protocol: HBONE, node: node2,
		   services: {"default/svc-web.$H": {80: 8081}, "default/svc-open.$H": {80: 8081}, "default/svc-remote.$H": {80: 8081},
		              "default/svc-tcp.$H": {9000: 9000, 9001: 9000, 9002: 9000}}}
		- {uid: w, name: w, namespace: default, serviceAccount: waypoint, workloadIps: ["$W"], protocol: HBONE, node: node2}
		services:
		- {name: svc-web, namespace: default, hostname: svc-web.$H, vips: ["/$VIP_WEB"],
		   ports: {80: {targetPort: 8081, appProtocol: http}}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		- {name: svc-open, namespace: default, hostname: svc-open.$H, vips: ["/$VIP_OPEN"],
		   ports: {80: {targetPort: 8081, appProtocol: http}}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		- {name: svc-remote, namespace: default, hostname: svc-remote.$H, vips: ["/$VIP_REMOTE"],
		   ports: {80: {targetPort: 8081, appProtocol: http}}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		- {name: svc-tcp, namespace: default, hostname: svc-tcp.$H, vips: ["/$VIP_TCP"],
		   ports: {9000: {targetPort: 9000, appProtocol: tcp}, 9001: 9000, 9002: 9000},
		   waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		# L4, at the destination node proxy: only the waypoint may reach b1.
		policies:
		- name: only-waypoint
		  namespace: default
		  scope: Namespace
		  action: Allow
		  rules: [[[ {principals: [{Exact: cluster.local/ns/default/sa/waypoint}]} ]]]
	Y
	authn "$@"
}

zt_test "setup: client a, backend b1 (svc-web, svc-open), waypoint w with a RequestAuthentication; tokens minted by Node"
setup() {
	mkdir -p "$TOK" && node "$here/jwt_mint.js" "$TOK" "$ISS" || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) || return 1
	b1=$(zt_pod_add 2 1 b1) && w=$(zt_pod_add 2 3 w) || return 1
	mesh_ca || return 1
	# The jwksUri server (Node's https, a throwaway CA) on w's loopback; it
	# lives while its standard input is open.
	mkdir -p "$ZT_WORK/jwks/www" && cp "$TOK/jwks.json" "$ZT_WORK/jwks/www/jwks.json" || return 1
	zt_bg "$w" jwks sh -c "sleep 100000 | node '$here/../unit/jwt/jwks_server.js' '$ZT_WORK/jwks'"
	mesh_wait_grep "$ZT_WORK/jwks.log" '^[0-9]+ [0-9]+ [0-9]+$' 20 || return 1
	JWKS_PORT=$(cut -d' ' -f1 "$ZT_WORK/jwks.log")
	config >"$ZT_WORK/n1.yaml"
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$b1" b1 sa-b || return 1
	zt_bg "$b1" http-b1 python3 "$here/http_echo.py" b1 8081 && zt_wait_port "$b1" 127.0.0.1 8081 5 || return 1
	zt_echo_server "$b1" 9000 || return 1
	MESH_WAYPOINT_ENV="JWKS_ROOT_CA=$ZT_WORK/jwks/ca1.pem JWKS_REFRESH_INTERVAL=1s" \
		mesh_waypoint_start 1 "$w" w waypoint &&
		mesh_wait_grep "$ZT_WORK/waypoint1.log" "2 RequestAuthentication policies in force" 5
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi
wlog=$ZT_WORK/waypoint1.log

acurl() { zt_ns_exec "$a" timeout 20 curl -sS --max-time 15 "$@"; }
code() { acurl -o /dev/null -w '%{http_code}' "$@"; }
bearer() { echo "authorization: Bearer $(cat "$TOK/$1.jwt")"; }

zt_test "the broken RequestAuthentication is reported with file, line, field and reason, and left out"
if grep -qE $'\terror\tjwt\t.*n1.yaml:[0-9]+: RequestAuthentication default/broken: spec.jwtRules\\[0\\]: .*policy left out' "$wlog"; then
	zt_pass
else zt_fail "$(grep -E $'\tjwt\t' "$wlog" | head -3)"; fi

zt_test "no token: authentication passes, /hello is 200"
zt_expect_eq "$(code "http://$VIP_WEB/hello")" 200

zt_test "a valid RS256 token: 200; the backend gets the claim headers and the payload, not the token"
out=$(acurl -H "$(bearer alice)" "http://$VIP_WEB/hello")
sub=$(mesh_body_field "$out" h:x-jwt-sub) tier=$(mesh_body_field "$out" h:x-jwt-tier)
pl=$(mesh_body_field "$out" h:x-jwt-payload) auth=$(mesh_body_field "$out" h:authorization)
pl_sub=$(node -e 'console.log(JSON.parse(Buffer.from(process.argv[1], "base64url")).sub)' "$pl" 2>/dev/null)
zt_expect_eq "sub=$sub tier=$tier payload.sub=$pl_sub auth=[$auth]" "sub=alice tier=gold payload.sub=alice auth=[]"

zt_test "a valid ES256 token (another key of the JWKS): 200"
zt_expect_eq "$(code -H "$(bearer alice_es256)" "http://$VIP_WEB/hello")" 200

zt_test "a client's forged x-jwt-sub without a token never reaches the backend"
out=$(acurl -H "x-jwt-sub: mallory" -H "x-jwt-payload: forged" "http://$VIP_WEB/hello")
zt_expect_eq "[$(mesh_body_field "$out" h:x-jwt-sub)][$(mesh_body_field "$out" h:x-jwt-payload)] $(mesh_body_field "$out" server)" "[][] b1"

# check_401 NAME REASON: the token NAME gets 401 with REASON as the body.
check_401() {
	local out
	out=$(acurl -D "$ZT_WORK/h.$1" -H "$(bearer "$1")" -w ' %{http_code}' "http://$VIP_WEB/hello?q=1")
	zt_expect_eq "$out" "$2 401"
}
for t in "expired|Jwt is expired" "not_yet|Jwt not yet valid" "wrong_iss|Jwt issuer is not configured" \
	"wrong_aud|Audiences in Jwt are not allowed" "bad_sig|Jwt verification fails" \
	"alg_none|Jwt header [alg] is not supported" "hs256_confusion|Jwt header [alg] is not supported" \
	"rotated|Jwks doesn't have key to match kid or alg from Jwt"; do
	zt_test "token ${t%%|*}: 401 '${t#*|}'"
	check_401 "${t%%|*}" "${t#*|}"
done

zt_test "... the 401 carries www-authenticate: Bearer realm (the URL without its query), error=\"invalid_token\""
if grep -qi "^www-authenticate: Bearer realm=\"http://$VIP_WEB/hello\", error=\"invalid_token\"" "$ZT_WORK/h.expired"; then zt_pass; else
	zt_fail "$(cat "$ZT_WORK/h.expired")"
fi

zt_test "... and w's access line has status 401 and Envoy's details jwt_authn_access_denied{Jwt_is_expired}"
if mesh_wait_grep "$wlog" 'status=401.*jwt_authn_access_denied\{Jwt_is_expired\}' 5 >/dev/null; then zt_pass; else
	zt_fail "$(grep 'status=401' "$wlog" | head -2)"
fi

zt_test "garbage after Bearer and a 9 KB token (over the 8 KiB cap): 401, and w goes on serving (200 after)"
got="$(code -H 'authorization: Bearer abc.def' "http://$VIP_WEB/hello") $(code -H "$(bearer huge)" "http://$VIP_WEB/hello") $(code -H "$(bearer alice)" "http://$VIP_WEB/hello")"
zt_expect_eq "$got" "401 401 200"

zt_test "the token as access_token query parameter is read too: expired gets 401, valid 200"
got="$(code "http://$VIP_WEB/hello?access_token=$(cat "$TOK/expired.jwt")") $(code "http://$VIP_WEB/hello?access_token=$(cat "$TOK/alice.jwt")")"
zt_expect_eq "$got" "401 200"

zt_test "AuthorizationPolicy notRequestPrincipals [*] on /secure/*: no token 403, valid token 200"
got="$(code "http://$VIP_WEB/secure/x") $(code -H "$(bearer alice)" "http://$VIP_WEB/secure/x")"
zt_expect_eq "$got" "403 200"

zt_test "request.auth.claims[groups] must hold admin on /admin/*: alice 200, bob 403, no token 403"
got="$(code -H "$(bearer alice)" "http://$VIP_WEB/admin/x") $(code -H "$(bearer bob)" "http://$VIP_WEB/admin/x") $(code "http://$VIP_WEB/admin/x")"
zt_expect_eq "$got" "200 403 403"

zt_test "requestPrincipals iss/sub: /alice-only/ is 200 for alice, 403 for bob"
got="$(code -H "$(bearer alice)" "http://$VIP_WEB/alice-only/x") $(code -H "$(bearer bob)" "http://$VIP_WEB/alice-only/x")"
zt_expect_eq "$got" "200 403"

zt_test "a CORS preflight with an expired token is not authenticated (reaches b1); without Origin it is (401)"
got="$(code -X OPTIONS -H 'origin: https://app.test' -H 'access-control-request-method: GET' -H "$(bearer expired)" "http://$VIP_WEB/hello") $(code -X OPTIONS -H "$(bearer expired)" "http://$VIP_WEB/hello")"
case "$got" in
"401 "*) zt_fail "preflight was authenticated: $got" ;;
*" 401") zt_pass ;;
*) zt_fail "got $got" ;;
esac

zt_test "svc-open has no RequestAuthentication in force: an expired token passes (200)"
zt_expect_eq "$(code -H "$(bearer expired)" "http://$VIP_OPEN/hello")" 200

# The backend speaks HTTP/1.1 only and the waypoint does not translate
# (yet), so a forwarded h2c request shows in w's access line, not as 200.
zt_test "HTTP/2 (h2c): expired 401 with the reason; a valid token passes authentication and /secure/'s policy (forwarded)"
out1=$(acurl --http2-prior-knowledge -H "$(bearer expired)" -w ' %{http_code} %{http_version}' "http://$VIP_WEB/hello")
acurl --http2-prior-knowledge -o /dev/null -H "$(bearer alice)" "http://$VIP_WEB/secure/h2ok"
mesh_wait_grep "$wlog" 'path=/secure/h2ok.*protocol=HTTP/2' 5 >/dev/null
line=$(grep 'path=/secure/h2ok' "$wlog" | tail -1)
case "$line" in
*upstream=$B1:8081*) fwd=forwarded ;;
*) fwd="not forwarded: $line" ;;
esac
zt_expect_eq "$out1 $fwd" "Jwt is expired 401 2 forwarded"

zt_test "a dry-run DENY matching /dry/x is not enforced (200); the access line says shadow_engine_result=denied, /hello's allowed"
got="$(code "http://$VIP_WEB/dry/x") $(code "http://$VIP_WEB/hello?after-dry")"
if [ "$got" = "200 200" ] && mesh_wait_grep "$wlog" 'path=/dry/x .*status=200.*shadow_engine_result=denied' 5 >/dev/null &&
	mesh_wait_grep "$wlog" 'path=/hello\?after-dry .*shadow_engine_result=allowed' 5 >/dev/null; then zt_pass; else
	zt_fail "got $got; $(grep -E 'path=/(dry/x|hello\?after-dry)' "$wlog" | tail -2)"
fi

zt_test "w's metrics count JWT, RBAC and dry-run verdicts (ztunnel_waypoint_*), and promtool accepts them"
zt_ns_exec "$w" curl -s --max-time 5 http://127.0.0.1:15020/metrics >"$ZT_WORK/wm.txt"
m() { sed -n "s/^$1{result=\"$2\"} //p" "$ZT_WORK/wm.txt"; }
ja=$(m ztunnel_waypoint_jwt_authn_total allowed) jd=$(m ztunnel_waypoint_jwt_authn_total denied)
rd=$(m ztunnel_waypoint_rbac_total denied) sd=$(m ztunnel_waypoint_rbac_shadow_total denied)
# Istio's own names fail promtool's lints (see test_waypoint_l7.sh); ours must not.
lint=$(promtool check metrics <"$ZT_WORK/wm.txt" 2>&1 | grep '^ztunnel_waypoint_')
if [ "${ja:-0}" -ge 10 ] && [ "${jd:-0}" -ge 10 ] && [ "${rd:-0}" -ge 4 ] && [ "${sd:-0}" -ge 1 ] && [ -z "$lint" ]; then
	zt_pass
else zt_fail "jwt allowed=$ja denied=$jd rbac denied=$rd shadow denied=$sd; $lint"; fi

zt_test "an L4 policy at the destination node proxy (only the waypoint's identity) works with the waypoint's: via the VIP 200, straight to b1's address refused (and logged by node 2's proxy)"
got="$(code "http://$VIP_WEB/hello") $(code "http://$B1:8081/hello")"
if [ "$got" = "200 000" ] && mesh_wait_grep "$(mesh_log 2 proxy)" 'policy rejection: allow policies exist, but none allowed.*sa/sa-a' 5 >/dev/null; then zt_pass; else
	zt_fail "got $got; $(grep -E 'authz|policy' "$(mesh_log 2 proxy)" | tail -2)"
fi

# ---- jwksUri ----
# until_code CODE CURL-ARGS...: repeats the request (every 0.2 s, 50 times)
# until it answers CODE; prints the last code.
until_code() {
	local want=$1 got
	shift
	for _ in $(seq 1 50); do
		got=$(code "$@")
		[ "$got" = "$want" ] && break
		sleep 0.2
	done
	echo "$got"
}

zt_test "jwksUri (HTTPS, verified with JWKS_ROOT_CA): the fetched key set takes alice's token (200), expired still 401"
got="$(until_code 200 -H "$(bearer alice)" "http://$VIP_REMOTE/hello") $(code -H "$(bearer expired)" "http://$VIP_REMOTE/hello")"
zt_expect_eq "$got" "200 401"

zt_test "jwksUri rotation: the server's new key set is fetched again (refresh 1s): the rotated token 200, alice's 401"
cp "$TOK/jwks_rotated.json" "$ZT_WORK/jwks/www/jwks.json.new" && mv "$ZT_WORK/jwks/www/jwks.json.new" "$ZT_WORK/jwks/www/jwks.json"
got="$(until_code 200 -H "$(bearer rotated)" "http://$VIP_REMOTE/hello") $(code -H "$(bearer alice)" "http://$VIP_REMOTE/hello")"
zt_expect_eq "$got" "200 401"

zt_test "libcurl is in the waypoint that fetches a jwksUri, not in the node proxies (loaded on demand, not linked)"
wpid=$(mesh_pid 1 waypoint) ppid=$(mesh_pid 2 proxy)
# The pid files name the process group's leader: the ztunnel itself.
got="waypoint:$(grep -c libcurl "/proc/$wpid/maps" 2>/dev/null) proxy:$(grep -c libcurl "/proc/$ppid/maps" 2>/dev/null)"
case "$got" in "waypoint:0 "* | "waypoint: "* | *"proxy: "*) zt_fail "$got" ;; *"proxy:0") zt_pass ;; *) zt_fail "$got" ;; esac

zt_test "a failing jwksUri (500, then a document that is not a JWKS) keeps the last good key set: the rotated token stays 200"
rm -f "$ZT_WORK/jwks/www/jwks.json"
mesh_wait_grep "$wlog" $'\terror\tjwt\t.*127.0.0.1.*500' 10 >/dev/null
echo '{"keys": "nope"}' >"$ZT_WORK/jwks/www/jwks.json"
mesh_wait_grep "$wlog" 'jwks.json: .*the last good key set stays' 10 >/dev/null
got="$(code -H "$(bearer rotated)" "http://$VIP_REMOTE/hello") $(grep -c 'the last good key set stays' "$wlog")"
case "$got" in "200 0") zt_fail "no refused document logged" ;; "200 "*) zt_pass ;; *) zt_fail "got $got" ;; esac

# ---- TCP through the waypoint ----
zt_test "TCP via the waypoint obeys its policies (HTTP-only fields dropped from DENY rules): 9000 (declared tcp) and 9002 (sniffed) are refused, 9001 (sniffed) echoes"
got="[$(zt_send "$a" "$VIP_TCP" 9000 ping-9000)] [$(zt_send "$a" "$VIP_TCP" 9001 ping-9001)] [$(zt_send "$a" "$VIP_TCP" 9002 ping-9002)]"
zt_expect_eq "$got" "[] [ping-9001] []"
zt_test "... w logged why: the two policies' details"
if mesh_wait_grep "$wlog" 'rbac_access_denied_matched_policy\[ns\[default\]-policy\[tcp-deny-post\]-rule\[0\]\]' 5 >/dev/null &&
	mesh_wait_grep "$wlog" 'rbac_access_denied_matched_policy\[ns\[default\]-policy\[tcp-deny-path\]-rule\[0\]\]' 5 >/dev/null; then
	zt_pass
else zt_fail "$(grep rbac_access_denied "$wlog" | tail -3)"; fi

zt_test "JWKS rotation by a config edit: the new key's token becomes valid, the old one 401"
config "$TOK/jwks_rotated.json" >"$ZT_WORK/n1.yaml.new" && mv "$ZT_WORK/n1.yaml.new" "$ZT_WORK/n1.yaml"
ok=0
for _ in $(seq 1 50); do
	[ "$(code -H "$(bearer rotated)" "http://$VIP_WEB/hello")" = 200 ] && ok=1 && break
	sleep 0.2
done
zt_expect_eq "$ok $(code -H "$(bearer alice)" "http://$VIP_WEB/hello")" "1 401"

zt_test "/config_dump of w lists the AuthorizationPolicies and RequestAuthentications in force as written (action, dry run, paths, claims, issuer, jwksUri, output headers)"
zt_ns_exec "$w" curl -sS --max-time 5 http://127.0.0.1:15000/config_dump >"$ZT_WORK/config_dump.json"
got=$(jq -r '
	(.authorizationPolicies[] | select(.name == "web-authz") |
		"\(.action) \(.targetRefs[0].kind)/\(.targetRefs[0].name) \(.rules[0].to[0].operation.paths[0]) \(.rules[1].when[0].key)=!\(.rules[1].when[0].notValues[0])"),
	(.authorizationPolicies[] | select(.name == "would-deny-dry") | "dryRun=\(.dryRun)"),
	(.requestAuthentications[] | select(.name == "web-jwt") | .jwtRules[0] |
		"\(.audiences[0]) \(.outputPayloadToHeader) \(.outputClaimToHeaders[1].claim)"),
	(.requestAuthentications[] | select(.name == "remote-jwt") | .jwtRules[0].jwksUri | test("^https://127.0.0.1:[0-9]+/file/jwks.json$"))' \
	"$ZT_WORK/config_dump.json" 2>&1 | tr '\n' '|')
zt_expect_eq "$got" "DENY Service/svc-web /secure/* request.auth.claims[groups]=!admin|dryRun=true|svc-web x-jwt-payload realm.tier|true|"

mesh_finish
