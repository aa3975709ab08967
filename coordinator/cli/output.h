/* coordinator/cli/output.h — render federated results for the analyst.
 *
 * Three formats for `sdefed query` / `sdefed results`:
 *   json  — the documented result schema (README "Result format"):
 *     {"query_id":"...", "kind":"count", "project":"demo",
 *      "sites":[{"site":"site-a","status":"ok","reason":"",
 *                "cells":[{"strata":{"sex":"female"},"value":120,"status":"rounded"}],
 *                "policy":{"min_cell":10,"rounding":5,"zero_is_disclosive":false},
 *                "rules_fired":["rounding"]}],
 *      "pooled":{"cells":[{"strata":{"sex":"female"},"value":245,
 *                          "status":"rounded","lower_bound":false}]}}
 *     A suppressed cell has "value": null. Catalog results carry
 *     "datasets":[...] per site instead of cells.
 *   csv   — one row per (site or "pooled", stratum):
 *     site,status,<stratifier columns...>,value,cell_status,lower_bound
 *   table — aligned plain text for a terminal: per-site and pooled tables;
 *     suppressed values print as "<min_cell" style markers ("suppressed").
 * Output goes to the FILE given; functions return 0 or SDF_EIO/SDF_ENOMEM.
 */
#ifndef CLI_OUTPUT_H
#define CLI_OUTPUT_H

#include <stdio.h>
#include <jansson.h>

#include "sdefed/err.h"
#include "sdefed.pb-c.h"

typedef enum { OUT_TABLE, OUT_JSON, OUT_CSV } out_format;

/* Parse "table|json|csv". Returns 0 or SDF_EINVAL. */
int out_format_parse(const char *s, out_format *out);

/* The JSON form of a federated result (new reference), NULL on ENOMEM. */
json_t *out_result_json(const Sdefed__FederatedResult *r);

int out_write_result(FILE *f, const Sdefed__FederatedResult *r, out_format fmt);

/* `sdefed sites`: site, online, last seen, datasets. */
json_t *out_sites_json(const Sdefed__SitesReply *r);
int out_write_sites(FILE *f, const Sdefed__SitesReply *r, out_format fmt);

#endif
