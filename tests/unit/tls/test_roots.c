/* Control-plane roots that follow their file (XDS_ROOT_CA, CA_ROOT_CA
 * rotation): a changed file gives new connections new roots, a refused
 * file keeps the last good ones, an unchanged one is not re-read. */
#include "test.h"

#include "base/err.h"
#include "tls/ctx.h"
#include "tls/fixture.h"
#include "tls/localca.h"
#include "tls/roots.h"

#include <sys/stat.h>

static struct fx_ca fx, fx_other;
static struct zt_tls_localca *ca;
static char dir[64], file[128];

static const char *const dns[] = {"istiod.test"};

/* Replaces the file the way a ConfigMap update does: a new file renamed
 * over the old one. */
static bool put_file(const char *text)
{
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", file);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok && rename(tmp, file) == 0;
}

static bool put_root(X509 *root)
{
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", file);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return false;
    bool ok = PEM_write_X509(f, root);
    return fclose(f) == 0 && ok && rename(tmp, file) == 0;
}

static void setup_host(SSL *ssl)
{
    if (zt_tls_expect_host(ssl, "istiod.test") != 0)
        abort();
}

/* Whether a new connection made with r's current context reaches the
 * control server whose certificate fx's CA signed. */
static bool connects(struct zt_tls_roots *r)
{
    struct zt_tls_cert *sc = NULL;
    char err[128];
    if (zt_tls_localca_mint_server(ca, dns, 1, NULL, 0, 600, &sc) != 0)
        abort();
    SSL_CTX *sctx = zt_tls_control_server_ctx_new(sc, err, sizeof(err));
    if (sctx == NULL)
        abort();
    struct fx_conn conn;
    fx_handshake(zt_tls_roots_ctx(r), sctx, setup_host, &conn);
    bool ok = conn.c_res == FX_HS_DONE;
    fx_conn_free(&conn);
    SSL_CTX_free(sctx);
    zt_tls_cert_unref(sc);
    return ok;
}

static void test_follows_file(void)
{
    struct zt_tls_roots *r = NULL;
    char err[256] = "";
    CHECK(put_root(fx_other.root));
    CHECK_EQ_INT(zt_tls_roots_new(file, &r, err, sizeof(err)), 0);
    /* Negative control: roots that did not sign the server. */
    CHECK(!connects(r));
    CHECK_EQ_INT(zt_tls_roots_refresh(r, err, sizeof(err)), 0); /* unchanged */
    CHECK(!connects(r));

    /* Rotation: the mesh root replaces the file. */
    CHECK(put_root(fx.root));
    CHECK_EQ_INT(zt_tls_roots_refresh(r, err, sizeof(err)), 1);
    CHECK(connects(r));
    CHECK_EQ_INT(zt_tls_roots_refresh(r, err, sizeof(err)), 0);

    /* Rewritten with the same content: nothing to do. */
    SSL_CTX *before = zt_tls_roots_ctx(r);
    CHECK(put_root(fx.root));
    CHECK_EQ_INT(zt_tls_roots_refresh(r, err, sizeof(err)), 0);
    CHECK(zt_tls_roots_ctx(r) == before);

    /* A damaged file is refused once, the last good roots stay. */
    CHECK(put_file("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"));
    err[0] = 0;
    CHECK(zt_tls_roots_refresh(r, err, sizeof(err)) < 0);
    CHECK(strstr(err, file) != NULL);
    CHECK(zt_tls_roots_ctx(r) == before);
    CHECK(connects(r));
    CHECK_EQ_INT(zt_tls_roots_refresh(r, err, sizeof(err)), 0);

    /* No certificate at all: refused. */
    CHECK(put_file("just text\n"));
    CHECK(zt_tls_roots_refresh(r, err, sizeof(err)) < 0);
    CHECK(connects(r));

    /* Gone (a ConfigMap being swapped): refused once, roots stay. */
    CHECK_EQ_INT(unlink(file), 0);
    err[0] = 0;
    CHECK_EQ_INT(zt_tls_roots_refresh(r, err, sizeof(err)), -ENOENT);
    CHECK(strstr(err, file) != NULL);
    CHECK_EQ_INT(zt_tls_roots_refresh(r, err, sizeof(err)), 0);
    CHECK(connects(r));

    /* Back with another root: taken. */
    CHECK(put_root(fx_other.root));
    CHECK_EQ_INT(zt_tls_roots_refresh(r, err, sizeof(err)), 1);
    CHECK(!connects(r));
    zt_tls_roots_free(r);
}

static void test_start_errors(void)
{
    struct zt_tls_roots *r = NULL;
    char err[256] = "";
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/nope.pem", dir);
    CHECK_EQ_INT(zt_tls_roots_new(missing, &r, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(r == NULL);
    CHECK(strstr(err, missing) != NULL);
    CHECK(put_file("no certificate here\n"));
    CHECK_EQ_INT(zt_tls_roots_new(file, &r, err, sizeof(err)), ZT_E_CONFIG);
    /* The OS roots load and are never re-read. */
    CHECK_EQ_INT(zt_tls_roots_new("SYSTEM", &r, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_tls_roots_refresh(r, err, sizeof(err)), 0);
    CHECK_EQ_STR(zt_tls_roots_path(r), "SYSTEM");
    zt_tls_roots_free(r);
    zt_tls_roots_free(NULL);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/zt-tls-roots-XXXXXX");
    if (!fx_ca_make(&fx, true) || !fx_ca_make(&fx_other, true) ||
        zt_tls_localca_load(fx.dir, &ca, NULL, 0) != 0 || mkdtemp(dir) == NULL) {
        fprintf(stderr, "fixture set-up failed\n");
        return 1;
    }
    snprintf(file, sizeof(file), "%s/root-cert.pem", dir);
    RUN(test_follows_file);
    RUN(test_start_errors);
    unlink(file);
    rmdir(dir);
    zt_tls_localca_free(ca);
    fx_ca_free(&fx);
    fx_ca_free(&fx_other);
    return TEST_REPORT();
}
