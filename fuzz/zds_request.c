/* Fuzzes the ZDS protobuf decoders. Invariant: a decoded request the
 * encoder can express (every kind except an add without workload info)
 * encodes and decodes back to the same kind, uid and info; a decoded Ack
 * likewise. */
#include "base/log.h"
#include "zds/zds.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    zt_log_set_level(ZT_LOG_ERROR);
    return 0;
}

static bool same_request(const struct zt_zds_request *a, const struct zt_zds_request *b)
{
    return a->kind == b->kind && strcmp(a->uid, b->uid) == 0 && a->has_info == b->has_info &&
           strcmp(a->info.name, b->info.name) == 0 &&
           strcmp(a->info.namespace, b->info.namespace) == 0 &&
           strcmp(a->info.service_account, b->info.service_account) == 0;
}

static void fuzz_request(const uint8_t *data, size_t size)
{
    struct zt_zds_request req, again;
    uint8_t buf[ZT_ZDS_MSG_MAX];
    size_t len;

    if (zt_zds_request_decode(data, size, &req) != 0)
        return;
    if (req.kind == ZT_ZDS_REQ_ADD && !req.has_info)
        return;
    if (zt_zds_request_encode(&req, buf, sizeof(buf), &len) != 0)
        __builtin_trap();
    if (zt_zds_request_decode(buf, len, &again) != 0 || !same_request(&req, &again))
        __builtin_trap();
}

static void fuzz_ack(const uint8_t *data, size_t size)
{
    char error[ZT_ZDS_ERROR_MAX + 1], again[ZT_ZDS_ERROR_MAX + 1], small[8];
    uint8_t buf[ZT_ZDS_MSG_MAX];
    size_t len;

    if (zt_zds_ack_decode(data, size, small, sizeof(small)) == 0 && strlen(small) >= sizeof(small))
        __builtin_trap();
    if (zt_zds_ack_decode(data, size, error, sizeof(error)) != 0)
        return;
    if (zt_zds_ack_encode(error, buf, sizeof(buf), &len) != 0)
        __builtin_trap();
    if (zt_zds_ack_decode(buf, len, again, sizeof(again)) != 0 || strcmp(error, again) != 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int version;

    fuzz_request(data, size);
    fuzz_ack(data, size);
    (void)zt_zds_hello_decode(data, size, &version);
    return 0;
}
