/* coordinator/result_check.h — a site's answer checked before it is pooled.
 *
 * Pooling adds up what sites release, keyed by strata text. An answer that
 * is malformed — a stratum listed twice (it would weigh twice), two cells
 * whose strata give the same key, a value carried by a cell marked
 * suppressed, a negative count, a status no agent sends, or the payload of
 * another query kind — is not pooled, stored or shown: the coordinator
 * reports the site as `error` with the reason, and pools the other sites.
 * A genuine agent never sends such an answer, so this is a check against
 * a faulty or hostile site, not a second disclosure engine: the rules
 * that decide what a site releases stay in agent/disclosure.
 *
 * Pure: no I/O, no allocation beyond a sort of the keys.
 */
#ifndef COORD_RESULT_CHECK_H
#define COORD_RESULT_CHECK_H

#include <stddef.h>

#include "sdefed/err.h"
#include "sdefed.pb-c.h"

/* Check res (status SITE_OK) as the answer to a query of this kind.
 * Returns 0, SDF_EINVAL with a reason in why ("malformed result: ...",
 * naming fields and indexes only, never a value the site sent), or
 * SDF_ENOMEM. */
int result_check(Sdefed__QueryKind kind, const Sdefed__QueryResult *res, char *why,
                 size_t whylen) SDF_MUSTCHECK;

#endif
