/* agent/query_summary.h — the `summary` query kind (issue 3).
 *
 * query_count_run() hands summary specs here (so the shared dispatcher in
 * query.c only needed the kind routed to the count path).
 */
#ifndef AGENT_QUERY_SUMMARY_H
#define AGENT_QUERY_SUMMARY_H

#include "query_internal.h"

/* Fill res->summaries (one per stratum of the full grid) for a summary spec
 * over dataset ds: n, mean, sd and quartiles of spec->summary's variable in
 * the cohort, each controlled by disc_stats(). With q->want_persons also
 * fills q->persons (the cohort's person ids). Returns as query_count_run. */
int query_summary_run(query_ctx *q, const agent_dataset *ds, const Sdefed__QuerySpec *spec,
                      Sdefed__QueryResult *res) SDF_MUSTCHECK;

#endif
