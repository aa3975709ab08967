/* agent/disclosure/stats.c — disclosure control for summary statistics; see stats.h.
 *
 * The histogram's bin width depends on the data only through a coarse
 * 1/2/5 x 10^k step, and what is released from it is a mean of at least
 * min_cell values, so no released number is a single person's value. The
 * dominance test looks at absolute contributions, so a sum of mixed signs
 * cannot hide one large contributor.
 */
#include "disclosure/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const double disc_quantile_p[DISC_N_QUANTILES] = { 0.25, 0.5, 0.75 };

/* Largest dominance_n honoured (disc_policy_check allows up to 100). */
#define DOMINANCE_MAX_N 100

bool disc_dominated(const disc_policy *p, const double *x, size_t n)
{
    int64_t dn = p->dominance_n > 0 ? p->dominance_n : 2;
    double dk = p->dominance_k > 0.0 && p->dominance_k <= 1.0 ? p->dominance_k : 0.9;
    double top[DOMINANCE_MAX_N];
    size_t nt = 0;
    double total = 0.0;

    if (dn > DOMINANCE_MAX_N)
        dn = DOMINANCE_MAX_N;
    for (size_t i = 0; i < n; i++) {
        double a = fabs(x[i]);
        total += a;
        /* keep the dn largest in top[], descending */
        if (nt < (size_t)dn)
            top[nt++] = a;
        else if (a > top[nt - 1])
            top[nt - 1] = a;
        else
            continue;
        for (size_t j = nt - 1; j > 0 && top[j] > top[j - 1]; j--) {
            double t = top[j];
            top[j] = top[j - 1];
            top[j - 1] = t;
        }
    }
    if (!(total > 0.0))
        return false;
    double s = 0.0;
    for (size_t j = 0; j < nt; j++)
        s += top[j];
    return s > dk * total;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A 1/2/5 x 10^k step near range/50 (1 for a zero range). */
static double nice_width(double range)
{
    if (!(range > 0.0) || !isfinite(range))
        return 1.0;
    double raw = range / 50.0;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    double step = f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 5.0 ? 5.0 : 10.0;
    return step * mag;
}

static disc_number suppressed(void)
{
    return (disc_number){ 0.0, DISC_SUPPRESSED };
}

/* Released statistics carry DISC_STATS_DIGITS significant digits: a
 * full-precision mean times a candidate n would otherwise reveal the exact
 * n behind a rounded count (values on a grid, such as HbA1c in tenths). */
static disc_number exact(double v)
{
    if (v == 0.0 || !isfinite(v))
        return (disc_number){ v, DISC_ROUNDED };
    double mag = pow(10.0, DISC_STATS_DIGITS - 1 - (int)floor(log10(fabs(v))));
    return (disc_number){ round(v * mag) / mag, DISC_ROUNDED };
}

static double mean_of(const double *x, size_t n)
{
    long double s = 0.0L;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    return n ? (double)(s / (long double)n) : 0.0;
}

/* Quantiles from merged bins over sorted v[0..n), n >= k >= 1. */
static int quantiles(const disc_policy *p, const double *v, size_t n, size_t k,
                     disc_summary *out, unsigned *fired)
{
    double w = nice_width(v[n - 1] - v[0]);
    /* bin ends: merged[b] = one past the last index of bin b */
    size_t *ends = malloc((n / k + 2) * sizeof *ends);
    if (!ends)
        return SDF_ENOMEM;
    size_t nb = 0, start = 0;
    for (size_t i = 0; i < n;) {
        /* the fixed-width bin of v[i]: every value with the same floor(v/w) */
        double key = floor(v[i] / w);
        size_t j = i + 1;
        while (j < n && floor(v[j] / w) == key)
            j++;
        i = j;
        if (i - start >= k || i == n) {
            if (i - start < k && nb > 0)
                ends[nb - 1] = i;        /* a short last bin joins its neighbour */
            else
                ends[nb++] = i;
            start = i;
        }
    }
    for (size_t qi = 0; qi < DISC_N_QUANTILES; qi++) {
        size_t r = (size_t)floor(disc_quantile_p[qi] * (double)(n - 1));
        size_t b = 0, lo = 0;
        while (b < nb && ends[b] <= r)
            lo = ends[b++];
        size_t hi = b < nb ? ends[b] : n;
        if (hi - lo < k || disc_dominated(p, v + lo, hi - lo)) {
            out->q[qi] = suppressed();
            *fired |= hi - lo < k ? DISC_RULE_STATS_N : DISC_RULE_DOMINANCE;
        } else {
            out->q[qi] = exact(mean_of(v + lo, hi - lo));
        }
    }
    free(ends);
    return 0;
}

int disc_stats(const disc_policy *p, double *values, size_t n, disc_summary *out,
               unsigned *rules)
{
    unsigned fired = 0;
    size_t k = p->min_cell > 1 ? (size_t)p->min_cell : 1;

    out->n = disc_count(p, (int64_t)n, rules);
    out->mean = out->sd = suppressed();
    for (size_t i = 0; i < DISC_N_QUANTILES; i++)
        out->q[i] = suppressed();
    if (n == 0 || n < k || out->n.status == DISC_SUPPRESSED) {
        fired |= DISC_RULE_STATS_N;
        goto done;
    }
    qsort(values, n, sizeof values[0], cmp_double);

    double mean = mean_of(values, n);
    if (disc_dominated(p, values, n)) {
        /* the sum behind the mean is dominated: nothing but n */
        fired |= DISC_RULE_DOMINANCE;
        goto done;
    }
    out->mean = exact(mean);

    if (n >= 2) {
        double *dev = malloc(n * sizeof *dev);
        if (!dev) {
            out->mean = suppressed();
            return SDF_ENOMEM;
        }
        long double ss = 0.0L;
        for (size_t i = 0; i < n; i++) {
            double d = values[i] - mean;
            dev[i] = d * d;
            ss += dev[i];
        }
        if (disc_dominated(p, dev, n))
            fired |= DISC_RULE_DOMINANCE;
        else
            out->sd = exact(sqrt((double)(ss / (long double)(n - 1))));
        free(dev);
    } else {
        fired |= DISC_RULE_STATS_N;
    }
    if (quantiles(p, values, n, k, out, &fired) != 0) {
        out->mean = out->sd = suppressed();
        return SDF_ENOMEM;
    }
done:
    if (rules)
        *rules |= fired;
    return 0;
}

int disc_stats_noised(const disc_policy *p, const double *values, size_t n, double lo, double hi,
                      const unsigned char key[32], uint64_t index_base, disc_summary *out,
                      unsigned *rules)
{
    out->n = (disc_value){ 0, DISC_SUPPRESSED };
    out->mean = out->sd = suppressed();
    for (size_t i = 0; i < DISC_N_QUANTILES; i++)
        out->q[i] = suppressed();
    if (!(p->dp_epsilon > 0.0) || !isfinite(lo) || !isfinite(hi) || !(lo < hi))
        return SDF_EINVAL;
    double eps = p->dp_epsilon / 3.0, c = lo / 2 + hi / 2, r = hi / 2 - lo / 2;
    long double s = 0.0L, q = 0.0L;
    for (size_t i = 0; i < n; i++) {
        double x = values[i] < lo ? lo : values[i] > hi ? hi : values[i];
        double d = x - c;
        s += d;
        q += (long double)d * d;
    }
    unsigned fired = DISC_RULE_NOISE | DISC_RULE_DP_NO_QUANTILES;
    int64_t nn = (int64_t)n + disc_geometric_noise(key, index_base, eps, 1.0);
    if (nn < 0)
        nn = 0;
    out->n = disc_count(p, nn, &fired);
    if (out->n.status != DISC_SUPPRESSED)
        out->n.status = DISC_NOISED;
    int64_t k = p->min_cell > 1 ? p->min_cell : 1;
    if (nn < k || out->n.status == DISC_SUPPRESSED) {
        fired |= DISC_RULE_STATS_N;
    } else {
        double N = (double)nn;
        double S = (double)s + disc_laplace_noise(key, index_base + 1, r / eps);
        double Q = (double)q + disc_laplace_noise(key, index_base + 2, r * r / eps);
        double mean = c + S / N;
        mean = mean < lo ? lo : mean > hi ? hi : mean;
        out->mean = exact(mean);
        out->mean.status = DISC_NOISED;
        if (nn >= 2) {
            double var = (Q - S * S / N) / (N - 1.0);
            double sd = var > 0.0 ? sqrt(var) : 0.0;
            sd = sd > hi - lo ? hi - lo : sd;
            out->sd = exact(sd);
            out->sd.status = DISC_NOISED;
        }
    }
    if (rules)
        *rules |= fired;
    return 0;
}

int disc_stats_rule_names(unsigned rules, const char **out, int max)
{
    int n = 0;
    if ((rules & DISC_RULE_STATS_N) && n < max)
        out[n++] = "stats_small_n";
    if ((rules & DISC_RULE_DOMINANCE) && n < max)
        out[n++] = "dominance";
    if ((rules & DISC_RULE_DP_NO_QUANTILES) && n < max)
        out[n++] = "dp_no_quantiles";
    return n;
}
