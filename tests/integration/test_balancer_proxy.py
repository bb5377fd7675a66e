"""Integration tests of PROXY headers from clients (a proxy in front of
postern-balancer): accepted only on listeners with <proto>_proxy_accept_from
and only from those networks; the client address of an accepted header is
the one the balancer's own PROXY v2 header gives the frontend (and the one
the per-source limits count); a trusted peer without a header, and a
PROXY header from anyone else, are refused and closed. Stand-ins come from
test_balancer.py.
"""

import os
import socket
import struct
import unittest

from test_balancer import (BINARY, Balancer, Upstream, recv_all, recv_exact, recv_line,
                           upstream_name, wait_for)

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src, sport, dst="10.1.1.1", dport=143, local=False):
    if local:
        return V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return V2_SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def closed(s):
    """True when the balancer closed s without a byte."""
    s.settimeout(5)
    try:
        return recv_all(s) == b""
    except ConnectionResetError:
        return True


@unittest.skipUnless(os.access(BINARY, os.X_OK), "postern-balancer not built")
class ProxyAcceptTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.up = Upstream("fe1")

    @classmethod
    def tearDownClass(cls):
        cls.up.kill()

    def last_source(self, before):
        wait_for(lambda: self.up.proxied() > before, timeout=5, what="the upstream header")
        with self.up.lock:
            return self.up.headers[-1][0]

    def test_trusted_v2_and_v1_headers_name_the_client(self):
        lb = Balancer(upstreams={"imap": [self.up.addr()]},
                      env={"POSTERN_IMAP_PROXY_ACCEPT_FROM": "10.0.0.0/8, 127.0.0.0/8"})
        try:
            # v2, with the client's first command in the same segment.
            n = self.up.proxied()
            s = lb.connect()
            s.sendall(v2_header("203.0.113.7", 4444) + b"a1 NOOP\r\n")
            self.assertEqual(upstream_name(recv_line(s)), "fe1")
            self.assertEqual(recv_exact(s, 9), b"a1 NOOP\r\n")
            self.assertEqual(self.last_source(n), ("203.0.113.7", 4444))
            s.close()
            # v1, byte by byte.
            n = self.up.proxied()
            s = lb.connect()
            for b in b"PROXY TCP4 198.51.100.9 10.1.1.1 5555 143\r\n":
                s.sendall(bytes([b]))
            recv_line(s)
            self.assertEqual(self.last_source(n), ("198.51.100.9", 5555))
            s.sendall(b"a2 NOOP\r\n")
            self.assertEqual(recv_exact(s, 9), b"a2 NOOP\r\n")
            s.close()
            # LOCAL (the proxy's own check): the peer's address stands.
            n = self.up.proxied()
            s = lb.connect()
            s.sendall(v2_header(None, 0, local=True))
            recv_line(s)
            self.assertEqual(self.last_source(n)[0], "127.0.0.1")
            s.close()
            # A trusted peer without a header, or with a broken one: closed,
            # and no upstream connection made for it.
            n = self.up.proxied()
            for junk in (b"a1 NOOP\r\n", V2_SIG + b"\x99\x11\x00\x00"):
                s = lb.connect()
                s.sendall(junk)
                self.assertTrue(closed(s))
                s.close()
            self.assertEqual(self.up.proxied(), n)
            self.assertIn("event=proxy_refused", lb.logtext())
        finally:
            lb.stop()

    def test_limits_count_the_header_address(self):
        lb = Balancer(upstreams={"imap": [self.up.addr()]},
                      env={"POSTERN_IMAP_PROXY_ACCEPT_FROM": "127.0.0.1",
                           "POSTERN_MAX_CONNECTIONS_PER_SOURCE": "1"})
        try:
            held = []
            for src in ("192.0.2.1", "192.0.2.2"):
                s = lb.connect()
                s.sendall(v2_header(src, 1000))
                self.assertEqual(upstream_name(recv_line(s)), "fe1")
                held.append(s)
            s = lb.connect()
            s.sendall(v2_header("192.0.2.1", 1001))
            self.assertTrue(recv_line(s).startswith(b"* BYE [UNAVAILABLE] Too many"))
            s.close()
            for s in held:
                s.close()
        finally:
            lb.stop()

    def test_untrusted_header_refused_and_plain_clients_served(self):
        lb = Balancer(upstreams={"imap": [self.up.addr()]},
                      env={"POSTERN_IMAP_PROXY_ACCEPT_FROM": "10.0.0.0/8"})
        try:
            # An ordinary client from outside the trusted networks.
            n = self.up.proxied()
            s = lb.connect()
            self.assertEqual(upstream_name(recv_line(s)), "fe1")
            self.assertEqual(self.last_source(n)[0], "127.0.0.1")
            s.sendall(b"a1 NOOP\r\n")
            self.assertEqual(recv_exact(s, 9), b"a1 NOOP\r\n")
            s.close()
            # The same, claiming another address: refused, never trusted.
            for hdr in (v2_header("203.0.113.7", 4444),
                        b"PROXY TCP4 198.51.100.9 10.1.1.1 5555 143\r\n"):
                s = lb.connect()
                recv_line(s)
                s.sendall(hdr + b"a1 NOOP\r\n")
                s.settimeout(5)
                try:
                    self.assertEqual(recv_all(s), b"")
                except ConnectionResetError:
                    pass
                s.close()
            with self.up.lock:
                sources = [h[0][0] for h in self.up.headers[n:]]
            self.assertEqual(set(sources), {"127.0.0.1"})
            self.assertIn("not in proxy_accept_from", lb.logtext())
            _, metrics = lb.get("/metrics")
            self.assertIn(b'reason="proxy_untrusted"} 2', metrics)
        finally:
            lb.stop()

    def test_l7_after_a_trusted_header(self):
        up = Upstream("fe-l7", login=True)
        lb = Balancer(upstreams={"imap": [up.addr()]},
                      env={"POSTERN_L7": "imap", "POSTERN_L7_REQUIRE_TLS": "no",
                           "POSTERN_IMAP_PROXY_ACCEPT_FROM": "127.0.0.1"})
        try:
            s = lb.connect()
            # The header and the first command together: the balancer greets
            # only after the header, then answers the command.
            s.sendall(v2_header("203.0.113.50", 6000) + b"c CAPABILITY\r\n")
            self.assertTrue(recv_line(s).startswith(b"* OK"))
            self.assertTrue(recv_line(s).startswith(b"* CAPABILITY"))
            self.assertTrue(recv_line(s).startswith(b"c OK"))
            s.sendall(b"a LOGIN ann secret\r\n")
            line = recv_line(s)
            while line.startswith(b"*"):
                line = recv_line(s)
            self.assertTrue(line.startswith(b"a OK"), line)
            wait_for(lambda: up.proxied() >= 1, timeout=5, what="the upstream header")
            with up.lock:
                self.assertEqual(up.headers[-1][0], ("203.0.113.50", 6000))
            s.close()
        finally:
            lb.stop()
            up.kill()

    def test_listener_without_setting_relays_header_as_bytes(self):
        lb = Balancer(upstreams={"imap": [self.up.addr()]})
        try:
            n = self.up.proxied()
            s = lb.connect()
            recv_line(s)
            line = b"PROXY TCP4 198.51.100.9 10.1.1.1 5555 143\r\n"
            s.sendall(line)
            # Just protocol bytes: the (echoing) frontend gets them after our
            # own header, which names the real peer.
            self.assertEqual(recv_exact(s, len(line)), line)
            self.assertEqual(self.last_source(n)[0], "127.0.0.1")
            s.close()
        finally:
            lb.stop()


if __name__ == "__main__":
    unittest.main()
