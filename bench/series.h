/* Throughput time series of the load generator: counts of completed and
 * failed units per fixed time bucket (e.g. 10 ms) from the start of the
 * recorded interval, so that a short dip (a backend killed under load)
 * shows up. Failures are split by whether the session had read its first
 * reply (the greeting): a failure before it is a new connection that did
 * not get through, one after it a session that was in flight.
 *
 * Like the latency histogram, each thread records into its own series and
 * the main thread merges them at the end; nothing here is thread-safe.
 */
#ifndef POSTERN_BENCH_SERIES_H
#define POSTERN_BENCH_SERIES_H

#include <stdint.h>

enum bn_series_kind {
	BN_SERIES_DONE,		/* a unit completed */
	BN_SERIES_FAIL_EARLY,	/* a session failed before its first reply */
	BN_SERIES_FAIL_LATE,	/* a session failed after its first reply */
	BN_SERIES_KINDS
};
extern const char *const bn_series_kind_names[BN_SERIES_KINDS];

#define BN_SERIES_MAX_BUCKETS 1000000u

struct bn_series {
	uint64_t bucket_ns;	/* 0: off (every call is a no-op) */
	uint32_t nbuckets;
	uint32_t (*counts)[BN_SERIES_KINDS];	/* nbuckets rows */
	uint64_t outside;	/* events before the start or past the last bucket */
};

/* Sets s up for buckets of bucket_ns covering span_ns (rounded up; at most
 * BN_SERIES_MAX_BUCKETS). bucket_ns 0 leaves it off. Returns 0, or -1 with
 * *error_r (bad size, out of memory). */
int bn_series_init(struct bn_series *s, uint64_t bucket_ns, uint64_t span_ns,
		   const char **error_r);
/* Counts one event of kind at time t_ns against start_ns (the same clock):
 * bucket (t_ns - start_ns) / bucket_ns; events outside count in outside. */
void bn_series_add(struct bn_series *s, uint64_t start_ns, uint64_t t_ns,
		   enum bn_series_kind kind);
/* Adds src's counts into dst (the same bucket size; dst grows if src is
 * longer). Returns 0, or -1 (sizes differ, out of memory). */
int bn_series_merge(struct bn_series *dst, const struct bn_series *src);
/* Buckets that cover span_ns (what a report prints), at most nbuckets. */
uint32_t bn_series_used(const struct bn_series *s, uint64_t span_ns);
void bn_series_free(struct bn_series *s);

#endif
