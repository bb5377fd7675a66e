"""Integration tests of postern-balancer's DNS upstreams (dns:NAME:PORT and
srv:NAME) against a tiny DNS responder in this process.

The responder answers A, AAAA and SRV questions over UDP on 127.0.0.1 from
a table the test changes as it goes (NXDOMAIN for unknown names, NODATA
for known names without records of the asked type), can be switched to
SERVFAIL, and counts the questions it got. The balancer is pointed at it
with dns_servers. Stand-in upstreams come from test_balancer.py.
"""

import os
import signal
import socket
import struct
import tempfile
import threading
import time
import unittest

from test_balancer import (BINARY, Balancer, Upstream, recv_exact, recv_line,
                           upstream_name, wait_for)

QTYPE = {1: "A", 28: "AAAA", 33: "SRV"}


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


class DnsResponder:
    """records: {(name, "A"|"AAAA"|"SRV"): [value, ...]}; A/AAAA values are
    address strings, SRV values (priority, weight, port, target)."""

    def __init__(self, ttl=1):
        self.ttl = ttl
        self.records = {}
        self.servfail = False
        self.questions = []            # (name, type) in arrival order
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.running = True
        threading.Thread(target=self._serve, daemon=True).start()

    def addr(self):
        return "127.0.0.1:%d" % self.port

    def set(self, records):
        with self.lock:
            self.records = dict(records)

    def count(self, name, qtype):
        with self.lock:
            return sum(1 for q in self.questions if q == (name, qtype))

    def close(self):
        self.running = False
        self.sock.close()

    def _serve(self):
        while self.running:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                reply = self._answer(data)
            except (IndexError, struct.error, UnicodeDecodeError):
                continue
            try:
                self.sock.sendto(reply, peer)
            except OSError:
                return

    def _answer(self, q):
        qid, flags = struct.unpack("!HH", q[:4])
        i, labels = 12, []
        while q[i] != 0:
            labels.append(q[i + 1:i + 1 + q[i]].decode())
            i += 1 + q[i]
        name = ".".join(labels).lower()
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        tname = QTYPE.get(qtype, str(qtype))
        with self.lock:
            self.questions.append((name, tname))
            servfail = self.servfail
            known = any(k[0] == name for k in self.records)
            values = list(self.records.get((name, tname), []))
        rd = flags & 0x0100
        if servfail:
            return struct.pack("!HHHHHH", qid, 0x8080 | rd | 2, 1, 0, 0, 0) + question
        if not known:
            return struct.pack("!HHHHHH", qid, 0x8080 | rd | 3, 1, 0, 0, 0) + question
        answers = b""
        for v in values:
            if tname == "A":
                rdata = socket.inet_pton(socket.AF_INET, v)
            elif tname == "AAAA":
                rdata = socket.inet_pton(socket.AF_INET6, v)
            else:
                rdata = struct.pack("!HHH", v[0], v[1], v[2]) + encode_name(v[3])
            answers += struct.pack("!HHHIH", 0xC00C, qtype, 1, self.ttl, len(rdata)) + rdata
        return struct.pack("!HHHHHH", qid, 0x8480 | rd, 1, len(values), 0, 0) + question + \
            answers


def pool_names(lb, proto="imap"):
    return sorted(b["backend"] for b in lb.status()["pools"].get(proto, []))


def echo_ok(s, data=b"a1 NOOP\r\n"):
    s.sendall(data)
    return recv_exact(s, len(data)) == data


def upstream_pair_same_port(name1, name2):
    """Two stand-ins on 127.0.0.1 and 127.0.0.2 with one port (an A record
    names addresses, the entry names the port)."""
    for _ in range(20):
        u1 = Upstream(name1)
        try:
            return u1, Upstream(name2, host="127.0.0.2", port=u1.port)
        except AssertionError:
            u1.kill()          # the port was taken on 127.0.0.2: try another
    raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")


@unittest.skipUnless(os.access(BINARY, os.X_OK), "postern-balancer not built")
class DnsUpstreamTest(unittest.TestCase):

    def setUp(self):
        self.dns = DnsResponder(ttl=1)
        self.ups = []

    def tearDown(self):
        for u in self.ups:
            u.kill()
        self.dns.close()

    def balancer(self, imap_upstreams, extra=None):
        env = {"POSTERN_DNS_SERVERS": self.dns.addr(),
               "POSTERN_DNS_MIN_INTERVAL": "200ms",
               "POSTERN_DNS_INTERVAL": "30s",
               "POSTERN_DNS_TIMEOUT": "300ms",
               "POSTERN_CHECK_INTERVAL": "200ms"}
        env.update(extra or {})
        return Balancer(protos=("imap",), upstreams={"imap": imap_upstreams}, env=env)

    def test_a_records_follow_changes_and_keep_connections(self):
        u1, u2 = upstream_pair_same_port("pod1", "pod2")
        self.ups += [u1, u2]
        self.dns.set({("fe.test", "A"): ["127.0.0.1"]})
        lb = self.balancer(["dns:fe.test:%d" % u1.port], {"POSTERN_UPSTREAM_NAMES": "fe"})
        try:
            wait_for(lambda: pool_names(lb) == ["fe-127.0.0.1"], timeout=10,
                     what="the first resolution")
            held, greeting = lb.greet()
            self.assertEqual(upstream_name(greeting), "pod1")
            # Both A and AAAA are asked (AAAA gets NODATA: an answer).
            self.assertGreaterEqual(self.dns.count("fe.test", "AAAA"), 1)

            # The pod moves: TTL 1 s (not dns_interval's 30 s) finds it.
            t0 = time.monotonic()
            self.dns.set({("fe.test", "A"): ["127.0.0.2"]})
            wait_for(lambda: pool_names(lb) == ["fe-127.0.0.2"], timeout=10,
                     what="the new address")
            self.assertLess(time.monotonic() - t0, 8.0)  # far below dns_interval
            s, greeting = lb.greet()
            self.assertEqual(upstream_name(greeting), "pod2")
            self.assertTrue(echo_ok(s))
            s.close()
            # The connection to the address that left is untouched.
            self.assertTrue(echo_ok(held, b"a2 NOOP still here\r\n"))

            # Both addresses: two servers, round robin over them.
            self.dns.set({("fe.test", "A"): ["127.0.0.2", "127.0.0.1"]})
            wait_for(lambda: pool_names(lb) == ["fe-127.0.0.1", "fe-127.0.0.2"],
                     timeout=10, what="two addresses")
            seen = set()
            for _ in range(6):
                s, greeting = lb.greet()
                seen.add(upstream_name(greeting))
                s.close()
            self.assertEqual(seen, {"pod1", "pod2"})

            # A DNS failure keeps the last good set.
            self.dns.servfail = True
            n = self.dns.count("fe.test", "A")
            wait_for(lambda: self.dns.count("fe.test", "A") >= n + 2, timeout=10,
                     what="resolutions while the server fails")
            self.assertEqual(pool_names(lb), ["fe-127.0.0.1", "fe-127.0.0.2"])
            entry = [d for d in lb.status()["dns"] if d["entry"].startswith("dns:fe.test")]
            self.assertEqual(entry[0]["addresses"], 2)
            self.assertIn("server failure", entry[0]["last"].lower())
            s, greeting = lb.greet()
            self.assertTrue(echo_ok(s))
            s.close()
            # So does a name that vanished (NXDOMAIN) or has no address.
            self.dns.servfail = False
            self.dns.set({})
            n = self.dns.count("fe.test", "A")
            wait_for(lambda: self.dns.count("fe.test", "A") >= n + 2, timeout=10,
                     what="resolutions of a vanished name")
            self.assertEqual(pool_names(lb), ["fe-127.0.0.1", "fe-127.0.0.2"])
            self.assertTrue(echo_ok(held, b"a3 NOOP\r\n"))
            held.close()
            self.assertIn("event=dns_failed", lb.logtext())
        finally:
            lb.stop()

    def test_srv_records_and_min_interval(self):
        a, b = Upstream("pod-a"), Upstream("pod-b")
        self.ups += [a, b]
        self.dns.ttl = 0               # every answer expires at once
        self.dns.set({
            ("_imap._tcp.fe.test", "SRV"): [(0, 1, a.port, "a.fe.test"),
                                            (0, 1, b.port, "b.fe.test")],
            ("a.fe.test", "A"): ["127.0.0.1"],
            ("b.fe.test", "A"): ["127.0.0.1"],
        })
        lb = self.balancer(["srv:_imap._tcp.fe.test"],
                           {"POSTERN_DNS_MIN_INTERVAL": "500ms"})
        try:
            wait_for(lambda: len(pool_names(lb)) == 2, timeout=10, what="two SRV targets")
            # One IP, two ports: two servers, named in port order.
            names = pool_names(lb)
            self.assertEqual(names, ["upstream-1-127.0.0.1", "upstream-1-127.0.0.1-2"])
            by_port = {b_["address"]: b_["backend"] for b_ in lb.status()["pools"]["imap"]}
            self.assertEqual(by_port["127.0.0.1:%d" % min(a.port, b.port)],
                             "upstream-1-127.0.0.1")
            held = {}
            for _ in range(4):
                s, greeting = lb.greet()
                if upstream_name(greeting) in held:
                    s.close()
                else:
                    held[upstream_name(greeting)] = s
            self.assertEqual(set(held), {"pod-a", "pod-b"})

            # TTL 0 does not mean "ask all the time": dns_min_interval holds.
            n0 = self.dns.count("_imap._tcp.fe.test", "SRV")
            time.sleep(2.0)
            asked = self.dns.count("_imap._tcp.fe.test", "SRV") - n0
            self.assertGreaterEqual(asked, 1)
            self.assertLessEqual(asked, 6)

            # b's record goes: b leaves the pool, its connection stays.
            self.dns.set({
                ("_imap._tcp.fe.test", "SRV"): [(0, 1, a.port, "a.fe.test")],
                ("a.fe.test", "A"): ["127.0.0.1"],
            })
            wait_for(lambda: len(pool_names(lb)) == 1, timeout=10, what="b to leave")
            for _ in range(3):
                s, greeting = lb.greet()
                self.assertEqual(upstream_name(greeting), "pod-a")
                s.close()
            self.assertTrue(echo_ok(held["pod-b"]))
            self.assertTrue(echo_ok(held["pod-a"]))
            for s in held.values():
                s.close()
        finally:
            lb.stop()

    def test_sighup_adds_and_drops_dns_entries(self):
        u = Upstream("pod1")
        self.ups.append(u)
        dns2 = DnsResponder(ttl=1)
        self.dns.set({("fe.test", "A"): ["127.0.0.1"]})
        dns2.set({("fe2.test", "A"): ["127.0.0.1"]})
        fd, cfg = tempfile.mkstemp(prefix="lb-dns-", suffix=".conf")
        os.close(fd)
        with open(cfg, "w") as f:
            f.write("dns_servers = %s\nimap_upstreams = dns:fe.test:%d\n" % (
                self.dns.addr(), u.port))
        lb = Balancer(protos=("imap",), env={"POSTERN_DNS_MIN_INTERVAL": "200ms"},
                      config=cfg)
        try:
            wait_for(lambda: pool_names(lb) == ["upstream-1-127.0.0.1"], timeout=10,
                     what="the first resolution")
            held, _ = lb.greet()
            # Another entry, on another name server (the resolver is
            # replaced; queries in flight on the old one are cancelled).
            with open(cfg, "w") as f:
                f.write("dns_servers = %s\nimap_upstreams = dns:fe2.test:%d\n"
                        "upstream_names = other\n" % (dns2.addr(), u.port))
            lb.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: pool_names(lb) == ["other-127.0.0.1"], timeout=10,
                     what="the new entry")
            self.assertEqual([d["entry"] for d in lb.status()["dns"]],
                             ["dns:fe2.test:%d" % u.port])
            self.assertGreaterEqual(dns2.count("fe2.test", "A"), 1)
            self.assertEqual(self.dns.count("fe2.test", "A"), 0)
            self.assertTrue(echo_ok(held))
            held.close()
            s, greeting = lb.greet()
            self.assertEqual(upstream_name(greeting), "pod1")
            s.close()
        finally:
            lb.stop()
            dns2.close()
            os.unlink(cfg)


if __name__ == "__main__":
    unittest.main()
