/* The load generator's latency histogram: log-linear buckets (128 per power
 * of two) over nanoseconds, recording, merging and quantiles. See hist.h.
 */
#include "hist.h"

#include <string.h>

void bn_hist_init(struct bn_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned int bn_hist_index(uint64_t ns)
{
	if (ns > BN_HIST_MAX_NS)
		ns = BN_HIST_MAX_NS;
	if (ns < BN_HIST_SUB)
		return (unsigned int)ns;
	/* msb >= 7; shift so that ns >> shift is in [128, 255] */
	unsigned int msb = 63u - (unsigned int)__builtin_clzll(ns);
	unsigned int shift = msb - BN_HIST_SUB_BITS;
	return BN_HIST_SUB * shift + (unsigned int)(ns >> shift);
}

uint64_t bn_hist_bucket_low(unsigned int idx)
{
	if (idx < 2 * BN_HIST_SUB)
		return idx;
	unsigned int shift = idx / BN_HIST_SUB - 1;
	uint64_t top = idx - BN_HIST_SUB * shift; /* in [128, 255] */
	return top << shift;
}

uint64_t bn_hist_bucket_high(unsigned int idx)
{
	if (idx < 2 * BN_HIST_SUB)
		return idx;
	unsigned int shift = idx / BN_HIST_SUB - 1;
	return bn_hist_bucket_low(idx) + (UINT64_C(1) << shift) - 1;
}

void bn_hist_record(struct bn_hist *h, uint64_t ns)
{
	if (ns > BN_HIST_MAX_NS)
		ns = BN_HIST_MAX_NS;
	h->counts[bn_hist_index(ns)]++;
	h->total++;
	h->sum += (double)ns;
	if (ns < h->min)
		h->min = ns;
	if (ns > h->max)
		h->max = ns;
}

void bn_hist_merge(struct bn_hist *dst, const struct bn_hist *src)
{
	if (src->total == 0)
		return;
	for (unsigned int i = 0; i < BN_HIST_BUCKETS; i++)
		dst->counts[i] += src->counts[i];
	dst->total += src->total;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t bn_hist_quantile(const struct bn_hist *h, double q)
{
	if (h->total == 0)
		return 0;
	if (q >= 1.0)
		return h->max;
	if (q <= 0.0)
		return h->min;
	double r = q * (double)h->total;
	uint64_t rank = (uint64_t)r;
	if ((double)rank < r)
		rank++;
	if (rank == 0)
		rank = 1;
	uint64_t cum = 0;
	for (unsigned int i = 0; i < BN_HIST_BUCKETS; i++) {
		cum += h->counts[i];
		if (cum >= rank) {
			uint64_t lo = bn_hist_bucket_low(i), hi = bn_hist_bucket_high(i);
			uint64_t v = lo + (hi - lo) / 2;
			if (v < h->min)
				v = h->min;
			if (v > h->max)
				v = h->max;
			return v;
		}
	}
	return h->max;
}

double bn_hist_mean(const struct bn_hist *h)
{
	return h->total == 0 ? 0.0 : h->sum / (double)h->total;
}
