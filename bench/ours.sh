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
