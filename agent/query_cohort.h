/* agent/query_cohort.h — compile a cohort (issue 3 language) into one SQL statement.
 *
 * Shared by the `count` (query_count.c) and `summary` (query_summary.c)
 * compilers. cohort_plan_init() checks a count/summary spec against a
 * dataset (tables, concept ids, stratifier levels), estimates how many
 * events each criterion matches and picks the one that drives the plan;
 * cohort_plan_sql() then writes one parameterised statement whose CTE
 * `cohort(person_id, index_day)` holds one row per cohort person, followed
 * by the SELECT the caller asked for. Table and column names come only from
 * the fixed domain map; every value from the spec (concept ids, days,
 * values, ages, band widths, years) is a bound parameter. See the header
 * comment of query_cohort.c for the SQL's shape and docs/cohort-language.md
 * for the language.
 */
#ifndef AGENT_QUERY_COHORT_H
#define AGENT_QUERY_COHORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "query_internal.h"
#include "sdefed/spec.h"

/* A capped SQL text buffer (cap COHORT_MAX_SQL); the first error sticks. */
#define COHORT_MAX_SQL ((size_t)512 << 10)
typedef struct sqlbuf {
    char *p;
    size_t len, cap;
    int err;
} sqlbuf;
void cohort_sql_add(sqlbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Most cells (product of stratifier levels) one result may have. */
#define COHORT_MAX_CELLS 20000
/* Most levels of one dynamic stratifier (years x 4, care sites). */
#define COHORT_MAX_LEVELS 1000

/* One level of a stratifier: the code the SQL yields -> the label released.
 * The last level of every stratifier is "unknown" (NULL or unmapped). */
typedef struct cohort_level {
    int64_t code;
    char label[40];
} cohort_level;

typedef struct cohort_strat {
    const char *name;            /* "sex", "age_band", ... (static) */
    Sdefed__Stratifier kind;
    cohort_level *levels;        /* owned */
    size_t n_levels;
} cohort_strat;

typedef struct cohort_crit cohort_crit;   /* internal: one criterion and its plan */

typedef struct cohort_plan {
    const Sdefed__QuerySpec *spec;
    cohort_strat strata[SPEC_MAX_STRATIFIERS];
    size_t n_strata;
    size_t n_cells;              /* product of n_levels (1 without strata) */
    int64_t year_lo, year_hi;    /* year/quarter range (dataset observation periods) */
    int64_t sex_codes[3];        /* cohort.sex as 1 male, 2 female, 3 unknown */
    /* internal */
    cohort_crit *crit;           /* index (if any) first, then the expression's */
    size_t n_crit;
    bool has_index;              /* explicit or implicit index */
    size_t index_crit;           /* into crit when has_index */
    size_t driver;               /* into crit, or (size_t)-1: scan person */
    /* Row-range split (query_count_split.c): with `split` set before
     * cohort_plan_sql, the driving scan also gets "AND <row id> BETWEEN
     * ?lo AND ?hi", lo being parameter number split_param (hi the next). */
    bool split;
    int split_param;
    /* the statement built by cohort_plan_sql */
    sqlbuf sql;
    db_param *params;
    size_t n_params, cap_params;
} cohort_plan;

/* What the statement selects after the cohort CTE. */
typedef enum {
    COHORT_SELECT_COUNT = 1,     /* s0.., COUNT(*) grouped by strata (or COUNT(*) alone) */
    COHORT_SELECT_PERSONS = 2,   /* DISTINCT person_id ORDER BY person_id */
    COHORT_SELECT_VALUES = 3,    /* s0.., v for every cohort person with a non-NULL value
                                  * of spec->summary (summary kind) */
    COHORT_SELECT_COUNT_AND_PERSONS = 4,
    /* both, over one materialised cohort (differencing needs the persons;
     * computing the cohort twice doubled a count's cost): rows
     *   0, s0.., COUNT(*)   as COHORT_SELECT_COUNT, then
     *   1, NULL.., person_id   one per cohort person, in no particular order */
    COHORT_SELECT_PERSON_CELLS = 5,
    /* s0.., person_id for every cohort person (no grouping): the rows of one
     * row-range part of a split count (cohort_plan_split_table) */
} cohort_select;

/* Check spec (count or summary) against dataset ds open as db and plan it.
 * Returns 0, SDF_EREFUSED with a reason in q->reason (no data values),
 * SDF_ETIMEOUT, SDF_EDB or SDF_ENOMEM. Always call cohort_plan_free(). */
int cohort_plan_init(query_ctx *q, db_conn *db, const agent_dataset *ds,
                     const Sdefed__QuerySpec *spec, cohort_plan *cp) SDF_MUSTCHECK;

/* Build the statement into cp->sql / cp->params (replacing any earlier
 * one). Returns 0, SDF_EOVERFLOW (statement too long) or SDF_ENOMEM. */
int cohort_plan_sql(db_conn *db, cohort_plan *cp, cohort_select what) SDF_MUSTCHECK;

void cohort_plan_free(cohort_plan *cp);

/* Append a text parameter for SQL a caller adds after cohort_plan_sql (e.g.
 * a date); returns its number (1-based), or 0 with cp->sql.err set. The
 * text is borrowed until the statement has run. */
int cohort_plan_param_text(cohort_plan *cp, const char *s);

/* The table whose rows drive the count's statement when the count can be
 * split into statements over disjoint row ranges of that table whose
 * person sets, united, are the cohort: nothing reads an index day (so
 * every stratum is a person attribute) and every other criterion is
 * checked per person, not as a set built over its whole table. NULL when
 * it cannot be split. A fixed name from the domain map (or "person"). */
const char *cohort_plan_split_table(const cohort_plan *cp);

/* Whether COHORT_SELECT_PERSON_CELLS yields a count's cells: nothing reads
 * an index day, so every stratum is a person attribute. */
bool cohort_plan_person_cells(const cohort_plan *cp);

/* Refuse (SDF_EREFUSED, reason naming the first unknown id and `where`)
 * when any of ids[0..n) is not in the dataset's concept table: vocabulary
 * codes, not patient data, so naming one is fine. 0 when all exist. */
int cohort_check_concepts(query_ctx *q, db_conn *db, const int64_t *ids, size_t n,
                          const char *where) SDF_MUSTCHECK;

/* The level index of a stratum code in s; NULL and unmapped codes map to
 * the last level ("unknown"). */
size_t cohort_level_index(const cohort_strat *s, const db_value *v);

#endif
