"""Integration tests of posternctl against a real PostgreSQL (and Redis for
`who`, `nodes` and `kick`): every command, its --json output and its error
cases.

Environment:
  POSTERN_PG_DSN     libpq connection string of a database we may create
                     schemas in (required; the test is skipped without it,
                     and fails under CI=true)
  POSTERN_BIN_DIR    directory holding posternctl (default: build/storage)
  POSTERN_REDIS_HOST / POSTERN_REDIS_PORT
                     the Redis for `who`, `nodes` and `kick` (tests/run's
                     private one); when
                     unset, a private redis-server is started on a Unix
                     socket

Each run works in its own PostgreSQL schema (via the connection's
search_path) and drops it at the end; psql inspects the results.
Standard library only.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_DSN = os.environ.get("POSTERN_PG_DSN", "")
IN_CI = os.environ.get("CI") == "true"

# Hashes of the password "secret" as other tools write them (the same
# vectors as storage/test-password.c).
SHA512_SECRET = ("$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5k"
                 "nV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1")
BLF_SECRET = "$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a"
ARGON2ID_SECRET = ("$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHQxMjM0$"
                   "JaVF+OWFIF90JPwKDII9e42apmRumQhnFUuDhiAGD+U")


def find_binary():
    bindir = os.environ.get("POSTERN_BIN_DIR")
    candidates = []
    if bindir:
        candidates += [os.path.join(bindir, "posternctl"),
                       os.path.join(bindir, "storage", "posternctl")]
    candidates.append(os.path.join(TOP, "build", "storage", "posternctl"))
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    return None


def dsn_with_schema(dsn, schema):
    """The DSN with search_path set to schema (keyword form or URI)."""
    if dsn.startswith("postgres://") or dsn.startswith("postgresql://"):
        sep = "&" if "?" in dsn else "?"
        return "%s%soptions=-csearch_path%%3D%s" % (dsn, sep, schema)
    return "%s options='-csearch_path=%s'" % (dsn, schema)


def resp_command(sock, *args):
    """Sends one Redis command (RESP) and returns the first reply line."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError("redis closed the connection")
        buf += chunk
    if buf.startswith(b"-"):
        raise OSError(buf.decode().strip())
    return buf


class Redis:
    """A private redis-server on a Unix socket, or the one from the env."""

    def __init__(self):
        self.proc = None
        self.tmp = None
        self.arg = None
        self.path = None
        server = shutil.which("redis-server")
        if os.environ.get("POSTERN_REDIS_HOST"):
            self.host = os.environ["POSTERN_REDIS_HOST"]
            self.port = int(os.environ.get("POSTERN_REDIS_PORT", "6379"))
            self.arg = "%s:%d" % (self.host, self.port)
        elif server:
            self.tmp = tempfile.mkdtemp(prefix="pn-redis-")
            self.path = os.path.join(self.tmp, "redis.sock")
            self.proc = subprocess.Popen(
                [server, "--port", "0", "--unixsocket", self.path, "--save", "",
                 "--appendonly", "no", "--dir", self.tmp],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 10
            while time.time() < deadline:
                if os.path.exists(self.path):
                    try:
                        with self.connect() as s:
                            resp_command(s, "PING")
                        break
                    except OSError:
                        pass
                time.sleep(0.05)
            else:
                self.close()
                raise RuntimeError("redis-server did not start")
            self.arg = self.path

    def connect(self):
        if self.path:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.path)
        else:
            s = socket.create_connection((self.host, self.port))
        s.settimeout(5)
        return s

    def close(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


class CtlTestBase(unittest.TestCase):
    """A private PostgreSQL schema, migrated, and helpers to run posternctl."""

    @classmethod
    def setUpClass(cls):
        if not BASE_DSN:
            if IN_CI:
                raise RuntimeError("POSTERN_PG_DSN is not set")
            raise unittest.SkipTest("POSTERN_PG_DSN is not set")
        cls.bin = find_binary()
        if cls.bin is None:
            raise RuntimeError("posternctl not found (set POSTERN_BIN_DIR or build first)")
        cls.schema = "pn_ctl_%d_%d" % (os.getpid(), int(time.time()))
        subprocess.run(["psql", BASE_DSN, "-q", "-v", "ON_ERROR_STOP=1", "-c",
                        "CREATE SCHEMA %s" % cls.schema], check=True,
                       stdout=subprocess.DEVNULL)
        cls.dsn = dsn_with_schema(BASE_DSN, cls.schema)
        cls.redis = None
        r = subprocess.run([cls.bin, "--pg", cls.dsn, "migrate"], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise RuntimeError("migrate failed: " + r.stderr)

    @classmethod
    def tearDownClass(cls):
        if cls.redis:
            cls.redis.close()
        subprocess.run(["psql", BASE_DSN, "-q", "-c",
                        "DROP SCHEMA IF EXISTS %s CASCADE" % cls.schema],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # ---- helpers ----

    def run_ctl(self, *args, stdin=None, env=None, pg=True):
        e = dict(os.environ)
        for k in ("POSTERN_PG_DSN", "POSTERN_PG_HOST", "POSTERN_PG_PORT", "POSTERN_PG_USER",
                  "POSTERN_PG_DBNAME", "POSTERN_PG_PASSWORD"):
            e.pop(k, None)
        if pg:
            e["POSTERN_PG_DSN"] = self.dsn
        if env:
            e.update(env)
        return subprocess.run([self.bin] + list(args), input=stdin, capture_output=True,
                              text=True, env=e, timeout=60)

    def ok(self, *args, **kw):
        r = self.run_ctl(*args, **kw)
        self.assertEqual(r.returncode, 0, "posternctl %s: %s" % (" ".join(args), r.stderr))
        return r.stdout

    def fails(self, *args, code=1, contains=None, **kw):
        """Asserts the exit code and a one-line error mentioning `contains`."""
        r = self.run_ctl(*args, **kw)
        self.assertEqual(r.returncode, code,
                         "posternctl %s: rc %d, out %r err %r" % (" ".join(args), r.returncode,
                                                                 r.stdout, r.stderr))
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, "error is not one line: %r" % r.stderr)
        self.assertTrue(lines[0].startswith("posternctl: "), lines[0])
        if contains:
            self.assertIn(contains, lines[0])
        return lines[0]

    def sql(self, query):
        r = subprocess.run(["psql", self.dsn, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", query],
                           capture_output=True, text=True, check=True)
        return r.stdout.strip()

    def count(self, query):
        return int(self.sql(query))

    def json_ok(self, *args):
        return json.loads(self.ok(*args))



class PosternctlTest(CtlTestBase):
    # ---- migrate and the command line ----

    def test_migrate_idempotent_and_newer_refused(self):
        self.assertIn("already at version", self.ok("migrate"))
        latest = self.count("SELECT max(version) FROM schema_version")
        self.assertGreaterEqual(latest, 1)
        self.sql("INSERT INTO schema_version (version, name) VALUES (999, '999_future')")
        try:
            self.fails("migrate", contains="newer")
            self.assertEqual(self.count("SELECT max(version) FROM schema_version"), 999)
        finally:
            self.sql("DELETE FROM schema_version WHERE version = 999")
        self.assertIn("version %d" % latest, self.ok("migrate"))

    def test_migrate_fresh_schema(self):
        schema = self.schema + "_fresh"
        subprocess.run(["psql", BASE_DSN, "-q", "-c", "CREATE SCHEMA %s" % schema],
                       check=True, stdout=subprocess.DEVNULL)
        try:
            dsn = dsn_with_schema(BASE_DSN, schema)
            # --pg wins over the environment.
            out = self.ok("--pg", dsn, "migrate", env={"POSTERN_PG_DSN": "host=/nonexistent"})
            self.assertIn("from version 0 to", out)
            out = self.ok("migrate", env={"POSTERN_PG_DSN": dsn}, pg=False)
            self.assertIn("already at version", out)
        finally:
            subprocess.run(["psql", BASE_DSN, "-q", "-c", "DROP SCHEMA %s CASCADE" % schema],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def test_command_line_errors(self):
        r = self.run_ctl("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: posternctl", r.stdout)
        r = self.run_ctl()
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage: posternctl", r.stderr)
        self.fails("frobnicate", code=2, contains="unknown command")
        self.fails("user", "frob", "x@y.z", code=2, contains="unknown command")
        self.fails("tenant", "list", "--frob", code=2, contains="unknown option")
        self.fails("tenant", "add", "x", "--force", code=2, contains="does not apply")
        self.fails("tenant", "add", code=2, contains="wrong number of arguments")
        self.fails("tenant", "add", "a", "b", code=2, contains="wrong number of arguments")
        self.fails("tenant", "add", "x", "--quota", code=2, contains="needs a value")
        self.fails("tenant", "list", "--json=yes", code=2, contains="takes no value")
        self.fails("tenant", "list", "--json", "--json", code=2, contains="twice")
        self.fails("domain", "add", "cl.test", code=2, contains="--tenant is required")

    def test_split_pg_variables(self):
        """Without a DSN, POSTERN_PG_HOST/PORT/USER/DBNAME are used."""
        keys = ("POSTERN_PG_HOST", "POSTERN_PG_PORT", "POSTERN_PG_USER", "POSTERN_PG_DBNAME")
        if not all(os.environ.get(k) for k in keys):
            self.skipTest("tests/run exports the split POSTERN_PG_* variables")
        self.ok("tenant", "add", "split-vars")
        env = {k: os.environ[k] for k in keys}
        env["PGOPTIONS"] = "-csearch_path=%s" % self.schema  # libpq's own variable
        rows = json.loads(self.ok("tenant", "list", "--json", env=env, pg=False))
        self.assertIn("split-vars", [t["name"] for t in rows])
        env["POSTERN_PG_PORT"] = "1"
        self.fails("tenant", "list", env=env, pg=False, contains="PostgreSQL")

    def test_connection_errors(self):
        self.fails("tenant", "list", "--pg", "host=127.0.0.1 port=1 connect_timeout=2",
                   contains="PostgreSQL")
        self.fails("tenant", "list", env={"POSTERN_PG_DSN": "host=/nonexistent-dir"},
                   contains="PostgreSQL")

    # ---- tenants ----

    def test_tenant(self):
        self.assertIn("tenant t-one added", self.ok("tenant", "add", "t-one", "--quota", "10G",
                                                   "--quota-messages", "5000"))
        self.fails("tenant", "add", "T-ONE", contains="already exists")
        self.fails("tenant", "add", "bad name", contains="malformed tenant name")
        self.fails("tenant", "add", "-dash", code=2)  # looks like an option
        self.fails("tenant", "add", ".dot", contains="malformed tenant name")
        self.fails("tenant", "add", "t-two", "--quota", "lots", contains="bad size")
        self.ok("tenant", "add", "t-two")
        rows = {t["name"]: t for t in self.json_ok("tenant", "list", "--json")}
        self.assertEqual(rows["t-one"]["quota_bytes"], 10 << 30)
        self.assertEqual(rows["t-one"]["quota_messages"], 5000)
        self.assertIsNone(rows["t-two"]["quota_bytes"])
        self.assertEqual(rows["t-two"]["domains"], 0)
        text = self.ok("tenant", "list")
        self.assertTrue(text.startswith("TENANT"))
        self.assertIn("t-one", text)
        self.assertIn("10G", text)
        # Removing a tenant with domains needs --force; nothing changes.
        self.ok("domain", "add", "tone.test", "--tenant", "t-one")
        self.ok("user", "add", "u@tone.test", "--password", "pw")
        self.ok("alias", "add", "a@tone.test", "u@tone.test")
        self.fails("tenant", "remove", "t-one", contains="--force")
        self.assertEqual(self.count("SELECT count(*) FROM accounts"
                                    " WHERE address = 'u@tone.test'"), 1)
        self.ok("tenant", "remove", "t-one", "--force")
        self.assertEqual(self.count("SELECT count(*) FROM tenants WHERE name = 't-one'"), 0)
        self.assertEqual(self.count("SELECT count(*) FROM domains WHERE name = 'tone.test'"), 0)
        self.assertEqual(self.count("SELECT count(*) FROM accounts"
                                    " WHERE address = 'u@tone.test'"), 0)
        self.ok("tenant", "remove", "T-TWO")
        self.fails("tenant", "remove", "t-two", contains="unknown tenant")

    # ---- domains ----

    def test_domain(self):
        self.ok("tenant", "add", "dom")
        self.ok("tenant", "add", "dom2")
        self.assertIn("added", self.ok("domain", "add", "Dom.TEST", "--tenant", "dom"))
        self.assertEqual(self.sql("SELECT name FROM domains WHERE name LIKE 'dom.%'"), "dom.test")
        self.fails("domain", "add", "dom.test", "--tenant", "dom2", contains="already exists")
        self.fails("domain", "add", "other.test", "--tenant", "nope", contains="unknown tenant")
        self.fails("domain", "add", "bad..test", "--tenant", "dom", contains="malformed domain")
        self.fails("domain", "add", "bad_x.test", "--tenant", "dom", contains="malformed domain")
        self.ok("domain", "add", "dom2.test", "--tenant", "dom2")
        rows = self.json_ok("domain", "list", "--tenant", "dom", "--json")
        self.assertEqual([d["name"] for d in rows], ["dom.test"])
        self.assertEqual(rows[0]["tenant"], "dom")
        self.assertEqual(rows[0]["accounts"], 0)
        self.fails("domain", "list", "--tenant", "nope", contains="unknown tenant")
        names = [d["name"] for d in self.json_ok("domain", "list", "--json")]
        self.assertIn("dom2.test", names)
        self.assertIn("DOMAIN", self.ok("domain", "list"))
        # A domain with accounts is not removed without --force.
        self.ok("user", "add", "keep@dom.test", "--password", "pw")
        self.ok("alias", "add", "al@dom.test", "keep@dom.test")
        self.fails("domain", "remove", "dom.test", contains="still has 1 account")
        self.assertEqual(self.count("SELECT count(*) FROM accounts"
                                    " WHERE address = 'keep@dom.test'"), 1)
        self.assertEqual(self.json_ok("domain", "list", "--tenant", "dom", "--json")[0]["aliases"], 1)
        # An alias with two destinations is one alias.
        self.ok("user", "add", "keep2@dom.test", "--password", "pw")
        self.ok("alias", "add", "AL@dom.test", "keep2@dom.test")
        self.ok("alias", "add", "two@dom.test", "keep@dom.test", "keep2@dom.test")
        self.assertEqual(self.json_ok("domain", "list", "--tenant", "dom", "--json")[0]["aliases"], 2)
        self.ok("domain", "remove", "DOM.test", "--force")
        self.assertEqual(self.count("SELECT count(*) FROM accounts"
                                    " WHERE address = 'keep@dom.test'"), 0)
        self.assertEqual(self.count("SELECT count(*) FROM aliases WHERE source = 'al@dom.test'"), 0)
        self.assertEqual(self.count("SELECT count(*) FROM domains WHERE name = 'dom.test'"), 0)
        self.fails("domain", "remove", "dom.test", contains="unknown domain")
        self.ok("domain", "remove", "dom2.test")

    # ---- users ----

    def test_user(self):
        self.ok("tenant", "add", "usr")
        self.ok("domain", "add", "usr.test", "--tenant", "usr")
        self.assertIn("added", self.ok("user", "add", "Jane.Doe@USR.test", "--password", "pw1",
                                       "--quota", "1G", "--quota-messages", "100"))
        self.ok("user", "add", "bob@usr.test", "--password-stdin", stdin="stdinpw\n")
        row = self.sql("SELECT address, password_hash, enabled FROM accounts"
                       " WHERE lower(address) = 'jane.doe@usr.test'").split("|")
        self.assertEqual(row[0], "Jane.Doe@usr.test")
        self.assertTrue(row[1].startswith("$y$"), row[1])
        self.assertNotIn("pw1", row[1])
        self.assertEqual(row[2], "t")
        self.assertEqual(self.sql(
            "SELECT string_agg(m.name || ':' || coalesce(m.special_use, ''), ',' ORDER BY m.id)"
            " FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
            " WHERE a.address = 'bob@usr.test'"),
            "INBOX:,Sent:\\Sent,Drafts:\\Drafts,Trash:\\Trash,Junk:\\Junk,Archive:\\Archive")
        # Errors
        self.fails("user", "add", "jane.doe@usr.test", "--password", "x", contains="already exists")
        self.fails("user", "add", "nobody@nowhere.test", "--password", "x",
                   contains="unknown domain")
        for bad in ("plain", "a@@usr.test", "a b@usr.test", ".a@usr.test", "a@usr..test",
                    "\"q\"@usr.test", "x" * 65 + "@usr.test"):
            self.fails("user", "add", bad, "--password", "x", contains="malformed address")
        self.fails("user", "add", "c@usr.test", code=2, contains="--password")
        self.fails("user", "add", "c@usr.test", "--password", "x", "--password-stdin",
                   stdin="y\n", code=2)
        self.fails("user", "add", "c@usr.test", "--password-stdin", stdin="\n",
                   contains="empty password")
        self.fails("user", "add", "c@usr.test", "--password", "x", "--quota", "1X",
                   contains="bad size unit")
        self.assertEqual(self.count("SELECT count(*) FROM accounts WHERE address = 'c@usr.test'"), 0)
        # auth, passwd
        self.assertIn("accepted", self.ok("user", "auth", "JANE.DOE@usr.test", "--password", "pw1"))
        self.fails("user", "auth", "jane.doe@usr.test", "--password", "pw2",
                   contains="wrong password")
        self.ok("user", "auth", "bob@usr.test", "--password-stdin", stdin="stdinpw\n")
        self.ok("user", "passwd", "jane.doe@usr.test", "--password-stdin", stdin="pw2\r\n")
        self.ok("user", "auth", "jane.doe@usr.test", "--password", "pw2")
        self.fails("user", "auth", "jane.doe@usr.test", "--password", "pw1")
        self.fails("user", "passwd", "ghost@usr.test", "--password", "x", contains="unknown account")
        self.fails("user", "auth", "ghost@usr.test", "--password", "x", contains="unknown account")
        # enable / disable
        self.ok("user", "disable", "jane.doe@usr.test")
        self.fails("user", "auth", "jane.doe@usr.test", "--password", "pw2", contains="disabled")
        self.ok("user", "enable", "jane.doe@usr.test")
        self.ok("user", "auth", "jane.doe@usr.test", "--password", "pw2")
        self.fails("user", "disable", "ghost@usr.test", contains="unknown account")
        self.ok("user", "add", "off@usr.test", "--password", "x", "--disabled")
        # quota
        self.ok("user", "quota", "bob@usr.test", "500M", "--messages", "1000")
        self.ok("user", "quota", "jane.doe@usr.test", "unlimited")
        self.fails("user", "quota", "bob@usr.test", "huge", contains="bad size")
        self.fails("user", "quota", "bob@usr.test", "1G", "--messages", "x", contains="bad count")
        self.fails("user", "quota", "ghost@usr.test", "1G", contains="unknown account")
        users = {u["address"]: u for u in self.json_ok("user", "list", "--tenant", "usr", "--json")}
        self.assertEqual(set(users), {"Jane.Doe@usr.test", "bob@usr.test", "off@usr.test"})
        self.assertEqual(users["bob@usr.test"]["quota_bytes"], 500 << 20)
        self.assertEqual(users["bob@usr.test"]["quota_messages"], 1000)
        self.assertIsNone(users["Jane.Doe@usr.test"]["quota_bytes"])
        self.assertEqual(users["Jane.Doe@usr.test"]["quota_messages"], 100)
        self.assertFalse(users["off@usr.test"]["enabled"])
        self.assertEqual(users["bob@usr.test"]["used_bytes"], 0)
        self.assertEqual(users["bob@usr.test"]["tenant"], "usr")
        by_domain = self.json_ok("user", "list", "--domain", "USR.test", "--json")
        self.assertEqual(len(by_domain), 3)
        self.fails("user", "list", "--domain", "nope.test", contains="unknown domain")
        self.fails("user", "list", "--tenant", "nope", contains="unknown tenant")
        text = self.ok("user", "list", "--tenant", "usr")
        self.assertTrue(text.startswith("ADDRESS"))
        self.assertIn("500M", text)
        # remove (with mailboxes and mail)
        self.sql("SELECT deliver_message(sha256('m'::bytea), 1, 'm'::bytea,"
                 " ARRAY[a.id], ARRAY[m.id]) FROM accounts a JOIN mailboxes m"
                 " ON m.account_id = a.id AND m.name = 'INBOX' WHERE a.address = 'bob@usr.test'")
        self.assertEqual(self.json_ok("user", "list", "--domain", "usr.test", "--json")[0]
                         ["used_messages"], 1)
        self.ok("user", "remove", "BOB@usr.test")
        self.assertEqual(self.count("SELECT count(*) FROM accounts WHERE address = 'bob@usr.test'"), 0)
        self.assertEqual(self.count("SELECT count(*) FROM mail_blobs WHERE sha256 = sha256('m')"), 0)
        self.fails("user", "remove", "bob@usr.test", contains="unknown account")
        self.fails("user", "remove", "not-an-address", contains="malformed address")

    # ---- aliases ----

    def test_alias(self):
        self.ok("tenant", "add", "als")
        self.ok("domain", "add", "als.test", "--tenant", "als")
        self.ok("user", "add", "owner@als.test", "--password", "x")
        self.assertIn("added", self.ok("alias", "add", "info@als.test", "owner@als.test",
                                       "someone@Remote.Example"))
        self.ok("alias", "add", "@als.test", "owner@als.test")
        rows = self.json_ok("alias", "list", "--domain", "als.test", "--json")
        self.assertEqual([(r["source"], r["destination"]) for r in rows],
                         [("@als.test", "owner@als.test"),
                          ("info@als.test", "owner@als.test"),
                          ("info@als.test", "someone@remote.example")])
        self.assertEqual(rows[0]["tenant"], "als")
        # Resolution in the database: alias, plus-address, catch-all.
        self.assertEqual(self.sql("SELECT string_agg(address, ',' ORDER BY address)"
                                  " FROM resolve_recipient('info+tag@als.test')"),
                         "owner@als.test,someone@remote.example")
        self.assertEqual(self.sql("SELECT address FROM resolve_recipient('x@als.test')"),
                         "owner@als.test")
        # Errors leave nothing half-done.
        before = self.count("SELECT count(*) FROM aliases")
        self.fails("alias", "add", "sales@als.test", "owner@als.test", "bad address",
                   contains="malformed address")
        self.fails("alias", "add", "sales@als.test", "new@als.test", "someone@remote.example",
                   "new@als.test", contains="already exists")
        self.fails("alias", "add", "info@als.test", "OWNER@als.test", contains="already exists")
        self.fails("alias", "add", "x@unknown.test", "owner@als.test", contains="unknown domain")
        self.fails("alias", "add", "bad@@als.test", "owner@als.test", contains="malformed alias")
        self.fails("alias", "add", "self@als.test", "SELF@als.test", contains="itself")
        self.fails("alias", "add", "only@als.test", code=2)
        self.assertEqual(self.count("SELECT count(*) FROM aliases"), before)
        self.assertIn("SOURCE", self.ok("alias", "list"))
        self.fails("alias", "list", "--tenant", "nope", contains="unknown tenant")
        # remove one destination, then all of a source
        out = self.ok("alias", "remove", "info@als.test", "someone@remote.example")
        self.assertIn("alias info@als.test: removed someone@remote.example", out)
        self.fails("alias", "remove", "info@als.test", "someone@remote.example",
                   contains="no alias")
        self.ok("alias", "remove", "@als.test")
        self.ok("alias", "remove", "INFO@als.test")
        self.fails("alias", "remove", "info@als.test", contains="no alias")
        self.fails("alias", "remove", "not an address", contains="malformed alias")
        self.assertEqual(self.json_ok("alias", "list", "--tenant", "als", "--json"), [])

    # ---- import-passwd ----

    def write_file(self, text):
        fd, path = tempfile.mkstemp(prefix="pn-passwd-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.unlink, path)
        return path

    def test_import_passwd(self):
        self.ok("tenant", "add", "imp")
        self.ok("tenant", "add", "imp-other")
        self.ok("domain", "add", "imp.test", "--tenant", "imp")
        self.ok("domain", "add", "other.test", "--tenant", "imp-other")
        text = ("# Dovecot passwd-file\n"
                "\n"
                "sha@imp.test:{SHA512-CRYPT}%s:1000:1000::/home/sha::"
                "userdb_quota_rule=*:storage=1G userdb_quota_rule2=Trash:storage=+10M\n"
                "blf@imp.test:{BLF-CRYPT}%s:1000:1000::/home/blf::\n"
                "argon@new.test:{ARGON2ID}%s\n"
                "plain@imp.test:{PLAIN}plainpw::::::userdb_quota_rule=*:messages=50\n"
                "bare@new.test:%s\n") % (SHA512_SECRET, BLF_SECRET, ARGON2ID_SECRET,
                                         SHA512_SECRET)
        path = self.write_file(text)
        # new.test is unknown: refused as a whole, naming the line.
        err = self.fails("import-passwd", path, "--tenant", "imp", contains="line 5")
        self.assertIn("unknown domain 'new.test'", err)
        self.assertEqual(self.count("SELECT count(*) FROM accounts WHERE tenant_id ="
                                    " (SELECT id FROM tenants WHERE name = 'imp')"), 0)
        self.fails("import-passwd", path, code=2, contains="--tenant is required")
        self.fails("import-passwd", path, "--tenant", "nope", contains="unknown tenant")
        self.fails("import-passwd", "/nonexistent/file", "--tenant", "imp",
                   contains="No such file")
        out = self.ok("import-passwd", path, "--tenant", "imp", "--create-domains")
        self.assertIn("imported 5 accounts, created 1 domain", out)
        for user, pw in (("sha@imp.test", "secret"), ("blf@imp.test", "secret"),
                         ("argon@new.test", "secret"), ("plain@imp.test", "plainpw"),
                         ("bare@new.test", "secret")):
            self.ok("user", "auth", user, "--password", pw)
            self.fails("user", "auth", user, "--password", "nope", contains="wrong password")
        self.assertTrue(self.sql("SELECT password_hash FROM accounts"
                                 " WHERE address = 'plain@imp.test'").startswith("$y$"))
        self.assertTrue(self.sql("SELECT password_hash FROM accounts"
                                 " WHERE address = 'sha@imp.test'").startswith("{SHA512-CRYPT}$6$"))
        users = {u["address"]: u for u in self.json_ok("user", "list", "--tenant", "imp", "--json")}
        self.assertEqual(users["sha@imp.test"]["quota_bytes"], 1 << 30)
        self.assertEqual(users["plain@imp.test"]["quota_messages"], 50)
        self.assertIsNone(users["blf@imp.test"]["quota_bytes"])
        self.assertEqual(self.sql("SELECT t.name FROM domains d JOIN tenants t"
                                  " ON t.id = d.tenant_id WHERE d.name = 'new.test'"), "imp")
        # Duplicates, other tenants' domains, bad hashes and bad lines: all
        # refused with the line number, nothing imported.
        cases = [
            ("fresh@imp.test:{PLAIN}x\nsha@imp.test:{PLAIN}x\n", "line 2", "already exists"),
            ("fresh@imp.test:{PLAIN}x\nfresh@IMP.test:{PLAIN}y\n", "line 2", "already exists"),
            ("fresh@imp.test:{PLAIN}x\nx@other.test:{PLAIN}x\n", "line 2", "another tenant"),
            ("fresh@imp.test:{MD4}abc\n", "line 1", "unsupported password scheme"),
            ("fresh@imp.test:{SHA512-CRYPT}$2y$05$abc\n", "line 1", "bad password hash"),
            ("fresh@imp.test:\n", "line 1", "no password"),
            ("not-an-address:{PLAIN}x\n", "line 1", "malformed address"),
            ("fresh@imp.test:{PLAIN}x::::::userdb_quota_rule=*:storage=lots\n", "line 1",
             "quota"),
        ]
        for body, where, what in cases:
            err = self.fails("import-passwd", self.write_file(body), "--tenant", "imp",
                             "--create-domains", contains=where)
            self.assertIn(what, err)
            self.assertEqual(self.count("SELECT count(*) FROM accounts"
                                        " WHERE address = 'fresh@imp.test'"), 0)
        # Standard input
        out = self.ok("import-passwd", "-", "--tenant", "imp", stdin="stdin@imp.test:{PLAIN}s\n")
        self.assertIn("imported 1 account,", out)
        self.ok("user", "auth", "stdin@imp.test", "--password", "s")

    # ---- who ----

    def test_who(self):
        if PosternctlTest.redis is None:
            PosternctlTest.redis = Redis()
        redis = PosternctlTest.redis
        if redis.arg is None:
            if IN_CI:
                self.fail("no redis-server and no POSTERN_REDIS_HOST")
            self.skipTest("no redis-server and no POSTERN_REDIS_HOST")
        now = int(time.time())
        with redis.connect() as s:
            resp_command(s, "DEL", "{a:900001}:sessions", "{a:900002}:sessions")
            resp_command(s, "HSET", "{a:900001}:sessions", "fe1/17",
                         "v=1 node=fe1 proto=imap client=192.0.2.10:50123 since=%d seen=%d"
                         " user=who@who.test" % (now - 60, now))
            resp_command(s, "HSET", "{a:900001}:sessions", "fe2/4",
                         "v=1 node=fe2 proto=pop3 client=[2001:db8::5]:4242 since=%d seen=%d"
                         " user=who@who.test" % (now - 30, now))
            resp_command(s, "HSET", "{a:900002}:sessions", "fe9/1",
                         "v=1 node=fe9 proto=imap client=192.0.2.99:1 since=%d seen=%d"
                         " user=gone@who.test" % (now - 9000, now - 8000))
            resp_command(s, "HSET", "{a:900002}:sessions", "fe9/2", "garbage")
            resp_command(s, "EXPIRE", "{a:900001}:sessions", "600")
            resp_command(s, "EXPIRE", "{a:900002}:sessions", "600")
        try:
            r = self.run_ctl("who", "--json", "--redis", redis.arg, pg=False)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("skipped 1 malformed session record", r.stderr)
            mine = [e for e in json.loads(r.stdout) if e["account_id"] in (900001, 900002)]
            self.assertEqual(sorted((e["node"], e["proto"]) for e in mine),
                             [("fe1", "imap"), ("fe2", "pop3")])
            e = [e for e in mine if e["node"] == "fe2"][0]
            self.assertEqual(e["user"], "who@who.test")
            self.assertEqual(e["client"], "[2001:db8::5]:4242")
            self.assertEqual(e["session"], "fe2/4")
            self.assertFalse(e["stale"])
            self.assertEqual(e["since"], time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                       time.gmtime(now - 30)))
            stale = [e for e in json.loads(self.run_ctl("who", "--all", "--json", "--redis",
                                                        redis.arg, pg=False).stdout)
                     if e["account_id"] == 900002]
            self.assertEqual(len(stale), 1)
            self.assertTrue(stale[0]["stale"])
            text = self.run_ctl("who", "--redis", redis.arg, pg=False).stdout
            self.assertTrue(text.startswith("USER"))
            self.assertIn("192.0.2.10:50123", text)
            self.assertNotIn("gone@who.test", text)
            # Settings from the environment
            if redis.path:
                env = {"POSTERN_REDIS_HOST": redis.path}
            else:
                env = {"POSTERN_REDIS_HOST": redis.host, "POSTERN_REDIS_PORT": str(redis.port)}
            r = self.run_ctl("who", "--json", env=env, pg=False)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(any(e["account_id"] == 900001 for e in json.loads(r.stdout)))
        finally:
            with redis.connect() as s:
                resp_command(s, "DEL", "{a:900001}:sessions", "{a:900002}:sessions")
        # Redis not reachable, or a bad setting: one line, exit 1.
        self.fails("who", "--redis", "127.0.0.1:1", pg=False, contains="Redis")
        self.fails("who", "--redis", "127.0.0.1:notaport", pg=False, contains="bad port")
        self.fails("who", pg=False, env={"POSTERN_REDIS_HOST": "127.0.0.1",
                                         "POSTERN_REDIS_PORT": "0"}, contains="POSTERN_REDIS_PORT")
        # who needs no PostgreSQL at all.


def resp_read(f):
    """Reads one RESP2 reply from a buffered socket file: bytes, int, list
    or None."""
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise OSError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [resp_read(f) for _ in range(n)]
    raise OSError("bad RESP reply %r" % line)


class Subscriber:
    """A raw RESP connection SUBSCRIBEd to one channel."""

    def __init__(self, redis, channel):
        self.sock = redis.connect()
        self.file = self.sock.makefile("rb")
        self.sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n"
                          % (len(channel), channel.encode()))
        reply = resp_read(self.file)
        if reply[:2] != [b"subscribe", channel.encode()]:
            raise OSError("unexpected SUBSCRIBE reply %r" % reply)

    def message(self, timeout):
        """The next message's payload, or None after timeout seconds."""
        self.sock.settimeout(timeout)
        try:
            reply = resp_read(self.file)
        except (socket.timeout, TimeoutError):
            return None
        finally:
            self.sock.settimeout(5)
        if reply[0] != b"message":
            raise OSError("unexpected pub/sub reply %r" % reply)
        return reply[2].decode()

    def close(self):
        self.file.close()
        self.sock.close()


class NodesKickTest(CtlTestBase):
    """posternctl nodes and kick over the node and session registries
    (docs/redis-keys.md, "Node registry" and "Kick requests")."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.redis = Redis()
        if cls.redis.arg is None:
            cls.redis.close()
            cls.redis = None
            if IN_CI:
                raise RuntimeError("no redis-server and no POSTERN_REDIS_HOST")
            raise unittest.SkipTest("no redis-server and no POSTERN_REDIS_HOST")
        cls.tag = "n%d" % os.getpid()
        for args in (["tenant", "add", "kick"], ["domain", "add", "kick.test", "--tenant", "kick"]):
            r = subprocess.run([cls.bin, "--pg", cls.dsn] + args, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("posternctl %s: %s" % (" ".join(args), r.stderr))

    def r(self, *args):
        with self.redis.connect() as s:
            f = s.makefile("rb")
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            try:
                return resp_read(f)
            finally:
                f.close()

    def ctl(self, *args, pg=False):
        return self.run_ctl(*(list(args) + ["--redis", self.redis.arg]), pg=pg)

    def beat(self, name, age_ms, ttl_ms=None, role="frontend", addr="10.0.0.1:1143",
             sessions=3, ready=True):
        """Writes a node's registry entry as store_rnode_heartbeat() does, a
        heartbeat age_ms old."""
        now = int(time.time() * 1000) - age_ms
        key = "{nodes}:node:" + name
        fields = ["addr", addr, "version", "0.9.1", "sessions", sessions,
                  "ready", 1 if ready else 0, "seen", now]
        if role:
            fields += ["role", role]
        self.r("DEL", key)
        self.r("HSET", key, *fields)
        if ttl_ms:
            self.r("PEXPIRE", key, ttl_ms)
        self.r("ZADD", "{nodes}:live", now, name)
        self.addCleanup(self.r, "DEL", key)
        self.addCleanup(self.r, "ZREM", "{nodes}:live", name)
        return now

    def mine(self, rows):
        return {e["name"]: e for e in rows if e["name"].startswith(self.tag)}

    # ---- nodes ----

    def test_nodes_json_shape(self):
        seen = self.beat(self.tag + "-a", 1000, ttl_ms=30000)
        self.beat(self.tag + "-b", 2000, role=None, addr="[2001:db8::7]:1143", sessions=0,
                  ready=False)
        r = self.ctl("nodes", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        nodes = self.mine(json.loads(r.stdout))
        self.assertEqual(sorted(nodes), [self.tag + "-a", self.tag + "-b"])
        a = nodes[self.tag + "-a"]
        self.assertEqual(set(a), {"name", "role", "address", "version", "sessions", "ready",
                                  "last_heartbeat", "age_ms", "registered", "stale"})
        self.assertEqual(a["role"], "frontend")
        self.assertEqual(a["address"], "10.0.0.1:1143")
        self.assertEqual(a["version"], "0.9.1")
        self.assertEqual(a["sessions"], 3)
        self.assertIs(a["ready"], True)
        self.assertIs(a["stale"], False)
        self.assertIs(a["registered"], True)
        self.assertTrue(1000 <= a["age_ms"] < 20000, a["age_ms"])
        self.assertEqual(a["last_heartbeat"],
                         time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seen // 1000))
                         + ".%03dZ" % (seen % 1000))
        b = nodes[self.tag + "-b"]
        self.assertIsNone(b["role"])
        self.assertEqual(b["address"], "[2001:db8::7]:1143")
        self.assertEqual(b["sessions"], 0)
        self.assertIs(b["ready"], False)
        # name order
        names = [e["name"] for e in json.loads(r.stdout)]
        self.assertEqual(names, sorted(names))
        # the text table
        text = self.ctl("nodes").stdout
        self.assertTrue(text.startswith("NAME"), text)
        line = [l for l in text.splitlines() if l.startswith(self.tag + "-a ")][0]
        self.assertEqual(line.split()[1:6], ["frontend", "10.0.0.1:1143", "0.9.1", "3", "yes"])
        self.assertEqual(line.split()[-1], "live")
        line = [l for l in text.splitlines() if l.startswith(self.tag + "-b ")][0]
        self.assertEqual(line.split()[1:6], ["-", "[2001:db8::7]:1143", "0.9.1", "0", "no"])

    def test_nodes_stale(self):
        self.beat(self.tag + "-live", 500)
        self.beat(self.tag + "-old", 45000)          # older than the default 30 s
        # hash expired (its own TTL ran out), score still in the set
        gone = self.tag + "-gone"
        self.r("ZADD", "{nodes}:live", int(time.time() * 1000) - 100, gone)
        self.addCleanup(self.r, "ZREM", "{nodes}:live", gone)
        nodes = self.mine(json.loads(self.ctl("nodes", "--json").stdout))
        self.assertEqual(sorted(nodes), [self.tag + "-live"])
        nodes = self.mine(json.loads(self.ctl("nodes", "--all", "--json").stdout))
        self.assertEqual(sorted(nodes), [self.tag + "-gone", self.tag + "-live",
                                         self.tag + "-old"])
        self.assertIs(nodes[self.tag + "-old"]["stale"], True)
        self.assertIs(nodes[self.tag + "-old"]["registered"], True)
        self.assertEqual(nodes[self.tag + "-old"]["address"], "10.0.0.1:1143")
        g = nodes[gone]
        self.assertIs(g["stale"], True)
        self.assertIs(g["registered"], False)
        self.assertIsNone(g["address"])
        self.assertIsNone(g["sessions"])
        # a longer --ttl makes the old heartbeat live again
        nodes = self.mine(json.loads(self.ctl("nodes", "--ttl", "60", "--json").stdout))
        self.assertEqual(sorted(nodes), [self.tag + "-live", self.tag + "-old"])
        text = self.ctl("nodes", "--all").stdout
        self.assertRegex(text, r"(?m)^%s-old .* stale$" % self.tag)
        self.assertNotIn(self.tag + "-old", self.ctl("nodes").stdout)
        self.fails("nodes", "--ttl", "0", "--redis", self.redis.arg, pg=False, code=2,
                   contains="--ttl")
        self.fails("nodes", "--redis", "127.0.0.1:1", pg=False, contains="Redis")

    # ---- kick ----

    def account(self, local):
        address = "%s@kick.test" % local
        self.ok("user", "add", address, "--password", "pw")
        return address, int(self.sql("SELECT id FROM accounts WHERE address = '%s'" % address))

    def session(self, account_id, field, proto, age=0):
        now = int(time.time())
        key = "{a:%d}:sessions" % account_id
        node = field.split("/")[0]
        self.r("HSET", key, field, "v=1 node=%s proto=%s client=192.0.2.1:1 since=%d seen=%d"
               % (node, proto, now - 60 - age, now - age))
        self.r("EXPIRE", key, 600)
        self.addCleanup(self.r, "DEL", key)

    def test_kick_publishes(self):
        address, aid = self.account("busy")
        self.session(aid, "fe1/17", "imap")
        self.session(aid, "fe2/4", "pop3")
        self.session(aid, "fe2/5", "submission")
        self.session(aid, "fe9/1", "imap", age=9000)   # stale: not counted
        sub = Subscriber(self.redis, "{nodes}:kick")
        sub2 = Subscriber(self.redis, "{nodes}:kick")
        try:
            r = self.ctl("kick", address, pg=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout,
                             "kick sent: 3 sessions listed, message received by 2 subscribers\n")
            self.assertEqual(r.stderr, "")
            self.assertEqual(sub.message(5), "v=1 account=%d" % aid)
            self.assertEqual(sub2.message(5), "v=1 account=%d" % aid)
            # --protocol smtp counts submission sessions; --json
            r = self.ctl("kick", address.upper(), "--protocol", "smtp", "--json", pg=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout), {
                "address": address.upper(), "account_id": aid, "protocol": "smtp",
                "session": None, "channel": "{nodes}:kick", "sessions": 1,
                "published": True, "receivers": 2})
            self.assertEqual(sub.message(5), "v=1 account=%d proto=smtp" % aid)
            self.assertEqual(sub2.message(5), "v=1 account=%d proto=smtp" % aid)
            r = self.ctl("kick", address, "--protocol", "imap", "--session", "fe1/17", pg=True)
            self.assertIn("1 session listed", r.stdout)
            self.assertEqual(sub.message(5),
                             "v=1 account=%d proto=imap session=fe1/17" % aid)
            sub2.message(5)
            # no subscriber left: still sent, with a warning
            sub2.close()
            sub.close()
            sub = sub2 = None
            r = self.ctl("kick", address, "--protocol", "pop3", pg=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("received by 0 subscribers", r.stdout)
            self.assertIn("no frontend is subscribed", r.stderr)
        finally:
            for x in (sub, sub2):
                if x is not None:
                    x.close()

    def test_kick_no_sessions(self):
        address, aid = self.account("idle")
        sub = Subscriber(self.redis, "{nodes}:kick")
        try:
            r = self.ctl("kick", address, pg=True)
            self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "no sessions\n", ""))
            # only a stale record, or none of the protocol asked for
            self.session(aid, "fe9/1", "imap", age=9000)
            self.session(aid, "fe1/2", "pop3")
            self.assertEqual(self.ctl("kick", address, "--protocol", "imap", pg=True).stdout,
                             "no sessions\n")
            self.assertEqual(self.ctl("kick", address, "--session", "fe1/3", pg=True).stdout,
                             "no sessions\n")
            out = json.loads(self.ctl("kick", address, "--protocol", "imap", "--json",
                                      pg=True).stdout)
            self.assertEqual((out["sessions"], out["published"], out["receivers"]),
                             (0, False, 0))
            self.assertIsNone(sub.message(0.3), "nothing is published")
        finally:
            sub.close()

    def test_kick_errors(self):
        err = self.fails("kick", "nobody@kick.test", "--redis", self.redis.arg,
                         contains="unknown account")
        self.assertIn("nobody@kick.test", err)
        self.fails("kick", "not an address", "--redis", self.redis.arg,
                   contains="malformed address")
        self.fails("kick", "x@kick.test", "--protocol", "lmtp", code=2, contains="--protocol")
        self.fails("kick", "x@kick.test", "--session", "nonode", code=2, contains="--session")
        self.fails("kick", code=2, contains="wrong number of arguments")
        address, _ = self.account("err")
        self.fails("kick", address, "--redis", "127.0.0.1:1", contains="Redis")


class NodesFrontendTest(unittest.TestCase):
    """posternctl nodes against real postern-frontend processes: a running
    node is listed with its admin address; one that leaves cleanly is gone;
    one killed without goodbye turns stale once its hash expires."""

    @classmethod
    def setUpClass(cls):
        import frontend_support as fs
        cls.fs = fs
        fs.skip_unless_ready(cls)
        cls.tmp = tempfile.mkdtemp(prefix="pn-ctl-fe-")
        cls.store = None
        try:
            cls.store = fs.Store()
        except Exception:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.store is not None:
            cls.store.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def nodes(self, *args):
        r = subprocess.run([self.fs.posternctl_binary(), "nodes", "--json"] + list(args),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return {e["name"]: e for e in json.loads(r.stdout)}

    def test_frontends_in_registry(self):
        tag = "ctl%d" % os.getpid()
        a = self.fs.Frontend(tag + "-a", self.store, folder=self.tmp,
                             services=("pop3",))
        self.addCleanup(a.kill)
        b = self.fs.Frontend(tag + "-b", self.store, folder=self.tmp,
                             services=("pop3",))
        self.addCleanup(b.kill)
        both = self.fs.wait_for(
            lambda: {tag + "-a", tag + "-b"} <= set(self.nodes()) and self.nodes(), 10)
        self.assertTrue(both, "frontends not listed by posternctl nodes")
        n = both[tag + "-a"]
        self.assertEqual(n["address"], "127.0.0.1:%d" % a.admin)
        self.assertIs(n["ready"], True)
        self.assertIs(n["stale"], False)
        self.assertEqual(n["sessions"], 0)
        self.assertTrue(n["version"])
        self.assertLess(n["age_ms"], 5000)
        # a clean stop removes the node from the registry
        self.assertEqual(a.stop(), 0)
        self.assertNotIn(tag + "-a", self.nodes("--all"))
        # SIGKILL: no goodbye; the hash expires after three heartbeats (3 s)
        b.proc.kill()
        b.proc.wait()
        gone = self.fs.wait_for(lambda: tag + "-b" not in self.nodes(), 10)
        self.assertTrue(gone, "a dead node is still listed as live")
        n = self.nodes("--all")[tag + "-b"]
        self.assertIs(n["stale"], True)
        self.assertIs(n["registered"], False)
        port = int(os.environ["POSTERN_REDIS_PORT"])
        with socket.create_connection((os.environ.get("POSTERN_REDIS_HOST", "127.0.0.1"),
                                       port), timeout=5) as s:
            resp_command(s, "ZREM", "{nodes}:live", tag + "-b")


if __name__ == "__main__":
    unittest.main()
