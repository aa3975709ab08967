/* agent/query_count.c — compile and run a `count` query over an OMOP dataset.
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
#include "sdefed/log.h"
#include "sdefed/spec.h"

/* Hard cap on the text of one generated statement. */
#define COUNT_MAX_SQL ((size_t)256 << 10)
/* spec.h limits, enforced again here (the compiler must not depend on a
 * validator having run). */
#define COUNT_MAX_CRITERIA SPEC_MAX_CRITERIA
#define COUNT_MAX_CONCEPTS SPEC_MAX_CONCEPTS
#define COUNT_MAX_STRATA SPEC_MAX_STRATIFIERS
/* Events counted per criterion when choosing the driving criterion. */
#define COUNT_ESTIMATE_CAP 200000
/* A non-driving criterion is checked per person (EXISTS) when it matches
 * this many times more events than the driver. */
#define COUNT_EXISTS_RATIO 20

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

typedef omop_domain domain_map;

static const domain_map *domain_find(Sdefed__Domain d)
{
    for (size_t k = 0; k < query_n_omop_domains; k++)
        if (query_omop_domains[k].domain == d)
            return &query_omop_domains[k];
    return NULL;
}

/* ---- stratifier levels: code in SQL -> label in the result ---- */

typedef struct level {
    int code;
    const char *label;
} level;

static const level sex_levels[] = {
    { 1, "male" }, { 2, "female" }, { 0, "unknown" },
};

static const level age_levels[] = {
    { 0, "0-9" }, { 1, "10-19" }, { 2, "20-29" }, { 3, "30-39" }, { 4, "40-49" },
    { 5, "50-59" }, { 6, "60-69" }, { 7, "70-79" }, { 8, "80-89" }, { 9, "90+" },
    { -1, "unknown" },
};

typedef struct strat_def {
    const char *name;
    const level *levels;
    size_t n_levels;
} strat_def;

static const strat_def strat_sex = { "sex", sex_levels, sizeof sex_levels / sizeof sex_levels[0] };
static const strat_def strat_age = { "age_band", age_levels,
                                     sizeof age_levels / sizeof age_levels[0] };

/* ---- a capped SQL text buffer ---- */

typedef struct sqlbuf {
    char *p;
    size_t len, cap;
    int err;
} sqlbuf;

static void sb_add(sqlbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sqlbuf *b, const char *fmt, ...)
{
    if (b->err)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = b->p ? vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap) : -2;
        va_end(ap);
        if (n == -1) {
            b->err = SDF_EINVAL;
            return;
        }
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t need = b->len + (n > 0 ? (size_t)n : 0) + 1;
        size_t ncap = b->cap ? b->cap * 2 : 4096;
        while (ncap < need)
            ncap *= 2;
        if (ncap > COUNT_MAX_SQL) {
            if (need > COUNT_MAX_SQL) {
                b->err = SDF_EOVERFLOW;
                return;
            }
            ncap = COUNT_MAX_SQL;
        }
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->err = SDF_ENOMEM;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

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

/* ---- checks against the dataset ---- */

static int first_row_int(void *ctx, const db_value *cols, int ncols)
{
    int64_t *out = ctx;
    if (ncols >= 1 && !cols[0].is_null)
        *out = cols[0].i;
    return 1;   /* stop after the first row */
}

/* Run a query whose first row's first column is an int; *found says if a
 * row with a non-NULL value came back. */
static int query_first_int(db_conn *db, const char *sql, const db_param *params,
                           size_t nparams, int64_t *val, bool *found)
{
    int64_t v = INT64_MIN;
    int err = db_query(db, sql, params, nparams, first_row_int, &v);
    if (err)
        return err;
    *found = (v != INT64_MIN);
    *val = v;
    return 0;
}

static int check_tables(query_ctx *q, db_conn *db, const agent_dataset *ds,
                        const Sdefed__QuerySpec *spec, bool need_person, bool need_ancestor)
{
    bool ex;
    int err = db_table_exists(db, "concept", &ex);
    if (err)
        return err;
    if (!ex)
        return refuse(q, "dataset '%s' has no vocabulary (concept table)", ds->name);
    if (need_ancestor) {
        err = db_table_exists(db, "concept_ancestor", &ex);
        if (err)
            return err;
        if (!ex)
            return refuse(q, "dataset '%s' has no concept_ancestor table: descendants "
                             "cannot be expanded", ds->name);
    }
    if (need_person) {
        err = db_table_exists(db, "person", &ex);
        if (err)
            return err;
        if (!ex)
            return refuse(q, "dataset '%s' has no person table", ds->name);
    }
    for (size_t k = 0; k < spec->cohort->n_all; k++) {
        const domain_map *dm = domain_find(spec->cohort->all[k]->domain);
        err = db_table_exists(db, dm->table, &ex);
        if (err)
            return err;
        if (!ex)
            return refuse(q, "cohort.all[%zu]: dataset '%s' has no %s data", k, ds->name,
                          dm->name);
    }
    return 0;
}

/* Refuse concept ids that are not in the concept table (ids are vocabulary
 * codes, not patient data: naming the first unknown one is fine). */
static int check_concepts(query_ctx *q, db_conn *db, const Sdefed__QuerySpec *spec)
{
    char list[128];
    char sql[512];
    int n = db_sql_int_list(db, 1, list, sizeof list);
    if (n < 0)
        return n;
    /* One unknown id is reported (the first json_each yields). */
    n = snprintf(sql, sizeof sql,
                 "SELECT j.value FROM (%s) j WHERE NOT EXISTS "
                 "(SELECT 1 FROM concept c WHERE c.concept_id = j.value) LIMIT 1",
                 list);
    if (n < 0 || (size_t)n >= sizeof sql)
        return SDF_EOVERFLOW;
    for (size_t k = 0; k < spec->cohort->n_all; k++) {
        const Sdefed__Criterion *cr = spec->cohort->all[k];
        db_param p = { .type = DB_PARAM_INT64_LIST, .list = cr->concepts, .n = cr->n_concepts };
        int64_t id;
        bool found;
        int err = query_first_int(db, sql, &p, 1, &id, &found);
        if (err)
            return err;
        if (found)
            return refuse(q, "unknown concept id %" PRId64 " in cohort.all[%zu]", id, k);
    }
    return 0;
}

/* ---- structural checks of the spec (no database) ---- */

static int check_spec(query_ctx *q, const Sdefed__QuerySpec *spec,
                      const strat_def **strata, size_t *n_strata, bool *need_ancestor)
{
    if (!spec->cohort || spec->cohort->n_all == 0)
        return refuse(q, "cohort.all: at least one criterion is required");
    if (spec->cohort->n_all > COUNT_MAX_CRITERIA)
        return refuse(q, "cohort.all: more than %d criteria", COUNT_MAX_CRITERIA);
    *need_ancestor = false;
    for (size_t k = 0; k < spec->cohort->n_all; k++) {
        const Sdefed__Criterion *cr = spec->cohort->all[k];
        if (!cr)
            return refuse(q, "cohort.all[%zu]: missing criterion", k);
        if (!domain_find(cr->domain))
            return refuse(q, "cohort.all[%zu].domain: unknown domain", k);
        if (cr->n_concepts == 0)
            return refuse(q, "cohort.all[%zu].concepts: empty", k);
        if (cr->n_concepts > COUNT_MAX_CONCEPTS)
            return refuse(q, "cohort.all[%zu].concepts: more than %d concepts", k,
                          COUNT_MAX_CONCEPTS);
        for (size_t j = 0; j < cr->n_concepts; j++)
            if (cr->concepts[j] <= 0)
                return refuse(q, "cohort.all[%zu].concepts[%zu]: concept ids are positive",
                              k, j);
        if (cr->descendants)
            *need_ancestor = true;
    }
    if (spec->n_by > COUNT_MAX_STRATA)
        return refuse(q, "by: more than %d stratifiers", COUNT_MAX_STRATA);
    *n_strata = 0;
    for (size_t k = 0; k < spec->n_by; k++) {
        const strat_def *sd;
        if (spec->by[k] == SDEFED__STRATIFIER__STRAT_SEX)
            sd = &strat_sex;
        else if (spec->by[k] == SDEFED__STRATIFIER__STRAT_AGE_BAND)
            sd = &strat_age;
        else
            return refuse(q, "by[%zu]: unknown stratifier", k);
        for (size_t j = 0; j < *n_strata; j++)
            if (strata[j] == sd)
                return refuse(q, "by[%zu]: duplicate stratifier", k);
        strata[(*n_strata)++] = sd;
    }
    return 0;
}

/* ---- SQL generation ---- */

/* The concept set of criterion k (0-based) whose list is parameter `param`:
 * the listed ids, plus with descendants everything below them. */
static int add_concept_set(db_conn *db, const Sdefed__Criterion *cr, int param, sqlbuf *b)
{
    char ph[160];
    int n = db_sql_int_list(db, param, ph, sizeof ph);
    if (n < 0)
        return n;
    sb_add(b, "%s", ph);
    if (cr->descendants)
        sb_add(b, " UNION SELECT descendant_concept_id FROM concept_ancestor "
                  "WHERE ancestor_concept_id IN (%s)", ph);
    return b->err;
}

/* Estimate how many events criterion cr matches, capped: an index-only
 * count over its concept column (no table rows are read). Used to pick the
 * criterion that drives the cohort query. */
static int estimate_events(db_conn *db, const Sdefed__Criterion *cr, int64_t *out)
{
    const domain_map *dm = domain_find(cr->domain);
    sqlbuf b = { 0 };
    sb_add(&b, "WITH cs(concept_id) AS (");
    int err = add_concept_set(db, cr, 1, &b);
    if (err) {
        free(b.p);
        return err;
    }
    sb_add(&b, ") SELECT COUNT(*) FROM (SELECT 1 FROM %s e WHERE e.%s IN "
               "(SELECT concept_id FROM cs) LIMIT %d)",
           dm->table, dm->concept_col, COUNT_ESTIMATE_CAP);
    if (b.err) {
        free(b.p);
        return b.err;
    }
    db_param p = { .type = DB_PARAM_INT64_LIST, .list = cr->concepts, .n = cr->n_concepts };
    bool found;
    err = query_first_int(db, b.p, &p, 1, out, &found);
    free(b.p);
    if (!err && !found)
        *out = 0;
    return err;
}

/* Per-criterion event estimates (capped) and the driving criterion: the
 * one with the fewest matching events (the first wins ties). With one
 * criterion nothing is estimated. */
static int choose_driver(db_conn *db, const Sdefed__Cohort *co, int64_t *est, size_t *driver)
{
    int64_t best = INT64_MAX;
    *driver = 0;
    for (size_t k = 0; k < co->n_all; k++)
        est[k] = COUNT_ESTIMATE_CAP;
    if (co->n_all < 2)
        return 0;
    for (size_t k = 0; k < co->n_all; k++) {
        int err = estimate_events(db, co->all[k], &est[k]);
        if (err)
            return err;
        if (est[k] < best) {
            best = est[k];
            *driver = k;
        }
    }
    return 0;
}

/* One statement for the whole count. The driver criterion is the only one
 * whose index SQLite may use to find rows (the others are written with a
 * unary + so they are applied as filters); this keeps the plan on the
 * smallest set whatever the planner would guess about the lists. */
static int build_sql(db_conn *db, const Sdefed__QuerySpec *spec, const strat_def **strata,
                     size_t n_strata, const int64_t *est, size_t driver, sqlbuf *b)
{
    char ph[1024];
    const Sdefed__Cohort *co = spec->cohort;

    sb_add(b, "WITH ");
    for (size_t k = 0; k < co->n_all; k++) {
        sb_add(b, "cs%zu(concept_id) AS (", k + 1);
        int err = add_concept_set(db, co->all[k], (int)k + 1, b);
        if (err)
            return err;
        sb_add(b, "),\n");
    }

    /* idx: persons with an event of the first criterion and their earliest
     * such event (the index date). */
    const domain_map *d0 = domain_find(co->all[0]->domain);
    sb_add(b, "idx(person_id, index_date) AS (SELECT e.person_id, MIN(e.%s) FROM %s e "
              "WHERE %se.%s IN (SELECT concept_id FROM cs1)",
           d0->date_col, d0->table, driver == 0 ? "" : "+", d0->concept_col);
    if (driver != 0) {
        const domain_map *dd = domain_find(co->all[driver]->domain);
        sb_add(b, " AND e.person_id IN (SELECT d.person_id FROM %s d WHERE d.%s IN "
                  "(SELECT concept_id FROM cs%zu))",
               dd->table, dd->concept_col, driver + 1);
    }
    sb_add(b, " GROUP BY e.person_id),\n");

    /* cohort: idx restricted to persons matching every other criterion.
     * A criterion with many more events than the driver is checked per
     * cohort person through its person_id index (EXISTS); otherwise its
     * person set is built once and probed (IN). */
    sb_add(b, "cohort(person_id, index_date) AS (SELECT i.person_id, i.index_date FROM idx i");
    bool first = true;
    for (size_t k = 1; k < co->n_all; k++) {
        if (k == driver)
            continue;
        const domain_map *dm = domain_find(co->all[k]->domain);
        if (est[driver] < est[k] / COUNT_EXISTS_RATIO)
            sb_add(b, "%s EXISTS (SELECT 1 FROM %s f WHERE f.person_id = i.person_id AND "
                      "+f.%s IN (SELECT concept_id FROM cs%zu))",
                   first ? " WHERE" : "\n  AND", dm->table, dm->concept_col, k + 1);
        else
            sb_add(b, "%s +i.person_id IN (SELECT f.person_id FROM %s f WHERE f.%s IN "
                      "(SELECT concept_id FROM cs%zu))",
                   first ? " WHERE" : "\n  AND", dm->table, dm->concept_col, k + 1);
        first = false;
    }
    sb_add(b, ")\n");

    if (n_strata == 0) {
        sb_add(b, "SELECT COUNT(*) FROM cohort");
        return b->err;
    }

    /* Innermost: one row per cohort person with sex concept and age at
     * index (computed once, so the long date expression is not repeated);
     * middle: stratum codes; outer: the aggregate. */
    int n = db_sql_year(db, "c.index_date", ph, sizeof ph);
    if (n < 0)
        return n;
    sb_add(b, "SELECT ");
    for (size_t k = 0; k < n_strata; k++)
        sb_add(b, "s%zu, ", k);
    sb_add(b, "COUNT(*) FROM (SELECT ");
    for (size_t k = 0; k < n_strata; k++) {
        if (k)
            sb_add(b, ", ");
        if (strata[k] == &strat_sex)
            sb_add(b, "CASE g WHEN 8507 THEN 1 WHEN 8532 THEN 2 ELSE 0 END AS s%zu", k);
        else
            sb_add(b, "CASE WHEN age IS NULL OR age < 0 THEN -1 WHEN age >= 90 THEN 9 "
                      "ELSE age / 10 END AS s%zu", k);
    }
    sb_add(b, " FROM (SELECT p.gender_concept_id AS g, (%s - CAST(p.year_of_birth AS INTEGER)) "
              "AS age FROM cohort c LEFT JOIN person p ON p.person_id = c.person_id)) "
              "GROUP BY ", ph);
    for (size_t k = 0; k < n_strata; k++)
        sb_add(b, "%ss%zu", k ? ", " : "", k);
    return b->err;
}

/* ---- running it: rows -> grid of true counts -> disclosure -> cells ---- */

typedef struct grid {
    const strat_def *const *strata;
    size_t n_strata;
    size_t n_cells;
    int64_t *counts;
} grid;

/* Index of the level with this code; NULL (unknown) maps to the last
 * level, which is "unknown" for every stratifier. */
static int level_index(const strat_def *sd, const db_value *v)
{
    if (v->is_null)
        return (int)sd->n_levels - 1;
    for (size_t k = 0; k < sd->n_levels; k++)
        if (sd->levels[k].code == v->i)
            return (int)k;
    return -1;
}

static int grid_row(void *ctx, const db_value *cols, int ncols)
{
    grid *g = ctx;
    if ((size_t)ncols != g->n_strata + 1)
        return SDF_EDB;
    size_t idx = 0;
    for (size_t k = 0; k < g->n_strata; k++) {
        int li = level_index(g->strata[k], &cols[k]);
        if (li < 0) {
            log_warn("count query returned an unexpected stratum code");
            return SDF_EDB;
        }
        idx = idx * g->strata[k]->n_levels + (size_t)li;
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
    disc_value dv = disc_count(q->policy, g->counts[idx], &q->rules);
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

int query_count_run(query_ctx *q, const agent_dataset *ds, const Sdefed__QuerySpec *spec,
                    Sdefed__QueryResult *res)
{
    const strat_def *strata[COUNT_MAX_STRATA];
    int64_t est[COUNT_MAX_CRITERIA];
    size_t n_strata = 0;
    bool need_ancestor = false;
    db_conn *db = NULL;
    sqlbuf sql = { 0 };
    db_param *params = NULL;
    grid g = { 0 };
    Sdefed__Cell **cells = NULL;
    size_t n_made = 0;

    if (strcmp(ds->type, "omop") != 0)
        return refuse(q, "dataset '%s' is not an OMOP dataset", ds->name);
    int err = check_spec(q, spec, strata, &n_strata, &need_ancestor);
    if (err)
        return err;

    err = db_open(ds, q->deadline_unix_ms, q->cancel, &db);
    if (err)
        return err == SDF_ECONFIG ? SDF_EDB : err;
    err = check_tables(q, db, ds, spec, n_strata > 0, need_ancestor);
    if (err)
        goto out;
    err = check_concepts(q, db, spec);
    if (err)
        goto out;

    size_t driver = 0;
    err = choose_driver(db, spec->cohort, est, &driver);
    if (err)
        goto out;
    err = build_sql(db, spec, strata, n_strata, est, driver, &sql);
    if (err)
        goto out;
    size_t np = spec->cohort->n_all;
    params = calloc(np, sizeof *params);
    if (!params) {
        err = SDF_ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < np; k++) {
        params[k].type = DB_PARAM_INT64_LIST;
        params[k].list = spec->cohort->all[k]->concepts;
        params[k].n = spec->cohort->all[k]->n_concepts;
    }

    g.strata = strata;
    g.n_strata = n_strata;
    g.n_cells = 1;
    for (size_t k = 0; k < n_strata; k++)
        g.n_cells *= strata[k]->n_levels;
    g.counts = calloc(g.n_cells, sizeof *g.counts);
    if (!g.counts) {
        err = SDF_ENOMEM;
        goto out;
    }
    /* The SQL holds placeholders only, never values: safe to log. */
    log_debug("count query on dataset %s: %zu criteria, %zu stratifiers: %s", ds->name, np,
              n_strata, sql.p);
    err = db_query(db, sql.p, params, np, grid_row, &g);
    if (err)
        goto out;

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
    free(params);
    free(sql.p);
    db_close(db);
    return err;
}
