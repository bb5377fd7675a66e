"""A real Prometheus (Debian's prometheus package) scrapes a balancer and a
frontend, and its query API returns their series (issue 8).

One postern-frontend (POP3, PostgreSQL and Redis from the test services,
PROXY trusted from 127.0.0.1) behind one postern-balancer (its pop3
listener relays to the frontend, /readyz checks on the frontend's admin
port). Traffic: a good and a bad POP3 login through the balancer with a
user made by posternctl, and a few plain connections (greeting, QUIT).
Prometheus scrapes both admin ports every second; the test waits until
/api/v1/targets shows both up, then asks /api/v1/query for series of each
daemon and checks that they count that traffic, and that a second login
shows up in a later scrape. Both expositions must pass
`promtool check metrics` (parse and lint).

Skipped (a failure under CI=true) only when prometheus or promtool is not
installed (deploy/install-deps installs them).
"""

import os
import poplib
import shutil
import socket
import tempfile
import unittest

import frontend_support as fs
import postern_procs as pp

PASSWORD = "pw-Prometheus-1"
PLAIN_CONNECTIONS = 3
JOBS = ("postern-balancer", "postern-frontend")


class PrometheusScrapeTest(unittest.TestCase):

    def setUp(self):
        prometheus, promtool = pp.prometheus_binaries()
        if prometheus is None or promtool is None:
            self.skipTest("prometheus/promtool not installed (deploy/install-deps)")
        missing = [what for what, ok in (
            ("POSTERN_PG_DSN", fs.BASE_DSN), ("POSTERN_REDIS_PORT",
                                              os.environ.get("POSTERN_REDIS_PORT")),
            ("postern-frontend", fs.frontend_binary()), ("posternctl", fs.posternctl_binary()),
            ("postern-balancer", pp.balancer_binary())) if not ok]
        self.assertEqual(missing, [], "needed by this test")

        self.folder = tempfile.mkdtemp(prefix="pn-prom-")
        self.addCleanup(shutil.rmtree, self.folder, ignore_errors=True)
        self.store = fs.Store()
        self.addCleanup(self.store.close)
        self.address = self.store.user("prom", PASSWORD)[0]
        self.fe = fs.Frontend("fe1", self.store, services=("pop3",), folder=self.folder,
                              extra={"POSTERN_PROXY_TRUSTED": "127.0.0.1/32"})
        self.addCleanup(self.fe.kill)
        self.lb = pp.Balancer(self.folder, {"pop3": ["127.0.0.1:%d" % self.fe.ports["pop3"]]},
                              upstream_admin=["127.0.0.1:%d" % self.fe.admin], names=["fe1"])
        self.addCleanup(self.lb.kill)
        self.prom = None

    def pop3_login(self, password):
        """A POP3 session through the balancer; True when the login worked."""
        p = poplib.POP3("127.0.0.1", self.lb.ports["pop3"], timeout=10)
        try:
            p.user(self.address)
            try:
                p.pass_(password)
            except poplib.error_proto:
                return False
            p.stat()
            return True
        finally:
            p.quit()

    def value(self, promql):
        """The single value of an instant query (None when empty)."""
        result = self.prom.query(promql)
        self.assertLessEqual(len(result), 1, "%s: %r" % (promql, result))
        return result[0][1] if result else None

    def wait_value(self, promql, at_least, timeout=10):
        got = fs.wait_for(lambda: (self.value(promql) or 0) >= at_least, timeout, step=0.2)
        self.assertTrue(got, "%s: %r, wanted >= %s\nprometheus log:\n%s"
                        % (promql, self.value(promql), at_least, self.prom.log_tail()))

    def test_prometheus_scrapes_both_daemons(self):
        # Traffic first, so that the first scrape already counts it.
        self.assertTrue(self.pop3_login(PASSWORD))
        self.assertFalse(self.pop3_login(PASSWORD + "-wrong"))
        for _ in range(PLAIN_CONNECTIONS):
            with socket.create_connection(("127.0.0.1", self.lb.ports["pop3"]), timeout=10) as s:
                self.assertTrue(fs.read_line(s).startswith(b"+OK"))
                s.sendall(b"QUIT\r\n")
                self.assertTrue(fs.read_line(s).startswith(b"+OK"))
        sessions = PLAIN_CONNECTIONS + 2

        # Both expositions parse and pass promtool's lint.
        for name, port in (("balancer", self.lb.admin), ("frontend", self.fe.admin)):
            status, text = pp.http_get(port, "/metrics")
            self.assertEqual(status, 200, name)
            rc, out = pp.promtool_check_metrics(text)
            self.assertEqual((rc, out), (0, ""), "promtool check metrics on the %s" % name)

        self.prom = pp.Prometheus(self.folder, {
            "postern-balancer": ["127.0.0.1:%d" % self.lb.admin],
            "postern-frontend": ["127.0.0.1:%d" % self.fe.admin]})
        self.addCleanup(self.prom.kill)

        urls = {"http://127.0.0.1:%d/metrics" % p for p in (self.lb.admin, self.fe.admin)}

        def all_up():
            t = self.prom.targets()
            return set(t) == urls and all(health == "up" for health, _ in t.values())

        self.assertTrue(fs.wait_for(all_up, 15, step=0.2), "targets not up: %r\nprometheus "
                        "log:\n%s" % (self.prom.targets(), self.prom.log_tail()))
        for job in JOBS:
            self.assertEqual(self.value('up{job="%s"}' % job), 1.0, job)

        # The balancer's series: its backend (the frontend) is up and
        # carried every session.
        lb = 'job="postern-balancer",backend="fe1",protocol="pop3"'
        self.assertEqual(self.value("postern_backend_up{%s}" % lb), 1.0)
        self.assertGreaterEqual(self.value("postern_backend_connections_total{%s}" % lb),
                                sessions)
        self.assertGreaterEqual(self.value(
            'postern_listener_accepted_total{job="postern-balancer",protocol="pop3"}'), sessions)
        self.assertGreater(self.value(
            'sum(postern_backend_bytes_total{%s,direction="from_backend"})' % lb), 0)
        # ... and the frontend's: the logins by result, the sessions it
        # accepted (behind PROXY v2 from the balancer), its storage.
        fe = 'job="postern-frontend",protocol="pop3"'
        self.assertEqual(self.value('postern_logins_total{%s,result="ok"}' % fe), 1.0)
        self.assertEqual(self.value('postern_logins_total{%s,result="bad"}' % fe), 1.0)
        self.assertGreaterEqual(self.value(
            'postern_frontend_connections_total{job="postern-frontend",service="pop3",'
            'result="accepted"}'), sessions)
        self.assertGreaterEqual(self.value(
            'postern_command_duration_seconds_count{%s,command="login"}' % fe), 2)
        self.assertEqual(self.value('postern_frontend_postgres_up{job="postern-frontend"}'), 1.0)
        self.assertEqual(self.value('postern_frontend_redis_up{job="postern-frontend"}'), 1.0)

        # A later scrape sees new traffic.
        self.assertTrue(self.pop3_login(PASSWORD))
        self.wait_value('postern_logins_total{%s,result="ok"}' % fe, 2)
        self.wait_value("postern_backend_connections_total{%s}" % lb, sessions + 1)

        # Everything stops cleanly, with nothing from the sanitizers in the
        # daemons' logs of an ASan build (the cleanups only kill what is left).
        self.assertEqual(self.prom.stop(), 0, self.prom.log_tail())
        self.assertEqual(self.lb.stop(), 0, self.lb.log_tail())
        self.assertEqual(self.fe.stop(), 0, self.fe.log_tail())
        for path in (self.lb.log_path, self.fe.log_path):
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            self.assertNotIn("Sanitizer", text, path)
            self.assertNotIn("runtime error", text, path)


if __name__ == "__main__":
    unittest.main()
