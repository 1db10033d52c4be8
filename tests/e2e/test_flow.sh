#!/usr/bin/env bash
# Flow control across the tunnel: a slow application reader throttles its
# sender without stalling the tunnel (window updates go out as the reader
# drains), and a fast bulk transfer in both directions arrives intact.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

A=10.200.1.2 C=10.200.2.2
zt_test "setup: a on node 1, c on node 2"
setup() {
	zt_node_add 1 && zt_node_add 2 || return 1
	a=$(zt_pod_add 1 1 a) && c=$(zt_pod_add 2 1 c) || return 1
	mesh_ca || return 1
	cat >"$ZT_WORK/n1.yaml" <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: c, name: c, namespace: default, serviceAccount: sa-c, workloadIps: ["$C"], protocol: HBONE, node: node2}
	Y
	cp "$ZT_WORK/n1.yaml" "$ZT_WORK/n2.yaml"
	mesh_node_up 1 && mesh_node_up 2 || return 1
	mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$c" c sa-c || return 1
	# A reader that takes 64 KiB every 5 ms (~12 MiB/s), then reports what it got.
	cat >"$ZT_WORK/slow.py" <<-'PY'
		import hashlib, socket, time
		s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
		s.bind(("0.0.0.0", 7000)); s.listen(4)
		while True:
		    c, _ = s.accept(); h = hashlib.sha256(); n = 0
		    while True:
		        b = c.recv(65536)
		        if not b: break
		        h.update(b); n += len(b); time.sleep(0.005)
		    c.sendall(("%d %s\n" % (n, h.hexdigest())).encode()); c.close()
	PY
	zt_bg "$c" slow-reader python3 "$ZT_WORK/slow.py"
	# An app that resets every connection once it has read a line (SO_LINGER 0).
	cat >"$ZT_WORK/reset.py" <<-'PY'
		import socket, struct
		s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
		s.bind(("0.0.0.0", 7001)); s.listen(4)
		while True:
		    c, _ = s.accept(); c.recv(100)
		    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
	PY
	zt_bg "$c" reset-app python3 "$ZT_WORK/reset.py"
	zt_wait_port "$c" 127.0.0.1 7001 5 &&
		zt_wait_port "$c" 127.0.0.1 7000 5 && zt_echo_server "$c" 8080
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

head -c $((24 * 1024 * 1024)) /dev/urandom >"$ZT_WORK/blob"
want="$((24 * 1024 * 1024)) $(sha256sum "$ZT_WORK/blob" | cut -d' ' -f1)"

# Speed is measured by `make bench`; here only that flow control delivers
# everything (the 30 s bound only catches a deadlock).
zt_test "24 MiB into a slow reader: arrives intact (flow control does not deadlock)"
got=$(zt_ns_exec "$a" timeout 30 python3 - "$C" "$ZT_WORK/blob" <<-'PY'
	import socket, sys
	s = socket.create_connection((sys.argv[1], 7000))
	s.sendall(open(sys.argv[2], "rb").read()); s.shutdown(socket.SHUT_WR)
	print(s.makefile().readline().strip())
PY
)
zt_expect_eq "$got" "$want"

zt_test "64 MiB echoed back and forth: intact"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$ZT_WORK/big"
sum=$(zt_ns_exec "$a" timeout 60 socat -t 10 - "TCP:$C:8080" <"$ZT_WORK/big" | sha256sum | cut -d" " -f1)
zt_expect_eq "$sum" "$(sha256sum "$ZT_WORK/big" | cut -d' ' -f1)"
rm -f "$ZT_WORK/big" "$ZT_WORK/blob"

# The app resets the connection: the access line names the reset (the
# socket's own error), not the poll's stand-in "Bad file descriptor".
zt_test "an app that resets its connection: the access log says 'Connection reset by peer'"
(printf 'hello\n'; sleep 3) | zt_ns_exec "$a" timeout 10 socat -t 5 - "TCP:$C:7001" >/dev/null 2>&1
if mesh_wait_grep "$(mesh_log 2 proxy)" 'dst.hbone_addr=10.200.2.2:7001 .*error="[a-z ]*downstream: Connection reset by peer"' 10; then
	zt_pass
else
	zt_fail "$(grep 'hbone_addr=10.200.2.2:7001' "$(mesh_log 2 proxy)")"
fi

mesh_finish
