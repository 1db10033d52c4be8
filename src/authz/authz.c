/* Policy evaluation. See authz.h and wire facts section 6.
 *
 * This file holds the decision and the reference evaluator, which visits
 * every policy of the snapshot: the definition the index (index.c) is
 * tested against. Checks go through the index.
 *
 * Identity parsing here is deliberately lenient: the TLS layer already
 * verified the certificate and its SPIFFE SAN, so we only need to split it.
 * An identity that does not have the ns/<ns>/sa/<sa> shape still matches
 * principals (by string) but has no namespace or service account. */
#include "authz/authz_int.h"

#include "base/err.h"

#include <stdio.h>
#include <string.h>

#define SPIFFE_PREFIX "spiffe://"

void zt_authz_ident_parse(const char *id, struct zt_authz_ident *out)
{
    const char *p, *ns, *sa;
    memset(out, 0, sizeof(*out));
    if (!id)
        return;
    out->present = true;
    p = id;
    if (strncmp(p, SPIFFE_PREFIX, strlen(SPIFFE_PREFIX)) == 0)
        p += strlen(SPIFFE_PREFIX);
    out->principal = p;
    out->principal_len = strlen(p);
    /* td/ns/<ns>/sa/<sa> */
    ns = strstr(p, "/ns/");
    if (!ns)
        return;
    ns += 4;
    sa = strstr(ns, "/sa/");
    if (!sa)
        return;
    out->ns = ns;
    out->ns_len = (size_t)(sa - ns);
    out->sa = sa + 4;
    out->sa_len = strlen(out->sa);
    if (memchr(out->ns, '/', out->ns_len) || strchr(out->sa, '/')) {
        out->ns = out->sa = NULL;
        out->ns_len = out->sa_len = 0;
    }
}

static bool str_match(const struct zt_strmatch *m, const char *v, size_t len)
{
    size_t ml = m->value ? strlen(m->value) : 0;
    switch (m->kind) {
    case ZT_STRMATCH_EXACT:
        return ml == len && memcmp(m->value ? m->value : "", v, len) == 0;
    case ZT_STRMATCH_PREFIX:
        return ml <= len && memcmp(m->value ? m->value : "", v, ml) == 0;
    case ZT_STRMATCH_SUFFIX:
        return ml <= len && memcmp(m->value ? m->value : "", v + len - ml, ml) == 0;
    case ZT_STRMATCH_PRESENCE:
        return len > 0;
    }
    return false;
}

static bool any_str(const struct zt_strmatch_list *l, const char *v, size_t len)
{
    for (size_t i = 0; i < l->n; i++)
        if (str_match(&l->v[i], v, len))
            return true;
    return false;
}

static bool sa_eq(const char *want, const char *have, size_t have_len)
{
    return have && strlen(want ? want : "") == have_len &&
           memcmp(want ? want : "", have, have_len) == 0;
}

static bool any_sa(const struct zt_sa_list *l, const struct zt_authz_ident *id)
{
    if (!id->present || !id->ns)
        return false;
    for (size_t i = 0; i < l->n; i++)
        if (sa_eq(l->v[i].namespace, id->ns, id->ns_len) &&
            sa_eq(l->v[i].service_account, id->sa, id->sa_len))
            return true;
    return false;
}

static bool any_cidr(const struct zt_cidr_list *l, const struct zt_ip *ip)
{
    for (size_t i = 0; i < l->n; i++)
        if (zt_cidr_contains(&l->v[i], ip))
            return true;
    return false;
}

static bool any_port(const struct zt_port_list *l, uint16_t port)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] == port)
            return true;
    return false;
}

static bool match_is_empty(const struct zt_policy_match *m)
{
    return !m->namespaces.n && !m->not_namespaces.n && !m->service_accounts.n &&
           !m->not_service_accounts.n && !m->principals.n && !m->not_principals.n &&
           !m->source_ips.n && !m->not_source_ips.n && !m->destination_ips.n &&
           !m->not_destination_ips.n && !m->destination_ports.n && !m->not_destination_ports.n;
}

/* Positive lists: any element; not_ lists: no element. A field that needs an
 * identity never matches without one, so a not_ list over it passes. */
static bool match_matches(const struct zt_policy_match *m, const struct zt_authz_conn *c,
                          const struct zt_authz_ident *id)
{
    const char *ns = id->ns ? id->ns : "";
    size_t ns_len = id->ns ? id->ns_len : 0;

    if (match_is_empty(m))
        return false;
    if (m->namespaces.n && (!id->present || !any_str(&m->namespaces, ns, ns_len)))
        return false;
    if (m->not_namespaces.n && id->present && any_str(&m->not_namespaces, ns, ns_len))
        return false;
    if (m->service_accounts.n && !any_sa(&m->service_accounts, id))
        return false;
    if (m->not_service_accounts.n && any_sa(&m->not_service_accounts, id))
        return false;
    if (m->principals.n &&
        (!id->present || !any_str(&m->principals, id->principal, id->principal_len)))
        return false;
    if (m->not_principals.n && id->present &&
        any_str(&m->not_principals, id->principal, id->principal_len))
        return false;
    if (m->source_ips.n && !any_cidr(&m->source_ips, &c->src_ip))
        return false;
    if (m->not_source_ips.n && any_cidr(&m->not_source_ips, &c->src_ip))
        return false;
    if (m->destination_ips.n && !any_cidr(&m->destination_ips, &c->dst_ip))
        return false;
    if (m->not_destination_ips.n && any_cidr(&m->not_destination_ips, &c->dst_ip))
        return false;
    if (m->destination_ports.n && !any_port(&m->destination_ports, c->dst_port))
        return false;
    if (m->not_destination_ports.n && any_port(&m->not_destination_ports, c->dst_port))
        return false;
    return true;
}

static bool policy_matches(const struct zt_policy *p, const struct zt_authz_conn *c,
                           const struct zt_authz_ident *id)
{
    for (size_t r = 0; r < p->n_rules; r++) {
        const struct zt_policy_rule *rule = &p->rules[r];
        bool rule_ok = true;
        for (size_t k = 0; k < rule->n_clauses && rule_ok; k++) {
            const struct zt_policy_clause *cl = &rule->clauses[k];
            bool clause_ok = cl->n_matches == 0;
            for (size_t m = 0; m < cl->n_matches && !clause_ok; m++)
                clause_ok = match_matches(&cl->matches[m], c, id);
            rule_ok = clause_ok;
        }
        if (rule_ok)
            return true;
    }
    return false;
}

bool zt_authz_policy_matches(const struct zt_policy *p, const struct zt_authz_conn *conn)
{
    struct zt_authz_ident id;
    zt_authz_ident_parse(conn->src_identity, &id);
    return policy_matches(p, conn, &id);
}

/* Calls fn for each policy applicable to dst_wl, each exactly once: GLOBAL
 * and same-namespace NAMESPACE policies from the scan, then every key the
 * workload lists (normally WORKLOAD_SELECTOR policies) that the scan did not
 * already cover. Unknown keys are skipped. */
typedef bool policy_visit_fn(const struct zt_policy *p, void *ud);

static void for_each_applicable(const struct zt_state *s, const struct zt_workload *wl,
                                policy_visit_fn *fn, void *ud)
{
    size_t n = zt_state_policy_count(s);
    for (size_t i = 0; i < n; i++) {
        const struct zt_policy *p = zt_state_policy_at(s, i);
        if (p->scope == ZT_POLICY_GLOBAL ||
            (p->scope == ZT_POLICY_NAMESPACE && strcmp(p->namespace, wl->namespace) == 0))
            if (!fn(p, ud))
                return;
    }
    for (size_t i = 0; i < wl->n_authorization_policies; i++) {
        const struct zt_policy *p = zt_state_policy_by_key(s, wl->authorization_policies[i]);
        bool dup = false;
        if (!p || p->scope == ZT_POLICY_GLOBAL ||
            (p->scope == ZT_POLICY_NAMESPACE && strcmp(p->namespace, wl->namespace) == 0))
            continue;
        /* The same key listed twice must not be evaluated twice. */
        for (size_t j = 0; j < i && !dup; j++)
            dup = strcmp(wl->authorization_policies[j], wl->authorization_policies[i]) == 0;
        if (!dup && !fn(p, ud))
            return;
    }
}

struct eval {
    const struct zt_authz_conn *conn;
    struct zt_authz_ident id;
    struct zt_authz_result res;
    bool has_allow;
    bool allowed;
};

static bool visit(const struct zt_policy *p, void *ud)
{
    struct eval *e = ud;
    bool m = policy_matches(p, e->conn, &e->id);
    if (p->action == ZT_POLICY_DENY) {
        if (p->dry_run) {
            if (m && !e->res.dry_run_denied_by)
                e->res.dry_run_denied_by = p;
        } else if (m && !e->res.denied_by) {
            e->res.denied_by = p;
        }
    } else if (p->dry_run) {
        e->res.has_dry_run_allow = true;
        if (m)
            e->res.dry_run_allow_matched = true;
    } else {
        e->has_allow = true;
        if (m)
            e->allowed = true;
    }
    return true;
}

/* The decision of section 6 from what an evaluator found. */
static int decide(const struct zt_authz_verdict *v, struct zt_authz_result *res, char *reason,
                  size_t reason_len)
{
    int rc = 0;
    if (reason && reason_len)
        reason[0] = '\0';
    if (v->res.denied_by) {
        if (reason)
            snprintf(reason, reason_len, "explicitly denied by %s", v->res.denied_by->key);
        rc = ZT_E_DENIED;
    } else if (v->has_allow && !v->allowed) {
        if (reason)
            snprintf(reason, reason_len, "allow policies exist, but none allowed");
        rc = ZT_E_DENIED;
    }
    if (res)
        *res = v->res;
    return rc;
}

int zt_authz_check_linear(const struct zt_state *s, const struct zt_workload *dst_wl,
                          const struct zt_authz_conn *conn, struct zt_authz_result *res,
                          char *reason, size_t reason_len)
{
    struct eval e;
    struct zt_authz_verdict v;

    memset(&e, 0, sizeof(e));
    e.conn = conn;
    zt_authz_ident_parse(conn->src_identity, &e.id);
    for_each_applicable(s, dst_wl, visit, &e);
    v = (struct zt_authz_verdict){.res = e.res, .has_allow = e.has_allow, .allowed = e.allowed};
    return decide(&v, res, reason, reason_len);
}

static void *build_index(const struct zt_state *s)
{
    return zt_authz_index_build(s);
}

static void free_index(void *idx)
{
    zt_authz_index_free(idx);
}

const struct zt_authz_index *zt_authz_index_of(const struct zt_state *s)
{
    return zt_state_derived(s, ZT_STATE_DERIVED_AUTHZ, build_index, free_index);
}

void zt_authz_prepare(const struct zt_state *s)
{
    zt_authz_index_of(s);
}

int zt_authz_check_ex(const struct zt_state *s, const struct zt_workload *dst_wl,
                      const struct zt_authz_conn *conn, struct zt_authz_result *res, char *reason,
                      size_t reason_len)
{
    struct zt_authz_ident id;
    struct zt_authz_verdict v;

    zt_authz_ident_parse(conn->src_identity, &id);
    zt_authz_index_eval(zt_authz_index_of(s), dst_wl, conn, &id, res != NULL, &v);
    return decide(&v, res, reason, reason_len);
}

int zt_authz_check(const struct zt_state *s, const struct zt_workload *dst_wl,
                   const struct zt_authz_conn *conn, char *reason, size_t reason_len)
{
    return zt_authz_check_ex(s, dst_wl, conn, NULL, reason, reason_len);
}
