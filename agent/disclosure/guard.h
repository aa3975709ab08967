/* agent/disclosure/guard.h — the cross-query disclosure rules around one
 * query: repeat control, differential-privacy budget, differencing.
 *
 * query_run() calls disc_guard_begin() after validating the spec and before
 * touching data, disc_guard_cohort() with the cohort's person ids after a
 * count has run (before anything is released), and disc_guard_end().
 *
 *  - repeat control: the key of a query is SHA-256 over the canonical spec
 *    (json_dumps(spec_to_json(spec), JSON_COMPACT)) and the data version
 *    ([disclosure] data_version, else each dataset file's size and mtime).
 *    More than max_identical queries with the same key from one requester in
 *    identical_window_days are refused with reason "repeat_limit".
 *  - noise key: HMAC-SHA256(site secret, key) — identical queries on
 *    identical data get identical noise, so averaging gains nothing.
 *  - DP budget: with dp_epsilon > 0 the project's ledger is charged BEFORE
 *    the query runs (committed with synchronous=FULL), so a crash or kill -9
 *    can only over-count; a query that would exceed dp_budget is refused
 *    with reason "dp_budget".
 *  - differencing: see ledger.h; reason "differencing".
 *
 * Only count-like kinds (those with a cohort) are guarded; catalog is not.
 * A config without a state_dir (in-process unit tests only: the daemon's
 * config requires one) skips the cross-query rules.
 */
#ifndef AGENT_DISCLOSURE_GUARD_H
#define AGENT_DISCLOSURE_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <sys/types.h>

#include "agent_config.h"
#include "disclosure/disclosure.h"
#include "disclosure/ledger.h"
#include "sdefed.pb-c.h"

typedef struct disc_guard {
    disc_ledger *ledger;          /* NULL when the rules are skipped */
    bool active;
    unsigned char qhash[32];
    unsigned char noise_key[32];
    char data_version[64];
    double dp_spent;              /* project total after this query (DP on) */
    unsigned rules;               /* DISC_RULE_* bits of refusals */
    bool ledger_failed;           /* a ledger call failed: do not pool the handle */
    dev_t ledger_dev;             /* identity of disclosure.db when opened */
    ino_t ledger_ino;             /* (0: do not pool) */
    char state_dir[PATH_MAX];
} disc_guard;

/* Set up *g for req (spec already validated), ds = the dataset the query
 * reads (NULL for none). Returns 0 (go ahead), SDF_EREFUSED with a reason
 * ("repeat_limit: ...", "dp_budget: ..."; no data values), or SDF_EDB /
 * SDF_EIO / SDF_ENOMEM. Always call disc_guard_end afterwards. */
int disc_guard_begin(disc_guard *g, const agent_config *cfg, const Sdefed__QueryRequest *req,
                     const agent_dataset *ds, const disc_policy *pol, char *reason,
                     size_t reason_len) SDF_MUSTCHECK;

/* Differencing check and record for the cohort just computed (distinct
 * ids, ascending). A result that releases several cohorts (a surveil
 * query's exposure and comparator arms) passes them all in one array,
 * each ascending, separated by DISC_COHORT_SEPARATOR (at most
 * DISC_MAX_SETS cohorts): each is checked against the kept cohorts and
 * against the others, and all are recorded, or none. Returns 0,
 * SDF_EREFUSED ("differencing: ..."), SDF_EINVAL (too many cohorts) or an
 * error. No-op when the guard is inactive or differencing is off. */
#define DISC_COHORT_SEPARATOR INT64_C(-1)

int disc_guard_cohort(disc_guard *g, const disc_policy *pol, const Sdefed__QueryRequest *req,
                      const int64_t *persons, size_t n, char *reason,
                      size_t reason_len) SDF_MUSTCHECK;

/* Release g's ledger handle: a handle on which every call succeeded goes
 * back to a small process-wide pool and is reused by the next query on the
 * same state_dir (one query at a time), as long as disclosure.db is still
 * the same file; others are closed. */
void disc_guard_end(disc_guard *g);

/* Close every pooled ledger handle (at daemon exit; in tests before removing a state_dir).
 * Safe at any time: handles in use by a query are not in the pool. */
void disc_guard_pool_drain(void);

#endif
