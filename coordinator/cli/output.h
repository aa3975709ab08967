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
 *     Top level also carries "requester" and "submitted" (ISO UTC or null);
 *     the catalog dataset object and the sites JSON are described at the top
 *     of output.c.
 *   csv   — one row per (site or "pooled", stratum), RFC 4180, CRLF:
 *     site,site_status,<stratifier columns...>,value,status,lower_bound
 *     (a site's reason is folded into site_status: "offline: not connected");
 *     catalog: site,site_status,dataset,type,omop_version,persons,persons_status,data_freshness
 *   table — aligned plain text for a terminal: per-site and pooled tables;
 *     suppressed values print as "<min_cell" style markers ("suppressed").
 * A value is printed only when its status is exact, rounded or noised;
 * anything else (suppressed, missing or unknown status) prints as null / an
 * empty field / "-", whatever number the message carries.
 * Output goes to the FILE given; functions return 0, SDF_EIO, SDF_ENOMEM,
 * SDF_EINVAL (NULL argument, unknown format) or SDF_EOVERFLOW (more than 64
 * stratum names).
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
