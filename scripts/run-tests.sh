#!/usr/bin/env bash
# Runs every test against the binaries in BUILD_DIR (default build-san): the
# unit-test binaries, a short fuzzing pass over every parser, the
# network-namespace suite (root only), then the test peers' self-tests
# (counted apart: they check the harness), and prints one total
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
# The test peers' own self-tests (the Go HBONE peer, the fake istiod and the
# control-plane client on grpc-js): counted apart, since they check the
# harness, not the proxy, but a broken peer fails the run.
hp=0 hf=0 harness_rc=0
for t in tests/conformance/selftest.sh tests/conformance/control_selftest.sh tests/interop/test_peer.sh; do
  if [ "$t" = tests/interop/test_peer.sh ] && [ "$(id -u)" != 0 ]; then
    if [ "${CI:-}" = true ]; then hf=$((hf + 1)); harness_rc=1; fi
    echo "harness: $t needs root"
    continue
  fi
  out=$(timeout -k 10 300 "$t" 2>&1)
  rc=$?
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n1)
  if [ -z "$line" ] || [ "$rc" != 0 ]; then
    echo "$out" | tail -n 20
    harness_rc=1
  fi
  if [ -n "$line" ]; then
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    hp=$((hp + p)); hf=$((hf + f))
  fi
  [ -n "$line" ] && [ "$rc" = 0 ] || hf=$((hf + 1))
  echo "harness: $t: ${line:-no result line (exit $rc)}"
done
echo "total: unit ${up}/${uf}, fuzz ${fp}/${ff}, e2e ${ep}/${ef}, harness self-tests ${hp}/${hf} (passed/failed)"
skipped=$((${us:-0} + ${es:-0}))
[ "$skipped" = 0 ] || echo "$skipped skipped (not counted as passed)"
echo "$((up + fp + ep)) passed, $((uf + ff + ef + hf)) failed"
[ "$unit_rc" = 0 ] && [ "$fuzz_rc" = 0 ] && [ "$e2e_rc" = 0 ] && [ "$harness_rc" = 0 ] &&
  [ $((uf + ff + ef + hf)) = 0 ]
