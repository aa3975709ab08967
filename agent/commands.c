/* agent/commands.c — the table of sdefed-agent subcommands (see commands.h). */
#include "commands.h"

#include <stddef.h>

const agent_command agent_commands[] = {
    { NULL, NULL, NULL },
};
