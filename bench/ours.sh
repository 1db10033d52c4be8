# shellcheck shell=bash
# bench/ours.sh: the "ours" row of bench/run.sh, i.e. two ztunnel-c proxies.
# Sourced by run.sh; replace the body of bench_ours_setup when the proxy can
# run. run.sh skips the row with a message if ZT_BIN is unset or this
# function returns non-zero.
#
# Called after the topology, the app servers and the CA exist. Available:
#   ZT_BIN                     the ztunnel-c binary (set by the caller)
#   BENCH_CA                   Istio cacerts dir (root-cert.pem, ca-cert.pem,
#                              ca-key.pem, cert-chain.pem; EC P-256, the CA is
#                              the root), same CA as the stunnel row
#   BENCH_WORK                 scratch dir for configs and logs (removed on exit)
#   BENCH_NS_A, BENCH_NS_B     node netns of the client side and server side
#   BENCH_NODE_A_IP, BENCH_NODE_B_IP   node addresses on the fabric (172.30.0.x)
#   BENCH_POD_A_NS, BENCH_POD_B_NS     client pod / server pod netns
#   BENCH_POD_A_IP, BENCH_POD_B_IP     pod addresses (10.200.x.y)
#   BENCH_IPERF_PORT, BENCH_SOCKPERF_PORT  app ports listening in pod B
#   zt_bg NETNS LOGNAME CMD...  start a process (killed on exit); PID in ZT_BG_PID
#   zt_wait_port NETNS IP PORT TIMEOUT_S
# Must set, on success:
#   BENCH_IPERF_TARGET, BENCH_SOCKPERF_TARGET  "ip:port" the client in pod A
#       connects to so that traffic reaches the app in pod B through both
#       proxies (may be the pod B address itself if redirection is set up)
#   BENCH_PIDS_A, BENCH_PIDS_B  PIDs (process-group leaders, as zt_bg makes)
#       of the proxy on each side, for CPU and RSS accounting
# and return 0 once both proxies accept connections. run.sh stops every PID
# in BENCH_PIDS_A/B after the row.
bench_ours_setup() {
	echo "bench_ours_setup: not filled in yet (see bench/ours.sh)" >&2
	return 1
}
