/* Tests of the SMTP adapter (fe-smtp.c) through the real connection layer
 * (fe-conn.c) over loopback sockets, with local delivery against the
 * harness' PostgreSQL (POSTERN_PG_DSN, a private schema per run): MX
 * delivery read back byte for byte, unknown / relay refusals, LMTP with
 * mixed recipients (one reply each), submission AUTH (refused without TLS
 * on an untrusted network, accepted on a trusted one), the sender check
 * and outbound queueing. Skipped without POSTERN_PG_DSN.
 */
#include "postern/testing.h"

#include "postern/cidr.h"
#include "postern/loop.h"
#include "postern/store-admin.h"
#include "postern/store-migrate.h"
#include "postern/store-pg.h"
#include "postern/store-pgpool.h"
#include "postern/workpool.h"

#include "fe-backend.h"
#include "fe-conn.h"
#include "fe-metrics.h"
#include "fe-node.h"
#include "fe-smtp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int pn_test_failures_;

static const char *base_dsn;
static char schema[64];
static char pool_dsn[1024];
static PGconn *conn;
static struct pn_loop *loop;
static struct fe_node node;
static struct fe_thread thread;
static struct fe_backend backend;
static struct fe_conn_env env;
static struct pn_cidr_list none, all_local;
static int listen_fd = -1;
static uint16_t listen_port;
static int64_t id_alice, id_bob;

/* ---- database ---- */

static int64_t qi(const char *sql, int n, const char *const *params)
{
	const char *error = NULL;
	PGresult *res = store_pg_exec(conn, sql, n, params, &error);
	int64_t v = -1;

	if (res == NULL) {
		fprintf(stderr, "query failed: %s\n  %s\n", error, sql);
		pn_test_failures_++;
		return -1;
	}
	if (PQntuples(res) > 0)
		v = store_pg_int(res, 0, 0);
	PQclear(res);
	return v;
}

static int64_t user(const char *address, int64_t quota)
{
	struct store_user_params p = { .password_hash = "{PLAIN}secret", .quota_bytes = quota,
				       .quota_messages = -1 };
	const char *params[1] = { address };
	const char *error = NULL;

	if (store_user_add(conn, address, &p, &error) < 0) {
		fprintf(stderr, "user add %s: %s\n", address, error);
		pn_test_failures_++;
	}
	return qi("SELECT id FROM accounts WHERE lower(address) = lower($1)", 1, params);
}

static int db_setup(void)
{
	const char *error = NULL;
	char sql[256];
	int from, to;

	snprintf(schema, sizeof(schema), "t_fesmtp_%ld_%ld", (long)getpid(), (long)time(NULL));
	if (store_pg_connect(base_dsn, &conn, &error) < 0) {
		fprintf(stderr, "connect: %s\n", error);
		return -1;
	}
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s; SET search_path TO %s;"
		 " SET synchronous_commit TO off", schema, schema);
	if (store_pg_script(conn, sql, &error) < 0 ||
	    store_migrate(conn, &from, &to, &error) < 0 ||
	    store_tenant_add(conn, "t1", -1, -1, &error) < 0 ||
	    store_domain_add(conn, "ex.test", "t1", &error) < 0) {
		fprintf(stderr, "setup: %s\n", error);
		return -1;
	}
	id_alice = user("alice@ex.test", -1);
	id_bob = user("bob@ex.test", -1);
	(void)user("tiny@ex.test", 10);
	snprintf(pool_dsn, sizeof(pool_dsn), "%s options='-csearch_path=%s'", base_dsn, schema);
	return 0;
}

static void db_teardown(void)
{
	char sql[128];
	const char *error = NULL;

	snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
	if (conn != NULL && store_pg_script(conn, sql, &error) < 0)
		fprintf(stderr, "teardown: %s\n", error);
	store_pg_close(&conn);
}

/* ---- client side ---- */

static void run_ms(int ms)
{
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (;;) {
		pn_loop_run_once(loop, 5);
		clock_gettime(CLOCK_MONOTONIC, &b);
		if ((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 >= ms)
			break;
	}
}

static int client(enum fe_service svc)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(listen_port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), sfd;

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	CHECK_INT(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	sfd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	CHECK(sfd >= 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	CHECK_INT(fe_conn_accept(&env, sfd, svc, &fe_protocol_smtp), 0);
	return fd;
}

static void say(int fd, const char *text)
{
	size_t len = strlen(text);

	while (len > 0) {
		ssize_t n = send(fd, text, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EAGAIN) {
			run_ms(2);
			continue;
		}
		CHECK(n > 0);
		if (n <= 0)
			return;
		text += n;
		len -= (size_t)n;
	}
}

static char inbuf[65536];
static size_t inlen;

/* Reads one complete reply (its last line has a space after the code)
 * and returns it (valid until the next call), or "" on timeout. */
static const char *reply(int fd)
{
	static char out[8192];
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (;;) {
		/* a complete reply in the buffer? */
		size_t start = 0;

		for (size_t i = 0; i + 1 < inlen; i++) {
			if (inbuf[i] != '\r' || inbuf[i + 1] != '\n')
				continue;
			if (i - start >= 4 && inbuf[start + 3] == ' ') {
				size_t n = i + 2;

				snprintf(out, sizeof(out), "%.*s", (int)(n < sizeof(out) ? n :
									 sizeof(out) - 1), inbuf);
				memmove(inbuf, inbuf + n, inlen - n);
				inlen -= n;
				return out;
			}
			start = i + 2;
		}
		ssize_t n = recv(fd, inbuf + inlen, sizeof(inbuf) - inlen, 0);

		if (n > 0) {
			inlen += (size_t)n;
			continue;
		}
		if (n == 0)
			return "";
		pn_loop_run_once(loop, 5);
		clock_gettime(CLOCK_MONOTONIC, &b);
		if ((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 >= 5000)
			return "";
	}
}

#define EXPECT(fd, prefix)                                                    \
	do {                                                                  \
		const char *r_ = reply(fd);                                   \
		if (strncmp(r_, prefix, strlen(prefix)) != 0) {               \
			fprintf(stderr, "%s:%d: reply \"%s\", expected \"%s...\"\n", \
				__FILE__, __LINE__, r_, prefix);              \
			pn_test_failures_++;                                  \
		}                                                             \
	} while (0)

static void bye(int fd)
{
	say(fd, "QUIT\r\n");
	EXPECT(fd, "221 ");
	close(fd);
	inlen = 0;
	for (int i = 0; i < 100 && env.conn_count > 0; i++)
		run_ms(5);
}

/* ---- tests ---- */

static const char mx_msg[] =
	"From: Far <far@remote.example>\r\n"
	"To: alice@ex.test\r\n"
	"Subject: over MX\r\n"
	"Message-ID: <mx-1@remote.example>\r\n"
	"\r\n"
	"..a line that starts with a dot\r\n"
	"last line\r\n";

PN_TEST(test_mx)
{
	int fd = client(FE_SVC_SMTP);
	char sql[256];
	PGresult *res;
	const char *error = NULL;

	EXPECT(fd, "220 ");
	say(fd, "EHLO client.example\r\n");
	EXPECT(fd, "250-");
	say(fd, "MAIL FROM:<far@remote.example>\r\n");
	EXPECT(fd, "250 2.1.0");
	say(fd, "RCPT TO:<nobody@ex.test>\r\n");
	EXPECT(fd, "550 5.1.1");
	say(fd, "RCPT TO:<victim@foreign.example>\r\n");
	EXPECT(fd, "554 5.7.1");
	say(fd, "RCPT TO:<alice@ex.test>\r\n");
	EXPECT(fd, "250 2.1.5");
	say(fd, "DATA\r\n");
	EXPECT(fd, "354");
	say(fd, mx_msg);
	say(fd, ".\r\n");
	EXPECT(fd, "250 2.0.0");
	/* AUTH is not offered on MX */
	say(fd, "AUTH PLAIN AGFsaWNlQGV4LnRlc3QAc2VjcmV0\r\n");
	EXPECT(fd, "502 5.5.1");
	bye(fd);

	/* stored: Return-Path, Delivered-To, our Received:, then the message
	 * with the dot-stuffing undone */
	snprintf(sql, sizeof(sql), "SELECT b.body FROM messages m JOIN mail_blobs b"
		 " ON b.sha256 = m.blob_sha256 WHERE m.account_id = %lld"
		 " AND m.message_id = '<mx-1@remote.example>'", (long long)id_alice);
	res = store_pg_exec(conn, sql, 0, NULL, &error);
	CHECK(res != NULL && PQntuples(res) == 1);
	if (res != NULL && PQntuples(res) == 1) {
		size_t blen = 0;
		unsigned char *body = PQunescapeBytea(
			(const unsigned char *)PQgetvalue(res, 0, 0), &blen);
		const char *head = "Return-Path: <far@remote.example>\r\n"
				   "Delivered-To: alice@ex.test\r\nReceived: from client.example";
		const char *tail = "Message-ID: <mx-1@remote.example>\r\n\r\n"
				   ".a line that starts with a dot\r\nlast line\r\n";

		CHECK(blen > strlen(head) && memcmp(body, head, strlen(head)) == 0);
		CHECK(blen > strlen(tail) &&
		      memcmp(body + blen - strlen(tail), tail, strlen(tail)) == 0);
		CHECK(memmem(body, blen, "From: Far <far@remote.example>\r\n", 32) != NULL);
		PQfreemem(body);
	}
	PQclear(res);
}

PN_TEST(test_lmtp_mixed)
{
	int fd = client(FE_SVC_LMTP);
	const char *p[1] = { "<lmtp-1@remote.example>" };

	EXPECT(fd, "220 ");
	say(fd, "LHLO mta.example\r\n");
	EXPECT(fd, "250");
	say(fd, "MAIL FROM:<far@remote.example>\r\n");
	EXPECT(fd, "250 2.1.0");
	say(fd, "RCPT TO:<alice@ex.test>\r\n");
	EXPECT(fd, "250 2.1.5");
	say(fd, "RCPT TO:<nobody@ex.test>\r\n");
	EXPECT(fd, "550 5.1.1");
	say(fd, "RCPT TO:<tiny@ex.test>\r\n");
	EXPECT(fd, "250 2.1.5");	/* 0 of 10 bytes used: fits the hint */
	say(fd, "RCPT TO:<bob@ex.test>\r\n");
	EXPECT(fd, "250 2.1.5");
	say(fd, "DATA\r\n");
	EXPECT(fd, "354");
	say(fd, "From: far@remote.example\r\nMessage-ID: <lmtp-1@remote.example>\r\n"
		"Subject: lmtp\r\n\r\nbody\r\n.\r\n");
	/* one reply per accepted recipient, in order */
	EXPECT(fd, "250 2.0.0");	/* alice */
	EXPECT(fd, "552 5.2.2");	/* tiny: bigger than its whole quota */
	EXPECT(fd, "250 2.0.0");	/* bob */
	bye(fd);
	CHECK_INT(qi("SELECT count(*) FROM messages WHERE message_id = $1", 1, p), 2);
}

PN_TEST(test_submission_untrusted)
{
	int fd;

	env.plaintext_auth = &none;
	fd = client(FE_SVC_SUBMISSION);
	EXPECT(fd, "220 ");
	say(fd, "EHLO client.example\r\n");
	EXPECT(fd, "250");
	/* no TLS, untrusted network: AUTH is refused */
	say(fd, "AUTH PLAIN AGFsaWNlQGV4LnRlc3QAc2VjcmV0\r\n");
	EXPECT(fd, "538 5.7.11");
	say(fd, "MAIL FROM:<alice@ex.test>\r\n");
	EXPECT(fd, "530 5.7.0");
	bye(fd);
	env.plaintext_auth = &all_local;
}

PN_TEST(test_submission)
{
	int fd = client(FE_SVC_SUBMISSION);
	const char *p[1] = { "<sub-1@ex.test>" };

	EXPECT(fd, "220 ");
	say(fd, "EHLO client.example\r\n");
	EXPECT(fd, "250");
	/* wrong password, then the right one ("\0alice@ex.test\0secret") */
	say(fd, "AUTH PLAIN AGFsaWNlQGV4LnRlc3QAd3Jvbmc=\r\n");
	EXPECT(fd, "535 5.7.8");
	say(fd, "AUTH PLAIN AG5vYm9keUBleC50ZXN0AHNlY3JldA==\r\n");	/* unknown user */
	EXPECT(fd, "535 5.7.8");
	say(fd, "AUTH PLAIN AGFsaWNlQGV4LnRlc3QAc2VjcmV0\r\n");
	EXPECT(fd, "235 2.7.0");
	say(fd, "MAIL FROM:<bob@ex.test>\r\n");
	EXPECT(fd, "553 5.7.1");
	say(fd, "MAIL FROM:<alice@ex.test>\r\n");
	EXPECT(fd, "250 2.1.0");
	say(fd, "RCPT TO:<bob@ex.test>\r\n");
	EXPECT(fd, "250 2.1.5");
	say(fd, "RCPT TO:<friend@foreign.example>\r\n");
	EXPECT(fd, "250 2.1.5");
	say(fd, "DATA\r\n");
	EXPECT(fd, "354");
	say(fd, "From: bob@ex.test\r\nSubject: forged\r\n\r\nx\r\n.\r\n");
	EXPECT(fd, "553 5.7.1");
	say(fd, "MAIL FROM:<alice@ex.test>\r\n");
	EXPECT(fd, "250 2.1.0");
	say(fd, "RCPT TO:<bob@ex.test>\r\n");
	EXPECT(fd, "250 2.1.5");
	say(fd, "RCPT TO:<friend@foreign.example>\r\n");
	EXPECT(fd, "250 2.1.5");
	say(fd, "DATA\r\n");
	EXPECT(fd, "354");
	say(fd, "From: Alice <alice@ex.test>\r\nMessage-ID: <sub-1@ex.test>\r\n"
		"Subject: out\r\n\r\nhello\r\n.\r\n");
	EXPECT(fd, "250 2.0.0");
	bye(fd);
	CHECK_INT(qi("SELECT count(*) FROM messages WHERE message_id = $1", 1, p), 1);
	CHECK_INT(qi("SELECT count(*) FROM outbound_recipients r JOIN outbound_queue q"
		     " ON q.id = r.queue_id WHERE r.recipient = 'friend@foreign.example'"
		     " AND q.sender = 'alice@ex.test'", 0, NULL), 1);
}

/* The client leaves in the middle of a delivery: the session stays until
 * the delivery came back, then everything is freed. */
PN_TEST(test_disconnect_during_delivery)
{
	int fd = client(FE_SVC_SMTP);
	const char *p[1] = { "<gone-1@remote.example>" };

	EXPECT(fd, "220 ");
	say(fd, "EHLO c\r\nMAIL FROM:<far@remote.example>\r\nRCPT TO:<bob@ex.test>\r\n");
	EXPECT(fd, "250");
	EXPECT(fd, "250 2.1.0");
	EXPECT(fd, "250 2.1.5");
	say(fd, "DATA\r\n");
	EXPECT(fd, "354");
	say(fd, "Message-ID: <gone-1@remote.example>\r\n\r\nbye\r\n.\r\n");
	close(fd);
	inlen = 0;
	for (int i = 0; i < 400 && env.conn_count > 0; i++)
		run_ms(5);
	CHECK_INT(env.conn_count, 0);
	/* stored or not, never twice; here it was fed before the close */
	CHECK(qi("SELECT count(*) FROM messages WHERE message_id = $1", 1, p) <= 1);
}

int main(void)
{
	static const struct pn_test_case cases[] = {
		PN_TEST_CASE(test_mx),
		PN_TEST_CASE(test_lmtp_mixed),
		PN_TEST_CASE(test_submission_untrusted),
		PN_TEST_CASE(test_submission),
		PN_TEST_CASE(test_disconnect_during_delivery),
	};
	struct store_pgpool_settings ps = { .max_conns = 2, .query_timeout_ms = 5000 };
	const char *error = NULL;
	int rc;

	base_dsn = getenv("POSTERN_PG_DSN");
	if (base_dsn == NULL || base_dsn[0] == '\0')
		return pn_test_skip("test-fe-smtp", "POSTERN_PG_DSN not set (run tests/run)");
	if (db_setup() < 0) {
		db_teardown();
		return 1;
	}
	loop = pn_loop_new(NULL, &error);
	ps.dsn = pool_dsn;
	backend.pg = loop != NULL ? store_pgpool_new(loop, &ps, &error) : NULL;
	node.auth_pool = pn_workpool_new(1, 16, &error);
	if (loop == NULL || backend.pg == NULL || node.auth_pool == NULL ||
	    fe_metrics_init(&node.metrics, &error) < 0 ||
	    pn_cidr_list_parse("", &none, &error) < 0 ||
	    pn_cidr_list_parse("127.0.0.0/8", &all_local, &error) < 0) {
		fprintf(stderr, "setup: %s\n", error);
		db_teardown();
		return 1;
	}
	thread.node = &node;
	thread.loop = loop;
	thread.backend = &backend;
	backend.thread = &thread;
	env.loop = loop;
	env.thread = &thread;
	env.proxy_trusted = &none;
	env.plaintext_auth = &all_local;
	env.handshake_timeout_ms = 1000;
	for (int i = 0; i < FE_SVC_COUNT; i++)
		env.idle_timeout_ms[i] = 10000;
	env.linger_ms = 100;
	env.goodbye_timeout_ms = 1000;
	env.output_buffer = 64 * 1024;
	env.max_conns = 16;
	env.node = "test";
	env.hostname = "mx.test.example";
	env.start_time = 1;
	listen_fd = pn_listen_tcp("127.0.0.1", 0, 16, &error);
	listen_port = pn_socket_port(listen_fd);

	rc = pn_test_run("test-fe-smtp", cases, sizeof(cases) / sizeof(cases[0]));

	for (int i = 0; i < 200 && env.conn_count > 0; i++)
		run_ms(5);
	close(listen_fd);
	pn_workpool_free(&node.auth_pool);
	run_ms(20);
	fe_metrics_free(&node.metrics);
	store_pgpool_free(&backend.pg);
	pn_loop_free(&loop);
	pn_cidr_list_free(&none);
	pn_cidr_list_free(&all_local);
	db_teardown();
	return rc;
}
