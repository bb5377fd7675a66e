"""IMAP RFC 3501 gaps of issue #5, end to end with imaplib against two
postern-frontend processes on a real PostgreSQL and Redis.

What is checked:
- EXAMINE reports "* N RECENT" for the messages no session claimed, and
  claims none of them (a later EXAMINE and SELECT see them too); STATUS
  (RECENT) agrees; FETCH FLAGS shows \\Recent in the read-only session;
  after SELECT claimed them both say 0.
- A mailbox deleted or renamed away by a session on the other frontend
  while selected here: "* BYE Selected mailbox was deleted, have to
  disconnect." and the connection closes, at once in IDLE and without
  IDLE; also with Redis stopped (found by the periodic PostgreSQL check).
  The session's own DELETE closes its selection without a BYE; its own
  RENAME keeps the session going under the new name.
- INTERNALDATE keeps the zone given to APPEND ("17-Jul-1996 02:44:25
  -0700" FETCHes back the same string, also after COPY), delivered mail
  gets the offset of the database connection's zone, and SEARCH
  BEFORE/ON/SINCE use the day in the message's own zone.

Needs POSTERN_PG_DSN, POSTERN_REDIS_HOST/PORT and POSTERN_BIN_DIR (see
tests/integration/runner.py), e.g. `tests/run --quick --only imap_gaps`;
standard library only.
"""

import imaplib
import os
import re
import shutil
import socket
import tempfile
import time
import unittest

import frontend_support as fs

try:
    import services
except ImportError:  # run outside the runner
    services = None

GONE = b"* BYE Selected mailbox was deleted, have to disconnect."


def ok(resp):
    typ, data = resp
    if typ != "OK":
        raise AssertionError("IMAP command failed: %r %r" % (typ, data))
    return data


class Raw:
    """A line-level IMAP client (imaplib hides unsolicited BYE)."""

    def __init__(self, port, user, password):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        assert self.line().startswith(b"* OK")
        self.cmd(b'l LOGIN "%s" "%s"' % (user.encode(), password.encode()))

    def line(self, timeout=10):
        self.s.settimeout(timeout)
        while b"\r\n" not in self.buf:
            try:
                data = self.s.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            if not data:
                rest, self.buf = self.buf, b""
                return rest  # b"" at EOF
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def cmd(self, text):
        tag = text.split(b" ", 1)[0]
        self.s.sendall(text + b"\r\n")
        out = []
        while True:
            line = self.line()
            if not line:
                raise AssertionError("no reply to %r; got %r" % (text, out))
            out.append(line)
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise AssertionError("%r: %r" % (text, out))
                return out

    def until_closed(self, timeout):
        """Every line until the server closes; fails on a timeout."""
        deadline = time.time() + timeout
        out = []
        while time.time() < deadline:
            line = self.line(max(0.1, deadline - time.time()))
            if line is None:
                continue
            if line == b"":
                return out
            out.append(line)
        raise AssertionError("connection still open after %ss; got %r" % (timeout, out))

    def close(self):
        self.s.close()


class ImapGapsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        fs.skip_unless_ready(cls)
        cls.tmp = tempfile.mkdtemp(prefix="pn-imapgaps-")
        try:
            cls.store = fs.Store()
            cls.a = fs.Frontend("gaps-a", cls.store, folder=cls.tmp, services=("imap", "lmtp"))
            cls.b = fs.Frontend("gaps-b", cls.store, folder=cls.tmp, services=("imap",))
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
            if fe is not None and "event=imap_bug" in fe.log_text():
                bad.append("%s logged an IMAP adapter error:\n%s" % (fe.name, fe.log_tail(80)))
        if getattr(cls, "store", None) is not None:
            cls.store.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if bad:
            raise RuntimeError("\n".join(bad))

    def new_user(self, messages=()):
        local = "g" + os.urandom(4).hex()
        address, account, inbox = self.store.user(local, "pw-" + local)
        uids = [self.store.deliver(account, inbox, m) for m in messages]
        return address, "pw-" + local, account, inbox, uids

    def imap(self, user, password, fe=None):
        m = imaplib.IMAP4("127.0.0.1", (fe or self.a).ports["imap"], timeout=10)
        ok(m.login(user, password))
        return m

    # ---- 1. EXAMINE and \Recent ----

    def test_examine_reports_recent_without_claiming(self):
        user, pw, account, inbox, _ = self.new_user([fs.message("r1"), fs.message("r2")])
        e = self.imap(user, pw)
        ok(e.select("INBOX", readonly=True))
        self.assertEqual(e.untagged_responses.get("RECENT"), [b"2"])
        data = ok(e.fetch("1:2", "(FLAGS)"))
        self.assertTrue(all(b"\\Recent" in d for d in data), data)
        self.assertEqual(ok(e.search(None, "RECENT")), [b"1 2"])
        st = ok(e.status("INBOX", "(RECENT)"))
        self.assertIn(b"RECENT 2", st[0])
        # nothing was claimed: another EXAMINE, on the other frontend too
        e2 = self.imap(user, pw, fe=self.b)
        ok(e2.select("INBOX", readonly=True))
        self.assertEqual(e2.untagged_responses.get("RECENT"), [b"2"])
        e2.logout()
        self.assertEqual(self.store.psql(
            "SELECT recent_uid FROM mailboxes WHERE id = %d" % inbox), "0")
        # SELECT claims them; from then on nobody else sees them as recent
        s = self.imap(user, pw, fe=self.b)
        ok(s.select("INBOX"))
        self.assertEqual(s.untagged_responses.get("RECENT"), [b"2"])
        s.logout()
        e3 = self.imap(user, pw)
        ok(e3.select("INBOX", readonly=True))
        self.assertEqual(e3.untagged_responses.get("RECENT"), [b"0"])
        self.assertIn(b"RECENT 0", ok(e3.status("INBOX", "(RECENT)"))[0])
        # a new message shows as \Recent in the EXAMINE session, unclaimed
        ap = self.imap(user, pw, fe=self.b)
        self.assertEqual(ap.append("INBOX", None, None, fs.message("r3"))[0], "OK")
        ap.logout()
        time.sleep(0.5)
        ok(e3.noop())
        self.assertEqual(e3.untagged_responses.get("EXISTS", [b""])[-1], b"3")
        self.assertEqual(e3.untagged_responses.get("RECENT", [b""])[-1], b"1")
        self.assertIn(b"RECENT 1", ok(e3.status("INBOX", "(RECENT)"))[0])
        e3.logout()
        e.logout()

    # ---- 2. the selected mailbox goes away ----

    def _selected_raw(self, user, pw, name, fe=None):
        r = Raw((fe or self.a).ports["imap"], user, pw)
        r.cmd(b'c1 SELECT "%s"' % name.encode())
        return r

    def test_deleted_in_idle_gets_bye(self):
        user, pw, _, _, _ = self.new_user()
        m = self.imap(user, pw, fe=self.b)
        ok(m.create("Doomed"))
        ok(m.append("Doomed", None, None, fs.message("d1")))
        r = self._selected_raw(user, pw, "Doomed")
        r.s.sendall(b"i1 IDLE\r\n")
        self.assertTrue(r.line().startswith(b"+"))
        ok(m.delete("Doomed"))
        lines = r.until_closed(5)
        self.assertIn(GONE + b"\r\n", lines)
        r.close()
        m.logout()
        self.assertIn("event=imap_mailbox_gone", self.a.log_text())

    def test_renamed_away_gets_bye_without_idle(self):
        user, pw, _, _, _ = self.new_user()
        m = self.imap(user, pw, fe=self.b)
        ok(m.create("Proj/Moving"))
        r = self._selected_raw(user, pw, "Proj/Moving")
        ok(m.rename("Proj", "Done"))  # a superior: its inferiors are notified too
        lines = r.until_closed(5)
        self.assertIn(GONE + b"\r\n", lines)
        r.close()
        # renamed directly: the notification makes it at once
        ok(m.create("Plain"))
        r = self._selected_raw(user, pw, "Plain")
        ok(m.rename("Plain", "Other"))
        lines = r.until_closed(5)
        self.assertIn(GONE + b"\r\n", lines)
        r.close()
        m.logout()

    def test_own_delete_and_rename(self):
        user, pw, _, _, _ = self.new_user()
        m = self.imap(user, pw)
        ok(m.create("Mine"))
        ok(m.select("Mine"))
        ok(m.rename("Mine", "Yours"))
        time.sleep(0.5)  # the rename's notification reaches this session
        ok(m.noop())
        self.assertEqual(m.append("Yours", None, None, fs.message("own"))[0], "OK")
        self.assertEqual(m.untagged_responses.get("EXISTS", [b""])[-1], b"1")
        self.assertEqual(ok(m.fetch("1", "(UID)"))[0], b"1 (UID 1)")
        ok(m.delete("Yours"))
        # the selection is closed, the session goes on
        with self.assertRaises(imaplib.IMAP4.error):
            m.fetch("1", "(UID)")
        ok(m.noop())
        ok(m.select("INBOX"))
        m.logout()

    # ---- 3. INTERNALDATE with its zone ----

    def test_internaldate_keeps_zone(self):
        user, pw, account, inbox, _ = self.new_user([fs.message("delivered")])
        m = self.imap(user, pw)
        ok(m.create("Copies"))
        self.assertEqual(m.append("INBOX", None, '"17-Jul-1996 02:44:25 -0700"',
                                  fs.message("z1"))[0], "OK")
        self.assertEqual(m.append("INBOX", None, '"16-Jul-1996 23:30:00 -0700"',
                                  fs.message("z2"))[0], "OK")
        self.assertEqual(m.append("INBOX", None, '"17-Jul-1996 23:30:00 +0530"',
                                  fs.message("z3"))[0], "OK")
        ok(m.select("INBOX"))
        data = ok(m.fetch("2:4", "(INTERNALDATE)"))
        self.assertIn(b'INTERNALDATE "17-Jul-1996 02:44:25 -0700"', data[0])
        self.assertIn(b'INTERNALDATE "16-Jul-1996 23:30:00 -0700"', data[1])
        self.assertIn(b'INTERNALDATE "17-Jul-1996 23:30:00 +0530"', data[2])
        self.assertEqual(self.store.psql(
            "SELECT string_agg(internaldate_tz::text, ',' ORDER BY uid) FROM messages"
            " WHERE account_id = %d AND mailbox_id = %d" % (account, inbox)).split(",")[1:],
            ["-420", "-420", "330"])
        # delivered mail: the offset of the connection's zone at delivery
        tz = int(self.store.psql("SELECT (extract(timezone FROM now()) / 60)::integer"))
        zone = b'%s%02d%02d"' % (b"-" if tz < 0 else b"+", abs(tz) // 60, abs(tz) % 60)
        data = ok(m.fetch("1", "(INTERNALDATE)"))
        self.assertTrue(re.search(rb'INTERNALDATE "[^"]+ ' + re.escape(zone), data[0]), data)
        # the day in the message's own zone (17 Jul in UTC is 16 Jul here)
        self.assertEqual(ok(m.search(None, "ON", "16-Jul-1996")), [b"3"])
        self.assertEqual(ok(m.search(None, "ON", "17-Jul-1996")), [b"2 4"])
        self.assertEqual(ok(m.search(None, "BEFORE", "17-Jul-1996")), [b"3"])
        self.assertEqual(ok(m.search(None, "SINCE", "17-Jul-1996", "BEFORE", "1-Jan-2000")),
                         [b"2 4"])
        # COPY keeps the zone
        ok(m.copy("2", "Copies"))
        ok(m.select("Copies", readonly=True))
        data = ok(m.fetch("1", "(INTERNALDATE)"))
        self.assertIn(b'INTERNALDATE "17-Jul-1996 02:44:25 -0700"', data[0])
        m.logout()

    # ---- 2 again, without Redis (runs last) ----

    def test_zz_deleted_found_without_redis(self):
        d = os.environ.get("POSTERN_SERVICES_DIR")
        if not d or services is None:
            if fs.IN_CI:
                self.fail("POSTERN_SERVICES_DIR not set")
            self.skipTest("POSTERN_SERVICES_DIR not set")
        user, pw, _, _, _ = self.new_user()
        m = self.imap(user, pw, fe=self.b)
        ok(m.create("NoRedis"))
        services.stop_redis(d)
        try:
            r = self._selected_raw(user, pw, "NoRedis")
            r.s.sendall(b"i1 IDLE\r\n")
            self.assertTrue(r.line().startswith(b"+"))
            ok(m.delete("NoRedis"))
            lines = r.until_closed(10)  # the 2 s poll of PostgreSQL
            self.assertIn(GONE + b"\r\n", lines)
            r.close()
            m.logout()
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
