#include "admin/admin.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/list.h"
#include "base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#define N_SERVERS 3
#define WHY_MAX 512
/* Bodies below this are not worth compressing. */
#define GZIP_MIN 256

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_JSON "application/json"
#define CT_HTML "text/html; charset=utf-8"
#define CT_PROM "text/plain; version=0.0.4; charset=utf-8"

/* A client address: IPv4 as IPv4-mapped IPv6, so a dual-stack listener
 * counts a client the same whichever way it arrives. */
struct addr_key {
    uint8_t b[16];
};

/* One connection the daemon holds, from libmicrohttpd's "started" to its
 * "closed" notification; kept oldest first in its server's list. */
struct conn_rec {
    struct zt_list_node link; /* in srv.conns */
    struct addr_key addr;
    int fd;
    bool is_evicted; /* shut down to make room; no longer counted */
};

struct srv {
    struct zt_admin *admin;
    enum zt_admin_server which;
    struct MHD_Daemon *d;
    uint16_t port;
    /* While starting, libmicrohttpd's error messages are kept here so a
     * failed start can say why; afterwards they go to the debug log. */
    atomic_bool is_starting;
    char start_err[256];
    /* Admission (see on_accept): the connections held, under mu. */
    pthread_mutex_t mu;
    struct zt_list conns;  /* of conn_rec */
    unsigned n_live;       /* held and not evicted */
    unsigned limit_total;  /* 2 * conn_limit */
    unsigned limit_per_ip; /* conn_limit */
    bool is_mu_init;
    bool is_released; /* zt_admin_release_ports: no listening socket */
};

struct zt_admin {
    struct srv srv[N_SERVERS];
    struct zt_admin_ops ops;
    void *ud;
    enum zt_log_level startup_level;
    bool stats_only;
};

/* Per-request state, from the first call of the handler to completion. */
struct req {
    size_t body;
    bool is_too_big;
};

const char *zt_admin_server_str(enum zt_admin_server which)
{
    switch (which) {
    case ZT_ADMIN_SRV_ADMIN:
        return "admin";
    case ZT_ADMIN_SRV_STATS:
        return "stats";
    case ZT_ADMIN_SRV_READY:
        return "ready";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- replies */

/* Queues a response; body is copied unless must_free, in which case it is
 * a malloc'd buffer that libmicrohttpd frees. */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                             const char *extra_name, const char *extra_value, void *body,
                             size_t len, bool must_free)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        if (must_free)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (extra_name != NULL)
        MHD_add_response_header(r, extra_name, extra_value);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return reply(c, status, CT_TEXT, NULL, NULL, (void *)text, strlen(text), false);
}

static enum MHD_Result reply_405(struct MHD_Connection *c, const char *allow, const char *text)
{
    return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, CT_TEXT, MHD_HTTP_HEADER_ALLOW, allow,
                 (void *)text, strlen(text), false);
}

static enum MHD_Result reply_404(struct MHD_Connection *c)
{
    return reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

static bool is_get(const char *method)
{
    return strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

/* ---------------------------------------------------------------- admin */

static const char dashboard[] =
    "<!DOCTYPE html>\n"
    "<html><head><meta charset=\"utf-8\"><title>ztunnel-c admin</title></head>\n"
    "<body><h1>ztunnel-c admin</h1>\n"
    "<ul>\n"
    "<li><a href=\"/config_dump\">/config_dump</a>: workloads, services, policies, "
    "certificates and effective configuration as JSON</li>\n"
    "<li>POST /logging: show the log level; <code>?level=&lt;lvl&gt;</code> sets it, "
    "<code>?reset</code> restores the startup level</li>\n"
    "<li>POST /quitquitquit: begin a graceful shutdown</li>\n"
    "</ul>\n"
    "<p>Metrics are served on the stats port (<code>/metrics</code>, "
    "<code>/stats/prometheus</code>); readiness on <code>/healthz/ready</code>.</p>\n"
    "</body></html>\n";

static const char logging_help[] =
    "usage:\n"
    "  POST /logging                  print the current log level\n"
    "  POST /logging?level=<lvl>      set the log level; <lvl> is one of\n"
    "                                 error, warn, info, debug, trace\n"
    "  POST /logging?level=<target>=<lvl>[,<target>=<lvl>...]\n"
    "                                 accepted for compatibility: this proxy has one\n"
    "                                 process-wide level, the last <lvl> given applies\n"
    "  POST /logging?reset            restore the level the proxy started with\n";

struct log_args {
    const char *level; /* borrowed from the connection */
    bool has_level, has_reset, has_other;
};

static enum MHD_Result on_log_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    struct log_args *a = cls;
    if (strcmp(key, "level") == 0) {
        a->has_level = true;
        a->level = value;
    } else if (strcmp(key, "reset") == 0) {
        a->has_reset = true;
    } else {
        a->has_other = true;
    }
    return MHD_YES;
}

/* Parses "lvl" or "target=lvl" directives separated by commas; every one
 * must be valid, the last level wins. Returns 0, or ZT_E_CONFIG; *has_target
 * tells whether any directive named a target. */
static int parse_level_spec(const char *spec, enum zt_log_level *out, bool *has_target)
{
    char item[64];
    const char *p = spec;
    bool any = false;

    *has_target = false;
    if (spec == NULL)
        return ZT_E_CONFIG;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        if (n == 0 || n >= sizeof(item))
            return ZT_E_CONFIG;
        memcpy(item, p, n);
        item[n] = '\0';
        const char *lvl = item;
        char *eq = strrchr(item, '=');
        if (eq != NULL) {
            if (eq == item || strchr(item, '=') != eq)
                return ZT_E_CONFIG; /* empty target, or "a=b=c" */
            lvl = eq + 1;
            *has_target = true;
        }
        if (zt_log_level_parse(lvl, out) != 0)
            return ZT_E_CONFIG;
        any = true;
        p += n;
        if (*p == ',')
            p++;
    }
    return any ? 0 : ZT_E_CONFIG;
}

static enum MHD_Result handle_logging(struct zt_admin *admin, struct MHD_Connection *c,
                                      const char *method)
{
    struct log_args a = {0};
    enum zt_log_level lvl;
    bool has_target = false;
    char msg[256];

    if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
        return reply_405(c, "POST", logging_help);
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, on_log_arg, &a);
    if (a.has_other)
        return reply_text(c, MHD_HTTP_BAD_REQUEST, logging_help);
    if (a.has_level && parse_level_spec(a.level, &lvl, &has_target) != 0) {
        char body[128 + sizeof(logging_help)];
        snprintf(body, sizeof(body), "invalid log level \"%.64s\"\n%s", a.level ? a.level : "",
                 logging_help);
        return reply_text(c, MHD_HTTP_BAD_REQUEST, body);
    }
    if (a.has_reset) {
        zt_log_set_level(admin->startup_level);
        ZT_INFO("admin", "log level reset to %s", zt_log_level_str(admin->startup_level));
    }
    if (a.has_level) {
        zt_log_set_level(lvl);
        ZT_INFO("admin", "log level set to %s", zt_log_level_str(lvl));
    }
    snprintf(msg, sizeof(msg), "%scurrent log level is %s\n",
             has_target ? "note: per-target levels are not supported; the last level given "
                          "was applied process-wide\n"
                        : "",
             zt_log_level_str(zt_log_get_level()));
    return reply_text(c, MHD_HTTP_OK, msg);
}

/* True for a Host value naming this machine's loopback: localhost (any
 * case), 127.0.0.1 or [::1], each optionally followed by :port. Anything
 * else, a name a web page could have resolved to 127.0.0.1 included, is
 * not ours. */
static bool is_loopback_host(const char *h)
{
    static const char *const names[] = {"localhost", "127.0.0.1", "[::1]"};
    size_t n = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t len = strlen(names[i]);
        if (strncasecmp(h, names[i], len) == 0) {
            n = len;
            break;
        }
    }
    if (n == 0)
        return false;
    if (h[n] == '\0')
        return true;
    if (h[n] != ':')
        return false;
    const char *port = h + n + 1;
    size_t digits = strspn(port, "0123456789");
    return digits >= 1 && digits <= 5 && port[digits] == '\0';
}

struct origin_check {
    unsigned hosts, origins;
    const char *host; /* borrowed from the connection */
};

static enum MHD_Result on_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    struct origin_check *oc = cls;
    if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        oc->hosts++;
        oc->host = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_ORIGIN) == 0) {
        oc->origins++;
    }
    return MHD_YES;
}

/* The admin port listens on loopback, but a web page in a local browser can
 * still reach it: by a cross-site POST (which carries Origin) or by DNS
 * rebinding (its own name, resolving to 127.0.0.1, in Host). So a request
 * is served only with exactly one Host naming loopback and no Origin;
 * curl, istioctl and port-forwards send exactly that. Returns NULL to
 * serve, or why not. */
static const char *refuse_browser(struct MHD_Connection *c)
{
    struct origin_check oc = {0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, on_header, &oc);
    if (oc.origins > 0)
        return "forbidden: the admin server does not serve browsers (Origin header)\n";
    if (oc.hosts != 1 || !is_loopback_host(oc.host))
        return "forbidden: Host must be localhost, 127.0.0.1 or [::1]\n";
    return NULL;
}

static enum MHD_Result handle_admin(struct zt_admin *admin, struct MHD_Connection *c,
                                    const char *url, const char *method)
{
    const char *why = refuse_browser(c);
    if (why != NULL)
        return reply_text(c, MHD_HTTP_FORBIDDEN, why);
    if (strcmp(url, "/") == 0)
        return reply(c, MHD_HTTP_OK, CT_HTML, NULL, NULL, (void *)dashboard, sizeof(dashboard) - 1,
                     false);
    if (strcmp(url, "/config_dump") == 0) {
        char *json = admin->ops.config_dump ? admin->ops.config_dump(admin->ud) : NULL;
        if (json == NULL)
            return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "config dump failed\n");
        return reply(c, MHD_HTTP_OK, CT_JSON, NULL, NULL, json, strlen(json), true);
    }
    if (strcmp(url, "/logging") == 0)
        return handle_logging(admin, c, method);
    if (strcmp(url, "/quitquitquit") == 0) {
        if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
            return reply_405(c, "POST", "use POST /quitquitquit to shut down\n");
        enum MHD_Result rc = reply_text(c, MHD_HTTP_OK, "shutdown now\n");
        ZT_INFO("admin", "shutdown requested through /quitquitquit");
        if (admin->ops.quit != NULL)
            admin->ops.quit(admin->ud);
        return rc;
    }
    return reply_404(c);
}

/* ---------------------------------------------------------------- stats */

/* True if an Accept-Encoding value lists gzip (or *) with a non-zero q. */
static bool accepts_gzip(const char *ae)
{
    const char *p = ae;
    if (ae == NULL)
        return false;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *tok = p;
        while (*p != '\0' && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        size_t n = (size_t)(p - tok);
        bool named = (n == 4 && strncasecmp(tok, "gzip", 4) == 0) || (n == 1 && *tok == '*');
        bool q_zero = false;
        /* Parameters up to the next comma; only q matters. */
        while (*p != '\0' && *p != ',') {
            if (*p == ';') {
                p++;
                while (*p == ' ' || *p == '\t')
                    p++;
                if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
                    double q = strtod(p + 2, NULL);
                    q_zero = q <= 0.0;
                }
                continue;
            }
            p++;
        }
        if (named)
            return !q_zero;
    }
    return false;
}

/* Gzips in[0..len) into a malloc'd buffer. Returns false if zlib fails. */
static bool gzip_buf(const uint8_t *in, size_t len, uint8_t **out, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    /* 15 + 16: the largest window, with a gzip header and trailer. */
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return false;
    uLong cap = deflateBound(&zs, (uLong)len) + 32;
    uint8_t *buf = zt_xmalloc(cap);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = buf;
    zs.avail_out = (uInt)cap;
    int zrc = deflate(&zs, Z_FINISH);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    if (zrc != Z_STREAM_END) {
        free(buf);
        return false;
    }
    *out = buf;
    return true;
}

static enum MHD_Result handle_ready(struct zt_admin *admin, struct MHD_Connection *c,
                                    const char *url, const char *method);

static enum MHD_Result handle_stats(struct zt_admin *admin, struct MHD_Connection *c,
                                    const char *url, const char *method)
{
    struct zt_buf out = {0};
    if (admin->stats_only && (strcmp(url, "/ready") == 0 || strcmp(url, "/healthz/ready") == 0))
        return handle_ready(admin, c, "/healthz/ready", method);
    if (strcmp(url, "/metrics") != 0 && strcmp(url, "/stats/prometheus") != 0)
        return reply_404(c);
    if (!is_get(method))
        return reply_405(c, "GET, HEAD", "use GET\n");
    if (admin->ops.metrics != NULL)
        admin->ops.metrics(admin->ud, &out);

    const char *ae =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING);
    uint8_t *gz = NULL;
    size_t gz_len = 0;
    enum MHD_Result rc;
    if (out.len >= GZIP_MIN && (uint64_t)out.len < UINT32_MAX && accepts_gzip(ae) &&
        gzip_buf(zt_buf_head(&out), out.len, &gz, &gz_len)) {
        struct MHD_Response *r = MHD_create_response_from_buffer(gz_len, gz, MHD_RESPMEM_MUST_FREE);
        if (r == NULL) {
            free(gz);
            rc = MHD_NO;
            goto out;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CT_PROM);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
        MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, MHD_HTTP_HEADER_ACCEPT_ENCODING);
        rc = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        goto out;
    }
    rc = reply(c, MHD_HTTP_OK, CT_PROM, MHD_HTTP_HEADER_VARY, MHD_HTTP_HEADER_ACCEPT_ENCODING,
               out.len ? zt_buf_head(&out) : (void *)"", out.len, false);
out:
    zt_buf_release(&out);
    return rc;
}

/* ---------------------------------------------------------------- ready */

static enum MHD_Result handle_ready(struct zt_admin *admin, struct MHD_Connection *c,
                                    const char *url, const char *method)
{
    char why[WHY_MAX];
    char body[WHY_MAX + 64];

    if (strcmp(url, "/healthz/ready") != 0)
        return reply_404(c);
    if (!is_get(method))
        return reply_405(c, "GET, HEAD", "use GET\n");
    why[0] = '\0';
    if (admin->ops.ready == NULL || admin->ops.ready(admin->ud, why, sizeof(why)))
        return reply_text(c, MHD_HTTP_OK, "ready\n");
    why[sizeof(why) - 1] = '\0';
    snprintf(body, sizeof(body), "not ready, pending: {%s}\n", why);
    return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, body);
}

/* ---------------------------------------------------------------- daemon */

/* Parses a Content-Length value; false when absent-looking or malformed. */
static bool parse_length(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (s == NULL || *s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || v > UINT64_MAX / 10 - 1)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct srv *s = cls;
    struct zt_admin *admin = s->admin;
    struct req *rq = *con_cls;

    if (rq == NULL) {
        /* First call: headers only. Refuse a declared oversized body before
         * reading any of it. */
        rq = zt_xcalloc(1, sizeof(*rq));
        *con_cls = rq;
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        uint64_t declared;
        if (cl != NULL && (!parse_length(cl, &declared) || declared > ZT_ADMIN_MAX_BODY)) {
            rq->is_too_big = true;
            return reply_text(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n");
        }
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        /* Bodies are ignored; count them so a chunked one cannot run on. */
        rq->body += *upload_data_size;
        *upload_data_size = 0;
        if (rq->body > ZT_ADMIN_MAX_BODY) {
            rq->is_too_big = true;
            return MHD_NO; /* closes the connection */
        }
        return MHD_YES;
    }
    if (rq->is_too_big)
        return MHD_NO;
    switch (s->which) {
    case ZT_ADMIN_SRV_ADMIN:
        return handle_admin(admin, c, url, method);
    case ZT_ADMIN_SRV_STATS:
        return handle_stats(admin, c, url, method);
    case ZT_ADMIN_SRV_READY:
        return handle_ready(admin, c, url, method);
    }
    return MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    free(*con_cls);
    *con_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct srv *s = cls;
    char line[256];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (atomic_load(&s->is_starting))
        snprintf(s->start_err, sizeof(s->start_err), "%s", line);
    else
        ZT_DEBUG("admin", "%s server: %s", zt_admin_server_str(s->which), line);
}

/* ---------------------------------------------------------------- admission */

static bool addr_key_of(const struct sockaddr *sa, socklen_t len, struct addr_key *k)
{
    memset(k, 0, sizeof(*k));
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        k->b[10] = k->b[11] = 0xff;
        memcpy(&k->b[12], &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        memcpy(k->b, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

static bool addr_eq(const struct addr_key *a, const struct addr_key *b)
{
    return memcmp(a->b, b->b, sizeof(a->b)) == 0;
}

/* Live (not evicted) connections of `k`; under s->mu. */
static unsigned count_of(const struct srv *s, const struct addr_key *k)
{
    unsigned n = 0;
    for (struct zt_list_node *l = zt_list_first(&s->conns); l != NULL;
         l = zt_list_next(&s->conns, l)) {
        const struct conn_rec *r = zt_list_entry(l, struct conn_rec, link);
        if (!r->is_evicted && addr_eq(&r->addr, k))
            n++;
    }
    return n;
}

/* Which connections a daemon holds. Each address may hold limit_per_ip; the
 * daemon holds limit_total. A full daemon does not leave a newcomer waiting
 * in the listen backlog (a few addresses holding idle or trickling
 * connections would then lock everyone out): it makes room by shutting
 * down the oldest connection of the address holding the most, when that
 * address holds at least two more than the newcomer's. So any address gets
 * a fair share, limit_total / (addresses), however the others behave, and a
 * slow client costs only its own address's share.
 *
 * Runs on the daemon's thread, before libmicrohttpd sets the connection up
 * (its "started" notification follows on the same thread). The victim is
 * only shut down, never closed: libmicrohttpd still owns the descriptor,
 * sees the end of the stream on its next poll and closes it as usual. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct srv *s = cls;
    struct addr_key k;
    enum MHD_Result rc = MHD_NO;

    if (addr == NULL || !addr_key_of(addr, addrlen, &k))
        return MHD_NO;
    pthread_mutex_lock(&s->mu);
    unsigned mine = count_of(s, &k);
    if (mine >= s->limit_per_ip)
        goto out;
    if (s->n_live < s->limit_total) {
        rc = MHD_YES;
        goto out;
    }
    /* Full: find the address holding the most, and its oldest connection. */
    struct conn_rec *victim = NULL;
    unsigned most = 0;
    for (struct zt_list_node *l = zt_list_first(&s->conns); l != NULL;
         l = zt_list_next(&s->conns, l)) {
        struct conn_rec *r = zt_list_entry(l, struct conn_rec, link);
        if (r->is_evicted || r->fd < 0 || (victim != NULL && addr_eq(&r->addr, &victim->addr)))
            continue;
        unsigned n = count_of(s, &r->addr);
        if (n > most) {
            most = n;
            victim = r; /* the list is oldest first */
        }
    }
    if (victim == NULL || most < mine + 2)
        goto out;
    /* ENOTCONN: the client is already gone; libmicrohttpd will see it too. */
    if (shutdown(victim->fd, SHUT_RDWR) != 0 && errno != ENOTCONN)
        goto out;
    victim->is_evicted = true;
    s->n_live--;
    rc = MHD_YES;
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct srv *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd_info =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *addr_info =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        struct conn_rec *r = zt_xcalloc(1, sizeof(*r));
        r->fd = fd_info != NULL ? fd_info->connect_fd : -1;
        /* An address libmicrohttpd cannot tell (never seen) counts as "::". */
        if (addr_info == NULL || addr_info->client_addr == NULL ||
            !addr_key_of(addr_info->client_addr, sizeof(struct sockaddr_storage), &r->addr))
            memset(&r->addr, 0, sizeof(r->addr));
        pthread_mutex_lock(&s->mu);
        zt_list_insert_tail(&s->conns, &r->link);
        s->n_live++;
        pthread_mutex_unlock(&s->mu);
        *socket_context = r;
        return;
    }
    struct conn_rec *r = *socket_context;
    if (r == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    zt_list_remove(&r->link);
    if (!r->is_evicted)
        s->n_live--;
    pthread_mutex_unlock(&s->mu);
    free(r);
    *socket_context = NULL;
}

static bool ipv6_available(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* Starts one daemon on addr:port. Returns 0 or a negative error with err. */
static int start_one(struct srv *s, const char *addr, uint16_t port, unsigned limit,
                     unsigned timeout_s, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    /* MHD_USE_ITC lets zt_admin_release_ports() quiesce the daemon. */
    unsigned flags =
        MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    bool is_v6 = strchr(addr, ':') != NULL;
    bool is_any6 = false;

    memset(&ss, 0, sizeof(ss));
    if (is_v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1)
            goto bad_addr;
        is_any6 = IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
        /* "::" serves IPv4 clients too. */
        flags |= is_any6 ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
            goto bad_addr;
    }

    atomic_store(&s->is_starting, true);
    s->start_err[0] = '\0';
    errno = 0;
    /* libmicrohttpd sets SO_REUSEADDR on its listening sockets by default,
     * so a restart does not trip over connections in TIME_WAIT. We do not
     * pass MHD_OPTION_LISTENING_ADDRESS_REUSE=1: on Linux that adds
     * SO_REUSEPORT, which would let a second proxy share our ports.
     *
     * Limits: on_accept admits connections (per address, in all, with a
     * fair share when full). libmicrohttpd's own total limit is only a
     * backstop above ours, for connections shut down by on_accept that it
     * has not closed yet: when it is reached libmicrohttpd stops accepting
     * and new clients wait in the backlog. */
    s->limit_per_ip = limit;
    s->limit_total = 2 * limit;
    s->d = MHD_start_daemon(
        flags, port, on_accept, s, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, 4 * limit, MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)ZT_ADMIN_CONN_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, MHD_OPTION_END);
    int saved = errno;
    atomic_store(&s->is_starting, false);
    if (s->d == NULL) {
        snprintf(err, errlen, "%s %s%s%s:%u: %.160s", zt_admin_server_str(s->which),
                 is_v6 ? "[" : "", addr, is_v6 ? "]" : "", (unsigned)port,
                 s->start_err[0] ? s->start_err
                 : saved         ? strerror(saved)
                                 : "cannot start");
        return saved > 0 ? -saved : -EADDRNOTAVAIL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info != NULL ? info->port : port;
    return 0;

bad_addr:
    snprintf(err, errlen, "%s: bad listen address \"%s\"", zt_admin_server_str(s->which), addr);
    return ZT_E_CONFIG;
}

int zt_admin_start(const struct zt_admin_opts *opts, const struct zt_admin_ops *ops, void *ud,
                   struct zt_admin **out, char *err, size_t errlen)
{
    struct zt_admin *admin;
    unsigned limit = opts->conn_limit ? opts->conn_limit : ZT_ADMIN_DEFAULT_CONN_LIMIT;
    unsigned timeout_s = opts->conn_timeout_s ? opts->conn_timeout_s : ZT_ADMIN_DEFAULT_TIMEOUT_S;
    const char *addrs[N_SERVERS] = {
        opts->admin_addr ? opts->admin_addr : "127.0.0.1",
        opts->stats_addr ? opts->stats_addr : "::", opts->ready_addr ? opts->ready_addr : "::"};
    const uint16_t ports[N_SERVERS] = {opts->admin_port, opts->stats_port, opts->ready_port};
    char ebuf[256] = "";
    int rc = 0;

    *out = NULL;
    admin = zt_xcalloc(1, sizeof(*admin));
    if (ops != NULL)
        admin->ops = *ops;
    admin->ud = ud;
    admin->startup_level = zt_log_get_level();
    admin->stats_only = opts->stats_only;
    for (int i = 0; i < N_SERVERS; i++) {
        struct srv *s = &admin->srv[i];
        if (opts->stats_only && i != ZT_ADMIN_SRV_STATS)
            continue;
        s->admin = admin;
        s->which = (enum zt_admin_server)i;
        atomic_init(&s->is_starting, false);
        pthread_mutex_init(&s->mu, NULL);
        s->is_mu_init = true;
        zt_list_init(&s->conns);
        const char *addr = addrs[i];
        /* The wildcard falls back to IPv4 on hosts without IPv6. */
        if (strcmp(addr, "::") == 0 && !ipv6_available())
            addr = "0.0.0.0";
        rc = start_one(s, addr, ports[i], limit, timeout_s, ebuf, sizeof(ebuf));
        if (rc != 0 && strcmp(addr, "::") == 0 && rc != -EADDRINUSE) {
            char unused[sizeof(ebuf)];
            /* Keep the IPv6 reason if IPv4 fails too. */
            rc = start_one(s, "0.0.0.0", ports[i], limit, timeout_s, unused, sizeof(unused));
        }
        if (rc != 0)
            goto fail;
    }
    *out = admin;
    return 0;

fail:
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", ebuf);
    zt_admin_stop(admin);
    return rc;
}

uint16_t zt_admin_port(const struct zt_admin *admin, enum zt_admin_server which)
{
    if (admin == NULL || (int)which < 0 || (int)which >= N_SERVERS)
        return 0;
    return admin->srv[which].port;
}

void zt_admin_release_ports(struct zt_admin *admin)
{
    if (admin == NULL)
        return;
    for (int i = 0; i < N_SERVERS; i++) {
        struct srv *s = &admin->srv[i];
        if (s->d == NULL || s->is_released)
            continue;
        /* The daemon stops polling its listening socket and hands it back:
         * closing it frees the port while accepted connections go on. */
        MHD_socket fd = MHD_quiesce_daemon(s->d);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
        s->is_released = true;
    }
}

void zt_admin_stop(struct zt_admin *admin)
{
    if (admin == NULL)
        return;
    for (int i = 0; i < N_SERVERS; i++) {
        struct srv *s = &admin->srv[i];
        /* Stopping closes every connection, so their records are freed. */
        if (s->d != NULL)
            MHD_stop_daemon(s->d);
        if (s->is_mu_init)
            pthread_mutex_destroy(&s->mu);
    }
    free(admin);
}
