/* Fuzzes the DNS proxy's query handling (src/dns/answer.c) against a small
 * mesh: a service with VIPs, a headless one, a wildcard host. Invariants:
 * a reply parses, carries the query's id, and over UDP fits the client's
 * limit; an upstream reply is only ever accepted for the query it answers. */
#include "base/log.h"
#include "dns/dns.h"

#include <ldns/ldns.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct zt_state *state;
static const struct zt_workload *client;

static struct zt_service *svc(const char *name, const char *host, const char *vip)
{
    struct zt_service *v = zt_service_new();
    v->name = zt_state_xstrdup(name);
    v->namespace = zt_state_xstrdup("default");
    v->hostname = zt_state_xstrdup(host);
    if (vip) {
        struct zt_vip *x = zt_state_array_push(&v->vips, &v->n_vips, sizeof(*x));
        x->network = zt_state_xstrdup("");
        zt_ip_parse(vip, &x->ip);
    }
    return v;
}

static struct zt_workload *wl(const char *uid, const char *ip, const char *svc_key)
{
    struct zt_workload *w = zt_workload_new();
    w->uid = zt_state_xstrdup(uid);
    w->name = zt_state_xstrdup(uid);
    w->namespace = zt_state_xstrdup("default");
    struct zt_ip *a = zt_state_array_push(&w->addresses, &w->n_addresses, sizeof(*a));
    zt_ip_parse(ip, a);
    if (svc_key) {
        struct zt_workload_service *s =
            zt_state_array_push(&w->services, &w->n_services, sizeof(*s));
        s->key = zt_state_xstrdup(svc_key);
    }
    return w;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    zt_log_set_level(ZT_LOG_ERROR);
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    zt_state_builder_add_service(b, svc("echo", "echo.default.svc.cluster.local", "10.96.0.1"));
    zt_state_builder_add_service(b, svc("db", "db.default.svc.cluster.local", NULL));
    zt_state_builder_add_service(b, svc("wild", "*.example.com", "240.240.0.1"));
    zt_state_builder_add_workload(b, wl("app", "10.0.0.1", NULL));
    zt_state_builder_add_workload(b,
                                  wl("db-0", "10.0.1.1", "default/db.default.svc.cluster.local"));
    char err[256];
    if (zt_state_builder_finish(b, &state, err, sizeof(err)) != 0)
        abort();
    client = zt_state_workload_by_uid(state, "app");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct zt_dns_opts opts = {.cluster_domain = "cluster.local",
                                            .ipv6_enabled = true};
    for (int udp = 0; udp < 2; udp++) {
        uint8_t *out = NULL;
        size_t len = 0;
        struct zt_dns_query q;
        enum zt_dns_verdict v =
            zt_dns_answer(state, client, &opts, data, size, udp, 7, &out, &len, &q);
        if (v == ZT_DNS_ANSWER) {
            ldns_pkt *p = NULL;
            if (!out || ldns_wire2pkt(&p, out, len) != LDNS_STATUS_OK)
                __builtin_trap();
            if (ldns_pkt_id(p) != ldns_read_uint16(data) || !ldns_pkt_qr(p))
                __builtin_trap();
            if (udp && len > q.max_udp && len > ZT_DNS_UDP_MIN)
                __builtin_trap();
            ldns_pkt_free(p);
        } else if (out) {
            __builtin_trap();
        }
        free(out);
    }
    /* The input as an upstream's reply to a fixed query. */
    static const uint8_t query[] = {0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00,
                                    0x00, 0x00, 0x00, 0x00, 0x04, 't',  'e',  's',
                                    't',  0x00, 0x00, 0x01, 0x00, 0x01};
    bool tc;
    if (zt_dns_reply_matches(query, sizeof(query), data, size, &tc) == 0) {
        size_t len = 0;
        uint8_t *out = zt_dns_reply_for_client(data, size, 0x5678, 512, &len);
        ldns_pkt *p = NULL;
        if (!out || len > 512 || ldns_wire2pkt(&p, out, len) != LDNS_STATUS_OK ||
            ldns_pkt_id(p) != 0x5678)
            __builtin_trap();
        ldns_pkt_free(p);
        free(out);
    }
    return 0;
}
