/* include/sdefed/spec.h — JSON query specs <-> protobuf QuerySpec.
 *
 * The analyst writes a JSON spec; the CLI parses and validates it here and
 * sends the structured QuerySpec. The agent validates the QuerySpec again
 * with spec_validate() (it trusts nothing the coordinator sends) and then
 * checks it against its own datasets. Error messages name the offending
 * field ("cohort.all[1].domain: unknown domain \"drugs\"") and never echo
 * more than a short, sanitised excerpt of the input.
 *
 * JSON form (issue 2; the full cohort language of issue 3 and the summary
 * kind are described in docs/cohort-language.md):
 *   {"kind": "catalog", "project": "demo"}
 *   {"kind": "count", "project": "demo", "dataset": "omop",
 *    "cohort": {"all": [{"domain": "drug", "concepts": [1118084],
 *                        "descendants": true}]},
 *    "by": ["sex", "age_band"],
 *    "policy": {"min_cell": 20, "rounding": 10}}          (optional, stricter only)
 */
#ifndef SDEFED_SPEC_H
#define SDEFED_SPEC_H

#include <stddef.h>
#include <jansson.h>

#include "sdefed/err.h"
#include "sdefed.pb-c.h"

/* Limits enforced by spec_validate (and so by both CLI and agent). */
#define SPEC_MAX_CRITERIA 64
#define SPEC_MAX_CONCEPTS 10000      /* per criterion */
#define SPEC_MAX_STRATIFIERS 3
#define SPEC_MAX_NAME 64             /* project, dataset names */
#define SPEC_MAX_JSON ((size_t)1 << 20)
/* Cohort language (issue 3; docs/cohort-language.md). SPEC_MAX_CRITERIA
 * bounds the criteria of the whole expression (the index not counted). */
#define SPEC_MAX_NODES 128           /* criteria + all/any/not groups */
#define SPEC_MAX_DEPTH 12            /* group nesting below the cohort */
#define SPEC_MAX_JSON_DEPTH 64       /* brackets, checked before jansson parses */
#define SPEC_MAX_UNITS 100           /* unit concept ids per criterion */
#define SPEC_MAX_CLAMP 1e12          /* |summary.clamp.min|, |max| */
#define SPEC_MAX_DAYS 36500          /* |window|, observation days */
#define SPEC_MAX_AGE 150
#define SPEC_MAX_AGE_BAND_WIDTH 50
/* validate kind (issue 5; docs/validate.md) */
#define SPEC_MAX_THRESHOLDS 20
#define SPEC_MAX_BINS 50
/* Fine score-histogram bins (issue 5 items 3/4): validate.histogram_bins. */
#define SPEC_MIN_HISTOGRAM_BINS 10
#define SPEC_MAX_HISTOGRAM_BINS 1000
#define SPEC_DEFAULT_HISTOGRAM_BINS 100
/* validate: a model shipped as a scorecard (issue 5 item 2) */
#define SPEC_SCORECARD_MAX_TERMS 50
#define SPEC_SCORECARD_MAX_COEF 1e6   /* |coef|, |intercept|, |missing| */
/* Surveillance (issue 6; docs/surveillance.md): from..to spans at most
 * this many periods (months, quarters or years). */
#define SPEC_SURVEIL_MAX_PERIODS 600

/* Parse a JSON spec and validate it. On success returns 0 and sets *out to a
 * spec that the caller frees with sdefed__query_spec__free_unpacked(*out,
 * NULL). On failure returns SDF_ESPEC (or SDF_ENOMEM) and writes a one-line
 * reason naming the field into err; *out is NULL. Unknown fields, wrong
 * types, unknown kinds/domains/stratifiers, empty concept lists, negative or
 * zero concept ids, duplicate stratifiers and oversize input are refused. */
int spec_parse_json(const char *text, size_t len, Sdefed__QuerySpec **out,
                    char *err, size_t errlen) SDF_MUSTCHECK;

/* Structural validation of a QuerySpec however it arrived (same rules as
 * spec_parse_json, minus JSON syntax). Returns 0 or SDF_ESPEC with reason. */
int spec_validate(const Sdefed__QuerySpec *s, char *err, size_t errlen) SDF_MUSTCHECK;

/* The canonical JSON form of a spec (new reference), NULL on ENOMEM:
 * fixed field order, defaults omitted, concept lists sorted and
 * de-duplicated (so reordering concepts never makes a "different" query).
 * For any spec produced by spec_parse_json, parsing this form again gives
 * an identical spec. */
json_t *spec_to_json(const Sdefed__QuerySpec *s);

/* Names used in JSON. Return "" for unknown values. */
const char *spec_kind_name(Sdefed__QueryKind k);
const char *spec_domain_name(Sdefed__Domain d);
const char *spec_stratifier_name(Sdefed__Stratifier s);
const char *spec_cell_status_name(Sdefed__CellStatus s);   /* exact|rounded|suppressed|noised */
const char *spec_site_status_name(Sdefed__SiteStatus s);   /* ok|offline|timeout|refused|error */

#endif
