/* agent/commands.h — operator subcommands of sdefed-agent.
 *
 *   sdefed-agent --config FILE COMMAND [ARGS...]
 *
 * Each command is one entry in agent_commands[] (commands.c) whose code
 * lives in the module it belongs to (e.g. governance for `project`,
 * `review`, `audit`). A command runs once and exits; it is given the
 * loaded, checked configuration. Exit status: 0 ok, 1 error (one line on
 * stderr), 2 usage.
 */
#ifndef AGENT_COMMANDS_H
#define AGENT_COMMANDS_H

#include "agent_config.h"

typedef struct agent_command {
    const char *name;
    const char *usage;     /* one line: "project add ID [--kinds k,k] ..." */
    int (*run)(const agent_config *cfg, int argc, char **argv);  /* argv[0] = name */
} agent_command;

/* Terminated by an entry with name == NULL. */
extern const agent_command agent_commands[];

#endif
