#!/usr/bin/env bash
# Accepted connections spread over the proxy's worker threads. Eight held
# connections of each listener class, opened one after another to proxies
# with 4 workers, are served two by each worker: HBONE from Go clients to
# 15008, an enrolled pod's outbound (15001), and plaintext inbound from a
# pod outside the mesh (15006). SO_REUSEPORT alone hashes them onto the
# workers at random (an even split has odds of 1 in 26). Every connection
# carries data whether it was handed to another worker or not, and the
# counts fall back to 0 once they close.
# Needs root and Go.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

A=10.200.1.2 C=10.200.2.2 N=8 WORKERS=4
zt_test "setup: a (enrolled), g (plain) on node 1; c (enrolled) on node 2; $WORKERS workers each"
setup() {
	peer=$(mesh_peer) || return 1
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && g=$(zt_pod_add 1 2 g) && c=$(zt_pod_add 2 1 c) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2}
	Y
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	export MESH_PROXY_ENV="ZTUNNEL_WORKER_THREADS=$WORKERS"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$c" c sa-c && zt_echo_server "$c" 8080
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

metrics() { zt_ns_exec "$(zt_node_ns "$1")" curl -s -m 5 localhost:15020/metrics; }
# per_worker N LISTENER: node N's gauge of each worker, in worker order.
per_worker() {
	metrics "$1" | awk -F'"' -v l="$2" '/^ztunnel_worker_connections\{/ && $4 == l { split($5, v, " "); n[$2] = v[2] }
		END { for (i = 0; i in n; i++) printf "%s%s", (i ? " " : ""), n[i]; print "" }'
}
total() { per_worker "$1" "$2" | awk '{ for (i = 1; i <= NF; i++) s += $i } END { print s + 0 }'; }
total_is() { [ "$(total "$1" "$2")" = "$3" ]; }
moved() { metrics "$1" | awk -F'"' -v l="$2" '/^ztunnel_worker_connections_moved_total\{/ && $2 == l { split($3, v, " "); print v[2] }'; }
# echoed I WORD: held connection I's output has WORD.
echoed() { grep -q "$2" "$ZT_WORK/out$1"; }

zt_test "one gauge per worker and listener, all 0 before any connection"
w="$(per_worker 1 hbone)/$(per_worker 1 app)/$(per_worker 2 hbone)/$(per_worker 2 app)"
if [ "$w" = "0 0 0 0/0 0 0 0/0 0 0 0/0 0 0 0" ] && [ "$(moved 2 hbone)" = 0 ]; then zt_pass; else
	zt_fail "gauges '$w', moved '$(moved 2 hbone)'"
fi

# spread NAME NODE LISTENER NETNS CMD...: opens N connections with CMD in
# NETNS (stdin a fifo held open by an fd, stdout a file), each served (its
# first word echoed) and counted on NODE before the next one dials, so every
# placement sees the ones before it; checks the split and the moves, then
# sends on every connection and closes them all.
spread() {
	local name=$1 node=$2 ls=$3 ns=$4 i fd opened=0 w m bad=""
	shift 4
	local -a fds=()
	for i in $(seq 1 $N); do
		mkfifo "$ZT_WORK/in$name$i"
		zt_ns_exec "$ns" "$@" <"$ZT_WORK/in$name$i" >"$ZT_WORK/out$name$i" 2>"$ZT_WORK/err$name$i" &
		exec {fd}>"$ZT_WORK/in$name$i"
		fds[i]=$fd
		echo "first-$i" >&"$fd"
		mesh_eventually echoed "$name$i" "first-$i" && mesh_eventually total_is "$node" "$ls" "$i" &&
			opened=$i || break
	done

	zt_test "$name: $N connections opened one at a time, each echoed and counted"
	if [ "$opened" = $N ]; then zt_pass; else
		zt_fail "connection $((opened + 1)) (counted $(per_worker "$node" "$ls")): $(tr '\n' ' ' <"$ZT_WORK/err$name$((opened + 1))")"
	fi

	zt_test "$name: each of the $WORKERS workers serves $((N / WORKERS))"
	w=$(per_worker "$node" "$ls")
	if [ "$w" = "2 2 2 2" ]; then zt_pass; else zt_fail "per worker: '$w'"; fi

	zt_test "$name: some were handed to another worker (counted)"
	m=$(moved "$node" "$ls")
	if [ -n "$m" ] && [ "$m" -ge 1 ] && [ "$m" -le $N ]; then zt_pass; else zt_fail "moved '$m'"; fi

	zt_test "$name: every connection still carries data"
	for i in $(seq 1 $N); do echo "second-$i" >&"${fds[i]}"; done
	for i in $(seq 1 $N); do mesh_eventually echoed "$name$i" "second-$i" || bad="$bad $i"; done
	if [ -z "$bad" ]; then zt_pass; else zt_fail "no echo on:$bad"; fi

	zt_test "$name: the gauges fall back to 0 once the clients close"
	for i in $(seq 1 $N); do
		fd=${fds[i]}
		exec {fd}>&-
	done
	mesh_eventually total_is "$node" "$ls" 0
	w=$(per_worker "$node" "$ls")
	if [ "$w" = "0 0 0 0" ]; then zt_pass; else zt_fail "per worker: '$w'"; fi
}

spread hbone 2 hbone "$g" "$peer" client -ca-dir "$MESH_CA" -id "$(mesh_id go-client)" -timeout 0 \
	-expect-id "$(mesh_id sa-c)" -connect "$C:15008" -authority "$C:8080"
spread outbound 1 app "$a" socat -t 30 - "TCP:$C:8080"
spread inbound-plain 2 app "$g" socat -t 30 - "TCP:$C:8080"

zt_test "exposition accepted by promtool (Istio's own *_count gauge names aside)"
metrics 2 >"$ZT_WORK/metrics.txt"
out=$(promtool check metrics <"$ZT_WORK/metrics.txt" 2>&1)
rc=$?
rest=$(echo "$out" | grep -v '^workload_manager_\(active\|pending\)_proxy_count non-histogram' | grep -v '^$')
if { [ $rc = 0 ] || [ $rc = 3 ]; } && [ -z "$rest" ] && grep -q '^ztunnel_worker_connections' "$ZT_WORK/metrics.txt"; then
	zt_pass
else zt_fail "rc=$rc: $out"; fi

mesh_finish
