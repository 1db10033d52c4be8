#!/usr/bin/env bash
# A waypoint declared the Kubernetes way in `ztunnel control`'s watched
# directory: a pasted Gateway (class istio-waypoint) and an
# istio.io/use-waypoint label on a service of our schema. The control
# plane turns them into the service's waypoint field and serves it over
# xDS; the node proxies know nothing about labels. An independent Go HBONE
# server (tests/interop/hbone_peer.go -describe) stands in for the
# waypoint: it answers with its identity and the :authority it was asked
# for. Checked: the labelled service goes through the waypoint; the label
# removed (file rewritten) sends it direct again; a Namespace label in
# another file brings the waypoint back; a label naming no Gateway is
# refused with file and line while the last good state stays served.
# Needs root and Go.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

# node 1: a (client); node 2: b (the app, echo of its name), w (the Go
# waypoint, not enrolled); node 3: the control plane.
A=10.200.1.2 B=10.200.2.2 W=10.200.2.3 CP=$(zt_node_ip 3)
VIP=10.96.0.30
H=default.svc.cluster.local
TOKEN1=node1-token-0123456789 TOKEN2=node2-token-0123456789
CFG=$ZT_WORK/config

# write_cfg FILE CONTENT: replace a config file the way tools do (rename).
write_cfg() {
	printf '%s\n' "$2" >"$CFG/.$1.tmp" && mv "$CFG/.$1.tmp" "$CFG/$1"
}
start_proxy() {
	echo "$2" >"$ZT_WORK/token$1"
	# shellcheck disable=SC2046
	mesh_start_bg "$1" proxy env $(mesh_env "$1") XDS_ADDRESS="https://$CP:15012" \
		XDS_ROOT_CA="$MESH_CA/root-cert.pem" AUTH_TOKEN="$ZT_WORK/token$1" NODE_NAME="node$1" \
		POD_NAME="ztunnel-$1" POD_NAMESPACE=istio-system RUST_LOG="${LOGLVL:-info}" "$ZT_BIN" proxy
	mesh_wait_grep "$(mesh_log "$1" proxy)" "snapshot received" 10
}
clog() { cat "$(mesh_log 3 control)"; }

# The app's service, with or without labels (YAML flow mapping or "").
app_yaml() {
	cat <<-Y
		services:
		- name: app
		  namespace: default
		  hostname: app.$H
		  vips: ["/$VIP"]
		  ports: {80: 8080}
		$1
	Y
}

zt_test "setup: control plane on node 3 with a pasted waypoint Gateway, proxies on nodes 1 and 2"
setup() {
	peer=$(mesh_peer) || return 1
	zt_node_add 1 && zt_node_add 2 && zt_node_add 3 || return 1
	a=$(zt_pod_add 1 1 a) && b=$(zt_pod_add 2 1 b) && w=$(zt_pod_add 2 2 w) || return 1
	mesh_ca || return 1
	mkdir -p "$CFG"
	printf 'node1 %s\nnode2 %s\n' "$TOKEN1" "$TOKEN2" >"$ZT_WORK/node-tokens"
	# Our schema: the pods, and the waypoint's service with w behind it.
	write_cfg mesh.yaml "workloads:
- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: [\"$A\"], protocol: HBONE, node: node1}
- {uid: b, name: b, namespace: default, serviceAccount: sa-b, workloadIps: [\"$B\"], protocol: HBONE, node: node2,
   services: {\"default/app.$H\": {80: 8080}}}
- {uid: w, name: wp, namespace: default, serviceAccount: waypoint, workloadIps: [\"$W\"], protocol: HBONE, node: node2,
   services: {\"default/wp.$H\": {15008: 15008}}}
services:
- {name: wp, namespace: default, hostname: wp.$H, ports: {15008: 15008}}"
	# As `kubectl get gateway wp -o yaml` prints it.
	write_cfg gateway.yaml "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{}'
  creationTimestamp: \"2026-12-01T09:00:00Z\"
  generation: 1
  labels:
    istio.io/waypoint-for: service
  name: wp
  namespace: default
  resourceVersion: \"4711\"
  uid: 0b6c2d0e-5c3a-4b1e-9d2f-1a2b3c4d5e6f
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - allowedRoutes:
      namespaces:
        from: Same
    name: mesh
    port: 15008
    protocol: HBONE
status:
  addresses:
  - type: Hostname
    value: wp.$H
  conditions:
  - lastTransitionTime: \"2026-12-01T09:00:05Z\"
    message: Resource programmed
    reason: Programmed
    status: \"True\"
    type: Programmed"
	write_cfg app.yaml "$(app_yaml "  labels: {istio.io/use-waypoint: wp, app: app}")"
	mesh_start_bg 3 control "$ZT_BIN" control --listen 0.0.0.0:15012 --config-dir "$CFG" \
		--ca-dir "$MESH_CA" --node-tokens "$ZT_WORK/node-tokens" || return 1
	mesh_wait_grep "$(mesh_log 3 control)" "listening on" 10 || return 1
	mesh_cni_start 1 && mesh_cni_start 2 || return 1
	start_proxy 1 "$TOKEN1" && start_proxy 2 "$TOKEN2" || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$b" b sa-b || return 1
	zt_bg "$b" name-b socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:"echo b"
	zt_wait_port "$b" 127.0.0.1 8080 5 || return 1
	zt_bg "$w" wp "$peer" server -ca-dir "$MESH_CA" -id "$(mesh_id waypoint)" -listen "$W:15008" \
		-timeout 0 -describe || return 1
	mesh_wait_grep "$ZT_WORK/wp.log" "listening on" 10
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

via_wp="server=$(mesh_id waypoint) authority=$VIP:80 peer=$(mesh_id sa-a)"

# eventually CMD...: runs CMD every 50 ms until it succeeds; fails after
# 10 s. (How fast a change spreads is not what is checked here.)
eventually() {
	local deadline=$(($(zt_now_ms) + 10000))
	while [ "$(zt_now_ms)" -lt "$deadline" ]; do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}
through_waypoint() { [ "$(zt_send "$a" $VIP 80 "" 2)" = "$via_wp" ]; }
direct() { [ "$(zt_send "$a" $VIP 80 "" 2)" = b ]; }

zt_test "the labelled service goes through the waypoint (asked for VIP:80, with a's identity)"
m1=$(mesh_mark 1)
zt_expect_eq "$(zt_send "$a" $VIP 80 "" 5)" "$via_wp"

zt_test "... access log: HBONE to the waypoint's workload, found through its service's hostname"
line=$(mesh_wait_access 1 "$m1" "dst.hbone_addr=$VIP:80" 5)
mesh_expect_fields "$line" "dst.addr=$W:15008" "dst.service=app.$H" "dst.workload=wp" \
	"dst.identity=$(mesh_id waypoint)" "src.identity=$(mesh_id sa-a)"

zt_test "label removed (app.yaml rewritten): the service is reached directly again"
write_cfg app.yaml "$(app_yaml "")"
if eventually direct; then
	m1=$(mesh_mark 1)
	direct || zt_log "direct failed after it had worked"
	line=$(mesh_wait_access 1 "$m1" "dst.hbone_addr=$B:8080" 5)
	mesh_expect_fields "$line" "dst.addr=$B:15008" "dst.workload=b" "dst.identity=$(mesh_id sa-b)"
else
	zt_fail "still '$(zt_send "$a" $VIP 80 "" 2)' after 10 s; control log: $(clog | tail -3)"
fi

zt_test "a Namespace label in a new file (app.yaml untouched) brings the waypoint back"
write_cfg namespace.yaml "apiVersion: v1
kind: Namespace
metadata:
  name: default
  labels:
    istio.io/use-waypoint: wp"
if eventually through_waypoint; then zt_pass; else
	zt_fail "reply '$(zt_send "$a" $VIP 80 "" 2)'; control log: $(clog | tail -3)"
fi

zt_test "a service label naming no Gateway: refused with file and line; the last good state stays"
write_cfg app.yaml "$(app_yaml "  labels: {istio.io/use-waypoint: nothere}")"
if mesh_wait_grep "$(mesh_log 3 control)" \
	"configuration refused.*app\.yaml:7: service \"default/app\.$H\": istio\.io/use-waypoint: no Gateway default/nothere" 5 &&
	through_waypoint; then
	zt_pass
else
	zt_fail "$(clog | grep -i refused | tail -1); reply '$(zt_send "$a" $VIP 80 "" 2)'"
fi

zt_test "use-waypoint none on the service opts it out of the namespace's waypoint"
write_cfg app.yaml "$(app_yaml "  labels: {istio.io/use-waypoint: none}")"
if eventually direct; then zt_pass; else
	zt_fail "reply '$(zt_send "$a" $VIP 80 "" 2)'; control log: $(clog | tail -3)"
fi

zt_test "a Gateway of another class is skipped with a warning, not refused"
write_cfg ingress.yaml "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ingress, namespace: default}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]"
if mesh_wait_grep "$(mesh_log 3 control)" \
	"ingress\.yaml:2: Gateway default/ingress: skipped: gatewayClassName \"istio\" is not istio-waypoint" 5 &&
	! clog | grep -q "refused.*ingress\.yaml"; then
	zt_pass
else
	zt_fail "$(clog | grep -i ingress | tail -2)"
fi

mesh_finish
