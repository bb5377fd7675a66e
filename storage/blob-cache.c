/* The body cache of postern/store-blob-cache.h: a hash table of entries by
 * SHA-256 (chained, grown by doubling) and a doubly linked LRU list, under
 * one mutex. An entry counts one reference for being in the table and one
 * per hold; eviction unlinks it and drops the table's reference, the last
 * release frees it.
 */
#include "postern/store-blob-cache.h"

#include "postern/metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MIN_BUCKETS 64
/* A body above max_bytes / LARGE_DIV is not cached. */
#define LARGE_DIV 8

struct store_blob_cached {
	struct store_blob_cached *hnext;	/* bucket chain */
	struct store_blob_cached *prev, *next;	/* LRU: head is the newest */
	unsigned int refs;			/* table + holds */
	size_t len;
	uint8_t sha[PN_SHA256_LEN];
	uint8_t data[];
};

struct store_blob_cache {
	pthread_mutex_t mu;
	size_t max_bytes;
	struct store_blob_cached **buckets;
	size_t nbuckets;			/* a power of two */
	struct store_blob_cached *head, *tail;
	struct store_blob_cache_stats st;
	/* store_blob_cache_metrics(); NULL without */
	struct pn_metric_series *m_hit, *m_miss, *m_evict, *m_bytes, *m_entries;
};

/* Mirrors the byte and entry counts into the gauges (under the mutex). */
static void sync_gauges(struct store_blob_cache *c)
{
	if (c->m_bytes != NULL) {
		pn_gauge_set(c->m_bytes, (double)c->st.bytes);
		pn_gauge_set(c->m_entries, (double)c->st.entries);
	}
}

static size_t bucket_of(const struct store_blob_cache *c, const uint8_t *sha)
{
	uint64_t h;

	/* the key is a SHA-256: any 8 of its bytes are uniform */
	memcpy(&h, sha, sizeof(h));
	return (size_t)h & (c->nbuckets - 1);
}

struct store_blob_cache *store_blob_cache_new(size_t max_bytes)
{
	struct store_blob_cache *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->nbuckets = MIN_BUCKETS;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (c->buckets == NULL || pthread_mutex_init(&c->mu, NULL) != 0) {
		free(c->buckets);
		free(c);
		return NULL;
	}
	c->max_bytes = max_bytes;
	c->st.max_bytes = max_bytes;
	return c;
}

void store_blob_cache_free(struct store_blob_cache **cache)
{
	struct store_blob_cache *c = *cache;

	if (c == NULL)
		return;
	for (struct store_blob_cached *e = c->head, *n; e != NULL; e = n) {
		n = e->next;
		free(e);
	}
	free(c->buckets);
	pthread_mutex_destroy(&c->mu);
	free(c);
	*cache = NULL;
}

static struct store_blob_cached *find(struct store_blob_cache *c, const uint8_t *sha)
{
	for (struct store_blob_cached *e = c->buckets[bucket_of(c, sha)]; e != NULL; e = e->hnext)
		if (memcmp(e->sha, sha, PN_SHA256_LEN) == 0)
			return e;
	return NULL;
}

static void lru_unlink(struct store_blob_cache *c, struct store_blob_cached *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(struct store_blob_cache *c, struct store_blob_cached *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head != NULL)
		c->head->prev = e;
	c->head = e;
	if (c->tail == NULL)
		c->tail = e;
}

/* Takes e out of the table and the list; frees it unless it is held. */
static void evict(struct store_blob_cache *c, struct store_blob_cached *e)
{
	struct store_blob_cached **pp = &c->buckets[bucket_of(c, e->sha)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	e->hnext = NULL;
	lru_unlink(c, e);
	c->st.bytes -= e->len;
	c->st.entries--;
	if (--e->refs == 0)
		free(e);
}

/* Doubles the table when it holds more entries than buckets (best effort:
 * without memory the chains just get longer). */
static void grow(struct store_blob_cache *c)
{
	size_t n = c->nbuckets * 2;
	struct store_blob_cached **b;

	if (c->st.entries <= c->nbuckets)
		return;
	b = calloc(n, sizeof(*b));
	if (b == NULL)
		return;
	for (size_t i = 0; i < c->nbuckets; i++) {
		for (struct store_blob_cached *e = c->buckets[i], *next; e != NULL; e = next) {
			uint64_t h;

			next = e->hnext;
			memcpy(&h, e->sha, sizeof(h));
			e->hnext = b[(size_t)h & (n - 1)];
			b[(size_t)h & (n - 1)] = e;
		}
	}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = n;
}

struct store_blob_cached *store_blob_cache_get(struct store_blob_cache *c,
					       const uint8_t sha256[PN_SHA256_LEN])
{
	struct store_blob_cached *e;

	if (c == NULL)
		return NULL;
	pthread_mutex_lock(&c->mu);
	e = find(c, sha256);
	if (e != NULL) {
		e->refs++;
		if (c->head != e) {
			lru_unlink(c, e);
			lru_push(c, e);
		}
		c->st.hits++;
		if (c->m_hit != NULL)
			pn_counter_inc(c->m_hit);
	} else {
		c->st.misses++;
		if (c->m_miss != NULL)
			pn_counter_inc(c->m_miss);
	}
	pthread_mutex_unlock(&c->mu);
	return e;
}

struct store_blob_cached *store_blob_cache_put(struct store_blob_cache *c,
					       const uint8_t sha256[PN_SHA256_LEN],
					       const void *data, size_t len)
{
	struct store_blob_cached *e, *old;

	if (c == NULL)
		return NULL;
	if (c->max_bytes == 0 || len > c->max_bytes / LARGE_DIV ||
	    (e = malloc(sizeof(*e) + len)) == NULL) {
		pthread_mutex_lock(&c->mu);
		c->st.refused++;
		pthread_mutex_unlock(&c->mu);
		return NULL;
	}
	memset(e, 0, sizeof(*e));
	memcpy(e->sha, sha256, PN_SHA256_LEN);
	e->len = len;
	if (len > 0)
		memcpy(e->data, data, len);
	e->refs = 2;	/* the table and the caller's hold */

	pthread_mutex_lock(&c->mu);
	old = find(c, sha256);
	if (old != NULL) {
		/* another thread put the same body first: same bytes */
		old->refs++;
		if (c->head != old) {
			lru_unlink(c, old);
			lru_push(c, old);
		}
		pthread_mutex_unlock(&c->mu);
		free(e);
		return old;
	}
	while (c->tail != NULL && c->st.bytes + len > c->max_bytes) {
		evict(c, c->tail);
		c->st.evictions++;
		if (c->m_evict != NULL)
			pn_counter_inc(c->m_evict);
	}
	e->hnext = c->buckets[bucket_of(c, sha256)];
	c->buckets[bucket_of(c, sha256)] = e;
	lru_push(c, e);
	c->st.bytes += len;
	c->st.entries++;
	c->st.inserts++;
	sync_gauges(c);
	grow(c);
	pthread_mutex_unlock(&c->mu);
	return e;
}

const uint8_t *store_blob_cached_data(const struct store_blob_cached *e, size_t *len_r)
{
	*len_r = e->len;
	return e->data;
}

void store_blob_cache_release(struct store_blob_cache *c, struct store_blob_cached **e)
{
	struct store_blob_cached *x = *e;
	bool last;

	if (x == NULL)
		return;
	*e = NULL;
	pthread_mutex_lock(&c->mu);
	last = --x->refs == 0;
	pthread_mutex_unlock(&c->mu);
	if (last)
		free(x);	/* evicted while held: nobody else can reach it */
}

void store_blob_cache_get_stats(struct store_blob_cache *c, struct store_blob_cache_stats *stats_r)
{
	memset(stats_r, 0, sizeof(*stats_r));
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	*stats_r = c->st;
	pthread_mutex_unlock(&c->mu);
}

int store_blob_cache_metrics(struct store_blob_cache *c, struct pn_metrics *reg,
			     const char **error_r)
{
	static const char *const l_result[] = { "result", NULL };
	struct pn_metric *req, *ev, *bytes, *entries, *max;

	req = pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "blob_cache_requests_total",
			.help = "Message bodies looked up in the in-memory body cache, by result.",
			.labels = l_result }, error_r);
	ev = req == NULL ? NULL : pn_metrics_add(reg, PN_METRIC_COUNTER,
		&(struct pn_metric_opts){ .name = "blob_cache_evictions_total",
			.help = "Bodies evicted from the body cache to make room." }, error_r);
	bytes = ev == NULL ? NULL : pn_metrics_add(reg, PN_METRIC_GAUGE,
		&(struct pn_metric_opts){ .name = "blob_cache_bytes",
			.help = "Bytes of bodies in the body cache." }, error_r);
	entries = bytes == NULL ? NULL : pn_metrics_add(reg, PN_METRIC_GAUGE,
		&(struct pn_metric_opts){ .name = "blob_cache_entries",
			.help = "Bodies in the body cache." }, error_r);
	max = entries == NULL ? NULL : pn_metrics_add(reg, PN_METRIC_GAUGE,
		&(struct pn_metric_opts){ .name = "blob_cache_max_bytes",
			.help = "The body cache's limit in bytes (0: off)." }, error_r);
	if (max == NULL)
		return -1;
	pthread_mutex_lock(&c->mu);
	c->m_hit = pn_metric_series(req, PN_LABELS("hit"));
	c->m_miss = pn_metric_series(req, PN_LABELS("miss"));
	c->m_evict = pn_metric_series(ev, NULL);
	c->m_bytes = pn_metric_series(bytes, NULL);
	c->m_entries = pn_metric_series(entries, NULL);
	pn_gauge_set(pn_metric_series(max, NULL), (double)c->max_bytes);
	sync_gauges(c);
	pthread_mutex_unlock(&c->mu);
	return 0;
}
