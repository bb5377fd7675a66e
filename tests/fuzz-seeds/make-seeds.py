#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into tests/fuzz-seeds/<fuzz-X>/:
realistic protocol exchanges framed the way each harness reads its input
(control bytes first, see the header of each fuzz-*.c). The TLS seeds come
from a real handshake (Python's ssl with a throwaway openssl certificate),
so they differ run to run. usage: tests/fuzz-seeds/make-seeds.py [TOP]"""
import base64, os, ssl, subprocess, sys, tempfile

top = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
tmp = tempfile.mkdtemp()
CERT, KEY = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", KEY, "-out", CERT, "-days", "1", "-subj", "/CN=mail.tenant.test"],
               check=True, capture_output=True)
seeds = {}

def add(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    seeds.setdefault(target, []).append((name, data))

# --- IMAP --- (the fake daemon of test-imap-session-fake.h knows alice / secret)
imap_sessions = {
    "login-select-fetch": b"a1 CAPABILITY\r\na2 LOGIN alice secret\r\na3 SELECT INBOX\r\n"
        b"a4 FETCH 1:* (FLAGS UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])\r\n"
        b"a5 UID STORE 1:3 +FLAGS.SILENT (\\Seen $x)\r\na6 EXPUNGE\r\na7 LOGOUT\r\n",
    "authenticate-plain": b"a1 AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\na2 LIST \"\" *\r\n"
        b"a3 STATUS INBOX (MESSAGES UIDNEXT UNSEEN)\r\na4 LOGOUT\r\n",
    "append-literal": b"a1 LOGIN alice secret\r\na2 APPEND INBOX (\\Seen) \"27-Nov-2026 10:00:00 +0100\" {20}\r\n"
        b"Subject: x\r\n\r\nbody\r\n\r\na3 APPEND INBOX {5+}\r\nhello\r\na4 NOOP\r\n",
    "search-idle": b"a1 LOGIN alice secret\r\na2 EXAMINE INBOX\r\na3 UID SEARCH CHARSET UTF-8 OR SUBJECT \"x\" FROM y SINCE 1-Jan-2020\r\n"
        b"a4 IDLE\r\nDONE\r\na5 CLOSE\r\na6 CREATE \"&AOQ-bc\"\r\na7 RENAME a b\r\na8 DELETE b\r\n",
    "starttls-enable": b"a1 STARTTLS\r\na2 ENABLE UTF8=ACCEPT CONDSTORE\r\na3 LOGIN alice secret\r\na4 SELECT INBOX (CONDSTORE)\r\n"
        b"a5 FETCH 1 (MODSEQ) (CHANGEDSINCE 5)\r\na6 UID COPY 1:* Trash\r\na7 UID MOVE 2 Trash\r\na8 UNSELECT\r\n",
}
def imap_chunks(stream, note=0):
    out = bytearray()
    for i in range(0, len(stream), 40):
        c = stream[i:i+40]
        out.append(len(c) | (note << 6))
        out += c
    return bytes(out)
for i, (n, s) in enumerate(imap_sessions.items()):
    # first byte: trusted + TLS active (LOGIN allowed), or STARTTLS offered
    add("fuzz-imap-session", n, bytes([0x04 if n.startswith("starttls") else 0x03 | (i & 8)]) + imap_chunks(s, i % 4))
    # parser: limits, modes, seed
    add("fuzz-imap-parser", n, bytes([100, 40, 200, 4, 40, 50, i * 2, 7 + i]) + s)
add("fuzz-imap-parser", "literal8", bytes([119, 63, 255, 5, 47, 255, 8, 3]) +
    b"a1 APPEND INBOX ~{4}\r\n\x00\x01\x02\x03\r\na2 FETCH 1 BINARY[1]<0.10>\r\n")
add("fuzz-imap-utf7", "names", b"&AOQ-bc/&ZeVnLIqe-/x&-y")
add("fuzz-imap-utf7", "seqset", b"1:5,7,9:*,2")

# --- SMTP ---
def smtp_records(chunks, ctl=0):
    out = bytearray()
    for c in chunks:
        while c:
            part, c = c[:250], c[250:]
            out += bytes([ctl, len(part)]) + part
    return bytes(out)
mx = [b"EHLO client.example\r\n", b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\r\n",
      b"RCPT TO:<c@example.test>\r\n", b"RCPT TO:<Postmaster>\r\n", b"DATA\r\n",
      b"Subject: hi\r\nFrom: a@b.example\r\n\r\nbody\r\n..dot\r\n.\r\n", b"QUIT\r\n"]
add("fuzz-smtp-session", "mx-data", bytes([0, 0]) + smtp_records(mx))
lmtp = [b"LHLO c\r\n", b"MAIL FROM:<>\r\n", b"RCPT TO:<c@example.test>\r\n", b"RCPT TO:<d@example.test>\r\n",
        b"BDAT 10\r\n0123456789", b"BDAT 0 LAST\r\n", b"RSET\r\n", b"QUIT\r\n"]
add("fuzz-smtp-session", "lmtp-bdat", bytes([1, 7]) + smtp_records(lmtp))
sub = [b"EHLO c\r\n", b"AUTH LOGIN\r\n", b"dUBleGFtcGxlLnRlc3Q=\r\n", b"c2VjcmV0\r\n",
       b"MAIL FROM:<u@example.test> AUTH=<> RET=HDRS ENVID=x+2B\r\n", b"RCPT TO:<c@example.test> NOTIFY=SUCCESS\r\n",
       b"DATA\r\n", b"Subject: s\r\n\r\nx\r\n.\r\n", b"STARTTLS\r\n"]
add("fuzz-smtp-session", "submission-auth", bytes([2 | 0x08, 3]) + smtp_records(sub))
add("fuzz-smtp-session", "in-data", bytes([0xc0, 0x10]) + smtp_records([b"Subject: x\r\n\r\nline\r\n.\r\n", b"QUIT\r\n"], 0x0c))

# --- POP3 --- flags, max_line, max_auth_line, max_commands, then ops
def pop3_feed(s):
    out = bytearray()
    while s:
        part, s = s[:64], s[64:]
        out += bytes([len(part) - 1]) + part
    return bytes(out)
ans = lambda c: bytes([0xc0, c])
p = bytes([8, 0, 0, 100]) + pop3_feed(b"CAPA\r\nUSER u@example.test\r\n") + pop3_feed(b"PASS secret\r\n") + ans(0) \
    + ans(0x40) + pop3_feed(b"STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\n") + ans(0) + pop3_feed(b"TOP 2 1\r\nDELE 1\r\nRSET\r\nDELE 2\r\nQUIT\r\n") + ans(3) + ans(1)
add("fuzz-pop3-session", "user-pass-retr", p)
auth = base64.b64encode(b"\0u@example.test\0secret")
p = bytes([4, 10, 10, 50]) + pop3_feed(b"STLS\r\n") + ans(1) + pop3_feed(b"AUTH PLAIN " + auth + b"\r\n") + ans(0) + ans(0x50) \
    + pop3_feed(b"LIST 1\r\nUIDL 2\r\nNOOP\r\nRETR 3\r\n") + ans(2) + ans(2) + ans(0) + pop3_feed(b"QUIT\r\n") + ans(0)
add("fuzz-pop3-session", "stls-auth", p)
p = bytes([0, 0, 0, 20]) + pop3_feed(b"AUTH LOGIN\r\ndUBleGFtcGxlLnRlc3Q=\r\nc2VjcmV0\r\n") + ans(0) + ans(0x30) + pop3_feed(b"RETR 1\r\n") + bytes([0xfc, 0xff])
add("fuzz-pop3-session", "auth-login-shutdown", p)

# --- SASL --- cfg, id limit, pw limit, lines
add("fuzz-sasl", "plain-ir", bytes([2, 0, 0]) + b"AHVAZXhhbXBsZS50ZXN0AHNlY3JldA==\n")
add("fuzz-sasl", "plain-authzid", bytes([0, 0, 0]) + base64.b64encode(b"admin\0u@example.test\0s3cr\xc3\xa9t") + b"\n")
add("fuzz-sasl", "login", bytes([1, 0, 0]) + b"dUBleGFtcGxlLnRlc3Q=\nc2VjcmV0\n")
add("fuzz-sasl", "mech-name", bytes([16 | 8, 10, 20]) + b"login\ndUBleGFtcGxlLnRlc3Q=\n*\n")
add("fuzz-sasl", "markers", bytes([4 | 2, 0, 0]) + b"=\n")

# --- balancer ---
add("fuzz-lb-login", "imap", bytes([0]) + b"a1 CAPABILITY\r\na2 LOGIN \"u@example.test\" {6}\r\nsecret\r\n")
add("fuzz-lb-login", "imap-auth", bytes([0 | 0x20]) + b"a1 AUTHENTICATE PLAIN AHVAZXhhbXBsZS50ZXN0AHNlY3JldA==\r\n")
add("fuzz-lb-login", "imap-starttls", bytes([0 | 0x08]) + b"a1 STARTTLS\r\na2 ID (\"name\" \"x\")\r\na3 LOGIN u p\r\n")
add("fuzz-lb-login", "pop3", bytes([1]) + b"CAPA\r\nUSER u@example.test\r\nPASS secret\r\n")
add("fuzz-lb-login", "pop3-auth", bytes([1 | 0x40]) + b"AUTH LOGIN\r\ndUBleGFtcGxlLnRlc3Q=\r\nc2VjcmV0\r\n")
add("fuzz-lb-login", "smtp", bytes([2 | 0x08]) + b"EHLO c\r\nSTARTTLS\r\nEHLO c\r\nAUTH PLAIN\r\nAHVAZXhhbXBsZS50ZXN0AHNlY3JldA==\r\n")
add("fuzz-lb-check", "ready", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nready\n")
add("fuzz-lb-check", "draining", b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\nConnection: close\r\n\r\ndraining\n")
add("fuzz-lb-check", "greeting", b"* OK [CAPABILITY IMAP4rev1] ready\r\n")

# --- common ---
add("fuzz-proxy", "v1-tcp4", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n")
add("fuzz-proxy", "v1-tcp6", b"PROXY TCP6 2001:db8::1 2001:db8::2 1 993\r\n")
add("fuzz-proxy", "v1-unknown", b"PROXY UNKNOWN\r\n")
sig = b"\r\n\r\n\x00\r\nQUIT\n"
addr4 = bytes([192, 0, 2, 1, 192, 0, 2, 2, 0x30, 0x39, 0x03, 0xe1])
tlv = lambda t, v: bytes([t, len(v) >> 8, len(v) & 0xff]) + v
tlvs = tlv(1, b"imap") + tlv(2, b"mail.example.test") + tlv(5, b"uid123") + \
    tlv(0x20, bytes([1, 0, 0, 0, 0]) + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"CN=x")) + tlv(0x30, b"ns")
body = addr4 + tlvs
add("fuzz-proxy", "v2-tcp4-tlv", sig + bytes([0x21, 0x11, len(body) >> 8, len(body) & 0xff]) + body)
addr6 = bytes(range(16)) + bytes(range(16, 32)) + bytes([1, 2, 3, 4])
add("fuzz-proxy", "v2-tcp6", sig + bytes([0x21, 0x21, 0, len(addr6)]) + addr6)
add("fuzz-proxy", "v2-local", sig + bytes([0x20, 0x00, 0, 0]))
add("fuzz-http", "get", bytes([0x20]) + b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: x\r\n\r\n")
add("fuzz-http", "post", bytes([0x10]) + b"POST /kick?account=7 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    b"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
add("fuzz-http", "small", bytes([0x03]) + b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
add("fuzz-base64", "text", b"aGVsbG8gd29ybGQ=")
add("fuzz-base64", "pad", b"YQ==YWI=")
add("fuzz-cidr", "v4", b"192.0.2.0/24")
add("fuzz-cidr", "list", b"10.0.0.0/8, 2001:db8::/32 ,127.0.0.1,::ffff:192.0.2.1/128")
add("fuzz-config", "conf", b"# comment\ns = hello\ni = -42\nr = 3\nb = yes\nsize = 64M\ndur = 1h30m\ne = b\nl = a, b ,c\n")
add("fuzz-config", "quoted", b"s = \"quoted # not a comment\"\nsize = 512k\ndur = 250ms\nb = off\n")

# TLS: ClientHello for the server side (first byte 0x00 = all at once, 0x05 = chunks of 5).
def client_hello(sni, alpn, minv, maxv):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = minv; ctx.maximum_version = maxv
    if alpn: ctx.set_alpn_protocols(alpn)
    i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = ctx.wrap_bio(i, o, server_hostname=sni)
    try: s.do_handshake()
    except ssl.SSLWantReadError: pass
    return o.read()
add("fuzz-tls", "ch13-sni", bytes([0]) + client_hello("mail.tenant.test", ["imap"], ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3))
add("fuzz-tls", "ch12", bytes([5]) + client_hello("default.test", None, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2))
# Server flights for the client side, from a handshake with a throwaway certificate.
def server_flight(maxv):
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); cctx.check_hostname = False; cctx.verify_mode = ssl.CERT_NONE
    cctx.maximum_version = maxv
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); sctx.load_cert_chain(CERT, KEY)
    sctx.maximum_version = maxv
    ci, co, si, so = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = cctx.wrap_bio(ci, co, server_hostname="mail.tenant.test"); s = sctx.wrap_bio(si, so, server_side=True)
    try: c.do_handshake()
    except ssl.SSLWantReadError: pass
    si.write(co.read())
    try: s.do_handshake()
    except ssl.SSLWantReadError: pass
    return so.read()
add("fuzz-tls", "sf13", bytes([0x80]) + server_flight(ssl.TLSVersion.TLSv1_3))
add("fuzz-tls", "sf12", bytes([0x80 | 7]) + server_flight(ssl.TLSVersion.TLSv1_2))

# --- storage ---
add("fuzz-address", "addr", b"User.Name+tag@Example.TEST")
add("fuzz-address", "size", b"10G")
add("fuzz-passwd-file", "line", b"u@example.test:{SHA512-CRYPT}$6$salt$hash:1000:1000::/home/u::userdb_quota_rule=*:bytes=1G")
add("fuzz-passwd-file", "plain", b"a@b.c:{PLAIN}secret::::::")
add("fuzz-session-record", "record", b"v=1 node=fe1 proto=imap user=u@example.test client=192.0.2.1:4321 since=1700000000 seen=1700000100")
add("fuzz-session-record", "key", b"session:12345")
add("fuzz-kick", "kick", b"v=1 account=42 proto=imap session=fe1/17 by=admin")
add("fuzz-kick", "node", b"addr=10.0.0.1:1993")

# --- backend ---
add("fuzz-mailbox-list", "inbox", b"\0INBOX/*\0INBOX/Sent")
add("fuzz-mailbox-list", "ref", b"Archive/\0%/2026\0Archive/x/2026")
add("fuzz-mailbox-list", "utf7", b"\0*\0&AOQ-bc/Work")

# --- bench ---
for f in sorted(os.listdir(os.path.join(top, "bench/scripts"))):
    with open(os.path.join(top, "bench/scripts", f), "rb") as fh:
        add("fuzz-script", f.replace(".bench", ""), fh.read())
add("fuzz-script", "reply-tagged", b"* 1 FETCH (FLAGS (\\Seen))\r\n* OK x\r\na1 OK done\r\n")
add("fuzz-script", "reply-smtp", b"250-mx\r\n250-SIZE 100\r\n250 OK\r\n")
add("fuzz-script", "reply-dot", b"+OK\r\nline\r\n..dot\r\n.\r\n")

for t, lst in seeds.items():
    d = os.path.join(top, "tests/fuzz-seeds", t)
    os.makedirs(d, exist_ok=True)
    for n, data in lst:
        with open(os.path.join(d, n), "wb") as fh:
            fh.write(data)
print(len(seeds), "targets,", sum(len(v) for v in seeds.values()), "seeds")
