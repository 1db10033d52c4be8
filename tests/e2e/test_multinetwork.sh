#!/usr/bin/env bash
# Multi-network, double HBONE (wire facts 2.7): node 1 is network n1, node 2
# network n2. A service endpoint on n2 is reached only through n2's east-west
# gateway, a Go HBONE server (tests/interop/hbone_peer.go -forward) that
# terminates the outer tunnel and pipes the inner one, still encrypted, to
# the endpoint's ztunnel on 15008. Checked: the bytes arrive; the gateway saw
# the client proxy's identity as its peer and the service as authority; the
# remote ztunnel saw the client's own identity as the inner peer and (the
# request saying it came from n1) took the source from baggage, not from the
# gateway's address; an inner server identity outside the service's SANs is
# refused; a service whose waypoint is on n2 reaches it through n2's gateway
# (a second Go gateway in front of a Go waypoint); a FAILOVER service keeps to its local endpoint and fails over to
# the remote one when the local one is unhealthy; a CRL revoking the remote
# server's certificate closes the live double-HBONE connection (the inner
# tunnel's peer) and refuses new ones. Needs root, Go and openssl.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

A=10.200.1.2 L1=10.200.1.3 WPL=10.200.1.4 R1=10.200.2.2 GW=10.200.2.3 GW2=10.200.2.4 WP=10.200.2.5
VIP_R=10.96.0.30 VIP_F=10.96.0.31 VIP_BAD=10.96.0.32 VIP_W=10.96.0.33 VIP_X=10.96.0.34
H=default.svc.cluster.local
CRL=$ZT_WORK/crl/crl.pem
WAIT=20 # seconds any single condition may take before the check fails

# write_yaml L1_STATUS: the one config both nodes read.
write_yaml() {
	cat >"$ZT_WORK/mn.yaml.tmp" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1, network: n1}
		- uid: l1
		  name: l1
		  namespace: default
		  serviceAccount: sa-l1
		  workloadIps: ["$L1"]
		  protocol: HBONE
		  node: node1
		  network: n1
		  status: $1
		  services: {"default/svc-f.$H": {80: 8080}}
		- uid: r1
		  name: r1
		  namespace: default
		  serviceAccount: sa-r1
		  workloadIps: ["$R1"]
		  protocol: HBONE
		  node: node2
		  network: n2
		  networkGateway: {destination: "n2/$GW", hboneMtlsPort: 15008}
		  services: {"default/svc-r.$H": {80: 8080, 90: 9000}, "default/svc-f.$H": {80: 8080}, "default/svc-bad.$H": {80: 8080},
		             "default/svc-x.$H": {80: 8081}}
		- {uid: wpl, name: wpl, namespace: default, serviceAccount: wp-local, workloadIps: ["$WPL"], protocol: HBONE,
		   node: node1, network: n1}
		- {uid: gw, name: eastwest, namespace: istio-system, serviceAccount: istio-eastwestgateway, workloadIps: ["$GW"],
		   protocol: HBONE, node: node2, network: n2}
		- {uid: gw2, name: eastwest2, namespace: istio-system, serviceAccount: istio-eastwestgateway, workloadIps: ["$GW2"],
		   protocol: HBONE, node: node2, network: n2}
		- {uid: wp, name: wp, namespace: default, serviceAccount: waypoint, workloadIps: ["$WP"], protocol: HBONE,
		   node: node2, network: n2, networkGateway: {destination: "n2/$GW2", hboneMtlsPort: 15008},
		   services: {"default/waypoint.$H": {15008: 15008}}}
		services:
		- {name: waypoint, namespace: default, hostname: waypoint.$H, ports: {15008: 15008},
		   subjectAltNames: ["$(mesh_id waypoint)"]}
		- {name: svc-w, namespace: default, hostname: svc-w.$H, vips: ["n1/$VIP_W", "n2/$VIP_W"], ports: {80: 8080},
		   waypoint: {destination: {namespace: default, hostname: waypoint.$H}, hboneMtlsPort: 15008}}
		- {name: svc-r, namespace: default, hostname: svc-r.$H, vips: ["n1/$VIP_R", "n2/$VIP_R"], ports: {80: 8080, 90: 9000},
		   subjectAltNames: ["$(mesh_id sa-r1)"]}
		- {name: svc-f, namespace: default, hostname: svc-f.$H, vips: ["n1/$VIP_F", "n2/$VIP_F"], ports: {80: 8080},
		   subjectAltNames: ["$(mesh_id sa-r1)", "$(mesh_id sa-l1)"],
		   loadBalancer: {mode: Failover, routingPreferences: [Network]}}
		- {name: svc-bad, namespace: default, hostname: svc-bad.$H, vips: ["n1/$VIP_BAD", "n2/$VIP_BAD"], ports: {80: 8080},
		   subjectAltNames: ["$(mesh_id sa-other)"]}
		- {name: svc-x, namespace: default, hostname: svc-x.$H, vips: ["n1/$VIP_X", "n2/$VIP_X"],
		   ports: {80: {targetPort: 8081, appProtocol: http}}, subjectAltNames: ["$(mesh_id sa-r1)"],
		   waypoint: {destination: "n1/$WPL", hboneMtlsPort: 15008}}
	Y
	mv "$ZT_WORK/mn.yaml.tmp" "$ZT_WORK/mn.yaml"
}

zt_test "setup: a and l1 on node 1 (n1), r1 and the gateway on node 2 (n2)"
setup() {
	peer=$(mesh_peer) || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && l1=$(zt_pod_add 1 2 l1) || return 1
	r1=$(zt_pod_add 2 1 r1) && gw=$(zt_pod_add 2 2 gw) || return 1
	gw2=$(zt_pod_add 2 3 gw2) && wp=$(zt_pod_add 2 4 wp) && wpl=$(zt_pod_add 1 3 wpl) || return 1
	mesh_ca || return 1
	write_yaml Healthy
	mkdir -p "$ZT_WORK/crl"
	mesh_cni_start 1 && MESH_PROXY_ENV="NETWORK=n1 CRL_PATH=$CRL" mesh_proxy_start 1 "$ZT_WORK/mn.yaml" ||
		return 1
	mesh_cni_start 2 && MESH_PROXY_ENV="NETWORK=n2" mesh_proxy_start 2 "$ZT_WORK/mn.yaml" || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 1 "$l1" l1 sa-l1 && mesh_enroll 2 "$r1" r1 sa-r1 || return 1
	for p in l1:"$l1" r1:"$r1"; do
		zt_bg "${p#*:}" "name-${p%%:*}" socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:"echo ${p%%:*}"
		zt_wait_port "${p#*:}" 127.0.0.1 8080 5 || return 1
	done
	zt_bg "$r1" echo-r1 socat TCP-LISTEN:9000,fork,reuseaddr PIPE
	zt_wait_port "$r1" 127.0.0.1 9000 5 || return 1
	zt_bg "$r1" h1-r1 node "$here/h2_echo.js" h1 r1 8081 && zt_wait_port "$r1" 127.0.0.1 8081 10 || return 1
	MESH_WAYPOINT_ENV="NETWORK=n1" mesh_waypoint_start 1 "$wpl" wpl wp-local "$ZT_WORK/mn.yaml" || return 1
	zt_bg "$l1" echo-l1 socat TCP-LISTEN:9000,fork,reuseaddr PIPE
	zt_wait_port "$l1" 127.0.0.1 9000 5 || return 1
	zt_bg "$gw" gw "$peer" server -ca-dir "$MESH_CA" -id "$(mesh_id istio-eastwestgateway istio-system)" \
		-listen "$GW:15008" -timeout 0 -forward "$R1:15008" || return 1
	zt_bg "$gw2" gw2 "$peer" server -ca-dir "$MESH_CA" -id "$(mesh_id istio-eastwestgateway istio-system)" \
		-listen "$GW2:15008" -timeout 0 -forward "$WP:15008" || return 1
	zt_bg "$wp" wp "$peer" server -ca-dir "$MESH_CA" -id "$(mesh_id waypoint)" -listen "$WP:15008" \
		-timeout 0 -describe || return 1
	mesh_wait_grep "$ZT_WORK/gw.log" "listening on" 10 && mesh_wait_grep "$ZT_WORK/gw2.log" "listening on" 10 &&
		mesh_wait_grep "$ZT_WORK/wp.log" "listening on" 10
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# ---- a service whose only endpoint is on n2 ----
m1=$(mesh_mark 1)
m2=$(mesh_mark 2)
zt_test "VIP of svc-r (endpoint r1 on n2): r1's app answers, through the gateway"
zt_expect_eq "$(zt_send "$a" $VIP_R 80 "" 5)" "r1"

zt_test "... node 1: outer HBONE to the gateway, inner peer r1's identity, a's identity presented"
line=$(mesh_wait_access 1 "$m1" "dst.service=svc-r.$H" 5)
mesh_expect_fields "$line" "dst.addr=$GW:15008" "dst.hbone_addr=svc-r.$H:80" "dst.workload=eastwest" \
	"src.identity=$(mesh_id sa-a)" "dst.identity=$(mesh_id sa-r1)" "direction=outbound"

zt_test "... the gateway: outer peer is a's identity, authority svc-r:80, answered 200"
gl=$(grep -F "authority=svc-r.$H:80" "$ZT_WORK/gw.log" | head -1)
if printf '%s' "$gl" | grep -qF "peer=$(mesh_id sa-a) " && printf '%s' "$gl" | grep -qF "status=200"; then
	zt_pass
else
	zt_fail "gateway log: ${gl:-none}"
fi

# The connection comes from the gateway's address, which is the workload
# "eastwest" on n2: only x-forwarded-network (n1) keeps node 2 from naming it.
zt_test "... node 2 (r1's ztunnel): inner peer is a's identity; source from baggage (a), not the gateway"
line=$(mesh_wait_access 2 "$m2" "direction=inbound.*dst.workload=r1|dst.workload=r1.*direction=inbound" 5)
mesh_expect_fields "$line" "src.identity=$(mesh_id sa-a)" "src.workload=a" "dst.workload=r1" \
	"dst.identity=$(mesh_id sa-r1)" "dst.service=svc-r.$H"

# 8 MiB each way: more than the 4 MiB stream windows of both tunnels and
# than what the inner connection takes from its session at once.
zt_test "8 MiB of random bytes through both tunnels to r1's echo server and back, intact"
head -c $((8 << 20)) /dev/urandom >"$ZT_WORK/big.in"
zt_ns_exec "$a" timeout 60 socat -t 10 - "TCP:$VIP_R:90,connect-timeout=5" \
	<"$ZT_WORK/big.in" >"$ZT_WORK/big.out" 2>/dev/null
zt_expect_eq "$(sha256sum <"$ZT_WORK/big.out" | cut -c1-64)" "$(sha256sum <"$ZT_WORK/big.in" | cut -c1-64)"

# ---- the inner server must be one of the service's SANs ----
m1=$(mesh_mark 1)
m2=$(mesh_mark 2)
zt_test "svc-bad (SAN sa-other, endpoint r1): refused, the inner identity r1 is not accepted"
got=$(zt_send "$a" $VIP_BAD 80 "x" 5)
line=$(mesh_wait_access 1 "$m1" "dst.service=svc-bad.$H" 5)
if [ -z "$got" ] && printf '%s' "$line" | grep -q "identity not accepted"; then zt_pass; else
	zt_fail "reply '$got', line: $line"
fi

zt_test "... node 2: that inner handshake was abandoned by the client (no stream reached r1)"
line=$(mesh_wait_access 2 "$m2" "direction=inbound" 5)
if printf '%s' "$line" | grep -q "TLS handshake failed"; then zt_pass; else zt_fail "line: $line"; fi

zt_test "... control: svc-r still answers, and only it reached r1's app on node 2"
zt_expect_eq "$(zt_send "$a" $VIP_R 80 "" 5)" "r1"
if mesh_wait_access 2 "$m2" "dst.service=svc-r.$H" 5 >/dev/null; then
	zt_expect_eq "$(mesh_since 2 "$m2" | grep -c "dst.hbone_addr=$R1:8080")" 1
else
	zt_fail "no inbound line for the control on node 2"
fi

# ---- a service's waypoint on n2 ----
m1=$(mesh_mark 1)
zt_test "VIP of svc-w (its waypoint on n2): the waypoint answers, asked for svc-w:80 by a itself"
zt_expect_eq "$(zt_send "$a" $VIP_W 80 "" 5)" \
	"server=$(mesh_id waypoint) authority=svc-w.$H:80 peer=$(mesh_id sa-a)"

zt_test "... through the second gateway (outer peer a, same authority); node 1 logs it so"
# The gateway (another process) writes its line on its own time: waited for.
mesh_wait_grep "$ZT_WORK/gw2.log" "authority=svc-w[.]default[.]svc[.]cluster[.]local:80" 5 >/dev/null
gl=$(grep -F "authority=svc-w.$H:80" "$ZT_WORK/gw2.log" | head -1)
line=$(mesh_wait_access 1 "$m1" "dst.service=svc-w.$H" 5)
if printf '%s' "$gl" | grep -qF "peer=$(mesh_id sa-a) " &&
	[ "$(mesh_field "$line" dst.addr)" = "$GW2:15008" ] &&
	[ "$(mesh_field "$line" dst.identity)" = "$(mesh_id waypoint)" ]; then
	zt_pass
else
	zt_fail "gateway log: ${gl:-none}; node 1: $line"
fi

# ---- failover ----
zt_test "FAILOVER on Network, both healthy: the local endpoint l1, five times out of five"
answers=""
for _ in 1 2 3 4 5; do answers="$answers $(zt_send "$a" $VIP_F 80 "" 5)"; done
zt_expect_eq "$(echo $answers)" "l1 l1 l1 l1 l1"

zt_test "l1 unhealthy: svc-f fails over to r1 on n2, through the gateway"
write_yaml Unhealthy
got=""
deadline=$(($(zt_now_ms) + 10000))
while [ "$(zt_now_ms)" -lt "$deadline" ]; do
	m1=$(mesh_mark 1)
	got=$(zt_send "$a" $VIP_F 80 "" 5)
	[ "$got" = "r1" ] && break
	sleep 0.2
done
zt_expect_eq "$got" "r1"

zt_test "... node 1: the failover connection went to the gateway for svc-f"
line=$(mesh_wait_access 1 "$m1" "dst.service=svc-f.$H" 5)
mesh_expect_fields "$line" "dst.addr=$GW:15008" "dst.identity=$(mesh_id sa-r1)"

# ---- CRL: the inner tunnel's peer revoked (node 1 has CRL_PATH) ----
# wait_until, live, echoes, gone and crl_write as in test_crl.sh.
wait_until() {
	local deadline=$(($(zt_now_ms) + WAIT * 1000))
	while ! "$@"; do
		[ "$(zt_now_ms)" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}
declare -A live_fd live_pid
live() {
	local name=$1 ns=$2 fd
	shift 2
	mkfifo "$ZT_WORK/$name.in"
	# shellcheck disable=SC2016 # expanded by the inner shell
	zt_bg "$ns" "$name" bash -c 'exec "$@" <"$0" >"$0.out"' "$ZT_WORK/$name.in" "$@"
	live_pid[$name]=$ZT_BG_PID
	exec {fd}>"$ZT_WORK/$name.in"
	live_fd[$name]=$fd
}
echoes() {
	{ echo "$2" >&"${live_fd[$1]}"; } 2>/dev/null || return 1
	wait_until grep -qx "$2" "$ZT_WORK/$1.in.out"
}
gone() { ! kill -0 "$1" 2>/dev/null; }
crl_write() {
	local d=$ZT_WORK/crlca s when
	when=$(date -u -d '1 hour ago' +%y%m%d%H%M%SZ)
	mkdir -p "$d"
	: >"$d/index.txt"
	for s in "$@"; do
		printf 'R\t301231235959Z\t%s\t%s\tunknown\t/CN=revoked\n' "$when" "${s^^}" >>"$d/index.txt"
	done
	[ -f "$d/crlnumber" ] || echo 01 >"$d/crlnumber"
	cat >"$d/cnf" <<-CNF
		[ca]
		default_ca = d
		[d]
		database = $d/index.txt
		crlnumber = $d/crlnumber
		default_md = sha256
		default_crl_days = 30
	CNF
	openssl ca -gencrl -config "$d/cnf" -keyfile "$MESH_CA/ca-key.pem" -cert "$MESH_CA/ca-cert.pem" \
		-out "$d/crl.pem" 2>>"$ZT_WORK/openssl.log" || return 1
	cp "$d/crl.pem" "$CRL.tmp" && mv "$CRL.tmp" "$CRL"
}
# r1_serial: the serial of the certificate node 2's proxy serves for r1.
r1_serial() {
	zt_ns_exec "$(zt_node_ns 2)" curl -s -m 5 localhost:15000/config_dump | python3 -c '
import json, sys
for c in json.load(sys.stdin).get("certificates", []):
    if c["identity"].endswith("/sa/sa-r1") and c.get("certChain"):
        print(c["certChain"][0]["serialNumber"])' 2>/dev/null
}
# svc_r_answers: a new connection to svc-r gets r1's answer.
svc_r_answers() { [ "$(zt_send "$a" $VIP_R 80 "" 5)" = r1 ]; }

# ---- our waypoint on n1, the service's only endpoint on n2 ----
m2=$(mesh_mark 2)
zt_test "svc-x (its waypoint \`ztunnel waypoint\` on n1, endpoint r1 on n2): an HTTP request through the waypoint reaches r1 by double HBONE"
out=$(zt_ns_exec "$a" timeout 20 curl -sS --max-time 10 "http://$VIP_X/through-wp" 2>&1)
zt_expect_eq "$(sed -n 's/^server=//p; s/^path=//p' <<<"$out" | tr '\n' ' ')" "r1 /through-wp "

zt_test "... the waypoint's access line names r1; the gateway saw the waypoint's identity asking for svc-x:80"
mesh_wait_grep "$ZT_WORK/gw.log" "authority=svc-x[.]default[.]svc[.]cluster[.]local:80" 5 >/dev/null
gl=$(grep -F "authority=svc-x.$H:80" "$ZT_WORK/gw.log" | head -1)
mesh_wait_grep "$ZT_WORK/waypoint1.log" "request complete.*path=/through-wp" 5 >/dev/null
wl=$(grep -E "request complete.*path=/through-wp" "$ZT_WORK/waypoint1.log" | head -1)
if printf '%s' "$gl" | grep -qF "peer=$(mesh_id wp-local) " && printf '%s' "$wl" | grep -q "dst.workload=r1.*status=200"; then
	zt_pass
else
	zt_fail "gateway: ${gl:-none}; waypoint: ${wl:-none}"
fi

zt_test "... node 2 (r1's ztunnel): the inner tunnel's peer is the waypoint's identity, to r1"
line=$(mesh_wait_access 2 "$m2" "direction=inbound.*dst.workload=r1|dst.workload=r1.*direction=inbound" 5)
mesh_expect_fields "$line" "src.identity=$(mesh_id wp-local)" "dst.workload=r1"

zt_test "long-lived: a to svc-r:90 (double HBONE to r1's echo), a to l1:9000 (local HBONE)"
live rx "$a" socat -t 0.2 - "TCP:$VIP_R:90"
live lx "$a" socat -t 0.2 - "TCP:$L1:9000"
if echoes rx one && echoes lx one; then zt_pass; else
	zt_fail "rx $(cat "$ZT_WORK/rx.in.out") lx $(cat "$ZT_WORK/lx.in.out")"
fi

m1=$(mesh_mark 1)
zt_test "r1's certificate revoked on node 1: the double-HBONE connection closes, the reason logged"
serial=$(r1_serial)
if [ -n "$serial" ] && crl_write "$serial" && wait_until gone "${live_pid[rx]}" &&
	mesh_wait_access 1 "$m1" "dst.service=svc-r.$H .*error=\"peer certificate revoked" $WAIT >/dev/null; then
	zt_pass
else
	zt_fail "serial '$serial', rx open: $(gone "${live_pid[rx]}" || echo yes), node 1: $(mesh_since 1 "$m1" | tail -2)"
fi

zt_test "... the local connection still carries data"
if echoes lx two; then zt_pass; else zt_fail "lx $(cat "$ZT_WORK/lx.in.out")"; fi

m1=$(mesh_mark 1)
zt_test "... a new connection to svc-r is refused (the inner handshake checks the CRL)"
got=$(zt_send "$a" $VIP_R 80 "x" 5)
line=$(mesh_wait_access 1 "$m1" "dst.service=svc-r.$H .*error=" 5)
if [ -z "$got" ] && printf '%s' "$line" | grep -q "double HBONE"; then zt_pass; else
	zt_fail "reply '$got', line: $line"
fi

zt_test "a new CRL without r1's serial: svc-r answers again"
crl_write
if wait_until svc_r_answers; then zt_pass; else zt_fail "still refused"; fi

mesh_finish
