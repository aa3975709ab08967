"""tests/integration/test_lying_site.py — a registered site that answers with malformed results.

site-b's agent is stopped and a fake agent connects with site-b's own
certificate (so the coordinator trusts it as site-b), then answers every
QueryRequest the way the test says: a well-formed answer first (the
positive control: it is pooled, so the fake speaks the protocol right and
the refusals below are not vacuous), then answers a faulty or hostile site
could send — a stratum listed twice (it would weigh twice in the pooled
total), a number in a cell marked suppressed, a negative count, another
kind's data. Each must be reported as site-b `error` with a
"malformed result" reason, none of its numbers may reach the pooled total
or the output, site-a must be pooled as usual, and the coordinator stays
up.
"""

import json
import os
import subprocess
import threading
import time

from sandbox import (REPO, ROLE_AGENT, SandboxTestCase, bin_path, frame, hello_envelope,
                     pb_field_bytes, pb_fields, strata_key, wait_until)

COUNT = {"kind": "count", "project": "demo", "dataset": "omop",
         "cohort": {"all": [{"domain": "condition", "concepts": [201826],
                             "descendants": True}]},
         "by": ["sex"]}

F_HEARTBEAT, F_QUERY_REQUEST = 12, 13


def encode_envelope(text):
    p = subprocess.run(["protoc-c", "--encode=sdefed.Envelope", "--proto_path",
                        os.path.join(REPO, "proto"), os.path.join(REPO, "proto", "sdefed.proto")],
                       input=text.encode(), capture_output=True, check=True)
    return p.stdout


def cell(sex, value, status="CELL_ROUNDED"):
    return ('cells { strata { name: "sex" value: "%s" } value: %d status: %s }'
            % (sex, value, status))


class FakeSite(threading.Thread):
    """site-b, as far as the coordinator can tell: answers each query with
    self.answer (QueryResult fields in protobuf text format)."""

    def __init__(self, sb):
        super().__init__(daemon=True)
        pki = sb.pki
        ctx = sb.tls_context(cert=os.path.join(pki, "site-b.crt"),
                             key=os.path.join(pki, "site-b.key"))
        self.sock = sb.tls_connect(ctx, timeout=30)
        hello = hello_envelope(role=ROLE_AGENT)
        self.sock.sendall(frame(hello))
        self.answer = ""
        self.answered = 0
        self.stopping = False

    def run(self):
        buf = bytearray()
        self.sock.settimeout(2.0)
        try:
            while not self.stopping:
                try:
                    chunk = self.sock.recv(1 << 20)
                except TimeoutError:
                    # a live agent's heartbeat, so the coordinator keeps it
                    self.sock.sendall(frame(pb_field_bytes(F_HEARTBEAT, b"")))
                    continue
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 4:
                    n = int.from_bytes(buf[:4], "big")
                    if len(buf) < 4 + n:
                        break
                    env = bytes(buf[4:4 + n])
                    del buf[:4 + n]
                    for f, _, v in pb_fields(env):
                        if f == F_QUERY_REQUEST:
                            qid = dict((ff, vv) for ff, _, vv in pb_fields(v))[1].decode()
                            self.send_result(qid, self.answer)
                            self.last_qid = qid
                            self.answered += 1
        except OSError:
            return

    def send_result(self, qid, answer):
        self.sock.sendall(frame(encode_envelope('query_result { query_id: "%s" %s }'
                                                % (qid, answer))))

    def close(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass


class LyingSiteTest(SandboxTestCase):
    SANDBOX_ARGS = dict(sites=2, seed=47, persons=2000,
                        disclosure={"max_identical": 100000})

    @classmethod
    def prepare(cls):
        sb = cls.sb
        sb.stop("site-b")
        wait_until(lambda: sb.sites_status()["site-b"]["online"] is False, 20,
                   what="site-b offline")
        cls.fake = FakeSite(sb)
        cls.fake.start()
        sb.wait_online(["site-b"])
        # site-a's own answer, alone, for comparison
        d = sb.query(COUNT, sites=["site-a"])
        cls.site_a = {strata_key(c["strata"]): c for c in d["sites"][0]["cells"]}

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "fake", None):
            cls.fake.close()
        super().tearDownClass()

    def ask(self, answer):
        self.fake.answer = answer
        before = self.fake.answered
        d = self.sb.query(COUNT)
        self.assertGreater(self.fake.answered, before, "the fake site was not asked")
        by = {s["site"]: s for s in d["sites"]}
        self.assertEqual(by["site-a"]["status"], "ok")
        return d, by

    def malformed_count(self):
        # what `sdefed-coordinator status` (and the metrics) show operators
        p = subprocess.run([bin_path("sdefed-coordinator"), "--config",
                            self.sb.path("coordinator.conf"), "status", "--json"],
                           capture_output=True, text=True, timeout=30, check=True)
        sites = {s["site"]: s for s in json.loads(p.stdout)["sites"]}
        self.assertEqual(sites["site-a"]["malformed_results"], 0)
        return sites["site-b"]["malformed_results"]

    def pooled(self, d):
        return {strata_key(c["strata"]): c for c in d["pooled"]["cells"]}

    def test_a_well_formed_answer_is_pooled(self):
        # positive control: the fake's numbers are added to site-a's
        d, by = self.ask(" ".join(["status: SITE_OK", cell("female", 1000), cell("male", 2000)]))
        self.assertEqual(self.malformed_count(), 0)
        self.assertEqual(by["site-b"]["status"], "ok", by["site-b"])
        pooled = self.pooled(d)
        for sex, extra in (("female", 1000), ("male", 2000)):
            key = strata_key({"sex": sex})
            self.assertEqual(pooled[key]["value"], self.site_a[key]["value"] + extra)

    def assert_refused(self, answer, reason, secret):
        off = self.sb.log_size("coordinator")
        before = self.malformed_count()
        d, by = self.ask(answer)
        self.assertEqual(self.malformed_count(), before + 1)
        b = by["site-b"]
        self.assertEqual(b["status"], "error", b)
        self.assertIn("malformed result", b["reason"])
        self.assertIn(reason, b["reason"])
        self.assertFalse(b.get("cells"))
        # site-a alone is pooled: no number of site-b's reached the total
        pooled = self.pooled(d)
        for key, c in self.site_a.items():
            self.assertEqual(pooled[key]["value"], c["value"], key)
        text = json.dumps(d)
        self.assertNotIn(str(secret), text)
        log = self.sb.log_since("coordinator", off)
        self.assertRegex(log, r"site site-b: malformed result")
        self.assertNotIn(str(secret), log)
        # the stored result says the same (`sdefed results ID`)
        stored = self.sb.cli_json("results", d["query_id"])
        sb_stored = [s for s in stored["sites"] if s["site"] == "site-b"][0]
        self.assertEqual(sb_stored["status"], "error")
        self.assertTrue(self.sb.alive("coordinator"))

    def test_b_stratum_twice_would_weigh_twice(self):
        self.assert_refused(" ".join(["status: SITE_OK", cell("female", 90001),
                                      cell("male", 5), cell("female", 90001)]),
                            "the same strata twice", 90001)

    def test_c_suppressed_cell_with_a_value(self):
        self.assert_refused(" ".join(["status: SITE_OK", cell("female", 100),
                                      cell("male", 70003, "CELL_SUPPRESSED")]),
                            "a suppressed number carries a value", 70003)

    def test_d_negative_count(self):
        self.assert_refused(" ".join(["status: SITE_OK", cell("female", -60007, "CELL_NOISED"),
                                      cell("male", 100)]),
                            "negative count", 60007)

    def test_e_data_of_another_kind(self):
        self.assert_refused(" ".join(["status: SITE_OK", cell("female", 100), cell("male", 100),
                                      'summaries { n: 50021 n_status: CELL_EXACT }']),
                            "another query kind", 50021)

    def test_f_held_then_released_malformed(self):
        # The site holds its answer for review, then "releases" a malformed
        # one: the stored result must show the error, not the numbers.
        d, by = self.ask('status: SITE_HELD reason: "held for review at site site-b"')
        self.assertEqual(by["site-b"]["status"], "held")
        qid = d["query_id"]
        off = self.sb.log_size("coordinator")
        self.fake.send_result(qid, " ".join(["status: SITE_OK", cell("female", 40009),
                                             cell("female", 40009), cell("male", 10)]))
        wait_until(lambda: "site site-b: malformed result" in self.sb.log_since("coordinator",
                                                                                off), 20,
                   what="the late result to be checked")
        stored = self.sb.cli_json("results", qid)
        b = [s for s in stored["sites"] if s["site"] == "site-b"][0]
        self.assertEqual(b["status"], "error", b)
        self.assertIn("the same strata twice", b["reason"])
        self.assertNotIn("40009", json.dumps(stored))
        pooled = self.pooled(stored)
        for key, c in self.site_a.items():
            self.assertEqual(pooled[key]["value"], c["value"], key)

    def test_g_a_correct_answer_after_all_that(self):
        d, by = self.ask(" ".join(["status: SITE_OK", cell("female", 10), cell("male", 20)]))
        self.assertEqual(by["site-b"]["status"], "ok", by["site-b"])
        key = strata_key({"sex": "female"})
        self.assertEqual(self.pooled(d)[key]["value"], self.site_a[key]["value"] + 10)
