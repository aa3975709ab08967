/* agent/commands.c — the table of sdefed-agent subcommands (see commands.h). */
#include "commands.h"

#include <stddef.h>

#include "agent_ops.h"
#include "db_indexes.h"
#include "governance/commands_gov.h"

const agent_command agent_commands[] = {
    { "status", "status [--json]    the running agent: connection, counters, last error, certs",
      agent_ops_status_command },
    { "indexes", "indexes [--create] [--dataset NAME]   check (or build) the indexes queries need",
      db_indexes_command },
    { "project", "project add|list|show|revoke ...   approved projects (project with no args: help)",
      gov_cmd_project },
    { "review", "review list|show ID|approve ID|reject ID --reason TEXT   held results",
      gov_cmd_review },
    { "audit", "audit verify [--head SEQ:HASH] | export [--out FILE] [--since DATE]",
      gov_cmd_audit },
    { NULL, NULL, NULL },
};
