/* `ztunnel control`: listener, TLS, request routing, configuration
 * directory watch and lifecycle. The two services live in ads.c and ca.c. */
#include "control/control_int.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "config/dir.h"
#include "tls/cert.h"
#include "tls/ctx.h"
#include "xds/policies.h"
#include "xds/routes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 16384
#define ADDR_BUCKETS 4096
/* The token file is checked this often, so that a revoked token ends its
 * streams within a second. */
#define TOKEN_CHECK_MS 500
/* Out of descriptors (or memory), accepting pauses, first this long, then
 * twice as long each time up to the maximum, instead of spinning on a
 * listener that stays readable. */
#define ACCEPT_BACKOFF_MIN_MS 50
#define ACCEPT_BACKOFF_MAX_MS 1000
/* At most one warning about it this often: near the limit, episodes can
 * start and end with every connection. */
#define ACCEPT_WARN_INTERVAL_MS 10000
/* Changes in the directory are picked up this long after the last event,
 * so that an editor's write-rename-delete sequence is one reload. */
#define DEBOUNCE_MS 100
/* A minted server certificate lives this long and is renewed at half-life. */
#define SERVER_CERT_TTL (30u * 24 * 3600)

static const struct zt_h2_settings server_h2 = {
    .stream_window = 4u << 20,
    .connection_window = 16u << 20,
    .max_frame_size = 1u << 20,
    .max_header_list = 64u << 10,
    .max_concurrent_streams = 100,
};

/* ---- configuration ---- */

static void log_config(const struct zt_control *cp, const char *what, double ms)
{
    ZT_INFO("control",
            "%s %s: %zu workload(s), %zu service(s), %zu policy(ies), %zu route(s), %zu "
            "AuthorizationPolicy(ies), %zu RequestAuthentication(s) and %zu RateLimit(s) for "
            "waypoints, version %llu, %zu file(s) read, in %.1f ms",
            what, cp->config_dir, zt_state_workload_count(cp->state),
            zt_state_service_count(cp->state), zt_state_policy_count(cp->state),
            zt_xds_catalog_count(cp->cat, ZT_ADS_ROUTE),
            zt_xds_catalog_count(cp->cat, ZT_ADS_AUTHZ_POLICY),
            zt_xds_catalog_count(cp->cat, ZT_ADS_AUTHN_POLICY),
            zt_xds_catalog_count(cp->cat, ZT_ADS_RATELIMIT),
            (unsigned long long)ZT_CONTROL_GET(cp->n.config_version),
            zt_config_dir_files_read(cp->dir), ms);
}

static double ms_since(uint64_t t0)
{
    return (double)(uv_hrtime() - t0) / 1e6;
}

/* How one kept type's objects become resources. */
struct kept_codec {
    enum zt_ads_type type;
    const char *what; /* for messages */
    char *(*name)(const void *obj);
    int (*encode)(const void *obj, uint8_t **out, size_t *len, char *err, size_t errlen);
};

static char *route_name(const void *obj)
{
    return zt_xds_route_name(obj);
}

static int route_encode(const void *obj, uint8_t **out, size_t *len, char *err, size_t errlen)
{
    return zt_xds_route_encode(obj, out, len, err, errlen);
}

static char *authz_name(const void *obj)
{
    const struct zt_authz_l7_policy *p = obj;
    return zt_xds_waypoint_policy_name(p->ns, p->name);
}

static int authz_encode(const void *obj, uint8_t **out, size_t *len, char *err, size_t errlen)
{
    return zt_xds_authz_encode(obj, out, len, err, errlen);
}

static char *authn_name(const void *obj)
{
    const struct zt_jwt_authn_policy *p = obj;
    return zt_xds_waypoint_policy_name(p->ns, p->name);
}

static int authn_encode(const void *obj, uint8_t **out, size_t *len, char *err, size_t errlen)
{
    return zt_xds_authn_encode(obj, out, len, err, errlen);
}

static char *ratelimit_name(const void *obj)
{
    const struct zt_ratelimit_policy *p = obj;
    return zt_xds_waypoint_policy_name(p->ns, p->name);
}

static int ratelimit_encode(const void *obj, uint8_t **out, size_t *len, char *err, size_t errlen)
{
    return zt_xds_ratelimit_encode(obj, out, len, err, errlen);
}

/* cat (consumed) with objs[0..n) as the resources of one kept type. The
 * loader already left out (and noted) what does not read; an object that
 * still does not encode is left out here, logged. Every object is encoded
 * again on each reload: they are few, and their bytes decide the
 * versions. */
static struct zt_xds_catalog *add_kept(struct zt_xds_catalog *cat, const struct kept_codec *k,
                                       const void *const *objs, size_t n)
{
    struct zt_xds_item *items = zt_xcalloc(n + 1, sizeof(*items));
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t *v = NULL;
        size_t len = 0;
        char why[300];
        char *name = k->name(objs[i]);
        if (k->encode(objs[i], &v, &len, why, sizeof(why)) < 0) {
            ZT_WARN("control", "%s %s cannot be served: %s", k->what, name, why);
            free(name);
            continue;
        }
        items[m++] = (struct zt_xds_item){.name = name, .value = v, .len = len};
    }
    struct zt_xds_catalog *twin = zt_xds_catalog_with(cat, k->type, items, m);
    for (size_t i = 0; i < m; i++) {
        free((char *)items[i].name);
        free((uint8_t *)items[i].value);
    }
    free(items);
    zt_xds_catalog_unref(cat);
    return twin;
}

/* cat (consumed) with what the directory holds for waypoints: HTTPRoutes
 * and GRPCRoutes as ztunnel.routes.v1.Route, AuthorizationPolicies and
 * RequestAuthentications that attach to waypoints and RateLimits as
 * ztunnel.policy.v1 resources. Only waypoints subscribe to these types. */
static struct zt_xds_catalog *add_waypoint_objects(struct zt_control *cp,
                                                   struct zt_xds_catalog *cat)
{
    static const struct kept_codec routes = {ZT_ADS_ROUTE, "route", route_name, route_encode},
                                   authz = {ZT_ADS_AUTHZ_POLICY, "AuthorizationPolicy", authz_name,
                                            authz_encode},
                                   authn = {ZT_ADS_AUTHN_POLICY, "RequestAuthentication",
                                            authn_name, authn_encode},
                                   rl = {ZT_ADS_RATELIMIT, "RateLimit", ratelimit_name,
                                         ratelimit_encode};
    const struct zt_route_def *const *r;
    const struct zt_authz_l7_policy *const *az;
    const struct zt_jwt_authn_policy *const *an;
    const struct zt_ratelimit_policy *const *rls;
    size_t n = zt_config_dir_routes(cp->dir, &r);
    cat = add_kept(cat, &routes, (const void *const *)r, n);
    n = zt_config_dir_authz(cp->dir, &az);
    cat = add_kept(cat, &authz, (const void *const *)az, n);
    n = zt_config_dir_authn(cp->dir, &an);
    cat = add_kept(cat, &authn, (const void *const *)an, n);
    n = zt_config_dir_ratelimits(cp->dir, &rls);
    return add_kept(cat, &rl, (const void *const *)rls, n);
}

/* Loads the directory into a new state and catalog. Returns 0 or the
 * loader's error with the reason in err. */
static int load_config(struct zt_control *cp, char *err, size_t errlen)
{
    struct zt_state *s = NULL;
    struct zt_xds_catalog *cat = NULL;
    int rc = zt_config_dir_reload(cp->dir, &s, err, errlen);
    if (rc < 0)
        return rc;
    for (const char *nt = zt_config_dir_notes(cp->dir), *eol; *nt; nt = eol + 1) {
        eol = strchr(nt, '\n');
        if (!eol)
            break;
        ZT_WARN("control", "%.*s", (int)(eol - nt), nt);
    }
    char why[512] = "";
    size_t left_out = zt_xds_catalog_update(cp->cat, s, &cat, why, sizeof(why));
    if (left_out)
        ZT_WARN("control", "%zu object(s) of %s cannot be served (first: %s)", left_out,
                cp->config_dir, why);
    cat = add_waypoint_objects(cp, cat);
    zt_state_unref(cp->state);
    zt_xds_catalog_unref(cp->cat);
    cp->state = s;
    cp->cat = cat;
    for (int t = 0; t < ZT_ADS_NTYPES; t++)
        atomic_store(&cp->n.resources[t], zt_xds_catalog_count(cat, (enum zt_ads_type)t));
    ZT_CONTROL_INC(cp->n.config_version);
    return 0;
}

static void on_debounce(uv_timer_t *t)
{
    struct zt_control *cp = t->data;
    char err[1024];
    uint64_t t0 = uv_hrtime(), t1;
    if (cp->stopping)
        return;
    if (load_config(cp, err, sizeof(err)) < 0) {
        ZT_CONTROL_INC(cp->n.config_errors);
        ZT_ERROR("control", "configuration refused, still serving version %llu: %s",
                 (unsigned long long)ZT_CONTROL_GET(cp->n.config_version), err);
        return;
    }
    log_config(cp, "reloaded", ms_since(t0));
    t1 = uv_hrtime();
    zt_control_ads_push_all(cp);
    ZT_INFO("control", "version %llu pushed to %llu stream(s) in %.1f ms",
            (unsigned long long)ZT_CONTROL_GET(cp->n.config_version),
            (unsigned long long)ZT_CONTROL_GET(cp->n.ads_streams), ms_since(t1));
}

static void on_dir_change(void *ud, const char *name)
{
    struct zt_control *cp = ud;
    (void)name; /* any file of the directory, or lost events (NULL) */
    uv_timer_start(&cp->debounce, on_debounce, DEBOUNCE_MS, 0);
}

/* ---- TLS ---- */

static bool is_wildcard(const char *host)
{
    return strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
}

static void add_name(char ***v, size_t *n, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i], name) == 0)
            return;
    *v = realloc(*v, (*n + 1) * sizeof(**v));
    if (!*v || !((*v)[*n] = strdup(name)))
        abort();
    (*n)++;
}

/* The host name as a certificate DNS name: NUL-terminated, lowercased;
 * false (left out) when it is not a plain DNS name. */
static bool host_name_usable(char *h, size_t cap)
{
    h[cap - 1] = '\0';
    size_t n = strlen(h);
    if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-')
        return false;
    for (char *p = h; *p; p++) {
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
            return false;
    }
    return true;
}

/* Every address of this host's interfaces (IPv6 too when v6 is set; not
 * link-local ones). */
static void add_host_addresses(char ***ips, size_t *n_ips, bool v6)
{
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) != 0)
        return;
    for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
        char buf[INET6_ADDRSTRLEN];
        const void *a = NULL;
        if (!i->ifa_addr)
            continue;
        if (i->ifa_addr->sa_family == AF_INET)
            a = &((struct sockaddr_in *)i->ifa_addr)->sin_addr;
        else if (i->ifa_addr->sa_family == AF_INET6 && v6 &&
                 !IN6_IS_ADDR_LINKLOCAL(&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr))
            a = &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
        if (a && inet_ntop(i->ifa_addr->sa_family, a, buf, sizeof(buf)))
            add_name(ips, n_ips, buf);
    }
    freeifaddrs(ifa);
}

/* Mints a server certificate for the listen address and the usual names
 * and makes it the context for new connections. */
static void on_tls_timer(uv_timer_t *t);

static int mint_server_tls(struct zt_control *cp, char *err, size_t errlen)
{
    char **dns = NULL, **ips = NULL;
    size_t n_dns = 0, n_ips = 0;
    unsigned char tmp[sizeof(struct in6_addr)];
    add_name(&dns, &n_dns, "localhost");
    add_name(&dns, &n_dns, "istiod.istio-system.svc");
    add_name(&dns, &n_dns, "istiod");
    char host[256];
    if (gethostname(host, sizeof(host)) == 0 && host_name_usable(host, sizeof(host)))
        add_name(&dns, &n_dns, host);
    for (size_t i = 0; i < cp->n_server_names; i++) {
        const char *s = cp->server_names[i];
        bool ip = inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
        add_name(ip ? &ips : &dns, ip ? &n_ips : &n_dns, s);
    }
    if (!is_wildcard(cp->listen_host)) {
        add_name(&ips, &n_ips, cp->listen_host);
    } else {
        add_name(&ips, &n_ips, "127.0.0.1");
        add_host_addresses(&ips, &n_ips, strcmp(cp->listen_host, "::") == 0);
    }
    /* A host with very many addresses: keep the first ones (pass
     * --server-name or --tls-cert for the others). */
    while (n_dns + n_ips > ZT_TLS_LOCALCA_SERVER_NAMES_MAX && n_ips > 1) {
        ZT_WARN("control", "serving certificate: too many names, leaving out %s", ips[n_ips - 1]);
        free(ips[--n_ips]);
    }
    struct zt_tls_cert *cert = NULL;
    SSL_CTX *ctx = NULL;
    int rc = zt_tls_localca_mint_server(cp->ca, (const char *const *)dns, n_dns,
                                        (const char *const *)ips, n_ips, SERVER_CERT_TTL, &cert);
    if (rc < 0)
        snprintf(err, errlen, "cannot mint the server certificate: %s", zt_strerror(rc));
    else if (!(ctx = zt_tls_control_server_ctx_new(cert, err, errlen)))
        rc = ZT_E_TLS;
    if (rc == 0) {
        char names[1024];
        size_t off = 0;
        names[0] = '\0';
        for (size_t i = 0; i < n_dns + n_ips && off < sizeof(names); i++)
            off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? ", " : "",
                                    i < n_dns ? dns[i] : ips[i - n_dns]);
        ZT_INFO("control", "serving a certificate minted from the CA for: %s", names);
        SSL_CTX_free(cp->tls);
        cp->tls = ctx;
        /* Renew at half-life; connections keep the context they started with. */
        int64_t life = (int64_t)(cert->not_after - time(NULL));
        uv_timer_start(&cp->tls_timer, on_tls_timer, life > 2 ? (uint64_t)life * 500 : 1000, 0);
    }
    zt_tls_cert_unref(cert);
    for (size_t i = 0; i < n_dns; i++)
        free(dns[i]);
    for (size_t i = 0; i < n_ips; i++)
        free(ips[i]);
    free(dns);
    free(ips);
    return rc;
}

static void on_tls_timer(uv_timer_t *t)
{
    struct zt_control *cp = t->data;
    char err[512];
    if (mint_server_tls(cp, err, sizeof(err)) < 0) {
        ZT_ERROR("control", "server certificate not renewed, retrying in 60 s: %s", err);
        uv_timer_start(&cp->tls_timer, on_tls_timer, 60000, 0);
    }
}

static int load_server_tls(struct zt_control *cp, const struct zt_control_opts *o, char *err,
                           size_t errlen)
{
    if (!o->tls_cert)
        return mint_server_tls(cp, err, errlen);
    struct zt_tls_cert *cert = NULL;
    int rc = zt_tls_cert_load_files(o->tls_cert, o->tls_key, &cert, err, errlen);
    if (rc < 0)
        return rc;
    cp->tls = zt_tls_control_server_ctx_new(cert, err, errlen);
    zt_tls_cert_unref(cert);
    return cp->tls ? 0 : ZT_E_TLS;
}

/* The earliest notAfter of the trust bundle, in Unix seconds (0 if none). */
static int64_t roots_expiry(const struct zt_tls_localca *ca)
{
    STACK_OF(X509) *roots = zt_tls_localca_roots(ca);
    int64_t min = 0;
    for (int i = 0; roots && i < sk_X509_num(roots); i++) {
        struct tm tm;
        if (ASN1_TIME_to_tm(X509_get0_notAfter(sk_X509_value(roots, i)), &tm) != 1)
            continue;
        int64_t t = (int64_t)timegm(&tm);
        if (min == 0 || t < min)
            min = t;
    }
    return min;
}

/* ---- connections per source address ---- */

/* The address as 16 bytes (IPv4 v4-mapped, so that a dual-stack listener
 * counts a client once whichever way it comes). */
static void addr_key(const struct sockaddr_storage *ss, unsigned char ip[16])
{
    memset(ip, 0, 16);
    if (ss->ss_family == AF_INET) {
        ip[10] = ip[11] = 0xff;
        memcpy(ip + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        memcpy(ip, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    }
}

/* FNV-1a, seeded at start so that a client cannot choose addresses that
 * share a chain. */
static size_t addr_bucket(const struct zt_control *cp, const unsigned char ip[16])
{
    uint64_t h = 1469598103934665603ull ^ cp->addr_seed;
    for (int i = 0; i < 16; i++)
        h = (h ^ ip[i]) * 1099511628211ull;
    return (size_t)(h % ADDR_BUCKETS);
}

/* The entry of this address, created with n = 0 when missing. */
static struct zt_control_addr *addr_get(struct zt_control *cp, const unsigned char ip[16])
{
    size_t b = addr_bucket(cp, ip);
    for (struct zt_control_addr *a = cp->addrs[b]; a; a = a->next)
        if (memcmp(a->ip, ip, 16) == 0)
            return a;
    struct zt_control_addr *a = zt_xcalloc(1, sizeof(*a));
    memcpy(a->ip, ip, 16);
    a->next = cp->addrs[b];
    cp->addrs[b] = a;
    return a;
}

/* Drops an entry without connections. */
static void addr_forget(struct zt_control *cp, struct zt_control_addr *a)
{
    struct zt_control_addr **pp = &cp->addrs[addr_bucket(cp, a->ip)];
    while (*pp != a)
        pp = &(*pp)->next;
    *pp = a->next;
    free(a);
}

static void addr_release(struct zt_control *cp, struct zt_control_addr *a)
{
    if (!a)
        return;
    a->n--;
    if (a->n < cp->max_per_addr)
        a->warned = false;
    if (a->n == 0)
        addr_forget(cp, a);
}

/* ---- connections waiting to authenticate ---- */

static void on_auth_timer(uv_timer_t *t);

static void wait_add(struct zt_control *cp, struct zt_control_conn *c)
{
    c->deadline = uv_now(cp->loop) + cp->auth_timeout_ms;
    zt_list_insert_tail(&cp->waiting, &c->wait_link);
    /* Every connection waits as long: the list is in deadline order and
     * one timer, armed for its head, serves them all. */
    if (!uv_is_active((uv_handle_t *)&cp->auth_timer))
        uv_timer_start(&cp->auth_timer, on_auth_timer, cp->auth_timeout_ms, 0);
}

/* Off the waiting list (if on it). */
static void wait_remove(struct zt_control_conn *c)
{
    zt_list_remove(&c->wait_link);
}

/* The connection waiting longest, NULL if none. */
static struct zt_control_conn *first_waiting(const struct zt_control *cp)
{
    return zt_list_entry(zt_list_first(&cp->waiting), struct zt_control_conn, wait_link);
}

static void on_auth_timer(uv_timer_t *t)
{
    struct zt_control *cp = t->data;
    uint64_t now = uv_now(cp->loop);
    struct zt_control_conn *c;
    while ((c = first_waiting(cp)) != NULL && c->deadline <= now) {
        wait_remove(c);
        ZT_CONTROL_INC(cp->n.auth_timeouts);
        ZT_DEBUG("control", "%s: no authenticated stream within %u ms: closing", c->peer,
                 cp->auth_timeout_ms);
        zt_h2conn_close(c->h2, ZT_E_TIMEOUT); /* may free c */
    }
    if ((c = first_waiting(cp)) != NULL)
        uv_timer_start(&cp->auth_timer, on_auth_timer, c->deadline - now, 0);
}

/* ---- connections and routing ---- */

static void conn_unlink(struct zt_control_conn *c)
{
    struct zt_control *cp = c->cp;
    zt_list_remove(&c->link);
    wait_remove(c);
    addr_release(cp, c->addr);
    c->addr = NULL;
    ZT_CONTROL_DEC(cp->n.connections);
    if (ZT_CONTROL_GET(cp->n.connections) < MAX_CONNS)
        cp->full_warned = false;
}

/* The node named by "Bearer <token>", or NULL; the token's digest goes to
 * `digest`. */
static const char *caller_node(struct zt_control *cp, const char *authorization,
                               unsigned char digest[ZT_CONTROL_TOKEN_DIGEST])
{
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return NULL;
    const char *tok = authorization + 7;
    while (*tok == ' ')
        tok++;
    return zt_control_tokens_lookup(cp->tokens, tok, strlen(tok), digest);
}

/* The token file changed: streams opened with a token that is gone end. */
static void on_token_timer(uv_timer_t *t)
{
    struct zt_control *cp = t->data;
    unsigned long gen = zt_control_tokens_refresh(cp->tokens);
    if (gen == cp->token_gen)
        return;
    cp->token_gen = gen;
    zt_control_ads_revalidate(cp);
}

static void on_request(struct zt_h2conn *h2, void *ud, int32_t sid, const struct zt_h2_request *req)
{
    struct zt_control_conn *c = ud;
    struct zt_control *cp = c->cp;
    if (!req->method || strcmp(req->method, "POST") != 0 || !req->path || !req->content_type ||
        strncmp(req->content_type, "application/grpc", 16) != 0) {
        zt_h2conn_respond(h2, sid, 415, NULL, 0);
        return;
    }
    bool is_ads = strcmp(req->path, ZT_CONTROL_ADS_PATH) == 0;
    bool is_ca = strcmp(req->path, ZT_CONTROL_CA_PATH) == 0;
    if (!is_ads && !is_ca) {
        zt_grpc_reject(h2, sid, ZT_GRPC_UNIMPLEMENTED, "unknown method");
        return;
    }
    if (cp->stopping) {
        zt_grpc_reject(h2, sid, ZT_GRPC_UNAVAILABLE, "control plane shutting down");
        return;
    }
    unsigned char digest[ZT_CONTROL_TOKEN_DIGEST];
    const char *node = caller_node(cp, req->authorization, digest);
    if (!node) {
        ZT_WARN("control", "%s: %s without a valid node token", c->peer,
                is_ads ? "xDS stream" : "certificate request");
        atomic_fetch_add_explicit(is_ca ? &cp->n.unauthenticated : &cp->n.xds_unauthenticated, 1,
                                  memory_order_relaxed);
        zt_grpc_reject(h2, sid, ZT_GRPC_UNAUTHENTICATED,
                       req->authorization ? "unknown node token" : "missing bearer token");
        return;
    }
    wait_remove(c);
    if (is_ads)
        zt_control_ads_accept(cp, c, sid, node, digest);
    else
        zt_control_ca_accept(cp, c, sid, node);
}

static void maybe_finish(struct zt_control *cp);

static void on_closed(struct zt_h2conn *h2, void *ud, int error)
{
    struct zt_control_conn *c = ud;
    ZT_DEBUG("control", "%s: connection closed: %s", c->peer,
             error ? zt_strerror(error) : "normally");
    struct zt_control *cp = c->cp;
    conn_unlink(c);
    free(c);
    maybe_finish(cp);
}

static const struct zt_h2conn_ops conn_ops = {
    .on_request = on_request,
    .on_closed = on_closed,
};

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        port = ntohs(a->sin_port);
        snprintf(out, cap, "%s:%u", ip, port);
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        port = ntohs(a->sin6_port);
        snprintf(out, cap, "[%s]:%u", ip, port);
    }
}

static void on_accept(uv_poll_t *h, int status, int events);

static void on_accept_timer(uv_timer_t *t)
{
    struct zt_control *cp = t->data;
    if (!cp->stopping)
        uv_poll_start(&cp->lpoll, UV_READABLE, on_accept);
}

/* accept() failed for want of descriptors or memory. The connection stays
 * queued and the listener readable: stop polling it for a while rather
 * than fail again at once, and say so once per episode. */
static void pause_accepting(struct zt_control *cp, int err)
{
    uv_poll_stop(&cp->lpoll);
    uint64_t now = uv_now(cp->loop);
    if (cp->accept_backoff_ms == 0) {
        cp->accept_backoff_ms = ACCEPT_BACKOFF_MIN_MS;
        cp->accept_paused_at = now;
        cp->accept_pause_logged =
            cp->accept_warned_at == 0 || now - cp->accept_warned_at >= ACCEPT_WARN_INTERVAL_MS;
        if (cp->accept_pause_logged) {
            cp->accept_warned_at = now ? now : 1;
            ZT_WARN("control", "accept: %s: pausing new connections, retrying every %u to %u ms",
                    strerror(err), ACCEPT_BACKOFF_MIN_MS, ACCEPT_BACKOFF_MAX_MS);
        }
    } else if (cp->accept_backoff_ms < ACCEPT_BACKOFF_MAX_MS) {
        cp->accept_backoff_ms *= 2;
        if (cp->accept_backoff_ms > ACCEPT_BACKOFF_MAX_MS)
            cp->accept_backoff_ms = ACCEPT_BACKOFF_MAX_MS;
    }
    ZT_CONTROL_INC(cp->n.accept_pauses);
    uv_timer_start(&cp->accept_timer, on_accept_timer, cp->accept_backoff_ms, 0);
}

/* Refuses a connection over a cap; logged once until under it again. */
static void refuse(struct zt_control *cp, int fd, bool *warned, const char *why, const char *peer)
{
    if (!*warned)
        ZT_WARN("control", "%s: %s: refusing connections (logged once)", peer, why);
    *warned = true;
    ZT_CONTROL_INC(cp->n.refused);
    close(fd);
}

static void on_accept(uv_poll_t *h, int status, int events)
{
    struct zt_control *cp = h->data;
    for (int i = 0; i < 64 && !cp->stopping; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(cp->lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
                pause_accepting(cp, err);
            else if (err != EAGAIN && err != EINTR && err != ECONNABORTED)
                ZT_WARN("control", "accept: %s", strerror(err));
            return;
        }
        if (cp->accept_backoff_ms) {
            if (cp->accept_pause_logged)
                ZT_INFO("control", "accepting connections again after %llu ms",
                        (unsigned long long)(uv_now(cp->loop) - cp->accept_paused_at));
            cp->accept_backoff_ms = 0;
        }
        char peer[64];
        unsigned char ip[16];
        format_peer(&ss, peer, sizeof(peer));
        if (ZT_CONTROL_GET(cp->n.connections) >= MAX_CONNS) {
            refuse(cp, fd, &cp->full_warned, "the connection limit is reached", peer);
            continue;
        }
        addr_key(&ss, ip);
        struct zt_control_addr *a = addr_get(cp, ip);
        if (a->n >= cp->max_per_addr) {
            refuse(cp, fd, &a->warned, "this address has as many connections as allowed", peer);
            continue;
        }
        struct zt_control_conn *c = zt_xcalloc(1, sizeof(*c));
        c->cp = cp;
        snprintf(c->peer, sizeof(c->peer), "%s", peer);
        c->h2 = zt_h2conn_new(cp->loop, fd, cp->tls, ZT_H2_SERVER, &server_h2, &conn_ops, c);
        if (!c->h2) {
            if (a->n == 0)
                addr_forget(cp, a);
            free(c);
            continue;
        }
        a->n++;
        c->addr = a;
        zt_list_insert_head(&cp->conns, &c->link);
        ZT_CONTROL_INC(cp->n.connections);
        wait_add(cp, c);
    }
}

static int listen_on(struct zt_control *cp, const char *addr, char *err, size_t errlen)
{
    char port[16], auth[300];
    if (zt_grpc_parse_target(addr, cp->listen_host, sizeof(cp->listen_host), port, sizeof(port),
                             auth, sizeof(auth)) < 0) {
        snprintf(err, errlen, "--listen %s: expected ADDR:PORT", addr);
        return ZT_E_CONFIG;
    }
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int grc = getaddrinfo(cp->listen_host, port, &hints, &ai);
    if (grc != 0) {
        snprintf(err, errlen, "--listen %s: the address must be a numeric IP: %s", addr,
                 gai_strerror(grc));
        return ZT_E_CONFIG;
    }
    int rc = 0;
    int one = 1;
    cp->lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (cp->lfd < 0 || setsockopt(cp->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(cp->lfd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(cp->lfd, 512) < 0) {
        rc = -errno;
        snprintf(err, errlen, "--listen %s: %s", addr, strerror(errno));
    } else {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        getsockname(cp->lfd, (struct sockaddr *)&ss, &len);
        cp->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                 : ((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    freeaddrinfo(ai);
    return rc;
}

/* ---- lifecycle ---- */

static void on_handle_closed(uv_handle_t *h)
{
    struct zt_control *cp = h->data;
    if (--cp->closing > 0)
        return;
    zt_state_unref(cp->state);
    zt_xds_catalog_unref(cp->cat);
    for (size_t b = 0; b < ADDR_BUCKETS; b++) {
        struct zt_control_addr *next;
        for (struct zt_control_addr *a = cp->addrs[b]; a; a = next) {
            next = a->next;
            free(a);
        }
    }
    free(cp->addrs);
    zt_control_tokens_free(cp->tokens);
    zt_tls_localca_free(cp->ca);
    SSL_CTX_free(cp->tls);
    for (size_t i = 0; i < cp->n_server_names; i++)
        free(cp->server_names[i]);
    free(cp->server_names);
    zt_config_dir_free(cp->dir);
    free(cp->config_dir);
    free(cp);
}

/* Closes every handle; cp is freed by the last close callback. */
static void close_handles(struct zt_control *cp, bool poll_started)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&cp->debounce,     (uv_handle_t *)&cp->tls_timer,
                         (uv_handle_t *)&cp->auth_timer,   (uv_handle_t *)&cp->token_timer,
                         (uv_handle_t *)&cp->accept_timer, (uv_handle_t *)&cp->lpoll};
    unsigned n = sizeof(hs) / sizeof(hs[0]);
    zt_dirwatch_stop(cp->watch);
    cp->watch = NULL;
    cp->closing = poll_started ? n : n - 1;
    for (unsigned i = 0; i < cp->closing; i++) {
        hs[i]->data = cp;
        uv_close(hs[i], on_handle_closed);
    }
    if (cp->lfd >= 0)
        close(cp->lfd);
    cp->lfd = -1;
}

/* After stop: once the last connection is gone, release everything. */
static void maybe_finish(struct zt_control *cp)
{
    if (cp->stopping && zt_list_empty(&cp->conns) && cp->closing == 0)
        close_handles(cp, true);
}

static void on_force_close(uv_timer_t *t)
{
    struct zt_control *cp = t->data;
    for (struct zt_list_node *n = zt_list_first(&cp->conns), *nx; n; n = nx) {
        nx = zt_list_next(&cp->conns, n);
        zt_h2conn_close(zt_list_entry(n, struct zt_control_conn, link)->h2, ZT_E_CLOSED);
    }
}

int zt_control_start(uv_loop_t *loop, const struct zt_control_opts *o, struct zt_control **out,
                     char *err, size_t errlen)
{
    struct zt_control *cp = zt_xcalloc(1, sizeof(*cp));
    *out = NULL;
    cp->loop = loop;
    cp->lfd = -1;
    zt_list_init(&cp->conns);
    zt_list_init(&cp->streams);
    zt_list_init(&cp->waiting);
    cp->ttl_default = o->cert_ttl_default ? o->cert_ttl_default : ZT_CONTROL_CERT_TTL_DEFAULT;
    cp->ttl_max = o->cert_ttl_max ? o->cert_ttl_max : ZT_CONTROL_CERT_TTL_MAX;
    if (cp->ttl_default > cp->ttl_max)
        cp->ttl_default = cp->ttl_max;
    cp->config_dir = strdup(o->config_dir ? o->config_dir : "");
    cp->dir = zt_config_dir_new(o->config_dir ? o->config_dir : "");
    cp->max_per_addr =
        o->max_conns_per_addr ? o->max_conns_per_addr : ZT_CONTROL_CONNS_PER_ADDR_DEFAULT;
    cp->auth_timeout_ms =
        o->auth_timeout_ms ? o->auth_timeout_ms : ZT_CONTROL_AUTH_TIMEOUT_MS_DEFAULT;
    cp->addrs = calloc(ADDR_BUCKETS, sizeof(*cp->addrs));
    if (!cp->config_dir || !cp->addrs)
        abort();
    if (RAND_bytes((unsigned char *)&cp->addr_seed, sizeof(cp->addr_seed)) != 1)
        cp->addr_seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)cp;
    for (size_t i = 0; i < o->n_server_names; i++)
        add_name(&cp->server_names, &cp->n_server_names, o->server_names[i]);
    uv_timer_init(loop, &cp->debounce);
    uv_timer_init(loop, &cp->tls_timer);
    uv_timer_init(loop, &cp->auth_timer);
    uv_timer_init(loop, &cp->token_timer);
    uv_timer_init(loop, &cp->accept_timer);
    cp->debounce.data = cp->tls_timer.data = cp;
    cp->auth_timer.data = cp->token_timer.data = cp->accept_timer.data = cp;
    int rc = 0;
    if (!o->config_dir || !o->ca_dir || !o->node_tokens || !o->listen) {
        snprintf(err, errlen, "--config-dir, --ca-dir, --node-tokens and --listen are required");
        rc = ZT_E_CONFIG;
    } else if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together");
        rc = ZT_E_CONFIG;
    }
    if (rc == 0)
        rc = zt_tls_localca_load(o->ca_dir, &cp->ca, err, errlen);
    if (rc == 0)
        rc = zt_control_tokens_load(o->node_tokens, &cp->tokens, err, errlen);
    uint64_t t0 = uv_hrtime();
    double load_ms = 0;
    if (rc == 0)
        rc = load_config(cp, err, errlen);
    if (rc == 0)
        load_ms = ms_since(t0);
    if (rc == 0)
        rc = listen_on(cp, o->listen, err, errlen);
    if (rc == 0)
        rc = load_server_tls(cp, o, err, errlen);
    if (rc == 0) {
        int urc = zt_dirwatch_start(loop, cp->config_dir, on_dir_change, cp, &cp->watch);
        if (urc < 0) {
            snprintf(err, errlen, "%s: cannot watch: %s", cp->config_dir, zt_strerror(urc));
            rc = ZT_E_CONFIG;
        }
    }
    if (rc == 0) {
        uv_poll_init(loop, &cp->lpoll, cp->lfd);
        cp->lpoll.data = cp;
        uv_poll_start(&cp->lpoll, UV_READABLE, on_accept);
        cp->token_gen = zt_control_tokens_refresh(cp->tokens);
        uv_timer_start(&cp->token_timer, on_token_timer, TOKEN_CHECK_MS, TOKEN_CHECK_MS);
    }
    if (rc < 0) {
        close_handles(cp, false);
        return rc;
    }
    atomic_store(&cp->n.root_expiry, roots_expiry(cp->ca));
    atomic_store(&cp->n.ready, true);
    log_config(cp, "loaded", load_ms);
    ZT_INFO("control", "listening on %s (port %u), %zu node token(s)", o->listen, cp->port,
            zt_control_tokens_count(cp->tokens));
    *out = cp;
    return 0;
}

uint16_t zt_control_port(const struct zt_control *cp)
{
    return cp->port;
}

void zt_control_stop(struct zt_control *cp)
{
    if (!cp || cp->stopping)
        return;
    cp->stopping = true;
    atomic_store(&cp->n.ready, false);
    ZT_INFO("control", "stopping: ending %zu stream(s) on %zu connection(s)",
            (size_t)ZT_CONTROL_GET(cp->n.ads_streams), (size_t)ZT_CONTROL_GET(cp->n.connections));
    uv_poll_stop(&cp->lpoll);
    zt_dirwatch_stop(cp->watch);
    cp->watch = NULL;
    uv_timer_stop(&cp->debounce);
    uv_timer_stop(&cp->accept_timer);
    uv_timer_stop(&cp->token_timer);
    /* Connections are shut down now; the deadline no longer matters. */
    struct zt_control_conn *c;
    while ((c = first_waiting(cp)) != NULL)
        wait_remove(c);
    uv_timer_stop(&cp->auth_timer);
    zt_control_ads_end_all(cp, ZT_GRPC_UNAVAILABLE, "control plane shutting down");
    /* Peers get a moment to read the trailers and GOAWAY, then are cut. */
    uv_timer_start(&cp->tls_timer, on_force_close, 2000, 0);
    /* A connection without streams closes (and is freed) inside shutdown. */
    for (struct zt_list_node *n = zt_list_first(&cp->conns), *nx; n; n = nx) {
        nx = zt_list_next(&cp->conns, n);
        zt_h2conn_shutdown(zt_list_entry(n, struct zt_control_conn, link)->h2);
    }
    maybe_finish(cp);
}
