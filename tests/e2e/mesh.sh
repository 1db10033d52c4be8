# shellcheck shell=bash
# tests/e2e/mesh.sh: mesh helpers for the e2e scenario scripts, on top of
# lib.sh (which it sources). Per node N it runs `ztunnel cni` and
# `ztunnel proxy` in the node netns, each proxy with its own local-config
# YAML ($ZT_WORK/nN.yaml by default), so a scenario can give nodes different
# views of the mesh. Logs: $ZT_WORK/cniN[-K].log and $ZT_WORK/proxyN[-K].log,
# where K counts restarts; mesh_log N proxy|cni names the current one.
#
# Environment:
#   ZT_BIN       ztunnel binary (default build-san/ztunnel of this repo)
#   HBONE_PEER   Go HBONE peer binary; built on demand into
#                ${ZT_E2E_CACHE:-/tmp/zt-e2e-cache}/interop otherwise
#   ASAN_OPTIONS default detect_leaks=0:abort_on_error=1 (memory errors only)
#   ZT_REDIRECT  the node agents' in-pod rules backend (ZTUNNEL_REDIRECT):
#                iptables (default), nftables or ebpf; test_nftables.sh and
#                test_ebpf.sh run the capture scenarios with the other two.
#                With ebpf every agent pins its programs under its own
#                ZTUNNEL_BPF_DIR=$ZT_WORK/bpffs/nN, on a bpf filesystem
#                mounted there for the test (zt_cleanup unmounts it, which
#                detaches whatever is still pinned)
mesh_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mesh_repo=$(cd "$mesh_here/../.." && pwd)
# shellcheck source=lib.sh
. "$mesh_here/lib.sh"

ZT_BIN=${ZT_BIN:-$mesh_repo/build-san/ztunnel}
MESH_CA=$ZT_WORK/ca
MESH_TD=cluster.local
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# The backend's names for our tables and chains, for mesh_rule_packets.
MESH_REDIRECT=${ZT_REDIRECT:-iptables}
# shellcheck disable=SC2034 # used by the scenario scripts
if [ "$MESH_REDIRECT" = nftables ]; then
	MESH_NAT=istio-ambient-nat MESH_RAW=istio-ambient-raw MESH_PRE=istio-prerouting MESH_OUT=istio-output
else
	MESH_NAT=nat MESH_RAW=raw MESH_PRE=ISTIO_PRERT MESH_OUT=ISTIO_OUTPUT
fi

# mesh_ebpf_pod_flags NETNS: the flags of NETNS's entry in the zt_pods map
# of the first agent of this test that has one (1: DNS capture, 2: IPv4
# address known, 4: IPv6), or nothing.
mesh_ebpf_pod_flags() {
	local c d key
	c=$(mesh_netns_cookie "$1") || return 0
	key=$(python3 -c "import sys; print(' '.join('%02x' % b for b in int(sys.argv[1]).to_bytes(8, 'little')))" "$c")
	for d in "$ZT_WORK"/bpffs/*/; do
		# shellcheck disable=SC2086 # key: 8 hex words
		bpftool -j map lookup pinned "$d/zt_pods" key hex $key 2>/dev/null |
			python3 -c 'import json, sys; print(json.load(sys.stdin)["formatted"]["value"]["flags"])' 2>/dev/null &&
			return 0
	done
	return 0
}

# mesh_ebpf_orig_count PORT [IP]: how many sockets of this test's pods the
# eBPF programs redirected away from PORT (and IP, if given): the entries
# of every agent's zt_orig_cookie map with that original destination.
mesh_ebpf_orig_count() {
	local d
	for d in "$ZT_WORK"/bpffs/*/; do
		bpftool -j map dump pinned "$d/zt_orig_cookie" 2>/dev/null
	done | python3 -c '
import json, sys
port, ip = int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None
n = 0
for doc in sys.stdin.read().replace("][", "]\n[").splitlines():
    doc = doc.strip()
    if not doc:
        continue
    for e in json.loads(doc):
        v = e["formatted"]["value"]
        a = ".".join(str(b) for b in v["ip"][12:]) if v["family"] == 2 else None
        if v["port"] == port and (ip is None or a == ip):
            n += 1
print(n)' "$@"
}

# mesh_rules NETNS: our in-pod rules in NETNS, of any backend: the
# iptables-save and ip6tables-save lines naming an ISTIO_ chain, then our nft
# tables ("table inet istio-ambient-..."), then the pod's eBPF state
# (mesh_ebpf_state). Empty when there are none.
mesh_rules() {
	{
		zt_ns_exec "$1" iptables-save
		zt_ns_exec "$1" ip6tables-save
	} 2>/dev/null | grep ISTIO_
	if command -v nft >/dev/null; then
		zt_ns_exec "$1" nft list tables 2>/dev/null | grep -E '^table inet istio-ambient-'
	fi
	mesh_ebpf_state "$1"
	return 0
}

# mesh_nft_chain NETNS TABLE CHAIN: the rules of chain CHAIN of our nft table
# inet TABLE, one per line, unindented, each counter shown as just "counter".
mesh_nft_chain() {
	zt_ns_exec "$1" nft list chain inet "$2" "$3" 2>/dev/null | sed -n 's/^\t\t//p' |
		sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/'
}

# mesh_rule_packets NETNS TABLE CHAIN ERE: the packets counted by each rule
# of CHAIN in TABLE (for the backend in use: $MESH_NAT, $MESH_OUT, ...) that
# matches ERE, one number per line. Rules as `iptables -L -v -n -x` or `nft
# list chain` show them: "udp dpt:53 ... redir ports 15053" or "udp dport 53
# ... redirect to :15053", so 'udp dp(t:|ort )53 .*15053' fits both.
mesh_rule_packets() {
	if [ "$MESH_REDIRECT" = nftables ]; then
		zt_ns_exec "$1" nft list chain inet "$2" "$3" | grep -E -- "$4" |
			sed -nE 's/.* counter packets ([0-9]+) .*/\1/p'
	else
		zt_ns_exec "$1" iptables -t "$2" -L "$3" -v -n -x | grep -E -- "$4" | awk '{ print $1 }'
	fi
}

# mesh_id SA [NS] [TD]: the SPIFFE id of a service account.
mesh_id() { echo "spiffe://${3:-$MESH_TD}/ns/${2:-default}/sa/$1"; }

# mesh_ca: the shared cacerts directory (all nodes and the Go peer use it).
mesh_ca() {
	"$mesh_repo/scripts/gen-cacerts.sh" "$MESH_CA" >/dev/null
}

# mesh_peer: prints the path of the Go HBONE peer, building it if needed.
mesh_peer() {
	if [ -n "${HBONE_PEER:-}" ] && [ -x "$HBONE_PEER" ]; then
		echo "$HBONE_PEER"
		return 0
	fi
	"$mesh_repo/tests/interop/build.sh" "${ZT_E2E_CACHE:-/tmp/zt-e2e-cache}/interop"
}

# mesh_log N KIND: path of the current log of KIND (proxy|cni) on node N.
mesh_log() {
	local f="$ZT_WORK/$2$1.cur"
	if [ -f "$f" ]; then echo "$ZT_WORK/$(cat "$f").log"; else echo "$ZT_WORK/$2$1.log"; fi
}

# mesh_pid N KIND: PID of the running KIND on node N (empty if stopped).
mesh_pid() { cat "$ZT_WORK/$2$1.pid" 2>/dev/null || true; }

mesh_env() {
	echo "INPOD_UDS=$ZT_WORK/n$1/zt.sock" "ZTUNNEL_CNI_DIR=$ZT_WORK/n$1/cni"
	[ "$MESH_REDIRECT" != ebpf ] || echo "ZTUNNEL_BPF_DIR=$ZT_WORK/bpffs/n$1"
}

# mesh_bpffs: the test's own bpf filesystem at $ZT_WORK/bpffs (mounted in
# the root mount namespace, so the agents under `ip netns exec` and the
# cleanup command see the same pins). Idempotent.
mesh_bpffs() {
	mountpoint -q "$ZT_WORK/bpffs" && return 0
	mkdir -p "$ZT_WORK/bpffs" && mount -t bpf bpf "$ZT_WORK/bpffs"
}

# mesh_netns_cookie NETNS: the kernel's cookie of NETNS (SO_NETNS_COOKIE),
# what the eBPF programs and their pins are keyed by.
mesh_netns_cookie() {
	zt_ns_exec "$1" python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 71, 8), "little"))'
}

# mesh_ebpf_state NETNS: the eBPF state of NETNS in every agent's pin
# directory of this test: "ebpf nN inbound" (its sk_lookup link pin) and
# "ebpf nN zt_pods" (its entry in the pods map). Empty when there is none.
mesh_ebpf_state() {
	local c d key
	[ -d "$ZT_WORK/bpffs" ] || return 0
	c=$(mesh_netns_cookie "$1") || return 0
	key=$(python3 -c "import sys; print(' '.join('%02x' % b for b in int(sys.argv[1]).to_bytes(8, 'little')))" "$c")
	for d in "$ZT_WORK"/bpffs/*/; do
		[ -d "$d" ] || continue
		[ -e "$d/inbound_$c" ] && echo "ebpf $(basename "$d") inbound"
		# shellcheck disable=SC2086 # key: 8 hex words
		bpftool map lookup pinned "$d/zt_pods" key hex $key >/dev/null 2>&1 &&
			echo "ebpf $(basename "$d") zt_pods"
	done
	return 0
}

# mesh_wait_grep FILE ERE TIMEOUT_S: wait until FILE has a line matching ERE.
mesh_wait_grep() {
	local f=$1 re=$2 t=${3:-5} deadline
	deadline=$(($(zt_now_ms) + t * 1000))
	while [ "$(zt_now_ms)" -lt "$deadline" ]; do
		grep -Eq -- "$re" "$f" 2>/dev/null && return 0
		sleep 0.05
	done
	zt_log "mesh_wait_grep: no /$re/ in $f after ${t}s"
	return 1
}

# mesh_eventually CMD...: runs CMD every 50 ms until it succeeds; fails
# after 10 s (for changes whose speed is not what a test checks).
mesh_eventually() {
	local deadline=$(($(zt_now_ms) + 10000))
	while [ "$(zt_now_ms)" -lt "$deadline" ]; do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}

# mesh_start_bg N KIND CMD...: start a node process; a restart gets a new
# log name (KIND N-2, -3, ...).
mesh_start_bg() {
	local n=$1 kind=$2 name k=1
	shift 2
	name="$kind$n"
	while [ -e "$ZT_WORK/$name.log" ]; do
		k=$((k + 1))
		name="$kind$n-$k"
	done
	echo "$name" >"$ZT_WORK/$kind$n.cur"
	zt_bg "$(zt_node_ns "$n")" "$name" "$@"
	echo "$ZT_BG_PID" >"$ZT_WORK/$kind$n.pid"
}

# mesh_cni_start N [VAR=VALUE...]: node agent on node N, with extra
# environment if given (ZTUNNEL_REDIRECT=$ZT_REDIRECT before it when set);
# waits until it serves.
mesh_cni_start() {
	local n=$1
	shift
	mkdir -p "$ZT_WORK/n$n/cni"
	if [ "$MESH_REDIRECT" = ebpf ] || [[ " $* " == *" ZTUNNEL_REDIRECT=ebpf "* ]]; then
		mesh_bpffs || return 1
	fi
	# shellcheck disable=SC2046
	mesh_start_bg "$n" cni env $(mesh_env "$n") ${ZT_REDIRECT:+ZTUNNEL_REDIRECT=$ZT_REDIRECT} "$@" \
		"$ZT_BIN" cni
	mesh_wait_grep "$(mesh_log "$n" cni)" "serving ZDS" 10
}

# mesh_proxy_start N [YAML]: proxy on node N; waits until it has the agent's
# snapshot. Its DNS proxy forwards to the resolvers of $MESH_RESOLV_CONF,
# by default the pod's own loopback (nothing there: no query leaves the
# test's namespaces). MESH_PROXY_ENV adds variables ("K=V ...").
mesh_proxy_start() {
	local n=$1 yaml=${2:-$ZT_WORK/n$1.yaml}
	[ -f "$ZT_WORK/resolv.conf" ] || printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$ZT_WORK/resolv.conf"
	# shellcheck disable=SC2046,SC2086
	mesh_start_bg "$n" proxy env $(mesh_env "$n") LOCAL_XDS_PATH="$yaml" LOCAL_CA_DIR="$MESH_CA" \
		NODE_NAME="node$n" RUST_LOG="${LOGLVL:-info}" \
		ZTUNNEL_RESOLV_CONF="${MESH_RESOLV_CONF:-$ZT_WORK/resolv.conf}" ${MESH_PROXY_ENV:-} "$ZT_BIN" proxy
	mesh_wait_grep "$(mesh_log "$n" proxy)" "snapshot received" 10
}

# mesh_waypoint_start K NETNS NAME SA [YAML]: `ztunnel waypoint` number K
# inside the (not enrolled) pod NETNS, as workload NAME of namespace
# $MESH_NS (default "default") with service account SA; its config is YAML
# (default $ZT_WORK/n1.yaml). Log: $ZT_WORK/waypointK.log; stopped by
# mesh_finish like a node's processes. MESH_WAYPOINT_ENV adds variables.
mesh_waypoint_start() {
	local k=$1 ns=$2 name=$3 sa=$4 yaml=${5:-$ZT_WORK/n1.yaml}
	echo "waypoint$k" >"$ZT_WORK/waypoint$k.cur"
	# shellcheck disable=SC2086
	zt_bg "$ns" "waypoint$k" env LOCAL_XDS_PATH="$yaml" LOCAL_CA_DIR="$MESH_CA" POD_NAME="$name" \
		POD_NAMESPACE="${MESH_NS:-default}" SERVICE_ACCOUNT="$sa" RUST_LOG="${LOGLVL:-info}" \
		${MESH_WAYPOINT_ENV:-} "$ZT_BIN" waypoint
	echo "$ZT_BG_PID" >"$ZT_WORK/waypoint$k.pid"
	mesh_wait_grep "$ZT_WORK/waypoint$k.log" "added: listening on 15008" 10
}

# mesh_control_start CFG: `ztunnel control` on node 3 (port 15012) serving
# the directory CFG with the mesh CA, tokens for node1 and node2 (in
# $ZT_WORK/token1, token2); waits until it listens.
mesh_control_start() {
	printf 'node1 node1-token-0123456789\nnode2 node2-token-0123456789\n' >"$ZT_WORK/node-tokens"
	echo node1-token-0123456789 >"$ZT_WORK/token1"
	echo node2-token-0123456789 >"$ZT_WORK/token2"
	mesh_start_bg 3 control "$ZT_BIN" control --listen 0.0.0.0:15012 --config-dir "$1" \
		--ca-dir "$MESH_CA" --node-tokens "$ZT_WORK/node-tokens" || return 1
	mesh_wait_grep "$(mesh_log 3 control)" "listening on" 10
}

# mesh_xds_node_start N: node N's agent and proxy, the proxy fed by the
# control plane of mesh_control_start; waits for the agent's snapshot.
mesh_xds_node_start() {
	local n=$1
	mesh_cni_start "$n" || return 1
	# shellcheck disable=SC2046
	mesh_start_bg "$n" proxy env $(mesh_env "$n") XDS_ADDRESS="https://$(zt_node_ip 3):15012" \
		XDS_ROOT_CA="$MESH_CA/root-cert.pem" AUTH_TOKEN="$ZT_WORK/token$n" NODE_NAME="node$n" \
		POD_NAME="ztunnel-$n" POD_NAMESPACE=istio-system RUST_LOG="${LOGLVL:-info}" "$ZT_BIN" proxy
	mesh_wait_grep "$(mesh_log "$n" proxy)" "snapshot received" 10
}

# mesh_xds_waypoint_start NETNS GATEWAY: `ztunnel waypoint` number 1 in the
# pod NETNS of node 2 (workload w of namespace default, service account
# waypoint) for Gateway GATEWAY, with everything from the control plane of
# mesh_control_start (no LOCAL_XDS_PATH); waits until it listens.
mesh_xds_waypoint_start() {
	zt_bg "$1" waypoint1 env XDS_ADDRESS="https://$(zt_node_ip 3):15012" \
		XDS_ROOT_CA="$MESH_CA/root-cert.pem" AUTH_TOKEN="$ZT_WORK/token2" NODE_NAME=node2 \
		LOCAL_CA_DIR="$MESH_CA" POD_NAME=w POD_NAMESPACE=default SERVICE_ACCOUNT=waypoint \
		GATEWAY="$2" RUST_LOG="${LOGLVL:-info}" "$ZT_BIN" waypoint
	echo "$ZT_BG_PID" >"$ZT_WORK/waypoint1.pid"
	mesh_wait_grep "$ZT_WORK/waypoint1.log" "added: listening on 15008" 10
}

# mesh_body_field TEXT KEY: the value of TEXT's first "KEY=value" line
# (http_echo.py's answers), empty if none.
mesh_body_field() { sed -n "s/^$2=//p" <<<"$1" | head -1; }

# mesh_stop N KIND: graceful stop (TERM) of KIND on node N.
mesh_stop() {
	local pid
	pid=$(mesh_pid "$1" "$2")
	[ -n "$pid" ] || return 0
	zt_bg_stop "$pid"
	sed -i "/^$pid /d" "$ZT_WORK/pids"
	rm -f "$ZT_WORK/$2$1.pid"
}

# mesh_node_up N: agent then proxy on node N.
mesh_node_up() {
	mesh_cni_start "$1" && mesh_proxy_start "$1"
}

# mesh_enroll N NETNS UID SA [NAME]: enroll a pod netns on node N (namespace
# $MESH_NS, default "default").
mesh_enroll() {
	# shellcheck disable=SC2046
	env $(mesh_env "$1") "$ZT_BIN" enroll --netns "$2" --uid "$3" --name "${5:-$3}" \
		--namespace "${MESH_NS:-default}" --service-account "$4" >>"$ZT_WORK/enroll.log" 2>&1
}

# mesh_unenroll N UID
mesh_unenroll() {
	# shellcheck disable=SC2046
	env $(mesh_env "$1") "$ZT_BIN" unenroll --uid "$2" >>"$ZT_WORK/enroll.log" 2>&1
}

# mesh_mark N: number of lines now in node N's proxy log (for mesh_since).
mesh_mark() { wc -l <"$(mesh_log "$1" proxy)"; }

# mesh_since N MARK: access lines of node N's proxy log after MARK.
mesh_since() {
	tail -n +"$(($2 + 1))" "$(mesh_log "$1" proxy)" | grep -P '\taccess\t' || true
}

# mesh_wait_access N MARK ERE TIMEOUT_S: wait for a new access line matching
# ERE; prints it (the first one).
mesh_wait_access() {
	local n=$1 mark=$2 re=$3 t=${4:-5} deadline line
	deadline=$(($(zt_now_ms) + t * 1000))
	while :; do
		line=$(mesh_since "$n" "$mark" | grep -E -- "$re" | head -1)
		if [ -n "$line" ]; then
			echo "$line"
			return 0
		fi
		[ "$(zt_now_ms)" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

# mesh_field LINE KEY: value of KEY=value in an access line ("" if absent).
mesh_field() {
	printf '%s\n' "$1" | tr '\t' ' ' | grep -oP "(?<= )$2=\S*" | head -1 | cut -d= -f2-
}

# mesh_expect_fields LINE KEY=VALUE...: pass if every field has that value.
mesh_expect_fields() {
	local line=$1 kv k v got bad=""
	shift
	if [ -z "$line" ]; then
		zt_fail "no access line"
		return
	fi
	for kv in "$@"; do
		k=${kv%%=*}
		v=${kv#*=}
		got=$(mesh_field "$line" "$k")
		[ "$got" = "$v" ] || bad="$bad $k='$got'(want '$v')"
	done
	if [ -z "$bad" ]; then zt_pass; else zt_fail "$bad in: $line"; fi
}

# mesh_send_rc NETNS IP PORT DATA [T]: like zt_send, but the reply goes to
# $ZT_WORK/reply and socat's exit code is returned.
mesh_send_rc() {
	zt_send "$@" >"$ZT_WORK/reply" 2>"$ZT_WORK/reply.err"
}

# mesh_peer_addr_server NETNS PORT: a server that answers with the client's
# address as the application sees it. It reads what the client sends until
# the client's half-close before closing: closing with unread data would
# reset the connection, and the reset could overtake the answer (through the
# proxies it did, now and then: "got ''").
mesh_peer_addr_server() {
	# shellcheck disable=SC2016
	zt_bg "$1" "peeraddr-$1-$2" socat "TCP-LISTEN:$2,fork,reuseaddr" \
		SYSTEM:'echo $SOCAT_PEERADDR; cat >/dev/null'
	zt_wait_port "$1" 127.0.0.1 "$2" 5
}

# mesh_scenario BACKEND K NAME: tests/e2e/NAME.sh with every node agent on
# BACKEND (ZT_REDIRECT), in namespaces of prefix $ZT_PFX-K and its own work
# directory $ZT_WORK/NAME; its PASS and FAIL lines and counts become ours
# (its whole output too, if it failed). Returns 1 when it printed no
# summary (counted as a failure).
mesh_scenario() {
	local backend=$1 k=$2 name=$3 out summary p f rc
	out="$ZT_WORK/$name.out"
	ZT_REDIRECT=$backend ZT_PFX="$ZT_PFX-$k" ZT_WORK="$ZT_WORK/$name" ZT_KEEP_WORK=1 \
		ZT_TESTS_PASSED=0 ZT_TESTS_FAILED=0 timeout -k 5 100 bash "$mesh_here/$name.sh" >"$out" 2>&1 </dev/null
	rc=$?
	sed -nE "s/^(PASS|FAIL) /\\1 $backend $name: /p" "$out"
	summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -1)
	if [ -z "$summary" ]; then
		# shellcheck disable=SC2034 # read by zt_fail
		ZT_TEST_NAME="$backend $name"
		zt_fail "no summary line (exit $rc)"
		sed 's/^/    /' "$out"
		return 1
	fi
	p=${summary%% passed*}
	f=${summary#*passed, }
	f=${f%% failed}
	ZT_TESTS_PASSED=$((ZT_TESTS_PASSED + p))
	ZT_TESTS_FAILED=$((ZT_TESTS_FAILED + f))
	[ "$f" = 0 ] || grep -vE '^(PASS|FAIL) ' "$out" | sed 's/^/    /'
	return 0
}

# mesh_sanitizer_check: one check that no log of the run (proxies, agents,
# control planes, enroll/unenroll output, peers) has an ASan or UBSan report
# (or a Go runtime error).
mesh_sanitizer_check() {
	local hits
	zt_test "no sanitizer report in any log"
	hits=$(grep -l -E "ERROR: AddressSanitizer|runtime error:" "$ZT_WORK"/*.log 2>/dev/null || true)
	if [ -z "$hits" ]; then
		zt_pass
	else
		zt_fail "sanitizer reports in: $(echo "$hits" | xargs -n1 basename | tr '\n' ' ')"
		# shellcheck disable=SC2086
		grep -h -A30 -E "ERROR: AddressSanitizer|runtime error:" $hits | head -80 | sed 's/^/    /'
	fi
}

# mesh_finish: checks every proxy/agent still running is alive, stops them
# gracefully (so shutdown runs under the sanitizers), checks the logs and
# prints the summary. Returns the summary's status.
mesh_finish() {
	local f n kind pid dead=""
	zt_test "proxies and agents still running at the end"
	for f in "$ZT_WORK"/*.pid; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		kill -0 "$pid" 2>/dev/null || dead="$dead $(basename "$f" .pid)"
	done
	if [ -z "$dead" ]; then zt_pass; else zt_fail "exited early:$dead"; fi
	for f in "$ZT_WORK"/*.pid; do
		[ -e "$f" ] || continue
		f=$(basename "$f" .pid)
		kind=${f%%[0-9]*}
		n=${f#"$kind"}
		mesh_stop "$n" "$kind"
	done
	mesh_sanitizer_check
	if [ "$ZT_TESTS_FAILED" -gt 0 ]; then
		for f in "$ZT_WORK"/proxy*.log "$ZT_WORK"/cni*.log "$ZT_WORK"/control*.log \
			"$ZT_WORK"/waypoint*.log; do
			[ -e "$f" ] || continue
			echo "---- $(basename "$f") (last 25 lines)"
			tail -25 "$f" | sed 's/^/    /'
		done
	fi
	zt_summary
}
