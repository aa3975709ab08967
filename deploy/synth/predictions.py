#!/usr/bin/env python3
"""deploy/synth/predictions.py — a synthetic AI tool's predictions for one site.

Reads the persons of a synthetic OMOP SQLite database (sdefed-synth) and
writes a predictions CSV that `deploy/sandbox up --predictions SITE=FILE` or
`deploy/sandbox predictions DIR SITE=FILE` loads as the site's predictions
table (docs/validate.md):

    person_id,score,label,prediction_date,model_version,sex,age_band

The tool is a logistic model of age at the prediction date, sex and the
number of distinct condition concepts recorded before it. Each person's
label is drawn from a true risk whose log-odds are the tool's plus Gaussian
noise (--noise: what the tool cannot see), so an undistorted tool is
calibrated (slope close to 1, O/E close to 1). The tool's score is then
distorted:
--miscalibrate M multiplies the predicted odds by M (M > 1 over-predicts:
O/E < 1 and a negative calibration-in-the-large), --spread S stretches the
log-odds by S around their mean (S > 1 over-confident: calibration slope
about 1/S). Everything is deterministic given --seed. Python 3 standard
library only.

    predictions.py --db site-c.sqlite --out preds-c.csv --seed 3 --miscalibrate 3
"""

import argparse
import csv
import math
import random
import sqlite3
import sys


def expit(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def age_band(age):
    if age < 18:
        return "0-17"
    if age >= 80:
        return "80+"
    lo = 18 if age < 30 else age // 10 * 10
    return "%d-%d" % (lo, age // 10 * 10 + 9)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True, help="the site's OMOP SQLite database")
    ap.add_argument("--out", required=True, help="CSV to write ('-' for stdout)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--miscalibrate", type=float, default=1.0,
                    help="multiply the predicted odds by this (default 1: calibrated)")
    ap.add_argument("--spread", type=float, default=1.0,
                    help="stretch the predicted log-odds around their mean by this (default 1)")
    ap.add_argument("--noise", type=float, default=0.5,
                    help="sd of the true log-odds around the tool's (default 0.5)")
    ap.add_argument("--date", default="2018-01-01", help="prediction date (YYYY-MM-DD)")
    ap.add_argument("--model-version", default="v1")
    ap.add_argument("--limit", type=int, default=0, help="at most this many persons (0: all)")
    a = ap.parse_args(argv)
    if not a.miscalibrate > 0 or not a.spread > 0 or a.noise < 0:
        ap.error("--miscalibrate and --spread must be > 0, --noise >= 0")
    try:
        year = int(a.date[:4])
    except ValueError:
        ap.error("--date wants YYYY-MM-DD")

    rng = random.Random(a.seed)
    try:
        con = sqlite3.connect("file:%s?mode=ro" % a.db, uri=True)
    except sqlite3.Error as e:
        sys.stderr.write("predictions.py: %s: %s\n" % (a.db, e))
        return 1
    try:
        persons = con.execute(
            "SELECT person_id, gender_concept_id, year_of_birth FROM person ORDER BY person_id"
            + (" LIMIT %d" % a.limit if a.limit > 0 else "")).fetchall()
        prior = dict(con.execute(
            "SELECT person_id, COUNT(DISTINCT condition_concept_id) FROM condition_occurrence "
            "WHERE condition_start_date < ? GROUP BY person_id", (a.date,)))
    except sqlite3.Error as e:
        sys.stderr.write("predictions.py: %s: %s (is it an OMOP database?)\n" % (a.db, e))
        return 1
    finally:
        con.close()
    if not persons:
        sys.stderr.write("predictions.py: %s has no persons\n" % a.db)
        return 1

    shift = math.log(a.miscalibrate)
    out = sys.stdout if a.out == "-" else open(a.out, "w", newline="")
    try:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["person_id", "score", "label", "prediction_date", "model_version",
                    "sex", "age_band"])
        tool = []
        for pid, gender, yob in persons:
            age = max(0, year - (yob or year - 50))
            male = gender == 8507
            k = prior.get(pid, 0)
            # the tool's log-odds; the true risk adds what the tool cannot see
            eta = -2.0 + 0.045 * (age - 50) + 0.5 * male + 0.6 * math.log1p(k)
            tool.append((pid, eta, male, age))
        center = sum(t[1] for t in tool) / len(tool)
        for pid, eta, male, age in tool:
            label = 1 if rng.random() < expit(eta + rng.gauss(0.0, a.noise)) else 0
            score = expit(center + a.spread * (eta - center) + shift)
            score = min(max(score, 1e-6), 1 - 1e-6)
            w.writerow([pid, "%.6f" % score, label, a.date, a.model_version,
                        "male" if male else "female", age_band(age)])
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
