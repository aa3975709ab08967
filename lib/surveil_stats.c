/* lib/surveil_stats.c — incomplete gamma, exact Poisson limits and rates (issue 6).
 *
 * See include/sdefed/surveil_stats.h. The Poisson limits use the
 * relationship between the Poisson and gamma distributions: for a count k,
 * P(X >= k | mu) = P(k, mu) (regularised lower incomplete gamma), so the
 * exact lower limit is the alpha/2 quantile of Gamma(k, 1) and the upper
 * the 1 - alpha/2 quantile of Gamma(k + 1, 1) — the same as half the
 * chi-square quantiles with 2k and 2k + 2 degrees of freedom.
 */
#include "sdefed/surveil_stats.h"

#include <math.h>

#define GAMMA_ITER 1000
#define GAMMA_EPS 1e-15
#define GAMMA_TINY 1e-300

/* P(a, x) by its series; converges quickly for x < a + 1. */
static double gamma_series(double a, double x)
{
    double ap = a, sum = 1.0 / a, del = sum;
    for (int n = 0; n < GAMMA_ITER; n++) {
        ap += 1.0;
        del *= x / ap;
        sum += del;
        if (fabs(del) < fabs(sum) * GAMMA_EPS)
            break;
    }
    return sum * exp(-x + a * log(x) - lgamma(a));
}

/* Q(a, x) = 1 - P(a, x) by a continued fraction (modified Lentz); x >= a + 1. */
static double gamma_cf(double a, double x)
{
    double b = x + 1.0 - a, c = 1.0 / GAMMA_TINY, d = 1.0 / b, h = d;
    for (int i = 1; i < GAMMA_ITER; i++) {
        double an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < GAMMA_TINY)
            d = GAMMA_TINY;
        c = b + an / c;
        if (fabs(c) < GAMMA_TINY)
            c = GAMMA_TINY;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < GAMMA_EPS)
            break;
    }
    return exp(-x + a * log(x) - lgamma(a)) * h;
}

double surv_gamma_p(double a, double x)
{
    if (!(a > 0.0) || !(x >= 0.0) || !isfinite(a) || isnan(x))
        return NAN;
    if (x == 0.0)
        return 0.0;
    if (isinf(x))
        return 1.0;
    if (x < a + 1.0)
        return gamma_series(a, x);
    return 1.0 - gamma_cf(a, x);
}

double surv_gamma_inv(double p, double a)
{
    if (!(a > 0.0) || !isfinite(a) || !(p > 0.0) || !(p < 1.0))
        return NAN;
    /* bracket: P(a, x) is increasing in x */
    double lo = 0.0, hi = a + 1.0;
    int guard = 0;
    while (surv_gamma_p(a, hi) < p && guard++ < 2000)
        hi *= 2.0;
    for (int i = 0; i < 400; i++) {
        double mid = 0.5 * (lo + hi);
        if (surv_gamma_p(a, mid) < p)
            lo = mid;
        else
            hi = mid;
        if (hi - lo <= 1e-13 * hi)
            break;
    }
    return 0.5 * (lo + hi);
}

double surv_chi2_inv(double p, double df)
{
    if (!(df > 0.0))
        return NAN;
    return 2.0 * surv_gamma_inv(p, df / 2.0);
}

int surv_poisson_ci(int64_t k, double conf, double *lo, double *hi)
{
    if (k < 0 || !(conf > 0.0) || !(conf < 1.0) || !lo || !hi)
        return SDF_EINVAL;
    double alpha = 1.0 - conf;
    *lo = k == 0 ? 0.0 : surv_gamma_inv(alpha / 2.0, (double)k);
    *hi = surv_gamma_inv(1.0 - alpha / 2.0, (double)k + 1.0);
    if (isnan(*lo) || isnan(*hi))
        return SDF_EINVAL;
    return 0;
}

int surv_rate(int64_t events, double person_days, double *rate, double *lo, double *hi)
{
    if (!(person_days > 0.0) || !isfinite(person_days) || !rate || !lo || !hi)
        return SDF_EINVAL;
    double l, h;
    int err = surv_poisson_ci(events, 0.95, &l, &h);
    if (err)
        return err;
    double f = SURV_RATE_SCALE * SURV_DAYS_PER_YEAR / person_days;
    *rate = (double)events * f;
    *lo = l * f;
    *hi = h * f;
    return 0;
}

int surv_rate_ratio(int64_t ea, double da, int64_t eb, double db, double *rr, double *lo,
                    double *hi)
{
    if (ea <= 0 || eb <= 0 || !(da > 0.0) || !(db > 0.0) || !isfinite(da) || !isfinite(db) ||
        !rr || !lo || !hi)
        return SDF_EINVAL;
    double r = ((double)ea / da) / ((double)eb / db);
    double se = sqrt(1.0 / (double)ea + 1.0 / (double)eb);
    *rr = r;
    *lo = exp(log(r) - 1.959963984540054 * se);
    *hi = exp(log(r) + 1.959963984540054 * se);
    return 0;
}
