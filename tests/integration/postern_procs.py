"""Small start/stop helpers for the processes of cross-daemon integration
tests (test_prometheus.py): a postern-balancer relaying to given upstreams,
a Prometheus server from Debian's prometheus package, and promtool's lint of
an exposition. The frontend and its store come from frontend_support.py.

Every process listens on 127.0.0.1 on a free port and logs into a file in
the folder the caller gives (removed by the caller). stop() is SIGTERM and
returns the exit status; kill() is the cleanup after a failure.

Not a test module (the runner only loads test_*.py); standard library only.
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse

from frontend_support import bin_dir, free_port, wait_for


def balancer_binary():
    p = os.path.join(bin_dir(), "balancer", "postern-balancer")
    return p if os.access(p, os.X_OK) else None


def http_get(port, path, timeout=5):
    """(status, body text) of GET http://127.0.0.1:port/path."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def _answers(port, path):
    try:
        return http_get(port, path, timeout=1)[0] == 200
    except OSError:
        return False


class _Proc:
    """A child process logging to folder/name.log."""

    def __init__(self, name, folder, argv, env):
        self.name = name
        self.log_path = os.path.join(folder, name + ".log")
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.logf, stderr=subprocess.STDOUT)

    def log_tail(self, lines=30):
        with open(self.log_path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")

    def wait_until(self, pred, timeout, what):
        def check():
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited (%s) before %s:\n%s"
                                   % (self.name, self.proc.returncode, what, self.log_tail()))
            return pred()
        if not wait_for(check, timeout, step=0.05):
            raise RuntimeError("%s: no %s within %ss:\n%s" % (self.name, what, timeout,
                                                              self.log_tail()))

    def stop(self, timeout=15):
        """SIGTERM (if still running); the exit status."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    raise RuntimeError("%s did not stop within %ss:\n%s"
                                       % (self.name, timeout, self.log_tail()))
            return self.proc.returncode
        finally:
            self.logf.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()


class Balancer(_Proc):
    """postern-balancer with one listener per protocol of `upstreams`
    ({"pop3": ["127.0.0.1:N", ...]}), relaying to those servers (PROXY v2),
    with their admin addresses for /readyz checks. self.ports[proto] is the
    listener, self.admin the admin HTTP port. Up once /healthz answers and
    /readyz says every listener has a backend."""

    def __init__(self, folder, upstreams, upstream_admin=(), names=(), extra=None,
                 name="lb1", timeout=15):
        self.ports = {p: free_port() for p in upstreams}
        self.admin = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTERN_")}
        env.update({
            "POSTERN_NODE": name,
            "POSTERN_THREADS": "1",
            "POSTERN_LOG_LEVEL": "info",
            "POSTERN_ADMIN_LISTEN": "127.0.0.1:%d" % self.admin,
            "POSTERN_UPSTREAM_ADMIN": ",".join(upstream_admin),
            "POSTERN_UPSTREAM_NAMES": ",".join(names),
        })
        for proto, addrs in upstreams.items():
            env["POSTERN_%s_LISTEN" % proto.upper()] = "127.0.0.1:%d" % self.ports[proto]
            env["POSTERN_%s_UPSTREAMS" % proto.upper()] = ",".join(addrs)
        env.update(extra or {})
        super().__init__(name, folder, [balancer_binary()], env)
        try:
            self.wait_until(lambda: _answers(self.admin, "/healthz")
                            and _answers(self.admin, "/readyz"), timeout, "readiness")
        except Exception:
            self.kill()
            raise


# ---------------------------------------------------------------- Prometheus

def prometheus_binaries():
    """(prometheus, promtool) paths, or None for each one not installed."""
    return shutil.which("prometheus"), shutil.which("promtool")


def promtool_check_metrics(text):
    """(exit status, output) of `promtool check metrics` on an exposition:
    0 and no output when the text parses and passes the lint."""
    r = subprocess.run([shutil.which("promtool"), "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return r.returncode, r.stdout.decode("utf-8", "replace").strip()


class Prometheus(_Proc):
    """A Prometheus server scraping `jobs` ({"job name": ["127.0.0.1:N"]})
    every second, its TSDB in folder/tsdb. Up once /-/ready answers 200."""

    def __init__(self, folder, jobs, timeout=20):
        self.port = free_port()
        config = os.path.join(folder, "prometheus.yml")
        lines = ["global:", "  scrape_interval: 1s", "  scrape_timeout: 1s",
                 "  evaluation_interval: 1s", "scrape_configs:"]
        for job, targets in jobs.items():
            lines += ["  - job_name: %s" % json.dumps(job),
                      "    static_configs:",
                      "      - targets: %s" % json.dumps(list(targets))]
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        argv = [prometheus_binaries()[0], "--config.file=" + config,
                "--storage.tsdb.path=" + os.path.join(folder, "tsdb"),
                "--web.listen-address=127.0.0.1:%d" % self.port,
                "--log.level=warn"]
        super().__init__("prometheus", folder, argv, {"PATH": os.environ.get("PATH", "")})
        try:
            self.wait_until(lambda: _answers(self.port, "/-/ready"), timeout, "/-/ready")
        except Exception:
            self.kill()
            raise

    def api(self, path, **params):
        """The `data` of a successful /api/v1/<path> answer."""
        query = "?" + urllib.parse.urlencode(params) if params else ""
        status, body = http_get(self.port, "/api/v1/" + path + query)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise RuntimeError("prometheus /api/v1/%s%s: %s %s" % (path, query, status, body))
        return answer["data"]

    def targets(self):
        """{scrape URL: (health, last error)} of the active targets."""
        return {t["scrapeUrl"]: (t["health"], t.get("lastError", ""))
                for t in self.api("targets")["activeTargets"]}

    def query(self, promql):
        """An instant vector query: [(labels dict, float value), ...]."""
        data = self.api("query", query=promql)
        if data["resultType"] != "vector":
            raise RuntimeError("%s: a %s, not a vector" % (promql, data["resultType"]))
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]
