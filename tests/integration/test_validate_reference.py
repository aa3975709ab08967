"""tests/integration/test_validate_reference.py — per-site AUC and DeLong CI
against R's pROC, end to end (issue 5: "agree with an independent reference
implementation on the same data").

Skipped, saying why, unless `Rscript` with pROC is installed (Debian:
r-base-core r-cran-proc, `deploy/deps.sh reference`). Four sites of a real
sandbox each get a predictions table through `deploy/sandbox up
--predictions` (min_cell 5, a legitimate sandbox option):

  site-a  Hanley & McNeil 1982 CT ratings (109 patients, ratings 1-5 -> r/5)
  site-b  pROC's aSAH data exported by Rscript: s100b / 2.5, by gender
  site-c  aSAH: ndka / 500, by gender
  site-d  4,000 random rows, scores on a 1/40 grid (heavy ties), two groups
  site-e  aSAH with two model versions per patient (s100b / 2.5 and
          ndka / 500), for the paired comparison (`compare_versions`)

R reads the very CSV files the sandbox loaded and computes, per site and
per subgroup, `r <- roc(label, score, levels = c(0, 1), direction = "<")`,
`auc(r)`, `sqrt(var(r, method = "delong"))` and `ci.auc(r, method =
"delong")`. The agent releases the AUC and the CI limits rounded to 4
decimals and the SE to 4 significant digits (docs/validate.md §4), so the
released numbers must lie within the rounding half-width of pROC's:
|AUC - pROC| <= 5e-5 (better than the 1e-4 asked), likewise each CI limit,
|SE - pROC| <= 5e-4 * SE. The unrounded agent code is held to 1e-9 of
pROC by tests/unit/agent/test_validate_reference.c.

The paired comparison of two model versions on the same patients is
checked against `roc.test(r_a, r_b, method = "delong", paired = TRUE)`:
both AUCs and the difference (4 decimals), its SE (pROC's Z statistic is
(auc_a - auc_b) / SE; 4 significant digits), the 95% CI difference +-
1.96 SE, and the two-sided p (4 decimals).
"""

import csv
import os
import random
import shutil
import subprocess
import tempfile
import unittest

from sandbox import Sandbox, SandboxTestCase, add_predictions_args, write_predictions_csv

ROUND_AUC = 5e-5 + 1e-12     # half a unit in the 4th decimal
ROUND_SE = 5e-4              # half a unit in the 4th significant digit, relative
Z95 = 1.959963984540054


def rscript_reason():
    """None when Rscript with pROC works, else why not."""
    rs = shutil.which("Rscript")
    if not rs:
        return "Rscript not found (install r-base-core r-cran-proc: deploy/deps.sh reference)"
    try:
        p = subprocess.run([rs, "-e", "suppressMessages(library(pROC))"],
                           capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "Rscript does not run: %s" % e
    if p.returncode != 0:
        return "R package pROC missing (install r-cran-proc: deploy/deps.sh reference)"
    return None


R_SCRIPT = r"""
suppressMessages(library(pROC))
args <- commandArgs(trailingOnly = TRUE)
jobs <- read.csv(args[1], stringsAsFactors = FALSE, colClasses = "character")
for (i in seq_len(nrow(jobs))) {
  d <- read.csv(jobs$csv[i], stringsAsFactors = FALSE)
  if (jobs$column[i] != "") d <- d[as.character(d[[jobs$column[i]]]) == jobs$level[i], ]
  r <- roc(d$label, d$score, levels = c(0, 1), direction = "<", quiet = TRUE)
  ci <- ci.auc(r, method = "delong")
  cat(sprintf("%s\t%.17g\t%.17g\t%.17g\t%.17g\t%d\t%d\n", jobs$key[i], as.numeric(auc(r)),
              sqrt(var(r, method = "delong")), ci[1], ci[3], sum(d$label == 1),
              sum(d$label == 0)))
}
"""


PAIRED_R = r"""
suppressMessages(library(pROC))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = FALSE)
a <- d[d$model_version == args[2], ]
b <- d[d$model_version == args[3], ]
a <- a[order(a$person_id), ]
b <- b[order(b$person_id), ]
stopifnot(all(a$person_id == b$person_id), all(a$label == b$label))
ra <- roc(a$label, a$score, levels = c(0, 1), direction = "<", quiet = TRUE)
rb <- roc(b$label, b$score, levels = c(0, 1), direction = "<", quiet = TRUE)
t <- roc.test(ra, rb, method = "delong", paired = TRUE)
cat(sprintf("%.17g\t%.17g\t%.17g\t%.17g\n", t$estimate[1], t$estimate[2], t$statistic,
            t$p.value))
"""


def pproc_paired(csv_path, version_a, version_b, workdir):
    """(auc_a, auc_b, se of auc_b - auc_a, p) from pROC's paired roc.test."""
    script = os.path.join(workdir, "paired.R")
    with open(script, "w") as f:
        f.write(PAIRED_R)
    p = subprocess.run(["Rscript", script, csv_path, version_a, version_b],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("Rscript (roc.test) failed: %s" % p.stderr[-2000:])
    a, b, z, pv = (float(x) for x in p.stdout.split())
    return a, b, (a - b) / z, pv


def pproc(jobs, workdir):
    """{key: (auc, se, lo, hi, events, nonevents)} from pROC for each job
    (key, csv, column, level); column "" means all rows."""
    with open(os.path.join(workdir, "jobs.csv"), "w") as f:
        f.write("key,csv,column,level\n")
        for j in jobs:
            f.write(",".join(j) + "\n")
    script = os.path.join(workdir, "reference.R")
    with open(script, "w") as f:
        f.write(R_SCRIPT)
    p = subprocess.run(["Rscript", script, os.path.join(workdir, "jobs.csv")],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("Rscript failed: %s" % p.stderr[-2000:])
    out = {}
    for line in p.stdout.splitlines():
        k, *v = line.split("\t")
        out[k] = tuple(float(x) for x in v[:4]) + (int(v[4]), int(v[5]))
    return out


def hanley_mcneil_rows():
    normal, abnormal = [33, 6, 6, 11, 2], [3, 2, 2, 11, 33]
    rows = []
    for r in range(5):
        rows += [[(r + 1) / 5.0, 0]] * normal[r]
        rows += [[(r + 1) / 5.0, 1]] * abnormal[r]
    return [[i + 1, s, y] for i, (s, y) in enumerate(rows)]


class ValidateReferenceTest(SandboxTestCase):
    SANDBOX_ARGS = dict(sites=5, seed=77, persons=150, min_cell=5, rounding=5)

    @classmethod
    def setUpClass(cls):
        why = rscript_reason()
        if why:
            raise unittest.SkipTest(why)
        cls.work = tempfile.mkdtemp(prefix="sdefed-ref-")
        try:
            cls.make_datasets()
            cls.ref = pproc(cls.jobs, cls.work)
            cls.ref_paired = pproc_paired(cls.files["site-e"], "s100b", "ndka", cls.work)
        except BaseException:
            shutil.rmtree(cls.work, ignore_errors=True)
            raise
        cls.sb = Sandbox(**cls.SANDBOX_ARGS)
        add_predictions_args(cls.sb, cls.files)   # loaded by `sandbox up --predictions`
        try:
            cls.sb.up()
        except BaseException:
            cls.sb.down()
            shutil.rmtree(cls.work, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def make_datasets(cls):
        w = cls.work
        # aSAH exported by R itself
        asah = os.path.join(w, "asah.csv")
        p = subprocess.run(["Rscript", "-e", "suppressMessages(library(pROC)); data(aSAH); "
                            "write.csv(aSAH, file = '%s', row.names = FALSE)" % asah],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("exporting aSAH failed: %s" % p.stderr)
        with open(asah) as f:
            a = list(csv.DictReader(f))
        assert len(a) == 113, len(a)
        hdr = ("person_id", "score", "label", "gender")
        cls.files = {
            "site-a": write_predictions_csv(os.path.join(w, "hanley.csv"), hanley_mcneil_rows()),
            "site-b": write_predictions_csv(
                os.path.join(w, "s100b.csv"),
                [[i + 1, float(r["s100b"]) / 2.5, int(r["outcome"] == "Poor"), r["gender"]]
                 for i, r in enumerate(a)], hdr),
            "site-c": write_predictions_csv(
                os.path.join(w, "ndka.csv"),
                [[i + 1, float(r["ndka"]) / 500.0, int(r["outcome"] == "Poor"), r["gender"]]
                 for i, r in enumerate(a)], hdr),
        }
        paired = []
        for i, r in enumerate(a):
            y = int(r["outcome"] == "Poor")
            paired.append([i + 1, float(r["s100b"]) / 2.5, y, "s100b"])
            paired.append([i + 1, float(r["ndka"]) / 500.0, y, "ndka"])
        cls.files["site-e"] = write_predictions_csv(
            os.path.join(w, "paired.csv"), paired, ("person_id", "score", "label", "model_version"))
        rng = random.Random(5150)
        rows = []
        for i in range(4000):
            y = 1 if rng.random() < 0.3 else 0
            g = "g1" if rng.random() < 0.6 else "g2"
            k = round((0.35 + 0.12 * y + (0.05 if g == "g2" else 0) + rng.gauss(0, 0.2)) * 40)
            rows.append([i + 1, min(max(k, 0), 40) / 40.0, y, g])
        cls.files["site-d"] = write_predictions_csv(os.path.join(w, "ties.csv"), rows,
                                                    ("person_id", "score", "label", "grp"))
        cls.by = {"site-a": None, "site-e": None, "site-b": ("gender", ["Female", "Male"]),
                  "site-c": ("gender", ["Female", "Male"]), "site-d": ("grp", ["g1", "g2"])}
        cls.jobs = []
        for site, path in cls.files.items():
            if site == "site-e":
                continue   # two versions: compared by pproc_paired
            cls.jobs.append((site, path, "", ""))
            if cls.by[site]:
                col, levels = cls.by[site]
                for lv in levels:
                    cls.jobs.append(("%s/%s" % (site, lv), path, col, lv))

    def query_site(self, site, by=None):
        spec = {"kind": "validate", "project": "demo", "dataset": "preds",
                "validate": {"thresholds": [0.5], "by": [by] if by else []}}
        d = self.sb.query(spec, sites=[site])
        s = d["sites"][0]
        self.assertEqual(s["status"], "ok", s)
        return s

    def check(self, g, key):
        auc, se, lo, hi, ev, ne = self.ref[key]
        self.assertTrue(g["released"], (key, g))
        msg = "%s: agent %r vs pROC auc %.6f se %.6f ci %.6f-%.6f" % (key, g, auc, se, lo, hi)
        self.assertLessEqual(abs(g["auc"] - auc), ROUND_AUC, msg)
        self.assertLessEqual(abs(g["auc_ci"][0] - lo), ROUND_AUC, msg)
        self.assertLessEqual(abs(g["auc_ci"][1] - hi), ROUND_AUC, msg)
        self.assertLessEqual(abs(g["auc_se"] - se), ROUND_SE * se + 1e-12, msg)

    def test_whole_sites_match_proc(self):
        for site in self.files:
            if site == "site-e":
                continue
            s = self.query_site(site)
            g = [v for v in s["validations"] if v["strata"] == {}][0]
            self.check(g, site)
        # the published figures, as a guard on the data sets themselves
        self.assertAlmostEqual(self.ref["site-a"][0], 0.8932, delta=5e-5)
        self.assertAlmostEqual(self.ref["site-b"][0], 0.7314, delta=5e-5)

    def test_paired_comparison_matches_roc_test(self):
        spec = {"kind": "validate", "project": "demo", "dataset": "preds",
                "validate": {"compare_versions": ["s100b", "ndka"]}}
        d = self.sb.query(spec, sites=["site-e"])
        s = d["sites"][0]
        self.assertEqual(s["status"], "ok", s)
        g = [v for v in s["validations"] if v["strata"] == {}][0]
        c = g.get("comparison")
        self.assertIsNotNone(c, g)
        self.assertTrue(c["released"], c)
        self.assertEqual((c["version_a"], c["version_b"]), ("s100b", "ndka"))
        auc_a, auc_b, se, pv = self.ref_paired
        msg = "agent %r vs roc.test auc %.6f %.6f se %.6f p %.6f" % (c, auc_a, auc_b, se, pv)
        self.assertLessEqual(abs(c["auc_a"] - auc_a), ROUND_AUC, msg)
        self.assertLessEqual(abs(c["auc_b"] - auc_b), ROUND_AUC, msg)
        self.assertLessEqual(abs(c["diff"] - (auc_b - auc_a)), ROUND_AUC, msg)
        self.assertLessEqual(abs(c["diff_se"] - se), ROUND_SE * se + 1e-12, msg)
        self.assertLessEqual(abs(c["diff_ci"][0] - (auc_b - auc_a - Z95 * se)), ROUND_AUC, msg)
        self.assertLessEqual(abs(c["diff_ci"][1] - (auc_b - auc_a + Z95 * se)), ROUND_AUC, msg)
        self.assertLessEqual(abs(c["p_value"] - pv), ROUND_AUC, msg)
        # the group's own AUC is version b's (ndka), as pROC has it
        self.assertLessEqual(abs(g["auc"] - auc_b), ROUND_AUC, msg)

    def test_subgroups_match_proc(self):
        released = 0
        for site, by in self.by.items():
            if not by:
                continue
            col, levels = by
            s = self.query_site(site, col)
            for lv in levels:
                g = [v for v in s["validations"] if v["strata"] == {col: lv}][0]
                key = "%s/%s" % (site, lv)
                _, _, _, _, ev, ne = self.ref[key]
                if ev < 5 or ne < 5:
                    self.assertFalse(g["released"], (key, g))
                    continue
                if not g["released"]:
                    # complementary suppression may withhold a level that
                    # passes alone; it must say so
                    self.assertIn("complementary", g["withheld_reason"], (key, g))
                    continue
                self.check(g, key)
                released += 1
        self.assertGreaterEqual(released, 4)


if __name__ == "__main__":
    unittest.main()
