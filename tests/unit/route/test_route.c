/* The route table: Gateway API precedence, matching, weights, attachment,
 * filters on heads, redirect Locations, retry and timeout policy. */
#include "test.h"
#include "base/alloc.h"
#include "base/err.h"
#include "route/route.h"

#include <stdint.h>

/* ---- building definitions by hand ---- */

static struct zt_route_def *def_new(const char *ns, const char *name, int64_t created)
{
    struct zt_route_def *d = zt_xcalloc(1, sizeof(*d));
    d->ns = zt_xstrdup(ns);
    d->name = zt_xstrdup(name);
    d->has_created = created >= 0;
    d->created = created;
    return d;
}

static void parent(struct zt_route_def *d, enum zt_route_parent_kind k, const char *ns,
                   const char *name, uint16_t port)
{
    d->parents = zt_xrealloc(d->parents, (d->n_parents + 1) * sizeof(*d->parents));
    struct zt_route_parent *p = &d->parents[d->n_parents++];
    memset(p, 0, sizeof(*p));
    p->kind = k;
    p->ns = zt_xstrdup(ns);
    p->name = zt_xstrdup(name);
    p->port = port;
}

static struct zt_route_rule *rule(struct zt_route_def *d)
{
    d->rules = zt_xrealloc(d->rules, (d->n_rules + 1) * sizeof(*d->rules));
    struct zt_route_rule *r = &d->rules[d->n_rules++];
    memset(r, 0, sizeof(*r));
    return r;
}

static struct zt_route_match *match(struct zt_route_rule *r, enum zt_route_path_kind k,
                                    const char *path, const char *method)
{
    r->matches = zt_xrealloc(r->matches, (r->n_matches + 1) * sizeof(*r->matches));
    struct zt_route_match *m = &r->matches[r->n_matches++];
    memset(m, 0, sizeof(*m));
    m->path_kind = k;
    if (path) {
        m->path = zt_xstrdup(path);
        if (k == ZT_ROUTE_PATH_REGEX && zt_route_regex_new(path, &m->path_re, NULL, 0))
            abort();
    }
    if (method)
        m->method = zt_xstrdup(method);
    return m;
}

static void strmatch(struct zt_route_strmatch **v, size_t *n, const char *name, const char *value,
                     bool regex)
{
    *v = zt_xrealloc(*v, (*n + 1) * sizeof(**v));
    struct zt_route_strmatch *s = &(*v)[(*n)++];
    memset(s, 0, sizeof(*s));
    s->kind = regex ? ZT_ROUTE_STR_REGEX : ZT_ROUTE_STR_EXACT;
    s->name = zt_xstrdup(name);
    s->value = zt_xstrdup(value);
    if (regex && zt_route_regex_new(value, &s->re, NULL, 0))
        abort();
}

static struct zt_route_backend *backend(struct zt_route_rule *r, const char *name, uint32_t w)
{
    r->backends = zt_xrealloc(r->backends, (r->n_backends + 1) * sizeof(*r->backends));
    struct zt_route_backend *b = &r->backends[r->n_backends++];
    memset(b, 0, sizeof(*b));
    b->ns = zt_xstrdup("default");
    b->name = zt_xstrdup(name);
    b->port = 80;
    b->weight = w;
    return b;
}

static void add(struct zt_route_builder *b, struct zt_route_def *d)
{
    char err[128];
    if (zt_route_builder_add(b, d, err, sizeof(err)))
        abort();
    free(d);
}

static struct zt_http_head *req_new(const char *method, const char *path)
{
    struct zt_http_head *h = zt_xcalloc(1, sizeof(*h));
    zt_http_head_init(h, false);
    zt_http_head_set_part(h, &h->method, method, strlen(method));
    zt_http_head_set_part(h, &h->path, path, strlen(path));
    zt_http_head_set_part(h, &h->scheme, "http", 4);
    zt_http_head_set_part(h, &h->authority, "svc.default:8080", 16);
    return h;
}

static void req_free(struct zt_http_head *h)
{
    zt_http_head_cleanup(h);
    free(h);
}

static const struct zt_route_target SVC = {"default", "svc", 8080, NULL};

/* The backend chosen for method/path/one header (NULL if not forwarded). */
static const char *pick(const struct zt_route_table *t, const struct zt_route_target *tg,
                        const char *method, const char *path, const char *hname, const char *hvalue,
                        enum zt_route_outcome *oc)
{
    struct zt_http_head *h = req_new(method, path);
    struct zt_route_result res;
    if (hname)
        zt_http_head_add(h, hname, strlen(hname), hvalue, strlen(hvalue));
    zt_route_select(t, tg, h, 0, &res);
    req_free(h);
    if (oc)
        *oc = res.outcome;
    return res.backend ? res.backend->name : NULL;
}

#define PICK(t, m, p) pick(t, &SVC, m, p, NULL, NULL, NULL)

/* ---- tests ---- */

static void test_path_kinds(void)
{
    struct zt_route_builder *b = zt_route_builder_new(NULL, NULL);
    struct zt_route_def *d = def_new("default", "r", -1);
    struct zt_route_rule *r;
    enum zt_route_outcome oc;
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    /* Listed worst first: the order must come from precedence. */
    r = rule(d);
    match(r, ZT_ROUTE_PATH_REGEX, "/foo.*", NULL);
    backend(r, "regex", 1);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/foo", NULL);
    backend(r, "prefix-foo", 1);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/foo/bar", NULL);
    backend(r, "prefix-foo-bar", 1);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_EXACT, "/foo/bar", NULL);
    backend(r, "exact", 1);
    add(b, d);
    struct zt_route_table *t = zt_route_builder_finish(b);
    CHECK_EQ_STR(PICK(t, "GET", "/foo/bar"), "exact");
    CHECK_EQ_STR(PICK(t, "GET", "/foo/bar?x=1"), "exact");
    CHECK_EQ_STR(PICK(t, "GET", "/foo/bar/"), "prefix-foo-bar");
    CHECK_EQ_STR(PICK(t, "GET", "/foo/bar/baz"), "prefix-foo-bar");
    CHECK_EQ_STR(PICK(t, "GET", "/foo/barbaz"), "prefix-foo");
    CHECK_EQ_STR(PICK(t, "GET", "/foo"), "prefix-foo");
    CHECK_EQ_STR(PICK(t, "GET", "/foobar"), "regex"); /* not a segment of /foo */
    CHECK(pick(t, &SVC, "GET", "/other", NULL, NULL, &oc) == NULL);
    CHECK_EQ_INT(oc, ZT_ROUTE_NOT_FOUND);
    zt_route_table_unref(t);
}

/* Istio's order around regexes: a prefix, even "/", outranks a regex; a
 * rule without matches comes after both. */
static void test_regex_vs_catch_all(void)
{
    struct zt_route_builder *b = zt_route_builder_new(NULL, NULL);
    struct zt_route_def *d = def_new("default", "r", -1);
    struct zt_route_rule *r;
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    r = rule(d); /* no matches */
    backend(r, "all", 1);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_REGEX, "/v[0-9]+/.*", NULL);
    backend(r, "versioned", 1);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/v1", NULL);
    backend(r, "v1", 1);
    add(b, d);
    struct zt_route_table *t = zt_route_builder_finish(b);
    CHECK_EQ_STR(PICK(t, "GET", "/v1/x"), "v1");
    CHECK_EQ_STR(PICK(t, "GET", "/v2/x"), "versioned");
    CHECK_EQ_STR(PICK(t, "GET", "/v2"), "all"); /* full match: "/v2" lacks the "/" */
    CHECK_EQ_STR(PICK(t, "GET", "/"), "all");
    CHECK_EQ_STR(PICK(t, "GET", ""), "all");
    zt_route_table_unref(t);

    b = zt_route_builder_new(NULL, NULL);
    d = def_new("default", "r", -1);
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_REGEX, "/v[0-9]+/.*", NULL);
    backend(r, "versioned", 1);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/", NULL);
    backend(r, "slash", 1);
    add(b, d);
    t = zt_route_builder_finish(b);
    CHECK_EQ_STR(PICK(t, "GET", "/v2/x"), "slash");
    zt_route_table_unref(t);
}

/* The Gateway API's order after the path: method, then header count, then
 * query count (the spec's HTTPRouteRule precedence list). */
static void test_method_header_query_order(void)
{
    struct zt_route_builder *b = zt_route_builder_new(NULL, NULL);
    struct zt_route_def *d = def_new("default", "r", -1);
    struct zt_route_rule *r;
    struct zt_route_match *m;
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    r = rule(d);
    m = match(r, ZT_ROUTE_PATH_PREFIX, "/x", NULL);
    strmatch(&m->query, &m->n_query, "a", "1", false);
    strmatch(&m->query, &m->n_query, "b", "2", false);
    backend(r, "two-queries", 1);
    r = rule(d);
    m = match(r, ZT_ROUTE_PATH_PREFIX, "/x", NULL);
    strmatch(&m->headers, &m->n_headers, "h1", "1", false);
    backend(r, "one-header", 1);
    r = rule(d);
    m = match(r, ZT_ROUTE_PATH_PREFIX, "/x", NULL);
    strmatch(&m->headers, &m->n_headers, "h1", "1", false);
    strmatch(&m->headers, &m->n_headers, "h2", "2", false);
    backend(r, "two-headers", 1);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/x", "POST");
    backend(r, "post", 1);
    add(b, d);
    struct zt_route_table *t = zt_route_builder_finish(b);

    struct zt_http_head *h = req_new("POST", "/x?a=1&b=2");
    struct zt_route_result res;
    zt_http_head_add(h, "H1", 2, "1", 1);
    zt_http_head_add(h, "h2", 2, "2", 1);
    zt_route_select(t, &SVC, h, 0, &res);
    CHECK_EQ_STR(res.backend->name, "post");
    zt_http_head_set_part(h, &h->method, "GET", 3);
    zt_route_select(t, &SVC, h, 0, &res);
    CHECK_EQ_STR(res.backend->name, "two-headers");
    zt_http_head_remove(h, "h2");
    zt_route_select(t, &SVC, h, 0, &res);
    CHECK_EQ_STR(res.backend->name, "one-header");
    zt_http_head_remove(h, "h1");
    zt_route_select(t, &SVC, h, 0, &res);
    CHECK_EQ_STR(res.backend->name, "two-queries");
    zt_http_head_set_part(h, &h->path, "/x?b=2&a=1", 10);
    zt_route_select(t, &SVC, h, 0, &res);
    CHECK_EQ_STR(res.backend->name, "two-queries");
    zt_http_head_set_part(h, &h->path, "/x?a=1&b=3", 10);
    zt_route_select(t, &SVC, h, 0, &res);
    CHECK_EQ_INT(res.outcome, ZT_ROUTE_NOT_FOUND);
    req_free(h);
    zt_route_table_unref(t);
}

/* Equal matches: older route, then namespace/name, then load order for
 * routes without a timestamp, then rule order. */
static void test_tie_breaks(void)
{
    struct zt_route_builder *b = zt_route_builder_new("istio-system", "waypoint");
    struct zt_route_def *d;
    struct zt_route_rule *r;
    d = def_new("default", "a-newer", 2000);
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    match(rule(d), ZT_ROUTE_PATH_PREFIX, "/t1", NULL);
    backend(&d->rules[0], "a-newer", 1);
    add(b, d);
    d = def_new("default", "z-older", 1000);
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    match(rule(d), ZT_ROUTE_PATH_PREFIX, "/t1", NULL);
    backend(&d->rules[0], "z-older", 1);
    add(b, d);
    /* Same time: namespace, then name. */
    d = def_new("istio-system", "b", 1000);
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    match(rule(d), ZT_ROUTE_PATH_PREFIX, "/t2", NULL);
    backend(&d->rules[0], "sys-b", 1);
    add(b, d);
    d = def_new("default", "c", 1000);
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    match(rule(d), ZT_ROUTE_PATH_PREFIX, "/t2", NULL);
    backend(&d->rules[0], "default-c", 1);
    add(b, d);
    /* No timestamps: load order, after any timestamped route. */
    d = def_new("default", "y", -1);
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    match(rule(d), ZT_ROUTE_PATH_PREFIX, "/t3", NULL);
    backend(&d->rules[0], "y-first-loaded", 1);
    add(b, d);
    d = def_new("default", "x", -1);
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    match(rule(d), ZT_ROUTE_PATH_PREFIX, "/t3", NULL);
    backend(&d->rules[0], "x-second", 1);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/t4", NULL);
    backend(r, "rule1", 1);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/t4", NULL);
    backend(r, "rule2", 1);
    add(b, d);
    d = def_new("default", "w", 5000);
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    match(rule(d), ZT_ROUTE_PATH_PREFIX, "/t3", NULL);
    backend(&d->rules[0], "w-timestamped", 1);
    add(b, d);
    struct zt_route_table *t = zt_route_builder_finish(b);
    CHECK_EQ_STR(PICK(t, "GET", "/t1"), "z-older");
    CHECK_EQ_STR(PICK(t, "GET", "/t2"), "default-c");
    CHECK_EQ_STR(PICK(t, "GET", "/t3"), "w-timestamped");
    CHECK_EQ_STR(PICK(t, "GET", "/t4"), "rule1");
    CHECK_EQ_INT(zt_route_table_count(t), 7);
    zt_route_table_unref(t);
}

static void test_headers_and_query(void)
{
    struct zt_route_builder *b = zt_route_builder_new(NULL, NULL);
    struct zt_route_def *d = def_new("default", "r", -1);
    struct zt_route_rule *r;
    struct zt_route_match *m;
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    r = rule(d);
    m = match(r, ZT_ROUTE_PATH_NONE, NULL, NULL);
    strmatch(&m->headers, &m->n_headers, "x-version", "v[12]", true);
    backend(r, "re", 1);
    r = rule(d);
    m = match(r, ZT_ROUTE_PATH_NONE, NULL, NULL);
    strmatch(&m->headers, &m->n_headers, "x-multi", "a,b", false);
    backend(r, "joined", 1);
    r = rule(d);
    m = match(r, ZT_ROUTE_PATH_NONE, NULL, NULL);
    strmatch(&m->query, &m->n_query, "q", "[0-9]+", true);
    backend(r, "query-re", 1);
    add(b, d);
    struct zt_route_table *t = zt_route_builder_finish(b);
    CHECK_EQ_STR(pick(t, &SVC, "GET", "/", "X-Version", "v2", NULL), "re");
    CHECK(pick(t, &SVC, "GET", "/", "X-Version", "v22", NULL) == NULL); /* full match */
    CHECK(pick(t, &SVC, "GET", "/", "X-Version", "V2", NULL) == NULL);  /* values: exact case */
    CHECK_EQ_STR(PICK(t, "GET", "/a?x=1&q=42"), "query-re");
    CHECK_EQ_STR(PICK(t, "GET", "/a?q=42&q=x"), "query-re"); /* the first one counts */
    CHECK(PICK(t, "GET", "/a?q=x&q=42") == NULL);
    CHECK(PICK(t, "GET", "/a?qq=42") == NULL);
    CHECK(PICK(t, "GET", "/q=42") == NULL);
    struct zt_http_head *h = req_new("GET", "/");
    struct zt_route_result res;
    zt_http_head_add(h, "x-multi", 7, "a", 1);
    zt_http_head_add(h, "X-Multi", 7, "b", 1);
    zt_route_select(t, &SVC, h, 0, &res);
    CHECK(res.backend && strcmp(res.backend->name, "joined") == 0);
    req_free(h);
    zt_route_table_unref(t);
}

static void test_weights(void)
{
    struct zt_route_builder *b = zt_route_builder_new(NULL, NULL);
    struct zt_route_def *d = def_new("default", "r", -1);
    struct zt_route_rule *r;
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/split", NULL);
    backend(r, "ninety", 90);
    backend(r, "zero", 0);
    backend(r, "ten", 10);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/zero", NULL);
    backend(r, "a", 0);
    backend(r, "b", 0);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/single", NULL);
    backend(r, "only", 7);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/none", NULL);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/invalid", NULL);
    backend(r, "good", 1);
    backend(r, "bad", 1)->invalid = true;
    add(b, d);
    struct zt_route_table *t = zt_route_builder_finish(b);
    struct zt_http_head *h = req_new("GET", "/split");
    struct zt_route_result res;
    int ninety = 0, ten = 0, other = 0;
    for (uint32_t rnd = 0; rnd < 1000; rnd++) {
        zt_route_select(t, &SVC, h, rnd, &res);
        if (res.backend && strcmp(res.backend->name, "ninety") == 0)
            ninety++;
        else if (res.backend && strcmp(res.backend->name, "ten") == 0)
            ten++;
        else
            other++;
    }
    CHECK_EQ_INT(ninety, 900);
    CHECK_EQ_INT(ten, 100);
    CHECK_EQ_INT(other, 0);
    zt_route_select(t, &SVC, h, UINT32_MAX, &res);
    CHECK(res.outcome == ZT_ROUTE_FORWARD);
    zt_http_head_set_part(h, &h->path, "/zero", 5);
    zt_route_select(t, &SVC, h, 3, &res);
    CHECK_EQ_INT(res.outcome, ZT_ROUTE_NO_BACKEND);
    CHECK(res.backend == NULL && res.rule != NULL);
    zt_http_head_set_part(h, &h->path, "/none", 5);
    zt_route_select(t, &SVC, h, 3, &res);
    CHECK_EQ_INT(res.outcome, ZT_ROUTE_NO_BACKEND);
    zt_http_head_set_part(h, &h->path, "/single", 7);
    for (uint32_t rnd = 0; rnd < 20; rnd++) {
        zt_route_select(t, &SVC, h, rnd, &res);
        CHECK(res.outcome == ZT_ROUTE_FORWARD && strcmp(res.backend->name, "only") == 0);
    }
    zt_http_head_set_part(h, &h->path, "/invalid", 8);
    zt_route_select(t, &SVC, h, 0, &res);
    CHECK_EQ_STR(res.backend->name, "good");
    zt_route_select(t, &SVC, h, 1, &res);
    CHECK_EQ_INT(res.outcome, ZT_ROUTE_NO_BACKEND);
    req_free(h);
    zt_route_table_unref(t);
}

static void test_ports_default_not_found(void)
{
    struct zt_route_builder *b = zt_route_builder_new(NULL, NULL);
    struct zt_route_def *d = def_new("default", "r", -1);
    struct zt_route_rule *r;
    enum zt_route_outcome oc;
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 8080);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/a", NULL);
    backend(r, "a-8080", 1);
    add(b, d);
    d = def_new("default", "s", -1);
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "other", 0);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/a", NULL);
    backend(r, "other-any", 1);
    add(b, d);
    struct zt_route_table *t = zt_route_builder_finish(b);
    struct zt_route_target p9090 = {"default", "svc", 9090, NULL};
    struct zt_route_target other = {"default", "other", 1234, NULL};
    struct zt_route_target other_ns = {"prod", "svc", 8080, NULL};
    CHECK_EQ_STR(PICK(t, "GET", "/a"), "a-8080");
    CHECK(pick(t, &SVC, "GET", "/b", NULL, NULL, &oc) == NULL);
    CHECK_EQ_INT(oc, ZT_ROUTE_NOT_FOUND);
    CHECK(pick(t, &p9090, "GET", "/a", NULL, NULL, &oc) == NULL);
    CHECK_EQ_INT(oc, ZT_ROUTE_DEFAULT);
    CHECK_EQ_STR(pick(t, &other, "GET", "/a/b", NULL, NULL, &oc), "other-any");
    CHECK(pick(t, &other_ns, "GET", "/a", NULL, NULL, &oc) == NULL);
    CHECK_EQ_INT(oc, ZT_ROUTE_DEFAULT);

    struct zt_http_head *h = req_new("GET", "/a");
    struct zt_route_result res;
    zt_route_select(t, &p9090, h, 0, &res);
    CHECK(res.route == NULL && res.backend == NULL && res.filters == NULL);
    CHECK_EQ_INT(res.retry.attempts, 2);
    CHECK_EQ_INT(res.timeout_ms, 0);
    req_free(h);
    zt_route_table_unref(t);
}

/* A Gateway parent naming the waypoint applies to every service, merged
 * in precedence order with the service's own routes; routes from a third
 * namespace do not attach to a service. */
static void test_gateway_parent_and_namespaces(void)
{
    struct zt_route_builder *b = zt_route_builder_new("mesh", "waypoint");
    struct zt_route_def *d;
    struct zt_route_rule *r;
    enum zt_route_outcome oc;
    d = def_new("mesh", "gw", -1);
    parent(d, ZT_ROUTE_PARENT_GATEWAY, "mesh", "waypoint", 0);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_EXACT, "/health", NULL);
    backend(r, "gw-health", 1);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/", NULL);
    backend(r, "gw-prefix", 1);
    add(b, d);
    d = def_new("default", "svc-route", -1);
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/health", NULL);
    backend(r, "svc-prefix", 1);
    add(b, d);
    d = def_new("mesh", "other-gw", -1);
    parent(d, ZT_ROUTE_PARENT_GATEWAY, "mesh", "another", 0);
    match(rule(d), ZT_ROUTE_PATH_EXACT, "/x", NULL);
    backend(&d->rules[0], "never", 1);
    add(b, d);
    d = def_new("third", "foreign", -1);
    parent(d, ZT_ROUTE_PARENT_SERVICE, "prod", "api", 0);
    match(rule(d), ZT_ROUTE_PATH_EXACT, "/y", NULL);
    backend(&d->rules[0], "foreign", 1);
    add(b, d);
    d = def_new("mesh", "from-waypoint-ns", -1);
    parent(d, ZT_ROUTE_PARENT_SERVICE, "prod", "api", 0);
    match(rule(d), ZT_ROUTE_PATH_EXACT, "/z", NULL);
    backend(&d->rules[0], "from-mesh", 1);
    add(b, d);
    struct zt_route_table *t = zt_route_builder_finish(b);
    struct zt_route_target api = {"prod", "api", 80, NULL};
    CHECK_EQ_STR(PICK(t, "GET", "/health"), "gw-health");
    CHECK_EQ_STR(PICK(t, "GET", "/health/x"), "svc-prefix");
    CHECK_EQ_STR(PICK(t, "GET", "/x"), "gw-prefix");
    CHECK_EQ_STR(pick(t, &api, "GET", "/x", NULL, NULL, NULL), "gw-prefix");
    CHECK_EQ_STR(pick(t, &api, "GET", "/y", NULL, NULL, NULL), "gw-prefix");
    CHECK_EQ_STR(pick(t, &api, "GET", "/z", NULL, NULL, &oc), "from-mesh");
    zt_route_table_unref(t);

    /* Without a waypoint name Gateway parents attach to nothing. */
    b = zt_route_builder_new(NULL, NULL);
    d = def_new("mesh", "gw", -1);
    parent(d, ZT_ROUTE_PARENT_GATEWAY, "mesh", "waypoint", 0);
    match(rule(d), ZT_ROUTE_PATH_EXACT, "/x", NULL);
    add(b, d);
    t = zt_route_builder_finish(b);
    CHECK(pick(t, &api, "GET", "/x", NULL, NULL, &oc) == NULL);
    CHECK_EQ_INT(oc, ZT_ROUTE_DEFAULT);
    zt_route_table_unref(t);
}

/* A parent's sectionName names one port of the service. */
static void test_section_name(void)
{
    struct zt_route_builder *b = zt_route_builder_new(NULL, NULL);
    struct zt_route_def *d = def_new("default", "r", -1);
    enum zt_route_outcome oc;
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    d->parents[0].section = zt_xstrdup("http");
    match(rule(d), ZT_ROUTE_PATH_PREFIX, "/", NULL);
    backend(&d->rules[0], "web", 1);
    add(b, d);
    struct zt_route_table *t = zt_route_builder_finish(b);
    struct zt_route_target http = {"default", "svc", 80, "http"},
                           grpc = {"default", "svc", 80, "grpc"};
    CHECK_EQ_STR(pick(t, &http, "GET", "/a", NULL, NULL, &oc), "web");
    CHECK(pick(t, &grpc, "GET", "/a", NULL, NULL, &oc) == NULL);
    CHECK_EQ_INT(oc, ZT_ROUTE_DEFAULT);
    CHECK(pick(t, &SVC, "GET", "/a", NULL, NULL, &oc) == NULL); /* port name unknown */
    CHECK_EQ_INT(oc, ZT_ROUTE_DEFAULT);
    zt_route_table_unref(t);
}

static void test_duplicate_route(void)
{
    struct zt_route_builder *b = zt_route_builder_new(NULL, NULL);
    struct zt_route_def *d = def_new("default", "r", -1);
    char err[128] = "";
    add(b, d);
    d = def_new("default", "r", -1);
    CHECK_EQ_INT(zt_route_builder_add(b, d, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(strstr(err, "duplicate HTTPRoute default/r") != NULL);
    CHECK(d->ns == NULL); /* cleaned up */
    free(d);
    d = def_new("default", "r", -1);
    d->kind = ZT_ROUTE_GRPC; /* another kind may share the name */
    CHECK_EQ_INT(zt_route_builder_add(b, d, err, sizeof(err)), 0);
    free(d);
    /* Thousands of routes (the check is hashed): each name once. */
    for (int i = 0; i < 5000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "r%d", i % 4000);
        d = def_new(i % 2 ? "a" : "b", name, -1);
        int want = i >= 4000 ? ZT_E_CONFIG : 0;
        CHECK_EQ_INT(zt_route_builder_add(b, d, err, sizeof(err)), want);
        free(d);
    }
    struct zt_route_table *t = zt_route_builder_finish(b);
    CHECK_EQ_INT(zt_route_table_count(t), 4002);
    zt_route_table_unref(t);
}

static void test_header_modifiers(void)
{
    struct zt_route_filters f;
    struct zt_http_head *h = req_new("GET", "/");
    memset(&f, 0, sizeof(f));
    struct zt_http_field set[] = {{"x-set", "s"}}, addf[] = {{"x-add", "2"}};
    char *rm[] = {"x-gone", "x-set"};
    f.request.set = set;
    f.request.n_set = 1;
    f.request.add = addf;
    f.request.n_add = 1;
    f.request.remove = rm;
    f.request.n_remove = 2;
    zt_http_head_add(h, "x-add", 5, "1", 1);
    zt_http_head_add(h, "x-gone", 6, "1", 1);
    zt_http_head_add(h, "X-Set", 5, "old", 3);
    zt_http_head_add(h, "x-set", 5, "old2", 4);
    CHECK_EQ_INT(zt_route_apply_request(&f, NULL, h), 0);
    CHECK(zt_http_head_get(h, "x-gone") == NULL);
    CHECK_EQ_INT(zt_http_head_count(h, "x-set"), 1);
    CHECK_EQ_STR(zt_http_head_get(h, "x-set"), "s");
    CHECK_EQ_INT(zt_http_head_count(h, "x-add"), 2);
    CHECK_EQ_STR(h->path, "/");

    /* Responses get only the response modifier. */
    struct zt_http_head resp;
    zt_http_head_init(&resp, true);
    memset(&f, 0, sizeof(f));
    f.response.set = set;
    f.response.n_set = 1;
    CHECK_EQ_INT(zt_route_apply_response(&f, &resp), 0);
    CHECK_EQ_STR(zt_http_head_get(&resp, "x-set"), "s");
    zt_http_head_cleanup(&resp);

    /* A value past the head's cap is refused, not cut. */
    char *big = zt_xmalloc(ZT_HTTP_HEAD_MAX + 1);
    memset(big, 'a', ZT_HTTP_HEAD_MAX);
    big[ZT_HTTP_HEAD_MAX] = '\0';
    struct zt_http_field bigf[] = {{"x-big", big}};
    memset(&f, 0, sizeof(f));
    f.request.set = bigf;
    f.request.n_set = 1;
    CHECK_EQ_INT(zt_route_apply_request(&f, NULL, h), ZT_E_TOO_BIG);
    CHECK(zt_http_head_get(h, "x-big") == NULL);
    free(big);
    req_free(h);
}

/* The Gateway API's ReplacePrefixMatch table (HTTPPathModifier docs). */
static void test_replace_prefix(void)
{
    static const struct {
        const char *prefix, *path, *repl, *want;
    } cases[] = {
        {"/foo", "/foo/bar", "/xyz", "/xyz/bar"},
        {"/foo", "/foo/bar", "/xyz/", "/xyz/bar"},
        {"/foo/", "/foo/bar", "/xyz", "/xyz/bar"},
        {"/foo/", "/foo/bar", "/xyz/", "/xyz/bar"},
        {"/foo", "/foo", "/xyz", "/xyz"},
        {"/foo/", "/foo", "/xyz", "/xyz"},
        {"/foo", "/foo/", "/xyz", "/xyz/"},
        {"/foo", "/foo/bar", "", "/bar"},
        {"/foo/", "/foo/bar", "", "/bar"},
        {"/foo", "/foo/", "", "/"},
        {"/foo", "/foo", "", "/"},
        {"/foo", "/foo/", "/", "/"},
        {"/foo", "/foo", "/", "/"},
        {"/foo", "/foo?a=b", "/", "/?a=b"},
        {"/foo", "/foo/bar?a=/foo", "/x", "/x/bar?a=/foo"},
        {"/", "/a/b", "/x", "/x/a/b"},
        {"/", "/", "/x", "/x/"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct zt_route_match m = {.path_kind = ZT_ROUTE_PATH_PREFIX};
        char pre[32];
        size_t l;
        snprintf(pre, sizeof(pre), "%s", cases[i].prefix);
        l = strlen(pre);
        while (l && pre[l - 1] == '/') /* stored as the builder stores it */
            pre[--l] = '\0';
        m.path = pre;
        struct zt_route_filters f = {.has_rewrite = true};
        f.rewrite.path.kind = ZT_ROUTE_PATH_MOD_PREFIX;
        f.rewrite.path.value = (char *)cases[i].repl;
        struct zt_http_head *h = req_new("GET", cases[i].path);
        int rc = zt_route_apply_request(&f, &m, h);
        if (rc || strcmp(h->path, cases[i].want) != 0)
            fprintf(stderr, "  case %zu: %s + %s -> %s, want %s\n", i, cases[i].path, cases[i].repl,
                    h->path, cases[i].want);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_STR(h->path, cases[i].want);
        req_free(h);
    }
}

static void test_rewrite_full_and_host(void)
{
    struct zt_route_filters f = {.has_rewrite = true};
    struct zt_http_head *h = req_new("GET", "/old/path?q=1");
    f.rewrite.hostname = "backend.example";
    f.rewrite.path.kind = ZT_ROUTE_PATH_MOD_FULL;
    f.rewrite.path.value = "/new/";
    CHECK_EQ_INT(zt_route_apply_request(&f, NULL, h), 0);
    CHECK_EQ_STR(h->path, "/new/?q=1");
    CHECK_EQ_STR(h->authority, "backend.example");
    req_free(h);
}

static void test_redirect_location(void)
{
    struct zt_route_redirect r = {0};
    struct zt_route_match m = {.path_kind = ZT_ROUTE_PATH_PREFIX, .path = "/old"};
    struct zt_http_head *h = req_new("GET", "/old/x?q=1");
    char loc[256];
    int status = 0;

    /* Nothing set: same scheme/host, the listener port, 302. */
    CHECK_EQ_INT(zt_route_redirect_location(&r, &m, h, 8080, loc, sizeof(loc), &status), 0);
    CHECK_EQ_STR(loc, "http://svc.default:8080/old/x?q=1");
    CHECK_EQ_INT(status, 302);
    CHECK_EQ_INT(zt_route_redirect_location(&r, &m, h, 80, loc, sizeof(loc), &status), 0);
    CHECK_EQ_STR(loc, "http://svc.default/old/x?q=1");

    /* https with no port: 443, left out. */
    r.scheme = "https";
    r.status = 301;
    CHECK_EQ_INT(zt_route_redirect_location(&r, &m, h, 8080, loc, sizeof(loc), &status), 0);
    CHECK_EQ_STR(loc, "https://svc.default/old/x?q=1");
    CHECK_EQ_INT(status, 301);
    r.port = 8443;
    r.hostname = "example.com";
    r.path.kind = ZT_ROUTE_PATH_MOD_PREFIX;
    r.path.value = "/new";
    CHECK_EQ_INT(zt_route_redirect_location(&r, &m, h, 8080, loc, sizeof(loc), &status), 0);
    CHECK_EQ_STR(loc, "https://example.com:8443/new/x?q=1");
    r.path.kind = ZT_ROUTE_PATH_MOD_FULL;
    r.path.value = "/full";
    r.scheme = "http";
    r.port = 80;
    CHECK_EQ_INT(zt_route_redirect_location(&r, &m, h, 8080, loc, sizeof(loc), &status), 0);
    CHECK_EQ_STR(loc, "http://example.com/full?q=1");

    /* Too small: an error and an empty string, never a cut Location. */
    CHECK_EQ_INT(zt_route_redirect_location(&r, &m, h, 8080, loc, 10, &status), ZT_E_TOO_BIG);
    CHECK_EQ_STR(loc, "");

    /* IPv6 authority keeps its brackets; the port goes. */
    memset(&r, 0, sizeof(r));
    zt_http_head_set_part(h, &h->authority, "[fd00::1]:8080", 14);
    CHECK_EQ_INT(zt_route_redirect_location(&r, NULL, h, 9000, loc, sizeof(loc), &status), 0);
    CHECK_EQ_STR(loc, "http://[fd00::1]:9000/old/x?q=1");

    /* No host to redirect to; a control byte from the request. */
    zt_http_head_set_part(h, &h->authority, NULL, 0);
    CHECK_EQ_INT(zt_route_redirect_location(&r, NULL, h, 80, loc, sizeof(loc), &status),
                 ZT_E_PROTO);
    zt_http_head_set_part(h, &h->authority, "a\r\nb", 4);
    CHECK_EQ_INT(zt_route_redirect_location(&r, NULL, h, 80, loc, sizeof(loc), &status),
                 ZT_E_PROTO);
    req_free(h);
}

static void test_redirect_outcome_and_policy(void)
{
    struct zt_route_builder *b = zt_route_builder_new(NULL, NULL);
    struct zt_route_def *d = def_new("default", "r", -1);
    struct zt_route_rule *r;
    parent(d, ZT_ROUTE_PARENT_SERVICE, "default", "svc", 0);
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/redir", NULL);
    r->filters.has_redirect = true;
    r->filters.redirect.status = 308;
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/retry", NULL);
    backend(r, "b", 1);
    r->has_retry = true;
    r->retry = zt_route_retry_default;
    r->retry.attempts = 5;
    r->retry.codes[0] = 502;
    r->retry.n_codes = 1;
    r->request_timeout_ms = 10000;
    r->backend_timeout_ms = 2000;
    r = rule(d);
    match(r, ZT_ROUTE_PATH_PREFIX, "/noretry", NULL);
    backend(r, "b", 1);
    r->request_timeout_ms = 10000;
    r->backend_timeout_ms = 2000;
    add(b, d);
    struct zt_route_table *t = zt_route_builder_finish(b);
    struct zt_http_head *h = req_new("GET", "/redir");
    struct zt_route_result res;
    zt_route_select(t, &SVC, h, 0, &res);
    CHECK_EQ_INT(res.outcome, ZT_ROUTE_REDIRECT);
    CHECK_EQ_INT(res.filters->redirect.status, 308);
    zt_http_head_set_part(h, &h->path, "/retry", 6);
    zt_route_select(t, &SVC, h, 0, &res);
    CHECK_EQ_INT(res.retry.attempts, 5);
    CHECK_EQ_INT(res.retry.n_codes, 1);
    CHECK_EQ_INT(res.retry.per_try_timeout_ms, 2000);
    CHECK_EQ_INT(res.timeout_ms, 10000);
    zt_http_head_set_part(h, &h->path, "/noretry", 8);
    zt_route_select(t, &SVC, h, 0, &res);
    CHECK_EQ_INT(res.retry.attempts, 2);
    CHECK_EQ_INT(res.retry.per_try_timeout_ms, 0);
    CHECK_EQ_INT(res.timeout_ms, 2000); /* backendRequest replaces request */
    req_free(h);
    zt_route_table_unref(t);
}

static void test_default_retry(void)
{
    const struct zt_route_retry *r = &zt_route_retry_default;
    CHECK_EQ_INT(r->attempts, 2);
    CHECK(r->on & ZT_ROUTE_RETRY_CONNECT_FAILURE);
    CHECK(r->on & ZT_ROUTE_RETRY_REFUSED_STREAM);
    CHECK(r->on & ZT_ROUTE_RETRY_UNAVAILABLE);
    CHECK(r->on & ZT_ROUTE_RETRY_CANCELLED);
    CHECK(r->on & ZT_ROUTE_RETRY_STATUS_CODES);
    CHECK_EQ_INT(r->n_codes, 0); /* Istio 1.24+: no status retried by default */
    CHECK_EQ_INT(r->backoff_ms, 25);
    CHECK_EQ_INT(r->max_backoff_ms, 250);
}

static void test_regex(void)
{
    struct zt_route_regex *re;
    char err[300];
    CHECK_EQ_INT(zt_route_regex_new("/a(?=b)", &re, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(strstr(err, "lookaround") != NULL);
    CHECK_EQ_INT(zt_route_regex_new("(a)\\1", &re, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(strstr(err, "backreference") != NULL);
    CHECK_EQ_INT(zt_route_regex_new("/a(b", &re, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(strstr(err, "missing closing parenthesis at offset 4") != NULL);
    CHECK_EQ_INT(zt_route_regex_new("[\\1(?=]x", &re, err, sizeof(err)), 0);
    CHECK(zt_route_regex_match(re, "(x", 2));
    zt_route_regex_free(re);
    CHECK_EQ_INT(zt_route_regex_new("/a|/b", &re, err, sizeof(err)), 0);
    CHECK(zt_route_regex_match(re, "/a", 2));
    CHECK(zt_route_regex_match(re, "/b", 2));
    CHECK(!zt_route_regex_match(re, "/ab", 3));
    CHECK(!zt_route_regex_match(re, "x/a", 3));
    CHECK(!zt_route_regex_match(re, "/a\xff", 3)); /* invalid UTF-8: no match, no error */
    zt_route_regex_free(re);
    /* Catastrophic backtracking ends (no match) instead of spinning. */
    CHECK_EQ_INT(zt_route_regex_new("(a+)+b", &re, err, sizeof(err)), 0);
    char s[64];
    memset(s, 'a', sizeof(s) - 1);
    s[63] = '\0';
    CHECK(!zt_route_regex_match(re, s, 63));
    zt_route_regex_free(re);
}

static void test_mirror_and_names(void)
{
    struct zt_route_mirror m = {.numerator = 25, .denominator = 100};
    int hits = 0;
    for (uint32_t i = 0; i < 400; i++)
        hits += zt_route_mirror_hit(&m, i);
    CHECK_EQ_INT(hits, 100);
    m.numerator = 0;
    CHECK(!zt_route_mirror_hit(&m, 0));
    m.numerator = m.denominator = 100;
    CHECK(zt_route_mirror_hit(&m, 99));
    CHECK(zt_route_header_name_ok("x-foo_bar"));
    CHECK(!zt_route_header_name_ok(":path"));
    CHECK(!zt_route_header_name_ok("a b"));
    CHECK(!zt_route_header_name_ok(""));
    CHECK(zt_route_header_value_ok("a\tb"));
    CHECK(!zt_route_header_value_ok("a\nb"));
}

static void test_errors_list(void)
{
    struct zt_route_errors e = {0};
    for (int i = 0; i < ZT_ROUTE_MAX_DIAGS + 5; i++)
        zt_route_errors_add(&e, i % 2, "m%d", i);
    CHECK_EQ_INT(e.n, ZT_ROUTE_MAX_DIAGS);
    CHECK_EQ_INT(e.dropped, 5);
    CHECK_EQ_INT(e.n_errors + e.n_warnings, ZT_ROUTE_MAX_DIAGS + 5);
    CHECK_EQ_STR(e.v[1].msg, "m1");
    CHECK(e.v[1].is_warning && !e.v[0].is_warning);
    zt_route_errors_cleanup(&e);
    CHECK(e.v == NULL && e.n == 0);
}

int main(void)
{
    RUN(test_path_kinds);
    RUN(test_regex_vs_catch_all);
    RUN(test_method_header_query_order);
    RUN(test_tie_breaks);
    RUN(test_headers_and_query);
    RUN(test_weights);
    RUN(test_ports_default_not_found);
    RUN(test_gateway_parent_and_namespaces);
    RUN(test_section_name);
    RUN(test_duplicate_route);
    RUN(test_header_modifiers);
    RUN(test_replace_prefix);
    RUN(test_rewrite_full_and_host);
    RUN(test_redirect_location);
    RUN(test_redirect_outcome_and_policy);
    RUN(test_default_retry);
    RUN(test_regex);
    RUN(test_mirror_and_names);
    RUN(test_errors_list);
    return TEST_REPORT();
}
