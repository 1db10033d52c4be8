#!/usr/bin/env bash
# Installs the Debian packages ztunnel-c needs to build, package (make deb:
# debhelper; the package test runs systemd-analyze and boots the package
# under systemd in systemd-nspawn), test and demo, and
# with the argument "bench" also the load generators and peers `make bench`
# runs; skips the ones already present. Safe to run repeatedly.
#   scripts/deps.sh         build, make deb, make test, make demo
#   scripts/deps.sh bench   the above plus the bench-only tools
set -euo pipefail
pkgs=(
  build-essential pkg-config
  libuv1-dev libssl-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler
  protobuf-compiler libprotobuf-dev libyaml-dev libjansson-dev libmicrohttpd-dev zlib1g-dev
  iproute2 iptables nftables socat tcpdump openssl golang-go
  procps prometheus
  libldns-dev ldnsutils bind9-dnsutils dnsmasq-base
  libhttp-parser-dev libpcre2-dev libcjose-dev libcurl4-openssl-dev
  libclang-rt-14-dev clang
  libbpf-dev bpftool  # ZTUNNEL_REDIRECT=ebpf: clang -target bpf, skeletons, vmlinux.h; e2e map checks
  umoci skopeo libcap2-bin  # make image (scripts/image.sh); capsh: tests/e2e/test_image.sh
  debhelper git systemd systemd-container  # make deb; tests/e2e/test_package.sh
)
# bench/run.sh: bulk (iperf3), fixed-rate latency (sockperf), new connections
# (wrk against nginx), the L7 rows (wrk, h2load from nghttp2-client, nginx as
# backend and reverse proxy), the stunnel baseline, jq for iperf3's JSON.
if [ "${1:-}" = bench ]; then
  pkgs+=(iperf3 sockperf wrk nghttp2-client nginx-light stunnel4 jq)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
# Tools the suite runs, by command: a machine may already have them from
# elsewhere (Node.js from NodeSource, Python from pyenv), which must not be
# replaced by Debian's.
for cp in node:nodejs npm:npm python3:python3 curl:curl xxd:xxd; do
  command -v "${cp%%:*}" >/dev/null 2>&1 || missing+=("${cp#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
