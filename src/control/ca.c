/* The CA side of `ztunnel control`: IstioCertificateService/CreateCertificate
 * (wire facts §4). A unary call: one IstioCertificateRequest in, one
 * IstioCertificateResponse (leaf, intermediates, trust bundle) or a status
 * out. The caller is a node (its bearer token); it may obtain the identity
 * of a workload only when the configuration places that workload on its
 * node. */
#include "control/control_int.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "proto/ca.pb-c.h"
#include "tls/csr.h"
#include "tls/spiffe.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A PEM CSR is about 500 bytes; RSA 8192 about 4 KiB. */
#define MAX_REQUEST (64u * 1024)

struct ca_call {
    struct zt_control *cp;
    struct zt_grpc_scall *call;
    char node[ZT_CONTROL_NODE_MAX + 1];
    char peer[64];
    uint8_t *req;
    size_t req_len;
    unsigned n_messages;
    bool answered;
};

static void refuse(struct ca_call *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void refuse(struct ca_call *c, int status, const char *fmt, ...)
{
    struct zt_control_counters *n = &c->cp->n;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    atomic_uint_fast64_t *which = status == ZT_GRPC_PERMISSION_DENIED ? &n->unauthorized
                                  : status == ZT_GRPC_INTERNAL        ? &n->sign_errors
                                                                      : &n->bad_csr;
    atomic_fetch_add_explicit(which, 1, memory_order_relaxed);
    ZT_WARN("control", "certificate refused to node %s (%s): %s", c->node, c->peer, msg);
    c->answered = true;
    zt_grpc_scall_finish(c->call, status, msg);
}

/* The ImpersonatedIdentity string of the request metadata, or NULL (and
 * *bad set when the field is there but is not a string). */
static const char *impersonated(const Istio__V1__Auth__IstioCertificateRequest *m, bool *bad)
{
    *bad = false;
    if (!m->metadata)
        return NULL;
    for (size_t i = 0; i < m->metadata->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *f = m->metadata->fields[i];
        if (!f->key || strcmp(f->key, "ImpersonatedIdentity") != 0)
            continue;
        if (!f->value || f->value->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE) {
            *bad = true;
            return NULL;
        }
        return f->value->string_value;
    }
    return NULL;
}

/* True if a workload of identity `want` runs on `node`. */
static bool node_has_identity(const struct zt_state *s, const char *node, const char *want)
{
    char buf[ZT_SPIFFE_ID_MAX + 1];
    size_t n = zt_state_workload_count(s);
    for (size_t i = 0; i < n; i++) {
        const struct zt_workload *wl = zt_state_workload_at(s, i);
        if (!wl->node || strcmp(wl->node, node) != 0)
            continue;
        if (zt_workload_identity(wl, buf, sizeof(buf)) == 0 && strcmp(buf, want) == 0)
            return true;
    }
    return false;
}

static void answer(struct ca_call *c)
{
    struct zt_control *cp = c->cp;
    Istio__V1__Auth__IstioCertificateRequest *m =
        istio__v1__auth__istio_certificate_request__unpack(NULL, c->req_len, c->req);
    if (!m) {
        refuse(c, ZT_GRPC_INVALID_ARGUMENT, "undecodable IstioCertificateRequest");
        return;
    }
    char err[256] = "", want[ZT_SPIFFE_ID_MAX + 1];
    struct zt_spiffe_id id;
    EVP_PKEY *key = NULL;
    char **chain = NULL;
    size_t n_chain = 0;
    bool bad_meta;
    const char *imp = impersonated(m, &bad_meta);
    const char *csr = m->csr ? m->csr : "";
    int rc = zt_tls_csr_parse(csr, strlen(csr), &id, &key, err, sizeof(err));
    EVP_PKEY_free(key);
    if (rc < 0) {
        refuse(c, ZT_GRPC_INVALID_ARGUMENT, "bad CSR: %s", err[0] ? err : zt_strerror(rc));
        goto out;
    }
    zt_spiffe_format(&id, want, sizeof(want));
    if (bad_meta) {
        refuse(c, ZT_GRPC_INVALID_ARGUMENT, "metadata ImpersonatedIdentity is not a string");
        goto out;
    }
    if (imp && strcmp(imp, want) != 0) {
        refuse(c, ZT_GRPC_INVALID_ARGUMENT,
               "ImpersonatedIdentity %.256s does not match the CSR's identity %s", imp, want);
        goto out;
    }
    if (!node_has_identity(cp->state, c->node, want)) {
        refuse(c, ZT_GRPC_PERMISSION_DENIED, "no workload with identity %s runs on node %s", want,
               c->node);
        goto out;
    }
    unsigned ttl = cp->ttl_default;
    if (m->validity_duration > 0)
        ttl = m->validity_duration > (int64_t)cp->ttl_max ? cp->ttl_max
                                                          : (unsigned)m->validity_duration;
    rc = zt_tls_localca_sign_csr(cp->ca, csr, strlen(csr), ttl, &chain, &n_chain, err, sizeof(err));
    if (rc < 0) {
        refuse(c, ZT_GRPC_INTERNAL, "signing failed: %s", err[0] ? err : zt_strerror(rc));
        goto out;
    }
    Istio__V1__Auth__IstioCertificateResponse resp =
        ISTIO__V1__AUTH__ISTIO_CERTIFICATE_RESPONSE__INIT;
    resp.n_cert_chain = n_chain;
    resp.cert_chain = chain;
    size_t len = istio__v1__auth__istio_certificate_response__get_packed_size(&resp);
    uint8_t *buf = zt_xmalloc(len ? len : 1);
    istio__v1__auth__istio_certificate_response__pack(&resp, buf);
    zt_grpc_scall_send(c->call, buf, len);
    free(buf);
    ZT_CONTROL_INC(cp->n.issued);
    ZT_INFO("control", "issued %s to node %s (%s) for %us", want, c->node, c->peer, ttl);
    c->answered = true;
    zt_grpc_scall_finish(c->call, ZT_GRPC_OK, NULL);
out:
    zt_tls_pem_list_free(chain, n_chain);
    istio__v1__auth__istio_certificate_request__free_unpacked(m, NULL);
}

static void on_message(void *ud, struct zt_grpc_scall *call, const uint8_t *msg, size_t len)
{
    struct ca_call *c = ud;
    if (c->answered)
        return;
    if (++c->n_messages > 1) {
        refuse(c, ZT_GRPC_INVALID_ARGUMENT, "CreateCertificate takes one request message");
        return;
    }
    c->req = zt_xmalloc(len ? len : 1);
    memcpy(c->req, msg, len);
    c->req_len = len;
}

static void on_half_close(void *ud, struct zt_grpc_scall *call)
{
    struct ca_call *c = ud;
    if (c->answered)
        return;
    if (c->n_messages == 0) {
        refuse(c, ZT_GRPC_INVALID_ARGUMENT, "no request message");
        return;
    }
    answer(c);
}

static void on_close(void *ud, struct zt_grpc_scall *call)
{
    struct ca_call *c = ud;
    free(c->req);
    free(c);
}

static const struct zt_grpc_scall_ops ca_ops = {
    .on_message = on_message,
    .on_half_close = on_half_close,
    .on_close = on_close,
};

void zt_control_ca_accept(struct zt_control *cp, struct zt_control_conn *conn, int32_t sid,
                          const char *node)
{
    struct ca_call *c = zt_xcalloc(1, sizeof(*c));
    c->cp = cp;
    snprintf(c->node, sizeof(c->node), "%s", node);
    snprintf(c->peer, sizeof(c->peer), "%s", conn->peer);
    ZT_CONTROL_INC(cp->n.csr);
    c->call = zt_grpc_scall_accept(conn->h2, sid, MAX_REQUEST, &ca_ops, c);
    if (!c->call)
        free(c);
}
