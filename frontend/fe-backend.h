/* The storage clients of one frontend thread: the PostgreSQL pool and the
 * Redis client, created on the thread's loop, plus the readiness checks
 * /readyz reports from them.
 *
 * Readiness: /readyz runs on thread 0 and reports thread 0's clients in
 * its detail, but PostgreSQL counts as up only when every thread's pool has
 * a live connection (each thread publishes that in fe_thread.pg_ready every
 * 100 ms), since a login may land on any thread.
 */
#ifndef FE_BACKEND_H
#define FE_BACKEND_H

#include <stdbool.h>

#include "postern/admin.h"
#include "postern/store-pgpool.h"
#include "postern/store-redis.h"

#include "fe-config.h"

struct fe_thread;

struct fe_backend {
	struct fe_thread *thread;
	struct store_pgpool *pg;	/* NULL when pg_dsn is empty */
	struct store_redis *redis;	/* NULL when redis_host is empty */
	pn_io_id ready_timer;		/* refreshes thread->pg_ready */
};

/* pg_connections 0 (auto): PostgreSQL connections per thread for a node
 * of `threads` threads (4 each up to 4 threads, else 16 shared, at least
 * 2 each). */
unsigned int fe_backend_auto_connections(unsigned int threads);

/* Creates the thread's clients on its loop (connections are opened in the
 * background; a server that is down is not an error). Returns 0, or -1 with
 * *error_r (bad settings, no memory). */
int fe_backend_new(struct fe_thread *th, const struct fe_config *cfg,
		   struct fe_backend **backend_r, const char **error_r);
/* Closes everything (pending callbacks fail first); sets *backend NULL.
 * On the thread's loop thread, not from a storage callback. */
void fe_backend_free(struct fe_backend **backend);

/* Adds the "postgres" and "redis" checks to a /readyz answer and returns
 * whether the node is ready as far as storage goes. backend may be NULL
 * (not started yet: not ready).
 *
 * PostgreSQL is required: without a live connection the node is not ready.
 * Redis is not (DESIGN section 4: logins and mail access keep working
 * without it; locks and counters fall back to this node): while it is
 * unreachable the "redis" check is reported with ok true and a detail
 * starting "degraded", and postern_frontend_redis_up is 0 - unless
 * readyz_requires_redis is set, which makes it a failing check. */
bool fe_backend_ready_checks(struct fe_backend *backend, const struct fe_config *cfg,
			     struct pn_admin_checks *checks);
/* The same verdict without an HTTP request (node registry heartbeat); also
 * refreshes the postgres_up / redis_up gauges. */
bool fe_backend_ready(struct fe_backend *backend, const struct fe_config *cfg);

#endif
