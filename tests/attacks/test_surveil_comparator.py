"""Differencing through the comparator arm of a surveil query (issue 4),
against a real agent through the coordinator.

A surveil query releases per-period counts for its exposure arm and, when
it has one, for a comparator arm. The attacker keeps the exposure fixed
and moves one person in or out of the comparator: the comparator's
released persons count moves with that person (the fixture puts the count
on a rounding boundary, 42 -> 40 and 43 -> 45), so its difference reveals
that Z took drug ZDRUG. With differencing on, the second query is refused
(the comparator differs from a kept cohort by one person), and so is one
query whose own exposure and comparator arms differ by one person; with
differencing off the attack works.
"""
import os
import sqlite3
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from test_attacks import AttackBase, DRUG, COND, build_db  # noqa: E402
from sandbox import Sandbox  # noqa: E402

OTHER = 9999           # the exposure: 45 persons (build_db's "other drug")
PAD, ZDRUG = 1003, 1002
PAD_PERSON, Z = 28, 29  # two of build_db's "other 60", neither takes DRUG


def build_comparator_db(path):
    """build_db() (41 persons take DRUG) plus PAD (one more person, so
    DRUG or PAD = 42) and ZDRUG, taken by Z alone (DRUG, PAD or ZDRUG = 43)."""
    build_db(path)
    db = sqlite3.connect(path)
    for pid in (PAD_PERSON, Z):
        (n,) = db.execute("SELECT COUNT(*) FROM drug_exposure WHERE person_id = ? AND "
                          "drug_concept_id = ?", (pid, DRUG)).fetchone()
        assert n == 0, pid
    db.executescript("""
        INSERT INTO concept VALUES (1002, 'drug Z', 'Drug', 'X', 'Ingredient', 'S'),
                                   (1003, 'drug P', 'Drug', 'X', 'Ingredient', 'S');
        INSERT INTO concept_ancestor VALUES (1002, 1002, 0, 0), (1003, 1003, 0, 0);
    """)
    db.execute("INSERT INTO drug_exposure VALUES (7001, ?, ?, '2015-06-01', '2015-07-01')",
               (PAD_PERSON, PAD))
    db.execute("INSERT INTO drug_exposure VALUES (7002, ?, ?, '2015-06-01', '2015-07-01')",
               (Z, ZDRUG))
    (n,) = db.execute("SELECT COUNT(DISTINCT person_id) FROM drug_exposure WHERE "
                      "drug_concept_id IN (?, ?)", (DRUG, PAD)).fetchone()
    assert n == 42, n
    db.commit()
    db.close()


def surveil_spec(exposure, comparator):
    return {"kind": "surveil", "project": "demo", "dataset": "omop",
            "exposure": {"domain": "drug", "concepts": exposure},
            "comparator": {"domain": "drug", "concepts": comparator},
            "outcome": {"domain": "condition", "concepts": [COND]},
            "window_days": [0, 30], "period": "all",
            "from": "1900-01-01", "to": "2100-12-31"}


def comparator_persons(site_result):
    rows = [r for r in site_result.get("surveil") or [] if r["arm"] == "comparator"]
    return rows[0]["persons"] if len(rows) == 1 else None


class ComparatorBase(AttackBase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sdefed-attack-db-")
        cls.db = os.path.join(cls.tmp, "fixture.sqlite")
        build_comparator_db(cls.db)
        cls.sb = Sandbox(site_files={"hospital": cls.db}, disclosure=cls.DISCLOSURE,
                         min_cell=cls.MIN_CELL, prefix="sdefed-attack-")
        try:
            cls.sb.up()
        except BaseException:
            cls.sb.down()
            raise

    def comparator_attack(self):
        """Returns (what the attacker learned about Z or None, results)."""
        a = self.ask(surveil_spec([OTHER], [DRUG, PAD]))
        b = self.ask(surveil_spec([OTHER], [DRUG, PAD, ZDRUG]))
        if a["status"] != "ok" or b["status"] != "ok":
            return None, (a, b)
        pa, pb = comparator_persons(a), comparator_persons(b)
        if pa is None or pb is None or pa == pb:
            return None, (a, b)
        return "Z took ZDRUG", (a, b)


class ComparatorDifferencingOn(ComparatorBase):
    DISCLOSURE = {"max_identical": 1000}

    def test_one_person_through_the_comparator_is_refused(self):
        learned, (a, b) = self.comparator_attack()
        self.assertIsNone(learned, (a, b))
        self.assertEqual(a["status"], "ok", a)
        self.assertEqual(comparator_persons(a), 40, a)
        self.assertEqual(b["status"], "refused", b)
        self.assertIn("differencing", b["reason"])
        self.assertFalse(b.get("surveil"), b)

    def test_arms_of_one_query_one_person_apart_are_refused(self):
        # exposure DRUG or PAD (42), comparator DRUG or PAD or ZDRUG (43)
        r = self.ask(surveil_spec([DRUG, PAD], [DRUG, PAD, ZDRUG]))
        self.assertEqual(r["status"], "refused", r)
        self.assertIn("differencing", r["reason"])
        self.assertFalse(r.get("surveil"), r)


class ComparatorDifferencingOff(ComparatorBase):
    DISCLOSURE = {"max_identical": 1000, "differencing": "false"}

    def test_attack_has_teeth_without_the_rule(self):
        learned, (a, b) = self.comparator_attack()
        self.assertEqual(learned, "Z took ZDRUG", (a, b))
        self.assertEqual((comparator_persons(a), comparator_persons(b)), (40, 45))
        r = self.ask(surveil_spec([DRUG, PAD], [DRUG, PAD, ZDRUG]))
        self.assertEqual(r["status"], "ok", r)


if __name__ == "__main__":
    unittest.main()
