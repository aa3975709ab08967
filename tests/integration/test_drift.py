"""tests/integration/test_drift.py — drift monitors of a risk score (issue 6 item 3).

Three sites, each with a predictions table written here (person_id, score,
label, prediction_date) covering 2025-01..2025-12, plus decoy rows dated
2024-12 whose scores run the wrong way. Up to July 2025 the score is the
true risk (AUC about 0.8, calibration slope about 1); from August 2025 on
the outcome depends much more weakly on the score (the model has drifted:
AUC about 0.6, slope about 0.35). A drift monitor by month with an agreed
band (AUC >= 0.7, slope 0.75..1.25) must alert at 2025-08 and not before,
for both metrics, with the alert also handed to alert_command; one site
goes offline and the coordinator restarts mid-way, and every month must
still be counted exactly once, in order. A validate query with `from`/`to`
must count only the rows dated in that range (and is refused on a table
without a date column); bad dates and monitors without a band are refused
clearly.
"""

import json
import math
import os
import random
import shutil
import signal
import tempfile
import time
import unittest

from sandbox import Sandbox, add_predictions_args, expected_release, wait_until, \
    write_predictions_csv

SITES = ["site-a", "site-b", "site-c"]
ROWS_PER_MONTH = 400
BAD_FROM = 8          # 2025-08: the first drifted month
MONTHS = ["2025-%02d" % m for m in range(1, 13)]


def expit(x):
    return 1.0 / (1.0 + math.exp(-x))


def make_rows(seed):
    rng = random.Random(seed)
    rows = []
    pid = 1
    # decoys before the monitored range: inverted scores
    for _ in range(200):
        eta = rng.gauss(-1.0, 1.2)
        label = 1 if rng.random() < expit(eta) else 0
        rows.append((pid, expit(-eta), label, "2024-12-%02d" % rng.randint(1, 31)))
        pid += 1
    for month in range(1, 13):
        for _ in range(ROWS_PER_MONTH):
            eta = rng.gauss(-1.0, 1.2)
            true_eta = eta if month < BAD_FROM else -1.0 + 0.35 * (eta + 1.0)
            label = 1 if rng.random() < expit(true_eta) else 0
            rows.append((pid, expit(eta), label,
                         "2025-%02d-%02d" % (month, rng.randint(1, 28))))
            pid += 1
    return rows


class DriftTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sdefed-it-drift-")
        cls.sb = None
        try:
            cls.rows = {}
            csvs = {}
            for n, site in enumerate(SITES):
                cls.rows[site] = make_rows(7000 + n)
                csvs[site] = write_predictions_csv(
                    os.path.join(cls.tmp, "%s.csv" % site), cls.rows[site],
                    header=("person_id", "score", "label", "prediction_date"))
            # A strict repeat limit: each site may answer the same question
            # only 3 times. A period left incomplete by an offline site is
            # re-asked of that site alone (the others' answers are kept), so
            # the others never reach the limit however long it is away; were
            # they asked again, they would refuse and their numbers would be
            # missing from the look.
            cls.sb = Sandbox(sites=3, seed=5, persons=200, timeout=60,
                             disclosure={"max_identical": 3})
            add_predictions_args(cls.sb, csvs)
            cls.sb.up()
            # alert_command: a script (no shell involved) saving each alert to a file
            cls.alert_dir = os.path.join(cls.tmp, "alerts")
            os.mkdir(cls.alert_dir)
            script = os.path.join(cls.tmp, "alert.sh")
            with open(script, "w") as f:
                f.write("#!/bin/sh\ncat > \"$1/.a-$$\" && mv \"$1/.a-$$\" \"$1/a-$$.json\"\n")
            os.chmod(script, 0o755)
            conf = cls.sb.path("coordinator.conf")
            with open(conf) as f:
                text = f.read()
            text = text.replace("[coordinator]\n", "[coordinator]\nalert_command = %s %s\n"
                                % (script, cls.alert_dir), 1)
            with open(conf, "w") as f:
                f.write(text)
            cls.sb.stop("coordinator")
            cls.sb.start("coordinator")
            cls.sb.wait_online(cls.sb.sites)
            # site-a also declares the same table without its date column
            off = cls.sb.log_size("site-a")
            with open(cls.sb.path("agent-site-a.conf"), "a") as f:
                f.write("\n[dataset nodate]\ntype = table\nbackend = sqlite\npath = %s\n"
                        "table = predictions\ncolumn.person_id = identifier\n"
                        "column.score = score\ncolumn.label = label\n"
                        % cls.sb.path("data", "preds-site-a.sqlite"))
            os.kill(cls.sb.pid("site-a"), signal.SIGHUP)
            wait_until(lambda: "configuration reloaded" in cls.sb.log_since("site-a", off), 15,
                       what="site-a reload")
        except BaseException:
            if cls.sb is not None:
                cls.sb.down()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        reports = cls.sb.down() if cls.sb is not None else []
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if reports:
            raise AssertionError("sanitizer reports in daemon logs:\n" + "\n".join(reports[:40]))

    def write_spec(self, name, **v):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            json.dump({"kind": "validate", "project": "demo", "dataset": "preds",
                       "validate": v}, f)
        return path

    def show(self, mid):
        return self.sb.cli_json("monitor", "show", mid)

    def test_a_date_range_restricts_rows(self):
        d = self.sb.query({"kind": "validate", "project": "demo", "dataset": "preds",
                           "validate": {"from": "2025-03-01", "to": "2025-04-30"}})
        for s in d["sites"]:
            self.assertEqual(s["status"], "ok", s)
            g = [x for x in s["validations"] if not x["strata"]][0]
            rows = [r for r in self.rows[s["site"]] if "2025-03-01" <= r[3] <= "2025-04-30"]
            self.assertEqual(g["n"], expected_release(len(rows))[0])
            self.assertEqual(g["events"], expected_release(sum(r[2] for r in rows))[0])
            self.assertGreater(g["auc"], 0.7)   # the decoys (inverted) are not in it
        # no rows in the range: a clear refusal, not an error
        d = self.sb.query({"kind": "validate", "project": "demo", "dataset": "preds",
                           "validate": {"from": "2030-01-01"}})
        self.assertTrue(all(s["status"] == "refused" for s in d["sites"]), d)
        self.assertIn("with a date in validate.from..to", d["sites"][0]["reason"])

    def test_a_no_date_column_refused(self):
        d = self.sb.query({"kind": "validate", "project": "demo", "dataset": "nodate",
                           "validate": {"to": "2025-06-30"}}, sites=["site-a"])
        s = d["sites"][0]
        self.assertEqual(s["status"], "refused", s)
        self.assertIn("validate.from/to: dataset 'nodate' declares no date column", s["reason"])
        # without dates the same table answers
        d = self.sb.query({"kind": "validate", "project": "demo", "dataset": "nodate",
                           "validate": {}}, sites=["site-a"])
        self.assertEqual(d["sites"][0]["status"], "ok", d["sites"][0])

    def test_b_bad_dates_and_monitors_refused(self):
        p = self.sb.query({"kind": "validate", "project": "demo", "dataset": "preds",
                           "validate": {"from": "2025-05-01", "to": "2025-04-30"}}, fmt="table")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("validate.to: is before from", p.stderr)
        p = self.sb.query({"kind": "validate", "project": "demo", "dataset": "preds",
                           "validate": {"from": "2025-02-30"}}, fmt="table")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("validate.from: not a date", p.stderr)
        path = self.write_spec("bad.json")
        p = self.sb.cli("monitor", "add", path, "--every", "1s", "--period", "month",
                        "--from", "2025-01-01")
        self.assertEqual(p.returncode, 2)
        self.assertIn("at least one of --auc-min", p.stderr)
        p = self.sb.cli("monitor", "add", path, "--every", "1s", "--period", "week",
                        "--from", "2025-01-01", "--auc-min", "0.7")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--period must be month, quarter or year", p.stderr)
        p = self.sb.cli("monitor", "add", path, "--every", "1s", "--period", "month",
                        "--from", "2025-01-01", "--auc-min", "0.9", "--auc-max", "0.8")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--auc-min is above --auc-max", p.stderr)
        p = self.sb.cli("monitor", "add", path, "--every", "1s", "--period", "month",
                        "--from", "2025-06-01", "--to", "2025-05-01", "--auc-min", "0.7")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--to is before --from", p.stderr)
        p = self.sb.cli("monitor", "add", path, "--every", "1s", "--period", "month",
                        "--from", "2025-01-01", "--auc-min", "0.7", "--expected", "3")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("are for surveil monitors", p.stderr)
        self.assertEqual(self.sb.cli_json("monitor", "list"), [])

    def runs_with(self, mid, outcome):
        return [r for r in self.show(mid)["runs"] if r["outcome"] == outcome]

    def test_c_drift_alert_restart_no_missed_or_doubled_period(self):
        path = self.write_spec("drift.json", thresholds=[0.3])
        m = self.sb.cli_json("monitor", "add", path, "--every", "200ms", "--period", "month",
                             "--from", "2025-01-01", "--to", "2025-12-31", "--auc-min", "0.7",
                             "--slope-min", "0.75", "--slope-max", "1.25")
        mid = m["id"]
        self.assertEqual(m["kind"], "validate")
        self.assertEqual(m["band"], {"auc_min": 0.7, "auc_max": None, "slope_min": 0.75,
                                     "slope_max": 1.25})
        self.assertNotIn("threshold", m)
        # a site goes away after a few months: those periods wait for it
        wait_until(lambda: len(self.show(mid)["looks"]) >= 2, 60, what="two looks")
        self.sb.stop("site-c")
        wait_until(lambda: len(self.runs_with(mid, "incomplete")) >= 2, 60,
                   what="two incomplete runs")
        k = len(self.show(mid)["looks"])
        self.assertLess(k, 12, "the monitor finished before site-c went away")
        # the coordinator restarts while the site is still away
        self.sb.stop("coordinator")
        self.sb.start("coordinator")
        self.sb.wait_online(["site-a", "site-b"])
        n_inc = len(self.runs_with(mid, "incomplete"))
        wait_until(lambda: len(self.runs_with(mid, "incomplete")) >= n_inc + 2, 60,
                   what="two incomplete runs after the restart")
        # more asks of that period than the repeat limit allows one site
        self.assertGreater(len(self.runs_with(mid, "incomplete")), 3)
        self.assertEqual(len(self.show(mid)["looks"]), k)
        self.sb.start("site-c")
        self.sb.wait_online(self.sb.sites)
        end = time.time() + 120
        while time.time() < end:
            m = self.show(mid)
            if m["state"] == "done":
                break
            time.sleep(0.2)
        self.assertEqual(m["state"], "done", self.sb.log_tails())
        looks = m["looks"]
        self.assertEqual([l["period"] for l in looks], MONTHS)
        self.assertEqual([l["period_index"] for l in looks], list(range(12)))
        for i, l in enumerate(looks):
            d = l["drift"]
            self.assertEqual(sorted(s["site"] for s in d["sites"]), SITES)
            self.assertTrue(all(s["released"] for s in d["sites"]), d)
            self.assertEqual(l["partial"], 0, l)
            p = d["pooled"]
            self.assertLessEqual(p["auc_lo"], p["auc"])
            self.assertLessEqual(p["auc"], p["auc_hi"])
            # the pooled slope is the n-weighted mean of the site slopes
            sl = [s["cal_slope"] for s in d["sites"]]
            self.assertTrue(min(sl) - 1e-9 <= p["cal_slope"] <= max(sl) + 1e-9, d)
            if i + 1 < BAD_FROM:
                self.assertEqual(d["out_of_band"], [], l)
                self.assertEqual(l["signal"], 0)
                self.assertGreater(p["auc"], 0.7)
            else:
                self.assertEqual(d["out_of_band"], ["auc", "cal_slope"], l)
                self.assertEqual(l["signal"], 1)
        # alerts: the first at the first drifted month, one per metric and month
        alerts = [a["alert"] for a in self.sb.cli_json("alerts") if a["alert"]["monitor"] == mid]
        self.assertEqual(len(alerts), 2 * (12 - BAD_FROM + 1))
        self.assertEqual(min(a["period"] for a in alerts), "2025-%02d" % BAD_FROM)
        first = [a for a in alerts if a["period"] == "2025-%02d" % BAD_FROM]
        self.assertEqual(sorted(a["metric"] for a in first), ["auc", "cal_slope"])
        for a in first:
            self.assertEqual(a["kind"], "validate")
            if a["metric"] == "auc":
                self.assertLess(a["value"], 0.7)
                self.assertEqual(a["band"], [0.7, None])
            else:
                self.assertLess(a["value"], 0.75)
                self.assertEqual(a["band"], [0.75, 1.25])
            self.assertTrue(set(a["sites"]) <= set(SITES) and a["sites"], a)
        self.assertIn("ALERT monitor %s period 2025-%02d" % (mid, BAD_FROM),
                      self.sb.log("coordinator"))
        # alert_command got them on its stdin
        def got():
            out = []
            for name in os.listdir(self.alert_dir):
                if name.endswith(".json"):
                    with open(os.path.join(self.alert_dir, name)) as f:
                        out.append(json.load(f))
            return out
        wait_until(lambda: len([a for a in got() if a["monitor"] == mid]) == len(alerts), 30,
                   what="alert_command output")
        self.assertEqual(min(a["period"] for a in got() if a["monitor"] == mid),
                         "2025-%02d" % BAD_FROM)
        # the table renderings
        p = self.sb.cli("monitor", "show", mid)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("band auc>=0.7 slope 0.75..1.25", p.stdout)
        self.assertIn("auc,cal_slope", p.stdout)
        lst = [x for x in self.sb.cli_json("monitor", "list") if x["id"] == mid]
        self.assertEqual(len(lst), 1)
        self.assertEqual(lst[0]["looks"], 12)
        self.assertEqual(lst[0]["alerts"], len(alerts))
        self.assertEqual(lst[0]["kind"], "validate")
        p = self.sb.cli("monitor", "list")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(mid, p.stdout)
        self.assertIn("validate", p.stdout)
        p = self.sb.cli("alerts")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("cal_slope", p.stdout)


if __name__ == "__main__":
    unittest.main()
