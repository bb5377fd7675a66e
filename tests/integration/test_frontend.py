"""postern-frontend as a cluster node, against real PostgreSQL and Redis:
PROXY headers from a trusted (127.0.0.2) and an untrusted (127.0.0.1)
address, the admin endpoints, /readyz when PostgreSQL stops and comes back
(and when Redis stops: degraded, still ready, POP3 still works, limits
counted per node and said so in the "limits" check), the Redis
session and node registries, SIGTERM drain (goodbye in POP3's words, new
connections refused, exit within the grace period), SIGHUP certificate
reload without dropping sessions, and the listeners of protocols not wired
in yet.

The PostgreSQL and Redis stop/start tests use tests/harness/services
(POSTERN_SERVICES_DIR) and restart the services before they end.
Standard library only.
"""

import os
import poplib
import shutil
import signal
import socket
import ssl
import struct
import tempfile
import time
import unittest

import frontend_support as fs

try:
    import services
except ImportError:  # run outside the runner
    services = None


class FrontendTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        fs.skip_unless_ready(cls)
        cls.tmp = tempfile.mkdtemp(prefix="pn-fe-")
        try:
            cls.store = fs.Store()
            cls.certs = fs.Certs(cls.tmp)
            cls.a = fs.Frontend("fe-a", cls.store, cls.certs, folder=cls.tmp,
                                services=("pop3", "pop3s", "imap", "smtp", "submission"))
            cls.b = fs.Frontend("fe-b", cls.store, cls.certs, folder=cls.tmp)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        bad = []
        for fe in (getattr(cls, "a", None), getattr(cls, "b", None)):
            if fe is not None and fe.stop() != 0:
                bad.append("%s exited with %s:\n%s" % (fe.name, fe.proc.returncode,
                                                        fe.log_tail()))
        if getattr(cls, "store", None) is not None:
            cls.store.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if bad:
            raise RuntimeError("\n".join(bad))

    def new_user(self, n=1):
        local = "u" + os.urandom(4).hex()
        address, account, inbox = self.store.user(local, "pw-" + local)
        for i in range(n):
            self.store.deliver(account, inbox, fs.message("m%d" % i))
        return address, "pw-" + local, account

    # ---- admin ----

    def test_admin_endpoints(self):
        self.assertEqual(self.a.http("/healthz"), (200, "ok\n"))
        # every thread's pool connects in the background after the start:
        # ready within a few seconds (the first run often beats them)
        fs.wait_for(lambda: self.a.readyz()[0] == 200, 10)
        status, body = self.a.readyz()
        self.assertEqual(status, 200, body)
        self.assertEqual(body["status"], "ready")
        checks = {c["name"]: c for c in body["checks"]}
        self.assertTrue(checks["postgres"]["ok"])
        self.assertTrue(checks["redis"]["ok"])
        self.assertNotIn("detail", checks["redis"])
        status, text = self.a.http("/metrics")
        self.assertEqual(status, 200)
        for family in ("postern_frontend_sessions", "postern_logins_total",
                       "postern_tls_handshakes_total", "postern_frontend_bytes_total",
                       "postern_commands_total", "postern_frontend_connections_total",
                       "postern_pg_requests_total", "postern_redis_commands_total"):
            self.assertIn("# TYPE " + family, text)
        self.assertEqual(self.a.metric("postern_frontend_ready"), 1)

    def test_metrics_follow_a_session(self):
        user, pw, account = self.new_user()
        ok0 = self.b.metric("postern_logins_total", protocol="pop3", result="ok")
        tls0 = self.b.metric("postern_tls_handshakes_total", service="pop3s", mode="implicit",
                             result="ok")
        retr0 = self.b.metric("postern_commands_total", protocol="pop3", command="retr")
        q = poplib.POP3_SSL("127.0.0.1", self.b.ports["pop3s"], timeout=10,
                            context=self.certs.client_context())
        q.user(user)
        q.pass_(pw)
        self.assertEqual(self.b.metric("postern_frontend_sessions", protocol="pop3",
                                       state="authenticated"), 1)
        q.retr(1)
        q.quit()
        self.assertEqual(self.b.metric("postern_logins_total", protocol="pop3", result="ok"),
                         ok0 + 1)
        self.assertEqual(self.b.metric("postern_tls_handshakes_total", service="pop3s",
                                       mode="implicit", result="ok"), tls0 + 1)
        self.assertEqual(self.b.metric("postern_commands_total", protocol="pop3",
                                       command="retr"), retr0 + 1)
        self.assertGreater(self.b.metric("postern_frontend_bytes_total", protocol="pop3",
                                         direction="out"), 0)

    # ---- PROXY ----

    def test_proxy_from_trusted_peer(self):
        user, pw, account = self.new_user()
        for header in (fs.proxy_v1("198.51.100.7", 40001),
                       fs.proxy_v2("198.51.100.8", 40002),
                       fs.proxy_v2("198.51.100.9", 40003, tls_version="TLSv1.3")):
            s = fs.connect_from("127.0.0.2", self.a.ports["pop3"])
            # header and first command in one segment
            s.sendall(header + b"CAPA\r\n")
            self.assertTrue(fs.read_line(s).startswith(b"+OK"))
            caps = b""
            while not caps.endswith(b"\r\n.\r\n"):
                chunk = s.recv(4096)
                self.assertTrue(chunk)
                caps += chunk
            tls_from_balancer = b"TLSv1.3" in header
            # TLS terminated by the balancer: no STLS offered, plaintext ok
            self.assertEqual(b"STLS" in caps, not tls_from_balancer)
            s.sendall(b"USER %s\r\nPASS %s\r\n" % (user.encode(), pw.encode()))
            user_reply, pass_reply = fs.read_line(s), fs.read_line(s)
            # 198.51.100.x is not in plaintext_auth_networks: without TLS
            # the login is refused; with the balancer's TLS it is not.
            if not tls_from_balancer:
                self.assertTrue(user_reply.startswith(b"-ERR"), user_reply)
                self.assertTrue(pass_reply.startswith(b"-ERR"), pass_reply)
            else:
                self.assertTrue(user_reply.startswith(b"+OK"), user_reply)
                self.assertTrue(pass_reply.startswith(b"+OK"), pass_reply)
                rec = self.session_records(account)
                self.assertEqual(len(rec), 1)
                self.assertIn("client=198.51.100.9:40003", list(rec.values())[0])
                self.assertIn("proto=pop3", list(rec.values())[0])
                self.assertTrue(list(rec.keys())[0].startswith("fe-a/"))
            s.sendall(b"QUIT\r\n")
            fs.read_until_closed(s)
            s.close()
        log = self.a.log_text()
        self.assertIn("client=198.51.100.7:40001 peer=127.0.0.2:", log)
        self.assertIn("client=198.51.100.8:40002 peer=127.0.0.2:", log)
        # the record goes away with the session
        self.assertTrue(fs.wait_for(lambda: not self.session_records(account), 5))

    def session_records(self, account):
        port = int(os.environ["POSTERN_REDIS_PORT"])
        reply = redis(port, "HGETALL", "{a:%d}:sessions" % account)
        return dict(zip(reply[::2], reply[1::2]))

    def test_proxy_local_health_check_is_quiet(self):
        # The balancer checks each listener several times a second with a
        # PROXY v2 LOCAL header: counted as result="local", not "accepted",
        # and no event=connect/disconnect lines at info level.
        local0 = self.a.metric("postern_frontend_connections_total", service="pop3",
                               result="local")
        acc0 = self.a.metric("postern_frontend_connections_total", service="pop3",
                             result="accepted")
        log0 = self.a.log_text().count("event=connect ")
        for _ in range(3):
            s = fs.connect_from("127.0.0.2", self.a.ports["pop3"])
            s.sendall(fs.PROXY_V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0))
            self.assertTrue(fs.read_line(s).startswith(b"+OK"))
            s.sendall(b"QUIT\r\n")
            fs.read_until_closed(s)
            s.close()
        self.assertTrue(fs.wait_for(lambda: self.a.metric(
            "postern_frontend_connections_total", service="pop3", result="local") == local0 + 3, 5))
        self.assertEqual(self.a.metric("postern_frontend_connections_total", service="pop3",
                                       result="accepted"), acc0)
        # A client behind PROXY is still logged.
        s = fs.connect_from("127.0.0.2", self.a.ports["pop3"])
        s.sendall(fs.proxy_v2("198.51.100.20", 40020) + b"QUIT\r\n")
        fs.read_until_closed(s)
        s.close()
        self.assertTrue(fs.wait_for(lambda: "client=198.51.100.20:40020" in self.a.log_text(), 5))
        self.assertEqual(self.a.log_text().count("event=connect "), log0 + 1)

    def test_proxy_refused_from_untrusted_peer(self):
        before = self.a.metric("postern_frontend_connections_total", service="pop3",
                               result="proxy_untrusted")
        for header in (fs.proxy_v1("198.51.100.7", 40001), fs.proxy_v2("198.51.100.8", 40002)):
            s = fs.connect_from("127.0.0.1", self.a.ports["pop3"])
            greeting = fs.read_line(s)  # an untrusted peer is greeted at once
            self.assertTrue(greeting.startswith(b"+OK"))
            s.sendall(header + b"CAPA\r\n")
            rest = fs.read_until_closed(s)
            self.assertEqual(rest, b"")  # closed without a word
            s.close()
        self.assertEqual(self.a.metric("postern_frontend_connections_total", service="pop3",
                                       result="proxy_untrusted"), before + 2)

    def test_trusted_peer_must_send_proxy(self):
        s = fs.connect_from("127.0.0.2", self.a.ports["pop3"])
        s.sendall(b"CAPA\r\n")  # not a PROXY header
        self.assertEqual(fs.read_until_closed(s), b"")
        s.close()
        t0 = time.time()
        s = fs.connect_from("127.0.0.2", self.a.ports["pop3"])  # silent: handshake_timeout 2s
        self.assertEqual(fs.read_until_closed(s), b"")
        self.assertLess(time.time() - t0, 6)
        s.close()

    # ---- listeners of protocols not wired in yet ----

    def test_imap_listener_greets(self):
        # Every listener is served now: IMAP greets with "* OK" and lists
        # what it can do, and CAPABILITY says the same.
        s = socket.create_connection(("127.0.0.1", self.a.ports["imap"]), timeout=5)
        greeting = fs.read_line(s)
        self.assertTrue(greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 "), greeting)
        s.sendall(b"c1 CAPABILITY\r\nc2 LOGOUT\r\n")
        data = fs.read_until_closed(s)
        s.close()
        caps = data.split(b"\r\n")[0]
        self.assertTrue(caps.startswith(b"* CAPABILITY IMAP4rev1 "), data)
        for c in (b"IDLE", b"UIDPLUS", b"MOVE", b"LITERAL+"):
            self.assertIn(c, caps.split())
        self.assertIn(b"c1 OK", data)
        self.assertIn(b"* BYE", data)
        self.assertIn(b"c2 OK", data)

    def test_smtp_listeners_greet(self):
        for svc in ("smtp", "submission"):
            s = socket.create_connection(("127.0.0.1", self.a.ports[svc]), timeout=5)
            data = s.recv(512)
            s.sendall(b"QUIT\r\n")
            data += fs.read_until_closed(s)
            s.close()
            self.assertTrue(data.startswith(b"220 "), data)
            self.assertIn(b"221 2.0.0", data)

    # ---- registries ----

    def test_node_registry(self):
        port = int(os.environ["POSTERN_REDIS_PORT"])
        def node():
            reply = redis(port, "HGETALL", "{nodes}:node:fe-b")
            return dict(zip(reply[::2], reply[1::2]))
        n = fs.wait_for(node, 5)
        self.assertEqual(n.get("addr"), "127.0.0.1:%d" % self.b.admin)
        self.assertEqual(n.get("ready"), "1")
        self.assertIsNotNone(redis(port, "ZSCORE", "{nodes}:live", "fe-b"))

    # ---- faults ----

    def services_dir(self):
        d = os.environ.get("POSTERN_SERVICES_DIR")
        if not d or services is None:
            if fs.IN_CI:
                self.fail("POSTERN_SERVICES_DIR not set")
            self.skipTest("POSTERN_SERVICES_DIR not set")
        return d

    def test_readyz_follows_postgres(self):
        d = self.services_dir()
        user, pw, account = self.new_user()
        services.stop_postgres(d)
        try:
            def not_ready():
                status, body = self.a.readyz()
                checks = {c["name"]: c for c in body["checks"]}
                return status == 503 and not checks["postgres"]["ok"] and (status, checks)
            got = fs.wait_for(not_ready, 20)
            self.assertTrue(got, self.a.readyz())
            self.assertEqual(self.a.metric("postern_frontend_postgres_up"), 0)
            # a login now is a temporary failure, not a crash
            p = poplib.POP3("127.0.0.1", self.a.ports["pop3"], timeout=15)
            p.user(user)
            with self.assertRaises(poplib.error_proto) as cm:
                p.pass_(pw)
            self.assertIn(b"[SYS/TEMP]", cm.exception.args[0])
            p.quit()
        finally:
            services.start_postgres(d)
        self.assertTrue(fs.wait_for(lambda: self.a.readyz()[0] == 200, 30), self.a.readyz())
        self.assertTrue(fs.wait_for(lambda: self.b.readyz()[0] == 200, 30), self.b.readyz())
        p = poplib.POP3("127.0.0.1", self.a.ports["pop3"], timeout=10)
        p.user(user)
        p.pass_(pw)
        self.assertEqual(p.stat()[0], 1)
        p.quit()

    def test_redis_down_is_degraded_not_unready(self):
        d = self.services_dir()
        user, pw, account = self.new_user()
        services.stop_redis(d)
        try:
            def degraded():
                status, body = self.b.readyz()
                checks = {c["name"]: c for c in body["checks"]}
                return "degraded" in checks["redis"].get("detail", "") and (status, checks)
            got = fs.wait_for(degraded, 20)
            self.assertTrue(got, self.b.readyz())
            status, checks = got
            self.assertEqual(status, 200)
            self.assertTrue(checks["redis"]["ok"])
            self.assertEqual(self.b.metric("postern_frontend_redis_up"), 0)
            fallback0 = self.b.metric("postern_pop3_lock_fallback_total")
            p = poplib.POP3_SSL("127.0.0.1", self.b.ports["pop3s"], timeout=15,
                                context=self.certs.client_context())
            p.user(user)
            p.pass_(pw)
            self.assertEqual(p.stat()[0], 1)
            # the per-node lock still refuses a second session here
            q = poplib.POP3_SSL("127.0.0.1", self.b.ports["pop3s"], timeout=15,
                                context=self.certs.client_context())
            q.user(user)
            with self.assertRaises(poplib.error_proto) as cm:
                q.pass_(pw)
            self.assertIn(b"[IN-USE]", cm.exception.args[0])
            q.quit()
            p.quit()
            self.assertEqual(self.b.metric("postern_pop3_lock_fallback_total"), fallback0 + 1)
            # the session limits fell back to per-node counting, and say so
            def limits_per_node():
                status, body = self.b.readyz()
                checks = {c["name"]: c for c in body["checks"]}
                return "per node" in checks["limits"].get("detail", "") and checks["limits"]
            got = fs.wait_for(limits_per_node, 5)
            self.assertTrue(got, self.b.readyz())
            self.assertTrue(got["ok"])
            self.assertGreaterEqual(self.b.metric("postern_throttle_redis_fallback"), 1)
        finally:
            services.start_redis(d)
        def redis_ok():
            status, body = self.b.readyz()
            checks = {c["name"]: c for c in body["checks"]}
            return status == 200 and "detail" not in checks["redis"]
        self.assertTrue(fs.wait_for(redis_ok, 30), self.b.readyz())
        # a login after Redis came back ends the fallback (the throttle's
        # probe notices too, within a second)
        p = poplib.POP3_SSL("127.0.0.1", self.b.ports["pop3s"], timeout=15,
                            context=self.certs.client_context())
        p.user(user)
        p.pass_(pw)
        p.quit()
        def limits_back():
            status, body = self.b.readyz()
            checks = {c["name"]: c for c in body["checks"]}
            return checks["limits"].get("detail") == "cluster-wide"
        self.assertTrue(fs.wait_for(limits_back, 10), self.b.readyz())
        self.assertTrue(fs.wait_for(
            lambda: self.b.metric("postern_throttle_redis_fallback") == 0, 10))

    # ---- signals ----

    def test_sighup_reloads_certificate(self):
        folder = tempfile.mkdtemp(prefix="pn-hup-", dir=self.tmp)
        certs = fs.Certs(folder, name="first")
        fe = fs.Frontend("fe-hup", self.store, certs, folder=folder, services=("pop3s",))
        self.addCleanup(fe.kill)
        try:
            user, pw, account = self.new_user()
            p = poplib.POP3_SSL("127.0.0.1", fe.ports["pop3s"], timeout=10,
                                context=certs.client_context())
            self.assertEqual(p.sock.getpeercert()["subject"], ((("commonName", "first"),),))
            p.user(user)
            p.pass_(pw)
            # new certificate in the same files, then SIGHUP
            second = os.path.join(folder, "second")
            certs.make("second")
            shutil.copyfile(second + ".crt", os.path.join(folder, "first.crt"))
            shutil.copyfile(second + ".key", os.path.join(folder, "first.key"))
            fe.signal(signal.SIGHUP)
            def new_cert():
                q = poplib.POP3_SSL("127.0.0.1", fe.ports["pop3s"], timeout=10,
                                    context=certs.client_context())
                cn = q.sock.getpeercert()["subject"]
                q.quit()
                return cn == ((("commonName", "second"),),)
            self.assertTrue(fs.wait_for(new_cert, 5), fe.log_tail())
            # the old session is still there
            self.assertEqual(p.stat()[0], 1)
            p.quit()
            self.assertIn("event=reload what=tls", fe.log_text())
        finally:
            self.assertEqual(fe.stop(), 0)

    def test_sigterm_drain(self):
        folder = tempfile.mkdtemp(prefix="pn-drain-", dir=self.tmp)
        fe = fs.Frontend("fe-drain", self.store, self.certs, folder=folder,
                         services=("pop3",), extra={"POSTERN_DRAIN_GRACE": "3s"})
        self.addCleanup(fe.kill)
        user, pw, account = self.new_user()
        logged_in = poplib.POP3("127.0.0.1", fe.ports["pop3"], timeout=10)
        logged_in.user(user)
        logged_in.pass_(pw)
        greeted = poplib.POP3("127.0.0.1", fe.ports["pop3"], timeout=10)
        t0 = time.time()
        fe.signal(signal.SIGTERM)
        # readiness fails at once
        def draining():
            try:
                status, body = fe.readyz()
            except OSError:
                return None
            return status == 503 and any(c["name"] == "draining" for c in body["checks"])
        self.assertTrue(fs.wait_for(draining, 2, step=0.02))
        # new connections are refused
        def refused():
            try:
                socket.create_connection(("127.0.0.1", fe.ports["pop3"]), timeout=1).close()
                return False
            except ConnectionRefusedError:
                return True
        self.assertTrue(fs.wait_for(refused, 2, step=0.02))
        # each session is told goodbye in POP3's words
        for p in (logged_in, greeted):
            p.sock.settimeout(5)
            line = p.file.readline()
            self.assertEqual(line, b"-ERR [SYS/TEMP] Server shutting down.\r\n")
            self.assertEqual(p.file.readline(), b"")
            p.close()
        rc = fe.proc.wait(timeout=10)
        elapsed = time.time() - t0
        self.assertEqual(rc, 0, fe.log_tail())
        self.assertLess(elapsed, 3 + 1.5)
        self.assertIn("event=drain_done", fe.log_text())
        # nothing was expunged, and the node left the registry
        port = int(os.environ["POSTERN_REDIS_PORT"])
        self.assertEqual(redis(port, "EXISTS", "{nodes}:node:fe-drain"), 0)
        self.assertEqual(fe.stop(), 0)


def redis(port, *args):
    """One command on the test Redis; bulk strings decoded, arrays as lists."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        f = s.makefile("rb")
        return _resp(f)
    finally:
        s.close()


def _resp(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise OSError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode()
    if kind == b"*":
        n = int(rest)
        return [] if n < 0 else [_resp(f) for _ in range(n)]
    raise OSError("bad reply %r" % line)


if __name__ == "__main__":
    unittest.main()
