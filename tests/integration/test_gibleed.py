"""tests/integration/test_gibleed.py — the federation over OHDSI's Eunomia GiBleed (CDM 5.3).

A real-world-shaped OMOP CDM v5.3 database (2,694 synthetic persons) served
by one agent. Every count the federation returns must equal what we compute
directly with sqlite3 on the same file (persons with a matching event via
concept_ancestor), after the agent's disclosure rules (suppress 1..9, round
to 5). The published Book-of-OHDSI totals (1,844 celecoxib users, 850
diclofenac users, 479 persons with GI bleeding) check our own SQL.
Skipped when ../shared/data (or $SDEFED_SHARED_DATA) is absent.
"""

import os
import shutil
import subprocess
import tempfile
import unittest

from sandbox import (Sandbox, expected_release, pooling_problems, result_schema_problems,
                     shared_data_dir, strata_key, true_counts)

XZ = os.path.join(shared_data_dir(), "gibleed", "gibleed_cdm53.sqlite.xz")

COHORTS = {
    "celecoxib": ({"domain": "drug", "concepts": [1118084], "descendants": True}, 1844),
    "diclofenac": ({"domain": "drug", "concepts": [1124300], "descendants": True}, 850),
    "gi_bleed": ({"domain": "condition", "concepts": [192671], "descendants": True}, 479),
}


@unittest.skipUnless(os.path.isfile(XZ), "GiBleed data not available (%s absent; "
                     "set SDEFED_SHARED_DATA to the shared data directory)" % XZ)
class GiBleedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("xz") is None:
            raise unittest.SkipTest("xz not installed")
        cls.tmp = tempfile.mkdtemp(prefix="sdefed-it-gibleed-")
        cls.sb = None
        try:
            cls.db = os.path.join(cls.tmp, "gibleed.sqlite")
            with open(cls.db, "wb") as out:
                subprocess.run(["xz", "-dk", "-c", XZ], stdout=out, check=True, timeout=300)
            cls.sb = Sandbox(site_files={"gibleed": cls.db}, timeout=60).up()
        except BaseException:
            if cls.sb is not None:
                cls.sb.down()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.sb is not None:
            cls.sb.down()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def spec(self, crit, by):
        return {"kind": "count", "project": "demo", "dataset": "omop",
                "cohort": {"all": [crit]}, "by": by}

    def test_published_totals_from_our_sql(self):
        for name, (crit, published) in COHORTS.items():
            total = sum(true_counts(self.db, crit, []).values())
            self.assertEqual(total, published, name)

    def test_only_the_given_site(self):
        st = self.sb.sites_status()
        self.assertEqual(sorted(st), ["gibleed"])
        self.assertIs(st["gibleed"]["online"], True)

    def test_catalog_reports_cdm53(self):
        d = self.sb.query({"kind": "catalog", "project": "demo"})
        self.assertEqual(result_schema_problems(d, "catalog"), [])
        ds = d["sites"][0]["datasets"][0]
        self.assertEqual(ds.get("omop_version"), "5.3", ds)
        self.assertEqual(ds.get("person_count"), expected_release(2694)[0], ds)

    def test_counts_equal_direct_sql(self):
        for name, (crit, _published) in COHORTS.items():
            for by in ([], ["sex"], ["sex", "age_band"]):
                with self.subTest(cohort=name, by=by):
                    d = self.sb.query(self.spec(crit, by))
                    self.assertEqual(result_schema_problems(d), [])
                    self.assertEqual(pooling_problems(d), [])
                    site = d["sites"][0]
                    self.assertEqual((site["site"], site["status"]), ("gibleed", "ok"), site)
                    cells = {strata_key(c["strata"]): c for c in site["cells"]}
                    truth = true_counts(self.db, crit, by)
                    self.assertTrue(truth)
                    for k, n in truth.items():
                        self.assertIn(k, cells, "no cell for %r" % (k,))
                        self.assertEqual((cells[k]["value"], cells[k]["status"]),
                                         expected_release(n), "%s %r (true %d)" % (name, k, n))
                    for k, c in cells.items():
                        if k not in truth:
                            self.assertEqual(c["value"], 0, "%s %r: %r" % (name, k, c))
