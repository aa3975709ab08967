"""tests/integration/test_validate.py — the issue 5 `validate` kind end to end.

Three sites. Each gets a copy of its OMOP file with a `predictions` table
written here with Python's sqlite3 (person_id, score from a known logistic
model of age and sex plus noise, label drawn from the true model, sex and
region category columns, a prediction date; site-c's scores are
deliberately mis-calibrated), declared as a `type = table` dataset and
loaded by SIGHUP. Every released number is checked against an independent
Python computation over the same rows: n and events and the confusion
cells after the disclosure rules, the AUC by Mann-Whitney and its DeLong
SE, the Brier score; the pooled AUC against a DerSimonian-Laird written
here. A subgroup with 9 events is withheld with a reason (and its
complement with it); NULL / out-of-range / constant scores and non-0/1
labels are refused with a clear message; the outcome can also come from an
OMOP condition within a window after the prediction date.
"""

import bisect
import datetime
import math
import os
import random
import shutil
import signal
import sqlite3

from sandbox import SandboxTestCase, expected_release, wait_until

SITES = ["site-a", "site-b", "site-c"]
THRESHOLDS = [0.1, 0.2, 0.3, 0.5]
Z = 1.959963984540054


def expit(x):
    return 1.0 / (1.0 + math.exp(-x))


def auc_delong(scores, labels):
    pos = sorted(s for s, y in zip(scores, labels) if y)
    neg = sorted(s for s, y in zip(scores, labels) if not y)
    m, k = len(pos), len(neg)
    v10 = [(bisect.bisect_left(neg, s) + 0.5 * (bisect.bisect_right(neg, s) -
                                                 bisect.bisect_left(neg, s))) / k for s in pos]
    v01 = [((m - bisect.bisect_right(pos, s)) + 0.5 * (bisect.bisect_right(pos, s) -
                                                        bisect.bisect_left(pos, s))) / m
           for s in neg]
    auc = sum(v10) / m
    var = (sum((v - auc) ** 2 for v in v10) / (m - 1) / m +
           sum((v - auc) ** 2 for v in v01) / (k - 1) / k)
    return auc, math.sqrt(var)


def mann_whitney(scores, labels):
    """AUC from average ranks (independent of the DeLong code above)."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2.0 + 1
        i = j + 1
    m = sum(labels)
    k = len(labels) - m
    r = sum(rk for rk, y in zip(ranks, labels) if y)
    return (r - m * (m + 1) / 2.0) / (m * k)


def dersimonian_laird(aucs, ses):
    y = [math.log(a / (1 - a)) for a in aucs]
    v = [(s / (a * (1 - a))) ** 2 for a, s in zip(aucs, ses)]
    w = [1 / x for x in v]
    yf = sum(wi * yi for wi, yi in zip(w, y)) / sum(w)
    q = sum(wi * (yi - yf) ** 2 for wi, yi in zip(w, y))
    df = len(y) - 1
    c = sum(w) - sum(x * x for x in w) / sum(w)
    tau2 = max(0.0, (q - df) / c) if c > 0 else 0.0
    ws = [1 / (x + tau2) for x in v]
    mu = sum(wi * yi for wi, yi in zip(ws, y)) / sum(ws)
    se = math.sqrt(1 / sum(ws))
    i2 = max(0.0, (q - df) / q) if q > 0 else 0.0
    return expit(mu), expit(mu - Z * se), expit(mu + Z * se), tau2, i2


TABLE_COLUMNS = """
table = %s
column.person_id = identifier
column.score = score
column.label = label
column.prediction_date = date
column.sex = category
column.region = category
"""


class ValidateTest(SandboxTestCase):
    SANDBOX_ARGS = dict(sites=3, seed=41, persons=3000)

    @classmethod
    def prepare(cls):
        sb = cls.sb
        cls.rows = {}
        for n, site in enumerate(SITES):
            src = sb.db_path(site)
            dst = sb.path("preds-%s.sqlite" % site)
            shutil.copyfile(src, dst)
            rows = cls.write_predictions(dst, n, site == "site-c", site == "site-a")
            cls.rows[site] = rows
            extra = "\n[dataset preds]\ntype = table\nbackend = sqlite\npath = %s\n" % dst
            extra += TABLE_COLUMNS % "predictions"
            if site == "site-a":
                for bad in ("null", "range", "label", "const"):
                    extra += ("\n[dataset preds_%s]\ntype = table\nbackend = sqlite\n"
                              "path = %s\n" % (bad, dst)) + TABLE_COLUMNS % ("p_" + bad)
            with open(sb.path("agent-%s.conf" % site), "a") as f:
                f.write(extra)
            off = sb.log_size(site)
            os.kill(sb.pid(site), signal.SIGHUP)
            wait_until(lambda: "configuration reloaded" in sb.log_since(site, off), 15,
                       what="%s reload" % site)

    @classmethod
    def write_predictions(cls, path, seed, miscalibrated, with_bad_tables):
        rng = random.Random(1000 + seed)
        db = sqlite3.connect(path)
        persons = db.execute("SELECT person_id, gender_concept_id, year_of_birth FROM person "
                             "ORDER BY person_id").fetchall()
        rows = []
        for pid, gender, yob in persons:
            age = 2019 - (yob or 1970)
            male = gender == 8507
            eta = -1.6 + 0.03 * (age - 50) + 0.6 * male
            label = 1 if rng.random() < expit(eta) else 0
            shift = 1.2 if miscalibrated else 0.0
            score = expit(eta + shift + rng.gauss(0, 0.6))
            rows.append([pid, score, label, "male" if male else "female", "common"])
        if with_bad_tables:
            # region: 9 events + 40 non-events "rare", 12 + 40 "mid", the rest "common"
            ev = [r for r in rows if r[2] == 1]
            ne = [r for r in rows if r[2] == 0]
            for r in ev[:9] + ne[:40]:
                r[4] = "rare"
            for r in ev[9:21] + ne[40:80]:
                r[4] = "mid"
        db.execute("CREATE TABLE predictions (person_id INTEGER, score REAL, label INTEGER, "
                   "prediction_date TEXT, sex TEXT, region TEXT)")
        db.executemany("INSERT INTO predictions VALUES (?, ?, ?, '2015-01-01', ?, ?)",
                       [(r[0], r[1], r[2], r[3], r[4]) for r in rows])
        if with_bad_tables:
            for bad in ("null", "range", "label", "const"):
                db.execute("CREATE TABLE p_%s AS SELECT * FROM predictions" % bad)
            db.execute("UPDATE p_null SET score = NULL WHERE rowid = 7")
            db.execute("UPDATE p_range SET score = 1.5 WHERE rowid = 7")
            db.execute("UPDATE p_label SET label = 2 WHERE rowid = 7")
            db.execute("UPDATE p_const SET score = 0.3")
        db.commit()
        db.close()
        return rows

    def spec(self, dataset="preds", **v):
        body = {"thresholds": THRESHOLDS}
        body.update(v)
        return {"kind": "validate", "project": "demo", "dataset": dataset, "validate": body}

    def by_site(self, d):
        return {s["site"]: s for s in d["sites"]}

    def group(self, site_result, strata):
        for g in site_result["validations"]:
            if g["strata"] == strata:
                return g
        self.fail("no group %r in %r" % (strata, site_result.get("validations")))

    def check_group(self, g, scores, labels, policy):
        mc, rd = policy["min_cell"], policy["rounding"]
        n, ev = len(labels), sum(labels)
        self.assertTrue(g["released"], g)
        self.assertEqual(g["n"], expected_release(n, mc, rd)[0])
        self.assertEqual(g["events"], expected_release(ev, mc, rd)[0])
        auc_mw = mann_whitney(scores, labels)
        auc, se = auc_delong(scores, labels)
        self.assertAlmostEqual(auc, auc_mw, places=12)
        self.assertLessEqual(abs(g["auc"] - auc), 5.1e-5)
        self.assertLessEqual(abs(g["auc_se"] - se), se * 1e-3)
        brier = sum((s - y) ** 2 for s, y in zip(scores, labels)) / n
        self.assertLessEqual(abs(g["brier"] - brier), 5.1e-5)
        oe = ev / sum(scores)
        self.assertLessEqual(abs(g["oe_ratio"] - oe), 5.1e-5)
        # confusion cells after the count rules; the ROC-differencing rule
        prev = None
        for t, got in zip(sorted(THRESHOLDS), g["thresholds"]):
            self.assertEqual(got["threshold"], t)
            tp = sum(1 for s, y in zip(scores, labels) if y and s >= t)
            fp = sum(1 for s, y in zip(scores, labels) if not y and s >= t)
            cells = [tp, fp, n - ev - fp, ev - tp]
            rel = [expected_release(c, mc, rd) for c in cells]
            ok = all(r[1] != "suppressed" for r in rel)
            if ok and prev is not None:
                de, dn = prev[0] - tp, prev[1] - fp
                ok = not (0 < de < mc or 0 < dn < mc)
            if not ok:
                self.assertIsNone(got["sensitivity"], got)
                self.assertIsNone(got["tp"])
                self.assertNotEqual(got["withheld_reason"], "")
                continue
            prev = (tp, fp)
            self.assertEqual([got["tp"], got["fp"], got["tn"], got["fn"]], [r[0] for r in rel])
            TP, FP, TN, FN = [r[0] for r in rel]
            self.assertAlmostEqual(got["sensitivity"][0], round(TP / (TP + FN), 4), places=9)
            self.assertAlmostEqual(got["specificity"][0], round(TN / (TN + FP), 4), places=9)
        return auc, se

    def test_per_site_and_pooled(self):
        d = self.sb.query(self.spec(by=["sex"]))
        sites = self.by_site(d)
        released = []
        for site in SITES:
            s = sites[site]
            self.assertEqual(s["status"], "ok", s)
            rows = self.rows[site]
            scores = [r[1] for r in rows]
            labels = [r[2] for r in rows]
            g = self.group(s, {})
            self.check_group(g, scores, labels, s["policy"])
            released.append((g["auc"], g["auc_se"]))
            for sex in ("male", "female"):
                sub = [r for r in rows if r[3] == sex]
                self.check_group(self.group(s, {"sex": sex}), [r[1] for r in sub],
                                 [r[2] for r in sub], s["policy"])
            # mis-calibrated site: O/E well below 1 and a negative CITL
            if site == "site-c":
                self.assertLess(g["oe_ratio"], 0.8)
                self.assertLess(g["citl"], -0.5)
            # the identifier never leaves
            self.assertNotIn("person_id", str(s))
        pooled = [p for p in d["pooled"]["validations"] if p["strata"] == {}][0]
        auc, lo, hi, tau2, i2 = dersimonian_laird([a for a, _ in released],
                                                  [s for _, s in released])
        self.assertEqual(pooled["sites"], 3)
        self.assertAlmostEqual(pooled["auc"], auc, places=9)
        self.assertAlmostEqual(pooled["auc_ci"][0], lo, places=9)
        self.assertAlmostEqual(pooled["auc_ci"][1], hi, places=9)
        self.assertAlmostEqual(pooled["tau2"], tau2, places=9)
        self.assertAlmostEqual(pooled["i2"], i2, places=9)
        self.assertIsNotNone(pooled["prediction_interval"])
        # summed confusion cells at each threshold where every site released all four
        for j, t in enumerate(sorted(THRESHOLDS)):
            per = [self.group(sites[s], {})["thresholds"][j] for s in SITES]
            if all(p["tp"] is not None for p in per):
                self.assertEqual(pooled["thresholds"][j]["tp"], sum(p["tp"] for p in per))
                self.assertEqual(pooled["thresholds"][j]["fn"], sum(p["fn"] for p in per))
        # table and csv output render
        p = self.sb.query(self.spec(by=["sex"]), fmt="table")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("pooled", p.stdout)
        self.assertIn("AUC", p.stdout)
        p = self.sb.query(self.spec(), fmt="csv")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith("site,site_status,group,n,events,auc"))

    def test_small_subgroup_withheld(self):
        d = self.sb.query(self.spec(by=["region"]), sites=["site-a"])
        s = self.by_site(d)["site-a"]
        self.assertEqual(s["status"], "ok", s)
        rare = self.group(s, {"region": "rare"})   # 9 events
        self.assertFalse(rare["released"])
        self.assertIn("min_cell", rare["withheld_reason"])
        self.assertNotIn("auc", rare)
        self.assertNotIn("n", rare)
        # "mid" passes alone but is withheld so that rare = all - common - mid
        # cannot be computed; "common" stays released
        mid = self.group(s, {"region": "mid"})
        self.assertFalse(mid["released"])
        self.assertIn("complementary", mid["withheld_reason"])
        self.assertTrue(self.group(s, {"region": "common"})["released"])
        self.assertNotIn(" 9 ", str(rare))

    def test_bad_tables_refused(self):
        cases = {"preds_null": "score column: NULL", "preds_range": "outside [0, 1]",
                 "preds_label": "label column", "preds_const": "constant"}
        for ds, msg in cases.items():
            d = self.sb.query(self.spec(dataset=ds), sites=["site-a"])
            s = self.by_site(d)["site-a"]
            self.assertEqual(s["status"], "refused", (ds, s))
            self.assertIn(msg, s["reason"])
            self.assertNotIn("1.5", s["reason"])
        # a by column that is not a declared category
        d = self.sb.query(self.spec(by=["score"]), sites=["site-a"])
        s = self.by_site(d)["site-a"]
        self.assertEqual(s["status"], "refused")
        self.assertIn("not a category column", s["reason"])
        # spec errors are caught by the CLI before sending
        p = self.sb.query(self.spec(thresholds=[1.5]), fmt="table")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("validate.thresholds[0]", p.stderr)
        self.assertTrue(self.sb.all_alive())

    def test_outcome_from_omop(self):
        site = "site-b"
        db = sqlite3.connect("file:%s?mode=ro" % self.sb.db_path(site), uri=True)
        # the condition concept with an "ever after 2015" prevalence nearest 30%
        n_persons = db.execute("SELECT COUNT(*) FROM person").fetchone()[0]
        best = None
        for cid, cnt in db.execute(
                "SELECT condition_concept_id, COUNT(DISTINCT person_id) FROM "
                "condition_occurrence WHERE condition_start_date >= '2015-01-01' "
                "GROUP BY condition_concept_id"):
            if best is None or abs(cnt / n_persons - 0.3) < abs(best[1] / n_persons - 0.3):
                best = (cid, cnt)
        cid = best[0]
        start = datetime.date(2015, 1, 1)
        end = start + datetime.timedelta(days=3650)
        having = {p for (p,) in db.execute(
            "SELECT DISTINCT person_id FROM condition_occurrence WHERE condition_concept_id = ? "
            "AND condition_start_date >= ? AND condition_start_date <= ?",
            (cid, start.isoformat(), end.isoformat()))}
        db.close()
        spec = self.spec(outcome={"dataset": "omop",
                                  "criterion": {"domain": "condition", "concepts": [cid]},
                                  "window_days": [0, 3650]})
        d = self.sb.query(spec, sites=[site])
        s = self.by_site(d)[site]
        self.assertEqual(s["status"], "ok", s)
        rows = self.rows[site]
        labels = [1 if r[0] in having else 0 for r in rows]
        self.check_group(self.group(s, {}), [r[1] for r in rows], labels, s["policy"])
