/* agent/query_validate.c — the `validate` kind: a risk score against outcomes at one site.
 *
 * Reads the operator-declared columns of a `type = table` predictions
 * dataset (identifier, score, label or prediction date, model version,
 * category columns) in one SELECT whose table and column names come only
 * from the agent's config (validated identifiers, double-quoted) and whose
 * one value (the model version) is a bound parameter. Rows with a NULL or
 * out-of-range score, a label other than 0/1, or (for an OMOP outcome) a
 * missing prediction date make the whole query refuse with a message that
 * names the column, never a value or a count. With an OMOP outcome the
 * label of each row is 1 when the person has an event of the criterion's
 * concept set in [date + start, date + end] days; events are read from the
 * OMOP dataset and joined on the person id here, in memory.
 *
 * Groups: the whole site, then every level of every `by` column
 * (marginal, not crossed). Disclosure (docs/validate.md):
 *   - a group is released only with >= min_cell events and >= min_cell
 *     non-events; else it is withheld with a reason and no numbers;
 *   - complementary: when the withheld levels of a `by` column together
 *     have 1..min_cell-1 events or non-events (so the whole site minus the
 *     released levels would reveal them), the smallest released levels are
 *     withheld too until they do not;
 *   - every count (n, events, confusion cells, bin counts, and the
 *     non-events they imply) goes through disc_count(); rates and Wilson
 *     intervals are computed from the released cells only;
 *   - a threshold whose four cells do not all pass, or that lies so close
 *     to the previous released threshold that 1..min_cell-1 events or
 *     non-events score between them, is withheld (ROC points at arbitrary
 *     thresholds would otherwise difference out small groups);
 *   - a calibration bin is released only when its n, events and
 *     non-events all pass the count rules;
 *   - continuous metrics are rounded to 4 decimals (the AUC's SE to 4
 *     significant digits) before release.
 */
#include "query_validate.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disclosure/disclosure.h"
#include "metrics.h"
#include "sdefed/log.h"
#include "sdefed/spec.h"

typedef struct vrow {
    int64_t person;
    int64_t day;
    double score;
    unsigned char label;
    uint8_t cat[SPEC_MAX_STRATIFIERS];
} vrow;

typedef struct load_ctx {
    query_ctx *q;
    vrow *rows;
    size_t n, cap;
    bool has_label, has_day;
    size_t n_by;
    const char *by_name[SPEC_MAX_STRATIFIERS];
    char levels[SPEC_MAX_STRATIFIERS][VALIDATE_MAX_LEVELS][40];
    size_t n_levels[SPEC_MAX_STRATIFIERS];
} load_ctx;

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

static const agent_column *column_of(const agent_dataset *ds, agent_column_role role)
{
    for (size_t i = 0; i < ds->n_columns; i++)
        if (ds->columns[i].role == role)
            return &ds->columns[i];
    return NULL;
}

static bool parse_double(const char *s, double *out)
{
    if (!s)
        return false;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* A category value released as a stratum label: 1..39 of [A-Za-z0-9 _.+-]. */
static bool plain_label(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == ' ' || c == '_' || c == '.' || c == '+' || c == '-';
        if (n >= 39 || !ok)
            return false;
    }
    return n > 0;
}

static int load_row(void *ctx, const db_value *cols, int ncols)
{
    load_ctx *L = ctx;
    query_ctx *q = L->q;
    if (ncols != 4 + (int)L->n_by)
        return SDF_EDB;
    if (L->n == L->cap) {
        if (L->cap >= VALIDATE_MAX_ROWS)
            return refuse(q, "predictions: more than %zu rows", VALIDATE_MAX_ROWS);
        size_t nc = L->cap ? L->cap * 2 : 4096;
        if (nc > VALIDATE_MAX_ROWS)
            nc = VALIDATE_MAX_ROWS;
        vrow *nr = realloc(L->rows, nc * sizeof *nr);
        if (!nr)
            return SDF_ENOMEM;
        L->rows = nr;
        L->cap = nc;
    }
    vrow *r = &L->rows[L->n];
    memset(r, 0, sizeof *r);
    if (cols[0].is_null)
        return refuse(q, "identifier column: NULL value(s)");
    r->person = cols[0].i;
    if (cols[1].is_null)
        return refuse(q, "score column: NULL value(s); scores must be numbers in [0, 1]");
    if (!parse_double(cols[1].s, &r->score) || r->score < 0.0 || r->score > 1.0)
        return refuse(q, "score column: value(s) outside [0, 1] or not numbers");
    if (L->has_label) {
        double y;
        if (cols[2].is_null || !parse_double(cols[2].s, &y) || (y != 0.0 && y != 1.0))
            return refuse(q, "label column: value(s) other than 0 and 1 (or NULL)");
        r->label = y == 1.0;
    }
    if (L->has_day) {
        if (cols[3].is_null)
            return refuse(q, "date column: NULL or unreadable prediction date(s)");
        r->day = cols[3].i;
    }
    for (size_t b = 0; b < L->n_by; b++) {
        const db_value *v = &cols[4 + b];
        const char *lab = v->is_null ? "unknown" : v->s;
        if (!plain_label(lab))
            return refuse(q, "category column '%s': a value that is not a plain label "
                             "(1-39 of letters, digits, space, _ . + -)", L->by_name[b]);
        size_t k = 0;
        while (k < L->n_levels[b] && strcmp(L->levels[b][k], lab) != 0)
            k++;
        if (k == L->n_levels[b]) {
            if (k == VALIDATE_MAX_LEVELS)
                return refuse(q, "category column '%s': more than %d distinct values",
                              L->by_name[b], VALIDATE_MAX_LEVELS);
            snprintf(L->levels[b][k], sizeof L->levels[b][k], "%s", lab);
            L->n_levels[b]++;
        }
        r->cat[b] = (uint8_t)k;
    }
    L->n++;
    return 0;
}

/* ---- the OMOP outcome ---- */

typedef struct event {
    int64_t person, day;
} event;

typedef struct event_ctx {
    query_ctx *q;
    event *ev;
    size_t n, cap;
} event_ctx;

static int event_row(void *ctx, const db_value *cols, int ncols)
{
    event_ctx *E = ctx;
    if (ncols != 2)
        return SDF_EDB;
    if (cols[0].is_null || cols[1].is_null)
        return 0;   /* an event without a date cannot fall in a window */
    if (E->n == E->cap) {
        if (E->cap >= VALIDATE_MAX_ROWS)
            return refuse(E->q, "outcome: more than %zu events", VALIDATE_MAX_ROWS);
        size_t nc = E->cap ? E->cap * 2 : 4096;
        event *ne = realloc(E->ev, nc * sizeof *ne);
        if (!ne)
            return SDF_ENOMEM;
        E->ev = ne;
        E->cap = nc;
    }
    E->ev[E->n].person = cols[0].i;
    E->ev[E->n].day = cols[1].i;
    E->n++;
    return 0;
}

static int cmp_event(const void *a, const void *b)
{
    const event *x = a, *y = b;
    if (x->person != y->person)
        return x->person < y->person ? -1 : 1;
    return x->day < y->day ? -1 : x->day > y->day;
}

/* Set rows[i].label from the outcome criterion. */
static int label_from_omop(query_ctx *q, const Sdefed__ValidateOutcome *oc, vrow *rows,
                           size_t n)
{
    const agent_dataset *od = NULL;
    for (size_t k = 0; k < q->cfg->n_datasets && k < AGENT_MAX_DATASETS; k++)
        if (strcmp(q->cfg->datasets[k].name, oc->dataset) == 0)
            od = &q->cfg->datasets[k];
    if (!od || strcmp(od->type, "omop") != 0)
        return refuse(q, "validate.outcome.dataset: not an OMOP dataset of this site");
    const Sdefed__Criterion *c = oc->criterion;
    const char *table = NULL, *ccol = NULL, *dcol = NULL;
    if (c->domain == SDEFED__DOMAIN__DOMAIN_DEATH) {
        table = "death";
        ccol = "cause_concept_id";
        dcol = "death_date";
    }
    for (size_t k = 0; k < query_n_omop_domains; k++)
        if (query_omop_domains[k].domain == c->domain) {
            table = query_omop_domains[k].table;
            ccol = query_omop_domains[k].concept_col;
            dcol = query_omop_domains[k].date_col;
        }
    if (!table)
        return refuse(q, "validate.outcome.criterion.domain: not supported");

    db_conn *db = NULL;
    int err = db_open(od, q->deadline_unix_ms, q->cancel, &db);
    if (err)
        return err == SDF_ECONFIG ? SDF_EDB : err;
    char day[1024], l1[256], l2[256], sql[4096];
    db_param params[2];
    size_t np = 0;
    int w = 0;
    if (db_sql_day(db, dcol, day, sizeof day) < 0 || db_sql_int_list(db, 1, l1, sizeof l1) < 0 ||
        db_sql_int_list(db, 2, l2, sizeof l2) < 0) {
        db_close(db);
        return SDF_EOVERFLOW;
    }
    w = snprintf(sql, sizeof sql, "SELECT person_id, %s FROM %s WHERE 1 = 1", day, table);
    if (c->n_concepts) {
        params[np++] = (db_param){ .type = DB_PARAM_INT64_LIST, .list = c->concepts,
                                   .n = c->n_concepts };
        if (w > 0 && (size_t)w < sizeof sql)
            w += c->descendants
                     ? snprintf(sql + w, sizeof sql - (size_t)w,
                                " AND %s IN (SELECT descendant_concept_id FROM concept_ancestor"
                                " WHERE ancestor_concept_id IN (%s))", ccol, l1)
                     : snprintf(sql + w, sizeof sql - (size_t)w, " AND %s IN (%s)", ccol, l1);
    }
    if (c->n_exclude) {
        params[np++] = (db_param){ .type = DB_PARAM_INT64_LIST, .list = c->exclude,
                                   .n = c->n_exclude };
        const char *lx = np == 1 ? l1 : l2;
        if (w > 0 && (size_t)w < sizeof sql)
            w += c->exclude_descendants
                     ? snprintf(sql + w, sizeof sql - (size_t)w,
                                " AND %s NOT IN (SELECT descendant_concept_id FROM "
                                "concept_ancestor WHERE ancestor_concept_id IN (%s))", ccol, lx)
                     : snprintf(sql + w, sizeof sql - (size_t)w, " AND %s NOT IN (%s)", ccol,
                                lx);
    }
    if (w < 0 || (size_t)w >= sizeof sql) {
        db_close(db);
        return SDF_EOVERFLOW;
    }
    event_ctx E = { .q = q };
    err = db_query(db, sql, params, np, event_row, &E);
    db_close(db);
    if (err) {
        free(E.ev);
        return err;
    }
    qsort(E.ev, E.n, sizeof *E.ev, cmp_event);
    int64_t s = oc->window->start_days, e = oc->window->end_days;
    for (size_t i = 0; i < n; i++) {
        /* first event of this person on or after day + s */
        event key = { rows[i].person, rows[i].day + s };
        size_t lo = 0, hi = E.n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (cmp_event(&E.ev[mid], &key) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        rows[i].label = lo < E.n && E.ev[lo].person == rows[i].person &&
                        E.ev[lo].day <= rows[i].day + e;
    }
    free(E.ev);
    return 0;
}

/* ---- one group -> a Validation message ---- */

static double r4(double x)
{
    return isfinite(x) ? round(x * 1e4) / 1e4 : 0.0;
}

static double sig4(double x)
{
    if (!isfinite(x) || x <= 0)
        return 0.0;
    double m = pow(10.0, 3 - floor(log10(x)));
    return round(x * m) / m;
}

static bool passes(disc_value v)
{
    return v.status != DISC_SUPPRESSED;
}

static Sdefed__ValidateCount *vcount(disc_value v)
{
    Sdefed__ValidateCount *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    sdefed__validate_count__init(c);
    c->value = v.status == DISC_SUPPRESSED ? 0 : v.value;
    c->status = (Sdefed__CellStatus)v.status;
    return c;
}

static int set_reason_str(char **dst, const char *s)
{
    char *d = strdup(s);
    if (!d)
        return SDF_ENOMEM;
    *dst = d;
    return 0;
}

typedef struct group_data {
    double *score;
    unsigned char *label;
    size_t n;
    int64_t events;
} group_data;

static int fill_thresholds(query_ctx *q, const Sdefed__ValidateSpec *vs, const group_data *g,
                           Sdefed__Validation *v)
{
    size_t nt = vs->n_thresholds;
    if (nt == 0)
        return 0;
    double th[SPEC_MAX_THRESHOLDS];
    memcpy(th, vs->thresholds, nt * sizeof *th);
    for (size_t i = 1; i < nt; i++)   /* ascending */
        for (size_t j = i; j > 0 && th[j - 1] > th[j]; j--) {
            double t = th[j];
            th[j] = th[j - 1];
            th[j - 1] = t;
        }
    v->thresholds = calloc(nt, sizeof *v->thresholds);
    if (!v->thresholds)
        return SDF_ENOMEM;
    bool have_prev = false;
    metrics_confusion prev = { 0, 0, 0, 0 };
    for (size_t i = 0; i < nt; i++) {
        Sdefed__ThresholdMetrics *m = malloc(sizeof *m);
        if (!m)
            return SDF_ENOMEM;
        sdefed__threshold_metrics__init(m);
        v->thresholds[v->n_thresholds++] = m;
        m->threshold = th[i];
        metrics_confusion c;
        metrics_confusion_at(g->score, g->label, g->n, th[i], &c);
        disc_value tp = disc_count(q->policy, c.tp, &q->rules);
        disc_value fp = disc_count(q->policy, c.fp, &q->rules);
        disc_value tn = disc_count(q->policy, c.tn, &q->rules);
        disc_value fn = disc_count(q->policy, c.fn, &q->rules);
        bool ok = passes(tp) && passes(fp) && passes(tn) && passes(fn);
        const char *why = ok ? NULL : "a cell below min_cell";
        if (ok && have_prev) {
            /* rows scoring in [prev_t, t): events prev.tp - c.tp, non-events prev.fp - c.fp */
            int64_t de = prev.tp - c.tp, dn = prev.fp - c.fp;
            if ((de > 0 && de < q->policy->min_cell) || (dn > 0 && dn < q->policy->min_cell)) {
                ok = false;
                why = "too close to the previous threshold (too few persons between them)";
            }
        }
        if (!ok) {
            m->tp = vcount((disc_value){ 0, DISC_SUPPRESSED });
            m->fp = vcount((disc_value){ 0, DISC_SUPPRESSED });
            m->tn = vcount((disc_value){ 0, DISC_SUPPRESSED });
            m->fn = vcount((disc_value){ 0, DISC_SUPPRESSED });
            if (!m->tp || !m->fp || !m->tn || !m->fn || set_reason_str(&m->withheld_reason, why))
                return SDF_ENOMEM;
            q->rules |= DISC_RULE_SMALL_COUNT;
            continue;
        }
        m->tp = vcount(tp);
        m->fp = vcount(fp);
        m->tn = vcount(tn);
        m->fn = vcount(fn);
        if (!m->tp || !m->fp || !m->tn || !m->fn)
            return SDF_ENOMEM;
        have_prev = true;
        prev = c;
        int64_t TP = m->tp->value, FP = m->fp->value, TN = m->tn->value, FN = m->fn->value;
        if (TP + FN <= 0 || TN + FP <= 0 || TP + FP <= 0 || TN + FN <= 0) {
            /* cells released, but a rate would be 0/0 */
            if (set_reason_str(&m->withheld_reason, "no predicted positives or no predicted "
                                                    "negatives at this threshold"))
                return SDF_ENOMEM;
            continue;
        }
        m->released = true;
        metrics_ci ci;
#define SET(name, x, n)                                                                       \
    do {                                                                                      \
        ci = metrics_wilson((x), (n));                                                        \
        m->name = r4(ci.est);                                                                 \
        m->name##_lo = r4(ci.lo);                                                             \
        m->name##_hi = r4(ci.hi);                                                             \
    } while (0)
        SET(sensitivity, TP, TP + FN);
        SET(specificity, TN, TN + FP);
        SET(ppv, TP, TP + FP);
        SET(npv, TN, TN + FN);
#undef SET
    }
    return 0;
}

static int fill_bins(query_ctx *q, size_t nbins, const group_data *g, Sdefed__Validation *v)
{
    metrics_bin bins[METRICS_MAX_BINS];
    if (metrics_bins_fixed(g->score, g->label, g->n, nbins, bins) != 0)
        return SDF_EINVAL;
    v->bins = calloc(nbins, sizeof *v->bins);
    if (!v->bins)
        return SDF_ENOMEM;
    for (size_t b = 0; b < nbins; b++) {
        Sdefed__CalibrationBin *c = malloc(sizeof *c);
        if (!c)
            return SDF_ENOMEM;
        sdefed__calibration_bin__init(c);
        v->bins[v->n_bins++] = c;
        c->lo = bins[b].lo;
        c->hi = bins[b].hi;
        disc_value n = disc_count(q->policy, bins[b].n, &q->rules);
        disc_value e = disc_count(q->policy, bins[b].events, &q->rules);
        disc_value ne = disc_count(q->policy, bins[b].n - bins[b].events, &q->rules);
        bool ok = passes(n) && passes(e) && passes(ne) && bins[b].n > 0;
        c->n = vcount(n);
        c->events = vcount(ok ? e : (disc_value){ 0, DISC_SUPPRESSED });
        if (!c->n || !c->events)
            return SDF_ENOMEM;
        if (ok && c->n->value > 0) {
            c->released = true;
            c->mean_predicted = r4(bins[b].sum_predicted / (double)bins[b].n);
            c->observed = r4((double)c->events->value / (double)c->n->value);
        }
    }
    return 0;
}

static int fill_metrics(query_ctx *q, const Sdefed__ValidateSpec *vs, const group_data *g,
                        Sdefed__Validation *v)
{
    v->released = true;
    v->n = vcount(disc_count(q->policy, (int64_t)g->n, &q->rules));
    v->events = vcount(disc_count(q->policy, g->events, &q->rules));
    if (!v->n || !v->events)
        return SDF_ENOMEM;
    double auc, var;
    int err = metrics_auc_delong(g->score, g->label, g->n, &auc, &var);
    if (err)
        return err;
    metrics_ci ci = metrics_auc_ci(auc, var);
    v->auc = r4(auc);
    v->auc_se = sig4(sqrt(var));
    v->auc_lo = r4(ci.lo);
    v->auc_hi = r4(ci.hi);
    metrics_calibration cal;
    if ((err = metrics_calibration_fit(g->score, g->label, g->n, &cal)))
        return err;
    v->brier = r4(cal.brier);
    v->oe_ratio = r4(cal.oe_ratio);
    v->citl = r4(cal.citl);
    v->cal_converged = cal.converged;
    v->cal_slope = cal.converged ? r4(cal.slope) : 0.0;
    v->cal_intercept = cal.converged ? r4(cal.intercept) : 0.0;
    v->mean_predicted = r4(cal.mean_predicted);
    v->observed_rate = r4(cal.observed_rate);
    if ((err = fill_thresholds(q, vs, g, v)))
        return err;
    return fill_bins(q, vs->bins ? vs->bins : 10, g, v);
}

static Sdefed__Validation *validation_new(const char *name, const char *value)
{
    Sdefed__Validation *v = malloc(sizeof *v);
    if (!v)
        return NULL;
    sdefed__validation__init(v);
    if (!name)
        return v;
    v->strata = calloc(1, sizeof *v->strata);
    Sdefed__Stratum *s = malloc(sizeof *s);
    if (!v->strata || !s) {
        free(s);
        sdefed__validation__free_unpacked(v, NULL);
        return NULL;
    }
    sdefed__stratum__init(s);
    v->strata[v->n_strata++] = s;
    s->name = strdup(name);
    s->value = strdup(value);
    if (!s->name || !s->value) {
        sdefed__validation__free_unpacked(v, NULL);
        return NULL;
    }
    return v;
}

/* Group membership of row i: by < 0 is the whole site. */
static bool in_group(const vrow *r, int by, size_t level)
{
    return by < 0 || r->cat[by] == level;
}

static int add_group(query_ctx *q, const Sdefed__ValidateSpec *vs, const vrow *rows, size_t n,
                     int by, size_t level, bool withheld, const char *name, const char *value,
                     group_data *g, Sdefed__QueryResult *res)
{
    Sdefed__Validation *v = validation_new(name, value);
    if (!v)
        return SDF_ENOMEM;
    res->validations[res->n_validations++] = v;
    g->n = 0;
    g->events = 0;
    for (size_t i = 0; i < n; i++)
        if (in_group(&rows[i], by, level)) {
            g->score[g->n] = rows[i].score;
            g->label[g->n] = rows[i].label;
            g->events += rows[i].label;
            g->n++;
        }
    int64_t nonevents = (int64_t)g->n - g->events;
    if (withheld || g->events < q->policy->min_cell || nonevents < q->policy->min_cell) {
        q->rules |= DISC_RULE_SMALL_COUNT;
        return set_reason_str(&v->withheld_reason,
                              withheld && g->events >= q->policy->min_cell &&
                                      nonevents >= q->policy->min_cell
                                  ? "withheld so that a smaller subgroup cannot be "
                                    "derived from the others (complementary suppression)"
                                  : "fewer than min_cell events or non-events");
    }
    return fill_metrics(q, vs, g, v);
}

/* Which levels of `by` column b are withheld (complementary rule included). */
static void withheld_levels(const query_ctx *q, const vrow *rows, size_t n, size_t b,
                            size_t n_levels, bool *out)
{
    int64_t ev[VALIDATE_MAX_LEVELS] = { 0 }, cnt[VALIDATE_MAX_LEVELS] = { 0 };
    for (size_t i = 0; i < n; i++) {
        cnt[rows[i].cat[b]]++;
        ev[rows[i].cat[b]] += rows[i].label;
    }
    int64_t m = q->policy->min_cell, ue = 0, un = 0;
    for (size_t k = 0; k < n_levels; k++) {
        out[k] = ev[k] < m || cnt[k] - ev[k] < m;
        if (out[k]) {
            ue += ev[k];
            un += cnt[k] - ev[k];
        }
    }
    /* the union of withheld levels must itself be safe: 0, or >= min_cell
     * of both events and non-events */
    while ((ue + un > 0) && (ue < m || un < m)) {
        size_t best = n_levels;
        for (size_t k = 0; k < n_levels; k++)
            if (!out[k] && (best == n_levels || cnt[k] < cnt[best]))
                best = k;
        if (best == n_levels)
            break;   /* every level withheld */
        out[best] = true;
        ue += ev[best];
        un += cnt[best] - ev[best];
    }
}

static int quote_table(const agent_dataset *ds, char *buf, size_t len)
{
    int w = ds->schema[0] && strcmp(ds->backend, "postgres") == 0
                ? snprintf(buf, len, "\"%s\".\"%s\"", ds->schema, ds->table)
                : snprintf(buf, len, "\"%s\"", ds->table);
    return w < 0 || (size_t)w >= len ? SDF_EOVERFLOW : 0;
}

int query_validate_run(query_ctx *q, const agent_dataset *ds, const Sdefed__QuerySpec *spec,
                       Sdefed__QueryResult *res)
{
    const Sdefed__ValidateSpec *vs = spec->validate;
    if (strcmp(ds->type, "table") != 0)
        return refuse(q, "dataset '%s' is not a predictions table (type = table)", ds->name);
    if (q->policy->dp_epsilon > 0.0)
        return refuse(q, "validate: not available with differential privacy");
    const agent_column *id = column_of(ds, AGENT_COL_IDENTIFIER);
    const agent_column *score = column_of(ds, AGENT_COL_SCORE);
    const agent_column *label = column_of(ds, AGENT_COL_LABEL);
    const agent_column *date = column_of(ds, AGENT_COL_DATE);
    const agent_column *mv = column_of(ds, AGENT_COL_MODEL_VERSION);
    if (!id || !score)
        return refuse(q, "dataset '%s': no identifier or score column", ds->name);
    if (vs->outcome && !date)
        return refuse(q, "validate.outcome: dataset '%s' declares no date column", ds->name);
    if (!vs->outcome && !label)
        return refuse(q, "validate.outcome: required, dataset '%s' declares no label column",
                      ds->name);
    if (vs->model_version && *vs->model_version && !mv)
        return refuse(q, "validate.model_version: dataset '%s' declares no model_version "
                         "column", ds->name);

    load_ctx *Lp = calloc(1, sizeof *Lp);   /* large (the level labels): on the heap */
    if (!Lp)
        return SDF_ENOMEM;
    Lp->q = q;
    Lp->has_label = vs->outcome == NULL;
    Lp->has_day = vs->outcome != NULL;
    Lp->n_by = vs->n_by;
    for (size_t b = 0; b < vs->n_by; b++) {
        const agent_column *c = NULL;
        for (size_t k = 0; k < ds->n_columns; k++)
            if (ds->columns[k].role == AGENT_COL_CATEGORY &&
                strcmp(ds->columns[k].name, vs->by[b]) == 0)
                c = &ds->columns[k];
        if (!c) {
            free(Lp);
            return refuse(q, "validate.by[%zu]: '%s' is not a category column of dataset '%s'",
                          b, vs->by[b], ds->name);
        }
        Lp->by_name[b] = c->name;
    }

    char tbl[160], day[1024] = "NULL", sql[4096];
    db_conn *db = NULL;
    group_data g = { 0 };
    int err = quote_table(ds, tbl, sizeof tbl);
    if (err)
        goto out;
    err = db_open(ds, q->deadline_unix_ms, q->cancel, &db);
    if (err) {
        err = err == SDF_ECONFIG ? SDF_EDB : err;
        goto out;
    }
    if (date && Lp->has_day) {
        char qd[80];
        snprintf(qd, sizeof qd, "\"%s\"", date->name);
        if (db_sql_day(db, qd, day, sizeof day) < 0) {
            err = SDF_EOVERFLOW;
            goto out;
        }
    }
    char lab[80] = "NULL";
    if (label && Lp->has_label)
        snprintf(lab, sizeof lab, "\"%s\"", label->name);
    int w = snprintf(sql, sizeof sql, "SELECT \"%s\", \"%s\", %s, %s", id->name, score->name,
                     lab, day);
    for (size_t b = 0; b < vs->n_by && w > 0 && (size_t)w < sizeof sql; b++)
        w += snprintf(sql + w, sizeof sql - (size_t)w, ", \"%s\"", Lp->by_name[b]);
    if (w > 0 && (size_t)w < sizeof sql)
        w += snprintf(sql + w, sizeof sql - (size_t)w, " FROM %s", tbl);
    db_param mvp = { .type = DB_PARAM_TEXT, .s = vs->model_version };
    size_t np = 0;
    if (vs->model_version && *vs->model_version && w > 0 && (size_t)w < sizeof sql) {
        char ph[32];
        if (db_sql_param(db, 1, ph, sizeof ph) < 0) {
            err = SDF_EOVERFLOW;
            goto out;
        }
        w += snprintf(sql + w, sizeof sql - (size_t)w, " WHERE \"%s\" = %s", mv->name, ph);
        np = 1;
    }
    if (w < 0 || (size_t)w >= sizeof sql) {
        err = SDF_EOVERFLOW;
        goto out;
    }
    err = db_query(db, sql, np ? &mvp : NULL, np, load_row, Lp);
    db_close(db);
    db = NULL;
    if (err)
        goto out;
    if (Lp->n == 0) {
        err = refuse(q, "predictions: no rows%s", np ? " for this model_version" : "");
        goto out;
    }
    bool constant = true;
    for (size_t i = 1; i < Lp->n && constant; i++)
        constant = Lp->rows[i].score == Lp->rows[0].score;
    if (constant) {
        err = refuse(q, "score column: constant (every row has the same score; nothing to "
                        "discriminate)");
        goto out;
    }
    if (vs->outcome && (err = label_from_omop(q, vs->outcome, Lp->rows, Lp->n)))
        goto out;

    size_t n_groups = 1;
    for (size_t b = 0; b < Lp->n_by; b++)
        n_groups += Lp->n_levels[b];
    res->validations = calloc(n_groups, sizeof *res->validations);
    g.score = malloc(Lp->n * sizeof *g.score);
    g.label = malloc(Lp->n);
    if (!res->validations || !g.score || !g.label) {
        err = SDF_ENOMEM;
        goto out;
    }
    err = add_group(q, vs, Lp->rows, Lp->n, -1, 0, false, NULL, NULL, &g, res);
    for (size_t b = 0; b < Lp->n_by && err == 0; b++) {
        bool wh[VALIDATE_MAX_LEVELS];
        withheld_levels(q, Lp->rows, Lp->n, b, Lp->n_levels[b], wh);
        for (size_t k = 0; k < Lp->n_levels[b] && err == 0; k++)
            err = add_group(q, vs, Lp->rows, Lp->n, (int)b, k, wh[k], Lp->by_name[b],
                            Lp->levels[b][k], &g, res);
    }
    /* the whole site withheld: release nothing but that */
    if (err == 0 && !res->validations[0]->released && res->n_validations > 1) {
        for (size_t k = 1; k < res->n_validations; k++)
            sdefed__validation__free_unpacked(res->validations[k], NULL);
        res->n_validations = 1;
    }
out:
    db_close(db);
    free(g.score);
    free(g.label);
    free(Lp->rows);
    free(Lp);
    return err;
}
