/* Tests of the login check (auth.c), the POP3 maildrop operations
 * (maildrop.c) and the maildrop lock (maildrop-lock.c) against the
 * harness' PostgreSQL and Redis, each run in a private PostgreSQL schema:
 * logins (right, wrong, unknown, disabled, no password) with callbacks
 * never inside the call, throttled logins (the answer held for the
 * throttle's delay, a refusal without a password check, a success
 * resetting the account's count), the INBOX listing and UIDL format, body slices
 * reassembled byte-exact, a missing message, \Seen, the expunge; RETR
 * through the body cache (a miss reads and caches the body, the second
 * RETR is a hit with the same bytes and no statement; too large, gone, no
 * cache); the lock
 * refused while held, renewed past its lease, released, degraded to this
 * process when Redis cannot be reached, and refused locally even then.
 * Skipped without POSTERN_PG_DSN / POSTERN_REDIS_PORT.
 */
#include "postern/testing.h"

#include "postern/loop.h"
#include "postern/mail-auth.h"
#include "postern/mail-maildrop.h"
#include "postern/mail-throttle.h"
#include "postern/store-blob-cache.h"
#include "postern/store-migrate.h"
#include "postern/store-password.h"
#include "postern/store-pg.h"
#include "postern/store-redis-ops.h"
#include "postern/workpool.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct pn_loop *loop;
static struct store_pgpool *pool;
static struct pn_workpool *workers;
static PGconn *admin;
static char schema[40];
static char dsn[1024];
static const char *redis_host;
static int redis_port;
static uint64_t account, inbox, account_off;
static uint32_t uid1, uid2;

static const char body1[] = "Subject: one\r\n\r\nfirst body\r\n.dotted\r\n";
static const char body2[] = "Subject: two\r\n\r\nsecond\r\n";

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void run_until(const bool *flag, unsigned int ms)
{
	uint64_t end = now_ms() + ms;

	while (!*flag && now_ms() < end)
		pn_loop_run_once(loop, 20);
}

static void run_for(unsigned int ms)
{
	uint64_t end = now_ms() + ms;

	while (now_ms() < end)
		pn_loop_run_once(loop, 10);
}

static int64_t sql_int(const char *sql)
{
	const char *error;
	PGresult *res = store_pg_exec(admin, sql, 0, NULL, &error);
	int64_t v = -1;

	if (res == NULL) {
		fprintf(stderr, "sql: %s: %s\n", sql, error);
		return -1;
	}
	if (PQntuples(res) > 0)
		v = store_pg_int(res, 0, 0);
	PQclear(res);
	return v;
}

static uint32_t deliver(const char *body)
{
	char sql[1600];
	char hex[512];
	size_t n = strlen(body);

	for (size_t i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", (unsigned char)body[i]);
	snprintf(sql, sizeof(sql),
		 "SELECT uid FROM deliver_message(sha256(decode('%s','hex')), %zu, "
		 "decode('%s','hex'), ARRAY[%" PRIu64 "::bigint], ARRAY[%" PRIu64 "::bigint])",
		 hex, n, hex, account, inbox);
	return (uint32_t)sql_int(sql);
}

static int setup_db(const char *base)
{
	const char *error;
	char sql[512], hash[STORE_PASSWORD_HASH_MAX];
	int from, to;

	snprintf(schema, sizeof(schema), "md_%x_%lx", (unsigned)getpid(), (long)time(NULL));
	snprintf(dsn, sizeof(dsn), "%s options='-csearch_path=%s'", base, schema);
	if (store_pg_connect(base, &admin, &error) < 0) {
		fprintf(stderr, "connect: %s\n", error);
		return -1;
	}
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
	if (store_pg_command(admin, sql, 0, NULL, &error) < 0)
		return -1;
	snprintf(sql, sizeof(sql), "SET search_path = %s", schema);
	if (store_pg_command(admin, sql, 0, NULL, &error) < 0 ||
	    store_migrate(admin, &from, &to, &error) < 0) {
		fprintf(stderr, "migrate: %s\n", error);
		return -1;
	}
	if (store_password_hash("secret", hash, sizeof(hash), &error) < 0)
		return -1;
	{
		const char *params[1] = { hash };
		if (store_pg_command(admin, "INSERT INTO tenants (name) VALUES ('t')", 0, NULL, &error) < 0 ||
		    store_pg_command(admin, "INSERT INTO domains (tenant_id, name) "
				     "SELECT id, 'md.test' FROM tenants", 0, NULL, &error) < 0 ||
		    store_pg_command(admin, "INSERT INTO accounts (tenant_id, domain_id, local_part, "
				     "address, password_hash) SELECT tenant_id, id, 'bob', '', $1 FROM domains",
				     1, params, &error) < 0 ||
		    store_pg_command(admin, "INSERT INTO accounts (tenant_id, domain_id, local_part, "
				     "address, password_hash, enabled) SELECT tenant_id, id, 'off', '', $1, "
				     "false FROM domains", 1, params, &error) < 0 ||
		    store_pg_command(admin, "INSERT INTO accounts (tenant_id, domain_id, local_part, "
				     "address) SELECT tenant_id, id, 'nopw', '' FROM domains",
				     0, NULL, &error) < 0) {
			fprintf(stderr, "provision: %s\n", error);
			return -1;
		}
	}
	account = (uint64_t)sql_int("SELECT id FROM accounts WHERE local_part = 'bob'");
	account_off = (uint64_t)sql_int("SELECT id FROM accounts WHERE local_part = 'off'");
	snprintf(sql, sizeof(sql), "SELECT id FROM mailboxes WHERE account_id = %" PRIu64
		 " AND name = 'INBOX'", account);
	inbox = (uint64_t)sql_int(sql);
	uid1 = deliver(body1);
	uid2 = deliver(body2);
	return uid1 > 0 && uid2 > uid1 ? 0 : -1;
}

static void teardown_db(void)
{
	char sql[128];
	const char *error;

	snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
	store_pg_command(admin, sql, 0, NULL, &error);
	store_pg_close(&admin);
}

/* ---- logins ---- */

struct auth_res {
	bool done;
	struct mail_auth_result r;
	char address[256];
};

static void auth_cb(void *ctx, const struct mail_auth_result *r)
{
	struct auth_res *x = ctx;

	x->done = true;
	x->r = *r;
	if (r->address != NULL)
		snprintf(x->address, sizeof(x->address), "%s", r->address);
}

static enum mail_auth_status login(const char *user, const char *pw, struct auth_res *x)
{
	memset(x, 0, sizeof(*x));
	CHECK_INT(mail_auth_login(loop, pool, workers, user, pw, auth_cb, x), 0);
	CHECK(!x->done); /* never inside the call */
	run_until(&x->done, 10000);
	CHECK(x->done);
	return x->r.status;
}

PN_TEST(test_logins)
{
	struct auth_res x;

	CHECK_INT(login("bob@md.test", "secret", &x), MAIL_AUTH_OK);
	CHECK_INT(x.r.account_id, account);
	CHECK_STR(x.address, "bob@md.test");
	CHECK_INT(login("BOB@MD.TEST", "secret", &x), MAIL_AUTH_OK);
	CHECK_INT(login("bob@md.test", "wrong", &x), MAIL_AUTH_BAD);
	CHECK_STR(x.r.reason, "wrong password");
	CHECK_INT(login("nobody@md.test", "secret", &x), MAIL_AUTH_BAD);
	CHECK_STR(x.r.reason, "unknown user");
	CHECK_INT(login("off@md.test", "secret", &x), MAIL_AUTH_DISABLED);
	CHECK_INT(x.r.account_id, account_off);
	CHECK_INT(login("off@md.test", "wrong", &x), MAIL_AUTH_BAD);
	CHECK_INT(login("nopw@md.test", "", &x), MAIL_AUTH_BAD);
	CHECK_INT(login("", "secret", &x), MAIL_AUTH_BAD);
	{
		char longname[400];
		memset(longname, 'a', sizeof(longname) - 1);
		longname[sizeof(longname) - 1] = '\0';
		CHECK_INT(login(longname, "secret", &x), MAIL_AUTH_BAD);
	}
	/* no database: a temporary failure, still through the callback */
	memset(&x, 0, sizeof(x));
	CHECK_INT(mail_auth_login(loop, NULL, workers, "bob@md.test", "secret", auth_cb, &x), 0);
	run_until(&x.done, 5000);
	CHECK_INT(x.r.status, MAIL_AUTH_TEMPFAIL);
}

static enum mail_auth_status tlogin(struct mail_throttle *t, const char *user, const char *pw,
				    struct auth_res *x, uint64_t *ms_r)
{
	struct mail_auth_throttle th = { .throttle = t, .client_ip = "192.0.2.7" };
	uint64_t t0 = now_ms();

	memset(x, 0, sizeof(*x));
	CHECK_INT(mail_auth_login_throttled(loop, pool, workers, &th, user, pw, auth_cb, x), 0);
	CHECK(!x->done);
	run_until(&x->done, 10000);
	CHECK(x->done);
	*ms_r = now_ms() - t0;
	return x->r.status;
}

PN_TEST(test_logins_throttled)
{
	struct mail_throttle_settings set = {
		.node = "test",
		.auth_address = { MAIL_THROTTLE_OFF, MAIL_THROTTLE_OFF },
		.auth_account = { 1, 3 },
		.auth_tenant = { MAIL_THROTTLE_OFF, MAIL_THROTTLE_OFF },
		.auth_delay_base_ms = 300,
		.auth_delay_max_ms = 300,
	};
	struct mail_throttle *t;
	struct auth_res x;
	uint64_t ms;
	const char *error;

	/* per-node counting only (no Redis): deterministic */
	t = mail_throttle_new(loop, NULL, &set, &error);
	CHECK(t != NULL);
	if (t == NULL)
		return;
	/* first failure: at once */
	CHECK_INT(tlogin(t, "bob@md.test", "wrong", &x, &ms), MAIL_AUTH_BAD);
	CHECK_INT(x.r.delay_ms, 0);
	/* from delay_after on, even the right password waits */
	CHECK_INT(tlogin(t, "bob@md.test", "secret", &x, &ms), MAIL_AUTH_OK);
	CHECK_INT(x.r.delay_ms, 300);
	CHECK_INT(x.r.throttle_kind, MAIL_THROTTLE_AUTH_ACCOUNT);
	CHECK(ms >= 290);
	/* the success reset the account: at once again */
	CHECK_INT(tlogin(t, "bob@md.test", "wrong", &x, &ms), MAIL_AUTH_BAD);
	CHECK_INT(x.r.delay_ms, 0);
	CHECK_INT(tlogin(t, "bob@md.test", "wrong", &x, &ms), MAIL_AUTH_BAD);
	CHECK_INT(x.r.delay_ms, 300);
	CHECK(ms >= 290);
	/* the third failure starts the refusal... */
	CHECK_INT(tlogin(t, "bob@md.test", "wrong", &x, &ms), MAIL_AUTH_BAD);
	/* ...which answers without a password check, right password or not */
	CHECK_INT(tlogin(t, "bob@md.test", "secret", &x, &ms), MAIL_AUTH_THROTTLED);
	CHECK_INT(x.r.throttle_kind, MAIL_THROTTLE_AUTH_ACCOUNT);
	CHECK(x.r.retry_after_ms > 0);
	CHECK_INT(x.r.account_id, 0);
	CHECK(x.address[0] == '\0');
	CHECK_STR(mail_auth_status_name(MAIL_AUTH_THROTTLED), "throttled");
	/* another account from the same address is not concerned (address
	 * scope off), and an unknown user counts for nobody's account */
	CHECK_INT(tlogin(t, "nobody@md.test", "x", &x, &ms), MAIL_AUTH_BAD);
	CHECK_INT(tlogin(t, "off@md.test", "secret", &x, &ms), MAIL_AUTH_DISABLED);
	CHECK_INT(x.r.delay_ms, 0);
	/* no throttle: as mail_auth_login */
	CHECK_INT(tlogin(NULL, "bob@md.test", "secret", &x, &ms), MAIL_AUTH_OK);
	mail_throttle_free(&t);
}

/* ---- maildrop ---- */

struct list_res {
	bool done;
	enum store_status status;
	bool no_inbox;
	uint64_t mailbox_id;
	uint32_t uidvalidity;
	size_t count;
	struct mail_maildrop_msg msgs[8];
};

static void list_cb(void *ctx, const struct mail_maildrop_listing *l)
{
	struct list_res *x = ctx;

	x->done = true;
	x->status = l->status;
	x->no_inbox = l->no_inbox;
	x->mailbox_id = l->mailbox_id;
	x->uidvalidity = l->uidvalidity;
	x->count = l->count;
	for (size_t i = 0; i < l->count && i < 8; i++)
		x->msgs[i] = l->msgs[i];
}

struct read_res {
	bool done;
	enum store_status status;
	char data[256];
	size_t len;
	bool eof, gone;
};

static void read_cb(void *ctx, enum store_status status, const uint8_t *data, size_t len,
		    bool eof, bool gone, const char *error)
{
	struct read_res *x = ctx;

	x->done = true;
	x->status = status;
	x->eof = eof;
	x->gone = gone;
	x->len = len < sizeof(x->data) ? len : sizeof(x->data);
	if (len > 0)
		memcpy(x->data, data, x->len);
}

/* Reads uid in slices of `slice` bytes. Returns the reassembled length. */
static size_t read_all(uint32_t uid, size_t slice, char *out, size_t size)
{
	size_t have = 0;

	for (int i = 0; i < 1000; i++) {
		struct read_res x = { 0 };

		CHECK_INT(mail_maildrop_read(pool, account, inbox, uid, have, slice, read_cb, &x), 0);
		run_until(&x.done, 5000);
		CHECK_INT(x.status, STORE_OK);
		if (!x.done || x.status != STORE_OK || x.gone || have + x.len > size)
			return 0;
		memcpy(out + have, x.data, x.len);
		have += x.len;
		if (x.eof)
			return have;
		CHECK(x.len == slice);
	}
	return 0;
}

struct done_res {
	bool done;
	enum store_status status;
	uint64_t modseq;
	size_t expunged;
};

static void done_cb(void *ctx, enum store_status status, const char *error)
{
	struct done_res *x = ctx;

	x->done = true;
	x->status = status;
}

static void expunge_cb(void *ctx, enum store_status status, uint64_t modseq, size_t n,
		       const char *error)
{
	struct done_res *x = ctx;

	x->done = true;
	x->status = status;
	x->modseq = modseq;
	x->expunged = n;
}

PN_TEST(test_maildrop)
{
	struct list_res l = { 0 };
	char buf[256], uidl[MAIL_UIDL_MAX + 1];
	char sql[256];

	CHECK_INT(mail_maildrop_list(pool, account, list_cb, &l), 0);
	run_until(&l.done, 5000);
	CHECK_INT(l.status, STORE_OK);
	CHECK(!l.no_inbox);
	CHECK_INT(l.mailbox_id, inbox);
	CHECK_INT(l.count, 2);
	CHECK_INT(l.msgs[0].uid, uid1);
	CHECK_INT(l.msgs[0].size, strlen(body1));
	CHECK_INT(l.msgs[1].uid, uid2);
	mail_uidl_format(uidl, sizeof(uidl), 4294967295u, 4294967295u);
	CHECK_STR(uidl, "4294967295.4294967295");
	CHECK(l.uidvalidity > 0);

	/* slices of every size from 1 byte up give back the same bytes */
	for (size_t slice = 1; slice <= strlen(body1) + 1; slice += 7) {
		size_t n = read_all(uid1, slice, buf, sizeof(buf));
		CHECK_MEM(buf, n, body1, strlen(body1));
	}
	{
		struct read_res x = { 0 };
		CHECK_INT(mail_maildrop_read(pool, account, inbox, 999999, 0, 100, read_cb, &x), 0);
		run_until(&x.done, 5000);
		CHECK_INT(x.status, STORE_OK);
		CHECK(x.gone);
	}
	{
		struct done_res x = { 0 };
		CHECK_INT(mail_maildrop_set_seen(pool, account, inbox, uid2, done_cb, &x), 0);
		run_until(&x.done, 5000);
		CHECK_INT(x.status, STORE_OK);
		snprintf(sql, sizeof(sql), "SELECT flags FROM messages WHERE account_id = %" PRIu64
			 " AND uid = %" PRIu32, account, uid2);
		CHECK_INT(sql_int(sql) & 1, 1);
	}
	{
		struct done_res x = { 0 };
		uint32_t uids[2] = { uid1, 999999 };
		CHECK_INT(mail_maildrop_expunge(pool, account, inbox, uids, 2, expunge_cb, &x), 0);
		run_until(&x.done, 5000);
		CHECK_INT(x.status, STORE_OK);
		CHECK_INT(x.expunged, 1);
		CHECK(x.modseq > 0);
		/* again: nothing left to remove, still fine */
		memset(&x, 0, sizeof(x));
		CHECK_INT(mail_maildrop_expunge(pool, account, inbox, uids, 1, expunge_cb, &x), 0);
		run_until(&x.done, 5000);
		CHECK_INT(x.status, STORE_OK);
		CHECK_INT(x.expunged, 0);
	}
	memset(&l, 0, sizeof(l));
	CHECK_INT(mail_maildrop_list(pool, account, list_cb, &l), 0);
	run_until(&l.done, 5000);
	CHECK_INT(l.count, 1);
	/* an account without an INBOX (made up id) */
	memset(&l, 0, sizeof(l));
	CHECK_INT(mail_maildrop_list(pool, 987654321, list_cb, &l), 0);
	run_until(&l.done, 5000);
	CHECK_INT(l.status, STORE_OK);
	CHECK(l.no_inbox);
}

/* ---- RETR through the body cache ---- */

struct body_res {
	bool done;
	enum store_status status;
	bool gone, had_hold;
	char error[64];
	char data[256];
	size_t len;
};

static void body_cb(void *ctx, struct mail_maildrop_body *b)
{
	struct body_res *x = ctx;

	x->done = true;
	x->status = b->status;
	x->gone = b->gone;
	x->had_hold = b->cached != NULL;
	snprintf(x->error, sizeof(x->error), "%s", b->error);
	x->len = b->len < sizeof(x->data) ? b->len : sizeof(x->data);
	if (b->len > 0)
		memcpy(x->data, b->data, x->len);
}

static struct body_res read_body(struct store_blob_cache *cache, uint32_t uid, size_t max)
{
	struct body_res x = { 0 };

	CHECK_INT(mail_maildrop_read_body(pool, cache, account, inbox, uid, max, body_cb, &x), 0);
	CHECK(!x.done); /* never inside the call */
	run_until(&x.done, 5000);
	CHECK(x.done);
	return x;
}

/* Requests the pool has been given so far. */
static uint64_t pg_calls(void)
{
	struct store_pgpool_stats st;

	store_pgpool_get_stats(pool, &st);
	return st.requests;
}

PN_TEST(test_retr_cached)
{
	struct store_blob_cache *cache = store_blob_cache_new(1u << 20);
	struct store_blob_cache_stats st;
	struct list_res l = { 0 };
	uint8_t sha[PN_SHA256_LEN];
	uint32_t uid3;
	static const char body3[] = "Subject: three\r\n\r\ncached body\r\n..\r\n";
	const struct mail_maildrop_msg *m = NULL;
	struct store_blob_cached *hit;
	struct body_res x;
	const char *error;

	CHECK(cache != NULL);
	if (cache == NULL)
		return;
	uid3 = deliver(body3);
	CHECK(uid3 > 0);
	CHECK_INT(mail_maildrop_list(pool, account, list_cb, &l), 0);
	run_until(&l.done, 5000);
	CHECK_INT(l.status, STORE_OK);
	for (size_t i = 0; i < l.count && i < 8; i++)
		if (l.msgs[i].uid == uid3)
			m = &l.msgs[i];
	CHECK(m != NULL);
	if (m == NULL) {
		store_blob_cache_free(&cache);
		return;
	}
	/* the listing names the body by its SHA-256 */
	CHECK_INT(pn_sha256(body3, strlen(body3), sha, &error), 0);
	CHECK_MEM(m->sha256, PN_SHA256_LEN, sha, PN_SHA256_LEN);
	CHECK_INT(m->size, strlen(body3));

	/* first RETR: a miss, then the body is read whole and cached */
	CHECK(mail_maildrop_cached(cache, m) == NULL);
	x = read_body(cache, uid3, 1u << 20);
	CHECK_INT(x.status, STORE_OK);
	CHECK(!x.gone);
	CHECK(x.had_hold);
	CHECK_MEM(x.data, x.len, body3, strlen(body3));
	store_blob_cache_get_stats(cache, &st);
	CHECK_INT(st.misses, 1);
	CHECK_INT(st.hits, 0);
	CHECK_INT(st.inserts, 1);
	CHECK_INT(st.bytes, strlen(body3));

	/* second RETR: a hit, the same bytes, and no statement at all */
	{
		uint64_t before = pg_calls();
		size_t len = 0;
		const uint8_t *data;

		hit = mail_maildrop_cached(cache, m);
		CHECK(hit != NULL);
		if (hit != NULL) {
			data = store_blob_cached_data(hit, &len);
			CHECK_MEM(data, len, body3, strlen(body3));
		}
		store_blob_cache_release(cache, &hit);
		CHECK(hit == NULL);
		run_for(50);
		CHECK_INT(pg_calls(), before);
	}
	store_blob_cache_get_stats(cache, &st);
	CHECK_INT(st.hits, 1);
	CHECK_INT(st.misses, 1);

	/* a body over the caller's limit is refused, not truncated */
	x = read_body(cache, uid2, 8);
	CHECK_INT(x.status, STORE_PERMANENT);
	CHECK_STR(x.error, "message too large");
	CHECK(!x.had_hold);
	/* a message that is gone */
	x = read_body(cache, 999999, 1u << 20);
	CHECK_INT(x.status, STORE_OK);
	CHECK(x.gone);
	/* without a cache: the bytes, no hold */
	x = read_body(NULL, uid3, 1u << 20);
	CHECK_INT(x.status, STORE_OK);
	CHECK(!x.had_hold);
	CHECK_MEM(x.data, x.len, body3, strlen(body3));
	CHECK(mail_maildrop_cached(NULL, m) == NULL);
	/* a cache too small for the body (an eighth of 64 bytes): read,
	 * given, not kept */
	{
		struct store_blob_cache *tiny = store_blob_cache_new(64);

		x = read_body(tiny, uid3, 1u << 20);
		CHECK_INT(x.status, STORE_OK);
		CHECK(!x.had_hold);
		CHECK_MEM(x.data, x.len, body3, strlen(body3));
		CHECK(mail_maildrop_cached(tiny, m) == NULL);
		store_blob_cache_free(&tiny);
	}
	store_blob_cache_free(&cache);
}

/* ---- the lock ---- */

struct lock_res {
	bool done;
	enum mail_lock_status status;
	bool degraded;
};

static void lock_cb(void *ctx, enum mail_lock_status status, bool degraded)
{
	struct lock_res *x = ctx;

	x->done = true;
	x->status = status;
	x->degraded = degraded;
}

static struct store_redis *redis_client(int port)
{
	struct store_redis_settings set = { .host = redis_host, .port = port,
					    .connect_timeout_ms = 500,
					    .command_timeout_ms = 500 };
	const char *error;
	struct store_redis *r = store_redis_new(loop, &set, &error);
	uint64_t end = now_ms() + 3000;

	while (r != NULL && !store_redis_ready(r) && now_ms() < end && port == redis_port)
		pn_loop_run_once(loop, 20);
	return r;
}

struct pttl_res {
	bool done;
	long long v;
};

static void pttl_cb(void *ctx, enum store_status st, const redisReply *reply, const char *error)
{
	struct pttl_res *x = ctx;

	x->done = true;
	x->v = reply != NULL && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -99;
}

static long long pttl(struct store_redis *r, const char *key)
{
	struct pttl_res x = { 0 };
	const char *argv[] = { "PTTL", key };

	store_redis_command(r, pttl_cb, &x, 2, argv, NULL);
	run_until(&x.done, 3000);
	return x.v;
}

PN_TEST(test_lock)
{
	struct store_redis *r = redis_client(redis_port);
	uint64_t acct = (uint64_t)getpid() * 1000 + (uint64_t)(time(NULL) % 1000);
	struct lock_res a = { 0 }, b = { 0 }, c = { 0 };
	struct mail_lock *la, *lb, *lc;
	char key[STORE_RKEY_MAX];

	CHECK(r != NULL && store_redis_ready(r));
	store_rkey_account(key, sizeof(key), acct, "lock:pop3");
	la = mail_lock_acquire(loop, r, acct, "pop3", 300, lock_cb, &a);
	CHECK(la != NULL);
	CHECK(!a.done);
	run_until(&a.done, 3000);
	CHECK_INT(a.status, MAIL_LOCK_OK);
	CHECK(!a.degraded);
	CHECK(pttl(r, key) > 0);
	/* a second session is refused */
	lb = mail_lock_acquire(loop, r, acct, "pop3", 300, lock_cb, &b);
	run_until(&b.done, 3000);
	CHECK_INT(b.status, MAIL_LOCK_IN_USE);
	mail_lock_release(&lb);
	CHECK(lb == NULL);
	/* renewed well past its lease */
	run_for(800);
	CHECK(pttl(r, key) > 0);
	mail_lock_release(&la);
	run_for(100);
	CHECK_INT(pttl(r, key), -2); /* gone */
	lc = mail_lock_acquire(loop, r, acct, "pop3", 300, lock_cb, &c);
	run_until(&c.done, 3000);
	CHECK_INT(c.status, MAIL_LOCK_OK);
	mail_lock_release(&lc);
	run_for(100);
	store_redis_free(&r);
}

PN_TEST(test_lock_degraded)
{
	/* a Redis that is not there: port 1 refuses */
	struct store_redis *r = redis_client(1);
	uint64_t acct = (uint64_t)getpid() * 1000 + 999;
	struct lock_res a = { 0 }, b = { 0 }, c = { 0 };
	struct mail_lock *la, *lb, *lc;

	CHECK(r != NULL);
	run_for(100);
	la = mail_lock_acquire(loop, r, acct, "pop3", 300, lock_cb, &a);
	run_until(&a.done, 3000);
	CHECK_INT(a.status, MAIL_LOCK_OK);
	CHECK(a.degraded);
	CHECK(mail_lock_degraded(la));
	/* still exclusive on this process */
	lb = mail_lock_acquire(loop, r, acct, "pop3", 300, lock_cb, &b);
	run_until(&b.done, 3000);
	CHECK_INT(b.status, MAIL_LOCK_IN_USE);
	mail_lock_release(&lb);
	run_for(400); /* renewal ticks keep trying without trouble */
	mail_lock_release(&la);
	/* no Redis client at all */
	lc = mail_lock_acquire(loop, NULL, acct, "pop3", 300, lock_cb, &c);
	run_until(&c.done, 3000);
	CHECK_INT(c.status, MAIL_LOCK_OK);
	CHECK(c.degraded);
	mail_lock_release(&lc);
	run_for(50);
	store_redis_free(&r);
}

int pn_test_failures_;

int main(void)
{
	static const struct pn_test_case cases[] = {
		PN_TEST_CASE(test_logins),
		PN_TEST_CASE(test_logins_throttled),
		PN_TEST_CASE(test_maildrop),
		PN_TEST_CASE(test_retr_cached),
		PN_TEST_CASE(test_lock),
		PN_TEST_CASE(test_lock_degraded),
	};
	const char *base = getenv("POSTERN_PG_DSN"), *rp = getenv("POSTERN_REDIS_PORT");
	const char *error;
	int ret;

	if (base == NULL || base[0] == '\0' || rp == NULL)
		return pn_test_skip("test-maildrop", "POSTERN_PG_DSN / POSTERN_REDIS_PORT not set");
	redis_host = getenv("POSTERN_REDIS_HOST") != NULL ? getenv("POSTERN_REDIS_HOST") : "127.0.0.1";
	redis_port = atoi(rp);
	if (setup_db(base) < 0) {
		fprintf(stderr, "test-maildrop: database set-up failed\n");
		return 1;
	}
	loop = pn_loop_new(NULL, &error);
	workers = pn_workpool_new(2, 16, &error);
	pool = store_pgpool_new(loop, &(struct store_pgpool_settings){ .dsn = dsn }, &error);
	if (loop == NULL || workers == NULL || pool == NULL) {
		fprintf(stderr, "test-maildrop: %s\n", error);
		return 1;
	}
	ret = pn_test_run("test-maildrop", cases, sizeof(cases) / sizeof(cases[0]));
	store_pgpool_free(&pool);
	pn_workpool_free(&workers);
	run_for(20);
	pn_loop_free(&loop);
	teardown_db();
	return ret;
}
