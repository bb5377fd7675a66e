/* Fault tests of the asynchronous storage clients against the harness'
 * services, which they stop and start with tests/harness/services
 * (POSTERN_SERVICES_DIR): PostgreSQL restarted (fast, then immediate)
 * during a query gives a temporary failure, fails fast while down and
 * recovers by itself; Redis stopped gives temporary failures quickly, does
 * not disturb PostgreSQL, and the client (commands and subscriptions)
 * comes back when Redis does. Registered RUN_SERIAL in ctest: it takes the
 * shared services away from other tests.
 */
#include "postern/store-pgpool.h"
#include "postern/store-redis-ops.h"
#include "store-test.h"

#include <signal.h>

static const char *dsn;

struct res {
	bool done;
	enum store_status status;
	char error[256];
	char value[64];
	uint64_t at;
};

static void pg_cb(void *ctx, struct store_pg_reply *r)
{
	struct res *x = ctx;

	x->done = true;
	x->status = r->status;
	x->at = st_now_ms();
	snprintf(x->error, sizeof(x->error), "%s", r->error);
	if (r->status == STORE_OK && PQntuples(r->res) > 0)
		snprintf(x->value, sizeof(x->value), "%s", PQgetvalue(r->res, 0, 0));
}

static void redis_cb(void *ctx, enum store_status st, const redisReply *reply,
		     const char *error)
{
	struct res *x = ctx;

	x->done = true;
	x->status = st;
	x->at = st_now_ms();
	snprintf(x->error, sizeof(x->error), "%s", error);
	if (reply != NULL && reply->str != NULL)
		snprintf(x->value, sizeof(x->value), "%.*s", (int)reply->len, reply->str);
}

static enum store_status pg_once(struct pn_loop *loop, struct store_pgpool *pool,
				 const char *sql, struct res *x)
{
	memset(x, 0, sizeof(*x));
	if (store_pgpool_exec(pool, sql, 0, NULL, pg_cb, x) < 0)
		return STORE_PERMANENT;
	if (!st_run_until(loop, &x->done, 6000))
		return STORE_PERMANENT; /* a hang: the test fails */
	return x->status;
}

/* Retries until PostgreSQL answers; returns the ms it took, or -1. */
static long pg_wait_back(struct pn_loop *loop, struct store_pgpool *pool, unsigned int ms)
{
	uint64_t t0 = st_now_ms();
	struct res x;

	while (st_now_ms() - t0 < ms) {
		if (pg_once(loop, pool, "SELECT 'back'", &x) == STORE_OK)
			return (long)(st_now_ms() - t0);
		CHECK_INT(x.status, STORE_TEMPORARY);
		st_run_for(loop, 50);
	}
	return -1;
}

static void pg_restart_during_query(bool immediate)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_pgpool_settings set = {
		.dsn = dsn, .max_conns = 2, .backoff_min_ms = 50, .backoff_max_ms = 400,
	};
	const char *error;
	struct store_pgpool *pool = store_pgpool_new(loop, &set, &error);
	struct res slow = { 0 }, down;
	struct store_pgpool_stats st;
	uint64_t t0;
	long back;

	CHECK(pool != NULL);
	if (pool == NULL)
		return;
	CHECK_INT(pg_once(loop, pool, "SELECT 1", &down), STORE_OK);
	CHECK_INT(store_pgpool_exec(pool, "SELECT pg_sleep(5)", 0, NULL, pg_cb, &slow), 0);
	st_run_for(loop, 200);
	CHECK(!slow.done);
	CHECK_INT(st_services("stop-pg", immediate ? "--immediate" : NULL), 0);
	/* the running query fails, temporary, soon - not after its 5 s */
	t0 = st_now_ms();
	CHECK(st_run_until(loop, &slow.done, 3000));
	CHECK_INT(slow.status, STORE_TEMPORARY);
	CHECK(slow.at - t0 < 2000);
	/* while it is down, requests fail at once and the probe says so */
	st_run_for(loop, 200);
	CHECK(!store_pgpool_ready(pool));
	t0 = st_now_ms();
	CHECK_INT(pg_once(loop, pool, "SELECT 1", &down), STORE_TEMPORARY);
	CHECK(down.at - t0 < 500);
	/* back by itself once the server is */
	CHECK_INT(st_services("start-pg", NULL), 0);
	back = pg_wait_back(loop, pool, 5000);
	CHECK(back >= 0);
	CHECK(store_pgpool_ready(pool));
	store_pgpool_get_stats(pool, &st);
	CHECK(st.disconnects >= 1);
	CHECK(st.connect_failures >= 1);
	CHECK(!st.down);
	store_pgpool_free(&pool);
	pn_loop_free(&loop);
}

PN_TEST(test_pg_restart_fast)
{
	pg_restart_during_query(false);
}

PN_TEST(test_pg_restart_immediate)
{
	pg_restart_during_query(true);
}

struct subrec {
	int ready, lost, messages;
};

static void sub_cb(void *ctx, enum store_redis_sub_event ev, const char *channel,
		   const char *msg, size_t len)
{
	struct subrec *s = ctx;

	(void)channel;
	(void)msg;
	(void)len;
	if (ev == STORE_REDIS_SUB_READY)
		s->ready++;
	else if (ev == STORE_REDIS_SUB_LOST)
		s->lost++;
	else
		s->messages++;
}

static enum store_status redis_once(struct pn_loop *loop, struct store_redis *r,
				    int argc, const char *const *argv, struct res *x)
{
	memset(x, 0, sizeof(*x));
	if (store_redis_command(r, redis_cb, x, argc, argv, NULL) < 0)
		return STORE_PERMANENT;
	if (!st_run_until(loop, &x->done, 5000))
		return STORE_PERMANENT;
	return x->status;
}

static void pid_cb(void *ctx, enum store_status st, const redisReply *reply,
		   const char *error)
{
	long *pid = ctx;
	const char *p;

	(void)error;
	*pid = -1;
	if (st == STORE_OK && reply->type == REDIS_REPLY_STRING &&
	    (p = strstr(reply->str, "process_id:")) != NULL)
		*pid = strtol(p + 11, NULL, 10);
}

/* The server's pid, from INFO server. */
static pid_t redis_pid_of(struct pn_loop *loop, struct store_redis *r)
{
	const char *info[] = { "INFO", "server" };
	long pid = 0;
	uint64_t end = st_now_ms() + 3000;

	if (store_redis_command(r, pid_cb, &pid, 2, info, NULL) < 0)
		return -1;
	while (pid == 0 && st_now_ms() < end)
		pn_loop_run_once(loop, 20);
	return (pid_t)pid;
}

PN_TEST(test_redis_down)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_redis_settings rset = {
		.host = getenv("POSTERN_REDIS_HOST"), .port = atoi(getenv("POSTERN_REDIS_PORT")),
		.backoff_min_ms = 50, .backoff_max_ms = 300,
	};
	struct store_pgpool_settings pset = { .dsn = dsn, .max_conns = 2 };
	const char *error;
	struct store_redis *r = store_redis_new(loop, &rset, &error);
	struct store_pgpool *pool = store_pgpool_new(loop, &pset, &error);
	const char *ping[] = { "PING" };
	struct subrec s = { 0 };
	struct store_redis_sub *sub;
	struct res x, p;
	uint64_t t0, mbox = (uint64_t)getpid();
	bool up = false;

	CHECK(r != NULL && pool != NULL);
	if (r == NULL || pool == NULL)
		return;
	CHECK_INT(redis_once(loop, r, 1, ping, &x), STORE_OK);
	CHECK_STR(x.value, "PONG");
	sub = store_rnotify_subscribe(r, 1, mbox, sub_cb, &s);
	CHECK(st_run_count(loop, &s.ready, 1, 3000));

	CHECK_INT(st_services("stop-redis", NULL), 0);
	/* the subscriber hears of it; commands fail quickly */
	CHECK(st_run_count(loop, &s.lost, 1, 3000));
	t0 = st_now_ms();
	CHECK_INT(redis_once(loop, r, 1, ping, &x), STORE_TEMPORARY);
	CHECK(x.at - t0 < 1000);
	st_run_for(loop, 200);
	CHECK(!store_redis_ready(r));
	t0 = st_now_ms();
	CHECK_INT(redis_once(loop, r, 1, ping, &x), STORE_TEMPORARY);
	CHECK(x.at - t0 < 300);
	/* PostgreSQL does not care */
	CHECK_INT(pg_once(loop, pool, "SELECT 'pg fine'", &p), STORE_OK);
	CHECK_STR(p.value, "pg fine");

	CHECK_INT(st_services("start-redis", NULL), 0);
	t0 = st_now_ms();
	while (st_now_ms() - t0 < 5000 && !up) {
		up = redis_once(loop, r, 1, ping, &x) == STORE_OK;
		if (!up)
			st_run_for(loop, 50);
	}
	CHECK(up);
	CHECK(store_redis_ready(r));
	/* the subscription is back too, and delivers */
	CHECK(st_run_count(loop, &s.ready, 2, 3000));
	{
		struct res pub;
		char chan[STORE_RKEY_MAX];
		const char *argv[] = { "PUBLISH", chan, "hello" };

		store_rkey_mailbox(chan, sizeof(chan), 1, mbox);
		CHECK_INT(redis_once(loop, r, 3, argv, &pub), STORE_OK);
		CHECK(st_run_count(loop, &s.messages, 1, 3000));
	}
	store_redis_unsubscribe(&sub);
	store_redis_free(&r);
	store_pgpool_free(&pool);
	pn_loop_free(&loop);
}

/* A hung Redis (SIGSTOP): commands time out (temporary) instead of
 * hanging, and the client recovers after SIGCONT. */
PN_TEST(test_redis_hung)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_redis_settings rset = {
		.host = getenv("POSTERN_REDIS_HOST"), .port = atoi(getenv("POSTERN_REDIS_PORT")),
		.command_timeout_ms = 300, .connect_timeout_ms = 300,
		.backoff_min_ms = 50, .backoff_max_ms = 300,
	};
	const char *error;
	struct store_redis *r = store_redis_new(loop, &rset, &error);
	const char *ping[] = { "PING" };
	struct store_redis_stats st;
	struct res x = { 0 }, y = { 0 };
	pid_t pid = 0;
	uint64_t t0;
	bool up = false;

	CHECK(r != NULL);
	if (r == NULL)
		return;
	pid = redis_pid_of(loop, r);
	CHECK(pid > 0);
	if (pid <= 0) {
		store_redis_free(&r);
		pn_loop_free(&loop);
		return;
	}
	CHECK_INT(kill(pid, SIGSTOP), 0);
	t0 = st_now_ms();
	memset(&x, 0, sizeof(x));
	CHECK_INT(store_redis_command(r, redis_cb, &x, 1, ping, NULL), 0);
	CHECK_INT(store_redis_command(r, redis_cb, &y, 1, ping, NULL), 0);
	st_run_until(loop, &y.done, 3000);
	kill(pid, SIGCONT);
	CHECK(x.done && y.done);
	CHECK_INT(x.status, STORE_TEMPORARY);
	CHECK_INT(y.status, STORE_TEMPORARY);
	CHECK(strstr(x.error, "timeout") != NULL);
	CHECK(x.at - t0 >= 290 && x.at - t0 < 1500);
	store_redis_get_stats(r, &st);
	CHECK(st.timeouts >= 2);
	t0 = st_now_ms();
	while (st_now_ms() - t0 < 5000 && !up) {
		up = redis_once(loop, r, 1, ping, &x) == STORE_OK;
		if (!up)
			st_run_for(loop, 50);
	}
	CHECK(up);
	store_redis_free(&r);
	pn_loop_free(&loop);
}

int pn_test_failures_;

int main(void)
{
	static const struct pn_test_case cases[] = {
		PN_TEST_CASE(test_pg_restart_fast),
		PN_TEST_CASE(test_pg_restart_immediate),
		PN_TEST_CASE(test_redis_down),
		PN_TEST_CASE(test_redis_hung),
	};

	dsn = getenv("POSTERN_PG_DSN");
	if (dsn == NULL || getenv("POSTERN_REDIS_HOST") == NULL ||
	    getenv("POSTERN_REDIS_PORT") == NULL || getenv("POSTERN_SERVICES_DIR") == NULL ||
	    getenv("POSTERN_SOURCE_DIR") == NULL || st_services("status", NULL) != 0)
		return pn_test_skip("test-faults", "services or their harness not available "
				    "(run tests/run)");
	return pn_test_run("test-faults", cases, sizeof(cases) / sizeof(cases[0]));
}
