/* agent/query_count.c — compile and run a `count` query over an OMOP dataset.
 *
 * Since issue 3 the cohort itself (index event, windows, all/any/not,
 * exclusions, value/unit filters, age/sex/observation, the planning) is
 * compiled by query_cohort.c, and summary specs are handed to
 * query_summary.c; what follows describes the issue-2 shape, which a plain
 * `all` list of criteria still compiles to (with the concept sets as CTEs
 * and the driving criterion joined from its concept set). This file keeps
 * the domain map, the grid of counts and the cells (and issue 4's margins).
 *
 * A count spec becomes ONE parameterised SQL statement. Table and column
 * names come only from the fixed domain map below; every concept id from
 * the spec is bound as a parameter (each criterion's list as one INT64_LIST
 * parameter, expanded by the backend: json_each() in SQLite). The cohort is
 * the persons with at least one event for EVERY criterion; the index date
 * is a person's earliest event matching the FIRST criterion. Aggregation
 * happens in the database (GROUP BY over stratum codes); every count then
 * goes through disc_count() before it becomes a Cell. Results always carry
 * the full grid of strata (every sex x every age band), so a missing cell
 * never reveals a zero that zero_is_disclosive would have hidden.
 *
 * Before the statement, small index-only queries check that every concept
 * id exists and estimate (capped) how many events each criterion matches;
 * the criterion with the fewest events "drives" the plan: it is the only one
 * whose concept index SQLite may use to find rows, the others are written
 * with a unary + (no index) and applied as filters, per person through the
 * person_id index (EXISTS) when they are much larger, else as a person set
 * built once (IN). Assumes the OHDSI indexes on *_concept_id and person_id.
 *
 * Shape of the generated SQL (SQLite spelling; drug+descendants AND a
 * condition, the condition driving; by sex and age band):
 *
 *   WITH cs1(concept_id) AS (SELECT value FROM json_each(?1)
 *          UNION SELECT descendant_concept_id FROM concept_ancestor
 *          WHERE ancestor_concept_id IN (SELECT value FROM json_each(?1))),
 *        cs2(concept_id) AS (SELECT value FROM json_each(?2)),
 *        idx(person_id, index_date) AS (
 *          SELECT e.person_id, MIN(e.drug_exposure_start_date) FROM drug_exposure e
 *          WHERE +e.drug_concept_id IN (SELECT concept_id FROM cs1)
 *            AND e.person_id IN (SELECT d.person_id FROM condition_occurrence d
 *                                WHERE d.condition_concept_id IN (SELECT concept_id FROM cs2))
 *          GROUP BY e.person_id),
 *        cohort(person_id, index_date) AS (SELECT i.person_id, i.index_date FROM idx i
 *          [WHERE EXISTS (SELECT 1 FROM T f WHERE f.person_id = i.person_id
 *                         AND +f.C IN (SELECT concept_id FROM csK))   -- much larger K
 *             AND +i.person_id IN (SELECT f.person_id FROM T f
 *                                  WHERE f.C IN (SELECT concept_id FROM csK))]) -- others
 *   SELECT s0, s1, COUNT(*) FROM (
 *     SELECT CASE g WHEN 8507 THEN 1 WHEN 8532 THEN 2 ELSE 0 END AS s0,
 *            CASE WHEN age IS NULL OR age < 0 THEN -1 WHEN age >= 90 THEN 9
 *                 ELSE age / 10 END AS s1
 *     FROM (SELECT p.gender_concept_id AS g,
 *                  (<year of c.index_date> - CAST(p.year_of_birth AS INTEGER)) AS age
 *           FROM cohort c LEFT JOIN person p ON p.person_id = c.person_id))
 *   GROUP BY s0, s1
 *
 * Without `by`: ... SELECT COUNT(*) FROM cohort.
 */
#include "query_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disclosure/disclosure.h"
#include "disclosure/secondary.h"
#include "query_cohort.h"
#include "query_count_split.h"
#include "query_summary.h"
#include "sdefed/log.h"
#include "sdefed/spec.h"

/* ---- the fixed domain map: the only source of table/column names ---- */

const omop_domain query_omop_domains[] = {
    { SDEFED__DOMAIN__DOMAIN_CONDITION, "condition", "condition_occurrence",
      "condition_concept_id", "condition_start_date" },
    { SDEFED__DOMAIN__DOMAIN_DRUG, "drug", "drug_exposure",
      "drug_concept_id", "drug_exposure_start_date" },
    { SDEFED__DOMAIN__DOMAIN_DEVICE, "device", "device_exposure",
      "device_concept_id", "device_exposure_start_date" },
    { SDEFED__DOMAIN__DOMAIN_PROCEDURE, "procedure", "procedure_occurrence",
      "procedure_concept_id", "procedure_date" },
    { SDEFED__DOMAIN__DOMAIN_MEASUREMENT, "measurement", "measurement",
      "measurement_concept_id", "measurement_date" },
    { SDEFED__DOMAIN__DOMAIN_OBSERVATION, "observation", "observation",
      "observation_concept_id", "observation_date" },
    { SDEFED__DOMAIN__DOMAIN_VISIT, "visit", "visit_occurrence",
      "visit_concept_id", "visit_start_date" },
};
const size_t query_n_omop_domains = sizeof query_omop_domains / sizeof query_omop_domains[0];

/* Stratifier levels come from the cohort compiler (query_cohort.c). */
typedef cohort_strat strat_def;

/* ---- refusal helper ---- */

static int refuse(query_ctx *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(query_ctx *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (q->reason && q->reason_len)
        vsnprintf(q->reason, q->reason_len, fmt, ap);
    va_end(ap);
    return SDF_EREFUSED;
}

/* ---- running it: rows -> grid of true counts -> disclosure -> cells ---- */

typedef struct grid {
    const strat_def *const *strata;
    size_t n_strata;
    size_t n_cells;
    int64_t *counts;
} grid;


static int grid_row(void *ctx, const db_value *cols, int ncols)
{
    grid *g = ctx;
    if ((size_t)ncols != g->n_strata + 1)
        return SDF_EDB;
    size_t idx = 0;
    for (size_t k = 0; k < g->n_strata; k++) {
        /* NULL and unmapped codes count as "unknown" (the last level) */
        size_t li = cohort_level_index(g->strata[k], &cols[k]);
        idx = idx * g->strata[k]->n_levels + li;
    }
    int64_t c = cols[g->n_strata].is_null ? 0 : cols[g->n_strata].i;
    if (c < 0 || idx >= g->n_cells || g->counts[idx] > INT64_MAX - c)
        return SDF_EDB;
    g->counts[idx] += c;
    return 0;
}

static void cells_free(Sdefed__Cell **cells, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (cells[k])
            sdefed__cell__free_unpacked(cells[k], NULL);
    free(cells);
}

static Sdefed__CellStatus cell_status(disc_status s)
{
    switch (s) {
    case DISC_EXACT: return SDEFED__CELL_STATUS__CELL_EXACT;
    case DISC_ROUNDED: return SDEFED__CELL_STATUS__CELL_ROUNDED;
    case DISC_NOISED: return SDEFED__CELL_STATUS__CELL_NOISED;
    default: return SDEFED__CELL_STATUS__CELL_SUPPRESSED;
    }
}

/* One cell for grid index idx, its count controlled by policy. */
static Sdefed__Cell *cell_make(query_ctx *q, const grid *g, size_t idx)
{
    Sdefed__Cell *cell = malloc(sizeof *cell);
    if (!cell)
        return NULL;
    sdefed__cell__init(cell);
    if (g->n_strata) {
        cell->strata = calloc(g->n_strata, sizeof *cell->strata);
        if (!cell->strata) {
            free(cell);
            return NULL;
        }
    }
    /* Decode idx (first stratifier outermost). */
    size_t rest = idx;
    for (size_t k = g->n_strata; k-- > 0;) {
        const strat_def *sd = g->strata[k];
        size_t li = rest % sd->n_levels;
        rest /= sd->n_levels;
        Sdefed__Stratum *st = malloc(sizeof *st);
        if (!st)
            goto fail;
        sdefed__stratum__init(st);
        cell->strata[k] = st;
        st->name = strdup(sd->name);
        st->value = strdup(sd->levels[li].label);
        if (!st->name || !st->value)
            goto fail;   /* free_unpacked skips NULL strings */
    }
    cell->n_strata = g->n_strata;
    disc_value dv = q->noise_key && q->policy->dp_epsilon > 0.0
                        ? disc_count_noised(q->policy, g->counts[idx], q->noise_key, idx,
                                            &q->rules)
                        : disc_count(q->policy, g->counts[idx], &q->rules);
    cell->value = dv.status == DISC_SUPPRESSED ? 0 : dv.value;
    cell->status = cell_status(dv.status);
    return cell;
fail:
    for (size_t k = 0; k < g->n_strata; k++)
        if (cell->strata[k])
            sdefed__stratum__free_unpacked(cell->strata[k], NULL);
    free(cell->strata);
    free(cell);
    return NULL;
}

/* ---- issue 4: margins and the cohort's person ids ---- */

/* Cells for the extended grid (cells + margins) of g, controlled by
 * disc_table_control (primary + complementary suppression). A margin cell
 * lists only the strata it is not a total over; the grand total has none. */
static int cells_with_margins(query_ctx *q, const grid *g, Sdefed__Cell ***out, size_t *n_out)
{
    size_t levels[DISC_TABLE_MAX_DIMS];
    if (g->n_strata == 0 || g->n_strata > DISC_TABLE_MAX_DIMS)
        return refuse(q, "margins: needs 1..%d stratifiers", DISC_TABLE_MAX_DIMS);
    for (size_t k = 0; k < g->n_strata; k++)
        levels[k] = g->strata[k]->n_levels;
    size_t n = disc_table_size(g->n_strata, levels);
    if (n == 0)
        return refuse(q, "margins: table too large (more than %d cells with totals)",
                      DISC_TABLE_MAX_CELLS);
    disc_value *dv = calloc(n, sizeof *dv);
    Sdefed__Cell **cells = calloc(n, sizeof *cells);
    int err = SDF_ENOMEM;
    size_t made = 0;
    if (!dv || !cells)
        goto out;
    err = disc_table_control(q->policy, g->n_strata, levels, g->counts, dv, NULL, &q->rules);
    if (err)
        goto out;
    err = SDF_ENOMEM;
    for (made = 0; made < n; made++) {
        Sdefed__Cell *cell = malloc(sizeof *cell);
        if (!cell)
            goto out;
        sdefed__cell__init(cell);
        cells[made] = cell;
        cell->strata = calloc(g->n_strata, sizeof *cell->strata);
        if (!cell->strata)
            goto out;
        size_t rest = made, coords[DISC_TABLE_MAX_DIMS];
        for (size_t k = g->n_strata; k-- > 0;) {
            coords[k] = rest % (levels[k] + 1);
            rest /= levels[k] + 1;
        }
        for (size_t k = 0; k < g->n_strata; k++) {
            if (coords[k] == levels[k])
                continue;   /* total over this stratifier */
            Sdefed__Stratum *st = malloc(sizeof *st);
            if (!st)
                goto out;
            sdefed__stratum__init(st);
            cell->strata[cell->n_strata++] = st;
            st->name = strdup(g->strata[k]->name);
            st->value = strdup(g->strata[k]->levels[coords[k]].label);
            if (!st->name || !st->value)
                goto out;
        }
        cell->value = dv[made].status == DISC_SUPPRESSED ? 0 : dv[made].value;
        cell->status = cell_status(dv[made].status);
    }
    *out = cells;
    *n_out = n;
    cells = NULL;
    err = 0;
out:
    if (cells)
        cells_free(cells, n);   /* calloc'd: unmade entries are NULL */
    free(dv);
    return err;
}

static int person_row(void *ctx, const db_value *cols, int ncols)
{
    query_ctx *q = ctx;
    if (ncols != 1 || cols[0].is_null)
        return SDF_EDB;
    if (q->n_persons >= QUERY_MAX_PERSONS)
        return SDF_EOVERFLOW;
    /* grow by doubling; the cap above bounds it */
    size_t n = q->n_persons;
    if ((n & (n - 1)) == 0 && n >= 1024) {
        int64_t *np = realloc(q->persons, 2 * n * sizeof *np);
        if (!np)
            return SDF_ENOMEM;
        q->persons = np;
    } else if (n == 0) {
        q->persons = malloc(1024 * sizeof *q->persons);
        if (!q->persons)
            return SDF_ENOMEM;
    }
    q->persons[q->n_persons++] = cols[0].i;
    return 0;
}

/* ---- the counts and the person ids in one statement (issue 3 speed) ----
 * Differencing needs the cohort's person ids as well as its counts; the
 * cohort compiler's COHORT_SELECT_COUNT_AND_PERSONS computes the cohort
 * once and returns both, tagged: 0 = a grid row, 1 = a person id. */

typedef struct both_ctx {
    query_ctx *q;
    grid *g;
} both_ctx;

static int both_row(void *ctx, const db_value *cols, int ncols)
{
    both_ctx *b = ctx;
    int n_strata = (int)b->g->n_strata;
    if (ncols != n_strata + 2 || cols[0].is_null)
        return SDF_EDB;
    if (cols[0].i == 0)
        return grid_row(b->g, cols + 1, ncols - 1);
    if (cols[0].i == 1)
        return person_row(b->q, cols + 1 + n_strata, 1);
    return SDF_EDB;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Counts into g and the person ids into q->persons (ascending, distinct). */
static int count_with_persons(query_ctx *q, db_conn *db, cohort_plan *cp, grid *g)
{
    int err = cohort_plan_sql(db, cp, COHORT_SELECT_COUNT_AND_PERSONS);
    if (err)
        return err;
    free(q->persons);
    q->persons = NULL;
    q->n_persons = 0;
    both_ctx b = { .q = q, .g = g };
    err = db_query(db, cp->sql.p, cp->params, cp->n_params, both_row, &b);
    if (err) {
        free(q->persons);
        q->persons = NULL;
        q->n_persons = 0;
        return err;
    }
    if (q->n_persons > 1) {
        qsort(q->persons, q->n_persons, sizeof *q->persons, cmp_i64);
        size_t w = 1;
        for (size_t k = 1; k < q->n_persons; k++)
            if (q->persons[k] != q->persons[w - 1])
                q->persons[w++] = q->persons[k];
        q->n_persons = w;
    }
    return 0;
}

int query_count_run(query_ctx *q, const agent_dataset *ds, const Sdefed__QuerySpec *spec,
                    Sdefed__QueryResult *res)
{
    const strat_def *strata[SPEC_MAX_STRATIFIERS];
    db_conn *db = NULL;
    cohort_plan cp;
    grid g = { 0 };
    Sdefed__Cell **cells = NULL;
    size_t n_made = 0;

    if (spec->kind == SDEFED__QUERY_KIND__KIND_SUMMARY)   /* issue 3: same cohort, statistics */
        return query_summary_run(q, ds, spec, res);
    memset(&cp, 0, sizeof cp);
    if (strcmp(ds->type, "omop") != 0)
        return refuse(q, "dataset '%s' is not an OMOP dataset", ds->name);
    int err = db_open(ds, q->deadline_unix_ms, q->cancel, &db);
    if (err)
        return err == SDF_ECONFIG ? SDF_EDB : err;
    err = cohort_plan_init(q, db, ds, spec, &cp);
    if (err)
        goto out;
    err = cohort_plan_sql(db, &cp, COHORT_SELECT_COUNT);
    if (err)
        goto out;

    for (size_t k = 0; k < cp.n_strata; k++)
        strata[k] = &cp.strata[k];
    g.strata = strata;
    g.n_strata = cp.n_strata;
    g.n_cells = cp.n_cells;
    g.counts = calloc(g.n_cells, sizeof *g.counts);
    if (!g.counts) {
        err = SDF_ENOMEM;
        goto out;
    }
    /* The SQL holds placeholders only, never values: safe to log. */
    log_debug("count query on dataset %s: %zu parameters, %zu stratifiers: %s", ds->name,
              cp.n_params, cp.n_strata, cp.sql.p);
    /* from the persons' cells (a large count as several statements at once) */
    size_t parts = 0;
    err = count_split_run(q, ds, db, &cp, g.counts, &parts);
    if (!err && !parts) {
        if (q->want_persons)
            err = count_with_persons(q, db, &cp, &g);
        else
            err = db_query(db, cp.sql.p, cp.params, cp.n_params, grid_row, &g);
    }
    if (err)
        goto out;
    if (spec->margins) {
        size_t n_cells = 0;
        err = cells_with_margins(q, &g, &res->cells, &n_cells);
        if (err)
            goto out;
        res->n_cells = n_cells;
        goto out;
    }

    cells = calloc(g.n_cells, sizeof *cells);
    if (!cells) {
        err = SDF_ENOMEM;
        goto out;
    }
    for (n_made = 0; n_made < g.n_cells; n_made++) {
        cells[n_made] = cell_make(q, &g, n_made);
        if (!cells[n_made]) {
            err = SDF_ENOMEM;
            goto out;
        }
    }
    res->cells = cells;
    res->n_cells = g.n_cells;
    cells = NULL;
    err = 0;
out:
    if (cells)
        cells_free(cells, n_made);
    free(g.counts);
    cohort_plan_free(&cp);
    db_close(db);
    return err;
}
