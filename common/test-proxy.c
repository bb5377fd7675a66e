/* Unit tests for postern/proxy.h: v2 encode -> decode round trips (IPv4,
 * IPv6, LOCAL, with and without TLVs), hand-built v2 headers, byte-at-a-time
 * feeding, every malformed form the decoder must refuse, v1 lines valid and
 * invalid, and payload after the header left alone. */
#include "postern/proxy.h"
#include "postern/hash.h"
#include "postern/testing.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

static struct sockaddr_storage sa(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, ip, &s6->sin6_addr) != 1)
			abort();
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		if (inet_pton(AF_INET, ip, &s4->sin_addr) != 1)
			abort();
	}
	return ss;
}

/* "ip:port" or "[ip]:port" of a decoded endpoint, for readable checks. */
static const char *ep(const struct sockaddr_storage *ss, char *buf, size_t size)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, size, "%s:%u", ip, ntohs(s4->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, size, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		snprintf(buf, size, "family %d", ss->ss_family);
	}
	return buf;
}

/* Feeds data one byte at a time: "need more" for every proper prefix, the
 * whole length at the end. Returns the final result. */
static int decode_bytewise(const uint8_t *data, size_t len, struct pn_proxy_header *h)
{
	const char *err = NULL;

	for (size_t k = 0; k < len; k++) {
		int r = pn_proxy_decode(data, k, 0, h, &err);
		if (r != 0) {
			fprintf(stderr, "prefix of %zu/%zu bytes gave %d (%s)\n", k, len, r,
				r < 0 ? err : "");
			return -2;
		}
	}
	return pn_proxy_decode(data, len, 0, h, &err);
}

/* Decoding data[0..len) must fail; returns the error (or "" if it did not). */
static const char *decode_error(const void *data, size_t len)
{
	struct pn_proxy_header h;
	const char *err = NULL;
	int r = pn_proxy_decode(data, len, 0, &h, &err);

	if (r != -1) {
		fprintf(stderr, "decode gave %d, expected -1\n", r);
		return "";
	}
	return err != NULL ? err : "(null error)";
}

static void fill_all_tlvs(struct pn_proxy_header *h)
{
	snprintf(h->alpn, sizeof(h->alpn), "imap");
	snprintf(h->authority, sizeof(h->authority), "mail.example.test");
	for (size_t i = 0; i < 40; i++)
		h->unique_id[i] = (uint8_t)(i * 7); /* includes a 0 byte: opaque */
	h->unique_id_len = 40;
	h->has_tls = true;
	h->tls.client = PN_PP2_CLIENT_SSL | PN_PP2_CLIENT_CERT_CONN | PN_PP2_CLIENT_CERT_SESS;
	h->tls.verify = 0;
	snprintf(h->tls.version, sizeof(h->tls.version), "TLSv1.3");
	snprintf(h->tls.cipher, sizeof(h->tls.cipher), "TLS_AES_256_GCM_SHA384");
	snprintf(h->tls.sig_alg, sizeof(h->tls.sig_alg), "RSA-SHA256");
	snprintf(h->tls.key_alg, sizeof(h->tls.key_alg), "RSA2048");
	snprintf(h->tls.cn, sizeof(h->tls.cn), "client.example.test");
	snprintf(h->netns, sizeof(h->netns), "blue");
	h->crc32c = true;
}

static void check_same_tlvs(const struct pn_proxy_header *a, const struct pn_proxy_header *b)
{
	CHECK_STR(a->alpn, b->alpn);
	CHECK_STR(a->authority, b->authority);
	CHECK_MEM(a->unique_id, a->unique_id_len, b->unique_id, b->unique_id_len);
	CHECK_INT(a->has_tls, b->has_tls);
	CHECK_INT(a->tls.client, b->tls.client);
	CHECK_INT(a->tls.verify, b->tls.verify);
	CHECK_STR(a->tls.version, b->tls.version);
	CHECK_STR(a->tls.cipher, b->tls.cipher);
	CHECK_STR(a->tls.sig_alg, b->tls.sig_alg);
	CHECK_STR(a->tls.key_alg, b->tls.key_alg);
	CHECK_STR(a->tls.cn, b->tls.cn);
	CHECK_STR(a->netns, b->netns);
	CHECK_INT(a->crc32c, b->crc32c);
}

/* Encodes in, decodes byte by byte into out, checks the length. */
static int round_trip(const struct pn_proxy_header *in, uint8_t *buf, size_t size,
		      struct pn_proxy_header *out)
{
	const char *err = NULL;
	int n = pn_proxy_v2_encode(in, buf, size, &err);

	CHECK(n > 0);
	if (n <= 0) {
		fprintf(stderr, "encode: %s\n", err);
		return -1;
	}
	CHECK_INT(decode_bytewise(buf, (size_t)n, out), n);
	CHECK_INT(out->version, 2);
	CHECK_INT(out->command, in->command);
	return n;
}

PN_TEST(test_v2_ipv4_exact_bytes)
{
	struct pn_proxy_header h, d;
	uint8_t buf[PN_PROXY_V2_MAX_HEADER];
	char s[80];

	pn_proxy_header_init(&h);
	h.command = PN_PROXY_CMD_PROXY;
	h.has_addrs = true;
	h.src = sa("192.0.2.1", 51234);
	h.dst = sa("198.51.100.7", 993);
	int n = round_trip(&h, buf, sizeof(buf), &d);
	static const uint8_t want[] = {
		0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
		0x21, 0x11, 0x00, 0x0C,
		192, 0, 2, 1, 198, 51, 100, 7, 0xC8, 0x22, 0x03, 0xE1,
	};
	CHECK_MEM(buf, (size_t)n, want, sizeof(want));
	CHECK(d.has_addrs);
	CHECK_INT(d.fam, 0x11);
	CHECK_STR(ep(&d.src, s, sizeof(s)), "192.0.2.1:51234");
	CHECK_STR(ep(&d.dst, s, sizeof(s)), "198.51.100.7:993");
	CHECK_STR(d.alpn, "");
	CHECK(!d.has_tls);
	CHECK(!d.crc32c);
	CHECK_INT(d.unique_id_len, 0);
}

PN_TEST(test_v2_ipv6_round_trip)
{
	struct pn_proxy_header h, d;
	uint8_t buf[PN_PROXY_V2_MAX_HEADER];
	char s[80];

	pn_proxy_header_init(&h);
	h.command = PN_PROXY_CMD_PROXY;
	h.has_addrs = true;
	h.src = sa("2001:db8::1", 40000);
	h.dst = sa("2001:db8:1::25", 25);
	int n = round_trip(&h, buf, sizeof(buf), &d);
	CHECK_INT(n, 16 + 36);
	CHECK_INT(buf[13], 0x21);
	CHECK(d.has_addrs);
	CHECK_STR(ep(&d.src, s, sizeof(s)), "[2001:db8::1]:40000");
	CHECK_STR(ep(&d.dst, s, sizeof(s)), "[2001:db8:1::25]:25");

	/* Now with every TLV and a CRC. */
	fill_all_tlvs(&h);
	n = round_trip(&h, buf, sizeof(buf), &d);
	CHECK(n > 16 + 36);
	CHECK_STR(ep(&d.src, s, sizeof(s)), "[2001:db8::1]:40000");
	check_same_tlvs(&h, &d);
}

PN_TEST(test_v2_ipv4_with_tlvs)
{
	struct pn_proxy_header h, d;
	uint8_t buf[PN_PROXY_V2_MAX_HEADER];
	char s[80];

	pn_proxy_header_init(&h);
	h.command = PN_PROXY_CMD_PROXY;
	h.has_addrs = true;
	h.src = sa("203.0.113.5", 1);
	h.dst = sa("203.0.113.6", 65535);
	fill_all_tlvs(&h);
	round_trip(&h, buf, sizeof(buf), &d);
	CHECK(d.has_addrs);
	CHECK_STR(ep(&d.src, s, sizeof(s)), "203.0.113.5:1");
	CHECK_STR(ep(&d.dst, s, sizeof(s)), "203.0.113.6:65535");
	check_same_tlvs(&h, &d);

	/* Partial TLS info: only the non-empty sub-TLVs are sent. */
	pn_proxy_header_init(&h);
	h.command = PN_PROXY_CMD_PROXY;
	h.has_addrs = true;
	h.src = sa("203.0.113.5", 1);
	h.dst = sa("203.0.113.6", 2);
	h.has_tls = true;
	h.tls.client = PN_PP2_CLIENT_SSL;
	h.tls.verify = 0x12345678;
	snprintf(h.tls.version, sizeof(h.tls.version), "TLSv1.2");
	int n = round_trip(&h, buf, sizeof(buf), &d);
	/* 16 + 12 + SSL TLV (3 + 5 + 3 + 7) */
	CHECK_INT(n, 16 + 12 + 18);
	check_same_tlvs(&h, &d);
	CHECK_INT(d.tls.verify, 0x12345678);
	/* Longest allowed strings and unique ID. */
	memset(h.authority, 'a', sizeof(h.authority) - 1);
	h.authority[sizeof(h.authority) - 1] = '\0';
	memset(h.tls.cn, 'c', sizeof(h.tls.cn) - 1);
	h.tls.cn[sizeof(h.tls.cn) - 1] = '\0';
	memset(h.unique_id, 0xab, PN_PROXY_UNIQUE_ID_MAX);
	h.unique_id_len = PN_PROXY_UNIQUE_ID_MAX;
	h.crc32c = true;
	round_trip(&h, buf, sizeof(buf), &d);
	check_same_tlvs(&h, &d);
}

PN_TEST(test_v2_local)
{
	struct pn_proxy_header h, d;
	uint8_t buf[PN_PROXY_V2_MAX_HEADER];

	pn_proxy_header_init(&h);
	/* Addresses given with LOCAL are ignored by the encoder. */
	h.has_addrs = true;
	h.src = sa("192.0.2.1", 1);
	h.dst = sa("192.0.2.2", 2);
	int n = round_trip(&h, buf, sizeof(buf), &d);
	static const uint8_t want[] = {
		0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
		0x20, 0x00, 0x00, 0x00,
	};
	CHECK_MEM(buf, (size_t)n, want, sizeof(want));
	CHECK_INT(d.command, PN_PROXY_CMD_LOCAL);
	CHECK(!d.has_addrs);
	CHECK_INT(d.fam, 0);

	/* LOCAL with TLVs (a health check that still names its ALPN). */
	pn_proxy_header_init(&h);
	fill_all_tlvs(&h);
	n = round_trip(&h, buf, sizeof(buf), &d);
	CHECK_INT(buf[12], 0x20);
	CHECK_INT(buf[13], 0x00);
	CHECK(!d.has_addrs);
	check_same_tlvs(&h, &d);

	/* PROXY without addresses: family UNSPEC, accepted, no addresses. */
	pn_proxy_header_init(&h);
	h.command = PN_PROXY_CMD_PROXY;
	n = round_trip(&h, buf, sizeof(buf), &d);
	CHECK_INT(n, 16);
	CHECK_INT(buf[12], 0x21);
	CHECK_INT(buf[13], 0x00);
	CHECK_INT(d.command, PN_PROXY_CMD_PROXY);
	CHECK(!d.has_addrs);
}

PN_TEST(test_v2_mixed_families)
{
	struct pn_proxy_header h, d;
	uint8_t buf[PN_PROXY_V2_MAX_HEADER];
	char s[80];

	pn_proxy_header_init(&h);
	h.command = PN_PROXY_CMD_PROXY;
	h.has_addrs = true;
	/* IPv4 client seen on a dual-stack socket, IPv4 local address. */
	h.src = sa("::ffff:192.0.2.9", 5000);
	h.dst = sa("192.0.2.1", 143);
	round_trip(&h, buf, sizeof(buf), &d);
	CHECK_INT(buf[13], 0x11);
	CHECK_STR(ep(&d.src, s, sizeof(s)), "192.0.2.9:5000");
	CHECK_STR(ep(&d.dst, s, sizeof(s)), "192.0.2.1:143");
	/* Both mapped: stays IPv6. */
	h.dst = sa("::ffff:192.0.2.1", 143);
	round_trip(&h, buf, sizeof(buf), &d);
	CHECK_INT(buf[13], 0x21);
	CHECK_STR(ep(&d.src, s, sizeof(s)), "[::ffff:192.0.2.9]:5000");
	/* IPv4 with real IPv6: IPv6, the IPv4 one mapped. */
	h.src = sa("192.0.2.9", 5000);
	h.dst = sa("2001:db8::1", 143);
	round_trip(&h, buf, sizeof(buf), &d);
	CHECK_INT(buf[13], 0x21);
	CHECK_STR(ep(&d.src, s, sizeof(s)), "[::ffff:192.0.2.9]:5000");
	CHECK_STR(ep(&d.dst, s, sizeof(s)), "[2001:db8::1]:143");
}

PN_TEST(test_v2_encode_errors)
{
	struct pn_proxy_header h;
	uint8_t buf[PN_PROXY_V2_MAX_HEADER];
	const char *err = NULL;

	pn_proxy_header_init(&h);
	h.command = PN_PROXY_CMD_PROXY;
	h.has_addrs = true;
	h.src = sa("192.0.2.1", 1);
	h.dst = sa("192.0.2.2", 2);
	fill_all_tlvs(&h);
	int n = pn_proxy_v2_encode(&h, buf, sizeof(buf), &err);
	CHECK(n > 0);
	/* Every buffer shorter than the header is refused. */
	for (int k = 0; k < n; k++) {
		err = NULL;
		CHECK_INT(pn_proxy_v2_encode(&h, buf, (size_t)k, &err), -1);
		CHECK(err != NULL);
	}
	CHECK_INT(pn_proxy_v2_encode(&h, buf, (size_t)n, &err), n);

	struct pn_proxy_header bad = h;
	bad.unique_id_len = PN_PROXY_UNIQUE_ID_MAX + 1;
	CHECK_INT(pn_proxy_v2_encode(&bad, buf, sizeof(buf), &err), -1);
	bad = h;
	memset(bad.alpn, 'x', sizeof(bad.alpn)); /* no NUL */
	CHECK_INT(pn_proxy_v2_encode(&bad, buf, sizeof(buf), &err), -1);
	bad = h;
	memset(bad.tls.cipher, 'x', sizeof(bad.tls.cipher));
	CHECK_INT(pn_proxy_v2_encode(&bad, buf, sizeof(buf), &err), -1);
	bad = h;
	memset(&bad.src, 0, sizeof(bad.src));
	((struct sockaddr_un *)&bad.src)->sun_family = AF_UNIX;
	CHECK_INT(pn_proxy_v2_encode(&bad, buf, sizeof(buf), &err), -1);
	bad = h;
	bad.command = (enum pn_proxy_command)5;
	CHECK_INT(pn_proxy_v2_encode(&bad, buf, sizeof(buf), &err), -1);
}

/* A header built by hand the way HAProxy lays it out, not by our encoder. */
PN_TEST(test_v2_hand_built)
{
	uint8_t b[128];
	size_t n = 0;
	struct pn_proxy_header d;
	char s[80];

	memcpy(b, pn_proxy_v2_signature, 12);
	n = 12;
	b[n++] = 0x21;
	b[n++] = 0x11;
	b[n++] = 0;
	b[n++] = 0; /* length patched below */
	static const uint8_t addrs[] = { 10, 1, 2, 3, 10, 9, 8, 7, 0x30, 0x39, 0x00, 0x19 };
	memcpy(b + n, addrs, sizeof(addrs));
	n += sizeof(addrs);
	/* NOOP padding of 2 bytes, an unknown custom TLV, then SSL. */
	static const uint8_t noop[] = { 0x04, 0x00, 0x02, 0xff, 0xff };
	memcpy(b + n, noop, sizeof(noop));
	n += sizeof(noop);
	static const uint8_t custom[] = { 0xE0, 0x00, 0x03, 'a', 'b', 'c' };
	memcpy(b + n, custom, sizeof(custom));
	n += sizeof(custom);
	static const uint8_t ssl[] = {
		0x20, 0x00, 0x12,		/* SSL, 18 bytes */
		0x07, 0x00, 0x00, 0x00, 0x01,	/* client bits, verify = 1 */
		0x21, 0x00, 0x07, 'T', 'L', 'S', 'v', '1', '.', '3',
		0xEE, 0x00, 0x00,		/* unknown sub-TLV, empty */
	};
	memcpy(b + n, ssl, sizeof(ssl));
	n += sizeof(ssl);
	b[15] = (uint8_t)(n - 16);
	/* Followed by the client's first bytes. */
	memcpy(b + n, "a001 LOGIN", 10);

	CHECK_INT(decode_bytewise(b, n, &d), (int)n);
	const char *err = NULL;
	CHECK_INT(pn_proxy_decode(b, n + 10, 0, &d, &err), (int)n);
	CHECK_STR(ep(&d.src, s, sizeof(s)), "10.1.2.3:12345");
	CHECK_STR(ep(&d.dst, s, sizeof(s)), "10.9.8.7:25");
	CHECK(d.has_tls);
	CHECK_INT(d.tls.client, 7);
	CHECK_INT(d.tls.verify, 1);
	CHECK_STR(d.tls.version, "TLSv1.3");
	CHECK_STR(d.tls.cn, "");
	CHECK(!d.crc32c);

	/* UDP over IPv4 and UNIX stream: accepted, but no addresses. */
	b[13] = 0x12;
	CHECK_INT(pn_proxy_decode(b, n, 0, &d, &err), (int)n);
	CHECK(!d.has_addrs);
	CHECK_INT(d.fam, 0x12);

	uint8_t u[16 + 216];
	memset(u, 'u', sizeof(u));
	memcpy(u, pn_proxy_v2_signature, 12);
	u[12] = 0x21;
	u[13] = 0x31;
	u[14] = 0;
	u[15] = 216;
	CHECK_INT(decode_bytewise(u, sizeof(u), &d), (int)sizeof(u));
	CHECK(!d.has_addrs);
	CHECK_INT(d.command, PN_PROXY_CMD_PROXY);
	/* LOCAL with a (valid) family: the address block is skipped. */
	u[12] = 0x20;
	CHECK_INT(pn_proxy_decode(u, sizeof(u), 0, &d, &err), (int)sizeof(u));
	CHECK_INT(d.command, PN_PROXY_CMD_LOCAL);
	CHECK(!d.has_addrs);
}

/* Headers captured from HAProxy 2.6.12 (Debian 12) with "send-proxy-v2
 * proxy-v2-options ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,
 * crc32c,unique-id": an IMAPS client with a client certificate over IPv4,
 * and a plain client over IPv6; each followed by the client's first bytes.
 * HAProxy puts CRC32C first and sends an empty UNIQUE_ID when none is set. */
static const uint8_t haproxy_tls_v4[] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
	0x21, 0x11, 0x00, 0x89, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01,
	0xdd, 0x82, 0x46, 0x49, 0x03, 0x00, 0x04, 0x59, 0x16, 0x0c, 0xab, 0x01,
	0x00, 0x04, 0x69, 0x6d, 0x61, 0x70, 0x02, 0x00, 0x11, 0x6d, 0x61, 0x69,
	0x6c, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x74, 0x65,
	0x73, 0x74, 0x05, 0x00, 0x00, 0x20, 0x00, 0x55, 0x07, 0x00, 0x00, 0x00,
	0x00, 0x21, 0x00, 0x07, 0x54, 0x4c, 0x53, 0x76, 0x31, 0x2e, 0x33, 0x22,
	0x00, 0x13, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x2e, 0x65, 0x78, 0x61,
	0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x74, 0x65, 0x73, 0x74, 0x25, 0x00, 0x07,
	0x52, 0x53, 0x41, 0x32, 0x30, 0x34, 0x38, 0x24, 0x00, 0x0a, 0x52, 0x53,
	0x41, 0x2d, 0x53, 0x48, 0x41, 0x32, 0x35, 0x36, 0x23, 0x00, 0x16, 0x54,
	0x4c, 0x53, 0x5f, 0x41, 0x45, 0x53, 0x5f, 0x32, 0x35, 0x36, 0x5f, 0x47,
	0x43, 0x4d, 0x5f, 0x53, 0x48, 0x41, 0x33, 0x38, 0x34, 0x61, 0x30, 0x30,
	0x31, 0x20, 0x4c, 0x4f, 0x47, 0x49, 0x4e, 0x0a,
};

static const uint8_t haproxy_v6[] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
	0x21, 0x21, 0x00, 0x36, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0xc8, 0xa2, 0x42, 0xf8, 0x03, 0x00, 0x04, 0xbe, 0x2b, 0x6f, 0x6b, 0x05,
	0x00, 0x00, 0x20, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x55, 0x53,
	0x45, 0x52, 0x20, 0x78, 0x0d, 0x0a,
};

PN_TEST(test_v2_captured_from_haproxy)
{
	struct pn_proxy_header d;
	const char *err = NULL;
	char s[80];

	CHECK_INT(pn_proxy_decode(haproxy_tls_v4, sizeof(haproxy_tls_v4), 0, &d, &err), 153);
	CHECK_INT(d.version, 2);
	CHECK_INT(d.command, PN_PROXY_CMD_PROXY);
	CHECK_STR(ep(&d.src, s, sizeof(s)), "127.0.0.1:56706");
	CHECK_STR(ep(&d.dst, s, sizeof(s)), "127.0.0.1:17993");
	CHECK(d.crc32c);
	CHECK_STR(d.alpn, "imap");
	CHECK_STR(d.authority, "mail.example.test");
	CHECK_INT(d.unique_id_len, 0);
	CHECK(d.has_tls);
	CHECK_INT(d.tls.client, PN_PP2_CLIENT_SSL | PN_PP2_CLIENT_CERT_CONN | PN_PP2_CLIENT_CERT_SESS);
	CHECK_INT(d.tls.verify, 0);
	CHECK_STR(d.tls.version, "TLSv1.3");
	CHECK_STR(d.tls.cipher, "TLS_AES_256_GCM_SHA384");
	CHECK_STR(d.tls.sig_alg, "RSA-SHA256");
	CHECK_STR(d.tls.key_alg, "RSA2048");
	CHECK_STR(d.tls.cn, "client.example.test");
	CHECK_MEM(haproxy_tls_v4 + 153, sizeof(haproxy_tls_v4) - 153, "a001 LOGIN\n", 11);
	CHECK_INT(decode_bytewise(haproxy_tls_v4, 153, &d), 153);

	CHECK_INT(pn_proxy_decode(haproxy_v6, sizeof(haproxy_v6), 0, &d, &err), 70);
	CHECK_STR(ep(&d.src, s, sizeof(s)), "[::1]:51362");
	CHECK_STR(ep(&d.dst, s, sizeof(s)), "[::1]:17144");
	CHECK(d.crc32c);
	CHECK(d.has_tls);
	CHECK_INT(d.tls.client, 0);
	CHECK_STR(d.tls.version, "");
	CHECK_INT(decode_bytewise(haproxy_v6, 70, &d), 70);

	/* The same bytes with the source port changed: CRC mismatch. */
	uint8_t copy[sizeof(haproxy_tls_v4)];
	memcpy(copy, haproxy_tls_v4, sizeof(copy));
	copy[25] ^= 0x01;
	CHECK_STR(decode_error(copy, sizeof(copy)), "PROXY v2: CRC32C mismatch");
}

PN_TEST(test_v2_payload_after_header)
{
	struct pn_proxy_header h, d;
	uint8_t buf[PN_PROXY_V2_MAX_HEADER + 64];
	const char *err = NULL;

	pn_proxy_header_init(&h);
	h.command = PN_PROXY_CMD_PROXY;
	h.has_addrs = true;
	h.src = sa("192.0.2.1", 1);
	h.dst = sa("192.0.2.2", 2);
	h.crc32c = true;
	int n = pn_proxy_v2_encode(&h, buf, PN_PROXY_V2_MAX_HEADER, &err);
	CHECK(n > 0);
	/* Payload that itself looks like a header must not be touched. */
	memcpy(buf + n, buf, (size_t)n);
	CHECK_INT(pn_proxy_decode(buf, (size_t)n * 2, 0, &d, &err), n);
	memcpy(buf + n, "EHLO x\r\n", 8);
	CHECK_INT(pn_proxy_decode(buf, (size_t)n + 8, 0, &d, &err), n);
	CHECK(d.crc32c);
}

/* Builds a v2 header: fixed part with ver_cmd, fam, then body. */
static size_t build_v2(uint8_t *b, uint8_t ver_cmd, uint8_t fam, const uint8_t *body,
		       size_t body_len)
{
	memcpy(b, pn_proxy_v2_signature, 12);
	b[12] = ver_cmd;
	b[13] = fam;
	b[14] = (uint8_t)(body_len >> 8);
	b[15] = (uint8_t)body_len;
	if (body_len > 0)
		memcpy(b + 16, body, body_len);
	return 16 + body_len;
}

PN_TEST(test_v2_malformed_fixed_part)
{
	uint8_t b[64];

	/* Anything that starts neither like v2 nor like v1, at once. */
	CHECK_STR(decode_error("G", 1), "not a PROXY protocol header");
	CHECK_STR(decode_error("\x16\x03\x01", 3), "not a PROXY protocol header");
	/* Signature mismatch at each position is seen as soon as it arrives. */
	for (size_t i = 1; i < 12; i++) {
		memcpy(b, pn_proxy_v2_signature, 12);
		b[i] ^= 0x40;
		CHECK_STR(decode_error(b, i + 1), "PROXY v2: bad signature");
	}
	/* Version 1 in the binary form, version 3: refused at byte 13. */
	build_v2(b, 0x11, 0x11, NULL, 0);
	CHECK_STR(decode_error(b, 13), "PROXY v2: unsupported version");
	build_v2(b, 0x31, 0x11, NULL, 0);
	CHECK_STR(decode_error(b, 13), "PROXY v2: unsupported version");
	/* Unknown commands. */
	build_v2(b, 0x22, 0x11, NULL, 0);
	CHECK_STR(decode_error(b, 13), "PROXY v2: unknown command");
	build_v2(b, 0x2F, 0x11, NULL, 0);
	CHECK_STR(decode_error(b, 16), "PROXY v2: unknown command");
	/* Families and protocols outside the list, with either command. */
	static const uint8_t bad_fams[] = { 0x01, 0x02, 0x10, 0x13, 0x20, 0x23, 0x30, 0x33,
					    0x41, 0xF1, 0x1F };
	for (size_t i = 0; i < sizeof(bad_fams); i++) {
		build_v2(b, 0x21, bad_fams[i], NULL, 0);
		CHECK_STR(decode_error(b, 14), "PROXY v2: invalid address family or protocol");
		build_v2(b, 0x20, bad_fams[i], NULL, 0);
		CHECK_STR(decode_error(b, 14), "PROXY v2: invalid address family or protocol");
	}
}

PN_TEST(test_v2_malformed_lengths)
{
	uint8_t b[PN_PROXY_V2_MAX_HEADER + 16];

	/* Declared length beyond the limit: refused as soon as it is read. */
	build_v2(b, 0x21, 0x11, NULL, 0);
	b[14] = 0xFF;
	b[15] = 0xFF;
	CHECK_STR(decode_error(b, 16), "PROXY v2: header longer than the limit");
	size_t over = PN_PROXY_V2_MAX_HEADER - 16 + 1;
	b[14] = (uint8_t)(over >> 8);
	b[15] = (uint8_t)over;
	CHECK_STR(decode_error(b, 16), "PROXY v2: header longer than the limit");
	/* Exactly at the limit is fine (NOOP padding). */
	size_t body = PN_PROXY_V2_MAX_HEADER - 16;
	uint8_t pad[PN_PROXY_V2_MAX_HEADER];
	memset(pad, 0, sizeof(pad));
	pad[0] = 0x04;
	pad[1] = (uint8_t)((body - 3) >> 8);
	pad[2] = (uint8_t)(body - 3);
	size_t n = build_v2(b, 0x20, 0x00, pad, body);
	struct pn_proxy_header d;
	const char *err = NULL;
	CHECK_INT(n, PN_PROXY_V2_MAX_HEADER);
	CHECK_INT(pn_proxy_decode(b, n, 0, &d, &err), PN_PROXY_V2_MAX_HEADER);
	CHECK_INT(pn_proxy_decode(b, n - 1, 0, &d, &err), 0);

	/* Address blocks shorter than their family needs, refused at byte 16
	 * without waiting for the body. */
	static const struct {
		uint8_t fam;
		size_t len;
	} short_blocks[] = {
		{ 0x11, 11 }, { 0x12, 0 }, { 0x21, 35 }, { 0x22, 12 }, { 0x31, 215 }, { 0x32, 36 },
	};
	for (size_t i = 0; i < sizeof(short_blocks) / sizeof(short_blocks[0]); i++) {
		build_v2(b, 0x21, short_blocks[i].fam, NULL, 0);
		b[14] = (uint8_t)(short_blocks[i].len >> 8);
		b[15] = (uint8_t)short_blocks[i].len;
		CHECK_STR(decode_error(b, 16), "PROXY v2: address block too short for its family");
		/* LOCAL as well: the block must still be well formed. */
		b[12] = 0x20;
		CHECK_STR(decode_error(b, 16), "PROXY v2: address block too short for its family");
	}
}

PN_TEST(test_v2_malformed_tlvs)
{
	uint8_t b[512];
	uint8_t body[256];
	size_t n;

	/* TLV header cut short: 1 and 2 trailing bytes. */
	n = build_v2(b, 0x20, 0x00, (const uint8_t *)"\x04", 1);
	CHECK_STR(decode_error(b, n), "PROXY v2: TLV overruns the header");
	n = build_v2(b, 0x20, 0x00, (const uint8_t *)"\x04\x00", 2);
	CHECK_STR(decode_error(b, n), "PROXY v2: TLV overruns the header");
	/* TLV value longer than what is left. */
	n = build_v2(b, 0x20, 0x00, (const uint8_t *)"\x02\x00\x05" "abcd", 7);
	CHECK_STR(decode_error(b, n), "PROXY v2: TLV overruns the header");
	/* Same after an IPv4 address block. */
	memset(body, 0, sizeof(body));
	memcpy(body + 12, "\x01\x00\x10" "h2", 5);
	n = build_v2(b, 0x21, 0x11, body, 17);
	CHECK_STR(decode_error(b, n), "PROXY v2: TLV overruns the header");
	/* Payload after a complete header is not part of it even if the TLV
	 * claims it. */
	memcpy(b + n, "0123456789abcdef", 16);
	CHECK_STR(decode_error(b, n + 16), "PROXY v2: TLV overruns the header");

	/* SSL TLV shorter than its fixed part. */
	n = build_v2(b, 0x20, 0x00, (const uint8_t *)"\x20\x00\x04\x01\x00\x00\x00", 7);
	CHECK_STR(decode_error(b, n), "PROXY v2: SSL TLV too short");
	/* Sub-TLV overrunning the SSL TLV (but not the header). */
	static const uint8_t ssl_over[] = {
		0x20, 0x00, 0x09, 0x01, 0, 0, 0, 0, 0x21, 0x00, 0x05, 'T', 'L',
		/* the rest of "TLSv1" lies outside the SSL TLV, in a NOOP */
		0x04, 0x00, 0x00,
	};
	n = build_v2(b, 0x20, 0x00, ssl_over, sizeof(ssl_over));
	CHECK_STR(decode_error(b, n), "PROXY v2: sub-TLV overruns the SSL TLV");
	/* Partial sub-TLV header inside the SSL TLV. */
	static const uint8_t ssl_partial[] = { 0x20, 0x00, 0x07, 0x01, 0, 0, 0, 0, 0x21, 0x00 };
	n = build_v2(b, 0x20, 0x00, ssl_partial, sizeof(ssl_partial));
	CHECK_STR(decode_error(b, n), "PROXY v2: sub-TLV overruns the SSL TLV");

	/* Duplicates of known TLVs. */
	n = build_v2(b, 0x20, 0x00, (const uint8_t *)"\x01\x00\x01x\x01\x00\x01y", 8);
	CHECK_STR(decode_error(b, n), "PROXY v2: duplicate TLV");
	n = build_v2(b, 0x20, 0x00, (const uint8_t *)"\x05\x00\x00\x05\x00\x00", 6);
	CHECK_STR(decode_error(b, n), "PROXY v2: duplicate TLV");
	static const uint8_t dup_sub[] = {
		0x20, 0x00, 0x0B, 0x01, 0, 0, 0, 0, 0x22, 0x00, 0x00, 0x22, 0x00, 0x00,
	};
	n = build_v2(b, 0x20, 0x00, dup_sub, sizeof(dup_sub));
	CHECK_STR(decode_error(b, n), "PROXY v2: duplicate TLV");
	/* Unknown and NOOP TLVs may repeat. */
	n = build_v2(b, 0x20, 0x00, (const uint8_t *)"\x04\x00\x00\x04\x00\x00\xE1\x00\x00\xE1\x00\x00", 12);
	struct pn_proxy_header d;
	const char *err = NULL;
	CHECK_INT(pn_proxy_decode(b, n, 0, &d, &err), (int)n);

	/* NUL inside a string TLV. */
	n = build_v2(b, 0x20, 0x00, (const uint8_t *)"\x02\x00\x03" "a\0b", 6);
	CHECK_STR(decode_error(b, n), "PROXY v2: NUL byte in TLV string");
	/* A string one byte longer than its field allows. */
	body[0] = 0x02;
	body[1] = 0x01;
	body[2] = 0x00; /* 256 bytes */
	uint8_t big[3 + 256];
	memcpy(big, body, 3);
	memset(big + 3, 'a', 256);
	n = build_v2(b, 0x20, 0x00, big, sizeof(big));
	CHECK_STR(decode_error(b, n), "PROXY v2: TLV value too long");
	/* UNIQUE_ID over 128 bytes. */
	big[0] = 0x05;
	big[1] = 0x00;
	big[2] = 129;
	n = build_v2(b, 0x20, 0x00, big, 3 + 129);
	CHECK_STR(decode_error(b, n), "PROXY v2: UNIQUE_ID longer than 128 bytes");
	/* CRC32C with a wrong length. */
	n = build_v2(b, 0x20, 0x00, (const uint8_t *)"\x03\x00\x03\x00\x00\x00", 6);
	CHECK_STR(decode_error(b, n), "PROXY v2: CRC32C TLV is not 4 bytes");
}

PN_TEST(test_v2_crc32c)
{
	struct pn_proxy_header h, d;
	uint8_t buf[PN_PROXY_V2_MAX_HEADER];
	const char *err = NULL;

	pn_proxy_header_init(&h);
	h.command = PN_PROXY_CMD_PROXY;
	h.has_addrs = true;
	h.src = sa("192.0.2.1", 1000);
	h.dst = sa("192.0.2.2", 2000);
	snprintf(h.authority, sizeof(h.authority), "example.test");
	h.crc32c = true;
	int n = pn_proxy_v2_encode(&h, buf, sizeof(buf), &err);
	CHECK(n > 0);
	/* The CRC is the last TLV; recompute it independently. */
	uint8_t copy[PN_PROXY_V2_MAX_HEADER];
	memcpy(copy, buf, (size_t)n);
	CHECK_INT(copy[n - 7], PN_PP2_TYPE_CRC32C);
	memset(copy + n - 4, 0, 4);
	uint32_t crc = pn_crc32c(copy, (size_t)n);
	uint32_t sent = (uint32_t)buf[n - 4] << 24 | (uint32_t)buf[n - 3] << 16 |
			(uint32_t)buf[n - 2] << 8 | buf[n - 1];
	CHECK_INT(crc, sent);
	CHECK_INT(pn_proxy_decode(buf, (size_t)n, 0, &d, &err), n);
	CHECK(d.crc32c);

	/* Any single changed bit in the address block and TLVs is refused,
	 * except in the CRC TLV's own type byte: turned into another type, it
	 * is no CRC any more (a CRC cannot vouch for its own presence). */
	for (int i = 16; i < n; i++) {
		if (i == n - 7)
			continue;
		for (int bit = 0; bit < 8; bit++) {
			memcpy(copy, buf, (size_t)n);
			copy[i] ^= (uint8_t)(1u << bit);
			CHECK_INT(pn_proxy_decode(copy, (size_t)n, 0, &d, &err), -1);
		}
	}
	/* A spoofed source address with the old CRC: refused as a mismatch. */
	memcpy(copy, buf, (size_t)n);
	copy[16] = 10;
	CHECK_STR(decode_error(copy, (size_t)n), "PROXY v2: CRC32C mismatch");
	/* Duplicate CRC32C TLV. */
	n = build_v2(copy, 0x20, 0x00,
		     (const uint8_t *)"\x03\x00\x04\x00\x00\x00\x00\x03\x00\x04\x00\x00\x00\x00", 14);
	CHECK_STR(decode_error(copy, (size_t)n), "PROXY v2: duplicate TLV");
}

/* ---- v1 ---- */

static void check_v1_ok(const char *line, const char *src, const char *dst)
{
	struct pn_proxy_header d;
	char s[80];
	size_t len = strlen(line);
	char with_payload[256];

	CHECK_INT(decode_bytewise((const uint8_t *)line, len, &d), (int)len);
	CHECK_INT(d.version, 1);
	CHECK_INT(d.command, PN_PROXY_CMD_PROXY);
	if (src == NULL) {
		CHECK(!d.has_addrs);
		CHECK_INT(d.fam, 0x00);
	} else {
		CHECK(d.has_addrs);
		CHECK_STR(ep(&d.src, s, sizeof(s)), src);
		CHECK_STR(ep(&d.dst, s, sizeof(s)), dst);
	}
	/* Followed by payload: only the line is consumed. */
	snprintf(with_payload, sizeof(with_payload), "%sEHLO client\r\n", line);
	const char *err = NULL;
	CHECK_INT(pn_proxy_decode(with_payload, strlen(with_payload), 0, &d, &err), (int)len);
}

PN_TEST(test_v1_valid)
{
	check_v1_ok("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
		    "192.168.0.1:56324", "192.168.0.11:443");
	check_v1_ok("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
		    "0.0.0.0:0", "255.255.255.255:65535");
	check_v1_ok("PROXY TCP6 2001:db8::1 2001:DB8::2 1 25\r\n",
		    "[2001:db8::1]:1", "[2001:db8::2]:25");
	check_v1_ok("PROXY TCP6 ::ffff:192.0.2.1 ::ffff:192.0.2.2 4000 143\r\n",
		    "[::ffff:192.0.2.1]:4000", "[::ffff:192.0.2.2]:143");
	check_v1_ok("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
		    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
		    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
	check_v1_ok("PROXY UNKNOWN\r\n", NULL, NULL);
	check_v1_ok("PROXY UNKNOWN ffff:f::f ffff:f::f 65535 65535\r\n", NULL, NULL);
	/* The longest line (107 bytes with CRLF), UNKNOWN with anything. */
	char longest[PN_PROXY_V1_MAX_LINE + 1];
	memset(longest, 'x', sizeof(longest));
	memcpy(longest, "PROXY UNKNOWN ", 14);
	memcpy(longest + PN_PROXY_V1_MAX_LINE - 2, "\r\n", 3);
	CHECK_INT(strlen(longest), PN_PROXY_V1_MAX_LINE);
	check_v1_ok(longest, NULL, NULL);
}

PN_TEST(test_v1_invalid)
{
	static const char *const bad[] = {
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",	/* LF without CR */
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rx",	/* CR without LF */
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r443\r\n",
		"PROXY  TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",	/* double space */
		"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n",	/* trailing space */
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",	/* missing field */
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 1\r\n",	/* extra field */
		"PROXY TCP4 192.168.0.01 192.168.0.11 56324 443\r\n",	/* leading zero */
		"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 00\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",	/* port range */
		"PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n",
		"PROXY TCP4 192.168.0.256 192.168.0.11 1 2\r\n",	/* octet range */
		"PROXY TCP4 192.168.0 192.168.0.11 1 2\r\n",
		"PROXY TCP4 192.168.0.1.1 192.168.0.11 1 2\r\n",
		"PROXY TCP4 ::1 ::1 1 2\r\n",				/* family mismatch */
		"PROXY TCP6 192.168.0.1 192.168.0.11 1 2\r\n",
		"PROXY TCP6 ::1%lo ::1 1 2\r\n",			/* zone */
		"PROXY TCP6 [::1] ::1 1 2\r\n",
		"PROXY TCP6 1::2::3 ::1 1 2\r\n",
		"PROXY TCP5 192.168.0.1 192.168.0.11 1 2\r\n",		/* protocol word */
		"PROXY tcp4 192.168.0.1 192.168.0.11 1 2\r\n",
		"PROXY UNKNOWNX\r\n",
		"PROXY TCP4\r\n",
		"PROXY \r\n",
		"PROXY\r\n",
		"proxy TCP4 192.168.0.1 192.168.0.11 1 2\r\n",		/* not "PROXY" */
		"PROXYTCP4 192.168.0.1 192.168.0.11 1 2\r\n",
		"PROXY TCP4 192.168.0.1 192.168.0.11 1 2\r\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct pn_proxy_header d;
		const char *err = NULL;
		int r = pn_proxy_decode(bad[i], strlen(bad[i]), 0, &d, &err);
		if (r != -1)
			fprintf(stderr, "accepted bad v1 line #%zu: %d\n", i, r);
		CHECK_INT(r, -1);
		CHECK(err != NULL);
	}

	/* No CRLF within 107 bytes: refused once 106 bytes are in without a
	 * CR (a CR at index 106 would make a 108-byte line). */
	char line[200];
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	struct pn_proxy_header d;
	const char *err = NULL;
	CHECK_INT(pn_proxy_decode(line, PN_PROXY_V1_MAX_LINE - 2, 0, &d, &err), 0);
	CHECK_INT(pn_proxy_decode(line, PN_PROXY_V1_MAX_LINE - 1, 0, &d, &err), -1);
	memcpy(line + PN_PROXY_V1_MAX_LINE - 1, "\r\n", 2); /* 108-byte line */
	CHECK_INT(pn_proxy_decode(line, PN_PROXY_V1_MAX_LINE + 1, 0, &d, &err), -1);
	CHECK_STR(err, "PROXY v1: no CRLF within 107 bytes");

	/* Early refusal of a wrong protocol word, before any CRLF. */
	CHECK_INT(pn_proxy_decode("PROXY TCP5", 10, 0, &d, &err), -1);
	CHECK_INT(pn_proxy_decode("PROXY X", 7, 0, &d, &err), -1);
	CHECK_INT(pn_proxy_decode("PROXX", 5, 0, &d, &err), -1);
	CHECK_INT(pn_proxy_decode("PROXY UNK", 9, 0, &d, &err), 0);

	/* v1 refused when only v2 is allowed. */
	const char *ok = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
	CHECK_INT(pn_proxy_decode(ok, strlen(ok), PN_PROXY_DECODE_V2_ONLY, &d, &err), -1);
	CHECK_INT(pn_proxy_decode(ok, 1, PN_PROXY_DECODE_V2_ONLY, &d, &err), -1);
}

PN_TEST(test_empty_input)
{
	struct pn_proxy_header d;
	const char *err = NULL;
	CHECK_INT(pn_proxy_decode("", 0, 0, &d, &err), 0);
	CHECK_INT(pn_proxy_decode(NULL, 0, 0, &d, &err), 0);
}

PN_TEST_MAIN("test-proxy",
	PN_TEST_CASE(test_v2_ipv4_exact_bytes),
	PN_TEST_CASE(test_v2_ipv6_round_trip),
	PN_TEST_CASE(test_v2_ipv4_with_tlvs),
	PN_TEST_CASE(test_v2_local),
	PN_TEST_CASE(test_v2_mixed_families),
	PN_TEST_CASE(test_v2_encode_errors),
	PN_TEST_CASE(test_v2_hand_built),
	PN_TEST_CASE(test_v2_captured_from_haproxy),
	PN_TEST_CASE(test_v2_payload_after_header),
	PN_TEST_CASE(test_v2_malformed_fixed_part),
	PN_TEST_CASE(test_v2_malformed_lengths),
	PN_TEST_CASE(test_v2_malformed_tlvs),
	PN_TEST_CASE(test_v2_crc32c),
	PN_TEST_CASE(test_v1_valid),
	PN_TEST_CASE(test_v1_invalid),
	PN_TEST_CASE(test_empty_input))
