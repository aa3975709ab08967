"""tests/integration/test_cohort.py — the issue 3 cohort language and summary kind end to end.

Brings up a 2-site sandbox and drives the real CLI with the example specs
(deploy/examples/count-gi-bleed-after-nsaid.json, summary-hba1c-by-sex.json):
every site's released numbers must equal the disclosure-controlled answer of
an independent SQL written here and run on the site's own file with Python's
sqlite3; the pooled summary must be the weighted combination of what the
sites released; hostile specs (10,000 nested groups, a window that ends
before it starts, an injection attempt, care_site where not allowed) are
refused with a clear message and leave every agent running.
"""

import datetime
import json
import math
import os
import sqlite3

from sandbox import EXAMPLES, SandboxTestCase, expected_release, strata_key

SITES = ["site-a", "site-b"]
SEX = {8507: "male", 8532: "female"}


def load(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return json.load(f)


def concept_set(db, ids):
    marks = ",".join("?" * len(ids))
    rows = db.execute("SELECT descendant_concept_id FROM concept_ancestor WHERE "
                      "ancestor_concept_id IN (%s)" % marks, ids).fetchall()
    return set(ids) | {r[0] for r in rows}


JD_OFFSET = 1721424   # proleptic ordinal -> (truncated) Julian day number


def day(text):
    return None if text is None else datetime.date.fromisoformat(text[:10]).toordinal() + JD_OFFSET


def year_of_day(d):
    return datetime.date.fromordinal(d - JD_OFFSET).year


class CohortTest(SandboxTestCase):
    SANDBOX_ARGS = dict(sites=2, seed=23, persons=6000)

    def site_db(self, site):
        return sqlite3.connect("file:%s?mode=ro" % self.sb.db_path(site), uri=True)

    def by_site(self, d):
        return {s["site"]: s for s in d["sites"]}

    # -- independent truths ------------------------------------------------

    def truth_gi_bleed(self, site):
        """count-gi-bleed-after-nsaid.json, in plain Python over rows."""
        db = self.site_db(site)
        nsaid = concept_set(db, [1124300, 1177480, 1115008])
        bleed = concept_set(db, [192671])
        first = {}
        for pid, c, d in db.execute("SELECT person_id, drug_concept_id, drug_exposure_start_date "
                                    "FROM drug_exposure"):
            if c in nsaid:
                dd = day(d)
                if pid not in first or dd < first[pid]:
                    first[pid] = dd
        bleeds = {}
        for pid, c, d in db.execute("SELECT person_id, condition_concept_id, condition_start_date "
                                    "FROM condition_occurrence"):
            if c in bleed:
                bleeds.setdefault(pid, []).append(day(d))
        obs = {}
        for pid, s, e in db.execute("SELECT person_id, observation_period_start_date, "
                                    "observation_period_end_date FROM observation_period"):
            obs.setdefault(pid, []).append((day(s), day(e)))
        people = {pid: (g, y) for pid, g, y in
                  db.execute("SELECT person_id, gender_concept_id, year_of_birth FROM person")}
        db.close()
        counts = {}
        for pid, idx in first.items():
            b = bleeds.get(pid, [])
            if not any(1 <= x - idx <= 365 for x in b) or any(-365 <= x - idx <= 0 for x in b):
                continue
            if not any(s <= idx - 365 and e >= idx for s, e in obs.get(pid, [])):
                continue
            g, yob = people[pid]
            age = year_of_day(idx) - int(yob)
            if age < 18:
                continue
            band = "80+" if age >= 80 else "%d-%d" % (age // 20 * 20, age // 20 * 20 + 19)
            key = strata_key({"sex": SEX.get(g, "unknown"), "age_band": band})
            counts[key] = counts.get(key, 0) + 1
        return counts

    def truth_hba1c(self, site):
        """summary-hba1c-by-sex.json: per sex, the values."""
        db = self.site_db(site)
        t2dm = concept_set(db, [201826])
        idx = {}
        for pid, c, d in db.execute("SELECT person_id, condition_concept_id, condition_start_date "
                                    "FROM condition_occurrence"):
            if c in t2dm:
                dd = day(d)
                if pid not in idx or dd < idx[pid]:
                    idx[pid] = dd
        best = {}
        for mid, pid, d, v in db.execute(
                "SELECT measurement_id, person_id, measurement_date, value_as_number FROM "
                "measurement WHERE measurement_concept_id = 3004410 AND unit_concept_id = 8554 "
                "AND value_as_number IS NOT NULL"):
            if pid not in idx:
                continue
            dd = day(d)
            if not -365 <= dd - idx[pid] <= 365:
                continue
            if pid not in best or (dd, mid) > best[pid][0]:
                best[pid] = ((dd, mid), v)
        sexes = {pid: g for pid, g in db.execute("SELECT person_id, gender_concept_id FROM person")}
        db.close()
        out = {}
        for pid, (_, v) in best.items():
            out.setdefault(SEX.get(sexes[pid], "unknown"), []).append(v)
        return out

    # -- tests -------------------------------------------------------------

    def test_a_windowed_count_matches_truth(self):
        d = self.sb.query(os.path.join(EXAMPLES, "count-gi-bleed-after-nsaid.json"))
        self.assertEqual(d["kind"], "count")
        total = 0
        for site, s in self.by_site(d).items():
            self.assertEqual(s["status"], "ok", "%s: %s" % (site, s.get("reason")))
            truth = self.truth_gi_bleed(site)
            total += sum(truth.values())
            for cell in s["cells"]:
                want = expected_release(truth.get(strata_key(cell["strata"]), 0))
                self.assertEqual((cell["value"], cell["status"]), want,
                                 "%s %s" % (site, cell["strata"]))
        self.assertGreater(total, 5, "the fixture should exercise the window")

    def test_b_summary_matches_truth_and_pools(self):
        d = self.sb.query(os.path.join(EXAMPLES, "summary-hba1c-by-sex.json"))
        self.assertEqual(d["kind"], "summary")
        released = {}
        for site, s in self.by_site(d).items():
            self.assertEqual(s["status"], "ok", "%s: %s" % (site, s.get("reason")))
            truth = self.truth_hba1c(site)
            self.assertEqual(len(s["summaries"]), 3)
            for x in s["summaries"]:
                vals = truth.get(x["strata"]["sex"], [])
                want_n = expected_release(len(vals))
                self.assertEqual((x["n"], x["n_status"]), want_n, "%s %s" % (site, x["strata"]))
                self.assertNotIn("min", x)
                self.assertNotIn("max", x)
                if len(vals) < 10:
                    self.assertIsNone(x["mean"])
                    self.assertEqual(x["mean_status"], "suppressed")
                    self.assertTrue(all(q["value"] is None for q in x["quantiles"]))
                    continue
                mean = sum(vals) / len(vals)
                sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
                self.assertAlmostEqual(x["mean"], mean, delta=abs(mean) * 1e-3)
                self.assertAlmostEqual(x["sd"], sd, delta=abs(sd) * 1e-3)
                self.assertEqual(x["mean_status"], "rounded")
                qs = [q["value"] for q in x["quantiles"]]
                self.assertEqual(qs, sorted(qs))
                self.assertTrue(min(vals) <= qs[0] and qs[-1] <= max(vals))
                released.setdefault(x["strata"]["sex"], []).append((x["n"], x["mean"]))
        pooled = {p["strata"]["sex"]: p for p in d["pooled"]["summaries"]}
        for sex, parts in released.items():
            n = sum(p[0] for p in parts)
            self.assertEqual(pooled[sex]["n"], n)
            self.assertAlmostEqual(pooled[sex]["mean"], sum(a * b for a, b in parts) / n,
                                   places=6)
            self.assertNotIn("quantiles", pooled[sex])
        self.assertTrue(released, "some stratum should be released")

    def test_c_summary_csv_and_table(self):
        p = self.sb.query(os.path.join(EXAMPLES, "summary-hba1c-by-sex.json"), fmt="csv")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith("site,site_status,sex,n,n_status,mean,mean_status,"
                                            "sd,sd_status,p25,p50,p75,partial"), p.stdout[:200])
        p = self.sb.query(os.path.join(EXAMPLES, "summary-hba1c-by-sex.json"), fmt="table")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("median", p.stdout)
        self.assertIn("pooled", p.stdout)

    def refused_by_cli(self, spec, want):
        p = self.sb.cli("query", "-", input=spec if isinstance(spec, str) else json.dumps(spec))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(want, p.stderr)

    def test_d_hostile_specs(self):
        base = load("count-gi-bleed-after-nsaid.json")
        nested = ('{"kind":"count","project":"demo","dataset":"omop","cohort":{"index":'
                  '{"domain":"drug","concepts":[1]},"all":[' + '{"not":' * 10000 +
                  '{"domain":"drug","concepts":[1]}' + '}' * 10000 + ']}}')
        self.refused_by_cli(nested, "nested more than 64 levels deep")
        bad = json.loads(json.dumps(base))
        bad["cohort"]["all"][0]["window"] = {"start_days": 30, "end_days": -30}
        self.refused_by_cli(bad, "start_days (30) is after end_days (-30)")
        bad = json.loads(json.dumps(base))
        bad["cohort"]["index"]["domain"] = "drug_exposure; DROP TABLE person"
        self.refused_by_cli(bad, "unknown domain")
        # A valid spec a site does not allow: care_site is opt-in per dataset.
        cs = {"kind": "count", "project": "demo", "dataset": "omop",
              "cohort": {"all": [{"domain": "condition", "concepts": [201826]}]},
              "by": ["care_site"]}
        d = self.sb.query(cs)
        for site, s in self.by_site(d).items():
            self.assertEqual(s["status"], "refused", site)
            self.assertIn("care_site", s["reason"])
        # An unknown concept in an exclusion is refused by each site.
        unk = {"kind": "count", "project": "demo", "dataset": "omop",
               "cohort": {"all": [{"domain": "condition", "concepts": [201826],
                                   "exclude": [1999999999]}]}}
        d = self.sb.query(unk)
        for site, s in self.by_site(d).items():
            self.assertEqual(s["status"], "refused", site)
            self.assertIn("unknown concept id 1999999999", s["reason"])
        for site in SITES:
            self.assertTrue(self.sb.alive(site), site)

    def test_e_old_specs_unchanged(self):
        d = self.sb.query(os.path.join(EXAMPLES, "count-t2dm-by-sex-age.json"))
        for site, s in self.by_site(d).items():
            self.assertEqual(s["status"], "ok", site)
            bands = {c["strata"]["age_band"] for c in s["cells"]}
            self.assertIn("90+", bands)
            self.assertIn("40-49", bands)
