/* The waypoint's route table: HTTPRoute and GRPCRoute rules attached to the
 * services a waypoint serves, the Gateway API's precedence between them, and
 * the filters that rewrite a request or response head.
 *
 * Life cycle: a writer (the YAML loader in config/routes.h, or the control
 * plane) fills one struct zt_route_def per route object and hands it to a
 * builder; zt_route_builder_finish sorts every (rule, match) pair once and
 * returns an immutable, refcounted table. Worker threads then call
 * zt_route_select on it without locks; a new configuration is a new table
 * swapped in by the writer (zt_route_table_ref / _unref).
 *
 * Attachment (GAMMA, as Istio programs waypoints): a parentRef of kind
 * Service (group "" or "core") attaches a route to that service, on every
 * port or, with a port (or a sectionName naming the port), on that port
 * only. A parentRef of kind Gateway that
 * names the waypoint itself (the builder's waypoint namespace/name) applies
 * to every service the waypoint serves, on every port; its rules are merged
 * with the service's own in one precedence order. A Gateway parent naming
 * another Gateway attaches to nothing.
 *
 * Precedence (zt_route_select), over all rules of all routes attached to the
 * service and port; the first pair that matches wins:
 *   1. path kind: Exact, then PathPrefix, then RegularExpression, then no
 *      path. Regex after prefix is Istio's implementation-specific choice
 *      (its stable sort orders URI matches exact > prefix > regex > none);
 *      we follow it so the same route file behaves the same. PathPrefix "/"
 *      (also an HTTPRoute match without a path) is a prefix like any other,
 *      so, as in Istio, it outranks every regex; only a rule without
 *      matches (or a GRPCRoute match without a method) ranks as "no path";
 *   2. longer path value first (the pattern's length for regex);
 *   3. a method match first; 4. more header matches first; 5. more query
 *      parameter matches first;
 *   6. older route first (creation timestamp, routes without one after those
 *      with one, in load order), then namespace, then name (alphabetical),
 *      then rule order, then match order.
 * A rule without matches is one match-everything pair of the last path
 * kind (Istio sorts match-less routes last).
 *
 * Ownership: strings and arrays in the structs below are heap memory owned
 * by their struct (zt_xstrdup / zt_xcalloc); a def handed to the builder
 * becomes the table's. Everything a table returns is borrowed from it and
 * valid while the caller holds a reference. */
#ifndef ZT_ROUTE_ROUTE_H
#define ZT_ROUTE_ROUTE_H

#include "http/head.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Gateway API caps (the CRD's maxItems / maxLength). */
#define ZT_ROUTE_MAX_PATH 1024
#define ZT_ROUTE_MAX_MATCH_FIELDS 16 /* headers or query params in one match */
#define ZT_ROUTE_MAX_RETRY_CODES 16
#define ZT_ROUTE_MAX_ROUTES 100000

/* A compiled regular expression (pcre2, JIT when available). RE2 syntax as
 * the Gateway API says; backreferences and lookaround are refused so a
 * pattern means the same as in Istio. Matching is always a full match and
 * bounded (a pattern that backtracks past the limit does not match). */
struct zt_route_regex;

/* Compiles pattern. 0, or ZT_E_CONFIG with "<pcre2's message> at offset N"
 * (or why it is refused) in err. */
int zt_route_regex_new(const char *pattern, struct zt_route_regex **out, char *err, size_t errlen);
void zt_route_regex_free(struct zt_route_regex *re);
bool zt_route_regex_match(const struct zt_route_regex *re, const char *s, size_t len);

enum zt_route_path_kind {
    ZT_ROUTE_PATH_NONE,
    ZT_ROUTE_PATH_EXACT,
    ZT_ROUTE_PATH_PREFIX, /* segment-wise; the value is kept without a trailing '/' */
    ZT_ROUTE_PATH_REGEX
};

enum zt_route_str_kind { ZT_ROUTE_STR_EXACT, ZT_ROUTE_STR_REGEX };

/* A header (name lower-case, compared case-insensitively) or query
 * parameter (name exact) match. Regex: re set, value the pattern. */
struct zt_route_strmatch {
    enum zt_route_str_kind kind;
    char *name, *value;
    struct zt_route_regex *re;
};

struct zt_route_match {
    enum zt_route_path_kind path_kind;
    char *path; /* NULL for NONE; "" is PathPrefix "/" */
    struct zt_route_regex *path_re;
    char *method; /* NULL: any */
    struct zt_route_strmatch *headers;
    size_t n_headers;
    struct zt_route_strmatch *query;
    size_t n_query;
};

struct zt_route_header_mod {
    struct zt_http_field *set, *add; /* names lower-case */
    size_t n_set, n_add;
    char **remove;
    size_t n_remove;
};

enum zt_route_path_mod_kind {
    ZT_ROUTE_PATH_MOD_NONE,
    ZT_ROUTE_PATH_MOD_FULL,  /* ReplaceFullPath */
    ZT_ROUTE_PATH_MOD_PREFIX /* ReplacePrefixMatch: needs a PathPrefix match */
};

struct zt_route_path_mod {
    enum zt_route_path_mod_kind kind;
    char *value;
};

struct zt_route_redirect {
    char *scheme, *hostname; /* NULL: keep the request's */
    struct zt_route_path_mod path;
    uint16_t port; /* 0: derived (see zt_route_redirect_location) */
    int status;    /* 301, 302 (the default), 303, 307 or 308 */
};

struct zt_route_rewrite {
    char *hostname; /* NULL: keep */
    struct zt_route_path_mod path;
};

struct zt_route_backend {
    char *ns, *name; /* a Service */
    uint16_t port;
    uint32_t weight;
    bool invalid; /* unsupported kind: chosen by weight, answered with 500 */
};

/* Mirror a request when zt_route_mirror_hit says so (numerator out of
 * denominator; percent p is p/100; neither given is 100%). */
struct zt_route_mirror {
    struct zt_route_backend backend;
    uint32_t numerator, denominator;
};

struct zt_route_filters {
    struct zt_route_header_mod request, response;
    bool has_redirect, has_rewrite;
    struct zt_route_redirect redirect;
    struct zt_route_rewrite rewrite;
    struct zt_route_mirror *mirrors;
    size_t n_mirrors;
};

/* Retry conditions (Envoy's retry_on names). */
#define ZT_ROUTE_RETRY_CONNECT_FAILURE 0x01u
#define ZT_ROUTE_RETRY_REFUSED_STREAM 0x02u
#define ZT_ROUTE_RETRY_UNAVAILABLE 0x04u  /* gRPC status 14 */
#define ZT_ROUTE_RETRY_CANCELLED 0x08u    /* gRPC status 1 */
#define ZT_ROUTE_RETRY_STATUS_CODES 0x10u /* a status in codes[] */

struct zt_route_retry {
    uint32_t attempts; /* retries after the first try; 0: none */
    uint32_t on;       /* ZT_ROUTE_RETRY_* */
    uint16_t codes[ZT_ROUTE_MAX_RETRY_CODES];
    size_t n_codes;
    uint32_t backoff_ms;         /* base interval */
    uint32_t max_backoff_ms;     /* cap */
    uint32_t per_try_timeout_ms; /* 0: none */
};

/* Istio's waypoint default for a route without retry (and for the default
 * route to the service): 2 retries on connect-failure, refused-stream,
 * unavailable, cancelled and retriable status codes with an empty code
 * list (503 left Istio's default in 1.24), backoff 25 ms up to 250 ms. */
extern const struct zt_route_retry zt_route_retry_default;

struct zt_route_rule {
    char *name; /* NULL if unnamed */
    struct zt_route_match *matches;
    size_t n_matches; /* 0: matches every request */
    struct zt_route_filters filters;
    struct zt_route_backend *backends;
    size_t n_backends;
    uint32_t request_timeout_ms, backend_timeout_ms; /* 0: none */
    bool has_retry;
    struct zt_route_retry retry; /* per_try_timeout_ms unused here */
};

enum zt_route_parent_kind { ZT_ROUTE_PARENT_SERVICE, ZT_ROUTE_PARENT_GATEWAY };

struct zt_route_parent {
    enum zt_route_parent_kind kind;
    char *ns, *name;
    uint16_t port; /* 0: every port */
    char *section; /* Service: a port name (sectionName); NULL: every port */
};

enum zt_route_kind { ZT_ROUTE_HTTP, ZT_ROUTE_GRPC };

struct zt_route_def {
    enum zt_route_kind kind;
    char *ns, *name;
    bool has_created;
    int64_t created; /* metadata.creationTimestamp, Unix seconds */
    struct zt_route_parent *parents;
    size_t n_parents;
    char **hostnames; /* kept for /config_dump; not matched */
    size_t n_hostnames;
    struct zt_route_rule *rules;
    size_t n_rules;
};

/* Frees what a def owns and zeroes it. */
void zt_route_def_cleanup(struct zt_route_def *d);
const char *zt_route_kind_str(enum zt_route_kind k);

struct zt_route_builder;
struct zt_route_table;

/* waypoint_ns / waypoint_name (copied; NULL: Gateway parents attach to
 * nothing) name the waypoint this table is for. */
struct zt_route_builder *zt_route_builder_new(const char *waypoint_ns, const char *waypoint_name);
void zt_route_builder_free(struct zt_route_builder *b);
/* Takes ownership of *def's contents in every case (zeroed on return).
 * Returns 0; ZT_E_CONFIG for a second route of the same kind and
 * namespace/name (the first stays); ZT_E_TOO_BIG past ZT_ROUTE_MAX_ROUTES;
 * the reason in err. */
int zt_route_builder_add(struct zt_route_builder *b, struct zt_route_def *def, char *err,
                         size_t errlen);
/* Consumes b; never NULL. */
struct zt_route_table *zt_route_builder_finish(struct zt_route_builder *b);

struct zt_route_table *zt_route_table_ref(struct zt_route_table *t);
void zt_route_table_unref(struct zt_route_table *t);
size_t zt_route_table_count(const struct zt_route_table *t); /* routes */
/* The i-th route (i < zt_route_table_count), in load order; borrowed. */
const struct zt_route_def *zt_route_table_route_at(const struct zt_route_table *t, size_t i);
/* How many route objects the loader left out (invalid), for the table to
 * report (/config_dump); 0 unless set before zt_route_builder_finish. */
void zt_route_builder_set_left_out(struct zt_route_builder *b, size_t n);
size_t zt_route_table_left_out(const struct zt_route_table *t);

enum zt_route_outcome {
    ZT_ROUTE_DEFAULT,   /* no route for this service and port: forward to
                         * the service itself, default retry, no timeout */
    ZT_ROUTE_NOT_FOUND, /* routes exist, none matched: answer 404 */
    ZT_ROUTE_FORWARD,   /* send to backend (after the request filters) */
    ZT_ROUTE_REDIRECT,  /* answer with zt_route_redirect_location */
    ZT_ROUTE_NO_BACKEND /* no usable backend: answer 500 */
};
const char *zt_route_outcome_str(enum zt_route_outcome o);

/* The service a request was addressed to (the CONNECT authority's service
 * and the port as dialed). Strings borrowed for the call. */
struct zt_route_target {
    const char *ns, *name;
    uint16_t port;
    const char *port_name; /* the service port's name; NULL if unknown */
};

struct zt_route_result {
    enum zt_route_outcome outcome;
    /* All borrowed from the table; NULL for DEFAULT and NOT_FOUND (match
     * NULL too for a rule without matches). */
    const struct zt_route_def *route;
    const struct zt_route_rule *rule;
    const struct zt_route_match *match;
    const struct zt_route_filters *filters;
    const struct zt_route_backend *backend; /* FORWARD only */
    /* Effective policy (Istio's mapping): timeouts.request is the route
     * timeout; backendRequest is the per-try timeout when the rule has a
     * retry, else it replaces the route timeout. 0: none. */
    uint32_t timeout_ms;
    struct zt_route_retry retry;
};

/* Selects the route for req (a request head, borrowed) addressed to target.
 * rnd picks among weighted backends (rnd % total weight), so tests can
 * inject it. Always fills *out; returns 0. */
int zt_route_select(const struct zt_route_table *t, const struct zt_route_target *target,
                    const struct zt_http_head *req, uint32_t rnd, struct zt_route_result *out);

/* Applies a rule's request filters to req: header modifier (remove, then
 * set, then add, as Envoy orders them), then URLRewrite (hostname into
 * authority; path, keeping the query; ReplacePrefixMatch replaces the part
 * matched by m's PathPrefix). f and m borrowed (m may be NULL). 0, or
 * ZT_E_TOO_BIG when a value would pass the head's caps (req may then be
 * partly modified: the caller answers with an error, never forwards). */
int zt_route_apply_request(const struct zt_route_filters *f, const struct zt_route_match *m,
                           struct zt_http_head *req);
/* Applies the ResponseHeaderModifier to resp. 0 or ZT_E_TOO_BIG. */
int zt_route_apply_response(const struct zt_route_filters *f, struct zt_http_head *resp);

/* Writes the Location of a RequestRedirect for req into out (NUL-terminated)
 * and the status into *status. Scheme and host default to the request's
 * (scheme "http" if none; the host without its port); the port is the
 * redirect's, else 80/443 for an explicit http/https scheme, else
 * listener_port (the service port as dialed; 0: none), and is left out
 * when it is the scheme's default. The path as URLRewrite's. 0, or
 * ZT_E_TOO_BIG if out is too small (nothing usable written), or
 * ZT_E_PROTO if the request has no host to redirect to, or its host or
 * path hold control bytes (never copied into a header). */
int zt_route_redirect_location(const struct zt_route_redirect *r, const struct zt_route_match *m,
                               const struct zt_http_head *req, uint16_t listener_port, char *out,
                               size_t outlen, int *status);

/* Whether to mirror this request (rnd injected like zt_route_select's). */
bool zt_route_mirror_hit(const struct zt_route_mirror *m, uint32_t rnd);

/* Validity of header names (an RFC 9110 token, no ':' pseudo-headers) and
 * values (no CR, LF or NUL) that a filter may write. */
bool zt_route_header_name_ok(const char *name);
bool zt_route_header_value_ok(const char *value);

/* A list of diagnostics about route objects (from the YAML loader or the
 * control plane), for the caller to log: errors (the object was rejected)
 * and warnings (loaded, something ignored). Messages are owned by the list.
 * At most ZT_ROUTE_MAX_DIAGS are kept; later ones are only counted. */
#define ZT_ROUTE_MAX_DIAGS 256

struct zt_route_diag {
    bool is_warning;
    char *msg;
};

struct zt_route_errors {
    struct zt_route_diag *v;
    size_t n, cap;
    size_t n_errors, n_warnings; /* including the dropped ones */
    size_t dropped;
};

void zt_route_errors_add(struct zt_route_errors *e, bool is_warning, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void zt_route_errors_cleanup(struct zt_route_errors *e);

#endif
