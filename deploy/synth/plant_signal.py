#!/usr/bin/env python3
"""deploy/synth/plant_signal.py — plant a device safety signal in a synthetic OMOP site.

For post-market surveillance demos and tests (issue 6): adds to a site's
OMOP SQLite file (from sdefed-synth) a new device, a "leadless pacemaker"
(local concept 2000000902), implanted in PER_MONTH persons a month between
START and END, and a device-related adverse event (local concept
2000000901) that follows an implant within 1-30 days with probability
BASE_RISK — or BASE_RISK x RELATIVE_RISK for implants on or after
RISE_FROM, when given. Only persons observed, alive and without an
earlier implant for the 30 days after the implant day are chosen, so the
whole window is at risk. Deterministic for a given file and seed.

    plant_signal.py SITE.sqlite --seed 1 [--start 2022-01-01] [--end 2024-06-30]
                    [--per-month 60] [--base-risk 0.08]
                    [--rise-from 2023-07-01 --relative-risk 3]

Prints one JSON line: implants, events, and the planted parameters.
"""

import argparse
import datetime as dt
import json
import random
import sqlite3
import sys

DEVICE = 2000000902
EVENT = 2000000901
CONCEPTS = [
    (DEVICE, "Leadless pacemaker, model LP-1 (sdefed demo concept)", "Device", "SDEFED",
     "Device", "S", "SDEFED-DEMO-DEV1"),
    (EVENT, "Pacemaker device dislodgement (sdefed demo concept)", "Condition", "SDEFED",
     "Clinical Finding", "S", "SDEFED-DEMO-AE1"),
]
WINDOW = 30          # days after the implant in which the event may follow
ID_BASE = 9_000_000_000   # row ids far above sdefed-synth's


def parse_date(s):
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError("not a date YYYY-MM-DD: %r" % s)


def months(start, end):
    d = start.replace(day=1)
    while d <= end:
        nxt = (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        yield max(d, start), min(nxt - dt.timedelta(days=1), end)
        d = nxt


def add_concepts(db):
    have = {r[0] for r in db.execute("SELECT concept_id FROM concept WHERE concept_id IN (?,?)",
                                     (DEVICE, EVENT))}
    for c in CONCEPTS:
        if c[0] in have:
            continue
        db.execute("INSERT INTO concept VALUES (?,?,?,?,?,?,?,'1970-01-01','2099-12-31',NULL)", c)
        db.execute("INSERT INTO concept_ancestor VALUES (?,?,0,0)", (c[0], c[0]))


def candidates(db, start, end):
    """(person, first observable day, last observable day) of persons
    observed, alive, for some span in [start, end + WINDOW]."""
    rows = db.execute(
        "SELECT op.person_id, MAX(op.observation_period_start_date, ?), "
        "       MIN(op.observation_period_end_date, COALESCE(d.death_date, '9999-12-31')) "
        "FROM observation_period op LEFT JOIN death d ON d.person_id = op.person_id "
        "WHERE op.observation_period_end_date >= ? AND op.observation_period_start_date <= ? "
        "ORDER BY op.person_id, op.observation_period_start_date",
        (start.isoformat(), start.isoformat(), end.isoformat())).fetchall()
    out = {}
    for pid, lo, hi in rows:
        lo, hi = dt.date.fromisoformat(lo), dt.date.fromisoformat(hi)
        if (hi - lo).days > WINDOW and pid not in out:
            out[pid] = (lo, hi)
    return out


def plant(path, seed, start, end, per_month, base_risk, rise_from=None, rr=1.0):
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    try:
        if db.execute("SELECT 1 FROM device_exposure WHERE device_concept_id = ? LIMIT 1",
                      (DEVICE,)).fetchone():
            raise SystemExit("plant_signal: %s already has planted implants" % path)
        add_concepts(db)
        pool = candidates(db, start, end)
        people = sorted(pool)
        rng.shuffle(people)
        next_id = ID_BASE
        implants = events = 0
        for m_lo, m_hi in months(start, end):
            chosen = 0
            for pid in list(people):
                if chosen == per_month:
                    break
                lo, hi = pool[pid]
                first = max(lo, m_lo)
                last = min(m_hi, hi - dt.timedelta(days=WINDOW))
                if first > last:
                    continue
                day = first + dt.timedelta(days=rng.randint(0, (last - first).days))
                people.remove(pid)
                chosen += 1
                implants += 1
                next_id += 1
                db.execute("INSERT INTO device_exposure (device_exposure_id, person_id, "
                           "device_concept_id, device_exposure_start_date, "
                           "device_type_concept_id, quantity, device_source_concept_id) "
                           "VALUES (?,?,?,?,32817,1,0)", (next_id, pid, DEVICE, day.isoformat()))
                risk = base_risk * (rr if rise_from and day >= rise_from else 1.0)
                if rng.random() < risk:
                    ev = day + dt.timedelta(days=rng.randint(1, WINDOW))
                    events += 1
                    next_id += 1
                    db.execute("INSERT INTO condition_occurrence (condition_occurrence_id, "
                               "person_id, condition_concept_id, condition_start_date, "
                               "condition_end_date, condition_type_concept_id, "
                               "condition_source_concept_id) VALUES (?,?,?,?,?,32817,0)",
                               (next_id, pid, EVENT, ev.isoformat(), ev.isoformat()))
        db.commit()
    finally:
        db.close()
    return {"file": path, "implants": implants, "events": events, "device_concept": DEVICE,
            "event_concept": EVENT, "start": start.isoformat(), "end": end.isoformat(),
            "base_risk": base_risk,
            "rise_from": rise_from.isoformat() if rise_from else None,
            "relative_risk": rr if rise_from else 1.0}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("db")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--start", type=parse_date, default=dt.date(2022, 1, 1))
    ap.add_argument("--end", type=parse_date, default=dt.date(2024, 6, 30))
    ap.add_argument("--per-month", type=int, default=60)
    ap.add_argument("--base-risk", type=float, default=0.08)
    ap.add_argument("--rise-from", type=parse_date)
    ap.add_argument("--relative-risk", type=float, default=1.0)
    a = ap.parse_args(argv)
    if a.start > a.end:
        ap.error("--start is after --end")
    if not 1 <= a.per_month <= 100000:
        ap.error("--per-month must be 1..100000")
    if not 0.0 <= a.base_risk <= 1.0 or not 0.0 <= a.base_risk * a.relative_risk <= 1.0:
        ap.error("risks must be probabilities in [0, 1]")
    if a.rise_from and not a.start <= a.rise_from <= a.end:
        ap.error("--rise-from must be within [--start, --end]")
    print(json.dumps(plant(a.db, a.seed, a.start, a.end, a.per_month, a.base_risk,
                           a.rise_from, a.relative_risk)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
