/* agent/scorecard.c — score an OMOP cohort with a model shipped in a validate spec.
 *
 * See scorecard.h for what is computed and docs/validate.md for the spec.
 * The cohort statement is the cohort compiler's (query_cohort.c: CTEs up to
 * `cohort(person_id, index_day)`), its trailing SELECT replaced by one that
 * yields person, index day, age at index and gender per cohort person,
 * ordered by person. Each term with a criterion then reads its concept
 * set's events (person, day, value, row id) with one parameterised
 * statement over the fixed domain map; events of persons outside the
 * cohort are dropped as they arrive, the rest are sorted and merged with
 * the cohort in one pass. Refusal messages name the field, never a value
 * or a count.
 */
#include "scorecard.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query_cohort.h"
#include "query_validate.h"
#include "sdefed/log.h"
#include "sdefed/spec.h"

size_t scorecard_filter_max = SCORECARD_FILTER_MAX;
/* Trailing SELECT of COHORT_SELECT_PERSONS, replaced by ours. */
#define PERSONS_TAIL "SELECT DISTINCT person_id FROM cohort ORDER BY person_id"

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

/* ---- pure parts ---- */

static int cmp_event(const void *a, const void *b)
{
    const scorecard_event *x = a, *y = b;
    if (x->person != y->person)
        return x->person < y->person ? -1 : 1;
    if (x->day != y->day)
        return x->day < y->day ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

void scorecard_events_sort(scorecard_event *ev, size_t m)
{
    if (m > 1)
        qsort(ev, m, sizeof *ev, cmp_event);
}

void scorecard_lookup(const int64_t *person, const int64_t *day, size_t n,
                      const scorecard_event *ev, size_t m, int64_t lookback, unsigned char *has,
                      double *value)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        has[i] = 0;
        while (j < m && ev[j].person < person[i])
            j++;
        /* ev[j..] with this person: ascending day, then id; keep the last
         * one inside [day - lookback, day] */
        for (size_t k = j; k < m && ev[k].person == person[i]; k++) {
            if (ev[k].day > day[i])
                break;
            if (ev[k].day >= day[i] - lookback) {
                has[i] = 1;
                if (value)
                    value[i] = ev[k].value;
            }
        }
    }
}

int scorecard_link(Sdefed__ScorecardLink link, double lp, double *score)
{
    if (!isfinite(lp))
        return SDF_EINVAL;
    switch (link) {
    case SDEFED__SCORECARD_LINK__SCORECARD_LOGISTIC:
        if (lp >= 0) {
            *score = 1.0 / (1.0 + exp(-lp));
        } else {
            double e = exp(lp);
            *score = e / (1.0 + e);
        }
        return 0;
    case SDEFED__SCORECARD_LINK__SCORECARD_LINEAR:
        if (!(lp >= 0.0 && lp <= 1.0))
            return SDF_EINVAL;
        *score = lp;
        return 0;
    default:
        return SDF_EINVAL;
    }
}

/* ---- the cohort ---- */

typedef struct cperson {
    int64_t person, day, age;
    unsigned char age_known;
    unsigned char sex;   /* Sdefed__Sex: 1 male, 2 female, 3 unknown */
} cperson;

typedef struct cohort_rows {
    query_ctx *q;
    cperson *p;
    size_t n, cap;
} cohort_rows;

static int cohort_row(void *ctx, const db_value *cols, int ncols)
{
    cohort_rows *C = ctx;
    if (ncols != 4)
        return SDF_EDB;
    if (cols[0].is_null || cols[1].is_null)
        return 0;   /* no index date: nothing to score at */
    if (C->n > 0 && C->p[C->n - 1].person == cols[0].i)
        return 0;   /* a duplicated person row */
    if (C->n == C->cap) {
        if (C->cap >= VALIDATE_MAX_ROWS)
            return refuse(C->q, "validate.cohort: more than %zu persons", VALIDATE_MAX_ROWS);
        size_t nc = C->cap ? C->cap * 2 : 4096;
        if (nc > VALIDATE_MAX_ROWS)
            nc = VALIDATE_MAX_ROWS;
        cperson *np = realloc(C->p, nc * sizeof *np);
        if (!np)
            return SDF_ENOMEM;
        C->p = np;
        C->cap = nc;
    }
    cperson *x = &C->p[C->n++];
    x->person = cols[0].i;
    x->day = cols[1].i;
    x->age_known = !cols[2].is_null;
    x->age = cols[2].is_null ? 0 : cols[2].i;
    int64_t g = cols[3].is_null ? 0 : cols[3].i;
    x->sex = g == 8507 ? SDEFED__SEX__SEX_MALE
             : g == 8532 ? SDEFED__SEX__SEX_FEMALE
                         : SDEFED__SEX__SEX_UNKNOWN;
    return 0;
}

/* " AND c.index_day <op> DAY(?n)" with date (YYYY-MM-DD, checked by
 * spec_validate) bound as ?n; nothing when date is absent or empty. */
static int index_date_range(db_conn *db, cohort_plan *cp, const char *date, const char *op)
{
    if (!date || !*date)
        return 0;
    char ph[32], day[1024];
    int n = cohort_plan_param_text(cp, date);
    if (n == 0)
        return cp->sql.err ? cp->sql.err : SDF_ENOMEM;
    if (db_sql_param(db, n, ph, sizeof ph) < 0 || db_sql_day(db, ph, day, sizeof day) < 0)
        return SDF_EOVERFLOW;
    cohort_sql_add(&cp->sql, " AND c.index_day%s%s", op, day);
    return cp->sql.err;
}

static int load_cohort(query_ctx *q, db_conn *db, const agent_dataset *ds,
                       const Sdefed__QuerySpec *spec, cohort_rows *C)
{
    Sdefed__QuerySpec xs;
    cohort_plan cp;
    sdefed__query_spec__init(&xs);
    xs.kind = SDEFED__QUERY_KIND__KIND_COUNT;
    xs.project = spec->project;
    xs.dataset = spec->dataset;
    xs.cohort = spec->validate->cohort;

    int err = cohort_plan_init(q, db, ds, &xs, &cp);
    if (err == 0)
        err = cohort_plan_sql(db, &cp, COHORT_SELECT_PERSONS);
    if (err == 0) {
        sqlbuf *b = &cp.sql;
        size_t tl = strlen(PERSONS_TAIL);
        char yr[600];
        if (!b->p || b->len < tl || strcmp(b->p + b->len - tl, PERSONS_TAIL) != 0) {
            err = SDF_EDB;
        } else if (db_sql_day_year(db, "c.index_day", yr, sizeof yr) < 0) {
            err = SDF_EOVERFLOW;
        } else {
            b->len -= tl;
            b->p[b->len] = '\0';
            cohort_sql_add(b, "SELECT c.person_id, c.index_day, (%s - CAST(p.year_of_birth AS "
                              "INTEGER)), p.gender_concept_id FROM cohort c LEFT JOIN person p "
                              "ON p.person_id = c.person_id WHERE 1 = 1", yr);
            /* issue 6 item 3: validate.from/to bound the prediction date,
             * which for a scorecard is the index date (a drift monitor's
             * period) */
            err = index_date_range(db, &cp, spec->validate->from, " >= ");
            if (!err)
                err = index_date_range(db, &cp, spec->validate->to, " <= ");
            cohort_sql_add(b, " ORDER BY c.person_id");
            err = err ? err : b->err;
        }
    }
    if (err == 0) {
        /* placeholders only, never values: safe to log */
        log_debug("scorecard cohort on dataset %s: %zu parameters: %s", ds->name, cp.n_params,
                  cp.sql.p);
        err = db_query(db, cp.sql.p, cp.params, cp.n_params, cohort_row, C);
    }
    cohort_plan_free(&cp);
    return err;
}

/* ---- one term's events ---- */

typedef struct event_rows {
    query_ctx *q;
    const int64_t *person;   /* the cohort, ascending */
    size_t n;
    bool values;
    scorecard_event *ev;
    size_t m, cap;
} event_rows;

static bool in_cohort(const int64_t *person, size_t n, int64_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (person[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && person[lo] == x;
}

static int event_row(void *ctx, const db_value *cols, int ncols)
{
    event_rows *E = ctx;
    if (ncols != 4)
        return SDF_EDB;
    if (cols[0].is_null || cols[1].is_null || !in_cohort(E->person, E->n, cols[0].i))
        return 0;
    double v = 0.0;
    if (E->values) {
        if (cols[2].is_null)
            return 0;
        int e = db_value_double(&cols[2], &v);
        if (e)
            return e == SDF_ENOMEM ? e : 0;   /* not a number: as if absent */
    }
    if (E->m == E->cap) {
        if (E->cap >= VALIDATE_MAX_ROWS)
            return refuse(E->q, "validate.scorecard: more than %zu events for one term",
                          VALIDATE_MAX_ROWS);
        size_t nc = E->cap ? E->cap * 2 : 4096;
        if (nc > VALIDATE_MAX_ROWS)
            nc = VALIDATE_MAX_ROWS;
        scorecard_event *ne = realloc(E->ev, nc * sizeof *ne);
        if (!ne)
            return SDF_ENOMEM;
        E->ev = ne;
        E->cap = nc;
    }
    scorecard_event *e = &E->ev[E->m++];
    e->person = cols[0].i;
    e->day = cols[1].i;
    e->value = v;
    e->id = cols[3].is_null ? 0 : cols[3].i;
    return 0;
}

typedef struct term_domain {
    const char *table, *concept_col, *date_col, *id_col;
} term_domain;

static int term_domain_of(Sdefed__Domain d, term_domain *out)
{
    if (d == SDEFED__DOMAIN__DOMAIN_DEATH) {
        *out = (term_domain){ "death", "cause_concept_id", "death_date", NULL };
        return 0;
    }
    for (size_t k = 0; k < query_n_omop_domains; k++)
        if (query_omop_domains[k].domain == d) {
            out->table = query_omop_domains[k].table;
            out->concept_col = query_omop_domains[k].concept_col;
            out->date_col = query_omop_domains[k].date_col;
            out->id_col = d == SDEFED__DOMAIN__DOMAIN_MEASUREMENT   ? "measurement_id"
                          : d == SDEFED__DOMAIN__DOMAIN_OBSERVATION ? "observation_id"
                                                                    : NULL;
            return 0;
        }
    return SDF_EINVAL;
}

/* Refuse concept ids missing from the vocabulary (the cohort compiler's
 * check, naming the term). */
static int check_ids(query_ctx *q, db_conn *db, const int64_t *ids, size_t n, size_t term)
{
    char where[48];
    snprintf(where, sizeof where, "validate.scorecard.terms[%zu]", term);
    return cohort_check_concepts(q, db, ids, n, where);
}

static int need_table(query_ctx *q, db_conn *db, const agent_dataset *ds, const char *table,
                      size_t term)
{
    bool ex = false;
    int err = db_table_exists(db, table, &ex);
    if (err)
        return err;
    if (!ex)
        return refuse(q, "validate.scorecard.terms[%zu]: dataset '%s' has no %s table", term,
                      ds->name, table);
    return 0;
}

/* A concept-set membership test of column `col`: list parameter pi,
 * optionally with every descendant. */
static void concept_in(db_conn *db, sqlbuf *b, const char *col, bool not, int pi, bool desc)
{
    char l[200];
    if (db_sql_int_list(db, pi, l, sizeof l) < 0) {
        b->err = SDF_EOVERFLOW;
        return;
    }
    cohort_sql_add(b, " AND f.%s %sIN (%s", col, not ? "NOT " : "", l);
    if (desc)
        cohort_sql_add(b, " UNION SELECT descendant_concept_id FROM concept_ancestor "
                          "WHERE ancestor_concept_id IN (%s)", l);
    cohort_sql_add(b, ")");
}

/* Read the events of term t's criterion for the cohort persons. */
static int load_events(query_ctx *q, db_conn *db, const agent_dataset *ds,
                       const Sdefed__ScorecardTerm *t, size_t term, event_rows *E)
{
    const Sdefed__Criterion *c = t->criterion;
    term_domain dm;
    if (!c || term_domain_of(c->domain, &dm))
        return refuse(q, "validate.scorecard.terms[%zu]: domain not supported", term);
    int err;
    if ((err = need_table(q, db, ds, dm.table, term)) ||
        (err = check_ids(q, db, c->concepts, c->n_concepts, term)) ||
        (err = check_ids(q, db, c->exclude, c->n_exclude, term)) ||
        (err = check_ids(q, db, c->units, c->n_units, term)))
        return err;
    if ((c->descendants || c->exclude_descendants) &&
        (err = need_table(q, db, ds, "concept_ancestor", term)))
        return err;

    db_param params[6];
    size_t np = 0;
    char fdate[96], day[1024], ph[64];
    snprintf(fdate, sizeof fdate, "f.%s", dm.date_col);
    if (db_sql_day(db, fdate, day, sizeof day) < 0)
        return SDF_EOVERFLOW;
    sqlbuf b = { 0 };
    E->values = t->covariate == SDEFED__SCORECARD_COVARIATE__SCORECARD_MEASUREMENT;
    bool vals = E->values || c->value;
    if (E->values && !dm.id_col)
        return refuse(q, "validate.scorecard.terms[%zu].measurement: domain has no values",
                      term);
    cohort_sql_add(&b, "SELECT f.person_id, %s, %s, %s%s FROM %s f WHERE 1 = 1", day,
                   E->values ? "f.value_as_number" : "NULL", dm.id_col ? "f." : "",
                   dm.id_col ? dm.id_col : "0", dm.table);
    if (c->n_concepts) {
        params[np++] = (db_param){ .type = DB_PARAM_INT64_LIST, .list = c->concepts,
                                   .n = c->n_concepts };
        concept_in(db, &b, dm.concept_col, false, (int)np, c->descendants);
    }
    if (c->n_exclude) {
        params[np++] = (db_param){ .type = DB_PARAM_INT64_LIST, .list = c->exclude,
                                   .n = c->n_exclude };
        concept_in(db, &b, dm.concept_col, true, (int)np, c->exclude_descendants);
    }
    if (c->n_units) {
        char l[200];
        params[np++] = (db_param){ .type = DB_PARAM_INT64_LIST, .list = c->units,
                                   .n = c->n_units };
        if (db_sql_int_list(db, (int)np, l, sizeof l) < 0)
            b.err = SDF_EOVERFLOW;
        cohort_sql_add(&b, " AND f.unit_concept_id IN (%s)", l);
    }
    if (vals)
        cohort_sql_add(&b, " AND f.value_as_number IS NOT NULL");
    if (c->value && c->value->has_min) {
        params[np++] = (db_param){ .type = DB_PARAM_DOUBLE, .d = c->value->min };
        if (db_sql_param(db, (int)np, ph, sizeof ph) < 0)
            b.err = SDF_EOVERFLOW;
        cohort_sql_add(&b, " AND f.value_as_number >= %s", ph);
    }
    if (c->value && c->value->has_max) {
        params[np++] = (db_param){ .type = DB_PARAM_DOUBLE, .d = c->value->max };
        if (db_sql_param(db, (int)np, ph, sizeof ph) < 0)
            b.err = SDF_EOVERFLOW;
        cohort_sql_add(&b, " AND f.value_as_number <= %s", ph);
    }
    if (E->n > 0 && E->n <= scorecard_filter_max) {
        /* only the cohort's rows leave the engine (ids travel as a bound list) */
        char l[200];
        params[np++] = (db_param){ .type = DB_PARAM_INT64_LIST, .list = E->person, .n = E->n };
        if (db_sql_int_list(db, (int)np, l, sizeof l) < 0)
            b.err = SDF_EOVERFLOW;
        cohort_sql_add(&b, " AND f.person_id IN (%s)", l);
    }
    err = b.err;
    if (err == 0) {
        log_debug("scorecard term %zu on dataset %s: %zu parameters: %s", term, ds->name, np,
                  b.p);
        err = db_query(db, b.p, params, np, event_row, E);
    }
    free(b.p);
    if (err == 0)
        scorecard_events_sort(E->ev, E->m);
    return err;
}

/* ---- scoring ---- */

int scorecard_score(query_ctx *q, const agent_dataset *ds, const Sdefed__QuerySpec *spec,
                    scorecard_row **rows, size_t *n_rows)
{
    *rows = NULL;
    *n_rows = 0;
    const Sdefed__ValidateSpec *vs = spec->validate;
    const Sdefed__ValidateScorecard *sc = vs ? vs->scorecard : NULL;
    if (!sc || !vs->cohort)
        return refuse(q, "validate.scorecard: needs a scorecard and a cohort");
    if (strcmp(ds->type, "omop") != 0)
        return refuse(q, "dataset '%s' is not an OMOP dataset (a scorecard scores an OMOP "
                         "cohort)", ds->name);

    db_conn *db = NULL;
    cohort_rows C = { .q = q };
    int64_t *pid = NULL, *pday = NULL;
    double *lp = NULL, *val = NULL;
    unsigned char *keep = NULL, *has = NULL;
    scorecard_row *out = NULL;
    event_rows E = { .q = q };
    int err = db_open(ds, q->deadline_unix_ms, q->cancel, &db);
    if (err) {
        err = err == SDF_ECONFIG ? SDF_EDB : err;
        goto done;
    }
    if ((err = load_cohort(q, db, ds, spec, &C)))
        goto done;
    size_t n = C.n;
    pid = malloc((n ? n : 1) * sizeof *pid);
    pday = malloc((n ? n : 1) * sizeof *pday);
    lp = malloc((n ? n : 1) * sizeof *lp);
    val = malloc((n ? n : 1) * sizeof *val);
    keep = malloc(n ? n : 1);
    has = malloc(n ? n : 1);
    if (!pid || !pday || !lp || !val || !keep || !has) {
        err = SDF_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        pid[i] = C.p[i].person;
        pday[i] = C.p[i].day;
        lp[i] = sc->intercept;
        keep[i] = 1;
    }
    /* Pass 0: the terms that can leave persons out (age; a measurement
     * without `missing`), so that pass 1 sees the final set of scored
     * persons. Pass 1: the others, each of which splits the scored persons
     * into those with the covariate and those without; neither side may
     * be 1..min_cell-1 persons, or the term would single out a handful of
     * persons whose outcomes the released metrics could then be
     * differenced for (docs/validate.md). */
    int64_t mc = q->policy->min_cell > 0 ? q->policy->min_cell : 1;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            /* with fewer, no group could have min_cell events and non-events */
            int64_t kept = 0;
            for (size_t i = 0; i < n; i++)
                kept += keep[i];
            if (kept < 2 * mc) {
                err = refuse(q, "validate: fewer than min_cell events or non-events among the "
                                "scored persons of the cohort");
                goto done;
            }
        }
        for (size_t k = 0; k < sc->n_terms; k++) {
            const Sdefed__ScorecardTerm *t = sc->terms[k];
            bool excludes = t->covariate == SDEFED__SCORECARD_COVARIATE__SCORECARD_AGE ||
                            (t->covariate == SDEFED__SCORECARD_COVARIATE__SCORECARD_MEASUREMENT &&
                             !t->has_missing);
            if (excludes != (pass == 0))
                continue;
            switch (t->covariate) {
            case SDEFED__SCORECARD_COVARIATE__SCORECARD_AGE:
                for (size_t i = 0; i < n; i++) {
                    keep[i] &= C.p[i].age_known;
                    lp[i] += t->coef * (double)C.p[i].age;
                }
                continue;
            case SDEFED__SCORECARD_COVARIATE__SCORECARD_SEX:
                for (size_t i = 0; i < n; i++)
                    has[i] = C.p[i].sex == (unsigned char)t->sex;
                break;
            case SDEFED__SCORECARD_COVARIATE__SCORECARD_INDICATOR:
            case SDEFED__SCORECARD_COVARIATE__SCORECARD_MEASUREMENT:
                E.person = pid;
                E.n = n;
                E.m = 0;
                if ((err = load_events(q, db, ds, t, k, &E)))
                    goto done;
                scorecard_lookup(pid, pday, n, E.ev, E.m, t->lookback_days, has, val);
                break;
            default:
                err = refuse(q, "validate.scorecard.terms[%zu]: unknown covariate", k);
                goto done;
            }
            int64_t with = 0, without = 0;
            for (size_t i = 0; i < n; i++) {
                if (t->covariate != SDEFED__SCORECARD_COVARIATE__SCORECARD_MEASUREMENT)
                    lp[i] += has[i] ? t->coef : 0.0;
                else if (has[i])
                    lp[i] += t->coef * val[i];
                else if (t->has_missing)
                    lp[i] += t->coef * t->missing;
                else
                    keep[i] = 0;
                if (keep[i]) {
                    with += has[i];
                    without += !has[i];
                }
            }
            if (pass == 1 && ((with > 0 && with < mc) || (without > 0 && without < mc))) {
                err = refuse(q, "validate.scorecard.terms[%zu]: fewer than min_cell scored "
                                "persons have (or lack) this covariate; a term may not single "
                                "out a handful of persons", k);
                goto done;
            }
        }
    }
    db_close(db);
    db = NULL;

    out = malloc((n ? n : 1) * sizeof *out);
    if (!out) {
        err = SDF_ENOMEM;
        goto done;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        double s;
        if (scorecard_link(sc->link, lp[i], &s) != 0) {
            err = !isfinite(lp[i])
                      ? refuse(q, "validate.scorecard: a linear predictor is not finite "
                                  "(covariate values too large for the coefficients)")
                      : refuse(q, "validate.scorecard: with link linear, some scores fall "
                                  "outside [0, 1] (use link logistic or rescale the model)");
            goto done;
        }
        out[m].person = pid[i];
        out[m].day = pday[i];
        out[m].score = s;
        m++;
    }
    *rows = out;
    *n_rows = m;
    out = NULL;
done:
    db_close(db);
    free(C.p);
    free(E.ev);
    free(pid);
    free(pday);
    free(lp);
    free(val);
    free(keep);
    free(has);
    free(out);
    return err;
}
