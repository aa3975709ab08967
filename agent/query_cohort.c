/* agent/query_cohort.c — compile a cohort (issue 3 language) into one SQL statement.
 *
 * See query_cohort.h for the interface and docs/cohort-language.md for the
 * language. Everything here writes SQL text from fixed names (the domain
 * map, fixed aliases) and placeholders; every value of the spec is bound.
 *
 * Shape (SQLite spelling, DAY(x) is db_sql_day, LIST(?n) db_sql_int_list):
 *
 *   WITH c1_in(concept_id) AS (LIST(?1) UNION SELECT descendant_concept_id
 *          FROM concept_ancestor WHERE ancestor_concept_id IN (LIST(?1))),
 *        c1_ex(concept_id) AS (LIST(?2)),                      -- "exclude"
 *        cs1(concept_id) AS (SELECT concept_id FROM c1_in
 *                            WHERE concept_id NOT IN (SELECT concept_id FROM c1_ex)),
 *        ...
 *        f3(person_id, d) AS MATERIALIZED (SELECT person_id, MIN(DAY(date))
 *          FROM T WHERE C IN (SELECT concept_id FROM cs3) GROUP BY person_id),  -- first_only
 *        ev(person_id, index_day) AS (        -- index events (first: one per person)
 *          SELECT e.person_id, MIN(DAY(e.date)) FROM T e WHERE e.C IN (SELECT ... cs1)
 *          [AND e.person_id IN (<the driving criterion's persons>)] GROUP BY e.person_id),
 *        cohort(person_id, index_day) AS (
 *          SELECT i.person_id, MIN(i.index_day) FROM ev i LEFT JOIN person p ON ...
 *          WHERE <sex> AND <age at index> AND <observation period> AND <expression>
 *          GROUP BY i.person_id)
 *   SELECT ...                                 -- count / persons / values
 *
 * When nothing reads index_day (needs_index_day), ev is `SELECT DISTINCT
 * e.person_id, NULL ...` and cohort has no GROUP BY: no event's date is
 * converted.
 *
 * The expression is AND/OR/NOT over criterion predicates. A criterion with a
 * window is `EXISTS (SELECT 1 FROM T f WHERE f.person_id = i.person_id AND
 * +f.C IN (...) AND DAY(f.date) BETWEEN i.index_day + ?a AND i.index_day +
 * ?b ...)`; one without is either that EXISTS (per person, through the
 * person_id index) or `+i.person_id IN (SELECT person_id FROM T WHERE C IN
 * (...))` (a person set built once through the concept index).
 *
 * Planning ("the cheapest criterion drives"): index-only, capped counts of
 * each criterion's events. Among the REQUIRED criteria (the index and the
 * positive criteria directly under the top-level `all`) the one with the
 * fewest events drives: the index events are restricted to its persons and
 * only its concept index is used to find rows (others are written with a
 * unary + so SQLite applies them as filters). A non-windowed criterion with
 * more than COHORT_EXISTS_RATIO times the driver's events is checked per
 * person (EXISTS), a smaller one as a person set (IN).
 *
 * Without an index (a cohort written only with any/not groups), rows are
 * the driving criterion's persons or, when nothing is required, every
 * person; index_day is then NULL and index-relative features are refused
 * by spec_validate.
 */
#include "query_cohort.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdefed/log.h"

#define COHORT_ESTIMATE_CAP 200000
#define COHORT_EXISTS_RATIO 20
#define NO_DRIVER ((size_t)-1)

typedef omop_domain domain_map;

struct cohort_crit {
    const Sdefed__Criterion *cr;
    const domain_map *dm;
    bool values;        /* the domain has value_as_number / unit_concept_id */
    bool required;
    bool is_index;
    int64_t est;
    char where[32];     /* "cohort.all[2]", for refusals */
};

/* Death is not in the shared domain map (no concept index is expected on
 * cause_concept_id); it is only ever a criterion. */
static const domain_map death_domain = { SDEFED__DOMAIN__DOMAIN_DEATH, "death", "death",
                                         "cause_concept_id", "death_date" };

static const domain_map *domain_find(Sdefed__Domain d)
{
    if (d == SDEFED__DOMAIN__DOMAIN_DEATH)
        return &death_domain;
    for (size_t k = 0; k < query_n_omop_domains; k++)
        if (query_omop_domains[k].domain == d)
            return &query_omop_domains[k];
    return NULL;
}

/* ---- text and parameters ---- */

void cohort_sql_add(sqlbuf *b, const char *fmt, ...)
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
        if (ncap > COHORT_MAX_SQL) {
            if (need > COHORT_MAX_SQL) {
                b->err = SDF_EOVERFLOW;
                return;
            }
            ncap = COHORT_MAX_SQL;
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
#define ADD cohort_sql_add

/* Append a parameter; returns its 1-based number, or 0 on ENOMEM (the
 * error is then recorded in the SQL buffer). */
static int param_add(cohort_plan *cp, db_param p)
{
    if (cp->n_params == cp->cap_params) {
        size_t nc = cp->cap_params ? cp->cap_params * 2 : 32;
        db_param *np = realloc(cp->params, nc * sizeof *np);
        if (!np) {
            cp->sql.err = SDF_ENOMEM;
            return 0;
        }
        cp->params = np;
        cp->cap_params = nc;
    }
    cp->params[cp->n_params++] = p;
    return (int)cp->n_params;
}

static int p_int(cohort_plan *cp, int64_t v)
{
    return param_add(cp, (db_param){ .type = DB_PARAM_INT64, .i = v });
}

static int p_double(cohort_plan *cp, double v)
{
    return param_add(cp, (db_param){ .type = DB_PARAM_DOUBLE, .d = v });
}

int cohort_plan_param_text(cohort_plan *cp, const char *s)
{
    return param_add(cp, (db_param){ .type = DB_PARAM_TEXT, .s = s });
}

static int p_list(cohort_plan *cp, const int64_t *v, size_t n)
{
    return param_add(cp, (db_param){ .type = DB_PARAM_INT64_LIST, .list = v, .n = n });
}

/* Placeholder text of parameter n. */
typedef struct ph { char s[200]; } ph;

static ph P(db_conn *db, int n)
{
    ph r = { "" };
    if (db_sql_param(db, n, r.s, sizeof r.s) < 0)
        r.s[0] = '\0';
    return r;
}

static ph L(db_conn *db, int n)
{
    ph r = { "" };
    if (db_sql_int_list(db, n, r.s, sizeof r.s) < 0)
        r.s[0] = '\0';
    return r;
}

/* DAY(expr) into a fresh buffer. */
typedef struct dayx { char s[1024]; } dayx;

static dayx DAY(db_conn *db, const char *expr)
{
    dayx r = { "" };
    if (db_sql_day(db, expr, r.s, sizeof r.s) < 0)
        r.s[0] = '\0';
    return r;
}

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

/* ---- small queries ---- */

typedef struct two_ints {
    int64_t a, b;
    bool found;
} two_ints;

static int two_ints_row(void *ctx, const db_value *cols, int ncols)
{
    two_ints *t = ctx;
    if (ncols >= 1 && !cols[0].is_null) {
        t->a = cols[0].i;
        t->found = true;
    }
    if (ncols >= 2 && !cols[1].is_null)
        t->b = cols[1].i;
    return 1;
}

/* ---- collecting criteria ---- */

static int crit_add(cohort_plan *cp, const Sdefed__Criterion *cr, bool required, bool is_index,
                    const char *where, size_t i)
{
    if (!cr || cp->n_crit >= SPEC_MAX_CRITERIA + 2)
        return SDF_EINVAL;
    cohort_crit *c = &cp->crit[cp->n_crit++];
    if (i == NO_DRIVER)
        snprintf(c->where, sizeof c->where, "%s", where);
    else
        snprintf(c->where, sizeof c->where, "%s[%zu]", where, i);
    c->cr = cr;
    c->dm = domain_find(cr->domain);
    if (!c->dm)
        return SDF_EINVAL;
    c->values = cr->domain == SDEFED__DOMAIN__DOMAIN_MEASUREMENT ||
                cr->domain == SDEFED__DOMAIN__DOMAIN_OBSERVATION;
    c->required = required;
    c->is_index = is_index;
    c->est = COHORT_ESTIMATE_CAP;
    return 0;
}

static size_t crit_of(const cohort_plan *cp, const Sdefed__Criterion *cr)
{
    for (size_t k = 0; k < cp->n_crit; k++)
        if (cp->crit[k].cr == cr)
            return k;
    return NO_DRIVER;
}

/* Re-check the tree shape (the compiler does not rely on spec_validate
 * having run): children after parents, bounded depth, all in range. */
static bool tree_ok(const Sdefed__Cohort *co)
{
    unsigned char depth[SPEC_MAX_NODES] = { 0 };
    if (co->n_nodes > SPEC_MAX_NODES || !co->nodes)
        return false;
    for (size_t i = 0; i < co->n_nodes; i++) {
        const Sdefed__CohortNode *nd = co->nodes[i];
        if (!nd)
            return false;
        if (nd->op == SDEFED__NODE_OP__NODE_CRITERION) {
            if (!nd->criterion)
                return false;
            continue;
        }
        if (nd->op != SDEFED__NODE_OP__NODE_ALL && nd->op != SDEFED__NODE_OP__NODE_ANY &&
            nd->op != SDEFED__NODE_OP__NODE_NOT)
            return false;
        if (nd->n_children == 0 || !nd->children || depth[i] >= SPEC_MAX_DEPTH)
            return false;
        for (size_t k = 0; k < nd->n_children; k++) {
            if (nd->children[k] <= i || nd->children[k] >= co->n_nodes)
                return false;
            depth[nd->children[k]] = (unsigned char)(depth[i] + 1);
        }
    }
    return true;
}

static int collect(query_ctx *q, cohort_plan *cp)
{
    const Sdefed__Cohort *co = cp->spec->cohort;
    int err;
    if (!co)
        return refuse(q, "cohort: required");
    cp->crit = calloc(SPEC_MAX_CRITERIA + 2, sizeof *cp->crit);
    if (!cp->crit)
        return SDF_ENOMEM;
    if (co->n_all > SPEC_MAX_CRITERIA)
        return refuse(q, "cohort.all: more than %d criteria", SPEC_MAX_CRITERIA);
    if (co->index) {
        if ((err = crit_add(cp, co->index, true, true, "cohort.index", NO_DRIVER)))
            return refuse(q, "cohort.index: invalid");
        cp->has_index = true;
        cp->index_crit = 0;
    }
    if (co->n_all > 0) {
        for (size_t k = 0; k < co->n_all; k++) {
            bool implicit_index = !co->index && k == 0;
            if ((err = crit_add(cp, co->all[k], true, implicit_index, "cohort.all", k)))
                return refuse(q, "cohort.all[%zu]: invalid criterion", k);
            if (implicit_index) {
                cp->has_index = true;
                cp->index_crit = cp->n_crit - 1;
            }
        }
    } else if (co->n_nodes > 0) {
        if (!tree_ok(co))
            return refuse(q, "cohort.nodes: malformed expression");
        size_t n = 0;
        for (size_t i = 0; i < co->n_nodes; i++)
            if (co->nodes[i]->op == SDEFED__NODE_OP__NODE_CRITERION && ++n > SPEC_MAX_CRITERIA)
                return refuse(q, "cohort: more than %d criteria", SPEC_MAX_CRITERIA);
        const Sdefed__CohortNode *root = co->nodes[0];
        for (size_t i = 0; i < co->n_nodes; i++) {
            const Sdefed__CohortNode *nd = co->nodes[i];
            if (nd->op != SDEFED__NODE_OP__NODE_CRITERION)
                continue;
            bool required = i == 0;
            if (root->op == SDEFED__NODE_OP__NODE_ALL)
                for (size_t k = 0; k < root->n_children; k++)
                    required = required || root->children[k] == i;
            if ((err = crit_add(cp, nd->criterion, required, false, "cohort.nodes", i)))
                return refuse(q, "cohort.nodes[%zu]: invalid criterion", i);
        }
    }
    if (cp->n_crit == 0)
        return refuse(q, "cohort: at least one criterion is required");
    return 0;
}

/* ---- checks against the dataset ---- */

static int need_table(query_ctx *q, db_conn *db, const agent_dataset *ds, const char *table,
                      const char *what)
{
    bool ex;
    int err = db_table_exists(db, table, &ex);
    if (err)
        return err;
    if (!ex)
        return refuse(q, "dataset '%s' has no %s", ds->name, what);
    return 0;
}

int cohort_check_concepts(query_ctx *q, db_conn *db, const int64_t *ids, size_t n,
                          const char *where)
{
    char list[160], sql[512];
    if (n == 0)
        return 0;
    if (db_sql_int_list(db, 1, list, sizeof list) < 0)
        return SDF_EOVERFLOW;
    int w = snprintf(sql, sizeof sql,
                     "SELECT j.value FROM (%s) j WHERE NOT EXISTS "
                     "(SELECT 1 FROM concept c WHERE c.concept_id = j.value) LIMIT 1", list);
    if (w < 0 || (size_t)w >= sizeof sql)
        return SDF_EOVERFLOW;
    db_param p = { .type = DB_PARAM_INT64_LIST, .list = ids, .n = n };
    two_ints t = { 0, 0, false };
    int err = db_query(db, sql, &p, 1, two_ints_row, &t);
    if (err)
        return err;
    if (t.found)
        return refuse(q, "unknown concept id %" PRId64 " in %s", t.a, where);
    return 0;
}

static int check_dataset(query_ctx *q, db_conn *db, const agent_dataset *ds, cohort_plan *cp)
{
    const Sdefed__QuerySpec *spec = cp->spec;
    const Sdefed__Cohort *co = spec->cohort;
    bool ancestor = false;
    int err;

    if ((err = need_table(q, db, ds, "concept", "vocabulary (concept table)")) ||
        (err = need_table(q, db, ds, "person", "person table")))
        return err;
    for (size_t k = 0; k < cp->n_crit; k++) {
        const Sdefed__Criterion *cr = cp->crit[k].cr;
        char what[64];
        snprintf(what, sizeof what, "%s data", cp->crit[k].dm->name);
        if ((err = need_table(q, db, ds, cp->crit[k].dm->table, what)))
            return err;
        ancestor = ancestor || cr->descendants || cr->exclude_descendants;
        const char *where = cp->crit[k].where;
        if ((err = cohort_check_concepts(q, db, cr->concepts, cr->n_concepts, where)) ||
            (err = cohort_check_concepts(q, db, cr->exclude, cr->n_exclude, where)) ||
            (err = cohort_check_concepts(q, db, cr->units, cr->n_units, where)))
            return err;
    }
    if (spec->summary) {
        ancestor = ancestor || spec->summary->descendants;
        if (spec->summary->of == SDEFED__SUMMARY_OF__SUMMARY_MEASUREMENT &&
            ((err = need_table(q, db, ds, "measurement", "measurement data")) ||
             (err = cohort_check_concepts(q, db, spec->summary->concepts, spec->summary->n_concepts,
                              "summary")) ||
             (err = cohort_check_concepts(q, db, spec->summary->units, spec->summary->n_units, "summary"))))
            return err;
    }
    if (ancestor && (err = need_table(q, db, ds, "concept_ancestor",
                                      "concept_ancestor table: descendants cannot be expanded")))
        return err;
    if (co->observation &&
        (err = need_table(q, db, ds, "observation_period", "observation_period table")))
        return err;
    return 0;
}

/* ---- stratifiers ---- */

static int levels_alloc(cohort_strat *s, size_t n)
{
    s->levels = calloc(n, sizeof *s->levels);
    if (!s->levels)
        return SDF_ENOMEM;
    s->n_levels = 0;
    return 0;
}

static void level_add(cohort_strat *s, int64_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void level_add(cohort_strat *s, int64_t code, const char *fmt, ...)
{
    cohort_level *l = &s->levels[s->n_levels++];
    va_list ap;
    va_start(ap, fmt);
    l->code = code;
    vsnprintf(l->label, sizeof l->label, fmt, ap);
    va_end(ap);
}

static const struct { int64_t concept; const char *label; } race_map[] = {
    { 8527, "white" }, { 8516, "black" }, { 8515, "asian" },
    { 8657, "american_indian" }, { 8557, "pacific_islander" },
};
static const struct { int64_t concept; const char *label; } eth_map[] = {
    { 38003563, "hispanic" }, { 38003564, "not_hispanic" },
};

/* The band width and top band of age_band. */
static int64_t band_width(const Sdefed__QuerySpec *s)
{
    return s->age_band_width >= 1 && s->age_band_width <= SPEC_MAX_AGE_BAND_WIDTH
               ? (int64_t)s->age_band_width : 10;
}

static int year_range(query_ctx *q, db_conn *db, const agent_dataset *ds, cohort_plan *cp)
{
    char ys[1400], ye[1400];
    dayx s = DAY(db, "o.observation_period_start_date");
    dayx e = DAY(db, "o.observation_period_end_date");
    int err;
    if ((err = need_table(q, db, ds, "observation_period",
                          "observation_period table (year and quarter use its range)")))
        return err;
    if (db_sql_day_year(db, s.s, ys, sizeof ys) < 0 || db_sql_day_year(db, e.s, ye, sizeof ye) < 0)
        return SDF_EOVERFLOW;
    sqlbuf b = { 0 };
    ADD(&b, "SELECT MIN(%s), MAX(%s) FROM observation_period o", ys, ye);
    if (b.err)
        return b.err;
    two_ints t = { 0, 0, false };
    err = db_query(db, b.p, NULL, 0, two_ints_row, &t);
    free(b.p);
    if (err)
        return err;
    if (!t.found || t.b < t.a)
        return refuse(q, "dataset '%s' has no observation periods to take years from", ds->name);
    if (t.b - t.a >= 150)
        t.a = t.b - 149;   /* the last 150 years; earlier index dates are "unknown" */
    cp->year_lo = t.a;
    cp->year_hi = t.b;
    return 0;
}

typedef struct id_list {
    cohort_strat *s;
    int err;
} id_list;

static int care_site_row(void *ctx, const db_value *cols, int ncols)
{
    id_list *l = ctx;
    if (ncols < 1 || cols[0].is_null)
        return 0;
    if (l->s->n_levels + 1 >= COHORT_MAX_LEVELS) {
        l->err = SDF_EOVERFLOW;
        return 1;
    }
    level_add(l->s, cols[0].i, "%" PRId64, cols[0].i);
    return 0;
}

static int build_strata(query_ctx *q, db_conn *db, const agent_dataset *ds, cohort_plan *cp)
{
    const Sdefed__QuerySpec *spec = cp->spec;
    int err;
    if (spec->n_by > SPEC_MAX_STRATIFIERS)
        return refuse(q, "by: more than %d stratifiers", SPEC_MAX_STRATIFIERS);
    cp->n_cells = 1;
    for (size_t k = 0; k < spec->n_by; k++) {
        cohort_strat *s = &cp->strata[k];
        s->kind = spec->by[k];
        for (size_t j = 0; j < k; j++)
            if (spec->by[j] == spec->by[k])
                return refuse(q, "by[%zu]: duplicate stratifier", k);
        switch (spec->by[k]) {
        case SDEFED__STRATIFIER__STRAT_SEX:
            s->name = "sex";
            if ((err = levels_alloc(s, 3)))
                return err;
            level_add(s, 1, "male");
            level_add(s, 2, "female");
            level_add(s, 0, "unknown");
            break;
        case SDEFED__STRATIFIER__STRAT_AGE_BAND: {
            int64_t w = band_width(spec), top = (90 / w) * w;
            s->name = "age_band";
            if (!cp->has_index)
                return refuse(q, "by[%zu]: age_band needs cohort.index", k);
            if ((err = levels_alloc(s, (size_t)(top / w) + 2)))
                return err;
            for (int64_t b = 0; b < top / w; b++)
                level_add(s, b, "%" PRId64 "-%" PRId64, b * w, b * w + w - 1);
            level_add(s, top / w, "%" PRId64 "+", top);
            level_add(s, -1, "unknown");
            break;
        }
        case SDEFED__STRATIFIER__STRAT_YEAR:
        case SDEFED__STRATIFIER__STRAT_QUARTER: {
            bool quarter = spec->by[k] == SDEFED__STRATIFIER__STRAT_QUARTER;
            s->name = quarter ? "quarter" : "year";
            if (!cp->has_index)
                return refuse(q, "by[%zu]: %s needs cohort.index", k, s->name);
            if (cp->year_hi == 0 && (err = year_range(q, db, ds, cp)))
                return err;
            size_t n = (size_t)(cp->year_hi - cp->year_lo + 1) * (quarter ? 4 : 1);
            if ((err = levels_alloc(s, n + 1)))
                return err;
            for (int64_t y = cp->year_lo; y <= cp->year_hi; y++) {
                if (!quarter)
                    level_add(s, y, "%" PRId64, y);
                else
                    for (int64_t qt = 0; qt < 4; qt++)
                        level_add(s, y * 4 + qt, "%" PRId64 "-Q%" PRId64, y, qt + 1);
            }
            level_add(s, INT64_MIN, "unknown");
            break;
        }
        case SDEFED__STRATIFIER__STRAT_RACE:
            s->name = "race";
            if ((err = levels_alloc(s, 7)))
                return err;
            for (size_t j = 0; j < sizeof race_map / sizeof race_map[0]; j++)
                level_add(s, (int64_t)j + 1, "%s", race_map[j].label);
            level_add(s, 6, "other");
            level_add(s, 0, "unknown");
            break;
        case SDEFED__STRATIFIER__STRAT_ETHNICITY:
            s->name = "ethnicity";
            if ((err = levels_alloc(s, 4)))
                return err;
            for (size_t j = 0; j < sizeof eth_map / sizeof eth_map[0]; j++)
                level_add(s, (int64_t)j + 1, "%s", eth_map[j].label);
            level_add(s, 3, "other");
            level_add(s, 0, "unknown");
            break;
        case SDEFED__STRATIFIER__STRAT_CARE_SITE: {
            s->name = "care_site";
            if (!ds->allow_care_site)
                return refuse(q, "by[%zu]: this site does not allow stratifying by care_site",
                              k);
            if ((err = need_table(q, db, ds, "care_site", "care_site table")))
                return err;
            if ((err = levels_alloc(s, COHORT_MAX_LEVELS)))
                return err;
            id_list l = { s, 0 };
            err = db_query(db, "SELECT care_site_id FROM care_site WHERE care_site_id IS NOT "
                               "NULL ORDER BY care_site_id", NULL, 0, care_site_row, &l);
            if (err)
                return err;
            if (l.err)
                return refuse(q, "by[%zu]: more than %d care sites", k, COHORT_MAX_LEVELS - 1);
            level_add(s, INT64_MIN, "unknown");
            break;
        }
        default:
            return refuse(q, "by[%zu]: unknown stratifier", k);
        }
        cp->n_strata++;
        if (cp->n_cells > COHORT_MAX_CELLS / s->n_levels)
            return refuse(q, "by: more than %d strata combinations", COHORT_MAX_CELLS);
        cp->n_cells *= s->n_levels;
    }
    return 0;
}

size_t cohort_level_index(const cohort_strat *s, const db_value *v)
{
    if (!v->is_null)
        for (size_t k = 0; k + 1 < s->n_levels; k++)
            if (s->levels[k].code == v->i)
                return k;
    return s->n_levels - 1;
}

/* ---- SQL pieces ---- */

/* The concept-set CTEs of criterion k ("c<k>_in", "c<k>_ex", "cs<k>"),
 * each followed by ",\n". Nothing for a criterion without concepts. */
static void concept_set_ctes(db_conn *db, cohort_plan *cp, const char *tag, const int64_t *inc,
                             size_t n_inc, bool inc_desc, const int64_t *exc, size_t n_exc,
                             bool exc_desc)
{
    if (n_inc == 0)
        return;
    int a = p_list(cp, inc, n_inc);
    ADD(&cp->sql, "%s_in(concept_id) AS (%s", tag, L(db, a).s);
    if (inc_desc)
        ADD(&cp->sql, " UNION SELECT descendant_concept_id FROM concept_ancestor "
                      "WHERE ancestor_concept_id IN (%s)", L(db, a).s);
    ADD(&cp->sql, "),\n");
    if (n_exc > 0) {
        int x = p_list(cp, exc, n_exc);
        ADD(&cp->sql, "%s_ex(concept_id) AS (%s", tag, L(db, x).s);
        if (exc_desc)
            ADD(&cp->sql, " UNION SELECT descendant_concept_id FROM concept_ancestor "
                          "WHERE ancestor_concept_id IN (%s)", L(db, x).s);
        ADD(&cp->sql, "),\n");
    }
    ADD(&cp->sql, "cs%s(concept_id) AS (SELECT concept_id FROM %s_in", tag + 1, tag);
    if (n_exc > 0)
        ADD(&cp->sql, " WHERE concept_id NOT IN (SELECT concept_id FROM %s_ex)", tag);
    ADD(&cp->sql, "),\n");
}

/* How a criterion's concept set restricts its events. */
enum { CS_PLUS = 1,     /* " AND +a.C IN (cs)": a filter; the concept index stays unused */
       CS_JOINED = 2 }; /* already joined by events_from(..., true) */

/* " FROM T a WHERE 1 = 1", or with `joined` (and concepts) "FROM csK CROSS
 * JOIN T a WHERE a.C = csK.concept_id": the concept set drives the scan
 * through the concept index. CROSS JOIN fixes that order in SQLite, whose
 * planner (with ANALYZE statistics and an IN list of unknown length) would
 * otherwise often scan the whole table; elsewhere it is a plain join. */
static void events_from(cohort_plan *cp, size_t k, const char *a, bool joined)
{
    const cohort_crit *c = &cp->crit[k];
    if (joined && c->cr->n_concepts > 0)
        ADD(&cp->sql, " FROM cs%zu CROSS JOIN %s %s WHERE %s.%s = cs%zu.concept_id", k + 1,
            c->dm->table, a, a, c->dm->concept_col, k + 1);
    else
        ADD(&cp->sql, " FROM %s %s WHERE 1 = 1", c->dm->table, a);
}

/* The concept-set condition (by mode: CS_PLUS, CS_JOINED, or 0 for a plain
 * " AND a.C IN (SELECT concept_id FROM csK)"), then the value and unit
 * filters. */
static void event_filters(db_conn *db, cohort_plan *cp, size_t k, const char *a, int mode)
{
    const cohort_crit *c = &cp->crit[k];
    const Sdefed__Criterion *cr = c->cr;
    if (cr->n_concepts > 0 && mode != CS_JOINED)
        ADD(&cp->sql, " AND %s%s.%s IN (SELECT concept_id FROM cs%zu)",
            mode == CS_PLUS ? "+" : "", a, c->dm->concept_col, k + 1);
    if (c->values && cr->value) {
        if (cr->value->has_min)
            ADD(&cp->sql, " AND %s.value_as_number >= %s", a, P(db, p_double(cp, cr->value->min)).s);
        if (cr->value->has_max)
            ADD(&cp->sql, " AND %s.value_as_number <= %s", a, P(db, p_double(cp, cr->value->max)).s);
    }
    if (c->values && cr->n_units > 0)
        ADD(&cp->sql, " AND %s.unit_concept_id IN (%s)", a,
            L(db, p_list(cp, cr->units, cr->n_units)).s);
}

/* Whether criterion k (not first_only) is checked per cohort row through
 * the person_id index (EXISTS) rather than as a person set built once
 * (IN): windowed, nothing drives, or much larger than the driver. */
static bool crit_per_person(const cohort_plan *cp, size_t k)
{
    const cohort_crit *c = &cp->crit[k];
    return c->cr->window != NULL || cp->driver == NO_DRIVER ||
           c->est / COHORT_EXISTS_RATIO > cp->crit[cp->driver].est;
}

/* " AND <alias's row id> BETWEEN ?lo AND ?hi" when splitting (the values
 * are set per part by the caller; these cover every row). */
static void split_range(db_conn *db, cohort_plan *cp, const char *alias)
{
    char rid[64];
    if (!cp->split)
        return;
    if (db_sql_row_id(db, alias, rid, sizeof rid) < 0) {
        cp->sql.err = SDF_EINVAL;
        return;
    }
    int lo = p_int(cp, 0);
    int hi = p_int(cp, INT64_MAX);
    cp->split_param = lo;
    ADD(&cp->sql, " AND %s BETWEEN %s", rid, P(db, lo).s);
    ADD(&cp->sql, " AND %s", P(db, hi).s);
}

/* The predicate of criterion k over an index row `i`. */
static void crit_predicate(db_conn *db, cohort_plan *cp, size_t k)
{
    const cohort_crit *c = &cp->crit[k];
    const Sdefed__Criterion *cr = c->cr;
    char fdate[160];
    snprintf(fdate, sizeof fdate, "f.%s", c->dm->date_col);

    if (cr->first_only) {
        /* fK holds each person's earliest day in the concept set. */
        ADD(&cp->sql, "EXISTS (SELECT 1 FROM f%zu WHERE f%zu.person_id = i.person_id", k + 1,
            k + 1);
        if (cr->window) {
            ADD(&cp->sql, " AND f%zu.d BETWEEN i.index_day + %s", k + 1,
                P(db, p_int(cp, cr->window->start_days)).s);
            ADD(&cp->sql, " AND i.index_day + %s", P(db, p_int(cp, cr->window->end_days)).s);
        }
        if ((c->values && (cr->value || cr->n_units > 0))) {
            dayx gd;
            char gdate[160];
            snprintf(gdate, sizeof gdate, "f.%s", c->dm->date_col);
            gd = DAY(db, gdate);
            ADD(&cp->sql, " AND EXISTS (SELECT 1 FROM %s f WHERE f.person_id = f%zu.person_id "
                          "AND %s = f%zu.d", c->dm->table, k + 1, gd.s, k + 1);
            event_filters(db, cp, k, "f", CS_PLUS);
            ADD(&cp->sql, ")");
        }
        ADD(&cp->sql, ")");
        return;
    }
    if (crit_per_person(cp, k)) {
        ADD(&cp->sql, "EXISTS (SELECT 1 FROM %s f WHERE f.person_id = i.person_id", c->dm->table);
        event_filters(db, cp, k, "f", CS_PLUS);
        if (cr->window) {
            dayx fd = DAY(db, fdate);
            ADD(&cp->sql, " AND %s BETWEEN i.index_day + %s", fd.s,
                P(db, p_int(cp, cr->window->start_days)).s);
            ADD(&cp->sql, " AND i.index_day + %s", P(db, p_int(cp, cr->window->end_days)).s);
        }
        ADD(&cp->sql, ")");
    } else {
        ADD(&cp->sql, "+i.person_id IN (SELECT f.person_id");
        events_from(cp, k, "f", true);
        event_filters(db, cp, k, "f", CS_JOINED);
        ADD(&cp->sql, ")");
    }
}

/* The expression: flat `all` (minus an implicit index) or the node tree.
 * Recursion depth is bounded by tree_ok() (SPEC_MAX_DEPTH). Writes "1 = 1"
 * for an empty expression. */
static void node_predicate(db_conn *db, cohort_plan *cp, const Sdefed__Cohort *co, size_t i)
{
    const Sdefed__CohortNode *nd = co->nodes[i];
    if (nd->op == SDEFED__NODE_OP__NODE_CRITERION) {
        crit_predicate(db, cp, crit_of(cp, nd->criterion));
        return;
    }
    const char *op = nd->op == SDEFED__NODE_OP__NODE_ANY ? " OR " : " AND ";
    ADD(&cp->sql, nd->op == SDEFED__NODE_OP__NODE_NOT ? "(NOT " : "(");
    for (size_t k = 0; k < nd->n_children; k++) {
        if (k)
            ADD(&cp->sql, "%s", op);
        node_predicate(db, cp, co, nd->children[k]);
    }
    ADD(&cp->sql, ")");
}

static void expression(db_conn *db, cohort_plan *cp)
{
    const Sdefed__Cohort *co = cp->spec->cohort;
    bool any = false;
    for (size_t k = 0; k < cp->n_crit; k++) {
        if (cp->crit[k].is_index || co->n_nodes > 0)
            continue;
        ADD(&cp->sql, "%s", any ? "\n  AND " : "");
        crit_predicate(db, cp, k);
        any = true;
    }
    if (co->n_nodes > 0) {
        node_predicate(db, cp, co, 0);
        any = true;
    }
    if (!any)
        ADD(&cp->sql, "1 = 1");
}

/* Year of the day-number expression e. */
static int year_of(db_conn *db, const char *e, char *buf, size_t len)
{
    return db_sql_day_year(db, e, buf, len);
}

static void strata_codes(db_conn *db, cohort_plan *cp)
{
    char yr[600], mo[600];
    if (year_of(db, "d", yr, sizeof yr) < 0 || db_sql_day_month(db, "d", mo, sizeof mo) < 0) {
        cp->sql.err = SDF_EOVERFLOW;
        return;
    }
    for (size_t k = 0; k < cp->n_strata; k++) {
        const cohort_strat *s = &cp->strata[k];
        if (k)
            ADD(&cp->sql, ", ");
        switch (s->kind) {
        case SDEFED__STRATIFIER__STRAT_SEX:
            ADD(&cp->sql, "CASE g WHEN 8507 THEN 1 WHEN 8532 THEN 2 ELSE 0 END");
            break;
        case SDEFED__STRATIFIER__STRAT_AGE_BAND: {
            int64_t w = band_width(cp->spec), top = (90 / w) * w;
            ADD(&cp->sql, "CASE WHEN age IS NULL OR age < 0 THEN -1 WHEN age >= %s ",
                P(db, p_int(cp, top)).s);
            ADD(&cp->sql, "THEN %s ", P(db, p_int(cp, top / w)).s);
            ADD(&cp->sql, "ELSE age / %s END", P(db, p_int(cp, w)).s);
            break;
        }
        case SDEFED__STRATIFIER__STRAT_YEAR:
            ADD(&cp->sql, "CASE WHEN %s BETWEEN %s", yr, P(db, p_int(cp, cp->year_lo)).s);
            ADD(&cp->sql, " AND %s THEN %s END", P(db, p_int(cp, cp->year_hi)).s, yr);
            break;
        case SDEFED__STRATIFIER__STRAT_QUARTER:
            ADD(&cp->sql, "CASE WHEN %s BETWEEN %s", yr, P(db, p_int(cp, cp->year_lo)).s);
            ADD(&cp->sql, " AND %s THEN %s * 4 + (%s - 1) / 3 END",
                P(db, p_int(cp, cp->year_hi)).s, yr, mo);
            break;
        case SDEFED__STRATIFIER__STRAT_RACE:
            ADD(&cp->sql, "CASE WHEN r IS NULL OR r = 0 THEN 0");
            for (size_t j = 0; j < sizeof race_map / sizeof race_map[0]; j++)
                ADD(&cp->sql, " WHEN r = %" PRId64 " THEN %zu", race_map[j].concept, j + 1);
            ADD(&cp->sql, " ELSE 6 END");
            break;
        case SDEFED__STRATIFIER__STRAT_ETHNICITY:
            ADD(&cp->sql, "CASE WHEN eth IS NULL OR eth = 0 THEN 0");
            for (size_t j = 0; j < sizeof eth_map / sizeof eth_map[0]; j++)
                ADD(&cp->sql, " WHEN eth = %" PRId64 " THEN %zu", eth_map[j].concept, j + 1);
            ADD(&cp->sql, " ELSE 3 END");
            break;
        case SDEFED__STRATIFIER__STRAT_CARE_SITE:
            ADD(&cp->sql, "cs");
            break;
        default:
            cp->sql.err = SDF_EINVAL;
            return;
        }
        ADD(&cp->sql, " AS s%zu", k);
    }
}

/* The per-person value of the summary variable, over cohort row `c` and
 * person `p` (measurement: the latest or first value in the window). */
static void value_expr(db_conn *db, cohort_plan *cp, const char *age)
{
    const Sdefed__SummarySpec *sm = cp->spec->summary;
    if (sm->of == SDEFED__SUMMARY_OF__SUMMARY_AGE) {
        ADD(&cp->sql, "%s", age);
        return;
    }
    dayx md = DAY(db, "m.measurement_date");
    const char *dir = sm->pick == SDEFED__SUMMARY_PICK__PICK_FIRST ? "ASC" : "DESC";
    ADD(&cp->sql, "(SELECT m.value_as_number FROM measurement m WHERE m.person_id = c.person_id "
                  "AND +m.measurement_concept_id IN (SELECT concept_id FROM csv) "
                  "AND m.value_as_number IS NOT NULL");
    if (sm->n_units > 0)
        ADD(&cp->sql, " AND m.unit_concept_id IN (%s)",
            L(db, p_list(cp, sm->units, sm->n_units)).s);
    if (sm->window) {
        ADD(&cp->sql, " AND %s BETWEEN c.index_day + %s", md.s,
            P(db, p_int(cp, sm->window->start_days)).s);
        ADD(&cp->sql, " AND c.index_day + %s", P(db, p_int(cp, sm->window->end_days)).s);
    }
    ADD(&cp->sql, " ORDER BY %s %s, m.measurement_id %s LIMIT 1)", md.s, dir, dir);
}

/* COHORT_SELECT_COUNT_AND_PERSONS: close the tagged count SELECT and add
 * the persons, a NULL for each stratum so the columns line up. */
static int persons_branch(cohort_plan *cp)
{
    ADD(&cp->sql, ") AS t0\nUNION ALL SELECT 1, ");
    for (size_t k = 0; k < cp->n_strata; k++)
        ADD(&cp->sql, "NULL, ");
    ADD(&cp->sql, "person_id FROM cohort");
    return cp->sql.err;
}

/* Whether anything in the statement reads index_day: age at index, the
 * observation requirement, a windowed criterion, an age band / year /
 * quarter stratifier, or any statement other than a count's. When nothing
 * does, the index events are just DISTINCT person ids: converting every
 * event's date to a day number is most of a simple count's time (the same
 * persons qualify either way; MIN only picked which day). */
static bool needs_index_day(const cohort_plan *cp, cohort_select what)
{
    const Sdefed__Cohort *co = cp->spec->cohort;
    /* PERSONS callers (surveil, scorecard) splice their own SELECT that
     * reads c.index_day onto the cohort CTE */
    if (what != COHORT_SELECT_COUNT && what != COHORT_SELECT_COUNT_AND_PERSONS &&
        what != COHORT_SELECT_PERSON_CELLS)
        return true;
    if (co->age || co->observation)
        return true;
    for (size_t k = 0; k < cp->n_crit; k++)
        if (cp->crit[k].cr->window)
            return true;
    for (size_t k = 0; k < cp->n_strata; k++)
        switch (cp->strata[k].kind) {
        case SDEFED__STRATIFIER__STRAT_AGE_BAND:
        case SDEFED__STRATIFIER__STRAT_YEAR:
        case SDEFED__STRATIFIER__STRAT_QUARTER:
            return true;
        default:
            break;
        }
    return false;
}

int cohort_plan_sql(db_conn *db, cohort_plan *cp, cohort_select what)
{
    const Sdefed__QuerySpec *spec = cp->spec;
    const Sdefed__Cohort *co = spec->cohort;
    char tag[32];

    free(cp->sql.p);
    cp->sql = (sqlbuf){ 0 };
    cp->n_params = 0;

    ADD(&cp->sql, "WITH ");
    for (size_t k = 0; k < cp->n_crit; k++) {
        const Sdefed__Criterion *cr = cp->crit[k].cr;
        snprintf(tag, sizeof tag, "c%zu", k + 1);
        concept_set_ctes(db, cp, tag, cr->concepts, cr->n_concepts, cr->descendants,
                         cr->exclude, cr->n_exclude, cr->exclude_descendants);
    }
    if (what == COHORT_SELECT_VALUES && spec->summary &&
        spec->summary->of == SDEFED__SUMMARY_OF__SUMMARY_MEASUREMENT)
        concept_set_ctes(db, cp, "cv", spec->summary->concepts, spec->summary->n_concepts,
                         spec->summary->descendants, NULL, 0, false);
    for (size_t k = 0; k < cp->n_crit; k++) {
        const cohort_crit *c = &cp->crit[k];
        if (!c->cr->first_only || c->is_index)
            continue;
        char fdate[160];
        snprintf(fdate, sizeof fdate, "f.%s", c->dm->date_col);
        ADD(&cp->sql, "f%zu(person_id, d) AS MATERIALIZED (SELECT f.person_id, MIN(%s)", k + 1,
            DAY(db, fdate).s);
        events_from(cp, k, "f", true);
        ADD(&cp->sql, " GROUP BY f.person_id),\n");
    }

    /* ev: index events (or the rows to test without an index); without
     * `day`, one row per person (every branch below is DISTINCT or person) */
    size_t d = cp->driver;
    bool day = needs_index_day(cp, what);
    if (cp->has_index) {
        const cohort_crit *ix = &cp->crit[cp->index_crit];
        char edate[160];
        snprintf(edate, sizeof edate, "e.%s", ix->dm->date_col);
        bool first = co->index_event != SDEFED__INDEX_EVENT__INDEX_ALL && day;
        dayx ed = DAY(db, edate);
        bool drives = d == cp->index_crit || d == NO_DRIVER;
        if (day)
            ADD(&cp->sql, "ev(person_id, index_day) AS (SELECT %se.person_id, %s%s%s",
                first ? "" : "DISTINCT ", first ? "MIN(" : "", ed.s, first ? ")" : "");
        else
            ADD(&cp->sql, "ev(person_id, index_day) AS (SELECT DISTINCT e.person_id, "
                          "CAST(NULL AS INTEGER)");
        events_from(cp, cp->index_crit, "e", drives);
        event_filters(db, cp, cp->index_crit, "e", drives ? CS_JOINED : CS_PLUS);
        if (drives)
            split_range(db, cp, "e");
        if (!drives) {
            ADD(&cp->sql, " AND e.person_id IN (SELECT f.person_id");
            events_from(cp, d, "f", true);
            event_filters(db, cp, d, "f", CS_JOINED);
            split_range(db, cp, "f");
            ADD(&cp->sql, ")");
        }
        ADD(&cp->sql, "%s),\n", first ? " GROUP BY e.person_id" : "");
    } else if (d != NO_DRIVER) {
        ADD(&cp->sql, "ev(person_id, index_day) AS (SELECT DISTINCT f.person_id, "
                      "CAST(NULL AS INTEGER)");
        events_from(cp, d, "f", true);
        event_filters(db, cp, d, "f", CS_JOINED);
        split_range(db, cp, "f");
        ADD(&cp->sql, "),\n");
    } else {
        /* DISTINCT: person_id is the key, but nothing in a site's file enforces it */
        ADD(&cp->sql, "ev(person_id, index_day) AS (SELECT %sp.person_id, CAST(NULL AS INTEGER) "
                      "FROM person p WHERE 1 = 1", day ? "" : "DISTINCT ");
        split_range(db, cp, "p");
        ADD(&cp->sql, "),\n");
    }

    /* cohort: one row per person, at the earliest qualifying index day */
    bool person = co->n_sex > 0 || co->age;
    bool both = what == COHORT_SELECT_COUNT_AND_PERSONS;
    ADD(&cp->sql, "cohort(person_id, index_day) AS %s(SELECT i.person_id, %s "
                  "FROM ev i%s\nWHERE ", both ? "MATERIALIZED " : "",
        day ? "MIN(i.index_day)" : "i.index_day",
        person ? " LEFT JOIN person p ON p.person_id = i.person_id" : "");
    if (co->n_sex > 0) {
        size_t n = co->n_sex < 3 ? co->n_sex : 3;
        for (size_t k = 0; k < n; k++)
            cp->sex_codes[k] = (int64_t)co->sex[k];
        ADD(&cp->sql, "(CASE p.gender_concept_id WHEN 8507 THEN 1 WHEN 8532 THEN 2 ELSE 3 END) "
                      "IN (%s) AND ", L(db, p_list(cp, cp->sex_codes, n)).s);
    }
    if (co->age) {
        char yr[600];
        if (year_of(db, "i.index_day", yr, sizeof yr) < 0)
            cp->sql.err = SDF_EOVERFLOW;
        if (co->age->has_min)
            ADD(&cp->sql, "(%s - CAST(p.year_of_birth AS INTEGER)) >= %s AND ", yr,
                P(db, p_int(cp, co->age->min)).s);
        if (co->age->has_max)
            ADD(&cp->sql, "(%s - CAST(p.year_of_birth AS INTEGER)) <= %s AND ", yr,
                P(db, p_int(cp, co->age->max)).s);
    }
    if (co->observation) {
        dayx os = DAY(db, "o.observation_period_start_date");
        dayx oe = DAY(db, "o.observation_period_end_date");
        ADD(&cp->sql, "EXISTS (SELECT 1 FROM observation_period o WHERE o.person_id = i.person_id "
                      "AND %s <= i.index_day - %s", os.s,
            P(db, p_int(cp, co->observation->prior_days)).s);
        ADD(&cp->sql, " AND %s >= i.index_day + %s) AND ", oe.s,
            P(db, p_int(cp, co->observation->post_days)).s);
    }
    expression(db, cp);
    ADD(&cp->sql, day ? "\nGROUP BY i.person_id)\n" : ")\n");

    if (what == COHORT_SELECT_PERSONS) {
        ADD(&cp->sql, "SELECT DISTINCT person_id FROM cohort ORDER BY person_id");
        return cp->sql.err;
    }
    if (both) {   /* the count statement's SELECT, tagged, then the persons */
        ADD(&cp->sql, "SELECT 0, * FROM (");
        what = COHORT_SELECT_COUNT;
    }
    if (what == COHORT_SELECT_COUNT && cp->n_strata == 0) {
        ADD(&cp->sql, "SELECT COUNT(*) FROM cohort");
        return both ? persons_branch(cp) : cp->sql.err;
    }
    if (what == COHORT_SELECT_PERSON_CELLS && cp->n_strata == 0) {
        ADD(&cp->sql, "SELECT person_id FROM cohort");
        return cp->sql.err;
    }
    char yr[600], age[800];
    if (year_of(db, "c.index_day", yr, sizeof yr) < 0 ||
        snprintf(age, sizeof age, "(%s - CAST(p.year_of_birth AS INTEGER))", yr) >=
            (int)sizeof age)
        return SDF_EOVERFLOW;
    ADD(&cp->sql, "SELECT ");
    for (size_t k = 0; k < cp->n_strata; k++)
        ADD(&cp->sql, "s%zu, ", k);
    ADD(&cp->sql, what == COHORT_SELECT_COUNT ? "COUNT(*)" : "v");
    ADD(&cp->sql, " FROM (SELECT ");
    strata_codes(db, cp);
    ADD(&cp->sql, "%sv FROM (SELECT %s AS age, c.index_day AS d, ", cp->n_strata ? ", " : "",
        age);
    /* only the person columns a stratifier needs (minimal person tables) */
    for (size_t k = 0; k < cp->n_strata; k++) {
        switch (cp->strata[k].kind) {
        case SDEFED__STRATIFIER__STRAT_SEX:
            ADD(&cp->sql, "p.gender_concept_id AS g, ");
            break;
        case SDEFED__STRATIFIER__STRAT_RACE:
            ADD(&cp->sql, "p.race_concept_id AS r, ");
            break;
        case SDEFED__STRATIFIER__STRAT_ETHNICITY:
            ADD(&cp->sql, "p.ethnicity_concept_id AS eth, ");
            break;
        case SDEFED__STRATIFIER__STRAT_CARE_SITE:
            ADD(&cp->sql, "p.care_site_id AS cs, ");
            break;
        default:
            break;
        }
    }
    if (what == COHORT_SELECT_VALUES)
        value_expr(db, cp, age);
    else if (what == COHORT_SELECT_PERSON_CELLS)
        ADD(&cp->sql, "c.person_id");
    else
        ADD(&cp->sql, "1");
    ADD(&cp->sql, " AS v FROM cohort c LEFT JOIN person p ON p.person_id = c.person_id) t1) t2");
    if (what == COHORT_SELECT_VALUES)
        ADD(&cp->sql, " WHERE v IS NOT NULL");
    else if (what == COHORT_SELECT_COUNT) {
        ADD(&cp->sql, " GROUP BY ");
        for (size_t k = 0; k < cp->n_strata; k++)
            ADD(&cp->sql, "%ss%zu", k ? ", " : "", k);
    }
    return both ? persons_branch(cp) : cp->sql.err;
}

/* ---- planning ---- */

static int estimate(db_conn *db, cohort_plan *cp, size_t k)
{
    const cohort_crit *c = &cp->crit[k];
    cohort_plan tmp = { 0 };
    tmp.spec = cp->spec;
    tmp.crit = cp->crit;
    ADD(&tmp.sql, "WITH ");
    char tag[32];
    snprintf(tag, sizeof tag, "c%zu", k + 1);
    concept_set_ctes(db, &tmp, tag, c->cr->concepts, c->cr->n_concepts, c->cr->descendants,
                     c->cr->exclude, c->cr->n_exclude, c->cr->exclude_descendants);
    if (c->cr->n_concepts == 0) {
        /* nothing to expand: a dummy CTE keeps the WITH well-formed */
        ADD(&tmp.sql, "nil_cs(x) AS (SELECT 1),\n");
    }
    if (tmp.sql.err || !tmp.sql.p || tmp.sql.len < 2) {
        int e = tmp.sql.err ? tmp.sql.err : SDF_ENOMEM;
        free(tmp.sql.p);
        free(tmp.params);
        return e;
    }
    tmp.sql.len -= 2;   /* drop the last ",\n" */
    tmp.sql.p[tmp.sql.len] = '\0';
    ADD(&tmp.sql, " SELECT COUNT(*) FROM (SELECT 1 FROM %s e WHERE 1 = 1", c->dm->table);
    if (c->cr->n_concepts > 0)
        ADD(&tmp.sql, " AND e.%s IN (SELECT concept_id FROM cs%zu)", c->dm->concept_col, k + 1);
    ADD(&tmp.sql, " LIMIT %d) t", COHORT_ESTIMATE_CAP);
    int err = tmp.sql.err;
    if (!err) {
        two_ints t = { 0, 0, false };
        err = db_query(db, tmp.sql.p, tmp.params, tmp.n_params, two_ints_row, &t);
        cp->crit[k].est = t.found ? t.a : 0;
    }
    free(tmp.sql.p);
    free(tmp.params);
    return err;
}

int cohort_plan_init(query_ctx *q, db_conn *db, const agent_dataset *ds,
                     const Sdefed__QuerySpec *spec, cohort_plan *cp)
{
    memset(cp, 0, sizeof *cp);
    cp->spec = spec;
    cp->driver = NO_DRIVER;
    int err = collect(q, cp);
    if (err)
        return err;
    if ((err = check_dataset(q, db, ds, cp)) || (err = build_strata(q, db, ds, cp)))
        return err;

    size_t n_req = 0;
    for (size_t k = 0; k < cp->n_crit; k++)
        n_req += cp->crit[k].required;
    bool need_est = cp->n_crit > 1;
    int64_t best = INT64_MAX;
    for (size_t k = 0; k < cp->n_crit; k++) {
        if (need_est && (err = estimate(db, cp, k)))
            return err;
        if (cp->crit[k].required && cp->crit[k].est < best) {
            best = cp->crit[k].est;
            cp->driver = k;
        }
    }
    /* With a single required criterion that is the index, it drives. */
    if (n_req == 0)
        cp->driver = NO_DRIVER;
    return 0;
}

bool cohort_plan_person_cells(const cohort_plan *cp)
{
    return !needs_index_day(cp, COHORT_SELECT_PERSON_CELLS);
}

const char *cohort_plan_split_table(const cohort_plan *cp)
{
    if (needs_index_day(cp, COHORT_SELECT_PERSON_CELLS))
        return NULL;
    size_t drive = cp->driver;
    if (cp->has_index && drive == NO_DRIVER)
        drive = cp->index_crit;
    for (size_t k = 0; k < cp->n_crit; k++) {
        bool is_index = cp->has_index && k == cp->index_crit;
        if (cp->crit[k].cr->first_only && !is_index)
            return NULL;   /* its first days are a set built over the whole table */
        if (k == drive || is_index)
            continue;   /* the driver; a non-driving index is read per person */
        if (!crit_per_person(cp, k))
            return NULL;
    }
    return drive == NO_DRIVER ? "person" : cp->crit[drive].dm->table;
}

void cohort_plan_free(cohort_plan *cp)
{
    for (size_t k = 0; k < SPEC_MAX_STRATIFIERS; k++)
        free(cp->strata[k].levels);
    free(cp->crit);
    free(cp->sql.p);
    free(cp->params);
    memset(cp, 0, sizeof *cp);
}
