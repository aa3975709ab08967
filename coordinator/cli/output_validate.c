/* coordinator/cli/output_validate.c — `validate` results as JSON, CSV and a table (issue 5).
 *
 * See output_validate.h for the shapes. A count prints only when its
 * status is exact, rounded or noised; a withheld group or threshold prints
 * its reason and no numbers.
 */
#include "cli/output_validate.h"
#include "sdefed/jsonout.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include "sdefed/err.h"
#include "sdefed/spec.h"

static bool count_ok(const Sdefed__ValidateCount *c)
{
    return c && (c->status == SDEFED__CELL_STATUS__CELL_EXACT ||
                 c->status == SDEFED__CELL_STATUS__CELL_ROUNDED ||
                 c->status == SDEFED__CELL_STATUS__CELL_NOISED);
}

static json_t *count_json(const Sdefed__ValidateCount *c)
{
    return count_ok(c) ? json_integer(c->value) : json_null();
}

static json_t *strata_json(Sdefed__Stratum *const *s, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < n; i++)
        if (!jo_put(o, s[i]->name ? s[i]->name : "", json_string(s[i]->value ? s[i]->value : ""))) {
            json_decref(o);
            return NULL;
        }
    return o;
}

static json_t *triple(double e, double lo, double hi)
{
    return json_pack("[fff]", e, lo, hi);
}

static json_t *thresholds_json(Sdefed__ThresholdMetrics *const *t, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        const Sdefed__ThresholdMetrics *m = t[i];
        bool r = m->released;
        json_t *o = json_pack(
            "{s:f, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:s}", "threshold", m->threshold,
            "tp", count_json(m->tp), "fp", count_json(m->fp), "tn", count_json(m->tn), "fn",
            count_json(m->fn), "sensitivity",
            r ? triple(m->sensitivity, m->sensitivity_lo, m->sensitivity_hi) : json_null(),
            "specificity",
            r ? triple(m->specificity, m->specificity_lo, m->specificity_hi) : json_null(),
            "ppv", r ? triple(m->ppv, m->ppv_lo, m->ppv_hi) : json_null(), "npv",
            r ? triple(m->npv, m->npv_lo, m->npv_hi) : json_null(), "withheld_reason",
            m->withheld_reason ? m->withheld_reason : "");
        if (!o || json_array_append_new(a, o) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *bins_json(Sdefed__CalibrationBin *const *b, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        const Sdefed__CalibrationBin *c = b[i];
        json_t *o = json_pack("{s:f, s:f, s:o, s:o, s:o, s:o}", "lo", c->lo, "hi", c->hi, "n",
                              count_json(c->n), "events",
                              c->released ? count_json(c->events) : json_null(),
                              "mean_predicted",
                              c->released ? json_real(c->mean_predicted) : json_null(),
                              "observed", c->released ? json_real(c->observed) : json_null());
        if (!o || json_array_append_new(a, o) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* ---- issue 5 items 3/4: ROC, histogram, comparison ---- */

static json_t *roc_json(Sdefed__RocPoint *const *r, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_pack("[fff]", r[i]->fpr, r[i]->tpr,
                                               r[i]->threshold)) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *histogram_json(Sdefed__ScoreBin *const *b, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        json_t *o = json_pack("{s:f, s:f, s:o, s:o}", "lo", b[i]->lo, "hi", b[i]->hi, "events",
                              count_json(b[i]->events), "nonevents",
                              count_json(b[i]->nonevents));
        if (!o || json_array_append_new(a, o) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* null when absent; pooled adds "sites" */
static json_t *comparison_json(const Sdefed__AucComparison *c, bool pooled)
{
    if (!c)
        return json_null();
    bool r = c->released;
    json_t *o = json_pack(
        "{s:s, s:s, s:b, s:s, s:o, s:o, s:o, s:o, s:o, s:o}", "version_a",
        c->version_a ? c->version_a : "", "version_b", c->version_b ? c->version_b : "",
        "released", r, "withheld_reason", c->withheld_reason ? c->withheld_reason : "", "auc_a",
        r ? json_real(c->auc_a) : json_null(), "auc_b", r ? json_real(c->auc_b) : json_null(),
        "diff", r ? json_real(c->diff) : json_null(), "diff_se",
        r ? json_real(c->diff_se) : json_null(), "diff_ci",
        r ? json_pack("[ff]", c->diff_lo, c->diff_hi) : json_null(), "p_value",
        r ? json_real(c->p_value) : json_null());
    if (o && pooled && !jo_put(o, "sites", json_integer(c->sites))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *out_validations_json(Sdefed__Validation *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        const Sdefed__Validation *x = v[i];
        json_t *o = json_object();
        bool ok = o && jo_put(o, "strata", strata_json(x->strata, x->n_strata)) &&
                  jo_put(o, "released", json_boolean(x->released)) &&
                  jo_put(o, "withheld_reason",
                      json_string(x->withheld_reason ? x->withheld_reason : ""));
        if (ok && x->released) {
            ok = jo_put(o, "n", count_json(x->n)) && jo_put(o, "events", count_json(x->events)) &&
                 jo_put(o, "auc", json_real(x->auc)) && jo_put(o, "auc_se", json_real(x->auc_se)) &&
                 jo_put(o, "auc_ci", json_pack("[ff]", x->auc_lo, x->auc_hi)) &&
                 jo_put(o, "brier", json_real(x->brier)) &&
                 jo_put(o, "oe_ratio", json_real(x->oe_ratio)) &&
                 jo_put(o, "citl", json_real(x->citl)) &&
                 jo_put(o, "calibration_slope",
                     x->cal_converged ? json_real(x->cal_slope) : json_null()) &&
                 jo_put(o, "calibration_intercept",
                     x->cal_converged ? json_real(x->cal_intercept) : json_null()) &&
                 jo_put(o, "mean_predicted", json_real(x->mean_predicted)) &&
                 jo_put(o, "observed_rate", json_real(x->observed_rate)) &&
                 jo_put(o, "thresholds", thresholds_json(x->thresholds, x->n_thresholds)) &&
                 jo_put(o, "bins", bins_json(x->bins, x->n_bins)) &&
                 jo_put(o, "bin_mode", json_string(x->quantile_bins ? "quantile" : "width")) &&
                 jo_put(o, "roc", roc_json(x->roc, x->n_roc)) &&
                 jo_put(o, "histogram", histogram_json(x->histogram, x->n_histogram));
        }
        if (ok && x->comparison)   /* issue 5 items 3/4: also on a withheld group */
            ok = jo_put(o, "comparison", comparison_json(x->comparison, false));
        if (!ok || json_array_append_new(a, o) != 0) {
            if (!ok)
                json_decref(o);
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

json_t *out_pooled_validations_json(Sdefed__PooledValidation *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        const Sdefed__PooledValidation *x = v[i];
        json_t *o = json_object();
        bool has = x->sites > 0;
        bool ok = o && jo_put(o, "strata", strata_json(x->strata, x->n_strata)) &&
                  jo_put(o, "sites", json_integer(x->sites)) &&
                  jo_put(o, "auc", has ? json_real(x->auc) : json_null()) &&
                  jo_put(o, "auc_ci", has ? json_pack("[ff]", x->auc_lo, x->auc_hi) : json_null()) &&
                  jo_put(o, "prediction_interval",
                      x->has_pi ? json_pack("[ff]", x->pi_lo, x->pi_hi) : json_null()) &&
                  jo_put(o, "tau2", json_real(x->tau2)) && jo_put(o, "i2", json_real(x->i2)) &&
                  jo_put(o, "q", json_real(x->q)) && jo_put(o, "partial", json_boolean(x->partial)) &&
                  jo_put(o, "thresholds", thresholds_json(x->thresholds, x->n_thresholds)) &&
                  jo_put(o, "bins", bins_json(x->bins, x->n_bins)) &&
                  jo_put(o, "bins_note", x->bins_note && *x->bins_note
                                             ? json_string(x->bins_note) : json_null()) &&
                  jo_put(o, "roc", roc_json(x->roc, x->n_roc)) &&
                  jo_put(o, "roc_sites", json_integer(x->roc_sites)) &&
                  jo_put(o, "roc_auc", x->n_roc ? json_real(x->roc_auc) : json_null()) &&
                  jo_put(o, "roc_auc_max_error",
                      x->n_roc ? json_real(x->roc_auc_max_error) : json_null()) &&
                  jo_put(o, "comparison", comparison_json(x->comparison, true));
        if (!ok || json_array_append_new(a, o) != 0) {
            if (!ok)
                json_decref(o);
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* "sex=female" or "all" */
static void group_name(Sdefed__Stratum *const *s, size_t n, char *buf, size_t len)
{
    size_t off = 0;
    snprintf(buf, len, "all");
    for (size_t i = 0; i < n && off < len; i++) {
        int w = snprintf(buf + off, len - off, "%s%s=%s", i ? "," : "", s[i]->name ? s[i]->name : "",
                         s[i]->value ? s[i]->value : "");
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

/* RFC 4180 field. */
static int csv_field(FILE *f, const char *s, bool last)
{
    bool q = strpbrk(s, ",\"\r\n") != NULL;
    int rc = 0;
    if (q) {
        rc |= fputc('"', f) == EOF;
        for (; *s; s++) {
            if (*s == '"')
                rc |= fputc('"', f) == EOF;
            rc |= fputc(*s, f) == EOF;
        }
        rc |= fputc('"', f) == EOF;
    } else {
        rc |= fputs(s, f) == EOF;
    }
    rc |= fputs(last ? "\r\n" : ",", f) == EOF;
    return rc;
}

static void fmt_count(const Sdefed__ValidateCount *c, char *buf, size_t len)
{
    if (count_ok(c))
        snprintf(buf, len, "%" PRId64, c->value);
    else
        snprintf(buf, len, "%s", "");
}

/* The last four CSV columns (and the line end): the AUC difference. */
static int csv_comparison(FILE *f, const Sdefed__AucComparison *c)
{
    if (!c || !c->released)
        return fputs(",,,\r\n", f) == EOF;
    return fprintf(f, "%.4f,%.4f,%.4f,%.4g\r\n", c->diff, c->diff_lo, c->diff_hi,
                   c->p_value) < 0;
}

int out_validate_csv(FILE *f, const Sdefed__FederatedResult *r)
{
    int rc = fputs("site,site_status,group,n,events,auc,auc_lo,auc_hi,brier,oe_ratio,citl,"
                   "calibration_slope,calibration_intercept,sites,i2,tau2,withheld_reason,"
                   "roc_auc,roc_auc_max_error,auc_diff,auc_diff_lo,auc_diff_hi,auc_diff_p\r\n",
                   f) == EOF;
    char g[512], n[32], e[32], num[10][32];
    for (size_t s = 0; s < r->n_sites; s++) {
        const Sdefed__SiteResult *sr = r->sites[s];
        const char *st = spec_site_status_name(sr->status);
        if (sr->n_validations == 0) {
            rc |= csv_field(f, sr->site ? sr->site : "", false);
            rc |= csv_field(f, st, false);
            rc |= fputs(",,,,,,,,,,,,,,", f) == EOF;
            rc |= csv_field(f, sr->reason ? sr->reason : "", false);
            rc |= fputs(",,,,,\r\n", f) == EOF;
            continue;
        }
        for (size_t k = 0; k < sr->n_validations; k++) {
            const Sdefed__Validation *v = sr->validations[k];
            group_name(v->strata, v->n_strata, g, sizeof g);
            fmt_count(v->released ? v->n : NULL, n, sizeof n);
            fmt_count(v->released ? v->events : NULL, e, sizeof e);
            double d[8] = { v->auc, v->auc_lo, v->auc_hi, v->brier, v->oe_ratio, v->citl,
                            v->cal_slope, v->cal_intercept };
            for (int j = 0; j < 8; j++) {
                bool show = v->released && (j < 6 || v->cal_converged);
                if (show)
                    snprintf(num[j], sizeof num[j], "%.4f", d[j]);
                else
                    num[j][0] = '\0';
            }
            rc |= csv_field(f, sr->site ? sr->site : "", false);
            rc |= csv_field(f, st, false);
            rc |= csv_field(f, g, false);
            rc |= csv_field(f, n, false);
            rc |= csv_field(f, e, false);
            for (int j = 0; j < 8; j++)
                rc |= csv_field(f, num[j], false);
            rc |= fputs(",,,", f) == EOF;
            rc |= csv_field(f, v->withheld_reason ? v->withheld_reason : "", false);
            rc |= fputs(",,", f) == EOF;   /* roc_auc, its bound: pooled only */
            rc |= csv_comparison(f, v->comparison);
        }
    }
    for (size_t k = 0; k < r->n_pooled_validations; k++) {
        const Sdefed__PooledValidation *p = r->pooled_validations[k];
        group_name(p->strata, p->n_strata, g, sizeof g);
        rc |= csv_field(f, "pooled", false);
        rc |= csv_field(f, "", false);
        rc |= csv_field(f, g, false);
        rc |= fputs(",,", f) == EOF;
        if (p->sites)
            rc |= fprintf(f, "%.4f,%.4f,%.4f,", p->auc, p->auc_lo, p->auc_hi) < 0;
        else
            rc |= fputs(",,,", f) == EOF;
        rc |= fprintf(f, ",,,,,%u,%.4f,%.6f,,", p->sites, p->i2, p->tau2) < 0;
        if (p->n_roc)
            rc |= fprintf(f, "%.4f,%.4f,", p->roc_auc, p->roc_auc_max_error) < 0;
        else
            rc |= fputs(",,", f) == EOF;
        rc |= csv_comparison(f, p->comparison);
    }
    return rc ? SDF_EIO : 0;
}

static void thr_lines(FILE *f, Sdefed__ThresholdMetrics *const *t, size_t n, int *rc)
{
    for (size_t i = 0; i < n; i++) {
        const Sdefed__ThresholdMetrics *m = t[i];
        if (!m->released) {
            *rc |= fprintf(f, "    >= %.3f  withheld: %s\n", m->threshold,
                           m->withheld_reason && *m->withheld_reason ? m->withheld_reason
                                                                      : "-") < 0;
            continue;
        }
        char tp[24], fp[24], tn[24], fn[24];
        fmt_count(m->tp, tp, sizeof tp);
        fmt_count(m->fp, fp, sizeof fp);
        fmt_count(m->tn, tn, sizeof tn);
        fmt_count(m->fn, fn, sizeof fn);
        *rc |= fprintf(f,
                       "    >= %.3f  TP %s FP %s TN %s FN %s  sens %.3f (%.3f-%.3f)  spec %.3f "
                       "(%.3f-%.3f)  PPV %.3f  NPV %.3f\n",
                       m->threshold, tp, fp, tn, fn, m->sensitivity, m->sensitivity_lo,
                       m->sensitivity_hi, m->specificity, m->specificity_lo,
                       m->specificity_hi, m->ppv, m->npv) < 0;
    }
}

static void cmp_line(FILE *f, const Sdefed__AucComparison *c, int *rc)
{
    if (!c)
        return;
    if (!c->released) {
        *rc |= fprintf(f, "        %s vs %s: withheld: %s\n", c->version_b ? c->version_b : "",
                       c->version_a ? c->version_a : "",
                       c->withheld_reason && *c->withheld_reason ? c->withheld_reason : "-") < 0;
        return;
    }
    *rc |= fprintf(f, "        AUC %s - %s: %+.3f (95%% CI %+.3f to %+.3f)  p %.3g  "
                      "(%.3f vs %.3f)",
                   c->version_b ? c->version_b : "", c->version_a ? c->version_a : "", c->diff,
                   c->diff_lo, c->diff_hi, c->p_value, c->auc_b, c->auc_a) < 0;
    if (c->sites)
        *rc |= fprintf(f, "  sites %u", c->sites) < 0;
    *rc |= fputc('\n', f) == EOF;
}

int out_validate_table(FILE *f, const Sdefed__FederatedResult *r)
{
    int rc = 0;
    char g[512], n[32], e[32];
    for (size_t k = 0; k < r->n_pooled_validations; k++) {
        const Sdefed__PooledValidation *p = r->pooled_validations[k];
        group_name(p->strata, p->n_strata, g, sizeof g);
        if (!p->sites) {
            rc |= fprintf(f, "pooled  %-24s  no site released an AUC\n", g) < 0;
        } else {
            rc |= fprintf(f, "pooled  %-24s  AUC %.3f (95%% CI %.3f-%.3f)", g, p->auc, p->auc_lo,
                          p->auc_hi) < 0;
            if (p->has_pi)
                rc |= fprintf(f, "  PI %.3f-%.3f", p->pi_lo, p->pi_hi) < 0;
            rc |= fprintf(f, "  I2 %.0f%%  tau2 %.4f  sites %u%s\n", p->i2 * 100, p->tau2,
                          p->sites, p->partial ? "  (partial)" : "") < 0;
        }
        if (p->n_roc)   /* issue 5 items 3/4 */
            rc |= fprintf(f, "        ROC from %u site histograms: AUC %.3f (+/- %.3f at most "
                             "from binning)\n", p->roc_sites, p->roc_auc,
                          p->roc_auc_max_error) < 0;
        if (p->bins_note && *p->bins_note)
            rc |= fprintf(f, "        %s\n", p->bins_note) < 0;
        cmp_line(f, p->comparison, &rc);
        thr_lines(f, p->thresholds, p->n_thresholds, &rc);
    }
    for (size_t s = 0; s < r->n_sites; s++) {
        const Sdefed__SiteResult *sr = r->sites[s];
        rc |= fprintf(f, "\n%s: %s%s%s\n", sr->site ? sr->site : "",
                      spec_site_status_name(sr->status), sr->reason && *sr->reason ? ": " : "",
                      sr->reason ? sr->reason : "") < 0;
        for (size_t k = 0; k < sr->n_validations; k++) {
            const Sdefed__Validation *v = sr->validations[k];
            group_name(v->strata, v->n_strata, g, sizeof g);
            if (!v->released) {
                rc |= fprintf(f, "  %-24s  withheld: %s\n", g,
                              v->withheld_reason ? v->withheld_reason : "-") < 0;
                continue;
            }
            fmt_count(v->n, n, sizeof n);
            fmt_count(v->events, e, sizeof e);
            rc |= fprintf(f, "  %-24s  n %s  events %s  AUC %.3f (%.3f-%.3f)  Brier %.4f  "
                             "O/E %.3f  CITL %.3f",
                          g, *n ? n : "-", *e ? e : "-", v->auc, v->auc_lo, v->auc_hi, v->brier,
                          v->oe_ratio, v->citl) < 0;
            if (v->cal_converged)
                rc |= fprintf(f, "  slope %.3f  intercept %.3f", v->cal_slope,
                              v->cal_intercept) < 0;
            rc |= fputc('\n', f) == EOF;
            cmp_line(f, v->comparison, &rc);
            thr_lines(f, v->thresholds, v->n_thresholds, &rc);
        }
    }
    return rc ? SDF_EIO : 0;
}
