#!/usr/bin/env python3
"""The local Postern cluster: every process on 127.0.0.1, state under var/.

    deploy/local/cluster up [--port-base N]   start what is built, in the background
                                              (N: default 1000, then the last one used)
    deploy/local/cluster status [--json]      what runs where
    deploy/local/cluster down [--purge]       stop everything (--purge: and
                                              delete the PostgreSQL/Redis data)

(deploy/local/cluster is the entry: it installs dependencies and builds
Release into build/ before `up`, then runs this file.)

What runs: a private PostgreSQL and Redis (tests/harness/services.py in
persistent mode: fsync on, data kept across down/up), a local CA and a
server certificate made once with the openssl CLI, and the daemons of the
process table below, each one only if its binary exists in the build
folder. So the cluster grows as daemons are written: a new daemon needs a
new entry in process_table(), nothing else.

Files under var/ (or --var DIR):
    data/       PostgreSQL and Redis (see services.py for where PGDATA lives
                when var/ is not reachable by the postgres user)
    log/        NAME.log for every process, postgresql.log, redis.log
    run/        NAME.pid, NAME.json (how it was started), cluster.json
    tls/        ca.crt ca.key server.crt server.key fullchain.pem

Ports: all on 127.0.0.1, as offsets from the port base (default 1000):
    balancer (the public ports)   base + standard port:
        IMAP 1143  IMAPS 1993  POP3 1110  POP3S 1995  SMTP (MX) 1025
        submission 1587  submissions 1465  LMTP 1024
    frontend i (i = 1..9)          base + 10000 + 1000*(i-1) + standard port
        frontend-1: IMAP 11143 ... LMTP 11024; frontend-2: 12143 ... 12024
    admin HTTP                     balancer base+9080, frontend i base+9080+i,
                                   backend j base+9090+j  (10080, 10081, 10082, 10091)
    PostgreSQL base+9432 (10432)   Redis base+9379 (10379)

Daemon configuration is passed in the environment (DESIGN: every config
key can be set as POSTERN_...). The names used here are the contract
between this file and the daemons:
    POSTERN_NODE              node name (balancer, frontend-1, ...)
    POSTERN_CLUSTER_DIR       this cluster's var/ (also how `down` finds
                              leftovers of this cluster)
    POSTERN_LOG_LEVEL         info
    POSTERN_ADMIN_LISTEN      127.0.0.1:PORT, serving /metrics /healthz /readyz
    POSTERN_<P>_LISTEN        127.0.0.1:PORT, P in IMAP IMAPS POP3 POP3S SMTP
                              SUBMISSION SUBMISSIONS LMTP
    POSTERN_TLS_CERT, POSTERN_TLS_KEY, POSTERN_TLS_CA   PEM files in var/tls
    frontend, backend:  POSTERN_PG_DSN, POSTERN_REDIS_HOST, POSTERN_REDIS_PORT
    frontend:           POSTERN_PROXY_TRUSTED  networks allowed to send PROXY v2
    balancer:           POSTERN_<P>_UPSTREAMS  frontends' P listeners, comma
                        separated; POSTERN_UPSTREAM_ADMIN the frontends' admin
                        addresses (health: /readyz); POSTERN_UPSTREAM_NAMES
                        their names (frontend-1, ...); POSTERN_PROXY_PROTOCOL v2
A process is ready when it is alive, each of its listen ports accepts a TCP
connection and its admin port answers GET /readyz with 200 (serving).

Demo data: if build/storage/posternctl exists, `up` runs the commands of
PROVISION (migrate every time; the others once, recorded in
run/provisioned.json) so that demo@example.test / demo can log in.
"""

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "tests", "harness"))
import services  # noqa: E402

DEFAULT_PORT_BASE = 1000
FRONTENDS = 2
BACKENDS = 1
READY_TIMEOUT = 30.0
STOP_GRACE = 15.0

# (name, standard port, how TLS starts: "starttls" or "implicit")
PROTOCOLS = [
    ("imap", 143, "starttls"),
    ("imaps", 993, "implicit"),
    ("pop3", 110, "starttls"),
    ("pop3s", 995, "implicit"),
    ("smtp", 25, "starttls"),
    ("submission", 587, "starttls"),
    ("submissions", 465, "implicit"),
    ("lmtp", 24, "starttls"),
]

# posternctl arguments run by `up` after PostgreSQL is up (env: POSTERN_PG_DSN).
# "always": run on every up (must be idempotent); "once": until it succeeded
# once (an error mentioning "exists" counts as done).
DEMO_DOMAIN = "example.test"
DEMO_USER = "demo@example.test"
DEMO_PASSWORD = "demo"
PROVISION = [
    ("always", ["migrate"]),
    ("once", ["tenant", "add", DEMO_DOMAIN]),
    ("once", ["domain", "add", DEMO_DOMAIN, "--tenant", DEMO_DOMAIN]),
    ("once", ["user", "add", DEMO_USER, "--password", DEMO_PASSWORD]),
    # RFC 5321 4.5.1: postmaster@ and <Postmaster> must reach a person
    ("once", ["alias", "add", "postmaster@" + DEMO_DOMAIN, DEMO_USER]),
]
POSTERNCTL = "storage/posternctl"


class ClusterError(Exception):
    pass


# ------------------------------------------------------------ configuration

class Cluster:
    """Paths and ports of one local cluster."""

    def __init__(self, var=None, port_base=DEFAULT_PORT_BASE, bin_dir=None,
                 external_services=False):
        self.var = os.path.abspath(var or os.path.join(TOP, "var"))
        self.bin_dir = os.path.abspath(bin_dir or os.path.join(TOP, "build"))
        self.port_base = port_base
        self.external_services = external_services
        self.data = os.path.join(self.var, "data")
        self.log_dir = os.path.join(self.var, "log")
        self.run_dir = os.path.join(self.var, "run")
        self.tls_dir = os.path.join(self.var, "tls")

    def port(self, offset):
        return self.port_base + offset

    def check_port_base(self):
        top = self.port(10000 + 1000 * (FRONTENDS - 1) + max(p for _, p, _ in PROTOCOLS))
        if self.port_base < 0 or top > 65535:
            raise ClusterError("--port-base %d puts ports past 65535 (highest %d); "
                               "use 0..%d" % (self.port_base, top, 65535 - (top - self.port_base)))

    def pg_port(self):
        return self.port(9432)

    def redis_port(self):
        return self.port(9379)

    def tls(self):
        return {"cert": os.path.join(self.tls_dir, "fullchain.pem"),
                "key": os.path.join(self.tls_dir, "server.key"),
                "ca": os.path.join(self.tls_dir, "ca.crt")}

    def service_env(self):
        """POSTERN_PG_* and POSTERN_REDIS_* for the daemons."""
        if self.external_services:
            keys = ("POSTERN_PG_DSN", "POSTERN_REDIS_HOST", "POSTERN_REDIS_PORT")
            missing = [k for k in keys if not os.environ.get(k)]
            if missing:
                raise ClusterError("--external-services needs %s in the environment"
                                   % ", ".join(missing))
            return {k: os.environ[k] for k in keys}
        e = services.env(self.data)
        return {k: e[k] for k in ("POSTERN_PG_DSN", "POSTERN_REDIS_HOST",
                                  "POSTERN_REDIS_PORT")}


class Proc:
    """One entry of the process table."""

    def __init__(self, name, role, binary, listen, admin, env, args=()):
        self.name = name          # unique: pid file, log file, POSTERN_NODE
        self.role = role          # balancer, frontend, backend
        self.binary = binary      # path below the build folder
        self.listen = listen      # {protocol: port}
        self.admin = admin        # admin HTTP port or None
        self.env = env            # extra environment (POSTERN_...)
        self.args = list(args)    # command line arguments after the binary

    def path(self, cluster):
        return os.path.join(cluster.bin_dir, self.binary)

    def built(self, cluster):
        return os.access(self.path(cluster), os.X_OK)

    def argv(self, cluster):
        return [self.path(cluster)] + self.args


def _listen_env(listen):
    return {"POSTERN_%s_LISTEN" % proto.upper(): "127.0.0.1:%d" % port
            for proto, port in listen.items()}


def process_table(c):
    """The daemons of the cluster, in start order (frontends before the
    balancer that checks their health; `down` stops in reverse order).
    Needs the services' environment only when it is called for `up`."""
    tls = c.tls()
    common = {
        "POSTERN_CLUSTER_DIR": c.var,
        "POSTERN_LOG_LEVEL": "info",
        "POSTERN_TLS_CERT": tls["cert"],
        "POSTERN_TLS_KEY": tls["key"],
        "POSTERN_TLS_CA": tls["ca"],
    }
    procs = []
    frontends = []
    for i in range(1, FRONTENDS + 1):
        listen = {proto: c.port(10000 + 1000 * (i - 1) + std) for proto, std, _ in PROTOCOLS}
        fe = Proc("frontend-%d" % i, "frontend", "frontend/postern-frontend",
                  listen, c.port(9080 + i),
                  dict(common, POSTERN_PROXY_TRUSTED="127.0.0.0/8", **_listen_env(listen)))
        frontends.append(fe)
        procs.append(fe)
    listen = {proto: c.port(std) for proto, std, _ in PROTOCOLS}
    upstreams = {"POSTERN_%s_UPSTREAMS" % proto.upper():
                 ",".join("127.0.0.1:%d" % fe.listen[proto] for fe in frontends)
                 for proto, _, _ in PROTOCOLS}
    procs.append(Proc("balancer", "balancer", "balancer/postern-balancer", listen,
                      c.port(9080),
                      dict(common, POSTERN_PROXY_PROTOCOL="v2",
                           POSTERN_UPSTREAM_ADMIN=",".join("127.0.0.1:%d" % fe.admin
                                                           for fe in frontends),
                           POSTERN_UPSTREAM_NAMES=",".join(fe.name for fe in frontends),
                           **upstreams, **_listen_env(listen))))
    for j in range(1, BACKENDS + 1):
        procs.append(Proc("backend-%d" % j, "backend", "backend/postern-backend", {},
                          c.port(9090 + j), dict(common)))
    return procs


def _needs_storage(proc):
    return proc.role in ("frontend", "backend")


# ------------------------------------------------------------ process state

def _pidfile(c, name):
    return os.path.join(c.run_dir, name + ".pid")


def _proc_environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return {}
    out = {}
    for item in data.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode("utf-8", "replace")] = v.decode("utf-8", "replace")
    return out


def _ours(c, pid, name=None):
    """True if pid is a live process of this cluster (and named name)."""
    if not services._pid_alive(pid):
        return False
    e = _proc_environ(pid)
    if e.get("POSTERN_CLUSTER_DIR") != c.var:
        return False
    return name is None or e.get("POSTERN_NODE") == name


def running_pid(c, proc):
    pid = services._read_pid(_pidfile(c, proc.name))
    return pid if pid and _ours(c, pid, proc.name) else None


def _leftovers(c):
    """Live processes that carry this cluster's marker in their environment."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and _ours(c, int(entry)):
            found.append(int(entry))
    return found


def _tail(path, lines=25):
    return services._tail(path, lines)


# ----------------------------------------------------------------- readiness

def _http_status(port, path, timeout=2.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _ready_problem(proc, pid):
    """None when proc is ready, else what it still waits for."""
    if not services._pid_alive(pid):
        return "exited"
    for proto, port in proc.listen.items():
        if not services.tcp_accepts("127.0.0.1", port, timeout=0.5):
            return "%s port %d not accepting" % (proto, port)
    if proc.admin:
        # /readyz, not only /healthz: `up` returns when the cluster serves
        # (a frontend's storage connections are up on every thread, the
        # balancer has a healthy frontend), not merely when it is alive.
        try:
            st = _http_status(proc.admin, "/readyz")
        except (OSError, http.client.HTTPException) as e:
            return "admin port %d: %s" % (proc.admin, e)
        if st != 200:
            return "admin /readyz answered %d" % st
    return None


def _wait_ready(c, proc, pid, timeout):
    deadline = time.monotonic() + timeout
    while True:
        problem = _ready_problem(proc, pid)
        if problem is None:
            return
        if problem == "exited" or time.monotonic() > deadline:
            log = os.path.join(c.log_dir, proc.name + ".log")
            raise ClusterError("%s (pid %d) not ready after %ds: %s\n%s" % (
                proc.name, pid, timeout, problem, _tail(log)))
        time.sleep(0.1)


# ----------------------------------------------------------------------- TLS

def _openssl(args, cwd):
    p = subprocess.run(["openssl"] + args, cwd=cwd, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise ClusterError("openssl %s failed: %s" % (args[0], p.stderr.strip()))


def ensure_tls(c):
    """Local CA and a server certificate for localhost, 127.0.0.1 and
    mail.example.test (ECDSA P-256), made once into var/tls."""
    d = c.tls_dir
    os.makedirs(d, exist_ok=True)
    if all(os.path.exists(os.path.join(d, f)) for f in
           ("ca.crt", "server.key", "server.crt", "fullchain.pem")):
        return False
    old = os.umask(0o077)
    try:
        if not os.path.exists(os.path.join(d, "ca.crt")):
            _openssl(["req", "-x509", "-new", "-nodes", "-newkey", "ec",
                      "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
                      "-subj", "/O=Postern local cluster/CN=Postern local CA",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
        with open(os.path.join(d, "server.ext"), "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=DNS:localhost,DNS:mail.example.test,IP:127.0.0.1\n")
        _openssl(["req", "-new", "-nodes", "-newkey", "ec",
                  "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-keyout", "server.key", "-out", "server.csr",
                  "-subj", "/O=Postern local cluster/CN=localhost"], d)
        _openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                  "-CAcreateserial", "-out", "server.crt", "-days", "825",
                  "-extfile", "server.ext"], d)
        with open(os.path.join(d, "fullchain.pem"), "w") as out:
            for part in ("server.crt", "ca.crt"):
                with open(os.path.join(d, part)) as f:
                    out.write(f.read())
        for tmp in ("server.csr", "server.ext"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(d, tmp))
        for pub in ("ca.crt", "server.crt", "fullchain.pem"):
            os.chmod(os.path.join(d, pub), 0o644)
    finally:
        os.umask(old)
    return True


# ------------------------------------------------------------- provisioning

def provision(c, senv):
    """Runs PROVISION with posternctl if it is built. Returns a short
    status string for the summary."""
    ctl = os.path.join(c.bin_dir, POSTERNCTL)
    if not os.access(ctl, os.X_OK):
        return "posternctl not built yet (%s): no demo tenant" % ctl
    done_file = os.path.join(c.run_dir, "provisioned.json")
    try:
        with open(done_file) as f:
            done = json.load(f)
    except (OSError, ValueError):
        done = []
    env = dict(os.environ, **senv)
    problems = []
    for when, args in PROVISION:
        key = " ".join(args)
        if when == "once" and key in done:
            continue
        p = subprocess.run([ctl] + args, env=env, cwd=TOP, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        shown = " ".join("***" if a == DEMO_PASSWORD else a for a in args)
        with open(os.path.join(c.log_dir, "posternctl.log"), "a") as log:
            log.write("$ posternctl %s\n%s(exit %d)\n" % (shown, p.stdout, p.returncode))
        if p.returncode == 0 or (when == "once" and "exist" in p.stdout.lower()):
            if when == "once":
                done.append(key)
        else:
            last = (p.stdout.strip().splitlines() or [""])[-1]
            problems.append("posternctl %s: exit %d: %s" % (shown, p.returncode, last))
    with open(done_file, "w") as f:
        json.dump(done, f)
    if problems:
        return "provisioning FAILED (see %s): %s" % (
            os.path.join(c.log_dir, "posternctl.log"), "; ".join(problems))
    return "demo tenant ready: %s / %s" % (DEMO_USER, DEMO_PASSWORD)


# ----------------------------------------------------------------- commands

def _save_cluster_json(c):
    with open(os.path.join(c.run_dir, "cluster.json"), "w") as f:
        json.dump({"port_base": c.port_base, "bin_dir": c.bin_dir,
                   "external_services": c.external_services}, f)


def _load_cluster_json(c):
    try:
        with open(os.path.join(c.run_dir, "cluster.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _anything_running(c):
    if any(running_pid(c, p) for p in process_table(c)):
        return True
    if not c.external_services and services.load_state(c.data) is not None:
        st = services.status(c.data)
        return any(s["pid"] for s in st.values())
    return False


def _start_proc(c, proc, senv, timeout):
    for proto, port in list(proc.listen.items()) + [("admin", proc.admin)]:
        if port and not services.port_is_free(port):
            raise ClusterError("%s: %s port 127.0.0.1:%d is already in use "
                               "(another program, or another --port-base?)"
                               % (proc.name, proto, port))
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("POSTERN_"):
            del env[k]
    env.update(proc.env)
    env["POSTERN_NODE"] = proc.name
    if proc.admin:
        env["POSTERN_ADMIN_LISTEN"] = "127.0.0.1:%d" % proc.admin
    if _needs_storage(proc):
        env.update(senv)
    log_path = os.path.join(c.log_dir, proc.name + ".log")
    with open(log_path, "ab") as log:
        log.write(("=== %s start: %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"),
                                           " ".join(proc.argv(c)))).encode())
        log.flush()
        p = subprocess.Popen(proc.argv(c), env=env, cwd=c.var, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                             close_fds=True)
    with open(_pidfile(c, proc.name), "w") as f:
        f.write("%d\n" % p.pid)
    with open(os.path.join(c.run_dir, proc.name + ".json"), "w") as f:
        json.dump({"name": proc.name, "role": proc.role, "pid": p.pid,
                   "argv": proc.argv(c), "env": proc.env, "listen": proc.listen,
                   "admin": proc.admin, "started": time.time()}, f, indent=2)
    try:
        _wait_ready(c, proc, p.pid, timeout)
    except ClusterError:
        # Leave no half-started process behind; the others keep running.
        if services._pid_alive(p.pid):
            _stop_pid(p.pid, 5)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_pidfile(c, proc.name))
        raise
    return p.pid


def cmd_up(c, timeout=READY_TIMEOUT):
    c.check_port_base()
    for d in (c.var, c.data, c.log_dir, c.run_dir):
        os.makedirs(d, exist_ok=True)
    prev = _load_cluster_json(c)
    if prev and prev.get("port_base") != c.port_base and _anything_running(c):
        raise ClusterError("the cluster in %s runs with --port-base %s; run `down` first "
                           "to move it" % (c.var, prev.get("port_base")))
    said = []
    was_up = False
    if not c.external_services:
        was = services.load_state(c.data)
        was_up = was is not None and all(s["running"] for s in services.status(c.data).values())
        try:
            services.start(c.data, persistent=True, pg_port=c.pg_port(),
                           redis_port=c.redis_port(), log_dir=c.log_dir)
        except services.ServiceError as e:
            raise ClusterError(str(e))
        said.append("postgresql and redis %s" % ("already running" if was_up else "started"))
    senv = c.service_env()
    _save_cluster_json(c)
    if ensure_tls(c):
        said.append("made a local CA and server certificate in %s" % c.tls_dir)
    prov = provision(c, senv)
    started, already, missing = [], [], []
    for proc in process_table(c):
        if not proc.built(c):
            missing.append(proc)
            continue
        pid = running_pid(c, proc)
        if pid:
            already.append((proc, pid))
            continue
        pid = _start_proc(c, proc, senv, timeout)
        started.append((proc, pid))
    for proc, pid in already:
        said.append("%s already running (pid %d)" % (proc.name, pid))
    for proc, pid in started:
        said.append("%s started (pid %d)" % (proc.name, pid))
    for proc in missing:
        said.append("%s not built yet (%s), not started" % (proc.name, proc.path(c)))
    if not started and (c.external_services or was_up):
        said.insert(0, "cluster already running (everything that is built)")
    for line in said:
        print(line)
    print()
    print(summary(c, prov))


def _shown(path):
    """path as the user can type it here: relative below the current folder,
    else absolute."""
    rel = os.path.relpath(path, os.getcwd())
    return path if rel.startswith("..") else rel


def summary(c, prov=None):
    rel = _shown(c.var)
    lines = ["Postern local cluster, port base %d, state in %s" % (c.port_base, rel), ""]
    procs = process_table(c)
    balancer = next(p for p in procs if p.role == "balancer")
    up = running_pid(c, balancer) is not None
    lines.append("Public ports (balancer%s):" % ("" if up else ", not running yet"))
    for proto, std, tls in PROTOCOLS:
        lines.append("  %-12s 127.0.0.1:%-6d %s" % (proto, balancer.listen[proto],
                                                    "implicit TLS" if tls == "implicit"
                                                    else "STARTTLS"))
    lines.append("")
    lines.append("Processes (admin HTTP: /metrics /healthz /readyz):")
    for p in procs:
        pid = running_pid(c, p)
        state = ("pid %d" % pid) if pid else ("stopped" if p.built(c) else "not built")
        admin = "http://127.0.0.1:%d/" % p.admin if p.admin else "-"
        lines.append("  %-12s %-12s admin %s" % (p.name, state, admin))
    if not c.external_services and services.load_state(c.data):
        e = services.env(c.data)
        lines.append("  %-12s %s" % ("postgresql", e["POSTERN_PG_DSN"]))
        lines.append("  %-12s 127.0.0.1:%s" % ("redis", e["POSTERN_REDIS_PORT"]))
    lines.append("")
    tls = c.tls()
    lines.append("TLS: CA %s (trust it in clients), certificate for localhost, "
                 "127.0.0.1, mail.example.test" % _shown(tls["ca"]))
    lines.append("Logs: %s/*.log" % _shown(c.log_dir))
    if prov:
        lines.append("Demo: " + prov)
    lines.append("Log in as %s / %s, for example:" % (DEMO_USER, DEMO_PASSWORD))
    ca = _shown(tls["ca"])
    lines.append("  curl --cacert %s 'imaps://127.0.0.1:%d/INBOX' -u %s:%s"
                 % (ca, balancer.listen["imaps"], DEMO_USER, DEMO_PASSWORD))
    lines.append("  swaks --server 127.0.0.1:%d --tls --tls-verify --tls-ca-path %s --auth-user %s "
                 "--auth-password %s --from %s --to %s"
                 % (balancer.listen["submission"], ca, DEMO_USER, DEMO_PASSWORD,
                    DEMO_USER, DEMO_USER))
    return "\n".join(lines)


def _stop_pid(pid, grace):
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if services._wait_gone(pid, grace):
        return "stopped"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    services._wait_gone(pid, 5)
    return "killed after %ds" % grace


def cmd_down(c, grace=STOP_GRACE, purge=False):
    said = []
    if os.path.isdir(c.run_dir):
        for proc in reversed(process_table(c)):
            pidfile = _pidfile(c, proc.name)
            pid = services._read_pid(pidfile)
            if pid and _ours(c, pid, proc.name):
                said.append("%s (pid %d) %s" % (proc.name, pid, _stop_pid(pid, grace)))
            elif pid:
                said.append("%s: removed stale pid file (pid %d gone)" % (proc.name, pid))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pidfile)
    # Processes of this cluster whose pid file was lost.
    for pid in _leftovers(c):
        said.append("leftover %s (pid %d) %s" % (
            _proc_environ(pid).get("POSTERN_NODE", "?"), pid, _stop_pid(pid, grace)))
    if not c.external_services and services.load_state(c.data) is not None:
        st = services.status(c.data)
        try:
            services.stop(c.data, remove=purge)
        except services.ServiceError as e:
            raise ClusterError(str(e))
        for name, s in st.items():
            if s["pid"]:
                said.append("%s (pid %d) stopped%s" % (name, s["pid"],
                                                        "" if purge else ", data kept"))
        if purge:
            said.append("deleted the PostgreSQL and Redis data")
    if purge:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(c.run_dir, "provisioned.json"))
    print("\n".join(said) if said else "nothing was running")


def status_dict(c):
    procs = []
    if not c.external_services and services.load_state(c.data) is not None:
        st = services.status(c.data)
        for name in ("postgresql", "redis"):
            s = st[name]
            procs.append({"name": name, "role": name, "pid": s["pid"],
                          "running": s["running"], "built": True,
                          "listen": {name: "127.0.0.1:%d" % s["port"]},
                          "admin_url": None, "log": s["log"]})
    for p in process_table(c):
        pid = running_pid(c, p)
        procs.append({"name": p.name, "role": p.role, "pid": pid, "running": pid is not None,
                      "built": p.built(c),
                      "listen": {k: "127.0.0.1:%d" % v for k, v in p.listen.items()},
                      "admin_url": "http://127.0.0.1:%d/" % p.admin if p.admin else None,
                      "log": os.path.join(c.log_dir, p.name + ".log")})
    out = {"port_base": c.port_base, "var": c.var, "bin_dir": c.bin_dir,
           "processes": procs, "tls": c.tls(),
           "login": {"user": DEMO_USER, "password": DEMO_PASSWORD}}
    if not c.external_services and services.load_state(c.data) is not None:
        out["services_env"] = services.env(c.data)
    return out


def cmd_status(c, as_json):
    st = status_dict(c)
    if as_json:
        print(json.dumps(st, indent=2))
    else:
        print("%-12s %-11s %-8s %-9s %-34s %s" % ("NAME", "ROLE", "PID", "STATE",
                                                "LISTEN", "ADMIN"))
        for p in st["processes"]:
            state = "running" if p["running"] else ("stopped" if p["built"] else "not built")
            ports = ",".join("%s:%s" % (k, v.rsplit(":", 1)[1]) for k, v in p["listen"].items())
            if len(ports) > 34:
                first = next(iter(p["listen"].values()), "")
                ports = "%s.. (%d ports)" % (first, len(p["listen"]))
            print("%-12s %-11s %-8s %-9s %-34s %s" % (p["name"], p["role"], p["pid"] or "-",
                                                    state, ports, p["admin_url"] or "-"))
    built = [p for p in st["processes"] if p["built"]]
    return 0 if built and all(p["running"] for p in built) else 3


def main(argv=None):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)   # quiet under `| head`
    ap = argparse.ArgumentParser(prog="deploy/local/cluster",
                                 description="The local Postern cluster (see the header "
                                 "of deploy/local/cluster.py and README.md).")
    ap.add_argument("--var", help="state folder (default: var/ in the source tree)")
    ap.add_argument("--bin-dir", help="build folder with the daemons (default: build/)")
    ap.add_argument("--external-services", action="store_true",
                    help="use the PostgreSQL and Redis named by POSTERN_PG_DSN, "
                    "POSTERN_REDIS_HOST/PORT instead of starting our own")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start everything that is built (idempotent)")
    up.add_argument("--port-base", type=int, default=None,
                    help="offset of every port (default: the base of the last `up` "
                    "in this state folder, else %d: IMAP on 1143)" % DEFAULT_PORT_BASE)
    up.add_argument("--no-build", action="store_true",
                    help="do not build first (deploy/local/cluster builds Release "
                         "into build/ before every up otherwise)")
    up.add_argument("--timeout", type=float, default=READY_TIMEOUT,
                    help="seconds to wait for each daemon to be ready")
    down = sub.add_parser("down", help="stop everything (data is kept unless --purge)")
    down.add_argument("--purge", action="store_true",
                      help="also delete the PostgreSQL and Redis data")
    down.add_argument("--grace", type=float, default=STOP_GRACE,
                      help="seconds between SIGTERM and SIGKILL")
    st = sub.add_parser("status", help="what runs where; exit 0 if all that is built runs")
    st.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    c = Cluster(var=a.var, bin_dir=a.bin_dir, external_services=a.external_services)
    prev = _load_cluster_json(c)
    if prev:
        # The last `up` in this folder: its port base is the default; down and
        # status also look at the processes and services it started.
        c.port_base = prev.get("port_base", DEFAULT_PORT_BASE)
        if a.cmd != "up":
            if a.bin_dir is None and prev.get("bin_dir"):
                c.bin_dir = prev["bin_dir"]
            c.external_services = c.external_services or prev.get("external_services", False)
    if a.cmd == "up" and a.port_base is not None:
        c.port_base = a.port_base
    try:
        if a.cmd == "up":
            cmd_up(c, a.timeout)
        elif a.cmd == "down":
            cmd_down(c, a.grace, a.purge)
        else:
            return cmd_status(c, a.json)
    except ClusterError as e:
        print("cluster: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
