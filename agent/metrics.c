/* agent/metrics.c — exact discrimination and calibration metrics (issue 5).
 *
 * See metrics.h. The AUC and DeLong's variance come from one sort of the
 * rows by score: walking groups of tied scores gives, for every event, the
 * share of non-events scored below it (ties one half) and, for every
 * non-event, the share of events scored above it; the AUC is their mean and
 * the variance is var(V10)/m + var(V01)/n (DeLong, DeLong & Clarke-Pearson
 * 1988). Both recalibration fits are two-parameter (or one-parameter)
 * logistic regressions solved by Newton-Raphson. The paired comparison of
 * two scores uses the per-row structural components of each (one sort
 * each) and their 2x2 covariances over events and over non-events
 * (DeLong 1988); histogram coarsening is a deterministic left-to-right
 * merge (metrics.h).
 */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>

void metrics_confusion_at(const double *score, const unsigned char *label, size_t n, double thr,
                          metrics_confusion *out)
{
    metrics_confusion c = { 0, 0, 0, 0 };
    for (size_t i = 0; i < n; i++) {
        int pos = score[i] >= thr;
        if (label[i]) {
            if (pos)
                c.tp++;
            else
                c.fn++;
        } else {
            if (pos)
                c.fp++;
            else
                c.tn++;
        }
    }
    *out = c;
}

metrics_ci metrics_wilson(int64_t x, int64_t n)
{
    metrics_ci r = { NAN, NAN, NAN };
    if (n <= 0 || x < 0 || x > n)
        return r;
    double z = METRICS_Z95, z2 = z * z, nn = (double)n, p = (double)x / nn;
    double denom = 1.0 + z2 / nn;
    double centre = (p + z2 / (2.0 * nn)) / denom;
    double half = z * sqrt(p * (1.0 - p) / nn + z2 / (4.0 * nn * nn)) / denom;
    r.est = p;
    r.lo = centre - half < 0.0 ? 0.0 : centre - half;
    r.hi = centre + half > 1.0 ? 1.0 : centre + half;
    return r;
}


/* qsort_r-free ordering: sort an array of (score, label) pairs. */
typedef struct pair {
    double s;
    unsigned char y;
} pair;

static int cmp_pair(const void *a, const void *b)
{
    double x = ((const pair *)a)->s, y = ((const pair *)b)->s;
    return x < y ? -1 : x > y ? 1 : 0;
}

int metrics_auc_delong(const double *score, const unsigned char *label, size_t n, double *auc,
                       double *var)
{
    size_t m = 0;   /* events */
    for (size_t i = 0; i < n; i++)
        m += label[i] ? 1 : 0;
    size_t k = n - m;   /* non-events */
    if (m == 0 || k == 0)
        return SDF_EINVAL;
    pair *p = malloc(n * sizeof *p);
    if (!p)
        return SDF_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        p[i].s = score[i];
        p[i].y = label[i] ? 1 : 0;
    }
    qsort(p, n, sizeof *p, cmp_pair);

    /* Walk tie groups; accumulate sums and sums of squares of V10 (over
     * events) and V01 (over non-events). Both have mean AUC, so the V01
     * variance needs only its sum of squares. */
    double s10 = 0, ss10 = 0, ss01 = 0;
    size_t neg_below = 0, pos_below = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i, pos_eq = 0, neg_eq = 0;
        while (j < n && p[j].s == p[i].s) {
            if (p[j].y)
                pos_eq++;
            else
                neg_eq++;
            j++;
        }
        if (pos_eq) {
            double v10 = ((double)neg_below + 0.5 * (double)neg_eq) / (double)k;
            s10 += (double)pos_eq * v10;
            ss10 += (double)pos_eq * v10 * v10;
        }
        if (neg_eq) {
            size_t pos_above = m - pos_below - pos_eq;
            double v01 = ((double)pos_above + 0.5 * (double)pos_eq) / (double)m;
            ss01 += (double)neg_eq * v01 * v01;
        }
        neg_below += neg_eq;
        pos_below += pos_eq;
        i = j;
    }
    free(p);
    double a = s10 / (double)m;
    double var10 = m > 1 ? (ss10 - (double)m * a * a) / (double)(m - 1) : 0.0;
    double var01 = k > 1 ? (ss01 - (double)k * a * a) / (double)(k - 1) : 0.0;
    if (var10 < 0)
        var10 = 0;
    if (var01 < 0)
        var01 = 0;
    *auc = a;
    *var = var10 / (double)m + var01 / (double)k;
    return 0;
}

metrics_ci metrics_auc_ci(double auc, double var)
{
    double h = METRICS_Z95 * sqrt(var > 0 ? var : 0);
    metrics_ci r = { auc, auc - h < 0 ? 0 : auc - h, auc + h > 1 ? 1 : auc + h };
    return r;
}

static double clamp_logit(double p)
{
    const double eps = 1e-9;
    if (p < eps)
        p = eps;
    if (p > 1 - eps)
        p = 1 - eps;
    return log(p / (1 - p));
}

static double expit(double x)
{
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

/* Log-likelihood of logit P(y) = a + b*x, computed without overflow. */
static double logistic_loglik(const double *x, const unsigned char *y, size_t n, double a,
                              double b)
{
    double ll = 0;
    for (size_t i = 0; i < n; i++) {
        double eta = a + b * x[i];
        /* log(1 + e^eta) */
        double l1p = eta > 0 ? eta + log1p(exp(-eta)) : log1p(exp(eta));
        ll += (y[i] ? eta : 0.0) - l1p;
    }
    return ll;
}

/* Fit logit P(y) = a + b*x (fit_slope) or a + x (offset only) by
 * Newton-Raphson with step halving: a step that lowers the log-likelihood
 * is halved until it does not (as R's glm does), so logits far from 0
 * (scores clamped near 0 or 1) cannot make it overshoot and diverge. The
 * slope fit starts from the intercept-only model. Returns 1 when the full
 * Newton step has shrunk below 1e-10; 0 when it never does (e.g. perfect
 * separation, where the likelihood has no maximum). */
static int fit_logistic(const double *x, const unsigned char *y, size_t n, int fit_slope,
                        double *a_out, double *b_out)
{
    double a = 0, b = 1;
    if (fit_slope) {
        double sy = 0;
        for (size_t i = 0; i < n; i++)
            sy += (double)y[i];
        if (sy <= 0 || sy >= (double)n)
            return 0;
        a = log(sy / ((double)n - sy));
        b = 0;
    }
    double ll = logistic_loglik(x, y, n, a, b);
    for (int it = 0; it < 100; it++) {
        double ga = 0, gb = 0, haa = 0, hab = 0, hbb = 0;
        for (size_t i = 0; i < n; i++) {
            double eta = a + b * x[i];
            double mu = expit(eta), w = mu * (1 - mu), r = (double)y[i] - mu;
            ga += r;
            haa += w;
            if (fit_slope) {
                gb += r * x[i];
                hab += w * x[i];
                hbb += w * x[i] * x[i];
            }
        }
        double da, db = 0;
        if (fit_slope) {
            double det = haa * hbb - hab * hab;
            if (!(fabs(det) > 1e-300))
                return 0;
            da = (hbb * ga - hab * gb) / det;
            db = (haa * gb - hab * ga) / det;
        } else {
            if (!(haa > 1e-300))
                return 0;
            da = ga / haa;
        }
        if (!isfinite(da) || !isfinite(db))
            return 0;
        if (fabs(da) < 1e-10 && fabs(db) < 1e-10) {
            *a_out = a + da;
            *b_out = b + db;
            return 1;
        }
        double step = 1.0, nll = logistic_loglik(x, y, n, a + da, b + db);
        for (int h = 0; h < 40 && !(nll >= ll - 1e-12 * fabs(ll)); h++) {
            step /= 2;
            nll = logistic_loglik(x, y, n, a + step * da, b + step * db);
        }
        a += step * da;
        b += step * db;
        ll = nll;
        if (!isfinite(a) || !isfinite(b) || !isfinite(ll))
            return 0;
    }
    return 0;
}

int metrics_calibration_fit(const double *score, const unsigned char *label, size_t n,
                            metrics_calibration *out)
{
    if (n == 0)
        return SDF_EINVAL;
    double sp = 0, sy = 0, sb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = score[i] - (double)label[i];
        sp += score[i];
        sy += (double)label[i];
        sb += d * d;
    }
    out->brier = sb / (double)n;
    out->mean_predicted = sp / (double)n;
    out->observed_rate = sy / (double)n;
    out->oe_ratio = sp > 0 ? sy / sp : NAN;
    out->citl = out->slope = out->intercept = NAN;
    out->converged = 0;

    double *x = malloc(n * sizeof *x);
    if (!x)
        return SDF_ENOMEM;
    for (size_t i = 0; i < n; i++)
        x[i] = clamp_logit(score[i]);
    double a, b;
    int ok1 = fit_logistic(x, label, n, 0, &a, &b);
    if (ok1)
        out->citl = a;
    int ok2 = fit_logistic(x, label, n, 1, &a, &b);
    if (ok2) {
        out->intercept = a;
        out->slope = b;
    }
    out->converged = ok1 && ok2;
    free(x);
    return 0;
}

int metrics_bins_fixed(const double *score, const unsigned char *label, size_t n, size_t nbins,
                       metrics_bin *bins)
{
    if (nbins < 1 || nbins > METRICS_MAX_BINS)
        return SDF_EINVAL;
    for (size_t b = 0; b < nbins; b++) {
        bins[b].lo = (double)b / (double)nbins;
        bins[b].hi = (double)(b + 1) / (double)nbins;
        bins[b].n = bins[b].events = 0;
        bins[b].sum_predicted = 0;
    }
    for (size_t i = 0; i < n; i++) {
        double s = score[i];
        size_t b = s <= 0 ? 0 : (size_t)(s * (double)nbins);
        if (b >= nbins)
            b = nbins - 1;
        /* the same edges as bins[].lo: b/nbins <= s < (b+1)/nbins exactly */
        while (b + 1 < nbins && s >= (double)(b + 1) / (double)nbins)
            b++;
        while (b > 0 && s < (double)b / (double)nbins)
            b--;
        bins[b].n++;
        bins[b].events += label[i] ? 1 : 0;
        bins[b].sum_predicted += s;
    }
    return 0;
}

int metrics_bins_edges(const double *score, const unsigned char *label, size_t n,
                       const double *edges, size_t nbins, metrics_bin *bins)
{
    if (nbins < 1 || nbins > METRICS_MAX_BINS || edges[0] != 0.0 || edges[nbins] != 1.0)
        return SDF_EINVAL;
    for (size_t b = 0; b < nbins; b++) {
        if (!(edges[b] < edges[b + 1]))
            return SDF_EINVAL;
        bins[b].lo = edges[b];
        bins[b].hi = edges[b + 1];
        bins[b].n = bins[b].events = 0;
        bins[b].sum_predicted = 0;
    }
    for (size_t i = 0; i < n; i++) {
        double s = score[i];
        size_t lo = 0, hi = nbins;   /* last b with edges[b] <= s */
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            if (edges[mid] <= s)
                lo = mid;
            else
                hi = mid;
        }
        bins[lo].n++;
        bins[lo].events += label[i] ? 1 : 0;
        bins[lo].sum_predicted += s;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

int metrics_quantile_edges(const double *score, size_t n, size_t nbins, double *edges,
                           size_t *nb_out)
{
    if (n == 0 || nbins < 1 || nbins > METRICS_MAX_BINS)
        return SDF_EINVAL;
    double *s = malloc(n * sizeof *s);
    if (!s)
        return SDF_ENOMEM;
    for (size_t i = 0; i < n; i++)
        s[i] = score[i];
    qsort(s, n, sizeof *s, cmp_double);
    size_t k = 0;
    edges[0] = 0.0;
    for (size_t j = 1; j < nbins; j++) {
        size_t at = (size_t)(((unsigned long long)j * n) / nbins);
        if (at >= n)
            at = n - 1;
        /* the mean of the METRICS_QUANTILE_SPAN order statistics around
         * it: an edge is never one row's score */
        size_t lo = at >= METRICS_QUANTILE_SPAN / 2 ? at - METRICS_QUANTILE_SPAN / 2 : 0;
        size_t hi = lo + METRICS_QUANTILE_SPAN < n ? lo + METRICS_QUANTILE_SPAN : n;
        lo = hi >= METRICS_QUANTILE_SPAN ? hi - METRICS_QUANTILE_SPAN : 0;
        double sum = 0;
        for (size_t t = lo; t < hi; t++)
            sum += s[t];
        double e = round(sum / (double)(hi - lo) * 1000.0) / 1000.0;
        if (e > edges[k] && e < 1.0)
            edges[++k] = e;
    }
    edges[++k] = 1.0;
    *nb_out = k;
    free(s);
    return 0;
}

static int count_ok(int64_t c, int64_t min_cell, int zero_ok)
{
    return c == 0 ? zero_ok : c >= min_cell;
}

int metrics_hist_coarsen(const int64_t *ev, const int64_t *ne, size_t nfine, int64_t min_cell,
                         int zero_ok, size_t *ends, size_t *n_out)
{
    if (nfine == 0)
        return SDF_EINVAL;
    if (min_cell < 1)
        min_cell = 1;
    int64_t te = 0, tn = 0;
    for (size_t i = 0; i < nfine; i++) {
        te += ev[i];
        tn += ne[i];
    }
    if (te + tn == 0 || !count_ok(te, min_cell, zero_ok) || !count_ok(tn, min_cell, zero_ok))
        return SDF_EINVAL;
    size_t k = 0;
    int64_t ce = 0, cn = 0;
    for (size_t i = 0; i < nfine; i++) {
        ce += ev[i];
        cn += ne[i];
        if (ce + cn > 0 && count_ok(ce, min_cell, zero_ok) && count_ok(cn, min_cell, zero_ok)) {
            ends[k++] = i + 1;
            ce = cn = 0;
        }
    }
    if (ce + cn == 0) {
        ends[k - 1] = nfine;   /* trailing empty fine bins join the last bin (k >= 1: te+tn > 0) */
    } else {
        /* a remainder that does not pass: merge it backwards until it does
         * (the whole range passes, so this ends) */
        while (k > 0 && !(count_ok(ce, min_cell, zero_ok) && count_ok(cn, min_cell, zero_ok))) {
            size_t start = k >= 2 ? ends[k - 2] : 0;
            for (size_t i = start; i < ends[k - 1]; i++) {
                ce += ev[i];
                cn += ne[i];
            }
            k--;
        }
        ends[k++] = nfine;
    }
    *n_out = k;
    return 0;
}

/* Structural components via one sort of (score, index). */
typedef struct ipair {
    double s;
    size_t i;
} ipair;

static int cmp_ipair(const void *a, const void *b)
{
    const ipair *x = a, *y = b;
    if (x->s != y->s)
        return x->s < y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

int metrics_delong_components(const double *score, const unsigned char *label, size_t n,
                              double *comp)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m += label[i] ? 1 : 0;
    size_t k = n - m;
    if (m == 0 || k == 0)
        return SDF_EINVAL;
    ipair *p = malloc(n * sizeof *p);
    if (!p)
        return SDF_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        p[i].s = score[i];
        p[i].i = i;
    }
    qsort(p, n, sizeof *p, cmp_ipair);
    size_t neg_below = 0, pos_below = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i, pos_eq = 0, neg_eq = 0;
        while (j < n && p[j].s == p[i].s) {
            if (label[p[j].i])
                pos_eq++;
            else
                neg_eq++;
            j++;
        }
        double v10 = ((double)neg_below + 0.5 * (double)neg_eq) / (double)k;
        double v01 = ((double)(m - pos_below - pos_eq) + 0.5 * (double)pos_eq) / (double)m;
        for (size_t t = i; t < j; t++)
            comp[p[t].i] = label[p[t].i] ? v10 : v01;
        neg_below += neg_eq;
        pos_below += pos_eq;
        i = j;
    }
    free(p);
    return 0;
}

double metrics_p_two_sided(double z)
{
    return erfc(fabs(z) / sqrt(2.0));
}

int metrics_auc_paired(const double *score_a, const double *score_b, const unsigned char *label,
                       size_t n, metrics_auc_diff *out)
{
    double *ca = malloc(2 * (n ? n : 1) * sizeof *ca);
    if (!ca)
        return SDF_ENOMEM;
    double *cb = ca + n;
    int rc = metrics_delong_components(score_a, label, n, ca);
    if (rc == 0)
        rc = metrics_delong_components(score_b, label, n, cb);
    if (rc) {
        free(ca);
        return rc;
    }
    /* means, then the 2x2 covariances of (V_a, V_b) over events and over
     * non-events (denominators m - 1 and k - 1) */
    double sa[2] = { 0, 0 }, sb[2] = { 0, 0 };
    size_t cnt[2] = { 0, 0 };
    for (size_t i = 0; i < n; i++) {
        int e = label[i] ? 1 : 0;
        sa[e] += ca[i];
        sb[e] += cb[i];
        cnt[e]++;
    }
    double ma[2], mb[2], vaa[2] = { 0, 0 }, vbb[2] = { 0, 0 }, vab[2] = { 0, 0 };
    for (int e = 0; e < 2; e++) {
        ma[e] = sa[e] / (double)cnt[e];
        mb[e] = sb[e] / (double)cnt[e];
    }
    for (size_t i = 0; i < n; i++) {
        int e = label[i] ? 1 : 0;
        double da = ca[i] - ma[e], db = cb[i] - mb[e];
        vaa[e] += da * da;
        vbb[e] += db * db;
        vab[e] += da * db;
    }
    free(ca);
    double var = 0;
    for (int e = 0; e < 2; e++) {
        if (cnt[e] < 2)
            continue;
        double d = (double)(cnt[e] - 1);
        var += (vaa[e] / d + vbb[e] / d - 2.0 * vab[e] / d) / (double)cnt[e];
    }
    out->auc_a = ma[1];
    out->auc_b = mb[1];
    out->diff = out->auc_b - out->auc_a;
    out->se = var > 0 ? sqrt(var) : 0.0;
    double h = METRICS_Z95 * out->se;
    out->lo = out->diff - h < -1 ? -1 : out->diff - h;
    out->hi = out->diff + h > 1 ? 1 : out->diff + h;
    if (out->se > 0)
        out->p = metrics_p_two_sided(out->diff / out->se);
    else
        out->p = out->diff == 0 ? 1.0 : 0.0;
    return 0;
}
