/* tests/bench/sqlcapture.c — LD_PRELOAD shim that records the SQL an agent runs (benchmarks only).
 *
 * The benchmark compares the federation against running "the same SQL"
 * directly with sqlite3 / psql. The agent's statements are longer than a
 * log line, so run.py starts the agents with this shim preloaded: it wraps
 * sqlite3_prepare_v2/_v3 (and the sqlite3_bind_* calls that follow it) and
 * PQsendQueryParams, appends each statement and its parameters to the file
 * named by $SDEFED_SQL_CAPTURE (records end with a form feed line), and
 * calls the real function. Benchmarks run one query at a time, so a
 * statement's binds follow it. Never built into the product.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
typedef struct pg_conn PGconn;
typedef unsigned int Oid;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void record(const char *kind, const char *sql, int nparams, const char *const *vals)
{
    const char *path = getenv("SDEFED_SQL_CAPTURE");
    if (!path || !sql)
        return;
    pthread_mutex_lock(&mu);
    FILE *f = fopen(path, "a");
    if (f) {
        fprintf(f, "%s\n", kind);
        for (int k = 0; k < nparams; k++)
            fprintf(f, "param %d %s\n", k + 1, vals && vals[k] ? vals[k] : "NULL");
        fprintf(f, "sql\n%s\n\f\n", sql);
        fclose(f);
    }
    pthread_mutex_unlock(&mu);
}

int sqlite3_prepare_v2(sqlite3 *db, const char *sql, int n, sqlite3_stmt **st, const char **tail)
{
    static int (*real)(sqlite3 *, const char *, int, sqlite3_stmt **, const char **);
    if (!real)
        real = (int (*)(sqlite3 *, const char *, int, sqlite3_stmt **, const char **))dlsym(
            RTLD_NEXT, "sqlite3_prepare_v2");
    record("sqlite", sql, 0, NULL);
    return real(db, sql, n, st, tail);
}

/* The agent prepares dataset statements with sqlite3_prepare_v3 (to keep
 * them in its statement cache); a cached statement is prepared, and so
 * recorded, once per connection. */
int sqlite3_prepare_v3(sqlite3 *db, const char *sql, int n, unsigned int flags,
                       sqlite3_stmt **st, const char **tail)
{
    static int (*real)(sqlite3 *, const char *, int, unsigned int, sqlite3_stmt **,
                       const char **);
    if (!real)
        real = (int (*)(sqlite3 *, const char *, int, unsigned int, sqlite3_stmt **,
                        const char **))dlsym(RTLD_NEXT, "sqlite3_prepare_v3");
    record("sqlite", sql, 0, NULL);
    return real(db, sql, n, flags, st, tail);
}

static void record_bind(int idx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void record_bind(int idx, const char *fmt, ...)
{
    const char *path = getenv("SDEFED_SQL_CAPTURE");
    if (!path)
        return;
    pthread_mutex_lock(&mu);
    FILE *f = fopen(path, "a");
    if (f) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(f, "bind %d ", idx);
        vfprintf(f, fmt, ap);
        fprintf(f, "\n\f\n");
        va_end(ap);
        fclose(f);
    }
    pthread_mutex_unlock(&mu);
}

int sqlite3_bind_text(sqlite3_stmt *st, int idx, const char *v, int n, void (*d)(void *))
{
    static int (*real)(sqlite3_stmt *, int, const char *, int, void (*)(void *));
    if (!real)
        real = (int (*)(sqlite3_stmt *, int, const char *, int, void (*)(void *)))dlsym(
            RTLD_NEXT, "sqlite3_bind_text");
    if (v)
        record_bind(idx, "text %.*s", n < 0 ? (int)1000000 : n, v);
    return real(st, idx, v, n, d);
}

int sqlite3_bind_int64(sqlite3_stmt *st, int idx, long long v)
{
    static int (*real)(sqlite3_stmt *, int, long long);
    if (!real)
        real = (int (*)(sqlite3_stmt *, int, long long))dlsym(RTLD_NEXT, "sqlite3_bind_int64");
    record_bind(idx, "int %lld", v);
    return real(st, idx, v);
}

int sqlite3_bind_double(sqlite3_stmt *st, int idx, double v)
{
    static int (*real)(sqlite3_stmt *, int, double);
    if (!real)
        real = (int (*)(sqlite3_stmt *, int, double))dlsym(RTLD_NEXT, "sqlite3_bind_double");
    record_bind(idx, "real %.17g", v);
    return real(st, idx, v);
}

int PQsendQueryParams(PGconn *c, const char *sql, int nparams, const Oid *types,
                      const char *const *vals, const int *lens, const int *fmts, int rfmt)
{
    static int (*real)(PGconn *, const char *, int, const Oid *, const char *const *,
                       const int *, const int *, int);
    if (!real)
        real = (int (*)(PGconn *, const char *, int, const Oid *, const char *const *,
                        const int *, const int *, int))dlsym(RTLD_NEXT, "PQsendQueryParams");
    record("postgres", sql, nparams, vals);
    return real(c, sql, nparams, types, vals, lens, fmts, rfmt);
}
