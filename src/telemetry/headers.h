/* The three telemetry headers carried on an HBONE CONNECT (wire facts §2.3)
 * and on its 200 response: `baggage` (W3C Baggage, describing the sending
 * workload), `forwarded` (RFC 7239, the client address and destination
 * service host) and `traceparent` (W3C Trace Context).
 *
 * Sans-I/O and allocation-free: parsers read (s, len) and write into fixed
 * caller-owned storage; formatters write into caller buffers. The input never
 * needs to be NUL-terminated and may hold any bytes; the parsers never read
 * past len and never fail other than by returning an error code.
 *
 * Rules shared by every function here:
 * - Every decoded value is printable ASCII (0x20-0x7e) of at most
 *   ZT_TELEMETRY_VALUE_MAX bytes. A value that is longer, or decodes to
 *   anything else, is DROPPED (treated as absent), never truncated: a
 *   truncated workload or host name would name something else.
 * - Inputs longer than ZT_TELEMETRY_HEADER_MAX are rejected whole.
 * - Whitespace (SP, HTAB) around list items, parameters and '=' is ignored.
 * - On error, outputs are left empty (zeroed / ""), never half-filled. */
#ifndef ZT_TELEMETRY_HEADERS_H
#define ZT_TELEMETRY_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZT_TELEMETRY_VALUE_MAX 253   /* longest kept value (a DNS name) */
#define ZT_TELEMETRY_HEADER_MAX 8192 /* longest header parsed (W3C baggage limit) */
#define ZT_TELEMETRY_TRACEPARENT_LEN 55

/* ---- baggage ------------------------------------------------------------ */

/* The source (request) or destination (response) workload as Istio describes
 * it in baggage. Every field is a NUL-terminated string, "" when absent. */
struct zt_telemetry_baggage {
    char cluster[ZT_TELEMETRY_VALUE_MAX + 1];    /* k8s.cluster.name */
    char namespace_[ZT_TELEMETRY_VALUE_MAX + 1]; /* k8s.namespace.name */
    char workload[ZT_TELEMETRY_VALUE_MAX + 1];   /* k8s.<workload_type>.name */
    char workload_type[16];                      /* deployment|cronjob|pod|job */
    char service[ZT_TELEMETRY_VALUE_MAX + 1];    /* service.name */
    char version[ZT_TELEMETRY_VALUE_MAX + 1];    /* service.version */
    char region[ZT_TELEMETRY_VALUE_MAX + 1];     /* cloud.region */
    char zone[ZT_TELEMETRY_VALUE_MAX + 1];       /* cloud.availability_zone */
    bool any;                                    /* at least one field set */
};

/* Parses a baggage header value: comma-separated `key=value` members, each
 * optionally followed by `;property` parts, which are ignored. Values are
 * percent-decoded (%XX, either hex case). Keys match exactly (case-sensitive);
 * unknown keys are ignored.
 *
 * Per member, leniently: an empty member, a member that is not
 * `token = *baggage-octet` or has a bad %-escape, and a value that is empty,
 * too long or decodes to non-ASCII are skipped. For duplicate keys the first
 * member that yields a value wins (so `k=,k=v` gives v). All four
 * k8s.{deployment,cronjob,pod,job}.name keys share the one workload slot.
 *
 * s is borrowed (len bytes, no NUL needed); out is caller-owned and fully
 * overwritten. Returns 0 (out->any says whether anything was learned; an
 * empty or blank header is 0 with nothing set), or ZT_E_PROTO with out
 * zeroed when the header is unusable as a whole: longer than
 * ZT_TELEMETRY_HEADER_MAX, holding a byte other than HTAB or 0x20-0x7e, or
 * non-blank without a single well-formed member. */
int zt_telemetry_baggage_parse(const char *s, size_t len, struct zt_telemetry_baggage *out);

/* Formats b as a baggage header value into buf (cap bytes, NUL-terminated on
 * success, "" on failure when cap > 0): only non-empty fields, in the order
 * cluster, namespace, workload, service, version, region, zone, joined by ','
 * with no spaces; characters outside the baggage-octet set (space, '"', ',',
 * ';', '\\') and '%' are percent-encoded. b->any is not read; workload_type is
 * only read when workload is set.
 *
 * b and buf are borrowed. Returns the length written (excluding the NUL),
 * ZT_E_TOO_BIG when buf is too small or a field is not NUL-terminated within
 * ZT_TELEMETRY_VALUE_MAX bytes, or ZT_E_PROTO when a value holds a byte
 * outside 0x20-0x7e or workload is set with a workload_type other than the
 * four above (zt_telemetry_baggage_parse could not read either back). */
int zt_telemetry_baggage_format(const struct zt_telemetry_baggage *b, char *buf, size_t cap);

/* ---- forwarded ---------------------------------------------------------- */

/* Parses the FIRST element of a Forwarded header (up to the first ',' outside
 * a quoted string; later elements are not examined) and returns its host=
 * and for= parameters, unquoted and unescaped. Parameter names are
 * case-insensitive; unknown ones are ignored; a repeated one keeps its first
 * value; empty pairs (";;") are allowed. Unquoted values are taken leniently
 * (any visible character but ';', ',' and '"', so for=10.0.0.1:80 works).
 *
 * host/for_ are caller buffers of host_cap/for_cap bytes, each may be NULL
 * (or cap 0) when not wanted; they receive "" when the parameter is absent,
 * empty, or its value does not fit in min(cap - 1, ZT_TELEMETRY_VALUE_MAX).
 * s is borrowed. Returns 0, or ZT_E_PROTO (both outputs "") when the first
 * element is malformed: a pair without a token name or '=', an unterminated
 * quoted string, a non-ASCII or control byte, junk after a value, or an input
 * longer than ZT_TELEMETRY_HEADER_MAX. An empty input is 0 with both "". */
int zt_telemetry_forwarded_parse(const char *s, size_t len, char *host, size_t host_cap, char *for_,
                                 size_t for_cap);

/* Formats `for="<for_>";host=<host>` into buf (NUL-terminated; "" on failure
 * when cap > 0). NULL or "" values are omitted; for= is always quoted (it
 * usually holds ':'), host= only when it is not a plain token; '"' and '\\'
 * are backslash-escaped. All arguments borrowed. Returns the length written,
 * ZT_E_TOO_BIG when buf is too small or a value is longer than
 * ZT_TELEMETRY_VALUE_MAX, or ZT_E_PROTO when a value holds a byte outside
 * 0x20-0x7e. */
int zt_telemetry_forwarded_format(const char *for_, const char *host, char *buf, size_t cap);

/* ---- traceparent -------------------------------------------------------- */

struct zt_telemetry_traceparent {
    char trace_id[33];  /* 32 lowercase hex digits, not all zero */
    char parent_id[17]; /* 16 lowercase hex digits, not all zero */
    uint8_t flags;      /* bit 0: sampled */
};

/* Parses `VV-<trace_id>-<parent_id>-FF` (W3C Trace Context, version 00).
 * All hex must be lowercase; ids must not be all zero; version ff is
 * invalid. Version 00 must be exactly ZT_TELEMETRY_TRACEPARENT_LEN bytes;
 * a later version may carry more after a '-' (ignored, per the spec's
 * forward-compatibility rule). Surrounding whitespace is ignored.
 *
 * s is borrowed; out is caller-owned. Returns 0, or ZT_E_PROTO with out
 * zeroed. */
int zt_telemetry_traceparent_parse(const char *s, size_t len, struct zt_telemetry_traceparent *out);

/* Formats tp as a version-00 traceparent into buf (NUL-terminated; "" on
 * failure when cap > 0). Both borrowed. Returns ZT_TELEMETRY_TRACEPARENT_LEN,
 * ZT_E_TOO_BIG when cap <= that length, or ZT_E_PROTO when tp's ids are not
 * valid (as zt_telemetry_traceparent_parse would reject them). */
int zt_telemetry_traceparent_format(const struct zt_telemetry_traceparent *tp, char *buf,
                                    size_t cap);

/* Fills tp with fresh random trace and parent ids (zt_random; never all
 * zero) and flags 00, as the client does per connection. tp is caller-owned. */
void zt_telemetry_traceparent_new(struct zt_telemetry_traceparent *tp);

/* The traceparent a hop that is a span of its own sends on (W3C Trace
 * Context, "mutating the traceparent field"): for a valid incoming value
 * (in, len bytes, as zt_telemetry_traceparent_parse reads it; a later
 * version is read as version 00), the same trace id and flags with a new
 * random parent id, the hop's span id, never the incoming one; for none
 * (in NULL) or an invalid one, a new trace as zt_telemetry_traceparent_new
 * (flags 00). in borrowed; out caller-owned, always valid for
 * zt_telemetry_traceparent_format. Returns true when the incoming trace
 * is continued. */
bool zt_telemetry_traceparent_child(const char *in, size_t len,
                                    struct zt_telemetry_traceparent *out);

#endif
