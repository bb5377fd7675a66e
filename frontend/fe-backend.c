/* Storage clients of a frontend thread (PostgreSQL pool, Redis client) and
 * the readiness checks derived from them; see fe-backend.h.
 */
#include "fe-backend.h"

#include "postern/log.h"
#include "postern/store-metrics.h"

#include "fe-node.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each thread publishes whether its own pool has a live connection, so
 * that /readyz (on thread 0) can require every thread's pool to be up
 * without touching another thread's pool. */
#define FE_READY_REFRESH_MS 100

static void publish_ready(struct fe_backend *b)
{
	atomic_store(&b->thread->pg_ready, b->pg != NULL && store_pgpool_ready(b->pg));
}

static void ready_tick(void *ctx)
{
	struct fe_backend *b = ctx;

	publish_ready(b);
	pn_io_timer_set(b->thread->loop, b->ready_timer, FE_READY_REFRESH_MS);
}

static const struct pn_io_handlers ready_timer_handlers = { .on_timer = ready_tick };

unsigned int fe_backend_auto_connections(unsigned int threads)
{
	unsigned int per = threads <= 4 ? 4 : 16 / threads;

	return per < 2 ? 2 : per;
}

int fe_backend_new(struct fe_thread *th, const struct fe_config *cfg,
		   struct fe_backend **backend_r, const char **error_r)
{
	struct fe_backend *b = calloc(1, sizeof(*b));

	if (b == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	b->thread = th;
	if (cfg->pg_dsn != NULL && cfg->pg_dsn[0] != '\0') {
		unsigned int conns = (unsigned int)cfg->pg_connections;

		if (conns == 0)
			conns = fe_backend_auto_connections(th->node->nthreads);
		struct store_pgpool_settings ps = {
			.dsn = cfg->pg_dsn,
			.min_conns = 1,
			.max_conns = conns,
			.priority_conns = (unsigned int)cfg->pg_lookup_connections,
			.query_timeout_ms = (unsigned int)cfg->pg_timeout_ms,
			.connect_timeout_ms = (unsigned int)cfg->pg_timeout_ms,
			.observe = store_metrics_pg_observe,
			.observe_ctx = th->node->metrics.store,
		};
		b->pg = store_pgpool_new(th->loop, &ps, error_r);
		if (b->pg == NULL) {
			free(b);
			return -1;
		}
	}
	if (cfg->redis_host != NULL && cfg->redis_host[0] != '\0') {
		struct store_redis_settings rs = {
			.host = cfg->redis_host,
			.port = (int)cfg->redis_port,
			.connect_timeout_ms = (unsigned int)cfg->redis_timeout_ms,
			.command_timeout_ms = (unsigned int)cfg->redis_timeout_ms,
			.observe = store_metrics_redis_observe,
			.observe_ctx = th->node->metrics.store,
		};
		b->redis = store_redis_new(th->loop, &rs, error_r);
		if (b->redis == NULL) {
			store_pgpool_free(&b->pg);
			free(b);
			return -1;
		}
	}
	b->ready_timer = pn_io_add(th->loop, -1, 0, &ready_timer_handlers, b);
	if (b->ready_timer == PN_IO_NONE) {
		store_redis_free(&b->redis);
		store_pgpool_free(&b->pg);
		free(b);
		*error_r = "no io slot for the readiness timer";
		return -1;
	}
	ready_tick(b);
	*backend_r = b;
	return 0;
}

void fe_backend_free(struct fe_backend **backend)
{
	struct fe_backend *b = *backend;

	if (b == NULL)
		return;
	atomic_store(&b->thread->pg_ready, false);
	pn_io_close(b->thread->loop, b->ready_timer);
	store_redis_free(&b->redis);
	store_pgpool_free(&b->pg);
	free(b);
	*backend = NULL;
}

static void check(struct pn_admin_checks *checks, const char *name, bool ok, const char *detail)
{
	if (checks != NULL)
		pn_admin_check(checks, name, ok, detail);
}

/* checks may be NULL: the verdict (and the gauges) only. */
static bool ready(struct fe_backend *b, const struct fe_config *cfg,
		  struct pn_admin_checks *checks)
{
	struct fe_metrics *m = b != NULL ? &b->thread->node->metrics : NULL;
	bool pg_ok = b != NULL && b->pg != NULL && store_pgpool_ready(b->pg);
	unsigned int pg_threads_down = 0;

	/* A login may land on any thread: every thread's pool must be up. */
	if (b != NULL) {
		struct fe_node *node = b->thread->node;

		publish_ready(b);
		for (unsigned int i = 0; i < node->nthreads; i++) {
			if (!atomic_load(&node->threads[i].pg_ready))
				pg_threads_down++;
		}
	}

	if (b == NULL)
		check(checks, "postgres", false, "not started");
	else if (b->pg == NULL)
		check(checks, "postgres", false, "pg_dsn is not set");
	else if (pg_ok && pg_threads_down > 0) {
		char msg[120];

		snprintf(msg, sizeof(msg), "%u of %u threads have no live connection yet",
			 pg_threads_down, b->thread->node->nthreads);
		check(checks, "postgres", false, msg);
		pg_ok = false;
	} else if (pg_ok)
		check(checks, "postgres", true, NULL);
	else {
		const char *why = store_pgpool_last_error(b->pg);
		char msg[200];

		snprintf(msg, sizeof(msg), "no live connection%s%s", why[0] != '\0' ? ": " : "",
			 why);
		check(checks, "postgres", false, msg);
	}
	if (m != NULL)
		pn_gauge_set(pn_metric_series(m->postgres_up, NULL), pg_ok ? 1 : 0);

	bool redis_ok = b != NULL && b->redis != NULL && store_redis_ready(b->redis);
	const char *detail = NULL;

	if (b == NULL)
		detail = "not started";
	else if (b->redis == NULL)
		detail = "redis_host is not set";
	else if (!redis_ok)
		detail = store_redis_last_error(b->redis)[0] != '\0' ?
			store_redis_last_error(b->redis) : "unreachable";
	if (m != NULL)
		pn_gauge_set(pn_metric_series(m->redis_up, NULL), redis_ok ? 1 : 0);
	if (redis_ok) {
		check(checks, "redis", true, NULL);
	} else if (cfg->readyz_requires_redis) {
		check(checks, "redis", false, detail);
		return false;
	} else {
		char msg[160];

		snprintf(msg, sizeof(msg), "degraded: %s (maildrop locks and counters are per node)",
			 detail);
		check(checks, "redis", true, msg);
	}
	return pg_ok;
}

bool fe_backend_ready_checks(struct fe_backend *b, const struct fe_config *cfg,
			     struct pn_admin_checks *checks)
{
	return ready(b, cfg, checks);
}

bool fe_backend_ready(struct fe_backend *b, const struct fe_config *cfg)
{
	return ready(b, cfg, NULL);
}
