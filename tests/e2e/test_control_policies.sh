#!/usr/bin/env bash
# Waypoint AuthorizationPolicies, RequestAuthentications and RateLimits
# served by `ztunnel control` over delta xDS
# (type.googleapis.com/ztunnel.policy.v1.AuthorizationPolicy,
# ...RequestAuthentication and ...RateLimit). The control plane's watched
# directory holds the mesh in our schema, a pasted waypoint Gateway, an
# istio.io/use-waypoint label, a DENY and an ALLOW policy, a
# RequestAuthentication with an inline JWKS (keys and tokens minted by
# Node's crypto, jwt_mint.js) and a RateLimit on a second service;
# `ztunnel waypoint` runs with XDS_ADDRESS only (no local file). Checked
# with curl and Python's http.server as the app: a request the DENY matches
# gets 403, one the ALLOW matches 200, others 403; an expired token 401, a
# valid one 200; editing the policy file changes live traffic; a bad policy
# in a second file is reported by the control plane with file, line, object
# and field while that file's good policy and the others are served;
# deleting files removes their policies; node proxies never ask for them.
# The RateLimit: 429 local_rate_limited with x-ratelimit-* fields once its
# bucket is empty, counted in the waypoint's metrics and /config_dump; a
# push that leaves it unchanged keeps its bucket, an edit raising it applies
# at once (counters kept, as a file reload does), deleting it lifts it; a
# bad RateLimit is reported by control with file, line, object and field
# while the good one beside it is served.
# Needs root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a (client); node 2: b1 (the app), w (the waypoint); node 3: the
# control plane.
A=10.200.1.2 B1=10.200.2.2 W=10.200.2.4
VIP_WEB=10.96.0.60 VIP_RL=10.96.0.61
H=default.svc.cluster.local
ISS=https://issuer.test
TOK=$ZT_WORK/tokens
CFG=$ZT_WORK/config

# write_cfg FILE CONTENT: replace a config file the way tools do (rename).
write_cfg() {
	printf '%s\n' "$2" >"$CFG/.$1.tmp" && mv "$CFG/.$1.tmp" "$CFG/$1"
}
clog() { cat "$(mesh_log 3 control)"; }

# authz DENIED_PREFIX: a DENY of paths under it and an ALLOW of GET and DELETE, both
# on svc-web, as users write them.
authz() {
	cat <<-Y
		apiVersion: security.istio.io/v1
		kind: AuthorizationPolicy
		metadata: {name: deny-path, namespace: default}
		spec:
		  targetRefs: [{kind: Service, group: "", name: svc-web}]
		  action: DENY
		  rules: [{to: [{operation: {paths: ["$1/*"]}}]}]
		---
		apiVersion: security.istio.io/v1
		kind: AuthorizationPolicy
		metadata: {name: allow-get-delete, namespace: default}
		spec:
		  targetRefs: [{kind: Service, group: "", name: svc-web}]
		  action: ALLOW
		  rules: [{to: [{operation: {methods: [GET, DELETE]}}]}]
	Y
}

authn() {
	cat <<-Y
		apiVersion: security.istio.io/v1
		kind: RequestAuthentication
		metadata: {name: web-jwt, namespace: default}
		spec:
		  targetRefs: [{kind: Service, group: "", name: svc-web}]
		  jwtRules:
		  - issuer: "$ISS"
		    audiences: [svc-web]
		    jwks: '$(cat "$TOK/jwks.json")'
	Y
}

# ratelimit REQUESTS: a RateLimit of REQUESTS an hour on svc-rl.
ratelimit() {
	cat <<-Y
		apiVersion: ratelimit.ztunnel-c.io/v1alpha1
		kind: RateLimit
		metadata: {name: rl, namespace: default}
		spec:
		  targetRefs: [{kind: Service, name: svc-rl}]
		  limit: {requests: $1, unit: hour}
	Y
}

zt_test "setup: control plane with a Gateway, a use-waypoint label, two AuthorizationPolicies, a RequestAuthentication and a RateLimit; a waypoint fed by it"
setup() {
	zt_node_add 1 && zt_node_add 2 && zt_node_add 3 || return 1
	a=$(zt_pod_add 1 1 a) || return 1
	b1=$(zt_pod_add 2 1 b1) && w=$(zt_pod_add 2 3 w) || return 1
	mesh_ca || return 1
	mkdir -p "$CFG" "$TOK" && node "$here/jwt_mint.js" "$TOK" "$ISS" || return 1
	write_cfg mesh.yaml "workloads:
- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: [\"$A\"], protocol: HBONE, node: node1}
- {uid: b1, name: b1, namespace: default, serviceAccount: sa-b, workloadIps: [\"$B1\"], protocol: HBONE, node: node2,
   services: {\"default/svc-web.$H\": {80: 8081}, \"default/svc-rl.$H\": {80: 8081}}}
- {uid: w, name: w, namespace: default, serviceAccount: waypoint, workloadIps: [\"$W\"], protocol: HBONE, node: node2,
   services: {\"default/wp.$H\": {15008: 15008}}}
services:
- {name: wp, namespace: default, hostname: wp.$H, ports: {15008: 15008}}
- {name: svc-web, namespace: default, hostname: svc-web.$H, vips: [\"/$VIP_WEB\"],
   ports: {80: {targetPort: 8081, appProtocol: http}}, labels: {istio.io/use-waypoint: wp}}
- {name: svc-rl, namespace: default, hostname: svc-rl.$H, vips: [\"/$VIP_RL\"],
   ports: {80: {targetPort: 8081, appProtocol: http}}, labels: {istio.io/use-waypoint: wp}}"
	write_cfg gateway.yaml "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: wp
  namespace: default
  labels: {istio.io/waypoint-for: service}
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - {name: mesh, port: 15008, protocol: HBONE}"
	write_cfg authz.yaml "$(authz /admin)"
	write_cfg authn.yaml "$(authn)"
	write_cfg ratelimit.yaml "$(ratelimit 3)"
	mesh_control_start "$CFG" && mesh_xds_node_start 1 && mesh_xds_node_start 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$b1" b1 sa-b || return 1
	zt_bg "$b1" http-b1 python3 "$here/http_echo.py" b1 8081 && zt_wait_port "$b1" 127.0.0.1 8081 5 || return 1
	# The waypoint: configuration, routes and policies from the control
	# plane only.
	mesh_xds_waypoint_start "$w" wp &&
		mesh_wait_grep "$ZT_WORK/waypoint1.log" "2 L7 authorization policies in force from xDS" 10 &&
		mesh_wait_grep "$ZT_WORK/waypoint1.log" "1 RequestAuthentication policy in force" 10 &&
		mesh_wait_grep "$ZT_WORK/waypoint1.log" "1 rate limit policy in force from xDS \(0 left out\)" 10
}
if setup; then zt_pass; else
	zt_fail "setup failed; control: $(clog | tail -3); waypoint: $(tail -3 "$ZT_WORK/waypoint1.log")"
	mesh_finish
	exit 1
fi
wlog=$ZT_WORK/waypoint1.log

acurl() { zt_ns_exec "$a" timeout 20 curl -sS --max-time 15 "$@"; }
code() { acurl -o /dev/null -w '%{http_code}' "$@"; }
bearer() { echo "authorization: Bearer $(cat "$TOK/$1.jwt")"; }
# codes: GET /hello, GET /admin/x, GET /secret/x, POST /hello, DELETE /hello.
codes() {
	echo "$(code "http://$VIP_WEB/hello") $(code "http://$VIP_WEB/admin/x")" \
		"$(code "http://$VIP_WEB/secret/x") $(code -X POST "http://$VIP_WEB/hello")" \
		"$(code -X DELETE "http://$VIP_WEB/hello")"
}
codes_are() { [ "$(codes)" = "$*" ]; }

zt_test "the policies from control apply: GET 200, GET /admin/ denied by the DENY (403), POST matches no ALLOW (403)"
zt_expect_eq "$(codes)" "200 403 200 403 200"

zt_test "... the 403 names the DENY policy in the waypoint's access line"
if mesh_wait_grep "$wlog" "status=403.*ns\[default\]-policy\[deny-path\]-rule\[0\]" 5; then zt_pass; else
	zt_fail "$(grep 'status=403' "$wlog" | tail -1)"
fi

zt_test "the RequestAuthentication from control applies: expired token 401, alice's 200"
zt_expect_eq "$(code -H "$(bearer expired)" "http://$VIP_WEB/hello") $(code -H "$(bearer alice)" "http://$VIP_WEB/hello")" "401 200"

zt_test "only the waypoint asked for policies: it applied the three types, the node proxies did not"
if grep -q "applied AuthorizationPolicy" "$wlog" && grep -q "applied RequestAuthentication" "$wlog" &&
	grep -q "applied RateLimit" "$wlog" &&
	! grep -q "applied AuthorizationPolicy\|applied RequestAuthentication\|applied RateLimit" "$(mesh_log 1 proxy)" "$(mesh_log 2 proxy)" &&
	grep -q "applied Address" "$(mesh_log 1 proxy)"; then zt_pass; else
	zt_fail "waypoint: $(grep -c 'applied AuthorizationPolicy' "$wlog"); node 1: $(grep -c 'applied AuthorizationPolicy' "$(mesh_log 1 proxy)")"
fi

zt_test "authz.yaml edited (DENY /secret/ instead of /admin/): live traffic follows"
write_cfg authz.yaml "$(authz /secret)"
if mesh_eventually codes_are 200 200 403 403 200; then zt_pass; else
	zt_fail "got '$(codes)'; control: $(clog | tail -2); waypoint: $(grep authz "$wlog" | tail -1)"
fi

zt_test "a bad policy in a second file: control names file, line, object and field; its good policy (DENY DELETE) and the others are served"
write_cfg more.yaml "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: broken, namespace: default}
spec:
  targetRefs: [{kind: Service, group: \"\", name: svc-web}]
  action: DENY
  rules: [{to: [{operation: {ports: [\"x\"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-delete, namespace: default}
spec:
  targetRefs: [{kind: Service, group: \"\", name: svc-web}]
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]"
if mesh_wait_grep "$(mesh_log 3 control)" \
	"more\.yaml:7: AuthorizationPolicy default/broken: spec\.rules\[0\]\.to\[0\]\.operation\.ports\[0\]: \"x\" is not a port \(0\.\.65535\) \(policy left out\)" 10 &&
	mesh_eventually codes_are 200 200 403 403 403 &&
	mesh_wait_grep "$wlog" "3 L7 authorization policies in force from xDS \(0 left out\)" 5; then
	zt_pass
else
	zt_fail "control: $(clog | grep -i broken | tail -1); codes: $(codes); waypoint: $(grep 'in force from xDS' "$wlog" | tail -1)"
fi

zt_test "authz.yaml deleted: its policies are removed (POST and /secret/ allowed), more.yaml's DENY stays"
rm "$CFG/authz.yaml"
if mesh_eventually codes_are 200 200 200 200 403 &&
	mesh_wait_grep "$wlog" "1 L7 authorization policy in force from xDS \(0 left out\)" 5; then zt_pass; else
	zt_fail "codes: $(codes); waypoint: $(grep 'in force from xDS' "$wlog" | tail -1)"
fi

zt_test "authn.yaml deleted: no JWT step any more (the expired token passes: 200)"
rm "$CFG/authn.yaml"
expired_passes() { [ "$(code -H "$(bearer expired)" "http://$VIP_WEB/hello")" = 200 ]; }
if mesh_eventually expired_passes &&
	mesh_wait_grep "$wlog" "0 RequestAuthentication policies in force" 5; then zt_pass; else
	zt_fail "expired: $(code -H "$(bearer expired)" "http://$VIP_WEB/hello"); waypoint: $(grep 'RequestAuthentication' "$wlog" | tail -1)"
fi

hdr() { sed -n "s/^$2: *//Ip" "$1" | tr -d '\r' | head -1; }
# rl_get N: GET http://svc-rl/N; prints "code/x-ratelimit-limit/-remaining"
# ("-" for a field not sent).
rl_get() {
	local c
	c=$(acurl -D "$ZT_WORK/rl-h" -o "$ZT_WORK/rl-body" -w '%{http_code}' "http://$VIP_RL/$1")
	echo "$c/$(hdr "$ZT_WORK/rl-h" x-ratelimit-limit)/$(hdr "$ZT_WORK/rl-h" x-ratelimit-remaining)" |
		sed 's|//|/-/|g; s|/$|/-|'
}
wmetric() {
	zt_ns_exec "$w" curl -s --max-time 5 http://127.0.0.1:15020/metrics | sed -n "s/^$1 //p"
}
rl_dump() {
	zt_ns_exec "$w" curl -sS --max-time 5 http://127.0.0.1:15000/config_dump |
		jq -r '[.rateLimits[] | "\(.name) \(.requests)/\(.unit) passed=\(.stats.passed) limited=\(.stats.limited)"] | join("; ")'
}

zt_test "the RateLimit from control (3 an hour on svc-rl): 200 with x-ratelimit-remaining 2, 1, 0, then 429 local_rate_limited"
got="$(rl_get r1) $(rl_get r2) $(rl_get r3) $(rl_get r4) $(cat "$ZT_WORK/rl-body")"
zt_expect_eq "$got" "200/3/2 200/3/1 200/3/0 429/3/0 local_rate_limited"

zt_test "... the 429 carries x-ratelimit-reset; it is counted (waypoint metrics, /config_dump) and never reached b1; svc-web has no limit"
rst=$(hdr "$ZT_WORK/rl-h" x-ratelimit-reset)
n=$(wmetric ztunnel_waypoint_rate_limited_total)
if [ "${rst:-0}" -ge 1 ] && [ "${n:-0}" -ge 1 ] && [ "$(rl_dump)" = "rl 3/hour passed=3 limited=1" ] &&
	mesh_wait_grep "$ZT_WORK/http-b1.log" "GET /r3 " 5 && ! grep -q "GET /r4 " "$ZT_WORK/http-b1.log" &&
	[ "$(acurl -D "$ZT_WORK/web-h" -o /dev/null -w '%{http_code}' "http://$VIP_WEB/hello")/$(hdr "$ZT_WORK/web-h" x-ratelimit-limit)" = 200/ ]; then
	zt_pass
else
	zt_fail "reset=$rst rate_limited_total=$n dump: $(rl_dump)"
fi

zt_test "a bad RateLimit in a second file: control names file, line, object and field; the good one beside it (svc-web, 1000000 a second) is served, svc-rl keeps its empty bucket"
write_cfg bad-rl.yaml "apiVersion: ratelimit.ztunnel-c.io/v1alpha1
kind: RateLimit
metadata: {name: broken, namespace: default}
spec:
  targetRefs: [{kind: Service, name: svc-rl}]
  limit: {requests: 100, unit: fortnight}
---
apiVersion: ratelimit.ztunnel-c.io/v1alpha1
kind: RateLimit
metadata: {name: web-high, namespace: default}
spec:
  targetRefs: [{kind: Service, name: svc-web}]
  limit: {requests: 1000000, unit: second}"
web_limit() { acurl -D "$ZT_WORK/web-h" -o /dev/null "http://$VIP_WEB/hello" && [ "$(hdr "$ZT_WORK/web-h" x-ratelimit-limit)" = 1000000 ]; }
if mesh_wait_grep "$(mesh_log 3 control)" \
	"bad-rl\.yaml:6: RateLimit default/broken: spec\.limit\.unit: \"fortnight\" is not second, minute or hour \(policy left out\)" 10 &&
	mesh_eventually web_limit &&
	mesh_wait_grep "$wlog" "2 rate limit policies in force from xDS \(0 left out\)" 5 &&
	[ "$(rl_get r5)" = 429/3/0 ]; then
	zt_pass
else
	zt_fail "control: $(clog | grep -i broken | tail -1); svc-web limit: $(hdr "$ZT_WORK/web-h" x-ratelimit-limit); svc-rl: $(rl_get r5); waypoint: $(grep 'rate limit polic' "$wlog" | tail -1)"
fi

zt_test "ratelimit.yaml edited (5 an hour): live traffic gets the raised limit at once (a changed limit starts full), its counters carried over"
write_cfg ratelimit.yaml "$(ratelimit 5)"
raised() { [ "$(rl_get r6)" = 200/5/4 ]; }
# passed: r1-r3 before, r6 and r7 after; limited: r4, r5 and any r6 before
# the push arrived.
if mesh_eventually raised && [ "$(rl_get r7)" = 200/5/3 ] &&
	[[ "$(rl_dump)" =~ (^|; )rl\ 5/hour\ passed=5\ limited=([0-9]+) ]] && [ "${BASH_REMATCH[2]}" -ge 2 ]; then
	zt_pass
else
	zt_fail "svc-rl: $(rl_get r8); dump: $(rl_dump); waypoint: $(grep 'rate limit polic' "$wlog" | tail -1)"
fi

zt_test "ratelimit.yaml deleted: svc-rl is no longer limited (6 requests, all 200 without x-ratelimit fields), web-high stays"
rm "$CFG/ratelimit.yaml"
unlimited() { [ "$(rl_get r9)" = 200/-/- ]; }
if mesh_eventually unlimited &&
	mesh_wait_grep "$wlog" "1 rate limit policy in force from xDS \(0 left out\)" 5 &&
	[ "$(rl_get r10) $(rl_get r11) $(rl_get r12) $(rl_get r13) $(rl_get r14) $(rl_get r15)" = "200/-/- 200/-/- 200/-/- 200/-/- 200/-/- 200/-/-" ] &&
	web_limit; then
	zt_pass
else
	zt_fail "svc-rl: $(rl_get r16); dump: $(rl_dump); waypoint: $(grep 'rate limit polic' "$wlog" | tail -1)"
fi

zt_test "the waypoint accepted every policy response (no NACK logged)"
if grep -q "rejecting part of type.googleapis.com/ztunnel.policy.v1" "$wlog"; then
	zt_fail "$(grep 'rejecting part' "$wlog" | tail -1)"
else zt_pass; fi

mesh_finish
