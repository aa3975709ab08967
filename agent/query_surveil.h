/* agent/query_surveil.h — the `surveil` query kind (issue 6; docs/surveillance.md).
 *
 * query.c routes surveil specs here. The exposure cohort is compiled by the
 * cohort compiler (query_cohort.h); this file adds the follow-up (outcome,
 * observation end, death), computes person-time per period of the index
 * date and passes every number through the disclosure engine.
 */
#ifndef AGENT_QUERY_SURVEIL_H
#define AGENT_QUERY_SURVEIL_H

#include "query_internal.h"

/* Fill res->surveil for a surveil spec over dataset ds: one row per period
 * x stratum for the exposure arm, then (with a comparator) the same for
 * the comparator arm. Counts go through disc_count; person-time is
 * withheld when its persons count is suppressed or the per-person
 * contributions are dominated (disc_dominated), else rounded like a count;
 * rates and rate ratios are computed from released numbers only and
 * withheld when any input is. Returns 0, SDF_EREFUSED (reason in
 * q->reason, no data values), SDF_ETIMEOUT, SDF_EDB or SDF_ENOMEM. */
int query_surveil_run(query_ctx *q, const agent_dataset *ds, const Sdefed__QuerySpec *spec,
                      Sdefed__QueryResult *res) SDF_MUSTCHECK;

#endif
