"""tests/integration/test_demo.py — `make demo` runs end to end.

Runs deploy/demo.sh (what `make demo` runs after building) against this
build, with its HTML reports written to a temporary DEMO_OUT, and checks
that every step answered: the federation came up, the counts, the
validation table with site-c's miscalibration, the surveillance monitor's
alert for the quarter the planted rise begins, both reports written as
self-contained HTML, and the sandbox torn down.
"""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from sandbox import REPO, build_dir, require_binaries


class DemoTest(unittest.TestCase):

    def test_demo_runs_end_to_end(self):
        require_binaries("sdefed", "sdefed-agent", "sdefed-coordinator", "sdefed-synth")
        out = tempfile.mkdtemp(prefix="sdefed-it-demo-")
        self.addCleanup(shutil.rmtree, out, True)
        env = dict(os.environ, BUILD=build_dir(), DEMO_OUT=out, TMPDIR=out)
        p = subprocess.run(["sh", os.path.join(REPO, "deploy", "demo.sh")], env=env,
                           capture_output=True, text=True, timeout=900)
        text = p.stdout + p.stderr
        self.assertEqual(p.returncode, 0, text[-4000:])
        for step in ("Which sites are connected?", "Celecoxib", "HbA1c",
                     "Validating a synthetic AI tool", "Post-market surveillance",
                     "Tearing down"):
            self.assertIn(step, text)
        m = re.search(r"first alert is for period (\S+)\.", text)
        self.assertIsNotNone(m, text[-3000:])
        self.assertIn(m.group(1), ("2023-Q3", "2023-Q4"))
        for name in ("sdefed-demo-validate.html", "sdefed-demo-monitor.html"):
            with open(os.path.join(out, name), encoding="utf-8") as f:
                html = f.read()
            self.assertIn("<svg", html, name)
            self.assertNotIn("<script", html, name)
        # the demo's sandbox is gone: nothing of it left under TMPDIR
        self.assertEqual([d for d in os.listdir(out) if d.startswith("sdefed-demo.")], [])


if __name__ == "__main__":
    unittest.main()
