/* agent/db.h — the small database backend interface the query compilers target.
 *
 * The compilers (query_count.c, query_catalog.c) build SQL text from fixed
 * internal table/column names and placeholders only; every value from a
 * query spec travels as a bound parameter. Everything that differs between
 * database engines sits behind this interface: opening a dataset read-only,
 * running one statement with parameters and a row callback, enforcing the
 * deadline inside the engine, and the few SQL fragments whose spelling
 * differs (placeholders, "the list of ints in parameter N", "year of a
 * date", "ISO text of a date"). SQLite is implemented in db_sqlite.c; a
 * PostgreSQL backend adds a db_ops table in db_pg.c and one line in
 * db_open() without touching the compilers.
 *
 * Date assumption (SQLite): OMOP dates are stored as ISO-8601 text
 * ('2010-05-01', as in Eunomia and OHDSI's DDL loaded from CSV). Numeric
 * dates are also understood: values above 1e7 as unix seconds, smaller ones
 * as Julian day numbers. Anything else counts as an unknown date.
 */
#ifndef AGENT_DB_H
#define AGENT_DB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "agent_config.h"
#include "sdefed/err.h"

typedef struct db_conn db_conn;

typedef enum {
    DB_PARAM_INT64 = 1,
    DB_PARAM_TEXT = 2,
    DB_PARAM_INT64_LIST = 3,   /* used through db_sql_int_list() */
    DB_PARAM_DOUBLE = 4,       /* a double-precision number in `d` (issue 3: value ranges) */
} db_param_type;

/* One bound parameter. Parameter k (1-based) of a statement is params[k-1]
 * and is written in SQL with db_sql_param(c, k) (or db_sql_int_list for a
 * list). Pointers are borrowed for the duration of db_query(). */
typedef struct db_param {
    db_param_type type;
    int64_t i;                 /* DB_PARAM_INT64 */
    const char *s;             /* DB_PARAM_TEXT (NUL-terminated) */
    const int64_t *list;       /* DB_PARAM_INT64_LIST */
    size_t n;                  /* number of list elements */
    double d;                  /* DB_PARAM_DOUBLE */
} db_param;

/* One column of a result row, valid only during the row callback. `i` is
 * the value as an integer (0 for NULL or non-numeric text). When the
 * backend read a number (SQLite INTEGER or REAL) is_number is set and `d`
 * holds it. `s` is the text when the backend has it at hand (PostgreSQL
 * always, SQLite for TEXT values); otherwise db_value_text() makes it on
 * demand — turning every number of a large result into text cost ~15 % of
 * a 1M-person scorecard (SQLite formats a REAL with its own printf). */
typedef struct db_value {
    bool is_null;
    bool is_number;
    int64_t i;
    double d;
    const char *s;
    const char *(*text_of)(const struct db_value *v);   /* backend's, when s is NULL */
    void *impl;                                          /* for text_of */
    int col;
} db_value;

/* v as text: NULL for a NULL value, or when the text cannot be made (out
 * of memory: callers treat a NULL for a non-NULL value as SDF_ENOMEM). */
static inline const char *db_value_text(const db_value *v)
{
    if (v->is_null)
        return NULL;
    return v->s ? v->s : v->text_of ? v->text_of(v) : NULL;
}

/* v as a finite double in *out: a number directly, text only if strtod
 * reads all of it. Returns 0, SDF_EINVAL (NULL, other text, infinite or
 * NaN) or SDF_ENOMEM (the text could not be made). */
int db_value_double(const db_value *v, double *out) SDF_MUSTCHECK;

/* Called for every result row. Return 0 to continue, a positive value to
 * stop early (db_query() then returns 0), or a negative SDF_E* code to
 * stop with that error. */
typedef int (*db_row_fn)(void *ctx, const db_value *cols, int ncols);

/* Backend operations; a connection starts with a pointer to its table. */
typedef struct db_ops {
    const char *name;
    void (*close)(db_conn *c);
    int (*query)(db_conn *c, const char *sql, const db_param *params, size_t nparams,
                 db_row_fn fn, void *ctx);
    int (*table_exists)(db_conn *c, const char *table, bool *exists);
    int (*sql_param)(int n, char *buf, size_t len);
    int (*sql_int_list)(int n, char *buf, size_t len);
    int (*sql_year)(const char *expr, char *buf, size_t len);
    int (*sql_date_iso)(const char *expr, char *buf, size_t len);
    /* issue 3 (cohort language); see the fragment contracts below */
    int (*sql_day)(const char *expr, char *buf, size_t len);
    int (*sql_day_year)(const char *expr, char *buf, size_t len);
    int (*sql_day_month)(const char *expr, char *buf, size_t len);
    /* Splitting one statement by row ranges (query_count_split.c); NULL
     * where the backend has no cheap, rangeable row id (PostgreSQL, which
     * runs its own parallel workers). */
    int (*row_id_range)(db_conn *c, const char *table, int64_t *lo, int64_t *hi);
    int (*sql_row_id)(const char *alias, char *buf, size_t len);
} db_ops;

struct db_conn {
    const db_ops *ops;
};

/* Open dataset ds read-only. Work on the connection is abandoned with
 * SDF_ETIMEOUT once the wall clock passes deadline_unix_ms (0 = none) or
 * *cancel (may be NULL) becomes non-zero; both stay borrowed until
 * db_close(). Returns 0 and sets *out, SDF_ECONFIG for an unsupported
 * backend, SDF_EDB if the database cannot be opened (logged, without row
 * data), or SDF_ENOMEM. */
int db_sqlite_open(const agent_dataset *ds, uint64_t deadline_unix_ms,
                   atomic_int *cancel, db_conn **out) SDF_MUSTCHECK;
/* The same for `backend = postgres` (db_pg.c; connections may come warm
 * from a small pool; the deadline also becomes statement_timeout and a
 * cancel is sent to the server). SDF_ETIMEOUT if connecting outlasts the
 * deadline. */
int db_pg_open(const agent_dataset *ds, uint64_t deadline_unix_ms,
               atomic_int *cancel, db_conn **out) SDF_MUSTCHECK;

/* SQLite connections are pooled: db_close() parks a connection whose every
 * call succeeded, with its prepared statements, and db_sqlite_open() reuses
 * it while the dataset path still names the same file (dev, inode, size,
 * mtime). Close every idle pooled connection now (at shutdown, or in tests
 * that must see a fresh open). Thread-safe; connections in use are not
 * affected and return to the pool when closed. */
void db_sqlite_pool_drain(void);

static inline int SDF_MUSTCHECK db_open(const agent_dataset *ds, uint64_t deadline_unix_ms,
                                        atomic_int *cancel, db_conn **out)
{
    *out = NULL;
    if (strcmp(ds->backend, "sqlite") == 0)
        return db_sqlite_open(ds, deadline_unix_ms, cancel, out);
    if (strcmp(ds->backend, "postgres") == 0)
        return db_pg_open(ds, deadline_unix_ms, cancel, out);
    return SDF_ECONFIG;
}

/* Close and free (NULL is fine). */
static inline void db_close(db_conn *c)
{
    if (c)
        c->ops->close(c);
}

/* Run one statement (SQL text must contain no values, only placeholders),
 * calling fn for each row. Returns 0, SDF_ETIMEOUT (deadline or cancel;
 * the engine's work was interrupted), SDF_EDB (engine error, logged at
 * warning level; the message never contains row data), SDF_EINVAL (bad
 * parameters), SDF_ENOMEM, or the negative code fn returned. */
static inline int SDF_MUSTCHECK db_query(db_conn *c, const char *sql, const db_param *params,
                                         size_t nparams, db_row_fn fn, void *ctx)
{
    return c->ops->query(c, sql, params, nparams, fn, ctx);
}

/* *exists = whether a table or view of that name exists. Returns 0 or an
 * error as db_query. */
static inline int SDF_MUSTCHECK db_table_exists(db_conn *c, const char *table, bool *exists)
{
    return c->ops->table_exists(c, table, exists);
}

/* SQL fragments. Each writes a NUL-terminated fragment into buf and returns
 * its length, or SDF_EOVERFLOW if it does not fit.
 *   db_sql_param:    placeholder of parameter n (1-based): "?7" / "$7"
 *   db_sql_int_list: a sub-select yielding the elements of INT64_LIST
 *                    parameter n as one column, usable in "x IN (...)"
 *   db_sql_year:     integer year of a date expression, NULL if unknown
 *   db_sql_date_iso: "YYYY-MM-DD" text of a date expression, NULL if unknown */
static inline int db_sql_param(const db_conn *c, int n, char *buf, size_t len)
{
    return c->ops->sql_param(n, buf, len);
}
static inline int db_sql_int_list(const db_conn *c, int n, char *buf, size_t len)
{
    return c->ops->sql_int_list(n, buf, len);
}
static inline int db_sql_year(const db_conn *c, const char *expr, char *buf, size_t len)
{
    return c->ops->sql_year(expr, buf, len);
}
static inline int db_sql_date_iso(const db_conn *c, const char *expr, char *buf, size_t len)
{
    return c->ops->sql_date_iso(expr, buf, len);
}

/* Row ids, for running one statement as several over disjoint row ranges.
 *   db_row_id_range: *lo, *hi = the smallest and largest row id of `table`
 *                  (a fixed name from the domain map; lo > hi when empty).
 *                  SDF_EINVAL when the backend or the table has no row id
 *                  to range over (PostgreSQL, a WITHOUT ROWID table, a view).
 *   db_sql_row_id: the fragment naming the row id of `alias` ("e.rowid").
 * Both are cheap (SQLite: the two ends of the table's b-tree). */
static inline int db_row_id_range(db_conn *c, const char *table, int64_t *lo, int64_t *hi)
{
    *lo = 1;
    *hi = 0;
    return c->ops->row_id_range ? c->ops->row_id_range(c, table, lo, hi) : SDF_EINVAL;
}
static inline int db_sql_row_id(const db_conn *c, const char *alias, char *buf, size_t len)
{
    return c->ops->sql_row_id ? c->ops->sql_row_id(alias, buf, len) : SDF_EINVAL;
}

/* Day arithmetic (issue 3: windows, observation periods, year/quarter of
 * index). A "day number" is an INTEGER-typed SQL value with consecutive
 * calendar days differing by exactly 1 (the epoch is the backend's choice:
 * SQLite uses the Julian day number, PostgreSQL may use days since
 * 1970-01-01); the compilers only add integers to it, subtract two of them
 * and compare them, and convert back with the two functions below.
 *   db_sql_day:       day number of a date expression (a *_date column),
 *                     NULL if the date is NULL or unknown
 *   db_sql_day_year:  integer calendar year of a day-number expression
 *   db_sql_day_month: integer month 1..12 of a day-number expression
 * Each writes a fragment into buf like the ones above (SDF_EOVERFLOW if it
 * does not fit). `expr` is compiler-generated SQL, never a value. */
static inline int db_sql_day(const db_conn *c, const char *expr, char *buf, size_t len)
{
    return c->ops->sql_day(expr, buf, len);
}
static inline int db_sql_day_year(const db_conn *c, const char *expr, char *buf, size_t len)
{
    return c->ops->sql_day_year(expr, buf, len);
}
static inline int db_sql_day_month(const db_conn *c, const char *expr, char *buf, size_t len)
{
    return c->ops->sql_day_month(expr, buf, len);
}

#endif
