"""tests/integration/pgcluster.py — a throw-away PostgreSQL cluster for tests and benchmarks.

PgCluster() runs initdb in a fresh temporary directory and starts the server
with pg_ctl on a Unix socket inside that directory only (listen_addresses is
empty: no TCP port at all). initdb refuses to run as root, so under root (CI)
the server runs as the `postgres` system user through runuser, and the
directory is handed to that user; clients (psql, the agent) connect as the
cluster's superuser `sdefed` with trust authentication, which only that
socket offers. stop() shuts the server down and removes the directory.

Loading OMOP data:
  * load_sqlite(db, sqlite_path): the CDM v5.4 DDL shipped in deploy/omop/,
    then every table the SQLite file and the DDL share, streamed by the
    `sqlite3` shell as CSV into `psql \\copy` (no Python in the data path),
    then the OHDSI indexes and ANALYZE. `max_person` keeps only persons with
    person_id <= N (benchmarks use it to cap disk use).
  * load_csv_dir(db, dir, version): OHDSI CSV exports with a header line
    (GiBleed's csv_clean/) into the CDM 5.3 or 5.4 DDL.

find_bindir() returns the server binaries' directory or None; tests skip
(saying so) only when it is None.
"""

import glob
import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OMOP_DDL_DIR = os.path.join(REPO, "deploy", "omop")
SUPERUSER = "sdefed"


def find_bindir():
    """Directory holding initdb, pg_ctl and postgres, or None."""
    cands = []
    env = os.environ.get("SDEFED_PG_BINDIR")
    if env:
        cands.append(env)
    cands += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                    key=lambda p: [int(x) if x.isdigit() else 0 for x in p.split("/")],
                    reverse=True)
    w = shutil.which("initdb")
    if w:
        cands.append(os.path.dirname(w))
    for d in cands:
        if all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def missing_reason():
    return ("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install the "
            "Debian package 'postgresql' (deploy/deps.sh does) or set SDEFED_PG_BINDIR")


class PgCluster:
    def __init__(self, settings=None, prefix="sdefed-pg-", parent=None):
        self.bindir = find_bindir()
        if self.bindir is None:
            raise RuntimeError(missing_reason())
        self.tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
        self.data = os.path.join(self.tmp, "data")
        self.sock = self.tmp
        self.logfile = os.path.join(self.tmp, "server.log")
        self.port = 5432           # names the socket file only; no TCP listener
        self.settings = {
            "listen_addresses": "''",
            "unix_socket_directories": "'%s'" % self.sock,
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
            "max_connections": "100", "shared_buffers": "128MB",
        }
        self.settings.update(settings or {})
        self.runas = None
        if os.geteuid() == 0:
            self.runas = "postgres"
            try:
                pw = pwd.getpwnam(self.runas)
            except KeyError:
                shutil.rmtree(self.tmp, ignore_errors=True)
                raise RuntimeError("running as root and there is no 'postgres' user to run "
                                   "the PostgreSQL server as")
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            os.chmod(self.tmp, 0o755)
        self.running = False
        self.psql_bin = os.path.join(self.bindir, "psql")
        if not os.access(self.psql_bin, os.X_OK):
            self.psql_bin = shutil.which("psql") or "psql"

    # -- server lifecycle --
    def _server_cmd(self, args):
        if self.runas:
            return ["runuser", "-u", self.runas, "--"] + args
        return args

    def start(self):
        try:
            subprocess.run(self._server_cmd(
                [os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", SUPERUSER,
                 "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]),
                check=True, capture_output=True, text=True, timeout=300)
            opts = " ".join("-c %s=%s" % (k, v) for k, v in self.settings.items())
            p = subprocess.run(self._server_cmd(
                [os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", self.logfile,
                 "-o", opts, "-w", "-t", "60", "start"]),
                capture_output=True, text=True, timeout=120)
            if p.returncode != 0:
                raise RuntimeError("pg_ctl start failed: %s %s\n%s"
                                   % (p.stdout, p.stderr, self.server_log()[-2000:]))
            self.running = True
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self.running:
            subprocess.run(self._server_cmd(
                [os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "fast", "-w",
                 "stop"]), capture_output=True, text=True, timeout=120)
            self.running = False
        if os.environ.get("SDEFED_KEEP_SANDBOX") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def server_log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- clients --
    def conninfo(self, db, user=SUPERUSER):
        return "host=%s port=%d dbname=%s user=%s" % (self.sock, self.port, db, user)

    def psql(self, db, sql=None, file=None, stdin=None, args=(), timeout=3600):
        """Run psql (stop on the first error); returns stdout."""
        cmd = [self.psql_bin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.sock,
               "-p", str(self.port), "-U", SUPERUSER, "-d", db] + list(args)
        if sql is not None:
            cmd += ["-c", sql]
        if file is not None:
            cmd += ["-f", file]
        p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError("psql failed (%d): %s" % (p.returncode, p.stderr.strip()[-2000:]))
        return p.stdout

    def scalar(self, db, sql):
        return self.psql(db, sql, args=["-A", "-t"]).strip()

    def createdb(self, name):
        self.psql("postgres", 'CREATE DATABASE "%s"' % name)

    # -- OMOP --
    def create_cdm(self, db, version="5.4", schema="public"):
        """The OHDSI DDL (placeholder removed) in `schema`."""
        ddl = os.path.join(OMOP_DDL_DIR, "OMOPCDM_postgresql_%s_ddl.sql" % version)
        if schema != "public":
            self.psql(db, 'CREATE SCHEMA "%s"' % schema)
        with open(ddl) as f:
            text = f.read()
        self.psql(db, stdin='SET search_path TO "%s";\n%s' % (schema, text))

    def create_indexes(self, db, version="5.4", schema="public", cluster=False):
        """The OHDSI indexes; CLUSTER statements only when asked (slow)."""
        path = os.path.join(OMOP_DDL_DIR, "OMOPCDM_postgresql_%s_indices.sql" % version)
        with open(path) as f:
            lines = [l for l in f if cluster or not l.lstrip().upper().startswith("CLUSTER")]
        self.psql(db, stdin='SET search_path TO "%s";\n%s\nANALYZE;\n' % (schema, "".join(lines)))

    def pg_columns(self, db, schema, table):
        """{column: max length or 0} of a table (empty if no such table)."""
        out = self.scalar(db, "SELECT string_agg(column_name || ':' || "
                              "coalesce(character_maximum_length, 0), ',' "
                              "ORDER BY ordinal_position) FROM information_schema.columns "
                              "WHERE table_schema = '%s' AND table_name = '%s'" % (schema, table))
        cols = {}
        for item in out.split(","):
            if item:
                name, _, n = item.partition(":")
                cols[name] = int(n)
        return cols

    def load_sqlite(self, db, sqlite_path, schema="public", max_person=None, indexes=True):
        """Copy an OMOP SQLite file (sdefed-synth's or Eunomia's) into db."""
        self.create_cdm(db, "5.4", schema)
        src = sqlite3.connect("file:%s?mode=ro" % sqlite_path, uri=True)
        tables = [r[0] for r in src.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        sqlite_cols = {t: [r[1] for r in src.execute('PRAGMA table_info("%s")' % t)]
                       for t in tables}
        src.close()
        for t in tables:
            pgc = self.pg_columns(db, schema, t)
            if not pgc:
                continue
            cols = [c for c in sqlite_cols[t] if c in pgc]
            where = ""
            if max_person is not None:
                if "person_id" in cols:
                    where = " WHERE person_id <= %d" % int(max_person)
                elif t == "fact_relationship":
                    where = " WHERE 0"
            # Text longer than the PostgreSQL DDL's varchar(n) is cut to fit
            # (SQLite does not enforce lengths).
            exprs = [('substr("%s", 1, %d)' % (c, pgc[c])) if pgc[c] else '"%s"' % c
                     for c in cols]
            self._copy_from_sqlite(db, schema, t, cols, sqlite_path,
                                   "SELECT %s FROM \"%s\"%s" % (",".join(exprs), t, where))
        if indexes:
            self.create_indexes(db, "5.4", schema)

    def _copy_from_sqlite(self, db, schema, table, cols, sqlite_path, select):
        sq = subprocess.Popen(["sqlite3", "-readonly", "-csv", sqlite_path, select],
                              stdout=subprocess.PIPE)
        copy = '\\copy "%s"."%s" (%s) FROM STDIN WITH (FORMAT csv)' % (
            schema, table, ",".join('"%s"' % c for c in cols))
        ps = subprocess.run([self.psql_bin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.sock,
                             "-p", str(self.port), "-U", SUPERUSER, "-d", db, "-c", copy],
                            stdin=sq.stdout, capture_output=True, text=True)
        sq.stdout.close()
        rc = sq.wait()
        if rc != 0 or ps.returncode != 0:
            raise RuntimeError("loading %s failed: sqlite3 exit %d, psql: %s"
                               % (table, rc, ps.stderr.strip()[-1000:]))

    def load_csv_dir(self, db, csv_dir, version="5.3", schema="public"):
        """OHDSI CSV files with a header line (one per table) into db."""
        self.create_cdm(db, version, schema)
        for fn in sorted(os.listdir(csv_dir)):
            if not fn.endswith(".csv"):
                continue
            t = fn[:-4]
            pgc = self.pg_columns(db, schema, t)
            if not pgc:
                continue
            path = os.path.join(csv_dir, fn)
            with open(path, newline="") as f:
                header = f.readline().strip().split(",")
            if header == [""]:
                continue   # an empty table is exported as an empty file
            if not all(h in pgc for h in header):
                raise RuntimeError("%s: columns not in the CDM %s DDL" % (fn, version))
            copy = '\\copy "%s"."%s" (%s) FROM \'%s\' WITH (FORMAT csv, HEADER true)' % (
                schema, t, ",".join('"%s"' % h for h in header), path.replace("'", "''"))
            self.psql(db, copy)
        self.create_indexes(db, version, schema)


def wait_ready(cluster, db="postgres", timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            cluster.scalar(db, "SELECT 1")
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
