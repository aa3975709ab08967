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
 *     cohort_sketches(id, sketch)          each kept cohort's 256-byte sketch,
 *                                          apart so a check need not read
 *                                          the person lists it rules out
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
 * min_cell or more (the symmetric difference is at least that) or whose
 * 256-byte sketch (bucket counts) is min_cell or more away from the new
 * one's, so a differencing check costs O(kept) sketch comparisons plus
 * O(persons) per kept cohort that is nearly the same set, and O(persons)
 * memory (measured: tests/bench/differencing.c, deploy/disclosure.md).
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
 * and nothing is recorded. Otherwise the cohort is recorded for both (one
 * already kept for an owner, the same set, gets its time refreshed instead
 * of a second copy, so `keep` counts distinct cohorts), and each list is
 * trimmed to `keep` entries. Returns 0, SDF_EDB, SDF_ENOMEM. */
int disc_ledger_cohort(disc_ledger *l, const char *requester, const char *project,
                       const int64_t *persons, size_t n, int64_t min_cell, int64_t now_s,
                       int64_t max_age_s, int64_t keep, bool *refused) SDF_MUSTCHECK;

/* Several cohorts released together (a surveil query's exposure and
 * comparator arms): each of the n_sets sets (sets[i] holds ns[i] distinct
 * ids, ascending) is compared with the others AND with the kept cohorts;
 * if any pair has a symmetric difference of 1..min_cell-1, *refused is set
 * and nothing is recorded. Otherwise all are recorded (for requester and
 * for project) in one transaction and the lists trimmed to `keep`.
 * n_sets <= DISC_MAX_SETS. stats (may be NULL) gets how many kept cohorts
 * passed the size filter, how many of those were the same set (identical
 * encoding: difference 0, not decoded) and how many had to be decoded (the
 * rest were ruled out by their sketch). Returns 0, SDF_EINVAL, SDF_EDB or
 * SDF_ENOMEM. disc_ledger_cohort is this with one set. */
#define DISC_MAX_SETS 8

typedef struct disc_cohort_stats {
    int64_t candidates;   /* kept cohorts within min_cell persons in size */
    int64_t identical;    /* ... of which were the same set as the new one */
    int64_t decoded;      /* ... of the others, those the sketch could not rule out */
} disc_cohort_stats;

int disc_ledger_cohorts(disc_ledger *l, const char *requester, const char *project,
                        const int64_t *const *sets, const size_t *ns, size_t n_sets,
                        int64_t min_cell, int64_t now_s, int64_t max_age_s, int64_t keep,
                        disc_cohort_stats *stats, bool *refused) SDF_MUSTCHECK;

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

/* A cohort's sketch: how many of its persons fall in each of
 * DISC_SKETCH_BUCKETS buckets of a fixed hash of the id (32-bit
 * little-endian counts). Every person in the symmetric difference of two
 * sets changes one bucket's count by one, so the L1 distance of two
 * sketches (disc_sketch_lower_bound) never exceeds the symmetric
 * difference: a kept cohort whose sketch is min_cell or more away cannot
 * be 1..min_cell-1 persons away and is skipped without decoding. */
#define DISC_SKETCH_BUCKETS 64
#define DISC_SKETCH_BYTES (4 * DISC_SKETCH_BUCKETS)

void disc_personset_sketch(const int64_t *ids, size_t n, unsigned char out[DISC_SKETCH_BYTES]);
int64_t disc_sketch_lower_bound(const unsigned char a[DISC_SKETCH_BYTES],
                                const unsigned char b[DISC_SKETCH_BYTES]);

#endif
