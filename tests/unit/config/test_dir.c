/* config/dir.h against real directories made under a fresh mkdtemp dir. */
#include "test.h"

#include "base/err.h"
#include "config/dir.h"
#include "config/local.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpl[64];

/* A new empty directory for one test; removed by rm_dir(). */
static const char *mk_dir(void)
{
    snprintf(tmpl, sizeof(tmpl), "/tmp/zt_test_dir_XXXXXX");
    if (!mkdtemp(tmpl))
        abort();
    return tmpl;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_dir(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int unlink_in(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return unlink(path);
}

static void put(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f)
        abort();
    fputs(text, f);
    fclose(f);
}

#define WL(uid) "- uid: " uid "\n  namespace: default\n  workloadIps: [\"10.0.0.1\"]\n"
#define SVC(host) "- name: s\n  namespace: default\n  hostname: " host "\n"
#define POL(name) "- name: " name "\n  namespace: default\n  action: Deny\n"

static void test_merge(void)
{
    const char *d = mk_dir();
    struct zt_state *s = NULL;
    char err[512] = "";
    const struct zt_workload *w;

    put(d, "a.yaml", "workloads:\n" WL("w1") WL("w2"));
    put(d, "b.yml",
        "services:\n" SVC("s1.default.svc") "workloads:\n"
                                            "- uid: w3\n  namespace: default\n"
                                            "  services: {\"default/s1.default.svc\": {80: 8080}}\n"
                                            "  authorizationPolicies: [default/p1]\n");
    put(d, "c.yaml", "policies:\n" POL("p1") POL("p2"));
    int rc = zt_config_dir_load(d, &s, err, sizeof(err));
    if (rc)
        fprintf(stderr, "  err: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    CHECK(s != NULL);
    CHECK_EQ_INT(zt_state_workload_count(s), 3);
    CHECK_EQ_INT(zt_state_service_count(s), 1);
    CHECK_EQ_INT(zt_state_policy_count(s), 2);
    CHECK_EQ_STR(zt_state_workload_at(s, 0)->uid, "w1");
    CHECK_EQ_STR(zt_state_workload_at(s, 2)->uid, "w3");
    CHECK(zt_state_service_by_key(s, "default/s1.default.svc") != NULL);
    CHECK(zt_state_policy_by_key(s, "default/p2") != NULL);
    /* Cross-file reference: w3's service is an endpoint lookup in the
     * merged snapshot. */
    w = zt_state_workload_by_uid(s, "w3");
    CHECK(w != NULL);
    const struct zt_workload *const *eps = NULL;
    CHECK_EQ_INT(
        zt_state_service_endpoints(s, zt_state_service_by_key(s, "default/s1.default.svc"), &eps),
        1);
    CHECK(eps[0] == w);
    zt_state_unref(s);
    rm_dir(d);
}

static void check_dup(const char *a_text, const char *b_text, const char *want_tail)
{
    const char *d = mk_dir();
    struct zt_state *s = (struct zt_state *)1;
    char err[512] = "", want[512];

    /* Written b first: the message must follow sorted name order, not
     * creation or readdir order. */
    put(d, "b.yaml", b_text);
    put(d, "a.yaml", a_text);
    snprintf(want, sizeof(want), "%s/b.yaml: %s%s/a.yaml", d, want_tail, d);
    int rc = zt_config_dir_load(d, &s, err, sizeof(err));
    rm_dir(d);
    CHECK_EQ_INT(rc, ZT_E_CONFIG);
    CHECK(s == NULL);
    CHECK_EQ_STR(err, want);
}

static void test_duplicate_workload(void)
{
    check_dup("workloads:\n" WL("x") WL("y"), "workloads:\n" WL("z") WL("x"),
              "workloads: uid \"x\" already defined in ");
}

static void test_duplicate_service(void)
{
    check_dup("services:\n" SVC("h1"), "services:\n" SVC("h0") SVC("h1"),
              "services: service \"default/h1\" already defined in ");
}

static void test_duplicate_policy(void)
{
    check_dup("policies:\n" POL("p"), "policies:\n" POL("p"),
              "policies: policy \"default/p\" already defined in ");
}

/* Same key in different kinds, or same name in different namespaces, is
 * not a duplicate. */
static void test_not_duplicate(void)
{
    const char *d = mk_dir();
    struct zt_state *s = NULL;
    char err[512] = "";

    put(d, "a.yaml", "workloads:\n" WL("default/p") "policies:\n" POL("p"));
    put(d, "b.yaml", "policies:\n- name: p\n  namespace: other\n");
    int rc = zt_config_dir_load(d, &s, err, sizeof(err));
    rm_dir(d);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(zt_state_policy_count(s), 2);
    CHECK_EQ_INT(zt_state_workload_count(s), 1);
    zt_state_unref(s);
}

static void test_bad_file(void)
{
    const char *d = mk_dir();
    struct zt_state *s = (struct zt_state *)1;
    char err[512] = "", want[512];
    int rc;

    put(d, "a.yaml", "workloads:\n" WL("w1"));
    put(d, "b.yaml", "workloads:\n- uid: a\n  namespace: default\n  workloadIPs: [\"10.0.0.1\"]\n");
    rc = zt_config_dir_load(d, &s, err, sizeof(err));
    snprintf(want, sizeof(want), "%s/b.yaml:4: workloads[0].workloadIPs: unknown key", d);
    CHECK_EQ_INT(rc, ZT_E_CONFIG);
    CHECK(s == NULL);
    CHECK_EQ_STR(err, want);

    /* A syntax error: file and line, as config/local.c words it. */
    put(d, "b.yaml", "workloads:\n- uid: a\n  namespace: [default\n");
    rc = zt_config_dir_load(d, &s, err, sizeof(err));
    snprintf(want, sizeof(want), "%s/b.yaml:4: YAML syntax error: ", d);
    CHECK_EQ_INT(rc, ZT_E_CONFIG);
    CHECK(strncmp(err, want, strlen(want)) == 0);
    rm_dir(d);
}

/* Nothing but *.yaml / *.yml regular files (or links to them) is read: every
 * other entry holds text that would fail to load. */
static void test_ignored(void)
{
    const char *d = mk_dir();
    struct zt_state *s = NULL;
    char err[512] = "", path[512], target[512];
    static const char *const junk[] = {
        ".hidden.yaml", "a.yaml~", ".a.yaml.swp", "#a.yaml#", ".#a.yaml",
        "notes.txt",    "README",  "yaml",        ".yml",     "a.yaml.bak",
    };
    int rc;

    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        put(d, junk[i], "this: is not config\n");
    snprintf(path, sizeof(path), "%s/sub.yaml", d);
    CHECK_EQ_INT(mkdir(path, 0700), 0);
    put(d, "sub.yaml/c.yaml", "bad: [\n");
    snprintf(path, sizeof(path), "%s/fifo.yaml", d);
    CHECK_EQ_INT(mkfifo(path, 0600), 0);
    /* Kubernetes ConfigMap layout: key -> ..data/key. */
    snprintf(path, sizeof(path), "%s/..data", d);
    CHECK_EQ_INT(mkdir(path, 0700), 0);
    put(d, "..data/link.yaml", "workloads:\n" WL("linked"));
    snprintf(path, sizeof(path), "%s/link.yaml", d);
    snprintf(target, sizeof(target), "..data/link.yaml");
    CHECK_EQ_INT(symlink(target, path), 0);
    put(d, "real.yml", "workloads:\n" WL("real"));

    rc = zt_config_dir_load(d, &s, err, sizeof(err));
    rm_dir(d);
    if (rc)
        fprintf(stderr, "  err: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(zt_state_workload_count(s), 2);
    CHECK_EQ_STR(zt_state_workload_at(s, 0)->uid, "linked");
    CHECK_EQ_STR(zt_state_workload_at(s, 1)->uid, "real");
    zt_state_unref(s);
}

static void test_empty(void)
{
    const char *d = mk_dir();
    struct zt_state *s = NULL;
    char err[512] = "x";

    CHECK_EQ_INT(zt_config_dir_load(d, &s, err, sizeof(err)), 0);
    CHECK(s != NULL);
    CHECK_EQ_INT(zt_state_workload_count(s), 0);
    CHECK_EQ_INT(zt_state_service_count(s), 0);
    CHECK_EQ_INT(zt_state_policy_count(s), 0);
    zt_state_unref(s);

    /* Empty files and files with an empty document are fine too. */
    put(d, "a.yaml", "");
    put(d, "b.yaml", "# nothing yet\n");
    put(d, "c.yaml", "workloads: []\n");
    s = NULL;
    CHECK_EQ_INT(zt_config_dir_load(d, &s, err, sizeof(err)), 0);
    CHECK_EQ_INT(zt_state_workload_count(s), 0);
    zt_state_unref(s);
    rm_dir(d);
}

static void test_missing(void)
{
    const char *d = mk_dir();
    struct zt_state *s = (struct zt_state *)1;
    char err[512] = "", path[512], want[600];

    snprintf(path, sizeof(path), "%s/nope", d);
    CHECK_EQ_INT(zt_config_dir_load(path, &s, err, sizeof(err)), -ENOENT);
    CHECK(s == NULL);
    snprintf(want, sizeof(want), "%s: No such file or directory", path);
    CHECK_EQ_STR(err, want);

    put(d, "file.yaml", "");
    snprintf(path, sizeof(path), "%s/file.yaml", d);
    CHECK_EQ_INT(zt_config_dir_load(path, &s, err, sizeof(err)), -ENOTDIR);
    snprintf(want, sizeof(want), "%s: Not a directory", path);
    CHECK_EQ_STR(err, want);
    rm_dir(d);
}

/* A trailing slash does not double in messages. */
static void test_trailing_slash(void)
{
    const char *d = mk_dir();
    struct zt_state *s = NULL;
    char err[512] = "", path[512], want[600];

    put(d, "a.yaml", "nope: 1\n");
    snprintf(path, sizeof(path), "%s//", d);
    CHECK_EQ_INT(zt_config_dir_load(path, &s, err, sizeof(err)), ZT_E_CONFIG);
    snprintf(want, sizeof(want), "%s/a.yaml:1: nope: unknown key", d);
    rm_dir(d);
    CHECK_EQ_STR(err, want);
}

static void test_too_many_files(void)
{
    const char *d = mk_dir();
    struct zt_state *s = (struct zt_state *)1;
    char err[512] = "", name[64];
    int rc;

    for (int i = 0; i < ZT_CONFIG_DIR_MAX_FILES; i++) {
        snprintf(name, sizeof(name), "f%05d.yaml", i);
        put(d, name, "");
    }
    rc = zt_config_dir_load(d, &s, err, sizeof(err));
    CHECK_EQ_INT(rc, 0);
    zt_state_unref(s);
    put(d, "one-more.yml", "");
    rc = zt_config_dir_load(d, &s, err, sizeof(err));
    rm_dir(d);
    CHECK_EQ_INT(rc, ZT_E_TOO_BIG);
    CHECK(s == NULL);
    CHECK(strstr(err, "more than 10000 config files") != NULL);
}

/* The byte cap is on all files together: two files each under it but over
 * it in sum. Sparse files keep this cheap. */
static void test_too_many_bytes(void)
{
    const char *d = mk_dir();
    struct zt_state *s = (struct zt_state *)1;
    char err[512] = "", path[512];
    int fd, rc;

    put(d, "a.yaml", "# a comment to take a few bytes\n");
    snprintf(path, sizeof(path), "%s/b.yaml", d);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    CHECK_EQ_INT(ftruncate(fd, ZT_CONFIG_LOCAL_MAX_BYTES - 8), 0);
    close(fd);
    rc = zt_config_dir_load(d, &s, err, sizeof(err));
    rm_dir(d);
    CHECK_EQ_INT(rc, ZT_E_TOO_BIG);
    CHECK(s == NULL);
    CHECK(strstr(err, "config files total more than") != NULL);
    CHECK(strstr(err, "/b.yaml") != NULL);
}

/* Replaces name as editors do: a new file renamed over the old one. */
static void replace(const char *dir, const char *name, const char *text)
{
    char tmp[512], path[512];
    put(dir, ".tmp", text);
    snprintf(tmp, sizeof(tmp), "%s/.tmp", dir);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (rename(tmp, path) != 0)
        abort();
}

/* The new snapshot, or NULL (the error printed). */
static struct zt_state *reload(struct zt_config_dir *cd)
{
    struct zt_state *s = NULL;
    char err[512] = "";
    if (zt_config_dir_reload(cd, &s, err, sizeof(err)) != 0)
        fprintf(stderr, "  err: %s\n", err);
    return s;
}

/* A reload reads only the files that changed; the objects of the others are
 * the very records of the last snapshot. */
static void test_reload_reads_changed_files_only(void)
{
    const char *d = mk_dir();
    struct zt_config_dir *cd = zt_config_dir_new(d);
    struct zt_state *s1, *s2, *s3;

    put(d, "a.yaml", "workloads:\n" WL("w1") WL("w2") "policies:\n" POL("p1"));
    put(d, "b.yaml", "workloads:\n" WL("w3") "services:\n" SVC("h1"));
    CHECK((s1 = reload(cd)) != NULL);
    CHECK_EQ_INT(zt_config_dir_files_read(cd), 2);
    CHECK_EQ_INT(zt_state_workload_count(s1), 3);

    CHECK((s2 = reload(cd)) != NULL);
    CHECK_EQ_INT(zt_config_dir_files_read(cd), 0);
    CHECK(zt_state_workload_by_uid(s2, "w3") == zt_state_workload_by_uid(s1, "w3"));

    replace(d, "b.yaml", "workloads:\n" WL("w3") WL("w4") "services:\n" SVC("h2"));
    CHECK((s3 = reload(cd)) != NULL);
    CHECK_EQ_INT(zt_config_dir_files_read(cd), 1);
    CHECK_EQ_INT(zt_state_workload_count(s3), 4);
    CHECK(zt_state_workload_by_uid(s3, "w1") == zt_state_workload_by_uid(s1, "w1"));
    CHECK(zt_state_policy_by_key(s3, "default/p1") == zt_state_policy_by_key(s1, "default/p1"));
    CHECK(zt_state_workload_by_uid(s3, "w3") != zt_state_workload_by_uid(s1, "w3"));
    CHECK(zt_state_service_by_key(s3, "default/h1") == NULL);
    CHECK(zt_state_service_by_key(s3, "default/h2") != NULL);
    zt_state_unref(s1);
    zt_state_unref(s2);
    zt_state_unref(s3);

    /* A file removed takes its objects with it. */
    CHECK_EQ_INT(unlink_in(d, "a.yaml"), 0);
    CHECK((s1 = reload(cd)) != NULL);
    CHECK_EQ_INT(zt_config_dir_files_read(cd), 0);
    CHECK_EQ_INT(zt_state_workload_count(s1), 2);
    CHECK_EQ_INT(zt_state_policy_count(s1), 0);
    zt_state_unref(s1);
    zt_config_dir_free(cd);
    rm_dir(d);
}

/* A duplicate brought in by one changed file is reported as a full load
 * reports it; the refused reload changes nothing, and the next one compares
 * with the last good files. */
static void test_reload_duplicate_and_recovery(void)
{
    const char *d = mk_dir();
    struct zt_config_dir *cd = zt_config_dir_new(d);
    struct zt_state *s1, *s2 = (struct zt_state *)1;
    char err[512] = "", want[512];

    put(d, "a.yaml", "workloads:\n" WL("x") WL("y"));
    put(d, "b.yaml", "workloads:\n" WL("z"));
    CHECK((s1 = reload(cd)) != NULL);
    replace(d, "b.yaml", "workloads:\n" WL("z") WL("x"));
    CHECK_EQ_INT(zt_config_dir_reload(cd, &s2, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(s2 == NULL);
    snprintf(want, sizeof(want), "%s/b.yaml: workloads: uid \"x\" already defined in %s/a.yaml", d,
             d);
    CHECK_EQ_STR(err, want);

    /* Two new files defining one key. */
    replace(d, "b.yaml", "workloads:\n" WL("z") WL("v"));
    put(d, "c.yaml", "workloads:\n" WL("v"));
    CHECK_EQ_INT(zt_config_dir_reload(cd, &s2, err, sizeof(err)), ZT_E_CONFIG);
    snprintf(want, sizeof(want), "%s/c.yaml: workloads: uid \"v\" already defined in %s/b.yaml", d,
             d);
    CHECK_EQ_STR(err, want);

    /* Moving a key from one file to another is not a duplicate. */
    CHECK_EQ_INT(unlink_in(d, "c.yaml"), 0);
    replace(d, "a.yaml", "workloads:\n" WL("y"));
    replace(d, "b.yaml", "workloads:\n" WL("z") WL("x"));
    CHECK((s2 = reload(cd)) != NULL);
    CHECK_EQ_INT(zt_config_dir_files_read(cd), 2);
    CHECK_EQ_INT(zt_state_workload_count(s2), 3);
    CHECK(zt_state_workload_by_uid(s2, "x") != NULL);
    zt_state_unref(s2);

    /* A broken file is refused; put back, it is read again. */
    replace(d, "a.yaml", "workloads:\n- uid: [\n");
    CHECK(zt_config_dir_reload(cd, &s2, err, sizeof(err)) < 0);
    replace(d, "a.yaml", "workloads:\n" WL("y") WL("w"));
    CHECK((s2 = reload(cd)) != NULL);
    CHECK_EQ_INT(zt_config_dir_files_read(cd), 1);
    CHECK_EQ_INT(zt_state_workload_count(s2), 4);
    zt_state_unref(s1);
    zt_state_unref(s2);
    zt_config_dir_free(cd);
    rm_dir(d);
}

#define ROUTE(name, extra)                                                                         \
    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: " name            \
    ", namespace: shop}\nspec:\n  parentRefs: [{kind: Service, group: \"\", name: app}]\n" extra

/* HTTPRoute documents become the directory's routes; one that does not
 * read is a note with file, line, object and field and leaves the others
 * (and the rest of the file) in force; a second route of one name is left
 * out, naming the file that has it; an edit takes a route away. */
static void test_routes(void)
{
    const char *dir = mk_dir();
    struct zt_config_dir *cd = zt_config_dir_new(dir);
    const struct zt_route_def *const *r;
    struct zt_state *s;
    char want[600];

    static const char good[] = ROUTE("good", "  rules: [{backendRefs: [{name: v1, port: 80}]}]");
    static const char bad[] =
        ROUTE("bad", "  rules: [{matches: [{path: {type: Exact, value: nope}}]}]");
    static const char svc[] = "services: [{name: app, namespace: shop, hostname: app.shop}]\n";
    char a_yaml[1024];
    snprintf(a_yaml, sizeof(a_yaml), "%s\n---\n%s\n---\n%s", good, bad, svc);
    put(dir, "a.yaml", a_yaml);
    put(dir, "b.yaml", ROUTE("good", "") "\n---\n" ROUTE("other", ""));
    s = reload(cd);
    CHECK(s != NULL);
    CHECK_EQ_INT((int)zt_state_service_count(s), 1);
    zt_state_unref(s);
    CHECK_EQ_INT((int)zt_config_dir_routes(cd, &r), 2);
    CHECK_EQ_STR(r[0]->name, "good");
    CHECK_EQ_STR(r[1]->name, "other");
    CHECK_EQ_INT((int)r[0]->n_rules, 1);
    snprintf(want, sizeof(want),
             "%s/a.yaml:13: HTTPRoute shop/bad: spec.rules[0].matches[0].path.value: must start "
             "with \"/\" (route left out)\n",
             dir);
    CHECK(strstr(zt_config_dir_notes(cd), want) != NULL);
    snprintf(want, sizeof(want),
             "%s/b.yaml: HTTPRoute shop/good: already defined in %s/a.yaml (route left out)\n", dir,
             dir);
    CHECK(strstr(zt_config_dir_notes(cd), want) != NULL);

    replace(dir, "b.yaml", "services: []\n");
    s = reload(cd);
    CHECK(s != NULL);
    zt_state_unref(s);
    CHECK_EQ_INT((int)zt_config_dir_routes(cd, &r), 1);
    CHECK_EQ_STR(r[0]->name, "good");
    zt_config_dir_free(cd);
    rm_dir(dir);
}

#define AZ(name, spec)                                                                             \
    "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " name          \
    ", namespace: shop}\nspec:\n" spec
#define AN(name, spec)                                                                             \
    "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: " name        \
    ", namespace: shop}\nspec:\n" spec
#define WP_TARGET "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]\n"

/* AuthorizationPolicy and RequestAuthentication documents that attach to
 * waypoints become the directory's waypoint policies; a selector policy is
 * not one of them; a bad one is a note naming file, line and field; a
 * second one of a name is left out naming the file that has it. */
static void test_waypoint_policies(void)
{
    const char *dir = mk_dir();
    struct zt_config_dir *cd = zt_config_dir_new(dir);
    const struct zt_authz_l7_policy *const *az;
    const struct zt_jwt_authn_policy *const *an;
    struct zt_state *s;
    char want[600];

    /* One document a line. */
    /* clang-format off */
    static const char a_yaml[] =
        AZ("deny", WP_TARGET "  action: DENY\n  rules: [{to: [{operation: {paths: [/admin]}}]}]\n")
        "---\n" AZ("sel", "  selector: {matchLabels: {app: x}}\n")
        "---\n" AZ("bad", WP_TARGET "  rules: [{to: [{operation: {ports: [\"x\"]}}]}]\n")
        "---\n" AN("jwt", WP_TARGET "  jwtRules: [{issuer: i, jwksUri: \"https://i/keys\"}]\n");
    /* clang-format on */
    put(dir, "a.yaml", a_yaml);
    put(dir, "b.yaml", AZ("deny", WP_TARGET "  rules: [{}]\n"));
    s = reload(cd);
    CHECK(s != NULL);
    zt_state_unref(s);
    CHECK_EQ_INT((int)zt_config_dir_authz(cd, &az), 1);
    CHECK_EQ_STR(az[0]->name, "deny");
    CHECK_EQ_INT(az[0]->action, ZT_AUTHZ_L7_DENY);
    CHECK_EQ_INT((int)zt_config_dir_authn(cd, &an), 1);
    CHECK_EQ_STR(an[0]->name, "jwt");
    snprintf(want, sizeof(want),
             "%s/a.yaml:20: AuthorizationPolicy shop/bad: spec.rules[0].to[0].operation.ports[0]: "
             "\"x\" is not a port (0..65535) (policy left out)\n",
             dir);
    if (!strstr(zt_config_dir_notes(cd), want))
        fprintf(stderr, "  notes: %s\n", zt_config_dir_notes(cd));
    CHECK(strstr(zt_config_dir_notes(cd), want) != NULL);
    snprintf(want, sizeof(want),
             "%s/b.yaml: AuthorizationPolicy shop/deny: already defined in %s/a.yaml (policy left "
             "out)\n",
             dir, dir);
    CHECK(strstr(zt_config_dir_notes(cd), want) != NULL);

    replace(dir, "a.yaml", "services: []\n");
    s = reload(cd);
    CHECK(s != NULL);
    zt_state_unref(s);
    CHECK_EQ_INT((int)zt_config_dir_authz(cd, &az), 1);
    CHECK_EQ_INT(az[0]->action, ZT_AUTHZ_L7_ALLOW);
    CHECK_EQ_INT((int)zt_config_dir_authn(cd, &an), 0);
    zt_config_dir_free(cd);
    rm_dir(dir);
}

#define RL(name, spec)                                                                             \
    "apiVersion: ratelimit.ztunnel-c.io/v1alpha1\nkind: RateLimit\nmetadata: {name: " name         \
    ", namespace: shop}\nspec:\n" spec
#define RL_LIMIT "  limit: {requests: 5, unit: second}\n"

/* RateLimit documents (our own kind) become the directory's rate limits,
 * as the waypoint policies: a bad one is a note naming file, line, object
 * and field, a second one of a name is left out naming both files, the
 * others are kept; an edit is picked up by the next reload. */
static void test_ratelimits(void)
{
    const char *dir = mk_dir();
    struct zt_config_dir *cd = zt_config_dir_new(dir);
    const struct zt_ratelimit_policy *const *rl;
    struct zt_state *s;
    char want[600];

    /* clang-format off */
    static const char a_yaml[] =
        RL("gw", WP_TARGET RL_LIMIT "  key: {header: X-User}\n")
        "---\n" RL("bad", WP_TARGET "  limit: {requests: 5, unit: week}\n")
        "---\n" RL("svc", "  targetRefs: [{kind: Service, name: reviews}]\n" RL_LIMIT);
    /* clang-format on */
    put(dir, "a.yaml", a_yaml);
    put(dir, "b.yaml", RL("gw", WP_TARGET "  limit: {requests: 1, unit: hour}\n"));
    s = reload(cd);
    CHECK(s != NULL);
    zt_state_unref(s);
    CHECK_EQ_INT((int)zt_config_dir_ratelimits(cd, &rl), 2);
    CHECK_EQ_STR(rl[0]->name, "gw");
    CHECK_EQ_INT((int)rl[0]->requests, 5);
    CHECK_EQ_STR(rl[0]->header, "x-user");
    CHECK_EQ_STR(rl[1]->name, "svc");
    snprintf(want, sizeof(want),
             "%s/a.yaml:14: RateLimit shop/bad: spec.limit.unit: \"week\" is not second, minute "
             "or hour (policy left out)\n",
             dir);
    if (!strstr(zt_config_dir_notes(cd), want))
        fprintf(stderr, "  notes: %s\n", zt_config_dir_notes(cd));
    CHECK(strstr(zt_config_dir_notes(cd), want) != NULL);
    snprintf(want, sizeof(want),
             "%s/b.yaml: RateLimit shop/gw: already defined in %s/a.yaml (policy left out)\n", dir,
             dir);
    CHECK(strstr(zt_config_dir_notes(cd), want) != NULL);

    replace(dir, "a.yaml", "services: []\n");
    s = reload(cd);
    CHECK(s != NULL);
    zt_state_unref(s);
    CHECK_EQ_INT((int)zt_config_dir_ratelimits(cd, &rl), 1);
    CHECK_EQ_INT((int)rl[0]->requests, 1);
    CHECK_EQ_INT(rl[0]->unit, ZT_RATELIMIT_HOUR);
    CHECK(strstr(zt_config_dir_notes(cd), "RateLimit") == NULL);
    zt_config_dir_free(cd);
    rm_dir(dir);
}

int main(void)
{
    RUN(test_waypoint_policies);
    RUN(test_ratelimits);
    RUN(test_merge);
    RUN(test_duplicate_workload);
    RUN(test_duplicate_service);
    RUN(test_duplicate_policy);
    RUN(test_not_duplicate);
    RUN(test_bad_file);
    RUN(test_ignored);
    RUN(test_empty);
    RUN(test_missing);
    RUN(test_trailing_slash);
    RUN(test_too_many_files);
    RUN(test_too_many_bytes);
    RUN(test_reload_reads_changed_files_only);
    RUN(test_reload_duplicate_and_recovery);
    RUN(test_routes);
    return TEST_REPORT();
}
