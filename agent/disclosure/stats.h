/* agent/disclosure/stats.h — disclosure control for summary statistics (issue 3).
 *
 * Pure code like the rest of the engine: no I/O, no clocks, no globals.
 * disc_stats() turns the values of one stratum into what may be released:
 *   - n goes through disc_count (suppressed below min_cell, rounded);
 *   - below min_cell true values, mean, sd and quantiles are all suppressed
 *     (rule "stats_small_n");
 *   - the dominance rule applies to every released sum: the mean (a sum of
 *     values), the sd (a sum of squared deviations) and every quantile (the
 *     mean of one histogram bin). A sum whose top dominance_n contributors
 *     (by absolute value) hold more than dominance_k of its total is
 *     suppressed (rule "dominance");
 *   - quantiles come from a histogram, never from single values: fixed-width
 *     bins (a 1/2/5 x 10^k width, about 50 across the range) are merged with
 *     their neighbours until each holds >= min_cell values, and a quantile is
 *     released as the mean of the merged bin that holds its rank;
 *   - minimum and maximum are never computed or released;
 *   - mean, sd and quantiles are released to DISC_STATS_DIGITS significant
 *     digits (status DISC_ROUNDED), so that mean x n cannot reveal the
 *     exact n behind a rounded count.
 */
#ifndef AGENT_DISCLOSURE_STATS_H
#define AGENT_DISCLOSURE_STATS_H

#include <stdbool.h>
#include <stddef.h>

#include "disclosure/disclosure.h"

enum {
    DISC_RULE_STATS_N = 1u << 16,     /* "stats_small_n" */
    DISC_RULE_DOMINANCE = 1u << 17,   /* "dominance" */
    DISC_RULE_DP_NO_QUANTILES = 1u << 18,   /* "dp_no_quantiles" */
};

#define DISC_N_QUANTILES 3
#define DISC_STATS_DIGITS 4
/* The quantiles released: 0.25, 0.5, 0.75. */
extern const double disc_quantile_p[DISC_N_QUANTILES];

typedef struct disc_number {
    double value;          /* 0 when suppressed */
    disc_status status;    /* DISC_ROUNDED or DISC_SUPPRESSED */
} disc_number;

typedef struct disc_summary {
    disc_value n;
    disc_number mean, sd;
    disc_number q[DISC_N_QUANTILES];
} disc_summary;

/* True when the sum of x[0..n) is dominated: its top p->dominance_n
 * contributors by absolute value hold more than p->dominance_k of the sum
 * of absolute values (0 in either field: the defaults 2 and 0.9). A sum of
 * zeros is not dominated. */
bool disc_dominated(const disc_policy *p, const double *x, size_t n);

/* Control the statistics of values[0..n) (finite numbers; the array is
 * sorted in place) under policy p into *out; *rules (may be NULL) gets the
 * DISC_RULE_* bits that fired. Returns 0 or SDF_ENOMEM (out is then all
 * suppressed). */
int disc_stats(const disc_policy *p, double *values, size_t n, disc_summary *out,
               unsigned *rules) SDF_MUSTCHECK;

/* The statistics of values[0..n) under differential privacy (policy
 * p->dp_epsilon > 0), for a project that asked for DP. Every value is first
 * clamped to [lo, hi] (lo < hi, finite), so one person moves the count by 1,
 * the centred sum sum(x - c) by at most r and the centred sum of squares by
 * at most r^2 (c = (lo + hi) / 2, r = (hi - lo) / 2). Each of the three gets
 * a third of epsilon: n + geometric noise, the sums + Laplace noise of
 * scale r / (eps/3) and r^2 / (eps/3), drawn from key at indexes
 * index_base + 0, 1, 2 (deterministic: a repeated query gets the same
 * answer). Strata hold disjoint persons, so a query costs epsilon in all.
 * Released, all as post-processing of the noised values: n (rounded, and
 * suppressed below min_cell like any noised count), and when the noised n
 * is at least min_cell the mean (clamped to [lo, hi]) and sd (clamped to
 * [0, hi - lo]), status DISC_NOISED, to DISC_STATS_DIGITS digits.
 * Quantiles are not released under DP (suppressed, rule "dp_no_quantiles").
 * No dominance rule: clamping bounds every contribution and the noise
 * covers it. Returns 0, or SDF_EINVAL for a bad range or epsilon. */
int disc_stats_noised(const disc_policy *p, const double *values, size_t n, double lo, double hi,
                      const unsigned char key[32], uint64_t index_base, disc_summary *out,
                      unsigned *rules) SDF_MUSTCHECK;

/* Names of the statistics rule bits (as disc_rule_names): writes up to max
 * static strings into out and returns how many. */
int disc_stats_rule_names(unsigned rules, const char **out, int max);

#endif
