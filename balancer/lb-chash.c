/* Consistent hashing with bounded loads (V. Mirrokni, M. Thorup, M.
 * Zadimoghaddam, "Consistent Hashing with Bounded Loads", SODA 2018), for
 * routing a user's (or tenant's) sessions to the same frontend.
 *
 * The ring holds LB_CHASH_VNODES points per node, placed by hashing the
 * node's stable id with the point number. A key goes to the first point
 * clockwise from its hash whose node is eligible and below its load bound
 * ceil((1 + e) * (A + 1) * w / W) (A: active connections over eligible
 * nodes, W: their total weight, w: this node's weight). Since the bounds
 * add up to more than A + 1, some node always has room, and no node ever
 * exceeds its bound after a pick. Without load pressure this is plain
 * consistent hashing: a node leaving moves only its own keys.
 */
#include "lb-algo.h"

#include <stdlib.h>

#include "postern/hash.h"

#define CHASH_SEED 0x6c622d6368617368ull /* "lb-chash" */

static int point_cmp(const void *a, const void *b)
{
	const struct lb_chash_point *pa = a, *pb = b;

	if (pa->hash != pb->hash)
		return pa->hash < pb->hash ? -1 : 1;
	/* Equal hashes (rare): order by node so every balancer agrees. */
	return pa->node < pb->node ? -1 : pa->node > pb->node;
}

int lb_chash_init(struct lb_chash *ch, const struct lb_node *nodes, size_t n,
		  unsigned int vnodes, unsigned int balance_pct, const char **error_r)
{
	ch->ring = NULL;
	ch->npoints = 0;
	ch->n = 0;
	ch->balance_pct = balance_pct;
	if (n > LB_POOL_MAX || vnodes == 0 || vnodes > 4096) {
		*error_r = "chash: too many nodes or bad vnode count";
		return -1;
	}
	if (n == 0)
		return 0;
	ch->ring = calloc(n * vnodes, sizeof(*ch->ring));
	if (ch->ring == NULL) {
		*error_r = "chash: out of memory";
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		for (unsigned int v = 0; v < vnodes; v++) {
			uint64_t words[2] = { nodes[i].id, v };
			struct lb_chash_point *p = &ch->ring[i * vnodes + v];

			p->hash = pn_hash64(words, sizeof(words), CHASH_SEED);
			p->node = (uint32_t)i;
		}
	}
	ch->npoints = n * vnodes;
	ch->n = n;
	qsort(ch->ring, ch->npoints, sizeof(*ch->ring), point_cmp);
	return 0;
}

void lb_chash_free(struct lb_chash *ch)
{
	free(ch->ring);
	ch->ring = NULL;
	ch->npoints = 0;
	ch->n = 0;
}

/* Index of the first point with hash >= key (npoints if none). */
static size_t successor(const struct lb_chash *ch, uint64_t key)
{
	size_t lo = 0, hi = ch->npoints;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ch->ring[mid].hash < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

ssize_t lb_chash_pick(const struct lb_chash *ch, const struct lb_node *nodes, size_t n,
		      uint64_t key)
{
	unsigned __int128 total_active = 0, total_weight = 0;
	size_t start;

	if (n > ch->n)
		n = ch->n;
	for (size_t i = 0; i < n; i++) {
		if (nodes[i].weight == 0)
			continue;
		total_active += nodes[i].active;
		total_weight += nodes[i].weight;
	}
	if (total_weight == 0 || ch->npoints == 0)
		return -1;
	start = successor(ch, key);
	for (size_t k = 0; k < ch->npoints; k++) {
		const struct lb_chash_point *p = &ch->ring[(start + k) % ch->npoints];
		const struct lb_node *nd;
		unsigned __int128 num, den, bound;

		if (p->node >= n)
			continue;
		nd = &nodes[p->node];
		if (nd->weight == 0)
			continue;
		if (ch->balance_pct == 0)
			return p->node;
		/* bound = ceil((100 + pct) * (A + 1) * w / (100 * W)) */
		num = (unsigned __int128)(100 + ch->balance_pct) * (total_active + 1) *
		      nd->weight;
		den = 100 * total_weight;
		bound = (num + den - 1) / den;
		if (nd->active < bound)
			return p->node;
	}
	/* Unreachable while the bounds add up to more than A (they do), but
	 * never fail a pick over arithmetic: take the least loaded. */
	{
		struct lb_lc lc = { 0 };

		return lb_leastconn_pick(&lc, nodes, n);
	}
}
