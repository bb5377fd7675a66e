/* Synchronous libpq helpers for tools and tests (posternctl, unit tests).
 *
 * Every call here blocks on the network: never call one on a loop thread
 * (daemons use the asynchronous adapter). Results are PGresult objects the
 * caller clears with PQclear(); errors are one line in *error_r (per-thread
 * buffer, valid until the next failing store_ call in the thread).
 */
#ifndef POSTERN_STORE_PG_H
#define POSTERN_STORE_PG_H

#include <libpq-fe.h>
#include <stdint.h>

/* Connects with a libpq connection string or URI (NULL or "" uses libpq's
 * PG* environment defaults). Server notices are dropped. Returns 0 with
 * *conn_r set, or -1 with *error_r. */
int store_pg_connect(const char *dsn, PGconn **conn_r, const char **error_r);
/* Closes the connection and sets *conn to NULL (no-op for NULL). */
void store_pg_close(PGconn **conn);

/* Runs one statement with text parameters (NULL entries are SQL NULL).
 * Returns the result when it succeeded (commands and queries alike), or
 * NULL with *error_r = the server's primary message; the SQLSTATE of that
 * failure is then available from store_pg_last_sqlstate(). */
PGresult *store_pg_exec(PGconn *conn, const char *sql, int nparams,
			const char *const *params, const char **error_r);
/* Same, discarding the result. Returns 0 or -1. */
int store_pg_command(PGconn *conn, const char *sql, int nparams,
		     const char *const *params, const char **error_r);
/* Runs a script of several statements (simple query protocol, no
 * parameters). Returns 0 or -1. */
int store_pg_script(PGconn *conn, const char *sql, const char **error_r);
/* SQLSTATE of the last failure of store_pg_exec/command/script in this
 * thread ("" if it had none, e.g. a lost connection). */
const char *store_pg_last_sqlstate(void);

int store_pg_begin(PGconn *conn, const char **error_r);
int store_pg_commit(PGconn *conn, const char **error_r);
/* Rolls back; errors are ignored (the connection may be gone). */
void store_pg_rollback(PGconn *conn);

/* Reads (row, col) of res as a signed integer; -1 for SQL NULL. */
int64_t store_pg_int(const PGresult *res, int row, int col);

#endif
