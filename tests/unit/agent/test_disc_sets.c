/* tests/unit/agent/test_disc_sets.c — differencing over several cohorts at
 * once (a surveil query's exposure and comparator arms) and the sketch
 * prefilter of the differencing store (agent/disclosure/ledger.c): the
 * sketch never rules out a cohort that is really close (property test on
 * random sets), a set close to another set of the same result or to any
 * kept set is refused with nothing recorded, and a disclosure.db made
 * before sketches existed gets their table and its old cohorts are still
 * checked (decoded).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "disclosure/guard.h"
#include "disclosure/ledger.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sdefed-discsets-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static uint64_t rng_state = 88172645463325252ULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ids 0..universe-1 kept with probability 1/2, ascending */
static size_t random_set(int64_t *out, int64_t universe)
{
    size_t n = 0;
    for (int64_t i = 0; i < universe; i++)
        if (rnd() & 1)
            out[n++] = i;
    return n;
}

/* the true symmetric difference of two ascending arrays */
static int64_t symdiff(const int64_t *a, size_t na, const int64_t *b, size_t nb)
{
    size_t i = 0, j = 0;
    int64_t d = 0;
    while (i < na || j < nb) {
        if (j >= nb || (i < na && a[i] < b[j]))
            d++, i++;
        else if (i >= na || b[j] < a[i])
            d++, j++;
        else
            i++, j++;
    }
    return d;
}

static void test_sketch_is_a_lower_bound(void **state)
{
    (void)state;
    static int64_t a[4000], b[4000];
    unsigned char sa[DISC_SKETCH_BYTES], sb[DISC_SKETCH_BYTES];
    for (int round = 0; round < 300; round++) {
        int64_t universe = 1 + (int64_t)(rnd() % 4000);
        size_t na = random_set(a, universe);
        /* b: a with a few changes (often), or an unrelated set */
        size_t nb;
        if (round % 3) {
            memcpy(b, a, na * sizeof *a);
            nb = na;
            int changes = (int)(rnd() % 12);
            for (int c = 0; c < changes && nb > 0; c++) {   /* drop one */
                size_t k = rnd() % nb;
                memmove(b + k, b + k + 1, (nb - k - 1) * sizeof *b);
                nb--;
            }
        } else {
            nb = random_set(b, universe);
        }
        disc_personset_sketch(a, na, sa);
        disc_personset_sketch(b, nb, sb);
        int64_t lb = disc_sketch_lower_bound(sa, sb), d = symdiff(a, na, b, nb);
        assert_true(lb <= d);
        assert_true(lb >= (int64_t)(na > nb ? na - nb : nb - na));
        if (d == 0)
            assert_int_equal(lb, 0);
    }
    /* unrelated sets of equal size are far apart in the sketch */
    for (int64_t i = 0; i < 4000; i++)
        a[i] = 2 * i, b[i] = 2 * i + 1;
    disc_personset_sketch(a, 4000, sa);
    disc_personset_sketch(b, 4000, sb);
    assert_true(disc_sketch_lower_bound(sa, sb) >= 10);
}

static void test_sets_of_one_result(void **state)
{
    (void)state;
    disc_ledger *l;
    assert_int_equal(disc_ledger_open(dir, &l), 0);
    int64_t exp_arm[100], cmp[100], cmp_plus1[101];
    for (int i = 0; i < 100; i++)
        exp_arm[i] = 1000 + i, cmp[i] = 5000 + 2 * i, cmp_plus1[i] = 5000 + 2 * i;
    cmp_plus1[100] = 9999;
    bool refused;
    disc_cohort_stats st;

    /* the two arms of one result 1 person apart: refused, nothing kept */
    const int64_t *pair[2] = { cmp, cmp_plus1 };
    size_t npair[2] = { 100, 101 };
    assert_int_equal(disc_ledger_cohorts(l, "eve", "p", pair, npair, 2, 10, 1000, 86400, 64,
                                         &st, &refused), 0);
    assert_true(refused);

    /* exposure + comparator answered and kept */
    const int64_t *q1[2] = { exp_arm, cmp };
    size_t n1[2] = { 100, 100 };
    assert_int_equal(disc_ledger_cohorts(l, "eve", "p", q1, n1, 2, 10, 1001, 86400, 64, &st,
                                         &refused), 0);
    assert_false(refused);   /* cmp_plus1 was not kept by the refused call */

    /* same exposure, comparator one person more: refused through the comparator */
    const int64_t *q2[2] = { exp_arm, cmp_plus1 };
    size_t n2[2] = { 100, 101 };
    assert_int_equal(disc_ledger_cohorts(l, "eve", "p", q2, n2, 2, 10, 1002, 86400, 64, &st,
                                         &refused), 0);
    assert_true(refused);
    assert_true(st.decoded >= 1);
    /* ... also for another requester of the same project */
    assert_int_equal(disc_ledger_cohorts(l, "mallory", "p", q2, n2, 2, 10, 1003, 86400, 64,
                                         NULL, &refused), 0);
    assert_true(refused);
    /* and as a single cohort */
    assert_int_equal(disc_ledger_cohort(l, "eve", "p", cmp_plus1, 101, 10, 1004, 86400, 64,
                                        &refused), 0);
    assert_true(refused);
    /* with min_cell 1 (the rule effectively off) it is answered */
    assert_int_equal(disc_ledger_cohorts(l, "eve", "p", q2, n2, 2, 1, 1005, 86400, 64, NULL,
                                         &refused), 0);
    assert_false(refused);

    /* too many sets */
    const int64_t *many[DISC_MAX_SETS + 1];
    size_t nmany[DISC_MAX_SETS + 1];
    for (int i = 0; i <= DISC_MAX_SETS; i++)
        many[i] = exp_arm, nmany[i] = 100;
    assert_int_equal(disc_ledger_cohorts(l, "eve", "p", many, nmany, DISC_MAX_SETS + 1, 10,
                                         1006, 86400, 64, NULL, &refused), SDF_EINVAL);
    disc_ledger_close(l);
}

static void test_sketch_skips_unrelated_cohorts(void **state)
{
    (void)state;
    disc_ledger *l;
    assert_int_equal(disc_ledger_open(dir, &l), 0);
    static int64_t s[2000];
    bool refused;
    disc_cohort_stats st;
    /* 20 unrelated cohorts of the same size */
    for (int k = 0; k < 20; k++) {
        for (int i = 0; i < 2000; i++)
            s[i] = (int64_t)i * 20 + k;
        assert_int_equal(disc_ledger_cohorts(l, "ann", "p", (const int64_t *const[]){ s },
                                             (size_t[]){ 2000 }, 1, 10, 100 + k, 86400, 64,
                                             &st, &refused), 0);
        assert_false(refused);
        assert_int_equal(st.candidates, 2 * k);   /* all the same size (kept for
                                                   * requester and project) ... */
        assert_int_equal(st.decoded, 0);      /* ... none decoded */
    }
    /* one person away from cohort 7: decoded and refused */
    for (int i = 0; i < 2000; i++)
        s[i] = (int64_t)i * 20 + 7;
    assert_int_equal(disc_ledger_cohorts(l, "ann", "p", (const int64_t *const[]){ s },
                                         (size_t[]){ 1999 }, 1, 10, 200, 86400, 64, &st,
                                         &refused), 0);
    assert_true(refused);
    assert_true(st.decoded >= 1);
    /* cohort 7 itself again: its two kept copies are recognised by their
     * encoding (difference 0), nothing is decoded, nothing refused */
    assert_int_equal(disc_ledger_cohorts(l, "ann", "p", (const int64_t *const[]){ s },
                                         (size_t[]){ 2000 }, 1, 10, 201, 86400, 64, &st,
                                         &refused), 0);
    assert_false(refused);
    assert_int_equal(st.identical, 2);
    assert_int_equal(st.decoded, 0);
    /* ... and the same set with one person swapped (difference 2) is refused */
    s[1999] = 7 + 20 * 5000;
    assert_int_equal(disc_ledger_cohorts(l, "ann", "p", (const int64_t *const[]){ s },
                                         (size_t[]){ 2000 }, 1, 10, 202, 86400, 64, &st,
                                         &refused), 0);
    assert_true(refused);
    disc_ledger_close(l);
}

static void test_old_schema_upgraded(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, DISC_LEDGER_FILE);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE cohorts(id INTEGER PRIMARY KEY, owner_kind INTEGER "
                                  "NOT NULL, owner TEXT NOT NULL, at INTEGER NOT NULL, n INTEGER "
                                  "NOT NULL, persons BLOB NOT NULL);"
                                  "CREATE INDEX cohorts_owner ON cohorts(owner_kind, owner, at);",
                                  NULL, NULL, NULL), SQLITE_OK);
    int64_t ids[50];
    for (int i = 0; i < 50; i++)
        ids[i] = 3 * i + 1;
    unsigned char *enc;
    size_t len;
    assert_int_equal(disc_personset_encode(ids, 50, &enc, &len), 0);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO cohorts(owner_kind, owner, at, n, "
                                            "persons) VALUES(1, 'old', 500, 50, ?1)",
                                        -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_blob(st, 1, enc, (int)len, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(enc);

    disc_ledger *l;
    assert_int_equal(disc_ledger_open(dir, &l), 0);
    bool refused;
    disc_cohort_stats cs;
    /* the old row has no sketch: it is decoded, and one person less is refused */
    assert_int_equal(disc_ledger_cohorts(l, "old", "p", (const int64_t *const[]){ ids },
                                         (size_t[]){ 49 }, 1, 10, 600, 86400, 64, &cs,
                                         &refused), 0);
    assert_true(refused);
    assert_int_equal(cs.decoded, 1);
    disc_ledger_close(l);
    /* reopening an upgraded file works */
    assert_int_equal(disc_ledger_open(dir, &l), 0);
    disc_ledger_close(l);
    /* the old index was replaced by the covering one */
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT group_concat(name) FROM (SELECT name FROM "
                                            "sqlite_master WHERE type = 'index' AND tbl_name = "
                                            "'cohorts' ORDER BY name)", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "cohorts_owner_n");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static int64_t count_rows(const char *sql)
{
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, DISC_LEDGER_FILE);
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* A re-asked cohort is kept once, its time refreshed: repeating one set
 * can no longer push an earlier cohort out of the `keep` newest (before,
 * asking B `keep` times forgot A, and A minus one person was then
 * answered), and the kept list (what every check reads) does not grow. */
static void test_reasked_cohort_kept_once(void **state)
{
    (void)state;
    disc_ledger *l;
    assert_int_equal(disc_ledger_open(dir, &l), 0);
    static int64_t a[300], b[300];
    for (int i = 0; i < 300; i++) {
        a[i] = i;
        b[i] = 100000 + i;
    }
    bool refused;
    disc_cohort_stats st;
    const int64_t *sa[1] = { a }, *sb[1] = { b };
    size_t na[1] = { 300 }, nb[1] = { 300 };
    assert_int_equal(disc_ledger_cohorts(l, "eve", "p", sa, na, 1, 10, 100, 86400, 4, &st,
                                         &refused), 0);
    assert_false(refused);
    for (int k = 0; k < 10; k++) {
        assert_int_equal(disc_ledger_cohorts(l, "eve", "p", sb, nb, 1, 10, 101 + k, 86400, 4,
                                             &st, &refused), 0);
        assert_false(refused);
        /* A's two copies (requester's and project's; same size, ruled out
         * by their sketch) and, once kept, B's two: the same set */
        assert_int_equal(st.candidates, k == 0 ? 2 : 4);
        assert_int_equal(st.identical, k == 0 ? 0 : 2);
    }
    disc_ledger_close(l);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM cohorts"), 4);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM cohort_sketches"), 4);
    assert_int_equal(count_rows("SELECT MAX(at) FROM cohorts"), 110);
    /* A is still kept: A minus one person is refused */
    assert_int_equal(disc_ledger_open(dir, &l), 0);
    assert_int_equal(disc_ledger_cohort(l, "eve", "p", a + 1, 299, 10, 120, 86400, 4, &refused),
                     0);
    assert_true(refused);
    /* a refreshed cohort ages from its last release: B, re-asked at 110,
     * is still checked at 110 + max_age - 1 (A, kept at 100, is gone) */
    assert_int_equal(disc_ledger_cohort(l, "eve", "p", b + 1, 299, 10, 110 + 3599, 3600, 4,
                                        &refused), 0);
    assert_true(refused);
    assert_int_equal(disc_ledger_cohort(l, "eve", "p", a + 1, 299, 10, 110 + 3599, 3600, 4,
                                        &refused), 0);
    assert_false(refused);
    disc_ledger_close(l);
}

static void test_trim_keeps_newest(void **state)
{
    (void)state;
    disc_ledger *l;
    assert_int_equal(disc_ledger_open(dir, &l), 0);
    static int64_t s[300];
    bool refused;
    /* 12 cohorts, several in the same second (ties on `at`), keep 5 */
    for (int k = 0; k < 12; k++) {
        for (int i = 0; i < 300; i++)
            s[i] = (int64_t)i * 40 + k;   /* unrelated sets */
        assert_int_equal(disc_ledger_cohort(l, "ann", "p", s, 300, 10, 100 + k / 3, 86400, 5,
                                            &refused), 0);
        assert_false(refused);
    }
    disc_ledger_close(l);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM cohorts WHERE owner_kind = 1"), 5);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM cohorts WHERE owner_kind = 2"), 5);
    /* the newest five (ids grow with insertion order) are the ones kept */
    assert_int_equal(count_rows("SELECT MIN(n2) FROM (SELECT id AS n2 FROM cohorts WHERE "
                                "owner_kind = 1)"),
                     count_rows("SELECT MAX(id) FROM cohorts") - 9);
    /* no sketch outlives its cohort, and every kept cohort has one */
    assert_int_equal(count_rows("SELECT COUNT(*) FROM cohort_sketches"), 10);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM cohort_sketches WHERE id NOT IN "
                                "(SELECT id FROM cohorts)"), 0);
    /* one person away from the newest kept cohort: refused; from a dropped one: not */
    assert_int_equal(disc_ledger_open(dir, &l), 0);
    for (int i = 0; i < 299; i++)
        s[i] = (int64_t)i * 40 + 11;
    assert_int_equal(disc_ledger_cohort(l, "ann", "p", s, 299, 10, 200, 86400, 5, &refused), 0);
    assert_true(refused);
    for (int i = 0; i < 299; i++)
        s[i] = (int64_t)i * 40 + 0;
    assert_int_equal(disc_ledger_cohort(l, "ann", "p", s, 299, 10, 201, 86400, 5, &refused), 0);
    assert_false(refused);
    /* expiry: everything older than max_age goes at the next record */
    for (int i = 0; i < 300; i++)
        s[i] = (int64_t)i * 40 + 39;
    assert_int_equal(disc_ledger_cohort(l, "ann", "p", s, 300, 10, 100000, 3600, 5, &refused),
                     0);
    disc_ledger_close(l);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM cohorts"), 2);
    assert_int_equal(count_rows("SELECT COUNT(*) FROM cohort_sketches"), 2);
}

/* The guard splits one person array into cohorts at DISC_COHORT_SEPARATOR
 * (how a surveil query hands over its exposure and comparator arms). */
static void test_guard_separator(void **state)
{
    (void)state;
    static agent_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s", dir);
    disc_policy_default(&cfg.policy);
    disc_policy pol = cfg.policy;
    pol.max_identical = 1000;
    Sdefed__QueryRequest req;
    Sdefed__QuerySpec spec;
    sdefed__query_request__init(&req);
    sdefed__query_spec__init(&spec);
    spec.kind = SDEFED__QUERY_KIND__KIND_SURVEIL;
    spec.project = "p";
    spec.dataset = "omop";
    req.spec = &spec;
    req.requester = "eve";
    static int64_t buf[400];
    size_t n = 0;
    for (int i = 1; i <= 50; i++)
        buf[n++] = i;                    /* exposure 1..50 */
    buf[n++] = DISC_COHORT_SEPARATOR;
    for (int i = 100; i < 150; i++)
        buf[n++] = i;                    /* comparator 100..149 */
    char reason[256] = "";
    disc_guard g;

    assert_int_equal(disc_guard_begin(&g, &cfg, &req, NULL, &pol, reason, sizeof reason), 0);
    assert_int_equal(disc_guard_cohort(&g, &pol, &req, buf, n, reason, sizeof reason), 0);
    disc_guard_end(&g);

    /* same exposure, comparator one person short: refused */
    assert_int_equal(disc_guard_begin(&g, &cfg, &req, NULL, &pol, reason, sizeof reason), 0);
    assert_int_equal(disc_guard_cohort(&g, &pol, &req, buf, n - 1, reason, sizeof reason),
                     SDF_EREFUSED);
    assert_true(strncmp(reason, "differencing", 12) == 0);
    assert_true(g.rules & DISC_RULE_DIFFERENCING);
    disc_guard_end(&g);

    /* the two arms of one query one person apart: refused */
    n = 0;
    for (int i = 200; i < 250; i++)
        buf[n++] = i;
    buf[n++] = DISC_COHORT_SEPARATOR;
    for (int i = 200; i < 251; i++)
        buf[n++] = i;
    assert_int_equal(disc_guard_begin(&g, &cfg, &req, NULL, &pol, reason, sizeof reason), 0);
    assert_int_equal(disc_guard_cohort(&g, &pol, &req, buf, n, reason, sizeof reason),
                     SDF_EREFUSED);
    disc_guard_end(&g);

    /* with differencing off it is answered */
    disc_policy off = pol;
    off.differencing = false;
    assert_int_equal(disc_guard_begin(&g, &cfg, &req, NULL, &off, reason, sizeof reason), 0);
    assert_int_equal(disc_guard_cohort(&g, &off, &req, buf, n, reason, sizeof reason), 0);
    disc_guard_end(&g);

    /* more cohorts than DISC_MAX_SETS: an error, not an answer */
    n = 0;
    for (int k = 0; k <= DISC_MAX_SETS; k++) {
        buf[n++] = 1000 + 100 * k;
        if (k < DISC_MAX_SETS)
            buf[n++] = DISC_COHORT_SEPARATOR;
    }
    assert_int_equal(disc_guard_begin(&g, &cfg, &req, NULL, &pol, reason, sizeof reason), 0);
    assert_int_equal(disc_guard_cohort(&g, &pol, &req, buf, n, reason, sizeof reason),
                     SDF_EINVAL);
    disc_guard_end(&g);
    disc_guard_pool_drain();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sketch_is_a_lower_bound),
        cmocka_unit_test_setup_teardown(test_sets_of_one_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sketch_skips_unrelated_cohorts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_schema_upgraded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_keeps_newest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reasked_cohort_kept_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_separator, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
