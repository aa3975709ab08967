/* tests/unit/agent/test_disc_alloc_fail.c — the differencing store under
 * allocation failure (agent/disclosure/ledger.c): with the Nth allocation
 * of open + check-and-record + close failing, for every N until a run no
 * longer reaches the failure, the call either succeeds with the right
 * answer or fails with an error; it never refuses wrongly, never leaves a
 * block behind, and never leaves a half-recorded cohort (the store still
 * refuses a one-person difference afterwards and answers the sets it
 * holds). Skipped under AddressSanitizer, which owns malloc.
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

#include "alloc_fail.h"
#include "disclosure/ledger.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sdefed-discalloc-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

#ifndef UNDER_ASAN
static int64_t a[300], b[300];

/* open + two-set check-and-record + close; 0, or an error code */
static int one_call(int64_t now, size_t nb, bool *refused)
{
    disc_ledger *l;
    int err = disc_ledger_open(dir, &l);
    if (err)
        return err;
    const int64_t *sets[2] = { a, b };
    size_t ns[2] = { 300, nb };
    err = disc_ledger_cohorts(l, "eve", "p", sets, ns, 2, 10, now, 1000000000, 64, NULL,
                              refused);
    disc_ledger_close(l);
    return err;
}

static void test_cohorts_under_allocation_failure(void **state)
{
    (void)state;
    (void)alloc_fail_torture;   /* the shared harness's query loop: not used here */
    for (int i = 0; i < 300; i++)
        a[i] = 3 * i + 1, b[i] = 3 * i + 2;
    bool refused = false;
    /* warm-up outside the countdown: SQLite's global state, the schema */
    assert_int_equal(one_call(1000, 300, &refused), 0);
    assert_false(refused);

    long n;
    int completed = 0, survived = 0;
    for (n = 0; n < 100000 && !completed; n++) {
        long before = atomic_load(&live);
        atomic_store(&failures, 0);
        atomic_store(&countdown, n);
        refused = true;
        int err = one_call(1001 + n, 300, &refused);
        atomic_store(&countdown, -1);
        if (atomic_load(&failures) == 0)
            completed = 1;
        if (err == 0)
            assert_false(refused);   /* the same sets again: never a refusal */
        else
            assert_true(err == SDF_ENOMEM || err == SDF_EDB || err == SDF_EIO);
        if (err)
            survived++;
        long after = atomic_load(&live);
        if (after != before)
            fail_msg("allocation %ld failed: %ld blocks leaked", n, after - before);
    }
    assert_true(completed);
    printf("differencing store survived %d allocation failures\n", survived);
    assert_true(survived > 10);
    /* the store is whole: one person less in the second set is refused ... */
    assert_int_equal(one_call(200000, 299, &refused), 0);
    assert_true(refused);
    /* ... and the sets it holds are still answered */
    assert_int_equal(one_call(200001, 300, &refused), 0);
    assert_false(refused);
    /* every kept cohort has its sketch (no half-recorded pair survived) */
    disc_ledger *l;
    assert_int_equal(disc_ledger_open(dir, &l), 0);
    disc_cohort_stats st;
    const int64_t *sets[1] = { a };
    size_t ns[1] = { 300 };
    assert_int_equal(disc_ledger_cohorts(l, "eve", "p", sets, ns, 1, 10, 200002, 1000000000, 64,
                                         &st, &refused), 0);
    assert_false(refused);
    /* a's own kept copies are the same set (compared by their encoding, not
     * decoded); b's are ruled out by their sketches */
    assert_true(st.candidates >= st.decoded + st.identical);
    assert_true(st.identical > 0);
    assert_int_equal(st.decoded, 0);
    disc_ledger_close(l);
}
#else
static void test_cohorts_under_allocation_failure(void **state)
{
    (void)state;
    skip();
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cohorts_under_allocation_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
