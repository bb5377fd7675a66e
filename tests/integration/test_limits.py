"""Cluster-wide protection of postern-frontend, against real PostgreSQL and
Redis with two frontends (fe-la, fe-lb): failed POP3 logins on one node
delay and then refuse logins for that account on the other; the
per-account session limit holds across nodes (POP3 -ERR [IN-USE],
submission 454 4.7.0); `posternctl kick ADDRESS` ends a POP3 session on
whichever node holds it (-ERR [SYS/TEMP]) and removes its registry entry;
the tenant's message rate holds across nodes (451 4.3.0 past it); the node
registry shows role=frontend in `posternctl nodes`; /readyz
carries the "limits" detail and /metrics the throttle families; SIGHUP
reloads the limits from the config file without dropping the open
sessions, and a config file that does not load keeps the old limits.

Standard library only.
"""

import json
import imaplib
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
import unittest

import frontend_support as fs

LIMITS = {
    # account scope: the 2nd failure delays the next answers, the 3rd
    # starts a refusal for a minute
    "POSTERN_AUTH_ACCOUNT_DELAY_AFTER": "2",
    "POSTERN_AUTH_ACCOUNT_REFUSE_AFTER": "3",
    "POSTERN_AUTH_DELAY_BASE": "400ms",
    "POSTERN_AUTH_DELAY_MAX": "1s",
    "POSTERN_AUTH_COOLING": "60s",
    "POSTERN_MAX_ACCOUNT_SESSIONS": "1",
    "POSTERN_TENANT_MESSAGES_PER_WINDOW": "2",
}


def redis_port():
    return int(os.environ["POSTERN_REDIS_PORT"])


def redis_arg():
    return "%s:%d" % (os.environ.get("POSTERN_REDIS_HOST", "127.0.0.1"), redis_port())


class Pop3:
    """A minimal POP3 client on a raw socket (to see the exact replies)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.greeting = fs.read_line(self.s)

    def cmd(self, line):
        self.s.sendall(line.encode() + b"\r\n")
        return fs.read_line(self.s)

    def login(self, user, password):
        r = self.cmd("USER " + user)
        if not r.startswith(b"+OK"):
            return r
        return self.cmd("PASS " + password)

    def close(self):
        self.s.close()


class LimitsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        fs.skip_unless_ready(cls)
        cls.tmp = tempfile.mkdtemp(prefix="pn-lim-")
        try:
            cls.store = fs.Store()
            # Redis keys are per account id and every test module has its own
            # schema counting ids from 1: ids far from theirs keep this
            # module's failure counters and refusals away from their accounts.
            base = 10**9 + int.from_bytes(os.urandom(3), "big") * 1000
            cls.store.psql("ALTER TABLE accounts ALTER COLUMN id RESTART WITH %d" % base)
            # the same for the tenant (its message rate): users go into a
            # second tenant with a far id
            cls.store.psql("ALTER TABLE tenants ALTER COLUMN id RESTART WITH %d" % base)
            cls.store.tenant = "r" + os.urandom(4).hex()
            cls.store.domain = cls.store.tenant + ".test"
            cls.store.ctl("tenant", "add", cls.store.tenant)
            cls.store.ctl("domain", "add", cls.store.domain, "--tenant", cls.store.tenant)
            cls.tenant_id = int(cls.store.psql("SELECT id FROM tenants WHERE name = '%s'"
                                               % cls.store.tenant))
            cls.a = fs.Frontend("fe-la", cls.store, folder=cls.tmp,
                                services=("pop3", "submission", "imap"), extra=LIMITS)
            cls.b = fs.Frontend("fe-lb", cls.store, folder=cls.tmp,
                                services=("pop3", "submission", "imap"), extra=LIMITS)
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

    def new_user(self):
        local = "l" + os.urandom(4).hex()
        address, account, _ = self.store.user(local, "pw-" + local)
        return address, "pw-" + local, account

    def posternctl(self, *args):
        argv = [fs.posternctl_binary(), "--pg", self.store.dsn, "--redis", redis_arg()]
        r = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def bad_login(self, fe, user):
        c = Pop3(fe.ports["pop3"])
        try:
            t0 = time.monotonic()
            r = c.login(user, "wrong")
            return r, time.monotonic() - t0
        finally:
            c.close()

    # ---- authentication failures ----

    def test_auth_failures_count_across_nodes(self):
        user, password, account = self.new_user()
        for suffix in ("authfail", "authblock"):
            self.addCleanup(redis, redis_port(), "DEL", "{a:%d}:%s" % (account, suffix))
        r, fast = self.bad_login(self.a, user)
        self.assertTrue(r.startswith(b"-ERR [AUTH]"), r)
        r, _ = self.bad_login(self.a, user)
        self.assertTrue(r.startswith(b"-ERR [AUTH]"), r)
        # past delay_after: the answer waits (0.4 s base)
        r, slow = self.bad_login(self.a, user)
        self.assertTrue(r.startswith(b"-ERR [AUTH]"), r)
        self.assertGreaterEqual(slow, 0.35, (fast, slow))
        # the third failure started a refusal: on the other node, even the
        # right password is refused without being checked
        c = Pop3(self.b.ports["pop3"])
        try:
            r = c.login(user, password)
            self.assertTrue(r.startswith(b"-ERR [LOGIN-DELAY]"), r)
        finally:
            c.close()
        self.assertEqual(self.b.metric("postern_logins_total", protocol="pop3",
                                       result="throttled"), 1)
        self.assertGreaterEqual(self.b.metric("postern_throttle_refusals_total",
                                              kind="auth_account"), 1)
        # submission on node A refuses the account too, with 454 4.7.0
        s = socket.create_connection(("127.0.0.1", self.a.ports["submission"]), timeout=10)
        try:
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(b"220"))
            s.sendall(b"EHLO t\r\n")
            while not f.readline().startswith(b"250 "):
                pass
            s.sendall(b"AUTH PLAIN " + fs.sasl_plain(user, password).encode() + b"\r\n")
            self.assertTrue(f.readline().startswith(b"454 4.7.0"))
        finally:
            s.close()

    # ---- sessions ----

    def test_session_limit_across_nodes(self):
        user, password, _ = self.new_user()
        first = Pop3(self.a.ports["pop3"])
        try:
            self.assertTrue(first.login(user, password).startswith(b"+OK"))
            # a second POP3 session on the other node: no slot
            c = Pop3(self.b.ports["pop3"])
            try:
                r = c.login(user, password)
                self.assertTrue(r.startswith(b"-ERR [IN-USE]"), r)
            finally:
                c.close()
            self.assertEqual(self.b.metric("postern_logins_total", protocol="pop3",
                                           result="session_limit"), 1)
            # and a submission session (no maildrop lock involved) too
            s = socket.create_connection(("127.0.0.1", self.b.ports["submission"]),
                                         timeout=10)
            try:
                f = s.makefile("rb")
                f.readline()
                s.sendall(b"EHLO t\r\n")
                while not f.readline().startswith(b"250 "):
                    pass
                s.sendall(b"AUTH PLAIN " + fs.sasl_plain(user, password).encode() + b"\r\n")
                self.assertTrue(f.readline().startswith(b"454 4.7.0"))
            finally:
                s.close()
            # and IMAP answers NO [LIMIT] (RFC 5530) through the same hook
            im = imaplib.IMAP4("127.0.0.1", self.b.ports["imap"], timeout=10)
            try:
                with self.assertRaises(imaplib.IMAP4.error) as cm:
                    im.login(user, password)
                self.assertIn("[LIMIT]", str(cm.exception))
            finally:
                im.shutdown()
            self.assertGreaterEqual(self.b.metric("postern_throttle_refusals_total",
                                                  kind="sessions_account"), 3)
        finally:
            first.cmd("QUIT")
            first.close()

        # the slot came back at logout: the other node lets the user in
        def login_b():
            c = Pop3(self.b.ports["pop3"])
            try:
                ok = c.login(user, password).startswith(b"+OK")
                c.cmd("QUIT")
                return ok
            finally:
                c.close()
        self.assertTrue(fs.wait_for(login_b, 5, step=0.3))

    # ---- SIGHUP reloads the limits ----

    def submission_login(self, fe, user, password):
        """An open submission socket after AUTH PLAIN, and the reply."""
        s = socket.create_connection(("127.0.0.1", fe.ports["submission"]), timeout=10)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO t\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        s.sendall(b"AUTH PLAIN " + fs.sasl_plain(user, password).encode() + b"\r\n")
        return s, f.readline()

    def test_sighup_reloads_limits(self):
        conf = os.path.join(self.tmp, "fe-lr.conf")

        def write_conf(value):
            with open(conf + ".new", "w") as f:
                f.write("# written by test_sighup_reloads_limits\n"
                        "max_account_sessions = %s\n" % value)
            os.replace(conf + ".new", conf)

        def reloads(result):
            return fe.log_text().count("event=reload what=limits result=" + result)

        write_conf("1")
        fe = fs.Frontend("fe-lr", self.store, folder=self.tmp,
                         services=("pop3", "submission"), args=["-c", conf])
        self.addCleanup(fe.kill)
        user, password, _ = self.new_user()
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        first = Pop3(fe.ports["pop3"])
        socks.append(first.s)
        self.assertTrue(first.login(user, password).startswith(b"+OK"))
        s, r = self.submission_login(fe, user, password)
        socks.append(s)
        self.assertTrue(r.startswith(b"454 4.7.0"), r)

        # raised to 2 in the file: a second session while the first stays
        write_conf("2")
        fe.signal(signal.SIGHUP)
        self.assertTrue(fs.wait_for(lambda: reloads("ok") == 1, 10), fe.log_tail())
        s, r = self.submission_login(fe, user, password)
        socks.append(s)
        self.assertTrue(r.startswith(b"235"), r)
        self.assertTrue(first.cmd("STAT").startswith(b"+OK"))

        # a file that does not load: the limit stays 2 (not the default,
        # off), the node stays up and the sessions too
        write_conf("lots")
        fe.signal(signal.SIGHUP)
        self.assertTrue(fs.wait_for(lambda: reloads("failed") == 1, 10), fe.log_tail())
        self.assertIn("max_account_sessions", fe.log_tail())
        self.assertEqual(reloads("ok"), 1)
        s, r = self.submission_login(fe, user, password)
        socks.append(s)
        self.assertTrue(r.startswith(b"454 4.7.0"), r)
        self.assertIsNone(fe.proc.poll())
        self.assertEqual(fe.http("/healthz")[0], 200)
        self.assertTrue(first.cmd("STAT").startswith(b"+OK"))
        self.assertTrue(first.cmd("QUIT").startswith(b"+OK"))
        self.assertEqual(fe.stop(), 0, fe.log_tail())

    # ---- tenant message rate ----

    def test_tenant_message_rate(self):
        # two users of the tenant, on two nodes: the rate is the tenant's
        self.addCleanup(self.clear_rate)
        users = [self.new_user(), self.new_user()]
        replies = []
        for i, fe in enumerate((self.a, self.b, self.a)):
            user, password, _ = users[i % 2]
            with smtplib.SMTP("127.0.0.1", fe.ports["submission"], timeout=10) as s:
                s.ehlo("client.example")
                s.login(user, password)
                msg = ("From: %s\r\nTo: %s\r\nSubject: rate %d\r\n"
                       "Message-ID: <rate-%d-%s>\r\n\r\nbody\r\n"
                       % (user, user, i, i, os.urandom(4).hex()))
                s.mail(user)
                s.rcpt(user)
                replies.append(s.data(msg.encode()))
        self.assertEqual([r[0] for r in replies], [250, 250, 451], replies)
        self.assertIn(b"4.3.0", replies[2][1])
        self.assertEqual(self.a.metric("postern_throttle_refusals_total",
                                       kind="tenant_messages"), 1)
        self.assertIn("event=tenant_rate_refused", self.a.log_text())

    def clear_rate(self):
        s = socket.create_connection(("127.0.0.1", redis_port()), timeout=5)
        try:
            pattern = "{t:%d}:*" % self.tenant_id
            s.sendall(b"*2\r\n$4\r\nKEYS\r\n$%d\r\n%s\r\n" % (len(pattern),
                                                                  pattern.encode()))
            f = s.makefile("rb")
            n = int(f.readline()[1:])
            keys = [f.readline() and f.readline().rstrip(b"\r\n") for _ in range(n)]
        finally:
            s.close()
        for k in keys:
            redis(redis_port(), "DEL", k)

    # ---- kick ----

    def test_kick_ends_pop3_session_on_its_node(self):
        user, password, account = self.new_user()
        c = Pop3(self.b.ports["pop3"])
        try:
            self.assertTrue(c.login(user, password).startswith(b"+OK"))
            key = "{a:%d}:sessions" % account
            self.assertTrue(fs.wait_for(lambda: redis(redis_port(), "HLEN", key) == 1, 5))
            out = self.posternctl("kick", user)
            self.assertIn("kick sent: 1 session listed", out)
            c.s.settimeout(10)
            self.assertEqual(fs.read_line(c.s), b"-ERR Disconnected by the administrator.\r\n")
            self.assertEqual(fs.read_until_closed(c.s), b"")
            self.assertTrue(fs.wait_for(lambda: redis(redis_port(), "HLEN", key) == 0, 5))
        finally:
            c.close()
        self.assertIn("event=kick", self.b.log_text())
        self.assertNotIn("event=kick ", self.a.log_text())

    # ---- node registry, readiness, metrics ----

    def test_role_in_posternctl_nodes(self):
        def nodes():
            got = json.loads(self.posternctl("nodes", "--json"))
            items = got if isinstance(got, list) else got.get("nodes", [])
            return {n["name"]: n for n in items if n.get("name") in ("fe-la", "fe-lb")}
        self.assertTrue(fs.wait_for(lambda: len(nodes()) == 2, 5))
        for n in nodes().values():
            self.assertEqual(n["role"], "frontend")
        text = self.posternctl("nodes")
        line = [l for l in text.splitlines() if l.split()[:1] == ["fe-la"]]
        self.assertEqual(len(line), 1, text)
        self.assertIn("frontend", line[0])

    def test_readyz_and_metrics(self):
        fs.wait_for(lambda: self.a.readyz()[0] == 200, 10)
        status, body = self.a.readyz()
        self.assertEqual(status, 200, body)
        checks = {c["name"]: c for c in body["checks"]}
        self.assertTrue(checks["limits"]["ok"])
        self.assertEqual(checks["limits"]["detail"], "cluster-wide")
        _, text = self.a.http("/metrics")
        for name in ("postern_throttle_redis_fallback", "postern_throttle_refusals_total",
                     "postern_throttle_auth_delays_total"):
            self.assertIn(name, text)


def redis(port, *args):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        line = s.makefile("rb").readline()
        if line.startswith(b":"):
            return int(line[1:])
        raise OSError("unexpected reply %r" % line)
    finally:
        s.close()


if __name__ == "__main__":
    unittest.main()
