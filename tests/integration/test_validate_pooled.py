"""tests/integration/test_validate_pooled.py — the pooled ROC curve over a
federation built by splitting one dataset across 10 sites (issue 5: "a
pooled AUC over a federation built by splitting one public dataset across
10 sites is within 0.005 of the AUC computed on the whole dataset").

One dataset is split by person id (person_id mod 10) into ten sites' predictions
tables, loaded with `deploy/sandbox up --predictions`; one `validate`
query runs at all ten. The pooled ROC curve is built by the coordinator
from each site's released score histogram (fine bins coarsened until every
count passes the count rules), so its trapezoid AUC `roc_auc` only
approximates the AUC of the pooled rows; `roc_auc_max_error` is the bound
the coordinator reports for that. Checked: |roc_auc - whole-data AUC| <=
0.005 and <= roc_auc_max_error (+ 5e-5 for the 4-decimal rounding of the
released numbers), the curve runs monotonically from (0, 0) to (1, 1) and
its trapezoid area is roc_auc, every site's AUC is the exact AUC of its
rows, and the pooled sites count is 10. (The DerSimonian-Laird estimate,
tau2 and I2 against a Python calculation over the released per-site
numbers are checked in test_validate.py.)

Two datasets:
  * a generated one (always runs): 20,000 persons, a logistic risk score
    with an unseen component, default disclosure policy (min_cell 10,
    rounding 5);
  * OHDSI Eunomia GiBleed (../shared/data/gibleed; skipped, saying so, when
    absent): 2,694 persons, index = first NSAID (celecoxib or diclofenac)
    exposure, outcome = GI bleed (192671 and descendants) within 365 days
    after it, score = a fixed logistic function of age at index and the
    number of distinct conditions recorded before it — computed here in
    Python straight from the SQLite file. ~270 persons and ~48 events per
    site, so min_cell 5 and rounding 1 (legitimate sandbox options).

Also here, since every test in this module loads predictions that way: the
sandbox's predictions loader refuses bad files (header, field counts, a
non-integer person_id) without printing a value, and a second table.
"""

import datetime
import math
import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
import unittest

from sandbox import (Sandbox, SandboxTestCase, add_predictions_args, load_predictions,
                     shared_data_dir, write_predictions_csv)
from test_validate import auc_delong, mann_whitney

NSITES = 10
SITES = ["site-" + c for c in "abcdefghij"]
TOLERANCE = 0.005


def expit(x):
    return 1.0 / (1.0 + math.exp(-x))


def roc_points(curve):
    """[(fpr, tpr)] from the JSON curve ([fpr, tpr, threshold] points)."""
    return [(p[0], p[1]) for p in curve]


class PooledBase:
    """Mixin: cls.rows = [(person_id, score, label)], split by person_id % 10."""

    POLICY = dict(min_cell=10, rounding=5)

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="sdefed-pooled-")
        try:
            cls.rows = cls.make_rows()
            cls.site_rows = {s: [] for s in SITES}
            for r in cls.rows:
                cls.site_rows[SITES[r[0] % NSITES]].append(r)
            files = {s: write_predictions_csv(os.path.join(cls.work, "%s.csv" % s), rows)
                     for s, rows in cls.site_rows.items()}
            cls.sb = Sandbox(sites=NSITES, seed=5, persons=60, **cls.POLICY)
            add_predictions_args(cls.sb, files)
            try:
                cls.sb.up()
            except BaseException:
                cls.sb.down()
                raise
        except BaseException:
            shutil.rmtree(cls.work, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.work, ignore_errors=True)

    def run_query(self):
        spec = {"kind": "validate", "project": "demo", "dataset": "preds",
                "validate": {"thresholds": [0.2, 0.5]}}
        return self.sb.query(spec, proc_timeout=180)

    def test_pooled_roc_auc_matches_whole_dataset(self):
        d = self.run_query()
        scores = [r[1] for r in self.rows]
        labels = [r[2] for r in self.rows]
        whole, _ = auc_delong(scores, labels)
        self.assertAlmostEqual(whole, mann_whitney(scores, labels), places=12)
        for s in d["sites"]:
            self.assertEqual(s["status"], "ok", s)
            g = [v for v in s["validations"] if v["strata"] == {}][0]
            self.assertTrue(g["released"], (s["site"], g))
            rows = self.site_rows[s["site"]]
            auc, _ = auc_delong([r[1] for r in rows], [r[2] for r in rows])
            self.assertLessEqual(abs(g["auc"] - auc), 5e-5 + 1e-12, s["site"])
        pooled = [p for p in d["pooled"]["validations"] if p["strata"] == {}][0]
        self.assertEqual(pooled["sites"], NSITES)
        self.assertIn("roc_auc", pooled, "pooled ROC (issue 5 item 4) missing from the result")
        self.assertIsNotNone(pooled["roc_auc"], pooled)
        self.assertEqual(pooled["roc_sites"], NSITES)   # every site's histogram merged
        err = abs(pooled["roc_auc"] - whole)
        msg = ("pooled roc_auc %.4f, whole-dataset AUC %.6f, reported max error %r"
               % (pooled["roc_auc"], whole, pooled.get("roc_auc_max_error")))
        self.assertLessEqual(err, TOLERANCE, msg)
        self.assertIsNotNone(pooled.get("roc_auc_max_error"), msg)
        self.assertLessEqual(err, pooled["roc_auc_max_error"] + 5e-5, msg)
        # the curve: monotone from (0, 0) to (1, 1), trapezoid area = roc_auc
        pts = sorted(roc_points(pooled["roc"]))
        self.assertGreaterEqual(len(pts), 3, pooled["roc"])
        for got, want in ((pts[0], (0, 0)), (pts[-1], (1, 1))):
            self.assertAlmostEqual(got[0], want[0], delta=1e-9)
            self.assertAlmostEqual(got[1], want[1], delta=1e-9)
        for (f0, t0), (f1, t1) in zip(pts, pts[1:]):
            self.assertLessEqual(f0, f1 + 1e-12)
            self.assertLessEqual(t0, t1 + 1e-12)
        area = sum((f1 - f0) * (t0 + t1) / 2 for (f0, t0), (f1, t1) in zip(pts, pts[1:]))
        # points are released to 4 decimals
        self.assertLessEqual(abs(area - pooled["roc_auc"]), 1e-3, (area, pooled["roc_auc"]))
        if os.environ.get("SDEFED_TEST_VERBOSE"):
            print("\n%s: %s; roc points %d" % (type(self).__name__, msg, len(pts)))


class PooledGeneratedTest(PooledBase, SandboxTestCase):
    """20,000 generated persons, default policy."""

    @classmethod
    def make_rows(cls):
        rng = random.Random(20261123)
        rows = []
        for pid in range(1, 20001):
            lp = rng.gauss(-1.2, 1.3) + 0.1 * (pid % NSITES - 4.5) / 4.5   # mild site case mix
            y = 1 if rng.random() < expit(lp + rng.gauss(0, 0.7)) else 0
            rows.append((pid, round(expit(lp), 6), y))
        return rows


class SandboxPredictionsLoaderTest(unittest.TestCase):
    """`deploy/sandbox up --predictions` refuses a bad file, naming the
    problem, and never prints a row's value; `sandbox predictions` refuses
    a second preds table for a site."""

    def up_with(self, text):
        work = tempfile.mkdtemp(prefix="sdefed-predload-")
        try:
            path = os.path.join(work, "p.csv")
            with open(path, "w") as f:
                f.write(text)
            sb = Sandbox(sites=1, seed=3, persons=20)
            add_predictions_args(sb, {"site-a": path})
            try:
                sb.up()
            except RuntimeError as e:
                return str(e)
            sb.down()
            self.fail("sandbox up accepted %r" % text)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def test_bad_files_refused(self):
        cases = [
            ("pid,score,label\n1,0.5,1\n", "must start with person_id,score,label"),
            ("person_id,score,label,grp,grp\n1,0.5,1,a,a\n", "appears twice"),
            ("person_id,score,label,bad-name\n1,0.5,1,a\n", "is not an identifier"),
            ("person_id,score,label\n1,0.5,1\n2,0.25\n", "line 3: 2 fields, the header has 3"),
            ("person_id,score,label\n1,0.5,1\nsecret-7781,0.5,0\n",
             "line 3: person_id is not an integer"),
            ("person_id,score,label\n", "no rows"),
        ]
        for text, want in cases:
            msg = self.up_with(text)
            self.assertIn(want, msg, text)
            self.assertNotIn("secret-7781", msg)

    def test_second_table_refused_and_first_kept(self):
        work = tempfile.mkdtemp(prefix="sdefed-predload-")
        sb = None
        try:
            rows = [[i, (i % 50) / 50.0, i % 3 == 0, "a" if i % 2 else "b"] for i in range(1, 301)]
            rows = [[r[0], r[1], int(r[2]), r[3]] for r in rows]
            path = write_predictions_csv(os.path.join(work, "p.csv"), rows,
                                         ("person_id", "score", "label", "grp"))
            sb = Sandbox(sites=1, seed=3, persons=20)
            sb.up()
            load_predictions(sb, "site-a", path)     # into the running agent
            p = sb._sandbox("predictions", sb.dir, "site-a=%s" % path, check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("already has a [dataset preds]", p.stderr)
            d = sb.query({"kind": "validate", "project": "demo", "dataset": "preds",
                          "validate": {"by": ["grp"]}})
            s = d["sites"][0]
            self.assertEqual(s["status"], "ok", s)
            auc, _ = auc_delong([r[1] for r in rows], [r[2] for r in rows])
            self.assertLessEqual(abs(s["validations"][0]["auc"] - auc), 5e-5 + 1e-12)
        finally:
            if sb is not None:
                sb.down()
            shutil.rmtree(work, ignore_errors=True)


def gibleed_path():
    return os.path.join(shared_data_dir(), "gibleed", "gibleed_cdm53.sqlite.xz")


@unittest.skipUnless(os.path.exists(gibleed_path()),
                     "GiBleed data absent (../shared/data/gibleed; set SDEFED_SHARED_DATA)")
class PooledGiBleedTest(PooledBase, SandboxTestCase):
    """Eunomia GiBleed, 2,694 persons."""

    POLICY = dict(min_cell=5, rounding=1)

    @classmethod
    def make_rows(cls):
        db_path = os.path.join(cls.work, "gibleed.sqlite")
        with open(db_path, "wb") as out:
            subprocess.run(["xz", "-dc", gibleed_path()], stdout=out, check=True, timeout=300)
        db = sqlite3.connect(db_path)
        try:
            def descendants(ids):
                q = ("SELECT descendant_concept_id FROM concept_ancestor WHERE "
                     "ancestor_concept_id IN (%s)" % ",".join("?" * len(ids)))
                return set(ids) | {r[0] for r in db.execute(q, ids)}
            nsaid = sorted(descendants([1118084, 1124300]))
            bleed = descendants([192671])
            index = dict(db.execute(
                "SELECT person_id, MIN(drug_exposure_start_date) FROM drug_exposure WHERE "
                "drug_concept_id IN (%s) GROUP BY person_id" % ",".join("?" * len(nsaid)), nsaid))
            yob = dict(db.execute("SELECT person_id, year_of_birth FROM person"))
            conds = {}
            for pid, cid, day in db.execute("SELECT person_id, condition_concept_id, "
                                            "condition_start_date FROM condition_occurrence"):
                conds.setdefault(pid, []).append((cid, day))
        finally:
            db.close()
        rows = []
        for pid in sorted(index):
            i0 = index[pid]
            end = (datetime.date.fromisoformat(i0) + datetime.timedelta(days=365)).isoformat()
            prior = len({c for c, day in conds.get(pid, []) if day < i0})
            y = int(any(c in bleed and i0 <= day <= end for c, day in conds.get(pid, [])))
            age = int(i0[:4]) - yob[pid]
            score = expit(-1.2 + 0.16 * (age - 40) + 0.5 * (prior - 9))
            rows.append((pid, round(score, 6), y))
        assert len(rows) == 2694, len(rows)   # every GiBleed person has an NSAID exposure
        return rows


if __name__ == "__main__":
    unittest.main()
