/* What the DNS proxy answers itself (wire facts 9.1), as Istio's ztunnel:
 * A and AAAA queries for names the mesh knows. A name is tried as asked,
 * as the Kubernetes names it could be short for in the client's namespace,
 * and with one of the pod's search domains taken off; each of those first
 * exactly, then as wildcards of decreasing length. The first service found
 * answers: its VIPs on the client's network, or for a headless service one
 * address per endpoint. Everything else goes to the upstream resolvers. */
#include "dns/dns.h"

#include "base/err.h"

#include <ldns/ldns.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Every alias of a name: itself, up to 2 Kubernetes expansions, and for
 * each of 3 search domains the stripped name and its expansions. */
#define MAX_ALIASES 16
/* A service's VIPs or a headless service's endpoints in one answer. */
#define MAX_ADDRS 1024

struct alias {
    char name[ZT_DNS_NAME_MAX + 1];
    const char *stripped; /* points into another alias's storage, or NULL */
};

struct aliases {
    struct alias v[MAX_ALIASES];
    char stripped[3][ZT_DNS_NAME_MAX + 1];
    size_t n;
};

static size_t count_labels(const char *name)
{
    size_t n = 1;
    for (const char *p = name; *p; p++)
        n += *p == '.';
    return n;
}

/* True if name ends in ".domain" (a strict subdomain). */
static bool has_domain(const char *name, const char *domain)
{
    size_t n = strlen(name), d = strlen(domain);
    return n > d + 1 && name[n - d - 1] == '.' && strcasecmp(name + n - d, domain) == 0;
}

static bool last_label_is(const char *name, const char *label)
{
    const char *dot = strrchr(name, '.');
    return dot && strcasecmp(dot + 1, label) == 0;
}

static void add_alias(struct aliases *a, const char *name, const char *stripped)
{
    if (a->n == MAX_ALIASES || strlen(name) > ZT_DNS_NAME_MAX - 1)
        return; /* longer than a DNS name can be: nothing in the mesh has it */
    for (size_t i = 0; i < a->n; i++)
        if (strcasecmp(a->v[i].name, name) == 0)
            return;
    snprintf(a->v[a->n].name, sizeof(a->v[a->n].name), "%s", name);
    a->v[a->n].stripped = stripped;
    a->n++;
}

static void add_join(struct aliases *a, const char *name, const char *suffix, const char *stripped)
{
    char buf[2 * ZT_DNS_NAME_MAX + 2];
    snprintf(buf, sizeof(buf), "%s.%s", name, suffix);
    add_alias(a, buf, stripped);
}

/* The Kubernetes names `name` can be short for, from a client in ns:
 * <svc>, <svc>.<ns>, <svc>.<ns>.svc, and the pod forms
 * <host>.<subdomain>[.<ns>[.svc]]. */
static void add_kube(struct aliases *a, const char *name, const char *ns_domain,
                     const char *svc_domain, const char *cd, const char *stripped)
{
    switch (count_labels(name)) {
    case 1:
        add_join(a, name, ns_domain, stripped);
        break;
    case 2:
        add_join(a, name, svc_domain, stripped);
        add_join(a, name, ns_domain, stripped);
        break;
    case 3:
        if (last_label_is(name, "svc"))
            add_join(a, name, cd, stripped);
        add_join(a, name, svc_domain, stripped);
        break;
    case 4:
        if (last_label_is(name, "svc"))
            add_join(a, name, cd, stripped);
        break;
    default:
        break;
    }
}

static void get_aliases(struct aliases *a, const char *name, const char *ns, const char *cd)
{
    char ns_domain[ZT_DNS_NAME_MAX * 2], svc_domain[ZT_DNS_NAME_MAX + 8];
    snprintf(svc_domain, sizeof(svc_domain), "svc.%s", cd);
    snprintf(ns_domain, sizeof(ns_domain), "%s.%s", ns, svc_domain);
    /* The search list of a pod in shared mode, as Istio's ztunnel assumes. */
    const char *search[3] = {ns_domain, svc_domain, cd};
    a->n = 0;
    add_alias(a, name, NULL);
    add_kube(a, name, ns_domain, svc_domain, cd, NULL);
    for (size_t i = 0; i < 3; i++) {
        if (!has_domain(name, search[i]))
            continue;
        size_t len = strlen(name) - strlen(search[i]) - 1;
        char *s = a->stripped[i];
        snprintf(s, sizeof(a->stripped[i]), "%.*s", (int)len, name);
        add_alias(a, s, s);
        add_kube(a, s, ns_domain, svc_domain, cd, s);
    }
}

static bool visible_to(const struct zt_service *svc, const char *ns)
{
    return svc->visibility != ZT_VIS_NAMESPACE || strcmp(svc->namespace, ns) == 0;
}

/* Istio's choice among services of one hostname: the client's namespace
 * at once; else the last canonical one; else one in the preferred
 * namespace; else the first. */
static const struct zt_service *best_match(const struct zt_service *const *v, size_t n,
                                           const struct zt_workload *client,
                                           const struct zt_dns_opts *o, const char *svc_suffix)
{
    enum { NONE, FIRST, PREFERRED, CANONICAL } kind = NONE;
    const struct zt_service *best = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct zt_service *svc = v[i];
        /* Without a VIP only Kubernetes headless services are ours; other
         * VIP-less hosts (DNS ServiceEntries) are left to the upstream. */
        if (svc->n_vips == 0 && !has_domain(svc->hostname, svc_suffix))
            continue;
        if (!visible_to(svc, client->namespace))
            continue;
        if (strcmp(svc->namespace, client->namespace) == 0)
            return svc;
        if (svc->canonical) {
            kind = CANONICAL;
            best = svc;
        } else if (o->preferred_ns && o->preferred_ns[0] &&
                   strcmp(o->preferred_ns, svc->namespace) == 0 && kind != CANONICAL) {
            kind = PREFERRED;
            best = svc;
        } else if (kind == NONE) {
            kind = FIRST;
            best = svc;
        }
    }
    return best;
}

struct match {
    const struct zt_service *svc;
    const struct zt_workload *pod; /* <pod>.<headless service>: that endpoint */
    const struct alias *alias;
    bool wildcard;
};

static const struct zt_service *probe(const struct zt_state *s, const struct zt_workload *client,
                                      const struct zt_dns_opts *o, const char *svc_suffix,
                                      const char *prefix, const char *host)
{
    char name[ZT_DNS_NAME_MAX + 3];
    snprintf(name, sizeof(name), "%s%s", prefix, host);
    const struct zt_service *const *v;
    size_t n = zt_state_services_by_hostname(s, name, &v);
    return n ? best_match(v, n, client, o, svc_suffix) : NULL;
}

/* <pod>.<service host>: the endpoint of a headless Kubernetes service
 * named <pod> (a StatefulSet's pods have such names). Istio's ztunnel
 * leaves these to kube-dns; answering them here keeps them working when
 * the proxy's upstream is not the cluster's DNS. */
static const struct zt_workload *probe_pod(const struct zt_state *s,
                                           const struct zt_workload *client,
                                           const struct zt_dns_opts *o, const char *svc_suffix,
                                           const char *alias)
{
    const char *dot = strchr(alias, '.');
    if (!dot || dot == alias)
        return NULL;
    const struct zt_service *svc = probe(s, client, o, svc_suffix, "", dot + 1);
    if (!svc || svc->n_vips)
        return NULL;
    size_t len = (size_t)(dot - alias);
    const struct zt_workload *const *eps;
    size_t n = zt_state_service_endpoints(s, svc, &eps);
    for (size_t i = 0; i < n; i++)
        if (strlen(eps[i]->name) == len && strncasecmp(eps[i]->name, alias, len) == 0)
            return eps[i];
    return NULL;
}

/* Tries every alias of name (kept in *a, which m points into), each first
 * as it is (a service, then a headless service's pod), then as wildcards
 * dropping one label at a time: for www.example.com, *.example.com then
 * *.com. */
static bool find_server(const struct zt_state *s, const struct zt_workload *client,
                        const struct zt_dns_opts *o, const char *name, struct aliases *a,
                        struct match *m)
{
    char svc_suffix[ZT_DNS_NAME_MAX + 8];
    snprintf(svc_suffix, sizeof(svc_suffix), "svc.%s", o->cluster_domain);
    get_aliases(a, name, client->namespace, o->cluster_domain);
    for (size_t i = 0; i < a->n; i++) {
        const char *alias = a->v[i].name;
        m->alias = &a->v[i];
        m->wildcard = false;
        if ((m->svc = probe(s, client, o, svc_suffix, "", alias)))
            return true;
        if ((m->pod = probe_pod(s, client, o, svc_suffix, alias)))
            return true;
        m->wildcard = true;
        for (const char *dot = strchr(alias, '.'); dot; dot = strchr(dot + 1, '.'))
            if (dot[1] && (m->svc = probe(s, client, o, svc_suffix, "*.", dot + 1)))
                return true;
    }
    return false;
}

static bool family_allowed(const struct zt_service *svc, bool aaaa, const struct zt_dns_opts *o)
{
    if (aaaa && !o->ipv6_enabled)
        return false;
    if (svc->ip_families == ZT_IPF_IPV4_ONLY && aaaa)
        return false;
    if (svc->ip_families == ZT_IPF_IPV6_ONLY && !aaaa)
        return false;
    return true;
}

static size_t get_addresses(const struct zt_state *s, const struct zt_workload *client,
                            const struct zt_service *svc, int family, struct zt_ip *out)
{
    size_t n = 0;
    if (svc->n_vips) {
        for (size_t i = 0; i < svc->n_vips && n < MAX_ADDRS; i++)
            if (svc->vips[i].ip.family == family &&
                strcmp(svc->vips[i].network, client->network) == 0)
                out[n++] = svc->vips[i].ip;
        return n;
    }
    /* Headless: the first address of that family of each endpoint. */
    const struct zt_workload *const *eps;
    size_t k = zt_state_service_endpoints(s, svc, &eps);
    for (size_t i = 0; i < k && n < MAX_ADDRS; i++) {
        for (size_t j = 0; j < eps[i]->n_addresses; j++) {
            if (eps[i]->addresses[j].family == family) {
                out[n++] = eps[i]->addresses[j];
                break;
            }
        }
    }
    return n;
}

static void shuffle(struct zt_ip *v, size_t n, uint32_t random)
{
    uint64_t x = random | ((uint64_t)random << 32) | 1;
    for (size_t i = n; i > 1; i--) {
        x ^= x << 13; /* xorshift: an order, not a secret */
        x ^= x >> 7;
        x ^= x << 17;
        size_t j = (size_t)(x % i);
        struct zt_ip t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* ---- building replies (ldns) ---- */

static ldns_pkt *reply_for(const ldns_pkt *q, ldns_pkt_rcode rcode)
{
    ldns_pkt *r = ldns_pkt_new();
    if (!r)
        abort();
    ldns_pkt_set_id(r, ldns_pkt_id(q));
    ldns_pkt_set_qr(r, true);
    ldns_pkt_set_opcode(r, ldns_pkt_get_opcode(q));
    ldns_pkt_set_rd(r, ldns_pkt_rd(q));
    ldns_pkt_set_ra(r, true);
    ldns_pkt_set_cd(r, ldns_pkt_cd(q));
    ldns_pkt_set_rcode(r, rcode);
    const ldns_rr_list *qs = ldns_pkt_question(q);
    for (size_t i = 0; qs && i < ldns_rr_list_rr_count(qs); i++)
        ldns_pkt_push_rr(r, LDNS_SECTION_QUESTION, ldns_rr_clone(ldns_rr_list_rr(qs, i)));
    if (ldns_pkt_edns(q))
        ldns_pkt_set_edns_udp_size(r, ZT_DNS_UDP_OWN_MAX);
    return r;
}

static ldns_rr *record(const ldns_rdf *owner, ldns_rr_type type, ldns_rdf *rdata)
{
    ldns_rr *rr = ldns_rr_new();
    if (!rr || !rdata)
        abort();
    ldns_rr_set_owner(rr, ldns_rdf_clone(owner));
    ldns_rr_set_type(rr, type);
    ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
    ldns_rr_set_ttl(rr, ZT_DNS_TTL);
    ldns_rr_push_rdf(rr, rdata);
    return rr;
}

/* Empties section `which` of r. */
static void clear_section(ldns_pkt *r, ldns_pkt_section which)
{
    ldns_rr_list *l = ldns_rr_list_new();
    if (!l)
        abort();
    switch (which) {
    case LDNS_SECTION_QUESTION:
        ldns_rr_list_deep_free(ldns_pkt_question(r));
        ldns_pkt_set_question(r, l);
        ldns_pkt_set_qdcount(r, 0);
        break;
    default:
        ldns_rr_list_deep_free(ldns_pkt_answer(r));
        ldns_pkt_set_answer(r, l);
        ldns_pkt_set_ancount(r, 0);
        break;
    }
}

/* Serializes r; over UDP a reply longer than limit goes as header and
 * question with TC set (without the question too if even that is longer:
 * only a malformed query's can be). Frees r. */
static uint8_t *finish(ldns_pkt *r, bool udp, size_t limit, size_t *out_len)
{
    uint8_t *wire = NULL;
    if (ldns_pkt2wire(&wire, r, out_len) != LDNS_STATUS_OK)
        abort(); /* only memory can fail when writing what we built */
    for (int pass = 0; udp && *out_len > limit && pass < 2; pass++) {
        free(wire);
        wire = NULL;
        clear_section(r, pass == 0 ? LDNS_SECTION_ANSWER : LDNS_SECTION_QUESTION);
        ldns_pkt_set_tc(r, true);
        if (ldns_pkt2wire(&wire, r, out_len) != LDNS_STATUS_OK)
            abort();
    }
    ldns_pkt_free(r);
    return wire;
}

static size_t udp_limit(const ldns_pkt *q)
{
    size_t lim = ldns_pkt_edns(q) ? ldns_pkt_edns_udp_size(q) : ZT_DNS_UDP_MIN;
    return lim < ZT_DNS_UDP_MIN ? ZT_DNS_UDP_MIN : lim;
}

/* A reply to a message ldns could not parse: its header's id, opcode and
 * RD, no question, FORMERR. NULL when there is no header to answer. */
static uint8_t *formerr_raw(const uint8_t *msg, size_t len, size_t *out_len)
{
    if (len < LDNS_HEADER_SIZE)
        return NULL;
    ldns_pkt *r = ldns_pkt_new();
    if (!r)
        abort();
    ldns_pkt_set_id(r, ldns_read_uint16(msg));
    ldns_pkt_set_qr(r, true);
    ldns_pkt_set_opcode(r, (ldns_pkt_opcode)LDNS_OPCODE_WIRE(msg));
    ldns_pkt_set_rd(r, LDNS_RD_WIRE(msg));
    ldns_pkt_set_rcode(r, LDNS_RCODE_FORMERR);
    return finish(r, false, 0, out_len);
}

const char *zt_dns_type_str(uint16_t qtype, char *buf, size_t cap)
{
    char *s = ldns_rr_type2str((ldns_rr_type)qtype);
    snprintf(buf, cap, "%s", s ? s : "unknown");
    free(s);
    for (char *p = buf; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return buf;
}

/* The question's name without its root dot, lower case ("" for the root);
 * false if it does not fit (it cannot be a mesh name then). */
static bool question_name(const ldns_rdf *owner, char *out, size_t cap)
{
    char *s = ldns_rdf2str(owner);
    if (!s)
        abort();
    size_t n = strlen(s);
    if (n > 0 && s[n - 1] == '.')
        s[--n] = 0;
    bool ok = n < cap;
    snprintf(out, cap, "%s", ok ? s : "");
    free(s);
    return ok;
}

enum zt_dns_verdict zt_dns_answer(const struct zt_state *s, const struct zt_workload *client,
                                  const struct zt_dns_opts *opts, const uint8_t *msg, size_t len,
                                  bool udp, uint32_t random, uint8_t **out, size_t *out_len,
                                  struct zt_dns_query *q)
{
    ldns_pkt *p = NULL;
    enum zt_dns_verdict v = ZT_DNS_ANSWER;
    memset(q, 0, sizeof(*q));
    q->max_udp = ZT_DNS_UDP_MIN;
    *out = NULL;
    *out_len = 0;
    if (len < LDNS_HEADER_SIZE || LDNS_QR_WIRE(msg)) {
        q->result = "dropped";
        return ZT_DNS_DROP; /* no header to answer, or a reply: never answer a reply */
    }
    q->id = ldns_read_uint16(msg);
    if (ldns_wire2pkt(&p, msg, len) != LDNS_STATUS_OK) {
        q->result = "formerr";
        *out = formerr_raw(msg, len, out_len);
        return *out ? ZT_DNS_ANSWER : ZT_DNS_DROP;
    }
    q->max_udp = udp_limit(p);
    size_t limit = q->max_udp;
    if (ldns_pkt_get_opcode(p) != LDNS_PACKET_QUERY) {
        q->result = "notimp";
        *out = finish(reply_for(p, LDNS_RCODE_NOTIMPL), udp, limit, out_len);
        goto out;
    }
    if (ldns_pkt_qdcount(p) != 1 || ldns_rr_list_rr_count(ldns_pkt_question(p)) != 1) {
        /* No question is echoed: there is not one to answer. */
        q->result = "formerr";
        ldns_pkt *r = reply_for(p, LDNS_RCODE_FORMERR);
        clear_section(r, LDNS_SECTION_QUESTION);
        *out = finish(r, udp, limit, out_len);
        goto out;
    }
    const ldns_rr *qrr = ldns_rr_list_rr(ldns_pkt_question(p), 0);
    const ldns_rdf *owner = ldns_rr_owner(qrr);
    q->qtype = (uint16_t)ldns_rr_get_type(qrr);
    char lname[ZT_DNS_NAME_MAX + 1];
    bool fits = question_name(owner, lname, sizeof(lname));
    snprintf(q->name, sizeof(q->name), "%s", lname);
    if (!client) {
        q->result = "unknown source";
        *out = finish(reply_for(p, LDNS_RCODE_SERVFAIL), udp, limit, out_len);
        goto out;
    }
    bool aaaa = q->qtype == LDNS_RR_TYPE_AAAA;
    struct match m = {0};
    struct aliases a;
    if ((q->qtype != LDNS_RR_TYPE_A && !aaaa) || ldns_rr_get_class(qrr) != LDNS_RR_CLASS_IN ||
        !fits || !lname[0] || !find_server(s, client, opts, lname, &a, &m)) {
        q->result = "forward";
        v = ZT_DNS_FORWARD;
        goto out;
    }
    /* From here on we are the authority for the name. */
    ldns_pkt *r = reply_for(p, LDNS_RCODE_NOERROR);
    ldns_pkt_set_aa(r, true);
    struct zt_ip *addrs = malloc(sizeof(*addrs) * MAX_ADDRS);
    if (!addrs)
        abort();
    size_t n = 0;
    if (m.pod) {
        for (size_t i = 0; i < m.pod->n_addresses && n < MAX_ADDRS; i++)
            if (m.pod->addresses[i].family == (aaaa ? AF_INET6 : AF_INET) &&
                (!aaaa || opts->ipv6_enabled))
                addrs[n++] = m.pod->addresses[i];
    } else if (family_allowed(m.svc, aaaa, opts)) {
        n = get_addresses(s, client, m.svc, aaaa ? AF_INET6 : AF_INET, addrs);
    }
    q->result = n ? "success" : "no records";
    if (n) {
        shuffle(addrs, n, random);
        ldns_rdf *ip_owner = ldns_rdf_clone(owner);
        if (m.alias->stripped && !m.wildcard) {
            /* Found by taking a search domain off: the name asked is an
             * alias of the shorter one, which holds the addresses. */
            ldns_rdf *target = ldns_dname_new_frm_str(m.alias->stripped);
            if (target) {
                ldns_pkt_push_rr(r, LDNS_SECTION_ANSWER,
                                 record(owner, LDNS_RR_TYPE_CNAME, ldns_rdf_clone(target)));
                ldns_rdf_deep_free(ip_owner);
                ip_owner = target;
            }
        }
        for (size_t i = 0; i < n; i++)
            ldns_pkt_push_rr(
                r, LDNS_SECTION_ANSWER,
                record(ip_owner, aaaa ? LDNS_RR_TYPE_AAAA : LDNS_RR_TYPE_A,
                       ldns_rdf_new_frm_data(aaaa ? LDNS_RDF_TYPE_AAAA : LDNS_RDF_TYPE_A,
                                             aaaa ? 16 : 4, addrs[i].addr)));
        ldns_rdf_deep_free(ip_owner);
    }
    free(addrs);
    q->n_answers = (unsigned)n;
    *out = finish(r, udp, limit, out_len);
out:
    ldns_pkt_free(p);
    return v;
}

/* ---- forwarding ---- */

void zt_dns_set_id(uint8_t *msg, uint16_t id)
{
    ldns_write_uint16(msg, id);
}

static bool same_question(const ldns_pkt *a, const ldns_pkt *b)
{
    const ldns_rr_list *qa = ldns_pkt_question(a), *qb = ldns_pkt_question(b);
    if (!qa || !qb || ldns_rr_list_rr_count(qa) != 1 || ldns_rr_list_rr_count(qb) != 1)
        return false;
    const ldns_rr *x = ldns_rr_list_rr(qa, 0), *y = ldns_rr_list_rr(qb, 0);
    return ldns_rr_get_type(x) == ldns_rr_get_type(y) &&
           ldns_rr_get_class(x) == ldns_rr_get_class(y) &&
           ldns_dname_compare(ldns_rr_owner(x), ldns_rr_owner(y)) == 0;
}

uint16_t zt_dns_get_id(const uint8_t *msg)
{
    return ldns_read_uint16(msg);
}

int zt_dns_reply_matches(const uint8_t *query, size_t qlen, const uint8_t *reply, size_t rlen,
                         bool *truncated)
{
    ldns_pkt *q = NULL, *r = NULL;
    int rc = ZT_E_PROTO;
    *truncated = false;
    if (rlen < LDNS_HEADER_SIZE || rlen > ZT_DNS_MSG_MAX || qlen < LDNS_HEADER_SIZE ||
        !LDNS_QR_WIRE(reply) || ldns_read_uint16(reply) != ldns_read_uint16(query))
        return ZT_E_PROTO;
    if (ldns_wire2pkt(&q, query, qlen) != LDNS_STATUS_OK ||
        ldns_wire2pkt(&r, reply, rlen) != LDNS_STATUS_OK || !same_question(q, r))
        goto out;
    *truncated = ldns_pkt_tc(r);
    rc = 0;
out:
    ldns_pkt_free(q);
    ldns_pkt_free(r);
    return rc;
}

uint8_t *zt_dns_reply_for_client(const uint8_t *reply, size_t rlen, uint16_t client_id,
                                 size_t max_reply, size_t *out_len)
{
    /* Written anew from what was parsed rather than copied with the id
     * patched: a name may point into the header, and then the copy would
     * say something else once its id changed. */
    ldns_pkt *r = NULL;
    uint8_t *out = NULL;
    if (ldns_wire2pkt(&r, reply, rlen) != LDNS_STATUS_OK)
        return NULL;
    ldns_pkt_set_id(r, client_id);
    if (ldns_pkt2wire(&out, r, out_len) != LDNS_STATUS_OK) {
        ldns_pkt_free(r);
        return NULL;
    }
    if (*out_len <= max_reply) {
        ldns_pkt_free(r);
        return out;
    }
    free(out);
    /* Longer than the client takes over UDP: it asks again over TCP. */
    ldns_pkt *t = reply_for(r, ldns_pkt_get_rcode(r));
    ldns_pkt_set_aa(t, ldns_pkt_aa(r));
    ldns_pkt_set_id(t, client_id);
    ldns_pkt_set_tc(t, true);
    out = finish(t, false, 0, out_len);
    ldns_pkt_free(r);
    return out;
}

uint8_t *zt_dns_error_reply(const uint8_t *query, size_t qlen, int rcode, size_t *out_len)
{
    ldns_pkt *q = NULL;
    if (qlen < LDNS_HEADER_SIZE)
        return NULL;
    if (ldns_wire2pkt(&q, query, qlen) != LDNS_STATUS_OK)
        return formerr_raw(query, qlen, out_len);
    uint8_t *out = finish(reply_for(q, (ldns_pkt_rcode)rcode), false, 0, out_len);
    ldns_pkt_free(q);
    return out;
}
