/* Postern's operations on Redis, over the asynchronous client
 * (postern/store-redis.h). The key layout is documented in
 * docs/redis-keys.md; keys used together share a hash tag ({a:<id>} per
 * account, {nodes} for the node registry) so that scripts touching several
 * keys stay in one Redis Cluster slot. Multi-step updates run as one Lua
 * script (EVAL), so they are atomic.
 *
 * Every call follows the client's contract: 0 and exactly one callback
 * later (STORE_TEMPORARY while Redis is down, never a hang), or -1 (errno
 * EINVAL for bad arguments, ESHUTDOWN) and no callback. `error` in a
 * callback is "" on success, else one line, valid during the call.
 */
#ifndef POSTERN_STORE_REDIS_OPS_H
#define POSTERN_STORE_REDIS_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern/store-redis.h"
#include "postern/store-session.h"
#include "postern/store-status.h"

#define STORE_RKEY_MAX 320	/* longest key or channel we build */

/* "{a:<account_id>}:<suffix>", e.g. suffix "lock:pop3" or "authfail".
 * Returns the length, or -1 if it does not fit (suffix: 1..256 bytes of
 * printable ASCII without spaces). */
int store_rkey_account(char *buf, size_t size, uint64_t account_id, const char *suffix);
/* The change channel of a mailbox: "{a:<account_id>}:mbox:<mailbox_id>". */
int store_rkey_mailbox(char *buf, size_t size, uint64_t account_id, uint64_t mailbox_id);

/* For operations without a result. */
typedef void store_rop_cb(void *ctx, enum store_status status, const char *error);

/* ---- session registry (layout of postern/store-session.h) ---- */

/* HSET "{a:<id>}:sessions" field=<node>/<session> value=rec, and renew the
 * hash's expiry to two heartbeats (2 * STORE_SESSION_HEARTBEAT_SECS), in
 * one script; at login and every heartbeat. */
int store_rsession_put(struct store_redis *r, uint64_t account_id, const char *field,
		       const struct store_session_record *rec, store_rop_cb *cb, void *ctx);
/* HDEL the field (at logout). */
int store_rsession_remove(struct store_redis *r, uint64_t account_id, const char *field,
			  store_rop_cb *cb, void *ctx);

#define STORE_RSESSION_LIST_MAX 1024	/* entries beyond are dropped */
struct store_rsession_entry {
	const char *field;		/* "<node>/<session id>" */
	struct store_session_record rec;
	bool stale;			/* seen older than the TTL at `now` */
};
typedef void store_rsession_list_cb(void *ctx, enum store_status status,
				    const struct store_rsession_entry *entries, size_t count,
				    const char *error);
/* The sessions of one account; records that do not parse are skipped.
 * now: Unix seconds, for `stale`. entries valid during the callback. */
int store_rsession_list(struct store_redis *r, uint64_t account_id, int64_t now,
			store_rsession_list_cb *cb, void *ctx);

/* ---- locks with a lease ---- */

#define STORE_RLOCK_TOKEN_LEN 32	/* hex digits */
struct store_rlock {
	char key[STORE_RKEY_MAX];
	char token[STORE_RLOCK_TOKEN_LEN + 1];
};
/* held: acquire - we hold it now; renew - it was still ours and its lease
 * is extended; release - it was ours and is deleted now. false with
 * STORE_OK means someone else holds it (or nobody, after expiry). */
typedef void store_rlock_cb(void *ctx, enum store_status status, bool held,
			    const char *error);
/* SET key <random token> NX PX lease_ms. Fills *lock (key and a fresh
 * token) before returning 0; keep it to renew and release. */
int store_rlock_acquire(struct store_redis *r, struct store_rlock *lock, const char *key,
			unsigned int lease_ms, store_rlock_cb *cb, void *ctx);
/* Extends the lease to lease_ms from now, only with the holder's token. */
int store_rlock_renew(struct store_redis *r, const struct store_rlock *lock,
		      unsigned int lease_ms, store_rlock_cb *cb, void *ctx);
/* Deletes the lock, only with the holder's token. */
int store_rlock_release(struct store_redis *r, const struct store_rlock *lock,
			store_rlock_cb *cb, void *ctx);

/* ---- mailbox change notifications ---- */

/* PUBLISH msg on the mailbox's channel. receivers: subscribed connections
 * that got it (all nodes), -1 on failure. */
typedef void store_rcount_cb(void *ctx, enum store_status status, int64_t value,
			     const char *error);
int store_rnotify_publish(struct store_redis *r, uint64_t account_id, uint64_t mailbox_id,
			  const void *msg, size_t len, store_rcount_cb *cb, void *ctx);
/* Subscribes to the mailbox's channel (see store_redis_subscribe()). */
struct store_redis_sub *store_rnotify_subscribe(struct store_redis *r, uint64_t account_id,
						uint64_t mailbox_id,
						store_redis_sub_cb *cb, void *ctx);

/* ---- counters with expiry ---- */

/* INCRBY key by; when the key is new (or has no expiry) PEXPIRE it to
 * ttl_ms, atomically: a fixed window that starts at the first count. The
 * callback gets the new value. */
int store_rcounter_incr(struct store_redis *r, const char *key, int64_t by,
			unsigned int ttl_ms, store_rcount_cb *cb, void *ctx);
/* The value, 0 when the key does not exist (or expired). */
int store_rcounter_get(struct store_redis *r, const char *key, store_rcount_cb *cb,
		       void *ctx);

/* ---- node registry ---- */

#define STORE_RNODE_LIST_MAX 256
struct store_rnode {
	char name[64];		/* as in pn_log_set_node(): [A-Za-z0-9._-] */
	char addr[80];		/* where the balancer reaches it: "ip:port" */
	char version[32];
	int64_t sessions;
	bool ready;
	int64_t seen_ms;	/* Unix ms of the last heartbeat */
};
/* Writes the node's hash "{nodes}:node:<name>" (expiring after ttl_ms) and
 * its score now_ms in the sorted set "{nodes}:live"; drops entries of the
 * set older than 10 * ttl_ms. now_ms: Unix milliseconds. */
int store_rnode_heartbeat(struct store_redis *r, const struct store_rnode *node,
			  int64_t now_ms, unsigned int ttl_ms, store_rop_cb *cb, void *ctx);
/* Removes the node (clean shutdown). */
int store_rnode_remove(struct store_redis *r, const char *name, store_rop_cb *cb, void *ctx);
typedef void store_rnode_list_cb(void *ctx, enum store_status status,
				 const struct store_rnode *nodes, size_t count,
				 const char *error);
/* Nodes whose last heartbeat is at most ttl_ms old at now_ms, oldest
 * heartbeat first. nodes valid during the callback. */
int store_rnode_list(struct store_redis *r, int64_t now_ms, unsigned int ttl_ms,
		     store_rnode_list_cb *cb, void *ctx);

#endif
