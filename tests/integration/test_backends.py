"""tests/integration/test_backends.py — SQLite and PostgreSQL backends give identical answers.

One agent serves the same synthetic OMOP site twice: as its SQLite file
(dataset `omop`) and copied into a throw-away PostgreSQL cluster (dataset
`omop_pg`, backend postgres, schema cdm). The same query suite — catalog,
counts with and without descendants, intersections, every domain, by sex
and age band — must give identical released results on both. GiBleed
(Eunomia, CDM 5.3) is loaded into PostgreSQL from its CSV archive and must
give the published counts after the agent's rounding. A query past its
deadline must be cancelled inside PostgreSQL (the server log says so),
reported `timeout`, and the agent must answer the next query.

Skipped, saying so, only when the PostgreSQL server binaries are absent
(GiBleed additionally needs ../shared/data).
"""

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import unittest

import pgcluster
from sandbox import (Sandbox, expected_release, result_schema_problems, shared_data_dir,
                     strata_key, synth, wait_until)

PERSONS = 3000
SEED = 11
SECRET = "NeverLogThis42"
GIBLEED_CSV = os.path.join(shared_data_dir(), "gibleed", "gibleed_cdm53_csv_clean.tar.xz")


def crit(domain, concepts, descendants=False):
    return {"domain": domain, "concepts": concepts, "descendants": descendants}


# name -> (criteria, by); every query runs on both backends.
SUITE = {
    "celecoxib": ([crit("drug", [1118084], True)], []),
    "celecoxib_exact": ([crit("drug", [1118084])], []),
    "celecoxib_by_sex": ([crit("drug", [1118084], True)], ["sex"]),
    "gi_bleed_by_sex_age": ([crit("condition", [192671], True)], ["sex", "age_band"]),
    "gi_bleed_no_desc": ([crit("condition", [192671])], ["age_band"]),
    "t2dm_and_metformin": ([crit("condition", [201826], True), crit("drug", [1503297], True)],
                           ["sex", "age_band"]),
    "three_way": ([crit("condition", [320128]), crit("drug", [1308216], True),
                   crit("measurement", [3004249])], ["sex"]),
    "nsaids_any": ([crit("drug", [1118084, 1124300, 1177480, 1115008], True)], ["age_band"]),
    "procedure": ([crit("procedure", [4163951])], ["sex"]),
    "observation": ([crit("observation", [4240902, 4302207])], []),
    "device": ([crit("device", [2000000301, 2000000302, 2000000303])], ["sex"]),
    "visit": ([crit("visit", [9201])], ["sex", "age_band"]),
    "af_warfarin": ([crit("condition", [313217]), crit("drug", [1310149], True)], []),
}


def count_spec(dataset, criteria, by):
    return {"kind": "count", "project": "demo", "dataset": dataset,
            "cohort": {"all": criteria}, "by": by}


def site_cells(res, site):
    for s in res["sites"]:
        if s["site"] == site:
            return s
    raise AssertionError("site %s missing from %s" % (site, json.dumps(res)[:500]))


def normalise(site_result):
    """Comparable form of one site's released cells."""
    return sorted((strata_key(c.get("strata")), c.get("value"), c.get("status"))
                  for c in site_result.get("cells", []))


def pg_dataset_section(name, conninfo, schema):
    return ("\n[dataset %s]\ntype = omop\nbackend = postgres\nconninfo = %s\nschema = %s\n"
            % (name, conninfo, schema))


@unittest.skipIf(pgcluster.find_bindir() is None, pgcluster.missing_reason())
class BackendsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sdefed-it-backends-")
        cls.pg = None
        cls.sb = None
        cls.gibleed = False
        try:
            cls.db = synth(os.path.join(cls.tmp, "site.sqlite"), SEED, PERSONS)
            cls.pg = pgcluster.PgCluster().start()
            cls.pg.createdb("omop")
            cls.pg.load_sqlite("omop", cls.db, schema="cdm")
            cls.make_slow_schema()
            if os.path.isfile(GIBLEED_CSV) and shutil.which("xz"):
                cls.load_gibleed()
            cls.sb = Sandbox(site_files={"site-a": cls.db}, timeout=60).up()
            conf = cls.sb.path("agent-site-a.conf")
            with open(conf, "a") as f:
                f.write(pg_dataset_section("omop_pg", cls.pg.conninfo("omop"), "cdm"))
                f.write(pg_dataset_section("omop_slow", cls.pg.conninfo("omop"), "slow"))
                if cls.gibleed:
                    f.write(pg_dataset_section("gibleed_pg", cls.pg.conninfo("gibleed"),
                                               "cdm53"))
            cls.sb.stop("site-a")
            cls.sb.start("site-a")
            cls.sb.wait_online(["site-a"], timeout=30)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.sb is not None:
            reports = cls.sb.down()
            cls.sb = None
            if reports:
                raise AssertionError("sanitizer reports:\n" + "\n".join(reports))
        if cls.pg is not None:
            cls.pg.stop()
            cls.pg = None
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def make_slow_schema(cls):
        """Schema `slow`: views over cdm, but concept_ancestor sleeps per
        row, so any query expanding descendants takes minutes: a reliably
        heavy query on tiny data."""
        tables = cls.pg.scalar("omop", "SELECT string_agg(table_name, ',') FROM "
                                       "information_schema.tables WHERE table_schema = 'cdm'")
        sql = ["CREATE SCHEMA slow;",
               # plpgsql: never inlined or constant-folded by the planner.
               "CREATE FUNCTION slow.nap() RETURNS boolean LANGUAGE plpgsql VOLATILE AS "
               "$$ BEGIN PERFORM pg_sleep(3); RETURN true; END $$;"]
        for t in tables.split(","):
            if t == "concept_ancestor":
                sql.append("CREATE VIEW slow.%s AS SELECT * FROM cdm.%s WHERE slow.nap();"
                           % (t, t))
            else:
                sql.append("CREATE VIEW slow.%s AS SELECT * FROM cdm.%s;" % (t, t))
        cls.pg.psql("omop", stdin="\n".join(sql))

    @classmethod
    def load_gibleed(cls):
        csvdir = os.path.join(cls.tmp, "gibleed-csv")
        os.makedirs(csvdir)
        with tarfile.open(GIBLEED_CSV, "r:xz") as tf:
            tf.extractall(csvdir)
        os.chmod(cls.tmp, 0o755)   # \copy reads as us, but keep it simple for psql
        cls.pg.createdb("gibleed")
        cls.pg.load_csv_dir("gibleed", os.path.join(csvdir, "csv_clean"), version="5.3",
                            schema="cdm53")
        cls.gibleed = True

    def both(self, criteria, by):
        out = []
        for ds in ("omop", "omop_pg"):
            res = self.sb.query(count_spec(ds, criteria, by), timeout=60)
            self.assertEqual(result_schema_problems(res), [], json.dumps(res)[:800])
            s = site_cells(res, "site-a")
            self.assertEqual(s["status"], "ok", "%s on %s: %s" % (criteria, ds, s))
            out.append(s)
        return out

    def test_count_suite_identical(self):
        nonzero = 0
        for name, (criteria, by) in SUITE.items():
            with self.subTest(query=name):
                lite, pg = self.both(criteria, by)
                self.assertEqual(normalise(lite), normalise(pg), name)
                self.assertEqual(sorted(lite.get("rules_fired", [])),
                                 sorted(pg.get("rules_fired", [])), name)
                nonzero += any(c.get("value") for c in lite.get("cells", []))
        # The suite must exercise real data, not agree on zeros.
        self.assertGreaterEqual(nonzero, len(SUITE) - 2)

    def test_example_specs_identical(self):
        """Every count/summary example in deploy/examples (the cohort
        language's index events, windows, not, age, observation, summary)
        gives the same released result on both backends."""
        exdir = os.path.join(pgcluster.REPO, "deploy", "examples")
        ran = 0
        for fn in sorted(os.listdir(exdir)):
            if not fn.endswith(".json"):
                continue
            with open(os.path.join(exdir, fn)) as f:
                try:
                    spec = json.load(f)
                except ValueError:
                    continue
            if not isinstance(spec, dict) or spec.get("kind") not in ("count", "summary"):
                continue
            with self.subTest(example=fn):
                out = []
                for ds in ("omop", "omop_pg"):
                    spec["dataset"] = ds
                    res = self.sb.query(spec, timeout=60)
                    s = site_cells(res, "site-a")
                    self.assertEqual(s["status"], "ok", "%s on %s: %s" % (fn, ds, s))
                    out.append(s)
                self.assertEqual(normalise(out[0]), normalise(out[1]), fn)
                self.assertEqual(json.dumps(out[0].get("cells"), sort_keys=True),
                                 json.dumps(out[1].get("cells"), sort_keys=True), fn)
                ran += 1
        self.assertGreaterEqual(ran, 2)

    def test_descendants_change_the_answer_on_both(self):
        exact = self.both([crit("condition", [192671])], [])
        desc = self.both([crit("condition", [192671], True)], [])
        self.assertEqual(normalise(exact[0]), normalise(exact[1]))
        self.assertEqual(normalise(desc[0]), normalise(desc[1]))
        self.assertNotEqual(normalise(exact[1]), normalise(desc[1]))

    def test_catalog_identical(self):
        res = self.sb.query({"kind": "catalog", "project": "demo"}, timeout=60)
        s = site_cells(res, "site-a")
        self.assertEqual(s["status"], "ok", s)
        info = {d["name"]: d for d in s.get("datasets", [])}
        self.assertIn("omop", info, s)
        self.assertIn("omop_pg", info, s)
        for key in ("type", "omop_version", "person_count", "person_count_status",
                    "data_freshness", "domains"):
            self.assertIn(key, info["omop"], key)
            self.assertEqual(info["omop"][key], info["omop_pg"][key], key)
        self.assertEqual(info["omop_pg"]["person_count"], expected_release(PERSONS)[0])
        self.assertRegex(info["omop_pg"]["data_freshness"] or "", r"^\d{4}-\d\d-\d\d$")

    def test_unknown_concept_refused_on_both(self):
        for ds in ("omop", "omop_pg"):
            res = self.sb.query(count_spec(ds, [crit("drug", [999999999])], []), timeout=60)
            s = site_cells(res, "site-a")
            self.assertEqual(s["status"], "refused", s)
            self.assertIn("999999999", s.get("reason", ""))

    def test_gibleed_published_counts_on_postgres(self):
        if not self.gibleed:
            self.skipTest("GiBleed CSV archive not available (%s absent) or xz missing"
                          % GIBLEED_CSV)
        published = {"celecoxib": ([crit("drug", [1118084], True)], 1844),
                     "diclofenac": ([crit("drug", [1124300], True)], 850),
                     "gi_bleed": ([crit("condition", [192671], True)], 479)}
        for name, (criteria, n) in published.items():
            with self.subTest(cohort=name):
                res = self.sb.query(count_spec("gibleed_pg", criteria, []), timeout=60)
                s = site_cells(res, "site-a")
                self.assertEqual(s["status"], "ok", s)
                self.assertEqual([c["value"] for c in s["cells"]], [expected_release(n)[0]])
        res = self.sb.query({"kind": "catalog", "project": "demo"}, timeout=60)
        info = {d["name"]: d for d in site_cells(res, "site-a").get("datasets", [])}
        self.assertEqual(info["gibleed_pg"]["person_count"], expected_release(2694)[0])
        self.assertEqual(info["gibleed_pg"]["omop_version"], "5.3")

    def active_slow_queries(self):
        return int(self.pg.scalar(
            "omop", "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND pid <> pg_backend_pid() AND query ILIKE '%concept_ancestor%'"))

    def test_deadline_cancels_in_database(self):
        spec = count_spec("omop_slow", [crit("condition", [192671], True)], [])
        res = self.sb.query(spec, timeout=2, proc_timeout=60)
        s = site_cells(res, "site-a")
        self.assertEqual(s["status"], "timeout", s)
        # The statement was cancelled inside PostgreSQL (by statement_timeout
        # or our cancel request), not left running.
        wait_until(lambda: "canceling statement due to" in self.pg.server_log(), 20,
                   what="the server to log the cancelled statement")
        wait_until(lambda: self.active_slow_queries() == 0, 20,
                   what="no slow statement left running in PostgreSQL")
        # The agent is still responsive: the next query is answered.
        lite, pg = self.both([crit("drug", [1118084], True)], ["sex"])
        self.assertEqual(normalise(lite), normalise(pg))
        self.assertTrue(self.sb.alive("site-a"))

    def test_startup_index_check_covers_postgres(self):
        log = self.sb.log("site-a")
        self.assertIn("dataset omop_pg: all indexes the queries need are present", log)
        # Views cannot be indexed: the slow schema is reported, by name.
        self.assertRegex(log, r"dataset omop_slow: \d+ index\(es\) the queries need are "
                              r"missing: .*concept_ancestor\(ancestor_concept_id\)")


@unittest.skipIf(pgcluster.find_bindir() is None, pgcluster.missing_reason())
class IndexesCommandTest(unittest.TestCase):
    """`sdefed-agent --config F indexes [--create]` on both backends."""

    def test_indexes_reported_and_created(self):
        from sandbox import bin_path, require_binaries
        require_binaries("sdefed-agent", "sdefed-synth")
        tmp = tempfile.mkdtemp(prefix="sdefed-it-indexes-")
        pg = None
        try:
            db = synth(os.path.join(tmp, "site.sqlite"), 3, 200)
            pg = pgcluster.PgCluster().start()
            pg.createdb("omop")
            pg.load_sqlite("omop", db, schema="cdm", indexes=False)
            # Drop one SQLite index the compiler needs.
            subprocess.run(["sqlite3", db, "DROP INDEX idx_drug_concept_id_1"], check=True)
            conf = os.path.join(tmp, "agent.conf")
            with open(conf, "w") as f:
                f.write("[agent]\nsite_id = site-a\ncoordinator = 127.0.0.1:1\n"
                        "cert = a.crt\nkey = a.key\nca = ca.crt\nstate_dir = state\n"
                        "[dataset lite]\ntype = omop\npath = %s\n" % db)
                f.write(pg_dataset_section("pg", pg.conninfo("omop"), "cdm"))
            agent = bin_path("sdefed-agent")

            def run(*args):
                return subprocess.run([agent, "--config", conf, "indexes"] + list(args),
                                      capture_output=True, text=True, timeout=120)

            p = run()
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            rows = [l.split() for l in p.stdout.splitlines()[1:]]
            missing = {(r[0], r[1], r[2]) for r in rows if r[-1] == "MISSING"}
            self.assertIn(("lite", "drug_exposure", "drug_concept_id"), missing)
            self.assertNotIn(("lite", "drug_exposure", "person_id"), missing)
            self.assertIn(("pg", "drug_exposure", "drug_concept_id"), missing)
            self.assertIn(("pg", "concept_ancestor", "ancestor_concept_id"), missing)

            p = run("--create")
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn("created", p.stdout)
            p = run()
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertNotIn("MISSING", p.stdout)
            self.assertIn("sdefed_drug_exposure_drug_concept_id",
                          pg.scalar("omop", "SELECT string_agg(indexname, ',') FROM pg_indexes "
                                            "WHERE schemaname = 'cdm'"))

            # A dataset that cannot connect: the error names the conninfo
            # with its password redacted, and never the password.
            with open(conf, "a") as f:
                f.write(pg_dataset_section("broken", pg.conninfo("nosuchdb") +
                                           " password=" + SECRET, "cdm"))
            p = run("--dataset", "broken")
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn("dataset broken: cannot connect", p.stderr)
            self.assertIn("password='***'", p.stderr)
            self.assertNotIn(SECRET, p.stdout + p.stderr)
        finally:
            if pg is not None:
                pg.stop()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
