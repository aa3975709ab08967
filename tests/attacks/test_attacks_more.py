"""More attacks on the disclosure rules (issue 4), run against a real agent
through the coordinator, each with the rule on (the attack must fail) and
off (the attack must SUCCEED, so the test is known to have teeth).

The fixture is test_attacks.build_db() plus measurements whose secrets the
test knows:
  * T (person 7) alone has the rare condition R and a measurement M = 123.4;
  * the twelve persons with condition O have M = 1.0 .. 2.1, except the
    outlier (person 30), whose M = 5000.

Attacks:
  dp averaging   with differential privacy on, average many noised answers
                 to the same question. Repeats and reordered specs get the
                 SAME noise; fresh noise needs a different spec (here an age
                 range everyone is in), which the per-project epsilon budget
                 stops after budget/epsilon answers. With an effectively
                 unlimited budget the average converges on the true count.
  one-hot mean   a summary over a cohort of one person is that person's value
  outlier        a mean/sd dominated by one person gives that person's value
                 away: with one large x among small values, sd^2/mean ~= x
                 (whatever n is, so rounding n does not help)
  kill -9        freeze the agent in a DP query after it charged epsilon and
                 before it released anything, kill it, restart it: the ledger
                 never shows less spent than was released, and the budget
                 still stops the attacker at budget/epsilon charges.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_attacks import (AttackBase, ONLY_DRUG, build_db, count_spec,  # noqa: E402
                          site)
from sandbox import Sandbox, bin_path  # noqa: E402

MEAS, RARE, OGROUP = 3001, 2002, 2003
TARGET = 7
T_VALUE = 123.4
OUTLIER, OUTLIER_VALUE = 30, 5000.0
OGROUP_PERSONS = list(range(27, 39))   # 12 persons, all among the "other 60"


def build_more_db(path):
    """build_db() plus a measurement table: T's one-hot value and a group of
    twelve with one dominating outlier."""
    build_db(path)
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE measurement(measurement_id INTEGER, person_id INTEGER,
            measurement_concept_id INTEGER, measurement_date TEXT,
            value_as_number REAL, unit_concept_id INTEGER);
        CREATE INDEX me_c ON measurement(measurement_concept_id);
        CREATE INDEX me_p ON measurement(person_id);
        CREATE INDEX op_p ON observation_period(person_id);
        INSERT INTO concept VALUES (3001, 'measurement M', 'Measurement', 'X', 'Lab Test', 'S'),
                                   (2002, 'rare condition R', 'Condition', 'X', 'Clinical Finding', 'S'),
                                   (2003, 'condition O', 'Condition', 'X', 'Clinical Finding', 'S');
        INSERT INTO concept_ancestor VALUES (3001, 3001, 0, 0), (2002, 2002, 0, 0),
                                            (2003, 2003, 0, 0);
    """)
    db.execute("INSERT INTO condition_occurrence VALUES (9000, ?, ?, '2015-02-01', '2015-02-02')",
               (TARGET, RARE))
    db.execute("INSERT INTO measurement VALUES (9000, ?, ?, '2015-05-01', ?, NULL)",
               (TARGET, MEAS, T_VALUE))
    for i, p in enumerate(OGROUP_PERSONS):
        value = OUTLIER_VALUE if p == OUTLIER else 1.0 + 0.1 * i
        db.execute("INSERT INTO condition_occurrence VALUES (?, ?, ?, '2016-06-01', '2016-06-02')",
                   (9100 + p, p, OGROUP))
        db.execute("INSERT INTO measurement VALUES (?, ?, ?, '2016-07-01', ?, NULL)",
                   (9100 + p, p, MEAS, value))
    db.commit()
    db.close()


def true_drug_count(path):
    """The true number of persons in the ONLY_DRUG cohort (what DP hides)."""
    db = sqlite3.connect(path)
    try:
        (n,) = db.execute("SELECT COUNT(DISTINCT person_id) FROM drug_exposure "
                          "WHERE drug_concept_id = 1001").fetchone()
        return n
    finally:
        db.close()


def age_variant(i):
    """The i-th spelling of 'count(drug)': an age range every person in the
    cohort is in (ages 23..82 at index), so the cohort is the same but the
    canonical spec, and with it the noise, differs."""
    lo, hi = i % 21, 130 + (i // 21) % 21
    assert i < 21 * 21
    spec = count_spec(ONLY_DRUG, by=())
    spec["cohort"] = {"all": ONLY_DRUG, "age": {"min": lo, "max": hi}}
    return spec


def summary_spec(condition):
    return {"kind": "summary", "project": "demo", "dataset": "omop",
            "cohort": {"all": [{"domain": "condition", "concepts": [condition]}]},
            "summary": {"of": "measurement", "concepts": [MEAS]}}


def total_value(site_result):
    """The single unstratified cell's value (None when suppressed/absent)."""
    cells = site_result.get("cells") or []
    return cells[0]["value"] if len(cells) == 1 else None


class MoreBase(AttackBase):
    """AttackBase over the extended fixture."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sdefed-attack-db-")
        cls.db = os.path.join(cls.tmp, "fixture.sqlite")
        build_more_db(cls.db)
        cls.sb = Sandbox(site_files={"hospital": cls.db}, disclosure=cls.DISCLOSURE,
                         min_cell=cls.MIN_CELL, prefix="sdefed-attack-")
        try:
            cls.sb.up()
        except BaseException:
            cls.sb.down()
            raise
        cls.site_name = cls.sb.sites[0]

    def ledger_spent(self, project="demo"):
        """dp_ledger's spend for project, read straight from the agent's
        state_dir/disclosure.db (0.0 when it has no row)."""
        path = self.sb.path("state", self.site_name, "disclosure.db")
        if not os.path.exists(path):
            return 0.0      # nothing was ever charged (or recorded)
        db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
        try:
            row = db.execute("SELECT spent FROM dp_ledger WHERE project = ?",
                             (project,)).fetchone()
            return row[0] if row else 0.0
        finally:
            db.close()

    def summary(self, condition):
        r = self.ask(summary_spec(condition))
        self.assertEqual(r["status"], "ok", r)
        self.assertEqual(len(r["summaries"]), 1, r)
        return r, r["summaries"][0]


# ---- averaging noisy answers under differential privacy ----

EPS = 0.25


class DPAveragingOn(MoreBase):
    # 10 charges of 0.25 fit in the budget of 2.5 (both exact in binary).
    DISCLOSURE = {"dp_epsilon": str(EPS), "dp_budget": "2.5"}

    def test_repeats_share_noise_and_budget_stops_fresh_noise(self):
        # (a) identical repeats and a reordered spec: one answer, one noise draw.
        spec = count_spec(ONLY_DRUG, by=())
        reordered = {"by": [], "cohort": {"all": ONLY_DRUG}, "dataset": "omop",
                     "project": "demo", "kind": "count"}
        outs = [self.ask(spec), self.ask(spec), self.ask(spec), self.ask(reordered)]
        for o in outs:
            self.assertEqual(o["status"], "ok", o)
            self.assertEqual([c["status"] for c in o["cells"]], ["noised"], o)
            self.assertIn("dp_noise", o["rules_fired"])
        self.assertEqual(len({json.dumps(o["cells"], sort_keys=True) for o in outs}), 1,
                         "repeats of one question must carry the same noise: %r" % outs)
        # Each repeat is still charged (conservative).
        self.assertAlmostEqual(self.ledger_spent(), 4 * EPS)

        # (b) fresh noise by respelling the cohort: the budget runs out.
        released = []
        refused = None
        for i in range(20):
            o = self.ask(age_variant(i))
            if o["status"] != "ok":
                refused = (i, o)
                break
            released.append(total_value(o))
        self.assertIsNotNone(refused, "the epsilon budget never ran out")
        i, o = refused
        self.assertEqual(i, 6, "2.5 / 0.25 = 10 answers in all, 4 already given")
        self.assertEqual(o["status"], "refused", o)
        self.assertIn("dp_budget", o["reason"])
        self.assertAlmostEqual(self.ledger_spent(), 2.5)
        # Refused queries charge nothing and keep being refused.
        o = self.ask(age_variant(100))
        self.assertEqual(o["status"], "refused", o)
        self.assertIn("dp_budget", o["reason"])
        self.assertAlmostEqual(self.ledger_spent(), 2.5)
        # Other questions are refused too (the budget is per project).
        o = self.ask(count_spec(ONLY_DRUG, by=("sex",)))
        self.assertEqual(o["status"], "refused", o)
        self.assertIn("dp_budget", o["reason"])


def dp_summary_spec(condition, lo=0.0, hi=10.0, variant=None):
    """A summary with summary.clamp; variant i respells the cohort (an age
    range every person is in) so the canonical spec, and the noise, differ."""
    spec = summary_spec(condition)
    spec["summary"]["clamp"] = {"min": lo, "max": hi}
    if variant is not None:
        spec["cohort"]["age"] = {"min": variant % 21, "max": 130 + (variant // 21) % 21}
    return spec


def ogroup_clamped_mean(lo, hi):
    vals = [OUTLIER_VALUE if p == OUTLIER else 1.0 + 0.1 * i
            for i, p in enumerate(OGROUP_PERSONS)]
    vals = [min(max(v, lo), hi) for v in vals]
    return sum(vals) / len(vals)


class DPSummaryOn(MoreBase):
    # Statistics under DP: clamped values, noised n/sum/sum of squares
    # (a third of epsilon each), no quantiles, and the same budget.
    DISCLOSURE = {"dp_epsilon": str(EPS), "dp_budget": "2.5"}

    def test_a_measurement_without_clamp_is_refused_before_any_charge(self):
        o = self.ask(summary_spec(OGROUP))
        self.assertEqual(o["status"], "refused", o)
        self.assertIn("summary.clamp", o["reason"])
        self.assertFalse(o.get("summaries"), o)
        self.assertEqual(self.ledger_spent(), 0.0)

    def test_b_noised_statistics_and_the_budget(self):
        spent = self.ledger_spent()
        first = self.ask(dp_summary_spec(OGROUP))
        self.assertEqual(first["status"], "ok", first)
        s = first["summaries"][0]
        for k in ("n", "mean", "sd"):
            self.assertIn(s[k + "_status"], ("noised", "suppressed"), first)
        if s["mean"] is not None:
            self.assertTrue(0.0 <= s["mean"] <= 10.0, s)      # clamped range
        self.assertTrue(all(q["value"] is None for q in s["quantiles"]), first)
        self.assertIn("dp_noise", first["rules_fired"])
        self.assertIn("dp_no_quantiles", first["rules_fired"])
        self.assertNotIn("5000", json.dumps(first))            # the outlier never shows
        self.assertAlmostEqual(self.ledger_spent(), spent + EPS)
        # a repeat is the same answer (same noise), charged again
        again = self.ask(dp_summary_spec(OGROUP))
        self.assertEqual(again["summaries"], first["summaries"])
        # respelled questions draw fresh noise until the budget runs out
        answered = 2
        for i in range(30):
            o = self.ask(dp_summary_spec(OGROUP, variant=i))
            if o["status"] != "ok":
                self.assertIn("dp_budget", o["reason"], o)
                break
            answered += 1
        self.assertEqual(answered, 10, "2.5 / 0.25 = 10 answers in all")
        self.assertAlmostEqual(self.ledger_spent(), 2.5)


class DPSummaryOff(MoreBase):
    # The budget switched off (and a large epsilon so the test is short):
    # averaging many noised means converges on the true (clamped) mean.
    DISCLOSURE = {"dp_epsilon": "3", "dp_budget": "100000", "max_identical": 1000,
                  "differencing": "false"}
    QUERIES = 120

    def test_attack_has_teeth_without_the_budget(self):
        truth = ogroup_clamped_mean(0.0, 10.0)
        means = []
        for i in range(self.QUERIES):
            o = self.ask(dp_summary_spec(OGROUP, variant=i))
            self.assertEqual(o["status"], "ok", o)
            m = o["summaries"][0]["mean"]
            if m is not None:
                means.append(m)
        self.assertGreater(len(means), self.QUERIES * 0.9)
        self.assertGreater(max(means) - min(means), 0.5, means)   # single answers are noisy
        avg = sum(means) / len(means)
        self.assertLess(abs(avg - truth), 0.35, "average %.3f of %d noised means vs truth %.3f"
                        % (avg, len(means), truth))


class DPAveragingOff(MoreBase):
    # The "rule off": a budget so large it never binds.
    DISCLOSURE = {"dp_epsilon": str(EPS), "dp_budget": "100000", "max_identical": 1000}
    QUERIES = 200

    def test_attack_has_teeth_without_the_budget(self):
        truth = true_drug_count(self.db)
        answers = []
        for i in range(self.QUERIES):
            o = self.ask(age_variant(i))
            self.assertEqual(o["status"], "ok", o)
            v = total_value(o)
            if v is not None:      # a noised count below min_cell is suppressed
                answers.append(v)
        self.assertGreater(len(answers), self.QUERIES * 0.95)
        # Single answers are noisy (sd ~5.6 at epsilon 0.25, then rounded to 5) ...
        self.assertGreaterEqual(max(answers) - min(answers), 15, answers)
        # ... but their average converges: sd of the mean ~0.42, bound ~4.8 sd.
        avg = sum(answers) / len(answers)
        self.assertLess(abs(avg - truth), 2.0,
                        "average %.2f of %d noised answers vs truth %d"
                        % (avg, len(answers), truth))
        self.assertAlmostEqual(self.ledger_spent(), self.QUERIES * EPS)


# ---- one-hot mean ----

class OneHotMeanOn(MoreBase):
    DISCLOSURE = {"max_identical": 1000, "differencing": "false"}

    def test_mean_of_one_person_is_withheld(self):
        r, s = self.summary(RARE)
        for k in ("n", "mean", "sd"):
            self.assertIsNone(s[k], r)
            self.assertEqual(s[k + "_status"], "suppressed", r)
        self.assertTrue(all(q["value"] is None for q in s["quantiles"]), r)
        self.assertIn("stats_small_n", r["rules_fired"])
        self.assertNotIn(str(T_VALUE), json.dumps(r))


class OneHotMeanMinCellOff(MoreBase):
    """min_cell 1 alone is not enough: one person holds all of the sum, so
    the dominance rule still withholds the mean (defence in depth)."""
    DISCLOSURE = {"max_identical": 1000, "differencing": "false"}
    MIN_CELL = 1

    def test_dominance_still_withholds_a_one_person_mean(self):
        r, s = self.summary(RARE)
        self.assertEqual(s["n"], 5, r)          # 1, rounded (never shown as 0)
        self.assertIsNone(s["mean"], r)
        self.assertIn("dominance", r["rules_fired"])
        self.assertNotIn(str(T_VALUE), json.dumps(r))


class OneHotMeanOff(MoreBase):
    # Both rules that stop it switched off: min_cell 1 and dominance_k 1.0.
    DISCLOSURE = {"max_identical": 1000, "differencing": "false", "dominance_k": "1.0"}
    MIN_CELL = 1

    def test_attack_has_teeth_without_the_rules(self):
        r, s = self.summary(RARE)
        self.assertEqual(s["mean"], T_VALUE, "the rules off should release T's value: %r" % r)


# ---- outlier-dominated mean / sd ----

def outlier_estimate(mean, sd):
    """With one large x among n-1 small values, mean ~= x/n and sd^2 ~= x^2/n,
    so sd^2/mean ~= x without knowing n."""
    return sd * sd / mean


class OutlierOn(MoreBase):
    DISCLOSURE = {"max_identical": 1000, "differencing": "false"}

    def test_dominated_mean_and_sd_withheld(self):
        r, s = self.summary(OGROUP)
        # n (12 persons) is released, rounded; nothing built on the sum is.
        self.assertEqual(s["n"], 10, r)
        self.assertIsNone(s["mean"], r)
        self.assertIsNone(s["sd"], r)
        self.assertEqual(s["mean_status"], "suppressed", r)
        self.assertTrue(all(q["value"] is None for q in s["quantiles"]), r)
        self.assertIn("dominance", r["rules_fired"])


class OutlierOff(MoreBase):
    # dominance_k = 1.0: the top contributors may hold all of the sum.
    DISCLOSURE = {"max_identical": 1000, "differencing": "false", "dominance_k": "1.0"}

    def test_attack_has_teeth_without_the_rule(self):
        r, s = self.summary(OGROUP)
        self.assertIsNotNone(s["mean"], r)
        self.assertIsNotNone(s["sd"], r)
        self.assertNotIn("dominance", r["rules_fired"])
        est = outlier_estimate(s["mean"], s["sd"])
        self.assertLess(abs(est - OUTLIER_VALUE) / OUTLIER_VALUE, 0.01,
                        "estimate %.1f of the outlier's %.1f from %r" % (est, OUTLIER_VALUE, s))


class OutlierEstimatorHasTeeth(unittest.TestCase):
    """The estimator is not a fluke of the fixture: on the same shape of data
    with the outlier replaced, it tracks the new value."""

    def test_estimator(self):
        import statistics
        for x in (5000.0, 20000.0, 70000.0):
            vals = [1.0 + 0.1 * i for i in range(11)] + [x]
            est = outlier_estimate(statistics.mean(vals), statistics.stdev(vals))
            self.assertLess(abs(est - x) / x, 0.01)


# ---- kill -9 during a DP query ----

KILL_EPS = 0.5


class KillDuringDPQuery(MoreBase):
    # 5 charges of 0.5 in all.
    DISCLOSURE = {"dp_epsilon": str(KILL_EPS), "dp_budget": "2.5", "max_identical": 1000}

    def wait_online(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = self.sb.cli_json("sites")
            for s in d.get("sites", []):
                if s.get("site") == self.site_name and s.get("online") is True:
                    return
            time.sleep(0.1)
        self.fail("agent did not come back online\n" + self.sb.log_tails())

    def proc_state(self, pid):
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]

    def test_ledger_never_under_counts_across_kill(self):
        released = 0

        def check_invariant(where):
            spent = self.ledger_spent()
            self.assertGreaterEqual(spent + 1e-9, released * KILL_EPS,
                                    "%s: ledger %.3f < %d released x %.2f"
                                    % (where, spent, released, KILL_EPS))
            return spent

        for i in range(2):
            o = self.ask(age_variant(i))
            self.assertEqual(o["status"], "ok", o)
            released += 1
        self.assertAlmostEqual(check_invariant("before"), 2 * KILL_EPS)

        # Hold an exclusive lock on the dataset so the agent, once it has
        # charged epsilon, blocks reading data (busy timeout 2 s).
        lock = sqlite3.connect(self.sb.db_path(self.site_name), isolation_level=None,
                               timeout=5)
        pid = self.sb.pid(self.site_name)
        cli = None
        frozen = False
        try:
            lock.execute("BEGIN EXCLUSIVE")
            spec_path = os.path.join(self.tmp, "inflight.json")
            with open(spec_path, "w") as f:
                json.dump(age_variant(2), f)
            cli = subprocess.Popen(
                [bin_path("sdefed"), "--config", self.sb.client_conf, "query", spec_path,
                 "--timeout", "30", "--format", "json"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True)
            deadline = time.monotonic() + 10
            while self.ledger_spent() < 3 * KILL_EPS - 1e-9:
                self.assertLess(time.monotonic(), deadline,
                                "the agent never charged the in-flight query\n"
                                + self.sb.log_tails())
                time.sleep(0.005)
            # Charged; freeze it before the busy timeout (2 s) lets the read
            # fail (we poll every 5 ms, so only a badly stalled host misses it).
            os.kill(pid, signal.SIGSTOP)
            frozen = True
            for _ in range(200):
                if self.proc_state(pid) == "T":
                    break
                time.sleep(0.005)
            self.assertEqual(self.proc_state(pid), "T")
            # Frozen mid-query: charged, nothing released.
            self.assertIsNone(cli.poll(), "the query answered while the dataset was locked")
            self.assertAlmostEqual(check_invariant("frozen"), 3 * KILL_EPS)
            self.sb.stop(self.site_name, kill=True)   # SIGKILL the stopped agent
            frozen = False
        finally:
            if frozen:      # a failed assertion: let teardown stop it normally
                os.kill(pid, signal.SIGCONT)
            if lock.in_transaction:
                lock.execute("ROLLBACK")
            lock.close()
            if cli is not None and cli.poll() is None and sys.exc_info()[0] is not None:
                cli.kill()
                cli.communicate()
        out, err = cli.communicate(timeout=60)
        # The killed query released nothing.
        if cli.returncode == 0:
            o = site(json.loads(out))
            self.assertNotEqual(o["status"], "ok", o)
            self.assertEqual(o.get("cells"), [], o)
        self.assertAlmostEqual(check_invariant("after kill"), 3 * KILL_EPS)

        # Restart: the ledger survived the kill, and the in-flight charge
        # still counts against the budget: only 2 more answers.
        self.sb.start(self.site_name)
        self.wait_online()
        self.assertAlmostEqual(check_invariant("after restart"), 3 * KILL_EPS)
        outs = []
        for i in range(3, 8):
            o = self.ask(age_variant(i))
            outs.append(o)
            if o["status"] == "ok":
                released += 1
            check_invariant("query %d" % i)
        self.assertEqual([o["status"] for o in outs],
                         ["ok", "ok", "refused", "refused", "refused"], outs)
        self.assertIn("dp_budget", outs[2]["reason"])
        self.assertEqual(released, 4)
        self.assertAlmostEqual(check_invariant("end"), 2.5)


if __name__ == "__main__":
    unittest.main()
