/* Fuzzes the agent control protocol's JSON lines: the decoders (request, as
 * the agent reads it from `ztunnel enroll`, and reply, as the client reads
 * it), and the reply encoder, whose texts the agent fills with bytes it does
 * not control (the proxy's ZDS Ack error, truncated pod names).
 * Invariants: whatever decodes encodes and decodes back the same; any reply
 * encodes, and (if the line fits) decodes with each byte kept or, where it
 * was not UTF-8, replaced by '?'. */
#include "base/log.h"
#include "cni/ctl.h"

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

static bool same_request(const struct zt_cni_ctl_request *a, const struct zt_cni_ctl_request *b)
{
    if (a->op != b->op || strcmp(a->pod.uid, b->pod.uid) != 0)
        return false;
    if (a->op == ZT_CNI_CTL_UNENROLL)
        return true; /* only the uid travels */
    return strcmp(a->pod.netns, b->pod.netns) == 0 &&
           strcmp(a->pod.info.name, b->pod.info.name) == 0 &&
           strcmp(a->pod.info.namespace, b->pod.info.namespace) == 0 &&
           strcmp(a->pod.info.service_account, b->pod.info.service_account) == 0;
}

static bool same_reply(const struct zt_cni_ctl_reply *a, const struct zt_cni_ctl_reply *b)
{
    return a->ok == b->ok && strcmp(a->message, b->message) == 0 &&
           strcmp(a->error, b->error) == 0 && strcmp(a->proxy_error, b->proxy_error) == 0;
}

/* Fills dst (cap bytes) from up to `n` bytes of data, stopping at a NUL. */
static void take(char *dst, size_t cap, const uint8_t *data, size_t n)
{
    size_t i = 0;
    for (; i < n && i < cap - 1 && data[i]; i++)
        dst[i] = (char)data[i];
    dst[i] = '\0';
}

static bool kept_or_replaced(const char *in, const char *out)
{
    if (strlen(in) != strlen(out))
        return false;
    for (; *in; in++, out++)
        if (*in != *out && *out != '?')
            return false;
    return true;
}

static void fuzz_reply_encode(const uint8_t *data, size_t size)
{
    struct zt_cni_ctl_reply rep, back;
    size_t third = size / 3;
    char *line;

    memset(&rep, 0, sizeof(rep));
    rep.ok = size & 1;
    take(rep.message, sizeof(rep.message), data, third);
    take(rep.error, sizeof(rep.error), data + third, third);
    take(rep.proxy_error, sizeof(rep.proxy_error), data + 2 * third, size - 2 * third);
    line = zt_cni_ctl_reply_encode(&rep);
    if (!line || !strchr(line, '\n'))
        __builtin_trap();
    /* Over-long lines: the known limit described above. */
    if (strlen(line) <= ZT_CNI_CTL_LINE_MAX) {
        if (zt_cni_ctl_reply_decode(line, strlen(line), &back) != 0 || back.ok != rep.ok ||
            !kept_or_replaced(rep.message, back.message) ||
            !kept_or_replaced(rep.error, back.error) ||
            !kept_or_replaced(rep.proxy_error, back.proxy_error))
            __builtin_trap();
    }
    free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zt_cni_ctl_request req, req2;
    struct zt_cni_ctl_reply rep, rep2;
    char *line;

    if (zt_cni_ctl_request_decode((const char *)data, size, &req) == 0) {
        if (req.op != ZT_CNI_CTL_ENROLL && req.op != ZT_CNI_CTL_UNENROLL)
            __builtin_trap();
        line = zt_cni_ctl_request_encode(&req);
        /* Fields full of escaped control characters, and keys the input
         * left out, can make the line outgrow ZT_CNI_CTL_LINE_MAX: a known
         * limit (the decoder then answers ZT_E_TOO_BIG), not checked. */
        if (strlen(line) <= ZT_CNI_CTL_LINE_MAX &&
            (zt_cni_ctl_request_decode(line, strlen(line), &req2) != 0 ||
             !same_request(&req, &req2)))
            __builtin_trap();
        free(line);
    }
    if (zt_cni_ctl_reply_decode((const char *)data, size, &rep) == 0) {
        line = zt_cni_ctl_reply_encode(&rep);
        if (zt_cni_ctl_reply_decode(line, strlen(line), &rep2) != 0 || !same_reply(&rep, &rep2))
            __builtin_trap();
        free(line);
    }
    fuzz_reply_encode(data, size);
    return 0;
}
