/* agent/governance/commands_gov.h — the custodian's subcommands:
 *
 *   sdefed-agent --config F project add ID --requesters LIST [--kinds LIST]
 *                [--datasets LIST] [--expires DATE] [--release auto|review]
 *                [--min-cell N] [--rounding N] [--zero-is-disclosive]
 *                [--description TEXT]
 *   sdefed-agent --config F project list | show ID | revoke ID [--reason TEXT]
 *   sdefed-agent --config F review list [--all] | show ID | approve ID
 *                | reject ID --reason TEXT
 *   sdefed-agent --config F audit verify [--head SEQ:HASH]
 *                | export [--out FILE] [--since DATE]
 *
 * Each opens the state database itself (state.h) while the daemon may be
 * running, and audits what it changes with the operator's user name as
 * actor. Exit status as in commands.h: 0 ok, 1 error, 2 usage; `audit
 * verify` exits 1 when the log is broken.
 */
#ifndef AGENT_GOV_COMMANDS_H
#define AGENT_GOV_COMMANDS_H

#include "agent_config.h"

int gov_cmd_project(const agent_config *cfg, int argc, char **argv);
int gov_cmd_review(const agent_config *cfg, int argc, char **argv);
int gov_cmd_audit(const agent_config *cfg, int argc, char **argv);

/* Shared by the three: the operator's name for the audit log ("uid N"
 * when it has none) into buf. */
void gov_cmd_actor(char *buf, size_t len);

#endif
