/* tests/unit/cli/test_svg.c — the capped buffer and plotting kit behind `sdefed report`.
 *
 * Escaping (markup, quotes, control characters, invalid UTF-8), the hard
 * cap of the buffer (sticky error, nothing written past it), number
 * formatting, nice ticks, coordinate mapping and clamping, and the SVG
 * the primitives write (a NaN breaks a line, tooltips are escaped).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli/svg.h"

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_escape(void **state)
{
    (void)state;
    svg_buf b;
    svg_buf_init(&b, 1 << 20);
    svg_buf_text(&b, "<script>alert('x')</script> & \"q\"");
    assert_int_equal(b.err, 0);
    assert_string_equal(b.data,
                        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
    svg_buf_free(&b);

    /* control characters, invalid UTF-8 (stray continuation, overlong, surrogate,
     * truncated) become '?'; valid multi-byte characters and \n stay */
    svg_buf_text(&b, "a\x01" "b\x7f" "c\n\xc3\xa9" "\x80" "\xc0\xaf" "\xed\xa0\x80" "\xe2\x82");
    assert_int_equal(b.err, 0);
    assert_string_equal(b.data, "a?b?c\n\xc3\xa9????????");   /* one per bad byte */
    svg_buf_free(&b);

    svg_buf_text(&b, NULL);
    assert_int_equal(b.len, 0);
    svg_buf_free(&b);
}

static void test_cap_is_sticky(void **state)
{
    (void)state;
    svg_buf b;
    svg_buf_init(&b, 10);
    svg_buf_puts(&b, "12345678");
    assert_int_equal(b.err, 0);
    svg_buf_puts(&b, "abc");           /* would make 11 > 10 */
    assert_int_equal(b.err, SDF_EOVERFLOW);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "12345678");
    svg_buf_puts(&b, "x");             /* fits, but the error is sticky */
    svg_buf_printf(&b, "%d", 1);
    svg_buf_text(&b, "<");
    assert_int_equal(b.len, 8);
    svg_buf_free(&b);
    assert_int_equal(b.err, 0);
    assert_int_equal(b.max, 10);

    /* escaping counts toward the cap: "<" becomes 4 bytes */
    svg_buf_init(&b, 3);
    svg_buf_text(&b, "<");
    assert_int_equal(b.err, SDF_EOVERFLOW);
    svg_buf_free(&b);

    /* a long printf goes through the slow path */
    svg_buf_init(&b, 1 << 20);
    char big[2000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    svg_buf_printf(&b, "[%s]", big);
    assert_int_equal(b.err, 0);
    assert_int_equal(b.len, sizeof big + 1);
    assert_int_equal(b.data[0], '[');
    assert_int_equal(b.data[b.len - 1], ']');
    svg_buf_free(&b);
}

static void test_numbers(void **state)
{
    (void)state;
    char t[40];
    svg_fmt_num(t, sizeof t, 0.812345, 4);
    assert_string_equal(t, "0.8123");
    svg_fmt_num(t, sizeof t, 0.8, 4);
    assert_string_equal(t, "0.8");
    svg_fmt_num(t, sizeof t, NAN, 4);
    assert_string_equal(t, "n/a");
    svg_fmt_num(t, sizeof t, INFINITY, 4);
    assert_string_equal(t, "n/a");
    svg_fmt_num(t, sizeof t, -0.0, 4);
    assert_string_equal(t, "0");
    svg_fmt_num(t, sizeof t, 1585.63, 99);   /* bad precision: 4 */
    assert_string_equal(t, "1586");
}

static void test_ticks(void **state)
{
    (void)state;
    double t[SVG_MAX_TICKS], step;
    int n = svg_nice_ticks(0, 1, 5, t, &step);
    assert_int_equal(n, 6);
    assert_true(fabs(step - 0.2) < 1e-12);
    assert_true(fabs(t[0]) < 1e-12 && fabs(t[5] - 1) < 1e-12);
    n = svg_nice_ticks(0.53, 0.97, 5, t, &step);
    assert_int_equal(n, 4);
    assert_true(fabs(t[0] - 0.6) < 1e-12 && fabs(t[3] - 0.9) < 1e-12);
    n = svg_nice_ticks(0, 2500, 5, t, &step);
    assert_int_equal(n, 6);
    assert_true(fabs(step - 500) < 1e-9);
    n = svg_nice_ticks(-1, 1, 4, t, NULL);
    assert_true(n >= 3);
    bool zero = false;
    for (int i = 0; i < n; i++)
        zero = zero || t[i] == 0.0;
    assert_true(zero);
    assert_int_equal(svg_nice_ticks(1, 1, 5, t, NULL), 0);
    assert_int_equal(svg_nice_ticks(NAN, 1, 5, t, NULL), 0);
    assert_int_equal(svg_nice_ticks(2, 1, 5, t, NULL), 0);
    /* a huge target is capped */
    n = svg_nice_ticks(0, 1, 1000, t, NULL);
    assert_true(n > 0 && n <= SVG_MAX_TICKS);
}

static void test_plot(void **state)
{
    (void)state;
    svg_buf b;
    svg_buf_init(&b, 1 << 20);
    svg_plot p;
    const double margin[4] = { 50, 10, 20, 30 };
    svg_plot_begin(&p, &b, 400, 300, margin, 0, 1, 0, 10, "t <1> & \"2\"");
    assert_true(fabs(svg_px(&p, 0) - 50) < 1e-9);
    assert_true(fabs(svg_px(&p, 1) - 390) < 1e-9);
    assert_true(fabs(svg_px(&p, 7) - 390) < 1e-9);     /* clamped */
    assert_true(fabs(svg_px(&p, NAN) - 50) < 1e-9);
    assert_true(fabs(svg_py(&p, 0) - 270) < 1e-9);
    assert_true(fabs(svg_py(&p, 10) - 20) < 1e-9);
    svg_axes(&p, SVG_AXIS_X | SVG_AXIS_Y | SVG_GRID, "x <label>", "y");
    double xs[] = { 0, 0.25, 0.5, 0.75, 1 }, ys[] = { 1, 2, NAN, 4, 5 };
    svg_polyline(&p, xs, ys, 5, "#000000", 1, "4 3");
    double lo[] = { 0, 1, 1, 2, 3 }, hi[] = { 2, 3, 4, 5, 6 };
    svg_band(&p, xs, lo, hi, 5, "#111111", 0.2);
    svg_point(&p, 0.5, 5, 3, "#0072b2", true, "site <b>");
    svg_point(&p, NAN, 5, 3, "#0072b2", true, "never drawn");
    svg_cross(&p, 0.5, 0, 4, "#888888", "withheld");
    svg_diamond(&p, 0.5, 5, 0.4, 0.6, 6, "#111111", "pooled");
    svg_vwhisker(&p, 0.5, 4, 6, 3, "#000000");
    svg_hwhisker(&p, 5, 0.4, 0.6, 3, "#000000");
    svg_rect(&p, 0, 1, 2, 3, "#2e8b57", 0.15);
    svg_text(&p, 0.5, 5, "middle", 10, "#000000", "a<b");
    const svg_legend_item leg[] = { { "site-a", "#0072b2", true, NULL },
                                    { "pooled", "#111111", false, NULL } };
    svg_legend(&p, leg, 2);
    svg_plot_end(&p);
    assert_int_equal(b.err, 0);
    const char *s = b.data;
    assert_non_null(strstr(s, "<svg viewBox=\"0 0 400 300\" width=\"100%\""));
    assert_non_null(strstr(s, "<title>t &lt;1&gt; &amp; &quot;2&quot;</title>"));
    assert_int_equal(count(s, "<svg"), 1);
    assert_int_equal(count(s, "</svg>"), 1);
    assert_null(strstr(s, "xmlns"));
    assert_null(strstr(s, "http"));
    /* the NaN splits the line in two (the band has finite lo/hi there: one piece) */
    assert_int_equal(count(s, "<polyline"), 2);
    assert_non_null(strstr(s, "<title>site &lt;b&gt;</title>"));
    assert_null(strstr(s, "never drawn"));
    assert_non_null(strstr(s, "x &lt;label&gt;"));
    assert_non_null(strstr(s, ">a&lt;b</text>"));
    assert_int_equal(count(s, "<polygon"), 2);    /* band + diamond */
    svg_buf_free(&b);

    /* a NaN in the middle of a longer line gives two pieces */
    svg_plot_begin(&p, &b, 400, 300, margin, 0, 10, 0, 10, "two pieces");
    double x2[] = { 0, 1, 2, 3, 4, 5, 6 }, y2[] = { 1, 2, 3, NAN, 4, 5, 6 };
    svg_polyline(&p, x2, y2, 7, "#000000", 1, NULL);
    double y3[] = { 1, NAN, 3, NAN, 4, NAN, 6 };   /* no two consecutive points */
    svg_polyline(&p, x2, y3, 7, "#000000", 1, NULL);
    svg_plot_end(&p);
    assert_int_equal(count(b.data, "<polyline"), 2);
    svg_buf_free(&b);

    /* a degenerate range is widened, not divided by zero */
    svg_plot_begin(&p, &b, 100, 100, margin, 3, 3, NAN, 1, "flat");
    assert_true(p.x1 > p.x0 && p.y1 > p.y0);
    assert_true(isfinite(svg_px(&p, 3)) && isfinite(svg_py(&p, 0.5)));
    svg_plot_end(&p);
    svg_buf_free(&b);
}

static void test_colors(void **state)
{
    (void)state;
    assert_string_equal(svg_color(0), "#0072b2");
    assert_string_equal(svg_color(8), svg_color(0));
    assert_string_not_equal(svg_color(1), svg_color(0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),   cmocka_unit_test(test_cap_is_sticky),
        cmocka_unit_test(test_numbers),  cmocka_unit_test(test_ticks),
        cmocka_unit_test(test_plot),     cmocka_unit_test(test_colors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
