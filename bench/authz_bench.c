/* bench/authz_bench: the cost of one L4 authorization check with 10 000
 * policies of 10 rules (issue 9), for connections the policies allow and for
 * connections they deny, against the reference evaluator that visits every
 * policy (zt_authz_check_linear).
 *
 * The snapshot is a made-up but plausible mesh: AUTHZ_NAMESPACES namespaces
 * of 20 workloads; a few GLOBAL policies in istio-system (source blocklists)
 * and the STRICT mTLS policy every workload lists; then, per namespace,
 * namespace-wide policies (about a quarter) and selector policies listed by
 * one to three workloads of that namespace (the rest). Rules mix exact,
 * prefix, suffix and presence principals, namespaces, service accounts,
 * IPv4/IPv6 ipBlocks, ports and their not_ forms. The connections checked are
 * drawn from the rules themselves (so that some ALLOW rule matches) and at
 * random (mostly refused), each classified by the reference evaluator; the
 * two evaluators must agree on every sample or the program fails.
 *
 * The destinations are AUTHZ_NODE_PODS (100) workloads, the pods of the
 * proxy's node; the sources are any identity of the mesh.
 *
 * Prints plain rows, one fact each:
 *   authz setup policies=N rules=N workloads=N namespaces=N node_pods=N
 *               snapshot_bytes=N (heap held by the snapshot, for scale)
 *   authz index build_ms=X rss_bytes=N  (its CPU time; what it added to
 *               the resident set: heap and the index's own mappings)
 *   authz delta case=one_workload snapshot_ms=X index_ms=X full_build_ms=X index_reused=0|1
 *               (a snapshot from the mesh with one workload replaced: the
 *               time to finish it, then to have its policy index, which
 *               it shares with the base, against the full build above)
 *   authz check case=allowed|denied samples=N ns_per_check=X linear_ns_per_check=X speedup=X
 * Knobs (environment): AUTHZ_POLICIES (10000), AUTHZ_RULES (10),
 * AUTHZ_NAMESPACES (AUTHZ_POLICIES / 20), AUTHZ_NODE_PODS (100), AUTHZ_MILLIS per measurement
 * (500), AUTHZ_LINEAR=0 to skip the (slow) reference. Times are this
 * thread's CPU time. Timing only: nothing here asserts a figure. */
#include "authz/authz.h"
#include "authz/authz_int.h"
#include "base/err.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WL_PER_NS 20
#define N_SA 8
#define N_SAMPLES 2000

static const uint16_t ports[] = {80, 443, 8080, 8443, 9090, 3306, 5432, 6379, 9000, 15020};
#define N_PORTS (sizeof(ports) / sizeof(ports[0]))

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)((rng_state >> 11) % n);
}

static bool chance(unsigned pct)
{
    return rnd(100) < pct;
}

static long env_long(const char *name, long def)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : def;
}

/* CPU time of this thread: the machine may be shared, and a check is pure
 * computation, so time spent preempted is not its cost. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* VmRSS of this process in KiB, or 0 if unreadable. */
static long rss_kb(void)
{
    char line[256];
    long kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    return s;
}

static void push_str(struct zt_strmatch_list *l, enum zt_strmatch_kind kind, char *value)
{
    struct zt_strmatch *m = zt_state_array_push(&l->v, &l->n, sizeof(*m));
    m->kind = kind;
    m->value = value;
}

static void push_cidr(struct zt_cidr_list *l, const char *text)
{
    struct zt_cidr *c = zt_state_array_push(&l->v, &l->n, sizeof(*c));
    if (zt_cidr_parse(text, c))
        abort();
}

static void push_port(struct zt_port_list *l, uint32_t port)
{
    *(uint32_t *)zt_state_array_push(&l->v, &l->n, sizeof(uint32_t)) = port;
}

static char *principal(unsigned ns, unsigned sa)
{
    return xasprintf("cluster.local/ns/ns-%u/sa/sa-%u", ns, sa);
}

/* One source Match of the kinds Istio's conversion produces from a `from`
 * entry; own_ns biases the values toward the policy's namespace. */
static void fill_source(struct zt_policy_match *m, unsigned n_ns, unsigned own_ns)
{
    unsigned k = rnd(100), n = 1 + rnd(3);
    unsigned ns = chance(60) ? own_ns : rnd(n_ns);
    if (k < 40) {
        for (unsigned i = 0; i < n; i++)
            push_str(&m->principals, ZT_STRMATCH_EXACT, principal(i ? rnd(n_ns) : ns, rnd(N_SA)));
    } else if (k < 60) {
        for (unsigned i = 0; i < n; i++)
            push_str(&m->namespaces, ZT_STRMATCH_EXACT, xasprintf("ns-%u", i ? rnd(n_ns) : ns));
    } else if (k < 65) {
        push_str(&m->principals, ZT_STRMATCH_PREFIX, xasprintf("cluster.local/ns/ns-%u/", ns));
    } else if (k < 70) {
        push_str(&m->principals, ZT_STRMATCH_SUFFIX, xasprintf("/sa/sa-%u", rnd(N_SA)));
    } else if (k < 72) {
        push_str(&m->principals, ZT_STRMATCH_PRESENCE, NULL);
    } else if (k < 82) {
        for (unsigned i = 0; i < n; i++) {
            char *t = chance(80) ? xasprintf("10.%u.%u.0/24", 100 + rnd(50), rnd(256))
                                 : xasprintf("fd00:%x::/32", rnd(4096));
            push_cidr(&m->source_ips, t);
            free(t);
        }
    } else if (k < 90) {
        for (unsigned i = 0; i < n; i++) {
            struct zt_sa_match *sa =
                zt_state_array_push(&m->service_accounts.v, &m->service_accounts.n, sizeof(*sa));
            sa->namespace = xasprintf("ns-%u", i ? rnd(n_ns) : ns);
            sa->service_account = xasprintf("sa-%u", rnd(N_SA));
        }
    } else {
        push_str(&m->namespaces, ZT_STRMATCH_EXACT, xasprintf("ns-%u", ns));
        push_str(&m->not_principals, ZT_STRMATCH_EXACT, principal(ns, rnd(N_SA)));
    }
    if (chance(5))
        push_str(&m->not_namespaces, ZT_STRMATCH_EXACT, xasprintf("ns-%u", rnd(n_ns)));
}

static void fill_rule(struct zt_policy_rule *r, unsigned n_ns, unsigned own_ns)
{
    if (!chance(5)) {
        struct zt_policy_clause *from =
            zt_state_array_push(&r->clauses, &r->n_clauses, sizeof(*r->clauses));
        unsigned n = chance(10) ? 2 : 1;
        for (unsigned i = 0; i < n; i++)
            fill_source(zt_state_array_push(&from->matches, &from->n_matches,
                                            sizeof(struct zt_policy_match)),
                        n_ns, own_ns);
    }
    if (chance(70)) {
        struct zt_policy_clause *to =
            zt_state_array_push(&r->clauses, &r->n_clauses, sizeof(*r->clauses));
        struct zt_policy_match *m =
            zt_state_array_push(&to->matches, &to->n_matches, sizeof(*to->matches));
        unsigned n = 1 + rnd(3);
        for (unsigned i = 0; i < n; i++)
            push_port(chance(7) ? &m->not_destination_ports : &m->destination_ports,
                      ports[rnd(N_PORTS)]);
    }
    if (chance(5)) {
        struct zt_policy_clause *when =
            zt_state_array_push(&r->clauses, &r->n_clauses, sizeof(*r->clauses));
        struct zt_policy_match *m =
            zt_state_array_push(&when->matches, &when->n_matches, sizeof(*when->matches));
        push_cidr(&m->not_source_ips, "192.0.2.0/24");
    }
}

static struct zt_policy *policy_new(const char *ns, char *name, enum zt_policy_scope scope,
                                    enum zt_policy_action action)
{
    struct zt_policy *p = zt_policy_new();
    p->namespace = zt_state_xstrdup(ns);
    p->name = name;
    p->scope = scope;
    p->action = action;
    return p;
}

static void list_policy(struct zt_workload *wl, const char *key)
{
    *(char **)zt_state_array_push(&wl->authorization_policies, &wl->n_authorization_policies,
                                  sizeof(char *)) = zt_state_xstrdup(key);
}

/* What a generated mesh keeps for drawing connections. */
struct mesh {
    struct zt_state *s;
    unsigned n_ns, n_wls, n_local;
    size_t n_rules;
};

static void build_mesh(struct mesh *mesh, unsigned n_pols, unsigned n_rules, unsigned n_ns)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_workload **wls;
    unsigned n_wls = n_ns * WL_PER_NS, made = 0;
    char err[256], key[64];

    wls = zt_state_xcalloc(n_wls, sizeof(*wls));
    for (unsigned i = 0; i < n_wls; i++) {
        struct zt_workload *wl = zt_workload_new();
        struct zt_ip *a = zt_state_array_push(&wl->addresses, &wl->n_addresses, sizeof(*a));
        char ip[32];
        wl->uid = xasprintf("wl-%u", i);
        wl->name = xasprintf("wl-%u", i);
        wl->namespace = xasprintf("ns-%u", i / WL_PER_NS);
        wl->service_account = xasprintf("sa-%u", i % N_SA);
        wl->protocol = ZT_WL_PROTO_HBONE;
        snprintf(ip, sizeof(ip), "10.%u.%u.%u", 1 + i / 65536, (i / 256) % 256, i % 256);
        if (zt_ip_parse(ip, a))
            abort();
        list_policy(wl, "istio-system/istio_converted_static_strict");
        wls[i] = wl;
    }

    /* STRICT mTLS, as istiod sends it. */
    {
        struct zt_policy *p =
            policy_new("istio-system", zt_state_xstrdup("istio_converted_static_strict"),
                       ZT_POLICY_WORKLOAD_SELECTOR, ZT_POLICY_DENY);
        struct zt_policy_rule *r = zt_state_array_push(&p->rules, &p->n_rules, sizeof(*p->rules));
        struct zt_policy_clause *c = zt_state_array_push(&r->clauses, &r->n_clauses, sizeof(*c));
        struct zt_policy_match *m = zt_state_array_push(&c->matches, &c->n_matches, sizeof(*m));
        push_str(&m->not_principals, ZT_STRMATCH_PRESENCE, NULL);
        zt_state_builder_add_policy(b, p);
        mesh->n_rules++;
        made++;
    }
    /* Mesh-wide blocklists in the root namespace. */
    for (unsigned g = 0; g < 4 && made < n_pols; g++, made++) {
        struct zt_policy *p =
            policy_new("istio-system", xasprintf("global-%u", g), ZT_POLICY_GLOBAL, ZT_POLICY_DENY);
        for (unsigned r = 0; r < n_rules; r++) {
            struct zt_policy_rule *rule =
                zt_state_array_push(&p->rules, &p->n_rules, sizeof(*p->rules));
            struct zt_policy_clause *c =
                zt_state_array_push(&rule->clauses, &rule->n_clauses, sizeof(*c));
            struct zt_policy_match *m = zt_state_array_push(&c->matches, &c->n_matches, sizeof(*m));
            char *t = xasprintf("192.0.%u.0/24", 2 + g * n_rules + r);
            push_cidr(&m->source_ips, t);
            free(t);
        }
        mesh->n_rules += n_rules;
        zt_state_builder_add_policy(b, p);
    }
    for (unsigned i = 0; made < n_pols; i++, made++) {
        unsigned ns = i % n_ns;
        bool ns_wide = chance(25);
        enum zt_policy_action action = chance(80) ? ZT_POLICY_ALLOW : ZT_POLICY_DENY;
        char nsname[32];
        struct zt_policy *p;
        snprintf(nsname, sizeof(nsname), "ns-%u", ns);
        p = policy_new(nsname, xasprintf("%s-%u", ns_wide ? "ns" : "sel", i),
                       ns_wide ? ZT_POLICY_NAMESPACE : ZT_POLICY_WORKLOAD_SELECTOR, action);
        p->dry_run = chance(5);
        for (unsigned r = 0; r < n_rules; r++)
            fill_rule(zt_state_array_push(&p->rules, &p->n_rules, sizeof(*p->rules)), n_ns, ns);
        mesh->n_rules += n_rules;
        if (!ns_wide) {
            unsigned n = 1 + rnd(3);
            snprintf(key, sizeof(key), "%s/%s", nsname, p->name);
            for (unsigned k = 0; k < n; k++)
                list_policy(wls[ns * WL_PER_NS + rnd(WL_PER_NS)], key);
        }
        zt_state_builder_add_policy(b, p);
    }
    for (unsigned i = 0; i < n_wls; i++)
        zt_state_builder_add_workload(b, wls[i]);
    free(wls);
    if (zt_state_builder_finish(b, &mesh->s, err, sizeof(err))) {
        fprintf(stderr, "authz_bench: %s\n", err);
        exit(1);
    }
    mesh->n_ns = n_ns;
    mesh->n_wls = n_wls;
}

struct sample {
    const struct zt_workload *wl;
    struct zt_authz_conn conn;
    char identity[96];
};

static void random_sample(const struct mesh *mesh, struct sample *sm)
{
    char ip[32];
    memset(sm, 0, sizeof(*sm));
    /* Authorization runs for the proxy's own pods only: the destinations are
     * n_local workloads spread over the mesh. */
    sm->wl = zt_state_workload_at(mesh->s, (rnd(mesh->n_local) * 7919u) % mesh->n_wls);
    if (!chance(5)) {
        snprintf(sm->identity, sizeof(sm->identity), "spiffe://cluster.local/ns/ns-%u/sa/sa-%u",
                 rnd(mesh->n_ns), rnd(N_SA));
        sm->conn.src_identity = sm->identity;
    }
    snprintf(ip, sizeof(ip), "10.%u.%u.%u", 100 + rnd(60), rnd(256), 1 + rnd(250));
    if (zt_ip_parse(ip, &sm->conn.src_ip))
        abort();
    sm->conn.src_port = (uint16_t)(30000 + rnd(30000));
    sm->conn.dst_ip = sm->wl->addresses[0];
    sm->conn.dst_port = ports[rnd(N_PORTS)];
}

/* Rewrites sm so that the first match of every clause of r passes, where
 * the generator's value kinds make that easy. */
static void steer_to_rule(struct sample *sm, const struct zt_policy_rule *r)
{
    for (size_t c = 0; c < r->n_clauses; c++) {
        const struct zt_policy_match *m;
        if (!r->clauses[c].n_matches)
            continue;
        m = &r->clauses[c].matches[0];
        if (m->principals.n && m->principals.v[0].kind == ZT_STRMATCH_EXACT)
            snprintf(sm->identity, sizeof(sm->identity), "spiffe://%s", m->principals.v[0].value);
        else if (m->principals.n && m->principals.v[0].kind == ZT_STRMATCH_PREFIX)
            snprintf(sm->identity, sizeof(sm->identity), "spiffe://%ssa/sa-0",
                     m->principals.v[0].value);
        else if (m->principals.n && m->principals.v[0].kind == ZT_STRMATCH_SUFFIX)
            snprintf(sm->identity, sizeof(sm->identity), "spiffe://cluster.local/ns/ns-0%s",
                     m->principals.v[0].value);
        else if (m->namespaces.n)
            snprintf(sm->identity, sizeof(sm->identity), "spiffe://cluster.local/ns/%s/sa/sa-1",
                     m->namespaces.v[0].value);
        else if (m->service_accounts.n)
            snprintf(sm->identity, sizeof(sm->identity), "spiffe://cluster.local/ns/%s/sa/%s",
                     m->service_accounts.v[0].namespace, m->service_accounts.v[0].service_account);
        if (m->source_ips.n) {
            sm->conn.src_ip = m->source_ips.v[0].ip;
            sm->conn.src_ip.addr[sm->conn.src_ip.family == AF_INET ? 3 : 15] |= 1;
        }
        if (m->destination_ports.n)
            sm->conn.dst_port = (uint16_t)m->destination_ports.v[0];
    }
    sm->conn.src_identity = sm->identity;
}

/* A connection aimed at some enforced ALLOW rule that applies to its
 * destination (namespace-wide or listed). */
static void steered_sample(const struct mesh *mesh, struct sample *sm)
{
    for (;;) {
        const struct zt_policy *p;
        random_sample(mesh, sm);
        if (chance(50) && sm->wl->n_authorization_policies > 1) {
            p = zt_state_policy_by_key(
                mesh->s,
                sm->wl->authorization_policies[1 + rnd((uint32_t)sm->wl->n_authorization_policies -
                                                       1)]);
        } else {
            p = zt_state_policy_at(mesh->s, rnd((uint32_t)zt_state_policy_count(mesh->s)));
            if (p->scope != ZT_POLICY_NAMESPACE || strcmp(p->namespace, sm->wl->namespace) != 0)
                continue;
        }
        if (!p || p->action != ZT_POLICY_ALLOW || p->dry_run || !p->n_rules)
            continue;
        steer_to_rule(sm, &p->rules[rnd((uint32_t)p->n_rules)]);
        return;
    }
}

/* Fills v with up to n samples of the wanted outcome; returns how many
 * (fewer when the policies make that outcome rare). */
static size_t draw(const struct mesh *mesh, struct sample *v, size_t n, bool want_allowed)
{
    size_t got = 0;
    for (size_t tries = 0; got < n && tries < 100 * n; tries++) {
        struct sample *sm = &v[got];
        if (want_allowed)
            steered_sample(mesh, sm);
        else
            random_sample(mesh, sm);
        if ((zt_authz_check_linear(mesh->s, sm->wl, &sm->conn, NULL, NULL, 0) == 0) != want_allowed)
            continue;
        /* Identity pointers must follow the copy into the array. */
        if (sm->conn.src_identity)
            sm->conn.src_identity = sm->identity;
        got++;
    }
    return got;
}

typedef int check_fn(const struct zt_state *s, const struct zt_workload *dst_wl,
                     const struct zt_authz_conn *conn, struct zt_authz_result *res, char *reason,
                     size_t reason_len);

/* Nanoseconds per check over the samples, repeated for at least `seconds`. */
static double time_checks(const struct mesh *mesh, check_fn *fn, const struct sample *v, size_t n,
                          double seconds)
{
    double start = now_s(), el;
    size_t done = 0;
    volatile int sink = 0;
    do {
        for (size_t i = 0; i < n; i++) {
            struct zt_authz_result res;
            sink += fn(mesh->s, v[i].wl, &v[i].conn, &res, NULL, 0);
        }
        done += n;
        el = now_s() - start;
    } while (el < seconds);
    (void)sink;
    return el * 1e9 / (double)done;
}

static bool same_result(const struct zt_authz_result *a, const struct zt_authz_result *b)
{
    return a->denied_by == b->denied_by && a->dry_run_denied_by == b->dry_run_denied_by &&
           a->has_dry_run_allow == b->has_dry_run_allow &&
           a->dry_run_allow_matched == b->dry_run_allow_matched;
}

static void agree_or_die(const struct mesh *mesh, const struct sample *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct zt_authz_result a, b;
        char ra[256], rb[256];
        int x = zt_authz_check_ex(mesh->s, v[i].wl, &v[i].conn, &a, ra, sizeof(ra));
        int y = zt_authz_check_linear(mesh->s, v[i].wl, &v[i].conn, &b, rb, sizeof(rb));
        if (x != y || strcmp(ra, rb) != 0 || !same_result(&a, &b)) {
            fprintf(stderr,
                    "authz_bench: evaluators disagree on sample %zu: %d \"%s\" vs %d \"%s\"\n", i,
                    x, ra, y, rb);
            exit(1);
        }
    }
}

int main(void)
{
    unsigned n_pols = (unsigned)env_long("AUTHZ_POLICIES", 10000);
    unsigned n_rules = (unsigned)env_long("AUTHZ_RULES", 10);
    unsigned n_ns = (unsigned)env_long("AUTHZ_NAMESPACES", n_pols / 20 ? n_pols / 20 : 1);
    double seconds = (double)env_long("AUTHZ_MILLIS", 500) / 1000.0;
    struct mesh mesh = {0};
    struct sample *samples[2];
    static const char *const names[2] = {"allowed", "denied"};
    double build_ms;

    size_t heap0 = mallinfo2().uordblks;

    build_mesh(&mesh, n_pols, n_rules, n_ns);
    mesh.n_local = (unsigned)env_long("AUTHZ_NODE_PODS", 100);
    if (mesh.n_local < 1 || mesh.n_local > mesh.n_wls)
        mesh.n_local = mesh.n_wls;
    printf("authz setup policies=%zu rules=%zu workloads=%u namespaces=%u node_pods=%u "
           "snapshot_bytes=%zu\n",
           zt_state_policy_count(mesh.s), mesh.n_rules, mesh.n_wls, n_ns, mesh.n_local,
           mallinfo2().uordblks - heap0);
    fflush(stdout);

    {
        long before = rss_kb();
        double t0 = now_s();
        zt_authz_prepare(mesh.s);
        build_ms = (now_s() - t0) * 1e3;
        printf("authz index build_ms=%.1f rss_bytes=%ld\n", build_ms, (rss_kb() - before) * 1024);
        fflush(stdout);
    }

    /* One workload replaced (a pod restarted with a new address). */
    {
        struct zt_state_builder *b;
        struct zt_state *s2 = NULL;
        struct zt_workload *wl = zt_workload_new();
        struct zt_ip *a = zt_state_array_push(&wl->addresses, &wl->n_addresses, sizeof(*a));
        double t0, t1, t2;
        char err[256];
        wl->uid = xasprintf("wl-0");
        wl->name = xasprintf("wl-0");
        wl->namespace = xasprintf("ns-0");
        wl->service_account = xasprintf("sa-0");
        wl->protocol = ZT_WL_PROTO_HBONE;
        if (zt_ip_parse("10.250.0.1", a))
            abort();
        list_policy(wl, "istio-system/istio_converted_static_strict");
        t0 = now_s();
        b = zt_state_builder_new(mesh.s);
        zt_state_builder_put_workload(b, wl);
        if (zt_state_builder_finish(b, &s2, err, sizeof(err))) {
            fprintf(stderr, "authz_bench: delta: %s\n", err);
            return 1;
        }
        t1 = now_s();
        zt_authz_prepare(s2);
        t2 = now_s();
        printf("authz delta case=one_workload snapshot_ms=%.2f index_ms=%.3f full_build_ms=%.1f "
               "index_reused=%d\n",
               (t1 - t0) * 1e3, (t2 - t1) * 1e3, build_ms,
               zt_authz_index_of(s2) == zt_authz_index_of(mesh.s));
        fflush(stdout);
        zt_state_unref(s2);
    }

    for (int k = 0; k < 2; k++) {
        double ours = 0, linear = 0;
        size_t n;
        samples[k] = zt_state_xcalloc(N_SAMPLES, sizeof(struct sample));
        n = draw(&mesh, samples[k], N_SAMPLES, k == 0);
        agree_or_die(&mesh, samples[k], n);
        if (n) {
            ours = time_checks(&mesh, zt_authz_check_ex, samples[k], n, seconds);
            if (env_long("AUTHZ_LINEAR", 1))
                linear = time_checks(&mesh, zt_authz_check_linear, samples[k], n / 10 ? n / 10 : 1,
                                     seconds);
        }
        printf("authz check case=%s samples=%zu ns_per_check=%.0f linear_ns_per_check=%.0f "
               "speedup=%.1f\n",
               names[k], n, ours, linear, ours > 0 ? linear / ours : 0);
        fflush(stdout);
        free(samples[k]);
    }
    zt_state_unref(mesh.s);
    return 0;
}
