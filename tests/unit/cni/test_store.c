#include "test.h"

#include "base/err.h"
#include "cni/ctl.h"
#include "cni/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static struct zt_cni_pod make_pod(const char *uid)
{
    struct zt_cni_pod p;
    memset(&p, 0, sizeof(p));
    snprintf(p.uid, sizeof(p.uid), "%s", uid);
    strcpy(p.netns, "/var/run/netns/pod-\"quoted\"");
    strcpy(p.info.name, "web-0");
    strcpy(p.info.namespace, "shop");
    strcpy(p.info.service_account, "web");
    p.netns_dev = 4;
    p.netns_ino = 18446744073709551615ULL; /* survives JSON */
    return p;
}

struct seen {
    int ok, bad;
    char uids[256];
};

static void on_load(void *ud, const char *file, const struct zt_cni_pod *pod, int err)
{
    struct seen *s = ud;
    if (!pod) {
        s->bad++;
        return;
    }
    s->ok++;
    strcat(s->uids, pod->uid);
    strcat(s->uids, ";");
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_codec(void)
{
    struct zt_cni_pod in = make_pod("abc-123"), out;
    char *s = zt_cni_store_encode(&in);
    CHECK_EQ_INT(zt_cni_store_decode(s, strlen(s), &out), 0);
    free(s);
    CHECK_EQ_STR(out.uid, "abc-123");
    CHECK_EQ_STR(out.netns, in.netns);
    CHECK_EQ_STR(out.info.service_account, "web");
    CHECK(out.netns_ino == in.netns_ino && out.netns_dev == 4);
    CHECK_EQ_INT(zt_cni_store_decode("{", 1, &out), ZT_E_CONFIG);
    CHECK_EQ_INT(zt_cni_store_decode("[]", 2, &out), ZT_E_CONFIG);
    /* uid not usable as a file name */
    const char *bad = "{\"uid\":\"../x\",\"netns\":\"/n\",\"name\":\"a\",\"namespace\":\"b\","
                      "\"service_account\":\"c\",\"netns_dev\":\"1\",\"netns_ino\":\"2\"}";
    CHECK_EQ_INT(zt_cni_store_decode(bad, strlen(bad), &out), ZT_E_CONFIG);
    /* number where a string belongs */
    const char *typ = "{\"uid\":\"x\",\"netns\":\"/n\",\"name\":1,\"namespace\":\"b\","
                      "\"service_account\":\"c\",\"netns_dev\":\"1\",\"netns_ino\":\"2\"}";
    CHECK_EQ_INT(zt_cni_store_decode(typ, strlen(typ), &out), ZT_E_CONFIG);
}

static void test_validate(void)
{
    struct zt_cni_pod p = make_pod("ok");
    char err[128];
    CHECK_EQ_INT(zt_cni_pod_validate(&p, err, sizeof(err)), 0);
    CHECK(!zt_cni_uid_is_valid(".hidden"));
    CHECK(!zt_cni_uid_is_valid("a/b"));
    CHECK(!zt_cni_uid_is_valid(""));
    CHECK(zt_cni_uid_is_valid("0f9e2c1a-77b4-4c4e-9a1e-3b6f0d2a9c11"));
    p.info.namespace[0] = '\0';
    CHECK_EQ_INT(zt_cni_pod_validate(&p, err, sizeof(err)), ZT_E_CONFIG);
    CHECK(strstr(err, "namespace") != NULL);
    p = make_pod("ok");
    strcpy(p.netns, "relative");
    CHECK_EQ_INT(zt_cni_pod_validate(&p, err, sizeof(err)), ZT_E_CONFIG);
}

static void test_write_load_corrupt(void)
{
    char dir[] = "/tmp/zt-store-XXXXXX";
    char cmd[600];
    struct seen s;
    struct zt_cni_pod a = make_pod("pod-a"), b = make_pod("pod-b");
    struct stat st;
    char path[512];

    CHECK(mkdtemp(dir) != NULL);
    CHECK_EQ_INT(zt_cni_store_write(dir, &a), 0);
    CHECK_EQ_INT(zt_cni_store_write(dir, &b), 0);
    strcpy(b.info.name, "web-1");
    CHECK_EQ_INT(zt_cni_store_write(dir, &b), 0); /* overwrite */
    snprintf(path, sizeof(path), "%s/pod-a.json", dir);
    CHECK_EQ_INT(stat(path, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    write_file(dir, "broken.json", "{\"uid\":");
    write_file(dir, "other.json", "{}");
    /* right content, wrong file name: would not be removable by uid */
    {
        struct zt_cni_pod c = make_pod("pod-c");
        char *t = zt_cni_store_encode(&c);
        write_file(dir, "pod-x.json", t);
        free(t);
    }
    write_file(dir, "notes.txt", "ignored");
    write_file(dir, ".pod-z.json.tmp", "{"); /* leftover temp: ignored */
    memset(&s, 0, sizeof(s));
    CHECK_EQ_INT(zt_cni_store_load(dir, on_load, &s), 0);
    CHECK_EQ_INT(s.ok, 2);
    CHECK_EQ_INT(s.bad, 3);
    CHECK(strstr(s.uids, "pod-a;") && strstr(s.uids, "pod-b;"));

    CHECK_EQ_INT(zt_cni_store_remove(dir, "pod-a"), 0);
    CHECK_EQ_INT(zt_cni_store_remove(dir, "pod-a"), -ENOENT);
    memset(&s, 0, sizeof(s));
    CHECK_EQ_INT(zt_cni_store_load(dir, on_load, &s), 0);
    CHECK_EQ_INT(s.ok, 1);
    CHECK_EQ_INT(zt_cni_store_load("/nonexistent-zt-dir", on_load, &s), -ENOENT);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

static void test_ctl_codec(void)
{
    struct zt_cni_ctl_request req = {.op = ZT_CNI_CTL_ENROLL, .pod = make_pod("u1")}, out;
    struct zt_cni_ctl_reply rep = {.ok = true}, rout;
    char *line = zt_cni_ctl_request_encode(&req);
    CHECK(line[strlen(line) - 1] == '\n');
    CHECK_EQ_INT(zt_cni_ctl_request_decode(line, strlen(line), &out), 0);
    free(line);
    CHECK_EQ_INT(out.op, ZT_CNI_CTL_ENROLL);
    CHECK_EQ_STR(out.pod.netns, req.pod.netns);
    CHECK_EQ_STR(out.pod.info.namespace, "shop");
    strcpy(rep.message, "enrolled");
    strcpy(rep.proxy_error, "bind failed");
    line = zt_cni_ctl_reply_encode(&rep);
    CHECK_EQ_INT(zt_cni_ctl_reply_decode(line, strlen(line), &rout), 0);
    free(line);
    CHECK(rout.ok);
    CHECK_EQ_STR(rout.proxy_error, "bind failed");
    CHECK_EQ_INT(zt_cni_ctl_request_decode("{\"op\":\"format\"}", 15, &out), ZT_E_PROTO);
    CHECK_EQ_INT(zt_cni_ctl_request_decode("{\"op\":\"enroll\",\"uid\":7}", 23, &out), ZT_E_PROTO);
    CHECK_EQ_INT(zt_cni_ctl_reply_decode("{}", 2, &rout), ZT_E_PROTO);
}

/* Found by fuzz/cni_ctl (corpus/cni_ctl/crash_reply_not_utf8): the agent
 * puts text it does not control into replies (the proxy's Ack error, pod
 * names cut by "%.100s" in the middle of a UTF-8 sequence); the encoder
 * aborted on bytes that are not UTF-8. They now go out as '?'. */
static void test_ctl_encode_not_utf8(void)
{
    struct zt_cni_ctl_reply rep = {.ok = true}, rout;
    struct zt_cni_ctl_request req = {.op = ZT_CNI_CTL_ENROLL, .pod = make_pod("u1")}, out;
    char name[64] = "";
    char *line;

    for (int i = 0; i < 10; i++)
        strcat(name, "\xc3\xa9"); /* e-acute */
    snprintf(rep.message, sizeof(rep.message), "enrolled shop/%.5s", name);
    strcpy(rep.proxy_error, "\x92p\xff\xf0\x9f\x98 gone \xed\xa0\x80 \xc0\xaf");
    line = zt_cni_ctl_reply_encode(&rep);
    CHECK(line != NULL);
    CHECK_EQ_INT(zt_cni_ctl_reply_decode(line, line ? strlen(line) : 0, &rout), 0);
    free(line);
    CHECK(rout.ok);
    CHECK_EQ_STR(rout.message, "enrolled shop/\xc3\xa9\xc3\xa9?");
    CHECK_EQ_STR(rout.proxy_error, "?p???? gone ??? ??");

    strcpy(req.pod.info.name, "web\xff");
    line = zt_cni_ctl_request_encode(&req);
    CHECK(line != NULL);
    CHECK_EQ_INT(zt_cni_ctl_request_decode(line, line ? strlen(line) : 0, &out), 0);
    free(line);
    CHECK_EQ_STR(out.pod.info.name, "web?");
    CHECK_EQ_STR(out.pod.uid, "u1");
}

int main(void)
{
    RUN(test_codec);
    RUN(test_validate);
    RUN(test_write_load_corrupt);
    RUN(test_ctl_codec);
    RUN(test_ctl_encode_not_utf8);
    return TEST_REPORT();
}
