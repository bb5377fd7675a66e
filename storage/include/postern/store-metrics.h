/* Prometheus metrics of the storage clients (postern/metrics.h).
 *
 * store_metrics_new() registers, once per process, the families that every
 * PostgreSQL pool and Redis client of every thread feeds through their
 * `observe` hooks:
 *
 *   postern_pg_requests_total{outcome="ok|temporary|permanent"}   counter
 *   postern_pg_request_seconds                                    histogram
 *   postern_redis_commands_total{outcome="ok|temporary|permanent"} counter
 *   postern_redis_command_seconds                                 histogram
 *
 * Wiring: set.observe = store_metrics_pg_observe (or ..._redis_observe)
 * and set.observe_ctx = the store_metrics. Updates are lock-free atomics,
 * so the hooks may run on any loop thread. The per-pool stats structs
 * (store_pgpool_get_stats(), store_redis_get_stats()) stay available for
 * connection-level detail.
 */
#ifndef POSTERN_STORE_METRICS_H
#define POSTERN_STORE_METRICS_H

#include <stdint.h>

#include "postern/metrics.h"
#include "postern/store-status.h"

struct store_metrics;

/* Returns NULL with *error_r (a family already registered, no memory). The
 * object refers to series owned by reg: free it before the registry. */
struct store_metrics *store_metrics_new(struct pn_metrics *reg, const char **error_r);
void store_metrics_free(struct store_metrics **m);

/* Observe hooks (ctx: the store_metrics). */
void store_metrics_pg_observe(void *ctx, enum store_status status, uint64_t usec);
void store_metrics_redis_observe(void *ctx, enum store_status status, uint64_t usec);

#endif
