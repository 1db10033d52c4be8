/* Directory of local config files. See dir.h.
 *
 * Each file is parsed on its own into a snapshot by config/local.c, so its
 * errors keep their file name and line. Duplicates across files are found
 * here, before merging, because only here are both file names known (the
 * builder would only report the key). The merge then hands every object to
 * one builder, sharing it by reference with the per-file snapshot, which is
 * dropped right after.
 *
 * A struct zt_config_dir keeps, per file, its identity and its objects
 * (references, sorted by key) and the last merged snapshot. A reload lists
 * the directory (one stat per file), reads only files that are new or whose
 * identity changed, and when the last merge exists builds the new snapshot
 * on it: the objects of changed or removed files are removed, those of the
 * files just read added. Duplicates are then looked for only among the keys
 * of the files just read: a key is a duplicate if the last snapshot has it
 * and no changed or removed file had it, or if two files just read have
 * it. When that finds one, the whole check runs so the message is the same
 * as from a full load. Cost: O(changed objects x log N) for the check, and
 * the builder's O(N) pointer merge.
 *
 * Each file also keeps its Kubernetes facts (Gateways, Namespace labels,
 * object labels: config/k8s.h). `merged` stays the files' objects as
 * written, the base of the next incremental merge; what is served is
 * `served`, merged with the waypoints derived from all files' facts,
 * recomputed at every reload (derive()) since a label in one file changes
 * objects of others. That pass is O(objects) lookups, and when no file has
 * facts it is nothing: served is merged. */
#include "config/dir.h"

#include "base/err.h"
#include "base/strmap.h"
#include "config/k8s.h"
#include "config/local.h"
#include "config/local_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One config file as last read: what identifies its contents, and its
 * objects (one reference each, sorted by key, as in its own snapshot). */
struct file {
    char *name;
    char *path; /* "<dir>/<name>", for messages */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    size_t bytes; /* read, counted against the directory's budget */
    struct zt_workload **wls;
    size_t n_wls;
    struct zt_service **svcs;
    size_t n_svcs;
    struct zt_policy **pols;
    size_t n_pols;
    struct zt_k8s_facts *facts; /* its Kubernetes objects and labels */
    bool is_new;                /* read by this reload (not taken from the last one) */
    bool kept;                  /* (last reload's list) taken as it was by this one */
};

struct zt_config_dir {
    char *dir;
    size_t dirlen;      /* dir without trailing slashes, for messages */
    struct file *files; /* last good list, sorted by name */
    size_t n_files;
    /* Last good merge of the files' objects as written (the base of the
     * next incremental merge); one reference, or NULL. */
    struct zt_state *merged;
    /* What was served: merged with the waypoints derived from labels
     * (k8s.c); merged itself when there are none. */
    struct zt_state *served;
    size_t files_read;
    char *notes; /* the last reload's, or NULL */
    /* The routes and waypoint policies of the files' facts, in file order,
     * duplicates left out (borrowed from files[].facts). */
    const struct zt_route_def **routes;
    size_t n_routes;
    const struct zt_authz_l7_policy **authz;
    size_t n_authz;
    const struct zt_jwt_authn_policy **authn;
    size_t n_authn;
    const struct zt_ratelimit_policy **ratelimits;
    size_t n_ratelimits;
};

struct name {
    char *name;
    struct stat st;
};

struct loader {
    struct zt_config_dir *d;
    const char *dir;
    size_t dirlen;
    int dfd;
    struct name *names;
    size_t n_names;
    struct file *files; /* the new list */
    size_t n_files;
    size_t total_bytes;
    size_t files_read;
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
    return strcmp(((const struct name *)a)->name, ((const struct name *)b)->name);
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
        struct name *n = zt_state_array_push(&l->names, &l->n_names, sizeof(*l->names));
        n->name = zt_state_xstrdup(de->d_name);
        n->st = st;
    }
    if (l->n_names)
        qsort(l->names, l->n_names, sizeof(*l->names), cmp_name);
    return 0;
}

/* Reads one file into *buf, counting its bytes against the directory's
 * budget. Returns 1 if the entry turned out not to be a regular file any
 * more (it changed since the listing): it is skipped. */
static int read_one(struct loader *l, const char *name, const char *path, char **buf, size_t *len,
                    struct stat *stp)
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
    *stp = st;
out:
    if (rc) {
        free(*buf);
        *buf = NULL;
        *len = 0;
    }
    close(fd);
    return rc;
}

static bool same_identity(const struct file *f, const struct stat *st)
{
    return f->dev == st->st_dev && f->ino == st->st_ino && f->size == st->st_size &&
           f->mtime.tv_sec == st->st_mtim.tv_sec && f->mtime.tv_nsec == st->st_mtim.tv_nsec &&
           f->ctime.tv_sec == st->st_ctim.tv_sec && f->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

/* Takes the objects of st (a file's own snapshot, dropped here) into f. */
static void take_objects(struct file *f, struct zt_state *st)
{
    f->n_wls = zt_state_workload_count(st);
    f->n_svcs = zt_state_service_count(st);
    f->n_pols = zt_state_policy_count(st);
    f->wls = zt_state_xcalloc(f->n_wls ? f->n_wls : 1, sizeof(*f->wls));
    f->svcs = zt_state_xcalloc(f->n_svcs ? f->n_svcs : 1, sizeof(*f->svcs));
    f->pols = zt_state_xcalloc(f->n_pols ? f->n_pols : 1, sizeof(*f->pols));
    /* A snapshot's objects are immutable to its readers; the file list is
     * their other owner, and hands them to the merging builder. */
    for (size_t i = 0; i < f->n_wls; i++)
        f->wls[i] = zt_workload_ref((struct zt_workload *)zt_state_workload_at(st, i));
    for (size_t i = 0; i < f->n_svcs; i++)
        f->svcs[i] = zt_service_ref((struct zt_service *)zt_state_service_at(st, i));
    for (size_t i = 0; i < f->n_pols; i++)
        f->pols[i] = zt_policy_ref((struct zt_policy *)zt_state_policy_at(st, i));
    zt_state_unref(st);
}

static void file_cleanup(struct file *f)
{
    for (size_t i = 0; i < f->n_wls; i++)
        zt_workload_unref(f->wls[i]);
    for (size_t i = 0; i < f->n_svcs; i++)
        zt_service_unref(f->svcs[i]);
    for (size_t i = 0; i < f->n_pols; i++)
        zt_policy_unref(f->pols[i]);
    free(f->wls);
    free(f->svcs);
    free(f->pols);
    zt_k8s_facts_free(f->facts);
    free(f->name);
    free(f->path);
}

/* Reads and parses one file into a new entry of the list. */
static int read_file(struct loader *l, const char *name)
{
    char *path = join_path(l, name), *buf = NULL;
    struct zt_state *st = NULL;
    struct zt_k8s_facts *facts = NULL;
    struct stat sb = {0};
    size_t len = 0;
    int rc = read_one(l, name, path, &buf, &len, &sb);
    if (rc == 1) {
        free(path);
        return 0;
    }
    if (rc == 0)
        rc = zt_config_local_parse(path, buf, len, &st, &facts, l->err, l->errlen);
    free(buf);
    if (rc) {
        free(path);
        return rc;
    }
    l->files_read++;
    struct file *f = zt_state_array_push(&l->files, &l->n_files, sizeof(*l->files));
    memset(f, 0, sizeof(*f));
    f->name = zt_state_xstrdup(name);
    f->path = path;
    f->dev = sb.st_dev;
    f->ino = sb.st_ino;
    f->size = sb.st_size;
    f->mtime = sb.st_mtim;
    f->ctime = sb.st_ctim;
    f->bytes = len;
    f->is_new = true;
    f->facts = facts;
    take_objects(f, st);
    return 0;
}

/* Builds the new file list: each listed file is taken from the last good
 * list when its name and identity are unchanged, else read. */
static int load_files(struct loader *l)
{
    struct zt_config_dir *d = l->d;
    size_t oi = 0;

    for (size_t i = 0; i < d->n_files; i++)
        d->files[i].kept = false;
    for (size_t i = 0; i < l->n_names; i++) {
        const struct name *n = &l->names[i];
        struct file *old = NULL;
        int rc;
        while (oi < d->n_files && strcmp(d->files[oi].name, n->name) < 0)
            oi++;
        if (oi < d->n_files && strcmp(d->files[oi].name, n->name) == 0)
            old = &d->files[oi];
        if (old && same_identity(old, &n->st)) {
            if (old->bytes > ZT_CONFIG_LOCAL_MAX_BYTES - l->total_bytes) {
                snprintf(l->err, l->errlen, "%.*s: config files total more than %u bytes (at %s)",
                         (int)l->dirlen, l->dir, ZT_CONFIG_LOCAL_MAX_BYTES, old->path);
                return ZT_E_TOO_BIG;
            }
            l->total_bytes += old->bytes;
            old->kept = true;
            struct file *f = zt_state_array_push(&l->files, &l->n_files, sizeof(*l->files));
            *f = *old; /* shared with the old list until commit or rollback */
            f->is_new = false;
            continue;
        }
        rc = read_file(l, n->name);
        if (rc)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------ duplicates */

enum kind { KIND_WORKLOAD, KIND_SERVICE, KIND_POLICY };

static const char *const kind_list[] = {"workloads", "services", "policies"};
static const char *const kind_what[] = {"uid", "service", "policy"};

static size_t kind_count(const struct file *f, enum kind k)
{
    return k == KIND_WORKLOAD ? f->n_wls : k == KIND_SERVICE ? f->n_svcs : f->n_pols;
}

static const char *kind_key(const struct file *f, enum kind k, size_t i)
{
    switch (k) {
    case KIND_WORKLOAD:
        return f->wls[i]->uid;
    case KIND_SERVICE:
        return f->svcs[i]->key;
    default:
        return f->pols[i]->key;
    }
}

/* Whether f has key (its objects are sorted by key). */
static bool file_has(const struct file *f, enum kind k, const char *key)
{
    size_t lo = 0, hi = kind_count(f, k);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, kind_key(f, k, mid));
        if (c == 0)
            return true;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}

static bool state_has(const struct zt_state *s, enum kind k, const char *key)
{
    switch (k) {
    case KIND_WORKLOAD:
        return zt_state_workload_by_uid(s, key) != NULL;
    case KIND_SERVICE:
        return zt_state_service_by_key(s, key) != NULL;
    default:
        return zt_state_policy_by_key(s, key) != NULL;
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
        size_t cnt = kind_count(&l->files[f], k);
        for (size_t i = 0; i < cnt; i++) {
            struct keyref *r = zt_state_array_push(&v, &n, sizeof(*v));
            r->key = kind_key(&l->files[f], k, i);
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

static int check_all_duplicates(struct loader *l)
{
    int rc = 0;
    for (int k = KIND_WORKLOAD; k <= KIND_POLICY && !rc; k++)
        rc = check_duplicates(l, (enum kind)k);
    return rc;
}

/* Whether a key of a file just read may be defined twice, knowing that the
 * last snapshot (base) had no duplicates: see the top of this file. */
static bool may_have_duplicates(const struct loader *l, const struct zt_state *base)
{
    const struct zt_config_dir *d = l->d;
    const struct file **gone = NULL; /* the last list's files not taken over */
    struct keyref *v = NULL;
    size_t n = 0, n_new = 0, n_gone = 0;
    bool found = false;

    for (size_t f = 0; f < l->n_files; f++)
        n_new += l->files[f].is_new;
    for (size_t o = 0; o < d->n_files; o++)
        if (!d->files[o].kept)
            *(const struct file **)zt_state_array_push(&gone, &n_gone, sizeof(*gone)) =
                &d->files[o];
    for (int k = KIND_WORKLOAD; k <= KIND_POLICY && !found; k++) {
        n = 0;
        for (size_t f = 0; f < l->n_files && !found; f++) {
            const struct file *nf = &l->files[f];
            if (!nf->is_new)
                continue;
            for (size_t i = 0; i < kind_count(nf, (enum kind)k) && !found; i++) {
                const char *key = kind_key(nf, (enum kind)k, i);
                if (n_new > 1) {
                    struct keyref *r = zt_state_array_push(&v, &n, sizeof(*v));
                    r->key = key;
                    r->file = f;
                }
                if (!state_has(base, (enum kind)k, key))
                    continue;
                /* The base has it: fine only if a file that changed or went
                 * away had it. */
                found = true;
                for (size_t o = 0; o < n_gone && found; o++)
                    if (file_has(gone[o], (enum kind)k, key))
                        found = false;
            }
        }
        if (n > 1 && !found) {
            qsort(v, n, sizeof(*v), cmp_keyref);
            for (size_t i = 1; i < n && !found; i++)
                found = strcmp(v[i].key, v[i - 1].key) == 0;
        }
    }
    free(v);
    free(gone);
    return found;
}

/* ------------------------------------------------------------ merge */

static int finish(struct loader *l, struct zt_state_builder *b, struct zt_state **out)
{
    char berr[512];
    int rc = zt_state_builder_finish(b, out, berr, sizeof(berr));
    if (rc)
        snprintf(l->err, l->errlen, "%.*s: merged directory: %s", (int)l->dirlen, l->dir, berr);
    return rc;
}

/* The builder's add normalizes in place; on objects already normalized by
 * their own file's builder that changes nothing but the service and policy
 * key strings, which are rebuilt equal. */
static void add_file(struct zt_state_builder *b, const struct file *f)
{
    for (size_t i = 0; i < f->n_wls; i++)
        zt_state_builder_add_workload(b, zt_workload_ref(f->wls[i]));
    for (size_t i = 0; i < f->n_svcs; i++)
        zt_state_builder_add_service(b, zt_service_ref(f->svcs[i]));
    for (size_t i = 0; i < f->n_pols; i++)
        zt_state_builder_add_policy(b, zt_policy_ref(f->pols[i]));
}

/* Every object of every file into one new snapshot. */
static int merge_all(struct loader *l, struct zt_state **out)
{
    struct zt_state_builder *b = zt_state_builder_new(NULL);
    for (size_t f = 0; f < l->n_files; f++)
        add_file(b, &l->files[f]);
    return finish(l, b, out);
}

/* The last snapshot without the objects of the files that changed or went,
 * with those of the files just read. */
static int merge_changes(struct loader *l, const struct zt_state *base, struct zt_state **out)
{
    const struct zt_config_dir *d = l->d;
    struct zt_state_builder *b = zt_state_builder_new(base);
    for (size_t o = 0; o < d->n_files; o++) {
        const struct file *f = &d->files[o];
        if (f->kept)
            continue;
        for (size_t i = 0; i < f->n_wls; i++)
            zt_state_builder_remove_workload(b, f->wls[i]->uid);
        for (size_t i = 0; i < f->n_svcs; i++)
            zt_state_builder_remove_service(b, f->svcs[i]->key);
        for (size_t i = 0; i < f->n_pols; i++)
            zt_state_builder_remove_policy(b, f->pols[i]->key);
    }
    for (size_t f = 0; f < l->n_files; f++)
        if (l->files[f].is_new)
            add_file(b, &l->files[f]);
    return finish(l, b, out);
}

/* ------------------------------------------------------------ reload */

struct zt_config_dir *zt_config_dir_new(const char *dir)
{
    struct zt_config_dir *d = zt_state_xcalloc(1, sizeof(*d));
    d->dir = zt_state_xstrdup(dir);
    d->dirlen = strlen(dir);
    while (d->dirlen > 1 && dir[d->dirlen - 1] == '/')
        d->dirlen--;
    return d;
}

void zt_config_dir_free(struct zt_config_dir *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n_files; i++)
        file_cleanup(&d->files[i]);
    free(d->files);
    zt_state_unref(d->merged);
    zt_state_unref(d->served);
    free(d->notes);
    free(d->routes);
    free(d->authz);
    free(d->authn);
    free(d->ratelimits);
    free(d->dir);
    free(d);
}

size_t zt_config_dir_files_read(const struct zt_config_dir *d)
{
    return d->files_read;
}

const char *zt_config_dir_notes(const struct zt_config_dir *d)
{
    return d->notes ? d->notes : "";
}

/* The waypoints that labels and Gateways give, on the merged snapshot
 * (raw). This runs on every reload, whichever files changed: a Namespace
 * label or a Gateway in one file changes services and workloads of others,
 * so the derived fields are never carried over from the last load, only
 * the derived records themselves when nothing about them changed (see
 * zt_k8s_resolve), which keeps the catalog's entries. */
static int derive(struct loader *l, struct zt_state *raw, struct zt_state **out)
{
    const struct zt_k8s_facts **facts = NULL;
    size_t n = 0;
    int rc;
    for (size_t i = 0; i < l->n_files; i++)
        if (!zt_k8s_facts_empty(l->files[i].facts))
            *(const struct zt_k8s_facts **)zt_state_array_push(&facts, &n, sizeof(*facts)) =
                l->files[i].facts;
    rc = zt_k8s_resolve(facts, n, raw, l->d->merged, l->d->served, out, l->err, l->errlen);
    free(facts);
    return rc;
}

static void gather_notes(struct loader *l)
{
    struct zt_config_dir *d = l->d;
    size_t len = 0;
    free(d->notes);
    d->notes = NULL;
    for (size_t i = 0; i < l->n_files; i++) {
        const char *nt = l->files[i].facts->notes;
        size_t k = nt ? strlen(nt) : 0;
        if (!k)
            continue;
        d->notes = zt_state_xrealloc(d->notes, len + k + 1);
        memcpy(d->notes + len, nt, k + 1);
        len += k;
    }
}

/* One kind of object the files' facts carry for waypoints. */
struct gathered {
    const char *what; /* "route", "policy" */
    size_t (*count)(const struct zt_k8s_facts *f);
    /* The j-th object of f; its "<Kind> <ns>/<name>" into key. */
    const void *(*at)(const struct zt_k8s_facts *f, size_t j, char *key, size_t keylen);
};

static size_t count_routes(const struct zt_k8s_facts *f)
{
    return f->n_routes;
}

static const void *route_at(const struct zt_k8s_facts *f, size_t j, char *key, size_t keylen)
{
    const struct zt_route_def *r = &f->routes[j];
    snprintf(key, keylen, "%s %s/%s", zt_route_kind_str(r->kind), r->ns, r->name);
    return r;
}

static size_t count_authz(const struct zt_k8s_facts *f)
{
    return f->n_authz;
}

static const void *authz_at(const struct zt_k8s_facts *f, size_t j, char *key, size_t keylen)
{
    snprintf(key, keylen, "AuthorizationPolicy %s/%s", f->authz[j]->ns, f->authz[j]->name);
    return f->authz[j];
}

static size_t count_authn(const struct zt_k8s_facts *f)
{
    return f->n_authn;
}

static const void *authn_at(const struct zt_k8s_facts *f, size_t j, char *key, size_t keylen)
{
    snprintf(key, keylen, "RequestAuthentication %s/%s", f->authn[j]->ns, f->authn[j]->name);
    return f->authn[j];
}

static size_t count_ratelimits(const struct zt_k8s_facts *f)
{
    return f->n_ratelimits;
}

static const void *ratelimit_at(const struct zt_k8s_facts *f, size_t j, char *key, size_t keylen)
{
    snprintf(key, keylen, "RateLimit %s/%s", f->ratelimits[j]->ns, f->ratelimits[j]->name);
    return f->ratelimits[j];
}

/* Every file's objects of one kind in file order; a second object of one
 * kind, namespace and name is left out with a note naming both files (the
 * first file in name order keeps it, so the choice does not depend on
 * edits). *out (a previous array, freed) gets borrowed pointers. */
static void gather(struct loader *l, const struct gathered *g, const void ***out, size_t *n)
{
    struct zt_config_dir *d = l->d;
    struct zt_strmap seen;
    free(*out);
    *out = NULL;
    *n = 0;
    zt_strmap_init(&seen, true);
    for (size_t i = 0; i < l->n_files; i++) {
        const struct zt_k8s_facts *f = l->files[i].facts;
        for (size_t j = 0; j < g->count(f); j++) {
            char key[600];
            const struct zt_strmap_entry *e;
            const void *obj = g->at(f, j, key, sizeof(key));
            if ((e = zt_strmap_find(&seen, key))) {
                zt_k8s_note(&d->notes, "%s: %s: already defined in %s (%s left out)", f->file, key,
                            e->value, g->what);
                continue;
            }
            zt_strmap_put(&seen, key, f->file);
            *(const void **)zt_state_array_push(out, n, sizeof(**out)) = obj;
        }
    }
    zt_strmap_clear(&seen);
}

static void gather_waypoint_objects(struct loader *l)
{
    static const struct gathered routes = {"route", count_routes, route_at},
                                 authz = {"policy", count_authz, authz_at},
                                 authn = {"policy", count_authn, authn_at},
                                 ratelimits = {"policy", count_ratelimits, ratelimit_at};
    struct zt_config_dir *d = l->d;
    gather(l, &routes, (const void ***)&d->routes, &d->n_routes);
    gather(l, &authz, (const void ***)&d->authz, &d->n_authz);
    gather(l, &authn, (const void ***)&d->authn, &d->n_authn);
    gather(l, &ratelimits, (const void ***)&d->ratelimits, &d->n_ratelimits);
}

size_t zt_config_dir_routes(const struct zt_config_dir *d, const struct zt_route_def *const **out)
{
    *out = d->routes;
    return d->n_routes;
}

size_t zt_config_dir_authz(const struct zt_config_dir *d,
                           const struct zt_authz_l7_policy *const **out)
{
    *out = d->authz;
    return d->n_authz;
}

size_t zt_config_dir_authn(const struct zt_config_dir *d,
                           const struct zt_jwt_authn_policy *const **out)
{
    *out = d->authn;
    return d->n_authn;
}

size_t zt_config_dir_ratelimits(const struct zt_config_dir *d,
                                const struct zt_ratelimit_policy *const **out)
{
    *out = d->ratelimits;
    return d->n_ratelimits;
}

/* Success: the new list replaces the old one; files of the old list not
 * taken over are released. */
static void commit(struct loader *l, struct zt_state *merged, struct zt_state *served)
{
    struct zt_config_dir *d = l->d;
    for (size_t i = 0; i < d->n_files; i++)
        if (!d->files[i].kept)
            file_cleanup(&d->files[i]);
    free(d->files);
    d->files = l->files;
    d->n_files = l->n_files;
    l->files = NULL;
    l->n_files = 0;
    zt_state_unref(d->merged);
    d->merged = merged;
    zt_state_unref(d->served);
    d->served = zt_state_ref(served);
}

static void rollback(struct loader *l)
{
    for (size_t i = 0; i < l->n_files; i++)
        if (l->files[i].is_new)
            file_cleanup(&l->files[i]);
    free(l->files);
    l->files = NULL;
    l->n_files = 0;
}

int zt_config_dir_reload(struct zt_config_dir *d, struct zt_state **out, char *err, size_t errlen)
{
    struct loader l = {
        .d = d, .dir = d->dir, .dirlen = d->dirlen, .dfd = -1, .err = err, .errlen = errlen};
    struct zt_state *raw = NULL;
    DIR *dh;
    int rc;

    *out = NULL;
    if (errlen)
        err[0] = '\0';
    d->files_read = 0;
    dh = opendir(d->dir);
    if (!dh) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", d->dir, strerror(errno));
        return rc;
    }
    l.dfd = dirfd(dh);
    rc = list_files(&l, dh);
    if (!rc)
        rc = load_files(&l);
    d->files_read = l.files_read;
    if (!rc && !d->merged) {
        rc = check_all_duplicates(&l);
        if (!rc)
            rc = merge_all(&l, &raw);
    } else if (!rc) {
        if (may_have_duplicates(&l, d->merged))
            rc = check_all_duplicates(&l);
        if (!rc)
            rc = merge_changes(&l, d->merged, &raw);
    }
    if (!rc)
        rc = derive(&l, raw, out);
    if (!rc) {
        gather_notes(&l);
        gather_waypoint_objects(&l);
        commit(&l, raw, *out);
    } else {
        zt_state_unref(raw);
        rollback(&l);
    }

    for (size_t i = 0; i < l.n_names; i++)
        free(l.names[i].name);
    free(l.names);
    closedir(dh);
    return rc;
}

int zt_config_dir_load(const char *dir, struct zt_state **out, char *err, size_t errlen)
{
    struct zt_config_dir *d = zt_config_dir_new(dir);
    int rc = zt_config_dir_reload(d, out, err, errlen);
    zt_config_dir_free(d);
    return rc;
}
