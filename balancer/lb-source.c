/* Source-address hashing by weighted rendezvous (highest random weight)
 * hashing: each eligible node scores weight / -ln(u), u being a uniform
 * hash of (client key, node id) in (0,1), and the best score wins. A key
 * keeps its node as long as that node stays eligible, a node leaving moves
 * only the keys it had, and each node's share is proportional to its
 * weight. Costs one hash and one log per node per pick, fine for pools of
 * a few hundred.
 */
#include "lb-algo.h"

#include <math.h>
#include <netinet/in.h>
#include <string.h>

#include "postern/hash.h"

#define SOURCE_SEED 0x706f737465726e31ull /* "postern1" */

uint64_t lb_source_key(const struct sockaddr *sa)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		return pn_hash64(&s4->sin_addr, 4, SOURCE_SEED);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		const uint8_t *a = s6->sin6_addr.s6_addr;

		if (memcmp(a, mapped, sizeof(mapped)) == 0)
			return pn_hash64(a + 12, 4, SOURCE_SEED);
		return pn_hash64(a, 16, SOURCE_SEED);
	}
	return 0;
}

/* A uniform double in (0,1) from (key, id). */
static double unit_hash(uint64_t key, uint64_t id)
{
	uint64_t words[2] = { key, id };
	uint64_t h = pn_hash64(words, sizeof(words), SOURCE_SEED);

	return ((double)(h >> 11) + 0.5) * (1.0 / 9007199254740992.0); /* 2^53 */
}

ssize_t lb_source_pick(const struct lb_node *nodes, size_t n, uint64_t key)
{
	ssize_t best = -1;
	double best_score = 0;

	for (size_t i = 0; i < n; i++) {
		double score;

		if (nodes[i].weight == 0)
			continue;
		score = (double)nodes[i].weight / -log(unit_hash(key, nodes[i].id));
		if (best < 0 || score > best_score) {
			best = (ssize_t)i;
			best_score = score;
		}
	}
	return best;
}
