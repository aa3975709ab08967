/* agent/query_surveil.c — compile and run a `surveil` query (issue 6).
 *
 * The exposure criterion becomes a one-criterion cohort for the cohort
 * compiler (query_cohort.c): its `cohort(person_id, index_day)` CTE holds
 * each person's first exposure, its `ev` CTE every exposure event (used
 * with "every": true). After that CTE list this file appends the outcome's
 * concept set and one SELECT that yields, per index event inside from..to:
 *
 *   person_id, index_day, year and month of the index,
 *   end of the person's latest observation period starting on or before
 *   the index, the death day, the first outcome day on or after
 *   index + window start, gender_concept_id, year_of_birth
 *
 * ordered by person and index day. Those rows stay inside the agent. Per
 * index event the at-risk interval is [index + start, min(index + end,
 * observation end, death, first outcome, next index + start - 1)]; the
 * person had the outcome when the first outcome falls inside it. Per
 * period of the index date (and stratum of `by`) we count distinct new
 * exposed persons, distinct persons with the outcome and the at-risk days.
 *
 * Disclosure: both counts go through disc_count. Person-time is a sum of
 * per-person contributions: it is withheld when the persons count of its
 * cell is suppressed or when the contributions are dominated
 * (disc_dominated, the policy's n/k rule), and otherwise released rounded
 * to the policy's rounding base (like a count, so it cannot be used to
 * difference out one person's days). Rates and rate ratios are computed
 * only from released numbers and withheld when any input was. Both arms'
 * persons go to the differencing guard (the comparator's after a
 * DISC_COHORT_SEPARATOR), which checks each against the kept cohorts and
 * the two against each other.
 */
#include "query_surveil.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disclosure/disclosure.h"
#include "disclosure/guard.h"
#include "disclosure/stats.h"
#include "query_cohort.h"
#include "sdefed/log.h"
#include "sdefed/surveil_stats.h"

/* Most index events one query may read (per arm). */
#define SURVEIL_MAX_ROWS ((size_t)20000000)
/* Trailing SELECT of COHORT_SELECT_PERSONS, replaced by ours. */
#define PERSONS_TAIL "SELECT DISTINCT person_id FROM cohort ORDER BY person_id"
#define SURVEIL_EXTRA_PARAMS 16

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

/* ---- periods ---- */

typedef struct periods {
    Sdefed__SurveilPeriod kind;
    int64_t from_y, from_m, to_y, to_m;   /* month 1..12 */
    size_t n;
} periods;

static void periods_init(periods *pd, const Sdefed__SurveilSpec *sv)
{
    pd->kind = sv->period;
    pd->from_y = atoi(sv->from);
    pd->from_m = atoi(sv->from + 5);
    pd->to_y = atoi(sv->to);
    pd->to_m = atoi(sv->to + 5);
    int64_t a, b;
    switch (pd->kind) {
    case SDEFED__SURVEIL_PERIOD__PERIOD_MONTH:
        a = pd->from_y * 12 + pd->from_m - 1;
        b = pd->to_y * 12 + pd->to_m - 1;
        break;
    case SDEFED__SURVEIL_PERIOD__PERIOD_QUARTER:
        a = pd->from_y * 4 + (pd->from_m - 1) / 3;
        b = pd->to_y * 4 + (pd->to_m - 1) / 3;
        break;
    case SDEFED__SURVEIL_PERIOD__PERIOD_YEAR:
        a = pd->from_y;
        b = pd->to_y;
        break;
    default:
        a = b = 0;
        break;
    }
    pd->n = (size_t)(b - a + 1);
}

/* Period index of an index date in year y, month m (1..12); (size_t)-1
 * outside the range. */
static size_t period_of(const periods *pd, int64_t y, int64_t m)
{
    int64_t v, base;
    switch (pd->kind) {
    case SDEFED__SURVEIL_PERIOD__PERIOD_MONTH:
        v = y * 12 + m - 1;
        base = pd->from_y * 12 + pd->from_m - 1;
        break;
    case SDEFED__SURVEIL_PERIOD__PERIOD_QUARTER:
        v = y * 4 + (m - 1) / 3;
        base = pd->from_y * 4 + (pd->from_m - 1) / 3;
        break;
    case SDEFED__SURVEIL_PERIOD__PERIOD_YEAR:
        v = y;
        base = pd->from_y;
        break;
    default:
        return 0;
    }
    if (v < base || (size_t)(v - base) >= pd->n)
        return (size_t)-1;
    return (size_t)(v - base);
}

static void period_label(const periods *pd, size_t i, char *buf, size_t len)
{
    int64_t v;
    switch (pd->kind) {
    case SDEFED__SURVEIL_PERIOD__PERIOD_MONTH:
        v = pd->from_y * 12 + pd->from_m - 1 + (int64_t)i;
        snprintf(buf, len, "%04" PRId64 "-%02" PRId64, v / 12, v % 12 + 1);
        break;
    case SDEFED__SURVEIL_PERIOD__PERIOD_QUARTER:
        v = pd->from_y * 4 + (pd->from_m - 1) / 3 + (int64_t)i;
        snprintf(buf, len, "%04" PRId64 "-Q%" PRId64, v / 4, v % 4 + 1);
        break;
    case SDEFED__SURVEIL_PERIOD__PERIOD_YEAR:
        snprintf(buf, len, "%04" PRId64, pd->from_y + (int64_t)i);
        break;
    default:
        snprintf(buf, len, "all");
        break;
    }
}

/* ---- accumulation ---- */

typedef struct cell {
    int64_t persons, events;
    double *days;          /* per-person at-risk days (dominance) */
    size_t n_days, cap_days;
    double sum_days;
} cell;

typedef struct touch {
    size_t cell;
    double days;
    bool event;
} touch;

typedef struct acc {
    const cohort_plan *cp;
    const periods *pd;
    int32_t ws, we;
    bool every;
    size_t n_strata_cells;
    cell *cells;           /* pd->n * n_strata_cells */
    size_t n_cells;
    size_t rows;
    /* the person being read */
    bool have_pending;
    int64_t person;
    int64_t p_index, p_y, p_m, p_obs, p_death, p_out, p_g, p_yob;
    bool p_obs_null, p_death_null, p_out_null, p_g_null, p_yob_null;
    touch *touched;
    size_t n_touched, cap_touched;
    /* the arm's distinct persons, for the differencing guard (issue 4):
     * two surveil queries whose exposed (or comparator) populations
     * differ by one person must not both be answered */
    query_ctx *collect;
} acc;

static int person_add(query_ctx *q, int64_t id)
{
    size_t n = q->n_persons;
    if (n > 0 && q->persons[n - 1] == id)
        return 0;
    if (n >= QUERY_MAX_PERSONS)
        return SDF_EOVERFLOW;
    if (n == 0 || ((n & (n - 1)) == 0 && n >= 1024)) {
        size_t nc = n == 0 ? 1024 : 2 * n;
        int64_t *np = realloc(q->persons, nc * sizeof *np);
        if (!np)
            return SDF_ENOMEM;
        q->persons = np;
    }
    q->persons[q->n_persons++] = id;
    return 0;
}

static int days_push(cell *c, double d)
{
    if (c->n_days == c->cap_days) {
        size_t nc = c->cap_days ? c->cap_days * 2 : 16;
        double *np = realloc(c->days, nc * sizeof *np);
        if (!np)
            return SDF_ENOMEM;
        c->days = np;
        c->cap_days = nc;
    }
    c->days[c->n_days++] = d;
    c->sum_days += d;
    return 0;
}

/* The person's contributions go to their cells (one person counted once
 * per cell). */
static int flush_person(acc *a)
{
    for (size_t k = 0; k < a->n_touched; k++) {
        cell *c = &a->cells[a->touched[k].cell];
        c->persons++;
        c->events += a->touched[k].event;
        int err = days_push(c, a->touched[k].days);
        if (err)
            return err;
    }
    a->n_touched = 0;
    return 0;
}

static size_t strata_index(const acc *a, int64_t g, bool g_null, int64_t yob, bool yob_null,
                           int64_t y)
{
    const cohort_plan *cp = a->cp;
    size_t idx = 0;
    for (size_t k = 0; k < cp->n_strata; k++) {
        const cohort_strat *s = &cp->strata[k];
        db_value v = { .is_null = false };
        if (s->kind == SDEFED__STRATIFIER__STRAT_SEX) {
            v.i = g_null ? 0 : g == 8507 ? 1 : g == 8532 ? 2 : 0;
        } else {   /* age band (spec_validate allows only these two) */
            int64_t w = cp->spec->age_band_width ? cp->spec->age_band_width : 10;
            int64_t top = (90 / w) * w, age = y - yob;
            v.i = yob_null || age < 0 ? -1 : age >= top ? top / w : age / w;
        }
        idx = idx * s->n_levels + cohort_level_index(s, &v);
    }
    return idx;
}

/* Close the pending index event; next_index is the person's next index
 * day (every mode) or INT64_MIN. */
static int close_pending(acc *a, int64_t next_index)
{
    int64_t start = a->p_index + a->ws, end = a->p_index + a->we;
    if (!a->p_obs_null && a->p_obs < end)
        end = a->p_obs;
    if (!a->p_death_null && a->p_death < end)
        end = a->p_death;
    if (next_index != INT64_MIN && next_index + a->ws - 1 < end)
        end = next_index + a->ws - 1;
    bool event = false;
    if (!a->p_out_null && a->p_out >= start && a->p_out <= end) {
        event = true;
        end = a->p_out;
    }
    double days = end >= start ? (double)(end - start + 1) : 0.0;
    size_t per = period_of(a->pd, a->p_y, a->p_m);
    if (per == (size_t)-1)
        return 0;   /* outside the periods (the SQL already filters from..to) */
    size_t ci = per * a->n_strata_cells +
                strata_index(a, a->p_g, a->p_g_null, a->p_yob, a->p_yob_null, a->p_y);
    if (ci >= a->n_cells)
        return SDF_EOVERFLOW;
    for (size_t k = 0; k < a->n_touched; k++)
        if (a->touched[k].cell == ci) {
            a->touched[k].days += days;
            a->touched[k].event = a->touched[k].event || event;
            return 0;
        }
    if (a->n_touched == a->cap_touched) {
        size_t nc = a->cap_touched ? a->cap_touched * 2 : 8;
        touch *np = realloc(a->touched, nc * sizeof *np);
        if (!np)
            return SDF_ENOMEM;
        a->touched = np;
        a->cap_touched = nc;
    }
    a->touched[a->n_touched++] = (touch){ ci, days, event };
    return 0;
}

static int surveil_row(void *ctx, const db_value *cols, int ncols)
{
    acc *a = ctx;
    if (ncols != 9 || cols[0].is_null || cols[1].is_null || cols[2].is_null || cols[3].is_null)
        return ncols == 9 ? 0 : SDF_EDB;   /* an index without a usable date: skipped */
    if (++a->rows > SURVEIL_MAX_ROWS)
        return SDF_EOVERFLOW;
    int err;
    if (a->collect && (err = person_add(a->collect, cols[0].i)))
        return err;
    if (a->have_pending) {
        bool same = cols[0].i == a->person;
        if ((err = close_pending(a, same && a->every ? cols[1].i : INT64_MIN)))
            return err;
        if (!same && (err = flush_person(a)))
            return err;
    }
    a->have_pending = true;
    a->person = cols[0].i;
    a->p_index = cols[1].i;
    a->p_y = cols[2].i;
    a->p_m = cols[3].i;
    a->p_obs = cols[4].i;
    a->p_obs_null = cols[4].is_null;
    a->p_death = cols[5].i;
    a->p_death_null = cols[5].is_null;
    a->p_out = cols[6].i;
    a->p_out_null = cols[6].is_null;
    a->p_g = cols[7].i;
    a->p_g_null = cols[7].is_null;
    a->p_yob = cols[8].i;
    a->p_yob_null = cols[8].is_null;
    return 0;
}

static int acc_finish(acc *a)
{
    int err = 0;
    if (a->have_pending && !(err = close_pending(a, INT64_MIN)))
        err = flush_person(a);
    a->have_pending = false;
    return err;
}

static void acc_free(acc *a)
{
    if (a->cells)
        for (size_t k = 0; k < a->n_cells; k++)
            free(a->cells[k].days);
    free(a->cells);
    free(a->touched);
    a->cells = NULL;
    a->touched = NULL;
}

/* ---- SQL ---- */

typedef struct extra {
    db_param *params;      /* cp->params then ours */
    size_t n, cap;
} extra;

static int extra_add(extra *x, db_param p)
{
    if (x->n == x->cap)
        return SDF_EOVERFLOW;
    x->params[x->n++] = p;
    return (int)x->n;
}

static const char *ph(db_conn *db, int n, char *buf, size_t len)
{
    if (n < 0 || db_sql_param(db, n, buf, len) < 0)
        snprintf(buf, len, "NULL");
    return buf;
}

static const char *lst(db_conn *db, int n, char *buf, size_t len)
{
    if (n < 0 || db_sql_int_list(db, n, buf, len) < 0)
        snprintf(buf, len, "SELECT NULL");
    return buf;
}

static const char *day(db_conn *db, const char *e, char *buf, size_t len)
{
    if (db_sql_day(db, e, buf, len) < 0)
        snprintf(buf, len, "NULL");
    return buf;
}

/* The outcome's table/columns from the fixed domain map. */
static int outcome_domain(const Sdefed__Criterion *o, const char **table, const char **col,
                          const char **date)
{
    if (o->domain == SDEFED__DOMAIN__DOMAIN_DEATH) {
        *table = "death";
        *col = "cause_concept_id";
        *date = "death_date";
        return 0;
    }
    for (size_t k = 0; k < query_n_omop_domains; k++)
        if (query_omop_domains[k].domain == o->domain) {
            *table = query_omop_domains[k].table;
            *col = query_omop_domains[k].concept_col;
            *date = query_omop_domains[k].date_col;
            return 0;
        }
    return SDF_EINVAL;
}

/* Replace the cohort statement's trailing SELECT with the surveil one. */
static int surveil_sql(db_conn *db, cohort_plan *cp, const Sdefed__SurveilSpec *sv,
                       bool has_obs, bool has_death, extra *x)
{
    sqlbuf *b = &cp->sql;
    size_t tl = strlen(PERSONS_TAIL);
    if (b->err)
        return b->err;
    if (!b->p || b->len < tl || strcmp(b->p + b->len - tl, PERSONS_TAIL) != 0)
        return SDF_EINVAL;
    b->len -= tl;
    while (b->len > 0 && b->p[b->len - 1] == '\n')
        b->len--;
    b->p[b->len] = '\0';

    x->cap = cp->n_params + SURVEIL_EXTRA_PARAMS;
    x->params = calloc(x->cap, sizeof *x->params);
    if (!x->params)
        return SDF_ENOMEM;
    memcpy(x->params, cp->params, cp->n_params * sizeof *x->params);
    x->n = cp->n_params;

    const Sdefed__Criterion *o = sv->outcome;
    const char *table, *col, *date;
    if (outcome_domain(o, &table, &col, &date))
        return SDF_EINVAL;
    char t1[256], t2[256], t3[1200], t4[1200], t5[1200];

    /* the outcome's concept set */
    bool concepts = o->n_concepts > 0;
    if (concepts) {
        int pi = extra_add(x, (db_param){ .type = DB_PARAM_INT64_LIST, .list = o->concepts,
                                          .n = o->n_concepts });
        cohort_sql_add(b, ",\nso_in(concept_id) AS (%s", lst(db, pi, t1, sizeof t1));
        if (o->descendants)
            cohort_sql_add(b, " UNION SELECT descendant_concept_id FROM concept_ancestor "
                              "WHERE ancestor_concept_id IN (%s)", lst(db, pi, t1, sizeof t1));
        cohort_sql_add(b, ")");
        if (o->n_exclude > 0) {
            int pe = extra_add(x, (db_param){ .type = DB_PARAM_INT64_LIST, .list = o->exclude,
                                              .n = o->n_exclude });
            cohort_sql_add(b, ",\nso_ex(concept_id) AS (%s", lst(db, pe, t1, sizeof t1));
            if (o->exclude_descendants)
                cohort_sql_add(b, " UNION SELECT descendant_concept_id FROM concept_ancestor "
                                  "WHERE ancestor_concept_id IN (%s)",
                               lst(db, pe, t1, sizeof t1));
            cohort_sql_add(b, ")");
        }
        cohort_sql_add(b, ",\nso(concept_id) AS (SELECT concept_id FROM so_in%s)",
                       o->n_exclude > 0
                           ? " WHERE concept_id NOT IN (SELECT concept_id FROM so_ex)" : "");
    }
    /* index events */
    if (sv->every)
        cohort_sql_add(b, ",\nix(person_id, index_day) AS (SELECT DISTINCT e.person_id, "
                          "e.index_day FROM ev e JOIN cohort c ON c.person_id = e.person_id "
                          "AND e.index_day >= c.index_day)");
    else
        cohort_sql_add(b, ",\nix(person_id, index_day) AS (SELECT person_id, index_day "
                          "FROM cohort)");

    int pws = extra_add(x, (db_param){ .type = DB_PARAM_INT64, .i = sv->window->start_days });
    int pfrom = extra_add(x, (db_param){ .type = DB_PARAM_TEXT, .s = sv->from });
    int pto = extra_add(x, (db_param){ .type = DB_PARAM_TEXT, .s = sv->to });
    if (db_sql_day_year(db, "i.index_day", t3, sizeof t3) < 0 ||
        db_sql_day_month(db, "i.index_day", t4, sizeof t4) < 0)
        return SDF_EOVERFLOW;
    cohort_sql_add(b, "\nSELECT i.person_id, i.index_day, %s, %s, ", t3, t4);
    if (has_obs) {
        cohort_sql_add(b, "(SELECT MAX(%s) FROM observation_period o WHERE o.person_id = "
                          "i.person_id ",
                       day(db, "o.observation_period_end_date", t5, sizeof t5));
        cohort_sql_add(b, "AND %s <= i.index_day), ",
                       day(db, "o.observation_period_start_date", t5, sizeof t5));
    } else {
        cohort_sql_add(b, "CAST(NULL AS INTEGER), ");
    }
    if (has_death)
        cohort_sql_add(b, "(SELECT MIN(%s) FROM death d WHERE d.person_id = i.person_id), ",
                       day(db, "d.death_date", t5, sizeof t5));
    else
        cohort_sql_add(b, "CAST(NULL AS INTEGER), ");
    char xdate[160];
    snprintf(xdate, sizeof xdate, "x.%s", date);
    day(db, xdate, t5, sizeof t5);
    cohort_sql_add(b, "(SELECT MIN(%s) FROM %s x WHERE x.person_id = i.person_id", t5, table);
    if (concepts)
        cohort_sql_add(b, " AND x.%s IN (SELECT concept_id FROM so)", col);
    if (o->n_units > 0) {
        int pu = extra_add(x, (db_param){ .type = DB_PARAM_INT64_LIST, .list = o->units,
                                          .n = o->n_units });
        cohort_sql_add(b, " AND x.unit_concept_id IN (%s)", lst(db, pu, t1, sizeof t1));
    }
    if (o->value && o->value->has_min) {
        int pv = extra_add(x, (db_param){ .type = DB_PARAM_DOUBLE, .d = o->value->min });
        cohort_sql_add(b, " AND x.value_as_number >= %s", ph(db, pv, t1, sizeof t1));
    }
    if (o->value && o->value->has_max) {
        int pv = extra_add(x, (db_param){ .type = DB_PARAM_DOUBLE, .d = o->value->max });
        cohort_sql_add(b, " AND x.value_as_number <= %s", ph(db, pv, t1, sizeof t1));
    }
    cohort_sql_add(b, " AND %s >= i.index_day + %s), ", t5, ph(db, pws, t1, sizeof t1));
    cohort_sql_add(b, "p.gender_concept_id, p.year_of_birth FROM ix i LEFT JOIN person p "
                      "ON p.person_id = i.person_id WHERE i.index_day BETWEEN %s",
                   day(db, ph(db, pfrom, t1, sizeof t1), t5, sizeof t5));
    cohort_sql_add(b, " AND %s ORDER BY i.person_id, i.index_day",
                   day(db, ph(db, pto, t2, sizeof t2), t5, sizeof t5));
    if (pws < 0 || pfrom < 0 || pto < 0)
        return SDF_EOVERFLOW;
    return b->err;
}

/* ---- one arm ---- */

static int run_arm(query_ctx *q, db_conn *db, const agent_dataset *ds,
                   const Sdefed__QuerySpec *spec, const Sdefed__Criterion *exposure,
                   const periods *pd, bool has_obs, bool has_death, cohort_plan *cp, acc *a)
{
    const Sdefed__SurveilSpec *sv = spec->surveil;
    Sdefed__QuerySpec xs;
    Sdefed__Cohort co;
    Sdefed__Criterion *all[1] = { (Sdefed__Criterion *)exposure };
    extra x = { 0 };

    sdefed__query_spec__init(&xs);
    sdefed__cohort__init(&co);
    co.n_all = 1;
    co.all = all;
    co.index_event = sv->every ? SDEFED__INDEX_EVENT__INDEX_ALL
                               : SDEFED__INDEX_EVENT__INDEX_FIRST;
    xs.kind = SDEFED__QUERY_KIND__KIND_COUNT;
    xs.project = spec->project;
    xs.dataset = spec->dataset;
    xs.cohort = &co;
    xs.n_by = spec->n_by;
    xs.by = spec->by;
    xs.age_band_width = spec->age_band_width;

    int err = cohort_plan_init(q, db, ds, &xs, cp);
    if (err == 0)
        err = cohort_plan_sql(db, cp, COHORT_SELECT_PERSONS);
    if (err == 0)
        err = surveil_sql(db, cp, sv, has_obs, has_death, &x);
    if (err == SDF_EINVAL)
        err = SDF_EDB;
    if (err)
        goto out;

    memset(a, 0, sizeof *a);
    a->cp = cp;
    a->pd = pd;
    a->ws = sv->window->start_days;
    a->we = sv->window->end_days;
    a->every = sv->every;
    a->n_strata_cells = cp->n_cells;
    if (q->want_persons && exposure == sv->exposure) {
        free(q->persons);
        q->persons = NULL;
        q->n_persons = 0;
        a->collect = q;
    } else if (q->want_persons && exposure == sv->comparator) {
        /* issue 4: the comparator arm is released too, so it is checked
         * as a second cohort: appended after a separator (guard.h) */
        if ((err = person_add(q, DISC_COHORT_SEPARATOR)))
            goto out;
        a->collect = q;
    }
    if (pd->n == 0 || cp->n_cells > COHORT_MAX_CELLS / pd->n) {
        err = refuse(q, "surveil: more than %d periods x strata", COHORT_MAX_CELLS);
        goto out;
    }
    a->n_cells = pd->n * cp->n_cells;
    a->cells = calloc(a->n_cells, sizeof *a->cells);
    if (!a->cells) {
        err = SDF_ENOMEM;
        goto out;
    }
    /* placeholders only, never values: safe to log */
    log_debug("surveil query on dataset %s: %zu parameters: %s", ds->name, x.n, cp->sql.p);
    err = db_query(db, cp->sql.p, x.params, x.n, surveil_row, a);
    if (err == SDF_EOVERFLOW) {
        err = refuse(q, "surveil: more than %zu index events", SURVEIL_MAX_ROWS);
        goto out;
    }
    if (err == 0)
        err = acc_finish(a);
out:
    free(x.params);
    return err;
}

/* ---- release ---- */

typedef struct released {
    disc_value persons, events;
    int64_t days;
    disc_status days_status;
    bool rate_ok;
    double rate, lo, hi;
    bool rounded;
} released;

static void release_cell(query_ctx *q, const cell *c, released *r)
{
    const disc_policy *pol = q->policy;
    memset(r, 0, sizeof *r);
    r->persons = disc_count(pol, c->persons, &q->rules);
    r->events = disc_count(pol, c->events, &q->rules);
    r->days_status = DISC_SUPPRESSED;
    if (r->persons.status != DISC_SUPPRESSED) {
        if (c->n_days > 0 && disc_dominated(pol, c->days, c->n_days)) {
            q->rules |= DISC_RULE_DOMINANCE;
        } else {
            int64_t base = pol->rounding > 1 ? pol->rounding : 1;
            int64_t d = (int64_t)llround(c->sum_days);
            int64_t rd = ((d + base / 2) / base) * base;
            r->days = rd;
            r->days_status = base > 1 ? DISC_ROUNDED : DISC_EXACT;
        }
    }
    r->rounded = r->events.status == DISC_ROUNDED || r->days_status == DISC_ROUNDED;
    if (r->events.status != DISC_SUPPRESSED && r->days_status != DISC_SUPPRESSED &&
        r->days > 0 &&
        surv_rate(r->events.value, (double)r->days, &r->rate, &r->lo, &r->hi) == 0)
        r->rate_ok = true;
}

static Sdefed__SurveilRow *row_make(const cohort_plan *cp, const periods *pd, size_t ci,
                                    bool comparator, const released *r, const released *cmp)
{
    Sdefed__SurveilRow *row = malloc(sizeof *row);
    if (!row)
        return NULL;
    sdefed__surveil_row__init(row);
    char label[32];
    period_label(pd, ci / cp->n_cells, label, sizeof label);
    row->period = strdup(label);
    row->strata = calloc(cp->n_strata ? cp->n_strata : 1, sizeof *row->strata);
    if (!row->period || !row->strata)
        goto fail;
    size_t rest = ci % cp->n_cells;
    for (size_t k = cp->n_strata; k-- > 0;) {
        const cohort_strat *st = &cp->strata[k];
        size_t li = rest % st->n_levels;
        rest /= st->n_levels;
        Sdefed__Stratum *s = malloc(sizeof *s);
        if (!s)
            goto fail;
        sdefed__stratum__init(s);
        row->strata[k] = s;
        s->name = strdup(st->name);
        s->value = strdup(st->levels[li].label);
        if (!s->name || !s->value)
            goto fail;
    }
    row->n_strata = cp->n_strata;
    row->comparator = comparator;
    row->persons = r->persons.status == DISC_SUPPRESSED ? 0 : r->persons.value;
    row->persons_status = status_of(r->persons.status);
    row->events = r->events.status == DISC_SUPPRESSED ? 0 : r->events.value;
    row->events_status = status_of(r->events.status);
    row->person_days = r->days_status == DISC_SUPPRESSED ? 0 : r->days;
    row->person_days_status = status_of(r->days_status);
    row->rate_status = SDEFED__CELL_STATUS__CELL_SUPPRESSED;
    if (r->rate_ok) {
        row->rate = r->rate;
        row->rate_lo = r->lo;
        row->rate_hi = r->hi;
        row->rate_status = r->rounded ? SDEFED__CELL_STATUS__CELL_ROUNDED
                                      : SDEFED__CELL_STATUS__CELL_EXACT;
    }
    row->rr_status = SDEFED__CELL_STATUS__CELL_SUPPRESSED;
    if (cmp && r->rate_ok && cmp->rate_ok &&
        surv_rate_ratio(r->events.value, (double)r->days, cmp->events.value, (double)cmp->days,
                        &row->rate_ratio, &row->rr_lo, &row->rr_hi) == 0)
        row->rr_status = r->rounded || cmp->rounded ? SDEFED__CELL_STATUS__CELL_ROUNDED
                                                    : SDEFED__CELL_STATUS__CELL_EXACT;
    else
        row->rate_ratio = row->rr_lo = row->rr_hi = 0.0;
    return row;
fail:
    if (row->strata)
        for (size_t k = 0; k < cp->n_strata; k++)
            if (row->strata[k])
                sdefed__stratum__free_unpacked(row->strata[k], NULL);
    free(row->strata);
    row->strata = NULL;
    row->n_strata = 0;
    free(row->period);
    free(row);
    return NULL;
}

int query_surveil_run(query_ctx *q, const agent_dataset *ds, const Sdefed__QuerySpec *spec,
                      Sdefed__QueryResult *res)
{
    const Sdefed__SurveilSpec *sv = spec->surveil;
    db_conn *db = NULL;
    cohort_plan cpe, cpc;
    acc ae = { 0 }, ac = { 0 };
    released *re = NULL, *rc = NULL;
    Sdefed__SurveilRow **rows = NULL;
    size_t n_rows = 0;
    periods pd;
    bool has_obs = false, has_death = false;

    memset(&cpe, 0, sizeof cpe);
    memset(&cpc, 0, sizeof cpc);
    if (!sv || !sv->exposure || !sv->outcome || !sv->window || !sv->from || !sv->to)
        return refuse(q, "surveil: exposure, outcome, window_days, from and to are required");
    if (strcmp(ds->type, "omop") != 0)
        return refuse(q, "dataset '%s' is not an OMOP dataset", ds->name);
    if (q->policy->dp_epsilon > 0.0)
        return refuse(q, "surveil: not available with differential privacy");
    periods_init(&pd, sv);
    int err = db_open(ds, q->deadline_unix_ms, q->cancel, &db);
    if (err)
        return err == SDF_ECONFIG ? SDF_EDB : err;
    const char *table, *col, *date;
    bool has_out = false;
    if (outcome_domain(sv->outcome, &table, &col, &date)) {
        err = refuse(q, "outcome.domain: not supported for kind surveil");
        goto out;
    }
    (void)col;
    (void)date;
    if ((err = db_table_exists(db, "observation_period", &has_obs)) ||
        (err = db_table_exists(db, "death", &has_death)) ||
        (err = db_table_exists(db, table, &has_out)))
        goto out;
    if (!has_out) {
        err = refuse(q, "outcome: dataset '%s' has no %s table", ds->name, table);
        goto out;
    }
    if ((err = run_arm(q, db, ds, spec, sv->exposure, &pd, has_obs, has_death, &cpe, &ae)))
        goto out;
    if (sv->comparator &&
        (err = run_arm(q, db, ds, spec, sv->comparator, &pd, has_obs, has_death, &cpc, &ac)))
        goto out;

    size_t n = ae.n_cells;
    re = calloc(n, sizeof *re);
    rc = sv->comparator ? calloc(n, sizeof *rc) : NULL;
    rows = calloc(sv->comparator ? 2 * n : n, sizeof *rows);
    if (!re || !rows || (sv->comparator && !rc)) {
        err = SDF_ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < n; k++) {
        release_cell(q, &ae.cells[k], &re[k]);
        if (rc)
            release_cell(q, &ac.cells[k], &rc[k]);
    }
    for (size_t k = 0; k < n; k++) {
        rows[n_rows] = row_make(&cpe, &pd, k, false, &re[k], rc ? &rc[k] : NULL);
        if (!rows[n_rows]) {
            err = SDF_ENOMEM;
            goto out;
        }
        n_rows++;
    }
    for (size_t k = 0; rc && k < n; k++) {
        rows[n_rows] = row_make(&cpc, &pd, k, true, &rc[k], NULL);
        if (!rows[n_rows]) {
            err = SDF_ENOMEM;
            goto out;
        }
        n_rows++;
    }
    res->surveil = rows;
    res->n_surveil = n_rows;
    rows = NULL;
    n_rows = 0;
    err = 0;
out:
    for (size_t k = 0; k < n_rows; k++)
        sdefed__surveil_row__free_unpacked(rows[k], NULL);
    free(rows);
    free(re);
    free(rc);
    acc_free(&ae);
    acc_free(&ac);
    cohort_plan_free(&cpe);
    cohort_plan_free(&cpc);
    db_close(db);
    return err;
}
