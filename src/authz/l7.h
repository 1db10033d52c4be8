/* L7 AuthorizationPolicy at the waypoint (waypoint facts 2.6) as a pure
 * engine: a compiled, immutable set of policies and a check of one HTTP
 * request against it. Nothing here logs or does I/O; the caller logs the
 * result, answers 403 "RBAC: access denied" and fills the access line.
 *
 * Attachment (Istio's, pilot/pkg/model/policyattachment.go): only
 * targetRefs attach at a waypoint. A Gateway target (in the policy's
 * namespace) covers all of that waypoint's traffic; a Service or
 * ServiceEntry target (policy's namespace) covers the traffic addressed to
 * that service; GatewayClass istio-waypoint covers every waypoint, only
 * when the policy lives in the root namespace. Selector and namespace-wide
 * policies never apply here (the reader, config/authz.h, skips them).
 *
 * Decision (Envoy's filter order on a waypoint chain): CUSTOM is refused
 * when reading; any enforced DENY policy that matches denies; else if some
 * enforced ALLOW policy applies and none matches, deny; else allow. AUDIT
 * policies never decide (the matching one is reported). Dry-run policies
 * (istio.io/dry-run) are evaluated as Envoy's shadow engine and reported,
 * never enforced.
 *
 * Matching: a policy matches if any rule matches; a policy with no rules
 * never matches (so an ALLOW without rules denies everything) and `{}`
 * matches everything. A rule matches when its `from` (any source), `to`
 * (any operation) and every `when` match; an absent `from`/`to` matches.
 * Within a source or operation every populated field must pass (AND): a
 * positive list when any value matches, a not-list when none does.
 *
 * Cost: sealing sorts the policies and an index of their targets. A check
 * finds the policies attached to the request's gateway, service and the
 * waypoint class by binary search (O(log T) for T targets), then visits
 * only those: O(sum of their values) per pass, in up to five passes (audit,
 * deny, allow, dry-run deny, dry-run allow; the audit and dry-run ones only
 * when the set holds such policies). Policies of
 * other services are never visited, so 1000 policies on other services cost
 * what 0 do. A check never allocates, except to normalize a path or join a
 * repeated header beyond 4 KiB. */
#ifndef ZT_AUTHZ_L7_H
#define ZT_AUTHZ_L7_H

#include "state/ip.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct zt_http_head;

enum zt_authz_l7_action {
    ZT_AUTHZ_L7_ALLOW = 0,
    ZT_AUTHZ_L7_DENY = 1,
    ZT_AUTHZ_L7_AUDIT = 2,
};
const char *zt_authz_l7_action_str(enum zt_authz_l7_action a);

/* What a targetRef names. */
enum zt_authz_l7_target_kind {
    ZT_AUTHZ_L7_GATEWAY_CLASS = 0,
    ZT_AUTHZ_L7_GATEWAY = 1,
    ZT_AUTHZ_L7_SERVICE = 2,
    ZT_AUTHZ_L7_SERVICE_ENTRY = 3,
};

/* String match kinds: Istio's "v" exact, "v*" prefix, "*v" suffix, "*"
 * presence (non-empty), and for paths a template with {*} / {**}. */
enum zt_authz_l7_str_kind {
    ZT_AUTHZ_L7_EXACT = 0,
    ZT_AUTHZ_L7_PREFIX = 1,
    ZT_AUTHZ_L7_SUFFIX = 2,
    ZT_AUTHZ_L7_PRESENCE = 3,
    ZT_AUTHZ_L7_TEMPLATE = 4,
};

struct zt_authz_l7_str {
    uint8_t kind; /* enum zt_authz_l7_str_kind */
    bool nocase;  /* hosts: compared case-insensitively (v is lower case) */
    uint32_t len; /* of v */
    char *v;      /* the part to compare, "*" removed; "" for PRESENCE */
};
struct zt_authz_l7_strs {
    struct zt_authz_l7_str *v;
    size_t n;
};
struct zt_authz_l7_cidrs {
    struct zt_cidr *v;
    size_t n;
};
struct zt_authz_l7_ports {
    uint16_t *v;
    size_t n;
};

struct zt_authz_l7_source {
    struct zt_authz_l7_strs principals, not_principals;
    struct zt_authz_l7_strs namespaces, not_namespaces;
    struct zt_authz_l7_strs request_principals, not_request_principals;
    /* Exact "ns/sa" (a bare "sa" was read as the policy's namespace). */
    struct zt_authz_l7_strs service_accounts, not_service_accounts;
    struct zt_authz_l7_cidrs ip_blocks, not_ip_blocks;
    struct zt_authz_l7_cidrs remote_ip_blocks, not_remote_ip_blocks;
};

struct zt_authz_l7_operation {
    struct zt_authz_l7_strs hosts, not_hosts;
    struct zt_authz_l7_strs methods, not_methods;
    struct zt_authz_l7_strs paths, not_paths;
    struct zt_authz_l7_ports ports, not_ports;
};

/* `when` keys. */
enum zt_authz_l7_key {
    ZT_AUTHZ_L7_K_HEADER = 0,       /* request.headers[name] */
    ZT_AUTHZ_L7_K_SOURCE_IP,        /* source.ip (CIDRs) */
    ZT_AUTHZ_L7_K_REMOTE_IP,        /* remote.ip (CIDRs) */
    ZT_AUTHZ_L7_K_SOURCE_NS,        /* source.namespace */
    ZT_AUTHZ_L7_K_SOURCE_PRINCIPAL, /* source.principal */
    ZT_AUTHZ_L7_K_SOURCE_SA,        /* source.serviceAccount ("ns/sa") */
    ZT_AUTHZ_L7_K_SOURCE_TD,        /* source.trustDomain */
    ZT_AUTHZ_L7_K_AUTH_PRINCIPAL,   /* request.auth.principal */
    ZT_AUTHZ_L7_K_AUTH_AUDIENCES,   /* request.auth.audiences */
    ZT_AUTHZ_L7_K_AUTH_PRESENTER,   /* request.auth.presenter */
    ZT_AUTHZ_L7_K_AUTH_CLAIMS,      /* request.auth.claims[a][b]... */
    ZT_AUTHZ_L7_K_DEST_IP,          /* destination.ip (CIDRs) */
    ZT_AUTHZ_L7_K_DEST_PORT,        /* destination.port (ports) */
    ZT_AUTHZ_L7_K_SNI,              /* connection.sni */
};

#define ZT_AUTHZ_L7_MAX_CLAIM_DEPTH 8
/* What a policy may hold (config/authz.h reads YAML within these, and
 * xds/policies.h decodes within them). */
#define ZT_AUTHZ_L7_MAX_RULES 1024
#define ZT_AUTHZ_L7_MAX_PARTS 64    /* from / to / when entries of one rule */
#define ZT_AUTHZ_L7_MAX_VALUES 1024 /* values of one field */
#define ZT_AUTHZ_L7_MAX_SAS 16      /* serviceAccounts values of one field */
#define ZT_AUTHZ_L7_MAX_TARGETS 16  /* as the CRD */
#define ZT_AUTHZ_L7_MAX_VALUE 4096  /* bytes of one value */
/* Longest "ns/sa" value (Istio's CheckServiceAccount). */
#define ZT_AUTHZ_L7_MAX_SA 320

struct zt_authz_l7_when {
    uint8_t key;    /* enum zt_authz_l7_key */
    char *header;   /* K_HEADER: the name, lower case */
    char **claim;   /* K_AUTH_CLAIMS: the path of object keys */
    size_t n_claim; /* 1..ZT_AUTHZ_L7_MAX_CLAIM_DEPTH */
    /* By key: strings, CIDRs (*_IP) or ports (DEST_PORT). */
    struct zt_authz_l7_strs values, not_values;
    struct zt_authz_l7_cidrs cidrs, not_cidrs;
    struct zt_authz_l7_ports ports, not_ports;
};

struct zt_authz_l7_rule {
    struct zt_authz_l7_source *from; /* any; n_from 0: matches */
    size_t n_from;
    struct zt_authz_l7_operation *to; /* any; n_to 0: matches */
    size_t n_to;
    struct zt_authz_l7_when *when; /* all */
    size_t n_when;
};

struct zt_authz_l7_target {
    uint8_t kind; /* enum zt_authz_l7_target_kind */
    char *ns;     /* the policy's namespace ("" for GATEWAY_CLASS) */
    char *name;
};

/* One policy as read (heap-owned, freed by zt_authz_l7_policy_free). */
struct zt_authz_l7_policy {
    char *ns, *name;
    uint8_t action; /* enum zt_authz_l7_action */
    bool dry_run;
    struct zt_authz_l7_rule *rules;
    size_t n_rules;
    struct zt_authz_l7_target *targets;
    size_t n_targets;
};

/* ---- building (config/authz_yaml.c) ---- */

/* Parses an Istio string value into *out (its v a heap copy). flags:
 * ZT_AUTHZ_L7_F_HOST lower-cases and compares case-insensitively;
 * ZT_AUTHZ_L7_F_PATH allows {*} and {**} templates (which must then fill
 * whole segments, {**} last, and no other '*'). Returns 0, or ZT_E_CONFIG
 * with *why set to a static reason. */
#define ZT_AUTHZ_L7_F_HOST 1u
#define ZT_AUTHZ_L7_F_PATH 2u
int zt_authz_l7_str_parse(const char *v, unsigned flags, struct zt_authz_l7_str *out,
                          const char **why);

/* Parses a `when` key into w->key (and w->header / w->claim). Returns 0 or
 * ZT_E_CONFIG with why (at least 128 bytes) saying why. */
int zt_authz_l7_when_key_parse(const char *key, struct zt_authz_l7_when *w, char *why,
                               size_t why_len);

/* Istio's validation of one source / operation as read (the YAML reader
 * and the xDS decoder both apply it): NULL when valid, else a static
 * reason ("must not be empty", ...). */
const char *zt_authz_l7_source_invalid(const struct zt_authz_l7_source *s);
const char *zt_authz_l7_operation_invalid(const struct zt_authz_l7_operation *o);

/* NULL is a no-op. */
void zt_authz_l7_policy_free(struct zt_authz_l7_policy *p);

struct zt_authz_l7_set;

/* An empty set; root_ns (copied; NULL: "istio-system") is the mesh root
 * namespace, the only one whose GatewayClass targets count. */
struct zt_authz_l7_set *zt_authz_l7_set_new(const char *root_ns);
/* Takes ownership of p (heap). Only before zt_authz_l7_set_seal. A second
 * policy with the same ns/name replaces the first at sealing. */
void zt_authz_l7_set_add(struct zt_authz_l7_set *s, struct zt_authz_l7_policy *p);
/* Sorts and indexes, exactly once (checking an unsealed set is a bug): the
 * set is immutable from now on, safe to check from any number of threads. */
void zt_authz_l7_set_seal(struct zt_authz_l7_set *s);
size_t zt_authz_l7_set_count(const struct zt_authz_l7_set *s);
/* The i-th policy in ns/name order (borrowed), NULL past the end. */
const struct zt_authz_l7_policy *zt_authz_l7_set_at(const struct zt_authz_l7_set *s, size_t i);
struct zt_authz_l7_set *zt_authz_l7_set_ref(struct zt_authz_l7_set *s);
/* NULL is a no-op. */
void zt_authz_l7_set_unref(struct zt_authz_l7_set *s);

/* ---- checking ---- */

/* One request as the waypoint sees it. Every pointer is borrowed for the
 * call; NULL strings mean "absent".
 * - source_principal: the peer's SPIFFE ID from its HBONE certificate
 *   ("spiffe://td/ns/NS/sa/SA"); principals match it without "spiffe://",
 *   namespaces its /ns/ segment.
 * - source_ip: the tunnel's peer. remote_ip: the client as Envoy derives it
 *   (zt_authz_l7_remote_ip); family 0 means source_ip.
 * - head: method, path (query and all), authority and header fields. The
 *   path is normalized here (zt_authz_l7_path_normalize) unless
 *   path_is_normalized says the caller did it already for routing: the
 *   normalization is not idempotent on malformed escapes ("%4%41" gives
 *   "%4A"), so it must run exactly once, as in Envoy.
 * - request_principal "iss/sub", audiences, presenter (azp) and claims
 *   (a JSON object) come from a token that verified; all NULL/0 when the
 *   request had none.
 * - gateway_ns/gateway_name: this waypoint's Gateway; service_*: the
 *   service the request was addressed to (NULL when none).
 * - is_tcp: a connection relayed as TCP (head NULL). As Istio builds a
 *   waypoint's network RBAC, a field only requests have (requestPrincipals,
 *   hosts, methods, paths, request.headers, request.auth.*) makes an ALLOW
 *   rule never match and is left out of a DENY or AUDIT rule (which so
 *   matches more: a DENY of GET on a port denies every connection to it). */
struct zt_authz_l7_request {
    const char *source_principal;
    struct zt_ip source_ip, remote_ip, destination_ip;
    uint16_t destination_port;
    const char *sni;
    const struct zt_http_head *head;
    bool path_is_normalized;
    const char *request_principal;
    const char *const *audiences;
    size_t n_audiences;
    const char *presenter;
    const json_t *claims;
    const char *gateway_ns, *gateway_name;
    const char *service_ns, *service_name;
    bool service_is_entry; /* a ServiceEntry rather than a Service */
    bool is_tcp;
};

/* What decided, for the access line and metrics. Policy pointers are
 * borrowed from the set. */
struct zt_authz_l7_result {
    bool allowed;
    /* The enforced DENY that matched, or the ALLOW that matched (NULL when
     * allowed with no ALLOW policy, or denied because none matched). */
    const struct zt_authz_l7_policy *policy;
    int rule;       /* index in policy, -1 without one */
    bool has_allow; /* some enforced ALLOW policy applied (not set when a DENY matched) */
    /* Shadow engine (dry-run policies): has_dry_run when any applied;
     * dry_run_allowed its verdict; dry_run_policy the dry-run DENY or ALLOW
     * that decided it (NULL: no dry-run ALLOW matched). */
    bool has_dry_run;
    bool dry_run_allowed;
    const struct zt_authz_l7_policy *dry_run_policy;
    int dry_run_rule;
    /* The first AUDIT policy that matched, or NULL. */
    const struct zt_authz_l7_policy *audit;
};

/* Returns 0 (allow) or ZT_E_DENIED; res (required) says why. s may be
 * NULL (no policies: allow). */
int zt_authz_l7_check(const struct zt_authz_l7_set *s, const struct zt_authz_l7_request *rq,
                      struct zt_authz_l7_result *res);

/* Envoy's response_code_details for a denial:
 * "rbac_access_denied_matched_policy[ns[NS]-policy[NAME]-rule[I]]", or
 * "...[none]" when no ALLOW matched. Returns buf. */
char *zt_authz_l7_details(const struct zt_authz_l7_result *res, char *buf, size_t len);

/* Envoy's BASE path normalization (RFC 3986 via Chromium's canonicalizer,
 * MeshConfig pathNormalization default): the query and fragment dropped,
 * percent-encoded unreserved characters decoded, other escapes upper-cased
 * (so %2F stays an escaped slash), "." and ".." segments removed (".." at
 * the root stays at the root); slashes are not merged. in[0..len) into out
 * (len + 2 bytes always suffice), NUL-terminated; returns the length. A
 * '%' without two hex digits is kept as it is (as Chromium does), which is
 * why a second pass may change a result: "%4%41" gives "%4A". */
size_t zt_authz_l7_path_normalize(const char *in, size_t len, char *out);

/* The remote address Envoy gives RBAC on a waypoint (use_remote_address
 * false, no trusted hops): the last address of the last x-forwarded-for
 * field when it parses, else source. */
void zt_authz_l7_remote_ip(const struct zt_http_head *h, const struct zt_ip *source,
                           struct zt_ip *out);

#endif
