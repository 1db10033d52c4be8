/* Control-plane roots that follow their file: a stat per new connection,
 * a read and a new context only when the file changed. */
#include "tls/roots.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/file.h"
#include "tls/ctx.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct zt_tls_roots {
    char *path;
    bool is_system;
    SSL_CTX *ctx;
    /* The file as last looked at, loaded or not: a refresh acts only when
     * this changes, so one bad file is reported once. */
    bool seen;
    int seen_errno; /* stat failed with this; 0 = stat below is valid */
    struct stat st;
    unsigned char digest[32]; /* of the content ctx was built from */
};

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static void sha256(const char *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
        abort();
}

/* Builds a context from the file now. Returns 0, or an error with the
 * reason in err; r->st / r->seen_errno describe what was looked at. */
static int load(struct zt_tls_roots *r, char *err, size_t errlen)
{
    char *pem = NULL;
    size_t len = 0;
    char why[200];
    int rc = zt_read_file(r->path, ZT_TLS_ROOTS_FILE_MAX, &r->st, &pem, &len);
    r->seen = true;
    /* -errno from open or fstat: st is stale; the rest had a good fstat. */
    r->seen_errno = rc < 0 && rc > ZT_E_PROTO ? -rc : 0;
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot read: %s", r->path, zt_strerror(rc));
        return rc;
    }
    unsigned char digest[32];
    sha256(pem, len, digest);
    if (r->ctx != NULL && memcmp(digest, r->digest, sizeof(digest)) == 0) {
        free(pem);
        return 0; /* touched, or replaced by the same content */
    }
    SSL_CTX *ctx = zt_tls_server_auth_ctx_from_pem(pem, len, ZT_TLS_ROOTS_MAX, why, sizeof(why));
    free(pem);
    if (ctx == NULL) {
        snprintf(err, errlen, "%s: %s", r->path, why);
        return ZT_E_TLS;
    }
    SSL_CTX_free(r->ctx);
    r->ctx = ctx;
    memcpy(r->digest, digest, sizeof(digest));
    return 1;
}

int zt_tls_roots_new(const char *root_ca, struct zt_tls_roots **out, char *err, size_t errlen)
{
    struct zt_tls_roots *r = zt_xcalloc(1, sizeof(*r));
    r->path = zt_xstrdup(root_ca ? root_ca : "");
    if (strcmp(r->path, "SYSTEM") == 0) {
        r->is_system = true;
        r->ctx = zt_tls_server_auth_ctx_new("SYSTEM", err, errlen);
    } else if (load(r, err, errlen) < 0) {
        SSL_CTX_free(r->ctx);
        r->ctx = NULL;
    }
    if (r->ctx == NULL) {
        zt_tls_roots_free(r);
        return ZT_E_CONFIG;
    }
    *out = r;
    return 0;
}

int zt_tls_roots_refresh(struct zt_tls_roots *r, char *err, size_t errlen)
{
    struct stat st;
    if (r->is_system)
        return 0;
    if (stat(r->path, &st) < 0) {
        int e = errno;
        if (r->seen && r->seen_errno == e)
            return 0;
        r->seen = true;
        r->seen_errno = e;
        snprintf(err, errlen, "%s: cannot read: %s", r->path, strerror(e));
        return -e;
    }
    if (r->seen && r->seen_errno == 0 && same_file(&st, &r->st))
        return 0;
    return load(r, err, errlen);
}

SSL_CTX *zt_tls_roots_ctx(const struct zt_tls_roots *r)
{
    return r->ctx;
}

const char *zt_tls_roots_path(const struct zt_tls_roots *r)
{
    return r->path;
}

void zt_tls_roots_free(struct zt_tls_roots *r)
{
    if (r == NULL)
        return;
    SSL_CTX_free(r->ctx);
    free(r->path);
    free(r);
}
