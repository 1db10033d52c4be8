/* The waypoint's local rate limit (issue 12) as a pure engine: a sealed,
 * refcounted set of RateLimit policies (config/ratelimit.h reads them) and
 * a check of one request against it. Nothing here logs or does I/O; the
 * caller answers 429 "local_rate_limited" with x-ratelimit-limit,
 * x-ratelimit-remaining and x-ratelimit-reset, and counts the result.
 *
 * Attachment: only targetRefs, always in the policy's namespace. A Gateway
 * target covers all of that waypoint's traffic; a Service target the
 * traffic addressed to that service; an HTTPRoute or GRPCRoute target the
 * requests that route took, or with sectionName only those taken by the
 * rule of that name.
 *
 * Buckets: one token bucket per policy, or with a key one per distinct
 * value of the key (the source principal, or the first field of a header).
 * A bucket holds up to `burst` tokens and regains `requests` tokens per
 * unit, continuously at millisecond precision, in exact integer arithmetic
 * (a token is unit_ms ticks and every millisecond adds `requests` ticks, so
 * nothing drifts). A new bucket starts full. A request takes one token.
 * A request without the key's value (no principal, no such header) uses
 * one shared "absent" bucket of the policy.
 *
 * Bounded keys: at most max_keys buckets per keyed policy (the absent one
 * aside). A new value takes the place of a bucket that has refilled to
 * capacity among the least recently used ones (such a bucket carries no
 * state, so forgetting it changes nothing), else new room while the table
 * has fewer than max_keys; when neither is possible, the new value is not
 * tracked and is charged to the policy's one shared "overflow" bucket.
 * Values that keep the table busy therefore never win fresh buckets: a
 * flood of distinct header values gets one policy's worth of tokens in
 * all, while the keys already tracked keep theirs. Values are kept only as
 * a 64-bit SipHash under a random key per set, whatever their length.
 *
 * Several policies: every policy that applies is checked at once, under
 * all their locks, and a request passes only if each of its buckets has a
 * token; then it takes one from each. A request limited by one policy
 * takes nothing from the others (stacked Envoy local_ratelimit filters
 * take their tokens one filter after another, so a request refused by a
 * later filter has spent a token of an earlier one; we do not). The result
 * names the deciding policy: when limited, the limiting one with the
 * longest wait; when passed, the one with the fewest tokens left.
 *
 * Threads: a set is shared by every worker thread (100/s is 100/s per
 * waypoint). Each bucket is guarded by a mutex (a keyed policy: one for
 * its table), held for a hash probe and a few stores; locks are taken in
 * policy order, so concurrent checks cannot deadlock. Clocks: now_ms is
 * any monotonic millisecond count (uv_now of the calling worker); a now_ms
 * older than a bucket's last update (another worker's clock ran ahead)
 * refills nothing and does not move the bucket back.
 *
 * Cost: sealing sorts the policies and an index of their targets. A check
 * finds the applying policies by binary search (O(log T) for T targets),
 * so 1000 policies on other services cost what 0 do, then does O(1) work
 * per applying policy (a hash of the key value, one table probe, a scan of
 * at most 8 entries when the table is full). It allocates only to grow a
 * key table (doubling, up to max_keys) or when more than 16 policies apply
 * to one request.
 *
 * Reloads: a new set starts with full buckets unless it inherits the old
 * set's (zt_ratelimit_set_inherit), as the waypoint should do, or every
 * configuration change would hand every client a fresh burst. */
#ifndef ZT_RATELIMIT_RATELIMIT_H
#define ZT_RATELIMIT_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct zt_http_head;

/* Limits of the configuration (the reader refuses values outside them). */
#define ZT_RATELIMIT_MAX_REQUESTS 1000000000u
#define ZT_RATELIMIT_MAX_BURST 1000000000u
#define ZT_RATELIMIT_DEFAULT_MAX_KEYS 10000u
#define ZT_RATELIMIT_MAX_KEYS 1000000u
#define ZT_RATELIMIT_MAX_TARGETS 16
#define ZT_RATELIMIT_MAX_HEADER 256 /* bytes in a key's header name */

enum zt_ratelimit_unit {
    ZT_RATELIMIT_SECOND = 0,
    ZT_RATELIMIT_MINUTE = 1,
    ZT_RATELIMIT_HOUR = 2,
};
const char *zt_ratelimit_unit_str(enum zt_ratelimit_unit u);
/* 1000, 60000 or 3600000. */
uint64_t zt_ratelimit_unit_ms(enum zt_ratelimit_unit u);

enum zt_ratelimit_key {
    ZT_RATELIMIT_KEY_NONE = 0,      /* one bucket for the policy */
    ZT_RATELIMIT_KEY_PRINCIPAL = 1, /* one per source principal */
    ZT_RATELIMIT_KEY_HEADER = 2,    /* one per value of a header */
};

/* What a targetRef names (always in the policy's namespace). */
enum zt_ratelimit_target_kind {
    ZT_RATELIMIT_GATEWAY = 0,
    ZT_RATELIMIT_SERVICE = 1,
    ZT_RATELIMIT_HTTP_ROUTE = 2,
    ZT_RATELIMIT_GRPC_ROUTE = 3,
};
const char *zt_ratelimit_target_kind_str(enum zt_ratelimit_target_kind k);

struct zt_ratelimit_target {
    uint8_t kind;  /* enum zt_ratelimit_target_kind */
    char *name;    /* heap */
    char *section; /* routes only: a rule name (heap); NULL: the whole route */
};

/* One policy as read (heap-owned, freed by zt_ratelimit_policy_free). */
struct zt_ratelimit_policy {
    char *ns, *name;
    uint32_t requests; /* 1..ZT_RATELIMIT_MAX_REQUESTS per unit */
    uint8_t unit;      /* enum zt_ratelimit_unit */
    uint32_t burst;    /* 1..ZT_RATELIMIT_MAX_BURST, the bucket's capacity */
    uint8_t key;       /* enum zt_ratelimit_key */
    char *header;      /* KEY_HEADER: the name, lower case (heap) */
    uint32_t max_keys; /* keyed: 1..ZT_RATELIMIT_MAX_KEYS */
    struct zt_ratelimit_target *targets;
    size_t n_targets;
};

/* NULL is a no-op. */
void zt_ratelimit_policy_free(struct zt_ratelimit_policy *p);

struct zt_ratelimit_set;

struct zt_ratelimit_set *zt_ratelimit_set_new(void);
/* Takes ownership of p (heap). Only before zt_ratelimit_set_seal. A second
 * policy with the same ns/name replaces the first at sealing. */
void zt_ratelimit_set_add(struct zt_ratelimit_set *s, struct zt_ratelimit_policy *p);
/* Sorts, indexes and creates the buckets, exactly once (checking an
 * unsealed set is a bug). The policies are immutable from now on; the
 * buckets are the only state that changes, under their locks. */
void zt_ratelimit_set_seal(struct zt_ratelimit_set *s);
size_t zt_ratelimit_set_count(const struct zt_ratelimit_set *s);
/* The i-th policy in ns/name order (borrowed), NULL past the end. */
const struct zt_ratelimit_policy *zt_ratelimit_set_at(const struct zt_ratelimit_set *s, size_t i);
struct zt_ratelimit_set *zt_ratelimit_set_ref(struct zt_ratelimit_set *s);
/* NULL is a no-op. */
void zt_ratelimit_set_unref(struct zt_ratelimit_set *s);

/* Carries what old (sealed) learnt into s (sealed, never checked yet: call
 * it between zt_ratelimit_set_seal and publishing s). For each policy of s
 * with an ns/name old has too: its counters, and when its limit and key
 * are unchanged (requests, unit, burst, key; maxKeys may differ), its
 * buckets, with its key table unless that holds more keys than the new
 * maxKeys allows (those keys then start full). A changed limit starts
 * full. Both sets stay usable; tokens taken from old after the call (by
 * workers still holding it) are not carried. old NULL: nothing to do. */
void zt_ratelimit_set_inherit(struct zt_ratelimit_set *s, struct zt_ratelimit_set *old);

/* Counters of the i-th policy since the set was sealed (for metrics):
 * requests it let through, requests it limited (the deciding policy only,
 * so a limited request is counted once), and how many of its buckets exist
 * now (keyed: the table; the absent and overflow buckets aside). Returns
 * ZT_E_NOT_FOUND past the end. */
struct zt_ratelimit_stats {
    uint64_t passed, limited;
    uint64_t untracked; /* requests charged to the overflow bucket */
    size_t keys;
};
int zt_ratelimit_set_stats(struct zt_ratelimit_set *s, size_t i, struct zt_ratelimit_stats *out);

/* ---- checking ---- */

/* One request. Every pointer is borrowed for the call; NULL means absent.
 * - gateway_*: this waypoint's Gateway; service_*: the service the request
 *   was addressed to; route_*: the HTTPRoute (or, with route_is_grpc, the
 *   GRPCRoute) that took it, rule_name the name of its rule (NULL when
 *   unnamed); all NULL when not known.
 * - source_principal: the peer's SPIFFE ID, the value of a sourcePrincipal
 *   key. head: the request's fields, for a header key (the first field of
 *   that name is the value). */
struct zt_ratelimit_request {
    const char *gateway_ns, *gateway_name;
    const char *service_ns, *service_name;
    const char *route_ns, *route_name;
    const char *rule_name;
    bool route_is_grpc;
    const char *source_principal;
    const struct zt_http_head *head;
};

/* What decided. policy is borrowed from the set (valid while it is). */
struct zt_ratelimit_result {
    bool applied;   /* some policy applied (the rest is zero when not) */
    bool limited;   /* the check returned ZT_E_RATE_LIMITED */
    bool untracked; /* the deciding bucket was the policy's overflow one */
    size_t n_applied;
    const struct zt_ratelimit_policy *policy; /* the deciding policy */
    uint32_t limit;                           /* its requests per unit: x-ratelimit-limit */
    uint32_t burst;
    uint8_t unit;       /* enum zt_ratelimit_unit */
    uint32_t remaining; /* whole tokens left in its bucket: x-ratelimit-remaining */
    /* Until the bucket gains its next whole token (0 when full); when
     * limited, until a retry can pass. reset_s rounds up: x-ratelimit-reset. */
    uint64_t reset_ms;
    uint64_t reset_s;
};

/* Returns 0 (pass) or ZT_E_RATE_LIMITED; res (required) says why. s may be
 * NULL (no policies: pass). now_ms: see "Clocks" above. */
int zt_ratelimit_check(struct zt_ratelimit_set *s, const struct zt_ratelimit_request *rq,
                       uint64_t now_ms, struct zt_ratelimit_result *res);

#endif
