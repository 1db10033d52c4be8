# shellcheck shell=bash
# tests/e2e/lib.sh: a small "cluster" on one machine built from network
# namespaces, plus helpers to run processes in it and a tiny assertion
# library. Source it from a test script (root required); it is `set -u` safe.
#
# Addressing plan (all inside namespaces this library creates; nothing is
# configured in the root namespace):
#   fabric   netns ${ZT_PFX}-net, bridge br0, no address      (the "L2 network")
#   node N   netns ${ZT_PFX}-node$N, eth0 = 172.30.0.N/24      (N = 1..250)
#            link n$N in the fabric netns is its bridge port
#   pods     node N owns pod CIDR 10.200.N.0/24; 10.200.N.1 is reserved for
#            the node (not assigned); pod M (M = 1..253) is netns
#            ${ZT_PFX}-p$N-$M with eth0 = 10.200.N.(M+1)/32 and a default
#            route via 169.254.1.1 onlink. The node-side veth is p$M in the
#            node netns; it carries 169.254.1.1/32 (answers the pod's ARP)
#            and proxy_arp, and the node routes 10.200.N.(M+1)/32 dev p$M.
#   routes   every node routes every other node's 10.200.K.0/24 via
#            172.30.0.K (zt_routes_sync, called by zt_node_add).
# Veths are created directly inside their namespaces, so interface names are
# short and fixed and never clash between runs; only netns names carry the
# prefix.
#
# State lives in files under $ZT_WORK (a mktemp dir), so functions also work
# when called from a command substitution such as ns=$(zt_pod_add 1 1 a).

ZT_PFX=${ZT_PFX:-zt$(($$ % 100000))}
ZT_WORK=${ZT_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/zt-e2e.XXXXXX")}
ZT_KEEP_WORK=${ZT_KEEP_WORK:-0}
ZT_TESTS_PASSED=${ZT_TESTS_PASSED:-0}
ZT_TESTS_FAILED=${ZT_TESTS_FAILED:-0}
ZT_TEST_NAME=${ZT_TEST_NAME:-}
ZT_BG_PID=${ZT_BG_PID:-}
ZT_POD_GW=169.254.1.1
ZT_FABRIC_CIDR=172.30.0
ZT_POD_CIDR=10.200
mkdir -p "$ZT_WORK"
touch "$ZT_WORK/nodes" "$ZT_WORK/pods" "$ZT_WORK/pids"

zt_log() { echo "[$ZT_PFX] $*" >&2; }

# zt_ns_exec NETNS CMD...: run CMD inside NETNS.
zt_ns_exec() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

zt_fabric_ns() { echo "${ZT_PFX}-net"; }
zt_node_ns() { echo "${ZT_PFX}-node$1"; }
zt_node_ip() { echo "${ZT_FABRIC_CIDR}.$1"; }
zt_node_pod_cidr() { echo "${ZT_POD_CIDR}.$1.0/24"; }
zt_pod_ns() { echo "${ZT_PFX}-p$1-$2"; }
zt_pod_veth() { echo "p$2"; } # node-side veth name of pod (N, M), in the node netns

# zt_pod_ip N M: the pod's IP, from the registry (fails if no such pod).
zt_pod_ip() {
	local line
	line=$(awk -v n="$1" -v m="$2" '$1 == n && $2 == m { print $5 }' "$ZT_WORK/pods")
	[ -n "$line" ] || {
		zt_log "zt_pod_ip: no pod $1/$2"
		return 1
	}
	echo "$line"
}

# zt_pod_lookup NAME: prints "N M NETNS IP" of the pod registered as NAME.
zt_pod_lookup() {
	awk -v name="$1" '$3 == name { print $1, $2, $4, $5; found = 1 } END { exit !found }' \
		"$ZT_WORK/pods"
}

zt_nodes() { cat "$ZT_WORK/nodes"; }

# Sysctls every namespace we create gets: loose reverse-path filtering, so
# asymmetric test paths are not dropped.
zt_ns_base() {
	local ns=$1
	ip -n "$ns" link set lo up
	zt_ns_exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

# zt_fabric_up: the fabric netns with bridge br0. Idempotent.
zt_fabric_up() {
	local ns
	ns=$(zt_fabric_ns)
	if ip netns list | awk '{ print $1 }' | grep -qx "$ns"; then
		return 0
	fi
	ip netns add "$ns" || return 1
	zt_ns_base "$ns"
	ip -n "$ns" link add br0 type bridge || return 1
	ip -n "$ns" link set br0 up
}

# zt_node_add N: node netns attached to the bridge, 172.30.0.N/24, forwarding
# on, routes to every other node's pod CIDR (and theirs to ours).
zt_node_add() {
	local n=$1 ns fab
	if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 250 ]; then
		zt_log "zt_node_add: node number 1..250, got '$n'"
		return 1
	fi
	zt_fabric_up || return 1
	ns=$(zt_node_ns "$n")
	fab=$(zt_fabric_ns)
	ip netns add "$ns" || return 1
	zt_ns_base "$ns"
	zt_ns_exec "$ns" sysctl -qw net.ipv4.ip_forward=1
	ip -n "$ns" link add eth0 type veth peer name "n$n" netns "$fab" || return 1
	ip -n "$fab" link set "n$n" master br0
	ip -n "$fab" link set "n$n" up
	ip -n "$ns" addr add "$(zt_node_ip "$n")/24" dev eth0
	ip -n "$ns" link set eth0 up
	echo "$n" >>"$ZT_WORK/nodes"
	zt_routes_sync
}

# zt_routes_sync: on every node, a route to each other node's pod CIDR via
# that node's fabric IP. Safe to call repeatedly.
zt_routes_sync() {
	local a b
	for a in $(zt_nodes); do
		for b in $(zt_nodes); do
			[ "$a" = "$b" ] && continue
			ip -n "$(zt_node_ns "$a")" route replace "$(zt_node_pod_cidr "$b")" \
				via "$(zt_node_ip "$b")" dev eth0
		done
	done
}

# zt_pod_add N M NAME: pod netns on node N with IP 10.200.N.(M+1); prints the
# pod's netns name.
zt_pod_add() {
	local n=$1 m=$2 name=$3 ns node ip veth
	if ! grep -qx "$n" "$ZT_WORK/nodes"; then
		zt_log "zt_pod_add: node $n does not exist"
		return 1
	fi
	if ! [[ $m =~ ^[0-9]+$ ]] || [ "$m" -lt 1 ] || [ "$m" -gt 253 ]; then
		zt_log "zt_pod_add: pod number 1..253, got '$m'"
		return 1
	fi
	if awk -v name="$name" -v n="$n" -v m="$m" '$3 == name || ($1 == n && $2 == m) { f = 1 } END { exit !f }' \
		"$ZT_WORK/pods"; then
		zt_log "zt_pod_add: pod $n/$m or name '$name' already exists"
		return 1
	fi
	ns=$(zt_pod_ns "$n" "$m")
	node=$(zt_node_ns "$n")
	ip="${ZT_POD_CIDR}.$n.$((m + 1))"
	veth=$(zt_pod_veth "$n" "$m")
	ip netns add "$ns" || return 1
	zt_ns_base "$ns"
	ip -n "$ns" link add eth0 type veth peer name "$veth" netns "$node" || return 1
	ip -n "$ns" addr add "$ip/32" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add "$ZT_POD_GW" dev eth0 scope link
	ip -n "$ns" route add default via "$ZT_POD_GW" dev eth0 onlink
	ip -n "$node" addr add "$ZT_POD_GW/32" dev "$veth" scope link
	zt_ns_exec "$node" sysctl -qw "net.ipv4.conf.$veth.proxy_arp=1" "net.ipv4.conf.$veth.rp_filter=0"
	ip -n "$node" link set "$veth" up
	ip -n "$node" route replace "$ip/32" dev "$veth" scope link
	echo "$n $m $name $ns $ip" >>"$ZT_WORK/pods"
	echo "$ns"
}

# zt_bg NETNS LOGNAME CMD [ARGS...]: start CMD in the background inside NETNS
# in its own process group, output to $ZT_WORK/LOGNAME.log. The PID is
# recorded for zt_cleanup and left in ZT_BG_PID (not printed).
zt_bg() {
	local ns=$1 name=$2
	shift 2
	setsid ip netns exec "$ns" "$@" >"$ZT_WORK/$name.log" 2>&1 </dev/null &
	ZT_BG_PID=$!
	echo "$ZT_BG_PID $name" >>"$ZT_WORK/pids"
}

# zt_bg_stop PID: stop one process started by zt_bg (its whole group).
zt_bg_stop() {
	local pid=$1
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 20); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL -- "-$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

zt_now_ms() { echo $(($(date +%s%N) / 1000000)); }

# zt_wait_port NETNS IP PORT TIMEOUT_S: wait until a TCP connect to IP:PORT
# (a real connection, which a one-shot server will accept and consume)
# from NETNS succeeds; returns 1 after TIMEOUT_S seconds (integer).
zt_wait_port() {
	local ns=$1 ip=$2 port=$3 timeout=${4:-5} deadline
	deadline=$(($(zt_now_ms) + timeout * 1000))
	while [ "$(zt_now_ms)" -lt "$deadline" ]; do
		if zt_ns_exec "$ns" timeout 1 bash -c "exec 3<>/dev/tcp/$ip/$port" 2>/dev/null; then
			return 0
		fi
		sleep 0.05
	done
	zt_log "zt_wait_port: $ip:$port not reachable from $ns after ${timeout}s"
	return 1
}

# zt_echo_server NETNS PORT: TCP echo on all addresses of NETNS:PORT; waits
# until it accepts. ZT_BG_PID is its PID. -t 30: once the client has
# half-closed, socat waits that long (not its default 0.5 s) for cat's
# output, which a loaded machine may take longer to start and write; cat
# exits at the EOF it is given, so nothing waits longer than needed.
zt_echo_server() {
	local ns=$1 port=$2
	zt_bg "$ns" "echo-$ns-$port" socat -t 30 "TCP-LISTEN:$port,fork,reuseaddr" EXEC:cat
	zt_wait_port "$ns" 127.0.0.1 "$port" 5
}

# zt_send NETNS IP PORT DATA [TIMEOUT_S]: send DATA, half-close, print the
# reply. Bounded by TIMEOUT_S (default 5) seconds.
zt_send() {
	local ns=$1 ip=$2 port=$3 data=$4 t=${5:-5}
	printf '%s' "$data" | zt_ns_exec "$ns" timeout "$t" socat -t "$t" - "TCP:$ip:$port,connect-timeout=$t"
}

# zt_cleanup: stop zt_bg processes, delete our namespaces (and any stray
# root-namespace link with our prefix), remove $ZT_WORK unless tests failed
# or ZT_KEEP_WORK=1. Idempotent.
zt_cleanup() {
	local pid _ ns link
	if [ -f "$ZT_WORK/pids" ]; then
		while read -r pid _; do
			[ -n "$pid" ] && zt_bg_stop "$pid"
		done <"$ZT_WORK/pids"
		: >"$ZT_WORK/pids"
	fi
	for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep "^${ZT_PFX}-" || true); do
		# Anything still running inside keeps the namespace's interfaces alive.
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$pid" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null || true
	done
	for link in $(ip -o link show 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1 | grep "^${ZT_PFX}" || true); do
		ip link del "$link" 2>/dev/null || true
	done
	# A bpf filesystem the test mounted (ZT_REDIRECT=ebpf, mesh.sh): its
	# pins are removed first (processes that entered a mount namespace
	# while it was mounted keep a copy of the mount, and with it the pins,
	# after an unmount here), so nothing of the test stays attached.
	if mountpoint -q "$ZT_WORK/bpffs" 2>/dev/null; then
		rm -rf "${ZT_WORK:?}/bpffs/"* 2>/dev/null
		umount "$ZT_WORK/bpffs" 2>/dev/null || umount -l "$ZT_WORK/bpffs" 2>/dev/null || true
	fi
	if [ -d "$ZT_WORK" ]; then
		if [ "$ZT_KEEP_WORK" = 1 ] || [ "$ZT_TESTS_FAILED" -gt 0 ]; then
			zt_log "logs kept in $ZT_WORK"
		else
			rm -rf "$ZT_WORK"
		fi
	fi
}

# zt_trap_cleanup: run zt_cleanup on EXIT, and on INT/TERM before exiting.
zt_trap_cleanup() {
	trap 'zt_cleanup' EXIT
	trap 'zt_cleanup; trap - EXIT; exit 130' INT
	trap 'zt_cleanup; trap - EXIT; exit 143' TERM
}

# ---- assertions ----
# zt_test NAME starts a check; zt_pass / zt_fail MSG ends it. zt_summary
# prints "N passed, N failed" and returns 1 if anything failed.
zt_test() {
	ZT_TEST_NAME=$1
}

zt_pass() {
	ZT_TESTS_PASSED=$((ZT_TESTS_PASSED + 1))
	echo "PASS ${ZT_TEST_NAME}"
}

zt_fail() {
	ZT_TESTS_FAILED=$((ZT_TESTS_FAILED + 1))
	echo "FAIL ${ZT_TEST_NAME}: $*"
}

# zt_expect_eq GOT WANT: pass if equal, else fail showing both.
zt_expect_eq() {
	if [ "$1" = "$2" ]; then
		zt_pass
	else
		zt_fail "got '$1', want '$2'"
	fi
}

zt_summary() {
	echo "$ZT_TESTS_PASSED passed, $ZT_TESTS_FAILED failed"
	[ "$ZT_TESTS_FAILED" -eq 0 ]
}
