/* Fuzzes the HTTP/1.1 parser (src/http/http1.c). The input after its first
 * byte is a stream of requests, then of responses, fed whole and then cut
 * in two at a point chosen by the first byte. Invariants: no more is
 * consumed than given; the events (heads, body bytes, ends, upgrade,
 * failure) are the same however the stream was cut; every head parsed
 * encodes, and the encoding parses back to the same method, path,
 * authority or status, and fields. */
#include "http/http1.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
    uint64_t hash;
    bool in_body;
    bool resp;
};

static void mix(struct run *r, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        r->hash = (r->hash ^ b[i]) * 0x100000001b3ULL;
}

static void mix_str(struct run *r, const char *s)
{
    mix(r, s ? s : "(null)", s ? strlen(s) + 1 : 7);
}

static void event(struct run *r, char c)
{
    r->in_body = false;
    mix(r, &c, 1);
}

static void mix_fields(struct run *r, const struct zt_http_head *h)
{
    for (size_t i = 0; i < h->n_fields; i++) {
        mix_str(r, h->fields[i].name);
        mix_str(r, h->fields[i].value);
    }
}

static bool same_head(const struct zt_http_head *a, const struct zt_http_head *b)
{
    if (a->is_response ? a->status != b->status
                       : strcmp(a->method, b->method) || strcmp(a->path, b->path) ||
                             strcmp(a->authority, b->authority))
        return false;
    if (a->n_fields != b->n_fields)
        return false;
    for (size_t i = 0; i < a->n_fields; i++)
        if (strcmp(a->fields[i].name, b->fields[i].name) ||
            strcmp(a->fields[i].value, b->fields[i].value))
            return false;
    return true;
}

static bool reparsed;

static void on_reparsed(void *ud, struct zt_http_head *h, const struct zt_http1_framing *f)
{
    if (!same_head(ud, h))
        __builtin_trap();
    reparsed = true;
}

/* The head written out and read back. */
static void round_trip(const struct zt_http_head *h)
{
    if (!h->is_response && !h->authority)
        return; /* HTTP/1.0 without Host: the owner adds one before sending */
    struct zt_buf b = {0};
    if (zt_http1_encode_head(h, &b) != 0)
        __builtin_trap();
    static const struct zt_http1_ops reparse_ops = {.on_head = on_reparsed};
    struct zt_http1_parser *p = zt_http1_parser_new(h->is_response, &reparse_ops, (void *)h);
    zt_http1_parser_expect(p, "GET", true);
    size_t used;
    reparsed = false;
    if (zt_http1_parse(p, zt_buf_head(&b), b.len, &used) != 0 || !reparsed)
        __builtin_trap();
    zt_http1_parser_free(p);
    zt_buf_release(&b);
}

static void on_head(void *ud, struct zt_http_head *h, const struct zt_http1_framing *f)
{
    struct run *r = ud;
    event(r, 'H');
    if (h->is_response) {
        mix(r, &h->status, sizeof(h->status));
    } else {
        mix_str(r, h->method);
        mix_str(r, h->path);
        mix_str(r, h->authority);
    }
    mix_fields(r, h);
    mix(r, f, sizeof(*f));
    round_trip(h);
}

static void on_body(void *ud, const uint8_t *d, size_t n)
{
    struct run *r = ud;
    if (!r->in_body)
        event(r, 'B');
    r->in_body = true;
    mix(r, d, n);
}

static void on_end(void *ud, struct zt_http_head *trailers)
{
    struct run *r = ud;
    event(r, 'E');
    if (trailers)
        mix_fields(r, trailers);
}

static const struct zt_http1_ops ops = {on_head, on_body, on_end};

/* Feeds in[0..len) in two reads cut at `cut`, the way a session does
 * (unconsumed bytes are fed again with the next read); returns the hash
 * of the events. */
static uint64_t feed(bool resp, const char *method, const uint8_t *in, size_t len, size_t cut)
{
    static uint8_t buf[1 << 17];
    struct run r = {.hash = 0xcbf29ce484222325ULL, .resp = resp};
    struct zt_http1_parser *p = zt_http1_parser_new(resp, &ops, &r);
    zt_http1_parser_expect(p, method, false);
    size_t have = 0, fed = 0;
    int reads = 0;
    while (reads < 2) {
        size_t n = reads == 0 ? cut : len - fed;
        memcpy(buf + have, in + fed, n);
        have += n;
        fed += n;
        reads++;
        for (;;) {
            size_t used = 0;
            int rc = zt_http1_parse(p, buf, have, &used);
            if (used > have)
                __builtin_trap();
            memmove(buf, buf + used, have - used);
            have -= used;
            if (rc < 0) {
                /* Which check failed is not compared: in a message with two
                 * defects, where the input was cut decides which check sees
                 * its defect first (a cut delivers a field's first piece
                 * early). That it fails, and every event before, is. */
                event(&r, 'X');
                if (zt_http1_parser_error(p) == ZT_HTTP1_E_NONE)
                    __builtin_trap();
                goto out;
            }
            enum zt_http1_state st = zt_http1_parser_state(p);
            if (st == ZT_HTTP1_ST_UPGRADED) {
                event(&r, 'U');
                mix(&r, buf, have);
                mix(&r, in + fed, len - fed);
                goto out;
            }
            if (st != ZT_HTTP1_ST_DONE)
                break;
            event(&r, '|');
            zt_http1_parser_resume(p);
            zt_http1_parser_expect(p, method, false);
        }
    }
    event(&r, 'F');
    int rc = zt_http1_parse_eof(p);
    mix(&r, &rc, sizeof(rc));
out:
    zt_http1_parser_free(p);
    return r.hash;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1 << 16))
        return 0;
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    size_t cut = len ? data[0] % (len + 1) : 0;
    if (feed(false, NULL, in, len, len) != feed(false, NULL, in, len, cut))
        __builtin_trap();
    const char *method = data[0] & 0x80 ? "HEAD" : "GET";
    if (feed(true, method, in, len, len) != feed(true, method, in, len, cut))
        __builtin_trap();
    return 0;
}
