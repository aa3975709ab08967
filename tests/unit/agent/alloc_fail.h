/* tests/unit/agent/alloc_fail.h — make the Nth allocation fail.
 *
 * Included (once) by a test binary, it interposes malloc/calloc/realloc/
 * free (glibc lets an executable do that) with a countdown: set
 * `countdown` to N and the Nth allocation after that returns NULL
 * (`failures` counts how many did); `live` counts blocks allocated and not
 * freed, so a test can assert an error path frees everything. Under
 * AddressSanitizer, which owns malloc, nothing is interposed and
 * UNDER_ASAN is defined so the test can skip.
 */
#ifndef TEST_ALLOC_FAIL_H
#define TEST_ALLOC_FAIL_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#ifndef UNDER_ASAN
/* ---- the interposed allocator ---- */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static atomic_long countdown = -1;   /* < 0: never fail */
static atomic_long live;             /* blocks allocated and not freed */
static atomic_long failures;

static int should_fail(void)
{
    long c = atomic_load(&countdown);
    if (c < 0)
        return 0;
    if (atomic_fetch_sub(&countdown, 1) == 0) {
        atomic_fetch_add(&failures, 1);
        return 1;
    }
    return 0;
}

void *malloc(size_t n)
{
    if (should_fail())
        return NULL;
    void *p = __libc_malloc(n);
    if (p)
        atomic_fetch_add(&live, 1);
    return p;
}

void *calloc(size_t a, size_t b)
{
    if (should_fail())
        return NULL;
    void *p = __libc_calloc(a, b);
    if (p)
        atomic_fetch_add(&live, 1);
    return p;
}

void *realloc(void *old, size_t n)
{
    if (old && n == 0) {
        atomic_fetch_sub(&live, 1);
        return __libc_realloc(old, 0);
    }
    if (should_fail())
        return NULL;
    void *p = __libc_realloc(old, n);
    if (p && !old)
        atomic_fetch_add(&live, 1);
    return p;
}

void free(void *p)
{
    if (p)
        atomic_fetch_sub(&live, 1);
    __libc_free(p);
}
#endif

#ifndef UNDER_ASAN
#include "query.h"

/* The packed bytes of a result, allocated outside the countdown. */
static uint8_t *alloc_fail_pack(const Sdefed__QueryResult *r, size_t *len)
{
    *len = sdefed__query_result__get_packed_size(r);
    uint8_t *b = __libc_malloc(*len ? *len : 1);
    sdefed__query_result__pack(r, b);
    return b;
}

/* Run `run(spec)` with allocation N failing, for N = 0, 1, ... until a run
 * no longer reaches the failure. Each result must be absent (out of
 * memory), ok and byte-identical to `base`, or error/refused with a reason
 * and no data (`data_items` counts what a result carries); no block may be
 * left behind. Returns how many failures were survived. */
static long alloc_fail_torture(Sdefed__QueryResult *(*run)(Sdefed__QuerySpec *),
                               Sdefed__QuerySpec *spec, const uint8_t *base, size_t base_len,
                               size_t (*data_items)(const Sdefed__QueryResult *))
{
    long n;
    int completed = 0;
    for (n = 0; n < 100000 && !completed; n++) {
        long before = atomic_load(&live);
        atomic_store(&failures, 0);
        atomic_store(&countdown, n);
        Sdefed__QueryResult *r = run(spec);
        atomic_store(&countdown, -1);
        if (atomic_load(&failures) == 0)
            completed = 1;             /* ran to the end without hitting the failure */
        if (r) {
            if (r->status == SDEFED__SITE_STATUS__SITE_OK) {
                size_t len;
                uint8_t *bytes = alloc_fail_pack(r, &len);
                if (len != base_len || memcmp(bytes, base, len) != 0)
                    fail_msg("allocation %ld failed but the query still said ok with a "
                             "different answer", n);
                __libc_free(bytes);
            } else {
                assert_true(r->status == SDEFED__SITE_STATUS__SITE_ERROR ||
                            r->status == SDEFED__SITE_STATUS__SITE_REFUSED);
                assert_non_null(r->reason);
                assert_true(r->reason[0] != '\0');
                assert_int_equal(data_items(r), 0);
            }
            query_result_free(r);
        }
        long after = atomic_load(&live);
        if (after != before)
            fail_msg("allocation %ld failed: %ld blocks leaked", n, after - before);
    }
    assert_true(completed);
    return n - 1;
}
#endif

#endif
