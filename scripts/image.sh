#!/usr/bin/env bash
# scripts/image.sh BIN OUTDIR: the node proxy's OCI image (`make image`),
# built offline from BIN with Debian's umoci and skopeo, no base image:
#   OUTDIR/oci/                 OCI image layout, tag $IMAGE_TAG
#   OUTDIR/ztunnel-image.tar    the same image as a docker-archive, which
#                               docker load, podman load and ctr import take
#   OUTDIR/image-rootfs.txt     the files of the one layer, for review
# The layer holds BIN at /usr/local/bin/ztunnel (stripped), the shared
# libraries it needs at the paths ldd resolves them to, the dynamic loader
# /lib64/ld-linux-x86-64.so.2, and /etc/nsswitch.conf (hosts: files dns);
# nothing else: no shell, no package manager, no CA bundle (docs/kubernetes.md
# says why each is or is not there).
#
# Environment:
#   IMAGE_NAME      repository name in the docker-archive (default ztunnel-c)
#   IMAGE_TAG       tag (default: git describe of this tree)
#   IMAGE_REVISION  org.opencontainers.image.revision (default: git HEAD)
#   IMAGE_SOURCE    org.opencontainers.image.source (default: the remote
#                   "origin" of this tree; left out when there is none)
#   SOURCE_DATE_EPOCH  file times and creation date (default: HEAD's commit
#                   time), so the same binary gives the same layer digest
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
die() {
	echo "image.sh: $*" >&2
	exit 1
}
[ $# -eq 2 ] || die "usage: scripts/image.sh BIN OUTDIR"
bin=$1 out=$2
[ -x "$bin" ] || die "$bin: not an executable"
for t in umoci skopeo ldd strip tar; do
	command -v "$t" >/dev/null || die "$t not found (scripts/deps.sh installs umoci and skopeo)"
done
git_() { git -C "$repo" "$@" 2>/dev/null; }
name=${IMAGE_NAME:-ztunnel-c}
tag=${IMAGE_TAG:-$(git_ describe --always --dirty || echo unknown)}
revision=${IMAGE_REVISION:-$(git_ rev-parse HEAD || echo unknown)}
source=${IMAGE_SOURCE-$(git_ config --get remote.origin.url || true)}
epoch=${SOURCE_DATE_EPOCH:-$(git_ log -1 --format=%ct || date +%s)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "IMAGE_TAG=$tag is not a valid tag"

mkdir -p "$out"
work=$(mktemp -d "$out/.image.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc"

# The binary, without its debug sections (1.2 MB instead of 4.6).
strip --strip-debug -o "$root/usr/local/bin/ztunnel" "$bin"
chmod 0755 "$root/usr/local/bin/ztunnel"

# Its shared libraries and loader, each a regular file at the path the
# loader looks for it (ldd's answer: symlinks resolved, so /lib64 and
# /lib/x86_64-linux-gnu are plain directories in the image). A static link
# is not possible with Debian's archives: libp11-kit (under gnutls, under
# libmicrohttpd) ships no .a, and a static glibc still wants its own shared
# libraries at run time for dlopen (the waypoint's libcurl) and NSS lookups.
ldd_out=$(ldd "$bin") || die "ldd $bin failed"
if grep -q 'not found' <<<"$ldd_out"; then
	die "libraries not found: $(grep 'not found' <<<"$ldd_out" | tr -s ' \t' ' ')"
fi
libs=$(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out" | sort -u)
loader=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
grep -qx "$loader" <<<"$libs" || die "loader $loader not in ldd's list"
for l in $libs; do
	mkdir -p "$root$(dirname "$l")"
	cp -L "$l" "$root$l"
	chmod 0644 "$root$l"
done
# The kernel maps the loader itself and wants it executable; the libraries
# are only mapped by it, so the loader and the binary are the only
# executable files in the image.
chmod 0755 "$root$loader"

# glibc without nsswitch.conf asks DNS first and reads /etc/hosts only when
# DNS is unreachable; Kubernetes' hostAliases and distroless images expect
# files first. Nothing else in /etc: the kubelet mounts hosts, resolv.conf
# and hostname.
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/nsswitch.conf"

# One layer, written by tar with fixed owners, order and times: the same
# inputs give the same digest.
find "$root" -exec touch -h -d "@$epoch" {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort) | sed 's|^\./|/|' >"$work/files"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" --format=posix \
	--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
	-C "$root" -cf "$work/layer.tar" .

rm -rf "$out/oci"
umoci init --layout "$out/oci"
umoci new --image "$out/oci:$tag"
umoci raw add-layer --image "$out/oci:$tag" --history.created "$created" \
	--history.created_by "scripts/image.sh (ztunnel, its libraries and loader)" "$work/layer.tar"
labels=(
	--config.label "org.opencontainers.image.title=ztunnel-c"
	--config.label "org.opencontainers.image.description=Istio ambient node proxy (ztunnel proxy) in C"
	--config.label "org.opencontainers.image.version=$tag"
	--config.label "org.opencontainers.image.revision=$revision"
	--config.label "org.opencontainers.image.created=$created"
)
[ -z "$source" ] || labels+=(--config.label "org.opencontainers.image.source=$source")
# Entrypoint and default args as Istio's ztunnel chart runs its container
# (args: proxy ztunnel), its user (runAsUser 0, runAsGroup 1337).
umoci config --no-history --image "$out/oci:$tag" --created "$created" \
	--architecture amd64 --os linux \
	--config.entrypoint /usr/local/bin/ztunnel --config.cmd proxy --config.cmd ztunnel \
	--config.user 0:1337 --config.workingdir / "${labels[@]}"
umoci gc --layout "$out/oci"
chmod -R a+rX "$out/oci"

rm -f "$out/ztunnel-image.tar"
skopeo --insecure-policy copy -q "oci:$out/oci:$tag" "docker-archive:$out/ztunnel-image.tar:$name:$tag"
cp "$work/files" "$out/image-rootfs.txt"
echo "image: $out/oci ($name:$tag), $out/ztunnel-image.tar; $(wc -l <"$out/image-rootfs.txt") paths:"
sed 's/^/  /' "$out/image-rootfs.txt"
