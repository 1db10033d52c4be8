#!/usr/bin/env bash
# bench/run.sh: B1 (bulk, 1 stream) and B3 (fixed-rate latency) of the
# benchmark suite, for each two-hop path in one invocation:
#   direct   client pod A -> server pod B, routed by the nodes, no proxy
#   socat    plaintext 2-hop: socat -b 262144 on node A and on node B
#   stunnel  mTLS 2-hop: stunnel4, TLS 1.3, ECDSA P-256, verifyChain/requireCert
#   ours     two ztunnel-c proxies, via bench_ours_setup (bench/ours.sh),
#            running ZT_BIN (default: this tree's build/ztunnel, the release
#            build `make bench` makes first)
# Topology (tests/e2e/lib.sh): node 1 (172.30.0.1) with pod A 10.200.1.2,
# node 2 (172.30.0.2) with pod B 10.200.2.2. iperf3 and sockperf servers run
# in pod B, the clients in pod A. Proxy A listens on node 1's fabric IP, proxy
# B on node 2's and forwards to pod B.
#
# Environment knobs:
#   BENCH_SCENARIOS   default "direct socat stunnel ours"
#   BENCH_TIME        seconds per iperf3 and per sockperf run (default 5)
#   BENCH_REPEAT      runs per scenario, medians reported (default 1)
#   BENCH_IDLE_CONNS  idle tunnels held for B5, our memory per connection
#                     (default 1000)
#   BENCH_REPLY_EVERY sockperf --reply-every (default 10 => ~500 RTT samples
#                     in 5 s; sockperf's own default 100 gives ~50, too few
#                     for a p99)
#   ZT_BIN            ztunnel-c binary for the "ours" row (default build/ztunnel)
#   BENCH_OURS_SH     file defining bench_ours_setup (default bench/ours.sh)
# Needs root. Every case is bounded by `timeout`; the namespaces and
# processes are removed on exit and on Ctrl-C.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
ZT_BIN=${ZT_BIN:-$repo/build/ztunnel}
# shellcheck source=../tests/e2e/lib.sh
. "$repo/tests/e2e/lib.sh"
# shellcheck source=ours.sh
. "${BENCH_OURS_SH:-$here/ours.sh}"
zt_trap_cleanup

BENCH_SCENARIOS=${BENCH_SCENARIOS:-direct socat stunnel ours}
BENCH_TIME=${BENCH_TIME:-5}
BENCH_REPEAT=${BENCH_REPEAT:-1}
BENCH_REPLY_EVERY=${BENCH_REPLY_EVERY:-10}
BENCH_IDLE_CONNS=${BENCH_IDLE_CONNS:-1000}
BENCH_WORK=$ZT_WORK
BENCH_IPERF_PORT=5201
BENCH_SOCKPERF_PORT=11111
CLK_TCK=$(getconf CLK_TCK)

for tool in iperf3 sockperf stunnel4 socat openssl jq; do
	command -v "$tool" >/dev/null || {
		echo "bench: $tool missing (apt-get install $tool)" >&2
		exit 1
	}
done
[ "$(id -u)" = 0 ] || {
	echo "bench: needs root (network namespaces)" >&2
	exit 1
}

# ---- topology and app servers ----
zt_node_add 1 && zt_node_add 2 || exit 1
BENCH_POD_A_NS=$(zt_pod_add 1 1 client) || exit 1
BENCH_POD_B_NS=$(zt_pod_add 2 1 server) || exit 1
BENCH_NS_A=$(zt_node_ns 1)
BENCH_NS_B=$(zt_node_ns 2)
BENCH_NODE_A_IP=$(zt_node_ip 1)
BENCH_NODE_B_IP=$(zt_node_ip 2)
BENCH_POD_A_IP=$(zt_pod_ip 1 1) # for bench_ours_setup
export BENCH_POD_A_IP
BENCH_POD_B_IP=$(zt_pod_ip 2 1)

zt_bg "$BENCH_POD_B_NS" iperf3-server iperf3 -s -p "$BENCH_IPERF_PORT"
zt_bg "$BENCH_POD_B_NS" sockperf-server sockperf server --tcp -i 0.0.0.0 -p "$BENCH_SOCKPERF_PORT"
zt_wait_port "$BENCH_POD_B_NS" 127.0.0.1 "$BENCH_IPERF_PORT" 5 || exit 1
sleep 0.3 # sockperf has no cheap readiness probe that does not count as a client

# One CA for the stunnel row and for ours (Istio cacerts layout).
BENCH_CA=$BENCH_WORK/ca
"$repo/tests/interop/mkca.sh" "$BENCH_CA" ec root || exit 1

# mint_leaf NAME SPIFFE: ECDSA P-256 leaf signed by the bench CA.
mint_leaf() {
	local name=$1 id=$2 d=$BENCH_WORK
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$d/$name.key" -subj "/O=bench/CN=$name" -out "$d/$name.csr" 2>/dev/null &&
		printf 'subjectAltName=URI:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$id" >"$d/$name.ext" &&
		openssl x509 -req -in "$d/$name.csr" -CA "$BENCH_CA/ca-cert.pem" -CAkey "$BENCH_CA/ca-key.pem" \
			-CAcreateserial -days 1 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
}

# ---- measurements ----

# group_cpu_ticks PGID: utime+stime (+ reaped children) of every process in
# the group, in clock ticks.
group_cpu_ticks() {
	local pg=$1
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v pg="$pg" '
		{ sub(/^.*\) /, ""); if ($3 == pg) s += $12 + $13 + $14 + $15 }
		END { print s + 0 }'
}

cpu_of() { # cpu_of "PID PID..." -> total ticks
	local t=0 p
	for p in $1; do t=$((t + $(group_cpu_ticks "$p"))); done
	echo "$t"
}

status_kb() { # status_kb FIELD "PID...": FIELD (VmRSS, VmHWM) of the group leaders, kB (sum)
	local kb=0 p v
	for p in $2; do
		v=$(awk -v f="$1:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null)
		kb=$((kb + ${v:-0}))
	done
	echo "$kb"
}

rss_kb() { status_kb VmRSS "$1"; } # current RSS, kB

# hold_idle N: N connections from pod A to pod B's port 7777 (through the
# scenario's proxies when pod A's traffic is captured), held open and idle;
# prints "kBa kBb" of the proxies' RSS once all N are accepted by pod B's
# server, then closes them.
hold_idle() {
	local n=$1 before_a before_b srv cli
	zt_bg "$BENCH_POD_B_NS" hold-server python3 -c '
import asyncio, sys
n = 0
async def on(r, w):
    global n
    n += 1
    if n % 100 == 0:
        print("accepted", n, flush=True)
    await r.read()
async def main():
    s = await asyncio.start_server(on, "0.0.0.0", 7777, backlog=4096)
    print("listening", flush=True)
    await s.serve_forever()
asyncio.run(main())'
	srv=$ZT_BG_PID
	zt_wait_port "$BENCH_POD_B_NS" 127.0.0.1 7777 5 || return 1
	zt_bg "$BENCH_POD_A_NS" hold-client python3 -c '
import socket, sys, time
socks = []
for _ in range('"$n"'):
    socks.append(socket.create_connection(("'"$BENCH_POD_B_IP"'", 7777), timeout=30))
print("held", len(socks), flush=True)
time.sleep(600)'
	cli=$ZT_BG_PID
	local i
	for i in $(seq 600); do
		grep -q "accepted $n\b" "$BENCH_WORK/hold-server.log" 2>/dev/null && break
		sleep 0.1
	done
	echo "$(rss_kb "$BENCH_PIDS_A") $(rss_kb "$BENCH_PIDS_B")"
	zt_bg_stop "$cli"
	zt_bg_stop "$srv"
}

hwm_mb() { # peak RSS of the group leaders, MB (sum)
	awk -v kb="$(status_kb VmHWM "$1")" 'BEGIN { printf "%.1f", kb / 1024 }'
}

median() { # median of the arguments ("-" ignored), or "-"
	printf '%s\n' "$@" | grep -v '^-$' | sort -g | awk '
		{ v[NR] = $1 } END {
			if (NR == 0) { print "-"; exit }
			if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# run_iperf TARGET LOG: prints "gbps bytes" or "- 0".
run_iperf() {
	local host=${1%:*} port=${1##*:} log=$2
	if zt_ns_exec "$BENCH_POD_A_NS" timeout $((BENCH_TIME + 15)) \
		iperf3 -c "$host" -p "$port" -t "$BENCH_TIME" -J >"$log" 2>&1; then
		jq -r '"\(.end.sum_received.bits_per_second / 1e9) \(.end.sum_received.bytes)"' "$log" 2>/dev/null ||
			echo "- 0"
	else
		echo "- 0"
	fi
}

# run_sockperf TARGET LOG: prints "p50 p90 p99 observations" (µs) or dashes.
run_sockperf() {
	local host=${1%:*} port=${1##*:} log=$2
	zt_ns_exec "$BENCH_POD_A_NS" timeout $((BENCH_TIME + 15)) \
		sockperf under-load --tcp -i "$host" -p "$port" -m 1024 --mps 1000 -t "$BENCH_TIME" \
		--full-rtt --reply-every "$BENCH_REPLY_EVERY" >"$log" 2>&1
	sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '
		/percentile 50.000 =/ { p50 = $NF }
		/percentile 90.000 =/ { p90 = $NF }
		/percentile 99.000 =/ { p99 = $NF }
		/Total [0-9]+ observations/ { for (i = 1; i <= NF; i++) if ($i == "Total") n = $(i + 1) }
		END {
			if (p99 == "") print "- - - 0"
			else printf "%s %s %s %s\n", p50, p90, p99, n
		}'
}

# ---- scenarios: each *_setup sets BENCH_IPERF_TARGET, BENCH_SOCKPERF_TARGET,
# BENCH_PIDS_A and BENCH_PIDS_B, and returns 0 when ready. ----

direct_setup() {
	BENCH_IPERF_TARGET=$BENCH_POD_B_IP:$BENCH_IPERF_PORT
	BENCH_SOCKPERF_TARGET=$BENCH_POD_B_IP:$BENCH_SOCKPERF_PORT
	BENCH_PIDS_A="" BENCH_PIDS_B=""
}

# Proxy A: node A ports 15001 (iperf) and 15002 (sockperf); proxy B: node B
# ports 15008 and 15009, forwarding to pod B.
socat_setup() {
	local a b
	zt_bg "$BENCH_NS_B" socat-b-iperf socat -b 262144 \
		"TCP-LISTEN:15008,bind=$BENCH_NODE_B_IP,fork,reuseaddr,nodelay" \
		"TCP:$BENCH_POD_B_IP:$BENCH_IPERF_PORT,nodelay"
	b="$ZT_BG_PID"
	zt_bg "$BENCH_NS_B" socat-b-sockperf socat -b 262144 \
		"TCP-LISTEN:15009,bind=$BENCH_NODE_B_IP,fork,reuseaddr,nodelay" \
		"TCP:$BENCH_POD_B_IP:$BENCH_SOCKPERF_PORT,nodelay"
	b="$b $ZT_BG_PID"
	zt_bg "$BENCH_NS_A" socat-a-iperf socat -b 262144 \
		"TCP-LISTEN:15001,bind=$BENCH_NODE_A_IP,fork,reuseaddr,nodelay" \
		"TCP:$BENCH_NODE_B_IP:15008,nodelay"
	a="$ZT_BG_PID"
	zt_bg "$BENCH_NS_A" socat-a-sockperf socat -b 262144 \
		"TCP-LISTEN:15002,bind=$BENCH_NODE_A_IP,fork,reuseaddr,nodelay" \
		"TCP:$BENCH_NODE_B_IP:15009,nodelay"
	a="$a $ZT_BG_PID"
	BENCH_PIDS_A=$a BENCH_PIDS_B=$b
	BENCH_IPERF_TARGET=$BENCH_NODE_A_IP:15001
	BENCH_SOCKPERF_TARGET=$BENCH_NODE_A_IP:15002
	# Probe the listeners only: a probe through the chain would count as a
	# client of the app servers.
	zt_wait_port "$BENCH_NS_A" "$BENCH_NODE_A_IP" 15001 5 && zt_wait_port "$BENCH_NS_A" "$BENCH_NODE_A_IP" 15002 5 &&
		zt_wait_port "$BENCH_NS_B" "$BENCH_NODE_B_IP" 15008 5 && zt_wait_port "$BENCH_NS_B" "$BENCH_NODE_B_IP" 15009 5
}

stunnel_setup() {
	local d=$BENCH_WORK
	mint_leaf stunnel-a spiffe://cluster.local/ns/bench/sa/client || return 1
	mint_leaf stunnel-b spiffe://cluster.local/ns/bench/sa/server || return 1
	cat >"$d/stunnel-a.conf" <<-EOF
		foreground = yes
		pid =
		debug = 3
		socket = l:TCP_NODELAY=1
		socket = r:TCP_NODELAY=1
		[iperf]
		accept = $BENCH_NODE_A_IP:15001
		connect = $BENCH_NODE_B_IP:15008
		client = yes
		sslVersionMin = TLSv1.3
		cert = $d/stunnel-a.crt
		key = $d/stunnel-a.key
		CAfile = $BENCH_CA/root-cert.pem
		verifyChain = yes
		[sockperf]
		accept = $BENCH_NODE_A_IP:15002
		connect = $BENCH_NODE_B_IP:15009
		client = yes
		sslVersionMin = TLSv1.3
		cert = $d/stunnel-a.crt
		key = $d/stunnel-a.key
		CAfile = $BENCH_CA/root-cert.pem
		verifyChain = yes
	EOF
	cat >"$d/stunnel-b.conf" <<-EOF
		foreground = yes
		pid =
		debug = 3
		socket = l:TCP_NODELAY=1
		socket = r:TCP_NODELAY=1
		[iperf]
		accept = $BENCH_NODE_B_IP:15008
		connect = $BENCH_POD_B_IP:$BENCH_IPERF_PORT
		sslVersionMin = TLSv1.3
		cert = $d/stunnel-b.crt
		key = $d/stunnel-b.key
		CAfile = $BENCH_CA/root-cert.pem
		verifyChain = yes
		requireCert = yes
		[sockperf]
		accept = $BENCH_NODE_B_IP:15009
		connect = $BENCH_POD_B_IP:$BENCH_SOCKPERF_PORT
		sslVersionMin = TLSv1.3
		cert = $d/stunnel-b.crt
		key = $d/stunnel-b.key
		CAfile = $BENCH_CA/root-cert.pem
		verifyChain = yes
		requireCert = yes
	EOF
	zt_bg "$BENCH_NS_B" stunnel-b stunnel4 "$d/stunnel-b.conf"
	BENCH_PIDS_B=$ZT_BG_PID
	zt_bg "$BENCH_NS_A" stunnel-a stunnel4 "$d/stunnel-a.conf"
	BENCH_PIDS_A=$ZT_BG_PID
	BENCH_IPERF_TARGET=$BENCH_NODE_A_IP:15001
	BENCH_SOCKPERF_TARGET=$BENCH_NODE_A_IP:15002
	zt_wait_port "$BENCH_NS_A" "$BENCH_NODE_A_IP" 15001 5 && zt_wait_port "$BENCH_NS_A" "$BENCH_NODE_A_IP" 15002 5 &&
		zt_wait_port "$BENCH_NS_B" "$BENCH_NODE_B_IP" 15008 5 && zt_wait_port "$BENCH_NS_B" "$BENCH_NODE_B_IP" 15009 5
}

ours_setup() {
	if [ ! -x "$ZT_BIN" ]; then
		echo "$ZT_BIN is not an executable (make all builds it)" >"$BENCH_WORK/ours-skip.txt"
		return 1
	fi
	bench_ours_setup
}

# ---- run ----
declare -A R_GBPS R_P50 R_P90 R_P99 R_N R_CPUA R_CPUB R_RSSA R_RSSB R_NOTE R_IDLEA R_IDLEB R_HELD

stop_pids() {
	local p
	for p in $1; do zt_bg_stop "$p"; done
}

run_scenario() {
	local s=$1 i gb bytes p50 p90 p99 n c0a c0b c1a c1b
	local -a gbs=() p50s=() p90s=() p99s=() ns=() cpuas=() cpubs=()
	BENCH_IPERF_TARGET="" BENCH_SOCKPERF_TARGET="" BENCH_PIDS_A="" BENCH_PIDS_B=""
	echo "bench: $s ..." >&2
	if ! "${s}_setup" 2>>"$BENCH_WORK/$s-setup.log" || [ -z "$BENCH_IPERF_TARGET" ]; then
		R_NOTE[$s]="skipped: $(tail -n 1 "$BENCH_WORK/$s-skip.txt" "$BENCH_WORK/$s-setup.log" 2>/dev/null |
			grep -v '^==>' | grep -v '^$' | tail -n 1)"
		stop_pids "$BENCH_PIDS_A $BENCH_PIDS_B"
		echo "bench: $s ${R_NOTE[$s]}" >&2
		return
	fi
	if [ "$s" = ours ]; then
		R_IDLEA[$s]=$(rss_kb "$BENCH_PIDS_A") R_IDLEB[$s]=$(rss_kb "$BENCH_PIDS_B")
	fi
	for i in $(seq 1 "$BENCH_REPEAT"); do
		c0a=$(cpu_of "$BENCH_PIDS_A") c0b=$(cpu_of "$BENCH_PIDS_B")
		read -r gb bytes < <(run_iperf "$BENCH_IPERF_TARGET" "$BENCH_WORK/$s-iperf-$i.json")
		c1a=$(cpu_of "$BENCH_PIDS_A") c1b=$(cpu_of "$BENCH_PIDS_B")
		gbs+=("$gb")
		if [ -n "$BENCH_PIDS_A" ] && [ "$bytes" -gt 0 ]; then
			cpuas+=("$(awk -v t=$((c1a - c0a)) -v b="$bytes" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz / (b / 1e9) }')")
			cpubs+=("$(awk -v t=$((c1b - c0b)) -v b="$bytes" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz / (b / 1e9) }')")
		fi
		read -r p50 p90 p99 n < <(run_sockperf "$BENCH_SOCKPERF_TARGET" "$BENCH_WORK/$s-sockperf-$i.log")
		p50s+=("$p50") p90s+=("$p90") p99s+=("$p99") ns+=("$n")
	done
	R_GBPS[$s]=$(median "${gbs[@]}")
	R_P50[$s]=$(median "${p50s[@]}")
	R_P90[$s]=$(median "${p90s[@]}")
	R_P99[$s]=$(median "${p99s[@]}")
	R_N[$s]=$(median "${ns[@]}")
	R_CPUA[$s]=$(median "${cpuas[@]+"${cpuas[@]}"}")
	R_CPUB[$s]=$(median "${cpubs[@]+"${cpubs[@]}"}")
	if [ -n "$BENCH_PIDS_A" ]; then
		R_RSSA[$s]=$(hwm_mb "$BENCH_PIDS_A")
		R_RSSB[$s]=$(hwm_mb "$BENCH_PIDS_B")
	fi
	if [ "$s" = ours ]; then
		# B5: memory of held idle tunnels, against the RSS just before.
		local ka kb ha hb
		ka=$(rss_kb "$BENCH_PIDS_A") kb=$(rss_kb "$BENCH_PIDS_B")
		if read -r ha hb < <(hold_idle "$BENCH_IDLE_CONNS"); then
			R_HELD[$s]="$(((ha - ka) * 1024 / BENCH_IDLE_CONNS)) $(((hb - kb) * 1024 / BENCH_IDLE_CONNS))"
		fi
	fi
	stop_pids "$BENCH_PIDS_A $BENCH_PIDS_B"
}

t_start=$(date +%s)
for s in $BENCH_SCENARIOS; do
	case $s in
	direct | socat | stunnel | ours) run_scenario "$s" ;;
	*) echo "bench: unknown scenario '$s'" >&2 ;;
	esac
done

# ---- report ----
num() { [ -n "${1:-}" ] && [ "$1" != - ]; }
fmt() { if num "${2:-}"; then awk -v v="$2" -v f="$1" 'BEGIN { printf f, v }'; else echo "-"; fi; }

echo
echo "B1: iperf3 -t $BENCH_TIME, 1 stream.  B3: sockperf under-load --tcp -m 1024 --mps 1000 -t $BENCH_TIME" \
	"--full-rtt --reply-every $BENCH_REPLY_EVERY (RTT µs).  Repeats: $BENCH_REPEAT (median)."
echo "Path: pod A (node 1) -> [proxy on node 1] -> [proxy on node 2] -> pod B (node 2). CPU = CPU-s per GB" \
	"moved by B1, per proxy; RSS = VmHWM."
printf '%-8s %7s %7s %7s %7s %6s %9s %9s %9s %7s %7s %7s %7s\n' \
	scenario Gb/s p50 p90 p99 n +p99 Gb/s÷stn +p99÷stn cpuA cpuB rssA rssB
d99=${R_P99[direct]:-}
st_gb=${R_GBPS[stunnel]:-}
st_add=""
if num "${R_P99[stunnel]:-}" && num "$d99"; then
	st_add=$(awk -v a="${R_P99[stunnel]}" -v d="$d99" 'BEGIN { print a - d }')
fi
for s in $BENCH_SCENARIOS; do
	if [ -n "${R_NOTE[$s]:-}" ]; then
		printf '%-8s %s\n' "$s" "${R_NOTE[$s]}"
		continue
	fi
	[ -n "${R_GBPS[$s]:-}" ] || continue
	add=-
	if num "${R_P99[$s]}" && num "$d99"; then
		add=$(awk -v a="${R_P99[$s]}" -v d="$d99" 'BEGIN { printf "%.0f", a - d }')
	fi
	rg=-
	if num "${R_GBPS[$s]}" && num "$st_gb"; then
		rg=$(awk -v a="${R_GBPS[$s]}" -v b="$st_gb" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
	fi
	ra=-
	if [ "$add" != - ] && num "$st_add" && [ "$s" != direct ]; then
		ra=$(awk -v a="$add" -v b="$st_add" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
	fi
	printf '%-8s %7s %7s %7s %7s %6s %9s %9s %9s %7s %7s %7s %7s\n' "$s" \
		"$(fmt %.2f "${R_GBPS[$s]}")" "$(fmt %.0f "${R_P50[$s]}")" "$(fmt %.0f "${R_P90[$s]}")" \
		"$(fmt %.0f "${R_P99[$s]}")" "${R_N[$s]}" "$add" "$rg" "$ra" \
		"${R_CPUA[$s]:--}" "${R_CPUB[$s]:--}" "${R_RSSA[$s]:--}" "${R_RSSB[$s]:--}"
done
if [ -n "${R_IDLEA[ours]:-}" ]; then
	echo
	echo "B5 (ours): idle RSS (after start-up, before traffic) and RSS added per held idle tunnel" \
		"($BENCH_IDLE_CONNS held from pod A to pod B)."
	printf '%-8s %12s %12s %14s %14s\n' scenario idleA_MB idleB_MB per_conn_A_B per_conn_B_B
	read -r pa pb <<<"${R_HELD[ours]:-- -}"
	printf '%-8s %12s %12s %14s %14s\n' ours "$(fmt %.1f "$(awk -v k="${R_IDLEA[ours]}" 'BEGIN { print k / 1024 }')")" \
		"$(fmt %.1f "$(awk -v k="${R_IDLEB[ours]}" 'BEGIN { print k / 1024 }')")" "$pa" "$pb"
fi
echo "total $(($(date +%s) - t_start)) s; logs: $BENCH_WORK (kept with ZT_KEEP_WORK=1)"
