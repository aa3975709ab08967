/* coordinator/cli/report_surveil.c — `surveil` results and monitors in `sdefed report` (issue 6).
 *
 * A surveil result: for each arm and stratum, a time series of the rate
 * per 1,000 person-years per period, one line per site and the pooled rate
 * (with its 95% CI as a band, the sites' as whiskers); a point a site
 * withheld is drawn as a grey "x" on the axis and listed with its reason;
 * then the table of every row.
 *
 * A monitor (the JSON of `monitor show`, docs/surveillance.md): observed
 * vs expected events per counted period (pooled and per site), the
 * sequential statistic against its threshold with the alert points
 * marked, and, when the monitor JSON carries them (drift monitors of a
 * validate spec: "band" at the top and "drift" in each look), AUC and
 * calibration-slope series with the agreed band shaded and the points out
 * of band marked. Numbers come from the coordinator's store (already
 * disclosure-controlled); every string is escaped.
 */
#include "cli/report.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_LEN 512
#define MAX_PERIODS 700
#define MAX_SERIES 400
#define MAX_LINES 17   /* sites drawn per figure (+ pooled) */

static const char *arm_name(const Sdefed__SurveilRow *x)
{
    return x->comparator ? "comparator" : "exposure";
}

static void series_key(char *out, size_t n, const Sdefed__SurveilRow *x)
{
    char st[KEY_LEN - 16];   /* room for the arm name */
    report_strata_key(st, sizeof st, x->strata, x->n_strata);
    snprintf(out, n, "%s%s%s", arm_name(x), st[0] ? ", " : "", st);
}

typedef struct names {
    char (*v)[KEY_LEN];
    size_t n, max;
} names;

static bool names_init(names *s, size_t max)
{
    s->v = calloc(max, KEY_LEN);
    s->n = 0;
    s->max = max;
    return s->v != NULL;
}

static void names_add(names *s, const char *k)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], k) == 0)
            return;
    if (s->n < s->max)
        snprintf(s->v[s->n++], KEY_LEN, "%s", k);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* grid[k * np + i]: the row of series `key` of source k at period i (the
 * periods sorted), or NULL. One pass over the rows; NULL on ENOMEM. */
static const Sdefed__SurveilRow **row_grid(Sdefed__SurveilRow *const *const *rows,
                                           const size_t *nrows, size_t nsrc, const char *key,
                                           const names *per)
{
    size_t np = per->n ? per->n : 1;
    const Sdefed__SurveilRow **g = calloc(nsrc * np, sizeof *g);
    char k[KEY_LEN];
    for (size_t src = 0; g && src < nsrc; src++)
        for (size_t i = 0; i < nrows[src]; i++) {
            const Sdefed__SurveilRow *x = rows[src][i];
            if (!x)
                continue;
            series_key(k, sizeof k, x);
            if (strcmp(k, key) != 0)
                continue;
            const char *at = bsearch(x->period ? x->period : "", per->v, per->n, KEY_LEN,
                                     name_cmp);
            if (!at)
                continue;
            size_t idx = (size_t)(at - per->v[0]) / KEY_LEN;
            if (!g[src * np + idx])
                g[src * np + idx] = x;
        }
    return g;
}

static const char *row_withheld_reason(const Sdefed__SurveilRow *x)
{
    if (!report_released(x->events_status))
        return "events below the count rules";
    if (!report_released(x->person_days_status))
        return "person-time withheld (persons suppressed or dominated)";
    if (x->person_days == 0)
        return "no person-time at risk";
    return "rate not computable from the released numbers";
}

/* One figure: the series `key` over `per` periods. */
static void rate_figure(svg_buf *b, const Sdefed__FederatedResult *r, const char *key,
                        const names *per)
{
    size_t np = per->n, nser = 0, not_drawn = 0;
    Sdefed__SurveilRow *const *rows[MAX_LINES];
    size_t nrows[MAX_LINES];
    const char *who[MAX_LINES], *col[MAX_LINES];
    for (size_t s = 0; s < r->n_sites; s++) {
        const Sdefed__SiteResult *sr = r->sites[s];
        if (!sr || sr->status != SDEFED__SITE_STATUS__SITE_OK)
            continue;
        if (nser == MAX_LINES - 1) {
            not_drawn++;
            continue;
        }
        rows[nser] = sr->surveil;
        nrows[nser] = sr->n_surveil;
        who[nser] = sr->site ? sr->site : "";
        col[nser] = svg_color(s);
        nser++;
    }
    rows[nser] = r->pooled_surveil;
    nrows[nser] = r->n_pooled_surveil;
    who[nser] = "pooled";
    col[nser] = SVG_POOLED_COLOR;
    nser++;
    const Sdefed__SurveilRow **grid = row_grid(rows, nrows, nser, key, per);
    if (!grid) {
        b->err = b->err ? b->err : SDF_ENOMEM;
        return;
    }
    double ymax = 0;
    for (size_t k = 0; k < nser; k++)
        for (size_t i = 0; i < np; i++) {
            const Sdefed__SurveilRow *x = grid[k * np + i];
            if (x && report_released(x->rate_status) && isfinite(x->rate_hi))
                ymax = fmax(ymax, fmax(x->rate_hi, x->rate));
        }
    if (!(ymax > 0))
        ymax = 1;
    double ticks[SVG_MAX_TICKS], step;
    int nt = svg_nice_ticks(0, ymax * 1.05, 5, ticks, &step);
    if (nt > 0 && ticks[nt - 1] < ymax * 1.05)
        ymax = ticks[nt - 1] + step;
    else if (nt > 0)
        ymax = ticks[nt - 1];
    const double margin[4] = { 70, 20, 44, 50 };
    svg_plot pl;
    char title[KEY_LEN + 64];
    snprintf(title, sizeof title, "Rate per 1,000 person-years: %s", key);
    svg_buf_puts(b, "<figure>");
    svg_plot_begin(&pl, b, 900, 420, margin, -0.5, (double)np - 0.5, 0, ymax, title);
    svg_axes(&pl, SVG_AXIS_Y | SVG_GRID, "period of the index date", "rate per 1,000 person-years");
    const char *labels[MAX_PERIODS];
    for (size_t i = 0; i < np; i++)
        labels[i] = per->v[i];
    svg_xcat_labels(&pl, labels, np, np > 12 ? (np + 11) / 12 : 1);
    double *xs = calloc(np ? np : 1, sizeof *xs), *ys = calloc(np ? np : 1, sizeof *ys);
    double *lo = calloc(np ? np : 1, sizeof *lo), *hi = calloc(np ? np : 1, sizeof *hi);
    if (!xs || !ys || !lo || !hi) {
        b->err = b->err ? b->err : SDF_ENOMEM;
        goto out;
    }
    double dodge = nser > 1 ? fmin(0.5 / (double)nser, 0.12) : 0;
    char tip[300], a[32], c[32], d[32];
    size_t nwithheld = 0;
    for (size_t k = 0; k < nser; k++) {
        bool pooled = k == nser - 1;
        double off = ((double)k - (double)(nser - 1) / 2) * dodge;
        for (size_t i = 0; i < np; i++) {
            const Sdefed__SurveilRow *x = grid[k * np + i];
            xs[i] = (double)i + off;
            bool ok = x && report_released(x->rate_status);
            ys[i] = ok ? x->rate : NAN;
            lo[i] = ok ? x->rate_lo : NAN;
            hi[i] = ok ? x->rate_hi : NAN;
        }
        if (pooled)
            svg_band(&pl, xs, lo, hi, np, SVG_POOLED_COLOR, 0.12);
        svg_polyline(&pl, xs, ys, np, col[k], pooled ? 2.5 : 1.5, NULL);
        for (size_t i = 0; i < np; i++) {
            const Sdefed__SurveilRow *x = grid[k * np + i];
            if (!x)
                continue;
            if (!report_released(x->rate_status)) {
                snprintf(tip, sizeof tip, "%.60s %.20s: withheld (%s)", who[k], per->v[i],
                         row_withheld_reason(x));
                svg_cross(&pl, xs[i], 0, 4, SVG_WITHHELD_COLOR, tip);
                nwithheld++;
                continue;
            }
            if (!pooled)
                svg_vwhisker(&pl, xs[i], lo[i], hi[i], 3, col[k]);
            svg_fmt_num(a, sizeof a, x->rate, 4);
            svg_fmt_num(c, sizeof c, x->rate_lo, 4);
            svg_fmt_num(d, sizeof d, x->rate_hi, 4);
            snprintf(tip, sizeof tip, "%.60s %.20s: %s [%s, %s]", who[k], per->v[i], a, c, d);
            svg_point(&pl, xs[i], ys[i], pooled ? 4.5 : 3.5, col[k], true, tip);
        }
    }
    svg_legend_item leg[MAX_LINES + 1];
    for (size_t k = 0; k < nser; k++)
        leg[k] = (svg_legend_item){ who[k], col[k], true, NULL };
    size_t nleg = nser;
    if (nwithheld)
        leg[nleg++] = (svg_legend_item){ "withheld (x on the axis)", SVG_WITHHELD_COLOR, false,
                                         NULL };
    svg_legend(&pl, leg, nleg);
out:
    svg_plot_end(&pl);
    svg_buf_puts(b, "<figcaption>");
    svg_buf_text(b, title);
    svg_buf_puts(b, ". Sites with exact Poisson 95% CIs (whiskers); pooled: summed events over "
                    "summed person-time of the sites that released both, 95% CI shaded. "
                    "A grey x on the axis is a point withheld by disclosure control.");
    if (not_drawn)
        svg_buf_printf(b, " %zu more site%s not drawn (too many lines); all are in the table.",
                       not_drawn, not_drawn == 1 ? "" : "s");
    svg_buf_puts(b, "</figcaption></figure>\n");
    /* the withheld points, by name */
    bool opened = false;
    for (size_t k = 0; k < nser; k++)
        for (size_t i = 0; i < np; i++) {
            const Sdefed__SurveilRow *x = grid[k * np + i];
            if (!x || report_released(x->rate_status))
                continue;
            if (!opened)
                svg_buf_puts(b, "<ul class=\"withheld-list\">\n");
            opened = true;
            svg_buf_puts(b, "<li>");
            svg_buf_text(b, who[k]);
            svg_buf_puts(b, ", ");
            svg_buf_text(b, per->v[i]);
            svg_buf_puts(b, ": <span class=\"withheld\">withheld: ");
            svg_buf_text(b, row_withheld_reason(x));
            svg_buf_puts(b, "</span></li>\n");
        }
    if (opened)
        svg_buf_puts(b, "</ul>\n");
    free(xs);
    free(ys);
    free(lo);
    free(hi);
    free(grid);
}

static void count_td(svg_buf *b, int64_t v, Sdefed__CellStatus st)
{
    if (report_released(st))
        svg_buf_printf(b, "<td class=\"num\">%" PRId64 "</td>", v);
    else
        svg_buf_puts(b, "<td class=\"withheld\">withheld</td>");
}

static void ci_td(svg_buf *b, double e, double lo, double hi, bool ok)
{
    if (!ok) {
        svg_buf_puts(b, "<td class=\"withheld\">withheld</td>");
        return;
    }
    svg_buf_puts(b, "<td class=\"num\">");
    svg_buf_num(b, e, 4);
    svg_buf_puts(b, " [");
    svg_buf_num(b, lo, 4);
    svg_buf_puts(b, ", ");
    svg_buf_num(b, hi, 4);
    svg_buf_puts(b, "]</td>");
}

static void rows_table(svg_buf *b, const char *who, Sdefed__SurveilRow *const *rows, size_t n,
                       bool pooled, bool with_comparator)
{
    for (size_t i = 0; i < n; i++) {
        const Sdefed__SurveilRow *x = rows[i];
        if (!x)
            continue;
        svg_buf_puts(b, "<tr><td>");
        svg_buf_text(b, who);
        svg_buf_puts(b, "</td><td>");
        svg_buf_text(b, x->period);
        svg_buf_puts(b, "</td><td>");
        svg_buf_puts(b, arm_name(x));
        svg_buf_puts(b, "</td><td>");
        report_strata(b, x->strata, x->n_strata, "all");
        svg_buf_puts(b, "</td>");
        count_td(b, x->persons, x->persons_status);
        count_td(b, x->events, x->events_status);
        count_td(b, x->person_days, x->person_days_status);
        ci_td(b, x->rate, x->rate_lo, x->rate_hi, report_released(x->rate_status));
        if (x->comparator || !with_comparator)
            svg_buf_puts(b, "<td class=\"muted\">n/a</td>");
        else
            ci_td(b, x->rate_ratio, x->rr_lo, x->rr_hi, report_released(x->rr_status));
        if (pooled)
            svg_buf_printf(b, "<td class=\"num\">%u%s</td>", x->sites,
                           x->lower_bound ? " (lower bound: some site withheld a number)" : "");
        else
            svg_buf_puts(b, "<td></td>");
        svg_buf_puts(b, "</tr>\n");
    }
}

void report_surveil_section(svg_buf *b, const Sdefed__FederatedResult *r)
{
    names per, ser;
    if (!names_init(&per, MAX_PERIODS) || !names_init(&ser, MAX_SERIES)) {
        free(per.v);
        b->err = b->err ? b->err : SDF_ENOMEM;
        return;
    }
    char k[KEY_LEN];
    for (size_t s = 0; s <= r->n_sites; s++) {
        if (s < r->n_sites && !r->sites[s])
            continue;
        Sdefed__SurveilRow *const *rows = s < r->n_sites ? r->sites[s]->surveil : r->pooled_surveil;
        size_t n = s < r->n_sites ? r->sites[s]->n_surveil : r->n_pooled_surveil;
        for (size_t i = 0; i < n; i++) {
            if (!rows[i])
                continue;
            names_add(&per, rows[i]->period ? rows[i]->period : "");
            series_key(k, sizeof k, rows[i]);
            names_add(&ser, k);
        }
    }
    qsort(per.v, per.n, KEY_LEN, name_cmp);
    bool with_comparator = false;
    for (size_t i = 0; i < r->n_pooled_surveil; i++)
        if (r->pooled_surveil[i] && r->pooled_surveil[i]->comparator)
            with_comparator = true;
    svg_buf_puts(b, "<h2>Event rates by period</h2>\n");
    if (ser.n == 0)
        svg_buf_puts(b, "<p class=\"muted\">No site returned any row.</p>\n");
    for (size_t i = 0; i < ser.n; i++) {
        svg_buf_puts(b, "<h3>");
        svg_buf_text(b, ser.v[i]);
        svg_buf_puts(b, "</h3>\n");
        rate_figure(b, r, ser.v[i], &per);
    }
    svg_buf_puts(b, "<h2>All rows</h2>\n<table><thead><tr><th>site</th><th>period</th>"
                    "<th>arm</th><th>stratum</th><th>persons</th><th>events</th>"
                    "<th>person-days</th><th>rate per 1,000 PY [95% CI]</th>"
                    "<th>rate ratio [95% CI]</th><th>sites</th></tr></thead><tbody>\n");
    rows_table(b, "pooled", r->pooled_surveil, r->n_pooled_surveil, true, with_comparator);
    for (size_t s = 0; s < r->n_sites; s++) {
        const Sdefed__SiteResult *sr = r->sites[s];
        if (!sr)
            continue;
        if (sr->status != SDEFED__SITE_STATUS__SITE_OK) {
            svg_buf_puts(b, "<tr><td>");
            svg_buf_text(b, sr->site);
            svg_buf_puts(b, "</td><td class=\"muted\" colspan=\"9\">no result: ");
            svg_buf_text(b, sr->reason && *sr->reason ? sr->reason : "not ok");
            svg_buf_puts(b, "</td></tr>\n");
            continue;
        }
        rows_table(b, sr->site ? sr->site : "", sr->surveil, sr->n_surveil, false,
                   with_comparator);
    }
    svg_buf_puts(b, "</tbody></table>\n");
    free(per.v);
    free(ser.v);
}

/* ---- monitors ---- */

static double jnum(const json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void mon_meta(svg_buf *b, const char *k, const json_t *m, const char *key)
{
    json_t *v = json_object_get(m, key);
    svg_buf_puts(b, "<tr><th>");
    svg_buf_text(b, k);
    svg_buf_puts(b, "</th><td>");
    if (json_is_string(v))
        svg_buf_text(b, json_string_value(v));
    else if (json_is_number(v))
        svg_buf_num(b, json_number_value(v), 6);
    else
        svg_buf_puts(b, "-");
    svg_buf_puts(b, "</td></tr>\n");
}

static bool look_alerted(const json_t *m, const json_t *look)
{
    json_t *sig = json_object_get(look, "signal");
    if ((json_is_integer(sig) && json_integer_value(sig) != 0) || json_is_true(sig))
        return true;
    const char *period = jstr(look, "period");
    json_t *alerts = json_object_get(m, "alerts");
    for (size_t i = 0; i < json_array_size(alerts); i++) {
        json_t *a = json_object_get(json_array_get(alerts, i), "alert");
        if (*period && strcmp(jstr(a, "period"), period) == 0)
            return true;
    }
    return false;
}

/* The sites named in any look, in order. */
static void look_sites(const json_t *looks, names *sites, const char *member)
{
    for (size_t i = 0; i < json_array_size(looks); i++) {
        json_t *l = json_array_get(looks, i);
        json_t *ss = member ? json_object_get(json_object_get(l, member), "sites")
                            : json_object_get(l, "sites");
        for (size_t k = 0; k < json_array_size(ss); k++) {
            const char *s = jstr(json_array_get(ss, k), "site");
            if (*s)
                names_add(sites, s);
        }
    }
}

static const json_t *look_site(const json_t *look, const char *member, const char *site)
{
    json_t *ss = member ? json_object_get(json_object_get(look, member), "sites")
                        : json_object_get(look, "sites");
    for (size_t k = 0; k < json_array_size(ss); k++)
        if (strcmp(jstr(json_array_get(ss, k), "site"), site) == 0)
            return json_array_get(ss, k);
    return NULL;
}

static double nice_top(double v)
{
    double t[SVG_MAX_TICKS], step;
    if (!(v > 0))
        return 1;
    int n = svg_nice_ticks(0, v * 1.05, 5, t, &step);
    return n > 0 ? (t[n - 1] >= v * 1.05 ? t[n - 1] : t[n - 1] + step) : v * 1.1;
}

static void period_axis(svg_plot *pl, const json_t *looks)
{
    size_t n = json_array_size(looks);
    const char *labels[MAX_PERIODS];
    if (n > MAX_PERIODS)
        n = MAX_PERIODS;
    for (size_t i = 0; i < n; i++)
        labels[i] = jstr(json_array_get(looks, i), "period");
    svg_xcat_labels(pl, labels, n, n > 12 ? (n + 11) / 12 : 1);
}

static void events_figure(svg_buf *b, const json_t *m, const json_t *looks, const names *sites)
{
    size_t n = json_array_size(looks);
    if (n > MAX_PERIODS)
        n = MAX_PERIODS;
    double top = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(looks, i);
        top = fmax(top, fmax(jnum(l, "events"), jnum(l, "expected")));
    }
    top = nice_top(top);
    const double margin[4] = { 70, 20, 44, 50 };
    svg_plot pl;
    svg_buf_puts(b, "<figure>");
    svg_plot_begin(&pl, b, 900, 400, margin, -0.5, (double)n - 0.5, 0, top,
                   "Observed and expected events per period");
    svg_axes(&pl, SVG_AXIS_Y | SVG_GRID, "period", "events");
    period_axis(&pl, looks);
    double xs[MAX_PERIODS], ys[MAX_PERIODS];
    svg_legend_item leg[MAX_LINES + 3];
    size_t nleg = 0;
    char tip[200], a[32], c[32];
    for (size_t s = 0; s < sites->n && s < MAX_LINES - 1; s++) {
        for (size_t i = 0; i < n; i++) {
            json_t *l = json_array_get(looks, i);
            const json_t *ls = look_site(l, NULL, sites->v[s]);
            xs[i] = (double)i;
            ys[i] = ls ? jnum(ls, "events") : NAN;
            if (ls && json_is_true(json_object_get(ls, "partial"))) {
                /* the site withheld (part of) its numbers: no value to draw */
                ys[i] = NAN;
                snprintf(tip, sizeof tip, "%.60s %.20s: withheld", sites->v[s],
                         jstr(l, "period"));
                svg_cross(&pl, xs[i], 0, 4, SVG_WITHHELD_COLOR, tip);
            }
        }
        svg_polyline(&pl, xs, ys, n, svg_color(s), 1.2, NULL);
        for (size_t i = 0; i < n; i++)
            svg_point(&pl, xs[i], ys[i], 2.5, svg_color(s), true, NULL);
        leg[nleg++] = (svg_legend_item){ sites->v[s], svg_color(s), true, NULL };
    }
    for (size_t i = 0; i < n; i++) {
        xs[i] = (double)i;
        ys[i] = jnum(json_array_get(looks, i), "expected");
    }
    svg_polyline(&pl, xs, ys, n, "#777777", 2, "6 4");
    leg[nleg++] = (svg_legend_item){ "expected (pooled)", "#777777", true, "6 4" };
    for (size_t i = 0; i < n; i++)
        ys[i] = jnum(json_array_get(looks, i), "events");
    svg_polyline(&pl, xs, ys, n, SVG_POOLED_COLOR, 2.5, NULL);
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(looks, i);
        json_t *part = json_object_get(l, "partial");
        bool partial = json_is_true(part) || (json_is_integer(part) && json_integer_value(part));
        svg_fmt_num(a, sizeof a, ys[i], 6);
        svg_fmt_num(c, sizeof c, jnum(l, "expected"), 4);
        snprintf(tip, sizeof tip, "%.20s: observed %s, expected %s%s", jstr(l, "period"), a, c,
                 partial ? " (partial: some numbers withheld)" : "");
        svg_point(&pl, xs[i], ys[i], 4.5, SVG_POOLED_COLOR, !partial, tip);
        if (look_alerted(m, l))
            svg_point(&pl, xs[i], ys[i], 9, SVG_ALERT_COLOR, false, "alert");
    }
    leg[nleg++] = (svg_legend_item){ "observed (pooled)", SVG_POOLED_COLOR, true, NULL };
    leg[nleg++] = (svg_legend_item){ "alert", SVG_ALERT_COLOR, false, NULL };
    svg_legend(&pl, leg, nleg);
    svg_plot_end(&pl);
    svg_buf_puts(b, "<figcaption>Released events per counted period, pooled (black; an open "
                    "point is a partial look whose numbers were partly withheld) and per site "
                    "(a grey x on the axis: the site withheld its numbers), with the expected "
                    "count (dashed). Red rings: periods that raised an alert.");
    if (sites->n > MAX_LINES - 1)
        svg_buf_printf(b, " %zu more sites not drawn (too many lines); all are in the table.",
                       sites->n - (MAX_LINES - 1));
    svg_buf_puts(b, "</figcaption></figure>\n");
}

static void statistic_figure(svg_buf *b, const json_t *m, const json_t *looks)
{
    size_t n = json_array_size(looks);
    if (n > MAX_PERIODS)
        n = MAX_PERIODS;
    double thr = jnum(m, "threshold"), top = isfinite(thr) ? thr : 0;
    for (size_t i = 0; i < n; i++)
        top = fmax(top, jnum(json_array_get(looks, i), "statistic"));
    top = nice_top(top);
    const double margin[4] = { 70, 20, 44, 50 };
    svg_plot pl;
    char title[200];
    snprintf(title, sizeof title, "Sequential test statistic (%s) and its threshold",
             *jstr(m, "test") ? jstr(m, "test") : "test");
    svg_buf_puts(b, "<figure>");
    svg_plot_begin(&pl, b, 900, 380, margin, -0.5, (double)n - 0.5, 0, top, title);
    svg_axes(&pl, SVG_AXIS_Y | SVG_GRID, "period", "statistic");
    period_axis(&pl, looks);
    if (isfinite(thr))
        svg_line(&pl, -0.5, thr, (double)n - 0.5, thr, SVG_ALERT_COLOR, 1.5, "6 4");
    double xs[MAX_PERIODS], ys[MAX_PERIODS];
    for (size_t i = 0; i < n; i++) {
        xs[i] = (double)i;
        ys[i] = jnum(json_array_get(looks, i), "statistic");
    }
    svg_polyline(&pl, xs, ys, n, "#0072b2", 2, NULL);
    char tip[160], a[32];
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(looks, i);
        bool al = look_alerted(m, l);
        svg_fmt_num(a, sizeof a, ys[i], 4);
        snprintf(tip, sizeof tip, "%.20s: statistic %s%s", jstr(l, "period"), a,
                 al ? " (alert)" : "");
        svg_point(&pl, xs[i], ys[i], al ? 6 : 3.5, al ? SVG_ALERT_COLOR : "#0072b2", true, tip);
        if (al)
            svg_text_at(&pl, svg_px(&pl, xs[i]), svg_py(&pl, ys[i]) - 10, "middle", 11,
                        SVG_ALERT_COLOR, "alert");
    }
    const svg_legend_item leg[] = { { "statistic", "#0072b2", true, NULL },
                                    { "threshold", SVG_ALERT_COLOR, true, "6 4" },
                                    { "alert", SVG_ALERT_COLOR, false, NULL } };
    svg_legend(&pl, leg, 3);
    svg_plot_end(&pl);
    svg_buf_puts(b, "<figcaption>");
    svg_buf_text(b, title);
    svg_buf_puts(b, ": the test signals when the statistic reaches the threshold (red dashed); "
                    "alert points in red.</figcaption></figure>\n");
}

static bool in_list(const json_t *a, const char *s)
{
    for (size_t i = 0; i < json_array_size(a); i++)
        if (strcmp(json_string_value(json_array_get(a, i)) ? json_string_value(json_array_get(a, i))
                                                            : "",
                   s) == 0)
            return true;
    return false;
}

/* Drift: metric "auc" (with auc_lo/auc_hi) or "cal_slope"; band keys. */
static void drift_figure(svg_buf *b, const json_t *m, const json_t *looks, const char *metric,
                         const char *bmin, const char *bmax, const char *label)
{
    size_t n = json_array_size(looks);
    if (n > MAX_PERIODS)
        n = MAX_PERIODS;
    json_t *band = json_object_get(m, "band");
    double lo_b = jnum(band, bmin), hi_b = jnum(band, bmax);
    bool is_auc = strcmp(metric, "auc") == 0;
    names sites;
    if (!names_init(&sites, MAX_SERIES)) {
        b->err = b->err ? b->err : SDF_ENOMEM;
        return;
    }
    look_sites(looks, &sites, "drift");
    size_t n_drawn = sites.n < MAX_LINES - 1 ? sites.n : MAX_LINES - 1;
    double y0 = INFINITY, y1 = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_object_get(json_array_get(looks, i), "drift");
        json_t *p = json_object_get(d, "pooled");
        double v[3] = { jnum(p, metric), is_auc ? jnum(p, "auc_lo") : NAN,
                        is_auc ? jnum(p, "auc_hi") : NAN };
        for (int k = 0; k < 3; k++)
            if (isfinite(v[k])) {
                y0 = fmin(y0, v[k]);
                y1 = fmax(y1, v[k]);
            }
        json_t *ss = json_object_get(d, "sites");
        for (size_t k = 0; k < json_array_size(ss); k++) {
            double sv = jnum(json_array_get(ss, k), metric);
            if (isfinite(sv)) {
                y0 = fmin(y0, sv);
                y1 = fmax(y1, sv);
            }
        }
    }
    if (isfinite(lo_b)) {
        y0 = fmin(y0, lo_b);
        y1 = fmax(y1, lo_b);
    }
    if (isfinite(hi_b)) {
        y0 = fmin(y0, hi_b);
        y1 = fmax(y1, hi_b);
    }
    if (!isfinite(y0) || !isfinite(y1)) {
        y0 = is_auc ? 0.5 : 0;
        y1 = is_auc ? 1 : 2;
    }
    double pad = fmax((y1 - y0) * 0.1, 0.02);
    y0 -= pad;
    y1 += pad;
    if (is_auc) {
        y0 = fmax(0, y0);
        y1 = fmin(1, y1);
    }
    const double margin[4] = { 70, 20, 44, 50 };
    svg_plot pl;
    char title[160];
    snprintf(title, sizeof title, "Drift: %s per period and the agreed band", label);
    svg_buf_puts(b, "<figure>");
    svg_plot_begin(&pl, b, 900, 380, margin, -0.5, (double)n - 0.5, y0, y1, title);
    if (isfinite(lo_b) || isfinite(hi_b))
        svg_rect(&pl, -0.5, (double)n - 0.5, isfinite(lo_b) ? lo_b : y0,
                 isfinite(hi_b) ? hi_b : y1, "#2e8b57", 0.15);
    svg_axes(&pl, SVG_AXIS_Y | SVG_GRID, "period", label);
    period_axis(&pl, looks);
    double xs[MAX_PERIODS], ys[MAX_PERIODS];
    char tip[200], a[32];
    for (size_t s = 0; s < n_drawn; s++) {
        for (size_t i = 0; i < n; i++) {
            const json_t *ls = look_site(json_array_get(looks, i), "drift", sites.v[s]);
            json_t *rel = ls ? json_object_get(ls, "released") : NULL;
            bool ok = ls && !json_is_false(rel);
            xs[i] = (double)i;
            ys[i] = ok ? jnum(ls, metric) : NAN;
            if (ls && !ok) {
                snprintf(tip, sizeof tip, "%.60s %.20s: withheld", sites.v[s],
                         jstr(json_array_get(looks, i), "period"));
                svg_cross(&pl, xs[i], y0, 4, SVG_WITHHELD_COLOR, tip);
            }
        }
        svg_polyline(&pl, xs, ys, n, svg_color(s), 1.2, NULL);
        for (size_t i = 0; i < n; i++)
            svg_point(&pl, xs[i], ys[i], 2.5, svg_color(s), true, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_object_get(json_array_get(looks, i), "drift");
        ys[i] = jnum(json_object_get(d, "pooled"), metric);
    }
    svg_polyline(&pl, xs, ys, n, SVG_POOLED_COLOR, 2.5, NULL);
    size_t out_n = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(looks, i), *d = json_object_get(l, "drift");
        json_t *p = json_object_get(d, "pooled");
        if (is_auc)
            svg_vwhisker(&pl, xs[i], jnum(p, "auc_lo"), jnum(p, "auc_hi"), 3, SVG_POOLED_COLOR);
        bool out = in_list(json_object_get(d, "out_of_band"), metric);
        svg_fmt_num(a, sizeof a, ys[i], 4);
        snprintf(tip, sizeof tip, "%.20s: pooled %s %s%s", jstr(l, "period"), label, a,
                 out ? " (out of band)" : "");
        svg_point(&pl, xs[i], ys[i], out ? 6 : 4, out ? SVG_ALERT_COLOR : SVG_POOLED_COLOR, true,
                  tip);
        if (out) {
            svg_point(&pl, xs[i], ys[i], 10, SVG_ALERT_COLOR, false, NULL);
            out_n++;
        }
    }
    svg_legend_item leg[MAX_LINES + 3];
    size_t nleg = 0;
    for (size_t s = 0; s < n_drawn; s++)
        leg[nleg++] = (svg_legend_item){ sites.v[s], svg_color(s), true, NULL };
    leg[nleg++] = (svg_legend_item){ "pooled", SVG_POOLED_COLOR, true, NULL };
    leg[nleg++] = (svg_legend_item){ "agreed band", "#2e8b57", false, NULL };
    leg[nleg++] = (svg_legend_item){ "out of band", SVG_ALERT_COLOR, false, NULL };
    svg_legend(&pl, leg, nleg);
    svg_plot_end(&pl);
    svg_buf_puts(b, "<figcaption>");
    svg_buf_text(b, title);
    svg_buf_printf(b, ". Shaded: the agreed band; red: %zu pooled point%s out of band.",
                   out_n, out_n == 1 ? "" : "s");
    if (!isfinite(lo_b) && !isfinite(hi_b))
        svg_buf_puts(b, " No band agreed for this metric.");
    if (sites.n > n_drawn)
        svg_buf_printf(b, " %zu more sites not drawn (too many lines).", sites.n - n_drawn);
    svg_buf_puts(b, "</figcaption></figure>\n");
    free(sites.v);
}

static bool looks_have(const json_t *looks, const char *key)
{
    for (size_t i = 0; i < json_array_size(looks); i++)
        if (json_is_number(json_object_get(json_array_get(looks, i), key)))
            return true;
    return false;
}

static bool has_drift(const json_t *m, const json_t *looks)
{
    if (json_is_object(json_object_get(m, "band")))
        return true;
    for (size_t i = 0; i < json_array_size(looks); i++)
        if (json_is_object(json_object_get(json_array_get(looks, i), "drift")))
            return true;
    return false;
}

/* A cell from a JSON value: absent reads "-", null (a withheld number) "withheld". */
static void td_json(svg_buf *b, const json_t *v, int sig)
{
    if (!v) {
        svg_buf_puts(b, "<td class=\"muted\">-");
    } else if (json_is_number(v)) {
        svg_buf_puts(b, "<td class=\"num\">");
        svg_buf_num(b, json_number_value(v), sig);
    } else if (json_is_string(v)) {
        svg_buf_puts(b, "<td>");
        svg_buf_text(b, json_string_value(v));
    } else if (json_is_boolean(v)) {
        svg_buf_puts(b, json_is_true(v) ? "<td>yes" : "<td>no");
    } else {
        svg_buf_puts(b, "<td class=\"withheld\">withheld");
    }
    svg_buf_puts(b, "</td>");
}

static void iso_ms(char *out, size_t n, double ms)
{
    struct tm tm;
    time_t t = (time_t)(ms / 1000);
    if (!isfinite(ms) || ms <= 0 || !gmtime_r(&t, &tm) ||
        strftime(out, n, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(out, n, "-");
}

static void looks_table(svg_buf *b, const json_t *m, const json_t *looks, bool drift)
{
    svg_buf_puts(b, "<h3>Looks</h3>\n<table><thead><tr><th>period</th><th>run</th>"
                    "<th>events</th><th>person-days</th><th>expected</th><th>statistic</th>"
                    "<th>signal</th><th>partial</th><th>sites (events / expected)</th>");
    if (drift)
        svg_buf_puts(b, "<th>pooled AUC [95% CI]</th><th>pooled calibration slope</th>"
                        "<th>out of band</th>");
    svg_buf_puts(b, "</tr></thead><tbody>\n");
    char when[64];
    for (size_t i = 0; i < json_array_size(looks); i++) {
        json_t *l = json_array_get(looks, i);
        bool al = look_alerted(m, l);
        svg_buf_puts(b, al ? "<tr class=\"alert\">" : "<tr>");
        td_json(b, json_object_get(l, "period"), 4);
        iso_ms(when, sizeof when, jnum(l, "run_ms"));
        svg_buf_puts(b, "<td>");
        svg_buf_text(b, when);
        svg_buf_puts(b, "</td>");
        td_json(b, json_object_get(l, "events"), 10);
        td_json(b, json_object_get(l, "person_days"), 12);
        td_json(b, json_object_get(l, "expected"), 4);
        td_json(b, json_object_get(l, "statistic"), 4);
        svg_buf_puts(b, al ? "<td class=\"alert\">alert</td>" : "<td>-</td>");
        json_t *part = json_object_get(l, "partial");
        svg_buf_puts(b, json_is_true(part) || (json_is_integer(part) && json_integer_value(part))
                            ? "<td class=\"withheld\">partial: some numbers withheld</td>"
                            : "<td>-</td>");
        svg_buf_puts(b, "<td>");
        json_t *ss = json_object_get(l, "sites");
        for (size_t k = 0; k < json_array_size(ss); k++) {
            json_t *s = json_array_get(ss, k);
            if (k)
                svg_buf_puts(b, "; ");
            svg_buf_text(b, jstr(s, "site"));
            svg_buf_puts(b, " ");
            if (json_is_true(json_object_get(s, "partial"))) {
                svg_buf_puts(b, "<span class=\"withheld\">withheld</span>");
            } else if (json_is_number(json_object_get(s, "events"))) {
                svg_buf_num(b, jnum(s, "events"), 10);
                svg_buf_puts(b, " / ");
                svg_buf_num(b, jnum(s, "expected"), 3);
            } else {
                svg_buf_text(b, jstr(s, "status"));
            }
        }
        svg_buf_puts(b, "</td>");
        if (drift) {
            json_t *d = json_object_get(l, "drift"), *p = json_object_get(d, "pooled");
            if (json_is_number(json_object_get(p, "auc"))) {
                svg_buf_puts(b, "<td class=\"num\">");
                svg_buf_num(b, jnum(p, "auc"), 4);
                svg_buf_puts(b, " [");
                svg_buf_num(b, jnum(p, "auc_lo"), 4);
                svg_buf_puts(b, ", ");
                svg_buf_num(b, jnum(p, "auc_hi"), 4);
                svg_buf_puts(b, "]</td>");
            } else {
                td_json(b, d ? json_object_get(p, "auc") : NULL, 4);
            }
            td_json(b, d ? json_object_get(p, "cal_slope") : NULL, 4);
            json_t *ob = json_object_get(d, "out_of_band");
            svg_buf_puts(b, json_array_size(ob) ? "<td class=\"alert\">" : "<td>");
            for (size_t k = 0; k < json_array_size(ob); k++) {
                if (k)
                    svg_buf_puts(b, ", ");
                svg_buf_text(b, json_string_value(json_array_get(ob, k)));
            }
            svg_buf_puts(b, "</td>");
        }
        svg_buf_puts(b, "</tr>\n");
    }
    svg_buf_puts(b, "</tbody></table>\n");
}

static void alerts_table(svg_buf *b, const json_t *m)
{
    json_t *alerts = json_object_get(m, "alerts");
    svg_buf_puts(b, "<h3>Alerts</h3>\n");
    if (json_array_size(alerts) == 0) {
        svg_buf_puts(b, "<p>No alert has been raised.</p>\n");
        return;
    }
    svg_buf_puts(b, "<table><thead><tr><th>alert</th><th>period</th><th>test / metric</th>"
                    "<th>sites</th><th>statistic</th><th>threshold</th><th>observed</th>"
                    "<th>expected</th><th>raised</th></tr></thead><tbody>\n");
    char when[64];
    for (size_t i = 0; i < json_array_size(alerts); i++) {
        json_t *o = json_array_get(alerts, i), *a = json_object_get(o, "alert");
        svg_buf_puts(b, "<tr class=\"alert\">");
        td_json(b, json_object_get(o, "id"), 10);
        td_json(b, json_object_get(a, "period"), 4);
        svg_buf_puts(b, "<td>");
        svg_buf_text(b, jstr(a, "test"));
        if (*jstr(a, "metric")) {
            svg_buf_puts(b, ": ");
            svg_buf_text(b, jstr(a, "metric"));
        }
        svg_buf_puts(b, "</td><td>");
        json_t *ss = json_object_get(a, "sites");
        for (size_t k = 0; k < json_array_size(ss); k++) {
            if (k)
                svg_buf_puts(b, ", ");
            svg_buf_text(b, json_string_value(json_array_get(ss, k)));
        }
        svg_buf_puts(b, "</td>");
        td_json(b, json_object_get(a, "statistic"), 4);
        td_json(b, json_object_get(a, "threshold"), 4);
        td_json(b, json_object_get(a, "observed"), 6);
        td_json(b, json_object_get(a, "expected"), 4);
        iso_ms(when, sizeof when, jnum(o, "created_ms"));
        svg_buf_puts(b, "<td>");
        svg_buf_text(b, when);
        svg_buf_puts(b, "</td></tr>\n");
    }
    svg_buf_puts(b, "</tbody></table>\n");
}

void report_monitor_section(svg_buf *b, const json_t *m)
{
    char when[64];
    svg_buf_puts(b, "<table class=\"meta\"><tbody>\n");
    mon_meta(b, "monitor", m, "id");
    mon_meta(b, "owner", m, "owner");
    mon_meta(b, "kind", m, "kind");
    mon_meta(b, "state", m, "state");
    mon_meta(b, "test", m, "test");
    mon_meta(b, "threshold", m, "threshold");
    mon_meta(b, "alpha", m, "alpha");
    mon_meta(b, "length (expected events)", m, "length");
    mon_meta(b, "expected rate per 1,000 person-years (0: comparator)", m, "expected_rate");
    mon_meta(b, "every (ms)", m, "every_ms");
    mon_meta(b, "cumulative observed events", m, "observed");
    mon_meta(b, "cumulative expected events", m, "expected");
    json_t *band = json_object_get(m, "band");
    if (json_is_object(band)) {
        mon_meta(b, "period", m, "period");
        mon_meta(b, "from", m, "from");
        mon_meta(b, "to", m, "to");
        mon_meta(b, "agreed band: AUC min", band, "auc_min");
        mon_meta(b, "agreed band: AUC max", band, "auc_max");
        mon_meta(b, "agreed band: slope min", band, "slope_min");
        mon_meta(b, "agreed band: slope max", band, "slope_max");
    }
    iso_ms(when, sizeof when, jnum(m, "created_ms"));
    svg_buf_puts(b, "<tr><th>created</th><td>");
    svg_buf_text(b, when);
    svg_buf_puts(b, "</td></tr>\n</tbody></table>\n<h2>Spec</h2>\n");
    report_json_pre(b, json_object_get(m, "spec"));
    json_t *looks = json_object_get(m, "looks");
    svg_buf_puts(b, "<h2>Monitoring</h2>\n");
    if (json_array_size(looks) == 0) {
        svg_buf_puts(b, "<p class=\"muted\">No period has been counted yet.</p>\n");
    } else {
        names sites;
        if (!names_init(&sites, MAX_SERIES)) {
            b->err = b->err ? b->err : SDF_ENOMEM;
            return;
        }
        look_sites(looks, &sites, NULL);
        /* a drift monitor's looks carry no events or statistic */
        if (looks_have(looks, "events") || looks_have(looks, "expected"))
            events_figure(b, m, looks, &sites);
        if (looks_have(looks, "statistic"))
            statistic_figure(b, m, looks);
        free(sites.v);
        if (has_drift(m, looks)) {
            svg_buf_puts(b, "<h2>Model drift</h2>\n");
            drift_figure(b, m, looks, "auc", "auc_min", "auc_max", "AUC");
            drift_figure(b, m, looks, "cal_slope", "slope_min", "slope_max", "calibration slope");
        }
    }
    looks_table(b, m, looks, has_drift(m, looks));
    alerts_table(b, m);
}
