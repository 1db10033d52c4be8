#!/usr/bin/env bash
# Runs each unit-test binary given as an argument and sums their
# "N passed, N failed" (and "N skipped") lines. A binary that prints no
# result line, exits non-zero, or runs longer than UNIT_TIMEOUT seconds
# (default 900: a hung test fails instead of hanging CI) counts as failed.
# Exits non-zero if any test failed. With ZT_RESULTS set, writes
# "passed failed skipped" there.
set -u
timeout_s=${UNIT_TIMEOUT:-900}
total_p=0 total_f=0 total_s=0 bad=0
for t in "$@"; do
  echo "== ${t}"
  out=$(timeout -k 10 "$timeout_s" "$t" 2>&1); rc=$?
  echo "$out" | grep -v '^ok   ' || true
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "   (timed out after ${timeout_s}s)"; bad=1; total_f=$((total_f + 1)); continue
  fi
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n1)
  if [ -z "$line" ]; then
    echo "   (no result line, exit $rc)"; bad=1; total_f=$((total_f + 1)); continue
  fi
  p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
  s=$(echo "$out" | grep -E '^[0-9]+ skipped$' | tail -n1)
  s=${s%% skipped}
  total_p=$((total_p + p)); total_f=$((total_f + f)); total_s=$((total_s + ${s:-0}))
  [ "$rc" = 0 ] || bad=1
done
if [ -n "${ZT_RESULTS:-}" ]; then echo "$total_p $total_f $total_s" > "$ZT_RESULTS"; fi
skips=""
[ "$total_s" = 0 ] || skips=", ${total_s} skipped"
echo "unit: ${total_p} passed, ${total_f} failed${skips}"
[ "$bad" = 0 ] && [ "$total_f" = 0 ]
