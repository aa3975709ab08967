/* coordinator/cli/output_surveil.h — printing `surveil` results (issue 6).
 *
 * Called from output.c. Shapes (docs/surveillance.md):
 *   json  — each site carries "surveil": [row...] and "pooled" carries
 *           "surveil": [row...]; a row is {"period", "arm" ("exposure" or
 *           "comparator"), "strata": {...}, "persons", "events",
 *           "person_days", "rate", "rate_lo", "rate_hi", "rate_ratio",
 *           "rr_lo", "rr_hi"} with null for anything withheld, plus each
 *           number's "*_status"; pooled rows add "lower_bound" and "sites".
 *   csv   — one line per (site or "pooled", row), RFC 4180, CRLF.
 *   table — the same, aligned, pooled first.
 */
#ifndef CLI_OUTPUT_SURVEIL_H
#define CLI_OUTPUT_SURVEIL_H

#include <stdbool.h>
#include <stdio.h>
#include <jansson.h>

#include "sdefed.pb-c.h"

/* JSON array of rows (new reference), NULL on ENOMEM. */
json_t *out_surveil_rows_json(Sdefed__SurveilRow *const *rows, size_t n, bool pooled);

/* CSV / table of a surveil result. Return 0, SDF_EIO or SDF_ENOMEM. */
int out_surveil_csv(FILE *f, const Sdefed__FederatedResult *r);
int out_surveil_table(FILE *f, const Sdefed__FederatedResult *r);

#endif
