/* agent/scorecard.h — score an OMOP cohort with a model shipped in a validate spec.
 *
 * Issue 5 item 2 (docs/validate.md, "A model shipped as a scorecard"): a
 * `validate` spec may carry a linear or logistic scorecard instead of
 * naming a predictions table. query_validate.c hands such specs here: every
 * person of validate.cohort is scored at their index date (the prediction
 * date) from covariates read out of the same OMOP dataset, and the
 * (person, day, score) rows go back to the ordinary validate path, which
 * labels them from the OMOP outcome and applies the metrics and the
 * disclosure rules. Nothing here releases anything: rows stay in the agent.
 *
 * Covariates, relative to each person's index date d:
 *   age          whole years: year(d) - year_of_birth (persons without a
 *                birth year are left out);
 *   sex          1 when gender_concept_id is the term's sex (8507 male,
 *                8532 female, anything else unknown), else 0;
 *   indicator    1 when the person has an event of the criterion's concept
 *                set on a day in [d - lookback_days, d], else 0;
 *   measurement  the latest value_as_number of the concept set in that
 *                window (ties on a day: the highest row id); without one,
 *                the term's `missing` value, or the person is left out.
 * lp = intercept + sum(coef * covariate); score = expit(lp) (logistic) or
 * lp (linear: the query is refused when any score leaves [0, 1]). A sex,
 * indicator or measurement-with-missing term that splits the scored
 * persons into a group of 1..min_cell-1 is refused (the analyst picks the
 * scores, so such a term could single out persons whose outcomes the
 * released metrics would then reveal by differencing).
 *
 * SQL: one statement for the cohort (the cohort compiler's CTEs, then
 * person, index day, age and gender per cohort person) and one per term
 * with a criterion (the concept set's events); all values are bound
 * parameters. Events are joined to the cohort in memory in one merge pass
 * per term, so the work is linear in persons + events.
 */
#ifndef AGENT_SCORECARD_H
#define AGENT_SCORECARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "query_internal.h"
#include "sdefed/err.h"

/* Cohorts of at most scorecard_filter_max persons are passed to each
 * term's statement as a bound list of person ids, so that only their
 * events are read (the SQLite backend caps a list's text at 1 MiB: 50,000
 * ids of up to 19 digits fit); larger cohorts are filtered in memory as the
 * rows arrive. The variable exists so that tests can exercise both paths. */
#define SCORECARD_FILTER_MAX ((size_t)50000)
extern size_t scorecard_filter_max;

/* One scored person: agent-internal, never released. */
typedef struct scorecard_row {
    int64_t person;
    int64_t day;      /* index (prediction) day, the backend's day number */
    double score;
} scorecard_row;

/* One event of a term's concept set. */
typedef struct scorecard_event {
    int64_t person, day, id;
    double value;
} scorecard_event;

/* Score every person of spec->validate->cohort in the OMOP dataset ds with
 * spec->validate->scorecard. On success returns 0 and sets *rows (malloc'd,
 * the caller frees; ascending person, one row per person) and *n. Returns
 * SDF_EREFUSED with a reason in q->reason (no values, no counts: e.g. not
 * an OMOP dataset, an unknown concept id, a linear score outside [0, 1], a
 * term singling out fewer than min_cell persons, or fewer than 2 x min_cell
 * scored persons), SDF_ETIMEOUT, SDF_EDB,
 * SDF_EOVERFLOW or SDF_ENOMEM; *rows is then NULL. */
int scorecard_score(query_ctx *q, const agent_dataset *ds, const Sdefed__QuerySpec *spec,
                    scorecard_row **rows, size_t *n) SDF_MUSTCHECK;

/* Sort events by person, day, id (the order scorecard_lookup needs). */
void scorecard_events_sort(scorecard_event *ev, size_t m);

/* For each of n persons (person[] strictly ascending, index day day[i])
 * find the latest event of ev (sorted; m events) on a day in
 * [day[i] - lookback, day[i]]: has[i] = 1 and value[i] = its value when
 * there is one, has[i] = 0 otherwise (value may be NULL). One merge pass:
 * O(n + m). */
void scorecard_lookup(const int64_t *person, const int64_t *day, size_t n,
                      const scorecard_event *ev, size_t m, int64_t lookback, unsigned char *has,
                      double *value);

/* The score of linear predictor lp under link. Returns 0 and sets *score,
 * or SDF_EINVAL when lp is not finite, the link is unknown, or (linear) lp
 * is outside [0, 1]. expit is computed without overflow for any finite lp. */
int scorecard_link(Sdefed__ScorecardLink link, double lp, double *score) SDF_MUSTCHECK;

#endif
