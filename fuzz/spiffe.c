/* Fuzzes the SPIFFE id parser. Invariants: a parsed id formats into the
 * bounded buffer, parses back equal, and zt_spiffe_make accepts its parts. */
#include "base/log.h"
#include "tls/spiffe.h"

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
    struct zt_spiffe_id id, again, made;
    char text[ZT_SPIFFE_ID_MAX + 1];
    int n;

    if (zt_spiffe_parse((const char *)data, size, &id) != 0)
        return 0;
    n = zt_spiffe_format(&id, text, sizeof(text));
    if (n < 0 || (size_t)n != size || memcmp(text, data, size) != 0)
        __builtin_trap();
    if (zt_spiffe_parse(text, (size_t)n, &again) != 0 || !zt_spiffe_eq(&id, &again))
        __builtin_trap();
    if (zt_spiffe_make(id.trust_domain, id.ns, id.sa, &made) != 0 || !zt_spiffe_eq(&id, &made))
        __builtin_trap();
    return 0;
}
