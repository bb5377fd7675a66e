/* Unit tests for lb-source.c: the key depends on the IP only (IPv4-mapped
 * folded), picks are stable, shares follow weights, and a node leaving
 * moves only the keys it had. */
#include "lb-algo.h"
#include "postern/testing.h"

#include <arpa/inet.h>
#include <netinet/in.h>

static uint64_t next_rand(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

PN_TEST(test_key_ignores_port_and_folds_mapped)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(1000) };
	struct sockaddr_in b = { .sin_family = AF_INET, .sin_port = htons(2000) };
	struct sockaddr_in c = { .sin_family = AF_INET, .sin_port = htons(1000) };
	struct sockaddr_in6 m = { .sin6_family = AF_INET6, .sin6_port = htons(3) };
	struct sockaddr_in6 v6 = { .sin6_family = AF_INET6 };

	inet_pton(AF_INET, "192.0.2.7", &a.sin_addr);
	inet_pton(AF_INET, "192.0.2.7", &b.sin_addr);
	inet_pton(AF_INET, "192.0.2.8", &c.sin_addr);
	inet_pton(AF_INET6, "::ffff:192.0.2.7", &m.sin6_addr);
	inet_pton(AF_INET6, "2001:db8::7", &v6.sin6_addr);
	CHECK(lb_source_key((struct sockaddr *)&a) == lb_source_key((struct sockaddr *)&b));
	CHECK(lb_source_key((struct sockaddr *)&a) != lb_source_key((struct sockaddr *)&c));
	CHECK(lb_source_key((struct sockaddr *)&a) == lb_source_key((struct sockaddr *)&m));
	CHECK(lb_source_key((struct sockaddr *)&a) != lb_source_key((struct sockaddr *)&v6));
}

PN_TEST(test_distribution_and_weights)
{
	struct lb_node nodes[5];
	unsigned int counts[5] = { 0 };
	uint64_t x = 1;
	const unsigned int keys = 20000;

	for (unsigned int i = 0; i < 5; i++)
		nodes[i] = (struct lb_node){ 1000 + i, i == 4 ? 2 : 1, 0 };
	for (unsigned int k = 0; k < keys; k++) {
		ssize_t i = lb_source_pick(nodes, 5, next_rand(&x));

		CHECK(i >= 0 && i < 5);
		if (i >= 0)
			counts[i]++;
	}
	/* Expected shares 1/6 each and 2/6 for the last: within 10%. */
	for (unsigned int i = 0; i < 4; i++)
		CHECK(counts[i] > keys / 6 * 9 / 10 && counts[i] < keys / 6 * 11 / 10);
	CHECK(counts[4] > keys / 3 * 9 / 10 && counts[4] < keys / 3 * 11 / 10);
}

PN_TEST(test_stable_and_minimal_movement)
{
	struct lb_node nodes[6], fewer[6];
	uint64_t x = 99;
	unsigned int moved_other = 0, moved_own = 0, owned = 0;

	for (unsigned int i = 0; i < 6; i++)
		nodes[i] = (struct lb_node){ 0xabc0 + i, 1, 0 };
	memcpy(fewer, nodes, sizeof(nodes));
	fewer[2].weight = 0; /* node 2 leaves */
	for (unsigned int k = 0; k < 5000; k++) {
		uint64_t key = next_rand(&x);
		ssize_t before = lb_source_pick(nodes, 6, key);
		ssize_t again = lb_source_pick(nodes, 6, key);
		ssize_t after = lb_source_pick(fewer, 6, key);

		CHECK_INT(before, again);
		if (before == 2) {
			owned++;
			if (after != 2)
				moved_own++;
		} else if (after != before) {
			moved_other++;
		}
	}
	CHECK_INT(moved_other, 0);
	CHECK_INT(moved_own, owned);
	CHECK(owned > 500);
}

PN_TEST(test_same_ids_same_choice_in_any_order)
{
	/* Another balancer may list the pool in another order. */
	struct lb_node a[3] = { { 11, 1, 0 }, { 22, 1, 0 }, { 33, 1, 0 } };
	struct lb_node b[3] = { { 33, 1, 0 }, { 11, 1, 0 }, { 22, 1, 0 } };
	uint64_t x = 5;

	for (int k = 0; k < 1000; k++) {
		uint64_t key = next_rand(&x);
		ssize_t i = lb_source_pick(a, 3, key), j = lb_source_pick(b, 3, key);

		CHECK(i >= 0 && j >= 0 && a[i].id == b[j].id);
	}
}

PN_TEST(test_none_eligible)
{
	struct lb_node nodes[2] = { { 1, 0, 0 }, { 2, 0, 0 } };

	CHECK_INT(lb_source_pick(nodes, 2, 42), -1);
	CHECK_INT(lb_source_pick(nodes, 0, 42), -1);
}

PN_TEST_MAIN("test-lb-source",
	     PN_TEST_CASE(test_key_ignores_port_and_folds_mapped),
	     PN_TEST_CASE(test_distribution_and_weights),
	     PN_TEST_CASE(test_stable_and_minimal_movement),
	     PN_TEST_CASE(test_same_ids_same_choice_in_any_order),
	     PN_TEST_CASE(test_none_eligible))
