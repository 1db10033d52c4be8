/* /config_dump rendering: a small state snapshot and a CA manager with one
 * minted identity, rendered, parsed back with jansson and checked field by
 * field. */
#include "test.h"

#include "admin/config_dump.h"
#include "base/err.h"
#include "tls/fixture.h"
#include "tls/localca.h"

#include <jansson.h>
#include <stdlib.h>
#include <uv.h>

static struct fx_ca fx;
static struct zt_tls_localca *ca;

static struct zt_ip ip(const char *s)
{
    struct zt_ip a;
    memset(&a, 0, sizeof(a));
    if (zt_ip_parse(s, &a) != 0)
        abort();
    return a;
}

static struct zt_state *small_state(void)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);

    struct zt_workload *wl = zt_workload_new();
    wl->uid = zt_state_xstrdup("Kubernetes//Pod/default/web-1");
    wl->name = zt_state_xstrdup("web-1");
    wl->namespace = zt_state_xstrdup("default");
    wl->service_account = zt_state_xstrdup("web");
    wl->node = zt_state_xstrdup("node-a");
    wl->network = zt_state_xstrdup("net1");
    wl->canonical_name = zt_state_xstrdup("web");
    wl->canonical_revision = zt_state_xstrdup("v1");
    wl->workload_name = zt_state_xstrdup("web");
    wl->workload_type = ZT_WL_TYPE_POD;
    wl->protocol = ZT_WL_PROTO_HBONE;
    wl->status = ZT_WL_UNHEALTHY;
    *(struct zt_ip *)zt_state_array_push(&wl->addresses, &wl->n_addresses, sizeof(struct zt_ip)) =
        ip("10.0.0.5");
    struct zt_workload_service *ws =
        zt_state_array_push(&wl->services, &wl->n_services, sizeof(*ws));
    ws->key = zt_state_xstrdup("default/web.default.svc.cluster.local");
    struct zt_port_map *pm = zt_state_array_push(&ws->ports, &ws->n_ports, sizeof(*pm));
    pm->service_port = 80;
    pm->target_port = 8080;
    char **pk = zt_state_array_push(&wl->authorization_policies, &wl->n_authorization_policies,
                                    sizeof(char *));
    *pk = zt_state_xstrdup("default/allow-web");
    wl->locality.region = zt_state_xstrdup("r1");
    wl->locality.zone = zt_state_xstrdup("z1");
    wl->waypoint.kind = ZT_GATEWAY_HOSTNAME;
    wl->waypoint.namespace = zt_state_xstrdup("default");
    wl->waypoint.hostname = zt_state_xstrdup("waypoint.default.svc.cluster.local");
    wl->waypoint.hbone_mtls_port = 15008;
    zt_state_builder_add_workload(b, wl);

    struct zt_service *svc = zt_service_new();
    svc->name = zt_state_xstrdup("web");
    svc->namespace = zt_state_xstrdup("default");
    svc->hostname = zt_state_xstrdup("web.default.svc.cluster.local");
    struct zt_vip *v = zt_state_array_push(&svc->vips, &svc->n_vips, sizeof(*v));
    v->network = zt_state_xstrdup("net1");
    v->ip = ip("10.96.0.10");
    pm = zt_state_array_push(&svc->ports, &svc->n_ports, sizeof(*pm));
    pm->service_port = 80;
    pm->target_port = 8080;
    char **san =
        zt_state_array_push(&svc->subject_alt_names, &svc->n_subject_alt_names, sizeof(char *));
    *san = zt_state_xstrdup("spiffe://cluster.local/ns/default/sa/web");
    svc->has_load_balancing = true;
    svc->lb_mode = ZT_LB_FAILOVER;
    svc->lb_routing[svc->n_lb_routing++] = ZT_LB_SCOPE_REGION;
    svc->lb_routing[svc->n_lb_routing++] = ZT_LB_SCOPE_ZONE;
    zt_state_builder_add_service(b, svc);

    struct zt_policy *p = zt_policy_new();
    p->name = zt_state_xstrdup("allow-web");
    p->namespace = zt_state_xstrdup("default");
    p->scope = ZT_POLICY_NAMESPACE;
    p->action = ZT_POLICY_DENY;
    p->dry_run = true;
    struct zt_policy_rule *rule = zt_state_array_push(&p->rules, &p->n_rules, sizeof(*rule));
    struct zt_policy_clause *cl =
        zt_state_array_push(&rule->clauses, &rule->n_clauses, sizeof(*cl));
    struct zt_policy_match *m = zt_state_array_push(&cl->matches, &cl->n_matches, sizeof(*m));
    struct zt_strmatch *sm = zt_state_array_push(&m->principals.v, &m->principals.n, sizeof(*sm));
    sm->kind = ZT_STRMATCH_PREFIX;
    sm->value = zt_state_xstrdup("cluster.local/ns/prod/");
    sm = zt_state_array_push(&m->namespaces.v, &m->namespaces.n, sizeof(*sm));
    sm->kind = ZT_STRMATCH_PRESENCE;
    uint32_t *port =
        zt_state_array_push(&m->destination_ports.v, &m->destination_ports.n, sizeof(uint32_t));
    *port = 8080;
    struct zt_cidr *cidr =
        zt_state_array_push(&m->source_ips.v, &m->source_ips.n, sizeof(struct zt_cidr));
    if (zt_cidr_parse("10.1.0.0/16", cidr) != 0)
        abort();
    zt_state_builder_add_policy(b, p);

    struct zt_state *s = NULL;
    char err[256];
    if (zt_state_builder_finish(b, &s, err, sizeof(err)) != 0) {
        fprintf(stderr, "finish: %s\n", err);
        abort();
    }
    return s;
}

static const char *sget(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* True if s matches YYYY-MM-DDTHH:MM:SSZ. */
static bool is_rfc3339_utc(const char *s)
{
    const char *shape = "dddd-dd-ddTdd:dd:ddZ";
    if (s == NULL || strlen(s) != strlen(shape))
        return false;
    for (size_t i = 0; shape[i]; i++)
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return false;
    return true;
}

static void test_render_parses_back(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct zt_ca_mgr *mgr = zt_ca_mgr_new(&loop, ca, 3600);
    struct zt_ca_identity *ident = NULL;
    struct zt_spiffe_id id;
    CHECK_EQ_INT(zt_spiffe_make("cluster.local", "default", "web", &id), 0);
    CHECK_EQ_INT(zt_ca_mgr_acquire(mgr, &id, &ident), 0);
    uv_run(&loop, UV_RUN_NOWAIT);

    struct zt_state *st = small_state();
    json_t *config = json_pack("{s:s, s:i}", "proxyMode", "Shared", "adminPort", 15000);
    json_t *wstate = json_pack("{s:{s:s}}", "uid-1", "state", "Up");
    struct zt_config_dump_in in = {
        .state = st, .ca = mgr, .version = "1.2.3", .config = config, .workload_state = wstate};
    char *text = zt_config_dump_render(&in);
    CHECK(text != NULL);
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    free(text);
    CHECK(doc != NULL);

    /* workloads */
    json_t *wls = json_object_get(doc, "workloads");
    CHECK(json_is_array(wls) && json_array_size(wls) == 1);
    json_t *w = json_array_get(wls, 0);
    CHECK_EQ_STR(sget(w, "uid"), "Kubernetes//Pod/default/web-1");
    CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(w, "workloadIps"), 0)),
                 "10.0.0.5");
    CHECK_EQ_STR(sget(w, "protocol"), "HBONE");
    CHECK_EQ_STR(sget(w, "name"), "web-1");
    CHECK_EQ_STR(sget(w, "namespace"), "default");
    CHECK_EQ_STR(sget(w, "serviceAccount"), "web");
    CHECK_EQ_STR(sget(w, "trustDomain"), "cluster.local"); /* builder default */
    CHECK_EQ_STR(sget(w, "clusterId"), "Kubernetes");      /* builder default */
    CHECK_EQ_STR(sget(w, "node"), "node-a");
    CHECK_EQ_STR(sget(w, "network"), "net1");
    CHECK_EQ_STR(sget(w, "canonicalName"), "web");
    CHECK_EQ_STR(sget(w, "canonicalRevision"), "v1");
    CHECK_EQ_STR(sget(w, "workloadType"), "pod");
    CHECK_EQ_STR(sget(w, "status"), "Unhealthy");
    CHECK_EQ_STR(sget(w, "networkMode"), "Standard");
    json_t *ports =
        json_object_get(json_object_get(w, "services"), "default/web.default.svc.cluster.local");
    CHECK_EQ_INT(json_integer_value(json_object_get(ports, "80")), 8080);
    CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(w, "authorizationPolicies"), 0)),
                 "default/allow-web");
    CHECK_EQ_STR(sget(json_object_get(w, "locality"), "zone"), "z1");
    CHECK_EQ_STR(sget(json_object_get(w, "waypoint"), "destination"),
                 "default/waypoint.default.svc.cluster.local");
    CHECK_EQ_INT(
        json_integer_value(json_object_get(json_object_get(w, "waypoint"), "hboneMtlsPort")),
        15008);
    CHECK(json_object_get(w, "networkGateway") == NULL);

    /* services */
    json_t *svcs = json_object_get(doc, "services");
    CHECK(json_is_array(svcs) && json_array_size(svcs) == 1);
    json_t *s = json_array_get(svcs, 0);
    CHECK_EQ_STR(sget(s, "name"), "web");
    CHECK_EQ_STR(sget(s, "hostname"), "web.default.svc.cluster.local");
    CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(s, "vips"), 0)),
                 "net1/10.96.0.10");
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(s, "ports"), "80")), 8080);
    CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(s, "subjectAltNames"), 0)),
                 "spiffe://cluster.local/ns/default/sa/web");
    json_t *lb = json_object_get(s, "loadBalancer");
    CHECK_EQ_STR(sget(lb, "mode"), "Failover");
    CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(lb, "routingPreferences"), 1)),
                 "Zone");
    json_t *ep = json_object_get(json_object_get(s, "endpoints"), "Kubernetes//Pod/default/web-1");
    CHECK(ep != NULL);
    CHECK_EQ_STR(sget(ep, "workloadUid"), "Kubernetes//Pod/default/web-1");

    /* policies: rules -> clauses -> matches */
    json_t *pols = json_object_get(doc, "policies");
    CHECK(json_is_array(pols) && json_array_size(pols) == 1);
    json_t *p = json_array_get(pols, 0);
    CHECK_EQ_STR(sget(p, "name"), "allow-web");
    CHECK_EQ_STR(sget(p, "scope"), "Namespace");
    CHECK_EQ_STR(sget(p, "action"), "Deny");
    CHECK(json_is_true(json_object_get(p, "dryRun")));
    json_t *m =
        json_array_get(json_array_get(json_array_get(json_object_get(p, "rules"), 0), 0), 0);
    CHECK(json_is_object(m));
    CHECK_EQ_STR(sget(json_array_get(json_object_get(m, "principals"), 0), "Prefix"),
                 "cluster.local/ns/prod/");
    CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(m, "namespaces"), 0)),
                 "Presence");
    CHECK_EQ_INT(json_integer_value(json_array_get(json_object_get(m, "destinationPorts"), 0)),
                 8080);
    CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(m, "sourceIps"), 0)),
                 "10.1.0.0/16");
    CHECK_EQ_INT(json_array_size(json_object_get(m, "notPrincipals")), 0);

    /* certificates: the one identity, its chain and roots, parseable PEM */
    json_t *certs = json_object_get(doc, "certificates");
    CHECK(json_is_array(certs) && json_array_size(certs) == 1);
    json_t *c = json_array_get(certs, 0);
    CHECK_EQ_STR(sget(c, "identity"), "spiffe://cluster.local/ns/default/sa/web");
    CHECK_EQ_STR(sget(c, "state"), "Available");
    json_t *chain = json_object_get(c, "certChain");
    CHECK_EQ_INT(json_array_size(chain), 1 + sk_X509_num(ident->cert->intermediates));
    json_t *leaf = json_array_get(chain, 0);
    const char *pem = sget(leaf, "pem");
    CHECK(pem != NULL && strncmp(pem, "-----BEGIN CERTIFICATE-----", 27) == 0);
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    CHECK(x != NULL);
    bool same_leaf = X509_cmp(x, ident->cert->leaf) == 0;
    X509_free(x);
    CHECK(same_leaf);
    CHECK(is_rfc3339_utc(sget(leaf, "validFrom")));
    CHECK(is_rfc3339_utc(sget(leaf, "expirationTime")));
    char want[32];
    CHECK_EQ_STR(sget(leaf, "expirationTime"),
                 zt_config_dump_time(ident->cert->not_after, want, sizeof(want)));
    CHECK(sget(leaf, "serialNumber") != NULL && strlen(sget(leaf, "serialNumber")) > 0);
    CHECK_EQ_INT(json_array_size(json_object_get(c, "rootCerts")), sk_X509_num(ident->cert->roots));

    /* the rest */
    CHECK_EQ_STR(sget(doc, "version"), "1.2.3");
    CHECK_EQ_STR(sget(json_object_get(doc, "config"), "proxyMode"), "Shared");
    CHECK_EQ_STR(sget(json_object_get(json_object_get(doc, "workloadState"), "uid-1"), "state"),
                 "Up");
    CHECK(json_is_object(json_object_get(doc, "staticConfig")));
    CHECK_EQ_INT(json_object_size(json_object_get(doc, "staticConfig")), 0);

    json_decref(doc);
    json_decref(config);
    json_decref(wstate);
    zt_state_unref(st);
    zt_ca_identity_unref(ident);
    zt_ca_mgr_free(mgr);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

static void test_render_empty_inputs(void)
{
    struct zt_config_dump_in in = {0};
    char *text = zt_config_dump_render(&in);
    CHECK(text != NULL);
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    free(text);
    CHECK(doc != NULL);
    const char *arrays[] = {"workloads", "services", "policies", "certificates"};
    for (int i = 0; i < 4; i++) {
        json_t *a = json_object_get(doc, arrays[i]);
        CHECK(json_is_array(a) && json_array_size(a) == 0);
    }
    const char *objects[] = {"workloadState", "config", "staticConfig"};
    for (int i = 0; i < 3; i++)
        CHECK(json_is_object(json_object_get(doc, objects[i])));
    CHECK_EQ_STR(sget(doc, "version"), "");
    json_decref(doc);
}

static void test_time_format(void)
{
    char buf[32];
    CHECK_EQ_STR(zt_config_dump_time(0, buf, sizeof(buf)), "1970-01-01T00:00:00Z");
    CHECK_EQ_STR(zt_config_dump_time(1700000000, buf, sizeof(buf)), "2023-11-14T22:13:20Z");
    CHECK_EQ_STR(zt_config_dump_time(1700000000, buf, 5), "");
}

int main(void)
{
    if (!fx_ca_make(&fx, true) || zt_tls_localca_load(fx.dir, &ca, NULL, 0) != 0) {
        fprintf(stderr, "fixture set-up failed\n");
        return 1;
    }
    RUN(test_render_parses_back);
    RUN(test_render_empty_inputs);
    RUN(test_time_format);
    zt_tls_localca_free(ca);
    fx_ca_free(&fx);
    return TEST_REPORT();
}
