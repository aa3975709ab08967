/* tests/unit/cli/test_report.c — the HTML of `sdefed report`.
 *
 * Results are built by hand as the coordinator would send them: a validate
 * result with a refused site, a site named "<script>...", a withheld
 * subgroup, a withheld threshold and bin, a model comparison (one side
 * withheld), and withheld messages that still carry numbers on the wire
 * (sentinels that must never appear); a surveil result with a withheld
 * point; a monitor JSON with an alert and drift bands. The HTML is checked
 * for well-formedness (a tag-balance parser), one <svg> per figure with a
 * viewBox, the forest plot's elements, escaping, no script and no URL, and
 * that every withheld thing says "withheld" with its reason.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include "cli/report.h"

/* ---- a small arena for hand-built messages ---- */

static void *arena[4096];
static size_t n_arena;

static void *A(size_t n)
{
    assert_true(n_arena < sizeof arena / sizeof arena[0]);
    void *p = calloc(1, n);
    assert_non_null(p);
    arena[n_arena++] = p;
    return p;
}

static void arena_free(void)
{
    while (n_arena)
        free(arena[--n_arena]);
}

static Sdefed__ValidateCount *cnt(int64_t v, Sdefed__CellStatus st)
{
    Sdefed__ValidateCount *c = A(sizeof *c);
    sdefed__validate_count__init(c);
    c->value = v;
    c->status = st;
    return c;
}
#define R(v) cnt(v, SDEFED__CELL_STATUS__CELL_ROUNDED)
#define S(v) cnt(v, SDEFED__CELL_STATUS__CELL_SUPPRESSED)

static Sdefed__Stratum **strata1(const char *name, const char *value, size_t *n)
{
    Sdefed__Stratum **a = A(sizeof *a);
    a[0] = A(sizeof **a);
    sdefed__stratum__init(a[0]);
    a[0]->name = (char *)name;
    a[0]->value = (char *)value;
    *n = 1;
    return a;
}

static Sdefed__ThresholdMetrics *thr(double t, bool released, const char *why)
{
    Sdefed__ThresholdMetrics *m = A(sizeof *m);
    sdefed__threshold_metrics__init(m);
    m->threshold = t;
    m->released = released;
    m->withheld_reason = (char *)(why ? why : "");
    m->tp = released ? R(120) : S(0);
    m->fp = released ? R(300) : S(0);
    m->tn = released ? R(2400) : S(0);
    m->fn = released ? R(40) : S(0);
    m->sensitivity = released ? 0.75 : 0.4321;   /* sentinel when withheld */
    m->sensitivity_lo = 0.68;
    m->sensitivity_hi = 0.81;
    m->specificity = released ? 0.8889 : 0.4321;
    m->specificity_lo = 0.87;
    m->specificity_hi = 0.9;
    m->ppv = 0.2857;
    m->npv = 0.9836;
    return m;
}

static Sdefed__CalibrationBin *bin(double lo, double hi, int64_t n, int64_t ev, bool released)
{
    Sdefed__CalibrationBin *c = A(sizeof *c);
    sdefed__calibration_bin__init(c);
    c->lo = lo;
    c->hi = hi;
    c->n = released ? R(n) : S(0);
    c->events = released ? R(ev) : S(0);
    c->released = released;
    c->mean_predicted = released ? (lo + hi) / 2 : 0.5151;   /* sentinel */
    c->observed = released ? (double)ev / (double)n : 0.5151;
    return c;
}

static Sdefed__Validation *group(bool released, const char *why, double auc)
{
    Sdefed__Validation *v = A(sizeof *v);
    sdefed__validation__init(v);
    v->released = released;
    v->withheld_reason = (char *)(why ? why : "");
    v->n = released ? R(2860) : cnt(987654, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    v->events = released ? R(160) : S(9);
    v->auc = auc;
    v->auc_se = 0.012;
    v->auc_lo = auc - 0.03;
    v->auc_hi = auc + 0.03;
    v->brier = 0.0712;
    v->oe_ratio = 1.04;
    v->citl = 0.031;
    v->cal_slope = 0.97;
    v->cal_intercept = -0.02;
    v->cal_converged = true;
    if (released) {
        v->n_thresholds = 3;
        v->thresholds = A(3 * sizeof *v->thresholds);
        v->thresholds[0] = thr(0.1, true, NULL);
        v->thresholds[1] = thr(0.2, true, NULL);
        v->thresholds[2] = thr(0.3, false, "fewer than min_cell persons between thresholds");
        v->n_bins = 4;
        v->bins = A(4 * sizeof *v->bins);
        v->bins[0] = bin(0.0, 0.25, 1800, 60, true);
        v->bins[1] = bin(0.25, 0.5, 800, 70, true);
        v->bins[2] = bin(0.5, 0.75, 260, 30, true);
        v->bins[3] = bin(0.75, 1.0, 0, 0, false);
    }
    return v;
}

static Sdefed__SiteResult *site(const char *name, Sdefed__SiteStatus st, const char *reason)
{
    Sdefed__SiteResult *s = A(sizeof *s);
    sdefed__site_result__init(s);
    s->site = (char *)name;
    s->status = st;
    s->reason = (char *)(reason ? reason : "");
    Sdefed__PolicyApplied *p = A(sizeof *p);
    sdefed__policy_applied__init(p);
    p->min_cell = 10;
    p->rounding = 5;
    s->policy = p;
    return s;
}

static Sdefed__FederatedResult *validate_result(void)
{
    Sdefed__FederatedResult *r = A(sizeof *r);
    sdefed__federated_result__init(r);
    r->query_id = "q-20261123-0042";
    r->kind = SDEFED__QUERY_KIND__KIND_VALIDATE;
    r->project = "demo";
    r->requester = "analyst-1";
    r->submitted_unix_ms = 1795000000000ull;
    r->n_sites = 3;
    r->sites = A(3 * sizeof *r->sites);

    Sdefed__SiteResult *a = site("site-a", SDEFED__SITE_STATUS__SITE_OK, NULL);
    a->n_validations = 3;
    a->validations = A(3 * sizeof *a->validations);
    a->validations[0] = group(true, NULL, 0.81);
    a->validations[1] = group(true, NULL, 0.79);
    a->validations[1]->strata = strata1("sex", "female", &a->validations[1]->n_strata);
    a->validations[2] = group(false, "fewer than min_cell events or non-events", 0.6123);
    a->validations[2]->strata = strata1("sex", "male", &a->validations[2]->n_strata);
    /* ROC points from a histogram at site-a */
    a->validations[0]->n_roc = 3;
    a->validations[0]->roc = A(3 * sizeof *a->validations[0]->roc);
    for (int i = 0; i < 3; i++) {
        Sdefed__RocPoint *p = A(sizeof *p);
        sdefed__roc_point__init(p);
        p->fpr = 0.1 + 0.3 * i;
        p->tpr = 0.5 + 0.2 * i;
        a->validations[0]->roc[i] = p;
    }
    Sdefed__AucComparison *cmp = A(sizeof *cmp);
    sdefed__auc_comparison__init(cmp);
    cmp->version_a = "v1";
    cmp->version_b = "v2";
    cmp->released = true;
    cmp->auc_a = 0.78;
    cmp->auc_b = 0.81;
    cmp->diff = 0.03;
    cmp->diff_lo = 0.01;
    cmp->diff_hi = 0.05;
    cmp->p_value = 0.004;
    a->validations[0]->comparison = cmp;
    r->sites[0] = a;

    Sdefed__SiteResult *b = site("<script>alert(1)</script>", SDEFED__SITE_STATUS__SITE_OK, NULL);
    b->n_validations = 1;
    b->validations = A(sizeof *b->validations);
    b->validations[0] = group(true, NULL, 0.74);
    r->sites[1] = b;

    r->sites[2] = site("site-c", SDEFED__SITE_STATUS__SITE_REFUSED, "dataset preds: unknown");

    r->n_pooled_validations = 2;
    r->pooled_validations = A(2 * sizeof *r->pooled_validations);
    for (int k = 0; k < 2; k++) {
        Sdefed__PooledValidation *p = A(sizeof *p);
        sdefed__pooled_validation__init(p);
        p->sites = k == 0 ? 2 : 1;
        p->auc = k == 0 ? 0.7755 : 0.79;
        p->auc_lo = p->auc - 0.05;
        p->auc_hi = p->auc + 0.05;
        p->has_pi = k == 0;
        p->pi_lo = 0.55;
        p->pi_hi = 0.93;
        p->tau2 = 0.0123;
        p->i2 = 0.62;
        p->q = 2.63;
        p->partial = k == 1;
        if (k == 1)
            p->strata = strata1("sex", "female", &p->n_strata);
        else {
            p->n_thresholds = 1;
            p->thresholds = A(sizeof *p->thresholds);
            p->thresholds[0] = thr(0.3, false, "some site withheld a cell at this threshold");
            p->n_bins = 2;
            p->bins = A(2 * sizeof *p->bins);
            p->bins[0] = bin(0.0, 0.25, 3600, 120, true);
            p->bins[1] = bin(0.75, 1.0, 0, 0, false);
            Sdefed__AucComparison *pc = A(sizeof *pc);
            sdefed__auc_comparison__init(pc);
            pc->version_a = "v1";
            pc->version_b = "v2";
            pc->released = false;
            pc->withheld_reason = "fewer than 2 sites compared the versions";
            pc->diff = 0.3579;   /* sentinel */
            p->comparison = pc;
        }
        r->pooled_validations[k] = p;
    }
    return r;
}

/* ---- checks ---- */

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Tags balance (void elements and self-closing tags aside), attribute
 * values hold no raw '<', every <svg> carries a viewBox and width 100%. */
static void assert_well_formed(const char *html)
{
    char stack[256][16];
    size_t depth = 0;
    const char *p = html;
    assert_true(strncmp(p, "<!DOCTYPE html>", 15) == 0);
    while ((p = strchr(p, '<'))) {
        const char *end = strchr(p, '>');
        assert_non_null(end);
        assert_null(memchr(p + 1, '<', (size_t)(end - p - 1)));
        if (p[1] == '!') {
            p = end + 1;
            continue;
        }
        bool closing = p[1] == '/';
        const char *n = p + 1 + closing;
        size_t len = 0;
        while (isalnum((unsigned char)n[len]))
            len++;
        assert_true(len > 0 && len < 16);
        char name[16];
        memcpy(name, n, len);
        name[len] = '\0';
        if (closing) {
            assert_true(depth > 0);
            depth--;
            if (strcmp(stack[depth], name) != 0)
                fail_msg("</%s> closes <%s>", name, stack[depth]);
        } else if (end[-1] != '/' && strcmp(name, "meta") != 0) {
            assert_true(depth < 256);
            memcpy(stack[depth++], name, len + 1);
        }
        if (!closing && strcmp(name, "svg") == 0) {
            char head[200];
            snprintf(head, sizeof head, "%.*s", (int)(end - p), p);
            assert_non_null(strstr(head, "viewBox=\"0 0 "));
            assert_non_null(strstr(head, "width=\"100%\""));
        }
        p = end + 1;
    }
    assert_int_equal(depth, 0);
    assert_int_equal(count(html, "<svg"), count(html, "</svg>"));
}

static void assert_safe(const char *html)
{
    assert_null(strcasestr(html, "<script"));
    assert_null(strstr(html, "http:"));
    assert_null(strstr(html, "https:"));
    assert_null(strstr(html, "src="));
    assert_null(strstr(html, "href="));
    assert_null(strstr(html, "url("));
}

static char *render_validate(const json_t *spec)
{
    svg_buf b;
    svg_buf_init(&b, REPORT_MAX_BYTES);
    assert_int_equal(report_render_result(&b, validate_result(), spec), 0);
    return b.data;
}

static void test_validate_report(void **state)
{
    (void)state;
    char *h = render_validate(NULL);
    assert_well_formed(h);
    assert_safe(h);
    /* header */
    assert_non_null(strstr(h, "q-20261123-0042"));
    assert_non_null(strstr(h, "analyst-1"));
    assert_non_null(strstr(h, "suppressed values are shown as withheld"));
    assert_non_null(strstr(h, "min_cell 10, rounding 5"));
    assert_non_null(strstr(h, "--spec SPEC.json"));
    /* the hostile site name is text, everywhere */
    assert_non_null(strstr(h, "&lt;script&gt;alert(1)&lt;/script&gt;"));
    /* forest plots (whole population and the two sex groups): a diamond for
     * the pooled estimate, whiskers, the prediction interval */
    assert_true(count(h, "Forest plot") >= 3);
    assert_non_null(strstr(h, "<polygon points="));
    assert_non_null(strstr(h, "<title>0.7755 [0.7255, 0.8255]</title>"));
    assert_non_null(strstr(h, "95% prediction interval"));
    assert_non_null(strstr(h, "[0.55, 0.93]"));
    /* ROC and calibration figures */
    assert_non_null(strstr(h, "ROC curves per site and pooled"));
    assert_non_null(strstr(h, "Calibration: mean predicted vs observed per bin"));
    assert_non_null(strstr(h, "site-a: 1 - specificity 0.4, sensitivity 0.7"));
    /* withheld things say so, with the reason */
    assert_non_null(strstr(h, "withheld: fewer than min_cell events or non-events"));
    assert_non_null(strstr(h, "withheld: fewer than min_cell persons between thresholds"));
    assert_non_null(strstr(h, "withheld: some site withheld a cell at this threshold"));
    assert_non_null(strstr(h, "site-a, bin [0.75, 1): <span class=\"withheld\">withheld"));
    assert_non_null(strstr(h, "pooled, bin [0.75, 1): <span class=\"withheld\">withheld"));
    assert_non_null(strstr(h, "withheld: fewer than 2 sites compared the versions"));
    assert_non_null(strstr(h, "no result: refused: dataset preds: unknown"));
    /* and never a number: sentinels carried on the wire by withheld items */
    assert_null(strstr(h, "987654"));
    assert_null(strstr(h, "0.6123"));
    assert_null(strstr(h, "0.4321"));
    assert_null(strstr(h, "0.5151"));
    assert_null(strstr(h, "0.3579"));
    /* model comparison and subgroups */
    assert_non_null(strstr(h, "Model-version comparison"));
    assert_non_null(strstr(h, "0.03 [0.01, 0.05]"));
    assert_non_null(strstr(h, "Subgroup sex=female"));
    assert_non_null(strstr(h, "Subgroup sex=male"));
    assert_non_null(strstr(h, "partial (some site withheld part of this group)"));
    /* pooled n: the sum of released site values */
    assert_non_null(strstr(h, "<td class=\"num\">5720</td>"));
    free(h);
    arena_free();
}

static void test_validate_with_spec(void **state)
{
    (void)state;
    json_t *spec = json_pack("{s:s, s:s, s:s}", "kind", "validate", "project", "demo <x>",
                             "dataset", "preds");
    char *h = render_validate(spec);
    json_decref(spec);
    assert_well_formed(h);
    assert_non_null(strstr(h, "&quot;project&quot;: &quot;demo &lt;x&gt;&quot;"));
    assert_null(strstr(h, "--spec SPEC.json"));
    free(h);
    arena_free();
}

static Sdefed__SurveilRow *srow(const char *period, bool released, double rate)
{
    Sdefed__SurveilRow *x = A(sizeof *x);
    sdefed__surveil_row__init(x);
    x->period = (char *)period;
    Sdefed__CellStatus ok = SDEFED__CELL_STATUS__CELL_ROUNDED,
                       no = SDEFED__CELL_STATUS__CELL_SUPPRESSED;
    x->persons = 120;
    x->persons_status = ok;
    x->events = released ? 15 : 4;      /* 4: on the wire but suppressed */
    x->events_status = released ? ok : no;
    x->person_days = 3455;
    x->person_days_status = ok;
    x->rate = released ? rate : 4242.5;   /* sentinel */
    x->rate_lo = released ? rate * 0.6 : 4242.5;
    x->rate_hi = released ? rate * 1.6 : 4242.5;
    x->rate_status = released ? ok : no;
    x->rr_status = no;
    return x;
}

static void test_surveil_report(void **state)
{
    (void)state;
    Sdefed__FederatedResult *r = A(sizeof *r);
    sdefed__federated_result__init(r);
    r->query_id = "q-surveil";
    r->kind = SDEFED__QUERY_KIND__KIND_SURVEIL;
    r->project = "demo";
    r->n_sites = 2;
    r->sites = A(2 * sizeof *r->sites);
    const char *periods[] = { "2019-Q1", "2019-Q2", "2019-Q3" };
    for (int s = 0; s < 2; s++) {
        Sdefed__SiteResult *x = site(s ? "site-b & co" : "site-a", SDEFED__SITE_STATUS__SITE_OK,
                                     NULL);
        x->n_surveil = 3;
        x->surveil = A(3 * sizeof *x->surveil);
        for (int i = 0; i < 3; i++)
            x->surveil[i] = srow(periods[2 - i], !(s == 1 && i == 1), 1500 + 100 * i + 50 * s);
        r->sites[s] = x;
    }
    r->n_pooled_surveil = 3;
    r->pooled_surveil = A(3 * sizeof *r->pooled_surveil);
    for (int i = 0; i < 3; i++) {
        r->pooled_surveil[i] = srow(periods[i], true, 1550 + 100 * i);
        r->pooled_surveil[i]->sites = 2;
        r->pooled_surveil[i]->lower_bound = i == 1;
    }
    svg_buf b;
    svg_buf_init(&b, REPORT_MAX_BYTES);
    assert_int_equal(report_render_result(&b, r, NULL), 0);
    const char *h = b.data;
    assert_well_formed(h);
    assert_safe(h);
    assert_int_equal(count(h, "<svg"), 1);   /* one series: exposure, no strata */
    assert_non_null(strstr(h, "Rate per 1,000 person-years: exposure"));
    /* periods sorted on the axis although site rows came in reverse */
    const char *q1 = strstr(h, ">2019-Q1</text>"), *q3 = strstr(h, ">2019-Q3</text>");
    assert_non_null(q1);
    assert_non_null(q3);
    assert_true(q1 < q3);
    assert_non_null(strstr(h, "site-b &amp; co, 2019-Q2: <span class=\"withheld\">withheld: "
                              "events below the count rules"));
    assert_non_null(strstr(h, "site-b &amp; co 2019-Q2: withheld (events below the count rules)"));
    assert_null(strstr(h, "4242"));
    assert_non_null(strstr(h, "lower bound: some site withheld a number"));
    assert_non_null(strstr(h, "<td class=\"withheld\">withheld</td>"));
    svg_buf_free(&b);
    arena_free();
}

static void test_edge_cases(void **state)
{
    (void)state;
    /* empty validate and surveil results */
    Sdefed__FederatedResult *r = A(sizeof *r);
    sdefed__federated_result__init(r);
    r->kind = SDEFED__QUERY_KIND__KIND_VALIDATE;
    svg_buf b;
    svg_buf_init(&b, REPORT_MAX_BYTES);
    assert_int_equal(report_render_result(&b, r, NULL), 0);
    assert_well_formed(b.data);
    assert_non_null(strstr(b.data, "withheld: no site released an AUC"));
    svg_buf_free(&b);
    r->kind = SDEFED__QUERY_KIND__KIND_SURVEIL;
    assert_int_equal(report_render_result(&b, r, NULL), 0);
    assert_well_formed(b.data);
    assert_non_null(strstr(b.data, "No site returned any row."));
    svg_buf_free(&b);

    /* 20 sites: 16 lines drawn, the rest said so, all in the table */
    static char names[20][16];
    r->n_sites = 20;
    r->sites = A(20 * sizeof *r->sites);
    for (int s = 0; s < 20; s++) {
        snprintf(names[s], sizeof names[s], "site-%02d", s);
        r->sites[s] = site(names[s], SDEFED__SITE_STATUS__SITE_OK, NULL);
        r->sites[s]->n_surveil = 1;
        r->sites[s]->surveil = A(sizeof *r->sites[s]->surveil);
        r->sites[s]->surveil[0] = srow("all", true, 100 + s);
    }
    assert_int_equal(report_render_result(&b, r, NULL), 0);
    assert_well_formed(b.data);
    assert_non_null(strstr(b.data, "4 more sites not drawn (too many lines); all are in the "
                                   "table."));
    assert_non_null(strstr(b.data, "<td>site-19</td>"));
    assert_non_null(strstr(b.data, "site-15 all: 115"));
    assert_null(strstr(b.data, "site-16 all: 116"));
    svg_buf_free(&b);
    arena_free();
}

static void test_other_kind_is_a_table(void **state)
{
    (void)state;
    Sdefed__FederatedResult *r = A(sizeof *r);
    sdefed__federated_result__init(r);
    r->query_id = "q-count";
    r->kind = SDEFED__QUERY_KIND__KIND_COUNT;
    r->project = "demo";
    r->n_sites = 1;
    r->sites = A(sizeof *r->sites);
    r->sites[0] = site("<b>site</b>", SDEFED__SITE_STATUS__SITE_OK, NULL);
    svg_buf b;
    svg_buf_init(&b, REPORT_MAX_BYTES);
    assert_int_equal(report_render_result(&b, r, NULL), 0);
    assert_well_formed(b.data);
    assert_safe(b.data);
    assert_non_null(strstr(b.data, "<h2>Results</h2>\n<pre"));
    assert_null(strstr(b.data, "<b>site"));
    assert_int_equal(count(b.data, "<svg"), 0);
    svg_buf_free(&b);
    arena_free();
}

static const char MONITOR_JSON[] =
    "{\"id\":\"m-1\",\"owner\":\"analyst-1\",\"state\":\"signalled\",\"test\":\"maxsprt\","
    "\"threshold\":3.628,\"alpha\":0.05,\"length\":20,\"expected_rate\":1,\"every_ms\":200,"
    "\"observed\":30,\"expected\":12.5,\"created_ms\":1795000000000,"
    "\"spec\":{\"kind\":\"surveil\",\"project\":\"demo\"},"
    "\"band\":{\"auc_min\":0.7,\"auc_max\":null,\"slope_min\":0.8,\"slope_max\":1.2},"
    "\"looks\":["
    "{\"period_index\":0,\"period\":\"2019-01\",\"run_ms\":1795000001000,\"events\":5,"
    "\"person_days\":40000,\"expected\":4.1,\"statistic\":0.1,\"signal\":0,\"partial\":0,"
    "\"sites\":[{\"site\":\"<i>a</i>\",\"status\":\"ok\",\"events\":3,\"person_days\":20000,"
    "\"expected\":2.05,\"partial\":false},{\"site\":\"b\",\"status\":\"offline\"}],"
    "\"drift\":{\"pooled\":{\"auc\":0.78,\"auc_lo\":0.74,\"auc_hi\":0.82,\"cal_slope\":1.0},"
    "\"sites\":[{\"site\":\"<i>a</i>\",\"status\":\"ok\",\"released\":true,\"auc\":0.77,"
    "\"auc_lo\":0.7,\"auc_hi\":0.84,\"cal_slope\":0.95},{\"site\":\"b\",\"status\":\"ok\","
    "\"released\":false,\"auc\":null,\"auc_lo\":null,\"auc_hi\":null,\"cal_slope\":null}],"
    "\"out_of_band\":[]}},"
    "{\"period_index\":1,\"period\":\"2019-02\",\"run_ms\":1795000002000,\"events\":25,"
    "\"person_days\":41000,\"expected\":8.4,\"statistic\":9.7,\"signal\":1,\"partial\":1,"
    "\"sites\":[{\"site\":\"<i>a</i>\",\"status\":\"ok\",\"events\":20,\"person_days\":21000,"
    "\"expected\":4.2,\"partial\":false},{\"site\":\"b\",\"status\":\"ok\",\"events\":0,"
    "\"person_days\":0,\"expected\":0,\"partial\":true}],"
    "\"drift\":{\"pooled\":{\"auc\":0.66,\"auc_lo\":0.6,\"auc_hi\":0.72,\"cal_slope\":0.6},"
    "\"sites\":[],\"out_of_band\":[\"auc\",\"cal_slope\"]}}],"
    "\"runs\":[],"
    "\"alerts\":[{\"id\":7,\"created_ms\":1795000002500,\"alert\":{\"monitor\":\"m-1\","
    "\"period\":\"2019-02\",\"sites\":[\"<i>a</i>\"],\"test\":\"maxsprt\",\"statistic\":9.7,"
    "\"threshold\":3.628,\"observed\":30,\"expected\":12.5}}]}";

static void test_monitor_report(void **state)
{
    (void)state;
    json_t *m = json_loads(MONITOR_JSON, 0, NULL);
    assert_non_null(m);
    svg_buf b;
    svg_buf_init(&b, REPORT_MAX_BYTES);
    assert_int_equal(report_render_monitor(&b, m), 0);
    const char *h = b.data;
    assert_well_formed(h);
    assert_safe(h);
    assert_null(strstr(h, "<i>"));
    assert_non_null(strstr(h, "&lt;i&gt;a&lt;/i&gt;"));
    /* events, statistic, AUC drift, slope drift */
    assert_int_equal(count(h, "<svg"), 4);
    assert_non_null(strstr(h, "Observed and expected events per period"));
    assert_non_null(strstr(h, "Sequential test statistic (maxsprt) and its threshold"));
    assert_non_null(strstr(h, "2019-02: statistic 9.7 (alert)"));
    assert_non_null(strstr(h, "Drift: AUC per period and the agreed band"));
    assert_non_null(strstr(h, "Drift: calibration slope per period and the agreed band"));
    assert_non_null(strstr(h, "2019-02: pooled AUC 0.66 (out of band)"));
    assert_non_null(strstr(h, "2019-02: pooled calibration slope 0.6 (out of band)"));
    assert_non_null(strstr(h, "red: 1 pooled point out of band"));
    assert_non_null(strstr(h, "b 2019-01: withheld"));   /* drift: b released false */
    assert_non_null(strstr(h, "<title>b 2019-02: withheld</title>"));   /* events: partial */
    assert_non_null(strstr(h, "b <span class=\"withheld\">withheld</span>"));
    assert_non_null(strstr(h, "partial: some numbers withheld"));
    assert_non_null(strstr(h, "<tr class=\"alert\">"));
    assert_non_null(strstr(h, "&quot;kind&quot;: &quot;surveil&quot;"));
    svg_buf_free(&b);
    json_decref(m);

    /* without drift keys: no drift figures; no looks: no figures at all */
    m = json_loads("{\"id\":\"m-2\",\"threshold\":3.6,\"looks\":[{\"period\":\"2019\","
                   "\"events\":1,\"expected\":1,\"statistic\":0,\"signal\":0,\"sites\":[]}],"
                   "\"alerts\":[]}", 0, NULL);
    svg_buf_init(&b, REPORT_MAX_BYTES);
    assert_int_equal(report_render_monitor(&b, m), 0);
    assert_well_formed(b.data);
    assert_int_equal(count(b.data, "<svg"), 2);
    assert_null(strstr(b.data, "Drift"));
    assert_non_null(strstr(b.data, "No alert has been raised"));
    svg_buf_free(&b);
    json_decref(m);
    m = json_loads("{\"id\":\"m-3\",\"looks\":[],\"alerts\":[]}", 0, NULL);
    svg_buf_init(&b, REPORT_MAX_BYTES);
    assert_int_equal(report_render_monitor(&b, m), 0);
    assert_well_formed(b.data);
    assert_int_equal(count(b.data, "<svg"), 0);
    assert_non_null(strstr(b.data, "No period has been counted yet"));
    svg_buf_free(&b);
    json_decref(m);

    /* a drift monitor (kind validate): looks carry only "drift", so only the
     * two drift figures; absent numbers read "-", never "withheld" */
    m = json_loads("{\"id\":\"m-4\",\"kind\":\"validate\",\"period\":\"month\","
                   "\"band\":{\"auc_min\":0.7,\"auc_max\":null,\"slope_min\":null,"
                   "\"slope_max\":null},\"looks\":[{\"period\":\"2025-01\",\"partial\":0,"
                   "\"drift\":{\"pooled\":{\"auc\":0.65,\"auc_lo\":0.6,\"auc_hi\":0.7,"
                   "\"cal_slope\":null},\"sites\":[],\"out_of_band\":[\"auc\"]}}],"
                   "\"alerts\":[{\"id\":1,\"alert\":{\"period\":\"2025-01\",\"test\":\"band\","
                   "\"metric\":\"auc\",\"statistic\":0.65,\"threshold\":0.7,\"sites\":[]}}]}",
                   0, NULL);
    assert_non_null(m);
    svg_buf_init(&b, REPORT_MAX_BYTES);
    assert_int_equal(report_render_monitor(&b, m), 0);
    assert_well_formed(b.data);
    assert_safe(b.data);
    assert_int_equal(count(b.data, "<svg"), 2);
    assert_null(strstr(b.data, "Observed and expected"));
    assert_non_null(strstr(b.data, "2025-01: pooled AUC 0.65 (out of band)"));
    assert_non_null(strstr(b.data, "No band agreed for this metric"));   /* the slope */
    assert_non_null(strstr(b.data, "<td>band: auc</td>"));
    assert_non_null(strstr(b.data, "<td class=\"num\">0.65 [0.6, 0.7]</td>"));
    assert_non_null(strstr(b.data, "<td class=\"alert\">auc</td>"));
    /* events, person-days, expected, statistic of the look and observed, expected
     * of the alert are absent: "-"; the pooled slope is null: withheld */
    assert_int_equal(count(b.data, "<td class=\"muted\">-</td>"), 6);
    assert_int_equal(count(b.data, "<td class=\"withheld\">withheld</td>"), 1);
    svg_buf_free(&b);
    json_decref(m);

    /* not an object */
    m = json_array();
    assert_int_equal(report_render_monitor(&b, m), SDF_EINVAL);
    json_decref(m);
}

static void test_cap(void **state)
{
    (void)state;
    svg_buf b;
    svg_buf_init(&b, 4096);   /* far too small for a report */
    assert_int_equal(report_render_result(&b, validate_result(), NULL), SDF_EOVERFLOW);
    assert_true(b.len <= 4096);
    svg_buf_free(&b);
    arena_free();
    assert_int_equal(report_render_result(&b, NULL, NULL), SDF_EINVAL);
}

static void test_is_command(void **state)
{
    (void)state;
    char *a1[] = { "sdefed", "--config", "report", "report", "q1", "-o", "x.html" };
    assert_true(report_is_command(7, a1));
    char *a2[] = { "sdefed", "--config", "report", "results", "q1" };
    assert_false(report_is_command(5, a2));
    char *a3[] = { "sdefed", "-f", "json", "report", "q1" };
    assert_true(report_is_command(5, a3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate_report),  cmocka_unit_test(test_validate_with_spec),
        cmocka_unit_test(test_surveil_report),   cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_other_kind_is_a_table),
        cmocka_unit_test(test_monitor_report),   cmocka_unit_test(test_cap),
        cmocka_unit_test(test_is_command),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
