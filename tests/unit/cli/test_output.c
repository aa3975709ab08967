/* tests/unit/cli/test_output.c — table, JSON and CSV rendering of results.
 *
 * Results are built in C as the coordinator would send them (including
 * hostile ones: a suppressed cell that still carries a number on the wire,
 * a cell with no status, control characters and bad UTF-8 in strings). The
 * JSON is parsed back with jansson; the CSV is checked row by row; the
 * table is checked for the expected text and for never showing a number
 * that was not released.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli/output.h"

/* ---- fixtures ------------------------------------------------------------------- */

#define MAXN 8

struct fx {
    Sdefed__FederatedResult r;
    Sdefed__SiteResult site[MAXN];
    Sdefed__SiteResult *sitep[MAXN];
    Sdefed__Cell cell[MAXN * MAXN];
    Sdefed__Cell *cellp[MAXN * MAXN];
    Sdefed__PooledCell pooled[MAXN];
    Sdefed__PooledCell *pooledp[MAXN];
    Sdefed__Stratum stratum[MAXN * MAXN * 2];
    Sdefed__Stratum *stratump[MAXN * MAXN * 2];
    Sdefed__PolicyApplied policy[MAXN];
    Sdefed__DatasetInfo ds[MAXN];
    Sdefed__DatasetInfo *dsp[MAXN];
    char *rules[2];
    size_t nstrat, ncell;
};

static struct fx *fx_new(Sdefed__QueryKind kind)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    sdefed__federated_result__init(&f->r);
    f->r.query_id = "q-20261123-0001";
    f->r.kind = kind;
    f->r.project = "demo";
    f->r.sites = f->sitep;
    f->r.pooled = f->pooledp;
    return f;
}

static Sdefed__SiteResult *fx_site(struct fx *f, const char *name, Sdefed__SiteStatus st,
                                   const char *reason)
{
    size_t i = f->r.n_sites++;
    Sdefed__SiteResult *s = &f->site[i];
    sdefed__site_result__init(s);
    s->site = (char *)name;
    s->status = st;
    s->reason = (char *)reason;
    s->cells = f->cellp + f->ncell;   /* this site's cells follow */
    s->catalog = f->dsp;
    f->sitep[i] = s;
    return s;
}

static void fx_policy(struct fx *f, Sdefed__SiteResult *s, int64_t min_cell, int64_t rounding)
{
    Sdefed__PolicyApplied *p = &f->policy[s - f->site];
    sdefed__policy_applied__init(p);
    p->min_cell = min_cell;
    p->rounding = rounding;
    s->policy = p;
}

/* Strata as "name=value" pairs, NULL-terminated. */
static Sdefed__Stratum **fx_strata(struct fx *f, size_t *n, const char *const *kv)
{
    Sdefed__Stratum **first = f->stratump + f->nstrat;
    *n = 0;
    for (; kv[0]; kv += 2) {
        Sdefed__Stratum *st = &f->stratum[f->nstrat];
        sdefed__stratum__init(st);
        st->name = (char *)kv[0];
        st->value = (char *)kv[1];
        f->stratump[f->nstrat++] = st;
        (*n)++;
    }
    return first;
}

static void fx_cell(struct fx *f, Sdefed__SiteResult *s, int64_t v, Sdefed__CellStatus st,
                    const char *const *kv)
{
    Sdefed__Cell *c = &f->cell[f->ncell];
    sdefed__cell__init(c);
    c->strata = fx_strata(f, &c->n_strata, kv);
    c->value = v;
    c->status = st;
    f->cellp[f->ncell++] = c;
    s->n_cells++;
}

static void fx_pooled(struct fx *f, int64_t v, Sdefed__CellStatus st, int lb, const char *const *kv)
{
    size_t i = f->r.n_pooled++;
    Sdefed__PooledCell *c = &f->pooled[i];
    sdefed__pooled_cell__init(c);
    c->strata = fx_strata(f, &c->n_strata, kv);
    c->value = v;
    c->status = st;
    c->lower_bound = lb;
    f->pooledp[i] = c;
}

#define KV(...) ((const char *const[]){ __VA_ARGS__, NULL })

#define ROUNDED SDEFED__CELL_STATUS__CELL_ROUNDED
#define SUPPRESSED SDEFED__CELL_STATUS__CELL_SUPPRESSED
#define REASON_B "no connection, \"retry\" later"

/* The standard count result:
 *   site-a ok   female 40-49 120 rounded; male 40-49 suppressed (7 on the wire)
 *   site-b offline with a reason holding a comma and quotes
 *   site-c ok   one cell with no status (3 on the wire)
 *   pooled female 40-49 245; male 40-49 >= 85; female 50-59 suppressed (4 on the wire) */
static struct fx *fx_count(void)
{
    struct fx *f = fx_new(SDEFED__QUERY_KIND__KIND_COUNT);
    Sdefed__SiteResult *a = fx_site(f, "site-a", SDEFED__SITE_STATUS__SITE_OK, "");
    fx_policy(f, a, 10, 5);
    f->rules[0] = "small_count";
    f->rules[1] = "rounding";
    a->rules_fired = f->rules;
    a->n_rules_fired = 2;
    fx_cell(f, a, 120, ROUNDED, KV("sex", "female", "age_band", "40-49"));
    fx_cell(f, a, 7, SUPPRESSED, KV("sex", "male", "age_band", "40-49"));
    fx_site(f, "site-b", SDEFED__SITE_STATUS__SITE_OFFLINE, REASON_B);
    Sdefed__SiteResult *c = fx_site(f, "site-c", SDEFED__SITE_STATUS__SITE_OK, "");
    fx_cell(f, c, 3, SDEFED__CELL_STATUS__CELL_UNSPECIFIED, KV("sex", "female", "age_band", "40-49"));
    fx_pooled(f, 245, ROUNDED, 0, KV("sex", "female", "age_band", "40-49"));
    fx_pooled(f, 85, ROUNDED, 1, KV("sex", "male", "age_band", "40-49"));
    fx_pooled(f, 4, SUPPRESSED, 1, KV("sex", "female", "age_band", "50-59"));
    return f;
}

/* Render into a malloc'd string. */
static char *render(const Sdefed__FederatedResult *r, out_format fmt, int want_rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    assert_non_null(m);
    int rc = out_write_result(m, r, fmt);
    fclose(m);
    assert_int_equal(rc, want_rc);
    return buf;
}

static char *render_sites(const Sdefed__SitesReply *r, out_format fmt)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    assert_non_null(m);
    assert_int_equal(out_write_sites(m, r, fmt), 0);
    fclose(m);
    return buf;
}

/* The line of text that contains all of the given substrings, or NULL. */
static char *find_line(const char *text, const char *a, const char *b, const char *c)
{
    static char line[1024];
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n >= sizeof line)
            n = sizeof line - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        if (strstr(line, a) && (!b || strstr(line, b)) && (!c || strstr(line, c)))
            return line;
        if (!e)
            break;
        p = e + 1;
    }
    return NULL;
}

/* Remove every occurrence of `what` from s. */
static void erase(char *s, const char *what)
{
    char *p;
    size_t n = strlen(what);
    while ((p = strstr(s, what)))
        memmove(p, p + n, strlen(p + n) + 1);
}

static int has_digit(const char *s)
{
    for (; *s; s++)
        if (isdigit((unsigned char)*s))
            return 1;
    return 0;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_format_parse(void **state)
{
    (void)state;
    out_format f = OUT_JSON;
    assert_int_equal(out_format_parse("table", &f), 0);
    assert_int_equal(f, OUT_TABLE);
    assert_int_equal(out_format_parse("json", &f), 0);
    assert_int_equal(f, OUT_JSON);
    assert_int_equal(out_format_parse("csv", &f), 0);
    assert_int_equal(f, OUT_CSV);
    assert_int_equal(out_format_parse("CSV", &f), SDF_EINVAL);
    assert_int_equal(out_format_parse("xml", &f), SDF_EINVAL);
    assert_int_equal(out_format_parse("", &f), SDF_EINVAL);
    assert_int_equal(out_format_parse(NULL, &f), SDF_EINVAL);
}

static void test_json_count(void **state)
{
    (void)state;
    struct fx *f = fx_count();
    char *text = render(&f->r, OUT_JSON, 0);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);

    assert_string_equal(json_string_value(json_object_get(j, "query_id")), "q-20261123-0001");
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "count");
    assert_string_equal(json_string_value(json_object_get(j, "project")), "demo");
    assert_true(json_is_null(json_object_get(j, "submitted")));

    json_t *sites = json_object_get(j, "sites");
    assert_int_equal(json_array_size(sites), 3);
    json_t *a = json_array_get(sites, 0);
    assert_string_equal(json_string_value(json_object_get(a, "site")), "site-a");
    assert_string_equal(json_string_value(json_object_get(a, "status")), "ok");
    json_t *cells = json_object_get(a, "cells");
    assert_int_equal(json_array_size(cells), 2);
    json_t *c0 = json_array_get(cells, 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(c0, "strata"), "sex")), "female");
    assert_string_equal(json_string_value(json_object_get(json_object_get(c0, "strata"), "age_band")), "40-49");
    assert_true(json_is_integer(json_object_get(c0, "value")));
    assert_int_equal(json_integer_value(json_object_get(c0, "value")), 120);
    assert_string_equal(json_string_value(json_object_get(c0, "status")), "rounded");
    /* suppressed: value null, whatever the wire carried */
    json_t *c1 = json_array_get(cells, 1);
    assert_true(json_is_null(json_object_get(c1, "value")));
    assert_string_equal(json_string_value(json_object_get(c1, "status")), "suppressed");
    json_t *pol = json_object_get(a, "policy");
    assert_int_equal(json_integer_value(json_object_get(pol, "min_cell")), 10);
    assert_int_equal(json_integer_value(json_object_get(pol, "rounding")), 5);
    assert_true(json_is_false(json_object_get(pol, "zero_is_disclosive")));
    json_t *rules = json_object_get(a, "rules_fired");
    assert_int_equal(json_array_size(rules), 2);
    assert_string_equal(json_string_value(json_array_get(rules, 0)), "small_count");

    json_t *b = json_array_get(sites, 1);
    assert_string_equal(json_string_value(json_object_get(b, "status")), "offline");
    assert_string_equal(json_string_value(json_object_get(b, "reason")), REASON_B);
    assert_int_equal(json_array_size(json_object_get(b, "cells")), 0);
    assert_true(json_is_null(json_object_get(b, "policy")));

    /* a cell without a known status is not released either */
    json_t *cc = json_array_get(json_object_get(json_array_get(sites, 2), "cells"), 0);
    assert_true(json_is_null(json_object_get(cc, "value")));
    assert_string_equal(json_string_value(json_object_get(cc, "status")), "unknown");

    json_t *pooled = json_object_get(json_object_get(j, "pooled"), "cells");
    assert_int_equal(json_array_size(pooled), 3);
    json_t *p0 = json_array_get(pooled, 0), *p1 = json_array_get(pooled, 1);
    json_t *p2 = json_array_get(pooled, 2);
    assert_int_equal(json_integer_value(json_object_get(p0, "value")), 245);
    assert_true(json_is_false(json_object_get(p0, "lower_bound")));
    assert_int_equal(json_integer_value(json_object_get(p1, "value")), 85);
    assert_true(json_is_true(json_object_get(p1, "lower_bound")));
    assert_string_equal(json_string_value(json_object_get(p1, "status")), "rounded");
    assert_true(json_is_null(json_object_get(p2, "value")));
    assert_string_equal(json_string_value(json_object_get(p2, "status")), "suppressed");
    assert_true(json_is_true(json_object_get(p2, "lower_bound")));

    /* the written JSON is exactly out_result_json */
    json_t *direct = out_result_json(&f->r);
    assert_non_null(direct);
    assert_true(json_equal(direct, j));
    json_decref(direct);

    /* no number that was not released appears anywhere in the JSON */
    assert_null(strstr(text, ": 7"));
    assert_null(strstr(text, ": 3"));
    assert_null(strstr(text, ": 4"));
    json_decref(j);
    free(text);
    free(f);
}

static void test_json_hostile_strings(void **state)
{
    (void)state;
    struct fx *f = fx_count();
    f->site[1].reason = "bad \xff\xfe utf8";
    f->r.submitted_unix_ms = 1700000000000ULL;
    f->r.requester = "alice";
    json_t *j = out_result_json(&f->r);
    assert_non_null(j);   /* bad UTF-8 does not make the whole result vanish */
    json_t *b = json_array_get(json_object_get(j, "sites"), 1);
    assert_string_equal(json_string_value(json_object_get(b, "reason")), "bad ?? utf8");
    assert_string_equal(json_string_value(json_object_get(j, "submitted")), "2023-11-14T22:13:20Z");
    assert_string_equal(json_string_value(json_object_get(j, "requester")), "alice");
    json_decref(j);
    free(f);
}

static void test_csv_count(void **state)
{
    (void)state;
    struct fx *f = fx_count();
    char *text = render(&f->r, OUT_CSV, 0);
    const char *want =
        "site,site_status,sex,age_band,value,status,lower_bound\r\n"
        "site-a,ok,female,40-49,120,rounded,false\r\n"
        "site-a,ok,male,40-49,,suppressed,false\r\n"
        "site-b,\"offline: no connection, \"\"retry\"\" later\",,,,,\r\n"
        "site-c,ok,female,40-49,,unknown,false\r\n"
        "pooled,,female,40-49,245,rounded,false\r\n"
        "pooled,,male,40-49,85,rounded,true\r\n"
        "pooled,,female,50-59,,suppressed,true\r\n";
    if (strcmp(text, want) != 0)
        print_error("got:\n%s\n", text);
    assert_string_equal(text, want);
    free(text);
    free(f);
}

static void test_csv_columns_first_appearance(void **state)
{
    (void)state;
    struct fx *f = fx_new(SDEFED__QUERY_KIND__KIND_COUNT);
    Sdefed__SiteResult *a = fx_site(f, "a", SDEFED__SITE_STATUS__SITE_OK, "");
    fx_cell(f, a, 50, SDEFED__CELL_STATUS__CELL_EXACT, KV("age_band", "0-9"));
    fx_cell(f, a, 60, ROUNDED, KV("sex", "male", "age_band", "10-19"));
    fx_pooled(f, 15, ROUNDED, 0, KV("region", "north,east"));
    char *text = render(&f->r, OUT_CSV, 0);
    const char *want =
        "site,site_status,age_band,sex,region,value,status,lower_bound\r\n"
        "a,ok,0-9,,,50,exact,false\r\n"
        "a,ok,10-19,male,,60,rounded,false\r\n"
        "pooled,,,,\"north,east\",15,rounded,false\r\n";
    assert_string_equal(text, want);
    free(text);
    free(f);
}

static void test_table_count(void **state)
{
    (void)state;
    struct fx *f = fx_count();
    char *text = render(&f->r, OUT_TABLE, 0);
    char *l;

    assert_non_null(strstr(text, "Query q-20261123-0001  count  project=demo\n"));
    assert_non_null(find_line(text, "site", "status", "value"));
    assert_non_null(find_line(text, "sex", "age_band", NULL));

    l = find_line(text, "site-a", "female", NULL);
    assert_non_null(l);
    assert_non_null(strstr(l, "120"));
    assert_non_null(strstr(l, "rounded"));

    /* suppressed: no number except the threshold */
    l = find_line(text, "site-a", " male ", "suppressed");
    assert_non_null(l);
    assert_non_null(strstr(l, "suppressed (<10)"));
    assert_null(strstr(l, " 7"));
    erase(l, "site-a");
    erase(l, "40-49");
    erase(l, "(<10)");
    assert_false(has_digit(l));

    /* a cell with no status: no number at all */
    l = find_line(text, "site-c", NULL, NULL);
    assert_non_null(l);
    assert_non_null(strstr(l, "withheld"));
    erase(l, "site-c");
    erase(l, "40-49");
    assert_false(has_digit(l));

    l = find_line(text, "site-b", NULL, NULL);
    assert_non_null(l);
    assert_non_null(strstr(l, "offline: " REASON_B));

    l = find_line(text, "pooled", "female", "40-49");
    assert_non_null(l);
    assert_non_null(strstr(l, "245"));
    l = find_line(text, "pooled", " male ", NULL);
    assert_non_null(l);
    assert_non_null(strstr(l, ">= 85"));
    assert_non_null(strstr(l, "lower bound"));
    l = find_line(text, "pooled", "50-59", NULL);
    assert_non_null(l);
    assert_non_null(strstr(l, "suppressed"));
    erase(l, "50-59");
    assert_false(has_digit(l));

    /* the policy footer names the site's threshold and rules */
    assert_non_null(find_line(text, "site-a:", "min_cell 10, rounding 5", "small_count, rounding"));
    free(text);
    free(f);
}

static void test_table_alignment(void **state)
{
    (void)state;
    struct fx *f = fx_count();
    char *text = render(&f->r, OUT_TABLE, 0);
    /* the value column is right-aligned: "value", "120" and ">= 85" end in
     * the same column */
    char *hdr = strdup(find_line(text, "site", "status", "value"));
    char *row = strdup(find_line(text, "site-a", "female", NULL));
    char *pool = strdup(find_line(text, "pooled", " male ", NULL));
    size_t end_h = (size_t)(strstr(hdr, "value") - hdr) + 5;
    size_t end_r = (size_t)(strstr(row, "120") - row) + 3;
    size_t end_p = (size_t)(strstr(pool, ">= 85") - pool) + 5;
    assert_int_equal(end_h, end_r);
    assert_int_equal(end_h, end_p);
    /* and the stratifier columns start in the same place */
    assert_int_equal(strstr(hdr, "sex") - hdr, strstr(row, "female") - row);
    free(hdr);
    free(row);
    free(pool);
    free(text);
    free(f);
}

static void test_table_terminal_safe(void **state)
{
    (void)state;
    struct fx *f = fx_count();
    f->site[0].site = "evil\x1b[2J";
    f->site[1].reason = "down\r\n\x1b]0;title\x07 \xc2\x9b" "31m";
    f->r.query_id = "q\x1b";
    char *text = render(&f->r, OUT_TABLE, 0);
    assert_null(strchr(text, 0x1b));
    assert_null(strchr(text, '\r'));
    assert_null(strchr(text, 0x07));
    assert_null(strstr(text, "\xc2\x9b"));
    assert_non_null(strstr(text, "evil?[2J"));
    assert_non_null(strstr(text, "offline: down???]0;title? ?31m"));
    free(text);
    free(f);
}

static struct fx *fx_catalog(void)
{
    struct fx *f = fx_new(SDEFED__QUERY_KIND__KIND_CATALOG);
    Sdefed__SiteResult *a = fx_site(f, "site-a", SDEFED__SITE_STATUS__SITE_OK, "");
    for (int i = 0; i < 3; i++) {
        sdefed__dataset_info__init(&f->ds[i]);
        f->dsp[i] = &f->ds[i];
    }
    f->ds[0].name = "omop";
    f->ds[0].type = "omop";
    f->ds[0].omop_version = "5.4";
    f->ds[0].person_count = 12340;
    f->ds[0].person_count_status = ROUNDED;
    f->ds[0].data_freshness = "2026-10-31";
    f->ds[1].name = "preds";
    f->ds[1].type = "table";
    f->ds[1].person_count = 6;            /* on the wire, but suppressed */
    f->ds[1].person_count_status = SUPPRESSED;
    f->ds[2].name = "registry";            /* the site could not read this one */
    f->ds[2].type = "omop";
    f->ds[2].person_count_status = SUPPRESSED;
    f->ds[2].error = "database error";
    a->n_catalog = 3;
    fx_site(f, "site-b", SDEFED__SITE_STATUS__SITE_TIMEOUT, "no answer in 30 s");
    return f;
}

static void test_catalog_outputs(void **state)
{
    (void)state;
    struct fx *f = fx_catalog();

    json_t *j = out_result_json(&f->r);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "catalog");
    assert_null(json_object_get(j, "pooled"));
    json_t *a = json_array_get(json_object_get(j, "sites"), 0);
    assert_null(json_object_get(a, "cells"));
    json_t *ds = json_object_get(a, "datasets");
    assert_int_equal(json_array_size(ds), 3);
    json_t *d0 = json_array_get(ds, 0), *d1 = json_array_get(ds, 1), *d2 = json_array_get(ds, 2);
    assert_true(json_is_null(json_object_get(d0, "error")));
    assert_string_equal(json_string_value(json_object_get(d2, "error")), "database error");
    assert_true(json_is_null(json_object_get(d2, "person_count")));
    assert_string_equal(json_string_value(json_object_get(d0, "omop_version")), "5.4");
    assert_int_equal(json_integer_value(json_object_get(d0, "person_count")), 12340);
    assert_string_equal(json_string_value(json_object_get(d0, "data_freshness")), "2026-10-31");
    assert_true(json_is_null(json_object_get(d1, "person_count")));
    assert_string_equal(json_string_value(json_object_get(d1, "person_count_status")), "suppressed");
    json_decref(j);

    char *text = render(&f->r, OUT_TABLE, 0);
    char *l = find_line(text, "site-a", "omop", NULL);
    assert_non_null(l);
    assert_non_null(strstr(l, "5.4"));
    assert_non_null(strstr(l, "12340"));
    assert_non_null(strstr(l, "2026-10-31"));
    l = find_line(text, "site-a", "preds", NULL);
    assert_non_null(l);
    assert_non_null(strstr(l, "suppressed"));
    assert_false(has_digit(l));
    l = find_line(text, "site-a", "unavailable: database error", "registry");
    assert_non_null(l);
    assert_false(has_digit(l));
    assert_non_null(find_line(text, "site-b", "timeout: no answer in 30 s", NULL));
    free(text);

    text = render(&f->r, OUT_CSV, 0);
    assert_string_equal(text,
        "site,site_status,dataset,type,omop_version,persons,persons_status,data_freshness,"
        "error\r\n"
        "site-a,ok,omop,omop,5.4,12340,rounded,2026-10-31,\r\n"
        "site-a,ok,preds,table,,,suppressed,,\r\n"
        "site-a,ok,registry,omop,,,suppressed,,database error\r\n"
        "site-b,timeout: no answer in 30 s,,,,,,,\r\n");
    free(text);
    free(f);
}

static void test_sites(void **state)
{
    (void)state;
    Sdefed__SitesReply r = SDEFED__SITES_REPLY__INIT;
    Sdefed__SiteInfo s[2] = { SDEFED__SITE_INFO__INIT, SDEFED__SITE_INFO__INIT };
    Sdefed__SiteInfo *sp[2] = { &s[0], &s[1] };
    Sdefed__DatasetInfo d[2] = { SDEFED__DATASET_INFO__INIT, SDEFED__DATASET_INFO__INIT };
    Sdefed__DatasetInfo *dp[2] = { &d[0], &d[1] };
    d[0].name = "omop";
    d[1].name = "preds";
    s[0].site = "site-a";
    s[0].online = 1;
    s[0].last_seen_unix_ms = 1700000000000ULL;
    s[0].datasets = dp;
    s[0].n_datasets = 2;
    s[1].site = "site-b";
    r.sites = sp;
    r.n_sites = 2;

    json_t *j = out_sites_json(&r);
    assert_non_null(j);
    json_t *a = json_array_get(json_object_get(j, "sites"), 0);
    json_t *b = json_array_get(json_object_get(j, "sites"), 1);
    assert_string_equal(json_string_value(json_object_get(a, "site")), "site-a");
    assert_true(json_is_true(json_object_get(a, "online")));
    assert_string_equal(json_string_value(json_object_get(a, "last_seen")), "2023-11-14T22:13:20Z");
    assert_int_equal(json_array_size(json_object_get(a, "datasets")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(a, "datasets"), 1)), "preds");
    assert_true(json_is_false(json_object_get(b, "online")));
    assert_true(json_is_null(json_object_get(b, "last_seen")));
    json_decref(j);

    char *text = render_sites(&r, OUT_TABLE);
    char *l = find_line(text, "site-a", "online", "2023-11-14T22:13:20Z");
    assert_non_null(l);
    assert_non_null(strstr(l, "omop, preds"));
    assert_non_null(find_line(text, "site-b", "offline", "never"));
    free(text);

    text = render_sites(&r, OUT_CSV);
    assert_string_equal(text, "site,status,last_seen,datasets\r\n"
                              "site-a,online,2023-11-14T22:13:20Z,\"omop,preds\"\r\n"
                              "site-b,offline,never,\r\n");
    free(text);

    text = render_sites(&r, OUT_JSON);
    json_error_t je;
    j = json_loads(text, 0, &je);
    assert_non_null(j);
    json_decref(j);
    free(text);
}

static void test_errors(void **state)
{
    (void)state;
    struct fx *f = fx_count();
    assert_int_equal(out_write_result(NULL, &f->r, OUT_JSON), SDF_EINVAL);
    assert_int_equal(out_write_result(stdout, NULL, OUT_JSON), SDF_EINVAL);
    assert_int_equal(out_write_result(stdout, &f->r, (out_format)42), SDF_EINVAL);
    assert_int_equal(out_write_sites(stdout, NULL, OUT_CSV), SDF_EINVAL);
    assert_null(out_result_json(NULL));
    assert_null(out_sites_json(NULL));

    /* a write that fails is reported as SDF_EIO in every format */
    FILE *full = fopen("/dev/full", "w");
    if (full) {
        assert_int_equal(out_write_result(full, &f->r, OUT_JSON), SDF_EIO);
        clearerr(full);
        assert_int_equal(out_write_result(full, &f->r, OUT_CSV), SDF_EIO);
        clearerr(full);
        assert_int_equal(out_write_result(full, &f->r, OUT_TABLE), SDF_EIO);
        fclose(full);
    }
    FILE *ro = fopen("/dev/null", "r");
    assert_non_null(ro);
    assert_int_equal(out_write_result(ro, &f->r, OUT_CSV), SDF_EIO);
    fclose(ro);
    free(f);
}

static void test_too_many_strata(void **state)
{
    (void)state;
    /* 65 distinct stratum names cannot be laid out as columns */
    struct fx *f = fx_new(SDEFED__QUERY_KIND__KIND_COUNT);
    static char names[65][8];
    for (int i = 0; i < 65; i++)
        snprintf(names[i], sizeof names[i], "s%d", i);
    Sdefed__PooledCell pc = SDEFED__POOLED_CELL__INIT;
    Sdefed__Stratum st[65];
    Sdefed__Stratum *stp[65];
    for (int i = 0; i < 65; i++) {
        sdefed__stratum__init(&st[i]);
        st[i].name = names[i];
        st[i].value = "x";
        stp[i] = &st[i];
    }
    pc.strata = stp;
    pc.n_strata = 65;
    pc.status = ROUNDED;
    Sdefed__PooledCell *pcp = &pc;
    f->r.pooled = &pcp;
    f->r.n_pooled = 1;
    free(render(&f->r, OUT_CSV, SDF_EOVERFLOW));
    free(render(&f->r, OUT_TABLE, SDF_EOVERFLOW));
    char *text = render(&f->r, OUT_JSON, 0);   /* JSON has no columns */
    free(text);
    pc.n_strata = 64;
    text = render(&f->r, OUT_CSV, 0);
    assert_non_null(strstr(text, "s63,value"));
    free(text);
    free(f);
}


/* Strata that are an exact 0 everywhere are left out of the table (and
 * said so), but kept in JSON; a 0 pooled as a lower bound is kept. */
static void test_table_hides_zero_everywhere(void **state)
{
    (void)state;
    struct fx *f = fx_new(SDEFED__QUERY_KIND__KIND_COUNT);
    Sdefed__SiteResult *a = fx_site(f, "site-a", SDEFED__SITE_STATUS__SITE_OK, "");
    fx_cell(f, a, 50, ROUNDED, KV("sex", "female"));
    fx_cell(f, a, 0, SDEFED__CELL_STATUS__CELL_EXACT, KV("sex", "unknown"));
    fx_cell(f, a, 0, SUPPRESSED, KV("sex", "male"));
    fx_pooled(f, 50, ROUNDED, 0, KV("sex", "female"));
    fx_pooled(f, 0, SDEFED__CELL_STATUS__CELL_EXACT, 0, KV("sex", "unknown"));
    fx_pooled(f, 0, SUPPRESSED, 1, KV("sex", "male"));
    char *t = render(&f->r, OUT_TABLE, 0);
    assert_null(strstr(t, "unknown"));
    assert_non_null(strstr(t, "1 strata with a count of 0 at every site not shown"));
    assert_non_null(find_line(t, "site-a", "male", "suppressed"));
    assert_non_null(find_line(t, "pooled", "female", "50"));
    free(t);
    char *j = render(&f->r, OUT_JSON, 0);
    assert_non_null(strstr(j, "unknown"));
    free(j);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_parse),
        cmocka_unit_test(test_json_count),
        cmocka_unit_test(test_json_hostile_strings),
        cmocka_unit_test(test_csv_count),
        cmocka_unit_test(test_csv_columns_first_appearance),
        cmocka_unit_test(test_table_count),
        cmocka_unit_test(test_table_alignment),
        cmocka_unit_test(test_table_hides_zero_everywhere),
        cmocka_unit_test(test_table_terminal_safe),
        cmocka_unit_test(test_catalog_outputs),
        cmocka_unit_test(test_sites),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_too_many_strata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
