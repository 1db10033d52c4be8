#!/usr/bin/env bash
# `make demo`: a two-node mesh on this machine, in network namespaces.
#
#   node1: ztunnel cni + ztunnel proxy; pods a (10.200.1.2) and b (10.200.1.3)
#   node2: ztunnel cni + ztunnel proxy; pod c (10.200.2.2)
#
# Pods are enrolled with `ztunnel enroll`, the way `kubectl label namespace
# ... dataplane-mode=ambient` enrolls them in Istio. The demo sends traffic
# a -> b (same node) and a -> c (across nodes), prints the access-log lines
# with both SPIFFE identities, captures the node link to show the bytes
# between nodes are TLS, and removes everything on exit or Ctrl-C.
#
# DEMO_CONTROL=1 (`make demo-control`): the same mesh run by our control
# plane, `ztunnel control`, alone in a third namespace (node3, 172.30.0.3):
# the proxies get configuration over delta xDS and certificates from its CA,
# authenticated by their node's token; the demo then adds a policy file to
# the control plane's directory and shows it enforced a moment later.
set -u
cd "$(dirname "$0")/.."
ZT_BIN=${ZT_BIN:-$PWD/build/ztunnel}
ZT_PFX=${ZT_PFX:-ztdemo}
# shellcheck source=../tests/e2e/lib.sh
source tests/e2e/lib.sh
zt_trap_cleanup

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (network namespaces, iptables)"
[ -x "$ZT_BIN" ] || die "no binary at $ZT_BIN (run make)"

CONTROL=${DEMO_CONTROL:-0}
say "Building the network: 2 nodes, 3 pods"
zt_fabric_up
zt_node_add 1 >/dev/null
zt_node_add 2 >/dev/null
[ "$CONTROL" = 1 ] && zt_node_add 3 >/dev/null
pod_a=$(zt_pod_add 1 1 a)
pod_b=$(zt_pod_add 1 2 b)
pod_c=$(zt_pod_add 2 1 c)
echo "node1 $(zt_node_ip 1): pods a=$(zt_pod_ip 1 1) b=$(zt_pod_ip 1 2)"
echo "node2 $(zt_node_ip 2): pod  c=$(zt_pod_ip 2 1)"

say "Mesh configuration and a local CA (Istio cacerts layout)"
scripts/gen-cacerts.sh "$ZT_WORK/ca" >/dev/null || die "cannot create the CA"
mkdir -p "$ZT_WORK/config"
cat >"$ZT_WORK/config/mesh.yaml" <<EOF
workloads:
- {uid: demo-a, name: a, namespace: shop, serviceAccount: frontend, workloadIps: ["$(zt_pod_ip 1 1)"], protocol: HBONE, node: node1}
- {uid: demo-b, name: b, namespace: shop, serviceAccount: cart, workloadIps: ["$(zt_pod_ip 1 2)"], protocol: HBONE, node: node1}
- {uid: demo-c, name: c, namespace: shop, serviceAccount: payments, workloadIps: ["$(zt_pod_ip 2 1)"], protocol: HBONE, node: node2}
EOF
sed 's/^/  /' "$ZT_WORK/config/mesh.yaml"

if [ "$CONTROL" = 1 ]; then
  say "Control plane: ztunnel control on node3 $(zt_node_ip 3):15012 (xDS + CA, one TLS port)"
  for n in 1 2; do
    echo "node$n $(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >>"$ZT_WORK/node-tokens"
    awk -v n="node$n" '$1 == n {print $2}' "$ZT_WORK/node-tokens" >"$ZT_WORK/token$n"
  done
  echo "node tokens: $(cut -d' ' -f1 "$ZT_WORK/node-tokens" | tr '\n' ' ')(one secret per node)"
  zt_bg "$(zt_node_ns 3)" control "$ZT_BIN" control --listen 0.0.0.0:15012 \
    --config-dir "$ZT_WORK/config" --ca-dir "$ZT_WORK/ca" --node-tokens "$ZT_WORK/node-tokens"
  for _ in $(seq 50); do grep -q "listening on" "$ZT_WORK/control.log" && break; sleep 0.1; done
  grep -q "listening on" "$ZT_WORK/control.log" || die "control plane did not start: $(cat "$ZT_WORK/control.log")"
  cut -f4- "$ZT_WORK/control.log" | sed 's/^/  /'
fi

for n in 1 2; do
  mkdir -p "$ZT_WORK/n$n"
  env_n=(INPOD_UDS="$ZT_WORK/n$n/ztunnel.sock" ZTUNNEL_CNI_DIR="$ZT_WORK/n$n/cni" NODE_NAME="node$n")
  if [ "$CONTROL" = 1 ]; then
    env_n+=(XDS_ADDRESS="https://$(zt_node_ip 3):15012" XDS_ROOT_CA="$ZT_WORK/ca/root-cert.pem"
      AUTH_TOKEN="$ZT_WORK/token$n" POD_NAME="ztunnel-node$n" POD_NAMESPACE=istio-system
      INSTANCE_IP="$(zt_node_ip $n)")
  else
    env_n+=(LOCAL_XDS_PATH="$ZT_WORK/config/mesh.yaml" LOCAL_CA_DIR="$ZT_WORK/ca")
  fi
  zt_bg "$(zt_node_ns $n)" "cni$n" env "${env_n[@]}" "$ZT_BIN" cni
  zt_bg "$(zt_node_ns $n)" "proxy$n" env "${env_n[@]}" "$ZT_BIN" proxy
done
for n in 1 2; do
  for _ in $(seq 50); do grep -q "snapshot received" "$ZT_WORK/proxy$n.log" && break; sleep 0.1; done
done
for n in 1 2; do
  for _ in $(seq 50); do [ -S "$ZT_WORK/n$n/cni/agent.sock" ] && break; sleep 0.1; done
done

say "Enrolling the pods (ztunnel enroll)"
enroll() {
  INPOD_UDS="$ZT_WORK/n$1/ztunnel.sock" ZTUNNEL_CNI_DIR="$ZT_WORK/n$1/cni" \
    "$ZT_BIN" enroll --netns "$2" --uid "$3" --name "$4" --namespace shop --service-account "$5"
}
enroll 1 "$pod_a" demo-a a frontend || die "enroll a failed"
enroll 1 "$pod_b" demo-b b cart || die "enroll b failed"
enroll 2 "$pod_c" demo-c c payments || die "enroll c failed"

say "Apps: an echo server on :8080 in b and c (they know nothing of the mesh)"
zt_echo_server "$pod_b" 8080 || die "echo server in b"
zt_echo_server "$pod_c" 8080 || die "echo server in c"

say "a -> b (same node): plain TCP from the app, HBONE between the proxies"
echo "reply: $(zt_send "$pod_a" "$(zt_pod_ip 1 2)" 8080 'hello from a to b')"

say "a -> c (across nodes), capturing the node link meanwhile"
zt_ns_exec "$(zt_node_ns 1)" timeout 10 tcpdump -i eth0 -s 0 -U -w "$ZT_WORK/link.pcap" \
  "tcp port 15008" >/dev/null 2>&1 &
dump=$!
sleep 1
secret="card=4111-1111-1111-1111"
echo "reply: $(zt_send "$pod_a" "$(zt_pod_ip 2 1)" 8080 "$secret")"
sleep 0.5
kill -INT "$dump" 2>/dev/null
wait "$dump" 2>/dev/null

say "What crossed the wire between node1 and node2"
bytes=$(stat -c %s "$ZT_WORK/link.pcap" 2>/dev/null || echo 0)
records=$(od -An -v -tx1 "$ZT_WORK/link.pcap" | tr -d ' \n' | grep -o '170303' | wc -l)
if grep -qa "$secret" "$ZT_WORK/link.pcap"; then
  echo "PLAINTEXT SEEN on the node link: the demo failed"
  exit 1
fi
echo "captured $bytes bytes on node1's eth0 (port 15008): $records TLS application-data record headers,"
echo "and the string '$secret' does not appear: the link carries TLS 1.3 only"

sleep 0.3
say "Access log (proxy on node1, then node2)"
for n in 1 2; do
  echo "--- node$n"
  grep -a 'connection complete' "$ZT_WORK/proxy$n.log" | cut -f5 | sed 's/^/  /'
done

if [ "$CONTROL" = 1 ]; then
  say "Control plane: what it served, and which certificates it issued to whom"
  grep -a -E "xDS stream from|issued" "$ZT_WORK/control.log" | cut -f4- | sed 's/^/  /'

  say "A policy file dropped into the control plane's directory: deny port 8080 in namespace shop"
  printf '%s\n' "policies:" \
    "- {name: deny-8080, namespace: shop, scope: Namespace, action: Deny, rules: [[[ {destinationPorts: [8080]} ]]]}" \
    >"$ZT_WORK/config/.deny.tmp"
  mv "$ZT_WORK/config/.deny.tmp" "$ZT_WORK/config/deny.yaml"
  sleep 1
  reply=$(zt_send "$pod_a" "$(zt_pod_ip 2 1)" 8080 'hello again' 2)
  echo "a -> c now: ${reply:-refused (closed without a reply)}"
  grep -a "deny-8080" "$ZT_WORK/proxy2.log" | tail -1 | cut -f4- | sed 's/^/  /'
fi

say "Done; cleaning up"
