/* agent/db_pg.c — the PostgreSQL backend of agent/db.h (libpq).
 *
 * A dataset with `backend = postgres` names a libpq conninfo string and an
 * OMOP schema. Sessions are read-only (SET SESSION CHARACTERISTICS AS
 * TRANSACTION READ ONLY and default_transaction_read_only), search_path is
 * the schema written as a validated, double-quoted identifier, and every
 * statement goes through PQsendQueryParams (the extended protocol runs
 * exactly one statement; every value is a typed parameter: int8, text, or
 * an int8[] array for an INT64_LIST that SQL unnests).
 *
 * Deadlines are enforced twice: statement_timeout is set before each
 * statement to the time left until the query's deadline, and while a
 * statement runs this thread polls the socket in short slices and, once the
 * deadline passes or the cancel flag is set, sends a cancel request
 * (PQcancel) so the work stops IN the server; both come back as SQLSTATE
 * 57014 and are reported as SDF_ETIMEOUT. Rows arrive in single-row mode,
 * so memory stays bounded whatever the statement returns.
 *
 * Connections are kept in a small process-wide pool keyed by conninfo and
 * schema (a warm connection saves the connect and authentication round
 * trips on every query); a connection goes back only when idle and healthy,
 * is checked with a trivial statement when taken, and is dropped after
 * PG_POOL_IDLE_MS unused. Server messages are logged with their primary
 * text only (never DETAIL, which can quote row values); the conninfo is only
 * ever logged through db_pg_conninfo_redact().
 */
#include "db.h"
#include "db_pg.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libpq-fe.h>

#include "sdefed/log.h"

/* Type OIDs (pg_type.h is a server header; these are fixed forever). */
#define PG_OID_BOOL 16
#define PG_OID_INT8 20
#define PG_OID_INT2 21
#define PG_OID_INT4 23
#define PG_OID_TEXT 25
#define PG_OID_OID 26
#define PG_OID_FLOAT4 700
#define PG_OID_FLOAT8 701
#define PG_OID_INT8ARRAY 1016
#define PG_OID_NUMERIC 1700

/* Cap on parameters and result columns of one statement. */
#define PG_MAX_PARAMS 256
#define PG_MAX_COLS 64
/* Cap on the text of one INT64_LIST parameter ("{...}"). */
#define PG_MAX_LIST_TEXT ((size_t)1 << 20)
/* Slice of one wait for the server, so the cancel flag is seen quickly. */
#define PG_POLL_SLICE_MS 20
/* How long a connect may take when the query has no earlier deadline. */
#define PG_CONNECT_MS 10000
/* After a cancel request, how long to wait for the server to answer before
 * the connection is abandoned. */
#define PG_CANCEL_GRACE_MS 5000
/* Warm connections kept, and how long one may sit unused. */
#define PG_POOL_MAX 16
#define PG_POOL_IDLE_MS 300000
/* conninfo + '\n' + schema */
#define PG_KEY_MAX (sizeof(((agent_dataset *)0)->conninfo) + DB_PG_IDENT_MAX + 2)

typedef struct pg_conn {
    db_conn base;
    PGconn *pg;
    uint64_t deadline_unix_ms;
    atomic_int *cancel;
    bool broken;             /* unusable: never run on or pool again */
    bool no_pool;            /* admin connection (maybe writable): never pooled */
    char name[64];
    char key[PG_KEY_MAX];
} pg_conn;

static uint64_t now_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
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

/* ---- pure helpers ------------------------------------------------------ */

bool db_pg_ident_valid(const char *s)
{
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return false;
    size_t n = 0;
    for (const char *p = s; *p; p++, n++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_';
        if (!ok || n >= DB_PG_IDENT_MAX)
            return false;
    }
    return true;
}

bool db_pg_conninfo_valid(const char *conninfo)
{
    if (!conninfo)
        return false;
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
    PQfreemem(errmsg);
    if (!opts)
        return false;
    PQconninfoFree(opts);
    return true;
}

int db_pg_conninfo_redact(const char *conninfo, char *out, size_t len)
{
    static const char bad[] = "(unparseable conninfo)";
    if (!out || len == 0)
        return SDF_EOVERFLOW;
    out[0] = '\0';
    char *errmsg = NULL;
    PQconninfoOption *opts = conninfo ? PQconninfoParse(conninfo, &errmsg) : NULL;
    if (!opts) {
        /* libpq's message may quote the input: never pass it on. A parse
         * failure always comes with a message; none means out of memory. */
        bool oom = conninfo && !errmsg;
        PQfreemem(errmsg);
        if (oom)
            return SDF_ENOMEM;
        snprintf(out, len, "%s", bad);
        return SDF_EINVAL;
    }
    size_t o = 0;
    int err = 0;
    for (PQconninfoOption *op = opts; op->keyword && !err; op++) {
        if (!op->val || !op->val[0])
            continue;
        bool secret = strcmp(op->keyword, "password") == 0;
        const char *v = secret ? "***" : op->val;
        int w = snprintf(out + o, len - o, "%s%s='", o ? " " : "", op->keyword);
        if (w < 0 || (size_t)w >= len - o) {
            err = SDF_EOVERFLOW;
            break;
        }
        o += (size_t)w;
        for (const char *p = v; *p; p++) {
            bool esc = (*p == '\'' || *p == '\\');
            if (o + (esc ? 2 : 1) >= len) {
                err = SDF_EOVERFLOW;
                break;
            }
            if (esc)
                out[o++] = '\\';
            out[o++] = *p;
        }
        if (err)
            break;
        if (o + 1 >= len) {
            err = SDF_EOVERFLOW;
            break;
        }
        out[o++] = '\'';
        out[o] = '\0';
    }
    PQconninfoFree(opts);
    if (err)
        out[0] = '\0';
    return err;
}

/* ---- connecting -------------------------------------------------------- */

static void notice_drop(void *arg, const char *message)
{
    (void)arg;
    (void)message;   /* notices can quote values: not logged */
}

/* Wait until the socket is ready for `events` or ms pass. Returns >0
 * ready, 0 timeout, <0 error. */
static int wait_socket(PGconn *pg, short events, int ms)
{
    int fd = PQsocket(pg);
    if (fd < 0)
        return -1;
    struct pollfd p = { .fd = fd, .events = events };
    int rc;
    do {
        rc = poll(&p, 1, ms);
    } while (rc < 0 && errno == EINTR);
    return rc;
}

static bool tripped(const pg_conn *c)
{
    if (c->cancel && atomic_load(c->cancel))
        return true;
    return c->deadline_unix_ms && now_unix_ms() >= c->deadline_unix_ms;
}

static void log_connect_failure(const char *name, const char *conninfo, PGconn *pg)
{
    char red[1200];
    if (db_pg_conninfo_redact(conninfo, red, sizeof red) != 0)
        snprintf(red, sizeof red, "(conninfo not shown)");
    const char *msg = pg ? PQerrorMessage(pg) : "out of memory";
    size_t n = strcspn(msg, "\n");
    log_warn("dataset %s: cannot connect to postgres (%s): %.*s", name, red, (int)n, msg);
}

/* Non-blocking connect honouring a deadline (absolute unix ms, 0 = none:
 * PG_CONNECT_MS then) and the cancel flag. Returns the connection or NULL
 * (logged; *timed_out says whether it was the deadline/cancel). */
static PGconn *connect_deadline(const char *name, const char *conninfo, uint64_t deadline,
                                atomic_int *cancel, bool *timed_out)
{
    const char *keys[] = { "dbname", "fallback_application_name", NULL };
    const char *vals[] = { conninfo, "sdefed-agent", NULL };
    uint64_t limit = now_unix_ms() + PG_CONNECT_MS;
    if (deadline && deadline < limit)
        limit = deadline;
    *timed_out = false;
    PGconn *pg = PQconnectStartParams(keys, vals, 1);
    if (!pg || PQstatus(pg) == CONNECTION_BAD) {
        log_connect_failure(name, conninfo, pg);
        PQfinish(pg);
        return NULL;
    }
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    for (;;) {
        if (st == PGRES_POLLING_OK)
            break;
        if (st == PGRES_POLLING_FAILED) {
            log_connect_failure(name, conninfo, pg);
            PQfinish(pg);
            return NULL;
        }
        for (;;) {
            uint64_t now = now_unix_ms();
            if ((cancel && atomic_load(cancel)) || now >= limit) {
                *timed_out = true;
                log_warn("dataset %s: postgres connect abandoned (deadline or cancel)", name);
                PQfinish(pg);
                return NULL;
            }
            int slice = (int)(limit - now < PG_POLL_SLICE_MS ? limit - now : PG_POLL_SLICE_MS);
            int rc = wait_socket(pg, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, slice);
            if (rc > 0)
                break;
            if (rc < 0) {
                log_connect_failure(name, conninfo, pg);
                PQfinish(pg);
                return NULL;
            }
        }
        st = PQconnectPoll(pg);
    }
    PQsetNoticeProcessor(pg, notice_drop, NULL);
    return pg;
}

/* ---- the process-wide pool of warm connections ------------------------- */

typedef struct pool_slot {
    PGconn *pg;
    uint64_t idle_since;
    char key[PG_KEY_MAX];
} pool_slot;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pool_slot pool[PG_POOL_MAX];

static PGconn *pool_take(const char *key)
{
    PGconn *found = NULL;
    PGconn *stale[PG_POOL_MAX];
    size_t n_stale = 0;
    uint64_t now = now_unix_ms();
    pthread_mutex_lock(&pool_mu);
    for (size_t k = 0; k < PG_POOL_MAX; k++) {
        if (!pool[k].pg)
            continue;
        if (now - pool[k].idle_since > PG_POOL_IDLE_MS) {
            stale[n_stale++] = pool[k].pg;
            pool[k].pg = NULL;
            continue;
        }
        if (!found && strcmp(pool[k].key, key) == 0) {
            found = pool[k].pg;
            pool[k].pg = NULL;
        }
    }
    pthread_mutex_unlock(&pool_mu);
    for (size_t k = 0; k < n_stale; k++)
        PQfinish(stale[k]);
    return found;
}

static void pool_put(const char *key, PGconn *pg)
{
    PGconn *evict = NULL;
    size_t oldest = 0;
    pthread_mutex_lock(&pool_mu);
    size_t k;
    for (k = 0; k < PG_POOL_MAX; k++) {
        if (!pool[k].pg)
            break;
        if (pool[k].idle_since < pool[oldest].idle_since)
            oldest = k;
    }
    if (k == PG_POOL_MAX) {
        evict = pool[oldest].pg;
        k = oldest;
    }
    pool[k].pg = pg;
    pool[k].idle_since = now_unix_ms();
    snprintf(pool[k].key, sizeof pool[k].key, "%s", key);
    pthread_mutex_unlock(&pool_mu);
    PQfinish(evict);
}

/* ---- running statements ------------------------------------------------ */

static void log_result_error(const char *name, const char *what, const PGresult *r, PGconn *pg)
{
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!msg) {
        msg = PQerrorMessage(pg);
        size_t n = strcspn(msg, "\n");
        log_warn("dataset %s: postgres %s failed: %.*s", name, what, (int)n, msg);
        return;
    }
    log_warn("dataset %s: postgres %s failed (SQLSTATE %s): %s", name, what,
             state ? state : "?", msg);
}

static bool is_cancel_state(const PGresult *r)
{
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return st && strcmp(st, "57014") == 0;   /* query_canceled */
}

/* Convert one column of a single-row result. */
static void column_value(const PGresult *r, int k, db_value *v)
{
    v->is_null = PQgetisnull(r, 0, k);
    v->s = v->is_null ? NULL : PQgetvalue(r, 0, k);
    v->i = 0;
    v->is_number = false;   /* text protocol: numbers are read from s */
    v->d = 0.0;
    v->text_of = NULL;
    if (v->is_null)
        return;
    switch (PQftype(r, k)) {
    case PG_OID_INT2:
    case PG_OID_INT4:
    case PG_OID_INT8:
    case PG_OID_OID:
        v->i = strtoll(v->s, NULL, 10);
        break;
    case PG_OID_NUMERIC:
    case PG_OID_FLOAT4:
    case PG_OID_FLOAT8: {
        double d = strtod(v->s, NULL);
        if (isnan(d))
            v->i = 0;
        else if (d >= 9.2e18)
            v->i = INT64_MAX;
        else if (d <= -9.2e18)
            v->i = INT64_MIN;
        else
            v->i = (int64_t)d;   /* truncation, as SQLite's column_int64 */
        break;
    }
    case PG_OID_BOOL:
        v->i = (v->s[0] == 't');
        break;
    default:
        break;
    }
}

/* The text of an int8[] parameter: "{1,2,3}". */
static int list_to_array(const int64_t *list, size_t n, char **out)
{
    if (n > PG_MAX_LIST_TEXT / 21 || (n > 0 && !list))
        return SDF_EOVERFLOW;
    size_t cap = 3 + n * 21;
    char *buf = malloc(cap);
    if (!buf)
        return SDF_ENOMEM;
    size_t o = 0;
    buf[o++] = '{';
    for (size_t k = 0; k < n; k++) {
        int w = snprintf(buf + o, cap - o, "%s%" PRId64, k ? "," : "", list[k]);
        if (w < 0 || (size_t)w >= cap - o) {
            free(buf);
            return SDF_EOVERFLOW;
        }
        o += (size_t)w;
    }
    buf[o++] = '}';
    buf[o] = '\0';
    *out = buf;
    return 0;
}

/* Statements we run must be queries: SELECT, WITH, or a parenthesised one. */
static bool looks_like_query(const char *sql)
{
    while (*sql == ' ' || *sql == '\n' || *sql == '\t' || *sql == '\r' || *sql == '(')
        sql++;
    return strncasecmp(sql, "SELECT", 6) == 0 || strncasecmp(sql, "WITH", 4) == 0;
}

/* Send one statement and deliver its rows (single-row mode), cancelling it
 * in the server on deadline or cancel flag; the core of pg_query, also used
 * for fixed setup and admin statements. */
static int run_statement(pg_conn *c, const char *sql, int nparams, const Oid *types,
                         const char *const *values, db_row_fn fn, void *ctx)
{
    if (c->broken)
        return SDF_EDB;
    if (!PQsendQueryParams(c->pg, sql, nparams, types, values, NULL, NULL, 0)) {
        log_result_error(c->name, "send", NULL, c->pg);
        c->broken = true;
        return SDF_EDB;
    }
    PQsetSingleRowMode(c->pg);

    PGcancel *cn = NULL;
    bool cancelled = false;          /* we asked the server to cancel */
    bool stop_rows = false;          /* the callback has what it wanted */
    uint64_t grace_until = 0;
    int err = 0;
    db_value cols[PG_MAX_COLS];

    for (;;) {
        /* Wait for input while the server works, watching deadline and
         * cancel flag. */
        while (PQisBusy(c->pg)) {
            if (!cancelled && (tripped(c) || stop_rows)) {
                cn = PQgetCancel(c->pg);
                char ebuf[256];
                if (!cn || !PQcancel(cn, ebuf, sizeof ebuf)) {
                    log_warn("dataset %s: postgres cancel request failed", c->name);
                    c->broken = true;
                }
                PQfreeCancel(cn);
                cn = NULL;
                cancelled = true;
                grace_until = now_unix_ms() + PG_CANCEL_GRACE_MS;
                if (!stop_rows)
                    err = SDF_ETIMEOUT;
                if (c->broken)
                    return err ? err : SDF_EDB;
            }
            if (cancelled && now_unix_ms() >= grace_until) {
                log_warn("dataset %s: postgres did not answer a cancel request; "
                         "dropping the connection", c->name);
                c->broken = true;
                return err ? err : SDF_EDB;
            }
            int rc = wait_socket(c->pg, POLLIN, PG_POLL_SLICE_MS);
            if (rc < 0 || (rc > 0 && !PQconsumeInput(c->pg))) {
                log_result_error(c->name, "read", NULL, c->pg);
                c->broken = true;
                return err ? err : SDF_EDB;
            }
        }
        PGresult *r = PQgetResult(c->pg);
        if (!r)
            break;   /* statement finished */
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE && !err && !stop_rows) {
            int ncols = PQnfields(r);
            if (ncols > PG_MAX_COLS) {
                err = SDF_EINVAL;
                stop_rows = true;
            } else {
                for (int k = 0; k < ncols; k++)
                    column_value(r, k, &cols[k]);
                if (fn) {
                    int frc = fn(ctx, cols, ncols);
                    if (frc > 0)
                        stop_rows = true;
                    else if (frc < 0) {
                        err = frc;
                        stop_rows = true;
                    }
                }
            }
        } else if (st == PGRES_FATAL_ERROR) {
            if (is_cancel_state(r)) {
                if (!stop_rows)
                    err = SDF_ETIMEOUT;   /* statement_timeout or our cancel */
            } else if (!err && !stop_rows) {
                log_result_error(c->name, "statement", r, c->pg);
                err = SDF_EDB;
            }
        } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK &&
                   st != PGRES_COMMAND_OK && !err && !stop_rows) {
            log_warn("dataset %s: postgres statement gave unexpected status %s", c->name,
                     PQresStatus(st));
            err = SDF_EDB;
        }
        PQclear(r);
    }
    if (PQstatus(c->pg) != CONNECTION_OK)
        c->broken = true;
    if (!c->broken && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        c->broken = true;
    return err;
}

/* Set statement_timeout to what is left of the deadline. */
static int set_timeout(pg_conn *c)
{
    char ms[32];
    if (c->deadline_unix_ms) {
        uint64_t now = now_unix_ms();
        if (now >= c->deadline_unix_ms)
            return SDF_ETIMEOUT;
        uint64_t left = c->deadline_unix_ms - now;
        if (left > INT_MAX)
            left = INT_MAX;
        snprintf(ms, sizeof ms, "%" PRIu64, left);
    } else {
        snprintf(ms, sizeof ms, "0");
    }
    const char *vals[1] = { ms };
    Oid types[1] = { PG_OID_TEXT };
    return run_statement(c, "SELECT pg_catalog.set_config('statement_timeout', $1, false)", 1,
                         types, vals, NULL, NULL);
}

static int pg_query(db_conn *base, const char *sql, const db_param *params, size_t nparams,
                    db_row_fn fn, void *ctx)
{
    pg_conn *c = (pg_conn *)base;
    if (tripped(c))
        return SDF_ETIMEOUT;
    if (!sql || nparams > PG_MAX_PARAMS || (nparams && !params))
        return SDF_EINVAL;
    if (!looks_like_query(sql)) {
        log_warn("dataset %s: refusing a statement that is not a query", c->name);
        return SDF_EINVAL;
    }
    Oid types[PG_MAX_PARAMS];
    const char *vals[PG_MAX_PARAMS];
    char *owned[PG_MAX_PARAMS];
    char ints[PG_MAX_PARAMS][32];   /* text of INT64 and DOUBLE parameters */
    size_t n_owned = 0;
    int err = 0;
    for (size_t k = 0; k < nparams && !err; k++) {
        switch (params[k].type) {
        case DB_PARAM_INT64:
            snprintf(ints[k], sizeof ints[k], "%" PRId64, params[k].i);
            types[k] = PG_OID_INT8;
            vals[k] = ints[k];
            break;
        case DB_PARAM_DOUBLE:
            /* %.17g round-trips every double; float8in reads nan/inf too. */
            snprintf(ints[k], sizeof ints[k], "%.17g", params[k].d);
            types[k] = PG_OID_FLOAT8;
            vals[k] = ints[k];
            break;
        case DB_PARAM_TEXT:
            if (!params[k].s) {
                err = SDF_EINVAL;
                break;
            }
            types[k] = PG_OID_TEXT;
            vals[k] = params[k].s;
            break;
        case DB_PARAM_INT64_LIST: {
            char *a = NULL;
            err = list_to_array(params[k].list, params[k].n, &a);
            if (err)
                break;
            owned[n_owned++] = a;
            types[k] = PG_OID_INT8ARRAY;
            vals[k] = a;
            break;
        }
        default:
            err = SDF_EINVAL;
            break;
        }
    }
    if (!err)
        err = set_timeout(c);
    if (!err)
        err = run_statement(c, sql, (int)nparams, types, vals, fn, ctx);
    for (size_t k = 0; k < n_owned; k++)
        free(owned[k]);
    return err;
}

static int exists_row(void *ctx, const db_value *cols, int ncols)
{
    (void)cols;
    (void)ncols;
    *(bool *)ctx = true;
    return 0;
}

static int pg_table_exists(db_conn *c, const char *table, bool *exists)
{
    db_param p = { .type = DB_PARAM_TEXT, .s = table };
    *exists = false;
    if (!table)
        return SDF_EINVAL;
    return pg_query(c, "SELECT 1 FROM pg_catalog.pg_class c "
                       "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = pg_catalog.current_schema() "
                       "AND c.relname = pg_catalog.lower($1) "
                       "AND c.relkind IN ('r', 'v', 'm', 'p', 'f') LIMIT 1",
                    &p, 1, exists_row, exists);
}

/* ---- SQL fragments ----------------------------------------------------- */

static int pg_sql_param(int n, char *buf, size_t len)
{
    return fmt(buf, len, "$%d", n);
}

static int pg_sql_int_list(int n, char *buf, size_t len)
{
    return fmt(buf, len, "SELECT pg_catalog.unnest($%d::bigint[]) AS value", n);
}

/* OMOP dates are real `date` columns in PostgreSQL. */
static int pg_sql_year(const char *e, char *buf, size_t len)
{
    return fmt(buf, len, "CAST(EXTRACT(YEAR FROM %s) AS INTEGER)", e);
}

static int pg_sql_date_iso(const char *e, char *buf, size_t len)
{
    return fmt(buf, len, "pg_catalog.to_char(%s, 'YYYY-MM-DD')", e);
}

/* Day numbers are days since 1970-01-01 (date - date is an integer). */
static int pg_sql_day(const char *e, char *buf, size_t len)
{
    return fmt(buf, len, "(CAST(%s AS date) - DATE '1970-01-01')", e);
}

static int pg_sql_day_year(const char *e, char *buf, size_t len)
{
    return fmt(buf, len,
               "CAST(EXTRACT(YEAR FROM (DATE '1970-01-01' + CAST(%s AS integer))) AS INTEGER)",
               e);
}

static int pg_sql_day_month(const char *e, char *buf, size_t len)
{
    return fmt(buf, len,
               "CAST(EXTRACT(MONTH FROM (DATE '1970-01-01' + CAST(%s AS integer))) AS INTEGER)",
               e);
}

/* ---- open / close ------------------------------------------------------ */

static void pg_close(db_conn *base)
{
    pg_conn *c = (pg_conn *)base;
    if (!c)
        return;
    if (c->pg) {
        if (!c->broken && !c->no_pool && PQstatus(c->pg) == CONNECTION_OK &&
            PQtransactionStatus(c->pg) == PQTRANS_IDLE)
            pool_put(c->key, c->pg);
        else
            PQfinish(c->pg);
    }
    free(c);
}

static const db_ops pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .query = pg_query,
    .table_exists = pg_table_exists,
    .sql_param = pg_sql_param,
    .sql_int_list = pg_sql_int_list,
    .sql_year = pg_sql_year,
    .sql_date_iso = pg_sql_date_iso,
    .sql_day = pg_sql_day,
    .sql_day_year = pg_sql_day_year,
    .sql_day_month = pg_sql_day_month,
};

/* Run a fixed setup command (no parameters, no values from requests). */
static int setup_exec(pg_conn *c, const char *sql)
{
    return run_statement(c, sql, 0, NULL, NULL, NULL, NULL);
}

static int first_bool(void *ctx, const db_value *cols, int ncols)
{
    *(bool *)ctx = ncols >= 1 && !cols[0].is_null && cols[0].i != 0;
    return 1;
}

/* A fresh session: read-only unless writable, ISO dates, search_path =
 * the quoted schema, which must exist. */
static int session_setup(pg_conn *c, const char *schema, bool writable)
{
    char sql[160];
    int err = 0;
    if (!writable) {
        err = setup_exec(c, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY");
        if (!err)
            err = setup_exec(c, "SET default_transaction_read_only = on");
    }
    if (!err)
        err = setup_exec(c, "SET DateStyle = 'ISO, YMD'");
    if (!err)
        err = setup_exec(c, "SET IntervalStyle = 'iso_8601'");
    if (err)
        return err;
    if (!db_pg_ident_valid(schema))
        return SDF_ECONFIG;
    /* A validated identifier, double-quoted: never pasted raw. */
    if (fmt(sql, sizeof sql, "SET search_path TO \"%s\"", schema) < 0)
        return SDF_EOVERFLOW;
    err = setup_exec(c, sql);
    if (err)
        return err;
    bool ok = false;
    err = run_statement(c, "SELECT pg_catalog.current_schema() IS NOT NULL", 0, NULL, NULL,
                        first_bool, &ok);
    if (err)
        return err;
    if (!ok) {
        log_warn("dataset %s: schema %s does not exist or is not readable", c->name, schema);
        return SDF_EDB;
    }
    return 0;
}

static const char *ds_schema(const agent_dataset *ds)
{
    return ds->schema[0] ? ds->schema : "public";
}

/* Allocate a connection object and connect (fresh or from the pool). */
static int conn_make(const agent_dataset *ds, uint64_t deadline, atomic_int *cancel,
                     bool writable, bool use_pool, pg_conn **out)
{
    *out = NULL;
    if (strcmp(ds->backend, "postgres") != 0 || !ds->conninfo[0] ||
        !db_pg_ident_valid(ds_schema(ds)))
        return SDF_ECONFIG;
    pg_conn *c = calloc(1, sizeof *c);
    if (!c)
        return SDF_ENOMEM;
    c->base.ops = &pg_ops;
    c->deadline_unix_ms = deadline;
    c->cancel = cancel;
    snprintf(c->name, sizeof c->name, "%s", ds->name);
    snprintf(c->key, sizeof c->key, "%s\n%s", ds->conninfo, ds_schema(ds));

    if (use_pool) {
        c->pg = pool_take(c->key);
        if (c->pg) {
            bool ok = false;
            if (run_statement(c, "SELECT true", 0, NULL, NULL, first_bool, &ok) == 0 && ok &&
                !c->broken) {
                *out = c;
                return 0;
            }
            /* Stale (server restarted, idle timeout): connect afresh. */
            PQfinish(c->pg);
            c->pg = NULL;
            c->broken = false;
        }
    }
    bool timed_out = false;
    c->pg = connect_deadline(c->name, ds->conninfo, deadline, cancel, &timed_out);
    if (!c->pg) {
        free(c);
        return timed_out ? SDF_ETIMEOUT : SDF_EDB;
    }
    int err = session_setup(c, ds_schema(ds), writable);
    if (err) {
        c->broken = true;
        pg_close(&c->base);
        return err == SDF_ETIMEOUT ? err : SDF_EDB;
    }
    *out = c;
    return 0;
}

int db_pg_open(const agent_dataset *ds, uint64_t deadline_unix_ms, atomic_int *cancel,
               db_conn **out)
{
    pg_conn *c = NULL;
    *out = NULL;
    int err = conn_make(ds, deadline_unix_ms, cancel, false, true, &c);
    if (err)
        return err;
    *out = &c->base;
    return 0;
}

/* ---- administrative connection ---------------------------------------- */

struct db_pg_admin {
    pg_conn *c;
};

int db_pg_admin_open(const agent_dataset *ds, bool writable, db_pg_admin **out)
{
    *out = NULL;
    db_pg_admin *a = calloc(1, sizeof *a);
    if (!a)
        return SDF_ENOMEM;
    int err = conn_make(ds, 0, NULL, writable, false, &a->c);
    if (err) {
        free(a);
        return err == SDF_ENOMEM ? err : SDF_EDB;
    }
    a->c->no_pool = true;   /* it may be writable */
    *out = a;
    return 0;
}

int db_pg_admin_index_exists(db_pg_admin *a, const char *table, const char *column,
                             bool *table_exists, bool *exists)
{
    *exists = false;
    *table_exists = false;
    int err = pg_table_exists(&a->c->base, table, table_exists);
    if (!err && *table_exists) {
        db_param p[2] = { { .type = DB_PARAM_TEXT, .s = table },
                          { .type = DB_PARAM_TEXT, .s = column } };
        err = pg_query(&a->c->base,
                       "SELECT 1 FROM pg_catalog.pg_index x "
                       "JOIN pg_catalog.pg_class t ON t.oid = x.indrelid "
                       "JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
                       "JOIN pg_catalog.pg_attribute at ON at.attrelid = t.oid "
                       "AND at.attnum = x.indkey[0] "
                       "WHERE n.nspname = pg_catalog.current_schema() "
                       "AND t.relname = pg_catalog.lower($1) "
                       "AND at.attname = pg_catalog.lower($2) LIMIT 1",
                       p, 2, exists_row, exists);
    }
    return err ? (err == SDF_ENOMEM ? err : SDF_EDB) : 0;
}

int db_pg_admin_index_create(db_pg_admin *a, const char *table, const char *column)
{
    char sql[256];
    if (!db_pg_ident_valid(table) || !db_pg_ident_valid(column))
        return SDF_EINVAL;
    if (fmt(sql, sizeof sql, "CREATE INDEX IF NOT EXISTS \"sdefed_%s_%s\" ON \"%s\" (\"%s\")",
            table, column, table, column) < 0)
        return SDF_EINVAL;
    int err = setup_exec(a->c, sql);
    if (!err && fmt(sql, sizeof sql, "ANALYZE \"%s\"", table) >= 0)
        err = setup_exec(a->c, sql);
    return err ? SDF_EDB : 0;
}

void db_pg_admin_close(db_pg_admin *a)
{
    if (!a)
        return;
    if (a->c)
        pg_close(&a->c->base);
    free(a);
}
