/* Unit tests of the latency histogram: bucket arithmetic, quantile
 * accuracy against exact sorted values, merge, clamping and the empty case.
 */
#include "hist.h"

#include <stdlib.h>

#include "postern/testing.h"

static struct bn_hist h1, h2;

PN_TEST(test_buckets_cover_every_value)
{
	/* every value maps into a bucket whose [low, high] contains it, and
	 * consecutive buckets touch */
	for (uint64_t v = 0; v < 100000; v++) {
		unsigned int i = bn_hist_index(v);
		CHECK(i < BN_HIST_BUCKETS);
		CHECK(bn_hist_bucket_low(i) <= v && v <= bn_hist_bucket_high(i));
	}
	for (unsigned int i = 1; i < BN_HIST_BUCKETS; i++)
		CHECK_INT(bn_hist_bucket_low(i), bn_hist_bucket_high(i - 1) + 1);
	CHECK_INT(bn_hist_index(BN_HIST_MAX_NS), BN_HIST_BUCKETS - 1);
	CHECK_INT(bn_hist_index(UINT64_MAX), BN_HIST_BUCKETS - 1);
	/* relative bucket width stays under 1/128 above the linear part */
	for (unsigned int i = 2 * BN_HIST_SUB; i < BN_HIST_BUCKETS; i += 37) {
		double w = (double)(bn_hist_bucket_high(i) - bn_hist_bucket_low(i) + 1);
		CHECK(w / (double)bn_hist_bucket_low(i) <= 1.0 / 128 + 1e-12);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

PN_TEST(test_quantiles_match_sorted_values)
{
	enum { N = 20000 };
	static uint64_t vals[N];
	uint64_t rng = 88172645463325252ull;

	bn_hist_init(&h1);
	for (int i = 0; i < N; i++) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		/* spread over 1 us .. ~1 s, log-uniform-ish */
		uint64_t v = 1000u << (rng % 20);
		v += (rng >> 20) % v;
		vals[i] = v;
		bn_hist_record(&h1, v);
	}
	qsort(vals, N, sizeof(vals[0]), cmp_u64);
	const double qs[] = { 0.5, 0.9, 0.99, 0.999 };
	for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
		size_t rank = (size_t)(qs[k] * N + 0.999999); /* ceil */
		uint64_t exact = vals[rank - 1];
		uint64_t got = bn_hist_quantile(&h1, qs[k]);
		double err = (double)(got > exact ? got - exact : exact - got) / (double)exact;
		CHECK(err < 0.01);
	}
	CHECK_INT(bn_hist_quantile(&h1, 1.0), vals[N - 1]);
	CHECK_INT(h1.max, vals[N - 1]);
	CHECK_INT(h1.min, vals[0]);
	CHECK_INT(h1.total, N);
}

PN_TEST(test_small_exact_values)
{
	bn_hist_init(&h1);
	for (uint64_t v = 1; v <= 100; v++)
		bn_hist_record(&h1, v);
	CHECK_INT(bn_hist_quantile(&h1, 0.5), 50);
	CHECK_INT(bn_hist_quantile(&h1, 0.9), 90);
	CHECK_INT(bn_hist_quantile(&h1, 0.99), 99);
	CHECK_INT(bn_hist_quantile(&h1, 0.001), 1);
	CHECK(bn_hist_mean(&h1) > 50.49 && bn_hist_mean(&h1) < 50.51);
}

PN_TEST(test_merge_and_empty)
{
	bn_hist_init(&h1);
	bn_hist_init(&h2);
	CHECK_INT(bn_hist_quantile(&h1, 0.5), 0);
	CHECK(bn_hist_mean(&h1) == 0.0);
	bn_hist_merge(&h1, &h2);
	CHECK_INT(h1.total, 0);
	CHECK(h1.min == UINT64_MAX);

	for (int i = 0; i < 90; i++)
		bn_hist_record(&h1, 1000);
	for (int i = 0; i < 10; i++)
		bn_hist_record(&h2, 1000000);
	bn_hist_merge(&h1, &h2);
	CHECK_INT(h1.total, 100);
	CHECK_INT(h1.min, 1000);
	CHECK_INT(h1.max, 1000000);
	uint64_t p90 = bn_hist_quantile(&h1, 0.90), p91 = bn_hist_quantile(&h1, 0.91);
	CHECK(p90 >= 996 && p90 <= 1004);
	CHECK(p91 >= 992000 && p91 <= 1000000);
}

PN_TEST(test_clamp)
{
	bn_hist_init(&h1);
	bn_hist_record(&h1, UINT64_MAX);
	CHECK_INT(h1.max, BN_HIST_MAX_NS);
	CHECK_INT(h1.counts[BN_HIST_BUCKETS - 1], 1);
	CHECK_INT(bn_hist_quantile(&h1, 0.5), BN_HIST_MAX_NS);
}

PN_TEST_MAIN("bench-hist", PN_TEST_CASE(test_buckets_cover_every_value),
	     PN_TEST_CASE(test_quantiles_match_sorted_values), PN_TEST_CASE(test_small_exact_values),
	     PN_TEST_CASE(test_merge_and_empty), PN_TEST_CASE(test_clamp))
