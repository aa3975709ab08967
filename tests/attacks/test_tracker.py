"""Denning's tracker, against a real agent through the coordinator.

The fixture (test_attacks.build_db) has a target T (id 7): a woman who uses
drug D and is the only drug-D user WITHOUT condition C. The query set
Q = "drug D and not C" is {T} — far below min_cell, so asking it directly
releases nothing. A tracker pads it: count(Q or R) - count(R) for a large
set R is |Q minus R|, and R = "has C" never contains T. Rounding to 5 hides a
difference of one only when both totals round alike, so the attacker scans
several trackers (C or other drugs, restricted to women, men or neither)
and concludes "T lacks C" as soon as one pair of rounded answers differs.

With the differencing rule on, every padded query is a one-person
neighbour of its tracker and one of each pair is refused, so no pair ever
differs; with the rule off the scan finds a pair on a rounding boundary
(women with C: 52 -> 50, padded 53 -> 55) and the attack succeeds.
"""
import os
import sqlite3
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_attacks import COND, DRUG, TARGET, AttackBase, site  # noqa: E402

OTHER_DRUG = 9999
Q = {"all": [{"domain": "drug", "concepts": [DRUG]},
             {"not": {"domain": "condition", "concepts": [COND]}}]}
TRACKERS = {
    "C": {"domain": "condition", "concepts": [COND]},
    "other drug": {"domain": "drug", "concepts": [OTHER_DRUG]},
}
SEXES = (None, ["female"], ["male"])


def cohort(top, sex):
    c = dict(top)
    if sex:
        c["sex"] = sex
    return c


def spec(c):
    return {"kind": "count", "project": "demo", "dataset": "omop", "cohort": c, "by": []}


def total(result):
    if result["status"] != "ok":
        return None
    cells = [c for c in result["cells"] if c["strata"] == {}]
    return cells[0]["value"] if cells else None


class TrackerBase(AttackBase):

    def scan(self):
        """Every (tracker, sex) pair: (rounded count(R), rounded count(Q or R),
        statuses/reasons). Returns the attacker's conclusion and the log."""
        log = []
        for name, r in TRACKERS.items():
            for sex in SEXES:
                plain = site(self.sb.query(spec(cohort({"all": [r]}, sex)), timeout=20))
                padded = site(self.sb.query(spec(cohort({"any": [Q, r]}, sex)), timeout=20))
                log.append((name, sex, plain, padded))
        differs = [(n, s) for n, s, a, b in log
                   if total(a) is not None and total(b) is not None and total(a) != total(b)]
        return ("T lacks C" if differs else None), differs, log

    def boundary_pairs(self):
        """Ground truth from the fixture: trackers whose plain and padded
        exact counts round differently (so the scan can succeed)."""
        db = sqlite3.connect(self.db)
        try:
            with_c = {p for (p,) in db.execute(
                "SELECT person_id FROM condition_occurrence WHERE condition_concept_id = ?",
                (COND,))}
            other = {p for (p,) in db.execute(
                "SELECT person_id FROM drug_exposure WHERE drug_concept_id = ?", (OTHER_DRUG,))}
            sex = dict(db.execute("SELECT person_id, gender_concept_id FROM person"))
        finally:
            db.close()
        sets = {"C": with_c, "other drug": other}
        want = {None: (8532, 8507), ("female",): (8532,), ("male",): (8507,)}
        out = []
        for name, base in sets.items():
            for s in SEXES:
                keep = {p for p in base if sex[p] in want[tuple(s) if s else None]}
                padded = keep | ({TARGET} if sex[TARGET] in want[tuple(s) if s else None]
                                 else set())
                rnd = lambda n: 5 * ((n + 2) // 5)   # noqa: E731  round half up to 5
                if rnd(len(keep)) != rnd(len(padded)):
                    out.append((name, s))
        return out


class TrackerOn(TrackerBase):
    DISCLOSURE = {"max_identical": 1000}

    def test_tracker_scan_learns_nothing(self):
        # The scan would work if answered (the fixture has a boundary pair) ...
        self.assertIn(("C", ["female"]), self.boundary_pairs())
        learned, differs, log = self.scan()
        self.assertIsNone(learned, "tracker learned T's condition via %r" % differs)
        # ... and it is the differencing rule that stops it: wherever T is in
        # the padded set, one of the pair is refused for differencing.
        for name, sex, plain, padded in log:
            if sex == ["male"]:
                continue   # T is not in these padded sets: nothing to difference
            statuses = (plain["status"], padded["status"])
            self.assertIn("refused", statuses, (name, sex, plain, padded))
            refused = plain if plain["status"] == "refused" else padded
            self.assertIn("differencing", refused["reason"])

    def test_query_set_alone_is_suppressed(self):
        r = site(self.sb.query(spec(Q), timeout=20))
        self.assertEqual(r["status"], "ok", r)
        self.assertIsNone(total(r), r)   # one person: suppressed, no number


class TrackerOff(TrackerBase):
    DISCLOSURE = {"max_identical": 1000, "differencing": "false"}

    def test_attack_has_teeth_without_the_rule(self):
        learned, differs, log = self.scan()
        self.assertEqual(learned, "T lacks C", log)
        self.assertIn(("C", ["female"]), differs)


if __name__ == "__main__":
    unittest.main()
