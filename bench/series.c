/* Per-bucket counts of completed and failed units (see series.h): a flat
 * array of rows, one per bucket, indexed by time since the recording
 * started.
 */
#include "series.h"

#include <stdlib.h>
#include <string.h>

const char *const bn_series_kind_names[BN_SERIES_KINDS] = {
	"completed", "failed_before_reply", "failed_after_reply",
};

int bn_series_init(struct bn_series *s, uint64_t bucket_ns, uint64_t span_ns,
		   const char **error_r)
{
	memset(s, 0, sizeof(*s));
	if (bucket_ns == 0)
		return 0;
	uint64_t n = span_ns / bucket_ns + (span_ns % bucket_ns != 0 ? 1 : 0);
	if (n == 0)
		n = 1;
	if (n > BN_SERIES_MAX_BUCKETS) {
		*error_r = "time series: too many buckets (raise the bucket size)";
		return -1;
	}
	s->counts = calloc((size_t)n, sizeof(*s->counts));
	if (s->counts == NULL) {
		*error_r = "time series: out of memory";
		return -1;
	}
	s->bucket_ns = bucket_ns;
	s->nbuckets = (uint32_t)n;
	return 0;
}

void bn_series_add(struct bn_series *s, uint64_t start_ns, uint64_t t_ns,
		   enum bn_series_kind kind)
{
	if (s->bucket_ns == 0 || (unsigned int)kind >= BN_SERIES_KINDS)
		return;
	if (t_ns < start_ns) {
		s->outside++;
		return;
	}
	uint64_t i = (t_ns - start_ns) / s->bucket_ns;
	if (i >= s->nbuckets) {
		s->outside++;
		return;
	}
	s->counts[i][kind]++;
}

int bn_series_merge(struct bn_series *dst, const struct bn_series *src)
{
	if (src->bucket_ns == 0)
		return 0;
	if (dst->bucket_ns == 0) {
		const char *err;
		if (bn_series_init(dst, src->bucket_ns, (uint64_t)src->nbuckets * src->bucket_ns,
				   &err) < 0)
			return -1;
	}
	if (dst->bucket_ns != src->bucket_ns)
		return -1;
	if (src->nbuckets > dst->nbuckets) {
		void *p = realloc(dst->counts, (size_t)src->nbuckets * sizeof(*dst->counts));
		if (p == NULL)
			return -1;
		dst->counts = p;
		memset(dst->counts + dst->nbuckets, 0,
		       (size_t)(src->nbuckets - dst->nbuckets) * sizeof(*dst->counts));
		dst->nbuckets = src->nbuckets;
	}
	for (uint32_t i = 0; i < src->nbuckets; i++)
		for (unsigned int k = 0; k < BN_SERIES_KINDS; k++)
			dst->counts[i][k] += src->counts[i][k];
	dst->outside += src->outside;
	return 0;
}

uint32_t bn_series_used(const struct bn_series *s, uint64_t span_ns)
{
	if (s->bucket_ns == 0)
		return 0;
	uint64_t n = span_ns / s->bucket_ns + (span_ns % s->bucket_ns != 0 ? 1 : 0);
	return n < s->nbuckets ? (uint32_t)n : s->nbuckets;
}

void bn_series_free(struct bn_series *s)
{
	free(s->counts);
	memset(s, 0, sizeof(*s));
}
