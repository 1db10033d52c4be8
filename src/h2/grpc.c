/* gRPC calls on zt_h2conn streams: message framing, status in trailers. */
#include "h2/grpc.h"

#include "base/alloc.h"
#include "base/err.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- framing ---- */

/* Memory follows the bytes that arrived, never the length the peer
 * declared: a header announcing megabytes costs nothing until they come.
 * Doubling keeps the copies linear; the buffer never exceeds msg_len. */
#define READER_MIN_ALLOC 4096

static int grow(struct zt_grpc_reader *r, size_t need)
{
    if (need <= r->msg_cap && r->msg)
        return 0;
    size_t cap = r->msg_cap ? 2 * r->msg_cap : READER_MIN_ALLOC;
    if (cap < need)
        cap = need;
    if (cap > r->msg_len)
        cap = r->msg_len;
    uint8_t *p = realloc(r->msg, cap ? cap : 1);
    if (!p)
        return -ENOMEM;
    r->msg = p;
    r->msg_cap = cap;
    return 0;
}

int zt_grpc_reader_feed(struct zt_grpc_reader *r, const uint8_t *data, size_t len, size_t *used,
                        const uint8_t **msg, size_t *msg_len)
{
    size_t off = 0;
    *used = 0;
    for (;;) {
        if (r->hdr_len < 5) {
            size_t take = 5 - r->hdr_len < len - off ? 5 - r->hdr_len : len - off;
            memcpy(r->hdr + r->hdr_len, data + off, take);
            r->hdr_len += take;
            off += take;
            if (r->hdr_len < 5) {
                *used = off;
                return 0;
            }
            if (r->hdr[0] != 0)
                return ZT_E_PROTO;
            r->msg_len = (size_t)r->hdr[1] << 24 | (size_t)r->hdr[2] << 16 |
                         (size_t)r->hdr[3] << 8 | r->hdr[4];
            if (r->msg_len > r->max)
                return ZT_E_TOO_BIG;
            r->msg_got = 0;
            free(r->msg);
            r->msg = NULL;
            r->msg_cap = 0;
        }
        size_t take = r->msg_len - r->msg_got < len - off ? r->msg_len - r->msg_got : len - off;
        if (grow(r, r->msg_got + take) < 0)
            abort();
        memcpy(r->msg + r->msg_got, data + off, take);
        r->msg_got += take;
        off += take;
        *used = off;
        if (r->msg_got < r->msg_len)
            return 0;
        r->hdr_len = 0;
        *msg = r->msg;
        *msg_len = r->msg_len;
        return 1;
    }
}

void zt_grpc_reader_cleanup(struct zt_grpc_reader *r)
{
    free(r->msg);
    r->msg = NULL;
    r->hdr_len = r->msg_len = r->msg_got = r->msg_cap = 0;
}

void zt_grpc_frame(struct zt_buf *out, const uint8_t *msg, size_t len)
{
    uint8_t hdr[5] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                      (uint8_t)len};
    zt_buf_append(out, hdr, 5);
    zt_buf_append(out, msg, len);
}

void zt_grpc_encode_message(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < cap; p++) {
        if (*p < 0x20 || *p > 0x7e || *p == '%')
            o += (size_t)snprintf(out + o, cap - o, "%%%02X", *p);
        else
            out[o++] = (char)*p;
    }
    if (cap)
        out[o < cap ? o : cap - 1] = 0;
}

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void decode_message(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = in; *p && o + 1 < cap; p++) {
        if (p[0] == '%' && hex(p[1]) >= 0 && hex(p[2]) >= 0) {
            out[o++] = (char)(hex(p[1]) * 16 + hex(p[2]));
            p += 2;
        } else {
            out[o++] = *p;
        }
    }
    if (cap)
        out[o] = 0;
}

/* ---- control-plane channels ---- */

int zt_grpc_parse_target(const char *address, char *host, size_t host_cap, char *port,
                         size_t port_cap, char *authority, size_t authority_cap)
{
    const char *a = address ? address : "";
    if (strncmp(a, "https://", 8) == 0)
        a += 8;
    const char *colon = strrchr(a, ':');
    const char *h = a;
    size_t hlen = colon ? (size_t)(colon - a) : 0;
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (!colon || hlen == 0 || hlen >= host_cap || !colon[1] || strlen(colon + 1) >= port_cap ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return ZT_E_CONFIG;
    memcpy(host, h, hlen);
    host[hlen] = 0;
    snprintf(port, port_cap, "%s", colon + 1);
    snprintf(authority, authority_cap, "%.*s:%s", (int)(colon - a), a, port);
    return 0;
}

/* A DNS name: labels of [A-Za-z0-9_-], 1..63 bytes each, not starting or
 * ending with '-', at most ZT_GRPC_HOST_MAX bytes without the optional
 * trailing dot. Returns NULL or why not. */
static const char *check_dns_name(const char *h, size_t len)
{
    if (len && h[len - 1] == '.')
        len--;
    if (len == 0)
        return "empty host";
    if (len > ZT_GRPC_HOST_MAX)
        return "host name longer than 253 characters";
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char ch = i < len ? h[i] : '.';
        if (ch == '.') {
            if (label == 0)
                return "empty label in host name";
            if (h[i - 1] == '-' || h[i - label] == '-')
                return "a host name label starts or ends with '-'";
            label = 0;
        } else if (isalnum((unsigned char)ch) || ch == '-' || ch == '_') {
            if (++label > 63)
                return "a host name label is longer than 63 characters";
        } else {
            return "bad character in host";
        }
    }
    return NULL;
}

/* One entry, already trimmed: [https://]host:port. Returns NULL or why
 * not. */
static const char *parse_one_target(const char *a, size_t len, struct zt_grpc_target *t)
{
    const char *end = a + len, *sep = memmem(a, len, "://", 3);
    if (sep) {
        if (sep - a != 5 || strncasecmp(a, "https", 5) != 0)
            return "only https:// is supported";
        a = sep + 3;
    }
    if (a == end)
        return "empty address";
    const char *colon = NULL;
    for (const char *p = end; p > a; p--)
        if (p[-1] == ':') {
            colon = p - 1;
            break;
        }
    if (!colon)
        return "expected host:port";
    const char *h = a;
    size_t hlen = (size_t)(colon - a);
    char buf[64];
    if (hlen && h[0] == '[') {
        if (hlen < 3 || h[hlen - 1] != ']' || hlen - 2 >= sizeof(buf))
            return "bad IPv6 address (expected [address]:port)";
        memcpy(buf, h + 1, hlen - 2);
        buf[hlen - 2] = 0;
        struct in6_addr a6;
        if (inet_pton(AF_INET6, buf, &a6) != 1)
            return "bad IPv6 address";
        h++;
        hlen -= 2;
    } else if (memchr(h, ':', hlen) && strspn(h, "0123456789abcdefABCDEF:.") >= hlen) {
        return "an IPv6 address needs brackets: [address]:port";
    } else {
        const char *why = check_dns_name(h, hlen);
        if (why)
            return why;
    }
    const char *p = colon + 1;
    size_t plen = (size_t)(end - p);
    if (plen == 0)
        return "missing port";
    if (plen > 5 || strspn(p, "0123456789") < plen)
        return "bad port (expected 1 to 65535)";
    unsigned port = 0;
    for (size_t i = 0; i < plen; i++)
        port = port * 10 + (unsigned)(p[i] - '0');
    if (port == 0 || port > 65535)
        return "bad port (expected 1 to 65535)";
    memcpy(t->host, h, hlen);
    t->host[hlen] = 0;
    snprintf(t->port, sizeof(t->port), "%u", port);
    snprintf(t->authority, sizeof(t->authority), "%.*s:%u", (int)(colon - a), a, port);
    return NULL;
}

int zt_grpc_parse_targets(const char *var, const char *list, struct zt_grpc_target *out, size_t *n,
                          char *err, size_t errlen)
{
    const char *s = list ? list : "";
    size_t k = 0;
    *n = 0;
    for (;;) {
        const char *comma = strchr(s, ','), *e = comma ? comma : s + strlen(s);
        const char *b = s;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        k++;
        const char *why = NULL;
        if (b == e)
            why = "empty entry";
        else if (k > ZT_GRPC_TARGETS_MAX)
            why = "more than 16 addresses";
        else
            why = parse_one_target(b, (size_t)(e - b), &out[k - 1]);
        if (why) {
            /* An entry over any legal length is not repeated in full. */
            size_t shown = (size_t)(e - b);
            snprintf(err, errlen, "%s: entry %zu '%.*s%s': %s", var, k,
                     (int)(shown > 300 ? 300 : shown), b, shown > 300 ? "..." : "", why);
            return ZT_E_CONFIG;
        }
        if (!comma)
            break;
        s = comma + 1;
    }
    *n = k;
    return 0;
}

size_t zt_grpc_read_token(const char *path, char *buf, size_t cap)
{
    buf[0] = 0;
    if (!path)
        return 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = 0;
    return n;
}

void zt_grpc_metadata_init(struct zt_grpc_metadata *md, const char *token_path,
                           const char *cluster_id)
{
    static const char prefix[] = "Bearer ";
    const size_t plen = sizeof(prefix) - 1, cap = plen + ZT_GRPC_TOKEN_MAX + 1;
    *md = (struct zt_grpc_metadata){0};
    if (token_path) {
        md->bearer = zt_xmalloc(cap);
        memcpy(md->bearer, prefix, plen);
        if (zt_grpc_read_token(token_path, md->bearer + plen, cap - plen) > 0) {
            md->kv[2 * md->n] = "authorization";
            md->kv[2 * md->n + 1] = md->bearer;
            md->n++;
        } else {
            zt_grpc_metadata_cleanup(md);
        }
    }
    md->kv[2 * md->n] = "clusterid";
    md->kv[2 * md->n + 1] = cluster_id ? cluster_id : "";
    md->n++;
}

void zt_grpc_metadata_cleanup(struct zt_grpc_metadata *md)
{
    if (md->bearer) {
        OPENSSL_cleanse(md->bearer, strlen(md->bearer));
        free(md->bearer);
    }
    md->bearer = NULL;
}

/* ---- client calls ---- */

struct zt_grpc_call {
    struct zt_h2conn *h2;
    int32_t sid;
    const struct zt_grpc_call_ops *ops;
    void *ud;
    struct zt_buf out;
    bool send_closed;
    struct zt_grpc_reader rd;
    int http_status;
    int status; /* -1 until grpc-status is seen */
    char message[256];
    int local_status; /* set when we end the call ourselves */
};

static void call_free(struct zt_grpc_call *call)
{
    zt_buf_release(&call->out);
    zt_grpc_reader_cleanup(&call->rd);
    free(call);
}

static void c_on_response(void *sud, int status)
{
    struct zt_grpc_call *call = sud;
    call->http_status = status;
}

static void c_on_header(void *sud, const char *name, const char *value, bool trailer)
{
    struct zt_grpc_call *call = sud;
    if (strcmp(name, "grpc-status") == 0) {
        char *end;
        long v = strtol(value, &end, 10);
        if (*end == 0 && v >= 0 && v <= 16)
            call->status = (int)v;
        else
            call->status = ZT_GRPC_UNKNOWN;
    } else if (strcmp(name, "grpc-message") == 0) {
        decode_message(value, call->message, sizeof(call->message));
    }
}

static void c_on_data(void *sud, const uint8_t *data, size_t len)
{
    struct zt_grpc_call *call = sud;
    /* Messages are handled at once, so the window is returned at once. */
    zt_h2conn_consume(call->h2, call->sid, len);
    if (call->local_status)
        return;
    size_t off = 0;
    while (off < len) {
        size_t used;
        const uint8_t *msg;
        size_t mlen;
        int rc = zt_grpc_reader_feed(&call->rd, data + off, len - off, &used, &msg, &mlen);
        off += used;
        if (rc < 0) {
            call->local_status = rc == ZT_E_TOO_BIG ? ZT_GRPC_RESOURCE_EXHAUSTED : ZT_GRPC_INTERNAL;
            snprintf(call->message, sizeof(call->message), "%s",
                     rc == ZT_E_TOO_BIG ? "received message larger than the limit"
                                        : "compressed message (not negotiated)");
            zt_h2conn_reset(call->h2, call->sid);
            return;
        }
        if (rc == 0)
            break;
        call->ops->on_message(call->ud, msg, mlen);
        if (call->local_status)
            return;
    }
}

static void c_on_end(void *sud)
{
}

static void c_on_close(void *sud, int error)
{
    struct zt_grpc_call *call = sud;
    int status = call->status;
    const char *msg = call->message;
    char buf[128];
    if (call->local_status) {
        status = call->local_status;
    } else if (status < 0) {
        if (call->http_status && call->http_status != 200) {
            status = ZT_GRPC_INTERNAL;
            snprintf(buf, sizeof(buf), "HTTP status %d", call->http_status);
        } else {
            status = ZT_GRPC_UNAVAILABLE;
            snprintf(buf, sizeof(buf), "stream closed without a status: %s",
                     error ? zt_strerror(error) : "no trailers");
        }
        msg = buf;
    }
    call->ops->on_close(call->ud, status, msg);
    call_free(call);
}

/* Body source shared by both sides: queued frames, then EOF once the
 * sender is done. */
static ssize_t read_out(struct zt_buf *out, bool done, uint8_t *buf, size_t len, bool *eof)
{
    if (out->len == 0) {
        if (done) {
            *eof = true;
            return 0;
        }
        return -EAGAIN;
    }
    size_t n = out->len < len ? out->len : len;
    memcpy(buf, zt_buf_head(out), n);
    zt_buf_consume(out, n);
    if (out->len == 0) {
        zt_buf_release(out);
        *eof = done;
    }
    return (ssize_t)n;
}

static ssize_t c_read(void *sud, uint8_t *buf, size_t len, bool *eof)
{
    struct zt_grpc_call *call = sud;
    return read_out(&call->out, call->send_closed, buf, len, eof);
}

static const struct zt_h2_stream_ops call_stream_ops = {
    .on_response = c_on_response,
    .on_header = c_on_header,
    .on_data = c_on_data,
    .on_end = c_on_end,
    .on_close = c_on_close,
    .read = c_read,
};

struct zt_grpc_call *zt_grpc_call_start(struct zt_h2conn *h2, const char *authority,
                                        const char *path, const char *const *metadata,
                                        size_t n_metadata, size_t max_message,
                                        const struct zt_grpc_call_ops *ops, void *ud)
{
    const char *hdrs[2 * 20];
    size_t n = 0;
    const char *fixed[] = {":method", "POST",       ":scheme", "https",        ":path",
                           path,      ":authority", authority, "content-type", "application/grpc",
                           "te",      "trailers"};
    memcpy(hdrs, fixed, sizeof(fixed));
    n = sizeof(fixed) / sizeof(fixed[0]);
    for (size_t i = 0; i < n_metadata && n + 2 <= sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        hdrs[n++] = metadata[2 * i];
        hdrs[n++] = metadata[2 * i + 1];
    }
    struct zt_grpc_call *call = zt_xcalloc(1, sizeof(*call));
    call->h2 = h2;
    call->ops = ops;
    call->ud = ud;
    call->status = -1;
    call->rd.max = max_message;
    call->sid = zt_h2conn_submit(h2, hdrs, n / 2, &call_stream_ops, call);
    if (call->sid < 0) {
        call_free(call);
        return NULL;
    }
    zt_h2conn_flush(h2);
    return call;
}

int zt_grpc_call_send(struct zt_grpc_call *call, const uint8_t *msg, size_t len)
{
    if (call->send_closed)
        return ZT_E_CLOSED;
    zt_grpc_frame(&call->out, msg, len);
    zt_h2conn_resume(call->h2, call->sid);
    zt_h2conn_flush(call->h2);
    return 0;
}

void zt_grpc_call_close_send(struct zt_grpc_call *call)
{
    call->send_closed = true;
    zt_h2conn_resume(call->h2, call->sid);
    zt_h2conn_flush(call->h2);
}

void zt_grpc_call_cancel(struct zt_grpc_call *call)
{
    zt_h2conn_detach(call->h2, call->sid);
    zt_h2conn_flush(call->h2);
    call_free(call);
}

/* ---- server calls ---- */

struct zt_grpc_scall {
    struct zt_h2conn *h2;
    int32_t sid;
    const struct zt_grpc_scall_ops *ops;
    void *ud;
    struct zt_buf out;
    bool finished;
    bool broken; /* a bad message: reset sent */
    struct zt_grpc_reader rd;
};

static void s_on_data(void *sud, const uint8_t *data, size_t len)
{
    struct zt_grpc_scall *call = sud;
    zt_h2conn_consume(call->h2, call->sid, len);
    if (call->broken)
        return;
    size_t off = 0;
    while (off < len) {
        size_t used;
        const uint8_t *msg;
        size_t mlen;
        int rc = zt_grpc_reader_feed(&call->rd, data + off, len - off, &used, &msg, &mlen);
        off += used;
        if (rc < 0) {
            call->broken = true;
            zt_grpc_scall_finish(
                call, rc == ZT_E_TOO_BIG ? ZT_GRPC_RESOURCE_EXHAUSTED : ZT_GRPC_UNIMPLEMENTED,
                rc == ZT_E_TOO_BIG ? "message larger than the limit"
                                   : "compression is not supported");
            return;
        }
        if (rc == 0)
            break;
        call->ops->on_message(call->ud, call, msg, mlen);
        if (call->broken)
            return;
    }
}

static void s_on_end(void *sud)
{
    struct zt_grpc_scall *call = sud;
    if (!call->broken && call->ops->on_half_close)
        call->ops->on_half_close(call->ud, call);
}

static void s_on_close(void *sud, int error)
{
    struct zt_grpc_scall *call = sud;
    if (call->ops->on_close)
        call->ops->on_close(call->ud, call);
    zt_buf_release(&call->out);
    zt_grpc_reader_cleanup(&call->rd);
    free(call);
}

static ssize_t s_read(void *sud, uint8_t *buf, size_t len, bool *eof)
{
    struct zt_grpc_scall *call = sud;
    return read_out(&call->out, call->finished, buf, len, eof);
}

static const struct zt_h2_stream_ops scall_stream_ops = {
    .on_data = s_on_data,
    .on_end = s_on_end,
    .on_close = s_on_close,
    .read = s_read,
};

struct zt_grpc_scall *zt_grpc_scall_accept(struct zt_h2conn *h2, int32_t stream_id,
                                           size_t max_message, const struct zt_grpc_scall_ops *ops,
                                           void *ud)
{
    struct zt_grpc_scall *call = zt_xcalloc(1, sizeof(*call));
    call->h2 = h2;
    call->sid = stream_id;
    call->ops = ops;
    call->ud = ud;
    call->rd.max = max_message;
    zt_h2conn_attach(h2, stream_id, &scall_stream_ops, call);
    const char *hdrs[] = {"content-type", "application/grpc"};
    if (zt_h2conn_respond(h2, stream_id, 200, hdrs, 1) < 0) {
        zt_h2conn_attach(h2, stream_id, NULL, NULL);
        free(call);
        return NULL;
    }
    return call;
}

static void status_trailers(struct zt_h2conn *h2, int32_t sid, int status, const char *message)
{
    char code[8], enc[512];
    snprintf(code, sizeof(code), "%d", status);
    zt_grpc_encode_message(message ? message : "", enc, sizeof(enc));
    const char *tr[] = {"grpc-status", code, "grpc-message", enc};
    zt_h2conn_set_trailers(h2, sid, tr, enc[0] ? 2 : 1);
}

static void reject_on_close(void *sud, int error)
{
}

static ssize_t reject_read(void *sud, uint8_t *buf, size_t len, bool *eof)
{
    *eof = true;
    return 0;
}

static const struct zt_h2_stream_ops reject_ops = {
    .on_close = reject_on_close,
    .read = reject_read,
};

void zt_grpc_reject(struct zt_h2conn *h2, int32_t stream_id, int status, const char *message)
{
    /* No body: 200, an empty end of data, then the status as trailers. */
    const char *hdrs[] = {"content-type", "application/grpc"};
    zt_h2conn_attach(h2, stream_id, &reject_ops, NULL);
    status_trailers(h2, stream_id, status, message);
    zt_h2conn_respond(h2, stream_id, 200, hdrs, 1);
}

int zt_grpc_scall_send(struct zt_grpc_scall *call, const uint8_t *msg, size_t len)
{
    if (call->finished)
        return ZT_E_CLOSED;
    zt_grpc_frame(&call->out, msg, len);
    zt_h2conn_resume(call->h2, call->sid);
    zt_h2conn_flush(call->h2);
    return 0;
}

void zt_grpc_scall_finish(struct zt_grpc_scall *call, int status, const char *message)
{
    if (call->finished)
        return;
    call->finished = true;
    status_trailers(call->h2, call->sid, status, message);
    zt_h2conn_resume(call->h2, call->sid);
    zt_h2conn_flush(call->h2);
}
