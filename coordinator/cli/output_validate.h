/* coordinator/cli/output_validate.h — printing `validate` results (issue 5).
 *
 * Called from output.c. Shapes (docs/validate.md):
 *   json  — each site carries "validations": [group...]; "pooled" carries
 *           "validations": [pooled group...]. A group is {"strata": {...},
 *           "released": bool, "withheld_reason", "n", "events", "auc",
 *           "auc_se", "auc_ci": [lo, hi], "brier", "oe_ratio", "citl",
 *           "calibration_slope", "calibration_intercept", "thresholds":
 *           [{"threshold", "tp", "fp", "tn", "fn", "sensitivity": [est, lo,
 *           hi], "specificity", "ppv", "npv", "withheld_reason"}], "bins":
 *           [{"lo", "hi", "n", "events", "mean_predicted", "observed"}]};
 *           anything withheld is null. A pooled group has "sites", "auc",
 *           "auc_ci", "prediction_interval", "tau2", "i2", "q", "partial",
 *           "thresholds" and "bins". Issue 5 items 3/4: a site group also
 *           has "bin_mode", "roc": [[fpr, tpr, threshold]...], "histogram":
 *           [{"lo", "hi", "events", "nonevents"}] and, comparing versions,
 *           "comparison": {"version_a", "version_b", "released",
 *           "withheld_reason", "auc_a", "auc_b", "diff", "diff_se",
 *           "diff_ci", "p_value"}; a pooled group "roc", "roc_sites",
 *           "roc_auc", "roc_auc_max_error", "bins_note", "comparison"
 *           (with "sites", or null).
 *   csv   — one line per (site or "pooled", group): the headline metrics,
 *           then roc_auc, roc_auc_max_error, auc_diff, auc_diff_lo,
 *           auc_diff_hi, auc_diff_p.
 *   table — the same, aligned, with each group's thresholds underneath (and
 *           the pooled ROC AUC and the comparison).
 */
#ifndef CLI_OUTPUT_VALIDATE_H
#define CLI_OUTPUT_VALIDATE_H

#include <stdio.h>
#include <jansson.h>

#include "sdefed.pb-c.h"

/* JSON arrays (new references), NULL on ENOMEM. */
json_t *out_validations_json(Sdefed__Validation *const *v, size_t n);
json_t *out_pooled_validations_json(Sdefed__PooledValidation *const *v, size_t n);

/* CSV / table of a validate result. Return 0, SDF_EIO or SDF_ENOMEM. */
int out_validate_csv(FILE *f, const Sdefed__FederatedResult *r);
int out_validate_table(FILE *f, const Sdefed__FederatedResult *r);

#endif
