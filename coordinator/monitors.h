/* coordinator/monitors.h — standing surveillance monitors and alerts (issue 6).
 *
 * A monitor is a `surveil` spec the coordinator re-runs on its own, one
 * period at a time, evaluating a sequential test (Poisson MaxSPRT or
 * CUSUM; seqtest.h) over the accumulating pooled series, and raising an
 * alert when it signals. Everything lives in the coordinator's store, so a
 * restart resumes at the first period not yet counted (each period is
 * counted once: its look and the monitor's running totals are written in
 * one transaction, keyed by period). See docs/surveillance.md.
 */
#ifndef COORD_MONITORS_H
#define COORD_MONITORS_H

#include "coord.h"

/* Start the timer that runs due monitors. Returns 0 or SDF_ENOMEM. */
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
