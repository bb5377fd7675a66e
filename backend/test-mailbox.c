/* Tests of the mailbox operations (postern/mail-mailbox.h) on a real loop
 * against the harness' PostgreSQL (POSTERN_PG_DSN; skipped without it) and,
 * when POSTERN_REDIS_HOST is set, its Redis for the change notifications.
 * Every test case works in a fresh account (created with store-admin.h).
 * Covered: names and LIST pattern matching (pure), LIST/LSUB, STATUS,
 * SELECT/EXAMINE with \Recent claimed by exactly one session, CREATE,
 * DELETE (\Noselect with inferiors, INBOX refused), RENAME (inferiors, the
 * INBOX rule), (UN)SUBSCRIBE, APPEND (ascending UIDs, cache columns,
 * dedup), FETCH, STORE (modes, keywords, MODSEQ growth, UNCHANGEDSINCE),
 * COPY/MOVE (COPYUID), EXPUNGE/UID EXPUNGE, changes-since and each search
 * key. */
#include "postern/loop.h"
#include "postern/mail-date.h"
#include "postern/mail-mailbox.h"
#include "postern/store-admin.h"
#include "postern/store-blob.h"
#include "postern/store-blob-cache.h"
#include "postern/store-migrate.h"
#include "postern/store-pg.h"
#include "postern/store-pgpool.h"
#include "postern/store-redis-ops.h"
#include "postern/testing.h"
#include "postern/workpool.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *dsn;
static struct pn_loop *loop;
static struct store_pgpool *pool;
static struct store_redis *redis;
static struct mail_mbox_store *st;
static PGconn *sync_conn;
static char domain[64];
static unsigned int account_seq;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool run_until(const bool *flag)
{
	uint64_t end = now_ms() + 5000;

	while (!*flag && now_ms() < end)
		pn_loop_run_once(loop, 20);
	return *flag;
}

/* ---- one result record for every callback ---- */

#define MAXN 64

struct res {
	bool done;
	enum mail_mbox_result r;
	uint64_t id;
	char error[256];
	/* list */
	size_t n;
	char names[MAXN][128];
	bool noselect[MAXN], children[MAXN], subscribed[MAXN];
	char special[MAXN][16];
	/* status / select / append / changes */
	struct mail_mbox_status status;
	uint32_t uidvalidity, uid, uidnext, recent, recent_after, unseen, first_unseen;
	uint64_t modseq;
	uint32_t uids[MAXN], uids2[MAXN];
	size_t count, count2, count3;
	char keywords[512];
	/* fetch / store / changes: per message */
	unsigned int flags[MAXN];
	uint64_t modseqs[MAXN];
	bool updated[MAXN];
	char kw[MAXN][128];
	time_t idate[MAXN];
	int idate_tz[MAXN];
	char name[256];
	uint64_t size[MAXN];
	char envelope[MAXN][512];
	char bodystructure[MAXN][512];
	uint8_t *data[MAXN];
	size_t data_len[MAXN];
};

static struct res *res_new(void)
{
	return calloc(1, sizeof(struct res));
}

static void res_free(struct res *r)
{
	for (size_t i = 0; i < MAXN; i++)
		free(r->data[i]);
	free(r);
}

static void join_kw(char *out, size_t size, const char *const *kw, size_t n)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n && o < size; i++)
		o += (size_t)snprintf(out + o, size - o, "%s%s", i > 0 ? " " : "", kw[i]);
}

static void done_cb(void *ctx, enum mail_mbox_result r, uint64_t id, const char *error)
{
	struct res *x = ctx;

	x->done = true;
	x->r = r;
	x->id = id;
	snprintf(x->error, sizeof(x->error), "%s", error);
}

static void list_cb(void *ctx, enum mail_mbox_result r, const struct mail_mbox_info *b,
		    size_t n, const char *error)
{
	struct res *x = ctx;

	x->done = true;
	x->r = r;
	snprintf(x->error, sizeof(x->error), "%s", error);
	for (size_t i = 0; i < n && i < MAXN; i++) {
		snprintf(x->names[i], sizeof(x->names[i]), "%s", b[i].name);
		x->noselect[i] = b[i].noselect;
		x->children[i] = b[i].has_children;
		x->subscribed[i] = b[i].subscribed;
		snprintf(x->special[i], sizeof(x->special[i]), "%s",
			 b[i].special_use != NULL ? b[i].special_use : "");
	}
	x->n = n;
}

static void status_cb(void *ctx, enum mail_mbox_result r, const struct mail_mbox_status *s,
		      const char *error)
{
	struct res *x = ctx;

	x->done = true;
	x->r = r;
	snprintf(x->error, sizeof(x->error), "%s", error);
	if (s != NULL)
		x->status = *s;
}

static void select_cb(void *ctx, enum mail_mbox_result r, const struct mail_mbox_selected *s,
		      const char *error)
{
	struct res *x = ctx;

	x->done = true;
	x->r = r;
	snprintf(x->error, sizeof(x->error), "%s", error);
	if (s == NULL)
		return;
	x->id = s->id;
	x->uidvalidity = s->uidvalidity;
	x->uidnext = s->uidnext;
	x->modseq = s->highestmodseq;
	x->recent = s->recent;
	x->recent_after = s->recent_after;
	x->unseen = s->unseen;
	x->first_unseen = s->first_unseen_uid;
	x->count = s->count;
	for (size_t i = 0; i < s->count && i < MAXN; i++)
		x->uids[i] = s->uids[i];
	join_kw(x->keywords, sizeof(x->keywords), s->keywords, s->keyword_count);
}

static void append_cb(void *ctx, enum mail_mbox_result r, uint64_t mailbox_id,
		      uint32_t uidvalidity, uint32_t uid, uint64_t modseq, const char *error)
{
	struct res *x = ctx;

	x->done = true;
	x->r = r;
	x->id = mailbox_id;
	x->uidvalidity = uidvalidity;
	x->uid = uid;
	x->modseq = modseq;
	snprintf(x->error, sizeof(x->error), "%s", error);
}

static void msg_cb(void *ctx, const struct mail_mbox_msg *m)
{
	struct res *x = ctx;
	size_t i = x->count;

	if (i >= MAXN)
		return;
	x->uids[i] = m->uid;
	x->modseqs[i] = m->modseq;
	x->flags[i] = m->flags;
	join_kw(x->kw[i], sizeof(x->kw[i]), m->keywords, m->keyword_count);
	x->idate[i] = m->internaldate;
	x->idate_tz[i] = m->internaldate_tz;
	x->size[i] = m->size;
	snprintf(x->envelope[i], sizeof(x->envelope[i]), "%s", m->envelope ? m->envelope : "");
	snprintf(x->bodystructure[i], sizeof(x->bodystructure[i]), "%s",
		 m->bodystructure ? m->bodystructure : "");
	if (m->data != NULL) {
		x->data[i] = malloc(m->data_len + 1);
		memcpy(x->data[i], m->data, m->data_len);
		x->data_len[i] = m->data_len;
	}
	x->count++;
}

static void store_cb(void *ctx, enum mail_mbox_result r, const struct mail_mbox_stored *m,
		     size_t n, const char *error)
{
	struct res *x = ctx;

	x->done = true;
	x->r = r;
	snprintf(x->error, sizeof(x->error), "%s", error);
	for (size_t i = 0; i < n && i < MAXN; i++) {
		x->uids[i] = m[i].uid;
		x->modseqs[i] = m[i].modseq;
		x->flags[i] = m[i].flags;
		x->updated[i] = m[i].updated;
		join_kw(x->kw[i], sizeof(x->kw[i]), m[i].keywords, m[i].keyword_count);
	}
	x->count = n;
}

static void copy_cb(void *ctx, enum mail_mbox_result r, uint32_t uidvalidity,
		    const uint32_t *src, const uint32_t *dst, size_t n, const char *error)
{
	struct res *x = ctx;

	x->done = true;
	x->r = r;
	x->uidvalidity = uidvalidity;
	snprintf(x->error, sizeof(x->error), "%s", error);
	for (size_t i = 0; i < n && i < MAXN; i++) {
		x->uids[i] = src[i];
		x->uids2[i] = dst[i];
	}
	x->count = n;
}

static void expunge_cb(void *ctx, enum mail_mbox_result r, const uint32_t *uids, size_t n,
		       uint64_t modseq, const char *error)
{
	struct res *x = ctx;

	x->done = true;
	x->r = r;
	x->modseq = modseq;
	snprintf(x->error, sizeof(x->error), "%s", error);
	for (size_t i = 0; i < n && i < MAXN; i++)
		x->uids[i] = uids[i];
	x->count = n;
}

static void changes_cb(void *ctx, enum mail_mbox_result r, const struct mail_mbox_changes *c,
		       const char *error)
{
	struct res *x = ctx;

	x->done = true;
	x->r = r;
	snprintf(x->error, sizeof(x->error), "%s", error);
	if (c == NULL)
		return;
	snprintf(x->name, sizeof(x->name), "%s", c->name);
	x->uidvalidity = c->uidvalidity;
	x->uidnext = c->uidnext;
	x->modseq = c->highestmodseq;
	x->recent_after = c->recent_after;
	x->count = c->expunged_count;
	for (size_t i = 0; i < c->expunged_count && i < MAXN; i++)
		x->uids[i] = c->expunged[i];
	x->count2 = c->changed_count;
	for (size_t i = 0; i < c->changed_count && i < MAXN; i++) {
		x->uids2[i] = c->changed[i].uid;
		x->flags[i] = c->changed[i].flags;
		join_kw(x->kw[i], sizeof(x->kw[i]), c->changed[i].keywords,
			c->changed[i].keyword_count);
	}
	x->count3 = c->added_count;
	for (size_t i = 0; i < c->added_count && i < MAXN; i++) {
		x->modseqs[i] = c->added[i].uid; /* the added UIDs */
		x->updated[i] = c->added[i].uid > c->recent_after;
	}
}

static void search_cb(void *ctx, enum mail_mbox_result r, const uint32_t *uids, size_t n,
		      const char *error)
{
	struct res *x = ctx;

	x->done = true;
	x->r = r;
	snprintf(x->error, sizeof(x->error), "%s", error);
	for (size_t i = 0; i < n && i < MAXN; i++)
		x->uids[i] = uids[i];
	x->count = n;
}

/* ---- fixtures ---- */

static uint64_t new_account_quota(int64_t quota_messages)
{
	char addr[128];
	const char *error;
	struct store_user_params p = { .password_hash = "{PLAIN}secret",
				       .quota_bytes = -1, .quota_messages = quota_messages };
	PGresult *res;
	const char *vals[1] = { addr };
	uint64_t id = 0;

	snprintf(addr, sizeof(addr), "user%u@%s", ++account_seq, domain);
	if (store_user_add(sync_conn, addr, &p, &error) < 0) {
		fprintf(stderr, "user add: %s\n", error);
		return 0;
	}
	res = store_pg_exec(sync_conn, "SELECT id FROM accounts WHERE address = $1", 1, vals,
			    &error);
	if (res != NULL && PQntuples(res) == 1)
		id = (uint64_t)store_pg_int(res, 0, 0);
	PQclear(res);
	return id;
}

static uint64_t new_account(void)
{
	return new_account_quota(-1);
}

/* ---- call wrappers (run the loop until the callback) ---- */

static struct res *do_list(uint64_t acc, const char *ref, const char *pat, bool lsub)
{
	struct res *x = res_new();

	CHECK(mail_mbox_list(st, acc, ref, pat, lsub, list_cb, x) == 0);
	CHECK(run_until(&x->done));
	return x;
}

static bool list_has(const struct res *x, const char *name, int noselect, int children)
{
	for (size_t i = 0; i < x->n; i++) {
		if (strcmp(x->names[i], name) != 0)
			continue;
		if (noselect >= 0 && x->noselect[i] != (noselect != 0))
			return false;
		if (children >= 0 && x->children[i] != (children != 0))
			return false;
		return true;
	}
	return false;
}

static enum mail_mbox_result do_simple(int what, uint64_t acc, const char *a, const char *b,
				       uint64_t *id_r)
{
	struct res *x = res_new();
	enum mail_mbox_result r;
	int rc = -1;

	switch (what) {
	case 'c': rc = mail_mbox_create(st, acc, a, done_cb, x); break;
	case 'd': rc = mail_mbox_delete(st, acc, a, done_cb, x); break;
	case 'r': rc = mail_mbox_rename(st, acc, a, b, done_cb, x); break;
	case 's': rc = mail_mbox_subscribe(st, acc, a, true, done_cb, x); break;
	case 'u': rc = mail_mbox_subscribe(st, acc, a, false, done_cb, x); break;
	}
	CHECK(rc == 0);
	CHECK(run_until(&x->done));
	r = x->r;
	if (id_r != NULL)
		*id_r = x->id;
	res_free(x);
	return r;
}

static struct res *do_select(uint64_t acc, const char *name, bool claim)
{
	struct res *x = res_new();

	CHECK(mail_mbox_select(st, acc, name, claim, select_cb, x) == 0);
	CHECK(run_until(&x->done));
	return x;
}

static struct res *do_status(uint64_t acc, const char *name)
{
	struct res *x = res_new();

	CHECK(mail_mbox_status(st, acc, name, status_cb, x) == 0);
	CHECK(run_until(&x->done));
	return x;
}

static uint32_t do_append(uint64_t acc, const char *mbox, const char *msg, unsigned int flags,
			  const char *kw, time_t date, uint32_t *uidvalidity_r)
{
	struct res *x = res_new();
	const char *kws[1] = { kw };
	struct mail_mbox_append a = {
		.mailbox = mbox, .data = (const uint8_t *)msg, .len = strlen(msg),
		.flags = flags, .keywords = kws, .keyword_count = kw != NULL ? 1 : 0,
		.has_date = date != 0, .date = date,
	};
	uint32_t uid = 0;

	CHECK(mail_mbox_append(st, acc, &a, append_cb, x) == 0);
	CHECK(run_until(&x->done));
	if (x->r != MAIL_MBOX_OK)
		fprintf(stderr, "append: %s %s\n", mail_mbox_result_name(x->r), x->error);
	else
		uid = x->uid;
	if (uidvalidity_r != NULL)
		*uidvalidity_r = x->uidvalidity;
	res_free(x);
	return uid;
}

static struct res *do_fetch(uint64_t acc, uint64_t mb, const struct mail_uidset *set, bool body)
{
	struct res *x = res_new();

	CHECK(mail_mbox_fetch(st, acc, mb, set, body ? MAIL_FETCH_BODY : 0, msg_cb, done_cb,
			      x) == 0);
	CHECK(run_until(&x->done));
	return x;
}

static struct res *do_store(uint64_t acc, uint64_t mb, const struct mail_uidset *set,
			    enum mail_store_mode mode, unsigned int flags, const char *kw,
			    uint64_t since)
{
	struct res *x = res_new();
	const char *kws[1] = { kw };
	struct mail_mbox_store_req q = {
		.uids = set, .mode = mode, .flags = flags, .keywords = kws,
		.keyword_count = kw != NULL ? 1 : 0, .unchangedsince = since,
	};

	CHECK(mail_mbox_store_flags(st, acc, mb, &q, store_cb, x) == 0);
	CHECK(run_until(&x->done));
	return x;
}

static struct res *do_changes(uint64_t acc, uint64_t mb, uint64_t since, uint32_t known,
			      bool claim)
{
	struct res *x = res_new();

	CHECK(mail_mbox_changes(st, acc, mb, since, known, claim, changes_cb, x) == 0);
	CHECK(run_until(&x->done));
	return x;
}

static struct res *do_search(uint64_t acc, uint64_t mb, const struct mail_search_node *tree)
{
	struct res *x = res_new();

	CHECK(mail_mbox_search(st, acc, mb, tree, search_cb, x) == 0);
	CHECK(run_until(&x->done));
	if (x->r != MAIL_MBOX_OK)
		fprintf(stderr, "search: %s\n", x->error);
	return x;
}

/* ---- messages ---- */

static const char msg1[] =
	"From: Alice Example <alice@example.org>\r\n"
	"To: Bob <bob@example.net>\r\n"
	"Subject: Hello world\r\n"
	"Date: Fri, 05 Jan 2024 23:30:00 -0500\r\n"
	"Message-ID: <m1@example.org>\r\n"
	"X-Tag: alpha\r\n"
	"\r\n"
	"This is the first message.\r\n";

static const char msg2[] =
	"From: Carol <carol@example.com>\r\n"
	"To: bob@example.net\r\n"
	"Cc: Dave <dave@example.com>\r\n"
	"Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgV2llbg==?=\r\n"
	"Date: Sat, 10 Feb 2024 12:00:00 +0100\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"U2VjcmV0IGJhbmFuYSByZWNpcGU=\r\n";

static const char msg3[] =
	"From: Eve <eve@example.com>\r\n"
	"To: bob@example.net\r\n"
	"Bcc: hidden@example.com\r\n"
	"Subject: no date here\r\n"
	"\r\n"
	"Padding padding padding padding padding padding padding padding padding.\r\n"
	"Padding padding padding padding padding padding padding padding padding.\r\n"
	"Padding padding padding padding padding padding padding padding padding.\r\n";

static time_t d1, d2, d3;

/* Three messages in INBOX: UIDs 1..3. Returns the INBOX id. */
static uint64_t fill_inbox(uint64_t acc)
{
	struct res *s;
	uint64_t id;

	CHECK_INT(do_append(acc, "INBOX", msg1, 0, NULL, d1, NULL), 1);
	CHECK_INT(do_append(acc, "inbox", msg2, MAIL_FLAG_FLAGGED, "$Work", d2, NULL), 2);
	CHECK_INT(do_append(acc, "INBOX", msg3, MAIL_FLAG_SEEN, NULL, d3, NULL), 3);
	s = do_status(acc, "INBOX");
	id = s->status.id;
	res_free(s);
	return id;
}

/* ---- tests ---- */

PN_TEST(test_names)
{
	char out[MAIL_MBOX_NAME_MAX + 1];

	CHECK(mail_mbox_name_normalize("inbox", out, sizeof(out)) == 0);
	CHECK_STR(out, "INBOX");
	CHECK(mail_mbox_name_normalize("Inbox/Sub", out, sizeof(out)) == 0);
	CHECK_STR(out, "INBOX/Sub");
	CHECK(mail_mbox_name_normalize("InboxX", out, sizeof(out)) == 0);
	CHECK_STR(out, "InboxX");
	CHECK(mail_mbox_name_normalize("foo/", out, sizeof(out)) == 0);
	CHECK_STR(out, "foo");
	CHECK(mail_mbox_name_normalize("", out, sizeof(out)) < 0);
	CHECK(mail_mbox_name_normalize("/foo", out, sizeof(out)) < 0);
	CHECK(mail_mbox_name_normalize("a//b", out, sizeof(out)) < 0);
	CHECK(mail_mbox_name_normalize("a//", out, sizeof(out)) < 0);
	CHECK(mail_mbox_name_normalize("/", out, sizeof(out)) < 0);
	CHECK(mail_mbox_name_normalize("a*", out, sizeof(out)) < 0);
	CHECK(mail_mbox_name_normalize("a%b", out, sizeof(out)) < 0);
	CHECK(mail_mbox_name_normalize("a\tb", out, sizeof(out)) < 0);
	CHECK(mail_mbox_name_normalize("caf\xc3\xa9", out, sizeof(out)) < 0);
	CHECK(mail_flag_bit("\\seen") == MAIL_FLAG_SEEN);
	CHECK(mail_flag_bit("\\Draft") == MAIL_FLAG_DRAFT);
	CHECK(mail_flag_bit("\\Recent") == 0);
	CHECK(mail_flag_bit("$Junk") == 0);
	CHECK_STR(mail_flag_name(MAIL_FLAG_DELETED), "\\Deleted");
	CHECK(mail_keyword_valid("$Label1"));
	CHECK(!mail_keyword_valid("\\Seen"));
	CHECK(!mail_keyword_valid("a b"));
	CHECK(!mail_keyword_valid("a]"));
	CHECK(!mail_keyword_valid(""));
}

PN_TEST(test_list_patterns)
{
	static const struct {
		const char *pattern, *name;
		bool match;
	} t[] = {
		{ "*", "INBOX", true },
		{ "*", "a/b/c", true },
		{ "%", "a", true },
		{ "%", "a/b", false },
		{ "a/%", "a/b", true },
		{ "a/%", "a/b/c", false },
		{ "a/*", "a/b/c", true },
		{ "a/*", "a", false },
		{ "a*", "a", true },
		{ "a*", "abc/d", true },
		{ "a%", "abc/d", false },
		{ "%/%", "a/b", true },
		{ "%/%", "a/b/c", false },
		{ "*/c", "a/b/c", true },
		{ "%/c", "a/b/c", false },
		{ "inbox", "INBOX", true },
		{ "InBoX/%", "INBOX/x", true },
		{ "inbox/X", "INBOX/x", false },
		{ "in%", "INBOX", true },
		{ "in%", "inside", true },
		{ "In%", "inside", false },
		{ "Work", "work", false },
		{ "W%k", "Work", true },
		{ "W%k", "W/ork", false },
		{ "W*k", "W/ork", true },
		{ "**%%", "abc", true },
		{ "%*%", "a/b", true },
		{ "", "a", false },
		{ "a", "ab", false },
		{ "ab", "a", false },
	};
	char out[64];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (mail_mbox_list_match(t[i].pattern, t[i].name) != t[i].match) {
			fprintf(stderr, "pattern %s name %s: expected %d\n", t[i].pattern,
				t[i].name, t[i].match);
			CHECK(0);
		}
	}
	CHECK(mail_mbox_list_canonical("Work/", "%", out, sizeof(out)) == 0);
	CHECK_STR(out, "Work/%");
	CHECK(mail_mbox_list_canonical("Work/", "/abs", out, sizeof(out)) == 0);
	CHECK_STR(out, "/abs");
	CHECK(mail_mbox_list_canonical("", "x*", out, sizeof(out)) == 0);
	CHECK_STR(out, "x*");
	CHECK(mail_mbox_list_canonical("0123456789", "0123456789012345678901234567890123456789"
				       "0123456789012345", out, sizeof(out)) < 0);
}

PN_TEST(test_list)
{
	uint64_t acc = new_account();
	struct res *x;

	CHECK(acc != 0);
	CHECK_INT(do_simple('c', acc, "Work/Projects/Alpha", NULL, NULL), MAIL_MBOX_OK);
	CHECK_INT(do_simple('c', acc, "Work/Projects/Alpha", NULL, NULL),
		  MAIL_MBOX_ALREADYEXISTS);
	CHECK_INT(do_simple('c', acc, "inbox", NULL, NULL), MAIL_MBOX_ALREADYEXISTS);
	CHECK_INT(do_simple('c', acc, "Zeta/", NULL, NULL), MAIL_MBOX_OK);
	CHECK(mail_mbox_create(st, acc, "bad*name", done_cb, NULL) < 0 && errno == EINVAL);

	x = do_list(acc, "", "*", false);
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->n, 10);    /* 6 standard + Work, Work/Projects, .../Alpha, Zeta */
	CHECK_STR(x->names[0], "Archive");
	CHECK(list_has(x, "Work", 0, 1));
	CHECK(list_has(x, "Work/Projects", 0, 1));
	CHECK(list_has(x, "Work/Projects/Alpha", 0, 0));
	CHECK(list_has(x, "Zeta", 0, 0));
	CHECK(list_has(x, "INBOX", 0, 0));
	for (size_t i = 0; i < x->n; i++) {
		if (strcmp(x->names[i], "Sent") == 0)
			CHECK_STR(x->special[i], "\\Sent");
		if (strcmp(x->names[i], "INBOX") == 0)
			CHECK_STR(x->special[i], "");
	}
	res_free(x);

	x = do_list(acc, "", "%", false);
	CHECK_INT(x->n, 8);
	CHECK(!list_has(x, "Work/Projects", -1, -1));
	res_free(x);

	x = do_list(acc, "Work/", "%", false);
	CHECK_INT(x->n, 1);
	CHECK_STR(x->names[0], "Work/Projects");
	res_free(x);

	x = do_list(acc, "Work/", "*", false);
	CHECK_INT(x->n, 2);
	res_free(x);

	x = do_list(acc, "", "work/*", false);
	CHECK_INT(x->n, 0);
	res_free(x);

	x = do_list(acc, "", "InBoX", false);
	CHECK_INT(x->n, 1);
	CHECK_STR(x->names[0], "INBOX");
	res_free(x);

	x = do_list(acc, "Work/", "/Work", false);  /* absolute: no leading '/' names */
	CHECK_INT(x->n, 0);
	res_free(x);

	x = do_list(acc, "", "", false);
	CHECK_INT(x->n, 1);
	CHECK_STR(x->names[0], "");
	CHECK(x->noselect[0]);
	res_free(x);

	/* LSUB: standard mailboxes are subscribed, CREATEd ones are not */
	CHECK_INT(do_simple('s', acc, "Work/Projects/Alpha", NULL, NULL), MAIL_MBOX_OK);
	CHECK_INT(do_simple('s', acc, "Nope", NULL, NULL), MAIL_MBOX_NONEXISTENT);
	x = do_list(acc, "", "*", true);
	CHECK_INT(x->n, 9);   /* 6 + Alpha + the two superiors as \Noselect */
	CHECK(list_has(x, "Work/Projects/Alpha", 0, 0));
	CHECK(list_has(x, "Work", 1, 1));
	res_free(x);
	x = do_list(acc, "", "%", true);
	CHECK_INT(x->n, 7);
	CHECK(list_has(x, "Work", 1, 1));
	CHECK(!list_has(x, "Zeta", -1, -1));
	res_free(x);
	CHECK_INT(do_simple('u', acc, "Work/Projects/Alpha", NULL, NULL), MAIL_MBOX_OK);
	CHECK_INT(do_simple('u', acc, "Sent", NULL, NULL), MAIL_MBOX_OK);
	x = do_list(acc, "", "*", true);
	CHECK_INT(x->n, 5);
	CHECK(!list_has(x, "Sent", -1, -1));
	res_free(x);

	/* deep subscribed name with no subscribed superiors */
	CHECK_INT(do_simple('c', acc, "D1/D2/D3/D4/D5", NULL, NULL), MAIL_MBOX_OK);
	CHECK_INT(do_simple('s', acc, "D1/D2/D3/D4/D5", NULL, NULL), MAIL_MBOX_OK);
	x = do_list(acc, "", "D1*", true);
	CHECK_INT(x->n, 5);
	CHECK(list_has(x, "D1/D2/D3/D4", 1, 1));
	CHECK(list_has(x, "D1/D2/D3/D4/D5", 0, 0));
	res_free(x);

	/* "Work-x" sorts between "Work" and "Work/..." in byte order */
	CHECK_INT(do_simple('c', acc, "Work-x", NULL, NULL), MAIL_MBOX_OK);
	CHECK_INT(do_simple('c', acc, "Work-x/y", NULL, NULL), MAIL_MBOX_OK);
	x = do_list(acc, "", "Work*", false);
	CHECK_INT(x->n, 5);
	CHECK(list_has(x, "Work", 0, 1));
	CHECK(list_has(x, "Work-x", 0, 1));
	CHECK(list_has(x, "Work-x/y", 0, 0));
	res_free(x);
}

PN_TEST(test_append_fetch_status)
{
	uint64_t acc = new_account(), inbox;
	uint32_t v1 = 0, v2 = 0;
	struct res *x;
	struct mail_uid_range all = { 1, UINT32_MAX }, two = { 2, 2 };
	struct mail_uidset set = { &all, 1 }, set2 = { &two, 1 };

	CHECK(acc != 0);
	inbox = fill_inbox(acc);
	CHECK(inbox != 0);
	/* same body again: deduplicated blob, new UID */
	CHECK_INT(do_append(acc, "INBOX", msg1, 0, NULL, d1, &v1), 4);
	CHECK_INT(do_append(acc, "Archive", msg1, 0, NULL, d1, &v2), 1);
	CHECK(v1 != 0 && v2 != 0 && v1 != v2);
	CHECK_INT(do_append(acc, "Nowhere", msg1, 0, NULL, d1, NULL), 0);
	{
		const char *vals[1] = { "m1@example.org" };
		const char *error;
		PGresult *r = store_pg_exec(sync_conn, "SELECT refcount FROM mail_blobs b"
					    " WHERE b.sha256 = (SELECT blob_sha256 FROM messages"
					    " WHERE message_id = '<' || $1 || '>' LIMIT 1)",
					    1, vals, &error);

		CHECK(r != NULL && PQntuples(r) == 1 && store_pg_int(r, 0, 0) >= 3);
		PQclear(r);
	}

	x = do_status(acc, "inbox");
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->status.messages, 4);
	CHECK_INT(x->status.recent, 4);
	CHECK_INT(x->status.unseen, 3);
	CHECK_INT(x->status.uidnext, 5);
	CHECK_INT(x->status.uidvalidity, v1);
	CHECK_INT(x->status.size, 2 * strlen(msg1) + strlen(msg2) + strlen(msg3));
	CHECK(x->status.highestmodseq >= 5);
	res_free(x);
	x = do_status(acc, "Nowhere");
	CHECK_INT(x->r, MAIL_MBOX_NONEXISTENT);
	res_free(x);

	x = do_fetch(acc, inbox, &set, true);
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->count, 4);
	CHECK_INT(x->uids[0], 1);
	CHECK_INT(x->uids[3], 4);
	CHECK(x->modseqs[0] < x->modseqs[1] && x->modseqs[1] < x->modseqs[2]);
	CHECK_MEM(x->data[0], x->data_len[0], msg1, strlen(msg1));
	CHECK_MEM(x->data[1], x->data_len[1], msg2, strlen(msg2));
	CHECK_MEM(x->data[3], x->data_len[3], msg1, strlen(msg1));
	CHECK_INT(x->size[2], strlen(msg3));
	CHECK_INT(x->idate[0], d1);
	CHECK_INT(x->flags[1], MAIL_FLAG_FLAGGED);
	CHECK_STR(x->kw[1], "$Work");
	CHECK_INT(x->flags[2], MAIL_FLAG_SEEN);
	CHECK(strstr(x->envelope[0], "\"Hello world\"") != NULL);
	CHECK(strstr(x->envelope[0], "\"alice\" \"example.org\"") != NULL);
	CHECK(strncmp(x->bodystructure[0], "(\"text\" \"plain\"", 15) == 0);
	CHECK(strstr(x->bodystructure[1], "\"base64\"") != NULL);
	res_free(x);

	/* a small chunk size makes the scan go over several queries */
	x = do_fetch(acc, inbox, &set2, false);
	CHECK_INT(x->count, 1);
	CHECK_INT(x->uids[0], 2);
	CHECK(x->data[0] == NULL);
	res_free(x);
	{
		struct mail_uidset empty = { NULL, 0 };

		x = do_fetch(acc, inbox, &empty, false);
		CHECK_INT(x->r, MAIL_MBOX_OK);
		CHECK_INT(x->count, 0);
		res_free(x);
	}
	{
		struct mail_uid_range bad[2] = { { 5, 6 }, { 1, 2 } };
		struct mail_uidset badset = { bad, 2 };

		CHECK(mail_mbox_fetch(st, acc, inbox, &badset, 0, msg_cb, done_cb, NULL) < 0);
	}
}

PN_TEST(test_select_recent)
{
	uint64_t acc = new_account(), inbox;
	struct res *a, *b, *e, *c;
	uint32_t uid;

	CHECK(acc != 0);
	inbox = fill_inbox(acc);
	e = do_select(acc, "INBOX", false);       /* EXAMINE claims nothing */
	CHECK_INT(e->r, MAIL_MBOX_OK);
	CHECK_INT(e->recent, 3);
	res_free(e);
	a = do_select(acc, "INBOX", true);
	CHECK_INT(a->r, MAIL_MBOX_OK);
	CHECK_INT(a->id, inbox);
	CHECK_INT(a->count, 3);
	CHECK_INT(a->uids[0], 1);
	CHECK_INT(a->uids[2], 3);
	CHECK_INT(a->recent, 3);
	CHECK_INT(a->recent_after, 0);
	CHECK_INT(a->uidnext, 4);
	CHECK_INT(a->unseen, 2);
	CHECK_INT(a->first_unseen, 1);
	CHECK_STR(a->keywords, "$Work");
	b = do_select(acc, "INBOX", true);
	CHECK_INT(b->recent, 0);
	CHECK_INT(b->recent_after, 3);
	CHECK_INT(b->count, 3);
	e = do_status(acc, "INBOX");
	CHECK_INT(e->status.recent, 0);
	res_free(e);

	/* a new message: the first session to poll with claim owns it */
	uid = do_append(acc, "INBOX", msg2, 0, NULL, d2, NULL);
	CHECK_INT(uid, 4);
	c = do_changes(acc, inbox, b->modseq, b->uidnext, true);
	CHECK_INT(c->r, MAIL_MBOX_OK);
	CHECK_INT(c->count3, 1);
	CHECK_INT(c->modseqs[0], 4);
	CHECK(c->updated[0]);             /* recent for b */
	res_free(c);
	c = do_changes(acc, inbox, a->modseq, a->uidnext, true);
	CHECK_INT(c->count3, 1);
	CHECK(!c->updated[0]);            /* not for a */
	res_free(c);
	res_free(a);
	res_free(b);

	CHECK_INT(do_simple('c', acc, "P/Q", NULL, NULL), MAIL_MBOX_OK);
	CHECK_INT(do_simple('d', acc, "P", NULL, NULL), MAIL_MBOX_OK);
	a = do_select(acc, "P", true);
	CHECK_INT(a->r, MAIL_MBOX_CANNOT);
	res_free(a);
	a = do_select(acc, "Nope", true);
	CHECK_INT(a->r, MAIL_MBOX_NONEXISTENT);
	res_free(a);
}

PN_TEST(test_store)
{
	uint64_t acc = new_account(), inbox;
	struct mail_uid_range r12 = { 1, 2 }, r3 = { 3, 3 };
	struct mail_uidset s12 = { &r12, 1 }, s3 = { &r3, 1 };
	struct res *x, *y;
	uint64_t m0;

	CHECK(acc != 0);
	inbox = fill_inbox(acc);
	x = do_select(acc, "INBOX", false);
	m0 = x->modseq;
	res_free(x);

	x = do_store(acc, inbox, &s12, MAIL_STORE_ADD, MAIL_FLAG_SEEN, "$Label1", 0);
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->count, 2);
	CHECK_INT(x->uids[0], 1);
	CHECK_INT(x->flags[0], MAIL_FLAG_SEEN);
	CHECK_INT(x->flags[1], MAIL_FLAG_SEEN | MAIL_FLAG_FLAGGED);
	CHECK_STR(x->kw[0], "$Label1");
	CHECK_STR(x->kw[1], "$Work $Label1");
	CHECK(x->modseqs[0] > m0 && x->modseqs[0] == x->modseqs[1]);
	CHECK(x->updated[0] && x->updated[1]);

	/* no change: nothing reported, no new MODSEQ */
	y = do_store(acc, inbox, &s12, MAIL_STORE_ADD, MAIL_FLAG_SEEN, NULL, 0);
	CHECK_INT(y->count, 0);
	res_free(y);

	y = do_store(acc, inbox, &s12, MAIL_STORE_REMOVE, MAIL_FLAG_FLAGGED, "$work", 0);
	CHECK_INT(y->count, 1);
	CHECK_INT(y->uids[0], 2);
	CHECK_INT(y->flags[0], MAIL_FLAG_SEEN);
	CHECK_STR(y->kw[0], "$Label1");
	CHECK(y->modseqs[0] > x->modseqs[0]);
	res_free(y);

	y = do_store(acc, inbox, &s3, MAIL_STORE_REPLACE, MAIL_FLAG_DRAFT | MAIL_FLAG_ANSWERED,
		     "Custom", 0);
	CHECK_INT(y->count, 1);
	CHECK_INT(y->flags[0], MAIL_FLAG_DRAFT | MAIL_FLAG_ANSWERED);
	CHECK_STR(y->kw[0], "Custom");
	res_free(y);

	/* UNCHANGEDSINCE older than the messages' MODSEQ: refused (MODIFIED) */
	y = do_store(acc, inbox, &s12, MAIL_STORE_ADD, MAIL_FLAG_DELETED, NULL, m0);
	CHECK_INT(y->count, 2);
	CHECK(!y->updated[0] && !y->updated[1]);
	res_free(y);
	y = do_store(acc, inbox, &s12, MAIL_STORE_ADD, MAIL_FLAG_DELETED, NULL, x->modseqs[0] + 100);
	CHECK_INT(y->count, 2);
	CHECK(y->updated[0] && y->updated[1]);
	res_free(y);
	res_free(x);

	{
		const char *kws[1] = { "bad kw" };
		struct mail_mbox_store_req q = { .uids = &s3, .mode = MAIL_STORE_ADD,
						 .keywords = kws, .keyword_count = 1 };

		CHECK(mail_mbox_store_flags(st, acc, inbox, &q, store_cb, NULL) < 0);
	}
}

PN_TEST(test_copy_move_expunge)
{
	uint64_t acc = new_account(), inbox, archive = 0;
	struct mail_uid_range r12 = { 1, 2 }, r3 = { 3, 3 }, r1 = { 1, 1 }, all = { 1, 100 };
	struct mail_uidset s12 = { &r12, 1 }, s3 = { &r3, 1 }, s1 = { &r1, 1 }, sall = { &all, 1 };
	struct res *x, *y;
	uint32_t av = 0;

	CHECK(acc != 0);
	inbox = fill_inbox(acc);
	CHECK_INT(do_append(acc, "Archive", msg3, 0, NULL, d3, &av), 1);

	x = res_new();
	CHECK(mail_mbox_copy(st, acc, inbox, &s12, "Archive", false, copy_cb, x) == 0);
	CHECK(run_until(&x->done));
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->uidvalidity, av);
	CHECK_INT(x->count, 2);
	CHECK_INT(x->uids[0], 1);
	CHECK_INT(x->uids2[0], 2);
	CHECK_INT(x->uids[1], 2);
	CHECK_INT(x->uids2[1], 3);
	res_free(x);

	x = res_new();
	CHECK(mail_mbox_copy(st, acc, inbox, &s12, "Missing", false, copy_cb, x) == 0);
	CHECK(run_until(&x->done));
	CHECK_INT(x->r, MAIL_MBOX_NONEXISTENT);
	res_free(x);

	x = res_new();
	CHECK(mail_mbox_copy(st, acc, inbox, &s3, "Archive", true, copy_cb, x) == 0);
	CHECK(run_until(&x->done));
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->count, 1);
	CHECK_INT(x->uids[0], 3);
	CHECK_INT(x->uids2[0], 4);
	res_free(x);

	/* moving what is gone copies nothing */
	x = res_new();
	CHECK(mail_mbox_copy(st, acc, inbox, &s3, "Archive", true, copy_cb, x) == 0);
	CHECK(run_until(&x->done));
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->count, 0);
	res_free(x);

	y = do_select(acc, "Archive", false);
	archive = y->id;
	CHECK_INT(y->count, 4);
	CHECK_INT(y->uids[3], 4);
	res_free(y);
	y = do_select(acc, "INBOX", false);
	CHECK_INT(y->count, 2);
	res_free(y);

	/* EXPUNGE: only \Deleted ones */
	x = res_new();
	CHECK(mail_mbox_expunge(st, acc, inbox, NULL, expunge_cb, x) == 0);
	CHECK(run_until(&x->done));
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->count, 0);
	res_free(x);
	res_free(do_store(acc, archive, &sall, MAIL_STORE_ADD, MAIL_FLAG_DELETED, NULL, 0));
	/* UID EXPUNGE 1: only that one */
	x = res_new();
	CHECK(mail_mbox_expunge(st, acc, archive, &s1, expunge_cb, x) == 0);
	CHECK(run_until(&x->done));
	CHECK_INT(x->count, 1);
	CHECK_INT(x->uids[0], 1);
	res_free(x);
	x = res_new();
	CHECK(mail_mbox_expunge(st, acc, archive, NULL, expunge_cb, x) == 0);
	CHECK(run_until(&x->done));
	CHECK_INT(x->count, 3);
	CHECK_INT(x->uids[0], 2);
	CHECK_INT(x->uids[2], 4);
	res_free(x);
	x = do_status(acc, "Archive");
	CHECK_INT(x->status.messages, 0);
	CHECK_INT(x->status.uidnext, 5);
	res_free(x);
}

PN_TEST(test_changes)
{
	uint64_t acc = new_account(), inbox;
	struct mail_uid_range r1 = { 1, 1 }, r2 = { 2, 2 };
	struct mail_uidset s1 = { &r1, 1 }, s2 = { &r2, 1 };
	struct res *sel, *x;

	CHECK(acc != 0);
	inbox = fill_inbox(acc);
	sel = do_select(acc, "INBOX", true);
	x = do_changes(acc, inbox, sel->modseq, sel->uidnext, true);
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->count + x->count2 + x->count3, 0);
	CHECK_INT(x->modseq, sel->modseq);
	CHECK_INT(x->uidvalidity, sel->uidvalidity);
	res_free(x);

	res_free(do_store(acc, inbox, &s1, MAIL_STORE_ADD, MAIL_FLAG_ANSWERED, "Kw", 0));
	res_free(do_store(acc, inbox, &s2, MAIL_STORE_ADD, MAIL_FLAG_DELETED, NULL, 0));
	{
		struct res *e = res_new();

		CHECK(mail_mbox_expunge(st, acc, inbox, NULL, expunge_cb, e) == 0);
		CHECK(run_until(&e->done));
		CHECK_INT(e->count, 1);
		res_free(e);
	}
	CHECK_INT(do_append(acc, "INBOX", msg1, 0, NULL, d1, NULL), 4);

	x = do_changes(acc, inbox, sel->modseq, sel->uidnext, true);
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->count, 1);           /* expunged */
	CHECK_INT(x->uids[0], 2);
	CHECK_INT(x->count2, 1);          /* flags */
	CHECK_INT(x->uids2[0], 1);
	CHECK_INT(x->flags[0], MAIL_FLAG_ANSWERED);
	CHECK_STR(x->kw[0], "Kw");
	CHECK_INT(x->count3, 1);          /* new */
	CHECK_INT(x->modseqs[0], 4);
	CHECK_INT(x->uidnext, 5);
	CHECK(x->modseq > sel->modseq);
	{
		struct res *y = do_changes(acc, inbox, x->modseq, x->uidnext, true);

		CHECK_INT(y->count + y->count2 + y->count3, 0);
		res_free(y);
	}
	res_free(x);
	res_free(sel);
	x = do_changes(acc, 999999999, 1, 1, false);
	CHECK_INT(x->r, MAIL_MBOX_NONEXISTENT);
	res_free(x);
}

/* The lock-free paths of migration 005: a SELECT with nothing to claim and
 * EXAMINE answer like the locked path; a poll finds a flag change alone,
 * an expunge alone and a new message, and with nothing changed gives the
 * mailbox row only. */
PN_TEST(test_fast_paths)
{
	uint64_t acc = new_account(), inbox;
	struct mail_uid_range r1 = { 1, 1 }, r3 = { 3, 3 };
	struct mail_uidset s1 = { &r1, 1 }, s3 = { &r3, 1 };
	struct res *a, *b, *x;
	uint64_t since;
	uint32_t known;

	CHECK(acc != 0);
	inbox = fill_inbox(acc);
	a = do_select(acc, "INBOX", true);	/* claims: the locked path */
	b = do_select(acc, "INBOX", true);	/* nothing left: the fast path */
	x = do_select(acc, "INBOX", false);	/* EXAMINE: always the fast path */
	for (struct res *y = b; y != NULL; y = y == b ? x : NULL) {
		CHECK_INT(y->r, MAIL_MBOX_OK);
		CHECK_INT(y->id, a->id);
		CHECK_INT(y->count, a->count);
		CHECK_INT(y->uids[0], a->uids[0]);
		CHECK_INT(y->uids[2], a->uids[2]);
		CHECK_INT(y->uidnext, a->uidnext);
		CHECK_INT(y->uidvalidity, a->uidvalidity);
		CHECK_INT(y->modseq, a->modseq);
		CHECK_INT(y->unseen, a->unseen);
		CHECK_INT(y->first_unseen, a->first_unseen);
		CHECK_STR(y->keywords, a->keywords);
		CHECK_INT(y->recent_after, 3);
	}
	res_free(x);
	x = do_select(acc, "Nowhere", true);
	CHECK_INT(x->r, MAIL_MBOX_NONEXISTENT);
	res_free(x);
	since = b->modseq;
	known = b->uidnext;

	/* a flag change alone (uidnext unchanged) */
	res_free(do_store(acc, inbox, &s1, MAIL_STORE_ADD, MAIL_FLAG_ANSWERED, NULL, 0));
	x = do_changes(acc, inbox, since, known, true);
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->count, 0);
	CHECK_INT(x->count2, 1);
	CHECK_INT(x->uids2[0], 1);
	CHECK_INT(x->count3, 0);
	CHECK(x->modseq > since);
	since = x->modseq;
	res_free(x);
	/* nothing since */
	x = do_changes(acc, inbox, since, known, true);
	CHECK_INT(x->count + x->count2 + x->count3, 0);
	CHECK_INT(x->modseq, since);
	CHECK_INT(x->uidnext, known);
	res_free(x);
	/* an expunge alone */
	res_free(do_store(acc, inbox, &s3, MAIL_STORE_ADD, MAIL_FLAG_DELETED, NULL, 0));
	{
		struct res *e = res_new();

		CHECK(mail_mbox_expunge(st, acc, inbox, &s3, expunge_cb, e) == 0);
		CHECK(run_until(&e->done));
		CHECK_INT(e->count, 1);
		res_free(e);
	}
	x = do_changes(acc, inbox, since, known, false);
	CHECK_INT(x->count, 1);
	CHECK_INT(x->uids[0], 3);
	CHECK_INT(x->count3, 0);
	since = x->modseq;
	res_free(x);
	/* a new message: an EXAMINE-like poll sees it without claiming it,
	 * the next claiming poll claims it */
	CHECK_INT(do_append(acc, "INBOX", msg1, 0, NULL, d1, NULL), 4);
	x = do_changes(acc, inbox, since, known, false);
	CHECK_INT(x->count3, 1);
	CHECK_INT(x->recent_after, 3);
	res_free(x);
	x = do_changes(acc, inbox, since, known, true);
	CHECK_INT(x->count3, 1);
	CHECK(x->updated[0]);
	res_free(x);
	x = do_changes(acc, inbox, 1, 1, false);
	CHECK_INT(x->r, MAIL_MBOX_OK);
	res_free(x);
	res_free(a);
	res_free(b);
}

static void check_search(uint64_t acc, uint64_t mb, const struct mail_search_node *tree,
			 const char *expect, int line)
{
	struct res *x = do_search(acc, mb, tree);
	char got[256] = "";
	size_t o = 0;

	for (size_t i = 0; i < x->count; i++)
		o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%u", i > 0 ? "," : "",
				      x->uids[i]);
	if (x->r != MAIL_MBOX_OK || strcmp(got, expect) != 0) {
		fprintf(stderr, "line %d: search gave \"%s\" (%s), expected \"%s\"\n", line, got,
			mail_mbox_result_name(x->r), expect);
		pn_test_failures_++;
	}
	res_free(x);
}

#define SEARCH(tree, expect) check_search(acc, inbox, (tree), (expect), __LINE__)

PN_TEST(test_search)
{
	uint64_t acc = new_account(), inbox;
	struct mail_search_node n = { 0 }, a = { 0 }, b = { 0 }, c = { 0 };
	struct mail_uid_range r13[2] = { { 1, 1 }, { 3, 3 } };
	long day1 = mail_date_day(d1, 0), day2 = mail_date_day(d2, 0);

	CHECK(acc != 0);
	inbox = fill_inbox(acc);

	n.type = MAIL_SK_ALL;
	SEARCH(&n, "1,2,3");
	n = (struct mail_search_node){ .type = MAIL_SK_UIDSET, .uids = { r13, 2 } };
	SEARCH(&n, "1,3");
	n = (struct mail_search_node){ .type = MAIL_SK_FLAG, .flag = MAIL_FLAG_FLAGGED };
	SEARCH(&n, "2");
	a = (struct mail_search_node){ .type = MAIL_SK_FLAG, .flag = MAIL_FLAG_SEEN };
	n = (struct mail_search_node){ .type = MAIL_SK_NOT, .children = &a };
	SEARCH(&n, "1,2");                      /* UNSEEN */
	n = (struct mail_search_node){ .type = MAIL_SK_KEYWORD, .str = "$work" };
	SEARCH(&n, "2");
	n = (struct mail_search_node){ .type = MAIL_SK_BEFORE, .day = day2 };
	SEARCH(&n, "1");
	n = (struct mail_search_node){ .type = MAIL_SK_ON, .day = day2 };
	SEARCH(&n, "2");
	n = (struct mail_search_node){ .type = MAIL_SK_SINCE, .day = day2 };
	SEARCH(&n, "2,3");
	/* msg1 Date: Fri 05 Jan 2024 23:30 -0500 is 6 Jan in UTC: SENT* use
	 * the header's own day, 5 Jan; msg3 has no Date: (internal date) */
	n = (struct mail_search_node){ .type = MAIL_SK_SENTON,
				       .day = mail_days_from_civil(2024, 1, 5) };
	SEARCH(&n, "1");
	n = (struct mail_search_node){ .type = MAIL_SK_SENTON,
				       .day = mail_days_from_civil(2024, 1, 6) };
	SEARCH(&n, "");
	n = (struct mail_search_node){ .type = MAIL_SK_SENTBEFORE,
				       .day = mail_days_from_civil(2024, 2, 10) };
	SEARCH(&n, "1");
	n = (struct mail_search_node){ .type = MAIL_SK_SENTSINCE,
				       .day = mail_days_from_civil(2024, 2, 10) };
	SEARCH(&n, "2,3");
	n = (struct mail_search_node){ .type = MAIL_SK_LARGER, .num = strlen(msg2) };
	SEARCH(&n, "3");
	n = (struct mail_search_node){ .type = MAIL_SK_SMALLER, .num = strlen(msg2) };
	SEARCH(&n, "1");
	n = (struct mail_search_node){ .type = MAIL_SK_MODSEQ, .num = 3 };
	SEARCH(&n, "2,3");
	n = (struct mail_search_node){ .type = MAIL_SK_HEADER, .name = "subject", .str = "WORLD" };
	SEARCH(&n, "1");
	n = (struct mail_search_node){ .type = MAIL_SK_HEADER, .name = "subject",
				       .str = "gr\xc3\xbc\xc3\x9f" "e" };
	SEARCH(&n, "2");                        /* decoded encoded word */
	n = (struct mail_search_node){ .type = MAIL_SK_HEADER, .name = "from", .str = "carol" };
	SEARCH(&n, "2");
	n = (struct mail_search_node){ .type = MAIL_SK_HEADER, .name = "to", .str = "bob@" };
	SEARCH(&n, "1,2,3");
	n = (struct mail_search_node){ .type = MAIL_SK_HEADER, .name = "cc", .str = "dave" };
	SEARCH(&n, "2");
	n = (struct mail_search_node){ .type = MAIL_SK_HEADER, .name = "bcc", .str = "hidden" };
	SEARCH(&n, "3");
	n = (struct mail_search_node){ .type = MAIL_SK_HEADER, .name = "X-Tag", .str = "" };
	SEARCH(&n, "1");                        /* empty: the field exists */
	n = (struct mail_search_node){ .type = MAIL_SK_BODY, .str = "banana" };
	SEARCH(&n, "2");                        /* base64 body decoded */
	n = (struct mail_search_node){ .type = MAIL_SK_BODY, .str = "Hello" };
	SEARCH(&n, "");                         /* only in the header */
	n = (struct mail_search_node){ .type = MAIL_SK_TEXT, .str = "hello" };
	SEARCH(&n, "1");
	n = (struct mail_search_node){ .type = MAIL_SK_TEXT, .str = "padding." };
	SEARCH(&n, "3");

	/* combinations: OR of flag and text, NOT of text, AND */
	a = (struct mail_search_node){ .type = MAIL_SK_FLAG, .flag = MAIL_FLAG_SEEN };
	b = (struct mail_search_node){ .type = MAIL_SK_BODY, .str = "first" };
	a.next = &b;
	n = (struct mail_search_node){ .type = MAIL_SK_OR, .children = &a };
	SEARCH(&n, "1,3");
	b.next = NULL;
	n = (struct mail_search_node){ .type = MAIL_SK_NOT, .children = &b };
	SEARCH(&n, "2,3");
	a = (struct mail_search_node){ .type = MAIL_SK_UIDSET, .uids = { r13, 2 } };
	c = (struct mail_search_node){ .type = MAIL_SK_SINCE, .day = day1 };
	a.next = &c;
	n = (struct mail_search_node){ .type = MAIL_SK_AND, .children = &a };
	SEARCH(&n, "1,3");
	n = (struct mail_search_node){ .type = MAIL_SK_AND };
	SEARCH(&n, "1,2,3");
	n = (struct mail_search_node){ .type = MAIL_SK_OR };
	SEARCH(&n, "");

	n = (struct mail_search_node){ .type = MAIL_SK_NOT };
	CHECK(mail_mbox_search(st, acc, inbox, &n, search_cb, NULL) < 0);
}

/* Migration 004: INTERNALDATE with its zone through APPEND, FETCH, COPY,
 * MOVE and SEARCH BEFORE/ON/SINCE (the day in the message's own zone). */
PN_TEST(test_internaldate_zone)
{
	uint64_t acc = new_account(), inbox;
	struct res *x;
	time_t t1, t2;
	int tz1, tz2, pg_tz;
	char out[MAIL_IMAP_DATETIME_LEN + 1];
	struct mail_uid_range all = { 1, 100 }, r1 = { 1, 1 }, r2 = { 2, 2 };
	struct mail_uidset sall = { &all, 1 }, s1 = { &r1, 1 }, s2 = { &r2, 1 };
	struct mail_search_node n = { 0 };
	const char *error;
	PGresult *pr;

	CHECK(acc != 0);
	/* 17 Jul 09:44:25 UTC, 16 Jul 23:30 in -0700 (17 Jul 06:30 UTC) */
	CHECK(mail_imap_datetime_parse("17-Jul-1996 02:44:25 -0700", 26, &t1, &tz1) == 0);
	CHECK(mail_imap_datetime_parse("16-Jul-1996 23:30:00 -0700", 26, &t2, &tz2) == 0);
	{
		struct mail_mbox_append a = {
			.mailbox = "INBOX", .data = (const uint8_t *)msg1, .len = strlen(msg1),
			.has_date = true, .date = t1, .date_tz = tz1,
		};

		x = res_new();
		CHECK(mail_mbox_append(st, acc, &a, append_cb, x) == 0);
		CHECK(run_until(&x->done));
		CHECK_INT(x->r, MAIL_MBOX_OK);
		inbox = x->id;
		res_free(x);
		a.date = t2;
		a.date_tz = tz2;
		a.data = (const uint8_t *)msg2;
		a.len = strlen(msg2);
		x = res_new();
		CHECK(mail_mbox_append(st, acc, &a, append_cb, x) == 0);
		CHECK(run_until(&x->done));
		CHECK_INT(x->r, MAIL_MBOX_OK);
		res_free(x);
		/* a zone IMAP cannot write is refused before any I/O */
		a.date_tz = 6000;
		errno = 0;
		CHECK(mail_mbox_append(st, acc, &a, append_cb, NULL) < 0);
		CHECK_INT(errno, EINVAL);
	}
	/* without a date: now, in the zone of the database connection */
	CHECK_INT(do_append(acc, "INBOX", msg1, 0, NULL, 0, NULL), 3);
	pr = store_pg_exec(sync_conn, "SELECT (extract(timezone FROM now()) / 60)::integer",
			   0, NULL, &error);
	CHECK(pr != NULL);
	pg_tz = pr != NULL ? atoi(PQgetvalue(pr, 0, 0)) : -1;
	PQclear(pr);

	x = do_fetch(acc, inbox, &sall, false);
	CHECK_INT(x->count, 3);
	CHECK_INT(x->idate[0], t1);
	CHECK_INT(x->idate_tz[0], -420);
	mail_imap_datetime_format(x->idate[0], x->idate_tz[0], out);
	CHECK_STR(out, "17-Jul-1996 02:44:25 -0700");
	CHECK_INT(x->idate[1], t2);
	CHECK_INT(x->idate_tz[1], -420);
	CHECK_INT(x->idate_tz[2], pg_tz);
	CHECK(x->idate[2] > t1);
	res_free(x);

	/* day in the message's own zone: message 2 is on 16 Jul (-0700)
	 * although it is 17 Jul in UTC */
	n = (struct mail_search_node){ .type = MAIL_SK_ON, .day = mail_days_from_civil(1996, 7, 16) };
	SEARCH(&n, "2");
	n.day = mail_days_from_civil(1996, 7, 17);
	SEARCH(&n, "1");
	n = (struct mail_search_node){ .type = MAIL_SK_BEFORE,
				       .day = mail_days_from_civil(1996, 7, 17) };
	SEARCH(&n, "2");
	n = (struct mail_search_node){ .type = MAIL_SK_SINCE,
				       .day = mail_days_from_civil(1996, 7, 17) };
	SEARCH(&n, "1,3");

	/* COPY keeps the zone, MOVE too */
	CHECK_INT(do_simple('c', acc, "Zoned", NULL, NULL), MAIL_MBOX_OK);
	x = res_new();
	CHECK(mail_mbox_copy(st, acc, inbox, &s1, "Zoned", false, copy_cb, x) == 0);
	CHECK(run_until(&x->done));
	CHECK_INT(x->r, MAIL_MBOX_OK);
	res_free(x);
	x = res_new();
	CHECK(mail_mbox_copy(st, acc, inbox, &s2, "Zoned", true, copy_cb, x) == 0);
	CHECK(run_until(&x->done));
	CHECK_INT(x->r, MAIL_MBOX_OK);
	res_free(x);
	x = do_select(acc, "Zoned", false);
	{
		uint64_t zoned = x->id;

		res_free(x);
		x = do_fetch(acc, zoned, &sall, false);
	}
	CHECK_INT(x->count, 2);
	CHECK_INT(x->idate[0], t1);
	CHECK_INT(x->idate_tz[0], -420);
	CHECK_INT(x->idate[1], t2);
	CHECK_INT(x->idate_tz[1], -420);
	res_free(x);
}

/* The changes read names the mailbox as it is now: a rename by another
 * session shows, a delete is NONEXISTENT (the IMAP session's BYE). */
PN_TEST(test_changes_name)
{
	uint64_t acc = new_account(), box;
	struct res *x;

	CHECK(acc != 0);
	CHECK_INT(do_simple('c', acc, "Proj/Box", NULL, NULL), MAIL_MBOX_OK);
	x = do_select(acc, "Proj/Box", true);
	CHECK_INT(x->r, MAIL_MBOX_OK);
	box = x->id;
	res_free(x);
	x = do_changes(acc, box, 0, 1, true);
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_STR(x->name, "Proj/Box");
	res_free(x);
	CHECK_INT(do_simple('r', acc, "Proj", "Old", NULL), MAIL_MBOX_OK);
	x = do_changes(acc, box, 0, 1, true);
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_STR(x->name, "Old/Box");
	res_free(x);
	CHECK_INT(do_simple('d', acc, "Old/Box", NULL, NULL), MAIL_MBOX_OK);
	x = do_changes(acc, box, 0, 1, false);
	CHECK_INT(x->r, MAIL_MBOX_NONEXISTENT);
	res_free(x);
}

PN_TEST(test_delete_rename)
{
	uint64_t acc = new_account(), inbox, id = 0, id2 = 0;
	struct res *x;

	CHECK(acc != 0);
	inbox = fill_inbox(acc);
	CHECK_INT(do_simple('d', acc, "INBOX", NULL, NULL), MAIL_MBOX_CANNOT);
	CHECK_INT(do_simple('d', acc, "Nope", NULL, NULL), MAIL_MBOX_NONEXISTENT);
	CHECK_INT(do_simple('c', acc, "Work/Sub", NULL, NULL), MAIL_MBOX_OK);
	CHECK_INT(do_append(acc, "Work", msg1, 0, NULL, d1, NULL), 1);

	/* with inferiors: messages gone, \Noselect */
	CHECK_INT(do_simple('d', acc, "Work", NULL, NULL), MAIL_MBOX_OK);
	x = do_list(acc, "", "Work*", false);
	CHECK_INT(x->n, 2);
	CHECK(list_has(x, "Work", 1, 1));
	res_free(x);
	CHECK_INT(do_simple('d', acc, "Work", NULL, NULL), MAIL_MBOX_CANNOT);
	x = do_status(acc, "Work");
	CHECK_INT(x->r, MAIL_MBOX_CANNOT);
	res_free(x);
	/* CREATE makes it selectable again */
	CHECK_INT(do_simple('c', acc, "Work", NULL, NULL), MAIL_MBOX_OK);
	x = do_status(acc, "Work");
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->status.messages, 0);
	res_free(x);

	/* RENAME moves the inferiors */
	CHECK_INT(do_simple('r', acc, "Work", "Jobs/Old", &id), MAIL_MBOX_OK);
	x = do_list(acc, "", "*", false);
	CHECK(list_has(x, "Jobs", 0, 1));
	CHECK(list_has(x, "Jobs/Old", 0, 1));
	CHECK(list_has(x, "Jobs/Old/Sub", 0, 0));
	CHECK(!list_has(x, "Work", -1, -1));
	CHECK(!list_has(x, "Work/Sub", -1, -1));
	res_free(x);
	CHECK_INT(do_simple('r', acc, "Jobs/Old", "Sent", NULL), MAIL_MBOX_ALREADYEXISTS);
	CHECK_INT(do_simple('r', acc, "Jobs", "Jobs/Inside", NULL), MAIL_MBOX_CANNOT);
	CHECK_INT(do_simple('r', acc, "Gone", "Other", NULL), MAIL_MBOX_NONEXISTENT);

	/* the INBOX rule: messages move, INBOX stays (empty), inferiors stay */
	CHECK_INT(do_simple('c', acc, "INBOX/Keep", NULL, NULL), MAIL_MBOX_OK);
	CHECK_INT(do_simple('r', acc, "inbox", "Old Mail", &id2), MAIL_MBOX_OK);
	CHECK(id2 != 0 && id2 != inbox);
	x = do_status(acc, "INBOX");
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->status.id, inbox);
	CHECK_INT(x->status.messages, 0);
	CHECK_INT(x->status.uidnext, 4);
	res_free(x);
	x = do_select(acc, "Old Mail", false);
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->count, 3);
	CHECK_INT(x->uids[0], 1);
	res_free(x);
	x = do_list(acc, "", "INBOX*", false);
	CHECK_INT(x->n, 2);
	res_free(x);
	CHECK_INT(do_append(acc, "INBOX", msg2, 0, NULL, d2, NULL), 4);
	CHECK_INT(do_simple('r', acc, "INBOX", "INBOX/Old", NULL), MAIL_MBOX_OK);
	x = do_status(acc, "INBOX/Old");
	CHECK_INT(x->status.messages, 1);
	res_free(x);

	/* leaves */
	CHECK_INT(do_simple('d', acc, "Old Mail", NULL, NULL), MAIL_MBOX_OK);
	CHECK_INT(do_simple('d', acc, "Jobs/Old/Sub", NULL, NULL), MAIL_MBOX_OK);
	x = do_list(acc, "", "Jobs/*", false);
	CHECK_INT(x->n, 1);
	CHECK(list_has(x, "Jobs/Old", 0, 0));
	res_free(x);
	CHECK(mail_mbox_rename(st, acc, "a", "b%", done_cb, NULL) < 0);
}

PN_TEST(test_quota)
{
	uint64_t acc = new_account_quota(2), inbox;
	struct mail_uid_range r = { 1, 2 };
	struct mail_uidset set = { &r, 1 };
	struct res *x;

	CHECK(acc != 0);
	CHECK_INT(do_append(acc, "INBOX", msg1, 0, NULL, d1, NULL), 1);
	CHECK_INT(do_append(acc, "INBOX", msg2, 0, NULL, d2, NULL), 2);
	x = res_new();
	{
		struct mail_mbox_append a = { .mailbox = "INBOX", .data = (const uint8_t *)msg3,
					      .len = strlen(msg3) };

		CHECK(mail_mbox_append(st, acc, &a, append_cb, x) == 0);
	}
	CHECK(run_until(&x->done));
	CHECK_INT(x->r, MAIL_MBOX_OVERQUOTA);
	res_free(x);
	x = do_status(acc, "INBOX");
	inbox = x->status.id;
	res_free(x);
	x = res_new();
	CHECK(mail_mbox_copy(st, acc, inbox, &set, "Trash", false, copy_cb, x) == 0);
	CHECK(run_until(&x->done));
	CHECK_INT(x->r, MAIL_MBOX_OVERQUOTA);
	res_free(x);
	/* MOVE does not add usage */
	x = res_new();
	CHECK(mail_mbox_copy(st, acc, inbox, &set, "Trash", true, copy_cb, x) == 0);
	CHECK(run_until(&x->done));
	CHECK_INT(x->r, MAIL_MBOX_OK);
	CHECK_INT(x->count, 2);
	res_free(x);
	{
		struct mail_mbox_append a = { .mailbox = "INBOX", .data = (const uint8_t *)msg3,
					      .len = (size_t)65 << 20 };

		errno = 0;
		CHECK(mail_mbox_append(st, acc, &a, append_cb, NULL) < 0 && errno == EFBIG);
	}
}

/* FETCH with a body cache: the same rows and bytes as without, over two
 * chunks, a body shared by two messages, the second FETCH served from the
 * cache; and a cache too small to keep anything (bytes from the query). */
static void fetch_cached(struct store_blob_cache *cache, unsigned int chunk, uint64_t acc,
			 uint64_t inbox)
{
	struct store_pgpool_settings ps = { .dsn = dsn, .max_conns = 1 };
	struct mail_mbox_store *saved = st, *alt = NULL;
	struct store_pgpool *pool2;
	const char *error;
	struct mail_uid_range all = { 1, UINT32_MAX };
	struct mail_uidset set = { &all, 1 };

	pool2 = store_pgpool_new(loop, &ps, &error);
	CHECK(pool2 != NULL);
	if (pool2 != NULL) {
		struct mail_mbox_settings ms = { .pool = pool2, .node = "test",
						 .fetch_chunk = chunk, .cache = cache };

		alt = mail_mbox_store_new(&ms, &error);
	}
	CHECK(alt != NULL);
	for (int round = 0; alt != NULL && round < 2; round++) {
		struct res *x;

		st = alt;
		x = do_fetch(acc, inbox, &set, true);
		st = saved;
		CHECK_INT(x->r, MAIL_MBOX_OK);
		CHECK_INT(x->count, 4);
		CHECK_INT(x->uids[0], 1);
		CHECK_INT(x->uids[3], 4);
		CHECK_MEM(x->data[0], x->data_len[0], msg1, strlen(msg1));
		CHECK_MEM(x->data[1], x->data_len[1], msg2, strlen(msg2));
		CHECK_MEM(x->data[2], x->data_len[2], msg3, strlen(msg3));
		CHECK_MEM(x->data[3], x->data_len[3], msg1, strlen(msg1));
		CHECK_INT(x->flags[1], MAIL_FLAG_FLAGGED);
		CHECK_STR(x->kw[1], "$Work");
		CHECK(strstr(x->envelope[0], "\"Hello world\"") != NULL);
		res_free(x);
		/* without the bytes the cache is not asked */
		st = alt;
		x = do_fetch(acc, inbox, &set, false);
		st = saved;
		CHECK_INT(x->count, 4);
		CHECK(x->data[0] == NULL);
		res_free(x);
	}
	mail_mbox_store_free(&alt);
	if (pool2 != NULL)
		store_pgpool_free(&pool2);
}

PN_TEST(test_fetch_cache)
{
	uint64_t acc = new_account(), inbox;
	struct store_blob_cache *cache = store_blob_cache_new(1u << 20);
	struct store_blob_cache *tiny = store_blob_cache_new(8);
	struct store_blob_cache_stats cs;

	CHECK(acc != 0 && cache != NULL && tiny != NULL);
	inbox = fill_inbox(acc);
	CHECK_INT(do_append(acc, "INBOX", msg1, 0, NULL, d1, NULL), 4);
	/* chunks of 3: msg1, msg2, msg3 missed and read; then UID 4 (msg1
	 * again) and the whole second FETCH from the cache */
	fetch_cached(cache, 3, acc, inbox);
	store_blob_cache_get_stats(cache, &cs);
	CHECK_INT(cs.misses, 3);
	CHECK_INT(cs.inserts, 3);
	CHECK_INT(cs.hits, 1 + 4);
	CHECK_INT(cs.entries, 3);
	CHECK_INT(cs.bytes, strlen(msg1) + strlen(msg2) + strlen(msg3));
	/* one chunk holding msg1 twice: both rows get the one body read */
	fetch_cached(tiny, 32, acc, inbox);
	store_blob_cache_get_stats(tiny, &cs);
	CHECK_INT(cs.entries, 0);
	CHECK_INT(cs.misses, 8);
	CHECK_INT(cs.hits, 0);
	store_blob_cache_free(&cache);
	store_blob_cache_free(&tiny);
}

/* Redis unreachable: operations still work (notifications are lost). */
PN_TEST(test_redis_down)
{
	struct store_pgpool_settings ps = { .dsn = dsn, .max_conns = 1 };
	struct store_redis_settings rs = { .host = "127.0.0.1", .port = 1,
					   .connect_timeout_ms = 200 };
	struct mail_mbox_store *saved = st, *alt = NULL;
	struct store_pgpool *pool2;
	struct store_redis *dead;
	const char *error;
	uint64_t acc = new_account();

	pool2 = store_pgpool_new(loop, &ps, &error);
	dead = store_redis_new(loop, &rs, &error);
	CHECK(pool2 != NULL && dead != NULL);
	if (pool2 != NULL && dead != NULL) {
		struct mail_mbox_settings ms = { .pool = pool2, .redis = dead, .node = "test" };

		alt = mail_mbox_store_new(&ms, &error);
	}
	CHECK(alt != NULL);
	if (alt != NULL) {
		st = alt;
		CHECK_INT(do_append(acc, "INBOX", msg1, 0, NULL, d1, NULL), 1);
		CHECK_INT(do_append(acc, "INBOX", msg2, 0, NULL, d2, NULL), 2);
		st = saved;
	}
	mail_mbox_store_free(&alt);
	if (dead != NULL)
		store_redis_free(&dead);
	if (pool2 != NULL)
		store_pgpool_free(&pool2);
}

/* ---- an external (directory) blob backend ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

PN_TEST(test_external_blobs)
{
	struct store_pgpool_settings ps = { .dsn = dsn, .max_conns = 2 };
	struct mail_mbox_store *saved = st, *ext = NULL;
	struct store_pgpool *pool2 = NULL;
	struct pn_workpool *wp = NULL;
	struct store_blob *blob = NULL;
	const char *error;
	char dir[] = "/tmp/postern-test-mbox-XXXXXX";
	char body[256];
	uint64_t acc = new_account(), inbox;
	struct store_blob_cache *cache = store_blob_cache_new(1u << 20);
	struct store_blob_cache_stats cs;
	struct mail_uid_range r1 = { 1, 1 };
	struct mail_uidset s1 = { &r1, 1 };
	struct res *x;

	CHECK(acc != 0);
	snprintf(body, sizeof(body), "Subject: external %ld %d\r\n\r\nkept in a file\r\n",
		 (long)time(NULL), (int)getpid());
	if (mkdtemp(dir) == NULL) {
		CHECK(0);
		return;
	}
	pool2 = store_pgpool_new(loop, &ps, &error);
	wp = pn_workpool_new(1, 16, &error);
	CHECK(pool2 != NULL && wp != NULL);
	if (pool2 == NULL || wp == NULL)
		goto out;
	blob = store_blob_dir_new(loop, pool2, wp, dir, NULL, &error);
	CHECK(blob != NULL);
	if (blob == NULL)
		goto out;
	{
		struct mail_mbox_settings ms = { .pool = pool2, .blob = blob, .node = "test",
						 .cache = cache };

		ext = mail_mbox_store_new(&ms, &error);
	}
	CHECK(ext != NULL);
	if (ext == NULL)
		goto out;
	st = ext;
	CHECK_INT(do_append(acc, "INBOX", body, 0, NULL, d1, NULL), 1);
	{
		const char *vals[1] = { body };
		PGresult *r = store_pg_exec(sync_conn, "SELECT refcount, body IS NULL FROM mail_blobs"
					    " WHERE sha256 = sha256(convert_to($1, 'UTF8'))",
					    1, vals, &error);

		CHECK(r != NULL && PQntuples(r) == 1);
		if (r != NULL && PQntuples(r) == 1) {
			CHECK_INT(store_pg_int(r, 0, 0), 1);
			CHECK_STR(PQgetvalue(r, 0, 1), "t");
		}
		PQclear(r);
	}
	x = do_status(acc, "INBOX");
	inbox = x->status.id;
	res_free(x);
	/* the second time from the body cache, not the file */
	for (int round = 0; round < 2; round++) {
		x = do_fetch(acc, inbox, &s1, true);
		CHECK_INT(x->r, MAIL_MBOX_OK);
		CHECK_INT(x->count, 1);
		CHECK_MEM(x->data[0], x->data_len[0], body, strlen(body));
		CHECK(strstr(x->envelope[0], "external") != NULL);
		res_free(x);
	}
	store_blob_cache_get_stats(cache, &cs);
	CHECK_INT(cs.misses, 1);
	CHECK_INT(cs.inserts, 1);
	CHECK_INT(cs.hits, 1);
	/* the same search path reads bodies from the files */
	{
		struct mail_search_node n = { .type = MAIL_SK_BODY, .str = "IN A FILE" };

		x = do_search(acc, inbox, &n);
		CHECK_INT(x->count, 1);
		res_free(x);
	}
out:
	st = saved;
	mail_mbox_store_free(&ext);
	if (blob != NULL)
		store_blob_free(&blob);
	if (pool2 != NULL)
		store_pgpool_free(&pool2);
	if (wp != NULL)
		pn_workpool_free(&wp);
	store_blob_cache_free(&cache);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- notifications over Redis ---- */

struct sub_state {
	bool ready, got;
	char msg[200];
};

static void sub_cb(void *ctx, enum store_redis_sub_event ev, const char *channel,
		   const char *msg, size_t len)
{
	struct sub_state *s = ctx;

	(void)channel;
	if (ev == STORE_REDIS_SUB_READY)
		s->ready = true;
	if (ev == STORE_REDIS_SUB_MESSAGE) {
		snprintf(s->msg, sizeof(s->msg), "%.*s", (int)len, msg);
		s->got = true;
	}
}

PN_TEST(test_notify)
{
	uint64_t acc, inbox;
	struct sub_state s = { 0 };
	struct store_redis_sub *sub;
	struct res *x;

	if (redis == NULL)
		return;
	acc = new_account();
	x = do_status(acc, "INBOX");
	inbox = x->status.id;
	res_free(x);
	sub = store_rnotify_subscribe(redis, acc, inbox, sub_cb, &s);
	CHECK(sub != NULL);
	CHECK(run_until(&s.ready));
	CHECK_INT(do_append(acc, "INBOX", msg1, 0, NULL, d1, NULL), 1);
	CHECK(run_until(&s.got));
	CHECK(strstr(s.msg, "v=1 modseq=") == s.msg);
	CHECK(strstr(s.msg, "uidnext=2 node=test") != NULL);
	s.got = false;
	{
		struct mail_uid_range r = { 1, 1 };
		struct mail_uidset set = { &r, 1 };

		res_free(do_store(acc, inbox, &set, MAIL_STORE_ADD, MAIL_FLAG_SEEN, NULL, 0));
	}
	CHECK(run_until(&s.got));
	store_redis_unsubscribe(&sub);
}

static int setup(void)
{
	struct store_pgpool_settings ps = { .dsn = dsn, .max_conns = 3 };
	struct mail_mbox_settings ms = { 0 };
	const char *error, *rhost = getenv("POSTERN_REDIS_HOST");
	int from, to;

	if (store_pg_connect(dsn, &sync_conn, &error) < 0
	    || store_migrate(sync_conn, &from, &to, &error) < 0) {
		fprintf(stderr, "test-mailbox: %s\n", error);
		return -1;
	}
	snprintf(domain, sizeof(domain), "mbox%ld-%d.test", (long)time(NULL), (int)getpid());
	{
		char tenant[64];

		snprintf(tenant, sizeof(tenant), "t-mbox-%ld-%d", (long)time(NULL), (int)getpid());
		if (store_tenant_add(sync_conn, tenant, -1, -1, &error) < 0
		    || store_domain_add(sync_conn, domain, tenant, &error) < 0) {
			fprintf(stderr, "test-mailbox: %s\n", error);
			return -1;
		}
	}
	loop = pn_loop_new(NULL, &error);
	if (loop == NULL)
		return -1;
	pool = store_pgpool_new(loop, &ps, &error);
	if (pool == NULL)
		return -1;
	if (rhost != NULL) {
		struct store_redis_settings rs = {
			.host = rhost,
			.port = getenv("POSTERN_REDIS_PORT") ? atoi(getenv("POSTERN_REDIS_PORT"))
							     : 6379,
		};

		redis = store_redis_new(loop, &rs, &error);
	}
	ms.pool = pool;
	ms.redis = redis;
	ms.node = "test";
	ms.fetch_chunk = 2;
	st = mail_mbox_store_new(&ms, &error);
	if (st == NULL) {
		fprintf(stderr, "test-mailbox: %s\n", error);
		return -1;
	}
	mail_imap_datetime_parse("06-Jan-2024 04:30:00 +0000", 26, &d1, &from);
	mail_imap_datetime_parse("10-Feb-2024 11:00:00 +0000", 26, &d2, &from);
	mail_imap_datetime_parse("01-Mar-2024 08:00:00 +0000", 26, &d3, &from);
	return 0;
}

static void teardown(void)
{
	const char *error;
	const char *vals[1] = { domain };
	PGresult *r;
	char tenant[128] = "";

	mail_mbox_store_free(&st);
	if (redis != NULL)
		store_redis_free(&redis);
	store_pgpool_free(&pool);
	pn_loop_free(&loop);
	r = store_pg_exec(sync_conn, "SELECT t.name FROM domains d JOIN tenants t"
			  " ON t.id = d.tenant_id WHERE d.name = $1", 1, vals, &error);
	if (r != NULL && PQntuples(r) == 1)
		snprintf(tenant, sizeof(tenant), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	if (tenant[0] != '\0' && store_tenant_remove(sync_conn, tenant, true, &error) < 0)
		fprintf(stderr, "cleanup: %s\n", error);
	store_pg_close(&sync_conn);
}

int pn_test_failures_;

int main(void)
{
	static const struct pn_test_case cases[] = {
		PN_TEST_CASE(test_names),
		PN_TEST_CASE(test_list_patterns),
		PN_TEST_CASE(test_list),
		PN_TEST_CASE(test_append_fetch_status),
		PN_TEST_CASE(test_fetch_cache),
		PN_TEST_CASE(test_select_recent),
		PN_TEST_CASE(test_store),
		PN_TEST_CASE(test_copy_move_expunge),
		PN_TEST_CASE(test_changes),
		PN_TEST_CASE(test_fast_paths),
		PN_TEST_CASE(test_search),
		PN_TEST_CASE(test_delete_rename),
		PN_TEST_CASE(test_internaldate_zone),
		PN_TEST_CASE(test_changes_name),
		PN_TEST_CASE(test_quota),
		PN_TEST_CASE(test_redis_down),
		PN_TEST_CASE(test_external_blobs),
		PN_TEST_CASE(test_notify),
	};
	int rc;

	dsn = getenv("POSTERN_PG_DSN");
	if (dsn == NULL)
		return pn_test_skip("test-mailbox", "POSTERN_PG_DSN not set (run tests/run)");
	if (setup() < 0)
		return 1;
	rc = pn_test_run("test-mailbox", cases, sizeof(cases) / sizeof(cases[0]));
	teardown();
	return rc;
}
