/* Least connections: the eligible node with the fewest active connections
 * relative to its weight (active_i / weight_i, compared by cross
 * multiplication so no division rounds). Among equal nodes the search
 * starts after the previous pick, so an idle pool is used round robin
 * instead of piling onto the first node.
 */
#include "lb-algo.h"

ssize_t lb_leastconn_pick(struct lb_lc *lc, const struct lb_node *nodes, size_t n)
{
	ssize_t best = -1;

	if (n == 0)
		return -1;
	for (size_t k = 0; k < n; k++) {
		size_t i = (lc->next + k) % n;

		if (nodes[i].weight == 0)
			continue;
		if (best < 0 ||
		    (uint64_t)nodes[i].active * nodes[best].weight <
			    (uint64_t)nodes[best].active * nodes[i].weight)
			best = (ssize_t)i;
	}
	if (best >= 0)
		lc->next = ((size_t)best + 1) % n;
	return best;
}
