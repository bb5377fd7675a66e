/* Unit tests for lb-check.c: rise/fall with hard failures, slow start,
 * the greeting matcher and the /readyz reader, both fed one byte at a
 * time (need more until the last byte). */
#include "lb-check.h"
#include "postern/testing.h"

PN_TEST(test_rise_fall)
{
	struct lb_health h;

	lb_health_init(&h, true, 1000);
	CHECK(h.up);
	/* fall = 3: two failures keep it up, the third takes it down. */
	CHECK_INT(lb_health_report(&h, false, false, 2, 3, 1100), LB_HEALTH_SAME);
	CHECK_INT(lb_health_report(&h, false, false, 2, 3, 1200), LB_HEALTH_SAME);
	CHECK_INT(lb_health_report(&h, true, false, 2, 3, 1300), LB_HEALTH_SAME);
	CHECK_INT(lb_health_report(&h, false, false, 2, 3, 1400), LB_HEALTH_SAME);
	CHECK_INT(lb_health_report(&h, false, false, 2, 3, 1500), LB_HEALTH_SAME);
	CHECK_INT(lb_health_report(&h, false, false, 2, 3, 1600), LB_HEALTH_WENT_DOWN);
	CHECK(!h.up);
	CHECK_INT(lb_health_report(&h, false, false, 2, 3, 1700), LB_HEALTH_SAME);
	/* rise = 2, interrupted by a failure. */
	CHECK_INT(lb_health_report(&h, true, false, 2, 3, 1800), LB_HEALTH_SAME);
	CHECK_INT(lb_health_report(&h, false, false, 2, 3, 1900), LB_HEALTH_SAME);
	CHECK_INT(lb_health_report(&h, true, false, 2, 3, 2000), LB_HEALTH_SAME);
	CHECK_INT(lb_health_report(&h, true, false, 2, 3, 2100), LB_HEALTH_WENT_UP);
	CHECK(h.up);
	CHECK_INT(h.up_since_ms, 2100);
	/* A refused connection takes it out at once. */
	CHECK_INT(lb_health_report(&h, false, true, 2, 3, 2200), LB_HEALTH_WENT_DOWN);
	CHECK(!h.up);
	/* Hard failures of a down node change nothing. */
	CHECK_INT(lb_health_report(&h, false, true, 2, 3, 2300), LB_HEALTH_SAME);

	lb_health_init(&h, false, 0);
	CHECK(!h.up);
	CHECK_INT(lb_health_report(&h, true, false, 1, 1, 10), LB_HEALTH_WENT_UP);
}

PN_TEST(test_slowstart)
{
	CHECK_INT(lb_slowstart_weight(100, 1000, 1000, 0), 100);
	CHECK_INT(lb_slowstart_weight(100, 0, 1000, 5000), 100);	/* never ramped */
	CHECK_INT(lb_slowstart_weight(100, 1000, 1000, 5000), 10);	/* 10% floor */
	CHECK_INT(lb_slowstart_weight(100, 1000, 2000, 5000), 20);
	CHECK_INT(lb_slowstart_weight(100, 1000, 3500, 5000), 50);
	CHECK_INT(lb_slowstart_weight(100, 1000, 6000, 5000), 100);
	CHECK_INT(lb_slowstart_weight(100, 1000, 9000, 5000), 100);
	CHECK_INT(lb_slowstart_weight(1, 1000, 1001, 5000), 1);	/* never 0 */
	CHECK_INT(lb_slowstart_weight(3, 1000, 1001, 5000), 1);
}

static int feed_greeting(const char *prefix, const char *text)
{
	size_t len = strlen(text);
	int r = 0;

	/* Byte at a time: 0 until the deciding byte. */
	for (size_t i = 1; i <= len; i++) {
		r = lb_greeting_check(prefix, (const uint8_t *)text, i, 512);
		if (r != 0) {
			if (i != len && r == 1)
				return 99; /* decided "good" too early */
			return r;
		}
	}
	return r;
}

PN_TEST(test_greeting)
{
	CHECK_INT(feed_greeting("* OK", "* OK [CAPABILITY IMAP4rev1] ready\r\n"), 1);
	CHECK_INT(feed_greeting("* OK", "* OK\r\n"), 1);
	CHECK_INT(feed_greeting("* OK", "* OK\n"), 1);
	CHECK_INT(feed_greeting("+OK", "+OK POP3 ready\r\n"), 1);
	CHECK_INT(feed_greeting("220", "220 mx.example ESMTP\r\n"), 1);
	CHECK_INT(feed_greeting("220", "220-mx.example ESMTP\r\n"), 1);
	CHECK_INT(feed_greeting("* OK", "* BYE [UNAVAILABLE] go away\r\n"), -1);
	CHECK_INT(feed_greeting("+OK", "-ERR [SYS/TEMP] no\r\n"), -1);
	CHECK_INT(feed_greeting("220", "421 4.3.2 closing\r\n"), -1);
	CHECK_INT(feed_greeting("220", "2200 what\r\n"), -1);
	CHECK_INT(feed_greeting("+OK", "+OKAY\r\n"), -1);
	CHECK_INT(feed_greeting("* OK", "* O\r\n"), -1);
	/* Incomplete and harmless so far. */
	CHECK_INT(lb_greeting_check("* OK", (const uint8_t *)"* OK hel", 8, 512), 0);
	CHECK_INT(lb_greeting_check("* OK", (const uint8_t *)"", 0, 512), 0);
	/* Too long without a line end. */
	{
		uint8_t big[600];

		memset(big, 'x', sizeof(big));
		memcpy(big, "* OK ", 5);
		CHECK_INT(lb_greeting_check("* OK", big, sizeof(big), 512), -1);
	}
}

/* Feeds text one byte at a time; returns the first non-zero result and
 * whether it came only at the last byte. */
static int feed_readyz(const char *text, bool close_at_end, struct lb_readyz *r,
		       bool *at_last_r)
{
	size_t len = strlen(text);

	*at_last_r = false;
	for (size_t i = 1; i <= len; i++) {
		int res = lb_readyz_parse((const uint8_t *)text, i, false, 65536, r);

		if (res != 0) {
			*at_last_r = i == len;
			return res;
		}
	}
	if (close_at_end) {
		*at_last_r = true;
		return lb_readyz_parse((const uint8_t *)text, len, true, 65536, r);
	}
	return 0;
}

PN_TEST(test_readyz)
{
	struct lb_readyz r;
	bool last;

	CHECK_INT(feed_readyz("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			      "Content-Length: 33\r\n\r\n{\"status\":\"ready\",\"checks\":[]}\n\n\n",
			      false, &r, &last), 1);
	CHECK(last);
	CHECK_INT(r.status, 200);
	CHECK(!r.draining);

	CHECK_INT(feed_readyz("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 89\r\n\r\n"
			      "{\"status\":\"not ready\",\"checks\":[{\"name\":\"draining\",\"ok\":false,"
			      "\"detail\":\"shutting down\"}]}",
			      false, &r, &last), 1);
	CHECK(last);
	CHECK_INT(r.status, 503);
	CHECK(r.draining);

	CHECK_INT(feed_readyz("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 71\r\n\r\n"
			      "{\"status\":\"not ready\",\"checks\":[{\"name\":\"postgres\",\"ok\":false}]}   "
			      "    ", false, &r, &last), 1);
	CHECK_INT(r.status, 503);
	CHECK(!r.draining);

	/* No Content-Length: the body ends with the connection. */
	CHECK_INT(feed_readyz("HTTP/1.0 200 OK\r\n\r\nok", true, &r, &last), 1);
	CHECK(last);
	CHECK_INT(r.status, 200);
	/* No header fields at all. */
	CHECK_INT(feed_readyz("HTTP/1.1 204\r\n\r\n", true, &r, &last), 1);
	CHECK_INT(r.status, 204);

	/* Malformed. */
	CHECK_INT(feed_readyz("SSH-2.0-OpenSSH\r\n", false, &r, &last), -1);
	CHECK_INT(feed_readyz("HTTP/1.1 20 OK\r\n\r\n", false, &r, &last), -1);
	CHECK_INT(feed_readyz("HTTP/2.0 200 OK\r\n\r\n", false, &r, &last), -1);
	CHECK_INT(feed_readyz("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false, &r,
			      &last), -1);
	CHECK_INT(feed_readyz("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", true, &r,
			      &last), -1);
	CHECK_INT(feed_readyz("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
			      false, &r, &last), -1);
	CHECK_INT(feed_readyz("HTTP/1.1 200 OK\r\nX: y", true, &r, &last), -1);
	CHECK_INT(lb_readyz_parse((const uint8_t *)"HTTP/1.1 200 OK\r\n", 17, false, 10, &r), -1);
}

PN_TEST_MAIN("test-lb-check",
	     PN_TEST_CASE(test_rise_fall),
	     PN_TEST_CASE(test_slowstart),
	     PN_TEST_CASE(test_greeting),
	     PN_TEST_CASE(test_readyz))
