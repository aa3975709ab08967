/* agent/query_validate.h — the `validate` query kind (issue 5; docs/validate.md).
 *
 * query_run() (query.c) hands validate specs here. The spec names a
 * `type = table` predictions dataset; the outcome is its label column, or
 * an OMOP criterion within a window after each row's prediction date,
 * joined on the person id inside the agent. Metrics come from
 * agent/metrics.c; every count goes through disc_count() and a group is
 * released only with >= min_cell events and >= min_cell non-events.
 */
#ifndef AGENT_QUERY_VALIDATE_H
#define AGENT_QUERY_VALIDATE_H

#include "query_internal.h"

/* Most prediction rows (and outcome events) one query reads. */
#define VALIDATE_MAX_ROWS ((size_t)20000000)
/* Most distinct values of one `by` column. */
#define VALIDATE_MAX_LEVELS 100

/* Fill res->validations (the whole site first, then each released or
 * withheld subgroup of each `by` column) for a validate spec over the
 * predictions dataset ds. Returns 0, SDF_EREFUSED with a reason in
 * q->reason (never a data value or a small count), SDF_ETIMEOUT, SDF_EDB,
 * SDF_EOVERFLOW (more than VALIDATE_MAX_ROWS) or SDF_ENOMEM. */
int query_validate_run(query_ctx *q, const agent_dataset *ds, const Sdefed__QuerySpec *spec,
                       Sdefed__QueryResult *res) SDF_MUSTCHECK;

#endif
