"""Integration tests of SMTP reception with real clients (Python smtplib,
swaks) against a running postern-frontend and the harness' PostgreSQL:

  - MX: a message to a local user stored, read back from PostgreSQL and
    compared byte for byte (our header lines in front, then exactly the
    message sent); swaks the same way
  - MX never relays and offers no AUTH
  - submission: AUTH refused before STARTTLS on an untrusted network,
    accepted after it; the sender must be the account's; a foreign
    recipient is queued in the outbound queue
  - STARTTLS command injection: commands sent in the same packet after
    STARTTLS are not executed
  - LMTP with good and bad recipients: one reply per accepted recipient
  - RCPT TO:<Postmaster> (no domain, any case; RFC 5321 4.5.1) accepted on
    MX (smtplib, swaks) and LMTP, and stored for the primary domain's
    postmaster
  - the frontend killed (SIGKILL) in the middle of DATA and just after the
    final dot: nothing partial is visible, nothing acknowledged is lost, and
    the client's retry does not produce a second copy (duplicate guard)

The frontend runs with its own listeners on free loopback ports, one
thread, plaintext AUTH allowed from no network, and a private schema
(search_path) that is dropped at the end.

Environment: POSTERN_PG_DSN (required), POSTERN_BIN_DIR (build folder with
frontend/postern-frontend and storage/posternctl; default build/),
POSTERN_REDIS_HOST/PORT (optional). Skipped while the frontend answers
SMTP with "421 ... not available" (the SMTP adapter not wired in).
Standard library only, plus the openssl and psql commands.
"""

import base64
import os
import shutil
import socket
import ssl
import smtplib
import subprocess
import tempfile
import time
import unittest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_DSN = os.environ.get("POSTERN_PG_DSN", "")


def find(rel):
    bindir = os.environ.get("POSTERN_BIN_DIR") or os.path.join(TOP, "build")
    path = os.path.join(bindir, rel)
    return path if os.access(path, os.X_OK) else None


def dsn_with_schema(dsn, schema):
    if dsn.startswith("postgres://") or dsn.startswith("postgresql://"):
        sep = "&" if "?" in dsn else "?"
        return "%s%soptions=-csearch_path%%3D%s" % (dsn, sep, schema)
    return "%s options='-csearch_path=%s'" % (dsn, schema)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_reply(sock, buf=b""):
    """Reads one complete SMTP reply; returns (reply, rest of the buffer)."""
    while True:
        start = 0
        while True:
            end = buf.find(b"\r\n", start)
            if end < 0:
                break
            line = buf[start:end]
            if len(line) >= 4 and line[3:4] == b" ":
                return buf[:end + 2], buf[end + 2:]
            start = end + 2
        chunk = sock.recv(65536)
        if not chunk:
            return buf, b""
        buf += chunk


class SmtpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not BASE_DSN:
            raise unittest.SkipTest("POSTERN_PG_DSN not set (run tests/run)")
        cls.frontend = find("frontend/postern-frontend")
        cls.ctl = find("storage/posternctl")
        if cls.frontend is None or cls.ctl is None:
            raise unittest.SkipTest("postern-frontend or posternctl not built")
        for tool in ("psql", "openssl"):
            if shutil.which(tool) is None:
                raise unittest.SkipTest("%s not installed" % tool)
        cls.tmp = tempfile.mkdtemp(prefix="postern-smtp-test-")
        cls.schema = "it_smtp_%d_%d" % (os.getpid(), int(time.time()))
        cls.proc = None
        cls.psql("CREATE SCHEMA %s" % cls.schema, schema=False)
        cls.dsn = dsn_with_schema(BASE_DSN, cls.schema)
        try:
            cls.setup_data()
            cls.start_frontend()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.proc is not None:
            cls.proc.terminate()
            try:
                cls.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait()
            cls.proc = None
        cls.psql("DROP SCHEMA IF EXISTS %s CASCADE" % cls.schema, schema=False)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def psql(cls, sql, schema=True):
        dsn = dsn_with_schema(BASE_DSN, cls.schema) if schema else BASE_DSN
        p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-d", dsn, "-c", sql], capture_output=True, text=True)
        if p.returncode != 0:
            raise AssertionError("psql: %s" % p.stderr.strip())
        return p.stdout.strip()

    @classmethod
    def ctl_run(cls, *args, stdin=None):
        p = subprocess.run([cls.ctl, "--pg", cls.dsn] + list(args), input=stdin,
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise AssertionError("posternctl %s: %s" % (" ".join(args), p.stderr.strip()))

    @classmethod
    def setup_data(cls):
        cls.ctl_run("migrate")
        cls.ctl_run("tenant", "add", "demo")
        cls.ctl_run("domain", "add", "example.test", "--tenant", "demo")
        cls.ctl_run("user", "add", "demo@example.test", "--password-stdin", stdin="demo\n")
        cls.ctl_run("user", "add", "other@example.test", "--password-stdin", stdin="x\n")
        # RCPT TO:<Postmaster> goes to postmaster@ the primary domain
        # (example.test, the first one created): here an alias of demo
        cls.ctl_run("alias", "add", "postmaster@example.test", "demo@example.test")

    @classmethod
    def start_frontend(cls):
        cert = os.path.join(cls.tmp, "cert.pem")
        key = os.path.join(cls.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-subj", "/CN=localhost", "-days", "1", "-keyout", key,
                        "-out", cert], check=True, capture_output=True)
        cls.ports = {k: free_port() for k in ("smtp", "submission", "lmtp", "admin")}
        sets = {
            "threads": "1",
            "hostname": "mx.postern.test",
            "node": "smtptest",
            "admin_listen": "127.0.0.1:%d" % cls.ports["admin"],
            "imap_listen": "", "imaps_listen": "", "pop3_listen": "", "pop3s_listen": "",
            "submissions_listen": "",
            "smtp_listen": "127.0.0.1:%d" % cls.ports["smtp"],
            "submission_listen": "127.0.0.1:%d" % cls.ports["submission"],
            "lmtp_listen": "127.0.0.1:%d" % cls.ports["lmtp"],
            "tls_cert": cert, "tls_key": key,
            "plaintext_auth_networks": "",
            "pg_dsn": cls.dsn,
            "auth_workers": "1",
        }
        if os.environ.get("POSTERN_REDIS_HOST") and os.environ.get("POSTERN_REDIS_PORT"):
            sets["redis_host"] = os.environ["POSTERN_REDIS_HOST"]
            sets["redis_port"] = os.environ["POSTERN_REDIS_PORT"]
        cls.argv = [cls.frontend]
        for k, v in sets.items():
            cls.argv += ["--set", "%s=%s" % (k, v)]
        cls.log = open(os.path.join(cls.tmp, "frontend.log"), "a")
        greeting = cls.spawn()
        if not greeting.startswith(b"220"):
            raise unittest.SkipTest("SMTP not served by postern-frontend: %r" % greeting[:80])

    @classmethod
    def spawn(cls):
        """Starts the frontend; returns its SMTP greeting."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTERN_")}
        cls.proc = subprocess.Popen(cls.argv, stdout=cls.log, stderr=subprocess.STDOUT,
                                    env=env)
        deadline = time.time() + 15
        greeting = b""
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", cls.ports["smtp"]), timeout=2) as s:
                    greeting, _ = read_reply(s)
                    break
            except OSError:
                if cls.proc.poll() is not None:
                    raise AssertionError("postern-frontend exited: see %s" % cls.log.name)
                time.sleep(0.1)
        return greeting

    # ---- helpers ----

    def stored_body(self, message_id, address="demo@example.test"):
        hexbody = self.psql(
            "SELECT encode(b.body, 'hex') FROM messages m JOIN mail_blobs b"
            " ON b.sha256 = m.blob_sha256 JOIN accounts a ON a.id = m.account_id"
            " WHERE m.message_id = '%s' AND a.address = '%s'" % (message_id, address))
        return bytes.fromhex(hexbody) if hexbody else None

    def message(self, message_id, subject="hello", sender="far@remote.example"):
        return ("From: Far Away <%s>\r\n"
                "To: demo@example.test\r\n"
                "Subject: %s\r\n"
                "Message-ID: %s\r\n"
                "MIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "\r\n"
                ".leading dot survives dot-stuffing\r\n"
                "caf\u00e9 8-bit line\r\n"
                "last line\r\n" % (sender, subject, message_id)).encode()

    def assert_stored(self, message_id, sent, sender="far@remote.example"):
        body = self.stored_body(message_id)
        self.assertIsNotNone(body, "message %s not stored" % message_id)
        head = ("Return-Path: <%s>\r\nDelivered-To: demo@example.test\r\nReceived: "
                % sender).encode()
        self.assertTrue(body.startswith(head), body[:200])
        # our Received: header, then exactly the bytes that were sent
        received_end = body.index(b"\r\n", len(head))
        while body[received_end + 2:received_end + 3] in (b" ", b"\t"):
            received_end = body.index(b"\r\n", received_end + 2)
        self.assertEqual(body[received_end + 2:], sent)

    # ---- tests ----

    def test_mx_delivery_byte_for_byte(self):
        msg = self.message("<mx-1@remote.example>")
        with smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=10) as s:
            s.ehlo("client.remote.example")
            self.assertNotIn("auth", s.esmtp_features)
            refused = s.sendmail("far@remote.example", ["demo@example.test"], msg)
            self.assertEqual(refused, {})
        self.assert_stored("<mx-1@remote.example>", msg)

    def test_mx_relay_denied(self):
        with smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=10) as s:
            s.ehlo("client.remote.example")
            s.mail("far@remote.example")
            code, text = s.rcpt("victim@foreign.example")
            self.assertIn(code, (550, 554))
            self.assertIn(b"5.7.1", text)
            code, text = s.rcpt("nobody@example.test")
            self.assertEqual(code, 550)
            self.assertIn(b"5.1.1", text)
            code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(
                b"\0demo@example.test\0demo").decode())
            self.assertEqual(code, 502)

    def test_swaks(self):
        swaks = shutil.which("swaks")
        if swaks is None:
            self.skipTest("swaks not installed")
        p = subprocess.run([swaks, "--server", "127.0.0.1:%d" % self.ports["smtp"],
                            "--from", "swaks@remote.example", "--to", "demo@example.test",
                            "--header", "Message-Id: <swaks-1@remote.example>",
                            "--body", "swaks body"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        body = self.stored_body("<swaks-1@remote.example>")
        self.assertIsNotNone(body, p.stdout)
        self.assertTrue(body.startswith(b"Return-Path: <swaks@remote.example>\r\n"))
        self.assertIn(b"\r\n\r\nswaks body", body)

    def test_submission_auth_needs_tls(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", self.ports["submission"], timeout=10) as s:
            s.ehlo("client.example")
            self.assertIn("starttls", s.esmtp_features)
            self.assertNotIn("auth", s.esmtp_features)
            code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(
                b"\0demo@example.test\0demo").decode())
            self.assertEqual(code, 538)
            code, _ = s.docmd("MAIL", "FROM:<demo@example.test>")
            self.assertEqual(code, 530)
            s.starttls(context=ctx)
            s.ehlo("client.example")
            self.assertIn("auth", s.esmtp_features)
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                s.login("demo@example.test", "wrong")
            s.login("demo@example.test", "demo")
            # the envelope sender must be the account's
            code, text = s.mail("other@example.test")
            self.assertEqual(code, 553)
            s.rset()
            msg = self.message("<sub-1@example.test>", sender="demo@example.test")
            refused = s.sendmail("demo@example.test",
                                 ["demo@example.test", "friend@foreign.example"], msg)
            self.assertEqual(refused, {})
        self.assert_stored("<sub-1@example.test>", msg, sender="demo@example.test")
        queued = self.psql("SELECT count(*) FROM outbound_queue q JOIN outbound_recipients r"
                           " ON r.queue_id = q.id WHERE r.recipient = 'friend@foreign.example'"
                           " AND q.sender = 'demo@example.test'")
        self.assertEqual(queued, "1")

    def test_starttls_injection(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.ports["submission"]),
                                      timeout=10) as raw:
            r, buf = read_reply(raw)
            self.assertTrue(r.startswith(b"220"))
            raw.sendall(b"EHLO client.example\r\n")
            r, buf = read_reply(raw, buf)
            self.assertTrue(r.startswith(b"250"))
            # the injected commands ride in the same packet as STARTTLS
            raw.sendall(b"STARTTLS\r\nRSET\r\nMAIL FROM:<demo@example.test>\r\n"
                        b"RCPT TO:<demo@example.test>\r\n")
            r, buf = read_reply(raw, buf)
            self.assertTrue(r.startswith(b"220"), r)
            self.assertEqual(buf, b"")
            tls = ctx.wrap_socket(raw, server_hostname="localhost")
            tls.sendall(b"NOOP\r\n")
            r, buf = read_reply(tls)
            # the next reply is NOOP's: nothing injected was answered
            self.assertTrue(r.startswith(b"250 2.0.0"), r)
            # and the session was reset: MAIL needs EHLO and AUTH again
            tls.sendall(b"MAIL FROM:<demo@example.test>\r\n")
            r, buf = read_reply(tls, buf)
            self.assertTrue(r.startswith(b"503") or r.startswith(b"530"), r)
            tls.sendall(b"QUIT\r\n")
            read_reply(tls, buf)

    def count(self, message_id):
        return int(self.psql("SELECT count(*) FROM messages WHERE message_id = '%s'"
                             % message_id))

    def kill_and_restart(self):
        self.proc.kill()
        self.proc.wait()
        type(self).proc = None
        self.assertTrue(self.spawn().startswith(b"220"))

    def test_kill_during_data(self):
        """SIGKILL in the middle of DATA: nothing visible. SIGKILL right
        after the final dot: at most one copy, and the client's retry
        (it saw no reply) leaves exactly one."""
        msg = self.message("<kill-1@remote.example>")
        head = (b"EHLO client.example\r\nMAIL FROM:<far@remote.example>\r\n"
                b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        with socket.create_connection(("127.0.0.1", self.ports["smtp"]), timeout=10) as s:
            r, buf = read_reply(s)
            s.sendall(head)
            for _ in range(4):
                r, buf = read_reply(s, buf)
            self.assertTrue(r.startswith(b"354"), r)
            s.sendall(msg[:len(msg) // 2])
            time.sleep(0.2)
            self.kill_and_restart()
        self.assertEqual(self.count("<kill-1@remote.example>"), 0)

        with socket.create_connection(("127.0.0.1", self.ports["smtp"]), timeout=10) as s:
            r, buf = read_reply(s)
            s.sendall(head)
            for _ in range(4):
                r, buf = read_reply(s, buf)
            self.assertTrue(r.startswith(b"354"), r)
            s.sendall(msg + b".\r\n")
            self.kill_and_restart()
        self.assertIn(self.count("<kill-1@remote.example>"), (0, 1))
        # the retry
        with smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=10) as s:
            self.assertEqual(s.sendmail("far@remote.example", ["demo@example.test"], msg), {})
        self.assertEqual(self.count("<kill-1@remote.example>"), 1)
        # acknowledged, then killed: still there
        msg2 = self.message("<kill-2@remote.example>")
        with smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=10) as s:
            self.assertEqual(s.sendmail("far@remote.example", ["demo@example.test"], msg2), {})
            self.kill_and_restart()
        self.assertEqual(self.count("<kill-2@remote.example>"), 1)
        self.assert_stored("<kill-2@remote.example>", msg2)

    def test_large_message_and_disconnect_during_delivery(self):
        """A 2 MiB message (parsed on the worker pool, not on the loop) is
        stored byte for byte; a client that sends a large message and
        closes right after the final dot (the parse or the statement still
        running) leaves at most one copy, the node keeps serving, and the
        retry leaves exactly one."""
        filler = b"".join(b"line %06d of a large message, plain text\r\n" % i
                          for i in range(48000))
        big = self.message("<large-1@remote.example>").replace(
            b"\r\n\r\n", b"\r\n\r\n" + filler, 1)
        self.assertGreater(len(big), 2 * 1024 * 1024)
        with smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=30) as s:
            self.assertEqual(s.sendmail("far@remote.example", ["demo@example.test"], big), {})
        self.assert_stored("<large-1@remote.example>", big)

        msg = big.replace(b"<large-1@", b"<large-2@", 1)
        head = (b"EHLO client.example\r\nMAIL FROM:<far@remote.example>\r\n"
                b"RCPT TO:<demo@example.test>\r\nDATA\r\n")
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", self.ports["smtp"]), timeout=10) as s:
                r, buf = read_reply(s)
                s.sendall(head)
                for _ in range(4):
                    r, buf = read_reply(s, buf)
                self.assertTrue(r.startswith(b"354"), r)
                s.sendall(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
            # closed without waiting for the reply
        with smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=30) as s:
            self.assertEqual(s.noop()[0], 250)
        # the duplicate guard: the three unanswered sends and the retry
        # leave one copy
        with smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=30) as s:
            self.assertEqual(s.sendmail("far@remote.example", ["demo@example.test"], msg),
                             {})
        self.assertEqual(self.count("<large-2@remote.example>"), 1)

    def test_lmtp_mixed_recipients(self):
        with socket.create_connection(("127.0.0.1", self.ports["lmtp"]), timeout=10) as s:
            r, buf = read_reply(s)
            self.assertTrue(r.startswith(b"220"))
            s.sendall(b"LHLO mta.example\r\n")
            r, buf = read_reply(s, buf)
            self.assertTrue(r.startswith(b"250"))
            script = [
                (b"MAIL FROM:<far@remote.example>\r\n", b"250"),
                (b"RCPT TO:<demo@example.test>\r\n", b"250"),
                (b"RCPT TO:<nobody@example.test>\r\n", b"550 5.1.1"),
                (b"RCPT TO:<victim@foreign.example>\r\n", b"55"),
                (b"RCPT TO:<other@example.test>\r\n", b"250"),
                (b"DATA\r\n", b"354"),
            ]
            for line, want in script:
                s.sendall(line)
                r, buf = read_reply(s, buf)
                self.assertTrue(r.startswith(want), (line, r))
            s.sendall(b"From: far@remote.example\r\nMessage-ID: <lmtp-1@remote.example>\r\n"
                      b"Subject: lmtp\r\n\r\nbody\r\n.\r\n")
            # one reply per accepted recipient: demo, other
            r1, buf = read_reply(s, buf)
            r2, buf = read_reply(s, buf)
            self.assertTrue(r1.startswith(b"250 2.0.0"), r1)
            self.assertTrue(r2.startswith(b"250 2.0.0"), r2)
            s.sendall(b"QUIT\r\n")
            read_reply(s, buf)
        self.assertIsNotNone(self.stored_body("<lmtp-1@remote.example>"))
        self.assertIsNotNone(self.stored_body("<lmtp-1@remote.example>",
                                              "other@example.test"))

    def test_postmaster_without_domain(self):
        # MX, smtplib: RCPT TO:<Postmaster>
        msg = self.message("<pm-mx@remote.example>", subject="abuse report")
        with smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=10) as s:
            s.ehlo("client.remote.example")
            s.mail("far@remote.example")
            code, text = s.rcpt("Postmaster")
            self.assertEqual(code, 250, text)
            code, text = s.data(msg)
            self.assertEqual(code, 250, text)
        body = self.stored_body("<pm-mx@remote.example>")
        self.assertIsNotNone(body, "not stored for postmaster@example.test")
        self.assertTrue(body.startswith(b"Return-Path: <far@remote.example>\r\n"
                                        b"Delivered-To: Postmaster\r\n"), body[:120])
        self.assertTrue(body.endswith(msg))
        # LMTP, any case: one reply for the one recipient
        with smtplib.LMTP("127.0.0.1", self.ports["lmtp"], timeout=10) as s:
            refused = s.sendmail("far@remote.example", ["pOSTMASTER"],
                                 self.message("<pm-lmtp@remote.example>"))
            self.assertEqual(refused, {})
        self.assertIsNotNone(self.stored_body("<pm-lmtp@remote.example>"))
        # swaks when installed
        swaks = shutil.which("swaks")
        if swaks is not None:
            p = subprocess.run([swaks, "--server", "127.0.0.1:%d" % self.ports["smtp"],
                                "--from", "swaks@remote.example", "--to", "postmaster",
                                "--header", "Message-Id: <pm-swaks@remote.example>",
                                "--body", "to the postmaster"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIsNotNone(self.stored_body("<pm-swaks@remote.example>"), p.stdout)


if __name__ == "__main__":
    unittest.main()
