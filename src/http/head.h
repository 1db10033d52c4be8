/* An HTTP message head as the waypoint (L7) sees it, whichever protocol carried
 * it (HTTP/1.1 on a tunnel, HTTP/2 cleartext, gRPC): the request line or
 * status and an ordered list of header fields. The parsers fill it, the
 * routes read and rewrite it, the encoders write it out again.
 *
 * Ownership: a head owns copies of every string in it (NUL-terminated),
 * kept in blocks of its own (a message's strings cost a malloc or two, not
 * two per field; a string replaced or removed stays in its block until the
 * head is reset or freed). Pointers returned by the getters are borrowed
 * and valid until the head is changed, reset or freed. A head may be moved
 * by copying the struct (the source is then forgotten, never cleaned up). Header names are stored
 * in lower case (HTTP/2 requires it, HTTP/1 compares them case-insensitively); values as given.
 *
 * Limits: at most ZT_HTTP_MAX_FIELDS fields and ZT_HTTP_HEAD_MAX bytes of
 * names, values and request line in all; a change that would pass either
 * returns ZT_E_TOO_BIG and leaves the head as it was. */
#ifndef ZT_HTTP_HEAD_H
#define ZT_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Envoy's defaults: 100 headers, 60 KiB of request headers. */
#define ZT_HTTP_MAX_FIELDS 100
#define ZT_HTTP_HEAD_MAX (60 * 1024)

struct zt_http_field {
    char *name; /* lower case */
    char *value;
};

struct zt_http_strings; /* head.c's string blocks */

struct zt_http_head {
    bool is_response;
    /* Requests: method ("GET"), target in origin form ("/a?b=c", or "*" /
     * an authority for OPTIONS / CONNECT), scheme ("http"), authority (the
     * Host header or :authority; NULL if none). */
    char *method, *path, *scheme, *authority;
    /* Responses: status code (100..599). */
    int status;
    /* HTTP/1.x minor version (0 or 1); 2 for HTTP/2. */
    int version;
    struct zt_http_field *fields;
    size_t n_fields, cap_fields;
    size_t bytes;                    /* counted against ZT_HTTP_HEAD_MAX */
    struct zt_http_strings *strings; /* where the strings above live, newest block first */
};

void zt_http_head_init(struct zt_http_head *h, bool is_response);
void zt_http_head_cleanup(struct zt_http_head *h);
/* Empties h for the next message on the same connection (keeps storage:
 * the field array and the largest string block). */
void zt_http_head_reset(struct zt_http_head *h, bool is_response);

/* Sets a request-line part (*slot is one of &h->method, &h->path,
 * &h->scheme, &h->authority) to a copy of value[0..len), or clears it for
 * value NULL. 0 or ZT_E_TOO_BIG. */
int zt_http_head_set_part(struct zt_http_head *h, char **slot, const char *value, size_t len);

/* Appends a field (name lower-cased on copy). 0 or ZT_E_TOO_BIG. */
int zt_http_head_add(struct zt_http_head *h, const char *name, size_t name_len, const char *value,
                     size_t value_len);
/* Replaces every field named `name` (any case) by one with `value`
 * (appended if there was none). 0 or ZT_E_TOO_BIG. */
int zt_http_head_set(struct zt_http_head *h, const char *name, const char *value);
/* Removes every field named `name`; returns how many. */
size_t zt_http_head_remove(struct zt_http_head *h, const char *name);
/* The first field named `name` (any case), NULL if none. */
const char *zt_http_head_get(const struct zt_http_head *h, const char *name);
/* How many fields are named `name`. */
size_t zt_http_head_count(const struct zt_http_head *h, const char *name);

#endif
