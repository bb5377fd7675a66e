/* The picker: one front for whichever balancing algorithm a pool uses,
 * holding that algorithm's state (round-robin scores, the consistent-hash
 * ring) for one pool version. The algorithms themselves live one per file
 * (lb-roundrobin.c, lb-leastconn.c, lb-source.c, lb-chash.c).
 */
#include "lb-algo.h"

#include <string.h>

static const char *const algo_names[LB_ALGO_COUNT] = {
	[LB_ALGO_ROUNDROBIN] = "roundrobin",
	[LB_ALGO_LEASTCONN] = "leastconn",
	[LB_ALGO_SOURCE] = "source",
	[LB_ALGO_CHASH] = "chash",
};

const char *lb_algo_name(enum lb_algo algo)
{
	return (unsigned int)algo < LB_ALGO_COUNT ? algo_names[algo] : "?";
}

int lb_algo_parse(const char *name, enum lb_algo *algo_r)
{
	for (unsigned int i = 0; i < LB_ALGO_COUNT; i++) {
		if (strcmp(name, algo_names[i]) == 0) {
			*algo_r = (enum lb_algo)i;
			return 0;
		}
	}
	return -1;
}

int lb_picker_init(struct lb_picker *p, enum lb_algo algo, const struct lb_node *nodes,
		   size_t n, unsigned int balance_pct, const char **error_r)
{
	memset(p, 0, sizeof(*p));
	p->algo = algo;
	p->n = n;
	switch (algo) {
	case LB_ALGO_ROUNDROBIN:
		if (lb_rr_init(&p->rr, n) < 0) {
			*error_r = "roundrobin: out of memory or pool too large";
			return -1;
		}
		return 0;
	case LB_ALGO_CHASH:
		return lb_chash_init(&p->ch, nodes, n, LB_CHASH_VNODES, balance_pct, error_r);
	case LB_ALGO_LEASTCONN:
	case LB_ALGO_SOURCE:
		return 0;
	case LB_ALGO_COUNT:
		break;
	}
	*error_r = "unknown balancing algorithm";
	return -1;
}

void lb_picker_free(struct lb_picker *p)
{
	lb_rr_free(&p->rr);
	lb_chash_free(&p->ch);
	p->n = 0;
}

ssize_t lb_picker_pick(struct lb_picker *p, const struct lb_node *nodes, size_t n,
		       uint64_t key)
{
	if (n > p->n)
		n = p->n;
	switch (p->algo) {
	case LB_ALGO_ROUNDROBIN:
		return lb_rr_pick(&p->rr, nodes, n);
	case LB_ALGO_LEASTCONN:
		return lb_leastconn_pick(&p->lc, nodes, n);
	case LB_ALGO_SOURCE:
		return lb_source_pick(nodes, n, key);
	case LB_ALGO_CHASH:
		return lb_chash_pick(&p->ch, nodes, n, key);
	case LB_ALGO_COUNT:
		break;
	}
	return -1;
}
