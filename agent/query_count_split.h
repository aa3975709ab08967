/* agent/query_count_split.h — a count from its persons' cells; a large one as several statements over disjoint row ranges, run at once.
 *
 * When differencing needs the cohort's person ids and every stratum is a
 * person attribute (no index day), the count is computed here from one
 * (person, cell) row per cohort person: cheaper than the combined
 * count-and-persons statement, which materialises the cohort and reads it
 * twice. SQLite runs a statement on one core. When a count's cohort can be split
 * (cohort_plan_split_table: no index day, every stratum a person
 * attribute, every other criterion checked per person) and its driving
 * table is large (dataset keys `parallel`, `parallel_min_rows`), the
 * driving table's row ids are cut into `parallel` ranges and the same
 * statement runs once per range, each on its own connection and thread.
 * Every part yields (person, stratum cell) rows; a person may turn up in
 * several parts (events in two ranges) and is counted once. The cells and
 * the person ids are exactly those of the single statement (tested in
 * tests/unit/agent/test_count_split.c).
 */
#ifndef AGENT_QUERY_COUNT_SPLIT_H
#define AGENT_QUERY_COUNT_SPLIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "query_cohort.h"
#include "query_internal.h"

/* *parts = 0 (and 0 returned, nothing touched) when the plan or the
 * caller's needs do not call for this path (an index day is read, or the
 * persons are not wanted and there is nothing to split); the caller then
 * runs its own statement. Else *parts is how many statements ran (1, or
 * the split) and counts[0..cp->n_cells) are
 * the true counts (added to, so pass zeros) and, when q->want_persons,
 * q->persons / q->n_persons the cohort's distinct person ids, ascending.
 * db is the caller's open connection (used for part 0 and the row-id
 * range); cp is planned (cohort_plan_init) and gets its statement rebuilt.
 * Returns 0, SDF_ETIMEOUT, SDF_EDB, SDF_EOVERFLOW (more than
 * QUERY_MAX_PERSONS rows) or SDF_ENOMEM. */
int count_split_run(query_ctx *q, const agent_dataset *ds, db_conn *db, cohort_plan *cp,
                    int64_t *counts, size_t *parts) SDF_MUSTCHECK;

#endif
