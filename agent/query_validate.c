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
 * Issue 5 items 3/4 (docs/validate.md): each released group also carries
 * a score histogram (fine fixed bins, also cut at every released
 * threshold and calibration edge, merged until every count passes; counts
 * through disc_count()) and the ROC curve from its released counts; a
 * threshold or calibration edge that still cuts a histogram bin into a
 * small piece is withheld (differencing between the partitions). With
 * compare_versions the rows of two model versions are paired on the
 * person (version b's row, version a's score) and each group gets a
 * paired-DeLong comparison; bin_mode quantile puts the calibration edges
 * at the group's score quantiles (3 decimals); with subgroups_from the
 * `by` names sex and age_band come from the OMOP person table, joined on
 * the person id here (age at the prediction date).
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
#include "scorecard.h"   /* issue 5 item 2 */
#include "sdefed/log.h"
#include "sdefed/spec.h"

typedef struct vrow {
    int64_t person;
    int64_t day;
    double score;
    unsigned char label;
    uint8_t cat[SPEC_MAX_STRATIFIERS];
    uint8_t ver;           /* compare_versions: 0 = version a, 1 = version b */
    double score_a;        /* compare_versions: version a's score of the person */
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
    bool compare;                           /* compare_versions: a model_version column last */
    const char *ver_b;
    uint8_t virt[SPEC_MAX_STRATIFIERS];     /* 1 sex, 2 age_band from OMOP (not a column) */
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
    if (ncols != 4 + (int)L->n_by + (L->compare ? 1 : 0))
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
    int e = db_value_double(&cols[1], &r->score);
    if (e == SDF_ENOMEM)
        return e;
    if (e || r->score < 0.0 || r->score > 1.0)
        return refuse(q, "score column: value(s) outside [0, 1] or not numbers");
    if (L->has_label) {
        double y = 0.0;
        e = cols[2].is_null ? SDF_EINVAL : db_value_double(&cols[2], &y);
        if (e == SDF_ENOMEM)
            return e;
        if (e || (y != 0.0 && y != 1.0))
            return refuse(q, "label column: value(s) other than 0 and 1 (or NULL)");
        r->label = y == 1.0;
    }
    if (L->has_day) {
        if (cols[3].is_null)
            return refuse(q, "date column: NULL or unreadable prediction date(s)");
        r->day = cols[3].i;
    }
    for (size_t b = 0; b < L->n_by; b++) {
        if (L->virt[b])
            continue;   /* set from OMOP after loading */
        const db_value *v = &cols[4 + b];
        const char *lab = v->is_null ? "unknown" : db_value_text(v);
        if (!lab)
            return SDF_ENOMEM;
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
    if (L->compare) {   /* the WHERE clause kept only the two versions */
        const db_value *v = &cols[4 + L->n_by];
        const char *ver = db_value_text(v);
        if (!v->is_null && !ver)
            return SDF_ENOMEM;
        r->ver = ver && strcmp(ver, L->ver_b) == 0;
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
    double *score_a;           /* compare_versions: version a's scores (score is b's) */
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

static int fill_bins(query_ctx *q, const Sdefed__ValidateSpec *vs, const group_data *g,
                     Sdefed__Validation *v)
{
    metrics_bin bins[METRICS_MAX_BINS];
    size_t nbins = vs->bins ? vs->bins : 10;
    if (vs->bin_mode && strcmp(vs->bin_mode, "quantile") == 0) {
        /* issue 5 items 3/4: edges at the group's score quantiles, 3 decimals */
        double edges[METRICS_MAX_BINS + 1];
        int err = metrics_quantile_edges(g->score, g->n, nbins, edges, &nbins);
        if (err)
            return err;
        if (metrics_bins_edges(g->score, g->label, g->n, edges, nbins, bins) != 0)
            return SDF_EINVAL;
        v->quantile_bins = true;
    } else if (metrics_bins_fixed(g->score, g->label, g->n, nbins, bins) != 0) {
        return SDF_EINVAL;
    }
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

/* ---- score histogram, ROC, differencing against it, comparison (issue 5 items 3/4) ---- */

/* Counts of the group's rows below any fine edge, from one pass over the
 * rows (no sort): cum[i] events / non-events with score < fe[i] (i < m),
 * cum[m] all of them. Every cut the histogram code asks about is a fine
 * edge (or 1, or +infinity); any other cut is counted by a scan. The
 * `score >= cut` semantics are those of thresholds. */
typedef struct score_index {
    const group_data *g;
    double *fe;                /* m fine edges, sorted, fe[0] = 0, fe[m-1] = 1 */
    size_t m;
    int64_t *ce, *cn;          /* m + 1 each */
} score_index;

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

static void index_free(score_index *ix)
{
    free(ix->fe);
    free(ix->ce);
    ix->fe = NULL;
    ix->ce = ix->cn = NULL;
}

/* Takes ownership of fe (freed by index_free, also on failure). */
static int index_build(const group_data *g, double *fe, size_t m, score_index *ix)
{
    ix->g = g;
    ix->fe = fe;
    ix->m = m;
    ix->ce = calloc(2 * (m + 1), sizeof *ix->ce);
    if (!ix->ce)
        return SDF_ENOMEM;
    ix->cn = ix->ce + m + 1;
    for (size_t i = 0; i < g->n; i++) {
        double s = g->score[i];
        size_t lo = 0, hi = m;   /* last k with fe[k] <= s */
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            if (fe[mid] <= s)
                lo = mid;
            else
                hi = mid;
        }
        if (g->label[i])
            ix->ce[lo + 1]++;
        else
            ix->cn[lo + 1]++;
    }
    for (size_t k = 1; k <= m; k++) {
        ix->ce[k] += ix->ce[k - 1];
        ix->cn[k] += ix->cn[k - 1];
    }
    return 0;
}

/* Events and non-events with score < x. */
static void index_below(const score_index *ix, double x, int64_t *e, int64_t *ne)
{
    if (x == INFINITY) {
        *e = ix->ce[ix->m];
        *ne = ix->cn[ix->m];
        return;
    }
    size_t lo = 0, hi = ix->m;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ix->fe[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < ix->m && ix->fe[lo] == x) {
        *e = ix->ce[lo];
        *ne = ix->cn[lo];
        return;
    }
    *e = *ne = 0;   /* not a fine edge: count */
    for (size_t i = 0; i < ix->g->n; i++)
        if (ix->g->score[i] < x) {
            if (ix->g->label[i])
                (*e)++;
            else
                (*ne)++;
        }
}

/* Events and non-events with a <= score < b (b = INFINITY: no upper end). */
static void index_count(const score_index *ix, double a, double b, int64_t *e, int64_t *ne)
{
    int64_t ea, na, eb, nb;
    index_below(ix, a, &ea, &na);
    index_below(ix, b, &eb, &nb);
    *e = eb - ea;
    *ne = nb - na;
}

/* The count rule without rounding: 0 (unless zero is disclosive) or >= min_cell. */
static bool count_passes(const query_ctx *q, int64_t c)
{
    int64_t m = q->policy->min_cell < 1 ? 1 : q->policy->min_cell;
    return c == 0 ? !q->policy->zero_is_disclosive : c >= m;
}

static bool vc_released(const Sdefed__ValidateCount *c)
{
    return c && c->status != SDEFED__CELL_STATUS__CELL_SUPPRESSED &&
           c->status != SDEFED__CELL_STATUS__CELL_UNSPECIFIED;
}

static void vc_suppress(Sdefed__ValidateCount *c)
{
    if (c) {
        c->value = 0;
        c->status = SDEFED__CELL_STATUS__CELL_SUPPRESSED;
    }
}

/* A released threshold or calibration edge: a cut other released numbers
 * make at a score. Strength: what the cumulative counts at it reveal. */
enum { ANCHOR_N = 1, ANCHOR_CAL = 2, ANCHOR_THRESHOLD = 3 };
typedef struct anchor {
    double x;
    int strength;      /* ANCHOR_N: only n (a calibration bin with its events withheld) */
    size_t idx;        /* threshold index, or the calibration bin whose lower edge this is */
    bool removed;
} anchor;

static size_t anchors_collect(const Sdefed__Validation *v, anchor *a)
{
    size_t na = 0;
    for (size_t t = 0; t < v->n_thresholds; t++)
        if (vc_released(v->thresholds[t]->tp))
            a[na++] = (anchor){ v->thresholds[t]->threshold, ANCHOR_THRESHOLD, t, false };
    for (size_t b = 1; b < v->n_bins; b++) {
        const Sdefed__CalibrationBin *l = v->bins[b - 1], *r = v->bins[b];
        bool ev = vc_released(l->events) || vc_released(r->events);
        if (ev || vc_released(l->n) || vc_released(r->n))
            a[na++] = (anchor){ r->lo, ev ? ANCHOR_CAL : ANCHOR_N, b, false };
    }
    return na;
}

/* Fine equal-width histogram per label, cut also at every anchor
 * (threshold, calibration edge) so that the coarse bins can keep them as
 * edges: the cuts first split [0, 1] into segments; a segment whose events
 * or non-events fail the count rules is merged with a neighbour across its
 * weaker anchor; within each segment the fine bins are coarsened
 * (metrics_hist_coarsen). Counts through disc_count(); the ROC curve at the
 * bin edges from the released (rounded) counts. */
static int fill_histogram(query_ctx *q, const Sdefed__ValidateSpec *vs, const group_data *g,
                          score_index *ix, Sdefed__Validation *v)
{
    size_t H = vs->histogram_bins ? vs->histogram_bins : SPEC_DEFAULT_HISTOGRAM_BINS;
    if (H > METRICS_MAX_HIST_BINS)
        H = METRICS_MAX_HIST_BINS;
    size_t cap = H + 1 + v->n_thresholds + v->n_bins;
    double *fe = calloc(cap, sizeof *fe);
    int *cut = calloc(cap, sizeof *cut);
    int64_t *ev = calloc(2 * cap, sizeof *ev);
    size_t *ends = calloc(cap, sizeof *ends);
    anchor *a = calloc(v->n_thresholds + v->n_bins + 1, sizeof *a);
    int err = 0;
    bool fe_owned = true;
    if (!fe || !cut || !ev || !ends || !a) {
        err = SDF_ENOMEM;
        goto out;
    }
    int64_t *ne = ev + cap;
    int64_t mc = q->policy->min_cell < 1 ? 1 : q->policy->min_cell;
    int zero_ok = !q->policy->zero_is_disclosive;
    /* fine edges: k/H and the anchors strictly inside (0, 1), sorted, unique */
    size_t na = anchors_collect(v, a), ne_ = 0;
    for (size_t k = 0; k <= H; k++)
        fe[ne_++] = (double)k / (double)H;
    for (size_t i = 0; i < na; i++)
        if (a[i].x > 0.0 && a[i].x < 1.0)
            fe[ne_++] = a[i].x;
    qsort(fe, ne_, sizeof *fe, cmp_dbl);
    size_t m = 0;
    for (size_t i = 0; i < ne_; i++)
        if (m == 0 || fe[i] != fe[m - 1])
            fe[m++] = fe[i];
    size_t nf = m - 1;   /* fine bins [fe[i], fe[i+1]); the last also holds score 1 */
    fe_owned = false;   /* ix owns fe from here, also on failure */
    if ((err = index_build(g, fe, m, ix)))
        goto out;
    for (size_t i = 0; i < nf; i++)
        index_count(ix, fe[i], i + 1 == nf ? INFINITY : fe[i + 1], &ev[i], &ne[i]);
    for (size_t i = 0; i < na; i++) {   /* cut[e]: strength of the anchor at edge e */
        if (!(a[i].x > 0.0 && a[i].x < 1.0))
            continue;
        size_t e = 1;
        while (e < nf && fe[e] != a[i].x)
            e++;
        if (e < nf && cut[e] < a[i].strength)
            cut[e] = a[i].strength;
    }
    /* merge failing segments across their weaker anchor until all pass */
    for (;;) {
        size_t s0 = 0, bad_lo = 0, bad_hi = 0;
        bool bad = false;
        int64_t se = 0, sn = 0;
        for (size_t i = 0; i < nf && !bad; i++) {
            se += ev[i];
            sn += ne[i];
            if (i + 1 == nf || cut[i + 1]) {
                /* an empty segment is merged too (no empty bins) */
                bool ok = se + sn > 0 && (se == 0 ? zero_ok : se >= mc) &&
                          (sn == 0 ? zero_ok : sn >= mc);
                if (!ok) {
                    bad = true;
                    bad_lo = s0;
                    bad_hi = i + 1;
                }
                s0 = i + 1;
                se = sn = 0;
            }
        }
        if (!bad)
            break;
        int left = bad_lo > 0 ? cut[bad_lo] : 0, right = bad_hi < nf ? cut[bad_hi] : 0;
        if (!left && !right)
            break;   /* one segment, the whole range: the group's totals fail */
        if (left && (!right || left < right))
            cut[bad_lo] = 0;
        else
            cut[bad_hi] = 0;
    }
    v->histogram = calloc(nf, sizeof *v->histogram);
    if (!v->histogram) {
        err = SDF_ENOMEM;
        goto out;
    }
    int64_t te = 0, tn = 0;
    bool all = true;
    for (size_t s0 = 0; s0 < nf && err == 0;) {
        size_t s1 = s0 + 1, nc = 0;
        while (s1 < nf && !cut[s1])
            s1++;
        if (metrics_hist_coarsen(ev + s0, ne + s0, s1 - s0, mc, zero_ok, ends, &nc) != 0) {
            /* only when the whole group fails, which is never released */
            for (size_t k = 0; k < v->n_histogram; k++)
                sdefed__score_bin__free_unpacked(v->histogram[k], NULL);
            v->n_histogram = 0;
            goto out;
        }
        for (size_t c = 0, start = s0; c < nc; start = s0 + ends[c], c++) {
            size_t end = s0 + ends[c];
            int64_t e = 0, n = 0;
            for (size_t k = start; k < end; k++) {
                e += ev[k];
                n += ne[k];
            }
            Sdefed__ScoreBin *b = malloc(sizeof *b);
            if (!b) {
                err = SDF_ENOMEM;
                break;
            }
            sdefed__score_bin__init(b);
            v->histogram[v->n_histogram++] = b;
            b->lo = fe[start];
            b->hi = fe[end];
            b->events = vcount(disc_count(q->policy, e, &q->rules));
            b->nonevents = vcount(disc_count(q->policy, n, &q->rules));
            if (!b->events || !b->nonevents) {
                err = SDF_ENOMEM;
                break;
            }
            all = all && vc_released(b->events) && vc_released(b->nonevents);
            te += b->events->value;
            tn += b->nonevents->value;
        }
        s0 = s1;
    }
    if (err || !all || te <= 0 || tn <= 0 || v->n_histogram == 0)
        goto out;   /* no ROC from a histogram with a withheld count */
    size_t nc = v->n_histogram;
    v->roc = calloc(nc + 1, sizeof *v->roc);
    if (!v->roc) {
        err = SDF_ENOMEM;
        goto out;
    }
    int64_t ce = 0, cn = 0;
    for (size_t c = nc + 1; c-- > 0;) {
        /* c == nc: the cut above every bin, (0, 0); else the cut at bin c's lower edge */
        if (c < nc) {
            ce += v->histogram[c]->events->value;
            cn += v->histogram[c]->nonevents->value;
        }
        Sdefed__RocPoint *pt = malloc(sizeof *pt);
        if (!pt) {
            err = SDF_ENOMEM;
            goto out;
        }
        sdefed__roc_point__init(pt);
        v->roc[v->n_roc++] = pt;
        pt->fpr = r4((double)cn / (double)tn);
        pt->tpr = r4((double)ce / (double)te);
        pt->threshold = c < nc ? v->histogram[c]->lo : v->histogram[nc - 1]->hi;
    }
out:
    if (fe_owned)
        free(fe);
    free(cut);
    free(ev);
    free(ends);
    free(a);
    return err;
}

static int withhold_anchor(query_ctx *q, Sdefed__Validation *v, const anchor *a)
{
    q->rules |= DISC_RULE_SMALL_COUNT;
    if (a->strength == ANCHOR_THRESHOLD) {
        Sdefed__ThresholdMetrics *m = v->thresholds[a->idx];
        vc_suppress(m->tp);
        vc_suppress(m->fp);
        vc_suppress(m->tn);
        vc_suppress(m->fn);
        m->released = false;
        m->sensitivity = m->sensitivity_lo = m->sensitivity_hi = 0;
        m->specificity = m->specificity_lo = m->specificity_hi = 0;
        m->ppv = m->ppv_lo = m->ppv_hi = m->npv = m->npv_lo = m->npv_hi = 0;
        if (m->withheld_reason && m->withheld_reason != protobuf_c_empty_string)
            free(m->withheld_reason);
        m->withheld_reason = NULL;
        return set_reason_str(&m->withheld_reason,
                              "too close to a score-histogram bin edge (too few persons "
                              "between them)");
    }
    for (size_t b = a->idx - 1; b <= a->idx; b++) {
        Sdefed__CalibrationBin *c = v->bins[b];
        vc_suppress(c->n);
        vc_suppress(c->events);
        c->released = false;
        c->mean_predicted = c->observed = 0;
    }
    return 0;
}

static int cmp_anchor(const void *a, const void *b)
{
    const anchor *x = *(const anchor *const *)a, *y = *(const anchor *const *)b;
    return x->x < y->x ? -1 : x->x > y->x;
}

/* Differencing between the released partitions (the safety net under
 * fill_histogram's cuts): the histogram's bins, the thresholds (score >=
 * t) and the calibration bins together determine the counts of every
 * piece an anchor left inside a histogram bin cuts out of it. A piece
 * between two cuts that reveal events (histogram edges, thresholds,
 * calibration edges with events) must have passing events and non-events;
 * next to an n-only calibration edge its n must pass. Otherwise the anchor
 * is withheld (a threshold, or both calibration bins at the edge), until
 * every piece passes. */
static int check_anchors(query_ctx *q, const score_index *ix, Sdefed__Validation *v)
{
    size_t cap = v->n_thresholds + v->n_bins;
    if (cap == 0 || v->n_histogram == 0)
        return 0;
    anchor *a = calloc(cap, sizeof *a);
    anchor **in = calloc(cap, sizeof *in);
    int err = 0;
    if (!a || !in) {
        err = SDF_ENOMEM;
        goto out;
    }
    size_t na = anchors_collect(v, a);
    for (size_t h = 0; h < v->n_histogram && err == 0; h++) {
        double lo = v->histogram[h]->lo;
        double hi = h + 1 == v->n_histogram ? INFINITY : v->histogram[h]->hi;
        for (;;) {
            size_t k = 0;
            for (size_t i = 0; i < na; i++)
                if (!a[i].removed && a[i].x > lo && a[i].x < hi)
                    in[k++] = &a[i];
            if (k == 0)
                break;
            qsort(in, k, sizeof *in, cmp_anchor);
            anchor *bad = NULL;
            for (size_t i = 0; i <= k && !bad; i++) {
                double pa = i == 0 ? lo : in[i - 1]->x, pb = i == k ? hi : in[i]->x;
                bool n_only = (i > 0 && in[i - 1]->strength == ANCHOR_N) ||
                              (i < k && in[i]->strength == ANCHOR_N);
                int64_t e, ne;
                index_count(ix, pa, pb, &e, &ne);
                bool ok = n_only ? count_passes(q, e + ne)
                                 : count_passes(q, e) && count_passes(q, ne);
                if (!ok)
                    bad = i < k ? in[i] : in[i - 1];
            }
            if (!bad)
                break;
            /* every anchor at bad's position goes with it (the same cut) */
            double x = bad->x;
            for (size_t i = 0; i < na && err == 0; i++)
                if (!a[i].removed && a[i].x == x) {
                    a[i].removed = true;
                    err = withhold_anchor(q, v, &a[i]);
                }
            if (err)
                break;
        }
    }
out:
    free(a);
    free(in);
    return err;
}

static Sdefed__AucComparison *comparison_new(const Sdefed__ValidateSpec *vs)
{
    Sdefed__AucComparison *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    sdefed__auc_comparison__init(c);
    c->version_a = strdup(vs->compare_versions[0]);
    c->version_b = strdup(vs->compare_versions[1]);
    if (!c->version_a || !c->version_b) {
        sdefed__auc_comparison__free_unpacked(c, NULL);
        return NULL;
    }
    return c;
}

/* Paired DeLong comparison of version a (g->score_a) with version b
 * (g->score) on the group's persons. */
static int fill_comparison(const Sdefed__ValidateSpec *vs, const group_data *g,
                           Sdefed__Validation *v)
{
    Sdefed__AucComparison *c = comparison_new(vs);
    if (!c)
        return SDF_ENOMEM;
    v->comparison = c;
    metrics_auc_diff d;
    int err = metrics_auc_paired(g->score_a, g->score, g->label, g->n, &d);
    if (err)
        return err;
    c->released = true;
    c->auc_a = r4(d.auc_a);
    c->auc_b = r4(d.auc_b);
    c->diff = r4(d.diff);
    c->diff_se = sig4(d.se);
    c->diff_lo = r4(d.lo);
    c->diff_hi = r4(d.hi);
    c->p_value = d.p >= 1e-4 ? r4(d.p) : sig4(d.p);
    return 0;
}

/* Histogram, ROC, the differencing check and the comparison of a released group. */
static int fill_more(query_ctx *q, const Sdefed__ValidateSpec *vs, const group_data *g,
                     Sdefed__Validation *v)
{
    score_index ix = { .g = g };
    int err = fill_histogram(q, vs, g, &ix, v);
    if (err == 0 && ix.ce)
        err = check_anchors(q, &ix, v);
    index_free(&ix);
    if (err == 0 && vs->n_compare_versions == 2 && g->score_a)
        err = fill_comparison(vs, g, v);
    return err;
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
    if ((err = fill_bins(q, vs, g, v)))
        return err;
    return fill_more(q, vs, g, v);   /* issue 5 items 3/4 */
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
            if (g->score_a)
                g->score_a[g->n] = rows[i].score_a;
            g->label[g->n] = rows[i].label;
            g->events += rows[i].label;
            g->n++;
        }
    int64_t nonevents = (int64_t)g->n - g->events;
    if (withheld || g->events < q->policy->min_cell || nonevents < q->policy->min_cell) {
        q->rules |= DISC_RULE_SMALL_COUNT;
        if (vs->n_compare_versions == 2) {   /* issue 5 items 3/4: withheld with the group */
            if (!(v->comparison = comparison_new(vs)) ||
                set_reason_str(&v->comparison->withheld_reason, "the group is withheld"))
                return SDF_ENOMEM;
        }
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

/* ---- compare_versions: pair two versions' rows on the person (issue 5 items 3/4) ---- */

static int cmp_person_ver(const void *a, const void *b)
{
    const vrow *x = a, *y = b;
    if (x->person != y->person)
        return x->person < y->person ? -1 : 1;
    return (int)x->ver - (int)y->ver;
}

/* Keep one row per person with exactly one row of each version: version
 * b's row, carrying version a's score in score_a. Persons with one version
 * only are dropped (how many is not released). */
static int pair_versions(query_ctx *q, load_ctx *L)
{
    qsort(L->rows, L->n, sizeof *L->rows, cmp_person_ver);
    size_t out = 0;
    for (size_t i = 0; i < L->n;) {
        size_t j = i, na = 0, nb = 0;
        while (j < L->n && L->rows[j].person == L->rows[i].person) {
            if (L->rows[j].ver)
                nb++;
            else
                na++;
            j++;
        }
        if (na > 1 || nb > 1)
            return refuse(q, "validate.compare_versions: a person has more than one row of one "
                             "model version (pairing needs one row per person and version)");
        if (na == 1 && nb == 1) {
            vrow a = L->rows[i], b = L->rows[i + 1];
            if (L->has_label && a.label != b.label)
                return refuse(q, "validate.compare_versions: the two versions' rows of a person "
                                 "have different labels");
            b.score_a = a.score;
            L->rows[out++] = b;
        }
        i = j;
    }
    L->n = out;
    if (out == 0)
        return refuse(q, "validate.compare_versions: no person has rows of both model versions");
    return 0;
}

/* ---- subgroups from OMOP: sex and age band at the prediction date ---- */

typedef struct person_rec {
    int64_t id, gender, yob, mob, dob;
} person_rec;

typedef struct person_ctx {
    query_ctx *q;
    person_rec *p;
    size_t n, cap;
} person_ctx;

static int person_row(void *ctx, const db_value *cols, int ncols)
{
    person_ctx *P = ctx;
    if (ncols != 5)
        return SDF_EDB;
    if (cols[0].is_null)
        return 0;
    if (P->n == P->cap) {
        if (P->cap >= VALIDATE_MAX_ROWS)
            return refuse(P->q, "validate.subgroups_from: more than %zu persons",
                          VALIDATE_MAX_ROWS);
        size_t nc = P->cap ? P->cap * 2 : 4096;
        person_rec *np = realloc(P->p, nc * sizeof *np);
        if (!np)
            return SDF_ENOMEM;
        P->p = np;
        P->cap = nc;
    }
    person_rec *r = &P->p[P->n++];
    r->id = cols[0].i;
    r->gender = cols[1].is_null ? 0 : cols[1].i;
    r->yob = cols[2].is_null ? -1 : cols[2].i;
    r->mob = cols[3].is_null ? 1 : cols[3].i;
    r->dob = cols[4].is_null ? 1 : cols[4].i;
    return 0;
}

static int one_int_row(void *ctx, const db_value *cols, int ncols)
{
    int64_t *out = ctx;
    if (ncols != 1 || cols[0].is_null)
        return SDF_EDB;
    *out = cols[0].i;
    return 0;
}

static int cmp_person_rec(const void *a, const void *b)
{
    const person_rec *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Civil date of a day count since 1970-01-01 (proleptic Gregorian). */
static void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

static int intern_level(query_ctx *q, load_ctx *L, size_t b, const char *lab, uint8_t *out)
{
    size_t k = 0;
    while (k < L->n_levels[b] && strcmp(L->levels[b][k], lab) != 0)
        k++;
    if (k == L->n_levels[b]) {
        if (k == VALIDATE_MAX_LEVELS)
            return refuse(q, "validate.by '%s': more than %d distinct values", L->by_name[b],
                          VALIDATE_MAX_LEVELS);
        snprintf(L->levels[b][k], sizeof L->levels[b][k], "%s", lab);
        L->n_levels[b]++;
    }
    *out = (uint8_t)k;
    return 0;
}

/* Set the `sex` / `age_band` levels of every row from the OMOP person
 * table of validate.subgroups_from, joined on the person id here. Age is
 * in whole years at the prediction date (a missing month or day of birth
 * counts as 1); bands as for count (age_band_width, top band 90+ for
 * width 10); a person missing from `person` is "unknown". */
static int omop_subgroups(query_ctx *q, const Sdefed__QuerySpec *spec, load_ctx *L)
{
    const Sdefed__ValidateSpec *vs = spec->validate;
    const agent_dataset *od = NULL;
    for (size_t k = 0; k < q->cfg->n_datasets && k < AGENT_MAX_DATASETS; k++)
        if (strcmp(q->cfg->datasets[k].name, vs->subgroups_from) == 0)
            od = &q->cfg->datasets[k];
    if (!od || strcmp(od->type, "omop") != 0)
        return refuse(q, "validate.subgroups_from: not an OMOP dataset of this site");
    db_conn *db = NULL;
    int err = db_open(od, q->deadline_unix_ms, q->cancel, &db);
    if (err)
        return err == SDF_ECONFIG ? SDF_EDB : err;
    char day[1024], sql[1100];
    int64_t epoch = 0;
    person_ctx P = { .q = q };
    if (db_sql_day(db, "'1970-01-01'", day, sizeof day) < 0 ||
        snprintf(sql, sizeof sql, "SELECT %s", day) >= (int)sizeof sql) {
        db_close(db);
        return SDF_EOVERFLOW;
    }
    err = db_query(db, sql, NULL, 0, one_int_row, &epoch);
    if (err == 0)
        err = db_query(db, "SELECT person_id, gender_concept_id, year_of_birth, month_of_birth, "
                           "day_of_birth FROM person", NULL, 0, person_row, &P);
    db_close(db);
    if (err) {
        free(P.p);
        return err;
    }
    qsort(P.p, P.n, sizeof *P.p, cmp_person_rec);
    int64_t w = spec->age_band_width >= 1 && spec->age_band_width <= SPEC_MAX_AGE_BAND_WIDTH
                    ? (int64_t)spec->age_band_width : 10;
    int64_t top = (90 / w) * w;
    for (size_t i = 0; i < L->n && err == 0; i++) {
        vrow *r = &L->rows[i];
        person_rec key = { .id = r->person };
        const person_rec *pr = bsearch(&key, P.p, P.n, sizeof *P.p, cmp_person_rec);
        for (size_t b = 0; b < L->n_by && err == 0; b++) {
            char lab[40] = "unknown";
            if (L->virt[b] == 1 && pr)
                snprintf(lab, sizeof lab, "%s", pr->gender == 8507   ? "male"
                                                 : pr->gender == 8532 ? "female"
                                                                      : "unknown");
            if (L->virt[b] == 2 && pr && pr->yob >= 0) {
                int64_t y, m, d;
                civil_from_days(r->day - epoch, &y, &m, &d);
                int64_t age = y - pr->yob - ((m < pr->mob || (m == pr->mob && d < pr->dob)) ? 1 : 0);
                if (age >= top)
                    snprintf(lab, sizeof lab, "%" PRId64 "+", top);
                else if (age >= 0)
                    snprintf(lab, sizeof lab, "%" PRId64 "-%" PRId64, age / w * w,
                             age / w * w + w - 1);
            }
            if (L->virt[b])
                err = intern_level(q, L, b, lab, &r->cat[b]);
        }
    }
    free(P.p);
    return err;
}

static int quote_table(const agent_dataset *ds, char *buf, size_t len)
{
    int w = ds->schema[0] && strcmp(ds->backend, "postgres") == 0
                ? snprintf(buf, len, "\"%s\".\"%s\"", ds->schema, ds->table)
                : snprintf(buf, len, "\"%s\"", ds->table);
    return w < 0 || (size_t)w >= len ? SDF_EOVERFLOW : 0;
}

/* issue 5 item 2: a model shipped as a scorecard. agent/scorecard.c scores
 * every person of validate.cohort in the OMOP dataset ds at their index
 * date; the rows are then labelled from the OMOP outcome, given their
 * `sex` / `age_band` levels from the same dataset's person table when
 * asked (omop_subgroups: spec_validate allows only those two `by` names
 * with a scorecard and sets subgroups_from to the dataset), and go through
 * the same group/metrics/disclosure code as a predictions table's. */
static int validate_scorecard(query_ctx *q, const agent_dataset *ds,
                              const Sdefed__QuerySpec *spec, Sdefed__QueryResult *res)
{
    const Sdefed__ValidateSpec *vs = spec->validate;
    if (q->policy->dp_epsilon > 0.0)
        return refuse(q, "validate: not available with differential privacy");
    if (!vs->outcome || vs->n_by > SPEC_MAX_STRATIFIERS)
        return refuse(q, "validate.scorecard: needs validate.outcome");
    for (size_t b = 0; b < vs->n_by; b++)
        if (strcmp(vs->by[b], "sex") != 0 && strcmp(vs->by[b], "age_band") != 0)
            return refuse(q, "validate.by[%zu]: with a scorecard, only sex and age_band", b);
    scorecard_row *sr = NULL;
    size_t n = 0;
    int err = scorecard_score(q, ds, spec, &sr, &n);
    if (err)
        return err;
    load_ctx *Lp = calloc(1, sizeof *Lp);   /* large (the level labels): on the heap */
    group_data g = { .score = malloc(n * sizeof *g.score), .label = malloc(n) };
    if (!Lp || !(Lp->rows = calloc(n, sizeof *Lp->rows)) || !g.score || !g.label) {
        err = SDF_ENOMEM;
        goto out;
    }
    Lp->q = q;
    Lp->n = Lp->cap = n;
    Lp->n_by = vs->n_by;
    for (size_t b = 0; b < vs->n_by; b++) {
        Lp->virt[b] = vs->by[b][0] == 's' ? 1 : 2;
        Lp->by_name[b] = vs->by[b][0] == 's' ? "sex" : "age_band";
    }
    bool constant = true;
    for (size_t i = 0; i < n; i++) {
        Lp->rows[i].person = sr[i].person;
        Lp->rows[i].day = sr[i].day;
        Lp->rows[i].score = sr[i].score;
        constant = constant && sr[i].score == sr[0].score;
    }
    if (constant) {
        err = refuse(q, "validate.scorecard: every scored person has the same score (nothing "
                        "to discriminate)");
        goto out;
    }
    if ((err = label_from_omop(q, vs->outcome, Lp->rows, n)))
        goto out;
    if (vs->n_by && (err = omop_subgroups(q, spec, Lp)))
        goto out;
    size_t n_groups = 1;
    for (size_t b = 0; b < Lp->n_by; b++)
        n_groups += Lp->n_levels[b];
    if (!(res->validations = calloc(n_groups, sizeof *res->validations))) {
        err = SDF_ENOMEM;
        goto out;
    }
    err = add_group(q, vs, Lp->rows, n, -1, 0, false, NULL, NULL, &g, res);
    for (size_t b = 0; b < Lp->n_by && err == 0; b++) {
        bool wh[VALIDATE_MAX_LEVELS];
        withheld_levels(q, Lp->rows, n, b, Lp->n_levels[b], wh);
        for (size_t k = 0; k < Lp->n_levels[b] && err == 0; k++)
            err = add_group(q, vs, Lp->rows, n, (int)b, k, wh[k], Lp->by_name[b],
                            Lp->levels[b][k], &g, res);
    }
    /* the whole site withheld: release nothing but that */
    if (err == 0 && !res->validations[0]->released && res->n_validations > 1) {
        for (size_t k = 1; k < res->n_validations; k++)
            sdefed__validation__free_unpacked(res->validations[k], NULL);
        res->n_validations = 1;
    }
out:
    free(sr);
    if (Lp)
        free(Lp->rows);
    free(Lp);
    free(g.score);
    free(g.label);
    return err;
}

int query_validate_run(query_ctx *q, const agent_dataset *ds, const Sdefed__QuerySpec *spec,
                       Sdefed__QueryResult *res)
{
    const Sdefed__ValidateSpec *vs = spec->validate;
    if (vs->scorecard)   /* issue 5 item 2: scored here from OMOP (agent/scorecard.c) */
        return validate_scorecard(q, ds, spec, res);
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
    /* issue 6 item 3: only prediction dates in [validate.from, validate.to] */
    bool dated = (vs->from && *vs->from) || (vs->to && *vs->to);
    if (dated && !date)
        return refuse(q, "validate.from/to: dataset '%s' declares no date column", ds->name);
    /* issue 5 items 3/4 */
    bool compare = vs->n_compare_versions == 2;
    bool omop_sub = vs->subgroups_from && *vs->subgroups_from, need_age = false;
    if (compare && !mv)
        return refuse(q, "validate.compare_versions: dataset '%s' declares no model_version "
                         "column", ds->name);

    load_ctx *Lp = calloc(1, sizeof *Lp);   /* large (the level labels): on the heap */
    if (!Lp)
        return SDF_ENOMEM;
    Lp->q = q;
    Lp->has_label = vs->outcome == NULL;
    Lp->has_day = vs->outcome != NULL || dated;   /* dated: a NULL date refuses */
    Lp->n_by = vs->n_by;
    Lp->compare = compare;
    Lp->ver_b = compare ? vs->compare_versions[1] : NULL;
    for (size_t b = 0; b < vs->n_by; b++) {
        if (omop_sub && (strcmp(vs->by[b], "sex") == 0 || strcmp(vs->by[b], "age_band") == 0)) {
            Lp->virt[b] = vs->by[b][0] == 's' ? 1 : 2;   /* issue 5: from OMOP */
            Lp->by_name[b] = vs->by[b][0] == 's' ? "sex" : "age_band";
            need_age = need_age || Lp->virt[b] == 2;
            continue;
        }
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
    if (need_age) {   /* the age band is taken at the prediction date */
        if (!date) {
            free(Lp);
            return refuse(q, "validate.by: age_band needs a date column in dataset '%s'",
                          ds->name);
        }
        Lp->has_day = true;
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
        w += Lp->virt[b] ? snprintf(sql + w, sizeof sql - (size_t)w, ", NULL")
                         : snprintf(sql + w, sizeof sql - (size_t)w, ", \"%s\"", Lp->by_name[b]);
    if (compare && w > 0 && (size_t)w < sizeof sql)
        w += snprintf(sql + w, sizeof sql - (size_t)w, ", \"%s\"", mv->name);
    if (w > 0 && (size_t)w < sizeof sql)
        w += snprintf(sql + w, sizeof sql - (size_t)w, " FROM %s", tbl);
    db_param mvp[4] = { { .type = DB_PARAM_TEXT, .s = vs->model_version } };
    size_t np = 0;
    if (compare && w > 0 && (size_t)w < sizeof sql) {   /* issue 5: the two versions */
        char ph1[32], ph2[32];
        if (db_sql_param(db, 1, ph1, sizeof ph1) < 0 || db_sql_param(db, 2, ph2, sizeof ph2) < 0) {
            err = SDF_EOVERFLOW;
            goto out;
        }
        mvp[0] = (db_param){ .type = DB_PARAM_TEXT, .s = vs->compare_versions[0] };
        mvp[1] = (db_param){ .type = DB_PARAM_TEXT, .s = vs->compare_versions[1] };
        w += snprintf(sql + w, sizeof sql - (size_t)w, " WHERE \"%s\" IN (%s, %s)", mv->name,
                      ph1, ph2);
        np = 2;
    }
    if (vs->model_version && *vs->model_version && w > 0 && (size_t)w < sizeof sql) {
        char ph[32];
        if (db_sql_param(db, 1, ph, sizeof ph) < 0) {
            err = SDF_EOVERFLOW;
            goto out;
        }
        w += snprintf(sql + w, sizeof sql - (size_t)w, " WHERE \"%s\" = %s", mv->name, ph);
        np = 1;
    }
    if (dated && w > 0 && (size_t)w < sizeof sql) {
        /* rows with a NULL date pass the filter so that load_row refuses them */
        char qd[80], iso[1024], ph[32];
        snprintf(qd, sizeof qd, "\"%s\"", date->name);
        if (db_sql_date_iso(db, qd, iso, sizeof iso) < 0) {
            err = SDF_EOVERFLOW;
            goto out;
        }
        w += snprintf(sql + w, sizeof sql - (size_t)w, " %s (%s IS NULL OR (1 = 1",
                      np ? "AND" : "WHERE", iso);
        const char *bound[2] = { vs->from, vs->to };
        for (int k = 0; k < 2 && w > 0 && (size_t)w < sizeof sql; k++) {
            if (!bound[k] || !*bound[k])
                continue;
            mvp[np] = (db_param){ .type = DB_PARAM_TEXT, .s = bound[k] };
            if (db_sql_param(db, (int)np + 1, ph, sizeof ph) < 0) {
                err = SDF_EOVERFLOW;
                goto out;
            }
            np++;
            w += snprintf(sql + w, sizeof sql - (size_t)w, " AND %s %s %s", iso,
                          k == 0 ? ">=" : "<=", ph);
        }
        if (w > 0 && (size_t)w < sizeof sql)
            w += snprintf(sql + w, sizeof sql - (size_t)w, "))");
    }
    if (w < 0 || (size_t)w >= sizeof sql) {
        err = SDF_EOVERFLOW;
        goto out;
    }
    err = db_query(db, sql, np ? mvp : NULL, np, load_row, Lp);
    db_close(db);
    db = NULL;
    if (err)
        goto out;
    if (Lp->n == 0) {
        err = refuse(q, "predictions: no rows%s%s",
                     vs->model_version && *vs->model_version ? " for this model_version" : "",
                     dated ? " with a date in validate.from..to" : "");
        goto out;
    }
    if (compare && (err = pair_versions(q, Lp)))   /* issue 5 items 3/4 */
        goto out;
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
    if (omop_sub && (err = omop_subgroups(q, spec, Lp)))   /* issue 5 items 3/4 */
        goto out;

    size_t n_groups = 1;
    for (size_t b = 0; b < Lp->n_by; b++)
        n_groups += Lp->n_levels[b];
    res->validations = calloc(n_groups, sizeof *res->validations);
    g.score = malloc(Lp->n * sizeof *g.score);
    g.label = malloc(Lp->n);
    if (compare && !(g.score_a = malloc(Lp->n * sizeof *g.score_a))) {
        err = SDF_ENOMEM;
        goto out;
    }
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
    free(g.score_a);
    free(g.label);
    free(Lp->rows);
    free(Lp);
    return err;
}
