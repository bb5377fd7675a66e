/* The POP3 maildrop in PostgreSQL: the INBOX listing (with each body's
 * SHA-256, in binary), message bodies read whole through the body cache or
 * in slices, \Seen, and the expunge at UPDATE, each one statement on the
 * asynchronous pool. See postern/mail-maildrop.h.
 */
#include "postern/mail-maildrop.h"
#include "postern/store-blob-cache.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mail_uidl_format(char *buf, size_t size, uint32_t uidvalidity, uint32_t uid)
{
	snprintf(buf, size, "%" PRIu32 ".%" PRIu32, uidvalidity, uid);
}

union op_cb {
	mail_maildrop_list_cb *list;
	mail_maildrop_done_cb *done;
	mail_maildrop_expunge_cb *expunge;
};

struct op {
	union op_cb cb;
	void *ctx;
};

static struct op *op_new(union op_cb cb, void *ctx)
{
	struct op *o = malloc(sizeof(*o));

	if (o != NULL) {
		o->cb = cb;
		o->ctx = ctx;
	}
	return o;
}

static int op_submit(struct store_pgpool *pg, const struct store_pg_query *q,
		     store_pg_cb *tramp, struct op *o)
{
	if (o == NULL) {
		errno = ENOMEM;
		return -1;
	}
	if (store_pgpool_query(pg, q, tramp, o) < 0) {
		int e = errno;
		free(o);
		errno = e;
		return -1;
	}
	return 0;
}

static const char *reply_error(const struct store_pg_reply *reply)
{
	return reply->error != NULL && reply->error[0] != '\0' ? reply->error :
		store_status_name(reply->status);
}

/* ---- listing ---- */

static uint64_t be64(const char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | (uint8_t)p[i];
	return v;
}

/* A binary bigint column, or 0 (NULL or not 8 bytes). */
static uint64_t bin_u64(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 8)
		return 0;
	return be64(PQgetvalue(res, row, col));
}

static void list_tramp(void *ctx, struct store_pg_reply *reply)
{
	struct op *o = ctx;
	mail_maildrop_list_cb *cb = o->cb.list;
	struct mail_maildrop_listing l = { .status = reply->status, .error = "" };
	struct mail_maildrop_msg *msgs = NULL;
	int rows;

	if (reply->status != STORE_OK) {
		l.error = reply_error(reply);
		cb(o->ctx, &l);
		free(o);
		return;
	}
	rows = PQntuples(reply->res);
	if (rows == 0) {
		l.no_inbox = true;
		cb(o->ctx, &l);
		free(o);
		return;
	}
	l.mailbox_id = bin_u64(reply->res, 0, 0);
	l.uidvalidity = (uint32_t)bin_u64(reply->res, 0, 1);
	msgs = calloc((size_t)rows, sizeof(*msgs));
	if (msgs == NULL) {
		l.status = STORE_TEMPORARY;
		l.error = "out of memory";
		cb(o->ctx, &l);
		free(o);
		return;
	}
	for (int i = 0; i < rows; i++) {
		struct mail_maildrop_msg *m = &msgs[l.count];

		if (PQgetisnull(reply->res, i, 2))
			continue; /* the empty mailbox's single row */
		m->uid = (uint32_t)bin_u64(reply->res, i, 2);
		m->size = bin_u64(reply->res, i, 3);
		if (PQgetlength(reply->res, i, 4) == PN_SHA256_LEN)
			memcpy(m->sha256, PQgetvalue(reply->res, i, 4), PN_SHA256_LEN);
		l.count++;
	}
	l.msgs = msgs;
	cb(o->ctx, &l);
	free(msgs);
	free(o);
}

int mail_maildrop_list(struct store_pgpool *pg, uint64_t account_id,
		       mail_maildrop_list_cb *cb, void *ctx)
{
	/* binary result: four bigints and the 32-byte SHA-256 per row */
	static const char sql[] =
		"SELECT mb.id, mb.uidvalidity, m.uid, m.size, m.blob_sha256 FROM mailboxes mb "
		"LEFT JOIN LATERAL (SELECT uid, size, blob_sha256 FROM messages "
		"  WHERE account_id = mb.account_id AND mailbox_id = mb.id "
		"  ORDER BY uid LIMIT 1000000) m ON true "
		"WHERE mb.account_id = $1 AND mb.name = 'INBOX' ORDER BY m.uid";
	char id[24];
	const char *values[1] = { id };

	_Static_assert(MAIL_MAILDROP_MAX_MESSAGES == 1000000, "keep the SQL LIMIT in step");
	snprintf(id, sizeof(id), "%" PRIu64, account_id);
	return op_submit(pg, &(struct store_pg_query){ .sql = sql, .nparams = 1, .values = values,
							.result_format = 1 },
			 list_tramp, op_new((union op_cb){ .list = cb }, ctx));
}

/* ---- message bodies ---- */

struct read_op {
	mail_maildrop_read_cb *cb;
	void *ctx;
	uint64_t offset;
};

static void read_tramp(void *ctx, struct store_pg_reply *reply)
{
	struct read_op *o = ctx;
	PGresult *res = reply->res;

	if (reply->status != STORE_OK) {
		o->cb(o->ctx, reply->status, NULL, 0, false, false, reply_error(reply));
	} else if (PQntuples(res) == 0) {
		o->cb(o->ctx, STORE_OK, NULL, 0, true, true, "");
	} else if (PQgetisnull(res, 0, 0) || PQgetlength(res, 0, 2) != 8) {
		/* body NULL: the bytes live in an external blob store, which
		 * this version of the frontend does not read. */
		o->cb(o->ctx, STORE_PERMANENT, NULL, 0, false, false,
		      "message body is not stored in the database");
	} else {
		size_t len = (size_t)PQgetlength(res, 0, 0);
		uint64_t total = be64(PQgetvalue(res, 0, 2));

		o->cb(o->ctx, STORE_OK, (const uint8_t *)PQgetvalue(res, 0, 0), len,
		      o->offset + len >= total, false, "");
	}
	free(o);
}

int mail_maildrop_read(struct store_pgpool *pg, uint64_t account_id, uint64_t mailbox_id,
		       uint32_t uid, uint64_t offset, size_t max,
		       mail_maildrop_read_cb *cb, void *ctx)
{
	static const char sql[] =
		"SELECT substring(b.body FROM $4::int FOR $5::int), b.body IS NULL, "
		"  octet_length(b.body)::bigint "
		"FROM messages m JOIN mail_blobs b ON b.sha256 = m.blob_sha256 "
		"WHERE m.account_id = $1 AND m.mailbox_id = $2 AND m.uid = $3";
	char a[24], m[24], u[16], off[24], len[24];
	const char *values[5] = { a, m, u, off, len };
	struct read_op *o;

	if (offset >= INT32_MAX || max == 0 || max > INT32_MAX) {
		errno = EINVAL;
		return -1;
	}
	o = malloc(sizeof(*o));
	if (o == NULL) {
		errno = ENOMEM;
		return -1;
	}
	o->cb = cb;
	o->ctx = ctx;
	o->offset = offset;
	snprintf(a, sizeof(a), "%" PRIu64, account_id);
	snprintf(m, sizeof(m), "%" PRIu64, mailbox_id);
	snprintf(u, sizeof(u), "%" PRIu32, uid);
	snprintf(off, sizeof(off), "%" PRIu64, offset + 1); /* SQL counts from 1 */
	snprintf(len, sizeof(len), "%zu", max);
	if (store_pgpool_query(pg, &(struct store_pg_query){ .sql = sql, .nparams = 5,
							     .values = values,
							     .result_format = 1 },
			       read_tramp, o) < 0) {
		int e = errno;
		free(o);
		errno = e;
		return -1;
	}
	return 0;
}

/* ---- whole bodies through the cache ---- */

struct store_blob_cached *mail_maildrop_cached(struct store_blob_cache *cache,
					       const struct mail_maildrop_msg *msg)
{
	static const uint8_t zero[PN_SHA256_LEN];

	if (cache == NULL || msg == NULL || memcmp(msg->sha256, zero, PN_SHA256_LEN) == 0)
		return NULL;
	return store_blob_cache_get(cache, msg->sha256);
}

struct body_op {
	mail_maildrop_body_cb *cb;
	void *ctx;
	struct store_blob_cache *cache;
	size_t max;
};

static void body_tramp(void *ctx, struct store_pg_reply *reply)
{
	struct body_op *o = ctx;
	PGresult *res = reply->res;
	struct mail_maildrop_body b = { .status = STORE_OK, .error = "" };

	if (reply->status != STORE_OK) {
		b.status = reply->status;
		b.error = reply_error(reply);
	} else if (PQntuples(res) == 0) {
		b.gone = true;
	} else if (PQgetisnull(res, 0, 0) || PQgetlength(res, 0, 2) != 8) {
		/* the bytes live in an external blob store, which this
		 * version of the frontend does not read */
		b.status = STORE_PERMANENT;
		b.error = "message body is not stored in the database";
	} else if (be64(PQgetvalue(res, 0, 2)) > o->max) {
		b.status = STORE_PERMANENT;
		b.error = "message too large";
	} else {
		b.data = (const uint8_t *)PQgetvalue(res, 0, 0);
		b.len = (size_t)PQgetlength(res, 0, 0);
		if (o->cache != NULL && PQgetlength(res, 0, 1) == PN_SHA256_LEN) {
			/* the row's own key: the bytes are that body */
			b.cached = store_blob_cache_put(o->cache,
							(const uint8_t *)PQgetvalue(res, 0, 1),
							b.data, b.len);
			if (b.cached != NULL)
				b.data = store_blob_cached_data(b.cached, &b.len);
		}
	}
	o->cb(o->ctx, &b);
	if (o->cache != NULL)
		store_blob_cache_release(o->cache, &b.cached);
	free(o);
}

int mail_maildrop_read_body(struct store_pgpool *pg, struct store_blob_cache *cache,
			    uint64_t account_id, uint64_t mailbox_id, uint32_t uid, size_t max,
			    mail_maildrop_body_cb *cb, void *ctx)
{
	/* a body over max is not sent: its length alone comes back, and the
	 * caller is told (octet_length of a compressed value does not
	 * decompress it) */
	static const char sql[] =
		"SELECT CASE WHEN octet_length(b.body) <= $4::bigint THEN b.body"
		"  ELSE '\\x'::bytea END, b.sha256, octet_length(b.body)::bigint "
		"FROM messages m JOIN mail_blobs b ON b.sha256 = m.blob_sha256 "
		"WHERE m.account_id = $1 AND m.mailbox_id = $2 AND m.uid = $3";
	char a[24], m[24], u[16], mx[24];
	const char *values[4] = { a, m, u, mx };
	struct body_op *o;

	if (pg == NULL || cb == NULL || max == 0 || max > INT32_MAX) {
		errno = EINVAL;
		return -1;
	}
	o = malloc(sizeof(*o));
	if (o == NULL) {
		errno = ENOMEM;
		return -1;
	}
	o->cb = cb;
	o->ctx = ctx;
	o->cache = cache;
	o->max = max;
	snprintf(a, sizeof(a), "%" PRIu64, account_id);
	snprintf(m, sizeof(m), "%" PRIu64, mailbox_id);
	snprintf(u, sizeof(u), "%" PRIu32, uid);
	snprintf(mx, sizeof(mx), "%zu", max);
	if (store_pgpool_query(pg, &(struct store_pg_query){ .sql = sql, .nparams = 4,
							     .values = values,
							     .result_format = 1 },
			       body_tramp, o) < 0) {
		int e = errno;
		free(o);
		errno = e;
		return -1;
	}
	return 0;
}

/* ---- \Seen and expunge ---- */

static void done_tramp(void *ctx, struct store_pg_reply *reply)
{
	struct op *o = ctx;
	mail_maildrop_done_cb *cb = o->cb.done;

	cb(o->ctx, reply->status, reply->status == STORE_OK ? "" : reply_error(reply));
	free(o);
}

int mail_maildrop_set_seen(struct store_pgpool *pg, uint64_t account_id, uint64_t mailbox_id,
			   uint32_t uid, mail_maildrop_done_cb *cb, void *ctx)
{
	static const char sql[] =
		"SELECT count(*) FROM store_flags($1, $2, ARRAY[$3::bigint], 'add', 1)";
	char a[24], m[24], u[16];
	const char *values[3] = { a, m, u };

	snprintf(a, sizeof(a), "%" PRIu64, account_id);
	snprintf(m, sizeof(m), "%" PRIu64, mailbox_id);
	snprintf(u, sizeof(u), "%" PRIu32, uid);
	return op_submit(pg, &(struct store_pg_query){ .sql = sql, .nparams = 3, .values = values },
			 done_tramp, op_new((union op_cb){ .done = cb }, ctx));
}

static void expunge_tramp(void *ctx, struct store_pg_reply *reply)
{
	struct op *o = ctx;
	mail_maildrop_expunge_cb *cb = o->cb.expunge;

	if (reply->status != STORE_OK || PQntuples(reply->res) != 1) {
		cb(o->ctx, reply->status != STORE_OK ? reply->status : STORE_PERMANENT, 0, 0,
		   reply->status != STORE_OK ? reply_error(reply) : "unexpected result");
	} else {
		cb(o->ctx, STORE_OK, strtoull(PQgetvalue(reply->res, 0, 0), NULL, 10),
		   (size_t)strtoull(PQgetvalue(reply->res, 0, 1), NULL, 10), "");
	}
	free(o);
}

int mail_maildrop_expunge(struct store_pgpool *pg, uint64_t account_id, uint64_t mailbox_id,
			  const uint32_t *uids, size_t count,
			  mail_maildrop_expunge_cb *cb, void *ctx)
{
	static const char sql[] =
		"SELECT modseq, cardinality(expunged) FROM expunge_messages($1, $2, $3::bigint[], false)";
	char a[24], m[24], *list;
	const char *values[3];
	size_t cap = count * 11 + 3, pos = 0;
	int r;

	if (count == 0 || count > MAIL_MAILDROP_MAX_MESSAGES) {
		errno = EINVAL;
		return -1;
	}
	list = malloc(cap);
	if (list == NULL) {
		errno = ENOMEM;
		return -1;
	}
	list[pos++] = '{';
	for (size_t i = 0; i < count; i++)
		pos += (size_t)snprintf(list + pos, cap - pos, i > 0 ? ",%" PRIu32 : "%" PRIu32,
					uids[i]);
	list[pos++] = '}';
	list[pos] = '\0';
	snprintf(a, sizeof(a), "%" PRIu64, account_id);
	snprintf(m, sizeof(m), "%" PRIu64, mailbox_id);
	values[0] = a;
	values[1] = m;
	values[2] = list;
	r = op_submit(pg, &(struct store_pg_query){ .sql = sql, .nparams = 3, .values = values },
		      expunge_tramp, op_new((union op_cb){ .expunge = cb }, ctx));
	free(list);
	return r;
}
