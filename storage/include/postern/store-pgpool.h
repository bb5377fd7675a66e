/* Asynchronous PostgreSQL on the loop: a small pool of non-blocking libpq
 * connections per loop (per thread), with a bounded queue of waiting
 * requests, prepared statements, transactions, timeouts and reconnection.
 *
 * I/O: everything runs on the loop's thread. Connections are opened with
 * PQconnectStartParams/PQconnectPoll and switched to non-blocking mode;
 * queries go out with PQsendQueryParams / PQsendPrepare /
 * PQsendQueryPrepared and PQflush, and come back with PQconsumeInput,
 * PQisBusy and PQgetResult, each driven by a one-shot pn_io_poll() on the
 * connection's socket (PN_IO_NO_CLOSE: libpq owns the fd). One request runs
 * on a connection at a time. Nothing here blocks, with one caveat: libpq
 * resolves a host NAME synchronously inside PQconnectStart, so daemons give
 * numeric addresses (host=127.0.0.1 or hostaddr=) or a Unix socket folder.
 *
 * Callbacks: a submission call that returns 0 calls its callback exactly
 * once, later, from the loop - never from inside the call - including
 * every failure (queue full, PostgreSQL down, timeout, lost connection).
 * -1 (errno EINVAL: bad arguments; EBUSY: a transaction statement is
 * already running; ESHUTDOWN: the pool is being freed; ENOMEM) means the
 * callback will not be called. Callbacks may submit new requests; they may
 * not free the pool.
 *
 * Failures are classified (store_pg_classify()): temporary for lost or
 * refused connections, server shutdown or start-up, timeouts, a full queue,
 * SQLSTATE classes 08 (connection), 53 (resources), 58 (system), 57P01-03
 * (admin shutdown, crash, cannot connect now), 57014 (cancelled), 40001
 * (serialization), 40P01 (deadlock), 55P03 (lock not available); permanent
 * for everything else (constraint violations, syntax errors, our PN class).
 *
 * Pool behaviour:
 * - min_conns connections are kept open; more are opened while requests
 *   wait, up to max_conns. A request waits in a FIFO queue of at most
 *   max_queue entries when every connection is busy; over the bound it
 *   fails at once (temporary, "queue full").
 * - Priority: a request marked priority (a short lookup a client waits on,
 *   e.g. an SMTP RCPT check) is queued ahead of every ordinary request
 *   (FIFO among its kind), and may also use priority_conns connections
 *   that ordinary requests never get (opened when a priority request
 *   waits, then kept), so it does not wait behind long statements such as
 *   whole deliveries (bench/README.md, finding 16). Transactions are
 *   never priority.
 * - Timeouts: a request's timeout counts from submission (time in the queue
 *   included). When it expires on a connection, the callback gets a
 *   temporary failure and the connection is closed (libpq 15 has no
 *   non-blocking cancel; the server notices the closed socket) and
 *   replaced.
 * - A lost connection fails its running request (temporary) and is
 *   reopened. A failed connect attempt is retried after a backoff (doubling
 *   from backoff_min_ms to backoff_max_ms, with jitter). While no connection
 *   is up and the last attempt failed, the pool is "down": new requests and
 *   the queue fail at once (temporary) rather than wait; the retries go on
 *   by themselves and the pool is up again after the first success.
 * - Prepared statements are declared once per pool with a name and SQL and
 *   prepared lazily on each connection the first time they run there (and
 *   again after a reconnect).
 * - Transactions pin one connection from BEGIN to COMMIT/ROLLBACK. When a
 *   statement fails, the transaction is aborted: later statements fail
 *   with the same status without being sent, and commit sends ROLLBACK and
 *   reports the failure. A connection lost during COMMIT reports a
 *   temporary failure whose outcome is unknown (the message says so).
 * COPY and multi-statement strings are not supported (one statement per
 * request).
 */
#ifndef POSTERN_STORE_PGPOOL_H
#define POSTERN_STORE_PGPOOL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "postern/store-status.h"

struct pn_loop;
struct store_pgpool;
struct store_pgtx;
struct store_pg_stmt;

struct store_pgpool_settings {
	const char *dsn;		/* libpq conninfo or URI (copied) */
	unsigned int min_conns;		/* kept open; default 1 */
	unsigned int max_conns;		/* default 4 */
	unsigned int priority_conns;	/* more, for priority requests only;
					 * default 0, at most 64 */
	unsigned int max_queue;		/* waiting requests; default 256 */
	unsigned int query_timeout_ms;	/* default 10000 */
	unsigned int connect_timeout_ms; /* default 5000 */
	unsigned int backoff_min_ms;	/* default 100 */
	unsigned int backoff_max_ms;	/* default 5000 */
	/* Called for every finished request with its outcome and round-trip
	 * time (submission to callback) in microseconds, e.g. to feed a
	 * histogram (store_metrics_pg_observe); optional. */
	void (*observe)(void *ctx, enum store_status status, uint64_t usec);
	void *observe_ctx;
};

/* What a callback gets. res is the result (PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK) when status is STORE_OK, else the server's error
 * result if there was one (or NULL). It is cleared after the callback
 * returns, unless the callback takes it by setting reply->res = NULL (then
 * it owns it and calls PQclear()). sqlstate is "" when unknown; error is
 * "" on success, else one line (a server message, "timeout", ...). */
struct store_pg_reply {
	enum store_status status;
	PGresult *res;
	const char *sqlstate;
	const char *error;
};

typedef void store_pg_cb(void *ctx, struct store_pg_reply *reply);

/* One statement. Exactly one of sql and stmt is set. values[i] NULL is SQL
 * NULL; with formats NULL (or formats[i] == 0) values are NUL-terminated
 * text, with formats[i] == 1 binary of lengths[i] bytes. Everything is
 * copied by the submission call. */
struct store_pg_query {
	const char *sql;
	const struct store_pg_stmt *stmt;
	int nparams;
	const char *const *values;
	const int *lengths;
	const int *formats;
	int result_format;		/* 0 text, 1 binary */
	unsigned int timeout_ms;	/* 0: the pool's query_timeout_ms */
	bool priority;			/* ahead of the others (see above) */
};

/* Creates a pool on loop and starts connecting min_conns connections (a
 * down server is not an error here: the pool retries). set->dsn is
 * required; zero fields take the defaults. Returns NULL with *error_r. */
struct store_pgpool *store_pgpool_new(struct pn_loop *loop,
				      const struct store_pgpool_settings *set,
				      const char **error_r);
/* Fails every waiting and running request (temporary, "pool closed"; the
 * callbacks run inside this call), closes the connections and the timer,
 * sets *pool NULL. Every transaction must have been ended before. Not from
 * one of the pool's callbacks; before pn_loop_free(). */
void store_pgpool_free(struct store_pgpool **pool);

/* Declares a prepared statement: name 1..63 of [a-z0-9_], unique in the
 * pool; sql with $1..$nparams; types may be NULL (the server infers them).
 * Returns the handle (owned by the pool), or NULL with *error_r. */
const struct store_pg_stmt *store_pgpool_declare(struct store_pgpool *pool,
						 const char *name, const char *sql,
						 int nparams, const Oid *types,
						 const char **error_r);

/* The statement declared in pool under name, or NULL: lets a module
 * without an object of its own (e.g. the login lookup) declare its
 * statement on first use and find it again on the next. */
const struct store_pg_stmt *store_pgpool_find(const struct store_pgpool *pool,
					      const char *name);

/* Runs one statement on a pooled connection (autocommit). */
int store_pgpool_query(struct store_pgpool *pool, const struct store_pg_query *q,
		       store_pg_cb *cb, void *ctx);
/* Shorthand: sql with nparams text parameters. */
int store_pgpool_exec(struct store_pgpool *pool, const char *sql, int nparams,
		      const char *const *values, store_pg_cb *cb, void *ctx);

/* Transactions. begin_cb gets the transaction (owned by the caller until it
 * passes it to commit or rollback) when reply->status is STORE_OK, else
 * NULL. begin_sql is NULL for "BEGIN" or e.g. "BEGIN ISOLATION LEVEL
 * SERIALIZABLE". */
typedef void store_pgtx_cb(void *ctx, struct store_pgtx *tx, struct store_pg_reply *reply);
int store_pgtx_begin(struct store_pgpool *pool, const char *begin_sql,
		     store_pgtx_cb *cb, void *ctx);
/* One statement in the transaction; one at a time (EBUSY otherwise). */
int store_pgtx_query(struct store_pgtx *tx, const struct store_pg_query *q,
		     store_pg_cb *cb, void *ctx);
/* Ends the transaction and sets *tx NULL (the object is freed after cb).
 * commit: STORE_OK only when the server committed. rollback: STORE_OK
 * unless the ROLLBACK itself failed in a way that matters (a lost
 * connection rolls back too, and is reported as OK). Both return -1 EBUSY
 * (and leave *tx) while a statement is running. */
int store_pgtx_commit(struct store_pgtx **tx, store_pg_cb *cb, void *ctx);
int store_pgtx_rollback(struct store_pgtx **tx, store_pg_cb *cb, void *ctx);
/* True once a statement of tx failed or its connection was lost. */
bool store_pgtx_failed(const struct store_pgtx *tx);

/* Readiness (for /readyz): at least one connection is up. */
bool store_pgpool_ready(const struct store_pgpool *pool);
/* Why the last connect attempt failed ("" while not down), for the
 * /readyz detail. */
const char *store_pgpool_last_error(const struct store_pgpool *pool);

/* Round-trip histogram bucket upper bounds in microseconds; the last
 * bucket (index STORE_PG_RTT_BUCKETS - 1) takes everything above. */
#define STORE_PG_RTT_BUCKETS 12
extern const uint64_t store_pg_rtt_bounds_us[STORE_PG_RTT_BUCKETS - 1];

struct store_pgpool_stats {
	uint64_t requests;		/* submitted (statements, BEGIN, COMMIT...) */
	uint64_t ok, temporary, permanent; /* outcomes */
	uint64_t timeouts;		/* among temporary */
	uint64_t queue_full;		/* among temporary */
	uint64_t unavailable;		/* among temporary: refused while down */
	uint64_t connects, connect_failures, disconnects;
	uint64_t rtt_us_sum;
	uint64_t rtt_buckets[STORE_PG_RTT_BUCKETS];
	/* gauges */
	unsigned int conns_up, conns_connecting, conns_pinned, queued;
	bool down;
};
void store_pgpool_get_stats(const struct store_pgpool *pool,
			    struct store_pgpool_stats *stats_r);

/* Classifies a failed result (res may be NULL, e.g. a lost connection, and
 * is then temporary) by its SQLSTATE, see above. */
enum store_status store_pg_classify(const PGresult *res);
/* Same, from a SQLSTATE string ("" or NULL: temporary). */
enum store_status store_pg_classify_sqlstate(const char *sqlstate);

#endif
