/* include/sdefed/result_data.h — the data a QueryResult carries, dropped.
 *
 * An agent drops it when a query fails (a failed query releases nothing);
 * the coordinator drops it from an answer it refuses to pool
 * (coordinator/result_check.h). Both own messages whose arrays and
 * elements were allocated with malloc, as protobuf-c's unpack does.
 */
#ifndef SDEFED_RESULT_DATA_H
#define SDEFED_RESULT_DATA_H

#include "sdefed.pb-c.h"

/* Free r's cells, catalog, summaries, surveil rows and validations and set
 * their counts to 0; status, reason, policy and rules_fired are kept. */
void result_data_clear(Sdefed__QueryResult *r);

#endif
