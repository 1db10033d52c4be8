# shellcheck shell=bash
# shellcheck disable=SC2034 # the BENCH_* outputs are read by run.sh
# bench/ours-gopeer.sh: a stand-in for bench/ours.sh that fills the "ours" row with
# the Go HBONE peer (tests/interop), to check the hook plumbing and to give a
# reference HBONE row. Use: ZT_BIN=$(tests/interop/build.sh DIR) \
#   BENCH_OURS_SH=bench/ours-gopeer.sh bench/run.sh
bench_ours_setup() {
	local P=$ZT_BIN id=spiffe://cluster.local/ns/bench/sa
	zt_bg "$BENCH_NS_B" go-b "$P" server -ca-dir "$BENCH_CA" -id $id/b -listen "$BENCH_NODE_B_IP:15008" -timeout 0
	BENCH_PIDS_B=$ZT_BG_PID
	zt_bg "$BENCH_NS_A" go-a1 "$P" client -ca-dir "$BENCH_CA" -id $id/a -expect-id $id/b -connect "$BENCH_NODE_B_IP:15008" \
		-authority "$BENCH_POD_B_IP:$BENCH_IPERF_PORT" -listen "$BENCH_NODE_A_IP:15001" -timeout 0
	BENCH_PIDS_A=$ZT_BG_PID
	zt_bg "$BENCH_NS_A" go-a2 "$P" client -ca-dir "$BENCH_CA" -id $id/a -expect-id $id/b -connect "$BENCH_NODE_B_IP:15008" \
		-authority "$BENCH_POD_B_IP:$BENCH_SOCKPERF_PORT" -listen "$BENCH_NODE_A_IP:15002" -timeout 0
	BENCH_PIDS_A="$BENCH_PIDS_A $ZT_BG_PID"
	BENCH_IPERF_TARGET=$BENCH_NODE_A_IP:15001 BENCH_SOCKPERF_TARGET=$BENCH_NODE_A_IP:15002
	zt_wait_port "$BENCH_NS_A" "$BENCH_NODE_A_IP" 15001 5 && zt_wait_port "$BENCH_NS_A" "$BENCH_NODE_A_IP" 15002 5
}
