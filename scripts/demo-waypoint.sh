#!/usr/bin/env bash
# `make demo-waypoint`: the mesh's own L7 waypoint, `ztunnel waypoint`,
# in front of a "reviews" service with two versions, on this machine in
# network namespaces.
#
#   node1: ztunnel cni + proxy; pod productpage (10.200.1.2), the client
#   node2: ztunnel cni + proxy; pods reviews-v1 (10.200.2.2) and reviews-v2
#          (10.200.2.3), each Python's http.server answering with its name;
#          pod waypoint (10.200.2.4), not enrolled, running `ztunnel waypoint`
#
# The configuration file holds the mesh (our schema) and an HTTPRoute
# pasted as a user writes it: requests with `x-user: jason` go to v2, the
# rest are split 90/10 between v1 and v2. The demo sends 100 requests and
# counts the versions, sends one as jason, and prints one request's access
# lines at the client's ztunnel, the waypoint and the server's ztunnel.
# It removes everything on exit or Ctrl-C.
set -u
cd "$(dirname "$0")/.." || exit 1
export ZT_BIN=${ZT_BIN:-$PWD/build/ztunnel}
export ZT_PFX=${ZT_PFX:-ztwp}
# shellcheck source=../tests/e2e/mesh.sh
source tests/e2e/mesh.sh
zt_trap_cleanup

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (network namespaces, iptables)"
[ -x "$ZT_BIN" ] || die "no binary at $ZT_BIN (run make)"

PP=10.200.1.2 R1=10.200.2.2 R2=10.200.2.3 WP=10.200.2.4 VIP=10.96.0.50
H=default.svc.cluster.local

say "Building the network: 2 nodes, 4 pods"
zt_node_add 1 >/dev/null && zt_node_add 2 >/dev/null || die "cannot build the nodes"
pp=$(zt_pod_add 1 1 productpage) && r1=$(zt_pod_add 2 1 reviews-v1) && r2=$(zt_pod_add 2 2 reviews-v2) &&
	wp=$(zt_pod_add 2 3 waypoint) || die "cannot add the pods"
mesh_ca || die "cannot make the CA"

say "The configuration: the mesh, and an HTTPRoute as users paste it"
cat >"$ZT_WORK/n1.yaml" <<Y
workloads:
- {uid: pp, name: productpage, namespace: default, serviceAccount: productpage, workloadIps: ["$PP"],
   protocol: HBONE, node: node1}
- {uid: r1, name: reviews-v1, namespace: default, serviceAccount: reviews, workloadIps: ["$R1"],
   protocol: HBONE, node: node2,
   services: {"default/reviews.$H": {9080: 9080}, "default/reviews-v1.$H": {9080: 9080}}}
- {uid: r2, name: reviews-v2, namespace: default, serviceAccount: reviews, workloadIps: ["$R2"],
   protocol: HBONE, node: node2,
   services: {"default/reviews.$H": {9080: 9080}, "default/reviews-v2.$H": {9080: 9080}}}
- {uid: wp, name: waypoint, namespace: default, serviceAccount: waypoint, workloadIps: ["$WP"],
   protocol: HBONE, node: node2}
services:
- {name: reviews, namespace: default, hostname: reviews.$H, vips: ["/$VIP"],
   ports: {9080: {targetPort: 9080, appProtocol: http}}, waypoint: {destination: "/$WP", hboneMtlsPort: 15008}}
- {name: reviews-v1, namespace: default, hostname: reviews-v1.$H, ports: {9080: 9080}}
- {name: reviews-v2, namespace: default, hostname: reviews-v2.$H, ports: {9080: 9080}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
  namespace: default
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: reviews
    port: 9080
  rules:
  - matches:
    - headers:
      - name: x-user
        value: jason
    backendRefs:
    - name: reviews-v2
      port: 9080
  - backendRefs:
    - name: reviews-v1
      port: 9080
      weight: 90
    - name: reviews-v2
      port: 9080
      weight: 10
Y
sed -n '/^---$/,$p' "$ZT_WORK/n1.yaml"
cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"

say "Starting the node agents and proxies, enrolling the pods"
mesh_node_up 1 && mesh_node_up 2 || die "a node did not start (logs in $ZT_WORK)"
mesh_enroll 1 "$pp" pp productpage productpage && mesh_enroll 2 "$r1" r1 reviews reviews-v1 &&
	mesh_enroll 2 "$r2" r2 reviews reviews-v2 || die "enrollment failed"
zt_bg "$r1" http-r1 python3 tests/e2e/http_echo.py reviews-v1 9080 && zt_wait_port "$r1" 127.0.0.1 9080 5 &&
	zt_bg "$r2" http-r2 python3 tests/e2e/http_echo.py reviews-v2 9080 && zt_wait_port "$r2" 127.0.0.1 9080 5 ||
	die "the reviews servers did not start"

say "Starting the waypoint in its own pod: ztunnel waypoint (identity spiffe://cluster.local/ns/default/sa/waypoint)"
mesh_waypoint_start 1 "$wp" waypoint waypoint || die "the waypoint did not start ($ZT_WORK/waypoint1.log)"
grep -E $'\troutes\t' "$ZT_WORK/waypoint1.log" | sed 's/^/  /'

say "100 requests from productpage to reviews:9080 (a 90/10 split, one kept-alive connection)"
zt_ns_exec "$pp" python3 - "$VIP" <<'PY'
import http.client, sys
c = {}
conn = http.client.HTTPConnection(sys.argv[1], 9080, timeout=10)
for i in range(100):
    conn.request("GET", "/reviews/%d" % i)
    body = conn.getresponse().read().decode()
    name = [l[7:] for l in body.splitlines() if l.startswith("server=")][0]
    c[name] = c.get(name, 0) + 1
for k in sorted(c):
    print("  %-11s %3d requests" % (k, c[k]))
PY

say "One request as jason (header x-user: jason): the header route sends it to v2"
m1=$(mesh_mark 1) m2=$(mesh_mark 2) mw=$(wc -l <"$ZT_WORK/waypoint1.log")
zt_ns_exec "$pp" curl -s -H "x-user: jason" "http://$VIP:9080/reviews/jason" | grep -E '^(server|path|h:x-user)=' | sed 's/^/  /'

say "Its access lines: the client's ztunnel (node1), the waypoint, the server's ztunnel (node2)"
sleep 1
echo "node1 ztunnel:"
mesh_since 1 "$m1" | grep "connection complete" | tail -1 | sed 's/^/  /'
echo "waypoint:"
tail -n +"$((mw + 1))" "$ZT_WORK/waypoint1.log" | grep "request complete" | tail -1 | sed 's/^/  /'
echo "node2 ztunnel:"
mesh_since 2 "$m2" | grep "connection complete" | tail -1 | sed 's/^/  /'
echo "(node1's line closes with the client's connection; the waypoint logs each request,"
echo " node2 sees the waypoint's identity as the source)"

say "The waypoint's istio_requests_total (reporter waypoint)"
zt_ns_exec "$wp" curl -s http://127.0.0.1:15020/metrics | grep '^istio_requests_total' |
	sed -E 's/.*destination_service="([^"]*)".*destination_service_name="([^"]*)".*response_code="([^"]*)".* ([0-9]+)$/  service \2 (\1) code \3: \4/'

say "Done; cleaning up"
