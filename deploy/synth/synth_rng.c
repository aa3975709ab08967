/* deploy/synth/synth_rng.c — deterministic PRNG, distributions and civil dates for sdefed-synth.
 *
 * Every random choice in the generator comes from here, never from rand():
 * xoshiro256** seeded through splitmix64 from (seed, stream), where the stream
 * is the person id. That makes a site byte-for-byte reproducible from its
 * seed and lets each person be generated independently of all others.
 * Dates are integer days since 1970-01-01 (proleptic Gregorian), converted
 * with Howard Hinnant's civil-calendar algorithms.
 */
#include <math.h>

#include "synth.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void rng_seed(struct synth_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed;
    uint64_t mix = splitmix64(&x) ^ (stream * 0xd1342543de82ef95ULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&mix);
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0)
        r->s[0] = 1;    /* the all-zero state is the one fixed point */
}

uint64_t rng_next(struct synth_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_unif(struct synth_rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

int64_t rng_range(struct synth_rng *r, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = (uint64_t)(hi - lo) + 1;
    /* Lemire-free modulo is fine here: spans are tiny next to 2^64. */
    return lo + (int64_t)(rng_next(r) % span);
}

int rng_bern(struct synth_rng *r, double p)
{
    if (p <= 0.0)
        return 0;
    if (p >= 1.0)
        return 1;
    return rng_unif(r) < p;
}

double rng_normal(struct synth_rng *r, double mean, double sd)
{
    /* Box-Muller, one variate per call (keeps the stream position simple). */
    double u1 = rng_unif(r), u2 = rng_unif(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return mean + sd * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

unsigned rng_poisson(struct synth_rng *r, double lambda, unsigned cap)
{
    if (lambda <= 0.0)
        return 0;
    if (lambda > 30.0) {
        double v = floor(rng_normal(r, lambda, sqrt(lambda)) + 0.5);
        if (v < 0)
            v = 0;
        return v > cap ? cap : (unsigned)v;
    }
    double l = exp(-lambda), p = 1.0;
    unsigned k = 0;
    do {
        k++;
        p *= rng_unif(r);
    } while (p > l && k <= cap);
    k--;
    return k > cap ? cap : k;
}

size_t rng_pick(struct synth_rng *r, const double *w, size_t n)
{
    double total = 0.0;
    for (size_t i = 0; i < n; i++)
        total += w[i] > 0 ? w[i] : 0;
    if (total <= 0.0)
        return 0;
    double x = rng_unif(r) * total;
    for (size_t i = 0; i < n; i++) {
        double wi = w[i] > 0 ? w[i] : 0;
        if (x < wi)
            return i;
        x -= wi;
    }
    return n - 1;
}

int32_t date_from_ymd(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void date_to_ymd(int32_t days, int *y, int *m, int *d)
{
    int32_t z = days + 719468;
    int32_t era = (z >= 0 ? z : z - 146096) / 146097;
    int32_t doe = z - era * 146097;
    int32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int32_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

void date_format(int32_t days, char out[11])
{
    int y, m, d;
    date_to_ymd(days, &y, &m, &d);
    if (y < 0)
        y = 0;
    if (y > 9999)
        y = 9999;
    out[0] = (char)('0' + y / 1000);
    out[1] = (char)('0' + y / 100 % 10);
    out[2] = (char)('0' + y / 10 % 10);
    out[3] = (char)('0' + y % 10);
    out[4] = '-';
    out[5] = (char)('0' + m / 10);
    out[6] = (char)('0' + m % 10);
    out[7] = '-';
    out[8] = (char)('0' + d / 10);
    out[9] = (char)('0' + d % 10);
    out[10] = '\0';
}
