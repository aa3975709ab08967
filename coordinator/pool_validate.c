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
#include "pool.h"   /* pool_key */

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

/* ---- pooled ROC from histograms (issue 5 items 3/4) ---- */

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* Most histogram bins merged into one pooled ROC (all sites of a group). */
#define POOL_MAX_HIST_BINS ((size_t)1 << 18)

/* A bin by its first elementary interval (for the overlap scan). */
typedef struct bin_at {
    size_t ja, b;
} bin_at;

static int cmp_bin_at(const void *a, const void *b)
{
    const bin_at *x = a, *y = b;
    if (x->ja != y->ja)
        return x->ja < y->ja ? -1 : 1;
    return x->b < y->b ? -1 : x->b > y->b;
}

static size_t cut_index(const double *cuts, size_t n, double x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cuts[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void pool_roc_free(pool_roc *r)
{
    if (r) {
        free(r->fpr);
        memset(r, 0, sizeof *r);
    }
}

#define EM_ITERATIONS 500
#define EM_SMOOTH 0.2   /* EMS: share of each density moved to its neighbours per step */

/* Mass weights p[j] over J elementary intervals (widths w) for one label's
 * counts c[b] over intervals [ja[b], jb[b]): Turnbull's EM for grouped
 * data with a light smoothing step (EMS, Silverman et al. 1990), started
 * from the split proportional to width. tmp holds 2 J doubles. A bin's
 * count is then split over its intervals in proportion to p. */
static void em_weights(const double *c, const size_t *ja, const size_t *jb, size_t nb,
                       const double *w, size_t J, double *p, double *tmp)
{
    double total = 0;
    for (size_t j = 0; j < J; j++)
        p[j] = 0;
    for (size_t b = 0; b < nb; b++) {
        double W = 0;
        for (size_t j = ja[b]; j < jb[b]; j++)
            W += w[j];
        for (size_t j = ja[b]; j < jb[b]; j++)
            p[j] += c[b] * w[j] / W;
        total += c[b];
    }
    if (!(total > 0))
        return;
    double *d = tmp + J;
    for (int it = 0; it < EM_ITERATIONS; it++) {
        for (size_t j = 0; j < J; j++)
            tmp[j] = 0;
        for (size_t b = 0; b < nb; b++) {
            double S = 0, W = 0;
            for (size_t j = ja[b]; j < jb[b]; j++) {
                S += p[j];
                W += w[j];
            }
            for (size_t j = ja[b]; j < jb[b]; j++)
                tmp[j] += S > 0 ? c[b] * p[j] / S : c[b] * w[j] / W;
        }
        double t2 = 0;
        for (size_t j = 0; j < J; j++)
            d[j] = tmp[j] / w[j];
        for (size_t j = 0; j < J; j++) {
            double l = j ? d[j - 1] : d[j], r = j + 1 < J ? d[j + 1] : d[j];
            tmp[j] = ((1 - EM_SMOOTH) * d[j] + EM_SMOOTH * 0.5 * (l + r)) * w[j];
            t2 += tmp[j];
        }
        double delta = 0;
        for (size_t j = 0; j < J; j++) {
            double x = t2 > 0 ? tmp[j] * total / t2 : 0;
            if (fabs(x - p[j]) > delta)
                delta = fabs(x - p[j]);
            p[j] = x;
        }
        if (delta < 1e-10 * total)
            break;
    }
}

/* Bin b's count split over its intervals in proportion to p: out[j - ja]. */
static void bin_split(double c, size_t ja, size_t jb, const double *p, const double *w,
                      double *out)
{
    double S = 0, W = 0;
    for (size_t j = ja; j < jb; j++) {
        S += p[j];
        W += w[j];
    }
    for (size_t j = ja; j < jb; j++)
        out[j - ja] = S > 0 ? c * p[j] / S : c * w[j] / W;
}

int pool_roc_merge(const pool_hbin *bins, size_t nbins, pool_roc *out)
{
    memset(out, 0, sizeof *out);
    if (nbins == 0 || nbins > POOL_MAX_HIST_BINS)
        return SDF_EINVAL;
    double te = 0, tn = 0;
    for (size_t b = 0; b < nbins; b++) {
        if (!(bins[b].lo < bins[b].hi) || !(bins[b].events >= 0) || !(bins[b].nonevents >= 0) ||
            !isfinite(bins[b].lo) || !isfinite(bins[b].hi) || !isfinite(bins[b].events) ||
            !isfinite(bins[b].nonevents))
            return SDF_EINVAL;
        te += bins[b].events;
        tn += bins[b].nonevents;
    }
    if (!(te > 0) || !(tn > 0))
        return SDF_EINVAL;
    size_t nc = 2 * nbins;
    double *cuts = malloc(nc * sizeof *cuts);
    size_t *ja = malloc(2 * nbins * sizeof *ja);
    double *cnt = malloc(2 * nbins * sizeof *cnt);
    double *work = malloc(8 * nc * sizeof *work);
    int rc = 0;
    if (!cuts || !ja || !cnt || !work) {
        rc = SDF_ENOMEM;
        goto out;
    }
    size_t *jb = ja + nbins;
    for (size_t b = 0; b < nbins; b++) {
        cuts[2 * b] = bins[b].lo;
        cuts[2 * b + 1] = bins[b].hi;
        cnt[b] = bins[b].events;
        cnt[nbins + b] = bins[b].nonevents;
    }
    qsort(cuts, nc, sizeof *cuts, cmp_dbl);
    size_t m = 0;
    for (size_t i = 0; i < nc; i++)
        if (m == 0 || cuts[i] != cuts[m - 1])
            cuts[m++] = cuts[i];
    size_t J = m - 1;
    double *w = work, *pe = work + nc, *pn = work + 2 * nc, *E = work + 3 * nc,
           *N = work + 4 * nc, *tmp = work + 5 * nc, *sa = work + 6 * nc, *sb = work + 7 * nc;
    for (size_t j = 0; j < J; j++)
        w[j] = cuts[j + 1] - cuts[j];
    for (size_t b = 0; b < nbins; b++) {
        ja[b] = cut_index(cuts, m, bins[b].lo);
        jb[b] = cut_index(cuts, m, bins[b].hi);
    }
    em_weights(cnt, ja, jb, nbins, w, J, pe, tmp);
    em_weights(cnt + nbins, ja, jb, nbins, w, J, pn, tmp);
    for (size_t j = 0; j < J; j++)
        E[j] = N[j] = 0;
    for (size_t b = 0; b < nbins; b++) {   /* every bin keeps exactly its own counts */
        bin_split(cnt[b], ja[b], jb[b], pe, w, sa);
        bin_split(cnt[nbins + b], ja[b], jb[b], pn, w, sb);
        for (size_t j = ja[b]; j < jb[b]; j++) {
            E[j] += sa[j - ja[b]];
            N[j] += sb[j - ja[b]];
        }
    }

    out->fpr = malloc(3 * (J + 1) * sizeof *out->fpr);
    if (!out->fpr) {
        rc = SDF_ENOMEM;
        goto out;
    }
    out->tpr = out->fpr + (J + 1);
    out->thr = out->tpr + (J + 1);
    double sE = 0, sN = 0, area = 0, ce = 0, cn = 0;
    for (size_t j = 0; j < J; j++) {
        sE += E[j];
        sN += N[j];
    }
    /* from the top: the cut above everything, then each lower edge */
    out->fpr[0] = out->tpr[0] = 0;
    out->thr[0] = cuts[J];
    out->n = 1;
    for (size_t j = J; j-- > 0;) {
        double ce2 = ce + E[j], cn2 = cn + N[j];
        area += (cn2 - cn) * (ce + ce2) / 2.0;
        ce = ce2;
        cn = cn2;
        out->fpr[out->n] = cn / sN;
        out->tpr[out->n] = ce / sE;
        out->thr[out->n] = cuts[j];
        out->n++;
    }
    out->auc = area / (sE * sN);
    /* The bound (docs/validate.md): the area is a sum over pairs (event
     * bin b, non-event bin c) of est_bc = sum_j a_b[j] (A_c(<j) + a_c[j]/2).
     * Bins that do not overlap are ordered, and there est_bc is exact (0 or
     * e_b n_c); for overlapping ones the truth t_bc and est_bc both lie in
     * [0, e_b n_c], so |truth - estimate| <= max(sum est_bc, sum (e_b n_c -
     * est_bc)) over the overlapping pairs. */
    double s_est = 0, s_full = 0;
    size_t lmax = 0;
    bin_at *order = malloc(nbins * sizeof *order);
    if (!order) {
        rc = SDF_ENOMEM;
        goto out;
    }
    for (size_t b = 0; b < nbins; b++) {
        order[b] = (bin_at){ ja[b], b };
        if (jb[b] - ja[b] > lmax)
            lmax = jb[b] - ja[b];
    }
    qsort(order, nbins, sizeof *order, cmp_bin_at);
    for (size_t b = 0; b < nbins; b++) {
        if (!(cnt[b] > 0))
            continue;
        bin_split(cnt[b], ja[b], jb[b], pe, w, sa);
        /* overlapping bins c start in (ja[b] - lmax, jb[b]) */
        size_t lo = 0, hi = nbins, from = ja[b] > lmax ? ja[b] - lmax : 0;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (order[mid].ja < from)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t oi = lo; oi < nbins && order[oi].ja < jb[b]; oi++) {
            size_t c = order[oi].b;
            if (!(cnt[nbins + c] > 0) || ja[b] >= jb[c])
                continue;
            bin_split(cnt[nbins + c], ja[c], jb[c], pn, w, sb);
            double est = 0, below = 0;
            for (size_t j = ja[c]; j < ja[b] && j < jb[c]; j++)
                below += sb[j - ja[c]];   /* c's part under bin b */
            for (size_t j = ja[b]; j < jb[b]; j++) {
                double ac = j >= ja[c] && j < jb[c] ? sb[j - ja[c]] : 0;
                est += sa[j - ja[b]] * (below + 0.5 * ac);
                below += ac;
            }
            s_est += est;
            s_full += cnt[b] * cnt[nbins + c];
        }
    }
    free(order);
    out->max_error = (s_est > s_full - s_est ? s_est : s_full - s_est) / (sE * sN);
out:
    if (rc)
        pool_roc_free(out);
    free(cuts);
    free(ja);
    free(cnt);
    free(work);
    return rc;
}

/* ---- pooling the messages ---- */

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
    const Sdefed__Validation **vals;   /* issue 5 items 3/4: the released site groups */
    size_t n_vals;             /* (histograms and comparisons), at most cap_auc */
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
    if (g->n_vals < g->cap_auc)
        g->vals[g->n_vals++] = v;
    if (v->quantile_bins) {   /* quantile edges differ by site: not summed */
        if (!p->bins_note || !*p->bins_note) {
            p->bins_note = strdup("calibration bins are at each site's score quantiles "
                                  "(bin_mode quantile) and are not pooled");
            if (!p->bins_note)
                return SDF_ENOMEM;
        }
        return 0;
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

static bool hist_usable(const Sdefed__Validation *v)
{
    if (v->n_histogram == 0)
        return false;
    for (size_t b = 0; b < v->n_histogram; b++) {
        const Sdefed__ScoreBin *x = v->histogram[b];
        if (!x || !cell_released(x->events) || !cell_released(x->nonevents) || !(x->lo < x->hi))
            return false;
    }
    return true;
}

/* The pooled ROC of the group from its sites' histograms. */
static int group_roc(group *g)
{
    Sdefed__PooledValidation *p = g->p;
    size_t nb = 0, used = 0;
    for (size_t i = 0; i < g->n_vals; i++)
        if (hist_usable(g->vals[i]))
            nb += g->vals[i]->n_histogram;
    if (nb == 0)
        return 0;
    pool_hbin *hb = calloc(nb, sizeof *hb);
    if (!hb)
        return SDF_ENOMEM;
    nb = 0;
    for (size_t i = 0; i < g->n_vals; i++) {
        const Sdefed__Validation *v = g->vals[i];
        if (!hist_usable(v))
            continue;
        used++;
        for (size_t b = 0; b < v->n_histogram; b++)
            hb[nb++] = (pool_hbin){ i, v->histogram[b]->lo, v->histogram[b]->hi,
                                    (double)v->histogram[b]->events->value,
                                    (double)v->histogram[b]->nonevents->value };
    }
    pool_roc roc;
    int rc = pool_roc_merge(hb, nb, &roc);
    free(hb);
    if (rc)
        return rc == SDF_ENOMEM ? rc : 0;   /* nothing usable: no pooled ROC */
    p->roc = calloc(roc.n, sizeof *p->roc);
    if (!p->roc) {
        pool_roc_free(&roc);
        return SDF_ENOMEM;
    }
    for (size_t k = 0; k < roc.n; k++) {
        Sdefed__RocPoint *pt = malloc(sizeof *pt);
        if (!pt) {
            pool_roc_free(&roc);
            return SDF_ENOMEM;
        }
        sdefed__roc_point__init(pt);
        pt->fpr = roc.fpr[k];
        pt->tpr = roc.tpr[k];
        pt->threshold = roc.thr[k];
        p->roc[p->n_roc++] = pt;
    }
    p->roc_auc = roc.auc;
    p->roc_auc_max_error = roc.max_error;
    p->roc_sites = (uint32_t)used;
    pool_roc_free(&roc);
    return 0;
}

/* Random-effects (DerSimonian-Laird, identity scale) meta-analysis of the
 * sites' paired AUC differences. */
static int group_comparison(group *g)
{
    size_t k = 0;
    const Sdefed__AucComparison *first = NULL;
    for (size_t i = 0; i < g->n_vals; i++) {
        const Sdefed__AucComparison *c = g->vals[i]->comparison;
        if (c && !first)
            first = c;
    }
    if (!first)
        return 0;
    Sdefed__AucComparison *pc = malloc(sizeof *pc);
    if (!pc)
        return SDF_ENOMEM;
    sdefed__auc_comparison__init(pc);
    g->p->comparison = pc;
    pc->version_a = strdup(first->version_a ? first->version_a : "");
    pc->version_b = strdup(first->version_b ? first->version_b : "");
    double *y = calloc(4 * (g->n_vals + 1), sizeof *y);
    if (!pc->version_a || !pc->version_b || !y) {
        free(y);
        return SDF_ENOMEM;
    }
    double *v = y + g->n_vals + 1, *aa = v + g->n_vals + 1, *ab = aa + g->n_vals + 1;
    for (size_t i = 0; i < g->n_vals; i++) {
        const Sdefed__AucComparison *c = g->vals[i]->comparison;
        if (!c || !c->released || !(c->diff_se > 0) || !isfinite(c->diff))
            continue;
        y[k] = c->diff;
        v[k] = c->diff_se * c->diff_se;
        aa[k] = c->auc_a;
        ab[k] = c->auc_b;
        k++;
    }
    pool_meta m;
    if (k == 0 || pool_meta_dl(y, v, k, &m) != 0) {
        free(y);
        pc->withheld_reason = strdup("no site released a comparison");
        return pc->withheld_reason ? 0 : SDF_ENOMEM;
    }
    double sw = 0, sa = 0, sb = 0;
    for (size_t i = 0; i < k; i++) {
        double wi = 1.0 / (v[i] + m.tau2);
        sw += wi;
        sa += wi * aa[i];
        sb += wi * ab[i];
    }
    free(y);
    pc->released = true;
    pc->sites = (uint32_t)k;
    pc->diff = m.mu;
    pc->diff_se = m.se;
    pc->diff_lo = m.lo;
    pc->diff_hi = m.hi;
    pc->p_value = m.se > 0 ? erfc(fabs(m.mu / m.se) / sqrt(2.0)) : 1.0;
    pc->auc_a = sa / sw;   /* with the weights of the difference: auc_b - auc_a = diff */
    pc->auc_b = sb / sw;
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
    char key[POOL_KEY_MAX];
    int rc = 0;
    for (size_t s = 0; s < r->n_sites && rc == 0; s++) {
        const Sdefed__SiteResult *sr = r->sites[s];
        if (sr->status != SDEFED__SITE_STATUS__SITE_OK)
            continue;
        for (size_t k = 0; k < sr->n_validations && rc == 0; k++) {
            const Sdefed__Validation *v = sr->validations[k];
            if (!v->released || pool_key(v->strata, v->n_strata, key, sizeof key) != 0)
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
                g[n].vals = calloc(nsites, sizeof *g[n].vals);
                n++;
                if (!g[j].key || !g[j].p || !g[j].auc || !g[j].vals) {
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
        if (rc == 0)   /* issue 5 items 3/4 */
            rc = group_roc(&g[j]);
        if (rc == 0)
            rc = group_comparison(&g[j]);
        if (rc == 0) {
            group_finish(&g[j]);
            r->pooled_validations[r->n_pooled_validations++] = g[j].p;
        } else {
            pooled_free(g[j].p);
        }
        free(g[j].key);
        free(g[j].vals);
        free(g[j].auc);
        free(g[j].thr_partial);
    }
    free(g);
    if (rc)
        pool_validations_free(r);   /* nothing left allocated */
    return rc;
}
