/* Fuzzes the HBONE :authority parser and the server-side CONNECT check.
 * Invariant: a parsed authority, formatted and parsed again, names the same
 * socket address. */
#include "base/log.h"
#include "hbone/hbone.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sockaddr_in accepted4;
static struct sockaddr_in6 accepted6;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    zt_log_set_level(ZT_LOG_ERROR);
    accepted4.sin_family = AF_INET;
    accepted4.sin_port = htons(15008);
    inet_pton(AF_INET, "10.0.0.1", &accepted4.sin_addr);
    accepted6.sin6_family = AF_INET6;
    accepted6.sin6_port = htons(15008);
    inet_pton(AF_INET6, "fd00::1", &accepted6.sin6_addr);
    return 0;
}

static void check_request(const char *authority, const struct sockaddr *accepted_on)
{
    struct zt_hbone_target target;
    const char *why = NULL;
    int status = zt_hbone_check_request("CONNECT", authority, &target, &why);
    if (status == 200)
        status = zt_hbone_check_target(&target, accepted_on, false, &why);
    if (status == 200 ? why != NULL : (why == NULL || (status != 400 && status != 503)))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    struct sockaddr_storage a, b;
    char text[128];

    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';

    if (zt_hbone_parse_authority(s, &a) == 0) {
        if (a.ss_family != AF_INET && a.ss_family != AF_INET6)
            __builtin_trap();
        zt_hbone_format_authority((const struct sockaddr *)&a, text, sizeof(text));
        if (zt_hbone_parse_authority(text, &b) != 0 || memcmp(&a, &b, sizeof(a)) != 0)
            __builtin_trap();
    }
    struct zt_hbone_target t;
    if (zt_hbone_parse_target(s, &t) == 0 &&
        (t.port == 0 || (t.is_host ? !t.host[0] || strlen(t.host) > ZT_HBONE_HOST_MAX
                                   : t.addr.ss_family != AF_INET && t.addr.ss_family != AF_INET6)))
        __builtin_trap();
    check_request(s, (const struct sockaddr *)&accepted4);
    check_request(s, (const struct sockaddr *)&accepted6);
    free(s);
    return 0;
}
