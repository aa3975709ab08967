/* tests/bench/differencing.c — measures what the differencing store
 * (agent/disclosure/ledger.c) costs: disk, memory and time per check, as
 * the number of kept cohorts and their sizes grow, against the count query
 * the check protects, measured in the same run on the same cohort size.
 *
 * For each (kept K, persons N) in the grid (K x N <= BENCH_DIFF_MAX, default
 * 1e8 person entries), in a child process of its own (so its peak RSS is
 * its own):
 *   - a disclosure.db holding K cohorts of exactly N persons each (so the
 *     size filter never skips one: the worst case for it), kept for one
 *     requester and one project as the agent keeps them (2K rows); every
 *     two differ in about N persons;
 *   - baseline: SELECT COUNT(DISTINCT person_id) over a table holding the
 *     cohort's N persons x 3 events among 6N rows (the count query), and
 *     the agent's person-list read (SELECT DISTINCT person_id ... ORDER BY),
 *     which differencing adds to every count;
 *   - check: disc_ledger_cohorts() with a new unrelated cohort of N persons
 *     (answered and recorded, the list trimmed to K), median of 5, on one
 *     open handle; next to it the repeat-control call on the same handle
 *     (one synchronous=FULL commit, which every query pays anyway); then
 *     the same after the kept cohorts' sketches are deleted, which
 *     forces every candidate to be decoded: the cost without the sketch
 *     prefilter, i.e. the worst case of kept cohorts that are all nearly
 *     the new one;
 *   - disk: the size of disclosure.db (+ -wal) after a checkpoint;
 *     memory: how far the process's peak RSS rose above its RSS before
 *     the checks (the peak is reset first through /proc/self/clear_refs).
 * Prints a table and writes JSON to argv[1] (if given). Not part of `make
 * check`; run by `make bench` (see tests/bench/README.md).
 */
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "disclosure/ledger.h"

#define REPS 5

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Cohort k: exactly n ids, ascending, id_j = 2j or 2j+1 by a hash of (k, j):
 * two cohorts differ in about n positions' worth of persons. */
static void cohort(int64_t *out, size_t n, uint64_t k)
{
    for (size_t j = 0; j < n; j++)
        out[j] = (int64_t)(2 * j + (mix(k * 0x100000001b3ULL + j) & 1));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* VmHWM or VmRSS of this process, in kB (-1 if unknown). */
static long vm_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0)
            kb = strtol(line + kl, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

/* Reset the peak RSS to the current RSS (Linux: clear_refs "5"). */
static void reset_hwm(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static long long file_size(const char *dir, const char *name)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 ? (long long)st.st_size : 0;
}

static int die(const char *what, sqlite3 *db)
{
    fprintf(stderr, "differencing bench: %s: %s\n", what, db ? sqlite3_errmsg(db) : "failed");
    return 1;
}

/* The baseline: the count query over the cohort, and the person-list read. */
static int baseline(const char *dir, size_t n, const int64_t *ids, double *t_count,
                    double *t_persons)
{
    char path[512];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    snprintf(path, sizeof path, "%s/omop.sqlite", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return die("open baseline", db);
    if (sqlite3_exec(db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                         "CREATE TABLE drug_exposure(person_id INTEGER, drug_concept_id INTEGER);",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO drug_exposure VALUES(?1, ?2)", -1, &st, NULL) !=
            SQLITE_OK)
        return die("baseline schema", db);
    for (size_t j = 0; j < n; j++)
        for (int e = 0; e < 6; e++) {   /* 3 events of the drug, 3 of another */
            sqlite3_bind_int64(st, 1, e < 3 ? ids[j] : (int64_t)(2 * n + j));
            sqlite3_bind_int64(st, 2, e < 3 ? 1 : 2);
            if (sqlite3_step(st) != SQLITE_DONE)
                return die("baseline insert", db);
            sqlite3_reset(st);
        }
    sqlite3_finalize(st);
    if (sqlite3_exec(db, "COMMIT; CREATE INDEX de_c ON drug_exposure(drug_concept_id);"
                         "CREATE INDEX de_p ON drug_exposure(person_id); ANALYZE;",
                     NULL, NULL, NULL) != SQLITE_OK)
        return die("baseline index", db);
    const char *sql[2] = {
        "SELECT COUNT(DISTINCT person_id) FROM drug_exposure WHERE drug_concept_id = 1",
        "SELECT DISTINCT person_id FROM drug_exposure WHERE drug_concept_id = 1 "
        "ORDER BY person_id",
    };
    for (int q = 0; q < 2; q++) {
        double t[REPS + 1];
        for (int r = 0; r <= REPS; r++) {   /* one warm-up */
            double t0 = now_s();
            if (sqlite3_prepare_v2(db, sql[q], -1, &st, NULL) != SQLITE_OK)
                return die("baseline query", db);
            int64_t rows = 0;
            while (sqlite3_step(st) == SQLITE_ROW)
                rows++;
            sqlite3_finalize(st);
            t[r] = now_s() - t0;
            if ((q == 1 && rows != (int64_t)n) || rows == 0)
                return die("baseline rows", NULL);
        }
        *(q == 0 ? t_count : t_persons) = median(t + 1, REPS);
    }
    sqlite3_close(db);
    return 0;
}

/* K cohorts of n persons, written straight into the ledger's tables (as
 * disc_ledger_cohorts writes them; inserting through it would run K checks). */
static int fill(const char *dir, size_t k, size_t n, int64_t *ids)
{
    disc_ledger *l;
    if (disc_ledger_open(dir, &l))   /* creates the schema */
        return die("ledger open", NULL);
    disc_ledger_close(l);
    char path[512];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL, *st2 = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, DISC_LEDGER_FILE);
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO cohorts(owner_kind, owner, at, n, persons) "
                               "VALUES(?1, ?2, ?3, ?4, ?5)", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO cohort_sketches(id, sketch) VALUES(?1, ?2)", -1,
                           &st2, NULL) != SQLITE_OK)
        return die("fill", db);
    unsigned char sk[DISC_SKETCH_BYTES];
    for (size_t c = 0; c < k; c++) {
        cohort(ids, n, c);
        unsigned char *enc;
        size_t len;
        if (disc_personset_encode(ids, n, &enc, &len))
            return die("encode", NULL);
        disc_personset_sketch(ids, n, sk);
        for (int kind = 1; kind <= 2; kind++) {
            sqlite3_bind_int(st, 1, kind);
            sqlite3_bind_text(st, 2, kind == 1 ? "analyst" : "project", -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, 1000000 + (int64_t)c);
            sqlite3_bind_int64(st, 4, (int64_t)n);
            sqlite3_bind_blob(st, 5, enc, (int)len, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                return die("fill insert", db);
            sqlite3_reset(st);
            sqlite3_bind_int64(st2, 1, sqlite3_last_insert_rowid(db));
            sqlite3_bind_blob(st2, 2, sk, DISC_SKETCH_BYTES, SQLITE_STATIC);
            if (sqlite3_step(st2) != SQLITE_DONE)
                return die("fill insert", db);
            sqlite3_reset(st2);
        }
        free(enc);
    }
    sqlite3_finalize(st);
    sqlite3_finalize(st2);
    if (sqlite3_exec(db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE);", NULL, NULL, NULL) !=
        SQLITE_OK)
        return die("fill commit", db);
    sqlite3_close(db);
    return 0;
}

static int clear_sketches(sqlite3 *db)
{
    if (sqlite3_exec(db, "DELETE FROM cohort_sketches", NULL, NULL, NULL) != SQLITE_OK)
        return die("clear sketches", db);
    return 0;
}

/* REPS checks of fresh cohorts on one open ledger handle (as the agent's
 * pooled handles are used); median seconds and the last check's counts.
 * Also the median of REPS repeat-control calls on the same handle: the
 * ledger commit every query pays anyway (synchronous=FULL). */
static int checks(const char *dir, size_t k, size_t n, int64_t *ids, uint64_t first,
                  bool no_sketch, double *t_med, double *t_repeat, disc_cohort_stats *last)
{
    disc_ledger *l = NULL;
    sqlite3 *side = NULL;
    double t[REPS + 1], tr[REPS + 1];
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, DISC_LEDGER_FILE);
    if (disc_ledger_open(dir, &l))
        return die("ledger open", NULL);
    if (no_sketch && sqlite3_open(path, &side) != SQLITE_OK) {
        disc_ledger_close(l);
        return die("open", side);
    }
    if (side)
        sqlite3_busy_timeout(side, 10000);
    int rc = 1;
    for (int r = 0; r <= REPS; r++) {   /* one warm-up */
        /* without sketches: also clear the ones the previous check wrote
         * (not timed), so every kept cohort has to be decoded */
        if (no_sketch && clear_sketches(side))
            goto out;
        cohort(ids, n, first + (uint64_t)r);
        const int64_t *sets[1] = { ids };
        size_t ns[1] = { n };
        bool refused;
        double t0 = now_s();
        int err = disc_ledger_cohorts(l, "analyst", "project", sets, ns, 1, 10,
                                      2000000 + (int64_t)first + r, 365LL * 86400 * 100,
                                      (int64_t)k, last, &refused);
        t[r] = now_s() - t0;
        if (err || refused) {
            die(refused ? "unexpected refusal" : "check", NULL);
            goto out;
        }
        unsigned char h[32] = { 0 };
        h[0] = (unsigned char)r;
        h[1] = (unsigned char)(first >> 24);
        t0 = now_s();
        err = disc_ledger_repeat(l, "analyst", h, 2000000 + (int64_t)first + r, 86400, 1000,
                                 &refused);
        tr[r] = now_s() - t0;
        if (err) {
            die("repeat", NULL);
            goto out;
        }
    }
    *t_med = median(t + 1, REPS);
    *t_repeat = median(tr + 1, REPS);
    rc = 0;
out:
    disc_ledger_close(l);
    sqlite3_close(side);
    return rc;
}

static int run_one(size_t k, size_t n, FILE *json, int first_row)
{
    char dir[] = "/tmp/sdefed-bench-diff-XXXXXX";
    if (!mkdtemp(dir))
        return die("mkdtemp", NULL);
    int64_t *ids = malloc(n * sizeof *ids);
    double t_count = 0, t_persons = 0, t_sk = 0, t_nosk = 0, t_rep = 0, t_rep2 = 0;
    disc_cohort_stats s_sk = { 0 }, s_nosk = { 0 };
    int rc = 1;
    if (!ids)
        goto out;
    cohort(ids, n, 999999999);
    if (baseline(dir, n, ids, &t_count, &t_persons) || fill(dir, k, n, ids))
        goto out;
    long long bytes = file_size(dir, DISC_LEDGER_FILE) + file_size(dir, "disclosure.db-wal");
    reset_hwm();
    long hwm0 = vm_kb("VmRSS:");
    if (checks(dir, k, n, ids, 1u << 30, false, &t_sk, &t_rep, &s_sk) ||
        checks(dir, k, n, ids, 1u << 31, true, &t_nosk, &t_rep2, &s_nosk))
        goto out;
    long hwm1 = vm_kb("VmHWM:");
    printf("%7zu %9zu %9.1f %6.2f %9.3f %9.3f %8.3f %9.3f %7.2f %9.3f %7.2f %7ld\n", k, n,
           (double)bytes / 1048576.0, (double)bytes / (2.0 * (double)k * (double)n),
           t_count * 1e3, t_persons * 1e3, t_rep * 1e3, t_sk * 1e3, t_sk / t_count,
           t_nosk * 1e3, t_nosk / t_count, hwm1 - hwm0);
    fflush(stdout);
    if (json)
        fprintf(json,
                "%s{\"kept\": %zu, \"persons\": %zu, \"db_bytes\": %lld, \"count_ms\": %.4f, "
                "\"person_list_ms\": %.4f, \"repeat_commit_ms\": %.4f, \"check_ms\": %.4f, "
                "\"check_decoded\": %" PRId64 ", \"check_candidates\": %" PRId64
                ", \"check_nosketch_ms\": %.4f, \"nosketch_decoded\": %" PRId64
                ", \"rss_growth_kb\": %ld}",
                first_row ? "" : ",\n", k, n, bytes, t_count * 1e3, t_persons * 1e3,
                t_rep * 1e3, t_sk * 1e3, s_sk.decoded, s_sk.candidates, t_nosk * 1e3,
                s_nosk.decoded, hwm1 - hwm0);
    rc = 0;
out:
    if (json)
        fflush(json);   /* the child leaves with _exit */
    free(ids);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "differencing bench: could not remove %s\n", dir);
    return rc;
}

int main(int argc, char **argv)
{
    const char *env = getenv("BENCH_DIFF_MAX");
    double max = env ? strtod(env, NULL) : 1e8;
    FILE *json = argc > 1 ? fopen(argv[1], "w") : NULL;
    if (argc > 1 && !json) {
        fprintf(stderr, "differencing bench: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    static const size_t ns[] = { 100, 10000, 100000, 1000000 };
    static const size_t ks[] = { 10, 100, 1000, 10000 };
    printf("differencing store: K cohorts of N persons kept (x2: requester and project)\n");
    printf("%7s %9s %9s %6s %9s %9s %8s %9s %7s %9s %7s %7s\n", "kept", "persons", "db MB",
           "B/pers", "count ms", "plist ms", "rep ms", "check ms", "/count", "nosk ms",
           "/count", "RSS+kB");
    if (json)
        fprintf(json, "{\"differencing\": [\n");
    int first = 1, failed = 0;
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
        for (size_t j = 0; j < sizeof ks / sizeof *ks; j++) {
            if ((double)ns[i] * (double)ks[j] > max)
                continue;
            fflush(stdout);
            if (json)
                fflush(json);
            pid_t pid = fork();
            if (pid == 0)
                _exit(run_one(ks[j], ns[i], json, first));
            int status = 0;
            if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
                WEXITSTATUS(status) != 0)
                failed = 1;
            first = 0;
        }
    if (json) {
        fprintf(json, "\n]}\n");
        fclose(json);
    }
    return failed;
}
