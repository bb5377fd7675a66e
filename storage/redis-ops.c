/* Postern's Redis operations (see postern/store-redis-ops.h and
 * docs/redis-keys.md): key names, the session registry, leased locks,
 * mailbox notifications, expiring counters and the node registry. Each
 * operation is one command or one Lua script; a small per-call context
 * carries the caller's callback to the reply trampoline.
 */
#include "postern/store-redis-ops.h"
#include "postern/hash.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Atomic HSET + EXPIRE of the account's session hash. */
static const char lua_session_put[] =
	"redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
	"redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
	"return 1\n";

/* Lease renewal and release by the holder's token only. */
static const char lua_lock_renew[] =
	"if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
	"  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
	"end\n"
	"return 0\n";
static const char lua_lock_release[] =
	"if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
	"  return redis.call('DEL', KEYS[1])\n"
	"end\n"
	"return 0\n";

/* INCRBY, then an expiry when the key has none (a new key). */
static const char lua_counter_incr[] =
	"local v = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
	"if redis.call('PTTL', KEYS[1]) < 0 then\n"
	"  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
	"end\n"
	"return v\n";

/* KEYS: node hash, live set. ARGV: name addr version sessions ready now
 * ttl cutoff. */
static const char lua_node_heartbeat[] =
	"redis.call('HSET', KEYS[1], 'addr', ARGV[2], 'version', ARGV[3],\n"
	"  'sessions', ARGV[4], 'ready', ARGV[5], 'seen', ARGV[6])\n"
	"redis.call('PEXPIRE', KEYS[1], ARGV[7])\n"
	"redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])\n"
	"redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[8])\n"
	"return 1\n";
static const char lua_node_remove[] =
	"redis.call('DEL', KEYS[1])\n"
	"redis.call('ZREM', KEYS[2], ARGV[1])\n"
	"return 1\n";
/* KEYS: live set. ARGV: min score, node key prefix, limit. The node
 * hashes share the {nodes} tag, so they are in the live set's slot. */
static const char lua_node_list[] =
	"local names = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf',\n"
	"  'LIMIT', 0, tonumber(ARGV[3]))\n"
	"local out = {}\n"
	"for _, n in ipairs(names) do\n"
	"  local h = redis.call('HGETALL', ARGV[2] .. n)\n"
	"  if #h > 0 then\n"
	"    out[#out + 1] = n\n"
	"    out[#out + 1] = h\n"
	"  end\n"
	"end\n"
	"return out\n";

#define NODES_LIVE "{nodes}:live"
#define NODES_PREFIX "{nodes}:node:"

/* ---- keys ---- */

static bool token_ok(const char *s, size_t max)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f)
			return false;
	return true;
}

int store_rkey_account(char *buf, size_t size, uint64_t account_id, const char *suffix)
{
	int n;

	if (!token_ok(suffix, 256))
		return -1;
	n = snprintf(buf, size, "{a:%" PRIu64 "}:%s", account_id, suffix);
	return n < 0 || (size_t)n >= size ? -1 : n;
}

int store_rkey_mailbox(char *buf, size_t size, uint64_t account_id, uint64_t mailbox_id)
{
	int n = snprintf(buf, size, "{a:%" PRIu64 "}:mbox:%" PRIu64, account_id, mailbox_id);

	return n < 0 || (size_t)n >= size ? -1 : n;
}

static bool node_name_ok(const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* ---- trampolines ---- */

union op_cb {
	store_rop_cb *done;
	store_rlock_cb *lock;
	store_rcount_cb *count;
	store_rsession_list_cb *sessions;
	store_rnode_list_cb *nodes;
};

struct op {
	union op_cb cb;
	void *ctx;
	int64_t now;
};

static struct op *op_new(union op_cb cb, void *ctx)
{
	struct op *op = calloc(1, sizeof(*op));

	if (op != NULL) {
		op->cb = cb;
		op->ctx = ctx;
	}
	return op;
}

static int op_send(struct store_redis *r, struct op *op, store_redis_cb *tramp,
		   int argc, const char *const *argv, const size_t *lens)
{
	if (op == NULL)
		return -1;
	if (store_redis_command(r, tramp, op, argc, argv, lens) < 0) {
		int e = errno;

		free(op);
		errno = e;
		return -1;
	}
	return 0;
}

static void done_tramp(void *ctx, enum store_status st, const redisReply *reply,
		       const char *error)
{
	struct op *op = ctx;

	(void)reply;
	op->cb.done(op->ctx, st, error);
	free(op);
}

/* Integer replies: 1 means "held" for the lock scripts. */
static void lock_int_tramp(void *ctx, enum store_status st, const redisReply *reply,
			   const char *error)
{
	struct op *op = ctx;
	bool held = false;

	if (st == STORE_OK) {
		if (reply->type == REDIS_REPLY_INTEGER)
			held = reply->integer == 1;
		else {
			st = STORE_PERMANENT;
			error = "unexpected reply to a lock script";
		}
	}
	op->cb.lock(op->ctx, st, held, error);
	free(op);
}

static void lock_set_tramp(void *ctx, enum store_status st, const redisReply *reply,
			   const char *error)
{
	struct op *op = ctx;
	bool held = false;

	if (st == STORE_OK)
		held = reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "OK") == 0;
	op->cb.lock(op->ctx, st, held, error);
	free(op);
}

static void count_tramp(void *ctx, enum store_status st, const redisReply *reply,
			const char *error)
{
	struct op *op = ctx;
	int64_t v = -1;

	if (st == STORE_OK) {
		if (reply->type == REDIS_REPLY_INTEGER) {
			v = reply->integer;
		} else if (reply->type == REDIS_REPLY_NIL) {
			v = 0;
		} else if (reply->type == REDIS_REPLY_STRING) {
			char buf[32], *end;

			if (reply->len < sizeof(buf)) {
				memcpy(buf, reply->str, reply->len);
				buf[reply->len] = '\0';
				errno = 0;
				v = strtoll(buf, &end, 10);
				if (errno != 0 || *end != '\0' || end == buf)
					v = -1;
			}
			if (v < 0) {
				st = STORE_PERMANENT;
				error = "counter is not an integer";
			}
		} else {
			st = STORE_PERMANENT;
			error = "unexpected reply type";
		}
	}
	op->cb.count(op->ctx, st, st == STORE_OK ? v : -1, error);
	free(op);
}

/* ---- session registry ---- */

int store_rsession_put(struct store_redis *r, uint64_t account_id, const char *field,
		       const struct store_session_record *rec, store_rop_cb *cb, void *ctx)
{
	char key[STORE_SESSION_KEY_MAX], value[STORE_SESSION_RECORD_MAX + 1], ttl[16];
	const char *error;

	if (cb == NULL || !token_ok(field, 255) ||
	    store_session_key(account_id, key, sizeof(key)) < 0 ||
	    store_session_record_format(rec, value, sizeof(value), &error) < 0) {
		errno = EINVAL;
		return -1;
	}
	/* docs/redis-keys.md: the hash lives two heartbeats */
	snprintf(ttl, sizeof(ttl), "%d", 2 * STORE_SESSION_HEARTBEAT_SECS);
	const char *argv[] = { "EVAL", lua_session_put, "1", key, field, value, ttl };
	return op_send(r, op_new((union op_cb){ .done = cb }, ctx), done_tramp, 7, argv, NULL);
}

int store_rsession_remove(struct store_redis *r, uint64_t account_id, const char *field,
			  store_rop_cb *cb, void *ctx)
{
	char key[STORE_SESSION_KEY_MAX];

	if (cb == NULL || !token_ok(field, 255) ||
	    store_session_key(account_id, key, sizeof(key)) < 0) {
		errno = EINVAL;
		return -1;
	}
	const char *argv[] = { "HDEL", key, field };
	return op_send(r, op_new((union op_cb){ .done = cb }, ctx), done_tramp, 3, argv, NULL);
}

static void sessions_tramp(void *ctx, enum store_status st, const redisReply *reply,
			   const char *error)
{
	struct op *op = ctx;
	struct store_rsession_entry *e = NULL;
	char (*fields)[256] = NULL;
	size_t n = 0;

	if (st == STORE_OK && reply->type != REDIS_REPLY_ARRAY) {
		st = STORE_PERMANENT;
		error = "unexpected reply type";
	}
	if (st == STORE_OK && reply->elements >= 2) {
		size_t max = reply->elements / 2;

		if (max > STORE_RSESSION_LIST_MAX)
			max = STORE_RSESSION_LIST_MAX;
		e = calloc(max, sizeof(*e));
		fields = calloc(max, sizeof(*fields));
		if (e == NULL || fields == NULL) {
			st = STORE_TEMPORARY;
			error = "out of memory";
		}
		for (size_t i = 0; st == STORE_OK && i + 1 < reply->elements && n < max; i += 2) {
			const redisReply *f = reply->element[i], *v = reply->element[i + 1];
			const char *perr;

			if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
			    f->len >= sizeof(fields[0]) ||
			    store_session_record_parse(v->str, v->len, &e[n].rec, &perr) < 0)
				continue;
			memcpy(fields[n], f->str, f->len);
			fields[n][f->len] = '\0';
			e[n].field = fields[n];
			e[n].stale = store_session_record_stale(&e[n].rec, op->now);
			n++;
		}
	}
	op->cb.sessions(op->ctx, st, st == STORE_OK ? e : NULL, st == STORE_OK ? n : 0, error);
	free(e);
	free(fields);
	free(op);
}

int store_rsession_list(struct store_redis *r, uint64_t account_id, int64_t now,
			store_rsession_list_cb *cb, void *ctx)
{
	char key[STORE_SESSION_KEY_MAX];
	struct op *op;

	if (cb == NULL || store_session_key(account_id, key, sizeof(key)) < 0) {
		errno = EINVAL;
		return -1;
	}
	op = op_new((union op_cb){ .sessions = cb }, ctx);
	if (op != NULL)
		op->now = now;
	const char *argv[] = { "HGETALL", key };
	return op_send(r, op, sessions_tramp, 2, argv, NULL);
}

/* ---- locks ---- */

int store_rlock_acquire(struct store_redis *r, struct store_rlock *lock, const char *key,
			unsigned int lease_ms, store_rlock_cb *cb, void *ctx)
{
	uint8_t raw[STORE_RLOCK_TOKEN_LEN / 2];
	char px[16];

	if (cb == NULL || lock == NULL || lease_ms == 0 || !token_ok(key, STORE_RKEY_MAX - 1)) {
		errno = EINVAL;
		return -1;
	}
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return -1;
	snprintf(lock->key, sizeof(lock->key), "%s", key);
	pn_hex_encode(raw, sizeof(raw), lock->token);
	snprintf(px, sizeof(px), "%u", lease_ms);
	const char *argv[] = { "SET", lock->key, lock->token, "NX", "PX", px };
	return op_send(r, op_new((union op_cb){ .lock = cb }, ctx), lock_set_tramp, 6, argv, NULL);
}

int store_rlock_renew(struct store_redis *r, const struct store_rlock *lock,
		      unsigned int lease_ms, store_rlock_cb *cb, void *ctx)
{
	char px[16];

	if (cb == NULL || lock == NULL || lease_ms == 0 || !token_ok(lock->key, STORE_RKEY_MAX - 1) ||
	    strlen(lock->token) != STORE_RLOCK_TOKEN_LEN) {
		errno = EINVAL;
		return -1;
	}
	snprintf(px, sizeof(px), "%u", lease_ms);
	const char *argv[] = { "EVAL", lua_lock_renew, "1", lock->key, lock->token, px };
	return op_send(r, op_new((union op_cb){ .lock = cb }, ctx), lock_int_tramp, 6, argv, NULL);
}

int store_rlock_release(struct store_redis *r, const struct store_rlock *lock,
			store_rlock_cb *cb, void *ctx)
{
	if (cb == NULL || lock == NULL || !token_ok(lock->key, STORE_RKEY_MAX - 1) ||
	    strlen(lock->token) != STORE_RLOCK_TOKEN_LEN) {
		errno = EINVAL;
		return -1;
	}
	const char *argv[] = { "EVAL", lua_lock_release, "1", lock->key, lock->token };
	return op_send(r, op_new((union op_cb){ .lock = cb }, ctx), lock_int_tramp, 5, argv, NULL);
}

/* ---- notifications ---- */

int store_rnotify_publish(struct store_redis *r, uint64_t account_id, uint64_t mailbox_id,
			  const void *msg, size_t len, store_rcount_cb *cb, void *ctx)
{
	char chan[STORE_RKEY_MAX];
	int n = store_rkey_mailbox(chan, sizeof(chan), account_id, mailbox_id);

	if (cb == NULL || n < 0 || (msg == NULL && len > 0)) {
		errno = EINVAL;
		return -1;
	}
	const char *argv[] = { "PUBLISH", chan, msg != NULL ? msg : "" };
	size_t lens[] = { 7, (size_t)n, len };
	return op_send(r, op_new((union op_cb){ .count = cb }, ctx), count_tramp, 3, argv, lens);
}

struct store_redis_sub *store_rnotify_subscribe(struct store_redis *r, uint64_t account_id,
						uint64_t mailbox_id,
						store_redis_sub_cb *cb, void *ctx)
{
	char chan[STORE_RKEY_MAX];

	if (store_rkey_mailbox(chan, sizeof(chan), account_id, mailbox_id) < 0) {
		errno = EINVAL;
		return NULL;
	}
	return store_redis_subscribe(r, chan, cb, ctx);
}

/* ---- counters ---- */

int store_rcounter_incr(struct store_redis *r, const char *key, int64_t by,
			unsigned int ttl_ms, store_rcount_cb *cb, void *ctx)
{
	char sby[24], sttl[16];

	if (cb == NULL || ttl_ms == 0 || !token_ok(key, STORE_RKEY_MAX - 1)) {
		errno = EINVAL;
		return -1;
	}
	snprintf(sby, sizeof(sby), "%" PRId64, by);
	snprintf(sttl, sizeof(sttl), "%u", ttl_ms);
	const char *argv[] = { "EVAL", lua_counter_incr, "1", key, sby, sttl };
	return op_send(r, op_new((union op_cb){ .count = cb }, ctx), count_tramp, 6, argv, NULL);
}

int store_rcounter_get(struct store_redis *r, const char *key, store_rcount_cb *cb,
		       void *ctx)
{
	if (cb == NULL || !token_ok(key, STORE_RKEY_MAX - 1)) {
		errno = EINVAL;
		return -1;
	}
	const char *argv[] = { "GET", key };
	return op_send(r, op_new((union op_cb){ .count = cb }, ctx), count_tramp, 2, argv, NULL);
}

/* ---- node registry ---- */

int store_rnode_heartbeat(struct store_redis *r, const struct store_rnode *node,
			  int64_t now_ms, unsigned int ttl_ms, store_rop_cb *cb, void *ctx)
{
	char key[sizeof(NODES_PREFIX) + 64], sessions[24], now[24], ttl[16], cutoff[24];

	if (cb == NULL || node == NULL || !node_name_ok(node->name) || ttl_ms == 0 ||
	    now_ms < 0 || !token_ok(node->addr, sizeof(node->addr) - 1) ||
	    !token_ok(node->version, sizeof(node->version) - 1)) {
		errno = EINVAL;
		return -1;
	}
	snprintf(key, sizeof(key), NODES_PREFIX "%s", node->name);
	snprintf(sessions, sizeof(sessions), "%" PRId64, node->sessions);
	snprintf(now, sizeof(now), "%" PRId64, now_ms);
	snprintf(ttl, sizeof(ttl), "%u", ttl_ms);
	snprintf(cutoff, sizeof(cutoff), "%" PRId64, now_ms - 10 * (int64_t)ttl_ms);
	const char *argv[] = {
		"EVAL", lua_node_heartbeat, "2", key, NODES_LIVE, node->name, node->addr,
		node->version, sessions, node->ready ? "1" : "0", now, ttl, cutoff,
	};
	return op_send(r, op_new((union op_cb){ .done = cb }, ctx), done_tramp, 13, argv, NULL);
}

int store_rnode_remove(struct store_redis *r, const char *name, store_rop_cb *cb, void *ctx)
{
	char key[sizeof(NODES_PREFIX) + 64];

	if (cb == NULL || !node_name_ok(name)) {
		errno = EINVAL;
		return -1;
	}
	snprintf(key, sizeof(key), NODES_PREFIX "%s", name);
	const char *argv[] = { "EVAL", lua_node_remove, "2", key, NODES_LIVE, name };
	return op_send(r, op_new((union op_cb){ .done = cb }, ctx), done_tramp, 6, argv, NULL);
}

static void copy_str(char *dst, size_t size, const redisReply *v)
{
	size_t n = v->len < size ? v->len : size - 1;

	memcpy(dst, v->str, n);
	dst[n] = '\0';
}

static int64_t reply_int(const redisReply *v)
{
	char buf[24];

	if (v->len >= sizeof(buf))
		return 0;
	memcpy(buf, v->str, v->len);
	buf[v->len] = '\0';
	return strtoll(buf, NULL, 10);
}

static void nodes_tramp(void *ctx, enum store_status st, const redisReply *reply,
			const char *error)
{
	struct op *op = ctx;
	struct store_rnode *nodes = NULL;
	size_t n = 0;

	if (st == STORE_OK && reply->type != REDIS_REPLY_ARRAY) {
		st = STORE_PERMANENT;
		error = "unexpected reply type";
	}
	if (st == STORE_OK && reply->elements >= 2) {
		size_t max = reply->elements / 2;

		if (max > STORE_RNODE_LIST_MAX)
			max = STORE_RNODE_LIST_MAX;
		nodes = calloc(max, sizeof(*nodes));
		if (nodes == NULL) {
			st = STORE_TEMPORARY;
			error = "out of memory";
		}
		for (size_t i = 0; st == STORE_OK && i + 1 < reply->elements && n < max; i += 2) {
			const redisReply *name = reply->element[i], *h = reply->element[i + 1];
			struct store_rnode *nd = &nodes[n];

			if (name->type != REDIS_REPLY_STRING || h->type != REDIS_REPLY_ARRAY)
				continue;
			copy_str(nd->name, sizeof(nd->name), name);
			for (size_t j = 0; j + 1 < h->elements; j += 2) {
				const redisReply *f = h->element[j], *v = h->element[j + 1];

				if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
					continue;
				if (f->len == 4 && memcmp(f->str, "addr", 4) == 0)
					copy_str(nd->addr, sizeof(nd->addr), v);
				else if (f->len == 7 && memcmp(f->str, "version", 7) == 0)
					copy_str(nd->version, sizeof(nd->version), v);
				else if (f->len == 8 && memcmp(f->str, "sessions", 8) == 0)
					nd->sessions = reply_int(v);
				else if (f->len == 5 && memcmp(f->str, "ready", 5) == 0)
					nd->ready = v->len == 1 && v->str[0] == '1';
				else if (f->len == 4 && memcmp(f->str, "seen", 4) == 0)
					nd->seen_ms = reply_int(v);
			}
			n++;
		}
	}
	op->cb.nodes(op->ctx, st, st == STORE_OK ? nodes : NULL, st == STORE_OK ? n : 0, error);
	free(nodes);
	free(op);
}

int store_rnode_list(struct store_redis *r, int64_t now_ms, unsigned int ttl_ms,
		     store_rnode_list_cb *cb, void *ctx)
{
	char min[24], limit[16];

	if (cb == NULL || ttl_ms == 0) {
		errno = EINVAL;
		return -1;
	}
	snprintf(min, sizeof(min), "%" PRId64, now_ms - (int64_t)ttl_ms);
	snprintf(limit, sizeof(limit), "%d", STORE_RNODE_LIST_MAX);
	const char *argv[] = { "EVAL", lua_node_list, "1", NODES_LIVE, min, NODES_PREFIX, limit };
	return op_send(r, op_new((union op_cb){ .nodes = cb }, ctx), nodes_tramp, 7, argv, NULL);
}
