/* agent/disclosure/ledger.h — the disclosure engine's durable memory.
 *
 * The only part of agent/disclosure/ that does I/O. Everything the rules
 * across queries need is kept in state_dir, never sent anywhere:
 *
 *   disclosure.secret  32 random bytes, created once (mode 0600, O_EXCL);
 *                      keys the deterministic noise (disc_geometric_noise)
 *   disclosure.db      SQLite (WAL, synchronous=FULL, mode 0600):
 *     repeats(requester, qhash, at)        identical-query log (repeat_limit)
 *     cohorts(id, requester, project, at, n, persons)
 *                                          recent answered cohorts, person ids
 *                                          delta+varint compressed (differencing)
 *     dp_ledger(project, spent)            epsilon spent per project
 *
 * Separate from the governance state.db on purpose: it can be wiped by an
 * operator (losing only cross-query memory) without touching the audit
 * chain, and its writes are independent of the governance schema.
 *
 * Bounds: a requester's and a project's kept cohorts are capped at `keep`
 * each (oldest dropped first) and expire after max_age seconds; repeats older
 * than the window are deleted when a requester's queries are counted. A
 * person set costs about 1-3 bytes per person (sorted ids, delta varints),
 * at most QUERY_MAX_PERSONS persons. A check decodes each kept cohort once
 * in a linear merge and skips any whose size differs from the new one's by
 * min_cell or more (the symmetric difference is at least that), so a
 * differencing check costs O(kept x persons) time and O(persons) memory.
 *
 * Threads: a handle is for one thread at a time; each query takes its own
 * (guard.c keeps idle handles in a small pool rather than reopening per
 * query; SQLite serialises writers with busy_timeout). Every check-and-record is
 * one BEGIN IMMEDIATE transaction, so two concurrent queries cannot both
 * pass a limit that only one of them should.
 */
#ifndef AGENT_DISCLOSURE_LEDGER_H
#define AGENT_DISCLOSURE_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sdefed/err.h"

typedef struct disc_ledger disc_ledger;

#define DISC_SECRET_FILE "disclosure.secret"
#define DISC_LEDGER_FILE "disclosure.db"

/* Read state_dir/disclosure.secret, creating it (0600, 32 bytes from
 * RAND_bytes, fsync'd) if it does not exist. Returns 0, SDF_EIO (cannot
 * create/read, or the file is not exactly 32 bytes) or SDF_EINVAL. */
int disc_secret_load(const char *state_dir, unsigned char out[32]) SDF_MUSTCHECK;

/* Open (create) state_dir/disclosure.db. Returns 0 and *out, or SDF_EDB /
 * SDF_EIO / SDF_ENOMEM (*out NULL). Close with disc_ledger_close. */
int disc_ledger_open(const char *state_dir, disc_ledger **out) SDF_MUSTCHECK;
void disc_ledger_close(disc_ledger *l);

/* Switch l's commits between synchronous=FULL (the default: each commit is
 * fsync'd before it returns) and NORMAL (committed and atomic, survives a
 * process crash, but reaches the disk only with the next FULL commit or
 * checkpoint on this file: WAL frames are made durable in order). Use
 * NORMAL only when a FULL commit on this ledger is certain to follow
 * before anything the record protects is released. 0 or SDF_EDB. */
int disc_ledger_set_full_sync(disc_ledger *l, bool full) SDF_MUSTCHECK;

/* Repeat control: count requester's queries with this hash in the last
 * window_s seconds (before now_s). If that count is >= max, *refused is set
 * and nothing is recorded; else this query is recorded (committed before
 * return) and *refused is false. Returns 0 or SDF_EDB. */
int disc_ledger_repeat(disc_ledger *l, const char *requester, const unsigned char qhash[32],
                       int64_t now_s, int64_t window_s, int64_t max, bool *refused) SDF_MUSTCHECK;

/* Differencing: compare a cohort (distinct person ids, ascending) with the
 * cohorts kept for requester or for project (younger than max_age_s). If
 * any has a symmetric difference of 1..min_cell-1 persons, *refused is set
 * and nothing is recorded. Otherwise the cohort is recorded for both, and
 * each list is trimmed to `keep` entries. Returns 0, SDF_EDB, SDF_ENOMEM. */
int disc_ledger_cohort(disc_ledger *l, const char *requester, const char *project,
                       const int64_t *persons, size_t n, int64_t min_cell, int64_t now_s,
                       int64_t max_age_s, int64_t keep, bool *refused) SDF_MUSTCHECK;

/* Differential privacy: atomically, if spent(project) + epsilon > budget,
 * set *refused; else write spent + epsilon and commit (synchronous=FULL:
 * durable before return). Call BEFORE computing or releasing anything, so
 * a crash can only over-count. *spent_after gets the total after this
 * query (or the unchanged total when refused). Returns 0 or SDF_EDB. */
int disc_ledger_dp_spend(disc_ledger *l, const char *project, double epsilon, double budget,
                         double *spent_after, bool *refused) SDF_MUSTCHECK;

/* Epsilon spent so far by project (0 if none). Returns 0 or SDF_EDB. */
int disc_ledger_dp_spent(disc_ledger *l, const char *project, double *spent) SDF_MUSTCHECK;

/* ---- person sets (pure) ---------------------------------------------------- */

/* Encode ascending distinct ids as delta varints. *out is malloc'd (caller
 * frees). Returns 0, SDF_EINVAL (not ascending/distinct, or negative) or
 * SDF_ENOMEM. */
int disc_personset_encode(const int64_t *ids, size_t n, unsigned char **out,
                          size_t *outlen) SDF_MUSTCHECK;

/* Size of the symmetric difference between ids (ascending) and an encoded
 * set, counting no further than cap (returns min(true size, cap)), or
 * SDF_EINVAL if the encoding is corrupt. */
int64_t disc_personset_symdiff(const int64_t *ids, size_t n, const unsigned char *enc,
                               size_t enclen, int64_t cap);

#endif
