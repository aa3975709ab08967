/* agent/query.h — run one query request against the agent's datasets.
 *
 * query_run() is what a worker thread calls for each QueryRequest. It
 * re-validates the spec (spec_validate), checks it against the declared
 * datasets (unknown dataset, unknown concept ids), compiles it to one
 * parameterised SQL statement per dataset (never pasting values into SQL
 * text), runs it read-only with the deadline enforced inside the database
 * (SQLite progress handler), and passes every number through the
 * disclosure engine before it is put in the result. Nothing in a result's
 * `reason` contains a data value.
 */
#ifndef AGENT_QUERY_H
#define AGENT_QUERY_H

#include <stdatomic.h>

#include "agent_config.h"
#include "sdefed.pb-c.h"

/* Run req (read-only, owned by the caller) under cfg. `cancel` (may be NULL)
 * is polled by the progress handler: set it to non-zero to abandon the query
 * (reported as SITE_TIMEOUT "cancelled").
 *
 * Always returns a result for req->query_id, with status SITE_OK (cells or
 * catalog filled, policy and rules_fired set), SITE_REFUSED (the spec is
 * invalid or not answerable here; reason says why), SITE_TIMEOUT (deadline
 * passed; the database work was interrupted) or SITE_ERROR (database
 * failure; reason is generic, details go to the log). Returns NULL only on
 * out-of-memory. Free with query_result_free(). Thread-safe: uses no shared
 * state besides cfg, which must not change while it runs. */
Sdefed__QueryResult *query_run(const agent_config *cfg, const Sdefed__QueryRequest *req,
                               atomic_int *cancel);

/* Free a result returned by query_run() (NULL is fine). */
void query_result_free(Sdefed__QueryResult *r);

/* Describe the datasets for Hello (names, types, versions; no counts).
 * Fills *out (caller frees each with query_dataset_info_free and the array
 * with free). Returns count, or SDF_ENOMEM. */
int query_describe_datasets(const agent_config *cfg, Sdefed__DatasetInfo ***out);
void query_dataset_info_free(Sdefed__DatasetInfo *d);

#endif
