/* coordinator/cli/report.h — `sdefed report`: a self-contained HTML report.
 *
 *   sdefed [--config FILE] report QUERY_ID -o FILE [--spec SPEC.json] [--force]
 *   sdefed [--config FILE] report --monitor ID -o FILE [--force]
 *
 * One HTML file with inline CSS and inline SVG figures: no external asset,
 * no script (a Content-Security-Policy meta tag forbids both), no URL. A
 * stored query result is fetched as `sdefed results` does and rendered by
 * kind (validate: tables, forest plot, ROC and calibration curves,
 * subgroups, model comparison; surveil: rate time series per arm and
 * stratum; other kinds: the table output); a monitor is fetched as
 * `sdefed monitor show` does (observed vs expected events, the statistic
 * against its threshold with the alerts marked, and drift bands when the
 * monitor JSON carries them). Anything a site withheld is shown as
 * "withheld: <reason>", never as a number. Every string from a result is
 * HTML-escaped. See docs/validate.md and docs/surveillance.md ("Reports").
 *
 * `-o -` writes to stdout. An existing file is not overwritten unless
 * --force is given (the file is created with O_EXCL otherwise).
 */
#ifndef CLI_REPORT_H
#define CLI_REPORT_H

#include <stdbool.h>
#include <jansson.h>

#include "cli/svg.h"
#include "sdefed/err.h"
#include "sdefed.pb-c.h"

/* The largest report written (bytes); beyond it rendering fails with
 * SDF_EOVERFLOW. */
#define REPORT_MAX_BYTES ((size_t)64 << 20)

/* True when argv's command word is `report`. */
bool report_is_command(int argc, char **argv);

/* Run `sdefed report ...`; returns the exit status (0 ok, 1 error, 2 usage). */
int report_main(int argc, char **argv);

/* Render the whole HTML document of a federated result into b (appended).
 * spec: the canonical spec JSON to show, or NULL (a stored result does not
 * carry its spec). Returns 0, or b->err (SDF_ENOMEM / SDF_EOVERFLOW), or
 * SDF_EINVAL for a NULL argument. Reads r only; b owns what it holds. */
int report_render_result(svg_buf *b, const Sdefed__FederatedResult *r, const json_t *spec)
    SDF_MUSTCHECK;

/* Render the whole HTML document of a monitor from its `monitor show`
 * JSON object (docs/surveillance.md). Returns as report_render_result;
 * SDF_EINVAL when m is not an object. */
int report_render_monitor(svg_buf *b, const json_t *m) SDF_MUSTCHECK;

/* ---- shared by report*.c (not for other callers) ---- */

/* Body sections by kind; each appends to b and leaves errors in b->err. */
void report_validate_section(svg_buf *b, const Sdefed__FederatedResult *r);
void report_surveil_section(svg_buf *b, const Sdefed__FederatedResult *r);
void report_monitor_section(svg_buf *b, const json_t *m);

/* "sex=female, region=north" (escaped), or `none` when there are no strata. */
void report_strata(svg_buf *b, Sdefed__Stratum *const *s, size_t n, const char *none);
/* The same, unescaped, into out (truncated to n bytes) for keys/labels that
 * will be escaped later by svg_buf_text. */
void report_strata_key(char *out, size_t n, Sdefed__Stratum *const *s, size_t ns);

/* <td class="withheld">withheld: REASON</td> with colspan (reason escaped;
 * an empty reason reads "withheld"). */
void report_withheld_cell(svg_buf *b, int colspan, const char *reason);

/* True when a number with this status was released (exact, rounded or
 * noised); anything else is withheld, whatever value it carries. */
bool report_released(Sdefed__CellStatus st);

/* Pretty JSON of j, escaped, in <pre>. */
void report_json_pre(svg_buf *b, const json_t *j);

#endif
