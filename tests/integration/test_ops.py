"""tests/integration/test_ops.py — running sdefed as an operator would.

Real daemons from deploy/sandbox: the status sockets of the agent and the
coordinator, Prometheus metrics (and a listener that refuses abuse),
SIGHUP reloads (a broken file keeps the old configuration answering; a site
removed from the registry is disconnected; a revoked analyst certificate is
refused after `pki revoke` + SIGHUP, and a connected site whose certificate
the reloaded CRL revokes is disconnected at once, as is a coordinator
whose certificate an agent's reloaded CRL revokes; a rotated site certificate is presented
on the reconnection that follows the agent's SIGHUP) and the coordinator's
SIGTERM drain (in-flight queries finish, are reported, and the daemon exits;
a second signal exits at once). No timed assertions: every wait polls for
a state with a generous ceiling.
"""

import json
import os
import signal
import socket
import subprocess
import time

from sandbox import PKI_SH, Sandbox, SandboxTestCase, bin_path, wait_until

COUNT = {
    "kind": "count", "project": "demo", "dataset": "omop",
    "cohort": {"all": [{"domain": "drug", "concepts": [1118084], "descendants": True}]},
    "by": ["sex"],
}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def edit_conf(path, section, key, value):
    """Set key = value in [section] (added if missing); value None removes it."""
    with open(path) as f:
        lines = f.read().splitlines()
    out, in_sec, done = [], False, False
    for line in lines:
        st = line.strip()
        if st.startswith("["):
            if in_sec and not done and value is not None:
                out.append("%s = %s" % (key, value))
                done = True
            in_sec = st == "[%s]" % section
        elif in_sec and st.split("=", 1)[0].strip() == key:
            if value is not None and not done:
                out.append("%s = %s" % (key, value))
            done = True
            continue
        out.append(line)
    if in_sec and not done and value is not None:
        out.append("%s = %s" % (key, value))
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def pki(*args):
    p = subprocess.run(["sh", PKI_SH] + list(args), capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("pki %s: %s" % (" ".join(args), p.stderr))
    return p.stdout.strip()


class OpsTestBase(SandboxTestCase):
    SANDBOX_ARGS = dict(sites=2, seed=11, persons=800)

    def status(self, daemon, conf):
        p = subprocess.run([bin_path(daemon), "--config", conf, "status", "--json"],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise AssertionError("%s status: %s" % (daemon, p.stderr))
        return json.loads(p.stdout)

    def coord_status(self):
        return self.status("sdefed-coordinator", self.sb.path("coordinator.conf"))

    def agent_status(self, site):
        return self.status("sdefed-agent", self.sb.path("agent-%s.conf" % site))

    def signal(self, name, sig):
        os.kill(self.sb.pid(name), sig)

    def reload_coordinator(self, expect="configuration reloaded"):
        off = self.sb.log_size("coordinator")
        self.signal("coordinator", signal.SIGHUP)
        return wait_until(lambda: expect in self.sb.log_since("coordinator", off), 20,
                          what="coordinator log: %r" % expect)

    def assert_all_ok(self, d, sites):
        by = {s["site"]: s for s in d["sites"]}
        self.assertEqual(sorted(by), sorted(sites))
        for name in sites:
            self.assertEqual(by[name]["status"], "ok", "%s: %s" % (name, by[name].get("reason")))


class StatusAndMetricsTest(OpsTestBase):

    @classmethod
    def prepare(cls):
        cls.metrics_port = free_port()
        edit_conf(cls.sb.path("coordinator.conf"), "coordinator", "metrics_listen",
                  "127.0.0.1:%d" % cls.metrics_port)
        cls.sb.stop("coordinator")
        cls.sb.start("coordinator")
        cls.sb.wait_online(cls.sb.sites, timeout=30)

    def http(self, request, read=True):
        s = socket.create_connection(("127.0.0.1", self.metrics_port), timeout=10)
        try:
            s.sendall(request)
            if not read:
                return s
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data.decode("utf-8", "replace")
                data += chunk
        finally:
            if read:
                s.close()

    def test_agent_status(self):
        d = self.sb.query(COUNT)
        self.assert_all_ok(d, self.sb.sites)
        st = self.agent_status("site-a")
        self.assertEqual(st["site"], "site-a")
        self.assertEqual(st["connection"], "connected")
        self.assertEqual(st["coordinator"], "127.0.0.1:%d" % self.sb.port)
        self.assertGreaterEqual(st["queries_answered"], 1)
        self.assertEqual(st["queries_in_flight"], 0)
        self.assertGreater(st["certificates"]["site"]["days_left"], 30)
        self.assertIs(st["certificates"]["site"]["warning"], False)
        # The socket lives in the state dir, group/owner only.
        sock = os.path.join(self.sb.path("state", "site-a"), "agent.sock")
        self.assertEqual(os.stat(sock).st_mode & 0o777, 0o660)
        # Human form too.
        p = subprocess.run([bin_path("sdefed-agent"), "--config",
                            self.sb.path("agent-site-a.conf"), "status"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"connection\s+connected")

    def test_coordinator_status(self):
        st = self.coord_status()
        by = {s["site"]: s for s in st["sites"]}
        self.assertEqual(sorted(by), self.sb.sites)
        for s in by.values():
            self.assertIs(s["online"], True)
            self.assertRegex(s["address"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual(st["sites_online"], 2)
        self.assertEqual(st["state"], "running")

    def test_status_when_not_running(self):
        conf = self.sb.path("agent-ghost.conf")
        with open(self.sb.path("agent-site-a.conf")) as f:
            text = f.read()
        ghost = self.sb.path("state", "ghost")
        os.makedirs(ghost, exist_ok=True)
        with open(conf, "w") as f:
            f.write(text.replace(self.sb.path("state", "site-a"), ghost))
        p = subprocess.run([bin_path("sdefed-agent"), "--config", conf, "status"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not running", p.stderr)

    def test_metrics(self):
        self.sb.query(COUNT)
        body = self.http(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(body.startswith("HTTP/1.1 200 OK\r\n"), body[:200])
        text = body.split("\r\n\r\n", 1)[1]
        self.assertIn('sdefed_site_online{site="site-a"} 1', text)
        self.assertIn("sdefed_sites_online 2", text)
        self.assertRegex(text, r'sdefed_site_results_total\{site="site-a",status="ok"\} [1-9]')
        self.assertRegex(text, r"sdefed_queries_submitted_total [1-9]")
        # Only operational series: every sample is one of our metric names,
        # and no label carries anything but a site id, a status or a result.
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            self.assertRegex(line, r'^sdefed_[a-z_]+(\{(site|status|result)="[A-Za-z0-9._-]+"'
                                   r'(,(status)="[a-z]+")?\})? \d+$', line)

    def test_metrics_listener_refuses_abuse(self):
        self.assertIn("404", self.http(b"GET /secret HTTP/1.0\r\n\r\n").split("\r\n")[0])
        self.assertIn("405", self.http(b"POST /metrics HTTP/1.0\r\n\r\n").split("\r\n")[0])
        big = b"GET /metrics HTTP/1.0\r\nX: " + b"a" * 10000 + b"\r\n\r\n"
        try:
            reply = self.http(big)
            self.assertIn("431", reply.split("\r\n")[0])
        except (ConnectionResetError, BrokenPipeError):
            pass    # closed on us while we were still sending: also a refusal
        # A silent client is dropped (the daemon closes it), and others are
        # served meanwhile.
        s = self.http(b"GE", read=False)
        try:
            self.assertIn("200 OK", self.http(b"GET /metrics HTTP/1.0\r\n\r\n"))
            s.settimeout(30)
            self.assertEqual(s.recv(100), b"")
        finally:
            s.close()
        self.assertTrue(self.sb.alive("coordinator"))


class ReloadTest(OpsTestBase):
    """Tests run in name order; each leaves the federation answering."""

    def test_a_broken_coordinator_config_keeps_running(self):
        conf = self.sb.path("coordinator.conf")
        with open(conf) as f:
            good = f.read()
        with open(conf, "w") as f:
            f.write(good + "\n[coordinator]\nno_such_key = 1\n")
        try:
            self.reload_coordinator("reload failed, keeping the running configuration")
            self.assert_all_ok(self.sb.query(COUNT), self.sb.sites)
        finally:
            with open(conf, "w") as f:
                f.write(good)
        self.assertEqual(self.coord_status()["reload_failures"], 1)

    def test_b_broken_agent_config_keeps_answering(self):
        conf = self.sb.path("agent-site-a.conf")
        with open(conf) as f:
            good = f.read()
        off = self.sb.log_size("site-a")
        with open(conf, "w") as f:
            f.write(good.replace("min_cell = 10", "min_cell = -3"))
        try:
            self.signal("site-a", signal.SIGHUP)
            wait_until(lambda: "reload failed" in self.sb.log_since("site-a", off), 20,
                       what="agent reload failure logged")
            self.assert_all_ok(self.sb.query(COUNT), self.sb.sites)
        finally:
            with open(conf, "w") as f:
                f.write(good)

    def test_c_agent_reload_applies_policy(self):
        conf = self.sb.path("agent-site-a.conf")
        with open(conf) as f:
            good = f.read()
        off = self.sb.log_size("site-a")
        with open(conf, "w") as f:
            f.write(good.replace("rounding = 5", "rounding = 10"))
        try:
            self.signal("site-a", signal.SIGHUP)
            wait_until(lambda: "configuration reloaded" in self.sb.log_since("site-a", off), 20,
                       what="agent reload")
            d = self.sb.query(COUNT)
            a = [s for s in d["sites"] if s["site"] == "site-a"][0]
            self.assertEqual(a["policy"]["rounding"], 10, a)
            for c in a["cells"]:
                if c["value"]:
                    self.assertEqual(c["value"] % 10, 0, c)
        finally:
            with open(conf, "w") as f:
                f.write(good)
            off = self.sb.log_size("site-a")
            self.signal("site-a", signal.SIGHUP)
            wait_until(lambda: "configuration reloaded" in self.sb.log_since("site-a", off), 20,
                       what="agent reload back")

    def test_d_rotated_site_certificate(self):
        old_fp = pki("fingerprint", self.sb.path("pki", "site-a.crt"))
        pki("issue", self.sb.pki, "site-a", "--force")
        new_fp = pki("fingerprint", self.sb.path("pki", "site-a.crt"))
        self.assertNotEqual(old_fp, new_fp)
        self.assertTrue(any(n.startswith("site-a-") for n in
                            os.listdir(self.sb.path("pki", "retired"))))
        # The registry pins site certificates: new pin first (the connected
        # agent keeps its connection), then the agent presents the new one.
        edit_conf(self.sb.path("coordinator.conf"), "sites", "site-a", new_fp)
        self.reload_coordinator()
        self.assertIs(self.coord_status()["sites"][0]["online"], True)
        connects = {s["site"]: s["connects"] for s in self.coord_status()["sites"]}
        off = self.sb.log_size("site-a")
        self.signal("site-a", signal.SIGHUP)
        wait_until(lambda: "reconnecting with the new one" in self.sb.log_since("site-a", off),
                   20, what="agent reconnects with its new certificate")
        wait_until(lambda: {s["site"]: s["connects"] for s in self.coord_status()["sites"]}
                   ["site-a"] > connects["site-a"], 30, what="site-a back online")
        self.sb.wait_online(["site-a"])
        self.assert_all_ok(self.sb.query(COUNT), self.sb.sites)

    def test_e_revoked_analyst_refused(self):
        self.assertEqual(self.sb.cli("sites").returncode, 0)
        pki("revoke", self.sb.pki, "analyst")
        edit_conf(self.sb.path("coordinator.conf"), "coordinator", "crl",
                  self.sb.path("pki", "ca.crl"))
        self.reload_coordinator("CRL reloaded")
        p = self.sb.cli("sites")
        self.assertNotEqual(p.returncode, 0, p.stdout)
        # Agents (not revoked) keep working; a new analyst certificate works.
        pki("issue", self.sb.pki, "analyst", "--force")
        edit_conf(self.sb.path("coordinator.conf"), "analysts", "analyst",
                  pki("fingerprint", self.sb.path("pki", "analyst.crt")))
        self.reload_coordinator()
        self.assert_all_ok(self.sb.query(COUNT), self.sb.sites)

    def test_f_site_removed_from_registry_is_disconnected(self):
        edit_conf(self.sb.path("coordinator.conf"), "sites", "site-b", None)
        self.reload_coordinator("1 removed")
        st = self.coord_status()
        self.assertEqual([s["site"] for s in st["sites"]], ["site-a"])
        wait_until(lambda: self.agent_status("site-b")["connection"] != "connected", 20,
                   what="site-b disconnected")
        d = self.sb.query(COUNT)
        self.assert_all_ok(d, ["site-a"])
        wait_until(lambda: "not a registered site" in self.sb.log("site-b"), 20,
                   what="site-b refused on reconnect")

    def test_g_revoked_site_refused(self):
        # The CRL names site-a's current certificate. site-a is connected: the
        # reload cuts it off at once (its certificate is checked again against
        # the new CRL), and its own reconnection attempts are then refused at
        # the handshake.
        self.sb.wait_online(["site-a"])
        pki("revoke", self.sb.pki, "site-a")
        edit_conf(self.sb.path("coordinator.conf"), "coordinator", "crl",
                  self.sb.path("pki", "ca.crl"))
        off = self.sb.log_size("coordinator")
        self.reload_coordinator()
        log = self.sb.log_since("coordinator", off)
        self.assertRegex(log, r"site site-a: certificate no longer accepted \(certificate "
                              r"revoked\): disconnecting")
        wait_until(lambda: "revoked" in self.sb.log_since("coordinator", off).split(
                       "disconnecting", 1)[-1], 30,
                   what="coordinator to refuse site-a's reconnection (revoked)")
        st = {s["site"]: s["online"] for s in self.coord_status()["sites"]}
        self.assertIs(st["site-a"], False)
        self.assertTrue(self.sb.alive("coordinator"))


class CoordinatorRevokedTest(OpsTestBase):
    # its own sandbox: ReloadTest leaves site-a revoked and site-b unregistered

    def test_revoked_coordinator_cut_off_by_agent_reload(self):
        # The other direction: site-b's operator revokes the COORDINATOR's
        # certificate in the CRL the agent loads. The connected agent drops
        # the link at its SIGHUP (not at some later reconnection), then
        # refuses the coordinator at every handshake, and stays up.
        self.sb.wait_online(["site-b"])
        pki("revoke", self.sb.pki, "coordinator")
        edit_conf(self.sb.path("agent-site-b.conf"), "agent", "crl",
                  self.sb.path("pki", "ca.crl"))
        off = self.sb.log_size("site-b")
        self.signal("site-b", signal.SIGHUP)
        wait_until(lambda: "configuration reloaded" in self.sb.log_since("site-b", off), 20,
                   what="site-b reload")
        self.assertRegex(self.sb.log_since("site-b", off),
                         r"coordinator certificate no longer accepted \(certificate revoked\): "
                         r"disconnecting")
        wait_until(lambda: "revoked" in self.sb.log_since("site-b", off).split(
                       "disconnecting", 1)[-1], 30,
                   what="site-b to refuse the coordinator at its next handshake (revoked)")
        wait_until(lambda: not {s["site"]: s["online"]
                                for s in self.coord_status()["sites"]}["site-b"], 30,
                   what="site-b offline at the coordinator")
        self.assertTrue(self.sb.alive("site-b"))
        self.assertEqual(self.agent_status("site-b")["connection"] != "connected", True)


class DrainTest(OpsTestBase):

    @classmethod
    def prepare(cls):
        edit_conf(cls.sb.path("coordinator.conf"), "coordinator", "drain_timeout_seconds", "60")
        cls.sb.stop("coordinator")
        cls.sb.start("coordinator")
        cls.sb.wait_online(cls.sb.sites, timeout=30)

    def test_sigterm_lets_in_flight_query_finish(self):
        # site-b stops answering: the query stays in flight at the coordinator.
        self.signal("site-b", signal.SIGSTOP)
        try:
            cmd = [bin_path("sdefed"), "--config", self.sb.client_conf, "query", "-",
                   "--format", "json", "--timeout", "120"]
            q = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            q.stdin.write(json.dumps(COUNT))
            q.stdin.close()
            q.stdin = None
            wait_until(lambda: self.coord_status()["queries_in_flight"] == 1, 30,
                       what="query in flight")
            self.signal("coordinator", signal.SIGTERM)
            wait_until(lambda: self.coord_status()["state"] == "stopping", 20,
                       what="coordinator draining")
            # No new queries while draining.
            p = self.sb.cli("sites")
            self.assertNotEqual(p.returncode, 0)
            self.assertIsNone(q.poll())
            self.assertTrue(self.sb.alive("coordinator"))
        finally:
            self.signal("site-b", signal.SIGCONT)
        out, err = q.communicate(timeout=120)
        self.assertEqual(q.returncode, 0, err)
        self.assert_all_ok(json.loads(out), self.sb.sites)
        wait_until(lambda: not self.sb.alive("coordinator"), 30, what="coordinator exit")
        self.assertIn("stopped", self.sb.log("coordinator"))
        self.sb.start("coordinator")
        self.sb.wait_online(self.sb.sites, timeout=30)

    def test_second_signal_exits_at_once(self):
        self.signal("site-b", signal.SIGSTOP)
        try:
            cmd = [bin_path("sdefed"), "--config", self.sb.client_conf, "query", "-",
                   "--format", "json", "--timeout", "120"]
            q = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            q.stdin.write(json.dumps(COUNT))
            q.stdin.close()
            q.stdin = None
            wait_until(lambda: self.coord_status()["queries_in_flight"] == 1, 30,
                       what="query in flight")
            self.signal("coordinator", signal.SIGTERM)
            wait_until(lambda: self.coord_status()["state"] == "stopping", 20,
                       what="coordinator draining")
            self.signal("coordinator", signal.SIGTERM)
            wait_until(lambda: not self.sb.alive("coordinator"), 30, what="coordinator exit")
            self.assertIn("second signal", self.sb.log("coordinator"))
            q.communicate(timeout=60)
            self.assertNotEqual(q.returncode, 0)
        finally:
            self.signal("site-b", signal.SIGCONT)
        # The interrupted query is recovered as interrupted on the next start.
        self.sb.start("coordinator")
        self.sb.wait_online(self.sb.sites, timeout=30)
        self.assertIn("interrupted by the previous shutdown", self.sb.log("coordinator"))
