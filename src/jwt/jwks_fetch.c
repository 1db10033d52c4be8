/* jwksUri fetching with libcurl's multi-socket API on a libuv loop, as in
 * curl's documented libuv example: libcurl tells us which sockets to watch
 * (on_curl_socket) and when to call it back (on_curl_timer); uv_poll_t and
 * one uv_timer_t turn those into curl_multi_socket_action calls, and
 * check_done collects finished transfers. Each URI is a `struct source` with
 * its own uv_timer_t for the refresh and retry schedule. */
#include "jwt/jwks_fetch.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/err.h"
#include "base/list.h"
#include "base/log.h"
#include "jwt/jwt.h"

/* libcurl is loaded when the first fetcher starts (dlopen), not linked:
 * only a waypoint with a jwksUri needs it, and Debian's build pulls in
 * Kerberos, LDAP, libssh2 and librtmp, 1.5-2 MB of RSS a node proxy would
 * carry for nothing. The functions used, by pointer. */
static struct {
    CURLcode (*global_init)(long flags);
    void (*global_cleanup)(void);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *h);
    CURLcode (*easy_setopt)(CURL *h, CURLoption o, ...);
    CURLcode (*easy_getinfo)(CURL *h, CURLINFO i, ...);
    const char *(*easy_strerror)(CURLcode c);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_cleanup)(CURLM *m);
    CURLMcode (*multi_add_handle)(CURLM *m, CURL *h);
    CURLMcode (*multi_remove_handle)(CURLM *m, CURL *h);
    CURLMcode (*multi_assign)(CURLM *m, curl_socket_t fd, void *p);
    CURLMcode (*multi_setopt)(CURLM *m, CURLMoption o, ...);
    CURLMcode (*multi_socket_action)(CURLM *m, curl_socket_t fd, int ev, int *running);
    CURLMsg *(*multi_info_read)(CURLM *m, int *left);
    const char *(*multi_strerror)(CURLMcode c);
    CURLU *(*url)(void);
    void (*url_cleanup)(CURLU *u);
    CURLUcode (*url_set)(CURLU *u, CURLUPart what, const char *part, unsigned int flags);
    const char *(*url_strerror)(CURLUcode c);
} C;
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static bool curl_loaded;
static char curl_load_error[256];

static void load_curl(void)
{
    static const char lib[] = "libcurl.so.4";
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(curl_load_error, sizeof(curl_load_error), "%s", dlerror());
        return;
    }
    static const struct {
        const char *name;
        size_t off;
    } syms[] = {
#define SYM(f) {"curl_" #f, offsetof(__typeof__(C), f)}
        SYM(global_init),
        SYM(global_cleanup),
        SYM(easy_init),
        SYM(easy_cleanup),
        SYM(easy_setopt),
        SYM(easy_getinfo),
        SYM(easy_strerror),
        SYM(multi_init),
        SYM(multi_cleanup),
        SYM(multi_add_handle),
        SYM(multi_remove_handle),
        SYM(multi_assign),
        SYM(multi_setopt),
        SYM(multi_socket_action),
        SYM(multi_info_read),
        SYM(multi_strerror),
        SYM(url),
        SYM(url_cleanup),
        SYM(url_set),
        SYM(url_strerror),
#undef SYM
    };
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        void *f = dlsym(h, syms[i].name);
        if (!f) {
            snprintf(curl_load_error, sizeof(curl_load_error), "%s: no %s", lib, syms[i].name);
            dlclose(h);
            return;
        }
        memcpy((char *)&C + syms[i].off, &f, sizeof(f));
    }
    curl_loaded = true; /* the handle stays open for the process */
}

#define SCOPE "jwt"

enum source_state {
    SOURCE_WAITING,  /* its timer runs until the next fetch */
    SOURCE_FETCHING, /* a transfer is in the multi handle */
    SOURCE_CLOSING,  /* left the set; its timer is closing */
};

static const char *source_state_str(enum source_state st)
{
    switch (st) {
    case SOURCE_WAITING:
        return "waiting";
    case SOURCE_FETCHING:
        return "fetching";
    case SOURCE_CLOSING:
        return "closing";
    }
    return "?";
}

struct source {
    struct zt_jwks_fetcher *f;
    enum source_state state;
    char *uri;
    uv_timer_t timer; /* next fetch */
    CURL *easy;       /* while FETCHING */
    char errbuf[CURL_ERROR_SIZE];
    char *rx; /* body being received, capped at ZT_JWT_JWKS_MAX */
    size_t rx_len, rx_cap;
    bool is_over_cap;
    char *body; /* last good body, NUL-terminated; NULL before the first */
    size_t body_len;
    uint32_t backoff_ms; /* the next retry's delay; 0 after a success */
    uint64_t successes, failures;
    int last_error;
    long http_status;
    char reason[CURL_ERROR_SIZE + 64]; /* last failure's text */
};

/* One socket libcurl asked us to watch. */
struct sock {
    struct zt_jwks_fetcher *f;
    uv_poll_t poll;
    curl_socket_t fd;
    struct zt_list_node link; /* f->socks, while open */
};

struct zt_jwks_fetcher {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t curl_timer; /* libcurl's own timeouts */
    char *ca_file;
    uint32_t refresh_s, retry_min_ms, retry_max_ms, timeout_ms;
    zt_jwks_fetch_cb *cb;
    void *ud;
    struct source *src[ZT_JWKS_URIS_MAX];
    size_t n_src;
    struct zt_list socks;
    size_t n_closing; /* uv handles closed and not yet called back */
    bool is_closing;
    void (*done)(void *);
    void *done_ud;
};

static void check_done(struct zt_jwks_fetcher *f);

static void set_state(struct source *s, enum source_state st)
{
    ZT_DEBUG(SCOPE, "jwksUri %s: %s -> %s", s->uri, source_state_str(s->state),
             source_state_str(st));
    s->state = st;
}

/* Frees the fetcher once it is closing and its last handle has closed. */
static void maybe_free(struct zt_jwks_fetcher *f)
{
    if (!f->is_closing || f->n_closing > 0)
        return;
    void (*done)(void *) = f->done;
    void *ud = f->done_ud;
    free(f->ca_file);
    free(f);
    C.global_cleanup();
    if (done)
        done(ud);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct zt_jwks_fetcher *f = h->data;
    f->n_closing--;
    maybe_free(f);
}

static void close_handle(struct zt_jwks_fetcher *f, uv_handle_t *h, uv_close_cb cb)
{
    f->n_closing++;
    uv_close(h, cb);
}

/* ---- libcurl's sockets and timer on the loop ---- */

static void on_sock_closed(uv_handle_t *h)
{
    struct sock *k = h->data;
    struct zt_jwks_fetcher *f = k->f;
    free(k);
    f->n_closing--;
    maybe_free(f);
}

static void close_sock(struct sock *k)
{
    zt_list_remove(&k->link);
    k->poll.data = k;
    close_handle(k->f, (uv_handle_t *)&k->poll, on_sock_closed);
}

static void socket_action(struct zt_jwks_fetcher *f, curl_socket_t fd, int flags)
{
    int running;
    CURLMcode mc = C.multi_socket_action(f->multi, fd, flags, &running);
    if (mc != CURLM_OK)
        ZT_ERROR(SCOPE, "jwks fetcher: curl_multi_socket_action: %s", C.multi_strerror(mc));
    check_done(f);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct sock *k = p->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    socket_action(k->f, k->fd, flags);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct zt_jwks_fetcher *f = userp;
    struct sock *k = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (k) {
            int rc = uv_poll_stop(&k->poll);
            if (rc < 0)
                ZT_ERROR(SCOPE, "jwks fetcher: uv_poll_stop: %s", uv_strerror(rc));
            close_sock(k);
            /* Not while curl_multi_cleanup runs: it is dropping the entry. */
            if (!f->is_closing && C.multi_assign(f->multi, fd, NULL) != CURLM_OK)
                ZT_ERROR(SCOPE, "jwks fetcher: curl_multi_assign failed");
        }
        return 0;
    }
    if (!k) {
        k = zt_xcalloc(1, sizeof(*k));
        k->f = f;
        k->fd = fd;
        int rc = uv_poll_init_socket(f->loop, &k->poll, fd);
        if (rc < 0) {
            ZT_ERROR(SCOPE, "jwks fetcher: uv_poll_init_socket: %s", uv_strerror(rc));
            free(k);
            return -1; /* libcurl fails the transfer */
        }
        k->poll.data = k;
        zt_list_insert_tail(&f->socks, &k->link);
        if (C.multi_assign(f->multi, fd, k) != CURLM_OK) {
            ZT_ERROR(SCOPE, "jwks fetcher: curl_multi_assign failed");
            close_sock(k);
            return -1;
        }
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    int rc = events ? uv_poll_start(&k->poll, events, on_poll) : uv_poll_stop(&k->poll);
    if (rc < 0) {
        ZT_ERROR(SCOPE, "jwks fetcher: uv_poll_start: %s", uv_strerror(rc));
        return -1;
    }
    return 0;
}

static void on_curl_timeout(uv_timer_t *t)
{
    struct zt_jwks_fetcher *f = t->data;
    socket_action(f, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct zt_jwks_fetcher *f = userp;
    int rc;
    /* A zero timeout runs on the next loop iteration rather than here: we
     * are inside a libcurl call. */
    if (timeout_ms < 0)
        rc = uv_timer_stop(&f->curl_timer);
    else
        rc = uv_timer_start(&f->curl_timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
    if (rc < 0) {
        ZT_ERROR(SCOPE, "jwks fetcher: libcurl's timer: %s", uv_strerror(rc));
        return -1;
    }
    return 0;
}

/* ---- one source's fetch ---- */

static void on_source_timer(uv_timer_t *t);

static void arm(struct source *s, uint64_t delay_ms)
{
    set_state(s, SOURCE_WAITING);
    int rc = uv_timer_start(&s->timer, on_source_timer, delay_ms, 0);
    if (rc < 0)
        ZT_ERROR(SCOPE, "jwksUri %s: cannot arm the refresh timer: %s", s->uri, uv_strerror(rc));
}

/* Receives body bytes; returning less than given aborts the transfer with
 * CURLE_WRITE_ERROR, which is how a body past the cap stops at once. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct source *s = userp;
    size_t n = size * nmemb;
    if (n > ZT_JWT_JWKS_MAX - s->rx_len) {
        s->is_over_cap = true;
        return 0;
    }
    if (s->rx_len + n + 1 > s->rx_cap) {
        size_t cap = s->rx_cap ? s->rx_cap : 4096;
        while (cap < s->rx_len + n + 1)
            cap *= 2;
        if (cap > ZT_JWT_JWKS_MAX + 1)
            cap = ZT_JWT_JWKS_MAX + 1;
        s->rx = zt_xrealloc(s->rx, cap);
        s->rx_cap = cap;
    }
    memcpy(s->rx + s->rx_len, data, n);
    s->rx_len += n;
    return n;
}

static void drop_rx(struct source *s)
{
    free(s->rx);
    s->rx = NULL;
    s->rx_len = s->rx_cap = 0;
    s->is_over_cap = false;
}

/* Takes the transfer out of the multi handle; no callback for it after. */
static void cancel_transfer(struct source *s)
{
    if (!s->easy)
        return;
    CURLMcode mc = C.multi_remove_handle(s->f->multi, s->easy);
    if (mc != CURLM_OK)
        ZT_ERROR(SCOPE, "jwksUri %s: curl_multi_remove_handle: %s", s->uri, C.multi_strerror(mc));
    C.easy_cleanup(s->easy);
    s->easy = NULL;
    drop_rx(s);
}

/* A configured easy handle for s, or NULL with libcurl's reason in *rc. */
static CURL *make_easy(struct source *s, CURLcode *rc)
{
    struct zt_jwks_fetcher *f = s->f;
    CURL *e = C.easy_init();
    if (!e) {
        *rc = CURLE_OUT_OF_MEMORY;
        return NULL;
    }
    /* "" is no proxy at all, whatever http_proxy and friends say. With a
     * ca_file, CAPATH NULL keeps the build's default directory out. A
     * Content-Length over the cap fails before any body byte is read;
     * on_body catches the rest (chunked, or a lying length). */
    if ((*rc = C.easy_setopt(e, CURLOPT_URL, s->uri)) != CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_PRIVATE, (void *)s)) != CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf)) != CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_NOSIGNAL, 1L)) != CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https")) != CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https")) != CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L)) != CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_PROXY, "")) != CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2)) != CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L)) != CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L)) != CURLE_OK ||
        (f->ca_file && (*rc = C.easy_setopt(e, CURLOPT_CAINFO, f->ca_file)) != CURLE_OK) ||
        (f->ca_file && (*rc = C.easy_setopt(e, CURLOPT_CAPATH, (char *)NULL)) != CURLE_OK) ||
        (*rc = C.easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)f->timeout_ms)) != CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)f->timeout_ms)) != CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)ZT_JWT_JWKS_MAX)) !=
            CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body)) != CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_WRITEDATA, (void *)s)) != CURLE_OK ||
        (*rc = C.easy_setopt(e, CURLOPT_USERAGENT, "ztunnel-c")) != CURLE_OK) {
        C.easy_cleanup(e);
        return NULL;
    }
    return e;
}

static uint32_t next_backoff(const struct source *s)
{
    const struct zt_jwks_fetcher *f = s->f;
    if (s->backoff_ms == 0)
        return f->retry_min_ms;
    uint64_t b = (uint64_t)s->backoff_ms * 2;
    return b > f->retry_max_ms ? f->retry_max_ms : (uint32_t)b;
}

/* Records a failure, logs it (at error level only when its kind changed)
 * and arms the retry. */
static void fail_fetch(struct source *s, int err, long http_status, const char *reason)
{
    /* last_error is 0 before any outcome and after a success. */
    bool is_new_kind = s->last_error != err || s->http_status != http_status;
    s->failures++;
    s->last_error = err;
    s->http_status = http_status;
    snprintf(s->reason, sizeof(s->reason), "%s", reason);
    s->backoff_ms = next_backoff(s);
    const char *kept = s->body ? "; the last good key set stays" : "";
    if (is_new_kind)
        ZT_ERROR(SCOPE, "jwksUri %s: fetch failed: %s (retrying in %u ms%s)", s->uri, reason,
                 s->backoff_ms, kept);
    else
        ZT_DEBUG(SCOPE, "jwksUri %s: fetch failed again: %s (retrying in %u ms)", s->uri, reason,
                 s->backoff_ms);
    arm(s, s->backoff_ms);
}

static int classify(CURLcode rc, bool is_over_cap)
{
    if (is_over_cap || rc == CURLE_FILESIZE_EXCEEDED)
        return ZT_E_TOO_BIG;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return ZT_E_TIMEOUT;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
        return ZT_E_TLS;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
        return ZT_E_UPSTREAM;
    default:
        return ZT_E_PROTO;
    }
}

/* A transfer of s ended with rc: installs a new body and calls the user, or
 * records the failure. The user callback runs last: it may remove s or close
 * the fetcher. */
static void finish_fetch(struct source *s, CURLcode rc)
{
    struct zt_jwks_fetcher *f = s->f;
    long status = 0;
    if (C.easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
        status = 0;
    char *rx = s->rx;
    size_t rx_len = s->rx_len;
    bool is_over_cap = s->is_over_cap;
    s->rx = NULL; /* kept past cancel_transfer */
    cancel_transfer(s);

    if (rc != CURLE_OK || status != 200 || is_over_cap) {
        char reason[CURL_ERROR_SIZE + 64];
        if (rc == CURLE_OK)
            snprintf(reason, sizeof(reason), "HTTP status %ld", status);
        else if (is_over_cap || rc == CURLE_FILESIZE_EXCEEDED)
            snprintf(reason, sizeof(reason), "body over %d bytes", ZT_JWT_JWKS_MAX);
        else
            snprintf(reason, sizeof(reason), "%s", s->errbuf[0] ? s->errbuf : C.easy_strerror(rc));
        free(rx);
        fail_fetch(s, rc == CURLE_OK ? ZT_E_PROTO : classify(rc, is_over_cap), status, reason);
        return;
    }

    if (s->failures > 0 && s->last_error != 0)
        ZT_INFO(SCOPE, "jwksUri %s: fetched again after %s", s->uri, s->reason);
    s->successes++;
    s->last_error = 0;
    s->http_status = status;
    s->reason[0] = '\0';
    s->backoff_ms = 0;
    arm(s, (uint64_t)f->refresh_s * 1000);
    if (!rx)
        rx = zt_xcalloc(1, 1);
    rx[rx_len] = '\0';
    if (s->body && s->body_len == rx_len && memcmp(s->body, rx, rx_len) == 0) {
        free(rx);
        return;
    }
    free(s->body);
    s->body = rx;
    s->body_len = rx_len;
    ZT_INFO(SCOPE, "jwksUri %s: new document (%zu bytes)", s->uri, rx_len);
    if (f->cb)
        f->cb(f->ud, s->uri, s->body, s->body_len);
}

static void on_source_timer(uv_timer_t *t)
{
    struct source *s = t->data;
    CURLcode cc = CURLE_OK;
    s->errbuf[0] = '\0';
    s->easy = make_easy(s, &cc);
    if (!s->easy) {
        char reason[256];
        snprintf(reason, sizeof(reason), "libcurl refused an option: %s", C.easy_strerror(cc));
        fail_fetch(s, ZT_E_PROTO, 0, reason);
        return;
    }
    CURLMcode mc = C.multi_add_handle(s->f->multi, s->easy);
    if (mc != CURLM_OK) {
        C.easy_cleanup(s->easy);
        s->easy = NULL;
        fail_fetch(s, ZT_E_PROTO, 0, C.multi_strerror(mc));
        return;
    }
    set_state(s, SOURCE_FETCHING);
}

/* Collects the finished transfers. */
static void check_done(struct zt_jwks_fetcher *f)
{
    CURLMsg *m;
    int left;
    while (!f->is_closing && (m = C.multi_info_read(f->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        /* m is invalid once its handle leaves the multi handle. */
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result;
        char *priv = NULL;
        if (C.easy_getinfo(e, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv) {
            ZT_ERROR(SCOPE, "jwks fetcher: a transfer without its source");
            continue;
        }
        finish_fetch((struct source *)(void *)priv, rc);
    }
}

/* ---- the set ---- */

static void on_source_closed(uv_handle_t *h)
{
    struct source *s = h->data;
    struct zt_jwks_fetcher *f = s->f;
    free(s->uri);
    free(s->body);
    free(s);
    f->n_closing--;
    maybe_free(f);
}

static void close_source(struct source *s)
{
    cancel_transfer(s);
    set_state(s, SOURCE_CLOSING);
    int rc = uv_timer_stop(&s->timer);
    if (rc < 0)
        ZT_ERROR(SCOPE, "jwksUri %s: uv_timer_stop: %s", s->uri, uv_strerror(rc));
    close_handle(s->f, (uv_handle_t *)&s->timer, on_source_closed);
}

static struct source *find(const struct zt_jwks_fetcher *f, const char *uri)
{
    for (size_t i = 0; i < f->n_src; i++)
        if (strcmp(f->src[i]->uri, uri) == 0)
            return f->src[i];
    return NULL;
}

static bool listed(const char *const *uris, size_t n, const char *uri)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(uris[i], uri) == 0)
            return true;
    return false;
}

static int check_uri(const char *uri, char *err, size_t errlen)
{
    if (!uri)
        return zt_errf(err, errlen, ZT_E_CONFIG, "jwksUri: NULL");
    size_t len = strlen(uri);
    if (len > ZT_JWKS_URI_LEN_MAX)
        return zt_errf(err, errlen, ZT_E_CONFIG, "jwksUri %.64s...: longer than %d bytes", uri,
                       ZT_JWKS_URI_LEN_MAX);
    if (strncasecmp(uri, "https://", 8) != 0 && strncasecmp(uri, "http://", 7) != 0)
        return zt_errf(err, errlen, ZT_E_CONFIG, "jwksUri %s: not http:// or https://", uri);
    CURLU *u = C.url();
    if (!u)
        return zt_errf(err, errlen, ZT_E_CONFIG, "jwksUri %s: curl_url failed", uri);
    CURLUcode uc = C.url_set(u, CURLUPART_URL, uri, 0);
    C.url_cleanup(u);
    if (uc != CURLUE_OK)
        return zt_errf(err, errlen, ZT_E_CONFIG, "jwksUri %s: %s", uri, C.url_strerror(uc));
    return 0;
}

int zt_jwks_fetcher_set_uris(struct zt_jwks_fetcher *f, const char *const *uris, size_t n,
                             char *err, size_t errlen)
{
    if (f->is_closing)
        return zt_errf(err, errlen, ZT_E_CLOSED, "jwks fetcher closed");
    if (n > 0 && !uris)
        return zt_errf(err, errlen, ZT_E_CONFIG, "jwksUri list: NULL");
    for (size_t i = 0; i < n; i++) {
        int rc = check_uri(uris[i], err, errlen);
        if (rc < 0)
            return rc;
    }
    /* Count the distinct URIs before changing anything. */
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (!listed(uris, i, uris[i]))
            distinct++;
    if (distinct > ZT_JWKS_URIS_MAX)
        return zt_errf(err, errlen, ZT_E_TOO_BIG, "%zu jwksUris, over %d", distinct,
                       ZT_JWKS_URIS_MAX);

    size_t kept = 0;
    for (size_t i = 0; i < f->n_src; i++) {
        struct source *s = f->src[i];
        if (listed(uris, n, s->uri))
            f->src[kept++] = s;
        else
            close_source(s);
    }
    f->n_src = kept;
    for (size_t i = 0; i < n; i++) {
        if (find(f, uris[i]))
            continue;
        struct source *s = zt_xcalloc(1, sizeof(*s));
        s->f = f;
        s->uri = zt_xstrdup(uris[i]);
        /* uv_timer_init cannot fail on Linux (it only links the handle);
         * were it to, the URIs before this one would stay changed. */
        int rc = uv_timer_init(f->loop, &s->timer);
        if (rc < 0) {
            free(s->uri);
            free(s);
            return zt_errf(err, errlen, rc, "jwksUri %s: uv_timer_init: %s", uris[i],
                           uv_strerror(rc));
        }
        s->timer.data = s;
        f->src[f->n_src++] = s;
        arm(s, 0);
    }
    return 0;
}

const char *zt_jwks_fetcher_body(const struct zt_jwks_fetcher *f, const char *uri, size_t *len)
{
    const struct source *s = find(f, uri);
    if (!s || !s->body)
        return NULL;
    if (len)
        *len = s->body_len;
    return s->body;
}

int zt_jwks_fetcher_status(const struct zt_jwks_fetcher *f, const char *uri,
                           struct zt_jwks_fetch_status *st)
{
    const struct source *s = find(f, uri);
    if (!s)
        return ZT_E_NOT_FOUND;
    *st = (struct zt_jwks_fetch_status){
        .is_fetching = s->state == SOURCE_FETCHING,
        .successes = s->successes,
        .failures = s->failures,
        .last_error = s->last_error,
        .http_status = s->http_status,
        .reason = s->reason,
    };
    return 0;
}

struct zt_jwks_fetcher *zt_jwks_fetcher_new(uv_loop_t *loop, const struct zt_jwks_fetcher_opts *o,
                                            zt_jwks_fetch_cb *cb, void *ud)
{
    pthread_once(&curl_once, load_curl);
    if (!curl_loaded) {
        ZT_ERROR(SCOPE, "jwks fetcher: libcurl cannot be loaded: %s", curl_load_error);
        return NULL;
    }
    CURLcode cc = C.global_init(CURL_GLOBAL_DEFAULT);
    if (cc != CURLE_OK) {
        ZT_ERROR(SCOPE, "jwks fetcher: curl_global_init: %s", C.easy_strerror(cc));
        return NULL;
    }
    struct zt_jwks_fetcher *f = zt_xcalloc(1, sizeof(*f));
    f->loop = loop;
    f->cb = cb;
    f->ud = ud;
    f->ca_file = o && o->ca_file ? zt_xstrdup(o->ca_file) : NULL;
    f->refresh_s = o && o->refresh_s ? o->refresh_s : ZT_JWKS_REFRESH_S;
    f->retry_min_ms = o && o->retry_min_ms ? o->retry_min_ms : ZT_JWKS_RETRY_MIN_MS;
    f->retry_max_ms = o && o->retry_max_ms ? o->retry_max_ms : ZT_JWKS_RETRY_MAX_MS;
    if (f->retry_max_ms < f->retry_min_ms)
        f->retry_max_ms = f->retry_min_ms;
    f->timeout_ms = o && o->timeout_ms ? o->timeout_ms : ZT_JWKS_TIMEOUT_MS;
    zt_list_init(&f->socks);
    /* The multi handle first: until the uv timer exists, a failure can
     * free everything here. */
    f->multi = C.multi_init();
    if (!f->multi) {
        ZT_ERROR(SCOPE, "jwks fetcher: curl_multi_init failed");
        goto fail;
    }
    if (C.multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
        C.multi_setopt(f->multi, CURLMOPT_SOCKETDATA, (void *)f) != CURLM_OK ||
        C.multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        C.multi_setopt(f->multi, CURLMOPT_TIMERDATA, (void *)f) != CURLM_OK) {
        ZT_ERROR(SCOPE, "jwks fetcher: curl_multi_setopt failed");
        goto fail;
    }
    int rc = uv_timer_init(loop, &f->curl_timer);
    if (rc < 0) {
        ZT_ERROR(SCOPE, "jwks fetcher: uv_timer_init: %s", uv_strerror(rc));
        goto fail;
    }
    f->curl_timer.data = f;
    return f;
fail:
    if (f->multi && C.multi_cleanup(f->multi) != CURLM_OK)
        ZT_ERROR(SCOPE, "jwks fetcher: curl_multi_cleanup failed");
    free(f->ca_file);
    free(f);
    C.global_cleanup();
    return NULL;
}

void zt_jwks_fetcher_close(struct zt_jwks_fetcher *f, void (*done)(void *), void *ud)
{
    if (!f)
        return;
    f->is_closing = true;
    f->done = done;
    f->done_ud = ud;
    for (size_t i = 0; i < f->n_src; i++)
        close_source(f->src[i]);
    f->n_src = 0;
    /* Closing the cached connections reports their sockets to
     * on_curl_socket; any still listed after that are closed here. */
    CURLMcode mc = C.multi_cleanup(f->multi);
    if (mc != CURLM_OK)
        ZT_ERROR(SCOPE, "jwks fetcher: curl_multi_cleanup: %s", C.multi_strerror(mc));
    f->multi = NULL;
    while (!zt_list_empty(&f->socks)) {
        struct sock *k = zt_list_entry(zt_list_first(&f->socks), struct sock, link);
        int rc = uv_poll_stop(&k->poll);
        if (rc < 0)
            ZT_ERROR(SCOPE, "jwks fetcher: uv_poll_stop: %s", uv_strerror(rc));
        close_sock(k);
    }
    int rc = uv_timer_stop(&f->curl_timer);
    if (rc < 0)
        ZT_ERROR(SCOPE, "jwks fetcher: uv_timer_stop: %s", uv_strerror(rc));
    close_handle(f, (uv_handle_t *)&f->curl_timer, on_handle_closed);
}
