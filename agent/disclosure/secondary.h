/* agent/disclosure/secondary.h — stratified tables with margins:
 * primary and complementary (secondary) suppression.
 *
 * Pure code, part of the disclosure engine. A count stratified by up to
 * DISC_TABLE_MAX_DIMS stratifiers is released together with its margins
 * (the total over each stratifier, for every combination of the others,
 * and the grand total), so an analyst never needs a second query to get
 * totals. Margins are computed from the TRUE counts and then pass the
 * count rules like any cell (so a margin is itself suppressed when small,
 * rounded otherwise): they are NOT the sum of the rounded cells, because
 * with a suppressed cell such a sum would give the suppressed cell's
 * rounded value away by subtraction.
 *
 * Every margin is an equation (total = sum of its cells along one
 * stratifier). After primary suppression, disc_table_control() suppresses
 * further cells until no suppressed cell is determined by the released
 * values and these equations:
 *   1. line rule, to a fixpoint: an equation with exactly one suppressed
 *      member gets a second one — the non-suppressed member with the
 *      smallest true count (non-zero counts preferred; ties: lowest index);
 *   2. exact check: Gauss-Jordan elimination of the equations restricted
 *      to the suppressed cells (released values, rounded or not, treated as
 *      exact — the most an attacker could know); a suppressed cell is
 *      determined iff its unit vector is in the row space, i.e. a reduced
 *      row has it as its only non-zero. For such a cell the smallest
 *      candidate of an equation through it is suppressed too; back to 1.
 * Elimination runs modulo two 61-bit primes; a cell counts as determined
 * if it is determined modulo EITHER prime. A cell determined over the
 * rationals is determined modulo p unless p divides every denominator of
 * its solution — for both primes at once, which does not happen for the
 * table sizes allowed here; tests/unit/agent/test_secondary.c checks the
 * result independently with exact rational arithmetic.
 *
 * Not covered (deploy/disclosure.md): interval (bounds) attacks that use
 * non-negativity of counts, and tables from DIFFERENT results.
 */
#ifndef AGENT_DISCLOSURE_SECONDARY_H
#define AGENT_DISCLOSURE_SECONDARY_H

#include <stddef.h>
#include <stdint.h>

#include "disclosure/disclosure.h"

#define DISC_TABLE_MAX_DIMS 3
/* Cap on cells including margins (prod(levels[d] + 1)). */
#define DISC_TABLE_MAX_CELLS 1024

/* Number of cells of the extended table (cells + margins) for these
 * levels, or 0 if n_dims > DISC_TABLE_MAX_DIMS, a level count is 0, or
 * the product exceeds DISC_TABLE_MAX_CELLS. */
size_t disc_table_size(size_t n_dims, const size_t *levels);

/* Control a stratified table with margins.
 *
 * counts: the true inner counts, row-major over levels[0..n_dims) (first
 *   stratifier outermost), prod(levels) entries, each >= 0.
 * out: disc_table_size() entries, row-major over the EXTENDED grid where
 *   coordinate levels[d] in dimension d means "total over stratifier d".
 *   Each gets its released value and status; secondarily suppressed cells
 *   are DISC_SUPPRESSED like primary ones (value 0).
 * truth_out (may be NULL): disc_table_size() entries, the true counts of
 *   the extended grid (for tests and for the caller's own checks).
 * rules: DISC_RULE_* bits OR-ed in (DISC_RULE_SECONDARY when a secondary
 *   suppression happened).
 *
 * Returns 0, SDF_EINVAL (bad shape, too many cells), SDF_EOVERFLOW (a
 * total overflows) or SDF_ENOMEM. On error out is all suppressed. */
int disc_table_control(const disc_policy *p, size_t n_dims, const size_t *levels,
                       const int64_t *counts, disc_value *out, int64_t *truth_out,
                       unsigned *rules) SDF_MUSTCHECK;

/* The linear-algebra check on its own: given the extended table shape and
 * a suppression mask (1 = value withheld), return the number of withheld
 * cells that are determined by the released ones and the margin
 * equations (0 = the pattern is safe), and write the first such index to
 * *first (may be NULL). Returns SDF_EINVAL / SDF_ENOMEM on error. */
int disc_table_determined(size_t n_dims, const size_t *levels, const unsigned char *withheld,
                          size_t *first) SDF_MUSTCHECK;

#endif
