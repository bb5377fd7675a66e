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

import http.server
import json
import os
import random
import signal
import socket
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
import socket, struct, sys, threading
port, name, proto, proxy = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
GREET = {"imap": b"* OK", "pop3": b"+OK"}.get(proto[:4], b"220")
BYE = {"imap": b"* BYE bye", "pop3": b"+OK bye"}.get(proto[:4], b"221 2.0.0 bye")
out = threading.Lock()
def say(line):
    with out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
def exact(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b
def serve(c):
    try:
        local = False
        if proxy:
            h = exact(c, 16)
            if h[:12] != b"\r\n\r\n\x00\r\nQUIT\n":
                c.close()
                return
            body = exact(c, struct.unpack("!H", h[14:16])[0])
            if h[12] & 0xF == 0:
                local = True
                say("LOCAL")
            elif h[13] == 0x11:
                say("PROXY %s %d %s %d" % (socket.inet_ntop(socket.AF_INET, body[0:4]),
                    struct.unpack("!H", body[8:10])[0],
                    socket.inet_ntop(socket.AF_INET, body[4:8]),
                    struct.unpack("!H", body[10:12])[0]))
            else:
                say("PROXY ? 0 ? 0")
        c.sendall(GREET + b" " + name.encode() + b" ready\r\n")
        if local:
            line = b""
            while not line.endswith(b"\n"):
                d = c.recv(1)
                if not d:
                    break
                line += d
            if line:
                c.sendall(BYE + b"\r\n")
            c.close()
            return
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        c.shutdown(socket.SHUT_WR)
        c.close()
    except (OSError, EOFError):
        pass
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
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

    def __init__(self, name, proto="imap", proxy=True):
        self.name = name
        self.proto = proto
        self.proxy = proxy
        self.lock = threading.Lock()
        self.headers = []          # (src, dst) of proxied connections
        self.probes = 0            # LOCAL connections (health checks)
        self.port = 0
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", UPSTREAM_SCRIPT, str(self.port), self.name, self.proto,
             "1" if self.proxy else "0"], stdout=subprocess.PIPE)
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

    def addr(self):
        return "127.0.0.1:%d" % self.port

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


if __name__ == "__main__":
    unittest.main()
