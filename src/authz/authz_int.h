/* Private interface between the authz evaluators: the reference (authz.c,
 * every policy of the snapshot visited) and the index (index.c, built once
 * per snapshot, visiting only what can apply). */
#ifndef ZT_AUTHZ_AUTHZ_INT_H
#define ZT_AUTHZ_AUTHZ_INT_H

#include "authz/authz.h"

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
 * into s's policies, so it must not outlive s). Never NULL; aborts on OOM. */
struct zt_authz_index *zt_authz_index_build(const struct zt_state *s);
void zt_authz_index_free(struct zt_authz_index *idx);

/* Evaluates the policies applicable to dst_wl, with exactly the results of
 * the reference evaluator. The dry-run fields of the verdict are filled only
 * with want_dry_run. id is conn's parsed identity. Never allocates. */
void zt_authz_index_eval(const struct zt_authz_index *idx, const struct zt_workload *dst_wl,
                         const struct zt_authz_conn *conn, const struct zt_authz_ident *id,
                         bool want_dry_run, struct zt_authz_verdict *out);

#endif
