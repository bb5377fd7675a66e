/* The asynchronous PostgreSQL pool (see postern/store-pgpool.h): per-loop
 * connections driven by one-shot polls (the last priority_conns of them
 * kept for priority requests), a FIFO of waiting requests with the priority
 * ones ahead of the others, lazily
 * prepared statements, pinned transactions, one deadline timer for connect,
 * statement and queue timeouts, reconnect backoff and deferred callbacks.
 * Every failure detected inside a caller's submission is parked on the
 * deferred list and delivered from the timer (set to "now"), so that no
 * callback runs inside a submission call.
 */
#include "postern/store-pgpool.h"
#include "postern/log.h"
#include "postern/loop.h"
#include "store-private.h"
#include "store-timer.h"

#include <errno.h>
#include <stdatomic.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MSG_MAX 200
#define STMT_NAME_MAX 63

const uint64_t store_pg_rtt_bounds_us[STORE_PG_RTT_BUCKETS - 1] = {
	500, 1000, 2000, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 5000000,
};

struct store_pg_stmt {
	unsigned int index;
	char *name;
	char *sql;
	int nparams;
	Oid *types;
};

enum req_kind {
	REQ_QUERY,
	REQ_BEGIN,
	REQ_TX_QUERY,
	REQ_COMMIT,
	REQ_ROLLBACK,
};

struct pg_req {
	struct pg_req *prev, *next;	/* queue or deferred list */
	enum req_kind kind;
	bool priority;			/* store_pg_query.priority */
	const struct store_pg_stmt *stmt;
	const char *sql;
	int nparams;
	const char **values;
	int *lengths;
	int *formats;
	int result_format;
	uint64_t deadline;		/* ms, from submission */
	uint64_t t0_us;
	store_pg_cb *cb;
	store_pgtx_cb *tx_cb;
	void *ctx;
	struct store_pgtx *tx;
	/* set when parked on the deferred list */
	enum store_status fail_status;
	char fail_msg[MSG_MAX];
	/* the parameter block follows */
};

enum conn_state {
	CONN_EMPTY,
	CONN_CONNECTING,
	CONN_IDLE,
	CONN_BUSY,
	CONN_PINNED,		/* in a transaction, between statements */
};

struct pg_conn {
	struct store_pgpool *pool;
	enum conn_state state;
	PGconn *pg;
	pn_io_id io;
	int fd;
	unsigned int polled;		/* events of the pending poll, 0 none */
	unsigned int connect_want;	/* while connecting */
	bool flushing;			/* PQflush() wants to write more */
	uint64_t deadline;		/* connect or request deadline */
	struct pg_req *req;		/* running */
	bool preparing;			/* req's PQsendPrepare is running */
	PGresult *res;			/* req's result so far */
	struct store_pgtx *tx;		/* pinned */
	uint8_t *prepared;
	unsigned int prepared_cap;
};

struct store_pgtx {
	struct store_pgpool *pool;
	struct pg_conn *conn;		/* NULL once the connection is gone */
	struct pg_req *req;		/* statement in flight */
	bool failed;
	enum store_status fail_status;
	char fail_msg[MSG_MAX];
};

struct store_pgpool {
	struct pn_loop *loop;
	/* Connections in a live state, kept by conn_set_state(); atomic so
	 * that store_pgpool_ready() may be asked from any thread. */
	atomic_uint live;
	bool dsn_has_options;	/* leave libpq "options" to the operator */
	struct store_pgpool_settings set;
	char *dsn;
	struct pg_conn *conns;		/* max_conns, then priority_conns */
	unsigned int nconns;
	struct store_pg_stmt **stmts;
	unsigned int nstmts, stmts_cap;
	struct pg_req *qhead, *qtail;
	unsigned int qlen, qprio;	/* waiting; of them priority */
	struct pg_req *dhead, *dtail;
	struct store_timer timer;
	uint64_t retry_at;
	unsigned int backoff_ms;
	bool down;
	bool freeing;
	uint64_t rnd;
	char last_error[MSG_MAX];
	struct store_pgpool_stats stats;
};

static void conn_lost(struct pg_conn *c, const char *why);
static void conn_timeout(struct pg_conn *c);
static void pool_dispatch(struct store_pgpool *pool);
static void pool_maintain(struct store_pgpool *pool);

/* ---- small helpers ---- */

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_ms(const struct store_pgpool *pool)
{
	return pn_loop_now_ms(pool->loop);
}

/* First line of msg into dst. */
static void one_line(char *dst, size_t size, const char *msg)
{
	size_t n;

	if (msg == NULL)
		msg = "";
	while (*msg == ' ' || *msg == '\n')
		msg++;
	n = strcspn(msg, "\n");
	if (n >= size)
		n = size - 1;
	memcpy(dst, msg, n);
	dst[n] = '\0';
}

static bool state_live(enum conn_state s)
{
	return s == CONN_IDLE || s == CONN_BUSY || s == CONN_PINNED;
}

/* Every change of a connection's state goes through here so that the
 * pool's live count stays exact. */
static void conn_set_state(struct pg_conn *c, enum conn_state s)
{
	bool was = state_live(c->state), now = state_live(s);

	c->state = s;
	if (was && !now)
		atomic_fetch_sub(&c->pool->live, 1);
	else if (!was && now)
		atomic_fetch_add(&c->pool->live, 1);
}

enum store_status store_pg_classify_sqlstate(const char *s)
{
	static const char *const temporary[] = {
		"57P01", "57P02", "57P03", "57014", "40001", "40P01", "55P03",
	};

	if (s == NULL || strlen(s) != 5)
		return STORE_TEMPORARY;
	if (memcmp(s, "08", 2) == 0 || memcmp(s, "53", 2) == 0 || memcmp(s, "58", 2) == 0)
		return STORE_TEMPORARY;
	for (size_t i = 0; i < sizeof(temporary) / sizeof(temporary[0]); i++)
		if (strcmp(s, temporary[i]) == 0)
			return STORE_TEMPORARY;
	return STORE_PERMANENT;
}

enum store_status store_pg_classify(const PGresult *res)
{
	if (res == NULL)
		return STORE_TEMPORARY;
	return store_pg_classify_sqlstate(PQresultErrorField(res, PG_DIAG_SQLSTATE));
}

/* ---- requests ---- */

static struct pg_req *req_new(struct store_pgpool *pool, enum req_kind kind,
			      const struct store_pg_query *q, const char *sql)
{
	size_t size = sizeof(struct pg_req), sql_len = 0;
	int n = q != NULL ? q->nparams : 0;
	struct pg_req *req;
	char *p;

	if (q != NULL && q->sql != NULL)
		sql = q->sql;
	if (sql != NULL) {
		sql_len = strlen(sql) + 1;
		size += sql_len;
	}
	size += (size_t)n * (sizeof(char *) + 2 * sizeof(int));
	for (int i = 0; i < n; i++) {
		const char *v = q->values[i];
		bool bin = q->formats != NULL && q->formats[i] != 0;

		if (v == NULL)
			continue;
		if (bin && (q->lengths == NULL || q->lengths[i] < 0)) {
			errno = EINVAL;
			return NULL;
		}
		size += bin ? (size_t)q->lengths[i] : strlen(v) + 1;
	}
	/* pointers first, for alignment */
	req = calloc(1, size);
	if (req == NULL)
		return NULL;
	req->kind = kind;
	req->nparams = n;
	req->result_format = q != NULL ? q->result_format : 0;
	req->priority = q != NULL && q->priority;
	req->stmt = q != NULL ? q->stmt : NULL;
	p = (char *)(req + 1);
	if (n > 0) {
		req->values = (const char **)(void *)p;
		p += (size_t)n * sizeof(char *);
		req->lengths = (int *)(void *)p;
		p += (size_t)n * sizeof(int);
		req->formats = (int *)(void *)p;
		p += (size_t)n * sizeof(int);
	}
	for (int i = 0; i < n; i++) {
		const char *v = q->values[i];
		bool bin = q->formats != NULL && q->formats[i] != 0;
		size_t len;

		req->formats[i] = bin ? 1 : 0;
		if (v == NULL) {
			req->values[i] = NULL;
			continue;
		}
		len = bin ? (size_t)q->lengths[i] : strlen(v);
		memcpy(p, v, len);
		req->values[i] = p;
		req->lengths[i] = (int)len;
		p += len;
		if (!bin)
			*p++ = '\0';
	}
	if (sql != NULL) {
		memcpy(p, sql, sql_len);
		req->sql = p;
	}
	req->t0_us = now_us();
	req->deadline = now_ms(pool) + (q != NULL && q->timeout_ms != 0 ? q->timeout_ms :
					pool->set.query_timeout_ms);
	pool->stats.requests++;
	return req;
}

static void stats_outcome(struct store_pgpool *pool, struct pg_req *req,
			  enum store_status st)
{
	uint64_t us = now_us() - req->t0_us;
	unsigned int b = 0;

	if (st == STORE_OK)
		pool->stats.ok++;
	else if (st == STORE_TEMPORARY)
		pool->stats.temporary++;
	else
		pool->stats.permanent++;
	while (b < STORE_PG_RTT_BUCKETS - 1 && us > store_pg_rtt_bounds_us[b])
		b++;
	pool->stats.rtt_buckets[b]++;
	pool->stats.rtt_us_sum += us;
	if (pool->set.observe != NULL)
		pool->set.observe(pool->set.observe_ctx, st, us);
}

static void tx_mark_failed(struct store_pgtx *tx, enum store_status st, const char *msg)
{
	if (tx->failed)
		return;
	tx->failed = true;
	tx->fail_status = st;
	one_line(tx->fail_msg, sizeof(tx->fail_msg), msg);
}

static void conn_close(struct pg_conn *c);

/* Calls the request's callback and frees it. res (owned) may be NULL. For
 * COMMIT/ROLLBACK the transaction is freed too. */
static void req_finish(struct store_pgpool *pool, struct pg_req *req,
		       enum store_status st, PGresult *res, const char *msg,
		       struct store_pgtx *new_tx)
{
	struct store_pg_reply reply = {
		.status = st, .res = res, .sqlstate = "", .error = "",
	};
	char line[MSG_MAX];
	struct store_pgtx *tx = req->tx;

	if (res != NULL) {
		const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		if (s != NULL)
			reply.sqlstate = s;
	}
	if (st != STORE_OK) {
		if (msg == NULL && res != NULL)
			msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		one_line(line, sizeof(line), msg != NULL && msg[0] != '\0' ? msg :
			 "PostgreSQL error");
		reply.error = line;
	}
	stats_outcome(pool, req, st);
	switch (req->kind) {
	case REQ_BEGIN:
		req->tx_cb(req->ctx, new_tx, &reply);
		break;
	case REQ_TX_QUERY:
		tx->req = NULL;
		if (st != STORE_OK)
			tx_mark_failed(tx, st, reply.error);
		req->cb(req->ctx, &reply);
		break;
	case REQ_COMMIT:
	case REQ_ROLLBACK:
		if (tx->conn != NULL) {
			/* not unpinned by a clean COMMIT/ROLLBACK: the
			 * session's state is unknown, do not reuse it */
			tx->conn->tx = NULL;
			conn_close(tx->conn);
		}
		req->cb(req->ctx, &reply);
		free(tx);
		break;
	case REQ_QUERY:
		req->cb(req->ctx, &reply);
		break;
	}
	PQclear(reply.res);
	free(req);
}

/* Parks req to be failed from the timer (never inside a caller's call). */
static void req_defer(struct store_pgpool *pool, struct pg_req *req,
		      enum store_status st, const char *msg)
{
	req->fail_status = st;
	one_line(req->fail_msg, sizeof(req->fail_msg), msg);
	req->next = NULL;
	req->prev = pool->dtail;
	if (pool->dtail != NULL)
		pool->dtail->next = req;
	else
		pool->dhead = req;
	pool->dtail = req;
	store_timer_want(&pool->timer, now_ms(pool));
}

static void queue_remove(struct store_pgpool *pool, struct pg_req *req)
{
	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		pool->qhead = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	else
		pool->qtail = req->prev;
	req->prev = req->next = NULL;
	pool->qlen--;
	if (req->priority)
		pool->qprio--;
}

/* Appends req; a priority request goes behind the last priority request
 * instead (they all stand at the front of the queue, each kind FIFO). */
static void queue_push(struct store_pgpool *pool, struct pg_req *req)
{
	struct pg_req *after = pool->qtail;

	if (req->priority) {
		after = NULL;
		for (struct pg_req *r = pool->qhead; r != NULL && r->priority; r = r->next)
			after = r;
	}
	req->prev = after;
	req->next = after != NULL ? after->next : pool->qhead;
	if (req->next != NULL)
		req->next->prev = req;
	else
		pool->qtail = req;
	if (after != NULL)
		after->next = req;
	else
		pool->qhead = req;
	pool->qlen++;
	if (req->priority)
		pool->qprio++;
}

/* Fails every waiting request (the pool went down). */
static void queue_fail_all(struct store_pgpool *pool, const char *msg)
{
	while (pool->qhead != NULL) {
		struct pg_req *req = pool->qhead;

		queue_remove(pool, req);
		pool->stats.unavailable++;
		req_defer(pool, req, STORE_TEMPORARY, msg);
	}
}

/* ---- connections ---- */

static void conn_on_poll(void *ctx, int revents);

static void conn_io_on_close(void *ctx)
{
	(void)ctx; /* the connection lives in the pool's array */
}

static const struct pn_io_handlers conn_handlers = {
	.on_poll = conn_on_poll,
	.on_close = conn_io_on_close,
};

static void conn_close_io(struct pg_conn *c)
{
	struct pn_loop *loop = c->pool->loop;

	if (c->io != PN_IO_NONE) {
		/* libpq closes the fd itself: hand the poll's cancel to the
		 * kernel first (PN_IO_NO_CLOSE) */
		pn_io_close(loop, c->io);
		pn_io_set_ctx(loop, c->io, NULL);
		c->io = PN_IO_NONE;
	}
	c->polled = 0;
	c->fd = -1;
}

/* Drops the libpq connection; the slot becomes empty. The caller has
 * detached c->req and c->tx when they must survive. */
static void conn_close(struct pg_conn *c)
{
	conn_close_io(c);
	if (c->pg != NULL) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	PQclear(c->res);
	c->res = NULL;
	conn_set_state(c, CONN_EMPTY);
	c->flushing = false;
	c->preparing = false;
	c->deadline = 0;
	if (c->prepared != NULL)
		memset(c->prepared, 0, c->prepared_cap);
}

/* Asks the loop for the events the connection needs now. Returns 0, or -1
 * when the poll could not be armed (the caller treats it as a loss). */
static int conn_arm(struct pg_conn *c)
{
	struct pn_loop *loop = c->pool->loop;
	unsigned int want;

	if (c->io == PN_IO_NONE)
		return -1;
	if (c->state == CONN_CONNECTING)
		want = c->connect_want;
	else
		want = POLLIN | (c->flushing ? POLLOUT : 0u);
	if (c->polled == want)
		return 0;
	if (c->polled != 0)
		pn_io_poll_cancel(loop, c->io);
	c->polled = 0;
	if (pn_io_poll(loop, c->io, want) < 0)
		return -1;
	c->polled = want;
	return 0;
}

static int conn_set_fd(struct pg_conn *c)
{
	int fd = PQsocket(c->pg);

	if (fd == c->fd && c->io != PN_IO_NONE)
		return 0;
	conn_close_io(c);
	if (fd < 0)
		return -1;
	c->io = pn_io_add(c->pool->loop, fd, PN_IO_NO_CLOSE, &conn_handlers, c);
	if (c->io == PN_IO_NONE)
		return -1;
	c->fd = fd;
	return 0;
}

static uint64_t backoff_jitter(struct store_pgpool *pool, unsigned int ms)
{
	/* xorshift64: spreads the retries of many nodes */
	pool->rnd ^= pool->rnd << 13;
	pool->rnd ^= pool->rnd >> 7;
	pool->rnd ^= pool->rnd << 17;
	return ms / 2 + (ms > 1 ? pool->rnd % (ms / 2 + 1) : 0);
}

/* Connections [from, to) in a state that pred accepts. */
static unsigned int count_range(const struct store_pgpool *pool, unsigned int from,
				unsigned int to, bool (*pred)(enum conn_state))
{
	unsigned int n = 0;

	for (unsigned int i = from; i < to; i++)
		if (pred(pool->conns[i].state))
			n++;
	return n;
}

static unsigned int count_state(const struct store_pgpool *pool, bool (*pred)(enum conn_state))
{
	return count_range(pool, 0, pool->nconns, pred);
}

static bool state_connecting(enum conn_state s)
{
	return s == CONN_CONNECTING;
}

/* A connect attempt failed: back off, and when nothing is up, go down. */
static void conn_attempt_failed(struct pg_conn *c, const char *why)
{
	struct store_pgpool *pool = c->pool;
	char line[MSG_MAX], q[2 * MSG_MAX];

	one_line(line, sizeof(line), why);
	conn_close(c);
	pool->stats.connect_failures++;
	snprintf(pool->last_error, sizeof(pool->last_error), "%s", line);
	pool->retry_at = now_ms(pool) + backoff_jitter(pool, pool->backoff_ms);
	if (pool->backoff_ms < pool->set.backoff_max_ms) {
		pool->backoff_ms *= 2;
		if (pool->backoff_ms > pool->set.backoff_max_ms)
			pool->backoff_ms = pool->set.backoff_max_ms;
	}
	if (count_state(pool, state_live) == 0) {
		char msg[MSG_MAX + 32];

		if (!pool->down)
			pn_warn("event=pg_down error=%s",
				pn_log_quote(q, sizeof(q), line, strlen(line)));
		pool->down = true;
		snprintf(msg, sizeof(msg), "PostgreSQL unavailable: %s", line);
		queue_fail_all(pool, msg);
	}
	store_timer_want(&pool->timer, pool->retry_at);
}

static void conn_connected(struct pg_conn *c)
{
	struct store_pgpool *pool = c->pool;

	if (PQsetnonblocking(c->pg, 1) != 0) {
		conn_attempt_failed(c, "cannot make the connection non-blocking");
		return;
	}
	conn_set_state(c, CONN_IDLE);
	c->deadline = 0;
	pool->stats.connects++;
	pool->backoff_ms = pool->set.backoff_min_ms;
	if (pool->down)
		pn_info("event=pg_up");
	pool->down = false;
	if (conn_arm(c) < 0) {
		conn_lost(c, "cannot poll the connection");
		return;
	}
	pool_dispatch(pool);
}

static void pg_quiet_notices(void *arg, const PGresult *res)
{
	(void)arg;
	(void)res;
}

static void conn_connect_step(struct pg_conn *c)
{
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_OK:
		if (conn_set_fd(c) < 0) {
			conn_attempt_failed(c, "no loop slot for the connection");
			return;
		}
		conn_connected(c);
		return;
	case PGRES_POLLING_FAILED:
		conn_attempt_failed(c, PQerrorMessage(c->pg));
		return;
	case PGRES_POLLING_READING:
		c->connect_want = POLLIN;
		break;
	case PGRES_POLLING_WRITING:
	default:
		c->connect_want = POLLOUT;
		break;
	}
	/* libpq may have moved to another socket (next host, SSL retry) */
	if (conn_set_fd(c) < 0 || conn_arm(c) < 0)
		conn_attempt_failed(c, "no loop slot for the connection");
}

/* Whether the operator's connection string sets libpq's "options". */
static bool dsn_sets_options(const char *dsn)
{
	PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
	bool set = false;

	if (opts == NULL)
		return false;
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "options") == 0 && o->val != NULL && o->val[0] != '\0')
			set = true;
	}
	PQconninfoFree(opts);
	return set;
}

/* Every statement of the pool is prepared and keyed by ids (account,
 * mailbox, uid): a generic plan fits them all, while PostgreSQL's default
 * (plan_cache_mode=auto) kept re-planning each execution, 39% of the
 * server's CPU in the SMTP benchmark (bench/README.md, "Findings"). A DSN
 * that sets options itself is left alone. */
#define PGPOOL_SESSION_OPTIONS "-c plan_cache_mode=force_generic_plan"

static void conn_start(struct pg_conn *c)
{
	struct store_pgpool *pool = c->pool;
	const char *keys[] = { "dbname", "fallback_application_name", "options", NULL };
	const char *values[] = { pool->dsn, "postern", PGPOOL_SESSION_OPTIONS, NULL };

	if (pool->dsn_has_options) {
		keys[2] = NULL;
		values[2] = NULL;
	}
	c->pg = PQconnectStartParams(keys, values, 1);
	conn_set_state(c, CONN_CONNECTING);
	c->fd = -1;
	c->deadline = now_ms(pool) + pool->set.connect_timeout_ms;
	store_timer_want(&pool->timer, c->deadline);
	if (c->pg == NULL) {
		conn_attempt_failed(c, "out of memory");
		return;
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_attempt_failed(c, PQerrorMessage(c->pg));
		return;
	}
	PQsetNoticeReceiver(c->pg, pg_quiet_notices, NULL);
	c->connect_want = POLLOUT; /* as if PQconnectPoll said WRITING */
	if (conn_set_fd(c) < 0 || conn_arm(c) < 0)
		conn_attempt_failed(c, "no loop slot for the connection");
}

static bool conn_is_prepared(const struct pg_conn *c, const struct store_pg_stmt *s)
{
	return s->index < c->prepared_cap && c->prepared[s->index];
}

static void conn_mark_prepared(struct pg_conn *c, const struct store_pg_stmt *s)
{
	if (s->index >= c->prepared_cap) {
		unsigned int cap = c->pool->stmts_cap;
		uint8_t *p = realloc(c->prepared, cap);

		if (p == NULL)
			return; /* prepared again next time: harmless but slower */
		memset(p + c->prepared_cap, 0, cap - c->prepared_cap);
		c->prepared = p;
		c->prepared_cap = cap;
	}
	c->prepared[s->index] = 1;
}

static int conn_send_query(struct pg_conn *c, struct pg_req *req)
{
	if (req->stmt != NULL)
		return PQsendQueryPrepared(c->pg, req->stmt->name, req->nparams,
					   req->values, req->lengths, req->formats,
					   req->result_format);
	return PQsendQueryParams(c->pg, req->sql, req->nparams, NULL, req->values,
				 req->lengths, req->formats, req->result_format);
}

/* After a successful PQsend*: push the bytes out. */
static void conn_flush(struct pg_conn *c)
{
	int r = PQflush(c->pg);

	if (r < 0) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	c->flushing = r == 1;
	if (conn_arm(c) < 0)
		conn_lost(c, "cannot poll the connection");
}

/* A PQsend* call failed. */
static void conn_send_failed(struct pg_conn *c)
{
	struct store_pgpool *pool = c->pool;
	struct pg_req *req = c->req;

	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	/* bad arguments (too many parameters...): the connection is fine */
	c->req = NULL;
	c->preparing = false;
	c->deadline = 0;
	conn_set_state(c, c->tx != NULL ? CONN_PINNED : CONN_IDLE);
	req_defer(pool, req, STORE_PERMANENT, PQerrorMessage(c->pg));
}

/* Starts req on an idle or pinned connection. */
static void conn_send(struct pg_conn *c, struct pg_req *req)
{
	int ok;

	c->req = req;
	conn_set_state(c, CONN_BUSY);
	c->deadline = req->deadline;
	store_timer_want(&c->pool->timer, c->deadline);
	if (req->stmt != NULL && !conn_is_prepared(c, req->stmt)) {
		const struct store_pg_stmt *s = req->stmt;

		c->preparing = true;
		ok = PQsendPrepare(c->pg, s->name, s->sql, s->nparams, s->types);
	} else {
		ok = conn_send_query(c, req);
	}
	if (!ok) {
		conn_send_failed(c);
		return;
	}
	conn_flush(c);
}

/* The connection broke (or had to be dropped): fail what ran on it. */
static void conn_lost(struct pg_conn *c, const char *why)
{
	struct store_pgpool *pool = c->pool;
	struct pg_req *req = c->req;
	struct store_pgtx *tx = c->tx;
	bool was_live = state_live(c->state);
	char line[MSG_MAX], q[2 * MSG_MAX];
	char msg[MSG_MAX + 64];

	one_line(line, sizeof(line), why);
	if (line[0] == '\0')
		snprintf(line, sizeof(line), "connection lost");
	if (c->state == CONN_CONNECTING) {
		conn_attempt_failed(c, line);
		return;
	}
	c->req = NULL;
	c->tx = NULL;
	if (tx != NULL) {
		tx->conn = NULL;
		tx_mark_failed(tx, STORE_TEMPORARY, line);
	}
	conn_close(c);
	if (was_live) {
		pool->stats.disconnects++;
		pn_warn("event=pg_disconnect error=%s",
			pn_log_quote(q, sizeof(q), line, strlen(line)));
	}
	if (req != NULL) {
		if (req->kind == REQ_COMMIT)
			snprintf(msg, sizeof(msg),
				 "connection lost during COMMIT (outcome unknown): %s", line);
		else
			snprintf(msg, sizeof(msg), "connection lost: %s", line);
		if (req->kind == REQ_ROLLBACK)
			req_defer(pool, req, STORE_OK, ""); /* rolled back anyway */
		else
			req_defer(pool, req, STORE_TEMPORARY, msg);
	}
	pool_maintain(pool);
}

/* The running request's deadline passed: fail it and drop the connection
 * (libpq 15 can only cancel with a blocking PQcancel()). */
static void conn_timeout(struct pg_conn *c)
{
	struct store_pgpool *pool = c->pool;
	struct pg_req *req = c->req;
	struct store_pgtx *tx = c->tx;

	pool->stats.timeouts++;
	pn_warn("event=pg_timeout action=reconnect");
	c->req = NULL;
	c->tx = NULL;
	if (tx != NULL) {
		tx->conn = NULL;
		tx_mark_failed(tx, STORE_TEMPORARY, "statement timeout");
	}
	conn_close(c);
	pool->stats.disconnects++;
	req_defer(pool, req, STORE_TEMPORARY,
		  req->kind == REQ_COMMIT ? "timeout during COMMIT (outcome unknown)" :
		  "statement timeout");
	pool_maintain(pool);
}

/* Every result of the running request has arrived. */
static void conn_request_done(struct pg_conn *c)
{
	struct store_pgpool *pool = c->pool;
	struct pg_req *req = c->req;
	PGresult *res = c->res;
	struct store_pgtx *new_tx = NULL;
	enum store_status st;
	ExecStatusType es = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	const char *msg = NULL;

	c->res = NULL;
	if (c->preparing) {
		c->preparing = false;
		if (es == PGRES_COMMAND_OK) {
			PQclear(res);
			conn_mark_prepared(c, req->stmt);
			if (!conn_send_query(c, req)) {
				conn_send_failed(c);
				return;
			}
			conn_flush(c);
			return;
		}
	}
	if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK) {
		st = STORE_OK;
	} else {
		st = store_pg_classify(res);
		if (res == NULL)
			msg = PQerrorMessage(c->pg);
	}
	c->req = NULL;
	c->deadline = 0;
	switch (req->kind) {
	case REQ_QUERY:
		conn_set_state(c, CONN_IDLE);
		/* a statement left a transaction open (a plain "BEGIN"): do
		 * not hand that session to the next caller */
		if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
			conn_close(c);
		break;
	case REQ_BEGIN:
		if (st == STORE_OK) {
			new_tx = calloc(1, sizeof(*new_tx));
			if (new_tx == NULL) {
				st = STORE_TEMPORARY;
				msg = "out of memory";
				conn_close(c);
				break;
			}
			new_tx->pool = pool;
			new_tx->conn = c;
			c->tx = new_tx;
			conn_set_state(c, CONN_PINNED);
		} else {
			conn_set_state(c, CONN_IDLE);
			if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
				conn_close(c);
		}
		break;
	case REQ_TX_QUERY:
		conn_set_state(c, CONN_PINNED);
		break;
	case REQ_COMMIT:
	case REQ_ROLLBACK:
		if (PQtransactionStatus(c->pg) == PQTRANS_IDLE) {
			c->tx = NULL;
			conn_set_state(c, CONN_IDLE);
			req->tx->conn = NULL;
		} else {
			conn_set_state(c, CONN_PINNED); /* req_finish closes it */
		}
		if (req->kind == REQ_COMMIT && req->tx->failed) {
			st = req->tx->fail_status;
			msg = req->tx->fail_msg;
		} else if (req->kind == REQ_COMMIT && st == STORE_OK &&
			   strcmp(PQcmdStatus(res), "COMMIT") != 0) {
			st = STORE_PERMANENT;
			msg = "the transaction was rolled back";
		}
		break;
	}
	if (c->pg != NULL && PQstatus(c->pg) == CONNECTION_BAD) {
		struct store_pgtx *tx = c->tx;

		c->tx = NULL;
		if (tx != NULL) {
			tx->conn = NULL;
			tx_mark_failed(tx, STORE_TEMPORARY, "connection lost");
		}
		conn_close(c);
		pool->stats.disconnects++;
	}
	req_finish(pool, req, st, res, msg, new_tx);
	pool_dispatch(pool);
}

/* Reads what arrived and completes the running request when its last
 * result is in. */
static void conn_read(struct pg_conn *c)
{
	if (!PQconsumeInput(c->pg)) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	for (;;) {
		PGresult *res;
		PGnotify *n;

		while ((n = PQnotifies(c->pg)) != NULL)
			PQfreemem(n);
		if (c->req == NULL) {
			if (PQstatus(c->pg) == CONNECTION_BAD)
				conn_lost(c, PQerrorMessage(c->pg));
			return;
		}
		if (PQisBusy(c->pg))
			return;
		res = PQgetResult(c->pg);
		if (res == NULL) {
			conn_request_done(c);
			/* the statement after a PREPARE, or a request the
			 * callback started here, is running now; or the
			 * connection is gone */
			if (c->pg == NULL || c->req == NULL)
				return;
			continue;
		}
		switch (PQresultStatus(res)) {
		case PGRES_COPY_IN:
		case PGRES_COPY_OUT:
		case PGRES_COPY_BOTH:
			PQclear(res);
			conn_lost(c, "COPY is not supported");
			return;
		default:
			break;
		}
		/* keep the first error, else the last result */
		if (c->res == NULL ||
		    (PQresultStatus(c->res) != PGRES_FATAL_ERROR &&
		     PQresultStatus(res) == PGRES_FATAL_ERROR)) {
			PQclear(c->res);
			c->res = res;
		} else if (PQresultStatus(c->res) == PGRES_FATAL_ERROR) {
			PQclear(res);
		} else {
			PQclear(c->res);
			c->res = res;
		}
	}
}

static void conn_on_poll(void *ctx, int revents)
{
	struct pg_conn *c = ctx;

	if (c == NULL || c->pg == NULL)
		return;
	c->polled = 0;
	if (c->state == CONN_CONNECTING) {
		conn_connect_step(c);
		return;
	}
	if (revents < 0)
		revents = POLLERR;
	if (c->flushing && (revents & (POLLOUT | POLLERR | POLLHUP))) {
		int r = PQflush(c->pg);

		if (r < 0) {
			conn_lost(c, PQerrorMessage(c->pg));
			return;
		}
		c->flushing = r == 1;
	}
	if (revents & (POLLIN | POLLERR | POLLHUP)) {
		conn_read(c);
		if (c->pg == NULL)
			return;
	}
	if (conn_arm(c) < 0)
		conn_lost(c, "cannot poll the connection");
}

/* ---- the pool ---- */

/* An idle connection for a request: a priority request may take any (its
 * own kept ones first), another one only the first max_conns. */
static struct pg_conn *pool_idle_conn(struct store_pgpool *pool, bool priority)
{
	if (priority)
		for (unsigned int i = pool->set.max_conns; i < pool->nconns; i++)
			if (pool->conns[i].state == CONN_IDLE)
				return &pool->conns[i];
	for (unsigned int i = 0; i < pool->set.max_conns; i++)
		if (pool->conns[i].state == CONN_IDLE)
			return &pool->conns[i];
	return NULL;
}

/* Opens connections: min_conns always, more while requests wait; one at a
 * time while down; none before the backoff ends. */
static void pool_maintain(struct store_pgpool *pool)
{
	unsigned int max = pool->set.max_conns;
	unsigned int live, connecting, need, plive, pconnecting, pneed = 0;
	uint64_t now = now_ms(pool);

	if (pool->freeing)
		return;
	live = count_range(pool, 0, max, state_live);
	connecting = count_range(pool, 0, max, state_connecting);
	plive = count_range(pool, max, pool->nconns, state_live);
	pconnecting = count_range(pool, max, pool->nconns, state_connecting);
	need = pool->set.min_conns;
	if (pool->qlen > connecting) {
		unsigned int busy_need = live + connecting + (pool->qlen - connecting);

		if (busy_need > need)
			need = busy_need;
	}
	if (need > max)
		need = max;
	/* the kept connections open when a priority request waits, and
	 * stay (a lookup should not wait for a connect) */
	if (pool->qprio > pconnecting)
		pneed = plive + pconnecting + (pool->qprio - pconnecting);
	if (pneed > pool->nconns - max)
		pneed = pool->nconns - max;
	if (pool->down) {
		/* one attempt at a time, on an ordinary slot */
		pneed = 0;
		if (need > connecting + 1)
			need = connecting + 1;
	}
	if (live + connecting >= need && plive + pconnecting >= pneed)
		return;
	if (now < pool->retry_at) {
		store_timer_want(&pool->timer, pool->retry_at);
		return;
	}
	for (unsigned int i = 0; i < pool->nconns; i++) {
		struct pg_conn *c = &pool->conns[i];
		bool kept = i >= max;

		if (c->state != CONN_EMPTY ||
		    (kept ? plive + pconnecting >= pneed : live + connecting >= need))
			continue;
		if (kept)
			pconnecting++;
		else
			connecting++;
		conn_start(c);
		if (now_ms(pool) < pool->retry_at)
			break; /* that attempt failed at once */
	}
}

static void pool_dispatch(struct store_pgpool *pool)
{
	struct pg_conn *c;

	while (pool->qhead != NULL && (c = pool_idle_conn(pool, pool->qhead->priority)) != NULL) {
		struct pg_req *req = pool->qhead;

		queue_remove(pool, req);
		if (req->deadline <= now_ms(pool)) {
			/* expired in the queue: do not spend a connection on it */
			pool->stats.timeouts++;
			req_defer(pool, req, STORE_TEMPORARY,
				  "timeout waiting for a PostgreSQL connection");
			continue;
		}
		conn_send(c, req);
	}
	pool_maintain(pool);
}

static void pool_on_timer(void *ctx)
{
	struct store_pgpool *pool = ctx;
	struct pg_req *deferred, *expired = NULL, *req, *next;
	uint64_t now, next_at = 0;

	if (pool == NULL)
		return;
	store_timer_fired(&pool->timer);
	now = now_ms(pool);

	/* 1. connect and statement deadlines */
	for (unsigned int i = 0; i < pool->nconns; i++) {
		struct pg_conn *c = &pool->conns[i];

		if (c->deadline == 0 || c->deadline > now)
			continue;
		if (c->state == CONN_CONNECTING) {
			conn_attempt_failed(c, "connect timeout");
		} else if (c->state == CONN_BUSY && c->req != NULL) {
			conn_timeout(c);
		} else {
			c->deadline = 0;
		}
	}
	/* 2. requests that waited too long in the queue */
	for (req = pool->qhead; req != NULL; req = next) {
		next = req->next;
		if (req->deadline > now)
			continue;
		queue_remove(pool, req);
		pool->stats.timeouts++;
		req->next = expired;
		expired = req;
	}
	for (req = expired; req != NULL; req = next) {
		next = req->next;
		req_defer(pool, req, STORE_TEMPORARY, "timeout waiting for a PostgreSQL connection");
	}
	/* 3. deferred callbacks: only those parked before this point, so a
	 * caller retrying at once cannot keep us here */
	deferred = pool->dhead;
	pool->dhead = pool->dtail = NULL;
	for (req = deferred; req != NULL; req = next) {
		next = req->next;
		req_finish(pool, req, req->fail_status, NULL, req->fail_msg, NULL);
	}
	/* 4. retries, then the next deadline */
	pool_maintain(pool);
	now = now_ms(pool);
	for (unsigned int i = 0; i < pool->nconns; i++) {
		uint64_t d = pool->conns[i].deadline;

		if (d != 0 && (next_at == 0 || d < next_at))
			next_at = d;
	}
	for (req = pool->qhead; req != NULL; req = req->next)
		if (next_at == 0 || req->deadline < next_at)
			next_at = req->deadline;
	if (pool->dhead != NULL)
		next_at = now;
	if (next_at != 0)
		store_timer_want(&pool->timer, next_at);
}

static const struct pn_io_handlers timer_handlers = {
	.on_timer = pool_on_timer,
	.on_close = conn_io_on_close,
};

struct store_pgpool *store_pgpool_new(struct pn_loop *loop,
				      const struct store_pgpool_settings *set,
				      const char **error_r)
{
	struct store_pgpool *pool;

	if (set == NULL || set->dsn == NULL) {
		store_error(error_r, "PostgreSQL pool: no connection string");
		return NULL;
	}
	pool = calloc(1, sizeof(*pool));
	if (pool == NULL) {
		store_error(error_r, "out of memory");
		return NULL;
	}
	pool->loop = loop;
	pool->set = *set;
	if (pool->set.max_conns == 0)
		pool->set.max_conns = 4;
	if (pool->set.min_conns == 0)
		pool->set.min_conns = 1;
	if (pool->set.min_conns > pool->set.max_conns)
		pool->set.min_conns = pool->set.max_conns;
	if (pool->set.max_queue == 0)
		pool->set.max_queue = 256;
	if (pool->set.query_timeout_ms == 0)
		pool->set.query_timeout_ms = 10000;
	if (pool->set.connect_timeout_ms == 0)
		pool->set.connect_timeout_ms = 5000;
	if (pool->set.backoff_min_ms == 0)
		pool->set.backoff_min_ms = 100;
	if (pool->set.backoff_max_ms < pool->set.backoff_min_ms)
		pool->set.backoff_max_ms = pool->set.backoff_min_ms > 5000 ?
			pool->set.backoff_min_ms : 5000;
	pool->backoff_ms = pool->set.backoff_min_ms;
	pool->rnd = now_us() ^ (uint64_t)(uintptr_t)pool;
	if (pool->rnd == 0)
		pool->rnd = 1;
	pool->dsn = strdup(set->dsn);
	if (pool->set.priority_conns > 64)
		pool->set.priority_conns = 64;
	pool->nconns = pool->set.max_conns + pool->set.priority_conns;
	pool->conns = calloc(pool->nconns, sizeof(*pool->conns));
	pool->timer.io = PN_IO_NONE;
	if (pool->dsn == NULL || pool->conns == NULL) {
		store_error(error_r, "out of memory");
		goto fail;
	}
	pool->set.dsn = pool->dsn;
	pool->dsn_has_options = dsn_sets_options(pool->dsn);
	for (unsigned int i = 0; i < pool->nconns; i++) {
		pool->conns[i].pool = pool;
		pool->conns[i].io = PN_IO_NONE;
		pool->conns[i].fd = -1;
	}
	if (store_timer_init(&pool->timer, loop, &timer_handlers, pool) < 0) {
		store_error(error_r, "no loop slot for the PostgreSQL pool timer");
		goto fail;
	}
	pool_maintain(pool);
	return pool;
fail:
	store_timer_close(&pool->timer);
	free(pool->conns);
	free(pool->dsn);
	free(pool);
	return NULL;
}

void store_pgpool_free(struct store_pgpool **poolp)
{
	struct store_pgpool *pool = *poolp;
	struct pg_req *req;

	if (pool == NULL)
		return;
	*poolp = NULL;
	pool->freeing = true;
	/* running requests first, then the queue, then the deferred ones */
	for (unsigned int i = 0; i < pool->nconns; i++) {
		struct pg_conn *c = &pool->conns[i];

		if (c->req != NULL) {
			req = c->req;
			c->req = NULL;
			if (c->tx != NULL) {
				c->tx->conn = NULL;
				tx_mark_failed(c->tx, STORE_TEMPORARY, "pool closed");
				c->tx = NULL;
			}
			conn_close(c);
			req_finish(pool, req, STORE_TEMPORARY, NULL, "pool closed", NULL);
		}
	}
	while ((req = pool->qhead) != NULL) {
		queue_remove(pool, req);
		req_finish(pool, req, STORE_TEMPORARY, NULL, "pool closed", NULL);
	}
	while ((req = pool->dhead) != NULL) {
		pool->dhead = req->next;
		if (pool->dhead == NULL)
			pool->dtail = NULL;
		req_finish(pool, req, req->fail_status, NULL, req->fail_msg, NULL);
	}
	for (unsigned int i = 0; i < pool->nconns; i++) {
		struct pg_conn *c = &pool->conns[i];

		if (c->tx != NULL) {
			c->tx->conn = NULL;
			tx_mark_failed(c->tx, STORE_TEMPORARY, "pool closed");
			c->tx = NULL;
		}
		conn_close(c);
		free(c->prepared);
	}
	store_timer_close(&pool->timer);
	for (unsigned int i = 0; i < pool->nstmts; i++) {
		free(pool->stmts[i]->name);
		free(pool->stmts[i]->sql);
		free(pool->stmts[i]->types);
		free(pool->stmts[i]);
	}
	free(pool->stmts);
	free(pool->conns);
	free(pool->dsn);
	free(pool);
}

const struct store_pg_stmt *store_pgpool_declare(struct store_pgpool *pool,
						 const char *name, const char *sql,
						 int nparams, const Oid *types,
						 const char **error_r)
{
	struct store_pg_stmt *s;
	size_t len = name != NULL ? strlen(name) : 0;

	if (len == 0 || len > STMT_NAME_MAX || sql == NULL || nparams < 0 || nparams > 65535) {
		store_error(error_r, "prepared statement: bad name, SQL or parameter count");
		return NULL;
	}
	for (size_t i = 0; i < len; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) {
			store_error(error_r, "prepared statement name: only a-z, 0-9 and _");
			return NULL;
		}
	}
	for (unsigned int i = 0; i < pool->nstmts; i++) {
		if (strcmp(pool->stmts[i]->name, name) == 0) {
			store_error(error_r, "prepared statement %s declared twice", name);
			return NULL;
		}
	}
	if (pool->nstmts == pool->stmts_cap) {
		unsigned int cap = pool->stmts_cap != 0 ? pool->stmts_cap * 2 : 16;
		struct store_pg_stmt **p = realloc(pool->stmts, cap * sizeof(*p));

		if (p == NULL) {
			store_error(error_r, "out of memory");
			return NULL;
		}
		pool->stmts = p;
		pool->stmts_cap = cap;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		store_error(error_r, "out of memory");
		return NULL;
	}
	s->index = pool->nstmts;
	s->name = strdup(name);
	s->sql = strdup(sql);
	s->nparams = nparams;
	if (types != NULL && nparams > 0) {
		s->types = malloc((size_t)nparams * sizeof(Oid));
		if (s->types != NULL)
			memcpy(s->types, types, (size_t)nparams * sizeof(Oid));
	}
	if (s->name == NULL || s->sql == NULL || (types != NULL && nparams > 0 && s->types == NULL)) {
		free(s->name);
		free(s->sql);
		free(s->types);
		free(s);
		store_error(error_r, "out of memory");
		return NULL;
	}
	pool->stmts[pool->nstmts++] = s;
	return s;
}

const struct store_pg_stmt *store_pgpool_find(const struct store_pgpool *pool,
					      const char *name)
{
	if (pool == NULL || name == NULL)
		return NULL;
	for (unsigned int i = 0; i < pool->nstmts; i++)
		if (strcmp(pool->stmts[i]->name, name) == 0)
			return pool->stmts[i];
	return NULL;
}

static bool query_ok(const struct store_pg_query *q)
{
	if (q == NULL || (q->sql == NULL) == (q->stmt == NULL))
		return false;
	if (q->nparams < 0 || q->nparams > 65535 || (q->nparams > 0 && q->values == NULL))
		return false;
	if (q->stmt != NULL && q->stmt->nparams != q->nparams)
		return false;
	return true;
}

/* Submits a pooled request (QUERY or BEGIN). */
static int pool_submit(struct store_pgpool *pool, struct pg_req *req)
{
	struct pg_conn *c;

	if (pool->down) {
		char msg[MSG_MAX + 32];

		snprintf(msg, sizeof(msg), "PostgreSQL unavailable: %s", pool->last_error);
		pool->stats.unavailable++;
		req_defer(pool, req, STORE_TEMPORARY, msg);
		pool_maintain(pool);
		return 0;
	}
	/* nothing of its kind waits before it: straight to a connection */
	if ((pool->qhead == NULL || (req->priority && !pool->qhead->priority)) &&
	    (c = pool_idle_conn(pool, req->priority)) != NULL) {
		conn_send(c, req);
		return 0;
	}
	if (pool->qlen >= pool->set.max_queue) {
		pool->stats.queue_full++;
		req_defer(pool, req, STORE_TEMPORARY, "PostgreSQL request queue full");
		return 0;
	}
	queue_push(pool, req);
	store_timer_want(&pool->timer, req->deadline);
	pool_maintain(pool);
	return 0;
}

int store_pgpool_query(struct store_pgpool *pool, const struct store_pg_query *q,
		       store_pg_cb *cb, void *ctx)
{
	struct pg_req *req;

	if (pool == NULL || cb == NULL || !query_ok(q)) {
		errno = EINVAL;
		return -1;
	}
	if (pool->freeing) {
		errno = ESHUTDOWN;
		return -1;
	}
	req = req_new(pool, REQ_QUERY, q, NULL);
	if (req == NULL)
		return -1;
	req->cb = cb;
	req->ctx = ctx;
	return pool_submit(pool, req);
}

int store_pgpool_exec(struct store_pgpool *pool, const char *sql, int nparams,
		      const char *const *values, store_pg_cb *cb, void *ctx)
{
	struct store_pg_query q = { .sql = sql, .nparams = nparams, .values = values };

	return store_pgpool_query(pool, &q, cb, ctx);
}

int store_pgtx_begin(struct store_pgpool *pool, const char *begin_sql,
		     store_pgtx_cb *cb, void *ctx)
{
	struct pg_req *req;

	if (pool == NULL || cb == NULL) {
		errno = EINVAL;
		return -1;
	}
	if (pool->freeing) {
		errno = ESHUTDOWN;
		return -1;
	}
	req = req_new(pool, REQ_BEGIN, NULL, begin_sql != NULL ? begin_sql : "BEGIN");
	if (req == NULL)
		return -1;
	req->tx_cb = cb;
	req->ctx = ctx;
	return pool_submit(pool, req);
}

/* Starts a transaction request (statement, COMMIT, ROLLBACK) on the pinned
 * connection, or fails it when the transaction already failed. */
static void tx_submit(struct store_pgtx *tx, struct pg_req *req)
{
	struct store_pgpool *pool = tx->pool;

	req->tx = tx;
	tx->req = req;
	if (tx->conn == NULL) {
		if (req->kind == REQ_ROLLBACK)
			req_defer(pool, req, STORE_OK, "");
		else
			req_defer(pool, req, tx->fail_status != STORE_OK ? tx->fail_status :
				  STORE_TEMPORARY, tx->fail_msg);
		return;
	}
	if (tx->failed && req->kind == REQ_TX_QUERY) {
		char msg[MSG_MAX + 32];

		snprintf(msg, sizeof(msg), "transaction aborted: %s", tx->fail_msg);
		req_defer(pool, req, tx->fail_status, msg);
		return;
	}
	conn_send(tx->conn, req);
}

int store_pgtx_query(struct store_pgtx *tx, const struct store_pg_query *q,
		     store_pg_cb *cb, void *ctx)
{
	struct pg_req *req;

	if (tx == NULL || cb == NULL || !query_ok(q)) {
		errno = EINVAL;
		return -1;
	}
	if (tx->req != NULL) {
		errno = EBUSY;
		return -1;
	}
	if (tx->pool->freeing) {
		errno = ESHUTDOWN;
		return -1;
	}
	req = req_new(tx->pool, REQ_TX_QUERY, q, NULL);
	if (req == NULL)
		return -1;
	req->cb = cb;
	req->ctx = ctx;
	tx_submit(tx, req);
	return 0;
}

static int tx_end(struct store_pgtx **txp, enum req_kind kind, store_pg_cb *cb, void *ctx)
{
	struct store_pgtx *tx = txp != NULL ? *txp : NULL;
	struct pg_req *req;
	const char *sql;

	if (tx == NULL || cb == NULL) {
		errno = EINVAL;
		return -1;
	}
	if (tx->req != NULL) {
		errno = EBUSY;
		return -1;
	}
	if (tx->pool->freeing) {
		errno = ESHUTDOWN;
		return -1;
	}
	sql = kind == REQ_COMMIT && !tx->failed ? "COMMIT" : "ROLLBACK";
	req = req_new(tx->pool, kind, NULL, sql);
	if (req == NULL)
		return -1;
	req->cb = cb;
	req->ctx = ctx;
	*txp = NULL;
	tx_submit(tx, req);
	return 0;
}

int store_pgtx_commit(struct store_pgtx **tx, store_pg_cb *cb, void *ctx)
{
	return tx_end(tx, REQ_COMMIT, cb, ctx);
}

int store_pgtx_rollback(struct store_pgtx **tx, store_pg_cb *cb, void *ctx)
{
	return tx_end(tx, REQ_ROLLBACK, cb, ctx);
}

bool store_pgtx_failed(const struct store_pgtx *tx)
{
	return tx->failed;
}

bool store_pgpool_ready(const struct store_pgpool *pool)
{
	return pool != NULL && atomic_load(&pool->live) > 0;
}

const char *store_pgpool_last_error(const struct store_pgpool *pool)
{
	return pool->down ? pool->last_error : "";
}

static bool state_pinned(enum conn_state s)
{
	return s == CONN_PINNED;
}

void store_pgpool_get_stats(const struct store_pgpool *pool,
			    struct store_pgpool_stats *stats_r)
{
	*stats_r = pool->stats;
	stats_r->conns_up = count_state(pool, state_live);
	stats_r->conns_connecting = count_state(pool, state_connecting);
	stats_r->conns_pinned = count_state(pool, state_pinned);
	for (unsigned int i = 0; i < pool->nconns; i++)
		if (pool->conns[i].state == CONN_BUSY && pool->conns[i].tx != NULL)
			stats_r->conns_pinned++;
	stats_r->queued = pool->qlen;
	stats_r->down = pool->down;
}
