#include "cmd/common.h"

#include "base/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

const char *zt_cmd_env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && v[0] ? v : def;
}

int zt_cmd_env_bool(const char *prog, const char *name, bool def, bool *out)
{
    const char *v = zt_cmd_env_or(name, NULL);
    if (!v)
        *out = def;
    else if (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0)
        *out = true;
    else if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0)
        *out = false;
    else {
        fprintf(stderr, "ztunnel %s: %s=\"%s\": expected true or false\n", prog, name, v);
        return 2;
    }
    return 0;
}

int zt_cmd_setup_logging(const char *prog)
{
    zt_log_set_json(strcmp(zt_cmd_env_or("LOG_FORMAT", "plain"), "json") == 0);
    enum zt_log_level level;
    char lvl[32];
    snprintf(lvl, sizeof(lvl), "%s", zt_cmd_env_or("RUST_LOG", zt_cmd_env_or("LOG_LEVEL", "info")));
    lvl[strcspn(lvl, ",")] = 0;
    if (zt_log_level_parse(lvl, &level) < 0) {
        fprintf(stderr,
                "ztunnel %s: RUST_LOG/LOG_LEVEL: bad level '%s' (error, warn, info, debug, "
                "trace)\n",
                prog, lvl);
        return 2;
    }
    zt_log_set_level(level);
    return 0;
}

int zt_cmd_raise_nofile(const char *scope)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        int rc = -errno;
        ZT_WARN(scope, "cannot read the open-file limit: %s", strerror(errno));
        return rc;
    }
    if (rl.rlim_cur == rl.rlim_max)
        return 0;
    rlim_t from = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        int rc = -errno;
        ZT_WARN(scope, "cannot raise the open-file limit from %llu to %llu: %s",
                (unsigned long long)from, (unsigned long long)rl.rlim_max, strerror(errno));
        return rc;
    }
    ZT_INFO(scope, "open-file limit raised from %llu to %llu", (unsigned long long)from,
            (unsigned long long)rl.rlim_max);
    return 0;
}
