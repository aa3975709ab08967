/* agent/query_summary.c — compile and run a `summary` query over an OMOP dataset.
 *
 * The cohort compiler (query_cohort.c) writes one statement that yields,
 * for every cohort person with a value of the summary variable (age at
 * index, or the latest/first value_as_number of a measurement concept set,
 * optionally within a window of the index), that person's stratum codes and
 * value. The values stay inside the agent: they are grouped per stratum
 * here and only what disc_stats() (agent/disclosure/stats.c) releases —
 * n through disc_count, mean, sd and histogram quantiles under the
 * small-n and dominance rules, never min or max — becomes a Summary. Every
 * stratum of the full grid gets a Summary, so a missing stratum never
 * reveals anything. With `summary.clamp` every value is clamped to it
 * first; under differential privacy disc_stats_noised() releases a noised
 * n, mean and sd instead (issue 4).
 */
#include "query_summary.h"

#include <stdarg.h>
#include <stdio.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "disclosure/stats.h"
#include "query_cohort.h"
#include "sdefed/log.h"

/* The range age is clamped to under differential privacy, when the spec
 * gives none (whole years at index). */
#define SUMMARY_AGE_MIN 0.0
#define SUMMARY_AGE_MAX 120.0

/* Most values one query may hold in memory (8 bytes each). */
#define SUMMARY_MAX_VALUES ((size_t)20000000)

typedef struct vec {
    double *v;
    size_t n, cap;
} vec;

typedef struct collect {
    const cohort_plan *cp;
    vec *cells;
    size_t total;
} collect;

static int value_row(void *ctx, const db_value *cols, int ncols)
{
    collect *c = ctx;
    size_t ns = c->cp->n_strata;
    if ((size_t)ncols != ns + 1 || cols[ns].is_null)
        return SDF_EDB;
    double x;
    int e = db_value_double(&cols[ns], &x);
    if (e)
        return e == SDF_ENOMEM ? e : 0;   /* not a number: not a value */
    size_t idx = 0;
    for (size_t k = 0; k < ns; k++)
        idx = idx * c->cp->strata[k].n_levels + cohort_level_index(&c->cp->strata[k], &cols[k]);
    if (idx >= c->cp->n_cells || c->total >= SUMMARY_MAX_VALUES)
        return SDF_EOVERFLOW;
    vec *v = &c->cells[idx];
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        double *np = realloc(v->v, nc * sizeof *np);
        if (!np)
            return SDF_ENOMEM;
        v->v = np;
        v->cap = nc;
    }
    v->v[v->n++] = x;
    c->total++;
    return 0;
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

static Sdefed__CellStatus status_of(disc_status s)
{
    switch (s) {
    case DISC_EXACT: return SDEFED__CELL_STATUS__CELL_EXACT;
    case DISC_ROUNDED: return SDEFED__CELL_STATUS__CELL_ROUNDED;
    case DISC_NOISED: return SDEFED__CELL_STATUS__CELL_NOISED;
    default: return SDEFED__CELL_STATUS__CELL_SUPPRESSED;
    }
}

/* One Summary for grid index idx from controlled statistics ds. */
static Sdefed__Summary *summary_make(const cohort_plan *cp, size_t idx, const disc_summary *ds)
{
    Sdefed__Summary *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    sdefed__summary__init(s);
    s->strata = calloc(cp->n_strata ? cp->n_strata : 1, sizeof *s->strata);
    s->quantiles = calloc(DISC_N_QUANTILES, sizeof *s->quantiles);
    if (!s->strata || !s->quantiles)
        goto fail;
    size_t rest = idx;
    for (size_t k = cp->n_strata; k-- > 0;) {
        const cohort_strat *st = &cp->strata[k];
        size_t li = rest % st->n_levels;
        rest /= st->n_levels;
        Sdefed__Stratum *x = malloc(sizeof *x);
        if (!x)
            goto fail;
        sdefed__stratum__init(x);
        s->strata[k] = x;
        x->name = strdup(st->name);
        x->value = strdup(st->levels[li].label);
        if (!x->name || !x->value)
            goto fail;
    }
    /* strata were filled from the end: all slots 0..n_strata-1 are set now */
    s->n_strata = cp->n_strata;
    s->n = ds->n.status == DISC_SUPPRESSED ? 0 : ds->n.value;
    s->n_status = status_of(ds->n.status);
    s->mean = ds->mean.status == DISC_SUPPRESSED ? 0.0 : ds->mean.value;
    s->mean_status = status_of(ds->mean.status);
    s->sd = ds->sd.status == DISC_SUPPRESSED ? 0.0 : ds->sd.value;
    s->sd_status = status_of(ds->sd.status);
    for (size_t i = 0; i < DISC_N_QUANTILES; i++) {
        Sdefed__Quantile *qq = malloc(sizeof *qq);
        if (!qq)
            goto fail;
        sdefed__quantile__init(qq);
        s->quantiles[s->n_quantiles++] = qq;
        qq->p = disc_quantile_p[i];
        qq->value = ds->q[i].status == DISC_SUPPRESSED ? 0.0 : ds->q[i].value;
        qq->status = status_of(ds->q[i].status);
    }
    return s;
fail:
    /* strata were filled from the back: free whatever is set */
    if (s->strata)
        for (size_t k = 0; k < cp->n_strata; k++)
            if (s->strata[k])
                sdefed__stratum__free_unpacked(s->strata[k], NULL);
    free(s->strata);
    for (size_t i = 0; i < s->n_quantiles; i++)
        free(s->quantiles[i]);
    free(s->quantiles);
    free(s);
    return NULL;
}

/* The persons with a value, for the differencing guard (issue 4). */
static int person_row(void *ctx, const db_value *cols, int ncols)
{
    query_ctx *q = ctx;
    if (ncols < 1 || cols[0].is_null)
        return SDF_EDB;
    if (q->n_persons >= QUERY_MAX_PERSONS)
        return SDF_EOVERFLOW;
    size_t n = q->n_persons;
    if (n == 0 || ((n & (n - 1)) == 0 && n >= 1024)) {
        size_t nc = n == 0 ? 1024 : 2 * n;
        int64_t *np = realloc(q->persons, nc * sizeof *np);
        if (!np)
            return SDF_ENOMEM;
        q->persons = np;
    }
    q->persons[q->n_persons++] = cols[0].i;
    return 0;
}

int query_summary_run(query_ctx *q, const agent_dataset *ds, const Sdefed__QuerySpec *spec,
                      Sdefed__QueryResult *res)
{
    db_conn *db = NULL;
    cohort_plan cp;
    collect c = { 0 };
    Sdefed__Summary **out = NULL;
    size_t n_out = 0;

    memset(&cp, 0, sizeof cp);
    if (strcmp(ds->type, "omop") != 0)
        return refuse(q, "dataset '%s' is not an OMOP dataset", ds->name);
    if (!spec->summary)
        return refuse(q, "summary: required for kind summary");
    int err = db_open(ds, q->deadline_unix_ms, q->cancel, &db);
    if (err)
        return err == SDF_ECONFIG ? SDF_EDB : err;
    if ((err = cohort_plan_init(q, db, ds, spec, &cp)) ||
        (err = cohort_plan_sql(db, &cp, COHORT_SELECT_VALUES)))
        goto out;
    c.cp = &cp;
    c.cells = calloc(cp.n_cells, sizeof *c.cells);
    if (!c.cells) {
        err = SDF_ENOMEM;
        goto out;
    }
    log_debug("summary query on dataset %s: %zu parameters, %zu stratifiers: %s", ds->name,
              cp.n_params, cp.n_strata, cp.sql.p);
    err = db_query(db, cp.sql.p, cp.params, cp.n_params, value_row, &c);
    if (err == SDF_EOVERFLOW) {
        err = refuse(q, "summary: more than %zu values", SUMMARY_MAX_VALUES);
        goto out;
    }
    if (err)
        goto out;

    if (q->want_persons) {
        /* the cohort's persons, for the differencing guard (issue 4): a
         * summary of two cohorts one person apart would reveal that
         * person's value as easily as two counts reveal their presence */
        free(q->persons);
        q->persons = NULL;
        q->n_persons = 0;
        if ((err = cohort_plan_sql(db, &cp, COHORT_SELECT_PERSONS)) ||
            (err = db_query(db, cp.sql.p, cp.params, cp.n_params, person_row, q)))
            goto out;
    }

    out = calloc(cp.n_cells, sizeof *out);
    if (!out) {
        err = SDF_ENOMEM;
        goto out;
    }
    /* clamp.min/max, or age's natural range under DP (issue 4) */
    const Sdefed__ValueRange *cr = spec->summary->clamp;
    double lo = cr ? cr->min : SUMMARY_AGE_MIN, hi = cr ? cr->max : SUMMARY_AGE_MAX;
    for (n_out = 0; n_out < cp.n_cells; n_out++) {
        disc_summary dsum;
        vec *v = &c.cells[n_out];
        if (cr)
            for (size_t i = 0; i < v->n; i++)
                v->v[i] = v->v[i] < lo ? lo : v->v[i] > hi ? hi : v->v[i];
        if (q->noise_key)
            err = disc_stats_noised(q->policy, v->v, v->n, lo, hi, q->noise_key,
                                    (uint64_t)n_out * 4u, &dsum, &q->rules);
        else
            err = disc_stats(q->policy, v->v, v->n, &dsum, &q->rules);
        if (err)
            goto out;
        out[n_out] = summary_make(&cp, n_out, &dsum);
        if (!out[n_out]) {
            err = SDF_ENOMEM;
            goto out;
        }
    }
    res->summaries = out;
    res->n_summaries = n_out;
    out = NULL;
    err = 0;
out:
    if (out) {
        for (size_t k = 0; k < n_out; k++)
            sdefed__summary__free_unpacked(out[k], NULL);
        free(out);
    }
    if (c.cells)
        for (size_t k = 0; k < cp.n_cells; k++)
            free(c.cells[k].v);
    free(c.cells);
    cohort_plan_free(&cp);
    db_close(db);
    return err;
}
