/* coordinator/store.c — SQLite store of queries and federated results. */
#include "store.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdefed/log.h"
#include "sdefed/stmt_cache.h"

struct store {
    sqlite3 *db;
    /* the two statements every federated query runs, kept prepared (parsing
     * them was ~9 % of the coordinator's CPU per query with 8 sites) */
    stmt_cache stmts;
};

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS queries ("
    "  query_id TEXT PRIMARY KEY,"
    "  submitted_ms INTEGER NOT NULL,"
    "  requester TEXT NOT NULL,"
    "  project TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  spec TEXT NOT NULL,"
    "  sites TEXT NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'running',"   /* running | done | interrupted */
    "  completed_ms INTEGER,"
    "  result BLOB);"
    "CREATE INDEX IF NOT EXISTS queries_submitted ON queries(submitted_ms);"
    /* issue 6: surveillance monitors (coordinator/monitors.c) */
    "CREATE TABLE IF NOT EXISTS monitors ("
    "  id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_ms INTEGER NOT NULL,"
    "  spec BLOB NOT NULL, spec_json TEXT NOT NULL, every_ms INTEGER NOT NULL,"
    "  test TEXT NOT NULL, expected_rate REAL NOT NULL, alpha REAL NOT NULL,"
    "  length REAL NOT NULL, threshold REAL NOT NULL,"
    "  next_period INTEGER NOT NULL DEFAULT 0, last_run_ms INTEGER NOT NULL DEFAULT 0,"
    "  state TEXT NOT NULL DEFAULT 'active',"          /* active | signalled | done */
    "  cum_events REAL NOT NULL DEFAULT 0, cum_expected REAL NOT NULL DEFAULT 0,"
    "  cusum REAL NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS monitor_looks ("
    "  monitor TEXT NOT NULL, period_index INTEGER NOT NULL, period TEXT NOT NULL,"
    "  run_ms INTEGER NOT NULL, query_id TEXT NOT NULL, events INTEGER NOT NULL,"
    "  person_days INTEGER NOT NULL, expected REAL NOT NULL, statistic REAL NOT NULL,"
    "  signal INTEGER NOT NULL, partial INTEGER NOT NULL, sites TEXT NOT NULL,"
    "  PRIMARY KEY (monitor, period_index));"
    "CREATE TABLE IF NOT EXISTS monitor_runs ("
    "  monitor TEXT NOT NULL, run_ms INTEGER NOT NULL, period TEXT NOT NULL,"
    "  query_id TEXT NOT NULL, outcome TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS alerts ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, monitor TEXT NOT NULL, owner TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL, json TEXT NOT NULL);";

store *store_open(const char *path, char *err, size_t errlen)
{
    store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(s->db, 2000);
    char *msg = NULL;
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, schema, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "store %s: %s", path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        sqlite3_close(s->db);
        free(s);
        return NULL;
    }
    stmt_cache_init(&s->stmts, s->db);
    return s;
}

struct sqlite3 *store_db(store *s)
{
    return s ? s->db : NULL;
}

void store_close(store *s)
{
    if (!s)
        return;
    stmt_cache_clear(&s->stmts);
    sqlite3_close(s->db);
    free(s);
}

static int step_done(store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    stmt_cache_put(&s->stmts, st);
    if (rc != SQLITE_DONE) {
        log_error("store: %s: %s", what, sqlite3_errmsg(s->db));
        return SDF_EDB;
    }
    return 0;
}

int store_query_begin(store *s, const char *query_id, uint64_t submitted_ms,
                      const char *requester, const char *project, const char *kind,
                      const char *spec_json, const char *sites)
{
    sqlite3_stmt *st;
    if (stmt_cache_get(&s->stmts,
                       "INSERT INTO queries(query_id, submitted_ms, requester, project, kind,"
                       " spec, sites) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                       &st) != SQLITE_OK) {
        log_error("store: prepare insert: %s", sqlite3_errmsg(s->db));
        return SDF_EDB;
    }
    sqlite3_bind_text(st, 1, query_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)submitted_ms);
    sqlite3_bind_text(st, 3, requester, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, project, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, spec_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, sites, -1, SQLITE_STATIC);
    return step_done(s, st, "insert query");
}

int store_query_finish(store *s, const Sdefed__FederatedResult *r, uint64_t completed_ms)
{
    size_t len = sdefed__federated_result__get_packed_size(r);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return SDF_ENOMEM;
    sdefed__federated_result__pack(r, buf);
    sqlite3_stmt *st;
    if (stmt_cache_get(&s->stmts,
                       "UPDATE queries SET state = 'done', completed_ms = ?2, result = ?3"
                       " WHERE query_id = ?1",
                       &st) != SQLITE_OK) {
        log_error("store: prepare update: %s", sqlite3_errmsg(s->db));
        free(buf);
        return SDF_EDB;
    }
    sqlite3_bind_text(st, 1, r->query_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)completed_ms);
    sqlite3_bind_blob(st, 3, buf, (int)len, free);
    return step_done(s, st, "store result");
}

int store_query_load(store *s, const char *query_id, Sdefed__FederatedResult **out)
{
    *out = NULL;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT state, result FROM queries WHERE query_id = ?1", -1,
                           &st, NULL) != SQLITE_OK) {
        log_error("store: prepare select: %s", sqlite3_errmsg(s->db));
        return SDF_EDB;
    }
    sqlite3_bind_text(st, 1, query_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(st);
        return SDF_ENOTFOUND;
    }
    if (rc != SQLITE_ROW) {
        log_error("store: select: %s", sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        return SDF_EDB;
    }
    const char *state = (const char *)sqlite3_column_text(st, 0);
    if (!state || strcmp(state, "done") != 0) {
        bool running = state && strcmp(state, "running") == 0;
        sqlite3_finalize(st);
        return running ? SDF_EREFUSED : SDF_ENOTFOUND;
    }
    const void *blob = sqlite3_column_blob(st, 1);
    int len = sqlite3_column_bytes(st, 1);
    *out = sdefed__federated_result__unpack(NULL, (size_t)len, blob);
    sqlite3_finalize(st);
    if (!*out) {
        log_error("store: stored result for %s does not decode", query_id);
        return SDF_EDB;
    }
    return 0;
}

int store_recover(store *s)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, "UPDATE queries SET state = 'interrupted' WHERE state = 'running'",
                     NULL, NULL, &msg) != SQLITE_OK) {
        log_error("store: recover: %s", msg ? msg : "");
        sqlite3_free(msg);
        return SDF_EDB;
    }
    return sqlite3_changes(s->db);
}
