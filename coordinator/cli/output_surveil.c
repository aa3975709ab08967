/* coordinator/cli/output_surveil.c — printing `surveil` results (issue 6).
 *
 * See output_surveil.h. Withheld numbers print as null (json), "" (csv) or
 * "-" (table); the table marks a pooled row computed without every site
 * with "+" (a lower bound).
 */
#include "cli/output_surveil.h"
#include "sdefed/jsonout.h"

#include <stdio.h>
#include <string.h>

#include "sdefed/err.h"
#include "sdefed/spec.h"

static bool released(Sdefed__CellStatus st)
{
    return st == SDEFED__CELL_STATUS__CELL_EXACT || st == SDEFED__CELL_STATUS__CELL_ROUNDED ||
           st == SDEFED__CELL_STATUS__CELL_NOISED;
}

static const char *st_name(Sdefed__CellStatus st)
{
    const char *s = spec_cell_status_name(st);
    return *s ? s : "suppressed";
}

/* A JSON string of s with bytes outside printable ASCII replaced. */
static json_t *safe_str(const char *s)
{
    char buf[256];
    size_t o = 0;
    for (; s && *s && o + 1 < sizeof buf; s++)
        buf[o++] = (unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f ? *s : '?';
    buf[o] = '\0';
    return json_string(buf);
}

static json_t *row_json(const Sdefed__SurveilRow *x, bool pooled)
{
    json_t *o = json_object(), *st = json_object();
    bool ok = o && st;
    for (size_t k = 0; ok && k < x->n_strata; k++) {
        if (!x->strata[k] || !x->strata[k]->name)
            continue;
        json_t *key = safe_str(x->strata[k]->name);
        ok = key && jo_put(st, json_string_value(key), safe_str(x->strata[k]->value));
        json_decref(key);
    }
    bool rate = released(x->rate_status), rr = released(x->rr_status);
    ok = ok && jo_put(o, "period", safe_str(x->period)) &&
         jo_put(o, "arm", json_string(x->comparator ? "comparator" : "exposure")) &&
         jo_put(o, "strata", st);
    if (ok)
        st = NULL;
    ok = ok &&
         jo_put(o, "persons", released(x->persons_status) ? json_integer(x->persons) : json_null()) &&
         jo_put(o, "persons_status", json_string(st_name(x->persons_status))) &&
         jo_put(o, "events", released(x->events_status) ? json_integer(x->events) : json_null()) &&
         jo_put(o, "events_status", json_string(st_name(x->events_status))) &&
         jo_put(o, "person_days", released(x->person_days_status) ? json_integer(x->person_days)
                                                               : json_null()) &&
         jo_put(o, "person_days_status", json_string(st_name(x->person_days_status))) &&
         jo_put(o, "rate", rate ? json_real(x->rate) : json_null()) &&
         jo_put(o, "rate_lo", rate ? json_real(x->rate_lo) : json_null()) &&
         jo_put(o, "rate_hi", rate ? json_real(x->rate_hi) : json_null()) &&
         jo_put(o, "rate_status", json_string(st_name(x->rate_status)));
    if (ok && !x->comparator)
        ok = jo_put(o, "rate_ratio", rr ? json_real(x->rate_ratio) : json_null()) &&
             jo_put(o, "rr_lo", rr ? json_real(x->rr_lo) : json_null()) &&
             jo_put(o, "rr_hi", rr ? json_real(x->rr_hi) : json_null());
    if (ok && pooled)
        ok = jo_put(o, "lower_bound", json_boolean(x->lower_bound)) &&
             jo_put(o, "sites", json_integer(x->sites));
    json_decref(st);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *out_surveil_rows_json(Sdefed__SurveilRow *const *rows, size_t n, bool pooled)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        json_t *r = rows[i] ? row_json(rows[i], pooled) : NULL;
        if (rows[i] && (!r || json_array_append_new(a, r) != 0)) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* ---- text forms ---- */

#define SV_COLS 12
static const char *const sv_head[SV_COLS] = { "site", "period", "arm", "strata", "persons",
                                              "events", "person_days", "rate", "rate_lo",
                                              "rate_hi", "rate_ratio", "rr_ci" };

/* The text fields of one row; none = what a withheld number prints as. */
static void row_fields(const char *site, const Sdefed__SurveilRow *x, bool pooled,
                       const char *none, char f[SV_COLS][128])
{
    snprintf(f[0], 128, "%s", site);
    snprintf(f[1], 128, "%s", x->period ? x->period : "");
    snprintf(f[2], 128, "%s", x->comparator ? "comparator" : "exposure");
    f[3][0] = '\0';
    for (size_t k = 0; k < x->n_strata; k++) {
        size_t l = strlen(f[3]);
        if (x->strata[k])
            snprintf(f[3] + l, 128 - l, "%s%s=%s", k ? ";" : "",
                     x->strata[k]->name ? x->strata[k]->name : "",
                     x->strata[k]->value ? x->strata[k]->value : "");
    }
    const char *lb = pooled && x->lower_bound ? "+" : "";
#define INTF(i, v, st)                                                  \
    (released(st) ? snprintf(f[i], 128, "%lld%s", (long long)(v), lb) \
                  : snprintf(f[i], 128, "%s", none))
    INTF(4, x->persons, x->persons_status);
    INTF(5, x->events, x->events_status);
    INTF(6, x->person_days, x->person_days_status);
#undef INTF
    if (released(x->rate_status)) {
        snprintf(f[7], 128, "%.2f", x->rate);
        snprintf(f[8], 128, "%.2f", x->rate_lo);
        snprintf(f[9], 128, "%.2f", x->rate_hi);
    } else {
        for (int i = 7; i <= 9; i++)
            snprintf(f[i], 128, "%s", none);
    }
    if (!x->comparator && released(x->rr_status)) {
        snprintf(f[10], 128, "%.3f", x->rate_ratio);
        snprintf(f[11], 128, "%.3f-%.3f", x->rr_lo, x->rr_hi);
    } else {
        snprintf(f[10], 128, "%s", x->comparator ? "" : none);
        snprintf(f[11], 128, "%s", x->comparator ? "" : none);
    }
    /* printable ASCII only */
    for (int i = 0; i < SV_COLS; i++)
        for (char *p = f[i]; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                *p = '?';
}

static void csv_field(FILE *f, const char *s, bool first)
{
    if (!first)
        fputc(',', f);
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int out_surveil_csv(FILE *f, const Sdefed__FederatedResult *r)
{
    char fl[SV_COLS][128];
    for (int i = 0; i < SV_COLS; i++)
        csv_field(f, sv_head[i], i == 0);
    fputs("\r\n", f);
    for (size_t i = 0; i < r->n_pooled_surveil; i++) {
        if (!r->pooled_surveil[i])
            continue;
        row_fields("pooled", r->pooled_surveil[i], true, "", fl);
        for (int k = 0; k < SV_COLS; k++)
            csv_field(f, fl[k], k == 0);
        fputs("\r\n", f);
    }
    for (size_t s = 0; s < r->n_sites; s++) {
        const Sdefed__SiteResult *sr = r->sites[s];
        if (!sr)
            continue;
        for (size_t i = 0; i < sr->n_surveil; i++) {
            if (!sr->surveil[i])
                continue;
            row_fields(sr->site ? sr->site : "", sr->surveil[i], false, "", fl);
            for (int k = 0; k < SV_COLS; k++)
                csv_field(f, fl[k], k == 0);
            fputs("\r\n", f);
        }
    }
    return fflush(f) == 0 && !ferror(f) ? 0 : SDF_EIO;
}

static void table_line(FILE *f, char fl[SV_COLS][128], const size_t *w)
{
    for (int k = 0; k < SV_COLS; k++)
        fprintf(f, "%s%-*s", k ? "  " : "", (int)w[k], fl[k]);
    fputc('\n', f);
}

int out_surveil_table(FILE *f, const Sdefed__FederatedResult *r)
{
    char fl[SV_COLS][128];
    size_t w[SV_COLS];
    for (int k = 0; k < SV_COLS; k++)
        w[k] = strlen(sv_head[k]);
    /* two passes: widths, then lines */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            for (int k = 0; k < SV_COLS; k++)
                snprintf(fl[k], 128, "%s", sv_head[k]);
            table_line(f, fl, w);
        }
        for (size_t i = 0; i < r->n_pooled_surveil; i++) {
            if (!r->pooled_surveil[i])
                continue;
            row_fields("pooled", r->pooled_surveil[i], true, "-", fl);
            for (int k = 0; k < SV_COLS && pass == 0; k++)
                w[k] = strlen(fl[k]) > w[k] ? strlen(fl[k]) : w[k];
            if (pass == 1)
                table_line(f, fl, w);
        }
        for (size_t s = 0; s < r->n_sites; s++) {
            const Sdefed__SiteResult *sr = r->sites[s];
            if (!sr)
                continue;
            if (sr->status != SDEFED__SITE_STATUS__SITE_OK) {
                if (pass == 1)
                    fprintf(f, "site %s: %s\n", sr->site ? sr->site : "",
                            spec_site_status_name(sr->status));
                continue;
            }
            for (size_t i = 0; i < sr->n_surveil; i++) {
                if (!sr->surveil[i])
                    continue;
                row_fields(sr->site ? sr->site : "", sr->surveil[i], false, "-", fl);
                for (int k = 0; k < SV_COLS && pass == 0; k++)
                    w[k] = strlen(fl[k]) > w[k] ? strlen(fl[k]) : w[k];
                if (pass == 1)
                    table_line(f, fl, w);
            }
        }
    }
    fputs("rates per 1,000 person-years, exact Poisson 95% limits; '-' withheld, "
          "'+' lower bound (a site withheld it)\n", f);
    return fflush(f) == 0 && !ferror(f) ? 0 : SDF_EIO;
}
