"""Smoke test of the harness: the private PostgreSQL and Redis that tests/run
starts are really there, reachable as the environment says, and the fault
helpers (stop/start one service) work. PostgreSQL is driven with psql,
Redis over a raw socket speaking RESP."""

import os
import socket
import subprocess
import unittest
import uuid

import services


def _env(name):
    value = os.environ.get(name)
    if not value:
        raise unittest.SkipTest("%s not set (run tests/run, or runner.py --start-services)"
                                % name)
    return value


def psql(sql, dsn=None):
    """Runs sql with psql against POSTERN_PG_DSN; returns unaligned output."""
    p = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                        "-d", dsn or _env("POSTERN_PG_DSN"), "-c", sql],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=30, env=dict(os.environ, PGCONNECT_TIMEOUT="5"))
    if p.returncode != 0:
        raise AssertionError("psql %r failed: %s" % (sql, p.stderr.strip()))
    return p.stdout.strip()


class Resp:
    """A minimal RESP client over one socket, enough for a smoke test."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.file = self.sock.makefile("rb")

    def close(self):
        self.file.close()
        self.sock.close()

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._reply()

    def _reply(self):
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("short reply %r" % line)
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise AssertionError("redis error: %s" % rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)
            return data[:-2]
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        raise ConnectionError("bad reply %r" % line)


class PostgresTest(unittest.TestCase):
    def test_select_one(self):
        self.assertEqual(psql("SELECT 1"), "1")

    def test_logged_in_as_postern_on_15(self):
        out = psql("SELECT current_user || ',' || current_database() || ','"
                   " || current_setting('server_version_num')")
        user, db, version = out.split(",")
        self.assertEqual((user, db), ("postern", "postern"))
        self.assertGreaterEqual(int(version), 150000)
        self.assertLess(int(version), 160000)

    def test_env_agrees_with_dsn(self):
        dsn = "host=%s port=%s dbname=postern user=postern" % (
            _env("POSTERN_PG_HOST"), _env("POSTERN_PG_PORT"))
        self.assertEqual(psql("SELECT 2", dsn=dsn), "2")

    def test_postern_owns_its_database(self):
        table = "smoke_%s" % uuid.uuid4().hex[:12]
        psql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % table)
        try:
            psql("INSERT INTO %s VALUES (1, 'one'), (2, 'two')" % table)
            self.assertEqual(psql("SELECT string_agg(v, ',' ORDER BY id) FROM %s" % table),
                             "one,two")
        finally:
            psql("DROP TABLE %s" % table)


class RedisTest(unittest.TestCase):
    def setUp(self):
        self.r = Resp(_env("POSTERN_REDIS_HOST"), int(_env("POSTERN_REDIS_PORT")))

    def tearDown(self):
        self.r.close()

    def test_ping(self):
        self.assertEqual(self.r.call("PING"), "PONG")

    def test_set_get_del(self):
        key = "smoke:%s" % uuid.uuid4().hex
        self.assertEqual(self.r.call("SET", key, b"v\r\nalue\x00"), "OK")
        self.assertEqual(self.r.call("GET", key), b"v\r\nalue\x00")
        self.assertEqual(self.r.call("DEL", key), 1)
        self.assertIsNone(self.r.call("GET", key))

    def test_not_persisting(self):
        # Test instances keep nothing on disk.
        self.assertEqual(self.r.call("CONFIG", "GET", "appendonly"), [b"appendonly", b"no"])
        self.assertEqual(self.r.call("CONFIG", "GET", "save"), [b"save", b""])


class FaultHelpersTest(unittest.TestCase):
    """stop_*/start_* of one service, as fault tests use them."""

    def setUp(self):
        self.dir = _env("POSTERN_SERVICES_DIR")

    def test_redis_stop_and_start(self):
        port = int(_env("POSTERN_REDIS_PORT"))
        services.stop_redis(self.dir)
        try:
            self.assertFalse(services.redis_running(self.dir))
            with self.assertRaises(OSError):
                Resp("127.0.0.1", port).call("PING")
        finally:
            services.start_redis(self.dir)
        r = Resp("127.0.0.1", port)
        try:
            self.assertEqual(r.call("PING"), "PONG")
        finally:
            r.close()

    def test_postgres_crash_and_restart(self):
        key = "smoke_%s" % uuid.uuid4().hex[:12]
        psql("CREATE TABLE %s (id int)" % key)
        psql("INSERT INTO %s VALUES (7)" % key)
        services.stop_postgres(self.dir, mode="immediate")
        try:
            self.assertFalse(services.postgres_running(self.dir))
            with self.assertRaises(AssertionError):
                psql("SELECT 1")
        finally:
            services.start_postgres(self.dir)
        # A committed row survives the crash (recovery from the WAL).
        self.assertEqual(psql("SELECT id FROM %s" % key), "7")
        psql("DROP TABLE %s" % key)


if __name__ == "__main__":
    unittest.main()
