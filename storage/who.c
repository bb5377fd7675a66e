/* posternctl's Redis side over synchronous hiredis (see
 * postern/store-who.h): the session registry reader, the node registry
 * reader and the kick request publisher. */
#include "postern/store-who.h"
#include "store-private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

int store_redis_connect(const char *host, int port, redisContext **ctx_r,
			const char **error_r)
{
	struct timeval tv = { 2, 0 };
	redisContext *c;

	if (host[0] == '/')
		c = redisConnectUnixWithTimeout(host, tv);
	else
		c = redisConnectWithTimeout(host, port, tv);
	if (c == NULL)
		return store_error(error_r, "Redis: out of memory");
	if (c->err != 0) {
		store_error(error_r, "Redis %s:%d: %s", host, port, c->errstr);
		redisFree(c);
		return -1;
	}
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		redisFree(c);
		return store_error(error_r, "Redis: cannot set the timeout");
	}
	*ctx_r = c;
	return 0;
}

void store_redis_close(redisContext **ctx)
{
	if (*ctx != NULL) {
		redisFree(*ctx);
		*ctx = NULL;
	}
}

static int reply_error(redisContext *c, redisReply *r, const char **error_r)
{
	if (r == NULL)
		return store_error(error_r, "Redis: %s", c->errstr[0] != '\0' ? c->errstr :
				   "connection lost");
	if (r->type == REDIS_REPLY_ERROR)
		store_error(error_r, "Redis: %.*s", (int)r->len, r->str);
	else
		store_error(error_r, "Redis: unexpected reply type %d", r->type);
	freeReplyObject(r);
	return -1;
}

/* Calls cb for each record of the hash key; records that do not parse are
 * counted in *bad. */
static int read_sessions(redisContext *c, const char *key, size_t keylen,
			 uint64_t account_id, int64_t now, store_who_cb *cb, void *cb_ctx,
			 unsigned *bad, const char **error_r)
{
	struct store_who_entry e;
	redisReply *r;

	r = redisCommand(c, "HGETALL %b", key, keylen);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return reply_error(c, r, error_r);
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		redisReply *f = r->element[i], *v = r->element[i + 1];
		char field[256];
		const char *err;

		memset(&e, 0, sizeof(e));
		e.account_id = account_id;
		if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
		    f->len >= sizeof(field) ||
		    store_session_record_parse(v->str, v->len, &e.rec, &err) < 0) {
			(*bad)++;
			continue;
		}
		memcpy(field, f->str, f->len);
		field[f->len] = '\0';
		e.field = field;
		e.stale = store_session_record_stale(&e.rec, now);
		cb(&e, cb_ctx);
	}
	freeReplyObject(r);
	return 0;
}

static int scan_key(redisContext *c, const char *key, size_t keylen, int64_t now,
		    store_who_cb *cb, void *cb_ctx, unsigned *bad, const char **error_r)
{
	uint64_t account_id;

	if (store_session_key_parse(key, keylen, &account_id) < 0) {
		(*bad)++;
		return 0;
	}
	return read_sessions(c, key, keylen, account_id, now, cb, cb_ctx, bad, error_r);
}

int store_who_account(redisContext *c, uint64_t account_id, int64_t now,
		      store_who_cb *cb, void *cb_ctx, unsigned *bad_r, const char **error_r)
{
	char key[STORE_SESSION_KEY_MAX];
	int n = store_session_key(account_id, key, sizeof(key));

	*bad_r = 0;
	if (n < 0)
		return store_error(error_r, "session key does not fit");
	return read_sessions(c, key, (size_t)n, account_id, now, cb, cb_ctx, bad_r, error_r);
}

int store_who_scan(redisContext *c, int64_t now, store_who_cb *cb, void *cb_ctx,
		   unsigned *bad_r, const char **error_r)
{
	char cursor[32] = "0";

	*bad_r = 0;
	do {
		redisReply *r = redisCommand(c, "SCAN %s MATCH {a:*}:sessions COUNT 500",
					     cursor);
		redisReply *keys;

		if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[0]->len >= sizeof(cursor) ||
		    r->element[1]->type != REDIS_REPLY_ARRAY)
			return reply_error(c, r, error_r);
		memcpy(cursor, r->element[0]->str, r->element[0]->len);
		cursor[r->element[0]->len] = '\0';
		keys = r->element[1];
		for (size_t i = 0; i < keys->elements; i++) {
			if (keys->element[i]->type != REDIS_REPLY_STRING)
				continue;
			if (scan_key(c, keys->element[i]->str, keys->element[i]->len, now,
				     cb, cb_ctx, bad_r, error_r) < 0) {
				freeReplyObject(r);
				return -1;
			}
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	return 0;
}

/* ---- node registry ---- */

static int node_cmp(const void *a, const void *b)
{
	const struct store_nodes_entry *x = a, *y = b;

	return strcmp(x->node.name, y->node.name);
}

/* A sorted-set score (RESP2: a bulk string, "%.17g" of a double). */
static int parse_score(const redisReply *v, int64_t *ms_r)
{
	char buf[40], *end;
	double d;

	if (v->type != REDIS_REPLY_STRING || v->len == 0 || v->len >= sizeof(buf))
		return -1;
	memcpy(buf, v->str, v->len);
	buf[v->len] = '\0';
	errno = 0;
	d = strtod(buf, &end);
	if (errno != 0 || *end != '\0' || !(d >= -9.2e18 && d <= 9.2e18))
		return -1;
	*ms_r = (int64_t)d;
	return 0;
}

int store_nodes_read(redisContext *c, int64_t now_ms, unsigned int ttl_ms,
		     store_nodes_cb *cb, void *cb_ctx, const char **error_r)
{
	struct store_nodes_entry *nodes = NULL;
	size_t n = 0;
	redisReply *r;
	int ret = 0;

	r = redisCommand(c, "ZRANGEBYSCORE %s -inf +inf WITHSCORES LIMIT 0 %d",
			 STORE_NODES_LIVE_KEY, STORE_RNODE_LIST_MAX);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return reply_error(c, r, error_r);
	if (r->elements >= 2) {
		nodes = calloc(r->elements / 2, sizeof(*nodes));
		if (nodes == NULL) {
			freeReplyObject(r);
			return store_error(error_r, "out of memory");
		}
	}
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *name = r->element[i];
		struct store_nodes_entry *e = &nodes[n];
		char key[STORE_NODE_KEY_MAX];

		/* a member that is not a node name has no hash to read */
		if (name->type != REDIS_REPLY_STRING || name->len > STORE_NODE_NAME_MAX ||
		    parse_score(r->element[i + 1], &e->node.seen_ms) < 0)
			continue;
		memcpy(e->node.name, name->str, name->len);
		e->node.name[name->len] = '\0';
		if (store_node_key(e->node.name, key, sizeof(key)) < 0) {
			memset(e, 0, sizeof(*e));
			continue;
		}
		if (redisAppendCommand(c, "HGETALL %s", key) != REDIS_OK) {
			ret = store_error(error_r, "Redis: %s", c->errstr);
			break;
		}
		n++;
	}
	freeReplyObject(r);
	/* the replies of the pipelined HGETALLs, in order */
	for (size_t i = 0; ret == 0 && i < n; i++) {
		struct store_nodes_entry *e = &nodes[i];
		int64_t score = e->node.seen_ms;
		void *reply = NULL;
		redisReply *h;

		if (redisGetReply(c, &reply) != REDIS_OK || reply == NULL ||
		    ((redisReply *)reply)->type != REDIS_REPLY_ARRAY) {
			ret = reply_error(c, reply, error_r);
			break;
		}
		h = reply;
		for (size_t j = 0; j + 1 < h->elements; j += 2) {
			const redisReply *f = h->element[j], *v = h->element[j + 1];

			if (f->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING)
				store_rnode_set_field(&e->node, f->str, f->len, v->str, v->len);
		}
		/* the set's score is the heartbeat that counts for liveness */
		e->node.seen_ms = score;
		e->registered = h->elements > 0;
		e->age_ms = now_ms - score;
		e->stale = !e->registered || e->age_ms > (int64_t)ttl_ms;
		freeReplyObject(h);
	}
	if (ret == 0) {
		if (n > 1)
			qsort(nodes, n, sizeof(*nodes), node_cmp);
		for (size_t i = 0; i < n; i++)
			cb(&nodes[i], cb_ctx);
	}
	free(nodes);
	return ret;
}

/* ---- kick requests ---- */

int store_kick_publish(redisContext *c, const struct store_kick *kick,
		       long long *receivers_r, const char **error_r)
{
	char msg[STORE_KICK_MAX + 1];
	const char *err;
	redisReply *r;
	int n = store_kick_format(kick, msg, sizeof(msg), &err);

	if (n < 0)
		return store_error(error_r, "%s", err);
	r = redisCommand(c, "PUBLISH %s %b", STORE_NODES_KICK_CHANNEL, msg, (size_t)n);
	if (r == NULL || r->type != REDIS_REPLY_INTEGER)
		return reply_error(c, r, error_r);
	*receivers_r = r->integer;
	freeReplyObject(r);
	return 0;
}
