#!/usr/bin/env bash
# bench/config.sh: how fast the proxy applies a large local config, and how
# much memory it keeps. For each size N (default "20000 200000") it writes
# N workloads, N/10 services and N/100 policies (bench/gen_config.py), starts
# ZT_BIN proxy on that file in a network namespace of its own, then edits
# one workload of the file (write + rename, as editors do) and waits for the
# reload. One row per size:
#   workloads  file size (MB)
#   start_ms   process start to "started" in its log (the initial load,
#              wall clock, process start-up included)
#   load_ms    the load as the proxy timed it ("loaded ... in N ms")
#   rss_mb     RSS once started
#   edit_ms    the one-workload reload as the proxy timed it ("reloaded ...
#              in N ms"), from reading the file to the new snapshot in force
#   edit_wall  rename to the "reloaded" line (includes the proxy's 100 ms
#              settle delay for editors that write in several steps)
#   rss2_mb    RSS after the reload
# Environment: ZT_BIN (default build/ztunnel), BENCH_CONFIG_SIZES.
# Needs root (unshare -n) and python3. Timings are wall clock on a possibly
# shared machine: compare runs made side by side.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
ZT_BIN=${ZT_BIN:-$repo/build/ztunnel}
SIZES=${BENCH_CONFIG_SIZES:-20000 200000}

[ -x "$ZT_BIN" ] || {
	echo "bench/config.sh: $ZT_BIN is not an executable (make build/ztunnel)" >&2
	exit 1
}
[ "$(id -u)" = 0 ] || {
	echo "bench/config.sh: needs root (unshare -n)" >&2
	exit 1
}
work=$(mktemp -d /tmp/zt-bench-config.XXXXXX)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$repo/tests/interop/mkca.sh" "$work/ca" ec root >/dev/null 2>&1 || {
	echo "bench/config.sh: cannot make a CA" >&2
	exit 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }
# wait_log PATTERN TIMEOUT_S: until the proxy log has a line matching PATTERN.
wait_log() {
	local deadline=$(($(now_ms) + $2 * 1000))
	until grep -q -- "$1" "$work/proxy.log"; do
		kill -0 "$pid" 2>/dev/null || return 1
		[ "$(now_ms)" -lt "$deadline" ] || return 1
		sleep 0.01
	done
}
# took PATTERN: the "in N ms" figure of the last log line matching PATTERN.
took() { grep -- "$1" "$work/proxy.log" | tail -1 | sed -n 's/.* in \([0-9.]*\) ms.*/\1/p'; }

printf '%-6s %9s %6s %8s %7s %7s %7s %9s %7s\n' config workloads MB start_ms load_ms rss_mb edit_ms \
	edit_wall rss2_mb
for n in $SIZES; do
	python3 "$here/gen_config.py" "$n" >"$work/zt.yaml" &&
		python3 "$here/gen_config.py" "$n" --edit >"$work/edit.yaml" || exit 1
	mb=$(awk -v b="$(stat -c %s "$work/zt.yaml")" 'BEGIN { printf "%.1f", b / 1048576 }')
	: >"$work/proxy.log"
	t0=$(now_ms)
	unshare -n sh -c 'ip link set lo up && exec "$@"' sh env LOCAL_XDS_PATH="$work/zt.yaml" \
		LOCAL_CA_DIR="$work/ca" INPOD_UDS="$work/zt.sock" RUST_LOG=info "$ZT_BIN" proxy \
		>"$work/proxy.log" 2>&1 &
	pid=$!
	if ! wait_log ' started: ' 120; then
		echo "bench/config.sh: the proxy did not start with $n workloads:" >&2
		tail -5 "$work/proxy.log" >&2
		exit 1
	fi
	start_ms=$(($(now_ms) - t0))
	sleep 1 # let workers pick up the snapshot
	rss=$(rss_mb "$pid")
	load=$(took 'loaded ')
	cp "$work/edit.yaml" "$work/zt.yaml.tmp"
	t0=$(now_ms)
	mv "$work/zt.yaml.tmp" "$work/zt.yaml"
	if ! wait_log 'reloaded ' 120; then
		echo "bench/config.sh: no reload logged with $n workloads" >&2
		exit 1
	fi
	edit_wall=$(($(now_ms) - t0))
	sleep 1 # the old snapshot is freed once every worker moved on
	rss2=$(rss_mb "$pid")
	edit=$(took 'reloaded ')
	printf '%-6s %9s %6s %8s %7s %7s %7s %9s %7s\n' "yaml" "$n" "$mb" "$start_ms" "${load:--}" "$rss" \
		"${edit:--}" "$edit_wall" "$rss2"
	kill "$pid" && wait "$pid" 2>/dev/null
	pid=""
done
