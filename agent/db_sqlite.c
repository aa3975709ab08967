/* agent/db_sqlite.c — the SQLite backend of agent/db.h.
 *
 * Datasets are opened strictly read-only (a `file:...?mode=ro` URI with
 * SQLITE_OPEN_READONLY, PRAGMA query_only, and an authorizer that allows
 * nothing but reading), one connection per query so worker threads share
 * nothing (SQLITE_OPEN_NOMUTEX). The deadline and the cancel flag are
 * enforced inside SQLite by a progress handler that runs every 1000 virtual
 * machine instructions: once either trips, SQLite abandons the statement
 * with SQLITE_INTERRUPT, reported as SDF_ETIMEOUT. SQLite's own error
 * messages are logged at warning level (they name tables or syntax, never
 * row values, for the SELECTs we generate); callers only see SDF_EDB.
 */
#include "db.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "sdefed/log.h"

/* Every this many VM instructions SQLite calls the progress handler. */
#define SQLITE_PROGRESS_OPS 1000
/* Cap on the text of one INT64_LIST parameter (10000 ids of 20 digits
 * fit comfortably). */
#define SQLITE_MAX_LIST_TEXT ((size_t)1 << 20)
/* Cap on the number of result columns we hand to a callback. */
#define SQLITE_MAX_COLS 64
/* Page cache per connection (KiB, negative for SQLite) and mmap window. */
#define SQLITE_CACHE_KIB 32768
#define SQLITE_MMAP_BYTES ((long long)256 << 20)
/* How long to wait for a writer's lock before giving up. */
#define SQLITE_BUSY_MS 2000

typedef struct sqlite_conn {
    db_conn base;
    sqlite3 *db;
    uint64_t deadline_unix_ms;
    atomic_int *cancel;
    char name[64];
} sqlite_conn;

static uint64_t now_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Non-zero return makes SQLite interrupt the running statement. */
static int progress_cb(void *arg)
{
    sqlite_conn *c = arg;
    if (c->cancel && atomic_load(c->cancel))
        return 1;
    if (c->deadline_unix_ms && now_unix_ms() >= c->deadline_unix_ms)
        return 1;
    return 0;
}

/* Allow reading only: no writes, no attach, no pragmas after setup. */
static int authorizer_cb(void *arg, int action, const char *a, const char *b,
                         const char *dbname, const char *trigger)
{
    (void)arg; (void)b; (void)dbname; (void)trigger;
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_FUNCTION:
    case SQLITE_RECURSIVE:
        return SQLITE_OK;
    case SQLITE_UPDATE:
        /* Declaring an eponymous virtual table (json_each) parses its
         * schema, which SQLite reports as an update of sqlite_master; no
         * write can happen (read-only open, query_only). */
        return a && strcmp(a, "sqlite_master") == 0 ? SQLITE_OK : SQLITE_DENY;
    default:
        return SQLITE_DENY;
    }
}

/* Percent-encode a file path for a SQLite URI (keeps unreserved and '/'). */
static int path_to_uri(const char *path, char *buf, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    const char *prefix = "file:";
    const char *suffix = "?mode=ro";
    size_t pl = strlen(prefix);
    if (len <= pl)
        return SDF_EOVERFLOW;
    memcpy(buf, prefix, pl);
    o = pl;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        unsigned char ch = *p;
        bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || ch == '/' || ch == '-' ||
                     ch == '_' || ch == '.' || ch == '~';
        if (plain) {
            if (o + 1 >= len)
                return SDF_EOVERFLOW;
            buf[o++] = (char)ch;
        } else {
            if (o + 3 >= len)
                return SDF_EOVERFLOW;
            buf[o++] = '%';
            buf[o++] = hex[ch >> 4];
            buf[o++] = hex[ch & 15];
        }
    }
    size_t sl = strlen(suffix);
    if (o + sl >= len)
        return SDF_EOVERFLOW;
    memcpy(buf + o, suffix, sl + 1);
    return 0;
}

static int map_rc(sqlite_conn *c, int rc, const char *what)
{
    int primary = rc & 0xff;
    if (primary == SQLITE_INTERRUPT)
        return SDF_ETIMEOUT;
    if (primary == SQLITE_NOMEM)
        return SDF_ENOMEM;
    log_warn("dataset %s: sqlite %s failed: %s", c->name, what, sqlite3_errmsg(c->db));
    return SDF_EDB;
}

static void sqlite_close(db_conn *base)
{
    sqlite_conn *c = (sqlite_conn *)base;
    if (c->db)
        sqlite3_close_v2(c->db);
    free(c);
}

/* JSON array text of a list of integers, for json_each(). */
static int list_to_json(const int64_t *list, size_t n, char **out)
{
    size_t cap = 2 + n * 21;
    if (n > SQLITE_MAX_LIST_TEXT / 21)
        return SDF_EOVERFLOW;
    char *buf = malloc(cap + 1);
    if (!buf)
        return SDF_ENOMEM;
    size_t o = 0;
    buf[o++] = '[';
    for (size_t k = 0; k < n; k++) {
        int w = snprintf(buf + o, cap + 1 - o, "%s%" PRId64, k ? "," : "", list[k]);
        if (w < 0 || (size_t)w >= cap + 1 - o) {
            free(buf);
            return SDF_EOVERFLOW;
        }
        o += (size_t)w;
    }
    buf[o++] = ']';
    buf[o] = '\0';
    *out = buf;
    return 0;
}

static int bind_params(sqlite_conn *c, sqlite3_stmt *st, const db_param *params,
                       size_t nparams)
{
    if ((size_t)sqlite3_bind_parameter_count(st) != nparams) {
        log_warn("dataset %s: statement expects %d parameters, got %zu", c->name,
                 sqlite3_bind_parameter_count(st), nparams);
        return SDF_EINVAL;
    }
    for (size_t k = 0; k < nparams; k++) {
        int idx = (int)k + 1;
        int rc;
        switch (params[k].type) {
        case DB_PARAM_INT64:
            rc = sqlite3_bind_int64(st, idx, params[k].i);
            break;
        case DB_PARAM_DOUBLE:
            rc = sqlite3_bind_double(st, idx, params[k].d);
            break;
        case DB_PARAM_TEXT:
            if (!params[k].s)
                return SDF_EINVAL;
            rc = sqlite3_bind_text(st, idx, params[k].s, -1, SQLITE_STATIC);
            break;
        case DB_PARAM_INT64_LIST: {
            char *json = NULL;
            int err = list_to_json(params[k].list, params[k].n, &json);
            if (err)
                return err;
            rc = sqlite3_bind_text(st, idx, json, -1, free);
            break;
        }
        default:
            return SDF_EINVAL;
        }
        if (rc != SQLITE_OK)
            return map_rc(c, rc, "bind");
    }
    return 0;
}

static int sqlite_query(db_conn *base, const char *sql, const db_param *params,
                        size_t nparams, db_row_fn fn, void *ctx)
{
    sqlite_conn *c = (sqlite_conn *)base;
    sqlite3_stmt *st = NULL;
    db_value cols[SQLITE_MAX_COLS];

    if (progress_cb(c))
        return SDF_ETIMEOUT;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return map_rc(c, rc, "prepare");
    if (!sqlite3_stmt_readonly(st)) {
        sqlite3_finalize(st);
        return SDF_EINVAL;
    }
    int ncols = sqlite3_column_count(st);
    if (ncols > SQLITE_MAX_COLS) {
        sqlite3_finalize(st);
        return SDF_EINVAL;
    }
    int err = bind_params(c, st, params, nparams);
    if (err) {
        sqlite3_finalize(st);
        return err;
    }
    for (;;) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
            err = 0;
            break;
        }
        if (rc != SQLITE_ROW) {
            err = map_rc(c, rc, "step");
            break;
        }
        for (int k = 0; k < ncols; k++) {
            int t = sqlite3_column_type(st, k);
            cols[k].is_null = (t == SQLITE_NULL);
            cols[k].i = (t == SQLITE_INTEGER || t == SQLITE_FLOAT)
                            ? sqlite3_column_int64(st, k) : 0;
            cols[k].s = cols[k].is_null ? NULL : (const char *)sqlite3_column_text(st, k);
            if (!cols[k].is_null && !cols[k].s) {
                err = SDF_ENOMEM;
                break;
            }
        }
        if (err)
            break;
        if (fn) {
            err = fn(ctx, cols, ncols);
            if (err > 0) {
                err = 0;   /* the callback has what it wanted */
                break;
            }
            if (err)
                break;
        }
    }
    sqlite3_finalize(st);
    return err;
}

static int exists_row(void *ctx, const db_value *cols, int ncols)
{
    (void)cols; (void)ncols;
    *(bool *)ctx = true;
    return 0;
}

static int sqlite_table_exists(db_conn *c, const char *table, bool *exists)
{
    db_param p = { .type = DB_PARAM_TEXT, .s = table };
    *exists = false;
    return sqlite_query(c, "SELECT 1 FROM sqlite_master WHERE type IN ('table','view') "
                           "AND name = ?1 COLLATE NOCASE LIMIT 1",
                        &p, 1, exists_row, exists);
}

static int fmt(char *buf, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));
static int fmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, len, f, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len)
        return SDF_EOVERFLOW;
    return n;
}

static int sqlite_sql_param(int n, char *buf, size_t len)
{
    return fmt(buf, len, "?%d", n);
}

static int sqlite_sql_int_list(int n, char *buf, size_t len)
{
    return fmt(buf, len, "SELECT value FROM json_each(?%d)", n);
}

/* ISO text (the OMOP/Eunomia convention); numbers above 1e7 are unix
 * seconds, smaller numbers Julian day numbers. */
static int sqlite_sql_year(const char *e, char *buf, size_t len)
{
    return fmt(buf, len,
               "(CASE WHEN typeof(%s) = 'text' AND %s GLOB '[0-9][0-9][0-9][0-9]-*' "
               "THEN CAST(substr(%s, 1, 4) AS INTEGER) "
               "WHEN typeof(%s) IN ('integer', 'real') AND %s > 10000000 "
               "THEN CAST(strftime('%%Y', %s, 'unixepoch') AS INTEGER) "
               "WHEN typeof(%s) IN ('integer', 'real') "
               "THEN CAST(strftime('%%Y', %s) AS INTEGER) END)",
               e, e, e, e, e, e, e, e);
}

static int sqlite_sql_date_iso(const char *e, char *buf, size_t len)
{
    return fmt(buf, len,
               "(CASE WHEN typeof(%s) = 'text' THEN date(%s) "
               "WHEN typeof(%s) IN ('integer', 'real') AND %s > 10000000 "
               "THEN date(%s, 'unixepoch') "
               "WHEN typeof(%s) IN ('integer', 'real') THEN date(%s) END)",
               e, e, e, e, e, e, e);
}

/* Day numbers are Julian day numbers truncated to an integer: julianday()
 * of an ISO date is N.5 (midnight), so the integer N is noon of the day
 * before; converting back adds 0.5. Numeric dates follow the same two
 * conventions as sqlite_sql_year. */
static int sqlite_sql_day(const char *e, char *buf, size_t len)
{
    return fmt(buf, len,
               "(CASE WHEN typeof(%s) = 'text' THEN CAST(julianday(%s) AS INTEGER) "
               "WHEN typeof(%s) IN ('integer', 'real') AND %s > 10000000 "
               "THEN CAST(julianday(%s, 'unixepoch') AS INTEGER) "
               "WHEN typeof(%s) IN ('integer', 'real') THEN CAST(julianday(%s) AS INTEGER) END)",
               e, e, e, e, e, e, e);
}

static int sqlite_sql_day_year(const char *e, char *buf, size_t len)
{
    return fmt(buf, len, "CAST(strftime('%%Y', (%s) + 0.5) AS INTEGER)", e);
}

static int sqlite_sql_day_month(const char *e, char *buf, size_t len)
{
    return fmt(buf, len, "CAST(strftime('%%m', (%s) + 0.5) AS INTEGER)", e);
}

static const db_ops sqlite_ops = {
    .name = "sqlite",
    .close = sqlite_close,
    .query = sqlite_query,
    .table_exists = sqlite_table_exists,
    .sql_param = sqlite_sql_param,
    .sql_int_list = sqlite_sql_int_list,
    .sql_year = sqlite_sql_year,
    .sql_date_iso = sqlite_sql_date_iso,
    .sql_day = sqlite_sql_day,
    .sql_day_year = sqlite_sql_day_year,
    .sql_day_month = sqlite_sql_day_month,
};

static int exec_setup(sqlite_conn *c, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        log_warn("dataset %s: sqlite setup failed: %s", c->name, msg ? msg : "?");
        sqlite3_free(msg);
        return SDF_EDB;
    }
    return 0;
}

int db_sqlite_open(const agent_dataset *ds, uint64_t deadline_unix_ms,
                   atomic_int *cancel, db_conn **out)
{
    char uri[PATH_MAX * 3 + 32];
    *out = NULL;
    if (path_to_uri(ds->path, uri, sizeof uri) != 0)
        return SDF_ECONFIG;

    sqlite_conn *c = calloc(1, sizeof *c);
    if (!c)
        return SDF_ENOMEM;
    c->base.ops = &sqlite_ops;
    c->deadline_unix_ms = deadline_unix_ms;
    c->cancel = cancel;
    snprintf(c->name, sizeof c->name, "%s", ds->name);

    int rc = sqlite3_open_v2(uri, &c->db,
                             SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI,
                             NULL);
    if (rc != SQLITE_OK) {
        if (c->db)
            log_warn("dataset %s: cannot open sqlite database: %s", c->name,
                     sqlite3_errmsg(c->db));
        else
            log_warn("dataset %s: cannot open sqlite database: out of memory", c->name);
        sqlite_close(&c->base);
        return SDF_EDB;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, SQLITE_BUSY_MS);

    char setup[160];
    snprintf(setup, sizeof setup,
             "PRAGMA query_only = ON; PRAGMA cache_size = -%d; PRAGMA mmap_size = %lld;",
             SQLITE_CACHE_KIB, SQLITE_MMAP_BYTES);
    int err = exec_setup(c, setup);
    if (err) {
        sqlite_close(&c->base);
        return err;
    }
    /* Opening is lazy: read the schema now so a file that is not a
     * database fails here, not in the middle of a query. */
    bool dummy;
    err = sqlite_table_exists(&c->base, "person", &dummy);
    if (err) {
        sqlite_close(&c->base);
        return err == SDF_ETIMEOUT ? err : SDF_EDB;
    }
    sqlite3_set_authorizer(c->db, authorizer_cb, NULL);
    sqlite3_progress_handler(c->db, SQLITE_PROGRESS_OPS, progress_cb, c);
    *out = &c->base;
    return 0;
}
