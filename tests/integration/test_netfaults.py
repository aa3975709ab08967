"""Network faults between an agent and the coordinator.

An in-process TCP proxy sits between site-a's agent and the coordinator and
misbehaves on command: 1-byte writes, a black hole (half-open connection:
nothing forwarded, nothing closed), a reset in the middle of a TLS record,
and a flipped byte inside a record. A slowloris client also dribbles a TLS
handshake at the coordinator. After each fault: no daemon crashed, the
fault is noticed and logged, the federation recovers by itself, and the
other sites answer throughout.
"""
import os
import re
import socket
import struct
import threading
import time
import unittest

from sandbox import SandboxTestCase, wait_until

COUNT = {"kind": "count", "project": "demo", "dataset": "omop",
         "cohort": {"all": [{"domain": "drug", "concepts": [1118084],
                             "descendants": True}]}}


class FaultyProxy:
    """Forwards 127.0.0.1:port <-> upstream; `mode` decides how.

    pass     forward chunks as they come
    trickle  forward one byte per send()
    hole     forward nothing, close nothing (a half-open link)
    reset    from the coordinator: forward half of the next chunk, then RST both
    corrupt  from the coordinator: flip one byte inside the next TLS record
    """

    def __init__(self, upstream_port):
        self.upstream = ("127.0.0.1", upstream_port)
        self.mode = "pass"
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.conns = []
        self.closed = False
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def set(self, mode):
        with self.lock:
            self.mode = mode

    def _accept(self):
        while not self.closed:
            try:
                down, _ = self.srv.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                down.close()
                continue
            for s in (down, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
            with self.lock:
                self.conns.append((down, up))
                self.accepted += 1
            threading.Thread(target=self._pump, args=(down, up, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, True), daemon=True).start()

    @staticmethod
    def _rst(*socks):
        for s in socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            except OSError:
                pass

    def _pump(self, src, dst, from_coordinator):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            with self.lock:
                mode = self.mode
            try:
                if mode == "hole":
                    continue
                if mode == "trickle":
                    for i in range(len(data)):
                        dst.sendall(data[i:i + 1])
                    continue
                if from_coordinator and mode == "reset" and len(data) > 1:
                    dst.sendall(data[:len(data) // 2])
                    self._rst(src, dst)
                    self.set("pass")
                    return
                if from_coordinator and mode == "corrupt" and len(data) > 10:
                    b = bytearray(data)
                    b[len(b) // 2 + 5 if len(b) > 12 else 8] ^= 0x5A
                    dst.sendall(bytes(b))
                    self.set("pass")
                    continue
                dst.sendall(data)
            except OSError:
                self._rst(src, dst)
                return

    def close(self):
        self.closed = True
        try:
            self.srv.close()
        except OSError:
            pass
        with self.lock:
            for d, u in self.conns:
                self._rst(d, u)


class NetFaultTest(SandboxTestCase):
    # The same query is asked many times on purpose: lift the repeat limit.
    SANDBOX_ARGS = dict(sites=2, seed=11, persons=1500,
                        disclosure={"max_identical": 100000})

    @classmethod
    def prepare(cls):
        sb = cls.sb
        cls.proxy = FaultyProxy(sb.port)
        conf = sb.path("agent-site-a.conf")
        with open(conf) as f:
            text = f.read()
        text = re.sub(r"(?m)^coordinator = .*$",
                      "coordinator = 127.0.0.1:%d" % cls.proxy.port, text)
        with open(conf, "w") as f:
            f.write(text)
        sb.stop("site-a")
        sb.start("site-a")
        sb.wait_online(["site-a", "site-b"], timeout=30)

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "proxy", None):
            cls.proxy.close()
        super().tearDownClass()

    def setUp(self):
        self.proxy.set("pass")
        self.sb.wait_online(["site-a", "site-b"], timeout=30)

    def statuses(self, d):
        return {s["site"]: s["status"] for s in d["sites"]}

    def assert_recovers(self):
        self.proxy.set("pass")
        self.sb.wait_online(["site-a", "site-b"], timeout=40)

        def answered():
            d = self.sb.query(COUNT, timeout=5)
            return self.statuses(d) == {"site-a": "ok", "site-b": "ok"}
        wait_until(answered, 40, interval=1, what="both sites answer again")
        self.assertTrue(self.sb.all_alive(), self.sb.log_tails())

    def test_a_one_byte_writes(self):
        self.proxy.set("trickle")
        d = self.sb.query(COUNT, timeout=20)
        self.assertEqual(self.statuses(d), {"site-a": "ok", "site-b": "ok"})
        self.assertTrue(self.sb.all_alive())

    def test_b_half_open_link_is_detected(self):
        offset = self.sb.log_size("site-a")
        accepted = self.proxy.accepted
        self.proxy.set("hole")
        # Site-b keeps answering while site-a's link is a black hole.
        d = self.sb.query(COUNT, timeout=3)
        st = self.statuses(d)
        self.assertEqual(st["site-b"], "ok")
        self.assertIn(st["site-a"], ("timeout", "offline"))
        # The agent notices the silence (3 heartbeat intervals) and redials.
        wait_until(lambda: "silent" in self.sb.log_since("site-a", offset), 30,
                   what="agent to notice the silent coordinator")
        self.proxy.set("pass")
        wait_until(lambda: self.proxy.accepted > accepted, 30, what="agent to redial")
        self.assert_recovers()

    def test_c_reset_mid_record(self):
        offset = self.sb.log_size("site-a")
        accepted = self.proxy.accepted
        self.proxy.set("reset")
        d = self.sb.query(COUNT, timeout=5)
        self.assertEqual(self.statuses(d)["site-b"], "ok")
        wait_until(lambda: self.proxy.accepted > accepted, 30, what="agent to redial")
        self.assertRegex(self.sb.log_since("site-a", offset), r"link to coordinator (lost|failed)")
        self.assert_recovers()

    def test_d_corrupted_record(self):
        offset = self.sb.log_size("site-a")
        accepted = self.proxy.accepted
        self.proxy.set("corrupt")
        d = self.sb.query(COUNT, timeout=5)
        self.assertEqual(self.statuses(d)["site-b"], "ok")
        wait_until(lambda: self.proxy.accepted > accepted, 30, what="agent to redial")
        log = self.sb.log_since("site-a", offset)
        self.assertRegex(log, r"link to coordinator (lost|failed)")
        self.assert_recovers()

    def test_e_slowloris_handshake(self):
        offset = self.sb.log_size("coordinator")
        s = socket.create_connection(("127.0.0.1", self.sb.port), timeout=5)
        # The first bytes of a TLS ClientHello record, one every 0.5 s.
        hello = bytes.fromhex("16030100c8010000c40303") + os.urandom(200)
        closed_after = None
        t0 = time.monotonic()
        try:
            for i in range(len(hello)):
                # Meanwhile the federation keeps answering.
                if i == 2:
                    d = self.sb.query(COUNT, timeout=10)
                    self.assertEqual(self.statuses(d), {"site-a": "ok", "site-b": "ok"})
                try:
                    s.sendall(hello[i:i + 1])
                except OSError:
                    closed_after = time.monotonic() - t0
                    break
                s.settimeout(0.5)
                try:
                    if s.recv(1) == b"":
                        closed_after = time.monotonic() - t0
                        break
                except socket.timeout:
                    pass
                except OSError:
                    closed_after = time.monotonic() - t0
                    break
                if time.monotonic() - t0 > 60:
                    break
        finally:
            s.close()
        self.assertIsNotNone(closed_after, "the coordinator never dropped the slow handshake")
        wait_until(lambda: "handshake timeout" in self.sb.log_since("coordinator", offset), 10,
                   what="coordinator to log the handshake timeout")
        self.assertTrue(self.sb.all_alive())


if __name__ == "__main__":
    unittest.main()
