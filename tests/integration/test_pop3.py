"""POP3 end to end: real poplib (and curl) against two postern-frontend
processes on a real PostgreSQL and Redis.

What is checked: USER/PASS and AUTH PLAIN logins, STAT, LIST, UIDL
("<uidvalidity>.<uid>", stable), RETR byte-exact (dot-stuffing undone by the
client), TOP, DELE then QUIT expunging in PostgreSQL, RSET, a dropped
connection after DELE removing nothing, \\Seen after RETR but not TOP, a
large message (sliced reads and backpressure), RETR and TOP served from
the node's body cache (the second RETR a hit, byte-exact, through
backpressure), the maildrop lock across
two frontends (-ERR [IN-USE]) and across sessions of one frontend, STLS
and POP3S with a certificate made by the openssl CLI, plaintext logins
refused without TLS where the client network is not trusted, and curl's
pop3:// client.

Needs POSTERN_PG_DSN, POSTERN_REDIS_HOST/PORT and POSTERN_BIN_DIR (see
tests/integration/runner.py); standard library only.
"""

import os
import poplib
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import frontend_support as fs


class Pop3Test(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        fs.skip_unless_ready(cls)
        cls.tmp = tempfile.mkdtemp(prefix="pn-pop3-")
        try:
            cls.store = fs.Store()
            cls.certs = fs.Certs(cls.tmp)
            cls.a = fs.Frontend("pop3-a", cls.store, cls.certs, folder=cls.tmp)
            # b: no plaintext logins from loopback without TLS
            cls.b = fs.Frontend("pop3-b", cls.store, cls.certs, folder=cls.tmp,
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

    def pop(self, fe=None, user=None, password=None):
        fe = fe or self.a
        p = poplib.POP3("127.0.0.1", fe.ports["pop3"], timeout=10)
        if user is not None:
            p.user(user)
            p.pass_(password)
        return p

    def test_commands(self):
        msgs = [fs.message("first"), fs.message("second", lines=10), fs.message("third")]
        user, pw, account, inbox, uids = self.new_user(msgs)
        uv = self.store.uidvalidity(account, inbox)
        p = self.pop()
        self.assertTrue(p.getwelcome().startswith(b"+OK"))
        caps = p.capa()
        for c in ("TOP", "UIDL", "USER", "RESP-CODES", "PIPELINING", "STLS", "SASL"):
            self.assertIn(c, caps)
        p.user(user)
        p.pass_(pw)
        self.assertEqual(p.stat(), (3, sum(len(m) for m in msgs)))
        resp, listing, _ = p.list()
        self.assertEqual(listing, [b"%d %d" % (i + 1, len(m)) for i, m in enumerate(msgs)])
        self.assertEqual(p.list(2), b"+OK 2 %d" % len(msgs[1]))
        resp, uidl, _ = p.uidl()
        self.assertEqual(uidl, [b"%d %d.%d" % (i + 1, uv, u) for i, u in enumerate(uids)])
        resp, lines, octets = p.retr(1)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", msgs[0])
        resp, lines, _ = p.top(2, 2)
        head, body = msgs[1].split(b"\r\n\r\n", 1)
        self.assertEqual(lines, head.split(b"\r\n") + [b""] + body.split(b"\r\n")[:2])
        self.assertTrue(p.noop().startswith(b"+OK"))
        p.dele(2)
        with self.assertRaises(poplib.error_proto):
            p.retr(2)
        self.assertEqual(p.stat()[0], 2)
        p.rset()
        self.assertEqual(p.stat()[0], 3)
        p.dele(3)
        self.assertIn(b"1 message deleted", p.quit())
        self.assertEqual(self.store.uids(account, inbox), uids[:2])
        # the UIDL of what is left is unchanged in the next session
        p = self.pop(user=user, password=pw)
        self.assertEqual(p.uidl()[1], [b"%d %d.%d" % (i + 1, uv, u)
                                       for i, u in enumerate(uids[:2])])
        p.quit()

    def test_seen_after_retr_not_top(self):
        user, pw, account, inbox, uids = self.new_user([fs.message("a"), fs.message("b")])
        p = self.pop(user=user, password=pw)
        p.top(1, 0)
        p.retr(2)
        p.quit()
        self.assertEqual(self.store.flags(account, inbox, uids[0]) & 1, 0)
        self.assertEqual(self.store.flags(account, inbox, uids[1]) & 1, 1)

    def test_dropped_connection_after_dele_deletes_nothing(self):
        user, pw, account, inbox, uids = self.new_user([fs.message("x"), fs.message("y")])
        p = self.pop(user=user, password=pw)
        p.dele(1)
        p.dele(2)
        p.close()  # no QUIT: the connection just ends
        # the lock is released once the frontend noticed; then log in again
        def relogin():
            try:
                q = self.pop(user=user, password=pw)
            except poplib.error_proto:
                return None
            return q
        q = fs.wait_for(relogin, 5)
        self.assertIsNotNone(q)
        self.assertEqual(q.stat()[0], 2)
        q.quit()
        self.assertEqual(self.store.uids(account, inbox), uids)

    def test_lock_across_frontends(self):
        user, pw, account, inbox, uids = self.new_user([fs.message("locked")])
        p = self.pop(self.a, user, pw)
        q = poplib.POP3("127.0.0.1", self.b.ports["pop3"], timeout=10)
        q.stls(context=self.certs.client_context())
        q.user(user)
        with self.assertRaises(poplib.error_proto) as cm:
            q.pass_(pw)
        self.assertIn(b"[IN-USE]", cm.exception.args[0])
        # and on the same frontend
        r = self.pop(self.a)
        r.user(user)
        with self.assertRaises(poplib.error_proto) as cm:
            r.pass_(pw)
        self.assertIn(b"[IN-USE]", cm.exception.args[0])
        r.quit()
        q.quit()
        p.quit()
        q = poplib.POP3_SSL("127.0.0.1", self.b.ports["pop3s"], timeout=10,
                            context=self.certs.client_context())
        q.user(user)
        q.pass_(pw)
        self.assertEqual(q.stat()[0], 1)
        q.quit()

    def test_stls_and_plaintext_policy(self):
        user, pw, account, inbox, uids = self.new_user([fs.message("tls")])
        q = poplib.POP3("127.0.0.1", self.b.ports["pop3"], timeout=10)
        with self.assertRaises(poplib.error_proto):
            q.user(user)  # b refuses plaintext logins from this network
        q.stls(context=self.certs.client_context())
        self.assertIsInstance(q.sock, ssl.SSLSocket)
        self.assertIn(q.sock.version(), ("TLSv1.2", "TLSv1.3"))
        q.user(user)
        q.pass_(pw)
        resp, lines, _ = q.retr(1)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", self.store_body(account, inbox, uids[0]))
        q.quit()

    def store_body(self, account, inbox, uid):
        hexbody = self.store.psql(
            "SELECT encode(b.body, 'hex') FROM messages m JOIN mail_blobs b "
            "ON b.sha256 = m.blob_sha256 WHERE m.account_id = %d AND m.mailbox_id = %d "
            "AND m.uid = %d" % (account, inbox, uid))
        return bytes.fromhex(hexbody)

    def test_pop3s_and_auth_plain(self):
        user, pw, account, inbox, uids = self.new_user([fs.message("implicit")])
        q = poplib.POP3_SSL("127.0.0.1", self.a.ports["pop3s"], timeout=10,
                            context=self.certs.client_context())
        self.assertTrue(q.getwelcome().startswith(b"+OK"))
        self.assertNotIn("STLS", q.capa())
        resp = q._shortcmd("AUTH PLAIN " + fs.sasl_plain(user, pw))
        self.assertTrue(resp.startswith(b"+OK"))
        self.assertEqual(q.stat()[0], 1)
        resp, lines, _ = q.retr(1)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", self.store_body(account, inbox, uids[0]))
        q.quit()
        # wrong password: [AUTH]
        q = poplib.POP3_SSL("127.0.0.1", self.a.ports["pop3s"], timeout=10,
                            context=self.certs.client_context())
        with self.assertRaises(poplib.error_proto) as cm:
            q._shortcmd("AUTH PLAIN " + fs.sasl_plain(user, "nope"))
        self.assertIn(b"[AUTH]", cm.exception.args[0])
        q.quit()

    def test_large_message(self):
        big = fs.message("big", extra=b"".join(
            b"%06d ....................................................................\r\n" % i
            for i in range(40000)))  # ~3 MB, many slices
        user, pw, account, inbox, uids = self.new_user([big])
        p = self.pop(user=user, password=pw)
        resp, lines, octets = p.retr(1)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", big)
        resp, lines, _ = p.top(1, 1)
        self.assertEqual(len(lines), big.split(b"\r\n\r\n", 1)[0].count(b"\r\n") + 1 + 1 + 1)
        p.quit()

    def test_retr_from_body_cache(self):
        # over one 256 KiB slice, under the 1 MiB read whole for the cache,
        # with lines to dot-stuff: served from a held cache entry through
        # the output buffer's backpressure
        body = fs.message("cached", extra=b"".join(
            b".%06d dot-stuffed line .........................................\r\n" % i
            for i in range(9000)))
        user, pw, account, inbox, uids = self.new_user([body, fs.message("small")])

        def count(result):
            return self.a.metric("postern_blob_cache_requests_total", result=result)
        hits, misses = count("hit"), count("miss")
        p = self.pop(user=user, password=pw)
        for _ in range(2):
            resp, lines, octets = p.retr(1)
            self.assertEqual(b"\r\n".join(lines) + b"\r\n", body)
        resp, lines, _ = p.top(1, 0)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", body.split(b"\r\n\r\n", 1)[0]
                         + b"\r\n\r\n")
        p.quit()
        # the first RETR read PostgreSQL, the second and TOP did not
        self.assertEqual(count("miss"), misses + 1)
        self.assertEqual(count("hit"), hits + 2)
        # another session (the same body, from the node's cache)
        p = self.pop(user=user, password=pw)
        resp, lines, octets = p.retr(1)
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", body)
        resp, lines, octets = p.retr(2)
        p.quit()
        self.assertEqual(count("hit"), hits + 3)
        self.assertEqual(count("miss"), misses + 2)

    def test_wrong_password_and_unknown_user(self):
        user, pw, account, inbox, uids = self.new_user()
        before = self.a.metric("postern_logins_total", protocol="pop3", result="bad")
        for u, w in ((user, "wrong"), ("nobody-%s@%s" % (os.urandom(3).hex(), self.store.domain),
                                       "x")):
            p = self.pop()
            p.user(u)
            with self.assertRaises(poplib.error_proto) as cm:
                p.pass_(w)
            self.assertIn(b"[AUTH]", cm.exception.args[0])
            p.quit()
        self.assertEqual(self.a.metric("postern_logins_total", protocol="pop3", result="bad"),
                         before + 2)

    @unittest.skipUnless(shutil.which("curl"), "curl not installed")
    def test_curl(self):
        body = fs.message("curl")
        user, pw, account, inbox, uids = self.new_user([body])
        r = subprocess.run(["curl", "-s", "--max-time", "10", "-u", "%s:%s" % (user, pw),
                            "pop3://127.0.0.1:%d/1" % self.a.ports["pop3"]],
                           capture_output=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, body)
        r = subprocess.run(["curl", "-s", "--max-time", "10", "--cacert", self.certs.ca,
                            "-u", "%s:%s" % (user, pw),
                            "pop3s://localhost:%d/" % self.a.ports["pop3s"]],
                           capture_output=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), b"1 %d" % len(body))


if __name__ == "__main__":
    unittest.main()
