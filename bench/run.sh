#!/usr/bin/env bash
# bench/run.sh: the data-path benchmarks of issue 9, for each two-hop path in
# one invocation, so that every ratio compares runs on the same machine, in the
# same minutes:
#   direct   client pod A -> server pod B, routed by the nodes, no proxy
#   socat    plaintext 2-hop: socat -b 262144 on node A and on node B
#            (one listening process per port, a forked child per connection)
#   stunnel  mTLS 2-hop: stunnel4, TLS 1.3, ECDSA P-256, verifyChain/requireCert
#            (one process, a thread per connection)
#   ours     two ztunnel-c proxies, via bench_ours_setup (bench/ours.sh),
#            running ZT_BIN (default: this tree's build/ztunnel, the release
#            build `make bench` makes first)
# Rows, per scenario:
#   bulk         iperf3 -t BENCH_TIME, one stream and four streams (-P 4);
#                CPU seconds per GB moved, per proxy
#   latency      sockperf under-load, 1 KB at a fixed 1000 msg/s, a reply to
#                every message, BENCH_LAT_TIME seconds: p50/p90/p99 RTT and
#                what each adds over direct; CPU ms per 1000 messages
#                (request + reply), per proxy
#   connections  wrk, HTTP/1.1 GET with `Connection: close` against nginx in
#                pod B: one TCP connection per request, so requests/s is new
#                connections/s; CPU ms per 1000 connections, per proxy
#   memory       RSS after start-up (before any traffic); memory each held
#                idle connection adds (BENCH_IDLE_CONNS from pod A to pod B),
#                per proxy; peak RSS over the whole row
# Redirection backends (BENCH_REDIRECT, run after the L7 rows below, printed
# after the rows above): "ours" again,
# once per backend of the node agents' in-pod redirection (ZTUNNEL_REDIRECT:
# iptables, nftables, ebpf), measuring only what redirection changes:
#   latency      sockperf as above at the fixed 1000 msg/s, for
#                BENCH_REDIRECT_TIME seconds: p50/p99 and what each adds
#                over direct (measured the same way, first, before anything
#                is enrolled)
#   connections  wrk as above, BENCH_REDIRECT_TIME seconds: new connections/s
#   ratios against iptables (Istio's default) and against direct;
#                BENCH_REPEAT rounds of the three, interleaved, medians
# L7 rows (HTTP/1.1 keep-alive), from an L7 client pod on node 1 to an nginx
# backend in an L7 server pod on node 2 (fresh pods: the "ours" row leaves
# pods A and B enrolled), in this order:
#   direct-http  client -> backend, no proxy
#   nginx-rp     client -> nginx as a plain reverse proxy (proxy_pass, upstream
#                keep-alive, 2 workers, no TLS) in the waypoint pod on node 2
#                -> backend: one plaintext proxy
#   ours-l7      client (enrolled) -> ztunnel-c node A -> `ztunnel waypoint`
#                in the waypoint pod -> ztunnel-c node B -> backend, through
#                a service VIP whose port has appProtocol http, via
#                bench_ours_l7_setup (bench/ours.sh): three proxies, two
#                mTLS hops
#   nginx-mesh   client (enrolled) -> ztunnel-c node A -> nginx as a plain
#                reverse proxy (nginx-rp's configuration) in a pod enrolled
#                on node 2 -> ztunnel-c node B -> backend: the mesh path of
#                ours-l7 with nginx as its L7 hop in place of the waypoint,
#                on ours-l7's node proxies (the pod is enrolled on node B by
#                bench_ours_l7_setup, nginx proxies to the backend's pod
#                address, so both of its connections are captured and
#                tunnelled: three proxies, two mTLS hops)
#   ours-l7-pol10, ours-l7-pol1000, ours-l7-jwt
#                the same path and load with 10 and with 1000 Istio
#                AuthorizationPolicies in the waypoint's LOCAL_XDS_PATH
#                (bench/gen_l7_policies.py): 10 on the service and the
#                waypoint's Gateway, DENYs that miss and ALLOWs of which
#                the last checked matches, so that every request is checked
#                against all 10 and allowed; 1000 = those 10 and 990 on 99
#                other services. The three proxies are ours-l7's, still
#                running: the waypoint's file is rewritten and reloaded;
#                the setup waits for the waypoint's "N L7 authorization
#                policies in force" and checks that GET /admin/x is denied
#                (403) before the load. Requests row only; a row with any
#                error or non-2xx answer FAILS (printed so, and run.sh
#                exits 1)
#   requests     wrk -t1 -cBENCH_L7_CONNS -dBENCH_TIME --latency, keep-alive
#                GET of 1 KB: requests/s, p50/p99, CPU-s per 10k requests
#                per proxy, requests per CPU-second of the path's proxies;
#                the policy rows in a table of their own: requests/s and
#                the waypoint's CPU per request against ours-l7's
#   fixed rate   h2load --h1, BENCH_L7_RATE_CONNS connections at 1000
#                requests/s in all, BENCH_LAT_TIME seconds, run
#                BENCH_L7_RATE_REPEAT times: p50/p90/p99 (medians of the
#                runs: one stall of the VM in one row's run moves a p99 of
#                10 000 samples by milliseconds) and what each adds over
#                direct-http (the p99 target is read here: closed-loop
#                latency is mostly queueing at capacity);
#                CPU-ms per 1000 requests per proxy (= vCPU at 1000 req/s)
#   memory       BENCH_L7_IDLE idle keep-alive connections held through the
#                proxies after one request each: memory added per connection
# Topology (tests/e2e/lib.sh): node 1 (172.30.0.1) with pod A 10.200.1.2,
# node 2 (172.30.0.2) with pod B 10.200.2.2. All servers run in pod B, all
# clients in pod A; nothing leaves the namespaces this script creates. The
# socat and stunnel proxies listen on node A's fabric IP (15001..15004) and
# node B's (15008..15011) and forward to pod B; ours capture pod A's traffic
# to pod B's own addresses.
#
# Environment knobs:
#   BENCH_SCENARIOS   default "direct socat stunnel ours direct-http nginx-rp
#                     ours-l7 ours-l7-pol10 ours-l7-pol1000" (the L7 ones
#                     always run last, in that order)
#   BENCH_TIME        seconds per iperf3 and per wrk run (default 5)
#   BENCH_LAT_TIME    seconds per sockperf run (default 10: ~10 000 RTT
#                     samples, 100 beyond the p99)
#   BENCH_REPEAT      runs per scenario, medians reported (default 1)
#   BENCH_IDLE_CONNS  idle connections held for the memory row (default 10000)
#   BENCH_IDLE_CONNS_FORKING  the same for socat and stunnel (default 500):
#                     they spend a process or a thread per connection on each
#                     node, and 2 x 10 000 tasks would take most of the
#                     machine's pid space (kernel.pid_max 32768) from
#                     whatever else runs on it; the figure is per connection
#   BENCH_HTTP_CONNS  wrk's concurrent connections (default 16)
#   BENCH_L7_CONNS    wrk's keep-alive connections in the L7 rows (default 32)
#   BENCH_L7_IDLE     idle HTTP connections held in the L7 memory row
#                     (default 1000)
#   BENCH_L7_RATE_CONNS  h2load's connections at 1000 requests/s (default 8)
#   BENCH_L7_RATE_REPEAT fixed-rate runs per L7 row and repeat, medians
#                     reported (default 3)
#   BENCH_REDIRECT    the backends of the redirection rows (default "iptables
#                     nftables ebpf"; empty: none)
#   BENCH_REDIRECT_TIME  seconds per sockperf and per wrk run of those rows
#                     (default 3)
#   ZT_BIN            ztunnel-c binary for the "ours" row (default build/ztunnel)
#   BENCH_OURS_SH     file defining bench_ours_setup (default bench/ours.sh)
# Needs root. Every client run is bounded by `timeout`; the namespaces and
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

BENCH_SCENARIOS=${BENCH_SCENARIOS:-direct socat stunnel ours direct-http nginx-rp ours-l7 nginx-mesh ours-l7-pol10 ours-l7-pol1000 ours-l7-jwt}
BENCH_TIME=${BENCH_TIME:-5}
BENCH_LAT_TIME=${BENCH_LAT_TIME:-10}
BENCH_REPEAT=${BENCH_REPEAT:-1}
BENCH_IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
BENCH_IDLE_CONNS_FORKING=${BENCH_IDLE_CONNS_FORKING:-500}
BENCH_HTTP_CONNS=${BENCH_HTTP_CONNS:-16}
BENCH_L7_CONNS=${BENCH_L7_CONNS:-32}
BENCH_L7_IDLE=${BENCH_L7_IDLE:-1000}
BENCH_L7_RATE_CONNS=${BENCH_L7_RATE_CONNS:-8}
BENCH_L7_RATE_REPEAT=${BENCH_L7_RATE_REPEAT:-3}
BENCH_REDIRECT=${BENCH_REDIRECT-iptables nftables ebpf}
BENCH_REDIRECT_TIME=${BENCH_REDIRECT_TIME:-3}
BENCH_L7_PORT=8081
BENCH_L7_VIP=10.96.0.80 # a service VIP for bench_ours_l7_setup
export BENCH_L7_VIP
BENCH_WORK=$ZT_WORK
BENCH_IPERF_PORT=5201
BENCH_SOCKPERF_PORT=11111
BENCH_HTTP_PORT=8080
BENCH_HOLD_PORT=7777
CLK_TCK=$(getconf CLK_TCK)

for tool in iperf3 sockperf stunnel4 socat openssl jq wrk h2load nginx python3 curl; do
	command -v "$tool" >/dev/null || {
		echo "bench: $tool missing (scripts/deps.sh bench installs it)" >&2
		exit 1
	}
done
[ "$(id -u)" = 0 ] || {
	echo "bench: needs root (network namespaces)" >&2
	exit 1
}

# Held connections take a descriptor each in the client, the server and each
# proxy; everything started from here inherits the limit. Raising the hard
# limit needs CAP_SYS_RESOURCE, which a container may not grant: then the
# hard limit caps the number held.
nofile=$((BENCH_IDLE_CONNS + 1024))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$nofile" ]; then
	ulimit -Hn "$nofile" 2>/dev/null || nofile=$hard
fi
ulimit -Sn "$nofile" || exit 1
if [ "$BENCH_IDLE_CONNS" -gt $((nofile - 1024)) ]; then
	echo "bench: open-file limit $nofile: holding $((nofile - 1024)) idle connections, not $BENCH_IDLE_CONNS" >&2
	BENCH_IDLE_CONNS=$((nofile - 1024))
fi

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

# One TCP connection per HTTP request leaves a TIME_WAIT socket behind each:
# a wider port range and their reuse keep thousands per second from running
# out of ports. The range starts above every port a proxy or app listens on
# (15001..15021, 5201, 7777, 8080, 11111): a listener cannot bind a port an
# outgoing connection left in TIME_WAIT. Namespace-local settings, in our
# namespaces only.
for ns in "$BENCH_POD_A_NS" "$BENCH_POD_B_NS" "$BENCH_NS_A" "$BENCH_NS_B"; do
	zt_ns_exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="20000 65000" net.ipv4.tcp_tw_reuse=1
done

zt_bg "$BENCH_POD_B_NS" iperf3-server iperf3 -s -p "$BENCH_IPERF_PORT"
zt_bg "$BENCH_POD_B_NS" sockperf-server sockperf server --tcp -i 0.0.0.0 -p "$BENCH_SOCKPERF_PORT"

# nginx in pod B, one process, serving a 1 KB file; no access log.
mkdir -p "$BENCH_WORK/www" "$BENCH_WORK/nginx-tmp"
head -c 1024 /dev/zero | tr '\0' x >"$BENCH_WORK/www/index.html"
cat >"$BENCH_WORK/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $BENCH_WORK/nginx.pid;
error_log $BENCH_WORK/nginx-error.log warn;
events { worker_connections 16384; }
http {
	access_log off;
	client_body_temp_path $BENCH_WORK/nginx-tmp;
	proxy_temp_path $BENCH_WORK/nginx-tmp;
	fastcgi_temp_path $BENCH_WORK/nginx-tmp;
	uwsgi_temp_path $BENCH_WORK/nginx-tmp;
	scgi_temp_path $BENCH_WORK/nginx-tmp;
	server {
		listen $BENCH_HTTP_PORT backlog=4096;
		root $BENCH_WORK/www;
	}
}
EOF
zt_bg "$BENCH_POD_B_NS" nginx nginx -c "$BENCH_WORK/nginx.conf" -e "$BENCH_WORK/nginx-error.log"

# The idle-connection server in pod B: accepts, reads until EOF, and keeps
# the number accepted so far in a file (rewritten every 0.2 s).
zt_bg "$BENCH_POD_B_NS" hold-server python3 -c '
import asyncio, os, sys
port, path = int(sys.argv[1]), sys.argv[2]
n = 0
async def on(r, w):
    global n
    n += 1
    try:
        await r.read()
    except OSError:
        pass
    w.close()
async def report():
    while True:
        with open(path + ".tmp", "w") as f:
            f.write("%d\n" % n)
        os.replace(path + ".tmp", path)
        await asyncio.sleep(0.2)
async def main():
    s = await asyncio.start_server(on, "0.0.0.0", port, backlog=4096)
    asyncio.get_running_loop().create_task(report())
    await s.serve_forever()
asyncio.run(main())' "$BENCH_HOLD_PORT" "$BENCH_WORK/hold-accepted"

zt_wait_port "$BENCH_POD_B_NS" 127.0.0.1 "$BENCH_IPERF_PORT" 5 &&
	zt_wait_port "$BENCH_POD_B_NS" 127.0.0.1 "$BENCH_HTTP_PORT" 5 &&
	zt_wait_port "$BENCH_POD_B_NS" 127.0.0.1 "$BENCH_HOLD_PORT" 5 || exit 1
sleep 0.3 # sockperf has no cheap readiness probe that does not count as a client

# The L7 rows' pods and HTTP backend, if any L7 row is asked for: an nginx
# in the L7 server pod, one process, serving the same 1 KB file on
# BENCH_L7_PORT with connections kept alive for as long as a run lasts.
BENCH_L7=""
for s in direct-http nginx-rp ours-l7 nginx-mesh ours-l7-pol10 ours-l7-pol1000 ours-l7-jwt; do
	case " $BENCH_SCENARIOS " in *" $s "*) BENCH_L7="$BENCH_L7 $s" ;; esac
done
if [ -n "$BENCH_L7" ]; then
	BENCH_L7_CLIENT_NS=$(zt_pod_add 1 2 l7-client) || exit 1
	BENCH_L7_SERVER_NS=$(zt_pod_add 2 2 l7-server) || exit 1
	BENCH_WP_NS=$(zt_pod_add 2 3 waypoint) || exit 1
	BENCH_L7_CLIENT_IP=$(zt_pod_ip 1 2) BENCH_L7_SERVER_IP=$(zt_pod_ip 2 2) BENCH_WP_IP=$(zt_pod_ip 2 3)
	export BENCH_L7_CLIENT_IP BENCH_L7_SERVER_IP BENCH_WP_IP
	BENCH_L7_NGINX_NS="" BENCH_L7_NGINX_IP=""
	case " $BENCH_L7 " in *" nginx-mesh "*)
		BENCH_L7_NGINX_NS=$(zt_pod_add 2 4 l7-nginx) || exit 1
		BENCH_L7_NGINX_IP=$(zt_pod_ip 2 4)
		;;
	esac
	export BENCH_L7_NGINX_NS BENCH_L7_NGINX_IP
	for ns in "$BENCH_L7_CLIENT_NS" "$BENCH_L7_SERVER_NS" "$BENCH_WP_NS" $BENCH_L7_NGINX_NS; do
		zt_ns_exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="20000 65000" net.ipv4.tcp_tw_reuse=1
	done
	cat >"$BENCH_WORK/nginx-l7.conf" <<-EOF
		daemon off;
		master_process off;
		worker_processes 1;
		pid $BENCH_WORK/nginx-l7.pid;
		error_log $BENCH_WORK/nginx-l7-error.log warn;
		events { worker_connections 16384; }
		http {
			access_log off;
			client_body_temp_path $BENCH_WORK/nginx-tmp;
			proxy_temp_path $BENCH_WORK/nginx-tmp;
			fastcgi_temp_path $BENCH_WORK/nginx-tmp;
			uwsgi_temp_path $BENCH_WORK/nginx-tmp;
			scgi_temp_path $BENCH_WORK/nginx-tmp;
			keepalive_requests 10000000;
			keepalive_timeout 600s;
			server {
				listen $BENCH_L7_PORT backlog=4096;
				root $BENCH_WORK/www;
			}
		}
	EOF
	zt_bg "$BENCH_L7_SERVER_NS" nginx-l7 nginx -c "$BENCH_WORK/nginx-l7.conf" -e "$BENCH_WORK/nginx-l7-error.log"
	zt_wait_port "$BENCH_L7_SERVER_NS" 127.0.0.1 "$BENCH_L7_PORT" 5 || exit 1
fi

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

# group_pids PGID...: every process in those process groups (zt_bg makes each
# started command a group leader; socat's forked children stay in its group).
group_pids() {
	local pg
	for pg in "$@"; do
		cat /proc/[0-9]*/stat 2>/dev/null | awk -v pg="$pg" '
			{ pid = $1; sub(/^.*\) /, ""); if ($3 == pg) print pid }'
	done
}

# cpu_of "PGID...": utime+stime (+ reaped children) of every process in the
# groups, in clock ticks.
cpu_of() {
	local p t=0 v
	for p in $1; do
		v=$(cat /proc/[0-9]*/stat 2>/dev/null | awk -v pg="$p" '
			{ sub(/^.*\) /, ""); if ($3 == pg) s += $12 + $13 + $14 + $15 }
			END { print s + 0 }')
		t=$((t + v))
	done
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

rss_kb() { status_kb VmRSS "$1"; } # current RSS of the group leaders, kB

# smaps_kb "PGID..." FIELD...: the FIELDs ("Pss:", ...) of smaps_rollup
# summed over every process in the groups, kB.
smaps_kb() {
	local -a pids
	# shellcheck disable=SC2086 # a list of PGIDs
	mapfile -t pids < <(group_pids $1)
	shift
	[ ${#pids[@]} -gt 0 ] || {
		echo 0
		return
	}
	printf '/proc/%s/smaps_rollup\n' "${pids[@]}" | xargs cat 2>/dev/null |
		awk -v f="$*" 'BEGIN { n = split(f, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
			$1 in want { s += $2 } END { print s + 0 }'
}
# pss_kb "PGID...": proportional set size of the groups, kB. For a
# one-process proxy its growth is the RSS growth; for socat it counts the
# pages a forked child shares with its parent once, not once per child.
pss_kb() { smaps_kb "$1" Pss:; }
# uss_kb "PGID...": the groups' own (private) pages, clean or dirty, kB: what
# a proxy costs beyond the shared libraries' pages, which every process
# mapping libcrypto or libc counts in its RSS too.
uss_kb() { smaps_kb "$1" Private_Clean: Private_Dirty:; }

median() { # median of the arguments ("-" ignored), or "-"
	printf '%s\n' "$@" | grep -v '^-$' | sort -g | awk '
		{ v[NR] = $1 } END {
			if (NR == 0) { print "-"; exit }
			if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# per_unit TICKS UNITS SCALE: CPU seconds x SCALE per unit, or "-".
per_unit() {
	awk -v t="$1" -v u="$2" -v s="$3" -v hz="$CLK_TCK" \
		'BEGIN { if (u > 0) printf "%.2f", t / hz * s / u; else print "-" }'
}

# run_iperf TARGET STREAMS LOG: prints "gbps bytes" or "- 0".
run_iperf() {
	local host=${1%:*} port=${1##*:} log=$3
	if zt_ns_exec "$BENCH_POD_A_NS" timeout $((BENCH_TIME + 15)) \
		iperf3 -c "$host" -p "$port" -P "$2" -t "$BENCH_TIME" -J >"$log" 2>&1; then
		jq -r '"\(.end.sum_received.bits_per_second / 1e9) \(.end.sum_received.bytes)"' "$log" 2>/dev/null ||
			echo "- 0"
	else
		echo "- 0"
	fi
}

# run_sockperf TARGET LOG: prints "p50 p90 p99 observations sent" (µs; sent
# counts every message of the run, warm-up included, as the CPU window does)
# or dashes.
run_sockperf() {
	local host=${1%:*} port=${1##*:} log=$2
	zt_ns_exec "$BENCH_POD_A_NS" timeout $((BENCH_LAT_TIME + 15)) \
		sockperf under-load --tcp -i "$host" -p "$port" -m 1024 --mps 1000 -t "$BENCH_LAT_TIME" \
		--full-rtt --reply-every 1 >"$log" 2>&1
	sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '
		/percentile 50.000 =/ { p50 = $NF }
		/percentile 90.000 =/ { p90 = $NF }
		/percentile 99.000 =/ { p99 = $NF }
		/Total [0-9]+ observations/ { for (i = 1; i <= NF; i++) if ($i == "Total") n = $(i + 1) }
		/\[Total Run\]/ { for (i = 1; i <= NF; i++) if ($i ~ /^SentMessages=/) { sent = $i; sub(/.*=/, "", sent); sub(/;$/, "", sent) } }
		END {
			if (p99 == "") print "- - - 0 0"
			else printf "%s %s %s %s %d\n", p50, p90, p99, n, sent
		}'
}

# run_wrk TARGET LOG: prints "requests/s requests errors" or "- 0 -". Every
# request carries `Connection: close`, which nginx honours by closing after
# the response, and wrk then opens a new connection for the next request.
run_wrk() {
	local log=$2
	zt_ns_exec "$BENCH_POD_A_NS" timeout $((BENCH_TIME + 15)) \
		wrk -t 1 -c "$BENCH_HTTP_CONNS" -d "${BENCH_TIME}s" --timeout 5s -H 'Connection: close' \
		"http://$1/" >"$log" 2>&1
	awk '
		/requests in/ { n = $1 }
		/^Requests\/sec:/ { rps = $2 }
		/Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
		/Non-2xx or 3xx responses:/ { e += $NF }
		END { if (rps == "") print "- 0 -"; else printf "%s %d %d\n", rps, n, e + 0 }' "$log"
}

# hold_idle TARGET N: opens N connections from pod A to TARGET (the hold
# server in pod B, through the scenario's proxies), waits until the server has
# accepted all that the client holds, and prints "held pssA_before
# pssB_before pssA_after pssB_after rssA_after rssB_after" (kB) for the
# scenario's proxies (RSS of the group leaders); then closes them.
hold_idle() {
	local host=${1%:*} port=${1##*:} n=$2 ka kb cli held acc0 acc i
	acc0=$(cat "$BENCH_WORK/hold-accepted" 2>/dev/null || echo 0)
	sleep 1
	ka=$(pss_kb "$BENCH_PIDS_A") kb=$(pss_kb "$BENCH_PIDS_B")
	zt_bg "$BENCH_POD_A_NS" hold-client timeout 300 python3 -c '
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks, errs, t0 = [], 0, time.time()
while len(socks) < n and errs < 50 and time.time() < t0 + 120:
    try:
        socks.append(socket.create_connection((host, port), timeout=10))
    except OSError as e:
        errs += 1
        print("connect:", e, flush=True)
print("held", len(socks), "connected in %.1f s" % (time.time() - t0), flush=True)
time.sleep(600)' "$host" "$port" "$n"
	cli=$ZT_BG_PID
	held="" acc=0
	for i in $(seq 1800); do # 180 s
		[ -n "$held" ] || held=$(awk '$1 == "held" { print $2 }' "$BENCH_WORK/hold-client.log" 2>/dev/null)
		acc=$(($(cat "$BENCH_WORK/hold-accepted" 2>/dev/null || echo 0) - acc0))
		[ -n "$held" ] && [ "$acc" -ge "$held" ] && break
		kill -0 "$cli" 2>/dev/null || break
		sleep 0.1
	done
	sleep 1 # let the proxies finish what each new connection started
	acc=$(($(cat "$BENCH_WORK/hold-accepted" 2>/dev/null || echo 0) - acc0))
	echo "$acc $ka $kb $(pss_kb "$BENCH_PIDS_A") $(pss_kb "$BENCH_PIDS_B")" \
		"$(rss_kb "$BENCH_PIDS_A") $(rss_kb "$BENCH_PIDS_B")"
	zt_bg_stop "$cli"
}

# ---- scenarios: each *_setup sets BENCH_IPERF_TARGET, BENCH_SOCKPERF_TARGET,
# BENCH_HTTP_TARGET, BENCH_HOLD_TARGET (an unset target leaves its row empty),
# BENCH_PIDS_A and BENCH_PIDS_B, and returns 0 when ready. ----

direct_setup() {
	BENCH_IPERF_TARGET=$BENCH_POD_B_IP:$BENCH_IPERF_PORT
	BENCH_SOCKPERF_TARGET=$BENCH_POD_B_IP:$BENCH_SOCKPERF_PORT
	BENCH_HTTP_TARGET=$BENCH_POD_B_IP:$BENCH_HTTP_PORT
	BENCH_HOLD_TARGET="" # nothing to weigh without a proxy
	BENCH_PIDS_A="" BENCH_PIDS_B=""
}

# The proxied app ports: "name app-port node-A-port node-B-port".
BENCH_PROXIED="iperf $BENCH_IPERF_PORT 15001 15008
sockperf $BENCH_SOCKPERF_PORT 15002 15009
http $BENCH_HTTP_PORT 15003 15010
hold $BENCH_HOLD_PORT 15004 15011"

proxied_targets() { # the node A listeners the client in pod A connects to
	BENCH_IPERF_TARGET=$BENCH_NODE_A_IP:15001
	BENCH_SOCKPERF_TARGET=$BENCH_NODE_A_IP:15002
	BENCH_HTTP_TARGET=$BENCH_NODE_A_IP:15003
	BENCH_HOLD_TARGET=$BENCH_NODE_A_IP:15004
}

proxied_wait() { # probe the listeners only: a probe through the chain would count as a client of the app servers
	local _name _app pa pb
	while read -r _name _app pa pb; do
		zt_wait_port "$BENCH_NS_A" "$BENCH_NODE_A_IP" "$pa" 5 && zt_wait_port "$BENCH_NS_B" "$BENCH_NODE_B_IP" "$pb" 5 ||
			return 1
	done <<<"$BENCH_PROXIED"
}

socat_setup() {
	local name app pa pb a="" b=""
	while read -r name app pa pb; do
		zt_bg "$BENCH_NS_B" "socat-b-$name" socat -b 262144 \
			"TCP-LISTEN:$pb,bind=$BENCH_NODE_B_IP,fork,reuseaddr,nodelay,backlog=4096" \
			"TCP:$BENCH_POD_B_IP:$app,nodelay"
		b="$b $ZT_BG_PID"
		zt_bg "$BENCH_NS_A" "socat-a-$name" socat -b 262144 \
			"TCP-LISTEN:$pa,bind=$BENCH_NODE_A_IP,fork,reuseaddr,nodelay,backlog=4096" \
			"TCP:$BENCH_NODE_B_IP:$pb,nodelay"
		a="$a $ZT_BG_PID"
	done <<<"$BENCH_PROXIED"
	BENCH_PIDS_A=${a# } BENCH_PIDS_B=${b# }
	proxied_targets
	proxied_wait
}

stunnel_setup() {
	local d=$BENCH_WORK name app pa pb
	mint_leaf stunnel-a spiffe://cluster.local/ns/bench/sa/client || return 1
	mint_leaf stunnel-b spiffe://cluster.local/ns/bench/sa/server || return 1
	printf 'foreground = yes\npid =\ndebug = 3\nsocket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n' |
		tee "$d/stunnel-a.conf" >"$d/stunnel-b.conf"
	while read -r name app pa pb; do
		cat >>"$d/stunnel-a.conf" <<-EOF
			[$name]
			accept = $BENCH_NODE_A_IP:$pa
			connect = $BENCH_NODE_B_IP:$pb
			client = yes
			sslVersionMin = TLSv1.3
			cert = $d/stunnel-a.crt
			key = $d/stunnel-a.key
			CAfile = $BENCH_CA/root-cert.pem
			verifyChain = yes
		EOF
		cat >>"$d/stunnel-b.conf" <<-EOF
			[$name]
			accept = $BENCH_NODE_B_IP:$pb
			connect = $BENCH_POD_B_IP:$app
			sslVersionMin = TLSv1.3
			cert = $d/stunnel-b.crt
			key = $d/stunnel-b.key
			CAfile = $BENCH_CA/root-cert.pem
			verifyChain = yes
			requireCert = yes
		EOF
	done <<<"$BENCH_PROXIED"
	zt_bg "$BENCH_NS_B" stunnel-b stunnel4 "$d/stunnel-b.conf"
	BENCH_PIDS_B=$ZT_BG_PID
	zt_bg "$BENCH_NS_A" stunnel-a stunnel4 "$d/stunnel-a.conf"
	BENCH_PIDS_A=$ZT_BG_PID
	proxied_targets
	proxied_wait
}

ours_setup() {
	if [ ! -x "$ZT_BIN" ]; then
		echo "$ZT_BIN is not an executable (make all builds it)" >"$BENCH_WORK/ours-skip.txt"
		return 1
	fi
	bench_ours_setup
}

# ---- run ----
# Results per scenario s: R_<row>[$s]; "A B" pairs for the two proxies.
declare -A R_NOTE R_IDLE R_IDLEUSS R_PEAK R_HELD R_PERCONN R_HELDRSS R_HOLDPEAK R_CLOSEDRSS
declare -A R_G1 R_G4 R_CPUG1 R_CPUG4 R_P50 R_P90 R_P99 R_N R_CPUMSG R_CPS R_CONNS R_ERRS R_CPUCONN

stop_pids() {
	local p
	for p in $1; do zt_bg_stop "$p"; done
}

# cpu_pair T0A T0B T1A T1B UNITS SCALE: "A B" CPU per unit for both proxies.
cpu_pair() {
	echo "$(per_unit $(($3 - $1)) "$5" "$6") $(per_unit $(($4 - $2)) "$5" "$6")"
}

# median_pair "A B"...: medians of the A and of the B halves.
median_pair() {
	local -a as=() bs=()
	local x
	for x in "$@"; do
		as+=("${x% *}") bs+=("${x#* }")
	done
	echo "$(median "${as[@]+"${as[@]}"}") $(median "${bs[@]+"${bs[@]}"}")"
}

# measure_hold SCENARIO: the memory row's held connections.
measure_hold() {
	local s=$1 want=$BENCH_IDLE_CONNS held ka kb ha hb ra rb th
	case $s in socat | stunnel) want=$BENCH_IDLE_CONNS_FORKING ;; esac
	th=$(date +%s)
	if read -r held ka kb ha hb ra rb < <(hold_idle "$BENCH_HOLD_TARGET" "$want") && [ "$held" -gt 0 ]; then
		R_HELD[$s]=$held
		[ "$held" -lt "$want" ] && R_HELD[$s]="$held/$want"
		R_PERCONN[$s]="$(((ha - ka) * 1024 / held)) $(((hb - kb) * 1024 / held))"
		R_HELDRSS[$s]="$ra $rb"
	fi
	# The peak while the N connections opened; then reset VmHWM (clear_refs
	# 5) so that the row's final peak is the traffic's alone.
	R_HOLDPEAK[$s]="$(status_kb VmHWM "$BENCH_PIDS_A") $(status_kb VmHWM "$BENCH_PIDS_B")"
	local p
	for p in $BENCH_PIDS_A $BENCH_PIDS_B; do
		echo 5 >"/proc/$p/clear_refs" 2>/dev/null
	done
	wait_quiet "$BENCH_PIDS_A $BENCH_PIDS_B"
	R_CLOSEDRSS[$s]="$(rss_kb "$BENCH_PIDS_A") $(rss_kb "$BENCH_PIDS_B")"
	echo "bench: $s held ${held:-0} idle connections in $(($(date +%s) - th)) s" >&2
}

# wait_quiet "PGID...": until the groups use less than a tick in half a
# second (at most 30 s), so that closing the held connections is not counted
# against the traffic measured next.
wait_quiet() {
	local i c0 c1
	c0=$(cpu_of "$1")
	for i in $(seq 60); do
		sleep 0.5
		c1=$(cpu_of "$1")
		[ $((c1 - c0)) -le 1 ] && return 0
		c0=$c1
	done
}

run_scenario() {
	local s=$1 i gb bytes p50 p90 p99 n sent rps reqs errs c0a c0b c1a c1b proxied=0 t0
	local -a g1=() g4=() cg1=() cg4=() p50s=() p90s=() p99s=() ns=() cmsg=() cpss=() cconn=() erss=() reqss=()
	BENCH_IPERF_TARGET="" BENCH_SOCKPERF_TARGET="" BENCH_HTTP_TARGET="" BENCH_HOLD_TARGET=""
	BENCH_PIDS_A="" BENCH_PIDS_B=""
	echo "bench: $s ..." >&2
	t0=$(date +%s)
	if ! "${s}_setup" 2>>"$BENCH_WORK/$s-setup.log" || [ -z "$BENCH_IPERF_TARGET" ]; then
		R_NOTE[$s]="skipped: $(tail -n 1 "$BENCH_WORK/$s-skip.txt" "$BENCH_WORK/$s-setup.log" 2>/dev/null |
			grep -v '^==>' | grep -v '^$' | tail -n 1)"
		stop_pids "$BENCH_PIDS_A $BENCH_PIDS_B"
		echo "bench: $s ${R_NOTE[$s]}" >&2
		return
	fi
	[ -n "$BENCH_PIDS_A" ] && proxied=1
	if [ $proxied = 1 ]; then
		sleep 1 # start-up work done, before any traffic
		R_IDLE[$s]="$(rss_kb "$BENCH_PIDS_A") $(rss_kb "$BENCH_PIDS_B")"
		R_IDLEUSS[$s]="$(uss_kb "$BENCH_PIDS_A") $(uss_kb "$BENCH_PIDS_B")"
		# Idle connections first, while the proxies hold no memory freed by
		# earlier traffic that new connections could reuse unseen.
		[ -n "$BENCH_HOLD_TARGET" ] && measure_hold "$s"
	fi
	for i in $(seq 1 "$BENCH_REPEAT"); do
		c0a=$(cpu_of "$BENCH_PIDS_A") c0b=$(cpu_of "$BENCH_PIDS_B")
		read -r gb bytes < <(run_iperf "$BENCH_IPERF_TARGET" 1 "$BENCH_WORK/$s-iperf1-$i.json")
		c1a=$(cpu_of "$BENCH_PIDS_A") c1b=$(cpu_of "$BENCH_PIDS_B")
		g1+=("$gb")
		[ $proxied = 1 ] && cg1+=("$(cpu_pair "$c0a" "$c0b" "$c1a" "$c1b" "$(awk -v b="$bytes" 'BEGIN { print b / 1e9 }')" 1)")
		if [ $proxied = 1 ] && [ "$bytes" -gt 0 ] && { [ $((c1a - c0a)) -lt 2 ] || [ $((c1b - c0b)) -lt 2 ]; }; then
			R_NOTE[$s]="a proxy used no CPU while iperf3 moved $bytes bytes: is the traffic really proxied?"
		fi

		c0a=$(cpu_of "$BENCH_PIDS_A") c0b=$(cpu_of "$BENCH_PIDS_B")
		read -r gb bytes < <(run_iperf "$BENCH_IPERF_TARGET" 4 "$BENCH_WORK/$s-iperf4-$i.json")
		c1a=$(cpu_of "$BENCH_PIDS_A") c1b=$(cpu_of "$BENCH_PIDS_B")
		g4+=("$gb")
		[ $proxied = 1 ] && cg4+=("$(cpu_pair "$c0a" "$c0b" "$c1a" "$c1b" "$(awk -v b="$bytes" 'BEGIN { print b / 1e9 }')" 1)")

		c0a=$(cpu_of "$BENCH_PIDS_A") c0b=$(cpu_of "$BENCH_PIDS_B")
		read -r p50 p90 p99 n sent < <(run_sockperf "$BENCH_SOCKPERF_TARGET" "$BENCH_WORK/$s-sockperf-$i.log")
		c1a=$(cpu_of "$BENCH_PIDS_A") c1b=$(cpu_of "$BENCH_PIDS_B")
		p50s+=("$p50") p90s+=("$p90") p99s+=("$p99") ns+=("$n")
		[ $proxied = 1 ] && cmsg+=("$(cpu_pair "$c0a" "$c0b" "$c1a" "$c1b" "$sent" 1e6)") # ms per 1000

		if [ -n "$BENCH_HTTP_TARGET" ]; then
			c0a=$(cpu_of "$BENCH_PIDS_A") c0b=$(cpu_of "$BENCH_PIDS_B")
			read -r rps reqs errs < <(run_wrk "$BENCH_HTTP_TARGET" "$BENCH_WORK/$s-wrk-$i.log")
			c1a=$(cpu_of "$BENCH_PIDS_A") c1b=$(cpu_of "$BENCH_PIDS_B")
			cpss+=("$rps") reqss+=("$reqs") erss+=("$errs")
			[ $proxied = 1 ] && cconn+=("$(cpu_pair "$c0a" "$c0b" "$c1a" "$c1b" "$reqs" 1e6)")
		fi
	done
	R_G1[$s]=$(median "${g1[@]}")
	R_G4[$s]=$(median "${g4[@]}")
	R_P50[$s]=$(median "${p50s[@]}")
	R_P90[$s]=$(median "${p90s[@]}")
	R_P99[$s]=$(median "${p99s[@]}")
	R_N[$s]=$(median "${ns[@]}")
	R_CPS[$s]=$(median "${cpss[@]+"${cpss[@]}"}")
	R_CONNS[$s]=$(median "${reqss[@]+"${reqss[@]}"}")
	R_ERRS[$s]=$(median "${erss[@]+"${erss[@]}"}")
	if [ $proxied = 1 ]; then
		R_CPUG1[$s]=$(median_pair "${cg1[@]}")
		R_CPUG4[$s]=$(median_pair "${cg4[@]}")
		R_CPUMSG[$s]=$(median_pair "${cmsg[@]}")
		R_CPUCONN[$s]=$(median_pair "${cconn[@]+"${cconn[@]}"}")
	fi
	if [ $proxied = 1 ]; then
		R_PEAK[$s]="$(status_kb VmHWM "$BENCH_PIDS_A") $(status_kb VmHWM "$BENCH_PIDS_B")"
	fi
	if [ "$s" = stunnel ]; then
		# stunnel 5.68 stopped by SIGTERM after some thousand connections
		# fails pthread_join() on each and then segfaults; its figures are
		# taken by now, so spare the log the crash.
		{
			kill -KILL -- "-$BENCH_PIDS_A" "-$BENCH_PIDS_B"
			wait "$BENCH_PIDS_A" "$BENCH_PIDS_B"
		} 2>/dev/null
	fi
	stop_pids "$BENCH_PIDS_A $BENCH_PIDS_B"
	echo "bench: $s done in $(($(date +%s) - t0)) s" >&2
}

# ---- L7 rows: each l7_*_setup sets BENCH_L7_TARGET and the path's proxies,
# BENCH_L7_PROXIES "LABEL:PGID..." (A, W, B: node A, the waypoint pod, node
# B), and returns 0 when ready. ----

l7_direct_http_setup() {
	BENCH_L7_TARGET=$BENCH_L7_SERVER_IP:$BENCH_L7_PORT
	BENCH_L7_PROXIES=""
}

# l7_nginx_rp_conf NAME: writes $BENCH_WORK/NAME.conf, nginx as a plain
# HTTP/1.1 reverse proxy on port 80 to the backend's pod address: two
# workers (the waypoint's default worker count), keep-alive both ways, no
# access log.
l7_nginx_rp_conf() {
	local d=$BENCH_WORK n=$1
	cat >"$d/$n.conf" <<-EOF
		daemon off;
		user root;
		worker_processes 2;
		pid $d/$n.pid;
		error_log $d/$n-error.log warn;
		events { worker_connections 16384; }
		http {
			access_log off;
			client_body_temp_path $d/nginx-tmp;
			proxy_temp_path $d/nginx-tmp;
			fastcgi_temp_path $d/nginx-tmp;
			uwsgi_temp_path $d/nginx-tmp;
			scgi_temp_path $d/nginx-tmp;
			keepalive_requests 10000000;
			keepalive_timeout 600s;
			upstream backend {
				server $BENCH_L7_SERVER_IP:$BENCH_L7_PORT;
				keepalive 64;
				keepalive_requests 10000000;
				keepalive_timeout 600s;
			}
			server {
				listen 80 backlog=4096;
				location / {
					proxy_pass http://backend;
					proxy_http_version 1.1;
					proxy_set_header Connection "";
				}
			}
		}
	EOF
}

# nginx-rp: that nginx in the waypoint pod, not enrolled.
l7_nginx_rp_setup() {
	local d=$BENCH_WORK
	l7_nginx_rp_conf nginx-rp
	zt_bg "$BENCH_WP_NS" nginx-rp nginx -c "$d/nginx-rp.conf" -e "$d/nginx-rp-error.log"
	BENCH_L7_PROXIES="W:$ZT_BG_PID"
	BENCH_L7_TARGET=$BENCH_WP_IP:80
	zt_wait_port "$BENCH_WP_NS" 127.0.0.1 80 5
}

# l7_ours_setup ROW [NPOL]: bench_ours_l7_setup for ours-l7 and the policy
# rows (NPOL policies in the waypoint's file).
l7_ours_setup() {
	if [ ! -x "$ZT_BIN" ]; then
		echo "$ZT_BIN is not an executable (make all builds it)" >"$BENCH_WORK/$1-skip.txt"
		return 1
	fi
	if ! declare -F bench_ours_l7_setup >/dev/null; then
		echo "${BENCH_OURS_SH:-bench/ours.sh} defines no bench_ours_l7_setup" >"$BENCH_WORK/$1-skip.txt"
		return 1
	fi
	BENCH_PIDS_A="" BENCH_PIDS_W="" BENCH_PIDS_B=""
	bench_ours_l7_setup ${2:+"$2"}
	local rc=$?
	BENCH_L7_PROXIES="A:$BENCH_PIDS_A W:$BENCH_PIDS_W B:$BENCH_PIDS_B"
	return $rc
}
l7_ours_l7_setup() { l7_ours_setup ours-l7; }
# nginx-mesh: the same nginx in the l7-nginx pod, which bench_ours_l7_setup
# enrolled on node B, between ours-l7's node proxies (W = nginx). Ready once
# a request through it is answered and node A's proxy has counted a
# connection to the nginx pod (it is captured, not routed around the mesh).
l7_nginx_mesh_setup() {
	local d=$BENCH_WORK i
	if [ -z "$BENCH_L7_NGINX_NS" ]; then
		echo "no l7-nginx pod" >"$d/nginx-mesh-skip.txt"
		return 1
	fi
	l7_ours_setup nginx-mesh || return 1
	local a=$BENCH_PIDS_A b=$BENCH_PIDS_B
	l7_nginx_rp_conf nginx-mesh
	zt_bg "$BENCH_L7_NGINX_NS" nginx-mesh nginx -c "$d/nginx-mesh.conf" -e "$d/nginx-mesh-error.log"
	BENCH_L7_PROXIES="A:$a W:$ZT_BG_PID B:$b"
	BENCH_L7_TARGET=$BENCH_L7_NGINX_IP:80
	zt_wait_port "$BENCH_L7_NGINX_NS" 127.0.0.1 80 5 || return 1
	zt_ns_exec "$BENCH_L7_CLIENT_NS" curl -sf -o /dev/null --max-time 5 --retry 10 --retry-delay 0 \
		--retry-all-errors "http://$BENCH_L7_TARGET/" || return 1
	for i in $(seq 50); do
		zt_ns_exec "$BENCH_NS_A" curl -s --max-time 2 "http://127.0.0.1:15020/metrics" 2>/dev/null |
			grep -q "^istio_tcp_connections_opened_total{.*destination_principal=\"spiffe://cluster.local/ns/bench/sa/nginx\"" &&
			return 0
		sleep 0.1
	done
	echo "node A's proxy counted no connection to the l7-nginx pod: the path is not meshed" >&2
	return 1
}
l7_ours_l7_pol10_setup() { l7_ours_setup ours-l7-pol10 10; }
l7_ours_l7_pol1000_setup() { l7_ours_setup ours-l7-pol1000 1000; }
# ours-l7-jwt: the 10 policies and a RequestAuthentication on the Gateway;
# every request carries the same valid RS256 token (minted by Node's crypto).
l7_ours_l7_jwt_setup() { BENCH_L7_JWT=1 l7_ours_setup ours-l7-jwt 10; }

# l7_keep_proxies ROW: true if ROW is an ours-l7 row or nginx-mesh and
# another of those follows, which runs on the same proxies
# (bench_ours_l7_setup).
l7_keep_proxies() {
	local x seen=0
	case $1 in ours-l7* | nginx-mesh) ;; *) return 1 ;; esac
	for x in $BENCH_L7; do
		[ $seen = 1 ] && case $x in ours-l7* | nginx-mesh) return 0 ;; esac
		[ "$x" = "$1" ] && seen=1
	done
	return 1
}

# l7_stop_row ROW: stops the row's proxies, unless l7_keep_proxies ROW
# (nginx-mesh's nginx is stopped in any case; as the last of these rows it
# stops the waypoint, idle, too).
l7_stop_row() {
	local x
	if l7_keep_proxies "$1"; then
		[ "$1" = nginx-mesh ] && stop_pids "$(l7_pids W)"
		return
	fi
	for x in $BENCH_L7_PROXIES; do stop_pids "${x#*:}"; done
	[ "$1" = nginx-mesh ] && [ -n "$BENCH_L7_RUNNING" ] && stop_pids "$(echo "$BENCH_L7_RUNNING" | awk '{ print $2 }')"
	return 0
}

l7_pids() { # l7_pids LABEL: the PGID of that proxy of the row, or nothing
	local x
	for x in $BENCH_L7_PROXIES; do
		[ "${x%%:*}" = "$1" ] && echo "${x#*:}"
	done
}

# run_wrk_l7 TARGET LOG: keep-alive GETs; prints "requests/s requests errors
# p50 p99" (latency in ms) or dashes.
run_wrk_l7() {
	local log=$2
	zt_ns_exec "$BENCH_L7_CLIENT_NS" timeout $((BENCH_TIME + 15)) \
		wrk -t 1 -c "$BENCH_L7_CONNS" -d "${BENCH_TIME}s" --timeout 5s --latency \
		${BENCH_L7_AUTH:+-H "authorization: Bearer $BENCH_L7_AUTH"} "http://$1/" >"$log" 2>&1
	awk '
		function ms(v) {
			if (v ~ /us$/) return v * 0.001
			if (v ~ /ms$/) return v + 0
			if (v ~ /m$/) return v * 60000
			if (v ~ /s$/) return v * 1000
			return "-"
		}
		/requests in/ { n = $1 }
		/^Requests\/sec:/ { rps = $2 }
		/Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
		/Non-2xx or 3xx responses:/ { e += $NF }
		$1 == "50%" { p50 = ms($2) }
		$1 == "99%" { p99 = ms($2) }
		END {
			if (rps == "") print "- 0 - - -"
			else printf "%s %d %d %s %s\n", rps, n, e + 0, p50 == "" ? "-" : p50, p99 == "" ? "-" : p99
		}' "$log"
}

# run_h2load_l7 TARGET LOG: keep-alive GETs at 1000 requests/s in all over
# BENCH_L7_RATE_CONNS connections for BENCH_LAT_TIME seconds; prints "p50
# p90 p99 requests errors" (ms, from the per-request log) or dashes.
run_h2load_l7() {
	local log=$2 rate
	rate=$(((1000 + BENCH_L7_RATE_CONNS - 1) / BENCH_L7_RATE_CONNS))
	zt_ns_exec "$BENCH_L7_CLIENT_NS" timeout $((BENCH_LAT_TIME + 15)) \
		h2load --h1 -t 1 -c "$BENCH_L7_RATE_CONNS" --rps "$rate" -D "$BENCH_LAT_TIME" \
		--log-file "$log.req" "http://$1/" >"$log" 2>&1
	awk -F '\t' '$2 == 200 { print $3 } $2 != 200 { e++ } END { print "e", e + 0 }' "$log.req" 2>/dev/null |
		sort -g | awk '
			$1 == "e" { e = $2; next }
			{ v[++n] = $1 / 1000 }
			function pct(p,  i) { i = int(n * p / 100 + 0.5); if (i < 1) i = 1; return v[i] }
			END {
				if (n == 0) print "- - - 0 -"
				else printf "%.3f %.3f %.3f %d %d\n", pct(50), pct(90), pct(99), n, e
			}'
}

# hold_http TARGET N: opens N keep-alive connections from the L7 client pod
# to TARGET, one GET answered on each, and keeps them open and idle; prints
# how many were held, then "LABEL:PSS_before:PSS_after" (kB) per proxy of
# the row; then closes them.
hold_http() {
	local n=$2 cli held="" i x before="" out=""
	sleep 1
	for x in $BENCH_L7_PROXIES; do before="$before ${x%%:*}:$(pss_kb "${x#*:}")"; done
	zt_bg "$BENCH_L7_CLIENT_NS" hold-http-client timeout 300 python3 -c '
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
req = ("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode()
def get(s):
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise OSError("closed before the response head")
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").lower().split("\r\n")
    if not lines[0].startswith("http/1.1 200"):
        raise OSError(lines[0])
    cl = [int(l.split(":", 1)[1]) for l in lines if l.startswith("content-length:")]
    while (cl and len(body) < cl[0]) or (not cl and not body.endswith(b"0\r\n\r\n")):
        d = s.recv(65536)
        if not d:
            raise OSError("closed in the body")
        body += d
socks, errs, t0 = [], 0, time.time()
while len(socks) < n and errs < 50 and time.time() < t0 + 120:
    try:
        s = socket.create_connection((host, port), timeout=10)
        get(s)
        socks.append(s)
    except OSError as e:
        errs += 1
        print("request:", e, flush=True)
print("held", len(socks), "in %.1f s" % (time.time() - t0), flush=True)
time.sleep(600)' "${1%:*}" "${1##*:}" "$n"
	cli=$ZT_BG_PID
	for i in $(seq 1800); do # 180 s
		held=$(awk '$1 == "held" { print $2 }' "$BENCH_WORK/hold-http-client.log" 2>/dev/null)
		[ -n "$held" ] && break
		kill -0 "$cli" 2>/dev/null || break
		sleep 0.1
	done
	sleep 1 # let the proxies settle
	for x in $before; do out="$out $x:$(pss_kb "$(l7_pids "${x%%:*}")")"; done
	echo "${held:-0}$out"
	zt_bg_stop "$cli"
}

# group_status_kb FIELD PGID: FIELD (VmHWM, VmRSS) summed over every process
# of the group (nginx-rp's master and workers; a ztunnel is one process), kB.
group_status_kb() {
	status_kb "$1" "$(group_pids "$2")"
}

declare -A L7_NOTE L7_RPS L7_REQS L7_ERRS L7_P50 L7_P99 L7_CPU L7_IDLE L7_HELD L7_PERCONN L7_PEAK
declare -A L7_FAIL # the policy rows' failures
declare -A L7_US   # "LABEL:µs" CPU per request in the wrk run, per proxy and all
declare -A L7_F50 L7_F90 L7_F99 L7_FN L7_FERRS L7_FCPU

# run_l7_scenario SCENARIO: L7_CPU[s], L7_IDLE[s], L7_PERCONN[s], L7_PEAK[s]
# hold "LABEL:value" words, one per proxy of the path.
run_l7_scenario() {
	local s=$1 f=l7_${1//-/_}_setup i k x p t0 c0 c1 held words w rps reqs errs p50 p90 p99 tick_sum pol=0
	local -a rpss=() reqss=() errss=() p50s=() p99s=() f50s=() f90s=() f99s=() fns=() ferrs=()
	local -A cpus=() fcpus=() uss=()
	case $s in ours-l7-pol* | ours-l7-jwt) pol=1 ;; esac
	BENCH_L7_TARGET="" BENCH_L7_PROXIES="" BENCH_L7_AUTH=""
	echo "bench: $s ..." >&2
	t0=$(date +%s)
	if ! "$f" 2>>"$BENCH_WORK/$s-setup.log" || [ -z "$BENCH_L7_TARGET" ]; then
		L7_NOTE[$s]="skipped: $(tail -n 1 "$BENCH_WORK/$s-skip.txt" "$BENCH_WORK/$s-setup.log" 2>/dev/null |
			grep -v '^==>' | grep -v '^$' | tail -n 1)"
		# A policy row that cannot show its policies in force and denying
		# is a failure, not a skip (unless there is no binary at all).
		if [ $pol = 1 ] && [ ! -e "$BENCH_WORK/$s-skip.txt" ]; then
			L7_FAIL[$s]="setup: ${L7_NOTE[$s]#skipped: }"
			L7_NOTE[$s]="FAILED: ${L7_FAIL[$s]}"
		fi
		l7_stop_row "$s"
		echo "bench: $s ${L7_NOTE[$s]}" >&2
		return
	fi
	if [ $pol = 1 ]; then
		echo "bench: $s: $(tail -n 1 "$BENCH_WORK/$s-setup.log")" >&2
		# Requests only: the memory and fixed-rate rows are ours-l7's.
		local all=""
		for x in $BENCH_L7_PROXIES; do all="$all ${x#*:}"; done
		wait_quiet "$all"
	elif [ -n "$BENCH_L7_PROXIES" ]; then
		sleep 1
		L7_IDLE[$s]=""
		for x in $BENCH_L7_PROXIES; do L7_IDLE[$s]="${L7_IDLE[$s]} ${x%%:*}:$(pss_kb "${x#*:}")"; done
		# Idle connections first, as in the other rows' memory figures.
		read -r held words < <(hold_http "$BENCH_L7_TARGET" "$BENCH_L7_IDLE")
		L7_HELD[$s]=$held
		[ "$held" -lt "$BENCH_L7_IDLE" ] && L7_HELD[$s]="$held/$BENCH_L7_IDLE"
		L7_PERCONN[$s]=""
		for w in $words; do # LABEL:before:after
			IFS=: read -r x c0 c1 <<<"$w"
			if [ "$held" -gt 0 ]; then
				L7_PERCONN[$s]="${L7_PERCONN[$s]} $x:$(((c1 - c0) * 1024 / held))"
			fi
		done
		for p in $(for x in $BENCH_L7_PROXIES; do group_pids "${x#*:}"; done); do
			echo 5 >"/proc/$p/clear_refs" 2>/dev/null
		done
		local all=""
		for x in $BENCH_L7_PROXIES; do all="$all ${x#*:}"; done
		wait_quiet "$all"
		echo "bench: $s held $held idle HTTP connections" >&2
	fi
	for i in $(seq 1 "$BENCH_REPEAT"); do
		local -A t0s=()
		for x in $BENCH_L7_PROXIES; do t0s[${x%%:*}]=$(cpu_of "${x#*:}"); done
		read -r rps reqs errs p50 p99 < <(run_wrk_l7 "$BENCH_L7_TARGET" "$BENCH_WORK/$s-wrk-l7-$i.log")
		rpss+=("$rps") reqss+=("$reqs") errss+=("$errs") p50s+=("$p50") p99s+=("$p99")
		tick_sum=0
		for x in $BENCH_L7_PROXIES; do
			p=${x%%:*}
			c1=$(($(cpu_of "${x#*:}") - ${t0s[$p]}))
			tick_sum=$((tick_sum + c1))
			cpus[$p]="${cpus[$p]:-} $(per_unit "$c1" "$reqs" 1e4)"
			uss[$p]="${uss[$p]:-} $(per_unit "$c1" "$reqs" 1e6)" # µs per request
			if [ "$reqs" -gt 0 ] && [ "$c1" -lt 2 ]; then
				L7_NOTE[$s]="proxy $p used no CPU while wrk made $reqs requests: is the traffic really proxied?"
			fi
		done
		if [ -n "$BENCH_L7_PROXIES" ]; then
			cpus[all]="${cpus[all]:-} $(per_unit "$tick_sum" "$reqs" 1e4)"
			uss[all]="${uss[all]:-} $(per_unit "$tick_sum" "$reqs" 1e6)"
		fi

		[ $pol = 1 ] && continue
		for k in $(seq 1 "$BENCH_L7_RATE_REPEAT"); do
			for x in $BENCH_L7_PROXIES; do t0s[${x%%:*}]=$(cpu_of "${x#*:}"); done
			read -r p50 p90 p99 reqs errs < <(run_h2load_l7 "$BENCH_L7_TARGET" "$BENCH_WORK/$s-h2load-$i-$k.log")
			f50s+=("$p50") f90s+=("$p90") f99s+=("$p99") fns+=("$reqs") ferrs+=("$errs")
			tick_sum=0
			for x in $BENCH_L7_PROXIES; do
				p=${x%%:*}
				c1=$(($(cpu_of "${x#*:}") - ${t0s[$p]}))
				tick_sum=$((tick_sum + c1))
				fcpus[$p]="${fcpus[$p]:-} $(per_unit "$c1" "$reqs" 1e6)" # ms per 1000
			done
			[ -n "$BENCH_L7_PROXIES" ] && fcpus[all]="${fcpus[all]:-} $(per_unit "$tick_sum" "$reqs" 1e6)"
		done
	done
	if [ $pol = 0 ]; then
		L7_F50[$s]=$(median "${f50s[@]}")
		L7_F90[$s]=$(median "${f90s[@]}")
		L7_F99[$s]=$(median "${f99s[@]}")
		L7_FN[$s]=$(median "${fns[@]}")
		L7_FERRS[$s]=$(median "${ferrs[@]}")
	fi
	L7_RPS[$s]=$(median "${rpss[@]}")
	L7_REQS[$s]=$(median "${reqss[@]}")
	L7_ERRS[$s]=$(median "${errss[@]}")
	L7_P50[$s]=$(median "${p50s[@]}")
	L7_P99[$s]=$(median "${p99s[@]}")
	L7_CPU[$s]="" L7_FCPU[$s]="" L7_PEAK[$s]="" L7_US[$s]=""
	for p in A W B all; do
		# shellcheck disable=SC2086 # a list of figures
		[ -n "${uss[$p]:-}" ] && L7_US[$s]="${L7_US[$s]} $p:$(median ${uss[$p]})"
		# shellcheck disable=SC2086 # a list of figures
		[ -n "${cpus[$p]:-}" ] && L7_CPU[$s]="${L7_CPU[$s]} $p:$(median ${cpus[$p]})"
		# shellcheck disable=SC2086 # a list of figures
		[ -n "${fcpus[$p]:-}" ] && L7_FCPU[$s]="${L7_FCPU[$s]} $p:$(median ${fcpus[$p]})"
	done
	for x in $BENCH_L7_PROXIES; do
		L7_PEAK[$s]="${L7_PEAK[$s]} ${x%%:*}:$(group_status_kb VmHWM "${x#*:}")"
	done
	l7_stop_row "$s"
	# Every request of a policy row must be allowed and answered: a denied
	# (403) or failed request means the row measured something else.
	if [ $pol = 1 ]; then
		for i in "${!rpss[@]}"; do
			if [ "${rpss[$i]}" = - ] || [ "${errss[$i]}" != 0 ] || [ "${reqss[$i]}" = 0 ]; then
				L7_FAIL[$s]="run $((i + 1)): ${errss[$i]} of ${reqss[$i]} requests failed or were not 2xx ($s-wrk-l7-$((i + 1)).log)"
				L7_NOTE[$s]="FAILED: ${L7_FAIL[$s]}"
				echo "bench: $s FAILED: ${L7_FAIL[$s]}" >&2
			fi
		done
	fi
	echo "bench: $s done in $(($(date +%s) - t0)) s" >&2
}

# ---- redirection backends ----
declare -A RD_P50 RD_P99 RD_N RD_CPS RD_ERRS RD_NOTE RDL_P50 RDL_P99 RDL_N RDL_CPS RDL_ERRS

# redirect_measure NAME LAT_TARGET HTTP_TARGET: the fixed-rate latency and
# new-connection rows of the backend comparison, BENCH_REDIRECT_TIME each.
redirect_measure() {
	local s=$1 p50 p90 p99 n sent rps reqs errs c0 c1
	c0=$(cpu_of "${BENCH_PIDS_A:-}")
	read -r p50 p90 p99 n sent < <(BENCH_LAT_TIME=$BENCH_REDIRECT_TIME run_sockperf "$2" \
		"$BENCH_WORK/redirect-$s-sockperf.log")
	c1=$(cpu_of "${BENCH_PIDS_A:-}")
	read -r rps reqs errs < <(BENCH_TIME=$BENCH_REDIRECT_TIME run_wrk "$3" "$BENCH_WORK/redirect-$s-wrk.log")
	RDL_P50[$s]="${RDL_P50[$s]:-} $p50" RDL_P99[$s]="${RDL_P99[$s]:-} $p99" RDL_N[$s]="${RDL_N[$s]:-} $n"
	RDL_CPS[$s]="${RDL_CPS[$s]:-} $rps" RDL_ERRS[$s]="${RDL_ERRS[$s]:-} $errs"
	if [ -n "${BENCH_PIDS_A:-}" ] && [ "$n" != 0 ] && [ $((c1 - c0)) -lt 2 ]; then
		RD_NOTE[$s]="proxy A used no CPU during sockperf: is the traffic really proxied?"
	fi
}

# redirect_results: the medians of the runs of each row.
redirect_results() {
	local r
	for r in "${!RDL_P50[@]}"; do
		# shellcheck disable=SC2086 # lists of figures
		RD_P50[$r]=$(median ${RDL_P50[$r]}) RD_P99[$r]=$(median ${RDL_P99[$r]}) RD_N[$r]=$(median ${RDL_N[$r]})
		# shellcheck disable=SC2086
		RD_CPS[$r]=$(median ${RDL_CPS[$r]}) RD_ERRS[$r]=$(median ${RDL_ERRS[$r]})
	done
}

# redirect_backend BACKEND: "ours" with the node agents on BACKEND. The
# agents of earlier rows are stopped first (they hold the state
# directories); the new ones restore pods A and B from the records, which
# moves them to BACKEND, and the enrolls that follow are no-ops.
redirect_backend() {
	local b=$1 pid t0
	echo "bench: redirect-$b ..." >&2
	t0=$(date +%s)
	if [ -f "$BENCH_WORK/ours-agents" ]; then
		while read -r pid; do zt_bg_stop "$pid"; done <"$BENCH_WORK/ours-agents"
		: >"$BENCH_WORK/ours-agents"
	fi
	BENCH_PIDS_A="" BENCH_PIDS_B=""
	if [ ! -x "$ZT_BIN" ] || ! BENCH_OURS_REDIRECT=$b bench_ours_setup 2>>"$BENCH_WORK/redirect-$b-setup.log" ||
		! grep -q "rules by $b" "$BENCH_WORK/zt-cni-a.log" "$BENCH_WORK/zt-cni-b.log"; then
		RDL_P50[$b]="${RDL_P50[$b]:-} -"
		RD_NOTE[$b]="skipped: setup failed ($(tail -n 1 "$BENCH_WORK/redirect-$b-setup.log" "$BENCH_WORK/zt-cni-a.log" 2>/dev/null |
			grep -v '^==>' | grep -v '^$' | tail -n 1))"
		stop_pids "$BENCH_PIDS_A $BENCH_PIDS_B"
		echo "bench: redirect-$b ${RD_NOTE[$b]}" >&2
		return
	fi
	redirect_measure "$b" "$BENCH_SOCKPERF_TARGET" "$BENCH_HTTP_TARGET"
	stop_pids "$BENCH_PIDS_A $BENCH_PIDS_B"
	echo "bench: redirect-$b done in $(($(date +%s) - t0)) s" >&2
}

t_start=$(date +%s)
# The direct baseline of the backend rows, before any row enrolls pod A.
if [ -n "$BENCH_REDIRECT" ]; then
	BENCH_PIDS_A=""
	for i in $(seq 1 "$BENCH_REPEAT"); do
		redirect_measure direct "$BENCH_POD_B_IP:$BENCH_SOCKPERF_PORT" "$BENCH_POD_B_IP:$BENCH_HTTP_PORT"
	done
fi
for s in $BENCH_SCENARIOS; do
	case $s in
	direct | socat | stunnel | ours) run_scenario "$s" ;;
	direct-http | nginx-rp | ours-l7 | nginx-mesh | ours-l7-pol10 | ours-l7-pol1000 | ours-l7-jwt) ;; # below, in their own order
	*) echo "bench: unknown scenario '$s'" >&2 ;;
	esac
done
for s in $BENCH_L7; do run_l7_scenario "$s"; done
# The backend rows last, so that no row before them runs with their
# programs attached to the host's cgroup root. BENCH_REPEAT rounds of the
# backends, interleaved, so that a noisy minute does not fall on one backend
# alone; medians reported.
for i in $(seq 1 "$BENCH_REPEAT"); do
	for b in $BENCH_REDIRECT; do redirect_backend "$b"; done
done
redirect_results

# ---- report ----
num() { [ -n "${1:-}" ] && [ "$1" != - ]; }
fmt() { if num "${2:-}"; then awk -v v="$2" -v f="$1" 'BEGIN { printf f, v }'; else echo "-"; fi; }
ratio() { # ratio A B: A / B to 2 places, or "-"
	if num "${1:-}" && num "${2:-}"; then
		awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'
	else
		echo "-"
	fi
}
diff_of() { # diff_of A B: A - B, rounded, or "-"
	if num "${1:-}" && num "${2:-}"; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a - b }'; else echo "-"; fi
}
half() { # half "A B" 1|2
	local v=${1:-}
	[ -n "$v" ] || {
		echo -
		return
	}
	if [ "$2" = 1 ]; then echo "${v% *}"; else echo "${v#* }"; fi
}
mb() { fmt %.1f "$(num "${1:-}" && awk -v k="$1" 'BEGIN { print k / 1024 }')"; }

# Scenarios with results, in order; skipped ones are reported once, first.
shown=()
for s in $BENCH_SCENARIOS; do
	case $s in direct | socat | stunnel | ours) ;; *) continue ;; esac
	if [ -z "${R_G1[$s]:-}" ]; then
		printf 'bench: %-8s %s\n' "$s" "${R_NOTE[$s]:-no result}"
		continue
	fi
	shown+=("$s")
done
added() { # added SCENARIO P: latency percentile P (50, 90, 99) minus direct's
	local -n col=R_P$2
	[ "$1" = direct ] && {
		echo -
		return
	}
	diff_of "${col[$1]:-}" "${col[direct]:-}"
}

echo
echo "Path: pod A (node 1) -> [proxy A, node 1] -> [proxy B, node 2] -> pod B (node 2)." \
	"Repeats: $BENCH_REPEAT (median). A, B: the proxy on each node."
echo
echo "Bulk: iperf3 -t $BENCH_TIME, Gb/s received; CPU = CPU-s of each proxy per GB moved."
printf '%-8s %7s %7s %8s %7s %7s %8s %6s %6s %6s %6s\n' \
	scenario 1-str ÷direct ÷stunnel 4-str ÷direct ÷stunnel cpuA1 cpuB1 cpuA4 cpuB4
for s in "${shown[@]}"; do
	printf '%-8s %7s %7s %8s %7s %7s %8s %6s %6s %6s %6s\n' "$s" \
		"$(fmt %.2f "${R_G1[$s]}")" "$(ratio "${R_G1[$s]}" "${R_G1[direct]:-}")" "$(ratio "${R_G1[$s]}" "${R_G1[stunnel]:-}")" \
		"$(fmt %.2f "${R_G4[$s]}")" "$(ratio "${R_G4[$s]}" "${R_G4[direct]:-}")" "$(ratio "${R_G4[$s]}" "${R_G4[stunnel]:-}")" \
		"$(half "${R_CPUG1[$s]:-}" 1)" "$(half "${R_CPUG1[$s]:-}" 2)" "$(half "${R_CPUG4[$s]:-}" 1)" "$(half "${R_CPUG4[$s]:-}" 2)"
done
echo
echo "Latency: sockperf under-load --tcp -m 1024 --mps 1000 --reply-every 1 -t $BENCH_LAT_TIME, RTT µs;" \
	"+ = added over direct; CPU = CPU-ms of each proxy per 1000 messages (request and reply)."
printf '%-8s %6s %6s %6s %6s %6s %6s %6s %8s %8s %6s %6s\n' \
	scenario n p50 p90 p99 +p50 +p90 +p99 +p50÷stn +p99÷stn cpuA cpuB
for s in "${shown[@]}"; do
	a50=$(added "$s" 50) a99=$(added "$s" 99) r50=- r99=-
	if [ "$s" != direct ]; then
		r50=$(ratio "$a50" "$(added stunnel 50)") r99=$(ratio "$a99" "$(added stunnel 99)")
	fi
	printf '%-8s %6s %6s %6s %6s %6s %6s %6s %8s %8s %6s %6s\n' "$s" "${R_N[$s]}" \
		"$(fmt %.0f "${R_P50[$s]}")" "$(fmt %.0f "${R_P90[$s]}")" "$(fmt %.0f "${R_P99[$s]}")" \
		"$a50" "$(added "$s" 90)" "$a99" \
		"$r50" "$r99" \
		"$(half "${R_CPUMSG[$s]:-}" 1)" "$(half "${R_CPUMSG[$s]:-}" 2)"
done
echo
echo "New connections: wrk -t1 -c$BENCH_HTTP_CONNS -d$BENCH_TIME -H 'Connection: close', GET of 1 KB from nginx" \
	"in pod B, one TCP connection per request; CPU = CPU-ms of each proxy per 1000 connections."
printf '%-8s %8s %7s %8s %8s %7s %6s %6s\n' scenario conn/s ÷direct ÷stunnel requests errors cpuA cpuB
for s in "${shown[@]}"; do
	printf '%-8s %8s %7s %8s %8s %7s %6s %6s\n' "$s" "$(fmt %.0f "${R_CPS[$s]:-}")" \
		"$(ratio "${R_CPS[$s]:-}" "${R_CPS[direct]:-}")" "$(ratio "${R_CPS[$s]:-}" "${R_CPS[stunnel]:-}")" \
		"${R_CONNS[$s]:--}" "${R_ERRS[$s]:--}" "$(half "${R_CPUCONN[$s]:-}" 1)" "$(half "${R_CPUCONN[$s]:-}" 2)"
done
if [ -n "${R_IDLE[*]:-}" ]; then # a proxied scenario ran
	echo
	echo "Memory: idle = RSS after start-up, before traffic (MB; socat: its $(wc -l <<<"$BENCH_PROXIED") listening" \
		"processes per node), own = the private part of it (shared libraries' pages left out); then N idle connections held from pod A to pod B (socat and stunnel hold" \
		"$BENCH_IDLE_CONNS_FORKING, a process or thread each): RSS then, its peak while they opened and RSS once" \
		"they closed (MB), PSS added per connection (bytes); peak = VmHWM during the traffic rows (MB). socat's" \
		"RSS figures are its listeners' alone; its per-connection figure counts the forked children."
	printf '%-8s %5s %5s %5s %5s %11s %6s %6s %6s %6s %7s %7s %8s %8s %6s %6s %6s %6s\n' \
		scenario idleA idleB ownA ownB N heldA heldB hpeakA hpeakB closedA closedB perconnA perconnB A÷stn B÷stn peakA peakB
	for s in "${shown[@]}"; do
		[ "$s" = direct ] && continue
		pa=$(half "${R_PERCONN[$s]:-}" 1) pb=$(half "${R_PERCONN[$s]:-}" 2)
		printf '%-8s %5s %5s %5s %5s %11s %6s %6s %6s %6s %7s %7s %8s %8s %6s %6s %6s %6s\n' "$s" \
			"$(mb "$(half "${R_IDLE[$s]:-}" 1)")" "$(mb "$(half "${R_IDLE[$s]:-}" 2)")" \
			"$(mb "$(half "${R_IDLEUSS[$s]:-}" 1)")" "$(mb "$(half "${R_IDLEUSS[$s]:-}" 2)")" "${R_HELD[$s]:--}" \
			"$(mb "$(half "${R_HELDRSS[$s]:-}" 1)")" "$(mb "$(half "${R_HELDRSS[$s]:-}" 2)")" \
			"$(mb "$(half "${R_HOLDPEAK[$s]:-}" 1)")" "$(mb "$(half "${R_HOLDPEAK[$s]:-}" 2)")" \
			"$(mb "$(half "${R_CLOSEDRSS[$s]:-}" 1)")" "$(mb "$(half "${R_CLOSEDRSS[$s]:-}" 2)")" "$pa" "$pb" \
			"$(ratio "$pa" "$(half "${R_PERCONN[stunnel]:-}" 1)")" "$(ratio "$pb" "$(half "${R_PERCONN[stunnel]:-}" 2)")" \
			"$(mb "$(half "${R_PEAK[$s]:-}" 1)")" "$(mb "$(half "${R_PEAK[$s]:-}" 2)")"
	done
fi

# check LABEL VALUE OP LIMIT: one line of the targets, "met" or "missed".
check() {
	local v
	if ! num "$2"; then
		printf '  %-52s %9s\n' "$1" -
		return
	fi
	v=$(awk -v a="$2" -v op="$3" -v b="$4" 'BEGIN {
		ok = (op == "<=") ? (a <= b) : (a >= b); print (ok ? "met" : "missed") }')
	printf '  %-52s %9s  (target %s %s) %s\n' "$1" "$2" "$3" "$4" "$v"
}
if [ -n "${R_G1[ours]:-}" ] && [ -n "${R_G1[stunnel]:-}" ]; then
	echo
	echo "Issue 9 targets, ours against stunnel in this run:"
	check "iperf3 one stream, x stunnel" "$(ratio "${R_G1[ours]}" "${R_G1[stunnel]}")" ">=" 1.6
	check "added p99, x stunnel's" "$(ratio "$(added ours 99)" "$(added stunnel 99)")" "<=" 0.6
	check "p50, x stunnel's" "$(ratio "${R_P50[ours]}" "${R_P50[stunnel]}")" "<=" 1
	check "new connections/s, x direct (anchors B6 goal)" "$(ratio "${R_CPS[ours]:-}" "${R_CPS[direct]:-}")" ">=" 0.5
	for i in 1 2; do
		check "idle RSS, proxy $([ $i = 1 ] && echo A || echo B) (MB)" "$(mb "$(half "${R_IDLE[ours]:-}" $i)")" "<=" 4
		check "per held idle tunnel, proxy $([ $i = 1 ] && echo A || echo B) (KB)" \
			"$(fmt %.2f "$(half "${R_PERCONN[ours]:-}" $i | awk '$1 != "-" { print $1 / 1024 }')")" "<=" 1
	done
fi
if [ -n "$BENCH_REDIRECT" ]; then
	rd_added() { # rd_added ROW P: RD_P<P>[ROW] minus direct's
		local -n col=RD_P$2
		diff_of "${col[$1]:-}" "${col[direct]:-}"
	}
	echo
	echo "Redirection backends: ours with the node agents' ZTUNNEL_REDIRECT; sockperf under-load --tcp -m 1024" \
		"--mps 1000 -t $BENCH_REDIRECT_TIME, RTT µs, + = added over direct; wrk -c$BENCH_HTTP_CONNS" \
		"-d$BENCH_REDIRECT_TIME 'Connection: close', new connections/s; ÷ipt = against the iptables row;" \
		"median of $BENCH_REPEAT interleaved rounds."
	printf '%-9s %6s %6s %6s %6s %6s %8s %8s %8s %7s %7s %6s\n' \
		backend n p50 p99 +p50 +p99 +p50÷ipt +p99÷ipt conn/s ÷ipt ÷direct errors
	for b in direct $BENCH_REDIRECT; do
		if [ -z "${RD_P50[$b]:-}" ]; then
			printf 'bench: redirect %-9s %s\n' "$b" "${RD_NOTE[$b]:-no result}"
			continue
		fi
		a50=- a99=-
		[ "$b" != direct ] && a50=$(rd_added "$b" 50) a99=$(rd_added "$b" 99)
		printf '%-9s %6s %6s %6s %6s %6s %8s %8s %8s %7s %7s %6s\n' "$b" "${RD_N[$b]}" \
			"$(fmt %.0f "${RD_P50[$b]}")" "$(fmt %.0f "${RD_P99[$b]}")" "$a50" "$a99" \
			"$(ratio "$a50" "$(rd_added iptables 50)")" "$(ratio "$a99" "$(rd_added iptables 99)")" \
			"$(fmt %.0f "${RD_CPS[$b]:-}")" "$(ratio "${RD_CPS[$b]:-}" "${RD_CPS[iptables]:-}")" \
			"$(ratio "${RD_CPS[$b]:-}" "${RD_CPS[direct]:-}")" "${RD_ERRS[$b]:--}"
		[ -n "${RD_NOTE[$b]:-}" ] && echo "  $b: ${RD_NOTE[$b]}"
	done
fi
# ---- L7 report ----
l7_get() { # l7_get "LABEL:value..." LABEL: that value, or "-"
	local x
	for x in ${1:-}; do
		if [ "${x%%:*}" = "$2" ]; then
			echo "${x#*:}"
			return
		fi
	done
	echo -
}
l7_added() { # l7_added SCENARIO [COLUMN]: its p99 (or COLUMN: L7_F50...) minus direct-http's (ms), or "-"
	local -n c=${2:-L7_P99}
	if [ "$1" != direct-http ] && num "${c[$1]:-}" && num "${c[direct-http]:-}"; then
		awk -v a="${c[$1]}" -v b="${c[direct-http]}" 'BEGIN { printf "%.2f", a - b }'
	else
		echo -
	fi
}
l7_per_cpu() { # l7_per_cpu SCENARIO [LABEL]: requests per CPU-second of the path's proxies (or of LABEL)
	local c
	c=$(l7_get "${L7_CPU[$1]:-}" "${2:-all}")
	if num "$c"; then awk -v c="$c" 'BEGIN { if (c > 0) printf "%.0f", 1e4 / c; else print "-" }'; else echo -; fi
}
l7_shown=() l7_pol_shown=()
for s in $BENCH_L7; do
	if [ -z "${L7_RPS[$s]:-}" ]; then
		printf 'bench: %-11s %s\n' "$s" "${L7_NOTE[$s]:-no result}"
		continue
	fi
	case $s in
	ours-l7-pol* | ours-l7-jwt) l7_pol_shown+=("$s") ;;
	*) l7_shown+=("$s") ;;
	esac
done
if [ ${#l7_shown[@]} -gt 0 ]; then
	echo
	echo "L7: HTTP/1.1 keep-alive, wrk -t1 -c$BENCH_L7_CONNS -d$BENCH_TIME --latency, GET of 1 KB from nginx in the L7" \
		"server pod (closed loop: the latency includes queueing at the path's capacity). direct-http: no proxy;" \
		"nginx-rp: one plaintext proxy (W = nginx, 2 workers); ours-l7: three proxies, two mTLS hops (A, B = the" \
		"node proxies, W = the waypoint); nginx-mesh: ours-l7's node proxies with nginx-rp's nginx as the L7 hop" \
		"(W = nginx in an enrolled pod). Latency ms, + = added over direct-http; CPU = CPU-s of each proxy per 10k" \
		"requests, all = the path's proxies together; req/cpu-s = requests per CPU-second of the path's proxies."
	printf '%-11s %8s %6s %7s %7s %7s %8s %8s %6s %6s %6s %6s %6s %9s %6s\n' \
		scenario req/s ÷nrp p50 p99 +p99 +p99÷nrp requests errors cpuA cpuW cpuB all req/cpu-s ÷nrp
	for s in "${l7_shown[@]}"; do
		printf '%-11s %8s %6s %7s %7s %7s %8s %8s %6s %6s %6s %6s %6s %9s %6s\n' "$s" \
			"$(fmt %.0f "${L7_RPS[$s]}")" "$(ratio "${L7_RPS[$s]}" "${L7_RPS[nginx-rp]:-}")" \
			"$(fmt %.2f "${L7_P50[$s]}")" "$(fmt %.2f "${L7_P99[$s]}")" "$(l7_added "$s")" \
			"$(ratio "$(l7_added "$s")" "$(l7_added nginx-rp)")" "${L7_REQS[$s]}" "${L7_ERRS[$s]}" \
			"$(l7_get "${L7_CPU[$s]:-}" A)" "$(l7_get "${L7_CPU[$s]:-}" W)" "$(l7_get "${L7_CPU[$s]:-}" B)" \
			"$(l7_get "${L7_CPU[$s]:-}" all)" "$(l7_per_cpu "$s")" "$(ratio "$(l7_per_cpu "$s")" "$(l7_per_cpu nginx-rp)")"
	done
fi
if [ ${#l7_pol_shown[@]} -gt 0 ]; then
	echo
	echo "L7 AuthorizationPolicy cost: the ours-l7 path and wrk load as above, with N Istio AuthorizationPolicies in" \
		"the waypoint's file (10: on the service and the waypoint's Gateway, each request checked against all 10" \
		"and allowed; 1000: those 10 and 990 on 99 other services; 10+jwt: the 10 and a RequestAuthentication, each" \
		"request with the same valid RS256 token), reloaded by ours-l7's waypoint, on ours-l7's" \
		"proxies. ÷0 = against ours-l7 (no policies) in this run; µs = CPU-µs per request of the waypoint (W) and" \
		"of the three proxies (all). Any error or non-2xx answer fails the row."
	printf '%-15s %8s %8s %6s %7s %7s %8s %7s %6s %6s %6s %6s %6s\n' \
		scenario policies req/s ÷0 p50 p99 requests errors W-µs ÷0 all-µs ÷0 result
	for s in ours-l7 "${l7_pol_shown[@]}"; do
		[ -n "${L7_RPS[$s]:-}" ] || continue
		n=0
		case $s in ours-l7-pol*) n=${s#ours-l7-pol} ;; ours-l7-jwt) n=10+jwt ;; esac
		printf '%-15s %8s %8s %6s %7s %7s %8s %7s %6s %6s %6s %6s %6s\n' "$s" "$n" \
			"$(fmt %.0f "${L7_RPS[$s]}")" "$(ratio "${L7_RPS[$s]}" "${L7_RPS[ours-l7]:-}")" \
			"$(fmt %.2f "${L7_P50[$s]}")" "$(fmt %.2f "${L7_P99[$s]}")" "${L7_REQS[$s]}" "${L7_ERRS[$s]}" \
			"$(l7_get "${L7_US[$s]:-}" W)" "$(ratio "$(l7_get "${L7_US[$s]:-}" W)" "$(l7_get "${L7_US[ours-l7]:-}" W)")" \
			"$(l7_get "${L7_US[$s]:-}" all)" "$(ratio "$(l7_get "${L7_US[$s]:-}" all)" "$(l7_get "${L7_US[ours-l7]:-}" all)")" \
			"$([ -n "${L7_FAIL[$s]:-}" ] && echo FAILED || echo ok)"
	done
fi
if [ ${#l7_shown[@]} -gt 0 ]; then
	echo
	echo "L7 latency at a fixed rate: h2load --h1 -c$BENCH_L7_RATE_CONNS, 1000 requests/s in all, -D $BENCH_LAT_TIME," \
		"keep-alive GET of 1 KB, $BENCH_L7_RATE_REPEAT runs per row (medians; n = requests per run); ms, + = added over" \
		"direct-http; CPU = CPU-ms of each proxy per 1000 requests (= vCPU at 1000 requests/s)."
	printf '%-11s %6s %6s %7s %7s %7s %7s %7s %7s %8s %6s %6s %6s %6s\n' \
		scenario n errors p50 p90 p99 +p50 +p90 +p99 +p99÷nrp cpuA cpuW cpuB all
	for s in "${l7_shown[@]}"; do
		printf '%-11s %6s %6s %7s %7s %7s %7s %7s %7s %8s %6s %6s %6s %6s\n' "$s" "${L7_FN[$s]:--}" \
			"${L7_FERRS[$s]:--}" "$(fmt %.2f "${L7_F50[$s]:-}")" "$(fmt %.2f "${L7_F90[$s]:-}")" \
			"$(fmt %.2f "${L7_F99[$s]:-}")" "$(l7_added "$s" L7_F50)" "$(l7_added "$s" L7_F90)" \
			"$(l7_added "$s" L7_F99)" "$(ratio "$(l7_added "$s" L7_F99)" "$(l7_added nginx-rp L7_F99)")" \
			"$(l7_get "${L7_FCPU[$s]:-}" A)" "$(l7_get "${L7_FCPU[$s]:-}" W)" "$(l7_get "${L7_FCPU[$s]:-}" B)" \
			"$(l7_get "${L7_FCPU[$s]:-}" all)"
	done
	if [ -n "${L7_IDLE[*]:-}" ]; then
		echo
		echo "L7 memory: idle = PSS after start-up (MB; PSS counts pages nginx's master and workers share once);" \
			"N idle keep-alive HTTP connections held through the path, one GET answered on each: PSS added per" \
			"connection (bytes); peak = VmHWM during the requests (MB; nginx: its processes' summed)."
		printf '%-11s %9s %5s %5s %5s %8s %8s %8s %6s %6s %6s\n' \
			scenario N idleA idleW idleB perconnA perconnW perconnB peakA peakW peakB
		for s in "${l7_shown[@]}"; do
			[ -n "${L7_IDLE[$s]:-}" ] || continue
			printf '%-11s %9s %5s %5s %5s %8s %8s %8s %6s %6s %6s\n' "$s" "${L7_HELD[$s]:--}" \
				"$(mb "$(l7_get "${L7_IDLE[$s]}" A)")" "$(mb "$(l7_get "${L7_IDLE[$s]}" W)")" \
				"$(mb "$(l7_get "${L7_IDLE[$s]}" B)")" "$(l7_get "${L7_PERCONN[$s]:-}" A)" \
				"$(l7_get "${L7_PERCONN[$s]:-}" W)" "$(l7_get "${L7_PERCONN[$s]:-}" B)" \
				"$(mb "$(l7_get "${L7_PEAK[$s]:-}" A)")" "$(mb "$(l7_get "${L7_PEAK[$s]:-}" W)")" \
				"$(mb "$(l7_get "${L7_PEAK[$s]:-}" B)")"
		done
	fi
	if [ -n "${L7_RPS[ours-l7]:-}" ] && [ -n "${L7_RPS[nginx-rp]:-}" ]; then
		echo
		echo "L7 targets, ours-l7 (three proxies, two mTLS hops) against nginx-rp (one plaintext proxy) in this run:"
		check "L7 requests per proxy CPU-s, x nginx-rp's" "$(ratio "$(l7_per_cpu ours-l7)" "$(l7_per_cpu nginx-rp)")" ">=" 1
		check "L7 added p99 at 1000 req/s, x nginx-rp's" \
			"$(ratio "$(l7_added ours-l7 L7_F99)" "$(l7_added nginx-rp L7_F99)")" "<=" 1
		echo "  to read them by: requests/s x nginx-rp's $(ratio "${L7_RPS[ours-l7]}" "${L7_RPS[nginx-rp]}");" \
			"added p99 at capacity (wrk) x nginx-rp's $(ratio "$(l7_added ours-l7)" "$(l7_added nginx-rp)");" \
			"requests per CPU-s of the waypoint alone x nginx's $(ratio "$(l7_per_cpu ours-l7 W)" "$(l7_per_cpu nginx-rp W)");" \
			"waypoint memory per idle HTTP connection $(l7_get "${L7_PERCONN[ours-l7]:-}" W) bytes" \
			"(nginx $(l7_get "${L7_PERCONN[nginx-rp]:-}" W))"
		# The same CPU figures to the microsecond (the table's CPU-s per
		# 10k requests have two decimals: about 5% steps at this load).
		echo "  CPU-µs per request in the wrk run: ours-l7 A $(l7_get "${L7_US[ours-l7]:-}" A)," \
			"W $(l7_get "${L7_US[ours-l7]:-}" W), B $(l7_get "${L7_US[ours-l7]:-}" B)," \
			"all $(l7_get "${L7_US[ours-l7]:-}" all); nginx-rp W $(l7_get "${L7_US[nginx-rp]:-}" W)"
	fi
	if [ -n "${L7_RPS[ours-l7]:-}" ] && [ -n "${L7_RPS[nginx-mesh]:-}" ]; then
		echo
		echo "The same figures on the mesh path, ours-l7 against nginx-mesh (nginx as the L7 hop between the same" \
			"node proxies; both three proxies, two mTLS hops):"
		check "L7 requests per proxy CPU-s, x nginx-mesh's" \
			"$(ratio "$(l7_per_cpu ours-l7)" "$(l7_per_cpu nginx-mesh)")" ">=" 1
		check "L7 added p99 at 1000 req/s, x nginx-mesh's" \
			"$(ratio "$(l7_added ours-l7 L7_F99)" "$(l7_added nginx-mesh L7_F99)")" "<=" 1
		echo "  to read them by: requests/s x nginx-mesh's $(ratio "${L7_RPS[ours-l7]}" "${L7_RPS[nginx-mesh]}");" \
			"added p99 at capacity (wrk) x nginx-mesh's $(ratio "$(l7_added ours-l7)" "$(l7_added nginx-mesh)");" \
			"CPU-µs per request: W $(l7_get "${L7_US[ours-l7]:-}" W) (nginx $(l7_get "${L7_US[nginx-mesh]:-}" W))," \
			"A $(l7_get "${L7_US[ours-l7]:-}" A) ($(l7_get "${L7_US[nginx-mesh]:-}" A))," \
			"B $(l7_get "${L7_US[ours-l7]:-}" B) ($(l7_get "${L7_US[nginx-mesh]:-}" B))"
	fi
fi
echo
for s in "${shown[@]}"; do
	[ -n "${R_NOTE[$s]:-}" ] && echo "note: $s: ${R_NOTE[$s]}"
done
for s in "${l7_shown[@]}" "${l7_pol_shown[@]}"; do
	[ -n "${L7_NOTE[$s]:-}" ] && echo "note: $s: ${L7_NOTE[$s]}"
done
echo "total $(($(date +%s) - t_start)) s; logs: $BENCH_WORK (kept with ZT_KEEP_WORK=1)"
if [ -n "${L7_FAIL[*]:-}" ]; then
	for s in "${!L7_FAIL[@]}"; do echo "bench: $s FAILED: ${L7_FAIL[$s]}" >&2; done
	exit 1
fi
