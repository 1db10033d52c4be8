/* Addresses of hostname endpoints: see resolver.h. */
#include "dns/resolver.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/list.h"
#include "base/strmap.h"

#include <ldns/ldns.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NEGATIVE_TTL_DEFAULT 5 /* seconds, when the answer has no SOA */

/* A name's cache entry, and its query while one is under way. */
struct entry {
    struct zt_dns_resolver *r;
    char host[ZT_DNS_NAME_MAX + 1]; /* lower case, no root dot */
    struct zt_list_node age;        /* in r->entries, oldest first */
    /* The answer. */
    bool has_answer;
    int err; /* 0 or ZT_E_NOT_FOUND */
    struct zt_ip addrs[ZT_DNS_RESOLVE_MAX];
    size_t n;
    uint64_t expires_ms;
    /* The query: one exchange per type (A, AAAA), the lookups waiting. */
    struct zt_dns_exchange *x[2];
    unsigned pending; /* exchanges not done yet */
    bool upstream_failed;
    uint32_t ttl; /* smallest TTL seen this round */
    struct zt_list waiters;
};

struct zt_dns_lookup {
    struct zt_list_node link;
    zt_dns_lookup_cb *cb;
    void *ud;
};

struct zt_dns_resolver {
    uv_loop_t *loop;
    const struct zt_dns_upstreams *ups;
    bool ipv6;
    zt_dns_socket_fn *sock;
    void *sock_ud;
    struct zt_strmap by_host; /* host -> struct entry * (as the value) */
    struct zt_list entries;
    size_t n_entries;
};

struct zt_dns_resolver *zt_dns_resolver_new(uv_loop_t *loop, const struct zt_dns_upstreams *ups,
                                            bool ipv6, zt_dns_socket_fn *sock, void *sock_ud)
{
    struct zt_dns_resolver *r = zt_xcalloc(1, sizeof(*r));
    r->loop = loop;
    r->ups = ups;
    r->ipv6 = ipv6;
    r->sock = sock;
    r->sock_ud = sock_ud;
    zt_strmap_init(&r->by_host, false);
    zt_list_init(&r->entries);
    return r;
}

static void entry_free(struct entry *e)
{
    struct zt_dns_resolver *r = e->r;
    for (int i = 0; i < 2; i++)
        zt_dns_exchange_cancel(e->x[i]);
    while (!zt_list_empty(&e->waiters)) {
        struct zt_dns_lookup *l =
            zt_list_entry(zt_list_first(&e->waiters), struct zt_dns_lookup, link);
        zt_list_remove(&l->link);
        free(l);
    }
    zt_strmap_del(&r->by_host, e->host);
    zt_list_remove(&e->age);
    r->n_entries--;
    free(e);
}

void zt_dns_resolver_free(struct zt_dns_resolver *r)
{
    if (!r)
        return;
    while (!zt_list_empty(&r->entries))
        entry_free(zt_list_entry(zt_list_first(&r->entries), struct entry, age));
    zt_strmap_clear(&r->by_host);
    free(r);
}

static uint64_t now_ms(const struct zt_dns_resolver *r)
{
    return uv_now(r->loop);
}

/* The SOA's negative TTL (RFC 2308: the smaller of its TTL and MINIMUM). */
static uint32_t negative_ttl(const ldns_pkt *p)
{
    const ldns_rr_list *auth = ldns_pkt_authority(p);
    for (size_t i = 0; auth && i < ldns_rr_list_rr_count(auth); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(auth, i);
        if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA || ldns_rr_rd_count(rr) < 7)
            continue;
        uint32_t min = ldns_rdf2native_int32(ldns_rr_rdf(rr, 6));
        uint32_t ttl = ldns_rr_ttl(rr);
        return ttl < min ? ttl : min;
    }
    return NEGATIVE_TTL_DEFAULT;
}

/* Takes the A or AAAA records of a reply (a CNAME chain's target ones
 * included: the upstream followed it). */
static void take_reply(struct entry *e, const uint8_t *msg, size_t len, ldns_rr_type type)
{
    ldns_pkt *p = NULL;
    if (!msg || ldns_wire2pkt(&p, msg, len) != LDNS_STATUS_OK) {
        e->upstream_failed = true;
        return;
    }
    ldns_pkt_rcode rc = ldns_pkt_get_rcode(p);
    if (rc != LDNS_RCODE_NOERROR && rc != LDNS_RCODE_NXDOMAIN) {
        e->upstream_failed = true; /* SERVFAIL, REFUSED: not an answer */
        ldns_pkt_free(p);
        return;
    }
    const ldns_rr_list *an = ldns_pkt_answer(p);
    size_t before = e->n;
    for (size_t i = 0; an && i < ldns_rr_list_rr_count(an); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(an, i);
        if (ldns_rr_get_type(rr) != type || ldns_rr_rd_count(rr) < 1 || e->n == ZT_DNS_RESOLVE_MAX)
            continue;
        const ldns_rdf *d = ldns_rr_rdf(rr, 0);
        if (zt_ip_from_bytes(ldns_rdf_data(d), ldns_rdf_size(d), &e->addrs[e->n]) < 0)
            continue;
        e->n++;
        if (ldns_rr_ttl(rr) < e->ttl)
            e->ttl = ldns_rr_ttl(rr);
    }
    if (e->n == before) {
        uint32_t neg = negative_ttl(p);
        if (neg > ZT_DNS_NEGATIVE_TTL_MAX)
            neg = ZT_DNS_NEGATIVE_TTL_MAX;
        if (neg < e->ttl)
            e->ttl = neg;
    }
    ldns_pkt_free(p);
}

/* Both queries are done: the answer is cached and every waiter told. */
static void complete(struct entry *e)
{
    int err;
    if (e->n > 0)
        err = 0;
    else if (e->upstream_failed)
        err = ZT_E_UPSTREAM;
    else
        err = ZT_E_NOT_FOUND;
    /* A failure to reach any upstream is not remembered: the next
     * connection asks again. */
    e->has_answer = err != ZT_E_UPSTREAM;
    e->err = err;
    if (e->ttl > ZT_DNS_POSITIVE_TTL_MAX)
        e->ttl = ZT_DNS_POSITIVE_TTL_MAX;
    e->expires_ms = now_ms(e->r) + (uint64_t)e->ttl * 1000;
    struct zt_ip addrs[ZT_DNS_RESOLVE_MAX];
    size_t n = e->n;
    memcpy(addrs, e->addrs, sizeof(addrs));
    /* Callbacks may start or cancel lookups: take each waiter off first. */
    while (!zt_list_empty(&e->waiters)) {
        struct zt_dns_lookup *l =
            zt_list_entry(zt_list_first(&e->waiters), struct zt_dns_lookup, link);
        zt_list_remove(&l->link);
        zt_dns_lookup_cb *cb = l->cb;
        void *ud = l->ud;
        free(l);
        cb(ud, err, addrs, n);
    }
    /* A failure is not kept, unless a callback asked again meanwhile. */
    if (!e->has_answer && e->pending == 0 && zt_list_empty(&e->waiters))
        entry_free(e);
}

static void on_a(void *ud, const uint8_t *reply, size_t len)
{
    struct entry *e = ud;
    e->x[0] = NULL;
    take_reply(e, reply, len, LDNS_RR_TYPE_A);
    if (--e->pending == 0)
        complete(e);
}

static void on_aaaa(void *ud, const uint8_t *reply, size_t len)
{
    struct entry *e = ud;
    e->x[1] = NULL;
    take_reply(e, reply, len, LDNS_RR_TYPE_AAAA);
    if (--e->pending == 0)
        complete(e);
}

static struct zt_dns_exchange *ask(struct entry *e, ldns_rr_type type, zt_dns_exchange_cb *cb)
{
    ldns_rdf *name = ldns_dname_new_frm_str(e->host);
    if (!name)
        return NULL;
    ldns_pkt *p = ldns_pkt_query_new(name, type, LDNS_RR_CLASS_IN, LDNS_RD);
    uint8_t *wire = NULL;
    size_t len = 0;
    if (!p || ldns_pkt2wire(&wire, p, &len) != LDNS_STATUS_OK) {
        ldns_pkt_free(p);
        return NULL;
    }
    ldns_pkt_free(p);
    struct zt_dns_exchange *x = zt_dns_exchange_start(e->r->loop, e->r->ups, e->r->sock,
                                                      e->r->sock_ud, wire, len, true, cb, e);
    free(wire);
    return x;
}

/* Makes room for one more name: the oldest answered one goes. */
static void evict(struct zt_dns_resolver *r)
{
    for (struct zt_list_node *n = zt_list_first(&r->entries); n && r->n_entries >= ZT_DNS_CACHE_MAX;
         n = zt_list_next(&r->entries, n)) {
        struct entry *e = zt_list_entry(n, struct entry, age);
        if (e->pending == 0) {
            entry_free(e);
            return;
        }
    }
}

static int start_query(struct entry *e)
{
    e->n = 0;
    e->upstream_failed = false;
    e->ttl = UINT32_MAX;
    e->pending = 0;
    if (e->r->ups->n == 0)
        return ZT_E_UPSTREAM;
    if ((e->x[0] = ask(e, LDNS_RR_TYPE_A, on_a)))
        e->pending++;
    if (e->r->ipv6 && (e->x[1] = ask(e, LDNS_RR_TYPE_AAAA, on_aaaa)))
        e->pending++;
    return e->pending ? 0 : ZT_E_UPSTREAM;
}

int zt_dns_resolver_lookup(struct zt_dns_resolver *r, const char *host, struct zt_ip *addrs,
                           size_t cap, size_t *n, zt_dns_lookup_cb *cb, void *ud,
                           struct zt_dns_lookup **out)
{
    char key[ZT_DNS_NAME_MAX + 1];
    size_t len = strlen(host);
    *n = 0;
    *out = NULL;
    if (len && host[len - 1] == '.')
        len--;
    if (len == 0 || len > ZT_DNS_NAME_MAX - 1)
        return ZT_E_TOO_BIG;
    for (size_t i = 0; i < len; i++)
        key[i] = (char)(host[i] >= 'A' && host[i] <= 'Z' ? host[i] + 32 : host[i]);
    key[len] = 0;
    const struct zt_strmap_entry *me = zt_strmap_find(&r->by_host, key);
    struct entry *e = me ? (struct entry *)me->value : NULL;
    if (e && e->has_answer && now_ms(r) < e->expires_ms) {
        size_t k = e->n < cap ? e->n : cap;
        memcpy(addrs, e->addrs, k * sizeof(*addrs));
        *n = k;
        return e->err;
    }
    if (!e) {
        evict(r);
        e = zt_xcalloc(1, sizeof(*e));
        e->r = r;
        memcpy(e->host, key, len + 1);
        zt_list_init(&e->waiters);
        zt_list_insert_tail(&r->entries, &e->age);
        r->n_entries++;
        zt_strmap_put(&r->by_host, e->host, (const char *)e);
    }
    if (e->pending == 0) {
        /* Expired, or never asked: ask now, keeping the stale answer out. */
        e->has_answer = false;
        int rc = start_query(e);
        if (rc < 0) {
            if (zt_list_empty(&e->waiters))
                entry_free(e);
            return rc;
        }
    }
    struct zt_dns_lookup *l = zt_xcalloc(1, sizeof(*l));
    l->cb = cb;
    l->ud = ud;
    zt_list_insert_tail(&e->waiters, &l->link);
    *out = l;
    return -EAGAIN;
}

void zt_dns_lookup_cancel(struct zt_dns_lookup *l)
{
    if (!l)
        return;
    zt_list_remove(&l->link);
    free(l);
}
