/* Pod records as JSON (jansson, so no hand-rolled escaping). */
#include "cni/store.h"

#include "base/alloc.h"
#include "base/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RECORD_MAX (64 * 1024)

bool zt_cni_uid_is_valid(const char *uid)
{
    size_t n = uid ? strlen(uid) : 0;
    if (n == 0 || n > ZT_ZDS_UID_MAX || uid[0] == '.')
        return false;
    return strspn(uid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static int check_str(const char *what, const char *s, size_t max, char *err, size_t errcap)
{
    size_t n = strnlen(s, max + 1);
    if (n == 0) {
        snprintf(err, errcap, "%s is empty", what);
        return ZT_E_CONFIG;
    }
    if (n > max) {
        snprintf(err, errcap, "%s longer than %zu bytes", what, max);
        return ZT_E_CONFIG;
    }
    return 0;
}

int zt_cni_pod_validate(const struct zt_cni_pod *pod, char *err, size_t errcap)
{
    int rc;
    if (!zt_cni_uid_is_valid(pod->uid)) {
        snprintf(err, errcap, "invalid uid (1-%d characters of A-Z a-z 0-9 . _ -)", ZT_ZDS_UID_MAX);
        return ZT_E_CONFIG;
    }
    if ((rc = check_str("name", pod->info.name, ZT_ZDS_NAME_MAX, err, errcap)) < 0 ||
        (rc = check_str("namespace", pod->info.namespace, ZT_ZDS_NAMESPACE_MAX, err, errcap)) < 0 ||
        (rc = check_str("service account", pod->info.service_account, ZT_ZDS_SA_MAX, err, errcap)) <
            0 ||
        (rc = check_str("netns", pod->netns, ZT_CNI_NETNS_PATH_MAX, err, errcap)) < 0)
        return rc;
    if (pod->netns[0] != '/') {
        snprintf(err, errcap, "netns path is not absolute");
        return ZT_E_CONFIG;
    }
    return 0;
}

char *zt_cni_store_encode(const struct zt_cni_pod *pod)
{
    char dev[24], ino[24];
    json_t *o;
    char *s;

    /* 64-bit ids as strings: JSON numbers are doubles to many readers. */
    snprintf(dev, sizeof(dev), "%llu", (unsigned long long)pod->netns_dev);
    snprintf(ino, sizeof(ino), "%llu", (unsigned long long)pod->netns_ino);
    o = json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "version", 1, "uid", pod->uid, "netns",
                  pod->netns, "name", pod->info.name, "namespace", pod->info.namespace,
                  "service_account", pod->info.service_account, "netns_dev", dev, "netns_ino", ino);
    if (!o)
        abort();
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        abort();
    return s;
}

static int get_field(json_t *o, const char *key, char *dst, size_t max)
{
    json_t *v = json_object_get(o, key);
    const char *s;
    size_t n;
    if (!json_is_string(v))
        return ZT_E_CONFIG;
    s = json_string_value(v);
    n = json_string_length(v);
    if (n > max || strlen(s) != n) /* embedded NUL */
        return ZT_E_CONFIG;
    memcpy(dst, s, n + 1);
    return 0;
}

static int get_u64(json_t *o, const char *key, uint64_t *out)
{
    char buf[24], *end;
    int rc = get_field(o, key, buf, sizeof(buf) - 1);
    if (rc < 0)
        return rc;
    errno = 0;
    *out = strtoull(buf, &end, 10);
    return errno || *end || end == buf ? ZT_E_CONFIG : 0;
}

int zt_cni_store_decode(const char *text, size_t len, struct zt_cni_pod *out)
{
    char why[128];
    json_t *o;
    int rc;

    if (len > RECORD_MAX)
        return ZT_E_TOO_BIG;
    memset(out, 0, sizeof(*out));
    o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    if (!o || !json_is_object(o)) {
        rc = ZT_E_CONFIG;
        goto out;
    }
    if ((rc = get_field(o, "uid", out->uid, ZT_ZDS_UID_MAX)) < 0 ||
        (rc = get_field(o, "netns", out->netns, ZT_CNI_NETNS_PATH_MAX)) < 0 ||
        (rc = get_field(o, "name", out->info.name, ZT_ZDS_NAME_MAX)) < 0 ||
        (rc = get_field(o, "namespace", out->info.namespace, ZT_ZDS_NAMESPACE_MAX)) < 0 ||
        (rc = get_field(o, "service_account", out->info.service_account, ZT_ZDS_SA_MAX)) < 0 ||
        (rc = get_u64(o, "netns_dev", &out->netns_dev)) < 0 ||
        (rc = get_u64(o, "netns_ino", &out->netns_ino)) < 0)
        goto out;
    rc = zt_cni_pod_validate(out, why, sizeof(why));
out:
    json_decref(o);
    return rc;
}

int zt_cni_store_init(const char *dir)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int zt_cni_store_write(const char *dir, const struct zt_cni_pod *pod)
{
    char path[4096], tmp[4096];
    char *text = NULL;
    size_t len, off = 0;
    int fd = -1, rc = 0;

    if (!zt_cni_uid_is_valid(pod->uid))
        return -EINVAL;
    if (snprintf(path, sizeof(path), "%s/%s.json", dir, pod->uid) >= (int)sizeof(path) ||
        snprintf(tmp, sizeof(tmp), "%s/.%s.json.tmp", dir, pod->uid) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    text = zt_cni_store_encode(pod);
    len = strlen(text);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = -errno;
            goto out;
        }
        off += (size_t)w;
    }
    if (write(fd, "\n", 1) != 1 || fsync(fd) < 0) {
        rc = errno ? -errno : -EIO;
        goto out;
    }
    if (close(fd) < 0) {
        fd = -1;
        rc = -errno;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        rc = -errno;
out:
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        unlink(tmp);
    free(text);
    return rc;
}

int zt_cni_store_remove(const char *dir, const char *uid)
{
    char path[4096];
    if (!zt_cni_uid_is_valid(uid))
        return -EINVAL;
    if (snprintf(path, sizeof(path), "%s/%s.json", dir, uid) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    return unlink(path) < 0 ? -errno : 0;
}

/* Reads a whole small file; returns malloc'd text or NULL with *err set. */
static char *read_small(int dirfd, const char *name, size_t *len, int *err)
{
    struct stat st;
    char *buf = NULL;
    size_t off = 0;
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0) {
        *err = -errno;
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        *err = ZT_E_CONFIG;
        goto out;
    }
    if (st.st_size > RECORD_MAX) {
        *err = ZT_E_TOO_BIG;
        goto out;
    }
    buf = zt_xmalloc((size_t)st.st_size + 1);
    while (off < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + off, (size_t)st.st_size - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        off += (size_t)r;
    }
    buf[off] = '\0';
    *len = off;
out:
    close(fd);
    return buf;
}

int zt_cni_store_load(const char *dir, zt_cni_store_load_cb *cb, void *ud)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (!d)
        return -errno;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        struct zt_cni_pod pod;
        size_t len = 0;
        int err = 0;
        char *text;

        if (e->d_name[0] == '.' || n < 6 || strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        text = read_small(dirfd(d), e->d_name, &len, &err);
        if (!text) {
            cb(ud, e->d_name, NULL, err ? err : ZT_E_CONFIG);
            continue;
        }
        err = zt_cni_store_decode(text, len, &pod);
        free(text);
        /* The file name must be the uid, or a remove would miss it. */
        if (err == 0 && (n - 5 != strlen(pod.uid) || strncmp(e->d_name, pod.uid, n - 5) != 0))
            err = ZT_E_CONFIG;
        cb(ud, e->d_name, err ? NULL : &pod, err);
    }
    closedir(d);
    return 0;
}
