/* Fuzzes the node agent's pod-record JSON decoder (the bytes of one
 * pods/<uid>.json file). Invariants: a decoded record is valid, and encodes
 * and decodes back to the same record. */
#include "base/log.h"
#include "cni/store.h"

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

static bool same_pod(const struct zt_cni_pod *a, const struct zt_cni_pod *b)
{
    return strcmp(a->uid, b->uid) == 0 && strcmp(a->netns, b->netns) == 0 &&
           strcmp(a->info.name, b->info.name) == 0 &&
           strcmp(a->info.namespace, b->info.namespace) == 0 &&
           strcmp(a->info.service_account, b->info.service_account) == 0 &&
           a->netns_dev == b->netns_dev && a->netns_ino == b->netns_ino;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct zt_cni_pod pod, again;
    char why[128];
    char *text;

    if (zt_cni_store_decode((const char *)data, size, &pod) != 0)
        return 0;
    if (zt_cni_pod_validate(&pod, why, sizeof(why)) != 0)
        __builtin_trap();
    text = zt_cni_store_encode(&pod);
    if (zt_cni_store_decode(text, strlen(text), &again) != 0 || !same_pod(&pod, &again))
        __builtin_trap();
    free(text);
    return 0;
}
