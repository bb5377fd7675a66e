"""The local cluster end to end, as a new user meets it from the README.

`deploy/local/cluster up` starts the balancer and two frontends (on the test
run's PostgreSQL and Redis, --external-services, in a private state folder and
port range), provisions the demo tenant, and then real clients go through the
balancer only: swaks submits over STARTTLS with AUTH, POP3 (STLS and POP3S)
and curl read the message back byte for byte, MX accepts local mail and
refuses relaying. A frontend killed with SIGKILL must not fail any new
connection through the balancer, and `up` brings it back.
"""
import imaplib
import json
import os
import poplib
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid

SRC = os.environ.get("POSTERN_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("POSTERN_BIN_DIR") or os.path.join(SRC, "build")
CLUSTER = os.path.join(SRC, "deploy", "local", "cluster.py")
# Every port of the cluster is derived from BASE (for 3000: balancer
# 3024..3995, frontends 13024..14995, admin 12080..12092): below the
# kernel's ephemeral range (32768+, where other tests' outgoing connections
# live), below the harness's service ports (15000+) and clear of a
# developer's default cluster (base 1000). BASE is the first of 3000, 2900,
# ..., 2000 whose every port is free, so that a cluster someone runs by hand
# with one of these bases does not fail the test.
sys.path.insert(0, os.path.dirname(CLUSTER))
import cluster  # noqa: E402
import services  # noqa: E402


def _free_base():
    for base in range(3000, 1999, -100):
        ports = []
        for p in cluster.process_table(cluster.Cluster(port_base=base)):
            ports += list(p.listen.values()) + [p.admin]
        if all(services.port_is_free(x) for x in ports):
            return base
    return 3000   # up then says which port is taken


BASE = _free_base()
DEMO, PASSWORD = "demo@example.test", "demo"


def needs(*names):
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise unittest.SkipTest("not set: " + ", ".join(missing))


class ClusterEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        needs("POSTERN_PG_DSN", "POSTERN_REDIS_HOST", "POSTERN_REDIS_PORT")
        for daemon in ("balancer/postern-balancer", "frontend/postern-frontend",
                       "storage/posternctl"):
            if not os.access(os.path.join(BIN, daemon), os.X_OK):
                raise unittest.SkipTest(daemon + " is not built in " + BIN)
        cls.var = tempfile.mkdtemp(prefix="pn-e2e-")
        cls.addClassCleanup(shutil.rmtree, cls.var, True)
        cls.addClassCleanup(cls.cluster, "down")
        p = cls.cluster("up", "--port-base", str(BASE))
        if p.returncode != 0:
            raise AssertionError("cluster up failed (exit %d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
        cls.status = json.loads(cls.cluster("status", "--json").stdout)
        cls.ca = ssl.create_default_context(cafile=os.path.join(cls.var, "tls", "ca.crt"))

    @classmethod
    def cluster(cls, *args):
        return subprocess.run(
            ["python3", CLUSTER, "--var", cls.var, "--bin-dir", BIN,
             "--external-services", *args],
            capture_output=True, text=True, timeout=180, cwd=SRC)

    def procs(self):
        st = json.loads(self.cluster("status", "--json").stdout)
        return {p["name"]: p for p in st["processes"]}

    def submit(self, subject):
        body = "From: %s\nSubject: %s\nMessage-Id: <%s@e2e.test>\n\nline one\n.dot line\n" % (DEMO,
            subject, uuid.uuid4().hex)
        p = subprocess.run(
            ["swaks", "--server", "127.0.0.1:%d" % (BASE + 587), "--tls",
             "--tls-ca-path", os.path.join(self.var, "tls", "ca.crt"),
             "--auth-user", DEMO, "--auth-password", PASSWORD,
             "--from", DEMO, "--to", DEMO, "--data", body],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("250 2.0.0", p.stdout)

    def find(self, pop, subject):
        """The message number whose Subject is subject, or None."""
        n, _ = pop.stat()
        for i in range(n, 0, -1):
            _, lines, _ = pop.top(i, 0)
            if ("Subject: " + subject).encode() in lines:
                return i
        return None

    # The balancer's /readyz has one check per listener, failing while no
    # frontend passes that protocol's probe: all of them must pass.
    SERVED = ("imap", "imaps", "pop3", "pop3s", "smtp", "submission", "submissions", "lmtp")

    def readyz(self, url):
        try:
            with urllib.request.urlopen(url + "readyz", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def test_status_lists_the_processes(self):
        procs = self.procs()
        for name in ("balancer", "frontend-1", "frontend-2"):
            self.assertIn(name, procs)
            self.assertTrue(procs[name]["running"], procs[name])
            self.assertGreater(procs[name]["pid"], 0)
        for name in ("frontend-1", "frontend-2"):
            status, body = self.readyz(procs[name]["admin_url"])
            self.assertEqual(status, 200, body)
        status, body = self.readyz(procs["balancer"]["admin_url"])
        self.assertEqual(status, 200, body)
        checks = {c["name"]: c for c in body["checks"]}
        for proto in self.SERVED:
            self.assertTrue(checks[proto]["ok"], checks[proto])

    def test_submit_then_read_over_pop3_through_the_balancer(self):
        subject = "e2e " + uuid.uuid4().hex
        self.submit(subject)
        pop = poplib.POP3("127.0.0.1", BASE + 110, timeout=15)
        pop.stls(self.ca)
        pop.user(DEMO)
        pop.pass_(PASSWORD)
        i = self.find(pop, subject)
        self.assertIsNotNone(i, "the submitted message is not in the maildrop")
        _, lines, _ = pop.retr(i)
        pop.quit()
        text = b"\r\n".join(lines)
        self.assertIn(b"Return-Path: <demo@example.test>", text)
        self.assertIn(b"(authenticated as demo@example.test)", text)
        # dot-stuffing undone on the way in and out: the body is as sent
        # (swaks ends its body with one blank line of its own)
        self.assertTrue(text.endswith(b"\r\n\r\nline one\r\n.dot line\r\n"), text[-60:])

        # the same message over implicit TLS and with curl
        pop = poplib.POP3_SSL("127.0.0.1", BASE + 995, context=self.ca, timeout=15)
        pop.user(DEMO)
        pop.pass_(PASSWORD)
        self.assertEqual(self.find(pop, subject), i)
        pop.quit()
        out = subprocess.run(
            ["curl", "-sS", "--cacert", os.path.join(self.var, "tls", "ca.crt"),
             "pop3s://127.0.0.1:%d/%d" % (BASE + 995, i), "-u", DEMO + ":" + PASSWORD],
            capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(("Subject: " + subject).encode(), out.stdout)

    def test_submit_then_read_over_imap_through_the_balancer(self):
        subject = "imap " + uuid.uuid4().hex
        self.submit(subject)
        im = imaplib.IMAP4("127.0.0.1", BASE + 143, timeout=15)
        im.starttls(self.ca)
        im.login(DEMO, PASSWORD)
        im.select("INBOX")
        typ, data = im.search(None, "SUBJECT", '"%s"' % subject)
        self.assertEqual(typ, "OK")
        nums = data[0].split()
        self.assertEqual(len(nums), 1, data)
        typ, data = im.fetch(nums[0], "(BODY.PEEK[] FLAGS)")
        self.assertEqual(typ, "OK")
        raw = data[0][1]
        self.assertIn(("Subject: " + subject).encode(), raw)
        # exactly as swaks sent it (its own blank line ends the body)
        self.assertTrue(raw.endswith(b"\r\n\r\nline one\r\n.dot line\r\n\r\n"), raw[-60:])
        # file it into Archive and delete it from INBOX, as a mail client does
        typ, _ = im.copy(nums[0], "Archive")
        self.assertEqual(typ, "OK")
        im.store(nums[0], "+FLAGS", "\\Deleted")
        im.expunge()
        typ, data = im.search(None, "SUBJECT", '"%s"' % subject)
        self.assertEqual(data[0].split(), [])
        im.select("Archive", readonly=True)
        typ, data = im.search(None, "SUBJECT", '"%s"' % subject)
        self.assertEqual(len(data[0].split()), 1)
        im.logout()
        # implicit TLS too
        im = imaplib.IMAP4_SSL("127.0.0.1", BASE + 993, ssl_context=self.ca, timeout=15)
        im.login(DEMO, PASSWORD)
        self.assertEqual(im.select("Archive", readonly=True)[0], "OK")
        im.logout()

    def test_mx_accepts_local_and_refuses_relay(self):
        s = smtplib.SMTP("127.0.0.1", BASE + 25, timeout=15)
        s.starttls(context=self.ca)
        subject = "mx " + uuid.uuid4().hex
        refused = s.sendmail("alice@remote.test", [DEMO],
                             ("Subject: %s\r\n\r\nhi\r\n" % subject).encode())
        self.assertEqual(refused, {})
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            s.sendmail("alice@remote.test", ["bob@elsewhere.test"], b"Subject: x\r\n\r\nx\r\n")
        code, _ = cm.exception.recipients["bob@elsewhere.test"]
        self.assertIn(code, (550, 554))
        # RFC 5321 4.5.1: the bare <Postmaster> is accepted; the demo's
        # postmaster@example.test alias hands it to the demo user
        s.ehlo("client.example")
        s.mail("alice@remote.test")
        code, text = s.rcpt("<Postmaster>")
        self.assertEqual(code, 250, text)
        pm_subject = "postmaster " + uuid.uuid4().hex
        code, text = s.data(("Subject: %s\r\n\r\nhi\r\n" % pm_subject).encode())
        self.assertEqual(code, 250, text)
        s.quit()
        pop = poplib.POP3_SSL("127.0.0.1", BASE + 995, context=self.ca, timeout=15)
        pop.user(DEMO)
        pop.pass_(PASSWORD)
        self.assertIsNotNone(self.find(pop, subject))
        self.assertIsNotNone(self.find(pop, pm_subject))
        pop.quit()

    def test_mpop_retrieves_into_a_maildir(self):
        # Debian's mpop, a real POP3 retrieval client, over STLS through the
        # balancer, keeping the mail on the server (keep on).
        if shutil.which("mpop") is None:
            self.skipTest("mpop is not installed (deploy/install-deps installs it)")
        subject = "mpop " + uuid.uuid4().hex
        s = smtplib.SMTP("127.0.0.1", BASE + 25, timeout=15)
        s.sendmail("carol@remote.test", [DEMO],
                   ("Subject: %s\r\n\r\nfetched by mpop\r\n" % subject).encode())
        s.quit()
        work = tempfile.mkdtemp(prefix="pn-mpop-", dir=self.var)
        maildir = os.path.join(work, "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(maildir, sub))
        conf = os.path.join(work, "mpoprc")
        with open(conf, "w") as f:
            f.write("defaults\ntls on\ntls_starttls on\ntls_trust_file %s\n"
                    "account default\nhost 127.0.0.1\nport %d\nuser %s\npassword %s\n"
                    "auth user\ndelivery maildir %s\nkeep on\nuidls_file %s\n"
                    % (os.path.join(self.var, "tls", "ca.crt"), BASE + 110, DEMO, PASSWORD,
                       maildir, os.path.join(work, "uidls")))
        os.chmod(conf, 0o600)
        p = subprocess.run(["mpop", "-C", conf, "-a"], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        got = []
        for name in os.listdir(os.path.join(maildir, "new")):
            with open(os.path.join(maildir, "new", name), "rb") as f:
                got.append(f.read())
        self.assertTrue(any(("Subject: " + subject).encode() in m for m in got),
                        "%d messages fetched, none with the subject" % len(got))
        # keep on: the message is still on the server
        pop = poplib.POP3_SSL("127.0.0.1", BASE + 995, context=self.ca, timeout=15)
        pop.user(DEMO)
        pop.pass_(PASSWORD)
        self.assertIsNotNone(self.find(pop, subject))
        pop.quit()

    def test_mbsync_pulls_inbox_into_a_maildir(self):
        # isync's mbsync, a real IMAP sync client: STARTTLS through the
        # balancer, pull INBOX into a local Maildir, then pull again after
        # a flag change made by another session.
        if shutil.which("mbsync") is None:
            self.skipTest("mbsync is not installed (deploy/install-deps installs isync)")
        subject = "mbsync " + uuid.uuid4().hex
        self.submit(subject)
        work = tempfile.mkdtemp(prefix="pn-mbsync-", dir=self.var)
        local = os.path.join(work, "mail") + "/"
        os.makedirs(local)  # mbsync creates the folders, not the store's root
        rc = os.path.join(work, "mbsyncrc")
        with open(rc, "w") as f:
            # Host by name: isync 1.4 matches DNS names only, not the
            # certificate's IP address entry
            f.write("IMAPAccount demo\nHost localhost\nPort %d\nUser %s\nPass %s\n"
                    "SSLType STARTTLS\nCertificateFile %s\n\n"
                    "IMAPStore remote\nAccount demo\n\n"
                    "MaildirStore local\nPath %s\nInbox %sINBOX\n\n"
                    "Channel demo\nFar :remote:\nNear :local:\nPatterns INBOX\n"
                    "Create Near\nSync Pull\nSyncState *\n"
                    % (BASE + 143, DEMO, PASSWORD,
                       os.path.join(self.var, "tls", "ca.crt"), local, local))
        os.chmod(rc, 0o600)

        def pull():
            p = subprocess.run(["mbsync", "-c", rc, "-a"], capture_output=True, text=True,
                               timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

        def local_files():
            found = {}
            for sub in ("cur", "new"):
                d = os.path.join(local, "INBOX", sub)
                for name in os.listdir(d):
                    with open(os.path.join(d, name), "rb") as f:
                        found[name] = f.read()
            return found

        pull()
        mine = [n for n, m in local_files().items() if ("Subject: " + subject).encode() in m]
        self.assertEqual(len(mine), 1, "the message was not pulled exactly once")
        # flag it \Flagged from another IMAP session; the next pull carries
        # the flag into the Maildir file name (",F" info flag)
        im = imaplib.IMAP4_SSL("127.0.0.1", BASE + 993, ssl_context=self.ca, timeout=15)
        im.login(DEMO, PASSWORD)
        im.select("INBOX")
        _, data = im.search(None, "SUBJECT", '"%s"' % subject)
        im.store(data[0].split()[0], "+FLAGS", "\\Flagged")
        im.logout()
        pull()
        mine = [n for n, m in local_files().items() if ("Subject: " + subject).encode() in m]
        self.assertEqual(len(mine), 1)
        self.assertIn("F", mine[0].rsplit(",", 1)[-1], mine[0])

    def test_zz_frontend_killed_no_new_connection_fails(self):
        # runs last in this class (name order): it kills and restarts a node
        procs = self.procs()
        victim = procs["frontend-1"]["pid"]
        os.kill(victim, signal.SIGKILL)
        ok = 0
        for _ in range(20):
            pop = poplib.POP3("127.0.0.1", BASE + 110, timeout=15)
            self.assertTrue(pop.getwelcome().startswith(b"+OK"), pop.getwelcome())
            pop.stls(self.ca)
            pop.user(DEMO)
            pop.pass_(PASSWORD)
            pop.quit()
            ok += 1
        self.assertEqual(ok, 20)
        p = self.cluster("up", "--port-base", str(BASE))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        procs = self.procs()
        self.assertTrue(procs["frontend-1"]["running"])
        self.assertNotEqual(procs["frontend-1"]["pid"], victim)


if __name__ == "__main__":
    unittest.main()
