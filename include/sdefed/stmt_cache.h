/* include/sdefed/stmt_cache.h — prepared statements kept on one SQLite handle.
 *
 * The agent's state stores (the disclosure ledger, state.db with the audit
 * log) run the same dozen statements on every query; parsing them each time
 * was a tenth of an agent's CPU per query. A stmt_cache keeps them on the
 * handle that owns it. Not thread-safe: one cache per handle, used by
 * whoever uses the handle.
 */
#ifndef SDEFED_STMT_CACHE_H
#define SDEFED_STMT_CACHE_H

#include <stddef.h>

#include <sqlite3.h>

#define STMT_CACHE_MAX 24

typedef struct stmt_cache {
    sqlite3 *db;
    struct {
        const char *sql;     /* compared by content; must outlive the cache */
        sqlite3_stmt *st;
    } kept[STMT_CACHE_MAX];
    size_t n;
} stmt_cache;

/* Start an empty cache for db. */
void stmt_cache_init(stmt_cache *c, sqlite3 *db);

/* A prepared statement for sql: the kept one when there is one, else newly
 * prepared (and kept while there is room). Every caller passes a string
 * literal (or other text that outlives the cache). Release it with
 * stmt_cache_put() — never finalize it. Returns an SQLite result code;
 * *st is NULL unless SQLITE_OK. */
int stmt_cache_get(stmt_cache *c, const char *sql, sqlite3_stmt **st);

/* Release st (NULL is fine): a kept statement is reset and its bindings
 * cleared (no SQLITE_STATIC pointer outlives the call, no read transaction
 * stays open); one that did not fit is finalized. */
void stmt_cache_put(stmt_cache *c, sqlite3_stmt *st);

/* Run a statement without parameters or result rows (BEGIN, COMMIT, a
 * PRAGMA setting) through the cache: sqlite3_exec would parse it on every
 * call. Returns SQLITE_OK or the SQLite error code. */
int stmt_cache_exec(stmt_cache *c, const char *sql);

/* Finalize every kept statement (before sqlite3_close of the handle). */
void stmt_cache_clear(stmt_cache *c);

#endif
