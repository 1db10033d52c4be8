/* Delta ADS engine: requests, ACK/NACK, partial acceptance, reconnect,
 * readiness and backoff, against a fake owner that builds real snapshots. */
#include "base/err.h"
#include "state/state.h"
#include "test.h"
#include "xds/ads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADDR_URL "type.googleapis.com/istio.workload.Address"
#define AUTHZ_URL "type.googleapis.com/istio.security.Authorization"

/* ---------------------------------------------------------------- fake owner */

/* The fake decodes a resource's value as text:
 *   "bad:<reason>"  rejected with <reason>
 *   "add:<uid>"     a workload added (not put) under <uid>, so two of them
 *                   make the snapshot fail
 *   anything else   Address: workload uid=<name>, name=<value>;
 *                   Authorization: policy "<ns>/<name>" from the resource name */
struct fake {
    struct zt_state *last;
    int n_publish, n_ready, n_apply, n_remove;
};

static int fake_apply(void *ud, enum zt_ads_type t, struct zt_state_builder *b,
                      const struct zt_ads_resource *r, char *err, size_t errlen)
{
    struct fake *f = ud;
    char val[128];
    size_t n = r->value_len < sizeof(val) - 1 ? r->value_len : sizeof(val) - 1;
    memcpy(val, r->value, n);
    val[n] = '\0';
    f->n_apply++;
    if (strncmp(val, "bad:", 4) == 0) {
        snprintf(err, errlen, "%s", val + 4);
        return ZT_E_PROTO;
    }
    if (t == ZT_ADS_ADDRESS) {
        struct zt_workload *wl = zt_workload_new();
        wl->namespace = zt_state_xstrdup("ns");
        if (strncmp(val, "add:", 4) == 0) {
            wl->uid = zt_state_xstrdup(val + 4);
            wl->name = zt_state_xstrdup("added");
            zt_state_builder_add_workload(b, wl);
        } else {
            wl->uid = zt_state_xstrdup(r->name);
            wl->name = zt_state_xstrdup(val);
            zt_state_builder_put_workload(b, wl);
        }
        return 0;
    }
    const char *slash = strchr(r->name, '/');
    if (!slash) {
        snprintf(err, errlen, "not ns/name");
        return ZT_E_PROTO;
    }
    struct zt_policy *p = zt_policy_new();
    p->namespace = zt_state_xcalloc((size_t)(slash - r->name) + 1, 1);
    memcpy(p->namespace, r->name, (size_t)(slash - r->name));
    p->name = zt_state_xstrdup(slash + 1);
    p->action = strcmp(val, "deny") == 0 ? ZT_POLICY_DENY : ZT_POLICY_ALLOW;
    zt_state_builder_put_policy(b, p);
    return 0;
}

static void fake_remove(void *ud, enum zt_ads_type t, struct zt_state_builder *b, const char *name)
{
    struct fake *f = ud;
    f->n_remove++;
    if (t == ZT_ADS_ADDRESS)
        zt_state_builder_remove_workload(b, name);
    else
        zt_state_builder_remove_policy(b, name);
}

static void fake_publish(void *ud, struct zt_state *s)
{
    struct fake *f = ud;
    zt_state_unref(f->last);
    f->last = s;
    f->n_publish++;
}

static void fake_ready(void *ud)
{
    struct fake *f = ud;
    f->n_ready++;
}

static const struct zt_ads_ops fake_ops = {
    .apply = fake_apply,
    .remove = fake_remove,
    .publish = fake_publish,
    .ready = fake_ready,
};

static void fake_cleanup(struct fake *f)
{
    zt_state_unref(f->last);
    memset(f, 0, sizeof(*f));
}

/* ---------------------------------------------------------------- helpers */

#define RES(n, v, val)                                                                             \
    {                                                                                              \
        .name = (n), .version = (v), .value = (const uint8_t *)(val), .value_len = strlen(val)     \
    }

/* A copy of one request, so tests can look at it after the next call. */
struct req {
    int type;
    char type_url[128];
    bool include_node;
    bool has_nonce, has_error;
    char nonce[64];
    char error[ZT_ADS_MAX_ERROR];
    size_t n_initial;
    char initial[512]; /* "name=version,..." (first entries only) */
};

static void copy_req(const struct zt_ads_request *in, struct req *out)
{
    memset(out, 0, sizeof(*out));
    out->type = (int)in->type;
    snprintf(out->type_url, sizeof(out->type_url), "%s", in->type_url);
    out->include_node = in->include_node;
    out->has_nonce = in->response_nonce != NULL;
    out->has_error = in->error_message != NULL;
    if (in->response_nonce)
        snprintf(out->nonce, sizeof(out->nonce), "%s", in->response_nonce);
    if (in->error_message)
        snprintf(out->error, sizeof(out->error), "%s", in->error_message);
    out->n_initial = in->n_initial;
    size_t len = 0;
    for (size_t i = 0; i < in->n_initial && len < sizeof(out->initial) - 64; i++)
        len += (size_t)snprintf(out->initial + len, sizeof(out->initial) - len, "%s%s=%s",
                                i ? "," : "", in->initial_names[i], in->initial_versions[i]);
}

/* Pops every queued request into out[]; returns how many. */
static size_t drain(struct zt_ads *a, struct req *out, size_t max)
{
    struct zt_ads_request r;
    size_t n = 0;
    while (zt_ads_next_request(a, &r)) {
        if (n < max)
            copy_req(&r, &out[n]);
        n++;
    }
    return n;
}

static int respond(struct zt_ads *a, const char *type_url, const char *nonce,
                   const struct zt_ads_resource *res, size_t n_res, const char *const *removed,
                   size_t n_removed)
{
    struct zt_ads_response r = {
        .type_url = type_url,
        .nonce = nonce,
        .system_version_info = "",
        .resources = res,
        .n_resources = n_res,
        .removed = removed,
        .n_removed = n_removed,
    };
    return zt_ads_on_response(a, &r);
}

/* Starts a stream and discards the initial requests. */
static struct zt_ads *started(struct fake *f, const struct zt_state *base)
{
    struct req rq[2];
    struct zt_ads *a = zt_ads_new(&fake_ops, f, base);
    zt_ads_stream_started(a);
    drain(a, rq, 2);
    return a;
}

static const char *wl_name(const struct zt_state *s, const char *uid)
{
    const struct zt_workload *wl = s ? zt_state_workload_by_uid(s, uid) : NULL;
    return wl ? wl->name : NULL;
}

/* ---------------------------------------------------------------- tests */

static void test_type_urls(void)
{
    CHECK_EQ_STR(zt_ads_type_url(ZT_ADS_ADDRESS), ADDR_URL);
    CHECK_EQ_STR(zt_ads_type_url(ZT_ADS_AUTHORIZATION), AUTHZ_URL);
    CHECK_EQ_STR(zt_ads_type_url(ZT_ADS_NTYPES), "");
    CHECK_EQ_INT(zt_ads_type_from_url(AUTHZ_URL), ZT_ADS_AUTHORIZATION);
    CHECK_EQ_INT(zt_ads_type_from_url("type.googleapis.com/istio.workload.Workload"),
                 ZT_ADS_NTYPES);
    CHECK_EQ_INT(zt_ads_type_from_url(NULL), ZT_ADS_NTYPES);
    CHECK_EQ_STR(zt_ads_stream_state_str(ZT_ADS_ST_STREAMING), "streaming");
}

static void test_initial_requests(void)
{
    struct fake f = {0};
    struct req rq[4];
    struct zt_ads_request r;
    struct zt_ads *a = zt_ads_new(&fake_ops, &f, NULL);

    CHECK(!zt_ads_next_request(a, &r)); /* no stream yet */
    CHECK_EQ_INT(zt_ads_state(a), ZT_ADS_ST_IDLE);
    zt_ads_stream_started(a);
    CHECK_EQ_INT(zt_ads_state(a), ZT_ADS_ST_STREAMING);
    CHECK_EQ_INT(drain(a, rq, 4), 2);
    CHECK_EQ_INT(rq[0].type, ZT_ADS_ADDRESS);
    CHECK_EQ_STR(rq[0].type_url, ADDR_URL);
    CHECK(rq[0].include_node);
    CHECK(!rq[0].has_nonce && !rq[0].has_error);
    CHECK_EQ_INT(rq[0].n_initial, 0);
    CHECK_EQ_INT(rq[1].type, ZT_ADS_AUTHORIZATION);
    CHECK_EQ_STR(rq[1].type_url, AUTHZ_URL);
    CHECK(rq[1].include_node);
    CHECK(!rq[1].has_nonce && !rq[1].has_error);
    CHECK(!zt_ads_is_ready(a));
    CHECK_EQ_INT(f.n_publish, 0);
    zt_ads_free(a);
    fake_cleanup(&f);
}

static void test_ack_after_good_response(void)
{
    struct fake f = {0};
    struct req rq[4];
    struct zt_ads *a = started(&f, NULL);
    struct zt_ads_resource res[] = {RES("w1", "v1", "one"), RES("w2", "v9", "two")};

    CHECK_EQ_INT(respond(a, ADDR_URL, "n1", res, 2, NULL, 0), 0);
    CHECK_EQ_INT(f.n_publish, 1);
    CHECK_EQ_STR(wl_name(f.last, "w1"), "one");
    CHECK_EQ_STR(wl_name(f.last, "w2"), "two");
    CHECK(zt_ads_snapshot(a) == f.last);
    CHECK_EQ_INT(drain(a, rq, 4), 1);
    CHECK_EQ_INT(rq[0].type, ZT_ADS_ADDRESS);
    CHECK_EQ_STR(rq[0].type_url, ADDR_URL);
    CHECK_EQ_STR(rq[0].nonce, "n1");
    CHECK(!rq[0].has_error);
    CHECK(!rq[0].include_node); /* node went with the initial request */
    CHECK_EQ_INT(rq[0].n_initial, 0);
    CHECK_EQ_INT(zt_ads_resource_count(a, ZT_ADS_ADDRESS), 2);
    CHECK_EQ_INT(zt_ads_resource_count(a, ZT_ADS_AUTHORIZATION), 0);
    CHECK_EQ_STR(zt_ads_resource_version(a, ZT_ADS_ADDRESS, "w2"), "v9");

    /* An update replaces the object and the version. */
    struct zt_ads_resource upd[] = {RES("w1", "v2", "uno")};
    CHECK_EQ_INT(respond(a, ADDR_URL, "n2", upd, 1, NULL, 0), 0);
    CHECK_EQ_STR(wl_name(f.last, "w1"), "uno");
    CHECK_EQ_STR(wl_name(f.last, "w2"), "two");
    CHECK_EQ_STR(zt_ads_resource_version(a, ZT_ADS_ADDRESS, "w1"), "v2");
    CHECK_EQ_INT(drain(a, rq, 4), 1);
    CHECK_EQ_STR(rq[0].nonce, "n2");
    CHECK(!rq[0].has_error);
    zt_ads_free(a);
    fake_cleanup(&f);
}

static void test_nack_partial_acceptance(void)
{
    struct fake f = {0};
    struct req rq[4];
    struct zt_ads *a = started(&f, NULL);
    struct zt_ads_resource res[] = {
        RES("w1", "v1", "one"),
        RES("w2", "v1", "bad:no address"),
        RES("w3", "v1", "three"),
        RES("w4", "v1", "bad:unknown enum value 7"),
    };

    CHECK_EQ_INT(respond(a, ADDR_URL, "n1", res, 4, NULL, 0), 0);
    CHECK_EQ_INT(drain(a, rq, 4), 1);
    CHECK_EQ_STR(rq[0].nonce, "n1");
    CHECK(rq[0].has_error);
    CHECK_EQ_STR(rq[0].error, "w2: no address; w4: unknown enum value 7");
    /* The good ones were still applied and published. */
    CHECK_EQ_INT(f.n_publish, 1);
    CHECK_EQ_STR(wl_name(f.last, "w1"), "one");
    CHECK_EQ_STR(wl_name(f.last, "w3"), "three");
    CHECK(wl_name(f.last, "w2") == NULL);
    CHECK(wl_name(f.last, "w4") == NULL);
    CHECK_EQ_INT(zt_ads_resource_count(a, ZT_ADS_ADDRESS), 2);
    CHECK(zt_ads_resource_version(a, ZT_ADS_ADDRESS, "w2") == NULL);

    /* Nothing good at all: NACK, nothing published. */
    struct zt_ads_resource bad[] = {RES("ns/p", "v1", "bad:no rules")};
    CHECK_EQ_INT(respond(a, AUTHZ_URL, "n2", bad, 1, NULL, 0), 0);
    CHECK_EQ_INT(f.n_publish, 1);
    CHECK_EQ_INT(drain(a, rq, 4), 1);
    CHECK_EQ_INT(rq[0].type, ZT_ADS_AUTHORIZATION);
    CHECK_EQ_STR(rq[0].nonce, "n2");
    CHECK_EQ_STR(rq[0].error, "ns/p: no rules");
    zt_ads_free(a);
    fake_cleanup(&f);
}

static void test_rejected_update_keeps_old_version(void)
{
    struct fake f = {0};
    struct req rq[4];
    struct zt_ads *a = started(&f, NULL);
    struct zt_ads_resource v1[] = {RES("w1", "v1", "one")};
    struct zt_ads_resource v2[] = {RES("w1", "v2", "bad:broken")};

    CHECK_EQ_INT(respond(a, ADDR_URL, "n1", v1, 1, NULL, 0), 0);
    CHECK_EQ_INT(respond(a, ADDR_URL, "n2", v2, 1, NULL, 0), 0);
    CHECK_EQ_INT(drain(a, rq, 4), 2);
    CHECK(!rq[0].has_error);
    CHECK_EQ_STR(rq[1].error, "w1: broken");
    CHECK_EQ_STR(wl_name(zt_ads_snapshot(a), "w1"), "one");
    CHECK_EQ_STR(zt_ads_resource_version(a, ZT_ADS_ADDRESS, "w1"), "v1");

    uint64_t ms;
    zt_ads_stream_ended(a, ZT_ADS_GRPC_UNAVAILABLE, "transport is closing", &ms);
    zt_ads_stream_started(a);
    CHECK_EQ_INT(drain(a, rq, 4), 2);
    CHECK_EQ_STR(rq[0].initial, "w1=v1");
    zt_ads_free(a);
    fake_cleanup(&f);
}

static void test_removal(void)
{
    struct fake f = {0};
    struct req rq[4];
    struct zt_ads *a = started(&f, NULL);
    struct zt_ads_resource wls[] = {RES("w1", "v1", "one"), RES("w2", "v1", "two")};
    struct zt_ads_resource pols[] = {RES("ns/a", "1", "allow"), RES("ns/b", "1", "deny")};
    const char *const rm_wl[] = {"w1", "never-seen"};
    const char *const rm_pol[] = {"ns/b"};

    CHECK_EQ_INT(respond(a, ADDR_URL, "n1", wls, 2, NULL, 0), 0);
    CHECK_EQ_INT(respond(a, AUTHZ_URL, "n2", pols, 2, NULL, 0), 0);
    CHECK(zt_state_policy_by_key(f.last, "ns/b") != NULL);
    CHECK_EQ_INT(zt_state_policy_by_key(f.last, "ns/b")->action, ZT_POLICY_DENY);

    CHECK_EQ_INT(respond(a, ADDR_URL, "n3", NULL, 0, rm_wl, 2), 0);
    CHECK_EQ_INT(f.n_publish, 3);
    CHECK(wl_name(f.last, "w1") == NULL);
    CHECK_EQ_STR(wl_name(f.last, "w2"), "two");
    CHECK_EQ_INT(zt_ads_resource_count(a, ZT_ADS_ADDRESS), 1);
    CHECK(zt_ads_resource_version(a, ZT_ADS_ADDRESS, "w1") == NULL);

    CHECK_EQ_INT(respond(a, AUTHZ_URL, "n4", NULL, 0, rm_pol, 1), 0);
    CHECK(zt_state_policy_by_key(f.last, "ns/b") == NULL);
    CHECK(zt_state_policy_by_key(f.last, "ns/a") != NULL);
    CHECK_EQ_INT(zt_ads_resource_count(a, ZT_ADS_AUTHORIZATION), 1);
    /* Removals are ACKed with their nonce. */
    CHECK_EQ_INT(drain(a, rq, 4), 4);
    CHECK_EQ_STR(rq[2].nonce, "n3");
    CHECK(!rq[2].has_error);
    CHECK_EQ_STR(rq[3].nonce, "n4");
    CHECK_EQ_INT(rq[3].type, ZT_ADS_AUTHORIZATION);

    /* Updated and removed in one response: removed. */
    struct zt_ads_resource w3[] = {RES("w3", "v1", "three")};
    const char *const rm_w3[] = {"w3"};
    CHECK_EQ_INT(respond(a, ADDR_URL, "n5", w3, 1, rm_w3, 1), 0);
    CHECK(wl_name(f.last, "w3") == NULL);
    CHECK(zt_ads_resource_version(a, ZT_ADS_ADDRESS, "w3") == NULL);
    zt_ads_free(a);
    fake_cleanup(&f);
}

static void test_reconnect_initial_versions(void)
{
    struct fake f = {0};
    struct req rq[4];
    struct zt_ads *a = started(&f, NULL);
    struct zt_ads_resource wls[] = {
        RES("w2", "v2", "two"),
        RES("w3", "v3", "bad:rejected"),
        RES("w1", "v1", "one"),
    };
    struct zt_ads_resource pols[] = {RES("ns/p1", "v7", "allow"), RES("nopolicy", "v1", "x")};
    uint64_t ms;

    CHECK_EQ_INT(respond(a, ADDR_URL, "n1", wls, 3, NULL, 0), 0);
    CHECK_EQ_INT(respond(a, AUTHZ_URL, "n2", pols, 2, NULL, 0), 0);
    CHECK_EQ_INT(drain(a, rq, 4), 2);
    CHECK_EQ_STR(rq[1].error, "nopolicy: not ns/name");

    zt_ads_stream_ended(a, ZT_ADS_CONNECT_FAILED, NULL, &ms);
    CHECK_EQ_INT(zt_ads_state(a), ZT_ADS_ST_IDLE);
    CHECK(!zt_ads_next_request(a, &(struct zt_ads_request){0}));
    zt_ads_stream_started(a);
    CHECK_EQ_INT(drain(a, rq, 4), 2);
    CHECK_EQ_INT(rq[0].type, ZT_ADS_ADDRESS);
    CHECK(rq[0].include_node); /* node again on the new stream */
    CHECK(!rq[0].has_nonce && !rq[0].has_error);
    CHECK_EQ_INT(rq[0].n_initial, 2);
    CHECK_EQ_STR(rq[0].initial, "w1=v1,w2=v2"); /* sorted, w3 absent */
    CHECK_EQ_INT(rq[1].type, ZT_ADS_AUTHORIZATION);
    CHECK(rq[1].include_node);
    CHECK_EQ_STR(rq[1].initial, "ns/p1=v7");

    /* Resources and state survive the reconnect; a new stream's response
     * builds on them. */
    struct zt_ads_resource w4[] = {RES("w4", "", "four")};
    CHECK_EQ_INT(respond(a, ADDR_URL, "m1", w4, 1, NULL, 0), 0);
    CHECK_EQ_STR(wl_name(f.last, "w1"), "one");
    CHECK_EQ_STR(wl_name(f.last, "w4"), "four");
    CHECK_EQ_INT(drain(a, rq, 4), 1);
    CHECK(!rq[0].include_node);
    CHECK_EQ_STR(rq[0].nonce, "m1");
    zt_ads_free(a);
    fake_cleanup(&f);
}

static void test_readiness(void)
{
    struct fake f = {0};
    struct req rq[8];
    struct zt_ads *a = started(&f, NULL);
    struct zt_ads_resource w[] = {RES("w1", "v1", "one")};
    struct zt_ads_resource badpol[] = {RES("ns/p", "v1", "allow"), RES("x", "v1", "allow")};
    struct zt_ads_resource pol[] = {RES("ns/q", "v1", "allow")};
    uint64_t ms;

    CHECK_EQ_INT(respond(a, ADDR_URL, "n1", w, 1, NULL, 0), 0);
    CHECK(!zt_ads_is_ready(a));
    /* A NACKed Authorization response does not count, even if parts of it
     * were applied. */
    CHECK_EQ_INT(respond(a, AUTHZ_URL, "n2", badpol, 2, NULL, 0), 0);
    CHECK(zt_state_policy_by_key(f.last, "ns/p") != NULL);
    CHECK(!zt_ads_is_ready(a));
    CHECK_EQ_INT(f.n_ready, 0);
    /* An empty ACKed response counts. */
    CHECK_EQ_INT(respond(a, AUTHZ_URL, "n3", NULL, 0, NULL, 0), 0);
    CHECK(zt_ads_is_ready(a));
    CHECK_EQ_INT(f.n_ready, 1);
    CHECK_EQ_INT(respond(a, AUTHZ_URL, "n4", pol, 1, NULL, 0), 0);
    CHECK_EQ_INT(respond(a, ADDR_URL, "n5", w, 1, NULL, 0), 0);
    CHECK_EQ_INT(f.n_ready, 1);
    CHECK_EQ_INT(drain(a, rq, 8), 5);

    /* Readiness is once per engine, not per stream. */
    zt_ads_stream_ended(a, ZT_ADS_GRPC_UNAVAILABLE, "boom", &ms);
    CHECK(zt_ads_is_ready(a));
    zt_ads_stream_started(a);
    CHECK_EQ_INT(respond(a, ADDR_URL, "m1", w, 1, NULL, 0), 0);
    CHECK_EQ_INT(respond(a, AUTHZ_URL, "m2", pol, 1, NULL, 0), 0);
    CHECK_EQ_INT(f.n_ready, 1);
    zt_ads_free(a);
    fake_cleanup(&f);

    /* Both types ACKed with Authorization first also works. */
    a = started(&f, NULL);
    CHECK_EQ_INT(respond(a, AUTHZ_URL, "n1", NULL, 0, NULL, 0), 0);
    CHECK(!zt_ads_is_ready(a));
    CHECK_EQ_INT(respond(a, ADDR_URL, "n2", NULL, 0, NULL, 0), 0);
    CHECK(zt_ads_is_ready(a));
    CHECK_EQ_INT(f.n_ready, 1);
    CHECK_EQ_INT(f.n_publish, 0); /* nothing changed, nothing published */
    zt_ads_free(a);
    fake_cleanup(&f);
}

static void test_backoff(void)
{
    struct fake f = {0};
    struct zt_ads *a = zt_ads_new(&fake_ops, &f, NULL);
    uint64_t ms = 0, want = 10;
    struct zt_ads_resource w[] = {RES("w1", "v1", "one")};

    /* Connection failures: 10, 20, 40, ... capped at 15 s. */
    for (int i = 0; i < 14; i++) {
        zt_ads_stream_ended(a, ZT_ADS_CONNECT_FAILED, NULL, &ms);
        CHECK_EQ_INT(ms, want);
        want = want * 2 > 15000 ? 15000 : want * 2;
    }
    CHECK_EQ_INT(ms, 15000);
    /* An unexpected gRPC error keeps doubling. */
    zt_ads_stream_started(a);
    zt_ads_stream_ended(a, 13 /* INTERNAL */, "oops", &ms);
    CHECK_EQ_INT(ms, 15000);
    /* UNAVAILABLE without the magic text is not benign. */
    zt_ads_stream_ended(a, ZT_ADS_GRPC_UNAVAILABLE, "connection refused", &ms);
    CHECK_EQ_INT(ms, 15000);

    /* Benign terminations reconnect after 10 ms and reset the doubling. */
    zt_ads_stream_ended(a, ZT_ADS_GRPC_UNAVAILABLE, "error reading: transport is closing", &ms);
    CHECK_EQ_INT(ms, 10);
    zt_ads_stream_ended(a, ZT_ADS_CONNECT_FAILED, NULL, &ms);
    CHECK_EQ_INT(ms, 10);
    zt_ads_stream_ended(a, ZT_ADS_CONNECT_FAILED, NULL, &ms);
    CHECK_EQ_INT(ms, 20);
    zt_ads_stream_ended(a, ZT_ADS_GRPC_UNAVAILABLE, "received prior goaway: code: NO_ERROR", &ms);
    CHECK_EQ_INT(ms, 10);
    const int benign[] = {ZT_ADS_GRPC_OK, ZT_ADS_GRPC_CANCELLED, ZT_ADS_GRPC_UNKNOWN,
                          ZT_ADS_GRPC_DEADLINE_EXCEEDED};
    for (size_t i = 0; i < 4; i++) {
        zt_ads_stream_ended(a, ZT_ADS_CONNECT_FAILED, NULL, &ms);
        zt_ads_stream_ended(a, ZT_ADS_CONNECT_FAILED, NULL, &ms);
        CHECK_EQ_INT(ms, 20);
        zt_ads_stream_ended(a, benign[i], "", &ms);
        CHECK_EQ_INT(ms, 10);
    }

    /* A stream that handled a response resets the doubling. */
    for (int i = 0; i < 5; i++)
        zt_ads_stream_ended(a, ZT_ADS_CONNECT_FAILED, NULL, &ms);
    CHECK_EQ_INT(ms, 160);
    zt_ads_stream_started(a);
    CHECK_EQ_INT(respond(a, ADDR_URL, "n1", w, 1, NULL, 0), 0);
    zt_ads_stream_ended(a, 13, "internal", &ms);
    CHECK_EQ_INT(ms, 10);
    zt_ads_stream_ended(a, ZT_ADS_CONNECT_FAILED, NULL, &ms);
    CHECK_EQ_INT(ms, 20);
    /* A stream whose only response had an unknown type does not. */
    zt_ads_stream_started(a);
    CHECK_EQ_INT(respond(a, "type.googleapis.com/x", "n2", NULL, 0, NULL, 0), ZT_E_PROTO);
    zt_ads_stream_ended(a, 13, "internal", &ms);
    CHECK_EQ_INT(ms, 40);
    zt_ads_free(a);
    fake_cleanup(&f);
}

static void test_unknown_type_url(void)
{
    struct fake f = {0};
    struct req rq[4];
    struct zt_ads *a = started(&f, NULL);
    struct zt_ads_resource w[] = {RES("w1", "v1", "one")};
    const char *url = "type.googleapis.com/istio.workload.Workload";

    CHECK_EQ_INT(respond(a, url, "nx", w, 1, NULL, 0), ZT_E_PROTO);
    CHECK_EQ_INT(f.n_apply, 0);
    CHECK_EQ_INT(f.n_publish, 0);
    CHECK_EQ_INT(drain(a, rq, 4), 1);
    CHECK_EQ_INT(rq[0].type, ZT_ADS_NTYPES);
    CHECK_EQ_STR(rq[0].type_url, url);
    CHECK_EQ_STR(rq[0].nonce, "nx");
    CHECK(!rq[0].include_node);
    CHECK(!rq[0].has_error); /* ACKed and ignored, as Istio's ztunnel does */
    /* NULL type_url and nonce are "" rather than a crash. */
    CHECK_EQ_INT(respond(a, NULL, NULL, NULL, 0, NULL, 0), ZT_E_PROTO);
    CHECK_EQ_INT(drain(a, rq, 4), 1);
    CHECK_EQ_STR(rq[0].type_url, "");
    CHECK_EQ_STR(rq[0].nonce, "");
    CHECK(!zt_ads_is_ready(a));
    zt_ads_free(a);
    fake_cleanup(&f);
}

static void test_duplicates_and_bad_names(void)
{
    struct fake f = {0};
    struct req rq[4];
    struct zt_ads *a = started(&f, NULL);
    char *longname = malloc(ZT_ADS_MAX_NAME + 2);
    memset(longname, 'a', ZT_ADS_MAX_NAME + 1);
    longname[ZT_ADS_MAX_NAME + 1] = '\0';
    struct zt_ads_resource res[] = {
        RES("w1", "v1", "first"),    RES("w1", "v2", "second"), RES("", "v1", "nameless"),
        RES(longname, "v1", "long"), RES("w2", "v1", "two"),
    };

    CHECK_EQ_INT(respond(a, ADDR_URL, "n1", res, 5, NULL, 0), 0);
    free(longname);
    CHECK_EQ_INT(drain(a, rq, 4), 1);
    CHECK_EQ_STR(rq[0].error, "w1: duplicate resource in response; <unnamed>: resource without "
                              "name; <long name>: name too long");
    CHECK_EQ_STR(wl_name(f.last, "w1"), "first");
    CHECK_EQ_STR(wl_name(f.last, "w2"), "two");
    CHECK_EQ_STR(zt_ads_resource_version(a, ZT_ADS_ADDRESS, "w1"), "v1");
    CHECK_EQ_INT(zt_ads_resource_count(a, ZT_ADS_ADDRESS), 2);
    CHECK_EQ_INT(f.n_apply, 2);
    zt_ads_free(a);
    fake_cleanup(&f);
}

static void test_snapshot_failure_rejects_all(void)
{
    struct fake f = {0};
    struct req rq[4];
    struct zt_ads *a = started(&f, NULL);
    struct zt_ads_resource ok[] = {RES("w0", "v1", "zero")};
    /* Two resources adding the same uid: each applies, the snapshot fails. */
    struct zt_ads_resource res[] = {RES("a", "v1", "add:x"), RES("b", "v1", "add:x")};
    const char *const rm[] = {"w0"};

    CHECK_EQ_INT(respond(a, ADDR_URL, "n0", ok, 1, NULL, 0), 0);
    CHECK_EQ_INT(respond(a, ADDR_URL, "n1", res, 2, rm, 1), 0);
    CHECK_EQ_INT(f.n_publish, 1);
    CHECK_EQ_INT(drain(a, rq, 4), 2);
    CHECK(rq[1].has_error);
    CHECK(strncmp(rq[1].error, "snapshot: ", 10) == 0);
    CHECK(strstr(rq[1].error, "\"x\"") != NULL);
    /* Nothing of it took effect, not even the removal. */
    CHECK_EQ_INT(zt_ads_resource_count(a, ZT_ADS_ADDRESS), 1);
    CHECK(zt_ads_resource_version(a, ZT_ADS_ADDRESS, "a") == NULL);
    CHECK_EQ_STR(wl_name(zt_ads_snapshot(a), "w0"), "zero");
    zt_ads_free(a);
    fake_cleanup(&f);
}

static void test_initial_snapshot_is_base(void)
{
    struct fake f = {0};
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    struct zt_workload *wl = zt_workload_new();
    struct zt_state *base = NULL;
    char err[128];

    wl->uid = zt_state_xstrdup("local");
    wl->name = zt_state_xstrdup("from-yaml");
    zt_state_builder_add_workload(b, wl);
    CHECK_EQ_INT(zt_state_builder_finish(b, &base, err, sizeof(err)), 0);

    struct zt_ads *a = started(&f, base);
    zt_state_unref(base); /* the engine keeps its own reference */
    CHECK_EQ_STR(wl_name(zt_ads_snapshot(a), "local"), "from-yaml");
    struct zt_ads_resource w[] = {RES("w1", "v1", "one")};
    CHECK_EQ_INT(respond(a, ADDR_URL, "n1", w, 1, NULL, 0), 0);
    CHECK_EQ_STR(wl_name(f.last, "local"), "from-yaml");
    CHECK_EQ_STR(wl_name(f.last, "w1"), "one");
    /* Removing a name the engine never accepted still reaches the owner. */
    const char *const rm[] = {"local"};
    CHECK_EQ_INT(respond(a, ADDR_URL, "n2", NULL, 0, rm, 1), 0);
    CHECK(wl_name(f.last, "local") == NULL);
    CHECK_EQ_INT(f.n_remove, 1);
    zt_ads_free(a);
    fake_cleanup(&f);
}

static void test_every_request_carries_its_nonce(void)
{
    struct fake f = {0};
    struct req rq[16];
    struct zt_ads *a = started(&f, NULL);
    char nonce[32], name[32];

    /* Several responses before the transport drains: replies keep order. */
    for (int i = 0; i < 10; i++) {
        snprintf(nonce, sizeof(nonce), "nonce-%d", i);
        snprintf(name, sizeof(name), i % 2 ? "ns/p%d" : "w%d", i);
        struct zt_ads_resource r[] = {RES(name, "v", i % 3 == 0 ? "bad:x" : "ok")};
        CHECK_EQ_INT(respond(a, i % 2 ? AUTHZ_URL : ADDR_URL, nonce, r, 1, NULL, 0), 0);
    }
    CHECK_EQ_INT(drain(a, rq, 16), 10);
    for (int i = 0; i < 10; i++) {
        snprintf(nonce, sizeof(nonce), "nonce-%d", i);
        CHECK_EQ_STR(rq[i].nonce, nonce);
        CHECK_EQ_INT(rq[i].type, i % 2 ? ZT_ADS_AUTHORIZATION : ZT_ADS_ADDRESS);
        CHECK_EQ_INT(rq[i].has_error, i % 3 == 0);
        CHECK(!rq[i].include_node);
    }
    /* Pending replies die with the stream; the new stream starts fresh. */
    struct zt_ads_resource r[] = {RES("w1", "v", "ok")};
    CHECK_EQ_INT(respond(a, ADDR_URL, "stale", r, 1, NULL, 0), 0);
    uint64_t ms;
    zt_ads_stream_ended(a, ZT_ADS_GRPC_CANCELLED, NULL, &ms);
    CHECK_EQ_INT(respond(a, ADDR_URL, "late", r, 1, NULL, 0), ZT_E_CLOSED);
    zt_ads_stream_started(a);
    CHECK_EQ_INT(drain(a, rq, 16), 2);
    CHECK(!rq[0].has_nonce && !rq[1].has_nonce);
    zt_ads_free(a);
    fake_cleanup(&f);
}

static void test_queue_cap(void)
{
    struct fake f = {0};
    struct zt_ads *a = zt_ads_new(&fake_ops, &f, NULL);
    int rc = 0, i;

    zt_ads_stream_started(a); /* 2 initial requests queued, never drained */
    for (i = 0; i < ZT_ADS_MAX_PENDING + 5 && rc == 0; i++)
        rc = respond(a, AUTHZ_URL, "n", NULL, 0, NULL, 0);
    CHECK_EQ_INT(rc, ZT_E_TOO_BIG);
    CHECK_EQ_INT(i, ZT_ADS_MAX_PENDING - 2 + 1);
    zt_ads_free(a);
    fake_cleanup(&f);
}

static void test_large_response(void)
{
    enum { N = 20000 };
    struct fake f = {0};
    struct zt_ads *a = started(&f, NULL);
    struct zt_ads_resource *res = calloc(N, sizeof(*res));
    char(*names)[16] = calloc(N, 16);
    char(*vers)[16] = calloc(N, 16);
    const char **rm = calloc(N / 2, sizeof(*rm));
    struct zt_ads_request r;

    for (int i = 0; i < N; i++) {
        snprintf(names[i], 16, "w%05d", i);
        snprintf(vers[i], 16, "v%d", i);
        res[i] = (struct zt_ads_resource)RES(names[i], vers[i], "x");
    }
    CHECK_EQ_INT(respond(a, ADDR_URL, "big", res, N, NULL, 0), 0);
    CHECK(zt_ads_next_request(a, &r));
    CHECK(r.error_message == NULL);
    CHECK_EQ_INT(zt_ads_resource_count(a, ZT_ADS_ADDRESS), N);
    CHECK_EQ_INT(zt_state_workload_count(f.last), N);

    /* Remove the even ones; the map must still find every odd one. */
    for (int i = 0; i < N / 2; i++)
        rm[i] = names[2 * i];
    CHECK_EQ_INT(respond(a, ADDR_URL, "rm", NULL, 0, (const char *const *)rm, N / 2), 0);
    CHECK_EQ_INT(zt_ads_resource_count(a, ZT_ADS_ADDRESS), N / 2);
    CHECK_EQ_INT(zt_state_workload_count(f.last), N / 2);
    for (int i = 0; i < N; i++) {
        const char *v = zt_ads_resource_version(a, ZT_ADS_ADDRESS, names[i]);
        if (i % 2)
            CHECK(v && strcmp(v, vers[i]) == 0);
        else
            CHECK(v == NULL);
    }

    /* Reconnect lists them all, sorted. */
    uint64_t ms;
    zt_ads_stream_ended(a, ZT_ADS_GRPC_DEADLINE_EXCEEDED, NULL, &ms);
    zt_ads_stream_started(a);
    CHECK(zt_ads_next_request(a, &r));
    CHECK_EQ_INT(r.n_initial, N / 2);
    for (size_t i = 0; i < r.n_initial; i++) {
        CHECK_EQ_STR(r.initial_names[i], names[2 * i + 1]);
        CHECK_EQ_STR(r.initial_versions[i], vers[2 * i + 1]);
    }

    /* Thousands of rejects: the NACK message stays capped and says how many
     * it left out. */
    for (int i = 0; i < N; i++) {
        snprintf(names[i], 16, "bad%05d", i);
        res[i] = (struct zt_ads_resource)RES(names[i], "v", "bad:invalid address");
    }
    CHECK_EQ_INT(respond(a, ADDR_URL, "nack", res, N, NULL, 0), 0);
    CHECK(zt_ads_next_request(a, &r)); /* Authorization initial */
    CHECK(zt_ads_next_request(a, &r));
    CHECK_EQ_STR(r.response_nonce, "nack");
    CHECK(r.error_message != NULL);
    size_t len = strlen(r.error_message);
    CHECK(len < ZT_ADS_MAX_ERROR);
    CHECK(len > ZT_ADS_MAX_ERROR - 200);
    CHECK(strncmp(r.error_message, "bad00000: invalid address; bad00001: ", 37) == 0);
    const char *tail = strstr(r.error_message, "; ... (");
    CHECK(tail != NULL);
    size_t listed = 1, omitted = 0;
    for (const char *p = r.error_message; p < tail; p++)
        listed += strncmp(p, "; ", 2) == 0;
    CHECK_EQ_INT(sscanf(tail, "; ... (%zu more)", &omitted), 1);
    CHECK_EQ_INT(listed + omitted, N);
    CHECK_EQ_INT(zt_ads_resource_count(a, ZT_ADS_ADDRESS), N / 2);

    free(res);
    free(names);
    free(vers);
    free(rm);
    zt_ads_free(a);
    fake_cleanup(&f);
}

/* Random updates and removals over a pool of names at high map load: the
 * engine's versions must always match a plain array model. */
static void test_map_churn(void)
{
    enum { POOL = 3000, ROUNDS = 40 };
    struct fake f = {0};
    struct zt_ads *a = started(&f, NULL);
    struct zt_ads_request r;
    static char names[POOL][16], vers[ROUNDS][16];
    static int model[POOL]; /* -1: absent, else round of the version */
    static struct zt_ads_resource res[POOL];
    static const char *rm[POOL];
    unsigned seed = 12345;

    for (int i = 0; i < POOL; i++) {
        snprintf(names[i], sizeof(names[i]), "n%d", i);
        model[i] = -1;
    }
    for (int round = 0; round < ROUNDS; round++) {
        size_t n_res = 0, n_rm = 0;
        snprintf(vers[round], sizeof(vers[round]), "r%d", round);
        for (int i = 0; i < POOL; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned x = (seed >> 16) % 8;
            if (x < 3) {
                res[n_res++] = (struct zt_ads_resource)RES(names[i], vers[round], "x");
                model[i] = round;
            } else if (x < 5) {
                rm[n_rm++] = names[i];
                model[i] = -1;
            }
        }
        CHECK_EQ_INT(respond(a, ADDR_URL, "c", res, n_res, rm, n_rm), 0);
        CHECK(zt_ads_next_request(a, &r));
        CHECK(r.error_message == NULL);
        size_t present = 0;
        for (int i = 0; i < POOL; i++) {
            const char *v = zt_ads_resource_version(a, ZT_ADS_ADDRESS, names[i]);
            if (model[i] < 0) {
                CHECK(v == NULL);
                CHECK(wl_name(f.last, names[i]) == NULL);
            } else {
                CHECK(v && strcmp(v, vers[model[i]]) == 0);
                present++;
            }
        }
        CHECK_EQ_INT(zt_ads_resource_count(a, ZT_ADS_ADDRESS), present);
        CHECK_EQ_INT(zt_state_workload_count(f.last), present);
    }
    zt_ads_free(a);
    fake_cleanup(&f);
}

/* The reason istio_xds_connection_terminations_total gets for each way an
 * attempt ends, matching stream_ended's backoff: ConnectionError and Error
 * back off, Reconnect and Complete do not. */
static void test_end_reasons(void)
{
    static const struct {
        int status;
        const char *message;
        enum zt_ads_end want;
    } cases[] = {
        {ZT_ADS_CONNECT_FAILED, NULL, ZT_ADS_END_CONNECTION_ERROR},
        {ZT_ADS_CONNECT_FAILED, "transport is closing", ZT_ADS_END_CONNECTION_ERROR},
        {ZT_ADS_GRPC_OK, NULL, ZT_ADS_END_COMPLETE},
        {ZT_ADS_GRPC_CANCELLED, "", ZT_ADS_END_RECONNECT},
        {ZT_ADS_GRPC_UNKNOWN, NULL, ZT_ADS_END_RECONNECT},
        {ZT_ADS_GRPC_DEADLINE_EXCEEDED, "x", ZT_ADS_END_RECONNECT},
        {ZT_ADS_GRPC_UNAVAILABLE, "error reading: transport is closing", ZT_ADS_END_RECONNECT},
        {ZT_ADS_GRPC_UNAVAILABLE, "received prior goaway: code: NO_ERROR", ZT_ADS_END_RECONNECT},
        {ZT_ADS_GRPC_UNAVAILABLE, "connection refused", ZT_ADS_END_ERROR},
        {ZT_ADS_GRPC_UNAVAILABLE, NULL, ZT_ADS_END_ERROR},
        {13 /* INTERNAL */, "oops", ZT_ADS_END_ERROR},
        {16 /* UNAUTHENTICATED */, "bad token", ZT_ADS_END_ERROR},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum zt_ads_end got = zt_ads_end_reason(cases[i].status, cases[i].message);
        if (got != cases[i].want)
            fprintf(stderr, "  case %zu: status %d '%s': %s, want %s\n", i, cases[i].status,
                    cases[i].message ? cases[i].message : "(null)", zt_ads_end_str(got),
                    zt_ads_end_str(cases[i].want));
        CHECK_EQ_INT(got, cases[i].want);
    }
    CHECK_EQ_STR(zt_ads_end_str(ZT_ADS_END_CONNECTION_ERROR), "ConnectionError");
    CHECK_EQ_STR(zt_ads_end_str(ZT_ADS_END_ERROR), "Error");
    CHECK_EQ_STR(zt_ads_end_str(ZT_ADS_END_RECONNECT), "Reconnect");
    CHECK_EQ_STR(zt_ads_end_str(ZT_ADS_END_COMPLETE), "Complete");
    CHECK_EQ_STR(zt_ads_end_str((enum zt_ads_end)7), "?");
}

/* istio_xds_message_bytes_total counts the resources' payloads only: not
 * names, versions, removals or the envelope. */
static void test_response_bytes(void)
{
    static const uint8_t v1[] = "abcdef", v2[] = "xyz";
    const struct zt_ads_resource res[] = {
        {.name = "a-long-name", .version = "v1", .value = v1, .value_len = 6},
        {.name = "b", .version = "v2", .value = v2, .value_len = 3},
        {.name = "empty", .version = "v3", .value = NULL, .value_len = 0},
    };
    const char *const removed[] = {"gone"};
    struct zt_ads_response r = {.type_url = ADDR_URL,
                                .nonce = "n1",
                                .resources = res,
                                .n_resources = 3,
                                .removed = removed,
                                .n_removed = 1};
    CHECK_EQ_INT(zt_ads_response_bytes(&r), 9);
    r.n_resources = 0;
    CHECK_EQ_INT(zt_ads_response_bytes(&r), 0);
}

/* ---------------------------------------------------------------- routes */

#define ROUTE_URL "type.googleapis.com/ztunnel.routes.v1.Route"

/* The owner of routes: the last good value per name ("bad:<why>" is
 * refused), and how often the set was reported done. */
struct fake_routes {
    struct fake base;
    char names[4][32], values[4][32];
    int n, n_done;
    bool want_all;
    enum zt_ads_type last_done;
};

static int route_find(struct fake_routes *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->names[i], name) == 0)
            return i;
    return -1;
}

/* Routes only, or (ud's want_all) every kept type. */
static bool fake_wants_kept(void *ud, enum zt_ads_type t)
{
    return t == ZT_ADS_ROUTE || ((struct fake_routes *)ud)->want_all;
}

static int fake_apply_route(void *ud, enum zt_ads_type t, const struct zt_ads_resource *r,
                            char *err, size_t errlen)
{
    struct fake_routes *f = ud;
    char val[32];
    snprintf(val, sizeof(val), "%.*s", (int)r->value_len, (const char *)r->value);
    if (strncmp(val, "bad:", 4) == 0)
        return zt_errf(err, errlen, ZT_E_PROTO, "%s", val + 4);
    int i = route_find(f, r->name);
    if (i < 0 && f->n < 4)
        i = f->n++;
    if (i >= 0) {
        snprintf(f->names[i], sizeof(f->names[i]), "%s", r->name);
        snprintf(f->values[i], sizeof(f->values[i]), "%s", val);
    }
    return 0;
}

static void fake_remove_route(void *ud, enum zt_ads_type t, const char *name)
{
    struct fake_routes *f = ud;
    int i = route_find(f, name);
    if (i < 0)
        return;
    f->n--;
    memcpy(f->names[i], f->names[f->n], sizeof(f->names[i]));
    memcpy(f->values[i], f->values[f->n], sizeof(f->values[i]));
}

static void fake_routes_done(void *ud, enum zt_ads_type t)
{
    ((struct fake_routes *)ud)->n_done++;
    ((struct fake_routes *)ud)->last_done = t;
}

static const struct zt_ads_ops fake_ops_routes = {
    .apply = fake_apply,
    .remove = fake_remove,
    .publish = fake_publish,
    .ready = fake_ready,
    .wants_kept = fake_wants_kept,
    .apply_kept = fake_apply_route,
    .remove_kept = fake_remove_route,
    .kept_done = fake_routes_done,
};

/* Route is subscribed only by an owner that takes routes, after the state
 * types; its resources never touch the snapshot; a bad one is NACKed and the
 * earlier version stays; removal; versions on reconnect; readiness does not
 * wait for routes. */
static void test_routes(void)
{
    struct fake_routes f = {0};
    struct req rq[8];
    struct zt_ads_resource good[] = {RES("HTTPRoute/ns/a", "v1", "A1"),
                                     RES("HTTPRoute/ns/b", "v1", "B1")};
    struct zt_ads_resource bad[] = {RES("HTTPRoute/ns/a", "v2", "bad:rules[0]: nope"),
                                    RES("HTTPRoute/ns/b", "v2", "B2")};
    const char *const gone[] = {"HTTPRoute/ns/b"};
    struct zt_ads *a = zt_ads_new(&fake_ops_routes, &f, NULL);
    uint64_t ms;

    CHECK_EQ_STR(zt_ads_type_url(ZT_ADS_ROUTE), ROUTE_URL);
    zt_ads_stream_started(a);
    CHECK_EQ_INT(drain(a, rq, 8), 3);
    CHECK_EQ_INT(rq[2].type, ZT_ADS_ROUTE);
    CHECK_EQ_STR(rq[2].type_url, ROUTE_URL);
    CHECK(rq[2].include_node);

    CHECK_EQ_INT(respond(a, ROUTE_URL, "r1", good, 2, NULL, 0), 0);
    CHECK_EQ_INT(drain(a, rq, 8), 1);
    CHECK(rq[0].has_nonce && !rq[0].has_error);
    CHECK_EQ_INT(f.n, 2);
    CHECK_EQ_INT(f.n_done, 1);
    CHECK_EQ_INT(f.base.n_publish, 0);
    CHECK(!zt_ads_is_ready(a));

    CHECK_EQ_INT(respond(a, ROUTE_URL, "r2", bad, 2, NULL, 0), 0);
    CHECK_EQ_INT(drain(a, rq, 8), 1);
    CHECK_EQ_STR(rq[0].error, "HTTPRoute/ns/a: rules[0]: nope");
    CHECK_EQ_STR(f.values[route_find(&f, "HTTPRoute/ns/a")], "A1");
    CHECK_EQ_STR(f.values[route_find(&f, "HTTPRoute/ns/b")], "B2");
    CHECK_EQ_STR(zt_ads_resource_version(a, ZT_ADS_ROUTE, "HTTPRoute/ns/a"), "v1");
    CHECK_EQ_INT(f.n_done, 2);

    CHECK_EQ_INT(respond(a, ROUTE_URL, "r3", NULL, 0, gone, 1), 0);
    CHECK_EQ_INT(f.n, 1);
    CHECK_EQ_INT(f.n_done, 3);
    CHECK_EQ_INT(zt_ads_resource_count(a, ZT_ADS_ROUTE), 1);
    /* An empty response changes nothing: no done. */
    CHECK_EQ_INT(respond(a, ROUTE_URL, "r4", NULL, 0, NULL, 0), 0);
    CHECK_EQ_INT(f.n_done, 3);

    /* Ready with the state types alone. */
    CHECK_EQ_INT(respond(a, ADDR_URL, "n1", NULL, 0, NULL, 0), 0);
    CHECK_EQ_INT(respond(a, AUTHZ_URL, "n2", NULL, 0, NULL, 0), 0);
    CHECK(zt_ads_is_ready(a));
    drain(a, rq, 8);

    zt_ads_stream_ended(a, ZT_ADS_GRPC_UNAVAILABLE, "boom", &ms);
    zt_ads_stream_started(a);
    CHECK_EQ_INT(drain(a, rq, 8), 3);
    CHECK_EQ_STR(rq[2].initial, "HTTPRoute/ns/a=v1");
    zt_ads_free(a);
    fake_cleanup(&f.base);

    /* Without route callbacks: not subscribed, and a Route response is
     * treated as a type we do not know (ACKed, nothing applied). */
    struct fake plain = {0};
    a = zt_ads_new(&fake_ops, &plain, NULL);
    zt_ads_stream_started(a);
    CHECK_EQ_INT(drain(a, rq, 8), 2);
    CHECK_EQ_INT(respond(a, ROUTE_URL, "x", good, 2, NULL, 0), ZT_E_PROTO);
    CHECK_EQ_INT(drain(a, rq, 8), 1);
    CHECK(!rq[0].has_error);
    CHECK_EQ_STR(rq[0].type_url, ROUTE_URL);
    zt_ads_free(a);
    fake_cleanup(&plain);
}

/* The policy types (AuthorizationPolicy, RequestAuthentication, RateLimit)
 * are kept types like Route: subscribed after it when the owner wants
 * them, applied and reported done with their type. */
static void test_policy_types(void)
{
    struct fake_routes f = {.want_all = true};
    struct req rq[8];
    struct zt_ads_resource one[] = {RES("ns/p", "v1", "P1")};
    struct zt_ads *a = zt_ads_new(&fake_ops_routes, &f, NULL);

    CHECK_EQ_STR(zt_ads_type_url(ZT_ADS_AUTHZ_POLICY),
                 "type.googleapis.com/ztunnel.policy.v1.AuthorizationPolicy");
    CHECK_EQ_STR(zt_ads_type_url(ZT_ADS_AUTHN_POLICY),
                 "type.googleapis.com/ztunnel.policy.v1.RequestAuthentication");
    CHECK_EQ_STR(zt_ads_type_url(ZT_ADS_RATELIMIT),
                 "type.googleapis.com/ztunnel.policy.v1.RateLimit");
    CHECK_EQ_INT(zt_ads_type_from_url("type.googleapis.com/ztunnel.policy.v1.RateLimit"),
                 ZT_ADS_RATELIMIT);
    zt_ads_stream_started(a);
    CHECK_EQ_INT(drain(a, rq, 8), 6);
    CHECK_EQ_INT(rq[3].type, ZT_ADS_AUTHZ_POLICY);
    CHECK_EQ_INT(rq[4].type, ZT_ADS_AUTHN_POLICY);
    CHECK_EQ_INT(rq[5].type, ZT_ADS_RATELIMIT);
    CHECK(respond(a, zt_ads_type_url(ZT_ADS_AUTHN_POLICY), "n1", one, 1, NULL, 0) == 0);
    CHECK_EQ_INT(drain(a, rq, 8), 1);
    CHECK(rq[0].has_nonce && !rq[0].has_error);
    CHECK_EQ_INT(f.n_done, 1);
    CHECK_EQ_INT(f.last_done, ZT_ADS_AUTHN_POLICY);
    CHECK_EQ_STR(zt_ads_resource_version(a, ZT_ADS_AUTHN_POLICY, "ns/p"), "v1");
    CHECK(zt_ads_resource_version(a, ZT_ADS_AUTHZ_POLICY, "ns/p") == NULL);
    CHECK(respond(a, zt_ads_type_url(ZT_ADS_RATELIMIT), "n2", one, 1, NULL, 0) == 0);
    CHECK_EQ_INT(drain(a, rq, 8), 1);
    CHECK(rq[0].has_nonce && !rq[0].has_error);
    CHECK_EQ_INT(f.n_done, 2);
    CHECK_EQ_INT(f.last_done, ZT_ADS_RATELIMIT);
    CHECK_EQ_STR(zt_ads_resource_version(a, ZT_ADS_RATELIMIT, "ns/p"), "v1");
    zt_ads_free(a);
    fake_cleanup(&f.base);
}

int main(void)
{
    RUN(test_type_urls);
    RUN(test_policy_types);
    RUN(test_initial_requests);
    RUN(test_ack_after_good_response);
    RUN(test_nack_partial_acceptance);
    RUN(test_rejected_update_keeps_old_version);
    RUN(test_removal);
    RUN(test_reconnect_initial_versions);
    RUN(test_readiness);
    RUN(test_backoff);
    RUN(test_unknown_type_url);
    RUN(test_duplicates_and_bad_names);
    RUN(test_snapshot_failure_rejects_all);
    RUN(test_initial_snapshot_is_base);
    RUN(test_every_request_carries_its_nonce);
    RUN(test_queue_cap);
    RUN(test_large_response);
    RUN(test_map_churn);
    RUN(test_end_reasons);
    RUN(test_response_bytes);
    RUN(test_routes);
    return TEST_REPORT();
}
