/* Smooth weighted round robin (the scheme nginx uses for its upstreams):
 * every pick adds each eligible node's weight to its running score, takes
 * the node with the highest score and subtracts the total weight from it.
 * Over any window of W picks (W the sum of weights) each node is chosen
 * exactly weight times, and the heavy nodes are interleaved with the light
 * ones rather than picked in a burst.
 */
#include "lb-algo.h"

#include <stdlib.h>

int lb_rr_init(struct lb_rr *rr, size_t n)
{
	rr->n = 0;
	rr->current = NULL;
	if (n > LB_POOL_MAX)
		return -1;
	if (n > 0) {
		rr->current = calloc(n, sizeof(*rr->current));
		if (rr->current == NULL)
			return -1;
	}
	rr->n = n;
	return 0;
}

void lb_rr_free(struct lb_rr *rr)
{
	free(rr->current);
	rr->current = NULL;
	rr->n = 0;
}

void lb_rr_stagger(struct lb_rr *rr, size_t start)
{
	if (rr->n > 0)
		rr->current[start % rr->n] += 1;
}

ssize_t lb_rr_pick(struct lb_rr *rr, const struct lb_node *nodes, size_t n)
{
	int64_t total = 0;
	ssize_t best = -1;

	if (n > rr->n)
		n = rr->n;
	for (size_t i = 0; i < n; i++) {
		if (nodes[i].weight == 0) {
			/* Out of rotation: it restarts from zero when it
			 * comes back rather than with a stale lead. */
			rr->current[i] = 0;
			continue;
		}
		rr->current[i] += nodes[i].weight;
		total += nodes[i].weight;
		if (best < 0 || rr->current[i] > rr->current[best])
			best = (ssize_t)i;
	}
	if (best >= 0)
		rr->current[best] -= total;
	return best;
}
