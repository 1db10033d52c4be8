#!/usr/bin/env bash
# Local rate limits at `ztunnel waypoint` (RateLimit documents pasted in
# the configuration file): a service's bucket (429 `local_rate_limited`
# with x-ratelimit-* fields, RL on the metrics, the access line), the
# x-ratelimit-* fields on answers that pass, one bucket per header value,
# a route rule's limit beside an unlimited rule, HTTP/2, the observed rate
# against the configured one, a reload that keeps the buckets, a bad
# policy reported and left out. Clients: curl and Python. Needs root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

A=10.200.1.2 B1=10.200.2.2 W=10.200.2.4
VIP_WEB=10.96.0.40 VIP_KEY=10.96.0.41 VIP_ROUTE=10.96.0.42 VIP_RATE=10.96.0.43
H=default.svc.cluster.local

# limits [EXTRA]: the RateLimit and HTTPRoute documents (EXTRA: appended).
limits() {
	cat <<-Y
		---
		apiVersion: ratelimit.ztunnel-c.io/v1alpha1
		kind: RateLimit
		metadata: {name: web, namespace: default}
		spec:
		  targetRefs: [{kind: Service, name: svc-web}]
		  limit: {requests: 5, unit: hour}
		---
		apiVersion: ratelimit.ztunnel-c.io/v1alpha1
		kind: RateLimit
		metadata: {name: per-user, namespace: default}
		spec:
		  targetRefs: [{kind: Service, name: svc-key}]
		  limit: {requests: 2, unit: hour}
		  key: {header: x-user}
		  maxKeys: 100
		---
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata: {name: api, namespace: default}
		spec:
		  parentRefs: [{group: "", kind: Service, name: svc-route, port: 80}]
		  rules:
		  - name: limited
		    matches: [{path: {type: PathPrefix, value: /limited}}]
		    backendRefs: [{name: svc-route, port: 80}]
		  - backendRefs: [{name: svc-route, port: 80}]
		---
		apiVersion: ratelimit.ztunnel-c.io/v1alpha1
		kind: RateLimit
		metadata: {name: api-limited, namespace: default}
		spec:
		  targetRefs: [{kind: HTTPRoute, name: api, sectionName: limited}]
		  limit: {requests: 1, unit: hour}
		---
		apiVersion: ratelimit.ztunnel-c.io/v1alpha1
		kind: RateLimit
		metadata: {name: rate, namespace: default}
		spec:
		  targetRefs: [{kind: Service, name: svc-rate}]
		  limit: {requests: 20, unit: second, burst: 1}
		---
		apiVersion: ratelimit.ztunnel-c.io/v1alpha1
		kind: RateLimit
		metadata: {name: broken, namespace: default}
		spec:
		  targetRefs: [{kind: Service, name: svc-web}]
		  limit: {requests: 0, unit: fortnight}
	Y
	echo "${1:-}"
}

config() {
	cat <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: b1, name: b1, namespace: default, serviceAccount: sa-b, workloadIps: ["$B1"], protocol: HBONE, node: node2,
		   services: {"default/svc-web.$H": {80: 8081}, "default/svc-key.$H": {80: 8081}, "default/svc-route.$H": {80: 8081},
		              "default/svc-rate.$H": {80: 8081}}}
		- {uid: w, name: w, namespace: default, serviceAccount: waypoint, workloadIps: ["$W"], protocol: HBONE, node: node2}
		services:
	Y
	for s in "web $VIP_WEB" "key $VIP_KEY" "route $VIP_ROUTE" "rate $VIP_RATE"; do
		cat <<-Y
			- {name: svc-${s%% *}, namespace: default, hostname: svc-${s%% *}.$H, vips: ["/${s#* }"],
			   ports: {80: {targetPort: 8081, appProtocol: http}}, waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
		Y
	done
	limits "$@"
}

zt_test "setup: client a, backend b1 (four services), waypoint w with RateLimit documents"
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) || return 1
	b1=$(zt_pod_add 2 1 b1) && w=$(zt_pod_add 2 3 w) || return 1
	mesh_ca || return 1
	config >"$ZT_WORK/n1.yaml"
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$b1" b1 sa-b || return 1
	zt_bg "$b1" http-b1 python3 "$here/http_echo.py" b1 8081 && zt_wait_port "$b1" 127.0.0.1 8081 5 || return 1
	mesh_waypoint_start 1 "$w" w waypoint &&
		mesh_wait_grep "$ZT_WORK/waypoint1.log" "4 rate limit policies in force \(1 left out\)" 5
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi
wlog=$ZT_WORK/waypoint1.log

acurl() { zt_ns_exec "$a" timeout 20 curl -sS --max-time 15 "$@"; }
code() { acurl -o /dev/null -w '%{http_code}' "$@"; }
hdr() { sed -n "s/^$2: *//Ip" "$1" | tr -d '\r' | head -1; }

zt_test "the bad RateLimit is reported with file, line, field and reason, and left out"
if grep -qE $'\terror\tratelimit\t.*n1.yaml:[0-9]+: RateLimit default/broken: spec\\.limit\\.' "$wlog"; then zt_pass; else
	zt_fail "$(grep -E $'\tratelimit\t' "$wlog" | head -3)"
fi

zt_test "svc-web (5 an hour): 5 answers 200 whose x-ratelimit-remaining counts down 4..0, then 429"
got=""
for i in 1 2 3 4 5; do
	c=$(acurl -D "$ZT_WORK/h$i" -o /dev/null -w '%{http_code}' "http://$VIP_WEB/r$i")
	got="$got $c/$(hdr "$ZT_WORK/h$i" x-ratelimit-remaining)"
done
out=$(acurl -D "$ZT_WORK/h429" -w ' %{http_code}' "http://$VIP_WEB/r6")
zt_expect_eq "$got | $out" " 200/4 200/3 200/2 200/1 200/0 | local_rate_limited 429"

zt_test "... the 429 carries x-ratelimit-limit 5, -remaining 0 and -reset (seconds to the next token, 1..720)"
lim=$(hdr "$ZT_WORK/h429" x-ratelimit-limit) rem=$(hdr "$ZT_WORK/h429" x-ratelimit-remaining)
rst=$(hdr "$ZT_WORK/h429" x-ratelimit-reset)
if [ "$lim" = 5 ] && [ "$rem" = 0 ] && [ "${rst:-0}" -ge 1 ] && [ "${rst:-0}" -le 720 ]; then zt_pass; else
	zt_fail "limit=$lim remaining=$rem reset=$rst"
fi

zt_test "... w's access line: status 429, error local_rate_limited; the request never reached b1"
if mesh_wait_grep "$wlog" 'path=/r6 .*status=429.*error=local_rate_limited' 5 >/dev/null &&
	! grep -q "GET /r6 " "$ZT_WORK/http-b1.log" && grep -q "GET /r5 " "$ZT_WORK/http-b1.log"; then zt_pass; else
	zt_fail "$(grep 'path=/r6' "$wlog" | tail -1)"
fi

zt_test "HTTP/2 (h2c) to the exhausted svc-web: 429 local_rate_limited with x-ratelimit-limit 5"
out=$(acurl --http2-prior-knowledge -D "$ZT_WORK/h2" -w ' %{http_code} %{http_version}' "http://$VIP_WEB/r7")
zt_expect_eq "$out $(hdr "$ZT_WORK/h2" x-ratelimit-limit)" "local_rate_limited 429 2 5"

zt_test "one bucket per x-user (2 an hour): alice 200 200 429, bob still 200, no header shares one bucket"
got="$(code -H 'x-user: alice' "http://$VIP_KEY/") $(code -H 'x-user: alice' "http://$VIP_KEY/") $(code -H 'x-user: alice' "http://$VIP_KEY/")"
got="$got | $(code -H 'x-user: bob' "http://$VIP_KEY/") | $(code "http://$VIP_KEY/") $(code "http://$VIP_KEY/") $(code "http://$VIP_KEY/")"
zt_expect_eq "$got" "200 200 429 | 200 | 200 200 429"

zt_test "a route rule's limit (HTTPRoute api, rule limited: 1 an hour): /limited 200 then 429; the other rule is not limited"
got="$(code "http://$VIP_ROUTE/limited/1") $(code "http://$VIP_ROUTE/limited/2") $(code "http://$VIP_ROUTE/other") $(code "http://$VIP_ROUTE/other")"
zt_expect_eq "$got" "200 429 200 200"

zt_test "the observed rate (20/s, burst 1) is the configured one within 25%, over 3 s of back-to-back requests"
out=$(zt_ns_exec "$a" timeout 60 python3 - "$VIP_RATE" <<'PY'
import http.client, sys, time
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=10)
ok = limited = 0
t0 = time.monotonic()
while time.monotonic() - t0 < 3.0:
    c.request("GET", "/rate")
    r = c.getresponse(); r.read()
    if r.status == 200: ok += 1
    elif r.status == 429:
        limited += 1
        c.close(); c = http.client.HTTPConnection(sys.argv[1], 80, timeout=10)
elapsed = time.monotonic() - t0
print(ok, limited, "%.3f" % elapsed)
PY
)
read -r ok limited elapsed <<<"$out"
want=$(python3 -c "print(round(1 + 20 * float('${elapsed:-0}')))")
if [ -n "$ok" ] && [ "${limited:-0}" -gt 0 ] &&
	python3 -c "import sys; sys.exit(0 if abs($ok - $want) <= 0.25 * $want else 1)"; then zt_pass; else
	zt_fail "passed $ok (want about $want), limited ${limited:-?}, in ${elapsed:-?} s"
fi

zt_test "w's metrics: ztunnel_waypoint_rate_limited_total and istio_requests_total with response_flags RL"
zt_ns_exec "$w" curl -s --max-time 5 http://127.0.0.1:15020/metrics >"$ZT_WORK/wm.txt"
n=$(sed -n 's/^ztunnel_waypoint_rate_limited_total //p' "$ZT_WORK/wm.txt")
if [ "${n:-0}" -ge 5 ] && grep -q '^istio_requests_total{.*response_code="429".*response_flags="RL"' "$ZT_WORK/wm.txt"; then zt_pass; else
	zt_fail "rate_limited_total=$n; $(grep 'response_code="429"' "$ZT_WORK/wm.txt" | head -1)"
fi

zt_test "a reload keeps the buckets: after an edit elsewhere in the file, svc-web still answers 429; a new limit starts full"
config "# edited" >"$ZT_WORK/n1.yaml.new" && mv "$ZT_WORK/n1.yaml.new" "$ZT_WORK/n1.yaml"
mesh_wait_grep "$wlog" "reloaded .*n1.yaml" 10 >/dev/null
got="$(code "http://$VIP_WEB/after-reload")"
sed 's/requests: 5, unit: hour/requests: 6, unit: hour/' "$ZT_WORK/n1.yaml" >"$ZT_WORK/n1.yaml.new" && mv "$ZT_WORK/n1.yaml.new" "$ZT_WORK/n1.yaml"
ok=0
for _ in $(seq 1 50); do
	[ "$(code "http://$VIP_WEB/after-change")" = 200 ] && ok=1 && break
	sleep 0.2
done
zt_expect_eq "$got $ok" "429 1"

zt_test "/config_dump of w lists the RateLimits in force as written, with counters: web (6 an hour since the edit) passed 6 in all (counters kept across the reload) and limited the rest, per-user by header x-user"
zt_ns_exec "$w" curl -sS --max-time 5 http://127.0.0.1:15000/config_dump >"$ZT_WORK/config_dump.json"
got=$(jq -r '[.rateLimits[] | select(.name == "web" or .name == "per-user")] | sort_by(.name) |
	map("\(.name) \(.requests)/\(.unit) burst=\(.burst) by=\(.by.header // "-") passed=\(.stats.passed) limited>0=\(.stats.limited > 0)") | join("; ")' \
	"$ZT_WORK/config_dump.json" 2>&1)
zt_expect_eq "$got" "per-user 2/hour burst=2 by=x-user passed=$(jq -r '.rateLimits[] | select(.name == "per-user") | .stats.passed' "$ZT_WORK/config_dump.json") limited>0=true; web 6/hour burst=6 by=- passed=6 limited>0=true"

mesh_finish
