/* agent/query_internal.h — shared between the agent's query compilers.
 *
 * query.c (dispatch), query_count.c and query_catalog.c use these; nothing
 * outside agent/query*.c should.
 */
#ifndef AGENT_QUERY_INTERNAL_H
#define AGENT_QUERY_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent_config.h"
#include "db.h"
#include "sdefed.pb-c.h"

/* ---- the query compilers (query_count.c, query_catalog.c) ----------------
 * Internal to the agent's query engine; query_run() in query.c calls them.
 * Each returns 0 with the result filled, SDF_EREFUSED with a reason (no data
 * values) in reason, SDF_ETIMEOUT, SDF_EDB or SDF_ENOMEM. `rules` gets the
 * DISC_RULE_* bits of every disc_count() call OR-ed in. */

typedef struct query_ctx {
    const agent_config *cfg;
    const disc_policy *policy;     /* merged policy: every count goes through it */
    uint64_t deadline_unix_ms;
    atomic_int *cancel;
    unsigned rules;                /* DISC_RULE_* bits fired so far */
    char *reason;                  /* out: refusal reason */
    size_t reason_len;
    /* issue 4 (differencing): when want_persons is set, query_count_run
     * also fills persons with the cohort's distinct person ids, ascending
     * (malloc'd, the caller frees; at most QUERY_MAX_PERSONS, else
     * SDF_EOVERFLOW). Agent-internal only: never put into a result. */
    bool want_persons;
    int64_t *persons;
    size_t n_persons;
    /* issue 4 (DP mode): 32-byte key of the deterministic noise when
     * policy->dp_epsilon > 0 (disc_count_noised), else NULL. */
    const unsigned char *noise_key;
} query_ctx;

#define QUERY_MAX_PERSONS ((size_t)20000000)

/* The fixed OMOP domain map (query_count.c): the ONLY source of table and
 * column names in generated SQL. */
typedef struct omop_domain {
    Sdefed__Domain domain;
    const char *name;          /* "drug" */
    const char *table;         /* "drug_exposure" */
    const char *concept_col;   /* "drug_concept_id" */
    const char *date_col;      /* "drug_exposure_start_date" */
} omop_domain;
extern const omop_domain query_omop_domains[];
extern const size_t query_n_omop_domains;

/* Fill res->cells for a count spec over dataset ds. */
int query_count_run(query_ctx *q, const agent_dataset *ds, const Sdefed__QuerySpec *spec,
                    Sdefed__QueryResult *res) SDF_MUSTCHECK;

/* Describe one dataset. With counts, the person count (disclosure
 * controlled), freshness and domains are filled too; without, only name,
 * type and OMOP version (for Hello). *out is freed with
 * sdefed__dataset_info__free_unpacked(*out, NULL). */
int query_catalog_dataset(query_ctx *q, const agent_dataset *ds, bool counts,
                          Sdefed__DatasetInfo **out) SDF_MUSTCHECK;

#endif
