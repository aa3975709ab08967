/* agent/agent_ops.h — what an operator sees of a running agent.
 *
 * The running daemon serves its status (connection state, coordinator,
 * uptime, queries answered/refused/failed, last error, certificate expiry)
 * on STATE_DIR/agent.sock (see sdefed/ctl.h), keeps systemd informed
 * (sdefed/notify.h) and warns in the log, once a day, when its
 * certificate or CA expires within cert_expiry_warn_days.
 * `sdefed-agent --config FILE status` is the client.
 * One agent per process: the state lives in this module.
 */
#ifndef AGENT_AGENT_OPS_H
#define AGENT_AGENT_OPS_H

#include "agent.h"
#include "agent_config.h"

/* Start the status socket and the daily expiry check on a->loop. Failure to
 * create the socket is logged and returns SDF_EIO (the caller decides);
 * a->cfg must be loaded. */
int agent_ops_start(agent *a) SDF_MUSTCHECK;

/* Close the socket and timer (part of shutdown; idempotent). */
void agent_ops_stop(agent *a);

/* Check the certificates of the current config now and log warnings. */
void agent_ops_check_expiry(agent *a);

/* The link failed or was lost (why: a reason without data values), or came up. */
void agent_ops_note_error(agent *a, const char *why);
void agent_ops_note_connected(agent *a);

/* True when the certificate file of cfg differs from the one seen by the
 * previous call (the first call remembers it and returns false). */
bool agent_ops_cert_changed(const agent_config *cfg);

/* Path of the status socket for a config (STATE_DIR/agent.sock). */
void agent_ops_socket_path(const agent_config *cfg, char *out, size_t outlen);

/* `status [--json]`: print the running agent's status. 0 ok, 1 not running
 * or error, 2 usage. */
int agent_ops_status_command(const agent_config *cfg, int argc, char **argv);

#endif
