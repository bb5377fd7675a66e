"""Integration tests of postern-balancer (L4) in front of stand-in upstreams.

The upstreams are small threaded servers in this process: each listens on
127.0.0.1 (port picked by the kernel), reads and records the PROXY v2
header the balancer sends, greets in its protocol's words with its own
name, and echoes what it receives. A connection whose header says LOCAL
is a health probe: it gets the greeting and a goodbye after LOGOUT/QUIT.
An upstream can be "killed" (listener closed and every connection reset,
as the kernel does for a SIGKILLed process) and started again on the same
port. A stand-in admin server answers /readyz with 200 or 503 draining.

The balancer binary comes from $POSTERN_BIN_DIR/balancer (build/ by
default); every balancer runs with 2 threads on free loopback ports.
Waits are polls with generous bounds; nothing asserts a tight timing.
"""

import base64
import http.server
import imaplib
import json
import poplib
import shutil
import smtplib
import ssl
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

TOP = os.environ.get("POSTERN_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("POSTERN_BIN_DIR") or os.path.join(TOP, "build")
BINARY = os.path.join(BIN_DIR, "balancer", "postern-balancer")

PROTOCOLS = ["imap", "imaps", "pop3", "pop3s", "smtp", "submission", "submissions", "lmtp"]
GREETING = {"imap": b"* OK", "pop3": b"+OK", "smtp": b"220", "submission": b"220",
            "lmtp": b"220", "imaps": b"* OK", "pop3s": b"+OK", "submissions": b"220"}
REFUSAL = {"imap": b"* BYE [UNAVAILABLE] ", "pop3": b"-ERR [SYS/TEMP] ",
           "smtp": b"421 4.3.2 ", "submission": b"421 4.3.2 ", "lmtp": b"421 4.3.2 "}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)


def recv_exact(sock, n):
    out = b""
    while len(out) < n:
        d = sock.recv(n - len(out))
        if not d:
            raise EOFError("closed after %d of %d bytes" % (len(out), n))
        out += d
    return out


def recv_line(sock, limit=4096):
    out = b""
    while not out.endswith(b"\n"):
        d = sock.recv(1)
        if not d:
            return out
        out += d
        if len(out) > limit:
            break
    return out


def recv_all(sock):
    out = b""
    while True:
        d = sock.recv(65536)
        if not d:
            return out
        out += d


UPSTREAM_SCRIPT = r"""
import base64, socket, struct, sys, threading
port, name, proto, proxy = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
login_mode = len(sys.argv) > 5 and sys.argv[5] == "login"
host = sys.argv[6] if len(sys.argv) > 6 else "127.0.0.1"
FAM = proto[:4] if proto[:4] in ("imap", "pop3") else "smtp"
GREET = {"imap": b"* OK", "pop3": b"+OK"}.get(FAM, b"220")
BYE = {"imap": b"* BYE bye", "pop3": b"+OK bye"}.get(FAM, b"221 2.0.0 bye")
out = threading.Lock()
def say(line):
    with out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
class Conn:
    def __init__(self, c):
        self.c, self.buf = c, b""
    def exact(self, n):
        while len(self.buf) < n:
            d = self.c.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        b, self.buf = self.buf[:n], self.buf[n:]
        return b
    def line(self):
        while b"\n" not in self.buf:
            d = self.c.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        i = self.buf.index(b"\n") + 1
        b, self.buf = self.buf[:i], self.buf[i:]
        return b
def tlvs(body):
    info = {}
    while len(body) >= 3:
        t, n = body[0], struct.unpack("!H", body[1:3])[0]
        v, body = body[3:3 + n], body[3 + n:]
        if t == 0x02:
            info["sni"] = v.decode()
        elif t == 0x20:
            sub = v[5:]
            while len(sub) >= 3:
                st, sn = sub[0], struct.unpack("!H", sub[1:3])[0]
                if st == 0x21:
                    info["tls"] = sub[3:3 + sn].decode()
                sub = sub[3 + sn:]
    return info
def astring(k, s):
    # quoted or {n+} literal (what the balancer replays), or an atom
    if s.startswith(b'"'):
        out, i = b"", 1
        while s[i:i + 1] != b'"':
            if s[i:i + 1] == b"\\":
                i += 1
            out += s[i:i + 1]
            i += 1
        return out, s[i + 1:].lstrip(b" ")
    if s.startswith(b"{"):
        n = int(s[1:s.index(b"}")].rstrip(b"+"))
        val = k.exact(n)
        return val, k.line().rstrip(b"\r\n").lstrip(b" ")
    parts = s.split(b" ", 1)
    return parts[0], parts[1] if len(parts) > 1 else b""
def plain(b64):
    z, u, p = base64.b64decode(b64).split(b"\0")
    return (z or u), p
def check(user, pw):
    ok = pw == b"secret"
    say("LOGIN %s %s" % (user.decode(), "ok" if ok else "bad"))
    return ok
def do_login(k):
    if FAM == "imap":
        while True:
            l = k.line().rstrip(b"\r\n")
            tag, cmd, rest = (l.split(b" ", 2) + [b"", b""])[:3]
            if cmd.upper() == b"LOGIN":
                user, rest = astring(k, rest)
                pw, _ = astring(k, rest)
            elif cmd.upper() == b"AUTHENTICATE":
                user, pw = plain(rest.split(b" ")[1])
            else:
                k.c.sendall(tag + b" BAD what\r\n")
                continue
            if check(user, pw):
                k.c.sendall(b"* CAPABILITY IMAP4rev2 " + name.encode() + b"\r\n" + tag +
                            b" OK [CAPABILITY IMAP4rev2] Logged in as " + user + b"\r\n")
                return
            k.c.sendall(tag + b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
    elif FAM == "pop3":
        user = b""
        while True:
            l = k.line().rstrip(b"\r\n")
            cmd, _, arg = l.partition(b" ")
            if cmd.upper() == b"USER":
                user = arg
                k.c.sendall(b"+OK\r\n")
                continue
            if cmd.upper() == b"PASS":
                pw = arg
            elif cmd.upper() == b"AUTH":
                user, pw = plain(arg.split(b" ")[1])
            else:
                k.c.sendall(b"-ERR what\r\n")
                continue
            if check(user, pw):
                k.c.sendall(b"+OK Logged in at " + name.encode() + b".\r\n")
                return
            k.c.sendall(b"-ERR [AUTH] Authentication failed.\r\n")
    else:
        while True:
            l = k.line().rstrip(b"\r\n")
            cmd, _, arg = l.partition(b" ")
            if cmd.upper() == b"EHLO":
                k.c.sendall(b"250-" + name.encode() + b"\r\n250 AUTH PLAIN LOGIN\r\n")
                continue
            if cmd.upper() != b"AUTH":
                k.c.sendall(b"503 5.5.1 what\r\n")
                continue
            user, pw = plain(arg.split(b" ")[1])
            if check(user, pw):
                k.c.sendall(b"235 2.7.0 Authentication successful (" + name.encode() + b")\r\n")
                return
            k.c.sendall(b"535 5.7.8 Authentication credentials invalid\r\n")
def serve(c):
    k = Conn(c)
    try:
        local = False
        if proxy:
            h = k.exact(16)
            if h[:12] != b"\r\n\r\n\x00\r\nQUIT\n":
                c.close()
                return
            body = k.exact(struct.unpack("!H", h[14:16])[0])
            if h[12] & 0xF == 0:
                local = True
                say("LOCAL")
            elif h[13] == 0x11:
                info = tlvs(body[12:])
                say("PROXY %s %d %s %d %s %s" % (socket.inet_ntop(socket.AF_INET, body[0:4]),
                    struct.unpack("!H", body[8:10])[0],
                    socket.inet_ntop(socket.AF_INET, body[4:8]),
                    struct.unpack("!H", body[10:12])[0], info.get("tls", "-"),
                    info.get("sni", "-")))
            else:
                say("PROXY ? 0 ? 0 - -")
        c.sendall(GREET + b" " + name.encode() + b" ready\r\n")
        if local:
            line = k.line()
            if line:
                c.sendall(BYE + b"\r\n")
            c.close()
            return
        if login_mode:
            do_login(k)
        if k.buf:
            c.sendall(k.buf)
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)
        c.close()
    except (OSError, EOFError, ValueError, IndexError):
        pass
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(128)
say("PORT %d" % s.getsockname()[1])
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


class Upstream:
    """A stand-in frontend listener for one protocol, in its own process so
    that kill() is a real SIGKILL (the kernel refuses new connects and
    resets the open ones)."""

    def __init__(self, name, proto="imap", proxy=True, login=False, host="127.0.0.1",
                 port=0):
        self.name = name
        self.host = host
        self.proto = proto
        self.proxy = proxy
        self.login = login         # expect a replayed login before echoing
        self.lock = threading.Lock()
        self.headers = []          # (src, dst) of proxied connections
        self.tls = []              # (TLS version, SNI) from the PROXY TLVs
        self.logins = []           # (user, ok) of replayed logins
        self.probes = 0            # LOCAL connections (health checks)
        self.port = port
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", UPSTREAM_SCRIPT, str(self.port), self.name, self.proto,
             "1" if self.proxy else "0", "login" if self.login else "echo", self.host],
            stdout=subprocess.PIPE)
        first = self.proc.stdout.readline().split()
        assert first and first[0] == b"PORT", first
        self.port = int(first[1])
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc):
        for line in proc.stdout:
            f = line.decode().split()
            with self.lock:
                if f[0] == "LOCAL":
                    self.probes += 1
                elif f[0] == "PROXY":
                    self.headers.append(((f[1], int(f[2])), (f[3], int(f[4]))))
                    self.tls.append((f[5], f[6]))
                elif f[0] == "LOGIN":
                    self.logins.append((f[1], f[2] == "ok"))

    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()

    def pause(self):
        """A hung node: the kernel still accepts, nobody answers."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def proxied(self):
        with self.lock:
            return len(self.headers)


class ReadyServer:
    """A stand-in frontend admin port: /readyz 200, or 503 draining."""

    def __init__(self):
        outer = self
        self.draining = False

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if outer.draining:
                    body = (b'{"status":"not ready","checks":[{"name":"draining",'
                            b'"ok":false,"detail":"the node is shutting down"}]}\n')
                    self.send_response(503)
                else:
                    body = b'{"status":"ready","checks":[]}\n'
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def addr(self):
        return "127.0.0.1:%d" % self.port

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Balancer:
    """A postern-balancer process on free ports."""

    def __init__(self, protos=("imap",), upstreams=None, env=None, config=None):
        self.ports = {p: free_port() for p in protos}
        self.admin_port = free_port()
        e = {k: v for k, v in os.environ.items() if not k.startswith("POSTERN_")}
        e.update({
            "POSTERN_NODE": "balancer-test",
            "POSTERN_ADMIN_LISTEN": "127.0.0.1:%d" % self.admin_port,
            "POSTERN_THREADS": "2",
            "POSTERN_LOG_LEVEL": "info",
        })
        for p in protos:
            e["POSTERN_%s_LISTEN" % p.upper()] = "127.0.0.1:%d" % self.ports[p]
        for p, ups in (upstreams or {}).items():
            e["POSTERN_%s_UPSTREAMS" % p.upper()] = ",".join(ups)
        e.update(env or {})
        self.log = tempfile.NamedTemporaryFile(prefix="balancer-", suffix=".log", delete=False)
        argv = [BINARY]
        if config is not None:
            argv += ["--config", config]
        self.proc = subprocess.Popen(argv, env=e, stdout=self.log, stderr=self.log)
        try:
            wait_for(self._ready, timeout=15, what="the balancer to listen")
        except AssertionError:
            self.stop()
            raise AssertionError("balancer did not start:\n" + self.logtext())

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("balancer exited %s:\n%s" % (self.proc.returncode,
                                                               self.logtext()))
        try:
            for port in list(self.ports.values()):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return self.get("/healthz")[0] == 200
        except OSError:
            return False

    def logtext(self):
        with open(self.log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def get(self, path):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.admin_port, path),
                                        timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def post(self, path):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.admin_port, path),
                                     data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def status(self):
        code, body = self.get("/status")
        assert code == 200, code
        return json.loads(body)

    def backend(self, proto, name):
        for b in self.status()["pools"][proto]:
            if b["backend"] == name:
                return b
        return None

    def connect(self, proto="imap"):
        s = socket.create_connection(("127.0.0.1", self.ports[proto]), timeout=10)
        return s

    def greet(self, proto="imap"):
        """Connects and returns (socket, greeting line)."""
        s = self.connect(proto)
        return s, recv_line(s)

    def stop(self):
        """SIGTERM; a clean exit (0, and nothing from the sanitizers in the
        log of an ASan build) is part of every test."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        text = self.logtext()
        self.log.close()
        os.unlink(self.log.name)
        if self.proc.returncode != 0 or "Sanitizer" in text or "runtime error" in text:
            raise AssertionError("balancer exited %s:\n%s" % (self.proc.returncode, text))


def upstream_name(greeting):
    parts = greeting.split()
    return parts[2].decode() if greeting.startswith(b"* OK") else parts[1].decode()


@unittest.skipUnless(os.access(BINARY, os.X_OK), "postern-balancer not built")
class RelayTest(unittest.TestCase):
    """Byte-exact relaying, PROXY v2 contents, spread, metrics, status."""

    @classmethod
    def setUpClass(cls):
        cls.ups = [Upstream("fe%d" % i) for i in range(1, 4)]
        cls.lb = Balancer(upstreams={"imap": [u.addr() for u in cls.ups]},
                          env={"POSTERN_UPSTREAM_NAMES": "fe1,fe2,fe3"})

    @classmethod
    def tearDownClass(cls):
        cls.lb.stop()
        for u in cls.ups:
            u.kill()

    def test_large_payload_both_ways(self):
        s, greeting = self.lb.greet()
        self.assertTrue(greeting.startswith(b"* OK fe"), greeting)
        payload = random.Random(7).randbytes(6 * 1024 * 1024)
        received = []

        def reader():
            received.append(recv_all(s))

        t = threading.Thread(target=reader)
        t.start()
        view = memoryview(payload)
        for off in range(0, len(payload), 100000):
            s.sendall(view[off:off + 100000])
        # Half-close: the upstream sees the end, echoes the rest, closes;
        # the client then sees the end too.
        s.shutdown(socket.SHUT_WR)
        t.join(60)
        self.assertFalse(t.is_alive())
        s.close()
        self.assertEqual(len(received[0]), len(payload))
        self.assertTrue(received[0] == payload, "payload differs")

    def test_slow_reader_gets_everything(self):
        # The client reads slowly while a lot comes back: backpressure,
        # nothing lost or reordered.
        s, _ = self.lb.greet()
        payload = random.Random(11).randbytes(2 * 1024 * 1024)
        sender = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)))
        sender.start()
        time.sleep(0.5)
        got = b""
        while True:
            d = s.recv(8192)
            if not d:
                break
            got += d
        sender.join(30)
        s.close()
        self.assertEqual(got, payload)

    def test_proxy_v2_carries_client_address(self):
        s = self.lb.connect()
        local = s.getsockname()
        greeting = recv_line(s)
        name = upstream_name(greeting)
        up = next(u for u in self.ups if u.name == name)
        s.sendall(b"a NOOP\r\n")
        self.assertEqual(recv_line(s), b"a NOOP\r\n")
        want = ((local[0], local[1]), ("127.0.0.1", self.lb.ports["imap"]))

        def recorded():
            with up.lock:
                return want in up.headers

        wait_for(recorded, what="the PROXY header %r" % (want,))
        s.close()

    def test_round_robin_spread(self):
        before = {u.name: u.proxied() for u in self.ups}
        n = 30
        for _ in range(n):
            s, greeting = self.lb.greet()
            self.assertTrue(greeting.startswith(b"* OK fe"), greeting)
            s.close()
        wait_for(lambda: sum(u.proxied() - before[u.name] for u in self.ups) == n,
                 what="all connections to arrive")
        for u in self.ups:
            got = u.proxied() - before[u.name]
            # Each thread rotates exactly; two threads: within 2 of n/3.
            self.assertLessEqual(abs(got - n // 3), 2, (u.name, got))

    def test_metrics_and_status(self):
        s, _ = self.lb.greet()
        s.sendall(b"x" * 1000)
        recv_exact(s, 1000)
        code, body = self.lb.get("/metrics")
        self.assertEqual(code, 200)
        text = body.decode()
        for name in ("fe1", "fe2", "fe3"):
            self.assertIn('postern_backend_up{backend="%s",protocol="imap"} 1' % name, text)
        self.assertIn('postern_listener_accepted_total{protocol="imap"}', text)
        self.assertIn('postern_backend_connect_seconds_bucket{backend="fe1",protocol="imap"',
                      text)
        self.assertIn("postern_backend_connections_total", text)
        self.assertIn("postern_backend_bytes_total", text)
        self.assertIn("postern_backend_check_failures_total", text)
        self.assertRegex(text, r"postern_backend_active_connections\{backend=\"fe\d\","
                               r"protocol=\"imap\"\} 1")
        st = self.lb.status()
        self.assertEqual(st["node"], "balancer-test")
        self.assertEqual(st["threads"], 2)
        self.assertEqual([b["backend"] for b in st["pools"]["imap"]], ["fe1", "fe2", "fe3"])
        for b in st["pools"]["imap"]:
            self.assertEqual(b["state"], "up")
            self.assertIn("last_check", b)
        self.assertGreaterEqual(st["connections"], 1)
        self.assertEqual(st["listeners"][0]["protocol"], "imap")
        self.assertGreaterEqual(st["listeners"][0]["accepted"], 1)
        code, page = self.lb.get("/")
        self.assertEqual(code, 200)
        self.assertIn(b"<svg", page)
        for name in (b"fe1", b"fe2", b"fe3"):
            self.assertIn(name, page)
        self.assertNotIn(b"http://", page.replace(b'href="/', b""))  # no external assets
        s.close()
        # Health probes reach the upstreams as PROXY LOCAL connections.
        wait_for(lambda: all(u.probes > 0 for u in self.ups), what="probes")
        self.assertEqual(self.lb.get("/readyz")[0], 200)


def pipes_of(pid):
    """Pipes the process holds open (a spliced direction holds one)."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("pipe:"):
                n += 1
        except OSError:
            pass
    return n


def stream_round(test, s, data):
    """Sends data and reads exactly as much back (the upstream echoes)."""
    got = []
    t = threading.Thread(target=lambda: got.append(recv_exact(s, len(data))))
    t.start()
    s.sendall(data)
    t.join(30)
    test.assertFalse(t.is_alive())
    test.assertTrue(got[0] == data, "echo differs")


@unittest.skipUnless(os.access(BINARY, os.X_OK), "postern-balancer not built")
class SpliceTest(unittest.TestCase):
    """relay_splice: large L4 streams move through a pipe per direction;
    the same bytes, ends and resets as without it."""

    @classmethod
    def setUpClass(cls):
        cls.up = Upstream("fe1")
        cls.on = Balancer(upstreams={"imap": [cls.up.addr()]}, env={"POSTERN_THREADS": "1"})
        cls.off = Balancer(upstreams={"imap": [cls.up.addr()]},
                           env={"POSTERN_THREADS": "1", "POSTERN_RELAY_SPLICE": "no"})

    @classmethod
    def tearDownClass(cls):
        cls.on.stop()
        cls.off.stop()
        cls.up.kill()

    def setUp(self):
        # A test may end with its last connection still closing inside the
        # balancer (and holding its pipes); each test counts pipes from a
        # balancer with no connection.
        for lb in (self.on, self.off):
            wait_for(lambda: lb.status()["connections"] == 0,
                     what="the previous test's connections to end")

    def stream(self, lb, seed):
        """Two large rounds both ways and a half-close on one connection;
        returns how many pipes the balancer held in the middle."""
        before = pipes_of(lb.proc.pid)
        s, greeting = lb.greet()
        self.assertTrue(greeting.startswith(b"* OK fe1"), greeting)
        rnd = random.Random(seed)
        stream_round(self, s, rnd.randbytes(3 * 1024 * 1024))
        during = pipes_of(lb.proc.pid) - before
        # Then the client half-closes after more bytes: the upstream sees
        # the end after every byte, echoes the rest and closes; the client
        # sees that end too.
        tail = rnd.randbytes(3 * 1024 * 1024 + 12345)
        got = []
        t = threading.Thread(target=lambda: got.append(recv_all(s)))
        t.start()
        s.sendall(tail)
        s.shutdown(socket.SHUT_WR)
        t.join(30)
        self.assertFalse(t.is_alive())
        s.close()
        self.assertEqual(len(got[0]), len(tail))
        self.assertTrue(got[0] == tail, "payload differs")
        wait_for(lambda: lb.status()["connections"] == 0, what="the connection to end")
        self.assertEqual(pipes_of(lb.proc.pid), before)
        return during

    def test_splice_on_is_byte_exact_with_half_close(self):
        # Both directions spliced: two pipes of two descriptors each.
        self.assertEqual(self.stream(self.on, 21), 4)

    def test_splice_off_is_byte_exact_with_half_close(self):
        self.assertEqual(self.stream(self.off, 22), 0)

    def test_small_dialogue_is_not_spliced(self):
        before = pipes_of(self.on.proc.pid)
        s, _ = self.on.greet()
        for i in range(20):
            stream_round(self, s, b"a%d NOOP\r\n" % i)
        self.assertEqual(pipes_of(self.on.proc.pid), before)
        s.close()

    def test_client_reset_while_spliced(self):
        before = pipes_of(self.on.proc.pid)
        s, _ = self.on.greet()
        stream_round(self, s, random.Random(23).randbytes(1024 * 1024))
        self.assertEqual(pipes_of(self.on.proc.pid) - before, 4)
        s.sendall(random.Random(24).randbytes(256 * 1024))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        wait_for(lambda: self.on.status()["connections"] == 0, what="the connection to end")
        self.assertEqual(pipes_of(self.on.proc.pid), before)
        # The balancer goes on serving.
        s, greeting = self.on.greet()
        self.assertTrue(greeting.startswith(b"* OK fe1"), greeting)
        stream_round(self, s, random.Random(25).randbytes(100000))
        s.close()

    def test_upstream_reset_while_spliced_resets_client(self):
        up = Upstream("fe9")
        lb = Balancer(upstreams={"imap": [up.addr()]}, env={"POSTERN_THREADS": "1"})
        try:
            s, _ = lb.greet()
            stream_round(self, s, random.Random(26).randbytes(1024 * 1024))
            # Bytes the upstream never reads, then SIGKILL: the kernel
            # resets its connection, and the balancer the client's.
            up.pause()
            s.sendall(random.Random(27).randbytes(256 * 1024))
            time.sleep(0.3)
            up.kill()
            with self.assertRaises(ConnectionResetError):
                s.settimeout(10)
                while s.recv(65536):
                    pass
            s.close()
            wait_for(lambda: lb.status()["connections"] == 0, what="the connection to end")
        finally:
            lb.stop()
            up.kill()


@unittest.skipUnless(os.access(BINARY, os.X_OK), "postern-balancer not built")
class FailoverTest(unittest.TestCase):
    """An upstream killed, restarted, drained."""

    def setUp(self):
        self.ups = [Upstream("fe1"), Upstream("fe2")]
        self.ready = [ReadyServer(), ReadyServer()]
        self.lb = Balancer(upstreams={"imap": [u.addr() for u in self.ups]},
                           env={"POSTERN_UPSTREAM_NAMES": "fe1,fe2",
                                "POSTERN_UPSTREAM_ADMIN": ",".join(r.addr() for r in self.ready),
                                "POSTERN_CHECK_INTERVAL": "200ms",
                                "POSTERN_SLOWSTART": "1s"})

    def tearDown(self):
        self.lb.stop()
        for u in self.ups:
            u.kill()
        for r in self.ready:
            r.close()

    def test_killed_upstream_no_new_connection_fails(self):
        self.ups[0].kill()
        names = []
        for _ in range(20):
            s, greeting = self.lb.greet()
            self.assertTrue(greeting.startswith(b"* OK fe2"), greeting)
            names.append(upstream_name(greeting))
            s.close()
        b = self.lb.backend("imap", "fe1")
        self.assertEqual(b["state"], "down")
        # Out of rotation at once: at most one failed try per thread.
        self.assertLessEqual(b["connect_failures"], 2)
        self.assertGreaterEqual(b["connect_failures"], 1)

    def test_killed_under_open_connections(self):
        socks = []
        for _ in range(6):
            socks.append(self.lb.greet())
        self.ups[0].kill()
        # Sessions on the dead node end; sessions on the live one go on.
        for s, greeting in socks:
            if upstream_name(greeting) == "fe2":
                s.sendall(b"ping\r\n")
                self.assertEqual(recv_line(s), b"ping\r\n")
            else:
                try:
                    self.assertEqual(s.recv(100), b"")
                except ConnectionResetError:
                    pass
            s.close()
        for _ in range(10):
            s, greeting = self.lb.greet()
            self.assertTrue(greeting.startswith(b"* OK fe2"), greeting)
            s.close()

    def test_hung_upstream_leaves_rotation(self):
        # Checks time out (default interval and timeout: out within 2 s; the
        # bound here is generous for loaded machines).
        self.ups[0].pause()
        try:
            wait_for(lambda: self.lb.backend("imap", "fe1")["state"] == "down",
                     timeout=10, what="hung fe1 out of rotation")
            self.assertEqual(self.lb.backend("imap", "fe1")["last_check"], "timeout")
            for _ in range(6):
                s, g = self.lb.greet()
                self.assertEqual(upstream_name(g), "fe2")
                s.close()
        finally:
            self.ups[0].resume()
        wait_for(lambda: self.lb.backend("imap", "fe1")["state"] in ("starting", "up"),
                 timeout=10, what="fe1 back")

    def test_restarted_upstream_comes_back(self):
        self.ups[0].kill()
        s, _ = self.lb.greet()
        s.close()
        wait_for(lambda: self.lb.backend("imap", "fe1")["state"] == "down", what="fe1 down")
        self.ups[0].start()
        wait_for(lambda: self.lb.backend("imap", "fe1")["state"] in ("starting", "up"),
                 timeout=10, what="fe1 back after rise")
        wait_for(lambda: self.lb.backend("imap", "fe1")["state"] == "up",
                 timeout=10, what="fe1 past slow start")
        seen = set()
        for _ in range(8):
            s, greeting = self.lb.greet()
            seen.add(upstream_name(greeting))
            s.close()
        self.assertEqual(seen, {"fe1", "fe2"})

    def test_drain_via_admin_post(self):
        kept, greeting = None, None
        for _ in range(4):
            s, g = self.lb.greet()
            if upstream_name(g) == "fe1" and kept is None:
                kept, greeting = s, g
            else:
                s.close()
        self.assertIsNotNone(kept)
        code, body = self.lb.post("/backends/fe1/drain")
        self.assertEqual(code, 200, body)
        self.assertTrue(json.loads(body)["drained"])
        self.assertEqual(self.lb.backend("imap", "fe1")["state"], "draining")
        for _ in range(10):
            s, g = self.lb.greet()
            self.assertEqual(upstream_name(g), "fe2")
            s.close()
        # The existing session on the drained node goes on.
        kept.sendall(b"a NOOP\r\n")
        self.assertEqual(recv_line(kept), b"a NOOP\r\n")
        kept.close()
        code, body = self.lb.post("/backends/fe1/enable")
        self.assertEqual(code, 200, body)
        seen = set()
        for _ in range(8):
            s, g = self.lb.greet()
            seen.add(upstream_name(g))
            s.close()
        self.assertEqual(seen, {"fe1", "fe2"})
        # Weight, and the errors.
        self.assertEqual(self.lb.post("/backends/fe1/weight?w=5")[0], 200)
        self.assertEqual(next(v["weight"] for v in self.lb.status()["servers"]
                              if v["name"] == "fe1"), 5)
        self.assertEqual(self.lb.post("/backends/fe1/weight?w=0")[0], 400)
        self.assertEqual(self.lb.post("/backends/nope/drain")[0], 404)

    def test_readyz_draining_takes_node_out(self):
        self.ready[0].draining = True
        wait_for(lambda: self.lb.backend("imap", "fe1")["state"] == "draining",
                 what="fe1 draining via /readyz")
        for _ in range(8):
            s, g = self.lb.greet()
            self.assertEqual(upstream_name(g), "fe2")
            s.close()
        self.ready[0].draining = False
        wait_for(lambda: self.lb.backend("imap", "fe1")["state"] in ("up", "starting"),
                 what="fe1 back")


@unittest.skipUnless(os.access(BINARY, os.X_OK), "postern-balancer not built")
class RefusalTest(unittest.TestCase):
    """No healthy upstream: each protocol's own temporary refusal."""

    def test_refusal_per_protocol(self):
        dead = free_port()  # nothing listens there: connection refused
        lb = Balancer(protos=PROTOCOLS,
                      upstreams={p: ["127.0.0.1:%d" % dead] for p in PROTOCOLS})
        try:
            for p in PROTOCOLS:
                s = lb.connect(p)
                data = recv_all(s)
                s.close()
                if p in REFUSAL:
                    self.assertTrue(data.startswith(REFUSAL[p]), (p, data))
                    self.assertTrue(data.endswith(b"\r\n"), (p, data))
                else:
                    # Implicit TLS: a plaintext line means nothing there.
                    self.assertEqual(data, b"", p)
            self.assertEqual(lb.get("/readyz")[0], 503)
            code, body = lb.get("/metrics")
            self.assertRegex(body.decode(), r'postern_listener_refused_total\{protocol="imap",'
                                            r'reason="no_backend"\} [1-9]')
        finally:
            lb.stop()

    def test_empty_pool_refuses(self):
        lb = Balancer(protos=("pop3",), upstreams={})
        try:
            s = lb.connect("pop3")
            self.assertTrue(recv_all(s).startswith(b"-ERR [SYS/TEMP] "))
            s.close()
        finally:
            lb.stop()

    def test_per_source_limit(self):
        up = Upstream("fe1")
        lb = Balancer(upstreams={"imap": [up.addr()]},
                      env={"POSTERN_MAX_CONNECTIONS_PER_SOURCE": "2"})
        try:
            # The readiness probes of Balancer() count until they are gone.
            wait_for(lambda: lb.status()["connections"] == 0, what="probes closed")
            a, ga = lb.greet()
            b, gb = lb.greet()
            self.assertTrue(ga.startswith(b"* OK") and gb.startswith(b"* OK"))
            c = lb.connect()
            self.assertTrue(recv_all(c).startswith(b"* BYE [UNAVAILABLE] Too many"))
            c.close()
            a.close()
            wait_for(lambda: lb.status()["connections"] <= 1, what="a closed")
            d, gd = lb.greet()
            self.assertTrue(gd.startswith(b"* OK"), gd)
            b.close()
            d.close()
        finally:
            lb.stop()
            up.kill()

    def test_rate_per_source(self):
        up = Upstream("fe1")
        lb = Balancer(upstreams={"imap": [up.addr()]},
                      env={"POSTERN_MAX_RATE_PER_SOURCE": "2"})
        try:
            time.sleep(1.5)  # the readiness probes of Balancer() used tokens
            refused = 0
            for _ in range(10):
                s = lb.connect()
                line = recv_line(s)
                s.close()
                if line.startswith(b"* BYE [UNAVAILABLE] Too many"):
                    refused += 1
                else:
                    self.assertTrue(line.startswith(b"* OK fe1"), line)
            # A burst of 2 (plus what refills meanwhile) gets through.
            self.assertGreaterEqual(refused, 1)
            self.assertLessEqual(refused, 8)
            _, body = lb.get("/metrics")
            self.assertRegex(body.decode(), r'postern_listener_refused_total\{protocol="imap",'
                                            r'reason="limit_rate"\} [1-9]')
        finally:
            lb.stop()
            up.kill()

    def test_connect_timeout_fails_over(self):
        # A listener whose accept queue is full drops SYNs: connects hang.
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        fillers = []
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(hole.getsockname())
            except BlockingIOError:
                pass
            fillers.append(f)
        up = Upstream("live")
        lb = Balancer(upstreams={"imap": ["127.0.0.1:%d" % hole.getsockname()[1], up.addr()]},
                      env={"POSTERN_UPSTREAM_NAMES": "hole,live",
                           "POSTERN_CONNECT_TIMEOUT": "300ms", "POSTERN_CHECK_PROBE": "no"})
        try:
            for _ in range(4):
                s, g = lb.greet()
                self.assertTrue(g.startswith(b"* OK live"), g)
                s.close()
            b = lb.backend("imap", "hole")
            self.assertEqual(b["state"], "down")
            self.assertGreaterEqual(b["connect_failures"], 1)
        finally:
            lb.stop()
            up.kill()
            for f in fillers:
                f.close()
            hole.close()

    def test_idle_timeout(self):
        up = Upstream("fe1")
        lb = Balancer(upstreams={"imap": [up.addr()]}, env={"POSTERN_IDLE_TIMEOUT": "1s"})
        try:
            s, g = lb.greet()
            self.assertTrue(g.startswith(b"* OK"))
            s.settimeout(15)
            self.assertEqual(s.recv(100), b"")  # closed by the balancer
            s.close()
            wait_for(lambda: lb.status()["connections"] == 0, what="the close")
        finally:
            lb.stop()
            up.kill()


@unittest.skipUnless(os.access(BINARY, os.X_OK), "postern-balancer not built")
class SignalTest(unittest.TestCase):
    """SIGHUP reload without dropping connections; SIGTERM drain."""

    def test_sighup_reload(self):
        a, b = Upstream("fa"), Upstream("fb")
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("imap_upstreams = %s\nupstream_names = fa\n" % a.addr())
            path = f.name
        lb = Balancer(config=path)
        try:
            kept, g = lb.greet()
            self.assertEqual(upstream_name(g), "fa")
            with open(path, "w") as f:
                f.write("imap_upstreams = %s\nupstream_names = fb\n" % b.addr())
            lb.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: [x["backend"] for x in lb.status()["pools"]["imap"]] == ["fb"],
                     what="the reload")
            for _ in range(5):
                s, g = lb.greet()
                self.assertEqual(upstream_name(g), "fb")
                s.close()
            kept.sendall(b"still here\r\n")
            self.assertEqual(recv_line(kept), b"still here\r\n")
            kept.close()
            # A broken file keeps the running configuration.
            with open(path, "w") as f:
                f.write("imap_upstreams = not-an-address\n")
            lb.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: lb.status()["reload_failures"] == 1, what="failed reload")
            s, g = lb.greet()
            self.assertEqual(upstream_name(g), "fb")
            s.close()
        finally:
            lb.stop()
            a.kill()
            b.kill()
            os.unlink(path)

    def test_sighup_under_load_drops_nothing(self):
        a, b, c = Upstream("fa"), Upstream("fb"), Upstream("fb")
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            path = f.name

        def write(second):
            with open(path + ".new", "w") as f:
                f.write("imap_upstreams = %s, %s\nupstream_names = fa, fb\n"
                        % (a.addr(), second.addr()))
            os.replace(path + ".new", path)

        write(b)
        lb = Balancer(config=path)
        errors, done = [], []

        def client():
            try:
                for _ in range(25):
                    s, g = lb.greet()
                    if not g.startswith(b"* OK f"):
                        errors.append(g)
                    s.sendall(b"x" * 5000)
                    recv_exact(s, 5000)
                    s.close()
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
            done.append(1)

        try:
            threads = [threading.Thread(target=client) for _ in range(4)]
            for t in threads:
                t.start()
            n = 0
            while len(done) < len(threads):
                write(c if n % 2 == 0 else b)  # fb moves: a backend retired each time
                lb.proc.send_signal(signal.SIGHUP)
                n += 1
                time.sleep(0.02)
            for t in threads:
                t.join()
            self.assertEqual(errors, [])
            # (Signals sent close together may merge into one reload.)
            self.assertGreaterEqual(n, 1)
            wait_for(lambda: lb.status()["reloads"] >= 1, what="reloads")
            self.assertEqual(lb.status()["reload_failures"], 0)
        finally:
            lb.stop()
            for u in (a, b, c):
                u.kill()
            os.unlink(path)

    def test_sigterm_lets_connections_finish(self):
        up = Upstream("fe1")
        lb = Balancer(upstreams={"imap": [up.addr()]}, env={"POSTERN_SHUTDOWN_GRACE": "20s"})
        try:
            s, _ = lb.greet()
            lb.proc.send_signal(signal.SIGTERM)

            def refused():
                try:
                    socket.create_connection(("127.0.0.1", lb.ports["imap"]), timeout=1).close()
                    return False
                except OSError:
                    return True

            wait_for(refused, what="the listener to close")
            self.assertEqual(lb.get("/readyz")[0], 503)
            s.sendall(b"a NOOP\r\n")
            self.assertEqual(recv_line(s), b"a NOOP\r\n")
            self.assertIsNone(lb.proc.poll())
            s.close()
            self.assertEqual(lb.proc.wait(timeout=10), 0)
        finally:
            lb.stop()
            up.kill()


def make_cert(folder, name="localhost"):
    """A self-signed certificate for name (and 127.0.0.1), openssl CLI."""
    cert, key = os.path.join(folder, name + ".crt"), os.path.join(folder, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=" + name,
                    "-addext", "subjectAltName=DNS:%s,IP:127.0.0.1" % name],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


@unittest.skipUnless(os.access(BINARY, os.X_OK) and shutil.which("openssl"),
                     "postern-balancer or openssl missing")
class L7Test(unittest.TestCase):
    """L7: TLS and STARTTLS at the balancer, our own dialogue up to the
    login, routing by user, the login replayed, the answer passed on."""

    PROTOS = ("imap", "imaps", "pop3", "pop3s", "submission", "submissions")

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="lb-l7-")
        cls.cert, cls.key = make_cert(cls.tmp)
        cls.ctx = ssl.create_default_context(cafile=cls.cert)
        # A tenant's certificate, chosen by SNI: chain and key in one file.
        tcert, tkey = make_cert(cls.tmp, "tenant.test")
        cls.tenant_pem = os.path.join(cls.tmp, "tenant.pem")
        with open(cls.tenant_pem, "w") as out:
            for part in (tcert, tkey):
                with open(part) as f:
                    out.write(f.read())
        cls.tenant_ctx = ssl.create_default_context(cafile=tcert)
        cls.ups = {p: [Upstream("fe%d" % i, proto=p, login=True) for i in (1, 2, 3)]
                   for p in cls.PROTOS}
        cls.lb = Balancer(protos=cls.PROTOS,
                          upstreams={p: [u.addr() for u in ups] for p, ups in cls.ups.items()},
                          env={"POSTERN_L7": ",".join(cls.PROTOS),
                               "POSTERN_TLS_CERT": cls.cert, "POSTERN_TLS_KEY": cls.key,
                               "POSTERN_UPSTREAM_NAMES": "fe1,fe2,fe3",
                               "POSTERN_SMTP_SIZE": "10M",
                               "POSTERN_TLS_SNI": "tenant.test=" + cls.tenant_pem})

    @classmethod
    def tearDownClass(cls):
        cls.lb.stop()
        for ups in cls.ups.values():
            for u in ups:
                u.kill()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def tls_connect(self, proto):
        raw = self.lb.connect(proto)
        return self.ctx.wrap_socket(raw, server_hostname="localhost")

    def reported(self, proto, user):
        """How many logins of user the upstreams have reported so far."""
        n = 0
        for u in self.ups[proto]:
            with u.lock:
                n += sum(1 for x in u.logins if x[0] == user)
        return n

    def who(self, proto, user):
        """Names of the upstreams that saw a login of user."""
        names = set()
        for u in self.ups[proto]:
            with u.lock:
                if any(x[0] == user for x in u.logins):
                    names.add(u.name)
        return names

    def test_imaps_login_relay_and_proxy_tlvs(self):
        s = self.tls_connect("imaps")
        greeting = recv_line(s)
        self.assertTrue(greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 "), greeting)
        self.assertIn(b"AUTH=PLAIN", greeting)
        self.assertIn(b"balancer-test Postern ready", greeting)
        s.sendall(b"a1 CAPABILITY\r\n")
        self.assertTrue(recv_line(s).startswith(b"* CAPABILITY "))
        self.assertEqual(recv_line(s), b"a1 OK CAPABILITY completed.\r\n")
        s.sendall(b"a2 LOGIN carol@example.test secret\r\n")
        untagged = recv_line(s)
        self.assertTrue(untagged.startswith(b"* CAPABILITY IMAP4rev2 fe"), untagged)
        self.assertEqual(recv_line(s),
                         b"a2 OK [CAPABILITY IMAP4rev2] Logged in as carol@example.test\r\n")
        # From here on bytes are relayed (the stand-in echoes).
        s.sendall(b"a3 NOOP\r\n")
        self.assertEqual(recv_line(s), b"a3 NOOP\r\n")
        s.close()
        name = untagged.split()[3].decode()
        up = next(u for u in self.ups["imaps"] if u.name == name)

        def seen():
            # The stand-in's lines are read by a thread of ours, which may
            # lag behind on a busy machine.
            with up.lock:
                return list(up.tls)
        tls = wait_for(seen, what="the PROXY header's TLS facts")
        self.assertIn(tls[-1][0], ("TLSv1.3", "TLSv1.2"))
        self.assertEqual(tls[-1][1], "localhost")

    def test_sni_selects_tenant_certificate(self):
        s = self.tenant_ctx.wrap_socket(self.lb.connect("imaps"), server_hostname="tenant.test")
        subject = dict(x[0] for x in s.getpeercert()["subject"])
        self.assertEqual(subject["commonName"], "tenant.test")
        self.assertTrue(recv_line(s).startswith(b"* OK "))
        s.close()
        # Another name gets the default certificate.
        s = self.ctx.wrap_socket(self.lb.connect("imaps"), server_hostname="localhost")
        self.assertEqual(dict(x[0] for x in s.getpeercert()["subject"])["commonName"],
                         "localhost")
        s.close()
        modes = {x["protocol"]: x["mode"] for x in self.lb.status()["listeners"]}
        self.assertEqual(modes["imaps"], "l7")

    def test_imap_starttls_with_imaplib(self):
        c = imaplib.IMAP4("127.0.0.1", self.lb.ports["imap"])
        try:
            self.assertIn("STARTTLS", c.capabilities)
            self.assertIn("LOGINDISABLED", c.capabilities)
            with self.assertRaises(imaplib.IMAP4.error):
                c.login("dave@example.test", "secret")  # before TLS: refused
            c.starttls(ssl_context=self.ctx)
            typ, data = c.login("dave@example.test", "secret")
            self.assertEqual(typ, "OK")
            self.assertIn(b"Logged in as dave@example.test", data[0])
        finally:
            c.shutdown()
        # the stand-in reports logins on its stdout, read by a thread
        wait_for(lambda: len(self.who("imap", "dave@example.test")) >= 1, timeout=5,
                 what="the upstream reporting the login")
        self.assertEqual(len(self.who("imap", "dave@example.test")), 1)

    def test_failed_login_reads_as_the_frontend_wrote_it(self):
        _, before = self.lb.get("/metrics")
        s = self.tls_connect("imaps")
        recv_line(s)
        s.sendall(b"x LOGIN erin@example.test wrong\r\n")
        self.assertEqual(recv_line(s), b"x NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
        # A second try on the same connection goes to the same frontend.
        s.sendall(b"y LOGIN erin@example.test secret\r\n")
        recv_line(s)
        self.assertEqual(recv_line(s),
                         b"y OK [CAPABILITY IMAP4rev2] Logged in as erin@example.test\r\n")
        s.close()
        # (The stand-in reports logins through a pipe: wait for it.)
        wait_for(lambda: len(self.who("imaps", "erin@example.test")) >= 1, timeout=5,
                 what="the login reports")
        self.assertEqual(len(self.who("imaps", "erin@example.test")), 1)
        _, after = self.lb.get("/metrics")
        count = lambda t: int(re.search(  # noqa: E731
            rb'postern_listener_login_failures_total\{protocol="imaps"\} (\d+)', t).group(1))
        self.assertEqual(count(after) - count(before), 1)
        self.assertRegex(after.decode(),
                         r'postern_listener_tls_handshakes_total\{protocol="imaps"\} [1-9]')

    def test_same_user_same_frontend_users_spread(self):
        for _ in range(6):
            s = self.tls_connect("imaps")
            recv_line(s)
            s.sendall(b"a AUTHENTICATE PLAIN " +
                      base64.b64encode(b"\0frank@example.test\0secret") + b"\r\n")
            recv_line(s)
            self.assertTrue(recv_line(s).startswith(b"a OK "))
            s.close()
        # the stand-in reports logins on its stdout, read by a thread
        wait_for(lambda: self.reported("imaps", "frank@example.test") >= 6, timeout=5,
                 what="the upstream reporting the login")
        self.assertEqual(len(self.who("imaps", "frank@example.test")), 1)
        used = set()
        for i in range(24):
            user = "user%d@example.test" % i
            s = self.tls_connect("imaps")
            recv_line(s)
            s.sendall(("a LOGIN %s secret\r\n" % user).encode())
            recv_line(s)
            recv_line(s)
            s.close()
        for i in range(24):
            user = "user%d@example.test" % i
            wait_for(lambda: self.reported("imaps", user) >= 1, timeout=5,
                     what="the upstream reporting the login")
            used |= self.who("imaps", user)
        self.assertGreaterEqual(len(used), 2)

    def test_pop3_with_poplib(self):
        c = poplib.POP3_SSL("127.0.0.1", self.lb.ports["pop3s"], context=self.ctx)
        self.assertIn(b"balancer-test Postern ready", c.getwelcome())
        c.user("gina@example.test")
        self.assertTrue(c.pass_("secret").startswith(b"+OK Logged in at fe"))
        c.sock.close()
        c = poplib.POP3("127.0.0.1", self.lb.ports["pop3"])
        self.assertIn("STLS", c.capa())
        c.stls(context=self.ctx)
        c.user("gina@example.test")
        with self.assertRaises(poplib.error_proto) as e:
            c.pass_("wrong")
        self.assertIn(b"[AUTH] Authentication failed.", e.exception.args[0])
        c.sock.close()
        # the stand-in reports logins on its stdout, read by a thread
        wait_for(lambda: len(self.who("pop3", "gina@example.test")) >= 1, timeout=5,
                 what="the upstream reporting the login")
        self.assertEqual(len(self.who("pop3", "gina@example.test")), 1)

    def test_submission_with_smtplib(self):
        c = smtplib.SMTP("127.0.0.1", self.lb.ports["submission"], timeout=10)
        try:
            c.ehlo("client.example")
            self.assertTrue(c.has_extn("starttls"))
            self.assertFalse(c.has_extn("auth"))
            self.assertEqual(c.esmtp_features.get("size"), str(10 * 1024 * 1024))
            c.starttls(context=self.ctx)
            c.ehlo("client.example")
            self.assertTrue(c.has_extn("auth"))
            code, text = c.login("hugo@example.test", "secret")
            self.assertEqual(code, 235)
            self.assertIn(b"Authentication successful (fe", text)
        finally:
            c.close()
        c = smtplib.SMTP_SSL("127.0.0.1", self.lb.ports["submissions"], context=self.ctx,
                             timeout=10)
        try:
            c.ehlo("client.example")
            # One mechanism only (login() would go on to try AUTH LOGIN).
            c.user, c.password = "hugo@example.test", "wrong"
            with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
                c.auth("PLAIN", c.auth_plain)
            self.assertEqual(e.exception.smtp_code, 535)
        finally:
            c.close()

    def test_dead_frontend_login_fails_over(self):
        # Find the frontend of this user, kill it, log in again.
        ups = [Upstream("fx%d" % i, proto="imap", login=True) for i in (1, 2)]
        lb = Balancer(protos=("imaps",), upstreams={"imaps": [u.addr() for u in ups]},
                      env={"POSTERN_L7": "imaps", "POSTERN_TLS_CERT": self.cert,
                           "POSTERN_TLS_KEY": self.key, "POSTERN_UPSTREAM_NAMES": "fx1,fx2"})
        try:
            def login():
                s = self.ctx.wrap_socket(lb.connect("imaps"), server_hostname="localhost")
                recv_line(s)
                s.sendall(b"a LOGIN ivan@example.test secret\r\n")
                name = recv_line(s).split()[3].decode()
                self.assertTrue(recv_line(s).startswith(b"a OK "))
                s.close()
                return name

            first = login()
            next(u for u in ups if u.name == first).kill()
            second = login()
            self.assertNotEqual(first, second)
            self.assertEqual(lb.backend("imaps", first)["state"], "down")
        finally:
            lb.stop()
            for u in ups:
                u.kill()

    def test_no_frontend_gives_refusal_inside_tls(self):
        dead = free_port()
        lb = Balancer(protos=("imaps", "submission"),
                      upstreams={"imaps": ["127.0.0.1:%d" % dead],
                                 "submission": ["127.0.0.1:%d" % dead]},
                      env={"POSTERN_L7": "imaps,submission", "POSTERN_TLS_CERT": self.cert,
                           "POSTERN_TLS_KEY": self.key})
        try:
            s = self.ctx.wrap_socket(lb.connect("imaps"), server_hostname="localhost")
            recv_line(s)
            s.sendall(b"a LOGIN judy@example.test secret\r\n")
            self.assertTrue(recv_line(s).startswith(b"* BYE [UNAVAILABLE] "))
            s.close()
            c = smtplib.SMTP("127.0.0.1", lb.ports["submission"], timeout=10)
            c.starttls(context=self.ctx)
            c.ehlo("x")
            code, text = c.docmd("AUTH", "PLAIN " + base64.b64encode(
                b"\0judy@example.test\0secret").decode())
            self.assertEqual(code, 421)
            self.assertIn(b"4.3.2", text)
            c.close()
        finally:
            lb.stop()

    def test_garbage_and_login_timeout(self):
        lb = Balancer(protos=("imap",), upstreams={"imap": [self.ups["imap"][0].addr()]},
                      env={"POSTERN_L7": "imap", "POSTERN_TLS_CERT": self.cert,
                           "POSTERN_TLS_KEY": self.key, "POSTERN_LOGIN_TIMEOUT": "1s"})
        try:
            s = lb.connect("imap")
            recv_line(s)
            s.sendall(b"\x00\xff garbage\r\n" * 12)
            data = recv_all(s)
            self.assertIn(b"* BYE Too many invalid commands.", data)
            s.close()
            s = lb.connect("imap")
            recv_line(s)
            s.settimeout(15)
            self.assertEqual(recv_all(s), b"* BYE Login timeout.\r\n")
            s.close()
        finally:
            lb.stop()


if __name__ == "__main__":
    unittest.main()
