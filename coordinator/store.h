/* coordinator/store.h — the coordinator's durable store (SQLite).
 *
 * Every submitted query is recorded when it is accepted (who asked, the
 * spec, which sites) and its federated result when it completes, so
 * `sdefed results QUERY_ID` works after the analyst disconnects or the
 * coordinator restarts. Results are kept as serialized FederatedResult
 * messages (they contain only disclosure-controlled values).
 */
#ifndef COORD_STORE_H
#define COORD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "sdefed/err.h"
#include "sdefed.pb-c.h"

typedef struct store store;

/* Open (creating tables if needed). NULL on failure with reason in err. */
store *store_open(const char *path, char *err, size_t errlen);
void store_close(store *s);

/* issue 6: the store's SQLite handle, for the monitor tables
 * (coordinator/monitors.c); loop thread only. */
struct sqlite3 *store_db(store *s);

/* Record an accepted query. spec_json: canonical JSON of the spec. */
int store_query_begin(store *s, const char *query_id, uint64_t submitted_ms,
                      const char *requester, const char *project, const char *kind,
                      const char *spec_json, const char *sites) SDF_MUSTCHECK;

/* Record the completed result. */
int store_query_finish(store *s, const Sdefed__FederatedResult *r, uint64_t completed_ms) SDF_MUSTCHECK;

/* Load a completed result. Returns 0 and *out (free with
 * sdefed__federated_result__free_unpacked), SDF_ENOTFOUND (no such query),
 * SDF_EREFUSED (exists but still running), or SDF_EDB. */
int store_query_load(store *s, const char *query_id, Sdefed__FederatedResult **out) SDF_MUSTCHECK;

/* Queries left unfinished by a previous run are marked so; returns how many. */
int store_recover(store *s);

#endif
