"""IMAP end to end: real imaplib (and curl) against two postern-frontend
processes on a real PostgreSQL and Redis.

What is checked: LOGIN (and LOGINDISABLED / refused before STARTTLS where
the client network is not trusted, then allowed after STARTTLS), CAPABILITY,
LIST/LSUB, CREATE/RENAME/DELETE, SELECT/EXAMINE, APPEND then FETCH byte for
byte (BODY[], BODY.PEEK[HEADER], ENVELOPE, BODYSTRUCTURE, FLAGS, \\Seen set
by a non-PEEK fetch), STORE +FLAGS \\Deleted and EXPUNGE (also in
PostgreSQL), COPY and MOVE with COPYUID, SEARCH with flag, size and header
substring keys, UID FETCH/STORE/SEARCH, IMAPS with real TLS, curl's imap://
FETCH, and across the two frontends: a session in IDLE on one frontend sees
EXISTS for an APPEND made on the other, for a message delivered over LMTP,
and EXPUNGE for an expunge made on the other or by a POP3 session; with
Redis stopped, IDLE still sees changes by polling. Also a large-message
FETCH (sliced output, batched reads), malformed commands answered BAD/NO
with the session surviving, and no FETCH echo of a session's own STORE.

Needs POSTERN_PG_DSN, POSTERN_REDIS_HOST/PORT and POSTERN_BIN_DIR (see
tests/integration/runner.py); standard library only.
"""

import imaplib
import os
import poplib
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import frontend_support as fs

try:
    import services
except ImportError:  # run outside the runner
    services = None


def mime_message(subject):
    return (b"From: Alice Example <alice@example.test>\r\n"
            b"To: bob@example.test\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
            b"Message-ID: <" + subject.encode() + b"@example.test>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
            b"X-Tracking: needle-" + subject.encode() + b"\r\n"
            b"\r\n"
            b"--b1\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"\r\n"
            b"First part\r\n"
            b"--b1\r\n"
            b"Content-Type: text/html\r\n"
            b"\r\n"
            b"<p>Second</p>\r\n"
            b"--b1--\r\n")


def ok(resp):
    typ, data = resp
    if typ != "OK":
        raise AssertionError("IMAP command failed: %r %r" % (typ, data))
    return data


class Idler:
    """IDLE on an imaplib connection (imaplib has no IDLE before 3.14)."""

    def __init__(self, m):
        self.m = m
        self.tag = b"IDL" + m._new_tag()
        m.send(self.tag + b" IDLE\r\n")
        line = m.readline()
        if not line.startswith(b"+"):
            raise AssertionError("IDLE refused: %r" % line)
        self.lines = []

    def wait_for(self, pattern, timeout):
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        sock = self.m.sock
        while time.time() < deadline:
            sock.settimeout(max(0.1, deadline - time.time()))
            try:
                line = self.m.readline()
            except (socket.timeout, TimeoutError):
                break
            if not line:
                break
            self.lines.append(line)
            if rx.search(line):
                sock.settimeout(10)
                return line
        sock.settimeout(10)
        raise AssertionError("no %r within %ss in IDLE; got %r" % (pattern, timeout, self.lines))

    def done(self):
        self.m.send(b"DONE\r\n")
        while True:
            line = self.m.readline()
            if not line:
                raise AssertionError("connection closed in IDLE")
            if line.startswith(self.tag + b" "):
                if not line.startswith(self.tag + b" OK"):
                    raise AssertionError("IDLE ended with %r" % line)
                return


class ImapTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        fs.skip_unless_ready(cls)
        cls.tmp = tempfile.mkdtemp(prefix="pn-imap-")
        try:
            cls.store = fs.Store()
            cls.certs = fs.Certs(cls.tmp)
            cls.a = fs.Frontend("imap-a", cls.store, cls.certs, folder=cls.tmp,
                                services=("imap", "imaps", "lmtp", "pop3"))
            # b: no plaintext logins from loopback without TLS
            cls.b = fs.Frontend("imap-b", cls.store, cls.certs, folder=cls.tmp,
                                services=("imap", "imaps"),
                                extra={"POSTERN_PLAINTEXT_AUTH_NETWORKS": ""})
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
            # the adapter never answers the engine wrongly
            if fe is not None and ("event=imap_bug" in fe.log_text() or
                                   "event=imap_message_refused" in fe.log_text()):
                bad.append("%s logged an IMAP adapter error:\n%s" % (fe.name, fe.log_tail(80)))
        if getattr(cls, "store", None) is not None:
            cls.store.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if bad:
            raise RuntimeError("\n".join(bad))

    def new_user(self, messages=()):
        local = "u" + os.urandom(4).hex()
        address, account, inbox = self.store.user(local, "pw-" + local)
        uids = [self.store.deliver(account, inbox, m) for m in messages]
        return address, "pw-" + local, account, inbox, uids

    def imap(self, user=None, password=None, fe=None):
        fe = fe or self.a
        m = imaplib.IMAP4("127.0.0.1", fe.ports["imap"], timeout=10)
        if user is not None:
            if fe is self.b:
                m.starttls(ssl_context=self.certs.client_context())
            ok(m.login(user, password))
        return m

    # ---- login and capabilities ----

    def test_login_and_capability(self):
        user, pw, _, _, _ = self.new_user()
        m = self.imap()
        caps = m.capabilities
        for c in ("IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "STARTTLS", "LITERAL+"):
            self.assertIn(c, caps)
        self.assertNotIn("LOGINDISABLED", caps)
        with self.assertRaises(imaplib.IMAP4.error):
            m.login(user, "wrong")
        ok(m.login(user, pw))
        data = ok(m.capability())
        self.assertIn(b"IDLE", data[0])
        ok(m.noop())
        m.logout()

    def test_login_refused_before_starttls(self):
        user, pw, _, _, _ = self.new_user()
        m = imaplib.IMAP4("127.0.0.1", self.b.ports["imap"], timeout=10)
        self.assertIn("LOGINDISABLED", m.capabilities)
        with self.assertRaises(imaplib.IMAP4.error):
            m.login(user, pw)
        m.starttls(ssl_context=self.certs.client_context())
        self.assertNotIn("LOGINDISABLED", m.capabilities)
        ok(m.login(user, pw))
        m.logout()

    def test_imaps(self):
        user, pw, _, _, _ = self.new_user([fs.message("tls")])
        m = imaplib.IMAP4_SSL("127.0.0.1", self.a.ports["imaps"],
                              ssl_context=self.certs.client_context(), timeout=10)
        self.assertIn(m.sock.version(), ("TLSv1.2", "TLSv1.3"))
        self.assertNotIn("STARTTLS", m.capabilities)
        ok(m.login(user, pw))
        self.assertEqual(ok(m.select("INBOX")), [b"1"])
        m.logout()

    # ---- mailboxes ----

    def test_mailboxes(self):
        user, pw, _, _, _ = self.new_user()
        m = self.imap(user, pw)
        ok(m.create("Projects"))
        ok(m.create("Projects/Alpha"))
        typ, _ = m.create("Projects")
        self.assertEqual(typ, "NO")
        names = [l for l in ok(m.list('""', "*"))]
        self.assertTrue(any(l.endswith(b'"/" INBOX') or l.endswith(b'"/" "INBOX"')
                            for l in names), names)
        self.assertTrue(any(b"Projects/Alpha" in l for l in names), names)
        top = ok(m.list('""', "%"))
        self.assertFalse(any(b"Projects/Alpha" in l for l in top), top)
        ok(m.rename("Projects/Alpha", "Projects/Beta"))
        names = ok(m.list('""', "Projects/*"))
        self.assertTrue(any(b"Projects/Beta" in l for l in names), names)
        self.assertFalse(any(b"Projects/Alpha" in l for l in names), names)
        ok(m.subscribe("Projects/Beta"))
        self.assertTrue(any(b"Projects/Beta" in l for l in ok(m.lsub('""', "*"))))
        ok(m.delete("Projects/Beta"))
        self.assertFalse(any(b"Beta" in (l or b"") for l in ok(m.list('""', "*"))))
        typ, _ = m.delete("INBOX")
        self.assertEqual(typ, "NO")
        typ, _ = m.select("Nope")
        self.assertEqual(typ, "NO")
        st = ok(m.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"))
        self.assertIn(b"MESSAGES 0", st[0])
        m.logout()

    def test_list_special_use(self):
        # A new account has the special-use folders; LIST (SPECIAL-USE)
        # (RFC 6154 3) lists only those, not INBOX or the user's own.
        user, pw, _, _, _ = self.new_user()
        m = self.imap(user, pw)
        ok(m.create("Projects"))
        typ, _ = m._simple_command("LIST", "(SPECIAL-USE)", '""', "*")
        self.assertEqual(typ, "OK")
        lines = m.untagged_responses.pop("LIST", [])
        names = sorted(l.rsplit(b" ", 1)[1].strip(b'"') for l in lines)
        self.assertEqual(names, [b"Archive", b"Drafts", b"Junk", b"Sent", b"Trash"], lines)
        for l in lines:
            self.assertRegex(l, rb"\\(Archive|Drafts|Junk|Sent|Trash)\b")
        everything = ok(m.list('""', "*"))
        self.assertTrue(any(b"Projects" in l for l in everything), everything)
        m.logout()

    # ---- messages ----

    def test_append_fetch_store_expunge(self):
        user, pw, account, inbox, _ = self.new_user()
        body = mime_message("fetchme")
        m = self.imap(user, pw)
        typ, data = m.append("INBOX", r"(\Flagged)", None, body)
        self.assertEqual(typ, "OK")
        self.assertIn(b"APPENDUID", data[0])
        uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
        self.assertEqual(ok(m.select("INBOX")), [b"1"])
        data = ok(m.fetch("1", "(FLAGS RFC822.SIZE BODY.PEEK[HEADER])"))
        head = body.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        self.assertEqual(data[0][1], head)
        self.assertIn(b"\\Flagged", data[0][0])
        self.assertIn(b"RFC822.SIZE %d" % len(body), data[0][0])
        self.assertNotIn(b"\\Seen", data[0][0])
        data = ok(m.fetch("1", "(BODY[])"))
        self.assertEqual(data[0][1], body)
        data = ok(m.fetch("1", "(FLAGS)"))
        self.assertIn(b"\\Seen", data[0])
        self.assertEqual(self.store.flags(account, inbox, uid) & 1, 1)
        data = ok(m.fetch("1", "(ENVELOPE)"))
        self.assertIn(b'"Mon, 1 Jan 2024 10:00:00 +0000" "fetchme"', data[0])
        self.assertIn(b'(("Alice Example" NIL "alice" "example.test"))', data[0])
        data = ok(m.fetch("1", "(BODYSTRUCTURE)"))
        bs = data[0].lower()  # IMAP strings here compare case-insensitively
        self.assertIn(b'(("text" "plain" ("charset" "utf-8") nil nil "7bit" 10 ', bs)
        self.assertIn(b'("text" "html" ("charset" "us-ascii") nil nil "7bit" 13 ', bs)
        self.assertIn(b'"mixed" ("boundary" "b1")', bs)
        data = ok(m.fetch("1", "(BODY.PEEK[2])"))
        self.assertEqual(data[0][1], b"<p>Second</p>")
        # STORE, EXPUNGE
        data = ok(m.store("1", "+FLAGS", r"(\Deleted)"))
        self.assertIn(b"\\Deleted", data[0])
        self.assertEqual(self.store.flags(account, inbox, uid) & 8, 8)
        data = ok(m.expunge())
        self.assertEqual(data, [b"1"])
        self.assertEqual(self.store.uids(account, inbox), [])
        m.logout()

    def test_large_message(self):
        user, pw, account, inbox, _ = self.new_user()
        big = fs.message("big", lines=60000)  # about 1.3 MB
        m = self.imap(user, pw)
        self.assertEqual(m.append("INBOX", None, None, big)[0], "OK")
        ok(m.select("INBOX"))
        for i in range(3):
            self.assertEqual(m.append("INBOX", None, None, big)[0], "OK")
        data = ok(m.fetch("1:*", "(RFC822.SIZE BODY.PEEK[])"))
        bodies = [d[1] for d in data if isinstance(d, tuple)]
        self.assertEqual(len(bodies), 4)
        for b in bodies:
            self.assertEqual(fs.sha256(b), fs.sha256(big))
        self.assertEqual(ok(m.search(None, "BODY", '"line 59999 of big"')), [b"1 2 3 4"])
        # more messages than one storage read holds: read in batches
        medium = [fs.message("medium%d" % i, lines=3000) for i in range(12)]
        for body in medium:
            self.assertEqual(m.append("INBOX", None, None, body)[0], "OK")
        data = ok(m.fetch("1:*", "(BODY.PEEK[])"))
        bodies = [d[1] for d in data if isinstance(d, tuple)]
        self.assertEqual(bodies, [big] * 4 + medium)
        self.assertEqual(ok(m.search(None, "BODY", "medium11")), [b"16"])
        m.logout()

    def test_examine_is_readonly(self):
        user, pw, account, inbox, uids = self.new_user([fs.message("ro")])
        m = self.imap(user, pw)
        ok(m.select("INBOX", readonly=True))
        ok(m.fetch("1", "(BODY[])"))
        self.assertEqual(self.store.flags(account, inbox, uids[0]) & 1, 0)
        typ, _ = m.store("1", "+FLAGS", r"(\Deleted)")
        self.assertEqual(typ, "NO")
        m.logout()

    def test_copy_move_search_uid(self):
        msgs = [mime_message("one"), fs.message("two", lines=200), mime_message("three")]
        user, pw, account, inbox, uids = self.new_user(msgs)
        m = self.imap(user, pw)
        ok(m.create("Archive2"))
        self.assertEqual(ok(m.select("INBOX")), [b"3"])
        # SEARCH
        self.assertEqual(ok(m.search(None, "ALL")), [b"1 2 3"])
        self.assertEqual(ok(m.search(None, "LARGER", "1000")), [b"2"])
        self.assertEqual(ok(m.search(None, "HEADER", "X-Tracking", "needle-thr")), [b"3"])
        self.assertEqual(ok(m.search(None, "SUBJECT", "ONE")), [b"1"])
        self.assertEqual(ok(m.search(None, "FROM", "alice", "NOT", "SUBJECT", "one")), [b"3"])
        self.assertEqual(ok(m.search(None, "BODY", "Second")), [b"1 3"])
        ok(m.store("2", "+FLAGS", r"(\Answered)"))
        self.assertEqual(ok(m.search(None, "ANSWERED")), [b"2"])
        self.assertEqual(ok(m.search(None, "UNANSWERED")), [b"1 3"])
        # UID commands
        uidlist = b" ".join(b"%d" % u for u in uids)
        self.assertEqual(ok(m.uid("SEARCH", "ALL")), [uidlist])
        data = ok(m.uid("FETCH", "%d" % uids[2], "(UID BODY.PEEK[])"))
        self.assertEqual(data[0][1], msgs[2])
        self.assertIn(b"UID %d" % uids[2], data[0][0])
        ok(m.uid("STORE", "%d" % uids[0], "+FLAGS", r"(\Flagged)"))
        self.assertEqual(ok(m.uid("SEARCH", "FLAGGED")), [b"%d" % uids[0]])
        # COPY then MOVE
        typ, data = m.copy("1", "Archive2")
        self.assertEqual(typ, "OK")
        self.assertIn(b"COPYUID", data[0])
        typ, data = m.uid("MOVE", "%d" % uids[1], "Archive2")
        self.assertEqual(typ, "OK")
        self.assertEqual(self.store.uids(account, inbox), [uids[0], uids[2]])
        self.assertEqual(ok(m.search(None, "ALL")), [b"1 2"])
        typ, _ = m.copy("1", "Nowhere")
        self.assertEqual(typ, "NO")
        ok(m.select("Archive2"))
        data = ok(m.fetch("1:*", "(BODY.PEEK[])"))
        bodies = [d[1] for d in data if isinstance(d, tuple)]
        self.assertEqual(bodies, [msgs[0], msgs[1]])
        # UID EXPUNGE of one message
        ok(m.store("1:2", "+FLAGS", r"(\Deleted)"))
        st = ok(m.uid("SEARCH", "ALL"))[0].split()
        ok(m.uid("EXPUNGE", st[0].decode()))
        self.assertEqual(ok(m.search(None, "ALL")), [b"1"])
        ok(m.close())
        m.logout()

    def test_curl_fetch(self):
        if shutil.which("curl") is None:
            self.skipTest("curl is not installed")
        body = mime_message("curl")
        user, pw, _, _, uids = self.new_user([body])
        url = "imap://127.0.0.1:%d/INBOX;UID=%d" % (self.a.ports["imap"], uids[0])
        r = subprocess.run(["curl", "-sS", "--max-time", "10", "-u", "%s:%s" % (user, pw), url],
                           capture_output=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, body)

    def test_curl_search(self):
        if shutil.which("curl") is None:
            self.skipTest("curl is not installed")
        user, pw, _, _, _ = self.new_user([fs.message("alpha"), mime_message("curlsearch")])
        url = "imap://127.0.0.1:%d/INBOX?SUBJECT%%20curlsearch" % self.a.ports["imap"]
        r = subprocess.run(["curl", "-sS", "--max-time", "10", "-u", "%s:%s" % (user, pw), url],
                           capture_output=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), b"* SEARCH 2")

    def test_own_store_not_echoed(self):
        user, pw, _, _, _ = self.new_user([fs.message("own")])
        m = self.imap(user, pw)
        ok(m.select("INBOX"))
        data = ok(m.store("1", "+FLAGS", r"(\Flagged)"))
        self.assertIn(b"\\Flagged", data[0])
        time.sleep(0.5)  # the change notification comes back meanwhile
        ok(m.noop())
        self.assertIsNone(m.untagged_responses.get("FETCH"), m.untagged_responses)
        m.logout()

    def test_bad_input_survives(self):
        user, pw, _, _, _ = self.new_user([fs.message("bad")])
        s = socket.create_connection(("127.0.0.1", self.a.ports["imap"]), timeout=10)
        self.assertTrue(fs.read_line(s).startswith(b"* OK"))
        bad = [b"x1 FROB", b"x2 SELECT", b"x3 FETCH 1 (BODY[", b"x4 LOGIN a",
               b"(((", b"x5 UID FROB 1", b"x6 STORE 1 +FLAGS (\\Deleted"]
        for line in bad:
            s.sendall(line + b"\r\n")
            reply = fs.read_line(s)
            self.assertRegex(reply, rb"^(x\d|\*) (BAD|NO) ", (line, reply))
        s.sendall(b'x7 LOGIN "%s" "%s"\r\n' % (user.encode(), pw.encode()))
        while True:
            reply = fs.read_line(s)
            if reply.startswith(b"x7 ") or not reply:
                break
        self.assertTrue(reply.startswith(b"x7 OK"), reply)
        s.sendall(b"x8 SELECT INBOX\r\nx9 FETCH 99 FLAGS\r\nx10 FETCH 1 (FLAGS)\r\n")
        text = b""
        while b"x10 " not in text:
            line = fs.read_line(s)
            if not line:
                break
            text += line
        self.assertIn(b"x8 OK", text)
        self.assertRegex(text, rb"x9 (BAD|NO|OK)")
        self.assertIn(b"* 1 FETCH (FLAGS", text)
        self.assertIn(b"x10 OK", text)
        s.close()

    # ---- across frontends ----

    def test_idle_sees_changes_from_other_frontend(self):
        user, pw, account, inbox, uids = self.new_user([fs.message("first")])
        a = self.imap(user, pw)
        self.assertEqual(ok(a.select("INBOX")), [b"1"])
        b = self.imap(user, pw, fe=self.b)
        ok(b.select("INBOX"))
        idle = Idler(a)
        # APPEND on frontend b: EXISTS on frontend a, at once
        typ, data = b.append("INBOX", None, None, fs.message("second"))
        self.assertEqual(typ, "OK")
        idle.wait_for(rb"^\* 2 EXISTS", 5)
        # delivery over LMTP on frontend a
        with smtplib.LMTP("127.0.0.1", self.a.ports["lmtp"], timeout=10) as lm:
            lm.sendmail("far@remote.example", [user], fs.message("third"))
        idle.wait_for(rb"^\* 3 EXISTS", 5)
        # flags and expunge from b
        ok(b.noop())
        ok(b.store("1", "+FLAGS", r"(\Deleted)"))
        idle.wait_for(rb"^\* 1 FETCH \(.*\\Deleted", 5)
        ok(b.expunge())
        idle.wait_for(rb"^\* 1 EXPUNGE", 5)
        idle.done()
        # the view is consistent: two messages, the right ones
        data = ok(a.fetch("1:*", "(UID)"))
        self.assertEqual(len(data), 2)
        self.assertEqual(self.store.uids(account, inbox),
                         [int(re.search(rb"UID (\d+)", d).group(1)) for d in data])
        # without IDLE the change shows at the next command
        b.append("INBOX", None, None, fs.message("fourth"))
        time.sleep(0.5)
        typ, _ = a.noop()
        self.assertEqual(typ, "OK")
        self.assertEqual(a.untagged_responses.get("EXISTS", [b""])[-1], b"3")
        a.logout()
        b.logout()

    def test_drain_says_bye_in_idle(self):
        c = fs.Frontend("imap-c", self.store, self.certs, folder=self.tmp, services=("imap",))
        try:
            user, pw, _, _, _ = self.new_user([fs.message("d1")])
            m = self.imap(user, pw, fe=c)
            ok(m.select("INBOX"))
            idle = Idler(m)
            c.signal(signal.SIGTERM)
            idle.wait_for(rb"^\* BYE", 10)
            self.assertEqual(c.proc.wait(timeout=15), 0, c.log_tail())
        finally:
            c.stop()

    def test_pop3_expunge_reaches_imap_idle(self):
        user, pw, account, inbox, uids = self.new_user([fs.message("p1"), fs.message("p2")])
        a = self.imap(user, pw, fe=self.b)
        self.assertEqual(ok(a.select("INBOX")), [b"2"])
        idle = Idler(a)
        p = poplib.POP3("127.0.0.1", self.a.ports["pop3"], timeout=10)
        p.user(user)
        p.pass_(pw)
        p.dele(1)
        p.quit()
        idle.wait_for(rb"^\* 1 EXPUNGE", 5)
        idle.done()
        data = ok(a.fetch("1:*", "(UID)"))
        self.assertEqual(len(data), 1)
        self.assertIn(b"UID %d" % uids[1], data[0])
        a.logout()

    def test_zz_idle_polls_without_redis(self):
        # (runs last: Redis clients reconnect with a backoff afterwards)
        # With Redis down IMAP works on PostgreSQL alone and IDLE falls
        # back to a short poll: the change still arrives, a bit later.
        d = os.environ.get("POSTERN_SERVICES_DIR")
        if not d or services is None:
            if fs.IN_CI:
                self.fail("POSTERN_SERVICES_DIR not set")
            self.skipTest("POSTERN_SERVICES_DIR not set")
        user, pw, account, inbox, uids = self.new_user([fs.message("r1")])
        a = self.imap(user, pw)
        ok(a.select("INBOX"))
        services.stop_redis(d)
        try:
            b = self.imap(user, pw, fe=self.b)
            ok(b.select("INBOX"))
            idle = Idler(a)
            self.assertEqual(b.append("INBOX", None, None, fs.message("r2"))[0], "OK")
            idle.wait_for(rb"^\* 2 EXISTS", 8)
            ok(b.store("1", "+FLAGS", r"(\Deleted)"))
            ok(b.expunge())
            idle.wait_for(rb"^\* 1 EXPUNGE", 8)
            idle.done()
            self.assertEqual(ok(a.search(None, "ALL")), [b"1"])
            a.logout()
            b.logout()
        finally:
            services.start_redis(d)
            for fe in (self.a, self.b):
                def redis_ok():
                    status, body = fe.readyz()
                    checks = {c["name"]: c for c in body["checks"]}
                    return status == 200 and "detail" not in checks["redis"]
                self.assertTrue(fs.wait_for(redis_ok, 30), fe.readyz())


if __name__ == "__main__":
    unittest.main()
