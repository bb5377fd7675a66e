/* Asynchronous Redis on the loop: hiredis' async API with an adapter that
 * maps its addRead/delRead/addWrite/delWrite/cleanup hooks to one-shot
 * pn_io_poll() operations (PN_IO_NO_CLOSE: hiredis owns the fd), plus
 * connect and command timeouts on a loop timer, reconnection with backoff,
 * and a second connection, opened on the first subscription, for pub/sub.
 *
 * I/O: everything runs on the loop's thread. host must be a numeric IPv4 or
 * IPv6 address or a Unix socket path (starting with '/'): hiredis would
 * resolve a name synchronously.
 *
 * Callbacks: a submission call that returns 0 calls its callback exactly
 * once, later, from the loop - never from inside the call. While the
 * connection is down (after a failed connect attempt, until the next one
 * succeeds) commands fail at once with STORE_TEMPORARY; commands in flight
 * when the connection is lost, or older than command_timeout_ms, fail with
 * STORE_TEMPORARY (a timeout also drops and reopens the connection, since
 * the replies of a Redis connection come in order). -1 (errno EINVAL, or
 * ESHUTDOWN while freeing) means no callback. Callbacks may submit new
 * commands; they may not free the client.
 *
 * A refused AUTH counts as a failed connect attempt (backoff, and the
 * reply's text in store_redis_last_error()).
 *
 * Error replies: "-LOADING", "-BUSY", "-TRYAGAIN", "-MASTERDOWN",
 * "-READONLY", "-CLUSTERDOWN", "-NOREPLICAS", "-NOAUTH" are temporary, others
 * (WRONGTYPE, ERR ...) permanent.
 *
 * Pub/sub: store_redis_subscribe() returns a subscription handle; several
 * handles may share a channel (one SUBSCRIBE on the wire). A handle's
 * callback gets STORE_REDIS_SUB_READY when the channel is subscribed (again
 * after every reconnect: messages published while disconnected are lost,
 * so a receiver resynchronises from PostgreSQL then), MESSAGE for each
 * message, and LOST when the subscriber connection drops.
 */
#ifndef POSTERN_STORE_REDIS_H
#define POSTERN_STORE_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern/store-status.h"

struct pn_loop;
struct store_redis;
struct store_redis_sub;

#define STORE_REDIS_CHANNEL_MAX 256	/* longest channel name */

struct store_redis_settings {
	const char *host;		/* numeric address or "/unix/socket" */
	int port;
	/* AUTH sent first on every connection when password is set (with
	 * username: the Redis 6 ACL form); NULL for none. Copied. */
	const char *username;
	const char *password;
	unsigned int connect_timeout_ms; /* default 2000 */
	unsigned int command_timeout_ms; /* default 2000 */
	unsigned int backoff_min_ms;	/* default 100 */
	unsigned int backoff_max_ms;	/* default 5000 */
	unsigned int max_pending;	/* commands in flight; default 1024 */
	/* Called for every finished command with its outcome and round-trip
	 * time in microseconds (e.g. store_metrics_redis_observe); optional. */
	void (*observe)(void *ctx, enum store_status status, uint64_t usec);
	void *observe_ctx;
};

/* reply: the reply on STORE_OK (never an error reply), the error reply for
 * a failure the server answered, NULL otherwise; valid during the call
 * (hiredis frees it). error: "" on STORE_OK, else one line. */
typedef void store_redis_cb(void *ctx, enum store_status status,
			    const redisReply *reply, const char *error);

/* Creates the client and starts connecting. Returns NULL with *error_r
 * (bad host, no loop slot). An unreachable server is not an error here. */
struct store_redis *store_redis_new(struct pn_loop *loop,
				    const struct store_redis_settings *set,
				    const char **error_r);
/* Fails every pending command (STORE_TEMPORARY "closed"; callbacks run
 * inside this call), frees every subscription handle (which must not be
 * used afterwards), closes the connections, sets *r NULL. Not from one of
 * the client's callbacks; before pn_loop_free(). */
void store_redis_free(struct store_redis **r);

/* Sends argv[0..argc) (binary-safe with argvlen; NULL argvlen means
 * NUL-terminated strings). */
int store_redis_command(struct store_redis *r, store_redis_cb *cb, void *ctx,
			int argc, const char *const *argv, const size_t *argvlen);

/* Readiness: the command connection is up. */
bool store_redis_ready(const struct store_redis *r);
/* Why the last connect attempt failed ("" if none since the last
 * success), for the /readyz detail. */
const char *store_redis_last_error(const struct store_redis *r);

enum store_redis_sub_event {
	STORE_REDIS_SUB_READY,
	STORE_REDIS_SUB_MESSAGE,
	STORE_REDIS_SUB_LOST,
};
/* msg/len only for MESSAGE (valid during the call). */
typedef void store_redis_sub_cb(void *ctx, enum store_redis_sub_event ev,
				const char *channel, const char *msg, size_t len);

/* Subscribes to channel (1..STORE_REDIS_CHANNEL_MAX bytes, no NUL). The
 * callback never runs inside this call. Returns the handle, or NULL with
 * errno EINVAL / ENOMEM / ESHUTDOWN. */
struct store_redis_sub *store_redis_subscribe(struct store_redis *r, const char *channel,
					      store_redis_sub_cb *cb, void *ctx);
/* Drops the handle (no callback after this) and sets *sub NULL; the last
 * handle of a channel unsubscribes it. */
void store_redis_unsubscribe(struct store_redis_sub **sub);

struct store_redis_stats {
	uint64_t commands, ok, temporary, permanent, timeouts;
	uint64_t connects, connect_failures, disconnects;
	uint64_t messages;		/* pub/sub messages delivered */
	unsigned int pending;		/* commands in flight now */
	unsigned int channels;		/* subscribed channels now */
	bool up, sub_up;
};
void store_redis_get_stats(const struct store_redis *r, struct store_redis_stats *stats_r);

#endif
