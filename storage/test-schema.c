/* Tests of the PostgreSQL schema (storage/sql) against a real server:
 * migrations, UID allocation under concurrency, exact usage counters under
 * concurrent delivery and expunge, body deduplication, quotas, flags,
 * copy/move, recipient resolution and the outbound queue.
 *
 * Needs POSTERN_PG_DSN (skipped without it, a failure under CI=true). Every
 * run works in its own schema (search_path), dropped at the end, so runs
 * in parallel do not meet.
 */
#include "postern/store-admin.h"
#include "postern/store-migrate.h"
#include "postern/store-pg.h"
#include "postern/testing.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

int pn_test_failures_;

static const char *test_dsn;
static char test_schema[64];

static PGconn *connect_test(void)
{
	char sql[160];
	const char *error = NULL;
	PGconn *conn = NULL;

	if (store_pg_connect(test_dsn, &conn, &error) < 0) {
		fprintf(stderr, "connect: %s\n", error);
		return NULL;
	}
	snprintf(sql, sizeof(sql), "SET search_path TO %s; SET synchronous_commit TO off",
		 test_schema);
	if (store_pg_script(conn, sql, &error) < 0) {
		fprintf(stderr, "setup: %s\n", error);
		store_pg_close(&conn);
	}
	return conn;
}

/* Runs a query that must succeed; NULL (and a failed check) if not. */
static PGresult *q(PGconn *c, const char *sql, int n, const char *const *params)
{
	const char *error = NULL;
	PGresult *res = store_pg_exec(c, sql, n, params, &error);

	if (res == NULL) {
		fprintf(stderr, "query failed: %s\n  %s\n", error, sql);
		pn_test_failures_++;
	}
	return res;
}

/* First column of the first row as an integer (-1 for NULL or error). */
static int64_t qi(PGconn *c, const char *sql, int n, const char *const *params)
{
	PGresult *res = q(c, sql, n, params);
	int64_t v = -1;

	if (res != NULL && PQntuples(res) > 0)
		v = store_pg_int(res, 0, 0);
	PQclear(res);
	return v;
}

static void qc(PGconn *c, const char *sql)
{
	PQclear(q(c, sql, 0, NULL));
}

static void ensure_migrated(PGconn *c)
{
	const char *error = NULL;
	int from, to;

	if (store_migrate(c, &from, &to, &error) < 0) {
		fprintf(stderr, "migrate: %s\n", error);
		pn_test_failures_++;
	}
}

/* Creates tenant/domain (if needed) and an account; returns its id. */
static int64_t make_account(PGconn *c, const char *tenant, const char *domain,
			    const char *address)
{
	struct store_user_params p = { .password_hash = "{PLAIN}x", .quota_bytes = -1,
				       .quota_messages = -1 };
	const char *params[1] = { address };
	const char *error = NULL;

	(void)store_tenant_add(c, tenant, -1, -1, &error);
	(void)store_domain_add(c, domain, tenant, &error);
	if (store_user_add(c, address, &p, &error) < 0) {
		fprintf(stderr, "user add %s: %s\n", address, error);
		pn_test_failures_++;
	}
	return qi(c, "SELECT id FROM accounts WHERE lower(address) = lower($1)", 1, params);
}

static int64_t mailbox_id(PGconn *c, int64_t account, const char *name)
{
	char a[24];
	const char *params[2] = { a, name };

	snprintf(a, sizeof(a), "%lld", (long long)account);
	return qi(c, "SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2", 2, params);
}

/* deliver_message() of body into the (account, mailbox) pairs listed in
 * the SQL array literals accs and mbs; returns the result (caller clears)
 * with columns account_id, mailbox_id, uid, modseq, status. */
static const char deliver_sql[] =
	"WITH b AS (SELECT convert_to($1, 'UTF8') AS body)"
	" SELECT d.account_id, d.mailbox_id, d.uid, d.modseq, d.status"
	" FROM b, deliver_message(sha256(b.body), length(b.body), b.body,"
	" $2::bigint[], $3::bigint[]) AS d ORDER BY d.account_id, d.mailbox_id";

static PGresult *deliver_raw(PGconn *c, const char *body, const char *accs,
			     const char *mbs, const char **error_r)
{
	const char *params[3] = { body, accs, mbs };

	return store_pg_exec(c, deliver_sql, 3, params, error_r);
}

static int64_t deliver1(PGconn *c, const char *body, int64_t account, int64_t mailbox)
{
	char accs[32], mbs[32];
	const char *error = NULL;
	PGresult *res;
	int64_t uid = -1;

	snprintf(accs, sizeof(accs), "{%lld}", (long long)account);
	snprintf(mbs, sizeof(mbs), "{%lld}", (long long)mailbox);
	res = deliver_raw(c, body, accs, mbs, &error);
	if (res == NULL) {
		fprintf(stderr, "deliver: %s\n", error);
		pn_test_failures_++;
		return -1;
	}
	if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 4), "ok") == 0)
		uid = store_pg_int(res, 0, 2);
	PQclear(res);
	return uid;
}

/* Usage counters equal what the rows say, for every account, tenant and
 * body. Returns the number of mismatching rows. */
static int64_t usage_mismatches(PGconn *c)
{
	return qi(c,
		"SELECT (SELECT count(*) FROM accounts a JOIN account_usage u ON u.account_id = a.id"
		"  LEFT JOIN (SELECT account_id, sum(size) AS b, count(*) AS m FROM messages"
		"   GROUP BY account_id) s ON s.account_id = a.id"
		"  WHERE u.bytes <> coalesce(s.b, 0) OR u.messages <> coalesce(s.m, 0))"
		" + (SELECT count(*) FROM tenants t JOIN tenant_usage_total tu ON tu.tenant_id = t.id"
		"  LEFT JOIN (SELECT a.tenant_id, sum(u.bytes) AS b, sum(u.messages) AS m"
		"   FROM accounts a JOIN account_usage u ON u.account_id = a.id GROUP BY a.tenant_id) s"
		"   ON s.tenant_id = t.id"
		"  WHERE tu.bytes <> coalesce(s.b, 0) OR tu.messages <> coalesce(s.m, 0))"
		" + (SELECT count(*) FROM mail_blobs bl"
		"  WHERE bl.refcount <> (SELECT count(*) FROM messages m WHERE m.blob_sha256 = bl.sha256)"
		"   + (SELECT count(*) FROM outbound_queue o WHERE o.blob_sha256 = bl.sha256)"
		"   OR bl.refcount = 0)", 0, NULL);
}

PN_TEST(test_migrate)
{
	PGconn *c = connect_test();
	const char *error = NULL;
	int version = -1, from = -1, to = -1;

	if (c == NULL) {
		CHECK(0);
		return;
	}
	CHECK(store_migrate_latest() >= 1);
	CHECK_INT(store_schema_version(c, &version, &error), 0);
	CHECK_INT(version, 0);
	CHECK_INT(store_migrate(c, &from, &to, &error), 0);
	CHECK_INT(from, 0);
	CHECK_INT(to, store_migrate_latest());
	/* Idempotent. */
	CHECK_INT(store_migrate(c, &from, &to, &error), 0);
	CHECK_INT(from, store_migrate_latest());
	CHECK_INT(to, store_migrate_latest());
	CHECK_INT(qi(c, "SELECT count(*) FROM schema_version", 0, NULL), store_migrate_latest());
	/* A newer database is refused and left alone. */
	qc(c, "INSERT INTO schema_version (version, name) VALUES (999, '999_future')");
	error = NULL;
	CHECK_INT(store_migrate(c, &from, &to, &error), -1);
	CHECK(error != NULL && strstr(error, "newer") != NULL);
	CHECK_INT(store_schema_version(c, &version, &error), 0);
	CHECK_INT(version, 999);
	qc(c, "DELETE FROM schema_version WHERE version = 999");
	CHECK_INT(store_migrate(c, &from, &to, &error), 0);
	/* The advisory lock was released: another session can migrate. */
	PGconn *c2 = connect_test();
	CHECK(c2 != NULL);
	if (c2 != NULL) {
		CHECK_INT(store_migrate(c2, &from, &to, &error), 0);
		store_pg_close(&c2);
	}
	store_pg_close(&c);
}

PN_TEST(test_new_account_mailboxes)
{
	PGconn *c = connect_test();
	int64_t a;
	char id[24];
	const char *params[1] = { id };
	PGresult *res;

	if (c == NULL) {
		CHECK(0);
		return;
	}
	ensure_migrated(c);
	a = make_account(c, "mb", "mb.test", "new@mb.test");
	snprintf(id, sizeof(id), "%lld", (long long)a);
	res = q(c, "SELECT name, coalesce(special_use, ''), subscribed, uidnext, highestmodseq"
		" FROM mailboxes WHERE account_id = $1 ORDER BY id", 1, params);
	if (res != NULL) {
		static const char *const want[][2] = {
			{ "INBOX", "" }, { "Sent", "\\Sent" }, { "Drafts", "\\Drafts" },
			{ "Trash", "\\Trash" }, { "Junk", "\\Junk" }, { "Archive", "\\Archive" },
		};
		CHECK_INT(PQntuples(res), 6);
		for (int i = 0; i < PQntuples(res) && i < 6; i++) {
			CHECK_STR(PQgetvalue(res, i, 0), want[i][0]);
			CHECK_STR(PQgetvalue(res, i, 1), want[i][1]);
			CHECK_STR(PQgetvalue(res, i, 2), "t");
			CHECK_STR(PQgetvalue(res, i, 3), "1");
		}
		PQclear(res);
	}
	CHECK_INT(qi(c, "SELECT count(DISTINCT uidvalidity) FROM mailboxes WHERE account_id = $1",
		     1, params), 6);
	CHECK_INT(qi(c, "SELECT bytes + messages FROM account_usage WHERE account_id = $1",
		     1, params), 0);
	/* A recreated mailbox gets a new UIDVALIDITY. */
	int64_t old = qi(c, "SELECT uidvalidity FROM mailboxes WHERE account_id = $1"
			 " AND name = 'Junk'", 1, params);
	PQclear(q(c, "SELECT delete_mailbox($1, (SELECT id FROM mailboxes WHERE account_id = $1"
		  " AND name = 'Junk'))", 1, params));
	PQclear(q(c, "INSERT INTO mailboxes (account_id, name, special_use)"
		  " VALUES ($1, 'Junk', '\\Junk')", 1, params));
	CHECK(qi(c, "SELECT uidvalidity FROM mailboxes WHERE account_id = $1 AND name = 'Junk'",
		 1, params) > old);
	store_pg_close(&c);
}

struct appender {
	int index;
	int64_t account, mailbox;
	int count;
	int64_t uids[200];
	int errors;
};

static void *append_thread(void *arg)
{
	struct appender *ap = arg;
	PGconn *c = connect_test();
	char body[128], accs[32], mbs[32];

	if (c == NULL) {
		ap->errors++;
		return NULL;
	}
	snprintf(accs, sizeof(accs), "{%lld}", (long long)ap->account);
	snprintf(mbs, sizeof(mbs), "{%lld}", (long long)ap->mailbox);
	for (int i = 0; i < ap->count; i++) {
		const char *error = NULL;
		PGresult *res;

		snprintf(body, sizeof(body), "Subject: t%d m%d\r\n\r\nbody %d/%d\r\n",
			 ap->index, i, ap->index, i);
		res = deliver_raw(c, body, accs, mbs, &error);
		if (res == NULL || PQntuples(res) != 1 ||
		    strcmp(PQgetvalue(res, 0, 4), "ok") != 0) {
			if (res == NULL)
				fprintf(stderr, "thread %d: %s\n", ap->index, error);
			ap->errors++;
			ap->uids[i] = -1;
		} else {
			ap->uids[i] = store_pg_int(res, 0, 2);
		}
		PQclear(res);
	}
	store_pg_close(&c);
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

PN_TEST(test_uid_allocation_concurrent)
{
	enum { THREADS = 4, PER = 200 };
	static struct appender ap[THREADS];
	static int64_t all[THREADS * PER];
	pthread_t th[THREADS];
	PGconn *c = connect_test();
	int64_t a, mb, first, before, max_uid, uid;
	char sa[24], sm[24];
	const char *params[2] = { sa, sm };
	PGresult *res;

	if (c == NULL) {
		CHECK(0);
		return;
	}
	ensure_migrated(c);
	a = make_account(c, "uid", "uid.test", "appender@uid.test");
	mb = mailbox_id(c, a, "INBOX");
	snprintf(sa, sizeof(sa), "%lld", (long long)a);
	snprintf(sm, sizeof(sm), "%lld", (long long)mb);

	for (int t = 0; t < THREADS; t++) {
		ap[t] = (struct appender){ .index = t, .account = a, .mailbox = mb, .count = PER };
		CHECK_INT(pthread_create(&th[t], NULL, append_thread, &ap[t]), 0);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < THREADS; t++) {
		CHECK_INT(ap[t].errors, 0);
		for (int i = 1; i < PER; i++)
			CHECK(ap[t].uids[i] > ap[t].uids[i - 1]);   /* ascending per connection */
		memcpy(all + t * PER, ap[t].uids, sizeof(ap[t].uids));
	}
	qsort(all, THREADS * PER, sizeof(all[0]), cmp_i64);
	for (int i = 0; i < THREADS * PER; i++)
		CHECK_INT(all[i], i + 1);                          /* distinct, no gaps */
	CHECK_INT(qi(c, "SELECT uidnext FROM mailboxes WHERE account_id = $1 AND id = $2",
		     2, params), THREADS * PER + 1);
	CHECK_INT(qi(c, "SELECT count(*) FROM messages WHERE account_id = $1 AND mailbox_id = $2",
		     2, params), THREADS * PER);
	CHECK(qi(c, "SELECT highestmodseq FROM mailboxes WHERE account_id = $1 AND id = $2",
		 2, params) > THREADS * PER);

	/* A rolled-back allocation leaves no trace: UIDNEXT as before, and
	 * the next committed message gets a UID above every committed one. */
	before = qi(c, "SELECT uidnext FROM mailboxes WHERE account_id = $1 AND id = $2",
		    2, params);
	qc(c, "BEGIN");
	first = qi(c, "SELECT first_uid FROM allocate_uids($1, $2, 5)", 2, params);
	CHECK_INT(first, before);
	qc(c, "ROLLBACK");
	CHECK_INT(qi(c, "SELECT uidnext FROM mailboxes WHERE account_id = $1 AND id = $2",
		     2, params), before);
	max_uid = qi(c, "SELECT max(uid) FROM messages WHERE account_id = $1 AND mailbox_id = $2",
		     2, params);
	uid = deliver1(c, "Subject: after rollback\r\n\r\nx\r\n", a, mb);
	CHECK(uid > max_uid);
	/* A UID that was committed is never handed out again, even after its
	 * message is expunged. */
	{
		char su[24];
		const char *p3[3] = { sa, sm, su };

		snprintf(su, sizeof(su), "%lld", (long long)uid);
		res = q(c, "SELECT cardinality(expunged) FROM expunge_messages($1, $2,"
			" ARRAY[$3::bigint], false)", 3, p3);
		CHECK(res != NULL && strcmp(PQgetvalue(res, 0, 0), "1") == 0);
		PQclear(res);
	}
	CHECK(deliver1(c, "Subject: after expunge\r\n\r\ny\r\n", a, mb) > uid);
	CHECK_INT(usage_mismatches(c), 0);
	store_pg_close(&c);
}

struct worker {
	int index;
	int64_t acc[2], mb[2];
	int rounds;
	int errors;
};

static void *deliver_thread(void *arg)
{
	struct worker *w = arg;
	PGconn *c = connect_test();
	char body[96], accs[64], mbs[64];

	if (c == NULL) {
		w->errors++;
		return NULL;
	}
	snprintf(accs, sizeof(accs), "{%lld,%lld}", (long long)w->acc[0], (long long)w->acc[1]);
	snprintf(mbs, sizeof(mbs), "{%lld,%lld}", (long long)w->mb[0], (long long)w->mb[1]);
	for (int i = 0; i < w->rounds; i++) {
		const char *error = NULL;
		PGresult *res;

		/* Bodies repeat across threads: dedup happens under load. */
		snprintf(body, sizeof(body), "Subject: shared %d\r\n\r\n%.*s\r\n", i % 7,
			 (i % 7) * 5, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		res = deliver_raw(c, body, accs, mbs, &error);
		if (res == NULL) {
			fprintf(stderr, "deliver thread %d: %s\n", w->index, error);
			w->errors++;
		}
		PQclear(res);
	}
	store_pg_close(&c);
	return NULL;
}

static void *expunge_thread(void *arg)
{
	struct worker *w = arg;
	PGconn *c = connect_test();
	char sa[24], sm[24];
	const char *params[2] = { sa, sm };

	if (c == NULL) {
		w->errors++;
		return NULL;
	}
	snprintf(sa, sizeof(sa), "%lld", (long long)w->acc[0]);
	snprintf(sm, sizeof(sm), "%lld", (long long)w->mb[0]);
	for (int i = 0; i < w->rounds; i++) {
		const char *error = NULL;
		PGresult *res;

		/* IMAP style: flag \Deleted, then EXPUNGE. */
		res = store_pg_exec(c, "SELECT count(*) FROM store_flags($1, $2, ARRAY("
				    "SELECT uid FROM messages WHERE account_id = $1 AND mailbox_id = $2"
				    " ORDER BY uid LIMIT 3), 'add', 8)", 2, params, &error);
		if (res == NULL) {
			fprintf(stderr, "store thread %d: %s\n", w->index, error);
			w->errors++;
		}
		PQclear(res);
		res = store_pg_exec(c, "SELECT * FROM expunge_messages($1, $2)", 2, params, &error);
		if (res == NULL) {
			fprintf(stderr, "expunge thread %d: %s\n", w->index, error);
			w->errors++;
		}
		PQclear(res);
	}
	store_pg_close(&c);
	return NULL;
}

PN_TEST(test_usage_exact_concurrent)
{
	enum { DELIVERERS = 2, EXPUNGERS = 2 };
	struct worker w[DELIVERERS + EXPUNGERS];
	pthread_t th[DELIVERERS + EXPUNGERS];
	PGconn *c = connect_test();
	int64_t a1, a2, m1, m2;

	if (c == NULL) {
		CHECK(0);
		return;
	}
	ensure_migrated(c);
	a1 = make_account(c, "usage", "usage.test", "one@usage.test");
	a2 = make_account(c, "usage", "usage.test", "two@usage.test");
	m1 = mailbox_id(c, a1, "INBOX");
	m2 = mailbox_id(c, a2, "INBOX");
	for (int t = 0; t < DELIVERERS + EXPUNGERS; t++) {
		bool del = t < DELIVERERS;

		/* Expungers work on one account each (t=2: a1, t=3: a2). */
		w[t] = (struct worker){
			.index = t, .rounds = del ? 120 : 60,
			.acc = { del ? a1 : (t == 2 ? a1 : a2), a2 },
			.mb = { del ? m1 : (t == 2 ? m1 : m2), m2 },
		};
		CHECK_INT(pthread_create(&th[t], NULL, del ? deliver_thread : expunge_thread,
					 &w[t]), 0);
	}
	for (int t = 0; t < DELIVERERS + EXPUNGERS; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < DELIVERERS + EXPUNGERS; t++)
		CHECK_INT(w[t].errors, 0);
	CHECK_INT(usage_mismatches(c), 0);
	/* Something was delivered and something expunged. */
	CHECK(qi(c, "SELECT count(*) FROM expunged_messages", 0, NULL) > 0);
	CHECK(qi(c, "SELECT sum(messages) FROM account_usage", 0, NULL) > 0);
	store_pg_close(&c);
}

PN_TEST(test_dedup_and_free)
{
	PGconn *c = connect_test();
	int64_t a[3], m[3];
	char accs[96], mbs[96], sa[24], sm[24];
	const char *body = "Subject: dedup\r\n\r\nthe same body for everybody\r\n";
	const char *hash_param[1] = { body };
	const char *error = NULL;
	PGresult *res;

	if (c == NULL) {
		CHECK(0);
		return;
	}
	ensure_migrated(c);
	a[0] = make_account(c, "dedup", "dedup.test", "a@dedup.test");
	a[1] = make_account(c, "dedup", "dedup.test", "b@dedup.test");
	a[2] = make_account(c, "dedup", "dedup.test", "c@dedup.test");
	for (int i = 0; i < 3; i++)
		m[i] = mailbox_id(c, a[i], "INBOX");
	snprintf(accs, sizeof(accs), "{%lld,%lld,%lld}", (long long)a[0], (long long)a[1],
		 (long long)a[2]);
	snprintf(mbs, sizeof(mbs), "{%lld,%lld,%lld}", (long long)m[0], (long long)m[1],
		 (long long)m[2]);
	res = deliver_raw(c, body, accs, mbs, &error);
	CHECK(res != NULL);
	if (res != NULL) {
		CHECK_INT(PQntuples(res), 3);
		for (int i = 0; i < PQntuples(res); i++) {
			CHECK_STR(PQgetvalue(res, i, 4), "ok");
			CHECK_STR(PQgetvalue(res, i, 2), "1");
		}
		PQclear(res);
	}
	static const char blob_sql[] =
		"SELECT refcount FROM mail_blobs WHERE sha256 = sha256(convert_to($1, 'UTF8'))";
	CHECK_INT(qi(c, blob_sql, 1, hash_param), 3);
	CHECK_INT(qi(c, "SELECT count(*) FROM mail_blobs WHERE sha256 ="
		     " sha256(convert_to($1, 'UTF8')) AND body IS NOT NULL", 1, hash_param), 1);
	CHECK_INT(usage_mismatches(c), 0);

	/* Delivering again with no body: the stored one is referenced. */
	{
		char one[32];

		snprintf(one, sizeof(one), "{%lld}", (long long)a[0]);
		snprintf(mbs, sizeof(mbs), "{%lld}", (long long)mailbox_id(c, a[0], "Archive"));
		const char *p3[3] = { body, one, mbs };
		CHECK_STR(PQgetvalue(res = q(c,
			"SELECT d.status FROM deliver_message(sha256(convert_to($1, 'UTF8')),"
			" length(convert_to($1, 'UTF8')), NULL, $2::bigint[], $3::bigint[]) d",
			3, p3), 0, 0), "ok");
		PQclear(res);
		CHECK_INT(qi(c, blob_sql, 1, hash_param), 4);
		/* A body never stored cannot be referenced without sending it. */
		const char *p4[3] = { "never stored", one, mbs };
		res = store_pg_exec(c,
			"SELECT * FROM deliver_message(sha256(convert_to($1, 'UTF8')),"
			" 12, NULL, $2::bigint[], $3::bigint[])", 3, p4, &error);
		CHECK(res == NULL);
		CHECK_STR(store_pg_last_sqlstate(), "PN004");
		/* A body that does not match its hash is refused. */
		const char *p5[3] = { "tampered", one, mbs };
		res = store_pg_exec(c,
			"SELECT * FROM deliver_message(sha256('other'::bytea), 8,"
			" convert_to($1, 'UTF8'), $2::bigint[], $3::bigint[])", 3, p5, &error);
		CHECK(res == NULL);
		CHECK_STR(store_pg_last_sqlstate(), "PN005");
	}
	/* Expunge one by one: the body goes with the last reference. */
	for (int i = 0; i < 3; i++) {
		const char *p[2] = { sa, sm };

		snprintf(sa, sizeof(sa), "%lld", (long long)a[i]);
		snprintf(sm, sizeof(sm), "%lld", (long long)m[i]);
		res = q(c, "SELECT array_to_string(expunged, ','), array_to_string(freed_blobs, ',')"
			" FROM expunge_messages($1, $2, NULL, false)", 2, p);
		if (res != NULL) {
			CHECK_STR(PQgetvalue(res, 0, 0), "1");
			CHECK_STR(PQgetvalue(res, 0, 1), "");
			PQclear(res);
		}
	}
	CHECK_INT(qi(c, blob_sql, 1, hash_param), 1);
	{
		char mb[24];

		snprintf(sa, sizeof(sa), "%lld", (long long)a[0]);
		snprintf(mb, sizeof(mb), "%lld", (long long)mailbox_id(c, a[0], "Archive"));
		res = q(c, "SELECT array_to_string(freed_blobs, ','),"
			" encode(sha256(convert_to($3, 'UTF8')), 'hex')"
			" FROM expunge_messages($1, $2, NULL, false)", 3,
			(const char *const[]){ sa, mb, body });
		if (res != NULL) {
			CHECK_STR(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
			PQclear(res);
		}
	}
	CHECK_INT(qi(c, "SELECT count(*) FROM mail_blobs WHERE sha256 ="
		     " sha256(convert_to($1, 'UTF8'))", 1, hash_param), 0);
	CHECK_INT(usage_mismatches(c), 0);
	store_pg_close(&c);
}

PN_TEST(test_quota_enforced)
{
	PGconn *c = connect_test();
	int64_t a, m, b, mb;
	const char *error = NULL;
	char accs[48], mbs[48];
	PGresult *res;

	if (c == NULL) {
		CHECK(0);
		return;
	}
	ensure_migrated(c);
	a = make_account(c, "quota", "quota.test", "small@quota.test");
	b = make_account(c, "quota", "quota.test", "big@quota.test");
	m = mailbox_id(c, a, "INBOX");
	mb = mailbox_id(c, b, "INBOX");
	CHECK_INT(store_user_set_quota(c, "small@quota.test", 100, true, 2, &error), 0);
	CHECK(deliver1(c, "m1", a, m) > 0);
	CHECK(deliver1(c, "m2", a, m) > 0);
	/* Third message over the message limit; the other recipient gets it. */
	snprintf(accs, sizeof(accs), "{%lld,%lld}", (long long)a, (long long)b);
	snprintf(mbs, sizeof(mbs), "{%lld,%lld}", (long long)m, (long long)mb);
	res = deliver_raw(c, "m3", accs, mbs, &error);
	CHECK(res != NULL);
	if (res != NULL) {
		for (int i = 0; i < PQntuples(res); i++) {
			int64_t acc = store_pg_int(res, i, 0);

			CHECK_STR(PQgetvalue(res, i, 4), acc == a ? "quota" : "ok");
		}
		PQclear(res);
	}
	/* Byte limit: 100 bytes, 4 used. */
	CHECK_INT(store_user_set_quota(c, "small@quota.test", 100, true, -1, &error), 0);
	char big[120];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK_INT(deliver1(c, big, a, m), -1);
	CHECK(deliver1(c, "fits", a, m) > 0);
	/* A tenant limit applies across its accounts. */
	qc(c, "UPDATE tenants SET quota_messages = (SELECT sum(messages) FROM tenant_usage"
	   " WHERE tenant_id = tenants.id) WHERE name = 'quota'");
	CHECK_INT(deliver1(c, "tenant full", b, mb), -1);
	CHECK_INT(usage_mismatches(c), 0);
	/* COPY over quota raises PN003. */
	{
		char sa[24], sm[24], sd[24];
		const char *p[3] = { sa, sm, sd };

		snprintf(sa, sizeof(sa), "%lld", (long long)b);
		snprintf(sm, sizeof(sm), "%lld", (long long)mb);
		snprintf(sd, sizeof(sd), "%lld", (long long)mailbox_id(c, b, "Archive"));
		res = store_pg_exec(c, "SELECT * FROM copy_messages($1, $2, ARRAY[1], $3)", 3, p,
				    &error);
		CHECK(res == NULL);
		CHECK_STR(store_pg_last_sqlstate(), "PN003");
		/* Without enforcement (admin tooling) it works and counts. */
		res = q(c, "SELECT count(*) FROM copy_messages($1, $2, ARRAY[1], $3, false)", 3, p);
		CHECK(res != NULL && strcmp(PQgetvalue(res, 0, 0), "1") == 0);
		PQclear(res);
	}
	CHECK_INT(usage_mismatches(c), 0);
	store_pg_close(&c);
}

PN_TEST(test_flags_copy_move)
{
	PGconn *c = connect_test();
	int64_t a, inbox, arch, modseq0;
	char sa[24], si[24], sr[24];
	const char *p2[2] = { sa, si };
	const char *p3[3] = { sa, si, sr };
	PGresult *res;

	if (c == NULL) {
		CHECK(0);
		return;
	}
	ensure_migrated(c);
	a = make_account(c, "flags", "flags.test", "f@flags.test");
	inbox = mailbox_id(c, a, "INBOX");
	arch = mailbox_id(c, a, "Archive");
	snprintf(sa, sizeof(sa), "%lld", (long long)a);
	snprintf(si, sizeof(si), "%lld", (long long)inbox);
	snprintf(sr, sizeof(sr), "%lld", (long long)arch);
	for (int i = 0; i < 3; i++) {
		char body[32];

		snprintf(body, sizeof(body), "flags %d", i);
		CHECK_INT(deliver1(c, body, a, inbox), i + 1);
	}
	modseq0 = qi(c, "SELECT highestmodseq FROM mailboxes WHERE account_id = $1 AND id = $2",
		     2, p2);
	/* Add \Flagged and a keyword to 1 and 2. */
	res = q(c, "SELECT uid, modseq, flags, array_to_string(keywords, ' ')"
		" FROM store_flags($1, $2, ARRAY[1, 2], 'add', 4, ARRAY['$Label1']) ORDER BY uid",
		2, p2);
	if (res != NULL) {
		CHECK_INT(PQntuples(res), 2);
		CHECK_INT(store_pg_int(res, 0, 1), modseq0 + 1);
		CHECK_STR(PQgetvalue(res, 0, 2), "4");
		CHECK_STR(PQgetvalue(res, 1, 3), "$Label1");
		PQclear(res);
	}
	/* The same again changes nothing, so no new MODSEQ. */
	CHECK_INT(qi(c, "SELECT count(*) FROM store_flags($1, $2, ARRAY[1, 2], 'add', 4,"
		     " ARRAY['$label1'])", 2, p2), 0);
	CHECK_INT(qi(c, "SELECT highestmodseq FROM mailboxes WHERE account_id = $1 AND id = $2",
		     2, p2), modseq0 + 1);
	/* UNCHANGEDSINCE below the messages' MODSEQ: refused, reported. */
	{
		char since[24];
		const char *p[3] = { sa, si, since };

		snprintf(since, sizeof(since), "%lld", (long long)modseq0);
		res = q(c, "SELECT uid, updated FROM store_flags($1, $2, ARRAY[1, 3], 'remove', 4,"
			" '{}', $3::bigint) ORDER BY uid", 3, p);
		if (res != NULL) {
			CHECK_INT(PQntuples(res), 1);
			CHECK_STR(PQgetvalue(res, 0, 0), "1");
			CHECK_STR(PQgetvalue(res, 0, 1), "f");
			PQclear(res);
		}
	}
	/* Remove the keyword case-insensitively. */
	res = q(c, "SELECT array_to_string(keywords, ' ') FROM store_flags($1, $2, ARRAY[2],"
		" 'remove', 0, ARRAY['$LABEL1'])", 2, p2);
	CHECK(res != NULL && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "") == 0);
	PQclear(res);

	/* COPY 1 and 3 to Archive: UIDs 1, 2 there, in source order; usage
	 * and body references grow. */
	res = q(c, "SELECT src_uid, dst_uid FROM copy_messages($1, $2, ARRAY[3, 1], $3)"
		" ORDER BY src_uid", 3, p3);
	if (res != NULL) {
		CHECK_INT(PQntuples(res), 2);
		CHECK_STR(PQgetvalue(res, 0, 1), "1");
		CHECK_STR(PQgetvalue(res, 1, 1), "2");
		PQclear(res);
	}
	CHECK_INT(qi(c, "SELECT messages FROM account_usage WHERE account_id = $1", 1, p2), 5);
	/* Flags go along: Archive UID 1 is the copy of INBOX UID 1 (\Flagged). */
	CHECK_INT(qi(c, "SELECT flags FROM messages WHERE account_id = $1 AND mailbox_id = $2"
		     " AND uid = 1", 2, (const char *const[]){ sa, sr }), 4);
	/* MOVE 2 to Archive: UID 3 there, recorded as expunged in INBOX,
	 * usage unchanged. */
	res = q(c, "SELECT dst_uid, src_modseq FROM move_messages($1, $2, ARRAY[2], $3)", 3, p3);
	if (res != NULL) {
		CHECK_INT(PQntuples(res), 1);
		CHECK_STR(PQgetvalue(res, 0, 0), "3");
		PQclear(res);
	}
	CHECK_INT(qi(c, "SELECT count(*) FROM expunged_messages WHERE account_id = $1"
		     " AND mailbox_id = $2 AND uid = 2", 2, p2), 1);
	CHECK_INT(qi(c, "SELECT count(*) FROM messages WHERE account_id = $1 AND mailbox_id = $2",
		     2, p2), 2);
	CHECK_INT(qi(c, "SELECT messages FROM account_usage WHERE account_id = $1", 1, p2), 5);
	/* EXPUNGE only takes \Deleted messages. */
	PQclear(q(c, "SELECT * FROM store_flags($1, $2, ARRAY[3], 'add', 8)", 2, p2));
	res = q(c, "SELECT array_to_string(expunged, ',') FROM expunge_messages($1, $2)", 2, p2);
	CHECK(res != NULL && strcmp(PQgetvalue(res, 0, 0), "3") == 0);
	PQclear(res);
	CHECK_INT(usage_mismatches(c), 0);
	/* Deleting the account frees everything it alone referenced. */
	PQclear(q(c, "SELECT delete_account($1)", 1, p2));
	CHECK_INT(qi(c, "SELECT count(*) FROM mail_blobs WHERE sha256 IN"
		     " (sha256('flags 0'), sha256('flags 1'), sha256('flags 2'))", 0, NULL), 0);
	CHECK_INT(usage_mismatches(c), 0);
	store_pg_close(&c);
}

PN_TEST(test_resolve_recipient)
{
	PGconn *c = connect_test();
	const char *error = NULL;
	const char *const info_dst[] = { "alice@res.test", "ext@remote.example" };
	const char *const catchall_dst[] = { "bob@res.test" };
	const char *const loop1[] = { "loop2@res.test" };
	const char *const loop2[] = { "loop1@res.test" };
	PGresult *res;

	if (c == NULL) {
		CHECK(0);
		return;
	}
	ensure_migrated(c);
	make_account(c, "res", "res.test", "Alice@res.test");
	make_account(c, "res", "res.test", "bob@res.test");
	CHECK_INT(store_alias_add(c, "info@res.test", info_dst, 2, &error), 0);
	CHECK_INT(store_alias_add(c, "loop1@res.test", loop1, 1, &error), 0);
	CHECK_INT(store_alias_add(c, "loop2@res.test", loop2, 1, &error), 0);

	struct {
		const char *in, *out;
	} cases[] = {
		{ "alice@res.test", "Alice@res.test" },
		{ "ALICE+news@Res.Test", "Alice@res.test" },
		{ "info+x@res.test", "Alice@res.test,ext@remote.example" },
		{ "someone@elsewhere.example", "someone@elsewhere.example" },
		{ "nobody@res.test", "" },
		{ "loop1@res.test", "" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *p[1] = { cases[i].in };

		res = q(c, "SELECT coalesce(string_agg(address, ',' ORDER BY address), '')"
			" FROM resolve_recipient($1)", 1, p);
		if (res != NULL) {
			if (strcmp(PQgetvalue(res, 0, 0), cases[i].out) != 0) {
				fprintf(stderr, "resolve %s: %s, expected %s\n", cases[i].in,
					PQgetvalue(res, 0, 0), cases[i].out);
				CHECK(0);
			}
			PQclear(res);
		}
	}
	/* With a catch-all, unknown local parts go to it. */
	CHECK_INT(store_alias_add(c, "@res.test", catchall_dst, 1, &error), 0);
	CHECK_INT(qi(c, "SELECT count(*) FROM resolve_recipient('nobody@res.test')"
		     " WHERE address = 'bob@res.test'", 0, NULL), 1);
	CHECK_INT(qi(c, "SELECT count(*) FROM resolve_recipient('alice@res.test')"
		     " WHERE address = 'bob@res.test'", 0, NULL), 0);
	store_pg_close(&c);
}

PN_TEST(test_outbound_claim)
{
	PGconn *c1 = connect_test(), *c2 = connect_test();
	int64_t a;
	char sa[24];
	const char *p[1] = { sa };
	PGresult *res;

	if (c1 == NULL || c2 == NULL) {
		CHECK(0);
		store_pg_close(&c1);
		store_pg_close(&c2);
		return;
	}
	ensure_migrated(c1);
	a = make_account(c1, "queue", "queue.test", "sender@queue.test");
	snprintf(sa, sizeof(sa), "%lld", (long long)a);
	for (int i = 0; i < 4; i++)
		PQclear(q(c1, "SELECT outbound_enqueue((SELECT tenant_id FROM accounts WHERE id = $1),"
			  " $1, 'sender@queue.test', ARRAY['x@remote.example', 'y@remote.example'],"
			  " sha256('queued body'), 11, 'queued body')", 1, p));
	CHECK_INT(qi(c1, "SELECT refcount FROM mail_blobs WHERE sha256 = sha256('queued body')",
		     0, NULL), 4);
	CHECK_INT(qi(c1, "SELECT count(*) FROM outbound_recipients", 0, NULL), 8);
	/* Worker 1 claims two and still holds the row locks; worker 2 skips
	 * them instead of waiting. */
	qc(c1, "BEGIN");
	CHECK_INT(qi(c1, "SELECT count(*) FROM outbound_claim('w1', '5 minutes', 2)", 0, NULL), 2);
	res = q(c2, "SELECT count(*), count(DISTINCT locked_by) FROM outbound_claim('w2',"
		" '5 minutes', 10)", 0, NULL);
	CHECK(res != NULL && strcmp(PQgetvalue(res, 0, 0), "2") == 0);
	PQclear(res);
	qc(c1, "COMMIT");
	/* All four are under a lease now: nothing is due. */
	CHECK_INT(qi(c2, "SELECT count(*) FROM outbound_claim('w2', '5 minutes', 10)", 0, NULL), 0);
	CHECK_INT(qi(c1, "SELECT count(DISTINCT locked_by) FROM outbound_queue", 0, NULL), 2);
	/* An expired lease makes the entry due again. */
	qc(c1, "UPDATE outbound_queue SET locked_until = now() - interval '1 second'"
	   " WHERE id = (SELECT min(id) FROM outbound_queue)");
	CHECK_INT(qi(c2, "SELECT count(*) FROM outbound_claim('w3', '5 minutes', 10)", 0, NULL), 1);
	/* Finishing drops the body reference; the last one frees it. */
	for (int i = 0; i < 4; i++) {
		res = q(c1, "SELECT outbound_finish((SELECT min(id) FROM outbound_queue))", 0, NULL);
		if (res != NULL) {
			CHECK_INT(PQgetisnull(res, 0, 0), i < 3 ? 1 : 0);
			PQclear(res);
		}
	}
	CHECK_INT(qi(c1, "SELECT count(*) FROM mail_blobs WHERE sha256 = sha256('queued body')",
		     0, NULL), 0);
	CHECK_INT(qi(c1, "SELECT count(*) FROM outbound_recipients", 0, NULL), 0);
	store_pg_close(&c1);
	store_pg_close(&c2);
}

int main(void)
{
	static const struct pn_test_case cases[] = {
		PN_TEST_CASE(test_migrate),
		PN_TEST_CASE(test_new_account_mailboxes),
		PN_TEST_CASE(test_uid_allocation_concurrent),
		PN_TEST_CASE(test_usage_exact_concurrent),
		PN_TEST_CASE(test_dedup_and_free),
		PN_TEST_CASE(test_quota_enforced),
		PN_TEST_CASE(test_flags_copy_move),
		PN_TEST_CASE(test_resolve_recipient),
		PN_TEST_CASE(test_outbound_claim),
	};
	const char *error = NULL;
	PGconn *admin = NULL;
	char sql[128];
	int rc;

	test_dsn = getenv("POSTERN_PG_DSN");
	if (test_dsn == NULL || test_dsn[0] == '\0')
		return pn_test_skip("test-schema", "POSTERN_PG_DSN is not set");
	if (store_pg_connect(test_dsn, &admin, &error) < 0) {
		fprintf(stderr, "test-schema: %s\n", error);
		return 1;
	}
	snprintf(test_schema, sizeof(test_schema), "pn_test_%ld_%ld", (long)getpid(),
		 (long)time(NULL));
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", test_schema);
	if (store_pg_script(admin, sql, &error) < 0) {
		fprintf(stderr, "test-schema: %s\n", error);
		store_pg_close(&admin);
		return 1;
	}
	rc = pn_test_run("test-schema", cases, sizeof(cases) / sizeof(cases[0]));
	snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", test_schema);
	if (store_pg_script(admin, sql, &error) < 0)
		fprintf(stderr, "test-schema: dropping %s: %s\n", test_schema, error);
	store_pg_close(&admin);
	return rc;
}
