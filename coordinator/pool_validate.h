/* coordinator/pool_validate.h — pooling `validate` results across sites (issue 5).
 *
 * Pure functions (no I/O). The AUC is pooled by random-effects
 * meta-analysis (DerSimonian-Laird) on the logit scale: per site
 * y = logit(AUC), v = SE^2 / (AUC (1 - AUC))^2 (delta method); the
 * estimate, its 95% CI and the 95% prediction interval (Higgins,
 * Thompson & Spiegelhalter 2009: t with k-2 df, needs k >= 3) are
 * transformed back. Confusion cells and calibration bins are summed over
 * the values the sites released; see docs/validate.md.
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

/* Fill r->pooled_validations from the sites' validations (kind validate):
 * one PooledValidation per strata key any ok site released. Freed by
 * pool_validations_free() (pool_free_cells calls it). Returns 0 or
 * SDF_ENOMEM (nothing left allocated). */
int pool_validations(Sdefed__FederatedResult *r) SDF_MUSTCHECK;
void pool_validations_free(Sdefed__FederatedResult *r);

#endif
