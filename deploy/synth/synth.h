/* deploy/synth/synth.h — internal interface of sdefed-synth, the synthetic OMOP site generator.
 *
 * sdefed-synth writes a deterministic, realistic OMOP CDM v5.4 SQLite database
 * for one demo or test site. The program is split by purpose:
 *   synth_main.c     command line, temporary file and atomic rename, summary line
 *   synth_rng.c      the PRNG (splitmix64 + xoshiro256**), distributions, dates
 *   synth_profile.c  site profiles (age structure, sex ratio, case mix)
 *   synth_vocab.c    the vocabulary subset (concept, concept_ancestor, ...)
 *   synth_db.c       schema from the embedded DDL, prepared inserts, indexes
 *   synth_person.c   the clinical model: one person's whole record at a time
 * Nothing here is shared with the daemons; only libsdefed's error table is used.
 */
#ifndef SDEFED_SYNTH_H
#define SDEFED_SYNTH_H

#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

#include "sdefed/err.h"

/* ---- concept ids (see synth_vocab.c for names, codes and hierarchy) ---- */

/* Person attributes */
#define C_MALE              8507
#define C_FEMALE            8532
#define C_RACE_WHITE        8527
#define C_RACE_BLACK        8516
#define C_RACE_ASIAN        8515
#define C_NO_MATCH          0
#define C_ETH_HISPANIC      38003563
#define C_ETH_NOT_HISPANIC  38003564
/* Visits and provenance */
#define C_VISIT_IP          9201
#define C_VISIT_OP          9202
#define C_VISIT_ER          9203
#define C_TYPE_EHR          32817
#define C_POS_INPATIENT     8717
#define C_POS_OUTPATIENT    8756
#define C_POS_OFFICE        8940
#define C_CDM_V54           756265
/* Conditions (SNOMED) */
#define C_GI_BLEED          192671
#define C_RECTAL_BLEED      4212456     /* descendant of 192671 */
#define C_UPPER_GI_BLEED    2000000101  /* local, descendant of 192671 */
#define C_MELAENA           2000000102  /* local, descendant of 192671 */
#define C_GI_BLEED_ICD10    35208414    /* ICD10CM K92.2, source concept only */
#define C_T2DM              201826
#define C_HTN               320128
#define C_ASTHMA            317009
#define C_AF                313217
#define C_HF                316139
#define C_MI                4329847
#define C_CAD               317576
#define C_CVA               381316
#define C_OA                80180
#define C_ANAEMIA           439777
#define C_PNEUMONIA         255848
#define C_BRONCHITIS        260139
#define C_PHARYNGITIS       4112343
#define C_ANKLE_SPRAIN      81151
#define C_PEPTIC_ULCER      4027663
/* Drug ingredients (RxNorm) */
#define C_CELECOXIB         1118084
#define C_DICLOFENAC        1124300
#define C_IBUPROFEN         1177480
#define C_NAPROXEN          1115008
#define C_METFORMIN         1503297
#define C_WARFARIN          1310149
#define C_LISINOPRIL        1308216
#define C_ATORVASTATIN      1545958
#define C_AMLODIPINE        1332418
#define C_ASPIRIN           1112807
#define C_ALBUTEROL         1154343
#define C_CLOPIDOGREL       1322184
/* Drug products (descendants of the ingredients) */
#define C_CELEBREX_200      1118088     /* Branded Drug */
#define C_CELECOXIB_200     2000000201  /* local Clinical Drug */
#define C_DICLOFENAC_75     40162359
#define C_IBUPROFEN_200     19078461
#define C_NAPROXEN_500      19019273
#define C_METFORMIN_500     2000000202  /* local Clinical Drug */
#define C_METFORMIN_1000    2000000203  /* local Clinical Drug */
#define C_WARFARIN_5        40163554
#define C_LISINOPRIL_10     2000000204  /* local Clinical Drug */
#define C_LISINOPRIL_20     2000000205  /* local Clinical Drug */
#define C_ATORVASTATIN_80   1545959
#define C_AMLODIPINE_5      1332419
#define C_ASPIRIN_81        19059056
#define C_ALBUTEROL_MDI     1154615
#define C_CLOPIDOGREL_75    19075601
/* Measurements (LOINC) and units (UCUM) */
#define C_HBA1C             3004410
#define C_SBP               3004249
#define C_BMI               3038553
#define C_HAEMOGLOBIN       3000963
#define C_UNIT_PERCENT      8554
#define C_UNIT_MMHG         8876
#define C_UNIT_KG_M2        9531
#define C_UNIT_G_DL         8713
/* Procedures (SNOMED) */
#define C_ECG               4163951
#define C_CHEST_XRAY        4163872
#define C_PCI               4216130
#define C_TRANSFUSION       4108705
#define C_CARDIOVERSION     4078793
#define C_BONE_DENSITY      4195803
#define C_ICD_INSERTION     40492359
/* Observations (SNOMED) */
#define C_HISTORY_MI        4163874
#define C_ALLERGY_PEANUT    4240902
#define C_ALLERGY_GRASS     4302207
/* Devices (local) */
#define C_INSULIN_PUMP      2000000301
#define C_PACEMAKER         2000000302
#define C_ICD_DEVICE        2000000303

/* ---- PRNG and distributions (synth_rng.c) ---- */

struct synth_rng {
    uint64_t s[4];
};

/* Seed a generator for one (seed, stream) pair; different streams of the
 * same seed are independent. Deterministic on every platform. */
void rng_seed(struct synth_rng *r, uint64_t seed, uint64_t stream);
uint64_t rng_next(struct synth_rng *r);
/* Uniform in [0, 1). */
double rng_unif(struct synth_rng *r);
/* Uniform integer in [lo, hi]; returns lo when hi <= lo. */
int64_t rng_range(struct synth_rng *r, int64_t lo, int64_t hi);
/* 1 with probability p (p clamped to [0, 1]). */
int rng_bern(struct synth_rng *r, double p);
double rng_normal(struct synth_rng *r, double mean, double sd);
/* Poisson variate, capped at cap. */
unsigned rng_poisson(struct synth_rng *r, double lambda, unsigned cap);
/* Index in [0, n) drawn with the given non-negative weights (n >= 1). */
size_t rng_pick(struct synth_rng *r, const double *w, size_t n);

/* ---- dates as days since 1970-01-01 (synth_rng.c) ---- */

int32_t date_from_ymd(int y, int m, int d);
void date_to_ymd(int32_t days, int *y, int *m, int *d);
/* Writes "YYYY-MM-DD" and a NUL into out (11 bytes). Years 0..9999. */
void date_format(int32_t days, char out[11]);

/* ---- site profiles (synth_profile.c) ---- */

struct synth_age_mix {
    double weight, mean, sd;        /* age in years on 2020-01-01 */
};

struct synth_profile {
    const char *name;
    const char *description;
    double male_frac;
    struct synth_age_mix age[3];
    double race_w[4];               /* white, asian, black, unknown */
    double hispanic_frac;
    double m_t2dm, m_htn, m_asthma, m_af, m_cad, m_hf, m_oa;
    double nsaid_mult;              /* NSAID use relative to "mixed" */
    double coxib_share;             /* share of NSAID users on celecoxib */
    double visit_rate;              /* outpatient visits per person-year */
    double mort_mult;
    double bmi_shift;
};

/* The profile called name, or NULL. Static storage. */
const struct synth_profile *profile_find(const char *name);
/* The profile used when --profile is absent: a function of the seed. */
const struct synth_profile *profile_default(uint64_t seed);
/* Number of profiles and the i-th one (0 <= i < profile_count()). */
size_t profile_count(void);
const struct synth_profile *profile_at(size_t i);

/* ---- vocabulary subset (synth_vocab.c) ---- */

struct synth_concept {
    int64_t id;
    const char *name, *domain, *vocabulary, *concept_class;
    char standard;                  /* 'S' or 0 */
    const char *code;
};

struct synth_ancestor {
    int64_t ancestor, descendant;
    int min_levels, max_levels;
};

extern const struct synth_concept synth_concepts[];
extern const size_t synth_concepts_n;
extern const struct synth_ancestor synth_ancestors[];
extern const size_t synth_ancestors_n;

/* Insert concept, concept_ancestor (with a level-0 row for every standard
 * concept), vocabulary, domain and concept_class rows.
 * Returns 0 or SDF_EDB. */
int vocab_write(sqlite3 *db) SDF_MUSTCHECK;

/* ---- database writer (synth_db.c) ---- */

enum synth_stmt {
    ST_PERSON, ST_OBS_PERIOD, ST_VISIT, ST_CONDITION, ST_DRUG, ST_PROCEDURE,
    ST_MEASUREMENT, ST_OBSERVATION, ST_DEVICE, ST_DEATH, ST__COUNT
};

struct synth_db {
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    int64_t next_id[ST__COUNT];     /* next primary key per table */
    uint64_t rows[ST__COUNT];       /* rows written per table */
    int err;                        /* sticky: first failure, 0 if none */
    char datebuf[ST__COUNT][4][11]; /* bound date texts, see bind_date() */
};

/* Create path (which must not exist yet), the full CDM v5.4 schema from the
 * embedded DDL, and the prepared inserts; open one transaction.
 * On failure returns SDF_EDB with everything closed; path may be left behind
 * for the caller to remove. */
int db_open(struct synth_db *w, const char *path) SDF_MUSTCHECK;

/* Write the site-level rows: vocabulary, locations and care sites (n_sites
 * practices plus one hospital), cdm_source. Returns 0 or SDF_EDB. */
int db_write_site(struct synth_db *w, const struct synth_profile *p,
                  uint64_t seed, int n_sites) SDF_MUSTCHECK;

/* Commit, build indexes, ANALYZE and close. w->db is NULL afterwards, also
 * on failure. Returns 0 or SDF_EDB. */
int db_finish(struct synth_db *w) SDF_MUSTCHECK;

/* Close without committing (after a failure). Safe to call twice. */
void db_abort(struct synth_db *w);

/* Row writers. They never fail loudly: the first error is kept in w->err and
 * later calls do nothing, so the caller checks w->err once per person.
 * Dates are days since 1970-01-01; an end date < 0 is written as NULL.
 * Writers that create a row others may point to return its id. */
void db_person(struct synth_db *w, int64_t pid, int male, int32_t birth,
               int64_t race, int64_t ethnicity, int64_t care_site,
               int64_t location);
void db_obs_period(struct synth_db *w, int64_t pid, int32_t start, int32_t end);
int64_t db_visit(struct synth_db *w, int64_t pid, int64_t concept,
                 int32_t start, int32_t end, int64_t care_site);
void db_condition(struct synth_db *w, int64_t pid, int64_t concept,
                  int32_t start, int32_t end, int64_t visit,
                  int64_t source_concept);
void db_drug(struct synth_db *w, int64_t pid, int64_t concept, int32_t start,
             int32_t end, int days_supply, int64_t visit);
void db_procedure(struct synth_db *w, int64_t pid, int64_t concept,
                  int32_t date, int64_t visit);
void db_measurement(struct synth_db *w, int64_t pid, int64_t concept,
                    int32_t date, double value, int64_t unit,
                    double range_low, double range_high, int64_t visit);
void db_observation(struct synth_db *w, int64_t pid, int64_t concept,
                    int32_t date, int64_t visit);
void db_device(struct synth_db *w, int64_t pid, int64_t concept, int32_t start,
               int64_t visit);
void db_death(struct synth_db *w, int64_t pid, int32_t date, int64_t cause);

/* ---- the clinical model (synth_person.c) ---- */

/* Write person pid (1-based) of the site: demographics, one observation
 * period and every event inside it. Uses only its own PRNG stream
 * (seed, pid), so a person's record does not depend on any other person.
 * n_sites is the number of practices written by db_write_site.
 * Returns 0 or the writer's sticky error. */
int person_generate(struct synth_db *w, const struct synth_profile *p,
                    uint64_t seed, int64_t pid, int n_sites) SDF_MUSTCHECK;

#endif
