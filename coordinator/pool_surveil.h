/* coordinator/pool_surveil.h — pooling `surveil` results across sites (issue 6).
 *
 * Pure functions over protobuf messages: no I/O. See docs/surveillance.md.
 */
#ifndef COORD_POOL_SURVEIL_H
#define COORD_POOL_SURVEIL_H

#include "sdefed/err.h"
#include "sdefed.pb-c.h"

/* Fill r->pooled_surveil from the surveil rows of r's ok sites (any
 * earlier pooled rows are freed first): one row per arm x period x stratum
 * any ok site reported, in order of first appearance, with
 *   persons, events, person_days = sums of the released values (status
 *     exact, rounded when any site rounded, suppressed when no site
 *     released; lower_bound when some ok site withheld that number);
 *   rate and its exact Poisson 95% limits from the summed events and
 *     person-days of the sites that released BOTH for that row (sites =
 *     how many); withheld when none did; lower_bound as above;
 *   rate_ratio (exposure rows, with a comparator row of the same period and
 *     stratum): from the two pooled rates' numerators and denominators.
 * Freed by pool_surveil_free(). Returns 0 or SDF_ENOMEM (nothing pooled). */
int pool_surveil(Sdefed__FederatedResult *r) SDF_MUSTCHECK;

/* The key rows are matched by, "c|period|name=value|..." (c: 'e' for the
 * exposure arm, 'c' for the comparator), in a buffer of
 * POOL_SURVEIL_KEY_MAX bytes. Returns 0 or SDF_EOVERFLOW. */
#define POOL_SURVEIL_KEY_MAX 512
int pool_surveil_key(const Sdefed__SurveilRow *x, char *buf, size_t len);

/* Free r->pooled_surveil (rows built by pool_surveil). */
void pool_surveil_free(Sdefed__FederatedResult *r);

#endif
