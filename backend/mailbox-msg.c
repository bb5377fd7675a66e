/* Mailbox operations, part 2: messages. APPEND (MIME parse for the cached
 * ENVELOPE/BODYSTRUCTURE/header columns, body stored once through
 * deliver_message() or the external blob store), the chunked message scan
 * behind FETCH and SEARCH (rows plus, when asked, the message bytes from
 * mail_blobs or the blob store; FETCH with a body cache reads the rows
 * without bytes, takes what the cache holds and reads the rest in one more
 * query per chunk), STORE, COPY/MOVE and EXPUNGE. */
#include "mailbox-private.h"

#include "postern/buf.h"
#include "postern/hash.h"
#include "postern/mail-date.h"
#include "postern/mail-decode.h"
#include "postern/mail-imap.h"
#include "postern/mail-message.h"
#include "postern/store-blob.h"
#include "postern/store-blob-cache.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define META_FIELD_MAX (64u * 1024)
#define META_MAX (4u * 1024 * 1024)

/* ---- APPEND ---- */

struct append_op {
	struct mail_mbox_store *st;
	uint64_t account_id;
	mail_mbox_append_cb *cb;
	void *ctx;
	uint8_t sha[PN_SHA256_LEN];
	char acc[24], size[24], date[24], date_tz[16], flags[16];
	char name[MAIL_MBOX_NAME_MAX + 1];
	char *keywords;
	char *meta;
	/* external blob store: the put's reference is dropped at the end */
	bool external;
	enum mail_mbox_result res;
	uint64_t mailbox_id, modseq;
	uint32_t uidvalidity, uid;
	char error[200];
};

/* A JSON string of UTF-8 text; NUL bytes dropped (jsonb refuses \u0000
 * as text). */
static int json_string(struct pn_buf *b, const uint8_t *s, size_t len)
{
	if (pn_buf_append(b, "\"", 1) < 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = s[i];

		if (c == 0)
			continue;
		if (c == '"' || c == '\\') {
			if (pn_buf_printf(b, "\\%c", c) < 0)
				return -1;
		} else if (c < 0x20) {
			if (pn_buf_printf(b, "\\u%04x", c) < 0)
				return -1;
		} else if (pn_buf_append(b, &c, 1) < 0) {
			return -1;
		}
	}
	return pn_buf_append(b, "\"", 1);
}

/* Adds "key": value (a UTF-8 string) when it is valid UTF-8. */
static void meta_add(struct pn_buf *meta, bool *first, const char *key, const struct pn_buf *v)
{
	size_t mark = meta->end;

	if (!mail_utf8_valid(pn_buf_rptr(v), pn_buf_len(v)))
		return;
	if (pn_buf_printf(meta, "%s\"%s\":", *first ? "" : ",", key) < 0
	    || json_string(meta, pn_buf_rptr(v), pn_buf_len(v)) < 0) {
		meta->end = mark;
		return;
	}
	*first = false;
}

/* The cached columns of deliver_message()'s p_meta, as JSON. A field the
 * parser cannot give (or that is not UTF-8) is left out: FETCH then
 * computes it from the message. */
static char *build_meta(const uint8_t *data, size_t len)
{
	static const struct {
		const char *key, *field;
		bool decode;
	} fields[] = {
		{ "subject", "subject", true }, { "from", "from", true },
		{ "to", "to", true }, { "cc", "cc", true },
		{ "message_id", "message-id", false }, { "in_reply_to", "in-reply-to", false },
		{ "references", "references", false },
	};
	struct mail_message *msg = NULL;
	struct pn_buf meta, v;
	struct mail_header_field f;
	const char *error;
	bool first = true;
	char *out = NULL;

	pn_buf_init(&meta, META_MAX);
	pn_buf_init(&v, META_FIELD_MAX * 4);
	if (pn_buf_append_str(&meta, "{") < 0)
		goto done;
	if (mail_message_parse(data, len, NULL, &msg, &error) == 0) {
		if (pn_buf_printf(&meta, "\"header_size\":%zu", msg->root->hdr_size) == 0)
			first = false;
		if (mail_envelope_write(msg, NULL, &v) == 0)
			meta_add(&meta, &first, "envelope", &v);
		pn_buf_reset(&v);
		if (mail_bodystructure_write(msg, &v, true) == 0)
			meta_add(&meta, &first, "bodystructure", &v);
		pn_buf_reset(&v);
		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			int r;

			pn_buf_reset(&v);
			if (fields[i].decode) {
				r = mail_header_text(msg, msg->root, fields[i].field, &v);
			} else if (mail_part_header_find(msg, msg->root, fields[i].field, &f) == 1) {
				r = mail_header_unfold(f.value, f.value_len, &v);
			} else {
				continue;
			}
			if (r == 0 && pn_buf_len(&v) > 0 && pn_buf_len(&v) <= META_FIELD_MAX) {
				/* mail_header_text ends each value with a line end */
				while (pn_buf_len(&v) > 0 && (v.data[v.end - 1] == '\n'
							      || v.data[v.end - 1] == '\r'))
					v.end--;
				meta_add(&meta, &first, fields[i].key, &v);
			}
		}
		pn_buf_reset(&v);
		if (mail_part_header_find(msg, msg->root, "date", &f) == 1
		    && mail_header_unfold(f.value, f.value_len, &v) == 0) {
			time_t t;
			int tz;
			struct tm tm;
			char iso[40];

			if (mail_date_parse((const char *)pn_buf_rptr(&v), pn_buf_len(&v), &t, &tz) == 0
			    && gmtime_r(&t, &tm) != NULL
			    && strftime(iso, sizeof(iso), "%Y-%m-%d %H:%M:%S+00", &tm) > 0)
				(void)pn_buf_printf(&meta, "%s\"sent_date\":\"%s\"",
						    first ? "" : ",", iso);
		}
	}
	if (pn_buf_append(&meta, "}", 2) < 0)
		goto done;
	out = malloc(pn_buf_len(&meta));
	if (out != NULL)
		memcpy(out, pn_buf_rptr(&meta), pn_buf_len(&meta));
done:
	mail_message_free(&msg);
	pn_buf_free(&meta);
	pn_buf_free(&v);
	return out;
}

static void append_free(struct append_op *op)
{
	free(op->keywords);
	free(op->meta);
	free(op);
}

static void append_finish(struct append_op *op)
{
	op->cb(op->ctx, op->res, op->mailbox_id, op->uidvalidity, op->uid, op->modseq,
	       op->res == MAIL_MBOX_OK ? "" : op->error);
	append_free(op);
}

static void append_released(void *ctx, enum store_status status, bool freed, const char *error)
{
	(void)status;
	(void)freed;
	(void)error;
	append_finish(ctx);
}

static void append_delivered(void *ctx, struct store_pg_reply *reply)
{
	struct append_op *op = ctx;

	op->res = mbox_reply_result(reply);
	snprintf(op->error, sizeof(op->error), "%s", reply->error);
	if (op->res == MAIL_MBOX_OK) {
		const char *status;

		if (PQntuples(reply->res) == 0) {
			op->res = MAIL_MBOX_NONEXISTENT;
			snprintf(op->error, sizeof(op->error), "no such mailbox");
		} else {
			status = PQgetvalue(reply->res, 0, 3);
			if (strcmp(status, "ok") == 0) {
				op->mailbox_id = mbox_u64(reply->res, 0, 0);
				op->uid = (uint32_t)mbox_u64(reply->res, 0, 1);
				op->modseq = mbox_u64(reply->res, 0, 2);
				op->uidvalidity = (uint32_t)mbox_u64(reply->res, 0, 4);
				mbox_notify(op->st, op->account_id, op->mailbox_id, op->modseq,
					    (uint64_t)op->uid + 1);
			} else {
				op->res = strcmp(status, "quota") == 0 ? MAIL_MBOX_OVERQUOTA
					  : strcmp(status, "full") == 0 ? MAIL_MBOX_FULL
					  : MAIL_MBOX_NONEXISTENT;
				snprintf(op->error, sizeof(op->error), "%s", status);
			}
		}
	}
	if (op->external) {
		/* drop the reference the put took; deliver_message holds its
		 * own (or, on failure, the body goes with the last one) */
		if (store_blob_release(op->st->blob, op->sha, append_released, op) == 0)
			return;
	}
	append_finish(op);
}

static int append_deliver(struct append_op *op, const uint8_t *body, size_t len)
{
	const char *vals[11] = {
		op->acc, op->name, (const char *)op->sha, op->size, (const char *)body,
		op->date, op->flags, op->keywords, op->meta, op->external ? "t" : "f",
		op->date_tz[0] != '\0' ? op->date_tz : NULL,
	};
	int lens[11] = { 0, 0, PN_SHA256_LEN, 0, (int)len, 0, 0, 0, 0, 0, 0 };
	int fmts[11] = { 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0 };

	if (body == NULL)
		vals[4] = NULL;
	return mbox_run(op->st, MS_APPEND, 11, vals, lens, fmts, append_delivered, op);
}

static void append_put(void *ctx, enum store_status status, const uint8_t sha[PN_SHA256_LEN],
		       bool stored, const char *error)
{
	struct append_op *op = ctx;

	(void)sha;
	(void)stored;
	if (status != STORE_OK) {
		op->res = status == STORE_TEMPORARY ? MAIL_MBOX_TEMPFAIL : MAIL_MBOX_FAILED;
		snprintf(op->error, sizeof(op->error), "blob store: %s", error);
		append_finish(op);
		return;
	}
	if (append_deliver(op, NULL, 0) < 0) {
		op->res = MAIL_MBOX_TEMPFAIL;
		snprintf(op->error, sizeof(op->error), "cannot submit");
		if (store_blob_release(op->st->blob, op->sha, append_released, op) < 0)
			append_finish(op);
	}
}

int mail_mbox_append(struct mail_mbox_store *st, uint64_t account_id,
		     const struct mail_mbox_append *req, mail_mbox_append_cb *cb, void *ctx)
{
	struct append_op *op;
	const char *error;
	int r;

	if (req == NULL || req->data == NULL || req->flags >= 32
	    || req->keyword_count > MAIL_MBOX_KEYWORDS_MAX) {
		errno = EINVAL;
		return -1;
	}
	if (req->has_date && (req->date_tz <= -6000 || req->date_tz >= 6000)) {
		errno = EINVAL;
		return -1;
	}
	if (req->len > st->max_message_size || req->len > INT32_MAX) {
		errno = EFBIG;
		return -1;
	}
	for (size_t i = 0; i < req->keyword_count; i++) {
		if (!mail_keyword_valid(req->keywords[i])) {
			errno = EINVAL;
			return -1;
		}
	}
	op = calloc(1, sizeof(*op));
	if (op == NULL)
		return -1;
	if (mail_mbox_name_normalize(req->mailbox, op->name, sizeof(op->name)) < 0) {
		free(op);
		errno = EINVAL;
		return -1;
	}
	op->st = st;
	op->account_id = account_id;
	op->cb = cb;
	op->ctx = ctx;
	op->keywords = mbox_keyword_array(req->keywords, req->keyword_count);
	op->meta = build_meta(req->data, req->len);
	if (op->keywords == NULL || op->meta == NULL
	    || pn_sha256(req->data, req->len, op->sha, &error) < 0) {
		append_free(op);
		errno = ENOMEM;
		return -1;
	}
	snprintf(op->acc, sizeof(op->acc), "%" PRIu64, account_id);
	snprintf(op->size, sizeof(op->size), "%zu", req->len);
	snprintf(op->date, sizeof(op->date), "%lld",
		 (long long)(req->has_date ? req->date : time(NULL)));
	/* without a date: the zone deliver_message() picks, as for delivery */
	if (req->has_date)
		snprintf(op->date_tz, sizeof(op->date_tz), "%d", req->date_tz);
	snprintf(op->flags, sizeof(op->flags), "%u", req->flags);
	op->external = st->blob != NULL && store_blob_external(st->blob);
	if (op->external)
		r = store_blob_put(st->blob, op->sha, req->data, req->len, append_put, op);
	else
		r = append_deliver(op, req->data, req->len);
	if (r < 0) {
		append_free(op);
		return -1;
	}
	return 0;
}

/* ---- the message scan (FETCH, SEARCH) ---- */

#define SCAN_MAX_PARAMS 64

struct mbox_scan {
	struct mail_mbox_store *st;
	const struct store_pg_stmt *stmt; /* or sql */
	char *sql;
	int nparams;
	char *vals[SCAN_MAX_PARAMS];
	int from_idx;            /* the parameter holding the first UID to read */
	unsigned int limit;
	bool want_body;
	mail_mbox_msg_cb *row_cb;
	mail_mbox_done_cb *done_cb;
	void *ctx;
	/* current chunk */
	PGresult *res;
	int nrows, idx;
	const char *const **lists;
	size_t *counts;
	void *kwmem;
	uint32_t last_uid;
	/* the body cache (FETCH with st->cache), per row of the chunk: a
	 * hold on the cached body, or the bytes in bres, or neither (an
	 * external body: the blob store) */
	bool use_cache;
	uint8_t *shas;			/* nrows x PN_SHA256_LEN */
	uint8_t *sha_ok;		/* nrows: the row's SHA-256 parsed */
	struct store_blob_cached **held;
	const uint8_t **bptr;
	size_t *blen;
	PGresult *bres;			/* the MS_BODIES reply */
};

static void scan_next_chunk(struct mbox_scan *sc);
static void scan_rows(struct mbox_scan *sc);

static void scan_clear_chunk(struct mbox_scan *sc)
{
	if (sc->held != NULL)
		for (int r = 0; r < sc->nrows; r++)
			store_blob_cache_release(sc->st->cache, &sc->held[r]);
	free(sc->held);
	free(sc->bptr);
	free(sc->blen);
	free(sc->shas);
	free(sc->sha_ok);
	sc->held = NULL;
	sc->bptr = NULL;
	sc->blen = NULL;
	sc->shas = NULL;
	sc->sha_ok = NULL;
	if (sc->bres != NULL)
		PQclear(sc->bres);
	sc->bres = NULL;
	if (sc->res != NULL)
		PQclear(sc->res);
	sc->res = NULL;
	free(sc->lists);
	free(sc->counts);
	free(sc->kwmem);
	sc->lists = NULL;
	sc->counts = NULL;
	sc->kwmem = NULL;
}

static void scan_finish(struct mbox_scan *sc, enum mail_mbox_result res, const char *error)
{
	scan_clear_chunk(sc);
	sc->done_cb(sc->ctx, res, 0, error);
	for (int i = 0; i < sc->nparams; i++)
		free(sc->vals[i]);
	free(sc->sql);
	free(sc);
}

static void scan_emit(struct mbox_scan *sc, const uint8_t *data, size_t len)
{
	PGresult *res = sc->res;
	int r = sc->idx;
	struct mail_mbox_msg m = {
		.uid = (uint32_t)mbox_u64(res, r, 0),
		.modseq = mbox_u64(res, r, 1),
		.flags = (unsigned int)mbox_u64(res, r, 2),
		.keywords = sc->lists[r],
		.keyword_count = sc->counts[r],
		.internaldate = (time_t)strtoll(PQgetvalue(res, r, 4), NULL, 10),
		.internaldate_tz = (int)strtol(PQgetvalue(res, r, 10), NULL, 10),
		.size = mbox_u64(res, r, 5),
		.envelope = PQgetisnull(res, r, 6) ? NULL : PQgetvalue(res, r, 6),
		.bodystructure = PQgetisnull(res, r, 7) ? NULL : PQgetvalue(res, r, 7),
		.data = data,
		.data_len = len,
	};

	sc->last_uid = m.uid;
	sc->idx++;
	sc->row_cb(sc->ctx, &m);
}

static void scan_got_blob(void *ctx, enum store_status status, const void *data, size_t len,
			  const char *error)
{
	struct mbox_scan *sc = ctx;

	if (status != STORE_OK) {
		scan_finish(sc, status == STORE_TEMPORARY ? MAIL_MBOX_TEMPFAIL : MAIL_MBOX_FAILED,
			    error);
		return;
	}
	if (sc->use_cache && sc->sha_ok != NULL && sc->sha_ok[sc->idx]) {
		/* an external body: the blob store checked it against its key */
		struct store_blob_cached *e = store_blob_cache_put(
			sc->st->cache, sc->shas + (size_t)sc->idx * PN_SHA256_LEN, data, len);

		store_blob_cache_release(sc->st->cache, &e);
	}
	scan_emit(sc, data, len);
	scan_rows(sc);
}

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int hex_sha(const char *hex, uint8_t out[PN_SHA256_LEN])
{
	if (strlen(hex) != PN_SHA256_HEX_LEN)
		return -1;
	for (size_t i = 0; i < PN_SHA256_LEN; i++) {
		int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static void scan_rows(struct mbox_scan *sc)
{
	while (sc->idx < sc->nrows) {
		int r = sc->idx;

		if (!sc->want_body) {
			scan_emit(sc, NULL, 0);
			continue;
		}
		if (sc->use_cache) {
			if (sc->held[r] != NULL) {
				size_t len;
				const uint8_t *data = store_blob_cached_data(sc->held[r], &len);

				scan_emit(sc, data, len);
				continue;
			}
			if (sc->bptr[r] != NULL) {
				scan_emit(sc, sc->bptr[r], sc->blen[r]);
				continue;
			}
			/* not in mail_blobs.body: the blob store, below */
		} else if (!PQgetisnull(sc->res, r, 9)) {
			size_t len;
			unsigned char *body = PQunescapeBytea(
				(const unsigned char *)PQgetvalue(sc->res, r, 9), &len);

			if (body == NULL) {
				scan_finish(sc, MAIL_MBOX_TEMPFAIL, "out of memory");
				return;
			}
			scan_emit(sc, body, len);
			PQfreemem(body);
			continue;
		}
		uint8_t sha[PN_SHA256_LEN];

		if (sc->st->blob == NULL || hex_sha(PQgetvalue(sc->res, r, 8), sha) < 0
		    || store_blob_get(sc->st->blob, sha, scan_got_blob, sc) < 0)
			scan_finish(sc, MAIL_MBOX_FAILED, "message body not available");
		return;
	}
	if ((unsigned int)sc->nrows < sc->limit || sc->last_uid == UINT32_MAX) {
		scan_finish(sc, MAIL_MBOX_OK, "");
		return;
	}
	scan_clear_chunk(sc);
	free(sc->vals[sc->from_idx]);
	if (asprintf(&sc->vals[sc->from_idx], "%" PRIu32, sc->last_uid + 1) < 0) {
		sc->vals[sc->from_idx] = NULL;
		scan_finish(sc, MAIL_MBOX_TEMPFAIL, "out of memory");
		return;
	}
	scan_next_chunk(sc);
}

/* The MS_BODIES reply: the bodies the cache did not have, in binary
 * (sha256, body) rows; each goes into the cache and to its rows. */
static void scan_bodies_done(void *ctx, struct store_pg_reply *reply)
{
	struct mbox_scan *sc = ctx;
	enum mail_mbox_result res = mbox_reply_result(reply);
	int n;

	if (res != MAIL_MBOX_OK) {
		scan_finish(sc, res, reply->error);
		return;
	}
	sc->bres = reply->res;
	reply->res = NULL;
	n = PQntuples(sc->bres);
	for (int b = 0; b < n; b++) {
		const uint8_t *sha = (const uint8_t *)PQgetvalue(sc->bres, b, 0);
		const uint8_t *body = (const uint8_t *)PQgetvalue(sc->bres, b, 1);
		size_t len = (size_t)PQgetlength(sc->bres, b, 1);
		struct store_blob_cached *e;

		if (PQgetisnull(sc->bres, b, 1) || PQgetlength(sc->bres, b, 0) != PN_SHA256_LEN)
			continue; /* an external body (or nonsense): the blob store */
		e = store_blob_cache_put(sc->st->cache, sha, body, len);
		store_blob_cache_release(sc->st->cache, &e);
		for (int r = 0; r < sc->nrows; r++) {
			if (sc->held[r] == NULL && sc->bptr[r] == NULL && sc->sha_ok[r] &&
			    memcmp(sc->shas + (size_t)r * PN_SHA256_LEN, sha, PN_SHA256_LEN) == 0) {
				sc->bptr[r] = body;
				sc->blen[r] = len;
			}
		}
	}
	scan_rows(sc);
}

/* FETCH with the cache: holds on the cached bodies of the chunk's rows,
 * then one MS_BODIES query for the others (none when all were cached). */
static void scan_lookup(struct mbox_scan *sc)
{
	size_t n = (size_t)sc->nrows, used = 0;
	char *list;

	sc->shas = malloc(n * PN_SHA256_LEN);
	sc->sha_ok = calloc(n, 1);
	sc->held = calloc(n, sizeof(*sc->held));
	sc->bptr = calloc(n, sizeof(*sc->bptr));
	sc->blen = calloc(n, sizeof(*sc->blen));
	list = malloc(n * (PN_SHA256_HEX_LEN + 1) + 1);
	if (sc->shas == NULL || sc->sha_ok == NULL || sc->held == NULL || sc->bptr == NULL ||
	    sc->blen == NULL || list == NULL) {
		free(list);
		scan_finish(sc, MAIL_MBOX_TEMPFAIL, "out of memory");
		return;
	}
	for (size_t r = 0; r < n; r++) {
		const char *hex = PQgetvalue(sc->res, (int)r, 8);
		uint8_t *sha = sc->shas + r * PN_SHA256_LEN;

		if (hex_sha(hex, sha) < 0)
			continue; /* left to the blob store path, which refuses it */
		sc->sha_ok[r] = 1;
		sc->held[r] = store_blob_cache_get(sc->st->cache, sha);
		if (sc->held[r] == NULL) {
			memcpy(list + used, hex, PN_SHA256_HEX_LEN);
			used += PN_SHA256_HEX_LEN;
			list[used++] = ',';
		}
	}
	if (used == 0) {
		free(list);
		scan_rows(sc);
		return;
	}
	list[used - 1] = '\0';
	{
		const char *vals[1] = { list };
		struct store_pg_query q = {
			.stmt = sc->st->stmt[MS_BODIES],
			.nparams = 1,
			.values = vals,
			.result_format = 1,
		};
		int rc = store_pgpool_query(sc->st->pool, &q, scan_bodies_done, sc);

		free(list);
		if (rc < 0)
			scan_finish(sc, MAIL_MBOX_TEMPFAIL, "cannot submit");
	}
}

static void scan_chunk_done(void *ctx, struct store_pg_reply *reply)
{
	struct mbox_scan *sc = ctx;
	enum mail_mbox_result res = mbox_reply_result(reply);

	if (res != MAIL_MBOX_OK) {
		scan_finish(sc, res, reply->error);
		return;
	}
	sc->res = reply->res;
	reply->res = NULL;
	sc->nrows = PQntuples(sc->res);
	sc->idx = 0;
	sc->lists = calloc((size_t)sc->nrows + 1, sizeof(*sc->lists));
	sc->counts = calloc((size_t)sc->nrows + 1, sizeof(*sc->counts));
	if (sc->lists == NULL || sc->counts == NULL
	    || mbox_split_rows(sc->res, 3, sc->nrows, sc->lists, sc->counts, &sc->kwmem) < 0) {
		scan_finish(sc, MAIL_MBOX_TEMPFAIL, "out of memory");
		return;
	}
	if (sc->use_cache && sc->nrows > 0) {
		scan_lookup(sc);
		return;
	}
	scan_rows(sc);
}

static int scan_submit(struct mbox_scan *sc)
{
	struct store_pg_query q = {
		.sql = sc->sql,
		.stmt = sc->sql == NULL ? sc->stmt : NULL,
		.nparams = sc->nparams,
		.values = (const char *const *)sc->vals,
	};

	return store_pgpool_query(sc->st->pool, &q, scan_chunk_done, sc);
}

static void scan_next_chunk(struct mbox_scan *sc)
{
	if (scan_submit(sc) < 0)
		scan_finish(sc, MAIL_MBOX_TEMPFAIL, "cannot submit");
}

struct mbox_scan *mbox_scan_new(struct mail_mbox_store *st, bool want_body,
				mail_mbox_msg_cb *row_cb, mail_mbox_done_cb *done_cb, void *ctx)
{
	struct mbox_scan *sc = calloc(1, sizeof(*sc));

	if (sc == NULL)
		return NULL;
	sc->st = st;
	sc->want_body = want_body;
	sc->limit = want_body ? st->fetch_chunk : 5000;
	sc->row_cb = row_cb;
	sc->done_cb = done_cb;
	sc->ctx = ctx;
	return sc;
}

int mbox_scan_param(struct mbox_scan *sc, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (sc->nparams >= SCAN_MAX_PARAMS)
		return -1;
	va_start(ap, fmt);
	r = vasprintf(&sc->vals[sc->nparams], fmt, ap);
	va_end(ap);
	if (r < 0) {
		sc->vals[sc->nparams] = NULL;
		return -1;
	}
	return ++sc->nparams;
}

unsigned int mbox_scan_limit(const struct mbox_scan *sc)
{
	return sc->limit;
}

void mbox_scan_abort(struct mbox_scan *sc)
{
	for (int i = 0; i < sc->nparams; i++)
		free(sc->vals[i]);
	free(sc->sql);
	free(sc);
}

/* sql NULL: the FETCH statement. from_idx: 0-based index of the parameter
 * with the first UID to read; the limit is the parameter after the
 * caller's, added here. */
int mbox_scan_start(struct mbox_scan *sc, const char *sql, int from_idx)
{
	sc->from_idx = from_idx;
	if (sql != NULL) {
		sc->sql = strdup(sql);
		if (sc->sql == NULL)
			return -1;
	} else {
		sc->stmt = sc->st->stmt[MS_FETCH];
	}
	return scan_submit(sc);
}

int mail_mbox_fetch(struct mail_mbox_store *st, uint64_t account_id, uint64_t mailbox_id,
		    const struct mail_uidset *uids, unsigned int what,
		    mail_mbox_msg_cb *msg_cb, mail_mbox_done_cb *done_cb, void *ctx)
{
	bool body = (what & MAIL_FETCH_BODY) != 0;
	struct mbox_scan *sc;
	char lo[24], hi[24], *mr;

	if (mbox_uidset_sql(uids, lo, hi, &mr) < 0) {
		errno = EINVAL;
		return -1;
	}
	sc = mbox_scan_new(st, body, msg_cb, done_cb, ctx);
	if (sc != NULL)
		sc->use_cache = body && st->cache != NULL;
	if (sc == NULL || mbox_scan_param(sc, "%" PRIu64, account_id) < 0
	    || mbox_scan_param(sc, "%" PRIu64, mailbox_id) < 0
	    || mbox_scan_param(sc, "%s", lo) < 0 || mbox_scan_param(sc, "%s", hi) < 0
	    || mbox_scan_param(sc, "%s", mr) < 0
	    || mbox_scan_param(sc, "%u", sc->limit) < 0
	    || mbox_scan_param(sc, "%s", body && !sc->use_cache ? "t" : "f") < 0
	    || mbox_scan_start(sc, NULL, 2) < 0) {
		if (sc != NULL)
			mbox_scan_abort(sc);
		free(mr);
		return -1;
	}
	free(mr);
	return 0;
}

/* ---- STORE ---- */

struct store_op {
	struct mail_mbox_store *st;
	uint64_t account_id, mailbox_id;
	mail_mbox_store_cb *cb;
	void *ctx;
};

static void store_done(void *ctx, struct store_pg_reply *reply)
{
	struct store_op *op = ctx;
	enum mail_mbox_result res = mbox_reply_result(reply);
	struct mail_mbox_stored *out = NULL;
	const char *const **lists = NULL;
	size_t *counts = NULL;
	void *mem = NULL;
	uint64_t maxmod = 0;
	int n;

	if (res != MAIL_MBOX_OK) {
		op->cb(op->ctx, res, NULL, 0, reply->error);
		free(op);
		return;
	}
	n = PQntuples(reply->res);
	out = calloc((size_t)n + 1, sizeof(*out));
	lists = calloc((size_t)n + 1, sizeof(*lists));
	counts = calloc((size_t)n + 1, sizeof(*counts));
	if (out == NULL || lists == NULL || counts == NULL
	    || mbox_split_rows(reply->res, 3, n, lists, counts, &mem) < 0) {
		op->cb(op->ctx, MAIL_MBOX_TEMPFAIL, NULL, 0, "out of memory");
		goto out;
	}
	for (int r = 0; r < n; r++) {
		out[r].uid = (uint32_t)mbox_u64(reply->res, r, 0);
		out[r].modseq = mbox_u64(reply->res, r, 1);
		out[r].flags = (unsigned int)mbox_u64(reply->res, r, 2);
		out[r].keywords = lists[r];
		out[r].keyword_count = counts[r];
		out[r].updated = PQgetvalue(reply->res, r, 4)[0] == 't';
		if (out[r].updated && out[r].modseq > maxmod)
			maxmod = out[r].modseq;
	}
	if (maxmod != 0)
		mbox_notify(op->st, op->account_id, op->mailbox_id, maxmod, 0);
	op->cb(op->ctx, MAIL_MBOX_OK, out, (size_t)n, "");
out:
	free(out);
	free(lists);
	free(counts);
	free(mem);
	free(op);
}

int mail_mbox_store_flags(struct mail_mbox_store *st, uint64_t account_id,
			  uint64_t mailbox_id, const struct mail_mbox_store_req *req,
			  mail_mbox_store_cb *cb, void *ctx)
{
	static const char *const modes[] = { "replace", "add", "remove" };
	char acc[24], mb[24], lo[24], hi[24], fl[16], since[24];
	char *mr = NULL, *kw = NULL;
	struct store_op *op;
	int r = -1;

	if (req == NULL || req->flags >= 32 || (unsigned int)req->mode > MAIL_STORE_REMOVE
	    || req->keyword_count > MAIL_MBOX_KEYWORDS_MAX) {
		errno = EINVAL;
		return -1;
	}
	for (size_t i = 0; i < req->keyword_count; i++) {
		if (!mail_keyword_valid(req->keywords[i])) {
			errno = EINVAL;
			return -1;
		}
	}
	if (mbox_uidset_sql(req->uids, lo, hi, &mr) < 0) {
		errno = EINVAL;
		return -1;
	}
	kw = mbox_keyword_array(req->keywords, req->keyword_count);
	op = calloc(1, sizeof(*op));
	if (kw != NULL && op != NULL) {
		const char *vals[9] = { acc, mb, lo, hi, mr, modes[req->mode], fl, kw,
					req->unchangedsince != 0 ? since : NULL };

		op->st = st;
		op->account_id = account_id;
		op->mailbox_id = mailbox_id;
		op->cb = cb;
		op->ctx = ctx;
		snprintf(acc, sizeof(acc), "%" PRIu64, account_id);
		snprintf(mb, sizeof(mb), "%" PRIu64, mailbox_id);
		snprintf(fl, sizeof(fl), "%u", req->flags);
		snprintf(since, sizeof(since), "%" PRIu64, req->unchangedsince);
		r = mbox_run(st, MS_STORE, 9, vals, NULL, NULL, store_done, op);
	}
	if (r < 0)
		free(op);
	free(kw);
	free(mr);
	return r;
}

/* ---- COPY / MOVE ---- */

struct copy_op {
	struct mail_mbox_store *st;
	uint64_t account_id, src;
	bool move;
	mail_mbox_copy_cb *cb;
	void *ctx;
};

static void copy_done(void *ctx, struct store_pg_reply *reply)
{
	struct copy_op *op = ctx;
	enum mail_mbox_result res = mbox_reply_result(reply);
	uint32_t *src = NULL, *dst = NULL, uidvalidity;
	size_t n = 0;
	int rows;

	if (res == MAIL_MBOX_OK && PQntuples(reply->res) == 0)
		res = MAIL_MBOX_NONEXISTENT;
	if (res != MAIL_MBOX_OK) {
		op->cb(op->ctx, res, 0, NULL, NULL, 0, reply->error[0] != '\0' ? reply->error
						       : "no such mailbox");
		free(op);
		return;
	}
	rows = PQntuples(reply->res);
	uidvalidity = (uint32_t)mbox_u64(reply->res, 0, 4);
	src = calloc((size_t)rows, sizeof(*src));
	dst = calloc((size_t)rows, sizeof(*dst));
	if (src == NULL || dst == NULL) {
		op->cb(op->ctx, MAIL_MBOX_TEMPFAIL, 0, NULL, NULL, 0, "out of memory");
		goto out;
	}
	for (int r = 0; r < rows; r++) {
		if (PQgetisnull(reply->res, r, 0))
			continue;
		src[n] = (uint32_t)mbox_u64(reply->res, r, 0);
		dst[n] = (uint32_t)mbox_u64(reply->res, r, 1);
		n++;
	}
	if (n > 0) {
		mbox_notify(op->st, op->account_id, mbox_u64(reply->res, 0, 3),
			    mbox_u64(reply->res, 0, 2), (uint64_t)dst[n - 1] + 1);
		if (op->move)
			mbox_notify(op->st, op->account_id, op->src,
				    mbox_u64(reply->res, 0, 5), 0);
	}
	op->cb(op->ctx, MAIL_MBOX_OK, uidvalidity, src, dst, n, "");
out:
	free(src);
	free(dst);
	free(op);
}

int mail_mbox_copy(struct mail_mbox_store *st, uint64_t account_id, uint64_t src_mailbox_id,
		   const struct mail_uidset *uids, const char *dst_name, bool move,
		   mail_mbox_copy_cb *cb, void *ctx)
{
	char acc[24], mb[24], lo[24], hi[24], nm[MAIL_MBOX_NAME_MAX + 1], *mr;
	const char *vals[6] = { acc, mb, lo, hi, NULL, nm };
	struct copy_op *op;

	if (mail_mbox_name_normalize(dst_name, nm, sizeof(nm)) < 0
	    || mbox_uidset_sql(uids, lo, hi, &mr) < 0) {
		errno = EINVAL;
		return -1;
	}
	vals[4] = mr;
	op = calloc(1, sizeof(*op));
	if (op == NULL) {
		free(mr);
		return -1;
	}
	op->st = st;
	op->account_id = account_id;
	op->src = src_mailbox_id;
	op->move = move;
	op->cb = cb;
	op->ctx = ctx;
	snprintf(acc, sizeof(acc), "%" PRIu64, account_id);
	snprintf(mb, sizeof(mb), "%" PRIu64, src_mailbox_id);
	if (mbox_run(st, move ? MS_MOVE : MS_COPY, 6, vals, NULL, NULL, copy_done, op) < 0) {
		free(op);
		free(mr);
		return -1;
	}
	free(mr);
	return 0;
}

/* ---- EXPUNGE ---- */

struct expunge_op {
	struct mail_mbox_store *st;
	uint64_t account_id, mailbox_id;
	mail_mbox_expunge_cb *cb;
	void *ctx;
};

static void expunge_done(void *ctx, struct store_pg_reply *reply)
{
	struct expunge_op *op = ctx;
	enum mail_mbox_result res = mbox_reply_result(reply);
	uint32_t *uids = NULL;
	size_t n = 0;
	uint64_t modseq;

	if (res == MAIL_MBOX_OK && PQntuples(reply->res) != 1)
		res = MAIL_MBOX_FAILED;
	if (res != MAIL_MBOX_OK) {
		op->cb(op->ctx, res, NULL, 0, 0, reply->error);
		free(op);
		return;
	}
	modseq = mbox_u64(reply->res, 0, 0);
	if (mbox_parse_uids(PQgetvalue(reply->res, 0, 1), &uids, &n) < 0) {
		op->cb(op->ctx, MAIL_MBOX_TEMPFAIL, NULL, 0, 0, "out of memory");
	} else {
		if (n > 0)
			mbox_notify(op->st, op->account_id, op->mailbox_id, modseq, 0);
		op->cb(op->ctx, MAIL_MBOX_OK, uids, n, modseq, "");
	}
	free(uids);
	free(op);
}

int mail_mbox_expunge(struct mail_mbox_store *st, uint64_t account_id, uint64_t mailbox_id,
		      const struct mail_uidset *uids, mail_mbox_expunge_cb *cb, void *ctx)
{
	char acc[24], mb[24], lo[24], hi[24], *mr;
	const char *vals[6] = { acc, mb, lo, hi, NULL, uids != NULL ? "t" : "f" };
	struct expunge_op *op;

	if (mbox_uidset_sql(uids, lo, hi, &mr) < 0) {
		errno = EINVAL;
		return -1;
	}
	vals[4] = mr;
	op = calloc(1, sizeof(*op));
	if (op == NULL) {
		free(mr);
		return -1;
	}
	op->st = st;
	op->account_id = account_id;
	op->mailbox_id = mailbox_id;
	op->cb = cb;
	op->ctx = ctx;
	snprintf(acc, sizeof(acc), "%" PRIu64, account_id);
	snprintf(mb, sizeof(mb), "%" PRIu64, mailbox_id);
	if (mbox_run(st, MS_EXPUNGE, 6, vals, NULL, NULL, expunge_done, op) < 0) {
		free(op);
		free(mr);
		return -1;
	}
	free(mr);
	return 0;
}
