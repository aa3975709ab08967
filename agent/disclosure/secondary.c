/* agent/disclosure/secondary.c — margins and complementary suppression for
 * stratified tables; see secondary.h for the algorithm and its limits.
 *
 * The extended grid has levels[d] + 1 positions per dimension, the last one
 * being the total over that dimension. Every extended cell with a "total"
 * coordinate in dimension d gives one equation:
 *     cell = sum over i < levels[d] of (cell with coordinate d set to i).
 * Pure code: no I/O, no globals.
 */
#include "disclosure/secondary.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Two 61-bit primes: the Mersenne prime 2^61 - 1 and the largest prime
 * below it, 2^61 - 31 (checked by Miller-Rabin with the first 12 primes). */
static const uint64_t PRIMES[2] = { 2305843009213693951ULL, 2305843009213693921ULL };

typedef struct shape {
    size_t n_dims;
    size_t levels[DISC_TABLE_MAX_DIMS];
    size_t ext[DISC_TABLE_MAX_DIMS];
    size_t stride[DISC_TABLE_MAX_DIMS];   /* of the extended grid */
    size_t n_ext;
} shape;

size_t disc_table_size(size_t n_dims, const size_t *levels)
{
    if (n_dims > DISC_TABLE_MAX_DIMS)
        return 0;
    size_t n = 1;
    for (size_t d = 0; d < n_dims; d++) {
        if (levels[d] == 0 || levels[d] >= DISC_TABLE_MAX_CELLS)
            return 0;
        n *= levels[d] + 1;
        if (n > DISC_TABLE_MAX_CELLS)
            return 0;
    }
    return n;
}

static int shape_init(shape *s, size_t n_dims, const size_t *levels)
{
    memset(s, 0, sizeof *s);
    s->n_ext = disc_table_size(n_dims, levels);
    if (s->n_ext == 0)
        return SDF_EINVAL;
    s->n_dims = n_dims;
    for (size_t d = 0; d < n_dims; d++) {
        s->levels[d] = levels[d];
        s->ext[d] = levels[d] + 1;
    }
    size_t st = 1;
    for (size_t d = n_dims; d-- > 0;) {
        s->stride[d] = st;
        st *= s->ext[d];
    }
    return 0;
}

static size_t coord(const shape *s, size_t idx, size_t d)
{
    return (idx / s->stride[d]) % s->ext[d];
}

/* ---- equations ---------------------------------------------------------- */

/* Equation e is identified by (parent cell, dimension): parent has the
 * total coordinate in that dimension. Members: parent, then its children. */
typedef struct eqn {
    size_t parent;
    size_t dim;
} eqn;

static size_t eqn_list(const shape *s, eqn *out)
{
    size_t n = 0;
    for (size_t c = 0; c < s->n_ext; c++)
        for (size_t d = 0; d < s->n_dims; d++)
            if (coord(s, c, d) == s->levels[d]) {
                out[n].parent = c;
                out[n].dim = d;
                n++;
            }
    return n;
}

static size_t eqn_child(const shape *s, const eqn *e, size_t i)
{
    return e->parent - s->levels[e->dim] * s->stride[e->dim] + i * s->stride[e->dim];
}

/* ---- modular Gauss-Jordan ----------------------------------------------- */

static uint64_t mulmod(uint64_t a, uint64_t b, uint64_t p)
{
    return (uint64_t)(((unsigned __int128)a * b) % p);
}

static uint64_t powmod(uint64_t a, uint64_t e, uint64_t p)
{
    uint64_t r = 1;
    while (e) {
        if (e & 1)
            r = mulmod(r, a, p);
        a = mulmod(a, a, p);
        e >>= 1;
    }
    return r;
}

/* Mark in det[] (OR) every unknown that is determined modulo p. M is m x u
 * (row-major, entries already reduced mod p) and is destroyed. */
static void rref_mark(uint64_t *M, size_t m, size_t u, uint64_t p, unsigned char *det)
{
    size_t row = 0;
    for (size_t col = 0; col < u && row < m; col++) {
        size_t piv = row;
        while (piv < m && M[piv * u + col] == 0)
            piv++;
        if (piv == m)
            continue;
        if (piv != row)
            for (size_t k = 0; k < u; k++) {
                uint64_t t = M[row * u + k];
                M[row * u + k] = M[piv * u + k];
                M[piv * u + k] = t;
            }
        uint64_t inv = powmod(M[row * u + col], p - 2, p);
        for (size_t k = col; k < u; k++)
            M[row * u + k] = mulmod(M[row * u + k], inv, p);
        for (size_t r = 0; r < m; r++) {
            if (r == row || M[r * u + col] == 0)
                continue;
            uint64_t f = M[r * u + col];
            for (size_t k = col; k < u; k++) {
                uint64_t sub = mulmod(f, M[row * u + k], p);
                uint64_t v = M[r * u + k];
                M[r * u + k] = v >= sub ? v - sub : v + p - sub;
            }
        }
        row++;
    }
    for (size_t r = 0; r < row; r++) {
        size_t nz = 0, at = 0;
        for (size_t k = 0; k < u && nz < 2; k++)
            if (M[r * u + k]) {
                nz++;
                at = k;
            }
        if (nz == 1)
            det[at] = 1;
    }
}

/* det_cell[c] = 1 for each withheld cell c determined by the rest. Returns
 * the number of such cells or SDF_ENOMEM. */
static int determined(const shape *s, const eqn *eqs, size_t n_eqs,
                      const unsigned char *withheld, unsigned char *det_cell)
{
    size_t u = 0;
    size_t *col_of = malloc(s->n_ext * sizeof *col_of);
    size_t *cell_of = malloc(s->n_ext * sizeof *cell_of);
    size_t *rows = malloc((n_eqs ? n_eqs : 1) * sizeof *rows);
    if (!col_of || !cell_of || !rows) {
        free(col_of);
        free(cell_of);
        free(rows);
        return SDF_ENOMEM;
    }
    memset(det_cell, 0, s->n_ext);
    for (size_t c = 0; c < s->n_ext; c++) {
        col_of[c] = SIZE_MAX;
        if (withheld[c]) {
            col_of[c] = u;
            cell_of[u++] = c;
        }
    }
    /* Only equations that involve an unknown constrain the unknowns. */
    size_t m = 0;
    for (size_t e = 0; e < n_eqs; e++) {
        bool any = withheld[eqs[e].parent];
        for (size_t i = 0; !any && i < s->levels[eqs[e].dim]; i++)
            any = withheld[eqn_child(s, &eqs[e], i)];
        if (any)
            rows[m++] = e;
    }
    int found = 0;
    if (u == 0 || m == 0)
        goto out;
    uint64_t *M = malloc(m * u * sizeof *M);
    unsigned char *det = calloc(u, 1);
    if (!M || !det) {
        free(M);
        free(det);
        found = SDF_ENOMEM;
        goto out;
    }
    for (size_t pi = 0; pi < 2; pi++) {
        uint64_t p = PRIMES[pi];
        memset(M, 0, m * u * sizeof *M);
        for (size_t r = 0; r < m; r++) {
            const eqn *e = &eqs[rows[r]];
            if (withheld[e->parent])
                M[r * u + col_of[e->parent]] = p - 1;   /* -1 */
            for (size_t i = 0; i < s->levels[e->dim]; i++) {
                size_t ch = eqn_child(s, e, i);
                if (withheld[ch])
                    M[r * u + col_of[ch]] = 1;
            }
        }
        rref_mark(M, m, u, p, det);
    }
    for (size_t k = 0; k < u; k++)
        if (det[k]) {
            det_cell[cell_of[k]] = 1;
            found++;
        }
    free(M);
    free(det);
out:
    free(col_of);
    free(cell_of);
    free(rows);
    return found;
}

int disc_table_determined(size_t n_dims, const size_t *levels, const unsigned char *withheld,
                          size_t *first)
{
    shape s;
    if (shape_init(&s, n_dims, levels))
        return SDF_EINVAL;
    eqn *eqs = malloc(s.n_ext * (n_dims ? n_dims : 1) * sizeof *eqs);
    unsigned char *det = malloc(s.n_ext);
    if (!eqs || !det) {
        free(eqs);
        free(det);
        return SDF_ENOMEM;
    }
    size_t n_eqs = eqn_list(&s, eqs);
    int n = determined(&s, eqs, n_eqs, withheld, det);
    if (n > 0 && first)
        for (size_t c = 0; c < s.n_ext; c++)
            if (det[c]) {
                *first = c;
                break;
            }
    free(eqs);
    free(det);
    return n;
}

/* ---- the control loop ---------------------------------------------------- */

/* Is a better complement than b (smaller non-zero true count first, zeros
 * last, then lower index)? */
static bool better(const int64_t *truth, size_t a, size_t b)
{
    bool za = truth[a] == 0, zb = truth[b] == 0;
    if (za != zb)
        return zb;
    if (truth[a] != truth[b])
        return truth[a] < truth[b];
    return a < b;
}

/* The best non-withheld member of equation e, or SIZE_MAX. */
static size_t eqn_candidate(const shape *s, const eqn *e, const unsigned char *withheld,
                            const int64_t *truth)
{
    size_t best = SIZE_MAX;
    if (!withheld[e->parent])
        best = e->parent;
    for (size_t i = 0; i < s->levels[e->dim]; i++) {
        size_t ch = eqn_child(s, e, i);
        if (!withheld[ch] && (best == SIZE_MAX || better(truth, ch, best)))
            best = ch;
    }
    return best;
}

static size_t eqn_withheld(const shape *s, const eqn *e, const unsigned char *withheld)
{
    size_t n = withheld[e->parent] ? 1 : 0;
    for (size_t i = 0; i < s->levels[e->dim]; i++)
        n += withheld[eqn_child(s, e, i)] ? 1 : 0;
    return n;
}

static bool eqn_has(const shape *s, const eqn *e, size_t c)
{
    if (e->parent == c)
        return true;
    for (size_t i = 0; i < s->levels[e->dim]; i++)
        if (eqn_child(s, e, i) == c)
            return true;
    return false;
}

int disc_table_control(const disc_policy *p, size_t n_dims, const size_t *levels,
                       const int64_t *counts, disc_value *out, int64_t *truth_out,
                       unsigned *rules)
{
    shape s;
    if (shape_init(&s, n_dims, levels))
        return SDF_EINVAL;
    for (size_t c = 0; c < s.n_ext; c++)
        out[c] = (disc_value){ .value = 0, .status = DISC_SUPPRESSED };

    int err = SDF_ENOMEM;
    int64_t *truth = calloc(s.n_ext, sizeof *truth);
    unsigned char *wh = calloc(s.n_ext, 1);
    unsigned char *det = calloc(s.n_ext, 1);
    eqn *eqs = malloc(s.n_ext * (n_dims ? n_dims : 1) * sizeof *eqs);
    if (!truth || !wh || !det || !eqs)
        goto out;

    /* True counts of the extended grid: inner cells, then every margin as
     * the sum of the inner cells it covers. */
    for (size_t c = 0; c < s.n_ext; c++) {
        size_t inner = 0;
        bool is_inner = true;
        for (size_t d = 0; d < n_dims; d++) {
            size_t k = coord(&s, c, d);
            if (k == s.levels[d]) {
                is_inner = false;
                break;
            }
            inner = inner * s.levels[d] + k;
        }
        if (!is_inner)
            continue;
        int64_t v = counts[inner] < 0 ? 0 : counts[inner];
        /* add v to every extended cell covering c (all 2^n_dims subsets) */
        for (unsigned mask = 0; mask < (1u << n_dims); mask++) {
            size_t t = c;
            for (size_t d = 0; d < n_dims; d++)
                if (mask & (1u << d))
                    t = t - coord(&s, c, d) * s.stride[d] + s.levels[d] * s.stride[d];
            if (truth[t] > INT64_MAX - v) {
                err = SDF_EOVERFLOW;
                goto out;
            }
            truth[t] += v;
        }
    }

    /* Primary. */
    unsigned fired = 0;
    for (size_t c = 0; c < s.n_ext; c++) {
        out[c] = disc_count(p, truth[c], &fired);
        wh[c] = out[c].status == DISC_SUPPRESSED;
    }

    /* Secondary, to a fixpoint. Each pass withholds at least one more cell
     * or stops, so it ends after at most n_ext passes. */
    size_t n_eqs = eqn_list(&s, eqs);
    bool secondary = false;
    for (;;) {
        bool changed = false;
        for (size_t e = 0; e < n_eqs; e++) {
            if (eqn_withheld(&s, &eqs[e], wh) != 1)
                continue;
            size_t c = eqn_candidate(&s, &eqs[e], wh, truth);
            if (c == SIZE_MAX)
                continue;
            wh[c] = 1;
            changed = secondary = true;
        }
        if (changed)
            continue;
        int nd = determined(&s, eqs, n_eqs, wh, det);
        if (nd < 0) {
            err = nd;
            goto out;
        }
        if (nd == 0)
            break;
        /* Withhold the best candidate among the equations through the
         * first determined cell; failing that, the best cell anywhere. */
        size_t target = 0;
        while (!det[target])
            target++;
        size_t best = SIZE_MAX;
        for (size_t e = 0; e < n_eqs; e++) {
            if (!eqn_has(&s, &eqs[e], target))
                continue;
            size_t c = eqn_candidate(&s, &eqs[e], wh, truth);
            if (c != SIZE_MAX && (best == SIZE_MAX || better(truth, c, best)))
                best = c;
        }
        for (size_t c = 0; best == SIZE_MAX && c < s.n_ext; c++)
            if (!wh[c])
                best = c;
        if (best == SIZE_MAX)
            break;   /* everything withheld: nothing is released */
        wh[best] = 1;
        secondary = true;
    }

    for (size_t c = 0; c < s.n_ext; c++)
        if (wh[c])
            out[c] = (disc_value){ .value = 0, .status = DISC_SUPPRESSED };
    if (secondary)
        fired |= DISC_RULE_SECONDARY;
    if (rules)
        *rules |= fired;
    if (truth_out)
        memcpy(truth_out, truth, s.n_ext * sizeof *truth);
    err = 0;
out:
    if (err)
        for (size_t c = 0; c < s.n_ext; c++)
            out[c] = (disc_value){ .value = 0, .status = DISC_SUPPRESSED };
    free(truth);
    free(wh);
    free(det);
    free(eqs);
    return err;
}
