/* Local delivery on the asynchronous PostgreSQL pool: recipient checks
 * (resolve_rcpts() plus relay, disabled and quota decisions), the
 * submission sender check, and delivery of one message to N recipients as
 * one statement, deliver_mail() (storage/sql/005_deliver_mail.sql), which
 * the pool runs in autocommit: resolution, the stored body (Return-Path: /
 * Delivered-To: in front, hashed there), mailbox locks, the duplicate guard
 * by Message-ID, quota, the messages rows with the ENVELOPE /
 * BODYSTRUCTURE / header cache prepared here from the MIME library, usage
 * counters and the outbound queue all commit together or not at all. A
 * change notification per mailbox goes to Redis after the commit. The
 * contract and the decisions are in postern/mail-delivery.h and
 * docs/storage.md.
 *
 * A delivery is at most two round trips:
 *   [parse] -> [from check, submission only] -> deliver_mail() -> publish
 *   -> callback
 * The parse (line ends, the MIME structure for the ENVELOPE / BODYSTRUCTURE
 * cache: milliseconds for a large message) runs on the settings' worker
 * pool when there is one, so that it does not stall the loop's other
 * sessions; its completion goes on from the loop thread.
 * A deadlock or serialization failure runs the statement again (twice at
 * most); any other failure answers every recipient with TEMPFAIL
 * (temporary) or PERMFAIL.
 */
#include "postern/mail-delivery.h"

#include "postern/buf.h"
#include "postern/hash.h"
#include "postern/log.h"
#include "postern/mail-date.h"
#include "postern/mail-decode.h"
#include "postern/mail-imap.h"
#include "postern/mail-message.h"
#include "postern/store-pgpool.h"
#include "postern/store-redis-ops.h"
#include "postern/workpool.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEDUP_WINDOW_DEFAULT 600
#define PREFIX_MAX (2 * MAIL_DELIVERY_ADDRESS_MAX + 64)	/* Return-Path, Delivered-To */
#define META_CACHE_MAX (4u * 1024 * 1024)	/* ENVELOPE / BODYSTRUCTURE */
#define META_FIELD_MAX (64u * 1024)		/* subject, from, ... */
#define MAX_TX_RETRIES 2

/* ---- SQL ---- */

/* One row per (recipient, resolved target), recipients in order. A row with
 * address NULL: unknown. account_id NULL with an address: remote. $2: where
 * an unqualified Postmaster goes (NULL: the primary domain's postmaster). */
static const char sql_resolve[] = "SELECT * FROM resolve_rcpts($1::text[], $2::text)";
enum { R_I, R_ACCOUNT, R_ENABLED, R_TENANT, R_LOCALDOM, R_MAILBOX, R_ADDRESS,
       R_QB, R_QM, R_UB, R_UM, R_TQB, R_TQM, R_TB, R_TM };

/* The account's tenant, and whether every (address, +tag-stripped address)
 * pair names the account itself or an alias of it. */
static const char sql_sender[] =
	"SELECT ac.tenant_id, coalesce((SELECT bool_and(lower(ac.address) IN (f.a, f.b)"
	"  OR EXISTS (SELECT 1 FROM aliases al WHERE lower(al.source) IN (f.a, f.b)"
	"    AND lower(al.destination) = lower(ac.address)))"
	"  FROM (SELECT lower(x.a) AS a, lower(x.b) AS b"
	"   FROM unnest($2::text[], $3::text[]) AS x (a, b)) AS f), false)"
	" FROM accounts ac WHERE ac.id = $1::bigint";

/* The whole delivery, one transaction (storage/sql/005_deliver_mail.sql). */
static const char sql_deliver[] =
	"SELECT rcpt, kind, account_id, mailbox_id, uid, modseq, quota_bytes,"
	" encode(sha256, 'hex'), size, queue_id FROM deliver_mail($1::text[], $2::text,"
	" $3::bigint, $4::bigint, $5::text, $6::bytea, $7::bytea, $8::bigint, $9::text,"
	" $10::text, $11::timestamptz, $12::text, $13::text, $14::text, $15::text, $16::text,"
	" $17::text, $18::text, $19::integer, $20::text, $21::text)";
enum { D_RCPT, D_KIND, D_ACCOUNT, D_MAILBOX, D_UID, D_MODSEQ, D_QUOTA, D_SHA, D_SIZE, D_QUEUE };
#define D_NPARAMS 21

/* ---- types ---- */

struct mail_delivery {
	struct store_pgpool *pool;
	struct store_redis *redis;
	struct pn_workpool *workers;	/* NULL: parse on the loop */
	struct pn_loop *loop;
	unsigned int workers_max_pending;	/* 0: no bound */
	unsigned int window;
	char *postmaster;		/* NULL: the primary domain's */
	const struct store_pg_stmt *st_resolve, *st_sender, *st_deliver;
	unsigned int busy;
};

enum op_kind { OP_RCPT, OP_SENDER, OP_DELIVER };

enum tgt_state {
	T_OK,		/* stored */
	T_DUP,		/* skipped by the duplicate guard */
	T_QUOTA,
	T_GONE,		/* mailbox deleted meanwhile */
	T_FULL,		/* no UIDs left */
	T_QUEUED,	/* remote: in the outbound queue */
};

/* One row of deliver_mail() that names a target. */
struct tgt {
	size_t rcpt;
	uint64_t account_id, mailbox_id;	/* 0: remote */
	int64_t quota_bytes;
	enum tgt_state st;
	uint64_t uid, modseq;
};

enum meta_field {
	M_ENVELOPE, M_BODYSTRUCTURE, M_SENT_DATE, M_SUBJECT, M_FROM, M_TO, M_CC,
	M_MESSAGE_ID, M_IN_REPLY_TO, M_REFERENCES, M_COUNT
};

struct mail_op {
	struct mail_delivery *d;
	enum op_kind kind;
	union {
		mail_rcpt_cb *rcpt;
		mail_sender_cb *sender;
		mail_deliver_cb *deliver;
	} cb;
	void *ctx;
	bool cancelled;
	char error[256];

	/* RCPT and sender */
	char *addr;
	uint64_t size_hint;
	bool allow_relay;
	uint64_t account_id;

	/* DATA */
	char *mail_from, *envid, *ret;
	char **rcpts;
	size_t nrcpt;
	struct mail_deliver_rcpt *res;
	bool *rcpt_final;
	struct pn_buf body;		/* the message with CRLF line ends, when copied */
	/* The message as stored: the caller's (message_kept, CRLF already)
	 * or body. */
	const uint8_t *data;
	size_t data_len;
	bool check_crlf;		/* data is the caller's: copy if a bare LF */
	int prep_ret;			/* prepare_body(): 0 or -1 (out of memory) */
	size_t blob_len;		/* as stored, from deliver_mail() */
	struct mail_message *msg;
	char *meta[M_COUNT];
	char **from_a, **from_b;
	size_t nfrom;
	uint64_t sender_tenant;
	struct tgt *t;
	size_t nt;
	unsigned int retries;
	char id[17];
	uint64_t queue_id;
};

/* ---- small helpers ---- */

static char *xstrdup(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

/* "what: detail", or "what" when detail is NULL. */
static void set_error(struct mail_op *op, const char *what, const char *detail)
{
	snprintf(op->error, sizeof(op->error), "%s%s%s", what, detail != NULL ? ": " : "",
		 detail != NULL ? detail : "");
}

/* Envelope addresses: bounded, no control characters (they end up in
 * header lines). */
static bool address_ok(const char *s, bool allow_empty)
{
	size_t n = 0;

	if (s == NULL)
		return false;
	for (; s[n] != '\0'; n++) {
		unsigned char c = (unsigned char)s[n];

		if (c < 0x20 || c == 0x7f || n >= MAIL_DELIVERY_ADDRESS_MAX)
			return false;
	}
	return n > 0 || allow_empty;
}

/* lower-case (ASCII) copy, and the +tag-stripped form "base@domain". */
static int address_forms(const char *addr, char **a_r, char **b_r)
{
	const char *at = strrchr(addr, '@');
	size_t len = strlen(addr);
	char *a = malloc(len + 1), *b = malloc(len + 1);

	if (a == NULL || b == NULL) {
		free(a);
		free(b);
		return -1;
	}
	for (size_t i = 0; i <= len; i++) {
		char c = addr[i];

		a[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	memcpy(b, a, len + 1);
	if (at != NULL) {
		size_t at_i = (size_t)(at - addr);
		const char *plus = memchr(a, '+', at_i);

		if (plus != NULL && plus > a) {
			size_t keep = (size_t)(plus - a);

			memmove(b + keep, a + at_i, len - at_i + 1);
		}
	}
	*a_r = a;
	*b_r = b;
	return 0;
}

/* Appends a PostgreSQL array literal of strings. */
static int array_text(struct pn_buf *out, char *const *v, size_t n)
{
	if (pn_buf_append(out, "{", 1) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && pn_buf_append(out, ",", 1) < 0)
			return -1;
		if (pn_buf_append(out, "\"", 1) < 0)
			return -1;
		for (const char *p = v[i]; *p != '\0'; p++) {
			if ((*p == '"' || *p == '\\') && pn_buf_append(out, "\\", 1) < 0)
				return -1;
			if (pn_buf_append(out, p, 1) < 0)
				return -1;
		}
		if (pn_buf_append(out, "\"", 1) < 0)
			return -1;
	}
	return pn_buf_append(out, "}\0", 2);
}

static uint64_t col_u64(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return 0;
	return strtoull(PQgetvalue(res, row, col), NULL, 10);
}

static int64_t col_i64(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return -1;
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static bool col_bool(const PGresult *res, int row, int col)
{
	return !PQgetisnull(res, row, col) && PQgetvalue(res, row, col)[0] == 't';
}

/* ---- life cycle ---- */

struct mail_delivery *mail_delivery_new(const struct mail_delivery_settings *set,
					const char **error_r)
{
	struct mail_delivery *d;

	if (set == NULL || set->pool == NULL) {
		*error_r = "mail_delivery_new: a pool is required";
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	d->pool = set->pool;
	d->redis = set->redis;
	if (set->workers != NULL && set->loop != NULL) {
		d->workers = set->workers;
		d->loop = set->loop;
		d->workers_max_pending = set->workers_max_pending;
	}
	d->window = set->dedup_window_secs != 0 ? set->dedup_window_secs : DEDUP_WINDOW_DEFAULT;
	if (set->postmaster != NULL && set->postmaster[0] != '\0') {
		if (!address_ok(set->postmaster, false) || strchr(set->postmaster, '@') == NULL) {
			*error_r = "mail_delivery_new: postmaster must be an address user@domain";
			free(d);
			return NULL;
		}
		if ((d->postmaster = strdup(set->postmaster)) == NULL) {
			*error_r = "out of memory";
			free(d);
			return NULL;
		}
	}
	if ((d->st_resolve = store_pgpool_declare(d->pool, "mail_resolve", sql_resolve, 2,
						  NULL, error_r)) == NULL ||
	    (d->st_sender = store_pgpool_declare(d->pool, "mail_sender", sql_sender, 3,
						 NULL, error_r)) == NULL ||
	    (d->st_deliver = store_pgpool_declare(d->pool, "mail_deliver_mail", sql_deliver,
						  D_NPARAMS, NULL, error_r)) == NULL) {
		free(d->postmaster);
		free(d);
		return NULL;
	}
	return d;
}

void mail_delivery_free(struct mail_delivery **d)
{
	if (d == NULL || *d == NULL)
		return;
	free((*d)->postmaster);
	free(*d);
	*d = NULL;
}

unsigned int mail_delivery_busy(const struct mail_delivery *d)
{
	return d->busy;
}

void mail_delivery_cancel(struct mail_op **op)
{
	if (op == NULL || *op == NULL)
		return;
	(*op)->cancelled = true;
	*op = NULL;
}

int mail_delivery_notify_format(char *buf, size_t size, uint64_t uid, uint64_t modseq)
{
	int n = snprintf(buf, size, "v=1 modseq=%" PRIu64 " uidnext=%" PRIu64, modseq, uid + 1);

	return (n < 0 || (size_t)n >= size) ? -1 : n;
}

static struct mail_op *op_new(struct mail_delivery *d, enum op_kind kind, void *ctx)
{
	struct mail_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->d = d;
	op->kind = kind;
	op->ctx = ctx;
	d->busy++;
	return op;
}

static void op_free(struct mail_op *op)
{
	op->d->busy--;
	free(op->addr);
	free(op->mail_from);
	free(op->envid);
	free(op->ret);
	for (size_t i = 0; i < op->nrcpt; i++)
		free(op->rcpts[i]);
	free(op->rcpts);
	free(op->res);
	free(op->rcpt_final);
	pn_buf_free(&op->body);
	mail_message_free(&op->msg);
	for (int i = 0; i < M_COUNT; i++)
		free(op->meta[i]);
	for (size_t i = 0; i < op->nfrom; i++) {
		free(op->from_a[i]);
		free(op->from_b[i]);
	}
	free(op->from_a);
	free(op->from_b);
	free(op->t);
	free(op);
}

/* ---- RCPT ---- */

struct rcpt_eval {
	unsigned int ok_local, ok_remote, disabled, over, relay;
	uint64_t account_id, mailbox_id;
};

/* Classifies the resolve rows [first, end) of one recipient. */
static void rcpt_evaluate(const PGresult *res, int first, int end, uint64_t size_hint,
			  bool allow_relay, bool check_quota, struct rcpt_eval *e)
{
	memset(e, 0, sizeof(*e));
	for (int r = first; r < end; r++) {
		if (PQgetisnull(res, r, R_ADDRESS))
			continue;			/* unknown */
		if (PQgetisnull(res, r, R_ACCOUNT)) {
			/* remote: forwarding from one of our domains, or relay */
			if (col_bool(res, r, R_LOCALDOM) || allow_relay)
				e->ok_remote++;
			else
				e->relay++;
			continue;
		}
		if (!col_bool(res, r, R_ENABLED)) {
			e->disabled++;
			continue;
		}
		if (PQgetisnull(res, r, R_MAILBOX))
			continue;			/* no INBOX: treat as unknown */
		if (check_quota) {
			uint64_t sz = size_hint > 0 ? size_hint : 1;
			int64_t qb = col_i64(res, r, R_QB), qm = col_i64(res, r, R_QM);
			int64_t ub = col_i64(res, r, R_UB), um = col_i64(res, r, R_UM);
			int64_t tqb = col_i64(res, r, R_TQB), tqm = col_i64(res, r, R_TQM);
			int64_t tb = col_i64(res, r, R_TB), tm = col_i64(res, r, R_TM);

			if ((qb >= 0 && (uint64_t)ub + sz > (uint64_t)qb) ||
			    (qm >= 0 && um + 1 > qm) ||
			    (tqb >= 0 && (uint64_t)tb + sz > (uint64_t)tqb) ||
			    (tqm >= 0 && tm + 1 > tqm)) {
				e->over++;
				continue;
			}
		}
		if (e->ok_local++ == 0) {
			e->account_id = col_u64(res, r, R_ACCOUNT);
			e->mailbox_id = col_u64(res, r, R_MAILBOX);
		}
	}
}

static void rcpt_done(void *ctx, struct store_pg_reply *reply)
{
	struct mail_op *op = ctx;
	struct mail_rcpt_info info = { .status = MAIL_RCPT_TEMPFAIL, .error = "" };
	struct rcpt_eval e;

	if (reply->status != STORE_OK) {
		set_error(op, "recipient check", reply->error);
		info.error = op->error;
		if (reply->status == STORE_PERMANENT)
			pn_warn("event=rcpt_check_failed error=\"%s\"", reply->error);
	} else {
		rcpt_evaluate(reply->res, 0, PQntuples(reply->res), op->size_hint,
			      op->allow_relay, true, &e);
		if (e.ok_local > 0 || e.ok_remote > 0) {
			info.status = MAIL_RCPT_OK;
			info.account_id = e.account_id;
			info.mailbox_id = e.mailbox_id;
			info.local_targets = e.ok_local;
			info.remote_targets = e.ok_remote;
		} else if (e.over > 0) {
			info.status = MAIL_RCPT_OVER_QUOTA;
		} else if (e.disabled > 0) {
			info.status = MAIL_RCPT_DISABLED;
		} else if (e.relay > 0) {
			info.status = MAIL_RCPT_RELAY_DENIED;
		} else {
			info.status = MAIL_RCPT_UNKNOWN;
		}
	}
	if (!op->cancelled)
		op->cb.rcpt(op->ctx, &info);
	op_free(op);
}

struct mail_op *mail_rcpt_check(struct mail_delivery *d, const char *address,
				uint64_t size_hint, bool allow_relay,
				mail_rcpt_cb *cb, void *ctx, const char **error_r)
{
	struct mail_op *op;
	struct pn_buf arr;
	const char *values[2];
	/* a client waits on it: ahead of the deliveries in the pool */
	struct store_pg_query q = { .nparams = 2, .values = values, .priority = true };
	int ret;

	if (d == NULL || cb == NULL || !address_ok(address, false)) {
		*error_r = "mail_rcpt_check: bad arguments";
		return NULL;
	}
	op = op_new(d, OP_RCPT, ctx);
	if (op == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	op->cb.rcpt = cb;
	op->size_hint = size_hint;
	op->allow_relay = allow_relay;
	pn_buf_init(&arr, 4 * MAIL_DELIVERY_ADDRESS_MAX);
	{
		char *one[1] = { (char *)address };

		ret = array_text(&arr, one, 1);
	}
	values[0] = (const char *)pn_buf_rptr(&arr);
	values[1] = d->postmaster;
	q.stmt = d->st_resolve;
	if (ret < 0 || store_pgpool_query(d->pool, &q, rcpt_done, op) < 0) {
		pn_buf_free(&arr);
		op_free(op);
		*error_r = "recipient check not submitted";
		return NULL;
	}
	pn_buf_free(&arr);
	return op;
}

/* ---- sender check (MAIL FROM and From:) ---- */

/* Submits the ownership query for op->from_a / op->from_b. */
static int sender_query(struct mail_op *op, store_pg_cb *cb)
{
	struct pn_buf a, b;
	char acc[24];
	const char *values[3];
	struct store_pg_query q = { .stmt = op->d->st_sender, .nparams = 3, .values = values,
				    .priority = true };
	int ret = -1;

	pn_buf_init(&a, 1u << 20);
	pn_buf_init(&b, 1u << 20);
	snprintf(acc, sizeof(acc), "%" PRIu64, op->account_id);
	if (array_text(&a, op->from_a, op->nfrom) == 0 &&
	    array_text(&b, op->from_b, op->nfrom) == 0) {
		values[0] = acc;
		values[1] = (const char *)pn_buf_rptr(&a);
		values[2] = (const char *)pn_buf_rptr(&b);
		ret = store_pgpool_query(op->d->pool, &q, cb, op);
	}
	pn_buf_free(&a);
	pn_buf_free(&b);
	return ret;
}

static int from_add(struct mail_op *op, const char *addr)
{
	char **na = realloc(op->from_a, (op->nfrom + 1) * sizeof(*na));

	if (na == NULL)
		return -1;
	op->from_a = na;
	char **nb = realloc(op->from_b, (op->nfrom + 1) * sizeof(*nb));
	if (nb == NULL)
		return -1;
	op->from_b = nb;
	if (address_forms(addr, &op->from_a[op->nfrom], &op->from_b[op->nfrom]) < 0)
		return -1;
	op->nfrom++;
	return 0;
}

static void sender_done(void *ctx, struct store_pg_reply *reply)
{
	struct mail_op *op = ctx;
	enum mail_sender_status st = MAIL_SENDER_TEMPFAIL;

	if (reply->status == STORE_OK) {
		st = PQntuples(reply->res) > 0 && col_bool(reply->res, 0, 1) ?
			MAIL_SENDER_OK : MAIL_SENDER_DENIED;
	} else {
		set_error(op, "sender check", reply->error);
	}
	if (!op->cancelled)
		op->cb.sender(op->ctx, st, op->error);
	op_free(op);
}

struct mail_op *mail_sender_check(struct mail_delivery *d, uint64_t account_id,
				  const char *address, mail_sender_cb *cb, void *ctx,
				  const char **error_r)
{
	struct mail_op *op;

	if (d == NULL || cb == NULL || !address_ok(address, true)) {
		*error_r = "mail_sender_check: bad arguments";
		return NULL;
	}
	op = op_new(d, OP_SENDER, ctx);
	if (op == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	op->cb.sender = cb;
	op->account_id = account_id;
	/* The null sender and an address without a domain are nobody's: the
	 * query runs over an empty list and answers false. */
	if (address[0] != '\0' && strchr(address, '@') != NULL && from_add(op, address) < 0) {
		op_free(op);
		*error_r = "out of memory";
		return NULL;
	}
	if (sender_query(op, sender_done) < 0) {
		op_free(op);
		*error_r = "sender check not submitted";
		return NULL;
	}
	return op;
}

/* ---- DATA: preparing the body ---- */

/* NUL-terminated copy of buf if it is valid UTF-8 without NUL bytes (text
 * parameters of PostgreSQL), else NULL (the cache column stays NULL and the
 * reader parses the body instead). */
static char *meta_take(struct pn_buf *buf)
{
	size_t len = pn_buf_len(buf);
	const uint8_t *p = pn_buf_rptr(buf);
	char *s;

	while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
		len--;
	if (memchr(p, '\0', len) != NULL || !mail_utf8_valid(p, len))
		return NULL;
	s = malloc(len + 1);
	if (s == NULL)
		return NULL;
	memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

static char *meta_str(const char *s)
{
	if (s == NULL || !mail_utf8_valid((const uint8_t *)s, strlen(s)))
		return NULL;
	return strdup(s);
}

/* Parses the message (without our prefix) and fills the cache fields and
 * the From: addresses. */
static int prepare_meta(struct mail_op *op, const uint8_t *msg, size_t len)
{
	const char *error;
	struct pn_buf buf;
	struct mail_header_field f;
	const struct mail_envelope *env;
	static const char *const hdr_names[] = {
		[M_SUBJECT] = "Subject", [M_FROM] = "From", [M_TO] = "To", [M_CC] = "Cc",
	};

	if (mail_message_parse(msg, len, NULL, &op->msg, &error) < 0) {
		/* Only a memory limit fails here: store the message without
		 * the cache (readers parse the body then). The From: check
		 * of a submission then finds no address and refuses. */
		pn_warn("event=parse_failed error=\"%s\"", error);
		op->msg = NULL;
		return 0;
	}
	env = op->msg->root->envelope;
	pn_buf_init(&buf, META_CACHE_MAX);
	if (mail_envelope_write(op->msg, NULL, &buf) == 0)
		op->meta[M_ENVELOPE] = meta_take(&buf);
	pn_buf_reset(&buf);
	if (mail_bodystructure_write(op->msg, &buf, true) == 0)
		op->meta[M_BODYSTRUCTURE] = meta_take(&buf);
	pn_buf_free(&buf);

	pn_buf_init(&buf, META_FIELD_MAX);
	for (int i = M_SUBJECT; i <= M_CC; i++) {
		pn_buf_reset(&buf);
		if (mail_part_header_find(op->msg, op->msg->root, hdr_names[i], &f) == 1 &&
		    mail_header_text(op->msg, op->msg->root, hdr_names[i], &buf) == 0)
			op->meta[i] = meta_take(&buf);
	}
	pn_buf_reset(&buf);
	if (mail_part_header_find(op->msg, op->msg->root, "References", &f) == 1 &&
	    mail_header_unfold(f.value, f.value_len, &buf) == 0)
		op->meta[M_REFERENCES] = meta_take(&buf);
	pn_buf_free(&buf);

	if (env != NULL) {
		time_t t;
		int tz;

		op->meta[M_MESSAGE_ID] = meta_str(env->message_id);
		op->meta[M_IN_REPLY_TO] = meta_str(env->in_reply_to);
		if (env->date != NULL &&
		    mail_date_parse(env->date, strlen(env->date), &t, &tz) == 0) {
			struct tm tm;
			char d[40];

			if (gmtime_r(&t, &tm) != NULL &&
			    strftime(d, sizeof(d), "%Y-%m-%d %H:%M:%S+00", &tm) > 0)
				op->meta[M_SENT_DATE] = strdup(d);
		}
		if (op->account_id != 0) {
			for (const struct mail_address *a = env->from; a != NULL; a = a->next) {
				char addr[MAIL_DELIVERY_ADDRESS_MAX + 1];
				int n;

				if (a->mailbox == NULL || a->domain == NULL)
					continue;	/* group start or end */
				n = snprintf(addr, sizeof(addr), "%s@%s", a->mailbox, a->domain);
				if (n < 0 || (size_t)n >= sizeof(addr))
					n = snprintf(addr, sizeof(addr), "invalid@invalid");
				if (from_add(op, addr) < 0) {
					set_error(op, "out of memory", NULL);
					return -1;
				}
			}
		}
	}
	return 0;
}

/* Whether the message has a LF without a CR before it. */
static bool has_bare_lf(const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len, *lf;

	for (const uint8_t *q = p; q < end; q = lf + 1) {
		lf = memchr(q, '\n', (size_t)(end - q));
		if (lf == NULL)
			return false;
		if (lf == p || lf[-1] != '\r')
			return true;
	}
	return false;
}

/* The body with CRLF line ends (the caller's message itself when it has
 * them already: no copy) and the cache fields. Touches nothing but op and
 * the message, so it may run on a worker thread. Sets op->prep_ret. */
static void prepare_body(struct mail_op *op)
{
	op->prep_ret = -1;
	if (op->check_crlf && has_bare_lf(op->data, op->data_len)) {
		pn_buf_init(&op->body, 2 * op->data_len + 1);
		if (mail_crlf_normalize(op->data, op->data_len, &op->body) < 0)
			return;
		op->data = pn_buf_rptr(&op->body);
		op->data_len = pn_buf_len(&op->body);
	}
	op->check_crlf = false;
	op->prep_ret = prepare_meta(op, op->data, op->data_len);
}

/* ---- DATA: the statement ---- */

static void deliver_finish(struct mail_op *op);
static int deliver_query(struct mail_op *op);

/* Gives every recipient that is not final yet the status st. */
static void rcpts_fail(struct mail_op *op, enum mail_deliver_status st)
{
	for (size_t i = 0; i < op->nrcpt; i++) {
		if (!op->rcpt_final[i]) {
			op->res[i].status = st;
			op->rcpt_final[i] = true;
		}
	}
}

static void publish_done(void *ctx, enum store_status status, int64_t value, const char *error)
{
	(void)ctx;
	(void)value;
	if (status != STORE_OK)
		pn_debug("event=notify_failed error=\"%s\"", error);
}

static void deliver_finish(struct mail_op *op)
{
	struct mail_deliver_result r = {
		.rcpts = op->res, .count = op->nrcpt, .id = op->id,
		.queue_id = op->queue_id, .error = op->error,
	};

	if (!op->cancelled && op->cb.deliver != NULL)
		op->cb.deliver(op->ctx, &r);
	op_free(op);
}

static int target_add(struct mail_op *op, size_t rcpt, uint64_t account, uint64_t mailbox,
		      enum tgt_state st)
{
	struct tgt *nt = realloc(op->t, (op->nt + 1) * sizeof(*nt));
	struct tgt *t;

	if (nt == NULL)
		return -1;
	op->t = nt;
	t = &op->t[op->nt++];
	memset(t, 0, sizeof(*t));
	t->rcpt = rcpt;
	t->account_id = account;
	t->mailbox_id = mailbox;
	t->st = st;
	return 0;
}

static struct tgt *target_find(struct mail_op *op, uint64_t a, uint64_t m, size_t from)
{
	for (size_t i = from; i < op->nt; i++)
		if (op->t[i].account_id == a && op->t[i].mailbox_id == m)
			return &op->t[i];
	return NULL;
}

/* Turns the rows of deliver_mail() into targets and recipient counts.
 * Returns 0, or -1 (a row the contract does not allow, or no memory). */
static int targets_from_rows(struct mail_op *op, const PGresult *res, unsigned int *disabled,
			     unsigned int *relay)
{
	int rows = PQntuples(res);

	for (int r = 0; r < rows; r++) {
		uint64_t i = col_u64(res, r, D_RCPT);
		const char *kind = PQgetvalue(res, r, D_KIND);
		static const struct { const char *name; enum tgt_state st; } kinds[] = {
			{ "ok", T_OK }, { "dup", T_DUP }, { "quota", T_QUOTA },
			{ "nomailbox", T_GONE }, { "full", T_FULL }, { "queued", T_QUEUED },
		};
		struct tgt *t;
		size_t k;

		if (i < 1 || i > op->nrcpt)
			return -1;
		i--;
		if (strcmp(kind, "disabled") == 0) {
			disabled[i]++;
			continue;
		}
		if (strcmp(kind, "relay") == 0) {
			relay[i]++;
			continue;
		}
		if (strcmp(kind, "unknown") == 0)
			continue;
		for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
			if (strcmp(kind, kinds[k].name) == 0)
				break;
		if (k == sizeof(kinds) / sizeof(kinds[0]) ||
		    target_add(op, i, col_u64(res, r, D_ACCOUNT), col_u64(res, r, D_MAILBOX),
			       kinds[k].st) < 0)
			return -1;
		t = &op->t[op->nt - 1];
		t->uid = col_u64(res, r, D_UID);
		t->modseq = col_u64(res, r, D_MODSEQ);
		t->quota_bytes = col_i64(res, r, D_QUOTA);
		if (t->st == T_QUEUED && op->queue_id == 0)
			op->queue_id = col_u64(res, r, D_QUEUE);
		if (op->id[0] == '\0' && PQgetlength(res, r, D_SHA) == 2 * PN_SHA256_LEN) {
			op->blob_len = (size_t)col_u64(res, r, D_SIZE);
			memcpy(op->id, PQgetvalue(res, r, D_SHA), sizeof(op->id) - 1);
			op->id[sizeof(op->id) - 1] = '\0';
		}
	}
	return 0;
}

/* The committed outcome: per-recipient statuses, logs, notifications. */
static void deliver_outcome(struct mail_op *op, const unsigned int *disabled,
			    const unsigned int *relay)
{
	for (size_t i = 0; i < op->nt; i++) {
		struct tgt *t = &op->t[i];
		struct mail_deliver_rcpt *r = &op->res[t->rcpt];

		if (t->st == T_OK)
			r->stored++;
		else if (t->st == T_DUP)
			r->duplicates++;
		else if (t->st == T_QUEUED)
			r->queued = true;
	}
	for (size_t i = 0; i < op->nrcpt; i++) {
		struct mail_deliver_rcpt *r = &op->res[i];
		bool quota = false, exceeded = false, full = false, any = false;

		op->rcpt_final[i] = true;
		if (r->stored > 0 || r->duplicates > 0 || r->queued) {
			r->status = MAIL_DELIVER_OK;
			continue;
		}
		for (size_t j = 0; j < op->nt; j++) {
			const struct tgt *t = &op->t[j];

			if (t->rcpt != i)
				continue;
			any = true;
			if (t->st == T_QUOTA) {
				quota = true;
				if (t->quota_bytes >= 0 && op->blob_len > (uint64_t)t->quota_bytes)
					exceeded = true;
			} else if (t->st == T_FULL) {
				full = true;
			}
		}
		if (!any)	/* no target: why */
			r->status = disabled[i] > 0 ? MAIL_DELIVER_DISABLED :
				relay[i] > 0 ? MAIL_DELIVER_RELAY_DENIED : MAIL_DELIVER_UNKNOWN;
		else
			r->status = exceeded ? MAIL_DELIVER_QUOTA_EXCEEDED :
				quota ? MAIL_DELIVER_OVER_QUOTA :
				full ? MAIL_DELIVER_PERMFAIL : MAIL_DELIVER_TEMPFAIL;
	}
	for (size_t i = 0; i < op->nt; i++) {
		const struct tgt *t = &op->t[i];
		char msg[64];
		int n;

		if (t->st == T_OK)
			pn_info("event=delivered id=%s account=%" PRIu64 " mailbox=%" PRIu64
				" uid=%" PRIu64 " size=%zu", op->id, t->account_id,
				t->mailbox_id, t->uid, op->blob_len);
		else if (t->st == T_DUP)
			pn_info("event=duplicate id=%s account=%" PRIu64 " mailbox=%" PRIu64,
				op->id, t->account_id, t->mailbox_id);
		else if (t->st == T_QUOTA)
			pn_info("event=over_quota id=%s account=%" PRIu64, op->id, t->account_id);
		if (t->st != T_OK || op->d->redis == NULL)
			continue;
		/* two recipients of one mailbox share its row: one message */
		if (target_find(op, t->account_id, t->mailbox_id, 0) != t)
			continue;
		n = mail_delivery_notify_format(msg, sizeof(msg), t->uid, t->modseq);
		if (n > 0 && store_rnotify_publish(op->d->redis, t->account_id, t->mailbox_id,
						   msg, (size_t)n, publish_done, NULL) < 0)
			pn_debug("event=notify_failed error=\"not submitted\"");
	}
	if (op->queue_id != 0)
		pn_info("event=queued id=%s queue_id=%" PRIu64, op->id, op->queue_id);
}

/* deliver_mail() came back: committed (OK), or not (an error; a lost
 * connection leaves the outcome unknown: 4xx, and the duplicate guard keeps
 * the client's retry from showing twice). */
static void deliver_done(void *ctx, struct store_pg_reply *reply)
{
	struct mail_op *op = ctx;
	unsigned int *disabled, *relay;

	if (reply->status != STORE_OK) {
		bool retry = reply->status == STORE_TEMPORARY &&
			(strcmp(reply->sqlstate, "40P01") == 0 ||
			 strcmp(reply->sqlstate, "40001") == 0) &&
			op->retries < MAX_TX_RETRIES;

		if (retry) {
			op->retries++;
			if (deliver_query(op) == 0)
				return;
		}
		set_error(op, "deliver_mail", reply->error[0] != '\0' ? reply->error : NULL);
		rcpts_fail(op, reply->status == STORE_PERMANENT ? MAIL_DELIVER_PERMFAIL :
			   MAIL_DELIVER_TEMPFAIL);
		deliver_finish(op);
		return;
	}
	disabled = calloc(op->nrcpt, sizeof(*disabled));
	relay = calloc(op->nrcpt, sizeof(*relay));
	if (disabled == NULL || relay == NULL ||
	    targets_from_rows(op, reply->res, disabled, relay) < 0) {
		/* committed, but we cannot tell what: the client retries and
		 * the duplicate guard catches what was stored */
		set_error(op, "deliver_mail: unexpected result", NULL);
		rcpts_fail(op, MAIL_DELIVER_TEMPFAIL);
	} else {
		deliver_outcome(op, disabled, relay);
	}
	free(disabled);
	free(relay);
	deliver_finish(op);
}

/* Submits deliver_mail() (one statement: its own transaction). Returns 0,
 * or -1 (nothing submitted). */
static int deliver_query(struct mail_op *op)
{
	struct pn_buf arr;
	char hsize[24], window[16], tenant[24], account[24];
	char rpath[MAIL_DELIVERY_ADDRESS_MAX + 32];
	int rlen;
	const char *values[D_NPARAMS];
	int lengths[D_NPARAMS] = { 0 }, formats[D_NPARAMS] = { 0 };
	struct store_pg_query q = {
		.stmt = op->d->st_deliver, .nparams = D_NPARAMS, .values = values,
		.lengths = lengths, .formats = formats,
	};
	int ret;

	/* RFC 5321 4.4: the reverse-path of MAIL FROM */
	rlen = snprintf(rpath, sizeof(rpath), "Return-Path: <%s>\r\n", op->mail_from);
	if (rlen < 0 || (size_t)rlen >= sizeof(rpath))
		return -1;
	pn_buf_init(&arr, (size_t)(2 * MAIL_DELIVERY_ADDRESS_MAX + 4) *
		    (MAIL_DELIVERY_MAX_RCPTS + 1));
	ret = array_text(&arr, op->rcpts, op->nrcpt);
	if (op->msg != NULL)
		snprintf(hsize, sizeof(hsize), "%zu", op->msg->root->hdr_size);
	snprintf(window, sizeof(window), "%u", op->d->window);
	snprintf(tenant, sizeof(tenant), "%" PRIu64, op->sender_tenant);
	snprintf(account, sizeof(account), "%" PRIu64, op->account_id);
	values[0] = (const char *)pn_buf_rptr(&arr);
	values[1] = op->d->postmaster;
	values[2] = op->account_id != 0 ? tenant : NULL;
	values[3] = op->account_id != 0 ? account : NULL;
	values[4] = op->mail_from;
	values[5] = rpath;
	lengths[5] = rlen;
	formats[5] = 1;
	values[6] = op->data_len > 0 ? (const char *)op->data : "";
	lengths[6] = (int)op->data_len;
	formats[6] = 1;
	values[7] = op->msg != NULL ? hsize : NULL;
	for (int i = 0; i < M_COUNT; i++)
		values[8 + i] = op->meta[i];
	values[8 + M_COUNT] = window;
	values[9 + M_COUNT] = op->envid;
	values[10 + M_COUNT] = op->ret;
	if (ret == 0)
		ret = store_pgpool_query(op->d->pool, &q, deliver_done, op);
	pn_buf_free(&arr);
	return ret;
}

static void from_check_done(void *ctx, struct store_pg_reply *reply)
{
	struct mail_op *op = ctx;

	if (reply->status != STORE_OK) {
		set_error(op, "sender check", reply->error);
		rcpts_fail(op, MAIL_DELIVER_TEMPFAIL);
		deliver_finish(op);
		return;
	}
	if (PQntuples(reply->res) == 0 || !col_bool(reply->res, 0, 1)) {
		set_error(op, "From: is not an address of the account", NULL);
		rcpts_fail(op, MAIL_DELIVER_SENDER_DENIED);
		deliver_finish(op);
		return;
	}
	op->sender_tenant = col_u64(reply->res, 0, 0);
	if (deliver_query(op) < 0) {
		set_error(op, "delivery not submitted", NULL);
		rcpts_fail(op, MAIL_DELIVER_TEMPFAIL);
		deliver_finish(op);
	}
}

/* After prepare_body(): the sender check (submission) or the statement.
 * Returns 0, or -1 (nothing submitted). */
static int deliver_submit(struct mail_op *op)
{
	if (op->account_id != 0) {
		if (op->nfrom == 0) {
			/* no From: address to check: refuse, asynchronously */
			if (from_add(op, "missing@invalid") < 0)
				return -1;
		}
		return sender_query(op, from_check_done);
	}
	return deliver_query(op);
}

/* On a worker thread. */
static void prepare_work(void *ctx)
{
	prepare_body(ctx);
}

/* On the loop thread, after prepare_work(). A cancelled delivery goes on
 * too (it still commits, like one already in PostgreSQL). */
static void prepare_done(void *ctx)
{
	struct mail_op *op = ctx;

	if (op->prep_ret < 0) {
		set_error(op, "out of memory", NULL);
	} else if (deliver_submit(op) == 0) {
		return;	/* deliver_done or from_check_done goes on */
	} else {
		set_error(op, "delivery not submitted", NULL);
	}
	rcpts_fail(op, MAIL_DELIVER_TEMPFAIL);
	deliver_finish(op);
}

struct mail_op *mail_deliver(struct mail_delivery *d, const struct mail_deliver_request *req,
			     mail_deliver_cb *cb, void *ctx, const char **error_r)
{
	struct mail_op *op;

	if (d == NULL || req == NULL || cb == NULL || req->rcpt_count == 0 ||
	    req->rcpt_count > MAIL_DELIVERY_MAX_RCPTS || req->message == NULL ||
	    !address_ok(req->mail_from, true) ||
	    (req->envid != NULL && !address_ok(req->envid, false)) ||
	    (req->ret != NULL && strcmp(req->ret, "FULL") != 0 && strcmp(req->ret, "HDRS") != 0)) {
		*error_r = "mail_deliver: bad arguments";
		return NULL;
	}
	for (size_t i = 0; i < req->rcpt_count; i++) {
		if (!address_ok(req->rcpts[i], false)) {
			*error_r = "mail_deliver: bad recipient";
			return NULL;
		}
	}
	op = op_new(d, OP_DELIVER, ctx);
	if (op == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	op->cb.deliver = cb;
	op->account_id = req->account_id;
	op->nrcpt = req->rcpt_count;
	op->rcpts = calloc(op->nrcpt, sizeof(*op->rcpts));
	op->res = calloc(op->nrcpt, sizeof(*op->res));
	op->rcpt_final = calloc(op->nrcpt, sizeof(*op->rcpt_final));
	op->mail_from = strdup(req->mail_from);
	op->envid = xstrdup(req->envid);
	op->ret = xstrdup(req->ret);
	if (op->rcpts == NULL || op->res == NULL || op->rcpt_final == NULL ||
	    op->mail_from == NULL || (req->envid != NULL && op->envid == NULL) ||
	    (req->ret != NULL && op->ret == NULL))
		goto nomem;
	for (size_t i = 0; i < op->nrcpt; i++) {
		op->rcpts[i] = strdup(req->rcpts[i]);
		if (op->rcpts[i] == NULL) {
			op->nrcpt = i;
			goto nomem;
		}
		op->res[i].status = MAIL_DELIVER_TEMPFAIL;
	}
	/* The message with CRLF line ends (a normalized message can at most
	 * double); bytea parameters are int-sized (and PostgreSQL stops at
	 * 1 GiB), with room for our header lines in front. */
	if (req->message_len > ((size_t)INT_MAX - PREFIX_MAX) / 2) {
		*error_r = "mail_deliver: message too big";
		op_free(op);
		return NULL;
	}
	if (req->message_kept) {
		/* the caller's buffer, until the callback */
		op->data = req->message;
		op->data_len = req->message_len;
		op->check_crlf = true;
	} else {
		pn_buf_init(&op->body, 2 * req->message_len + 1);
		if (mail_crlf_normalize(req->message, req->message_len, &op->body) < 0)
			goto nomem;
		op->data = pn_buf_rptr(&op->body);
		op->data_len = pn_buf_len(&op->body);
	}
	if (d->workers != NULL &&
	    (d->workers_max_pending == 0 ||
	     pn_workpool_pending(d->workers) < d->workers_max_pending) &&
	    pn_workpool_submit(d->workers, d->loop, prepare_work, prepare_done, op) == 0)
		return op;	/* prepare_done goes on */
	/* no pool, its share of the pool is taken, or its queue is full:
	 * parse here */
	prepare_body(op);
	if (op->prep_ret < 0)
		goto nomem;
	if (deliver_submit(op) < 0) {
		*error_r = op->account_id != 0 ? "sender check not submitted" :
			"delivery not submitted";
		op_free(op);
		return NULL;
	}
	return op;
nomem:
	*error_r = "out of memory";
	op_free(op);
	return NULL;
}
