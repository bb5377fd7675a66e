"""The benchmark harness end to end, asserting no timing: postern-bench in
its three modes against the trivial backend, and one short
`bench/compare proxy-cps --smoke` (HAProxy from Debian, installed on demand
by bench/install-peers; Postern's balancer when it is built, else reported
as not available)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

TOP = os.environ.get("POSTERN_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("POSTERN_BIN_DIR") or os.path.join(TOP, "build")


def _binary(name):
    path = os.path.join(BIN, "bench", name)
    if not os.access(path, os.X_OK):
        raise AssertionError("%s is not built" % path)
    return path


class BenchGenerator(unittest.TestCase):
    """postern-bench against postern-bench-backend on loopback."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="postern-test-bench-")
        port_file = os.path.join(cls.tmp, "port")
        cls.backend = subprocess.Popen([_binary("postern-bench-backend"), "--listen",
                                        "127.0.0.1:0", "--port-file", port_file],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(port_file):
                break
            time.sleep(0.05)
        with open(port_file) as f:
            cls.port = int(f.read())

    @classmethod
    def tearDownClass(cls):
        cls.backend.send_signal(signal.SIGTERM)
        try:
            cls.backend.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cls.backend.kill()
            cls.backend.wait()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def bench(self, script, *args):
        out = os.path.join(self.tmp, "out.json")
        cmd = [_binary("postern-bench"), "--connect", "127.0.0.1:%d" % self.port,
               "--json", out, "--quiet"] + list(args) + [os.path.join(TOP, "bench", "scripts", script)]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out) as f:
            return json.load(f)

    def assertNoErrors(self, res):
        self.assertEqual(sum(res["errors"].values()), 0, res.get("error_samples"))

    def test_closed_loop_sessions(self):
        res = self.bench("proxy-cps.bench", "--conns", "4", "--count", "200", "--duration", "0")
        self.assertNoErrors(res)
        self.assertEqual(res["unit"], "session")
        self.assertGreaterEqual(res["units"], 200)
        self.assertEqual(res["steps"], ["greeting", "NOOP", "LOGOUT", "close"])
        for step in res["steps"] + ["connect", "session"]:
            h = res["latency_us"][step]
            self.assertGreater(h["count"], 0, step)
            self.assertTrue(h["p50"] <= h["p90"] <= h["p99"] <= h["p99.9"] <= h["max"], step)

    def test_open_loop_and_stream(self):
        res = self.bench("proxy-msgs.bench", "--conns", "2", "--mode", "open", "--rate", "200",
                         "--duration", "1")
        self.assertNoErrors(res)
        self.assertEqual(res["mode"], "open")
        self.assertEqual(res["unit"], "iteration")
        # a fixed schedule: about rate * seconds units, whatever the speed
        self.assertGreater(res["units"], 100)
        self.assertLess(res["units"], 300)
        res = self.bench("proxy-stream.bench", "--conns", "1", "--count", "1", "--duration", "0")
        self.assertNoErrors(res)
        self.assertGreaterEqual(res["latency_us"]["stream"]["count"], 1)
        self.assertGreaterEqual(res["bytes_in"], 64 * 1024 * 1024)

    def test_idle_memory(self):
        res = self.bench("proxy-idle.bench", "--mode", "idle", "--conns", "100", "--pids",
                         str(self.backend.pid), "--hold", "0.1", "--settle", "0.1")
        self.assertNoErrors(res)
        self.assertEqual(res["held"], 100)
        mem = res["memory"][0]
        self.assertEqual(mem["pid"], self.backend.pid)
        self.assertGreater(mem["after"]["rss_kb"], 0)
        self.assertEqual(mem["after"]["processes"], 1)

    def test_time_series(self):
        res = self.bench("proxy-cps.bench", "--conns", "4", "--duration", "0.5",
                         "--series", "10")
        self.assertNoErrors(res)
        se = res["series"]
        self.assertEqual(se["bucket_ms"], 10)
        n = se["buckets"]
        # one bucket per started 10 ms of the recorded interval
        self.assertEqual(n, int(-(-res["elapsed_s"] * 1000 // 10)))
        for k in ("completed", "failed_before_reply", "failed_after_reply"):
            self.assertEqual(len(se[k]), n, k)
        # every recorded unit is in exactly one bucket
        self.assertEqual(sum(se["completed"]) + se["outside"], res["units"])
        self.assertLessEqual(se["outside"], 1)
        self.assertEqual(sum(se["failed_before_reply"]) + sum(se["failed_after_reply"]), 0)
        self.assertGreater(se["start_mono_ns"], 0)
        self.assertLessEqual(se["start_mono_ns"], time.monotonic_ns())

    def test_failures_before_and_after_the_first_reply(self):
        # nobody listens: every session fails before its greeting
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
        s.close()
        out = os.path.join(self.tmp, "dead.json")
        p = subprocess.run([_binary("postern-bench"), "--connect", "127.0.0.1:%d" % dead,
                            "--conns", "2", "--duration", "0.3", "--series", "10", "--json",
                            out, "--quiet",
                            os.path.join(TOP, "bench", "scripts", "proxy-cps.bench")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out) as f:
            res = json.load(f)
        self.assertGreater(res["errors"]["connect"], 0)
        self.assertEqual(res["failed_before_reply"], res["sessions_failed"])
        self.assertEqual(res["failed_after_reply"], 0)
        self.assertEqual(sum(res["series"]["failed_before_reply"]) + res["series"]["outside"],
                         res["sessions_failed"])
        # the greeting arrives, the next reply is not the expected one
        bad = os.path.join(self.tmp, "late.bench")
        with open(bad, "w") as f:
            f.write("proto imap\nexpect * OK\nsend a NOOP\nexpect tagged NO\n")
        res = self.bench(bad, "--conns", "2", "--duration", "0.3", "--series", "10")
        self.assertGreater(res["errors"]["reply"], 0)
        self.assertEqual(res["failed_before_reply"], 0)
        self.assertEqual(res["failed_after_reply"], res["sessions_failed"])
        self.assertGreater(sum(res["series"]["failed_after_reply"]), 0)

    def test_bad_script_is_refused(self):
        bad = os.path.join(self.tmp, "bad.bench")
        with open(bad, "w") as f:
            f.write("send a\nloop\n")
        p = subprocess.run([_binary("postern-bench"), "--connect", "127.0.0.1:%d" % self.port,
                            bad], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("line 2: loop without end", p.stderr)


def _load_compare():
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.SourceFileLoader("bench_compare",
                                                  os.path.join(TOP, "bench", "compare"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


class FailoverAnalysis(unittest.TestCase):
    """bench/compare's reading of a time series around the kill."""

    def analyse(self, completed, kill_ms, bucket_ms=10):
        compare = _load_compare()
        start = 10 ** 12
        res = {"series": {"bucket_ms": bucket_ms, "start_mono_ns": start,
                          "completed": completed,
                          "failed_before_reply": [0] * len(completed),
                          "failed_after_reply": [0] * len(completed)}}
        return compare.failover_analysis(res, start + int(kill_ms * 1e6))

    def test_no_dip(self):
        fo = self.analyse([40] * 300, 1500)
        self.assertTrue(fo["valid"])
        self.assertAlmostEqual(fo["rate_before"], 4000.0)
        self.assertEqual(fo["dip_ms"], 0)
        self.assertEqual(fo["below_half_after_ms"], 0)
        self.assertTrue(fo["recovered"])
        self.assertAlmostEqual(fo["lowest_pct"], 100.0)

    def test_dip_with_a_rebound(self):
        c = [40] * 300
        # kill at 1505 ms (bucket 150); below half in 150-159, one rebound
        # bucket at 155, recovered from 160 on
        for i in range(150, 160):
            c[i] = 5
        c[155] = 30
        c[200] = 0  # noise later: not part of the dip, counted in the window
        fo = self.analyse(c, 1505)
        self.assertAlmostEqual(fo["dip_ms"], 95.0)
        self.assertEqual(fo["below_half_after_ms"], 100)
        self.assertEqual(fo["below_half_before_ms"], 0)
        self.assertEqual(fo["lowest_pct"], 0.0)
        self.assertTrue(fo["recovered"])

    def test_collapse_some_buckets_after_the_kill(self):
        # the kill's bucket and the next three still complete sessions, then
        # nothing for 300 ms
        c = [40] * 300
        for i in range(154, 184):
            c[i] = 0
        c[240] = 0  # noise, not part of the dip
        fo = self.analyse(c, 1500)
        self.assertAlmostEqual(fo["dip_ms"], 300.0)
        self.assertAlmostEqual(fo["dip_end_ms"], 340.0)
        self.assertTrue(fo["recovered"])
        self.assertEqual(fo["below_half_after_ms"], 310)
        # a lone low bucket at the kill does not hide the collapse after it
        c[150] = 0
        fo = self.analyse(c, 1500)
        self.assertAlmostEqual(fo["dip_ms"], 300.0)
        self.assertAlmostEqual(fo["dip_end_ms"], 340.0)
        # a low bucket more than 200 ms after the kill is no dip of it
        c = [40] * 300
        c[175] = 0
        self.assertEqual(self.analyse(c, 1500)["dip_ms"], 0)

    def test_not_recovered_by_the_end(self):
        c = [40] * 150 + [3] * 50
        fo = self.analyse(c, 1500)
        self.assertFalse(fo["recovered"])
        self.assertAlmostEqual(fo["dip_ms"], 490.0)  # the last bucket is partial: left out

    def test_kill_outside_the_series(self):
        self.assertFalse(self.analyse([40] * 100, 5000)["valid"])
        self.assertFalse(self.analyse([40] * 100, 50)["valid"])


class BenchCompare(unittest.TestCase):
    """bench/compare proxy-cps --smoke: peers start, trials run, results are
    written, everything stops."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("bench/compare runs the peers as root")
        p = subprocess.run([os.path.join(TOP, "bench", "install-peers"), "haproxy"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=900)
        self.assertEqual(p.returncode, 0, "bench/install-peers haproxy: " + p.stdout[-2000:])
        self.tmp = tempfile.mkdtemp(prefix="postern-test-compare-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_proxy_cps_smoke(self):
        p = subprocess.run([os.path.join(TOP, "bench", "compare"), "proxy-cps", "--smoke",
                            "--bin-dir", BIN, "--results-dir", self.tmp],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = p.stdout
        self.assertIn("ratio = postern / haproxy", out)
        files = sorted(os.listdir(self.tmp))
        self.assertEqual(len(files), 2, files)
        js = [f for f in files if f.endswith(".json")][0]
        self.assertTrue(js.startswith("proxy-cps-"))
        with open(os.path.join(self.tmp, js)) as f:
            doc = json.load(f)
        self.assertEqual(doc["scenario"], "proxy-cps")
        self.assertEqual(doc["peer"], "haproxy")
        self.assertEqual(doc["floor"], "direct")
        for name in ("haproxy", "direct"):
            t = doc["targets"][name]
            self.assertTrue(t["available"], name)
            self.assertEqual(len(t["trials"]), 1, name)
            self.assertGreater(t["trials"][0]["units"], 0, name)
            self.assertEqual(sum(t["trials"][0]["errors"].values()), 0,
                             (name, t["trials"][0]["error_samples"]))
        post = doc["targets"]["postern"]
        if post["available"]:
            self.assertEqual(len(post["trials"]), 1)
            self.assertGreater(post["trials"][0]["units"], 0)
        else:
            self.assertTrue(post["reason"])
            self.assertIn("postern: not available", out)
        fig = {r["figure"]: r for r in doc["figures"]}
        self.assertIn("sessions/s", fig)
        self.assertGreater(fig["sessions/s"]["haproxy"]["median"], 0)
        root = ET.parse(os.path.join(self.tmp, js[:-5] + ".svg")).getroot()
        self.assertTrue(root.tag.endswith("svg"))
        # every server was stopped
        work = [l for l in p.stderr.splitlines() if "starting the servers" in l]
        self.assertTrue(work)
        folder = work[0].rsplit(" in ", 1)[1]
        self.assertFalse(os.path.exists(folder), "the temporary folder was left behind")
        left = subprocess.run(["pgrep", "-f", folder], stdout=subprocess.PIPE, text=True)
        self.assertEqual(left.stdout.strip(), "", "processes left running")

    def test_proxy_failover_smoke(self):
        p = subprocess.run([os.path.join(TOP, "bench", "compare"), "proxy-failover", "--smoke",
                            "--bin-dir", BIN, "--results-dir", self.tmp],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SIGKILLed in the middle of each trial", p.stdout)
        js = [f for f in os.listdir(self.tmp) if f.endswith(".json")]
        self.assertEqual(len(js), 1)
        with open(os.path.join(self.tmp, js[0])) as f:
            doc = json.load(f)
        self.assertEqual(doc["scenario"], "proxy-failover")
        self.assertIsNone(doc["floor"])
        names = ["haproxy"] + (["postern"] if doc["targets"]["postern"]["available"] else [])
        for name in names:
            res = doc["targets"][name]["trials"][0]
            fo = res["failover"]
            self.assertTrue(fo["valid"], name)
            self.assertGreater(fo["rate_before"], 0, name)
            # the kill lands in the middle of the recorded second
            self.assertGreater(fo["kill_at_s"], 0.2, name)
            self.assertLess(fo["kill_at_s"], 0.9, name)
            self.assertEqual(res["failed_before_reply"] + res["failed_after_reply"],
                             res["sessions_failed"], name)
        if "postern" in names:
            # the balancer's promise: a refused or reset connect is retried
            # on the next backend, so no new session fails
            res = doc["targets"]["postern"]["trials"][0]
            self.assertEqual(res["failed_before_reply"], 0, res["error_samples"])
        fig = {r["figure"]: r for r in doc["figures"]}
        self.assertIn("ms below half after the kill", fig)
        self.assertIn("failed new (before greeting)", fig)
        root = ET.parse(os.path.join(self.tmp, js[0][:-5] + ".svg")).getroot()
        self.assertTrue(root.tag.endswith("svg"))
        work = [l for l in p.stderr.splitlines() if "starting the servers" in l]
        folder = work[0].rsplit(" in ", 1)[1]
        self.assertFalse(os.path.exists(folder), "the temporary folder was left behind")
        left = subprocess.run(["pgrep", "-f", folder], stdout=subprocess.PIPE, text=True)
        self.assertEqual(left.stdout.strip(), "", "processes left running")


if __name__ == "__main__":
    unittest.main()
