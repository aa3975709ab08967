"""kill -9 in the middle of things: the federation heals itself.

* The coordinator killed while a query is in flight: restarted, every agent
  reconnects on its own (backoff), the interrupted query is reported as
  such (never as a half result), and new queries work.
* An agent killed while answering: the query completes with that site
  offline; restarted, the agent reconnects by itself.
"""
import json
import os
import re
import signal
import threading
import time
import unittest

from sandbox import SandboxTestCase, wait_until, bin_path

# Agents are frozen with SIGSTOP so the query is certainly in flight when
# the kill lands (no race with a fast query).
HEAVY = {"kind": "count", "project": "demo", "dataset": "omop",
         "cohort": {"all": [{"domain": "drug", "concepts": [1118084, 1124300, 1177480,
                                                            1115008, 1503297, 1310149],
                             "descendants": True},
                            {"domain": "condition", "concepts": [192671, 201826, 320128],
                             "descendants": True}]},
         "by": ["sex", "age_band"]}


class CrashTest(SandboxTestCase):
    SANDBOX_ARGS = dict(sites=3, seed=5, persons=4000,
                        disclosure={"max_identical": 100000})

    def statuses(self, d):
        return {s["site"]: s["status"] for s in d["sites"]}

    def freeze(self, site, on):
        os.kill(self.sb.pid(site), signal.SIGSTOP if on else signal.SIGCONT)

    def test_a_coordinator_killed_mid_query(self):
        sb = self.sb
        result = {}
        offset = sb.log_size("coordinator")
        for s in sb.sites:
            self.freeze(s, True)
        try:
            def run():
                result["p"] = sb.cli("query", "-", "--format", "json", "--timeout", "20",
                                     input=json.dumps(HEAVY))
            t = threading.Thread(target=run)
            t.start()
            wait_until(lambda: "to 3 sites" in sb.log_since("coordinator", offset), 20,
                       what="coordinator to dispatch", interval=0.02)
            sb.stop("coordinator", kill=True)
            t.join(60)
        finally:
            for s in sb.sites:
                self.freeze(s, False)
        p = result["p"]
        self.assertEqual(p.returncode, 1, "a killed coordinator must not yield a result")
        self.assertRegex(p.stderr, r"^sdefed: ")
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        qid_m = re.search(r"query (q-[0-9a-f-]+) from", sb.log("coordinator"))
        self.assertIsNotNone(qid_m)

        sb.start("coordinator")
        sb.wait_online(sb.sites, timeout=40)   # agents redial by themselves
        d = sb.query(HEAVY, timeout=30)
        self.assertEqual(set(self.statuses(d).values()), {"ok"})
        self.assertIn("interrupted by the previous shutdown", sb.log("coordinator"))
        # The interrupted query is not presented as a result.
        r = sb.cli("results", qid_m.group(1))
        self.assertEqual(r.returncode, 1)
        self.assertTrue(sb.all_alive(), sb.log_tails())

    def test_b_agent_killed_mid_query(self):
        sb = self.sb
        result = {}
        offset = sb.log_size("coordinator")
        self.freeze("site-b", True)

        def run():
            result["d"] = sb.query(HEAVY, timeout=20)
        t = threading.Thread(target=run)
        t.start()
        wait_until(lambda: "to 3 sites" in sb.log_since("coordinator", offset), 20,
                   what="coordinator to dispatch", interval=0.02)
        sb.stop("site-b", kill=True)     # SIGKILL works on a stopped process
        t.join(60)
        st = self.statuses(result["d"])
        self.assertEqual(st["site-b"], "offline")
        self.assertEqual(st["site-a"], "ok")
        self.assertEqual(st["site-c"], "ok")
        sb.start("site-b")
        sb.wait_online(sb.sites, timeout=40)
        d = sb.query(HEAVY, timeout=30)
        self.assertEqual(set(self.statuses(d).values()), {"ok"})


if __name__ == "__main__":
    unittest.main()
