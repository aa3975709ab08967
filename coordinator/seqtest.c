/* coordinator/seqtest.c — MaxSPRT and CUSUM for surveillance monitors (issue 6).
 *
 * See seqtest.h. The exact MaxSPRT alpha: for critical value cv the
 * continuous test signals at the k-th event iff it arrives by tau_k, the
 * smaller root of k ln(k/t) - (k - t) = cv (tau_k increases with k), i.e.
 * iff N(tau_k) >= k for some k with tau_k <= T. P(no signal) is the
 * probability that the Poisson process stays below the boundary at every
 * tau_k, computed by propagating the distribution of N(t) from one tau_k to
 * the next (Kulldorff et al. 2011, section 3).
 */
#include "seqtest.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SEQ_MAX_T 10000.0

double seq_maxsprt_llr(double c, double u)
{
    if (!(c > u) || !(u > 0.0))
        return c > 0.0 && u == 0.0 ? INFINITY : 0.0;
    return c * log(c / u) - (c - u);
}

/* Smaller root t in (0, k) of k ln(k/t) - (k - t) = cv (the LLR falls as t
 * grows towards k); 0 when even t -> 0+ stays below (impossible: +inf). */
static double tau(int64_t k, double cv)
{
    double lo = 1e-300, hi = (double)k;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (seq_maxsprt_llr((double)k, mid) >= cv)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

double seq_maxsprt_alpha(double cv, double T)
{
    if (!(cv > 0.0) || !(T > 0.0) || T > SEQ_MAX_T)
        return NAN;
    /* p[j] = P(N(t) = j and no signal so far), j < k at the boundary for k */
    size_t cap = (size_t)(T * 3 + 200);
    double *p = calloc(cap, sizeof *p), *q = calloc(cap, sizeof *q);
    if (!p || !q) {
        free(p);
        free(q);
        return NAN;
    }
    p[0] = 1.0;
    size_t n = 1;   /* states 0..n-1 live */
    double t = 0.0;
    for (int64_t k = 1; (size_t)k < cap; k++) {
        double tk = tau(k, cv);
        bool last = tk >= T;   /* the k-th event can still come by T */
        if (last)
            tk = T;
        double dt = tk - t;
        /* convolve with Poisson(dt) increments, keeping states < k */
        memset(q, 0, (size_t)k * sizeof *q);
        for (size_t i = 0; i < n; i++) {
            if (p[i] == 0.0)
                continue;
            double w = exp(-dt);   /* P(increment 0) */
            for (size_t j = i; j < (size_t)k; j++) {
                q[j] += p[i] * w;
                w *= dt / (double)(j - i + 1);
            }
        }
        memcpy(p, q, (size_t)k * sizeof *p);
        n = (size_t)k;
        t = tk;
        if (last)
            break;
    }
    double keep = 0.0;
    for (size_t i = 0; i < n; i++)
        keep += p[i];
    free(p);
    free(q);
    return 1.0 - keep;
}

int seq_maxsprt_cv(double alpha, double T, double *cv)
{
    if (!(alpha > 0.0) || alpha > 0.5 || !(T > 0.0) || T > SEQ_MAX_T || !cv)
        return SDF_EINVAL;
    double lo = 1e-6, hi = 50.0;
    if (isnan(seq_maxsprt_alpha(hi, T)))
        return SDF_ENOMEM;
    for (int i = 0; i < 60 && hi - lo > 1e-7; i++) {
        double mid = 0.5 * (lo + hi);
        double a = seq_maxsprt_alpha(mid, T);
        if (isnan(a))
            return SDF_ENOMEM;
        if (a <= alpha)
            hi = mid;
        else
            lo = mid;
    }
    *cv = hi;
    return 0;
}

double seq_cusum_step(double s, double c, double mu, double rr)
{
    double v = s + c * log(rr) - mu * (rr - 1.0);
    return v > 0.0 ? v : 0.0;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double unif(uint64_t *s)
{
    return ((double)(splitmix(s) >> 11) + 0.5) / 9007199254740992.0;
}

int64_t seq_poisson(uint64_t *s, double mu)
{
    if (!(mu > 0.0))
        return 0;
    if (mu > 500.0) {   /* normal approximation for large means */
        double u1 = unif(s), u2 = unif(s);
        double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        double v = floor(mu + sqrt(mu) * z + 0.5);
        return v < 0 ? 0 : (int64_t)v;
    }
    double u = unif(s), p = exp(-mu), f = p;
    int64_t k = 0;
    while (u > f && k < 100000) {
        k++;
        p *= mu / (double)k;
        f += p;
    }
    return k;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int seq_cusum_h(double alpha, double T, unsigned n, double rr, unsigned runs, uint64_t seed,
                double *h)
{
    if (!(alpha > 0.0) || alpha > 0.5 || !(T > 0.0) || T > SEQ_MAX_T || n == 0 || n > 10000 ||
        !(rr > 1.0) || runs < 100 || runs > 10000000 || !h)
        return SDF_EINVAL;
    double *mx = malloc(runs * sizeof *mx);
    if (!mx)
        return SDF_ENOMEM;
    uint64_t st = seed;
    double mu = T / n;
    for (unsigned r = 0; r < runs; r++) {
        double s = 0.0, best = 0.0;
        for (unsigned i = 0; i < n; i++) {
            s = seq_cusum_step(s, (double)seq_poisson(&st, mu), mu, rr);
            if (s > best)
                best = s;
        }
        mx[r] = best;
    }
    qsort(mx, runs, sizeof *mx, cmp_d);
    size_t idx = (size_t)ceil((1.0 - alpha) * runs);
    if (idx >= runs)
        idx = runs - 1;
    /* strictly above the quantile: P(max >= h) <= alpha */
    *h = nextafter(mx[idx], INFINITY);
    free(mx);
    return 0;
}
