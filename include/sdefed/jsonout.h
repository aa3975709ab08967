/* include/sdefed/jsonout.h — small helpers for building JSON with jansson.
 *
 * Used wherever sdefed writes JSON (canonical specs, results, status).
 * The setters always consume the value (jansson's *_new semantics), so a
 * chain of them never leaks, and report failure as false.
 */
#ifndef SDEFED_JSONOUT_H
#define SDEFED_JSONOUT_H

#include <stdbool.h>
#include <jansson.h>

/* A JSON string for s (NULL reads as ""). Bytes that are not valid UTF-8
 * (jansson refuses them; only possible from a peer's bad input) come out
 * as '?'. NULL only on ENOMEM. */
json_t *jo_str(const char *s);

/* o[k] = v, consuming v. False when v is NULL or on ENOMEM. */
bool jo_put(json_t *o, const char *k, json_t *v);

/* Append v to array a, consuming v. False when v is NULL or on ENOMEM. */
bool jo_push(json_t *a, json_t *v);

#endif
