/* Command dispatch only: every command lives in src/cmd/. */
#include "cmd/cmd.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: ztunnel [command] [options]\n"
               "commands:\n"
               "  proxy [ztunnel]   run the node proxy (default)\n"
               "  waypoint          run a waypoint (L7) in this network namespace\n"
               "  cni               run the node agent (ZDS server, in-pod redirection)\n"
               "  control           run the control plane (xDS and CA for proxies)\n"
               "  enroll            enroll a network namespace as a mesh workload\n"
               "  unenroll          remove a workload from the mesh\n"
               "  version           print version and build information\n"
               "  help              print this text\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-')
        return zt_cmd_proxy(argc - 1 < 1 ? 1 : argc, argc < 2 ? argv : argv);
    const char *cmd = argv[1];
    if (strcmp(cmd, "proxy") == 0)
        return zt_cmd_proxy(argc - 1, argv + 1);
    if (strcmp(cmd, "waypoint") == 0)
        return zt_cmd_waypoint(argc - 1, argv + 1);
    if (strcmp(cmd, "cni") == 0)
        return zt_cmd_cni(argc - 1, argv + 1);
    if (strcmp(cmd, "control") == 0)
        return zt_cmd_control(argc - 1, argv + 1);
    if (strcmp(cmd, "enroll") == 0)
        return zt_cmd_enroll(argc - 1, argv + 1);
    if (strcmp(cmd, "unenroll") == 0)
        return zt_cmd_unenroll(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
        return zt_cmd_version(argc - 1, argv + 1);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "ztunnel: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
