"""tests/integration/test_deb_install.py — install the .deb for real (issue 8).

Builds the packages with `make deb`, installs sdefed-agent and sdefed-cli
with `dpkg -i` on THIS machine, checks what the maintainer scripts made (the
`sdefed` system user, /etc/sdefed and /var/lib/sdefed with their owners and
modes, the conffile, the installed programs), runs the INSTALLED agent —
the unit's own ExecStartPre/ExecStart command lines, as the unit's User= and
Group= with its UMask — against a 1-site sandbox coordinator whose own agent
has been stopped, and checks that it comes online and answers a count
exactly as the disclosure rules say. Then it edits /etc/sdefed/agent.conf,
builds a second package version (SDEFED_VERSION, read by
deploy/debian/build-deb.sh), upgrades non-interactively and checks that the
edit survived, the new version is installed and the agent still serves.
Finally `dpkg --purge` must remove the programs, the unit and the conffile
(and /etc/sdefed once the operator's own certificates are gone), and keep
/var/lib/sdefed and the `sdefed` user, as deploy/README.md documents.

The agent runs without systemd (CI machines and containers may have none):
setpriv drops to the unit's user, so the test exercises the same
permissions the service has (config readable through group sdefed only,
state in the sdefed-owned /var/lib/sdefed).

This installs software system-wide, so it runs only when
  * it is root, and
  * SDEFED_TEST_DPKG=1 is set (.ci/run sets it for the plain `make check`
    on its throw-away machine; never set it on a workstation),
and it refuses (skips, saying why) when any sdefed package, /etc/sdefed or
/var/lib/sdefed is already there. Everything it installed or created is
removed in cleanups that run even when the test fails: the packages are
purged, and /var/lib/sdefed, /etc/sdefed and the sdefed user and group are
removed if they did not exist before.
"""

import glob
import grp
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import unittest

from sandbox import (REPO, Sandbox, build_dir, expected_release, require_binaries,
                     strata_key, true_counts, wait_until)

OURS = ("sdefed-agent", "sdefed-coordinator", "sdefed-cli")
UNIT = "/lib/systemd/system/sdefed-agent.service"
CONF = "/etc/sdefed/agent.conf"
T2DM = {"domain": "condition", "concepts": [201826], "descendants": True}
SPEC = {"kind": "count", "project": "demo", "dataset": "omop",
        "cohort": {"all": [T2DM]}, "by": ["sex"]}


def run(cmd, timeout=120, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (exit %d):\n%s%s"
                             % (" ".join(cmd), p.returncode, p.stdout[-3000:],
                                p.stderr[-3000:]))
    return p


def installed_version(pkg):
    """The installed version of pkg, or None if it is not installed (or only
    its conffiles are left)."""
    p = run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Version}", pkg], check=False)
    if p.returncode != 0:
        return None
    abbrev, _, version = p.stdout.partition(" ")
    return version.strip() if abbrev.startswith("ii") else None


def known_to_dpkg(pkg):
    """True if dpkg has any record of pkg other than `not-installed`."""
    p = run(["dpkg-query", "-W", "-f", "${Status}", pkg], check=False)
    return p.returncode == 0 and not p.stdout.strip().endswith("not-installed")


def skip_reason():
    if os.environ.get("SDEFED_TEST_DPKG") != "1":
        return ("installs packages system-wide: set SDEFED_TEST_DPKG=1 (as root, on a "
                "throw-away machine such as CI's) to run it")
    if os.geteuid() != 0:
        return "dpkg -i needs root"
    for tool in ("dpkg", "dpkg-deb", "dpkg-query", "setpriv"):
        if shutil.which(tool) is None:
            return "%s not available" % tool
    for pkg in OURS:
        if known_to_dpkg(pkg):
            return "%s is already known to dpkg (not installed by this test): refusing" % pkg
    for d in ("/etc/sdefed", "/var/lib/sdefed"):
        if os.path.lexists(d):
            return "%s already exists (not created by this test): refusing" % d
    return None


def unit_settings(path):
    """{key: [values]} of the [Service] section of a systemd unit."""
    out = {}
    section = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]" and "=" in line:
                k, _, v = line.partition("=")
                out.setdefault(k.strip(), []).append(v.strip())
    return out


class DebInstallTest(unittest.TestCase):

    def setUp(self):
        reason = skip_reason()
        if reason:
            self.skipTest(reason)
        require_binaries("sdefed", "sdefed-agent", "sdefed-coordinator", "sdefed-synth")
        self.had_user = self._exists(pwd.getpwnam, "sdefed")
        self.had_group = self._exists(grp.getgrnam, "sdefed")
        self.tmp = tempfile.mkdtemp(prefix="sdefed-dpkg-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.agent = None
        # Cleanups run last-in first-out: the system clean-up is registered
        # first so it runs after the agent has been stopped.
        self.addCleanup(self._restore_system)

    @staticmethod
    def _exists(fn, name):
        try:
            fn(name)
            return True
        except KeyError:
            return False

    def _restore_system(self):
        self._stop_agent()
        problems = []
        installed = [p for p in OURS if known_to_dpkg(p)]
        if installed:
            p = run(["dpkg", "--purge"] + installed, check=False, timeout=120)
            if p.returncode != 0:
                problems.append("dpkg --purge %s: %s" % (" ".join(installed), p.stderr))
        # Neither existed before the test (skip_reason checked).
        shutil.rmtree("/etc/sdefed", ignore_errors=True)
        shutil.rmtree("/var/lib/sdefed", ignore_errors=True)
        if not self.had_user and self._exists(pwd.getpwnam, "sdefed"):
            run(["userdel", "sdefed"], check=False)
        if not self.had_group and self._exists(grp.getgrnam, "sdefed"):
            run(["groupdel", "sdefed"], check=False)
        if problems:
            raise AssertionError("; ".join(problems))

    # -- building --
    def build_debs(self, version=None):
        """`make deb` (optionally as VERSION); copy the agent and CLI packages
        into the temp dir and return {package: path}."""
        env = dict(os.environ)
        if version:
            env["SDEFED_VERSION"] = version
        p = run(["make", "--no-print-directory", "BUILD=" + build_dir(), "deb"], cwd=REPO,
                env=env, timeout=600)
        made = re.findall(r"^deb: (\S+\.deb)$", p.stdout, re.M)
        out = {}
        for path in made:
            pkg = os.path.basename(path).split("_")[0]
            if pkg in ("sdefed-agent", "sdefed-cli"):
                out[pkg] = shutil.copy(path, self.tmp)
            if version:
                # Leave build/deb/ as a plain `make deb` makes it.
                os.unlink(path)
        self.assertEqual(sorted(out), ["sdefed-agent", "sdefed-cli"], p.stdout)
        return out

    def dpkg_install(self, *debs):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        # --force-confold: keep an edited conffile without asking, as an
        # unattended upgrade does; stdin is /dev/null so a prompt cannot hang.
        return run(["dpkg", "--force-confdef", "--force-confold", "-i"] + list(debs),
                   env=env, timeout=300)

    # -- running the installed agent as the unit does --
    def as_service_user(self, argv):
        unit = unit_settings(UNIT)
        user, group = unit["User"][0], unit["Group"][0]
        umask = int(unit.get("UMask", ["0022"])[0], 8)
        cmd = ["setpriv", "--reuid=" + user, "--regid=" + group, "--init-groups",
               "--"] + argv
        return cmd, umask

    def agent_cmd(self, key):
        unit = unit_settings(UNIT)
        self.assertEqual(len(unit[key]), 1, unit[key])
        argv = shlex.split(unit[key][0])
        self.assertEqual(argv[0], "/usr/sbin/sdefed-agent")
        return argv

    def run_as_service_user(self, argv):
        cmd, umask = self.as_service_user(argv)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL, umask=umask)
        return p

    def start_agent(self, log_name):
        pre = self.run_as_service_user(self.agent_cmd("ExecStartPre"))
        self.assertEqual(pre.returncode, 0, "ExecStartPre: %s" % pre.stderr)
        cmd, umask = self.as_service_user(self.agent_cmd("ExecStart"))
        self.agent_log = os.path.join(self.tmp, log_name)
        with open(self.agent_log, "w") as log:
            self.agent = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, umask=umask)

    def _stop_agent(self):
        a, self.agent = self.agent, None
        if a is None or a.poll() is not None:
            return
        a.send_signal(signal.SIGTERM)
        try:
            a.wait(20)
        except subprocess.TimeoutExpired:
            a.kill()
            a.wait(10)

    def agent_output(self, tail=3000):
        with open(self.agent_log, errors="replace") as f:
            text = f.read()
        return text[-tail:] if tail else text

    def wait_served_by_installed_agent(self, sb):
        """The installed agent is online at the coordinator, connected
        according to its own status socket, and answers the count exactly."""
        try:
            sb.wait_online(["site-a"], timeout=30)
        except AssertionError as e:
            raise AssertionError("%s\ninstalled agent said:\n%s" % (e, self.agent_output()))
        self.assertIsNone(self.agent.poll(), self.agent_output())
        st = self.run_as_service_user(["/usr/sbin/sdefed-agent", "--config", CONF, "status"])
        self.assertEqual(st.returncode, 0, st.stderr)
        self.assertIn("127.0.0.1:%d" % sb.port, st.stdout)
        sock = os.stat("/var/lib/sdefed/agent.sock")
        self.assertTrue(stat.S_ISSOCK(sock.st_mode))
        self.assertEqual(pwd.getpwuid(sock.st_uid).pw_name, "sdefed")
        d = sb.query(SPEC, sites=["site-a"])
        site = d["sites"][0]
        self.assertEqual((site["site"], site["status"]), ("site-a", "ok"), site)
        cells = {strata_key(c["strata"]): c for c in site["cells"]}
        truth = true_counts(self.db, T2DM, ["sex"])
        self.assertTrue(any(n >= 10 for n in truth.values()), "cohort too small to mean much")
        for k, n in truth.items():
            self.assertEqual((cells[k]["value"], cells[k]["status"]), expected_release(n),
                             "site-a %r (true %d)" % (k, n))
        # The installed CLI sees the same.
        p = run(["/usr/bin/sdefed", "--config", sb.client_conf, "sites", "--format", "json"])
        sites = {s["site"]: s for s in json.loads(p.stdout)["sites"]}
        self.assertIs(sites["site-a"]["online"], True, p.stdout)

    # -- the test --
    def test_install_run_upgrade_purge(self):
        debs1 = self.build_debs()
        v1 = run(["dpkg-deb", "-f", debs1["sdefed-agent"], "Version"]).stdout.strip()
        self.dpkg_install(debs1["sdefed-agent"], debs1["sdefed-cli"])
        self.assertEqual(installed_version("sdefed-agent"), v1)
        self.assertEqual(installed_version("sdefed-cli"), v1)

        # What postinst made.
        u = pwd.getpwnam("sdefed")
        g = grp.getgrnam("sdefed")
        self.assertEqual(u.pw_gid, g.gr_gid)
        self.assertEqual(u.pw_shell, "/usr/sbin/nologin")
        self.assertEqual(u.pw_dir, "/var/lib/sdefed")
        self.assertLess(u.pw_uid, 1000, "not a system user")
        for path, owner, group, mode in (
                ("/etc/sdefed", "root", "sdefed", 0o750),
                ("/var/lib/sdefed", "sdefed", "sdefed", 0o750),
                (CONF, "root", "sdefed", 0o640),
                ("/usr/sbin/sdefed-agent", "root", "root", 0o755),
                ("/usr/bin/sdefed", "root", "root", 0o755),
                (UNIT, "root", "root", 0o644)):
            st = os.stat(path)
            self.assertEqual((pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
                              stat.S_IMODE(st.st_mode)), (owner, group, mode), path)
        self.assertTrue(os.path.exists("/usr/share/man/man8/sdefed-agent.8"))
        self.assertFalse(os.path.exists("/usr/sbin/sdefed-coordinator"))
        p = run(["dpkg-query", "-W", "-f", "${Conffiles}", "sdefed-agent"])
        self.assertEqual([l.split()[0] for l in p.stdout.strip().splitlines()], [CONF])
        self.assertIn("ExecStart=/usr/sbin/sdefed-agent", open(UNIT).read())

        # A 1-site sandbox; its own agent makes way for the installed one.
        sb = Sandbox(sites=1, persons=1500, prefix="sdefed-dpkg-sb-")
        sb.up()
        self.addCleanup(sb.down)
        sb.stop("site-a")
        wait_until(lambda: sb.sites_status()["site-a"]["online"] is False, 20,
                   what="the sandbox's own site-a agent to go offline")

        # The operator's part: certificates, data readable by group sdefed,
        # and the installed config pointed at them.
        for src, dst, mode in (("site-a.crt", "site-a.crt", 0o644),
                               ("site-a.key", "site-a.key", 0o640),
                               ("ca.crt", "ca.crt", 0o644)):
            d = os.path.join("/etc/sdefed", dst)
            shutil.copy(os.path.join(sb.pki, src), d)
            os.chown(d, 0, g.gr_gid)
            os.chmod(d, mode)
        datadir = os.path.join(self.tmp, "omop")
        os.mkdir(datadir)
        os.chown(datadir, 0, g.gr_gid)
        os.chmod(datadir, 0o750)
        os.chmod(self.tmp, 0o755)
        self.db = os.path.join(datadir, "omop.sqlite")
        shutil.copy(sb.db_path("site-a"), self.db)
        os.chown(self.db, 0, g.gr_gid)
        os.chmod(self.db, 0o640)
        pin = None
        with open(sb.path("agent-site-a.conf")) as f:
            for line in f:
                if line.startswith("coordinator_pin ="):
                    pin = line.split("=", 1)[1].strip()
        with open(CONF) as f:
            conf = f.read()
        for pat, repl in ((r"(?m)^coordinator = .*$", "coordinator = 127.0.0.1:%d" % sb.port),
                          (r"(?m)^path = .*$", "path = " + self.db),
                          (r"(?m)^;coordinator_pin =.*$", "coordinator_pin = %s" % pin),
                          (r"(?m)^heartbeat_seconds = .*$", "heartbeat_seconds = 2"),
                          (r"(?m)^reconnect_max_ms = .*$", "reconnect_max_ms = 2000")):
            conf, n = re.subn(pat, repl, conf)
            self.assertEqual(n, 1, "the packaged agent.conf has no line for %r" % pat)
        with open(CONF, "w") as f:
            f.write(conf)
        # The project the sandbox's agents approve, in the installed state dir.
        p = self.run_as_service_user(["/usr/sbin/sdefed-agent", "--config", CONF, "project",
                                      "add", "demo", "--requesters", "*", "--release", "auto",
                                      "--description", "dpkg test"])
        self.assertEqual(p.returncode, 0, p.stderr)

        self.start_agent("agent-1.log")
        self.wait_served_by_installed_agent(sb)
        self._stop_agent()
        # log_level = info: no debug lines (priority <7>, sd-daemon prefix).
        self.assertNotIn("<7>", self.agent_output(tail=None))

        # Upgrade to a second version with an edited config.
        conf += "; edited by test_deb_install: this line must survive the upgrade\n"
        conf = conf.replace("log_level = info", "log_level = debug")
        with open(CONF, "w") as f:
            f.write(conf)
        v2 = v1 + "+upgradetest1"
        run(["dpkg", "--compare-versions", v2, "gt", v1])
        debs2 = self.build_debs(v2)
        self.assertEqual(run(["dpkg-deb", "-f", debs2["sdefed-agent"], "Version"]).stdout.strip(),
                         v2)
        self.dpkg_install(debs2["sdefed-agent"], debs2["sdefed-cli"])
        self.assertEqual(installed_version("sdefed-agent"), v2)
        self.assertEqual(installed_version("sdefed-cli"), v2)
        with open(CONF) as f:
            self.assertEqual(f.read(), conf, "the edited conffile was changed by the upgrade")
        self.assertEqual(glob.glob("/etc/sdefed/agent.conf.dpkg-*"), [])
        st = os.stat(CONF)
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (0, g.gr_gid, 0o640))
        self.assertTrue(os.listdir("/var/lib/sdefed"), "state dir emptied by the upgrade")
        self.start_agent("agent-2.log")
        self.wait_served_by_installed_agent(sb)
        self._stop_agent()
        self.assertIn("<7>", self.agent_output(tail=None), "the edited log_level = debug is not in effect")

        # Purge. The operator's certificates are theirs to remove first.
        for f in ("site-a.crt", "site-a.key", "ca.crt"):
            os.unlink(os.path.join("/etc/sdefed", f))
        p = run(["dpkg", "--purge", "sdefed-agent", "sdefed-cli"])
        self.assertIn("kept /var/lib/sdefed", p.stderr)
        for pkg in ("sdefed-agent", "sdefed-cli"):
            self.assertFalse(known_to_dpkg(pkg), "%s still known to dpkg after purge" % pkg)
        for gone in ("/usr/sbin/sdefed-agent", "/usr/bin/sdefed", UNIT, CONF, "/etc/sdefed",
                     "/usr/share/man/man8/sdefed-agent.8", "/usr/share/doc/sdefed-agent"):
            self.assertFalse(os.path.lexists(gone), "%s left after purge" % gone)
        # Kept on purpose (deploy/README.md): the state with the audit trail,
        # and the user that owns it. _restore_system removes both.
        self.assertTrue(os.path.isdir("/var/lib/sdefed"))
        self.assertTrue(os.listdir("/var/lib/sdefed"), "purge emptied the state dir")
        self.assertTrue(self._exists(pwd.getpwnam, "sdefed"))


if __name__ == "__main__":
    unittest.main()
