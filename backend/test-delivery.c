/* Tests of local delivery (backend/delivery.c) against the harness'
 * PostgreSQL (POSTERN_PG_DSN) and, for the change notification, its Redis
 * (POSTERN_REDIS_HOST/PORT): every RCPT outcome, the submission sender
 * check, one body stored once for three recipients, per-recipient results,
 * quota, plus-addressing into a folder, the duplicate guard, the cache
 * columns against the MIME library's output, outbound queueing of a
 * foreign recipient, RCPT TO:<Postmaster> (default and configured). Each run works in its own schema, dropped at the end.
 * Skipped without POSTERN_PG_DSN (a failure under CI=true).
 */
#include "postern/buf.h"
#include "postern/loop.h"
#include "postern/mail-delivery.h"
#include "postern/mail-imap.h"
#include "postern/mail-message.h"
#include "postern/store-admin.h"
#include "postern/store-migrate.h"
#include "postern/store-pg.h"
#include "postern/store-pgpool.h"
#include "postern/store-redis-ops.h"
#include "postern/store-redis.h"
#include "postern/testing.h"
#include "postern/workpool.h"

#include <stdint.h>
#include <time.h>
#include <unistd.h>

int pn_test_failures_;

static const char *base_dsn;
static char schema[64];
static char pool_dsn[1024];
static PGconn *conn;
static struct pn_loop *loop;
static struct store_pgpool *pool;
static struct store_redis *redis;
static struct mail_delivery *dlv;
static struct pn_workpool *workers;	/* dlv parses on them */
static int64_t id_alice, id_bob, id_carol, id_small, mb_lists;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool run_until(const bool *flag, unsigned int ms)
{
	uint64_t end = now_ms() + ms;

	while (!*flag && now_ms() < end)
		pn_loop_run_once(loop, 20);
	return *flag;
}

/* ---- synchronous SQL for setup and checks ---- */

static PGresult *q(const char *sql, int n, const char *const *params)
{
	const char *error = NULL;
	PGresult *res = store_pg_exec(conn, sql, n, params, &error);

	if (res == NULL) {
		fprintf(stderr, "query failed: %s\n  %s\n", error, sql);
		pn_test_failures_++;
	}
	return res;
}

static int64_t qi(const char *sql, int n, const char *const *params)
{
	PGresult *res = q(sql, n, params);
	int64_t v = -1;

	if (res != NULL && PQntuples(res) > 0)
		v = store_pg_int(res, 0, 0);
	PQclear(res);
	return v;
}

static int64_t qi1(const char *sql, int64_t a)
{
	char s[24];
	const char *p[1] = { s };

	snprintf(s, sizeof(s), "%lld", (long long)a);
	return qi(sql, 1, p);
}

static int64_t user(const char *address, int64_t quota_bytes, bool disabled)
{
	struct store_user_params p = { .password_hash = "{PLAIN}pw", .quota_bytes = quota_bytes,
				       .quota_messages = -1, .disabled = disabled };
	const char *params[1] = { address };
	const char *error = NULL;

	if (store_user_add(conn, address, &p, &error) < 0) {
		fprintf(stderr, "user add %s: %s\n", address, error);
		pn_test_failures_++;
	}
	return qi("SELECT id FROM accounts WHERE lower(address) = lower($1)", 1, params);
}

static int setup(void)
{
	const char *error = NULL;
	char sql[256];
	int from, to;
	const char *dests_team[] = { "alice@ex.test", "bob@ex.test" };
	const char *dests_al[] = { "alice@ex.test" };
	const char *dests_catch[] = { "carol@ex.test" };
	const char *dests_fwd[] = { "far@remote.example" };

	snprintf(schema, sizeof(schema), "t_delivery_%ld_%ld", (long)getpid(), (long)time(NULL));
	if (store_pg_connect(base_dsn, &conn, &error) < 0) {
		fprintf(stderr, "connect: %s\n", error);
		return -1;
	}
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s; SET search_path TO %s;"
		 " SET synchronous_commit TO off", schema, schema);
	if (store_pg_script(conn, sql, &error) < 0 ||
	    store_migrate(conn, &from, &to, &error) < 0) {
		fprintf(stderr, "setup: %s\n", error);
		return -1;
	}
	if (store_tenant_add(conn, "t1", -1, -1, &error) < 0 ||
	    store_domain_add(conn, "ex.test", "t1", &error) < 0 ||
	    store_domain_add(conn, "catch.test", "t1", &error) < 0) {
		fprintf(stderr, "setup: %s\n", error);
		return -1;
	}
	id_alice = user("alice@ex.test", -1, false);
	id_bob = user("bob@ex.test", -1, false);
	id_carol = user("carol@ex.test", -1, false);
	id_small = user("small@ex.test", 1000, false);
	(void)user("dis@ex.test", -1, true);
	if (store_alias_add(conn, "team@ex.test", dests_team, 2, &error) < 0 ||
	    store_alias_add(conn, "al@ex.test", dests_al, 1, &error) < 0 ||
	    store_alias_add(conn, "@catch.test", dests_catch, 1, &error) < 0 ||
	    store_alias_add(conn, "fwd@ex.test", dests_fwd, 1, &error) < 0) {
		fprintf(stderr, "alias: %s\n", error);
		return -1;
	}
	mb_lists = qi1("INSERT INTO mailboxes (account_id, name) VALUES ($1, 'Lists')"
		       " RETURNING id", id_alice);
	/* the pool's connections use the test schema too */
	snprintf(pool_dsn, sizeof(pool_dsn), "%s options='-csearch_path=%s'", base_dsn, schema);
	return 0;
}

static void teardown(void)
{
	char sql[128];
	const char *error = NULL;

	snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
	if (conn != NULL && store_pg_script(conn, sql, &error) < 0)
		fprintf(stderr, "teardown: %s\n", error);
	store_pg_close(&conn);
}

/* ---- operation helpers ---- */

struct rcpt_res {
	bool done;
	struct mail_rcpt_info info;
};

static void rcpt_cb(void *ctx, const struct mail_rcpt_info *info)
{
	struct rcpt_res *r = ctx;

	r->done = true;
	r->info = *info;
	r->info.error = "";
}

static struct mail_rcpt_info rcpt(const char *address, uint64_t size_hint, bool relay)
{
	struct rcpt_res r = { 0 };
	const char *error = NULL;
	struct mail_op *op = mail_rcpt_check(dlv, address, size_hint, relay, rcpt_cb, &r, &error);

	CHECK(op != NULL);
	CHECK(!r.done);		/* never from inside the call */
	if (op == NULL)
		fprintf(stderr, "rcpt %s: %s\n", address, error);
	else
		CHECK(run_until(&r.done, 5000));
	return r.info;
}

struct sender_res {
	bool done;
	enum mail_sender_status st;
};

static void sender_cb(void *ctx, enum mail_sender_status st, const char *error)
{
	struct sender_res *r = ctx;

	(void)error;
	r->done = true;
	r->st = st;
}

static enum mail_sender_status sender(int64_t account, const char *address)
{
	struct sender_res r = { .st = MAIL_SENDER_TEMPFAIL };
	const char *error = NULL;
	struct mail_op *op = mail_sender_check(dlv, (uint64_t)account, address, sender_cb, &r,
					       &error);

	CHECK(op != NULL);
	if (op != NULL)
		CHECK(run_until(&r.done, 5000));
	return r.st;
}

#define MAXR 8
struct deliver_res {
	bool done;
	size_t count;
	struct mail_deliver_rcpt r[MAXR];
	char id[17];
	uint64_t queue_id;
	char error[256];
};

static void deliver_cb(void *ctx, const struct mail_deliver_result *res)
{
	struct deliver_res *d = ctx;

	d->done = true;
	d->count = res->count;
	for (size_t i = 0; i < res->count && i < MAXR; i++)
		d->r[i] = res->rcpts[i];
	snprintf(d->id, sizeof(d->id), "%s", res->id);
	snprintf(d->error, sizeof(d->error), "%s", res->error);
	d->queue_id = res->queue_id;
}

static void deliver(struct deliver_res *d, const char *from, const char *const *rcpts,
		    size_t n, const char *msg, int64_t account)
{
	struct mail_deliver_request req = {
		.mail_from = from, .rcpts = rcpts, .rcpt_count = n,
		.message = (const uint8_t *)msg, .message_len = strlen(msg),
		.account_id = (uint64_t)account,
		.message_kept = true,	/* a literal: valid until the callback */
	};
	const char *error = NULL;
	struct mail_op *op;

	memset(d, 0, sizeof(*d));
	op = mail_deliver(dlv, &req, deliver_cb, d, &error);
	CHECK(op != NULL);
	if (op == NULL) {
		fprintf(stderr, "mail_deliver: %s\n", error);
		return;
	}
	CHECK(!d->done);
	CHECK(run_until(&d->done, 10000));
	CHECK_INT(d->count, n);
	if (d->error[0] != '\0')
		fprintf(stderr, "delivery note: %s\n", d->error);
}

static int64_t count_msgs(int64_t account, const char *mailbox)
{
	char a[24];
	const char *p[2] = { a, mailbox };

	snprintf(a, sizeof(a), "%lld", (long long)account);
	return qi("SELECT count(*) FROM messages m JOIN mailboxes mb ON mb.account_id = m.account_id"
		  " AND mb.id = m.mailbox_id WHERE m.account_id = $1 AND mb.name = $2", 2, p);
}

/* ---- tests ---- */

PN_TEST(test_rcpt_outcomes)
{
	struct mail_rcpt_info i;

	i = rcpt("alice@ex.test", 0, false);
	CHECK_INT(i.status, MAIL_RCPT_OK);
	CHECK_INT(i.account_id, id_alice);
	CHECK_INT(i.local_targets, 1);
	i = rcpt("ALICE@Ex.Test", 100, false);
	CHECK_INT(i.status, MAIL_RCPT_OK);
	i = rcpt("nobody@ex.test", 0, false);
	CHECK_INT(i.status, MAIL_RCPT_UNKNOWN);
	i = rcpt("dis@ex.test", 0, false);
	CHECK_INT(i.status, MAIL_RCPT_DISABLED);
	/* relay: refused on MX, accepted for authenticated submission */
	i = rcpt("someone@foreign.example", 0, false);
	CHECK_INT(i.status, MAIL_RCPT_RELAY_DENIED);
	i = rcpt("someone@foreign.example", 0, true);
	CHECK_INT(i.status, MAIL_RCPT_OK);
	CHECK_INT(i.remote_targets, 1);
	CHECK_INT(i.local_targets, 0);
	/* quota: the SIZE hint does not fit into 1000 bytes */
	i = rcpt("small@ex.test", 5000, false);
	CHECK_INT(i.status, MAIL_RCPT_OVER_QUOTA);
	i = rcpt("small@ex.test", 500, false);
	CHECK_INT(i.status, MAIL_RCPT_OK);
	/* alias with two accounts, catch-all, forwarding alias */
	i = rcpt("team@ex.test", 0, false);
	CHECK_INT(i.status, MAIL_RCPT_OK);
	CHECK_INT(i.local_targets, 2);
	i = rcpt("whoever@catch.test", 0, false);
	CHECK_INT(i.status, MAIL_RCPT_OK);
	CHECK_INT(i.account_id, id_carol);
	i = rcpt("fwd@ex.test", 0, false);
	CHECK_INT(i.status, MAIL_RCPT_OK);
	CHECK_INT(i.remote_targets, 1);
	/* plus-addressing: the folder when it exists (any case), else INBOX */
	i = rcpt("alice+Lists@ex.test", 0, false);
	CHECK_INT(i.status, MAIL_RCPT_OK);
	CHECK_INT(i.mailbox_id, mb_lists);
	i = rcpt("alice+lists@ex.test", 0, false);
	CHECK_INT(i.mailbox_id, mb_lists);
	i = rcpt("alice+nosuch@ex.test", 0, false);
	CHECK_INT(i.status, MAIL_RCPT_OK);
	CHECK_INT(i.mailbox_id, qi1("SELECT id FROM mailboxes WHERE account_id = $1"
				    " AND name = 'INBOX'", id_alice));
	/* no domain at all */
	i = rcpt("Postmaster", 0, false);
	CHECK_INT(i.status, MAIL_RCPT_UNKNOWN);
	/* bad arguments: no callback */
	{
		const char *error = NULL;
		struct rcpt_res r = { 0 };

		CHECK(mail_rcpt_check(dlv, "a\r\nb@ex.test", 0, false, rcpt_cb, &r,
				      &error) == NULL);
		CHECK(mail_rcpt_check(dlv, "", 0, false, rcpt_cb, &r, &error) == NULL);
	}
}

PN_TEST(test_rcpt_tempfail)
{
	/* a pool that cannot connect: 451 4.3.0, not a hang */
	struct store_pgpool_settings set = {
		.dsn = "host=127.0.0.1 port=1 dbname=x user=x connect_timeout=1",
		.query_timeout_ms = 1000, .backoff_min_ms = 50, .backoff_max_ms = 100,
	};
	const char *error = NULL;
	struct store_pgpool *bad = store_pgpool_new(loop, &set, &error);
	struct mail_delivery_settings ds = { .pool = bad };
	struct mail_delivery *d2;
	struct rcpt_res r = { 0 };

	CHECK(bad != NULL);
	if (bad == NULL)
		return;
	d2 = mail_delivery_new(&ds, &error);
	CHECK(d2 != NULL);
	if (d2 != NULL) {
		const char *rcpts[] = { "alice@ex.test", "bob@ex.test" };
		struct mail_deliver_request req = {
			.mail_from = "s@remote.example", .rcpts = rcpts, .rcpt_count = 2,
			.message = (const uint8_t *)"Subject: t\r\n\r\nt\r\n", .message_len = 16,
		};
		struct deliver_res dr = { 0 };

		CHECK(mail_rcpt_check(d2, "alice@ex.test", 0, false, rcpt_cb, &r, &error) != NULL);
		CHECK(run_until(&r.done, 5000));
		CHECK_INT(r.info.status, MAIL_RCPT_TEMPFAIL);
		/* a delivery: every recipient 451, nothing claimed */
		CHECK(mail_deliver(d2, &req, deliver_cb, &dr, &error) != NULL);
		CHECK(run_until(&dr.done, 5000));
		CHECK_INT(dr.count, 2);
		CHECK_INT(dr.r[0].status, MAIL_DELIVER_TEMPFAIL);
		CHECK_INT(dr.r[1].status, MAIL_DELIVER_TEMPFAIL);
		CHECK(dr.error[0] != '\0');
		/* the same from a submission (the sender check fails first) */
		memset(&dr, 0, sizeof(dr));
		req.account_id = (uint64_t)id_alice;
		CHECK(mail_deliver(d2, &req, deliver_cb, &dr, &error) != NULL);
		CHECK(run_until(&dr.done, 5000));
		CHECK_INT(dr.r[0].status, MAIL_DELIVER_TEMPFAIL);
		{
			struct sender_res sr = { .st = MAIL_SENDER_OK };

			CHECK(mail_sender_check(d2, (uint64_t)id_alice, "alice@ex.test", sender_cb,
						&sr, &error) != NULL);
			CHECK(run_until(&sr.done, 5000));
			CHECK_INT(sr.st, MAIL_SENDER_TEMPFAIL);
		}
		CHECK_INT(mail_delivery_busy(d2), 0);
		mail_delivery_free(&d2);
		CHECK(d2 == NULL);
	}
	store_pgpool_free(&bad);
}

/* RFC 5321 4.5.1: RCPT TO:<Postmaster> (no domain, any case) is accepted:
 * postmaster@ the primary domain (the first created: ex.test) by default,
 * the configured address otherwise. */
PN_TEST(test_postmaster)
{
	struct mail_rcpt_info i;
	struct deliver_res d;
	const char *pm[] = { "Postmaster" };
	const char *dests[] = { "carol@ex.test" };
	const char *error = NULL;
	int64_t before;
	struct store_pgpool_settings ps = { .dsn = pool_dsn, .max_conns = 1,
					    .query_timeout_ms = 5000 };
	struct store_pgpool *pool2;
	struct mail_delivery_settings ds = { .postmaster = "bob@ex.test" };
	struct mail_delivery *keep = dlv;

	/* no postmaster account or alias in ex.test yet: unknown, as any
	 * address that names nobody */
	i = rcpt("Postmaster", 0, false);
	CHECK_INT(i.status, MAIL_RCPT_UNKNOWN);
	if (store_alias_add(conn, "postmaster@ex.test", dests, 1, &error) < 0) {
		fprintf(stderr, "alias: %s\n", error);
		pn_test_failures_++;
		return;
	}
	i = rcpt("Postmaster", 0, false);
	CHECK_INT(i.status, MAIL_RCPT_OK);
	CHECK_INT(i.account_id, id_carol);
	CHECK_INT(rcpt("postMASTER", 0, false).status, MAIL_RCPT_OK);
	/* only the bare word: a local part "postmasterx" or a domain is not it */
	CHECK_INT(rcpt("postmasterx", 0, false).status, MAIL_RCPT_UNKNOWN);
	CHECK_INT(rcpt("postmaster@nowhere.example", 0, false).status, MAIL_RCPT_RELAY_DENIED);
	before = count_msgs(id_carol, "INBOX");
	deliver(&d, "far@remote.example", pm, 1,
		"Subject: to the postmaster\r\nMessage-ID: <pm1@remote.example>\r\n\r\nhi\r\n", 0);
	CHECK_INT(d.r[0].status, MAIL_DELIVER_OK);
	CHECK_INT(d.r[0].stored, 1);
	CHECK_INT(count_msgs(id_carol, "INBOX"), before + 1);

	/* a configured address wins over the primary domain's postmaster */
	pool2 = store_pgpool_new(loop, &ps, &error);
	CHECK(pool2 != NULL);
	if (pool2 == NULL)
		return;
	ds.pool = pool2;
	dlv = mail_delivery_new(&ds, &error);
	CHECK(dlv != NULL);
	if (dlv != NULL) {
		i = rcpt("POSTMASTER", 0, false);
		CHECK_INT(i.status, MAIL_RCPT_OK);
		CHECK_INT(i.account_id, id_bob);
		before = count_msgs(id_bob, "INBOX");
		deliver(&d, "far@remote.example", pm, 1,
			"Subject: to the postmaster\r\nMessage-ID: <pm2@remote.example>\r\n\r\nhi\r\n",
			0);
		CHECK_INT(d.r[0].status, MAIL_DELIVER_OK);
		CHECK_INT(count_msgs(id_bob, "INBOX"), before + 1);
		mail_delivery_free(&dlv);
	}
	dlv = keep;
	/* not an address: refused when the context is made */
	ds.postmaster = "postmaster";
	CHECK(mail_delivery_new(&ds, &error) == NULL);
	store_pgpool_free(&pool2);
	{
		char sql[] = "DELETE FROM aliases WHERE source = 'postmaster@ex.test'";

		PQclear(q(sql, 0, NULL));
	}
}

PN_TEST(test_sender_check)
{
	CHECK_INT(sender(id_alice, "alice@ex.test"), MAIL_SENDER_OK);
	CHECK_INT(sender(id_alice, "Alice@EX.test"), MAIL_SENDER_OK);
	CHECK_INT(sender(id_alice, "alice+news@ex.test"), MAIL_SENDER_OK);
	CHECK_INT(sender(id_alice, "al@ex.test"), MAIL_SENDER_OK);	/* her alias */
	CHECK_INT(sender(id_alice, "team@ex.test"), MAIL_SENDER_OK);	/* list she is on */
	CHECK_INT(sender(id_alice, "bob@ex.test"), MAIL_SENDER_DENIED);
	CHECK_INT(sender(id_alice, "whoever@catch.test"), MAIL_SENDER_DENIED);
	CHECK_INT(sender(id_alice, ""), MAIL_SENDER_DENIED);
	CHECK_INT(sender(id_alice, "alice"), MAIL_SENDER_DENIED);
	CHECK_INT(sender(id_bob, "al@ex.test"), MAIL_SENDER_DENIED);
	CHECK_INT(sender(999999, "alice@ex.test"), MAIL_SENDER_DENIED);
}

static const char msg_three[] =
	"Received: from x by y; Fri, 27 Nov 2026 19:00:00 +0000\r\n"
	"From: Sender <sender@remote.example>\r\n"
	"To: alice@ex.test, bob@ex.test\r\n"
	"Cc: carol@ex.test\r\n"
	"Subject: =?UTF-8?Q?gr=C3=BC=C3=9Fe?= three\r\n"
	"Date: Fri, 27 Nov 2026 20:00:00 +0100\r\n"
	"Message-ID: <three@remote.example>\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
	"\r\n"
	"--b1\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"hello\r\n"
	"--b1\r\n"
	"Content-Type: application/octet-stream; name=x.bin\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"AAEC\r\n"
	"--b1--\r\n";

PN_TEST(test_three_recipients_one_body)
{
	const char *rcpts[] = { "alice@ex.test", "bob@ex.test", "carol@ex.test" };
	struct deliver_res d;
	PGresult *res;
	int64_t before_a = count_msgs(id_alice, "INBOX");

	deliver(&d, "sender@remote.example", rcpts, 3, msg_three, 0);
	for (int i = 0; i < 3; i++) {
		CHECK_INT(d.r[i].status, MAIL_DELIVER_OK);
		CHECK_INT(d.r[i].stored, 1);
	}
	CHECK_INT(strlen(d.id), 16);
	CHECK_INT(count_msgs(id_alice, "INBOX"), before_a + 1);
	CHECK_INT(count_msgs(id_carol, "INBOX"), 1);
	/* one body, three references; the three rows share it */
	res = q("SELECT b.refcount, b.size, (SELECT count(*) FROM messages m"
		"  WHERE m.blob_sha256 = b.sha256), b.body, encode(b.sha256, 'hex')"
		" FROM mail_blobs b WHERE b.sha256 IN (SELECT blob_sha256 FROM messages"
		"  WHERE message_id = '<three@remote.example>')", 0, NULL);
	CHECK(res != NULL);
	if (res != NULL) {
		CHECK_INT(PQntuples(res), 1);
		if (PQntuples(res) == 1) {
			char want[2048];
			size_t blen = 0;
			unsigned char *body = PQunescapeBytea(
				(const unsigned char *)PQgetvalue(res, 0, 3), &blen);
			int n = snprintf(want, sizeof(want),
					 "Return-Path: <sender@remote.example>\r\n%s", msg_three);

			CHECK_INT(store_pg_int(res, 0, 0), 3);
			CHECK_INT(store_pg_int(res, 0, 2), 3);
			CHECK_INT(store_pg_int(res, 0, 1), n);
			/* several recipients: no Delivered-To (see the header) */
			CHECK_MEM(body, blen, want, (size_t)n);
			CHECK(strncmp(PQgetvalue(res, 0, 4), d.id, 16) == 0);
			PQfreemem(body);
		}
		PQclear(res);
	}
	/* usage counted per copy */
	CHECK_INT(qi1("SELECT messages FROM account_usage WHERE account_id = $1", id_carol), 1);
}

/* The cache columns equal what the MIME library computes from the stored
 * body. */
/* One message with bare LF line ends through d (parsed on its workers or
 * on the loop), the caller's buffer kept or copied: the stored body has
 * CRLF line ends and the cache columns are those of the stored body. */
static void cache_case(struct mail_delivery *d, bool kept, const char *tag)
{
	const char *rcpts[] = { "carol@ex.test" };
	struct deliver_res r = { 0 };
	char text[512], mid[64];
	const char *pm[1] = { mid };
	struct mail_deliver_request req = {
		.mail_from = "sender@remote.example", .rcpts = rcpts, .rcpt_count = 1,
		.message_kept = kept,
	};
	const char *derr = NULL;
	PGresult *res;

	snprintf(mid, sizeof(mid), "<cache-%s@remote.example>", tag);
	snprintf(text, sizeof(text),
		 "From: A <a@remote.example>\nTo: carol@ex.test\nSubject: cache\n"
		 "Message-ID: %s\nIn-Reply-To: <p@x>\n"
		 "References: <o@x>\n <p@x>\nDate: Thu, 26 Nov 2026 10:00:00 -0500\n\n"
		 "bare LF body\n", mid);
	req.message = (const uint8_t *)text;
	req.message_len = strlen(text);
	CHECK(mail_deliver(d, &req, deliver_cb, &r, &derr) != NULL);
	if (!kept)
		memset(text, 'x', sizeof(text));	/* copied: the buffer is free now */
	CHECK(!r.done);
	CHECK(run_until(&r.done, 10000));
	CHECK_INT(r.count, 1);
	CHECK_INT(r.r[0].status, MAIL_DELIVER_OK);
	res = q("SELECT b.body, m.header_size, m.envelope, m.bodystructure, m.subject,"
		" m.from_addr, m.to_addr, m.message_id, m.in_reply_to, m.references_hdr,"
		" to_char(m.sent_date AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), m.size,"
		" m.cc_addr IS NULL"
		" FROM messages m JOIN mail_blobs b ON b.sha256 = m.blob_sha256"
		" WHERE m.message_id = $1", 1, pm);
	CHECK(res != NULL && PQntuples(res) == 1);
	if (res != NULL && PQntuples(res) == 1) {
		size_t blen = 0;
		unsigned char *body = PQunescapeBytea(
			(const unsigned char *)PQgetvalue(res, 0, 0), &blen);
		struct mail_message *msg = NULL;
		const char *error = NULL;
		struct pn_buf env, bs;

		pn_buf_init(&env, 1 << 20);
		pn_buf_init(&bs, 1 << 20);
		/* CRLF everywhere, and Delivered-To for the one recipient */
		CHECK(memmem(body, blen, "\n\n", 2) == NULL);
		CHECK(blen > 60 && memcmp(body, "Return-Path: <sender@remote.example>\r\n"
					  "Delivered-To: carol@ex.test\r\nFrom:", 71) == 0);
		CHECK(memmem(body, blen, "bare LF body\r\n", 14) != NULL);
		CHECK_INT(mail_message_parse(body, blen, NULL, &msg, &error), 0);
		if (msg != NULL) {
			CHECK_INT(mail_envelope_write(msg, NULL, &env), 0);
			CHECK_INT(mail_bodystructure_write(msg, &bs, true), 0);
			CHECK_INT(store_pg_int(res, 0, 1), msg->root->hdr_size);
			CHECK_MEM(PQgetvalue(res, 0, 2), strlen(PQgetvalue(res, 0, 2)),
				  pn_buf_rptr(&env), pn_buf_len(&env));
			CHECK_MEM(PQgetvalue(res, 0, 3), strlen(PQgetvalue(res, 0, 3)),
				  pn_buf_rptr(&bs), pn_buf_len(&bs));
			mail_message_free(&msg);
		}
		CHECK_STR(PQgetvalue(res, 0, 4), "cache");
		CHECK_STR(PQgetvalue(res, 0, 5), "A <a@remote.example>");
		CHECK_STR(PQgetvalue(res, 0, 6), "carol@ex.test");
		CHECK_STR(PQgetvalue(res, 0, 7), mid);
		CHECK_STR(PQgetvalue(res, 0, 8), "<p@x>");
		CHECK_STR(PQgetvalue(res, 0, 9), "<o@x> <p@x>");
		CHECK_STR(PQgetvalue(res, 0, 10), "2026-11-26 15:00:00");
		CHECK_INT(store_pg_int(res, 0, 11), blen);
		CHECK_STR(PQgetvalue(res, 0, 12), "t");
		pn_buf_free(&env);
		pn_buf_free(&bs);
		PQfreemem(body);
	}
	PQclear(res);
}

PN_TEST(test_cache_columns)
{
	/* dlv parses on its worker pool */
	cache_case(dlv, true, "worker-kept");
	cache_case(dlv, false, "worker-copied");
}

/* Without a worker pool the parse runs on the loop: the same result. */
PN_TEST(test_parse_on_loop)
{
	struct store_pgpool_settings ps = { .dsn = pool_dsn, .max_conns = 1,
					    .query_timeout_ms = 5000 };
	const char *error = NULL;
	struct store_pgpool *p2 = store_pgpool_new(loop, &ps, &error);
	struct mail_delivery_settings ds = { .pool = p2 };
	struct mail_delivery *d2 = p2 != NULL ? mail_delivery_new(&ds, &error) : NULL;

	CHECK(d2 != NULL);
	if (d2 != NULL) {
		cache_case(d2, true, "loop-kept");
		cache_case(d2, false, "loop-copied");
		CHECK_INT(mail_delivery_busy(d2), 0);
		mail_delivery_free(&d2);
	}
	if (p2 != NULL)
		store_pgpool_free(&p2);
}

static void filler(char *buf, size_t size, const char *msgid)
{
	size_t n = (size_t)snprintf(buf, size, "From: f@remote.example\r\nMessage-ID: <%s>\r\n"
				    "Subject: quota\r\n\r\n", msgid);

	while (n + 3 < size) {
		buf[n++] = 'x';
		if (n % 70 == 0) {
			buf[n++] = '\r';
			buf[n++] = '\n';
		}
	}
	buf[n] = '\0';
}

PN_TEST(test_quota)
{
	static char big[1600], mid[700], mid2[700];
	const char *both[] = { "alice@ex.test", "small@ex.test" };
	const char *one[] = { "small@ex.test" };
	struct deliver_res d;

	filler(big, sizeof(big), "big@q");
	filler(mid, sizeof(mid), "mid@q");
	filler(mid2, sizeof(mid2), "mid2@q");
	/* bigger than the whole quota: 552 5.2.2; alice still gets it */
	deliver(&d, "f@remote.example", both, 2, big, 0);
	CHECK_INT(d.r[0].status, MAIL_DELIVER_OK);
	CHECK_INT(d.r[1].status, MAIL_DELIVER_QUOTA_EXCEEDED);
	CHECK_INT(count_msgs(id_small, "INBOX"), 0);
	/* fits once, then the mailbox is full: 452 4.2.2 */
	deliver(&d, "f@remote.example", one, 1, mid, 0);
	CHECK_INT(d.r[0].status, MAIL_DELIVER_OK);
	deliver(&d, "f@remote.example", one, 1, mid2, 0);
	CHECK_INT(d.r[0].status, MAIL_DELIVER_OVER_QUOTA);
	CHECK_INT(count_msgs(id_small, "INBOX"), 1);
	/* RCPT with a SIZE hint sees it too */
	CHECK_INT(rcpt("small@ex.test", 600, false).status, MAIL_RCPT_OVER_QUOTA);
}

PN_TEST(test_plus_folder)
{
	const char *rcpts[] = { "alice+lists@ex.test" };
	struct deliver_res d;
	int64_t before = count_msgs(id_alice, "Lists");

	deliver(&d, "", rcpts, 1, "From: l@remote.example\r\nSubject: list\r\n\r\nbody\r\n", 0);
	CHECK_INT(d.r[0].status, MAIL_DELIVER_OK);
	CHECK_INT(count_msgs(id_alice, "Lists"), before + 1);
	/* null sender: Return-Path: <> */
	CHECK_INT(qi1("SELECT count(*) FROM messages m JOIN mail_blobs b"
		      " ON b.sha256 = m.blob_sha256 WHERE m.account_id = $1 AND m.subject = 'list'"
		      " AND position('\\x52657475726e2d506174683a203c3e0d0a'::bytea in b.body) = 1",
		      id_alice), 1);
}

PN_TEST(test_duplicate_guard)
{
	const char *bob[] = { "bob@ex.test" };
	const char *carol[] = { "carol@ex.test" };
	const char *msg = "From: d@remote.example\r\nMessage-ID: <dup-1@remote.example>\r\n"
			  "Subject: dup\r\n\r\nonce\r\n";
	struct deliver_res d;
	int64_t before = count_msgs(id_bob, "INBOX");

	deliver(&d, "d@remote.example", bob, 1, msg, 0);
	CHECK_INT(d.r[0].status, MAIL_DELIVER_OK);
	CHECK_INT(d.r[0].stored, 1);
	/* the client retries after a dropped connection: acknowledged, not stored */
	deliver(&d, "d@remote.example", bob, 1, msg, 0);
	CHECK_INT(d.r[0].status, MAIL_DELIVER_OK);
	CHECK_INT(d.r[0].stored, 0);
	CHECK_INT(d.r[0].duplicates, 1);
	CHECK_INT(count_msgs(id_bob, "INBOX"), before + 1);
	/* another recipient with the same Message-ID is a different delivery */
	deliver(&d, "d@remote.example", carol, 1, msg, 0);
	CHECK_INT(d.r[0].stored, 1);
	/* outside the window (saved_at moved back) it is stored again */
	CHECK(qi1("UPDATE messages SET saved_at = now() - interval '1 hour'"
		  " WHERE account_id = $1 AND message_id = '<dup-1@remote.example>'"
		  " RETURNING 1", id_bob) == 1);
	deliver(&d, "d@remote.example", bob, 1, msg, 0);
	CHECK_INT(d.r[0].stored, 1);
	CHECK_INT(count_msgs(id_bob, "INBOX"), before + 2);
	/* no Message-ID: no guard */
	deliver(&d, "d@remote.example", bob, 1, "Subject: x\r\n\r\ny\r\n", 0);
	deliver(&d, "d@remote.example", bob, 1, "Subject: x\r\n\r\ny\r\n", 0);
	CHECK_INT(d.r[0].stored, 1);
}

PN_TEST(test_mx_refusals)
{
	const char *rcpts[] = { "nobody@ex.test", "dis@ex.test", "x@foreign.example",
				"bob@ex.test", "fwd@ex.test" };
	struct deliver_res d;

	deliver(&d, "s@remote.example", rcpts, 5, "Subject: mixed\r\n\r\nm\r\n", 0);
	CHECK_INT(d.r[0].status, MAIL_DELIVER_UNKNOWN);
	CHECK_INT(d.r[1].status, MAIL_DELIVER_DISABLED);
	CHECK_INT(d.r[2].status, MAIL_DELIVER_RELAY_DENIED);
	CHECK_INT(d.r[3].status, MAIL_DELIVER_OK);
	/* forwarding alias: queued with the original sender */
	CHECK_INT(d.r[4].status, MAIL_DELIVER_OK);
	CHECK(d.r[4].queued);
	CHECK(d.queue_id != 0);
	CHECK_INT(qi1("SELECT count(*) FROM outbound_queue q JOIN outbound_recipients r"
		      " ON r.queue_id = q.id WHERE q.id = $1 AND r.recipient = 'far@remote.example'"
		      " AND q.sender = 's@remote.example' AND q.account_id IS NULL",
		      (int64_t)d.queue_id), 1);
}

PN_TEST(test_submission)
{
	const char *rcpts[] = { "bob@ex.test", "friend@foreign.example" };
	const char *ok_msg = "From: Alice <alice@ex.test>\r\nTo: bob@ex.test\r\n"
			     "Subject: out\r\n\r\nhi\r\n";
	struct deliver_res d;
	int64_t bob_before = count_msgs(id_bob, "INBOX");

	deliver(&d, "alice@ex.test", rcpts, 2, ok_msg, id_alice);
	CHECK_INT(d.r[0].status, MAIL_DELIVER_OK);
	CHECK_INT(d.r[0].stored, 1);
	CHECK_INT(d.r[1].status, MAIL_DELIVER_OK);
	CHECK(d.r[1].queued);
	CHECK(d.queue_id != 0);
	CHECK_INT(count_msgs(id_bob, "INBOX"), bob_before + 1);
	/* the queue entry shares the stored body: two references */
	CHECK_INT(qi1("SELECT b.refcount FROM outbound_queue q JOIN mail_blobs b"
		      " ON b.sha256 = q.blob_sha256 WHERE q.id = $1", (int64_t)d.queue_id), 2);
	CHECK_INT(qi1("SELECT count(*) FROM outbound_queue q JOIN outbound_recipients r"
		      " ON r.queue_id = q.id WHERE q.id = $1 AND q.account_id IS NOT NULL"
		      " AND r.recipient = 'friend@foreign.example'", (int64_t)d.queue_id), 1);

	/* From: another user's address: 553 5.7.1 for everybody, nothing stored */
	deliver(&d, "alice@ex.test", rcpts, 2,
		"From: bob@ex.test\r\nSubject: forged\r\n\r\nx\r\n", id_alice);
	CHECK_INT(d.r[0].status, MAIL_DELIVER_SENDER_DENIED);
	CHECK_INT(d.r[1].status, MAIL_DELIVER_SENDER_DENIED);
	/* one good and one foreign From: address is still refused */
	deliver(&d, "alice@ex.test", rcpts, 1,
		"From: alice@ex.test, eve@foreign.example\r\nSubject: f2\r\n\r\nx\r\n", id_alice);
	CHECK_INT(d.r[0].status, MAIL_DELIVER_SENDER_DENIED);
	/* no From: at all */
	deliver(&d, "alice@ex.test", rcpts, 1, "Subject: nofrom\r\n\r\nx\r\n", id_alice);
	CHECK_INT(d.r[0].status, MAIL_DELIVER_SENDER_DENIED);
	/* her alias in From: is fine */
	deliver(&d, "alice@ex.test", rcpts, 1, "From: al@ex.test\r\nSubject: al\r\n\r\nx\r\n",
		id_alice);
	CHECK_INT(d.r[0].status, MAIL_DELIVER_OK);
	CHECK_INT(count_msgs(id_bob, "INBOX"), bob_before + 2);
}

struct notify_res {
	bool ready, got;
	char msg[64];
};

static void notify_cb(void *ctx, enum store_redis_sub_event ev, const char *channel,
		      const char *msg, size_t len)
{
	struct notify_res *n = ctx;

	(void)channel;
	if (ev == STORE_REDIS_SUB_READY)
		n->ready = true;
	if (ev == STORE_REDIS_SUB_MESSAGE) {
		n->got = true;
		snprintf(n->msg, sizeof(n->msg), "%.*s", (int)len, msg);
	}
}

PN_TEST(test_notification)
{
	struct notify_res n = { 0 };
	struct store_redis_sub *sub;
	const char *rcpts[] = { "carol@ex.test" };
	struct deliver_res d;
	int64_t inbox = qi1("SELECT id FROM mailboxes WHERE account_id = $1 AND name = 'INBOX'",
			    id_carol);
	char want[64];
	int64_t uid;

	if (redis == NULL) {
		fprintf(stderr, "test_notification: no Redis, not run\n");
		return;
	}
	sub = store_rnotify_subscribe(redis, (uint64_t)id_carol, (uint64_t)inbox, notify_cb, &n);
	CHECK(sub != NULL);
	CHECK(run_until(&n.ready, 5000));
	deliver(&d, "s@remote.example", rcpts, 1, "Subject: idle\r\n\r\nnow\r\n", 0);
	CHECK_INT(d.r[0].status, MAIL_DELIVER_OK);
	CHECK(run_until(&n.got, 5000));
	uid = qi1("SELECT max(uid) FROM messages WHERE account_id = $1", id_carol);
	CHECK(mail_delivery_notify_format(want, sizeof(want), (uint64_t)uid,
					  (uint64_t)qi1("SELECT highestmodseq FROM mailboxes"
							" WHERE id = $1", inbox)) > 0);
	CHECK_STR(n.msg, want);
	store_redis_unsubscribe(&sub);
}

/* Two copies of one message delivered at the same moment to the same
 * mailbox (a client retrying while its first attempt is still being
 * stored): both acknowledged, one stored. */
PN_TEST(test_duplicate_race)
{
	const char *rcpts[] = { "bob@ex.test" };
	const char *msg = "From: r@remote.example\r\nMessage-ID: <race@remote.example>\r\n"
			  "Subject: race\r\n\r\nrace\r\n";
	struct mail_deliver_request req = {
		.mail_from = "r@remote.example", .rcpts = rcpts, .rcpt_count = 1,
		.message = (const uint8_t *)msg, .message_len = strlen(msg),
	};
	struct deliver_res a = { 0 }, b = { 0 };
	const char *error = NULL;

	CHECK(mail_deliver(dlv, &req, deliver_cb, &a, &error) != NULL);
	CHECK(mail_deliver(dlv, &req, deliver_cb, &b, &error) != NULL);
	CHECK(run_until(&a.done, 10000));
	CHECK(run_until(&b.done, 10000));
	CHECK_INT(a.r[0].status, MAIL_DELIVER_OK);
	CHECK_INT(b.r[0].status, MAIL_DELIVER_OK);
	CHECK_INT(a.r[0].stored + b.r[0].stored, 1);
	CHECK_INT(a.r[0].duplicates + b.r[0].duplicates, 1);
	CHECK_INT(qi1("SELECT count(*) FROM messages WHERE account_id = $1"
		      " AND message_id = '<race@remote.example>'", id_bob), 1);
}

PN_TEST(test_cancel)
{
	const char *rcpts[] = { "bob@ex.test" };
	struct mail_deliver_request req = {
		.mail_from = "c@remote.example", .rcpts = rcpts, .rcpt_count = 1,
		.message = (const uint8_t *)"Message-ID: <cancel@x>\r\n\r\nc\r\n",
		.message_len = 29,
	};
	struct deliver_res d = { 0 };
	const char *error = NULL;
	struct mail_op *op = mail_deliver(dlv, &req, deliver_cb, &d, &error);
	uint64_t end = now_ms() + 5000;

	CHECK(op != NULL);
	mail_delivery_cancel(&op);
	CHECK(op == NULL);
	while (mail_delivery_busy(dlv) > 0 && now_ms() < end)
		pn_loop_run_once(loop, 20);
	CHECK_INT(mail_delivery_busy(dlv), 0);
	CHECK(!d.done);
	/* the delivery itself went through */
	CHECK_INT(qi1("SELECT count(*) FROM messages WHERE account_id = $1"
		      " AND message_id = '<cancel@x>'", id_bob), 1);
}

int main(void)
{
	static const struct pn_test_case cases[] = {
		PN_TEST_CASE(test_rcpt_outcomes),
		PN_TEST_CASE(test_rcpt_tempfail),
		PN_TEST_CASE(test_sender_check),
		PN_TEST_CASE(test_three_recipients_one_body),
		PN_TEST_CASE(test_cache_columns),
		PN_TEST_CASE(test_parse_on_loop),
		PN_TEST_CASE(test_quota),
		PN_TEST_CASE(test_plus_folder),
		PN_TEST_CASE(test_duplicate_guard),
		PN_TEST_CASE(test_mx_refusals),
		PN_TEST_CASE(test_submission),
		PN_TEST_CASE(test_notification),
		PN_TEST_CASE(test_duplicate_race),
		PN_TEST_CASE(test_cancel),
		PN_TEST_CASE(test_postmaster),	/* last: it stores into carol and bob */
	};
	struct store_pgpool_settings ps = { .max_conns = 2, .query_timeout_ms = 5000 };
	struct mail_delivery_settings ds = { 0 };
	const char *error = NULL;
	const char *rhost = getenv("POSTERN_REDIS_HOST"), *rport = getenv("POSTERN_REDIS_PORT");
	int rc;

	base_dsn = getenv("POSTERN_PG_DSN");
	if (base_dsn == NULL || base_dsn[0] == '\0')
		return pn_test_skip("test-delivery", "POSTERN_PG_DSN not set (run tests/run)");
	if (setup() < 0) {
		teardown();
		return 1;
	}
	loop = pn_loop_new(NULL, &error);
	if (loop == NULL) {
		fprintf(stderr, "loop: %s\n", error);
		teardown();
		return 1;
	}
	ps.dsn = pool_dsn;
	pool = store_pgpool_new(loop, &ps, &error);
	if (rhost != NULL && rport != NULL) {
		struct store_redis_settings rs = { .host = rhost, .port = atoi(rport) };

		redis = store_redis_new(loop, &rs, &error);
	}
	workers = pn_workpool_new(2, 16, &error);
	ds.pool = pool;
	ds.redis = redis;
	ds.workers = workers;
	ds.loop = loop;
	dlv = pool != NULL && workers != NULL ? mail_delivery_new(&ds, &error) : NULL;
	if (dlv == NULL) {
		fprintf(stderr, "setup: %s\n", error);
		rc = 1;
	} else {
		rc = pn_test_run("test-delivery", cases, sizeof(cases) / sizeof(cases[0]));
	}
	mail_delivery_free(&dlv);
	pn_workpool_free(&workers);
	if (redis != NULL)
		store_redis_free(&redis);
	if (pool != NULL)
		store_pgpool_free(&pool);
	pn_loop_free(&loop);
	teardown();
	return rc;
}
