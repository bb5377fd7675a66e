/* Unit tests for postern/http.h: good requests, byte-at-a-time feeding,
 * pipelining, keep-alive rules, every rejection with its status code, the
 * limits at and past their edges, 100-continue and the response writer. */
#include "postern/http.h"
#include "postern/testing.h"

#include <stdbool.h>

static struct pn_http_parser *cur;
static struct pn_http_request req;

/* Feeds text (len bytes) to a fresh parser kept in `cur` and returns 1 with
 * `req` filled, 0 for "need more", or the error status (>= 400). */
static int parse_len(const char *text, size_t len)
{
	pn_http_parser_free(&cur);
	cur = pn_http_parser_new(NULL);
	if (cur == NULL)
		return -1;
	CHECK_INT(pn_http_parser_feed(cur, text, len), len);
	int r = pn_http_parser_next(cur, &req);
	if (r < 0)
		return pn_http_parser_error_status(cur);
	return r;
}

static int parse(const char *text)
{
	return parse_len(text, strlen(text));
}

PN_TEST(test_simple_get)
{
	CHECK_INT(parse("GET /metrics?name=x&y HTTP/1.1\r\nHost: localhost:9100\r\n"
			"User-Agent:  Prometheus/2.45  \r\nAccept: text/plain\r\n\r\n"), 1);
	CHECK_STR(req.method, "GET");
	CHECK_STR(req.path, "/metrics");
	CHECK_STR(req.query, "name=x&y");
	CHECK_INT(req.version_minor, 1);
	CHECK(req.keep_alive);
	CHECK_INT(req.header_count, 3);
	CHECK_STR(req.headers[0].name, "Host");
	CHECK_STR(req.headers[0].value, "localhost:9100");
	CHECK_STR(pn_http_header_get(&req, "user-agent"), "Prometheus/2.45");
	CHECK(pn_http_header_get(&req, "Cookie") == NULL);
	CHECK_INT(req.body_len, 0);
	/* nothing more buffered */
	CHECK_INT(pn_http_parser_next(cur, &req), 0);
	CHECK(pn_http_parser_idle(cur));

	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 1);
	CHECK_STR(req.path, "/");
	CHECK(req.query == NULL);
	CHECK_INT(parse("GET /a? HTTP/1.1\r\nHost: h\r\n\r\n"), 1);
	CHECK_STR(req.path, "/a");
	CHECK_STR(req.query, "");
	/* empty field value */
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n"), 1);
	CHECK_STR(pn_http_header_get(&req, "x-empty"), "");
	/* obs-text in values is allowed */
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\t!\r\n\r\n"), 1);
	CHECK_STR(pn_http_header_get(&req, "X"), "caf\xc3\xa9\t!");
	pn_http_parser_free(&cur);
}

PN_TEST(test_targets_and_versions)
{
	CHECK_INT(parse("GET http://node1:9100/metrics?a=1 HTTP/1.1\r\nHost: node1\r\n\r\n"), 1);
	CHECK_STR(req.path, "/metrics");
	CHECK_STR(req.query, "a=1");
	CHECK_INT(parse("GET HTTPS://node1 HTTP/1.1\r\nHost: node1\r\n\r\n"), 1);
	CHECK_STR(req.path, "/");
	CHECK(req.query == NULL);
	CHECK_INT(parse("GET http://node1?x HTTP/1.1\r\nHost: node1\r\n\r\n"), 1);
	CHECK_STR(req.path, "/");
	CHECK_STR(req.query, "x");
	CHECK_INT(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), 1);
	CHECK_STR(req.path, "*");
	CHECK_INT(parse("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(parse("GET metrics HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(parse("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(parse("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(parse("GET /\x80 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	/* versions */
	CHECK_INT(parse("GET / HTTP/1.0\r\n\r\n"), 1);
	CHECK_INT(req.version_minor, 0);
	CHECK_INT(parse("GET / HTTP/1.7\r\nHost: h\r\n\r\n"), 1);
	CHECK_INT(req.version_minor, 1);
	CHECK_INT(parse("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
	CHECK_INT(parse("GET / HTTP/0.9\r\n\r\n"), 505);
	CHECK_INT(parse("GET / http/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(parse("GET / HTTP/1.10\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(parse("GET / HTTP/1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(parse("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(parse("GET /\r\n\r\n"), 400);
	CHECK_INT(parse("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(parse(" GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(parse("G@T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(parse("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(parse("\x16\x03\x01\x02\x05\x01\x01\x01\xfc\x03\x03\r\n\r\n"), 400); /* TLS */
	/* any token is a method: routing decides what is allowed */
	CHECK_INT(parse("PURGE /x HTTP/1.1\r\nHost: h\r\n\r\n"), 1);
	CHECK_STR(req.method, "PURGE");
	pn_http_parser_free(&cur);
}

PN_TEST(test_line_ends)
{
	/* bare LF is accepted everywhere (documented choice) */
	CHECK_INT(parse("GET /x HTTP/1.1\nHost: h\nA: b\n\n"), 1);
	CHECK_STR(req.path, "/x");
	CHECK_STR(pn_http_header_get(&req, "a"), "b");
	CHECK_INT(parse("GET /x HTTP/1.1\r\nHost: h\n\r\n"), 1);
	/* bare CR never is */
	CHECK_INT(parse("GET /x HTTP/1.1\rHost: h\r\n\r\n"), 400);
	CHECK_INT(parse("GET /x HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"), 400);
	CHECK_INT(parse("GET /x HTTP/1.1\r\nHost: h\r\r\n\r\n"), 400);
	/* empty lines before the request-line are skipped, up to 8 */
	CHECK_INT(parse("\r\n\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n"), 1);
	CHECK_STR(req.path, "/x");
	CHECK_INT(parse("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(parse("\r"), 0);
	pn_http_parser_free(&cur);
}

PN_TEST(test_fields_rejected)
{
	CHECK_INT(parse("GET / HTTP/1.1\r\n\r\n"), 400);			/* no Host */
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
	CHECK_INT(parse("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), 400);	/* §5.1 */
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  b\r\n\r\n"), 400); /* fold */
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"), 400);
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n"), 400);
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\nBad(Name): x\r\n\r\n"), 400);
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n"), 400);
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fz\r\n\r\n"), 400);
	static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0z\r\n\r\n";
	CHECK_INT(parse_len(nul, sizeof(nul) - 1), 400);
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n"), 417);
	pn_http_parser_free(&cur);
}

PN_TEST(test_body_framing)
{
	CHECK_INT(parse("POST /drain HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"), 1);
	CHECK_STR(req.method, "POST");
	CHECK_MEM(req.body, req.body_len, "hello", 5);
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"), 1);
	CHECK_INT(req.body_len, 0);
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\ncontent-length:  007 \r\n\r\n1234567"), 1);
	CHECK_INT(req.body_len, 7);
	/* body not there yet */
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhell"), 0);

	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"), 400);
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n"), 400);
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5x\r\n\r\n"), 400);
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n"), 400);
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n"), 400);
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n"), 400);
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
			"Content-Length: 5\r\n\r\nhello"), 400);
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 65536\r\n\r\n"), 0);
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 65537\r\n\r\n"), 413);
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\n"
			"Content-Length: 99999999999999999999999999999\r\n\r\n"), 413);
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\n"
			"Content-Length: 99999999999999999999999999999x\r\n\r\n"), 400);
	/* Transfer-Encoding is not supported */
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
			"5\r\nhello\r\n0\r\n\r\n"), 411);
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
		  501);
	CHECK_INT(parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
			"Content-Length: 5\r\n\r\nhello"), 400);
	CHECK_INT(parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
	pn_http_parser_free(&cur);
}

PN_TEST(test_keep_alive)
{
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 1);
	CHECK(req.keep_alive);
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"), 1);
	CHECK(!req.keep_alive);
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n"), 1);
	CHECK(!req.keep_alive);
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n"), 1);
	CHECK(req.keep_alive);
	CHECK_INT(parse("GET / HTTP/1.0\r\n\r\n"), 1);
	CHECK(!req.keep_alive);
	CHECK_INT(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), 1);
	CHECK(req.keep_alive);
	CHECK_INT(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"), 1);
	CHECK(!req.keep_alive);
	pn_http_parser_free(&cur);
}

/* Feeds text one byte at a time: "need more" until the very last byte. */
static void byte_at_a_time(const char *text, const char *path, size_t body_len)
{
	struct pn_http_parser *p = pn_http_parser_new(NULL);
	struct pn_http_request r;
	size_t len = strlen(text);

	CHECK(p != NULL);
	if (p == NULL)
		return;
	for (size_t i = 0; i < len; i++) {
		CHECK_INT(pn_http_parser_feed(p, text + i, 1), 1);
		int got = pn_http_parser_next(p, &r);
		if (i + 1 < len) {
			if (got != 0) {
				fprintf(stderr, "byte %zu of %zu: next() == %d\n", i, len, got);
				CHECK_INT(got, 0);
				break;
			}
		} else {
			CHECK_INT(got, 1);
			if (got == 1) {
				CHECK_STR(r.path, path);
				CHECK_INT(r.body_len, body_len);
			}
		}
	}
	pn_http_parser_free(&p);
	CHECK(p == NULL);
}

PN_TEST(test_byte_at_a_time)
{
	byte_at_a_time("GET /metrics HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n", "/metrics", 0);
	byte_at_a_time("\r\nGET /x?y HTTP/1.1\nHost: h\n\n", "/x", 0);
	byte_at_a_time("POST /set HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
		       "/set", 11);
	byte_at_a_time("GET / HTTP/1.0\r\n\r\n", "/", 0);
}

PN_TEST(test_pipelining)
{
	struct pn_http_parser *p = pn_http_parser_new(NULL);
	struct pn_http_request r;
	static const char two[] =
		"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
		"GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
		"GET /c HT";

	CHECK_INT(pn_http_parser_feed(p, two, sizeof(two) - 1), sizeof(two) - 1);
	CHECK_INT(pn_http_parser_next(p, &r), 1);
	CHECK_STR(r.path, "/a");
	CHECK_MEM(r.body, r.body_len, "abc", 3);
	CHECK(r.keep_alive);
	CHECK(!pn_http_parser_idle(p));
	CHECK_INT(pn_http_parser_next(p, &r), 1);
	CHECK_STR(r.path, "/b");
	CHECK(!r.keep_alive);
	CHECK_INT(pn_http_parser_next(p, &r), 0);
	CHECK(!pn_http_parser_idle(p));
	CHECK_INT(pn_http_parser_feed(p, "TP/1.1\r\nHost: h\r\n\r\n", 19), 19);
	CHECK_INT(pn_http_parser_next(p, &r), 1);
	CHECK_STR(r.path, "/c");
	CHECK(pn_http_parser_idle(p));
	CHECK_INT(pn_http_parser_next(p, &r), 0);
	CHECK(pn_http_parser_idle(p));
	pn_http_parser_free(&p);
}

/* Regression (found by fuzz-http): the body arriving after the head may
 * move the buffer; the request's strings must follow it. */
PN_TEST(test_body_after_head_moves_buffer)
{
	struct pn_http_parser *p = pn_http_parser_new(NULL);
	struct pn_http_request r;
	static const char head[] =
		"POST /upload?x=1 HTTP/1.1\r\nHost: node1\r\nContent-Length: 60000\r\n\r\n";
	char *body = malloc(60000);

	CHECK(p != NULL && body != NULL);
	if (p == NULL || body == NULL)
		return;
	memset(body, 'b', 60000);
	CHECK_INT(pn_http_parser_feed(p, head, sizeof(head) - 1), sizeof(head) - 1);
	CHECK_INT(pn_http_parser_next(p, &r), 0);
	CHECK_INT(pn_http_parser_feed(p, body, 60000), 60000);
	CHECK_INT(pn_http_parser_next(p, &r), 1);
	CHECK_STR(r.method, "POST");
	CHECK_STR(r.path, "/upload");
	CHECK_STR(r.query, "x=1");
	CHECK_STR(pn_http_header_get(&r, "host"), "node1");
	CHECK_INT(r.body_len, 60000);
	CHECK(r.body_len == 60000 && r.body[0] == 'b' && r.body[59999] == 'b');
	free(body);
	pn_http_parser_free(&p);
}

PN_TEST(test_errors_are_sticky)
{
	struct pn_http_parser *p = pn_http_parser_new(NULL);
	struct pn_http_request r;

	CHECK_INT(pn_http_parser_feed(p, "BAD\r\n\r\n", 7), 7);
	CHECK_INT(pn_http_parser_next(p, &r), -1);
	CHECK_INT(pn_http_parser_error_status(p), 400);
	CHECK(pn_http_parser_error(p) != NULL);
	/* a valid request afterwards is not parsed: framing is lost */
	CHECK_INT(pn_http_parser_feed(p, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27), 27);
	CHECK_INT(pn_http_parser_next(p, &r), -1);
	CHECK_INT(pn_http_parser_error_status(p), 400);
	pn_http_parser_free(&p);
}

PN_TEST(test_limits)
{
	static const struct pn_http_limits defaults = PN_HTTP_DEFAULT_LIMITS;
	size_t big = 20000 + defaults.max_body;
	char *buf = malloc(big + 1);
	size_t o;

	CHECK(buf != NULL);
	if (buf == NULL)
		return;
	/* request-line of exactly max_request_line bytes is fine, one more is 414 */
	for (int extra = 0; extra <= 1; extra++) {
		size_t line = defaults.max_request_line + (size_t)extra;
		o = 0;
		memcpy(buf, "GET /", 5);
		o = 5;
		size_t fill = line - strlen("GET /") - strlen(" HTTP/1.1");
		memset(buf + o, 'a', fill);
		o += fill;
		memcpy(buf + o, " HTTP/1.1\r\nHost: h\r\n\r\n", 23);
		o += 23;
		CHECK_INT(parse_len(buf, o), extra ? 414 : 1);
	}
	/* an endless request-line is refused before its end arrives */
	memset(buf, 'a', 9000);
	memcpy(buf, "GET /", 5);
	CHECK_INT(parse_len(buf, 9000), 414);

	/* 64 fields are fine, 65 are 431 */
	for (int extra = 0; extra <= 1; extra++) {
		o = (size_t)snprintf(buf, big, "GET / HTTP/1.1\r\nHost: h\r\n");
		for (int i = 1; i < 64 + extra; i++)
			o += (size_t)snprintf(buf + o, big - o, "X-%d: v\r\n", i);
		o += (size_t)snprintf(buf + o, big - o, "\r\n");
		CHECK_INT(parse_len(buf, o), extra ? 431 : 1);
		if (!extra)
			CHECK_INT(req.header_count, 64);
	}
	/* header section of exactly 16 KiB is fine, one byte more is 431 */
	for (int extra = 0; extra <= 1; extra++) {
		o = (size_t)snprintf(buf, big, "GET / HTTP/1.1\r\n");
		size_t start = o;
		o += (size_t)snprintf(buf + o, big - o, "Host: h\r\nX: ");
		size_t fill = defaults.max_header_bytes + (size_t)extra - (o - start) - 2;
		memset(buf + o, 'v', fill);
		o += fill;
		memcpy(buf + o, "\r\n\r\n", 4);
		o += 4;
		CHECK_INT(parse_len(buf, o), extra ? 431 : 1);
	}
	/* an endless header line is refused before its end arrives */
	o = (size_t)snprintf(buf, big, "GET / HTTP/1.1\r\nX: ");
	memset(buf + o, 'v', 17000);
	CHECK_INT(parse_len(buf, o + 17000), 431);

	/* smaller limits through the struct */
	struct pn_http_limits small = { .max_request_line = 20, .max_body = 4 };
	struct pn_http_parser *p = pn_http_parser_new(&small);
	struct pn_http_request r;
	static const char ok[] = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd";
	CHECK_INT(pn_http_parser_feed(p, ok, sizeof(ok) - 1), sizeof(ok) - 1);
	CHECK_INT(pn_http_parser_next(p, &r), 1);
	static const char over[] = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
	CHECK_INT(pn_http_parser_feed(p, over, sizeof(over) - 1), sizeof(over) - 1);
	CHECK_INT(pn_http_parser_next(p, &r), -1);
	CHECK_INT(pn_http_parser_error_status(p), 413);
	pn_http_parser_free(&p);
	free(buf);
	pn_http_parser_free(&cur);
}

PN_TEST(test_feed_backpressure)
{
	/* A full-size request followed by more: feed takes what fits, and the
	 * rest goes in once the complete request has been taken. */
	struct pn_http_limits lim = { .max_request_line = 32, .max_headers = 4,
				      .max_header_bytes = 64, .max_body = 16 };
	struct pn_http_parser *p = pn_http_parser_new(&lim);
	struct pn_http_request r;
	static const char stream[] =
		"POST /one HTTP/1.1\r\nHost: h\r\nContent-Length: 16\r\n\r\n0123456789abcdef"
		"POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 16\r\n\r\n0123456789abcdef"
		"GET /three HTTP/1.1\r\nHost: h\r\n\r\n";
	const char *d = stream;
	size_t left = sizeof(stream) - 1;
	const char *paths[3] = { "/one", "/two", "/three" };
	int got = 0, rounds = 0;

	while (left > 0 && rounds++ < 100) {
		size_t n = pn_http_parser_feed(p, d, left);
		int rr;
		d += n;
		left -= n;
		while ((rr = pn_http_parser_next(p, &r)) == 1) {
			if (got < 3)
				CHECK_STR(r.path, paths[got]);
			got++;
		}
		CHECK_INT(rr, 0);
		/* feed taking nothing while next() needs more would be a deadlock */
		CHECK(n > 0 || left == 0);
		if (n == 0)
			break;
	}
	CHECK_INT(left, 0);
	CHECK_INT(got, 3);
	pn_http_parser_free(&p);
}

PN_TEST(test_expect_continue)
{
	struct pn_http_parser *p = pn_http_parser_new(NULL);
	struct pn_http_request r;
	static const char head[] =
		"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n";

	CHECK(!pn_http_parser_take_continue(p));
	CHECK_INT(pn_http_parser_feed(p, head, sizeof(head) - 1), sizeof(head) - 1);
	CHECK_INT(pn_http_parser_next(p, &r), 0);
	CHECK(pn_http_parser_take_continue(p));
	CHECK(!pn_http_parser_take_continue(p));
	CHECK_INT(pn_http_parser_next(p, &r), 0);
	CHECK(!pn_http_parser_take_continue(p));
	CHECK_INT(pn_http_parser_feed(p, "abc", 3), 3);
	CHECK_INT(pn_http_parser_next(p, &r), 1);
	CHECK_MEM(r.body, r.body_len, "abc", 3);
	/* with the body already there, no 100 is due */
	static const char whole[] =
		"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz";
	CHECK_INT(pn_http_parser_feed(p, whole, sizeof(whole) - 1), sizeof(whole) - 1);
	CHECK_INT(pn_http_parser_next(p, &r), 1);
	CHECK(!pn_http_parser_take_continue(p));
	pn_http_parser_free(&p);
}

PN_TEST(test_write_response)
{
	struct pn_buf b;

	pn_buf_init(&b, 4096);
	CHECK_INT(pn_http_write_response(&b, &(struct pn_http_response){
			.status = 200, .content_type = "text/plain", .body = "ok\n",
			.body_len = 3, .keep_alive = true }), 0);
	const char *t = (const char *)pn_buf_rptr(&b);
	size_t len = pn_buf_len(&b);
	CHECK(len > 17 && memcmp(t, "HTTP/1.1 200 OK\r\nDate: ", 23) == 0);
	CHECK(memmem(t, len, " GMT\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n",
		     56) != NULL);
	CHECK(memmem(t, len, "Connection", 10) == NULL);
	CHECK(len > 3 && memcmp(t + len - 7, "\r\n\r\nok\n", 7) == 0);

	pn_buf_reset(&b);
	CHECK_INT(pn_http_write_response(&b, &(struct pn_http_response){
			.status = 405, .content_type = "text/plain", .body = "no\n",
			.body_len = 3, .extra_headers = "Allow: GET, HEAD\r\n",
			.keep_alive = false, .head_only = true }), 0);
	t = (const char *)pn_buf_rptr(&b);
	len = pn_buf_len(&b);
	CHECK(memcmp(t, "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0);
	CHECK(memmem(t, len, "Content-Length: 3\r\nConnection: close\r\nAllow: GET, HEAD\r\n\r\n",
		     58) != NULL);
	CHECK(len > 4 && memcmp(t + len - 4, "\r\n\r\n", 4) == 0); /* HEAD: no body */

	/* too big for the buffer: nothing appended, earlier content kept */
	struct pn_buf s;
	char body[200];
	memset(body, 'x', sizeof(body));
	pn_buf_init(&s, 150);
	CHECK_INT(pn_buf_append_str(&s, "keep"), 0);
	CHECK_INT(pn_http_write_response(&s, &(struct pn_http_response){
			.status = 200, .body = body, .body_len = sizeof(body) }), -1);
	CHECK_MEM(pn_buf_rptr(&s), pn_buf_len(&s), "keep", 4);
	pn_buf_free(&s);
	CHECK_STR(pn_http_reason(503), "Service Unavailable");
	CHECK_STR(pn_http_reason(299), "Unknown");
	pn_buf_free(&b);
}

PN_TEST_MAIN("http",
	PN_TEST_CASE(test_simple_get),
	PN_TEST_CASE(test_targets_and_versions),
	PN_TEST_CASE(test_line_ends),
	PN_TEST_CASE(test_fields_rejected),
	PN_TEST_CASE(test_body_framing),
	PN_TEST_CASE(test_keep_alive),
	PN_TEST_CASE(test_byte_at_a_time),
	PN_TEST_CASE(test_pipelining),
	PN_TEST_CASE(test_body_after_head_moves_buffer),
	PN_TEST_CASE(test_errors_are_sticky),
	PN_TEST_CASE(test_limits),
	PN_TEST_CASE(test_feed_backpressure),
	PN_TEST_CASE(test_expect_continue),
	PN_TEST_CASE(test_write_response))
