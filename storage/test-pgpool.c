/* Tests of the asynchronous PostgreSQL pool against the harness'
 * PostgreSQL (POSTERN_PG_DSN): queries and errors, prepared statements,
 * transactions (commit, rollback, abort after an error), many concurrent
 * queries through a small pool, the bounded queue, priority requests (ahead
 * of the queue, and on connections of their own that ordinary requests
 * never take), statement timeouts, readiness, and a server that is not
 * there. Skipped without the service.
 */
#include "postern/store-metrics.h"
#include "postern/store-pgpool.h"
#include "store-test.h"

#include <errno.h>

static const char *dsn;
static char table[64];

struct res {
	bool done;
	enum store_status status;
	char value[128];
	char sqlstate[6];
	char error[256];
	uint64_t at;
	int rows;
};

static void res_cb(void *ctx, struct store_pg_reply *r)
{
	struct res *x = ctx;

	x->done = true;
	x->status = r->status;
	x->at = st_now_ms();
	snprintf(x->sqlstate, sizeof(x->sqlstate), "%s", r->sqlstate);
	snprintf(x->error, sizeof(x->error), "%s", r->error);
	if (r->status == STORE_OK) {
		x->rows = PQntuples(r->res);
		if (PQntuples(r->res) > 0 && PQnfields(r->res) > 0)
			snprintf(x->value, sizeof(x->value), "%s", PQgetvalue(r->res, 0, 0));
	}
}

static struct store_pgpool *new_pool(struct pn_loop *loop, unsigned int max_conns,
				     unsigned int max_queue)
{
	struct store_pgpool_settings set = {
		.dsn = dsn, .max_conns = max_conns, .max_queue = max_queue,
		.query_timeout_ms = 3000, .backoff_min_ms = 50, .backoff_max_ms = 500,
	};
	const char *error;
	struct store_pgpool *pool = store_pgpool_new(loop, &set, &error);

	if (pool == NULL)
		fprintf(stderr, "store_pgpool_new: %s\n", error);
	return pool;
}

/* Runs sql to completion; returns the status. */
static enum store_status run_sql(struct pn_loop *loop, struct store_pgpool *pool,
				 const char *sql, struct res *x)
{
	memset(x, 0, sizeof(*x));
	if (store_pgpool_exec(pool, sql, 0, NULL, res_cb, x) < 0)
		return STORE_PERMANENT;
	st_run_until(loop, &x->done, 5000);
	if (!x->done)
		fprintf(stderr, "no answer to %s\n", sql);
	else if (x->status != STORE_OK)
		fprintf(stderr, "%s: %s (%s)\n", sql, x->error, x->sqlstate);
	return x->done ? x->status : STORE_TEMPORARY;
}

PN_TEST(test_query)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_pgpool *pool = new_pool(loop, 2, 16);
	const char *params[] = { "41" };
	struct res x = { 0 }, y = { 0 };
	bool ready_flag;

	CHECK(pool != NULL);
	if (pool == NULL)
		return;
	CHECK(!store_pgpool_ready(pool));
	CHECK_INT(store_pgpool_exec(pool, "SELECT $1::int + 1", 1, params, res_cb, &x), 0);
	/* never from inside the call */
	CHECK(!x.done);
	CHECK(st_run_until(loop, &x.done, 5000));
	CHECK_INT(x.status, STORE_OK);
	CHECK_STR(x.value, "42");
	ready_flag = store_pgpool_ready(pool);
	CHECK(ready_flag);

	/* a server error is permanent and carries its SQLSTATE */
	CHECK_INT(store_pgpool_exec(pool, "SELECT * FROM no_such_table_here", 0, NULL,
				    res_cb, &y), 0);
	CHECK(st_run_until(loop, &y.done, 5000));
	CHECK_INT(y.status, STORE_PERMANENT);
	CHECK_STR(y.sqlstate, "42P01");
	CHECK(strstr(y.error, "no_such_table_here") != NULL);

	/* binary parameters and NULL */
	{
		const char *v[] = { "a\0b", NULL };
		int len[] = { 3, 0 }, fmt[] = { 1, 0 };
		struct store_pg_query q = {
			.sql = "SELECT length($1::bytea)::text || coalesce($2, '-')",
			.nparams = 2, .values = v, .lengths = len, .formats = fmt,
		};
		struct res z = { 0 };

		CHECK_INT(store_pgpool_query(pool, &q, res_cb, &z), 0);
		CHECK(st_run_until(loop, &z.done, 5000));
		CHECK_INT(z.status, STORE_OK);
		CHECK_STR(z.value, "3-");
	}

	/* the pool's sessions use generic plans for prepared statements */
	{
		struct res w;

		CHECK_INT(run_sql(loop, pool, "SHOW plan_cache_mode", &w), STORE_OK);
		CHECK_STR(w.value, "force_generic_plan");
	}

	/* bad arguments: -1, no callback */
	errno = 0;
	CHECK_INT(store_pgpool_exec(pool, NULL, 0, NULL, res_cb, &x), -1);
	CHECK_INT(errno, EINVAL);

	struct store_pgpool_stats st;
	store_pgpool_get_stats(pool, &st);
	CHECK_INT(st.ok, 3); /* two queries above and SHOW plan_cache_mode */
	CHECK_INT(st.permanent, 1);
	CHECK(st.conns_up >= 1);
	store_pgpool_free(&pool);
	CHECK(pool == NULL);
	pn_loop_free(&loop);
}

PN_TEST(test_prepared)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_pgpool *pool = new_pool(loop, 2, 64);
	const char *error;
	const struct store_pg_stmt *add, *bad;
	struct res x[8];
	char vals[8][8];

	if (pool == NULL)
		return;
	add = store_pgpool_declare(pool, "t_add", "SELECT $1::int * 2", 1, NULL, &error);
	CHECK(add != NULL);
	CHECK(store_pgpool_declare(pool, "t_add", "SELECT 1", 0, NULL, &error) == NULL);
	CHECK(store_pgpool_declare(pool, "Bad-Name", "SELECT 1", 0, NULL, &error) == NULL);
	bad = store_pgpool_declare(pool, "t_bad", "SELEC 1", 0, NULL, &error);
	CHECK(bad != NULL);
	/* found again by name (declare on first use, find on the next) */
	CHECK(store_pgpool_find(pool, "t_add") == add);
	CHECK(store_pgpool_find(pool, "t_bad") == bad);
	CHECK(store_pgpool_find(pool, "t_none") == NULL);
	CHECK(store_pgpool_find(NULL, "t_add") == NULL);

	/* eight runs over two connections: each prepares it lazily once */
	for (int i = 0; i < 8; i++) {
		const char *v[1] = { vals[i] };
		struct store_pg_query q = { .stmt = add, .nparams = 1, .values = v };

		memset(&x[i], 0, sizeof(x[i]));
		snprintf(vals[i], sizeof(vals[i]), "%d", i);
		CHECK_INT(store_pgpool_query(pool, &q, res_cb, &x[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		char want[8];

		CHECK(st_run_until(loop, &x[i].done, 5000));
		CHECK_INT(x[i].status, STORE_OK);
		snprintf(want, sizeof(want), "%d", i * 2);
		CHECK_STR(x[i].value, want);
	}
	/* A connection prepares a statement once, however often it runs it.
	 * pg_prepared_statements is per session, so ask on a pool of one
	 * connection (with two, the question may land on the other one). */
	{
		struct store_pgpool *one = new_pool(loop, 1, 8);
		const struct store_pg_stmt *add1;
		struct res y, z[2];

		CHECK(one != NULL);
		if (one != NULL) {
			add1 = store_pgpool_declare(one, "t_add", "SELECT $1::int * 2", 1,
						    NULL, &error);
			CHECK(add1 != NULL);
			for (int i = 0; i < 2 && add1 != NULL; i++) {
				const char *v[1] = { "21" };
				struct store_pg_query q = { .stmt = add1, .nparams = 1,
							    .values = v };

				memset(&z[i], 0, sizeof(z[i]));
				CHECK_INT(store_pgpool_query(one, &q, res_cb, &z[i]), 0);
				CHECK(st_run_until(loop, &z[i].done, 5000));
				CHECK_STR(z[i].value, "42");
			}
			run_sql(loop, one, "SELECT count(*) FROM pg_prepared_statements "
				"WHERE name = 't_add'", &y);
			CHECK_STR(y.value, "1");
			store_pgpool_free(&one);
		}
	}
	/* a statement that does not parse fails permanently at PREPARE */
	{
		struct store_pg_query q = { .stmt = bad };
		struct res y = { 0 };

		CHECK_INT(store_pgpool_query(pool, &q, res_cb, &y), 0);
		CHECK(st_run_until(loop, &y.done, 5000));
		CHECK_INT(y.status, STORE_PERMANENT);
		CHECK_STR(y.sqlstate, "42601");
	}
	/* parameter count must match the declaration */
	{
		struct store_pg_query q = { .stmt = add };

		CHECK_INT(store_pgpool_query(pool, &q, res_cb, &x[0]), -1);
	}
	store_pgpool_free(&pool);
	pn_loop_free(&loop);
}

/* A small transaction driver: runs steps[] in one transaction, then
 * commits (or rolls back), recording each status. */
struct txrun {
	struct store_pgpool *pool;
	struct store_pgtx *tx;
	const char *const *steps;
	int nsteps, at;
	bool rollback;
	enum store_status begin, step[8], end;
	char end_error[256];
	bool done;
};

static void tx_end_cb(void *ctx, struct store_pg_reply *r)
{
	struct txrun *t = ctx;

	t->end = r->status;
	snprintf(t->end_error, sizeof(t->end_error), "%s", r->error);
	t->done = true;
}

static void tx_step_cb(void *ctx, struct store_pg_reply *r);

static void tx_next(struct txrun *t)
{
	int rc;

	if (t->at < t->nsteps) {
		struct store_pg_query q = { .sql = t->steps[t->at] };

		rc = store_pgtx_query(t->tx, &q, tx_step_cb, t);
		CHECK_INT(rc, 0);
		/* one statement at a time */
		CHECK_INT(store_pgtx_query(t->tx, &q, tx_step_cb, t), -1);
		CHECK_INT(store_pgtx_commit(&t->tx, tx_end_cb, t), -1);
		return;
	}
	if (t->rollback)
		rc = store_pgtx_rollback(&t->tx, tx_end_cb, t);
	else
		rc = store_pgtx_commit(&t->tx, tx_end_cb, t);
	CHECK_INT(rc, 0);
	CHECK(t->tx == NULL);
}

static void tx_step_cb(void *ctx, struct store_pg_reply *r)
{
	struct txrun *t = ctx;

	t->step[t->at++] = r->status;
	tx_next(t);
}

static void tx_begin_cb(void *ctx, struct store_pgtx *tx, struct store_pg_reply *r)
{
	struct txrun *t = ctx;

	t->begin = r->status;
	t->tx = tx;
	if (r->status != STORE_OK) {
		CHECK(tx == NULL);
		t->done = true;
		return;
	}
	tx_next(t);
}

static void run_tx(struct pn_loop *loop, struct txrun *t)
{
	CHECK_INT(store_pgtx_begin(t->pool, NULL, tx_begin_cb, t), 0);
	CHECK(st_run_until(loop, &t->done, 5000));
}

static int count_rows(struct pn_loop *loop, struct store_pgpool *pool)
{
	char sql[128];
	struct res x;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
	if (run_sql(loop, pool, sql, &x) != STORE_OK)
		return -1;
	return atoi(x.value);
}

PN_TEST(test_transactions)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_pgpool *pool = new_pool(loop, 2, 16);
	char create[160], ins1[128], ins2[128], drop[128];
	struct res x;

	if (pool == NULL)
		return;
	snprintf(create, sizeof(create), "CREATE TABLE %s (k int PRIMARY KEY, v text)", table);
	snprintf(ins1, sizeof(ins1), "INSERT INTO %s VALUES (1, 'one')", table);
	snprintf(ins2, sizeof(ins2), "INSERT INTO %s VALUES (2, 'two')", table);
	snprintf(drop, sizeof(drop), "DROP TABLE %s", table);
	CHECK_INT(run_sql(loop, pool, create, &x), STORE_OK);

	/* commit: both rows */
	{
		const char *steps[] = { ins1, ins2 };
		struct txrun t = { .pool = pool, .steps = steps, .nsteps = 2 };

		run_tx(loop, &t);
		CHECK_INT(t.begin, STORE_OK);
		CHECK_INT(t.step[0], STORE_OK);
		CHECK_INT(t.step[1], STORE_OK);
		CHECK_INT(t.end, STORE_OK);
		CHECK_INT(count_rows(loop, pool), 2);
	}
	/* rollback: nothing */
	{
		char ins3[128];
		const char *steps[] = { ins3 };
		struct txrun t = { .pool = pool, .steps = steps, .nsteps = 1, .rollback = true };

		snprintf(ins3, sizeof(ins3), "INSERT INTO %s VALUES (3, 'three')", table);
		run_tx(loop, &t);
		CHECK_INT(t.step[0], STORE_OK);
		CHECK_INT(t.end, STORE_OK);
		CHECK_INT(count_rows(loop, pool), 2);
	}
	/* an error aborts: the next statement is not run, commit fails and
	 * rolls back the first insert */
	{
		char ins4[128];
		const char *steps[] = { ins4, ins1, ins4 };
		struct txrun t = { .pool = pool, .steps = steps, .nsteps = 3 };

		snprintf(ins4, sizeof(ins4), "INSERT INTO %s VALUES (4, 'four')", table);
		run_tx(loop, &t);
		CHECK_INT(t.step[0], STORE_OK);
		CHECK_INT(t.step[1], STORE_PERMANENT); /* duplicate key */
		CHECK_INT(t.step[2], STORE_PERMANENT); /* aborted, not sent */
		CHECK_INT(t.end, STORE_PERMANENT);
		CHECK(strstr(t.end_error, "duplicate") != NULL);
		CHECK_INT(count_rows(loop, pool), 2);
	}
	/* the connections went back to the pool clean */
	{
		struct store_pgpool_stats st;

		store_pgpool_get_stats(pool, &st);
		CHECK_INT(st.conns_pinned, 0);
	}
	CHECK_INT(run_sql(loop, pool, drop, &x), STORE_OK);
	store_pgpool_free(&pool);
	pn_loop_free(&loop);
}

PN_TEST(test_concurrency)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_pgpool *pool = new_pool(loop, 3, 300);
	enum { N = 200 };
	static struct res x[N];
	static char vals[N][12];
	int ok = 0;
	struct store_pgpool_stats st;

	if (pool == NULL)
		return;
	for (int i = 0; i < N; i++) {
		const char *v[1] = { vals[i] };

		memset(&x[i], 0, sizeof(x[i]));
		snprintf(vals[i], sizeof(vals[i]), "%d", i);
		CHECK_INT(store_pgpool_exec(pool, "SELECT $1::int", 1, v, res_cb, &x[i]), 0);
	}
	for (int i = 0; i < N; i++)
		CHECK(st_run_until(loop, &x[i].done, 8000));
	for (int i = 0; i < N; i++)
		if (x[i].done && x[i].status == STORE_OK && atoi(x[i].value) == i)
			ok++;
	CHECK_INT(ok, N);
	store_pgpool_get_stats(pool, &st);
	CHECK(st.conns_up <= 3);
	CHECK(st.connects <= 3);
	CHECK_INT(st.queue_full, 0);
	store_pgpool_free(&pool);
	pn_loop_free(&loop);
}

PN_TEST(test_bounded_queue)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_pgpool *pool = new_pool(loop, 1, 4);
	struct res slow = { 0 }, waiting[4], over[3];
	struct store_pgpool_stats st;
	uint64_t t0;

	if (pool == NULL)
		return;
	/* wait for the connection so that the slow query runs at once */
	{
		struct res warm;

		CHECK_INT(run_sql(loop, pool, "SELECT 1", &warm), STORE_OK);
	}
	t0 = st_now_ms();
	CHECK_INT(store_pgpool_exec(pool, "SELECT pg_sleep(0.4)", 0, NULL, res_cb, &slow), 0);
	for (int i = 0; i < 4; i++) {
		memset(&waiting[i], 0, sizeof(waiting[i]));
		CHECK_INT(store_pgpool_exec(pool, "SELECT 2", 0, NULL, res_cb, &waiting[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		memset(&over[i], 0, sizeof(over[i]));
		CHECK_INT(store_pgpool_exec(pool, "SELECT 3", 0, NULL, res_cb, &over[i]), 0);
	}
	CHECK(!over[0].done);
	/* over the bound: temporary failures at once, long before the slow
	 * query ends */
	CHECK(st_run_until(loop, &over[2].done, 1000));
	for (int i = 0; i < 3; i++) {
		CHECK_INT(over[i].status, STORE_TEMPORARY);
		CHECK(over[i].at - t0 < 300);
		CHECK(strstr(over[i].error, "queue full") != NULL);
	}
	CHECK(!slow.done);
	CHECK(st_run_until(loop, &waiting[3].done, 5000));
	CHECK_INT(slow.status, STORE_OK);
	for (int i = 0; i < 4; i++) {
		CHECK_INT(waiting[i].status, STORE_OK);
		CHECK(waiting[i].at >= slow.at);
	}
	store_pgpool_get_stats(pool, &st);
	CHECK_INT(st.queue_full, 3);
	store_pgpool_free(&pool);
	pn_loop_free(&loop);
}

/* ---- priority ---- */

static int finish_seq;

struct pres {
	struct res r;
	int seq;		/* order of completion */
};

static void pres_cb(void *ctx, struct store_pg_reply *r)
{
	struct pres *x = ctx;

	res_cb(&x->r, r);
	x->seq = ++finish_seq;
}

static int submit(struct store_pgpool *pool, const char *sql, bool priority, struct pres *x)
{
	struct store_pg_query q = { .sql = sql, .priority = priority };

	memset(x, 0, sizeof(*x));
	return store_pgpool_query(pool, &q, pres_cb, x);
}

static struct store_pgpool *new_prio_pool(struct pn_loop *loop, unsigned int priority_conns)
{
	struct store_pgpool_settings set = {
		.dsn = dsn, .max_conns = 1, .priority_conns = priority_conns,
		.query_timeout_ms = 3000, .backoff_min_ms = 50, .backoff_max_ms = 500,
	};
	const char *error;
	struct store_pgpool *pool = store_pgpool_new(loop, &set, &error);

	if (pool == NULL)
		fprintf(stderr, "store_pgpool_new: %s\n", error);
	return pool;
}

PN_TEST(test_priority_queue)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_pgpool *pool = new_prio_pool(loop, 0);
	struct pres slow, a, b, p1, p2;
	struct res warm;

	if (pool == NULL)
		return;
	CHECK_INT(run_sql(loop, pool, "SELECT 1", &warm), STORE_OK);
	finish_seq = 0;
	CHECK_INT(submit(pool, "SELECT pg_sleep(0.2)", false, &slow), 0);
	CHECK_INT(submit(pool, "SELECT 'a'", false, &a), 0);
	CHECK_INT(submit(pool, "SELECT 'b'", false, &b), 0);
	CHECK_INT(submit(pool, "SELECT 'p1'", true, &p1), 0);
	CHECK_INT(submit(pool, "SELECT 'p2'", true, &p2), 0);
	CHECK(st_run_until(loop, &b.r.done, 5000));
	CHECK(p1.r.done && p2.r.done && a.r.done && slow.r.done);
	/* the running statement is not overtaken; the priority ones go
	 * next, in their order; then the others, in theirs */
	CHECK_INT(slow.seq, 1);
	CHECK_INT(p1.seq, 2);
	CHECK_INT(p2.seq, 3);
	CHECK_INT(a.seq, 4);
	CHECK_INT(b.seq, 5);
	CHECK_STR(p2.r.value, "p2");
	CHECK_STR(b.r.value, "b");
	store_pgpool_free(&pool);
	pn_loop_free(&loop);
}

PN_TEST(test_priority_conns)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_pgpool *pool = new_prio_pool(loop, 1);
	struct pres slow, a, p, c, p3;
	struct res warm;
	struct store_pgpool_stats st;
	uint64_t t0;

	if (pool == NULL)
		return;
	CHECK_INT(run_sql(loop, pool, "SELECT 1", &warm), STORE_OK);
	store_pgpool_get_stats(pool, &st);
	CHECK_INT(st.conns_up, 1); /* the kept one opens when needed */
	finish_seq = 0;
	t0 = st_now_ms();
	CHECK_INT(submit(pool, "SELECT pg_sleep(0.4)", false, &slow), 0);
	CHECK_INT(submit(pool, "SELECT 'a'", false, &a), 0);
	CHECK_INT(submit(pool, "SELECT 'p'", true, &p), 0);
	/* the priority request gets its own connection: it does not wait
	 * for the slow statement */
	CHECK(st_run_until(loop, &p.r.done, 3000));
	CHECK_INT(p.r.status, STORE_OK);
	CHECK(p.r.at - t0 < 350);
	CHECK(!slow.r.done);
	CHECK(!a.r.done);
	/* the kept connection is idle now, but an ordinary request never
	 * takes it: c waits for the slow statement too */
	CHECK_INT(submit(pool, "SELECT 'c'", false, &c), 0);
	CHECK_INT(submit(pool, "SELECT 'p3'", true, &p3), 0);
	CHECK(st_run_until(loop, &p3.r.done, 3000));
	CHECK(!slow.r.done);
	CHECK(st_run_until(loop, &c.r.done, 5000));
	CHECK_INT(slow.r.status, STORE_OK);
	CHECK(slow.seq < a.seq);
	CHECK(a.seq < c.seq);
	CHECK(p3.seq < slow.seq);
	store_pgpool_get_stats(pool, &st);
	CHECK_INT(st.conns_up, 2);
	CHECK_INT(st.connects, 2);
	store_pgpool_free(&pool);
	pn_loop_free(&loop);
}

PN_TEST(test_timeout)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct store_pgpool *pool = new_pool(loop, 1, 8);
	struct store_pg_query q = { .sql = "SELECT pg_sleep(5)", .timeout_ms = 300 };
	struct res x = { 0 }, after;
	struct store_pgpool_stats st;
	uint64_t t0;

	if (pool == NULL)
		return;
	t0 = st_now_ms();
	CHECK_INT(store_pgpool_query(pool, &q, res_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(x.status, STORE_TEMPORARY);
	CHECK(strstr(x.error, "timeout") != NULL);
	CHECK(x.at - t0 >= 290 && x.at - t0 < 1500);
	/* the pool replaced the connection and works on */
	CHECK_INT(run_sql(loop, pool, "SELECT 'after'", &after), STORE_OK);
	CHECK_STR(after.value, "after");
	store_pgpool_get_stats(pool, &st);
	CHECK_INT(st.timeouts, 1);
	CHECK(st.connects >= 2);
	store_pgpool_free(&pool);
	pn_loop_free(&loop);
}

PN_TEST(test_server_absent)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	/* a port where nothing listens */
	struct store_pgpool_settings set = {
		.dsn = "host=127.0.0.1 port=1 dbname=postern user=postern",
		.backoff_min_ms = 50, .backoff_max_ms = 200,
	};
	const char *error;
	struct store_pgpool *pool = store_pgpool_new(loop, &set, &error);
	struct res x = { 0 }, y = { 0 };
	struct store_pgpool_stats st;
	uint64_t t0 = st_now_ms();

	CHECK(pool != NULL);
	if (pool == NULL)
		return;
	CHECK_INT(store_pgpool_exec(pool, "SELECT 1", 0, NULL, res_cb, &x), 0);
	CHECK(st_run_until(loop, &x.done, 3000));
	CHECK_INT(x.status, STORE_TEMPORARY);
	CHECK(x.at - t0 < 1000);
	/* down: the next one fails at once, without waiting */
	st_run_for(loop, 100);
	store_pgpool_get_stats(pool, &st);
	CHECK(st.down);
	CHECK(!store_pgpool_ready(pool));
	t0 = st_now_ms();
	CHECK_INT(store_pgpool_exec(pool, "SELECT 1", 0, NULL, res_cb, &y), 0);
	CHECK(st_run_until(loop, &y.done, 1000));
	CHECK_INT(y.status, STORE_TEMPORARY);
	CHECK(strstr(y.error, "unavailable") != NULL);
	CHECK(y.at - t0 < 300);
	CHECK(strstr(store_pgpool_last_error(pool), "refused") != NULL);
	/* it keeps retrying with backoff */
	st_run_for(loop, 400);
	store_pgpool_get_stats(pool, &st);
	CHECK(st.connect_failures >= 3);
	store_pgpool_free(&pool);
	pn_loop_free(&loop);
}

PN_TEST(test_classify)
{
	CHECK_INT(store_pg_classify_sqlstate("08006"), STORE_TEMPORARY);
	CHECK_INT(store_pg_classify_sqlstate("57P01"), STORE_TEMPORARY);
	CHECK_INT(store_pg_classify_sqlstate("40001"), STORE_TEMPORARY);
	CHECK_INT(store_pg_classify_sqlstate("40P01"), STORE_TEMPORARY);
	CHECK_INT(store_pg_classify_sqlstate("53300"), STORE_TEMPORARY);
	CHECK_INT(store_pg_classify_sqlstate(""), STORE_TEMPORARY);
	CHECK_INT(store_pg_classify_sqlstate(NULL), STORE_TEMPORARY);
	CHECK_INT(store_pg_classify_sqlstate("23505"), STORE_PERMANENT);
	CHECK_INT(store_pg_classify_sqlstate("42P01"), STORE_PERMANENT);
	CHECK_INT(store_pg_classify_sqlstate("PN003"), STORE_PERMANENT);
	CHECK_INT(store_pg_classify(NULL), STORE_TEMPORARY);
}

/* The observe hook feeds the Prometheus families of store-metrics.h. */
PN_TEST(test_metrics)
{
	struct pn_loop *loop = pn_loop_new(NULL, NULL);
	struct pn_metrics *reg = pn_metrics_new();
	const char *error;
	struct store_metrics *m = store_metrics_new(reg, &error);
	struct store_pgpool_settings set = {
		.dsn = dsn, .observe = store_metrics_pg_observe, .observe_ctx = m,
	};
	struct store_pgpool *pool = store_pgpool_new(loop, &set, &error);
	struct pn_buf out;
	struct res x;
	char *text;

	CHECK(m != NULL && pool != NULL);
	if (m == NULL || pool == NULL)
		return;
	/* registered once per process: a second registration is refused */
	CHECK(store_metrics_new(reg, &error) == NULL);
	run_sql(loop, pool, "SELECT 1", &x);
	run_sql(loop, pool, "SELECT 2", &x);
	memset(&x, 0, sizeof(x));
	store_pgpool_exec(pool, "SELEC", 0, NULL, res_cb, &x);
	st_run_until(loop, &x.done, 3000);
	pn_buf_init(&out, 1 << 20);
	CHECK_INT(pn_metrics_render(reg, &out), 0);
	text = strndup((const char *)pn_buf_rptr(&out), pn_buf_len(&out));
	CHECK(strstr(text, "postern_pg_requests_total{outcome=\"ok\"} 2\n") != NULL);
	CHECK(strstr(text, "postern_pg_requests_total{outcome=\"permanent\"} 1\n") != NULL);
	CHECK(strstr(text, "postern_pg_request_seconds_count 3\n") != NULL);
	CHECK(strstr(text, "postern_redis_commands_total{outcome=\"ok\"} 0\n") != NULL);
	free(text);
	pn_buf_free(&out);
	store_pgpool_free(&pool);
	store_metrics_free(&m);
	CHECK(m == NULL);
	pn_metrics_free(&reg);
	pn_loop_free(&loop);
}

int pn_test_failures_;

int main(void)
{
	static const struct pn_test_case cases[] = {
		PN_TEST_CASE(test_classify),
		PN_TEST_CASE(test_query),
		PN_TEST_CASE(test_prepared),
		PN_TEST_CASE(test_transactions),
		PN_TEST_CASE(test_concurrency),
		PN_TEST_CASE(test_bounded_queue),
		PN_TEST_CASE(test_priority_queue),
		PN_TEST_CASE(test_priority_conns),
		PN_TEST_CASE(test_timeout),
		PN_TEST_CASE(test_server_absent),
		PN_TEST_CASE(test_metrics),
	};

	dsn = getenv("POSTERN_PG_DSN");
	if (dsn == NULL)
		return pn_test_skip("test-pgpool", "POSTERN_PG_DSN not set (run tests/run)");
	snprintf(table, sizeof(table), "pgpool_test_%ld", (long)getpid());
	return pn_test_run("test-pgpool", cases, sizeof(cases) / sizeof(cases[0]));
}
