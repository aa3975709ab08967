"""tests/integration/test_split.py — a count split over row ranges answers exactly what one statement does, end to end.

Two agents serve the SAME synthetic OMOP file: site-a splits every count it
can (`parallel = 16`, `parallel_min_rows = 1`, so even this small file is
split; logged at debug level), site-b runs one statement (`parallel = 1`);
both release exact counts (min_cell 1, rounding 1).
For specs the split can take (plain, by sex and race, a cohort of persons
WITHOUT a drug, value filters) and one it cannot (an age band), both sites'
released cells must be identical; site-a's log must show it really split
the splittable ones and not the other; and both agents stay up.
"""

import os
import shutil
import tempfile

from sandbox import SandboxTestCase, synth

SPLITTABLE = [
    {"all": [{"domain": "drug", "concepts": [1503297], "descendants": True}]},
    {"all": [{"domain": "condition", "concepts": [201826]}]},
    {"all": [{"not": {"domain": "drug", "concepts": [1503297], "descendants": True}}]},
    {"index": {"domain": "measurement", "concepts": [3004410], "event": "all",
               "value": {"min": 6.5}}, "sex": ["female"]},
]
BY = [["sex"], ["sex", "race"], ["ethnicity"], []]


class SplitTest(SandboxTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sdefed-split-")
        f = synth(os.path.join(cls.tmp, "omop.sqlite"), seed=31, persons=3000)
        # exact counts (min_cell 1, rounding 1): a person counted twice shows
        cls.SANDBOX_ARGS = {"site_files": {"site-a": f, "site-b": f}, "min_cell": 1,
                            "rounding": 1, "disclosure": {"max_identical": 1000}}
        super().setUpClass()

    @classmethod
    def prepare(cls):
        sb = cls.sb
        for site, extra in (("site-a", "parallel = 16\nparallel_min_rows = 1\n"),
                            ("site-b", "parallel = 1\n")):
            path = sb.path("agent-%s.conf" % site)
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:   # [dataset omop] is the file's last section
                f.write(text.replace("log_level = info", "log_level = debug") + extra)
            sb.stop(site)
            sb.start(site)
        sb.wait_online(sb.sites, timeout=30)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def ask(self, cohort, by):
        spec = {"kind": "count", "project": "demo", "dataset": "omop", "cohort": cohort}
        if by:
            spec["by"] = by
        before = self.sb.log_size("site-a")
        res = self.sb.query(spec)
        sites = {s["site"]: s for s in res["sites"]}
        for name in ("site-a", "site-b"):
            self.assertEqual(sites[name]["status"], "ok", sites[name])
        return sites["site-a"]["cells"], sites["site-b"]["cells"], \
            self.sb.log_since("site-a", before)

    def test_split_counts_equal_one_statement(self):
        for cohort, by in zip(SPLITTABLE, BY):
            with self.subTest(cohort=cohort, by=by):
                split, single, log = self.ask(cohort, by)
                self.assertIn("split by rows of", log)
                self.assertEqual(split, single)
                self.assertTrue(any(c["value"] > 0 for c in split), split)

    def test_unsplittable_count_runs_as_one_statement(self):
        split, single, log = self.ask(SPLITTABLE[0], ["age_band"])
        self.assertNotIn("split by rows of", log)
        self.assertEqual(split, single)
        self.assertTrue(self.sb.all_alive())
