/* agent/governance/review.h — the custodian's review queue.
 *
 * In a `review` project the agent computes the disclosure-controlled
 * result and holds it here (table `held`: the packed QueryResult exactly
 * as it would be sent — controlled aggregates only, never rows) until the
 * custodian approves or rejects it with `sdefed-agent review ...`, or it
 * expires. States: held -> approved | rejected | expired. `notified` says
 * whether the running agent has told the coordinator the outcome (the
 * result itself, or a refusal); the agent does that whenever a link is up.
 * Every transition is audited in the same transaction as the change.
 */
#ifndef AGENT_GOV_REVIEW_H
#define AGENT_GOV_REVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "governance/audit.h"
#include "state.h"

typedef struct held_item {
    int64_t id;
    char query_id[64];
    char project[64];
    char requester[64];
    char kind[32];
    char *spec_json;            /* canonical spec (malloc'd) */
    int64_t created_ms, expires_ms, decided_ms;
    char state[16];             /* held|approved|rejected|expired */
    char decided_by[64];
    char reason[256];           /* rejection reason */
    uint8_t *result;            /* packed QueryResult (malloc'd) */
    size_t result_len;
    char result_sha256[AUDIT_HASH_HEX + 1];
    bool notified;
} held_item;

/* Free the buffers of an item (not the struct). */
void held_item_clear(held_item *h);

/* Store a new held result (it->state/decided/notified ignored) and append
 * the audit entry `held` (given, with release_sha256 = it->result_sha256)
 * in one transaction. Returns 0 and *id_out, or SDF_EDB. */
int review_hold(state *s, const held_item *it, const audit_entry *held_audit,
                int64_t *id_out) SDF_MUSTCHECK;

/* Load by numeric id ("12") or by query id. 0, SDF_ENOTFOUND, SDF_EDB,
 * SDF_ENOMEM. Clear with held_item_clear. */
int review_get(state *s, const char *id_or_query, held_item *out) SDF_MUSTCHECK;

/* Call fn for each item (only state 'held' unless all), oldest first;
 * the item is valid during the call only. fn returns non-zero to stop. */
int review_each(state *s, bool all, int (*fn)(const held_item *h, void *arg),
                void *arg) SDF_MUSTCHECK;

/* Approve or reject held item id as actor (reason required to reject,
 * printable, <= 200 bytes). Audits approved/rejected. A held item past its
 * expiry is expired (and audited) instead, returning SDF_ETIMEOUT.
 * SDF_EREFUSED when not in state held (reason in err), SDF_ENOTFOUND. */
int review_decide(state *s, int64_t id, bool approve, const char *actor, const char *reason,
                  int64_t now_ms, char *err, size_t errlen) SDF_MUSTCHECK;

/* Expire every held item whose expiry is <= now (audited). Returns how
 * many, or SDF_EDB. */
int review_expire_due(state *s, int64_t now_ms);

/* The oldest decided item not yet notified (approved, rejected, expired).
 * 0 and *out, SDF_ENOTFOUND when none, SDF_EDB, SDF_ENOMEM. */
int review_next_outgoing(state *s, held_item *out) SDF_MUSTCHECK;

/* Mark id notified and append audit entry e (may be NULL) in one
 * transaction. 0 or SDF_EDB. */
int review_mark_notified(state *s, int64_t id, const audit_entry *e) SDF_MUSTCHECK;

/* The audit entry describing item h for event (actor, reason optional). */
audit_entry review_audit_entry(const held_item *h, const char *event, const char *actor,
                               const char *reason, char spec_sha[AUDIT_HASH_HEX + 1]);

#endif
