/* Fuzzes the local YAML configuration loader. Invariants: success yields a
 * snapshot; failure yields none and an error of the documented form
 * "<name>:..." (local.h). */
#include "base/log.h"
#include "config/local.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    zt_log_set_level(ZT_LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char name[] = "fuzz.yaml";
    struct zt_state *state = NULL;
    char err[512];
    int rc;

    err[0] = '\0';
    rc = zt_config_local_load_string(name, (const char *)data, size, &state, err, sizeof(err));
    if (rc == 0) {
        if (!state)
            __builtin_trap();
        zt_state_unref(state);
        return 0;
    }
    if (rc > 0 || state || err[0] == '\0' || strncmp(err, name, sizeof(name) - 1) != 0 ||
        err[sizeof(name) - 1] != ':')
        __builtin_trap();
    return 0;
}
