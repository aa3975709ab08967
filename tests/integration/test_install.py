"""tests/integration/test_install.py — `make install`, `make uninstall`, `make deb`.

Installs into a temporary DESTDIR and checks the tree (programs, man pages,
units pointing at the installed daemons, example configs that the daemons
accept), uninstalls and checks nothing of ours is left, and builds the three
Debian packages and inspects them with dpkg-deb: control fields,
conffiles, maintainer scripts, file list, modes. Packages are never
installed on the test machine.
"""

import os
import shutil
import stat
import subprocess
import tempfile
import unittest

from sandbox import REPO, build_dir, require_binaries


def make(*args, timeout=600):
    p = subprocess.run(["make", "--no-print-directory", "BUILD=" + build_dir()] + list(args),
                       cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError("make %s failed (%d):\n%s%s"
                             % (" ".join(args), p.returncode, p.stdout[-3000:],
                                p.stderr[-3000:]))
    return p


def tree(root):
    out = set()
    for d, dirs, files in os.walk(root):
        for f in files:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out


class InstallTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        require_binaries("sdefed", "sdefed-agent", "sdefed-coordinator")
        cls.tmp = tempfile.mkdtemp(prefix="sdefed-install-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_install_and_uninstall(self):
        dest = os.path.join(self.tmp, "root")
        make("install", "DESTDIR=" + dest, "PREFIX=/opt/sdefed")
        got = tree(dest)
        want = {
            "opt/sdefed/bin/sdefed",
            "opt/sdefed/sbin/sdefed-agent",
            "opt/sdefed/sbin/sdefed-coordinator",
            "opt/sdefed/share/man/man1/sdefed.1",
            "opt/sdefed/share/man/man8/sdefed-agent.8",
            "opt/sdefed/share/man/man8/sdefed-coordinator.8",
            "opt/sdefed/share/doc/sdefed/examples/agent.conf",
            "opt/sdefed/share/doc/sdefed/examples/coordinator.conf",
            "opt/sdefed/share/doc/sdefed/examples/client.conf",
            "opt/sdefed/share/doc/sdefed/README.md",
            "opt/sdefed/share/sdefed/pki",
            "opt/sdefed/lib/systemd/system/sdefed-agent.service",
            "opt/sdefed/lib/systemd/system/sdefed-coordinator.service",
        }
        self.assertEqual(want - got, set(), "missing from the install")
        self.assertNotIn("opt/sdefed/bin/sdefed-synth", got)
        for f in got:
            self.assertTrue(f.startswith("opt/sdefed/"), "installed outside PREFIX: " + f)
        for prog in ("bin/sdefed", "sbin/sdefed-agent", "sbin/sdefed-coordinator",
                     "share/sdefed/pki"):
            mode = os.stat(os.path.join(dest, "opt/sdefed", prog)).st_mode
            self.assertEqual(stat.S_IMODE(mode), 0o755, prog)
        # Units run the installed daemons.
        for d in ("agent", "coordinator"):
            with open(os.path.join(dest, "opt/sdefed/lib/systemd/system/sdefed-%s.service" % d)) as f:
                unit = f.read()
            self.assertIn("ExecStart=/opt/sdefed/sbin/sdefed-%s --config /etc/sdefed/%s.conf"
                          % (d, d), unit)
            self.assertNotIn("/usr/sbin/", unit)
            self.assertIn("Type=notify", unit)
            self.assertIn("ExecReload=/bin/kill -HUP $MAINPID", unit)
        # The installed programs run.
        p = subprocess.run([os.path.join(dest, "opt/sdefed/sbin/sdefed-agent"), "--help"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertIn("status", p.stdout)
        # The example configs parse: `status` loads the file and then finds
        # no daemon (a config error would say FILE:LINE instead).
        ex = os.path.join(dest, "opt/sdefed/share/doc/sdefed/examples")
        for prog, conf in (("sbin/sdefed-coordinator", "coordinator.conf"),
                           ("sbin/sdefed-agent", "agent.conf")):
            p = subprocess.run([os.path.join(dest, "opt/sdefed", prog), "--config",
                                os.path.join(ex, conf), "status"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("status:", p.stderr, "%s did not parse: %s" % (conf, p.stderr))
        make("uninstall", "DESTDIR=" + dest, "PREFIX=/opt/sdefed")
        self.assertEqual(tree(dest), set(), "left behind by uninstall")

    def dpkg(self, *args):
        p = subprocess.run(["dpkg-deb"] + list(args), capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    @unittest.skipIf(shutil.which("dpkg-deb") is None, "dpkg-deb not available")
    def test_deb(self):
        make("deb")
        debdir = os.path.join(build_dir(), "deb")
        debs = {f.split("_")[0]: os.path.join(debdir, f) for f in os.listdir(debdir)
                if f.endswith(".deb")}
        self.assertEqual(sorted(debs), ["sdefed-agent", "sdefed-cli", "sdefed-coordinator"])

        for pkg, conf in (("sdefed-agent", "agent.conf"),
                          ("sdefed-coordinator", "coordinator.conf")):
            deb = debs[pkg]
            info = self.dpkg("--info", deb)
            self.assertIn("Package: %s" % pkg, info)
            self.assertRegex(info, r"Depends: .*libc6")
            self.assertRegex(info, r"Depends: .*libuv1")
            self.assertRegex(info, r"Depends: .*libssl3")
            for script in ("postinst", "prerm", "postrm", "conffiles"):
                self.assertIn(script, info, "%s has no %s" % (pkg, script))
            self.assertEqual(self.dpkg("-I", deb, "conffiles").strip(), "/etc/sdefed/" + conf)
            postinst = self.dpkg("-I", deb, "postinst")
            self.assertIn("--system", postinst)          # a system user
            self.assertIn("/usr/sbin/nologin", postinst)
            self.assertIn("install -d -m 0750 -o sdefed -g sdefed /var/lib/sdefed", postinst)
            self.assertIn("install -d -m 0750 -o root -g sdefed /etc/sdefed", postinst)
            contents = self.dpkg("--contents", deb)
            lines = {l.split()[-1].lstrip("."): l for l in contents.splitlines()}
            self.assertIn("/usr/sbin/" + pkg, lines)
            self.assertTrue(lines["/usr/sbin/" + pkg].startswith("-rwxr-xr-x root/root"))
            self.assertIn("/lib/systemd/system/%s.service" % pkg, lines)
            self.assertIn("/usr/share/man/man8/%s.8" % pkg, lines)
            self.assertTrue(lines["/etc/sdefed/" + conf].startswith("-rw-r----- root/root"),
                            lines["/etc/sdefed/" + conf])
            self.assertIn("/usr/share/doc/%s/copyright" % pkg, lines)
            # The other daemon is not in this package.
            other = "sdefed-coordinator" if pkg == "sdefed-agent" else "sdefed-agent"
            self.assertNotIn("/usr/sbin/" + other, lines)
            self.assertNotIn("/usr/bin/sdefed", lines)
        self.assertIn("/usr/share/sdefed/pki",
                      self.dpkg("--contents", debs["sdefed-coordinator"]))
        cli = self.dpkg("--contents", debs["sdefed-cli"])
        self.assertIn("./usr/bin/sdefed\n", cli + "\n")
        self.assertNotIn("sbin", cli)
        self.assertNotIn("Conffiles", self.dpkg("--info", debs["sdefed-cli"]))
        # Extract the agent package and run its binary from there.
        root = os.path.join(self.tmp, "x")
        self.dpkg("-x", debs["sdefed-agent"], root)
        p = subprocess.run([os.path.join(root, "usr/sbin/sdefed-agent"), "--help"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
