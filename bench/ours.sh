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
# The node proxies start on the first call and are kept for the next ones
# (run.sh stops them after the last ours-l7 row: the pods stay enrolled with
# their node agents, so they cannot be enrolled again); every call starts a
# fresh waypoint. With NPOL, the waypoint's LOCAL_XDS_PATH holds the mesh
# and NPOL AuthorizationPolicy documents from bench/gen_l7_policies.py (10
# on the benchmarked service and its Gateway, the rest on other services),
# and the call returns 0 only once the waypoint's `authz` log says "NPOL L7
# authorization policies in force (0 left out)", GET / is answered 200 and
# GET /admin/x 403 with the access line naming the policy that denied it
# (the positive control: the policies are enforced); the waypoint starts at
# info for those lines, and is then set to warn (admin POST /logging), as
# the policy-free row runs, before the load.
#
# Available, besides the above:
#   BENCH_L7_CLIENT_NS, BENCH_L7_CLIENT_IP   client pod (node A)
#   BENCH_L7_SERVER_NS, BENCH_L7_SERVER_IP   server pod (node B), the backend
#                                            listening on BENCH_L7_PORT
#   BENCH_WP_NS, BENCH_WP_IP                 the waypoint's pod (node B)
#   BENCH_L7_VIP                             a free service VIP
# Must set, on success:
#   BENCH_L7_TARGET   "ip:port" the client sends its HTTP requests to
#   BENCH_PIDS_A, BENCH_PIDS_W, BENCH_PIDS_B  PIDs (process-group leaders) of
#       node A's proxy, the waypoint and node B's proxy
# and return 0 once a request through the whole path has been answered.
BENCH_L7_NODES_UP="" # "PID_A PID_B" once the node proxies run
BENCH_OURS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bench_ours_l7_setup() {
	local npol=${1:-} n ns pod uid sa cni_pid d=$BENCH_WORK h=l7.bench.svc.cluster.local
	local wcfg tag lvl code i
	BENCH_PIDS_A="" BENCH_PIDS_W="" BENCH_PIDS_B=""
	if [ -n "$BENCH_L7_NODES_UP" ]; then
		BENCH_PIDS_A=${BENCH_L7_NODES_UP% *} BENCH_PIDS_B=${BENCH_L7_NODES_UP#* }
		if ! kill -0 "$BENCH_PIDS_A" 2>/dev/null || ! kill -0 "$BENCH_PIDS_B" 2>/dev/null; then
			echo "the node proxies of the first ours-l7 row are gone" >&2
			return 1
		fi
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
			echo "services:"
			echo "- {name: l7, namespace: bench, hostname: $h, vips: [\"/$BENCH_L7_VIP\"]," \
				"ports: {80: {targetPort: $BENCH_L7_PORT, appProtocol: http}}," \
				"waypoint: {destination: \"/$BENCH_WP_IP\", hboneMtlsPort: 15008}}"
		} >"$d/mesh-l7.yaml"
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
		done
		BENCH_L7_NODES_UP="$BENCH_PIDS_A $BENCH_PIDS_B"
	fi
	# No access lines (RUST_LOG=warn), as nginx-rp runs with access_log off;
	# with policies, info until they are seen in force (see above).
	wcfg=$d/mesh-l7.yaml tag="" lvl=warn
	if [ -n "$npol" ]; then
		wcfg=$d/waypoint-pol$npol.yaml tag=-pol$npol lvl=info
		{
			cat "$d/mesh-l7.yaml"
			python3 "$BENCH_OURS_DIR/gen_l7_policies.py" "$npol" --namespace bench --service l7 --gateway waypoint \
				--principal cluster.local/ns/bench/sa/client
		} >"$wcfg" || return 1
	fi
	zt_bg "$BENCH_WP_NS" "zt-l7-waypoint$tag" env LOCAL_XDS_PATH="$wcfg" LOCAL_CA_DIR="$BENCH_CA" \
		POD_NAME=waypoint POD_NAMESPACE=bench SERVICE_ACCOUNT=waypoint RUST_LOG=$lvl "$ZT_BIN" waypoint
	BENCH_PIDS_W=$ZT_BG_PID
	BENCH_L7_TARGET=$BENCH_L7_VIP:80
	for _ in $(seq 50); do
		zt_ns_exec "$BENCH_WP_NS" curl -sf -o /dev/null --max-time 1 http://127.0.0.1:15021/healthz/ready && break
		sleep 0.1
	done
	zt_ns_exec "$BENCH_L7_CLIENT_NS" curl -sf -o /dev/null --max-time 5 --retry 10 --retry-delay 0 \
		--retry-all-errors "http://$BENCH_L7_TARGET/" || return 1
	[ -n "$npol" ] || return 0

	local wlog=$BENCH_WORK/zt-l7-waypoint$tag.log tab=$'\t' seen=0
	for i in $(seq 300); do # 30 s
		grep -q "${tab}authz${tab}.*L7 authorization polic[a-z]* in force" "$wlog" && break
		sleep 0.1
	done
	if ! grep -q "${tab}authz${tab}$npol L7 authorization policies in force (0 left out)" "$wlog"; then
		echo "the waypoint did not report $npol L7 policies in force: $(grep "${tab}authz${tab}" "$wlog" | head -3)" >&2
		return 1
	fi
	code=$(zt_ns_exec "$BENCH_L7_CLIENT_NS" curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
		"http://$BENCH_L7_TARGET/admin/x")
	if [ "$code" != 403 ]; then
		echo "positive control: GET /admin/x got $code, not 403 from the deny-admin policy" >&2
		return 1
	fi
	for i in $(seq 50); do
		grep -q 'path=/admin/x.*status=403.*rbac_access_denied_matched_policy\[ns\[bench\]-policy\[deny-admin\]-rule\[0\]\]' \
			"$wlog" && seen=1 && break
		sleep 0.1
	done
	if [ $seen = 0 ]; then
		echo "positive control: no access line naming deny-admin for GET /admin/x: $(grep 'path=/admin/x' "$wlog" | tail -1)" >&2
		return 1
	fi
	lvl=$(zt_ns_exec "$BENCH_WP_NS" curl -s --max-time 2 -X POST 'http://127.0.0.1:15000/logging?level=warn')
	case $lvl in *warn*) ;; *)
		echo "could not set the waypoint's log level to warn: '$lvl'" >&2
		return 1
		;;
	esac
	echo "waypoint: $npol L7 policies in force, GET / 200, GET /admin/x 403 (deny-admin), log level warn" >&2
}
