"""tests/integration/test_validate_more.py — issue 5 items 3/4 of `validate` end to end.

Three sites. Each gets a copy of its OMOP file with a `predictions` table
written here: two model versions per person (v1 a noisier score than v2;
every 7th person has a v2 row only), a label from a known model, a
prediction date spread over 2016-2017, a `region` category (site-a: a
level with 9 events) and 30 persons who are not in OMOP's person table
(5 events). Checked against independent Python computations over the same
rows:

* compare_versions: the persons with both versions are paired; each
  group's AUCs, difference, paired DeLong SE (structural components
  computed here), CI and p-value; a small subgroup's comparison is
  withheld with it; the pooled difference is DerSimonian-Laird over the
  sites' released differences;
* the score histogram: bins partition [0, 1], every released count passes
  the count rules (never 1..min_cell-1) and equals the rounded true count;
  the site ROC is computed from those counts; the pooled ROC's trapezoid
  area is `roc_auc` and lies near the whole-data AUC;
* quantile calibration bins: edges are the site's score quantiles rounded
  to 3 decimals, counts follow the bin rules; they are not pooled (a note
  says so);
* OMOP subgroups: sex from person.gender_concept_id and the age band at
  the prediction date (age_band_width 20); persons missing from `person`
  are "unknown", withheld (5 events), with a complementary level;
* spec errors name the field.
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
Z = 1.959963984540054
MALE, FEMALE = 8507, 8532


def expit(x):
    return 1.0 / (1.0 + math.exp(-x))


def components(scores, labels):
    """DeLong structural components: V10 per event, V01 per non-event."""
    pos = sorted(s for s, y in zip(scores, labels) if y)
    neg = sorted(s for s, y in zip(scores, labels) if not y)
    m, k = len(pos), len(neg)
    out = []
    for s, y in zip(scores, labels):
        if y:
            lo, hi = bisect.bisect_left(neg, s), bisect.bisect_right(neg, s)
            out.append((lo + 0.5 * (hi - lo)) / k)
        else:
            lo, hi = bisect.bisect_left(pos, s), bisect.bisect_right(pos, s)
            out.append(((m - hi) + 0.5 * (hi - lo)) / m)
    return out


def auc_of(scores, labels):
    c = components(scores, labels)
    ev = [v for v, y in zip(c, labels) if y]
    return sum(ev) / len(ev)


def paired_delong(sa, sb, labels):
    ca, cb = components(sa, labels), components(sb, labels)
    var = 0.0
    for lab in (1, 0):
        xa = [v for v, y in zip(ca, labels) if y == lab]
        xb = [v for v, y in zip(cb, labels) if y == lab]
        n = len(xa)
        ma, mb = sum(xa) / n, sum(xb) / n
        saa = sum((a - ma) ** 2 for a in xa) / (n - 1)
        sbb = sum((b - mb) ** 2 for b in xb) / (n - 1)
        sab = sum((a - ma) * (b - mb) for a, b in zip(xa, xb)) / (n - 1)
        var += (saa + sbb - 2 * sab) / n
    a = sum(v for v, y in zip(ca, labels) if y) / sum(labels)
    b = sum(v for v, y in zip(cb, labels) if y) / sum(labels)
    se = math.sqrt(var)
    p = math.erfc(abs((b - a) / se) / math.sqrt(2))
    return a, b, b - a, se, p


def dl(y, v):
    w = [1 / x for x in v]
    yf = sum(a * b for a, b in zip(w, y)) / sum(w)
    q = sum(a * (b - yf) ** 2 for a, b in zip(w, y))
    c = sum(w) - sum(x * x for x in w) / sum(w)
    tau2 = max(0.0, (q - (len(y) - 1)) / c) if c > 0 else 0.0
    ws = [1 / (x + tau2) for x in v]
    mu = sum(a * b for a, b in zip(ws, y)) / sum(ws)
    return mu, math.sqrt(1 / sum(ws))


def age_band(yob, mob, dob, day, w=20):
    if yob is None:
        return "unknown"
    age = day.year - yob - (1 if (day.month, day.day) < (mob or 1, dob or 1) else 0)
    top = (90 // w) * w
    if age < 0:
        return "unknown"
    if age >= top:
        return "%d+" % top
    return "%d-%d" % (age // w * w, age // w * w + w - 1)


TABLE = """
[dataset preds]
type = table
backend = sqlite
path = %s
table = predictions
column.person_id = identifier
column.score = score
column.label = label
column.prediction_date = date
column.region = category
column.model_version = model_version
"""


class ValidateMoreTest(SandboxTestCase):
    SANDBOX_ARGS = dict(sites=3, seed=43, persons=3000)

    @classmethod
    def prepare(cls):
        sb = cls.sb
        cls.rows = {}
        for n, site in enumerate(SITES):
            dst = sb.path("preds2-%s.sqlite" % site)
            shutil.copyfile(sb.db_path(site), dst)
            cls.rows[site] = cls.write_predictions(dst, n, site == "site-a")
            with open(sb.path("agent-%s.conf" % site), "a") as f:
                f.write(TABLE % dst)
            off = sb.log_size(site)
            os.kill(sb.pid(site), signal.SIGHUP)
            wait_until(lambda: "configuration reloaded" in sb.log_since(site, off), 15,
                       what="%s reload" % site)

    @classmethod
    def write_predictions(cls, path, seed, rare):
        """rows: dicts with pid, day, label, v1, v2 (None: no row), region,
        sex, band (from OMOP, as the agent must derive them)."""
        rng = random.Random(2000 + seed)
        db = sqlite3.connect(path)
        persons = db.execute("SELECT person_id, gender_concept_id, year_of_birth, "
                             "month_of_birth, day_of_birth FROM person "
                             "ORDER BY person_id").fetchall()
        rows = []
        base = datetime.date(2016, 1, 1)
        for pid, gender, yob, mob, dob in persons:
            day = base + datetime.timedelta(days=rng.randrange(730))
            age = day.year - (yob or 1970)
            eta = -1.4 + 0.03 * (age - 50) + 0.5 * (gender == MALE)
            label = 1 if rng.random() < expit(eta) else 0
            v2 = round(expit(eta + rng.gauss(0, 0.5)), 6)
            v1 = None if pid % 7 == 0 else round(expit(eta + rng.gauss(0, 1.4)), 6)
            sex = {MALE: "male", FEMALE: "female"}.get(gender, "unknown")
            rows.append(dict(pid=pid, day=day, label=label, v1=v1, v2=v2, region="common",
                             sex=sex, band=age_band(yob, mob, dob, day)))
        # 30 persons the OMOP person table does not know (5 events)
        top = max(r["pid"] for r in rows)
        for i in range(30):
            day = base + datetime.timedelta(days=rng.randrange(730))
            rows.append(dict(pid=top + 1000 + i, day=day, label=1 if i < 5 else 0,
                             v1=round(rng.random(), 6), v2=round(rng.random(), 6),
                             region="common", sex="unknown", band="unknown"))
        if rare:   # 9 events + 40 non-events in "rare" (all with both versions)
            both = [r for r in rows if r["v1"] is not None and r["sex"] != "unknown"]
            ev = [r for r in both if r["label"]][:9]
            ne = [r for r in both if not r["label"]][:40]
            for r in ev + ne:
                r["region"] = "rare"
        db.execute("CREATE TABLE predictions (person_id INTEGER, score REAL, label INTEGER, "
                   "prediction_date TEXT, region TEXT, model_version TEXT)")
        out = []
        for r in rows:
            for ver in ("v1", "v2"):
                if r[ver] is not None:
                    out.append((r["pid"], r[ver], r["label"], r["day"].isoformat(),
                                r["region"], ver))
        rng.shuffle(out)
        db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)", out)
        db.commit()
        db.close()
        return rows

    def spec(self, **v):
        body = {"thresholds": [0.2, 0.4]}
        body.update(v)
        return {"kind": "validate", "project": "demo", "dataset": "preds", "validate": body}

    def sites(self, d):
        return {s["site"]: s for s in d["sites"]}

    def group(self, s, strata):
        for g in s["validations"]:
            if g["strata"] == strata:
                return g
        self.fail("no group %r" % (strata,))

    # ---- compare_versions ----

    def test_compare_versions(self):
        d = self.sb.query(self.spec(compare_versions=["v1", "v2"], by=["region"]))
        sites = self.sites(d)
        diffs = []
        for site in SITES:
            s = sites[site]
            self.assertEqual(s["status"], "ok", s)
            mc, rd = s["policy"]["min_cell"], s["policy"]["rounding"]
            paired = [r for r in self.rows[site] if r["v1"] is not None]
            labels = [r["label"] for r in paired]
            a, b, diff, se, p = paired_delong([r["v1"] for r in paired],
                                              [r["v2"] for r in paired], labels)
            g = self.group(s, {})
            self.assertEqual(g["n"], expected_release(len(paired), mc, rd)[0])
            self.assertLessEqual(abs(g["auc"] - b), 5.1e-5)   # the rest describes version b
            c = g["comparison"]
            self.assertTrue(c["released"], c)
            self.assertEqual((c["version_a"], c["version_b"]), ("v1", "v2"))
            self.assertLessEqual(abs(c["auc_a"] - a), 5.1e-5)
            self.assertLessEqual(abs(c["auc_b"] - b), 5.1e-5)
            self.assertLessEqual(abs(c["diff"] - diff), 5.1e-5)
            self.assertLessEqual(abs(c["diff_se"] - se), se * 1e-3)
            self.assertLessEqual(abs(c["diff_ci"][0] - (diff - Z * se)), 2e-4)
            self.assertLessEqual(abs(c["diff_ci"][1] - (diff + Z * se)), 2e-4)
            self.assertLessEqual(abs(c["p_value"] - p), max(1e-4, p * 1e-2))
            self.assertGreater(c["diff"], 0.02)   # v2 is the better score here
            diffs.append((c["diff"], c["diff_se"]))
            if site == "site-a":
                rare = self.group(s, {"region": "rare"})
                self.assertFalse(rare["released"])
                self.assertFalse(rare["comparison"]["released"])
                self.assertIsNone(rare["comparison"]["diff"])
                self.assertNotIn("auc", rare)
        pooled = [x for x in d["pooled"]["validations"] if x["strata"] == {}][0]
        pc = pooled["comparison"]
        mu, se = dl([x for x, _ in diffs], [s * s for _, s in diffs])
        self.assertEqual(pc["sites"], 3)
        self.assertAlmostEqual(pc["diff"], mu, places=9)
        self.assertAlmostEqual(pc["diff_se"], se, places=9)
        self.assertAlmostEqual(pc["diff_ci"][0], mu - Z * se, places=9)
        self.assertAlmostEqual(pc["auc_b"] - pc["auc_a"], pc["diff"], places=9)
        t = self.sb.query(self.spec(compare_versions=["v1", "v2"], by=["region"]), fmt="table")
        self.assertEqual(t.returncode, 0, t.stderr)
        self.assertIn("AUC v2 - v1", t.stdout)
        c = self.sb.query(self.spec(compare_versions=["v1", "v2"], bins=4), fmt="csv")
        self.assertEqual(c.returncode, 0, c.stderr)
        head = c.stdout.splitlines()[0].split(",")
        self.assertEqual(head[-6:], ["roc_auc", "roc_auc_max_error", "auc_diff", "auc_diff_lo",
                                     "auc_diff_hi", "auc_diff_p"])
        for line in c.stdout.splitlines()[1:]:
            self.assertEqual(len(line.split(",")), len(head), line)

    # ---- histogram and ROC ----

    def test_histogram_and_roc(self):
        d = self.sb.query(self.spec(model_version="v2", histogram_bins=50))
        sites = self.sites(d)
        all_s, all_y = [], []
        for site in SITES:
            s = sites[site]
            self.assertEqual(s["status"], "ok", s)
            mc, rd = s["policy"]["min_cell"], s["policy"]["rounding"]
            rows = self.rows[site]
            scores = [r["v2"] for r in rows]
            labels = [r["label"] for r in rows]
            all_s += scores
            all_y += labels
            g = self.group(s, {})
            h = g["histogram"]
            self.assertGreater(len(h), 3)
            self.assertEqual(h[0]["lo"], 0.0)
            self.assertEqual(h[-1]["hi"], 1.0)
            for x, y in zip(h, h[1:]):
                self.assertEqual(x["hi"], y["lo"])
            for i, b in enumerate(h):
                top = i == len(h) - 1
                inb = [(sc, y) for sc, y in zip(scores, labels)
                       if b["lo"] <= sc and (sc < b["hi"] or top)]
                e = sum(y for _, y in inb)
                ne = len(inb) - e
                for got, true in ((b["events"], e), (b["nonevents"], ne)):
                    self.assertFalse(0 < true < mc, b)   # coarsened: never a small count
                    self.assertFalse(got is not None and 0 < got < mc, b)
                    self.assertEqual(got, expected_release(true, mc, rd)[0], (b, true))
            # the site ROC from the released counts
            te = sum(b["events"] for b in h)
            tn = sum(b["nonevents"] for b in h)
            roc = g["roc"]
            self.assertEqual(len(roc), len(h) + 1)
            self.assertEqual(roc[0][:2], [0.0, 0.0])
            self.assertEqual(roc[-1][:2], [1.0, 1.0])
            ce = cn = 0
            for k, b in enumerate(reversed(h)):
                ce += b["events"]
                cn += b["nonevents"]
                pt = roc[k + 1]
                self.assertAlmostEqual(pt[0], round(cn / tn, 4), places=9)
                self.assertAlmostEqual(pt[1], round(ce / te, 4), places=9)
                self.assertEqual(pt[2], b["lo"])
            # every released threshold: no piece of a histogram bin it cuts is small
            for t in g["thresholds"]:
                if t["tp"] is None:
                    continue
                for b in h:
                    if b["lo"] < t["threshold"] < b["hi"]:
                        for lo, hi in ((b["lo"], t["threshold"]), (t["threshold"], b["hi"])):
                            e = sum(1 for sc, y in zip(scores, labels) if y and lo <= sc < hi)
                            ne = sum(1 for sc, y in zip(scores, labels)
                                     if not y and lo <= sc < hi)
                            self.assertFalse(0 < e < mc or 0 < ne < mc)
        pooled = [x for x in d["pooled"]["validations"] if x["strata"] == {}][0]
        self.assertEqual(pooled["roc_sites"], 3)
        pts = pooled["roc"]
        area = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(pts, pts[1:]))
        self.assertAlmostEqual(area, pooled["roc_auc"], places=9)
        self.assertGreater(pooled["roc_auc_max_error"], 0)
        self.assertLess(pooled["roc_auc_max_error"], 0.1)
        # rounding (to 5) is outside the bound: allow it separately
        self.assertLess(abs(pooled["roc_auc"] - auc_of(all_s, all_y)),
                        pooled["roc_auc_max_error"] + 0.01)
        t = self.sb.query(self.spec(model_version="v2", histogram_bins=50), fmt="table")
        self.assertIn("ROC from 3 site histograms", t.stdout)

    # ---- quantile bins ----

    def test_quantile_bins(self):
        d = self.sb.query(self.spec(model_version="v2", bin_mode="quantile", bins=5))
        sites = self.sites(d)
        for site in SITES:
            s = sites[site]
            self.assertEqual(s["status"], "ok", s)
            mc, rd = s["policy"]["min_cell"], s["policy"]["rounding"]
            rows = self.rows[site]
            scores = sorted(r["v2"] for r in rows)
            edges = [0.0]
            for k in range(1, 5):
                at = k * len(scores) // 5   # the mean of 10 order statistics around it
                e = math.floor(sum(scores[at - 5:at + 5]) / 10 * 1000 + 0.5) / 1000
                if edges[-1] < e < 1.0:
                    edges.append(e)
            edges.append(1.0)
            g = self.group(s, {})
            self.assertEqual(g["bin_mode"], "quantile")
            self.assertEqual([b["lo"] for b in g["bins"]] + [g["bins"][-1]["hi"]], edges)
            for b in g["bins"]:
                inb = [r for r in rows if b["lo"] <= r["v2"] < b["hi"] or
                       (b["hi"] == 1.0 and r["v2"] == 1.0)]
                n, e = len(inb), sum(r["label"] for r in inb)
                ok = all(expected_release(x, mc, rd)[1] != "suppressed" for x in (n, e, n - e))
                if ok and b["n"] is not None:
                    self.assertEqual(b["n"], expected_release(n, mc, rd)[0])
                    self.assertEqual(b["events"], expected_release(e, mc, rd)[0])
        pooled = [x for x in d["pooled"]["validations"] if x["strata"] == {}][0]
        self.assertEqual(pooled["bins"], [])
        self.assertIn("not pooled", pooled["bins_note"])
        self.assertIsNotNone(pooled["auc"])

    # ---- OMOP subgroups ----

    def test_omop_subgroups(self):
        spec = self.spec(model_version="v2", by=["sex", "age_band"], subgroups_from="omop")
        spec["age_band_width"] = 20
        d = self.sb.query(spec)
        sites = self.sites(d)
        for site in SITES:
            s = sites[site]
            self.assertEqual(s["status"], "ok", s)
            mc, rd = s["policy"]["min_cell"], s["policy"]["rounding"]
            rows = self.rows[site]
            for col in ("sex", "band"):
                name = "sex" if col == "sex" else "age_band"
                levels = sorted({r[col] for r in rows})
                got = {g["strata"][name]: g for g in s["validations"]
                       if name in g["strata"]}
                self.assertEqual(sorted(got), levels)
                unknown = got["unknown"]   # 30 persons, 5 events
                self.assertFalse(unknown["released"])
                self.assertIn("min_cell", unknown["withheld_reason"])
                complementary = 0
                for lv, g in got.items():
                    sub = [r for r in rows if r[col] == lv]
                    e = sum(r["label"] for r in sub)
                    if e < mc or len(sub) - e < mc:
                        self.assertFalse(g["released"], lv)
                        continue
                    if not g["released"]:
                        self.assertIn("complementary", g["withheld_reason"])
                        complementary += 1
                        continue
                    self.assertEqual(g["n"], expected_release(len(sub), mc, rd)[0], lv)
                    self.assertEqual(g["events"], expected_release(e, mc, rd)[0], lv)
                    auc = auc_of([r["v2"] for r in sub], [r["label"] for r in sub])
                    self.assertLessEqual(abs(g["auc"] - auc), 5.1e-5, lv)
                self.assertGreaterEqual(complementary, 1)   # the unknowns need company
        # pooled per level over the sites that released it; never "unknown"
        pooled = {tuple(sorted(p["strata"].items())): p for p in d["pooled"]["validations"]}
        self.assertTrue(any(k and k[0][0] == "age_band" for k in pooled), pooled.keys())
        self.assertNotIn((("sex", "unknown"),), pooled)
        for k, p in pooled.items():
            released = sum(1 for site in SITES for g in sites[site]["validations"]
                           if tuple(sorted(g["strata"].items())) == k and g["released"])
            self.assertEqual(p["sites"], released, k)

    # ---- spec errors ----

    def test_spec_errors(self):
        cases = [
            (dict(compare_versions=["v1", "v2"], model_version="v1"),
             "validate.compare_versions"),
            (dict(compare_versions=["v1"]), "validate.compare_versions"),
            (dict(bin_mode="deciles"), "validate.bin_mode"),
            (dict(histogram_bins=5), "validate.histogram_bins"),
            (dict(subgroups_from="omop", by=["region"]), "validate.subgroups_from"),
        ]
        for body, field in cases:
            p = self.sb.query(self.spec(**body), fmt="table")
            self.assertNotEqual(p.returncode, 0, body)
            self.assertIn(field, p.stderr, body)
        # the agent refuses an OMOP subgroup source it does not have
        d = self.sb.query(self.spec(model_version="v2", by=["sex"], subgroups_from="nosuch"),
                          sites=["site-a"])
        s = self.sites(d)["site-a"]
        self.assertEqual(s["status"], "refused", s)
        self.assertIn("subgroups_from", s["reason"])
        self.assertTrue(self.sb.all_alive())
