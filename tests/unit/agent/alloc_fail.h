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
#include <stdlib.h>

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

#endif
