#!/usr/bin/env bash
# HBONE connections spread over the proxy's worker threads: eight
# connections from Go HBONE clients, opened one after another to a pod on a
# proxy with 4 workers, are served two by each worker (SO_REUSEPORT alone
# would hash them onto the workers at random: an even split has odds of
# 1 in 26), every one of them carries data, whether it was handed to
# another worker or not, and the count falls back to 0 once they close.
# Needs root and Go.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

C=10.200.2.2 N=8 WORKERS=4
zt_test "setup: g (plain, node 1), c (enrolled, node 2, proxy with $WORKERS workers)"
setup() {
	peer=$(mesh_peer) || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	g=$(zt_pod_add 1 1 g) && c=$(zt_pod_add 2 1 c) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n2.yaml" <<-Y
		workloads:
		- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2}
	Y
	MESH_PROXY_ENV="ZTUNNEL_WORKER_THREADS=$WORKERS" mesh_node_up 2 || return 1
	mesh_enroll 2 "$c" c sa-c && zt_echo_server "$c" 8080
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

metrics() { zt_ns_exec "$(zt_node_ns 2)" curl -s -m 5 localhost:15020/metrics; }
# per_worker: the gauge of each worker, in worker order, on one line.
per_worker() {
	metrics | awk -F'[ "]' '/^ztunnel_worker_hbone_connections\{/ { v[$2] = $NF }
		END { for (i = 0; i in v; i++) printf "%s%s", (i ? " " : ""), v[i]; print "" }'
}
total() { per_worker | awk '{ for (i = 1; i <= NF; i++) s += $i } END { print s + 0 }'; }
moved() { metrics | awk '/^ztunnel_hbone_connections_moved_total / { print $2 }'; }
total_is() { [ "$(total)" = "$1" ]; }
# echoed I WORD: client I's output has WORD.
echoed() { grep -q "$2" "$ZT_WORK/out$1"; }

zt_test "both families exposed, one gauge per worker, all 0 before any connection"
w=$(per_worker)
if [ "$w" = "0 0 0 0" ] && [ "$(moved)" = 0 ]; then zt_pass; else zt_fail "gauges '$w', moved '$(moved)'"; fi

# Client I holds its connection open (stdin a fifo kept open by fd);
# each one is served (its first word echoed) before the next one dials,
# so every placement sees the ones before it.
declare -a fds=()
opened=0
for i in $(seq 1 $N); do
	mkfifo "$ZT_WORK/in$i"
	zt_ns_exec "$g" "$peer" client -ca-dir "$MESH_CA" -id "$(mesh_id go-client)" -timeout 0 \
		-expect-id "$(mesh_id sa-c)" -connect "$C:15008" -authority "$C:8080" \
		<"$ZT_WORK/in$i" >"$ZT_WORK/out$i" 2>"$ZT_WORK/err$i" &
	exec {fd}>"$ZT_WORK/in$i"
	fds[i]=$fd
	echo "first-$i" >&"$fd"
	mesh_eventually echoed "$i" "first-$i" && mesh_eventually total_is "$i" && opened=$i || break
done

zt_test "$N connections opened one at a time, each echoed"
if [ "$opened" = $N ]; then zt_pass; else zt_fail "connection $((opened + 1)): $(tr '\n' ' ' <"$ZT_WORK/err$((opened + 1))")"; fi

zt_test "each of the $WORKERS workers serves $((N / WORKERS))"
w=$(per_worker)
if [ "$w" = "2 2 2 2" ]; then zt_pass; else zt_fail "per worker: '$w'"; fi

zt_test "some were handed to another worker (counted)"
m=$(moved)
if [ -n "$m" ] && [ "$m" -ge 1 ] && [ "$m" -le $N ]; then zt_pass; else zt_fail "moved '$m'"; fi

zt_test "every connection still carries data"
for i in $(seq 1 $N); do echo "second-$i" >&"${fds[i]}"; done
bad=""
for i in $(seq 1 $N); do mesh_eventually echoed "$i" "second-$i" || bad="$bad $i"; done
if [ -z "$bad" ]; then zt_pass; else zt_fail "no echo on:$bad"; fi

zt_test "the gauges fall back to 0 once the clients close"
for i in $(seq 1 $N); do fd=${fds[i]} && exec {fd}>&-; done
mesh_eventually total_is 0
w=$(per_worker)
if [ "$w" = "0 0 0 0" ]; then zt_pass; else zt_fail "per worker: '$w'"; fi

zt_test "exposition accepted by promtool (Istio's own *_count gauge names aside)"
metrics >"$ZT_WORK/metrics.txt"
out=$(promtool check metrics <"$ZT_WORK/metrics.txt" 2>&1)
rc=$?
rest=$(echo "$out" | grep -v '^workload_manager_\(active\|pending\)_proxy_count non-histogram' | grep -v '^$')
if { [ $rc = 0 ] || [ $rc = 3 ]; } && [ -z "$rest" ] && grep -q '^ztunnel_worker_hbone' "$ZT_WORK/metrics.txt"; then
	zt_pass
else zt_fail "rc=$rc: $out"; fi

mesh_finish
