"""tests/integration/test_surveil.py — the `surveil` kind end to end (issue 6).

GiBleed (Eunomia, CDM 5.3) split across two sites by person id (odd/even).
Persons with a GI bleed (192671 and descendants) 0..30 days after their
first celecoxib exposure (1118084 and descendants): the agent's numbers
must equal a truth computed here in Python from plain SQL rows (after
suppression/rounding), per year and for `all`; the pooled value must be
the sum of the sites; person-time must follow the censoring rules; and
invalid specs must be refused clearly. Skipped when ../shared/data (or
$SDEFED_SHARED_DATA) is absent.
"""

import datetime
import os
import shutil
import sqlite3
import subprocess
import tempfile
import unittest

from sandbox import Sandbox, expected_release, round_half_up, shared_data_dir

XZ = os.path.join(shared_data_dir(), "gibleed", "gibleed_cdm53.sqlite.xz")
CELECOXIB = 1118084
GI_BLEED = 192671


def day(text):
    """Day number of an ISO date (differences are what matter)."""
    return datetime.date.fromisoformat(text[:10]).toordinal()


def concept_set(db, ids):
    out = set(ids)
    q = "SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id IN (%s)"
    out.update(r[0] for r in db.execute(q % ",".join("?" * len(ids)), ids))
    return out


def truth(path, ws, we, period, frm, to):
    """{period label: (persons, events, person_days)} computed independently."""
    db = sqlite3.connect(path)
    exp = concept_set(db, [CELECOXIB])
    out = concept_set(db, [GI_BLEED])
    first = {}
    for pid, d, c in db.execute("SELECT person_id, drug_exposure_start_date, drug_concept_id "
                                "FROM drug_exposure"):
        if c in exp and d:
            first[pid] = min(first.get(pid, d), d) if pid in first else d
    outcomes = {}
    for pid, d, c in db.execute("SELECT person_id, condition_start_date, condition_concept_id "
                                "FROM condition_occurrence"):
        if c in out and d:
            outcomes.setdefault(pid, []).append(day(d))
    obs = {}
    for pid, s, e in db.execute("SELECT person_id, observation_period_start_date, "
                                "observation_period_end_date FROM observation_period"):
        obs.setdefault(pid, []).append((day(s), day(e)))
    deaths = {}
    for pid, d in db.execute("SELECT person_id, death_date FROM death"):
        if d:
            deaths[pid] = min(deaths.get(pid, day(d)), day(d))
    db.close()
    res = {}
    for pid, d in first.items():
        if not (frm <= d[:10] <= to):
            continue
        idx = day(d)
        start, end = idx + ws, idx + we
        ends = [e for s, e in obs.get(pid, []) if s <= idx]
        if ends:
            end = min(end, max(ends))
        if pid in deaths:
            end = min(end, deaths[pid])
        later = [o for o in outcomes.get(pid, []) if o >= start]
        ev = False
        if later and min(later) <= end:
            ev = True
            end = min(later)
        days = end - start + 1 if end >= start else 0
        label = "all" if period == "all" else d[:4]
        p, e, t = res.get(label, (0, 0, 0))
        res[label] = (p + 1, e + int(ev), t + days)
    return res


def split_db(src, dst, parity):
    shutil.copy(src, dst)
    db = sqlite3.connect(dst)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    for t in tables:
        cols = [r[1] for r in db.execute("PRAGMA table_info(%s)" % t)]
        if "person_id" in cols:
            db.execute("DELETE FROM %s WHERE person_id %% 2 != ?" % t, (parity,))
    db.commit()
    db.close()


def spec(period="all", **kw):
    s = {"kind": "surveil", "project": "demo", "dataset": "omop",
         "exposure": {"domain": "drug", "concepts": [CELECOXIB], "descendants": True},
         "outcome": {"domain": "condition", "concepts": [GI_BLEED], "descendants": True},
         "window_days": [0, 30], "period": period, "from": "1900-01-01", "to": "2100-12-31"}
    s.update(kw)
    return s


@unittest.skipUnless(os.path.isfile(XZ), "GiBleed data not available (%s absent)" % XZ)
class SurveilTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("xz") is None:
            raise unittest.SkipTest("xz not installed")
        cls.tmp = tempfile.mkdtemp(prefix="sdefed-it-surveil-")
        cls.sb = None
        try:
            full = os.path.join(cls.tmp, "gibleed.sqlite")
            with open(full, "wb") as out:
                subprocess.run(["xz", "-dk", "-c", XZ], stdout=out, check=True, timeout=300)
            cls.dbs = {"odd": os.path.join(cls.tmp, "odd.sqlite"),
                       "even": os.path.join(cls.tmp, "even.sqlite")}
            split_db(full, cls.dbs["odd"], 1)
            split_db(full, cls.dbs["even"], 0)
            cls.full = full
            cls.sb = Sandbox(site_files=cls.dbs, timeout=60).up()
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

    def site(self, d, name):
        for s in d["sites"]:
            if s["site"] == name:
                return s
        self.fail("no site %s in %r" % (name, [s["site"] for s in d["sites"]]))

    def check_site_rows(self, rows, want):
        got = {r["period"]: r for r in rows if r["arm"] == "exposure"}
        for label, (p, e, t) in want.items():
            r = got.get(label)
            self.assertIsNotNone(r, "period %s missing" % label)
            self.assertEqual(r["persons"], expected_release(p)[0], label)
            self.assertEqual(r["events"], expected_release(e)[0], label)
            if expected_release(p)[0] is not None:
                self.assertEqual(r["person_days"], round_half_up(t, 5), label)
        return got

    def test_a_period_all_matches_direct_sql_and_pools(self):
        d = self.sb.query(spec("all"))
        self.assertEqual(d["kind"], "surveil")
        total_e = 0
        for name, path in self.dbs.items():
            s = self.site(d, name)
            self.assertEqual(s["status"], "ok", s["reason"])
            want = truth(path, 0, 30, "all", "1900-01-01", "2100-12-31")
            self.assertGreater(want["all"][1], 10, "the data should have GI bleeds after celecoxib")
            self.check_site_rows(s["surveil"], want)
            total_e += expected_release(want["all"][1])[0]
        pooled = [r for r in d["pooled"]["surveil"] if r["arm"] == "exposure"]
        self.assertEqual(len(pooled), 1)
        self.assertEqual(pooled[0]["events"], total_e)
        self.assertEqual(pooled[0]["persons"],
                         sum(self.site(d, n)["surveil"][0]["persons"] for n in self.dbs))
        self.assertEqual(pooled[0]["person_days"],
                         sum(self.site(d, n)["surveil"][0]["person_days"] for n in self.dbs))
        self.assertFalse(pooled[0]["lower_bound"])
        self.assertEqual(pooled[0]["sites"], 2)
        # the rate follows from the released numbers
        r = pooled[0]
        self.assertAlmostEqual(r["rate"], r["events"] * 1000 * 365.25 / r["person_days"], 6)
        self.assertLess(r["rate_lo"], r["rate"])
        self.assertGreater(r["rate_hi"], r["rate"])
        # the whole database, counted directly, equals the pooled events
        # up to per-site rounding
        whole = truth(self.full, 0, 30, "all", "1900-01-01", "2100-12-31")["all"]
        self.assertLessEqual(abs(pooled[0]["events"] - whole[1]), 5)

    def test_b_by_year_with_small_cells_withheld(self):
        d = self.sb.query(spec("year", **{"from": "1950-01-01", "to": "2019-12-31"}))
        for name, path in self.dbs.items():
            s = self.site(d, name)
            self.assertEqual(s["status"], "ok", s["reason"])
            want = truth(path, 0, 30, "year", "1950-01-01", "2019-12-31")
            got = self.check_site_rows(s["surveil"], want)
            self.assertEqual(len(got), 70)
            for label, r in got.items():
                if r["events"] is None:
                    self.assertIsNone(r["rate"], "rate from a suppressed count: %s" % label)
                if r["persons"] is None:
                    self.assertIsNone(r["person_days"], label)

    def test_c_comparator_and_formats(self):
        s = spec("all", comparator={"domain": "drug", "concepts": [1124300],
                                    "descendants": True})
        d = self.sb.query(s)
        rows = d["pooled"]["surveil"]
        arms = sorted(r["arm"] for r in rows)
        self.assertEqual(arms, ["comparator", "exposure"])
        e = [r for r in rows if r["arm"] == "exposure"][0]
        c = [r for r in rows if r["arm"] == "comparator"][0]
        if e["rate"] and c["rate"]:
            self.assertAlmostEqual(e["rate_ratio"], e["rate"] / c["rate"], 6)
            self.assertLess(e["rr_lo"], e["rate_ratio"])
        p = self.sb.query(s, fmt="csv")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith("site,period,arm,"))
        self.assertIn("pooled,all,exposure", p.stdout)
        p = self.sb.query(s, fmt="table")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("per 1,000 person-years", p.stdout)

    def test_e_differencing_two_populations_one_person_apart(self):
        # first-exposure dates at site "odd": a `to` just before the last
        # one leaves out exactly the persons first exposed on that day
        db = sqlite3.connect(self.dbs["odd"])
        exp = concept_set(db, [CELECOXIB])
        first = {}
        for pid, d, c in db.execute("SELECT person_id, drug_exposure_start_date, "
                                    "drug_concept_id FROM drug_exposure"):
            if c in exp and d and (pid not in first or d < first[pid]):
                first[pid] = d[:10]
        db.close()
        days = sorted(first.values())
        last = days[-1]
        n_last = days.count(last)
        self.assertLess(n_last, 10)
        before = (datetime.date.fromisoformat(last) - datetime.timedelta(days=1)).isoformat()
        a = self.sb.query(spec("all", **{"from": "1990-01-01", "to": last}), sites=["odd"])
        self.assertEqual(self.site(a, "odd")["status"], "ok", self.site(a, "odd")["reason"])
        b = self.sb.query(spec("all", **{"from": "1990-01-01", "to": before}), sites=["odd"])
        s = self.site(b, "odd")
        self.assertEqual(s["status"], "refused")
        self.assertIn("differencing", s["reason"])
        self.assertEqual(s.get("surveil", []), [])

    def refused(self, s, want):
        import json
        p = self.sb.cli("query", "-", input=json.dumps(s))
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn(want, p.stderr)

    def test_f_coordinator_side_refusal_keeps_it_running(self):
        import json
        p = self.sb.cli("query", "-", "--sites", "nosuch", input=json.dumps(spec("all")))
        self.assertEqual(p.returncode, 1)
        self.assertIn("unknown site", p.stderr)
        self.assertTrue(self.sb.alive("coordinator"))
        d = self.sb.query(spec("all", **{"from": "2001-01-01"}))
        self.assertEqual(d["kind"], "surveil")

    def test_d_invalid_specs_refused(self):
        self.refused(spec("all", window_days=[30, 0]), "window_days: end (0) is before start")
        self.refused(spec("fortnight"), "period: unknown period")
        self.refused(spec("all", **{"from": "2020-01-01", "to": "2019-01-01"}),
                     "to: is before from")
        self.refused(spec("all", **{"from": "2019-02-30"}), "from: not a date")
        s = spec("all")
        del s["outcome"]
        self.refused(s, "outcome: required")


def read_json_file(path):
    import json
    with open(path) as f:
        return json.load(f)


@unittest.skipUnless(os.path.isfile(XZ), "GiBleed data not available (%s absent)" % XZ)
class MonitorTest(unittest.TestCase):
    """Standing monitors: catch-up, restart without a missed or doubled
    period, MaxSPRT alert with alert_command. Exact disclosure settings
    (min_cell 1, rounding 1) so yearly counts of one site are released."""

    @classmethod
    def setUpClass(cls):
        if shutil.which("xz") is None:
            raise unittest.SkipTest("xz not installed")
        cls.tmp = tempfile.mkdtemp(prefix="sdefed-it-monitor-")
        cls.sb = None
        try:
            full = os.path.join(cls.tmp, "gibleed.sqlite")
            with open(full, "wb") as out:
                subprocess.run(["xz", "-dk", "-c", XZ], stdout=out, check=True, timeout=300)
            dbs = {"odd": os.path.join(cls.tmp, "odd.sqlite"),
                   "even": os.path.join(cls.tmp, "even.sqlite")}
            split_db(full, dbs["odd"], 1)
            split_db(full, dbs["even"], 0)
            cls.sb = Sandbox(site_files=dbs, timeout=60, min_cell=1, rounding=1).up()
            # alert_command: a script (run without a shell) saving the alert
            cls.alert_out = os.path.join(cls.tmp, "alert.json")
            script = os.path.join(cls.tmp, "alert.sh")
            with open(script, "w") as f:
                f.write("#!/bin/sh\ncat > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"\necho saved\n")
            os.chmod(script, 0o755)
            conf = cls.sb.path("coordinator.conf")
            with open(conf) as f:
                text = f.read()
            text = text.replace("[coordinator]\n", "[coordinator]\nalert_command = %s %s\n"
                                % (script, cls.alert_out), 1)
            with open(conf, "w") as f:
                f.write(text)
            cls.sb.stop("coordinator")
            cls.sb.start("coordinator")
            cls.sb.wait_online(cls.sb.sites)
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

    def write_spec(self, name, **kw):
        import json
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            json.dump(spec(**kw), f)
        return path

    def show(self, mid):
        return self.sb.cli_json("monitor", "show", mid)

    def wait_state(self, mid, states, timeout=60):
        import time
        end = time.time() + timeout
        while time.time() < end:
            m = self.show(mid)
            if m["state"] in states:
                return m
            time.sleep(0.2)
        self.fail("monitor %s still %s after %ds:\n%s" % (mid, m["state"], timeout,
                                                           self.sb.log_tails()))

    def test_a_maxsprt_alert_runs_alert_command(self):
        path = self.write_spec("a.json", period="year", **{"from": "1990-01-01",
                                                           "to": "1999-12-31"})
        m = self.sb.cli_json("monitor", "add", path, "--every", "200ms", "--expected", "1",
                             "--alpha", "0.05", "--length", "20")
        mid = m["id"]
        self.assertEqual(m["test"], "maxsprt")
        self.assertAlmostEqual(m["threshold"], 3.628, places=2)   # Kulldorff 2011, T = 20
        m = self.wait_state(mid, ("signalled",))
        looks = m["looks"]
        self.assertGreaterEqual(len(looks), 1)
        last = looks[-1]
        self.assertEqual(last["signal"], 1)
        self.assertGreaterEqual(last["statistic"], m["threshold"])
        # no look before the alerting one signalled
        self.assertTrue(all(l["signal"] == 0 for l in looks[:-1]))
        # the pooled series is the sum of the per-site series
        for l in looks:
            per_site = [s["events"] for s in l["sites"] if "events" in s]
            self.assertEqual(sum(per_site), l["events"], l)
        alerts = self.sb.cli_json("alerts")
        mine = [a for a in alerts if a["alert"]["monitor"] == mid]
        self.assertEqual(len(mine), 1)
        al = mine[0]["alert"]
        self.assertEqual(al["period"], last["period"])
        self.assertGreaterEqual(al["statistic"], al["threshold"])
        self.assertTrue(set(al["sites"]) <= {"odd", "even"} and al["sites"])
        # alert_command got the same alert on its stdin
        from sandbox import wait_until
        wait_until(lambda: os.path.exists(self.alert_out), 15, what="alert_command output")
        got = read_json_file(self.alert_out)
        self.assertEqual(got["monitor"], mid)
        self.assertEqual(got["period"], al["period"])
        # the script writes the file before it exits: wait for the exit too
        wait_until(lambda: "alert_command finished" in self.sb.log("coordinator"), 15,
                   what="coordinator to reap alert_command")
        self.assertIn("ALERT monitor %s" % mid, self.sb.log("coordinator"))
        p = self.sb.cli("alerts")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(mid, p.stdout)

    def test_b_restart_no_missed_or_doubled_period(self):
        path = self.write_spec("b.json", period="quarter", **{"from": "1995-01-01",
                                                              "to": "1999-12-31"})
        m = self.sb.cli_json("monitor", "add", path, "--every", "300ms", "--test", "cusum",
                             "--expected", "1000000")
        mid = m["id"]
        from sandbox import wait_until
        wait_until(lambda: len(self.show(mid)["looks"]) >= 3, 60, what="three looks")
        self.sb.stop("coordinator")
        self.sb.start("coordinator")
        self.sb.wait_online(self.sb.sites)
        m = self.wait_state(mid, ("done",))
        periods = [l["period"] for l in m["looks"]]
        want = ["%d-Q%d" % (y, q) for y in range(1995, 2000) for q in range(1, 5)]
        self.assertEqual(periods, want)
        self.assertEqual([l["period_index"] for l in m["looks"]], list(range(20)))
        self.assertTrue(all(l["signal"] == 0 for l in m["looks"]))
        # its list entry and removal
        lst = self.sb.cli_json("monitor", "list")
        self.assertIn(mid, [x["id"] for x in lst])
        p = self.sb.cli("monitor", "rm", mid)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.sb.cli("monitor", "show", mid)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("no such monitor", p.stderr)

    def test_c_bad_monitors_refused(self):
        path = self.write_spec("c.json", period="all")
        p = self.sb.cli("monitor", "add", path, "--every", "1s", "--expected", "1")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("period must be month, quarter or year", p.stderr)
        path = self.write_spec("d.json", period="year")
        p = self.sb.cli("monitor", "add", path, "--every", "1s")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--expected RATE or a comparator", p.stderr)
        p = self.sb.cli("monitor", "add", path, "--every", "soon", "--expected", "1")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--every", p.stderr)


if __name__ == "__main__":
    unittest.main()
