/* coordinator/cli/svg.h — a small kit for writing HTML and inline SVG plots.
 *
 * Used by `sdefed report` (report*.c) to draw forest plots, ROC and
 * calibration curves and time series into one self-contained HTML file.
 *
 * Output goes into an svg_buf: a growable byte buffer with a hard cap.
 * Every append is checked; the first failure (out of memory, or the cap
 * reached) is remembered in buf->err and every later append is a no-op, so
 * a writer appends freely and checks buf->err once at the end.
 *
 * Text is always written through svg_buf_text(), which escapes HTML/XML
 * metacharacters and replaces control characters and invalid UTF-8 with
 * '?', so nothing from a result (site names, strata, reasons) can become
 * markup. Numbers are written with %g-like precision; a non-finite number
 * is written as "n/a".
 *
 * A plot maps data coordinates (x0..x1, y0..y1) to a fixed viewBox. The
 * SVG carries width="100%" and no xmlns (inline SVG in HTML5 needs none),
 * so the page holds no URL at all. Coordinates outside the data range are
 * clamped to the plot area.
 */
#ifndef CLI_SVG_H
#define CLI_SVG_H

#include <stdbool.h>
#include <stddef.h>

#include "sdefed/err.h"

/* ---- capped buffer ---- */

typedef struct svg_buf {
    char *data;       /* NUL-terminated when len > 0 */
    size_t len, cap;
    size_t max;       /* hard cap in bytes (content, excluding the NUL) */
    int err;          /* 0, SDF_ENOMEM or SDF_EOVERFLOW: sticky */
} svg_buf;

/* An empty buffer that may grow to max bytes. Never fails. */
void svg_buf_init(svg_buf *b, size_t max);

/* Release the memory; the buffer is empty (and reusable) afterwards. */
void svg_buf_free(svg_buf *b);

/* Append n raw bytes / a raw string / formatted raw text (no escaping: for
 * markup written by the caller only). On failure set b->err. */
void svg_buf_raw(svg_buf *b, const char *s, size_t n);
void svg_buf_puts(svg_buf *b, const char *s);
void svg_buf_printf(svg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append s escaped for HTML text and attribute values (& < > " '), with
 * control characters (except \n and \t) and invalid UTF-8 bytes as '?'.
 * NULL appends nothing. */
void svg_buf_text(svg_buf *b, const char *s);

/* Append a number with `sig` significant digits (%.*g; sig 1..17,
 * otherwise 4), or "n/a" when not finite. */
void svg_buf_num(svg_buf *b, double v, int sig);

/* Format a number like svg_buf_num into out (at least 32 bytes). */
void svg_fmt_num(char *out, size_t n, double v, int sig);

/* ---- ticks and colours ---- */

#define SVG_MAX_TICKS 16

/* "Nice" tick values (1, 2, 2.5 or 5 times a power of ten) covering
 * [lo, hi], about `target` of them. Returns the count (0 when lo/hi are not
 * finite or hi <= lo) and writes at most SVG_MAX_TICKS values. *step gets
 * the spacing (may be NULL). */
int svg_nice_ticks(double lo, double hi, int target, double *ticks, double *step);

/* Colour-blind-safe palette (Okabe-Ito), cycling; "#rrggbb" strings. */
const char *svg_color(size_t i);
#define SVG_POOLED_COLOR "#111111"
#define SVG_ALERT_COLOR "#d00000"
#define SVG_WITHHELD_COLOR "#888888"

/* ---- plots ---- */

typedef struct svg_plot {
    svg_buf *b;
    double width, height;                /* viewBox size */
    double left, right, top, bottom;     /* plot area edges in viewBox units */
    double x0, x1, y0, y1;               /* data range */
} svg_plot;

/* Open <svg viewBox="0 0 width height" width="100%"> with an escaped
 * <title>, and a plot area with margins (left, right, top, bottom in
 * viewBox units) for the data range [x0, x1] x [y0, y1] (x1 > x0, y1 > y0,
 * otherwise the range is widened by one unit). */
void svg_plot_begin(svg_plot *p, svg_buf *b, double width, double height, const double margin[4],
                    double x0, double x1, double y0, double y1, const char *title);
/* Close the </svg>. */
void svg_plot_end(svg_plot *p);

/* Data -> viewBox coordinates (clamped to the plot area). */
double svg_px(const svg_plot *p, double x);
double svg_py(const svg_plot *p, double y);

enum { SVG_AXIS_X = 1, SVG_AXIS_Y = 2, SVG_GRID = 4 };

/* Frame, nice ticks with labels on the requested axes, optional grid, and
 * the axis titles (escaped; NULL for none). */
void svg_axes(svg_plot *p, int flags, const char *xlabel, const char *ylabel);

/* Category labels under the x axis at x = 0..n-1, every `step`-th one. */
void svg_xcat_labels(svg_plot *p, const char *const *labels, size_t n, size_t step);

/* A line through the points; a non-finite y breaks it into pieces.
 * dash: NULL or an SVG dash array such as "4 3". */
void svg_polyline(svg_plot *p, const double *xs, const double *ys, size_t n, const char *color,
                  double width, const char *dash);
/* A straight segment in data coordinates. */
void svg_line(svg_plot *p, double xa, double ya, double xb, double yb, const char *color,
              double width, const char *dash);
/* A circle of radius r (viewBox units), filled or a ring, with an optional
 * tooltip (escaped). */
void svg_point(svg_plot *p, double x, double y, double r, const char *color, bool filled,
               const char *tip);
/* An "x" mark (withheld or out of band) of half-size s, with a tooltip. */
void svg_cross(svg_plot *p, double x, double y, double s, const char *color, const char *tip);
/* Error bars with end caps of half-length cap (viewBox units). */
void svg_vwhisker(svg_plot *p, double x, double ylo, double yhi, double cap, const char *color);
void svg_hwhisker(svg_plot *p, double y, double xlo, double xhi, double cap, const char *color);
/* A filled band between lo and hi along xs; non-finite values break it. */
void svg_band(svg_plot *p, const double *xs, const double *lo, const double *hi, size_t n,
              const char *color, double opacity);
/* A filled rectangle [xa, xb] x [ya, yb] in data coordinates. */
void svg_rect(svg_plot *p, double xa, double xb, double ya, double yb, const char *color,
              double opacity);
/* A diamond centred at (x, y) spanning [xlo, xhi], half-height h (viewBox). */
void svg_diamond(svg_plot *p, double x, double y, double xlo, double xhi, double h,
                 const char *color, const char *tip);
/* Escaped text at data coordinates / at viewBox coordinates. anchor:
 * "start", "middle" or "end". */
void svg_text(svg_plot *p, double x, double y, const char *anchor, double size,
              const char *color, const char *text);
void svg_text_at(svg_plot *p, double vx, double vy, const char *anchor, double size,
                 const char *color, const char *text);

typedef struct svg_legend_item {
    const char *label;
    const char *color;
    bool line;          /* a line sample; otherwise a point */
    const char *dash;   /* for a line sample, NULL = solid */
} svg_legend_item;

/* A one-row (wrapping) legend in the top margin. */
void svg_legend(svg_plot *p, const svg_legend_item *items, size_t n);

#endif
