"""Private PostgreSQL 15 and Redis instances for tests and the local cluster.

One folder (DIR) holds one pair of services. `start(DIR)` creates them on
first use (initdb, role and database `postern`), starts both on 127.0.0.1 and
waits until each really answers; `stop(DIR)` stops both. The state of a
folder is recorded in DIR/services.json (ports, paths, mode), so that any
later process (a fault test, `services status`) finds them again.

Layout of DIR:
    services.json      state: ports, data paths, mode (ephemeral/persistent)
    pg                 the PostgreSQL root: a directory, or a symlink to one
                       (see "Where the PostgreSQL data lives" below)
        data/          PGDATA, owned by the postgres user when run as root
        run/           unix_socket_directories
        postgresql.log server log
    redis/             Redis working directory, redis.pid, redis.log

Where the PostgreSQL data lives: PostgreSQL refuses to run as root, so as
root every PostgreSQL binary runs as the `postgres` user (`runuser -u
postgres --`). That user must be able to reach the data directory, which it
cannot when DIR is below a private folder such as /root or a `mktemp -d`
folder (mode 0700). We never loosen the permissions of the caller's folders.
Instead: DIR/pg is created owned by postgres and we check (as postgres) that
it is reachable and that the socket path fits in a unix socket address; if
not, the PostgreSQL root is made in /tmp (ephemeral mode) or /var/tmp
(persistent mode) under the name postern-pg-<uid>-<hash of DIR's real path>,
and DIR/pg becomes a symlink to it. The name is derived from DIR, so a
persistent folder finds its data again even if services.json is lost; an
`owner` file in that root names DIR and is checked before reuse.
`stop(DIR, remove=True)` deletes both the folder's data and that root.

Modes: ephemeral (tests: fsync and full_page_writes off, so that only a
machine crash, never a PostgreSQL crash, can lose a commit; no Redis
persistence; free ports chosen at random) and persistent (the local
cluster: fsync on, Redis append-only file, fixed ports given by the caller,
data kept across stop/start).

Free ports: a random port in 15000-32767 (below Linux's default ephemeral
range, so outgoing connections never hold it) that can be bound on
127.0.0.1 at that moment. Two parallel runs can still draw the same port
between the test bind and the server's own bind; the server then fails to
bind, we see it (its log says so, or the answer comes from another process)
and retry with another port, up to PORT_ATTEMPTS times.

Python 3 standard library only. Importable (functions below) and a command
line tool: tests/harness/services {start|stop|status|env|...} DIR.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import pwd
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

STATE_FILE = "services.json"
PORT_ATTEMPTS = 8
PORT_RANGE = (15000, 32767)
DEFAULT_TIMEOUT = float(os.environ.get("POSTERN_SERVICE_TIMEOUT", "60"))
PG_SUPERUSER = "postgres"
PG_USER = "postern"
PG_DB = "postern"
# sockaddr_un.sun_path is 108 bytes; PostgreSQL adds "/.s.PGSQL.NNNNN".
SOCKET_PATH_MAX = 90


class ServiceError(Exception):
    """A service could not be created, started, reached or stopped."""


# ---------------------------------------------------------------- helpers

def _log(msg):
    print("services: " + msg, file=sys.stderr, flush=True)


def _tail(path, lines=30):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return "(no log at %s: %s)" % (path, e.strerror)
    text = "\n".join(data.splitlines()[-lines:])
    return "--- last lines of %s ---\n%s" % (path, text)


def _is_root():
    return os.geteuid() == 0


def _as_pg(argv):
    """argv run as the postgres user when we are root, else as ourselves."""
    if _is_root():
        return ["runuser", "-u", PG_SUPERUSER, "--"] + argv
    return argv


def _run(argv, timeout=None, check=True, env=None):
    """Runs argv with cwd=/ (reachable by the postgres user); returns the
    CompletedProcess with text stdout/stderr."""
    try:
        p = subprocess.run(argv, cwd="/", stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise ServiceError("command not found: %s (run deploy/install-deps)" % argv[0])
    except subprocess.TimeoutExpired:
        raise ServiceError("timed out after %ss: %s" % (timeout, " ".join(argv)))
    if check and p.returncode != 0:
        raise ServiceError("%s failed (exit %d): %s" % (
            " ".join(shlex.quote(a) for a in argv), p.returncode,
            (p.stderr or p.stdout).strip()))
    return p


def _pid_alive(pid):
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purpose.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def port_is_free(port, host="127.0.0.1"):
    """True if host:port can be bound right now (TCP)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(avoid=()):
    """A random port in PORT_RANGE that binds on 127.0.0.1 right now."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(*PORT_RANGE)
        if port not in avoid and port_is_free(port):
            return port
    raise ServiceError("no free port found in %d-%d" % PORT_RANGE)


def tcp_accepts(host, port, timeout=1.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _RespReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError("bad RESP reply: %r" % line[:40])


class RedisError(Exception):
    """An error reply (-ERR ...) from Redis."""


def redis_command(port, *args, host="127.0.0.1", timeout=2.0):
    """Sends one command over a fresh RESP connection; returns the reply
    (str for +status, bytes for bulk, int, list, None). Raises OSError or
    ConnectionError when Redis is not reachable, RedisError on -ERR."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(_resp_encode(args))
        return _RespReader(s).reply()


# ----------------------------------------------------------------- state

def _state_path(folder):
    return os.path.join(folder, STATE_FILE)


def load_state(folder):
    """The recorded state of DIR, or None if no services were made there."""
    try:
        with open(_state_path(folder)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ServiceError("unreadable %s: %s" % (_state_path(folder), e))


def _save_state(folder, state):
    path = _state_path(folder)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(folder):
    """Serializes operations on one folder between processes."""
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, ".services.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _need_state(folder):
    state = load_state(folder)
    if state is None:
        raise ServiceError("no services in %s (run: services start %s)" % (folder, folder))
    return state


# ------------------------------------------------------------ PostgreSQL

def pg_bindir():
    """Directory of the PostgreSQL 15 server binaries (initdb, pg_ctl)."""
    candidates = []
    try:
        out = subprocess.run(["pg_config", "--bindir"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True).stdout.strip()
        if out:
            candidates.append(out)
    except FileNotFoundError:
        pass
    candidates.append("/usr/lib/postgresql/15/bin")
    for d in candidates:
        if os.access(os.path.join(d, "initdb"), os.X_OK) and \
           os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            return d
    raise ServiceError("PostgreSQL server binaries (initdb, pg_ctl) not found in %s "
                       "(apt-get install postgresql, or run deploy/install-deps)"
                       % " or ".join(candidates))


def _pg_uid_gid():
    if not _is_root():
        return None
    try:
        pw = pwd.getpwnam(PG_SUPERUSER)
    except KeyError:
        raise ServiceError("running as root needs the '%s' system user "
                           "(apt-get install postgresql)" % PG_SUPERUSER)
    return pw.pw_uid, pw.pw_gid


def _pg_can_use(path):
    """True if the PostgreSQL user can write in path and the socket path fits."""
    if len(os.path.join(path, "run")) > SOCKET_PATH_MAX:
        return False
    if not _is_root():
        return os.access(path, os.W_OK | os.X_OK)
    p = _run(_as_pg(["test", "-w", path, "-a", "-x", path]), check=False, timeout=30)
    return p.returncode == 0


def _pg_external_root(folder, persistent):
    real = os.path.realpath(folder)
    digest = hashlib.sha256(real.encode()).hexdigest()[:16]
    base = "/var/tmp" if persistent else "/tmp"
    return os.path.join(base, "postern-pg-%d-%s" % (os.geteuid(), digest)), real


def _pg_prepare_root(folder, persistent):
    """Creates (or finds) the PostgreSQL root for folder; returns its path."""
    ids = _pg_uid_gid()
    link = os.path.join(folder, "pg")
    if os.path.islink(link):
        root = os.readlink(link)
        if os.path.isdir(root):
            return root
        os.unlink(link)
    elif os.path.isdir(link):
        return link
    os.makedirs(link, mode=0o700)
    if ids:
        os.chown(link, *ids)
    if _pg_can_use(link):
        return link
    os.rmdir(link)
    root, real = _pg_external_root(folder, persistent)
    owner_file = os.path.join(root, "owner")
    if os.path.isdir(root):
        try:
            with open(owner_file) as f:
                owner = f.read().strip()
        except OSError:
            owner = None
        if owner != real:
            raise ServiceError("%s exists but belongs to %r, not %s; remove it"
                               % (root, owner, real))
    else:
        os.makedirs(root, mode=0o700)
        with open(owner_file, "w") as f:
            f.write(real + "\n")
        if ids:
            os.chown(root, *ids)
    os.symlink(root, link)
    if not _pg_can_use(root):
        raise ServiceError("the %s user cannot use %s" % (PG_SUPERUSER, root))
    return root


def _pg_write_conf(pg, persistent):
    """Writes postern.conf (included from postgresql.conf) with the port."""
    # Tests turn off fsync and full_page_writes: they only matter when the
    # machine itself crashes. synchronous_commit stays on in every mode: with
    # it off, a PostgreSQL crash (pg_ctl stop -m immediate, kill -9) loses
    # commits that were acknowledged, which the fault tests must never see.
    durable = "on" if persistent else "off"
    lines = [
        "# Written by tests/harness/services.py on every start; do not edit.",
        "listen_addresses = '127.0.0.1'",
        "port = %d" % pg["port"],
        "unix_socket_directories = '%s'" % pg["socket_dir"],
        "max_connections = 200",
        "shared_buffers = %s" % ("128MB" if persistent else "32MB"),
        "fsync = %s" % durable,
        "synchronous_commit = on",
        "full_page_writes = %s" % durable,
        "timezone = 'UTC'",
        "log_timezone = 'UTC'",
        "log_line_prefix = '%m [%p] %q%u@%d '",
        "",
    ]
    conf = os.path.join(pg["data"], "postern.conf")
    text = "\n".join(lines)
    # The data directory belongs to the postgres user: write through it.
    p = subprocess.run(_as_pg(["tee", conf]), input=text, text=True, cwd="/",
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise ServiceError("cannot write %s: %s" % (conf, p.stderr.strip()))


def _pg_initdb(pg, bindir, timeout):
    argv = [os.path.join(bindir, "initdb"), "-D", pg["data"], "-U", PG_SUPERUSER,
            "-E", "UTF8", "--auth=trust", "--no-instructions"]
    p = _run(_as_pg(argv + ["--lc-collate=C", "--lc-ctype=C.UTF-8",
                            "--lc-messages=C", "--lc-monetary=C",
                            "--lc-numeric=C", "--lc-time=C"]),
             check=False, timeout=timeout)
    if p.returncode != 0 and "locale" in (p.stderr + p.stdout):
        # A system without C.UTF-8: plain C works everywhere.
        shutil.rmtree(pg["data"], ignore_errors=True)
        p = _run(_as_pg(argv + ["--locale=C"]), check=False, timeout=timeout)
    if p.returncode != 0:
        raise ServiceError("initdb failed:\n%s" % (p.stderr or p.stdout).strip())
    # Include our settings file; it is rewritten on every start.
    p = subprocess.run(_as_pg(["tee", "-a", os.path.join(pg["data"], "postgresql.conf")]),
                       input="\ninclude_if_exists = 'postern.conf'\n", text=True,
                       cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise ServiceError("cannot extend postgresql.conf: %s" % p.stderr.strip())


def _psql(pg, sql, user=PG_SUPERUSER, db="postgres", timeout=30):
    argv = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(pg["port"]), "-U", user, "-d", db,
            "-c", sql]
    env = dict(os.environ, PGCONNECT_TIMEOUT="5")
    env.pop("PGPASSWORD", None)
    return _run(argv, timeout=timeout, env=env).stdout.strip()


def _pg_provision(pg):
    """Creates role and database postern (idempotent)."""
    if _psql(pg, "SELECT 1 FROM pg_roles WHERE rolname = '%s'" % PG_USER) != "1":
        _psql(pg, "CREATE ROLE %s LOGIN CREATEDB" % PG_USER)
    if _psql(pg, "SELECT 1 FROM pg_database WHERE datname = '%s'" % PG_DB) != "1":
        _psql(pg, "CREATE DATABASE %s OWNER %s" % (PG_DB, PG_USER))
    # The check that really matters: the application's login works.
    if _psql(pg, "SELECT 1", user=PG_USER, db=PG_DB) != "1":
        raise ServiceError("cannot log in as %s to database %s" % (PG_USER, PG_DB))


def _pg_start_once(pg, timeout):
    """One start attempt on pg['port']. Returns None on success or a reason
    string; 'port' means the port was taken and another port may work."""
    _pg_write_conf(pg, pg["persistent"])
    argv = [os.path.join(pg["bindir"], "pg_ctl"), "start", "-D", pg["data"],
            "-l", pg["log"], "-w", "-t", str(int(max(5, timeout))), "-s"]
    log_size = os.path.getsize(pg["log"]) if os.path.exists(pg["log"]) else 0
    p = _run(_as_pg(argv), check=False, timeout=timeout + 15)
    if p.returncode != 0:
        new_log = ""
        try:
            with open(pg["log"], "rb") as f:
                f.seek(log_size)
                new_log = f.read().decode("utf-8", "replace")
        except OSError:
            pass
        if "could not bind" in new_log or "Address already in use" in new_log:
            return "port"
        return "pg_ctl start failed: %s" % (p.stderr or p.stdout).strip()
    deadline = time.monotonic() + timeout
    isready = os.path.join(pg["bindir"], "pg_isready")
    if not os.access(isready, os.X_OK):
        isready = "pg_isready"
    while True:
        r = _run([isready, "-q", "-h", "127.0.0.1", "-p", str(pg["port"]),
                  "-U", PG_SUPERUSER, "-d", "postgres", "-t", "2"], check=False, timeout=10)
        if r.returncode == 0:
            return None
        if time.monotonic() > deadline:
            return "PostgreSQL did not accept connections on 127.0.0.1:%d within %ds" % (
                pg["port"], timeout)
        time.sleep(0.2)


def postgres_pid(folder):
    """PID of the folder's postmaster, or None if it is not running."""
    state = _need_state(folder)
    pid = _read_pid(os.path.join(state["pg"]["data"], "postmaster.pid"))
    return pid if _pid_alive(pid) else None


def postgres_running(folder):
    state = _need_state(folder)
    return postgres_pid(folder) is not None and tcp_accepts("127.0.0.1", state["pg"]["port"])


def _start_postgres(folder, state, timeout, fixed_port):
    pg = state["pg"]
    if postgres_pid(folder) is not None:
        # Started before, maybe by another process: check that it answers.
        if tcp_accepts("127.0.0.1", pg["port"]):
            return
        raise ServiceError("PostgreSQL (pid %s) runs but does not answer on 127.0.0.1:%d\n%s"
                           % (postgres_pid(folder), pg["port"], _tail(pg["log"])))
    attempts = 1 if fixed_port else PORT_ATTEMPTS
    last = None
    for attempt in range(attempts):
        if attempt > 0 or not pg.get("port"):
            pg["port"] = free_port(avoid=(state.get("redis", {}).get("port"),))
            _save_state(folder, state)
        elif not port_is_free(pg["port"]):
            if fixed_port:
                raise ServiceError("port 127.0.0.1:%d for PostgreSQL is already in use"
                                   % pg["port"])
            pg["port"] = free_port()
            _save_state(folder, state)
        last = _pg_start_once(pg, timeout)
        if last is None:
            _pg_provision(pg)
            return
        if last != "port":
            break
        _log("PostgreSQL could not bind port %d, trying another" % pg["port"])
    if last == "port":
        last = "PostgreSQL could not bind a port after %d attempts" % attempts
    raise ServiceError("%s\n%s" % (last, _tail(pg["log"])))


def start_postgres(folder, timeout=DEFAULT_TIMEOUT):
    """Starts the folder's PostgreSQL again (after stop_postgres) on its
    recorded port and waits until it accepts connections."""
    with _locked(folder):
        state = _need_state(folder)
        _start_postgres(folder, state, timeout, fixed_port=True)


def stop_postgres(folder, mode="fast", timeout=DEFAULT_TIMEOUT):
    """Stops the folder's PostgreSQL: mode 'smart', 'fast' or 'immediate'
    (immediate = crash-like, recovery runs on the next start). No-op if it is
    not running. The data is kept."""
    with _locked(folder):
        _stop_postgres(_need_state(folder), mode, timeout)


def _stop_postgres(state, mode, timeout):
    pg = state["pg"]
    pid = _read_pid(os.path.join(pg["data"], "postmaster.pid"))
    if not _pid_alive(pid):
        return
    argv = [os.path.join(pg["bindir"], "pg_ctl"), "stop", "-D", pg["data"],
            "-m", mode, "-w", "-t", str(int(timeout)), "-s"]
    p = _run(_as_pg(argv), check=False, timeout=timeout + 15)
    if p.returncode != 0 and _pid_alive(pid):
        os.kill(pid, signal.SIGQUIT)
        _wait_gone(pid, 10)
        if _pid_alive(pid):
            raise ServiceError("cannot stop PostgreSQL (pid %d): %s" % (pid, p.stderr.strip()))


def _wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _pid_alive(pid)


# ----------------------------------------------------------------- Redis

def _redis_argv(state):
    r = state["redis"]
    argv = ["redis-server", "--port", str(r["port"]), "--bind", "127.0.0.1",
            "--dir", r["dir"], "--daemonize", "yes", "--pidfile", r["pidfile"],
            "--logfile", r["log"], "--protected-mode", "yes"]
    if state["persistent"]:
        argv += ["--appendonly", "yes", "--appendfsync", "everysec",
                 "--save", "3600 1 300 100 60 10000"]
    else:
        argv += ["--save", "", "--appendonly", "no"]
    return argv


def redis_pid(folder):
    """PID of the folder's redis-server, or None if it is not running."""
    state = _need_state(folder)
    pid = _read_pid(state["redis"]["pidfile"])
    return pid if _pid_alive(pid) else None


def redis_running(folder):
    state = _need_state(folder)
    try:
        return redis_pid(folder) is not None and \
            redis_command(state["redis"]["port"], "PING") == "PONG"
    except (OSError, ConnectionError, RedisError):
        return False


def _redis_own_pid(port):
    """process_id reported by whatever Redis answers on port, or None."""
    try:
        info = redis_command(port, "INFO", "server")
    except (OSError, ConnectionError, RedisError):
        return None
    for line in info.decode("utf-8", "replace").splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":", 1)[1])
    return None


def _redis_start_once(state, timeout):
    """One start attempt on the recorded port: None on success, 'port' when
    the port was taken (another may work), else the reason."""
    r = state["redis"]
    log_size = os.path.getsize(r["log"]) if os.path.exists(r["log"]) else 0
    with contextlib.suppress(FileNotFoundError):
        os.unlink(r["pidfile"])
    p = _run(_redis_argv(state), check=False, timeout=30)
    if p.returncode != 0:
        return "redis-server failed (exit %d): %s" % (p.returncode,
                                                      (p.stderr or p.stdout).strip())

    def new_log():
        with contextlib.suppress(OSError):
            with open(r["log"], "rb") as f:
                f.seek(log_size)
                return f.read().decode("utf-8", "replace")
        return ""

    def log_pids(text):
        # Lines look like "11816:M 27 Nov 2026 18:40:00.358 # ...".
        pids = set()
        for line in text.splitlines():
            head = line.split(":", 1)[0]
            if head.isdigit():
                pids.add(int(head))
        return pids

    deadline = time.monotonic() + timeout
    while True:
        # The pidfile appears only once Redis listens; a bind failure leaves
        # no pidfile, only the log and a process that is gone.
        pid = _read_pid(r["pidfile"])
        if pid and _pid_alive(pid) and _redis_own_pid(r["port"]) == pid:
            try:
                if redis_command(r["port"], "PING") == "PONG":
                    return None
            except (OSError, ConnectionError, RedisError):
                pass
        text = new_log()
        pids = log_pids(text) | ({pid} if pid else set())
        exited = bool(pids) and not any(_pid_alive(x) for x in pids)
        if exited or time.monotonic() > deadline:
            for x in pids:
                if _pid_alive(x):
                    os.kill(x, signal.SIGKILL)
            if "Address already in use" in text:
                return "port"
            if exited:
                return "redis-server exited"
            return "Redis did not answer PING on 127.0.0.1:%d within %ds" % (
                r["port"], timeout)
        time.sleep(0.05)


def _start_redis(folder, state, timeout, fixed_port):
    r = state["redis"]
    if redis_pid(folder) is not None:
        if redis_running(folder):
            return
        raise ServiceError("Redis (pid %s) runs but does not answer on 127.0.0.1:%d\n%s"
                           % (redis_pid(folder), r["port"], _tail(r["log"])))
    attempts = 1 if fixed_port else PORT_ATTEMPTS
    last = None
    for attempt in range(attempts):
        if attempt > 0 or not r.get("port"):
            r["port"] = free_port(avoid=(state["pg"].get("port"),))
            _save_state(folder, state)
        elif not port_is_free(r["port"]):
            if fixed_port:
                raise ServiceError("port 127.0.0.1:%d for Redis is already in use" % r["port"])
            r["port"] = free_port(avoid=(state["pg"].get("port"),))
            _save_state(folder, state)
        last = _redis_start_once(state, timeout)
        if last is None:
            return
        if last != "port":
            break
        _log("Redis could not bind port %d, trying another" % r["port"])
    if last == "port":
        last = "Redis could not bind a port after %d attempts" % attempts
    raise ServiceError("%s\n%s" % (last, _tail(r["log"])))


def start_redis(folder, timeout=DEFAULT_TIMEOUT):
    """Starts the folder's Redis again (after stop_redis) on its recorded
    port and waits until it answers PING."""
    with _locked(folder):
        state = _need_state(folder)
        _start_redis(folder, state, timeout, fixed_port=True)


def stop_redis(folder, timeout=DEFAULT_TIMEOUT, kill=False):
    """Stops the folder's Redis: SHUTDOWN NOSAVE (ephemeral) or SHUTDOWN
    SAVE (persistent); with kill=True a SIGKILL instead. No-op if not running."""
    with _locked(folder):
        _stop_redis(_need_state(folder), timeout, kill)


def _stop_redis(state, timeout, kill):
    r = state["redis"]
    pid = _read_pid(r["pidfile"])
    if not _pid_alive(pid):
        return
    if not kill and _redis_own_pid(r["port"]) == pid:
        with contextlib.suppress(OSError, ConnectionError, RedisError):
            redis_command(r["port"], "SHUTDOWN", "SAVE" if state["persistent"] else "NOSAVE",
                          timeout=timeout)
        if _wait_gone(pid, timeout):
            return
    os.kill(pid, signal.SIGTERM if not kill else signal.SIGKILL)
    if not _wait_gone(pid, 10):
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 5)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(r["pidfile"])


# ------------------------------------------------------------ both at once

def _new_state(folder, persistent, pg_port, redis_port, log_dir):
    folder = os.path.abspath(folder)
    root = _pg_prepare_root(folder, persistent)
    redis_dir = os.path.join(folder, "redis")
    os.makedirs(redis_dir, exist_ok=True)
    log_dir = os.path.abspath(log_dir) if log_dir else None
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
    return {
        "version": 1,
        "dir": folder,
        "persistent": bool(persistent),
        "log_dir": log_dir,
        "pg": {
            "root": root,
            "data": os.path.join(root, "data"),
            "socket_dir": os.path.join(root, "run"),
            "log": os.path.join(root, "postgresql.log"),
            "bindir": pg_bindir(),
            "port": pg_port,
            "fixed_port": pg_port is not None,
            "persistent": bool(persistent),
        },
        "redis": {
            "dir": redis_dir,
            "port": redis_port,
            "fixed_port": redis_port is not None,
            "pidfile": os.path.join(redis_dir, "redis.pid"),
            "log": os.path.join(log_dir or redis_dir, "redis.log"),
        },
    }


def start(folder, persistent=False, pg_port=None, redis_port=None, log_dir=None,
          timeout=DEFAULT_TIMEOUT):
    """Creates (first time) and starts PostgreSQL and Redis for folder, waits
    until both accept connections, and returns env() of the folder.

    persistent: fsync on, Redis AOF, data kept (the local cluster); else the
    test mode (fsync off, no Redis persistence). pg_port/redis_port: fixed
    ports (error if taken) instead of free random ones; they are recorded at
    first start and reused later unless given again. log_dir: where
    postgresql.log (as a symlink) and redis.log go; default inside folder.
    Idempotent: services already running are left as they are.
    Raises ServiceError with the server log tail on failure."""
    folder = os.path.abspath(folder)
    with _locked(folder):
        state = load_state(folder)
        if state is None:
            state = _new_state(folder, persistent, pg_port, redis_port, log_dir)
            _save_state(folder, state)
        pg, r = state["pg"], state["redis"]
        if pg_port is not None:
            pg["port"], pg["fixed_port"] = pg_port, True
        if redis_port is not None:
            r["port"], r["fixed_port"] = redis_port, True
        _save_state(folder, state)
        if not os.path.exists(os.path.join(pg["data"], "PG_VERSION")):
            _pg_initdb(pg, pg["bindir"], timeout)
        _run(_as_pg(["mkdir", "-p", "-m", "700", pg["socket_dir"]]), timeout=30)
        if state.get("log_dir"):
            link = os.path.join(state["log_dir"], "postgresql.log")
            if not os.path.lexists(link):
                os.symlink(pg["log"], link)
        _start_postgres(folder, state, timeout, pg.get("fixed_port", False))
        try:
            _start_redis(folder, state, timeout, r.get("fixed_port", False))
        except ServiceError:
            if not persistent:
                _stop_postgres(state, "fast", timeout)
            raise
        _save_state(folder, state)
        return env(folder)


def stop(folder, remove=False, timeout=DEFAULT_TIMEOUT):
    """Stops both services of folder (pg_ctl stop -m fast; Redis SHUTDOWN).
    remove=True also deletes their data, including an external PostgreSQL
    root (see the module comment). No-op for a folder without services."""
    folder = os.path.abspath(folder)
    if load_state(folder) is None:
        return
    with _locked(folder):
        state = load_state(folder)
        errors = []
        for fn in (lambda: _stop_redis(state, timeout, False),
                   lambda: _stop_postgres(state, "fast", timeout)):
            try:
                fn()
            except (ServiceError, OSError) as e:
                errors.append(str(e))
        if errors:
            raise ServiceError("; ".join(errors))
        if remove:
            root = state["pg"]["root"]
            shutil.rmtree(root, ignore_errors=True)
            link = os.path.join(folder, "pg")
            if os.path.islink(link):
                os.unlink(link)
            shutil.rmtree(link, ignore_errors=True)
            shutil.rmtree(state["redis"]["dir"], ignore_errors=True)
            if state.get("log_dir"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(state["log_dir"], "postgresql.log"))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(state["redis"]["log"])
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_state_path(folder))


def env(folder):
    """The environment that tests and daemons read, as a dict:
    POSTERN_PG_DSN (libpq conninfo), POSTERN_PG_HOST, POSTERN_PG_PORT,
    POSTERN_PG_USER, POSTERN_PG_DBNAME, POSTERN_REDIS_HOST, POSTERN_REDIS_PORT,
    POSTERN_SERVICES_DIR."""
    state = _need_state(folder)
    pg, r = state["pg"], state["redis"]
    return {
        "POSTERN_PG_DSN": "host=127.0.0.1 port=%d dbname=%s user=%s" % (
            pg["port"], PG_DB, PG_USER),
        "POSTERN_PG_HOST": "127.0.0.1",
        "POSTERN_PG_PORT": str(pg["port"]),
        "POSTERN_PG_USER": PG_USER,
        "POSTERN_PG_DBNAME": PG_DB,
        "POSTERN_REDIS_HOST": "127.0.0.1",
        "POSTERN_REDIS_PORT": str(r["port"]),
        "POSTERN_SERVICES_DIR": state["dir"],
    }


def status(folder):
    """Dict with, per service, running (bool), pid, port and log path."""
    state = _need_state(folder)
    return {
        "postgresql": {"running": postgres_running(folder), "pid": postgres_pid(folder),
                       "host": "127.0.0.1", "port": state["pg"]["port"],
                       "data": state["pg"]["data"], "log": state["pg"]["log"]},
        "redis": {"running": redis_running(folder), "pid": redis_pid(folder),
                  "host": "127.0.0.1", "port": state["redis"]["port"],
                  "data": state["redis"]["dir"], "log": state["redis"]["log"]},
    }


# ------------------------------------------------------------------ CLI

USAGE = """usage: services COMMAND DIR [options]

  start DIR [--persistent] [--pg-port N] [--redis-port N] [--log-dir D]
                       create (first time) and start PostgreSQL and Redis,
                       print `export` lines for the shell:
                       eval "$(tests/harness/services start DIR)"
  stop DIR [--remove]  stop both (--remove: also delete their data)
  status DIR [--json]  show both; exit 0 if both run, 3 otherwise
  env DIR              print the `export` lines again
  start-pg DIR | stop-pg DIR [--immediate]
  start-redis DIR | stop-redis DIR [--kill]
                       one service alone (fault tests)

Environment: POSTERN_SERVICE_TIMEOUT (seconds to wait for a start, default 60).
"""


def _exports(e):
    return "".join("export %s=%s\n" % (k, shlex.quote(v)) for k, v in sorted(e.items()))


def main(argv=None):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)   # quiet under `| head`
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    opts = {"--persistent": False, "--remove": False, "--json": False,
            "--immediate": False, "--kill": False}
    vals = {"--pg-port": None, "--redis-port": None, "--log-dir": None}
    pos = []
    i = 0
    while i < len(rest):
        a = rest[i]
        if a in opts:
            opts[a] = True
        elif a in vals and i + 1 < len(rest):
            vals[a] = rest[i + 1]
            i += 1
        elif a.startswith("-"):
            sys.stderr.write("services: unknown option %s\n%s" % (a, USAGE))
            return 2
        else:
            pos.append(a)
        i += 1
    if len(pos) != 1:
        sys.stderr.write(USAGE)
        return 2
    folder = os.path.abspath(pos[0])
    try:
        if cmd == "start":
            e = start(folder, persistent=opts["--persistent"],
                      pg_port=int(vals["--pg-port"]) if vals["--pg-port"] else None,
                      redis_port=int(vals["--redis-port"]) if vals["--redis-port"] else None,
                      log_dir=vals["--log-dir"])
            sys.stdout.write(_exports(e))
        elif cmd == "stop":
            stop(folder, remove=opts["--remove"])
        elif cmd == "env":
            sys.stdout.write(_exports(env(folder)))
        elif cmd == "status":
            st = status(folder)
            if opts["--json"]:
                print(json.dumps(st, indent=2, sort_keys=True))
            else:
                for name, s in st.items():
                    print("%-10s %-8s 127.0.0.1:%-6s pid=%-8s log=%s" % (
                        name, "running" if s["running"] else "stopped", s["port"],
                        s["pid"] or "-", s["log"]))
            return 0 if all(s["running"] for s in st.values()) else 3
        elif cmd == "start-pg":
            start_postgres(folder)
        elif cmd == "stop-pg":
            stop_postgres(folder, mode="immediate" if opts["--immediate"] else "fast")
        elif cmd == "start-redis":
            start_redis(folder)
        elif cmd == "stop-redis":
            stop_redis(folder, kill=opts["--kill"])
        else:
            sys.stderr.write("services: unknown command %s\n%s" % (cmd, USAGE))
            return 2
    except ServiceError as e:
        sys.stderr.write("services: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
