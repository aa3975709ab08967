/* tests/unit/agent/test_query_validate_more.c — issue 5 items 3/4 through query_run().
 *
 * A hand-built predictions table (SQLite in a temp dir): 200 persons with a
 * v1 row (score i/200) and a v2 row (score ((7 i) mod 200)/200), label 1
 * when i % 4 == 0 or i >= 150, group "small" for i < 36 (9 events). Checks:
 * compare_versions pairs the rows (AUCs and the paired difference equal
 * metrics.c on the same arrays), the small group's comparison is withheld
 * with it; a duplicate row of a version, labels that disagree, or no
 * person with both versions are refused with a message naming
 * compare_versions; the histogram never holds a count in 1..min_cell-1, a
 * threshold becomes a histogram edge, and a calibration edge left inside a
 * histogram bin with a small piece withholds the bins at that edge; the
 * quantile flag and edges; the identifier never appears in the result.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"
#include "validate_fixture.h"

#define N 200
#define PID_BASE 7340031

static int label_of(int i)
{
    return i % 4 == 0 || i >= 150;
}

static double score_v2(int i)
{
    return (double)((7 * i) % N) / N;
}

static int setup(void **state)
{
    (void)state;
    sqlite3 *db = fixture_create("sdefed-qvm");
    for (int i = 0; i < N; i++) {
        char sql[256];
        const char *g = i < 36 ? "small" : "big";
        snprintf(sql, sizeof sql, "INSERT INTO p VALUES (%d, %.17g, %d, '%s', 'v1')",
                 PID_BASE + i, (double)i / N, label_of(i), g);
        fixture_exec(db, sql);
        snprintf(sql, sizeof sql, "INSERT INTO p VALUES (%d, %.17g, %d, '%s', 'v2')",
                 PID_BASE + i, score_v2(i), label_of(i), g);
        fixture_exec(db, sql);
    }
    /* v3: other persons only; v4: one person twice; v5: a label disagrees with v1 */
    fixture_exec(db, "INSERT INTO p SELECT pid + 5000, score, y, grp, 'v3' FROM p WHERE mv = 'v1'");
    fixture_exec(db, "INSERT INTO p SELECT pid, score, y, grp, 'v4' FROM p WHERE mv = 'v1'");
    fixture_exec(db, "INSERT INTO p SELECT pid, score, y, grp, 'v4' FROM p WHERE mv = 'v1' LIMIT 1");
    fixture_exec(db, "INSERT INTO p SELECT pid, score, 1 - y, grp, 'v5' FROM p WHERE mv = 'v1'");
    fixture_declare(db);
    return 0;
}

static void compare(req_buf *b, char *a, char *v)
{
    b->cmp[0] = a;
    b->cmp[1] = v;
    b->v.compare_versions = b->cmp;
    b->v.n_compare_versions = 2;
}

static void no_identifier(const Sdefed__QueryResult *r)
{
    size_t len = sdefed__query_result__get_packed_size(r);
    uint8_t *buf = malloc(len);
    sdefed__query_result__pack(r, buf);
    for (int i = 0; i < N; i++) {
        char txt[16];
        snprintf(txt, sizeof txt, "%d", PID_BASE + i);
        assert_null(memmem(buf, len, txt, strlen(txt)));
    }
    free(buf);
}

static void test_compare_paired(void **state)
{
    (void)state;
    req_buf b;
    req_init(&b);
    compare(&b, "v1", "v2");
    b.by[0] = "grp";
    b.v.n_by = 1;
    Sdefed__QueryResult *r = run(&b, SDEFED__SITE_STATUS__SITE_OK);
    Sdefed__Validation *v = r->validations[0];
    assert_true(v->released);
    assert_int_equal(v->n->value, N);   /* persons, not rows */
    double sa[N], sb[N];
    unsigned char y[N];
    for (int i = 0; i < N; i++) {
        sa[i] = (double)i / N;
        sb[i] = score_v2(i);
        y[i] = (unsigned char)label_of(i);
    }
    metrics_auc_diff d;
    assert_int_equal(metrics_auc_paired(sa, sb, y, N, &d), 0);
    Sdefed__AucComparison *c = v->comparison;
    assert_non_null(c);
    assert_true(c->released);
    assert_string_equal(c->version_a, "v1");
    assert_string_equal(c->version_b, "v2");
    assert_true(fabs(c->auc_a - round(d.auc_a * 1e4) / 1e4) < 1e-12);
    assert_true(fabs(c->auc_b - round(d.auc_b * 1e4) / 1e4) < 1e-12);
    assert_true(fabs(c->diff - round(d.diff * 1e4) / 1e4) < 1e-12);
    assert_true(fabs(c->diff_se - d.se) < d.se * 1e-3);
    assert_true(c->p_value > 0 && c->p_value < 1);
    /* the group's own AUC is version b's */
    assert_true(fabs(v->auc - c->auc_b) < 1e-12);
    for (size_t k = 1; k < r->n_validations; k++) {
        Sdefed__Validation *g = r->validations[k];
        assert_non_null(g->comparison);
        if (strcmp(g->strata[0]->value, "small") == 0) {
            assert_false(g->released);
            assert_false(g->comparison->released);
            assert_true(g->comparison->diff == 0 && g->comparison->auc_a == 0);
            assert_non_null(strstr(g->comparison->withheld_reason, "withheld"));
        }
    }
    no_identifier(r);
    query_result_free(r);
}

static void test_compare_refusals(void **state)
{
    (void)state;
    static char *pairs[][3] = {
        { "v1", "v3", "no person has rows of both" },
        { "v1", "v4", "more than one row" },
        { "v1", "v5", "different labels" },
    };
    for (size_t k = 0; k < 3; k++) {
        req_buf b;
        req_init(&b);
        compare(&b, pairs[k][0], pairs[k][1]);
        Sdefed__QueryResult *r = run(&b, SDEFED__SITE_STATUS__SITE_REFUSED);
        assert_non_null(strstr(r->reason, "compare_versions"));
        assert_non_null(strstr(r->reason, pairs[k][2]));
        assert_int_equal(r->n_validations, 0);
        query_result_free(r);
    }
}

/* events and non-events of the v1 rows with lo <= i/N < hi */
static void true_counts(double lo, double hi, int64_t *e, int64_t *ne)
{
    *e = *ne = 0;
    for (int i = 0; i < N; i++) {
        double s = (double)i / N;
        if (s >= lo && s < hi) {
            if (label_of(i))
                (*e)++;
            else
                (*ne)++;
        }
    }
}

static void test_histogram_rules(void **state)
{
    (void)state;
    req_buf b;
    req_init(&b);
    b.v.model_version = "v1";
    b.th[0] = 0.52;
    b.v.n_thresholds = 1;
    Sdefed__QueryResult *r = run(&b, SDEFED__SITE_STATUS__SITE_OK);
    Sdefed__Validation *v = r->validations[0];
    assert_true(v->n_histogram >= 2);
    assert_true(v->histogram[0]->lo == 0.0);
    assert_true(v->histogram[v->n_histogram - 1]->hi == 1.0);
    bool edge = false;
    for (size_t h = 0; h < v->n_histogram; h++) {
        const Sdefed__ScoreBin *x = v->histogram[h];
        if (h)
            assert_true(x->lo == v->histogram[h - 1]->hi);
        edge = edge || x->lo == 0.52;
        int64_t e, ne;
        true_counts(x->lo, h + 1 == v->n_histogram ? 2.0 : x->hi, &e, &ne);
        assert_false(e > 0 && e < 10);
        assert_false(ne > 0 && ne < 10);
        assert_int_equal(x->events->value, e == 0 ? 0 : (2 * e + 5) / 10 * 5);
        assert_int_equal(x->nonevents->value, ne == 0 ? 0 : (2 * ne + 5) / 10 * 5);
    }
    assert_true(edge);   /* the threshold is a histogram edge */
    assert_true(v->thresholds[0]->tp->status != SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    /* the calibration edge 0.5 is inside the bin that ends at 0.52, and
     * [0.5, 0.52) holds 1 event: both calibration bins there are withheld */
    bool inside = false;
    for (size_t h = 0; h < v->n_histogram; h++)
        inside = inside || (v->histogram[h]->lo < 0.5 && v->histogram[h]->hi > 0.5);
    assert_true(inside);
    assert_int_equal(v->bins[4]->n->status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    assert_int_equal(v->bins[5]->n->status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    assert_false(v->bins[5]->released);
    assert_int_equal(v->bins[3]->n->value, 20);   /* elsewhere the n's stay */
    /* the ROC from the released counts */
    assert_int_equal(v->n_roc, v->n_histogram + 1);
    assert_true(v->roc[0]->fpr == 0 && v->roc[0]->tpr == 0);
    assert_true(v->roc[v->n_roc - 1]->fpr == 1 && v->roc[v->n_roc - 1]->tpr == 1);
    query_result_free(r);
}

static void test_histogram_empty_segment(void **state)
{
    (void)state;
    /* no score lies in [0.998, 1]: the segment above that threshold is
     * empty and is merged, not dropped with the whole histogram */
    req_buf b;
    req_init(&b);
    b.v.model_version = "v1";
    b.th[0] = 0.998;
    b.v.n_thresholds = 1;
    Sdefed__QueryResult *r = run(&b, SDEFED__SITE_STATUS__SITE_OK);
    Sdefed__Validation *v = r->validations[0];
    assert_true(v->n_histogram >= 2);
    assert_true(v->histogram[v->n_histogram - 1]->hi == 1.0);
    for (size_t h = 0; h < v->n_histogram; h++)
        assert_true(v->histogram[h]->events->value + v->histogram[h]->nonevents->value > 0);
    assert_int_equal(v->n_roc, v->n_histogram + 1);
    query_result_free(r);
}

static void test_quantile_bins(void **state)
{
    (void)state;
    req_buf b;
    req_init(&b);
    b.v.model_version = "v1";
    b.v.bin_mode = "quantile";
    b.v.bins = 4;
    Sdefed__QueryResult *r = run(&b, SDEFED__SITE_STATUS__SITE_OK);
    Sdefed__Validation *v = r->validations[0];
    assert_true(v->quantile_bins);
    assert_int_equal(v->n_bins, 4);
    /* edge k: mean of the scores (i/200) at i = 50k - 5 .. 50k + 4, (50k - 0.5)/200;
     * the sum of the ten doubles lands just below 0.2475 etc., so 3 decimals
     * give 0.247, 0.497, 0.747 (bins of 50 rows: 0.245 < 0.247 < 0.25) */
    static const double want[] = { 0.0, 0.247, 0.497, 0.747 };
    static const int64_t n_want[] = { 50, 50, 50, 50 };
    for (size_t k = 0; k < 4; k++) {
        assert_true(fabs(v->bins[k]->lo - want[k]) < 1e-12);
        if (v->bins[k]->n->status != SDEFED__CELL_STATUS__CELL_SUPPRESSED)
            assert_int_equal(v->bins[k]->n->value, n_want[k]);
    }
    query_result_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compare_paired),
        cmocka_unit_test(test_compare_refusals),
        cmocka_unit_test(test_histogram_rules),
        cmocka_unit_test(test_histogram_empty_segment),
        cmocka_unit_test(test_quantile_bins),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
