/* Fuzzes the node-tokens file parser of `ztunnel control` (control/tokens.h).
 *
 * Invariants: failure leaves no table and an error "<name>:..."; success
 * gives a table with one token per token line, and every token line, split
 * here on its own by the documented grammar (lines on '\n', fields on
 * blanks; '\r' counts as a blank so CRLF files work), looks up to its own
 * node. Looking up a token shorter than the minimum, or one byte longer
 * than the longest, never finds a node. */
#include "base/log.h"
#include "control/tokens.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    zt_log_set_level(ZT_LOG_ERROR);
    return 0;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* The next blank-separated field of [*p, end), or NULL. */
static const char *field(const char **p, const char *end, size_t *len)
{
    const char *s = *p, *e;

    while (s < end && is_blank(*s))
        s++;
    for (e = s; e < end && !is_blank(*e); e++)
        ;
    *p = e;
    *len = (size_t)(e - s);
    return s == end ? NULL : s;
}

/* Checks every token line of an accepted text against the table. */
static void check_lines(struct zt_control_tokens *t, const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    size_t lines = 0;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *lend = eol ? eol : end, *q = p, *node, *tok;
        size_t nlen, tlen, xlen;

        p = eol ? eol + 1 : end;
        node = field(&q, lend, &nlen);
        if (!node || node[0] == '#')
            continue;
        tok = field(&q, lend, &tlen);
        if (!tok || field(&q, lend, &xlen))
            __builtin_trap(); /* accepted a line without exactly two fields */
        const char *got = zt_control_tokens_node(t, tok, tlen);
        if (!got || strlen(got) != nlen || memcmp(got, node, nlen) != 0)
            __builtin_trap();
        lines++;
    }
    if (zt_control_tokens_count(t) != lines || lines == 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char name[] = "tokens";
    static char big[ZT_CONTROL_TOKEN_MAX + 1];
    struct zt_control_tokens *t = (struct zt_control_tokens *)&t; /* must be overwritten */
    char err[512];
    int rc;

    err[0] = '\0';
    rc = zt_control_tokens_parse(name, (const char *)data, size, &t, err, sizeof(err));
    if (rc != 0) {
        if (rc > 0 || t || strncmp(err, name, sizeof(name) - 1) != 0 ||
            err[sizeof(name) - 1] != ':')
            __builtin_trap();
        return 0;
    }
    if (!t)
        __builtin_trap();
    check_lines(t, (const char *)data, size);
    /* Too short or too long to be a token: never a node, whatever bytes. */
    if (zt_control_tokens_node(t, (const char *)data, 0) ||
        zt_control_tokens_node(t, (const char *)data,
                               size < ZT_CONTROL_TOKENS_MIN_LEN ? size
                                                                : ZT_CONTROL_TOKENS_MIN_LEN - 1))
        __builtin_trap();
    memset(big, 'a', sizeof(big));
    if (size)
        memcpy(big, data, size < sizeof(big) ? size : sizeof(big));
    if (zt_control_tokens_node(t, big, sizeof(big)))
        __builtin_trap();
    zt_control_tokens_free(t);
    return 0;
}
