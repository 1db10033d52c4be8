#include "test.h"

#include "base/err.h"
#include "control/tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

/* True if text is refused with ZT_E_CONFIG and an error containing want. */
static bool refused(const char *text, const char *want)
{
    struct zt_control_tokens *t = NULL;
    char err[256] = "";
    int rc = zt_control_tokens_parse("tokens", text, strlen(text), &t, err, sizeof(err));
    bool ok = rc == ZT_E_CONFIG && t == NULL && strstr(err, want) != NULL;
    if (!ok)
        fprintf(stderr, "  '%s': rc %d, error '%s', want '%s'\n", text, rc, err, want);
    zt_control_tokens_free(t);
    return ok;
}

static const char *node(struct zt_control_tokens *t, const char *tok)
{
    return zt_control_tokens_node(t, tok, strlen(tok));
}

static void test_parse_and_lookup(void)
{
    const char *text = "# nodes\n"
                       "node-1 0123456789abcdef0001\n"
                       "\n"
                       "  node-2.example\t0123456789abcdef0002  \r\n"
                       "node-3 0123456789abcdef0003";
    struct zt_control_tokens *t = NULL;
    char err[256];
    CHECK_EQ_INT(zt_control_tokens_parse("tokens", text, strlen(text), &t, err, sizeof(err)), 0);
    CHECK_EQ_INT((int)zt_control_tokens_count(t), 3);
    CHECK_EQ_STR(node(t, "0123456789abcdef0001"), "node-1");
    CHECK_EQ_STR(node(t, "0123456789abcdef0002"), "node-2.example");
    CHECK_EQ_STR(node(t, "0123456789abcdef0003"), "node-3");
    CHECK(node(t, "0123456789abcdef000") == NULL);
    CHECK(node(t, "0123456789abcdef00011") == NULL);
    CHECK(node(t, "") == NULL);
    /* Only the given length counts. */
    CHECK_EQ_STR(zt_control_tokens_node(t, "0123456789abcdef0001XYZ", 20), "node-1");
    zt_control_tokens_free(t);
}

static void test_bad_files(void)
{
    CHECK(refused("", "no node tokens"));
    CHECK(refused("# only a comment\n", "no node tokens"));
    CHECK(refused("node-1\n", "tokens:1: expected"));
    CHECK(refused("a 0123456789abcdef0001\nnode-1 tok extra\n", "tokens:2: expected"));
    CHECK(refused("node-1 short\n", "tokens:1: token of node node-1"));
    CHECK(refused("Node_1 0123456789abcdef0001\n", "not a DNS subdomain"));
    CHECK(refused("-node 0123456789abcdef0001\n", "not a DNS subdomain"));
    CHECK(refused("a 0123456789abcdef0001\n\nb 0123456789abcdef0001\n",
                  "tokens:3: node b has the same token as node a (line 1)"));
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void test_reload(void)
{
    char dir[] = "/tmp/zt-tokens-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128], tmp[128];
    snprintf(path, sizeof(path), "%s/tokens", dir);
    snprintf(tmp, sizeof(tmp), "%s/tokens.new", dir);
    struct zt_control_tokens *t = NULL;
    char err[256];
    CHECK_EQ_INT(zt_control_tokens_load(path, &t, err, sizeof(err)), -ENOENT);
    CHECK(strstr(err, path) != NULL);
    write_file(path, "node-1 0123456789abcdef0001\n");
    CHECK_EQ_INT(zt_control_tokens_load(path, &t, err, sizeof(err)), 0);
    CHECK_EQ_STR(node(t, "0123456789abcdef0001"), "node-1");
    /* Replaced (rename, a new inode): node-1's token revoked, node-2 added. */
    write_file(tmp, "node-2 0123456789abcdef0002\n");
    CHECK_EQ_INT(rename(tmp, path), 0);
    CHECK(node(t, "0123456789abcdef0001") == NULL);
    CHECK_EQ_STR(node(t, "0123456789abcdef0002"), "node-2");
    /* A broken file keeps the last good table. */
    write_file(tmp, "node-3\n");
    CHECK_EQ_INT(rename(tmp, path), 0);
    CHECK_EQ_STR(node(t, "0123456789abcdef0002"), "node-2");
    zt_control_tokens_free(t);
    unlink(path);
    rmdir(dir);
}

/* A deleted file means no tokens at all, not the last ones read; a file
 * put back is read again. */
static void test_deleted_file(void)
{
    char dir[] = "/tmp/zt-tokens-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof(path), "%s/tokens", dir);
    struct zt_control_tokens *t = NULL;
    char err[256];
    write_file(path, "node-1 0123456789abcdef0001\n");
    CHECK_EQ_INT(zt_control_tokens_load(path, &t, err, sizeof(err)), 0);
    CHECK_EQ_STR(node(t, "0123456789abcdef0001"), "node-1");
    CHECK_EQ_INT(unlink(path), 0);
    CHECK(node(t, "0123456789abcdef0001") == NULL);
    CHECK_EQ_INT((int)zt_control_tokens_count(t), 0);
    write_file(path, "node-1 0123456789abcdef0001\n");
    CHECK_EQ_STR(node(t, "0123456789abcdef0001"), "node-1");
    zt_control_tokens_free(t);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    RUN(test_parse_and_lookup);
    RUN(test_bad_files);
    RUN(test_reload);
    RUN(test_deleted_file);
    return TEST_REPORT();
}
