#!/usr/bin/env bash
# Waypoint routes served by `ztunnel control` over delta xDS
# (type.googleapis.com/ztunnel.routes.v1.Route). The control plane's
# watched directory holds the mesh in our schema, a pasted waypoint Gateway,
# an istio.io/use-waypoint label and an HTTPRoute (a header match to v2,
# everything else to v1); `ztunnel waypoint` runs with XDS_ADDRESS only (no
# local file). Checked with curl and Python's http.server as the app: the
# route applies; editing the HTTPRoute file changes live traffic; a bad
# route in a second file is reported by the control plane with file, line,
# object and field, while that file's good routes (an HTTPRoute and a
# GRPCRoute) and the other routes stay;
# deleting the file removes its route; node proxies never ask for routes.
# Needs root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a (client); node 2: b1 (v1), b2 (v2), w (the waypoint); node 3:
# the control plane.
A=10.200.1.2 B1=10.200.2.2 B2=10.200.2.3 W=10.200.2.4
VIP_WEB=10.96.0.50 VIP_V2=10.96.0.51
H=default.svc.cluster.local
CFG=$ZT_WORK/config

# write_cfg FILE CONTENT: replace a config file the way tools do (rename).
write_cfg() {
	printf '%s\n' "$2" >"$CFG/.$1.tmp" && mv "$CFG/.$1.tmp" "$CFG/$1"
}
clog() { cat "$(mesh_log 3 control)"; }

# route_web HEADER_VALUE: the HTTPRoute of svc-web, as users write it.
route_web() {
	cat <<-Y
		apiVersion: gateway.networking.k8s.io/v1
		kind: HTTPRoute
		metadata:
		  name: web
		  namespace: default
		spec:
		  parentRefs:
		  - {group: "", kind: Service, name: svc-web, port: 80}
		  rules:
		  - matches:
		    - headers: [{name: x-version, value: "$1"}]
		    backendRefs: [{name: svc-v2, port: 80}]
		  - backendRefs: [{name: svc-web, port: 80}]
	Y
}

zt_test "setup: control plane with a Gateway, a use-waypoint label and an HTTPRoute; a waypoint fed by it"
setup() {
	zt_node_add 1 && zt_node_add 2 && zt_node_add 3 || return 1
	a=$(zt_pod_add 1 1 a) || return 1
	b1=$(zt_pod_add 2 1 b1) && b2=$(zt_pod_add 2 2 b2) && w=$(zt_pod_add 2 3 w) || return 1
	mesh_ca || return 1
	mkdir -p "$CFG"
	write_cfg mesh.yaml "workloads:
- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: [\"$A\"], protocol: HBONE, node: node1}
- {uid: b1, name: b1, namespace: default, serviceAccount: sa-b, workloadIps: [\"$B1\"], protocol: HBONE, node: node2,
   services: {\"default/svc-web.$H\": {80: 8081}}}
- {uid: b2, name: b2, namespace: default, serviceAccount: sa-b, workloadIps: [\"$B2\"], protocol: HBONE, node: node2,
   services: {\"default/svc-v2.$H\": {80: 8081}}}
- {uid: w, name: w, namespace: default, serviceAccount: waypoint, workloadIps: [\"$W\"], protocol: HBONE, node: node2,
   services: {\"default/wp.$H\": {15008: 15008}}}
services:
- {name: wp, namespace: default, hostname: wp.$H, ports: {15008: 15008}}
- {name: svc-web, namespace: default, hostname: svc-web.$H, vips: [\"/$VIP_WEB\"],
   ports: {80: {targetPort: 8081, appProtocol: http}}, labels: {istio.io/use-waypoint: wp}}
- {name: svc-v2, namespace: default, hostname: svc-v2.$H, vips: [\"/$VIP_V2\"],
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
	write_cfg routes.yaml "$(route_web v2)"
	mesh_control_start "$CFG" && mesh_xds_node_start 1 && mesh_xds_node_start 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$b1" b1 sa-b && mesh_enroll 2 "$b2" b2 sa-b || return 1
	zt_bg "$b1" http-b1 python3 "$here/http_echo.py" b1 8081 && zt_wait_port "$b1" 127.0.0.1 8081 5 || return 1
	zt_bg "$b2" http-b2 python3 "$here/http_echo.py" b2 8081 && zt_wait_port "$b2" 127.0.0.1 8081 5 || return 1
	# The waypoint: configuration and routes from the control plane only.
	mesh_xds_waypoint_start "$w" wp &&
		mesh_wait_grep "$ZT_WORK/waypoint1.log" "1 route\(s\) in force from xDS" 10
}
if setup; then zt_pass; else
	zt_fail "setup failed; control: $(clog | tail -3)"
	mesh_finish
	exit 1
fi
wlog=$ZT_WORK/waypoint1.log

body_field() { sed -n "s/^$2=//p" <<<"$1" | head -1; }
acurl() { zt_ns_exec "$a" timeout 20 curl -sS --max-time 15 "$@"; }
server_of() { body_field "$(acurl "$@")" server; }
# now_routed: who answers svc-web for x-version v1, v2, v3 (b1 or b2 each).
now_routed() {
	local v out=""
	for v in v1 v2 v3; do
		out="$out $(server_of -H "x-version: $v" "http://$VIP_WEB/x")"
	done
	echo "${out# }"
}
routed() { [ "$(now_routed)" = "$1 $2 $3" ]; }

zt_test "the route from control applies: x-version v2 goes to svc-v2 (b2), other requests to b1"
zt_expect_eq "$(now_routed)" "b1 b2 b1"

zt_test "... through the waypoint: its access line names the route default/web"
if mesh_wait_grep "$wlog" "request complete.*route=default/web" 5; then zt_pass; else
	zt_fail "$(grep 'request complete' "$wlog" | tail -1)"
fi

zt_test "only the waypoint asked for routes: it applied a Route response, the node proxies did not"
if grep -q "applied Route" "$wlog" && ! grep -q "applied Route" "$(mesh_log 1 proxy)" "$(mesh_log 2 proxy)" &&
	grep -q "applied Address" "$(mesh_log 1 proxy)"; then zt_pass; else
	zt_fail "waypoint: $(grep -c 'applied Route' "$wlog"); node 1: $(grep -c 'applied Route' "$(mesh_log 1 proxy)")"
fi

zt_test "routes.yaml edited (match x-version v3): live traffic follows"
write_cfg routes.yaml "$(route_web v3)"
if mesh_eventually routed b1 b1 b2; then zt_pass; else
	zt_fail "got '$(now_routed)'; control: $(clog | tail -2); waypoint: $(grep routes "$wlog" | tail -1)"
fi

zt_test "a bad route in a second file: control names file, line, object and field; its good routes (an HTTPRoute, a GRPCRoute) and routes.yaml's stay"
write_cfg more.yaml "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: v2-only, namespace: default}
spec:
  parentRefs: [{kind: Service, name: svc-v2}]
  rules:
  - matches: [{path: {type: Exact, value: /only}}]
    backendRefs: [{name: svc-v2, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken, namespace: default}
spec:
  parentRefs: [{kind: Service, name: svc-v2}]
  rules:
  - matches: [{path: {type: Exact, value: no-slash}}]
    backendRefs: [{name: svc-v2, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: greeter, namespace: default}
spec:
  parentRefs: [{kind: Service, name: svc-v2, port: 8080}]
  rules:
  - matches: [{method: {service: helloworld.Greeter, method: SayHello}}]
    backendRefs: [{name: svc-v2, port: 8080}]"
v2_routed() {
	[ "$(acurl -o /dev/null -w '%{http_code}' "http://$VIP_V2/other") $(acurl -o /dev/null -w '%{http_code}' \
		"http://$VIP_V2/only")" = "404 200" ]
}
if mesh_wait_grep "$(mesh_log 3 control)" \
	"more\.yaml:16: HTTPRoute default/broken: spec\.rules\[0\]\.matches\[0\]\.path\.value: must start with \"/\" \(route left out\)" 10 &&
	mesh_eventually v2_routed && routed b1 b1 b2 && mesh_wait_grep "$wlog" "3 route\(s\) in force from xDS \(0 left out\)" 5; then
	zt_pass
else
	zt_fail "control: $(clog | grep -i broken | tail -1); svc-v2 /other /only: $(acurl -o /dev/null -w '%{http_code}' "http://$VIP_V2/other") $(acurl -o /dev/null -w '%{http_code}' "http://$VIP_V2/only"); web: $(now_routed)"
fi

zt_test "routes.yaml deleted: its route is removed (x-version v3 back to b1), more.yaml's stay"
rm "$CFG/routes.yaml"
if mesh_eventually routed b1 b1 b1 && v2_routed &&
	mesh_wait_grep "$wlog" "2 route\(s\) in force from xDS \(0 left out\)" 5; then zt_pass; else
	zt_fail "web: $(now_routed); waypoint: $(grep routes "$wlog" | tail -1)"
fi

zt_test "the waypoint accepted every Route response (no NACK logged)"
if grep -q "rejecting part of type.googleapis.com/ztunnel.routes.v1.Route" "$wlog"; then
	zt_fail "$(grep 'rejecting part' "$wlog" | tail -1)"
else zt_pass; fi

mesh_finish
