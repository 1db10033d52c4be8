#!/usr/bin/env bash
# Runs every test against the binaries in BUILD_DIR (default build-san): the
# unit-test binaries, a short fuzzing pass over every parser, then the
# network-namespace suite (root only), and prints one total
# "N passed, N failed" line (skips are counted apart, never as passes).
# Exits non-zero on any failure. Under CI=true (set by .ci/run) everything
# is installed and we run as root, so a skip is a failure there.
set -u
cd "$(dirname "$0")/.."
build=${1:-build-san}
mapfile -t bins < <(find "$build/tests" -type f -perm -u+x 2>/dev/null | sort)
results=$(mktemp)
trap 'rm -f "$results"' EXIT
ZT_RESULTS=$results scripts/run-unit.sh "${bins[@]}"
unit_rc=$?
read -r up uf us <"$results" || { up=0; uf=1; us=0; }
# A short fuzzing pass over every parser (libFuzzer, ASan+UBSan), FUZZ_SECONDS
# per target; `make fuzz` runs longer.
fp=0 ff=0 fuzz_rc=0
fuzz_out=$(FUZZ_SECONDS=${FUZZ_SECONDS:-5} fuzz/run.sh 2>&1)
fuzz_rc=$?
echo "$fuzz_out" | tail -n 12
line=$(echo "$fuzz_out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n1)
if [ -n "$line" ]; then
  fp=${line%% passed*}; ff=${line#*, }; ff=${ff%% failed*}
else
  ff=1
fi
ep=0 ef=0 e2e_rc=0
if [ "$(id -u)" = 0 ]; then
  e2e_out=$(mktemp)
  ZT_BIN="$PWD/$build/ztunnel" tests/e2e/run.sh 2>&1 | tee "$e2e_out"
  e2e_rc=${PIPESTATUS[0]}
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$e2e_out" | tail -n1)
  rm -f "$e2e_out"
  if [ -n "$line" ]; then
    ep=${line%% passed*}; ef=${line#*, }; ef=${ef%% failed*}
  else
    ef=1
  fi
elif [ "${CI:-}" = true ]; then
  echo "e2e: cannot run without root (a failure under CI=true)"
  ef=1 e2e_rc=1
else
  echo "e2e: skipped (needs root for network namespaces)"
  es=1
fi
echo "total: unit ${up}/${uf}, fuzz ${fp}/${ff}, e2e ${ep}/${ef} (passed/failed)"
skipped=$((${us:-0} + ${es:-0}))
[ "$skipped" = 0 ] || echo "$skipped skipped (not counted as passed)"
echo "$((up + fp + ep)) passed, $((uf + ff + ef)) failed"
[ "$unit_rc" = 0 ] && [ "$fuzz_rc" = 0 ] && [ "$e2e_rc" = 0 ] && [ $((uf + ff + ef)) = 0 ]
