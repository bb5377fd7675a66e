/* Unit tests for lb-chash.c: without load pressure keys spread evenly and
 * a leaving node moves only its own keys; under load no node exceeds
 * ceil((1+e) * average * weight share); the ring does not depend on the
 * order the pool is listed in. */
#include "lb-algo.h"
#include "postern/testing.h"

static uint64_t next_rand(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void make_nodes(struct lb_node *nodes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		nodes[i] = (struct lb_node){ 0x5000 + i * 7919, 1, 0 };
}

PN_TEST(test_spread_without_loads)
{
	struct lb_node nodes[8];
	struct lb_chash ch;
	const char *err = NULL;
	unsigned int counts[8] = { 0 };
	uint64_t x = 3;
	const unsigned int keys = 16000;

	make_nodes(nodes, 8);
	CHECK_INT(lb_chash_init(&ch, nodes, 8, LB_CHASH_VNODES, 0, &err), 0);
	for (unsigned int k = 0; k < keys; k++) {
		ssize_t i = lb_chash_pick(&ch, nodes, 8, next_rand(&x));

		CHECK(i >= 0 && i < 8);
		if (i >= 0)
			counts[i]++;
	}
	/* 160 points per node keep each share within 25% of 1/8. */
	for (int i = 0; i < 8; i++)
		CHECK(counts[i] > keys / 8 * 3 / 4 && counts[i] < keys / 8 * 5 / 4);
	lb_chash_free(&ch);
}

PN_TEST(test_node_leaving_moves_only_its_keys)
{
	struct lb_node nodes[6], fewer[6];
	struct lb_chash ch;
	const char *err = NULL;
	uint64_t x = 17;
	unsigned int owned = 0, moved_other = 0;

	make_nodes(nodes, 6);
	memcpy(fewer, nodes, sizeof(nodes));
	fewer[4].weight = 0;
	/* With the load bound on, but no connections open: e = 0.25. */
	CHECK_INT(lb_chash_init(&ch, nodes, 6, LB_CHASH_VNODES, 25, &err), 0);
	for (unsigned int k = 0; k < 6000; k++) {
		uint64_t key = next_rand(&x);
		ssize_t before = lb_chash_pick(&ch, nodes, 6, key);
		ssize_t after = lb_chash_pick(&ch, fewer, 6, key);

		CHECK(before >= 0 && after >= 0 && after != 4);
		if (before == 4)
			owned++;
		else if (after != before)
			moved_other++;
	}
	CHECK_INT(moved_other, 0);
	CHECK(owned > 500);
	lb_chash_free(&ch);
}

static void check_bounded(unsigned int pct, const uint32_t *weights, size_t n,
			  unsigned int conns, uint64_t seed)
{
	struct lb_node nodes[16];
	struct lb_chash ch;
	const char *err = NULL;
	uint64_t x = seed, wsum = 0;

	make_nodes(nodes, n);
	for (size_t i = 0; i < n; i++) {
		nodes[i].weight = weights[i];
		wsum += weights[i];
	}
	CHECK_INT(lb_chash_init(&ch, nodes, n, LB_CHASH_VNODES, pct, &err), 0);
	/* A skewed key stream: half the connections come from 5 hot keys. */
	for (unsigned int c = 0; c < conns; c++) {
		uint64_t key = next_rand(&x);
		ssize_t i;

		if (c % 2 == 0)
			key = 1000 + key % 5;
		i = lb_chash_pick(&ch, nodes, n, key);
		CHECK(i >= 0);
		if (i < 0)
			break;
		nodes[i].active++;
		/* After every pick: active <= ceil((1+e) * A * w / W). */
		{
			uint64_t a = c + 1;

			for (size_t j = 0; j < n; j++) {
				uint64_t num = (uint64_t)(100 + pct) * a * nodes[j].weight;
				uint64_t bound = (num + 100 * wsum - 1) / (100 * wsum);

				if (nodes[j].active > bound) {
					fprintf(stderr, "node %zu holds %u > bound %llu after %llu\n",
						j, nodes[j].active, (unsigned long long)bound,
						(unsigned long long)a);
					CHECK(nodes[j].active <= bound);
					lb_chash_free(&ch);
					return;
				}
			}
		}
	}
	lb_chash_free(&ch);
}

PN_TEST(test_bounded_load)
{
	static const uint32_t equal[10] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
	static const uint32_t mixed[5] = { 1, 2, 1, 4, 2 };

	check_bounded(25, equal, 10, 3000, 1);
	check_bounded(10, equal, 10, 3000, 2);
	check_bounded(25, mixed, 5, 3000, 3);
}

PN_TEST(test_same_key_same_node)
{
	struct lb_node nodes[4];
	struct lb_chash ch;
	const char *err = NULL;
	ssize_t first;

	make_nodes(nodes, 4);
	CHECK_INT(lb_chash_init(&ch, nodes, 4, LB_CHASH_VNODES, 25, &err), 0);
	/* A user's sessions stick while loads allow it. */
	first = lb_chash_pick(&ch, nodes, 4, 0xfeedull);
	CHECK(first >= 0);
	for (int i = 0; i < 3 && first >= 0; i++) {
		nodes[first].active++;
		for (int j = 0; j < 4; j++)
			if (j != first)
				nodes[j].active++;
		CHECK_INT(lb_chash_pick(&ch, nodes, 4, 0xfeedull), first);
	}
	lb_chash_free(&ch);
}

PN_TEST(test_order_independent_and_limits)
{
	struct lb_node a[3] = { { 11, 1, 0 }, { 22, 1, 0 }, { 33, 1, 0 } };
	struct lb_node b[3] = { { 22, 1, 0 }, { 33, 1, 0 }, { 11, 1, 0 } };
	struct lb_chash ca, cb, ce;
	const char *err = NULL;
	uint64_t x = 8;

	CHECK_INT(lb_chash_init(&ca, a, 3, 64, 25, &err), 0);
	CHECK_INT(lb_chash_init(&cb, b, 3, 64, 25, &err), 0);
	for (int k = 0; k < 1000; k++) {
		uint64_t key = next_rand(&x);
		ssize_t i = lb_chash_pick(&ca, a, 3, key), j = lb_chash_pick(&cb, b, 3, key);

		CHECK(i >= 0 && j >= 0 && a[i].id == b[j].id);
	}
	a[0].weight = a[1].weight = a[2].weight = 0;
	CHECK_INT(lb_chash_pick(&ca, a, 3, 1), -1);
	lb_chash_free(&ca);
	lb_chash_free(&cb);
	CHECK_INT(lb_chash_init(&ce, a, 0, 64, 25, &err), 0);
	CHECK_INT(lb_chash_pick(&ce, a, 0, 1), -1);
	lb_chash_free(&ce);
	CHECK_INT(lb_chash_init(&ce, a, 3, 0, 25, &err), -1);
	CHECK_INT(lb_chash_init(&ce, a, LB_POOL_MAX + 1, 4, 25, &err), -1);
}

PN_TEST_MAIN("test-lb-chash",
	     PN_TEST_CASE(test_spread_without_loads),
	     PN_TEST_CASE(test_node_leaving_moves_only_its_keys),
	     PN_TEST_CASE(test_bounded_load),
	     PN_TEST_CASE(test_same_key_same_node),
	     PN_TEST_CASE(test_order_independent_and_limits))
