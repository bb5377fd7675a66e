/* Smoke test of the test harness' services from C: connects to the private
 * PostgreSQL named by POSTERN_PG_DSN with libpq and runs a parameterized
 * query, and to the private Redis at POSTERN_REDIS_HOST/POSTERN_REDIS_PORT
 * with hiredis and does SET/GET/DEL. Skipped (exit 77, a failure under
 * CI=true) when tests/run did not export those variables.
 */
#include <postern/testing.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include <sys/time.h>
#include <unistd.h>

PN_TEST(test_pg_query)
{
	PGconn *conn = PQconnectdb(getenv("POSTERN_PG_DSN"));
	CHECK(conn != NULL);
	if (conn == NULL)
		return;
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "connect: %s", PQerrorMessage(conn));
		CHECK(PQstatus(conn) == CONNECTION_OK);
		PQfinish(conn);
		return;
	}
	/* The harness runs PostgreSQL 15 and logs us in as role postern. */
	CHECK(PQserverVersion(conn) >= 150000);
	CHECK_STR(PQuser(conn), "postern");
	CHECK_STR(PQdb(conn), "postern");

	const char *params[1] = { "41" };
	PGresult *res = PQexecParams(conn, "SELECT $1::int + 1, current_user",
				     1, NULL, params, NULL, NULL, 0);
	CHECK_INT(PQresultStatus(res), PGRES_TUPLES_OK);
	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		CHECK_INT(PQntuples(res), 1);
		CHECK_STR(PQgetvalue(res, 0, 0), "42");
		CHECK_STR(PQgetvalue(res, 0, 1), "postern");
	} else {
		fprintf(stderr, "query: %s", PQerrorMessage(conn));
	}
	PQclear(res);

	/* A server-side error comes back as an error result, not a crash. */
	res = PQexec(conn, "SELECT * FROM no_such_table_here");
	CHECK_INT(PQresultStatus(res), PGRES_FATAL_ERROR);
	CHECK_STR(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42P01");
	PQclear(res);
	PQfinish(conn);
}

PN_TEST(test_redis_set_get)
{
	const char *host = getenv("POSTERN_REDIS_HOST");
	int port = atoi(getenv("POSTERN_REDIS_PORT"));
	struct timeval tv = { .tv_sec = 5, .tv_usec = 0 };
	redisContext *c = redisConnectWithTimeout(host, port, tv);
	CHECK(c != NULL);
	if (c == NULL)
		return;
	if (c->err != 0) {
		fprintf(stderr, "redis connect %s:%d: %s\n", host, port, c->errstr);
		CHECK_INT(c->err, 0);
		redisFree(c);
		return;
	}
	/* A key of our own so parallel runs on one Redis do not collide. */
	char key[64];
	snprintf(key, sizeof(key), "test-services:%ld", (long)getpid());
	redisReply *r = redisCommand(c, "SET %s %b", key, "v\0alue", (size_t)6);
	CHECK(r != NULL && r->type == REDIS_REPLY_STATUS);
	if (r != NULL && r->type == REDIS_REPLY_STATUS)
		CHECK_STR(r->str, "OK");
	freeReplyObject(r);

	r = redisCommand(c, "GET %s", key);
	CHECK(r != NULL && r->type == REDIS_REPLY_STRING);
	if (r != NULL && r->type == REDIS_REPLY_STRING)
		CHECK_MEM(r->str, r->len, "v\0alue", (size_t)6);
	freeReplyObject(r);

	r = redisCommand(c, "DEL %s", key);
	CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER);
	if (r != NULL && r->type == REDIS_REPLY_INTEGER)
		CHECK_INT(r->integer, 1);
	freeReplyObject(r);

	r = redisCommand(c, "GET %s", key);
	CHECK(r != NULL && r->type == REDIS_REPLY_NIL);
	freeReplyObject(r);
	redisFree(c);
}

int pn_test_failures_;

int main(void)
{
	static const struct pn_test_case cases[] = {
		PN_TEST_CASE(test_pg_query),
		PN_TEST_CASE(test_redis_set_get),
	};
	if (getenv("POSTERN_PG_DSN") == NULL || getenv("POSTERN_REDIS_HOST") == NULL ||
	    getenv("POSTERN_REDIS_PORT") == NULL)
		return pn_test_skip("test-services",
				    "POSTERN_PG_DSN / POSTERN_REDIS_HOST / POSTERN_REDIS_PORT "
				    "not set (run tests/run)");
	return pn_test_run("test-services", cases, sizeof(cases) / sizeof(cases[0]));
}
