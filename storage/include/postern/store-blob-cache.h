/* A bounded in-memory cache of message bodies by SHA-256, shared by every
 * thread of a process (e.g. one per frontend), so that a FETCH of a body
 * read a moment ago does not read, decompress and transfer it from
 * PostgreSQL again.
 *
 * Why it is safe: a body is immutable and content-addressed (store-blob.h:
 * the key IS the SHA-256 of the bytes), so a cached entry can never be
 * stale; a body whose last reference is dropped may stay cached until it
 * is evicted, which is harmless because only a message row naming that
 * SHA-256 leads a reader to it (no session can ask for a body it does not
 * hold a message of). The cache trusts the caller that the bytes match the
 * key (they come from the row of that key); it does not hash them again.
 *
 * Size: at most max_bytes of bodies (plus a small header per entry); the
 * least recently used entries are evicted to make room. A body larger than
 * max_bytes / 8 is never cached (one big message must not flush the rest).
 * max_bytes 0 turns the cache off (every get misses, every put is refused).
 *
 * Holds: get and put return a hold on the entry (or NULL); its bytes stay
 * valid until store_blob_cache_release(), even if the entry is evicted
 * meanwhile (it is freed at the last release). Every hold must be released
 * before store_blob_cache_free().
 *
 * Threads: every function may be called from any thread (one mutex; the
 * bytes are copied in put outside of it).
 */
#ifndef POSTERN_STORE_BLOB_CACHE_H
#define POSTERN_STORE_BLOB_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "postern/hash.h"

struct pn_metrics;
struct store_blob_cache;
struct store_blob_cached;

/* Returns NULL when out of memory. */
struct store_blob_cache *store_blob_cache_new(size_t max_bytes);
/* Frees the cache and sets *cache NULL (no hold may be left). */
void store_blob_cache_free(struct store_blob_cache **cache);

/* The cached body of sha256 with a hold on it, or NULL (a miss). */
struct store_blob_cached *store_blob_cache_get(struct store_blob_cache *cache,
					       const uint8_t sha256[PN_SHA256_LEN]);
/* Copies len bytes in as the body of sha256 (an entry already there is
 * kept: same key, same bytes) and returns a hold on the entry; NULL when
 * the body is not cached (cache off, too large, out of memory). */
struct store_blob_cached *store_blob_cache_put(struct store_blob_cache *cache,
					       const uint8_t sha256[PN_SHA256_LEN],
					       const void *data, size_t len);
/* The bytes of a held entry. */
const uint8_t *store_blob_cached_data(const struct store_blob_cached *e, size_t *len_r);
/* Drops a hold and sets *e NULL (NULL is allowed). */
void store_blob_cache_release(struct store_blob_cache *cache, struct store_blob_cached **e);

struct store_blob_cache_stats {
	uint64_t hits, misses;		/* gets */
	uint64_t inserts;		/* puts that added an entry */
	uint64_t evictions;		/* entries pushed out for room */
	uint64_t refused;		/* puts not cached (too large, off, memory) */
	uint64_t bytes, entries;	/* now (bodies only) */
	uint64_t max_bytes;
};
void store_blob_cache_get_stats(struct store_blob_cache *cache,
				struct store_blob_cache_stats *stats_r);

/* Registers and from now on updates the cache's metric families in reg
 * (names get the registry's prefix):
 *   blob_cache_requests_total{result="hit"|"miss"}  counter (gets)
 *   blob_cache_evictions_total                      counter
 *   blob_cache_bytes, blob_cache_entries             gauges
 *   blob_cache_max_bytes                             gauge (the limit)
 * reg must outlive the cache. Returns 0, or -1 with *error_r. */
int store_blob_cache_metrics(struct store_blob_cache *cache, struct pn_metrics *reg,
			     const char **error_r);

#endif
