/* The outbound HBONE pool against a real local HBONE server (zt_h2conn
 * server role from the h2 fixture): reuse, keys, one dial per key, stream
 * caps, identity check failures, cancellation, GOAWAY, idle sweep, free. */
#include "test.h"

#include "h2/fixture.h"
#include "hbone/pool.h"

#define WAIT_MS 10000

static const char *const CLIENT_ID = "spiffe://cluster.local/ns/client-ns/sa/client";
static const char *const OTHER_ID = "spiffe://cluster.local/ns/client-ns/sa/other";
static const char *const SERVER_ID = "spiffe://cluster.local/ns/server-ns/sa/server";

struct env {
    struct fx_world w;
    int dials, ctx_calls, verify_calls, ctx_cancels;
    int dial_err, verify_err;
    int dials_ok; /* with dial_err: this many dials succeed first */
    /* test_overflow_callback_closes: the first connection handed out, closed
     * by the first request that gets an error */
    struct zt_h2conn *victim;
    bool close_victim;
    bool ctx_later; /* client_ctx answers -EAGAIN and keeps the request */
    struct zt_hbone_ctx_req *ctx_req;
};

static struct env env;

static int op_dial(void *ud, const struct zt_hbone_key *key)
{
    struct env *e = ud;
    e->dials++;
    if (e->dial_err && e->dials > e->dials_ok)
        return e->dial_err;
    const struct sockaddr_in *dst = (const struct sockaddr_in *)&key->dst;
    if (key->dst.ss_family != AF_INET || ntohs(dst->sin_port) != e->w.port)
        abort();
    return fx_dial(&e->w);
}

static int op_client_ctx(void *ud, const struct zt_hbone_key *key, struct zt_hbone_ctx_req *req,
                         SSL_CTX **ctx)
{
    struct env *e = ud;
    e->ctx_calls++;
    if (e->ctx_later) {
        e->ctx_req = req;
        return -EAGAIN;
    }
    if (strcmp(key->src_id, CLIENT_ID) == 0)
        *ctx = e->w.cctx;
    else if (strcmp(key->src_id, OTHER_ID) == 0)
        *ctx = e->w.cctx2;
    else
        return ZT_E_IDENTITY;
    return 0;
}

static void op_ctx_cancel(void *ud, struct zt_hbone_ctx_req *req)
{
    struct env *e = ud;
    if (req == e->ctx_req) {
        e->ctx_cancels++;
        e->ctx_req = NULL;
    }
}

/* The server's SPIFFE id must be one of the comma-separated dst_ids. */
static int op_verify(void *ud, SSL *ssl, const struct zt_hbone_key *key)
{
    struct env *e = ud;
    e->verify_calls++;
    if (e->verify_err)
        return e->verify_err;
    struct zt_spiffe_id id;
    char s[ZT_SPIFFE_ID_MAX + 1];
    if (zt_tls_peer_identity(ssl, &id) != 0)
        return ZT_E_IDENTITY;
    zt_spiffe_format(&id, s, sizeof(s));
    size_t n = strlen(s);
    for (const char *p = key->dst_ids; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, s, n) == 0)
            return 0;
        if (!end)
            break;
        p = end + 1;
    }
    return ZT_E_IDENTITY;
}

static const struct zt_hbone_pool_ops pool_ops = {
    .dial = op_dial,
    .client_ctx = op_client_ctx,
    .ctx_cancel = op_ctx_cancel,
    .verify = op_verify,
};

/* fx_stream callbacks need a peer; pool connections get a stand-in one. */
static struct fx_peer shims[16];

static struct fx_peer *shim(struct zt_h2conn *h2)
{
    for (int i = 0; i < 16; i++)
        if (shims[i].h2 == h2)
            return &shims[i];
    for (int i = 0; i < 16; i++)
        if (!shims[i].h2) {
            shims[i].h2 = h2;
            shims[i].w = &env.w;
            return &shims[i];
        }
    abort();
}

/* Opens a CONNECT on a pool connection, outside its callbacks. */
static void open_stream(struct zt_h2conn *h2, struct fx_stream *st, const char *authority,
                        bool flush)
{
    memset(st, 0, sizeof(*st));
    st->used = st->consume = true;
    st->peer = shim(h2);
    st->id = zt_h2conn_connect(h2, authority, NULL, 0, &fx_stream_ops, st);
    if (flush)
        zt_h2conn_flush(h2);
}

/* A request for a connection, recording its callback. */
struct req {
    struct zt_hbone_waiter w; /* first: the callback casts back */
    int calls;
    struct zt_h2conn *h2;
    int err;
    /* Open a CONNECT stream from the callback (as the proxy does). */
    bool open_stream;
    struct fx_stream st;
};

static void on_conn(struct zt_hbone_waiter *w, struct zt_h2conn *h2, int err)
{
    struct req *r = (struct req *)w;
    r->calls++;
    r->h2 = h2;
    r->err = err;
    if (env.close_victim && h2 && !env.victim)
        env.victim = h2;
    if (env.close_victim && err < 0 && env.victim) {
        struct zt_h2conn *v = env.victim;
        env.victim = NULL;
        zt_h2conn_close(v, ZT_E_CLOSED);
    }
    if (r->open_stream && h2)
        open_stream(h2, &r->st, "127.0.0.1:8080", false);
}

static void req_init(struct req *r)
{
    memset(r, 0, sizeof(*r));
    r->w.cb = on_conn;
}

static struct zt_hbone_key key_of(const char *src_id, const char *dst_ids)
{
    struct zt_hbone_key k;
    memset(&k, 0, sizeof(k));
    snprintf(k.src_id, sizeof(k.src_id), "%s", src_id);
    snprintf(k.dst_ids, sizeof(k.dst_ids), "%s", dst_ids);
    struct sockaddr_in *d = (struct sockaddr_in *)&k.dst, *s = (struct sockaddr_in *)&k.src;
    d->sin_family = AF_INET;
    d->sin_port = htons(env.w.port);
    d->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->sin_family = AF_INET;
    s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return k;
}

static struct zt_hbone_pool *setup(unsigned max_streams, uint64_t idle_ms)
{
    memset(&env, 0, sizeof(env));
    memset(shims, 0, sizeof(shims));
    fx_world_init(&env.w);
    struct zt_h2_settings s = env.w.cli_settings;
    return zt_hbone_pool_new(&env.w.loop, &pool_ops, &env, &s, max_streams, idle_ms);
}

/* Frees the pool, lets every close run, and checks the loop can be closed. */
static int teardown(struct zt_hbone_pool *p)
{
    zt_hbone_pool_free(p);
    return fx_world_free(&env.w);
}

/* Gets a connection, waiting if needed; NULL on error. */
static struct zt_h2conn *get_now(struct zt_hbone_pool *p, const struct zt_hbone_key *k,
                                 struct req *r)
{
    struct zt_h2conn *ready = NULL;
    req_init(r);
    if (zt_hbone_pool_get(p, k, &r->w, &ready) < 0)
        return NULL;
    if (ready)
        return ready;
    FX_WAIT(&env.w, r->calls, WAIT_MS);
    return r->calls == 1 && r->err == 0 ? r->h2 : NULL;
}

static void test_reuse_same_key(void)
{
    struct zt_hbone_pool *p = setup(100, 0);
    struct zt_hbone_key k = key_of(CLIENT_ID, SERVER_ID);
    struct req r1, r2;
    struct zt_h2conn *ready = (struct zt_h2conn *)&ready;
    req_init(&r1);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r1.w, &ready), 0);
    CHECK(ready == NULL);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 1);
    FX_WAIT(&env.w, r1.calls, WAIT_MS);
    CHECK_EQ_INT(r1.calls, 1);
    CHECK_EQ_INT(r1.err, 0);
    CHECK(r1.h2 != NULL);
    CHECK_EQ_INT(zt_h2conn_state(r1.h2), ZT_H2_ST_OPEN);
    CHECK_EQ_INT(env.verify_calls, 1);
    /* The server saw our identity. */
    FX_WAIT(&env.w, env.w.srv[0].ready_calls, WAIT_MS);
    CHECK_EQ_STR(env.w.srv[0].peer_id, CLIENT_ID);

    /* Second get: the same connection, at once, no callback, no dial. */
    req_init(&r2);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r2.w, &ready), 0);
    CHECK(ready == r1.h2);
    fx_run_for(&env.w, 50);
    CHECK_EQ_INT(r2.calls, 0);
    CHECK_EQ_INT(env.dials, 1);
    CHECK_EQ_INT(env.w.accepts, 1);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 1);

    /* It carries a CONNECT. */
    struct fx_stream st;
    open_stream(ready, &st, "127.0.0.1:8080", true);
    CHECK(st.id > 0);
    FX_WAIT(&env.w, st.response_calls, WAIT_MS);
    CHECK_EQ_INT(st.status, 200);
    CHECK_EQ_INT(env.w.srv[0].nreq, 1);
    CHECK_EQ_INT(teardown(p), 0);
    CHECK_EQ_INT(st.close_calls, 1);
}

static void test_different_keys(void)
{
    struct zt_hbone_pool *p = setup(100, 0);
    struct zt_hbone_key k1 = key_of(CLIENT_ID, SERVER_ID);
    struct zt_hbone_key k2 = key_of(CLIENT_ID, "spiffe://cluster.local/ns/a/sa/b,"
                                               "spiffe://cluster.local/ns/server-ns/sa/server");
    struct zt_hbone_key k3 = key_of(OTHER_ID, SERVER_ID);
    struct zt_hbone_key k4 = key_of(CLIENT_ID, SERVER_ID);
    ((struct sockaddr_in *)&k4.src)->sin_addr.s_addr = htonl(0x7f000002);
    struct req r1, r2, r3, r4;
    struct zt_h2conn *c1 = get_now(p, &k1, &r1);
    struct zt_h2conn *c2 = get_now(p, &k2, &r2);
    struct zt_h2conn *c3 = get_now(p, &k3, &r3);
    struct zt_h2conn *c4 = get_now(p, &k4, &r4);
    CHECK(c1 && c2 && c3 && c4);
    CHECK(c1 != c2 && c1 != c3 && c2 != c3 && c4 != c1 && c4 != c2 && c4 != c3);
    CHECK_EQ_INT(env.dials, 4);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 4);
    FX_WAIT(&env.w, env.w.accepts == 4 && env.w.srv[2].ready_calls, WAIT_MS);
    CHECK_EQ_INT(env.w.accepts, 4);
    /* The third connection presented the other identity. */
    CHECK_EQ_STR(env.w.srv[2].peer_id, OTHER_ID);
    /* Each key gets its own connection back. */
    struct zt_h2conn *ready = NULL;
    struct req r;
    req_init(&r);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k3, &r.w, &ready), 0);
    CHECK(ready == c3);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k2, &r.w, &ready), 0);
    CHECK(ready == c2);
    CHECK_EQ_INT(env.dials, 4);
    CHECK_EQ_INT(teardown(p), 0);
}

static void test_concurrent_gets_one_dial(void)
{
    struct zt_hbone_pool *p = setup(100, 0);
    struct zt_hbone_key k = key_of(CLIENT_ID, SERVER_ID);
    struct req r[5];
    for (int i = 0; i < 5; i++) {
        struct zt_h2conn *ready = NULL;
        req_init(&r[i]);
        CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r[i].w, &ready), 0);
        CHECK(ready == NULL);
    }
    CHECK_EQ_INT(env.dials, 1);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 1);
    FX_WAIT(&env.w, r[0].calls && r[1].calls && r[2].calls && r[3].calls && r[4].calls, WAIT_MS);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(r[i].calls, 1);
        CHECK_EQ_INT(r[i].err, 0);
        CHECK(r[i].h2 == r[0].h2);
    }
    fx_run_for(&env.w, 50);
    CHECK_EQ_INT(env.dials, 1);
    CHECK_EQ_INT(env.w.accepts, 1);
    CHECK_EQ_INT(env.verify_calls, 1);
    CHECK_EQ_INT(teardown(p), 0);
}

static void test_max_streams(void)
{
    struct zt_hbone_pool *p = setup(2, 0);
    struct zt_hbone_key k = key_of(CLIENT_ID, SERVER_ID);
    struct req r1;
    struct zt_h2conn *a = get_now(p, &k, &r1);
    CHECK(a != NULL);
    struct fx_stream st[3];
    /* One stream: still room. */
    open_stream(a, &st[0], "127.0.0.1:1", false);
    struct zt_h2conn *ready = NULL;
    struct req r2;
    req_init(&r2);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r2.w, &ready), 0);
    CHECK(ready == a);
    /* Two streams: full, so the next get dials a second connection. */
    open_stream(a, &st[1], "127.0.0.1:2", true);
    CHECK_EQ_INT(zt_h2conn_streams(a), 2);
    struct req r3;
    struct zt_h2conn *b = get_now(p, &k, &r3);
    CHECK(b != NULL);
    CHECK(b != a);
    CHECK_EQ_INT(env.dials, 2);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 2);
    FX_WAIT(&env.w, env.w.accepts == 2, WAIT_MS);
    CHECK_EQ_INT(env.w.accepts, 2);
    open_stream(b, &st[2], "127.0.0.1:3", true);
    FX_WAIT(&env.w, st[0].response_calls && st[1].response_calls && st[2].response_calls, WAIT_MS);
    CHECK(st[0].status == 200 && st[1].status == 200 && st[2].status == 200);

    /* Both full: when a stream on the first ends, it has room again. */
    struct fx_stream st3;
    open_stream(b, &st3, "127.0.0.1:4", true);
    CHECK_EQ_INT(zt_h2conn_streams(b), 2);
    zt_h2conn_reset(a, st[0].id);
    zt_h2conn_flush(a);
    FX_WAIT(&env.w, st[0].close_calls, WAIT_MS);
    req_init(&r2);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r2.w, &ready), 0);
    CHECK(ready == a);
    CHECK_EQ_INT(env.dials, 2);
    CHECK_EQ_INT(teardown(p), 0);
}

/* Three waiters on one pending connection with room for two: each opens a
 * stream from its callback; the third is moved to a new connection. */
static void test_waiters_beyond_capacity(void)
{
    struct zt_hbone_pool *p = setup(2, 0);
    struct zt_hbone_key k = key_of(CLIENT_ID, SERVER_ID);
    struct req r[3];
    for (int i = 0; i < 3; i++) {
        struct zt_h2conn *ready = NULL;
        req_init(&r[i]);
        r[i].open_stream = true;
        CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r[i].w, &ready), 0);
        CHECK(ready == NULL);
    }
    CHECK_EQ_INT(env.dials, 1);
    FX_WAIT(&env.w, r[0].calls && r[1].calls && r[2].calls, WAIT_MS);
    int on_first = 0;
    struct zt_h2conn *first = NULL;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(r[i].calls, 1);
        CHECK_EQ_INT(r[i].err, 0);
        CHECK(r[i].st.id > 0);
    }
    /* Two share one connection; the third has its own. */
    first = r[0].h2 == r[1].h2 || r[0].h2 == r[2].h2 ? r[0].h2 : r[1].h2;
    for (int i = 0; i < 3; i++)
        on_first += r[i].h2 == first;
    CHECK_EQ_INT(on_first, 2);
    CHECK_EQ_INT(zt_h2conn_streams(first), 2);
    CHECK_EQ_INT(env.dials, 2);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 2);
    FX_WAIT(&env.w, r[0].st.response_calls && r[1].st.response_calls && r[2].st.response_calls,
            WAIT_MS);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(r[i].st.status, 200);
    CHECK_EQ_INT(teardown(p), 0);
}

/* Requests beyond a new connection's capacity ask the pool again; when that
 * dial fails, the callback of the failed request may close the connection
 * that was just handed out (a requester may close what it holds), which
 * frees the pool's record of it: the pool must not read it afterwards (ASan
 * reports a use after free otherwise). */
static void test_overflow_callback_closes(void)
{
    struct zt_hbone_pool *p = setup(1, 0);
    struct zt_hbone_key k = key_of(CLIENT_ID, SERVER_ID);
    struct req r[3];
    env.dial_err = -ECONNREFUSED;
    env.dials_ok = 1;
    env.close_victim = true;
    for (int i = 0; i < 3; i++) {
        struct zt_h2conn *ready = NULL;
        req_init(&r[i]);
        r[i].open_stream = true; /* the first one fills the connection */
        CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r[i].w, &ready), 0);
        CHECK(ready == NULL);
    }
    FX_WAIT(&env.w, r[0].calls && r[1].calls && r[2].calls, WAIT_MS);
    int ok = 0, refused = 0;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(r[i].calls, 1);
        ok += r[i].err == 0 && r[i].h2 != NULL;
        refused += r[i].err == -ECONNREFUSED && r[i].h2 == NULL;
    }
    CHECK_EQ_INT(ok, 1);
    CHECK_EQ_INT(refused, 2);
    CHECK_EQ_INT(env.dials, 3);
    CHECK(env.victim == NULL); /* it was closed */
    CHECK_EQ_INT(zt_hbone_pool_size(p), 0);
    CHECK_EQ_INT(teardown(p), 0);
}

static void test_verify_error_fails_all_waiters(void)
{
    struct zt_hbone_pool *p = setup(100, 0);
    env.verify_err = ZT_E_IDENTITY;
    struct zt_hbone_key k = key_of(CLIENT_ID, SERVER_ID);
    struct req r[3];
    for (int i = 0; i < 3; i++) {
        struct zt_h2conn *ready = NULL;
        req_init(&r[i]);
        CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r[i].w, &ready), 0);
    }
    FX_WAIT(&env.w, r[0].calls && r[1].calls && r[2].calls, WAIT_MS);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(r[i].calls, 1);
        CHECK_EQ_INT(r[i].err, ZT_E_IDENTITY);
        CHECK(r[i].h2 == NULL);
    }
    CHECK_EQ_INT(env.verify_calls, 1);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 0);
    /* The server side of it goes away too. */
    FX_WAIT(&env.w, env.w.srv[0].closed_calls, WAIT_MS);
    CHECK_EQ_INT(env.w.srv[0].closed_calls, 1);

    /* A server whose identity is not expected fails the same way. */
    env.verify_err = 0;
    struct zt_hbone_key wrong = key_of(CLIENT_ID, "spiffe://cluster.local/ns/x/sa/y");
    struct req r4;
    CHECK(get_now(p, &wrong, &r4) == NULL);
    CHECK_EQ_INT(r4.calls, 1);
    CHECK_EQ_INT(r4.err, ZT_E_IDENTITY);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 0);
    /* And the right one still works. */
    struct req r5;
    CHECK(get_now(p, &k, &r5) != NULL);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 1);
    CHECK_EQ_INT(teardown(p), 0);
}

static void test_dial_and_ctx_errors(void)
{
    struct zt_hbone_pool *p = setup(100, 0);
    struct zt_hbone_key k = key_of(CLIENT_ID, SERVER_ID);
    struct req r;
    struct zt_h2conn *ready = NULL;
    env.dial_err = -ENETUNREACH;
    req_init(&r);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r.w, &ready), -ENETUNREACH);
    CHECK(ready == NULL);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 0);
    fx_run_for(&env.w, 20);
    CHECK_EQ_INT(r.calls, 0);
    env.dial_err = 0;
    struct zt_hbone_key unknown = key_of("spiffe://cluster.local/ns/n/sa/none", SERVER_ID);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &unknown, &r.w, &ready), ZT_E_IDENTITY);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 0);
    CHECK_EQ_INT(r.calls, 0);
    CHECK_EQ_INT(teardown(p), 0);
}

static void test_cancel(void)
{
    struct zt_hbone_pool *p = setup(100, 0);
    struct zt_hbone_key k = key_of(CLIENT_ID, SERVER_ID);
    struct req r[3];
    for (int i = 0; i < 3; i++) {
        struct zt_h2conn *ready = NULL;
        req_init(&r[i]);
        CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r[i].w, &ready), 0);
    }
    zt_hbone_pool_cancel(&r[1].w);
    zt_hbone_pool_cancel(&r[1].w); /* twice is harmless */
    FX_WAIT(&env.w, r[0].calls && r[2].calls, WAIT_MS);
    fx_run_for(&env.w, 50);
    CHECK_EQ_INT(r[0].calls, 1);
    CHECK_EQ_INT(r[2].calls, 1);
    CHECK_EQ_INT(r[1].calls, 0);
    /* Cancelling after the callback ran is a no-op. */
    zt_hbone_pool_cancel(&r[0].w);

    /* Every waiter cancelled, then the dial fails: still no callback. */
    struct zt_hbone_key k2 = key_of(OTHER_ID, SERVER_ID);
    struct req only;
    struct zt_h2conn *ready = NULL;
    env.verify_err = ZT_E_IDENTITY;
    req_init(&only);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k2, &only.w, &ready), 0);
    zt_hbone_pool_cancel(&only.w);
    FX_WAIT(&env.w, zt_hbone_pool_size(p) == 1, WAIT_MS);
    fx_run_for(&env.w, 50);
    CHECK_EQ_INT(only.calls, 0);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 1);
    CHECK_EQ_INT(teardown(p), 0);
}

static void test_goaway_stops_reuse(void)
{
    struct zt_hbone_pool *p = setup(100, 0);
    struct zt_hbone_key k = key_of(CLIENT_ID, SERVER_ID);
    struct req r1;
    struct zt_h2conn *a = get_now(p, &k, &r1);
    CHECK(a != NULL);
    /* A stream keeps the draining connection alive. */
    struct fx_stream st;
    open_stream(a, &st, "127.0.0.1:1", true);
    FX_WAIT(&env.w, st.response_calls, WAIT_MS);
    CHECK_EQ_INT(st.status, 200);
    zt_h2conn_shutdown(env.w.srv[0].h2);
    FX_WAIT(&env.w, zt_h2conn_state(a) == ZT_H2_ST_DRAINING, WAIT_MS);
    CHECK_EQ_INT(zt_h2conn_state(a), ZT_H2_ST_DRAINING);

    struct req r2;
    struct zt_h2conn *b = get_now(p, &k, &r2);
    CHECK(b != NULL);
    CHECK(b != a);
    CHECK_EQ_INT(env.dials, 2);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 2);
    /* Once its stream ends, the drained connection leaves the pool. */
    zt_h2conn_reset(a, st.id);
    zt_h2conn_flush(a);
    FX_WAIT(&env.w, zt_hbone_pool_size(p) == 1, WAIT_MS);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 1);
    struct zt_h2conn *ready = NULL;
    req_init(&r2);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r2.w, &ready), 0);
    CHECK(ready == b);
    CHECK_EQ_INT(teardown(p), 0);
}

/* Drain: a connection with a live stream sends GOAWAY and closes when the
 * stream ends; an idle one closes at once; the pool dials afresh later. */
static void test_drain(void)
{
    struct zt_hbone_pool *p = setup(100, 0);
    struct zt_hbone_key k1 = key_of(CLIENT_ID, SERVER_ID);
    struct zt_hbone_key k2 = key_of(OTHER_ID, SERVER_ID);
    struct req r1, r2;
    struct zt_h2conn *busy = get_now(p, &k1, &r1);
    CHECK(busy != NULL);
    struct fx_stream st;
    open_stream(busy, &st, "127.0.0.1:1", true);
    FX_WAIT(&env.w, st.response_calls, WAIT_MS);
    CHECK_EQ_INT(st.status, 200);
    CHECK(get_now(p, &k2, &r2) != NULL);
    FX_WAIT(&env.w, env.w.accepts == 2 && env.w.srv[1].ready_calls, WAIT_MS);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 2);

    zt_hbone_pool_drain(p);
    FX_WAIT(&env.w, env.w.srv[1].closed_calls && env.w.srv[0].draining_calls, WAIT_MS);
    CHECK_EQ_INT(env.w.srv[1].closed_calls, 1);   /* idle: closed */
    CHECK_EQ_INT(env.w.srv[0].draining_calls, 1); /* busy: GOAWAY seen by the server */
    CHECK_EQ_INT(env.w.srv[0].closed_calls, 0);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 1);
    /* The drained connection is not handed out again. */
    struct req r3;
    struct zt_h2conn *fresh = get_now(p, &k1, &r3);
    CHECK(fresh != NULL && fresh != busy);
    CHECK_EQ_INT(env.dials, 3);
    /* Its stream ends: it closes. */
    zt_h2conn_reset(busy, st.id);
    zt_h2conn_flush(busy);
    FX_WAIT(&env.w, env.w.srv[0].closed_calls, WAIT_MS);
    CHECK_EQ_INT(env.w.srv[0].closed_calls, 1);
    CHECK_EQ_INT(teardown(p), 0);
}

/* A server that closes an idle connection: the pool forgets it. */
static void test_peer_close_removes(void)
{
    struct zt_hbone_pool *p = setup(100, 0);
    struct zt_hbone_key k = key_of(CLIENT_ID, SERVER_ID);
    struct req r1;
    struct zt_h2conn *a = get_now(p, &k, &r1);
    CHECK(a != NULL);
    FX_WAIT(&env.w, env.w.srv[0].ready_calls, WAIT_MS);
    zt_h2conn_close(env.w.srv[0].h2, 0);
    FX_WAIT(&env.w, zt_hbone_pool_size(p) == 0, WAIT_MS);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 0);
    struct req r2;
    struct zt_h2conn *b = get_now(p, &k, &r2);
    CHECK(b != NULL);
    CHECK_EQ_INT(env.dials, 2);
    CHECK_EQ_INT(teardown(p), 0);
}

static void test_idle_sweep(void)
{
    struct zt_hbone_pool *p = setup(100, 200);
    struct zt_hbone_key k = key_of(CLIENT_ID, SERVER_ID);
    struct req r1;
    CHECK(get_now(p, &k, &r1) != NULL);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 1);
    /* The sweep runs at most once a second. */
    FX_WAIT(&env.w, zt_hbone_pool_size(p) == 0, 3000);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 0);
    FX_WAIT(&env.w, env.w.srv[0].closed_calls, WAIT_MS);
    CHECK_EQ_INT(env.w.srv[0].closed_calls, 1);
    CHECK_EQ_INT(teardown(p), 0);
}

/* Free with a live stream and a waiter still dialling: the stream and the
 * waiter hear about it, and nothing is left on the loop. */
static void test_free_closes_everything(void)
{
    struct zt_hbone_pool *p = setup(100, 0);
    struct zt_hbone_key k = key_of(CLIENT_ID, SERVER_ID);
    struct req r1;
    struct zt_h2conn *a = get_now(p, &k, &r1);
    CHECK(a != NULL);
    struct fx_stream st;
    open_stream(a, &st, "127.0.0.1:1", true);
    FX_WAIT(&env.w, st.response_calls, WAIT_MS);
    struct zt_hbone_key k2 = key_of(OTHER_ID, SERVER_ID);
    struct req r2;
    struct zt_h2conn *ready = NULL;
    req_init(&r2);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k2, &r2.w, &ready), 0);
    CHECK(ready == NULL);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 2);
    zt_hbone_pool_free(p);
    CHECK_EQ_INT(st.close_calls, 1);
    CHECK(st.close_err < 0);
    CHECK_EQ_INT(r2.calls, 1);
    CHECK(r2.err < 0);
    CHECK(r2.h2 == NULL);
    CHECK_EQ_INT(fx_world_free(&env.w), 0);

    /* An empty pool frees too. */
    p = setup(100, 0);
    CHECK_EQ_INT(teardown(p), 0);
    zt_hbone_pool_free(NULL);
}

/* The context is not at hand (its certificate is being issued): requests
 * wait on the connection, which dials only once the context arrives, fails
 * them all if it cannot come, and is withdrawn when the pool goes. */
static void test_wait_for_ctx(void)
{
    struct zt_hbone_pool *p = setup(100, 0);
    struct zt_hbone_key k = key_of(CLIENT_ID, SERVER_ID);
    struct req r1, r2;
    struct zt_h2conn *ready = NULL;
    env.ctx_later = true;
    req_init(&r1);
    req_init(&r2);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r1.w, &ready), 0);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r2.w, &ready), 0);
    CHECK(ready == NULL);
    CHECK_EQ_INT(env.ctx_calls, 1);
    CHECK_EQ_INT(env.dials, 0);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 1);
    fx_run_for(&env.w, 20);
    CHECK_EQ_INT(r1.calls + r2.calls, 0);
    /* It arrives: one dial, both requests get the connection. */
    struct zt_hbone_ctx_req *req = env.ctx_req;
    env.ctx_req = NULL;
    zt_hbone_pool_ctx_ready(req, env.w.cctx, 0);
    CHECK_EQ_INT(env.dials, 1);
    FX_WAIT(&env.w, r2.calls, WAIT_MS);
    CHECK_EQ_INT(r1.calls, 1);
    CHECK_EQ_INT(r1.err, 0);
    CHECK(r1.h2 != NULL && r1.h2 == r2.h2);
    CHECK_EQ_INT(teardown(p), 0);

    /* It cannot come: every waiter hears the reason, nothing is dialed. */
    p = setup(100, 0);
    env.ctx_later = true;
    req_init(&r1);
    req_init(&r2);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r1.w, &ready), 0);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r2.w, &ready), 0);
    req = env.ctx_req;
    env.ctx_req = NULL;
    zt_hbone_pool_ctx_ready(req, NULL, ZT_E_TIMEOUT);
    CHECK_EQ_INT(r1.calls, 1);
    CHECK_EQ_INT(r2.calls, 1);
    CHECK_EQ_INT(r1.err, ZT_E_TIMEOUT);
    CHECK(r1.h2 == NULL);
    CHECK_EQ_INT(env.dials, 0);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 0);

    /* Everybody gave up meanwhile: no dial when it comes. */
    req_init(&r1);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r1.w, &ready), 0);
    zt_hbone_pool_cancel(&r1.w);
    req = env.ctx_req;
    env.ctx_req = NULL;
    zt_hbone_pool_ctx_ready(req, env.w.cctx, 0);
    CHECK_EQ_INT(env.dials, 0);
    CHECK_EQ_INT(r1.calls, 0);
    CHECK_EQ_INT(zt_hbone_pool_size(p), 0);

    /* The pool goes first: the request is withdrawn, the waiter told. */
    req_init(&r1);
    CHECK_EQ_INT(zt_hbone_pool_get(p, &k, &r1.w, &ready), 0);
    CHECK(env.ctx_req != NULL);
    zt_hbone_pool_free(p);
    CHECK_EQ_INT(env.ctx_cancels, 1);
    CHECK_EQ_INT(r1.calls, 1);
    CHECK_EQ_INT(r1.err, ZT_E_CLOSED);
    CHECK_EQ_INT(fx_world_free(&env.w), 0);
}

int main(void)
{
    RUN(test_reuse_same_key);
    RUN(test_different_keys);
    RUN(test_concurrent_gets_one_dial);
    RUN(test_max_streams);
    RUN(test_waiters_beyond_capacity);
    RUN(test_overflow_callback_closes);
    RUN(test_verify_error_fails_all_waiters);
    RUN(test_dial_and_ctx_errors);
    RUN(test_cancel);
    RUN(test_goaway_stops_reuse);
    RUN(test_drain);
    RUN(test_peer_close_removes);
    RUN(test_idle_sweep);
    RUN(test_free_closes_everything);
    RUN(test_wait_for_ctx);
    return TEST_REPORT();
}
