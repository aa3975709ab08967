/* coordinator/monitors.h — standing surveillance monitors and alerts (issue 6).
 *
 * A monitor is a `surveil` spec the coordinator re-runs on its own, one
 * period at a time, evaluating a sequential test (Poisson MaxSPRT or
 * CUSUM; seqtest.h) over the accumulating pooled series, and raising an
 * alert when it signals. A drift monitor (item 3) is a `validate` spec run
 * once per completed period of the predictions' dates, alerting when the
 * pooled AUC or calibration slope leaves an agreed band. Everything lives in the coordinator's store, so a
 * restart resumes at the first period not yet counted (each period is
 * counted once: its look and the monitor's running totals are written in
 * one transaction, keyed by period). See docs/surveillance.md.
 */
#ifndef COORD_MONITORS_H
#define COORD_MONITORS_H

#include <stdbool.h>

#include <jansson.h>

#include "coord.h"

/* One-sided exact Poisson p-value of `observed` events against an
 * expectation mu: P(X >= observed | mu) (1 when observed <= 0, 0 when mu
 * <= 0 < observed). An alert names the sites with p < MON_SITE_ALPHA. */
#define MON_SITE_ALPHA 0.05
double monitor_site_excess_p(int64_t observed, double mu);

/* A drift monitor's band. A limit applies only when its has_* flag is set. */
typedef struct monitor_band {
    bool has_auc_min, has_auc_max, has_slope_min, has_slope_max;
    double auc_min, auc_max, slope_min, slope_max;
} monitor_band;

/* True when x is outside the limits that are set (x < lo or x > hi).
 * A NaN x is never out of band (a withheld number is not evidence). */
bool monitor_band_out(double x, bool has_lo, double lo, bool has_hi, double hi);

/* One drift look from the FederatedResult of a validate query: returns a
 * new JSON object {"pooled": {"auc", "auc_lo", "auc_hi", "cal_slope",
 * "auc_sites", "slope_sites"}, "sites": [{"site", "status", "released",
 * "auc", "auc_lo", "auc_hi", "cal_slope"}], "out_of_band": ["auc" and/or
 * "cal_slope"]} (withheld numbers null), or NULL when out of memory.
 * Only the whole-site group (no strata) is used. The pooled AUC is the
 * coordinator's DerSimonian-Laird estimate; the pooled calibration slope is
 * the mean of the converged slopes of the sites that released the group,
 * weighted by their released n (the protocol carries no slope SE). *partial
 * is set when a site did not release the group (refused, or ok but
 * withheld) or a banded pooled metric could not be formed. */
json_t *monitor_drift_look(const Sdefed__FederatedResult *r, const monitor_band *b,
                           bool *partial);

/* Start the timer that runs due monitors (adding the drift columns to an
 * older store first). Returns 0, SDF_EDB or SDF_ENOMEM. */
int monitors_start(coord *co) SDF_MUSTCHECK;

/* Stop running monitors (shutdown); idempotent. Runs still in flight
 * finish through dispatch and are recorded. */
void monitors_stop(coord *co);

/* Free what monitors_start allocated, after the loop has closed every
 * handle. */
void monitors_free(coord *co);

/* An analyst's MonitorRequest: replies with a MonitorReply or an Error. */
void monitors_request(coord *co, peer *p, uint64_t request_id, const Sdefed__MonitorRequest *m);

#endif
