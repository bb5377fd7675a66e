"""Tests of deploy/local/cluster.py itself, with stand-in daemons.

The real daemons are not needed to check the cluster machinery: a small
Python program installed as build/{frontend,balancer,backend}/postern-* in a
temporary bin folder listens where the process table says, serves /healthz,
and writes its POSTERN_* environment to its log. The tests drive up, status,
kill -9 and up again, a daemon that never gets ready, and down (also with a
lost pid file). PostgreSQL and Redis are not started (--external-services
with placeholder values): the stand-ins never connect to them."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import services

TOP = os.environ.get("POSTERN_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER = os.path.join(TOP, "deploy", "local", "cluster.py")
sys.path.insert(0, os.path.dirname(CLUSTER))
import cluster  # noqa: E402

FAKE_DAEMON = r'''#!/usr/bin/env python3
import http.server, json, os, signal, socket, sys, threading, time
name = os.environ["POSTERN_NODE"]
print(json.dumps({k: v for k, v in os.environ.items() if k.startswith("POSTERN_")}),
      flush=True)
if os.environ.get("FAKE_BROKEN") == name:
    time.sleep(3600)          # alive but never listening: never ready
def hostport(v):
    h, p = v.rsplit(":", 1)
    return h, int(p)
def serve(s):
    while True:
        c, _ = s.accept()
        c.close()
for k, v in os.environ.items():
    if k.startswith("POSTERN_") and k.endswith("_LISTEN") and k != "POSTERN_ADMIN_LISTEN":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(hostport(v))
        s.listen(16)
        threading.Thread(target=serve, args=(s,), daemon=True).start()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path in ("/healthz", "/readyz") else 404)
        self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *a):
        pass
def term(sig, frame):
    print("draining", flush=True)
    os._exit(0)
signal.signal(signal.SIGTERM, term)
http.server.HTTPServer(hostport(os.environ["POSTERN_ADMIN_LISTEN"]), H).serve_forever()
'''

FAKE_CTL = r'''#!/usr/bin/env python3
import os, sys
with open(os.environ["FAKE_CTL_LOG"], "a") as f:
    f.write(" ".join(sys.argv[1:]) + "|" + os.environ.get("POSTERN_PG_DSN", "") + "\n")
'''


def _write_exe(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


def _free_base():
    """A port base whose every daemon port is free right now."""
    for _ in range(50):
        base = random.randrange(2000, 13000)
        c = cluster.Cluster(port_base=base)
        ports = []
        for p in cluster.process_table(c):
            ports += list(p.listen.values()) + [p.admin]
        if all(services.port_is_free(x) for x in ports):
            return base
    raise unittest.SkipTest("no free port range for a test cluster")


class ClusterScriptTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="postern-cluster-test-")
        self.var = os.path.join(self.tmp, "var")
        self.bin = os.path.join(self.tmp, "bin")
        for b in ("frontend/postern-frontend", "balancer/postern-balancer",
                  "backend/postern-backend"):
            _write_exe(os.path.join(self.bin, b), FAKE_DAEMON)
        _write_exe(os.path.join(self.bin, "storage", "posternctl"), FAKE_CTL)
        self.ctl_log = os.path.join(self.tmp, "ctl.log")
        self.env = dict(os.environ, FAKE_CTL_LOG=self.ctl_log,
                        POSTERN_PG_DSN="host=127.0.0.1 port=9 dbname=placeholder",
                        POSTERN_REDIS_HOST="127.0.0.1", POSTERN_REDIS_PORT="9")
        self.env.pop("FAKE_BROKEN", None)
        self.base = _free_base()

    def tearDown(self):
        self.run_cluster("down", "--grace", "2")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_cluster(self, *args, env=None):
        argv = [sys.executable, CLUSTER, "--var", self.var, "--bin-dir", self.bin,
                "--external-services"] + list(args)
        return subprocess.run(argv, env=env or self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=120)

    def status(self):
        p = self.run_cluster("status", "--json")
        return p.returncode, {x["name"]: x for x in json.loads(p.stdout)["processes"]}

    def up(self, *extra, env=None):
        return self.run_cluster("up", "--port-base", str(self.base), "--timeout", "15",
                                *extra, env=env)

    def logged_env(self, name):
        with open(os.path.join(self.var, "log", name + ".log")) as f:
            for line in f:
                if line.startswith("{"):
                    last = json.loads(line)
        return last

    def test_lifecycle(self):
        p = self.up()
        self.assertEqual(p.returncode, 0, p.stdout)
        rc, st = self.status()
        self.assertEqual(rc, 0)
        names = ["frontend-1", "frontend-2", "balancer", "backend-1"]
        self.assertEqual(sorted(st), sorted(names))
        for n in names:
            self.assertTrue(st[n]["running"], n)
            self.assertTrue(services.tcp_accepts("127.0.0.1",
                                                 int(st[n]["admin_url"].split(":")[2][:-1])))
        # Public ports are base + standard port; every listener accepts.
        self.assertEqual(st["balancer"]["listen"]["imap"], "127.0.0.1:%d" % (self.base + 143))
        self.assertEqual(st["balancer"]["listen"]["lmtp"], "127.0.0.1:%d" % (self.base + 24))
        self.assertEqual(st["frontend-2"]["listen"]["pop3s"],
                         "127.0.0.1:%d" % (self.base + 11000 + 995))
        for n in names:
            for addr in st[n]["listen"].values():
                host, port = addr.rsplit(":", 1)
                self.assertTrue(services.tcp_accepts(host, int(port)), addr)

        # What each daemon was told.
        bal = self.logged_env("balancer")
        self.assertEqual(bal["POSTERN_IMAP_UPSTREAMS"], "127.0.0.1:%d,127.0.0.1:%d" % (
            self.base + 10143, self.base + 11143))
        self.assertNotIn("POSTERN_PG_DSN", bal)   # the balancer has no database
        # Its servers carry the names that status shows.
        self.assertEqual(bal["POSTERN_UPSTREAM_NAMES"], "frontend-1,frontend-2")
        fe = self.logged_env("frontend-1")
        self.assertEqual(fe["POSTERN_PG_DSN"], self.env["POSTERN_PG_DSN"])
        self.assertEqual(fe["POSTERN_ADMIN_LISTEN"], "127.0.0.1:%d" % (self.base + 9081))
        self.assertTrue(os.path.exists(fe["POSTERN_TLS_CERT"]))
        with open(self.ctl_log) as f:
            calls = [line.split("|")[0] for line in f.read().splitlines()]
        self.assertEqual(calls, ["migrate", "tenant add example.test",
                                 "domain add example.test --tenant example.test",
                                 "user add demo@example.test --password demo",
                                 "alias add postmaster@example.test demo@example.test"])

        # Idempotent: nothing restarted.
        pids = {n: st[n]["pid"] for n in names}
        p = self.up()
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn("already running", p.stdout)
        self.assertEqual({n: x["pid"] for n, x in self.status()[1].items()}, pids)
        with open(self.ctl_log) as f:
            self.assertEqual(f.read().count("user add"), 1)   # once only

        # kill -9 one frontend: status says so, up brings back only that one.
        os.kill(pids["frontend-1"], signal.SIGKILL)
        services._wait_gone(pids["frontend-1"], 5)
        rc, st = self.status()
        self.assertEqual(rc, 3)
        self.assertFalse(st["frontend-1"]["running"])
        p = self.up()
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn("frontend-1 started", p.stdout)
        rc, st = self.status()
        self.assertEqual(rc, 0)
        self.assertNotEqual(st["frontend-1"]["pid"], pids["frontend-1"])
        self.assertEqual(st["balancer"]["pid"], pids["balancer"])

        # down also stops a process whose pid file was lost.
        os.unlink(os.path.join(self.var, "run", "balancer.pid"))
        live = [x["pid"] for x in st.values()]
        p = self.run_cluster("down", "--grace", "5")
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn("leftover balancer", p.stdout)
        for pid in live:
            self.assertTrue(services._wait_gone(pid, 5), pid)
        self.assertIn("draining", open(os.path.join(self.var, "log", "frontend-2.log")).read())
        rc, st = self.status()
        self.assertEqual(rc, 3)
        self.assertFalse(any(x["running"] for x in st.values()))

    def test_daemon_never_ready(self):
        env = dict(self.env, FAKE_BROKEN="balancer")
        p = self.run_cluster("up", "--port-base", str(self.base), "--timeout", "2", env=env)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("balancer", p.stdout)
        self.assertIn("not ready", p.stdout)
        self.assertIn("last lines of", p.stdout)   # the log tail is shown
        rc, st = self.status()
        self.assertFalse(st["balancer"]["running"])
        self.assertTrue(st["frontend-1"]["running"])   # started before it
        self.assertFalse(os.path.exists(os.path.join(self.var, "run", "balancer.pid")))
        # The broken process itself was stopped, not left behind.
        nodes = [cluster._proc_environ(pid).get("POSTERN_NODE")
                 for pid in cluster._leftovers(cluster.Cluster(var=self.var))]
        self.assertNotIn("balancer", nodes)
        self.assertIn("frontend-1", nodes)

    def test_entry_help_does_not_build(self):
        # `deploy/local/cluster up --help` shows the options (--no-build too)
        # and neither installs nor builds anything first.
        entry = os.path.join(TOP, "deploy", "local", "cluster")
        t0 = time.time()
        p = subprocess.run([entry, "--var", self.var, "up", "--help"], env=self.env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn("--no-build", p.stdout)
        self.assertIn("--port-base", p.stdout)
        self.assertNotIn("building", p.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.var, "log", "build.log")))
        self.assertLess(time.time() - t0, 10)

    def test_port_base_limits(self):
        p = self.run_cluster("up", "--port-base", "60000")
        self.assertEqual(p.returncode, 1)
        self.assertIn("past 65535", p.stdout)

    def test_port_in_use(self):
        import socket
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.base + 10143))   # frontend-1 IMAP
        s.listen(1)
        try:
            p = self.up()
        finally:
            s.close()
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("port 127.0.0.1:%d is already in use" % (self.base + 10143), p.stdout)


if __name__ == "__main__":
    unittest.main()
