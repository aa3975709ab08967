/* coordinator/cli/output.c — render federated results for the analyst; see cli/output.h.
 *
 * The CLI prints what the coordinator sent back (a FederatedResult or a
 * SitesReply) as an aligned table for a terminal, as JSON (the documented
 * result schema) or as CSV. Every format follows one disclosure rule: a
 * number is shown only when its status says it was released (exact,
 * rounded or noised). A suppressed cell, or a cell whose status is unknown,
 * never shows the value field from the wire — JSON gives null, CSV an empty
 * field, the table "-" plus at most the site's threshold ("suppressed (<10)").
 * A pooled cell with lower_bound prints as ">= N" in the table.
 *
 * Everything in a result came from agents and the coordinator, so strings
 * are treated as hostile: the table replaces control characters (C0, DEL
 * and C1) with '?' so a site name or reason cannot drive the terminal; JSON
 * strings that are not valid UTF-8 have their non-ASCII bytes replaced by
 * '?'; CSV quotes per RFC 4180 (fields with comma, quote, CR or LF are
 * quoted, quotes doubled, records end with CRLF).
 *
 * Only a site with status ok has its cells or datasets shown in the table
 * and CSV; any other site gets one row with its status and reason ("offline:
 * no connection"). JSON carries every site as received.
 *
 * Stratifier columns (CSV and table) are the stratum names found in the
 * result, in order of first appearance (sites first, then pooled); at most
 * OUT_MAX_STRATA distinct names, more is refused with SDF_EOVERFLOW.
 *
 * JSON beyond the header's schema: the result also carries "requester"
 * (string), "submitted" (ISO 8601 UTC, or null when unknown) and "spec"
 * (the canonical spec, when the coordinator stored it with the result); each
 * catalog dataset is {"name","type","omop_version","person_count" (null
 * unless released),"person_count_status","data_freshness","domains","error"
 * (null, or why the site could not describe this dataset)}. The
 * sites JSON is {"sites":[{"site","online","last_seen" (ISO or null),
 * "last_seen_unix_ms","address","datasets":[names]}]}.
 */
#include "cli/output.h"
#include "sdefed/jsonout.h"
#include "cli/output_surveil.h"   /* surveil kind (issue 6) */
#include "cli/output_validate.h"  /* validate kind (issue 5) */

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sdefed/spec.h"

#define OUT_MAX_STRATA 64

/* ---- shared helpers ------------------------------------------------------------ */

int out_format_parse(const char *s, out_format *out)
{
    if (!s || !out)
        return SDF_EINVAL;
    if (strcmp(s, "table") == 0)
        *out = OUT_TABLE;
    else if (strcmp(s, "json") == 0)
        *out = OUT_JSON;
    else if (strcmp(s, "csv") == 0)
        *out = OUT_CSV;
    else
        return SDF_EINVAL;
    return 0;
}

static const char *nz(const char *s) { return s ? s : ""; }

/* True when a value with this status may be shown. */
static bool released(Sdefed__CellStatus st)
{
    return st == SDEFED__CELL_STATUS__CELL_EXACT || st == SDEFED__CELL_STATUS__CELL_ROUNDED ||
           st == SDEFED__CELL_STATUS__CELL_NOISED;
}

static const char *cell_status(Sdefed__CellStatus st)
{
    const char *n = spec_cell_status_name(st);
    return *n ? n : "unknown";
}

static const char *site_status(Sdefed__SiteStatus st)
{
    const char *n = spec_site_status_name(st);
    return *n ? n : "unknown";
}

/* ISO 8601 UTC of a Unix time in ms into buf; false when 0 or out of range. */
static bool iso_utc(uint64_t ms, char *buf, size_t n)
{
    const uint64_t max_s = 253402300799ULL;   /* 9999-12-31T23:59:59Z */
    struct tm tm;
    if (ms == 0 || ms / 1000 > max_s)
        return false;
    time_t t = (time_t)(ms / 1000);
    if (!gmtime_r(&t, &tm))
        return false;
    return strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm) > 0;
}

/* The value of stratum `name` in strata[0..n), "" when the cell lacks it. */
static const char *stratum_value(Sdefed__Stratum *const *strata, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strata[i] && strcmp(nz(strata[i]->name), name) == 0)
            return nz(strata[i]->value);
    return "";
}

/* Distinct stratum names in order of first appearance. */
struct cols {
    const char *name[OUT_MAX_STRATA];
    size_t n;
};

static int cols_add(struct cols *c, Sdefed__Stratum *const *strata, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!strata[i])
            continue;
        const char *name = nz(strata[i]->name);
        bool seen = false;
        for (size_t j = 0; j < c->n && !seen; j++)
            seen = strcmp(c->name[j], name) == 0;
        if (seen)
            continue;
        if (c->n == OUT_MAX_STRATA)
            return SDF_EOVERFLOW;
        c->name[c->n++] = name;
    }
    return 0;
}

static int cols_collect(const Sdefed__FederatedResult *r, struct cols *c)
{
    int rc = 0;
    c->n = 0;
    for (size_t i = 0; rc == 0 && i < r->n_sites; i++) {
        const Sdefed__SiteResult *s = r->sites[i];
        for (size_t j = 0; s && rc == 0 && j < s->n_cells; j++)
            if (s->cells[j])
                rc = cols_add(c, s->cells[j]->strata, s->cells[j]->n_strata);
    }
    for (size_t i = 0; rc == 0 && i < r->n_pooled; i++)
        if (r->pooled[i])
            rc = cols_add(c, r->pooled[i]->strata, r->pooled[i]->n_strata);
    return rc;
}

static bool is_catalog(const Sdefed__FederatedResult *r)
{
    return r->kind == SDEFED__QUERY_KIND__KIND_CATALOG;
}

static int finish(FILE *f)
{
    if (fflush(f) != 0 || ferror(f))
        return SDF_EIO;
    return 0;
}

/* Summary kind (issue 3): defined in the summary section below. */
static bool is_summary(const Sdefed__FederatedResult *r);
static json_t *summaries_json(Sdefed__Summary *const *s, size_t n, bool pooled);
static int csv_result_summary(FILE *f, const Sdefed__FederatedResult *r);

/* ---- JSON ------------------------------------------------------------------------ */

/* {"name":"value",...}; the first occurrence of a repeated name wins. */
static json_t *strata_json(Sdefed__Stratum *const *strata, size_t n)
{
    json_t *o = json_object();
    bool ok = o != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        if (!strata[i])
            continue;
        json_t *k = jo_str(strata[i]->name);   /* key must be UTF-8 too */
        ok = k != NULL;
        if (ok && !json_object_get(o, json_string_value(k)))
            ok = jo_put(o, json_string_value(k), jo_str(strata[i]->value));
        json_decref(k);
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *value_json(int64_t v, Sdefed__CellStatus st)
{
    return released(st) ? json_integer(v) : json_null();
}

static json_t *cell_json(const Sdefed__Cell *c)
{
    json_t *o = json_object();
    bool ok = o && jo_put(o, "strata", strata_json(c->strata, c->n_strata)) &&
              jo_put(o, "value", value_json(c->value, c->status)) &&
              jo_put(o, "status", json_string(cell_status(c->status)));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *pooled_json(const Sdefed__PooledCell *c)
{
    json_t *o = json_object();
    bool ok = o && jo_put(o, "strata", strata_json(c->strata, c->n_strata)) &&
              jo_put(o, "value", value_json(c->value, c->status)) &&
              jo_put(o, "status", json_string(cell_status(c->status))) &&
              jo_put(o, "lower_bound", json_boolean(c->lower_bound));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *strings_json(char *const *v, size_t n)
{
    json_t *a = json_array();
    bool ok = a != NULL;
    for (size_t i = 0; ok && i < n; i++)
        ok = jo_push(a, jo_str(v[i]));
    if (!ok) {
        json_decref(a);
        return NULL;
    }
    return a;
}

static json_t *dataset_json(const Sdefed__DatasetInfo *d)
{
    json_t *o = json_object();
    bool ok = o && jo_put(o, "name", jo_str(d->name)) && jo_put(o, "type", jo_str(d->type)) &&
              jo_put(o, "omop_version", jo_str(d->omop_version)) &&
              jo_put(o, "person_count", value_json(d->person_count, d->person_count_status)) &&
              jo_put(o, "person_count_status", json_string(cell_status(d->person_count_status))) &&
              jo_put(o, "data_freshness", jo_str(d->data_freshness)) &&
              jo_put(o, "domains", strings_json(d->domains, d->n_domains)) &&
              jo_put(o, "error", d->error && d->error[0] ? json_string(d->error) : json_null());
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *site_json(const Sdefed__SiteResult *s, bool catalog)
{
    json_t *o = json_object();
    json_t *list = json_array();
    bool ok = o && list && jo_put(o, "site", jo_str(s->site)) &&
              jo_put(o, "status", json_string(site_status(s->status))) &&
              jo_put(o, "reason", jo_str(s->reason));
    if (catalog) {
        for (size_t i = 0; ok && i < s->n_catalog; i++)
            if (s->catalog[i])
                ok = jo_push(list, dataset_json(s->catalog[i]));
    } else {
        for (size_t i = 0; ok && i < s->n_cells; i++)
            if (s->cells[i])
                ok = jo_push(list, cell_json(s->cells[i]));
    }
    if (ok) {
        ok = jo_put(o, catalog ? "datasets" : "cells", list);   /* consumes list */
        list = NULL;
    }
    if (ok && s->policy) {
        json_t *p = json_object();
        const Sdefed__PolicyApplied *pa = s->policy;
        ok = p && jo_put(p, "min_cell", json_integer(pa->min_cell)) &&
             jo_put(p, "rounding", json_integer(pa->rounding)) &&
             jo_put(p, "zero_is_disclosive", json_boolean(pa->zero_is_disclosive));
        /* The rest of the effective policy, when the site reported it. */
        if (ok && pa->dominance_n > 0)
            ok = jo_put(p, "dominance_n", json_integer(pa->dominance_n)) &&
                 jo_put(p, "dominance_k", json_real(pa->dominance_k)) &&
                 jo_put(p, "max_identical", json_integer(pa->max_identical)) &&
                 jo_put(p, "identical_window_days", json_integer(pa->identical_window_days)) &&
                 jo_put(p, "differencing", json_boolean(pa->differencing)) &&
                 jo_put(p, "dp_epsilon", json_real(pa->dp_epsilon)) &&
                 jo_put(p, "dp_budget", json_real(pa->dp_budget)) &&
                 jo_put(p, "dp_spent", json_real(pa->dp_spent));
        if (ok)
            ok = jo_put(o, "policy", p);
        else
            json_decref(p);
    } else if (ok) {
        ok = jo_put(o, "policy", json_null());
    }
    ok = ok && jo_put(o, "rules_fired", strings_json(s->rules_fired, s->n_rules_fired));
    if (ok && s->n_summaries > 0)   /* summary kind (issue 3) */
        ok = jo_put(o, "summaries", summaries_json(s->summaries, s->n_summaries, false));
    if (ok && s->n_surveil > 0)     /* surveil kind (issue 6) */
        ok = jo_put(o, "surveil", out_surveil_rows_json(s->surveil, s->n_surveil, false));
    if (ok && s->n_validations > 0)  /* validate kind (issue 5) */
        ok = jo_put(o, "validations", out_validations_json(s->validations, s->n_validations));
    json_decref(list);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *out_result_json(const Sdefed__FederatedResult *r)
{
    if (!r)
        return NULL;
    bool catalog = is_catalog(r);
    char when[32];
    json_t *o = json_object();
    json_t *sites = json_array();
    bool ok = o && sites && jo_put(o, "query_id", jo_str(r->query_id)) &&
              jo_put(o, "kind", json_string(*spec_kind_name(r->kind) ? spec_kind_name(r->kind)
                                                                  : "unknown")) &&
              jo_put(o, "project", jo_str(r->project)) && jo_put(o, "requester", jo_str(r->requester)) &&
              jo_put(o, "submitted", iso_utc(r->submitted_unix_ms, when, sizeof when)
                                      ? json_string(when) : json_null());
    if (ok && r->spec)   /* the canonical spec the coordinator ran */
        ok = jo_put(o, "spec", spec_to_json(r->spec));
    for (size_t i = 0; ok && i < r->n_sites; i++)
        if (r->sites[i])
            ok = jo_push(sites, site_json(r->sites[i], catalog));
    if (ok) {
        ok = jo_put(o, "sites", sites);
        sites = NULL;
    }
    if (ok && !catalog) {
        json_t *pooled = json_object(), *cells = json_array();
        ok = pooled && cells;
        for (size_t i = 0; ok && i < r->n_pooled; i++)
            if (r->pooled[i])
                ok = jo_push(cells, pooled_json(r->pooled[i]));
        if (ok) {
            ok = jo_put(pooled, "cells", cells);
            cells = NULL;
        }
        if (ok && r->kind == SDEFED__QUERY_KIND__KIND_SURVEIL)   /* issue 6 */
            ok = jo_put(pooled, "surveil", out_surveil_rows_json(r->pooled_surveil,
                                                              r->n_pooled_surveil, true));
        if (ok && r->kind == SDEFED__QUERY_KIND__KIND_VALIDATE)  /* issue 5 */
            ok = jo_put(pooled, "validations",
                     out_pooled_validations_json(r->pooled_validations,
                                                 r->n_pooled_validations));
        if (ok && r->kind == SDEFED__QUERY_KIND__KIND_SUMMARY)   /* issue 3 */
            ok = jo_put(pooled, "summaries", summaries_json(r->pooled_summaries,
                                                         r->n_pooled_summaries, true));
        if (ok) {
            ok = jo_put(o, "pooled", pooled);
            pooled = NULL;
        }
        json_decref(cells);
        json_decref(pooled);
    }
    json_decref(sites);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *out_sites_json(const Sdefed__SitesReply *r)
{
    if (!r)
        return NULL;
    json_t *o = json_object();
    json_t *sites = json_array();
    bool ok = o && sites;
    for (size_t i = 0; ok && i < r->n_sites; i++) {
        const Sdefed__SiteInfo *s = r->sites[i];
        if (!s)
            continue;
        char when[32];
        json_t *so = json_object(), *ds = json_array();
        ok = so && ds && jo_put(so, "site", jo_str(s->site)) &&
             jo_put(so, "online", json_boolean(s->online)) &&
             jo_put(so, "last_seen", iso_utc(s->last_seen_unix_ms, when, sizeof when)
                                      ? json_string(when) : json_null()) &&
             jo_put(so, "last_seen_unix_ms", json_integer(s->last_seen_unix_ms > INT64_MAX
                                                           ? INT64_MAX
                                                           : (json_int_t)s->last_seen_unix_ms)) &&
             jo_put(so, "address", jo_str(s->address));
        for (size_t j = 0; ok && j < s->n_datasets; j++)
            if (s->datasets[j])
                ok = jo_push(ds, jo_str(s->datasets[j]->name));
        if (ok) {
            ok = jo_put(so, "datasets", ds);
            ds = NULL;
        }
        if (ok) {
            ok = jo_push(sites, so);
            so = NULL;
        }
        json_decref(ds);
        json_decref(so);
    }
    if (ok) {
        ok = jo_put(o, "sites", sites);
        sites = NULL;
    }
    json_decref(sites);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int write_json(FILE *f, json_t *j)
{
    if (!j)
        return SDF_ENOMEM;
    int rc = json_dumpf(j, f, JSON_INDENT(2)) == 0 && fputc('\n', f) != EOF ? 0 : SDF_EIO;
    json_decref(j);
    return rc ? rc : finish(f);
}

/* ---- CSV (RFC 4180) ------------------------------------------------------------------- */

static void csv_field(FILE *f, const char *s, bool first)
{
    s = nz(s);
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

static void csv_end(FILE *f) { fputs("\r\n", f); }

/* "offline: no connection" — a site's status with its reason, if any. */
static char *status_with_reason(Sdefed__SiteStatus st, const char *reason)
{
    char *s = NULL;
    reason = nz(reason);
    if (asprintf(&s, "%s%s%s", site_status(st), *reason ? ": " : "", reason) < 0)
        return NULL;
    return s;
}

static int csv_result_catalog(FILE *f, const Sdefed__FederatedResult *r)
{
    static const char *const hdr[] = { "site", "site_status", "dataset", "type", "omop_version",
                                       "persons", "persons_status", "data_freshness",
                                       "error" };
    for (size_t i = 0; i < sizeof hdr / sizeof hdr[0]; i++)
        csv_field(f, hdr[i], i == 0);
    csv_end(f);
    for (size_t i = 0; i < r->n_sites; i++) {
        const Sdefed__SiteResult *s = r->sites[i];
        if (!s)
            continue;
        char *st = status_with_reason(s->status, s->reason);
        if (!st)
            return SDF_ENOMEM;
        size_t rows = 0;
        for (size_t j = 0; s->status == SDEFED__SITE_STATUS__SITE_OK && j < s->n_catalog; j++) {
            const Sdefed__DatasetInfo *d = s->catalog[j];
            if (!d)
                continue;
            char num[32] = "";
            if (released(d->person_count_status))
                snprintf(num, sizeof num, "%" PRId64, d->person_count);
            csv_field(f, s->site, true);
            csv_field(f, st, false);
            csv_field(f, d->name, false);
            csv_field(f, d->type, false);
            csv_field(f, d->omop_version, false);
            csv_field(f, num, false);
            csv_field(f, cell_status(d->person_count_status), false);
            csv_field(f, d->data_freshness, false);
            csv_field(f, d->error, false);
            csv_end(f);
            rows++;
        }
        if (rows == 0) {
            csv_field(f, s->site, true);
            csv_field(f, st, false);
            for (int k = 0; k < 7; k++)
                csv_field(f, "", false);
            csv_end(f);
        }
        free(st);
    }
    return finish(f);
}

static void csv_cell(FILE *f, const char *site, const char *st, const struct cols *c,
                     Sdefed__Stratum *const *strata, size_t n_strata, int64_t value,
                     Sdefed__CellStatus status, const char *lower_bound)
{
    char num[32] = "";
    if (released(status))
        snprintf(num, sizeof num, "%" PRId64, value);
    csv_field(f, site, true);
    csv_field(f, st, false);
    for (size_t k = 0; k < c->n; k++)
        csv_field(f, stratum_value(strata, n_strata, c->name[k]), false);
    csv_field(f, num, false);
    csv_field(f, cell_status(status), false);
    csv_field(f, lower_bound, false);
    csv_end(f);
}

static int csv_result(FILE *f, const Sdefed__FederatedResult *r)
{
    struct cols c;
    int rc;

    if (is_catalog(r))
        return csv_result_catalog(f, r);
    if (is_summary(r))
        return csv_result_summary(f, r);   /* issue 3 */
    if ((rc = cols_collect(r, &c)))
        return rc;
    csv_field(f, "site", true);
    csv_field(f, "site_status", false);
    for (size_t k = 0; k < c.n; k++)
        csv_field(f, c.name[k], false);
    csv_field(f, "value", false);
    csv_field(f, "status", false);
    csv_field(f, "lower_bound", false);
    csv_end(f);

    for (size_t i = 0; i < r->n_sites; i++) {
        const Sdefed__SiteResult *s = r->sites[i];
        if (!s)
            continue;
        char *st = status_with_reason(s->status, s->reason);
        if (!st)
            return SDF_ENOMEM;
        size_t rows = 0;
        for (size_t j = 0; s->status == SDEFED__SITE_STATUS__SITE_OK && j < s->n_cells; j++) {
            const Sdefed__Cell *cell = s->cells[j];
            if (!cell)
                continue;
            csv_cell(f, s->site, st, &c, cell->strata, cell->n_strata, cell->value,
                     cell->status, "false");
            rows++;
        }
        if (rows == 0) {   /* a site with no cells still gets its status row */
            csv_field(f, s->site, true);
            csv_field(f, st, false);
            for (size_t k = 0; k < c.n + 3; k++)
                csv_field(f, "", false);
            csv_end(f);
        }
        free(st);
    }
    for (size_t i = 0; i < r->n_pooled; i++) {
        const Sdefed__PooledCell *p = r->pooled[i];
        if (p)
            csv_cell(f, "pooled", "", &c, p->strata, p->n_strata, p->value, p->status,
                     p->lower_bound ? "true" : "false");
    }
    return finish(f);
}

/* Names of a site's datasets, comma separated (", " for the table). */
static char *dataset_names(const Sdefed__SiteInfo *s, const char *sep)
{
    size_t len = 1;
    for (size_t j = 0; j < s->n_datasets; j++)
        if (s->datasets[j])
            len += strlen(nz(s->datasets[j]->name)) + strlen(sep);
    char *out = malloc(len);
    if (!out)
        return NULL;
    out[0] = '\0';
    size_t o = 0;
    for (size_t j = 0; j < s->n_datasets; j++) {
        if (!s->datasets[j])
            continue;
        const char *n = nz(s->datasets[j]->name);
        if (o > 0) {
            memcpy(out + o, sep, strlen(sep));
            o += strlen(sep);
        }
        memcpy(out + o, n, strlen(n));
        o += strlen(n);
        out[o] = '\0';
    }
    return out;
}

static int csv_sites(FILE *f, const Sdefed__SitesReply *r)
{
    csv_field(f, "site", true);
    csv_field(f, "status", false);
    csv_field(f, "last_seen", false);
    csv_field(f, "datasets", false);
    csv_end(f);
    for (size_t i = 0; i < r->n_sites; i++) {
        const Sdefed__SiteInfo *s = r->sites[i];
        if (!s)
            continue;
        char when[32];
        char *ds = dataset_names(s, ",");
        if (!ds)
            return SDF_ENOMEM;
        csv_field(f, s->site, true);
        csv_field(f, s->online ? "online" : "offline", false);
        csv_field(f, iso_utc(s->last_seen_unix_ms, when, sizeof when) ? when : "never", false);
        csv_field(f, ds, false);
        csv_end(f);
        free(ds);
    }
    return finish(f);
}

/* ---- table ---------------------------------------------------------------------------- */

/* Rows of strings printed in aligned columns. A "span" row prints only its
 * first two fields: the first padded to the column, the second as is. */
struct table {
    size_t ncols;
    size_t right;          /* index of the right-aligned column, or SIZE_MAX */
    size_t nrows, cap;
    char **cell;           /* nrows * ncols, each sanitised and owned */
    bool *span;
};

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cell[i]);
    free(t->cell);
    free(t->span);
}

/* A copy of s safe for a terminal: C0 controls, DEL and the UTF-8 encodings
 * of C1 controls (U+0080..U+009F) become '?'. */
static char *term_safe(const char *s)
{
    s = nz(s);
    char *out = strdup(s);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0xc2 && (unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] <= 0x9f) {
            out[o++] = '?';
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            out[o++] = '?';
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return out;
}

/* Columns a string occupies: UTF-8 continuation bytes take none. */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

static int table_add(struct table *t, const char *const *fields, size_t n, bool span)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        if (cap > SIZE_MAX / sizeof(char *) / t->ncols)
            return SDF_ENOMEM;
        char **cell = realloc(t->cell, cap * t->ncols * sizeof *cell);
        if (!cell)
            return SDF_ENOMEM;
        t->cell = cell;
        bool *sp = realloc(t->span, cap * sizeof *sp);
        if (!sp)
            return SDF_ENOMEM;
        t->span = sp;
        t->cap = cap;
    }
    char **row = t->cell + t->nrows * t->ncols;
    for (size_t k = 0; k < t->ncols; k++) {
        row[k] = term_safe(k < n ? fields[k] : "");
        if (!row[k]) {
            while (k-- > 0)
                free(row[k]);
            return SDF_ENOMEM;
        }
    }
    t->span[t->nrows++] = span;
    return 0;
}

static void pad(FILE *f, size_t n)
{
    while (n-- > 0)
        fputc(' ', f);
}

static int table_print(FILE *f, const struct table *t)
{
    size_t *w = calloc(t->ncols, sizeof *w);
    if (!w)
        return SDF_ENOMEM;
    for (size_t i = 0; i < t->nrows; i++)
        for (size_t k = 0; k < (t->span[i] ? 1 : t->ncols); k++) {
            size_t x = width(t->cell[i * t->ncols + k]);
            if (x > w[k])
                w[k] = x;
        }
    for (size_t i = 0; i < t->nrows; i++) {
        char *const *row = t->cell + i * t->ncols;
        if (t->span[i]) {
            fputs(row[0], f);
            pad(f, w[0] - width(row[0]) + 2);
            fputs(row[1], f);
            fputc('\n', f);
            continue;
        }
        /* trailing empty columns are not padded */
        size_t last = t->ncols;
        while (last > 1 && !row[last - 1][0])
            last--;
        for (size_t k = 0; k < last; k++) {
            size_t x = width(row[k]);
            if (k == t->right)
                pad(f, w[k] - x);
            fputs(row[k], f);
            if (k + 1 < last)
                pad(f, (k == t->right ? 0 : w[k] - x) + 2);
        }
        fputc('\n', f);
    }
    free(w);
    return 0;
}

/* A site that did not answer: one row, "site  status: reason". */
static int table_add_site_status(struct table *t, const Sdefed__SiteResult *s)
{
    char *st = status_with_reason(s->status, s->reason);
    if (!st)
        return SDF_ENOMEM;
    const char *row[] = { nz(s->site), st };
    int rc = table_add(t, row, 2, true);
    free(st);
    return rc;
}

static int table_result_catalog(FILE *f, const Sdefed__FederatedResult *r)
{
    static const char *const hdr[] = { "site", "status", "dataset", "type", "omop",
                                       "persons", "freshness" };
    struct table t = { .ncols = 7, .right = 5 };
    int rc = table_add(&t, hdr, 7, false);

    for (size_t i = 0; rc == 0 && i < r->n_sites; i++) {
        const Sdefed__SiteResult *s = r->sites[i];
        if (!s)
            continue;
        if (s->status != SDEFED__SITE_STATUS__SITE_OK) {
            rc = table_add_site_status(&t, s);
            continue;
        }
        size_t rows = 0;
        for (size_t j = 0; rc == 0 && j < s->n_catalog; j++) {
            const Sdefed__DatasetInfo *d = s->catalog[j];
            if (!d)
                continue;
            char num[32];
            if (released(d->person_count_status))
                snprintf(num, sizeof num, "%" PRId64, d->person_count);
            else
                snprintf(num, sizeof num, "suppressed");
            char unavailable[96];
            if (d->error && d->error[0]) {
                snprintf(unavailable, sizeof unavailable, "unavailable: %s", d->error);
                const char *erow[] = { nz(s->site), unavailable, nz(d->name), nz(d->type) };
                rc = table_add(&t, erow, 4, false);
                rows++;
                continue;
            }
            const char *row[] = { nz(s->site), "ok", nz(d->name), nz(d->type),
                                  *nz(d->omop_version) ? d->omop_version : "-", num,
                                  *nz(d->data_freshness) ? d->data_freshness : "-" };
            rc = table_add(&t, row, 7, false);
            rows++;
        }
        if (rc == 0 && rows == 0) {
            const char *row[] = { nz(s->site), "ok: no datasets" };
            rc = table_add(&t, row, 2, true);
        }
    }
    if (rc == 0)
        rc = table_print(f, &t);
    table_free(&t);
    return rc;
}

/* "suppressed (<10)" from the site's policy, or "suppressed". */
static void suppressed_note(char *buf, size_t n, const Sdefed__PolicyApplied *p)
{
    if (p && p->min_cell > 0)
        snprintf(buf, n, "suppressed (<%" PRId64 ")", p->min_cell);
    else
        snprintf(buf, n, "suppressed");
}

static int table_add_cell(struct table *t, const struct cols *c, const char *site,
                          const char *st, Sdefed__Stratum *const *strata, size_t n_strata,
                          const char *value, const char *note)
{
    const char *row[OUT_MAX_STRATA + 4];
    size_t n = 0;
    row[n++] = site;
    row[n++] = st;
    for (size_t k = 0; k < c->n; k++)
        row[n++] = stratum_value(strata, n_strata, c->name[k]);
    row[n++] = value;
    row[n++] = note;
    return table_add(t, row, n, false);
}

static bool same_strata(Sdefed__Stratum *const *a, size_t na, Sdefed__Stratum *const *b,
                        size_t nb)
{
    if (na != nb)
        return false;
    for (size_t k = 0; k < na; k++)
        if (!a[k] || !b[k] || strcmp(nz(a[k]->name), nz(b[k]->name)) != 0 ||
            strcmp(nz(a[k]->value), nz(b[k]->value)) != 0)
            return false;
    return true;
}

/* A stratum whose pooled count is an exact, complete 0 is 0 at every site:
 * the table leaves such rows out (JSON and CSV keep the full grid). */
static bool zero_everywhere(const Sdefed__FederatedResult *r, Sdefed__Stratum *const *strata,
                            size_t n)
{
    for (size_t i = 0; i < r->n_pooled; i++) {
        const Sdefed__PooledCell *p = r->pooled[i];
        if (p && same_strata(p->strata, p->n_strata, strata, n))
            return p->status == SDEFED__CELL_STATUS__CELL_EXACT && p->value == 0 &&
                   !p->lower_bound;
    }
    return false;
}

static int table_result_count(FILE *f, const Sdefed__FederatedResult *r)
{
    struct cols c;
    int rc = cols_collect(r, &c);
    if (rc)
        return rc;

    struct table t = { .ncols = c.n + 4, .right = c.n + 2 };
    const char *hdr[OUT_MAX_STRATA + 4];
    size_t n = 0;
    hdr[n++] = "site";
    hdr[n++] = "status";
    for (size_t k = 0; k < c.n; k++)
        hdr[n++] = c.name[k];
    hdr[n++] = "value";
    hdr[n++] = "disclosure";
    rc = table_add(&t, hdr, n, false);

    for (size_t i = 0; rc == 0 && i < r->n_sites; i++) {
        const Sdefed__SiteResult *s = r->sites[i];
        if (!s)
            continue;
        if (s->status != SDEFED__SITE_STATUS__SITE_OK) {
            rc = table_add_site_status(&t, s);
            continue;
        }
        size_t rows = 0;
        for (size_t j = 0; rc == 0 && j < s->n_cells; j++) {
            const Sdefed__Cell *cell = s->cells[j];
            if (!cell)
                continue;
            if (cell->n_strata > 0 && zero_everywhere(r, cell->strata, cell->n_strata)) {
                rows++;
                continue;
            }
            char num[32], note[48];
            if (released(cell->status)) {
                snprintf(num, sizeof num, "%" PRId64, cell->value);
                snprintf(note, sizeof note, "%s", cell_status(cell->status));
            } else {
                snprintf(num, sizeof num, "-");
                if (cell->status == SDEFED__CELL_STATUS__CELL_SUPPRESSED)
                    suppressed_note(note, sizeof note, s->policy);
                else
                    snprintf(note, sizeof note, "withheld (unknown status)");
            }
            rc = table_add_cell(&t, &c, nz(s->site), "ok", cell->strata, cell->n_strata,
                                num, note);
            rows++;
        }
        if (rc == 0 && rows == 0) {
            const char *row[] = { nz(s->site), "ok: no cells" };
            rc = table_add(&t, row, 2, true);
        }
    }
    size_t hidden = 0;
    for (size_t i = 0; rc == 0 && i < r->n_pooled; i++) {
        const Sdefed__PooledCell *p = r->pooled[i];
        if (!p)
            continue;
        if (p->n_strata > 0 && zero_everywhere(r, p->strata, p->n_strata)) {
            hidden++;
            continue;
        }
        char num[40], note[64];
        if (released(p->status) && p->lower_bound) {
            snprintf(num, sizeof num, ">= %" PRId64, p->value);
            snprintf(note, sizeof note, "%s, lower bound", cell_status(p->status));
        } else if (released(p->status)) {
            snprintf(num, sizeof num, "%" PRId64, p->value);
            snprintf(note, sizeof note, "%s", cell_status(p->status));
        } else {
            snprintf(num, sizeof num, "-");
            snprintf(note, sizeof note, "%s",
                     p->status == SDEFED__CELL_STATUS__CELL_SUPPRESSED
                         ? "suppressed" : "withheld (unknown status)");
        }
        rc = table_add_cell(&t, &c, "pooled", "", p->strata, p->n_strata, num, note);
    }
    if (rc == 0)
        rc = table_print(f, &t);
    if (rc == 0 && hidden > 0)
        fprintf(f, "(%zu strata with a count of 0 at every site not shown; --format json lists "
                   "every stratum)\n", hidden);
    table_free(&t);
    return rc;
}

/* "Policy  site-a: min_cell 10, rounding 5; rules: small_count, rounding" */
static int table_policies(FILE *f, const Sdefed__FederatedResult *r)
{
    bool any = false;
    for (size_t i = 0; i < r->n_sites; i++) {
        const Sdefed__SiteResult *s = r->sites[i];
        if (!s || (!s->policy && s->n_rules_fired == 0))
            continue;
        char *site = term_safe(s->site);
        if (!site)
            return SDF_ENOMEM;
        if (!any)
            fputs("\nDisclosure control\n", f);
        any = true;
        fprintf(f, "  %s:", site);
        free(site);
        if (s->policy)
            fprintf(f, " min_cell %" PRId64 ", rounding %" PRId64 "%s", s->policy->min_cell,
                    s->policy->rounding, s->policy->zero_is_disclosive ? ", zero suppressed" : "");
        for (size_t j = 0; j < s->n_rules_fired; j++) {
            char *rule = term_safe(s->rules_fired[j]);
            if (!rule)
                return SDF_ENOMEM;
            fprintf(f, "%s%s", j == 0 ? (s->policy ? "; rules fired: " : " rules fired: ")
                                      : ", ", rule);
            free(rule);
        }
        fputc('\n', f);
    }
    return 0;
}

/* ---- summary kind (issue 3) --------------------------------------------------------
 * JSON: each site gets "summaries": [{"strata":{...}, "n":120, "n_status":"rounded",
 * "mean":7.1, "mean_status":"exact", "sd":1.2, "sd_status":"exact",
 * "quantiles":[{"p":0.25,"value":6.3,"status":"exact"},...]}] and "pooled" gets
 * "summaries" of the same shape without quantiles plus "partial" (some site's
 * stratum was suppressed) and "sites" (how many contributed). A suppressed
 * number is null. CSV: site,site_status,<strata>,n,n_status,mean,mean_status,
 * sd,sd_status,p25,p50,p75,partial (pooled rows leave the quantiles empty:
 * they are not poolable). Table: one row per site and stratum, then pooled. */

static bool is_summary(const Sdefed__FederatedResult *r)
{
    return r->kind == SDEFED__QUERY_KIND__KIND_SUMMARY;
}

static json_t *num_json(double v, Sdefed__CellStatus st)
{
    return released(st) ? json_real(v) : json_null();
}

static json_t *summary_json(const Sdefed__Summary *s, bool pooled)
{
    json_t *o = json_object();
    bool ok = o && jo_put(o, "strata", strata_json(s->strata, s->n_strata)) &&
              jo_put(o, "n", released(s->n_status) ? json_integer(s->n) : json_null()) &&
              jo_put(o, "n_status", json_string(cell_status(s->n_status))) &&
              jo_put(o, "mean", num_json(s->mean, s->mean_status)) &&
              jo_put(o, "mean_status", json_string(cell_status(s->mean_status))) &&
              jo_put(o, "sd", num_json(s->sd, s->sd_status)) &&
              jo_put(o, "sd_status", json_string(cell_status(s->sd_status)));
    if (ok && pooled) {
        ok = jo_put(o, "partial", json_boolean(s->partial)) &&
             jo_put(o, "sites", json_integer(s->sites));
    } else if (ok) {
        json_t *qs = json_array();
        ok = qs != NULL;
        for (size_t i = 0; ok && i < s->n_quantiles; i++) {
            const Sdefed__Quantile *q = s->quantiles[i];
            json_t *qo = json_object();
            ok = q && qo && jo_put(qo, "p", json_real(q->p)) &&
                 jo_put(qo, "value", num_json(q->value, q->status)) &&
                 jo_put(qo, "status", json_string(cell_status(q->status))) && jo_push(qs, qo);
            if (!ok && qo && !q)
                json_decref(qo);
        }
        if (ok)
            ok = jo_put(o, "quantiles", qs);
        else
            json_decref(qs);
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *summaries_json(Sdefed__Summary *const *s, size_t n, bool pooled)
{
    json_t *a = json_array();
    bool ok = a != NULL;
    for (size_t i = 0; ok && i < n; i++)
        if (s[i])
            ok = jo_push(a, summary_json(s[i], pooled));
    if (!ok) {
        json_decref(a);
        return NULL;
    }
    return a;
}

static int cols_collect_summary(const Sdefed__FederatedResult *r, struct cols *c)
{
    int rc = 0;
    c->n = 0;
    for (size_t i = 0; rc == 0 && i < r->n_sites; i++) {
        const Sdefed__SiteResult *s = r->sites[i];
        for (size_t j = 0; s && rc == 0 && j < s->n_summaries; j++)
            if (s->summaries[j])
                rc = cols_add(c, s->summaries[j]->strata, s->summaries[j]->n_strata);
    }
    for (size_t i = 0; rc == 0 && i < r->n_pooled_summaries; i++)
        if (r->pooled_summaries[i])
            rc = cols_add(c, r->pooled_summaries[i]->strata, r->pooled_summaries[i]->n_strata);
    return rc;
}

/* Text of a released number ("%.4g"), or `none` when it is not released. */
static void num_text(char *buf, size_t n, double v, Sdefed__CellStatus st, const char *none)
{
    if (released(st))
        snprintf(buf, n, "%.4g", v);
    else
        snprintf(buf, n, "%s", none);
}

/* The quantile with probability p, or NULL. */
static const Sdefed__Quantile *quantile_at(const Sdefed__Summary *s, double p)
{
    for (size_t i = 0; i < s->n_quantiles; i++)
        if (s->quantiles[i] && s->quantiles[i]->p > p - 1e-9 && s->quantiles[i]->p < p + 1e-9)
            return s->quantiles[i];
    return NULL;
}

static const double summary_ps[3] = { 0.25, 0.5, 0.75 };

/* The number fields of one row: n, mean, sd, p25, p50, p75. */
static void summary_fields(const Sdefed__Summary *s, bool pooled, const char *none,
                           char f[6][32])
{
    if (released(s->n_status))
        snprintf(f[0], 32, "%" PRId64, s->n);
    else
        snprintf(f[0], 32, "%s", none);
    num_text(f[1], 32, s->mean, s->mean_status, none);
    num_text(f[2], 32, s->sd, s->sd_status, none);
    for (int k = 0; k < 3; k++) {
        const Sdefed__Quantile *q = pooled ? NULL : quantile_at(s, summary_ps[k]);
        if (q)
            num_text(f[3 + k], 32, q->value, q->status, none);
        else
            snprintf(f[3 + k], 32, "%s", pooled ? "" : none);
    }
}

static int csv_result_summary(FILE *f, const Sdefed__FederatedResult *r)
{
    static const char *const tail[] = { "n", "n_status", "mean", "mean_status", "sd",
                                        "sd_status", "p25", "p50", "p75", "partial" };
    struct cols c;
    int rc = cols_collect_summary(r, &c);
    if (rc)
        return rc;
    csv_field(f, "site", true);
    csv_field(f, "site_status", false);
    for (size_t k = 0; k < c.n; k++)
        csv_field(f, c.name[k], false);
    for (size_t k = 0; k < sizeof tail / sizeof tail[0]; k++)
        csv_field(f, tail[k], false);
    csv_end(f);
    for (size_t i = 0; i <= r->n_sites; i++) {
        bool pooled = i == r->n_sites;
        const Sdefed__SiteResult *s = pooled ? NULL : r->sites[i];
        if (!pooled && !s)
            continue;
        char *st = pooled ? strdup("") : status_with_reason(s->status, s->reason);
        if (!st)
            return SDF_ENOMEM;
        Sdefed__Summary *const *list = pooled ? r->pooled_summaries : s->summaries;
        size_t n = pooled ? r->n_pooled_summaries : s->n_summaries;
        if (!pooled && (s->status != SDEFED__SITE_STATUS__SITE_OK || n == 0)) {
            csv_field(f, s->site, true);
            csv_field(f, st, false);
            for (size_t k = 0; k < c.n + sizeof tail / sizeof tail[0]; k++)
                csv_field(f, "", false);
            csv_end(f);
            n = 0;
        }
        for (size_t j = 0; j < n; j++) {
            const Sdefed__Summary *x = list[j];
            char fl[6][32];
            if (!x)
                continue;
            summary_fields(x, pooled, "", fl);
            csv_field(f, pooled ? "pooled" : s->site, true);
            csv_field(f, st, false);
            for (size_t k = 0; k < c.n; k++)
                csv_field(f, stratum_value(x->strata, x->n_strata, c.name[k]), false);
            csv_field(f, fl[0], false);
            csv_field(f, cell_status(x->n_status), false);
            csv_field(f, fl[1], false);
            csv_field(f, cell_status(x->mean_status), false);
            csv_field(f, fl[2], false);
            csv_field(f, cell_status(x->sd_status), false);
            csv_field(f, fl[3], false);
            csv_field(f, fl[4], false);
            csv_field(f, fl[5], false);
            csv_field(f, pooled ? (x->partial ? "true" : "false") : "", false);
            csv_end(f);
        }
        free(st);
    }
    return finish(f);
}

static int table_result_summary(FILE *f, const Sdefed__FederatedResult *r)
{
    struct cols c;
    int rc = cols_collect_summary(r, &c);
    if (rc)
        return rc;
    struct table t = { .ncols = c.n + 8, .right = SIZE_MAX };
    const char *hdr[OUT_MAX_STRATA + 8];
    size_t n = 0;
    hdr[n++] = "site";
    hdr[n++] = "status";
    for (size_t k = 0; k < c.n; k++)
        hdr[n++] = c.name[k];
    hdr[n++] = "n";
    hdr[n++] = "mean";
    hdr[n++] = "sd";
    hdr[n++] = "p25";
    hdr[n++] = "median";
    hdr[n++] = "p75";
    rc = table_add(&t, hdr, n, false);
    for (size_t i = 0; rc == 0 && i <= r->n_sites; i++) {
        bool pooled = i == r->n_sites;
        const Sdefed__SiteResult *s = pooled ? NULL : r->sites[i];
        if (!pooled && !s)
            continue;
        if (!pooled && s->status != SDEFED__SITE_STATUS__SITE_OK) {
            char *st = status_with_reason(s->status, s->reason);
            if (!st)
                return SDF_ENOMEM;
            const char *row[] = { nz(s->site), st };
            rc = table_add(&t, row, 2, true);
            free(st);
            continue;
        }
        Sdefed__Summary *const *list = pooled ? r->pooled_summaries : s->summaries;
        size_t nl = pooled ? r->n_pooled_summaries : s->n_summaries;
        for (size_t j = 0; rc == 0 && j < nl; j++) {
            const Sdefed__Summary *x = list[j];
            char fl[6][32];
            const char *row[OUT_MAX_STRATA + 8];
            size_t m = 0;
            if (!x)
                continue;
            summary_fields(x, pooled, "suppressed", fl);
            row[m++] = pooled ? "pooled" : nz(s->site);
            row[m++] = pooled ? (x->partial ? "partial" : "") : "ok";
            for (size_t k = 0; k < c.n; k++)
                row[m++] = stratum_value(x->strata, x->n_strata, c.name[k]);
            for (int k = 0; k < 6; k++)
                row[m++] = fl[k];
            rc = table_add(&t, row, m, false);
        }
    }
    if (rc == 0)
        rc = table_print(f, &t);
    table_free(&t);
    if (rc == 0)
        fprintf(f, "Quantiles are means of histogram bins of at least min_cell persons; "
                   "they are not pooled.\n");
    return rc;
}

static int table_result(FILE *f, const Sdefed__FederatedResult *r)
{
    char *id = term_safe(r->query_id), *project = term_safe(r->project);
    char *req = term_safe(r->requester);
    char when[32];
    int rc = 0;

    if (!id || !project || !req) {
        rc = SDF_ENOMEM;
    } else {
        fprintf(f, "Query %s  %s  project=%s", id,
                *spec_kind_name(r->kind) ? spec_kind_name(r->kind) : "unknown", project);
        if (*req)
            fprintf(f, "  requester=%s", req);
        if (iso_utc(r->submitted_unix_ms, when, sizeof when))
            fprintf(f, "  submitted %s", when);
        fputc('\n', f);
        rc = is_catalog(r)   ? table_result_catalog(f, r)
             : is_summary(r) ? table_result_summary(f, r)   /* issue 3 */
                             : table_result_count(f, r);
        if (rc == 0)
            rc = table_policies(f, r);
    }
    free(id);
    free(project);
    free(req);
    return rc ? rc : finish(f);
}

static int table_sites(FILE *f, const Sdefed__SitesReply *r)
{
    static const char *const hdr[] = { "site", "status", "last seen", "datasets" };
    struct table t = { .ncols = 4, .right = SIZE_MAX };
    int rc = table_add(&t, hdr, 4, false);

    for (size_t i = 0; rc == 0 && i < r->n_sites; i++) {
        const Sdefed__SiteInfo *s = r->sites[i];
        if (!s)
            continue;
        char when[32];
        char *ds = dataset_names(s, ", ");
        if (!ds) {
            rc = SDF_ENOMEM;
            break;
        }
        const char *row[] = { nz(s->site), s->online ? "online" : "offline",
                              iso_utc(s->last_seen_unix_ms, when, sizeof when) ? when : "never",
                              ds };
        rc = table_add(&t, row, 4, false);
        free(ds);
    }
    if (rc == 0)
        rc = table_print(f, &t);
    table_free(&t);
    return rc ? rc : finish(f);
}

/* ---- entry points ------------------------------------------------------------------------ */

int out_write_result(FILE *f, const Sdefed__FederatedResult *r, out_format fmt)
{
    if (!f || !r)
        return SDF_EINVAL;
    if (r->kind == SDEFED__QUERY_KIND__KIND_SURVEIL && fmt != OUT_JSON)   /* issue 6 */
        return fmt == OUT_CSV ? out_surveil_csv(f, r) : out_surveil_table(f, r);
    if (r->kind == SDEFED__QUERY_KIND__KIND_VALIDATE && fmt != OUT_JSON)  /* issue 5 */
        return fmt == OUT_CSV ? out_validate_csv(f, r) : out_validate_table(f, r);
    switch (fmt) {
    case OUT_JSON: return write_json(f, out_result_json(r));
    case OUT_CSV: return csv_result(f, r);
    case OUT_TABLE: return table_result(f, r);
    }
    return SDF_EINVAL;
}

int out_write_sites(FILE *f, const Sdefed__SitesReply *r, out_format fmt)
{
    if (!f || !r)
        return SDF_EINVAL;
    switch (fmt) {
    case OUT_JSON: return write_json(f, out_sites_json(r));
    case OUT_CSV: return csv_sites(f, r);
    case OUT_TABLE: return table_sites(f, r);
    }
    return SDF_EINVAL;
}
