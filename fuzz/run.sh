#!/usr/bin/env bash
# Builds every libFuzzer target into build-fuzz/ and runs each for
# FUZZ_SECONDS (default 10) over a scratch copy of its committed corpus
# (fuzz/corpus/<target>/ is never modified). Prints one line per target,
# "ok" or "CRASH <file>", then "N passed, N failed"; exits 1 on any crash.
#
#   fuzz/run.sh                      all targets
#   fuzz/run.sh spiffe zds_request   some targets
#   FUZZ_SECONDS=60 fuzz/run.sh      longer runs
# Crashing inputs are kept in build-fuzz/artifacts/<target>/; replay one with
#   build-fuzz/<target> build-fuzz/artifacts/<target>/crash-...
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
ALL=(hbone_authority spiffe zds_request local_yaml cni_store cni_ctl http_headers
     xds_address xds_authorization csr_parse control_tokens ads_request hbone_server dns_answer
     http1_parse route_match routes_yaml xds_route)
ALL+=(traceparent)
ALL+=(jwt_token)
ALL+=(authz_l7)
ALL+=(ratelimit_yaml)
ALL+=(xds_policies)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ALL[@]}")

# Longest input worth trying per target: a bit above each parser's own cap so
# the "too long" paths are reached too.
max_len() {
    case "$1" in
    hbone_authority) echo 128 ;;   # authorities are capped at 64 bytes
    spiffe) echo 1024 ;;           # ids are capped at ~600 bytes
    zds_request) echo 1100 ;;      # messages are < 1024 bytes
    local_yaml) echo 65536 ;;
    cni_store) echo 8192 ;;        # records: 64 KiB cap, fields total < 1 KiB
    cni_ctl) echo 4200 ;;          # lines are capped at 4096 bytes
    xds_address) echo 8192 ;;      # strings capped at 1 KiB, lists at 1024
    xds_authorization) echo 8192 ;;
    csr_parse) echo 8192 ;;        # RSA-4096 CSRs fit; the 64 KiB cap is checked directly
    control_tokens) echo 16384 ;;  # tokens are capped at 4096 bytes
    ads_request) echo 8192 ;;      # names are capped at 4096 bytes
    hbone_server) echo 16384 ;;    # several frames, a header block over 8 KiB values
    dns_answer) echo 4200 ;;       # the UDP server reads at most 4096 bytes
    http1_parse) echo 12000 ;;     # targets are capped at 8 KiB (the 60 KiB head cap: unit tests)
    route_match) echo 4096 ;;      # a request head; values past caps are refused whole
    routes_yaml) echo 16384 ;;     # a few route documents
    traceparent) echo 256 ;;       # version 00 is 55 bytes; later versions may add fields
    xds_route) echo 16384 ;;       # one Route; its lists are capped at 16..64 items
    jwt_token) echo 8400 ;;        # tokens are capped at 8192 bytes
    authz_l7) echo 16384 ;;        # a few AuthorizationPolicy documents
    ratelimit_yaml) echo 16384 ;;  # a few RateLimit documents; a first line past 8 KiB
    xds_policies) echo 16384 ;;    # one policy; a JWKS is capped at 64 KiB (unit tests)
    *) echo 4096 ;;
    esac
}

for t in "${targets[@]}"; do
    case " ${ALL[*]} " in *" $t "*) ;; *)
        echo "run.sh: unknown target $t (known: ${ALL[*]})" >&2
        exit 2
        ;;
    esac
done

if ! command -v clang >/dev/null; then
    echo "run.sh: clang not found (scripts/deps.sh installs clang libclang-rt-14-dev)" >&2
    exit 2
fi
mkdir -p "$FUZZ_BUILD"
# MAKEFLAGS from a parent `make SAN=1 fuzz` must not leak into build.mk.
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -f fuzz/build.mk FUZZ_BUILD="$FUZZ_BUILD" -j"$(nproc)" \
    $(printf "$FUZZ_BUILD/%s " "${targets[@]}") >"$FUZZ_BUILD/build.log" 2>&1; then
    cat "$FUZZ_BUILD/build.log" >&2
    echo "run.sh: build failed" >&2
    exit 2
fi

passed=0
failed=0
for t in "${targets[@]}"; do
    work=$(mktemp -d "${TMPDIR:-/tmp}/zt-fuzz-$t.XXXXXX")
    art="$FUZZ_BUILD/artifacts/$t"
    mkdir -p "$art" "$work/corpus"
    cp fuzz/corpus/"$t"/* "$work/corpus/" 2>/dev/null
    touch "$work/stamp"
    "$FUZZ_BUILD/$t" -max_total_time="$FUZZ_SECONDS" -max_len="$(max_len "$t")" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$art/" "$work/corpus" >"$work/log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -1)
    if [ $rc -eq 0 ]; then
        echo "$t: ok (${runs:-?} runs, ${rate:-?} exec/s)"
        passed=$((passed + 1))
    else
        crash=$(find "$art" -type f ! -name last.log -newer "$work/stamp" | head -1)
        echo "$t: CRASH ${crash:-(no artifact, exit $rc)}"
        cp "$work/log" "$art/last.log"
        grep -m3 -E 'ERROR:|runtime error|SUMMARY' "$work/log" | sed 's/^/    /'
        echo "    log: $art/last.log"
        failed=$((failed + 1))
    fi
    rm -rf "$work"
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
