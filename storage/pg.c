/* Synchronous libpq helpers for tools and tests (see postern/store-pg.h). */
#include "postern/store-pg.h"
#include "store-private.h"

#include <stdlib.h>
#include <string.h>

static _Thread_local char pg_last_sqlstate[6];

static void pg_quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

int store_pg_connect(const char *dsn, PGconn **conn_r, const char **error_r)
{
	const char *keys[] = { "dbname", "fallback_application_name", NULL };
	const char *values[] = { dsn != NULL ? dsn : "", "postern", NULL };
	PGconn *conn = PQconnectdbParams(keys, values, 1);

	if (conn == NULL)
		return store_error(error_r, "PostgreSQL: out of memory");
	if (PQstatus(conn) != CONNECTION_OK) {
		char msg[STORE_ERROR_MAX];
		const char *m = PQerrorMessage(conn);
		size_t n = strcspn(m, "\n");

		if (n >= sizeof(msg))
			n = sizeof(msg) - 1;
		memcpy(msg, m, n);
		msg[n] = '\0';
		PQfinish(conn);
		return store_error(error_r, "PostgreSQL: %s", msg);
	}
	PQsetNoticeProcessor(conn, pg_quiet_notice, NULL);
	*conn_r = conn;
	return 0;
}

void store_pg_close(PGconn **conn)
{
	if (*conn != NULL) {
		PQfinish(*conn);
		*conn = NULL;
	}
}

static int pg_fail(PGconn *conn, PGresult *res, const char **error_r)
{
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char line[STORE_ERROR_MAX];
	size_t n;

	if (msg == NULL)
		msg = PQerrorMessage(conn);
	n = strcspn(msg, "\n");
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	memcpy(line, msg, n);
	line[n] = '\0';
	if (state != NULL && strlen(state) == 5)
		memcpy(pg_last_sqlstate, state, 6);
	else
		pg_last_sqlstate[0] = '\0';
	PQclear(res);
	return store_error(error_r, "%s", line[0] != '\0' ? line : "PostgreSQL error");
}

PGresult *store_pg_exec(PGconn *conn, const char *sql, int nparams,
			const char *const *params, const char **error_r)
{
	PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		pg_last_sqlstate[0] = '\0';
		return res;
	}
	pg_fail(conn, res, error_r);
	return NULL;
}

int store_pg_command(PGconn *conn, const char *sql, int nparams,
		     const char *const *params, const char **error_r)
{
	PGresult *res = store_pg_exec(conn, sql, nparams, params, error_r);

	if (res == NULL)
		return -1;
	PQclear(res);
	return 0;
}

int store_pg_script(PGconn *conn, const char *sql, const char **error_r)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) {
		PQclear(res);
		pg_last_sqlstate[0] = '\0';
		return 0;
	}
	return pg_fail(conn, res, error_r);
}

const char *store_pg_last_sqlstate(void)
{
	return pg_last_sqlstate;
}

int store_pg_begin(PGconn *conn, const char **error_r)
{
	return store_pg_command(conn, "BEGIN", 0, NULL, error_r);
}

int store_pg_commit(PGconn *conn, const char **error_r)
{
	return store_pg_command(conn, "COMMIT", 0, NULL, error_r);
}

void store_pg_rollback(PGconn *conn)
{
	PGresult *res = PQexec(conn, "ROLLBACK");

	PQclear(res);
}

int64_t store_pg_int(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return -1;
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}
