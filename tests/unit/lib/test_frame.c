/* tests/unit/lib/test_frame.c — the frame decoder/encoder (lib/frame.c).
 *
 * Checks the byte-stream contract (frames survive any split, many frames in
 * one chunk, empty payloads) and the security rule: a length prefix above
 * the cap is refused after its 4 bytes, before any allocation of its size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sdefed/frame.h"

/* Build a frame (header + payload) into out; returns its length. */
static size_t make_frame(uint8_t *out, const uint8_t *payload, size_t len, size_t cap)
{
    assert_int_equal(frame_header_write(out, len, cap), 0);
    if (len)
        memcpy(out + FRAME_HEADER_LEN, payload, len);
    return FRAME_HEADER_LEN + len;
}

static void test_header_encoding(void **state)
{
    (void)state;
    uint8_t hdr[4];
    assert_int_equal(frame_header_write(hdr, 0x01020304, (size_t)1 << 30), 0);
    assert_int_equal(hdr[0], 1);
    assert_int_equal(hdr[1], 2);
    assert_int_equal(hdr[2], 3);
    assert_int_equal(hdr[3], 4);
    assert_int_equal(frame_header_write(hdr, 100, 100), 0);
    assert_int_equal(frame_header_write(hdr, 101, 100), SDF_EFRAME_TOO_BIG);
    /* Lengths that do not fit in 32 bits are refused even with a huge cap. */
    assert_int_equal(frame_header_write(hdr, (size_t)UINT32_MAX + 1, SIZE_MAX), SDF_EFRAME_TOO_BIG);
}

static void test_round_trip(void **state)
{
    (void)state;
    const uint8_t msg[] = "hello, federation";
    uint8_t wire[64];
    size_t n = make_frame(wire, msg, sizeof msg, 1024);

    frame_decoder d;
    frame_decoder_init(&d, 1024);
    const uint8_t *p = NULL;
    size_t len = 0;
    assert_int_equal(frame_decoder_next(&d, &p, &len), 0);
    assert_int_equal(frame_decoder_feed(&d, wire, n), 0);
    assert_int_equal(frame_decoder_next(&d, &p, &len), 1);
    assert_int_equal(len, sizeof msg);
    assert_memory_equal(p, msg, sizeof msg);
    assert_int_equal(frame_decoder_next(&d, &p, &len), 0);
    assert_int_equal(frame_decoder_pending(&d), 0);
    frame_decoder_free(&d);
}

static void test_split_every_boundary(void **state)
{
    (void)state;
    uint8_t a[300], b[5];
    for (size_t i = 0; i < sizeof a; i++)
        a[i] = (uint8_t)(i * 7 + 1);
    memset(b, 0xee, sizeof b);
    uint8_t wire[400];
    size_t n = make_frame(wire, a, sizeof a, 4096);
    n += make_frame(wire + n, b, sizeof b, 4096);

    for (size_t cut = 0; cut <= n; cut++) {
        frame_decoder d;
        frame_decoder_init(&d, 4096);
        const uint8_t *p;
        size_t len;
        int got = 0;
        assert_int_equal(frame_decoder_feed(&d, wire, cut), 0);
        while (frame_decoder_next(&d, &p, &len) == 1) {
            assert_memory_equal(p, got == 0 ? a : b, len);
            assert_int_equal(len, got == 0 ? sizeof a : sizeof b);
            got++;
        }
        assert_int_equal(got, cut >= 304 + 9 ? 2 : (cut >= 304 ? 1 : 0));
        assert_int_equal(frame_decoder_feed(&d, wire + cut, n - cut), 0);
        int r;
        while ((r = frame_decoder_next(&d, &p, &len)) == 1) {
            assert_memory_equal(p, got == 0 ? a : b, len);
            got++;
        }
        assert_int_equal(r, 0);
        assert_int_equal(got, 2);
        assert_int_equal(frame_decoder_pending(&d), 0);
        frame_decoder_free(&d);
    }

    /* And one byte at a time. */
    frame_decoder d;
    frame_decoder_init(&d, 4096);
    int got = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p;
        size_t len;
        assert_int_equal(frame_decoder_feed(&d, wire + i, 1), 0);
        while (frame_decoder_next(&d, &p, &len) == 1) {
            assert_memory_equal(p, got == 0 ? a : b, len);
            got++;
        }
    }
    assert_int_equal(got, 2);
    frame_decoder_free(&d);
}

static void test_many_frames_one_feed(void **state)
{
    (void)state;
    enum { N = 1000 };
    uint8_t *wire = malloc(N * 16);
    assert_non_null(wire);
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        uint8_t payload[8];
        size_t plen = (size_t)(i % 9);   /* 0..8 bytes, includes empty frames */
        memset(payload, i & 0xff, sizeof payload);
        n += make_frame(wire + n, payload, plen, 64);
    }
    frame_decoder d;
    frame_decoder_init(&d, 64);
    assert_int_equal(frame_decoder_feed(&d, wire, n), 0);
    const uint8_t *p;
    size_t len;
    for (int i = 0; i < N; i++) {
        assert_int_equal(frame_decoder_next(&d, &p, &len), 1);
        assert_int_equal(len, (size_t)(i % 9));
        for (size_t k = 0; k < len; k++)
            assert_int_equal(p[k], i & 0xff);
    }
    assert_int_equal(frame_decoder_next(&d, &p, &len), 0);
    assert_int_equal(frame_decoder_pending(&d), 0);
    frame_decoder_free(&d);
    free(wire);
}

static void test_zero_length(void **state)
{
    (void)state;
    uint8_t wire[4] = { 0, 0, 0, 0 };
    frame_decoder d;
    frame_decoder_init(&d, 16);
    assert_int_equal(frame_decoder_feed(&d, wire, 3), 0);
    const uint8_t *p;
    size_t len = 99;
    assert_int_equal(frame_decoder_next(&d, &p, &len), 0);
    assert_int_equal(frame_decoder_feed(&d, wire + 3, 1), 0);
    assert_int_equal(frame_decoder_next(&d, &p, &len), 1);
    assert_int_equal(len, 0);
    assert_int_equal(frame_decoder_next(&d, &p, &len), 0);
    frame_decoder_free(&d);
}

static void test_cap_boundary(void **state)
{
    (void)state;
    enum { CAP = 1000 };
    uint8_t *wire = calloc(1, FRAME_HEADER_LEN + CAP + 1);
    assert_non_null(wire);

    /* Exactly at the cap: accepted. */
    frame_decoder d;
    frame_decoder_init(&d, CAP);
    wire[2] = CAP >> 8;
    wire[3] = CAP & 0xff;
    assert_int_equal(frame_decoder_feed(&d, wire, FRAME_HEADER_LEN + CAP), 0);
    const uint8_t *p;
    size_t len;
    assert_int_equal(frame_decoder_next(&d, &p, &len), 1);
    assert_int_equal(len, CAP);
    frame_decoder_free(&d);

    /* One above: refused as soon as the header is complete. */
    frame_decoder_init(&d, CAP);
    wire[2] = (CAP + 1) >> 8;
    wire[3] = (CAP + 1) & 0xff;
    assert_int_equal(frame_decoder_feed(&d, wire, 3), 0);
    assert_int_equal(frame_decoder_next(&d, &p, &len), 0);
    assert_int_equal(frame_decoder_feed(&d, wire + 3, 1), SDF_EFRAME_TOO_BIG);
    assert_int_equal(frame_decoder_next(&d, &p, &len), SDF_EFRAME_TOO_BIG);
    /* The stream stays unusable: further input is refused, not buffered. */
    size_t before = frame_decoder_pending(&d);
    assert_int_equal(frame_decoder_feed(&d, wire + 4, 100), SDF_EFRAME_TOO_BIG);
    assert_int_equal(frame_decoder_pending(&d), before);
    frame_decoder_free(&d);
    free(wire);
}

static void test_huge_prefix_no_allocation(void **state)
{
    (void)state;
    /* 100 MiB announced; the decoder must say no after 4 bytes and must
     * not have reserved anything near that size. */
    uint32_t big = 100u << 20;
    uint8_t hdr[4] = { (uint8_t)(big >> 24), (uint8_t)(big >> 16), (uint8_t)(big >> 8), (uint8_t)big };
    frame_decoder d;
    frame_decoder_init(&d, FRAME_MAX_DEFAULT);
    assert_int_equal(frame_decoder_feed(&d, hdr, 4), SDF_EFRAME_TOO_BIG);
    assert_true(d.cap <= 64 * 1024);
    const uint8_t *p;
    size_t len;
    assert_int_equal(frame_decoder_next(&d, &p, &len), SDF_EFRAME_TOO_BIG);
    assert_true(d.cap <= 64 * 1024);
    frame_decoder_free(&d);

    /* Same when the prefix comes in one byte at a time, then a body. */
    frame_decoder_init(&d, FRAME_MAX_DEFAULT);
    for (int i = 0; i < 3; i++)
        assert_int_equal(frame_decoder_feed(&d, hdr + i, 1), 0);
    assert_int_equal(frame_decoder_feed(&d, hdr + 3, 1), SDF_EFRAME_TOO_BIG);
    uint8_t junk[4096] = { 0 };
    assert_int_equal(frame_decoder_feed(&d, junk, sizeof junk), SDF_EFRAME_TOO_BIG);
    assert_true(d.cap <= 64 * 1024);
    frame_decoder_free(&d);
}

static void test_preauth_then_raise(void **state)
{
    (void)state;
    size_t plen = FRAME_MAX_PREAUTH + 1;
    uint8_t *wire = calloc(1, FRAME_HEADER_LEN + plen);
    assert_non_null(wire);
    assert_int_equal(frame_header_write(wire, plen, FRAME_MAX_DEFAULT), 0);
    wire[FRAME_HEADER_LEN + plen - 1] = 0x5a;

    frame_decoder d;
    frame_decoder_init(&d, FRAME_MAX_PREAUTH);
    /* Header alone: refused under the pre-auth cap. */
    assert_int_equal(frame_decoder_feed(&d, wire, 4), SDF_EFRAME_TOO_BIG);
    /* Raising the cap re-checks the buffered header on the next call. */
    frame_decoder_set_max(&d, FRAME_MAX_DEFAULT);
    assert_int_equal(frame_decoder_feed(&d, wire + 4, plen), 0);
    const uint8_t *p;
    size_t len;
    assert_int_equal(frame_decoder_next(&d, &p, &len), 1);
    assert_int_equal(len, plen);
    assert_int_equal(p[plen - 1], 0x5a);

    /* Lowering it again: a buffered frame above the new cap is refused. */
    assert_int_equal(frame_decoder_feed(&d, wire, 4 + 10), 0);
    frame_decoder_set_max(&d, 8);
    assert_int_equal(frame_decoder_next(&d, &p, &len), SDF_EFRAME_TOO_BIG);
    frame_decoder_free(&d);
    free(wire);
}

static void test_buffer_released_after_big_frame(void **state)
{
    (void)state;
    size_t plen = 1 << 20;
    uint8_t *wire = calloc(1, FRAME_HEADER_LEN + plen);
    assert_non_null(wire);
    assert_int_equal(frame_header_write(wire, plen, FRAME_MAX_DEFAULT), 0);
    frame_decoder d;
    frame_decoder_init(&d, FRAME_MAX_DEFAULT);
    assert_int_equal(frame_decoder_feed(&d, wire, FRAME_HEADER_LEN + plen), 0);
    const uint8_t *p;
    size_t len;
    assert_int_equal(frame_decoder_next(&d, &p, &len), 1);
    uint8_t small[5] = { 0, 0, 0, 1, 7 };
    assert_int_equal(frame_decoder_feed(&d, small, sizeof small), 0);
    assert_true(d.cap <= 64 * 1024);
    assert_int_equal(frame_decoder_next(&d, &p, &len), 1);
    assert_int_equal(len, 1);
    assert_int_equal(p[0], 7);
    frame_decoder_free(&d);
    free(wire);
}

static void test_garbage(void **state)
{
    (void)state;
    /* Deterministic pseudo-random garbage: the decoder either yields frames
     * within the cap, waits, or refuses; it never returns a frame above the
     * cap and never buffers unboundedly. */
    uint32_t x = 0x12345678;
    for (int round = 0; round < 200; round++) {
        frame_decoder d;
        frame_decoder_init(&d, 512);
        uint8_t chunk[97];
        int dead = 0;
        for (int k = 0; k < 50 && !dead; k++) {
            for (size_t i = 0; i < sizeof chunk; i++) {
                x ^= x << 13; x ^= x >> 17; x ^= x << 5;
                chunk[i] = (uint8_t)x;
            }
            /* Make small prefixes likely so some frames decode. */
            if (round % 2 == 0)
                chunk[0] = chunk[1] = chunk[2] = 0;
            int r = frame_decoder_feed(&d, chunk, 1 + (x % sizeof chunk));
            if (r == SDF_EFRAME_TOO_BIG) {
                dead = 1;
                break;
            }
            assert_int_equal(r, 0);
            const uint8_t *p;
            size_t len;
            while ((r = frame_decoder_next(&d, &p, &len)) == 1)
                assert_true(len <= 512);
            if (r < 0) {
                assert_int_equal(r, SDF_EFRAME_TOO_BIG);
                dead = 1;
            }
            assert_true(frame_decoder_pending(&d) <= FRAME_HEADER_LEN + 512);
        }
        frame_decoder_free(&d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_encoding),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_split_every_boundary),
        cmocka_unit_test(test_many_frames_one_feed),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_cap_boundary),
        cmocka_unit_test(test_huge_prefix_no_allocation),
        cmocka_unit_test(test_preauth_then_raise),
        cmocka_unit_test(test_buffer_released_after_big_frame),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
