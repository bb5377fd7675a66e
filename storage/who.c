/* Session registry reader over synchronous hiredis (see
 * postern/store-who.h). */
#include "postern/store-who.h"
#include "store-private.h"

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

static int scan_key(redisContext *c, const char *key, size_t keylen, int64_t now,
		    store_who_cb *cb, void *cb_ctx, unsigned *bad, const char **error_r)
{
	struct store_who_entry e;
	redisReply *r;

	memset(&e, 0, sizeof(e));
	if (store_session_key_parse(key, keylen, &e.account_id) < 0) {
		(*bad)++;
		return 0;
	}
	r = redisCommand(c, "HGETALL %b", key, keylen);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return reply_error(c, r, error_r);
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		redisReply *f = r->element[i], *v = r->element[i + 1];
		char field[256];
		const char *err;

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
