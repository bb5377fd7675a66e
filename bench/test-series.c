/* Unit tests of the load generator's time series: bucket boundaries,
 * events before the start and past the end, the off state, merging of
 * per-thread series (also of different lengths) and the used count.
 */
#include "series.h"

#include "postern/testing.h"

#define MS UINT64_C(1000000)

PN_TEST(test_bucket_boundaries)
{
	struct bn_series s;
	const char *err = NULL;
	uint64_t t0 = 5000 * MS;

	CHECK_INT(bn_series_init(&s, 10 * MS, 1000 * MS, &err), 0);
	CHECK_INT(s.nbuckets, 100);
	bn_series_add(&s, t0, t0, BN_SERIES_DONE);		/* first ns: bucket 0 */
	bn_series_add(&s, t0, t0 + 10 * MS - 1, BN_SERIES_DONE); /* last ns of bucket 0 */
	bn_series_add(&s, t0, t0 + 10 * MS, BN_SERIES_DONE);	/* first of bucket 1 */
	bn_series_add(&s, t0, t0 + 255 * MS, BN_SERIES_FAIL_EARLY);
	bn_series_add(&s, t0, t0 + 259 * MS, BN_SERIES_FAIL_LATE);
	bn_series_add(&s, t0, t0 + 999 * MS, BN_SERIES_DONE);	/* the last bucket */
	CHECK_INT(s.counts[0][BN_SERIES_DONE], 2);
	CHECK_INT(s.counts[1][BN_SERIES_DONE], 1);
	CHECK_INT(s.counts[25][BN_SERIES_FAIL_EARLY], 1);
	CHECK_INT(s.counts[25][BN_SERIES_FAIL_LATE], 1);
	CHECK_INT(s.counts[25][BN_SERIES_DONE], 0);
	CHECK_INT(s.counts[99][BN_SERIES_DONE], 1);
	CHECK_INT(s.outside, 0);
	/* before the start and past the end are counted, not stored */
	bn_series_add(&s, t0, t0 - 1, BN_SERIES_DONE);
	bn_series_add(&s, t0, t0 + 1000 * MS, BN_SERIES_DONE);
	CHECK_INT(s.outside, 2);
	uint64_t total = 0;
	for (uint32_t i = 0; i < s.nbuckets; i++)
		for (unsigned int k = 0; k < BN_SERIES_KINDS; k++)
			total += s.counts[i][k];
	CHECK_INT(total, 6);
	bn_series_free(&s);
	CHECK(s.counts == NULL);
	CHECK_INT(s.nbuckets, 0);
}

PN_TEST(test_span_rounds_up_and_limits)
{
	struct bn_series s;
	const char *err = NULL;

	CHECK_INT(bn_series_init(&s, 10 * MS, 1001 * MS, &err), 0);
	CHECK_INT(s.nbuckets, 101);
	CHECK_INT(bn_series_used(&s, 0), 0);
	CHECK_INT(bn_series_used(&s, 1), 1);
	CHECK_INT(bn_series_used(&s, 30 * MS), 3);
	CHECK_INT(bn_series_used(&s, 30 * MS + 1), 4);
	CHECK_INT(bn_series_used(&s, 5000 * MS), 101);	/* never past the array */
	bn_series_free(&s);
	CHECK_INT(bn_series_init(&s, 1, 10000000, &err), -1);	/* 10^7 buckets */
	CHECK(err != NULL);
	CHECK(s.counts == NULL);
}

PN_TEST(test_off)
{
	struct bn_series s;
	const char *err = NULL;

	CHECK_INT(bn_series_init(&s, 0, 1000 * MS, &err), 0);
	bn_series_add(&s, 0, 5 * MS, BN_SERIES_DONE);
	CHECK(s.counts == NULL);
	CHECK_INT(s.outside, 0);
	CHECK_INT(bn_series_used(&s, 1000 * MS), 0);
	bn_series_free(&s);
}

PN_TEST(test_merge)
{
	struct bn_series a, b, sum;
	const char *err = NULL;

	CHECK_INT(bn_series_init(&a, 10 * MS, 50 * MS, &err), 0);	/* 5 buckets */
	CHECK_INT(bn_series_init(&b, 10 * MS, 80 * MS, &err), 0);	/* 8 buckets */
	CHECK_INT(bn_series_init(&sum, 0, 0, &err), 0);		/* off: takes the first */
	bn_series_add(&a, 0, 15 * MS, BN_SERIES_DONE);
	bn_series_add(&a, 0, 99 * MS, BN_SERIES_DONE);		/* outside */
	bn_series_add(&b, 0, 12 * MS, BN_SERIES_DONE);
	bn_series_add(&b, 0, 75 * MS, BN_SERIES_FAIL_LATE);
	CHECK_INT(bn_series_merge(&sum, &a), 0);
	CHECK_INT(sum.nbuckets, 5);
	CHECK_INT(bn_series_merge(&sum, &b), 0);
	CHECK_INT(sum.nbuckets, 8);	/* grew to the longer one */
	CHECK_INT(sum.counts[1][BN_SERIES_DONE], 2);
	CHECK_INT(sum.counts[7][BN_SERIES_FAIL_LATE], 1);
	CHECK_INT(sum.counts[5][BN_SERIES_DONE], 0);	/* the grown part starts at zero */
	CHECK_INT(sum.counts[6][BN_SERIES_DONE], 0);
	CHECK_INT(sum.outside, 1);
	/* another bucket size does not merge */
	struct bn_series c;
	CHECK_INT(bn_series_init(&c, 5 * MS, 50 * MS, &err), 0);
	CHECK_INT(bn_series_merge(&sum, &c), -1);
	bn_series_free(&a);
	bn_series_free(&b);
	bn_series_free(&c);
	bn_series_free(&sum);
}

PN_TEST_MAIN("bench-series", PN_TEST_CASE(test_bucket_boundaries),
	     PN_TEST_CASE(test_span_rounds_up_and_limits), PN_TEST_CASE(test_off),
	     PN_TEST_CASE(test_merge))
