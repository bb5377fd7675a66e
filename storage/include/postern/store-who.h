/* Reading the session registry (postern/store-session.h) from Redis with
 * synchronous hiredis, for posternctl `who`. Blocking: tools only, never on
 * a loop thread.
 */
#ifndef POSTERN_STORE_WHO_H
#define POSTERN_STORE_WHO_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

#include "postern/store-session.h"

/* Connects to host:port, or to the Unix socket host when it starts with
 * '/', with a 2 second timeout. Returns 0 with *ctx_r, or -1 with *error_r. */
int store_redis_connect(const char *host, int port, redisContext **ctx_r,
			const char **error_r);
/* Frees the context and sets *ctx to NULL (no-op for NULL). */
void store_redis_close(redisContext **ctx);

struct store_who_entry {
	uint64_t account_id;
	const char *field;          /* "<node>/<session id>", valid in the callback */
	struct store_session_record rec;
	bool stale;                 /* heartbeat older than the TTL at `now` */
};

typedef void store_who_cb(const struct store_who_entry *entry, void *ctx);

/* Walks every "{a:*}:sessions" hash with SCAN (on one Redis server; with
 * Redis Cluster call it once per master) and calls cb for each record.
 * Records that do not parse are skipped and counted in *bad_r. Returns 0,
 * or -1 with *error_r on a Redis error. */
int store_who_scan(redisContext *ctx, int64_t now, store_who_cb *cb, void *cb_ctx,
		   unsigned *bad_r, const char **error_r);

#endif
