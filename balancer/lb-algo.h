/* Balancing algorithms: which upstream gets the next connection.
 *
 * Every algorithm is a pure function over an array of candidates (struct
 * lb_node) plus, for some, a small state owned by the caller: no I/O, no
 * locks, no global state. Each worker thread keeps its own pickers, built
 * for the pool version it last saw; a pool change (reload) means a new
 * picker. One algorithm per file:
 *
 *   lb-roundrobin.c  smooth weighted round robin (the sequence for weights
 *                    5,1,1 is a a b a c a a: no burst on the heavy node)
 *   lb-leastconn.c   fewest active connections relative to the weight;
 *                    ties go round robin
 *   lb-source.c      source-address hash: weighted rendezvous hashing, so a
 *                    client address keeps its upstream while the pool is
 *                    stable, and a node that leaves moves only its own
 *                    clients
 *   lb-chash.c       consistent hashing with bounded loads (Mirrokni,
 *                    Thorup, Zadimoghaddam 2018) for L7 routing by user or
 *                    tenant: a key lands on its ring successor unless that
 *                    node already holds more than (1+e) times its share of
 *                    the active connections, then on the next one
 *
 * A candidate with weight 0 is never picked (down, draining, or already
 * tried for this connection). Picks return the index into nodes[], or -1
 * when no candidate has a weight.
 */
#ifndef POSTERN_LB_ALGO_H
#define POSTERN_LB_ALGO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Upper bound on the candidates of one pool (config sanity limit). */
#define LB_POOL_MAX 256

struct lb_node {
	/* Stable identity: a hash of the upstream's name, the same on every
	 * balancer, so that hashing algorithms agree across replicas. */
	uint64_t id;
	/* Effective weight now (slow start applied); 0 = not eligible. */
	uint32_t weight;
	/* Connections open to it now (all threads). */
	uint32_t active;
};

enum lb_algo {
	LB_ALGO_ROUNDROBIN = 0,
	LB_ALGO_LEASTCONN,
	LB_ALGO_SOURCE,
	LB_ALGO_CHASH,
	LB_ALGO_COUNT
};

/* "roundrobin", "leastconn", "source", "chash". */
const char *lb_algo_name(enum lb_algo algo);
/* Returns 0 and sets *algo_r, or -1 for an unknown name. */
int lb_algo_parse(const char *name, enum lb_algo *algo_r);

/* ---- lb-roundrobin.c: smooth weighted round robin ---- */

/* State for a pool of n nodes: one running score per node. */
struct lb_rr {
	int64_t *current;
	size_t n;
};
/* Returns 0, or -1 when out of memory (or n > LB_POOL_MAX). */
int lb_rr_init(struct lb_rr *rr, size_t n);
void lb_rr_free(struct lb_rr *rr);
/* Gives node start % n a lead of 1 so that pickers of several threads
 * begin at different nodes (each still gives exact shares over W picks). */
void lb_rr_stagger(struct lb_rr *rr, size_t start);
/* n must be the n given to lb_rr_init(). */
ssize_t lb_rr_pick(struct lb_rr *rr, const struct lb_node *nodes, size_t n);

/* ---- lb-leastconn.c: least connections ---- */

struct lb_lc {
	size_t next; /* where the search for ties starts */
};
/* Smallest active/weight; among equals the first at or after lc->next,
 * which then moves past it, so equal nodes take turns. */
ssize_t lb_leastconn_pick(struct lb_lc *lc, const struct lb_node *nodes, size_t n);

/* ---- lb-source.c: source-address hash ---- */

/* The key of a client address: a hash of the IP alone (not the port), with
 * IPv4-mapped IPv6 folded to IPv4 so both socket kinds agree. */
uint64_t lb_source_key(const struct sockaddr *sa);
/* Weighted rendezvous hashing: each node scores weight / -ln(u) with u a
 * uniform hash of (key, id) in (0,1); the highest score wins. A key's
 * choice changes only when its chosen node leaves (or weights change). */
ssize_t lb_source_pick(const struct lb_node *nodes, size_t n, uint64_t key);

/* ---- lb-chash.c: consistent hashing with bounded loads ---- */

struct lb_chash_point {
	uint64_t hash;
	uint32_t node;
};

struct lb_chash {
	struct lb_chash_point *ring;	/* sorted by hash */
	size_t npoints;
	size_t n;			/* nodes it was built for */
	unsigned int balance_pct;	/* e as a percentage: 25 = 1.25x */
};

#define LB_CHASH_VNODES 160

/* Builds the ring for nodes[0..n): vnodes points per node placed by hashing
 * the node's id (not its position, so the same names give the same ring on
 * every balancer). Weights are not part of the ring: they scale each
 * node's load bound instead, so slow start and weight changes need no
 * rebuild. balance_pct is e in percent (0 means no load bound). Returns 0,
 * or -1 with *error_r set (out of memory, n > LB_POOL_MAX, vnodes 0). */
int lb_chash_init(struct lb_chash *ch, const struct lb_node *nodes, size_t n,
		  unsigned int vnodes, unsigned int balance_pct, const char **error_r);
void lb_chash_free(struct lb_chash *ch);
/* The first node clockwise from key that is eligible and whose active count
 * is below its bound ceil((1 + e) * (A + 1) * w / W), where A is the sum of
 * active connections and W of weights over eligible nodes. So after the
 * pick, no node holds more than its bound. */
ssize_t lb_chash_pick(const struct lb_chash *ch, const struct lb_node *nodes, size_t n,
		      uint64_t key);

/* ---- lb-algo.c: one picker for whichever algorithm is configured ---- */

struct lb_picker {
	enum lb_algo algo;
	size_t n;
	struct lb_rr rr;
	struct lb_lc lc;
	struct lb_chash ch;
};

/* Builds the state algo needs for nodes[0..n) (their ids; weights and
 * loads are read at each pick). Returns 0, or -1 with *error_r. */
int lb_picker_init(struct lb_picker *p, enum lb_algo algo, const struct lb_node *nodes,
		   size_t n, unsigned int balance_pct, const char **error_r);
void lb_picker_free(struct lb_picker *p);
/* key: lb_source_key() of the client for source and (in L4) chash, the
 * hashed user or tenant for L7 chash; ignored by the others. */
ssize_t lb_picker_pick(struct lb_picker *p, const struct lb_node *nodes, size_t n,
		       uint64_t key);

#endif
