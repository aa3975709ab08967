/* tests/unit/agent/test_scorecard.c — a model shipped as a scorecard (issue 5 item 2).
 *
 * Three layers. The pure pieces of agent/scorecard.c: the link functions
 * (expit without overflow, the linear range check) and the look-back merge
 * (window ends inclusive, the latest value wins, ties on a day broken by
 * the row id, persons without events). The spec rules in lib/spec.c: a bad
 * link, a NaN or huge coefficient, 51 terms, a look-back out of range, a
 * measurement term on a domain without values and the rest are refused
 * naming the field; the canonical JSON round-trips the scorecard. And the
 * whole path through query_run() on the seeded OMOP fixture: n, events and
 * the AUC the agent releases match a plain-C reference that scores the
 * fixture's own arrays, with and without a `missing` value, with the
 * terms' events filtered in SQL or in memory, and per `sex` subgroup; a
 * site with too few events is withheld; a linear model leaving [0, 1], an
 * unknown concept id, a constant score, a cohort too small to release and
 * a non-OMOP dataset are refused with messages that carry no value and no
 * count; and every allocation of the path may fail without a leak or a
 * different answer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "query.h"
#include "scorecard.h"
#include "sdefed/log.h"
#include "sdefed/spec.h"

#define OMOP_FIXTURE_NAME "scorecard"
#include "omop_fixture.h"
/* alloc_fail.h names a parameter `run`, which the fixture's run() would shadow */
#define run alloc_fail_run_fn
#include "alloc_fail.h"
#undef run

static int (*const unused_month_of)(int) __attribute__((unused)) = month_of;

/* ---- pure parts ---- */

static void test_link(void **state)
{
    (void)state;
    double s = -1;
    assert_int_equal(scorecard_link(SDEFED__SCORECARD_LINK__SCORECARD_LOGISTIC, 0.0, &s), 0);
    assert_true(fabs(s - 0.5) < 1e-15);
    assert_int_equal(scorecard_link(SDEFED__SCORECARD_LINK__SCORECARD_LOGISTIC, 2.0, &s), 0);
    assert_true(fabs(s - 1.0 / (1.0 + exp(-2.0))) < 1e-15);
    assert_int_equal(scorecard_link(SDEFED__SCORECARD_LINK__SCORECARD_LOGISTIC, -800.0, &s), 0);
    assert_true(s >= 0.0 && s < 1e-300);   /* no overflow to NaN */
    assert_int_equal(scorecard_link(SDEFED__SCORECARD_LINK__SCORECARD_LOGISTIC, 800.0, &s), 0);
    assert_true(s == 1.0);
    assert_int_equal(scorecard_link(SDEFED__SCORECARD_LINK__SCORECARD_LOGISTIC, NAN, &s),
                     SDF_EINVAL);
    assert_int_equal(scorecard_link(SDEFED__SCORECARD_LINK__SCORECARD_LOGISTIC, INFINITY, &s),
                     SDF_EINVAL);
    assert_int_equal(scorecard_link(SDEFED__SCORECARD_LINK__SCORECARD_LINEAR, 0.25, &s), 0);
    assert_true(s == 0.25);
    assert_int_equal(scorecard_link(SDEFED__SCORECARD_LINK__SCORECARD_LINEAR, 0.0, &s), 0);
    assert_int_equal(scorecard_link(SDEFED__SCORECARD_LINK__SCORECARD_LINEAR, 1.0, &s), 0);
    assert_int_equal(scorecard_link(SDEFED__SCORECARD_LINK__SCORECARD_LINEAR, 1.0001, &s),
                     SDF_EINVAL);
    assert_int_equal(scorecard_link(SDEFED__SCORECARD_LINK__SCORECARD_LINEAR, -1e-9, &s),
                     SDF_EINVAL);
    assert_int_equal(scorecard_link(SDEFED__SCORECARD_LINK__SCORECARD_LINK_UNSPECIFIED, 0.5, &s),
                     SDF_EINVAL);
}

static void test_lookup(void **state)
{
    (void)state;
    /* persons 10, 20, 30, 40 with index day 1000; look-back 100 */
    int64_t pid[] = { 10, 20, 30, 40 };
    int64_t day[] = { 1000, 1000, 1000, 1000 };
    scorecard_event evs[] = {
        { 5, 1000, 1, 9.0 },     /* not in the list */
        { 10, 899, 2, 1.0 },     /* one day too early */
        { 10, 900, 3, 2.0 },     /* first day of the window */
        { 10, 1000, 5, 3.0 },    /* the index day, id 5 */
        { 10, 1000, 4, 4.0 },    /* same day, lower id: loses */
        { 10, 1001, 6, 5.0 },    /* after the index: ignored */
        { 20, 1001, 7, 6.0 },    /* only after the index */
        { 30, 950, 8, 7.0 },
        { 30, 899, 9, 8.0 },
        { 35, 990, 10, 9.0 },    /* not in the list */
    };
    size_t m = sizeof evs / sizeof evs[0];
    scorecard_events_sort(evs, m);
    for (size_t k = 1; k < m; k++)
        assert_true(evs[k - 1].person < evs[k].person ||
                    (evs[k - 1].person == evs[k].person && (evs[k - 1].day < evs[k].day ||
                                                          (evs[k - 1].day == evs[k].day &&
                                                           evs[k - 1].id < evs[k].id))));
    unsigned char has[4];
    double val[4] = { 0 };
    scorecard_lookup(pid, day, 4, evs, m, 100, has, val);
    assert_int_equal(has[0], 1);
    assert_true(val[0] == 3.0);   /* the latest day, the highest id on it */
    assert_int_equal(has[1], 0);
    assert_int_equal(has[2], 1);
    assert_true(val[2] == 7.0);
    assert_int_equal(has[3], 0);
    /* look-back 0: only the index day itself */
    scorecard_lookup(pid, day, 4, evs, m, 0, has, NULL);
    assert_int_equal(has[0], 1);
    assert_int_equal(has[2], 0);
    /* look-back 99: day 900 falls out, the index day stays */
    pid[0] = 10;
    day[0] = 999;
    scorecard_lookup(pid, day, 1, evs, m, 99, has, val);
    assert_int_equal(has[0], 1);
    assert_true(val[0] == 2.0);
    /* no events at all */
    scorecard_lookup(pid, day, 4, evs, 0, 100, has, val);
    for (int i = 0; i < 4; i++)
        assert_int_equal(has[i], 0);
}

/* ---- spec rules ---- */

#define COHORT "\"cohort\": {\"index\": {\"domain\": \"condition\", \"concepts\": [2001], " \
               "\"descendants\": true}}"
#define OUTCOME "\"outcome\": {\"criterion\": {\"domain\": \"drug\", \"concepts\": [3001]}, " \
                "\"window_days\": [1, 3650]}"

static int parse(const char *json, char *err, size_t errlen, Sdefed__QuerySpec **out)
{
    *out = NULL;
    return spec_parse_json(json, strlen(json), out, err, errlen);
}

static void refused_with(const char *scorecard_json, const char *extra, const char *want)
{
    char json[8192], err[512] = "";
    Sdefed__QuerySpec *s = NULL;
    snprintf(json, sizeof json,
             "{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": \"omop\", "
             "\"validate\": {%s \"scorecard\": %s, " COHORT ", " OUTCOME "}}",
             extra, scorecard_json);
    int rc = parse(json, err, sizeof err, &s);
    if (rc != SDF_ESPEC || !strstr(err, want))
        fprintf(stderr, "json %s\n  rc %d err '%s' (want '%s')\n", json, rc, err, want);
    assert_int_equal(rc, SDF_ESPEC);
    assert_null(s);
    assert_non_null(strstr(err, want));
}

static void test_spec_refusals(void **state)
{
    (void)state;
    refused_with("{\"link\": \"probit\", \"terms\": [{\"coef\": 1, \"age\": true}]}", "",
                 "validate.scorecard.link: unknown link");
    refused_with("{\"terms\": [{\"coef\": 1, \"age\": true}]}", "",
                 "validate.scorecard.link: required");
    refused_with("{\"link\": \"logistic\", \"terms\": []}", "", "validate.scorecard.terms");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": \"x\", \"age\": true}]}", "",
                 "validate.scorecard.terms[0].coef: must be a number");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1e300, \"age\": true}]}", "",
                 "validate.scorecard.terms[0].coef: must be a finite number");
    refused_with("{\"link\": \"logistic\", \"intercept\": -1e7, \"terms\": "
                 "[{\"coef\": 1, \"age\": true}]}", "", "validate.scorecard.intercept");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"age\": true}]}", "",
                 "validate.scorecard.terms[0].coef: required");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1, \"age\": true, "
                 "\"sex\": \"male\"}]}", "", "exactly one of age, sex");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1, \"age\": false}]}", "",
                 "validate.scorecard.terms[0].age: must be true");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1, \"sex\": \"other\"}]}",
                 "", "validate.scorecard.terms[0].sex");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1, \"indicator\": "
                 "{\"domain\": \"drug\", \"concepts\": [1001]}, \"lookback_days\": 36501}]}",
                 "", "validate.scorecard.terms[0].lookback_days: must be an integer 0..36500");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1, \"indicator\": "
                 "{\"domain\": \"drug\", \"concepts\": [1001]}, \"lookback_days\": -1}]}",
                 "", "validate.scorecard.terms[0].lookback_days");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1, \"indicator\": "
                 "{\"domain\": \"drug\", \"concepts\": [1001]}}]}",
                 "", "validate.scorecard.terms[0].lookback_days: required");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1, \"measurement\": "
                 "{\"domain\": \"condition\", \"concepts\": [2001]}, \"lookback_days\": 30}]}",
                 "", "validate.scorecard.terms[0].measurement: domain must be measurement");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1, \"indicator\": "
                 "{\"domain\": \"drug\", \"concepts\": [1001]}, \"lookback_days\": 30, "
                 "\"missing\": 1}]}", "", "validate.scorecard.terms[0].missing: only for");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1, \"indicator\": "
                 "{\"domain\": \"drug\", \"concepts\": [1001], \"window\": {\"start_days\": "
                 "-9, \"end_days\": 0}}, \"lookback_days\": 30}]}", "",
                 "validate.scorecard.terms[0].indicator: no window");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1, \"age\": true, "
                 "\"lookback_days\": 3}]}", "", "validate.scorecard.terms[0]: age and sex");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1, \"age\": true}]}",
                 "\"by\": [\"region\"],", "validate.by[0]: with a scorecard, only");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1, \"age\": true}]}",
                 "\"by\": [\"sex\"], \"subgroups_from\": \"other\",",
                 "validate.subgroups_from: with a scorecard, must be the spec's dataset");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1, \"age\": true}]}",
                 "\"compare_versions\": [\"a\", \"b\"],",
                 "validate.compare_versions: not available with a scorecard");
    refused_with("{\"link\": \"logistic\", \"terms\": [{\"coef\": 1, \"age\": true}]}",
                 "\"model_version\": \"v1\",", "validate.model_version: not available");

    /* 51 terms */
    char sc[8192];
    int w = snprintf(sc, sizeof sc, "{\"link\": \"linear\", \"terms\": [");
    for (int i = 0; i < SPEC_SCORECARD_MAX_TERMS + 1; i++)
        w += snprintf(sc + w, sizeof sc - (size_t)w, "%s{\"coef\": 0.001, \"age\": true}",
                      i ? ", " : "");
    snprintf(sc + w, sizeof sc - (size_t)w, "]}");
    refused_with(sc, "", "validate.scorecard.terms: more than 50 terms");

    /* the scorecard needs a cohort with an index, and an outcome of its own dataset */
    char err[512];
    Sdefed__QuerySpec *s = NULL;
    assert_int_equal(parse("{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": "
                           "\"omop\", \"validate\": {\"scorecard\": {\"link\": \"logistic\", "
                           "\"terms\": [{\"coef\": 1, \"age\": true}]}, " OUTCOME "}}",
                           err, sizeof err, &s), SDF_ESPEC);
    assert_non_null(strstr(err, "validate.cohort: required with a scorecard"));
    assert_int_equal(parse("{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": "
                           "\"omop\", \"validate\": {\"scorecard\": {\"link\": \"logistic\", "
                           "\"terms\": [{\"coef\": 1, \"age\": true}]}, " COHORT "}}",
                           err, sizeof err, &s), SDF_ESPEC);
    assert_non_null(strstr(err, "validate.outcome: required with a scorecard"));
    assert_int_equal(parse("{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": "
                           "\"omop\", \"validate\": {\"scorecard\": {\"link\": \"logistic\", "
                           "\"terms\": [{\"coef\": 1, \"age\": true}]}, " COHORT ", "
                           "\"outcome\": {\"dataset\": \"other\", \"criterion\": {\"domain\": "
                           "\"drug\", \"concepts\": [3001]}, \"window_days\": [1, 30]}}}",
                           err, sizeof err, &s), SDF_ESPEC);
    assert_non_null(strstr(err, "validate.outcome.dataset: with a scorecard"));
    assert_int_equal(parse("{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": "
                           "\"omop\", \"validate\": {\"scorecard\": {\"link\": \"logistic\", "
                           "\"terms\": [{\"coef\": 1, \"age\": true}]}, " OUTCOME ", "
                           "\"cohort\": {\"any\": [{\"domain\": \"drug\", \"concepts\": [1]},"
                           " {\"domain\": \"drug\", \"concepts\": [2]}]}}}",
                           err, sizeof err, &s), SDF_ESPEC);
    assert_non_null(strstr(err, "validate.cohort: needs an index"));
    assert_int_equal(parse("{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": "
                           "\"omop\", \"validate\": {" COHORT ", \"outcome\": {\"dataset\": "
                           "\"omop\", \"criterion\": {\"domain\": \"drug\", \"concepts\": "
                           "[3001]}, \"window_days\": [1, 30]}}}",
                           err, sizeof err, &s), SDF_ESPEC);
    assert_non_null(strstr(err, "validate.cohort: only with a scorecard"));
}

/* Proto-level: what JSON cannot carry (NaN) is refused by spec_validate,
 * the check every agent runs on what arrives. */
static void test_spec_validate_proto(void **state)
{
    (void)state;
    char err[512];
    Sdefed__QuerySpec *s = NULL;
    const char *ok = "{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": \"omop\", "
                     "\"validate\": {\"scorecard\": {\"link\": \"logistic\", \"intercept\": -2, "
                     "\"terms\": [{\"coef\": 0.5, \"age\": true}, {\"coef\": 0.1, "
                     "\"measurement\": {\"domain\": \"measurement\", \"concepts\": [5001]}, "
                     "\"lookback_days\": 365, \"missing\": 5.5}]}, " COHORT ", " OUTCOME "}}";
    assert_int_equal(parse(ok, err, sizeof err, &s), 0);
    Sdefed__ScorecardTerm *t0 = s->validate->scorecard->terms[0];
    Sdefed__ScorecardTerm *t1 = s->validate->scorecard->terms[1];
    assert_int_equal(spec_validate(s, err, sizeof err), 0);
    t0->coef = NAN;
    assert_int_equal(spec_validate(s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "validate.scorecard.terms[0].coef: must be a finite number"));
    t0->coef = 0.5;
    s->validate->scorecard->intercept = INFINITY;
    assert_int_equal(spec_validate(s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "validate.scorecard.intercept"));
    s->validate->scorecard->intercept = -2;
    t1->missing = NAN;
    assert_int_equal(spec_validate(s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "validate.scorecard.terms[1].missing"));
    t1->missing = 5.5;
    t1->lookback_days = 40000;
    assert_int_equal(spec_validate(s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "validate.scorecard.terms[1].lookback_days: must be 0..36500"));
    t1->lookback_days = 365;
    s->validate->scorecard->link = (Sdefed__ScorecardLink)7;
    assert_int_equal(spec_validate(s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "validate.scorecard.link"));
    s->validate->scorecard->link = SDEFED__SCORECARD_LINK__SCORECARD_LOGISTIC;
    t0->covariate = (Sdefed__ScorecardCovariate)9;
    assert_int_equal(spec_validate(s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "validate.scorecard.terms[0]: needs exactly one"));
    t0->covariate = SDEFED__SCORECARD_COVARIATE__SCORECARD_AGE;
    assert_int_equal(spec_validate(s, err, sizeof err), 0);
    sdefed__query_spec__free_unpacked(s, NULL);
}

static void test_canonical_round_trip(void **state)
{
    (void)state;
    char err[512];
    Sdefed__QuerySpec *a = NULL, *b = NULL;
    const char *json =
        "{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": \"omop\", \"validate\": "
        "{\"thresholds\": [0.2], \"scorecard\": {\"link\": \"linear\", \"intercept\": 0.125, "
        "\"terms\": [{\"coef\": 0.01, \"age\": true}, {\"coef\": -0.05, \"sex\": \"female\"}, "
        "{\"coef\": 0.1, \"indicator\": {\"domain\": \"drug\", \"concepts\": [1003, 1001], "
        "\"descendants\": true}, \"lookback_days\": 0}, {\"coef\": 0.001, \"measurement\": "
        "{\"domain\": \"measurement\", \"concepts\": [5001], \"units\": [8554]}, "
        "\"lookback_days\": 730}]}, " COHORT ", " OUTCOME "}}";
    assert_int_equal(parse(json, err, sizeof err, &a), 0);
    /* the outcome's dataset defaults to the spec's */
    assert_string_equal(a->validate->outcome->dataset, "omop");
    json_t *ja = spec_to_json(a);
    char *ta = json_dumps(ja, JSON_COMPACT);
    assert_non_null(ta);
    assert_non_null(strstr(ta, "\"scorecard\":{\"link\":\"linear\""));
    assert_non_null(strstr(ta, "\"concepts\":[1001,1003]"));   /* canonical set */
    assert_int_equal(parse(ta, err, sizeof err, &b), 0);
    json_t *jb = spec_to_json(b);
    char *tb = json_dumps(jb, JSON_COMPACT);
    assert_string_equal(ta, tb);
    /* a changed coefficient is a different query */
    b->validate->scorecard->terms[2]->coef = 0.2;
    json_t *jc = spec_to_json(b);
    char *tc = json_dumps(jc, JSON_COMPACT);
    assert_string_not_equal(ta, tc);
    free(ta);
    free(tb);
    free(tc);
    json_decref(ja);
    json_decref(jb);
    json_decref(jc);
    sdefed__query_spec__free_unpacked(a, NULL);
    sdefed__query_spec__free_unpacked(b, NULL);
}

/* ---- the whole path on the fixture, against a plain-C reference ---- */

typedef struct ref {
    size_t n;
    int64_t events;
    double auc;
} ref;

static bool in_set(int c, const int *set, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (set[k] == c)
            return true;
    return false;
}

/* The value SQLite holds for a measurement (written with %.1f). */
static double stored(double v)
{
    char b[32];
    snprintf(b, sizeof b, "%.1f", v);
    return strtod(b, NULL);
}

/* Score the fixture: index = first condition in {2001, 2002}; terms age
 * (0.03), female (0.4), an NSAID {1001, 1002, 1003} in the 3650 days up to
 * the index (0.9), the latest measurement 5001 in the 730 days up to the
 * index (-0.2; `missing` or left out); outcome drug 3001 on day index+1 ..
 * index+3650. */
static ref reference_sex(double intercept, bool has_missing, double missing, int gender);

static ref reference(double intercept, bool has_missing, double missing)
{
    return reference_sex(intercept, has_missing, missing, -1);
}

/* Only persons whose index day is in [ref_from, ref_to] (validate.from/to). */
static int ref_from = INT32_MIN, ref_to = INT32_MAX;

/* gender >= 0: only persons with that gender_concept_id (0: neither). */
static ref reference_sex(double intercept, bool has_missing, double missing, int gender)
{
    static const int COND[] = { 2001, 2002 }, NSAID[] = { 1001, 1002, 1003 };
    static double score[NP + 1];
    static int label[NP + 1];
    ref r = { 0, 0, 0.0 };
    size_t n = 0;
    for (int p = 1; p <= NP; p++) {
        int index = -1;
        for (size_t k = 0; k < NE; k++)
            if (E[k].p == p && E[k].t == 'c' && in_set(E[k].concept, COND, 2) &&
                (index < 0 || E[k].day < index))
                index = E[k].day;
        if (index < 0 || index < ref_from || index > ref_to)
            continue;
        if (gender >= 0 && P[p].gender != gender)
            continue;
        bool nsaid = false, outcome = false;
        int mday = -1;
        size_t mk = 0;
        for (size_t k = 0; k < NE; k++) {
            const ev *e = &E[k];
            if (e->p != p)
                continue;
            if (e->t == 'd' && in_set(e->concept, NSAID, 3) && e->day >= index - 3650 &&
                e->day <= index)
                nsaid = true;
            if (e->t == 'd' && e->concept == 3001 && e->day >= index + 1 &&
                e->day <= index + 3650)
                outcome = true;
            if (e->t == 'm' && e->concept == 5001 && e->day >= index - 730 && e->day <= index &&
                (e->day > mday || (e->day == mday && k > mk))) {
                mday = e->day;
                mk = k;
            }
        }
        double lp = intercept + 0.03 * (year_of(index) - P[p].yob) +
                    (P[p].gender == 8532 ? 0.4 : 0.0) + (nsaid ? 0.9 : 0.0);
        if (mday >= 0)
            lp += -0.2 * stored(E[mk].value);
        else if (has_missing)
            lp += -0.2 * missing;
        else
            continue;
        score[n] = 1.0 / (1.0 + exp(-lp));
        label[n] = outcome;
        r.events += outcome;
        n++;
    }
    r.n = n;
    double wins = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (label[i] && !label[j])
                wins += score[i] > score[j] ? 1.0 : score[i] == score[j] ? 0.5 : 0.0;
    r.auc = wins / ((double)r.events * (double)(n - (size_t)r.events));
    return r;
}

static const char *fixture_spec(char *buf, size_t len, double intercept, const char *missing)
{
    snprintf(buf, len,
             "{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": \"omop\", "
             "\"validate\": {\"thresholds\": [0.5], \"bins\": 5, \"scorecard\": "
             "{\"link\": \"logistic\", \"intercept\": %.17g, \"terms\": ["
             "{\"coef\": 0.03, \"age\": true}, {\"coef\": 0.4, \"sex\": \"female\"}, "
             "{\"coef\": 0.9, \"indicator\": {\"domain\": \"drug\", \"concepts\": [1001], "
             "\"descendants\": true}, \"lookback_days\": 3650}, "
             "{\"coef\": -0.2, \"measurement\": {\"domain\": \"measurement\", \"concepts\": "
             "[5001]}, \"lookback_days\": 730%s}]}, "
             COHORT ", " OUTCOME "}}",
             intercept, missing);
    return buf;
}

static void check_against_reference(const char *json, ref want)
{
    Sdefed__QueryResult *r = run_ok(json);
    assert_true(r->n_validations >= 1);
    const Sdefed__Validation *v = r->validations[0];
    if (!v->released)
        fprintf(stderr, "withheld: %s\n", v->withheld_reason);
    assert_true(v->released);
    assert_int_equal(v->n->value, (int64_t)want.n);          /* min_cell 1, rounding 1 */
    assert_int_equal(v->events->value, want.events);
    if (fabs(v->auc - want.auc) > 5.1e-5)
        fprintf(stderr, "auc %.6f want %.6f\n", v->auc, want.auc);
    assert_true(fabs(v->auc - want.auc) <= 5.1e-5);        /* released to 4 decimals */
    sdefed__query_result__free_unpacked(r, NULL);
}

static void test_scores_match_reference(void **state)
{
    (void)state;
    char json[4096];
    ref want = reference(-1.0, true, 7.0);
    assert_true(want.n > 100 && want.events > 10 && want.events < (int64_t)want.n - 10);
    check_against_reference(fixture_spec(json, sizeof json, -1.0, ", \"missing\": 7.0"), want);
    /* the same with every term's events filtered in memory instead of in SQL */
    scorecard_filter_max = 0;
    check_against_reference(fixture_spec(json, sizeof json, -1.0, ", \"missing\": 7.0"), want);
    scorecard_filter_max = SCORECARD_FILTER_MAX;

    /* without `missing`, persons lacking the measurement are left out */
    ref fewer = reference(-1.0, false, 0.0);
    assert_true(fewer.n < want.n && fewer.n > 20);
    check_against_reference(fixture_spec(json, sizeof json, -1.0, ""), fewer);
}

/* Person p's index day (first condition 2001/2002), -1 without one. */
static int index_day_of(int p)
{
    int index = -1;
    for (size_t k = 0; k < NE; k++)
        if (E[k].p == p && E[k].t == 'c' && (E[k].concept == 2001 || E[k].concept == 2002) &&
            (index < 0 || E[k].day < index))
            index = E[k].day;
    return index;
}

/* The fixture's index days (first condition 2001/2002) nearest inside
 * [lo, hi]: *first the smallest, *last the largest. */
static void index_days_within(int lo, int hi, int *first, int *last)
{
    *first = INT32_MAX;
    *last = INT32_MIN;
    for (int p = 1; p <= NP; p++) {
        int index = index_day_of(p);
        if (index >= lo && index <= hi) {
            *first = index < *first ? index : *first;
            *last = index > *last ? index : *last;
        }
    }
}

/* validate.from/to with a scorecard bound the index date (the prediction
 * date), both ends included: what a drift monitor's periods use. */
static void test_from_to_bound_the_index_date(void **state)
{
    (void)state;
    char json[4096], spec[4300], from[16], to[16];
    ref all = reference(-1.0, true, 7.0);
    /* ends exactly on two persons' index days, so an exclusive end shows */
    index_days_within(D2005 + 900, D2005 + 2400, &ref_from, &ref_to);
    assert_true(ref_from < ref_to);
    iso_of(ref_from, from);
    iso_of(ref_to, to);
    ref part = reference(-1.0, true, 7.0);
    assert_true(part.n > 20 && part.n < all.n);   /* the range really cuts */
    fixture_spec(json, sizeof json, -1.0, ", \"missing\": 7.0");
    /* the same spec with "from"/"to" inside "validate" */
    const char *v = strstr(json, "\"validate\": {");
    assert_non_null(v);
    size_t at = (size_t)(v - json) + strlen("\"validate\": {");
    snprintf(spec, sizeof spec, "%.*s\"from\": \"%s\", \"to\": \"%s\", %s", (int)at, json, from,
             to, json + at);
    check_against_reference(spec, part);
}

static int reset_range(void **state)
{
    (void)state;
    ref_from = INT32_MIN;
    ref_to = INT32_MAX;
    return 0;
}

/* by sex with a scorecard: levels from the person table, each checked */
static void test_by_sex(void **state)
{
    (void)state;
    char json[4096];
    fixture_spec(json, sizeof json, -1.0, ", \"missing\": 7.0");
    char *at = strstr(json, "\"thresholds\"");
    assert_non_null(at);
    memmove(at + 14, at, strlen(at) + 1);   /* insert "by": ["sex"], */
    memcpy(at, "\"by\": [\"sex\"], ", 14);
    Sdefed__QueryResult *r = run_ok(json);
    ref all = reference(-1.0, true, 7.0);
    assert_int_equal(r->validations[0]->n->value, (int64_t)all.n);
    static const struct { const char *name; int gender; } lv[] = {
        { "male", 8507 }, { "female", 8532 }, { "unknown", 0 } };
    size_t seen = 0;
    for (size_t k = 1; k < r->n_validations; k++) {
        const Sdefed__Validation *v = r->validations[k];
        assert_int_equal(v->n_strata, 1);
        assert_string_equal(v->strata[0]->name, "sex");
        for (size_t j = 0; j < 3; j++) {
            if (strcmp(v->strata[0]->value, lv[j].name) != 0)
                continue;
            ref want = reference_sex(-1.0, true, 7.0, lv[j].gender);
            assert_true(v->released);   /* min_cell 1 */
            assert_int_equal(v->n->value, (int64_t)want.n);
            assert_int_equal(v->events->value, want.events);
            assert_true(fabs(v->auc - want.auc) <= 5.1e-5);
            seen++;
        }
    }
    assert_int_equal(seen, 3);
    sdefed__query_result__free_unpacked(r, NULL);
}

/* Cohort persons (index: first condition in {2001, 2002}) with a drug 1003
 * event in [index - lookback, index]. */
static int with_drug_1003(int lookback)
{
    int count = 0;
    for (int p = 1; p <= NP; p++) {
        int index = index_day_of(p);
        if (index < 0)
            continue;
        for (size_t k = 0; k < NE; k++)
            if (E[k].p == p && E[k].t == 'd' && E[k].concept == 1003 &&
                E[k].day >= index - lookback && E[k].day <= index) {
                count++;
                break;
            }
    }
    return count;
}

#define RARE_SPEC \
    "{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": \"omop\", " \
    "\"validate\": {\"scorecard\": {\"link\": \"logistic\", \"terms\": [" \
    "{\"coef\": 0.01, \"age\": true}, {\"coef\": 5, \"indicator\": {\"domain\": " \
    "\"drug\", \"concepts\": [1003]}, \"lookback_days\": %d}]}, " COHORT ", " OUTCOME \
    "}, \"policy\": {\"min_cell\": 10}}"

/* A term that singles out 1..min_cell-1 persons is refused (they could be
 * differenced out of the released metrics); a common one runs. */
static void test_rare_term_refused(void **state)
{
    (void)state;
    int rare = -1, common = -1;
    for (int lb = 0; lb <= 3650 && (rare < 0 || common < 0); lb += 5) {
        int c = with_drug_1003(lb);
        if (rare < 0 && c >= 1 && c <= 9)
            rare = lb;
        if (common < 0 && c >= 10)
            common = lb;
    }
    assert_true(rare >= 0 && common >= 0);   /* the seeded data have both */
    char json[2048];
    snprintf(json, sizeof json, RARE_SPEC, rare);
    Sdefed__QueryResult *r = run(json);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_non_null(strstr(r->reason, "validate.scorecard.terms[1]: fewer than min_cell"));
    for (const char *c = strstr(r->reason, "]"); *c; c++)
        assert_false(*c >= '0' && *c <= '9');   /* no count in the message */
    sdefed__query_result__free_unpacked(r, NULL);
    snprintf(json, sizeof json, RARE_SPEC, common);
    r = run_ok(json);
    sdefed__query_result__free_unpacked(r, NULL);
}

static void test_refusals(void **state)
{
    (void)state;
    /* a linear model whose score leaves [0, 1] for some persons */
    const char *linear =
        "{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": \"omop\", "
        "\"validate\": {\"scorecard\": {\"link\": \"linear\", \"intercept\": 0.1, "
        "\"terms\": [{\"coef\": 0.02, \"age\": true}]}, " COHORT ", " OUTCOME "}}";
    Sdefed__QueryResult *r = run(linear);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_non_null(strstr(r->reason, "outside [0, 1]"));
    assert_int_equal(r->n_validations, 0);
    sdefed__query_result__free_unpacked(r, NULL);

    /* a linear model inside [0, 1] runs */
    const char *linear_ok =
        "{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": \"omop\", "
        "\"validate\": {\"scorecard\": {\"link\": \"linear\", \"intercept\": 0.0, "
        "\"terms\": [{\"coef\": 0.005, \"age\": true}]}, " COHORT ", " OUTCOME "}}";
    r = run_ok(linear_ok);
    assert_true(r->validations[0]->released);
    sdefed__query_result__free_unpacked(r, NULL);

    /* an unknown concept id in a term is named (a vocabulary code, not data) */
    const char *unknown =
        "{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": \"omop\", "
        "\"validate\": {\"scorecard\": {\"link\": \"logistic\", \"terms\": [{\"coef\": 1, "
        "\"indicator\": {\"domain\": \"drug\", \"concepts\": [424242]}, \"lookback_days\": 9}"
        "]}, " COHORT ", " OUTCOME "}}";
    r = run(unknown);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_non_null(strstr(r->reason, "unknown concept id 424242 in validate.scorecard.terms[0]"));
    sdefed__query_result__free_unpacked(r, NULL);

    /* a constant score (only a sex term, and a cohort of one sex) */
    const char *constant =
        "{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": \"omop\", "
        "\"validate\": {\"scorecard\": {\"link\": \"logistic\", \"terms\": [{\"coef\": 1, "
        "\"sex\": \"female\"}]}, \"cohort\": {\"index\": {\"domain\": \"condition\", "
        "\"concepts\": [2001], \"descendants\": true}, \"sex\": [\"female\"]}, " OUTCOME "}}";
    r = run(constant);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_non_null(strstr(r->reason, "same score"));
    sdefed__query_result__free_unpacked(r, NULL);

    /* a cohort too small for any release: refused without its size */
    const char *tiny =
        "{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": \"omop\", "
        "\"validate\": {\"scorecard\": {\"link\": \"logistic\", \"terms\": [{\"coef\": 1, "
        "\"age\": true}]}, \"cohort\": {\"index\": {\"domain\": \"condition\", "
        "\"concepts\": [2001], \"descendants\": true}, \"age\": {\"min\": 150}}, " OUTCOME "}}";
    r = run(tiny);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_non_null(strstr(r->reason, "fewer than min_cell"));
    for (const char *c = r->reason; *c; c++)
        assert_false(*c >= '0' && *c <= '9');   /* no count in the message */
    sdefed__query_result__free_unpacked(r, NULL);

    /* a scorecard against a predictions table */
    char saved[sizeof cfg.datasets[0].type];
    memcpy(saved, cfg.datasets[0].type, sizeof saved);
    snprintf(cfg.datasets[0].type, sizeof cfg.datasets[0].type, "table");
    char json[4096];
    r = run(fixture_spec(json, sizeof json, -1.0, ""));
    memcpy(cfg.datasets[0].type, saved, sizeof saved);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_non_null(strstr(r->reason, "not an OMOP dataset"));
    sdefed__query_result__free_unpacked(r, NULL);
}

/* The existing disclosure path applies: a site whose scored cohort has
 * fewer than min_cell events is withheld with its reason and no number. */
static void test_site_withheld(void **state)
{
    (void)state;
    ref want = reference(-1.0, true, 7.0);
    int64_t mc = want.events + 1;
    assert_true((int64_t)want.n >= 2 * mc);   /* not refused up front: withheld */
    char json[4096], pol[64];
    fixture_spec(json, sizeof json, -1.0, ", \"missing\": 7");
    snprintf(pol, sizeof pol, ", \"policy\": {\"min_cell\": %lld}}", (long long)mc);
    json[strlen(json) - 1] = '\0';   /* drop the closing brace, add the policy */
    strncat(json, pol, sizeof json - strlen(json) - 1);
    Sdefed__QueryResult *r = run_ok(json);
    assert_int_equal(r->n_validations, 1);
    const Sdefed__Validation *v = r->validations[0];
    assert_false(v->released);
    assert_non_null(strstr(v->withheld_reason, "fewer than min_cell events or non-events"));
    assert_true(v->n == NULL || v->n->value == 0);
    assert_true(v->events == NULL || v->events->value == 0);
    assert_true(v->auc == 0.0);
    assert_int_equal(v->n_thresholds, 0);
    assert_int_equal(v->n_bins, 0);
    sdefed__query_result__free_unpacked(r, NULL);
}

#ifndef UNDER_ASAN
/* One query; the connection pool is emptied afterwards so that every run
 * starts and ends with no pooled connection (a pooled connection closed
 * after a failure would free blocks of an earlier run). */
static Sdefed__QueryResult *run_spec(Sdefed__QuerySpec *spec)
{
    Sdefed__QueryRequest req = SDEFED__QUERY_REQUEST__INIT;
    req.query_id = (char *)"q-alloc";
    req.spec = spec;
    Sdefed__QueryResult *r = query_run(&cfg, &req, NULL);
    db_sqlite_pool_drain();
    return r;
}

static size_t result_validations(const Sdefed__QueryResult *r)
{
    return r->n_validations;
}
#endif

/* Every allocation of the scorecard path (spec, cohort, terms, scoring,
 * labels, groups) may fail: the answer is then absent, or an error or
 * refusal with no data, or the very same answer; nothing leaks. */
static void test_allocation_failures(void **state)
{
    (void)state;
#ifdef UNDER_ASAN
    skip();
#else
    const char *json =
        "{\"kind\": \"validate\", \"project\": \"demo\", \"dataset\": \"omop\", "
        "\"validate\": {\"thresholds\": [0.5], \"bins\": 4, \"by\": [\"sex\"], \"scorecard\": "
        "{\"link\": \"logistic\", \"intercept\": -1, \"terms\": ["
        "{\"coef\": 0.03, \"age\": true}, {\"coef\": 0.9, \"indicator\": {\"domain\": "
        "\"drug\", \"concepts\": [1001], \"descendants\": true}, \"lookback_days\": 3650}, "
        "{\"coef\": -0.2, \"measurement\": {\"domain\": \"measurement\", \"concepts\": "
        "[5001]}, \"lookback_days\": 730, \"missing\": 7}]}, " COHORT ", " OUTCOME "}}";
    Sdefed__QuerySpec *spec = NULL;
    char err[256];
    assert_int_equal(spec_parse_json(json, strlen(json), &spec, err, sizeof err), 0);
    db_sqlite_pool_drain();
    Sdefed__QueryResult *base = run_spec(spec);
    assert_non_null(base);
    assert_int_equal(base->status, SDEFED__SITE_STATUS__SITE_OK);
    assert_true(base->validations[0]->released);
    size_t base_len;
    uint8_t *base_bytes = alloc_fail_pack(base, &base_len);
    query_result_free(base);
    long survived = alloc_fail_torture(run_spec, spec, base_bytes, base_len,
                                       result_validations);
    print_message("scorecard survived %ld allocation failures\n", survived);
    assert_true(survived > 50);
    __libc_free(base_bytes);
    sdefed__query_spec__free_unpacked(spec, NULL);
#endif
}

/* The CDM person table has month and day of birth (the subgroup age band
 * uses them); the shared fixture leaves them out, so add them here. */
static int setup_cdm(void **state)
{
    int rc = setup(state);
    if (rc)
        return rc;
    sqlite3 *db;
    if (sqlite3_open(db_path, &db) != SQLITE_OK)
        return -1;
    exec_sql(db, "ALTER TABLE person ADD COLUMN month_of_birth INTEGER;"
                 "ALTER TABLE person ADD COLUMN day_of_birth INTEGER;");
    sqlite3_close(db);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_link),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_spec_refusals),
        cmocka_unit_test(test_spec_validate_proto),
        cmocka_unit_test(test_canonical_round_trip),
        cmocka_unit_test(test_scores_match_reference),
        cmocka_unit_test_teardown(test_from_to_bound_the_index_date, reset_range),
        cmocka_unit_test(test_by_sex),
        cmocka_unit_test(test_rare_term_refused),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_site_withheld),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, setup_cdm, teardown);
}
