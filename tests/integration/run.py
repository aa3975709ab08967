#!/usr/bin/env python3
"""tests/integration/run.py — run the integration tests against the real binaries.

`make integration` calls this. It discovers tests/integration/test_*.py,
runs them with unittest (python3 standard library only) and ends with one
summary line, `integration: N passed, N failed, N skipped`; the exit status
is 1 if anything failed or errored. BUILD (default build) names the build
directory whose bin/ holds the programs; SDEFED_SHARED_DATA overrides where
the shared data sets (../shared/data) are looked for.

    run.py [-q] [NAME...]     NAME: a module (test_federation), or a
                              module.Class[.method] to run only that
"""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


class CountingResult(unittest.TextTestResult):
    """TextTestResult that also counts successes (testsRun alone cannot tell
    class-fixture errors and skips apart from tests)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.successes = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.successes += 1

    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        if self.showAll:
            self.stream.writeln("    (%.1fs)" % (time.monotonic() - self._t0))


def main(argv):
    verbosity = 2
    names = []
    for a in argv:
        if a in ("-q", "--quiet"):
            verbosity = 1
        elif a in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        else:
            names.append(a[:-3] if a.endswith(".py") else a)

    b = os.environ.get("BUILD", "")
    if not b:
        b = os.path.join(REPO, "build")
    elif not os.path.isabs(b):
        b = os.path.join(REPO, b) if not os.path.isdir(os.path.join(b, "bin")) else os.path.abspath(b)
    os.environ["BUILD"] = b

    attacks = os.path.join(HERE, "..", "attacks")
    sys.path.insert(0, attacks)   # so an attack module can be named alone too
    sys.path.insert(0, HERE)
    loader = unittest.TestLoader()
    if names:
        suite = loader.loadTestsFromNames(names)
    else:
        suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
        # The disclosure attack suite lives beside us and runs with us.
        if os.path.isdir(attacks):
            suite.addTests(loader.discover(attacks, pattern="test_*.py",
                                           top_level_dir=attacks))

    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=verbosity,
                                     resultclass=CountingResult)
    result = runner.run(suite)
    # Count tests, not subtests: a test with three failing subtests is one
    # failure; a class whose setUpClass failed is one failure.
    failed_ids = set()
    for test, _err in result.failures + result.errors:
        failed_ids.add(getattr(test, "test_case", test).id())
    for test in result.unexpectedSuccesses:
        failed_ids.add(test.id())
    failed = len(failed_ids)
    skipped = len(result.skipped)
    passed = result.successes + len(result.expectedFailures)
    sys.stderr.flush()
    print("integration: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
