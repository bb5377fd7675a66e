/* Tests of the asynchronous Redis client and Postern's Redis operations
 * against the harness' Redis (POSTERN_REDIS_HOST/PORT): commands and error
 * replies, leased locks (expiry hands the lock to the next holder, a wrong
 * token can neither renew nor release), pub/sub delivery and
 * unsubscription, expiring counters, the session registry and the node
 * registry; and a server that is not there. Skipped without the service.
 */
#include "postern/store-redis-ops.h"
#include "store-test.h"

#include <errno.h>
#include <inttypes.h>
#include <sys/time.h>

static const char *host;
static int port;
static uint64_t test_acct;		/* a per-run account id so runs do not collide */

static int observed[3];

static void observe(void *ctx, enum store_status st, uint64_t usec)
{
	(void)ctx;
	(void)usec;
	observed[-st]++;
}

static struct store_redis *new_client(struct pn_loop *loop)
{
	struct store_redis_settings set = {
		.host = host, .port = port, .backoff_min_ms = 50, .backoff_max_ms = 300,
		.observe = observe,
	};
	const char *error;
	struct store_redis *r = store_redis_new(loop, &set, &error);

	if (r == NULL)
		fprintf(stderr, "store_redis_new: %s\n", error);
	return r;
}

static bool wait_ready(struct pn_loop *loop, struct store_redis *r)
{
	uint64_t end = st_now_ms() + 3000;

	while (!store_redis_ready(r) && st_now_ms() < end)
		pn_loop_run_once(loop, 20);
	return store_redis_ready(r);
}

struct cmdres {
	bool done;
	enum store_status status;
	int type;
	long long integer;
	char str[128];
	char error[160];
	bool held;
	int64_t value;
};

static void cmd_cb(void *ctx, enum store_status st, const redisReply *reply, const char *error)
{
	struct cmdres *x = ctx;

	x->done = true;
	x->status = st;
	snprintf(x->error, sizeof(x->error), "%s", error);
	if (reply != NULL) {
		x->type = reply->type;
		x->integer = reply->integer;
		if (reply->str != NULL)
			snprintf(x->str, sizeof(x->str), "%.*s", (int)reply->len, reply->str);
	}
}

static void lock_cb(void *ctx, enum store_status st, bool held, const char *error)
{
	struct cmdres *x = ctx;

	x->done = true;
	x->status = st;
	x->held = held;
	snprintf(x->error, sizeof(x->error), "%s", error);
}

static void count_cb(void *ctx, enum store_status st, int64_t value, const char *error)
{
	struct cmdres *x = ctx;

	x->done = true;
	x->status = st;
	x->value = value;
	snprintf(x->error, sizeof(x->error), "%s", error);
}

static void done_cb(void *ctx, enum store_status st, const char *error)
{
	struct cmdres *x = ctx;

	x->done = true;
	x->status = st;
	snprintf(x->error, sizeof(x->error), "%s", error);
}

static struct cmdres run_cmd(struct pn_loop *loop, struct store_redis *r, int argc,
			     const char *const *argv)
{
	struct cmdres x = { 0 };

	CHECK_INT(store_redis_command(r, cmd_cb, &x, argc, argv, NULL), 0);
	CHECK(!x.done);
	CHECK(st_run_until(loop, &x.done, 3000));
	return x;
}

PN_TEST(test_commands)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_redis *r = new_client(loop);
	char key[64];
	struct cmdres x;

	if (r == NULL)
		return;
	CHECK(wait_ready(loop, r));
	snprintf(key, sizeof(key), "test-redis:%" PRIu64 ":k", test_acct);
	{
		const char *argv[] = { "SET", key, "v\0x" };
		size_t lens[] = { 3, strlen(key), 3 };
		struct cmdres y = { 0 };

		CHECK_INT(store_redis_command(r, cmd_cb, &y, 3, argv, lens), 0);
		CHECK(st_run_until(loop, &y.done, 3000));
		CHECK_INT(y.status, STORE_OK);
		CHECK_STR(y.str, "OK");
	}
	{
		const char *argv[] = { "STRLEN", key };

		x = run_cmd(loop, r, 2, argv);
		CHECK_INT(x.status, STORE_OK);
		CHECK_INT(x.integer, 3);
	}
	{
		/* WRONGTYPE: a permanent error with the reply */
		const char *argv[] = { "LPUSH", key, "x" };

		x = run_cmd(loop, r, 3, argv);
		CHECK_INT(x.status, STORE_PERMANENT);
		CHECK_INT(x.type, REDIS_REPLY_ERROR);
		CHECK(strstr(x.error, "WRONGTYPE") != NULL);
	}
	{
		const char *argv[] = { "DEL", key };

		x = run_cmd(loop, r, 2, argv);
		CHECK_INT(x.integer, 1);
	}
	/* many at once, in order */
	{
		static struct cmdres many[100];
		int ok = 0;

		for (int i = 0; i < 100; i++) {
			const char *argv[] = { "INCR", key };

			memset(&many[i], 0, sizeof(many[i]));
			CHECK_INT(store_redis_command(r, cmd_cb, &many[i], 2, argv, NULL), 0);
		}
		CHECK(st_run_until(loop, &many[99].done, 3000));
		for (int i = 0; i < 100; i++)
			if (many[i].done && many[i].integer == i + 1)
				ok++;
		CHECK_INT(ok, 100);
		const char *argv[] = { "DEL", key };
		run_cmd(loop, r, 2, argv);
	}
	errno = 0;
	CHECK_INT(store_redis_command(r, cmd_cb, &x, 0, NULL, NULL), -1);
	CHECK_INT(errno, EINVAL);
	/* the observe hook saw every command: 104 ok, 1 WRONGTYPE */
	CHECK_INT(observed[0], 104);
	CHECK_INT(observed[2], 1);
	store_redis_free(&r);
	CHECK(r == NULL);
	pn_loop_free(&loop);
}

PN_TEST(test_locks)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_redis *r = new_client(loop);
	struct store_rlock a, b, forged;
	struct cmdres x = { 0 }, y = { 0 };
	char key[STORE_RKEY_MAX];

	if (r == NULL)
		return;
	CHECK(store_rkey_account(key, sizeof(key), test_acct, "lock:pop3") > 0);
	/* a takes it with a short lease */
	CHECK_INT(store_rlock_acquire(r, &a, key, 300, lock_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(x.status, STORE_OK);
	CHECK(x.held);
	CHECK_INT(strlen(a.token), STORE_RLOCK_TOKEN_LEN);
	/* b cannot while the lease runs */
	CHECK_INT(store_rlock_acquire(r, &b, key, 300, lock_cb, &y), 0);
	CHECK(st_run_until(loop, &y.done, 3000));
	CHECK_INT(y.status, STORE_OK);
	CHECK(!y.held);
	CHECK(strcmp(a.token, b.token) != 0);
	/* a wrong token neither releases nor renews */
	forged = a;
	memcpy(forged.token, b.token, sizeof(forged.token));
	memset(&y, 0, sizeof(y));
	CHECK_INT(store_rlock_release(r, &forged, lock_cb, &y), 0);
	CHECK(st_run_until(loop, &y.done, 3000));
	CHECK_INT(y.status, STORE_OK);
	CHECK(!y.held);
	memset(&y, 0, sizeof(y));
	CHECK_INT(store_rlock_renew(r, &forged, 10000, lock_cb, &y), 0);
	CHECK(st_run_until(loop, &y.done, 3000));
	CHECK(!y.held);
	/* the holder renews */
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_rlock_renew(r, &a, 300, lock_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK(x.held);
	/* a stops renewing (a crashed node): after the lease, b gets it */
	st_run_for(loop, 400);
	memset(&y, 0, sizeof(y));
	CHECK_INT(store_rlock_acquire(r, &b, key, 5000, lock_cb, &y), 0);
	CHECK(st_run_until(loop, &y.done, 3000));
	CHECK(y.held);
	/* and a's late release does not take it from b */
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_rlock_release(r, &a, lock_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(x.status, STORE_OK);
	CHECK(!x.held);
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_rlock_release(r, &b, lock_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK(x.held);
	/* free again */
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_rlock_acquire(r, &a, key, 300, lock_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK(x.held);
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_rlock_release(r, &a, lock_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK(x.held);
	store_redis_free(&r);
	pn_loop_free(&loop);
}

struct subrec {
	int ready, lost, messages;
	char last[64];
	char channel[STORE_REDIS_CHANNEL_MAX + 1];
	struct store_redis_sub **self;	/* unsubscribe on the first message */
};

static void sub_cb(void *ctx, enum store_redis_sub_event ev, const char *channel,
		   const char *msg, size_t len)
{
	struct subrec *s = ctx;

	snprintf(s->channel, sizeof(s->channel), "%s", channel);
	switch (ev) {
	case STORE_REDIS_SUB_READY:
		s->ready++;
		break;
	case STORE_REDIS_SUB_LOST:
		s->lost++;
		break;
	case STORE_REDIS_SUB_MESSAGE:
		s->messages++;
		snprintf(s->last, sizeof(s->last), "%.*s", (int)len, msg);
		if (s->self != NULL)
			store_redis_unsubscribe(s->self);
		break;
	}
}

static int64_t publish(struct pn_loop *loop, struct store_redis *r, uint64_t mbox,
		       const char *msg)
{
	struct cmdres x = { 0 };

	CHECK_INT(store_rnotify_publish(r, test_acct, mbox, msg, strlen(msg), count_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(x.status, STORE_OK);
	return x.value;
}

PN_TEST(test_pubsub)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_redis *r = new_client(loop);
	struct subrec s1 = { 0 }, s2 = { 0 }, s3 = { 0 };
	struct store_redis_sub *h1, *h2, *h3;
	struct store_redis_stats st;

	if (r == NULL)
		return;
	CHECK(wait_ready(loop, r));
	h1 = store_rnotify_subscribe(r, test_acct, 7, sub_cb, &s1);
	h2 = store_rnotify_subscribe(r, test_acct, 7, sub_cb, &s2);
	CHECK(h1 != NULL && h2 != NULL);
	CHECK_INT(s1.ready, 0); /* never inside the call */
	CHECK(st_run_count(loop, &s2.ready, 1, 3000));
	CHECK_INT(s1.ready, 1);
	/* one SUBSCRIBE on the wire for both: one receiving connection */
	CHECK_INT(publish(loop, r, 7, "v=1 modseq=5"), 1);
	CHECK(st_run_count(loop, &s2.messages, 1, 3000));
	CHECK_INT(s1.messages, 1);
	CHECK_STR(s1.last, "v=1 modseq=5");
	{
		char chan[STORE_RKEY_MAX];

		store_rkey_mailbox(chan, sizeof(chan), test_acct, 7);
		CHECK_STR(s1.channel, chan);
	}
	/* another mailbox's messages do not arrive here */
	CHECK_INT(publish(loop, r, 8, "other"), 0);
	/* a late subscriber to a subscribed channel gets READY too */
	h3 = store_rnotify_subscribe(r, test_acct, 7, sub_cb, &s3);
	CHECK(st_run_count(loop, &s3.ready, 1, 3000));
	/* a handle may drop itself from its callback */
	s3.self = &h3;
	publish(loop, r, 7, "two");
	CHECK(st_run_count(loop, &s1.messages, 2, 3000));
	st_run_for(loop, 50);
	CHECK_INT(s2.messages, 2);
	CHECK_INT(s3.messages, 1);
	CHECK(h3 == NULL);
	publish(loop, r, 7, "three");
	CHECK(st_run_count(loop, &s1.messages, 3, 3000));
	st_run_for(loop, 50);
	CHECK_INT(s3.messages, 1);
	/* the last handle unsubscribes the channel */
	store_redis_unsubscribe(&h1);
	store_redis_unsubscribe(&h2);
	CHECK(h1 == NULL && h2 == NULL);
	st_run_for(loop, 100);
	CHECK_INT(publish(loop, r, 7, "nobody"), 0);
	store_redis_get_stats(r, &st);
	CHECK_INT(st.channels, 0);
	CHECK_INT(s1.lost, 0);
	/* subscribe and drop at once: nothing is left behind */
	h1 = store_rnotify_subscribe(r, test_acct, 9, sub_cb, &s1);
	store_redis_unsubscribe(&h1);
	h2 = store_rnotify_subscribe(r, test_acct, 9, sub_cb, &s2);
	CHECK(st_run_count(loop, &s2.ready, 2, 3000));
	CHECK_INT(publish(loop, r, 9, "x"), 1);
	store_redis_unsubscribe(&h2);
	st_run_for(loop, 100);
	store_redis_get_stats(r, &st);
	CHECK_INT(st.channels, 0);
	store_redis_free(&r);
	pn_loop_free(&loop);
}

PN_TEST(test_counters)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_redis *r = new_client(loop);
	char key[STORE_RKEY_MAX];
	struct cmdres x;

	if (r == NULL)
		return;
	store_rkey_account(key, sizeof(key), test_acct, "authfail");
	for (int i = 1; i <= 3; i++) {
		memset(&x, 0, sizeof(x));
		CHECK_INT(store_rcounter_incr(r, key, 1, 300, count_cb, &x), 0);
		CHECK(st_run_until(loop, &x.done, 3000));
		CHECK_INT(x.status, STORE_OK);
		CHECK_INT(x.value, i);
	}
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_rcounter_incr(r, key, 10, 300, count_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(x.value, 13);
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_rcounter_get(r, key, count_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(x.value, 13);
	{
		/* the window started at the first count, not renewed since */
		const char *argv[] = { "PTTL", key };

		x = run_cmd(loop, r, 2, argv);
		CHECK(x.integer > 0 && x.integer <= 300);
	}
	st_run_for(loop, 350);
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_rcounter_get(r, key, count_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(x.status, STORE_OK);
	CHECK_INT(x.value, 0);
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_rcounter_incr(r, key, 1, 300, count_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(x.value, 1);
	CHECK_INT(store_rcounter_incr(r, "bad key", 1, 300, count_cb, &x), -1);
	store_redis_free(&r);
	pn_loop_free(&loop);
}

struct sessions_res {
	bool done;
	enum store_status status;
	size_t count;
	char fields[4][256];
	char users[4][STORE_ADDRESS_MAX + 1];
	bool stale[4];
};

static void sessions_cb(void *ctx, enum store_status st, const struct store_rsession_entry *e,
			size_t n, const char *error)
{
	struct sessions_res *x = ctx;

	(void)error;
	x->done = true;
	x->status = st;
	x->count = n;
	for (size_t i = 0; i < n && i < 4; i++) {
		snprintf(x->fields[i], sizeof(x->fields[i]), "%s", e[i].field);
		snprintf(x->users[i], sizeof(x->users[i]), "%s", e[i].rec.user);
		x->stale[i] = e[i].stale;
	}
}

PN_TEST(test_sessions)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_redis *r = new_client(loop);
	struct store_session_record rec = {
		.node = "fe1", .proto = "imap", .client = "192.0.2.10:50123",
		.user = "demo@example.test", .since = 1764268800, .seen = 1764268830,
	};
	struct cmdres x = { 0 };
	struct sessions_res l = { 0 };

	if (r == NULL)
		return;
	CHECK_INT(store_rsession_put(r, test_acct, "fe1/s1", &rec, done_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(x.status, STORE_OK);
	memset(&x, 0, sizeof(x));
	snprintf(rec.node, sizeof(rec.node), "fe2");
	CHECK_INT(store_rsession_put(r, test_acct, "fe2/s9", &rec, done_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	{
		char key[STORE_SESSION_KEY_MAX];
		const char *argv[] = { "TTL", key };

		store_session_key(test_acct, key, sizeof(key));
		x = run_cmd(loop, r, 2, argv);
		CHECK(x.integer > 0 && x.integer <= 2 * STORE_SESSION_HEARTBEAT_SECS);
	}
	CHECK_INT(store_rsession_list(r, test_acct, 1764268830 + 10, sessions_cb, &l), 0);
	CHECK(st_run_until(loop, &l.done, 3000));
	CHECK_INT(l.status, STORE_OK);
	CHECK_INT(l.count, 2);
	CHECK_STR(l.users[0], "demo@example.test");
	CHECK(!l.stale[0]);
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_rsession_remove(r, test_acct, "fe1/s1", done_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	memset(&l, 0, sizeof(l));
	/* much later: the remaining record is stale */
	CHECK_INT(store_rsession_list(r, test_acct, 1764268830 + 1000, sessions_cb, &l), 0);
	CHECK(st_run_until(loop, &l.done, 3000));
	CHECK_INT(l.count, 1);
	CHECK_STR(l.fields[0], "fe2/s9");
	CHECK(l.stale[0]);
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_rsession_remove(r, test_acct, "fe2/s9", done_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(store_rsession_put(r, test_acct, "bad field", &rec, done_cb, &x), -1);
	store_redis_free(&r);
	pn_loop_free(&loop);
}

struct nodes_res {
	bool done;
	enum store_status status;
	size_t count;
	struct store_rnode nodes[8];
};

static void nodes_cb(void *ctx, enum store_status st, const struct store_rnode *nodes,
		     size_t n, const char *error)
{
	struct nodes_res *x = ctx;

	(void)error;
	x->done = true;
	x->status = st;
	x->count = 0;
	/* only this run's nodes: other tests may share the Redis */
	for (size_t i = 0; i < n; i++) {
		char prefix[32];

		snprintf(prefix, sizeof(prefix), "t%" PRIu64 "-", test_acct);
		if (strncmp(nodes[i].name, prefix, strlen(prefix)) == 0 && x->count < 8)
			x->nodes[x->count++] = nodes[i];
	}
}

PN_TEST(test_nodes)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_redis *r = new_client(loop);
	struct store_rnode a = { .addr = "10.0.0.1:1143", .version = "0.1.0", .sessions = 12,
				 .ready = true };
	struct store_rnode b = { .addr = "10.0.0.2:1143", .version = "0.1.0", .sessions = 3 };
	struct cmdres x = { 0 };
	struct nodes_res l = { 0 };
	struct timeval tv;
	int64_t now;

	if (r == NULL)
		return;
	gettimeofday(&tv, NULL);
	now = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
	snprintf(a.name, sizeof(a.name), "t%" PRIu64 "-a", test_acct);
	snprintf(b.name, sizeof(b.name), "t%" PRIu64 "-b", test_acct);
	/* b's heartbeat is old: not live */
	CHECK_INT(store_rnode_heartbeat(r, &b, now - 20000, 60000, done_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(x.status, STORE_OK);
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_rnode_heartbeat(r, &a, now, 10000, done_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(x.status, STORE_OK);
	CHECK_INT(store_rnode_list(r, now, 10000, nodes_cb, &l), 0);
	CHECK(st_run_until(loop, &l.done, 3000));
	CHECK_INT(l.status, STORE_OK);
	CHECK_INT(l.count, 1);
	CHECK_STR(l.nodes[0].name, a.name);
	CHECK_STR(l.nodes[0].addr, "10.0.0.1:1143");
	CHECK_STR(l.nodes[0].version, "0.1.0");
	CHECK_INT(l.nodes[0].sessions, 12);
	CHECK(l.nodes[0].ready);
	CHECK_INT(l.nodes[0].seen_ms, now);
	/* with a longer window both, oldest first */
	memset(&l, 0, sizeof(l));
	CHECK_INT(store_rnode_list(r, now, 60000, nodes_cb, &l), 0);
	CHECK(st_run_until(loop, &l.done, 3000));
	CHECK_INT(l.count, 2);
	CHECK_STR(l.nodes[0].name, b.name);
	CHECK(!l.nodes[0].ready);
	/* removal */
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_rnode_remove(r, a.name, done_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_rnode_remove(r, b.name, done_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	memset(&l, 0, sizeof(l));
	CHECK_INT(store_rnode_list(r, now, 60000, nodes_cb, &l), 0);
	CHECK(st_run_until(loop, &l.done, 3000));
	CHECK_INT(l.count, 0);
	snprintf(a.name, sizeof(a.name), "bad name");
	CHECK_INT(store_rnode_heartbeat(r, &a, now, 10000, done_cb, &x), -1);
	store_redis_free(&r);
	pn_loop_free(&loop);
}

PN_TEST(test_server_absent)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_redis_settings set = {
		.host = "127.0.0.1", .port = 1, .backoff_min_ms = 50, .backoff_max_ms = 200,
	};
	const char *error;
	struct store_redis *r = store_redis_new(loop, &set, &error);
	struct cmdres x = { 0 };
	const char *argv[] = { "PING" };
	struct store_redis_stats st;
	uint64_t t0;

	CHECK(r != NULL);
	if (r == NULL)
		return;
	st_run_for(loop, 150);
	CHECK(!store_redis_ready(r));
	t0 = st_now_ms();
	CHECK_INT(store_redis_command(r, cmd_cb, &x, 1, argv, NULL), 0);
	CHECK(!x.done);
	CHECK(st_run_until(loop, &x.done, 1000));
	CHECK_INT(x.status, STORE_TEMPORARY);
	CHECK(st_now_ms() - t0 < 300);
	store_redis_get_stats(r, &st);
	CHECK(st.connect_failures >= 1);
	CHECK(strstr(store_redis_last_error(r), "refused") != NULL);
	store_redis_free(&r);
	/* names are refused: hiredis would resolve them synchronously */
	set.host = "localhost";
	CHECK(store_redis_new(loop, &set, &error) == NULL);
	pn_loop_free(&loop);
}

/* AUTH goes first on each connection; a refused one is a failed connect
 * attempt. The harness' Redis has no password: its default user accepts
 * any password in the ACL form and refuses the legacy one. */
PN_TEST(test_auth)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_redis_settings set = {
		.host = host, .port = port, .username = "default", .password = "secret",
		.backoff_min_ms = 50, .backoff_max_ms = 200,
	};
	const char *error, *ping[] = { "PING" };
	struct store_redis *r = store_redis_new(loop, &set, &error);
	struct cmdres x = { 0 };

	CHECK(r != NULL);
	if (r == NULL)
		return;
	/* sent before the connection is up: queued behind AUTH */
	CHECK_INT(store_redis_command(r, cmd_cb, &x, 1, ping, NULL), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(x.status, STORE_OK);
	CHECK_STR(x.str, "PONG");
	store_redis_free(&r);

	set.username = NULL;
	r = store_redis_new(loop, &set, &error);
	CHECK(r != NULL);
	if (r == NULL)
		return;
	st_run_for(loop, 200);
	CHECK(!store_redis_ready(r) || strstr(store_redis_last_error(r), "AUTH") != NULL);
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_redis_command(r, cmd_cb, &x, 1, ping, NULL), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(x.status, STORE_TEMPORARY);
	CHECK(strstr(store_redis_last_error(r), "AUTH refused") != NULL);
	store_redis_free(&r);
	pn_loop_free(&loop);
}

int pn_test_failures_;

int main(void)
{
	static const struct pn_test_case cases[] = {
		PN_TEST_CASE(test_commands),
		PN_TEST_CASE(test_locks),
		PN_TEST_CASE(test_pubsub),
		PN_TEST_CASE(test_counters),
		PN_TEST_CASE(test_sessions),
		PN_TEST_CASE(test_nodes),
		PN_TEST_CASE(test_server_absent),
		PN_TEST_CASE(test_auth),
	};

	host = getenv("POSTERN_REDIS_HOST");
	if (host == NULL || getenv("POSTERN_REDIS_PORT") == NULL)
		return pn_test_skip("test-redis", "POSTERN_REDIS_HOST/PORT not set (run tests/run)");
	port = atoi(getenv("POSTERN_REDIS_PORT"));
	test_acct = 900000000000ull + (uint64_t)getpid() * 1000u + (uint64_t)(st_now_ms() % 1000);
	return pn_test_run("test-redis", cases, sizeof(cases) / sizeof(cases[0]));
}
