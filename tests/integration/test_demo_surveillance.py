"""tests/integration/test_demo_surveillance.py — the demo's planted device signal (issue 6).

Runs deploy/demo_surveillance.py (what `make demo` shows) against fresh
3-site federations: with a dislodgement risk 4x higher at site-b for
implants from 2023-07-01, the MaxSPRT monitor must alert for the quarter
that begins then or the next one, never for an earlier quarter, and name
site-b; with no planted rise (relative risk 1) the same monitor runs to
its end without an alert.
"""

import json
import os
import subprocess
import sys
import unittest

from sandbox import REPO, Sandbox, bin_path, require_binaries

SCRIPT = os.path.join(REPO, "deploy", "demo_surveillance.py")


def run_demo(sb, rr):
    p = subprocess.run([sys.executable, SCRIPT, "--sdefed", bin_path("sdefed"),
                        "--config", sb.client_conf, "--data", sb.path("data"),
                        "--relative-risk", str(rr), "--json"],
                       capture_output=True, text=True, timeout=300)
    if p.returncode not in (0, 1):
        raise AssertionError("demo_surveillance.py failed:\n" + p.stderr)
    return json.loads(p.stdout)


class DemoSurveillanceTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        require_binaries("sdefed", "sdefed-agent", "sdefed-coordinator", "sdefed-synth")

    def federation(self):
        sb = Sandbox(sites=3, seed=42, persons=8000)
        self.addCleanup(sb.down)
        return sb.up()

    def test_alert_at_or_just_after_the_planted_rise(self):
        r = run_demo(self.federation(), 4.0)
        self.assertEqual(r["state"], "signalled", r)
        self.assertIn(r["first_alert"], ("2023-Q3", "2023-Q4"), r)
        before = [l for l in r["looks"] if l["period"] < "2023-Q3"]
        self.assertEqual([l["period"] for l in before], ["2023-Q1", "2023-Q2"])
        self.assertTrue(all(l["signal"] == 0 for l in before), r)
        self.assertEqual(r["alert_sites"], ["site-b"])   # the site driving the signal, alone

    def test_no_rise_no_alert(self):
        r = run_demo(self.federation(), 1.0)
        self.assertEqual(r["state"], "done", r)
        self.assertIsNone(r["first_alert"], r)
        self.assertEqual(len(r["looks"]), 6, r)   # 2023-Q1 .. 2024-Q2, every quarter
        self.assertEqual(r["alert_sites"], [])


if __name__ == "__main__":
    unittest.main()
