/* The fetcher of RequestAuthentication `jwksUri` key sets: keeps the last
 * good JWKS document of each URI and re-fetches it on a schedule, on the
 * caller's libuv loop (libcurl's multi-socket API driven by uv_poll_t and
 * uv_timer_t handles: no thread is added). It does not parse the documents:
 * the caller validates each new body (zt_jwt_rules_set_jwks, or a rebuilt
 * rule set) and keeps its own last good set when that fails.
 *
 * Usage:
 *   struct zt_jwks_fetcher_opts o = {0};          // defaults below
 *   struct zt_jwks_fetcher *f = zt_jwks_fetcher_new(loop, &o, on_jwks, ctx);
 *   const char *uris[] = {"https://issuer/.well-known/jwks.json"};
 *   if (zt_jwks_fetcher_set_uris(f, uris, 1, err, sizeof err) < 0) ...config error...
 *   ... on_jwks(ctx, uri, body, len) runs for every new document ...
 *   zt_jwks_fetcher_close(f, on_closed, ctx);
 *
 * Schedule: a URI new to the set is fetched at once (on the next loop
 * iteration). After HTTP 200 it is fetched again every refresh_s seconds.
 * After a failure (no connection, TLS verification, a status other than 200,
 * the timeout, a body over ZT_JWT_JWKS_MAX bytes) it is retried after
 * retry_min_ms, doubled on each further failure up to retry_max_ms; the last
 * good body stays. A failure is logged (scope "jwt", the URI and the reason)
 * at error level when its kind differs from the previous outcome's, and at
 * debug level while it repeats; the first success after failures is logged
 * at info level.
 *
 * Transfers: http:// and https:// only, no redirects (a 3xx is a failure), no
 * proxy (the environment's http_proxy/https_proxy are ignored: the node
 * proxy's own traffic must not be redirected by them), TLS 1.2 or newer with
 * peer and host verification always on, against ca_file or the system's
 * roots. A body is received into one buffer of at most ZT_JWT_JWKS_MAX bytes;
 * the transfer is aborted as soon as it passes that cap.
 *
 * Threads: everything, callbacks included, runs on the loop's thread; no
 * function may be called from another thread.
 *
 * Lifetime: zt_jwks_fetcher_close is a request: transfers stop at once, no
 * callback runs after it returns, and the handles close on later loop
 * iterations; `done` then runs and the fetcher is freed. libcurl's global
 * state is initialised by zt_jwks_fetcher_new and released when the fetcher
 * is freed (reference counted by libcurl; not thread-safe against other
 * libcurl users initialising it at the same moment). */
#ifndef ZT_JWT_JWKS_FETCH_H
#define ZT_JWT_JWKS_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define ZT_JWKS_URIS_MAX 64       /* URIs in one fetcher */
#define ZT_JWKS_URI_LEN_MAX 2048  /* bytes of one URI */
#define ZT_JWKS_REFRESH_S 1200    /* Istio's default jwksRefreshInterval (20 min) */
#define ZT_JWKS_RETRY_MIN_MS 1000 /* first retry after a failure */
#define ZT_JWKS_RETRY_MAX_MS 60000
#define ZT_JWKS_TIMEOUT_MS 10000 /* one whole fetch: connect, TLS, headers, body */

/* Zero fields take the defaults above. Borrowed for the call to
 * zt_jwks_fetcher_new, which copies what it keeps. */
struct zt_jwks_fetcher_opts {
    const char *ca_file; /* PEM roots trusted instead of the system's; NULL: the system's */
    uint32_t refresh_s;  /* re-fetch period after a success */
    uint32_t retry_min_ms, retry_max_ms; /* backoff after a failure */
    uint32_t timeout_ms;                 /* one whole fetch */
};

/* A fetch of `uri` returned HTTP 200 with a body that differs from the last
 * good one (the first success included). `uri` and body[0..len) are borrowed
 * for the call; body is NUL-terminated at body[len] (not counted). Runs on
 * the loop's thread; it may call zt_jwks_fetcher_set_uris (removing this URI
 * too) and zt_jwks_fetcher_close. */
typedef void zt_jwks_fetch_cb(void *ud, const char *uri, const char *body, size_t len);

struct zt_jwks_fetcher;

/* A fetcher with no URIs on `loop` (borrowed; it must outlive the fetcher
 * until `done` of zt_jwks_fetcher_close). `ud` is passed to `cb` as it is;
 * a NULL cb leaves the bodies to zt_jwks_fetcher_body.
 * Returns NULL if libcurl cannot be initialised (logged). */
struct zt_jwks_fetcher *zt_jwks_fetcher_new(uv_loop_t *loop, const struct zt_jwks_fetcher_opts *o,
                                            zt_jwks_fetch_cb *cb, void *ud);

/* Makes uris[0..n) the set fetched (the strings are borrowed for the call;
 * duplicates count once). URIs new to the set are fetched now; URIs no
 * longer in it are dropped with their body and their in-flight transfer,
 * and get no callback after this returns; URIs kept keep their schedule and
 * body. All or nothing: on an error the set is unchanged and a reason is in
 * err. Errors: ZT_E_TOO_BIG (more than ZT_JWKS_URIS_MAX URIs), ZT_E_CONFIG
 * (a URI longer than ZT_JWKS_URI_LEN_MAX bytes, not http:// or https://, or
 * not a URL libcurl parses), ZT_E_CLOSED (after zt_jwks_fetcher_close). */
int zt_jwks_fetcher_set_uris(struct zt_jwks_fetcher *f, const char *const *uris, size_t n,
                             char *err, size_t errlen);

/* The last good body of `uri` (NUL-terminated, its length in *len when len
 * is not NULL), or NULL when not in the set or never fetched. Borrowed: a
 * newer body replaces it on a later loop iteration, and set_uris dropping
 * the URI or close frees it then; copy it to keep it. */
const char *zt_jwks_fetcher_body(const struct zt_jwks_fetcher *f, const char *uri, size_t *len);

/* What a fetcher knows of one URI, for logs, the admin page and tests. */
struct zt_jwks_fetch_status {
    bool is_fetching;   /* a transfer is in flight */
    uint64_t successes; /* fetches that returned HTTP 200 within the cap */
    uint64_t failures;  /* every other completed fetch */
    int last_error;     /* 0 after a success or before any outcome; else ZT_E_TIMEOUT,
                           ZT_E_TLS, ZT_E_TOO_BIG, ZT_E_UPSTREAM (no connection), or
                           ZT_E_PROTO (a status other than 200, or another failure) */
    long http_status;   /* of the last completed fetch; 0 when none came back */
    const char *reason; /* the last failure's text, "" if none; borrowed like a body */
};

/* Fills *st for `uri`. Returns 0, or ZT_E_NOT_FOUND when it is not in the
 * set. */
int zt_jwks_fetcher_status(const struct zt_jwks_fetcher *f, const char *uri,
                           struct zt_jwks_fetch_status *st);

/* Stops every transfer and timer and closes the handles; `done(ud)` runs on
 * a later loop iteration once all are closed, and the fetcher is freed
 * before it runs. `done` may be NULL. NULL f is a no-op. May be called from
 * zt_jwks_fetch_cb. Calling it twice is a bug. */
void zt_jwks_fetcher_close(struct zt_jwks_fetcher *f, void (*done)(void *), void *ud);

#endif
