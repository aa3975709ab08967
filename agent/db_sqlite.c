/* agent/db_sqlite.c — the SQLite backend of agent/db.h.
 *
 * Datasets are opened strictly read-only (a `file:...?mode=ro` URI with
 * SQLITE_OPEN_READONLY, PRAGMA query_only, and an authorizer that allows
 * nothing but reading). A connection is used by one query (one worker
 * thread) at a time (SQLITE_OPEN_NOMUTEX). The deadline and the cancel flag
 * are enforced inside SQLite by a progress handler that runs every 1000
 * virtual machine instructions: once either trips, SQLite abandons the
 * statement with SQLITE_INTERRUPT, reported as SDF_ETIMEOUT. SQLite's own
 * error messages are logged at warning level (they name tables or syntax,
 * never row values, for the SELECTs we generate); callers only see SDF_EDB.
 *
 * Warm connections (issue 3 performance): opening a dataset costs an open,
 * a schema parse, an mmap and, per statement, a parse and plan. db_close()
 * therefore returns a connection whose every call succeeded to a small
 * process-wide pool of idle connections, each keeping its last prepared
 * statements (looked up by exact SQL text; bindings are cleared after every
 * use, so no value outlives its query). db_sqlite_open() reuses an idle
 * connection only while the dataset path still names the same file (device,
 * inode, size and modification time all unchanged); otherwise the stale
 * connection is closed and a new one opened. Changes made in place by a
 * SQLite writer are seen anyway: SQLite re-checks the file change counter
 * at the start of every read transaction and drops its cache. A connection
 * that saw any error is closed, never pooled; idle connections are closed
 * after SQLITE_POOL_IDLE_MS or by db_sqlite_pool_drain().
 */
#include "db.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
/* Page cache per connection (KiB, negative for SQLite) and mmap window.
 * SQLite's default page cache (2000 KiB): a 32 MiB cache cost 11 % more CPU
 * on the 1M-person benchmark statement (sqlite3 shell, same statement, 4
 * interleaved runs: 0.62 s against 0.56 s), 8 MiB 4 %; pages come from the
 * mmap window or the OS page cache anyway. */
#define SQLITE_CACHE_KIB 2000
/* The mmap window: as much of the file as SQLite allows (Debian's build
 * caps it at 0x7fff0000). A pooled connection keeps its mapping, so a
 * warm query reads pages without a pread copy each: on the 1M-person
 * benchmark statement, 2 GiB against 256 MiB took 8 % less wall time and
 * half the system time (same warm connection, best of 4: 0.526 s against
 * 0.571 s). Mapped pages are the OS page cache, not the agent's heap. */
#define SQLITE_MMAP_BYTES ((long long)0x7fff0000)
/* How long to wait for a writer's lock before giving up. */
#define SQLITE_BUSY_MS 2000
/* Idle connections kept (process-wide) and for how long. */
#define SQLITE_POOL_MAX 8
#define SQLITE_POOL_IDLE_MS 300000u
/* Prepared statements kept per connection, and a cap on their SQL text. */
#define SQLITE_STMT_CACHE 16
#define SQLITE_STMT_CACHE_BYTES ((size_t)1 << 20)

typedef struct stmt_entry {
    sqlite3_stmt *st;
    char *sql;                 /* exact text it was prepared from */
    size_t len;
    uint64_t used;             /* LRU tick */
} stmt_entry;

/* What identifies the file a connection was opened on. */
typedef struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim;
} file_id;

typedef struct sqlite_conn {
    db_conn base;
    sqlite3 *db;
    uint64_t deadline_unix_ms;
    atomic_int *cancel;
    char name[64];
    /* pooling */
    bool poolable;             /* opened on a file we could identify */
    bool failed;               /* some call failed: never pool it */
    file_id fid;
    char path[PATH_MAX];
    uint64_t idle_since;
    stmt_entry stmts[SQLITE_STMT_CACHE];
    size_t n_stmts;
    size_t stmt_bytes;
    uint64_t tick;
    /* row-id ranges looked up on this connection (sqlite_row_id_range), so
     * a small count does not pay two lookups each time. A pooled connection
     * lives only while its file is the same; a range gone stale after that
     * (a writer's WAL) only unbalances a split: its parts' ends are open. */
    struct {
        char table[32];
        int64_t lo, hi;
        bool rowid;
    } ranges[4];
    size_t n_ranges;
} sqlite_conn;

static pthread_mutex_t g_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static sqlite_conn *g_pool[SQLITE_POOL_MAX];

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

/* Allow reading only: no writes, no attach, no pragmas after setup but the
 * table list. */
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
    case SQLITE_PRAGMA:
        /* pragma_table_list (sqlite_row_id_range): lists tables, changes nothing */
        return a && strcmp(a, "table_list") == 0 ? SQLITE_OK : SQLITE_DENY;
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

static uint64_t now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Really close: finalize the cached statements, close, free. */
static void conn_destroy(sqlite_conn *c)
{
    if (!c)
        return;
    for (size_t k = 0; k < c->n_stmts; k++) {
        sqlite3_finalize(c->stmts[k].st);
        free(c->stmts[k].sql);
    }
    if (c->db)
        sqlite3_close_v2(c->db);
    free(c);
}

static bool file_id_of(const char *path, file_id *id)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->size = st.st_size;
    id->mtim = st.st_mtim;
    return true;
}

static bool file_id_eq(const file_id *a, const file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtim.tv_sec == b->mtim.tv_sec && a->mtim.tv_nsec == b->mtim.tv_nsec;
}

/* An idle connection on exactly this file, or NULL. Closes idle
 * connections that expired or whose file changed under the same path. */
static sqlite_conn *pool_take(const char *path, const file_id *id)
{
    sqlite_conn *found = NULL;
    sqlite_conn *stale[SQLITE_POOL_MAX];
    size_t n_stale = 0;
    uint64_t now = now_mono_ms();
    pthread_mutex_lock(&g_pool_mu);
    for (size_t k = 0; k < SQLITE_POOL_MAX; k++) {
        sqlite_conn *c = g_pool[k];
        if (!c)
            continue;
        bool same_path = strcmp(c->path, path) == 0;
        if (now - c->idle_since > SQLITE_POOL_IDLE_MS ||
            (same_path && (!id || !file_id_eq(&c->fid, id)))) {
            stale[n_stale++] = c;
            g_pool[k] = NULL;
        } else if (!found && same_path) {
            found = c;
            g_pool[k] = NULL;
        }
    }
    pthread_mutex_unlock(&g_pool_mu);
    for (size_t k = 0; k < n_stale; k++)
        conn_destroy(stale[k]);
    return found;
}

/* Park a healthy connection (evicting the longest idle one if full). */
static void pool_put(sqlite_conn *c)
{
    sqlite_conn *evict = NULL;
    size_t oldest = 0, k;
    c->deadline_unix_ms = 0;
    c->cancel = NULL;
    c->idle_since = now_mono_ms();
    pthread_mutex_lock(&g_pool_mu);
    for (k = 0; k < SQLITE_POOL_MAX; k++) {
        if (!g_pool[k])
            break;
        if (g_pool[k]->idle_since < g_pool[oldest]->idle_since)
            oldest = k;
    }
    if (k == SQLITE_POOL_MAX) {
        evict = g_pool[oldest];
        k = oldest;
    }
    g_pool[k] = c;
    pthread_mutex_unlock(&g_pool_mu);
    conn_destroy(evict);
}

void db_sqlite_pool_drain(void)
{
    sqlite_conn *all[SQLITE_POOL_MAX];
    pthread_mutex_lock(&g_pool_mu);
    for (size_t k = 0; k < SQLITE_POOL_MAX; k++) {
        all[k] = g_pool[k];
        g_pool[k] = NULL;
    }
    pthread_mutex_unlock(&g_pool_mu);
    for (size_t k = 0; k < SQLITE_POOL_MAX; k++)
        conn_destroy(all[k]);
}

/* No explicit transaction open and no statement mid-way. */
static bool conn_is_idle(sqlite_conn *c)
{
    if (!c->db || !sqlite3_get_autocommit(c->db))
        return false;
    for (sqlite3_stmt *st = sqlite3_next_stmt(c->db, NULL); st; st = sqlite3_next_stmt(c->db, st))
        if (sqlite3_stmt_busy(st))
            return false;
    return true;
}

static void sqlite_close(db_conn *base)
{
    sqlite_conn *c = (sqlite_conn *)base;
    if (c->poolable && !c->failed && conn_is_idle(c))
        pool_put(c);
    else
        conn_destroy(c);
}

/* The cached statement for exactly this SQL text (taken out of the cache
 * while in use), or NULL. */
static sqlite3_stmt *stmt_cache_take(sqlite_conn *c, const char *sql, size_t len)
{
    for (size_t k = 0; k < c->n_stmts; k++) {
        stmt_entry *e = &c->stmts[k];
        if (e->len == len && memcmp(e->sql, sql, len) == 0) {
            sqlite3_stmt *st = e->st;
            free(e->sql);
            c->stmt_bytes -= len;
            c->stmts[k] = c->stmts[--c->n_stmts];
            return st;
        }
    }
    return NULL;
}

/* Keep a reset statement with cleared bindings for reuse (or finalize it
 * if it does not fit). */
static void stmt_cache_put(sqlite_conn *c, sqlite3_stmt *st, const char *sql, size_t len)
{
    if (len > SQLITE_STMT_CACHE_BYTES / 4) {
        sqlite3_finalize(st);
        return;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        sqlite3_finalize(st);
        return;
    }
    memcpy(copy, sql, len + 1);
    /* evict least recently used entries until it fits */
    while (c->n_stmts == SQLITE_STMT_CACHE || c->stmt_bytes + len > SQLITE_STMT_CACHE_BYTES) {
        size_t lru = 0;
        for (size_t k = 1; k < c->n_stmts; k++)
            if (c->stmts[k].used < c->stmts[lru].used)
                lru = k;
        sqlite3_finalize(c->stmts[lru].st);
        free(c->stmts[lru].sql);
        c->stmt_bytes -= c->stmts[lru].len;
        c->stmts[lru] = c->stmts[--c->n_stmts];
    }
    c->stmts[c->n_stmts++] = (stmt_entry){ .st = st, .sql = copy, .len = len, .used = ++c->tick };
    c->stmt_bytes += len;
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

/* db_value.text_of: the column as text, made by SQLite now (valid until
 * the statement steps again). */
static const char *sqlite_text_of(const db_value *v)
{
    return (const char *)sqlite3_column_text((sqlite3_stmt *)v->impl, v->col);
}

static int sqlite_query(db_conn *base, const char *sql, const db_param *params,
                        size_t nparams, db_row_fn fn, void *ctx)
{
    sqlite_conn *c = (sqlite_conn *)base;
    sqlite3_stmt *st = NULL;
    db_value cols[SQLITE_MAX_COLS];
    size_t len = strlen(sql);

    if (progress_cb(c) || len >= INT_MAX) {
        c->failed = true;
        return len >= INT_MAX ? SDF_EINVAL : SDF_ETIMEOUT;
    }
    st = stmt_cache_take(c, sql, len);
    if (!st) {
        int rc = sqlite3_prepare_v3(c->db, sql, (int)len + 1,
                                    SQLITE_PREPARE_PERSISTENT, &st, NULL);
        if (rc != SQLITE_OK) {
            c->failed = true;
            return map_rc(c, rc, "prepare");
        }
        if (!st || !sqlite3_stmt_readonly(st)) {   /* empty or writing statement */
            sqlite3_finalize(st);
            c->failed = true;
            return SDF_EINVAL;
        }
    }
    int ncols = sqlite3_column_count(st);
    if (ncols > SQLITE_MAX_COLS) {
        sqlite3_finalize(st);
        c->failed = true;
        return SDF_EINVAL;
    }
    int err = bind_params(c, st, params, nparams);
    int rc = SQLITE_DONE;
    while (!err) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            err = map_rc(c, rc, "step");
            break;
        }
        for (int k = 0; k < ncols; k++) {
            int t = sqlite3_column_type(st, k);
            db_value *v = &cols[k];
            v->is_null = (t == SQLITE_NULL);
            v->is_number = (t == SQLITE_INTEGER || t == SQLITE_FLOAT);
            v->i = v->is_number ? sqlite3_column_int64(st, k) : 0;
            v->d = t == SQLITE_FLOAT ? sqlite3_column_double(st, k) : (double)v->i;
            /* text as stored costs nothing; numbers become text only when
             * a caller asks (sqlite_text_of) */
            v->s = t == SQLITE_TEXT ? (const char *)sqlite3_column_text(st, k) : NULL;
            v->text_of = sqlite_text_of;
            v->impl = st;
            v->col = k;
            if (t == SQLITE_TEXT && !v->s) {
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
    if (err) {
        /* Whatever failed (engine, deadline, a callback), do not keep the
         * statement or pool the connection. */
        sqlite3_finalize(st);
        c->failed = true;
        return err;
    }
    /* End the read transaction and drop every bound value (the borrowed
     * text pointers and the JSON lists) before the statement is kept. */
    if (sqlite3_reset(st) != SQLITE_OK || sqlite3_clear_bindings(st) != SQLITE_OK) {
        sqlite3_finalize(st);
        c->failed = true;
        return 0;   /* the rows were delivered; only reuse is lost */
    }
    stmt_cache_put(c, st, sql, len);
    return 0;
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

/* cols[0], cols[1] into ((int64_t *)ctx)[0], [1]; a NULL leaves its slot */
static int ints_row(void *ctx, const db_value *cols, int ncols)
{
    int64_t *out = ctx;
    if (ncols < 1 || ncols > 2)
        return SDF_EDB;
    for (int k = 0; k < ncols; k++)
        if (!cols[k].is_null)
            out[k] = cols[k].i;
    return 0;
}

static int row_id_lookup(db_conn *c, const char *table, int64_t *lo, int64_t *hi);

static int sqlite_row_id_range(db_conn *c, const char *table, int64_t *lo, int64_t *hi)
{
    sqlite_conn *sc = (sqlite_conn *)c;
    for (size_t k = 0; k < sc->n_ranges; k++)
        if (strcmp(sc->ranges[k].table, table) == 0) {
            *lo = sc->ranges[k].lo;
            *hi = sc->ranges[k].hi;
            return sc->ranges[k].rowid ? 0 : SDF_EINVAL;
        }
    int err = row_id_lookup(c, table, lo, hi);
    if ((err == 0 || err == SDF_EINVAL) && sc->n_ranges < 4 &&
        strlen(table) < sizeof sc->ranges[0].table) {
        size_t k = sc->n_ranges++;
        snprintf(sc->ranges[k].table, sizeof sc->ranges[k].table, "%s", table);
        sc->ranges[k].lo = *lo;
        sc->ranges[k].hi = *hi;
        sc->ranges[k].rowid = err == 0;
    }
    return err;
}

static int row_id_lookup(db_conn *c, const char *table, int64_t *lo, int64_t *hi)
{
    /* only an ordinary rowid table (not a view, not WITHOUT ROWID) */
    db_param p = { .type = DB_PARAM_TEXT, .s = table };
    int64_t plain = 0, r[2] = { 1, 0 };
    int err = sqlite_query(c, "SELECT 1 FROM pragma_table_list WHERE schema = 'main' AND "
                              "name = ?1 COLLATE NOCASE AND type = 'table' AND wr = 0",
                           &p, 1, ints_row, &plain);
    if (err)
        return err;
    if (!plain)
        return SDF_EINVAL;
    char sql[160];
    /* two sub-selects: each is one b-tree seek; min and max in one
     * SELECT would scan the table */
    if (fmt(sql, sizeof sql, "SELECT (SELECT min(rowid) FROM %s), (SELECT max(rowid) FROM %s)",
            table, table) < 0)
        return SDF_EOVERFLOW;
    if ((err = sqlite_query(c, sql, NULL, 0, ints_row, r)))
        return err;
    *lo = r[0];
    *hi = r[1];
    return 0;
}

static int sqlite_sql_row_id(const char *alias, char *buf, size_t len)
{
    return fmt(buf, len, "%s.rowid", alias);
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
    .row_id_range = sqlite_row_id_range,
    .sql_row_id = sqlite_sql_row_id,
};

static int exec_setup(sqlite_conn *c, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        if ((rc & 0xff) == SQLITE_NOMEM) {
            sqlite3_free(msg);
            return SDF_ENOMEM;
        }
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
    file_id fid;
    *out = NULL;
    if (strlen(ds->path) >= PATH_MAX || path_to_uri(ds->path, uri, sizeof uri) != 0)
        return SDF_ECONFIG;

    bool have_id = file_id_of(ds->path, &fid);
    sqlite_conn *c = pool_take(ds->path, have_id ? &fid : NULL);
    if (c) {
        c->deadline_unix_ms = deadline_unix_ms;
        c->cancel = cancel;
        snprintf(c->name, sizeof c->name, "%s", ds->name);
        *out = &c->base;
        return 0;
    }

    c = calloc(1, sizeof *c);
    if (!c)
        return SDF_ENOMEM;
    c->base.ops = &sqlite_ops;
    c->deadline_unix_ms = deadline_unix_ms;
    c->cancel = cancel;
    snprintf(c->name, sizeof c->name, "%s", ds->name);
    snprintf(c->path, sizeof c->path, "%s", ds->path);
    c->fid = fid;
    c->poolable = have_id;

    int rc = sqlite3_open_v2(uri, &c->db,
                             SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI,
                             NULL);
    if (rc != SQLITE_OK) {
        /* out of memory is not the dataset's fault: say so, so callers
         * (the catalog) do not report a readable dataset as broken */
        bool nomem = !c->db || (rc & 0xff) == SQLITE_NOMEM;
        if (!nomem)
            log_warn("dataset %s: cannot open sqlite database: %s", c->name,
                     sqlite3_errmsg(c->db));
        conn_destroy(c);
        return nomem ? SDF_ENOMEM : SDF_EDB;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, SQLITE_BUSY_MS);

    char setup[160];
    snprintf(setup, sizeof setup,
             "PRAGMA query_only = ON; PRAGMA cache_size = -%d; PRAGMA mmap_size = %lld;",
             SQLITE_CACHE_KIB, SQLITE_MMAP_BYTES);
    int err = exec_setup(c, setup);
    if (err) {
        conn_destroy(c);
        return err;
    }
    /* Opening is lazy: read the schema now so a file that is not a
     * database fails here, not in the middle of a query. */
    bool dummy;
    err = sqlite_table_exists(&c->base, "person", &dummy);
    if (err) {
        conn_destroy(c);
        return err == SDF_ETIMEOUT || err == SDF_ENOMEM ? err : SDF_EDB;
    }
    sqlite3_set_authorizer(c->db, authorizer_cb, NULL);
    sqlite3_progress_handler(c->db, SQLITE_PROGRESS_OPS, progress_cb, c);
    *out = &c->base;
    return 0;
}
