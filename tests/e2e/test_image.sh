#!/usr/bin/env bash
# The node proxy's OCI image (`make image`, scripts/image.sh) and deploy/:
# the manifests validate against the Kubernetes schemas (tests/deploy); the
# image built from the release binary has the chart's entrypoint, args, user
# and labels, one layer holding only the binary, its libraries and loader
# (nothing else executable, no shell); and its binary, run the way
# deploy/ztunnel-daemonset.yaml runs it, serves a mesh: chrooted into the
# unpacked layer (only the image's own libraries), read-only root, the
# DaemonSet's args and environment (read from the manifest), its mounts laid
# out (istiod's root, the token, the ZDS socket directory of a node agent
# running outside, /tmp), only NET_ADMIN, SYS_ADMIN and NET_RAW, uid 0 gid
# 1337, in node 1's network namespace. `ztunnel control` on node 3 stands in
# for istiod at istiod.istio-system.svc:15012 (the chart's address; found
# through the temp root's /etc/hosts). Ready on 15021, then one enrolled pod
# on node 1 talks to a pod on node 2 (our usual proxy) and back, through it.
#
# ZT_IMAGE_BIN: the binary to pack (default build/ztunnel, the release build
# `make image` packs and `make test` builds before the suite). Needs root,
# umoci, skopeo, capsh (scripts/deps.sh) and npm for tests/deploy.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=mesh.sh
. "$here/mesh.sh"
zt_trap_cleanup

IMG_BIN=${ZT_IMAGE_BIN:-$mesh_repo/build/ztunnel}
DS=$mesh_repo/deploy/ztunnel-daemonset.yaml
VALUES=$mesh_repo/deploy/istio-values.yaml
IMG=$ZT_WORK/img
ROOT=$ZT_WORK/root          # the unpacked layer, the proxy's root
K8S=$ZT_WORK/k8s            # what the kubelet would mount
HOSTRUN=$ZT_WORK/host/var/run/ztunnel # the hostPath /var/run/ztunnel
A=10.200.1.2 C=10.200.2.2 CP=$(zt_node_ip 3) NODE1_IP=$(zt_node_ip 1)
TAG=e2e SOURCE=https://example.invalid/ztunnel-c

# ---- deploy/ against the Kubernetes schemas ----
zt_test "deploy/: DaemonSet, ServiceAccount and the chart values validate against the Kubernetes schemas"
if "$mesh_repo/tests/conformance/setup.sh" "$mesh_repo/tests/deploy" >"$ZT_WORK/npm.log" 2>&1 &&
	node "$mesh_repo/tests/deploy/validate.js" "$DS" --values "$VALUES" >"$ZT_WORK/validate.log" 2>&1; then
	zt_pass
else
	zt_fail "$(cat "$ZT_WORK/npm.log" "$ZT_WORK/validate.log" | tail -5)"
fi

zt_test "deploy/: the validator refuses a DaemonSet with a wrong type and a missing field (control)"
sed -e 's/runAsGroup: 1337/runAsGroup: "1337"/' -e 's|mountPath: /tmp|mountpath: /tmp|' "$DS" >"$ZT_WORK/bad-ds.yaml"
if ! out=$(node "$mesh_repo/tests/deploy/validate.js" "$ZT_WORK/bad-ds.yaml" 2>&1) && grep -q 'runAsGroup must be integer' <<<"$out" && grep -q "required property mountPath" <<<"$out"; then
	zt_pass
else
	zt_fail "$out"
fi

# ---- the image ----
zt_test "scripts/image.sh builds the OCI layout and the docker-archive from $IMG_BIN"
if [ -x "$IMG_BIN" ] && IMAGE_TAG=$TAG IMAGE_SOURCE=$SOURCE "$mesh_repo/scripts/image.sh" "$IMG_BIN" "$IMG" \
	>"$ZT_WORK/image.log" 2>&1; then
	zt_pass
else
	zt_fail "$( [ -x "$IMG_BIN" ] || echo "no $IMG_BIN (make all)"; tail -5 "$ZT_WORK/image.log" 2>/dev/null)"
	mesh_finish
	exit 1
fi

blob() { echo "$IMG/oci/blobs/${1/://}"; }
manifest=$(jq -r --arg t "$TAG" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
	"$IMG/oci/index.json")
config=$(jq -r .config.digest "$(blob "$manifest")" 2>/dev/null)
cfg() { jq -c "$1" "$(blob "$config")"; }

zt_test "image config: entrypoint, default args as the chart's, user 0:1337, amd64/linux"
zt_expect_eq "$(cfg '[.config.Entrypoint, .config.Cmd, .config.User, .architecture, .os]')" \
	'[["/usr/local/bin/ztunnel"],["proxy","ztunnel"],"0:1337","amd64","linux"]'

zt_test "image config: OCI labels title, version, revision, source"
zt_expect_eq "$(cfg '.config.Labels | [."org.opencontainers.image.title", ."org.opencontainers.image.version",
	."org.opencontainers.image.revision", ."org.opencontainers.image.source"]')" \
	"[\"ztunnel-c\",\"$TAG\",\"$(git -C "$mesh_repo" rev-parse HEAD)\",\"$SOURCE\"]"

zt_test "docker-archive: the same image (config digest) under ztunnel-c:$TAG, read by containers/image (skopeo, as podman load)"
zt_expect_eq "$(skopeo inspect --raw "docker-archive:$IMG/ztunnel-image.tar" 2>&1 | jq -r .config.digest) $(tar -xOf \
	"$IMG/ztunnel-image.tar" manifest.json | jq -c '.[0].RepoTags')" "$config [\"docker.io/library/ztunnel-c:$TAG\"]"

zt_test "image: built again from the same binary, the same manifest digest (reproducible layer and config)"
IMAGE_TAG=$TAG IMAGE_SOURCE=$SOURCE "$mesh_repo/scripts/image.sh" "$IMG_BIN" "$ZT_WORK/img2" >/dev/null 2>&1
zt_expect_eq "$(jq -r '.manifests[0].digest' "$ZT_WORK/img2/oci/index.json" 2>&1)" "$manifest"
rm -rf "$ZT_WORK/img2"

zt_test "image: one layer, unpacked into the temp root"
layers=$(jq -r '.layers[].digest' "$(blob "$manifest")")
mkdir -p "$ROOT"
if [ "$(wc -l <<<"$layers")" = 1 ] && tar -xzf "$(blob "$layers")" -C "$ROOT"; then zt_pass; else
	zt_fail "layers: $layers"
fi

# rootfs_extras ROOT: every path of ROOT that is not the binary, the
# loader, a shared library of the loader's directory, /etc/nsswitch.conf or
# a directory leading to them; and every executable besides the binary and
# the loader. Empty for a clean image.
rootfs_extras() {
	(cd "$1" && find . -mindepth 1) | sed 's|^\.||' | grep -vxE \
		'/usr|/usr/local|/usr/local/bin|/usr/local/bin/ztunnel|/lib64|/lib64/ld-linux-x86-64\.so\.2|/lib|/lib/x86_64-linux-gnu|/lib/x86_64-linux-gnu/lib[^/]+\.so(\.[0-9]+)*|/etc|/etc/nsswitch\.conf'
	(cd "$1" && find . -mindepth 1 ! -type d ! -type f) | sed 's|^\.|not a regular file: |'
	(cd "$1" && find . -type f -perm /111) | sed 's|^\.||' |
		grep -vxE '/usr/local/bin/ztunnel|/lib64/ld-linux-x86-64\.so\.2' | sed 's/^/executable: /'
}
zt_test "rootfs: only the binary, its libraries, the loader and nsswitch.conf; only the binary and loader executable"
extras=$(rootfs_extras "$ROOT")
if [ -z "$extras" ] && [ -x "$ROOT/usr/local/bin/ztunnel" ] && [ -x "$ROOT/lib64/ld-linux-x86-64.so.2" ]; then
	zt_pass
else
	zt_fail "$(echo "$extras" | head -5 | tr '\n' ' ')"
fi

zt_test "rootfs check flags a shell added to a copy of the root (control)"
cp -a "$ROOT" "$ZT_WORK/root-sh" && mkdir -p "$ZT_WORK/root-sh/bin" && cp /bin/dash "$ZT_WORK/root-sh/bin/sh"
zt_expect_eq "$(rootfs_extras "$ZT_WORK/root-sh" | tr '\n' ' ')" "/bin /bin/sh executable: /bin/sh "
rm -rf "$ZT_WORK/root-sh"

zt_test "rootfs: the loader resolves every library inside the image, and every library there is needed"
resolved=$(chroot "$ROOT" /lib64/ld-linux-x86-64.so.2 --list /usr/local/bin/ztunnel 2>&1)
want=$(awk '$2 == "=>" { print $3 }' <<<"$resolved" | sort -u)
have=$(cd "$ROOT" && find lib/x86_64-linux-gnu -type f | sed 's|^|/|' | sort)
if ! grep -q 'not found' <<<"$resolved" && [ -n "$want" ] && [ "$want" = "$have" ]; then zt_pass; else
	zt_fail "resolved: $(tr '\n' ' ' <<<"$resolved"); in image: $(tr '\n' ' ' <<<"$have")"
fi

zt_test "chroot into the root: the binary runs (control), /bin/sh does not exist"
ver=$(chroot "$ROOT" /usr/local/bin/ztunnel version 2>&1 | head -1)
chroot "$ROOT" /bin/sh -c true >/dev/null 2>&1
rc=$?
case "$ver:$rc" in
"ztunnel-c "*:127) zt_pass ;;
*) zt_fail "version: '$ver', /bin/sh exit $rc" ;;
esac

# ---- the DaemonSet, read from the manifest ----
# Prints the container's args, environment (fieldRefs given this test's pod
# and node), mount paths, capabilities, user and probe, one per line.
ds_facts() {
	python3 - "$DS" "$NODE1_IP" "$(nproc)" <<-'PY'
		import sys, yaml
		path, ip, cpus = sys.argv[1:]
		ds = [d for d in yaml.safe_load_all(open(path)) if d and d.get("kind") == "DaemonSet"][0]
		spec = ds["spec"]["template"]["spec"]
		c = spec["containers"][0]
		field = {"metadata.name": "ztunnel-e2e1", "metadata.namespace": ds["metadata"]["namespace"],
		         "spec.nodeName": "node1", "status.podIP": ip,
		         "spec.serviceAccountName": spec["serviceAccountName"]}
		# resourceFieldRef with divisor 1 rounds up; no limit = the node's CPUs.
		res = {"limits.cpu": cpus, "requests.cpu": "1"}
		print("args", " ".join(c["args"]))
		for e in c["env"]:
		    v = e.get("value")
		    if v is None:
		        f = e["valueFrom"]
		        v = field[f["fieldRef"]["fieldPath"]] if "fieldRef" in f else res[f["resourceFieldRef"]["resource"]]
		    print("env", "%s=%s" % (e["name"], v))
		for m in c["volumeMounts"]:
		    print("mount", m["mountPath"])
		sc = c["securityContext"]
		print("caps", ",".join(sc["capabilities"]["add"]), "drop", ",".join(sc["capabilities"]["drop"]))
		print("user", sc["runAsUser"], sc["runAsGroup"], "ro", sc["readOnlyRootFilesystem"],
		      "hostNetwork", spec.get("hostNetwork", False))
		p = c["readinessProbe"]["httpGet"]
		print("probe", p["port"], p["path"])
	PY
}
facts=$(ds_facts 2>&1)
fact() { sed -n "s/^$1 //p" <<<"$facts"; }

zt_test "DaemonSet: args, mounts, capabilities, user, read-only root, pod network and probe as Istio's chart"
zt_expect_eq "$(fact args)|$(fact mount | sort | tr '\n' ' ')|$(fact caps)|$(fact user)|$(fact probe)" \
	"proxy ztunnel|/tmp /var/run/secrets/istio /var/run/secrets/tokens /var/run/ztunnel |NET_ADMIN,SYS_ADMIN,NET_RAW drop ALL|0 1337 ro True hostNetwork False|15021 /healthz/ready"

# ---- the mesh: control plane, node 2 as usual, node 1 the image ----
wl() { # wl UID IP SA NODE
	echo "- {uid: $1, name: $1, namespace: default, serviceAccount: $3, workloadIps: [\"$2\"], protocol: HBONE, node: $4}"
}
zt_test "setup: control plane (istiod stand-in) on node 3, node 2's proxy, node 1's agent outside the image"
setup() {
	zt_node_add 1 && zt_node_add 2 && zt_node_add 3 || return 1
	a=$(zt_pod_add 1 1 a) && c=$(zt_pod_add 2 1 c) || return 1
	mesh_ca || return 1
	mkdir -p "$ZT_WORK/config" "$HOSTRUN"
	printf 'workloads:\n%s\n%s\n' "$(wl a $A sa-a node1)" "$(wl c $C sa-c node2)" >"$ZT_WORK/config/workloads.yaml"
	mesh_control_start "$ZT_WORK/config" || return 1
	mesh_xds_node_start 2 || return 1
	# istio-cni's place: the ZDS socket in the hostPath the chart mounts.
	mesh_cni_start 1 INPOD_UDS="$HOSTRUN/ztunnel.sock"
}
if setup; then zt_pass; else
	zt_fail "setup failed"
	mesh_finish
	exit 1
fi

# What the kubelet provides: the configMap istio-ca-root-cert, the projected
# token (here node 1's token for our control plane), /etc/hosts (naming
# istiod as cluster DNS would), resolv.conf (nothing listens: no query
# leaves the namespaces), and the mount points in the root.
mkdir -p "$K8S/istiod-ca" "$K8S/tokens"
cp "$MESH_CA/root-cert.pem" "$K8S/istiod-ca/root-cert.pem"
cp "$ZT_WORK/token1" "$K8S/tokens/istio-token"
printf '127.0.0.1 localhost\n%s ztunnel-e2e1\n%s istiod.istio-system.svc\n' "$NODE1_IP" "$CP" >"$K8S/hosts"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$K8S/resolv.conf"
echo ztunnel-e2e1 >"$K8S/hostname"
for d in proc sys dev tmp; do mkdir -p "$ROOT/$d"; done
for m in $(fact mount); do mkdir -p "$ROOT$m"; done
for f in dev/null dev/zero dev/full dev/random dev/urandom etc/hosts etc/resolv.conf etc/hostname; do
	touch "$ROOT/$f"
done
# Every capability but the DaemonSet's leaves the bounding set, so uid 0
# execs the proxy with exactly those (drop ALL, add ...).
keep=$(fact caps | cut -d' ' -f1 | tr '[:upper:]' '[:lower:]' | sed 's/[^,]*/cap_&/g')
drop=$(capsh --print | sed -n 's/^Bounding set =//p' | tr ',' '\n' | grep -vxF -f <(tr ',' '\n' <<<"$keep") | paste -sd,)
fact env >"$ZT_WORK/ds.env"
cat >"$ZT_WORK/run-image.sh" <<-EOF
	# Runs inside node 1's network namespace, in the mount namespace of ip
	# netns exec: the mounts below vanish with the proxy.
	set -e
	mount --bind "$ROOT" "$ROOT"
	mount -o remount,bind,ro "$ROOT"
	mount -t proc proc "$ROOT/proc"
	mount -t sysfs -o ro sysfs "$ROOT/sys"
	for d in null zero full random urandom; do mount --bind "/dev/\$d" "$ROOT/dev/\$d"; done
	mount --bind "$K8S/istiod-ca" "$ROOT/var/run/secrets/istio"
	mount -o remount,bind,ro "$ROOT/var/run/secrets/istio"
	mount --bind "$K8S/tokens" "$ROOT/var/run/secrets/tokens"
	mount -o remount,bind,ro "$ROOT/var/run/secrets/tokens"
	mount --bind "$HOSTRUN" "$ROOT/var/run/ztunnel"
	mount -t tmpfs -o mode=1777 tmpfs "$ROOT/tmp"
	for f in hosts resolv.conf hostname; do mount --bind "$K8S/\$f" "$ROOT/etc/\$f"; done
	exec env -i \$(cat "$ZT_WORK/ds.env") $(command -v capsh) --chroot="$ROOT" --drop="$drop" --gid=1337 --groups=1337 \
		--uid=0 --shell=$(jq -r '.config.Entrypoint[0]' "$(blob "$config")") -- $(fact args)
EOF

zt_test "the image's proxy, run as the DaemonSet runs it, gets ready on :15021/healthz/ready"
mesh_start_bg 1 proxy bash "$ZT_WORK/run-image.sh"
ready() {
	[ "$(zt_ns_exec "$(zt_node_ns 1)" curl -s -o /dev/null -w '%{http_code}' -m 2 \
		"http://$NODE1_IP:$(fact probe | cut -d' ' -f1)$(fact probe | cut -d' ' -f2)")" = 200 ]
}
if mesh_eventually ready; then zt_pass; else zt_fail "not ready; log: $(tail -3 "$(mesh_log 1 proxy)" | tr '\n' ' ')"; fi
ppid_=$(mesh_pid 1 proxy)

zt_test "it runs chrooted with uid 0, gid 1337, only NET_ADMIN, SYS_ADMIN, NET_RAW"
st=$(grep -E '^(Uid|Gid|CapEff|CapBnd):' "/proc/$ppid_/status" | awk '{ print $1, $2 }' | tr '\n' ' ')
zt_expect_eq "$(readlink "/proc/$ppid_/root") $st" \
	"$ROOT Uid: 0 Gid: 1337 CapEff: 0000000000203000 CapBnd: 0000000000203000 "

zt_test "its root is read-only, its /tmp writable (control)"
in_proxy_ns() { nsenter -t "$ppid_" -m -- "$@"; }
if ! in_proxy_ns touch "$ROOT/usr/x" 2>/dev/null && in_proxy_ns touch "$ROOT/tmp/x"; then zt_pass; else
	zt_fail "root writable, or /tmp not"
fi

zt_test "it maps only the image's libraries and loader"
maps=$(awk '$6 ~ /\.so/ { print $6 }' "/proc/$ppid_/maps" | sort -u)
outside=$(grep -v "^$ROOT/" <<<"$maps")
if [ -n "$maps" ] && [ -z "$outside" ] && grep -q "$ROOT/lib/x86_64-linux-gnu/libssl.so.3" <<<"$maps"; then
	zt_pass
else
	zt_fail "outside the image: $(tr '\n' ' ' <<<"$outside")"
fi

zt_test "enroll a on node 1 (agent outside, ZDS through the mounted socket directory), c on node 2"
if mesh_enroll 1 "$a" a sa-a && mesh_enroll 2 "$c" c sa-c &&
	mesh_wait_grep "$(mesh_log 1 proxy)" "pod a \\(default/a\\) added: listening" 10 &&
	zt_echo_server "$c" 8080 && zt_echo_server "$a" 8080; then
	zt_pass
else
	zt_fail "$(tail -3 "$ZT_WORK/enroll.log" | tr '\n' ' ')"
fi

zt_test "a -> c through the image's proxy: reply echoed"
m1=$(mesh_mark 1)
m2=$(mesh_mark 2)
zt_expect_eq "$(zt_send "$a" $C 8080 via-the-image)" "via-the-image"

zt_test "a -> c: outbound on node 1 over HBONE with a's identity from istiod's CA"
line=$(mesh_wait_access 1 "$m1" "direction=outbound" 5)
mesh_expect_fields "$line" "src.identity=$(mesh_id sa-a)" "dst.identity=$(mesh_id sa-c)" "dst.addr=$C:15008"

zt_test "a -> c: node 2's proxy saw a's identity"
line=$(mesh_wait_access 2 "$m2" "direction=inbound" 5)
mesh_expect_fields "$line" "src.identity=$(mesh_id sa-a)" "dst.identity=$(mesh_id sa-c)"

zt_test "c -> a: inbound through the image's proxy"
m1=$(mesh_mark 1)
zt_expect_eq "$(zt_send "$c" $A 8080 back-to-a)" "back-to-a"
zt_test "c -> a: inbound access line on node 1 with both identities"
line=$(mesh_wait_access 1 "$m1" "direction=inbound" 5)
mesh_expect_fields "$line" "src.identity=$(mesh_id sa-c)" "dst.identity=$(mesh_id sa-a)"

mesh_finish
