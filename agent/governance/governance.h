/* agent/governance/governance.h — safe projects, the review queue, signed
 * protocols and the audit log, as the running agent uses them (issue 7).
 *
 * Every QueryRequest passes through two hooks on the loop thread:
 *
 *   gov_admit()   before anything touches data: the project must exist,
 *                 not be revoked or expired, allow the query's kind and
 *                 dataset and list the requester. Otherwise the query is
 *                 refused with that reason. The project's stricter
 *                 disclosure settings are merged into the request, and the
 *                 release mode is decided: `auto`, `review`, or `auto`
 *                 because the spec carries a valid signature by a trusted
 *                 approver key (a signed protocol / passport).
 *   gov_finish()  after query_run: an `auto` result is sent as is; a
 *                 `review` result is stored (serialized, disclosure-
 *                 controlled, never raw data) in the review queue and the
 *                 coordinator is told SITE_HELD "held for review at site X".
 *
 * Both append to the hash-chained audit log (audit.h): "received", then the
 * decision with its reason and the SHA-256 of exactly what left.
 *
 * gov_daemon_start() opens the state database on the loop thread and polls
 * it every GOV_POLL_MS: held results the custodian approved (`sdefed-agent
 * review approve`, a separate process) are sent to the coordinator as an
 * unsolicited QueryResult for their query id, rejected ones as SITE_REFUSED
 * with the custodian's reason, and held results past their expiry are
 * expired and refused — whenever a link is up, so across reconnects and
 * restarts. The state database handle here belongs to the loop thread only.
 *
 * If no project exists at all, every query is refused ("unknown project"):
 * an agent answers nothing until its custodian approves a project.
 */
#ifndef AGENT_GOVERNANCE_H
#define AGENT_GOVERNANCE_H

#include <stddef.h>

#include "agent_config.h"
#include "sdefed/err.h"
#include "sdefed.pb-c.h"

#define GOV_POLL_MS 2000
#define GOV_DEFAULT_HELD_EXPIRY_S (7u * 24u * 3600u)

struct agent;
typedef struct gov_ticket gov_ticket;

/* [governance] keys for agent_config.c's section callback (key == NULL
 * when the section starts). Keys: held_result_expiry_hours (1..8760),
 * trusted_protocol_key (repeatable, a PEM Ed25519 public key file; checked
 * to load at config time). Returns 0 or SDF_ECONFIG with reason. */
int gov_config_section(agent_governance *g, const char *key, const char *value,
                       const char *dir, char *err, size_t errlen);

/* Held-result lifetime in seconds (the configured one, or the default). */
unsigned gov_held_expiry_s(const agent_config *cfg);

/* Start the review-queue poller and open the state database (loop thread,
 * once, after the loop exists). Failure is logged; queries are then refused
 * until the database opens. */
void gov_daemon_start(struct agent *a);

/* Admission (loop thread). Returns 0 and *ticket (pass it to gov_finish
 * exactly once), or SDF_EREFUSED with a reason safe to send (no data
 * values) — the refusal is already audited; reply with it and drop req.
 * May tighten req->spec->policy with the project's stricter settings. */
int gov_admit(struct agent *a, Sdefed__QueryRequest *req, gov_ticket **ticket, char *reason,
              size_t reasonlen);

/* Release decision (loop thread) for the result of an admitted request;
 * frees ticket. res may be NULL (cancelled / out of memory: audited as
 * failed). When the ticket says `review` and res is SITE_OK, the result is
 * stored in the review queue and res is rewritten in place into SITE_HELD
 * with no data; if it cannot be stored, into SITE_ERROR (never released).
 * Either way, res is then what may be sent. */
void gov_finish(struct agent *a, gov_ticket *ticket, const Sdefed__QueryRequest *req,
                Sdefed__QueryResult *res);

/* One poll of the review queue (exposed for tests): expire, then send what
 * the custodian decided. Returns how many results were sent. */
int gov_daemon_poll(struct agent *a);

#endif
