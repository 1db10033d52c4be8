#include "control/tokens.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Tokens are kept as SHA-256 digests, sorted: a lookup hashes the offered
 * token and searches the digests, so neither the search nor the final
 * comparison (CRYPTO_memcmp) reveals how much of a real token matched. */
struct token {
    unsigned char digest[32];
    char *node;
    size_t line;
};

struct zt_control_tokens {
    struct token *v;
    size_t n;
    char *path; /* NULL when parsed from memory */
    struct stat st;
    unsigned long generation; /* changes with the table */
};

static void digest(const char *s, size_t len, unsigned char out[32])
{
    unsigned int n = 32;
    if (EVP_Digest(s, len, out, &n, EVP_sha256(), NULL) != 1)
        abort();
}

static int cmp_token(const void *a, const void *b)
{
    return memcmp(((const struct token *)a)->digest, ((const struct token *)b)->digest, 32);
}

static bool is_dns_subdomain(const char *s, size_t len)
{
    if (len == 0 || len > ZT_CONTROL_NODE_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (alnum || (c == '-' && label > 0)) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 && s[len - 1] != '-';
}

static void free_table(struct token *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].node);
    free(v);
}

/* Splits the next field off [*p, end): skips blanks, returns its start and
 * length, or NULL at the end. */
static const char *next_field(const char **p, const char *end, size_t *len)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
        s++;
    if (s == end) {
        *p = s;
        return NULL;
    }
    const char *e = s;
    while (e < end && *e != ' ' && *e != '\t' && *e != '\r')
        e++;
    *len = (size_t)(e - s);
    *p = e;
    return s;
}

int zt_control_tokens_parse(const char *name, const char *text, size_t len,
                            struct zt_control_tokens **out, char *err, size_t errlen)
{
    struct token *v = NULL;
    size_t n = 0, cap = 0, line = 0;
    const char *p = text, *end = text + len;
    *out = NULL;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *lend = eol ? eol : end;
        line++;
        if (line > ZT_CONTROL_TOKENS_MAX_LINES) {
            snprintf(err, errlen, "%s:%zu: more than %d lines", name, line,
                     ZT_CONTROL_TOKENS_MAX_LINES);
            goto fail;
        }
        const char *q = p;
        size_t l1 = 0, l2 = 0, l3 = 0;
        const char *f1 = next_field(&q, lend, &l1);
        p = eol ? eol + 1 : end;
        if (!f1 || f1[0] == '#')
            continue;
        const char *f2 = next_field(&q, lend, &l2);
        const char *f3 = next_field(&q, lend, &l3);
        if (!f2 || f3) {
            snprintf(err, errlen, "%s:%zu: expected \"NODE_NAME TOKEN\"", name, line);
            goto fail;
        }
        if (!is_dns_subdomain(f1, l1)) {
            snprintf(err, errlen, "%s:%zu: node name \"%.*s\" is not a DNS subdomain", name, line,
                     (int)(l1 > 64 ? 64 : l1), f1);
            goto fail;
        }
        if (l2 < ZT_CONTROL_TOKENS_MIN_LEN || l2 > ZT_CONTROL_TOKEN_MAX) {
            snprintf(err, errlen, "%s:%zu: token of node %.*s must be %d to %d bytes", name, line,
                     (int)l1, f1, ZT_CONTROL_TOKENS_MIN_LEN, ZT_CONTROL_TOKEN_MAX);
            goto fail;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            v = zt_xrealloc(v, cap * sizeof(*v));
        }
        digest(f2, l2, v[n].digest);
        v[n].node = zt_xstrndup(f1, l1);
        v[n].line = line;
        n++;
    }
    if (n == 0) {
        snprintf(err, errlen, "%s: no node tokens", name);
        goto fail;
    }
    qsort(v, n, sizeof(*v), cmp_token);
    for (size_t i = 1; i < n; i++) {
        if (memcmp(v[i - 1].digest, v[i].digest, 32) == 0) {
            const struct token *a = v[i - 1].line < v[i].line ? &v[i - 1] : &v[i];
            const struct token *b = a == &v[i] ? &v[i - 1] : &v[i];
            snprintf(err, errlen, "%s:%zu: node %s has the same token as node %s (line %zu)", name,
                     b->line, b->node, a->node, a->line);
            goto fail;
        }
    }
    *out = calloc(1, sizeof(**out));
    if (!*out)
        abort();
    (*out)->v = v;
    (*out)->n = n;
    return 0;
fail:
    free_table(v, n);
    return ZT_E_CONFIG;
}

/* Reads the whole file; returns 0 with a NUL-terminated malloc'd buffer. */
static int read_file(const char *path, struct stat *st, char **text, size_t *len, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rc;
    }
    if (fstat(fileno(f), st) < 0 || st->st_size > (off_t)ZT_CONTROL_TOKENS_MAX_LINES * 4400) {
        snprintf(err, errlen, "%s: cannot read or too large", path);
        fclose(f);
        return ZT_E_TOO_BIG;
    }
    *text = malloc((size_t)st->st_size + 1);
    if (!*text)
        abort();
    *len = fread(*text, 1, (size_t)st->st_size, f);
    (*text)[*len] = '\0';
    fclose(f);
    return 0;
}

int zt_control_tokens_load(const char *path, struct zt_control_tokens **out, char *err,
                           size_t errlen)
{
    struct stat st;
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = read_file(path, &st, &text, &len, err, errlen);
    if (rc == 0)
        rc = zt_control_tokens_parse(path, text, len, out, err, errlen);
    free(text);
    if (rc == 0) {
        (*out)->path = strdup(path);
        if (!(*out)->path)
            abort();
        (*out)->st = st;
    }
    return rc;
}

/* The file is gone: nobody is authorized until it is back (a revoked
 * file must not leave its tokens valid). */
static void clear_table(struct zt_control_tokens *t, int err)
{
    if (t->n > 0)
        ZT_WARN("control", "node tokens: %s: %s: every token revoked", t->path, strerror(err));
    free_table(t->v, t->n);
    if (t->n > 0)
        t->generation++;
    t->v = NULL;
    t->n = 0;
    memset(&t->st, 0, sizeof(t->st)); /* any file put back is read */
}

static void maybe_reload(struct zt_control_tokens *t)
{
    struct stat st;
    if (!t->path)
        return;
    if (stat(t->path, &st) < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            clear_table(t, errno);
        return;
    }
    if (st.st_ino == t->st.st_ino && st.st_size == t->st.st_size &&
        st.st_mtim.tv_sec == t->st.st_mtim.tv_sec && st.st_mtim.tv_nsec == t->st.st_mtim.tv_nsec)
        return;
    char err[512];
    struct zt_control_tokens *fresh = NULL;
    t->st = st; /* a broken file is reported once, not on every call */
    if (zt_control_tokens_load(t->path, &fresh, err, sizeof(err)) < 0) {
        ZT_ERROR("control", "node tokens not reloaded, keeping %zu token(s): %s", t->n, err);
        return;
    }
    free_table(t->v, t->n);
    t->generation++;
    t->v = fresh->v;
    t->n = fresh->n;
    t->st = fresh->st;
    free(fresh->path);
    free(fresh);
    ZT_INFO("control", "node tokens reloaded from %s: %zu token(s)", t->path, t->n);
}

static const char *find(const struct zt_control_tokens *t, const unsigned char d[32])
{
    struct token key;
    memcpy(key.digest, d, 32);
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_token(&key, &t->v[mid]);
        if (c == 0)
            return CRYPTO_memcmp(key.digest, t->v[mid].digest, 32) == 0 ? t->v[mid].node : NULL;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *zt_control_tokens_lookup(struct zt_control_tokens *t, const char *token, size_t len,
                                     unsigned char out[ZT_CONTROL_TOKEN_DIGEST])
{
    maybe_reload(t);
    if (len == 0 || len > ZT_CONTROL_TOKEN_MAX)
        return NULL;
    unsigned char d[32];
    digest(token, len, d);
    if (out)
        memcpy(out, d, 32);
    return find(t, d);
}

const char *zt_control_tokens_node(struct zt_control_tokens *t, const char *token, size_t len)
{
    return zt_control_tokens_lookup(t, token, len, NULL);
}

const char *zt_control_tokens_node_by_digest(const struct zt_control_tokens *t,
                                             const unsigned char d[ZT_CONTROL_TOKEN_DIGEST])
{
    return find(t, d);
}

unsigned long zt_control_tokens_refresh(struct zt_control_tokens *t)
{
    maybe_reload(t);
    return t->generation;
}

size_t zt_control_tokens_count(const struct zt_control_tokens *t)
{
    return t->n;
}

void zt_control_tokens_free(struct zt_control_tokens *t)
{
    if (!t)
        return;
    free_table(t->v, t->n);
    free(t->path);
    free(t);
}
