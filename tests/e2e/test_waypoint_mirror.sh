#!/usr/bin/env bash
# RequestMirror through `ztunnel waypoint`: a rule mirroring 100% to a
# second service (the copies arrive with the "-shadow" host, bodies whole,
# the client gets the primary's answers), mirrors to a backend that hangs
# and to one that is down (the client's exchanges unaffected), a body over
# the mirror's bound (not mirrored, the main request whole), percent 50
# over 200 requests. Then W3C traceparent on requests (continued, started,
# replaced) and the waypoint's /config_dump of its routes.
# Clients are curl and Python's http.client, backends Python's http.server.
# Needs root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a (client); node 2: b1 (svc-web), b2 (svc-shadow), b3 (svc-hang:
# reads requests, never answers), b4 (svc-down: nothing listens), w.
A=10.200.1.2 B1=10.200.2.2 B2=10.200.2.3 B3=10.200.2.4 B4=10.200.2.5 W=10.200.2.6
VIP_WEB=10.96.0.50 VIP_SHADOW=10.96.0.51 VIP_HANG=10.96.0.52 VIP_DOWN=10.96.0.53
H=default.svc.cluster.local

config() {
	cat <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: b1, name: b1, namespace: default, serviceAccount: sa-b, workloadIps: ["$B1"], protocol: HBONE, node: node2,
		   services: {"default/svc-web.$H": {80: 8081}}}
		- {uid: b2, name: b2, namespace: default, serviceAccount: sa-b, workloadIps: ["$B2"], protocol: HBONE, node: node2,
		   services: {"default/svc-shadow.$H": {80: 8081}}}
		- {uid: b3, name: b3, namespace: default, serviceAccount: sa-b, workloadIps: ["$B3"], protocol: HBONE, node: node2,
		   services: {"default/svc-hang.$H": {80: 8081}}}
		- {uid: b4, name: b4, namespace: default, serviceAccount: sa-b, workloadIps: ["$B4"], protocol: HBONE, node: node2,
		   services: {"default/svc-down.$H": {80: 8081}}}
		- {uid: w, name: w, namespace: default, serviceAccount: waypoint, workloadIps: ["$W"], protocol: HBONE, node: node2}
		services:
	Y
	local s vip
	for s in web:$VIP_WEB shadow:$VIP_SHADOW hang:$VIP_HANG down:$VIP_DOWN; do
		vip=${s#*:}
		echo "- {name: svc-${s%%:*}, namespace: default, hostname: svc-${s%%:*}.$H, vips: [\"/$vip\"],"
		echo "   ports: {80: {targetPort: 8081, appProtocol: http}}, waypoint: {destination: \"/$W\", hboneMtlsPort: 15008}}"
	done
	cat <<-Y
		---
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata: {name: mirror, namespace: default}
		spec:
		  parentRefs: [{group: "", kind: Service, name: svc-web, port: 80}]
		  rules:
		  - matches: [{path: {type: PathPrefix, value: /m}}]
		    filters:
		    - type: RequestMirror
		      requestMirror: {backendRef: {name: svc-shadow, port: 80}}
		    backendRefs: [{name: svc-web, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /half}}]
		    filters:
		    - type: RequestMirror
		      requestMirror: {backendRef: {name: svc-shadow, port: 80}, percent: 50}
		    backendRefs: [{name: svc-web, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /hang}}]
		    filters:
		    - type: RequestMirror
		      requestMirror: {backendRef: {name: svc-hang, port: 80}}
		    backendRefs: [{name: svc-web, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /down}}]
		    filters:
		    - type: RequestMirror
		      requestMirror: {backendRef: {name: svc-down, port: 80}}
		    backendRefs: [{name: svc-web, port: 80}]
		  - matches: [{path: {type: PathPrefix, value: /}, headers: [{name: x-esc, value: "a\"b"}]}]
		    timeouts: {request: 2s}
		    retry: {attempts: 1, codes: [503]}
		    backendRefs: [{name: svc-web, port: 80, weight: 3}]
		  - backendRefs: [{name: svc-web, port: 80}]
	Y
}

# A backend that reads each request and never answers; prints one line per
# request it got.
hang_server() {
	cat >"$ZT_WORK/hang.py" <<'PY'

import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8081))
s.listen(64)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
    line = c.recv(65536).split(b"\r\n")[0].decode(errors="replace")
    print("got", line)
PY
}

zt_test "setup: 2 nodes, client a, backends b1..b3 (b4 without a server), waypoint w (debug log)"
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) || return 1
	b1=$(zt_pod_add 2 1 b1) && b2=$(zt_pod_add 2 2 b2) && b3=$(zt_pod_add 2 3 b3) || return 1
	b4=$(zt_pod_add 2 4 b4) && w=$(zt_pod_add 2 5 w) || return 1
	mesh_ca || return 1
	config >"$ZT_WORK/n1.yaml"
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$b1" b1 sa-b && mesh_enroll 2 "$b2" b2 sa-b || return 1
	mesh_enroll 2 "$b3" b3 sa-b && mesh_enroll 2 "$b4" b4 sa-b || return 1
	zt_bg "$b1" http-b1 python3 "$here/http_echo.py" b1 8081 && zt_wait_port "$b1" 127.0.0.1 8081 5 || return 1
	zt_bg "$b2" http-b2 python3 "$here/http_echo.py" b2 8081 && zt_wait_port "$b2" 127.0.0.1 8081 5 || return 1
	hang_server && zt_bg "$b3" hang python3 -u "$ZT_WORK/hang.py" && zt_wait_port "$b3" 127.0.0.1 8081 5 || return 1
	LOGLVL=debug mesh_waypoint_start 1 "$w" w waypoint &&
		mesh_wait_grep "$ZT_WORK/waypoint1.log" "1 route\(s\) in force" 5
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi
wlog=$ZT_WORK/waypoint1.log

acurl() { zt_ns_exec "$a" timeout 20 curl -sS --max-time 15 "$@"; }
# seen NETNS: what the echo server in NETNS received so far (http_echo.py /_seen).
seen() { zt_ns_exec "$1" curl -sS --max-time 5 http://127.0.0.1:8081/_seen; }
# wait_count CMD ERE N: wait until CMD's output has N lines matching ERE
# (10 s at most); prints the count.
wait_count() {
	local n=0
	for _ in $(seq 1 100); do
		n=$($1 | grep -cE -- "$2")
		[ "$n" -ge "$3" ] && break
		sleep 0.1
	done
	echo "$n"
}
seen_b2() { seen "$b2"; }
seen_b1() { seen "$b1"; }

zt_test "100% mirror: 10 requests to /m/i are answered by b1 (the primary)"
servers=""
for i in $(seq 1 10); do
	servers="$servers $(mesh_body_field "$(acurl -H "Host: svc-web.$H" "http://$VIP_WEB/m/$i")" server)"
done
zt_expect_eq "$servers" "$(printf ' b1%.0s' $(seq 1 10))"

zt_test "... b2 (svc-shadow) got all 10 copies, with the -shadow host; b1 got each once"
n2=$(wait_count seen_b2 "^GET /m/[0-9]+ svc-web\.$H-shadow 0 " 10)
n1=$(seen "$b1" | grep -cE "^GET /m/[0-9]+ svc-web\.$H 0 ")
zt_expect_eq "$n2 $n1" "10 10"

zt_test "... the waypoint read each copy's response to its end: status=200, no error (debug lines)"
for _ in $(seq 1 100); do
	n=$(grep -cE 'mirror complete.*path=/m/([0-9]|10) status=200 resp_bytes=[0-9]+ duration=[0-9]+ms$' "$wlog")
	[ "$n" -ge 10 ] && break
	sleep 0.1
done
zt_expect_eq "$n" 10

zt_test "the shadow suffix goes before the port (Host svc-web:80 -> svc-web-shadow:80)"
acurl -o /dev/null -H "Host: svc-web:80" "http://$VIP_WEB/m/port"
zt_expect_eq "$(wait_count seen_b2 "^GET /m/port svc-web-shadow:80 " 1)" 1

zt_test "a POST body (1000 bytes, and 3000 sent chunked) reaches the mirror whole"
head -c 1000 /dev/zero | acurl -o /dev/null --data-binary @- "http://$VIP_WEB/m/post1"
head -c 3000 /dev/zero | acurl -o /dev/null -H "Transfer-Encoding: chunked" --data-binary @- "http://$VIP_WEB/m/post2"
got="$(wait_count seen_b2 "^POST /m/post1 [^ ]+ 1000 " 1) $(wait_count seen_b2 "^POST /m/post2 [^ ]+ 3000 " 1)"
zt_expect_eq "$got" "1 1"

zt_test "a 100 KiB body (past the mirror's 64 KiB) reaches b1 whole; its mirror is abandoned"
out=$(head -c 102400 /dev/zero | acurl --data-binary @- "http://$VIP_WEB/m/big")
zt_expect_eq "$(mesh_body_field "$out" server) $(mesh_body_field "$out" body_len)" "b1 102400"
zt_test "... b2 never got /m/big; positive control: /m/after-big, sent next, got there"
acurl -o /dev/null "http://$VIP_WEB/m/after-big"
after=$(wait_count seen_b2 "^GET /m/after-big " 1)
zt_expect_eq "$after $(seen "$b2" | grep -c "/m/big")" "1 0"
zt_test "... the waypoint said why (debug)"
zt_expect_eq "$(grep -c "mirror abandoned: the body passes" "$wlog")" 1

zt_test "a rule without RequestMirror sends no copy (/plain/x: b1 only)"
acurl -o /dev/null "http://$VIP_WEB/plain/x"
acurl -o /dev/null "http://$VIP_WEB/m/after-plain"
wait_count seen_b2 "^GET /m/after-plain " 1 >/dev/null
zt_expect_eq "$(seen "$b1" | grep -c "^GET /plain/x ") $(seen "$b2" | grep -c "/plain/x")" "1 0"

zt_test "one access line per client request, none for the copies (10 for /m/1..10)"
zt_expect_eq "$(grep -cE 'request complete.*path=/m/([0-9]|10)[[:space:]]' "$wlog")" 10

zt_test "a mirror backend that never answers: 5 requests on one connection all get b1's 200"
mw=$(wc -l <"$wlog")
out=$(zt_ns_exec "$a" timeout 60 python3 - "$VIP_WEB" <<'PY'
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=30)
got = []
for i in range(5):
    c.request("GET", "/hang/%d" % i)
    r = c.getresponse()
    body = r.read().decode()
    got.append("%d:%s" % (r.status, [l for l in body.splitlines() if l.startswith("server=")][0]))
print(" ".join(got))
PY
)
pending=$(tail -n +"$((mw + 1))" "$wlog" | grep -c "mirror complete.*svc-hang")
zt_expect_eq "$out" "200:server=b1 200:server=b1 200:server=b1 200:server=b1 200:server=b1"
zt_test "... while their 5 copies were still unanswered at the hanging backend (it got them)"
got=$(wait_count "cat $ZT_WORK/hang.log" "^got GET /hang/" 5)
zt_expect_eq "$pending $got" "0 5"
zt_test "... and the waypoint drops them at the mirror timeout"
# (10 s after each was sent, checked every 500 ms)
for _ in $(seq 1 150); do
	n=$(tail -n +"$((mw + 1))" "$wlog" | grep -c 'mirror complete.*svc-hang.*error="mirror timeout"')
	[ "$n" -ge 5 ] && break
	sleep 0.1
done
zt_expect_eq "$n" 5

zt_test "a mirror backend that is down: the client gets b1's 200; the copy failed (logged)"
out=$(acurl "http://$VIP_WEB/down/1")
zt_expect_eq "$(mesh_body_field "$out" server)" b1
zt_test "... the waypoint tried it: a failed 'mirror complete' for svc-down"
if mesh_wait_grep "$wlog" "mirror complete.*svc-down.*error=" 10; then zt_pass; else
	zt_fail "$(grep "mirror" "$wlog" | tail -3)"
fi

zt_test "percent 50 over 200 requests: b2 gets 60..140 copies, b1 all 200"
zt_ns_exec "$a" timeout 120 python3 - "$VIP_WEB" <<'PY'
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=10)
for i in range(200):
    c.request("GET", "/half/%d" % i)
    c.getresponse().read()
PY
mesh_wait_grep "$wlog" 'request complete.*path=/half/199[[:space:]]' 10
# The copies may still be in flight: wait until every one b2 got has
# ended at the waypoint too.
for _ in $(seq 1 100); do
	[ "$(grep -c "mirror complete.*path=/half/" "$wlog")" = "$(seen "$b2" | grep -c "^GET /half/")" ] && break
	sleep 0.1
done
n2=$(seen "$b2" | grep -c "^GET /half/")
n1=$(seen "$b1" | grep -c "^GET /half/")
if [ "$n1" = 200 ] && [ "$n2" -ge 60 ] && [ "$n2" -le 140 ]; then zt_pass; else
	zt_fail "b1 $n1, b2 $n2"
fi

TID=4bf92f3577b34da6a3ce929d0e0e4736 PID=00f067aa0ba902b7
TP_RE='^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
zt_test "traceparent: b1 sees the client's trace id with a new span id, flags kept; tracestate untouched"
out=$(acurl -H "traceparent: 00-$TID-$PID-01" -H "tracestate: congo=t61rcWkgMzE" "http://$VIP_WEB/t/1")
tp=$(mesh_body_field "$out" h:traceparent)
span=$(cut -d- -f3 <<<"$tp")
if grep -qE "$TP_RE" <<<"$tp" && [ "$(cut -d- -f2 <<<"$tp")" = "$TID" ] && [ "$span" != "$PID" ] &&
	[ "$(cut -d- -f4 <<<"$tp")" = 01 ] && [ "$(mesh_body_field "$out" h:tracestate)" = congo=t61rcWkgMzE ]; then
	zt_pass
else zt_fail "$tp / $(mesh_body_field "$out" h:tracestate)"; fi
zt_test "... the access line carries trace_id and the waypoint's span_id (the one b1 saw)"
if mesh_wait_grep "$wlog" "request complete.*path=/t/1[[:space:]].*trace_id=$TID span_id=$span" 5; then zt_pass; else
	zt_fail "$(grep "path=/t/1" "$wlog")"
fi

zt_test "no traceparent: b1 sees a new valid one (flags 00), the access line has its trace id"
out=$(acurl "http://$VIP_WEB/t/2")
tp=$(mesh_body_field "$out" h:traceparent)
if grep -qE "$TP_RE" <<<"$tp" && [ "$(cut -d- -f4 <<<"$tp")" = 00 ] &&
	mesh_wait_grep "$wlog" "request complete.*path=/t/2[[:space:]].*trace_id=$(cut -d- -f2 <<<"$tp") " 5; then zt_pass; else
	zt_fail "$tp / $(grep "path=/t/2" "$wlog")"
fi

zt_test "an invalid traceparent (uppercase trace id) is replaced by a new trace"
upper=$(tr a-f A-F <<<"$TID")
tp=$(mesh_body_field "$(acurl -H "traceparent: 00-$upper-$PID-01" "http://$VIP_WEB/t/3")" h:traceparent)
if grep -qE "$TP_RE" <<<"$tp" && [ "$(cut -d- -f2 <<<"$tp")" != "$TID" ] && [ "$(cut -d- -f3 <<<"$tp")" != "$PID" ]; then
	zt_pass
else zt_fail "$tp"; fi

zt_test "the mirror's copy carries the same traceparent as the primary's request"
out=$(acurl -H "traceparent: 00-$TID-$PID-01" "http://$VIP_WEB/m/traced")
tp=$(mesh_body_field "$out" h:traceparent)
zt_expect_eq "$(wait_count seen_b2 "^GET /m/traced [^ ]+ 0 $tp\$" 1)" 1

zt_test "/config_dump of the waypoint: valid JSON with its route table (rules, filters, backends, timeouts, retry)"
zt_ns_exec "$w" curl -sS --max-time 5 http://127.0.0.1:15000/config_dump >"$ZT_WORK/config_dump.json"
out=$(python3 - "$ZT_WORK/config_dump.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
r = d["routes"]
(m,) = [x for x in r["routes"] if x["name"] == "mirror"]
rules = m["rules"]
f0 = rules[0]["filters"][0]
esc = rules[4]
print(r["leftOut"], len(r["routes"]), m["kind"], m["namespace"], m["parentRefs"][0]["name"], len(rules),
      rules[0]["matches"][0]["path"]["value"], f0["type"], f0["requestMirror"]["backendRef"]["name"],
      rules[1]["filters"][0]["requestMirror"]["fraction"]["numerator"],
      esc["matches"][0]["headers"][0]["value"], esc["timeouts"]["request"], esc["retry"]["codes"],
      esc["backendRefs"][0]["weight"], len(d["services"]))
PY
)
zt_expect_eq "$out" '0 1 HTTPRoute default svc-web 6 /m RequestMirror svc-shadow 50 a"b 2000ms [503] 3 4'
zt_test "... and python3 -m json.tool reads it"
if python3 -m json.tool "$ZT_WORK/config_dump.json" >/dev/null; then zt_pass; else zt_fail "invalid JSON"; fi

zt_test "past the per-worker cap (64 mirrors in flight): 100 requests on one connection all get b1's 200"
mw=$(wc -l <"$wlog")
hb=$(grep -c "^got " "$ZT_WORK/hang.log")
out=$(zt_ns_exec "$a" timeout 60 python3 - "$VIP_WEB" <<'PY'
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=30)
ok = 0
for i in range(100):
    c.request("GET", "/hang/cap/%d" % i)
    r = c.getresponse()
    ok += r.status == 200 and b"server=b1" in r.read()
print(ok)
PY
)
zt_expect_eq "$out" 100
zt_test "... the hanging backend got 64 copies, the other 36 were skipped (debug lines)"
got=$(($(wait_count "cat $ZT_WORK/hang.log" "^got " $((hb + 64))) - hb))
skipped=$(tail -n +"$((mw + 1))" "$wlog" | grep -c "mirror skipped: 6[34] in flight")
zt_expect_eq "$got $skipped" "64 36"

zt_test "the waypoint stops with those copies in flight: closed by the drain, a clean exit"
mesh_stop 1 waypoint
if grep -q 'mirror complete.*error="waypoint draining"' "$wlog" && ! grep -qE "ERROR: AddressSanitizer|runtime error" "$wlog"; then
	zt_pass
else zt_fail "$(tail -3 "$wlog")"; fi

mesh_finish
