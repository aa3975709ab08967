/* coordinator/pool.h — pooling per-site results into federation totals.
 *
 * Pure functions over protobuf messages: no I/O. For counts, each stratum's
 * pooled value is the sum of the values the sites RELEASED (already
 * disclosure-controlled at the sites); if any site suppressed that cell the
 * pooled cell is marked lower_bound, because the true total is at least the
 * sum shown. A stratum every answering site suppressed stays suppressed.
 * Only sites with status ok contribute.
 */
#ifndef COORD_POOL_H
#define COORD_POOL_H

#include "sdefed/err.h"
#include "sdefed.pb-c.h"

/* Fill r->pooled from r->sites according to r->kind. Cells are allocated
 * with malloc and freed by pool_free_cells() (not by protobuf-c, since r was
 * built by the coordinator). Strata order follows first appearance.
 * Returns 0 or SDF_ENOMEM (r->pooled then empty). */
int pool_result(Sdefed__FederatedResult *r) SDF_MUSTCHECK;
void pool_free_cells(Sdefed__FederatedResult *r);

/* Summary kind (issue 3), called by pool_result: r->pooled_summaries gets
 * one Summary per stratum any ok site reported, with
 *   n     = sum of the released n (status as for counts; partial when some
 *           site suppressed that stratum's n);
 *   mean  = sum(n_i * mean_i) / sum(n_i) over sites that released both;
 *   sd    = sqrt((sum((n_i - 1) sd_i^2) + sum(n_i (mean_i - mean)^2)) / (N - 1))
 *           over sites that released n, mean and sd (the exact pooled
 *           variance when the n_i are exact; with rounded n_i it is an
 *           approximation, so status "rounded");
 *   partial = some site's stratum was (partly) suppressed: the pooled
 *           numbers cover the other sites only;  sites = contributors.
 * Quantiles are not pooled (per-site quantiles do not combine exactly and
 * sites release no histograms). Freed by pool_free_cells(). Returns 0 or
 * SDF_ENOMEM. */
int pool_summaries(Sdefed__FederatedResult *r) SDF_MUSTCHECK;

/* A stable text key for a list of strata ("sex=female|age_band=40-49"),
 * written into buf: what pooling matches sites' cells, summaries and
 * validations by. Returns 0 or SDF_EOVERFLOW. pool_strata_key is this for
 * a cell's strata. Keys are compared in buffers of POOL_KEY_MAX bytes
 * (result_check.c refuses an answer whose key would not fit). */
#define POOL_KEY_MAX 1024
int pool_key(Sdefed__Stratum *const *strata, size_t n, char *buf, size_t len);
int pool_strata_key(const Sdefed__Cell *c, char *buf, size_t len);

#endif
