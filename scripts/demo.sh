#!/usr/bin/env bash
# `make demo`: a two-node mesh on this machine, in network namespaces.
#
#   node1: ztunnel cni + ztunnel proxy; pods a (10.200.1.2) and b (10.200.1.3);
#          dnsmasq on 172.30.0.1:53, the resolver the proxies forward to
#   node2: ztunnel cni + ztunnel proxy; pods c (10.200.2.2) and w (10.200.2.3),
#          w a stand-in waypoint (the Go HBONE peer), not enrolled
#
# Pods are enrolled with `ztunnel enroll`, the way `kubectl label namespace
# ... dataplane-mode=ambient` enrolls them in Istio. The demo sends traffic
# a -> b (same node) and a -> c (across nodes), prints the access-log lines
# with both SPIFFE identities, captures the node link to show the bytes
# between nodes are TLS, then resolves service names from pod a through the
# proxy's DNS server (the node agent captures the pod's port 53; names
# outside the mesh go to dnsmasq), connects to a service by name, and sends
# a -> payments through its waypoint w. It removes everything on exit or
# Ctrl-C. No query or packet leaves the demo's namespaces: the proxies never
# read the host's /etc/resolv.conf.
#
# DEMO_CONTROL=1 (`make demo-control`): the same mesh run by our control
# plane, `ztunnel control`, alone in a third namespace (node3, 172.30.0.3):
# the proxies get configuration over delta xDS and certificates from its CA,
# authenticated by their node's token; the demo then adds a policy file to
# the control plane's directory and shows it enforced a moment later.
set -u
cd "$(dirname "$0")/.." || exit 1
ZT_BIN=${ZT_BIN:-$PWD/build/ztunnel}
ZT_PFX=${ZT_PFX:-ztdemo}
# shellcheck source=../tests/e2e/lib.sh
source tests/e2e/lib.sh
# Pod a's resolv.conf, bind-mounted over /etc/resolv.conf by `ip netns exec`.
NETNS_CONF=/etc/netns/$(zt_pod_ns 1 1)
demo_cleanup() {
  rm -rf "$NETNS_CONF"
  zt_cleanup
}
trap 'demo_cleanup' EXIT
trap 'demo_cleanup; trap - EXIT; exit 130' INT
trap 'demo_cleanup; trap - EXIT; exit 143' TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (network namespaces, iptables)"
[ -x "$ZT_BIN" ] || die "no binary at $ZT_BIN (run make)"

CONTROL=${DEMO_CONTROL:-0}
say "Building the stand-in waypoint: the Go HBONE peer (tests/interop/hbone_peer.go)"
PEER=${HBONE_PEER:-}
if [ -z "$PEER" ] || [ ! -x "$PEER" ]; then
  [ -x "${BUILD:-build}/interop/hbone_peer" ] || echo "go build (standard library only; the first time takes a minute)"
  PEER=$(tests/interop/build.sh) || die "cannot build the Go HBONE peer"
fi
echo "built: $PEER"

say "Building the network: 2 nodes, 4 pods"
zt_fabric_up
zt_node_add 1 >/dev/null
zt_node_add 2 >/dev/null
[ "$CONTROL" = 1 ] && zt_node_add 3 >/dev/null
pod_a=$(zt_pod_add 1 1 a)
pod_b=$(zt_pod_add 1 2 b)
pod_c=$(zt_pod_add 2 1 c)
pod_w=$(zt_pod_add 2 2 w)
A=$(zt_pod_ip 1 1) B=$(zt_pod_ip 1 2) C=$(zt_pod_ip 2 1) W=$(zt_pod_ip 2 2)
UPSTREAM=$(zt_node_ip 1)
CART_VIP=10.96.0.20 PAYMENTS_VIP=10.96.0.30 DNS_VIP=10.96.0.10
SVC=shop.svc.cluster.local
echo "node1 $(zt_node_ip 1): pods a=$A b=$B"
echo "node2 $(zt_node_ip 2): pods c=$C w=$W (w: the waypoint, not enrolled)"

say "Mesh configuration and a local CA (Istio cacerts layout)"
scripts/gen-cacerts.sh "$ZT_WORK/ca" >/dev/null || die "cannot create the CA"
mkdir -p "$ZT_WORK/config"
cat >"$ZT_WORK/config/mesh.yaml" <<EOF
workloads:
- {uid: demo-a, name: a, namespace: shop, serviceAccount: frontend, workloadIps: ["$A"], protocol: HBONE, node: node1}
- {uid: demo-b, name: b, namespace: shop, serviceAccount: cart, workloadIps: ["$B"], protocol: HBONE, node: node1,
   services: {"shop/cart.$SVC": {80: 8080}}}
- {uid: demo-c, name: c, namespace: shop, serviceAccount: payments, workloadIps: ["$C"], protocol: HBONE, node: node2,
   services: {"shop/payments.$SVC": {80: 8080}}}
- {uid: demo-w, name: w, namespace: shop, serviceAccount: waypoint, workloadIps: ["$W"], protocol: HBONE, node: node2}
services:
- {name: cart, namespace: shop, hostname: cart.$SVC, vips: ["/$CART_VIP"], ports: {80: 8080}}
- {name: payments, namespace: shop, hostname: payments.$SVC, vips: ["/$PAYMENTS_VIP"], ports: {80: 8080},
   waypoint: {destination: "/$W", hboneMtlsPort: 15008}}
EOF
sed 's/^/  /' "$ZT_WORK/config/mesh.yaml"

say "Upstream resolver for names outside the mesh: dnsmasq on node1 $UPSTREAM:53"
zt_bg "$(zt_node_ns 1)" dnsmasq dnsmasq -k -u root --pid-file= --no-resolv --no-hosts \
  --listen-address="$UPSTREAM" --bind-interfaces --port 53 --log-queries --log-facility=- \
  --local=/cluster.local/ --address=/example.internal/192.0.2.10
# The proxies forward there and nowhere else (never the host's resolv.conf).
printf 'nameserver %s\noptions timeout:2 attempts:1\n' "$UPSTREAM" >"$ZT_WORK/upstream.conf"
echo "ZTUNNEL_RESOLV_CONF for the proxies: $(head -1 "$ZT_WORK/upstream.conf")"
echo "it knows example.internal (192.0.2.10) and, like kube-dns, answers NXDOMAIN for other *.cluster.local"

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
  env_n=(INPOD_UDS="$ZT_WORK/n$n/ztunnel.sock" ZTUNNEL_CNI_DIR="$ZT_WORK/n$n/cni" NODE_NAME="node$n"
    ZTUNNEL_RESOLV_CONF="$ZT_WORK/upstream.conf")
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
echo "and in w, the waypoint: HBONE server on $W:15008 as spiffe://cluster.local/ns/shop/sa/waypoint"
echo "(it answers each CONNECT with what reached it: its :authority and the client's identity)"
zt_bg "$pod_w" waypoint "$PEER" server -ca-dir "$ZT_WORK/ca" -id spiffe://cluster.local/ns/shop/sa/waypoint \
  -listen "$W:15008" -timeout 0 -describe
for _ in $(seq 100); do grep -q "listening on" "$ZT_WORK/waypoint.log" && break; sleep 0.1; done
grep -q "listening on" "$ZT_WORK/waypoint.log" || die "waypoint did not start: $(cat "$ZT_WORK/waypoint.log")"

say "a -> b (same node): plain TCP from the app, HBONE between the proxies"
echo "reply: $(zt_send "$pod_a" "$B" 8080 'hello from a to b')"

say "a -> c (across nodes), capturing the node link meanwhile"
zt_ns_exec "$(zt_node_ns 1)" timeout 10 tcpdump -i eth0 -s 0 -U -w "$ZT_WORK/link.pcap" \
  "tcp port 15008" >/dev/null 2>&1 &
dump=$!
sleep 1
secret="card=4111-1111-1111-1111"
echo "reply: $(zt_send "$pod_a" "$C" 8080 "$secret")"
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

# mark N: lines in node N's proxy log now; access_since N MARK: the access
# lines logged after MARK.
mark() { wc -l <"$ZT_WORK/proxy$1.log"; }
access_since() {
  tail -n +"$(($2 + 1))" "$ZT_WORK/proxy$1.log" | grep -a 'connection complete' | cut -f5 | sed 's/^/  /'
}
# in_a CMD...: run CMD in pod a, resolving names as a Kubernetes pod does.
in_a() { zt_ns_exec "$pod_a" "$@"; }

say "Name resolution in pod a: a Kubernetes resolv.conf; the node agent captures port 53"
mkdir -p "$NETNS_CONF"
printf 'search %s svc.cluster.local cluster.local\nnameserver %s\noptions ndots:5\n' "$SVC" "$DNS_VIP" \
  >"$NETNS_CONF/resolv.conf"
echo "$NETNS_CONF/resolv.conf (pod a's /etc/resolv.conf; nothing listens on $DNS_VIP):"
sed 's/^/  /' "$NETNS_CONF/resolv.conf"
echo "pod a's nat rules from the node agent (port 53 -> the proxy's DNS server on 15053):"
in_a iptables-save -t nat | grep -- '--dport 53' | sed 's/^/  /'
for _ in $(seq 50); do in_a dig +time=1 +tries=1 +short cart.$SVC >/dev/null 2>&1 && break; sleep 0.1; done
# digq ARGS: dig in pod a, printing the answer and the server that gave it.
digq() {
  echo "\$ dig $*"
  in_a dig +time=3 +tries=1 +noall +answer +stats "$@" |
    grep -v -E '^;; (Query time|WHEN|MSG SIZE)|^$' | sed 's/^/  /'
}
digq +search cart
digq payments.shop
echo "the service VIPs, answered by the proxy in pod a from the mesh configuration"

say "a -> cart by name: resolved through the mesh, then the service VIP to its endpoint b"
m1=$(mark 1)
echo "\$ socat - TCP:cart:80    (in pod a)"
echo "reply: $(printf 'hello cart' | in_a timeout 5 socat -t 5 - TCP:cart:80,connect-timeout=5)"
sleep 0.3
echo "--- node1 (the VIP $CART_VIP:80 became b $B:8080; dst.service names the service)"
access_since 1 "$m1"

say "A name outside the mesh: forwarded to the upstream resolver (dnsmasq on node1)"
digq +search example.internal
for _ in $(seq 20); do grep -q 'config example.internal ' "$ZT_WORK/dnsmasq.log" && break; sleep 0.1; done
echo "dnsmasq's log: the search list's expansions (NXDOMAIN there), then the name itself;"
echo "the queries come from pod a's address: the proxy forwards from inside the pod"
grep -a -E 'example\.internal' "$ZT_WORK/dnsmasq.log" | grep -a -E 'query\[|config example\.internal ' |
  sed -E 's/^dnsmasq\[[0-9]+\]: //; s/^/  /'

say "A waypoint in the path: payments has waypoint w ($W:15008)"
m1=$(mark 1)
m2=$(mark 2)
echo "\$ socat - TCP:payments:80    (in pod a)"
echo "reply: $(in_a timeout 5 socat -t 5 - TCP:payments:80,connect-timeout=5 </dev/null)"
echo "(the waypoint's answer: it was asked for the VIP, by a's identity; c was not contacted)"
sleep 0.3
echo "--- node1 (HBONE to the waypoint w:15008, for the VIP; w's identity expected)"
access_since 1 "$m1"
echo "--- node2"
n2=$(access_since 2 "$m2")
echo "${n2:-  (none: the waypoint is not enrolled, it terminates HBONE itself, as in Istio)}"
echo "--- the waypoint's log"
grep -a "authority=$PAYMENTS_VIP" "$ZT_WORK/waypoint.log" | sed 's/^/  /'

if [ "$CONTROL" = 1 ]; then
  say "Control plane: what it served, and which certificates it issued to whom"
  grep -a -E "xDS stream from|issued" "$ZT_WORK/control.log" | cut -f4- | sed 's/^/  /'

  say "A policy file dropped into the control plane's directory: deny port 8080 in namespace shop"
  printf '%s\n' "policies:" \
    "- {name: deny-8080, namespace: shop, scope: Namespace, action: Deny, rules: [[[ {destinationPorts: [8080]} ]]]}" \
    >"$ZT_WORK/config/.deny.tmp"
  mv "$ZT_WORK/config/.deny.tmp" "$ZT_WORK/config/deny.yaml"
  sleep 1
  reply=$(zt_send "$pod_a" "$C" 8080 'hello again' 2)
  echo "a -> c now: ${reply:-refused (closed without a reply)}"
  grep -a "deny-8080" "$ZT_WORK/proxy2.log" | tail -1 | cut -f4- | sed 's/^/  /'
fi

say "Done; cleaning up"
