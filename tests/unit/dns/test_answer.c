/* The DNS proxy's answers (src/dns/answer.c): queries built and replies
 * read with ldns, a snapshot built by hand. */
#include "dns/dns.h"

#include "base/err.h"
#include "test.h"

#include <ldns/ldns.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct zt_dns_opts opts = {.cluster_domain = "cluster.local", .ipv6_enabled = true};

static struct zt_ip ip(const char *s)
{
    struct zt_ip a;
    if (zt_ip_parse(s, &a) < 0)
        abort();
    return a;
}

static struct zt_service *svc(const char *name, const char *ns, const char *host, const char *vip)
{
    struct zt_service *v = zt_service_new();
    char h[300];
    if (!host) {
        snprintf(h, sizeof(h), "%s.%s.svc.cluster.local", name, ns);
        host = h;
    }
    v->name = zt_state_xstrdup(name);
    v->namespace = zt_state_xstrdup(ns);
    v->hostname = zt_state_xstrdup(host);
    if (vip) {
        struct zt_vip *x = zt_state_array_push(&v->vips, &v->n_vips, sizeof(*x));
        x->network = zt_state_xstrdup("");
        x->ip = ip(vip);
    }
    return v;
}

static void add_vip(struct zt_service *v, const char *network, const char *addr)
{
    struct zt_vip *x = zt_state_array_push(&v->vips, &v->n_vips, sizeof(*x));
    x->network = zt_state_xstrdup(network);
    x->ip = ip(addr);
}

static struct zt_workload *wl(const char *name, const char *ns, const char *addr,
                              const char *svc_key)
{
    struct zt_workload *w = zt_workload_new();
    char uid[128];
    snprintf(uid, sizeof(uid), "Kubernetes//Pod/%s/%s", ns, name);
    w->uid = zt_state_xstrdup(uid);
    w->name = zt_state_xstrdup(name);
    w->namespace = zt_state_xstrdup(ns);
    if (addr) {
        struct zt_ip *a = zt_state_array_push(&w->addresses, &w->n_addresses, sizeof(*a));
        *a = ip(addr);
    }
    if (svc_key) {
        struct zt_workload_service *s =
            zt_state_array_push(&w->services, &w->n_services, sizeof(*s));
        s->key = zt_state_xstrdup(svc_key);
    }
    return w;
}

static struct zt_state *finish(struct zt_state_builder *b)
{
    struct zt_state *s = NULL;
    char err[256];
    if (zt_state_builder_finish(b, &s, err, sizeof(err))) {
        fprintf(stderr, "finish: %s\n", err);
        abort();
    }
    return s;
}

/* The mesh: echo (VIP 10.96.0.10 and fd00::10) and other/echo in ns
 * "other"; a headless db with two endpoints; a wildcard ServiceEntry; a
 * VIP-less external host; a namespace-private service; a headless service
 * with 100 endpoints. The client is app in "default". */
static struct zt_state *mesh(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_service *echo = svc("echo", "default", NULL, "10.96.0.10");
    add_vip(echo, "", "fd00::10");
    add_vip(echo, "remote", "10.200.0.10");
    zt_state_builder_add_service(b, echo);
    zt_state_builder_add_service(b, svc("echo", "other", NULL, "10.96.1.10"));
    zt_state_builder_add_service(b, svc("db", "default", NULL, NULL));
    zt_state_builder_add_service(b, svc("wild", "default", "*.example.com", "240.240.0.1"));
    zt_state_builder_add_service(b, svc("ext", "default", "ext.example.org", NULL));
    struct zt_service *priv = svc("priv", "other", NULL, "10.96.1.20");
    priv->visibility = ZT_VIS_NAMESPACE;
    zt_state_builder_add_service(b, priv);
    zt_state_builder_add_service(b, svc("big", "default", NULL, NULL));
    struct zt_service *v4 = svc("v4only", "default", NULL, "10.96.0.40");
    v4->ip_families = ZT_IPF_IPV4_ONLY;
    zt_state_builder_add_service(b, v4);
    zt_state_builder_add_workload(b, wl("app", "default", "10.0.0.1", NULL));
    zt_state_builder_add_workload(
        b, wl("db-0", "default", "10.0.1.1", "default/db.default.svc.cluster.local"));
    zt_state_builder_add_workload(
        b, wl("db-1", "default", "10.0.1.2", "default/db.default.svc.cluster.local"));
    for (int i = 0; i < 100; i++) {
        char name[32], addr[32];
        snprintf(name, sizeof(name), "big-%d", i);
        snprintf(addr, sizeof(addr), "10.1.%d.%d", i / 200, i % 200 + 1);
        zt_state_builder_add_workload(
            b, wl(name, "default", addr, "default/big.default.svc.cluster.local"));
    }
    return finish(b);
}

static const struct zt_workload *client(const struct zt_state *s)
{
    return zt_state_workload_by_uid(s, "Kubernetes//Pod/default/app");
}

/* A query for name/type, with EDNS advertising edns bytes when edns > 0. */
static uint8_t *query(const char *name, ldns_rr_type type, uint16_t id, size_t edns, size_t *len)
{
    ldns_pkt *p = ldns_pkt_query_new(ldns_dname_new_frm_str(name), type, LDNS_RR_CLASS_IN, LDNS_RD);
    ldns_pkt_set_id(p, id);
    if (edns)
        ldns_pkt_set_edns_udp_size(p, (uint16_t)edns);
    uint8_t *w = NULL;
    if (ldns_pkt2wire(&w, p, len) != LDNS_STATUS_OK)
        abort();
    ldns_pkt_free(p);
    return w;
}

struct res {
    enum zt_dns_verdict v;
    ldns_pkt *reply;
    size_t len;
    struct zt_dns_query q;
};

static struct res ask_raw(const struct zt_state *s, const struct zt_workload *c,
                          const struct zt_dns_opts *o, const uint8_t *msg, size_t len, bool udp)
{
    struct res r = {0};
    uint8_t *out = NULL;
    r.v = zt_dns_answer(s, c, o, msg, len, udp, 12345, &out, &r.len, &r.q);
    if (r.v == ZT_DNS_ANSWER && ldns_wire2pkt(&r.reply, out, r.len) != LDNS_STATUS_OK)
        abort();
    free(out);
    return r;
}

static struct res ask(const struct zt_state *s, const char *name, ldns_rr_type type)
{
    size_t len;
    uint8_t *q = query(name, type, 0x4242, 0, &len);
    struct res r = ask_raw(s, client(s), &opts, q, len, true);
    free(q);
    return r;
}

/* The addresses of the answer's A/AAAA records, sorted, comma-joined. */
static const char *addrs(const struct res *r, char *buf, size_t cap)
{
    char v[256][64];
    size_t n = 0;
    const ldns_rr_list *an = ldns_pkt_answer(r->reply);
    for (size_t i = 0; i < ldns_rr_list_rr_count(an) && n < 256; i++) {
        const ldns_rr *rr = ldns_rr_list_rr(an, i);
        ldns_rr_type t = ldns_rr_get_type(rr);
        if (t != LDNS_RR_TYPE_A && t != LDNS_RR_TYPE_AAAA)
            continue;
        const ldns_rdf *d = ldns_rr_rdf(rr, 0);
        inet_ntop(t == LDNS_RR_TYPE_A ? AF_INET : AF_INET6, ldns_rdf_data(d), v[n], sizeof(v[n]));
        n++;
    }
    qsort(v, n, sizeof(v[0]), (int (*)(const void *, const void *))strcmp);
    buf[0] = 0;
    for (size_t i = 0; i < n; i++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", i ? "," : "", v[i]);
    return buf;
}

static const char *owner(const struct res *r, size_t i, char *buf, size_t cap)
{
    char *s = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_answer(r->reply), i)));
    snprintf(buf, cap, "%s", s);
    free(s);
    return buf;
}

static void done(struct res *r)
{
    ldns_pkt_free(r->reply);
}

/* Every form a pod's resolver sends for a service in its own namespace is
 * answered with its VIP on the client's network, authoritatively, TTL 30,
 * on the name as asked, with the id of the query. */
static void test_service_names(void)
{
    struct zt_state *s = mesh();
    const char *names[] = {"echo.", "echo.default.", "echo.default.svc.",
                           "echo.default.svc.cluster.local.", "ECHO.Default.svc.cluster.local."};
    char buf[512], ob[300];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct res r = ask(s, names[i], LDNS_RR_TYPE_A);
        CHECK(r.v == ZT_DNS_ANSWER);
        CHECK(ldns_pkt_get_rcode(r.reply) == LDNS_RCODE_NOERROR);
        CHECK(ldns_pkt_aa(r.reply) && ldns_pkt_qr(r.reply));
        CHECK(ldns_pkt_id(r.reply) == 0x4242);
        CHECK_EQ_STR(addrs(&r, buf, sizeof(buf)), "10.96.0.10");
        CHECK(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(r.reply), 0)) == ZT_DNS_TTL);
        CHECK_EQ_STR(owner(&r, 0, ob, sizeof(ob)), names[i]);
        CHECK_EQ_STR(r.q.result, "success");
        done(&r);
    }
    /* Another namespace's service by its namespaced name. */
    struct res r = ask(s, "echo.other.", LDNS_RR_TYPE_A);
    CHECK_EQ_STR(addrs(&r, buf, sizeof(buf)), "10.96.1.10");
    done(&r);
    r = ask(s, "echo.", LDNS_RR_TYPE_AAAA);
    CHECK_EQ_STR(addrs(&r, buf, sizeof(buf)), "fd00::10");
    done(&r);
    zt_state_unref(s);
}

/* A name the resolver built from the search list is answered at once: a
 * CNAME to the name with the search domain taken off, which holds the
 * addresses. */
static void test_search_domain_cname(void)
{
    struct zt_state *s = mesh();
    char buf[512], ob[300];
    struct res r =
        ask(s, "echo.default.svc.cluster.local.default.svc.cluster.local.", LDNS_RR_TYPE_A);
    CHECK(r.v == ZT_DNS_ANSWER);
    const ldns_rr_list *an = ldns_pkt_answer(r.reply);
    CHECK(ldns_rr_list_rr_count(an) == 2);
    CHECK(ldns_rr_get_type(ldns_rr_list_rr(an, 0)) == LDNS_RR_TYPE_CNAME);
    char *target = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(an, 0), 0));
    CHECK_EQ_STR(target, "echo.default.svc.cluster.local.");
    free(target);
    CHECK_EQ_STR(owner(&r, 1, ob, sizeof(ob)), "echo.default.svc.cluster.local.");
    CHECK_EQ_STR(addrs(&r, buf, sizeof(buf)), "10.96.0.10");
    done(&r);
    zt_state_unref(s);
}

/* Found but nothing of that family: NOERROR with no records (NODATA),
 * never NXDOMAIN; also when IPv6 is off. */
static void test_nodata(void)
{
    struct zt_state *s = mesh();
    struct res r = ask(s, "v4only.", LDNS_RR_TYPE_AAAA);
    CHECK(r.v == ZT_DNS_ANSWER);
    CHECK(ldns_pkt_get_rcode(r.reply) == LDNS_RCODE_NOERROR && ldns_pkt_aa(r.reply));
    CHECK(ldns_pkt_ancount(r.reply) == 0);
    CHECK_EQ_STR(r.q.result, "no records");
    done(&r);
    struct zt_dns_opts no6 = opts;
    no6.ipv6_enabled = false;
    size_t len;
    uint8_t *q = query("echo.", LDNS_RR_TYPE_AAAA, 1, 0, &len);
    r = ask_raw(s, client(s), &no6, q, len, true);
    free(q);
    CHECK(r.v == ZT_DNS_ANSWER && ldns_pkt_ancount(r.reply) == 0);
    done(&r);
    zt_state_unref(s);
}

/* Names and types that are not the mesh's go upstream untouched. */
static void test_forwarded(void)
{
    struct zt_state *s = mesh();
    const char *names[] = {"example.net.",
                           "nosuch.",
                           "nosuch.default.svc.cluster.local.",
                           "ext.example.org.", /* no VIP and not a Kubernetes name */
                           "priv.other.",      /* namespace-private to "other" */
                           "."};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct res r = ask(s, names[i], LDNS_RR_TYPE_A);
        CHECK(r.v == ZT_DNS_FORWARD);
        CHECK(r.reply == NULL);
        CHECK_EQ_STR(r.q.result, "forward");
        done(&r);
    }
    struct res r = ask(s, "echo.", LDNS_RR_TYPE_MX);
    CHECK(r.v == ZT_DNS_FORWARD);
    CHECK(r.q.qtype == LDNS_RR_TYPE_MX);
    done(&r);
    zt_state_unref(s);
}

static void test_wildcard_and_headless(void)
{
    struct zt_state *s = mesh();
    char buf[4096];
    struct res r = ask(s, "api.example.com.", LDNS_RR_TYPE_A);
    CHECK_EQ_STR(addrs(&r, buf, sizeof(buf)), "240.240.0.1");
    done(&r);
    r = ask(s, "a.b.example.com.", LDNS_RR_TYPE_A);
    CHECK_EQ_STR(addrs(&r, buf, sizeof(buf)), "240.240.0.1");
    done(&r);
    r = ask(s, "example.com.", LDNS_RR_TYPE_A); /* the wildcard does not cover its base */
    CHECK(r.v == ZT_DNS_FORWARD);
    done(&r);
    r = ask(s, "db.", LDNS_RR_TYPE_A);
    CHECK_EQ_STR(addrs(&r, buf, sizeof(buf)), "10.0.1.1,10.0.1.2");
    CHECK(r.q.n_answers == 2);
    done(&r);
    zt_state_unref(s);
}

/* A headless service's pod by name (a StatefulSet's <pod>.<service>):
 * its own address; an unknown pod, or a pod name under a service with
 * VIPs, goes upstream. */
static void test_headless_pods(void)
{
    struct zt_state *s = mesh();
    char buf[256];
    struct res r = ask(s, "db-1.db.", LDNS_RR_TYPE_A);
    CHECK_EQ_STR(addrs(&r, buf, sizeof(buf)), "10.0.1.2");
    CHECK(ldns_pkt_aa(r.reply));
    done(&r);
    r = ask(s, "DB-0.db.default.svc.cluster.local.", LDNS_RR_TYPE_A);
    CHECK_EQ_STR(addrs(&r, buf, sizeof(buf)), "10.0.1.1");
    done(&r);
    r = ask(s, "db-0.db.default.svc.cluster.local.", LDNS_RR_TYPE_AAAA);
    CHECK(r.v == ZT_DNS_ANSWER && ldns_pkt_ancount(r.reply) == 0);
    CHECK_EQ_STR(r.q.result, "no records");
    done(&r);
    const char *fwd[] = {"db-9.db.", "app.echo.", "db-0.nosuch."};
    for (size_t i = 0; i < 3; i++) {
        r = ask(s, fwd[i], LDNS_RR_TYPE_A);
        CHECK(r.v == ZT_DNS_FORWARD);
        done(&r);
    }
    zt_state_unref(s);
}

/* The client's namespace wins among services of one hostname; a client
 * the proxy does not know yet gets SERVFAIL. */
static void test_best_match_and_unknown_client(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    zt_state_builder_add_service(b, svc("se", "a", "shared.example.com", "10.9.0.1"));
    zt_state_builder_add_service(b, svc("se", "default", "shared.example.com", "10.9.0.2"));
    zt_state_builder_add_service(b, svc("se", "z", "shared.example.com", "10.9.0.3"));
    zt_state_builder_add_workload(b, wl("app", "default", "10.0.0.1", NULL));
    struct zt_state *s = finish(b);
    char buf[256];
    struct res r = ask(s, "shared.example.com.", LDNS_RR_TYPE_A);
    CHECK_EQ_STR(addrs(&r, buf, sizeof(buf)), "10.9.0.2");
    done(&r);
    size_t len;
    uint8_t *q = query("shared.example.com.", LDNS_RR_TYPE_A, 7, 0, &len);
    r = ask_raw(s, NULL, &opts, q, len, true);
    CHECK(r.v == ZT_DNS_ANSWER);
    CHECK(ldns_pkt_get_rcode(r.reply) == LDNS_RCODE_SERVFAIL);
    done(&r);
    struct zt_dns_opts pref = opts;
    pref.preferred_ns = "z";
    const struct zt_workload *other = NULL;
    zt_state_unref(s);
    b = zt_state_builder_new(NULL);
    zt_state_builder_add_service(b, svc("se", "a", "shared.example.com", "10.9.0.1"));
    zt_state_builder_add_service(b, svc("se", "z", "shared.example.com", "10.9.0.3"));
    zt_state_builder_add_workload(b, wl("app", "default", "10.0.0.1", NULL));
    s = finish(b);
    other = client(s);
    r = ask_raw(s, other, &pref, q, len, true);
    CHECK_EQ_STR(addrs(&r, buf, sizeof(buf)), "10.9.0.3");
    done(&r);
    r = ask_raw(s, other, &opts, q, len, true);
    CHECK_EQ_STR(addrs(&r, buf, sizeof(buf)), "10.9.0.1");
    done(&r);
    free(q);
    zt_state_unref(s);
}

/* Garbage gets FORMERR with its id; what has no header, or is itself a
 * reply, gets nothing; two questions FORMERR; another opcode NOTIMP. */
static void test_malformed(void)
{
    struct zt_state *s = mesh();
    uint8_t junk[40];
    memset(junk, 0xee, sizeof(junk));
    junk[0] = 0x12;
    junk[1] = 0x34;
    junk[2] = 0x01; /* RD, QR clear */
    struct res r = ask_raw(s, client(s), &opts, junk, sizeof(junk), true);
    CHECK(r.v == ZT_DNS_ANSWER);
    CHECK(ldns_pkt_get_rcode(r.reply) == LDNS_RCODE_FORMERR);
    CHECK(ldns_pkt_id(r.reply) == 0x1234);
    CHECK_EQ_STR(r.q.result, "formerr");
    done(&r);
    r = ask_raw(s, client(s), &opts, junk, 11, true);
    CHECK(r.v == ZT_DNS_DROP);
    junk[2] = 0x81; /* QR set: a reply */
    r = ask_raw(s, client(s), &opts, junk, sizeof(junk), true);
    CHECK(r.v == ZT_DNS_DROP);

    ldns_pkt *p = ldns_pkt_query_new(ldns_dname_new_frm_str("echo."), LDNS_RR_TYPE_A,
                                     LDNS_RR_CLASS_IN, LDNS_RD);
    ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION,
                     ldns_rr_clone(ldns_rr_list_rr(ldns_pkt_question(p), 0)));
    uint8_t *w = NULL;
    size_t len;
    CHECK(ldns_pkt2wire(&w, p, &len) == LDNS_STATUS_OK);
    r = ask_raw(s, client(s), &opts, w, len, true);
    CHECK(r.v == ZT_DNS_ANSWER && ldns_pkt_get_rcode(r.reply) == LDNS_RCODE_FORMERR);
    done(&r);
    free(w);
    ldns_pkt_free(p);

    w = query("echo.", LDNS_RR_TYPE_A, 9, 0, &len);
    w[2] |= 4 << 3; /* opcode NOTIFY */
    r = ask_raw(s, client(s), &opts, w, len, true);
    CHECK(r.v == ZT_DNS_ANSWER && ldns_pkt_get_rcode(r.reply) == LDNS_RCODE_NOTIMPL);
    done(&r);
    free(w);
    /* Every length of a valid query's prefix: never a crash, never an
     * answer with records. */
    w = query("echo.default.svc.cluster.local.", LDNS_RR_TYPE_A, 9, 1232, &len);
    for (size_t cut = 0; cut < len; cut++) {
        r = ask_raw(s, client(s), &opts, w, cut, true);
        CHECK(r.v == ZT_DNS_DROP || ldns_pkt_ancount(r.reply) == 0);
        done(&r);
    }
    free(w);
    zt_state_unref(s);
}

/* 100 records do not fit a 512-byte UDP reply: TC and no records; with
 * EDNS 4096 or over TCP they all come. */
static void test_truncation(void)
{
    struct zt_state *s = mesh();
    size_t len;
    uint8_t *q = query("big.", LDNS_RR_TYPE_A, 3, 0, &len);
    struct res r = ask_raw(s, client(s), &opts, q, len, true);
    CHECK(r.v == ZT_DNS_ANSWER && ldns_pkt_tc(r.reply) && ldns_pkt_ancount(r.reply) == 0);
    CHECK(r.len <= ZT_DNS_UDP_MIN);
    done(&r);
    r = ask_raw(s, client(s), &opts, q, len, false);
    CHECK(!ldns_pkt_tc(r.reply) && ldns_pkt_ancount(r.reply) == 100);
    done(&r);
    free(q);
    q = query("big.", LDNS_RR_TYPE_A, 3, 4096, &len);
    r = ask_raw(s, client(s), &opts, q, len, true);
    CHECK(!ldns_pkt_tc(r.reply) && ldns_pkt_ancount(r.reply) == 100);
    CHECK(ldns_pkt_edns(r.reply));
    CHECK(r.q.max_udp == 4096);
    done(&r);
    free(q);
    zt_state_unref(s);
}

/* A query of many long questions (found by the dns_answer fuzzer): the
 * FORMERR reply over UDP stays within 512 bytes and echoes no question;
 * over TCP too, it names none. */
static void test_many_questions(void)
{
    struct zt_state *s = mesh();
    ldns_pkt *p = ldns_pkt_query_new(ldns_dname_new_frm_str("echo."), LDNS_RR_TYPE_A,
                                     LDNS_RR_CLASS_IN, LDNS_RD);
    char name[256];
    memset(name, 'a', 60);
    strcpy(name + 60, ". IN A");
    for (int i = 0; i < 20; i++) {
        name[0] = (char)('a' + i); /* distinct: nothing to compress */
        ldns_rr *qr = NULL;
        CHECK(ldns_rr_new_question_frm_str(&qr, name, NULL, NULL) == LDNS_STATUS_OK);
        ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, qr);
    }
    uint8_t *w = NULL;
    size_t len;
    CHECK(ldns_pkt2wire(&w, p, &len) == LDNS_STATUS_OK);
    CHECK(len > ZT_DNS_UDP_MIN);
    struct res r = ask_raw(s, client(s), &opts, w, len, true);
    bool ok = r.v == ZT_DNS_ANSWER && r.len <= ZT_DNS_UDP_MIN &&
              ldns_pkt_get_rcode(r.reply) == LDNS_RCODE_FORMERR && ldns_pkt_qdcount(r.reply) == 0;
    done(&r);
    r = ask_raw(s, client(s), &opts, w, len, false);
    bool tcp_ok = r.v == ZT_DNS_ANSWER && ldns_pkt_get_rcode(r.reply) == LDNS_RCODE_FORMERR &&
                  ldns_pkt_qdcount(r.reply) == 0;
    done(&r);
    free(w);
    ldns_pkt_free(p);
    zt_state_unref(s);
    CHECK(ok);
    CHECK(tcp_ok);
}

/* The longest legal name (253 characters) and names built from it by the
 * search list pass through without overflow. */
static void test_longest_name(void)
{
    struct zt_state *s = mesh();
    char name[300] = "";
    while (strlen(name) + 64 <= 253)
        strcat(name, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.");
    size_t l = strlen(name);
    memset(name + l, 'b', 253 - l);
    name[253] = 0;
    CHECK(strlen(name) == 253);
    strcat(name, ".");
    struct res r = ask(s, name, LDNS_RR_TYPE_A);
    CHECK(r.v == ZT_DNS_FORWARD);
    CHECK(strlen(r.q.name) == 253);
    done(&r);
    zt_state_unref(s);
}

static void test_upstream_reply(void)
{
    size_t qlen, rlen, olen;
    uint8_t *q = query("example.net.", LDNS_RR_TYPE_A, 0x1111, 0, &qlen);
    ldns_pkt *p = NULL;
    CHECK(ldns_wire2pkt(&p, q, qlen) == LDNS_STATUS_OK);
    ldns_pkt_set_qr(p, true);
    ldns_rr *rr = NULL;
    CHECK(ldns_rr_new_frm_str(&rr, "example.net. 60 IN A 192.0.2.1", 0, NULL, NULL) ==
          LDNS_STATUS_OK);
    ldns_pkt_push_rr(p, LDNS_SECTION_ANSWER, rr);
    uint8_t *reply = NULL;
    CHECK(ldns_pkt2wire(&reply, p, &rlen) == LDNS_STATUS_OK);
    uint8_t *out = NULL;
    bool tc = true;
    CHECK(zt_dns_reply_matches(q, qlen, reply, rlen, &tc) == 0);
    CHECK(!tc);
    out = zt_dns_reply_for_client(reply, rlen, 0x2222, 512, &olen);
    CHECK(out && olen == rlen && out[0] == 0x22 && out[1] == 0x22);
    CHECK(memcmp(out + 2, reply + 2, rlen - 2) == 0);
    free(out);
    /* Too long for the client: header and question, TC. */
    out = zt_dns_reply_for_client(reply, rlen, 0x2222, qlen, &olen);
    ldns_pkt *t = NULL;
    CHECK(out && ldns_wire2pkt(&t, out, olen) == LDNS_STATUS_OK);
    CHECK(ldns_pkt_tc(t) && ldns_pkt_ancount(t) == 0 && ldns_pkt_id(t) == 0x2222);
    ldns_pkt_free(t);
    free(out);
    /* Another id, or another question: not an answer to the query. */
    reply[1] ^= 1;
    CHECK(zt_dns_reply_matches(q, qlen, reply, rlen, &tc) == ZT_E_PROTO);
    reply[1] ^= 1;
    uint8_t *q2 = query("example.org.", LDNS_RR_TYPE_A, 0x1111, 0, &qlen);
    CHECK(zt_dns_reply_matches(q2, qlen, reply, rlen, &tc) == ZT_E_PROTO);
    /* The query itself (QR clear) is no reply. */
    CHECK(zt_dns_reply_matches(q2, qlen, q2, qlen, &tc) == ZT_E_PROTO);
    free(q2);
    free(reply);
    ldns_pkt_free(p);
    /* SERVFAIL for the forwarder's failures keeps the question. */
    out = zt_dns_error_reply(q, qlen, LDNS_RCODE_SERVFAIL, &olen);
    CHECK(out != NULL);
    CHECK(ldns_wire2pkt(&t, out, olen) == LDNS_STATUS_OK);
    CHECK(ldns_pkt_get_rcode(t) == LDNS_RCODE_SERVFAIL && ldns_pkt_qdcount(t) == 1);
    CHECK(ldns_pkt_id(t) == 0x1111);
    ldns_pkt_free(t);
    free(out);
    free(q);
    CHECK(zt_dns_get_id((const uint8_t *)"\xab\xcd") == 0xabcd);
    char tb[32];
    CHECK_EQ_STR(zt_dns_type_str(LDNS_RR_TYPE_AAAA, tb, sizeof(tb)), "aaaa");
}

/* An upstream reply whose answer's owner is a pointer into the header (to
 * the id's second byte, read as a label length): the client must get what
 * the upstream said, not what the bytes say once the id is rewritten. */
static void test_upstream_reply_pointer_into_header(void)
{
    static const uint8_t q[] = {0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
                                0x00, 0x04, 't',  'e',  's',  't',  0x00, 0x00, 0x01, 0x00, 0x01};
    uint8_t reply[60] = {0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
                         0x04, 't',  'e',  's',  't',  0x00, 0x00, 0x01, 0x00, 0x01, 0xc0, 0x01,
                         0x0c, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, 0xc0, 0x00};
    reply[54] = 0x02;
    reply[55] = 0x01;
    reply[59] = 0x01;
    bool tc;
    CHECK(zt_dns_reply_matches(q, sizeof(q), reply, sizeof(reply), &tc) == 0);
    ldns_pkt *up = NULL, *got = NULL;
    CHECK(ldns_wire2pkt(&up, reply, sizeof(reply)) == LDNS_STATUS_OK);
    size_t olen = 0;
    uint8_t *out = zt_dns_reply_for_client(reply, sizeof(reply), 0x5678, 512, &olen);
    CHECK(out != NULL);
    CHECK(out && ldns_wire2pkt(&got, out, olen) == LDNS_STATUS_OK);
    if (got) {
        CHECK(ldns_pkt_id(got) == 0x5678);
        CHECK(ldns_pkt_ancount(got) == ldns_pkt_ancount(up));
        CHECK(ldns_rr_list_compare(ldns_pkt_answer(got), ldns_pkt_answer(up)) == 0);
    }
    ldns_pkt_free(got);
    ldns_pkt_free(up);
    free(out);
}

int main(void)
{
    RUN(test_service_names);
    RUN(test_search_domain_cname);
    RUN(test_nodata);
    RUN(test_forwarded);
    RUN(test_wildcard_and_headless);
    RUN(test_headless_pods);
    RUN(test_best_match_and_unknown_client);
    RUN(test_malformed);
    RUN(test_truncation);
    RUN(test_many_questions);
    RUN(test_longest_name);
    RUN(test_upstream_reply);
    RUN(test_upstream_reply_pointer_into_header);
    return TEST_REPORT();
}
