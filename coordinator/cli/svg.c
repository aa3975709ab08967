/* coordinator/cli/svg.c — capped HTML buffer and inline-SVG plotting kit.
 *
 * See svg.h. Everything drawn is plain SVG 1.1 elements (rect, line,
 * polyline, polygon, circle, text) with presentation attributes, so the
 * figures render without CSS or script and parse as XML.
 */
#include "cli/svg.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffer ---- */

void svg_buf_init(svg_buf *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

void svg_buf_free(svg_buf *b)
{
    free(b->data);
    size_t max = b->max;
    memset(b, 0, sizeof *b);
    b->max = max;
}

/* Make room for n more bytes plus the NUL. */
static bool reserve(svg_buf *b, size_t n)
{
    if (b->err)
        return false;
    if (n > b->max || b->len > b->max - n) {
        b->err = SDF_EOVERFLOW;
        return false;
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->err = SDF_ENOMEM;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void svg_buf_raw(svg_buf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void svg_buf_puts(svg_buf *b, const char *s)
{
    if (s)
        svg_buf_raw(b, s, strlen(s));
}

void svg_buf_printf(svg_buf *b, const char *fmt, ...)
{
    if (b->err)
        return;
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->err = SDF_EINVAL;
        return;
    }
    if ((size_t)n < sizeof small) {
        svg_buf_raw(b, small, (size_t)n);
        return;
    }
    if (!reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    unsigned cp = c & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void svg_buf_text(svg_buf *b, const char *s)
{
    if (!s)
        return;
    const unsigned char *p = (const unsigned char *)s;
    while (*p && !b->err) {
        /* copy a run of plain characters at once */
        const unsigned char *run = p;
        while (*p >= 0x20 && *p < 0x7f && *p != '&' && *p != '<' && *p != '>' && *p != '"' &&
               *p != '\'')
            p++;
        if (p > run)
            svg_buf_raw(b, (const char *)run, (size_t)(p - run));
        if (!*p)
            break;
        switch (*p) {
        case '&': svg_buf_puts(b, "&amp;"); p++; continue;
        case '<': svg_buf_puts(b, "&lt;"); p++; continue;
        case '>': svg_buf_puts(b, "&gt;"); p++; continue;
        case '"': svg_buf_puts(b, "&quot;"); p++; continue;
        case '\'': svg_buf_puts(b, "&#39;"); p++; continue;
        case '\n': case '\t': svg_buf_raw(b, (const char *)p, 1); p++; continue;
        default: break;
        }
        if (*p < 0x20 || *p == 0x7f) {
            svg_buf_raw(b, "?", 1);
            p++;
            continue;
        }
        size_t n = utf8_len(p);
        if (n == 0) {
            svg_buf_raw(b, "?", 1);
            p++;
        } else {
            svg_buf_raw(b, (const char *)p, n);
            p += n;
        }
    }
}

void svg_fmt_num(char *out, size_t n, double v, int sig)
{
    if (sig < 1 || sig > 17)
        sig = 4;
    if (!isfinite(v)) {
        snprintf(out, n, "n/a");
        return;
    }
    if (v == 0.0)
        v = 0.0;   /* no "-0" */
    snprintf(out, n, "%.*g", sig, v);
}

void svg_buf_num(svg_buf *b, double v, int sig)
{
    char t[40];
    svg_fmt_num(t, sizeof t, v, sig);
    svg_buf_puts(b, t);
}

/* ---- ticks, colours ---- */

int svg_nice_ticks(double lo, double hi, int target, double *ticks, double *step)
{
    if (!isfinite(lo) || !isfinite(hi) || !(hi > lo))
        return 0;
    if (target < 2)
        target = 2;
    if (target > SVG_MAX_TICKS - 2)
        target = SVG_MAX_TICKS - 2;
    double raw = (hi - lo) / target;
    double mag = pow(10.0, floor(log10(raw)));
    static const double mult[] = { 1, 2, 2.5, 5, 10 };
    double st = 10 * mag;
    for (size_t i = 0; i < sizeof mult / sizeof mult[0]; i++)
        if (mult[i] * mag >= raw) {
            st = mult[i] * mag;
            break;
        }
    double first = ceil(lo / st - 1e-9) * st;
    int n = 0;
    for (double t = first; t <= hi + st * 1e-9 && n < SVG_MAX_TICKS; t = first + n * st) {
        ticks[n++] = fabs(t) < st * 1e-9 ? 0.0 : t;
    }
    if (step)
        *step = st;
    return n;
}

const char *svg_color(size_t i)
{
    static const char *const pal[] = { "#0072b2", "#e69f00", "#009e73", "#cc79a7",
                                       "#56b4e9", "#d55e00", "#b8a000", "#7f3c8d" };
    return pal[i % (sizeof pal / sizeof pal[0])];
}

/* ---- plots ---- */

/* viewBox coordinates with 2 decimals */
#define C "%.2f"

void svg_plot_begin(svg_plot *p, svg_buf *b, double width, double height, const double margin[4],
                    double x0, double x1, double y0, double y1, const char *title)
{
    memset(p, 0, sizeof *p);
    p->b = b;
    p->width = width;
    p->height = height;
    p->left = margin[0];
    p->right = width - margin[1];
    p->top = margin[2];
    p->bottom = height - margin[3];
    if (!isfinite(x0) || !isfinite(x1)) {
        x0 = 0;
        x1 = 1;
    }
    if (!isfinite(y0) || !isfinite(y1)) {
        y0 = 0;
        y1 = 1;
    }
    if (!(x1 > x0)) {
        x0 -= 0.5;
        x1 = x0 + 1;
    }
    if (!(y1 > y0)) {
        y0 -= 0.5;
        y1 = y0 + 1;
    }
    p->x0 = x0;
    p->x1 = x1;
    p->y0 = y0;
    p->y1 = y1;
    svg_buf_printf(b, "<svg viewBox=\"0 0 %g %g\" width=\"100%%\" role=\"img\" "
                      "font-family=\"sans-serif\" aria-label=\"", width, height);
    svg_buf_text(b, title);
    svg_buf_puts(b, "\"><title>");
    svg_buf_text(b, title);
    svg_buf_printf(b, "</title><rect x=\"0\" y=\"0\" width=\"%g\" height=\"%g\" "
                      "fill=\"#ffffff\"/>\n",
                   width, height);
}

void svg_plot_end(svg_plot *p)
{
    svg_buf_puts(p->b, "</svg>\n");
}

static double clampd(double v, double a, double b)
{
    if (!(v >= a))   /* also NaN */
        return a;
    return v > b ? b : v;
}

double svg_px(const svg_plot *p, double x)
{
    double t = (x - p->x0) / (p->x1 - p->x0);
    return clampd(p->left + t * (p->right - p->left), p->left, p->right);
}

double svg_py(const svg_plot *p, double y)
{
    double t = (y - p->y0) / (p->y1 - p->y0);
    return clampd(p->bottom - t * (p->bottom - p->top), p->top, p->bottom);
}

void svg_axes(svg_plot *p, int flags, const char *xlabel, const char *ylabel)
{
    svg_buf *b = p->b;
    double t[SVG_MAX_TICKS];
    char num[40];
    if (flags & SVG_AXIS_X) {
        int n = svg_nice_ticks(p->x0, p->x1, 6, t, NULL);
        for (int i = 0; i < n; i++) {
            double x = svg_px(p, t[i]);
            if (flags & SVG_GRID)
                svg_buf_printf(b, "<line x1=\"" C "\" y1=\"" C "\" x2=\"" C "\" y2=\"" C
                                  "\" stroke=\"#e4e4e4\" stroke-width=\"1\"/>\n",
                               x, p->top, x, p->bottom);
            svg_buf_printf(b, "<line x1=\"" C "\" y1=\"" C "\" x2=\"" C "\" y2=\"" C
                              "\" stroke=\"#333333\" stroke-width=\"1\"/>\n",
                           x, p->bottom, x, p->bottom + 4);
            svg_fmt_num(num, sizeof num, t[i], 4);
            svg_text_at(p, x, p->bottom + 16, "middle", 11, "#333333", num);
        }
    }
    if (flags & SVG_AXIS_Y) {
        int n = svg_nice_ticks(p->y0, p->y1, 5, t, NULL);
        for (int i = 0; i < n; i++) {
            double y = svg_py(p, t[i]);
            if (flags & SVG_GRID)
                svg_buf_printf(b, "<line x1=\"" C "\" y1=\"" C "\" x2=\"" C "\" y2=\"" C
                                  "\" stroke=\"#e4e4e4\" stroke-width=\"1\"/>\n",
                               p->left, y, p->right, y);
            svg_buf_printf(b, "<line x1=\"" C "\" y1=\"" C "\" x2=\"" C "\" y2=\"" C
                              "\" stroke=\"#333333\" stroke-width=\"1\"/>\n",
                           p->left - 4, y, p->left, y);
            svg_fmt_num(num, sizeof num, t[i], 4);
            svg_text_at(p, p->left - 7, y + 4, "end", 11, "#333333", num);
        }
    }
    svg_buf_printf(b, "<rect x=\"" C "\" y=\"" C "\" width=\"" C "\" height=\"" C
                      "\" fill=\"none\" stroke=\"#333333\" stroke-width=\"1\"/>\n",
                   p->left, p->top, p->right - p->left, p->bottom - p->top);
    if (xlabel)
        svg_text_at(p, (p->left + p->right) / 2, p->height - 6, "middle", 12, "#111111", xlabel);
    if (ylabel) {
        double x = 14, y = (p->top + p->bottom) / 2;
        svg_buf_printf(b, "<text x=\"" C "\" y=\"" C "\" text-anchor=\"middle\" font-size=\"12\" "
                          "fill=\"#111111\" transform=\"rotate(-90 " C " " C ")\">",
                       x, y, x, y);
        svg_buf_text(b, ylabel);
        svg_buf_puts(b, "</text>\n");
    }
}

void svg_xcat_labels(svg_plot *p, const char *const *labels, size_t n, size_t step)
{
    if (step == 0)
        step = 1;
    for (size_t i = 0; i < n; i += step) {
        double x = svg_px(p, (double)i);
        svg_buf_printf(p->b, "<line x1=\"" C "\" y1=\"" C "\" x2=\"" C "\" y2=\"" C
                             "\" stroke=\"#333333\" stroke-width=\"1\"/>\n",
                       x, p->bottom, x, p->bottom + 4);
        svg_text_at(p, x, p->bottom + 16, "middle", 11, "#333333", labels[i]);
    }
}

static void dash_attr(svg_buf *b, const char *dash)
{
    if (dash) {
        svg_buf_puts(b, " stroke-dasharray=\"");
        svg_buf_text(b, dash);
        svg_buf_puts(b, "\"");
    }
}

void svg_polyline(svg_plot *p, const double *xs, const double *ys, size_t n, const char *color,
                  double width, const char *dash)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (!isfinite(xs[i]) || !isfinite(ys[i])))
            i++;
        size_t start = i;
        while (i < n && isfinite(xs[i]) && isfinite(ys[i]))
            i++;
        if (i - start < 2)
            continue;
        svg_buf_puts(p->b, "<polyline points=\"");
        for (size_t k = start; k < i; k++)
            svg_buf_printf(p->b, "%s" C "," C, k > start ? " " : "", svg_px(p, xs[k]),
                           svg_py(p, ys[k]));
        svg_buf_printf(p->b, "\" fill=\"none\" stroke=\"%s\" stroke-width=\"%g\"", color, width);
        dash_attr(p->b, dash);
        svg_buf_puts(p->b, "/>\n");
    }
}

void svg_line(svg_plot *p, double xa, double ya, double xb, double yb, const char *color,
              double width, const char *dash)
{
    if (!isfinite(xa) || !isfinite(ya) || !isfinite(xb) || !isfinite(yb))
        return;
    svg_buf_printf(p->b, "<line x1=\"" C "\" y1=\"" C "\" x2=\"" C "\" y2=\"" C
                         "\" stroke=\"%s\" stroke-width=\"%g\"",
                   svg_px(p, xa), svg_py(p, ya), svg_px(p, xb), svg_py(p, yb), color, width);
    dash_attr(p->b, dash);
    svg_buf_puts(p->b, "/>\n");
}

static void tip_close(svg_buf *b, const char *elem, const char *tip)
{
    if (tip) {
        svg_buf_puts(b, "><title>");
        svg_buf_text(b, tip);
        svg_buf_printf(b, "</title></%s>\n", elem);
    } else {
        svg_buf_puts(b, "/>\n");
    }
}

void svg_point(svg_plot *p, double x, double y, double r, const char *color, bool filled,
               const char *tip)
{
    if (!isfinite(x) || !isfinite(y))
        return;
    svg_buf_printf(p->b, "<circle cx=\"" C "\" cy=\"" C "\" r=\"" C "\" fill=\"%s\" "
                         "stroke=\"%s\" stroke-width=\"1.5\"",
                   svg_px(p, x), svg_py(p, y), r, filled ? color : "none", color);
    tip_close(p->b, "circle", tip);
}

void svg_cross(svg_plot *p, double x, double y, double s, const char *color, const char *tip)
{
    if (!isfinite(x) || !isfinite(y))
        return;
    double cx = svg_px(p, x), cy = svg_py(p, y);
    svg_buf_printf(p->b, "<path d=\"M" C " " C "L" C " " C "M" C " " C "L" C " " C
                         "\" stroke=\"%s\" stroke-width=\"2\" fill=\"none\"",
                   cx - s, cy - s, cx + s, cy + s, cx - s, cy + s, cx + s, cy - s, color);
    tip_close(p->b, "path", tip);
}

void svg_vwhisker(svg_plot *p, double x, double ylo, double yhi, double cap, const char *color)
{
    if (!isfinite(x) || !isfinite(ylo) || !isfinite(yhi))
        return;
    double cx = svg_px(p, x), a = svg_py(p, ylo), c = svg_py(p, yhi);
    svg_buf_printf(p->b, "<path d=\"M" C " " C "L" C " " C "M" C " " C "L" C " " C "M" C " " C
                         "L" C " " C "\" stroke=\"%s\" stroke-width=\"1.3\" fill=\"none\"/>\n",
                   cx, a, cx, c, cx - cap, a, cx + cap, a, cx - cap, c, cx + cap, c, color);
}

void svg_hwhisker(svg_plot *p, double y, double xlo, double xhi, double cap, const char *color)
{
    if (!isfinite(y) || !isfinite(xlo) || !isfinite(xhi))
        return;
    double cy = svg_py(p, y), a = svg_px(p, xlo), c = svg_px(p, xhi);
    svg_buf_printf(p->b, "<path d=\"M" C " " C "L" C " " C "M" C " " C "L" C " " C "M" C " " C
                         "L" C " " C "\" stroke=\"%s\" stroke-width=\"1.5\" fill=\"none\"/>\n",
                   a, cy, c, cy, a, cy - cap, a, cy + cap, c, cy - cap, c, cy + cap, color);
}

void svg_band(svg_plot *p, const double *xs, const double *lo, const double *hi, size_t n,
              const char *color, double opacity)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && !(isfinite(xs[i]) && isfinite(lo[i]) && isfinite(hi[i])))
            i++;
        size_t start = i;
        while (i < n && isfinite(xs[i]) && isfinite(lo[i]) && isfinite(hi[i]))
            i++;
        if (i - start < 2)
            continue;
        svg_buf_puts(p->b, "<polygon points=\"");
        for (size_t k = start; k < i; k++)
            svg_buf_printf(p->b, C "," C " ", svg_px(p, xs[k]), svg_py(p, hi[k]));
        for (size_t k = i; k-- > start;)
            svg_buf_printf(p->b, C "," C "%s", svg_px(p, xs[k]), svg_py(p, lo[k]),
                           k > start ? " " : "");
        svg_buf_printf(p->b, "\" fill=\"%s\" fill-opacity=\"%g\" stroke=\"none\"/>\n", color,
                       opacity);
    }
}

void svg_rect(svg_plot *p, double xa, double xb, double ya, double yb, const char *color,
              double opacity)
{
    double a = svg_px(p, xa), c = svg_px(p, xb), d = svg_py(p, ya), e = svg_py(p, yb);
    double x = a < c ? a : c, y = d < e ? d : e;
    svg_buf_printf(p->b, "<rect x=\"" C "\" y=\"" C "\" width=\"" C "\" height=\"" C
                         "\" fill=\"%s\" fill-opacity=\"%g\"/>\n",
                   x, y, fabs(c - a), fabs(e - d), color, opacity);
}

void svg_diamond(svg_plot *p, double x, double y, double xlo, double xhi, double h,
                 const char *color, const char *tip)
{
    if (!isfinite(x) || !isfinite(y) || !isfinite(xlo) || !isfinite(xhi))
        return;
    double cx = svg_px(p, x), cy = svg_py(p, y), a = svg_px(p, xlo), c = svg_px(p, xhi);
    svg_buf_printf(p->b, "<polygon points=\"" C "," C " " C "," C " " C "," C " " C "," C
                         "\" fill=\"%s\" stroke=\"%s\" stroke-width=\"1\"",
                   a, cy, cx, cy - h, c, cy, cx, cy + h, color, color);
    tip_close(p->b, "polygon", tip);
}

void svg_text_at(svg_plot *p, double vx, double vy, const char *anchor, double size,
                 const char *color, const char *text)
{
    svg_buf_printf(p->b, "<text x=\"" C "\" y=\"" C "\" text-anchor=\"%s\" font-size=\"%g\" "
                         "fill=\"%s\">",
                   vx, vy, anchor, size, color);
    svg_buf_text(p->b, text);
    svg_buf_puts(p->b, "</text>\n");
}

void svg_text(svg_plot *p, double x, double y, const char *anchor, double size,
              const char *color, const char *text)
{
    svg_text_at(p, svg_px(p, x), svg_py(p, y), anchor, size, color, text);
}

void svg_legend(svg_plot *p, const svg_legend_item *items, size_t n)
{
    double x = p->left, y = 14;
    for (size_t i = 0; i < n; i++) {
        size_t len = items[i].label ? strlen(items[i].label) : 0;
        double w = 26 + 6.5 * (double)(len > 40 ? 40 : len) + 14;
        if (x + w > p->width - 4 && x > p->left) {
            x = p->left;
            y += 16;
        }
        if (items[i].line) {
            svg_buf_printf(p->b, "<line x1=\"" C "\" y1=\"" C "\" x2=\"" C "\" y2=\"" C
                                 "\" stroke=\"%s\" stroke-width=\"2.5\"",
                           x, y - 4, x + 20, y - 4, items[i].color);
            dash_attr(p->b, items[i].dash);
            svg_buf_puts(p->b, "/>\n");
        } else {
            svg_buf_printf(p->b, "<circle cx=\"" C "\" cy=\"" C "\" r=\"4\" fill=\"%s\"/>\n",
                           x + 10, y - 4, items[i].color);
        }
        svg_text_at(p, x + 26, y, "start", 11, "#111111", items[i].label);
        x += w;
    }
}
