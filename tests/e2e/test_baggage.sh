#!/usr/bin/env bash
# Metric labels from a peer's baggage (issue 8, item 10). The destination
# ztunnel labels a connection's source from the CONNECT's baggage only when
# the source is not known by its IP, as Istio's ztunnel does; a peer that
# sends 10 000 distinct baggage values cannot grow /metrics or the proxy's
# memory without bound: idle label sets taken from baggage are evicted and
# counted.
#
# Pods: g (Go HBONE client, IP unknown to the config) and k (Go HBONE client,
# IP known as workload k, not enrolled) on node 1; c (enrolled, app on 8080
# that closes each connection at once) on node 2.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup
# A small ASan quarantine, so the proxy's RSS shows its own heap and not
# freed blocks ASan keeps to catch use-after-free (256 MB by default).
export ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=4"
# One worker, so one metrics shard holds the whole cap of 512 whichever
# worker a client's connection lands on, and the counts below are exact.
export ZTUNNEL_WORKER_THREADS=1

K=10.200.1.3 C=10.200.2.2 # g is 10.200.1.2
zt_test "setup: Go clients g (unknown IP) and k (known IP) on node 1, c on node 2"
setup() {
	peer=$(mesh_peer) || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	g=$(zt_pod_add 1 1 g) && k=$(zt_pod_add 1 2 k) && c=$(zt_pod_add 2 1 c) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: k, name: k, namespace: shop, serviceAccount: sa-k, workloadIps: ["$K"], protocol: HBONE, node: node1, canonicalName: kay}
		- {uid: c, name: c, namespace: shop, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2, canonicalName: pay}
	Y
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	# shellcheck disable=SC2046
	env $(mesh_env 2) "$ZT_BIN" enroll --netns "$c" --uid c --name c --namespace shop \
		--service-account sa-c >/dev/null || return 1
	# One process for every connection (socat would fork 10 000 times).
	zt_bg "$c" app-c python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(512)
while True:
    a, _ = s.accept()
    a.close()
'
	zt_wait_port "$c" 127.0.0.1 8080 5
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# tunnels NETNS ID N FIRST BAGGAGE [PORT]: N empty tunnels to c:PORT (8080)
# from NETNS with identity ID, 8 at a time; {i} in BAGGAGE is the tunnel's
# number from FIRST. Prints the peer's "ok=.. failed=.." line.
tunnels() {
	zt_ns_exec "$1" "$peer" client -ca-dir "$MESH_CA" -id "$(mesh_id "$2" shop)" \
		-expect-id "$(mesh_id sa-c shop)" -connect "$C:15008" -authority "$C:${6:-8080}" \
		-timeout 0 -count "$3" -first "$4" -parallel 8 -H "baggage: $5" \
		2>>"$ZT_WORK/go-client.err"
}
metrics() { zt_ns_exec "$(zt_node_ns 2)" curl -s -m 30 localhost:15020/metrics; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$(mesh_pid 2 proxy)/status"; }
# sample TEXT NAME: value of an unlabelled sample (0 when absent).
sample() { printf '%s\n' "$1" | awk -v n="$2" '$1 == n { v = $2 } END { print v + 0 }'; }
# opened_by TEXT WORKLOAD: destination-reporter opened connections whose
# source_workload is WORKLOAD.
opened_by() {
	printf '%s\n' "$1" | grep '^istio_tcp_connections_opened_total{reporter="destination"' |
		grep -F "source_workload=\"$2\"" | awk '{ s += $NF } END { print s + 0 }'
}
BAG='k8s.cluster.name=remote,k8s.namespace.name=far,k8s.deployment.name=bg-{i},service.name=bg,service.version=v{i}'

# ---- where Istio uses baggage ----
zt_test "a source unknown by IP is labelled from its baggage (and the proof is mTLS)"
got=$(tunnels "$g" go-client 1 0 "$BAG")
text=$(metrics)
line=$(printf '%s\n' "$text" | grep '^istio_tcp_connections_opened_total{reporter="destination"' |
	grep -F 'source_workload="bg-0"')
case "$got $line" in
*'ok=1 failed=0 '*'source_workload="bg-0",source_canonical_service="bg",source_canonical_revision="v0",source_workload_namespace="far",source_principal="spiffe://cluster.local/ns/shop/sa/go-client"'*'source_cluster="remote"'*) zt_pass ;;
*) zt_fail "peer '$got', line '$line'" ;;
esac

zt_test "a source known by IP is labelled from the config; its baggage is ignored"
got=$(tunnels "$k" sa-k 1 0 'k8s.deployment.name=liar,k8s.namespace.name=lies')
text=$(metrics)
if [ "$got" = "ok=1 failed=0" ] && [ "$(opened_by "$text" k)" = 1 ] &&
	! printf '%s\n' "$text" | grep -q -e liar -e lies; then
	zt_pass
else
	zt_fail "peer '$got'; k: $(opened_by "$text" k); liar: $(printf '%s\n' "$text" | grep -c liar)"
fi

# ---- 10 000 distinct values ----
got1=$(tunnels "$g" go-client 1000 0 "$BAG")
text1=$(metrics)
size1=${#text1}
rss1=$(rss_kb)
got2=$(tunnels "$g" go-client 9000 1000 "$BAG")
text2=$(metrics)
size2=${#text2}
rss2=$(rss_kb)
peer2=$(printf '%s\n' "$text2" | grep '^istio_tcp_connections_opened_total{' | grep -c 'source_workload="bg-')
zt_log "after 1000: /metrics ${size1} bytes, RSS ${rss1} kB; after 10000: ${size2} bytes, RSS ${rss2} kB, $peer2 baggage series"

zt_test "10 000 tunnels with distinct baggage all answered 200"
zt_expect_eq "$got1 / $got2" "ok=1000 failed=0 / ok=9000 failed=0"

zt_test "512 label sets from baggage are kept, no more (the gauge agrees)"
gauge=$(sample "$text2" ztunnel_metrics_peer_series)
if [ "$peer2" = 512 ] && [ "$gauge" = 512 ]; then
	zt_pass
else
	zt_fail "$peer2 series with baggage labels, gauge $gauge"
fi

zt_test "/metrics does not grow from 1000 to 10 000 distinct values"
if [ "$size2" -le $((size1 + size1 / 10)) ]; then zt_pass; else zt_fail "$size1 -> $size2 bytes"; fi

zt_test "the proxy's RSS does not grow with them (less than 8 MB from 1000 to 10 000)"
if [ $((rss2 - rss1)) -lt 8192 ]; then zt_pass; else zt_fail "$rss1 -> $rss2 kB"; fi

# Every tunnel of the second batch made a new label set while the kept ones
# were at the cap, so each evicted exactly one idle one.
zt_test "evictions are counted: one per tunnel of the second batch"
ev1=$(sample "$text1" ztunnel_metrics_peer_series_evicted_total)
ev2=$(sample "$text2" ztunnel_metrics_peer_series_evicted_total)
zt_expect_eq "$((ev2 - ev1)) $(sample "$text2" ztunnel_metrics_peer_labels_dropped_total)" "9000 0"

zt_test "the newest values are kept and the oldest were evicted"
zt_expect_eq "$(opened_by "$text2" bg-9999) $(opened_by "$text2" bg-1)" "1 0"

zt_test "labels from the config are never evicted: k's series is still there"
zt_expect_eq "$(opened_by "$text2" k)" 1

# A failed tunnel is counted under a second label set (response_flags), which
# it must release too: otherwise held sets fill the cap and later values are
# dropped instead of evicting idle ones. (The failure is counted as the
# tunnel closes, just after its 503 is sent: the check reads tunnel 500's,
# closed long before the last is answered, and recent enough that the 200
# label sets made after it have not evicted it.)
zt_test "600 refused tunnels (nothing on c:9) with distinct baggage: counted, released, none dropped"
got3=$(tunnels "$g" go-client 600 20000 "$BAG" 9)
text3=$(metrics)
failed_last=$(printf '%s\n' "$text3" | grep '^istio_tcp_connections_failed_total{reporter="destination"' |
	grep -F 'source_workload="bg-20500"' | grep -F 'response_flags="CONNECT"' | awk '{ s += $NF } END { print s + 0 }')
dropped=$(sample "$text3" ztunnel_metrics_peer_labels_dropped_total)
gauge=$(sample "$text3" ztunnel_metrics_peer_series)
zt_expect_eq "$got3 / failed $failed_last / dropped $dropped / kept<=512 $([ "$gauge" -le 512 ] && echo yes)" \
	"ok=0 failed=600 / failed 1 / dropped 0 / kept<=512 yes"

mesh_finish
