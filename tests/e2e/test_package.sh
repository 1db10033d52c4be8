#!/usr/bin/env bash
# The Debian package (make deb): its fields, files and conffiles; installed
# with dpkg into a throw-away root; its units checked by systemd-analyze
# verify in that root; its binary, ztunnel-gen-cacerts and units run from
# it, and booted under systemd in a container; removed and purged. Needs
# root.
#
# The throw-away root is an overlay over this machine's root file system
# (upper layer in $ZT_WORK), mounted only inside private mount namespaces
# (unshare -m): dpkg --root runs the package's maintainer scripts chrooted
# in it with the machine's own shell and deb-systemd-helper, resolves
# Depends against the machine's dpkg database, and systemd-analyze finds
# systemd's own units there, while nothing reaches the real root.
#
# The units' ExecStart lines first run the way systemd would run them,
# without it (unit_run): the environment of Environment= and
# EnvironmentFile=, ExecStart's $VAR/${VAR} expanded, chrooted in the
# installed root mounted read-only (ProtectSystem=strict) with a tmpfs /tmp
# (PrivateTmp), /run read-only but ReadWritePaths= (/run/ztunnel, shared by
# agent and proxy as RuntimeDirectory= is), the capability bounding set of
# CapabilityBoundingSet= and NoNewPrivileges (setpriv). Then under systemd
# itself, the installed root booted in systemd-nspawn, which applies the
# rest (SystemCallFilter=, RestrictNamespaces=, RestrictAddressFamilies=,
# MemoryDenyWriteExecute=, ProtectProc=, ...).
#
# ZT_DEB: the .deb to test; default build/ztunnel_<scripts/deb-version.sh>_
# amd64.deb of this tree, built with `make deb` when missing.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup
repo=$mesh_repo
PKG=$ZT_WORK/pkgroot
R=$PKG/root
mkdir -p "$PKG/upper" "$PKG/work" "$R" "$ZT_WORK/rt"

# pkg_ns SCRIPT [ARGS...]: runs the bash SCRIPT in a private mount
# namespace with the throw-away root mounted (writable) at $R.
pkg_ns() {
	local script=$1
	shift
	# shellcheck disable=SC2016
	unshare -m --propagation private bash -c '
		mount -t overlay overlay -o "lowerdir=/,upperdir=$PKG/upper,workdir=$PKG/work" "$R" || exit 1
		eval "$0"' "$script" "$@"
}
export PKG R

# pkg_chroot CMD...: CMD chrooted in the throw-away root (writable), with
# /proc and /dev.
pkg_chroot() {
	# shellcheck disable=SC2016
	pkg_ns 'mount -t proc proc "$R/proc"; mount --rbind /dev "$R/dev"; exec chroot "$R" "$@"' "$@"
}

ver=$("$repo/scripts/deb-version.sh")
deb=${ZT_DEB:-$repo/build/ztunnel_${ver}_amd64.deb}
zt_test "the package: $(basename "$deb")"
if [ ! -f "$deb" ] && [ -z "${ZT_DEB:-}" ]; then
	make -C "$repo" deb >"$ZT_WORK/deb-build.log" 2>&1 || true
fi
if [ -f "$deb" ]; then zt_pass; else
	zt_fail "no $deb (make deb: $(tail -n 5 "$ZT_WORK/deb-build.log" 2>/dev/null | tr '\n' ' '))"
	zt_summary
	exit 1
fi

# ---- the archive ----
zt_test "fields: Package ztunnel, Version $ver, Architecture amd64"
zt_expect_eq "$(dpkg-deb --field "$deb" Package Version Architecture | tr '\n' ' ')" \
	"Package: ztunnel Version: $ver Architecture: amd64 "

# Depends: the binary's libraries as dpkg-shlibdeps found them, and the
# programs the agent and ztunnel-gen-cacerts run.
depends=$(dpkg-deb --field "$deb" Depends)
zt_test "Depends: the shared libraries (dpkg-shlibdeps) and iproute2, iptables, openssl"
missing=""
for d in 'libc6 (>=' 'libuv1 (>=' 'libssl3 (>=' 'libnghttp2-14 (>=' 'libprotobuf-c1 (>=' \
	libyaml-0-2 'libjansson4 (>=' 'libmicrohttpd12 (>=' 'libldns3 (>=' 'libpcre2-8-0 (>=' \
	'libcjose0 (>=' 'libhttp-parser2.9 (>=' 'zlib1g (>=' iproute2 iptables openssl; do
	case ", $depends," in *", $d"*) ;; *) missing="$missing [$d]" ;; esac
done
if [ -z "$missing" ]; then zt_pass; else zt_fail "missing$missing in: $depends"; fi

# libcurl is dlopen'ed by a waypoint with a jwksUri: Suggests, not Depends
# (dpkg-shlibdeps cannot see it, and must not have).
zt_test "libcurl4 is suggested (dlopen), not a dependency; nftables recommended"
got="$(dpkg-deb --field "$deb" Suggests)/$(dpkg-deb --field "$deb" Recommends)"
if [ "$got" = libcurl4/nftables ] && [[ $depends != *curl* ]]; then zt_pass; else
	zt_fail "Suggests/Recommends '$got', Depends '$depends'"
fi

zt_test "files: binary, helper, units, configuration, docs"
files=$(dpkg-deb --contents "$deb" | awk '$1 !~ /^d/ { print $6 }' | sed 's|^\./|/|' | sort | tr '\n' ' ')
zt_expect_eq "$files" "/etc/ztunnel/cni.env /etc/ztunnel/control.env /etc/ztunnel/proxy.env \
/lib/systemd/system/ztunnel-cni.service /lib/systemd/system/ztunnel-control.service \
/lib/systemd/system/ztunnel-proxy.service /lib/systemd/system/ztunnel-waypoint@.service \
/usr/bin/ztunnel /usr/bin/ztunnel-gen-cacerts /usr/share/doc/ztunnel/changelog.gz \
/usr/share/doc/ztunnel/examples/waypoint.env /usr/share/doc/ztunnel/install.md \
/usr/share/ztunnel/gen-cacerts.sh "

zt_test "conffiles: the three /etc/ztunnel/*.env"
zt_expect_eq "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | sort | tr '\n' ' ')" \
	"/etc/ztunnel/cni.env /etc/ztunnel/control.env /etc/ztunnel/proxy.env "

# ---- install ----
zt_test "dpkg --root installs it in the throw-away root (maintainer scripts chrooted there)"
# shellcheck disable=SC2016
if pkg_ns 'dpkg --root="$R" -i "$1"' "$deb" >"$ZT_WORK/install.log" 2>&1 &&
	pkg_ns 'dpkg --root="$R" -s ztunnel' 2>&1 | grep -qx 'Status: install ok installed'; then
	zt_pass
else zt_fail "$(tail -n 5 "$ZT_WORK/install.log" | tr '\n' ' ')"; fi

zt_test "installed in the throw-away root only, not in this machine's"
# shellcheck disable=SC2016
if pkg_ns 'test -x "$R/usr/bin/ztunnel" && test -f "$R/etc/ztunnel/proxy.env"' &&
	[ ! -e /usr/bin/ztunnel ] && [ ! -e /etc/ztunnel/proxy.env ] &&
	! dpkg -s ztunnel >/dev/null 2>&1; then
	zt_pass
else zt_fail "/usr/bin/ztunnel or /etc/ztunnel/proxy.env of the machine, or not in the root"; fi

zt_test "the installed binary runs: ztunnel version names this tree"
got=$(pkg_chroot /usr/bin/ztunnel version 2>&1 | head -1)
zt_expect_eq "$got" "ztunnel-c $(git -C "$repo" describe --always --dirty)"

# ---- systemd-analyze verify ----
units="ztunnel-cni.service ztunnel-proxy.service ztunnel-control.service ztunnel-waypoint@wp.service"
zt_test "systemd-analyze verify --root: the installed units, no error or warning"
if ! command -v systemd-analyze >/dev/null; then
	zt_fail "no systemd-analyze (scripts/deps.sh installs systemd)"
else
	# shellcheck disable=SC2016,SC2086
	out=$(pkg_ns 'cd "$R" && systemd-analyze verify --root="$R" "$@"' $units 2>&1)
	rc=$?
	if [ "$rc" = 0 ] && [ -z "$out" ]; then zt_pass; else zt_fail "exit $rc: $out"; fi
fi

# Control: the same verify run does fail, and says so, for a unit with an
# unknown key (a systemd newer than bookworm's) and a missing program.
zt_test "control: verify reports a unit with an unknown key and a missing ExecStart"
# shellcheck disable=SC2016
out=$(pkg_ns 'sed -e "s|^ExecStart=/usr/bin/ztunnel|ExecStart=/usr/bin/ztunnel-missing|" \
		-e "s|^RestartSec=.*|RestartSteps=5|" "$R/lib/systemd/system/ztunnel-cni.service" \
		>"$R/etc/systemd/system/ztunnel-broken.service" &&
	cd "$R" && systemd-analyze verify --root="$R" ztunnel-broken.service; rc=$?
	rm -f "$R/etc/systemd/system/ztunnel-broken.service"; exit $rc' 2>&1)
rc=$?
if [ "$rc" != 0 ] && [[ $out == *RestartSteps* ]] && [[ $out == *ztunnel-missing* ]]; then zt_pass; else
	zt_fail "exit $rc: $out"
fi

# ---- ztunnel-gen-cacerts ----
zt_test "ztunnel-gen-cacerts writes a cacerts directory (root, intermediate, key 0600)"
# shellcheck disable=SC2016
pkg_chroot ztunnel-gen-cacerts /tmp/cacerts example.org >"$ZT_WORK/gen.log" 2>&1
rc=$?
# shellcheck disable=SC2016
got=$(pkg_ns 'cd "$R/tmp/cacerts" && stat -c "%n %a" * | tr "\n" " " &&
	openssl verify -CAfile root-cert.pem ca-cert.pem &&
	openssl x509 -in ca-cert.pem -noout -subject &&
	openssl verify -CAfile root-cert.pem -untrusted cert-chain.pem ca-cert.pem >/dev/null &&
	openssl pkey -in ca-key.pem -pubout | cmp -s - <(openssl x509 -in ca-cert.pem -noout -pubkey) &&
	echo key-matches' 2>&1 | tr '\n' ' ')
zt_expect_eq "$rc: $got" "0: ca-cert.pem 644 ca-key.pem 600 cert-chain.pem 644 root-cert.pem 644 \
ca-cert.pem: OK subject=O = ztunnel-c, CN = Intermediate CA example.org key-matches "

zt_test "ztunnel-gen-cacerts leaves a populated directory alone, replaces it with --force"
# shellcheck disable=SC2016
sum() { pkg_ns 'sha256sum "$R/tmp/cacerts/ca-key.pem" | cut -d" " -f1'; }
k0=$(sum)
pkg_chroot ztunnel-gen-cacerts /tmp/cacerts >/dev/null 2>&1
k1=$(sum)
pkg_chroot ztunnel-gen-cacerts --force /tmp/cacerts >/dev/null 2>&1
k2=$(sum)
if [ -n "$k0" ] && [ "$k0" = "$k1" ] && [ "$k1" != "$k2" ]; then zt_pass; else
	zt_fail "key sums '$k0' '$k1' '$k2'"
fi

# ---- the units' command lines, run as systemd would ----
# The machine as the units see it: one mount namespace (held by a process
# that only sleeps) with the installed root mounted at $PKG/ro read-only
# (ProtectSystem=strict), its own /proc, /dev, /sys (read-only, as
# ProtectKernelTunables=), a tmpfs /tmp (PrivateTmp=), and a read-only
# tmpfs /run (the units write nowhere else) holding /run/netns (this
# machine's, new namespaces propagate) and /run/ztunnel, writable
# (ReadWritePaths=): the agent's RuntimeDirectory=, shared with the proxy
# and `ztunnel enroll`. unit_run and enroll enter it.
RO=$PKG/ro
mkdir -p "$RO"
export RO
units_ns_start() {
	# shellcheck disable=SC2016
	zt_bg "$(zt_fabric_ns)" units-ns unshare -m --propagation slave bash -c '
		set -e
		mount -t overlay overlay -o "lowerdir=/,upperdir=$PKG/upper,workdir=$PKG/work" "$R"
		mount --bind "$R" "$RO"
		mount -o remount,bind,ro "$RO"
		mount -t proc proc "$RO/proc"
		mount --rbind /dev "$RO/dev"
		mount --rbind /sys "$RO/sys"
		mount -o remount,bind,ro "$RO/sys"
		mount -t tmpfs -o mode=0755 tmpfs "$RO/run"
		mkdir -p "$RO/run/ztunnel" "$RO/run/netns"
		mount --rbind /run/netns "$RO/run/netns"
		mount -t tmpfs -o mode=0755 tmpfs "$RO/run/ztunnel"
		mount -o remount,ro "$RO/run"
		mount -t tmpfs -o mode=1777 tmpfs "$RO/tmp"
		touch "$ZT_WORK/units-ns.ready"
		exec sleep infinity'
	units_ns=$ZT_BG_PID
	mesh_eventually test -e "$ZT_WORK/units-ns.ready"
}

# units_exec CMD...: CMD chrooted in the units' view (above), in the
# current network namespace, with the environment given, PATH as systemd's.
units_exec() {
	nsenter --mount="/proc/$(pgrep -n -s "$units_ns" sleep)/ns/mnt" chroot "$RO" env -i \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

# unit_key UNIT KEY: the values of KEY= in the installed UNIT, one per line.
unit_key() {
	units_exec sed -n "s/^$2=//p" "/lib/systemd/system/$1"
}

# unit_run NETNS LOGNAME UNIT INSTANCE [CAPS]: starts UNIT's ExecStart (with
# %i = INSTANCE) in NETNS in the background (zt_bg: ZT_BG_PID,
# $ZT_WORK/LOGNAME.log), as described at the top, with the bounding set of
# CapabilityBoundingSet= and no_new_privs (setpriv). CAPS, if given,
# replaces CapabilityBoundingSet= (for the controls).
unit_run() {
	local ns=$1 name=$2 unit=$3 inst=$4 caps envf line k v word capset="-all" c
	local -a env=() argv=()
	declare -A vars=()
	for line in $(unit_key "$unit" Environment); do
		env+=("$line")
		vars[${line%%=*}]=${line#*=}
	done
	while read -r envf; do
		envf=${envf//%i/$inst}
		[[ $envf == -* ]] && { envf=${envf#-}; units_exec test -f "$envf" || continue; }
		while IFS= read -r line; do
			[[ $line =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || continue
			k=${line%%=*} v=${line#*=}
			env+=("$k=$v")
			vars[$k]=$v
		done < <(units_exec cat "$envf")
	done < <(unit_key "$unit" EnvironmentFile)
	for word in $(unit_key "$unit" ExecStart); do
		case $word in
		\$\{*\}) k=${word#??} && argv+=("${vars[${k%\}}]-}") ;;
		\$*) for v in ${vars[${word#\$}]-}; do argv+=("$v"); done ;;
		*) argv+=("$word") ;;
		esac
	done
	caps=${5-$(unit_key "$unit" CapabilityBoundingSet)}
	for c in $caps; do
		c=${c#CAP_}
		capset="$capset,+${c,,}"
	done
	zt_bg "$ns" "$name" nsenter --mount="/proc/$(pgrep -n -s "$units_ns" sleep)/ns/mnt" \
		chroot "$RO" setpriv --bounding-set="$capset" --no-new-privs env -i \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${env[@]}" "${argv[@]}"
}
export ZT_WORK

# The node's configuration as an operator writes it (docs/install.md): a
# local mesh file and the cacerts directory ztunnel-gen-cacerts made.
A=10.200.1.2 B=10.200.1.3
zt_test "setup: node 1 with pods a, b; proxy.env and mesh.yaml in the installed root"
setup() {
	zt_node_add 1 && zt_node_add 3 || return 1
	a=$(zt_pod_add 1 1 a) && b=$(zt_pod_add 1 2 b) && wp=$(zt_pod_add 3 1 wp) || return 1
	zt_echo_server "$b" 8080 || return 1
	# shellcheck disable=SC2016
	pkg_ns 'mkdir -p "$R/etc/ztunnel/mesh.d" && cp -a "$R/tmp/cacerts" "$R/etc/ztunnel/cacerts" &&
		printf "node1 node1-token-0123456789\n" >"$R/etc/ztunnel/node-tokens" &&
		chmod 600 "$R/etc/ztunnel/node-tokens" &&
		printf "NODE_NAME=node1\nLOCAL_XDS_PATH=/etc/ztunnel/mesh.yaml\nLOCAL_CA_DIR=/etc/ztunnel/cacerts\n" \
			>>"$R/etc/ztunnel/proxy.env" &&
		cat >"$R/etc/ztunnel/mesh.yaml" &&
		cp "$R/etc/ztunnel/mesh.yaml" "$R/etc/ztunnel/mesh.d/mesh.yaml" &&
		sed -e "s|^#LOCAL_XDS_PATH=|LOCAL_XDS_PATH=|" -e "s|^#LOCAL_CA_DIR=|LOCAL_CA_DIR=|" \
			"$R/usr/share/doc/ztunnel/examples/waypoint.env" >"$R/etc/ztunnel/waypoint-wp.env"' <<-Y
		workloads:
		- {uid: a, name: a, namespace: default, serviceAccount: sa-a, workloadIps: ["$A"], protocol: HBONE, node: node1}
		- {uid: b, name: b, namespace: default, serviceAccount: sa-b, workloadIps: ["$B"], protocol: HBONE, node: node1}
		- {uid: waypoint, name: waypoint, namespace: default, serviceAccount: waypoint, workloadIps: ["10.200.3.2"], node: node3}
	Y
}
if setup; then zt_pass; else zt_fail "setup failed"; fi

# enroll UID NETNS SA: the installed `ztunnel enroll`, with no environment:
# its default agent directory must be where the unit puts the agent's.
enroll() {
	units_exec ztunnel enroll --netns "$2" --uid "$1" --name "$1" --namespace default \
		--service-account "$3" >>"$ZT_WORK/enroll.log" 2>&1
}

zt_test "the units' view of the installed root is ready"
if units_ns_start; then zt_pass; else zt_fail "$(cat "$ZT_WORK/units-ns.log")"; fi

node=$(zt_node_ns 1)
zt_test "ztunnel-cni.service's command line, bounded as the unit says, serves ZDS in /run/ztunnel"
unit_run "$node" cni ztunnel-cni.service ""
cni_pid=$ZT_BG_PID
if mesh_wait_grep "$ZT_WORK/cni.log" "serving ZDS on /run/ztunnel/ztunnel.sock, control on /run/ztunnel/cni/agent.sock" 10; then
	zt_pass
else zt_fail "$(tail -n 5 "$ZT_WORK/cni.log" | tr '\n' ' ')"; fi

# capbnd PID COMMAND: the bounding set and no_new_privs of the process
# `/usr/bin/ztunnel COMMAND` in the session of the zt_bg process PID.
capbnd() {
	local pid
	pid=$(pgrep -n -f "^/usr/bin/ztunnel $2" -s "$1") || return 1
	awk '/^CapBnd:/ { print $2 } /^NoNewPrivs:/ { print "nnp=" $2 }' "/proc/$pid/status" | tr '\n' ' '
}
zt_test "the agent runs with CAP_SYS_ADMIN, NET_ADMIN, NET_RAW, SYS_PTRACE, CHOWN only"
# CHOWN 0, NET_ADMIN 12, NET_RAW 13, SYS_PTRACE 19, SYS_ADMIN 21.
zt_expect_eq "$(capbnd "$cni_pid" cni)" "0000000000283001 nnp=1 "

zt_test "ztunnel-proxy.service's command line gets the agent's snapshot"
unit_run "$node" proxy ztunnel-proxy.service ""
proxy_pid=$ZT_BG_PID
if mesh_wait_grep "$ZT_WORK/proxy.log" "snapshot received" 10; then zt_pass; else
	zt_fail "$(tail -n 5 "$ZT_WORK/proxy.log" | tr '\n' ' ')"
fi

zt_test "the proxy runs with CAP_SYS_ADMIN and NET_ADMIN only"
zt_expect_eq "$(capbnd "$proxy_pid" proxy)" "0000000000201000 nnp=1 "

zt_test "the installed ztunnel enroll (no environment) reaches the agent; a->b through the mesh"
if enroll a "$a" sa-a && enroll b "$b" sa-b; then
	r=$(zt_send "$a" "$B" 8080 via-package)
	line=""
	mesh_wait_grep "$ZT_WORK/proxy.log" "	access	.*dst.hbone_addr=$B:8080" 10 &&
		line=$(grep -P '\taccess\t' "$ZT_WORK/proxy.log" | grep -m1 "dst.hbone_addr=$B:8080")
	if [ "$r" = via-package ] && [ -n "$line" ]; then
		mesh_expect_fields "$line" src.identity="$(mesh_id sa-a)" dst.identity="$(mesh_id sa-b)"
	else zt_fail "reply '$r', access line '$line'"; fi
else zt_fail "enroll: $(tail -n 3 "$ZT_WORK/enroll.log" | tr '\n' ' ')"; fi

# Control: the bounding set is what limits the agent. Without CAP_NET_ADMIN
# (the rest of the unit's set kept) an enrollment fails: the helpers cannot
# write the pod's rules. The real agent is stopped for it, and comes back.
zt_test "control: the agent without CAP_NET_ADMIN cannot enroll a pod"
zt_bg_stop "$cni_pid"
c=$(zt_pod_add 1 3 c)
unit_run "$node" cni-nonetadmin ztunnel-cni.service "" "CAP_SYS_ADMIN CAP_NET_RAW CAP_SYS_PTRACE CAP_CHOWN"
weak=$ZT_BG_PID
if mesh_wait_grep "$ZT_WORK/cni-nonetadmin.log" "serving ZDS" 10 && ! enroll c "$c" sa-c &&
	grep -q "installing redirection rules in .*-p1-3 failed.*Permission denied" "$ZT_WORK/enroll.log"; then
	zt_pass
else zt_fail "enroll log: $(tail -n 3 "$ZT_WORK/enroll.log" | tr '\n' ' ')"; fi
zt_bg_stop "$weak"

# CAP_SYS_PTRACE: `--netns /proc/PID/ns/net` of a process holding
# capabilities the agent lacks (here every one: a root shell's) is opened
# only with it (ptrace access mode check).
d=$(zt_pod_add 1 4 d)
zt_bg "$d" holder-d sleep infinity
dpid=$(pgrep -n -s "$ZT_BG_PID" sleep)
zt_test "control: the agent without CAP_SYS_PTRACE cannot open /proc/PID/ns/net of a root process"
unit_run "$node" cni-noptrace ztunnel-cni.service "" "CAP_SYS_ADMIN CAP_NET_ADMIN CAP_NET_RAW CAP_CHOWN"
weak=$ZT_BG_PID
if mesh_wait_grep "$ZT_WORK/cni-noptrace.log" "serving ZDS" 10 &&
	! enroll d "/proc/$dpid/ns/net" sa-d &&
	grep -q "/proc/$dpid/ns/net.*[Pp]ermission denied" "$ZT_WORK/enroll.log"; then
	zt_pass
else zt_fail "enroll log: $(tail -n 2 "$ZT_WORK/enroll.log" | tr '\n' ' ')"; fi
zt_bg_stop "$weak"

zt_test "the agent with its unit's set back enrolls both (c by name, d by /proc/PID/ns/net)"
unit_run "$node" cni-2 ztunnel-cni.service ""
if mesh_wait_grep "$ZT_WORK/cni-2.log" "serving ZDS" 10 && enroll c "$c" sa-c &&
	enroll d "/proc/$dpid/ns/net" sa-d; then zt_pass; else
	zt_fail "enroll log: $(tail -n 3 "$ZT_WORK/enroll.log" | tr '\n' ' ')"
fi

zt_test "ztunnel-control.service's command line (control.env defaults) listens on 15012"
unit_run "$(zt_node_ns 3)" control ztunnel-control.service ""
control_pid=$ZT_BG_PID
if mesh_wait_grep "$ZT_WORK/control.log" "listening on" 10 &&
	zt_wait_port "$(zt_node_ns 3)" 127.0.0.1 15012 10; then
	zt_pass
else zt_fail "$(tail -n 5 "$ZT_WORK/control.log" | tr '\n' ' ')"; fi

zt_test "control runs with no capability at all"
zt_expect_eq "$(capbnd "$control_pid" control)" "0000000000000000 nnp=1 "

zt_test "ztunnel-waypoint@wp.service's command line (the example env) listens on 15008 in netns wp"
unit_run "$wp" waypoint ztunnel-waypoint@.service wp
waypoint_pid=$ZT_BG_PID
if mesh_wait_grep "$ZT_WORK/waypoint.log" "added: listening on 15008" 10; then zt_pass; else
	zt_fail "$(tail -n 5 "$ZT_WORK/waypoint.log" | tr '\n' ' ')"
fi

zt_test "the waypoint runs with CAP_SYS_ADMIN and NET_ADMIN only"
zt_expect_eq "$(capbnd "$waypoint_pid" waypoint)" "0000000000201000 nnp=1 "

stop_all() {
	local pid _
	while read -r pid _; do [ -n "$pid" ] && zt_bg_stop "$pid"; done <"$ZT_WORK/pids"
	: >"$ZT_WORK/pids"
}
zt_test "every unit's process still running at the end"
dead=""
while read -r pid name; do
	case $name in cni | cni-nonetadmin | cni-noptrace | echo-* | holder-*) continue ;; esac
	kill -0 "$pid" 2>/dev/null || dead="$dead $name"
done <"$ZT_WORK/pids"
if [ -z "$dead" ]; then zt_pass; else zt_fail "exited:$dead"; fi
stop_all

# ---- under systemd ----
# The installed root booted by systemd in a container (systemd-nspawn, its
# own network, the overlay mounted and a tmpfs /run for nspawn's own files
# only in a private mount namespace): the units enabled as docs/install.md
# says run with every hardening option (seccomp, RestrictNamespaces=, ...,
# which unit_run cannot apply), carry a pod's traffic, keep the proxy
# through an agent restart and are restarted on failure. The container
# boots zt-check.target (basic.target and our units), not the machine's
# multi-user.target.
zt_test "under systemd: the installed root boots with the enabled units active"
# shellcheck disable=SC2016
pkg_ns 'cat >"$R/etc/systemd/system/zt-check.target" <<-T &&
	[Unit]
	Description=ztunnel package check
	Requires=basic.target
	After=basic.target
	Wants=ztunnel-cni.service ztunnel-proxy.service ztunnel-control.service
	AllowIsolate=yes
	T
	: >"$R/etc/machine-id" &&
	chroot "$R" systemctl enable ztunnel-cni ztunnel-proxy ztunnel-control 2>/dev/null &&
	sed -i "s/^LOCAL_XDS_PATH=.*/&\nTERMINATION_GRACE_PERIOD_SECONDS=1/" "$R/etc/ztunnel/proxy.env"'
# Started as zt_bg would, but from this network namespace: ip netns exec
# would hide the cgroup file systems under its own /sys.
# shellcheck disable=SC2016
setsid unshare -m --propagation private bash -c '
	mount -t overlay overlay -o "lowerdir=/,upperdir=$PKG/upper,workdir=$PKG/work" "$R" &&
	mount -t tmpfs tmpfs /run &&
	exec systemd-nspawn -D "$R" --boot --register=no --keep-unit --private-network --system-call-filter=bpf \
		--link-journal=no --console=pipe -- systemd.unit=zt-check.target' \
	>"$ZT_WORK/nspawn.log" 2>&1 </dev/null &
nspawn=$!
echo "$nspawn nspawn" >>"$ZT_WORK/pids"
# On an early exit the container goes with its PID 1 (nspawn alone may wait
# for it): the whole PID namespace is killed.
box_kill() { pkill -KILL -P "$nspawn" 2>/dev/null || true; }
trap 'box_kill; zt_cleanup' EXIT
trap 'box_kill; zt_cleanup; trap - EXIT; exit 130' INT
trap 'box_kill; zt_cleanup; trap - EXIT; exit 143' TERM
# in_box CMD...: CMD inside the container (all its namespaces).
in_box() { nsenter -t "$(pgrep -n -P "$nspawn" -x systemd)" -a "$@"; }
box_up() {
	in_box systemctl is-active -q ztunnel-cni ztunnel-proxy ztunnel-control 2>/dev/null &&
		in_box journalctl -q -u ztunnel-proxy | grep -q "snapshot received"
}
if ! command -v systemd-nspawn >/dev/null; then
	zt_fail "no systemd-nspawn (scripts/deps.sh installs systemd-container)"
elif mesh_eventually box_up; then zt_pass; else
	zt_fail "$(tail -n 5 "$ZT_WORK/nspawn.log" | tr '\n' ' ') $(in_box systemctl --failed --no-legend 2>&1 | tr '\n' ' ')"
fi

# What systemd applied, read from the running proxy: CapBnd and NoNewPrivs
# as in the unit, a seccomp filter (mode 2), and /etc read-only in its
# mount namespace (ProtectSystem=strict) while the container's is not.
zt_test "under systemd: the proxy has the unit's bounding set, no_new_privs, a seccomp filter, a read-only /etc"
pp=$(in_box systemctl show -P MainPID ztunnel-proxy)
# shellcheck disable=SC2016
got=$(in_box awk '/^(CapBnd|NoNewPrivs|Seccomp):/ { print $2 }' "/proc/$pp/status" | tr '\n' ' ')
# shellcheck disable=SC2016
ro=$(in_box nsenter -t "$pp" -m sh -c 'touch /etc/ztunnel/probe 2>&1' | grep -c 'Read-only file system')
# shellcheck disable=SC2016
rw=$(in_box sh -c 'touch /etc/ztunnel/probe && rm /etc/ztunnel/probe && echo writable')
zt_expect_eq "$got/$ro/$rw" "0000000000201000 1 2 /1/writable"

zt_test "under systemd: a pod enrolled with the installed ztunnel enroll is meshed"
# Two pods as lib.sh makes them, inside the container.
# shellcheck disable=SC2016
in_box bash -c '
	ip link set lo up && sysctl -qw net.ipv4.ip_forward=1 || exit 1
	for p in a:10.200.1.2 b:10.200.1.3 wp:10.200.3.2; do
		n=${p%%:*} ip=${p#*:}
		ip netns add "$n" && ip -n "$n" link set lo up &&
			ip link add "v$n" type veth peer name eth0 netns "$n" &&
			ip -n "$n" addr add "$ip/32" dev eth0 && ip -n "$n" link set eth0 up &&
			ip -n "$n" route add 169.254.1.1 dev eth0 scope link &&
			ip -n "$n" route add default via 169.254.1.1 dev eth0 onlink &&
			ip addr add 169.254.1.1/32 dev "v$n" scope link &&
			sysctl -qw "net.ipv4.conf.v$n.proxy_arp=1" && ip link set "v$n" up &&
			ip route replace "$ip/32" dev "v$n" scope link || exit 1
	done
	ztunnel enroll --netns a --uid a --name a --namespace default --service-account sa-a &&
		ztunnel enroll --netns b --uid b --name b --namespace default --service-account sa-b' \
	>>"$ZT_WORK/enroll.log" 2>&1
# The echo server runs as a unit of the container's systemd: a process
# nsenter'ed in from outside would be left a zombie its shutdown waits for.
in_box systemd-run -q --unit=echo-b ip netns exec b socat TCP-LISTEN:8080,fork,reuseaddr EXEC:cat
box_send() { printf '%s' "$1" | in_box ip netns exec a socat -t 3 - TCP:10.200.1.3:8080,connect-timeout=3 2>/dev/null; }
box_access() { in_box journalctl -q -u ztunnel-proxy | grep -c "access.*src.identity=$(mesh_id sa-a).*dst.hbone_addr=10.200.1.3:8080.*direction=outbound"; }
if mesh_eventually test "$(box_send under-systemd)" = under-systemd && [ "$(box_access)" -ge 1 ]; then
	zt_pass
else zt_fail "enroll: $(tail -n 2 "$ZT_WORK/enroll.log" | tr '\n' ' ') access lines $(box_access)"; fi

zt_test "under systemd: restarting the agent keeps the proxy, the agent restores both pods"
p0=$(in_box systemctl show -P MainPID ztunnel-proxy)
a0=$(in_box systemctl show -P MainPID ztunnel-cni)
in_box systemctl restart ztunnel-cni
p1=$(in_box systemctl show -P MainPID ztunnel-proxy)
a1=$(in_box systemctl show -P MainPID ztunnel-cni)
agent_restored() { in_box journalctl -q -u ztunnel-cni "_PID=$a1" | grep -q "2 pods enrolled"; }
if [ "$p0" = "$p1" ] && [ "$a0" != "$a1" ] && [ "$a1" != 0 ] && mesh_eventually agent_restored &&
	[ "$(box_send after-agent-restart)" = after-agent-restart ]; then
	zt_pass
else zt_fail "proxy $p0 -> $p1, agent $a0 -> $a1"; fi

zt_test "under systemd: systemctl reload upgrades the proxy in place: a new MainPID, the old one exits, no restart"
p0=$(in_box systemctl show -P MainPID ztunnel-proxy)
in_box systemctl reload ztunnel-proxy
reloaded() {
	local p
	p=$(in_box systemctl show -P MainPID ztunnel-proxy)
	[ "$p" != "$p0" ] && [ "$p" != 0 ] && ! in_box kill -0 "$p0" 2>/dev/null &&
		in_box systemctl is-active -q ztunnel-proxy
}
if mesh_eventually reloaded && [ "$(in_box systemctl show -P NRestarts ztunnel-proxy)" = 0 ] &&
	mesh_eventually test "$(box_send after-reload)" = after-reload &&
	in_box journalctl -q -u ztunnel-proxy | grep -q "serves every pod: the previous proxy (pid $p0) drains now"; then
	zt_pass
else
	zt_fail "MainPID $p0 -> $(in_box systemctl show -P MainPID ztunnel-proxy), NRestarts $(in_box systemctl show -P NRestarts ztunnel-proxy): $(in_box journalctl -q -u ztunnel-proxy | grep -E 'upgrade|drain' | tail -n 4 | tr '\n' ' ')"
fi

zt_test "under systemd: installing the package again (an upgrade's postinst) reloads the proxy, no restart"
p0=$(in_box systemctl show -P MainPID ztunnel-proxy)
in_box sh -c 'cat >/root/ztunnel.deb' <"$deb"
# This machine's policy-rc.d (if any) forbids starting services; in the box
# (its throw-away overlay) it is moved aside for the reinstall, as on a node.
# shellcheck disable=SC2016
in_box sh -c 'p=/usr/sbin/policy-rc.d; if [ -e $p ]; then mv $p $p.off; fi
	dpkg -i /root/ztunnel.deb; rc=$?; if [ -e $p.off ]; then mv $p.off $p; fi; exit $rc' \
	>"$ZT_WORK/reinstall.log" 2>&1
if mesh_eventually reloaded && [ "$(in_box systemctl show -P NRestarts ztunnel-proxy)" = 0 ] &&
	mesh_eventually test "$(box_send after-reinstall)" = after-reinstall; then
	zt_pass
else
	zt_fail "MainPID $p0 -> $(in_box systemctl show -P MainPID ztunnel-proxy): $(tail -n 3 "$ZT_WORK/reinstall.log" | tr '\n' ' ')"
fi

zt_test "under systemd: a killed proxy is restarted (Restart=on-failure) and carries traffic again"
in_box systemctl kill -s KILL ztunnel-proxy
restarted() { [ "$(in_box systemctl show -P NRestarts ztunnel-proxy)" = 1 ] && in_box systemctl is-active -q ztunnel-proxy; }
if mesh_eventually restarted && mesh_eventually test "$(box_send after-kill)" = after-kill; then zt_pass; else
	zt_fail "NRestarts $(in_box systemctl show -P NRestarts ztunnel-proxy), $(in_box systemctl is-active ztunnel-proxy)"
fi

# The eBPF backend under the agent unit's sandbox (its syscall filter,
# ProtectSystem=strict, its capabilities). The container has no bpf
# filesystem on /sys/fs/bpf, which systemd mounts at boot on a host: the
# agent, which may not mount it under its filter, says so (it was killed by
# seccomp on mount(2) before). The container's /sys has no /sys/fs/bpf to
# mount one on, so one is mounted on /run/ztunnel/bpf (writable to the
# unit) and ZTUNNEL_BPF_DIR points there: the restarted agent moves both
# pods over, their nat rules go, traffic flows.
zt_test "under systemd: ZTUNNEL_REDIRECT=ebpf without a bpf filesystem on /sys/fs/bpf: the agent says to mount it"
in_box sh -c 'echo ZTUNNEL_REDIRECT=ebpf >>/etc/ztunnel/cni.env && systemctl restart ztunnel-cni'
said_mount() { in_box journalctl -q -u ztunnel-cni | grep -q "keeps it from mounting one: mount it on the host"; }
if mesh_eventually said_mount && ! in_box journalctl -q -u ztunnel-cni | grep -q "status=31/SYS"; then zt_pass; else
	zt_fail "$(in_box journalctl -q -u ztunnel-cni | tail -n 4 | tr '\n' ' ')"
fi

# The connect programs act on the container's cgroup tree: the client runs
# as a unit of the container's systemd (nsenter joins no cgroup).
box_send_in_cgroup() {
	printf '%s' "$1" | in_box systemd-run -q --wait --pipe ip netns exec a \
		socat -t 3 - TCP:10.200.1.3:8080,connect-timeout=3 2>/dev/null
}
# Sent and proxied: without redirection the pods would reach each other
# directly, so each success must add an outbound access line.
ebpf_sends() {
	local before
	before=$(box_access)
	[ "$(box_send_in_cgroup on-ebpf)" = on-ebpf ] && mesh_eventually more_access "$before"
}
more_access() { [ "$(box_access)" -gt "$1" ]; }
zt_test "under systemd: with a bpf filesystem at ZTUNNEL_BPF_DIR, the restarted agent moves the pods to eBPF, traffic flows"
in_box sh -c 'mkdir -p /run/ztunnel/bpf && mount -t bpf bpf /run/ztunnel/bpf &&
	echo ZTUNNEL_BPF_DIR=/run/ztunnel/bpf/pins >>/etc/ztunnel/cni.env && systemctl restart ztunnel-cni' \
	>"$ZT_WORK/bpffs.log" 2>&1
a1=$(in_box systemctl show -P MainPID ztunnel-cni)
on_ebpf() { in_box journalctl -q -u ztunnel-cni "_PID=$a1" | grep -q "2 pods enrolled.*rules by ebpf"; }
nat=-
if mesh_eventually on_ebpf && nat=$(in_box ip netns exec a iptables-save -t nat | grep -c ISTIO || true) &&
	[ "$nat" = 0 ] && mesh_eventually ebpf_sends; then
	zt_pass
else
	zt_fail "nat lines $nat; mount: $(cat "$ZT_WORK/bpffs.log"); agent $a1 $(in_box systemctl is-active ztunnel-cni): $(in_box journalctl -q -u ztunnel-cni | grep -E 'warn|error' | tail -n 4 | tr '\n' ' '); proxy: $(in_box journalctl -q -u ztunnel-proxy | tail -n 4 | tr '\n' ' '); send: $(box_send_in_cgroup x 2>&1)"
fi
# Back to the default, as the checks below expect.
in_box sh -c 'sed -i -e /^ZTUNNEL_REDIRECT=/d -e /^ZTUNNEL_BPF_DIR=/d /etc/ztunnel/cni.env &&
	systemctl restart ztunnel-cni'
a2=$(in_box systemctl show -P MainPID ztunnel-cni)
on_ipt() { in_box journalctl -q -u ztunnel-cni "_PID=$a2" | grep -q "2 pods enrolled.*rules by iptables"; }
mesh_eventually on_ipt || zt_log "the agent did not move back to iptables"

zt_test "under systemd: ztunnel-waypoint@wp listens on 15008 in netns wp; control listens on 15012"
in_box systemctl start ztunnel-waypoint@wp
wp_up() { in_box ip netns exec wp ss -Hltn 'sport = :15008' | grep -q LISTEN; }
if mesh_eventually wp_up && in_box ss -Hltn 'sport = :15012' | grep -q LISTEN; then zt_pass; else
	zt_fail "waypoint $(in_box systemctl is-active ztunnel-waypoint@wp): $(in_box journalctl -q -u ztunnel-waypoint@wp | tail -n 3 | tr '\n' ' ')"
fi

# ZTUNNEL_TRUSTED_UID (65534 here) in cni.env: the agent's directory must
# let that uid reach agent.sock (0711) under the unit's UMask=0077, and that
# uid's ztunnel enroll is accepted. The directory is made afresh: the agent
# does not change the mode of one it finds.
zt_test "under systemd: with ZTUNNEL_TRUSTED_UID, /run/ztunnel/cni is 0711, agent.sock that uid's, its enroll accepted"
# shellcheck disable=SC2016
in_box bash -c 'systemctl stop ztunnel-cni && rm -rf /run/ztunnel/cni &&
	echo ZTUNNEL_TRUSTED_UID=65534 >>/etc/ztunnel/cni.env && systemctl start ztunnel-cni && ip netns add e'
agent_sock() { in_box test -S /run/ztunnel/cni/agent.sock; }
mesh_eventually agent_sock
modes=$(in_box stat -c '%a %u' /run/ztunnel/cni /run/ztunnel/cni/agent.sock | tr '\n' ' ')
if [ "$modes" = "711 0 660 65534 " ] &&
	in_box setpriv --reuid=65534 --regid=65534 --clear-groups ztunnel enroll --netns e --uid e \
		--name e --namespace default --service-account sa-e >>"$ZT_WORK/enroll.log" 2>&1; then
	zt_pass
else zt_fail "modes '$modes', enroll: $(tail -n 1 "$ZT_WORK/enroll.log")"; fi

zt_test "under systemd: no unit failed, no seccomp kill, powers off"
failed=$(in_box systemctl list-units --failed --no-legend 'ztunnel*' 2>&1)
in_box systemctl poweroff --no-block
# Until the container has stopped its units (the proxy and the waypoint
# drain first) and nspawn exits.
wait "$nspawn"
rc=$?
if [ -z "$failed" ] && [ "$rc" = 0 ]; then zt_pass; else
	zt_fail "failed units: '$failed'; nspawn exit $rc: $(tail -n 3 "$ZT_WORK/nspawn.log" | tr '\n' ' ')"
fi
stop_all

# ---- remove and purge ----
zt_test "dpkg -r: program and units gone, the conffiles kept (with the operator's edits)"
# shellcheck disable=SC2016
pkg_ns 'dpkg --root="$R" -r ztunnel' >"$ZT_WORK/remove.log" 2>&1
# shellcheck disable=SC2016
got=$(pkg_ns 'cd "$R"; for f in usr/bin/ztunnel lib/systemd/system/ztunnel-cni.service \
	etc/ztunnel/cni.env etc/ztunnel/control.env etc/ztunnel/proxy.env; do
		[ -e "$f" ] && echo "$f"; done; grep -c "^NODE_NAME=node1" etc/ztunnel/proxy.env;
	dpkg --root="$R" -s ztunnel | grep ^Status' 2>&1 | tr '\n' ' ')
zt_expect_eq "$got" "etc/ztunnel/cni.env etc/ztunnel/control.env etc/ztunnel/proxy.env 1 Status: deinstall ok config-files "

zt_test "after dpkg -r, verify no longer finds ztunnel-cni.service"
# shellcheck disable=SC2016
if ! pkg_ns 'cd "$R" && systemd-analyze verify --root="$R" ztunnel-cni.service' >/dev/null 2>&1; then
	zt_pass
else zt_fail "still verifies"; fi

zt_test "dpkg -P: the conffiles gone, the operator's own files in /etc/ztunnel kept"
# shellcheck disable=SC2016
pkg_ns 'dpkg --root="$R" -P ztunnel' >"$ZT_WORK/purge.log" 2>&1
# shellcheck disable=SC2016
got=$(pkg_ns 'cd "$R"; for f in etc/ztunnel/cni.env etc/ztunnel/control.env etc/ztunnel/proxy.env \
	etc/ztunnel/mesh.yaml etc/ztunnel/cacerts/ca-key.pem; do [ -e "$f" ] && echo "$f"; done
	dpkg --root="$R" -s ztunnel >/dev/null 2>&1 || echo not-installed' 2>&1 | tr '\n' ' ')
zt_expect_eq "$got" "etc/ztunnel/mesh.yaml etc/ztunnel/cacerts/ca-key.pem not-installed "

zt_summary
