/* tests/unit/agent/test_db_faults.c — the database fails under the agent (issue 9, 2b).
 *
 * A wrapping SQLite VFS, registered as the default, delegates every call to
 * the real default VFS but can be told to fail: xOpen (SQLITE_CANTOPEN),
 * xRead (SQLITE_IOERR_READ), xWrite (SQLITE_FULL), xSync (SQLITE_IOERR_FSYNC)
 * or xLock / xCheckReservedLock / xShmLock (SQLITE_BUSY) — on the Nth such
 * call to a file whose name contains a pattern, for `burst` calls in a row
 * (1 = that call only; a large burst = every call from then on).
 *
 * Then it drives the agent's real code paths:
 *  1. query_run() over a small OMOP dataset with each fault on the dataset
 *     file, for N = 1, 2, ... until the query runs without reaching the
 *     fault: the result is ok and byte-identical to the baseline, or an
 *     error / timeout with a generic reason and no cells.
 *  2. The daemon's sequence for one request (agent_jobs.c: gov_admit,
 *     query_run, gov_finish) with each fault on the governance state
 *     database (state.db: audit log, projects, review queue) and on the
 *     disclosure ledger (disclosure.db: repeat control, differencing, DP
 *     budget). What the agent would send is either a released result that
 *     is identical to the baseline AND recorded in the audit log under its
 *     exact digest, a held result that is in the review queue, or an
 *     error/refusal with no cells. Afterwards (faults off) both databases
 *     pass integrity_check, audit_verify() passes, and the DP epsilon spent
 *     is never less than what the released results used.
 * Leaks are checked by running this binary under ASan/LeakSanitizer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "agent.h"
#include "db.h"
#include "disclosure/ledger.h"
#include "governance/audit.h"
#include "governance/governance.h"
#include "governance/projects.h"
#include "governance/review.h"
#include "query.h"
#include "sdefed/log.h"
#include "sdefed/spec.h"
#include "state.h"

/* ---- the fault-injecting VFS -------------------------------------------------------- */

typedef enum {
    FAULT_NONE,
    FAULT_OPEN,    /* xOpen -> SQLITE_CANTOPEN */
    FAULT_READ,    /* xRead -> SQLITE_IOERR_READ */
    FAULT_WRITE,   /* xWrite -> SQLITE_FULL */
    FAULT_SYNC,    /* xSync -> SQLITE_IOERR_FSYNC */
    FAULT_BUSY,    /* xLock / xCheckReservedLock / xShmLock -> SQLITE_BUSY */
} fault_kind;

static const char *fault_name[] = { "none", "open", "read", "write(full)", "sync", "busy" };

static struct {
    fault_kind kind;
    char pattern[64];   /* substring of the file name */
    long nth;           /* first failing call (1-based) among matching calls */
    long burst;         /* how many matching calls fail from the nth on */
    long calls;         /* matching calls seen since arming */
    long fired;         /* faults injected since arming */
} F;

static sqlite3_vfs *real_vfs;
static sqlite3_vfs shim_vfs;

typedef struct shim_file {
    sqlite3_file base;          /* must be first */
    const sqlite3_io_methods *real_methods;
    char name[512];             /* as opened (matched against the pattern per call) */
    /* the real file follows (real_vfs->szOsFile bytes) */
} shim_file;

static sqlite3_file *real_of(sqlite3_file *f)
{
    return (sqlite3_file *)((char *)f + sizeof(shim_file));
}

static void fault_arm(fault_kind k, const char *pattern, long nth, long burst)
{
    F.kind = k;
    snprintf(F.pattern, sizeof F.pattern, "%s", pattern);
    F.nth = nth;
    F.burst = burst;
    F.calls = 0;
    F.fired = 0;
}

static void fault_disarm(void)
{
    F.kind = FAULT_NONE;
}

static bool name_matches(const char *name)
{
    return name && F.pattern[0] && strstr(name, F.pattern) != NULL;
}

/* Should this call (of kind k, on the file called name) fail? */
static bool fault_hit(fault_kind k, const char *name)
{
    if (F.kind != k || !name_matches(name))
        return false;
    long c = ++F.calls;
    if (c >= F.nth && c - F.nth < F.burst) {
        F.fired++;
        return true;
    }
    return false;
}

static int shim_close(sqlite3_file *f)
{
    shim_file *s = (shim_file *)f;
    return s->real_methods->xClose(real_of(f));
}

static int shim_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    shim_file *s = (shim_file *)f;
    if (fault_hit(FAULT_READ, s->name))
        return SQLITE_IOERR_READ;
    return s->real_methods->xRead(real_of(f), buf, n, off);
}

static int shim_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    shim_file *s = (shim_file *)f;
    if (fault_hit(FAULT_WRITE, s->name))
        return SQLITE_FULL;
    return s->real_methods->xWrite(real_of(f), buf, n, off);
}

static int shim_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return ((shim_file *)f)->real_methods->xTruncate(real_of(f), size);
}

static int shim_sync(sqlite3_file *f, int flags)
{
    shim_file *s = (shim_file *)f;
    if (fault_hit(FAULT_SYNC, s->name))
        return SQLITE_IOERR_FSYNC;
    /* Durability across a crash is not what this test is about (fault (c) is):
     * skipping the real fsync keeps it fast. */
    (void)flags;
    return SQLITE_OK;
}

static int shim_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return ((shim_file *)f)->real_methods->xFileSize(real_of(f), size);
}

static int shim_lock(sqlite3_file *f, int level)
{
    shim_file *s = (shim_file *)f;
    if (fault_hit(FAULT_BUSY, s->name))
        return SQLITE_BUSY;
    return s->real_methods->xLock(real_of(f), level);
}

static int shim_unlock(sqlite3_file *f, int level)
{
    return ((shim_file *)f)->real_methods->xUnlock(real_of(f), level);
}

static int shim_check_reserved(sqlite3_file *f, int *out)
{
    shim_file *s = (shim_file *)f;
    if (fault_hit(FAULT_BUSY, s->name))
        return SQLITE_BUSY;
    return s->real_methods->xCheckReservedLock(real_of(f), out);
}

static int shim_file_control(sqlite3_file *f, int op, void *arg)
{
    return ((shim_file *)f)->real_methods->xFileControl(real_of(f), op, arg);
}

static int shim_sector_size(sqlite3_file *f)
{
    return ((shim_file *)f)->real_methods->xSectorSize(real_of(f));
}

static int shim_device_chars(sqlite3_file *f)
{
    return ((shim_file *)f)->real_methods->xDeviceCharacteristics(real_of(f));
}

static int shim_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
    return ((shim_file *)f)->real_methods->xShmMap(real_of(f), pg, pgsz, extend, pp);
}

static int shim_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    shim_file *s = (shim_file *)f;
    /* Only acquiring can be refused; an unlock must always go through. */
    if ((flags & SQLITE_SHM_LOCK) && fault_hit(FAULT_BUSY, s->name))
        return SQLITE_BUSY;
    return s->real_methods->xShmLock(real_of(f), offset, n, flags);
}

static void shim_shm_barrier(sqlite3_file *f)
{
    ((shim_file *)f)->real_methods->xShmBarrier(real_of(f));
}

static int shim_shm_unmap(sqlite3_file *f, int del)
{
    return ((shim_file *)f)->real_methods->xShmUnmap(real_of(f), del);
}

/* Version 2: no xFetch, so every page read goes through xRead (and can fail). */
static const sqlite3_io_methods shim_methods = {
    2,
    shim_close,
    shim_read,
    shim_write,
    shim_truncate,
    shim_sync,
    shim_file_size,
    shim_lock,
    shim_unlock,
    shim_check_reserved,
    shim_file_control,
    shim_sector_size,
    shim_device_chars,
    shim_shm_map,
    shim_shm_lock,
    shim_shm_barrier,
    shim_shm_unmap,
    NULL,
    NULL,
};

static int shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
                     int *out_flags)
{
    (void)vfs;
    shim_file *s = (shim_file *)f;
    memset(s, 0, sizeof *s);
    if (fault_hit(FAULT_OPEN, name))
        return SQLITE_CANTOPEN;
    int rc = real_vfs->xOpen(real_vfs, name, real_of(f), flags, out_flags);
    if (rc != SQLITE_OK || !real_of(f)->pMethods) {
        f->pMethods = NULL;
        return rc;
    }
    s->real_methods = real_of(f)->pMethods;
    snprintf(s->name, sizeof s->name, "%s", name ? name : "");
    f->pMethods = &shim_methods;
    return rc;
}

static int shim_delete(sqlite3_vfs *v, const char *n, int sync)
{
    (void)v;
    return real_vfs->xDelete(real_vfs, n, sync);
}
static int shim_access(sqlite3_vfs *v, const char *n, int flags, int *out)
{
    (void)v;
    return real_vfs->xAccess(real_vfs, n, flags, out);
}
static int shim_full_pathname(sqlite3_vfs *v, const char *n, int len, char *out)
{
    (void)v;
    return real_vfs->xFullPathname(real_vfs, n, len, out);
}
static void *shim_dl_open(sqlite3_vfs *v, const char *n)
{
    (void)v;
    return real_vfs->xDlOpen(real_vfs, n);
}
static void shim_dl_error(sqlite3_vfs *v, int n, char *msg)
{
    (void)v;
    real_vfs->xDlError(real_vfs, n, msg);
}
static void (*shim_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return real_vfs->xDlSym(real_vfs, h, sym);
}
static void shim_dl_close(sqlite3_vfs *v, void *h)
{
    (void)v;
    real_vfs->xDlClose(real_vfs, h);
}
static int shim_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return real_vfs->xRandomness(real_vfs, n, out);
}
static int shim_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return real_vfs->xSleep(real_vfs, us);
}
static int shim_current_time(sqlite3_vfs *v, double *t)
{
    (void)v;
    return real_vfs->xCurrentTime(real_vfs, t);
}
static int shim_last_error(sqlite3_vfs *v, int n, char *msg)
{
    (void)v;
    return real_vfs->xGetLastError ? real_vfs->xGetLastError(real_vfs, n, msg) : 0;
}
static int shim_current_time_i64(sqlite3_vfs *v, sqlite3_int64 *t)
{
    (void)v;
    return real_vfs->xCurrentTimeInt64(real_vfs, t);
}

static void shim_install(void)
{
    if (real_vfs)
        return;
    real_vfs = sqlite3_vfs_find(NULL);
    assert_non_null(real_vfs);
    assert_true(real_vfs->iVersion >= 2);
    memset(&shim_vfs, 0, sizeof shim_vfs);
    shim_vfs.iVersion = 2;
    shim_vfs.szOsFile = (int)sizeof(shim_file) + real_vfs->szOsFile;
    shim_vfs.mxPathname = real_vfs->mxPathname;
    shim_vfs.zName = "sdefed-fault";
    shim_vfs.xOpen = shim_open;
    shim_vfs.xDelete = shim_delete;
    shim_vfs.xAccess = shim_access;
    shim_vfs.xFullPathname = shim_full_pathname;
    shim_vfs.xDlOpen = shim_dl_open;
    shim_vfs.xDlError = shim_dl_error;
    shim_vfs.xDlSym = shim_dl_sym;
    shim_vfs.xDlClose = shim_dl_close;
    shim_vfs.xRandomness = shim_randomness;
    shim_vfs.xSleep = shim_sleep;
    shim_vfs.xCurrentTime = shim_current_time;
    shim_vfs.xGetLastError = shim_last_error;
    shim_vfs.xCurrentTimeInt64 = shim_current_time_i64;
    assert_int_equal(sqlite3_vfs_register(&shim_vfs, 1), SQLITE_OK);
    assert_ptr_equal(sqlite3_vfs_find(NULL), &shim_vfs);
}

/* ---- fixtures --------------------------------------------------------------------- */

static char tmpdir[256];
static agent_config cfg;

/* The daemon's view: a config reference the governance hooks read. */
static agent_cfg_ref cfg_ref;
static agent the_agent;

/* The link to the coordinator, faked: defining agent_link_send here keeps
 * agent_link.o out of the link, so what the agent sends is recorded. */
typedef struct sent_rec {
    char query_id[64];
    Sdefed__SiteStatus status;
    size_t n_cells;
} sent_rec;
static sent_rec link_sent[64];
static size_t n_link_sent;
static bool link_fails;          /* conn_send failing with the link "up" */

int agent_link_send(agent *a, const Sdefed__Envelope *env)
{
    (void)a;
    if (link_fails)
        return SDF_ECLOSED;
    assert_int_equal(env->body_case, SDEFED__ENVELOPE__BODY_QUERY_RESULT);
    assert_true(n_link_sent < sizeof link_sent / sizeof link_sent[0]);
    sent_rec *r = &link_sent[n_link_sent++];
    snprintf(r->query_id, sizeof r->query_id, "%s", env->query_result->query_id);
    r->status = env->query_result->status;
    r->n_cells = env->query_result->n_cells;
    return 0;
}

/* main.c's (not in libagent.a); referenced by agent_jobs.o. */
void agent_maybe_exit(agent *a)
{
    (void)a;
}

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("sql: %s", err);
}

static void add_project(state *s, const char *id, release_mode mode)
{
    gov_project p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "%s", id);
    snprintf(p.kinds, sizeof p.kinds, "*");
    snprintf(p.datasets, sizeof p.datasets, "*");
    snprintf(p.requesters, sizeof p.requesters, "*");
    p.release = mode;
    char err[256];
    if (project_add(s, &p, err, sizeof err) != 0)
        fail_msg("project_add: %s", err);
}

static int setup(void **st)
{
    (void)st;
    shim_install();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sdefed-dbfaults-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    memset(&cfg, 0, sizeof cfg);
    disc_policy_default(&cfg.policy);
    cfg.policy.max_identical = 1000000;   /* the same query runs many times here */
    snprintf(cfg.site_id, sizeof cfg.site_id, "site-a");
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s/state", tmpdir);
    cfg.n_datasets = 1;
    snprintf(cfg.datasets[0].name, sizeof cfg.datasets[0].name, "omop");
    snprintf(cfg.datasets[0].type, sizeof cfg.datasets[0].type, "omop");
    snprintf(cfg.datasets[0].backend, sizeof cfg.datasets[0].backend, "sqlite");
    snprintf(cfg.datasets[0].path, sizeof cfg.datasets[0].path, "%s/omop.sqlite", tmpdir);

    sqlite3 *db;
    assert_int_equal(sqlite3_open(cfg.datasets[0].path, &db), SQLITE_OK);
    exec_sql(db,
             "CREATE TABLE person(person_id INTEGER PRIMARY KEY, gender_concept_id INTEGER,"
             " year_of_birth INTEGER, race_concept_id INTEGER, ethnicity_concept_id INTEGER);"
             "CREATE TABLE observation_period(observation_period_id INTEGER, person_id INTEGER,"
             " observation_period_start_date TEXT, observation_period_end_date TEXT);"
             "CREATE TABLE drug_exposure(drug_exposure_id INTEGER, person_id INTEGER,"
             " drug_concept_id INTEGER, drug_exposure_start_date TEXT);"
             "CREATE TABLE condition_occurrence(condition_occurrence_id INTEGER, person_id INTEGER,"
             " condition_concept_id INTEGER, condition_start_date TEXT);"
             "CREATE TABLE concept(concept_id INTEGER PRIMARY KEY, concept_name TEXT);"
             "CREATE TABLE concept_ancestor(ancestor_concept_id INTEGER,"
             " descendant_concept_id INTEGER, min_levels_of_separation INTEGER,"
             " max_levels_of_separation INTEGER);"
             "CREATE TABLE cdm_source(cdm_source_name TEXT, cdm_version TEXT);"
             "INSERT INTO cdm_source VALUES('t','v5.4');"
             "INSERT INTO concept VALUES(1001,'drug'),(1002,'drug child'),(2001,'cond');"
             "INSERT INTO concept_ancestor VALUES(1001,1001,0,0),(1001,1002,1,1),(2001,2001,0,0);"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300)"
             " INSERT INTO person SELECT i, CASE i%2 WHEN 0 THEN 8532 ELSE 8507 END,"
             " 1930 + i%70, 0, 0 FROM n;"
             "INSERT INTO observation_period SELECT person_id, person_id, '2000-01-01',"
             " '2020-12-31' FROM person;"
             "INSERT INTO drug_exposure SELECT person_id, person_id,"
             " CASE person_id%3 WHEN 0 THEN 1002 ELSE 1001 END, '2010-05-01' FROM person"
             " WHERE person_id % 4 != 0;"
             "INSERT INTO condition_occurrence SELECT person_id, person_id, 2001, '2012-01-01'"
             " FROM person WHERE person_id % 5 = 0;");
    sqlite3_close(db);

    state *s = NULL;
    char err[256];
    if (state_open(cfg.state_dir, &s, err, sizeof err) != 0)
        fail_msg("state_open: %s", err);
    add_project(s, "demo", RELEASE_AUTO);
    add_project(s, "rev", RELEASE_REVIEW);
    state_close(s);

    cfg_ref.cfg = cfg;
    cfg_ref.refs = 1;
    memset(&the_agent, 0, sizeof the_agent);
    the_agent.cfg = &cfg_ref;
    /* the faults make the agent log errors on purpose: keep the output short */
    log_set_level((enum sdf_log_level)(SDF_LOG_ERROR - 1));
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- helpers ---------------------------------------------------------------------- */

static const char *count_json(const char *project)
{
    static char buf[512];
    snprintf(buf, sizeof buf,
             "{\"kind\":\"count\",\"project\":\"%s\",\"dataset\":\"omop\","
             "\"cohort\":{\"all\":[{\"domain\":\"drug\",\"concepts\":[1001],"
             "\"descendants\":true},{\"domain\":\"condition\",\"concepts\":[2001]}]},"
             "\"by\":[\"sex\"]}",
             project);
    return buf;
}

static Sdefed__QuerySpec *parse(const char *json)
{
    Sdefed__QuerySpec *s = NULL;
    char err[256];
    if (spec_parse_json(json, strlen(json), &s, err, sizeof err) != 0)
        fail_msg("spec: %s", err);
    return s;
}

static uint8_t *pack(const Sdefed__QueryResult *r, size_t *len)
{
    *len = sdefed__query_result__get_packed_size(r);
    uint8_t *b = malloc(*len ? *len : 1);
    assert_non_null(b);
    sdefed__query_result__pack(r, b);
    return b;
}

/* Whether r, under query id "q", packs to exactly base (packed the same way). */
static bool same_bytes(Sdefed__QueryResult *r, const uint8_t *base, size_t base_len)
{
    size_t len;
    char *qid = r->query_id;
    r->query_id = (char *)"q";
    double spent = r->policy ? r->policy->dp_spent : 0;   /* grows with every query */
    if (r->policy)
        r->policy->dp_spent = 0;
    uint8_t *b = pack(r, &len);
    r->query_id = qid;
    if (r->policy)
        r->policy->dp_spent = spent;
    bool same = len == base_len && memcmp(b, base, len) == 0;
    free(b);
    return same;
}

/* A result that carries nothing: not ok, a generic reason, no cells, no catalog. */
static void assert_empty_failure(const Sdefed__QueryResult *r, const char *what)
{
    if (r->status == SDEFED__SITE_STATUS__SITE_OK || r->status == SDEFED__SITE_STATUS__SITE_HELD)
        fail_msg("%s: unexpected status %d", what, (int)r->status);
    assert_non_null(r->reason);
    assert_true(r->reason[0] != '\0');
    if (r->n_cells != 0)
        fail_msg("%s: a failed result carries %zu cells", what, r->n_cells);
    assert_null(r->catalog);
}

/* ---- 1. query_run over a failing dataset ---------------------------------------------- */

static Sdefed__QueryResult *run_plain(Sdefed__QuerySpec *spec, const char *qid)
{
    Sdefed__QueryRequest req = SDEFED__QUERY_REQUEST__INIT;
    req.query_id = (char *)qid;
    req.project_id = (char *)"demo";
    req.requester = (char *)"analyst";
    req.spec = spec;
    return query_run(&cfg, &req, NULL);
}

/* For N = 1, 2, ...: fail the Nth matching call of kind k (burst calls), until
 * a run never reaches call N. Returns how many runs hit the fault. Dataset
 * connections are pooled (db_sqlite.c): `warm` runs each faulted query on a
 * pooled connection with its cached statements (a clean query first puts
 * one in the pool), otherwise the pool is drained so the query opens the
 * file afresh. */
static long torture_dataset(fault_kind k, long burst, bool warm, Sdefed__QuerySpec *spec,
                            const uint8_t *base, size_t base_len)
{
    long n, hit = 0;
    for (n = 1; n < 5000; n++) {
        db_sqlite_pool_drain();
        if (warm) {
            Sdefed__QueryResult *w = run_plain(spec, "q-warm");
            assert_non_null(w);
            if (w->status != SDEFED__SITE_STATUS__SITE_OK || !same_bytes(w, base, base_len))
                fail_msg("dataset %s: a clean query after a faulted one (call %ld) is not "
                         "the baseline", fault_name[k], n - 1);
            query_result_free(w);
        }
        fault_arm(k, "omop.sqlite", n, burst);
        Sdefed__QueryResult *r = run_plain(spec, "q-fault");
        long fired = F.fired;
        fault_disarm();
        assert_non_null(r);   /* NULL means out of memory only */
        if (r->status == SDEFED__SITE_STATUS__SITE_OK) {
            if (!same_bytes(r, base, base_len))
                fail_msg("dataset %s fault at call %ld: ok with a different answer",
                         fault_name[k], n);
        } else {
            char what[96];
            snprintf(what, sizeof what, "dataset %s fault at call %ld", fault_name[k], n);
            assert_empty_failure(r, what);
            assert_true(r->status == SDEFED__SITE_STATUS__SITE_ERROR ||
                        r->status == SDEFED__SITE_STATUS__SITE_TIMEOUT);
            /* generic: no SQLite message, no path */
            assert_null(strstr(r->reason, "omop"));
            assert_null(strstr(r->reason, "disk"));
            assert_null(strstr(r->reason, tmpdir));
            if (fired == 0)
                fail_msg("dataset %s: failed with no fault injected (call %ld)",
                         fault_name[k], n);
        }
        query_result_free(r);
        if (fired == 0)
            break;
        hit++;
    }
    assert_true(n < 5000);
    return hit;
}

static void dataset_faults_fail_cleanly(void **st)
{
    (void)st;
    Sdefed__QuerySpec *spec = parse(count_json("demo"));
    Sdefed__QueryResult *b = run_plain(spec, "q-fault");
    assert_non_null(b);
    assert_int_equal(b->status, SDEFED__SITE_STATUS__SITE_OK);
    assert_true(b->n_cells > 0);
    b->query_id[0] = 'q';
    b->query_id[1] = '\0';
    size_t base_len;
    uint8_t *base = pack(b, &base_len);
    query_result_free(b);

    static const struct {
        fault_kind k;
        long burst;
    } plan[] = {
        { FAULT_OPEN, 1 },       { FAULT_OPEN, LONG_MAX },  { FAULT_READ, 1 },
        { FAULT_READ, LONG_MAX }, { FAULT_BUSY, 1 },         { FAULT_BUSY, 3 },
    };
    for (int warm = 0; warm <= 1; warm++) {
        for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
            long hit = torture_dataset(plan[i].k, plan[i].burst, warm, spec, base, base_len);
            /* the fault was really reached (a warm connection opens nothing) */
            if ((plan[i].k != FAULT_BUSY || plan[i].burst == 1) &&
                !(warm && plan[i].k == FAULT_OPEN))
                assert_true(hit > 0);
            print_message("dataset %s x%ld (%s connection): %ld faulted runs\n",
                          fault_name[plan[i].k], plan[i].burst == LONG_MAX ? -1 : plan[i].burst,
                          warm ? "pooled" : "new", hit);
        }
    }
    /* after every fault, a clean query still gets the baseline */
    Sdefed__QueryResult *after = run_plain(spec, "q-after");
    assert_non_null(after);
    assert_int_equal(after->status, SDEFED__SITE_STATUS__SITE_OK);
    assert_true(same_bytes(after, base, base_len));
    query_result_free(after);
    db_sqlite_pool_drain();
    free(base);
    sdefed__query_spec__free_unpacked(spec, NULL);
}

/* ---- 2. governance state and disclosure ledger ------------------------------------------ */

typedef struct outcome {
    long released;   /* SITE_OK results sent */
    long held;
    long failed;
} outcome;

/* What the daemon does for one request (agent_jobs.c): admission, the query,
 * the release decision; returns the result that would be sent (caller frees).
 * The request spec is parsed fresh each time (gov_admit may tighten it). */
static Sdefed__QueryResult *daemon_process(const char *project, const char *qid)
{
    Sdefed__QueryRequest req = SDEFED__QUERY_REQUEST__INIT;
    req.query_id = (char *)qid;
    req.project_id = (char *)project;
    req.requester = (char *)"analyst";
    req.spec = parse(count_json(project));
    Sdefed__QueryResult *sent = NULL;

    gov_ticket *ticket = NULL;
    char why[256] = "";
    if (gov_admit(&the_agent, &req, &ticket, why, sizeof why) != 0) {
        sent = calloc(1, sizeof *sent);
        assert_non_null(sent);
        sdefed__query_result__init(sent);
        sent->query_id = strdup(qid);
        sent->status = SDEFED__SITE_STATUS__SITE_REFUSED;
        sent->reason = strdup(why);
        assert_non_null(sent->query_id);
        assert_non_null(sent->reason);
    } else {
        Sdefed__QueryResult *res = query_run(&cfg, &req, NULL);
        gov_finish(&the_agent, ticket, &req, res);
        assert_non_null(res);
        sent = res;
    }
    sdefed__query_spec__free_unpacked(req.spec, NULL);
    return sent;
}

static void db_integrity(const char *file)
{
    char path[sizeof cfg.state_dir + 64];
    snprintf(path, sizeof path, "%s/%s", cfg.state_dir, file);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const char *v = (const char *)sqlite3_column_text(st, 0);
    if (!v || strcmp(v, "ok") != 0)
        fail_msg("%s integrity_check: %s", file, v ? v : "(null)");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Count rows of sql (one ? = text1, one more ? = text2 when not NULL). */
static long count_rows(state *s, const char *sql, const char *a, const char *b)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(state_db(s), sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
    if (b)
        sqlite3_bind_text(st, 2, b, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long n = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* After one faulted request (faults off): both databases are sound, the
 * audit chain verifies, and what was sent is accounted for. */
static void check_after(const char *qid, const Sdefed__QueryResult *sent, const char *project)
{
    db_integrity(STATE_FILE);
    db_integrity(DISC_LEDGER_FILE);
    state *s = NULL;
    char err[256];
    if (state_open(cfg.state_dir, &s, err, sizeof err) != 0)
        fail_msg("state_open after fault: %s", err);
    audit_report rep;
    assert_int_equal(audit_verify(s, 0, NULL, &rep), 0);
    if (!rep.ok)
        fail_msg("audit log broken after fault (query %s): row %lld: %s", qid,
                 (long long)rep.bad_seq, rep.problem);
    if (sent->status == SDEFED__SITE_STATUS__SITE_OK) {
        /* released: the audit log holds exactly this release */
        size_t len;
        uint8_t *b = pack(sent, &len);
        char digest[AUDIT_HASH_HEX + 1];
        audit_sha256_hex(b, len, digest);
        free(b);
        long n = count_rows(s,
                            "SELECT count(*) FROM audit WHERE query_id = ?1 AND "
                            "event = 'answered' AND release_sha256 = ?2",
                            qid, digest);
        if (n != 1)
            fail_msg("query %s released without its audit record", qid);
    } else if (sent->status == SDEFED__SITE_STATUS__SITE_HELD) {
        assert_string_equal(project, "rev");
        assert_int_equal(sent->n_cells, 0);
        long n = count_rows(s, "SELECT count(*) FROM held WHERE query_id = ?1", qid, NULL);
        if (n != 1)
            fail_msg("query %s reported held but is not in the review queue", qid);
        n = count_rows(s,
                       "SELECT count(*) FROM audit WHERE query_id = ?1 AND event = 'held'",
                       qid, NULL);
        assert_int_equal(n, 1);
    } else {
        /* nothing released: no answered record for it either */
        long n = count_rows(s,
                            "SELECT count(*) FROM audit WHERE query_id = ?1 AND "
                            "event = 'answered'",
                            qid, NULL);
        if (n != 0)
            fail_msg("query %s audited as answered but an error was sent", qid);
    }
    state_close(s);
}

static double dp_spent(const char *project)
{
    disc_ledger *l = NULL;
    assert_int_equal(disc_ledger_open(cfg.state_dir, &l), 0);
    double spent = 0;
    assert_int_equal(disc_ledger_dp_spent(l, project, &spent), 0);
    disc_ledger_close(l);
    return spent;
}

/* For N = 1, 2, ...: fail the Nth matching call of kind k on `file` while the
 * daemon processes one request for project; check every outcome. */
static void torture_state(fault_kind k, long burst, const char *file, const char *project,
                          const uint8_t *base, size_t base_len, outcome *o)
{
    static long seq;
    long n, hit = 0;
    for (n = 1; n < 5000; n++) {
        char qid[64];
        snprintf(qid, sizeof qid, "q-%ld", ++seq);
        fault_arm(k, file, n, burst);
        Sdefed__QueryResult *sent = daemon_process(project, qid);
        long fired = F.fired;
        fault_disarm();
        char what[128];
        snprintf(what, sizeof what, "%s %s fault at call %ld (%s)", file, fault_name[k], n,
                 project);
        if (sent->status == SDEFED__SITE_STATUS__SITE_OK) {
            /* DP noise is keyed by the query, so a repeat gives the same cells */
            if (base && !same_bytes(sent, base, base_len))
                fail_msg("%s: ok with a different answer", what);
            o->released++;
        } else if (sent->status == SDEFED__SITE_STATUS__SITE_HELD) {
            o->held++;
        } else {
            assert_empty_failure(sent, what);
            if (fired == 0)
                fail_msg("%s: failed with no fault injected: %s", what, sent->reason);
            o->failed++;
        }
        check_after(qid, sent, project);
        query_result_free(sent);
        if (fired == 0)
            break;
        hit++;
    }
    assert_true(n < 5000);
    print_message("%s %s x%ld (%s): %ld faulted runs\n", file, fault_name[k],
                  burst == LONG_MAX ? -1 : burst, project, hit);
}

static const struct {
    fault_kind k;
    long burst;
} state_plan[] = {
    { FAULT_WRITE, 1 }, { FAULT_WRITE, LONG_MAX }, { FAULT_SYNC, 1 },
    { FAULT_READ, 1 },  { FAULT_BUSY, 1 },         { FAULT_BUSY, 4 },
};

static void run_state_plan(const char *project, const uint8_t *base, size_t base_len,
                           outcome *o)
{
    static const char *files[] = { STATE_FILE, DISC_LEDGER_FILE };
    for (size_t f = 0; f < 2; f++)
        for (size_t i = 0; i < sizeof state_plan / sizeof state_plan[0]; i++)
            torture_state(state_plan[i].k, state_plan[i].burst, files[f], project, base,
                          base_len, o);
}

static void state_and_ledger_faults_release_nothing(void **st)
{
    (void)st;
    /* Baseline through the same path. */
    Sdefed__QueryResult *b = daemon_process("demo", "q-base");
    assert_int_equal(b->status, SDEFED__SITE_STATUS__SITE_OK);
    assert_true(b->n_cells > 0);
    check_after("q-base", b, "demo");
    size_t base_len;
    char *qid = b->query_id;
    b->query_id = (char *)"q";
    if (b->policy)
        b->policy->dp_spent = 0;
    uint8_t *base = pack(b, &base_len);
    b->query_id = qid;
    query_result_free(b);

    outcome o = { 0 };
    run_state_plan("demo", base, base_len, &o);
    assert_true(o.failed > 0);     /* the faults did bite */
    assert_true(o.released > 0);
    /* The review path: results are held (stored) or not released at all. */
    outcome r = { 0 };
    run_state_plan("rev", NULL, 0, &r);
    assert_int_equal(r.released, 0);
    assert_true(r.held > 0);
    assert_true(r.failed > 0);
    free(base);
}

static void dp_budget_never_under_counts(void **st)
{
    (void)st;
    /* Differential privacy on: every release must have been paid for. */
    cfg.policy.dp_epsilon = 0.01;
    cfg.policy.dp_budget = 1000.0;
    cfg_ref.cfg = cfg;
    double before = dp_spent("demo");
    Sdefed__QueryResult *b = daemon_process("demo", "q-dp-base");
    assert_int_equal(b->status, SDEFED__SITE_STATUS__SITE_OK);
    size_t base_len;
    char *qid = b->query_id;
    b->query_id = (char *)"q";
    if (b->policy)
        b->policy->dp_spent = 0;
    uint8_t *base = pack(b, &base_len);
    b->query_id = qid;
    query_result_free(b);

    outcome o = { 0 };
    static const char *files[] = { DISC_LEDGER_FILE, STATE_FILE };
    for (size_t f = 0; f < 2; f++)
        for (size_t i = 0; i < sizeof state_plan / sizeof state_plan[0]; i++) {
            torture_state(state_plan[i].k, state_plan[i].burst, files[f], "demo", base,
                          base_len, &o);
            double spent = dp_spent("demo") - before;
            double paid_for = (double)(o.released + 1) * cfg.policy.dp_epsilon;
            if (spent + 1e-9 < paid_for)
                fail_msg("DP budget under-counted: %.4f spent, %.4f released", spent,
                         paid_for);
        }
    assert_true(o.failed > 0);
    free(base);
    cfg.policy.dp_epsilon = 0;
    cfg.policy.dp_budget = 0;
    cfg_ref.cfg = cfg;
}

static long audit_events(const char *qid, const char *event)
{
    state *s = NULL;
    char err[256];
    if (state_open(cfg.state_dir, &s, err, sizeof err) != 0)
        fail_msg("state_open: %s", err);
    long n = count_rows(s, "SELECT count(*) FROM audit WHERE query_id = ?1 AND event = ?2",
                        qid, event);
    audit_report rep;
    assert_int_equal(audit_verify(s, 0, NULL, &rep), 0);
    if (!rep.ok)
        fail_msg("audit log broken: row %lld: %s", (long long)rep.bad_seq, rep.problem);
    state_close(s);
    return n;
}

/* A held result the custodian approved is sent by the review-queue poller.
 * With each state.db write failing in turn, an approved result may only
 * leave once its "released" audit entry is committed; and it is not lost:
 * it goes out on a later poll. (Regression: the poller sent first and
 * audited after, so a failed append released data with no record.) */
static void approved_release_is_audited_first(void **st)
{
    (void)st;
    int dummy_link;
    the_agent.state = LINK_READY;
    the_agent.link = (conn *)&dummy_link;   /* never dereferenced: the send is faked */
    static const fault_kind kinds[] = { FAULT_WRITE, FAULT_SYNC, FAULT_BUSY };
    long bitten = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        for (long n = 1; n < 500; n++) {
            char qid[64];
            snprintf(qid, sizeof qid, "q-appr-%zu-%ld", k, n);
            Sdefed__QueryResult *held = daemon_process("rev", qid);
            assert_int_equal(held->status, SDEFED__SITE_STATUS__SITE_HELD);
            query_result_free(held);
            state *s = NULL;
            char err[256];
            assert_int_equal(state_open(cfg.state_dir, &s, err, sizeof err), 0);
            held_item h;
            assert_int_equal(review_get(s, qid, &h), 0);
            if (review_decide(s, h.id, true, "custodian", "fine", 0, err, sizeof err) != 0)
                fail_msg("approve: %s", err);
            held_item_clear(&h);
            state_close(s);

            n_link_sent = 0;
            fault_arm(kinds[k], STATE_FILE, n, kinds[k] == FAULT_BUSY ? 1 : LONG_MAX);
            (void)gov_daemon_poll(&the_agent);
            long fired = F.fired;
            fault_disarm();
            for (size_t i = 0; i < n_link_sent; i++)
                if (link_sent[i].status == SDEFED__SITE_STATUS__SITE_OK &&
                    audit_events(link_sent[i].query_id, "released") < 1)
                    fail_msg("%s fault at call %ld: approved result %s sent with no "
                             "'released' audit entry", fault_name[kinds[k]], n,
                             link_sent[i].query_id);
            bool out = n_link_sent == 1 && strcmp(link_sent[0].query_id, qid) == 0;
            if (!out) {
                /* not sent under the fault: the next poll sends it */
                assert_int_equal(n_link_sent, 0);
                n_link_sent = 0;
                assert_int_equal(gov_daemon_poll(&the_agent), 1);
                assert_int_equal(n_link_sent, 1);
                assert_string_equal(link_sent[0].query_id, qid);
                bitten++;
            }
            assert_int_equal(link_sent[0].status, SDEFED__SITE_STATUS__SITE_OK);
            assert_true(link_sent[0].n_cells > 0);
            assert_int_equal(audit_events(qid, "released"), 1);
            n_link_sent = 0;
            assert_int_equal(gov_daemon_poll(&the_agent), 0);   /* sent exactly once */
            if (fired == 0)
                break;
        }
    }
    assert_true(bitten > 0);

    /* The link "up" but the send failing: recorded, then sent again later. */
    char qid[] = "q-appr-linkfail";
    Sdefed__QueryResult *held = daemon_process("rev", qid);
    assert_int_equal(held->status, SDEFED__SITE_STATUS__SITE_HELD);
    query_result_free(held);
    state *s = NULL;
    char err[256];
    assert_int_equal(state_open(cfg.state_dir, &s, err, sizeof err), 0);
    held_item h;
    assert_int_equal(review_get(s, qid, &h), 0);
    assert_int_equal(review_decide(s, h.id, true, "custodian", "fine", 0, err, sizeof err), 0);
    held_item_clear(&h);
    state_close(s);
    link_fails = true;
    n_link_sent = 0;
    assert_int_equal(gov_daemon_poll(&the_agent), 0);
    link_fails = false;
    assert_int_equal(n_link_sent, 0);
    assert_int_equal(gov_daemon_poll(&the_agent), 1);
    assert_int_equal(n_link_sent, 1);
    assert_string_equal(link_sent[0].query_id, qid);
    assert_true(audit_events(qid, "released") >= 1);

    the_agent.state = LINK_IDLE;
    the_agent.link = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dataset_faults_fail_cleanly),
        cmocka_unit_test(state_and_ledger_faults_release_nothing),
        cmocka_unit_test(dp_budget_never_under_counts),
        cmocka_unit_test(approved_release_is_audited_first),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
