/* coordinator/seqtest.h — sequential tests for surveillance monitors (issue 6).
 *
 * Pure functions (no I/O, no allocation beyond what is documented).
 * Observed counts c_i and expected counts mu_i (under H0) arrive one look
 * (period) at a time; see docs/surveillance.md for how monitors use them.
 *
 * Poisson MaxSPRT (Kulldorff et al. 2011): with cumulative C and U = sum
 * mu_i, LLR = C ln(C/U) - (C - U) when C > U, else 0; signal when
 * LLR >= CV (and C >= 1). The critical value is that of the CONTINUOUS
 * MaxSPRT with surveillance length T (expected events under H0): computed
 * exactly (seq_maxsprt_cv, Kulldorff's Poisson-process recursion) for
 * given alpha and T; it reproduces the published continuous-MaxSPRT values
 * of the authors' R package Sequential (CV.Poisson, alpha 0.05, M = 1,
 * T = 1..200) to 1e-6 (tests/unit/coordinator/test_seqtest.c). Looking
 * only at period ends can signal no more often
 * than continuous monitoring, so the false alarm rate stays <= alpha.
 *
 * Poisson CUSUM (Lucas 1985) against relative risk rr > 1: S_0 = 0,
 * S_i = max(0, S_{i-1} + c_i ln(rr) - mu_i (rr - 1)); signal when S_i >= h.
 * h is found by Monte Carlo with a fixed seed (seq_cusum_h) so that the
 * probability of any signal within n looks of mu = T/n each is alpha.
 */
#ifndef COORD_SEQTEST_H
#define COORD_SEQTEST_H

#include <stdbool.h>
#include <stdint.h>

#include "sdefed/err.h"

/* MaxSPRT log-likelihood ratio of C observed vs U expected (0 if C <= U). */
double seq_maxsprt_llr(double c, double u);

/* P(the continuous MaxSPRT with critical value cv signals by time T | H0),
 * exactly (up to 1e-12 truncation). T in (0, 10000]. NaN on bad input. */
double seq_maxsprt_alpha(double cv, double T);

/* The critical value for significance alpha in (0, 0.5] and length T:
 * the smallest cv with seq_maxsprt_alpha(cv, T) <= alpha (bisection to
 * 1e-6). Returns 0 and *cv, or SDF_EINVAL. */
int seq_maxsprt_cv(double alpha, double T, double *cv) SDF_MUSTCHECK;

/* One CUSUM step: the new S from the previous s. */
double seq_cusum_step(double s, double c, double mu, double rr);

/* The CUSUM threshold h: Monte Carlo (`runs` replications, SplitMix64 with
 * `seed`) of n looks of Poisson(T/n) under H0, h = the (1 - alpha) quantile
 * of max_i S_i. Returns 0 and *h, SDF_EINVAL or SDF_ENOMEM. */
int seq_cusum_h(double alpha, double T, unsigned n, double rr, unsigned runs, uint64_t seed,
                double *h) SDF_MUSTCHECK;

/* A Poisson(mu) variate from the SplitMix64 state *s (inversion; mu <= 1e4). */
int64_t seq_poisson(uint64_t *s, double mu);

#endif
