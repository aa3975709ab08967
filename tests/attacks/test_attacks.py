"""Attacks on the disclosure rules, run against real agents via the coordinator.

Each attack is run twice: against a federation with the rule on (the attack
must fail: refused, or the attacker learns nothing) and with that rule
switched off in the site's config (the attack must SUCCEED), so the suite
is known to have teeth. The data is a small hand-built OMOP database whose
secrets the test knows: a target person T (id 7) is female, and is the only
drug user without condition C.

Attacks:
  differencing   count(drug) by sex, then count(drug AND condition) by sex:
                 the only person dropped is T, so the female count moves and
                 reveals T's sex (rounding does not hide it: 13 -> 15, 12 -> 10)
  small cells    stratify until a cell holds one person
  repeats        ask the same question over and over (the 8th is refused)
  margins        subtract released cells from released totals to recover a
                 suppressed cell
"""
import itertools
import json
import os
import sqlite3
import sys
import tempfile
import unittest
from fractions import Fraction

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from sandbox import Sandbox  # noqa: E402

DRUG, COND = 1001, 2001
TARGET = 7


def build_db(path):
    """26 drug users: 13 female (incl. T), 13 male; everyone but T has C.
    Plus 60 other persons spread over ages so stratified tables have margins."""
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE person(person_id INTEGER PRIMARY KEY, gender_concept_id INTEGER,
            year_of_birth INTEGER, month_of_birth INTEGER, day_of_birth INTEGER,
            race_concept_id INTEGER, ethnicity_concept_id INTEGER, care_site_id INTEGER);
        CREATE TABLE observation_period(observation_period_id INTEGER, person_id INTEGER,
            observation_period_start_date TEXT, observation_period_end_date TEXT,
            period_type_concept_id INTEGER);
        CREATE TABLE drug_exposure(drug_exposure_id INTEGER, person_id INTEGER,
            drug_concept_id INTEGER, drug_exposure_start_date TEXT, drug_exposure_end_date TEXT);
        CREATE TABLE condition_occurrence(condition_occurrence_id INTEGER, person_id INTEGER,
            condition_concept_id INTEGER, condition_start_date TEXT, condition_end_date TEXT);
        CREATE TABLE concept(concept_id INTEGER PRIMARY KEY, concept_name TEXT,
            domain_id TEXT, vocabulary_id TEXT, concept_class_id TEXT, standard_concept TEXT);
        CREATE TABLE concept_ancestor(ancestor_concept_id INTEGER, descendant_concept_id INTEGER,
            min_levels_of_separation INTEGER, max_levels_of_separation INTEGER);
        CREATE TABLE cdm_source(cdm_source_name TEXT, cdm_version TEXT);
        CREATE INDEX de_c ON drug_exposure(drug_concept_id);
        CREATE INDEX de_p ON drug_exposure(person_id);
        CREATE INDEX co_c ON condition_occurrence(condition_concept_id);
        CREATE INDEX co_p ON condition_occurrence(person_id);
        CREATE INDEX ca_a ON concept_ancestor(ancestor_concept_id);
        INSERT INTO cdm_source VALUES ('attack fixture', 'v5.4');
        INSERT INTO concept VALUES (1001, 'drug D', 'Drug', 'X', 'Ingredient', 'S'),
                                   (2001, 'condition C', 'Condition', 'X', 'Clinical Finding', 'S');
        INSERT INTO concept_ancestor VALUES (1001, 1001, 0, 0), (2001, 2001, 0, 0);
    """)
    # Persons 1..26 use drug D; odd ids are female, so 13 women, T (id 7)
    # among them.
    pid = 0
    for i in range(26):
        pid += 1
        female = pid % 2 == 1
        db.execute("INSERT INTO person VALUES (?,?,?,1,1,0,0,NULL)",
                   (pid, 8532 if female else 8507, 1950 + (i % 40)))
    assert TARGET % 2 == 1
    for p in range(1, 27):
        db.execute("INSERT INTO drug_exposure VALUES (?,?,?,?,?)",
                   (p, p, DRUG, "2015-03-01", "2015-04-01"))
        if p != TARGET:
            db.execute("INSERT INTO condition_occurrence VALUES (?,?,?,?,?)",
                       (p, p, COND, "2016-01-01", "2016-01-02"))
    for j in range(60):
        pid += 1
        db.execute("INSERT INTO person VALUES (?,?,?,1,1,0,0,NULL)",
                   (pid, 8532 if j % 3 else 8507, 1935 + j))
        db.execute("INSERT INTO drug_exposure VALUES (?,?,?,?,?)",
                   (1000 + pid, pid, DRUG if j % 4 == 0 else 9999, "2017-03-01", "2017-04-01"))
        db.execute("INSERT INTO condition_occurrence VALUES (?,?,?,?,?)",
                   (1000 + pid, pid, COND, "2016-01-01", "2016-01-02"))
    db.execute("INSERT INTO concept VALUES (9999, 'other drug', 'Drug', 'X', 'Ingredient', 'S')")
    db.execute("INSERT INTO concept_ancestor VALUES (9999, 9999, 0, 0)")
    db.execute("""INSERT INTO observation_period SELECT person_id, person_id, '2000-01-01',
                  '2020-12-31', 32817 FROM person""")
    db.commit()
    db.close()


def count_spec(crit, by=("sex",), **extra):
    d = {"kind": "count", "project": "demo", "dataset": "omop",
         "cohort": {"all": crit}, "by": list(by)}
    d.update(extra)
    return d


ONLY_DRUG = [{"domain": "drug", "concepts": [DRUG]}]
DRUG_AND_C = [{"domain": "drug", "concepts": [DRUG]}, {"domain": "condition", "concepts": [COND]}]


def site(d):
    return d["sites"][0]


def cell(site_result, **strata):
    for c in site_result.get("cells", []):
        if c["strata"] == strata:
            return c
    return None


class AttackBase(unittest.TestCase):
    """One single-site federation over the fixture, per rule setting."""
    DISCLOSURE = {}
    MIN_CELL = None
    sb = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sdefed-attack-db-")
        cls.db = os.path.join(cls.tmp, "fixture.sqlite")
        build_db(cls.db)
        cls.sb = Sandbox(site_files={"hospital": cls.db}, disclosure=cls.DISCLOSURE,
                         min_cell=cls.MIN_CELL, prefix="sdefed-attack-")
        try:
            cls.sb.up()
        except BaseException:
            cls.sb.down()
            raise

    @classmethod
    def tearDownClass(cls):
        reports = cls.sb.down() if cls.sb else []
        import shutil
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if reports:
            raise AssertionError("sanitizer reports:\n" + "\n".join(reports[:20]))

    def ask(self, spec):
        return site(self.sb.query(spec, timeout=20))

    # -- the attacks; each returns what the attacker learned (or None) --
    def differencing_attack(self):
        """Returns the inferred sex of T, or None if the attack was stopped."""
        a = self.ask(count_spec(ONLY_DRUG))
        b = self.ask(count_spec(DRUG_AND_C))
        if a["status"] != "ok" or b["status"] != "ok":
            return None, (a, b)
        fa, fb = cell(a, sex="female"), cell(b, sex="female")
        ma, mb = cell(a, sex="male"), cell(b, sex="male")
        if None in (fa, fb, ma, mb) or None in (fa["value"], fb["value"]):
            return None, (a, b)
        if fa["value"] != fb["value"] and ma["value"] == mb["value"]:
            return "female", (a, b)
        if ma["value"] != mb["value"] and fa["value"] == fb["value"]:
            return "male", (a, b)
        return None, (a, b)

    def repeat_attack(self, times=8):
        spec = count_spec(ONLY_DRUG, by=())
        outcomes = [self.ask(spec) for _ in range(times)]
        return outcomes

    def small_cell_attack(self):
        """Finest stratification; returns any released value in 1..9."""
        r = self.ask(count_spec(ONLY_DRUG, by=("sex", "age_band")))
        return [c for c in r.get("cells", [])
                if c["value"] is not None and 1 <= c["value"] <= 9]


# ---- differencing ----

class DifferencingOn(AttackBase):
    DISCLOSURE = {"max_identical": 1000}

    def test_one_person_difference_is_refused(self):
        learned, (a, b) = self.differencing_attack()
        self.assertIsNone(learned, "differencing attack learned T's sex: %r %r" % (a, b))
        self.assertEqual(b["status"], "refused")
        self.assertIn("differencing", b["reason"])


class DifferencingOff(AttackBase):
    DISCLOSURE = {"max_identical": 1000, "differencing": "false"}

    def test_attack_has_teeth_without_the_rule(self):
        learned, (a, b) = self.differencing_attack()
        self.assertEqual(learned, "female",
                         "with differencing off the attack should work: %r %r" % (a, b))


# ---- small cells ----

class SmallCellsOn(AttackBase):
    DISCLOSURE = {"max_identical": 1000, "differencing": "false"}

    def test_fine_strata_release_no_small_count(self):
        self.assertEqual(self.small_cell_attack(), [])


class SmallCellsOff(AttackBase):
    DISCLOSURE = {"max_identical": 1000, "differencing": "false"}
    MIN_CELL = 1

    def test_attack_has_teeth_without_the_rule(self):
        self.assertTrue(self.small_cell_attack(), "min_cell 1 should release small cells")


# ---- repeats ----

class RepeatsOn(AttackBase):
    DISCLOSURE = {"differencing": "false"}

    def test_eighth_identical_query_refused_and_answers_identical(self):
        outs = self.repeat_attack(8)
        ok = [o for o in outs if o["status"] == "ok"]
        self.assertEqual(len(ok), 7)
        self.assertEqual(outs[7]["status"], "refused")
        self.assertIn("repeat", outs[7]["reason"])
        # Identical questions, identical answers: averaging gains nothing.
        self.assertEqual(len({json.dumps(o["cells"], sort_keys=True) for o in ok}), 1)
        # A reordered but equivalent spec counts as the same question.
        again = self.ask({"by": [], "cohort": {"all": ONLY_DRUG}, "dataset": "omop",
                          "project": "demo", "kind": "count"})
        self.assertEqual(again["status"], "refused")


class RepeatsOff(AttackBase):
    DISCLOSURE = {"differencing": "false", "max_identical": 1000}

    def test_attack_has_teeth_without_the_rule(self):
        outs = self.repeat_attack(8)
        self.assertTrue(all(o["status"] == "ok" for o in outs))


# ---- margins: recover a suppressed cell by subtraction ----

def determined_cells(cells):
    """Given cells of a 2-way table with margins (values or None), return the
    inner suppressed cells whose value is determined by the released numbers
    via the margin equations (exact rational elimination)."""
    inner = [c for c in cells if len(c["strata"]) == 2]
    rows = sorted({c["strata"]["sex"] for c in inner})
    cols = sorted({c["strata"]["age_band"] for c in inner})
    val = {(c["strata"]["sex"], c["strata"]["age_band"]): c["value"] for c in inner}
    unknown = [k for k in itertools.product(rows, cols) if val.get(k, 0) is None]
    idx = {k: i for i, k in enumerate(unknown)}
    eqs = []
    for r in rows:   # row totals
        m = [c for c in cells if c["strata"] == {"sex": r}]
        if m and m[0]["value"] is not None:
            eqs.append(([k for k in itertools.product([r], cols)], m[0]["value"]))
    for col in cols:
        m = [c for c in cells if c["strata"] == {"age_band": col}]
        if m and m[0]["value"] is not None:
            eqs.append(([k for k in itertools.product(rows, [col])], m[0]["value"]))
    mat = []
    for keys, total in eqs:
        row = [Fraction(0)] * (len(unknown) + 1)
        rest = Fraction(total)
        for k in keys:
            v = val.get(k, 0)
            if v is None:
                row[idx[k]] += 1
            else:
                rest -= v
        row[-1] = rest
        if any(row[:-1]):
            mat.append(row)
    # Gauss-Jordan; a variable is determined iff its pivot row has no other unknown.
    piv_rows, r = [], 0
    for c in range(len(unknown)):
        p = next((i for i in range(r, len(mat)) if mat[i][c] != 0), None)
        if p is None:
            continue
        mat[r], mat[p] = mat[p], mat[r]
        mat[r] = [x / mat[r][c] for x in mat[r]]
        for i in range(len(mat)):
            if i != r and mat[i][c] != 0:
                f = mat[i][c]
                mat[i] = [a - f * b for a, b in zip(mat[i], mat[r])]
        piv_rows.append((r, c))
        r += 1
    out = []
    for rr, c in piv_rows:
        if all(mat[rr][j] == 0 for j in range(len(unknown)) if j != c):
            out.append(unknown[c])
    return out


class MarginsOn(AttackBase):
    DISCLOSURE = {"max_identical": 1000, "differencing": "false"}

    def test_no_suppressed_cell_recoverable_from_margins(self):
        r = self.ask(count_spec(ONLY_DRUG, by=("sex", "age_band"), margins=True))
        self.assertEqual(r["status"], "ok", r)
        suppressed = [c for c in r["cells"] if c["value"] is None]
        self.assertTrue(suppressed, "the fixture should produce suppressed cells")
        self.assertEqual(determined_cells(r["cells"]), [])
        # Rounding is consistent: every released value is a multiple of 5.
        self.assertTrue(all(c["value"] % 5 == 0 for c in r["cells"] if c["value"] is not None))

    def test_checker_has_teeth(self):
        # The same table with only primary suppression (reconstructed from
        # the released table by un-suppressing secondary cells with their
        # true values) WOULD leak: prove the checker can see a leak.
        cells = [{"strata": {"sex": "f", "age_band": "a"}, "value": None},
                 {"strata": {"sex": "f", "age_band": "b"}, "value": 20},
                 {"strata": {"sex": "m", "age_band": "a"}, "value": 15},
                 {"strata": {"sex": "m", "age_band": "b"}, "value": 15},
                 {"strata": {"sex": "f"}, "value": 25},
                 {"strata": {"sex": "m"}, "value": 30},
                 {"strata": {"age_band": "a"}, "value": 20},
                 {"strata": {"age_band": "b"}, "value": 35}]
        self.assertEqual(determined_cells(cells), [("f", "a")])


if __name__ == "__main__":
    unittest.main()
