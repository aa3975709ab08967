/* tests/unit/agent/test_query_validate.c — the validate kind through query_run().
 *
 * A hand-built predictions table (SQLite in a temp dir) whose exact
 * numbers are known: 200 rows, score = i/200, label 1 for rows with
 * i % 4 == 0 or i >= 150. The tests attack the disclosure rules: a
 * threshold placed a handful of persons above another is withheld (ROC
 * differencing), a site with too few events releases nothing but the
 * withheld marker, a subgroup of 9 events is withheld and its complement
 * with it, small calibration bins show no rates, confusion cells are the
 * rounded counts and the rates are computed from them, a model_version
 * filter selects rows, DP mode refuses, and the identifier never appears
 * in the packed result.
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

#include "validate_fixture.h"

#define N 200
#define PID_BASE 7340031   /* distinctive identifier values */

static int label_of(int i)
{
    return i % 4 == 0 || i >= 150;
}

static int setup(void **state)
{
    (void)state;
    sqlite3 *db = fixture_create("sdefed-qv");
    for (int i = 0; i < N; i++) {
        char sql[256];
        /* grp "small": rows 0..35 -> events 0,4,..,32 = 9, non-events 27 */
        snprintf(sql, sizeof sql, "INSERT INTO p VALUES (%d, %.17g, %d, '%s', 'v1')",
                 PID_BASE + i, (double)i / N, label_of(i),
                 i < 36 ? "small" : i < 100 ? "mid" : "big");
        fixture_exec(db, sql);
    }
    /* v2 rows: 30 rows, 3 events: a site withheld under model v2 */
    for (int i = 0; i < 30; i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "INSERT INTO p VALUES (%d, %.17g, %d, 'big', 'v2')",
                 PID_BASE + 1000 + i, (double)i / 30, i % 10 == 0);
        fixture_exec(db, sql);
    }
    fixture_declare(db);
    return 0;
}

static int64_t rnd5(int64_t n)
{
    return (2 * n + 5) / 10 * 5;
}

static void test_whole_site_and_cells(void **state)
{
    (void)state;
    req_buf b;
    req_init(&b);
    b.v.model_version = "v1";
    b.th[0] = 0.5;
    b.v.n_thresholds = 1;
    Sdefed__QueryResult *r = run(&b, SDEFED__SITE_STATUS__SITE_OK);
    assert_int_equal(r->n_validations, 1);
    Sdefed__Validation *v = r->validations[0];
    assert_true(v->released);
    /* events: i%4==0 below 150 (38) + 150..199 (50) = 88 */
    int64_t ev = 0, tp = 0, fp = 0;
    for (int i = 0; i < N; i++) {
        ev += label_of(i);
        if ((double)i / N >= 0.5) {
            tp += label_of(i);
            fp += !label_of(i);
        }
    }
    assert_int_equal(ev, 88);
    assert_int_equal(v->n->value, 200);
    assert_int_equal(v->events->value, rnd5(ev));
    Sdefed__ThresholdMetrics *t = v->thresholds[0];
    assert_true(t->released);
    assert_int_equal(t->tp->value, rnd5(tp));
    assert_int_equal(t->fp->value, rnd5(fp));
    assert_int_equal(t->tn->value, rnd5(N - ev - fp));
    assert_int_equal(t->fn->value, rnd5(ev - tp));
    /* rates from the released cells, not the exact ones */
    double sens = (double)t->tp->value / (double)(t->tp->value + t->fn->value);
    assert_true(fabs(t->sensitivity - round(sens * 1e4) / 1e4) < 1e-12);
    /* the identifier never leaves: no row's id among the packed bytes */
    size_t len = sdefed__query_result__get_packed_size(r);
    uint8_t *buf = malloc(len);
    sdefed__query_result__pack(r, buf);
    for (int i = 0; i < N; i++) {
        char txt[16];
        snprintf(txt, sizeof txt, "%d", PID_BASE + i);
        assert_null(memmem(buf, len, txt, strlen(txt)));
        uint32_t id = (uint32_t)(PID_BASE + i);
        uint8_t var[5];
        size_t k = 0;
        while (id >= 0x80) {
            var[k++] = (uint8_t)(id | 0x80);
            id >>= 7;
        }
        var[k++] = (uint8_t)id;
        assert_null(memmem(buf, len, var, k));
    }
    free(buf);
    query_result_free(r);
}

static void test_close_threshold_withheld(void **state)
{
    (void)state;
    req_buf b;
    req_init(&b);
    b.v.model_version = "v1";
    /* 0.5 and 0.52: rows 100..103 lie between; 1 event, 3 non-events */
    b.th[0] = 0.52;
    b.th[1] = 0.5;
    b.th[2] = 0.75;   /* 50 rows between 0.52 and 0.75 (13 events, 37 non-events)... */
    b.v.n_thresholds = 3;
    Sdefed__QueryResult *r = run(&b, SDEFED__SITE_STATUS__SITE_OK);
    Sdefed__Validation *v = r->validations[0];
    assert_int_equal(v->n_thresholds, 3);
    assert_true(v->thresholds[0]->threshold == 0.5);   /* sorted */
    assert_true(v->thresholds[0]->released);
    assert_true(v->thresholds[1]->threshold == 0.52);
    assert_false(v->thresholds[1]->released);
    assert_non_null(strstr(v->thresholds[1]->withheld_reason, "too close"));
    assert_int_equal(v->thresholds[1]->tp->status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    assert_int_equal(v->thresholds[1]->tp->value, 0);
    /* 0.75 is compared with 0.5 (the last released): 0.5..0.75 holds 50 rows,
     * 13 events and 37 non-events, so it is released */
    assert_true(v->thresholds[2]->released);
    query_result_free(r);
}

static void test_small_subgroup_and_complement(void **state)
{
    (void)state;
    req_buf b;
    req_init(&b);
    b.v.model_version = "v1";
    b.by[0] = "grp";
    b.v.n_by = 1;
    Sdefed__QueryResult *r = run(&b, SDEFED__SITE_STATUS__SITE_OK);
    assert_int_equal(r->n_validations, 4);
    int seen = 0;
    for (size_t k = 1; k < r->n_validations; k++) {
        Sdefed__Validation *v = r->validations[k];
        assert_int_equal(v->n_strata, 1);
        assert_string_equal(v->strata[0]->name, "grp");
        const char *lv = v->strata[0]->value;
        if (strcmp(lv, "small") == 0) {   /* 9 events */
            seen++;
            assert_false(v->released);
            assert_null(v->n);
            assert_int_equal(v->n_thresholds, 0);
            assert_true(v->auc == 0.0);
            assert_non_null(strstr(v->withheld_reason, "min_cell"));
        } else if (strcmp(lv, "mid") == 0) {   /* 64 rows, 16 events: passes, but is the
                                                * smallest released level */
            seen++;
            assert_false(v->released);
            assert_non_null(strstr(v->withheld_reason, "complementary"));
        } else {
            seen++;
            assert_string_equal(lv, "big");
            assert_true(v->released);
        }
    }
    assert_int_equal(seen, 3);
    query_result_free(r);
}

static void test_site_withheld_and_bins(void **state)
{
    (void)state;
    req_buf b;
    req_init(&b);
    b.v.model_version = "v1";
    b.v.model_version = "v2";   /* 30 rows, 3 events */
    b.by[0] = "grp";
    b.v.n_by = 1;
    Sdefed__QueryResult *r = run(&b, SDEFED__SITE_STATUS__SITE_OK);
    assert_int_equal(r->n_validations, 1);   /* nothing but the withheld site */
    assert_false(r->validations[0]->released);
    query_result_free(r);

    /* v1 with 20 bins of 10 rows: below 0.75 each bin has 2-3 events (withheld);
     * above, 10 events and 0 non-events (0 is not disclosive by default) */
    req_init(&b);
    b.v.model_version = "v1";
    b.v.bins = 20;
    r = run(&b, SDEFED__SITE_STATUS__SITE_OK);
    Sdefed__Validation *v = r->validations[0];
    assert_int_equal(v->n_bins, 20);
    for (size_t k = 0; k < 15; k++) {
        assert_false(v->bins[k]->released);
        assert_int_equal(v->bins[k]->n->value, 10);
        assert_true(v->bins[k]->mean_predicted == 0.0);
        assert_int_equal(v->bins[k]->events->status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    }
    for (size_t k = 15; k < 20; k++) {
        assert_true(v->bins[k]->released);
        assert_true(v->bins[k]->observed == 1.0);
    }
    query_result_free(r);

    /* 2 bins: [0, .5) has 100 rows, 25 events; [.5, 1] 100 rows, 63 events */
    req_init(&b);
    b.v.model_version = "v1";
    b.v.bins = 2;
    r = run(&b, SDEFED__SITE_STATUS__SITE_OK);
    v = r->validations[0];
    assert_true(v->bins[0]->released);
    assert_int_equal(v->bins[0]->n->value, 100);
    assert_int_equal(v->bins[0]->events->value, 25);
    assert_true(fabs(v->bins[0]->mean_predicted - 0.2475) < 1e-12);
    assert_true(fabs(v->bins[0]->observed - 0.25) < 1e-12);
    assert_int_equal(v->bins[1]->events->value, 65);   /* 63 rounded */
    query_result_free(r);
}

static void test_refusals(void **state)
{
    (void)state;
    req_buf b;
    req_init(&b);
    b.v.model_version = "v1";
    b.by[0] = "score";
    b.v.n_by = 1;
    Sdefed__QueryResult *r = run(&b, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_non_null(strstr(r->reason, "not a category column"));
    assert_int_equal(r->n_validations, 0);
    query_result_free(r);

    req_init(&b);
    b.v.model_version = "v1";
    b.v.model_version = "v9";
    r = run(&b, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_non_null(strstr(r->reason, "no rows"));
    query_result_free(r);

    disc_policy saved = cfg.policy;
    cfg.policy.dp_epsilon = 1.0;
    cfg.policy.dp_budget = 10.0;
    req_init(&b);
    b.v.model_version = "v1";
    r = run(&b, SDEFED__SITE_STATUS__SITE_REFUSED);
    query_result_free(r);
    cfg.policy = saved;

    /* an OMOP outcome needs a date column, and an OMOP dataset */
    Sdefed__ValidateOutcome oc = SDEFED__VALIDATE_OUTCOME__INIT;
    Sdefed__Criterion c = SDEFED__CRITERION__INIT;
    Sdefed__Window w = SDEFED__WINDOW__INIT;
    int64_t concept = 1;
    c.domain = SDEFED__DOMAIN__DOMAIN_CONDITION;
    c.concepts = &concept;
    c.n_concepts = 1;
    w.end_days = 30;
    oc.dataset = "preds";
    oc.criterion = &c;
    oc.window = &w;
    req_init(&b);
    b.v.model_version = "v1";
    b.v.outcome = &oc;
    r = run(&b, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_non_null(strstr(r->reason, "no date column"));
    query_result_free(r);

    /* a count over a table dataset is refused */
    req_init(&b);
    b.v.model_version = "v1";
    b.spec.kind = SDEFED__QUERY_KIND__KIND_SUMMARY;
    b.spec.validate = NULL;
    r = query_run(&cfg, &b.req, NULL);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    query_result_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_site_and_cells),
        cmocka_unit_test(test_close_threshold_withheld),
        cmocka_unit_test(test_small_subgroup_and_complement),
        cmocka_unit_test(test_site_withheld_and_bins),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
