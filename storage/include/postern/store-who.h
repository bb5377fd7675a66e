/* posternctl's view of Redis over synchronous hiredis: reading the session
 * registry (postern/store-session.h) for `who` and `kick`, the node
 * registry (postern/store-nodes.h) for `nodes`, and publishing kick
 * requests (postern/store-kick.h). Blocking: tools only, never on a loop
 * thread. Errors: -1 with a one-line *error_r (per-thread buffer).
 */
#ifndef POSTERN_STORE_WHO_H
#define POSTERN_STORE_WHO_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

#include "postern/store-kick.h"
#include "postern/store-nodes.h"
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

/* Calls cb for each record of one account's "{a:<id>}:sessions" hash (none
 * when the hash does not exist). Returns 0 (*bad_r: records that did not
 * parse), or -1 with *error_r. */
int store_who_account(redisContext *ctx, uint64_t account_id, int64_t now,
		      store_who_cb *cb, void *cb_ctx, unsigned *bad_r, const char **error_r);

struct store_nodes_entry {
	struct store_rnode node;  /* seen_ms: the score in "{nodes}:live" */
	int64_t age_ms;           /* now_ms - seen_ms */
	bool registered;          /* its hash "{nodes}:node:<name>" exists */
	bool stale;               /* !registered, or age_ms > ttl_ms */
};
typedef void store_nodes_cb(const struct store_nodes_entry *entry, void *ctx);

/* Reads the node registry: every member of "{nodes}:live" (at most
 * STORE_RNODE_LIST_MAX) with its hash, and calls cb for each in name order,
 * stale ones included. A node whose hash has expired (its own TTL ran out)
 * is stale whatever ttl_ms says. now_ms: Unix ms. Returns 0, or -1 with
 * *error_r (cb not called then). */
int store_nodes_read(redisContext *ctx, int64_t now_ms, unsigned int ttl_ms,
		     store_nodes_cb *cb, void *cb_ctx, const char **error_r);

/* PUBLISHes the request on STORE_NODES_KICK_CHANNEL. Returns 0 with
 * *receivers_r the number of subscribed connections that got it, or -1
 * with *error_r (a request store_kick_format() refuses, a Redis error). */
int store_kick_publish(redisContext *ctx, const struct store_kick *kick,
		       long long *receivers_r, const char **error_r);

#endif
