/* agent/metrics.h — exact performance metrics of a risk score against outcomes.
 *
 * Pure numerical code for the `validate` query kind (issue 5; docs/validate.md):
 * no I/O, no disclosure decisions (agent/query_validate.c applies those to
 * what these functions compute). Scores are predicted probabilities in
 * [0, 1]; labels are 0/1. Everything is computed exactly over the rows
 * given: confusion matrices at a threshold (a row is predicted positive when
 * score >= threshold), Wilson score intervals, the AUC with DeLong's
 * variance (ties count one half, as in pROC), binned calibration, the
 * Brier score, observed/expected ratio, calibration-in-the-large and the
 * logistic recalibration slope/intercept (Newton-Raphson). Issue 5 items
 * 3/4: quantile bin edges, score-histogram coarsening under the count
 * rules, DeLong structural components and the paired comparison of two
 * scores on the same rows.
 */
#ifndef AGENT_METRICS_H
#define AGENT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "sdefed/err.h"

/* z for two-sided 95% intervals. */
#define METRICS_Z95 1.959963984540054

typedef struct metrics_confusion {
    int64_t tp, fp, tn, fn;
} metrics_confusion;

/* A proportion with its interval; est/lo/hi are NaN when the denominator is 0. */
typedef struct metrics_ci {
    double est, lo, hi;
} metrics_ci;

/* Confusion matrix at threshold thr over n rows (score >= thr is positive). */
void metrics_confusion_at(const double *score, const unsigned char *label, size_t n, double thr,
                          metrics_confusion *out);

/* Wilson score 95% interval of x successes in n trials (0 <= x <= n). */
metrics_ci metrics_wilson(int64_t x, int64_t n);

/* AUC (probability a random event scores above a random non-event, ties
 * one half) and DeLong's variance of it. Returns 0, SDF_EINVAL when there
 * is no event or no non-event, or SDF_ENOMEM. The inputs are not modified. */
int metrics_auc_delong(const double *score, const unsigned char *label, size_t n, double *auc,
                       double *var) SDF_MUSTCHECK;

/* 95% interval of an AUC from its DeLong variance, as pROC: auc +- z*sd,
 * clipped to [0, 1]. */
metrics_ci metrics_auc_ci(double auc, double var);

/* Calibration summary over n rows. */
typedef struct metrics_calibration {
    double brier;              /* mean (score - label)^2 */
    double mean_predicted;
    double observed_rate;
    double oe_ratio;           /* events / sum of scores; NaN when the sum is 0 */
    double citl;               /* calibration-in-the-large: a in logit P(y) = a + logit(p) */
    double slope, intercept;   /* logit P(y) = intercept + slope * logit(p) */
    int converged;             /* 1 if both Newton-Raphson fits converged */
} metrics_calibration;

/* Compute the calibration summary. Scores are clamped to [1e-9, 1 - 1e-9]
 * before taking logits. Returns 0, or SDF_EINVAL when n == 0. A fit that
 * does not converge in 50 iterations (separable data) leaves NaN in its
 * fields and converged = 0; this is not an error. */
int metrics_calibration_fit(const double *score, const unsigned char *label, size_t n,
                            metrics_calibration *out) SDF_MUSTCHECK;

/* One calibration bin. */
typedef struct metrics_bin {
    double lo, hi;             /* score range: [lo, hi) ([lo, hi] for the last) */
    int64_t n, events;
    double sum_predicted;      /* mean predicted = sum_predicted / n */
} metrics_bin;

#define METRICS_MAX_BINS 50
#define METRICS_QUANTILE_SPAN 10

/* Bin rows into nbins (1..METRICS_MAX_BINS) equal-width bins over [0, 1].
 * bins must hold nbins entries. Returns 0 or SDF_EINVAL. */
int metrics_bins_fixed(const double *score, const unsigned char *label, size_t n, size_t nbins,
                       metrics_bin *bins) SDF_MUSTCHECK;

/* Bin rows into nbins (1..METRICS_MAX_BINS) bins with the given edges
 * (nbins + 1 strictly increasing values, edges[0] = 0, edges[nbins] = 1):
 * bin b holds edges[b] <= score < edges[b+1] (the last also score == 1).
 * Returns 0 or SDF_EINVAL. */
int metrics_bins_edges(const double *score, const unsigned char *label, size_t n,
                       const double *edges, size_t nbins, metrics_bin *bins) SDF_MUSTCHECK;

/* Edges of quantile bins: the k/nbins quantiles (k = 1..nbins-1), each
 * the mean of the METRICS_QUANTILE_SPAN sorted scores at indices
 * floor(k n / nbins) - SPAN/2 .. + SPAN/2 - 1 (shifted to stay inside;
 * fewer when n is smaller), so that no edge is a single row's score,
 * rounded to 3 decimals, kept when strictly between the previous edge and
 * 1; edges[0] = 0 and edges[*nb_out] = 1. edges must hold nbins + 1
 * values; *nb_out is 1..nbins. Returns 0, SDF_EINVAL (n == 0 or nbins out
 * of 1..METRICS_MAX_BINS) or SDF_ENOMEM. */
int metrics_quantile_edges(const double *score, size_t n, size_t nbins, double *edges,
                           size_t *nb_out) SDF_MUSTCHECK;

/* ---- score histograms (issue 5 items 3/4) ---- */

#define METRICS_MAX_HIST_BINS 1000

/* Merge nfine adjacent fine bins (event counts ev[], non-event counts ne[])
 * into coarse bins whose event and non-event counts each pass the count
 * rules: >= min_cell, or 0 when zero_ok. Deterministic, left to right: a
 * coarse bin closes at the first fine bin where it is non-empty and both
 * counts pass; a trailing remainder that does not pass is merged into the
 * coarse bins before it until the merged bin passes. Empty fine bins join
 * the next non-empty coarse bin (trailing ones the last). ends[k] is one
 * past the last fine bin of coarse bin k (ends must hold nfine entries);
 * *n_out coarse bins cover all fine bins. Returns 0, or SDF_EINVAL when
 * nfine is 0 or the totals themselves do not pass (no partition can). */
int metrics_hist_coarsen(const int64_t *ev, const int64_t *ne, size_t nfine, int64_t min_cell,
                         int zero_ok, size_t *ends, size_t *n_out) SDF_MUSTCHECK;

/* ---- two model versions on the same rows (paired DeLong) ---- */

typedef struct metrics_auc_diff {
    double auc_a, auc_b;
    double diff;               /* auc_b - auc_a */
    double se;                 /* DeLong 1988: from the covariance of the structural components */
    double lo, hi;             /* diff +- z95 * se, clipped to [-1, 1] */
    double p;                  /* two-sided, H0: diff = 0 (1 when se == 0 and diff == 0) */
} metrics_auc_diff;

/* Compare two scores of the same n rows against the same labels.
 * Returns 0, SDF_EINVAL (no event or no non-event) or SDF_ENOMEM. */
int metrics_auc_paired(const double *score_a, const double *score_b, const unsigned char *label,
                       size_t n, metrics_auc_diff *out) SDF_MUSTCHECK;

/* DeLong structural components of one score: comp[i] is V10 (the share of
 * non-events scored below row i, ties one half) for an event and V01 (the
 * share of events scored above it, ties one half) for a non-event. The
 * AUC is the mean of V10 over events (and of V01 over non-events).
 * Returns 0, SDF_EINVAL (no event or no non-event) or SDF_ENOMEM. */
int metrics_delong_components(const double *score, const unsigned char *label, size_t n,
                              double *comp) SDF_MUSTCHECK;

/* Two-sided normal p-value of z: P(|Z| >= |z|). */
double metrics_p_two_sided(double z);

#endif
