/* deploy/synth/synth_person.c — the clinical model of sdefed-synth: one person's record.
 *
 * Each person is generated from its own PRNG stream and written at once, so
 * memory does not grow with the site (a million persons stream through the
 * same few hundred bytes of state). The model is deliberately small but keeps
 * the correlations the demo queries look for:
 *   - chronic conditions (type 2 diabetes, hypertension, AF, coronary disease,
 *     heart failure, asthma, osteoarthritis) with age-, sex- and
 *     comorbidity-dependent prevalence scaled by the site profile;
 *   - chronic conditions are recorded at a visit, then treated: metformin in
 *     diabetics, lisinopril/amlodipine in hypertension and heart failure,
 *     warfarin in AF, atorvastatin and aspirin in coronary disease;
 *   - NSAIDs (celecoxib, diclofenac, ibuprofen, naproxen) mostly for
 *     osteoarthritis; GI haemorrhage is far more likely in the weeks after an
 *     NSAID course (celecoxib least, diclofenac most), more so on warfarin and
 *     with age, and brings ER/inpatient visits, low haemoglobin, transfusions;
 *   - HbA1c is measured mainly in diabetics and falls on metformin; systolic
 *     blood pressure rises with age and hypertension and falls on treatment;
 *   - mortality rises with age and heart failure; the death date ends the
 *     observation period.
 * Every event date lies inside the person's single observation period.
 */
#include <math.h>
#include <string.h>

#include "synth.h"

#define VISIT_CAP      64      /* scheduled outpatient visits per person */
#define DRUG_CAP       24      /* exposures per chronic drug per person */
#define NSAID_CAP      12      /* NSAID courses per person */

enum chronic { K_T2DM, K_HTN, K_AF, K_CAD, K_HF, K_ASTHMA, K_OA, K__N };

static const int64_t chronic_concept[K__N] = {
    C_T2DM, C_HTN, C_AF, C_CAD, C_HF, C_ASTHMA, C_OA,
};

struct person {
    struct synth_db *w;
    const struct synth_profile *p;
    struct synth_rng r;
    int64_t pid, practice;
    int male;
    int32_t birth, os, oe;          /* birth, observation start and end */
    double age_end;                 /* age at the end of observation */
    int n_op;
    int32_t op_day[VISIT_CAP];
    int64_t op_id[VISIT_CAP];
    int has[K__N];
    int32_t onset[K__N];
    int dx[K__N];                   /* outpatient visit index of diagnosis, -1 if never */
    int32_t warfarin_from, metformin_from, antihtn_from;
    int32_t last_bleed;
    int n_bleeds, ulcer;
    double bmi0;
};

#define NEVER INT32_MAX

static double clamp(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

static double round1(double x)
{
    return floor(x * 10.0 + 0.5) / 10.0;
}

static double age_at(const struct person *c, int32_t day)
{
    return (day - c->birth) / 365.25;
}

static int32_t min32(int32_t a, int32_t b)
{
    return a < b ? a : b;
}

static int32_t rand_day(struct person *c, int32_t lo, int32_t hi)
{
    return (int32_t)rng_range(&c->r, lo, hi);
}

/* Index of the first outpatient visit on or after day, or -1. */
static int visit_from(const struct person *c, int32_t day)
{
    for (int i = 0; i < c->n_op; i++)
        if (c->op_day[i] >= day)
            return i;
    return -1;
}

static int64_t hospital_visit(struct person *c, int64_t concept, int32_t day,
                              int los, int32_t *end)
{
    *end = min32(day + los, c->oe);
    return db_visit(c->w, c->pid, concept, day, *end, 1);
}

/* ---- demographics, observation period, chronic conditions ---- */

static void demographics(struct person *c, int n_sites)
{
    const struct synth_profile *p = c->p;
    double w[3];
    for (int i = 0; i < 3; i++)
        w[i] = p->age[i].weight;
    size_t k = rng_pick(&c->r, w, 3);
    double age = clamp(rng_normal(&c->r, p->age[k].mean, p->age[k].sd), 0.0, 99.5);
    c->male = rng_bern(&c->r, p->male_frac);
    c->birth = date_from_ymd(2020, 1, 1) - (int32_t)(age * 365.25);
    c->practice = 2 + rng_range(&c->r, 0, n_sites - 1);

    int32_t data_start = date_from_ymd(2010, 1, 1), data_end = date_from_ymd(2024, 12, 31);
    c->os = data_start + rand_day(c, 0, 9 * 365);
    if (c->os < c->birth)
        c->os = c->birth;
    c->oe = min32(c->os + rand_day(c, 365, 13 * 365), data_end);
    c->age_end = age_at(c, c->oe);

    static const int64_t race[4] = { C_RACE_WHITE, C_RACE_ASIAN, C_RACE_BLACK, C_NO_MATCH };
    int64_t r = race[rng_pick(&c->r, p->race_w, 4)];
    int64_t eth = rng_bern(&c->r, p->hispanic_frac) ? C_ETH_HISPANIC : C_ETH_NOT_HISPANIC;
    db_person(c->w, c->pid, c->male, c->birth, r, eth, c->practice, c->practice);
}

static void chronic_flags(struct person *c)
{
    const struct synth_profile *p = c->p;
    double a = c->age_end, x = a > 25 ? a - 25 : 0;
    int *h = c->has;
    double pr;

    pr = p->m_t2dm * fmin(0.25, 0.003 + 0.0032 * x) * (c->male ? 1.2 : 1.0);
    h[K_T2DM] = rng_bern(&c->r, pr);
    pr = p->m_htn * fmin(0.65, 0.01 + 0.0085 * x) * (h[K_T2DM] ? 1.5 : 1.0);
    h[K_HTN] = rng_bern(&c->r, pr);
    pr = p->m_af * fmin(0.20, 0.004 * exp(0.07 * (a - 40))) * (h[K_HTN] ? 1.5 : 1.0);
    h[K_AF] = rng_bern(&c->r, pr);
    pr = p->m_cad * fmin(0.30, 0.003 * exp(0.065 * (a - 40))) * (c->male ? 1.8 : 1.0)
       * (h[K_T2DM] ? 1.7 : 1.0) * (h[K_HTN] ? 1.4 : 1.0);
    h[K_CAD] = rng_bern(&c->r, pr);
    pr = p->m_hf * fmin(0.25, 0.002 * exp(0.07 * (a - 40))) * (h[K_AF] ? 2.5 : 1.0)
       * (h[K_CAD] ? 2.5 : 1.0) * (h[K_HTN] ? 1.4 : 1.0);
    h[K_HF] = rng_bern(&c->r, pr);
    h[K_ASTHMA] = rng_bern(&c->r, p->m_asthma * (a < 18 ? 0.11 : 0.07));
    pr = p->m_oa * fmin(0.45, 0.02 * exp(0.045 * (a - 30))) * (c->male ? 1.0 : 1.3);
    h[K_OA] = rng_bern(&c->r, pr);
}

/* Death shortens the observation period, so it is decided before any date. */
static int decide_death(struct person *c)
{
    double years = (c->oe - c->os) / 365.25;
    double hz = 0.0006 * exp(0.09 * (c->age_end - 40)) * c->p->mort_mult
              * (c->has[K_HF] ? 2.5 : 1.0) * (c->has[K_CAD] ? 1.4 : 1.0)
              * (c->has[K_T2DM] ? 1.3 : 1.0);
    if (c->oe - c->os <= 120 || !rng_bern(&c->r, 1.0 - exp(-hz * years)))
        return 0;
    c->oe = rand_day(c, c->os + 90, c->oe);
    c->age_end = age_at(c, c->oe);
    return 1;
}

static void chronic_onsets(struct person *c)
{
    for (int k = 0; k < K__N; k++) {
        c->dx[k] = -1;
        if (!c->has[k])
            continue;
        /* About half are already present when observation starts. */
        int32_t on = rng_bern(&c->r, 0.55) ? c->os - rand_day(c, 30, 3650)
                                           : rand_day(c, c->os, c->oe);
        if (on < c->birth + 365)
            on = rand_day(c, c->os, c->oe);
        c->onset[k] = on;
    }
}

static void schedule_visits(struct person *c)
{
    int n_chronic = 0;
    for (int k = 0; k < K__N; k++)
        n_chronic += c->has[k];
    double years = (c->oe - c->os) / 365.25;
    double a = c->age_end;
    double lam = c->p->visit_rate * years * (1.0 + 0.2 * n_chronic)
               * (a >= 65 ? 1.4 : a < 5 ? 1.6 : 1.0);
    int n = (int)rng_poisson(&c->r, lam, VISIT_CAP);
    if (n < 1)
        n = 1;
    for (int i = 0; i < n; i++) {
        int32_t d = rand_day(c, c->os, c->oe);
        int j = i;
        while (j > 0 && c->op_day[j - 1] > d) {
            c->op_day[j] = c->op_day[j - 1];
            j--;
        }
        c->op_day[j] = d;
    }
    c->n_op = n;
    for (int i = 0; i < n; i++)
        c->op_id[i] = db_visit(c->w, c->pid, C_VISIT_OP, c->op_day[i], c->op_day[i], c->practice);
}

static void record_chronic(struct person *c)
{
    for (int k = 0; k < K__N; k++) {
        if (!c->has[k])
            continue;
        int i = visit_from(c, c->onset[k] > c->os ? c->onset[k] : c->os);
        if (i < 0)
            continue;                      /* never diagnosed while observed */
        c->dx[k] = i;
        db_condition(c->w, c->pid, chronic_concept[k], c->op_day[i], -1, c->op_id[i], 0);
        int again = 0;
        for (int j = i + 1; j < c->n_op && again < 4; j++)
            if (rng_bern(&c->r, 0.12)) {
                db_condition(c->w, c->pid, chronic_concept[k], c->op_day[j], -1, c->op_id[j], 0);
                again++;
            }
    }
}

/* ---- medicines ---- */

/* Repeat prescriptions of one product at outpatient visits from index
 * `from`. Returns the first start date, or NEVER if none was issued. */
static int32_t prescribe(struct person *c, int64_t concept, int from, double fill_p,
                         int cap)
{
    static const int supply[3] = { 28, 56, 84 };
    int32_t first = NEVER;
    int n = 0;
    if (from < 0)
        return NEVER;
    for (int j = from; j < c->n_op && n < cap; j++) {
        if (!rng_bern(&c->r, fill_p))
            continue;
        int days = supply[rng_range(&c->r, 0, 2)];
        int32_t start = c->op_day[j];
        db_drug(c->w, c->pid, concept, start, min32(start + days - 1, c->oe), days, c->op_id[j]);
        if (first == NEVER)
            first = start;
        n++;
    }
    return first;
}

static int earliest(int a, int b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

static void chronic_drugs(struct person *c)
{
    struct synth_rng *r = &c->r;
    int *dx = c->dx;

    c->metformin_from = c->warfarin_from = c->antihtn_from = NEVER;
    if (dx[K_T2DM] >= 0 && rng_bern(r, 0.82))
        c->metformin_from = prescribe(c, rng_bern(r, 0.6) ? C_METFORMIN_500 : C_METFORMIN_1000,
                                      dx[K_T2DM], 0.8, DRUG_CAP);
    int lis = (dx[K_HTN] >= 0 && rng_bern(r, 0.5)) || (dx[K_HF] >= 0 && rng_bern(r, 0.7));
    if (lis) {
        int from = earliest(dx[K_HTN], dx[K_HF]);
        int32_t f = prescribe(c, rng_bern(r, 0.6) ? C_LISINOPRIL_10 : C_LISINOPRIL_20,
                              from, 0.8, DRUG_CAP);
        c->antihtn_from = min32(c->antihtn_from, f);
    }
    if (dx[K_HTN] >= 0 && rng_bern(r, lis ? 0.12 : 0.5)) {
        int32_t f = prescribe(c, C_AMLODIPINE_5, dx[K_HTN], 0.8, DRUG_CAP);
        c->antihtn_from = min32(c->antihtn_from, f);
    }
    int statin_from = -1;
    if (dx[K_CAD] >= 0 && rng_bern(r, 0.8))
        statin_from = dx[K_CAD];
    if (dx[K_T2DM] >= 0 && rng_bern(r, 0.6))
        statin_from = earliest(statin_from, dx[K_T2DM]);
    if (statin_from < 0 && c->age_end >= 60 && rng_bern(r, 0.12))
        statin_from = (int)rng_range(r, 0, c->n_op - 1);
    prescribe(c, C_ATORVASTATIN_80, statin_from, 0.8, DRUG_CAP);
    if (dx[K_CAD] >= 0 && rng_bern(r, 0.6))
        prescribe(c, C_ASPIRIN_81, dx[K_CAD], 0.8, DRUG_CAP);
    if (dx[K_AF] >= 0 && rng_bern(r, 0.6))
        c->warfarin_from = prescribe(c, C_WARFARIN_5, dx[K_AF], 0.85, DRUG_CAP);
    if (dx[K_ASTHMA] >= 0 && rng_bern(r, 0.9))
        prescribe(c, C_ALBUTEROL_MDI, dx[K_ASTHMA], 0.45, DRUG_CAP);
}

/* ---- GI haemorrhage and NSAIDs ---- */

static void gi_bleed(struct person *c, int32_t day)
{
    static const int64_t concept[4] = { C_GI_BLEED, C_RECTAL_BLEED, C_UPPER_GI_BLEED, C_MELAENA };
    static const double w[4] = { 0.5, 0.2, 0.2, 0.1 };
    int inpatient = rng_bern(&c->r, 0.5);
    int32_t end;
    int64_t v = hospital_visit(c, inpatient ? C_VISIT_IP : C_VISIT_ER, day,
                               inpatient ? (int)rng_range(&c->r, 2, 7) : 0, &end);
    int64_t k = concept[rng_pick(&c->r, w, 4)];
    db_condition(c->w, c->pid, k, day, end, v, k == C_GI_BLEED ? C_GI_BLEED_ICD10 : 0);
    db_measurement(c->w, c->pid, C_HAEMOGLOBIN, day,
                   round1(clamp(rng_normal(&c->r, 9.6, 1.6), 5.0, 14.0)), C_UNIT_G_DL,
                   c->male ? 13.0 : 12.0, c->male ? 17.0 : 15.5, v);
    if (inpatient && rng_bern(&c->r, 0.35))
        db_procedure(c->w, c->pid, C_TRANSFUSION, day, v);
    if (rng_bern(&c->r, 0.35))
        db_condition(c->w, c->pid, C_ANAEMIA, day, -1, v, 0);
    if (rng_bern(&c->r, 0.2)) {
        db_condition(c->w, c->pid, C_PEPTIC_ULCER, day, -1, v, 0);
        c->ulcer = 1;
    }
    c->n_bleeds++;
    c->last_bleed = day;
}

static int64_t pick_nsaid(struct person *c)
{
    double coxib = c->p->coxib_share * (c->age_end >= 65 || c->ulcer ? 1.4 : 1.0);
    if (rng_bern(&c->r, coxib))
        return rng_bern(&c->r, 0.35) ? C_CELEBREX_200 : C_CELECOXIB_200;
    static const int64_t other[3] = { C_DICLOFENAC_75, C_IBUPROFEN_200, C_NAPROXEN_500 };
    static const double w[3] = { 0.4, 0.35, 0.25 };
    return other[rng_pick(&c->r, w, 3)];
}

/* GI bleed risk of one NSAID course, per 28 days of supply. */
static double nsaid_risk(int64_t concept)
{
    switch (concept) {
    case C_DICLOFENAC_75: return 0.015;
    case C_NAPROXEN_500:  return 0.013;
    case C_IBUPROFEN_200: return 0.008;
    default:              return 0.006;    /* celecoxib */
    }
}

static void nsaid_course(struct person *c, int64_t drug, int j)
{
    int days = drug == C_IBUPROFEN_200 ? (int)(7 * rng_range(&c->r, 1, 2))
                                       : (int)(14 * rng_range(&c->r, 1, 2));
    int32_t start = c->op_day[j];
    db_drug(c->w, c->pid, drug, start, min32(start + days - 1, c->oe), days, c->op_id[j]);
    double pr = nsaid_risk(drug) * days / 28.0 * exp(0.045 * (age_at(c, start) - 50))
              * (start >= c->warfarin_from ? 3.0 : 1.0) * (c->ulcer ? 2.0 : 1.0);
    if (c->n_bleeds < 2 && rng_bern(&c->r, pr)) {
        int32_t day = start + (int32_t)rng_range(&c->r, 3, days + 30);
        if (day <= c->oe)
            gi_bleed(c, day);
    }
}

static void nsaids(struct person *c)
{
    double years = (c->oe - c->os) / 365.25;
    int oa = c->dx[K_OA];
    int user = oa >= 0 ? rng_bern(&c->r, 0.7 * c->p->nsaid_mult)
                       : rng_bern(&c->r, 0.10 * c->p->nsaid_mult * years / 5.0);
    if (!user)
        return;
    int64_t drug = pick_nsaid(c);
    int n = 0;
    if (oa >= 0) {
        for (int j = oa; j < c->n_op && n < NSAID_CAP; j++)
            if (rng_bern(&c->r, 0.35)) {
                if (rng_bern(&c->r, 0.15))
                    drug = pick_nsaid(c);
                nsaid_course(c, drug, j);
                n++;
            }
    } else {
        int k = 1 + (int)rng_poisson(&c->r, 0.5 * years / 3.0, 4);
        for (int i = 0; i < k; i++)
            nsaid_course(c, drug, (int)rng_range(&c->r, 0, c->n_op - 1));
    }
}

static void background_bleed(struct person *c)
{
    double years = (c->oe - c->os) / 365.25;
    double hz = 0.0008 * exp(0.05 * (c->age_end - 50)) * (c->warfarin_from != NEVER ? 2.5 : 1.0);
    if (c->n_bleeds < 2 && rng_bern(&c->r, 1.0 - exp(-hz * years))) {
        int32_t lo = c->warfarin_from != NEVER && rng_bern(&c->r, 0.6) ? c->warfarin_from : c->os;
        gi_bleed(c, rand_day(c, lo, c->oe));
    }
}

/* ---- acute events ---- */

static void acute_events(struct person *c)
{
    struct synth_rng *r = &c->r;
    double years = (c->oe - c->os) / 365.25, a = c->age_end;
    int32_t end;

    double p_mi = fmin(0.5, (c->has[K_CAD] ? 0.02 : 0.0008 * exp(0.06 * (a - 50))
                                                 * (c->male ? 1.6 : 1.0)) * years);
    if (a >= 30 && rng_bern(r, p_mi * c->p->m_cad)) {
        int32_t day = rand_day(c, c->os, c->oe);
        int64_t v = hospital_visit(c, C_VISIT_IP, day, (int)rng_range(r, 3, 8), &end);
        db_condition(c->w, c->pid, C_MI, day, end, v, 0);
        db_procedure(c->w, c->pid, C_ECG, day, v);
        if (rng_bern(r, 0.55))
            db_procedure(c->w, c->pid, C_PCI, day, v);
        if (!c->has[K_CAD] && rng_bern(r, 0.5))
            db_condition(c->w, c->pid, C_CAD, day, -1, v, 0);
        int j = visit_from(c, end + 1);
        if (j >= 0) {
            prescribe(c, C_CLOPIDOGREL_75, j, 0.85, 6);
            if (rng_bern(r, 0.7))
                db_observation(c->w, c->pid, C_HISTORY_MI, c->op_day[j], c->op_id[j]);
        }
    }

    double p_cva = fmin(0.3, 0.0008 * exp(0.07 * (a - 50)) * years
                           * (c->has[K_AF] ? (c->warfarin_from != NEVER ? 1.5 : 4.0) : 1.0));
    if (a >= 30 && rng_bern(r, p_cva)) {
        int32_t day = rand_day(c, c->os, c->oe);
        int64_t v = hospital_visit(c, C_VISIT_IP, day, (int)rng_range(r, 4, 14), &end);
        db_condition(c->w, c->pid, C_CVA, day, end, v, 0);
    }

    double p_pn = fmin(0.5, 0.006 * years * (a >= 65 ? 4.0 : 1.0)
                          * (c->has[K_ASTHMA] ? 1.5 : 1.0) * (c->has[K_HF] ? 2.0 : 1.0));
    if (rng_bern(r, p_pn)) {
        int32_t day = rand_day(c, c->os, c->oe);
        int ip = rng_bern(r, 0.5);
        int64_t v = hospital_visit(c, ip ? C_VISIT_IP : C_VISIT_ER, day,
                                   ip ? (int)rng_range(r, 3, 10) : 0, &end);
        db_condition(c->w, c->pid, C_PNEUMONIA, day, end, v, 0);
        db_procedure(c->w, c->pid, C_CHEST_XRAY, day, v);
    }

    unsigned sprains = rng_poisson(r, 0.015 * years * (a < 40 ? 2.0 : 1.0), 3);
    for (unsigned i = 0; i < sprains; i++) {
        int32_t day = rand_day(c, c->os, c->oe);
        int64_t v = hospital_visit(c, C_VISIT_ER, day, 0, &end);
        db_condition(c->w, c->pid, C_ANKLE_SPRAIN, day, day, v, 0);
    }
}

/* ---- what happens at outpatient visits ---- */

static void visit_findings(struct person *c)
{
    struct synth_rng *r = &c->r;
    int diabetic = c->has[K_T2DM];
    for (int j = 0; j < c->n_op; j++) {
        int32_t d = c->op_day[j];
        int64_t v = c->op_id[j];
        double ag = age_at(c, d);

        if (rng_bern(r, 0.012 * (ag < 30 ? 2.0 : 1.0)))
            db_condition(c->w, c->pid, C_PHARYNGITIS, d, d + 7 > c->oe ? c->oe : d + 7, v, 0);
        if (rng_bern(r, 0.008))
            db_condition(c->w, c->pid, C_BRONCHITIS, d, d + 14 > c->oe ? c->oe : d + 14, v, 0);

        if (ag >= 16 && rng_bern(r, ag >= 40 ? 0.45 : 0.2)) {
            double sbp = 116 + 0.45 * fmax(0, ag - 30) + (c->male ? 4 : 0)
                       + rng_normal(r, 0, 11)
                       + (c->has[K_HTN] && d >= c->onset[K_HTN] ? 16 : 0)
                       - (d >= c->antihtn_from ? 11 : 0);
            db_measurement(c->w, c->pid, C_SBP, d, floor(clamp(sbp, 80, 230) + 0.5),
                           C_UNIT_MMHG, 90, 140, v);
        }
        if (ag >= 18 && rng_bern(r, 0.25))
            db_measurement(c->w, c->pid, C_BMI, d,
                           round1(clamp(c->bmi0 + rng_normal(r, 0, 0.5), 15, 60)),
                           C_UNIT_KG_M2, 18.5, 25, v);

        double p_a1c, mean, sd = 0.35;
        if (diabetic && c->dx[K_T2DM] >= 0 && j >= c->dx[K_T2DM]) {
            p_a1c = 0.55;
            mean = 7.7 - (d >= c->metformin_from ? 0.7 : 0.0);
            sd = 1.2;
        } else if (diabetic) {
            p_a1c = 0.08;
            mean = 6.1;
        } else {
            p_a1c = ag >= 40 ? 0.006 : 0.001;
            mean = 5.4;
        }
        if (ag >= 12 && rng_bern(r, p_a1c))
            db_measurement(c->w, c->pid, C_HBA1C, d, round1(clamp(rng_normal(r, mean, sd), 4.0, 15.0)),
                           C_UNIT_PERCENT, 4.0, 5.6, v);

        if (rng_bern(r, 0.12)) {
            double hb = rng_normal(r, c->male ? 14.5 : 13.2, 1.1)
                      - (c->n_bleeds && d >= c->last_bleed && d - c->last_bleed < 90 ? 2.5 : 0.0);
            db_measurement(c->w, c->pid, C_HAEMOGLOBIN, d, round1(clamp(hb, 5, 20)), C_UNIT_G_DL,
                           c->male ? 13.0 : 12.0, c->male ? 17.0 : 15.5, v);
        }
        if (ag >= 50 && rng_bern(r, 0.04))
            db_procedure(c->w, c->pid, C_ECG, d, v);
    }

    if (c->dx[K_AF] >= 0) {
        int j = c->dx[K_AF];
        db_procedure(c->w, c->pid, C_ECG, c->op_day[j], c->op_id[j]);
        if (rng_bern(r, 0.12))
            db_procedure(c->w, c->pid, C_CARDIOVERSION, c->op_day[j], c->op_id[j]);
    }
    if (!c->male && c->age_end >= 62 && rng_bern(r, 0.25)) {
        int j = visit_from(c, c->birth + (int32_t)(60 * 365.25));
        if (j >= 0) {
            j = (int)rng_range(r, j, c->n_op - 1);
            db_procedure(c->w, c->pid, C_BONE_DENSITY, c->op_day[j], c->op_id[j]);
        }
    }
    if (rng_bern(r, 0.05)) {
        int j = (int)rng_range(r, 0, c->n_op - 1);
        db_observation(c->w, c->pid, C_ALLERGY_PEANUT, c->op_day[j], c->op_id[j]);
    }
    if (rng_bern(r, 0.06)) {
        int j = (int)rng_range(r, 0, c->n_op - 1);
        db_observation(c->w, c->pid, C_ALLERGY_GRASS, c->op_day[j], c->op_id[j]);
    }
}

static void devices(struct person *c)
{
    struct synth_rng *r = &c->r;
    int32_t end;
    if (c->dx[K_AF] >= 0 && c->age_end >= 70 && rng_bern(r, 0.08)) {
        int32_t day = rand_day(c, c->op_day[c->dx[K_AF]], c->oe);
        int64_t v = hospital_visit(c, C_VISIT_IP, day, (int)rng_range(r, 1, 2), &end);
        db_device(c->w, c->pid, C_PACEMAKER, day, v);
        db_procedure(c->w, c->pid, C_ECG, day, v);
    }
    if (c->dx[K_HF] >= 0 && rng_bern(r, 0.05)) {
        int32_t day = rand_day(c, c->op_day[c->dx[K_HF]], c->oe);
        int64_t v = hospital_visit(c, C_VISIT_IP, day, (int)rng_range(r, 1, 3), &end);
        db_procedure(c->w, c->pid, C_ICD_INSERTION, day, v);
        db_device(c->w, c->pid, C_ICD_DEVICE, day, v);
    }
    if (c->dx[K_T2DM] >= 0 && rng_bern(r, 0.02)) {
        int j = (int)rng_range(r, c->dx[K_T2DM], c->n_op - 1);
        db_device(c->w, c->pid, C_INSULIN_PUMP, c->op_day[j], c->op_id[j]);
    }
}

int person_generate(struct synth_db *w, const struct synth_profile *p,
                    uint64_t seed, int64_t pid, int n_sites)
{
    struct person c;
    memset(&c, 0, sizeof c);
    c.w = w;
    c.p = p;
    c.pid = pid;
    rng_seed(&c.r, seed, (uint64_t)pid);

    demographics(&c, n_sites);
    chronic_flags(&c);
    int died = decide_death(&c);
    chronic_onsets(&c);
    c.bmi0 = clamp(rng_normal(&c.r, 26.5 + p->bmi_shift + (c.has[K_T2DM] ? 4.0 : 0.0), 4.2), 16, 55);
    db_obs_period(w, pid, c.os, c.oe);
    schedule_visits(&c);
    record_chronic(&c);
    chronic_drugs(&c);
    nsaids(&c);
    background_bleed(&c);
    acute_events(&c);
    visit_findings(&c);
    devices(&c);
    if (died)
        db_death(w, pid, c.oe, c.has[K_HF] ? C_HF : c.has[K_CAD] ? C_CAD : 0);
    return w->err;
}
