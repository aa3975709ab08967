/* tests/unit/coordinator/test_pool_validate_roc.c — pooled ROC and model comparison.
 *
 * pool_roc_merge() on random tied scores: per site, fine equal-width
 * histograms coarsened here (independently of the agent's code) until
 * every bin has 0 or >= 10 events and non-events, different sites with
 * different grids; the pooled trapezoid AUC must be within
 * roc_auc_max_error of the exact AUC of all rows (computed here by
 * counting pairs), the curve must run from (0, 0) to (1, 1) without going
 * back, and its trapezoid area must be `auc`. One site: the bound is
 * exactly 0.5 sum e_b n_b / (E N). Bad input is refused. Message level:
 * pooled ROC from the sites' histograms (a site with a withheld count left
 * out), DerSimonian-Laird of the sites' AUC differences against the
 * formulas transcribed here, and quantile bins not summed (with a note).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "pool_validate.h"

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static double gauss(void)
{
    return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand());
}

/* exact AUC by counting pairs (ties one half) */
static double auc_pairs(const double *s, const unsigned char *y, size_t n)
{
    double num = 0, m = 0, k = 0;
    for (size_t i = 0; i < n; i++)
        y[i] ? m++ : k++;
    for (size_t i = 0; i < n; i++)
        if (y[i])
            for (size_t j = 0; j < n; j++)
                if (!y[j])
                    num += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
    return num / (m * k);
}

/* Greedy coarsening of an H-bin histogram of rows [from, n) step `step`;
 * appends the bins to out with site id `site`. */
static size_t site_hist(const double *s, const unsigned char *y, size_t n, size_t from,
                        size_t step, size_t H, size_t site, pool_hbin *out)
{
    double *e = calloc(H, sizeof *e), *ne = calloc(H, sizeof *ne);
    for (size_t i = from; i < n; i += step) {
        size_t b = (size_t)(s[i] * (double)H);
        if (b >= H)
            b = H - 1;
        while (b + 1 < H && s[i] >= (double)(b + 1) / (double)H)
            b++;
        while (b > 0 && s[i] < (double)b / (double)H)
            b--;
        if (y[i])
            e[b]++;
        else
            ne[b]++;
    }
    size_t nb = 0, start = 0;
    double ce = 0, cn = 0;
    for (size_t b = 0; b < H; b++) {
        ce += e[b];
        cn += ne[b];
        bool ok = (ce == 0 || ce >= 10) && (cn == 0 || cn >= 10) && ce + cn > 0;
        if (ok || b + 1 == H) {
            if (!ok && nb > 0) {   /* a failing remainder joins the previous bin */
                nb--;
                out[nb].hi = 1.0;
                out[nb].events += ce;
                out[nb].nonevents += cn;
            } else {
                out[nb] = (pool_hbin){ site, (double)start / (double)H,
                                       (double)(b + 1) / (double)H, ce, cn };
            }
            nb++;
            start = b + 1;
            ce = cn = 0;
        }
    }
    free(e);
    free(ne);
    return nb;
}

static void check_curve(const pool_roc *r)
{
    assert_true(r->n >= 2);
    assert_true(r->fpr[0] == 0 && r->tpr[0] == 0);
    assert_true(fabs(r->fpr[r->n - 1] - 1) < 1e-12 && fabs(r->tpr[r->n - 1] - 1) < 1e-12);
    double area = 0;
    for (size_t k = 1; k < r->n; k++) {
        assert_true(r->fpr[k] >= r->fpr[k - 1] - 1e-15);
        assert_true(r->tpr[k] >= r->tpr[k - 1] - 1e-15);
        assert_true(r->thr[k] < r->thr[k - 1]);
        area += (r->fpr[k] - r->fpr[k - 1]) * (r->tpr[k] + r->tpr[k - 1]) / 2;
    }
    assert_true(fabs(area - r->auc) < 1e-12);
}

static void test_roc_one_site(void **state)
{
    (void)state;
    enum { N = 1500, H = 40 };
    static double s[N];
    static unsigned char y[N];
    for (size_t i = 0; i < N; i++) {
        double x = gauss();
        y[i] = urand() < 1 / (1 + exp(-(-1 + x)));
        s[i] = floor(1 / (1 + exp(-(-1 + x + 0.7 * gauss()))) * 200) / 200;   /* ties */
    }
    pool_hbin hb[H];
    size_t nb = site_hist(s, y, N, 0, 1, H, 7, hb);
    pool_roc r;
    assert_int_equal(pool_roc_merge(hb, nb, &r), 0);
    check_curve(&r);
    assert_int_equal(r.n, nb + 1);   /* one site: its own edges only */
    double exact = auc_pairs(s, y, N);
    assert_true(fabs(r.auc - exact) <= r.max_error);
    double E = 0, M = 0, half = 0;
    for (size_t b = 0; b < nb; b++) {
        E += hb[b].events;
        M += hb[b].nonevents;
        half += 0.5 * hb[b].events * hb[b].nonevents;
    }
    assert_true(fabs(r.max_error - half / (E * M)) < 1e-12);
    pool_roc_free(&r);
}

static void test_roc_many_sites_within_bound(void **state)
{
    (void)state;
    enum { N = 3000, SITES = 10 };
    static double s[N];
    static unsigned char y[N];
    static pool_hbin hb[SITES * 100];
    static const size_t grid[] = { 100, 50, 20 };
    for (int rep = 0; rep < 8; rep++) {
        for (size_t i = 0; i < N; i++) {
            double x = gauss();
            double eta = -1.5 + 0.2 * rep + (0.6 + 0.2 * (rep % 3)) * x;
            y[i] = urand() < 1 / (1 + exp(-eta));
            s[i] = round(1 / (1 + exp(-(eta + 0.5 * gauss()))) * 1000) / 1000;
        }
        size_t nb = 0;
        for (size_t k = 0; k < SITES; k++)
            nb += site_hist(s, y, N, k, SITES, grid[(k + (size_t)rep) % 3], k, hb + nb);
        pool_roc r;
        assert_int_equal(pool_roc_merge(hb, nb, &r), 0);
        check_curve(&r);
        double exact = auc_pairs(s, y, N);
        assert_true(fabs(r.auc - exact) <= r.max_error);
        assert_true(r.max_error < 0.25);
        pool_roc_free(&r);
    }
}

static void test_roc_refuses(void **state)
{
    (void)state;
    pool_roc r;
    pool_hbin ok = { 0, 0.0, 1.0, 5, 5 };
    assert_int_equal(pool_roc_merge(&ok, 0, &r), SDF_EINVAL);
    pool_hbin bad = { 0, 0.5, 0.5, 5, 5 };
    assert_int_equal(pool_roc_merge(&bad, 1, &r), SDF_EINVAL);
    pool_hbin neg = { 0, 0.0, 1.0, -1, 5 };
    assert_int_equal(pool_roc_merge(&neg, 1, &r), SDF_EINVAL);
    pool_hbin noev = { 0, 0.0, 1.0, 0, 5 };
    assert_int_equal(pool_roc_merge(&noev, 1, &r), SDF_EINVAL);
    pool_hbin nan_ = { 0, 0.0, 1.0, NAN, 5 };
    assert_int_equal(pool_roc_merge(&nan_, 1, &r), SDF_EINVAL);
    assert_null(r.fpr);
    /* two bins: events all above non-events, exactly 1 and no error */
    pool_hbin two[] = { { 0, 0.0, 0.5, 0, 10 }, { 0, 0.5, 1.0, 10, 0 } };
    assert_int_equal(pool_roc_merge(two, 2, &r), 0);
    assert_true(fabs(r.auc - 1.0) < 1e-15);
    assert_true(r.max_error == 0.0);
    pool_roc_free(&r);
}

/* ---- message level ---- */

static Sdefed__ValidateCount *vc(int64_t v, Sdefed__CellStatus st)
{
    Sdefed__ValidateCount *c = malloc(sizeof *c);
    sdefed__validate_count__init(c);
    c->value = v;
    c->status = st;
    return c;
}

#define R SDEFED__CELL_STATUS__CELL_ROUNDED
#define S SDEFED__CELL_STATUS__CELL_SUPPRESSED

/* A released site group with a 3-bin histogram and a comparison. */
static Sdefed__Validation *val(double auc, double se, const int64_t ev[3], const int64_t ne[3],
                               double diff, double dse, bool quantile)
{
    Sdefed__Validation *v = malloc(sizeof *v);
    sdefed__validation__init(v);
    v->released = true;
    v->auc = auc;
    v->auc_se = se;
    v->n_histogram = 3;
    v->histogram = calloc(3, sizeof *v->histogram);
    static const double edges[] = { 0.0, 0.3, 0.6, 1.0 };
    for (size_t b = 0; b < 3; b++) {
        Sdefed__ScoreBin *x = malloc(sizeof *x);
        sdefed__score_bin__init(x);
        x->lo = edges[b];
        x->hi = edges[b + 1];
        x->events = vc(ev[b], ev[b] < 0 ? S : R);
        x->nonevents = vc(ne[b], R);
        v->histogram[b] = x;
    }
    Sdefed__AucComparison *c = malloc(sizeof *c);
    sdefed__auc_comparison__init(c);
    c->version_a = strdup("v1");
    c->version_b = strdup("v2");
    c->released = dse > 0;
    c->diff = diff;
    c->diff_se = dse;
    c->auc_b = auc;
    c->auc_a = auc - diff;
    v->comparison = c;
    v->quantile_bins = quantile;
    if (quantile) {
        v->n_bins = 1;
        v->bins = calloc(1, sizeof *v->bins);
        Sdefed__CalibrationBin *b = malloc(sizeof *b);
        sdefed__calibration_bin__init(b);
        b->lo = 0;
        b->hi = 1;
        b->n = vc(100, R);
        b->events = vc(30, R);
        b->released = true;
        v->bins[0] = b;
    }
    return v;
}

static void run_pool(Sdefed__Validation **vs, size_t n, Sdefed__FederatedResult *r,
                     Sdefed__SiteResult *srs, Sdefed__SiteResult **ptrs)
{
    for (size_t i = 0; i < n; i++) {
        sdefed__site_result__init(&srs[i]);
        srs[i].status = SDEFED__SITE_STATUS__SITE_OK;
        srs[i].n_validations = 1;
        srs[i].validations = &vs[i];
        ptrs[i] = &srs[i];
    }
    sdefed__federated_result__init(r);
    r->kind = SDEFED__QUERY_KIND__KIND_VALIDATE;
    r->n_sites = n;
    r->sites = ptrs;
    assert_int_equal(pool_result(r), 0);
}

static void test_pool_messages_roc_and_comparison(void **state)
{
    (void)state;
    const int64_t e1[] = { 10, 20, 40 }, n1[] = { 80, 40, 10 };
    const int64_t e2[] = { 0, 30, 50 }, n2[] = { 100, 30, 10 };
    const int64_t e3[] = { -1, 30, 50 }, n3[] = { 100, 30, 10 };   /* a withheld count */
    Sdefed__Validation *vs[4] = {
        val(0.70, 0.03, e1, n1, 0.05, 0.02, false),
        val(0.75, 0.02, e2, n2, 0.10, 0.03, false),
        val(0.80, 0.025, e3, n3, 0.15, 0.025, false),
        val(0.72, 0.03, e1, n1, 0.0, 0.0, true),   /* comparison withheld; quantile bins */
    };
    Sdefed__SiteResult srs[4], *ptrs[4];
    Sdefed__FederatedResult r;
    run_pool(vs, 4, &r, srs, ptrs);
    assert_int_equal(r.n_pooled_validations, 1);
    Sdefed__PooledValidation *p = r.pooled_validations[0];
    /* ROC: sites 1, 2 and 4 (site 3 withheld a count) */
    assert_int_equal(p->roc_sites, 3);
    pool_hbin hb[9];
    size_t nb = 0;
    const int64_t *E[3] = { e1, e2, e1 }, *Nn[3] = { n1, n2, n1 };
    static const double edges[] = { 0.0, 0.3, 0.6, 1.0 };
    for (size_t k = 0; k < 3; k++)
        for (size_t b = 0; b < 3; b++)
            hb[nb++] = (pool_hbin){ k, edges[b], edges[b + 1], (double)E[k][b],
                                    (double)Nn[k][b] };
    pool_roc roc;
    assert_int_equal(pool_roc_merge(hb, nb, &roc), 0);
    assert_true(fabs(p->roc_auc - roc.auc) < 1e-15);
    assert_true(fabs(p->roc_auc_max_error - roc.max_error) < 1e-15);
    assert_int_equal(p->n_roc, roc.n);
    /* same edges everywhere: the curve is the summed histogram's, exactly */
    double te = 10 + 0 + 10 + 20 + 30 + 20 + 40 + 50 + 40, tn = 80 + 100 + 80 + 40 + 30 + 40 +
                                                                    10 + 10 + 10;
    assert_true(fabs(p->roc[1]->tpr - 130 / te) < 1e-12);
    assert_true(fabs(p->roc[1]->fpr - 30 / tn) < 1e-12);
    pool_roc_free(&roc);
    /* comparison: DL over sites 1-3 (site 4's is withheld) */
    double y[] = { 0.05, 0.10, 0.15 }, v[] = { 0.0004, 0.0009, 0.000625 };
    double w[3], sw = 0, swy = 0, sw2 = 0;
    for (int i = 0; i < 3; i++) {
        w[i] = 1 / v[i];
        sw += w[i];
        sw2 += w[i] * w[i];
        swy += w[i] * y[i];
    }
    double q = 0;
    for (int i = 0; i < 3; i++)
        q += w[i] * (y[i] - swy / sw) * (y[i] - swy / sw);
    double tau2 = fmax(0, (q - 2) / (sw - sw2 / sw)), ws = 0, wsy = 0;
    for (int i = 0; i < 3; i++) {
        ws += 1 / (v[i] + tau2);
        wsy += y[i] / (v[i] + tau2);
    }
    Sdefed__AucComparison *c = p->comparison;
    assert_non_null(c);
    assert_true(c->released);
    assert_int_equal(c->sites, 3);
    assert_string_equal(c->version_a, "v1");
    assert_true(fabs(c->diff - wsy / ws) < 1e-12);
    assert_true(fabs(c->diff_se - sqrt(1 / ws)) < 1e-12);
    assert_true(fabs(c->diff_lo - (wsy / ws - 1.959963984540054 * sqrt(1 / ws))) < 1e-9);
    assert_true(fabs(c->p_value - erfc(fabs(wsy / ws) / sqrt(1 / ws) / sqrt(2))) < 1e-12);
    assert_true(fabs(c->auc_b - c->auc_a - c->diff) < 1e-12);
    /* quantile bins are not summed: a note instead */
    assert_int_equal(p->n_bins, 0);
    assert_non_null(strstr(p->bins_note, "not pooled"));
    pool_free_cells(&r);

    /* no site released a comparison: withheld with a reason */
    run_pool(vs + 3, 1, &r, srs, ptrs);
    assert_false(r.pooled_validations[0]->comparison->released);
    assert_non_null(strstr(r.pooled_validations[0]->comparison->withheld_reason, "no site"));
    pool_free_cells(&r);
    for (size_t i = 0; i < 4; i++)
        sdefed__validation__free_unpacked(vs[i], NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roc_one_site),
        cmocka_unit_test(test_roc_many_sites_within_bound),
        cmocka_unit_test(test_roc_refuses),
        cmocka_unit_test(test_pool_messages_roc_and_comparison),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
