/* baggage, forwarded and traceparent: parsers and formatters.
 *
 * These headers come from peers we authenticate but do not trust to be well
 * formed, and what we read from them only feeds labels and logs. So the
 * parsers are lenient where a partial answer is still right (skip a bad
 * baggage member, ignore unknown keys) and strict where a guess could be wrong
 * (drop a too-long value instead of truncating it). Everything is bounded by
 * the input length and fixed caps; nothing allocates. */
#include "telemetry/headers.h"

#include "base/err.h"
#include "base/random.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- character classes (RFC 9110 token, W3C baggage-octet) -------------- */

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static bool is_printable(unsigned char c)
{
    return c >= 0x20 && c <= 0x7e;
}

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E: printable ASCII except
 * space, '"', ',', ';' and '\'. */
static bool is_baggage_octet(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e && c != '"' && c != ',' && c != ';' && c != '\\';
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_lower_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void trim_ows(const char **s, size_t *len)
{
    while (*len > 0 && is_ows((unsigned char)(*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_ows((unsigned char)(*s)[*len - 1]))
        (*len)--;
}

/* Bounded string copy for values already known to fit. */
static void copy_value(char *dst, size_t dst_cap, const char *src, size_t n)
{
    if (!dst || dst_cap == 0 || n >= dst_cap)
        return;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---- output buffer used by the formatters ------------------------------- */

struct out_buf {
    char *p;
    size_t cap, len;
    bool overflow;
};

static void put(struct out_buf *o, const char *s, size_t n)
{
    /* One byte stays reserved for the NUL. */
    if (o->overflow || n >= o->cap - o->len) {
        o->overflow = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_str(struct out_buf *o, const char *s)
{
    put(o, s, strlen(s));
}

static int finish(struct out_buf *o, int err)
{
    if (!err && o->overflow)
        err = ZT_E_TOO_BIG;
    if (o->cap > 0)
        o->p[err ? 0 : o->len] = '\0';
    return err ? err : (int)o->len;
}

/* Length of a caller-supplied value, or -1 when it has no NUL within
 * ZT_TELEMETRY_VALUE_MAX bytes (or within its array). */
static int value_len(const char *v, size_t array_size)
{
    size_t max = array_size < ZT_TELEMETRY_VALUE_MAX + 1 ? array_size : ZT_TELEMETRY_VALUE_MAX + 1;
    size_t n = strnlen(v, max);
    return n == max ? -1 : (int)n;
}

static bool all_printable(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_printable((unsigned char)v[i]))
            return false;
    return true;
}

/* ---- baggage ------------------------------------------------------------ */

/* The keys Istio writes, each with the field it fills. The workload keys are
 * handled apart because four keys share one field and name its type. */
static const struct {
    const char *key;
    size_t offset;
} baggage_keys[] = {
    {"k8s.cluster.name", offsetof(struct zt_telemetry_baggage, cluster)},
    {"k8s.namespace.name", offsetof(struct zt_telemetry_baggage, namespace_)},
    {"service.name", offsetof(struct zt_telemetry_baggage, service)},
    {"service.version", offsetof(struct zt_telemetry_baggage, version)},
    {"cloud.region", offsetof(struct zt_telemetry_baggage, region)},
    {"cloud.availability_zone", offsetof(struct zt_telemetry_baggage, zone)},
};

static const char *const workload_types[] = {"deployment", "cronjob", "pod", "job"};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static bool key_is(const char *key, size_t klen, const char *want)
{
    return strlen(want) == klen && memcmp(key, want, klen) == 0;
}

/* Returns the workload type named by a `k8s.<type>.name` key, or NULL. */
static const char *workload_type_of(const char *key, size_t klen)
{
    static const char pre[] = "k8s.", suf[] = ".name";
    size_t np = sizeof(pre) - 1, ns = sizeof(suf) - 1;

    if (klen <= np + ns || memcmp(key, pre, np) != 0 || memcmp(key + klen - ns, suf, ns) != 0)
        return NULL;
    for (size_t i = 0; i < N_ELEMS(workload_types); i++)
        if (key_is(key + np, klen - np - ns, workload_types[i]))
            return workload_types[i];
    return NULL;
}

/* Percent-decodes v[0..n) (already checked to be baggage-octets) into dst,
 * which holds ZT_TELEMETRY_VALUE_MAX + 1 bytes. Returns the decoded length;
 * -1 for a malformed escape (a syntax error); -2 when the result is too long
 * or not printable ASCII (well formed, but not a value we keep). */
static int decode_value(const char *v, size_t n, char *dst)
{
    size_t out = 0;
    bool keep = true;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '%') {
            if (n - i < 3)
                return -1;
            int hi = hex_value((unsigned char)v[i + 1]);
            int lo = hex_value((unsigned char)v[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (!is_printable(c) || out == ZT_TELEMETRY_VALUE_MAX)
            keep = false;
        else
            dst[out++] = (char)c;
    }
    dst[out] = '\0';
    return keep ? (int)out : -2;
}

/* Parses one member (the text between commas). Returns true when it is well
 * formed, whether or not it set anything. */
static bool parse_member(const char *m, size_t n, struct zt_telemetry_baggage *out)
{
    char value[ZT_TELEMETRY_VALUE_MAX + 1];
    size_t i = 0, klen, vstart, vlen;
    int dlen;

    trim_ows(&m, &n);
    while (i < n && is_tchar((unsigned char)m[i]))
        i++;
    klen = i;
    if (klen == 0)
        return false;
    while (i < n && is_ows((unsigned char)m[i]))
        i++;
    if (i == n || m[i] != '=')
        return false;
    i++;
    while (i < n && is_ows((unsigned char)m[i]))
        i++;
    vstart = i;
    while (i < n && is_baggage_octet((unsigned char)m[i]))
        i++;
    vlen = i - vstart;
    while (i < n && is_ows((unsigned char)m[i]))
        i++;
    /* Anything after the value must start the ignored properties. */
    if (i < n && m[i] != ';')
        return false;

    dlen = decode_value(m + vstart, vlen, value);
    if (dlen == -1)
        return false;
    if (dlen <= 0)
        return true; /* empty, too long or non-ASCII: well formed, not kept */

    const char *type = workload_type_of(m, klen);
    if (type) {
        if (out->workload[0] == '\0') {
            memcpy(out->workload, value, (size_t)dlen + 1);
            strcpy(out->workload_type, type);
            out->any = true;
        }
        return true;
    }
    for (size_t k = 0; k < N_ELEMS(baggage_keys); k++) {
        if (key_is(m, klen, baggage_keys[k].key)) {
            char *field = (char *)out + baggage_keys[k].offset;
            if (field[0] == '\0') {
                memcpy(field, value, (size_t)dlen + 1);
                out->any = true;
            }
            break;
        }
    }
    return true;
}

int zt_telemetry_baggage_parse(const char *s, size_t len, struct zt_telemetry_baggage *out)
{
    bool blank = true, any_well_formed = false;
    size_t start = 0;

    memset(out, 0, sizeof(*out));
    if (len > ZT_TELEMETRY_HEADER_MAX)
        return ZT_E_PROTO;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '\t' && !is_printable(c))
            return ZT_E_PROTO;
        if (!is_ows(c))
            blank = false;
    }
    if (blank)
        return 0;

    /* Values cannot hold a raw ',' (it is not a baggage-octet), and nor can
     * properties, so every comma ends a member. */
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == ',') {
            if (parse_member(s + start, i - start, out))
                any_well_formed = true;
            start = i + 1;
        }
    }
    if (!any_well_formed) {
        memset(out, 0, sizeof(*out));
        return ZT_E_PROTO;
    }
    return 0;
}

static void put_baggage_value(struct out_buf *o, const char *v, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (is_baggage_octet(c) && c != '%') {
            put(o, (const char *)&c, 1);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            put(o, esc, 3);
        }
    }
}

/* Appends `key=value` (with a leading ',' after the first member) unless the
 * value is empty. Returns 0 or the error the whole format fails with. */
static int put_member(struct out_buf *o, const char *key, const char *v, size_t array_size)
{
    int n = value_len(v, array_size);

    if (n < 0)
        return ZT_E_TOO_BIG;
    if (n == 0)
        return 0;
    if (!all_printable(v, (size_t)n))
        return ZT_E_PROTO;
    if (o->len > 0)
        put(o, ",", 1);
    put_str(o, key);
    put(o, "=", 1);
    put_baggage_value(o, v, (size_t)n);
    return 0;
}

int zt_telemetry_baggage_format(const struct zt_telemetry_baggage *b, char *buf, size_t cap)
{
    struct out_buf o = {.p = buf, .cap = cap};
    char wkey[sizeof("k8s..name") + sizeof(b->workload_type)];
    int err;

    if (cap == 0)
        return ZT_E_TOO_BIG;
    if ((err = put_member(&o, "k8s.cluster.name", b->cluster, sizeof(b->cluster))))
        goto out;
    if ((err = put_member(&o, "k8s.namespace.name", b->namespace_, sizeof(b->namespace_))))
        goto out;
    if (b->workload[0] != '\0') {
        const char *type = NULL;
        size_t tlen = strnlen(b->workload_type, sizeof(b->workload_type));
        for (size_t i = 0; i < N_ELEMS(workload_types); i++)
            if (key_is(b->workload_type, tlen, workload_types[i]))
                type = workload_types[i];
        if (!type) {
            err = ZT_E_PROTO;
            goto out;
        }
        strcpy(wkey, "k8s.");
        strcat(wkey, type);
        strcat(wkey, ".name");
        if ((err = put_member(&o, wkey, b->workload, sizeof(b->workload))))
            goto out;
    }
    if ((err = put_member(&o, "service.name", b->service, sizeof(b->service))))
        goto out;
    if ((err = put_member(&o, "service.version", b->version, sizeof(b->version))))
        goto out;
    if ((err = put_member(&o, "cloud.region", b->region, sizeof(b->region))))
        goto out;
    err = put_member(&o, "cloud.availability_zone", b->zone, sizeof(b->zone));
out:
    return finish(&o, err);
}

/* ---- forwarded ---------------------------------------------------------- */

static bool name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* Hands a finished parameter value to its output if it is the first of its
 * name and fits both the caller's buffer and the value cap. */
static void store_param(char *dst, size_t dst_cap, bool *seen, const char *v, size_t n,
                        bool too_long)
{
    if (*seen)
        return;
    *seen = true;
    if (too_long || n > ZT_TELEMETRY_VALUE_MAX)
        return;
    copy_value(dst, dst_cap, v, n);
}

int zt_telemetry_forwarded_parse(const char *s, size_t len, char *host, size_t host_cap, char *for_,
                                 size_t for_cap)
{
    char value[ZT_TELEMETRY_VALUE_MAX + 1];
    bool seen_host = false, seen_for = false;
    size_t i = 0;
    int err = 0;

    if (host && host_cap > 0)
        host[0] = '\0';
    if (for_ && for_cap > 0)
        for_[0] = '\0';
    if (len > ZT_TELEMETRY_HEADER_MAX) {
        err = ZT_E_PROTO;
        goto out;
    }

    for (;;) {
        size_t name, nlen, vlen = 0;
        bool too_long = false;

        while (i < len && is_ows((unsigned char)s[i]))
            i++;
        if (i == len || s[i] == ',')
            break; /* end of the first element */
        if (s[i] == ';') {
            i++;
            continue; /* empty pair */
        }
        name = i;
        while (i < len && is_tchar((unsigned char)s[i]))
            i++;
        nlen = i - name;
        while (i < len && is_ows((unsigned char)s[i]))
            i++;
        if (nlen == 0 || i == len || s[i] != '=') {
            err = ZT_E_PROTO;
            goto out;
        }
        i++;
        while (i < len && is_ows((unsigned char)s[i]))
            i++;

        if (i < len && s[i] == '"') {
            bool closed = false;
            for (i++; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '"') {
                    closed = true;
                    i++;
                    break;
                }
                if (c == '\\') {
                    if (++i == len)
                        break;
                    c = (unsigned char)s[i];
                }
                if (!is_printable(c)) {
                    err = ZT_E_PROTO;
                    goto out;
                }
                if (vlen == ZT_TELEMETRY_VALUE_MAX)
                    too_long = true;
                else
                    value[vlen++] = (char)c;
            }
            if (!closed) {
                err = ZT_E_PROTO;
                goto out;
            }
        } else {
            for (; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == ';' || c == ',' || c == '"' || !is_printable(c) || c == ' ')
                    break;
                if (vlen == ZT_TELEMETRY_VALUE_MAX)
                    too_long = true;
                else
                    value[vlen++] = (char)c;
            }
        }
        while (i < len && is_ows((unsigned char)s[i]))
            i++;
        if (i < len && s[i] != ';' && s[i] != ',') {
            err = ZT_E_PROTO; /* junk after the value, or a byte we refuse */
            goto out;
        }

        if (name_is(s + name, nlen, "host"))
            store_param(host, host_cap, &seen_host, value, vlen, too_long);
        else if (name_is(s + name, nlen, "for"))
            store_param(for_, for_cap, &seen_for, value, vlen, too_long);
        if (i < len && s[i] == ';')
            i++;
    }
out:
    if (err) {
        if (host && host_cap > 0)
            host[0] = '\0';
        if (for_ && for_cap > 0)
            for_[0] = '\0';
    }
    return err;
}

static bool all_tchars(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)v[i]))
            return false;
    return n > 0;
}

static int put_param(struct out_buf *o, const char *name, const char *v, bool always_quote)
{
    size_t n;

    if (!v || v[0] == '\0')
        return 0;
    n = strnlen(v, ZT_TELEMETRY_VALUE_MAX + 1);
    if (n > ZT_TELEMETRY_VALUE_MAX)
        return ZT_E_TOO_BIG;
    if (!all_printable(v, n))
        return ZT_E_PROTO;
    if (o->len > 0)
        put(o, ";", 1);
    put_str(o, name);
    put(o, "=", 1);
    if (!always_quote && all_tchars(v, n)) {
        put(o, v, n);
        return 0;
    }
    put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '"' || v[i] == '\\')
            put(o, "\\", 1);
        put(o, v + i, 1);
    }
    put(o, "\"", 1);
    return 0;
}

int zt_telemetry_forwarded_format(const char *for_, const char *host, char *buf, size_t cap)
{
    struct out_buf o = {.p = buf, .cap = cap};
    int err;

    if (cap == 0)
        return ZT_E_TOO_BIG;
    if ((err = put_param(&o, "for", for_, true)))
        goto out;
    err = put_param(&o, "host", host, false);
out:
    return finish(&o, err);
}

/* ---- traceparent -------------------------------------------------------- */

/* Checks n lowercase hex digits that are not all zero. */
static bool valid_id(const char *id, size_t n)
{
    bool nonzero = false;

    for (size_t i = 0; i < n; i++) {
        if (!is_lower_hex((unsigned char)id[i]))
            return false;
        if (id[i] != '0')
            nonzero = true;
    }
    return nonzero;
}

static int lower_hex_byte(const char *p)
{
    if (!is_lower_hex((unsigned char)p[0]) || !is_lower_hex((unsigned char)p[1]))
        return -1;
    return hex_value((unsigned char)p[0]) << 4 | hex_value((unsigned char)p[1]);
}

int zt_telemetry_traceparent_parse(const char *s, size_t len, struct zt_telemetry_traceparent *out)
{
    int version, flags, err = ZT_E_PROTO;

    memset(out, 0, sizeof(*out));
    if (len > ZT_TELEMETRY_HEADER_MAX)
        goto out;
    trim_ows(&s, &len);
    if (len < ZT_TELEMETRY_TRACEPARENT_LEN)
        goto out;
    version = lower_hex_byte(s);
    if (version < 0 || version == 0xff)
        goto out;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        goto out;
    if (!valid_id(s + 3, 32) || !valid_id(s + 36, 16))
        goto out;
    flags = lower_hex_byte(s + 53);
    if (flags < 0)
        goto out;
    /* Version 00 has exactly four fields; a later version may append more,
     * which this version of the parser skips. */
    if (len > ZT_TELEMETRY_TRACEPARENT_LEN &&
        (version == 0 || s[ZT_TELEMETRY_TRACEPARENT_LEN] != '-'))
        goto out;

    memcpy(out->trace_id, s + 3, 32);
    memcpy(out->parent_id, s + 36, 16);
    out->flags = (uint8_t)flags;
    err = 0;
out:
    return err;
}

int zt_telemetry_traceparent_format(const struct zt_telemetry_traceparent *tp, char *buf,
                                    size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    struct out_buf o = {.p = buf, .cap = cap};
    char flags[2] = {hex[tp->flags >> 4], hex[tp->flags & 15]};
    int err = 0;

    if (cap == 0)
        return ZT_E_TOO_BIG;
    if (strnlen(tp->trace_id, sizeof(tp->trace_id)) != 32 || !valid_id(tp->trace_id, 32) ||
        strnlen(tp->parent_id, sizeof(tp->parent_id)) != 16 || !valid_id(tp->parent_id, 16)) {
        err = ZT_E_PROTO;
        goto out;
    }
    put(&o, "00-", 3);
    put(&o, tp->trace_id, 32);
    put(&o, "-", 1);
    put(&o, tp->parent_id, 16);
    put(&o, "-", 1);
    put(&o, flags, 2);
out:
    return finish(&o, err);
}

static void random_hex_id(char *dst, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[16];

    /* An all-zero id is invalid; with 64 or 128 random bits the retry is
     * theoretical, but it keeps the output valid by construction. */
    do {
        zt_random(raw, nbytes);
        for (size_t i = 0; i < nbytes; i++) {
            dst[2 * i] = hex[raw[i] >> 4];
            dst[2 * i + 1] = hex[raw[i] & 15];
        }
        dst[2 * nbytes] = '\0';
    } while (!valid_id(dst, 2 * nbytes));
}

void zt_telemetry_traceparent_new(struct zt_telemetry_traceparent *tp)
{
    memset(tp, 0, sizeof(*tp));
    random_hex_id(tp->trace_id, 16);
    random_hex_id(tp->parent_id, 8);
    tp->flags = 0;
}

bool zt_telemetry_traceparent_child(const char *in, size_t len,
                                    struct zt_telemetry_traceparent *out)
{
    struct zt_telemetry_traceparent parent;
    if (!in || zt_telemetry_traceparent_parse(in, len, &parent) < 0) {
        zt_telemetry_traceparent_new(out);
        return false;
    }
    *out = parent;
    do
        random_hex_id(out->parent_id, 8);
    while (strcmp(out->parent_id, parent.parent_id) == 0);
    return true;
}
