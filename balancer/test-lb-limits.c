/* Unit tests for lb-limits.c: the total limit, per-source limits with
 * IPv4-mapped addresses folded, the per-second token bucket refilling over
 * (fake) time, sweeping idle sources, and admitting untracked when the
 * table is full. */
#include "lb-limits.h"
#include "postern/testing.h"

#include <arpa/inet.h>
#include <netinet/in.h>

static struct sockaddr_storage ip(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, text, &s6->sin6_addr);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		inet_pton(AF_INET, text, &s4->sin_addr);
	}
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

PN_TEST(test_total)
{
	struct lb_limits_settings set = { .max_total = 2 };
	const char *err = NULL;
	struct lb_limits *l = lb_limits_new(&set, &err);
	struct sockaddr_storage a = ip("192.0.2.1"), b = ip("192.0.2.2");
	bool ta, tb, tc;

	CHECK(l != NULL);
	CHECK_INT(lb_limits_admit(l, SA(a), 0, &ta), LB_LIMIT_OK);
	CHECK_INT(lb_limits_admit(l, SA(b), 0, &tb), LB_LIMIT_OK);
	CHECK_INT(lb_limits_admit(l, SA(b), 0, &tc), LB_LIMIT_TOTAL);
	CHECK_INT(lb_limits_total(l), 2);
	CHECK(!ta && !tb); /* no per-source limit: nothing tracked */
	lb_limits_release(l, SA(a), ta);
	CHECK_INT(lb_limits_admit(l, SA(b), 0, &tc), LB_LIMIT_OK);
	CHECK_STR(lb_limit_reason(LB_LIMIT_TOTAL), "total");
	lb_limits_free(&l);
	CHECK(l == NULL);
}

PN_TEST(test_per_source_and_mapped)
{
	struct lb_limits_settings set = { .per_source = 2 };
	const char *err = NULL;
	struct lb_limits *l = lb_limits_new(&set, &err);
	struct sockaddr_storage a = ip("192.0.2.1"), am = ip("::ffff:192.0.2.1");
	struct sockaddr_storage b = ip("2001:db8::1");
	bool t1, t2, t3, t4;

	CHECK_INT(lb_limits_admit(l, SA(a), 0, &t1), LB_LIMIT_OK);
	CHECK_INT(lb_limits_admit(l, SA(am), 0, &t2), LB_LIMIT_OK);
	CHECK(t1 && t2);
	CHECK_INT(lb_limits_admit(l, SA(a), 0, &t3), LB_LIMIT_SOURCE);
	CHECK_INT(lb_limits_admit(l, SA(b), 0, &t4), LB_LIMIT_OK);
	CHECK_INT(lb_limits_sources(l), 2);
	lb_limits_release(l, SA(am), t2);
	CHECK_INT(lb_limits_admit(l, SA(a), 0, &t3), LB_LIMIT_OK);
	CHECK_INT(lb_limits_total(l), 3);
	lb_limits_release(l, SA(a), t1);
	lb_limits_release(l, SA(a), t3);
	lb_limits_release(l, SA(b), t4);
	CHECK_INT(lb_limits_total(l), 0);
	lb_limits_sweep(l, 1);
	CHECK_INT(lb_limits_sources(l), 0);
	lb_limits_free(&l);
}

PN_TEST(test_rate)
{
	struct lb_limits_settings set = { .rate_per_source = 5 };
	const char *err = NULL;
	struct lb_limits *l = lb_limits_new(&set, &err);
	struct sockaddr_storage a = ip("198.51.100.9"), b = ip("198.51.100.10");
	bool t;
	int ok = 0;

	/* A burst of 5, then refusals, until tokens come back at 5/s. */
	for (int i = 0; i < 8; i++) {
		if (lb_limits_admit(l, SA(a), 1000, &t) == LB_LIMIT_OK) {
			ok++;
			lb_limits_release(l, SA(a), t);
		}
	}
	CHECK_INT(ok, 5);
	CHECK_INT(lb_limits_admit(l, SA(a), 1100, &t), LB_LIMIT_RATE);
	CHECK_INT(lb_limits_admit(l, SA(b), 1100, &t), LB_LIMIT_OK); /* others unaffected */
	lb_limits_release(l, SA(b), t);
	CHECK_INT(lb_limits_admit(l, SA(a), 1200, &t), LB_LIMIT_OK); /* 200 ms = 1 token */
	lb_limits_release(l, SA(a), t);
	CHECK_INT(lb_limits_admit(l, SA(a), 1200, &t), LB_LIMIT_RATE);
	/* Still remembered after a sweep while the bucket is not full... */
	lb_limits_sweep(l, 1300);
	CHECK_INT(lb_limits_sources(l), 1); /* b's bucket is full again */
	CHECK_INT(lb_limits_admit(l, SA(a), 1300, &t), LB_LIMIT_RATE);
	CHECK_INT(lb_limits_admit(l, SA(a), 1400, &t), LB_LIMIT_OK);
	lb_limits_release(l, SA(a), t);
	/* ...and forgotten once full again. */
	lb_limits_sweep(l, 5000);
	CHECK_INT(lb_limits_sources(l), 0);
	lb_limits_free(&l);
}

PN_TEST(test_table_full_admits_untracked)
{
	struct lb_limits_settings set = { .per_source = 1, .max_sources = 2 };
	const char *err = NULL;
	struct lb_limits *l = lb_limits_new(&set, &err);
	struct sockaddr_storage a = ip("10.0.0.1"), b = ip("10.0.0.2"), c = ip("10.0.0.3");
	bool ta, tb, tc, tc2;

	CHECK_INT(lb_limits_admit(l, SA(a), 0, &ta), LB_LIMIT_OK);
	CHECK_INT(lb_limits_admit(l, SA(b), 0, &tb), LB_LIMIT_OK);
	CHECK_INT(lb_limits_admit(l, SA(c), 0, &tc), LB_LIMIT_OK);
	CHECK_INT(lb_limits_admit(l, SA(c), 0, &tc2), LB_LIMIT_OK);
	CHECK(ta && tb && !tc && !tc2);
	CHECK_INT(lb_limits_overflow(l), 2);
	lb_limits_release(l, SA(a), ta);
	lb_limits_release(l, SA(c), tc);
	lb_limits_release(l, SA(c), tc2);
	lb_limits_sweep(l, 0);
	/* a's slot is free again: c is tracked now. */
	CHECK_INT(lb_limits_admit(l, SA(c), 0, &tc), LB_LIMIT_OK);
	CHECK(tc);
	CHECK_INT(lb_limits_admit(l, SA(c), 0, &tc2), LB_LIMIT_SOURCE);
	/* A reload that lifts the limit. */
	lb_limits_update(l, &(struct lb_limits_settings){ 0 });
	CHECK_INT(lb_limits_admit(l, SA(c), 0, &tc2), LB_LIMIT_OK);
	lb_limits_free(&l);
}

PN_TEST_MAIN("test-lb-limits",
	     PN_TEST_CASE(test_total),
	     PN_TEST_CASE(test_per_source_and_mapped),
	     PN_TEST_CASE(test_rate),
	     PN_TEST_CASE(test_table_full_admits_untracked))
