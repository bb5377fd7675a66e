/* Latency histogram of the load generator: log-linear buckets over
 * nanoseconds, HdrHistogram style.
 *
 * Values below 128 ns have a bucket each; above, every power of two is cut
 * into 128 equal buckets, so a reported percentile is within 1/128 (0.8 %)
 * of the recorded value. Values are clamped to BN_HIST_MAX_NS (about 18
 * minutes). A histogram is a plain fixed-size struct (no allocation), so a
 * thread records into its own and the main thread merges them afterwards.
 */
#ifndef POSTERN_BENCH_HIST_H
#define POSTERN_BENCH_HIST_H

#include <stdint.h>

#define BN_HIST_SUB_BITS 7
#define BN_HIST_SUB (1u << BN_HIST_SUB_BITS)
#define BN_HIST_MAX_SHIFT 33
#define BN_HIST_MAX_NS ((UINT64_C(1) << (BN_HIST_MAX_SHIFT + BN_HIST_SUB_BITS + 1)) - 1)
#define BN_HIST_BUCKETS (BN_HIST_SUB * (BN_HIST_MAX_SHIFT + 2))

struct bn_hist {
	uint64_t total;
	uint64_t min, max;	/* exact, ns; min is UINT64_MAX while empty */
	double sum;		/* for the mean */
	uint64_t counts[BN_HIST_BUCKETS];
};

void bn_hist_init(struct bn_hist *h);
/* Records one value in ns (clamped to BN_HIST_MAX_NS). */
void bn_hist_record(struct bn_hist *h, uint64_t ns);
/* Adds src's values to dst. */
void bn_hist_merge(struct bn_hist *dst, const struct bn_hist *src);
/* The value at quantile q (0 < q <= 1): the bucket holding the value of rank
 * ceil(q * total), reported as the bucket's midpoint clamped to [min, max];
 * q >= 1 returns the exact max. 0 for an empty histogram. */
uint64_t bn_hist_quantile(const struct bn_hist *h, double q);
/* Mean in ns, 0 when empty. */
double bn_hist_mean(const struct bn_hist *h);

/* Bucket arithmetic, exposed for tests. */
unsigned int bn_hist_index(uint64_t ns);
/* Lowest and highest value that map to bucket idx. */
uint64_t bn_hist_bucket_low(unsigned int idx);
uint64_t bn_hist_bucket_high(unsigned int idx);

#endif
