/* tests/unit/agent/test_ledger.c — the disclosure engine's durable memory
 * (agent/disclosure/ledger.c): person-set encoding and symmetric
 * differences, repeat limits, differencing refusals, the DP budget ledger
 * (never lets a spend go unrecorded), and the site secret file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "disclosure/ledger.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sdefed-ledger-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_personset(void **state)
{
    (void)state;
    int64_t a[1000], b[1000];
    for (int i = 0; i < 1000; i++)
        a[i] = b[i] = (int64_t)i * 7 + 3;
    unsigned char *enc;
    size_t len;
    assert_int_equal(disc_personset_encode(a, 1000, &enc, &len), 0);
    assert_true(len <= 1001);   /* one byte per small delta */
    assert_int_equal(disc_personset_symdiff(b, 1000, enc, len, 10), 0);
    assert_int_equal(disc_personset_symdiff(b, 999, enc, len, 10), 1);      /* one removed */
    assert_int_equal(disc_personset_symdiff(b + 1, 999, enc, len, 10), 1);
    b[500] = b[500] + 1;                                                    /* one swapped */
    assert_int_equal(disc_personset_symdiff(b, 1000, enc, len, 10), 2);
    assert_int_equal(disc_personset_symdiff(b, 0, enc, len, 10), 10);       /* capped */
    assert_int_equal(disc_personset_symdiff(b, 0, enc, 0, 10), 0);
    /* corrupt encodings */
    unsigned char bad[2] = { 0x80, 0x80 };
    assert_true(disc_personset_symdiff(a, 3, bad, 2, 10) < 0);
    unsigned char zero[1] = { 0 };
    assert_true(disc_personset_symdiff(a, 3, zero, 1, 10) < 0);
    free(enc);
    int64_t unsorted[2] = { 5, 4 };
    assert_int_equal(disc_personset_encode(unsorted, 2, &enc, &len), SDF_EINVAL);
    int64_t big[2] = { 1, INT64_MAX };
    assert_int_equal(disc_personset_encode(big, 2, &enc, &len), 0);
    assert_int_equal(disc_personset_symdiff(big, 2, enc, len, 10), 0);
    free(enc);
}

static void test_repeat(void **state)
{
    (void)state;
    disc_ledger *l;
    assert_int_equal(disc_ledger_open(dir, &l), 0);
    unsigned char h1[32], h2[32];
    memset(h1, 1, 32);
    memset(h2, 2, 32);
    bool refused;
    for (int i = 0; i < 7; i++) {
        assert_int_equal(disc_ledger_repeat(l, "alice", h1, 1000 + i, 30 * 86400, 7, &refused), 0);
        assert_false(refused);
    }
    assert_int_equal(disc_ledger_repeat(l, "alice", h1, 1010, 30 * 86400, 7, &refused), 0);
    assert_true(refused);
    /* refusals are not recorded, another query or requester is unaffected */
    assert_int_equal(disc_ledger_repeat(l, "alice", h2, 1010, 30 * 86400, 7, &refused), 0);
    assert_false(refused);
    assert_int_equal(disc_ledger_repeat(l, "bob", h1, 1010, 30 * 86400, 7, &refused), 0);
    assert_false(refused);
    /* after the window, alice may ask again */
    assert_int_equal(disc_ledger_repeat(l, "alice", h1, 1006 + 30 * 86400, 30 * 86400, 7,
                                        &refused), 0);
    assert_false(refused);
    disc_ledger_close(l);
    /* it is durable: a new handle still refuses */
    assert_int_equal(disc_ledger_open(dir, &l), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(disc_ledger_repeat(l, "carol", h1, 5000, 100, 3, &refused), 0);
    assert_true(refused);
    disc_ledger_close(l);
    struct stat st;
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, DISC_LEDGER_FILE);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
}

static void test_differencing(void **state)
{
    (void)state;
    disc_ledger *l;
    assert_int_equal(disc_ledger_open(dir, &l), 0);
    int64_t all[200];
    for (int i = 0; i < 200; i++)
        all[i] = i + 1;
    bool refused;
    assert_int_equal(disc_ledger_cohort(l, "eve", "p1", all, 200, 10, 100, 3600, 4, &refused), 0);
    assert_false(refused);
    /* the same cohort again: fine (difference 0) */
    assert_int_equal(disc_ledger_cohort(l, "eve", "p1", all, 200, 10, 101, 3600, 4, &refused), 0);
    assert_false(refused);
    /* all but person 57: refused */
    int64_t minus[199];
    for (int i = 0, k = 0; i < 200; i++)
        if (all[i] != 57)
            minus[k++] = all[i];
    assert_int_equal(disc_ledger_cohort(l, "eve", "p1", minus, 199, 10, 102, 3600, 4, &refused), 0);
    assert_true(refused);
    /* another requester in the same project: refused too (project list) */
    assert_int_equal(disc_ledger_cohort(l, "mallory", "p1", minus, 199, 10, 102, 3600, 4,
                                        &refused), 0);
    assert_true(refused);
    /* another project and requester: allowed */
    assert_int_equal(disc_ledger_cohort(l, "trent", "p2", minus, 199, 10, 102, 3600, 4,
                                        &refused), 0);
    assert_false(refused);
    /* 10 persons removed (= min_cell): allowed */
    assert_int_equal(disc_ledger_cohort(l, "eve", "p1", all + 10, 190, 10, 103, 3600, 4,
                                        &refused), 0);
    assert_false(refused);
    /* expiry: after max_age the kept cohorts no longer count */
    assert_int_equal(disc_ledger_cohort(l, "eve", "p1", minus, 199, 10, 100 + 7200, 3600, 4,
                                        &refused), 0);
    assert_false(refused);
    /* bounded: at most keep (4) per owner */
    for (int i = 0; i < 10; i++)
        assert_int_equal(disc_ledger_cohort(l, "eve", "p1", all + 20 * (i % 5), 100, 10,
                                            8000 + i, 3600, 4, &refused), 0);
    disc_ledger_close(l);
}

static void test_dp(void **state)
{
    (void)state;
    disc_ledger *l;
    assert_int_equal(disc_ledger_open(dir, &l), 0);
    bool refused;
    double spent;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(disc_ledger_dp_spend(l, "proj", 0.25, 1.0, &spent, &refused), 0);
        assert_false(refused);
    }
    assert_true(spent > 0.999 && spent < 1.001);
    assert_int_equal(disc_ledger_dp_spend(l, "proj", 0.25, 1.0, &spent, &refused), 0);
    assert_true(refused);
    disc_ledger_close(l);
    /* durable across handles (a restart) */
    assert_int_equal(disc_ledger_open(dir, &l), 0);
    assert_int_equal(disc_ledger_dp_spent(l, "proj", &spent), 0);
    assert_true(spent > 0.999 && spent < 1.001);
    assert_int_equal(disc_ledger_dp_spent(l, "other", &spent), 0);
    assert_true(spent == 0.0);
    disc_ledger_close(l);
}

static void test_secret(void **state)
{
    (void)state;
    unsigned char a[32], b[32];
    assert_int_equal(disc_secret_load(dir, a), 0);
    assert_int_equal(disc_secret_load(dir, b), 0);
    assert_memory_equal(a, b, 32);
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, DISC_SECRET_FILE);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 32);
    /* a truncated secret is an error, never silently replaced */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("short", f);
    fclose(f);
    assert_int_equal(disc_secret_load(dir, b), SDF_EIO);
}

/* Worker threads answering their first queries at once all create the
 * secret together: every one must succeed and see the same bytes (a
 * shared temporary name once made all but one fail). */
#define RACERS 8
static unsigned char raced[RACERS][32];
static int raced_rc[RACERS];

static void *race_secret(void *arg)
{
    long i = (long)arg;
    raced_rc[i] = disc_secret_load(dir, raced[i]);
    return NULL;
}

static void test_secret_created_concurrently(void **state)
{
    (void)state;
    for (int round = 0; round < 20; round++) {
        char path[300];
        snprintf(path, sizeof path, "%s/%s", dir, DISC_SECRET_FILE);
        unlink(path);
        pthread_t t[RACERS];
        for (long i = 0; i < RACERS; i++)
            assert_int_equal(pthread_create(&t[i], NULL, race_secret, (void *)i), 0);
        for (int i = 0; i < RACERS; i++)
            pthread_join(t[i], NULL);
        for (int i = 0; i < RACERS; i++) {
            assert_int_equal(raced_rc[i], 0);
            assert_memory_equal(raced[i], raced[0], 32);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_personset),
        cmocka_unit_test_setup_teardown(test_repeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_differencing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_created_concurrently, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
