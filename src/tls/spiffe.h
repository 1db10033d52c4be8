/* SPIFFE workload identities as Istio uses them:
 *
 *   spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>
 *
 * Parsing is strict: the "spiffe://" prefix, then exactly five '/'-separated
 * parts, the second being the literal "ns" and the fourth the literal "sa",
 * none of them empty. Each part has a length cap (below); over-long ids, bytes
 * below 0x21 (controls, space, NUL) and 0x7f are rejected. Comparison is
 * byte-exact (Istio compares these strings as-is). */
#ifndef ZT_TLS_SPIFFE_H
#define ZT_TLS_SPIFFE_H

#include <stdbool.h>
#include <stddef.h>

#define ZT_SPIFFE_TD_MAX 255 /* trust domain: a DNS name */
#define ZT_SPIFFE_NS_MAX 63  /* Kubernetes namespace: DNS label */
#define ZT_SPIFFE_SA_MAX 253 /* service account: DNS subdomain */
/* Longest formatted id, without the terminating NUL. */
#define ZT_SPIFFE_ID_MAX                                                                           \
    (sizeof("spiffe://") - 1 + ZT_SPIFFE_TD_MAX + sizeof("/ns/") - 1 + ZT_SPIFFE_NS_MAX +          \
     sizeof("/sa/") - 1 + ZT_SPIFFE_SA_MAX)

/* A parsed identity. Plain value type: copy freely. Every field is
 * NUL-terminated and non-empty once zt_spiffe_parse() has succeeded. */
struct zt_spiffe_id {
    char trust_domain[ZT_SPIFFE_TD_MAX + 1];
    char ns[ZT_SPIFFE_NS_MAX + 1];
    char sa[ZT_SPIFFE_SA_MAX + 1];
};

/* Parses `len` bytes at `s` (no NUL terminator needed; an embedded NUL is an
 * error). On success fills *out and returns 0; otherwise returns
 * ZT_E_IDENTITY and leaves *out zeroed. */
int zt_spiffe_parse(const char *s, size_t len, struct zt_spiffe_id *out);

/* Builds an id from its three parts (NUL-terminated strings), applying the
 * same checks as the parser. Returns 0 or ZT_E_IDENTITY. */
int zt_spiffe_make(const char *trust_domain, const char *ns, const char *sa,
                   struct zt_spiffe_id *out);

/* Writes "spiffe://td/ns/x/sa/y" and a NUL into buf. Returns the length
 * written (without NUL), or ZT_E_TOO_BIG if cap is too small (buf then holds
 * an empty string when cap > 0). A buffer of ZT_SPIFFE_ID_MAX + 1 always fits. */
int zt_spiffe_format(const struct zt_spiffe_id *id, char *buf, size_t cap);

bool zt_spiffe_eq(const struct zt_spiffe_id *a, const struct zt_spiffe_id *b);

#endif
