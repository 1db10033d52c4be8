/* JSON lines with jansson; the client side is plain blocking I/O. */
#include "cni/ctl.h"

#include "base/alloc.h"
#include "base/err.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

const char *zt_cni_ctl_op_str(enum zt_cni_ctl_op op)
{
    switch (op) {
    case ZT_CNI_CTL_ENROLL:
        return "enroll";
    case ZT_CNI_CTL_UNENROLL:
        return "unenroll";
    }
    return "unknown";
}

static char *dump_line(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    size_t n;
    char *line;
    json_decref(o);
    if (!s)
        abort();
    n = strlen(s);
    line = zt_xmalloc(n + 2);
    memcpy(line, s, n);
    line[n] = '\n';
    line[n + 1] = '\0';
    free(s);
    return line;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, surrogates or code points above U+10FFFF), or 0 if there is none. */
static size_t utf8_seq_len(const unsigned char *s)
{
    unsigned c = s[0], min, cp;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, min = 0x80, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, min = 0x800, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* Replaces, in place, every byte that is not part of well-formed UTF-8 with
 * '?'. Replies carry text the agent does not control (the proxy's Ack
 * error, names cut by a precision in the middle of a character) and jansson
 * refuses such strings, which would abort the agent in json_pack. */
static void utf8_scrub(char *str)
{
    unsigned char *s = (unsigned char *)str;
    while (*s) {
        size_t n = utf8_seq_len(s);
        if (n == 0) {
            *s++ = '?';
            continue;
        }
        s += n;
    }
}

char *zt_cni_ctl_request_encode(const struct zt_cni_ctl_request *req)
{
    struct zt_cni_pod pod = req->pod;
    json_t *o;

    utf8_scrub(pod.uid);
    utf8_scrub(pod.netns);
    utf8_scrub(pod.info.name);
    utf8_scrub(pod.info.namespace);
    utf8_scrub(pod.info.service_account);
    if (req->op == ZT_CNI_CTL_ENROLL)
        o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "op", "enroll", "uid", pod.uid, "netns",
                      pod.netns, "name", pod.info.name, "namespace", pod.info.namespace,
                      "service_account", pod.info.service_account);
    else
        o = json_pack("{s:s,s:s}", "op", "unenroll", "uid", pod.uid);
    if (!o)
        abort();
    return dump_line(o);
}

char *zt_cni_ctl_reply_encode(const struct zt_cni_ctl_reply *rep)
{
    struct zt_cni_ctl_reply r = *rep;
    json_t *o;

    utf8_scrub(r.message);
    utf8_scrub(r.error);
    utf8_scrub(r.proxy_error);
    o = json_pack("{s:b,s:s,s:s,s:s}", "ok", r.ok, "message", r.message, "error", r.error,
                  "proxy_error", r.proxy_error);
    if (!o)
        abort();
    return dump_line(o);
}

/* Copies optional string `key` (absent = ""); fails if not a string or
 * longer than max. */
static int opt_str(json_t *o, const char *key, char *dst, size_t max)
{
    json_t *v = json_object_get(o, key);
    size_t n;
    dst[0] = '\0';
    if (!v)
        return 0;
    if (!json_is_string(v))
        return ZT_E_PROTO;
    n = json_string_length(v);
    if (n > max || strlen(json_string_value(v)) != n)
        return ZT_E_PROTO;
    memcpy(dst, json_string_value(v), n + 1);
    return 0;
}

static json_t *parse_line(const char *line, size_t len, int *rc)
{
    json_t *o;
    if (len > ZT_CNI_CTL_LINE_MAX) {
        *rc = ZT_E_TOO_BIG;
        return NULL;
    }
    o = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK, NULL);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        *rc = ZT_E_PROTO;
        return NULL;
    }
    *rc = 0;
    return o;
}

int zt_cni_ctl_request_decode(const char *line, size_t len, struct zt_cni_ctl_request *out)
{
    char op[16];
    int rc;
    json_t *o = parse_line(line, len, &rc);

    memset(out, 0, sizeof(*out));
    if (!o)
        return rc;
    if ((rc = opt_str(o, "op", op, sizeof(op) - 1)) < 0)
        goto out;
    if (strcmp(op, "enroll") == 0)
        out->op = ZT_CNI_CTL_ENROLL;
    else if (strcmp(op, "unenroll") == 0)
        out->op = ZT_CNI_CTL_UNENROLL;
    else {
        rc = ZT_E_PROTO;
        goto out;
    }
    if ((rc = opt_str(o, "uid", out->pod.uid, ZT_ZDS_UID_MAX)) < 0 ||
        (rc = opt_str(o, "netns", out->pod.netns, ZT_CNI_NETNS_PATH_MAX)) < 0 ||
        (rc = opt_str(o, "name", out->pod.info.name, ZT_ZDS_NAME_MAX)) < 0 ||
        (rc = opt_str(o, "namespace", out->pod.info.namespace, ZT_ZDS_NAMESPACE_MAX)) < 0 ||
        (rc = opt_str(o, "service_account", out->pod.info.service_account, ZT_ZDS_SA_MAX)) < 0)
        goto out;
out:
    json_decref(o);
    return rc;
}

int zt_cni_ctl_reply_decode(const char *line, size_t len, struct zt_cni_ctl_reply *out)
{
    int rc;
    json_t *o = parse_line(line, len, &rc), *ok;

    memset(out, 0, sizeof(*out));
    if (!o)
        return rc;
    ok = json_object_get(o, "ok");
    if (!json_is_boolean(ok)) {
        rc = ZT_E_PROTO;
        goto out;
    }
    out->ok = json_is_true(ok);
    if ((rc = opt_str(o, "message", out->message, ZT_CNI_CTL_TEXT_MAX - 1)) < 0 ||
        (rc = opt_str(o, "error", out->error, ZT_CNI_CTL_TEXT_MAX - 1)) < 0 ||
        (rc = opt_str(o, "proxy_error", out->proxy_error, ZT_CNI_CTL_TEXT_MAX - 1)) < 0)
        goto out;
out:
    json_decref(o);
    return rc;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int zt_cni_ctl_call(const char *sock_path, const struct zt_cni_ctl_request *req,
                    struct zt_cni_ctl_reply *rep, int timeout_ms)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char buf[ZT_CNI_CTL_LINE_MAX + 1];
    size_t used = 0, off = 0, len;
    long deadline = now_ms() + timeout_ms;
    char *line = NULL;
    int fd = -1, rc;

    if (strlen(sock_path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        goto out;
    }
    line = zt_cni_ctl_request_encode(req);
    len = strlen(line);
    while (off < len) {
        ssize_t w = send(fd, line + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = -errno;
            goto out;
        }
        off += (size_t)w;
    }
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        long left = deadline - now_ms();
        char *nl;
        ssize_t r;
        if (left <= 0) {
            rc = ZT_E_TIMEOUT;
            goto out;
        }
        if (poll(&pf, 1, (int)left) < 0 && errno != EINTR) {
            rc = -errno;
            goto out;
        }
        if (!pf.revents)
            continue;
        r = read(fd, buf + used, sizeof(buf) - 1 - used);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            goto out;
        }
        used += (size_t)r;
        buf[used] = '\0';
        nl = memchr(buf, '\n', used);
        if (nl || r == 0 || used == sizeof(buf) - 1) {
            rc = zt_cni_ctl_reply_decode(buf, nl ? (size_t)(nl - buf) : used, rep);
            goto out;
        }
    }
out:
    free(line);
    close(fd);
    return rc;
}
