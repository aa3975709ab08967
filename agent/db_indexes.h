/* agent/db_indexes.h — the indexes the query compilers rely on, checked and created.
 *
 * The compiled cohort SQL finds events by concept (`*_concept_id`), joins
 * and probes by `person_id`, and expands descendants through
 * concept_ancestor. On a million-person site each of those needs an index
 * whose FIRST key column is that column; without one a count becomes a
 * full scan. This module lists them (from the fixed OMOP domain map, so a
 * new domain is covered automatically), says at agent start-up which are
 * missing (warning level), and backs the operator command
 *
 *   sdefed-agent --config FILE indexes [--create]
 *
 * which prints every needed index with its state and, with --create,
 * builds the missing ones (`sdefed_TABLE_COLUMN`). Only that command ever
 * opens a dataset read-write; queries stay on read-only connections.
 */
#ifndef AGENT_DB_INDEXES_H
#define AGENT_DB_INDEXES_H

#include <stdbool.h>
#include <stddef.h>

#include "agent_config.h"
#include "sdefed/err.h"

#define DB_INDEXES_MAX 64

typedef struct db_index_need {
    const char *table;     /* fixed internal names (static storage) */
    const char *column;
} db_index_need;

typedef enum db_index_state {
    DB_INDEX_PRESENT = 0,
    DB_INDEX_MISSING,
    DB_INDEX_NO_TABLE,     /* the dataset has no such table: nothing to index */
    DB_INDEX_CREATED,
} db_index_state;

/* Fill out[0..max) with the needed indexes (no duplicates); returns how
 * many. Pure. */
size_t db_indexes_needed(db_index_need *out, size_t max);

/* Called once per needed index with its state. */
typedef void (*db_index_report_fn)(void *ctx, const db_index_need *need, db_index_state st);

/* Check the needed indexes of dataset ds (either backend) and, with
 * create, build the missing ones (opening the dataset read-write for this
 * only). fn (may be NULL) hears about each; *n_missing (may be NULL) gets
 * how many are still missing afterwards. Returns 0, SDF_ECONFIG for an
 * unknown backend, SDF_EDB (logged; the message names tables and columns
 * only) or SDF_ENOMEM. */
int db_indexes_check(const agent_dataset *ds, bool create, db_index_report_fn fn, void *ctx,
                     size_t *n_missing) SDF_MUSTCHECK;

/* Start-up check: for every dataset of cfg, one warning line naming the
 * missing indexes and the command that creates them. Never fails. */
void db_indexes_log_missing(const agent_config *cfg);

/* The `indexes [--create] [--dataset NAME]` operator command (commands.h
 * contract: 0 ok, 1 error, 2 usage). Without --create exits 1 when an
 * index is missing, so scripts can check. */
int db_indexes_command(const agent_config *cfg, int argc, char **argv);

#endif
