/* agent/metrics.c — exact discrimination and calibration metrics (issue 5).
 *
 * See metrics.h. The AUC and DeLong's variance come from one sort of the
 * rows by score: walking groups of tied scores gives, for every event, the
 * share of non-events scored below it (ties one half) and, for every
 * non-event, the share of events scored above it; the AUC is their mean and
 * the variance is var(V10)/m + var(V01)/n (DeLong, DeLong & Clarke-Pearson
 * 1988). Both recalibration fits are two-parameter (or one-parameter)
 * logistic regressions solved by Newton-Raphson.
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

/* Fit logit P(y) = a + b*x (fit_slope) or a + x (offset only) by
 * Newton-Raphson. Returns 1 when converged. */
static int fit_logistic(const double *x, const unsigned char *y, size_t n, int fit_slope,
                        double *a_out, double *b_out)
{
    double a = 0, b = 1;
    for (int it = 0; it < 50; it++) {
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
        a += da;
        b += db;
        if (!isfinite(a) || !isfinite(b))
            return 0;
        if (fabs(da) < 1e-10 && fabs(db) < 1e-10) {
            *a_out = a;
            *b_out = b;
            return 1;
        }
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
        bins[b].n++;
        bins[b].events += label[i] ? 1 : 0;
        bins[b].sum_predicted += s;
    }
    return 0;
}
