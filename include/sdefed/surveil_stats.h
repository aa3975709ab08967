/* include/sdefed/surveil_stats.h — statistics of the `surveil` kind (issue 6).
 *
 * Shared by the agent (per-site rates) and the coordinator (pooled rates):
 * the regularised incomplete gamma function and its inverse, exact Poisson
 * confidence limits (the chi-square / gamma relationship), crude rates per
 * 1,000 person-years and the rate ratio of two arms. Pure functions of
 * their arguments; no allocation. See docs/surveillance.md.
 */
#ifndef SDEFED_SURVEIL_STATS_H
#define SDEFED_SURVEIL_STATS_H

#include <stdint.h>

#include "sdefed/err.h"

/* Days in a year for person-years (Julian year). */
#define SURV_DAYS_PER_YEAR 365.25
/* Rates are per this many person-years. */
#define SURV_RATE_SCALE 1000.0

/* Regularised lower incomplete gamma P(a, x) for a > 0, x >= 0 (series
 * for x < a + 1, Lentz continued fraction otherwise; relative accuracy
 * about 1e-12). Returns NaN for invalid arguments. */
double surv_gamma_p(double a, double x);

/* The p-quantile of the Gamma(a, 1) distribution: x with P(a, x) = p, for
 * a > 0 and 0 < p < 1 (bracketing bisection refined to 1e-12 relative).
 * Returns NaN for invalid arguments. */
double surv_gamma_inv(double p, double a);

/* The p-quantile of the chi-square distribution with df > 0 degrees of
 * freedom: 2 * surv_gamma_inv(p, df / 2). */
double surv_chi2_inv(double p, double df);

/* Exact (Garwood) two-sided limits for the mean of a Poisson count k >= 0
 * at confidence level conf in (0, 1): lo = chi2(alpha/2, 2k) / 2 (0 when
 * k = 0), hi = chi2(1 - alpha/2, 2k + 2) / 2. Returns 0 or SDF_EINVAL. */
int surv_poisson_ci(int64_t k, double conf, double *lo, double *hi) SDF_MUSTCHECK;

/* Crude rate per SURV_RATE_SCALE person-years of `events` over
 * `person_days` (> 0) with exact 95% limits. Returns 0 or SDF_EINVAL. */
int surv_rate(int64_t events, double person_days, double *rate, double *lo,
              double *hi) SDF_MUSTCHECK;

/* Rate ratio of arm a (events ea over days da) to arm b, with a 95%
 * interval on the log scale: exp(log RR +- 1.96 sqrt(1/ea + 1/eb)).
 * Needs ea > 0, eb > 0, da > 0, db > 0; returns 0 or SDF_EINVAL. */
int surv_rate_ratio(int64_t ea, double da, int64_t eb, double db, double *rr, double *lo,
                    double *hi) SDF_MUSTCHECK;

#endif
