#!/usr/bin/env bash
# Control-plane failover: two `ztunnel control` instances (nodes 3 and 4)
# serve one configuration directory with one CA. Node 1's proxy is given
# both addresses, after a first entry whose name the instance it resolves
# to has no certificate for (XDS_ADDRESS=https://wrong.mesh.test:15012,
# https://CP3:15012,https://CP4:15012: TLS verification holds per address,
# that entry is refused and skipped every time); node 2's proxy one name
# that resolves to both (cp.mesh.test). Names come from each node's own
# /etc/netns hosts file. Under a long transfer and a loop of new
# connections through the mesh:
#   1. the instance the proxies use is killed (SIGKILL): they move to the
#      other one (seen in the survivor's log and metrics), a configuration
#      change made after the kill reaches them, a certificate is renewed by
#      the survivor;
#   2. the killed instance is started again and the one now in use is
#      frozen (SIGSTOP: it hangs without closing anything): the proxies
#      notice through the HTTP/2 keepalive PING and move back, with the
#      same checks.
# Not one connection fails and the transfer goes through unbroken; each of
# those "nothing failed" checks has a positive control showing it would see
# a failure.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
HOSTS1=/etc/netns/$(zt_node_ns 1) HOSTS2=/etc/netns/$(zt_node_ns 2)
trap 'rm -rf "$HOSTS1" "$HOSTS2"; zt_cleanup' EXIT
trap 'rm -rf "$HOSTS1" "$HOSTS2"; zt_cleanup; trap - EXIT; exit 130' INT
trap 'rm -rf "$HOSTS1" "$HOSTS2"; zt_cleanup; trap - EXIT; exit 143' TERM

A=10.200.1.2 C=10.200.2.2 D=10.200.2.3 CP3=$(zt_node_ip 3) CP4=$(zt_node_ip 4)
TOKEN1=node1-token-0123456789 TOKEN2=node2-token-0123456789
CFG=$ZT_WORK/config
# Workload certificates live 30 s: renewed every 15 s, so each phase sees
# renewals against the instance it left the proxies with.
CERT_TTL=30
# The keepalive is shortened so that a hung instance is left within 4 s
# (the defaults, 30 s and 10 s, are Istio's ztunnel's).
KEEPALIVE="CONTROL_PLANE_KEEPALIVE_INTERVAL=2s CONTROL_PLANE_KEEPALIVE_TIMEOUT=2s"

wl() { # wl UID IP SA NODE
	echo "- {uid: $1, name: $1, namespace: default, serviceAccount: $3, workloadIps: [\"$2\"], protocol: HBONE, node: $4}"
}
write_cfg() { # write_cfg FILE CONTENT: replace a config file the way tools do (rename)
	printf '%s\n' "$2" >"$CFG/.$1.tmp" && mv "$CFG/.$1.tmp" "$CFG/$1"
}
start_control() { # start_control NODE
	mesh_start_bg "$1" control "$ZT_BIN" control --listen 0.0.0.0:15012 --config-dir "$CFG" \
		--ca-dir "$MESH_CA" --node-tokens "$ZT_WORK/node-tokens" --max-cert-ttl $CERT_TTL \
		--server-name cp.mesh.test
	mesh_wait_grep "$(mesh_log "$1" control)" "listening on" 10
}
start_proxy() { # start_proxy N XDS_ADDRESS
	echo "node$1-token-0123456789" >"$ZT_WORK/token$1"
	# shellcheck disable=SC2046,SC2086
	mesh_start_bg "$1" proxy env $(mesh_env "$1") XDS_ADDRESS="$2" $KEEPALIVE \
		XDS_ROOT_CA="$MESH_CA/root-cert.pem" AUTH_TOKEN="$ZT_WORK/token$1" NODE_NAME="node$1" \
		POD_NAME="ztunnel-$1" POD_NAMESPACE=istio-system RUST_LOG="${LOGLVL:-info}" "$ZT_BIN" proxy
	mesh_wait_grep "$(mesh_log "$1" proxy)" "snapshot received" 10
}
clog() { cat "$(mesh_log "$1" control)"; }
# streams NODE: the number of xDS streams control plane NODE has seen from
# node1 and from node2, as "N1 N2".
streams() {
	echo "$(clog "$1" | grep -c 'xDS stream from node node1 ') $(clog "$1" | grep -c 'xDS stream from node node2 ')"
}
# wait_streams NODE "N1 N2": until control plane NODE has seen at least N1
# streams from node1 and N2 from node2 (bounded by 30 s).
wait_streams() {
	local want1=${2% *} want2=${2#* } got deadline=$(($(zt_now_ms) + 30000))
	while [ "$(zt_now_ms)" -lt "$deadline" ]; do
		got=$(streams "$1")
		[ "${got% *}" -ge "$want1" ] && [ "${got#* }" -ge "$want2" ] && return 0
		sleep 0.05
	done
	return 1
}
# metric NODE NAME: a value of control plane NODE's /metrics.
metric() {
	zt_ns_exec "$(zt_node_ns "$1")" curl -s -m 5 127.0.0.1:15014/metrics | awk -v k="$2" '$1 == k {print $2}'
}
# a_serial: the serial of the certificate node 1's proxy serves for sa-a.
a_serial() {
	zt_ns_exec "$(zt_node_ns 1)" curl -s -m 5 localhost:15000/config_dump | python3 -c '
import json, sys
for c in json.load(sys.stdin).get("certificates", []):
    if c["identity"].endswith("/sa/sa-a") and c.get("certChain"):
        print(c["certChain"][0]["serialNumber"])' 2>/dev/null
}
# issued_count NODE: certificates control plane NODE issued for sa-a to node1.
issued_count() { clog "$1" | grep -c "issued $(mesh_id sa-a) to node node1"; }
serial_changed_from() { # serial_changed_from OLD: node 1 serves another serial for sa-a
	local s
	[ -n "$1" ] && s=$(a_serial) && [ -n "$s" ] && [ "$s" != "$1" ]
}
wait_issued() { # wait_issued NODE MORE_THAN
	local deadline=$(($(zt_now_ms) + 60000))
	while [ "$(zt_now_ms)" -lt "$deadline" ]; do
		[ "$(issued_count "$1")" -gt "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

# ---- traffic that runs through every phase ----

# transfer_start NAME NETNS IP PORT: a long transfer, one numbered line
# every 0.1 s until $ZT_WORK/NAME.stop exists; the echo comes back into
# NAME.out, and NAME.sent holds the number of lines handed to the client
# so far (kept per line: a writer cut off by a broken transfer leaves it
# right).
transfer_start() {
	local name=$1 ns=$2 ip=$3 port=$4
	echo 0 >"$ZT_WORK/$name.sent"
	(
		i=0
		while [ ! -e "$ZT_WORK/$name.stop" ]; do
			i=$((i + 1))
			echo "line-$i"
			echo "$i" >"$ZT_WORK/$name.sent"
			sleep 0.1
		done
	) | zt_ns_exec "$ns" socat -t 5 - "TCP:$ip:$port" >"$ZT_WORK/$name.out" 2>&1 &
	eval "${name}_pid=$!"
}
# transfer_check NAME: stops the transfer and waits for it (so not in a
# subshell: $(...) could not wait); res is "ok N" when every one of the N
# lines sent came back in order, else what went wrong.
transfer_check() {
	local name=$1 pid sent got
	touch "$ZT_WORK/$name.stop"
	eval "pid=\$${name}_pid"
	wait "$pid"
	sent=$(cat "$ZT_WORK/$name.sent")
	got=$(grep -c '^line-' "$ZT_WORK/$name.out")
	if [ "$sent" -gt 0 ] && [ "$got" = "$sent" ] && [ "$(tail -1 "$ZT_WORK/$name.out")" = "line-$sent" ] &&
		diff -q <(seq -f 'line-%g' "$sent") <(grep '^line-' "$ZT_WORK/$name.out") >/dev/null; then
		res="ok $sent"
	else
		res="broken: $got of $sent lines came back"
	fi
}
# conns_start NAME NETNS IP PORT: a new connection every 0.05 s until
# NAME.stop exists, each line of NAME.log "ok T" or "FAIL T" (T in ms).
conns_start() {
	local name=$1 ns=$2 ip=$3 port=$4
	(
		i=0
		while [ ! -e "$ZT_WORK/$name.stop" ]; do
			i=$((i + 1))
			t=$(zt_now_ms)
			if [ "$(zt_send "$ns" "$ip" "$port" "c$i" 5)" = "c$i" ]; then
				echo "ok $t"
			else
				echo "FAIL $t"
			fi
			sleep 0.05
		done
	) >"$ZT_WORK/$name.log" 2>&1 &
	eval "${name}_pid=$!"
}
# conns_check NAME SINCE_MS: stops the loop and waits for it; res is "ok"
# when no connection failed and at least 5 were made after SINCE_MS, else
# the figures.
conns_check() {
	local name=$1 since=$2 pid total fails after
	touch "$ZT_WORK/$name.stop"
	eval "pid=\$${name}_pid"
	wait "$pid"
	total=$(grep -c . "$ZT_WORK/$name.log")
	fails=$(grep -c '^FAIL' "$ZT_WORK/$name.log")
	after=$(awk -v s="$since" '$2 >= s' "$ZT_WORK/$name.log" | grep -c .)
	if [ "$fails" = 0 ] && [ "$after" -ge 5 ]; then res=ok; else
		res="$fails of $total connections failed, $after after the event"
	fi
}

zt_test "setup: control planes on nodes 3 and 4 (one directory, one CA), proxies on nodes 1 and 2"
setup() {
	zt_node_add 1 && zt_node_add 2 && zt_node_add 3 && zt_node_add 4 || return 1
	a=$(zt_pod_add 1 1 a) && c=$(zt_pod_add 2 1 c) && d=$(zt_pod_add 2 2 d) || return 1
	mesh_ca || return 1
	mkdir -p "$CFG" "$HOSTS1" "$HOSTS2"
	# Node 2 resolves cp.mesh.test to both instances, node 1
	# wrong.mesh.test to node 3's (ip netns exec mounts these files over
	# /etc/hosts for the processes of that namespace).
	printf '127.0.0.1 localhost\n%s cp.mesh.test\n%s cp.mesh.test\n' "$CP3" "$CP4" >"$HOSTS2/hosts"
	printf '127.0.0.1 localhost\n%s wrong.mesh.test\n' "$CP3" >"$HOSTS1/hosts"
	printf 'node1 %s\nnode2 %s\n' "$TOKEN1" "$TOKEN2" >"$ZT_WORK/node-tokens"
	write_cfg workloads.yaml "workloads:
$(wl a $A sa-a node1)
$(wl c $C sa-c node2)"
	start_control 3 && start_control 4 || return 1
	mesh_cni_start 1 && mesh_cni_start 2 || return 1
	start_proxy 1 "https://wrong.mesh.test:15012,https://$CP3:15012,https://$CP4:15012" || return 1
	start_proxy 2 "https://cp.mesh.test:15012" || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$c" c sa-c || return 1
	zt_echo_server "$c" 8080 && zt_echo_server "$c" 9090 && zt_echo_server "$d" 8080
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

zt_test "node 2 resolves cp.mesh.test to both instances"
hosts=$(zt_ns_exec "$(zt_node_ns 2)" getent ahostsv4 cp.mesh.test | awk '$2 == "STREAM" {print $1}' | sort | tr '\n' ' ')
zt_expect_eq "$hosts" "$CP3 $CP4 "

zt_test "both proxies use the first instance (node 3); the second has no stream"
if wait_streams 3 "1 1" && [ "$(streams 4)" = "0 0" ] && [ "$(metric 3 pilot_xds)" = 2 ] &&
	[ "$(metric 4 pilot_xds)" = 0 ]; then zt_pass; else
	zt_fail "streams node 3: $(streams 3), node 4: $(streams 4)"
fi

zt_test "node 1's first entry is refused (the certificate does not name it) and the next address used, by the xDS and the CA client"
wrong="wrong.mesh.test:15012 ($CP3:15012)"
# The CA client connects with the first certificate request (at enrollment).
mesh_wait_grep "$(mesh_log 1 proxy)" "connected to the CA at " 10
if grep -F "connection to $wrong: TLS handshake failed" "$(mesh_log 1 proxy)" | grep -qF "moving from $wrong to $CP3:15012" &&
	grep -F "cannot reach the CA at $wrong: TLS handshake failed" "$(mesh_log 1 proxy)" | grep -qF "moving to $CP3:15012" &&
	grep -qF "connected to $CP3:15012" "$(mesh_log 1 proxy)" && grep -qF "connected to the CA at $CP3:15012" "$(mesh_log 1 proxy)"; then
	zt_pass
else
	zt_fail "$(grep -E 'xds|ca' "$(mesh_log 1 proxy)" | grep -v access | head -8)"
fi

zt_test "traffic goes through HBONE with identities issued by the control plane"
m1=$(mesh_mark 1)
reply=$(zt_send "$a" $C 8080 via-control)
line=$(mesh_wait_access 1 "$m1" "direction=outbound" 5)
if [ "$reply" = via-control ]; then
	mesh_expect_fields "$line" "dst.identity=$(mesh_id sa-c)" "src.identity=$(mesh_id sa-a)"
else
	zt_fail "reply '$reply'"
fi

# d_meshed: a connection from a to d goes through HBONE to d's identity.
d_meshed() {
	local m
	m=$(mesh_mark 1)
	[ "$(zt_send "$a" $D 8080 dd 2)" = dd ] || return 1
	mesh_wait_access 1 "$m" "direction=outbound" 2 | grep -q "dst.identity=$(mesh_id sa-d)"
}
# d_plain: a's connection to d is not sent through HBONE (once d's
# workload is gone while its pod stays enrolled, nothing answers it).
d_plain() {
	local m
	m=$(mesh_mark 1)
	zt_send "$a" $D 8080 dd 1 >/dev/null
	mesh_wait_access 1 "$m" "direction=outbound" 2 | grep -vq "dst.hbone_addr=$D"
}

zt_test "positive control: the transfer check sees a transfer broken by its server going away"
transfer_start broken "$a" $D 8080
mesh_wait_grep "$ZT_WORK/broken.out" "^line-3$" 10
zt_bg_stop "$(awk -v n="echo-$d-8080" '$2 == n {print $1}' "$ZT_WORK/pids" | tail -1)"
# The client ends once it has seen the close (socat -t 5: 5 s after it,
# lines still being sent into the dead connection); only then is the
# check made, so that lines were lost whatever the timing.
# shellcheck disable=SC2154 # broken_pid: set by transfer_start
for _ in $(seq 600); do
	kill -0 "$broken_pid" 2>/dev/null || break
	sleep 0.05
done
transfer_check broken
case "$res" in broken:*) zt_pass ;; *) zt_fail "the check said '$res'" ;; esac
zt_echo_server "$d" 8080 || zt_log "d's echo server did not come back"

zt_test "positive control: the connection loop records a failed connection"
conns_start probe "$a" $C 7070 # nothing listens on 7070
mesh_wait_grep "$ZT_WORK/probe.log" "^FAIL" 20
conns_check probe 0
case "$res" in ok) zt_fail "no failure recorded" ;; *) zt_pass ;; esac

serial0=$(a_serial)
transfer_start transfer "$a" $C 8080
conns_start conns "$a" $C 9090
mesh_wait_grep "$ZT_WORK/transfer.out" "^line-5$" 10
mesh_wait_grep "$ZT_WORK/conns.log" "^ok" 10

zt_test "positive control: workload d is not meshed before its configuration exists"
if d_plain && [ "$(zt_send "$a" $D 8080 plain 2)" = plain ] && ! d_meshed; then zt_pass; else
	zt_fail "d already meshed"
fi

# ---- phase 1: the instance in use is killed ----
p1=$(mesh_mark 1)
p2=$(mesh_mark 2)
kill_ms=$(zt_now_ms)
kill -KILL "$(mesh_pid 3 control)"
rm -f "$ZT_WORK/control3.pid"

zt_test "SIGKILL of node 3's instance: both proxies move to node 4's (its log and metrics)"
if wait_streams 4 "1 1" && [ "$(metric 4 pilot_xds)" = 2 ]; then zt_pass; else
	zt_fail "node 4 streams $(streams 4), pilot_xds $(metric 4 pilot_xds)"
fi

zt_test "the proxies log the move, from which address to which and why"
if tail -n +"$p1" "$(mesh_log 1 proxy)" | grep -E "xds.*moving from $CP3:15012 to $CP4:15012" | grep -q "stream to $CP3:15012 ended" &&
	tail -n +"$p2" "$(mesh_log 2 proxy)" | grep -q "xds.*moving from cp.mesh.test:15012 ($CP3:15012) to cp.mesh.test:15012 ($CP4:15012)"; then
	zt_pass
else
	zt_fail "$(tail -n +"$p1" "$(mesh_log 1 proxy)" | grep xds | head -5)"
fi

zt_test "a workload added after the kill reaches the proxies through the survivor"
write_cfg more.yaml "workloads:
$(wl d $D sa-d node2)"
mesh_enroll 2 "$d" d sa-d || zt_log "enroll d failed"
if mesh_eventually d_meshed; then zt_pass; else zt_fail "d not meshed"; fi

zt_test "a certificate is renewed by the survivor, and node 1 serves it"
issued4=$(issued_count 4)
if wait_issued 4 "$issued4" && mesh_eventually serial_changed_from "$serial0"; then zt_pass; else
	zt_fail "node 4 issued $(issued_count 4) for sa-a to node1 (before: $issued4); serial '$serial0' -> '$(a_serial)'"
fi

# ---- phase 2: the killed instance comes back, the one in use hangs ----
start_control 3 || zt_log "node 3's control plane did not restart"
p1=$(mesh_mark 1)
p2=$(mesh_mark 2)
stop_ms=$(zt_now_ms)
frozen=$(mesh_pid 4 control)
kill -STOP "$frozen"

zt_test "SIGSTOP of node 4's instance: the keepalive notices, both proxies move to node 3's again"
if wait_streams 3 "1 1" && [ "$(metric 3 pilot_xds)" = 2 ]; then zt_pass; else
	zt_fail "node 3 streams $(streams 3)"
fi

zt_test "the proxies name the unanswered keepalive as the reason"
# Node 1 walks on to its first entry, refused again, then to node 3.
if mesh_wait_grep "$(mesh_log 1 proxy)" "(connection|stream) to $CP4:15012.*timed out.*moving from $CP4:15012 to wrong.mesh.test:15012" 10 &&
	tail -n +"$p1" "$(mesh_log 1 proxy)" | grep -F "connection to $wrong: TLS handshake failed" | grep -qF "moving from $wrong to $CP3:15012" &&
	tail -n +"$p2" "$(mesh_log 2 proxy)" | grep -q "moving from cp.mesh.test:15012 ($CP4:15012) to cp.mesh.test:15012 ($CP3:15012)"; then
	zt_pass
else
	zt_fail "$(tail -n +"$p1" "$(mesh_log 1 proxy)" | grep xds | head -5)"
fi

zt_test "a workload removed while node 4 hangs is removed on the proxies"
rm "$CFG/more.yaml"
if mesh_eventually d_plain; then zt_pass; else zt_fail "d still meshed"; fi

zt_test "a certificate is renewed by node 3's new instance while node 4 hangs"
serial1=$(a_serial)
if wait_issued 3 0 && mesh_eventually serial_changed_from "$serial1"; then zt_pass; else
	zt_fail "node 3 issued $(issued_count 3) for sa-a; serial '$serial1' -> '$(a_serial)'"
fi

zt_test "the long transfer went through both moves unbroken"
transfer_check transfer
case "$res" in ok*) zt_pass ;; *) zt_fail "$res" ;; esac

zt_test "not one of the new connections failed, before, between and after the moves"
conns_check conns "$stop_ms"
r1=$(awk -v s="$kill_ms" -v e="$stop_ms" '$2 >= s && $2 < e' "$ZT_WORK/conns.log" | grep -c '^ok')
if [ "$res" = ok ] && [ "$r1" -ge 5 ]; then zt_pass; else zt_fail "$res; $r1 between the kill and the stop"; fi

kill -CONT "$frozen"
mesh_finish
