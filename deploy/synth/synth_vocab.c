/* deploy/synth/synth_vocab.c — the OMOP vocabulary subset written into every synthetic site.
 *
 * The agent expands concept sets through concept_ancestor, so a synthetic
 * site must carry a vocabulary that behaves like the real one for every
 * concept it uses. Ids are real OMOP standard concepts (SNOMED, RxNorm,
 * LOINC, UCUM, Visit, Gender, Race, Ethnicity, Type Concept) wherever we are
 * sure of them; the few we could not confirm are local concepts with ids
 * >= 2000000000 in the vocabulary "SDEFED", which OMOP reserves for site-
 * local concepts, named as such. Hierarchy: GI haemorrhage 192671 has real
 * and local descendants; each drug product rolls up to its RxNorm ingredient
 * (levels as in the OHDSI vocabulary: ingredient -> clinical drug 2..3,
 * -> branded drug 3..4). Every standard concept also gets its level-0 row.
 */
#include "synth.h"

#define S 'S'

const struct synth_concept synth_concepts[] = {
    { 0, "No matching concept", "Metadata", "None", "Undefined", 0, "No matching concept" },
    /* person */
    { C_MALE, "MALE", "Gender", "Gender", "Gender", S, "M" },
    { C_FEMALE, "FEMALE", "Gender", "Gender", "Gender", S, "F" },
    { C_RACE_WHITE, "White", "Race", "Race", "Race", S, "5" },
    { C_RACE_BLACK, "Black or African American", "Race", "Race", "Race", S, "3" },
    { C_RACE_ASIAN, "Asian", "Race", "Race", "Race", S, "2" },
    { C_ETH_HISPANIC, "Hispanic or Latino", "Ethnicity", "Ethnicity", "Ethnicity", S, "Hispanic" },
    { C_ETH_NOT_HISPANIC, "Not Hispanic or Latino", "Ethnicity", "Ethnicity", "Ethnicity", S, "Not Hispanic" },
    /* visits, provenance, places, metadata */
    { C_VISIT_IP, "Inpatient Visit", "Visit", "Visit", "Visit", S, "IP" },
    { C_VISIT_OP, "Outpatient Visit", "Visit", "Visit", "Visit", S, "OP" },
    { C_VISIT_ER, "Emergency Room Visit", "Visit", "Visit", "Visit", S, "ER" },
    { C_TYPE_EHR, "EHR", "Type Concept", "Type Concept", "Type Concept", S, "EHR" },
    { C_POS_INPATIENT, "Inpatient Hospital", "Visit", "CMS Place of Service", "Visit", S, "21" },
    { C_POS_OUTPATIENT, "Outpatient Hospital", "Visit", "CMS Place of Service", "Visit", S, "22" },
    { C_POS_OFFICE, "Office", "Visit", "CMS Place of Service", "Visit", S, "11" },
    { C_CDM_V54, "OMOP CDM Version 5.4.0", "Metadata", "CDM", "CDM", S, "CDM v5.4.0" },
    /* conditions */
    { C_GI_BLEED, "Gastrointestinal hemorrhage", "Condition", "SNOMED", "Clinical Finding", S, "74474003" },
    { C_RECTAL_BLEED, "Painless rectal bleeding", "Condition", "SNOMED", "Clinical Finding", S, "414992000" },
    { C_UPPER_GI_BLEED, "Upper gastrointestinal haemorrhage (sdefed-synth local concept)", "Condition", "SDEFED", "Clinical Finding", S, "SDEFED-C101" },
    { C_MELAENA, "Melaena (sdefed-synth local concept)", "Condition", "SDEFED", "Clinical Finding", S, "SDEFED-C102" },
    { C_GI_BLEED_ICD10, "Gastrointestinal hemorrhage, unspecified", "Condition", "ICD10CM", "4-char billing code", 0, "K92.2" },
    { C_T2DM, "Type 2 diabetes mellitus", "Condition", "SNOMED", "Clinical Finding", S, "44054006" },
    { C_HTN, "Essential hypertension", "Condition", "SNOMED", "Clinical Finding", S, "59621000" },
    { C_ASTHMA, "Asthma", "Condition", "SNOMED", "Clinical Finding", S, "195967001" },
    { C_AF, "Atrial fibrillation", "Condition", "SNOMED", "Clinical Finding", S, "49436004" },
    { C_HF, "Heart failure", "Condition", "SNOMED", "Clinical Finding", S, "84114007" },
    { C_MI, "Myocardial infarction", "Condition", "SNOMED", "Clinical Finding", S, "22298006" },
    { C_CAD, "Coronary arteriosclerosis", "Condition", "SNOMED", "Clinical Finding", S, "53741008" },
    { C_CVA, "Cerebrovascular accident", "Condition", "SNOMED", "Clinical Finding", S, "230690007" },
    { C_OA, "Osteoarthritis", "Condition", "SNOMED", "Clinical Finding", S, "396275006" },
    { C_ANAEMIA, "Anemia", "Condition", "SNOMED", "Clinical Finding", S, "271737000" },
    { C_PNEUMONIA, "Pneumonia", "Condition", "SNOMED", "Clinical Finding", S, "233604007" },
    { C_BRONCHITIS, "Acute bronchitis", "Condition", "SNOMED", "Clinical Finding", S, "10509002" },
    { C_PHARYNGITIS, "Acute viral pharyngitis", "Condition", "SNOMED", "Clinical Finding", S, "195662009" },
    { C_ANKLE_SPRAIN, "Sprain of ankle", "Condition", "SNOMED", "Clinical Finding", S, "44465007" },
    { C_PEPTIC_ULCER, "Peptic ulcer", "Condition", "SNOMED", "Clinical Finding", S, "13200003" },
    /* drug ingredients */
    { C_CELECOXIB, "celecoxib", "Drug", "RxNorm", "Ingredient", S, "140587" },
    { C_DICLOFENAC, "Diclofenac", "Drug", "RxNorm", "Ingredient", S, "3355" },
    { C_IBUPROFEN, "Ibuprofen", "Drug", "RxNorm", "Ingredient", S, "5640" },
    { C_NAPROXEN, "Naproxen", "Drug", "RxNorm", "Ingredient", S, "7258" },
    { C_METFORMIN, "metformin", "Drug", "RxNorm", "Ingredient", S, "6809" },
    { C_WARFARIN, "Warfarin", "Drug", "RxNorm", "Ingredient", S, "11289" },
    { C_LISINOPRIL, "Lisinopril", "Drug", "RxNorm", "Ingredient", S, "29046" },
    { C_ATORVASTATIN, "atorvastatin", "Drug", "RxNorm", "Ingredient", S, "83367" },
    { C_AMLODIPINE, "Amlodipine", "Drug", "RxNorm", "Ingredient", S, "17767" },
    { C_ASPIRIN, "Aspirin", "Drug", "RxNorm", "Ingredient", S, "1191" },
    { C_ALBUTEROL, "Albuterol", "Drug", "RxNorm", "Ingredient", S, "435" },
    { C_CLOPIDOGREL, "clopidogrel", "Drug", "RxNorm", "Ingredient", S, "32968" },
    /* drug products */
    { C_CELEBREX_200, "celecoxib 200 MG Oral Capsule [Celebrex]", "Drug", "RxNorm", "Branded Drug", S, "213469" },
    { C_CELECOXIB_200, "celecoxib 200 MG Oral Capsule (sdefed-synth local concept)", "Drug", "SDEFED", "Clinical Drug", S, "SDEFED-D201" },
    { C_DICLOFENAC_75, "Diclofenac Sodium 75 MG Delayed Release Oral Tablet", "Drug", "RxNorm", "Clinical Drug", S, "855926" },
    { C_IBUPROFEN_200, "Ibuprofen 200 MG Oral Tablet", "Drug", "RxNorm", "Clinical Drug", S, "310965" },
    { C_NAPROXEN_500, "Naproxen 500 MG Oral Tablet", "Drug", "RxNorm", "Clinical Drug", S, "198014" },
    { C_METFORMIN_500, "metformin hydrochloride 500 MG Oral Tablet (sdefed-synth local concept)", "Drug", "SDEFED", "Clinical Drug", S, "SDEFED-D202" },
    { C_METFORMIN_1000, "metformin hydrochloride 1000 MG Oral Tablet (sdefed-synth local concept)", "Drug", "SDEFED", "Clinical Drug", S, "SDEFED-D203" },
    { C_WARFARIN_5, "Warfarin Sodium 5 MG Oral Tablet", "Drug", "RxNorm", "Clinical Drug", S, "855332" },
    { C_LISINOPRIL_10, "Lisinopril 10 MG Oral Tablet (sdefed-synth local concept)", "Drug", "SDEFED", "Clinical Drug", S, "SDEFED-D204" },
    { C_LISINOPRIL_20, "Lisinopril 20 MG Oral Tablet (sdefed-synth local concept)", "Drug", "SDEFED", "Clinical Drug", S, "SDEFED-D205" },
    { C_ATORVASTATIN_80, "atorvastatin 80 MG Oral Tablet", "Drug", "RxNorm", "Clinical Drug", S, "259255" },
    { C_AMLODIPINE_5, "Amlodipine 5 MG Oral Tablet", "Drug", "RxNorm", "Clinical Drug", S, "197361" },
    { C_ASPIRIN_81, "Aspirin 81 MG Oral Tablet", "Drug", "RxNorm", "Clinical Drug", S, "243670" },
    { C_ALBUTEROL_MDI, "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler", "Drug", "RxNorm", "Quant Clinical Drug", S, "745679" },
    { C_CLOPIDOGREL_75, "clopidogrel 75 MG Oral Tablet", "Drug", "RxNorm", "Clinical Drug", S, "309362" },
    /* measurements and units */
    { C_HBA1C, "Hemoglobin A1c/Hemoglobin.total in Blood", "Measurement", "LOINC", "Lab Test", S, "4548-4" },
    { C_SBP, "Systolic blood pressure", "Measurement", "LOINC", "Clinical Observation", S, "8480-6" },
    { C_BMI, "Body mass index (BMI) [Ratio]", "Measurement", "LOINC", "Clinical Observation", S, "39156-5" },
    { C_HAEMOGLOBIN, "Hemoglobin", "Measurement", "LOINC", "Lab Test", S, "718-7" },
    { C_UNIT_PERCENT, "percent", "Unit", "UCUM", "Unit", S, "%" },
    { C_UNIT_MMHG, "millimeter mercury column", "Unit", "UCUM", "Unit", S, "mm[Hg]" },
    { C_UNIT_KG_M2, "kilogram per square meter", "Unit", "UCUM", "Unit", S, "kg/m2" },
    { C_UNIT_G_DL, "gram per deciliter", "Unit", "UCUM", "Unit", S, "g/dL" },
    /* procedures */
    { C_ECG, "Electrocardiographic procedure", "Procedure", "SNOMED", "Procedure", S, "29303009" },
    { C_CHEST_XRAY, "Plain chest X-ray", "Procedure", "SNOMED", "Procedure", S, "399208008" },
    { C_PCI, "Percutaneous coronary intervention", "Procedure", "SNOMED", "Procedure", S, "415070008" },
    { C_TRANSFUSION, "Intravenous blood transfusion of packed cells", "Procedure", "SNOMED", "Procedure", S, "180207008" },
    { C_CARDIOVERSION, "Direct current cardioversion", "Procedure", "SNOMED", "Procedure", S, "180325003" },
    { C_BONE_DENSITY, "Bone density scan", "Procedure", "SNOMED", "Procedure", S, "312681000" },
    { C_ICD_INSERTION, "Insertion of biventricular implantable cardioverter defibrillator", "Procedure", "SNOMED", "Procedure", S, "447365002" },
    /* observations */
    { C_HISTORY_MI, "History of myocardial infarction", "Observation", "SNOMED", "Context-dependent", S, "399211009" },
    { C_ALLERGY_PEANUT, "Allergy to peanuts", "Observation", "SNOMED", "Clinical Finding", S, "91935009" },
    { C_ALLERGY_GRASS, "Allergy to grass pollen", "Observation", "SNOMED", "Clinical Finding", S, "418689008" },
    /* devices */
    { C_INSULIN_PUMP, "Insulin pump (sdefed-synth local concept)", "Device", "SDEFED", "Device", S, "SDEFED-V301" },
    { C_PACEMAKER, "Cardiac pacemaker (sdefed-synth local concept)", "Device", "SDEFED", "Device", S, "SDEFED-V302" },
    { C_ICD_DEVICE, "Implantable cardioverter defibrillator (sdefed-synth local concept)", "Device", "SDEFED", "Device", S, "SDEFED-V303" },
};
const size_t synth_concepts_n = sizeof synth_concepts / sizeof synth_concepts[0];

const struct synth_ancestor synth_ancestors[] = {
    /* GI haemorrhage and its descendants */
    { C_GI_BLEED, C_RECTAL_BLEED, 2, 3 },
    { C_GI_BLEED, C_UPPER_GI_BLEED, 1, 1 },
    { C_GI_BLEED, C_MELAENA, 2, 2 },
    { C_UPPER_GI_BLEED, C_MELAENA, 1, 1 },
    /* drug products roll up to their ingredients */
    { C_CELECOXIB, C_CELECOXIB_200, 2, 2 },
    { C_CELECOXIB, C_CELEBREX_200, 3, 4 },
    { C_CELECOXIB_200, C_CELEBREX_200, 1, 1 },
    { C_DICLOFENAC, C_DICLOFENAC_75, 2, 3 },
    { C_IBUPROFEN, C_IBUPROFEN_200, 2, 3 },
    { C_NAPROXEN, C_NAPROXEN_500, 2, 3 },
    { C_METFORMIN, C_METFORMIN_500, 2, 2 },
    { C_METFORMIN, C_METFORMIN_1000, 2, 2 },
    { C_WARFARIN, C_WARFARIN_5, 2, 3 },
    { C_LISINOPRIL, C_LISINOPRIL_10, 2, 2 },
    { C_LISINOPRIL, C_LISINOPRIL_20, 2, 2 },
    { C_ATORVASTATIN, C_ATORVASTATIN_80, 2, 3 },
    { C_AMLODIPINE, C_AMLODIPINE_5, 2, 3 },
    { C_ASPIRIN, C_ASPIRIN_81, 2, 3 },
    { C_ALBUTEROL, C_ALBUTEROL_MDI, 2, 3 },
    { C_CLOPIDOGREL, C_CLOPIDOGREL_75, 2, 3 },
};
const size_t synth_ancestors_n = sizeof synth_ancestors / sizeof synth_ancestors[0];

struct name_pair {
    const char *id, *name;
};

static const struct name_pair vocabularies[] = {
    { "None", "OMOP Standardized Vocabularies" },
    { "Gender", "OMOP Gender" },
    { "Race", "Race and Ethnicity Code Set (USBC)" },
    { "Ethnicity", "OMOP Ethnicity" },
    { "Visit", "OMOP Visit" },
    { "Type Concept", "OMOP Type Concept" },
    { "CMS Place of Service", "Place of Service Codes for Professional Claims (CMS)" },
    { "CDM", "OMOP Common Data Model" },
    { "SNOMED", "Systematic Nomenclature of Medicine - Clinical Terms (IHTSDO)" },
    { "ICD10CM", "International Classification of Diseases, Tenth Revision, Clinical Modification (NCHS)" },
    { "RxNorm", "RxNorm (NLM)" },
    { "LOINC", "Logical Observation Identifiers Names and Codes (Regenstrief Institute)" },
    { "UCUM", "Unified Code for Units of Measure (Regenstrief Institute)" },
    { "SDEFED", "sdefed-synth local concepts (ids >= 2000000000)" },
};

static const struct { const char *id; int concept_id; } domains[] = {
    { "Metadata", 7 }, { "Gender", 2 }, { "Race", 5 }, { "Ethnicity", 4 },
    { "Visit", 8 }, { "Type Concept", 58 }, { "Condition", 19 }, { "Drug", 13 },
    { "Measurement", 21 }, { "Unit", 16 }, { "Procedure", 10 },
    { "Observation", 27 }, { "Device", 17 },
};

static const char *const classes[] = {
    "Undefined", "Gender", "Race", "Ethnicity", "Visit", "Type Concept", "CDM",
    "Clinical Finding", "4-char billing code", "Ingredient", "Clinical Drug",
    "Branded Drug", "Quant Clinical Drug", "Lab Test", "Clinical Observation",
    "Unit", "Procedure", "Context-dependent", "Device",
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static int run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : SDF_EDB;
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    return sqlite3_prepare_v2(db, sql, -1, st, NULL) == SQLITE_OK ? 0 : SDF_EDB;
}

static int write_concepts(sqlite3 *db)
{
    sqlite3_stmt *c = NULL, *a = NULL;
    int rc = prepare(db, "INSERT INTO concept VALUES (?,?,?,?,?,?,?,'1970-01-01','2099-12-31',NULL)", &c);
    if (rc == 0)
        rc = prepare(db, "INSERT INTO concept_ancestor VALUES (?,?,?,?)", &a);
    for (size_t i = 0; rc == 0 && i < synth_concepts_n; i++) {
        const struct synth_concept *k = &synth_concepts[i];
        char std[2] = { k->standard, 0 };
        sqlite3_bind_int64(c, 1, k->id);
        sqlite3_bind_text(c, 2, k->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(c, 3, k->domain, -1, SQLITE_STATIC);
        sqlite3_bind_text(c, 4, k->vocabulary, -1, SQLITE_STATIC);
        sqlite3_bind_text(c, 5, k->concept_class, -1, SQLITE_STATIC);
        if (k->standard)
            sqlite3_bind_text(c, 6, std, 1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(c, 6);
        sqlite3_bind_text(c, 7, k->code, -1, SQLITE_STATIC);
        rc = run(c);
        if (rc == 0 && k->standard) {
            sqlite3_bind_int64(a, 1, k->id);
            sqlite3_bind_int64(a, 2, k->id);
            sqlite3_bind_int(a, 3, 0);
            sqlite3_bind_int(a, 4, 0);
            rc = run(a);
        }
    }
    for (size_t i = 0; rc == 0 && i < synth_ancestors_n; i++) {
        const struct synth_ancestor *x = &synth_ancestors[i];
        sqlite3_bind_int64(a, 1, x->ancestor);
        sqlite3_bind_int64(a, 2, x->descendant);
        sqlite3_bind_int(a, 3, x->min_levels);
        sqlite3_bind_int(a, 4, x->max_levels);
        rc = run(a);
    }
    sqlite3_finalize(c);
    sqlite3_finalize(a);
    return rc;
}

static int write_tables(sqlite3 *db)
{
    sqlite3_stmt *v = NULL, *d = NULL, *k = NULL;
    int rc = prepare(db, "INSERT INTO vocabulary VALUES (?,?,NULL,?,0)", &v);
    if (rc == 0)
        rc = prepare(db, "INSERT INTO domain VALUES (?,?,?)", &d);
    if (rc == 0)
        rc = prepare(db, "INSERT INTO concept_class VALUES (?,?,0)", &k);
    for (size_t i = 0; rc == 0 && i < N(vocabularies); i++) {
        sqlite3_bind_text(v, 1, vocabularies[i].id, -1, SQLITE_STATIC);
        sqlite3_bind_text(v, 2, vocabularies[i].name, -1, SQLITE_STATIC);
        sqlite3_bind_text(v, 3, i + 1 == N(vocabularies) ? "sdefed-synth 1" : "subset for sdefed-synth", -1, SQLITE_STATIC);
        rc = run(v);
    }
    for (size_t i = 0; rc == 0 && i < N(domains); i++) {
        sqlite3_bind_text(d, 1, domains[i].id, -1, SQLITE_STATIC);
        sqlite3_bind_text(d, 2, domains[i].id, -1, SQLITE_STATIC);
        sqlite3_bind_int(d, 3, domains[i].concept_id);
        rc = run(d);
    }
    for (size_t i = 0; rc == 0 && i < N(classes); i++) {
        sqlite3_bind_text(k, 1, classes[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(k, 2, classes[i], -1, SQLITE_STATIC);
        rc = run(k);
    }
    sqlite3_finalize(v);
    sqlite3_finalize(d);
    sqlite3_finalize(k);
    return rc;
}

int vocab_write(sqlite3 *db)
{
    int rc = write_concepts(db);
    return rc ? rc : write_tables(db);
}
