"""tests/integration/test_hostile.py — hostile clients against a running coordinator.

Each test attacks the coordinator's one TLS port the way a stranger, a
confused client or a compromised credential might: wrong CA, plain TCP,
TLS 1.2, no client certificate, oversized and garbage frames, an
unregistered CN, a site certificate claiming the analyst role, a future
protocol version. Each must be refused (no HelloAck, connection closed), the
coordinator must log why, and afterwards both daemons are alive and a
normal query still works. A positive control first proves that the
hand-built Hello is correct, so the refusals are not vacuous.
"""

import os
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

from sandbox import (F_ERROR, F_HELLO_ACK, PKI_SH, ROLE_AGENT, ROLE_ANALYST,
                     SandboxTestCase, envelope_bodies, frame, hello_envelope,
                     pb_fields, read_until_closed, wait_until)

COUNT = {"kind": "count", "project": "demo", "dataset": "omop",
         "cohort": {"all": [{"domain": "condition", "concepts": [201826],
                             "descendants": True}]},
         "by": ["sex"]}

# A coordinator log line explaining a refusal names our address and says why
# in words like these.
REASON_WORDS = ("refus", "reject", "denied", "deny", "fail", "error", "invalid", "unknown",
                "not registered", "unregistered", "too large", "oversize", "exceed", "limit",
                "version", "handshake", "certificate", "protocol", "malformed", "expected",
                "auth", "role", "alert", "bad", "tls", "ssl", "http")


class HostileTest(SandboxTestCase):
    # After every attack the same health-check query runs again: lift the
    # repeat limit, which is tested on its own in tests/attacks/.
    SANDBOX_ARGS = dict(sites=2, seed=31, persons=2000,
                        disclosure={"max_identical": 100000})

    @classmethod
    def prepare(cls):
        sb = cls.sb
        cls.evil = tempfile.mkdtemp(prefix="sdefed-it-evil-")
        # A whole other federation's CA, with a cert called "analyst".
        for args in (["init", cls.evil], ["issue", cls.evil, "analyst"]):
            subprocess.run(["sh", PKI_SH] + args, check=True, capture_output=True)
        # A cert from the sandbox's own CA whose CN is not registered.
        subprocess.run(["sh", PKI_SH, "issue", sb.pki, "mallory"], check=True,
                       capture_output=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(getattr(cls, "evil", ""), ignore_errors=True)
        super().tearDownClass()

    # ---- helpers ----
    def cert(self, name, pki=None):
        d = pki or self.sb.pki
        return os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")

    def ctx(self, name="analyst", pki=None, **kw):
        if name is None:
            return self.sb.tls_context(**kw)
        crt, key = self.cert(name, pki)
        return self.sb.tls_context(cert=crt, key=key, **kw)

    def setUp(self):
        self.log_offset = self.sb.log_size("coordinator")

    def tearDown(self):
        # After every attack: both daemons alive and a normal query works.
        sb = self.sb
        self.assertTrue(sb.alive("coordinator"),
                        "coordinator died:\n" + sb.log_tails())
        for s in sb.sites:
            self.assertTrue(sb.alive(s), "%s died:\n%s" % (s, sb.log_tails()))
        sb.wait_online(sb.sites, timeout=15)
        d = sb.query(COUNT)
        self.assertEqual({s["site"]: s["status"] for s in d["sites"]},
                         {s: "ok" for s in sb.sites})

    def assert_logged_reason(self, what, port):
        """A new coordinator log line mentions 127.0.0.1:port and a reason."""
        addr = "127.0.0.1:%d" % port

        def line_with_reason():
            for line in self.sb.log_since("coordinator", self.log_offset).splitlines():
                low = line.lower()
                if addr in line and any(w in low for w in REASON_WORDS):
                    return line
            return None
        wait_until(line_with_reason, 5,
                   what="a coordinator log line about %s explaining the refusal of %s"
                   % (addr, what))

    def connect(self, ctx):
        """(TLS socket or None if the handshake failed, our local port)."""
        raw = socket.create_connection(("127.0.0.1", self.sb.port), timeout=10)
        port = raw.getsockname()[1]
        try:
            return ctx.wrap_socket(raw, server_hostname="127.0.0.1"), port
        except (ssl.SSLError, ConnectionError, OSError):
            raw.close()
            return None, port

    def assert_refused(self, sock, port, what, want_error=False):
        """The peer must close without a HelloAck; returns envelope bodies."""
        data, closed = read_until_closed(sock, timeout=10)
        bodies = envelope_bodies(data) if data else []
        fields = [f for f, _ in bodies]
        self.assertNotIn(F_HELLO_ACK, fields, "%s: got a HelloAck" % what)
        self.assertTrue(closed, "%s: connection still open after 10 s" % what)
        if want_error:
            self.assertIn(F_ERROR, fields, "%s: no Error envelope before close" % what)
        self.assert_logged_reason(what, port)
        return bodies

    def handshake_then(self, ctx, payload):
        """TLS-connect and send payload. Returns (socket, port); socket is
        None when the server already refused during the handshake (TLS 1.3
        client-auth failures may surface at connect or only at the first read)."""
        s, port = self.connect(ctx)
        if s is not None and payload:
            try:
                s.sendall(payload)
            except (ssl.SSLError, ConnectionError, OSError):
                pass
        return s, port

    def refused_at_tls_or_hello(self, ctx, what, role=ROLE_ANALYST):
        s, port = self.handshake_then(ctx, frame(hello_envelope(1, role)))
        if s is None:
            self.assert_logged_reason(what, port)
            return
        with s:
            self.assert_refused(s, port, what)

    # ---- positive control ----
    def test_a_hand_built_hello_is_accepted(self):
        s = self.sb.tls_connect(self.ctx("analyst"))
        with s:
            self.assertEqual(s.version(), "TLSv1.3")
            s.sendall(frame(hello_envelope(1, ROLE_ANALYST)))
            s.settimeout(10)
            buf = b""
            deadline = time.monotonic() + 10
            bodies = []
            while not bodies and time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                bodies = envelope_bodies(buf)
            self.assertTrue(bodies, "no reply to a valid analyst Hello")
            self.assertEqual(bodies[0][0], F_HELLO_ACK, bodies)
            ack = {f: v for f, _, v in pb_fields(bodies[0][1])}
            self.assertEqual(ack.get(1), 1)             # protocol_version
            self.assertEqual(ack.get(2), b"analyst")    # peer_id = our CN

    # ---- transport-level attacks ----
    def test_other_ca_client_cert(self):
        # Trust the real CA (so we reach the server) but present a cert from another CA.
        ctx = self.sb.tls_context(cert=self.cert("analyst", self.evil)[0],
                                  key=self.cert("analyst", self.evil)[1])
        self.refused_at_tls_or_hello(ctx, "a certificate from another CA")

    def test_plain_tcp_http(self):
        with socket.create_connection(("127.0.0.1", self.sb.port), timeout=10) as s:
            port = s.getsockname()[1]
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl\r\n\r\n")
            data, closed = read_until_closed(s, timeout=10)
            self.assertTrue(closed, "plain HTTP: connection still open")
            self.assertNotIn(b"HTTP/1.", data)
        self.assert_logged_reason("a plain-TCP HTTP request", port)

    def test_tls12_only_client(self):
        s, port = self.connect(self.ctx("analyst", tls12_only=True))
        if s is not None:
            with s:
                self.fail("a TLS 1.2 handshake succeeded (version %s)" % s.version())
        self.assert_logged_reason("a TLS 1.2-only client", port)

    def test_no_client_cert(self):
        self.refused_at_tls_or_hello(self.ctx(None), "a client without a certificate")

    # ---- framing attacks after a good handshake ----
    def test_huge_length_prefix_before_hello(self):
        s, port = self.handshake_then(self.ctx("analyst"), b"\x06\x40\x00\x00" + b"\0" * 1024)
        self.assertIsNotNone(s, "valid analyst handshake failed")
        with s:
            self.assert_refused(s, port, "a 100 MiB frame before Hello")

    def test_huge_length_prefix_after_hello(self):
        s, port = self.connect(self.ctx("analyst"))
        self.assertIsNotNone(s, "valid analyst handshake failed")
        with s:
            s.sendall(frame(hello_envelope()))
            s.settimeout(10)
            buf = b""
            while not envelope_bodies(buf):
                chunk = s.recv(65536)
                self.assertTrue(chunk, "closed before HelloAck")
                buf += chunk
            self.assertEqual(envelope_bodies(buf)[0][0], F_HELLO_ACK)
            s.sendall(b"\x06\x40\x00\x00" + b"\0" * 4096)
            data, closed = read_until_closed(s, 10)
            self.assertTrue(closed, "100 MiB frame after Hello: connection still open")
        self.assert_logged_reason("a 100 MiB frame after Hello", port)

    def test_random_bytes_after_handshake(self):
        rnd = random.Random(20261123)
        for i in range(3):
            junk = bytes(rnd.getrandbits(8) for _ in range(4096))
            if i == 2:
                # A plausible length, then garbage that is not an Envelope.
                junk = b"\x00\x00\x00\x40" + b"\xff" * 64
            s, port = self.handshake_then(self.ctx("analyst"), junk)
            self.assertIsNotNone(s, "valid analyst handshake failed")
            with s:
                self.assert_refused(s, port, "random bytes #%d" % i)

    # ---- protocol-level attacks ----
    def test_unregistered_cn(self):
        self.refused_at_tls_or_hello(self.ctx("mallory"), "an unregistered CN (mallory)")

    def test_site_cert_as_analyst(self):
        self.refused_at_tls_or_hello(self.ctx(self.sb.sites[0]), "a site cert claiming analyst")

    def test_analyst_cert_as_agent(self):
        self.refused_at_tls_or_hello(self.ctx("analyst"), "an analyst cert claiming agent",
                                     role=ROLE_AGENT)

    def test_future_protocol_version(self):
        s, port = self.handshake_then(self.ctx("analyst"), frame(hello_envelope(99, ROLE_ANALYST)))
        self.assertIsNotNone(s, "valid analyst handshake failed")
        with s:
            bodies = self.assert_refused(s, port, "protocol_version 99", want_error=True)
        err = dict((f, v) for f, _, v in pb_fields([b for f, b in bodies if f == F_ERROR][0]))
        self.assertEqual(err.get(1), 1, "Error.code should be ERR_VERSION: %r" % err)
        self.assertTrue(err.get(2), "Error without a message")

    def test_message_before_hello(self):
        # A Fetch (field 18) as the first message: protocol error, closed.
        fetch = b"\x92\x01" + bytes([5]) + b"\x0a\x03abc"
        s, port = self.handshake_then(self.ctx("analyst"), frame(fetch))
        self.assertIsNotNone(s, "valid analyst handshake failed")
        with s:
            self.assert_refused(s, port, "a Fetch before Hello")

    def test_many_idle_connections_do_not_block_service(self):
        # Connections that never finish a handshake must not starve others.
        socks = []
        try:
            for _ in range(50):
                socks.append(socket.create_connection(("127.0.0.1", self.sb.port), timeout=10))
            d = self.sb.query(COUNT, proc_timeout=60)
            self.assertTrue(all(s["status"] == "ok" for s in d["sites"]))
        finally:
            for s in socks:
                s.close()
