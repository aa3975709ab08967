"""tests/integration/test_federation.py — a 3-site federation answering the analyst.

Brings up deploy/sandbox with three synthetic sites and drives the real
sdefed CLI: sites, catalog, counts in every output format, stored results,
validation errors, refusals, site selection, and an agent killed with -9
that is reported offline and then reconnects by itself after a restart.
"""

import csv
import io
import json
import os
import re
import time

from sandbox import (EXAMPLES, SandboxTestCase, numbers_in_line, pooling_problems,
                     result_schema_problems, strata_key, wait_until)

SITES = ["site-a", "site-b", "site-c"]

CELECOXIB_BY_SEX = {
    "kind": "count", "project": "demo", "dataset": "omop",
    "cohort": {"all": [{"domain": "drug", "concepts": [1118084], "descendants": True}]},
    "by": ["sex"],
}


class FederationTest(SandboxTestCase):
    SANDBOX_ARGS = dict(sites=3, seed=7, persons=3000)

    # Tests run in name order; test_z* (which kills an agent) comes last.

    def assertClean(self, d, kind="count"):
        problems = result_schema_problems(d, kind)
        self.assertEqual(problems, [], "result does not follow output.h:\n%s"
                         % json.dumps(d, indent=1)[:3000])

    def test_a_sites_all_online(self):
        d = self.sb.cli_json("sites")
        self.assertIn("sites", d)
        by = {s["site"]: s for s in d["sites"]}
        self.assertEqual(sorted(by), SITES)
        for name, s in by.items():
            self.assertIs(s["online"], True, name)
            self.assertIsInstance(s["last_seen"], str, name)
            self.assertRegex(s["last_seen"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
            self.assertIn("omop", s["datasets"], name)

    def test_b_catalog(self):
        d = self.sb.query(os.path.join(EXAMPLES, "catalog.json"))
        self.assertClean(d, "catalog")
        by = {s["site"]: s for s in d["sites"]}
        self.assertEqual(sorted(by), SITES)
        for name, s in by.items():
            self.assertEqual(s["status"], "ok", "%s: %s" % (name, s.get("reason")))
            self.assertEqual(len(s["datasets"]), 1, name)
        # 3 datasets in all, each with a disclosure-controlled person count.
        counts = []
        for name, s in by.items():
            ds = s["datasets"][0]
            self.assertEqual(ds.get("name"), "omop", ds)
            pc = ds.get("person_count")
            self.assertIsInstance(pc, int, "%s: person_count %r" % (name, ds))
            self.assertGreater(pc, 0, name)
            self.assertEqual(pc % 5, 0, "%s: person count %d is not rounded to 5" % (name, pc))
            counts.append(pc)
        # The sandbox makes sites of different sizes (P, 2P/3, 4P/3).
        self.assertEqual(len(set(counts)), 3, counts)

    def run_count(self, spec=None, **kw):
        d = self.sb.query(spec or CELECOXIB_BY_SEX, **kw)
        self.assertClean(d)
        return d

    def test_c_count_by_sex(self):
        d = self.run_count()
        self.assertEqual(d["project"], "demo")
        by = {s["site"]: s for s in d["sites"]}
        self.assertEqual(sorted(by), SITES)
        for name, s in by.items():
            self.assertEqual(s["status"], "ok", "%s: %s" % (name, s.get("reason")))
            self.assertGreaterEqual(s["policy"]["min_cell"], 10)
            self.assertEqual(s["policy"]["rounding"], 5)
            self.assertTrue(s["cells"], "%s returned no cells" % name)
            for c in s["cells"]:
                self.assertEqual(set(c["strata"]), {"sex"}, c)
                if c["status"] == "suppressed":
                    self.assertIsNone(c["value"])
                else:
                    self.assertEqual(c["value"] % 5, 0, "%s: %r not a multiple of 5" % (name, c))
                    self.assertFalse(1 <= c["value"] <= 9, c)
        sexes = {c["strata"]["sex"] for s in by.values() for c in s["cells"]}
        self.assertTrue({"female", "male"} <= sexes, sexes)
        self.assertEqual(pooling_problems(d), [])

    def test_d_pooled_lower_bound_when_suppressed(self):
        # Stratify finely enough that some site suppresses some stratum, so
        # the lower_bound rule is exercised (checked by pooling_problems).
        spec = {"kind": "count", "project": "demo", "dataset": "omop",
                "cohort": {"all": [{"domain": "condition", "concepts": [192671],
                                    "descendants": True}]},
                "by": ["sex", "age_band"]}
        d = self.run_count(spec)
        self.assertEqual(pooling_problems(d), [])
        statuses = [c["status"] for s in d["sites"] for c in s["cells"]]
        self.assertIn("suppressed", statuses,
                      "expected some suppressed cell for GI bleed by sex and age band")
        self.assertTrue(any(c["lower_bound"] for c in d["pooled"]["cells"]))
        for s in d["sites"]:
            if any(c["status"] == "suppressed" for c in s["cells"]):
                self.assertIn("small_count", s["rules_fired"], s["site"])

    def test_e_csv_and_table(self):
        spec_path = os.path.join(EXAMPLES, "count-celecoxib-by-sex.json")
        j = self.sb.query(spec_path)
        p = self.sb.query(spec_path, fmt="csv")
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = list(csv.reader(io.StringIO(p.stdout)))
        header = rows[0]
        self.assertEqual(header[:2], ["site", "site_status"])
        self.assertEqual(header[-3:], ["value", "status", "lower_bound"])
        self.assertIn("sex", header)
        body = [dict(zip(header, r)) for r in rows[1:] if r]
        # Same numbers as the JSON (deterministic answers for identical queries).
        want = set()
        for s in j["sites"]:
            for c in s["cells"]:
                want.add((s["site"], c["strata"]["sex"],
                          "" if c["value"] is None else str(c["value"]), c["status"]))
        for c in j["pooled"]["cells"]:
            want.add(("pooled", c["strata"]["sex"],
                      "" if c["value"] is None else str(c["value"]), c["status"]))
        got = {(r["site"], r["sex"], r["value"], r["status"]) for r in body}
        self.assertEqual(got, want)
        for r in body:
            if r["site"] == "pooled":
                self.assertIn(r["lower_bound"], ("true", "false"), r)

        t = self.sb.query(spec_path, fmt="table")
        self.assertEqual(t.returncode, 0, t.stderr)
        for name in SITES:
            self.assertIn(name, t.stdout)
        self.assertIn("pooled", t.stdout.lower())
        self.assertIn("female", t.stdout)
        table_numbers = set()
        for line in t.stdout.splitlines():
            if re.search(r"\b(female|male|unknown)\b", line):
                table_numbers.update(numbers_in_line(line))
        # The table leaves out strata that are an exact 0 at every site (and
        # says so); every other released value must be there.
        zero_everywhere = {json.dumps(c["strata"], sort_keys=True)
                           for c in j["pooled"]["cells"]
                           if c["value"] == 0 and c["status"] == "exact"
                           and not c["lower_bound"]}
        for s in j["sites"]:
            for c in s["cells"]:
                if json.dumps(c["strata"], sort_keys=True) in zero_everywhere:
                    continue
                if c["value"] is not None:
                    self.assertIn(c["value"], table_numbers, "table lacks %r" % c)
        if zero_everywhere:
            self.assertIn("with a count of 0 at every site not shown", t.stdout)

    def test_f_results_returns_same_json(self):
        d = self.run_count()
        again = self.sb.cli_json("results", d["query_id"])
        self.assertEqual(again, d)
        # The stored result carries the spec it ran, in canonical form.
        self.assertEqual(d["spec"]["kind"], "count")
        self.assertEqual(d["spec"]["by"], ["sex"])
        self.assertEqual(d["spec"]["cohort"], CELECOXIB_BY_SEX["cohort"])
        # An unknown id is an error: exit 1, one line on stderr.
        p = self.sb.cli("results", "no-such-query-id")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertTrue(lines[0].startswith("sdefed: "), p.stderr)

    def test_g_invalid_spec_names_field(self):
        spec = dict(CELECOXIB_BY_SEX, frobnicate=1)
        p = self.sb.query(spec, fmt="table")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, "want one line on stderr, got %r" % p.stderr)
        self.assertTrue(lines[0].startswith("sdefed: "), lines[0])
        self.assertIn("frobnicate", lines[0])
        self.assertEqual(p.stdout, "")
        # Not JSON at all: also one line, exit 1.
        p = self.sb.cli("query", "-", input="{not json")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        # A usage error is exit 2.
        p = self.sb.cli("query")
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)

    def test_h_unknown_dataset_refused_everywhere(self):
        spec = dict(CELECOXIB_BY_SEX, dataset="nosuchdataset")
        d = self.sb.query(spec)
        self.assertClean(d)
        by = {s["site"]: s for s in d["sites"]}
        self.assertEqual(sorted(by), SITES)
        for name, s in by.items():
            self.assertEqual(s["status"], "refused", name)
            self.assertTrue(s["reason"], "%s: refusal without a reason" % name)
            self.assertFalse(s.get("cells"), name)
        self.assertEqual(d["pooled"]["cells"], [])

    def test_i_sites_option(self):
        d = self.run_count(sites=["site-a"])
        self.assertEqual([s["site"] for s in d["sites"]], ["site-a"])
        self.assertEqual(d["sites"][0]["status"], "ok")
        # pooled over site-a alone equals site-a
        a = {strata_key(c["strata"]): c["value"] for c in d["sites"][0]["cells"]}
        pooled = {strata_key(c["strata"]): c["value"] for c in d["pooled"]["cells"]}
        self.assertEqual(pooled, a)
        d = self.run_count(sites=["site-a", "site-c"])
        self.assertEqual(sorted(s["site"] for s in d["sites"]), ["site-a", "site-c"])

    def test_z_killed_agent_offline_then_reconnects(self):
        sb = self.sb
        old_pid = sb.pid("site-c")
        sb.stop("site-c", kill=True)
        self.assertFalse(sb.alive("site-c"))
        try:
            t0 = time.monotonic()
            # The same count is asked many times in this class; agents refuse
            # the 8th identical query (repeat_limit, issue 4), so this one is
            # made canonically different (policy equal to the site floor).
            d = sb.query(dict(CELECOXIB_BY_SEX, policy={"min_cell": 10}), timeout=5,
                         proc_timeout=60)
            elapsed = time.monotonic() - t0
            self.assertClean(d)
            by = {s["site"]: s for s in d["sites"]}
            self.assertIn("site-c", by, "the dead site is not reported at all")
            self.assertEqual(by["site-c"]["status"], "offline", by["site-c"])
            self.assertEqual(by["site-a"]["status"], "ok")
            self.assertEqual(by["site-b"]["status"], "ok")
            # The only timing assertion: it finished within its own deadline
            # (plus process start-up slack).
            self.assertLess(elapsed, 5 + 3, "query took %.1fs with --timeout 5" % elapsed)
            st = sb.sites_status()
            self.assertIs(st["site-c"]["online"], False)
        finally:
            sb.start("site-c")
        self.assertNotEqual(sb.pid("site-c"), old_pid)
        sb.wait_online(["site-c"], timeout=15)
        d = wait_until(lambda: (lambda r: r if {s["site"]: s["status"] for s in r["sites"]}
                                .get("site-c") == "ok" else None)(
                                    sb.query(dict(CELECOXIB_BY_SEX, policy={"rounding": 5}))),
                       timeout=15, what="site-c answering again")
        self.assertEqual(sorted(s["site"] for s in d["sites"] if s["status"] == "ok"), SITES)
        self.assertTrue(sb.all_alive())
