# Builds the libFuzzer targets into $(FUZZ_BUILD) (default build-fuzz/).
# Called by fuzz/run.sh; usable alone: make -f fuzz/build.mk -j2
#
# Every object is compiled with clang -fsanitize=fuzzer,address,undefined so
# coverage reaches into the parser under test, and each target links only
# src/base plus the module it fuzzes (other modules may be mid-edit).

FUZZ_BUILD ?= build-fuzz
FUZZ_CC    ?= clang

FUZZ_PKGS       := libuv libssl libcrypto libnghttp2 libprotobuf-c yaml-0.1 jansson ldns libpcre2-8
FUZZ_PKG_CFLAGS := $(shell pkg-config --cflags $(FUZZ_PKGS))
FUZZ_PKG_LIBS   := $(shell pkg-config --libs $(FUZZ_PKGS))

FUZZ_SAN    := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer $(FUZZ_SAN) \
          -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
          -Wno-unused-parameter -Isrc -I$(FUZZ_BUILD)/gen $(FUZZ_PKG_CFLAGS) -MMD -MP
FUZZ_LIBS   := $(FUZZ_PKG_LIBS) -lhttp_parser -lpthread
# jwt_token: cjose (headers in /usr/include).
FUZZ_LIBS   += $(shell pkg-config --libs cjose)

FUZZ_BASE := $(sort $(wildcard src/base/*.c))

FUZZ_TARGETS := hbone_authority spiffe zds_request local_yaml cni_store cni_ctl http_headers \
                xds_address xds_authorization csr_parse control_tokens ads_request hbone_server \
                dns_answer http1_parse route_match routes_yaml xds_route
FUZZ_TARGETS += traceparent
FUZZ_TARGETS += jwt_token
FUZZ_TARGETS += authz_l7
FUZZ_TARGETS += ratelimit_yaml
FUZZ_TARGETS += xds_policies

# Every proto/*.proto becomes $(FUZZ_BUILD)/gen/proto/<name>.pb-c.{c,h}.
FUZZ_PROTOS  := $(patsubst proto/%.proto,%,$(wildcard proto/*.proto))
FUZZ_PROTO_H := $(patsubst %,$(FUZZ_BUILD)/gen/proto/%.pb-c.h,$(FUZZ_PROTOS))
pb = $(patsubst %,$(FUZZ_BUILD)/gen/proto/%.pb-c.c,$(1))
FUZZ_STATE  := $(sort $(wildcard src/state/*.c))
FUZZ_XDS_PB := $(call pb,workload authorization google_protobuf_wkt)

SRC_hbone_authority := src/hbone/hbone.c
SRC_hbone_server    := src/h2/session.c src/hbone/hbone.c
SRC_spiffe          := src/tls/spiffe.c
SRC_zds_request     := src/zds/zds.c $(call pb,zds)
# config/local.c reads HTTPRoute / GRPCRoute documents through config/routes.h.
FUZZ_ROUTES := src/config/routes_yaml.c src/config/routes_filters.c src/route/route.c src/http/head.c
# ... and AuthorizationPolicy / RequestAuthentication documents through
# config/authz.h and authn.h.
FUZZ_ROUTES += src/config/authz_yaml.c src/config/authn_yaml.c src/authz/l7.c src/jwt/authn.c \
               src/jwt/jwt.c
# ... and RateLimit documents through config/ratelimit.h.
FUZZ_ROUTES += src/config/ratelimit_yaml.c src/ratelimit/ratelimit.c
SRC_local_yaml      := src/config/local.c src/config/k8s.c src/config/yaml_tree.c $(FUZZ_STATE) $(FUZZ_ROUTES)
SRC_cni_store       := src/cni/store.c
SRC_cni_ctl         := src/cni/ctl.c
SRC_http_headers    := src/telemetry/headers.c
SRC_traceparent     := src/telemetry/headers.c
SRC_jwt_token       := src/jwt/jwt.c src/http/head.c
SRC_xds_address       := src/xds/convert.c src/xds/encode.c $(FUZZ_STATE) $(FUZZ_XDS_PB)
SRC_xds_authorization := $(SRC_xds_address) $(sort $(wildcard src/authz/*.c))
SRC_csr_parse         := src/tls/csr.c src/tls/cert.c src/tls/spiffe.c
SRC_control_tokens    := src/control/tokens.c
SRC_dns_answer        := src/dns/answer.c $(FUZZ_STATE)
SRC_http1_parse       := src/http/head.c src/http/http1.c
SRC_route_match       := src/route/route.c src/http/head.c src/config/routes_yaml.c \
                         src/config/routes_filters.c src/config/yaml_tree.c $(FUZZ_STATE)
SRC_routes_yaml       := $(SRC_route_match)
SRC_authz_l7          := src/authz/l7.c src/config/authz_yaml.c src/config/authn_yaml.c \
                         src/jwt/authn.c src/jwt/jwt.c $(SRC_route_match)
SRC_ratelimit_yaml    := src/ratelimit/ratelimit.c src/config/ratelimit_yaml.c \
                         src/config/authz_yaml.c src/authz/l7.c $(SRC_route_match)
SRC_xds_route         := src/xds/routes.c src/xds/fields.c src/route/route.c src/http/head.c $(call pb,routes)
SRC_xds_policies      := src/xds/policies.c src/xds/fields.c src/authz/l7.c src/jwt/authn.c src/jwt/jwt.c \
                         src/ratelimit/ratelimit.c src/route/route.c src/http/head.c $(FUZZ_STATE) \
                         $(call pb,policies)
SRC_ads_request       := src/xds/catalog.c src/xds/ads.c $(SRC_xds_address) src/config/local.c src/config/k8s.c src/config/yaml_tree.c \
                         $(call pb,discovery envoy_core google_rpc_status) $(FUZZ_ROUTES)

# Object paths: generated sources (under $(FUZZ_BUILD)/gen) keep their tail.
obj = $(patsubst $(FUZZ_BUILD)/%.c,$(FUZZ_BUILD)/obj/%.o,$(filter $(FUZZ_BUILD)/%,$(1))) \
      $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(filter-out $(FUZZ_BUILD)/%,$(1)))

FUZZ_BINS := $(addprefix $(FUZZ_BUILD)/,$(FUZZ_TARGETS))

.PHONY: all seeds
all: $(FUZZ_BINS)

# The .pb-c.h files are generated; every object waits for all of them so
# includes (also between generated files) resolve.
.SECONDARY: $(FUZZ_PROTO_H) $(FUZZ_PROTO_H:.h=.c)
$(FUZZ_BUILD)/gen/proto/%.pb-c.c $(FUZZ_BUILD)/gen/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(FUZZ_BUILD)/gen/proto
	protoc-c --proto_path=proto --proto_path=/usr/include --c_out=$(FUZZ_BUILD)/gen/proto $<

$(FUZZ_BUILD)/obj/gen/%.o: $(FUZZ_BUILD)/gen/%.c | $(FUZZ_PROTO_H)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(filter-out -Wmissing-prototypes,$(FUZZ_CFLAGS)) -c -o $@ $<

$(FUZZ_BUILD)/obj/%.o: %.c | $(FUZZ_PROTO_H)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

define target_rule
$(FUZZ_BUILD)/$(1): $(call obj,fuzz/$(1).c $(SRC_$(1)) $(FUZZ_BASE))
	$(FUZZ_CC) $(FUZZ_SAN) -o $$@ $$^ $(FUZZ_LIBS)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call target_rule,$(t))))

# Regenerates the binary ZDS seeds from the real encoder (committed output).
$(FUZZ_BUILD)/zds_seeds: fuzz/zds_seeds.c $(call obj,src/zds/zds.c $(FUZZ_BUILD)/gen/proto/zds.pb-c.c $(FUZZ_BASE))
	$(FUZZ_CC) $(filter-out -fsanitize=fuzzer%,$(FUZZ_CFLAGS)) -fsanitize=address,undefined \
	    -o $@ $^ $(FUZZ_LIBS)

# Regenerates the xDS seeds made from good.yaml by the real encoder and
# catalog (the gen-* files of xds_address, xds_authorization, ads_request).
$(FUZZ_BUILD)/xds_seeds: fuzz/xds_seeds.c $(call obj,$(SRC_ads_request) $(FUZZ_BASE))
	$(FUZZ_CC) $(filter-out -fsanitize=fuzzer%,$(FUZZ_CFLAGS)) -fsanitize=address,undefined \
	    -o $@ $^ $(FUZZ_LIBS)

seeds: $(FUZZ_BUILD)/zds_seeds $(FUZZ_BUILD)/xds_seeds
	$(FUZZ_BUILD)/zds_seeds fuzz/corpus/zds_request
	@mkdir -p fuzz/corpus/xds_address fuzz/corpus/xds_authorization fuzz/corpus/ads_request
	$(FUZZ_BUILD)/xds_seeds tests/unit/config/testdata/good.yaml fuzz/corpus

-include $(shell find $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
