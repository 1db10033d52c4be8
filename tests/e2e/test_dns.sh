#!/usr/bin/env bash
# The DNS proxy on 15053 in each pod (wire facts 9.1): mesh names answered
# from the proxy's state with Istio's search-domain expansion, everything
# else forwarded to an upstream resolver (dnsmasq on the node) with
# truncation and TCP fallback, malformed queries answered FORMERR while the
# proxy goes on serving. Queries come from real resolvers (dig, drill) in a
# pod whose resolv.conf is a Kubernetes pod's. Needs root.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

A=10.200.1.2 B=10.200.1.3 SRV=10.200.1.4 DB0=10.200.2.2 DB1=10.200.2.3
VIP_EXT=10.96.0.50 VIP_GONE=10.96.0.51 VIP_VIAWP=10.96.0.52 KUBE_DNS=10.96.0.53
VIP=10.96.0.10 VIP6=fd00:96::10 VIP_OTHER=10.96.1.10 VIP_SE=240.240.0.7
UP=$(zt_node_ip 1)
zt_test "setup: pod a on node 1 with a Kubernetes resolv.conf; dnsmasq on node 1 as upstream"
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) || return 1
	b=$(zt_pod_add 1 2 b) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1, canonicalName: client-app, canonicalRevision: v7}
		- uid: db-0
		  name: db-0
		  namespace: default
		  workloadIps: ["$DB0"]
		  protocol: HBONE
		  node: node2
		  services: {"default/db.default.svc.cluster.local": {5432: 5432}}
		- uid: db-1
		  name: db-1
		  namespace: default
		  workloadIps: ["$DB1"]
		  protocol: HBONE
		  node: node2
		  services: {"default/db.default.svc.cluster.local": {5432: 5432}}
		- {uid: ext-0, name: ext-0, namespace: default, hostname: backend.corp.test, protocol: TCP, services: {"default/ext.corp.test": {80: 8080}}}
		- {uid: gone-0, name: gone-0, namespace: default, hostname: nowhere.corp.test, protocol: TCP, services: {"default/gone.corp.test": {80: 8080}}}
		- {uid: wpd, name: wpd, namespace: default, serviceAccount: waypoint, hostname: wp.corp.test, protocol: HBONE}
		services:
		- {name: echo, namespace: default, hostname: echo.default.svc.cluster.local, vips: ["/$VIP", "/$VIP6"], ports: {80: 8080}}
		- {name: echo, namespace: other, hostname: echo.other.svc.cluster.local, vips: ["/$VIP_OTHER"], ports: {80: 8080}}
		- {name: db, namespace: default, hostname: db.default.svc.cluster.local, ports: {5432: 5432}}
		- {name: api, namespace: default, hostname: "*.api.example.com", vips: ["/$VIP_SE"], ports: {443: 443}}
		- {name: ext, namespace: default, hostname: ext.corp.test, vips: ["/$VIP_EXT"], ports: {80: 8080}}
		- {name: gone, namespace: default, hostname: gone.corp.test, vips: ["/$VIP_GONE"], ports: {80: 8080}}
		- {name: viawp, namespace: default, hostname: viawp.corp.test, vips: ["/$VIP_VIAWP"], ports: {80: 8080}, waypoint: {destination: {namespace: default, hostname: wp.corp.test}, hboneMtlsPort: 15008}}
	Y
	# Endpoints known by hostname only (a ServiceEntry with DNS
	# resolution): the proxy resolves them when a connection picks one.
	srv=$(zt_pod_add 1 3 srv) || return 1
	zt_bg "$srv" ext-server socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:"echo ext-backend"
	zt_wait_port "$srv" 127.0.0.1 8080 5 || return 1
	# The upstream: names the mesh does not have, a TXT record too large
	# for a 512-byte UDP reply, every query logged.
	local txt=() i
	for i in $(seq 1 12); do txt+=(--txt-record="big.test,record-$i-$(printf 'x%.0s' $(seq 1 60))"); done
	zt_bg "$(zt_node_ns 1)" dnsmasq dnsmasq -k -u root --pid-file= --no-resolv --no-hosts \
		--listen-address="$UP" --bind-interfaces --port 53 --log-queries --log-facility=- \
		--local=/test/ --local=/cluster.local/ --address=/external.test/192.0.2.55 \
		--host-record=backend.corp.test,"$SRV",60 --host-record=wp.corp.test,"$SRV",60 "${txt[@]}"
	echo "$ZT_BG_PID" >"$ZT_WORK/dnsmasq.pidfile"
	printf 'nameserver %s\noptions timeout:2 attempts:1\n' "$UP" >"$ZT_WORK/upstream.conf"
	MESH_RESOLV_CONF="$ZT_WORK/upstream.conf" mesh_node_up 1 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 1 "$b" b sa-b || return 1
	# A pod's resolv.conf as the kubelet writes it: the cluster DNS
	# service's VIP (nothing there: the node agent's capture rules send
	# port 53 to the proxy's 15053), the namespace's search list, ndots 5.
	mkdir -p "/etc/netns/$a"
	printf 'search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver %s\noptions ndots:5\n' \
		"$KUBE_DNS" >"/etc/netns/$a/resolv.conf"
	zt_wait_udp_dns "$a" 127.0.0.1 || return 1
}
# zt_wait_udp_dns NETNS IP: wait until a DNS server answers on IP:15053.
zt_wait_udp_dns() {
	local deadline=$(($(zt_now_ms) + 10000))
	while [ "$(zt_now_ms)" -lt "$deadline" ]; do
		zt_ns_exec "$1" dig +time=1 +tries=1 @"$2" -p 15053 . NS >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	zt_log "no DNS server on $2:15053 in $1"
	return 1
}
cleanup_netns_conf() { rm -rf "/etc/netns/$(zt_pod_ns 1 1)"; }
trap 'cleanup_netns_conf; zt_cleanup' EXIT
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# dig in pod a, to port 53 of the resolv.conf's server as any app would:
# captured, answered by the proxy; the resolver's search list applies.
q() { zt_ns_exec "$a" dig +time=3 +tries=1 "$@"; }

for name in echo echo.default echo.default.svc echo.default.svc.cluster.local; do
	zt_test "'$name' from a pod in default (search list, ndots 5) resolves to the service VIP"
	# A name the search list expanded comes with a CNAME first (Istio's
	# answer): the address is the last line.
	zt_expect_eq "$(q +search +short "$name" A | tail -1)" "$VIP"
done

zt_test "the answer is authoritative, TTL 30, on the name asked"
out=$(q +noall +answer +comments echo.default.svc.cluster.local A)
if [[ $out == *"flags: qr aa rd ra"* ]] &&
	echo "$out" | grep -qP "^echo\.default\.svc\.cluster\.local\.\s+30\s+IN\s+A\s+$VIP$"; then
	zt_pass
else zt_fail "$out"; fi

zt_test "another namespace's service by <svc>.<ns>; AAAA gives the IPv6 VIP"
zt_expect_eq "$(q +search +short echo.other A | tail -1) $(q +search +short echo AAAA)" "$VIP_OTHER $VIP6"

zt_test "a search-expanded name gets a CNAME to the service name, which holds the A record"
out=$(q +noall +answer echo.default.svc.cluster.local.default.svc.cluster.local A)
if echo "$out" | grep -qP "CNAME\s+echo\.default\.svc\.cluster\.local\.$" &&
	echo "$out" | grep -qP "^echo\.default\.svc\.cluster\.local\.\s+30\s+IN\s+A\s+$VIP$"; then
	zt_pass
else zt_fail "$out"; fi

zt_test "headless service: one A record per endpoint"
zt_expect_eq "$(q +search +short db A | sort | tr '\n' ' ')" "$DB0 $DB1 "

zt_test "a headless service's pod by name (<pod>.<service>, as a StatefulSet's)"
zt_expect_eq "$(q +search +short db-1.db A | tail -1) $(q +short db-0.db.default.svc.cluster.local A)" "$DB1 $DB0"

zt_test "wildcard ServiceEntry host: any name under it"
zt_expect_eq "$(q +short v2.api.example.com A) $(q +short x.y.api.example.com A)" "$VIP_SE $VIP_SE"

zt_test "a known name without records of that type: NOERROR, no answer (headless db has no IPv6)"
out=$(q +noall +comments db.default.svc.cluster.local AAAA)
if [[ $out == *"status: NOERROR"* ]] && [[ $out == *"ANSWER: 0"* ]] && [[ $out == *" aa "* ]]; then
	zt_pass
else zt_fail "$out"; fi

zt_test "a name outside the mesh is forwarded to the upstream and answered from there"
zt_expect_eq "$(q +short external.test A)" "192.0.2.55"
mesh_wait_grep "$ZT_WORK/dnsmasq.log" "query\[A\] external.test from $A" 5 && zt_pass ||
	zt_fail "dnsmasq did not see the query from the pod's address"

zt_test "an unknown name gets the upstream's NXDOMAIN; a type the proxy does not answer is forwarded"
out=$(q +noall +comments nosuch.test A)
mx=$(q +noall +comments echo.default.svc.cluster.local MX)
if [[ $out == *"status: NXDOMAIN"* ]] && [[ $mx == *"status: NXDOMAIN"* ]] &&
	grep -q 'query\[MX\] echo.default.svc.cluster.local' "$ZT_WORK/dnsmasq.log"; then
	zt_pass
else zt_fail "$out / $mx"; fi

zt_test "a reply too large for UDP comes truncated; dig asks again over TCP and gets all of it"
out=$(q +noedns +noall +answer +comments big.test TXT 2>&1)
n=$(echo "$out" | grep -c 'IN	TXT')
if [[ $out == *"Truncated, retrying in TCP mode"* ]] && [ "$n" = 12 ]; then zt_pass; else
	zt_fail "$n records: $out"
fi

zt_test "over TCP directly, and over [::1]:15053, with drill as a second resolver"
t=$(q +tcp +short echo A)
d=$(zt_ns_exec "$a" drill -p 15053 @::1 echo.default.svc.cluster.local A | grep -P '^echo.*\tA\t' | awk '{print $5}')
zt_expect_eq "$t $d" "$VIP $VIP"

if [ "$MESH_REDIRECT" = ebpf ]; then
	# Every dig query is a socket of its own, recorded by the programs.
	zt_test "the queries went through the eBPF redirection: their original destinations recorded"
	n=$(mesh_ebpf_orig_count 53)
	[ "$n" -ge 10 ] && zt_pass || zt_fail "the programs recorded $n sockets to port 53"
else
	zt_test "the replies came through the capture rules: their packet counters moved"
	n=$(mesh_rule_packets "$a" "$MESH_NAT" "$MESH_OUT" 'dp(t:|ort )53 .*15053' | awk '{s += $1} END {print s + 0}')
	[ "$n" -ge 10 ] && zt_pass || zt_fail "REDIRECT rules counted $n packets"
fi

zt_test "a malformed query gets FORMERR with its id; the proxy goes on answering"
rc=$(zt_ns_exec "$a" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(bytes([0xab, 0xcd, 0x01, 0x00, 0x00, 0x01]) + b"\xff" * 30, ("127.0.0.1", 15053))
r = s.recv(512)
print("id=%02x%02x qr=%d rcode=%d" % (r[0], r[1], r[2] >> 7, r[3] & 15))
')
zt_expect_eq "$rc $(q +short echo.default.svc.cluster.local A)" "id=abcd qr=1 rcode=1 $VIP"

zt_test "a TCP client that sends half a query and stalls does not block others"
zt_bg "$a" stall python3 -c '
import socket, time
s = socket.create_connection(("127.0.0.1", 15053))
s.sendall(b"\x00\x40\x12")
time.sleep(30)
'
zt_expect_eq "$(q +tcp +short echo.default.svc.cluster.local A)" "$VIP"

zt_test "metrics: requests by type and protocol with the pod's canonical labels, upstream counts"
m=$(zt_ns_exec "$(zt_node_ns 1)" curl -s -m 5 localhost:15020/metrics)
lbl='request_query_type="a",request_protocol="udp",source_canonical_service="client-app",source_canonical_revision="v7"'
req=$(echo "$m" | grep -F "istio_dns_requests_total{$lbl}" | awk '{print $2}')
up=$(echo "$m" | grep -F "istio_dns_upstream_requests_total{$lbl}" | awk '{print $2}')
tcp=$(echo "$m" | grep -F 'istio_dns_requests_total{request_query_type="txt",request_protocol="tcp"' | awk '{print $2}')
hist=$(echo "$m" | grep -F "istio_dns_upstream_request_duration_seconds_count{$lbl}" | awk '{print $2}')
if [ "${req:-0}" -ge 10 ] && [ "${up:-0}" -ge 2 ] && [ "${tcp:-0}" -ge 1 ] && [ "${hist:-0}" = "$up" ]; then
	zt_pass
else zt_fail "requests=$req upstream=$up tcp-txt=$tcp histogram=$hist"; fi

zt_test "a service whose endpoint is known by hostname: resolved from the proxy's namespace, then dialed"
m1=$(mesh_mark 1)
zt_expect_eq "$(zt_send "$a" $VIP_EXT 80 "" 5)" "ext-backend"
line=$(mesh_wait_access 1 "$m1" "direction=outbound" 5)
mesh_expect_fields "$line" "dst.addr=$SRV:8080" "dst.service=ext.corp.test"
grep -q "query\[A\] backend.corp.test from $UP" "$ZT_WORK/dnsmasq.log" && zt_pass ||
	zt_fail "dnsmasq did not see the lookup from the node's address"

# Each worker keeps its own cache (as its own HBONE pool): six more
# connections ask at most once more per worker (2), within the TTL (60 s).
zt_test "later connections use the cached answer; istio_on_demand_dns_total counts every lookup"
n0=$(grep -c "query\[A\] backend.corp.test" "$ZT_WORK/dnsmasq.log")
got=""
for i in 1 2 3 4 5 6; do got="$got$(zt_send "$a" $VIP_EXT 80 "" 5) "; done
n1=$(grep -c "query\[A\] backend.corp.test" "$ZT_WORK/dnsmasq.log")
odd=$(zt_ns_exec "$(zt_node_ns 1)" curl -s -m 5 localhost:15020/metrics |
	grep '^istio_on_demand_dns_total{' | grep 'hostname="backend.corp.test"' |
	grep 'source_workload="a"' | grep 'source_principal="spiffe://cluster.local/ns/default/sa/sa-a"' |
	awk '{print $2}')
if [ "$got" = "$(printf 'ext-backend %.0s' 1 2 3 4 5 6)" ] && [ $((n1 - n0)) -le 1 ] && [ "$odd" = 7 ]; then
	zt_pass
else zt_fail "replies '$got', new lookups $((n1 - n0)), counted $odd"; fi

zt_test "an endpoint hostname without an address: the connection is refused, the log says why"
m1=$(mesh_mark 1)
out=$(zt_send "$a" $VIP_GONE 80 "" 5)
line=$(mesh_wait_access 1 "$m1" "direction=outbound" 5)
if [ -z "$out" ] && [[ $line == *"DNS lookup of nowhere.corp.test failed: the name has no address"* ]]; then
	zt_pass
else zt_fail "reply '$out', log: $line"; fi

zt_test "a waypoint known by hostname only is resolved, then dialed on its HBONE port (nothing listens: refused)"
m1=$(mesh_mark 1)
out=$(zt_send "$a" $VIP_VIAWP 80 "" 5)
line=$(mesh_wait_access 1 "$m1" "dst.addr=$SRV:15008" 5)
if [ -z "$out" ] && [ -n "$line" ] && grep -q "query\[A\] wp.corp.test from $UP" "$ZT_WORK/dnsmasq.log"; then
	zt_pass
else zt_fail "reply '$out', log: $(mesh_since 1 "$m1" | tail -2)"; fi

zt_test "upstream down: SERVFAIL for forwarded names, counted as failures; mesh names still answered"
zt_bg_stop "$(cat "$ZT_WORK/dnsmasq.pidfile")"
out=$(q +noall +comments external.test A)
fail=$(zt_ns_exec "$(zt_node_ns 1)" curl -s -m 5 localhost:15020/metrics |
	grep -F "istio_dns_upstream_failures_total{$lbl}" | awk '{print $2}')
if [[ $out == *"status: SERVFAIL"* ]] && [ "${fail:-0}" -ge 1 ] &&
	[ "$(q +short echo.default.svc.cluster.local A)" = "$VIP" ]; then
	zt_pass
else zt_fail "$out failures=$fail"; fi

zt_test "a pod whose workload the proxy does not know gets SERVFAIL (b is enrolled, not configured)"
out=$(zt_ns_exec "$b" dig +time=3 +tries=1 @127.0.0.1 -p 15053 +noall +comments echo.default.svc.cluster.local A)
[[ $out == *"status: SERVFAIL"* ]] && zt_pass || zt_fail "$out"

zt_test "ISTIO_META_DNS_CAPTURE=false: no DNS listener in the pod, the others are there"
mesh_stop 1 proxy
MESH_PROXY_ENV="ISTIO_META_DNS_CAPTURE=false" mesh_proxy_start 1 || zt_fail "proxy did not start"
zt_wait_port "$a" 127.0.0.1 15001 10 >/dev/null
l=$(zt_ns_exec "$a" ss -Hlntu | awk '{print $5}' | grep -cE ':15001$')
u=$(zt_ns_exec "$a" ss -Hlntu | awk '{print $5}' | grep -cE ':15053$')
[ "$l" -ge 1 ] && [ "$u" = 0 ] && zt_pass || zt_fail "15001 listeners: $l, 15053: $u"

mesh_finish
zt_summary
