/* coordinator/pool_validate.c — random-effects AUC and summed cells for `validate`.
 *
 * See pool_validate.h. Sites answer with one Validation per group (the
 * whole site, strata empty, then each released subgroup); groups are
 * matched across sites by their strata. Only released groups contribute.
 * A summed count is marked with status SUPPRESSED if every contributing
 * site suppressed it; otherwise it is the sum of what was released and the
 * group is `partial` when some site withheld part of it. Rates at a
 * threshold are pooled only when every contributing site released all four
 * cells there (otherwise a sum of some sites' cells would be misread).
 */
#include "pool_validate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define Z95 1.959963984540054
#define POOL_MAX_GROUPS 4096

static const double t975[30] = {
    12.7062047, 4.3026527, 3.1824463, 2.7764451, 2.5705818, 2.4469119, 2.3646243,
    2.3060041,  2.2621572, 2.2281389, 2.2009852, 2.1788128, 2.1603687, 2.1447867,
    2.1314495,  2.1199053, 2.1098156, 2.1009220, 2.0930241, 2.0859634, 2.0796138,
    2.0738731,  2.0686576, 2.0638986, 2.0595386, 2.0555294, 2.0518305, 2.0484071,
    2.0452296,  2.0422725,
};

double pool_t975(unsigned df)
{
    if (df == 0)
        return INFINITY;
    if (df <= 30)
        return t975[df - 1];
    /* Cornish-Fisher expansion; error < 1e-6 beyond 30 df */
    double z = Z95, d = (double)df, z3 = z * z * z, z5 = z3 * z * z, z7 = z5 * z * z;
    return z + (z3 + z) / (4 * d) + (5 * z5 + 16 * z3 + 3 * z) / (96 * d * d) +
           (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * d * d * d);
}

int pool_meta_dl(const double *y, const double *v, size_t k, pool_meta *out)
{
    if (k == 0)
        return SDF_EINVAL;
    double sw = 0, sw2 = 0, swy = 0;
    for (size_t i = 0; i < k; i++) {
        if (!(v[i] > 0) || !isfinite(v[i]) || !isfinite(y[i]))
            return SDF_EINVAL;
        double w = 1.0 / v[i];
        sw += w;
        sw2 += w * w;
        swy += w * y[i];
    }
    double yf = swy / sw, q = 0;
    for (size_t i = 0; i < k; i++)
        q += (y[i] - yf) * (y[i] - yf) / v[i];
    double df = (double)k - 1, c = sw - sw2 / sw;
    double tau2 = (k > 1 && c > 0 && q > df) ? (q - df) / c : 0.0;
    double sws = 0, swsy = 0;
    for (size_t i = 0; i < k; i++) {
        double w = 1.0 / (v[i] + tau2);
        sws += w;
        swsy += w * y[i];
    }
    memset(out, 0, sizeof *out);
    out->k = k;
    out->mu = swsy / sws;
    out->se = sqrt(1.0 / sws);
    out->lo = out->mu - Z95 * out->se;
    out->hi = out->mu + Z95 * out->se;
    out->q = q;
    out->tau2 = tau2;
    out->i2 = (k > 1 && q > df) ? (q - df) / q : 0.0;
    if (k >= 3) {
        double h = pool_t975((unsigned)(k - 2)) * sqrt(tau2 + out->se * out->se);
        out->has_pi = true;
        out->pi_lo = out->mu - h;
        out->pi_hi = out->mu + h;
    }
    return 0;
}

static double expit(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

int pool_meta_auc(const double *auc, const double *se, size_t k, pool_meta *out)
{
    if (k == 0 || k > POOL_MAX_GROUPS * 16)
        return SDF_EINVAL;
    double *y = malloc(2 * k * sizeof *y);
    if (!y)
        return SDF_ENOMEM;
    double *v = y + k;
    for (size_t i = 0; i < k; i++) {
        if (!(auc[i] > 0 && auc[i] < 1) || !(se[i] > 0)) {
            free(y);
            return SDF_EINVAL;
        }
        y[i] = log(auc[i] / (1 - auc[i]));
        double d = se[i] / (auc[i] * (1 - auc[i]));
        v[i] = d * d;
    }
    int rc = pool_meta_dl(y, v, k, out);
    free(y);
    if (rc)
        return rc;
    out->mu = expit(out->mu);
    out->lo = expit(out->lo);
    out->hi = expit(out->hi);
    if (out->has_pi) {
        out->pi_lo = expit(out->pi_lo);
        out->pi_hi = expit(out->pi_hi);
    }
    return 0;
}

/* ---- pooling the messages ---- */

static int strata_key(Sdefed__Stratum *const *st, size_t n, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(buf + off, len - off, "%s%s=%s", i ? "|" : "",
                         st[i]->name ? st[i]->name : "", st[i]->value ? st[i]->value : "");
        if (w < 0 || (size_t)w >= len - off)
            return SDF_EOVERFLOW;
        off += (size_t)w;
    }
    return 0;
}

static void wilson(int64_t x, int64_t n, double *est, double *lo, double *hi)
{
    double z2 = Z95 * Z95, nn = (double)n, p = (double)x / nn;
    double denom = 1 + z2 / nn, centre = (p + z2 / (2 * nn)) / denom;
    double half = Z95 * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / denom;
    *est = p;
    *lo = centre - half < 0 ? 0 : centre - half;
    *hi = centre + half > 1 ? 1 : centre + half;
}

static bool cell_released(const Sdefed__ValidateCount *c)
{
    return c && c->status != SDEFED__CELL_STATUS__CELL_SUPPRESSED &&
           c->status != SDEFED__CELL_STATUS__CELL_UNSPECIFIED;
}

static Sdefed__ValidateCount *count_new(void)
{
    Sdefed__ValidateCount *c = malloc(sizeof *c);
    if (c) {
        sdefed__validate_count__init(c);
        c->status = SDEFED__CELL_STATUS__CELL_SUPPRESSED;
    }
    return c;
}

/* Add a site's released count into a pooled one; false if it was withheld. */
static bool count_add(Sdefed__ValidateCount *acc, const Sdefed__ValidateCount *c)
{
    if (!cell_released(c))
        return false;
    if (acc->status == SDEFED__CELL_STATUS__CELL_SUPPRESSED)
        acc->status = c->status;
    else if (c->status != SDEFED__CELL_STATUS__CELL_EXACT)
        acc->status = c->status;   /* rounded/noised dominates exact */
    acc->value += c->value;
    return true;
}

typedef struct group {
    char *key;
    Sdefed__PooledValidation *p;
    double *auc, *se;          /* per site, for the meta-analysis */
    size_t n_auc, cap_auc;     /* cap: the number of sites */
    bool *thr_partial;         /* per threshold of p */
} group;

static void pooled_free(Sdefed__PooledValidation *p)
{
    if (p)
        sdefed__pooled_validation__free_unpacked(p, NULL);
}

static Sdefed__PooledValidation *pooled_new(const Sdefed__Validation *v)
{
    Sdefed__PooledValidation *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    sdefed__pooled_validation__init(p);
    if (v->n_strata) {
        p->strata = calloc(v->n_strata, sizeof *p->strata);
        if (!p->strata)
            goto fail;
        for (size_t i = 0; i < v->n_strata; i++) {
            Sdefed__Stratum *s = malloc(sizeof *s);
            if (!s)
                goto fail;
            sdefed__stratum__init(s);
            p->strata[p->n_strata++] = s;
            s->name = strdup(v->strata[i]->name ? v->strata[i]->name : "");
            s->value = strdup(v->strata[i]->value ? v->strata[i]->value : "");
            if (!s->name || !s->value)
                goto fail;
        }
    }
    return p;
fail:
    pooled_free(p);
    return NULL;
}

static Sdefed__ThresholdMetrics *thr_new(double t)
{
    Sdefed__ThresholdMetrics *m = malloc(sizeof *m);
    if (!m)
        return NULL;
    sdefed__threshold_metrics__init(m);
    m->threshold = t;
    m->tp = count_new();
    m->fp = count_new();
    m->tn = count_new();
    m->fn = count_new();
    if (!m->tp || !m->fp || !m->tn || !m->fn) {
        sdefed__threshold_metrics__free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

static Sdefed__CalibrationBin *bin_new(double lo, double hi)
{
    Sdefed__CalibrationBin *b = malloc(sizeof *b);
    if (!b)
        return NULL;
    sdefed__calibration_bin__init(b);
    b->lo = lo;
    b->hi = hi;
    b->n = count_new();
    b->events = count_new();
    if (!b->n || !b->events) {
        sdefed__calibration_bin__free_unpacked(b, NULL);
        return NULL;
    }
    return b;
}

/* Merge one site's released validation into group g. */
static int group_add(group *g, const Sdefed__Validation *v)
{
    Sdefed__PooledValidation *p = g->p;
    /* a site repeating a group (it should not) contributes once at most
     * per slot: never more entries than sites */
    if (v->auc > 0 && v->auc < 1 && v->auc_se > 0 && g->n_auc < g->cap_auc) {
        g->auc[g->n_auc] = v->auc;
        g->se[g->n_auc] = v->auc_se;
        g->n_auc++;
    }
    for (size_t t = 0; t < v->n_thresholds; t++) {
        const Sdefed__ThresholdMetrics *x = v->thresholds[t];
        size_t j = 0;
        while (j < p->n_thresholds && p->thresholds[j]->threshold != x->threshold)
            j++;
        if (j == p->n_thresholds) {
            if (j >= 64)
                continue;
            if (!p->thresholds) {
                p->thresholds = calloc(64, sizeof *p->thresholds);
                g->thr_partial = calloc(64, sizeof *g->thr_partial);
                if (!p->thresholds || !g->thr_partial)
                    return SDF_ENOMEM;
            }
            if (!(p->thresholds[j] = thr_new(x->threshold)))
                return SDF_ENOMEM;
            p->n_thresholds++;
        }
        Sdefed__ThresholdMetrics *m = p->thresholds[j];
        bool all = count_add(m->tp, x->tp);
        all = count_add(m->fp, x->fp) && all;
        all = count_add(m->tn, x->tn) && all;
        all = count_add(m->fn, x->fn) && all;
        if (!all)
            g->thr_partial[j] = true;
    }
    for (size_t b = 0; b < v->n_bins; b++) {
        const Sdefed__CalibrationBin *x = v->bins[b];
        size_t j = 0;
        while (j < p->n_bins && p->bins[j]->lo != x->lo)
            j++;
        if (j == p->n_bins) {
            if (j >= 64)
                continue;
            if (!p->bins && !(p->bins = calloc(64, sizeof *p->bins)))
                return SDF_ENOMEM;
            if (!(p->bins[j] = bin_new(x->lo, x->hi)))
                return SDF_ENOMEM;
            p->n_bins++;
        }
        Sdefed__CalibrationBin *c = p->bins[j];
        /* mean_predicted accumulates sum(mean * n) and is divided at the end */
        if (x->released && cell_released(x->n) && cell_released(x->events)) {
            count_add(c->n, x->n);
            count_add(c->events, x->events);
            c->mean_predicted += x->mean_predicted * (double)x->n->value;
        } else {
            p->partial = true;
        }
    }
    return 0;
}

static void group_finish(group *g)
{
    Sdefed__PooledValidation *p = g->p;
    pool_meta m;
    if (g->n_auc > 0 && pool_meta_auc(g->auc, g->se, g->n_auc, &m) == 0) {
        p->sites = (uint32_t)g->n_auc;
        p->auc = m.mu;
        p->auc_lo = m.lo;
        p->auc_hi = m.hi;
        p->has_pi = m.has_pi;
        p->pi_lo = m.pi_lo;
        p->pi_hi = m.pi_hi;
        p->tau2 = m.tau2;
        p->i2 = m.i2;
        p->q = m.q;
    }
    for (size_t j = 0; j < p->n_thresholds; j++) {
        Sdefed__ThresholdMetrics *t = p->thresholds[j];
        if (g->thr_partial[j]) {
            p->partial = true;
            t->withheld_reason = strdup("some site withheld a cell at this threshold");
            if (!t->withheld_reason)
                t->withheld_reason = (char *)protobuf_c_empty_string;
            continue;
        }
        int64_t tp = t->tp->value, fp = t->fp->value, tn = t->tn->value, fn = t->fn->value;
        if (tp + fn <= 0 || tn + fp <= 0 || tp + fp <= 0 || tn + fn <= 0)
            continue;
        t->released = true;
        wilson(tp, tp + fn, &t->sensitivity, &t->sensitivity_lo, &t->sensitivity_hi);
        wilson(tn, tn + fp, &t->specificity, &t->specificity_lo, &t->specificity_hi);
        wilson(tp, tp + fp, &t->ppv, &t->ppv_lo, &t->ppv_hi);
        wilson(tn, tn + fn, &t->npv, &t->npv_lo, &t->npv_hi);
    }
    for (size_t j = 0; j < p->n_bins; j++) {
        Sdefed__CalibrationBin *c = p->bins[j];
        if (cell_released(c->n) && c->n->value > 0) {
            c->released = true;
            c->mean_predicted /= (double)c->n->value;
            c->observed = (double)c->events->value / (double)c->n->value;
        } else {
            c->mean_predicted = 0;
        }
    }
}

void pool_validations_free(Sdefed__FederatedResult *r)
{
    for (size_t i = 0; i < r->n_pooled_validations; i++)
        pooled_free(r->pooled_validations[i]);
    free(r->pooled_validations);
    r->pooled_validations = NULL;
    r->n_pooled_validations = 0;
}

int pool_validations(Sdefed__FederatedResult *r)
{
    size_t cap = 0, n = 0, nsites = r->n_sites ? r->n_sites : 1;
    group *g = NULL;
    char key[1024];
    int rc = 0;
    for (size_t s = 0; s < r->n_sites && rc == 0; s++) {
        const Sdefed__SiteResult *sr = r->sites[s];
        if (sr->status != SDEFED__SITE_STATUS__SITE_OK)
            continue;
        for (size_t k = 0; k < sr->n_validations && rc == 0; k++) {
            const Sdefed__Validation *v = sr->validations[k];
            if (!v->released || strata_key(v->strata, v->n_strata, key, sizeof key) != 0)
                continue;
            size_t j = 0;
            while (j < n && strcmp(g[j].key, key) != 0)
                j++;
            if (j == n) {
                if (n >= POOL_MAX_GROUPS)
                    continue;
                if (n == cap) {
                    size_t nc = cap ? cap * 2 : 8;
                    group *ng = realloc(g, nc * sizeof *ng);
                    if (!ng) {
                        rc = SDF_ENOMEM;
                        break;
                    }
                    g = ng;
                    cap = nc;
                }
                memset(&g[n], 0, sizeof g[n]);
                g[n].key = strdup(key);
                g[n].p = pooled_new(v);
                g[n].auc = calloc(2 * nsites, sizeof(double));
                n++;
                if (!g[j].key || !g[j].p || !g[j].auc) {
                    rc = SDF_ENOMEM;
                    break;
                }
                g[j].se = g[j].auc + nsites;
                g[j].cap_auc = nsites;
            }
            rc = group_add(&g[j], v);
        }
    }
    if (rc == 0 && n > 0) {
        r->pooled_validations = calloc(n, sizeof *r->pooled_validations);
        if (!r->pooled_validations)
            rc = SDF_ENOMEM;
    }
    for (size_t j = 0; j < n; j++) {
        if (rc == 0) {
            group_finish(&g[j]);
            r->pooled_validations[r->n_pooled_validations++] = g[j].p;
        } else {
            pooled_free(g[j].p);
        }
        free(g[j].key);
        free(g[j].auc);
        free(g[j].thr_partial);
    }
    free(g);
    return rc;
}
