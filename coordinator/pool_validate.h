/* coordinator/pool_validate.h — pooling `validate` results across sites (issue 5).
 *
 * Pure functions (no I/O). The AUC is pooled by random-effects
 * meta-analysis (DerSimonian-Laird) on the logit scale: per site
 * y = logit(AUC), v = SE^2 / (AUC (1 - AUC))^2 (delta method); the
 * estimate, its 95% CI and the 95% prediction interval (Higgins,
 * Thompson & Spiegelhalter 2009: t with k-2 df, needs k >= 3) are
 * transformed back. Confusion cells and calibration bins are summed over
 * the values the sites released; see docs/validate.md. Issue 5 items 3/4:
 * a pooled ROC curve from the sites' score histograms with a bound on its
 * AUC's error (pool_roc_merge), DerSimonian-Laird on the sites' paired AUC
 * differences, and no summing of quantile calibration bins.
 */
#ifndef COORD_POOL_VALIDATE_H
#define COORD_POOL_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#include "sdefed/err.h"
#include "sdefed.pb-c.h"

/* A DerSimonian-Laird random-effects estimate. */
typedef struct pool_meta {
    size_t k;                  /* studies */
    double mu, se;             /* pooled estimate and its SE (analysis scale) */
    double lo, hi;             /* 95% CI */
    bool has_pi;               /* k >= 3 */
    double pi_lo, pi_hi;       /* 95% prediction interval */
    double q, tau2, i2;        /* Cochran's Q, between-study variance, I^2 in [0, 1] */
} pool_meta;

/* Meta-analyse k >= 1 estimates y[i] with within-study variances v[i] > 0.
 * Returns 0 or SDF_EINVAL (k == 0, a variance <= 0 or not finite). */
int pool_meta_dl(const double *y, const double *v, size_t k, pool_meta *out) SDF_MUSTCHECK;

/* The same for AUCs in (0, 1) with standard errors se > 0, on the logit
 * scale; mu/lo/hi/pi_lo/pi_hi of *out are transformed back to the AUC
 * scale (se, q, tau2 stay on the logit scale). Returns 0 or SDF_EINVAL. */
int pool_meta_auc(const double *auc, const double *se, size_t k, pool_meta *out) SDF_MUSTCHECK;

/* Upper 97.5% point of Student's t with df >= 1 degrees of freedom. */
double pool_t975(unsigned df);

/* ---- pooled ROC from the sites' score histograms (issue 5 items 3/4) ---- */

/* One released histogram bin of one site: [lo, hi) with its counts. */
typedef struct pool_hbin {
    size_t site;               /* any id; bins with the same id are one site's */
    double lo, hi;
    double events, nonevents;
} pool_hbin;

/* A pooled ROC curve: n points from (0, 0) to (1, 1), each the rates at
 * `score >= thr` (the first point's thr is the top edge). */
typedef struct pool_roc {
    size_t n;
    double *fpr, *tpr, *thr;   /* one allocation, owned */
    double auc;                /* trapezoid area under the points */
    double max_error;          /* bound on |auc - the exact pooled AUC| (docs/validate.md) */
} pool_roc;

/* Merge nbins bins of one or more sites (each site's bins partition
 * [0, 1]) into a pooled ROC. The cut points are the union of all edges; a
 * site's bin that spans several cuts is split between them by Turnbull's
 * EM for interval-grouped counts, per label, started from the split
 * proportional to width (linear within the bin). `max_error` bounds the
 * error from not knowing where within the coarsest common bins (the
 * intervals between edges every site has) the scores lie; it takes the
 * released counts as exact. Returns 0, SDF_EINVAL (no bins, a bin with
 * lo >= hi or a negative count, no events or no non-events in total) or
 * SDF_ENOMEM. */
int pool_roc_merge(const pool_hbin *bins, size_t nbins, pool_roc *out) SDF_MUSTCHECK;
void pool_roc_free(pool_roc *r);

/* Fill r->pooled_validations from the sites' validations (kind validate):
 * one PooledValidation per strata key any ok site released. Freed by
 * pool_validations_free() (pool_free_cells calls it). Returns 0 or
 * SDF_ENOMEM (nothing left allocated). */
int pool_validations(Sdefed__FederatedResult *r) SDF_MUSTCHECK;
void pool_validations_free(Sdefed__FederatedResult *r);

#endif
