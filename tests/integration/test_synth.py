"""tests/integration/test_synth.py — sdefed-synth, the synthetic OMOP CDM v5.4 site generator.

Runs the real binary ($BUILD/bin/sdefed-synth, BUILD defaults to "build")
into a temporary directory and inspects the databases with sqlite3:
determinism, vocabulary coverage and hierarchy, dates inside observation
periods, profile differences, clinical correlations the demo queries rely
on, the no-clobber/--force behaviour and argument errors (exit status 2).
Standard library only.
"""
import hashlib
import os
import re
import sqlite3
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD", "build")
BIN = os.path.join(ROOT if not os.path.isabs(BUILD) else "", BUILD, "bin", "sdefed-synth")
DDL = os.path.join(ROOT, "deploy", "omop", "OMOPCDM_sqlite_5.4_ddl.sql")

# table -> (person column, start date column, end date column or None)
EVENT_DATES = {
    "visit_occurrence": ("visit_start_date", "visit_end_date"),
    "condition_occurrence": ("condition_start_date", "condition_end_date"),
    "drug_exposure": ("drug_exposure_start_date", "drug_exposure_end_date"),
    "procedure_occurrence": ("procedure_date", None),
    "measurement": ("measurement_date", None),
    "observation": ("observation_date", None),
    "device_exposure": ("device_exposure_start_date", "device_exposure_end_date"),
    "death": ("death_date", None),
}

CONCEPT_COLUMNS = {
    "person": ["gender_concept_id", "race_concept_id", "ethnicity_concept_id"],
    "observation_period": ["period_type_concept_id"],
    "visit_occurrence": ["visit_concept_id", "visit_type_concept_id"],
    "condition_occurrence": ["condition_concept_id", "condition_type_concept_id",
                             "condition_source_concept_id"],
    "drug_exposure": ["drug_concept_id", "drug_type_concept_id"],
    "procedure_occurrence": ["procedure_concept_id", "procedure_type_concept_id"],
    "measurement": ["measurement_concept_id", "measurement_type_concept_id", "unit_concept_id"],
    "observation": ["observation_concept_id", "observation_type_concept_id"],
    "device_exposure": ["device_concept_id", "device_type_concept_id"],
    "death": ["death_type_concept_id", "cause_concept_id"],
    "care_site": ["place_of_service_concept_id"],
    "cdm_source": ["cdm_version_concept_id"],
}

NSAID_INGREDIENTS = (1118084, 1124300, 1177480, 1115008)
PROFILES = ("urban-young", "rural-older", "mixed", "deprived-urban")


def run_synth(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)


def dump_hash(path):
    """Hash of every row of every non-empty table, in a canonical order."""
    con = sqlite3.connect(path)
    h = hashlib.sha256()
    tables = [r[0] for r in con.execute(
        "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    for t in tables:
        cols = [r[1] for r in con.execute(f"PRAGMA table_info({t})")]
        order = ", ".join(str(i + 1) for i in range(len(cols)))
        h.update(t.encode())
        for row in con.execute(f"SELECT * FROM {t} ORDER BY {order}"):
            h.update(repr(row).encode())
    con.close()
    return h.hexdigest()


def counts(path):
    con = sqlite3.connect(path)
    out = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
           for t in ["person", *EVENT_DATES]}
    con.close()
    return out


def file_sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class SynthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(BIN, os.X_OK):
            raise AssertionError(f"{BIN} not built (make BUILD={BUILD} {BUILD}/bin/sdefed-synth)")
        cls.tmp = tempfile.TemporaryDirectory(prefix="synth-test-")
        cls.dir = cls.tmp.name
        cls.db = {}
        for prof in PROFILES:
            path = os.path.join(cls.dir, f"{prof}.sqlite")
            r = run_synth("--out", path, "--seed", "42", "--persons", "3000", "--profile", prof)
            if r.returncode != 0:
                raise AssertionError(f"generation failed: {r.stderr}")
            cls.db[prof] = path
        cls.main = cls.db["rural-older"]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def q(self, sql, path=None, args=()):
        con = sqlite3.connect(path or self.main)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def q1(self, sql, path=None, args=()):
        return self.q(sql, path, args)[0][0]

    # ---- determinism ----

    def test_same_seed_gives_identical_database(self):
        again = os.path.join(self.dir, "again.sqlite")
        r = run_synth("--out", again, "--seed", "42", "--persons", "3000", "--profile", "rural-older")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(dump_hash(again), dump_hash(self.main))
        self.assertEqual(file_sha(again), file_sha(self.main))

    def test_different_seed_gives_different_site(self):
        other = os.path.join(self.dir, "seed43.sqlite")
        r = run_synth("--out", other, "--seed", "43", "--persons", "3000", "--profile", "rural-older")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotEqual(counts(other), counts(self.main))
        self.assertNotEqual(dump_hash(other), dump_hash(self.main))

    def test_default_profile_depends_on_seed(self):
        seen = set()
        for seed in range(1, 9):
            path = os.path.join(self.dir, f"default{seed}.sqlite")
            r = run_synth("--out", path, "--seed", str(seed), "--persons", "50")
            self.assertEqual(r.returncode, 0, r.stderr)
            name = self.q1("SELECT cdm_source_name FROM cdm_source", path)
            m = re.search(r"\(([a-z-]+), seed (\d+)\)", name)
            self.assertIsNotNone(m, name)
            self.assertIn(m.group(1), PROFILES)
            self.assertEqual(m.group(2), str(seed))
            seen.add(m.group(1))
        self.assertGreaterEqual(len(seen), 2)

    # ---- schema and vocabulary ----

    def test_full_cdm_table_set(self):
        with open(DDL) as f:
            wanted = set(re.findall(r"CREATE TABLE (\w+)", f.read()))
        self.assertEqual(len(wanted), 39)
        have = {r[0] for r in self.q("SELECT name FROM sqlite_master WHERE type='table'")}
        self.assertLessEqual(wanted, have)
        self.assertEqual(self.q("SELECT cdm_version, cdm_version_concept_id FROM cdm_source"),
                         [("v5.4", 756265)])
        rel = self.q1("SELECT source_release_date FROM cdm_source")
        self.assertRegex(rel, r"^\d{4}-\d{2}-\d{2}$")

    def test_every_used_concept_exists(self):
        for path in self.db.values():
            for table, cols in CONCEPT_COLUMNS.items():
                for col in cols:
                    missing = self.q(
                        f"SELECT DISTINCT {col} FROM {table} WHERE {col} IS NOT NULL "
                        f"AND {col} NOT IN (SELECT concept_id FROM concept)", path)
                    self.assertEqual(missing, [], f"{table}.{col} in {path}")

    def test_standard_concepts_have_self_ancestor_rows(self):
        bad = self.q("SELECT concept_id FROM concept WHERE standard_concept = 'S' AND concept_id "
                     "NOT IN (SELECT ancestor_concept_id FROM concept_ancestor WHERE "
                     "ancestor_concept_id = descendant_concept_id AND min_levels_of_separation = 0 "
                     "AND max_levels_of_separation = 0)")
        self.assertEqual(bad, [])
        dangling = self.q("SELECT count(*) FROM concept_ancestor WHERE ancestor_concept_id NOT IN "
                          "(SELECT concept_id FROM concept) OR descendant_concept_id NOT IN "
                          "(SELECT concept_id FROM concept)")
        self.assertEqual(dangling, [(0,)])

    def test_local_concepts_are_marked(self):
        for cid, name, vocab in self.q("SELECT concept_id, concept_name, vocabulary_id FROM concept "
                                       "WHERE concept_id >= 2000000000"):
            self.assertEqual(vocab, "SDEFED")
            self.assertIn("local concept", name)
        # and nothing below the local range claims the local vocabulary
        self.assertEqual(self.q1("SELECT count(*) FROM concept WHERE vocabulary_id = 'SDEFED' "
                                 "AND concept_id < 2000000000"), 0)

    def test_required_concept_ids_present(self):
        required = [8507, 8532, 9201, 9202, 9203, 192671, 201826, 320128, 317009, 313217, 316139,
                    1118084, 1124300, 1503297, 1310149, 1308216, 1545958, 3004410, 3004249,
                    3038553, 8554, 8876, 9531]
        have = {r[0] for r in self.q("SELECT concept_id FROM concept")}
        self.assertEqual([c for c in required if c not in have], [])
        units = dict(self.q("SELECT measurement_concept_id, group_concat(DISTINCT unit_concept_id) "
                            "FROM measurement GROUP BY 1"))
        self.assertEqual(units[3004410], "8554")
        self.assertEqual(units[3004249], "8876")
        self.assertEqual(units[3038553], "9531")
        self.assertEqual(self.q1("SELECT count(*) FROM measurement WHERE value_as_number IS NULL "
                                 "OR unit_concept_id IS NULL"), 0)

    def test_drug_products_roll_up_to_ingredients(self):
        drugs = [r[0] for r in self.q("SELECT DISTINCT drug_concept_id FROM drug_exposure")]
        self.assertGreater(len(drugs), 8)
        for d in drugs:
            ing = self.q("SELECT ca.ancestor_concept_id FROM concept_ancestor ca JOIN concept c "
                         "ON c.concept_id = ca.ancestor_concept_id WHERE ca.descendant_concept_id = ? "
                         "AND c.concept_class_id = 'Ingredient' AND ca.min_levels_of_separation > 0",
                         args=(d,))
            self.assertEqual(len(ing), 1, f"drug concept {d} has no single ingredient")
        # exposures are recorded as products, so only "descendants" finds them
        for ingredient in (1118084, 1124300, 1503297, 1310149, 1308216, 1545958):
            direct = self.q1("SELECT count(*) FROM drug_exposure WHERE drug_concept_id = ?",
                             args=(ingredient,))
            rolled = self.q1("SELECT count(*) FROM drug_exposure WHERE drug_concept_id IN "
                             "(SELECT descendant_concept_id FROM concept_ancestor "
                             "WHERE ancestor_concept_id = ?)", args=(ingredient,))
            self.assertEqual(direct, 0, ingredient)
            self.assertGreater(rolled, 0, ingredient)
        celecoxib_products = self.q1(
            "SELECT count(DISTINCT drug_concept_id) FROM drug_exposure WHERE drug_concept_id IN "
            "(SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id = 1118084 "
            "AND min_levels_of_separation > 0)")
        self.assertGreaterEqual(celecoxib_products, 2)

    def test_gi_bleed_has_descendants_in_use(self):
        used = self.q("SELECT DISTINCT condition_concept_id FROM condition_occurrence WHERE "
                      "condition_concept_id IN (SELECT descendant_concept_id FROM concept_ancestor "
                      "WHERE ancestor_concept_id = 192671)")
        self.assertGreaterEqual(len(used), 3)
        self.assertIn((192671,), used)

    # ---- dates ----

    def test_dates_are_iso_text(self):
        for table, (start, end) in EVENT_DATES.items():
            for col in filter(None, (start, end)):
                bad = self.q1(f"SELECT count(*) FROM {table} WHERE {col} IS NOT NULL AND "
                              f"(typeof({col}) != 'text' OR {col} NOT GLOB "
                              f"'[12][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]' OR date({col}) != {col})")
                self.assertEqual(bad, 0, f"{table}.{col}")

    def test_events_within_observation_period(self):
        for path in self.db.values():
            self.assertEqual(self.q1("SELECT count(*) - count(DISTINCT person_id) FROM "
                                     "observation_period", path), 0)
            self.assertEqual(self.q1("SELECT count(*) FROM person WHERE person_id NOT IN "
                                     "(SELECT person_id FROM observation_period)", path), 0)
            for table, (start, end) in EVENT_DATES.items():
                cond = f"e.{start} < op.observation_period_start_date OR " \
                       f"e.{start} > op.observation_period_end_date"
                if end:
                    cond += f" OR e.{end} < e.{start} OR e.{end} > op.observation_period_end_date"
                bad = self.q1(f"SELECT count(*) FROM {table} e JOIN observation_period op "
                              f"ON op.person_id = e.person_id WHERE {cond}", path)
                self.assertEqual(bad, 0, f"{table} in {path}")
            # the death date closes the observation period
            self.assertEqual(self.q1("SELECT count(*) FROM death d JOIN observation_period op "
                                     "ON op.person_id = d.person_id WHERE "
                                     "d.death_date != op.observation_period_end_date", path), 0)
            self.assertEqual(self.q1("SELECT count(*) FROM person p JOIN observation_period op "
                                     "ON op.person_id = p.person_id WHERE "
                                     "op.observation_period_start_date < printf('%04d-%02d-%02d', "
                                     "p.year_of_birth, p.month_of_birth, p.day_of_birth)", path), 0)

    # ---- profiles and realism ----

    def test_profiles_differ_in_case_mix(self):
        def stats(path):
            return {
                "age": self.q1("SELECT avg(2020 - year_of_birth) FROM person", path),
                "male": self.q1("SELECT avg(gender_concept_id = 8507) FROM person", path),
                "t2dm": self.q1("SELECT count(DISTINCT person_id) FROM condition_occurrence "
                                "WHERE condition_concept_id = 201826", path),
                "asthma": self.q1("SELECT count(DISTINCT person_id) FROM condition_occurrence "
                                  "WHERE condition_concept_id = 317009", path),
                "white": self.q1("SELECT avg(race_concept_id = 8527) FROM person", path),
            }
        s = {p: stats(self.db[p]) for p in PROFILES}
        self.assertGreater(s["rural-older"]["age"], s["urban-young"]["age"] + 10)
        self.assertGreater(s["rural-older"]["white"], s["urban-young"]["white"] + 0.2)
        self.assertGreater(s["deprived-urban"]["t2dm"], 1.3 * s["urban-young"]["t2dm"])
        self.assertGreater(s["urban-young"]["asthma"], s["rural-older"]["asthma"])
        self.assertEqual(len({tuple(sorted(counts(self.db[p]).items())) for p in PROFILES}), 4)
        for p in PROFILES:
            self.assertTrue(0.4 < s[p]["male"] < 0.6, p)

    def test_nsaid_exposure_raises_gi_bleed_risk(self):
        nsaid_set = ",".join(map(str, NSAID_INGREDIENTS))
        exposed = self.q1(f"SELECT count(DISTINCT d.person_id) FROM drug_exposure d JOIN "
                          f"concept_ancestor ca ON ca.descendant_concept_id = d.drug_concept_id "
                          f"WHERE ca.ancestor_concept_id IN ({nsaid_set})")
        after = self.q1(f"""
            SELECT count(DISTINCT c.person_id) FROM condition_occurrence c
            JOIN concept_ancestor gb ON gb.descendant_concept_id = c.condition_concept_id
                 AND gb.ancestor_concept_id = 192671
            JOIN drug_exposure d ON d.person_id = c.person_id
            JOIN concept_ancestor ca ON ca.descendant_concept_id = d.drug_concept_id
                 AND ca.ancestor_concept_id IN ({nsaid_set})
            WHERE c.condition_start_date BETWEEN d.drug_exposure_start_date
                  AND date(d.drug_exposure_end_date, '+30 days')""")
        unexposed = self.q1(f"""
            SELECT count(*) FROM person p WHERE p.person_id NOT IN (
                SELECT d.person_id FROM drug_exposure d JOIN concept_ancestor ca
                ON ca.descendant_concept_id = d.drug_concept_id
                WHERE ca.ancestor_concept_id IN ({nsaid_set}))""")
        unexposed_bleed = self.q1(f"""
            SELECT count(DISTINCT c.person_id) FROM condition_occurrence c
            JOIN concept_ancestor gb ON gb.descendant_concept_id = c.condition_concept_id
                 AND gb.ancestor_concept_id = 192671
            WHERE c.person_id NOT IN (
                SELECT d.person_id FROM drug_exposure d JOIN concept_ancestor ca
                ON ca.descendant_concept_id = d.drug_concept_id
                WHERE ca.ancestor_concept_id IN ({nsaid_set}))""")
        self.assertGreater(exposed, 100)
        self.assertGreater(after, 10)
        self.assertGreater(after / exposed, 3 * max(unexposed_bleed, 1) / unexposed)

    def test_diabetes_drives_hba1c_and_metformin(self):
        diab = "SELECT person_id FROM condition_occurrence WHERE condition_concept_id = 201826"
        rate_diab = self.q1(f"SELECT avg(person_id IN (SELECT person_id FROM measurement WHERE "
                            f"measurement_concept_id = 3004410)) FROM person WHERE person_id IN ({diab})")
        rate_other = self.q1(f"SELECT avg(person_id IN (SELECT person_id FROM measurement WHERE "
                             f"measurement_concept_id = 3004410)) FROM person WHERE person_id NOT IN ({diab})")
        self.assertGreater(rate_diab, 5 * rate_other)
        mean_diab = self.q1(f"SELECT avg(value_as_number) FROM measurement WHERE "
                            f"measurement_concept_id = 3004410 AND person_id IN ({diab})")
        self.assertGreater(mean_diab, 6.5)
        # metformin only in diabetics
        self.assertEqual(self.q1(f"SELECT count(*) FROM drug_exposure WHERE drug_concept_id IN "
                                 f"(SELECT descendant_concept_id FROM concept_ancestor WHERE "
                                 f"ancestor_concept_id = 1503297) AND person_id NOT IN ({diab})"), 0)
        self.assertGreater(self.q1("SELECT count(*) FROM death"), 0)
        self.assertGreater(self.q1("SELECT count(*) FROM device_exposure"), 0)

    def test_hypertension_raises_blood_pressure(self):
        htn = "SELECT person_id FROM condition_occurrence WHERE condition_concept_id = 320128"
        with_htn = self.q1(f"SELECT avg(value_as_number) FROM measurement WHERE "
                           f"measurement_concept_id = 3004249 AND person_id IN ({htn})")
        without = self.q1(f"SELECT avg(value_as_number) FROM measurement WHERE "
                          f"measurement_concept_id = 3004249 AND person_id NOT IN ({htn})")
        self.assertGreater(with_htn, without + 5)

    # ---- files and arguments ----

    def test_existing_file_is_not_overwritten_without_force(self):
        path = os.path.join(self.dir, "exists.sqlite")
        with open(path, "w") as f:
            f.write("keep me")
        r = run_synth("--out", path, "--seed", "1", "--persons", "10")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--force", r.stderr)
        with open(path) as f:
            self.assertEqual(f.read(), "keep me")
        self.assertFalse(os.path.exists(path + ".tmp"))
        r = run_synth("--out", path, "--seed", "1", "--persons", "10", "--force")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.q1("SELECT count(*) FROM person", path), 10)
        self.assertFalse(os.path.exists(path + ".tmp"))

    def test_stale_tmp_is_replaced_and_summary_is_one_line(self):
        path = os.path.join(self.dir, "stale.sqlite")
        with open(path + ".tmp", "w") as f:
            f.write("garbage from a killed run")
        r = run_synth("--out", path, "--seed", "5", "--persons", "200")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(path + ".tmp"))
        self.assertEqual(r.stdout, "")
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertRegex(lines[0], r"200 persons, \d+ events, \d+\.\d+ s")

    def test_unwritable_destination_fails_cleanly(self):
        path = os.path.join(self.dir, "no-such-dir", "x.sqlite")
        r = run_synth("--out", path, "--seed", "1", "--persons", "10")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.splitlines()), 1)
        self.assertFalse(os.path.exists(path))

    def test_bad_arguments_exit_2(self):
        out = os.path.join(self.dir, "bad.sqlite")
        cases = [
            [],
            ["--seed", "1", "--persons", "10"],
            ["--out", out, "--persons", "10"],
            ["--out", out, "--seed", "1"],
            ["--out", out, "--seed", "-1", "--persons", "10"],
            ["--out", out, "--seed", "abc", "--persons", "10"],
            ["--out", out, "--seed", "18446744073709551616", "--persons", "10"],
            ["--out", out, "--seed", "1", "--persons", "0"],
            ["--out", out, "--seed", "1", "--persons", "10x"],
            ["--out", out, "--seed", "1", "--persons", "99999999999"],
            ["--out", out, "--seed", "1", "--persons", "10", "--profile", "martian"],
            ["--out", out, "--seed", "1", "--persons", "10", "--bogus"],
            ["--out", out, "--seed", "1", "--persons"],
            ["--out", out, "--out", out, "--seed", "1", "--persons", "10"],
            ["--out=", "--seed", "1", "--persons", "10"],
        ]
        for args in cases:
            r = run_synth(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, (args, r.stderr))
            self.assertFalse(os.path.exists(out), args)
        r = run_synth("--out=" + out, "--seed=3", "--persons=20", "--profile=mixed")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run_synth("--help")
        self.assertEqual(r.returncode, 0)
        for p in PROFILES:
            self.assertIn(p, r.stdout)


if __name__ == "__main__":
    unittest.main()
