/* HTTP/1.1 codec (http1.h) over libhttp-parser.
 *
 * The library parses; we keep what it reports in a head and add the checks
 * it leaves lenient. Two of them need the raw bytes of a head (bare CR/LF
 * line ends and obs-fold are invisible in its callbacks), so the parser is
 * paused at every boundary between parts of a message: end of head, each
 * chunk's size line and data (whose CRLFs the library does not check
 * either), end of message. Each http_parser_execute
 * call then covers bytes of one part only, and the bytes it consumed are
 * the part's (the head's, the trailers') to scan.
 *
 * Pausing inside a callback makes http_parser_execute return at that byte:
 * on_headers_complete before the head's final LF (it is read again on
 * resume), on_chunk_header, on_chunk_complete and on_message_complete just
 * after it. Execute is never called with length 0 except at EOF: that is
 * the library's end-of-stream signal. */
#include "http/http1.h"

#include "base/err.h"

#include <http_parser.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum phase { PH_HEAD, PH_BODY, PH_TRAILER };
enum pause_why { PW_NONE, PW_HEAD, PW_TRAILERS, PW_CHUNK, PW_DONE };

struct zt_http1_parser {
    http_parser hp;
    const struct zt_http1_ops *ops;
    void *ud;
    bool is_response;
    enum zt_http1_state state;
    enum zt_http1_error err;
    enum phase phase;
    enum pause_why why;
    bool started;    /* a byte of this message was parsed */
    bool want_pause; /* the owner paused in on_head */
    bool closed;     /* the last message ended the connection */
    bool interim;    /* this message is a 1xx response */
    bool host_seen;
    uint8_t prev, prev2; /* the last bytes consumed */
    /* Responses: the request answered. */
    bool expect_head, expect_connect, expect_upgrade;

    struct zt_http_head head, trailers;
    struct zt_http_head *cur; /* head or trailers, being filled */
    size_t n_seen;            /* fields seen in *cur (Host included) */
    /* The field being read: its name, then its value, in pieces. */
    char *name, *value;
    size_t name_len, value_len, name_cap, value_cap;
    bool in_value;
    char *url;
    size_t url_len, url_cap;
    struct zt_http1_framing framing;
};

/* ---- errors and names --------------------------------------------------- */

const char *zt_http1_error_str(enum zt_http1_error e)
{
    switch (e) {
    case ZT_HTTP1_E_NONE:
        return "";
    case ZT_HTTP1_E_SYNTAX:
        return "malformed message";
    case ZT_HTTP1_E_CL_AND_TE:
        return "both content-length and transfer-encoding";
    case ZT_HTTP1_E_MULTIPLE_CL:
        return "more than one content-length";
    case ZT_HTTP1_E_BAD_CL:
        return "invalid content-length";
    case ZT_HTTP1_E_TRANSFER_ENCODING:
        return "transfer-encoding other than chunked";
    case ZT_HTTP1_E_CHUNK:
        return "invalid chunk";
    case ZT_HTTP1_E_FIELD_NAME:
        return "invalid character in a field name";
    case ZT_HTTP1_E_FIELD_VALUE:
        return "invalid character in a field value";
    case ZT_HTTP1_E_LINE_END:
        return "line not ended by CRLF";
    case ZT_HTTP1_E_OBS_FOLD:
        return "folded header line";
    case ZT_HTTP1_E_HEAD_TOO_BIG:
        return "header section too large";
    case ZT_HTTP1_E_TOO_MANY_FIELDS:
        return "too many header fields";
    case ZT_HTTP1_E_TARGET_TOO_LONG:
        return "request target too long";
    case ZT_HTTP1_E_TARGET:
        return "invalid request target";
    case ZT_HTTP1_E_VERSION:
        return "unsupported HTTP version";
    case ZT_HTTP1_E_NO_HOST:
        return "missing host";
    case ZT_HTTP1_E_MULTIPLE_HOST:
        return "more than one host";
    case ZT_HTTP1_E_BAD_HOST:
        return "invalid host";
    case ZT_HTTP1_E_STATUS:
        return "invalid or unexpected status";
    case ZT_HTTP1_E_TRUNCATED:
        return "stream ended inside a message";
    case ZT_HTTP1_E_AFTER_CLOSE:
        return "data after connection close";
    }
    return "unknown error";
}

int zt_http1_error_status(enum zt_http1_error e)
{
    switch (e) {
    case ZT_HTTP1_E_NONE:
        return 0;
    case ZT_HTTP1_E_TARGET_TOO_LONG:
        return 414;
    case ZT_HTTP1_E_HEAD_TOO_BIG:
    case ZT_HTTP1_E_TOO_MANY_FIELDS:
        return 431;
    case ZT_HTTP1_E_TRANSFER_ENCODING:
        return 501;
    case ZT_HTTP1_E_VERSION:
        return 505;
    default:
        return 400;
    }
}

const char *zt_http1_state_str(enum zt_http1_state s)
{
    switch (s) {
    case ZT_HTTP1_ST_HEAD:
        return "head";
    case ZT_HTTP1_ST_BODY:
        return "body";
    case ZT_HTTP1_ST_DONE:
        return "done";
    case ZT_HTTP1_ST_UPGRADED:
        return "upgraded";
    case ZT_HTTP1_ST_ERROR:
        return "error";
    }
    return "?";
}

static int err_code(enum zt_http1_error e)
{
    switch (e) {
    case ZT_HTTP1_E_HEAD_TOO_BIG:
    case ZT_HTTP1_E_TOO_MANY_FIELDS:
    case ZT_HTTP1_E_TARGET_TOO_LONG:
        return ZT_E_TOO_BIG;
    default:
        return ZT_E_PROTO;
    }
}

/* Records the first failed check; a callback returns what this returns to
 * stop the library. */
static int fail(struct zt_http1_parser *p, enum zt_http1_error e)
{
    if (p->err == ZT_HTTP1_E_NONE)
        p->err = e;
    return -1;
}

/* ---- character classes -------------------------------------------------- */

static bool is_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

/* Field values: anything but control characters (HTAB allowed). */
static bool is_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* Request targets and authorities: visible ASCII. */
static bool is_visible(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

/* host [":" port]: reg-name, IPv4 or [IPv6] characters (RFC 3986). */
static bool is_authority(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && !(c && strchr("-._~%!$&'()*+,;=:[]", c)))
            return false;
    }
    return true;
}

/* ---- accumulation of fields --------------------------------------------- */

static void grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    char *b = realloc(*buf, c);
    if (!b)
        abort();
    *buf = b;
    *cap = c;
}

/* Bytes the request line will add to the head, counted against its cap
 * while fields are read. */
static size_t line_bytes(const struct zt_http1_parser *p)
{
    if (p->is_response || p->cur != &p->head)
        return 0;
    return p->url_len + strlen(http_method_str((enum http_method)p->hp.method));
}

/* Capped before growing: the piece must fit in what the head has left. */
static int check_room(struct zt_http1_parser *p, size_t add)
{
    size_t used = p->cur->bytes + line_bytes(p) + p->name_len + p->value_len;
    if (used > ZT_HTTP_HEAD_MAX || add > ZT_HTTP_HEAD_MAX - used)
        return fail(p, ZT_HTTP1_E_HEAD_TOO_BIG);
    return 0;
}

static bool name_is(const struct zt_http1_parser *p, const char *name)
{
    return p->name_len == strlen(name) && strncasecmp(p->name, name, p->name_len) == 0;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Adds the field read so far (if any) to the head or trailers. */
static int commit_field(struct zt_http1_parser *p)
{
    if (!p->in_value && p->name_len == 0)
        return 0;
    const char *v = p->value ? p->value : "";
    size_t vl = p->value_len;
    while (vl && (v[0] == ' ' || v[0] == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    int rc = 0;
    if (!is_token(p->name, p->name_len)) {
        rc = fail(p, ZT_HTTP1_E_FIELD_NAME);
    } else if (p->cur == &p->head && name_is(p, "host")) {
        if (p->host_seen)
            rc = fail(p, ZT_HTTP1_E_MULTIPLE_HOST);
        else if (!is_authority(v, vl))
            rc = fail(p, ZT_HTTP1_E_BAD_HOST);
        else if (zt_http_head_set_part(p->cur, &p->cur->authority, v, vl) < 0)
            rc = fail(p, ZT_HTTP1_E_HEAD_TOO_BIG);
        p->host_seen = true;
    } else {
        if (p->cur == &p->head && name_is(p, "content-length")) {
            if (zt_http_head_get(p->cur, "content-length"))
                rc = fail(p, ZT_HTTP1_E_MULTIPLE_CL);
            else if (vl == 0 || vl > 18 || !all_digits(v, vl))
                rc = fail(p, ZT_HTTP1_E_BAD_CL);
        }
        if (rc == 0 && zt_http_head_add(p->cur, p->name, p->name_len, v, vl) < 0)
            rc = fail(p, ZT_HTTP1_E_HEAD_TOO_BIG);
    }
    p->name_len = p->value_len = 0;
    p->in_value = false;
    return rc;
}

static int on_message_begin(http_parser *hp)
{
    struct zt_http1_parser *p = hp->data;
    p->started = true;
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t n)
{
    struct zt_http1_parser *p = hp->data;
    if (n == 0)
        return 0;
    if (n > ZT_HTTP1_TARGET_MAX - p->url_len)
        return fail(p, ZT_HTTP1_E_TARGET_TOO_LONG);
    grow(&p->url, &p->url_cap, p->url_len + n);
    memcpy(p->url + p->url_len, at, n);
    p->url_len += n;
    return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t n)
{
    struct zt_http1_parser *p = hp->data;
    if (p->in_value && commit_field(p) < 0)
        return -1;
    if (n == 0) /* the library may report an empty piece at a boundary */
        return 0;
    if (p->name_len == 0 && p->n_seen++ >= ZT_HTTP_MAX_FIELDS)
        return fail(p, ZT_HTTP1_E_TOO_MANY_FIELDS);
    if (!is_token(at, n))
        return fail(p, ZT_HTTP1_E_FIELD_NAME);
    if (check_room(p, n) < 0)
        return -1;
    grow(&p->name, &p->name_cap, p->name_len + n);
    memcpy(p->name + p->name_len, at, n);
    p->name_len += n;
    /* The library notes a Transfer-Encoding as soon as a name starts with
     * one ("transfer-encoding-x" too), and then refuses a Content-Length
     * beside it or a request without chunked: only the exact name counts. */
    if (p->cur == &p->head)
        hp->uses_transfer_encoding =
            zt_http_head_get(&p->head, "transfer-encoding") || name_is(p, "transfer-encoding");
    return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
    struct zt_http1_parser *p = hp->data;
    p->in_value = true;
    if (n == 0)
        return 0;
    if (!is_value(at, n))
        return fail(p, ZT_HTTP1_E_FIELD_VALUE);
    if (check_room(p, n) < 0)
        return -1;
    grow(&p->value, &p->value_cap, p->value_len + n);
    memcpy(p->value + p->value_len, at, n);
    p->value_len += n;
    return 0;
}

/* ---- the head ----------------------------------------------------------- */

/* Sets method, path and (absolute form) scheme and authority from the
 * request line. */
static int set_target(struct zt_http1_parser *p)
{
    struct zt_http_head *h = &p->head;
    const char *m = http_method_str((enum http_method)p->hp.method);
    const char *u = p->url ? p->url : "";
    size_t n = p->url_len;
    if (n == 0 || !is_visible(u, n))
        return fail(p, ZT_HTTP1_E_TARGET);
    if (zt_http_head_set_part(h, &h->method, m, strlen(m)) < 0)
        return fail(p, ZT_HTTP1_E_HEAD_TOO_BIG);
    bool connect = p->hp.method == HTTP_CONNECT;
    if (connect) {
        if (u[0] == '/' || !is_authority(u, n))
            return fail(p, ZT_HTTP1_E_TARGET);
    } else if (n == 1 && u[0] == '*') {
        if (p->hp.method != HTTP_OPTIONS)
            return fail(p, ZT_HTTP1_E_TARGET);
    } else if (u[0] != '/') {
        /* Absolute form: its authority wins over Host (RFC 9112 3.2.2). */
        struct http_parser_url pu;
        http_parser_url_init(&pu);
        if (http_parser_parse_url(u, n, 0, &pu) != 0 || !(pu.field_set & (1 << UF_SCHEMA)) ||
            !(pu.field_set & (1 << UF_HOST)) || (pu.field_set & (1 << UF_USERINFO)) ||
            (pu.field_set & (1 << UF_FRAGMENT)))
            return fail(p, ZT_HTTP1_E_TARGET);
        size_t sl = pu.field_data[UF_SCHEMA].len;
        if (!((sl == 4 && strncasecmp(u, "http", 4) == 0) ||
              (sl == 5 && strncasecmp(u, "https", 5) == 0)))
            return fail(p, ZT_HTTP1_E_TARGET);
        size_t a0 = sl + 3, a1 = n;
        if (pu.field_set & (1 << UF_PATH))
            a1 = pu.field_data[UF_PATH].off;
        else if (pu.field_set & (1 << UF_QUERY))
            a1 = (size_t)pu.field_data[UF_QUERY].off - 1;
        if (a1 <= a0 || !is_authority(u + a0, a1 - a0))
            return fail(p, ZT_HTTP1_E_TARGET);
        char path[ZT_HTTP1_TARGET_MAX + 2];
        int pl = snprintf(path, sizeof(path), "%s%.*s", a1 < n && u[a1] == '/' ? "" : "/",
                          (int)(n - a1), u + a1);
        char scheme[6];
        for (size_t i = 0; i < sl; i++)
            scheme[i] = (char)tolower((unsigned char)u[i]);
        if (zt_http_head_set_part(h, &h->scheme, scheme, sl) < 0 ||
            zt_http_head_set_part(h, &h->authority, u + a0, a1 - a0) < 0 ||
            zt_http_head_set_part(h, &h->path, path, (size_t)pl) < 0)
            return fail(p, ZT_HTTP1_E_HEAD_TOO_BIG);
        return 0;
    }
    if (zt_http_head_set_part(h, &h->path, u, n) < 0)
        return fail(p, ZT_HTTP1_E_HEAD_TOO_BIG);
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    struct zt_http1_parser *p = hp->data;
    struct zt_http_head *h = &p->head;
    struct zt_http1_framing *f = &p->framing;
    if (commit_field(p) < 0)
        return -1;
    if (hp->http_major != 1 || hp->http_minor > 1)
        return fail(p, ZT_HTTP1_E_VERSION);
    h->version = hp->http_minor;
    int status = hp->status_code;
    if (p->is_response) {
        if (status < 100 || status > 599 || (status == 101 && !p->expect_upgrade))
            return fail(p, ZT_HTTP1_E_STATUS);
        h->status = status;
    } else {
        if (set_target(p) < 0)
            return -1;
        if (!p->host_seen && hp->http_minor == 1)
            return fail(p, ZT_HTTP1_E_NO_HOST);
    }
    size_t n_te = zt_http_head_count(h, "transfer-encoding");
    bool has_cl = zt_http_head_get(h, "content-length") != NULL;
    if (n_te && has_cl)
        return fail(p, ZT_HTTP1_E_CL_AND_TE);
    /* HTTP/1.0 has no transfer codings: its framing is faulty (RFC 9112 6.1). */
    if (n_te > 1 ||
        (n_te == 1 && strcasecmp(zt_http_head_get(h, "transfer-encoding"), "chunked")) ||
        (n_te && hp->http_minor == 0))
        return fail(p, ZT_HTTP1_E_TRANSFER_ENCODING);

    /* What the library is to do next: 0 read the body it sees, 1 no body
     * (RFC 9112 6.3: responses to HEAD, 1xx, 204, 304), 2 no body and the
     * rest is a tunnel. */
    int next = 0;
    bool upgrade = hp->upgrade;
    if (p->is_response) {
        upgrade = status == 101 || (p->expect_connect && status / 100 == 2);
        p->interim = status / 100 == 1 && status != 101;
        if (upgrade)
            next = 2;
        else if (p->expect_head || status / 100 == 1 || status == 204 || status == 304)
            next = 1;
    }
    if (next)
        hp->flags |= F_SKIPBODY; /* also set by the library; keep-alive reads it */
    bool chunked = !next && n_te;
    bool has_len = !next && !chunked && has_cl;
    f->chunked = chunked;
    f->has_length = has_len;
    f->length = has_len ? hp->content_length : 0;
    f->until_close = p->is_response && !next && !chunked && !has_cl;
    f->has_body = chunked || (has_len && f->length > 0) || f->until_close;
    if (upgrade && (!p->is_response && hp->method == HTTP_CONNECT))
        f->has_body = f->chunked = f->has_length = false, f->length = 0;
    f->is_upgrade = upgrade;
    f->is_interim = p->interim;
    f->keep_alive = http_should_keep_alive(hp) != 0;
    const char *expect = zt_http_head_get(h, "expect");
    f->expect_continue = !p->is_response && expect && strcasecmp(expect, "100-continue") == 0;
    p->why = PW_HEAD;
    http_parser_pause(hp, 1);
    return next;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    struct zt_http1_parser *p = hp->data;
    if (p->ops->on_body && n)
        p->ops->on_body(p->ud, (const uint8_t *)at, n);
    return 0;
}

static int on_chunk_header(http_parser *hp)
{
    struct zt_http1_parser *p = hp->data;
    p->why = PW_CHUNK;
    if (hp->content_length == 0) {
        /* The last chunk: trailers follow. */
        p->cur = &p->trailers;
        p->n_seen = 0;
        p->why = PW_TRAILERS;
    }
    http_parser_pause(hp, 1);
    return 0;
}

static int on_chunk_complete(http_parser *hp)
{
    struct zt_http1_parser *p = hp->data;
    if (!(hp->flags & F_TRAILING)) {
        p->why = PW_CHUNK;
        http_parser_pause(hp, 1);
    }
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    struct zt_http1_parser *p = hp->data;
    if (commit_field(p) < 0)
        return -1;
    p->why = PW_DONE;
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
    .on_chunk_complete = on_chunk_complete,
};

/* ---- the parser --------------------------------------------------------- */

static void reset_message(struct zt_http1_parser *p)
{
    zt_http_head_reset(&p->head, p->is_response);
    zt_http_head_reset(&p->trailers, p->is_response);
    p->cur = &p->head;
    p->n_seen = 0;
    p->name_len = p->value_len = p->url_len = 0;
    p->in_value = p->host_seen = p->started = p->interim = p->want_pause = false;
    p->phase = PH_HEAD;
    p->prev = p->prev2 = 0;
    memset(&p->framing, 0, sizeof(p->framing));
}

struct zt_http1_parser *zt_http1_parser_new(bool is_response, const struct zt_http1_ops *ops,
                                            void *ud)
{
    struct zt_http1_parser *p = calloc(1, sizeof(*p));
    if (!p)
        abort();
    http_parser_init(&p->hp, is_response ? HTTP_RESPONSE : HTTP_REQUEST);
    p->hp.data = p;
    p->ops = ops;
    p->ud = ud;
    p->is_response = is_response;
    zt_http_head_init(&p->head, is_response);
    zt_http_head_init(&p->trailers, is_response);
    reset_message(p);
    return p;
}

void zt_http1_parser_shrink(struct zt_http1_parser *p)
{
    if (p->state != ZT_HTTP1_ST_DONE && (p->state != ZT_HTTP1_ST_HEAD || p->started))
        return;
    zt_http_head_cleanup(&p->head);
    zt_http_head_cleanup(&p->trailers);
    zt_http_head_init(&p->head, p->is_response);
    zt_http_head_init(&p->trailers, p->is_response);
    free(p->name);
    free(p->value);
    free(p->url);
    p->name = p->value = p->url = NULL;
    p->name_len = p->value_len = p->url_len = 0;
    p->name_cap = p->value_cap = p->url_cap = 0;
}

void zt_http1_parser_free(struct zt_http1_parser *p)
{
    if (!p)
        return;
    zt_http_head_cleanup(&p->head);
    zt_http_head_cleanup(&p->trailers);
    free(p->name);
    free(p->value);
    free(p->url);
    free(p);
}

/* The library's verdict, as one of ours. at is where it stopped. */
static enum zt_http1_error classify(struct zt_http1_parser *p, enum http_errno he, const char *at,
                                    size_t left)
{
    switch (he) {
    case HPE_HEADER_OVERFLOW:
        return ZT_HTTP1_E_HEAD_TOO_BIG;
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        if (zt_http_head_get(&p->head, "transfer-encoding") || name_is(p, "transfer-encoding"))
            return ZT_HTTP1_E_CL_AND_TE;
        return ZT_HTTP1_E_MULTIPLE_CL;
    case HPE_INVALID_CONTENT_LENGTH:
        return p->phase == PH_HEAD ? ZT_HTTP1_E_BAD_CL : ZT_HTTP1_E_CHUNK;
    case HPE_INVALID_CHUNK_SIZE:
        return ZT_HTTP1_E_CHUNK;
    case HPE_INVALID_TRANSFER_ENCODING:
        return ZT_HTTP1_E_TRANSFER_ENCODING;
    case HPE_INVALID_VERSION:
        return ZT_HTTP1_E_VERSION;
    case HPE_INVALID_STATUS:
        return ZT_HTTP1_E_STATUS;
    case HPE_INVALID_URL:
    case HPE_INVALID_HOST:
    case HPE_INVALID_PORT:
    case HPE_INVALID_PATH:
    case HPE_INVALID_QUERY_STRING:
    case HPE_INVALID_FRAGMENT:
        return ZT_HTTP1_E_TARGET;
    case HPE_LF_EXPECTED:
        return ZT_HTTP1_E_LINE_END;
    case HPE_INVALID_HEADER_TOKEN: {
        /* Names refuse separators, values only control characters. */
        unsigned char c = left ? (unsigned char)*at : 0;
        return (c < 0x20 && c != '\t') || c == 0x7f ? ZT_HTTP1_E_FIELD_VALUE
                                                    : ZT_HTTP1_E_FIELD_NAME;
    }
    default:
        return ZT_HTTP1_E_SYNTAX;
    }
}

/* Heads and trailers: every line ends in CRLF, none is folded. */
static int scan_lines(struct zt_http1_parser *p, const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = d[i];
        if ((p->prev == '\r') != (c == '\n'))
            return fail(p, ZT_HTTP1_E_LINE_END);
        if (p->prev == '\n' && (c == ' ' || c == '\t'))
            return fail(p, ZT_HTTP1_E_OBS_FOLD);
        p->prev = c;
    }
    return 0;
}

static void track(struct zt_http1_parser *p, const uint8_t *d, size_t n)
{
    if (n >= 2) {
        p->prev2 = d[n - 2];
        p->prev = d[n - 1];
    } else if (n == 1) {
        p->prev2 = p->prev;
        p->prev = d[0];
    }
}

/* After a message ended (the library is paused): report it. */
static void end_message(struct zt_http1_parser *p)
{
    p->state = p->framing.is_upgrade ? ZT_HTTP1_ST_UPGRADED : ZT_HTTP1_ST_DONE;
    p->closed = !p->framing.keep_alive;
    if (p->ops->on_message_end)
        p->ops->on_message_end(p->ud, p->framing.chunked ? &p->trailers : NULL);
}

int zt_http1_parse(struct zt_http1_parser *p, const uint8_t *data, size_t len, size_t *consumed)
{
    size_t off = 0;
    *consumed = 0;
    if (p->state == ZT_HTTP1_ST_ERROR)
        return err_code(p->err);
    if (p->state == ZT_HTTP1_ST_DONE || p->state == ZT_HTTP1_ST_UPGRADED)
        return 0;
    if (p->closed && len > 0) {
        fail(p, ZT_HTTP1_E_AFTER_CLOSE);
        goto fail;
    }
    while (off < len) {
        const uint8_t *d = data + off;
        size_t left = len - off;
        size_t n = http_parser_execute(&p->hp, &settings, (const char *)d, left);
        enum http_errno he = HTTP_PARSER_ERRNO(&p->hp);
        if (p->err != ZT_HTTP1_E_NONE || (he != HPE_OK && he != HPE_PAUSED)) {
            enum zt_http1_error e = p->err;
            if (e == ZT_HTTP1_E_NONE)
                e = classify(p, he, (const char *)d + n, left - n);
            /* A bad line end before the failure wins, so that where the
             * input was cut (which moves where a callback runs) does not
             * change the verdict. */
            p->err = ZT_HTTP1_E_NONE;
            if (p->phase == PH_BODY || scan_lines(p, d, n < left ? n : left) == 0)
                p->err = e;
            goto fail;
        }
        enum pause_why why = he == HPE_PAUSED ? p->why : PW_NONE;
        p->why = PW_NONE;
        if (p->phase == PH_BODY) {
            track(p, d, n);
        } else if (scan_lines(p, d, n) < 0) {
            goto fail;
        }
        off += n;
        switch (why) {
        case PW_NONE:
            break;
        case PW_HEAD:
            /* Stopped before the head's last LF, which is read again. */
            if (off >= len || data[off] != '\n' || p->prev != '\r') {
                fail(p, ZT_HTTP1_E_LINE_END);
                goto fail;
            }
            p->phase = PH_BODY;
            p->state = ZT_HTTP1_ST_BODY;
            http_parser_pause(&p->hp, 0);
            if (p->ops->on_head)
                p->ops->on_head(p->ud, &p->head, &p->framing);
            if (p->want_pause) {
                p->want_pause = false;
                goto out;
            }
            break;
        case PW_TRAILERS:
            if (p->prev2 != '\r' || p->prev != '\n') {
                fail(p, ZT_HTTP1_E_CHUNK);
                goto fail;
            }
            p->phase = PH_TRAILER;
            p->prev = '\n';
            http_parser_pause(&p->hp, 0);
            break;
        case PW_CHUNK:
            if (p->prev2 != '\r' || p->prev != '\n') {
                fail(p, ZT_HTTP1_E_CHUNK);
                goto fail;
            }
            http_parser_pause(&p->hp, 0);
            break;
        case PW_DONE:
            if (p->interim) {
                /* 100 Continue and the like: the final response follows. */
                reset_message(p);
                p->state = ZT_HTTP1_ST_HEAD;
                http_parser_pause(&p->hp, 0);
                break;
            }
            end_message(p);
            goto out;
        }
    }
out:
    *consumed = off;
    return 0;
fail:
    p->state = ZT_HTTP1_ST_ERROR;
    *consumed = off;
    return err_code(p->err);
}

int zt_http1_parse_eof(struct zt_http1_parser *p)
{
    if (p->state == ZT_HTTP1_ST_ERROR)
        return err_code(p->err);
    if (p->state == ZT_HTTP1_ST_DONE || p->state == ZT_HTTP1_ST_UPGRADED)
        return 0;
    if (p->state == ZT_HTTP1_ST_HEAD && !p->started)
        return 0;
    if (p->state == ZT_HTTP1_ST_BODY && p->phase == PH_BODY && p->framing.until_close) {
        http_parser_execute(&p->hp, &settings, NULL, 0);
        if (p->why == PW_DONE) {
            p->why = PW_NONE;
            end_message(p);
            return 0;
        }
    }
    fail(p, ZT_HTTP1_E_TRUNCATED);
    p->state = ZT_HTTP1_ST_ERROR;
    return err_code(p->err);
}

void zt_http1_parser_pause(struct zt_http1_parser *p)
{
    p->want_pause = true;
}

void zt_http1_parser_resume(struct zt_http1_parser *p)
{
    if (p->state != ZT_HTTP1_ST_DONE && p->state != ZT_HTTP1_ST_UPGRADED)
        return;
    reset_message(p);
    p->state = ZT_HTTP1_ST_HEAD;
    http_parser_pause(&p->hp, 0);
}

void zt_http1_parser_expect(struct zt_http1_parser *p, const char *method, bool upgrade)
{
    p->expect_head = method && strcmp(method, "HEAD") == 0;
    p->expect_connect = method && strcmp(method, "CONNECT") == 0;
    p->expect_upgrade = upgrade;
}

enum zt_http1_state zt_http1_parser_state(const struct zt_http1_parser *p)
{
    return p->state;
}

enum zt_http1_error zt_http1_parser_error(const struct zt_http1_parser *p)
{
    return p->err;
}

const char *zt_http1_parser_reason(const struct zt_http1_parser *p)
{
    return zt_http1_error_str(p->err);
}

struct zt_http_head *zt_http1_parser_head(struct zt_http1_parser *p)
{
    return p->state == ZT_HTTP1_ST_HEAD ? NULL : &p->head;
}

void zt_http1_parser_take_head(struct zt_http1_parser *p, struct zt_http_head *out)
{
    *out = p->head;
    zt_http_head_init(&p->head, p->is_response);
}

/* ---- encoding ----------------------------------------------------------- */

const char *zt_http1_reason_phrase(int status)
{
    const char *s = http_status_str((enum http_status)status);
    return strcmp(s, "<unknown>") == 0 ? "" : s;
}

static bool fields_ok(const struct zt_http_head *h)
{
    for (size_t i = 0; i < h->n_fields; i++) {
        const struct zt_http_field *f = &h->fields[i];
        if (!is_token(f->name, strlen(f->name)) || !is_value(f->value, strlen(f->value)))
            return false;
    }
    return true;
}

static void put(struct zt_buf *out, const char *s)
{
    zt_buf_append(out, s, strlen(s));
}

static void put_fields(const struct zt_http_head *h, struct zt_buf *out, bool skip_host)
{
    for (size_t i = 0; i < h->n_fields; i++) {
        if (skip_host && strcmp(h->fields[i].name, "host") == 0)
            continue;
        put(out, h->fields[i].name);
        put(out, ": ");
        put(out, h->fields[i].value);
        put(out, "\r\n");
    }
}

int zt_http1_encode_head(const struct zt_http_head *h, struct zt_buf *out)
{
    if (!fields_ok(h))
        return ZT_E_PROTO;
    if (h->is_response) {
        if (h->status < 100 || h->status > 599)
            return ZT_E_PROTO;
        char line[64];
        snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", h->status,
                 zt_http1_reason_phrase(h->status));
        put(out, line);
        put_fields(h, out, false);
    } else {
        if (!h->method || !is_token(h->method, strlen(h->method)) || !h->path || !*h->path ||
            !is_visible(h->path, strlen(h->path)) ||
            (h->authority && !is_authority(h->authority, strlen(h->authority))))
            return ZT_E_PROTO;
        put(out, h->method);
        put(out, " ");
        put(out, h->path);
        put(out, " HTTP/1.1\r\n");
        if (h->authority) {
            put(out, "host: ");
            put(out, h->authority);
            put(out, "\r\n");
        }
        put_fields(h, out, h->authority != NULL);
    }
    put(out, "\r\n");
    return 0;
}

void zt_http1_encode_chunk_header(struct zt_buf *out, size_t len)
{
    char line[32];
    int n = snprintf(line, sizeof(line), "%zx\r\n", len);
    zt_buf_append(out, line, (size_t)n);
}

void zt_http1_encode_chunk_end(struct zt_buf *out)
{
    put(out, "\r\n");
}

int zt_http1_encode_last_chunk(const struct zt_http_head *trailers, struct zt_buf *out)
{
    if (trailers && !fields_ok(trailers))
        return ZT_E_PROTO;
    put(out, "0\r\n");
    if (trailers)
        put_fields(trailers, out, false);
    put(out, "\r\n");
    return 0;
}

/* ---- hop-by-hop fields -------------------------------------------------- */

int zt_http1_strip_hop_by_hop(struct zt_http_head *h, bool is_upgrade)
{
    static const char *const fixed[] = {"keep-alive", "proxy-connection", "te",
                                        "transfer-encoding"};
    /* Every field a Connection header names goes too, except the framing:
     * the names of all Connection fields, joined, then removed. */
    size_t n = 0;
    for (size_t i = 0; i < h->n_fields; i++)
        if (strcmp(h->fields[i].name, "connection") == 0)
            n += strlen(h->fields[i].value) + 1;
    char small[256];
    char *list = n < sizeof(small) ? small : malloc(n + 1);
    if (!list)
        abort();
    list[0] = '\0';
    for (size_t i = 0; i < h->n_fields; i++) {
        if (strcmp(h->fields[i].name, "connection") == 0) {
            strcat(list, h->fields[i].value);
            strcat(list, ",");
        }
    }
    zt_http_head_remove(h, "connection");
    char *save = NULL;
    for (char *t = strtok_r(list, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
        if (strcasecmp(t, "content-length") == 0 || (is_upgrade && strcasecmp(t, "upgrade") == 0))
            continue;
        zt_http_head_remove(h, t);
    }
    if (list != small)
        free(list);
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        zt_http_head_remove(h, fixed[i]);
    if (!is_upgrade) {
        zt_http_head_remove(h, "upgrade");
        return 0;
    }
    if (!zt_http_head_get(h, "upgrade"))
        return 0;
    return zt_http_head_set(h, "connection", "upgrade") < 0 ? ZT_E_TOO_BIG : 0;
}
