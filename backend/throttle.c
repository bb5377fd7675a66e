/* Cluster-wide protection (postern/mail-throttle.h): authentication-failure
 * counters with delays and refusals, session slots with leases, and
 * per-tenant message rates, each decided by one Lua script per Redis hash
 * tag (address, account, tenant: different Redis Cluster slots, so the
 * scripts of one decision run side by side and are combined here), and a
 * per-node table of the same counters used whenever Redis does not answer.
 * Key layout: docs/redis-keys.md, "Throttling".
 */
#include "postern/mail-throttle.h"

#include "postern/hash.h"
#include "postern/log.h"
#include "postern/loop.h"
#include "postern/metrics.h"
#include "postern/store-redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- scripts (KEYS and ARGV as listed above each) ---- */

/* KEYS: failures, block. -> {failures, block pttl (-2: none)} */
static const char lua_auth_check[] =
	"local n = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
	"return {n, redis.call('PTTL', KEYS[2])}\n";

/* KEYS: failures, block. ARGV: window ms, refuse_after (0: never),
 * cooling ms. One more failure; the one reaching refuse_after (and any
 * later one) starts the block. -> {failures, block pttl} */
static const char lua_auth_fail[] =
	"local n = redis.call('INCR', KEYS[1])\n"
	"redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
	"local r = tonumber(ARGV[2])\n"
	"if r > 0 and n >= r then\n"
	"  redis.call('SET', KEYS[2], n, 'PX', ARGV[3])\n"
	"end\n"
	"return {n, redis.call('PTTL', KEYS[2])}\n";

/* KEYS: slot set (member -> lease expiry, Unix ms). ARGV: now ms, lease ms,
 * member, address prefix ("<ip> ") or "", per-address max (0: none),
 * total max (0: none). Drops expired leases, then adds the member unless
 * a limit is reached. -> {0 added | 1 address limit | 2 total limit,
 * sessions of the address, sessions in total} (counts before adding) */
static const char lua_slot_take[] =
	"local now = tonumber(ARGV[1])\n"
	"local lease = tonumber(ARGV[2])\n"
	"redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
	"local total = redis.call('ZCARD', KEYS[1])\n"
	"local maxip = tonumber(ARGV[5])\n"
	"local maxt = tonumber(ARGV[6])\n"
	"local ipn = 0\n"
	"if maxip > 0 then\n"
	"  local p = ARGV[4]\n"
	"  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do\n"
	"    if string.sub(m, 1, #p) == p then ipn = ipn + 1 end\n"
	"  end\n"
	"  if ipn >= maxip then return {1, ipn, total} end\n"
	"end\n"
	"if maxt > 0 and total >= maxt then return {2, ipn, total} end\n"
	"redis.call('ZADD', KEYS[1], now + lease, ARGV[3])\n"
	"if redis.call('PTTL', KEYS[1]) < lease then\n"
	"  redis.call('PEXPIRE', KEYS[1], lease)\n"
	"end\n"
	"return {0, ipn, total}\n";

/* KEYS: slot set. ARGV: now ms, lease ms, member. Renews (or puts back,
 * after Redis lost it) the member's lease. */
static const char lua_slot_renew[] =
	"local now = tonumber(ARGV[1])\n"
	"local lease = tonumber(ARGV[2])\n"
	"redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
	"redis.call('ZADD', KEYS[1], now + lease, ARGV[3])\n"
	"if redis.call('PTTL', KEYS[1]) < lease then\n"
	"  redis.call('PEXPIRE', KEYS[1], lease)\n"
	"end\n"
	"return 1\n";

/* KEYS: this window's counter, the previous window's. ARGV: count, limit,
 * window ms, ms elapsed in this window. The sliding estimate weighs the
 * previous window by the part of it still inside the last window_ms.
 * -> {1 counted | 0 refused, estimate before} */
static const char lua_rate[] =
	"local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
	"local prev = tonumber(redis.call('GET', KEYS[2]) or '0') or 0\n"
	"local w = tonumber(ARGV[3])\n"
	"local est = math.floor(prev * (w - tonumber(ARGV[4])) / w) + cur\n"
	"if est + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return {0, est} end\n"
	"redis.call('INCRBY', KEYS[1], ARGV[1])\n"
	"redis.call('PEXPIRE', KEYS[1], 2 * w)\n"
	"return {1, est}\n";

/* ---- types ---- */

#define KEY_MAX 160
#define MEMBER_MAX 160
#define NODE_MAX 63

enum scope { SC_ADDR, SC_ACCOUNT, SC_TENANT, SC_COUNT };

struct limit {
	unsigned int delay_after, refuse_after;	/* 0: off */
};

/* The numeric limits of an instance (defaults filled in, 0: off). */
struct limits {
	struct limit auth[SC_COUNT];
	unsigned int delay_base_ms, delay_max_ms, window_ms, cooling_ms;
	unsigned int max_userip, max_account, max_tenant, lease_ms;
	unsigned int msg_limit, msg_window_ms;
};

/* A per-node counter. */
struct lentry {
	struct lentry *next;
	uint64_t hash;
	int64_t count;
	uint64_t expires_ms;		/* loop ms; 0: kept while count > 0 */
	uint64_t block_until_ms;	/* loop ms */
	char key[];
};

struct mail_throttle_session {
	struct mail_throttle_session *next, *prev;
	uint64_t account, tenant;
	char ip[MAIL_THROTTLE_ADDR_MAX];
	char member_a[MEMBER_MAX];	/* "<ip> <node>/<instance>-<seq>" */
	char member_t[MEMBER_MAX];	/* "<node>/<instance>-<seq>" */
};

enum req_type { REQ_CHECK, REQ_RESULT, REQ_OPEN, REQ_MESSAGE, REQ_FIRE };

struct req;
struct sub {
	struct req *req;
	bool sent, done;
	enum store_status status;
	int64_t v[3];
};

struct req {
	struct req *next, *prev;	/* t->reqs */
	struct req *deferred_next;
	struct mail_throttle *t;	/* NULL once the instance is gone */
	enum req_type type;
	unsigned int pending;		/* Redis replies outstanding */
	mail_throttle_cb *cb;
	mail_throttle_session_cb *scb;
	void *ctx;
	bool success;
	unsigned int count;
	uint64_t account, tenant;
	uint64_t window;		/* REQ_MESSAGE: window number */
	char ip[MAIL_THROTTLE_ADDR_MAX];
	char addr_key[MAIL_THROTTLE_ADDR_MAX + 8];
	char member_a[MEMBER_MAX], member_t[MEMBER_MAX];
	struct sub sub[SC_COUNT];
};

struct mail_throttle_metrics {
	struct pn_metric_series *fallback;
	struct pn_metric_series *delays;
	struct pn_metric_series *refusals[MAIL_THROTTLE_KIND_COUNT];
};

struct mail_throttle {
	struct pn_loop *loop;
	struct store_redis *redis;
	struct mail_throttle_metrics *metrics;
	char node[NODE_MAX + 1];
	char instance[17];
	uint64_t seq;

	struct limits lim;		/* mail_throttle_set_settings() swaps it */
	unsigned int v6_prefix;		/* fixed: part of the address keys */

	struct lentry **buckets;
	size_t nbuckets;
	unsigned int nentries, max_entries;

	struct req *reqs;
	struct req *deferred, *deferred_tail;
	struct mail_throttle_session *sessions;
	unsigned int nsessions;

	pn_io_id defer_io, tick_io;
	uint64_t next_renew_ms;
	unsigned int tick_ms;

	bool degraded;
	uint64_t degraded_since_ms;
	char last_error[160];

	struct mail_throttle_stats stats;
};

static const char *const kind_names[MAIL_THROTTLE_KIND_COUNT] = {
	[MAIL_THROTTLE_NONE] = "none",
	[MAIL_THROTTLE_AUTH_ADDRESS] = "auth_address",
	[MAIL_THROTTLE_AUTH_ACCOUNT] = "auth_account",
	[MAIL_THROTTLE_AUTH_TENANT] = "auth_tenant",
	[MAIL_THROTTLE_SESSIONS_USERIP] = "sessions_userip",
	[MAIL_THROTTLE_SESSIONS_ACCOUNT] = "sessions_account",
	[MAIL_THROTTLE_SESSIONS_TENANT] = "sessions_tenant",
	[MAIL_THROTTLE_TENANT_MESSAGES] = "tenant_messages",
};

static const char *const kind_reasons[MAIL_THROTTLE_KIND_COUNT] = {
	[MAIL_THROTTLE_NONE] = "",
	[MAIL_THROTTLE_AUTH_ADDRESS] = "Too many failed logins from this address",
	[MAIL_THROTTLE_AUTH_ACCOUNT] = "Too many failed logins for this account",
	[MAIL_THROTTLE_AUTH_TENANT] = "Too many failed logins for this tenant",
	[MAIL_THROTTLE_SESSIONS_USERIP] = "Too many sessions for this user from this address",
	[MAIL_THROTTLE_SESSIONS_ACCOUNT] = "Too many sessions for this user",
	[MAIL_THROTTLE_SESSIONS_TENANT] = "Too many sessions for this tenant",
	[MAIL_THROTTLE_TENANT_MESSAGES] = "Sending rate of this tenant exceeded",
};

static const enum mail_throttle_kind auth_kind[SC_COUNT] = {
	MAIL_THROTTLE_AUTH_ADDRESS, MAIL_THROTTLE_AUTH_ACCOUNT, MAIL_THROTTLE_AUTH_TENANT,
};

const char *mail_throttle_kind_name(enum mail_throttle_kind kind)
{
	return (unsigned int)kind < MAIL_THROTTLE_KIND_COUNT ? kind_names[kind] : "unknown";
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- metrics ---- */

struct mail_throttle_metrics *mail_throttle_metrics_new(struct pn_metrics *reg,
							const char **error_r)
{
	static const char *const kind_label[] = { "kind", NULL };
	struct mail_throttle_metrics *m = calloc(1, sizeof(*m));
	struct pn_metric *fb, *del, *ref;

	if (m == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	fb = pn_metrics_add(reg, PN_METRIC_GAUGE, &(struct pn_metric_opts){
		.name = "throttle_redis_fallback",
		.help = "Loop threads deciding limits from per-node counters because Redis is unreachable." },
		error_r);
	del = fb == NULL ? NULL : pn_metrics_add(reg, PN_METRIC_COUNTER, &(struct pn_metric_opts){
		.name = "throttle_auth_delays_total",
		.help = "Authentication answers delayed after earlier failures." }, error_r);
	ref = del == NULL ? NULL : pn_metrics_add(reg, PN_METRIC_COUNTER, &(struct pn_metric_opts){
		.name = "throttle_refusals_total",
		.help = "Logins, sessions and messages refused by a limit, by limit.",
		.labels = kind_label, .max_series = MAIL_THROTTLE_KIND_COUNT }, error_r);
	if (ref == NULL) {
		free(m);
		return NULL;
	}
	m->fallback = pn_metric_series(fb, NULL);
	m->delays = pn_metric_series(del, NULL);
	for (unsigned int k = 1; k < MAIL_THROTTLE_KIND_COUNT; k++)
		m->refusals[k] = pn_metric_series(ref, PN_LABELS(kind_names[k]));
	return m;
}

void mail_throttle_metrics_free(struct mail_throttle_metrics **m)
{
	free(*m);
	*m = NULL;
}

/* ---- degraded state ---- */

static void set_degraded(struct mail_throttle *t, bool on, const char *error)
{
	if (on && error != NULL && error[0] != '\0')
		snprintf(t->last_error, sizeof(t->last_error), "%s", error);
	if (on == t->degraded)
		return;
	t->degraded = on;
	if (on) {
		char q[200];

		t->degraded_since_ms = pn_loop_now_ms(t->loop);
		pn_log_quote(q, sizeof(q), t->last_error, strlen(t->last_error));
		pn_warn("event=throttle_fallback redis=down limits=per-node error=%s", q);
	} else {
		pn_info("event=throttle_fallback redis=up limits=cluster after_ms=%" PRIu64,
			pn_loop_now_ms(t->loop) - t->degraded_since_ms);
	}
	if (t->metrics != NULL)
		pn_gauge_add(t->metrics->fallback, on ? 1 : -1);
}

static void note_status(struct mail_throttle *t, enum store_status st, const char *error)
{
	set_degraded(t, st != STORE_OK, error);
}

bool mail_throttle_degraded(const struct mail_throttle *t)
{
	return t->redis != NULL && (t->degraded || !store_redis_ready(t->redis));
}

const char *mail_throttle_status(const struct mail_throttle *t, char *buf, size_t size)
{
	if (size == 0)
		return buf;
	if (t->redis == NULL) {
		snprintf(buf, size, "no redis configured, limits counted per node");
	} else if (mail_throttle_degraded(t)) {
		const char *e = t->last_error;

		if (!store_redis_ready(t->redis) && store_redis_last_error(t->redis)[0] != '\0')
			e = store_redis_last_error(t->redis);
		snprintf(buf, size, "redis unavailable for %" PRIu64 " s, limits counted per node%s%s",
			 t->degraded ? (pn_loop_now_ms(t->loop) - t->degraded_since_ms) / 1000 : 0,
			 e[0] != '\0' ? ": " : "", e);
	} else {
		snprintf(buf, size, "cluster-wide");
	}
	return buf;
}

/* ---- per-node counters ---- */

static uint64_t key_hash(const char *key)
{
	return pn_hash64(key, strlen(key), 0x7468726f74746c65ull);
}

/* Drops entries that hold nothing any more. */
static void local_sweep(struct mail_throttle *t, uint64_t now)
{
	for (size_t b = 0; b < t->nbuckets; b++) {
		struct lentry **pp = &t->buckets[b];

		while (*pp != NULL) {
			struct lentry *e = *pp;
			bool dead = e->block_until_ms <= now &&
				(e->expires_ms != 0 ? e->expires_ms <= now : e->count <= 0);

			if (dead) {
				*pp = e->next;
				free(e);
				t->nentries--;
			} else {
				pp = &e->next;
			}
		}
	}
}

/* The entry for key, its count reset if its window ran out; NULL if
 * absent and !create, or the table is full. */
static struct lentry *local_get(struct mail_throttle *t, const char *key, bool create)
{
	uint64_t now = pn_loop_now_ms(t->loop), h = key_hash(key);
	struct lentry **pp = &t->buckets[h & (t->nbuckets - 1)], *e;
	size_t len;

	for (e = *pp; e != NULL; e = e->next) {
		if (e->hash == h && strcmp(e->key, key) == 0) {
			if (e->expires_ms != 0 && e->expires_ms <= now)
				e->count = 0;
			return e;
		}
	}
	if (!create)
		return NULL;
	if (t->nentries >= t->max_entries) {
		local_sweep(t, now);
		if (t->nentries >= t->max_entries)
			return NULL;
	}
	len = strlen(key);
	e = calloc(1, sizeof(*e) + len + 1);
	if (e == NULL)
		return NULL;
	e->hash = h;
	memcpy(e->key, key, len + 1);
	e->next = *pp;
	*pp = e;
	t->nentries++;
	return e;
}

static void local_drop(struct mail_throttle *t, const char *key)
{
	uint64_t h = key_hash(key);
	struct lentry **pp = &t->buckets[h & (t->nbuckets - 1)];

	for (; *pp != NULL; pp = &(*pp)->next) {
		struct lentry *e = *pp;

		if (e->hash == h && strcmp(e->key, key) == 0) {
			*pp = e->next;
			free(e);
			t->nentries--;
			return;
		}
	}
}

static int64_t local_count(struct mail_throttle *t, const char *key)
{
	struct lentry *e = local_get(t, key, false);

	return e != NULL ? e->count : 0;
}

/* Session counts: kept while positive. */
static void local_add(struct mail_throttle *t, const char *key, int64_t by)
{
	struct lentry *e = local_get(t, key, by > 0);

	if (e == NULL)
		return;
	e->count += by;
	if (e->count <= 0 && e->block_until_ms <= pn_loop_now_ms(t->loop))
		local_drop(t, key);
}

/* ---- keys ---- */

static int fmt(char *buf, size_t size, const char *f, ...) __attribute__((format(printf, 3, 4)));
static int fmt(char *buf, size_t size, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(buf, size, f, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Redis keys of an auth scope ("{ip:..}", "{a:..}", "{t:..}" tags) and
 * the per-node key. */
static void auth_keys(const struct req *q, enum scope s, char fail[KEY_MAX],
		      char block[KEY_MAX], char local[KEY_MAX])
{
	char tag[KEY_MAX];

	if (s == SC_ADDR)
		fmt(tag, KEY_MAX, "{ip:%s}", q->addr_key);
	else if (s == SC_ACCOUNT)
		fmt(tag, KEY_MAX, "{a:%" PRIu64 "}", q->account);
	else
		fmt(tag, KEY_MAX, "{t:%" PRIu64 "}", q->tenant);
	fmt(fail, KEY_MAX, "%s:authfail", tag);
	fmt(block, KEY_MAX, "%s:authblock", tag);
	fmt(local, KEY_MAX, "f:%s", tag);
}

/* Canonical text of a client address: ip (IPv4-mapped IPv6 as IPv4) and
 * key, the ip with IPv6 cut to prefix bits ("2001:db8:1:2::/64"). */
static int norm_addr(const char *in, unsigned int prefix, char ip[MAIL_THROTTLE_ADDR_MAX],
		     char key[MAIL_THROTTLE_ADDR_MAX + 8])
{
	struct in_addr a4;
	struct in6_addr a6;

	if (in == NULL || strnlen(in, MAIL_THROTTLE_ADDR_MAX) >= MAIL_THROTTLE_ADDR_MAX)
		return -1;
	if (inet_pton(AF_INET, in, &a4) != 1) {
		if (inet_pton(AF_INET6, in, &a6) != 1)
			return -1;
		if (IN6_IS_ADDR_V4MAPPED(&a6)) {
			memcpy(&a4, &a6.s6_addr[12], 4);
		} else {
			if (inet_ntop(AF_INET6, &a6, ip, MAIL_THROTTLE_ADDR_MAX) == NULL)
				return -1;
			if (prefix >= 128)
				return fmt(key, MAIL_THROTTLE_ADDR_MAX + 8, "%s", ip);
			for (unsigned int bit = prefix; bit < 128; bit++)
				a6.s6_addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
			if (inet_ntop(AF_INET6, &a6, key, MAIL_THROTTLE_ADDR_MAX) == NULL)
				return -1;
			return fmt(key + strlen(key), 8, "/%u", prefix);
		}
	}
	if (inet_ntop(AF_INET, &a4, ip, MAIL_THROTTLE_ADDR_MAX) == NULL)
		return -1;
	return fmt(key, MAIL_THROTTLE_ADDR_MAX + 8, "%s", ip);
}

/* ---- requests ---- */

static struct req *req_new(struct mail_throttle *t, enum req_type type)
{
	struct req *q = calloc(1, sizeof(*q));

	if (q == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	q->t = t;
	q->type = type;
	for (int i = 0; i < SC_COUNT; i++)
		q->sub[i].req = q;
	q->next = t->reqs;
	if (t->reqs != NULL)
		t->reqs->prev = q;
	t->reqs = q;
	return q;
}

static void req_unlink(struct req *q)
{
	struct mail_throttle *t = q->t;

	if (t == NULL)
		return;
	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		t->reqs = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	q->next = q->prev = NULL;
}

/* A request about a client: who's account and tenant, and its address
 * normalised (IPv6 per prefix). NULL with errno: EINVAL for an address
 * that does not parse, or req_new()'s. */
static struct req *req_new_who(struct mail_throttle *t, enum req_type type,
			       const struct mail_throttle_who *who)
{
	struct req *q = req_new(t, type);

	if (q == NULL)
		return NULL;
	q->account = who->account_id;
	q->tenant = who->tenant_id;
	if (norm_addr(who->address, t->v6_prefix, q->ip, q->addr_key) < 0) {
		req_unlink(q);
		free(q);
		errno = EINVAL;
		return NULL;
	}
	return q;
}

static void req_finish(struct req *q);

static void reply_cb(void *ctx, enum store_status st, const redisReply *reply, const char *error)
{
	struct sub *s = ctx;
	struct req *q = s->req;

	s->done = true;
	s->status = st;
	if (st == STORE_OK) {
		if (reply->type == REDIS_REPLY_INTEGER) {
			s->v[0] = reply->integer;
		} else if (reply->type == REDIS_REPLY_ARRAY && reply->elements <= 3) {
			for (size_t i = 0; i < reply->elements; i++) {
				if (reply->element[i]->type != REDIS_REPLY_INTEGER) {
					s->status = STORE_PERMANENT;
					break;
				}
				s->v[i] = reply->element[i]->integer;
			}
		} else if (reply->type != REDIS_REPLY_STATUS) {
			s->status = STORE_PERMANENT;
		}
		if (s->status != STORE_OK)
			error = "unexpected reply to a throttle script";
	}
	if (q->t != NULL) {
		note_status(q->t, s->status, error);
		if (s->status != STORE_OK) {
			char e[200];

			pn_log_quote(e, sizeof(e), error, strlen(error));
			pn_debug("event=throttle_redis_error status=%d error=%s", (int)s->status, e);
		}
	}
	if (--q->pending > 0)
		return;
	if (q->t == NULL) {
		free(q);
		return;
	}
	req_finish(q);
}

/* Sends one command for scope idx; on failure the scope falls back. */
static void send_cmd(struct req *q, int idx, int argc, const char **argv)
{
	struct mail_throttle *t = q->t;
	struct sub *s = &q->sub[idx];

	s->sent = true;
	s->status = STORE_TEMPORARY;
	if (t->redis == NULL)
		return;
	if (store_redis_command(t->redis, reply_cb, s, argc, argv, NULL) < 0) {
		set_degraded(t, true, "redis client refused the command");
		return;
	}
	q->pending++;
}

static void send_eval(struct req *q, int idx, const char *script, const char *k1,
		      const char *k2, int nargs, const char **args)
{
	const char *argv[12] = { "EVAL", script, k2 != NULL ? "2" : "1", k1 };
	int argc = 4;

	if (k2 != NULL)
		argv[argc++] = k2;
	for (int i = 0; i < nargs && argc < 12; i++)
		argv[argc++] = args[i];
	send_cmd(q, idx, argc, argv);
}

/* Called after the submissions: with nothing in flight, finish from the
 * loop (never inside the caller's call). */
static void req_launch(struct req *q)
{
	struct mail_throttle *t = q->t;

	if (q->pending > 0)
		return;
	if (q->type == REQ_FIRE) {
		req_unlink(q);
		free(q);
		return;
	}
	q->deferred_next = NULL;
	if (t->deferred_tail != NULL)
		t->deferred_tail->deferred_next = q;
	else
		t->deferred = q;
	t->deferred_tail = q;
	pn_io_timer_set(t->loop, t->defer_io, 0);
}

static void defer_timer(void *ctx)
{
	struct mail_throttle *t = ctx;
	struct req *q;

	if (t == NULL)
		return;
	q = t->deferred;
	t->deferred = t->deferred_tail = NULL;
	while (q != NULL) {
		struct req *next = q->deferred_next;

		req_finish(q);
		q = next;
	}
}

/* Did scope idx answer from Redis? */
static bool sub_ok(const struct req *q, int idx)
{
	return q->sub[idx].sent && q->sub[idx].done && q->sub[idx].status == STORE_OK;
}

/* ---- authentication ---- */

static unsigned int delay_for(const struct mail_throttle *t, const struct limit *l, int64_t n)
{
	uint64_t d;

	if (l->delay_after == 0 || n < (int64_t)l->delay_after)
		return 0;
	d = t->lim.delay_base_ms;
	for (int64_t i = l->delay_after; i < n && d < t->lim.delay_max_ms; i++)
		d *= 2;
	return d > t->lim.delay_max_ms ? t->lim.delay_max_ms : (unsigned int)d;
}

static bool scope_known(const struct req *q, enum scope s)
{
	return s == SC_ADDR || (s == SC_ACCOUNT ? q->account != 0 : q->tenant != 0);
}

static bool scope_on(const struct mail_throttle *t, enum scope s)
{
	return t->lim.auth[s].delay_after != 0 || t->lim.auth[s].refuse_after != 0;
}

/* Per-node failure (auth result), always counted beside Redis. */
static void local_fail(struct mail_throttle *t, const char *key, const struct limit *l)
{
	struct lentry *e = local_get(t, key, true);
	uint64_t now = pn_loop_now_ms(t->loop);

	if (e == NULL)
		return;
	e->count++;
	e->expires_ms = now + t->lim.window_ms;
	if (l->refuse_after != 0 && e->count >= (int64_t)l->refuse_after)
		e->block_until_ms = now + t->lim.cooling_ms;
}

/* Fills v from the scopes' (failures, block ms). */
static void auth_verdict(struct req *q, struct mail_throttle_verdict *v)
{
	struct mail_throttle *t = q->t;
	uint64_t now = pn_loop_now_ms(t->loop);
	int64_t best_block = 0;

	for (int s = 0; s < SC_COUNT; s++) {
		char fail[KEY_MAX], block[KEY_MAX], local[KEY_MAX];
		int64_t n, blk;
		unsigned int d;

		if (!q->sub[s].sent)
			continue;
		if (sub_ok(q, s)) {
			n = q->sub[s].v[0];
			blk = q->sub[s].v[1];
		} else {
			struct lentry *e;

			auth_keys(q, s, fail, block, local);
			e = local_get(t, local, false);
			n = e != NULL ? e->count : 0;
			blk = e != NULL && e->block_until_ms > now ?
				(int64_t)(e->block_until_ms - now) : 0;
			v->degraded = true;
		}
		if (blk > best_block) {
			best_block = blk;
			v->refuse = true;
			v->kind = auth_kind[s];
			v->count = n;
			v->retry_after_ms = blk > UINT32_MAX ? UINT32_MAX : (unsigned int)blk;
		}
		d = delay_for(t, &t->lim.auth[s], n);
		if (!v->refuse && d > v->delay_ms) {
			v->delay_ms = d;
			v->kind = auth_kind[s];
			v->count = n;
		}
	}
	if (v->refuse)
		v->delay_ms = 0;
}

int mail_throttle_auth_check(struct mail_throttle *t, const struct mail_throttle_who *who,
			     mail_throttle_cb *cb, void *ctx)
{
	struct req *q;

	if (t == NULL || who == NULL || cb == NULL) {
		errno = EINVAL;
		return -1;
	}
	q = req_new_who(t, REQ_CHECK, who);
	if (q == NULL)
		return -1;
	q->cb = cb;
	q->ctx = ctx;
	for (int s = 0; s < SC_COUNT; s++) {
		char fail[KEY_MAX], block[KEY_MAX], local[KEY_MAX];

		if (!scope_known(q, s) || !scope_on(t, s))
			continue;
		auth_keys(q, s, fail, block, local);
		send_eval(q, s, lua_auth_check, fail, block, 0, NULL);
	}
	req_launch(q);
	return 0;
}

int mail_throttle_auth_result(struct mail_throttle *t, const struct mail_throttle_who *who,
			      bool success, mail_throttle_cb *cb, void *ctx)
{
	char win[16], ref[16], cool[16];
	struct req *q;

	if (t == NULL || who == NULL) {
		errno = EINVAL;
		return -1;
	}
	q = req_new_who(t, cb != NULL ? REQ_RESULT : REQ_FIRE, who);
	if (q == NULL)
		return -1;
	q->cb = cb;
	q->ctx = ctx;
	q->success = success;
	if (success) {
		char fail[KEY_MAX], block[KEY_MAX], local[KEY_MAX];

		if (q->account != 0) {
			const char *argv[] = { "DEL", fail };

			auth_keys(q, SC_ACCOUNT, fail, block, local);
			local_drop(t, local);
			send_cmd(q, SC_ACCOUNT, 2, argv);
		}
		req_launch(q);
		return 0;
	}
	fmt(win, sizeof(win), "%u", t->lim.window_ms);
	fmt(cool, sizeof(cool), "%u", t->lim.cooling_ms);
	for (int s = 0; s < SC_COUNT; s++) {
		char fail[KEY_MAX], block[KEY_MAX], local[KEY_MAX];
		const char *args[] = { win, ref, cool };

		if (!scope_known(q, s) || !scope_on(t, s))
			continue;
		auth_keys(q, s, fail, block, local);
		local_fail(t, local, &t->lim.auth[s]);
		fmt(ref, sizeof(ref), "%u", t->lim.auth[s].refuse_after);
		send_eval(q, s, lua_auth_fail, fail, block, 3, args);
	}
	req_launch(q);
	return 0;
}

/* ---- sessions ---- */

static void session_local_keys(uint64_t account, uint64_t tenant, const char *ip,
			       char userip[KEY_MAX], char acct[KEY_MAX], char ten[KEY_MAX])
{
	fmt(userip, KEY_MAX, "s:ai:%" PRIu64 ":%s", account, ip);
	fmt(acct, KEY_MAX, "s:a:%" PRIu64, account);
	fmt(ten, KEY_MAX, "s:t:%" PRIu64, tenant);
}

static void slot_key(char key[KEY_MAX], char kind, uint64_t id)
{
	fmt(key, KEY_MAX, "{%c:%" PRIu64 "}:conns", kind, id);
}

/* Fire and forget: ZREM or a renewal. */
static void slot_fire(struct mail_throttle *t, bool renew, char kind, uint64_t id,
		      const char *member)
{
	char key[KEY_MAX], now[24], lease[16];
	struct req *q;

	if (t->redis == NULL)
		return;
	q = req_new(t, REQ_FIRE);
	if (q == NULL)
		return;
	slot_key(key, kind, id);
	if (renew) {
		const char *args[] = { now, lease, member };

		fmt(now, sizeof(now), "%" PRId64, wall_ms());
		fmt(lease, sizeof(lease), "%u", t->lim.lease_ms);
		send_eval(q, 0, lua_slot_renew, key, NULL, 3, args);
	} else {
		const char *argv[] = { "ZREM", key, member };

		send_cmd(q, 0, 3, argv);
	}
	req_launch(q);
}

int mail_throttle_session_open(struct mail_throttle *t, const struct mail_throttle_who *who,
			       mail_throttle_session_cb *cb, void *ctx)
{
	char key[KEY_MAX], now[24], lease[16], maxip[16], maxa[16], maxt[16], prefix[80];
	struct req *q;

	if (t == NULL || who == NULL || cb == NULL || who->account_id == 0) {
		errno = EINVAL;
		return -1;
	}
	q = req_new_who(t, REQ_OPEN, who);
	if (q == NULL)
		return -1;
	q->scb = cb;
	q->ctx = ctx;
	t->seq++;
	fmt(q->member_t, MEMBER_MAX, "%s/%s-%" PRIu64, t->node, t->instance, t->seq);
	fmt(q->member_a, MEMBER_MAX, "%s %s", q->ip, q->member_t);
	fmt(prefix, sizeof(prefix), "%s ", q->ip);
	fmt(now, sizeof(now), "%" PRId64, wall_ms());
	fmt(lease, sizeof(lease), "%u", t->lim.lease_ms);
	fmt(maxip, sizeof(maxip), "%u", t->lim.max_userip);
	fmt(maxa, sizeof(maxa), "%u", t->lim.max_account);
	fmt(maxt, sizeof(maxt), "%u", t->lim.max_tenant);
	{
		const char *args[] = { now, lease, q->member_a, prefix, maxip, maxa };

		slot_key(key, 'a', q->account);
		send_eval(q, SC_ACCOUNT, lua_slot_take, key, NULL, 6, args);
	}
	if (q->tenant != 0) {
		const char *args[] = { now, lease, q->member_t, "", "0", maxt };

		slot_key(key, 't', q->tenant);
		send_eval(q, SC_TENANT, lua_slot_take, key, NULL, 6, args);
	}
	req_launch(q);
	return 0;
}

static void open_verdict(struct req *q, struct mail_throttle_verdict *v)
{
	struct mail_throttle *t = q->t;
	char userip[KEY_MAX], acct[KEY_MAX], ten[KEY_MAX];

	session_local_keys(q->account, q->tenant, q->ip, userip, acct, ten);
	if (sub_ok(q, SC_ACCOUNT)) {
		const int64_t *r = q->sub[SC_ACCOUNT].v;

		if (r[0] == 1) {
			v->refuse = true;
			v->kind = MAIL_THROTTLE_SESSIONS_USERIP;
			v->count = r[1];
		} else if (r[0] == 2) {
			v->refuse = true;
			v->kind = MAIL_THROTTLE_SESSIONS_ACCOUNT;
			v->count = r[2];
		}
	} else {
		int64_t nip = local_count(t, userip), na = local_count(t, acct);

		v->degraded = true;
		if (t->lim.max_userip != 0 && nip >= (int64_t)t->lim.max_userip) {
			v->refuse = true;
			v->kind = MAIL_THROTTLE_SESSIONS_USERIP;
			v->count = nip;
		} else if (t->lim.max_account != 0 && na >= (int64_t)t->lim.max_account) {
			v->refuse = true;
			v->kind = MAIL_THROTTLE_SESSIONS_ACCOUNT;
			v->count = na;
		}
	}
	if (q->tenant != 0 && !v->refuse) {
		if (sub_ok(q, SC_TENANT)) {
			if (q->sub[SC_TENANT].v[0] != 0) {
				v->refuse = true;
				v->kind = MAIL_THROTTLE_SESSIONS_TENANT;
				v->count = q->sub[SC_TENANT].v[2];
			}
		} else {
			int64_t nt = local_count(t, ten);

			v->degraded = true;
			if (t->lim.max_tenant != 0 && nt >= (int64_t)t->lim.max_tenant) {
				v->refuse = true;
				v->kind = MAIL_THROTTLE_SESSIONS_TENANT;
				v->count = nt;
			}
		}
	}
	if (v->refuse) {
		/* give back the slots Redis did hand out */
		if (sub_ok(q, SC_ACCOUNT) && q->sub[SC_ACCOUNT].v[0] == 0)
			slot_fire(t, false, 'a', q->account, q->member_a);
		if (q->tenant != 0 && sub_ok(q, SC_TENANT) && q->sub[SC_TENANT].v[0] == 0)
			slot_fire(t, false, 't', q->tenant, q->member_t);
		v->retry_after_ms = 0;
	}
}

static struct mail_throttle_session *session_new(struct mail_throttle *t, const struct req *q)
{
	struct mail_throttle_session *s = calloc(1, sizeof(*s));
	char userip[KEY_MAX], acct[KEY_MAX], ten[KEY_MAX];

	if (s == NULL)
		return NULL;
	s->account = q->account;
	s->tenant = q->tenant;
	memcpy(s->ip, q->ip, sizeof(s->ip));
	memcpy(s->member_a, q->member_a, sizeof(s->member_a));
	memcpy(s->member_t, q->member_t, sizeof(s->member_t));
	s->next = t->sessions;
	if (t->sessions != NULL)
		t->sessions->prev = s;
	t->sessions = s;
	t->nsessions++;
	session_local_keys(s->account, s->tenant, s->ip, userip, acct, ten);
	local_add(t, userip, 1);
	local_add(t, acct, 1);
	if (s->tenant != 0)
		local_add(t, ten, 1);
	return s;
}

static void session_unlink(struct mail_throttle *t, struct mail_throttle_session *s)
{
	char userip[KEY_MAX], acct[KEY_MAX], ten[KEY_MAX];

	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		t->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	t->nsessions--;
	session_local_keys(s->account, s->tenant, s->ip, userip, acct, ten);
	local_add(t, userip, -1);
	local_add(t, acct, -1);
	if (s->tenant != 0)
		local_add(t, ten, -1);
}

void mail_throttle_session_close(struct mail_throttle *t, struct mail_throttle_session **sp)
{
	struct mail_throttle_session *s = *sp;

	if (s == NULL)
		return;
	*sp = NULL;
	session_unlink(t, s);
	slot_fire(t, false, 'a', s->account, s->member_a);
	if (s->tenant != 0)
		slot_fire(t, false, 't', s->tenant, s->member_t);
	free(s);
}

static void renew_all(struct mail_throttle *t)
{
	for (struct mail_throttle_session *s = t->sessions; s != NULL; s = s->next) {
		slot_fire(t, true, 'a', s->account, s->member_a);
		if (s->tenant != 0)
			slot_fire(t, true, 't', s->tenant, s->member_t);
	}
}

static void tick_timer(void *ctx)
{
	struct mail_throttle *t = ctx;
	uint64_t now;

	if (t == NULL)
		return;
	now = pn_loop_now_ms(t->loop);
	if (t->redis != NULL) {
		if (!store_redis_ready(t->redis)) {
			set_degraded(t, true, store_redis_last_error(t->redis));
		} else if (t->degraded) {
			/* a probe: its answer ends the fallback */
			struct req *q = req_new(t, REQ_FIRE);
			const char *argv[] = { "PING" };

			if (q != NULL) {
				send_cmd(q, 0, 1, argv);
				req_launch(q);
			}
		}
	}
	if (now >= t->next_renew_ms) {
		renew_all(t);
		t->next_renew_ms = now + t->lim.lease_ms / 3;
	}
	pn_io_timer_set(t->loop, t->tick_io, t->tick_ms);
}

/* ---- tenant message rate ---- */

static void rate_keys(uint64_t tenant, uint64_t w, char cur[KEY_MAX], char prev[KEY_MAX])
{
	fmt(cur, KEY_MAX, "{t:%" PRIu64 "}:rate:msgs:%" PRIu64, tenant, w);
	fmt(prev, KEY_MAX, "{t:%" PRIu64 "}:rate:msgs:%" PRIu64, tenant, w - 1);
}

int mail_throttle_message(struct mail_throttle *t, uint64_t tenant_id, unsigned int count,
			  mail_throttle_cb *cb, void *ctx)
{
	char cur[KEY_MAX], prev[KEY_MAX], n[16], lim[16], win[16], el[16];
	int64_t now = wall_ms();
	struct req *q;

	if (t == NULL || cb == NULL || tenant_id == 0) {
		errno = EINVAL;
		return -1;
	}
	q = req_new(t, REQ_MESSAGE);
	if (q == NULL)
		return -1;
	q->cb = cb;
	q->ctx = ctx;
	q->tenant = tenant_id;
	q->count = count;
	q->window = (uint64_t)now / t->lim.msg_window_ms;
	if (t->lim.msg_limit != 0) {
		const char *args[] = { n, lim, win, el };

		rate_keys(tenant_id, q->window, cur, prev);
		fmt(n, sizeof(n), "%u", count);
		fmt(lim, sizeof(lim), "%u", t->lim.msg_limit);
		fmt(win, sizeof(win), "%u", t->lim.msg_window_ms);
		fmt(el, sizeof(el), "%" PRIu64, (uint64_t)now % t->lim.msg_window_ms);
		send_eval(q, SC_TENANT, lua_rate, cur, prev, 4, args);
	}
	req_launch(q);
	return 0;
}

static void message_verdict(struct req *q, struct mail_throttle_verdict *v)
{
	struct mail_throttle *t = q->t;
	char cur[KEY_MAX], prev[KEY_MAX], lcur[KEY_MAX + 2], lprev[KEY_MAX + 2];
	uint64_t elapsed = (uint64_t)wall_ms() % t->lim.msg_window_ms;
	struct lentry *e;
	int64_t est;

	if (t->lim.msg_limit == 0)
		return;
	rate_keys(q->tenant, q->window, cur, prev);
	fmt(lcur, sizeof(lcur), "m:%s", cur);
	fmt(lprev, sizeof(lprev), "m:%s", prev);
	if (sub_ok(q, SC_TENANT)) {
		v->refuse = q->sub[SC_TENANT].v[0] == 0;
		est = q->sub[SC_TENANT].v[1];
	} else {
		int64_t pc = local_count(t, lprev);

		est = pc * (int64_t)(t->lim.msg_window_ms - elapsed) / t->lim.msg_window_ms +
		      local_count(t, lcur);
		v->refuse = est + q->count > (int64_t)t->lim.msg_limit;
		v->degraded = true;
	}
	v->count = est;
	if (v->refuse) {
		v->kind = MAIL_THROTTLE_TENANT_MESSAGES;
		v->retry_after_ms = (unsigned int)(t->lim.msg_window_ms - elapsed);
		return;
	}
	e = local_get(t, lcur, true);
	if (e != NULL) {
		e->count += q->count;
		e->expires_ms = pn_loop_now_ms(t->loop) + 2ull * t->lim.msg_window_ms;
	}
}

/* ---- completion ---- */

static void req_finish(struct req *q)
{
	struct mail_throttle *t = q->t;
	struct mail_throttle_verdict v = { .reason = "" };
	struct mail_throttle_session *s = NULL;

	req_unlink(q);
	switch (q->type) {
	case REQ_CHECK:
		auth_verdict(q, &v);
		t->stats.checks++;
		if (v.delay_ms > 0) {
			t->stats.delays++;
			if (t->metrics != NULL)
				pn_counter_inc(t->metrics->delays);
		}
		break;
	case REQ_RESULT:
		if (!q->success)
			auth_verdict(q, &v);
		break;
	case REQ_OPEN:
		open_verdict(q, &v);
		break;
	case REQ_MESSAGE:
		message_verdict(q, &v);
		break;
	case REQ_FIRE:
		free(q);
		return;
	}
	if (v.refuse) {
		v.reason = kind_reasons[v.kind];
		if (q->type != REQ_RESULT) {
			t->stats.refusals++;
			if (t->metrics != NULL)
				pn_counter_inc(t->metrics->refusals[v.kind]);
		}
	}
	if (t->redis == NULL)
		v.degraded = false;	/* per node by configuration */
	if (v.degraded)
		t->stats.fallback_decisions++;
	if (q->type == REQ_OPEN) {
		if (!v.refuse) {
			s = session_new(t, q);
			if (s == NULL) {
				/* no memory: refuse rather than count a slot
				 * nobody can give back */
				v.refuse = true;
				v.kind = MAIL_THROTTLE_SESSIONS_ACCOUNT;
				v.reason = "Out of memory";
				if (sub_ok(q, SC_ACCOUNT))
					slot_fire(t, false, 'a', q->account, q->member_a);
				if (q->tenant != 0 && sub_ok(q, SC_TENANT))
					slot_fire(t, false, 't', q->tenant, q->member_t);
			}
		}
		q->scb(q->ctx, &v, s);
	} else {
		q->cb(q->ctx, &v);
	}
	free(q);
}

/* ---- instance ---- */

static const struct pn_io_handlers defer_handlers = { .on_timer = defer_timer };
static const struct pn_io_handlers tick_handlers = { .on_timer = tick_timer };

static unsigned int pick(unsigned int v, unsigned int def)
{
	return v == 0 ? def : v == MAIL_THROTTLE_OFF ? 0 : v;
}

static bool node_ok(const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n == 0 || n > NODE_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* The limits of set, defaults filled in, into *lim_r; -1 with *error_r
 * (and *lim_r untouched) when they make no sense. */
static int read_limits(const struct mail_throttle_settings *set, struct limits *lim_r,
		       const char **error_r)
{
	struct limits l;

	l.auth[SC_ADDR] = (struct limit){ pick(set->auth_address.delay_after, 5),
					  pick(set->auth_address.refuse_after, 30) };
	l.auth[SC_ACCOUNT] = (struct limit){ pick(set->auth_account.delay_after, 3),
					     pick(set->auth_account.refuse_after, 10) };
	l.auth[SC_TENANT] = (struct limit){ pick(set->auth_tenant.delay_after, 1000),
					    pick(set->auth_tenant.refuse_after, MAIL_THROTTLE_OFF) };
	l.delay_base_ms = pick(set->auth_delay_base_ms, 500);
	l.delay_max_ms = pick(set->auth_delay_max_ms, 15000);
	l.window_ms = pick(set->auth_window_ms, 900000);
	l.cooling_ms = pick(set->auth_cooling_ms, 900000);
	l.max_userip = pick(set->max_userip_sessions, 10);
	l.max_account = pick(set->max_account_sessions, MAIL_THROTTLE_OFF);
	l.max_tenant = pick(set->max_tenant_sessions, MAIL_THROTTLE_OFF);
	l.lease_ms = pick(set->session_lease_ms, 90000);
	l.msg_limit = pick(set->tenant_messages_per_window, MAIL_THROTTLE_OFF);
	l.msg_window_ms = pick(set->tenant_message_window_ms, 3600000);
	if (l.window_ms == 0 || l.cooling_ms == 0 || l.lease_ms < 300 || l.msg_window_ms == 0) {
		*error_r = "throttle: window, cooling and message window must not be off; "
			   "session lease at least 300 ms";
		return -1;
	}
	if (l.delay_max_ms < l.delay_base_ms)
		l.delay_max_ms = l.delay_base_ms;
	*lim_r = l;
	return 0;
}

int mail_throttle_settings_check(const struct mail_throttle_settings *set, const char **error_r)
{
	struct limits l;

	if (set == NULL) {
		*error_r = "throttle: no settings";
		return -1;
	}
	return read_limits(set, &l, error_r);
}

int mail_throttle_set_settings(struct mail_throttle *t, const struct mail_throttle_settings *set,
			       const char **error_r)
{
	struct limits l;
	uint64_t now;
	unsigned int tick_ms;

	if (t == NULL || set == NULL) {
		*error_r = "throttle: no instance or no settings";
		return -1;
	}
	if (read_limits(set, &l, error_r) < 0)
		return -1;
	t->lim = l;
	/* A shorter lease: renew the open sessions' slots before the new
	 * lease would let them lapse. */
	now = pn_loop_now_ms(t->loop);
	if (t->next_renew_ms > now + l.lease_ms / 3)
		t->next_renew_ms = now + l.lease_ms / 3;
	tick_ms = l.lease_ms / 3 < 1000 ? l.lease_ms / 3 : 1000;
	if (tick_ms != t->tick_ms) {
		t->tick_ms = tick_ms;
		pn_io_timer_set(t->loop, t->tick_io, tick_ms);
	}
	return 0;
}

struct mail_throttle *mail_throttle_new(struct pn_loop *loop, struct store_redis *redis,
					const struct mail_throttle_settings *set,
					const char **error_r)
{
	struct mail_throttle *t;
	uint8_t rnd[8];

	if (loop == NULL || set == NULL || !node_ok(set->node)) {
		*error_r = "throttle: node name missing or not [A-Za-z0-9._-]{1,63}";
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	t->loop = loop;
	t->redis = redis;
	t->metrics = set->metrics;
	snprintf(t->node, sizeof(t->node), "%s", set->node);
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		uint64_t x = wall_ms() ^ (uint64_t)(uintptr_t)t;

		memcpy(rnd, &x, sizeof(rnd));
	}
	pn_hex_encode(rnd, sizeof(rnd), t->instance);

	t->v6_prefix = pick(set->ipv6_prefix, 64);
	t->max_entries = pick(set->local_max_entries, 65536);
	if (t->v6_prefix > 128 || t->max_entries == 0) {
		free(t);
		*error_r = "throttle: ipv6_prefix at most 128; entries must not be off";
		return NULL;
	}
	if (read_limits(set, &t->lim, error_r) < 0) {
		free(t);
		return NULL;
	}
	t->nbuckets = 64;
	while (t->nbuckets < t->max_entries / 2 && t->nbuckets < (1u << 20))
		t->nbuckets *= 2;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	t->tick_ms = t->lim.lease_ms / 3 < 1000 ? t->lim.lease_ms / 3 : 1000;
	t->next_renew_ms = pn_loop_now_ms(loop) + t->lim.lease_ms / 3;
	t->defer_io = pn_io_add(loop, -1, 0, &defer_handlers, t);
	t->tick_io = pn_io_add(loop, -1, 0, &tick_handlers, t);
	if (t->buckets == NULL || t->defer_io == PN_IO_NONE || t->tick_io == PN_IO_NONE ||
	    pn_io_timer_set(loop, t->tick_io, t->tick_ms) < 0) {
		if (t->defer_io != PN_IO_NONE)
			pn_io_close(loop, t->defer_io);
		if (t->tick_io != PN_IO_NONE)
			pn_io_close(loop, t->tick_io);
		free(t->buckets);
		free(t);
		*error_r = "throttle: no memory or no loop slot";
		return NULL;
	}
	return t;
}

void mail_throttle_free(struct mail_throttle **tp)
{
	struct mail_throttle *t = *tp;

	if (t == NULL)
		return;
	*tp = NULL;
	/* requests waiting for Redis: their replies find no instance */
	while (t->reqs != NULL) {
		struct req *q = t->reqs;

		req_unlink(q);
		if (q->pending == 0)
			free(q);	/* deferred: no reply to wait for */
		else
			q->t = NULL;
	}
	while (t->sessions != NULL) {
		struct mail_throttle_session *s = t->sessions;

		session_unlink(t, s);
		free(s);
	}
	if (t->degraded && t->metrics != NULL)
		pn_gauge_dec(t->metrics->fallback);
	pn_io_set_ctx(t->loop, t->defer_io, NULL);
	pn_io_set_ctx(t->loop, t->tick_io, NULL);
	pn_io_close(t->loop, t->defer_io);
	pn_io_close(t->loop, t->tick_io);
	for (size_t b = 0; b < t->nbuckets; b++) {
		while (t->buckets[b] != NULL) {
			struct lentry *e = t->buckets[b];

			t->buckets[b] = e->next;
			free(e);
		}
	}
	free(t->buckets);
	free(t);
}

void mail_throttle_get_stats(const struct mail_throttle *t, struct mail_throttle_stats *stats_r)
{
	*stats_r = t->stats;
	stats_r->sessions = t->nsessions;
	stats_r->local_entries = t->nentries;
}
