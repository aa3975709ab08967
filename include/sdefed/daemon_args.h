/* include/sdefed/daemon_args.h — the command line both daemons share.
 *
 *   sdefed-agent|sdefed-coordinator --config FILE [--check-config]
 *   sdefed-agent|sdefed-coordinator --config FILE SUBCOMMAND [ARGS]
 *
 * One parser so the two daemons cannot drift apart in how they read it.
 */
#ifndef SDEFED_DAEMON_ARGS_H
#define SDEFED_DAEMON_ARGS_H

#include <stdbool.h>
#include <stdio.h>

typedef struct daemon_args {
    const char *config_path;   /* --config FILE (required) */
    bool check_only;           /* --check-config: load, report, exit */
    int sub_argc;              /* words after the options: a subcommand */
    char **sub_argv;           /* points into argv; NULL when sub_argc == 0 */
} daemon_args;

/* Parse argv into *out. `usage` prints the daemon's usage to the stream
 * it is given. Returns -1 when the daemon should go on with *out, or an
 * exit status: 0 after --help (usage on stdout), 2 for a usage error
 * (usage on stderr: unknown option, no --config, --check-config with a
 * subcommand). Resets getopt's state first, so it may be called again. */
int daemon_args_parse(int argc, char **argv, void (*usage)(FILE *), daemon_args *out);

#endif
