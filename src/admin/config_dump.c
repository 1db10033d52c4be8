#include "admin/config_dump.h"

#include "base/alloc.h"
#include "base/err.h"

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* jansson only fails on allocation; out of memory aborts (STYLE.md). */
static json_t *must(json_t *v)
{
    if (v == NULL)
        abort();
    return v;
}

static void set_new(json_t *obj, const char *key, json_t *v)
{
    if (json_object_set_new(obj, key, must(v)) != 0)
        abort();
}

static void push_new(json_t *arr, json_t *v)
{
    if (json_array_append_new(arr, must(v)) != 0)
        abort();
}

static json_t *str(const char *s)
{
    return must(json_string(s != NULL ? s : ""));
}

char *zt_config_dump_time(time_t t, char *buf, size_t len)
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        if (len > 0)
            buf[0] = '\0';
    }
    return buf;
}

/* ---------------------------------------------------------------- common */

static json_t *ip_json(const struct zt_ip *ip)
{
    char buf[ZT_IP_STRLEN];
    return str(zt_ip_format(ip, buf, sizeof(buf)));
}

/* "network/ip", as Istio prints a network address. */
static json_t *net_ip_json(const char *network, const struct zt_ip *ip)
{
    char buf[ZT_IP_STRLEN];
    char *s = NULL;
    zt_ip_format(ip, buf, sizeof(buf));
    if (asprintf(&s, "%s/%s", network != NULL ? network : "", buf) < 0)
        abort();
    json_t *v = str(s);
    free(s);
    return v;
}

/* {"80": 8080, ...}; a named target port (0) prints as 0. */
static json_t *ports_json(const struct zt_port_map *ports, size_t n)
{
    json_t *o = must(json_object());
    for (size_t i = 0; i < n; i++) {
        char key[8];
        snprintf(key, sizeof(key), "%u", (unsigned)ports[i].service_port);
        set_new(o, key, json_integer(ports[i].target_port));
    }
    return o;
}

static json_t *strv_json(char *const *v, size_t n)
{
    json_t *a = must(json_array());
    for (size_t i = 0; i < n; i++)
        push_new(a, str(v[i]));
    return a;
}

/* A GatewayAddress, or NULL when absent. */
static json_t *gateway_json(const struct zt_gateway *g)
{
    json_t *o;
    switch (g->kind) {
    case ZT_GATEWAY_ADDRESS:
        o = must(json_object());
        set_new(o, "destination", net_ip_json(g->network, &g->ip));
        break;
    case ZT_GATEWAY_HOSTNAME: {
        char *s = NULL;
        if (asprintf(&s, "%s/%s", g->namespace ? g->namespace : "",
                     g->hostname ? g->hostname : "") < 0)
            abort();
        o = must(json_object());
        set_new(o, "destination", str(s));
        free(s);
        break;
    }
    default:
        return NULL;
    }
    set_new(o, "hboneMtlsPort", json_integer(g->hbone_mtls_port));
    return o;
}

static void set_gateway(json_t *obj, const char *key, const struct zt_gateway *g)
{
    json_t *v = gateway_json(g);
    if (v != NULL)
        set_new(obj, key, v);
}

/* ---------------------------------------------------------------- workloads */

static json_t *workload_json(const struct zt_workload *wl)
{
    json_t *o = must(json_object());
    json_t *ips = must(json_array());
    json_t *svcs = must(json_object());

    set_new(o, "uid", str(wl->uid));
    for (size_t i = 0; i < wl->n_addresses; i++)
        push_new(ips, ip_json(&wl->addresses[i]));
    set_new(o, "workloadIps", ips);
    set_gateway(o, "waypoint", &wl->waypoint);
    set_gateway(o, "networkGateway", &wl->network_gateway);
    set_new(o, "protocol", str(zt_workload_protocol_str(wl->protocol)));
    set_new(o, "networkMode",
            str(wl->network_mode == ZT_NETMODE_HOST_NETWORK ? "HostNetwork" : "Standard"));
    set_new(o, "name", str(wl->name));
    set_new(o, "namespace", str(wl->namespace));
    set_new(o, "trustDomain", str(wl->trust_domain));
    set_new(o, "serviceAccount", str(wl->service_account));
    set_new(o, "network", str(wl->network));
    set_new(o, "workloadName", str(wl->workload_name));
    set_new(o, "workloadType", str(zt_workload_type_str(wl->workload_type)));
    set_new(o, "canonicalName", str(wl->canonical_name));
    set_new(o, "canonicalRevision", str(wl->canonical_revision));
    set_new(o, "hostname", str(wl->hostname));
    set_new(o, "node", str(wl->node));
    set_new(o, "clusterId", str(wl->cluster_id));
    set_new(o, "status", str(zt_workload_status_str(wl->status)));
    set_new(o, "nativeTunnel", json_boolean(wl->native_tunnel));
    set_new(o, "authorizationPolicies",
            strv_json(wl->authorization_policies, wl->n_authorization_policies));
    for (size_t i = 0; i < wl->n_services; i++)
        set_new(svcs, wl->services[i].key ? wl->services[i].key : "",
                ports_json(wl->services[i].ports, wl->services[i].n_ports));
    set_new(o, "services", svcs);
    const struct zt_locality *loc = &wl->locality;
    if ((loc->region && *loc->region) || (loc->zone && *loc->zone) ||
        (loc->subzone && *loc->subzone)) {
        json_t *l = must(json_object());
        set_new(l, "region", str(loc->region));
        set_new(l, "zone", str(loc->zone));
        set_new(l, "subzone", str(loc->subzone));
        set_new(o, "locality", l);
    }
    set_new(o, "capacity", json_integer(wl->capacity));
    if (wl->has_application_tunnel) {
        json_t *t = must(json_object());
        set_new(t, "protocol",
                str(wl->application_tunnel_protocol == ZT_APP_TUNNEL_PROXY ? "PROXY" : "NONE"));
        if (wl->application_tunnel_port != 0)
            set_new(t, "port", json_integer(wl->application_tunnel_port));
        set_new(o, "applicationTunnel", t);
    }
    return o;
}

/* ---------------------------------------------------------------- services */

static const char *ip_families_str(enum zt_ip_families f)
{
    switch (f) {
    case ZT_IPF_AUTOMATIC:
        return "Automatic";
    case ZT_IPF_IPV4_ONLY:
        return "IPv4";
    case ZT_IPF_IPV6_ONLY:
        return "IPv6";
    case ZT_IPF_DUAL:
        return "Dual";
    }
    return "unknown";
}

static json_t *service_json(const struct zt_state *st, const struct zt_service *svc)
{
    json_t *o = must(json_object());
    json_t *vips = must(json_array());

    set_new(o, "name", str(svc->name));
    set_new(o, "namespace", str(svc->namespace));
    set_new(o, "hostname", str(svc->hostname));
    for (size_t i = 0; i < svc->n_vips; i++)
        push_new(vips, net_ip_json(svc->vips[i].network, &svc->vips[i].ip));
    set_new(o, "vips", vips);
    if (svc->n_cidr_vips > 0) {
        json_t *cv = must(json_array());
        for (size_t i = 0; i < svc->n_cidr_vips; i++) {
            char buf[ZT_IP_STRLEN + 8], *s = NULL;
            zt_cidr_format(&svc->cidr_vips[i].cidr, buf, sizeof(buf));
            if (asprintf(&s, "%s/%s", svc->cidr_vips[i].network ? svc->cidr_vips[i].network : "",
                         buf) < 0)
                abort();
            push_new(cv, str(s));
            free(s);
        }
        set_new(o, "cidrVips", cv);
    }
    set_new(o, "ports", ports_json(svc->ports, svc->n_ports));

    /* Endpoints keyed by workload uid, with that workload's port map. */
    json_t *eps = must(json_object());
    const struct zt_workload *const *wls = NULL;
    size_t n = st != NULL ? zt_state_service_endpoints(st, svc, &wls) : 0;
    for (size_t i = 0; i < n; i++) {
        const struct zt_workload_service *ws = zt_workload_find_service(wls[i], svc->key);
        json_t *ep = must(json_object());
        set_new(ep, "workloadUid", str(wls[i]->uid));
        set_new(ep, "service", str(svc->key));
        set_new(ep, "port", ws ? ports_json(ws->ports, ws->n_ports) : json_object());
        set_new(eps, wls[i]->uid ? wls[i]->uid : "", ep);
    }
    set_new(o, "endpoints", eps);
    set_new(o, "subjectAltNames", strv_json(svc->subject_alt_names, svc->n_subject_alt_names));
    set_gateway(o, "waypoint", &svc->waypoint);
    if (svc->has_load_balancing) {
        json_t *lb = must(json_object());
        json_t *prefs = must(json_array());
        for (size_t i = 0; i < svc->n_lb_routing && i < ZT_LB_MAX_SCOPES; i++)
            push_new(prefs, str(zt_lb_scope_str(svc->lb_routing[i])));
        set_new(lb, "routingPreferences", prefs);
        set_new(lb, "mode", str(zt_lb_mode_str(svc->lb_mode)));
        set_new(lb, "healthPolicy",
                str(svc->lb_health == ZT_LB_ALLOW_ALL ? "AllowAll" : "OnlyHealthy"));
        set_new(o, "loadBalancer", lb);
    }
    set_new(o, "ipFamilies", str(ip_families_str(svc->ip_families)));
    set_new(o, "canonical", json_boolean(svc->canonical));
    return o;
}

/* ---------------------------------------------------------------- policies */

static json_t *strmatch_list_json(const struct zt_strmatch_list *l)
{
    json_t *a = must(json_array());
    for (size_t i = 0; i < l->n; i++) {
        const struct zt_strmatch *m = &l->v[i];
        const char *kind = NULL;
        switch (m->kind) {
        case ZT_STRMATCH_EXACT:
            kind = "Exact";
            break;
        case ZT_STRMATCH_PREFIX:
            kind = "Prefix";
            break;
        case ZT_STRMATCH_SUFFIX:
            kind = "Suffix";
            break;
        case ZT_STRMATCH_PRESENCE:
            break;
        }
        if (kind == NULL) {
            push_new(a, str("Presence"));
            continue;
        }
        json_t *o = must(json_object());
        set_new(o, kind, str(m->value));
        push_new(a, o);
    }
    return a;
}

static json_t *sa_list_json(const struct zt_sa_list *l)
{
    json_t *a = must(json_array());
    for (size_t i = 0; i < l->n; i++) {
        json_t *o = must(json_object());
        set_new(o, "namespace", str(l->v[i].namespace));
        set_new(o, "serviceAccount", str(l->v[i].service_account));
        push_new(a, o);
    }
    return a;
}

static json_t *cidr_list_json(const struct zt_cidr_list *l)
{
    json_t *a = must(json_array());
    for (size_t i = 0; i < l->n; i++) {
        char buf[ZT_IP_STRLEN + 8];
        push_new(a, str(zt_cidr_format(&l->v[i], buf, sizeof(buf))));
    }
    return a;
}

static json_t *port_list_json(const struct zt_port_list *l)
{
    json_t *a = must(json_array());
    for (size_t i = 0; i < l->n; i++)
        push_new(a, json_integer(l->v[i]));
    return a;
}

static json_t *match_json(const struct zt_policy_match *m)
{
    json_t *o = must(json_object());
    set_new(o, "namespaces", strmatch_list_json(&m->namespaces));
    set_new(o, "notNamespaces", strmatch_list_json(&m->not_namespaces));
    set_new(o, "serviceAccounts", sa_list_json(&m->service_accounts));
    set_new(o, "notServiceAccounts", sa_list_json(&m->not_service_accounts));
    set_new(o, "principals", strmatch_list_json(&m->principals));
    set_new(o, "notPrincipals", strmatch_list_json(&m->not_principals));
    set_new(o, "sourceIps", cidr_list_json(&m->source_ips));
    set_new(o, "notSourceIps", cidr_list_json(&m->not_source_ips));
    set_new(o, "destinationIps", cidr_list_json(&m->destination_ips));
    set_new(o, "notDestinationIps", cidr_list_json(&m->not_destination_ips));
    set_new(o, "destinationPorts", port_list_json(&m->destination_ports));
    set_new(o, "notDestinationPorts", port_list_json(&m->not_destination_ports));
    return o;
}

static json_t *policy_json(const struct zt_policy *p)
{
    json_t *o = must(json_object());
    json_t *rules = must(json_array());

    set_new(o, "name", str(p->name));
    set_new(o, "namespace", str(p->namespace));
    set_new(o, "scope", str(zt_policy_scope_str(p->scope)));
    set_new(o, "action", str(zt_policy_action_str(p->action)));
    set_new(o, "dryRun", json_boolean(p->dry_run));
    /* rules (OR) -> clauses (AND) -> matches (OR). */
    for (size_t r = 0; r < p->n_rules; r++) {
        json_t *clauses = must(json_array());
        for (size_t c = 0; c < p->rules[r].n_clauses; c++) {
            const struct zt_policy_clause *cl = &p->rules[r].clauses[c];
            json_t *matches = must(json_array());
            for (size_t m = 0; m < cl->n_matches; m++)
                push_new(matches, match_json(&cl->matches[m]));
            push_new(clauses, matches);
        }
        push_new(rules, clauses);
    }
    set_new(o, "rules", rules);
    return o;
}

/* ---------------------------------------------------------------- certificates */

struct ident_list {
    struct zt_ca_identity **v;
    enum zt_ca_entry_state *st;
    size_t n, cap;
};

static void on_identity(void *ud, const struct zt_ca_identity *ident, enum zt_ca_entry_state st)
{
    struct ident_list *l = ud;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        l->st = realloc(l->st, l->cap * sizeof(*l->st));
        if (l->v == NULL || l->st == NULL)
            abort();
    }
    /* The reference keeps the identity valid after the mutex is dropped. */
    l->v[l->n] = zt_ca_identity_ref((struct zt_ca_identity *)ident);
    l->st[l->n] = st;
    l->n++;
}

static json_t *x509_json(X509 *x)
{
    json_t *o = must(json_object());
    char tbuf[32];
    time_t t;

    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    if (bio == NULL || !PEM_write_bio_X509(bio, x))
        abort();
    long n = BIO_get_mem_data(bio, &data);
    set_new(o, "pem", json_stringn(data, (size_t)n));
    BIO_free(bio);

    /* Serial number in lowercase hex, no separators. */
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    if (hex != NULL)
        for (char *p = hex; *p; p++)
            if (*p >= 'A' && *p <= 'F')
                *p = (char)(*p - 'A' + 'a');
    set_new(o, "serialNumber", str(hex));
    OPENSSL_free(hex);
    BN_free(bn);

    if (zt_tls_asn1_time_to_time(X509_get0_notBefore(x), &t) == 0)
        set_new(o, "validFrom", str(zt_config_dump_time(t, tbuf, sizeof(tbuf))));
    if (zt_tls_asn1_time_to_time(X509_get0_notAfter(x), &t) == 0)
        set_new(o, "expirationTime", str(zt_config_dump_time(t, tbuf, sizeof(tbuf))));
    return o;
}

static json_t *certificate_json(const struct zt_ca_identity *ident, enum zt_ca_entry_state st,
                                time_t now)
{
    json_t *o = must(json_object());
    char name[ZT_SPIFFE_ID_MAX + 1];
    const struct zt_tls_cert *cert = ident->cert;

    zt_spiffe_format(&ident->id, name, sizeof(name));
    set_new(o, "identity", str(name));
    /* The manager always holds a certificate once an identity is listed;
     * while renewal is retrying the old one is still served until expiry. */
    if (now >= cert->not_after)
        set_new(o, "state",
                str(st == ZT_CA_ENTRY_ST_RETRY ? "Unavailable: certificate expired, renewal failing"
                                               : "Unavailable: certificate expired"));
    else
        set_new(o, "state", str("Available"));
    json_t *chain = must(json_array());
    push_new(chain, x509_json(cert->leaf));
    for (int i = 0; i < sk_X509_num(cert->intermediates); i++)
        push_new(chain, x509_json(sk_X509_value(cert->intermediates, i)));
    set_new(o, "certChain", chain);
    json_t *roots = must(json_array());
    for (int i = 0; i < sk_X509_num(cert->roots); i++)
        push_new(roots, x509_json(sk_X509_value(cert->roots, i)));
    set_new(o, "rootCerts", roots);
    return o;
}

struct pending_item {
    char name[ZT_SPIFFE_ID_MAX + 1];
    int rc;
};

struct pending_list {
    struct pending_item *v;
    size_t n, cap;
};

static void on_pending(void *ud, const struct zt_spiffe_id *id, int last_rc)
{
    struct pending_list *l = ud;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = zt_xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    zt_spiffe_format(id, l->v[l->n].name, sizeof(l->v[l->n].name));
    l->v[l->n].rc = last_rc;
    l->n++;
}

static int cmp_pending(const void *a, const void *b)
{
    return strcmp(((const struct pending_item *)a)->name, ((const struct pending_item *)b)->name);
}

static int cmp_identity(const void *a, const void *b)
{
    const struct zt_ca_identity *x = *(struct zt_ca_identity *const *)a;
    const struct zt_ca_identity *y = *(struct zt_ca_identity *const *)b;
    int c = strcmp(x->id.trust_domain, y->id.trust_domain);
    if (c == 0)
        c = strcmp(x->id.ns, y->id.ns);
    if (c == 0)
        c = strcmp(x->id.sa, y->id.sa);
    return c;
}

static json_t *certificates_json(struct zt_ca_mgr *mgr)
{
    json_t *a = must(json_array());
    struct ident_list l = {0};
    time_t now = time(NULL);

    if (mgr == NULL)
        return a;
    /* Copy out under the manager's mutex, format (PEM, slow-ish) after. */
    zt_ca_mgr_foreach(mgr, on_identity, &l);
    /* Sort the identities and their states together through an index. */
    size_t *idx = zt_xcalloc(l.n ? l.n : 1, sizeof(*idx));
    for (size_t i = 0; i < l.n; i++)
        idx[i] = i;
    for (size_t i = 1; i < l.n; i++) /* insertion sort: few identities per node */
        for (size_t j = i; j > 0 && cmp_identity(&l.v[idx[j - 1]], &l.v[idx[j]]) > 0; j--) {
            size_t t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    for (size_t i = 0; i < l.n; i++)
        push_new(a, certificate_json(l.v[idx[i]], l.st[idx[i]], now));
    /* Then the identities still waiting for their first certificate, as
     * Istio's ztunnel lists them ("Initializing", or "Unavailable: why"). */
    struct pending_list pl = {0};
    zt_ca_mgr_foreach_pending(mgr, on_pending, &pl);
    if (pl.n > 1)
        qsort(pl.v, pl.n, sizeof(*pl.v), cmp_pending);
    for (size_t i = 0; i < pl.n; i++) {
        json_t *o = must(json_object());
        char state[160];
        if (pl.v[i].rc < 0)
            snprintf(state, sizeof(state), "Unavailable: %s", zt_strerror(pl.v[i].rc));
        set_new(o, "identity", str(pl.v[i].name));
        set_new(o, "state", str(pl.v[i].rc < 0 ? state : "Initializing"));
        set_new(o, "certChain", must(json_array()));
        set_new(o, "rootCerts", must(json_array()));
        push_new(a, o);
    }
    free(pl.v);
    for (size_t i = 0; i < l.n; i++)
        zt_ca_identity_unref(l.v[i]);
    free(idx);
    free(l.v);
    free(l.st);
    return a;
}

/* ---------------------------------------------------------------- document */

json_t *zt_config_dump_build(const struct zt_config_dump_in *in)
{
    json_t *doc = must(json_object());
    json_t *wls = must(json_array());
    json_t *svcs = must(json_array());
    json_t *pols = must(json_array());
    const struct zt_state *st = in->state;

    if (st != NULL) {
        for (size_t i = 0; i < zt_state_workload_count(st); i++)
            push_new(wls, workload_json(zt_state_workload_at(st, i)));
        for (size_t i = 0; i < zt_state_service_count(st); i++)
            push_new(svcs, service_json(st, zt_state_service_at(st, i)));
        for (size_t i = 0; i < zt_state_policy_count(st); i++)
            push_new(pols, policy_json(zt_state_policy_at(st, i)));
    }
    set_new(doc, "workloads", wls);
    set_new(doc, "services", svcs);
    set_new(doc, "policies", pols);
    set_new(doc, "certificates", certificates_json(in->ca));
    set_new(doc, "workloadState",
            in->workload_state != NULL ? json_deep_copy(in->workload_state) : json_object());
    set_new(doc, "config", in->config != NULL ? json_deep_copy(in->config) : json_object());
    set_new(doc, "version", str(in->version));
    set_new(doc, "staticConfig", json_object());
    if (in->routes != NULL)
        set_new(doc, "routes", json_incref(in->routes));
    if (in->waypoint != NULL && json_object_update(doc, in->waypoint) < 0)
        abort();
    return doc;
}

char *zt_config_dump_render(const struct zt_config_dump_in *in)
{
    json_t *doc = zt_config_dump_build(in);
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    return s;
}
