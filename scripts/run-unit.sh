#!/usr/bin/env bash
# Runs each unit-test binary given as an argument and sums their
# "N passed, N failed" lines. Exits non-zero if any test failed.
set -u
total_p=0 total_f=0 bad=0
for t in "$@"; do
  echo "== ${t}"
  out=$("$t" 2>&1); rc=$?
  echo "$out" | grep -v '^ok   ' || true
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n1)
  if [ -z "$line" ]; then
    echo "   (no result line, exit $rc)"; bad=1; total_f=$((total_f + 1)); continue
  fi
  p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
  total_p=$((total_p + p)); total_f=$((total_f + f))
  [ "$rc" = 0 ] || bad=1
done
if [ -n "${ZT_RESULTS:-}" ]; then echo "$total_p $total_f" > "$ZT_RESULTS"; fi
echo "unit: ${total_p} passed, ${total_f} failed"
[ "$bad" = 0 ] && [ "$total_f" = 0 ]
