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
# Then the same objects over xDS (rows "xds"): the config is written as a
# directory (one file of 1000 workloads per namespace, services.yaml,
# policies.yaml),
# served by `ZT_BIN control` (its own CA, one node token), and a proxy is
# started with XDS_ADDRESS pointing at it, both on loopback in one network
# namespace. One row per size:
#   files      config files in the directory
#   ctl_ms     the control plane's initial load as it timed it ("loaded ...
#              in N ms": read, parse, merge, encode)
#   sync_ms    proxy start to its state holding every object (the log's
#              "new state:" line; connect, TLS, transfer, apply)
#   rss_mb     proxy RSS after the sync; ctl_mb: the control plane's
#   edit_ms    one workload changed in one file (write + rename): from the
#              control plane starting its reload (after its 100 ms settle
#              delay) to the proxy having applied the delta (log timestamps:
#              control's read + diff + push, transfer, proxy's apply)
#   reload_ms  of which the control plane's reload ("reloaded ... in N ms")
#   apply_ms   of which the proxy's apply ("applied Address ... in N ms")
#   edit_wall  rename to the proxy's "applied" line (settle delay included)
#   rss2_mb, ctl2_mb  RSS after the edit
# Environment: ZT_BIN (default build/ztunnel), BENCH_CONFIG_SIZES,
# BENCH_CONFIG_MODES ("yaml xds", the default, or one of them).
# Needs root (unshare -n) and python3. Timings are wall clock on a possibly
# shared machine: compare runs made side by side.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
ZT_BIN=${ZT_BIN:-$repo/build/ztunnel}
SIZES=${BENCH_CONFIG_SIZES:-20000 200000}
MODES=${BENCH_CONFIG_MODES:-yaml xds}

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
cpid=""
holder=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	[ -n "$cpid" ] && kill "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null
	[ -n "$holder" ] && kill "$holder" 2>/dev/null && wait "$holder" 2>/dev/null
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
# took PATTERN [LOG]: the "in N ms" figure of the last log line matching PATTERN.
took() { grep -- "$1" "${2:-$work/proxy.log}" | tail -1 | sed -n 's/.* in \([0-9.]*\) ms.*/\1/p'; }
# stamp_ms PATTERN LOG: the time (ms since the epoch) of the last line of LOG
# matching PATTERN, from its RFC 3339 timestamp.
stamp_ms() { date -d "$(grep -- "$1" "$2" | tail -1 | cut -f1)" +%s%3N; }
# wait_count PATTERN N TIMEOUT_S: until the proxy log has more than N lines
# matching PATTERN.
wait_count() {
	local deadline=$(($(now_ms) + $3 * 1000))
	until [ "$(grep -c -- "$1" "$work/proxy.log")" -gt "$2" ]; do
		kill -0 "$pid" 2>/dev/null || return 1
		[ "$(now_ms)" -lt "$deadline" ] || return 1
		sleep 0.005
	done
}

bench_yaml() {
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
}

# in_ns CMD...: runs CMD in the bench's network namespace (exec, same pid).
in_ns() { nsenter -t "$holder" -n "$@"; }

bench_xds() {
	local token=0123456789abcdef0123456789abcdef
	printf 'bench-node %s\n' "$token" >"$work/node-tokens"
	printf '%s' "$token" >"$work/token"
	unshare -n sleep 1000000 &
	holder=$!
	sleep 0.2
	in_ns ip link set lo up || exit 1
	printf '%-6s %9s %6s %5s %7s %7s %7s %6s %7s %9s %8s %9s %7s %7s\n' config workloads MB files \
		ctl_ms sync_ms rss_mb ctl_mb edit_ms reload_ms apply_ms edit_wall rss2_mb ctl2_mb
	for n in $SIZES; do
		rm -rf "$work/cfg" "$work/cfg-edit"
		python3 "$here/gen_config.py" "$n" --dir "$work/cfg" &&
			python3 "$here/gen_config.py" "$n" --dir "$work/cfg-edit" --edit || exit 1
		local files mb changed="" f
		files=$(ls "$work/cfg" | wc -l)
		mb=$(du -cb "$work/cfg"/*.yaml | awk 'END { printf "%.1f", $1 / 1048576 }')
		for f in "$work/cfg"/*.yaml; do
			cmp -s "$f" "$work/cfg-edit/${f##*/}" || changed=${f##*/}
		done
		: >"$work/control.log"
		: >"$work/proxy.log"
		nsenter -t "$holder" -n "$ZT_BIN" control --config-dir "$work/cfg" --ca-dir "$work/ca" \
			--node-tokens "$work/node-tokens" --listen 127.0.0.1:15012 >"$work/control.log" 2>&1 &
		cpid=$!
		local deadline=$(($(now_ms) + 300000))
		until grep -q "listening on" "$work/control.log"; do
			if ! kill -0 "$cpid" 2>/dev/null || [ "$(now_ms)" -ge "$deadline" ]; then
				echo "bench/config.sh: the control plane did not start with $n workloads:" >&2
				tail -5 "$work/control.log" >&2
				exit 1
			fi
			sleep 0.01
		done
		local ctl t0 sync rss crss
		ctl=$(took 'loaded ' "$work/control.log")
		t0=$(now_ms)
		nsenter -t "$holder" -n env XDS_ADDRESS=https://127.0.0.1:15012 XDS_ROOT_CA="$work/ca/root-cert.pem" \
			AUTH_TOKEN="$work/token" NODE_NAME=bench-node INPOD_UDS="$work/zt.sock" RUST_LOG=info \
			"$ZT_BIN" proxy >"$work/proxy.log" 2>&1 &
		pid=$!
		if ! wait_log "new state: $n workloads, $((n / 10)) services, $((n / 100)) policies" 300; then
			echo "bench/config.sh: the proxy did not sync $n workloads over xDS:" >&2
			tail -n 5 "$work/proxy.log" "$work/control.log" >&2
			exit 1
		fi
		sync=$(($(stamp_ms "new state: $n workloads" "$work/proxy.log") - t0))
		sleep 1 # let workers pick up the snapshot
		rss=$(rss_mb "$pid")
		crss=$(rss_mb "$cpid")
		local before edit_t0 edit_wall reload apply t_ctl t_px edit
		before=$(grep -c 'applied Address' "$work/proxy.log")
		cp "$work/cfg-edit/$changed" "$work/cfg/.$changed.tmp"
		edit_t0=$(date +%s%3N)
		mv "$work/cfg/.$changed.tmp" "$work/cfg/$changed"
		if ! wait_count 'applied Address' "$before" 120; then
			echo "bench/config.sh: no xDS delta applied with $n workloads" >&2
			tail -n 5 "$work/proxy.log" "$work/control.log" >&2
			exit 1
		fi
		t_px=$(stamp_ms 'applied Address' "$work/proxy.log")
		edit_wall=$((t_px - edit_t0))
		reload=$(took 'reloaded ' "$work/control.log")
		apply=$(took 'applied Address' "$work/proxy.log")
		t_ctl=$(stamp_ms 'reloaded ' "$work/control.log")
		# The reload began reload_ms before its line.
		edit=$(awk -v p="$t_px" -v c="$t_ctl" -v r="${reload:-0}" 'BEGIN { printf "%.0f", p - c + r }')
		sleep 1 # the old snapshot is freed once every worker moved on
		printf '%-6s %9s %6s %5s %7s %7s %7s %6s %7s %9s %8s %9s %7s %7s\n' xds "$n" "$mb" "$files" \
			"${ctl:--}" "$sync" "$rss" "$crss" "$edit" "${reload:--}" "${apply:--}" "$edit_wall" \
			"$(rss_mb "$pid")" "$(rss_mb "$cpid")"
		kill "$pid" && wait "$pid" 2>/dev/null
		pid=""
		kill "$cpid" && wait "$cpid" 2>/dev/null
		cpid=""
	done
}

for mode in $MODES; do
	case $mode in
	yaml) bench_yaml ;;
	xds) bench_xds ;;
	*)
		echo "bench/config.sh: unknown mode $mode (yaml, xds)" >&2
		exit 1
		;;
	esac
done
