/* Unit tests for lb-leastconn.c: the least loaded node relative to its
 * weight wins, ties take turns, weight 0 is never picked, and a simulated
 * run keeps the loads level. */
#include "lb-algo.h"
#include "postern/testing.h"

PN_TEST(test_fewest_active_wins)
{
	struct lb_node nodes[3] = { { 1, 1, 5 }, { 2, 1, 2 }, { 3, 1, 7 } };
	struct lb_lc lc = { 0 };

	CHECK_INT(lb_leastconn_pick(&lc, nodes, 3), 1);
	CHECK_INT(lb_leastconn_pick(&lc, nodes, 3), 1);
}

PN_TEST(test_weight_scales_load)
{
	/* 6/3 = 2 per weight unit beats 3/1. */
	struct lb_node nodes[2] = { { 1, 1, 3 }, { 2, 3, 6 } };
	struct lb_lc lc = { 0 };

	CHECK_INT(lb_leastconn_pick(&lc, nodes, 2), 1);
	nodes[1].active = 10; /* 3.33 > 3 */
	CHECK_INT(lb_leastconn_pick(&lc, nodes, 2), 0);
}

PN_TEST(test_ties_take_turns)
{
	struct lb_node nodes[3] = { { 1, 1, 0 }, { 2, 1, 0 }, { 3, 1, 0 } };
	struct lb_lc lc = { 0 };

	CHECK_INT(lb_leastconn_pick(&lc, nodes, 3), 0);
	CHECK_INT(lb_leastconn_pick(&lc, nodes, 3), 1);
	CHECK_INT(lb_leastconn_pick(&lc, nodes, 3), 2);
	CHECK_INT(lb_leastconn_pick(&lc, nodes, 3), 0);
}

PN_TEST(test_skips_weight_zero)
{
	struct lb_node nodes[3] = { { 1, 0, 0 }, { 2, 1, 9 }, { 3, 0, 0 } };
	struct lb_lc lc = { 0 };

	CHECK_INT(lb_leastconn_pick(&lc, nodes, 3), 1);
	nodes[1].weight = 0;
	CHECK_INT(lb_leastconn_pick(&lc, nodes, 3), -1);
	CHECK_INT(lb_leastconn_pick(&lc, nodes, 0), -1);
}

PN_TEST(test_simulated_loads_stay_level)
{
	struct lb_node nodes[4] = { { 1, 1, 0 }, { 2, 1, 0 }, { 3, 2, 0 }, { 4, 1, 0 } };
	struct lb_lc lc = { 0 };
	uint64_t x = 12345;

	/* Open 500 connections, closing a pseudo-random one now and then. */
	for (int i = 0; i < 500; i++) {
		ssize_t k = lb_leastconn_pick(&lc, nodes, 4);

		CHECK(k >= 0);
		if (k < 0)
			return;
		nodes[k].active++;
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		if ((x >> 60) == 0) {
			unsigned int j = (unsigned int)(x >> 33) % 4;

			if (nodes[j].active > 0)
				nodes[j].active--;
		}
	}
	/* Loads per weight unit differ by at most one connection. */
	for (int i = 0; i < 4; i++) {
		for (int j = 0; j < 4; j++) {
			double a = (double)nodes[i].active / nodes[i].weight;
			double b = (double)nodes[j].active / nodes[j].weight;

			CHECK(a - b <= 1.0 + 1e-9);
		}
	}
}

PN_TEST_MAIN("test-lb-leastconn",
	     PN_TEST_CASE(test_fewest_active_wins),
	     PN_TEST_CASE(test_weight_scales_load),
	     PN_TEST_CASE(test_ties_take_turns),
	     PN_TEST_CASE(test_skips_weight_zero),
	     PN_TEST_CASE(test_simulated_loads_stay_level))
