"""Governance end to end (issue 7): approved projects, the custodian's review
queue, signed protocols (passports) and the audit log, on a real federation.

site-a gets a set of projects that must each be refused for its own reason
(unknown, expired, revoked, kind, dataset, requester), a `review` project whose
results reach the analyst only after `sdefed-agent review approve` (also when
the agent was restarted in between) and never after `reject`, held results that
expire, a trusted approver key whose signed protocol is released at once while
the same spec with one field changed is held, and an audit log that verifies —
and that reports the first bad entry after the database is tampered with.
"""
import copy
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unittest

from sandbox import SandboxTestCase, bin_path, wait_until

SPEC = {"kind": "count", "project": "rev", "dataset": "omop",
        "cohort": {"all": [{"domain": "drug", "concepts": [1118084],
                            "descendants": True}]},
        "by": ["sex"]}


def spec_for(project, **changes):
    s = copy.deepcopy(SPEC)
    s["project"] = project
    s.update(changes)
    return s


class GovernanceTest(SandboxTestCase):
    SANDBOX_ARGS = {"sites": 2, "persons": 1500, "seed": 7}

    @classmethod
    def prepare(cls):
        sb = cls.sb
        cls.keys = tempfile.mkdtemp(prefix="sdefed-gov-keys-")
        cls.approver = os.path.join(cls.keys, "approver")
        cls.stranger = os.path.join(cls.keys, "stranger")
        for prefix in (cls.approver, cls.stranger):
            p = subprocess.run([bin_path("sdefed"), "protocol", "keygen", "--out", prefix],
                               capture_output=True, text=True, timeout=30)
            assert p.returncode == 0, p.stderr
        # site-a trusts the approver's key (SIGHUP reload).
        conf = sb.path("agent-site-a.conf")
        with open(conf, "a") as f:
            f.write("\n[governance]\nheld_result_expiry_hours = 24\n"
                    "trusted_protocol_key = %s.pub\n" % cls.approver)
        off = sb.log_size("site-a")
        os.kill(sb.pid("site-a"), 1)
        wait_until(lambda: "configuration reloaded" in sb.log_since("site-a", off), 15,
                   what="site-a reload")
        ok = cls.agent_ok
        ok("project", "add", "expired", "--requesters", "*", "--release", "auto",
           "--expires", "2020-01-31")
        ok("project", "add", "catonly", "--requesters", "*", "--release", "auto",
           "--kinds", "catalog")
        ok("project", "add", "otherds", "--requesters", "*", "--release", "auto",
           "--datasets", "registry")
        ok("project", "add", "others", "--requesters", "alice,bob", "--release", "auto")
        ok("project", "add", "gone", "--requesters", "*", "--release", "auto")
        ok("project", "revoke", "gone", "--reason", "approval withdrawn")
        ok("project", "add", "rev", "--requesters", "analyst", "--release", "review",
           "--kinds", "count", "--description", "needs a human")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(getattr(cls, "keys", ""), ignore_errors=True)
        super().tearDownClass()

    # -- helpers --
    @classmethod
    def agent(cls, *args, site="site-a"):
        return subprocess.run([bin_path("sdefed-agent"), "--config",
                               cls.sb.path("agent-%s.conf" % site)] + list(args),
                              capture_output=True, text=True, timeout=60)

    @classmethod
    def agent_ok(cls, *args, site="site-a"):
        p = cls.agent(*args, site=site)
        assert p.returncode == 0, "sdefed-agent %s: %s%s" % (" ".join(args), p.stdout,
                                                           p.stderr)
        return p.stdout

    def site(self, result, name="site-a"):
        return next(s for s in result["sites"] if s["site"] == name)

    def query_a(self, spec):
        return self.sb.query(spec, sites=["site-a"])

    def results(self, qid):
        return self.sb.cli_json("results", qid)

    def audit_rows(self):
        out = self.agent_ok("audit", "export")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def held_id(self, qid):
        out = self.agent_ok("review", "list", "--all")
        for line in out.splitlines()[1:]:
            parts = line.split()
            if len(parts) > 2 and parts[2] == qid:
                return parts[0]
        self.fail("query %s not in the review queue:\n%s" % (qid, out))

    def wait_site_status(self, qid, status, timeout=20):
        def done():
            r = self.results(qid)
            return r if self.site(r)["status"] == status else None
        return wait_until(done, timeout, what="site-a %s for %s" % (status, qid))

    # -- tests --
    def test_refusals_each_with_its_reason_and_audited(self):
        cases = [
            (spec_for("nosuch"), "unknown project 'nosuch'"),
            (spec_for("expired"), "project 'expired' expired at 2020-02-01T00:00:00Z"),
            (spec_for("gone"), "project 'gone' has been revoked"),
            (spec_for("catonly"), "query kind 'count' is not allowed in project 'catonly'"),
            (spec_for("otherds"), "dataset 'omop' is not allowed in project 'otherds'"),
            (spec_for("others"), "requester 'analyst' is not on project 'others'"),
        ]
        qids = {}
        for spec, reason in cases:
            r = self.query_a(spec)
            s = self.site(r)
            self.assertEqual(s["status"], "refused", spec["project"])
            self.assertEqual(s["reason"], reason)
            self.assertFalse(s.get("cells"))
            qids[r["query_id"]] = reason
        # site-b has no such projects either (only demo).
        r = self.sb.query(spec_for("others"), sites=["site-b"])
        self.assertEqual(self.site(r, "site-b")["reason"], "unknown project 'others'")
        rows = self.audit_rows()
        for qid, reason in qids.items():
            events = [(x["event"], x["reason"]) for x in rows if x["query_id"] == qid]
            self.assertEqual(events, [("received", ""), ("refused", reason)])
            row = [x for x in rows if x["query_id"] == qid][0]
            self.assertEqual(row["requester"], "analyst")
            self.assertEqual(len(row["spec_sha256"]), 64)
        self.assertIn("audit log OK", self.agent_ok("audit", "verify"))

    def test_demo_project_still_answers(self):
        r = self.sb.query(spec_for("demo"))
        for s in r["sites"]:
            self.assertEqual(s["status"], "ok", s)

    def test_review_approve_releases_exactly_what_was_shown(self):
        r = self.query_a(SPEC)
        qid = r["query_id"]
        s = self.site(r)
        self.assertEqual((s["status"], s["reason"]), ("held", "held for review at site site-a"))
        self.assertFalse(s.get("cells"))
        self.assertEqual(self.site(self.results(qid))["status"], "held")
        hid = self.held_id(qid)
        shown = self.agent_ok("review", "show", hid)
        self.assertIn("What would leave this site", shown)
        self.assertIn("Disclosure rules that fired", shown)
        self.assertIn('"cells"', shown)
        digest = [line for line in shown.splitlines() if "SHA-256" in line][0].split()[-1]
        digest = digest.rstrip("):")
        # Nothing leaves until approval.
        time.sleep(2.5)
        self.assertEqual(self.site(self.results(qid))["status"], "held")
        out = self.agent_ok("review", "approve", hid)
        self.assertIn("approved", out)
        r2 = self.wait_site_status(qid, "ok")
        cells = self.site(r2)["cells"]
        # The same spec in the auto `demo` project gives the same cells.
        ref = self.site(self.query_a(spec_for("demo")))
        key = lambda c: json.dumps(c["strata"], sort_keys=True)
        self.assertEqual(sorted(cells, key=key), sorted(
            [c for c in ref["cells"]], key=key))
        self.assertTrue(r2["pooled"]["cells"])
        ev = [(x["event"], x["release_sha256"]) for x in self.audit_rows() if x["query_id"] == qid]
        self.assertEqual([e for e, _ in ev], ["received", "held", "approved", "released"])
        self.assertTrue(all(d == digest for e, d in ev if e != "received"), (ev, digest))
        # Approving twice is refused.
        self.assertEqual(self.agent("review", "approve", hid).returncode, 1)

    def test_review_reject_never_releases(self):
        r = self.query_a(SPEC)
        qid = r["query_id"]
        hid = self.held_id(qid)
        bad = self.agent("review", "reject", hid)
        self.assertEqual(bad.returncode, 2)          # a reason is required
        self.agent_ok("review", "reject", hid, "--reason", "purpose not covered by approval")
        r2 = self.wait_site_status(qid, "refused")
        self.assertEqual(self.site(r2)["reason"], "rejected by the custodian at site site-a: "
                                                  "purpose not covered by approval")
        self.assertFalse(self.site(r2).get("cells"))
        self.assertEqual(self.agent("review", "approve", hid).returncode, 1)
        time.sleep(2.5)
        self.assertEqual(self.site(self.results(qid))["status"], "refused")

    def test_approval_survives_agent_restart(self):
        r = self.query_a(SPEC)
        qid = r["query_id"]
        hid = self.held_id(qid)
        self.sb.stop("site-a")
        self.agent_ok("review", "approve", hid)
        self.sb.start("site-a")
        self.sb.wait_online(["site-a"])
        self.wait_site_status(qid, "ok", timeout=30)

    def test_held_result_expires(self):
        r = self.query_a(SPEC)
        qid = r["query_id"]
        db = sqlite3.connect(os.path.join(self.sb.path("state", "site-a"), "state.db"),
                             timeout=10)
        with db:
            db.execute("UPDATE held SET expires_ms = 1 WHERE query_id = ?", (qid,))
        db.close()
        r2 = self.wait_site_status(qid, "refused")
        self.assertIn("not reviewed in time", self.site(r2)["reason"])
        events = [x["event"] for x in self.audit_rows() if x["query_id"] == qid]
        self.assertEqual(events, ["received", "held", "expired"])

    def sign(self, spec, key):
        d = tempfile.mkdtemp(prefix="sdefed-gov-sign-", dir=self.keys)
        sp = os.path.join(d, "spec.json")
        with open(sp, "w") as f:
            json.dump(spec, f)
        out = os.path.join(d, "signed.json")
        p = subprocess.run([bin_path("sdefed"), "protocol", "sign", sp, "--key", key + ".key",
                            "--out", out], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return out

    def test_signed_protocol_auto_released_and_changed_spec_held(self):
        signed = self.sign(SPEC, self.approver)
        with open(signed) as f:
            doc = json.load(f)
        r = self.sb.query(signed, sites=["site-a"])
        self.assertEqual(self.site(r)["status"], "ok")
        self.assertTrue(self.site(r)["cells"])
        row = [x for x in self.audit_rows() if x["query_id"] == r["query_id"]][-1]
        self.assertEqual(row["event"], "answered")
        self.assertEqual(row["signer"], doc["key_id"])
        self.assertEqual(row["signature"], doc["signature"])
        self.assertIn("signed protocol", row["reason"])

        # One field changed after signing: held, like any unsigned query.
        for change in ({"by": ["age_band"]}, {"policy": {"min_cell": 20}}):
            d2 = copy.deepcopy(doc)
            d2["spec"].update(change)
            path = signed + ".changed.json"
            with open(path, "w") as f:
                json.dump(d2, f)
            p = self.sb.cli("query", path, "--sites", "site-a", "--format", "json")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("does not match", p.stderr)
            res = json.loads(p.stdout)
            self.assertEqual(self.site(res)["status"], "held", change)
            held = [x for x in self.audit_rows() if x["query_id"] == res["query_id"]][-1]
            self.assertEqual(held["reason"], "signed protocol does not match this spec")

        # A valid signature by a key site-a does not trust: held.
        r3 = self.sb.query(self.sign(SPEC, self.stranger), sites=["site-a"])
        self.assertEqual(self.site(r3)["status"], "held")

    def test_audit_verify_detects_tampering(self):
        self.query_a(spec_for("nosuch"))
        # Work on a consistent copy, so the live log stays intact.
        tmp = tempfile.mkdtemp(prefix="sdefed-gov-audit-")
        try:
            src = sqlite3.connect(os.path.join(self.sb.path("state", "site-a"), "state.db"),
                                  timeout=10)
            dst = sqlite3.connect(os.path.join(tmp, "state.db"))
            src.backup(dst)
            src.close()
            with open(self.sb.path("agent-site-a.conf")) as f:
                text = f.read()
            conf = os.path.join(tmp, "agent.conf")
            with open(conf, "w") as f:
                f.write("\n".join("state_dir = " + tmp if line.startswith("state_dir") else line
                                  for line in text.splitlines()) + "\n")
            run = lambda *a: subprocess.run([bin_path("sdefed-agent"), "--config", conf] +
                                            list(a), capture_output=True, text=True, timeout=60)
            ok = run("audit", "verify")
            self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
            with dst:
                dst.execute("UPDATE audit SET reason = 'nothing happened' WHERE seq = 2")
            bad = run("audit", "verify")
            self.assertEqual(bad.returncode, 1)
            self.assertIn("BROKEN at entry 2", bad.stdout)
            dst.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_audit_export_to_file_and_no_data_values(self):
        exp = os.path.join(self.keys, "audit.jsonl")
        self.agent_ok("audit", "export", "--out", exp, "--since", "2020-01-01")
        with open(exp) as f:
            rows = [json.loads(line) for line in f]
        self.assertTrue(rows)
        self.assertEqual([x["seq"] for x in rows], list(range(1, len(rows) + 1)))
        for x in rows:
            self.assertNotIn("cells", x)
            self.assertEqual(set(x) - {"seq", "ts_ms", "event", "query_id", "requester",
                                       "project", "kind", "spec_sha256", "reason",
                                       "release_sha256", "signer", "signature", "actor",
                                       "prev_hash", "hash"}, set())


if __name__ == "__main__":
    unittest.main()
