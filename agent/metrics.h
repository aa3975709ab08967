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
 * logistic recalibration slope/intercept (Newton-Raphson).
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

/* Bin rows into nbins (1..METRICS_MAX_BINS) equal-width bins over [0, 1].
 * bins must hold nbins entries. Returns 0 or SDF_EINVAL. */
int metrics_bins_fixed(const double *score, const unsigned char *label, size_t n, size_t nbins,
                       metrics_bin *bins) SDF_MUSTCHECK;

#endif
