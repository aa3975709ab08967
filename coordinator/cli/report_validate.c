/* coordinator/cli/report_validate.c — the `validate` part of `sdefed report` (issue 5).
 *
 * Renders, for the whole population and for each subgroup: a table of the
 * headline metrics per site and pooled, a forest plot of the per-site AUCs
 * with their 95% CIs and the pooled DerSimonian-Laird estimate (diamond)
 * and prediction interval; for the whole population also ROC curves (from
 * the released ROC points when a site sent them, otherwise through the
 * released threshold points), calibration plots (mean predicted vs observed
 * per bin, point area by n), the threshold table and the model-version
 * comparison when present. Every withheld group, threshold or bin is named
 * with its reason, never given a number.
 */
#include "cli/report.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sdefed/spec.h"

#define KEY_LEN 512
#define MAX_GROUPS 400
#define LABEL_MAX 30
#define MAX_CURVE 1100   /* points of one ROC curve */

static bool count_ok(const Sdefed__ValidateCount *c)
{
    return c && report_released(c->status);
}

static const Sdefed__Validation *site_group(const Sdefed__SiteResult *s, const char *key)
{
    char k[KEY_LEN];
    for (size_t i = 0; s && i < s->n_validations; i++) {
        const Sdefed__Validation *v = s->validations[i];
        if (!v)
            continue;
        report_strata_key(k, sizeof k, v->strata, v->n_strata);
        if (strcmp(k, key) == 0)
            return v;
    }
    return NULL;
}

static const Sdefed__PooledValidation *pooled_group(const Sdefed__FederatedResult *r,
                                                    const char *key)
{
    char k[KEY_LEN];
    for (size_t i = 0; i < r->n_pooled_validations; i++) {
        const Sdefed__PooledValidation *p = r->pooled_validations[i];
        if (!p)
            continue;
        report_strata_key(k, sizeof k, p->strata, p->n_strata);
        if (strcmp(k, key) == 0)
            return p;
    }
    return NULL;
}

/* The distinct group keys: the whole population ("") first, then the
 * others in order of appearance (pooled first, then sites). */
typedef struct keys {
    char (*k)[KEY_LEN];
    size_t n;
} keys;

static void keys_add(keys *ks, Sdefed__Stratum *const *s, size_t n)
{
    char k[KEY_LEN];
    report_strata_key(k, sizeof k, s, n);
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->k[i], k) == 0)
            return;
    if (ks->n < MAX_GROUPS)
        memcpy(ks->k[ks->n++], k, KEY_LEN);
}

static bool keys_collect(const Sdefed__FederatedResult *r, keys *ks)
{
    ks->n = 0;
    ks->k = calloc(MAX_GROUPS, KEY_LEN);
    if (!ks->k)
        return false;
    ks->k[0][0] = '\0';
    ks->n = 1;
    for (size_t i = 0; i < r->n_pooled_validations; i++)
        if (r->pooled_validations[i])
            keys_add(ks, r->pooled_validations[i]->strata, r->pooled_validations[i]->n_strata);
    for (size_t s = 0; s < r->n_sites; s++)
        for (size_t i = 0; r->sites[s] && i < r->sites[s]->n_validations; i++)
            if (r->sites[s]->validations[i])
                keys_add(ks, r->sites[s]->validations[i]->strata,
                         r->sites[s]->validations[i]->n_strata);
    return true;
}

/* "0.812 [0.781, 0.843]" */
static void est_ci(svg_buf *b, double e, double lo, double hi)
{
    svg_buf_num(b, e, 4);
    svg_buf_puts(b, " [");
    svg_buf_num(b, lo, 4);
    svg_buf_puts(b, ", ");
    svg_buf_num(b, hi, 4);
    svg_buf_puts(b, "]");
}

static void count_cell(svg_buf *b, const Sdefed__ValidateCount *c)
{
    if (count_ok(c))
        svg_buf_printf(b, "<td class=\"num\">%" PRId64 "</td>", c->value);
    else
        svg_buf_puts(b, "<td class=\"withheld\">withheld</td>");
}

static void num_cell(svg_buf *b, double v)
{
    svg_buf_puts(b, "<td class=\"num\">");
    svg_buf_num(b, v, 4);
    svg_buf_puts(b, "</td>");
}

static void site_name_cell(svg_buf *b, const char *site)
{
    svg_buf_puts(b, "<td>");
    svg_buf_text(b, site);
    svg_buf_puts(b, "</td>");
}

/* A site that gave no metrics at all: its status and reason. */
static bool site_unavailable(svg_buf *b, const Sdefed__SiteResult *s, int colspan)
{
    if (s->status == SDEFED__SITE_STATUS__SITE_OK)
        return false;
    svg_buf_printf(b, "<td class=\"muted\" colspan=\"%d\">no result: ", colspan);
    svg_buf_text(b, spec_site_status_name(s->status));
    if (s->reason && *s->reason) {
        svg_buf_puts(b, ": ");
        svg_buf_text(b, s->reason);
    }
    svg_buf_puts(b, "</td>");
    return true;
}

/* Sum of a count over the sites that released the group: returns false
 * when no site released it; *partial when some site withheld it. */
static bool sum_sites(const Sdefed__FederatedResult *r, const char *key, bool events, int64_t *sum,
                      bool *partial)
{
    bool any = false;
    *sum = 0;
    *partial = false;
    for (size_t s = 0; s < r->n_sites; s++) {
        const Sdefed__Validation *v = site_group(r->sites[s], key);
        if (!v)
            continue;
        const Sdefed__ValidateCount *c = events ? v->events : v->n;
        if (v->released && count_ok(c)) {
            *sum += c->value;
            any = true;
        } else {
            *partial = true;
        }
    }
    return any;
}

static void metrics_table(svg_buf *b, const Sdefed__FederatedResult *r, const char *key)
{
    svg_buf_puts(b, "<table><thead><tr><th>site</th><th>n</th><th>events</th>"
                    "<th>AUC [95% CI]</th><th>Brier</th><th>O/E</th><th>CITL</th>"
                    "<th>calibration slope</th><th>calibration intercept</th></tr></thead>"
                    "<tbody>\n");
    for (size_t s = 0; s < r->n_sites; s++) {
        const Sdefed__SiteResult *sr = r->sites[s];
        if (!sr)
            continue;
        svg_buf_puts(b, "<tr>");
        site_name_cell(b, sr->site);
        const Sdefed__Validation *v = site_group(sr, key);
        if (site_unavailable(b, sr, 8)) {   /* writes its status and reason */
            svg_buf_puts(b, "</tr>\n");
            continue;
        }
        if (!v) {
            svg_buf_puts(b, "<td class=\"muted\" colspan=\"8\">not reported by this site "
                            "(no such rows)</td>");
        } else if (!v->released) {
            report_withheld_cell(b, 8, v->withheld_reason);
        } else {
            count_cell(b, v->n);
            count_cell(b, v->events);
            svg_buf_puts(b, "<td class=\"num\">");
            est_ci(b, v->auc, v->auc_lo, v->auc_hi);
            svg_buf_puts(b, "</td>");
            num_cell(b, v->brier);
            num_cell(b, v->oe_ratio);
            num_cell(b, v->citl);
            if (v->cal_converged) {
                num_cell(b, v->cal_slope);
                num_cell(b, v->cal_intercept);
            } else {
                svg_buf_puts(b, "<td class=\"muted\" colspan=\"2\">recalibration fit did not "
                                "converge</td>");
            }
        }
        svg_buf_puts(b, "</tr>\n");
    }
    const Sdefed__PooledValidation *p = pooled_group(r, key);
    svg_buf_puts(b, "<tr><th>pooled</th>");
    int64_t n, e;
    bool pn, pe;
    if (sum_sites(r, key, false, &n, &pn))
        svg_buf_printf(b, "<td class=\"num\">%" PRId64 "%s</td>", n, pn ? "+" : "");
    else
        svg_buf_puts(b, "<td class=\"withheld\">withheld</td>");
    if (sum_sites(r, key, true, &e, &pe))
        svg_buf_printf(b, "<td class=\"num\">%" PRId64 "%s</td>", e, pe ? "+" : "");
    else
        svg_buf_puts(b, "<td class=\"withheld\">withheld</td>");
    if (p && p->sites > 0) {
        svg_buf_puts(b, "<td class=\"num\">");
        est_ci(b, p->auc, p->auc_lo, p->auc_hi);
        svg_buf_printf(b, "</td><td colspan=\"5\">random effects (DerSimonian-Laird, logit "
                          "scale) over %u site%s",
                       p->sites, p->sites == 1 ? "" : "s");
        if (p->has_pi) {
            svg_buf_puts(b, "; 95% prediction interval [");
            svg_buf_num(b, p->pi_lo, 4);
            svg_buf_puts(b, ", ");
            svg_buf_num(b, p->pi_hi, 4);
            svg_buf_puts(b, "]");
        }
        svg_buf_puts(b, "; I\xc2\xb2 ");
        svg_buf_num(b, p->i2 * 100, 3);
        svg_buf_puts(b, "%; \xcf\x84\xc2\xb2 ");
        svg_buf_num(b, p->tau2, 4);
        svg_buf_puts(b, "; Q ");
        svg_buf_num(b, p->q, 4);
        if (p->partial)
            svg_buf_puts(b, "; partial (some site withheld part of this group)");
        svg_buf_puts(b, "</td>");
    } else {
        svg_buf_puts(b, "<td class=\"withheld\" colspan=\"6\">withheld: no site released "
                        "an AUC for this group</td>");
    }
    svg_buf_puts(b, "</tr>\n</tbody></table>\n<p class=\"muted\">Brier, O/E, CITL and "
                    "calibration slope are per site; pooled n and events are the sums of the "
                    "released site values (+: some site withheld its value).</p>\n");
}

/* A label cut to LABEL_MAX bytes (svg_buf_text repairs a cut character). */
static void short_label(char *out, size_t n, const char *s)
{
    snprintf(out, n, "%.*s%s", LABEL_MAX, s ? s : "", s && strlen(s) > LABEL_MAX ? "..." : "");
}

static void forest_plot(svg_buf *b, const Sdefed__FederatedResult *r, const char *key,
                        const char *title)
{
    const Sdefed__PooledValidation *p = pooled_group(r, key);
    size_t rows = r->n_sites + 1 + (p && p->has_pi ? 1 : 0);
    double xmin = 0.5;
    for (size_t s = 0; s < r->n_sites; s++) {
        const Sdefed__Validation *v = site_group(r->sites[s], key);
        if (v && v->released && isfinite(v->auc_lo) && v->auc_lo < xmin)
            xmin = v->auc_lo;
    }
    if (p && p->sites > 0 && p->auc_lo < xmin)
        xmin = p->auc_lo;
    if (p && p->has_pi && p->pi_lo < xmin)
        xmin = p->pi_lo;
    xmin = floor(xmin * 10) / 10;
    if (xmin < 0)
        xmin = 0;
    double height = 70 + 26.0 * (double)rows;
    const double margin[4] = { 190, 230, 30, 44 };
    svg_plot pl;
    svg_buf_puts(b, "<figure>");
    svg_plot_begin(&pl, b, 900, height, margin, xmin, 1.0, 0.0, (double)rows + 1, title);
    svg_axes(&pl, SVG_AXIS_X | SVG_GRID, "AUC (95% CI)", NULL);
    svg_line(&pl, 0.5, 0, 0.5, (double)rows + 1, "#999999", 1, "4 3");
    char lab[64], txt[160], n1[32], n2[32], n3[32];
    double y = (double)rows;
    for (size_t s = 0; s < r->n_sites; s++, y -= 1) {
        const Sdefed__SiteResult *sr = r->sites[s];
        short_label(lab, sizeof lab, sr ? sr->site : "");
        svg_text_at(&pl, 8, svg_py(&pl, y) + 4, "start", 12, "#111111", lab);
        const Sdefed__Validation *v = site_group(sr, key);
        const char *col = svg_color(s);
        if (sr && sr->status == SDEFED__SITE_STATUS__SITE_OK && v && v->released) {
            svg_hwhisker(&pl, y, v->auc_lo, v->auc_hi, 4, col);
            svg_fmt_num(n1, sizeof n1, v->auc, 4);
            svg_fmt_num(n2, sizeof n2, v->auc_lo, 4);
            svg_fmt_num(n3, sizeof n3, v->auc_hi, 4);
            snprintf(txt, sizeof txt, "%s [%s, %s]", n1, n2, n3);
            svg_point(&pl, v->auc, y, 5, col, true, txt);
            svg_text_at(&pl, pl.right + 10, svg_py(&pl, y) + 4, "start", 12, "#111111", txt);
        } else {
            const char *why = !sr || sr->status != SDEFED__SITE_STATUS__SITE_OK
                                  ? "no result"
                                  : !v ? "not reported"
                                       : v->withheld_reason && *v->withheld_reason
                                             ? v->withheld_reason
                                             : "";
            snprintf(txt, sizeof txt, "%s%.60s%s",
                     v && !v->released ? "withheld" : "", v && !v->released && *why ? ": " : "",
                     why);
            if (strlen(txt) >= 68)
                memcpy(txt + 64, "...", 4);
            svg_text_at(&pl, pl.right + 10, svg_py(&pl, y) + 4, "start", 11,
                        v && !v->released ? "#8a4b00" : SVG_WITHHELD_COLOR, txt);
        }
    }
    svg_text_at(&pl, 8, svg_py(&pl, y) + 4, "start", 12, "#111111", "pooled (random effects)");
    if (p && p->sites > 0) {
        svg_fmt_num(n1, sizeof n1, p->auc, 4);
        svg_fmt_num(n2, sizeof n2, p->auc_lo, 4);
        svg_fmt_num(n3, sizeof n3, p->auc_hi, 4);
        snprintf(txt, sizeof txt, "%s [%s, %s]", n1, n2, n3);
        svg_diamond(&pl, p->auc, y, p->auc_lo, p->auc_hi, 8, SVG_POOLED_COLOR, txt);
        svg_text_at(&pl, pl.right + 10, svg_py(&pl, y) + 4, "start", 12, "#111111", txt);
        svg_line(&pl, p->auc, 0, p->auc, (double)rows + 1, SVG_POOLED_COLOR, 0.8, "2 3");
        if (p->has_pi) {
            y -= 1;
            svg_text_at(&pl, 8, svg_py(&pl, y) + 4, "start", 12, "#111111",
                        "95% prediction interval");
            svg_hwhisker(&pl, y, p->pi_lo, p->pi_hi, 5, SVG_POOLED_COLOR);
            svg_fmt_num(n2, sizeof n2, p->pi_lo, 4);
            svg_fmt_num(n3, sizeof n3, p->pi_hi, 4);
            snprintf(txt, sizeof txt, "[%s, %s]", n2, n3);
            svg_text_at(&pl, pl.right + 10, svg_py(&pl, y) + 4, "start", 12, "#111111", txt);
        }
    } else {
        svg_text_at(&pl, pl.right + 10, svg_py(&pl, y) + 4, "start", 11, "#8a4b00",
                    "withheld: no site released an AUC");
    }
    svg_plot_end(&pl);
    svg_buf_puts(b, "<figcaption>Forest plot: ");
    svg_buf_text(b, title);
    svg_buf_puts(b, ". Points: site AUC with DeLong 95% CI; diamond: pooled estimate and its "
                    "95% CI; dashed line: AUC 0.5.</figcaption></figure>\n");
}

/* ---- ROC ---- */

typedef struct pt {
    double x, y;
} pt;

static int pt_cmp(const void *a, const void *b)
{
    const pt *p = a, *q = b;
    if (p->x != q->x)
        return p->x < q->x ? -1 : 1;
    return p->y < q->y ? -1 : p->y > q->y;
}

/* Curve points from ROC points or released thresholds, with (0,0), (1,1). */
static size_t roc_points(Sdefed__RocPoint *const *roc, size_t n_roc,
                         Sdefed__ThresholdMetrics *const *t, size_t n_t, pt *out, size_t max)
{
    size_t n = 0;
    out[n++] = (pt){ 0, 0 };
    if (n_roc > 0) {
        for (size_t i = 0; i < n_roc && n + 1 < max; i++)
            if (roc[i] && isfinite(roc[i]->fpr) && isfinite(roc[i]->tpr))
                out[n++] = (pt){ roc[i]->fpr, roc[i]->tpr };
    } else {
        for (size_t i = 0; i < n_t && n + 1 < max; i++)
            if (t[i] && t[i]->released)
                out[n++] = (pt){ 1 - t[i]->specificity, t[i]->sensitivity };
    }
    out[n++] = (pt){ 1, 1 };
    qsort(out, n, sizeof *out, pt_cmp);
    return n;
}

static void draw_curve(svg_plot *pl, const pt *p, size_t n, const char *col, double w,
                       const char *who)
{
    double xs[MAX_CURVE] = { 0 }, ys[MAX_CURVE] = { 0 };
    if (n > MAX_CURVE)
        n = MAX_CURVE;
    for (size_t i = 0; i < n; i++) {
        xs[i] = p[i].x;
        ys[i] = p[i].y;
    }
    svg_polyline(pl, xs, ys, n, col, w, NULL);
    char tip[200], a[32], c[32];
    for (size_t i = 1; i + 1 < n; i++) {
        svg_fmt_num(a, sizeof a, p[i].x, 4);
        svg_fmt_num(c, sizeof c, p[i].y, 4);
        snprintf(tip, sizeof tip, "%.60s: 1 - specificity %s, sensitivity %s", who, a, c);
        svg_point(pl, p[i].x, p[i].y, 3, col, true, tip);
    }
}

static void withheld_thresholds(svg_buf *b, const char *who, Sdefed__ThresholdMetrics *const *t,
                                size_t n, bool pooled, bool *opened)
{
    for (size_t i = 0; i < n; i++) {
        if (!t[i] || t[i]->released)
            continue;
        if (!*opened)
            svg_buf_puts(b, "<ul class=\"withheld-list\">\n");
        *opened = true;
        svg_buf_puts(b, "<li>");
        svg_buf_text(b, who);
        svg_buf_puts(b, ", threshold \xe2\x89\xa5 ");
        svg_buf_num(b, t[i]->threshold, 4);
        svg_buf_puts(b, ": <span class=\"withheld\">withheld");
        const char *why = t[i]->withheld_reason;
        if (why && *why) {
            svg_buf_puts(b, ": ");
            svg_buf_text(b, why);
        } else if (pooled) {
            svg_buf_puts(b, ": not computable from the pooled cells");
        }
        svg_buf_puts(b, "</span></li>\n");
    }
}

static void roc_plot(svg_buf *b, const Sdefed__FederatedResult *r, const char *key)
{
    const double margin[4] = { 60, 20, 40, 46 };
    svg_plot pl;
    svg_buf_puts(b, "<figure style=\"max-width:640px\">");
    svg_plot_begin(&pl, b, 600, 600, margin, 0, 1, 0, 1, "ROC curves per site and pooled");
    svg_axes(&pl, SVG_AXIS_X | SVG_AXIS_Y | SVG_GRID, "1 - specificity", "sensitivity");
    svg_line(&pl, 0, 0, 1, 1, "#999999", 1, "4 3");
    pt *pts = malloc(MAX_CURVE * sizeof *pts);
    svg_legend_item leg[17];
    size_t nleg = 0;
    bool any_roc = false;
    for (size_t s = 0; pts && s < r->n_sites; s++) {
        const Sdefed__Validation *v = site_group(r->sites[s], key);
        if (!v || !v->released || r->sites[s]->status != SDEFED__SITE_STATUS__SITE_OK)
            continue;
        any_roc = any_roc || v->n_roc > 0;
        size_t n = roc_points(v->roc, v->n_roc, v->thresholds, v->n_thresholds, pts, MAX_CURVE);
        draw_curve(&pl, pts, n, svg_color(s), 2, r->sites[s]->site ? r->sites[s]->site : "");
        if (nleg < 16)
            leg[nleg++] = (svg_legend_item){ r->sites[s]->site, svg_color(s), true, NULL };
    }
    const Sdefed__PooledValidation *p = pooled_group(r, key);
    if (pts && p) {
        size_t n = roc_points(p->roc, p->n_roc, p->thresholds, p->n_thresholds, pts, MAX_CURVE);
        if (n > 2 || p->n_roc > 0) {
            draw_curve(&pl, pts, n, SVG_POOLED_COLOR, 3, "pooled");
            leg[nleg++] = (svg_legend_item){ "pooled", SVG_POOLED_COLOR, true, NULL };
        }
    }
    free(pts);
    if (!pts)
        b->err = b->err ? b->err : SDF_ENOMEM;
    svg_legend(&pl, leg, nleg);
    svg_plot_end(&pl);
    svg_buf_puts(b, "<figcaption>ROC curves. ");
    svg_buf_puts(b, any_roc || (p && p->n_roc > 0)
                        ? "Where a site released its score histogram the curve runs through "
                          "the released ROC points; otherwise "
                        : "");
    svg_buf_puts(b, "curves run straight between the released threshold points (1 - "
                    "specificity, sensitivity), so they under-state the AUC; the AUCs in the "
                    "table are exact. Dashed: chance.");
    if (p && p->n_roc > 0) {
        svg_buf_puts(b, " Pooled curve from the merged site histograms: trapezoid AUC ");
        svg_buf_num(b, p->roc_auc, 4);
        svg_buf_puts(b, " (\xc2\xb1 ");
        svg_buf_num(b, p->roc_auc_max_error, 3);
        svg_buf_puts(b, " from the bins' coarseness).");
    }
    svg_buf_puts(b, "</figcaption></figure>\n");
    bool opened = false;
    for (size_t s = 0; s < r->n_sites; s++) {
        const Sdefed__Validation *v = site_group(r->sites[s], key);
        if (v && v->released)
            withheld_thresholds(b, r->sites[s]->site ? r->sites[s]->site : "", v->thresholds,
                                v->n_thresholds, false, &opened);
    }
    if (p)
        withheld_thresholds(b, "pooled", p->thresholds, p->n_thresholds, true, &opened);
    if (opened)
        svg_buf_puts(b, "</ul>\n");
}

/* ---- calibration ---- */

static void calibration_plot(svg_buf *b, const Sdefed__FederatedResult *r, const char *key)
{
    const Sdefed__PooledValidation *p = pooled_group(r, key);
    double m = 0, nmax = 1;
    for (size_t s = 0; s <= r->n_sites; s++) {
        Sdefed__CalibrationBin *const *bins = NULL;
        size_t nb = 0;
        if (s < r->n_sites) {
            const Sdefed__Validation *v = site_group(r->sites[s], key);
            if (v && v->released) {
                bins = v->bins;
                nb = v->n_bins;
            }
        } else if (p) {
            bins = p->bins;
            nb = p->n_bins;
        }
        for (size_t i = 0; i < nb; i++) {
            const Sdefed__CalibrationBin *c = bins[i];
            if (!c || !c->released || !count_ok(c->n) || c->n->value <= 0)
                continue;
            m = fmax(m, fmax(c->mean_predicted, c->observed));
            if (s < r->n_sites)
                nmax = fmax(nmax, (double)c->n->value);
        }
    }
    m = m <= 0 ? 1 : fmin(1.0, ceil(m * 10 + 1e-9) / 10);
    const double margin[4] = { 60, 20, 40, 46 };
    svg_plot pl;
    svg_buf_puts(b, "<figure style=\"max-width:640px\">");
    svg_plot_begin(&pl, b, 600, 600, margin, 0, m, 0, m,
                   "Calibration: mean predicted vs observed per bin");
    svg_axes(&pl, SVG_AXIS_X | SVG_AXIS_Y | SVG_GRID, "mean predicted risk", "observed rate");
    svg_line(&pl, 0, 0, m, m, "#999999", 1, "4 3");
    svg_legend_item leg[17];
    size_t nleg = 0;
    double xs[64], ys[64];
    char tip[200], a[32], c2[32];
    for (size_t s = 0; s <= r->n_sites; s++) {
        Sdefed__CalibrationBin *const *bins;
        size_t nb;
        const char *col, *who;
        if (s < r->n_sites) {
            const Sdefed__Validation *v = site_group(r->sites[s], key);
            if (!v || !v->released)
                continue;
            bins = v->bins;
            nb = v->n_bins;
            col = svg_color(s);
            who = r->sites[s]->site ? r->sites[s]->site : "";
        } else {
            if (!p)
                continue;
            bins = p->bins;
            nb = p->n_bins;
            col = SVG_POOLED_COLOR;
            who = "pooled";
        }
        size_t k = 0;
        for (size_t i = 0; i < nb && k < 64; i++) {
            const Sdefed__CalibrationBin *c = bins[i];
            if (!c || !c->released || !count_ok(c->n) || c->n->value <= 0)
                continue;
            xs[k] = c->mean_predicted;
            ys[k] = c->observed;
            k++;
        }
        svg_polyline(&pl, xs, ys, k, col, s < r->n_sites ? 1.5 : 2.5,
                     s < r->n_sites ? NULL : "6 3");
        for (size_t i = 0; i < nb; i++) {
            const Sdefed__CalibrationBin *c = bins[i];
            if (!c || !c->released || !count_ok(c->n) || c->n->value <= 0)
                continue;
            double rad = s < r->n_sites ? 2.5 + 7 * sqrt((double)c->n->value / nmax) : 3.5;
            svg_fmt_num(a, sizeof a, c->mean_predicted, 4);
            svg_fmt_num(c2, sizeof c2, c->observed, 4);
            snprintf(tip, sizeof tip, "%.60s: n %" PRId64 ", mean predicted %s, observed %s", who,
                     c->n->value, a, c2);
            svg_point(&pl, c->mean_predicted, c->observed, rad, col, s == r->n_sites, tip);
        }
        if (nleg < 16)
            leg[nleg++] = (svg_legend_item){ who, col, true, s < r->n_sites ? NULL : "6 3" };
    }
    svg_legend(&pl, leg, nleg);
    svg_plot_end(&pl);
    svg_buf_puts(b, "<figcaption>Calibration. Each point is a calibration bin: mean predicted "
                    "risk against the observed event rate, point area proportional to the "
                    "bin's n (pooled: filled points, dashed). Dashed grey: perfect "
                    "calibration.</figcaption></figure>\n");
    /* every withheld bin, by name */
    bool opened = false;
    for (size_t s = 0; s <= r->n_sites; s++) {
        Sdefed__CalibrationBin *const *bins = NULL;
        size_t nb = 0;
        const char *who = "pooled";
        if (s < r->n_sites) {
            const Sdefed__Validation *v = site_group(r->sites[s], key);
            if (!v || !v->released)
                continue;
            bins = v->bins;
            nb = v->n_bins;
            who = r->sites[s]->site ? r->sites[s]->site : "";
        } else if (p) {
            bins = p->bins;
            nb = p->n_bins;
        }
        for (size_t i = 0; i < nb; i++) {
            const Sdefed__CalibrationBin *c = bins[i];
            if (!c || c->released || (count_ok(c->n) && c->n->value == 0))
                continue;
            if (!opened)
                svg_buf_puts(b, "<ul class=\"withheld-list\">\n");
            opened = true;
            svg_buf_puts(b, "<li>");
            svg_buf_text(b, who);
            svg_buf_puts(b, ", bin [");
            svg_buf_num(b, c->lo, 3);
            svg_buf_puts(b, ", ");
            svg_buf_num(b, c->hi, 3);
            svg_buf_puts(b, s < r->n_sites
                                ? "): <span class=\"withheld\">withheld: n, events or non-events "
                                  "below the count rules</span></li>\n"
                                : "): <span class=\"withheld\">withheld: no site released this "
                                  "bin</span></li>\n");
        }
    }
    if (opened)
        svg_buf_puts(b, "</ul>\n");
}

/* ---- thresholds, comparison ---- */

static void rate_cell(svg_buf *b, double e, double lo, double hi)
{
    svg_buf_puts(b, "<td class=\"num\">");
    est_ci(b, e, lo, hi);
    svg_buf_puts(b, "</td>");
}

static void threshold_rows(svg_buf *b, const char *who, Sdefed__ThresholdMetrics *const *t,
                           size_t n, bool pooled)
{
    for (size_t i = 0; i < n; i++) {
        const Sdefed__ThresholdMetrics *m = t[i];
        if (!m)
            continue;
        svg_buf_puts(b, "<tr><td>");
        svg_buf_text(b, who);
        svg_buf_puts(b, "</td><td class=\"num\">");
        svg_buf_num(b, m->threshold, 4);
        svg_buf_puts(b, "</td>");
        if (!m->released) {
            report_withheld_cell(b, 8, m->withheld_reason && *m->withheld_reason
                                           ? m->withheld_reason
                                           : pooled ? "not computable from the pooled cells" : "");
        } else {
            count_cell(b, m->tp);
            count_cell(b, m->fp);
            count_cell(b, m->tn);
            count_cell(b, m->fn);
            rate_cell(b, m->sensitivity, m->sensitivity_lo, m->sensitivity_hi);
            rate_cell(b, m->specificity, m->specificity_lo, m->specificity_hi);
            rate_cell(b, m->ppv, m->ppv_lo, m->ppv_hi);
            rate_cell(b, m->npv, m->npv_lo, m->npv_hi);
        }
        svg_buf_puts(b, "</tr>\n");
    }
}

static void thresholds_table(svg_buf *b, const Sdefed__FederatedResult *r, const char *key)
{
    const Sdefed__PooledValidation *p = pooled_group(r, key);
    bool any = p && p->n_thresholds > 0;
    for (size_t s = 0; !any && s < r->n_sites; s++) {
        const Sdefed__Validation *v = site_group(r->sites[s], key);
        any = v && v->n_thresholds > 0;
    }
    if (!any)
        return;
    svg_buf_puts(b, "<h3>Thresholds (score \xe2\x89\xa5 threshold is positive)</h3>\n"
                    "<table><thead><tr><th>site</th><th>threshold</th><th>TP</th><th>FP</th>"
                    "<th>TN</th><th>FN</th><th>sensitivity [95% CI]</th><th>specificity</th>"
                    "<th>PPV</th><th>NPV</th></tr></thead><tbody>\n");
    for (size_t s = 0; s < r->n_sites; s++) {
        const Sdefed__Validation *v = site_group(r->sites[s], key);
        if (v && v->released)
            threshold_rows(b, r->sites[s]->site ? r->sites[s]->site : "", v->thresholds,
                           v->n_thresholds, false);
    }
    if (p)
        threshold_rows(b, "pooled", p->thresholds, p->n_thresholds, true);
    svg_buf_puts(b, "</tbody></table>\n<p class=\"muted\">Rates with Wilson 95% intervals, "
                    "computed from the released (rounded) cells.</p>\n");
}

static void comparison_row(svg_buf *b, const char *who, const Sdefed__AucComparison *c)
{
    svg_buf_puts(b, "<tr><td>");
    svg_buf_text(b, who);
    svg_buf_puts(b, "</td><td>");
    svg_buf_text(b, c->version_a);
    svg_buf_puts(b, "</td><td>");
    svg_buf_text(b, c->version_b);
    svg_buf_puts(b, "</td>");
    if (!c->released) {
        report_withheld_cell(b, 5, c->withheld_reason);
    } else {
        num_cell(b, c->auc_a);
        num_cell(b, c->auc_b);
        rate_cell(b, c->diff, c->diff_lo, c->diff_hi);
        num_cell(b, c->p_value);
        if (c->sites)
            svg_buf_printf(b, "<td class=\"num\">%u</td>", c->sites);
        else
            svg_buf_puts(b, "<td></td>");
    }
    svg_buf_puts(b, "</tr>\n");
}

static void comparison_table(svg_buf *b, const Sdefed__FederatedResult *r, const char *key)
{
    const Sdefed__PooledValidation *p = pooled_group(r, key);
    bool any = p && p->comparison;
    for (size_t s = 0; !any && s < r->n_sites; s++) {
        const Sdefed__Validation *v = site_group(r->sites[s], key);
        any = v && v->comparison;
    }
    if (!any)
        return;
    svg_buf_puts(b, "<h3>Model-version comparison</h3>\n<table><thead><tr><th>site</th>"
                    "<th>version A</th><th>version B</th><th>AUC A</th><th>AUC B</th>"
                    "<th>difference B - A [95% CI]</th><th>p</th><th>sites</th></tr></thead>"
                    "<tbody>\n");
    for (size_t s = 0; s < r->n_sites; s++) {
        const Sdefed__Validation *v = site_group(r->sites[s], key);
        if (v && v->comparison)
            comparison_row(b, r->sites[s]->site ? r->sites[s]->site : "", v->comparison);
        else if (v && !v->released) {
            svg_buf_puts(b, "<tr>");
            site_name_cell(b, r->sites[s]->site);
            report_withheld_cell(b, 7, v->withheld_reason);
            svg_buf_puts(b, "</tr>\n");
        }
    }
    if (p && p->comparison)
        comparison_row(b, "pooled", p->comparison);
    svg_buf_puts(b, "</tbody></table>\n<p class=\"muted\">Paired DeLong at each site; pooled: "
                    "random-effects meta-analysis of the site differences.</p>\n");
}

void report_validate_section(svg_buf *b, const Sdefed__FederatedResult *r)
{
    keys ks;
    if (!keys_collect(r, &ks)) {
        b->err = b->err ? b->err : SDF_ENOMEM;
        return;
    }
    svg_buf_puts(b, "<h2>Validation: whole population</h2>\n");
    metrics_table(b, r, "");
    forest_plot(b, r, "", "AUC per site and pooled, whole population");
    svg_buf_puts(b, "<h3>ROC curves</h3>\n");
    roc_plot(b, r, "");
    svg_buf_puts(b, "<h3>Calibration</h3>\n");
    calibration_plot(b, r, "");
    thresholds_table(b, r, "");
    comparison_table(b, r, "");
    if (ks.n > 1)
        svg_buf_puts(b, "<h2>Subgroups</h2>\n");
    char title[KEY_LEN + 64];
    for (size_t i = 1; i < ks.n; i++) {
        svg_buf_puts(b, "<h3>Subgroup ");
        svg_buf_text(b, ks.k[i]);
        svg_buf_puts(b, "</h3>\n");
        metrics_table(b, r, ks.k[i]);
        snprintf(title, sizeof title, "AUC per site and pooled, %s", ks.k[i]);
        forest_plot(b, r, ks.k[i], title);
        thresholds_table(b, r, ks.k[i]);
        comparison_table(b, r, ks.k[i]);
    }
    free(ks.k);
}
