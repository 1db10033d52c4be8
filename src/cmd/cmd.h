/* Entry points of the ztunnel commands. Each takes the arguments after the
 * command name (argv[0] is the command name itself) and returns the process
 * exit status. Only main.c calls these. */
#ifndef ZT_CMD_H
#define ZT_CMD_H

int zt_cmd_proxy(int argc, char **argv);
int zt_cmd_waypoint(int argc, char **argv);
int zt_cmd_cni(int argc, char **argv);
int zt_cmd_control(int argc, char **argv);
int zt_cmd_enroll(int argc, char **argv);
int zt_cmd_unenroll(int argc, char **argv);
int zt_cmd_version(int argc, char **argv);

#endif
