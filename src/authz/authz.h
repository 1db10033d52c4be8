/* L4 authorization (wire facts section 6) as a pure function.
 *
 * zt_authz_check() decides whether a connection to a local destination
 * workload is allowed by the policies of a state snapshot. It never logs;
 * the caller logs the returned reason and the dry-run outcome.
 *
 * A check consults an index of the snapshot's policies, built on the first
 * check of a snapshot (or by zt_authz_prepare) and kept with the snapshot,
 * so that its cost depends on the policies that can apply to the
 * destination and on the rules whose principal, namespace, source block or
 * port the connection has, not on the number of policies. Apart from that
 * one build (which allocates, and which a concurrent check of the same
 * snapshot waits for), a check never allocates. */
#ifndef ZT_AUTHZ_AUTHZ_H
#define ZT_AUTHZ_AUTHZ_H

#include "state/state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The attributes of one connection. src_identity is the peer's full SPIFFE
 * ID ("spiffe://td/ns/NS/sa/SA") from its verified certificate, or NULL for
 * plaintext. dst_port is the final target port on the workload (never
 * 15008). All pointers are borrowed for the duration of the call. */
struct zt_authz_conn {
    const char *src_identity;
    struct zt_ip src_ip;
    uint16_t src_port;
    struct zt_ip dst_ip;
    uint16_t dst_port;
};

/* Details for logging. Policy pointers are borrowed from the snapshot. */
struct zt_authz_result {
    const struct zt_policy *denied_by;         /* enforced DENY that matched */
    const struct zt_policy *dry_run_denied_by; /* first dry-run DENY that matched */
    bool has_dry_run_allow;                    /* some dry-run ALLOW applies */
    bool dry_run_allow_matched;                /* ... and one of them matched */
};

/* Builds the policy index of s now, if no check did yet; for whoever
 * publishes a snapshot and would rather pay the build there than in the
 * first connection. s borrowed. */
void zt_authz_prepare(const struct zt_state *s);

/* Returns 0 (allow) or ZT_E_DENIED with reason set to
 * "explicitly denied by <ns>/<name>" or "allow policies exist, but none
 * allowed". reason may be NULL; res may be NULL. s and dst_wl borrowed. */
int zt_authz_check(const struct zt_state *s, const struct zt_workload *dst_wl,
                   const struct zt_authz_conn *conn, char *reason, size_t reason_len);
int zt_authz_check_ex(const struct zt_state *s, const struct zt_workload *dst_wl,
                      const struct zt_authz_conn *conn, struct zt_authz_result *res, char *reason,
                      size_t reason_len);

/* The reference evaluator: the same contract as zt_authz_check_ex, computed
 * by visiting every policy of the snapshot and every rule of the applicable
 * ones. Kept for the differential tests and the benchmark. */
int zt_authz_check_linear(const struct zt_state *s, const struct zt_workload *dst_wl,
                          const struct zt_authz_conn *conn, struct zt_authz_result *res,
                          char *reason, size_t reason_len);

/* True if the policy matches the connection (any rule). Exposed for the
 * re-evaluation of live connections and for tests. */
bool zt_authz_policy_matches(const struct zt_policy *p, const struct zt_authz_conn *conn);

#endif
