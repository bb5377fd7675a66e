/* Connection limits of the balancer: total connections, connections at
 * once per source address, and new connections per second per source
 * (a token bucket that holds one second's worth).
 *
 * Shared by all relay threads (one mutex; a lookup in a fixed table per
 * accepted connection). Per-source state lives in a table of at most
 * max_sources addresses; an address with no connection and a full bucket
 * is dropped by lb_limits_sweep(). When the table is full, new sources are
 * admitted untracked (counted in overflow) rather than refused: the limits
 * protect against floods from a few addresses, and a flood from many
 * addresses must not lock everyone out.
 */
#ifndef POSTERN_LB_LIMITS_H
#define POSTERN_LB_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct lb_limits_settings {
	uint32_t max_total;		/* 0: no limit */
	uint32_t per_source;		/* 0: no limit */
	uint32_t rate_per_source;	/* per second; 0: no limit */
	uint32_t max_sources;		/* table size; 0 takes 65536 */
};

enum lb_limit_verdict {
	LB_LIMIT_OK = 0,
	LB_LIMIT_TOTAL,		/* max_total connections open */
	LB_LIMIT_SOURCE,	/* per_source connections open from this address */
	LB_LIMIT_RATE,		/* rate_per_source exceeded */
};

/* Short reason for logs and metric labels: "total", "source", "rate". */
const char *lb_limit_reason(enum lb_limit_verdict v);

struct lb_limits;

/* Returns NULL with *error_r when out of memory. */
struct lb_limits *lb_limits_new(const struct lb_limits_settings *set, const char **error_r);
void lb_limits_free(struct lb_limits **l);
/* New limits (reload); max_sources is kept. Open connections stay counted. */
void lb_limits_update(struct lb_limits *l, const struct lb_limits_settings *set);

/* A connection from src at now_ms: LB_LIMIT_OK (then it is counted and
 * must be given back with lb_limits_release(), passing *tracked_r as
 * tracked) or the limit it hit (nothing counted). */
enum lb_limit_verdict lb_limits_admit(struct lb_limits *l, const struct sockaddr *src,
				      uint64_t now_ms, bool *tracked_r);
void lb_limits_release(struct lb_limits *l, const struct sockaddr *src, bool tracked);

/* Drops per-source entries with no connection and a full bucket. */
void lb_limits_sweep(struct lb_limits *l, uint64_t now_ms);

/* Connections counted now; sources tracked; sources admitted untracked. */
uint32_t lb_limits_total(struct lb_limits *l);
uint32_t lb_limits_sources(struct lb_limits *l);
uint64_t lb_limits_overflow(struct lb_limits *l);

#endif
