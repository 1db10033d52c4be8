/* Private interface between the authz evaluators: the reference (authz.c,
 * every policy of the snapshot visited) and the index (index.c, built once
 * per snapshot, visiting only what can apply). */
#ifndef ZT_AUTHZ_AUTHZ_INT_H
#define ZT_AUTHZ_AUTHZ_INT_H

#include "authz/authz.h"

#include <stdint.h>

/* The source identity split into views of the caller's string. ns and sa
 * are NULL when the identity lacks the td/ns/<ns>/sa/<sa> shape. */
struct zt_authz_ident {
    bool present;
    const char *principal; /* identity without "spiffe://" */
    size_t principal_len;
    const char *ns;
    size_t ns_len;
    const char *sa;
    size_t sa_len;
};

/* Splits id (borrowed, may be NULL) into *out. */
void zt_authz_ident_parse(const char *id, struct zt_authz_ident *out);

/* What an evaluator found; zt_authz_check_ex turns it into a return code
 * and a reason. */
struct zt_authz_verdict {
    struct zt_authz_result res;
    bool has_allow; /* some enforced ALLOW policy applies */
    bool allowed;   /* ... and one of them matched */
};

struct zt_authz_index;

/* Builds the index of every policy of s (borrowed: the index keeps pointers
 * into s's policy records, never into its workloads or services, so it must
 * not outlive the last snapshot holding those records). Never NULL; aborts
 * on OOM. */
struct zt_authz_index *zt_authz_index_build(const struct zt_state *s);
void zt_authz_index_free(struct zt_authz_index *idx);
/* The index of s (borrowed from s), built on first use. Snapshots with the
 * same policy records share one index (zt_state_derived), which tests
 * observe by comparing the pointers. */
const struct zt_authz_index *zt_authz_index_of(const struct zt_state *s);

/* Evaluates the policies applicable to dst_wl, with exactly the results of
 * the reference evaluator. The dry-run fields of the verdict are filled only
 * with want_dry_run. id is conn's parsed identity. Never allocates. */
void zt_authz_index_eval(const struct zt_authz_index *idx, const struct zt_workload *dst_wl,
                         const struct zt_authz_conn *conn, const struct zt_authz_ident *id,
                         bool want_dry_run, struct zt_authz_verdict *out);

/* ---------------------------------------------------------------- compiled policies
 *
 * The index's form of a policy (compile.c), shared with the index proper
 * (index.c). Everything lives in an arena owned by the index. */

struct zt_authz_chunk;
struct zt_authz_cclause;
struct zt_authz_group;

struct zt_authz_arena {
    struct zt_authz_chunk *head;
    size_t next_size;
    size_t bytes; /* total mapped */
};

#define ZT_AUTHZ_NEW(a, type, n) ((type *)zt_authz_arena_alloc((a), sizeof(type) * (size_t)(n)))

enum zt_authz_guard {
    ZT_AUTHZ_GUARD_NONE = 0,
    ZT_AUTHZ_GUARD_PRIN,
    ZT_AUTHZ_GUARD_NS,
    ZT_AUTHZ_GUARD_SRC,
    ZT_AUTHZ_GUARD_PORT
};

/* A guard value: a string (PRIN, NS: s, len), a CIDR (SRC: s is the 16
 * address bytes with host bits clear, len is family << 8 | prefix) or a port
 * (PORT: len). */
struct zt_authz_key {
    uint64_t h;
    const char *s;
    uint32_t len;
    uint8_t kind; /* enum zt_authz_guard */
};

struct zt_authz_crule {
    uint32_t n_clauses; /* 0: matches every connection */
    const struct zt_authz_cclause *clauses;
    uint8_t guard; /* enum zt_authz_guard */
    uint32_t n_keys;
    const struct zt_authz_key *keys;
};

enum zt_authz_class {
    ZT_AUTHZ_CLS_DENY,
    ZT_AUTHZ_CLS_DRY_DENY,
    ZT_AUTHZ_CLS_ALLOW,
    ZT_AUTHZ_CLS_DRY_ALLOW
};

struct zt_authz_group;

struct zt_authz_cpolicy {
    const struct zt_policy *p;
    uint32_t ord; /* position in the snapshot (key order) */
    uint8_t cls;  /* enum zt_authz_class */
    uint32_t n_rules;
    const struct zt_authz_crule *rules;
    const struct zt_authz_group *home; /* GLOBAL/NAMESPACE: the group holding it */
};

/* ---------------------------------------------------------------- the connection */

/* Every attribute of a connection a test or a guard reads, computed once. */
struct zt_authz_probe {
    const struct zt_authz_ident *id;
    const char *ns; /* "" when the identity has no namespace */
    size_t ns_len;
    uint64_t h_prin, h_ns, h_sa;
    struct zt_ip src, dst; /* canonical */
    uint16_t port;
};

/* ---------------------------------------------------------------- compile.c */

/* Returns n zeroed bytes from the arena, 8-byte aligned; aborts on OOM. */
void *zt_authz_arena_alloc(struct zt_authz_arena *a, size_t n);
/* Releases every allocation of the arena. */
void zt_authz_arena_free(struct zt_authz_arena *a);

/* Hashes of configuration strings and values (equality is always confirmed
 * on the bytes). */
uint64_t zt_authz_hash(const void *p, size_t n);
uint64_t zt_authz_mix(uint64_t h);

/* The guard key of source CIDR addr16/prefix (addr16: 16 bytes, host bits
 * clear, borrowed for the key's life). */
struct zt_authz_key zt_authz_src_key(const char *addr16, uint8_t family, unsigned prefix);
bool zt_authz_key_eq(const struct zt_authz_key *a, const struct zt_authz_key *b);
/* ip's address with the bits from prefix on cleared. */
void zt_authz_masked(const struct zt_ip *ip, unsigned prefix, uint8_t out[16]);

/* Compiles p (borrowed: the result points into it) into *cp from arena a;
 * ord is p's position in the snapshot. Sets everything but cp->home. */
void zt_authz_compile_policy(struct zt_authz_arena *a, const struct zt_policy *p, uint32_t ord,
                             struct zt_authz_cpolicy *cp);

/* Computes the attributes of connection c with parsed identity id (both
 * borrowed for the probe's life). */
void zt_authz_probe_init(struct zt_authz_probe *pr, const struct zt_authz_conn *c,
                         const struct zt_authz_ident *id);
/* Whether rule r matches: the full evaluation. */
bool zt_authz_rule_ok(const struct zt_authz_crule *r, const struct zt_authz_probe *pr);
/* Whether the connection has a value r's guard asks for: a cheap filter
 * before zt_authz_rule_ok (true for a rule without a guard). */
bool zt_authz_guard_ok(const struct zt_authz_crule *r, const struct zt_authz_probe *pr);

#endif
