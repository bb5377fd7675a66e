/* Unit tests for postern/dns.h against a tiny UDP DNS responder running in a
 * thread on 127.0.0.1 (port picked by the kernel). It answers hand-built
 * responses: A (two records), AAAA, MX (two records), SRV, NXDOMAIN,
 * SERVFAIL, REFUSED, a truncated answer, and never answers one name so that
 * the (short) timeout is tested. We check what the callbacks receive.
 */
#include "postern/dns.h"
#include "postern/loop.h"
#include "postern/testing.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#define RUN_UNTIL(loop, cond, ms)                                             \
	do {                                                                  \
		uint64_t end_ = now_ms() + (ms);                              \
		while (!(cond) && now_ms() < end_)                            \
			pn_loop_run_once((loop), 10);                         \
	} while (0)

/* ---- the responder ---- */

struct responder {
	int fd;			/* UDP */
	int tfd;		/* TCP listener on the same port */
	uint16_t port;
	pthread_t thread;
	atomic_int queries;
	atomic_int silent_queries;
};

struct msg {
	uint8_t b[512];
	size_t len;
};

static void put8(struct msg *m, unsigned int v)
{
	if (m->len < sizeof(m->b))
		m->b[m->len++] = (uint8_t)v;
}

static void put16(struct msg *m, unsigned int v)
{
	put8(m, v >> 8);
	put8(m, v & 0xff);
}

static void put32(struct msg *m, uint32_t v)
{
	put16(m, v >> 16);
	put16(m, v & 0xffff);
}

/* A name in uncompressed wire form. */
static void put_name(struct msg *m, const char *name)
{
	while (*name != '\0') {
		const char *dot = strchr(name, '.');
		size_t n = dot ? (size_t)(dot - name) : strlen(name);

		put8(m, (unsigned int)n);
		for (size_t i = 0; i < n; i++)
			put8(m, (uint8_t)name[i]);
		name += n;
		if (*name == '.')
			name++;
	}
	put8(m, 0);
}

/* An answer record for the question's name (a pointer to offset 12). */
static void rr_begin(struct msg *m, unsigned int type, uint32_t ttl, size_t *rdlen_at)
{
	put16(m, 0xc00c);
	put16(m, type);
	put16(m, 1);
	put32(m, ttl);
	*rdlen_at = m->len;
	put16(m, 0);
}

static void rr_end(struct msg *m, size_t rdlen_at)
{
	size_t rdlen = m->len - rdlen_at - 2;

	m->b[rdlen_at] = (uint8_t)(rdlen >> 8);
	m->b[rdlen_at + 1] = (uint8_t)rdlen;
}

static void answer_a(struct msg *m, const char *ip, uint32_t ttl)
{
	struct in_addr a;
	size_t at;

	inet_pton(AF_INET, ip, &a);
	rr_begin(m, 1, ttl, &at);
	for (int i = 0; i < 4; i++)
		put8(m, ((uint8_t *)&a)[i]);
	rr_end(m, at);
}

static void answer_aaaa(struct msg *m, const char *ip, uint32_t ttl)
{
	struct in6_addr a;
	size_t at;

	inet_pton(AF_INET6, ip, &a);
	rr_begin(m, 28, ttl, &at);
	for (int i = 0; i < 16; i++)
		put8(m, a.s6_addr[i]);
	rr_end(m, at);
}

static void answer_mx(struct msg *m, unsigned int pref, const char *host, uint32_t ttl)
{
	size_t at;

	rr_begin(m, 15, ttl, &at);
	put16(m, pref);
	put_name(m, host);
	rr_end(m, at);
}

static void answer_srv(struct msg *m, unsigned int prio, unsigned int weight,
		       unsigned int port, const char *host, uint32_t ttl)
{
	size_t at;

	rr_begin(m, 33, ttl, &at);
	put16(m, prio);
	put16(m, weight);
	put16(m, port);
	put_name(m, host);
	rr_end(m, at);
}

/* Builds the response to query q; returns 0 to stay silent. */
static size_t respond(struct responder *r, const uint8_t *q, size_t qlen, struct msg *m,
		      bool tcp)
{
	char name[256];
	size_t off = 12, nlen = 0, qend;
	unsigned int qtype, rcode = 0, ancount = 0, tc = 0;
	struct msg ans = { .len = 0 };

	if (qlen < 12)
		return 0;
	while (off < qlen && q[off] != 0) {
		size_t l = q[off];

		if (l > 63 || off + 1 + l > qlen || nlen + l + 1 >= sizeof(name))
			return 0;
		if (nlen > 0)
			name[nlen++] = '.';
		for (size_t i = 0; i < l; i++)
			name[nlen++] = (char)tolower(q[off + 1 + i]);
		off += 1 + l;
	}
	name[nlen] = '\0';
	if (off + 5 > qlen)
		return 0;
	qend = off + 5;
	qtype = (unsigned int)(q[off + 1] << 8 | q[off + 2]);
	atomic_fetch_add(&r->queries, 1);

	/* the answer section goes to ans first, with pointers to offset 12 */
	if (strcmp(name, "silent.test") == 0) {
		atomic_fetch_add(&r->silent_queries, 1);
		return 0;
	} else if (strcmp(name, "a.test") == 0) {
		if (qtype == 1) {
			answer_a(&ans, "192.0.2.1", 300);
			answer_a(&ans, "192.0.2.2", 60);
			ancount = 2;
		}
	} else if (strcmp(name, "v6.test") == 0) {
		if (qtype == 28) {
			answer_aaaa(&ans, "2001:db8::1", 120);
			ancount = 1;
		}
	} else if (strcmp(name, "mx.test") == 0) {
		if (qtype == 15) {
			answer_mx(&ans, 20, "mx2.mx.test", 3600);
			answer_mx(&ans, 10, "mx1.mx.test", 1800);
			ancount = 2;
		}
	} else if (strcmp(name, "nullmx.test") == 0) {
		if (qtype == 15) {
			answer_mx(&ans, 0, "", 900);
			ancount = 1;
		}
	} else if (strcmp(name, "_imap._tcp.srv.test") == 0) {
		if (qtype == 33) {
			answer_srv(&ans, 0, 5, 143, "imap.srv.test", 600);
			ancount = 1;
		}
	} else if (strcmp(name, "big.test") == 0) {
		/* "too big for UDP": truncated there, complete over TCP */
		if (!tcp) {
			tc = 0x02;
		} else if (qtype == 1) {
			answer_a(&ans, "192.0.2.10", 30);
			answer_a(&ans, "192.0.2.11", 30);
			answer_a(&ans, "192.0.2.12", 30);
			ancount = 3;
		}
	} else if (strcmp(name, "fail.test") == 0) {
		rcode = 2;
	} else if (strcmp(name, "refused.test") == 0) {
		rcode = 5;
	} else if (strcmp(name, "bad.test") == 0) {
		/* claims an answer whose rdata runs off the end */
		put16(&ans, 0xc00c);
		put16(&ans, qtype);
		put16(&ans, 1);
		put32(&ans, 60);
		put16(&ans, 200);
		put8(&ans, 1);
		ancount = 1;
	} else {
		rcode = 3; /* NXDOMAIN */
	}

	m->len = 0;
	put16(m, (unsigned int)(q[0] << 8 | q[1]));	/* id */
	put8(m, 0x84 | tc | (q[2] & 0x01));		/* QR, AA, TC, RD */
	put8(m, 0x80 | rcode);				/* RA, rcode */
	put16(m, 1);
	put16(m, ancount);
	put16(m, 0);
	put16(m, 0);
	for (size_t i = 12; i < qend; i++)
		put8(m, q[i]);
	for (size_t i = 0; i < ans.len; i++)
		put8(m, ans.b[i]);
	return m->len;
}

static bool read_full(int fd, uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = read(fd, p, len);

		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* One TCP client: 2-byte length framed queries (RFC 1035 section 4.2.2)
 * until it closes. */
static void serve_tcp(struct responder *r, int fd)
{
	uint8_t q[512], len[2];
	struct msg m;

	while (read_full(fd, len, 2)) {
		size_t qlen = (size_t)(len[0] << 8 | len[1]);

		if (qlen > sizeof(q) || !read_full(fd, q, qlen))
			break;
		if (respond(r, q, qlen, &m, true) > 0) {
			uint8_t out[2 + sizeof(m.b)];

			out[0] = (uint8_t)(m.len >> 8);
			out[1] = (uint8_t)m.len;
			memcpy(out + 2, m.b, m.len);
			if (write(fd, out, m.len + 2) != (ssize_t)(m.len + 2))
				break;
		}
	}
	close(fd);
}

static void *responder_main(void *arg)
{
	struct responder *r = arg;

	for (;;) {
		uint8_t q[512];
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		struct pollfd pfd[2] = { { r->fd, POLLIN, 0 }, { r->tfd, POLLIN, 0 } };
		struct msg m;
		ssize_t n;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents & POLLIN) {
			int cfd = accept4(r->tfd, NULL, NULL, SOCK_CLOEXEC);

			if (cfd >= 0)
				serve_tcp(r, cfd);
		}
		if (!(pfd[0].revents & POLLIN))
			continue;
		n = recvfrom(r->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fromlen);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (n == 4 && memcmp(q, "quit", 4) == 0)
			break;
		if (respond(r, q, (size_t)n, &m, false) > 0)
			sendto(r->fd, m.b, m.len, 0, (struct sockaddr *)&from, fromlen);
	}
	return NULL;
}

/* UDP on 127.0.0.1:0 and TCP on the same port (tried a few times, in case
 * the port the kernel gave the UDP socket is taken for TCP). */
static int responder_start(struct responder *r)
{
	memset(r, 0, sizeof(*r));
	for (int attempt = 0; attempt < 20; attempt++) {
		struct sockaddr_in sin;
		socklen_t len = sizeof(sin);

		r->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		r->tfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (r->fd < 0 || r->tfd < 0 ||
		    bind(r->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
		    getsockname(r->fd, (struct sockaddr *)&sin, &len) < 0)
			return -1;
		if (bind(r->tfd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
		    listen(r->tfd, 4) == 0) {
			r->port = ntohs(sin.sin_port);
			return pthread_create(&r->thread, NULL, responder_main, r);
		}
		close(r->fd);
		close(r->tfd);
	}
	return -1;
}

static void responder_stop(struct responder *r)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(r->port);
	sendto(fd, "quit", 4, 0, (struct sockaddr *)&sin, sizeof(sin));
	close(fd);
	pthread_join(r->thread, NULL);
	close(r->fd);
	close(r->tfd);
}

/* ---- what the callbacks saw ---- */

struct answer {
	int calls;
	int status;
	size_t count;
	struct pn_dns_result res[4];
	uint64_t at;
	struct pn_dns **free_dns;	/* pn_dns_free() from the callback */
};

static void on_answer(void *ctx, int status, const struct pn_dns_result *res,
		      size_t count)
{
	struct answer *a = ctx;

	a->calls++;
	a->status = status;
	a->count = count;
	a->at = now_ms();
	CHECK((count == 0) == (res == NULL));
	for (size_t i = 0; i < count && i < 4; i++)
		a->res[i] = res[i];
	if (a->free_dns != NULL)
		pn_dns_free(a->free_dns);
}

static struct pn_dns *new_dns(struct pn_loop *loop, const struct responder *r,
			      unsigned int timeout_ms)
{
	char servers[64];
	struct pn_dns_settings set = { servers, timeout_ms, 1 };
	const char *error = NULL;
	struct pn_dns *dns;

	snprintf(servers, sizeof(servers), "127.0.0.1:%u", r->port);
	dns = pn_dns_new_with(loop, &set, &error);
	if (dns == NULL)
		fprintf(stderr, "pn_dns_new_with: %s\n", error);
	return dns;
}

static const char *ip_of(const struct pn_dns_result *r, char *buf, size_t size)
{
	if (r->addr.ss_family == AF_INET)
		return inet_ntop(AF_INET, &((const struct sockaddr_in *)&r->addr)->sin_addr,
				 buf, (socklen_t)size);
	if (r->addr.ss_family == AF_INET6)
		return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&r->addr)->sin6_addr,
				 buf, (socklen_t)size);
	return "?";
}

PN_TEST(test_records)
{
	struct responder r;
	const char *error;
	struct pn_loop *loop = pn_loop_new(NULL, &error);
	struct pn_dns *dns;
	struct answer a = { 0 }, aaaa = { 0 }, nodata = { 0 }, mx = { 0 },
		      nullmx = { 0 }, srv = { 0 }, big = { 0 };
	char ip[64];

	if (loop == NULL || responder_start(&r) != 0) {
		CHECK(0);
		pn_loop_free(&loop);
		return;
	}
	dns = new_dns(loop, &r, 1000);
	CHECK(dns != NULL);
	/* all at once: the answers come back over one socket */
	CHECK_INT(pn_dns_query(dns, "a.test", PN_DNS_A, on_answer, &a), 0);
	CHECK_INT(pn_dns_query(dns, "v6.test.", PN_DNS_AAAA, on_answer, &aaaa), 0);
	CHECK_INT(pn_dns_query(dns, "a.test", PN_DNS_AAAA, on_answer, &nodata), 0);
	CHECK_INT(pn_dns_query(dns, "MX.test", PN_DNS_MX, on_answer, &mx), 0);
	CHECK_INT(pn_dns_query(dns, "nullmx.test", PN_DNS_MX, on_answer, &nullmx), 0);
	CHECK_INT(pn_dns_query(dns, "_imap._tcp.srv.test", PN_DNS_SRV, on_answer, &srv), 0);
	/* truncated over UDP: c-ares retries over TCP (connect, write, read:
	 * the poll interest changes on the way) */
	CHECK_INT(pn_dns_query(dns, "big.test", PN_DNS_A, on_answer, &big), 0);
	CHECK_INT(a.calls + aaaa.calls + mx.calls + big.calls, 0); /* never from inside */
	RUN_UNTIL(loop, a.calls && aaaa.calls && nodata.calls && mx.calls &&
		  nullmx.calls && srv.calls && big.calls, 3000);

	CHECK_INT(a.calls, 1);
	CHECK_INT(a.status, PN_DNS_OK);
	CHECK_INT(a.count, 2);
	CHECK_INT(a.res[0].type, PN_DNS_A);
	CHECK_STR(ip_of(&a.res[0], ip, sizeof(ip)), "192.0.2.1");
	CHECK_INT(a.res[0].ttl, 300);
	CHECK_INT(((struct sockaddr_in *)&a.res[0].addr)->sin_port, 0);
	CHECK_STR(ip_of(&a.res[1], ip, sizeof(ip)), "192.0.2.2");
	CHECK_INT(a.res[1].ttl, 60);

	CHECK_INT(aaaa.status, PN_DNS_OK);
	CHECK_INT(aaaa.count, 1);
	CHECK_INT(aaaa.res[0].type, PN_DNS_AAAA);
	CHECK_INT(aaaa.res[0].addr.ss_family, AF_INET6);
	CHECK_STR(ip_of(&aaaa.res[0], ip, sizeof(ip)), "2001:db8::1");
	CHECK_INT(aaaa.res[0].ttl, 120);

	CHECK_INT(nodata.calls, 1);
	CHECK_INT(nodata.status, PN_DNS_NODATA);
	CHECK_INT(nodata.count, 0);
	CHECK_INT(pn_dns_status_is_temporary(nodata.status), 0);

	CHECK_INT(mx.status, PN_DNS_OK);
	CHECK_INT(mx.count, 2);
	CHECK_INT(mx.res[0].type, PN_DNS_MX);
	CHECK_INT(mx.res[0].priority, 20);
	CHECK_STR(mx.res[0].host, "mx2.mx.test");
	CHECK_INT(mx.res[0].ttl, 3600);
	CHECK_INT(mx.res[1].priority, 10);
	CHECK_STR(mx.res[1].host, "mx1.mx.test");
	CHECK_INT(mx.res[1].ttl, 1800);

	CHECK_INT(nullmx.status, PN_DNS_OK);
	CHECK_INT(nullmx.count, 1);
	CHECK_INT(nullmx.res[0].priority, 0);
	CHECK_STR(nullmx.res[0].host, "");
	CHECK_INT(nullmx.res[0].ttl, 900);

	CHECK_INT(srv.status, PN_DNS_OK);
	CHECK_INT(srv.count, 1);
	CHECK_INT(srv.res[0].type, PN_DNS_SRV);
	CHECK_INT(srv.res[0].priority, 0);
	CHECK_INT(srv.res[0].weight, 5);
	CHECK_INT(srv.res[0].port, 143);
	CHECK_STR(srv.res[0].host, "imap.srv.test");
	CHECK_INT(srv.res[0].ttl, 600);

	CHECK_INT(big.calls, 1);
	CHECK_INT(big.status, PN_DNS_OK);
	CHECK_INT(big.count, 3);
	CHECK_STR(ip_of(&big.res[2], ip, sizeof(ip)), "192.0.2.12");
	CHECK_INT(big.res[2].ttl, 30);

	/* nothing pending: no timer, the loop is idle */
	pn_loop_run_once(loop, 50);
	CHECK_INT(a.calls + aaaa.calls + nodata.calls + mx.calls + srv.calls, 5);
	pn_dns_free(&dns);
	CHECK(dns == NULL);
	RUN_UNTIL(loop, pn_loop_io_count(loop) == 0, 1000);
	CHECK_INT(pn_loop_io_count(loop), 0);
	responder_stop(&r);
	pn_loop_free(&loop);
}

PN_TEST(test_failures)
{
	struct responder r;
	const char *error;
	struct pn_loop *loop = pn_loop_new(NULL, &error);
	struct pn_dns *dns;
	struct answer nx = { 0 }, fail = { 0 }, refused = { 0 }, bad = { 0 },
		      silent = { 0 }, badname = { 0 };
	char longname[300];
	uint64_t start;

	if (loop == NULL || responder_start(&r) != 0) {
		CHECK(0);
		pn_loop_free(&loop);
		return;
	}
	dns = new_dns(loop, &r, 300);
	CHECK(dns != NULL);
	start = now_ms();
	CHECK_INT(pn_dns_query(dns, "nx.test", PN_DNS_A, on_answer, &nx), 0);
	CHECK_INT(pn_dns_query(dns, "fail.test", PN_DNS_MX, on_answer, &fail), 0);
	CHECK_INT(pn_dns_query(dns, "refused.test", PN_DNS_A, on_answer, &refused), 0);
	CHECK_INT(pn_dns_query(dns, "bad.test", PN_DNS_A, on_answer, &bad), 0);
	CHECK_INT(pn_dns_query(dns, "silent.test", PN_DNS_AAAA, on_answer, &silent), 0);
	/* a label over 63 bytes: c-ares refuses it, reported later */
	memset(longname, 'x', 70);
	memcpy(longname + 70, ".test", 6);
	CHECK_INT(pn_dns_query(dns, longname, PN_DNS_A, on_answer, &badname), 0);
	CHECK_INT(badname.calls, 0);
	RUN_UNTIL(loop, nx.calls && fail.calls && refused.calls && bad.calls &&
		  silent.calls && badname.calls, 3000);

	CHECK_INT(nx.calls, 1);
	CHECK_INT(nx.status, PN_DNS_NXDOMAIN);
	CHECK_INT(pn_dns_status_is_temporary(nx.status), 0);
	CHECK_INT(fail.status, PN_DNS_SERVFAIL);
	CHECK_INT(pn_dns_status_is_temporary(fail.status), 1);
	CHECK_INT(refused.status, PN_DNS_SERVFAIL);
	CHECK_INT(bad.status, PN_DNS_BADRESP);
	CHECK_INT(pn_dns_status_is_temporary(bad.status), 1);
	CHECK_INT(badname.status, PN_DNS_BADNAME);
	CHECK_INT(pn_dns_status_is_temporary(badname.status), 0);
	CHECK_INT(silent.calls, 1);
	CHECK_INT(silent.status, PN_DNS_TIMEOUT);
	CHECK_INT(pn_dns_status_is_temporary(silent.status), 1);
	CHECK(silent.at - start >= 250);
	CHECK(silent.at - start < 2000);
	CHECK(atomic_load(&r.silent_queries) >= 1);
	CHECK_STR(pn_dns_strerror(silent.status), "timed out");
	CHECK_STR(pn_dns_strerror(12345), "unknown DNS status");

	/* refused at once, callback never called */
	CHECK_INT(pn_dns_query(dns, "", PN_DNS_A, on_answer, &nx), -1);
	CHECK_INT(errno, EINVAL);
	CHECK_INT(pn_dns_query(dns, "a b.test", PN_DNS_A, on_answer, &nx), -1);
	memset(longname, 'a', 260);
	longname[260] = '\0';
	CHECK_INT(pn_dns_query(dns, longname, PN_DNS_A, on_answer, &nx), -1);
	CHECK_INT(pn_dns_query(dns, "a.test", (enum pn_dns_type)16, on_answer, &nx), -1);
	CHECK_INT(pn_dns_query(dns, "a.test", PN_DNS_A, NULL, &nx), -1);
	pn_loop_run_once(loop, 20);
	CHECK_INT(nx.calls, 1);

	pn_dns_free(&dns);
	RUN_UNTIL(loop, pn_loop_io_count(loop) == 0, 1000);
	CHECK_INT(pn_loop_io_count(loop), 0);
	responder_stop(&r);
	pn_loop_free(&loop);
}

PN_TEST(test_free_cancels)
{
	struct responder r;
	const char *error;
	struct pn_loop *loop = pn_loop_new(NULL, &error);
	struct pn_dns *dns;
	struct answer s1 = { 0 }, s2 = { 0 }, a = { 0 }, late = { 0 };

	if (loop == NULL || responder_start(&r) != 0) {
		CHECK(0);
		pn_loop_free(&loop);
		return;
	}
	/* pending queries at free: PN_DNS_CANCELLED, once, inside free */
	dns = new_dns(loop, &r, 5000);
	CHECK_INT(pn_dns_query(dns, "silent.test", PN_DNS_A, on_answer, &s1), 0);
	CHECK_INT(pn_dns_query(dns, "silent.test", PN_DNS_MX, on_answer, &s2), 0);
	RUN_UNTIL(loop, atomic_load(&r.silent_queries) >= 2, 1000);
	pn_dns_free(&dns);
	CHECK_INT(s1.calls, 1);
	CHECK_INT(s1.status, PN_DNS_CANCELLED);
	CHECK_INT(s2.calls, 1);
	CHECK_INT(s2.status, PN_DNS_CANCELLED);
	CHECK_INT(pn_dns_status_is_temporary(s1.status), 0);
	RUN_UNTIL(loop, pn_loop_io_count(loop) == 0, 1000);
	CHECK_INT(pn_loop_io_count(loop), 0);
	CHECK_INT(s1.calls + s2.calls, 2);

	/* freed from inside a callback with another query pending */
	memset(&s1, 0, sizeof(s1));
	dns = new_dns(loop, &r, 5000);
	CHECK_INT(pn_dns_query(dns, "silent.test", PN_DNS_A, on_answer, &s1), 0);
	a.free_dns = &dns;
	CHECK_INT(pn_dns_query(dns, "a.test", PN_DNS_A, on_answer, &a), 0);
	RUN_UNTIL(loop, a.calls > 0, 2000);
	CHECK_INT(a.calls, 1);
	CHECK_INT(a.status, PN_DNS_OK);
	CHECK(dns == NULL);
	CHECK_INT(s1.calls, 1);
	CHECK_INT(s1.status, PN_DNS_CANCELLED);
	RUN_UNTIL(loop, pn_loop_io_count(loop) == 0, 1000);
	CHECK_INT(pn_loop_io_count(loop), 0);

	/* a completion parked by c-ares (a bad name) and then freed: cancelled */
	dns = new_dns(loop, &r, 5000);
	{
		char longname[80];

		memset(longname, 'x', 70);
		memcpy(longname + 70, ".test", 6);
		CHECK_INT(pn_dns_query(dns, longname, PN_DNS_A, on_answer, &late), 0);
	}
	CHECK_INT(late.calls, 0);
	pn_dns_free(&dns);
	CHECK_INT(late.calls, 1);
	CHECK_INT(late.status, PN_DNS_CANCELLED);
	RUN_UNTIL(loop, pn_loop_io_count(loop) == 0, 1000);
	CHECK_INT(pn_loop_io_count(loop), 0);

	responder_stop(&r);
	pn_loop_free(&loop);
}

PN_TEST(test_setup)
{
	const char *error = NULL;
	struct pn_loop *loop = pn_loop_new(NULL, &error);
	struct pn_dns *dns;

	if (loop == NULL) {
		CHECK(0);
		return;
	}
	dns = pn_dns_new(loop, "not an address", &error);
	CHECK(dns == NULL);
	CHECK(error != NULL && strstr(error, "server list") != NULL);
	dns = pn_dns_new(loop, "127.0.0.1:53,[::1]:5353", &error);
	CHECK(dns != NULL);
	pn_dns_free(&dns);
	/* the system's resolv.conf (or c-ares' fallback) */
	dns = pn_dns_new(loop, NULL, &error);
	CHECK(dns != NULL);
	pn_dns_free(&dns);
	pn_dns_free(&dns); /* NULL: nothing */
	RUN_UNTIL(loop, pn_loop_io_count(loop) == 0, 1000);
	CHECK_INT(pn_loop_io_count(loop), 0);
	pn_loop_free(&loop);
}

PN_TEST_MAIN("test-dns",
	     PN_TEST_CASE(test_records),
	     PN_TEST_CASE(test_failures),
	     PN_TEST_CASE(test_free_cancels),
	     PN_TEST_CASE(test_setup))
