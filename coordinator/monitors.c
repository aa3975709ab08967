/* coordinator/monitors.c — standing surveillance monitors and alerts (issue 6).
 *
 * See monitors.h and docs/surveillance.md. A run asks every registered site
 * for ONE period of the monitor's surveil spec (from/to narrowed to that
 * period), on behalf of the monitor's owner. The period is counted when
 * every site gave a definitive answer (ok or refused); otherwise (offline,
 * timeout, error) the run is recorded as incomplete and the same period is
 * asked again, so no period is missed: after k incomplete runs of a period
 * the next is due every x 2^min(k, 6) after the last (each re-ask counts
 * against the answering sites' repeat limit, max_identical). A counted
 * period's look (pooled and per-site numbers, statistic) and the monitor's
 * running totals are written in one transaction with the period as key, so
 * none is counted twice, across restarts too. Periods whose follow-up
 * window has not ended yet are not asked; periods already complete are
 * caught up one after another without waiting for `every`.
 *
 * Observed events and person-days come from the pooled rows (released
 * numbers only); the expected count is expected_rate x person-time, or the
 * pooled comparator rate x person-time. A look whose numbers were withheld
 * adds nothing to the test (and is marked partial).
 *
 * A drift monitor (issue 6 item 3) runs a validate spec the same way, its
 * validate.from/to narrowed to each period, and stores per look the pooled
 * and per-site AUC and calibration slope (monitor_drift_look) with an alert
 * per metric outside the agreed band.
 *
 * Alerts are stored, logged, and when [coordinator] alert_command is set,
 * that program runs (uv_spawn: no shell; words split on spaces) with the
 * alert JSON on stdin, at most ALERT_TIMEOUT_MS, its output logged.
 */
#include "monitors.h"

#include <inttypes.h>
#include <math.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "pool.h"
#include "seqtest.h"
#include "sdefed/log.h"
#include "sdefed/spec.h"
#include "sdefed/surveil_stats.h"

#define MON_TICK_MS 200
#define MON_MIN_EVERY_MS 100
#define MON_MAX_EVERY_MS (366ull * 86400 * 1000)
#define MON_MAX_MONITORS 1000
#define MON_CUSUM_RR 2.0
#define MON_CUSUM_RUNS 20000
#define MON_CUSUM_SEED 20110101u
#define ALERT_TIMEOUT_MS 10000
#define ALERT_MAX_ARGS 16
#define ALERT_MAX_OUTPUT 4096
#define MON_DAYS_PER_1000PY (1000.0 * 365.25)
#define MON_MAX_BACKOFF 6      /* re-ask an incomplete period after at most 64 x every */

typedef struct run_ctx run_ctx;
typedef struct alert_proc alert_proc;

struct monitors {
    coord *co;
    sqlite3 *db;
    uv_timer_t timer;
    bool started, stopped;
    run_ctx *runs;            /* in flight */
    alert_proc *alerts;       /* alert_command processes */
};

struct run_ctx {
    struct monitors *m;
    char id[32];
    char owner[64];
    int64_t period_index;
    char period[16];
    /* Definitive answers (ok or refused) from earlier incomplete runs of
     * this period: only the other sites are asked again, and these are
     * merged in. Re-asking a site that has answered would count against its
     * repeat limit and, once refused, lose its numbers from the look. */
    Sdefed__FederatedResult **prev;            /* loaded from the store */
    size_t n_prev;
    const Sdefed__SiteResult **kept;           /* point into prev */
    size_t n_kept;
    run_ctx *next;
};

/* ---- small helpers ---- */

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int mdays(int64_t y, int64_t m)
{
    static const int d[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : d[m - 1];
}

/* The periods of a monitor: count, and period i's date range and label. */
typedef struct plan {
    Sdefed__SurveilPeriod kind;
    int64_t fy, fm, fd, ty, tm, td;
    int64_t first;   /* period number of `from` */
    int64_t n;
} plan;

/* from/to are checked "YYYY-MM-DD" dates; an empty `to` (a drift monitor
 * without an end) plans SPEC_SURVEIL_MAX_PERIODS periods. */
static void plan_init(plan *pl, Sdefed__SurveilPeriod kind, const char *from, const char *to)
{
    bool open_ended = !to || !*to;
    if (open_ended)
        to = "2200-12-31";
    pl->kind = kind;
    pl->fy = atoi(from);
    pl->fm = atoi(from + 5);
    pl->fd = atoi(from + 8);
    pl->ty = atoi(to);
    pl->tm = atoi(to + 5);
    pl->td = atoi(to + 8);
    int64_t a, b;
    switch (pl->kind) {
    case SDEFED__SURVEIL_PERIOD__PERIOD_MONTH:
        a = pl->fy * 12 + pl->fm - 1;
        b = pl->ty * 12 + pl->tm - 1;
        break;
    case SDEFED__SURVEIL_PERIOD__PERIOD_QUARTER:
        a = pl->fy * 4 + (pl->fm - 1) / 3;
        b = pl->ty * 4 + (pl->tm - 1) / 3;
        break;
    case SDEFED__SURVEIL_PERIOD__PERIOD_YEAR:
        a = pl->fy;
        b = pl->ty;
        break;
    default:
        a = b = 0;
        break;
    }
    pl->first = a;
    pl->n = b - a + 1;
    if (open_ended && pl->n > SPEC_SURVEIL_MAX_PERIODS)
        pl->n = SPEC_SURVEIL_MAX_PERIODS;
}

/* Period i: [from, to] clipped to the spec's from/to, as ISO dates, the
 * label the agents use, and the day number of its last day. */
static void plan_period(const plan *pl, int64_t i, char from[11], char to[11], char label[16],
                        int64_t *end_day)
{
    int64_t y0, m0, y1, m1;
    int64_t v = pl->first + i;
    switch (pl->kind) {
    case SDEFED__SURVEIL_PERIOD__PERIOD_MONTH:
        y0 = y1 = v / 12;
        m0 = m1 = v % 12 + 1;
        snprintf(label, 16, "%04d-%02d", (int)(y0 % 10000), (int)m0);
        break;
    case SDEFED__SURVEIL_PERIOD__PERIOD_QUARTER:
        y0 = y1 = v / 4;
        m0 = (v % 4) * 3 + 1;
        m1 = m0 + 2;
        snprintf(label, 16, "%04d-Q%d", (int)(y0 % 10000), (int)(v % 4 + 1));
        break;
    default:
        y0 = y1 = v;
        m0 = 1;
        m1 = 12;
        snprintf(label, 16, "%04d", (int)(y0 % 10000));
        break;
    }
    int64_t d0 = 1, d1 = mdays(y1, m1);
    int64_t s = days_from_civil(y0, m0, d0), e = days_from_civil(y1, m1, d1);
    int64_t fs = days_from_civil(pl->fy, pl->fm, pl->fd);
    int64_t te = days_from_civil(pl->ty, pl->tm, pl->td);
    if (s < fs) {
        y0 = pl->fy, m0 = pl->fm, d0 = pl->fd;
    }
    if (e > te) {
        y1 = pl->ty, m1 = pl->tm, d1 = pl->td;
        e = te;
    }
    snprintf(from, 11, "%04d-%02d-%02d", (int)y0, (int)m0, (int)d0);
    snprintf(to, 11, "%04d-%02d-%02d", (int)y1, (int)m1, (int)d1);
    *end_day = e;
}

static int64_t today_day(void)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    return days_from_civil(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

static Sdefed__QuerySpec *spec_unpack(const void *blob, int len)
{
    if (!blob || len <= 0)
        return NULL;
    return sdefed__query_spec__unpack(NULL, (size_t)len, blob);
}

static bool released(Sdefed__CellStatus s)
{
    return s == SDEFED__CELL_STATUS__CELL_EXACT || s == SDEFED__CELL_STATUS__CELL_ROUNDED ||
           s == SDEFED__CELL_STATUS__CELL_NOISED;
}

static int db_exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : SDF_EDB;
}

/* ---- alert_command ---- */

struct alert_proc {
    struct monitors *m;
    uv_process_t proc;
    uv_pipe_t in, out, err;
    uv_timer_t timer;
    uv_write_t wr;
    char *json;
    char buf[ALERT_MAX_OUTPUT];
    size_t n_buf;
    int open_handles;
    alert_proc *next;
};

static void alert_closed(uv_handle_t *h)
{
    alert_proc *a = h->data;
    if (--a->open_handles > 0)
        return;
    struct monitors *m = a->m;
    for (alert_proc **pp = &m->alerts; *pp; pp = &(*pp)->next)
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    free(a->json);
    free(a);
}

static void alert_close_all(alert_proc *a)
{
    uv_handle_t *hs[] = { (uv_handle_t *)&a->proc, (uv_handle_t *)&a->in,
                          (uv_handle_t *)&a->out, (uv_handle_t *)&a->err,
                          (uv_handle_t *)&a->timer };
    for (size_t i = 0; i < 5; i++)
        if (!uv_is_closing(hs[i]))
            uv_close(hs[i], alert_closed);
}

static void alert_log_output(alert_proc *a)
{
    if (a->n_buf == 0)
        return;
    for (size_t i = 0; i < a->n_buf; i++)
        if ((unsigned char)a->buf[i] < 0x20 || (unsigned char)a->buf[i] >= 0x7f)
            a->buf[i] = ' ';
    log_info("alert_command output: %.*s", (int)a->n_buf, a->buf);
    a->n_buf = 0;
}

static void alert_exit(uv_process_t *p, int64_t status, int sig)
{
    alert_proc *a = p->data;
    if (sig)
        log_warn("alert_command killed by signal %d", sig);
    else if (status != 0)
        log_warn("alert_command exited with status %" PRId64, status);
    else
        log_info("alert_command finished");
    uv_timer_stop(&a->timer);
    /* the output pipe closes itself at EOF; close everything now */
    alert_log_output(a);
    alert_close_all(a);
}

static void alert_timeout(uv_timer_t *t)
{
    alert_proc *a = t->data;
    log_warn("alert_command: still running after %d ms; killing it", ALERT_TIMEOUT_MS);
    uv_process_kill(&a->proc, SIGKILL);
}

static void alert_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    alert_proc *a = h->data;
    b->base = a->buf + a->n_buf;
    b->len = sizeof a->buf - a->n_buf;
}

static void alert_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    alert_proc *a = s->data;
    if (n > 0) {
        a->n_buf += (size_t)n;
        if (a->n_buf == sizeof a->buf)
            alert_log_output(a);   /* full: log and keep reading */
    } else if (n < 0) {
        uv_read_stop(s);
    }
}

static void alert_written(uv_write_t *w, int status)
{
    alert_proc *a = w->data;
    if (status != 0)
        log_warn("alert_command: cannot write the alert to its stdin: %s", uv_strerror(status));
    if (!uv_is_closing((uv_handle_t *)&a->in))
        uv_close((uv_handle_t *)&a->in, alert_closed);
}

static void alert_run_command(struct monitors *m, const char *json)
{
    const char *cmd = m->co->cfg.alert_command;
    if (!cmd[0])
        return;
    char words[sizeof m->co->cfg.alert_command];
    snprintf(words, sizeof words, "%s", cmd);
    char *argv[ALERT_MAX_ARGS + 1];
    int argc = 0;
    for (char *save = NULL, *w = strtok_r(words, " \t", &save); w && argc < ALERT_MAX_ARGS;
         w = strtok_r(NULL, " \t", &save))
        argv[argc++] = w;
    argv[argc] = NULL;
    if (argc == 0)
        return;
    alert_proc *a = calloc(1, sizeof *a);
    if (!a || !(a->json = strdup(json))) {
        free(a);
        log_error("alert_command: out of memory");
        return;
    }
    a->m = m;
    uv_loop_t *loop = m->co->loop;
    uv_pipe_init(loop, &a->in, 0);
    uv_pipe_init(loop, &a->out, 0);
    uv_pipe_init(loop, &a->err, 0);
    uv_timer_init(loop, &a->timer);
    a->in.data = a->out.data = a->err.data = a->timer.data = a->proc.data = a->wr.data = a;
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&a->in;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&a->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&a->err;
    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.file = argv[0];
    o.args = argv;
    o.exit_cb = alert_exit;
    o.stdio_count = 3;
    o.stdio = stdio;
    a->next = m->alerts;
    m->alerts = a;
    a->open_handles = 5;
    int rc = uv_spawn(loop, &a->proc, &o);
    if (rc != 0) {
        log_error("alert_command %s: cannot start: %s", argv[0], uv_strerror(rc));
        alert_close_all(a);
        return;
    }
    log_info("alert_command %s started (pid %d)", argv[0], a->proc.pid);
    uv_timer_start(&a->timer, alert_timeout, ALERT_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&a->out, alert_alloc, alert_read);
    uv_read_start((uv_stream_t *)&a->err, alert_alloc, alert_read);
    uv_buf_t b = uv_buf_init(a->json, (unsigned)strlen(a->json));
    if (uv_write(&a->wr, (uv_stream_t *)&a->in, &b, 1, alert_written) != 0)
        uv_close((uv_handle_t *)&a->in, alert_closed);
}

/* ---- runs ---- */

static void run_free(run_ctx *r)
{
    struct monitors *m = r->m;
    for (run_ctx **pp = &m->runs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    for (size_t i = 0; i < r->n_prev; i++)
        sdefed__federated_result__free_unpacked(r->prev[i], NULL);
    free(r->prev);
    free(r->kept);
    free(r);
}

static bool definitive(const Sdefed__SiteResult *sr)
{
    return sr && (sr->status == SDEFED__SITE_STATUS__SITE_OK ||
                  sr->status == SDEFED__SITE_STATUS__SITE_REFUSED);
}

/* Load the results of this period's earlier incomplete runs and keep, per
 * site, its latest definitive answer (rc->kept). 0, or SDF_ENOMEM /
 * SDF_EDB (then the whole period is asked again, as before). */
static int load_earlier_answers(struct monitors *m, run_ctx *rc)
{
    sqlite3_stmt *st = NULL;
    int err = 0;
    if (sqlite3_prepare_v2(m->db, "SELECT query_id FROM monitor_runs WHERE monitor = ?1 AND "
                                  "period = ?2 AND outcome = 'incomplete' AND query_id <> '' "
                                  "ORDER BY rowid", -1, &st, NULL) != SQLITE_OK)
        return SDF_EDB;
    sqlite3_bind_text(st, 1, rc->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, rc->period, -1, SQLITE_STATIC);
    while (err == 0 && sqlite3_step(st) == SQLITE_ROW) {
        Sdefed__FederatedResult *r = NULL;
        if (store_query_load(m->co->st, (const char *)sqlite3_column_text(st, 0), &r) != 0)
            continue;   /* not stored (e.g. the coordinator stopped mid-query) */
        Sdefed__FederatedResult **np = realloc(rc->prev, (rc->n_prev + 1) * sizeof *np);
        const Sdefed__SiteResult **nk =
            np ? realloc(rc->kept, (rc->n_kept + r->n_sites) * sizeof *nk) : NULL;
        if (np)
            rc->prev = np;
        if (!np || !nk) {
            sdefed__federated_result__free_unpacked(r, NULL);
            err = SDF_ENOMEM;
            break;
        }
        rc->kept = nk;
        rc->prev[rc->n_prev++] = r;
        for (size_t i = 0; i < r->n_sites; i++) {
            const Sdefed__SiteResult *sr = r->sites[i];
            if (!definitive(sr) || !sr->site)
                continue;
            size_t j = 0;
            while (j < rc->n_kept && strcmp(rc->kept[j]->site, sr->site) != 0)
                j++;
            rc->kept[j] = sr;   /* a later answer replaces an earlier one */
            if (j == rc->n_kept)
                rc->n_kept++;
        }
    }
    sqlite3_finalize(st);
    return err;
}

static bool kept_answer(const run_ctx *rc, const char *site)
{
    for (size_t j = 0; j < rc->n_kept; j++)
        if (strcmp(rc->kept[j]->site, site) == 0)
            return true;
    return false;
}

static bool running(const struct monitors *m, const char *id)
{
    for (const run_ctx *r = m->runs; r; r = r->next)
        if (strcmp(r->id, id) == 0)
            return true;
    return false;
}

static void record_run(struct monitors *m, const char *id, const char *period, const char *qid,
                       const char *outcome)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->db, "INSERT INTO monitor_runs VALUES (?1, ?2, ?3, ?4, ?5)", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)coord_now_ms());
        sqlite3_bind_text(st, 3, period, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, qid ? qid : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, outcome, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            log_error("monitor %s: run not recorded: %s", id, sqlite3_errmsg(m->db));
    }
    sqlite3_finalize(st);
}

/* Released events and person-days of one arm's rows for `period` (summed
 * over strata); *partial when any was withheld. */
static void arm_sum(Sdefed__SurveilRow *const *rows, size_t n, const char *period, bool cmp,
                    int64_t *events, int64_t *days, bool *partial)
{
    *events = *days = 0;
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        const Sdefed__SurveilRow *x = rows[i];
        if (!x || x->comparator != cmp || !x->period || strcmp(x->period, period) != 0)
            continue;
        any = true;
        if (released(x->events_status) && released(x->person_days_status)) {
            *events += x->events;
            *days += x->person_days;
        } else if (x->persons_status != SDEFED__CELL_STATUS__CELL_EXACT || x->persons != 0) {
            *partial = true;   /* a row with persons whose numbers were withheld */
        }
        if (x->lower_bound)
            *partial = true;
    }
    if (!any)
        *partial = true;
}

typedef struct mon_row {
    char owner[64];
    char test[16];
    double expected_rate, threshold, length, cum_events, cum_expected, cusum;
    int64_t next_period;
    char state[16];
    bool drift;                    /* kind 'validate' (issue 6 item 3) */
    Sdefed__SurveilPeriod period;  /* drift: the monitor's periods ... */
    char from[11], to[11];         /* ... and dates (to "" = open-ended) */
    monitor_band band;
    int64_t every_ms, last_run_ms;
} mon_row;

static Sdefed__SurveilPeriod period_of(const char *s)
{
    if (s && strcmp(s, "month") == 0)
        return SDEFED__SURVEIL_PERIOD__PERIOD_MONTH;
    if (s && strcmp(s, "quarter") == 0)
        return SDEFED__SURVEIL_PERIOD__PERIOD_QUARTER;
    if (s && strcmp(s, "year") == 0)
        return SDEFED__SURVEIL_PERIOD__PERIOD_YEAR;
    return SDEFED__SURVEIL_PERIOD__PERIOD_ALL;
}

/* The periods of a loaded monitor. */
static void plan_of(plan *pl, const mon_row *mr, const Sdefed__QuerySpec *spec)
{
    if (mr->drift)
        plan_init(pl, mr->period, mr->from, mr->to);
    else
        plan_init(pl, spec->surveil->period, spec->surveil->from, spec->surveil->to);
}

static void band_col(sqlite3_stmt *st, int i, bool *has, double *v)
{
    *has = sqlite3_column_type(st, i) != SQLITE_NULL;
    *v = *has ? sqlite3_column_double(st, i) : 0.0;
}

static int load_monitor(struct monitors *m, const char *id, mon_row *mr, Sdefed__QuerySpec **spec)
{
    sqlite3_stmt *st = NULL;
    int rc = SDF_ENOTFOUND;
    if (sqlite3_prepare_v2(m->db,
                           "SELECT owner, test, expected_rate, threshold, length, cum_events, "
                           "cum_expected, cusum, next_period, state, spec, kind, period, "
                           "date_from, date_to, auc_min, auc_max, slope_min, slope_max, "
                           "every_ms, last_run_ms FROM monitors WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return SDF_EDB;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(mr->owner, sizeof mr->owner, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(mr->test, sizeof mr->test, "%s", (const char *)sqlite3_column_text(st, 1));
        mr->expected_rate = sqlite3_column_double(st, 2);
        mr->threshold = sqlite3_column_double(st, 3);
        mr->length = sqlite3_column_double(st, 4);
        mr->cum_events = sqlite3_column_double(st, 5);
        mr->cum_expected = sqlite3_column_double(st, 6);
        mr->cusum = sqlite3_column_double(st, 7);
        mr->next_period = sqlite3_column_int64(st, 8);
        snprintf(mr->state, sizeof mr->state, "%s", (const char *)sqlite3_column_text(st, 9));
        const char *kind = (const char *)sqlite3_column_text(st, 11);
        mr->drift = kind && strcmp(kind, "validate") == 0;
        mr->period = period_of((const char *)sqlite3_column_text(st, 12));
        const char *f = (const char *)sqlite3_column_text(st, 13);
        const char *t = (const char *)sqlite3_column_text(st, 14);
        snprintf(mr->from, sizeof mr->from, "%s", f ? f : "");
        snprintf(mr->to, sizeof mr->to, "%s", t ? t : "");
        band_col(st, 15, &mr->band.has_auc_min, &mr->band.auc_min);
        band_col(st, 16, &mr->band.has_auc_max, &mr->band.auc_max);
        band_col(st, 17, &mr->band.has_slope_min, &mr->band.slope_min);
        band_col(st, 18, &mr->band.has_slope_max, &mr->band.slope_max);
        mr->every_ms = sqlite3_column_int64(st, 19);
        mr->last_run_ms = sqlite3_column_int64(st, 20);
        rc = 0;
        if (spec) {
            *spec = spec_unpack(sqlite3_column_blob(st, 10), sqlite3_column_bytes(st, 10));
            if (!*spec)
                rc = SDF_EDB;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* Count the look of a completed run in one transaction. */
static void count_look(struct monitors *m, run_ctx *rc, const Sdefed__FederatedResult *r,
                       const mon_row *mr, const Sdefed__QuerySpec *spec)
{
    bool cusum = strcmp(mr->test, "cusum") == 0;
    bool partial = false, cpartial = false;
    int64_t ev, days, cev = 0, cdays = 0;
    arm_sum(r->pooled_surveil, r->n_pooled_surveil, rc->period, false, &ev, &days, &partial);
    double rate_per_day = mr->expected_rate / MON_DAYS_PER_1000PY;   /* expected events/day */
    if (mr->expected_rate <= 0.0) {
        arm_sum(r->pooled_surveil, r->n_pooled_surveil, rc->period, true, &cev, &cdays,
                &cpartial);
        rate_per_day = cdays > 0 ? (double)cev / (double)cdays : 0.0;
        partial = partial || cpartial;
    }
    double mu = rate_per_day * (double)days;
    /* a look whose expectation cannot be formed adds nothing */
    double c_used = mu > 0.0 ? (double)ev : 0.0, mu_used = mu > 0.0 ? mu : 0.0;
    double C = mr->cum_events + c_used, U = mr->cum_expected + mu_used;
    double S = mr->cusum, stat;
    if (cusum) {
        S = mu_used > 0.0 ? seq_cusum_step(S, c_used, mu_used, MON_CUSUM_RR) : S;
        stat = S;
    } else {
        stat = U > 0.0 ? seq_maxsprt_llr(C, U) : 0.0;
    }
    bool signal = stat >= mr->threshold && (cusum || C >= 1.0);
    plan pl;
    plan_of(&pl, mr, spec);
    const char *state = "active";
    if (signal && !cusum)
        state = "signalled";
    else if (!cusum && U >= mr->length)
        state = "done";
    else if (rc->period_index + 1 >= pl.n)
        state = "done";
    if (signal && cusum)
        S = 0.0;   /* CUSUM restarts after an alert */

    /* per-site series, and the sites an alert should name: those whose own
     * events are significantly above their expectation (one-sided exact
     * Poisson p < MON_SITE_ALPHA on the released counts) or, when none is,
     * every site above its expected count */
    json_t *sites = json_array(), *excess = json_array(), *above = json_array();
    for (size_t i = 0; sites && excess && above && i < r->n_sites; i++) {
        const Sdefed__SiteResult *sr = r->sites[i];
        if (!sr)
            continue;
        json_t *o = json_object();
        json_object_set_new(o, "site", json_string(sr->site ? sr->site : ""));
        json_object_set_new(o, "status", json_string(spec_site_status_name(sr->status)));
        if (sr->status == SDEFED__SITE_STATUS__SITE_OK) {
            int64_t se, sd;
            bool sp = false;
            arm_sum(sr->surveil, sr->n_surveil, rc->period, false, &se, &sd, &sp);
            json_object_set_new(o, "events", json_integer(se));
            json_object_set_new(o, "person_days", json_integer(sd));
            json_object_set_new(o, "expected", json_real(rate_per_day * (double)sd));
            json_object_set_new(o, "partial", json_boolean(sp));
            double mu_site = rate_per_day * (double)sd;
            if (rate_per_day > 0.0 && (double)se > mu_site) {
                const char *name = sr->site ? sr->site : "";
                json_array_append_new(above, json_string(name));
                if (monitor_site_excess_p(se, mu_site) < MON_SITE_ALPHA)
                    json_array_append_new(excess, json_string(name));
            }
        }
        json_array_append_new(sites, o);
    }
    if (excess && above && json_array_size(excess) == 0)
        json_array_extend(excess, above);
    json_decref(above);
    char *sites_text = sites ? json_dumps(sites, JSON_COMPACT) : NULL;
    char *alert_text = NULL;
    int64_t now = (int64_t)coord_now_ms();
    if (signal && excess) {
        json_t *al = json_pack("{s:s, s:s, s:s, s:s, s:O, s:f, s:f, s:f, s:f, s:I, s:s}",
                               "monitor", rc->id, "owner", rc->owner, "period", rc->period,
                               "test", mr->test, "sites", excess,
                               "statistic", stat, "threshold", mr->threshold,
                               "observed", C, "expected", U, "created_unix_ms", (json_int_t)now,
                               "query_id", r->query_id ? r->query_id : "");
        alert_text = al ? json_dumps(al, JSON_COMPACT) : NULL;
        json_decref(al);
    }
    json_decref(sites);
    json_decref(excess);
    if (!sites_text || (signal && !alert_text)) {
        log_error("monitor %s: out of memory recording period %s", rc->id, rc->period);
        free(sites_text);
        free(alert_text);
        return;
    }

    int err = db_exec(m->db, "BEGIN IMMEDIATE");
    sqlite3_stmt *st = NULL;
    if (err == 0 &&
        sqlite3_prepare_v2(m->db, "INSERT INTO monitor_looks (monitor, period_index, period, "
                                  "run_ms, query_id, events, person_days, expected, statistic, "
                                  "signal, partial, sites) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                                  "?7, ?8, ?9, ?10, ?11, ?12)", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, rc->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, rc->period_index);
        sqlite3_bind_text(st, 3, rc->period, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, now);
        sqlite3_bind_text(st, 5, r->query_id ? r->query_id : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, ev);
        sqlite3_bind_int64(st, 7, days);
        sqlite3_bind_double(st, 8, mu);
        sqlite3_bind_double(st, 9, stat);
        sqlite3_bind_int(st, 10, signal);
        sqlite3_bind_int(st, 11, partial || mu <= 0.0);
        sqlite3_bind_text(st, 12, sites_text, -1, SQLITE_STATIC);
        err = sqlite3_step(st) == SQLITE_DONE ? 0 : SDF_EDB;   /* PK: never twice */
    } else if (err == 0) {
        err = SDF_EDB;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (err == 0 &&
        sqlite3_prepare_v2(m->db, "UPDATE monitors SET next_period = ?2, cum_events = ?3, "
                                  "cum_expected = ?4, cusum = ?5, state = ?6, last_run_ms = ?7 "
                                  "WHERE id = ?1 AND next_period = ?8", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, rc->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, rc->period_index + 1);
        sqlite3_bind_double(st, 3, C);
        sqlite3_bind_double(st, 4, U);
        sqlite3_bind_double(st, 5, S);
        sqlite3_bind_text(st, 6, state, -1, SQLITE_STATIC);
        /* more complete periods waiting: catch up at the next tick */
        sqlite3_bind_int64(st, 7, 0);
        sqlite3_bind_int64(st, 8, rc->period_index);
        err = sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(m->db) == 1 ? 0 : SDF_EDB;
    } else if (err == 0) {
        err = SDF_EDB;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (err == 0 && signal &&
        sqlite3_prepare_v2(m->db, "INSERT INTO alerts (monitor, owner, created_ms, json) "
                                  "VALUES (?1, ?2, ?3, ?4)", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, rc->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, rc->owner, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, now);
        sqlite3_bind_text(st, 4, alert_text, -1, SQLITE_STATIC);
        err = sqlite3_step(st) == SQLITE_DONE ? 0 : SDF_EDB;
    }
    sqlite3_finalize(st);
    if (err == 0)
        err = db_exec(m->db, "COMMIT");
    if (err != 0) {
        (void)db_exec(m->db, "ROLLBACK");
        log_error("monitor %s: period %s not counted (store: %s); it will be asked again",
                  rc->id, rc->period, sqlite3_errmsg(m->db));
    } else {
        log_info("monitor %s: period %s counted: %" PRId64 " events, %.2f expected, %s %.3f "
                 "(threshold %.3f)%s", rc->id, rc->period, ev, mu, mr->test, stat,
                 mr->threshold, partial ? ", partial" : "");
        record_run(m, rc->id, rc->period, r->query_id, "counted");
        if (signal) {
            log_warn("ALERT monitor %s period %s: %s statistic %.3f >= %.3f: %s", rc->id,
                     rc->period, mr->test, stat, mr->threshold, alert_text);
            alert_run_command(m, alert_text);
        }
    }
    free(sites_text);
    free(alert_text);
}

double monitor_site_excess_p(int64_t observed, double mu)
{
    if (observed <= 0)
        return 1.0;
    if (!(mu > 0.0))
        return 0.0;
    /* P(X >= c) for X ~ Poisson(mu) is the regularised lower gamma P(c, mu) */
    return surv_gamma_p((double)observed, mu);
}

/* ---- drift monitors (issue 6 item 3) ---- */

bool monitor_band_out(double x, bool has_lo, double lo, bool has_hi, double hi)
{
    if (isnan(x))
        return false;
    return (has_lo && x < lo) || (has_hi && x > hi);
}

static json_t *num_or_null(bool have, double x)
{
    return have && isfinite(x) ? json_real(x) : json_null();
}

/* The whole-site group (no strata) of a site's validations, or NULL. */
static const Sdefed__Validation *site_overall(const Sdefed__SiteResult *sr)
{
    for (size_t i = 0; i < sr->n_validations; i++)
        if (sr->validations[i] && sr->validations[i]->n_strata == 0)
            return sr->validations[i];
    return NULL;
}

static bool slope_band_set(const monitor_band *b)
{
    return b->has_slope_min || b->has_slope_max;
}

static bool auc_band_set(const monitor_band *b)
{
    return b->has_auc_min || b->has_auc_max;
}

json_t *monitor_drift_look(const Sdefed__FederatedResult *r, const monitor_band *b,
                           bool *partial)
{
    json_t *o = json_object(), *sites = json_array(), *out = json_array(),
           *pooled = json_object();
    if (!o || !sites || !out || !pooled) {
        json_decref(o);
        json_decref(sites);
        json_decref(out);
        json_decref(pooled);
        return NULL;
    }
    bool ok = true;
    double wsum = 0.0, wslope = 0.0;
    unsigned slope_sites = 0;
    for (size_t i = 0; r && i < r->n_sites; i++) {
        const Sdefed__SiteResult *sr = r->sites[i];
        if (!sr)
            continue;
        const Sdefed__Validation *v =
            sr->status == SDEFED__SITE_STATUS__SITE_OK ? site_overall(sr) : NULL;
        bool rel = v && v->released;
        if (!rel)   /* refused, or ok but the group withheld */
            *partial = true;
        bool has_slope = rel && v->cal_converged && isfinite(v->cal_slope);
        if (has_slope && v->n && released(v->n->status) && v->n->value > 0) {
            wsum += (double)v->n->value;
            wslope += (double)v->n->value * v->cal_slope;
            slope_sites++;
        }
        json_t *so = json_object();
        ok = so && json_array_append_new(sites, so) == 0;
        if (!ok)
            break;
        json_object_set_new(so, "site", json_string(sr->site ? sr->site : ""));
        json_object_set_new(so, "status", json_string(spec_site_status_name(sr->status)));
        json_object_set_new(so, "released", json_boolean(rel));
        json_object_set_new(so, "auc", num_or_null(rel, rel ? v->auc : 0.0));
        json_object_set_new(so, "auc_lo", num_or_null(rel, rel ? v->auc_lo : 0.0));
        json_object_set_new(so, "auc_hi", num_or_null(rel, rel ? v->auc_hi : 0.0));
        json_object_set_new(so, "cal_slope", num_or_null(has_slope, has_slope ? v->cal_slope : 0));
    }
    const Sdefed__PooledValidation *pv = NULL;
    for (size_t i = 0; r && i < r->n_pooled_validations; i++)
        if (r->pooled_validations[i] && r->pooled_validations[i]->n_strata == 0)
            pv = r->pooled_validations[i];
    bool has_auc = pv && pv->sites > 0;
    double auc = has_auc ? pv->auc : NAN;
    double slope = wsum > 0.0 ? wslope / wsum : NAN;
    json_object_set_new(pooled, "auc", num_or_null(has_auc, auc));
    json_object_set_new(pooled, "auc_lo", num_or_null(has_auc, has_auc ? pv->auc_lo : 0.0));
    json_object_set_new(pooled, "auc_hi", num_or_null(has_auc, has_auc ? pv->auc_hi : 0.0));
    json_object_set_new(pooled, "cal_slope", num_or_null(wsum > 0.0, slope));
    json_object_set_new(pooled, "auc_sites", json_integer(has_auc ? pv->sites : 0));
    json_object_set_new(pooled, "slope_sites", json_integer(slope_sites));
    if ((auc_band_set(b) && !has_auc) || (slope_band_set(b) && !(wsum > 0.0)))
        *partial = true;
    if (ok && monitor_band_out(auc, b->has_auc_min, b->auc_min, b->has_auc_max, b->auc_max))
        ok = json_array_append_new(out, json_string("auc")) == 0;
    if (ok &&
        monitor_band_out(slope, b->has_slope_min, b->slope_min, b->has_slope_max, b->slope_max))
        ok = json_array_append_new(out, json_string("cal_slope")) == 0;
    ok = ok && json_object_set_new(o, "pooled", pooled) == 0;
    pooled = NULL;
    ok = ok && json_object_set_new(o, "sites", sites) == 0;
    sites = NULL;
    ok = ok && json_object_set_new(o, "out_of_band", out) == 0;
    out = NULL;
    json_decref(pooled);
    json_decref(sites);
    json_decref(out);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The alert JSON for one out-of-band metric of a drift look. */
static char *drift_alert(const run_ctx *rc, const mon_row *mr, json_t *drift, const char *metric,
                         const char *query_id, int64_t now)
{
    const monitor_band *b = &mr->band;
    bool is_auc = strcmp(metric, "auc") == 0;
    bool has_lo = is_auc ? b->has_auc_min : b->has_slope_min;
    bool has_hi = is_auc ? b->has_auc_max : b->has_slope_max;
    double lo = is_auc ? b->auc_min : b->slope_min, hi = is_auc ? b->auc_max : b->slope_max;
    double value = json_real_value(json_object_get(json_object_get(drift, "pooled"), metric));
    json_t *sites = json_array();
    json_t *ss = json_object_get(drift, "sites");
    for (size_t i = 0; sites && i < json_array_size(ss); i++) {
        json_t *x = json_object_get(json_array_get(ss, i), metric);
        if (json_is_real(x) && monitor_band_out(json_real_value(x), has_lo, lo, has_hi, hi))
            json_array_append(sites, json_object_get(json_array_get(ss, i), "site"));
    }
    double limit = has_lo && value < lo ? lo : hi;
    json_t *al = sites ? json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:f, s:[o,o], s:O, s:f, "
                                   "s:f, s:I, s:s}",
                                   "monitor", rc->id, "owner", rc->owner, "period", rc->period,
                                   "kind", "validate", "test", "band", "metric", metric,
                                   "value", value, "band", has_lo ? json_real(lo) : json_null(),
                                   has_hi ? json_real(hi) : json_null(), "sites", sites,
                                   "statistic", value, "threshold", limit,
                                   "created_unix_ms", (json_int_t)now, "query_id", query_id)
                         : NULL;
    json_decref(sites);
    char *text = al ? json_dumps(al, JSON_COMPACT) : NULL;
    json_decref(al);
    return text;
}

/* Count a drift look in one transaction (like count_look). */
static void count_drift_look(struct monitors *m, run_ctx *rc, const Sdefed__FederatedResult *r,
                             const mon_row *mr, const Sdefed__QuerySpec *spec)
{
    bool partial = false;
    json_t *drift = monitor_drift_look(r, &mr->band, &partial);
    json_t *out = drift ? json_object_get(drift, "out_of_band") : NULL;
    size_t n_out = json_array_size(out);
    char *drift_text = drift ? json_dumps(drift, JSON_COMPACT) : NULL;
    char *sites_text = drift ? json_dumps(json_object_get(drift, "sites"), JSON_COMPACT) : NULL;
    const char *qid = r->query_id ? r->query_id : "";
    int64_t now = (int64_t)coord_now_ms();
    char *alerts[2] = { NULL, NULL };
    bool oom = !drift_text || !sites_text;
    for (size_t i = 0; !oom && i < n_out && i < 2; i++) {
        alerts[i] = drift_alert(rc, mr, drift, json_string_value(json_array_get(out, i)), qid, now);
        oom = !alerts[i];
    }
    json_t *pooled = drift ? json_object_get(drift, "pooled") : NULL;
    json_t *pauc = json_object_get(pooled, "auc");
    double auc = json_is_real(pauc) ? json_real_value(pauc) : 0.0;
    json_decref(drift);
    if (oom) {
        log_error("monitor %s: out of memory recording period %s", rc->id, rc->period);
        goto done;
    }
    plan pl;
    plan_of(&pl, mr, spec);
    const char *state = rc->period_index + 1 >= pl.n ? "done" : "active";

    int err = db_exec(m->db, "BEGIN IMMEDIATE");
    sqlite3_stmt *st = NULL;
    if (err == 0 &&
        sqlite3_prepare_v2(m->db, "INSERT INTO monitor_looks (monitor, period_index, period, "
                                  "run_ms, query_id, events, person_days, expected, statistic, "
                                  "signal, partial, sites, drift) VALUES (?1, ?2, ?3, ?4, ?5, 0, "
                                  "0, 0, ?6, ?7, ?8, ?9, ?10)", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, rc->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, rc->period_index);
        sqlite3_bind_text(st, 3, rc->period, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, now);
        sqlite3_bind_text(st, 5, qid, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 6, auc);
        sqlite3_bind_int(st, 7, n_out > 0);
        sqlite3_bind_int(st, 8, partial);
        sqlite3_bind_text(st, 9, sites_text, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 10, drift_text, -1, SQLITE_STATIC);
        err = sqlite3_step(st) == SQLITE_DONE ? 0 : SDF_EDB;   /* PK: never twice */
    } else if (err == 0) {
        err = SDF_EDB;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (err == 0 &&
        sqlite3_prepare_v2(m->db, "UPDATE monitors SET next_period = ?2, state = ?3, "
                                  "last_run_ms = 0 WHERE id = ?1 AND next_period = ?4", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, rc->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, rc->period_index + 1);
        sqlite3_bind_text(st, 3, state, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, rc->period_index);
        err = sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(m->db) == 1 ? 0 : SDF_EDB;
    } else if (err == 0) {
        err = SDF_EDB;
    }
    sqlite3_finalize(st);
    st = NULL;
    for (size_t i = 0; err == 0 && i < 2 && alerts[i]; i++) {
        if (sqlite3_prepare_v2(m->db, "INSERT INTO alerts (monitor, owner, created_ms, json) "
                                      "VALUES (?1, ?2, ?3, ?4)", -1, &st, NULL) != SQLITE_OK) {
            err = SDF_EDB;
            break;
        }
        sqlite3_bind_text(st, 1, rc->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, rc->owner, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, now);
        sqlite3_bind_text(st, 4, alerts[i], -1, SQLITE_STATIC);
        err = sqlite3_step(st) == SQLITE_DONE ? 0 : SDF_EDB;
        sqlite3_finalize(st);
        st = NULL;
    }
    if (err == 0)
        err = db_exec(m->db, "COMMIT");
    if (err != 0) {
        (void)db_exec(m->db, "ROLLBACK");
        log_error("monitor %s: period %s not counted (store: %s); it will be asked again",
                  rc->id, rc->period, sqlite3_errmsg(m->db));
        goto done;
    }
    log_info("monitor %s: period %s counted: drift look, %zu metric(s) out of band%s", rc->id,
             rc->period, n_out, partial ? ", partial" : "");
    record_run(m, rc->id, rc->period, qid, "counted");
    for (size_t i = 0; i < 2 && alerts[i]; i++) {
        log_warn("ALERT monitor %s period %s: outside the agreed band: %s", rc->id, rc->period,
                 alerts[i]);
        alert_run_command(m, alerts[i]);
    }
done:
    free(drift_text);
    free(sites_text);
    free(alerts[0]);
    free(alerts[1]);
}

static void run_done(void *ctx, const Sdefed__FederatedResult *r, const char *error)
{
    run_ctx *rc = ctx;
    struct monitors *m = rc->m;
    mon_row mr;
    Sdefed__QuerySpec *spec = NULL;
    if (error || !r) {
        log_warn("monitor %s: period %s not asked: %s", rc->id, rc->period,
                 error ? error : "no result");
        record_run(m, rc->id, rc->period, NULL, "not started");
        run_free(rc);
        return;
    }
    /* this run's answers plus the definitive ones kept from earlier runs */
    Sdefed__FederatedResult merged = *r;
    Sdefed__SiteResult **sites = NULL;
    bool pooled_here = false;
    if (rc->n_kept > 0) {
        sites = calloc(r->n_sites + rc->n_kept, sizeof *sites);
        if (!sites) {
            log_error("monitor %s: out of memory merging period %s", rc->id, rc->period);
            record_run(m, rc->id, rc->period, r->query_id, "incomplete");
            run_free(rc);
            return;
        }
        size_t n = 0;
        for (size_t j = 0; j < rc->n_kept; j++)
            sites[n++] = (Sdefed__SiteResult *)rc->kept[j];
        for (size_t i = 0; i < r->n_sites; i++)
            if (r->sites[i] && !kept_answer(rc, r->sites[i]->site))
                sites[n++] = r->sites[i];
        merged.sites = sites;
        merged.n_sites = n;
        merged.n_pooled = 0;
        merged.pooled = NULL;
        merged.n_pooled_summaries = 0;
        merged.pooled_summaries = NULL;
        merged.n_pooled_surveil = 0;
        merged.pooled_surveil = NULL;
        merged.n_pooled_validations = 0;
        merged.pooled_validations = NULL;
        if (pool_result(&merged) != 0) {
            log_error("monitor %s: out of memory pooling period %s", rc->id, rc->period);
            pool_free_cells(&merged);
            free(sites);
            record_run(m, rc->id, rc->period, r->query_id, "incomplete");
            run_free(rc);
            return;
        }
        pooled_here = true;
        log_info("monitor %s: period %s: %zu site answer(s) kept from earlier runs", rc->id,
                 rc->period, rc->n_kept);
        r = &merged;
    }
    char why[256] = "";
    for (size_t i = 0; i < r->n_sites; i++) {
        const Sdefed__SiteResult *sr = r->sites[i];
        if (sr && sr->status != SDEFED__SITE_STATUS__SITE_OK &&
            sr->status != SDEFED__SITE_STATUS__SITE_REFUSED) {
            size_t l = strlen(why);
            snprintf(why + l, sizeof why - l, "%s%s %s", l ? ", " : "",
                     sr->site ? sr->site : "?", spec_site_status_name(sr->status));
        }
    }
    if (why[0]) {
        log_warn("monitor %s: period %s incomplete (%s); it will be asked again", rc->id,
                 rc->period, why);
        record_run(m, rc->id, rc->period, r->query_id, "incomplete");
        if (pooled_here)
            pool_free_cells(&merged);
        free(sites);
        run_free(rc);
        return;
    }
    int err = load_monitor(m, rc->id, &mr, &spec);
    if (err == 0 && mr.next_period == rc->period_index && strcmp(mr.state, "active") == 0) {
        if (mr.drift)
            count_drift_look(m, rc, r, &mr, spec);
        else
            count_look(m, rc, r, &mr, spec);
    }
    else if (err == 0)
        log_info("monitor %s: period %s already counted or monitor stopped", rc->id,
                 rc->period);
    if (spec)
        sdefed__query_spec__free_unpacked(spec, NULL);
    if (pooled_here)
        pool_free_cells(&merged);
    free(sites);
    run_free(rc);
}

static void set_last_run(struct monitors *m, const char *id, int64_t ms, const char *state)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->db, state ? "UPDATE monitors SET last_run_ms = ?2, state = ?3 "
                                          "WHERE id = ?1"
                                        : "UPDATE monitors SET last_run_ms = ?2 WHERE id = ?1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, ms);
        if (state)
            sqlite3_bind_text(st, 3, state, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            log_error("monitor %s: store: %s", id, sqlite3_errmsg(m->db));
    }
    sqlite3_finalize(st);
}

/* How many runs of `period` ended incomplete (a site offline, timed out
 * or failed); 0 on a store error. */
static int64_t incomplete_runs(struct monitors *m, const char *id, const char *period)
{
    sqlite3_stmt *st = NULL;
    int64_t n = 0;
    if (sqlite3_prepare_v2(m->db, "SELECT COUNT(*) FROM monitor_runs WHERE monitor = ?1 AND "
                                  "period = ?2 AND outcome = 'incomplete'", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, period, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return n;
}

static void start_run(struct monitors *m, const char *id)
{
    mon_row mr;
    Sdefed__QuerySpec *spec = NULL;
    if (load_monitor(m, id, &mr, &spec) != 0) {
        log_error("monitor %s: cannot load it from the store", id);
        return;
    }
    plan pl;
    plan_of(&pl, &mr, spec);
    int64_t now = (int64_t)coord_now_ms();
    if (mr.next_period >= pl.n) {
        set_last_run(m, id, now, "done");
        sdefed__query_spec__free_unpacked(spec, NULL);
        return;
    }
    char from[11], to[11], label[16];
    int64_t end_day;
    plan_period(&pl, mr.next_period, from, to, label, &end_day);
    /* back off after incomplete runs of this period: every re-ask counts
     * against the answering sites' repeat limit (max_identical) */
    int64_t k = incomplete_runs(m, id, label);
    if (k > 0 && mr.last_run_ms + (mr.every_ms << (k < MON_MAX_BACKOFF ? k : MON_MAX_BACKOFF)) > now) {
        sdefed__query_spec__free_unpacked(spec, NULL);
        return;
    }
    /* a drift look waits for the end of its outcome window too (OMOP outcome) */
    int64_t follow = !mr.drift ? spec->surveil->window->end_days
                     : spec->validate->outcome && spec->validate->outcome->window
                         ? spec->validate->outcome->window->end_days
                         : 0;
    if (end_day + follow >= today_day()) {
        /* follow-up not over yet: look again after `every` */
        set_last_run(m, id, now, NULL);
        sdefed__query_spec__free_unpacked(spec, NULL);
        return;
    }
    run_ctx *rc = calloc(1, sizeof *rc);
    if (!rc) {
        sdefed__query_spec__free_unpacked(spec, NULL);
        return;
    }
    rc->m = m;
    snprintf(rc->id, sizeof rc->id, "%.31s", id);
    snprintf(rc->owner, sizeof rc->owner, "%.63s", mr.owner);
    rc->period_index = mr.next_period;
    snprintf(rc->period, sizeof rc->period, "%.15s", label);
    rc->next = m->runs;
    m->runs = rc;
    set_last_run(m, id, now, NULL);

    char **pf = mr.drift ? &spec->validate->from : &spec->surveil->from;
    char **pt = mr.drift ? &spec->validate->to : &spec->surveil->to;
    char *own_from = *pf, *own_to = *pt;
    *pf = from;   /* borrowed for the submit; restored below */
    *pt = to;
    Sdefed__Submit sub = SDEFED__SUBMIT__INIT;
    sub.spec = spec;
    /* after incomplete runs: ask only the sites without a definitive answer */
    const coord_config *cfg = &m->co->cfg;
    char **ask = NULL;
    if (k > 0 && load_earlier_answers(m, rc) == 0 && rc->n_kept > 0 &&
        (ask = calloc(cfg->n_sites ? cfg->n_sites : 1, sizeof *ask)) != NULL) {
        for (size_t i = 0; i < cfg->n_sites; i++)
            if (!kept_answer(rc, cfg->sites[i].id))
                ask[sub.n_sites++] = (char *)cfg->sites[i].id;
        if (sub.n_sites > 0)
            sub.sites = ask;
    }
    if (k > 0 && (sub.n_sites == 0 || !ask)) {
        /* nothing kept (or every registered site has answered before: the
         * registry changed) — ask everyone, as on a first run */
        for (size_t i = 0; i < rc->n_prev; i++)
            sdefed__federated_result__free_unpacked(rc->prev[i], NULL);
        rc->n_prev = rc->n_kept = 0;
        sub.n_sites = 0;
        sub.sites = NULL;
    }
    log_info("monitor %s: asking %s for period %s (%s..%s)", id,
             sub.n_sites ? "the sites without an answer" : "the sites", label, from, to);
    dispatch_submit_internal(m->co, mr.owner, &sub, run_done, rc);
    free(ask);
    /* dispatch copied the spec: give back the unpacked strings before freeing */
    *pf = own_from;
    *pt = own_to;
    sdefed__query_spec__free_unpacked(spec, NULL);
}

static void tick(uv_timer_t *t)
{
    struct monitors *m = t->data;
    if (m->stopped || m->co->stopping)
        return;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->db, "SELECT id FROM monitors WHERE state = 'active' AND "
                                  "last_run_ms + every_ms <= ?1 ORDER BY id", -1, &st,
                           NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)coord_now_ms());
    char ids[64][32];
    size_t n = 0;
    while (n < 64 && sqlite3_step(st) == SQLITE_ROW)
        snprintf(ids[n++], sizeof ids[0], "%.31s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    for (size_t i = 0; i < n; i++)
        if (!running(m, ids[i]))
            start_run(m, ids[i]);
}

/* ---- lifecycle ---- */

static bool has_column(sqlite3 *db, const char *table, const char *col)
{
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA table_info(%s)", table);
    sqlite3_stmt *st = NULL;
    bool found = false;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK)
        while (!found && sqlite3_step(st) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(st, 1);
            found = name && strcmp(name, col) == 0;
        }
    sqlite3_finalize(st);
    return found;
}

/* Drift monitors (issue 6 item 3) need columns a store created by an
 * earlier version lacks: add them (NULL / 'surveil' for existing rows). */
static int migrate_store(sqlite3 *db)
{
    static const struct {
        const char *table, *col, *decl;
    } cols[] = {
        { "monitors", "kind", "TEXT NOT NULL DEFAULT 'surveil'" },
        { "monitors", "period", "TEXT" },
        { "monitors", "date_from", "TEXT" },
        { "monitors", "date_to", "TEXT" },
        { "monitors", "auc_min", "REAL" },
        { "monitors", "auc_max", "REAL" },
        { "monitors", "slope_min", "REAL" },
        { "monitors", "slope_max", "REAL" },
        { "monitor_looks", "drift", "TEXT" },
    };
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        if (has_column(db, cols[i].table, cols[i].col))
            continue;
        char sql[160];
        snprintf(sql, sizeof sql, "ALTER TABLE %s ADD COLUMN %s %s", cols[i].table, cols[i].col,
                 cols[i].decl);
        if (db_exec(db, sql) != 0) {
            log_error("store: cannot add column %s.%s: %s", cols[i].table, cols[i].col,
                      sqlite3_errmsg(db));
            return SDF_EDB;
        }
        log_info("store: added column %s.%s (drift monitors)", cols[i].table, cols[i].col);
    }
    return 0;
}

int monitors_start(coord *co)
{
    if (migrate_store(store_db(co->st)) != 0)
        return SDF_EDB;
    struct monitors *m = calloc(1, sizeof *m);
    if (!m)
        return SDF_ENOMEM;
    m->co = co;
    m->db = store_db(co->st);
    uv_timer_init(co->loop, &m->timer);
    m->timer.data = m;
    uv_timer_start(&m->timer, tick, MON_TICK_MS, MON_TICK_MS);
    m->started = true;
    co->mon = m;
    return 0;
}

void monitors_stop(coord *co)
{
    struct monitors *m = co->mon;
    if (!m || m->stopped)
        return;
    m->stopped = true;
    uv_timer_stop(&m->timer);
    if (!uv_is_closing((uv_handle_t *)&m->timer))
        uv_close((uv_handle_t *)&m->timer, NULL);
}

void monitors_free(coord *co)
{
    struct monitors *m = co->mon;
    if (!m)
        return;
    while (m->runs) {
        run_ctx *r = m->runs;
        m->runs = r->next;
        free(r);
    }
    while (m->alerts) {
        alert_proc *a = m->alerts;
        m->alerts = a->next;
        free(a->json);
        free(a);
    }
    free(m);
    co->mon = NULL;
}

/* ---- analyst requests ---- */

static void reply_json(peer *p, uint64_t request_id, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        peer_send_error(p, request_id, SDEFED__ERROR_CODE__ERR_INTERNAL, "out of memory");
        return;
    }
    Sdefed__MonitorReply mr = SDEFED__MONITOR_REPLY__INIT;
    mr.json = text;
    Sdefed__Envelope env = SDEFED__ENVELOPE__INIT;
    env.request_id = request_id;
    env.body_case = SDEFED__ENVELOPE__BODY_MONITOR_REPLY;
    env.monitor_reply = &mr;
    (void)peer_send(p, &env);
    free(text);
}

static json_t *col_json(sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: return json_integer(sqlite3_column_int64(st, i));
    case SQLITE_FLOAT: return json_real(sqlite3_column_double(st, i));
    case SQLITE_NULL: return json_null();
    default: return json_string((const char *)sqlite3_column_text(st, i));
    }
}

/* Rows of a statement as objects (text columns named *json are parsed). */
static json_t *rows_json(sqlite3_stmt *st)
{
    json_t *a = json_array();
    while (a && sqlite3_step(st) == SQLITE_ROW) {
        json_t *o = json_object();
        for (int i = 0; o && i < sqlite3_column_count(st); i++) {
            const char *name = sqlite3_column_name(st, i);
            json_t *v;
            if ((strcmp(name, "spec_json") == 0 || strcmp(name, "sites") == 0 ||
                 strcmp(name, "alert") == 0 || strcmp(name, "drift") == 0) &&
                sqlite3_column_type(st, i) != SQLITE_NULL) {
                v = json_loads((const char *)sqlite3_column_text(st, i), 0, NULL);
                if (strcmp(name, "spec_json") == 0)
                    name = "spec";
            } else {
                v = col_json(st, i);
            }
            json_object_set_new(o, name, v ? v : json_null());
        }
        json_array_append_new(a, o);
    }
    return a;
}

#define MONITOR_COLS                                                                      \
    "id, owner, created_ms, every_ms, test, expected_rate, alpha, length, threshold, "    \
    "next_period, state, cum_events AS observed, cum_expected AS expected, cusum, "       \
    "spec_json, kind, period, date_from, date_to, auc_min, auc_max, slope_min, slope_max"

/* Shape a monitor row: a drift monitor gets "band" (its limits, null when
 * unset), "period", "from", "to" and loses the sequential-test columns; a
 * surveil monitor loses the drift columns. */
static void monitor_shape(json_t *o)
{
    static const char *const seq[] = { "test", "expected_rate", "alpha", "length", "threshold",
                                       "observed", "expected", "cusum" };
    static const char *const drift[] = { "auc_min", "auc_max", "slope_min", "slope_max" };
    bool is_drift = json_is_string(json_object_get(o, "kind")) &&
                    strcmp(json_string_value(json_object_get(o, "kind")), "validate") == 0;
    if (is_drift) {
        json_t *band = json_object();
        for (size_t i = 0; band && i < 4; i++)
            json_object_set(band, drift[i], json_object_get(o, drift[i]));
        json_object_set_new(o, "band", band ? band : json_null());
        for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++)
            json_object_del(o, seq[i]);
        json_object_set(o, "from", json_object_get(o, "date_from"));
        json_object_set(o, "to", json_object_get(o, "date_to"));
    } else {
        json_object_del(o, "period");
    }
    for (size_t i = 0; i < 4; i++)
        json_object_del(o, drift[i]);
    json_object_del(o, "date_from");
    json_object_del(o, "date_to");
}

static json_t *monitors_shape(json_t *a)
{
    for (size_t i = 0; i < json_array_size(a); i++)
        monitor_shape(json_array_get(a, i));
    return a;
}

static json_t *query_json(sqlite3 *db, const char *sql, const char *a1, const char *a2)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(st, 1, a1, -1, SQLITE_STATIC);
    if (a2)
        sqlite3_bind_text(st, 2, a2, -1, SQLITE_STATIC);
    json_t *j = rows_json(st);
    sqlite3_finalize(st);
    return j;
}

/* "YYYY-MM-DD" -> day number; false when not a real date of 1900..2200. */
static bool parse_day(const char *s, int64_t *day)
{
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    int64_t y = atoi(s), mo = atoi(s + 5), d = atoi(s + 8);
    if (y < 1900 || y > 2200 || mo < 1 || mo > 12 || d < 1 || d > mdays(y, mo))
        return false;
    *day = days_from_civil(y, mo, d);
    return true;
}

static void bind_band(sqlite3_stmt *st, int i, bool has, double v)
{
    if (has)
        sqlite3_bind_double(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

/* What every new monitor needs before its INSERT: room under
 * MON_MAX_MONITORS, a fresh random id, and the spec packed (*blob, *len)
 * and as canonical JSON (*stext); the caller frees both. On failure the
 * analyst has been sent the error and -1 is returned. */
static int new_monitor_record(struct monitors *m, peer *p, uint64_t rid,
                              const Sdefed__QuerySpec *spec, char id[32], uint8_t **blob,
                              size_t *len, char **stext)
{
    sqlite3_stmt *st = NULL;
    int64_t count = MON_MAX_MONITORS;
    if (sqlite3_prepare_v2(m->db, "SELECT COUNT(*) FROM monitors", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        count = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (count >= MON_MAX_MONITORS) {
        peer_send_error(p, rid, SDEFED__ERROR_CODE__ERR_UNAVAILABLE, "too many monitors");
        return -1;
    }
    unsigned char rnd[4] = { 0 };
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        log_warn("RAND_bytes failed; monitor id less random");
    snprintf(id, 32, "m-%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    *len = sdefed__query_spec__get_packed_size(spec);
    *blob = malloc(*len ? *len : 1);
    json_t *sj = spec_to_json(spec);
    *stext = sj ? json_dumps(sj, JSON_COMPACT) : NULL;
    json_decref(sj);
    if (!*blob || !*stext) {
        free(*blob);
        free(*stext);
        peer_send_error(p, rid, SDEFED__ERROR_CODE__ERR_INTERNAL, "out of memory");
        return -1;
    }
    sdefed__query_spec__pack(spec, *blob);
    return 0;
}

/* `monitor add` of a validate spec: a drift monitor (issue 6 item 3). */
static void op_add_drift(struct monitors *m, peer *p, uint64_t rid, const Sdefed__MonitorRequest *q)
{
    char err[256];
    const Sdefed__QuerySpec *spec = q->spec;
#define REFUSE(...)                                                                 \
    do {                                                                            \
        snprintf(err, sizeof err, __VA_ARGS__);                                     \
        peer_send_error(p, rid, SDEFED__ERROR_CODE__ERR_SPEC, err);                 \
        return;                                                                     \
    } while (0)
    if ((q->test && q->test[0]) || q->expected_rate != 0.0 || q->alpha != 0.0 || q->length != 0.0)
        REFUSE("monitor add: --test, --expected, --alpha and --length are for surveil monitors");
    if ((spec->validate->from && spec->validate->from[0]) ||
        (spec->validate->to && spec->validate->to[0]))
        REFUSE("monitor add: give the dates with --from/--to, not validate.from/to in the spec");
    Sdefed__SurveilPeriod period = period_of(q->period);
    if (period == SDEFED__SURVEIL_PERIOD__PERIOD_ALL)
        REFUSE("monitor add: --period must be month, quarter or year");
    int64_t fday = 0, tday = 0;
    if (!parse_day(q->from, &fday))
        REFUSE("monitor add: --from must be a date YYYY-MM-DD (years 1900..2200)");
    bool has_to = q->to && q->to[0];
    if (has_to && !parse_day(q->to, &tday))
        REFUSE("monitor add: --to must be a date YYYY-MM-DD (years 1900..2200)");
    if (has_to && tday < fday)
        REFUSE("monitor add: --to is before --from");
    if (q->every_ms < MON_MIN_EVERY_MS || q->every_ms > MON_MAX_EVERY_MS)
        REFUSE("monitor add: --every must be between 100 ms and 366 days");
    monitor_band b = { .has_auc_min = q->has_auc_min, .has_auc_max = q->has_auc_max,
                       .has_slope_min = q->has_slope_min, .has_slope_max = q->has_slope_max,
                       .auc_min = q->auc_min, .auc_max = q->auc_max,
                       .slope_min = q->slope_min, .slope_max = q->slope_max };
    if (!auc_band_set(&b) && !slope_band_set(&b))
        REFUSE("monitor add: a drift monitor needs at least one of --auc-min, --auc-max, "
               "--slope-min, --slope-max");
    if ((b.has_auc_min && !(b.auc_min >= 0.0 && b.auc_min <= 1.0)) ||
        (b.has_auc_max && !(b.auc_max >= 0.0 && b.auc_max <= 1.0)))
        REFUSE("monitor add: AUC limits must be in [0, 1]");
    if ((b.has_slope_min && !(fabs(b.slope_min) <= 100.0)) ||
        (b.has_slope_max && !(fabs(b.slope_max) <= 100.0)))
        REFUSE("monitor add: calibration slope limits must be in [-100, 100]");
    if (b.has_auc_min && b.has_auc_max && b.auc_min > b.auc_max)
        REFUSE("monitor add: --auc-min is above --auc-max");
    if (b.has_slope_min && b.has_slope_max && b.slope_min > b.slope_max)
        REFUSE("monitor add: --slope-min is above --slope-max");
#undef REFUSE
    plan pl;
    plan_init(&pl, period, q->from, has_to ? q->to : "");
    if (pl.n > SPEC_SURVEIL_MAX_PERIODS) {
        peer_send_error(p, rid, SDEFED__ERROR_CODE__ERR_SPEC,
                        "monitor add: more than 600 periods between --from and --to");
        return;
    }
    char id[32];
    uint8_t *blob;
    size_t len;
    char *stext;
    if (new_monitor_record(m, p, rid, spec, id, &blob, &len, &stext) != 0)
        return;
    sqlite3_stmt *st = NULL;
    int rc = SDF_EDB;
    if (sqlite3_prepare_v2(m->db,
                           "INSERT INTO monitors (id, owner, created_ms, spec, spec_json, "
                           "every_ms, test, expected_rate, alpha, length, threshold, kind, "
                           "period, date_from, date_to, auc_min, auc_max, slope_min, slope_max) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'band', 0, 0, 0, 0, 'validate', ?7, "
                           "?8, ?9, ?10, ?11, ?12, ?13)", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, p->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)coord_now_ms());
        sqlite3_bind_blob(st, 4, blob, (int)len, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, stext, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)q->every_ms);
        sqlite3_bind_text(st, 7, q->period, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, q->from, -1, SQLITE_STATIC);
        if (has_to)
            sqlite3_bind_text(st, 9, q->to, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 9);
        bind_band(st, 10, b.has_auc_min, b.auc_min);
        bind_band(st, 11, b.has_auc_max, b.auc_max);
        bind_band(st, 12, b.has_slope_min, b.slope_min);
        bind_band(st, 13, b.has_slope_max, b.slope_max);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : SDF_EDB;
    }
    sqlite3_finalize(st);
    free(blob);
    free(stext);
    if (rc != 0) {
        peer_send_error(p, rid, SDEFED__ERROR_CODE__ERR_INTERNAL, "cannot store the monitor");
        return;
    }
    log_info("monitor %s added by %s: drift of a validate spec every %" PRIu64 " ms, by %s "
             "from %s%s%s, %" PRId64 " periods", id, p->id, q->every_ms, q->period, q->from,
             has_to ? " to " : "", has_to ? q->to : "", pl.n);
    json_t *j = query_json(m->db, "SELECT " MONITOR_COLS " FROM monitors WHERE id = ?1", id, NULL);
    json_t *one = j ? json_incref(json_array_get(j, 0)) : NULL;
    json_decref(j);
    if (one)
        monitor_shape(one);
    reply_json(p, rid, one);
}

static void op_add(struct monitors *m, peer *p, uint64_t rid, const Sdefed__MonitorRequest *q)
{
    char err[256];
    const Sdefed__QuerySpec *spec = q->spec;
#define REFUSE(...)                                                                 \
    do {                                                                            \
        snprintf(err, sizeof err, __VA_ARGS__);                                     \
        peer_send_error(p, rid, SDEFED__ERROR_CODE__ERR_SPEC, err);                 \
        return;                                                                     \
    } while (0)
    if (!spec)
        REFUSE("monitor add: no spec");
    if (spec_validate(spec, err, sizeof err) != 0) {
        peer_send_error(p, rid, SDEFED__ERROR_CODE__ERR_SPEC, err);
        return;
    }
    if (spec->kind == SDEFED__QUERY_KIND__KIND_VALIDATE) {
        op_add_drift(m, p, rid, q);
        return;
    }
    if (spec->kind != SDEFED__QUERY_KIND__KIND_SURVEIL)
        REFUSE("monitor add: the spec must be of kind surveil or validate");
    if ((q->period && q->period[0]) || (q->from && q->from[0]) || (q->to && q->to[0]) ||
        q->has_auc_min || q->has_auc_max || q->has_slope_min || q->has_slope_max)
        REFUSE("monitor add: --period, --from, --to and the band limits are for validate "
               "(drift) monitors");
    if (spec->surveil->period == SDEFED__SURVEIL_PERIOD__PERIOD_ALL)
        REFUSE("monitor add: period must be month, quarter or year");
    if (q->every_ms < MON_MIN_EVERY_MS || q->every_ms > MON_MAX_EVERY_MS)
        REFUSE("monitor add: --every must be between 100 ms and 366 days");
    const char *test = q->test && q->test[0] ? q->test : "maxsprt";
    if (strcmp(test, "maxsprt") != 0 && strcmp(test, "cusum") != 0)
        REFUSE("monitor add: --test must be maxsprt or cusum");
    if (!(q->expected_rate >= 0.0) || q->expected_rate > 1e9)
        REFUSE("monitor add: --expected must be a rate per 1,000 person-years (> 0)");
    if (q->expected_rate == 0.0 && !spec->surveil->comparator)
        REFUSE("monitor add: give --expected RATE or a comparator in the spec");
    double alpha = q->alpha > 0.0 ? q->alpha : 0.05;
    if (!(alpha > 0.0) || alpha > 0.5)
        REFUSE("monitor add: --alpha must be in (0, 0.5]");
    double length = q->length > 0.0 ? q->length : 20.0;
    if (!(length > 0.0) || length > 1000.0)
        REFUSE("monitor add: --length must be 0..1000 expected events");
#undef REFUSE
    plan pl;
    plan_init(&pl, spec->surveil->period, spec->surveil->from, spec->surveil->to);
    double threshold;
    int rc = strcmp(test, "cusum") == 0
                 ? seq_cusum_h(alpha, length, (unsigned)pl.n, MON_CUSUM_RR, MON_CUSUM_RUNS,
                               MON_CUSUM_SEED, &threshold)
                 : seq_maxsprt_cv(alpha, length, &threshold);
    if (rc != 0) {
        peer_send_error(p, rid, SDEFED__ERROR_CODE__ERR_INTERNAL,
                        "cannot compute the critical value");
        return;
    }
    char id[32];
    uint8_t *blob;
    size_t len;
    char *stext;
    if (new_monitor_record(m, p, rid, spec, id, &blob, &len, &stext) != 0)
        return;
    sqlite3_stmt *st = NULL;
    rc = SDF_EDB;
    if (sqlite3_prepare_v2(m->db,
                           "INSERT INTO monitors (id, owner, created_ms, spec, spec_json, "
                           "every_ms, test, expected_rate, alpha, length, threshold) VALUES "
                           "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, p->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)coord_now_ms());
        sqlite3_bind_blob(st, 4, blob, (int)len, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, stext, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)q->every_ms);
        sqlite3_bind_text(st, 7, test, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 8, q->expected_rate);
        sqlite3_bind_double(st, 9, alpha);
        sqlite3_bind_double(st, 10, length);
        sqlite3_bind_double(st, 11, threshold);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : SDF_EDB;
    }
    sqlite3_finalize(st);
    free(blob);
    free(stext);
    if (rc != 0) {
        peer_send_error(p, rid, SDEFED__ERROR_CODE__ERR_INTERNAL, "cannot store the monitor");
        return;
    }
    log_info("monitor %s added by %s: %s every %" PRIu64 " ms, alpha %.3g, length %.3g, "
             "threshold %.4f, %" PRId64 " periods", id, p->id, test, q->every_ms, alpha, length,
             threshold, pl.n);
    json_t *j = query_json(m->db, "SELECT " MONITOR_COLS " FROM monitors WHERE id = ?1", id, NULL);
    json_t *one = j ? json_incref(json_array_get(j, 0)) : NULL;
    json_decref(j);
    if (one)
        monitor_shape(one);
    reply_json(p, rid, one);
}

void monitors_request(coord *co, peer *p, uint64_t rid, const Sdefed__MonitorRequest *q)
{
    struct monitors *m = co->mon;
    const char *op = q->op ? q->op : "";
    const char *id = q->id ? q->id : "";
    if (!m) {
        peer_send_error(p, rid, SDEFED__ERROR_CODE__ERR_UNAVAILABLE, "monitors are not running");
        return;
    }
    if (strcmp(op, "add") == 0) {
        if (co->stopping) {
            peer_send_error(p, rid, SDEFED__ERROR_CODE__ERR_UNAVAILABLE,
                            "coordinator is shutting down");
            return;
        }
        op_add(m, p, rid, q);
        return;
    }
    if (strcmp(op, "list") == 0) {
        reply_json(p, rid, monitors_shape(query_json(m->db,
                                      "SELECT " MONITOR_COLS ", (SELECT COUNT(*) FROM "
                                      "monitor_looks l WHERE l.monitor = monitors.id) AS "
                                      "looks, (SELECT COUNT(*) FROM alerts a WHERE a.monitor "
                                      "= monitors.id) "
                                      "AS alerts FROM monitors WHERE owner = ?1 ORDER BY "
                                      "created_ms, id", p->id, NULL)));
        return;
    }
    if (strcmp(op, "alerts") == 0) {
        reply_json(p, rid, query_json(m->db,
                                      "SELECT id, monitor, created_ms, json AS alert FROM "
                                      "alerts WHERE owner = ?1 ORDER BY id", p->id, NULL));
        return;
    }
    if (strcmp(op, "show") == 0 || strcmp(op, "rm") == 0) {
        json_t *mon = query_json(m->db, "SELECT " MONITOR_COLS " FROM monitors WHERE id = ?1 "
                                        "AND owner = ?2", id, p->id);
        if (!mon || json_array_size(mon) == 0) {
            json_decref(mon);
            peer_send_error(p, rid, SDEFED__ERROR_CODE__ERR_NOT_FOUND, "no such monitor");
            return;
        }
        if (strcmp(op, "rm") == 0) {
            sqlite3_stmt *st = NULL;
            int rc = db_exec(m->db, "BEGIN IMMEDIATE");
            static const char *const dels[] = { "DELETE FROM monitors WHERE id = ?1",
                                                "DELETE FROM monitor_looks WHERE monitor = ?1",
                                                "DELETE FROM monitor_runs WHERE monitor = ?1" };
            for (size_t i = 0; rc == 0 && i < 3; i++) {
                rc = sqlite3_prepare_v2(m->db, dels[i], -1, &st, NULL) == SQLITE_OK ? 0 : SDF_EDB;
                if (rc == 0) {
                    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
                    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : SDF_EDB;
                }
                sqlite3_finalize(st);
                st = NULL;
            }
            if (rc == 0)
                rc = db_exec(m->db, "COMMIT");
            if (rc != 0) {
                (void)db_exec(m->db, "ROLLBACK");
                json_decref(mon);
                peer_send_error(p, rid, SDEFED__ERROR_CODE__ERR_INTERNAL, "store error");
                return;
            }
            log_info("monitor %s removed by %s (its alerts are kept)", id, p->id);
            json_t *o = json_pack("{s:s, s:b}", "id", id, "removed", 1);
            json_decref(mon);
            reply_json(p, rid, o);
            return;
        }
        json_t *o = json_incref(json_array_get(mon, 0));
        json_decref(mon);
        monitor_shape(o);
        bool is_drift = json_object_get(o, "band") != NULL;
        json_object_set_new(o, "looks",
                            query_json(m->db,
                                       is_drift ? "SELECT period_index, period, run_ms, query_id, "
                                                  "signal, partial, sites, drift FROM "
                                                  "monitor_looks WHERE monitor = ?1 ORDER BY "
                                                  "period_index"
                                                : "SELECT period_index, period, run_ms, query_id, "
                                                  "events, person_days, expected, statistic, "
                                                  "signal, partial, sites FROM monitor_looks "
                                                  "WHERE monitor = ?1 ORDER BY period_index",
                                       id, NULL));
        json_object_set_new(o, "runs",
                            query_json(m->db, "SELECT run_ms, period, query_id, outcome FROM "
                                              "monitor_runs WHERE monitor = ?1 ORDER BY rowid",
                                       id, NULL));
        json_object_set_new(o, "alerts",
                            query_json(m->db, "SELECT id, created_ms, json AS alert FROM alerts "
                                              "WHERE monitor = ?1 ORDER BY id", id, NULL));
        reply_json(p, rid, o);
        return;
    }
    peer_send_error(p, rid, SDEFED__ERROR_CODE__ERR_PROTOCOL,
                    "monitor: op must be add, list, show, rm or alerts");
}
