/* Tests of the body cache (postern/store-blob-cache.h): miss then hit with
 * the same bytes, LRU eviction order under the byte limit, the large-body
 * and off (0 bytes) refusals, a hold that outlives the eviction of its
 * entry, a second put of a key, table growth, the statistics, the metric
 * families, and two
 * threads putting, getting and releasing overlapping keys at once.
 */
#include "postern/store-blob-cache.h"
#include "postern/buf.h"
#include "postern/metrics.h"
#include "postern/testing.h"

#include <pthread.h>
#include <stdbool.h>

/* A key and a body derived from n, so that any entry can be checked. */
static void key_of(unsigned int n, uint8_t sha[PN_SHA256_LEN])
{
	for (size_t i = 0; i < PN_SHA256_LEN; i++)
		sha[i] = (uint8_t)((n * 2654435761u) >> ((i % 4) * 8)) ^ (uint8_t)i;
	memcpy(sha + PN_SHA256_LEN - sizeof(n), &n, sizeof(n));
}

static void body_of(unsigned int n, uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(n + i * 7);
}

static bool holds_body(const struct store_blob_cached *e, unsigned int n, size_t len)
{
	uint8_t want[256];
	size_t got_len;
	const uint8_t *got = store_blob_cached_data(e, &got_len);

	body_of(n, want, len);
	return got_len == len && memcmp(got, want, len) == 0;
}

/* Puts body n of len bytes and drops the hold; returns whether cached. */
static bool put(struct store_blob_cache *c, unsigned int n, size_t len)
{
	uint8_t sha[PN_SHA256_LEN], buf[256];
	struct store_blob_cached *e;

	key_of(n, sha);
	body_of(n, buf, len);
	e = store_blob_cache_put(c, sha, buf, len);
	if (e == NULL)
		return false;
	store_blob_cache_release(c, &e);
	CHECK(e == NULL);
	return true;
}

static bool has(struct store_blob_cache *c, unsigned int n, size_t len)
{
	uint8_t sha[PN_SHA256_LEN];
	struct store_blob_cached *e;
	bool ok;

	key_of(n, sha);
	e = store_blob_cache_get(c, sha);
	if (e == NULL)
		return false;
	ok = holds_body(e, n, len);
	CHECK(ok);
	store_blob_cache_release(c, &e);
	return ok;
}

PN_TEST(test_miss_then_hit)
{
	struct store_blob_cache *c = store_blob_cache_new(8000);
	struct store_blob_cache_stats st;

	CHECK(c != NULL);
	CHECK(!has(c, 1, 100));
	CHECK(put(c, 1, 100));
	CHECK(has(c, 1, 100));
	CHECK(has(c, 1, 100));
	CHECK(!has(c, 2, 100));
	store_blob_cache_get_stats(c, &st);
	CHECK_INT(st.hits, 2);
	CHECK_INT(st.misses, 2);
	CHECK_INT(st.inserts, 1);
	CHECK_INT(st.entries, 1);
	CHECK_INT(st.bytes, 100);
	CHECK_INT(st.max_bytes, 8000);
	store_blob_cache_free(&c);
	CHECK(c == NULL);
}

PN_TEST(test_lru_eviction)
{
	/* room for exactly 8 bodies of 100 bytes (the largest cached) */
	struct store_blob_cache *c = store_blob_cache_new(800);
	struct store_blob_cache_stats st;

	for (unsigned int n = 0; n < 8; n++)
		CHECK(put(c, n, 100));
	store_blob_cache_get_stats(c, &st);
	CHECK_INT(st.bytes, 800);
	CHECK_INT(st.evictions, 0);
	CHECK(has(c, 0, 100));		/* 0 becomes the newest; 1 the oldest */
	CHECK(put(c, 8, 100));		/* evicts 1 */
	CHECK(!has(c, 1, 100));
	CHECK(has(c, 0, 100));
	CHECK(has(c, 2, 100));
	CHECK(has(c, 8, 100));
	CHECK(put(c, 9, 100));		/* evicts 3 (2, 0 and 8 were used since) */
	CHECK(!has(c, 3, 100));
	CHECK(has(c, 4, 100));
	store_blob_cache_get_stats(c, &st);
	CHECK_INT(st.evictions, 2);
	CHECK_INT(st.entries, 8);
	CHECK(st.bytes <= 800);
	/* a smaller body makes room for itself only */
	CHECK(put(c, 10, 50));
	store_blob_cache_get_stats(c, &st);
	CHECK_INT(st.entries, 8);
	CHECK_INT(st.bytes, 750);
	store_blob_cache_free(&c);
}

PN_TEST(test_refusals)
{
	struct store_blob_cache *c = store_blob_cache_new(800);
	struct store_blob_cache *off = store_blob_cache_new(0);
	struct store_blob_cache_stats st;

	CHECK(!put(c, 1, 101));		/* over max_bytes / 8 */
	CHECK(!has(c, 1, 101));
	CHECK(put(c, 2, 0));		/* the empty body is a body */
	CHECK(has(c, 2, 0));
	store_blob_cache_get_stats(c, &st);
	CHECK_INT(st.refused, 1);
	CHECK_INT(st.entries, 1);
	CHECK(!put(off, 1, 10));
	CHECK(!has(off, 1, 10));
	store_blob_cache_get_stats(off, &st);
	CHECK_INT(st.refused, 1);
	CHECK_INT(st.misses, 1);
	/* a NULL cache is a cache that is off */
	CHECK(store_blob_cache_get(NULL, (const uint8_t *)"0123456789abcdef0123456789abcdef") == NULL);
	store_blob_cache_free(&c);
	store_blob_cache_free(&off);
}

PN_TEST(test_hold_outlives_eviction)
{
	struct store_blob_cache *c = store_blob_cache_new(800);
	uint8_t sha[PN_SHA256_LEN], buf[100];
	struct store_blob_cached *held;

	key_of(1, sha);
	body_of(1, buf, sizeof(buf));
	held = store_blob_cache_put(c, sha, buf, sizeof(buf));
	CHECK(held != NULL);
	for (unsigned int n = 2; n < 20; n++)	/* pushes 1 out */
		CHECK(put(c, n, 100));
	CHECK(!has(c, 1, 100));
	CHECK(holds_body(held, 1, 100));	/* still readable (ASan checks) */
	store_blob_cache_release(c, &held);
	CHECK(held == NULL);
	store_blob_cache_release(c, &held);	/* NULL is fine */
	store_blob_cache_free(&c);
}

PN_TEST(test_second_put_keeps_entry)
{
	struct store_blob_cache *c = store_blob_cache_new(8000);
	uint8_t sha[PN_SHA256_LEN], buf[100];
	struct store_blob_cached *a, *b;
	struct store_blob_cache_stats st;

	key_of(5, sha);
	body_of(5, buf, sizeof(buf));
	a = store_blob_cache_put(c, sha, buf, sizeof(buf));
	b = store_blob_cache_put(c, sha, buf, sizeof(buf));
	CHECK(a != NULL && a == b);
	store_blob_cache_get_stats(c, &st);
	CHECK_INT(st.entries, 1);
	CHECK_INT(st.inserts, 1);
	CHECK_INT(st.bytes, 100);
	store_blob_cache_release(c, &a);
	CHECK(holds_body(b, 5, 100));
	store_blob_cache_release(c, &b);
	CHECK(has(c, 5, 100));
	store_blob_cache_free(&c);
}

PN_TEST(test_growth)
{
	/* far more entries than the initial buckets, all found again */
	struct store_blob_cache *c = store_blob_cache_new(1u << 20);
	struct store_blob_cache_stats st;
	bool all = true;

	for (unsigned int n = 0; n < 2000; n++)
		CHECK(put(c, n, 16));
	for (unsigned int n = 0; n < 2000; n++)
		all = all && has(c, n, 16);
	CHECK(all);
	store_blob_cache_get_stats(c, &st);
	CHECK_INT(st.entries, 2000);
	CHECK_INT(st.bytes, 2000 * 16);
	CHECK_INT(st.evictions, 0);
	store_blob_cache_free(&c);
}

PN_TEST(test_metrics)
{
	struct store_blob_cache *c = store_blob_cache_new(800);
	struct pn_metrics *reg = pn_metrics_new();
	const char *error = NULL;
	struct pn_buf out;
	char *text;

	CHECK(c != NULL && reg != NULL);
	CHECK_INT(store_blob_cache_metrics(c, reg, &error), 0);
	CHECK(!has(c, 1, 100));
	for (unsigned int n = 1; n <= 9; n++)	/* the ninth evicts the first */
		CHECK(put(c, n, 100));
	CHECK(has(c, 9, 100));
	CHECK(has(c, 8, 100));
	pn_buf_init(&out, 1 << 20);
	CHECK_INT(pn_metrics_render(reg, &out), 0);
	text = strndup((const char *)pn_buf_rptr(&out), pn_buf_len(&out));
	CHECK(text != NULL);
	if (text != NULL) {
		CHECK(strstr(text, "postern_blob_cache_requests_total{result=\"hit\"} 2\n") != NULL);
		CHECK(strstr(text, "postern_blob_cache_requests_total{result=\"miss\"} 1\n") != NULL);
		CHECK(strstr(text, "postern_blob_cache_evictions_total 1\n") != NULL);
		CHECK(strstr(text, "postern_blob_cache_bytes 800\n") != NULL);
		CHECK(strstr(text, "postern_blob_cache_entries 8\n") != NULL);
		CHECK(strstr(text, "postern_blob_cache_max_bytes 800\n") != NULL);
	}
	free(text);
	pn_buf_free(&out);
	store_blob_cache_free(&c);
	pn_metrics_free(&reg);
}

struct worker {
	struct store_blob_cache *c;
	unsigned int seed;
	unsigned int bad;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;

	for (unsigned int i = 0; i < 20000; i++) {
		unsigned int n = (i * 31 + w->seed) % 64;
		uint8_t sha[PN_SHA256_LEN], buf[200];
		struct store_blob_cached *e;

		key_of(n, sha);
		e = store_blob_cache_get(w->c, sha);
		if (e == NULL) {
			body_of(n, buf, 200);
			e = store_blob_cache_put(w->c, sha, buf, 200);
		}
		if (e == NULL || !holds_body(e, n, 200))
			w->bad++;
		store_blob_cache_release(w->c, &e);
	}
	return NULL;
}

PN_TEST(test_threads)
{
	/* room for 16 of the 64 keys: constant eviction under both threads */
	struct store_blob_cache *c = store_blob_cache_new(16 * 200);
	struct worker w[2] = { { .c = c, .seed = 1 }, { .c = c, .seed = 17 } };
	pthread_t t[2];
	struct store_blob_cache_stats st;

	for (int i = 0; i < 2; i++)
		CHECK(pthread_create(&t[i], NULL, worker_run, &w[i]) == 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK_INT(w[0].bad, 0);
	CHECK_INT(w[1].bad, 0);
	store_blob_cache_get_stats(c, &st);
	CHECK(st.bytes <= 16 * 200);
	CHECK_INT(st.hits + st.misses, 40000);
	CHECK(st.evictions > 0);
	store_blob_cache_free(&c);
}

PN_TEST_MAIN("test-blob-cache", PN_TEST_CASE(test_miss_then_hit), PN_TEST_CASE(test_lru_eviction),
	     PN_TEST_CASE(test_refusals), PN_TEST_CASE(test_hold_outlives_eviction),
	     PN_TEST_CASE(test_second_put_keeps_entry), PN_TEST_CASE(test_growth),
	     PN_TEST_CASE(test_metrics), PN_TEST_CASE(test_threads))
