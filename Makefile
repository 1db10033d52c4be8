# ztunnel-c build.  `make` builds build/ztunnel; `make test` installs missing
# Debian packages, builds with ASan+UBSan into build-san/ and runs every test;
# `make demo` runs a two-node mesh on this machine; `make bench` benchmarks.

BUILD   ?= build
SAN     ?= 0
WERROR  ?= 1
CC      ?= cc
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)

PKGS     := libuv libssl libcrypto libnghttp2 libprotobuf-c yaml-0.1 jansson libmicrohttpd zlib ldns libpcre2-8 cjose \
            libbpf
# Headers only: src/jwt/jwks_fetch.c loads libcurl when a fetcher starts.
PKGS_DL  := libcurl
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) $(PKGS_DL) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN   := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
          -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN   += -Werror
endif
OPT    := -O2 -g
ifeq ($(SAN),1)
OPT    := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
endif
CFLAGS  += -std=gnu11 -D_GNU_SOURCE $(OPT) $(WARN) -Isrc -I$(BUILD)/gen $(PKG_CFLAGS) \
           -DZT_VERSION='"$(VERSION)"' -MMD -MP
LDFLAGS += $(filter -fsanitize=%,$(OPT))
LDLIBS  += $(PKG_LIBS) -lhttp_parser -lpthread

PROTOS   := $(wildcard proto/*.proto)
PROTO_C  := $(patsubst proto/%.proto,$(BUILD)/gen/proto/%.pb-c.c,$(PROTOS))
PROTO_H  := $(PROTO_C:.c=.h)
# ONLY="tls config" restricts the library to src/base plus those modules, so a
# module's unit tests build while other modules are mid-edit.
ifeq ($(ONLY),)
SRCS     := $(shell find src -name '*.c' ! -name main.c ! -name '*.bpf.c' | sort)
else
SRCS     := $(shell find src/base $(addprefix src/,$(ONLY)) -name '*.c' ! -name main.c ! -name '*.bpf.c' | sort)
endif
OBJS     := $(patsubst %.c,$(BUILD)/obj/%.o,$(SRCS)) $(PROTO_C:.c=.o)
ifeq ($(ONLY),)
TEST_SRCS := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
else
TEST_SRCS := $(shell find $(addprefix tests/unit/,$(ONLY)) -name 'test_*.c' 2>/dev/null | sort)
endif
TEST_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(TEST_SRCS))

.PHONY: all deps bench-deps test unit unit-bins e2e demo demo-control demo-waypoint bench clean format check-format deb
# Generated protobuf sources are not intermediates to delete after a build.
.SECONDARY: $(PROTO_C) $(PROTO_H)
all: $(BUILD)/ztunnel

deps:
	@scripts/deps.sh

# The bench's load generators and baselines (iperf3, sockperf, wrk, nginx,
# stunnel), which make test does not need.
bench-deps:
	@scripts/deps.sh bench

$(BUILD)/gen/proto/%.pb-c.c $(BUILD)/gen/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/gen/proto
	protoc-c --proto_path=proto --proto_path=/usr/include --c_out=$(BUILD)/gen/proto $<

$(BUILD)/gen/proto/%.pb-c.o: $(BUILD)/gen/proto/%.pb-c.c
	$(CC) $(filter-out -Werror -Wmissing-prototypes,$(CFLAGS)) -c -o $@ $<

# The eBPF redirection programs (ZTUNNEL_REDIRECT=ebpf, src/cni/bpf/): clang
# -target bpf against a vmlinux.h that bpftool dumps from the build
# machine's kernel BTF (CO-RE: libbpf relocates field offsets to the running
# kernel at load), stripped of DWARF (bpftool gen object) and embedded in
# the binary as libbpf skeletons that src/cni/rules_ebpf.c includes.
BPF_CLANG ?= clang
BPF_SRCS  := $(wildcard src/cni/bpf/*.bpf.c)
BPF_SKELS := $(patsubst src/cni/bpf/%.bpf.c,$(BUILD)/gen/bpf/%.skel.h,$(BPF_SRCS))
.SECONDARY: $(BPF_SKELS)

$(BUILD)/gen/bpf/vmlinux.h:
	@mkdir -p $(dir $@)
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp
	mv $@.tmp $@

$(BUILD)/gen/bpf/%.bpf.o: src/cni/bpf/%.bpf.c src/cni/bpf/redirect_abi.h \
		src/cni/bpf/redirect_logic.h $(BUILD)/gen/bpf/vmlinux.h
	$(BPF_CLANG) -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -I$(BUILD)/gen/bpf \
		-Isrc/cni/bpf -c -o $@.full.o $<
	bpftool gen object $@ $@.full.o
	rm -f $@.full.o

$(BUILD)/gen/bpf/%.skel.h: $(BUILD)/gen/bpf/%.bpf.o
	bpftool gen skeleton $< name zt_$*_bpf > $@.tmp
	mv $@.tmp $@

$(BUILD)/obj/src/cni/rules_ebpf.o: $(BPF_SKELS)

$(BUILD)/obj/%.o: %.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libzt.a: $(OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/ztunnel: $(BUILD)/obj/src/main.o $(BUILD)/libzt.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libzt.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(BUILD)/libzt.a $(LDLIBS)

unit-bins: $(TEST_BINS)

# Micro-benchmarks: plain C programs linked like the unit tests.
$(BUILD)/bench/%: bench/%.c $(BUILD)/libzt.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libzt.a $(LDLIBS)

# make bench also runs the micro-benchmarks (its recipe, below).
bench: $(BUILD)/bench/authz_bench

unit: $(TEST_BINS)
	@scripts/run-unit.sh $(TEST_BINS)

# Everything CI runs: unit tests and the network-namespace suite under
# ASan+UBSan, after a -Werror release build and the Debian package (which
# tests/e2e/test_package.sh installs into a throw-away root).
test: deps
	$(MAKE) BUILD=build build/ztunnel
	$(MAKE) deb
	$(MAKE) BUILD=build-san SAN=1 build-san/ztunnel unit-bins
	@scripts/run-tests.sh build-san

e2e:
	$(MAKE) BUILD=build-san SAN=1 build-san/ztunnel
	ZT_BIN=$(CURDIR)/build-san/ztunnel tests/e2e/run.sh

demo: deps all
	scripts/demo.sh

demo-control: deps all
	DEMO_CONTROL=1 scripts/demo.sh

demo-waypoint: deps all
	scripts/demo-waypoint.sh

# The Debian package (debhelper, debian/): build/ztunnel_<version>_amd64.deb
# with the binary built into build-deb/ with Debian's hardening flags, the
# systemd units of packaging/systemd/ and the configuration of
# packaging/env/; version from scripts/deb-version.sh. From scratch each
# time (debian/rules clean): neither make nor dh's build stamp would notice
# a new version string.
deb: deps
	dpkg-checkbuilddeps
	debian/rules clean
	debian/rules binary

bench: bench-deps all
	bench/run.sh
	bench/config.sh
	$(BUILD)/bench/authz_bench

# The node proxy's OCI image, no base image (scripts/image.sh,
# docs/kubernetes.md): $(BUILD)/oci/ and $(BUILD)/ztunnel-image.tar.
.PHONY: image
image: deps $(BUILD)/ztunnel
	scripts/image.sh $(BUILD)/ztunnel $(BUILD)

format:
	clang-format -i $$(find src tests -name '*.[ch]')

check-format:
	clang-format --dry-run -Werror $$(find src tests -name '*.[ch]')

clean:
	rm -rf build build-san build-deb debian/ztunnel debian/.debhelper debian/files \
		debian/debhelper-build-stamp debian/*.substvars debian/*.debhelper debian/*.debhelper.log

-include $(shell find $(BUILD) -name "*.d" 2>/dev/null)

# libFuzzer targets for every parser (fuzz/*.c) over the committed seed
# corpora, built with clang into build-fuzz/; FUZZ_SECONDS per target.
.PHONY: fuzz
fuzz:
	fuzz/run.sh
