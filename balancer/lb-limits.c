/* Connection limits: a global counter and a chained hash table of source
 * addresses (IPv4-mapped IPv6 folded to IPv4) with an open-connection count
 * and a token bucket each, under one mutex. Entries come from a fixed
 * array with a free list, so the memory is set at start. See lb-limits.h.
 */
#include "lb-limits.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "postern/hash.h"

#define DEFAULT_MAX_SOURCES 65536
#define NIL UINT32_MAX

struct entry {
	uint8_t addr[16];	/* IPv6, or IPv4-mapped */
	uint32_t next;		/* chain, or the free list */
	uint32_t conns;
	uint64_t tokens_milli;	/* 1000 per connection */
	uint64_t last_ms;
};

struct lb_limits {
	pthread_mutex_t lock;
	struct lb_limits_settings set;
	uint32_t total;
	uint32_t nsources;
	uint64_t overflow;
	uint64_t seed;
	uint32_t nbuckets;	/* power of two */
	uint32_t *buckets;
	struct entry *entries;
	uint32_t free_head;
};

const char *lb_limit_reason(enum lb_limit_verdict v)
{
	switch (v) {
	case LB_LIMIT_OK:
		return "ok";
	case LB_LIMIT_TOTAL:
		return "total";
	case LB_LIMIT_SOURCE:
		return "source";
	case LB_LIMIT_RATE:
		return "rate";
	}
	return "?";
}

struct lb_limits *lb_limits_new(const struct lb_limits_settings *set, const char **error_r)
{
	struct lb_limits *l = calloc(1, sizeof(*l));
	uint32_t max;

	if (l == NULL) {
		*error_r = "limits: out of memory";
		return NULL;
	}
	l->set = *set;
	max = set->max_sources != 0 ? set->max_sources : DEFAULT_MAX_SOURCES;
	l->set.max_sources = max;
	l->nbuckets = 1;
	while (l->nbuckets < max)
		l->nbuckets <<= 1;
	l->buckets = malloc(l->nbuckets * sizeof(*l->buckets));
	l->entries = calloc(max, sizeof(*l->entries));
	if (l->buckets == NULL || l->entries == NULL) {
		free(l->buckets);
		free(l->entries);
		free(l);
		*error_r = "limits: out of memory";
		return NULL;
	}
	for (uint32_t i = 0; i < l->nbuckets; i++)
		l->buckets[i] = NIL;
	for (uint32_t i = 0; i < max; i++)
		l->entries[i].next = i + 1 < max ? i + 1 : NIL;
	l->free_head = 0;
	/* A secret seed: a peer cannot aim its addresses at one chain. */
	if (getrandom(&l->seed, sizeof(l->seed), GRND_NONBLOCK) != sizeof(l->seed))
		l->seed = (uint64_t)(uintptr_t)l ^ 0x9e3779b97f4a7c15ull;
	pthread_mutex_init(&l->lock, NULL);
	return l;
}

void lb_limits_free(struct lb_limits **lp)
{
	struct lb_limits *l = *lp;

	if (l == NULL)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l->buckets);
	free(l->entries);
	free(l);
	*lp = NULL;
}

void lb_limits_update(struct lb_limits *l, const struct lb_limits_settings *set)
{
	pthread_mutex_lock(&l->lock);
	l->set.max_total = set->max_total;
	l->set.per_source = set->per_source;
	l->set.rate_per_source = set->rate_per_source;
	pthread_mutex_unlock(&l->lock);
}

/* The 16-byte key of an address; false for families without one. */
static bool addr_key(const struct sockaddr *sa, uint8_t key[16])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (sa->sa_family == AF_INET) {
		memcpy(key, mapped, 12);
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		return true;
	}
	return false;
}

static uint32_t *chain_of(struct lb_limits *l, const uint8_t key[16])
{
	return &l->buckets[pn_hash64(key, 16, l->seed) & (l->nbuckets - 1)];
}

/* Finds the entry for key; with create, makes one. NULL if absent/full. */
static struct entry *lookup(struct lb_limits *l, const uint8_t key[16], bool create,
			    uint64_t now_ms)
{
	uint32_t *head = chain_of(l, key);
	struct entry *e;
	uint32_t i;

	for (i = *head; i != NIL; i = l->entries[i].next)
		if (memcmp(l->entries[i].addr, key, 16) == 0)
			return &l->entries[i];
	if (!create || l->free_head == NIL)
		return NULL;
	i = l->free_head;
	e = &l->entries[i];
	l->free_head = e->next;
	memcpy(e->addr, key, 16);
	e->conns = 0;
	e->tokens_milli = (uint64_t)l->set.rate_per_source * 1000;
	e->last_ms = now_ms;
	e->next = *head;
	*head = i;
	l->nsources++;
	return e;
}

static void refill(const struct lb_limits *l, struct entry *e, uint64_t now_ms)
{
	uint64_t cap = (uint64_t)l->set.rate_per_source * 1000;

	if (now_ms > e->last_ms) {
		/* rate per second = rate milli-tokens per millisecond */
		uint64_t add = (now_ms - e->last_ms) * l->set.rate_per_source;

		e->tokens_milli = e->tokens_milli + add > cap ? cap : e->tokens_milli + add;
		e->last_ms = now_ms;
	}
	if (e->tokens_milli > cap)
		e->tokens_milli = cap;
}

enum lb_limit_verdict lb_limits_admit(struct lb_limits *l, const struct sockaddr *src,
				      uint64_t now_ms, bool *tracked_r)
{
	enum lb_limit_verdict v = LB_LIMIT_OK;
	uint8_t key[16];
	struct entry *e = NULL;

	*tracked_r = false;
	pthread_mutex_lock(&l->lock);
	if (l->set.max_total != 0 && l->total >= l->set.max_total) {
		v = LB_LIMIT_TOTAL;
		goto out;
	}
	if ((l->set.per_source != 0 || l->set.rate_per_source != 0) && addr_key(src, key)) {
		e = lookup(l, key, true, now_ms);
		if (e == NULL) {
			l->overflow++;
		} else {
			if (l->set.per_source != 0 && e->conns >= l->set.per_source) {
				v = LB_LIMIT_SOURCE;
				goto out;
			}
			if (l->set.rate_per_source != 0) {
				refill(l, e, now_ms);
				if (e->tokens_milli < 1000) {
					v = LB_LIMIT_RATE;
					goto out;
				}
				e->tokens_milli -= 1000;
			}
			e->conns++;
			*tracked_r = true;
		}
	}
	l->total++;
out:
	pthread_mutex_unlock(&l->lock);
	return v;
}

void lb_limits_release(struct lb_limits *l, const struct sockaddr *src, bool tracked)
{
	uint8_t key[16];

	pthread_mutex_lock(&l->lock);
	if (l->total > 0)
		l->total--;
	if (tracked && addr_key(src, key)) {
		struct entry *e = lookup(l, key, false, 0);

		if (e != NULL && e->conns > 0)
			e->conns--;
	}
	pthread_mutex_unlock(&l->lock);
}

void lb_limits_sweep(struct lb_limits *l, uint64_t now_ms)
{
	pthread_mutex_lock(&l->lock);
	for (uint32_t b = 0; b < l->nbuckets && l->nsources > 0; b++) {
		uint32_t *link = &l->buckets[b];

		while (*link != NIL) {
			uint32_t i = *link;
			struct entry *e = &l->entries[i];

			refill(l, e, now_ms);
			if (e->conns == 0 &&
			    e->tokens_milli >= (uint64_t)l->set.rate_per_source * 1000) {
				*link = e->next;
				e->next = l->free_head;
				l->free_head = i;
				l->nsources--;
			} else {
				link = &e->next;
			}
		}
	}
	pthread_mutex_unlock(&l->lock);
}

uint32_t lb_limits_total(struct lb_limits *l)
{
	uint32_t v;

	pthread_mutex_lock(&l->lock);
	v = l->total;
	pthread_mutex_unlock(&l->lock);
	return v;
}

uint32_t lb_limits_sources(struct lb_limits *l)
{
	uint32_t v;

	pthread_mutex_lock(&l->lock);
	v = l->nsources;
	pthread_mutex_unlock(&l->lock);
	return v;
}

uint64_t lb_limits_overflow(struct lb_limits *l)
{
	uint64_t v;

	pthread_mutex_lock(&l->lock);
	v = l->overflow;
	pthread_mutex_unlock(&l->lock);
	return v;
}
