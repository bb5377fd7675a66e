"""Helpers for the postern-frontend integration tests (test_frontend.py,
test_pop3.py): a private PostgreSQL schema with a migrated store and test
accounts, message delivery through the schema's deliver_message(), TLS
material made with the openssl CLI, PROXY headers, and frontend processes
started on free loopback ports with the environment contract of
docs/local-cluster.md.

Not a test module (the runner only loads test_*.py); standard library only.
"""

import base64
import hashlib
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest
import uuid

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IN_CI = os.environ.get("CI") == "true"
BASE_DSN = os.environ.get("POSTERN_PG_DSN", "")


def bin_dir():
    return os.environ.get("POSTERN_BIN_DIR") or os.path.join(TOP, "build")


def frontend_binary():
    p = os.path.join(bin_dir(), "frontend", "postern-frontend")
    return p if os.access(p, os.X_OK) else None


def posternctl_binary():
    p = os.path.join(bin_dir(), "storage", "posternctl")
    return p if os.access(p, os.X_OK) else None


def skip_unless_ready(testcase_cls):
    """Raises SkipTest (a failure under CI=true) when something is missing."""
    missing = []
    if not BASE_DSN:
        missing.append("POSTERN_PG_DSN")
    if not os.environ.get("POSTERN_REDIS_PORT"):
        missing.append("POSTERN_REDIS_PORT")
    if frontend_binary() is None:
        missing.append("postern-frontend")
    if posternctl_binary() is None:
        missing.append("posternctl")
    if missing:
        msg = "missing: " + ", ".join(missing)
        if IN_CI:
            raise RuntimeError(msg)
        raise unittest.SkipTest(msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- database

def dsn_with_schema(dsn, schema):
    if dsn.startswith("postgres://") or dsn.startswith("postgresql://"):
        sep = "&" if "?" in dsn else "?"
        return "%s%soptions=-csearch_path%%3D%s" % (dsn, sep, schema)
    return "%s options='-csearch_path=%s'" % (dsn, schema)


class Store:
    """A private schema with the Postern store migrated into it."""

    def __init__(self):
        self.schema = "fe_" + uuid.uuid4().hex[:10]
        self.dsn = dsn_with_schema(BASE_DSN, self.schema)
        self.psql("CREATE SCHEMA %s" % self.schema, dsn=BASE_DSN)
        self.ctl("migrate")
        self.tenant = "t" + uuid.uuid4().hex[:8]
        self.domain = "%s.test" % self.tenant
        self.ctl("tenant", "add", self.tenant)
        self.ctl("domain", "add", self.domain, "--tenant", self.tenant)

    def close(self):
        self.psql("DROP SCHEMA %s CASCADE" % self.schema, dsn=BASE_DSN)

    def ctl(self, *args, password=None):
        argv = [posternctl_binary(), "--pg", self.dsn] + list(args)
        r = subprocess.run(argv, input=password, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("posternctl %s: %s" % (" ".join(args), r.stderr.strip()))
        return r.stdout

    def psql(self, sql, dsn=None):
        r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                            dsn or self.dsn], input=sql + ";\n",
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("psql: %s" % r.stderr.strip())
        return r.stdout.strip()

    def user(self, local, password):
        address = "%s@%s" % (local, self.domain)
        self.ctl("user", "add", address, "--password-stdin", password=password + "\n")
        account = int(self.psql("SELECT id FROM accounts WHERE address = '%s'" % address))
        inbox = int(self.psql("SELECT id FROM mailboxes WHERE account_id = %d AND name = 'INBOX'"
                              % account))
        return address, account, inbox

    def deliver(self, account, inbox, body):
        """Stores body (bytes) in the INBOX with deliver_message(); returns the UID."""
        hexbody = body.hex()
        out = self.psql(
            "SELECT status || ' ' || uid FROM deliver_message("
            "sha256(decode('%s', 'hex')), %d, decode('%s', 'hex'), "
            "ARRAY[%d::bigint], ARRAY[%d::bigint])" % (hexbody, len(body), hexbody, account, inbox))
        status, uid = out.split()
        if status != "ok":
            raise RuntimeError("delivery: %s" % status)
        return int(uid)

    def uids(self, account, inbox):
        out = self.psql("SELECT uid FROM messages WHERE account_id = %d AND mailbox_id = %d "
                        "ORDER BY uid" % (account, inbox))
        return [int(x) for x in out.split()] if out else []

    def uidvalidity(self, account, inbox):
        return int(self.psql("SELECT uidvalidity FROM mailboxes WHERE account_id = %d AND id = %d"
                             % (account, inbox)))

    def flags(self, account, inbox, uid):
        return int(self.psql("SELECT flags FROM messages WHERE account_id = %d AND "
                             "mailbox_id = %d AND uid = %d" % (account, inbox, uid)))


def message(subject, lines=3, extra=b""):
    body = [b"From: sender@example.test", b"To: rcpt@example.test",
            b"Subject: " + subject.encode(), b"Message-ID: <%s@example.test>" % uuid.uuid4().hex.encode(),
            b""]
    for i in range(lines):
        body.append(b"line %d of %s" % (i + 1, subject.encode()))
    body.append(b".a line starting with a dot")
    return b"\r\n".join(body) + b"\r\n" + extra


# -------------------------------------------------------------------- TLS

class Certs:
    """A CA and a server certificate for localhost / 127.0.0.1 (openssl CLI)."""

    def __init__(self, folder, name="server"):
        self.folder = folder
        self.ca_key = os.path.join(folder, "ca.key")
        self.ca = os.path.join(folder, "ca.crt")
        if not os.path.exists(self.ca):
            self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                      "-subj", "/CN=Postern test CA")
        self.make(name)

    def _run(self, *args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)

    def make(self, name):
        """Writes NAME.key / NAME.crt (leaf signed by the CA) and points
        self.key / self.cert at them. Returns the certificate's serial."""
        key = os.path.join(self.folder, name + ".key")
        csr = os.path.join(self.folder, name + ".csr")
        crt = os.path.join(self.folder, name + ".crt")
        ext = os.path.join(self.folder, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                    "extendedKeyUsage=serverAuth\n")
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key, "-out", csr, "-subj", "/CN=%s" % name)
        self._run("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                  "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext)
        self.key, self.cert = key, crt
        return crt

    def client_context(self):
        import ssl
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.check_hostname = True
        return ctx


# ------------------------------------------------------------------ PROXY

PROXY_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(src, sport, dst="127.0.0.1", dport=110):
    return ("PROXY TCP4 %s %s %d %d\r\n" % (src, dst, sport, dport)).encode()


def proxy_v2(src, sport, dst="127.0.0.1", dport=110, tls_version=None):
    """A v2 PROXY header for TCP over IPv4, optionally with an SSL TLV."""
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    tlvs = b""
    if tls_version is not None:
        sub = bytes([0x21]) + struct.pack("!H", len(tls_version)) + tls_version.encode()
        value = bytes([0x01]) + struct.pack("!I", 0) + sub
        tlvs += bytes([0x20]) + struct.pack("!H", len(value)) + value
    body = addrs + tlvs
    return PROXY_V2_SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


# ---------------------------------------------------------------- frontend

LISTENERS = ("imap", "imaps", "pop3", "pop3s", "smtp", "submission", "submissions", "lmtp")


class Frontend:
    """One postern-frontend process on free loopback ports."""

    def __init__(self, name, store, certs=None, services=("pop3", "pop3s"), extra=None,
                 folder=None, args=()):
        self.name = name
        self.args = list(args)  # command line, e.g. ["-c", config_file]
        self.ports = {s: free_port() for s in services}
        self.admin = free_port()
        self.folder = folder or tempfile.mkdtemp(prefix="pn-fe-")
        self.log_path = os.path.join(self.folder, name + ".log")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "POSTERN_NODE": name,
            "POSTERN_LOG_LEVEL": "info",
            "POSTERN_THREADS": "2",
            "POSTERN_AUTH_WORKERS": "2",
            "POSTERN_ADMIN_LISTEN": "127.0.0.1:%d" % self.admin,
            "POSTERN_PG_DSN": store.dsn,
            "POSTERN_REDIS_HOST": os.environ.get("POSTERN_REDIS_HOST", "127.0.0.1"),
            "POSTERN_REDIS_PORT": os.environ.get("POSTERN_REDIS_PORT", "6379"),
            "POSTERN_PROXY_TRUSTED": "127.0.0.2/32",
            "POSTERN_HANDSHAKE_TIMEOUT": "2s",
            "POSTERN_DRAIN_GRACE": "4s",
            "POSTERN_HEARTBEAT_INTERVAL": "1s",
            # Every test logs in from 127.0.0.1 against one shared Redis:
            # failed-login throttling is off unless a test turns it on
            # (test_limits.py), or failures of one module would delay or
            # refuse the logins of the next.
            "POSTERN_AUTH_ADDRESS_DELAY_AFTER": "0",
            "POSTERN_AUTH_ADDRESS_REFUSE_AFTER": "0",
            "POSTERN_AUTH_ACCOUNT_DELAY_AFTER": "0",
            "POSTERN_AUTH_ACCOUNT_REFUSE_AFTER": "0",
            "POSTERN_AUTH_TENANT_DELAY_AFTER": "0",
        }
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        for s in LISTENERS:
            env["POSTERN_%s_LISTEN" % s.upper()] = (
                "127.0.0.1:%d" % self.ports[s] if s in self.ports else "")
        if certs is not None:
            env["POSTERN_TLS_CERT"] = certs.cert
            env["POSTERN_TLS_KEY"] = certs.key
            env["POSTERN_TLS_CA"] = certs.ca
        env.update(extra or {})
        self.env = env
        self.proc = None
        self.logf = None
        try:
            self.start()
        except Exception:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            raise

    def start(self):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([frontend_binary()] + self.args, env=self.env,
                                     stdout=self.logf, stderr=self.logf)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited (%s):\n%s" % (self.name, self.proc.returncode,
                                                            self.log_tail()))
            try:
                if self.http("/healthz")[0] == 200 and all(
                        _accepts(p) for p in self.ports.values()):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("%s did not come up:\n%s" % (self.name, self.log_tail()))

    def http(self, path, timeout=5):
        c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def readyz(self):
        status, body = self.http("/readyz")
        return status, json.loads(body)

    def metric(self, name, **labels):
        """The value of one series from /metrics (0 when absent)."""
        _, text = self.http("/metrics")
        want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            key, _, value = line.rpartition(" ")
            if "{" in key:
                series, _, rest = key.partition("{")
                got = ",".join(sorted(rest.rstrip("}").split(",")))
            else:
                series, got = key, ""
            if series == name and got == want:
                return float(value)
        return 0.0

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        """SIGTERM (if still running) and the exit status."""
        if self.proc is None:
            return None
        try:
            if self.proc.poll() is not None:
                return self.proc.returncode
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("%s did not stop within %ss:\n%s"
                                   % (self.name, timeout, self.log_tail()))
        finally:
            self.logf.close()

    def kill(self):
        """Cleanup after a failed test: SIGKILL if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def connect_from(src, port, timeout=5):
    """A TCP connection to 127.0.0.1:port from source address src."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_line(sock):
    buf = b""
    while not buf.endswith(b"\r\n"):
        c = sock.recv(1)
        if not c:
            break
        buf += c
    return buf


def read_until_closed(sock, limit=65536):
    buf = b""
    try:
        while len(buf) < limit:
            c = sock.recv(4096)
            if not c:
                break
            buf += c
    except (ConnectionResetError, socket.timeout):
        pass
    return buf


def sasl_plain(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def wait_for(pred, timeout, step=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def sha256(b):
    return hashlib.sha256(b).hexdigest()
