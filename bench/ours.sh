# shellcheck shell=bash
# shellcheck disable=SC2034 # the BENCH_* outputs are read by run.sh
# bench/ours.sh: the "ours" row of bench/run.sh, i.e. two ztunnel-c proxies.
# Sourced by run.sh, which skips the row with a message if ZT_BIN is not an
# executable or this function returns non-zero.
#
# Called after the topology, the app servers and the CA exist. Available:
#   ZT_BIN                     the ztunnel-c binary (default build/ztunnel)
#   BENCH_CA                   Istio cacerts dir (root-cert.pem, ca-cert.pem,
#                              ca-key.pem, cert-chain.pem; EC P-256, the CA is
#                              the root), same CA as the stunnel row
#   BENCH_WORK                 scratch dir for configs and logs (removed on exit)
#   BENCH_NS_A, BENCH_NS_B     node netns of the client side and server side
#   BENCH_NODE_A_IP, BENCH_NODE_B_IP   node addresses on the fabric (172.30.0.x)
#   BENCH_POD_A_NS, BENCH_POD_B_NS     client pod / server pod netns
#   BENCH_POD_A_IP, BENCH_POD_B_IP     pod addresses (10.200.x.y)
#   BENCH_OURS_REDIRECT        the node agents' ZTUNNEL_REDIRECT (empty: their
#                              default, iptables), for the backend rows
#   BENCH_IPERF_PORT, BENCH_SOCKPERF_PORT, BENCH_HTTP_PORT, BENCH_HOLD_PORT
#                              app ports listening in pod B (iperf3, sockperf,
#                              nginx, the idle-connection server)
#   zt_bg NETNS LOGNAME CMD...  start a process (killed on exit); PID in ZT_BG_PID
#   zt_wait_port NETNS IP PORT TIMEOUT_S
# Must set, on success:
#   BENCH_IPERF_TARGET, BENCH_SOCKPERF_TARGET, BENCH_HTTP_TARGET,
#   BENCH_HOLD_TARGET  "ip:port" the client in pod A connects to so that
#       traffic reaches that app in pod B through both proxies (may be the
#       pod B address itself if redirection is set up); an empty HTTP or HOLD
#       target leaves that row empty
#   BENCH_PIDS_A, BENCH_PIDS_B  PIDs (process-group leaders, as zt_bg makes)
#       of the proxy on each side, for CPU and RSS accounting
# and return 0 once both proxies accept connections. run.sh stops every PID
# in BENCH_PIDS_A/B after the row.
bench_ours_setup() {
	local n ns pod uid name sa cni_pid
	{
		echo "workloads:"
		echo "- {uid: bench-a, name: client, namespace: bench, serviceAccount: client, workloadIps: [\"$BENCH_POD_A_IP\"], protocol: HBONE, node: node-a}"
		echo "- {uid: bench-b, name: server, namespace: bench, serviceAccount: server, workloadIps: [\"$BENCH_POD_B_IP\"], protocol: HBONE, node: node-b}"
	} >"$BENCH_WORK/mesh.yaml"
	BENCH_PIDS_A="" BENCH_PIDS_B=""
	for n in a b; do
		if [ $n = a ]; then
			ns=$BENCH_NS_A pod=$BENCH_POD_A_NS uid=bench-a name=client sa=client
		else
			ns=$BENCH_NS_B pod=$BENCH_POD_B_NS uid=bench-b name=server sa=server
		fi
		mkdir -p "$BENCH_WORK/zt-$n"
		local env_n=(INPOD_UDS="$BENCH_WORK/zt-$n/ztunnel.sock" ZTUNNEL_CNI_DIR="$BENCH_WORK/zt-$n/cni")
		# The redirection-backend rows (run.sh, BENCH_REDIRECT): the agents'
		# ZTUNNEL_REDIRECT; with ebpf each pins its programs on the bench's
		# own bpf filesystem (lib.sh's zt_cleanup removes the pins).
		if [ -n "${BENCH_OURS_REDIRECT:-}" ]; then
			env_n+=(ZTUNNEL_REDIRECT="$BENCH_OURS_REDIRECT")
			if [ "$BENCH_OURS_REDIRECT" = ebpf ]; then
				if ! mountpoint -q "$BENCH_WORK/bpffs"; then
					mkdir -p "$BENCH_WORK/bpffs" && mount -t bpf bpf "$BENCH_WORK/bpffs" || return 1
				fi
				env_n+=(ZTUNNEL_BPF_DIR="$BENCH_WORK/bpffs/zt-$n")
			fi
		fi
		zt_bg "$ns" "zt-cni-$n" env "${env_n[@]}" "$ZT_BIN" cni
		cni_pid=$ZT_BG_PID
		zt_bg "$ns" "zt-proxy-$n" env "${env_n[@]}" LOCAL_XDS_PATH="$BENCH_WORK/mesh.yaml" \
			LOCAL_CA_DIR="$BENCH_CA" NODE_NAME="node-$n" RUST_LOG=warn "$ZT_BIN" proxy
		if [ $n = a ]; then BENCH_PIDS_A=$ZT_BG_PID; else BENCH_PIDS_B=$ZT_BG_PID; fi
		echo "$cni_pid" >>"$BENCH_WORK/ours-agents"
		for _ in $(seq 50); do
			[ -S "$BENCH_WORK/zt-$n/cni/agent.sock" ] && break
			sleep 0.1
		done
		env "${env_n[@]}" timeout 10 "$ZT_BIN" enroll --netns "$pod" --uid $uid --name $name \
			--namespace bench --service-account $sa >/dev/null || return 1
	done
	BENCH_IPERF_TARGET="$BENCH_POD_B_IP:$BENCH_IPERF_PORT"
	BENCH_SOCKPERF_TARGET="$BENCH_POD_B_IP:$BENCH_SOCKPERF_PORT"
	BENCH_HTTP_TARGET="$BENCH_POD_B_IP:$BENCH_HTTP_PORT"
	BENCH_HOLD_TARGET="$BENCH_POD_B_IP:$BENCH_HOLD_PORT"
	zt_wait_port "$BENCH_POD_A_NS" "$BENCH_POD_B_IP" "$BENCH_IPERF_PORT" 5
}

# bench_ours_l7_setup [NPOL]: the "ours-l7" rows of bench/run.sh: the L7
# client pod and the L7 server pod enrolled in two ztunnel-c node proxies,
# and `ztunnel waypoint` in the waypoint pod (not enrolled) as the waypoint
# of a service whose port 80 (appProtocol http) targets the server pod's
# HTTP backend. A request to the service VIP goes client pod -> proxy A ->
# the waypoint -> proxy B -> backend, over HBONE (mTLS) on both hops.
# Optional: without this function the rows are skipped.
#
# The three proxies start on the first call and are kept for the next ones
# (run.sh stops them after the last ours-l7 row; the pods stay enrolled with
# their node agents, so they could not be enrolled again), so that every
# ours-l7 row measures the same processes. The waypoint reads a file of its
# own. With NPOL, that file is rewritten (write + rename, as editors do) to
# the mesh and NPOL AuthorizationPolicy documents from
# bench/gen_l7_policies.py (10 on the benchmarked service and its Gateway,
# the rest on other services), and the call returns 0 only once the
# waypoint's `authz` log says "NPOL L7 authorization policies in force (0
# left out)", GET / is answered 200 and GET /admin/x 403 with the access
# line naming the policy that denied it (the positive control: the policies
# are enforced). For those lines the waypoint is set to info (admin POST
# /logging) and then back to warn, as it runs under load.
#
# Available, besides the above:
#   BENCH_L7_CLIENT_NS, BENCH_L7_CLIENT_IP   client pod (node A)
#   BENCH_L7_SERVER_NS, BENCH_L7_SERVER_IP   server pod (node B), the backend
#                                            listening on BENCH_L7_PORT
#   BENCH_WP_NS, BENCH_WP_IP                 the waypoint's pod (node B)
#   BENCH_L7_VIP                             a free service VIP
#   BENCH_L7_NGINX_NS, BENCH_L7_NGINX_IP     the nginx-mesh row's pod (node B),
#                                            or empty: to be enrolled on node B
#                                            as workload l7-nginx, service
#                                            account nginx
# Must set, on success:
#   BENCH_L7_TARGET   "ip:port" the client sends its HTTP requests to
#   BENCH_PIDS_A, BENCH_PIDS_W, BENCH_PIDS_B  PIDs (process-group leaders) of
#       node A's proxy, the waypoint and node B's proxy
# and return 0 once a request through the whole path has been answered.
BENCH_L7_RUNNING="" # "PID_A PID_W PID_B" once the three proxies run
BENCH_OURS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bench_ours_l7_setup() {
	local npol=${1:-} n ns pod uid sa cni_pid d=$BENCH_WORK h=l7.bench.svc.cluster.local
	local i rc
	BENCH_PIDS_A="" BENCH_PIDS_W="" BENCH_PIDS_B=""
	BENCH_L7_TARGET=$BENCH_L7_VIP:80
	if [ -n "$BENCH_L7_RUNNING" ]; then
		read -r BENCH_PIDS_A BENCH_PIDS_W BENCH_PIDS_B <<<"$BENCH_L7_RUNNING"
		for i in $BENCH_L7_RUNNING; do
			if ! kill -0 "$i" 2>/dev/null; then
				echo "the proxies of the first ours-l7 row are gone" >&2
				return 1
			fi
		done
	else
		{
			echo "workloads:"
			echo "- {uid: l7-client, name: l7-client, namespace: bench, serviceAccount: client," \
				"workloadIps: [\"$BENCH_L7_CLIENT_IP\"], protocol: HBONE, node: node-a}"
			echo "- {uid: l7-server, name: l7-server, namespace: bench, serviceAccount: server," \
				"workloadIps: [\"$BENCH_L7_SERVER_IP\"], protocol: HBONE, node: node-b," \
				"services: {\"bench/$h\": {80: $BENCH_L7_PORT}}}"
			echo "- {uid: waypoint, name: waypoint, namespace: bench, serviceAccount: waypoint," \
				"workloadIps: [\"$BENCH_WP_IP\"], protocol: HBONE, node: node-b}"
			[ -z "${BENCH_L7_NGINX_IP:-}" ] ||
				echo "- {uid: l7-nginx, name: l7-nginx, namespace: bench, serviceAccount: nginx," \
					"workloadIps: [\"$BENCH_L7_NGINX_IP\"], protocol: HBONE, node: node-b}"
			echo "services:"
			echo "- {name: l7, namespace: bench, hostname: $h, vips: [\"/$BENCH_L7_VIP\"]," \
				"ports: {80: {targetPort: $BENCH_L7_PORT, appProtocol: http}}," \
				"waypoint: {destination: \"/$BENCH_WP_IP\", hboneMtlsPort: 15008}}"
		} >"$d/mesh-l7.yaml"
		cp "$d/mesh-l7.yaml" "$d/waypoint-l7.yaml"
		for n in a b; do
			if [ $n = a ]; then
				ns=$BENCH_NS_A pod=$BENCH_L7_CLIENT_NS uid=l7-client sa=client
			else
				ns=$BENCH_NS_B pod=$BENCH_L7_SERVER_NS uid=l7-server sa=server
			fi
			mkdir -p "$d/zt-l7$n"
			local env_n=(INPOD_UDS="$d/zt-l7$n/ztunnel.sock" ZTUNNEL_CNI_DIR="$d/zt-l7$n/cni")
			zt_bg "$ns" "zt-l7-cni-$n" env "${env_n[@]}" "$ZT_BIN" cni
			cni_pid=$ZT_BG_PID
			zt_bg "$ns" "zt-l7-proxy-$n" env "${env_n[@]}" LOCAL_XDS_PATH="$d/mesh-l7.yaml" \
				LOCAL_CA_DIR="$BENCH_CA" NODE_NAME="node-$n" RUST_LOG=warn "$ZT_BIN" proxy
			if [ $n = a ]; then BENCH_PIDS_A=$ZT_BG_PID; else BENCH_PIDS_B=$ZT_BG_PID; fi
			echo "$cni_pid" >>"$d/ours-agents"
			for _ in $(seq 50); do
				[ -S "$d/zt-l7$n/cni/agent.sock" ] && break
				sleep 0.1
			done
			env "${env_n[@]}" timeout 10 "$ZT_BIN" enroll --netns "$pod" --uid $uid --name $uid \
				--namespace bench --service-account $sa >/dev/null || return 1
			if [ $n = b ] && [ -n "${BENCH_L7_NGINX_NS:-}" ]; then
				env "${env_n[@]}" timeout 10 "$ZT_BIN" enroll --netns "$BENCH_L7_NGINX_NS" --uid l7-nginx \
					--name l7-nginx --namespace bench --service-account nginx >/dev/null || return 1
			fi
		done
		# No access lines (RUST_LOG=warn), as nginx-rp runs with access_log off.
		zt_bg "$BENCH_WP_NS" zt-l7-waypoint env LOCAL_XDS_PATH="$d/waypoint-l7.yaml" LOCAL_CA_DIR="$BENCH_CA" \
			POD_NAME=waypoint POD_NAMESPACE=bench SERVICE_ACCOUNT=waypoint RUST_LOG=warn "$ZT_BIN" waypoint
		BENCH_PIDS_W=$ZT_BG_PID
		BENCH_L7_RUNNING="$BENCH_PIDS_A $BENCH_PIDS_W $BENCH_PIDS_B"
		for _ in $(seq 50); do
			zt_ns_exec "$BENCH_WP_NS" curl -sf -o /dev/null --max-time 1 http://127.0.0.1:15021/healthz/ready && break
			sleep 0.1
		done
	fi
	zt_ns_exec "$BENCH_L7_CLIENT_NS" curl -sf -o /dev/null --max-time 5 --retry 10 --retry-delay 0 \
		--retry-all-errors "http://$BENCH_L7_TARGET/" || return 1
	[ -n "$npol" ] || return 0
	bench_wp_log_level info || return 1
	bench_ours_l7_policies "$npol"
	rc=$?
	bench_wp_log_level warn || rc=1
	[ $rc = 0 ] && echo "waypoint: $npol L7 policies in force, GET / 200, GET /admin/x 403 (deny-admin), log level warn" >&2
	return $rc
}

# bench_ours_l7_policies NPOL: the running L7 waypoint's file rewritten to the
# mesh and NPOL policies; returns 0 once they are seen in force and enforced.
bench_ours_l7_policies() {
	local npol=$1 d=$BENCH_WORK code i lines seen=0 tab=$'\t' wlog=$BENCH_WORK/zt-l7-waypoint.log
	lines=$(wc -l <"$wlog")
	{
		cat "$d/mesh-l7.yaml"
		python3 "$BENCH_OURS_DIR/gen_l7_policies.py" "$npol" --namespace bench --service l7 --gateway waypoint \
			--principal cluster.local/ns/bench/sa/client
		[ -z "${BENCH_L7_JWT:-}" ] || bench_ours_l7_authn || return 1
	} >"$d/waypoint-l7.yaml.new" && mv "$d/waypoint-l7.yaml.new" "$d/waypoint-l7.yaml" || return 1
	for i in $(seq 300); do # 30 s
		tail -n +$((lines + 1)) "$wlog" | grep -q "${tab}authz${tab}.*L7 authorization polic[a-z]* in force" && break
		sleep 0.1
	done
	if ! tail -n +$((lines + 1)) "$wlog" | grep -q "${tab}authz${tab}$npol L7 authorization policies in force (0 left out)"; then
		echo "the waypoint did not report $npol L7 policies in force:" \
			"$(tail -n +$((lines + 1)) "$wlog" | grep "${tab}authz${tab}" | head -3)" >&2
		return 1
	fi
	zt_ns_exec "$BENCH_L7_CLIENT_NS" curl -sf -o /dev/null --max-time 5 "http://$BENCH_L7_TARGET/" || {
		echo "GET / is not answered 2xx with the $npol policies in force" >&2
		return 1
	}
	code=$(zt_ns_exec "$BENCH_L7_CLIENT_NS" curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
		"http://$BENCH_L7_TARGET/admin/x")
	if [ "$code" != 403 ]; then
		echo "positive control: GET /admin/x got $code, not 403 from the deny-admin policy" >&2
		return 1
	fi
	for i in $(seq 50); do
		tail -n +$((lines + 1)) "$wlog" |
			grep -q 'path=/admin/x.*status=403.*rbac_access_denied_matched_policy\[ns\[bench\]-policy\[deny-admin\]-rule\[0\]\]' &&
			seen=1 && break
		sleep 0.1
	done
	if [ $seen = 0 ]; then
		echo "positive control: no access line naming deny-admin for GET /admin/x:" \
			"$(grep 'path=/admin/x' "$wlog" | tail -1)" >&2
		return 1
	fi
	[ -n "${BENCH_L7_JWT:-}" ] || return 0
	# The JWT row: the token is accepted (200), an expired one refused (401).
	if ! tail -n +$((lines + 1)) "$wlog" | grep -q "${tab}jwt${tab}1 RequestAuthentication policy in force"; then
		echo "the waypoint did not report the RequestAuthentication in force" >&2
		return 1
	fi
	BENCH_L7_AUTH=$(cat "$d/jwt/alice.jwt")
	code=$(zt_ns_exec "$BENCH_L7_CLIENT_NS" curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
		-H "authorization: Bearer $BENCH_L7_AUTH" "http://$BENCH_L7_TARGET/")
	code="$code $(zt_ns_exec "$BENCH_L7_CLIENT_NS" curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
		-H "authorization: Bearer $(cat "$d/jwt/expired.jwt")" "http://$BENCH_L7_TARGET/")"
	if [ "$code" != "200 401" ]; then
		echo "JWT: the valid token got ${code% *} (not 200), the expired one ${code#* } (not 401)" >&2
		return 1
	fi
}

# bench_ours_l7_authn: a RequestAuthentication on the waypoint's Gateway,
# keys and tokens minted by Node's crypto (tests/e2e/jwt_mint.js) into
# $BENCH_WORK/jwt (audience svc-web is not asked for).
bench_ours_l7_authn() {
	local d=$BENCH_WORK/jwt
	mkdir -p "$d" && node "$BENCH_OURS_DIR/../tests/e2e/jwt_mint.js" "$d" https://issuer.bench >/dev/null || return 1
	cat <<-Y
		---
		apiVersion: security.istio.io/v1
		kind: RequestAuthentication
		metadata: {name: jwt, namespace: bench}
		spec:
		  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
		  jwtRules:
		  - issuer: https://issuer.bench
		    jwks: '$(cat "$d/jwks.json")'
	Y
}

# bench_wp_log_level LEVEL: sets the L7 waypoint's log level (admin port).
bench_wp_log_level() {
	local out
	out=$(zt_ns_exec "$BENCH_WP_NS" curl -s --max-time 2 -X POST "http://127.0.0.1:15000/logging?level=$1")
	case $out in *"$1"*) return 0 ;; esac
	echo "could not set the waypoint's log level to $1: '$out'" >&2
	return 1
}
