/* lib/stmt_cache.c — prepared statements kept on one SQLite handle (stmt_cache.h). */
#include "sdefed/stmt_cache.h"

#include <string.h>

void stmt_cache_init(stmt_cache *c, sqlite3 *db)
{
    memset(c, 0, sizeof *c);
    c->db = db;
}

int stmt_cache_get(stmt_cache *c, const char *sql, sqlite3_stmt **st)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->kept[i].sql, sql) == 0) {
            *st = c->kept[i].st;
            return SQLITE_OK;
        }
    }
    int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(*st);
        *st = NULL;
        return rc;
    }
    if (c->n < STMT_CACHE_MAX) {
        c->kept[c->n].sql = sql;
        c->kept[c->n].st = *st;
        c->n++;
    }
    return SQLITE_OK;
}

void stmt_cache_put(stmt_cache *c, sqlite3_stmt *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < c->n; i++) {
        if (c->kept[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return;
        }
    }
    sqlite3_finalize(st);
}

int stmt_cache_exec(stmt_cache *c, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc = stmt_cache_get(c, sql, &st);
    if (rc != SQLITE_OK)
        return rc;
    do
        rc = sqlite3_step(st);
    while (rc == SQLITE_ROW);
    stmt_cache_put(c, st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

void stmt_cache_clear(stmt_cache *c)
{
    for (size_t i = 0; i < c->n; i++)
        sqlite3_finalize(c->kept[i].st);
    c->n = 0;
}
