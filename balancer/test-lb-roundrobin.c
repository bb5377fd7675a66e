/* Unit tests for lb-roundrobin.c: exact shares per window of W picks, the
 * smooth (interleaved) order, skipping nodes of weight 0, and a node that
 * comes back starting fresh. */
#include "lb-algo.h"
#include "postern/testing.h"

static void count_picks(struct lb_rr *rr, const struct lb_node *nodes, size_t n,
			unsigned int picks, unsigned int *counts)
{
	memset(counts, 0, n * sizeof(*counts));
	for (unsigned int i = 0; i < picks; i++) {
		ssize_t k = lb_rr_pick(rr, nodes, n);

		CHECK(k >= 0 && (size_t)k < n);
		if (k >= 0)
			counts[k]++;
	}
}

PN_TEST(test_equal_weights_take_turns)
{
	struct lb_node nodes[3] = { { 1, 1, 0 }, { 2, 1, 0 }, { 3, 1, 0 } };
	struct lb_rr rr;

	CHECK_INT(lb_rr_init(&rr, 3), 0);
	for (int round = 0; round < 4; round++) {
		CHECK_INT(lb_rr_pick(&rr, nodes, 3), 0);
		CHECK_INT(lb_rr_pick(&rr, nodes, 3), 1);
		CHECK_INT(lb_rr_pick(&rr, nodes, 3), 2);
	}
	lb_rr_free(&rr);
}

PN_TEST(test_weighted_shares_exact_and_smooth)
{
	struct lb_node nodes[3] = { { 1, 5, 0 }, { 2, 1, 0 }, { 3, 1, 0 } };
	static const int expect[7] = { 0, 0, 1, 0, 2, 0, 0 };
	unsigned int counts[3];
	struct lb_rr rr;

	CHECK_INT(lb_rr_init(&rr, 3), 0);
	for (int i = 0; i < 7; i++)
		CHECK_INT(lb_rr_pick(&rr, nodes, 3), expect[i]);
	/* Every window of W = 7 picks gives exactly 5, 1, 1. */
	for (int w = 0; w < 20; w++) {
		count_picks(&rr, nodes, 3, 7, counts);
		CHECK_INT(counts[0], 5);
		CHECK_INT(counts[1], 1);
		CHECK_INT(counts[2], 1);
	}
	lb_rr_free(&rr);
}

PN_TEST(test_distribution_many_nodes)
{
	struct lb_node nodes[10];
	unsigned int counts[10], total_w = 0;
	struct lb_rr rr;

	for (unsigned int i = 0; i < 10; i++) {
		nodes[i] = (struct lb_node){ i + 100, i + 1, 0 };
		total_w += i + 1;
	}
	CHECK_INT(lb_rr_init(&rr, 10), 0);
	count_picks(&rr, nodes, 10, total_w * 100, counts);
	for (unsigned int i = 0; i < 10; i++)
		CHECK_INT(counts[i], (i + 1) * 100);
	lb_rr_free(&rr);
}

PN_TEST(test_skips_weight_zero)
{
	struct lb_node nodes[3] = { { 1, 1, 0 }, { 2, 0, 0 }, { 3, 1, 0 } };
	unsigned int counts[3];
	struct lb_rr rr;

	CHECK_INT(lb_rr_init(&rr, 3), 0);
	count_picks(&rr, nodes, 3, 100, counts);
	CHECK_INT(counts[0], 50);
	CHECK_INT(counts[1], 0);
	CHECK_INT(counts[2], 50);
	/* Back in rotation: it gets its share at once, not a burst. */
	nodes[1].weight = 1;
	count_picks(&rr, nodes, 3, 30, counts);
	CHECK_INT(counts[0], 10);
	CHECK_INT(counts[1], 10);
	CHECK_INT(counts[2], 10);
	lb_rr_free(&rr);
}

PN_TEST(test_stagger)
{
	struct lb_node nodes[3] = { { 1, 1, 0 }, { 2, 1, 0 }, { 3, 1, 0 } };
	struct lb_rr a, b;
	unsigned int counts[3];

	/* Two threads' pickers start at different nodes... */
	CHECK_INT(lb_rr_init(&a, 3), 0);
	CHECK_INT(lb_rr_init(&b, 3), 0);
	lb_rr_stagger(&a, 0);
	lb_rr_stagger(&b, 1);
	CHECK_INT(lb_rr_pick(&a, nodes, 3), 0);
	CHECK_INT(lb_rr_pick(&b, nodes, 3), 1);
	/* ...and still give exact shares. */
	count_picks(&b, nodes, 3, 299, counts);
	CHECK_INT(counts[0] + (counts[1] + 1) + counts[2], 300);
	CHECK_INT(counts[0], 100);
	CHECK_INT(counts[2], 100);
	lb_rr_free(&a);
	lb_rr_free(&b);
}

PN_TEST(test_none_eligible)
{
	struct lb_node nodes[2] = { { 1, 0, 0 }, { 2, 0, 0 } };
	struct lb_rr rr;

	CHECK_INT(lb_rr_init(&rr, 2), 0);
	CHECK_INT(lb_rr_pick(&rr, nodes, 2), -1);
	lb_rr_free(&rr);
	CHECK_INT(lb_rr_init(&rr, 0), 0);
	CHECK_INT(lb_rr_pick(&rr, nodes, 0), -1);
	lb_rr_free(&rr);
	CHECK_INT(lb_rr_init(&rr, LB_POOL_MAX + 1), -1);
}

PN_TEST_MAIN("test-lb-roundrobin",
	     PN_TEST_CASE(test_equal_weights_take_turns),
	     PN_TEST_CASE(test_weighted_shares_exact_and_smooth),
	     PN_TEST_CASE(test_distribution_many_nodes),
	     PN_TEST_CASE(test_skips_weight_zero),
	     PN_TEST_CASE(test_stagger),
	     PN_TEST_CASE(test_none_eligible))
