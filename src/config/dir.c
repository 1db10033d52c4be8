/* Directory of local config files. See dir.h.
 *
 * Each file is parsed on its own into a snapshot by config/local.c, so its
 * errors keep their file name and line. Duplicates across files are found
 * here, before merging, because only here are both file names known (the
 * builder would only report the key). The merge then hands every object to
 * one builder, sharing it by reference with the per-file snapshot, which is
 * dropped right after. */
#include "config/dir.h"

#include "base/err.h"
#include "config/local.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct file {
    char *path; /* "<dir>/<name>", for messages */
    struct zt_state *st;
};

struct loader {
    const char *dir;
    size_t dirlen; /* dir without trailing slashes, for messages */
    int dfd;
    char **names;
    size_t n_names;
    struct file *files;
    size_t n_files;
    size_t total_bytes;
    char *err;
    size_t errlen;
};

static bool has_suffix(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls > lx && memcmp(s + ls - lx, suffix, lx) == 0;
}

/* Only "*.yaml" / "*.yml" that are not dotfiles: the suffix rule alone
 * already leaves out "a.yaml~", "#a.yaml#" and "a.yaml.swp". */
static bool is_config_name(const char *name)
{
    if (name[0] == '.')
        return false;
    return has_suffix(name, ".yaml") || has_suffix(name, ".yml");
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join_path(const struct loader *l, const char *name)
{
    size_t n = l->dirlen + 1 + strlen(name) + 1;
    char *p = zt_state_xcalloc(n, 1);
    snprintf(p, n, "%.*s/%s", (int)l->dirlen, l->dir, name);
    return p;
}

/* Collects the names of the config files of l->dfd, sorted. */
static int list_files(struct loader *l, DIR *d)
{
    struct dirent *de;

    for (;;) {
        struct stat st;
        errno = 0;
        de = readdir(d);
        if (!de) {
            if (errno) {
                int rc = -errno;
                snprintf(l->err, l->errlen, "%.*s: %s", (int)l->dirlen, l->dir, strerror(errno));
                return rc;
            }
            break;
        }
        if (!is_config_name(de->d_name))
            continue;
        /* Follows symlinks: Kubernetes mounts ConfigMap keys as links into
         * a "..data" directory. Entries that vanish or are not regular
         * files are simply not config files. */
        if (fstatat(l->dfd, de->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (l->n_names >= ZT_CONFIG_DIR_MAX_FILES) {
            snprintf(l->err, l->errlen, "%.*s: more than %d config files", (int)l->dirlen, l->dir,
                     ZT_CONFIG_DIR_MAX_FILES);
            return ZT_E_TOO_BIG;
        }
        *(char **)zt_state_array_push(&l->names, &l->n_names, sizeof(char *)) =
            zt_state_xstrdup(de->d_name);
    }
    if (l->n_names)
        qsort(l->names, l->n_names, sizeof(*l->names), cmp_name);
    return 0;
}

/* Reads one file into *buf, counting its bytes against the directory's
 * budget. Returns 1 if the entry turned out not to be a regular file any
 * more (it changed since the listing): it is skipped. */
static int read_one(struct loader *l, const char *name, const char *path, char **buf, size_t *len)
{
    size_t budget = ZT_CONFIG_LOCAL_MAX_BYTES - l->total_bytes;
    struct stat st;
    int fd, rc = 0;

    *buf = NULL;
    *len = 0;
    /* O_NONBLOCK: a FIFO swapped in after the listing must not block us. */
    fd = openat(l->dfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        rc = -errno;
        snprintf(l->err, l->errlen, "%s: %s", path, strerror(errno));
        return rc;
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        snprintf(l->err, l->errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = 1;
        goto out;
    }
    /* Reads until EOF or just past the budget; the size fstat reported is
     * not trusted (the file may grow). */
    for (;;) {
        size_t want = 65536;
        ssize_t got;
        *buf = zt_state_xrealloc(*buf, *len + want);
        got = read(fd, *buf + *len, want);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = -errno;
            snprintf(l->err, l->errlen, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        *len += (size_t)got;
        if (*len > budget) {
            snprintf(l->err, l->errlen, "%.*s: config files total more than %u bytes (at %s)",
                     (int)l->dirlen, l->dir, ZT_CONFIG_LOCAL_MAX_BYTES, path);
            rc = ZT_E_TOO_BIG;
            goto out;
        }
    }
    l->total_bytes += *len;
out:
    if (rc) {
        free(*buf);
        *buf = NULL;
        *len = 0;
    }
    close(fd);
    return rc;
}

static int load_files(struct loader *l)
{
    for (size_t i = 0; i < l->n_names; i++) {
        char *path = join_path(l, l->names[i]), *buf = NULL;
        struct zt_state *st = NULL;
        size_t len = 0;
        int rc = read_one(l, l->names[i], path, &buf, &len);
        if (rc == 1) {
            free(path);
            continue;
        }
        if (rc == 0)
            rc = zt_config_local_load_string(path, buf, len, &st, l->err, l->errlen);
        free(buf);
        if (rc) {
            free(path);
            return rc;
        }
        struct file *f = zt_state_array_push(&l->files, &l->n_files, sizeof(*l->files));
        f->path = path;
        f->st = st;
    }
    return 0;
}

/* ------------------------------------------------------------ duplicates */

enum kind { KIND_WORKLOAD, KIND_SERVICE, KIND_POLICY };

static const char *const kind_list[] = {"workloads", "services", "policies"};
static const char *const kind_what[] = {"uid", "service", "policy"};

static size_t kind_count(const struct zt_state *s, enum kind k)
{
    switch (k) {
    case KIND_WORKLOAD:
        return zt_state_workload_count(s);
    case KIND_SERVICE:
        return zt_state_service_count(s);
    default:
        return zt_state_policy_count(s);
    }
}

static const char *kind_key(const struct zt_state *s, enum kind k, size_t i)
{
    switch (k) {
    case KIND_WORKLOAD:
        return zt_state_workload_at(s, i)->uid;
    case KIND_SERVICE:
        return zt_state_service_at(s, i)->key;
    default:
        return zt_state_policy_at(s, i)->key;
    }
}

struct keyref {
    const char *key;
    size_t file;
};

static int cmp_keyref(const void *a, const void *b)
{
    const struct keyref *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return x->file < y->file ? -1 : x->file > y->file;
}

/* Reports the smallest key defined in two files, naming the later file
 * first (the one that "redefines" it). */
static int check_duplicates(struct loader *l, enum kind k)
{
    struct keyref *v = NULL;
    size_t n = 0;
    int rc = 0;

    for (size_t f = 0; f < l->n_files; f++) {
        size_t cnt = kind_count(l->files[f].st, k);
        for (size_t i = 0; i < cnt; i++) {
            struct keyref *r = zt_state_array_push(&v, &n, sizeof(*v));
            r->key = kind_key(l->files[f].st, k, i);
            r->file = f;
        }
    }
    if (n)
        qsort(v, n, sizeof(*v), cmp_keyref);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(v[i].key, v[i - 1].key) != 0)
            continue;
        snprintf(l->err, l->errlen, "%s: %s: %s \"%s\" already defined in %s",
                 l->files[v[i].file].path, kind_list[k], kind_what[k], v[i].key,
                 l->files[v[i - 1].file].path);
        rc = ZT_E_CONFIG;
        break;
    }
    free(v);
    return rc;
}

/* ------------------------------------------------------------ merge */

static int merge(struct loader *l, struct zt_state **out)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    char berr[512];
    int rc;

    /* The objects are shared with the per-file snapshots, which only this
     * function's caller holds and drops right after. The builder's add
     * normalizes in place; on objects already normalized by their own
     * file's builder that changes nothing but the service and policy key
     * strings, which are rebuilt equal. Hence the const casts. */
    for (size_t f = 0; f < l->n_files; f++) {
        const struct zt_state *s = l->files[f].st;
        for (size_t i = 0; i < zt_state_workload_count(s); i++)
            zt_state_builder_add_workload(
                b, zt_workload_ref((struct zt_workload *)zt_state_workload_at(s, i)));
        for (size_t i = 0; i < zt_state_service_count(s); i++)
            zt_state_builder_add_service(
                b, zt_service_ref((struct zt_service *)zt_state_service_at(s, i)));
        for (size_t i = 0; i < zt_state_policy_count(s); i++)
            zt_state_builder_add_policy(
                b, zt_policy_ref((struct zt_policy *)zt_state_policy_at(s, i)));
    }
    rc = zt_state_builder_finish(b, out, berr, sizeof(berr));
    if (rc)
        snprintf(l->err, l->errlen, "%.*s: merged directory: %s", (int)l->dirlen, l->dir, berr);
    return rc;
}

int zt_config_dir_load(const char *dir, struct zt_state **out, char *err, size_t errlen)
{
    struct loader l = {.dir = dir, .dfd = -1, .err = err, .errlen = errlen};
    DIR *d;
    int rc;

    *out = NULL;
    if (errlen)
        err[0] = '\0';
    l.dirlen = strlen(dir);
    while (l.dirlen > 1 && dir[l.dirlen - 1] == '/')
        l.dirlen--;
    d = opendir(dir);
    if (!d) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return rc;
    }
    l.dfd = dirfd(d);
    rc = list_files(&l, d);
    if (!rc)
        rc = load_files(&l);
    for (int k = KIND_WORKLOAD; k <= KIND_POLICY && !rc; k++)
        rc = check_duplicates(&l, (enum kind)k);
    if (!rc)
        rc = merge(&l, out);

    for (size_t i = 0; i < l.n_names; i++)
        free(l.names[i]);
    free(l.names);
    for (size_t i = 0; i < l.n_files; i++) {
        free(l.files[i].path);
        zt_state_unref(l.files[i].st);
    }
    free(l.files);
    closedir(d);
    return rc;
}
