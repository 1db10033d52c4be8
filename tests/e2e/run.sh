#!/usr/bin/env bash
# tests/e2e/run.sh [SCRIPT...]: runs every tests/e2e/test_*.sh (or the given
# scripts), each in its own process with its own ZT_PFX and ZT_WORK, under a
# per-script timeout; collects each script's "N passed, N failed" line, also
# fails a script whose proxy/agent logs hold a sanitizer report, and prints a
# final "N passed, N failed". Exit 1 if anything failed. Needs root.
#
# Environment:
#   ZT_BIN           ztunnel binary (default build-san/ztunnel of this repo)
#   E2E_TIMEOUT      seconds per script (default 180)
#   HBONE_PEER       Go HBONE peer; built once into ZT_E2E_CACHE otherwise
#   ZT_E2E_CACHE     build cache for the Go peer (default /tmp/zt-e2e-cache)
#   E2E_VERBOSE=1    print every PASS line, not only failures
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

ZT_BIN=${ZT_BIN:-$repo/build-san/ztunnel}
case $ZT_BIN in /*) ;; *) ZT_BIN=$PWD/$ZT_BIN ;; esac
E2E_TIMEOUT=${E2E_TIMEOUT:-180}
if [ ! -x "$ZT_BIN" ]; then
	echo "run.sh: ZT_BIN=$ZT_BIN is not an executable" >&2
	exit 2
fi
if [ "$(id -u)" != 0 ]; then
	echo "run.sh: needs root (network namespaces)" >&2
	exit 2
fi
export ZT_BIN
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

if [ -z "${HBONE_PEER:-}" ]; then
	if HBONE_PEER=$("$repo/tests/interop/build.sh" "${ZT_E2E_CACHE:-/tmp/zt-e2e-cache}/interop" 2>/dev/null); then
		export HBONE_PEER
	else
		echo "run.sh: could not build the Go HBONE peer; scenarios needing it will fail" >&2
		unset HBONE_PEER
	fi
fi

if [ $# -gt 0 ]; then
	scripts=("$@")
else
	scripts=("$here"/test_*.sh)
fi

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/zt-e2e-run.XXXXXX")
total_pass=0
total_fail=0
harness_pass=0
failed_scripts=()
t_start=$(date +%s)

# sweep PFX WORK: whatever a killed script left behind (its processes by
# recorded PID, then its namespaces).
sweep() {
	local pfx=$1 work=$2 pid _ ns
	if [ -f "$work/pids" ]; then
		while read -r pid _; do
			[ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null
		done <"$work/pids"
	fi
	for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep "^${pfx}-" || true); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$pid" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null || true
	done
	# Per-namespace files for `ip netns exec` (test_control_failover.sh's
	# hosts file), named after the script's namespaces.
	rm -rf "/etc/netns/${pfx}-"* 2>/dev/null || true
	# bpf filesystems under the work dir (eBPF backend tests): their pins
	# removed (which detaches what they attached), then unmounted.
	awk -v w="$work/" 'index($5, w) == 1 && $0 ~ / - bpf / { print $5 }' /proc/self/mountinfo 2>/dev/null |
		while read -r m; do
			rm -rf "${m:?}/"* 2>/dev/null
			umount -l "$m" 2>/dev/null || true
		done
}

i=0
for script in "${scripts[@]}"; do
	i=$((i + 1))
	name=$(basename "$script" .sh)
	pfx="e2e$(($$ % 10000))n$i"
	work="$run_dir/$name"
	out="$run_dir/$name.out"
	t0=$(date +%s)
	ZT_PFX=$pfx ZT_WORK=$work ZT_KEEP_WORK=1 ZT_TESTS_PASSED=0 ZT_TESTS_FAILED=0 \
		timeout -k 10 "$E2E_TIMEOUT" bash "$script" >"$out" 2>&1 </dev/null
	rc=$?
	secs=$(($(date +%s) - t0))
	sweep "$pfx" "$work"

	summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -1)
	p=0 f=0 note=""
	if [ -n "$summary" ]; then
		p=${summary%% passed*}
		f=${summary#*passed, }
		f=${f%% failed}
	else
		note="$note no summary line;"
		f=$((f + 1))
	fi
	if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		note="$note timed out after ${E2E_TIMEOUT}s;"
		f=$((f + 1))
	elif [ "$rc" != 0 ] && [ "$f" = 0 ]; then
		note="$note exit $rc with no failed check;"
		f=$((f + 1))
	fi
	san=$(grep -l -E "ERROR: AddressSanitizer|runtime error:" "$work"/*.log 2>/dev/null || true)
	if [ -n "$san" ] && ! grep -q "^FAIL no sanitizer report" "$out"; then
		note="$note sanitizer report in $(echo "$san" | xargs -n1 basename | tr '\n' ' ');"
		f=$((f + 1))
	fi

	# test_topology checks the harness (namespaces, routes), not the
	# proxy: its passes are counted apart; its failures still fail the run.
	if [ "$name" = test_topology ]; then
		harness_pass=$((harness_pass + p))
	else
		total_pass=$((total_pass + p))
	fi
	total_fail=$((total_fail + f))
	printf '%-22s %3d passed, %d failed  (%ds)%s\n' "$name" "$p" "$f" "$secs" "${note:+  [$note]}"
	if [ "${E2E_VERBOSE:-0}" = 1 ]; then
		grep -E '^(PASS|FAIL) ' "$out" | sed 's/^/    /'
	else
		grep -E '^FAIL ' "$out" | sed 's/^/    /'
	fi
	if [ "$f" -gt 0 ]; then
		failed_scripts+=("$name")
		echo "    output: $out; logs: $work"
	else
		rm -rf "$work" "$out"
	fi
done

echo "suite time: $(($(date +%s) - t_start))s${failed_scripts[*]:+; failed scripts: ${failed_scripts[*]}}"
[ "$harness_pass" = 0 ] || echo "harness self-checks (test_topology, not counted below): $harness_pass passed"
if [ "$total_fail" = 0 ]; then rm -rf "$run_dir"; fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
