"""tests/integration/sandbox.py — drive a real sdefed federation from tests.

A thin wrapper over deploy/sandbox: bring a federation up in a temporary
directory, run the analyst CLI and parse its JSON, stop/kill/start single
daemons, read their logs, and always tear everything down. Also the
disclosure arithmetic and the protobuf/framing bits the hostile tests need,
so that every test computes expectations the same way.

Environment:
  BUILD               build directory holding bin/ (default: <repo>/build)
  SDEFED_SHARED_DATA  shared data directory (default: <repo>/../shared/data)
  SDEFED_KEEP_SANDBOX=1  keep sandbox directories after the tests (debugging)
"""

import json
import os
import re
import shutil
import socket
import sqlite3
import ssl
import struct
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SANDBOX_SH = os.path.join(REPO, "deploy", "sandbox")
PKI_SH = os.path.join(REPO, "deploy", "pki")
EXAMPLES = os.path.join(REPO, "deploy", "examples")


def build_dir():
    b = os.environ.get("BUILD", "")
    if not b:
        return os.path.join(REPO, "build")
    if os.path.isabs(b):
        return b
    if os.path.isdir(os.path.join(b, "bin")):
        return os.path.abspath(b)
    return os.path.join(REPO, b)


def bin_path(name):
    return os.path.join(build_dir(), "bin", name)


def shared_data_dir():
    d = os.environ.get("SDEFED_SHARED_DATA")
    if d:
        return d
    return os.path.normpath(os.path.join(REPO, "..", "shared", "data"))


def require_binaries(*names):
    """Fail (not skip) loudly when the binaries have not been built."""
    names = names or ("sdefed", "sdefed-agent", "sdefed-coordinator", "sdefed-synth")
    missing = [n for n in names if not os.access(bin_path(n), os.X_OK)]
    if missing:
        raise RuntimeError("not built: %s (run make, or set BUILD)"
                           % ", ".join(bin_path(n) for n in missing))


def wait_until(pred, timeout, interval=0.2, what="condition"):
    """Poll pred() until it returns a true value; return it, or raise
    AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # keep polling; report the last failure
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %ss waiting for %s%s"
                                 % (timeout, what,
                                    " (last error: %r)" % last_exc if last_exc else ""))
        time.sleep(interval)


def synth(out, seed, persons, extra=()):
    """Generate one synthetic OMOP database with sdefed-synth."""
    require_binaries("sdefed-synth")
    p = subprocess.run([bin_path("sdefed-synth"), "--out", out, "--seed", str(seed),
                        "--persons", str(persons), "--force"] + list(extra),
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("sdefed-synth failed (%d): %s" % (p.returncode, p.stderr.strip()))
    return out


# ---- disclosure arithmetic (agent/disclosure/disclosure.h) --------------------

def round_half_up(n, r):
    if r <= 1:
        return n
    return (2 * n + r) // (2 * r) * r


def expected_release(n, min_cell=10, rounding=5, zero_is_disclosive=False):
    """(value, status) the agent must release for a true count n."""
    if n == 0:
        return (None, "suppressed") if zero_is_disclosive else (0, "exact")
    if n < min_cell:
        return (None, "suppressed")
    v = max(round_half_up(n, rounding), rounding) if rounding > 1 else n
    return (v, "rounded" if rounding > 1 else "exact")


def strata_key(strata):
    """A hashable key for a cell's strata object ({"sex":"female"})."""
    return tuple(sorted((strata or {}).items()))


class Sandbox:
    """One federation under a temporary directory. Use as a context manager or
    call up()/down() yourself; down() is safe to call more than once."""

    def __init__(self, sites=None, seed=None, persons=None, site_files=None,
                 min_cell=None, rounding=None, timeout=60, prefix="sdefed-it-",
                 disclosure=None):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.dir = os.path.join(self.tmp, "fed")
        self.args = []
        if sites is not None:
            self.args += ["--sites", str(sites)]
        if seed is not None:
            self.args += ["--seed", str(seed)]
        if persons is not None:
            self.args += ["--persons", str(persons)]
        for name, path in (site_files or {}).items():
            self.args += ["--site", "%s=%s" % (name, path)]
        if min_cell is not None:
            self.args += ["--min-cell", str(min_cell)]
        if rounding is not None:
            self.args += ["--rounding", str(rounding)]
        for k, v in (disclosure or {}).items():
            self.args += ["--disclosure", "%s=%s" % (k, v)]
        self.args += ["--timeout", str(timeout)]
        self.needs_synth = sites is not None or not site_files
        self.env = {}
        self.sites = []
        self.is_up = False

    # -- lifecycle --
    def up(self):
        require_binaries("sdefed", "sdefed-agent", "sdefed-coordinator",
                         *(["sdefed-synth"] if self.needs_synth else []))
        env = dict(os.environ, BUILD=build_dir())
        try:
            p = subprocess.run(["bash", SANDBOX_SH, "up", self.dir] + self.args,
                               capture_output=True, text=True, env=env, timeout=600)
        except BaseException:
            # Interrupted or hung: stop whatever had been started.
            self.is_up = True
            self.down()
            raise
        if p.returncode != 0:
            # sandbox up stops what it started itself; keep its output.
            self.cleanup()
            raise RuntimeError("sandbox up failed (exit %d):\n%s%s"
                               % (p.returncode, p.stdout, p.stderr))
        self.is_up = True
        with open(os.path.join(self.dir, "sandbox.env")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                self.env[k] = v.strip('"')
        self.sites = self.env.get("SITES", "").split()
        self.port = int(self.env["PORT"])
        return self

    def down(self):
        """Stop everything and remove the directory. Returns the sanitizer
        reports (ASan/LSan/UBSan lines) found in the daemons' logs, which
        appear when they exit under `make SANITIZE=...`."""
        reports = []
        if self.is_up and os.path.exists(os.path.join(self.dir, ".sdefed-sandbox")):
            try:
                subprocess.run(["bash", SANDBOX_SH, "down", self.dir],
                               capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, BUILD=build_dir()))
                reports = self.sanitizer_reports()
            finally:
                self.is_up = False
                self.cleanup()
            return reports
        self.is_up = False
        self.cleanup()
        return reports

    SANITIZER_LINE = re.compile(
        r"(AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:)")

    def sanitizer_reports(self):
        found = []
        logs = os.path.join(self.dir, "logs")
        if not os.path.isdir(logs):
            return found
        for name in sorted(os.listdir(logs)):
            with open(os.path.join(logs, name), errors="replace") as f:
                for line in f:
                    if self.SANITIZER_LINE.search(line):
                        found.append("%s: %s" % (name, line.rstrip()))
        return found

    def cleanup(self):
        if os.environ.get("SDEFED_KEEP_SANDBOX") == "1":
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()
        return False

    # -- paths --
    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    @property
    def client_conf(self):
        return self.path("client.conf")

    @property
    def pki(self):
        return self.path("pki")

    def db_path(self, site):
        """The OMOP file a site's agent reads (from its config)."""
        with open(self.path("agent-%s.conf" % site)) as f:
            for line in f:
                if line.strip().startswith("path ="):
                    return line.split("=", 1)[1].strip()
        raise KeyError(site)

    # -- daemons --
    def _sandbox(self, *args, check=True):
        p = subprocess.run(["bash", SANDBOX_SH] + list(args), capture_output=True,
                           text=True, timeout=60, env=dict(os.environ, BUILD=build_dir()))
        if check and p.returncode != 0:
            raise AssertionError("sandbox %s failed (exit %d): %s"
                                 % (" ".join(args), p.returncode, p.stderr.strip()))
        return p

    def start(self, name):
        self._sandbox("start", self.dir, name)

    def stop(self, name, kill=False):
        args = ["stop", self.dir, name] + (["--kill"] if kill else [])
        self._sandbox(*args)

    def pid(self, name):
        try:
            with open(self.path("run", "%s.pid" % name)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def alive(self, name):
        pid = self.pid(name)
        if pid is None:
            return False
        try:
            with open("/proc/%d/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            return state != "Z"
        except OSError:
            return False

    def all_alive(self):
        return all(self.alive(n) for n in ["coordinator"] + self.sites)

    def log(self, name):
        try:
            with open(self.path("logs", "%s.log" % name), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_size(self, name):
        try:
            return os.path.getsize(self.path("logs", "%s.log" % name))
        except OSError:
            return 0

    def log_since(self, name, offset):
        with open(self.path("logs", "%s.log" % name), "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def all_logs(self):
        out = {}
        for fn in sorted(os.listdir(self.path("logs"))):
            with open(self.path("logs", fn), errors="replace") as f:
                out[fn] = f.read()
        return out

    def log_tails(self, n=30):
        parts = []
        for fn, text in self.all_logs().items():
            parts.append("---- %s\n%s" % (fn, "\n".join(text.splitlines()[-n:])))
        return "\n".join(parts)

    # -- the analyst CLI --
    def cli(self, *args, input=None, timeout=120):
        """Run sdefed with this sandbox's client config; CompletedProcess."""
        cmd = [bin_path("sdefed"), "--config", self.client_conf] + [str(a) for a in args]
        return subprocess.run(cmd, input=input, capture_output=True, text=True,
                              timeout=timeout)

    def cli_json(self, *args, input=None, timeout=120):
        p = self.cli(*(list(args) + ["--format", "json"]), input=input, timeout=timeout)
        if p.returncode != 0:
            raise AssertionError("sdefed %s failed (exit %d): %s\n%s"
                                 % (" ".join(map(str, args)), p.returncode,
                                    p.stderr.strip(), self.log_tails()))
        try:
            return json.loads(p.stdout)
        except ValueError as e:
            raise AssertionError("sdefed %s printed invalid JSON (%s): %r"
                                 % (" ".join(map(str, args)), e, p.stdout[:500]))

    def query(self, spec, fmt="json", sites=None, timeout=None, proc_timeout=120):
        """Submit spec (a dict, or a path to a JSON file) via stdin/path.
        Returns the parsed JSON for fmt=json, else the CompletedProcess."""
        args = ["query"]
        inp = None
        if isinstance(spec, dict):
            args.append("-")
            inp = json.dumps(spec)
        else:
            args.append(spec)
        if sites:
            args += ["--sites", ",".join(sites)]
        if timeout is not None:
            args += ["--timeout", str(timeout)]
        if fmt == "json":
            return self.cli_json(*args, input=inp, timeout=proc_timeout)
        return self.cli(*(args + ["--format", fmt]), input=inp, timeout=proc_timeout)

    def query_many(self, specs, timeout=None, workers=1):
        """Run each spec (dicts) with query(); returns the parsed results in
        order. workers > 1 runs that many CLI processes at once (the
        agent then sees the queries in no fixed order)."""
        if workers <= 1:
            return [self.query(s, timeout=timeout) for s in specs]
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=workers) as ex:
            return list(ex.map(lambda s: self.query(s, timeout=timeout), specs))

    def sites_status(self):
        d = self.cli_json("sites")
        return {s["site"]: s for s in d["sites"]}

    def wait_online(self, names, timeout=20):
        names = set(names)

        def ok():
            st = self.sites_status()
            return all(st.get(n, {}).get("online") is True for n in names)
        return wait_until(ok, timeout, what="sites %s online" % sorted(names))

    # -- TLS for hostile tests --
    def tls_context(self, cert=None, key=None, ca=None, tls12_only=False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ca or os.path.join(self.pki, "ca.crt"))
        if cert:
            ctx.load_cert_chain(cert, key)
        if tls12_only:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        else:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        return ctx

    def tls_connect(self, ctx, timeout=10):
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        except BaseException:
            raw.close()
            raise
        return s


# ---- protobuf / framing, by hand (proto/sdefed.proto) ---------------------------

ROLE_AGENT = 1
ROLE_ANALYST = 2
F_HELLO, F_HELLO_ACK, F_ERROR = 10, 11, 15


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_field_varint(field, value):
    return varint(field << 3) + varint(value)


def pb_field_bytes(field, data):
    return varint((field << 3) | 2) + varint(len(data)) + data


def hello_envelope(version=1, role=ROLE_ANALYST):
    body = pb_field_varint(1, version) + pb_field_varint(2, role)
    return pb_field_bytes(F_HELLO, body)


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def read_varint(buf, i):
    shift = n = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def pb_fields(buf):
    """[(field, wiretype, value)] of one message (varint and bytes only)."""
    out = []
    i = 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 2:
            ln, i = read_varint(buf, i)
            v = bytes(buf[i:i + ln])
            if len(v) != ln:
                raise ValueError("truncated field")
            i += ln
        elif wt == 1:
            v = bytes(buf[i:i + 8])
            i += 8
        elif wt == 5:
            v = bytes(buf[i:i + 4])
            i += 4
        else:
            raise ValueError("wire type %d" % wt)
        out.append((field, wt, v))
    return out


def split_frames(data):
    """Complete frames in data (a trailing partial frame is ignored)."""
    frames = []
    i = 0
    while i + 4 <= len(data):
        (ln,) = struct.unpack(">I", data[i:i + 4])
        if i + 4 + ln > len(data):
            break
        frames.append(data[i + 4:i + 4 + ln])
        i += 4 + ln
    return frames


def envelope_bodies(data):
    """{field number: body bytes} for each received envelope, in order."""
    out = []
    for fr in split_frames(data):
        for field, wt, v in pb_fields(fr):
            if field >= 10 and wt == 2:
                out.append((field, v))
    return out


def read_until_closed(sock, timeout=10):
    """Read until the peer closes (or resets) the connection. Returns
    (data, closed): closed is False if it stayed open for `timeout` s."""
    data = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(data), False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return bytes(data), False
        except (ssl.SSLError, ConnectionError, OSError):
            return bytes(data), True
        if not chunk:
            return bytes(data), True
        data += chunk


class SandboxTestCase(unittest.TestCase):
    """A test class sharing one sandbox; subclasses set SANDBOX_ARGS (kwargs
    for Sandbox). tearDownClass always tears it down, and setUpClass does too
    if it fails half-way."""

    SANDBOX_ARGS = {}
    sb = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sb = Sandbox(**cls.SANDBOX_ARGS)
        try:
            cls.sb.up()
            cls.prepare()
        except BaseException:
            cls.sb.down()
            raise

    @classmethod
    def prepare(cls):
        """Hook for subclasses: runs after the sandbox is up."""

    @classmethod
    def tearDownClass(cls):
        reports = cls.sb.down() if cls.sb is not None else []
        super().tearDownClass()
        if reports:
            raise AssertionError("sanitizer reports in daemon logs:\n" +
                                 "\n".join(reports[:40]))


NUM_TOKEN = re.compile(r"(?<![\w.:+-])\d+(?![\w.:+-])")


def numbers_in_line(line):
    """Standalone integers in a line of table output (ignores digits inside
    words, dates, age bands such as 40-49 or 90+)."""
    return [int(t) for t in NUM_TOKEN.findall(line)]


# ---- the result schema (coordinator/cli/output.h) -------------------------------

CELL_STATUSES = {"exact", "rounded", "suppressed", "noised"}
SITE_STATUSES = {"ok", "offline", "timeout", "refused", "error"}


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def result_schema_problems(d, kind="count"):
    """Everything wrong with a `sdefed query --format json` document, as a
    list of strings (empty when it follows coordinator/cli/output.h)."""
    bad = []
    if not isinstance(d, dict):
        return ["top level is not an object"]
    for k in ("query_id", "kind", "project", "sites"):
        if k not in d:
            bad.append("missing %r" % k)
    if not isinstance(d.get("query_id"), str) or not d.get("query_id"):
        bad.append("query_id is not a non-empty string")
    if d.get("kind") != kind:
        bad.append("kind is %r, want %r" % (d.get("kind"), kind))
    if not isinstance(d.get("project"), str):
        bad.append("project is not a string")
    sites = d.get("sites")
    if not isinstance(sites, list):
        return bad + ["sites is not a list"]
    for i, s in enumerate(sites):
        where = "sites[%d]" % i
        if not isinstance(s, dict):
            bad.append(where + " is not an object")
            continue
        if not isinstance(s.get("site"), str) or not s.get("site"):
            bad.append(where + ".site missing")
        if s.get("status") not in SITE_STATUSES:
            bad.append(where + ".status %r" % s.get("status"))
        if not isinstance(s.get("reason", ""), str):
            bad.append(where + ".reason is not a string")
        if s.get("status") != "ok":
            continue
        if kind == "catalog":
            if not isinstance(s.get("datasets"), list):
                bad.append(where + ".datasets is not a list")
            continue
        pol = s.get("policy")
        if not isinstance(pol, dict) or not _is_int(pol.get("min_cell")) \
                or not _is_int(pol.get("rounding")) \
                or not isinstance(pol.get("zero_is_disclosive"), bool):
            bad.append(where + ".policy malformed: %r" % (pol,))
        if not isinstance(s.get("rules_fired"), list) or \
                not all(isinstance(x, str) for x in s.get("rules_fired", [])):
            bad.append(where + ".rules_fired is not a list of strings")
        cells = s.get("cells")
        if not isinstance(cells, list):
            bad.append(where + ".cells is not a list")
            continue
        for j, c in enumerate(cells):
            bad += _cell_problems(c, "%s.cells[%d]" % (where, j), pooled=False)
    if kind == "count":
        pooled = d.get("pooled")
        if not isinstance(pooled, dict) or not isinstance(pooled.get("cells"), list):
            bad.append("pooled.cells missing")
        else:
            for j, c in enumerate(pooled["cells"]):
                bad += _cell_problems(c, "pooled.cells[%d]" % j, pooled=True)
    return bad


def _cell_problems(c, where, pooled):
    bad = []
    if not isinstance(c, dict):
        return [where + " is not an object"]
    st = c.get("strata")
    if not isinstance(st, dict) or not all(isinstance(v, str) for v in st.values()):
        bad.append(where + ".strata is not an object of strings")
    if c.get("status") not in CELL_STATUSES:
        bad.append(where + ".status %r" % c.get("status"))
    if "value" not in c:
        bad.append(where + ".value missing")
    elif c.get("status") == "suppressed":
        if c["value"] is not None:
            bad.append(where + " is suppressed but value is %r" % c["value"])
    elif not _is_int(c["value"]) or c["value"] < 0:
        bad.append(where + ".value %r is not a count" % (c["value"],))
    if pooled and not isinstance(c.get("lower_bound"), bool):
        bad.append(where + ".lower_bound is not a boolean")
    return bad


def pooling_problems(d):
    """Check pooled = sum of released site values per stratum, and
    lower_bound exactly when some ok site suppressed that stratum."""
    bad = []
    released = {}
    suppressed = {}
    for s in d["sites"]:
        if s.get("status") != "ok":
            continue
        for c in s["cells"]:
            k = strata_key(c["strata"])
            released.setdefault(k, [])
            suppressed.setdefault(k, False)
            if c["status"] == "suppressed":
                suppressed[k] = True
            else:
                released[k].append(c["value"])
    pooled = {strata_key(c["strata"]): c for c in d["pooled"]["cells"]}
    for k in released:
        if k not in pooled:
            bad.append("stratum %r present at a site but not pooled" % (k,))
    for k, c in pooled.items():
        if k not in released:
            bad.append("pooled stratum %r comes from no site" % (k,))
            continue
        if released[k]:
            if c["value"] != sum(released[k]):
                bad.append("pooled %r = %r, sites released %r" % (k, c["value"], released[k]))
        elif c["status"] != "suppressed" or c["value"] is not None:
            bad.append("pooled %r has value %r though every site suppressed it"
                       % (k, c["value"]))
        if c["lower_bound"] != suppressed[k]:
            bad.append("pooled %r lower_bound=%r but some-site-suppressed=%r"
                       % (k, c["lower_bound"], suppressed[k]))
    return bad


def all_values(d):
    """Every (where, value) released in a result document (sites and pooled)."""
    out = []
    for s in d.get("sites", []):
        for c in s.get("cells", []) or []:
            out.append((s["site"], c.get("value")))
        for ds in s.get("datasets", []) or []:
            if isinstance(ds, dict) and "person_count" in ds:
                out.append((s["site"] + " catalog", ds["person_count"]))
    for c in (d.get("pooled") or {}).get("cells", []):
        out.append(("pooled", c.get("value")))
    return out


# ---- true counts straight from an OMOP SQLite file ------------------------------

MALE, FEMALE = 8507, 8532

DOMAINS = {
    "condition": ("condition_occurrence", "condition_concept_id", "condition_start_date"),
    "drug": ("drug_exposure", "drug_concept_id", "drug_exposure_start_date"),
    "procedure": ("procedure_occurrence", "procedure_concept_id", "procedure_date"),
    "measurement": ("measurement", "measurement_concept_id", "measurement_date"),
    "visit": ("visit_occurrence", "visit_concept_id", "visit_start_date"),
}


def sex_label(g):
    return {MALE: "male", FEMALE: "female"}.get(g, "unknown")


def age_label(age):
    if age is None or age < 0:
        return "unknown"
    if age >= 90:
        return "90+"
    return "%d-%d" % (age // 10 * 10, age // 10 * 10 + 9)


def true_counts(db_path, criterion, by):
    """{strata_key: true count} for a one-criterion cohort, computed directly:
    persons with an event in the concept set (+ descendants via
    concept_ancestor); age = year of the person's earliest such event minus
    year_of_birth, in 10-year bands."""
    table, col, date_col = DOMAINS[criterion["domain"]]
    con = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
    try:
        concepts = set(criterion["concepts"])
        if criterion.get("descendants"):
            q = "SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id IN (%s)" \
                % ",".join("?" * len(concepts))
            concepts |= {r[0] for r in con.execute(q, sorted(concepts))}
        q = ("SELECT e.person_id, MIN(e.%s), p.gender_concept_id, p.year_of_birth "
             "FROM %s e LEFT JOIN person p ON p.person_id = e.person_id "
             "WHERE e.%s IN (%s) GROUP BY e.person_id"
             % (date_col, table, col, ",".join("?" * len(concepts))))
        out = {}
        for _pid, first, g, yob in con.execute(q, sorted(concepts)):
            strata = {}
            if "sex" in by:
                strata["sex"] = sex_label(g)
            if "age_band" in by:
                age = None
                if first is not None and yob is not None:
                    age = int(str(first)[:4]) - int(yob)
                strata["age_band"] = age_label(age)
            k = strata_key(strata)
            out[k] = out.get(k, 0) + 1
        return out
    finally:
        con.close()


# ---- predictions tables (issue 5; deploy/sandbox --predictions) -----------------

def write_predictions_csv(path, rows, header=("person_id", "score", "label")):
    """Write a predictions CSV for `deploy/sandbox --predictions`: header, then
    rows (sequences in header order). Floats are written with repr(), so the
    agent reads back exactly the doubles the test holds."""
    import csv
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([repr(v) if isinstance(v, float) else v for v in r])
    return path


def add_predictions_args(sb, mapping):
    """Before sb.up(): give sites predictions tables, {site: csv path}; each
    becomes the site's `[dataset preds]` (deploy/sandbox up --predictions)."""
    for site, path in mapping.items():
        sb.args += ["--predictions", "%s=%s" % (site, path)]


def load_predictions(sb, site, path):
    """Into a running sandbox: `deploy/sandbox predictions DIR SITE=FILE`
    (loads the table, declares [dataset preds], waits for the reload)."""
    return sb._sandbox("predictions", sb.dir, "%s=%s" % (site, path))
