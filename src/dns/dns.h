/* The per-pod DNS proxy (wire facts 9.1): what to answer, sans-I/O.
 *
 * zt_dns_answer() takes one query as it arrived (bytes), the snapshot and
 * the pod's own workload, and decides: answer it here (mesh names: service
 * VIPs, headless services, with Istio's alias and wildcard rules), forward
 * it unchanged to the upstream resolvers (any other name or type), or drop
 * it (not a query at all). Messages are parsed and built with ldns: there
 * is no DNS codec of our own. The I/O around it is server.h. */
#ifndef ZT_DNS_DNS_H
#define ZT_DNS_DNS_H

#include "state/state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A DNS name in presentation form is at most 253 characters plus the root
 * dot; a message over TCP at most 65535 bytes; over UDP without EDNS 512. */
#define ZT_DNS_NAME_MAX 254
#define ZT_DNS_MSG_MAX 65535
#define ZT_DNS_UDP_MIN 512
/* The largest UDP answer we build ourselves, whatever EDNS offers (the
 * size DNS flag day 2020 settled on to avoid fragmentation). */
#define ZT_DNS_UDP_OWN_MAX 1232
#define ZT_DNS_TTL 30

struct zt_dns_opts {
    const char *cluster_domain; /* "cluster.local" */
    bool ipv6_enabled;          /* IPV6_ENABLED: false suppresses AAAA records */
    const char *preferred_ns;   /* PREFERED_SERVICE_NAMESPACE, NULL or "" = none */
};

enum zt_dns_verdict {
    ZT_DNS_DROP = 0,    /* not a query (a response, or shorter than a header): no reply */
    ZT_DNS_ANSWER = 1,  /* *out holds the reply */
    ZT_DNS_FORWARD = 2, /* not ours: send the query upstream as it came */
};

/* What a query asked, for logs and metrics. */
struct zt_dns_query {
    uint16_t id;
    uint16_t qtype;                 /* 0 when the message had no question */
    char name[ZT_DNS_NAME_MAX + 1]; /* as asked, presentation form, "" when none */
    size_t max_udp;                 /* the client's UDP payload limit (512, or its EDNS size) */
    const char *result;             /* "success", "no records", "forward", "formerr", ... */
    unsigned n_answers;             /* address records in the reply */
};

/* Decides what to do with the query msg[0..len) from `client` (the pod's
 * workload; NULL while it is unknown, which answers SERVFAIL as Istio
 * does), received over UDP (`udp`) or TCP. For ZT_DNS_ANSWER, *out is a
 * reply allocated with malloc (the caller frees it) of *out_len bytes; over
 * UDP a reply longer than the client's limit (q->max_udp) goes with TC set
 * and no records, and the client retries over TCP. `random` orders the
 * addresses. s, client and opts are borrowed for the call; s may be NULL
 * only with client NULL. Never fails: a malformed query gets FORMERR, an
 * opcode other than QUERY NOTIMP; only out-of-memory aborts. */
enum zt_dns_verdict zt_dns_answer(const struct zt_state *s, const struct zt_workload *client,
                                  const struct zt_dns_opts *opts, const uint8_t *msg, size_t len,
                                  bool udp, uint32_t random, uint8_t **out, size_t *out_len,
                                  struct zt_dns_query *q);

/* Writes id into a message's header (the forwarder gives each upstream
 * query an id of its own). msg must hold at least a header (12 bytes). */
void zt_dns_set_id(uint8_t *msg, uint16_t id);

/* The id in a message's header (at least 12 bytes). */
uint16_t zt_dns_get_id(const uint8_t *msg);

/* Whether `reply` answers `query` (the bytes sent upstream): a response
 * with the same id and question. Anything else must be dropped: it could
 * be spoofed. Returns 0 (with *truncated: the upstream set TC) or
 * ZT_E_PROTO. */
int zt_dns_reply_matches(const uint8_t *query, size_t qlen, const uint8_t *reply, size_t rlen,
                         bool *truncated);

/* A matching upstream reply as the client gets it: the same message
 * written anew with client_id and, when longer than max_reply, cut to
 * header and question with TC set. Returns it malloc'd (*out_len bytes),
 * or NULL if it cannot be parsed. */
uint8_t *zt_dns_reply_for_client(const uint8_t *reply, size_t rlen, uint16_t client_id,
                                 size_t max_reply, size_t *out_len);

/* A reply with rcode `rcode` (SERVFAIL: 2) and the question of `query`, or
 * NULL if the query cannot be parsed. */
uint8_t *zt_dns_error_reply(const uint8_t *query, size_t qlen, int rcode, size_t *out_len);

/* The type's mnemonic in lower case ("a", "aaaa", "mx"; "type65280" for
 * unknown ones) into buf; returns buf. */
const char *zt_dns_type_str(uint16_t qtype, char *buf, size_t cap);

#endif
