/* Local delivery on the asynchronous PostgreSQL pool: recipient checks
 * (resolve_recipient() plus relay, disabled and quota decisions), the
 * submission sender check, and delivery of one message to N recipients in
 * one transaction (deliver_message() for local mailboxes, outbound_enqueue()
 * for remote ones), with the body prepared here: CRLF line ends,
 * Return-Path: / Delivered-To:, the ENVELOPE / BODYSTRUCTURE / header cache
 * from the MIME library, a duplicate guard by Message-ID, and a change
 * notification per mailbox on Redis after COMMIT. The contract and the
 * decisions are in postern/mail-delivery.h and docs/storage.md.
 *
 * A delivery runs as a chain of pool callbacks:
 *   [from check] -> resolve -> (body built) -> BEGIN -> [lock + dedup]
 *   -> [deliver_message] -> [outbound_enqueue per tenant] -> COMMIT
 *   -> publish -> callback
 * A deadlock or serialization failure restarts the transaction (twice at
 * most); any other failure rolls back and answers every recipient that is
 * not final yet with TEMPFAIL (temporary) or PERMFAIL.
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

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEDUP_WINDOW_DEFAULT 600
#define HEADROOM (2 * MAIL_DELIVERY_ADDRESS_MAX + 64)
#define META_CACHE_MAX (4u * 1024 * 1024)	/* ENVELOPE / BODYSTRUCTURE */
#define META_FIELD_MAX (64u * 1024)		/* subject, from, ... */
#define MAX_TX_RETRIES 2

/* ---- SQL ---- */

/* One row per (recipient, resolved target), recipients in order. A row with
 * address NULL: unknown. account_id NULL with an address: remote. */
static const char sql_resolve[] =
	"SELECT r.i, x.account_id, ac.enabled, coalesce(ac.tenant_id, dm.tenant_id),"
	" dm.id IS NOT NULL,"
	" CASE WHEN x.account_id IS NULL THEN NULL ELSE coalesce("
	"  (SELECT mb.id FROM mailboxes mb WHERE mb.account_id = x.account_id"
	"    AND p.tag IS NOT NULL AND lower(ac.address) = p.base"
	"    AND lower(mb.name) = lower(p.tag)"
	"    ORDER BY (mb.name = p.tag) DESC, mb.id LIMIT 1),"
	"  (SELECT mb.id FROM mailboxes mb WHERE mb.account_id = x.account_id"
	"    AND mb.name = 'INBOX')) END,"
	" x.address,"
	" coalesce(ac.quota_bytes, -1), coalesce(ac.quota_messages, -1),"
	" coalesce(u.bytes, 0), coalesce(u.messages, 0),"
	" coalesce(tn.quota_bytes, -1), coalesce(tn.quota_messages, -1),"
	" coalesce((SELECT sum(tu.bytes) FROM tenant_usage tu WHERE tu.tenant_id = ac.tenant_id), 0),"
	" coalesce((SELECT sum(tu.messages) FROM tenant_usage tu WHERE tu.tenant_id = ac.tenant_id), 0)"
	" FROM unnest($1::text[]) WITH ORDINALITY AS r (addr, i)"
	" CROSS JOIN LATERAL (SELECT"
	"   lower(substr(r.addr, length(r.addr) - strpos(reverse(r.addr), '@') + 2)) AS domain,"
	"   left(r.addr, length(r.addr) - strpos(reverse(r.addr), '@')) AS lp) AS s"
	" CROSS JOIN LATERAL (SELECT"
	"   CASE WHEN strpos(s.lp, '+') > 1 THEN substr(s.lp, strpos(s.lp, '+') + 1) END AS tag,"
	"   lower(split_part(s.lp, '+', 1)) || '@' || s.domain AS base) AS p"
	" LEFT JOIN domains dm ON dm.name = s.domain"
	" LEFT JOIN LATERAL resolve_recipient(r.addr) x ON true"
	" LEFT JOIN accounts ac ON ac.id = x.account_id"
	" LEFT JOIN account_usage u ON u.account_id = x.account_id"
	" LEFT JOIN tenants tn ON tn.id = ac.tenant_id"
	" ORDER BY r.i, x.account_id NULLS LAST";
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

/* Locks the target mailboxes in the schema's lock order. */
static const char sql_lock[] =
	"SELECT count(*) FROM (SELECT 1 FROM mailboxes mb"
	" JOIN unnest($1::bigint[], $2::bigint[]) AS t (a, m)"
	"  ON mb.account_id = t.a AND mb.id = t.m"
	" ORDER BY mb.account_id, mb.id FOR UPDATE OF mb) AS x";

/* Targets that already hold a message with the Message-ID saved within the
 * window: one probe of messages_message_id (storage/sql/003) per target. */
static const char sql_dedup[] =
	"SELECT t.a, t.m FROM unnest($1::bigint[], $2::bigint[]) AS t (a, m)"
	" WHERE EXISTS (SELECT 1 FROM messages x"
	"  WHERE x.account_id = t.a AND x.mailbox_id = t.m AND x.message_id = $3::text"
	"   AND x.saved_at > now() - make_interval(secs => $4::int))";

static const char sql_deliver[] =
	"SELECT account_id, mailbox_id, uid, modseq, status FROM deliver_message("
	"$1::bytea, $2::bigint, $3::bytea, $4::bigint[], $5::bigint[], now(), 0, '{}',"
	" jsonb_build_object('header_size', $6::bigint, 'envelope', $7::text,"
	"  'bodystructure', $8::text, 'sent_date', $9::text, 'subject', $10::text,"
	"  'from', $11::text, 'to', $12::text, 'cc', $13::text, 'message_id', $14::text,"
	"  'in_reply_to', $15::text, 'references', $16::text), true, false)";

static const char sql_enqueue[] =
	"SELECT outbound_enqueue($1::bigint, $2::bigint, $3::text, $4::text[], $5::bytea,"
	" $6::bigint, $7::bytea, false, $8::text, $9::text)";

/* ---- types ---- */

struct mail_delivery {
	struct store_pgpool *pool;
	struct store_redis *redis;
	unsigned int window;
	const struct store_pg_stmt *st_resolve, *st_sender, *st_lock, *st_dedup,
		*st_deliver, *st_enqueue;
	unsigned int busy;
};

enum op_kind { OP_RCPT, OP_SENDER, OP_DELIVER };

enum tgt_state {
	T_PENDING,	/* local, not delivered yet */
	T_OK,		/* stored */
	T_DUP,		/* skipped by the duplicate guard */
	T_QUOTA,
	T_GONE,		/* mailbox deleted meanwhile */
	T_FULL,		/* no UIDs left */
	T_REMOTE,	/* to queue */
	T_QUEUED,
};

struct tgt {
	size_t rcpt;
	uint64_t account_id, mailbox_id, tenant_id;	/* account 0: remote */
	char *remote;
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
	struct pn_buf body;		/* HEADROOM bytes, then the message */
	const uint8_t *blob;
	size_t blob_len, prefix_len;
	struct mail_message *msg;
	char *meta[M_COUNT];
	char **from_a, **from_b;
	size_t nfrom;
	uint64_t sender_tenant;
	struct tgt *t;
	size_t nt;
	struct store_pgtx *tx;
	unsigned int retries;
	size_t enqueue_next;		/* next target index to look for a tenant */
	bool stored_here;		/* deliver_message took the body */
	uint8_t sha[PN_SHA256_LEN];
	char id[17];
	uint64_t queue_id;
	bool perm_failure;
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

static int array_u64(struct pn_buf *out, const uint64_t *v, size_t n)
{
	if (pn_buf_append(out, "{", 1) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (pn_buf_printf(out, "%s%" PRIu64, i > 0 ? "," : "", v[i]) < 0)
			return -1;
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
	d->window = set->dedup_window_secs != 0 ? set->dedup_window_secs : DEDUP_WINDOW_DEFAULT;
	if ((d->st_resolve = store_pgpool_declare(d->pool, "mail_resolve", sql_resolve, 1,
						  NULL, error_r)) == NULL ||
	    (d->st_sender = store_pgpool_declare(d->pool, "mail_sender", sql_sender, 3,
						 NULL, error_r)) == NULL ||
	    (d->st_lock = store_pgpool_declare(d->pool, "mail_lock", sql_lock, 2,
					       NULL, error_r)) == NULL ||
	    (d->st_dedup = store_pgpool_declare(d->pool, "mail_dedup", sql_dedup, 4,
						NULL, error_r)) == NULL ||
	    (d->st_deliver = store_pgpool_declare(d->pool, "mail_deliver", sql_deliver, 16,
						  NULL, error_r)) == NULL ||
	    (d->st_enqueue = store_pgpool_declare(d->pool, "mail_enqueue", sql_enqueue, 9,
						  NULL, error_r)) == NULL) {
		free(d);
		return NULL;
	}
	return d;
}

void mail_delivery_free(struct mail_delivery **d)
{
	if (d == NULL || *d == NULL)
		return;
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
	for (size_t i = 0; i < op->nt; i++)
		free(op->t[i].remote);
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
	const char *values[1];
	struct store_pg_query q = { .nparams = 1, .values = values };
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
	struct store_pg_query q = { .stmt = op->d->st_sender, .nparams = 3, .values = values };
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

/* Writes Return-Path: (and Delivered-To: when there is one local target)
 * in front of the message and hashes the result. */
static int build_blob(struct mail_op *op)
{
	char prefix[HEADROOM];
	size_t local = 0, which = 0;
	int n;
	const char *error;
	uint8_t *base = op->body.data + op->body.start;

	for (size_t i = 0; i < op->nt; i++) {
		if (op->t[i].st == T_PENDING) {
			local++;
			which = op->t[i].rcpt;
		}
	}
	if (local == 1)
		n = snprintf(prefix, sizeof(prefix), "Return-Path: <%s>\r\nDelivered-To: %s\r\n",
			     op->mail_from, op->rcpts[which]);
	else
		n = snprintf(prefix, sizeof(prefix), "Return-Path: <%s>\r\n", op->mail_from);
	if (n < 0 || (size_t)n > HEADROOM)
		return -1;
	op->prefix_len = (size_t)n;
	memcpy(base + HEADROOM - op->prefix_len, prefix, op->prefix_len);
	op->blob = base + HEADROOM - op->prefix_len;
	op->blob_len = pn_buf_len(&op->body) - HEADROOM + op->prefix_len;
	if (pn_sha256(op->blob, op->blob_len, op->sha, &error) < 0) {
		set_error(op, "sha256", error);
		return -1;
	}
	for (int i = 0; i < 8; i++)
		snprintf(op->id + 2 * i, 3, "%02x", op->sha[i]);
	return 0;
}

/* ---- DATA: the chain ---- */

static void deliver_finish(struct mail_op *op);
static void tx_begin(struct mail_op *op);
static void tx_step_dedup(struct mail_op *op);
static void tx_step_deliver(struct mail_op *op);
static void tx_step_enqueue(struct mail_op *op);
static void tx_step_commit(struct mail_op *op);

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

/* Local targets still to store: collects their ids. */
static size_t pending_targets(struct mail_op *op, uint64_t *a, uint64_t *m)
{
	size_t n = 0;

	for (size_t i = 0; i < op->nt; i++) {
		if (op->t[i].st == T_PENDING) {
			a[n] = op->t[i].account_id;
			m[n] = op->t[i].mailbox_id;
			n++;
		}
	}
	return n;
}

/* Resets what a failed transaction attempt decided, for a retry. */
static void targets_reset(struct mail_op *op)
{
	for (size_t i = 0; i < op->nt; i++) {
		struct tgt *t = &op->t[i];

		if (t->account_id != 0)
			t->st = T_PENDING;
		else
			t->st = T_REMOTE;
	}
	op->stored_here = false;
	op->queue_id = 0;
	op->enqueue_next = 0;
}

static void rollback_done(void *ctx, struct store_pg_reply *reply)
{
	struct mail_op *op = ctx;

	(void)reply;
	if (op->retries > 0 && op->error[0] == '\0') {
		/* restart after a deadlock / serialization failure */
		targets_reset(op);
		tx_begin(op);
		return;
	}
	rcpts_fail(op, op->perm_failure ? MAIL_DELIVER_PERMFAIL : MAIL_DELIVER_TEMPFAIL);
	deliver_finish(op);
}

/* A statement failed: roll back, then retry or fail. */
static void tx_failed(struct mail_op *op, const struct store_pg_reply *reply, const char *what)
{
	bool retry = reply != NULL && reply->status == STORE_TEMPORARY &&
		(strcmp(reply->sqlstate, "40P01") == 0 || strcmp(reply->sqlstate, "40001") == 0) &&
		op->retries < MAX_TX_RETRIES;

	if (retry) {
		op->retries++;
		op->error[0] = '\0';
	} else {
		snprintf(op->error, sizeof(op->error), "%s: %s", what,
			 reply != NULL && reply->error[0] != '\0' ? reply->error : "not submitted");
		op->perm_failure = reply != NULL && reply->status == STORE_PERMANENT;
		op->retries = 0;
	}
	if (op->tx == NULL || store_pgtx_rollback(&op->tx, rollback_done, op) < 0) {
		op->tx = NULL;
		if (retry) {
			targets_reset(op);
			tx_begin(op);
			return;
		}
		rcpts_fail(op, op->perm_failure ? MAIL_DELIVER_PERMFAIL : MAIL_DELIVER_TEMPFAIL);
		deliver_finish(op);
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

/* After COMMIT: the final per-recipient statuses, notifications. */
static void commit_done(void *ctx, struct store_pg_reply *reply)
{
	struct mail_op *op = ctx;

	if (reply->status != STORE_OK) {
		/* Not committed, or unknown (a connection lost during COMMIT:
		 * a 4xx makes the client retry and the duplicate guard keeps
		 * a committed copy from showing twice). */
		snprintf(op->error, sizeof(op->error), "commit: %s", reply->error);
		rcpts_fail(op, MAIL_DELIVER_TEMPFAIL);
		deliver_finish(op);
		return;
	}
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
		bool quota = false, exceeded = false, full = false;

		if (op->rcpt_final[i])
			continue;
		op->rcpt_final[i] = true;
		if (r->stored > 0 || r->duplicates > 0 || r->queued) {
			r->status = MAIL_DELIVER_OK;
			continue;
		}
		for (size_t j = 0; j < op->nt; j++) {
			const struct tgt *t = &op->t[j];

			if (t->rcpt != i)
				continue;
			if (t->st == T_QUOTA) {
				quota = true;
				if (t->quota_bytes >= 0 && op->blob_len > (uint64_t)t->quota_bytes)
					exceeded = true;
			} else if (t->st == T_FULL) {
				full = true;
			}
		}
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
		n = mail_delivery_notify_format(msg, sizeof(msg), t->uid, t->modseq);
		if (n > 0 && store_rnotify_publish(op->d->redis, t->account_id, t->mailbox_id,
						   msg, (size_t)n, publish_done, NULL) < 0)
			pn_debug("event=notify_failed error=\"not submitted\"");
	}
	if (op->queue_id != 0)
		pn_info("event=queued id=%s queue_id=%" PRIu64, op->id, op->queue_id);
	deliver_finish(op);
}

static void tx_step_commit(struct mail_op *op)
{
	if (store_pgtx_commit(&op->tx, commit_done, op) < 0)
		tx_failed(op, NULL, "commit");
}

static void enqueue_done(void *ctx, struct store_pg_reply *reply)
{
	struct mail_op *op = ctx;
	uint64_t tenant;

	if (reply->status != STORE_OK) {
		tx_failed(op, reply, "outbound_enqueue");
		return;
	}
	if (op->queue_id == 0 && PQntuples(reply->res) > 0)
		op->queue_id = col_u64(reply->res, 0, 0);
	op->stored_here = true;
	/* the entry covers every remote target of this tenant */
	tenant = op->t[op->enqueue_next].tenant_id;
	for (size_t i = op->enqueue_next; i < op->nt; i++)
		if (op->t[i].st == T_REMOTE && op->t[i].tenant_id == tenant)
			op->t[i].st = T_QUEUED;
	tx_step_enqueue(op);
}

/* One outbound_enqueue() per tenant of the remote targets. */
static void tx_step_enqueue(struct mail_op *op)
{
	size_t first = op->nt, n = 0;
	char **list;
	struct pn_buf arr;
	char tenant[24], account[24], size[24];
	const char *values[9];
	int lengths[9] = { 0 }, formats[9] = { 0 };
	struct store_pg_query q = {
		.stmt = op->d->st_enqueue, .nparams = 9, .values = values,
		.lengths = lengths, .formats = formats,
	};
	int ret;

	for (size_t i = 0; i < op->nt; i++) {
		if (op->t[i].st == T_REMOTE) {
			first = i;
			break;
		}
	}
	if (first == op->nt) {
		tx_step_commit(op);
		return;
	}
	op->enqueue_next = first;
	list = calloc(op->nt, sizeof(*list));
	if (list == NULL) {
		tx_failed(op, NULL, "out of memory");
		return;
	}
	for (size_t i = first; i < op->nt; i++)
		if (op->t[i].st == T_REMOTE && op->t[i].tenant_id == op->t[first].tenant_id)
			list[n++] = op->t[i].remote;
	pn_buf_init(&arr, 1u << 20);
	ret = array_text(&arr, list, n);
	free(list);
	snprintf(tenant, sizeof(tenant), "%" PRIu64, op->t[first].tenant_id);
	snprintf(account, sizeof(account), "%" PRIu64, op->account_id);
	snprintf(size, sizeof(size), "%zu", op->blob_len);
	values[0] = tenant;
	values[1] = op->account_id != 0 ? account : NULL;
	values[2] = op->mail_from;
	values[3] = (const char *)pn_buf_rptr(&arr);
	values[4] = (const char *)op->sha;
	lengths[4] = PN_SHA256_LEN;
	formats[4] = 1;
	values[5] = size;
	values[6] = op->stored_here ? NULL : (const char *)op->blob;
	lengths[6] = (int)op->blob_len;
	formats[6] = 1;
	values[7] = op->envid;
	values[8] = op->ret;
	if (ret < 0 || store_pgtx_query(op->tx, &q, enqueue_done, op) < 0) {
		pn_buf_free(&arr);
		tx_failed(op, NULL, "outbound_enqueue");
		return;
	}
	pn_buf_free(&arr);
}

static struct tgt *target_find(struct mail_op *op, uint64_t a, uint64_t m, size_t from)
{
	for (size_t i = from; i < op->nt; i++)
		if (op->t[i].account_id == a && op->t[i].mailbox_id == m)
			return &op->t[i];
	return NULL;
}

static void deliver_done(void *ctx, struct store_pg_reply *reply)
{
	struct mail_op *op = ctx;
	int rows;

	if (reply->status != STORE_OK) {
		tx_failed(op, reply, "deliver_message");
		return;
	}
	rows = PQntuples(reply->res);
	for (int r = 0; r < rows; r++) {
		uint64_t a = col_u64(reply->res, r, 0), m = col_u64(reply->res, r, 1);
		const char *st = PQgetvalue(reply->res, r, 4);
		enum tgt_state s = strcmp(st, "ok") == 0 ? T_OK :
			strcmp(st, "quota") == 0 ? T_QUOTA :
			strcmp(st, "full") == 0 ? T_FULL : T_GONE;

		/* every pending target with this mailbox (two recipients may
		 * resolve to one mailbox: one copy, both acknowledged) */
		for (size_t i = 0; i < op->nt; i++) {
			struct tgt *t = &op->t[i];

			if (t->st != T_PENDING || t->account_id != a || t->mailbox_id != m)
				continue;
			t->st = s;
			t->uid = col_u64(reply->res, r, 2);
			t->modseq = col_u64(reply->res, r, 3);
			if (s == T_OK)
				op->stored_here = true;
		}
	}
	/* a target the function did not mention cannot be stored */
	for (size_t i = 0; i < op->nt; i++)
		if (op->t[i].st == T_PENDING)
			op->t[i].st = T_GONE;
	tx_step_enqueue(op);
}

static void tx_step_deliver(struct mail_op *op)
{
	uint64_t *a = calloc(op->nt + 1, sizeof(*a)), *m = calloc(op->nt + 1, sizeof(*m));
	size_t n;
	struct pn_buf aa, mm;
	char size[24], hsize[24];
	const char *values[16];
	int lengths[16] = { 0 }, formats[16] = { 0 };
	struct store_pg_query q = {
		.stmt = op->d->st_deliver, .nparams = 16, .values = values,
		.lengths = lengths, .formats = formats,
	};
	int ret;

	if (a == NULL || m == NULL) {
		free(a);
		free(m);
		tx_failed(op, NULL, "out of memory");
		return;
	}
	n = pending_targets(op, a, m);
	if (n == 0) {
		free(a);
		free(m);
		tx_step_enqueue(op);
		return;
	}
	pn_buf_init(&aa, 1u << 20);
	pn_buf_init(&mm, 1u << 20);
	ret = array_u64(&aa, a, n) | array_u64(&mm, m, n);
	free(a);
	free(m);
	snprintf(size, sizeof(size), "%zu", op->blob_len);
	if (op->msg != NULL)
		snprintf(hsize, sizeof(hsize), "%zu", op->msg->root->hdr_size + op->prefix_len);
	values[0] = (const char *)op->sha;
	lengths[0] = PN_SHA256_LEN;
	formats[0] = 1;
	values[1] = size;
	values[2] = (const char *)op->blob;
	lengths[2] = (int)op->blob_len;
	formats[2] = 1;
	values[3] = (const char *)pn_buf_rptr(&aa);
	values[4] = (const char *)pn_buf_rptr(&mm);
	values[5] = op->msg != NULL ? hsize : NULL;
	for (int i = 0; i < M_COUNT; i++)
		values[6 + i] = op->meta[i];
	if (ret != 0 || store_pgtx_query(op->tx, &q, deliver_done, op) < 0) {
		pn_buf_free(&aa);
		pn_buf_free(&mm);
		tx_failed(op, NULL, "deliver_message");
		return;
	}
	pn_buf_free(&aa);
	pn_buf_free(&mm);
}

static void dedup_done(void *ctx, struct store_pg_reply *reply)
{
	struct mail_op *op = ctx;
	int rows;

	if (reply->status != STORE_OK) {
		tx_failed(op, reply, "duplicate check");
		return;
	}
	rows = PQntuples(reply->res);
	for (int r = 0; r < rows; r++) {
		uint64_t a = col_u64(reply->res, r, 0), m = col_u64(reply->res, r, 1);

		for (struct tgt *t = target_find(op, a, m, 0); t != NULL;
		     t = target_find(op, a, m, (size_t)(t - op->t) + 1))
			if (t->st == T_PENDING)
				t->st = T_DUP;
	}
	tx_step_deliver(op);
}

/* Submits a statement over the pending targets' (account, mailbox)
 * arrays: the lock, or the duplicate check. */
static int targets_query(struct mail_op *op, const struct store_pg_stmt *stmt,
			 int nparams, store_pg_cb *cb)
{
	uint64_t *a = calloc(op->nt + 1, sizeof(*a)), *m = calloc(op->nt + 1, sizeof(*m));
	struct pn_buf aa, mm;
	char window[16];
	const char *values[4];
	struct store_pg_query q = { .stmt = stmt, .nparams = nparams, .values = values };
	size_t n;
	int ret = -1;

	if (a == NULL || m == NULL) {
		free(a);
		free(m);
		return -1;
	}
	n = pending_targets(op, a, m);
	pn_buf_init(&aa, 1u << 20);
	pn_buf_init(&mm, 1u << 20);
	if (array_u64(&aa, a, n) == 0 && array_u64(&mm, m, n) == 0) {
		snprintf(window, sizeof(window), "%u", op->d->window);
		values[0] = (const char *)pn_buf_rptr(&aa);
		values[1] = (const char *)pn_buf_rptr(&mm);
		values[2] = op->meta[M_MESSAGE_ID];
		values[3] = window;
		ret = store_pgtx_query(op->tx, &q, cb, op);
	}
	free(a);
	free(m);
	pn_buf_free(&aa);
	pn_buf_free(&mm);
	return ret;
}

static void lock_done(void *ctx, struct store_pg_reply *reply)
{
	struct mail_op *op = ctx;

	if (reply->status != STORE_OK) {
		tx_failed(op, reply, "mailbox lock");
		return;
	}
	/* a new statement: its snapshot sees what committed while we waited */
	if (targets_query(op, op->d->st_dedup, 4, dedup_done) < 0)
		tx_failed(op, NULL, "duplicate check");
}

static void tx_step_dedup(struct mail_op *op)
{
	bool any = false;

	for (size_t i = 0; i < op->nt; i++)
		if (op->t[i].st == T_PENDING)
			any = true;
	if (!any || op->meta[M_MESSAGE_ID] == NULL) {
		tx_step_deliver(op);
		return;
	}
	if (targets_query(op, op->d->st_lock, 2, lock_done) < 0)
		tx_failed(op, NULL, "mailbox lock");
}

static void begin_done(void *ctx, struct store_pgtx *tx, struct store_pg_reply *reply)
{
	struct mail_op *op = ctx;

	if (tx == NULL) {
		snprintf(op->error, sizeof(op->error), "begin: %s", reply->error);
		rcpts_fail(op, MAIL_DELIVER_TEMPFAIL);
		deliver_finish(op);
		return;
	}
	op->tx = tx;
	tx_step_dedup(op);
}

static void tx_begin(struct mail_op *op)
{
	if (store_pgtx_begin(op->d->pool, NULL, begin_done, op) < 0) {
		set_error(op, "begin not submitted", NULL);
		rcpts_fail(op, MAIL_DELIVER_TEMPFAIL);
		deliver_finish(op);
	}
}

static int target_add(struct mail_op *op, size_t rcpt, uint64_t account, uint64_t mailbox,
		      uint64_t tenant, const char *remote, int64_t quota_bytes)
{
	struct tgt *nt = realloc(op->t, (op->nt + 1) * sizeof(*nt));
	struct tgt *t;

	if (nt == NULL)
		return -1;
	op->t = nt;
	t = &op->t[op->nt];
	memset(t, 0, sizeof(*t));
	t->rcpt = rcpt;
	t->account_id = account;
	t->mailbox_id = mailbox;
	t->tenant_id = tenant;
	t->quota_bytes = quota_bytes;
	t->st = account != 0 ? T_PENDING : T_REMOTE;
	if (remote != NULL && (t->remote = strdup(remote)) == NULL)
		return -1;
	op->nt++;
	return 0;
}

/* Turns the resolve rows into targets; recipients without one get their
 * final status now. */
static int targets_from_rows(struct mail_op *op, const PGresult *res)
{
	int rows = PQntuples(res), r = 0;

	for (size_t i = 0; i < op->nrcpt; i++) {
		int first = r;
		size_t before = op->nt;
		struct rcpt_eval e;

		while (r < rows && col_u64(res, r, R_I) == i + 1)
			r++;
		for (int k = first; k < r; k++) {
			bool remote;

			if (PQgetisnull(res, k, R_ADDRESS))
				continue;
			remote = PQgetisnull(res, k, R_ACCOUNT);
			if (remote && !col_bool(res, k, R_LOCALDOM) && op->account_id == 0)
				continue;	/* relay */
			if (remote && op->account_id != 0 && !col_bool(res, k, R_LOCALDOM)) {
				/* submission to a foreign domain: the sender's tenant */
				if (target_add(op, i, 0, 0, op->sender_tenant,
					       PQgetvalue(res, k, R_ADDRESS), -1) < 0)
					return -1;
				continue;
			}
			if (remote) {
				if (target_add(op, i, 0, 0, col_u64(res, k, R_TENANT),
					       PQgetvalue(res, k, R_ADDRESS), -1) < 0)
					return -1;
				continue;
			}
			if (!col_bool(res, k, R_ENABLED) || PQgetisnull(res, k, R_MAILBOX))
				continue;
			if (target_add(op, i, col_u64(res, k, R_ACCOUNT), col_u64(res, k, R_MAILBOX),
				       col_u64(res, k, R_TENANT), NULL, col_i64(res, k, R_QB)) < 0)
				return -1;
		}
		if (op->nt > before)
			continue;
		rcpt_evaluate(res, first, r, 0, op->account_id != 0, false, &e);
		op->res[i].status = e.disabled > 0 ? MAIL_DELIVER_DISABLED :
			e.relay > 0 ? MAIL_DELIVER_RELAY_DENIED : MAIL_DELIVER_UNKNOWN;
		op->rcpt_final[i] = true;
	}
	return 0;
}

static void resolve_done(void *ctx, struct store_pg_reply *reply)
{
	struct mail_op *op = ctx;

	if (reply->status != STORE_OK) {
		set_error(op, "resolve", reply->error);
		rcpts_fail(op, reply->status == STORE_PERMANENT ? MAIL_DELIVER_PERMFAIL :
			   MAIL_DELIVER_TEMPFAIL);
		deliver_finish(op);
		return;
	}
	if (targets_from_rows(op, reply->res) < 0) {
		set_error(op, "out of memory", NULL);
		rcpts_fail(op, MAIL_DELIVER_TEMPFAIL);
		deliver_finish(op);
		return;
	}
	if (op->nt == 0) {
		deliver_finish(op);
		return;
	}
	if (build_blob(op) < 0) {
		rcpts_fail(op, MAIL_DELIVER_TEMPFAIL);
		deliver_finish(op);
		return;
	}
	tx_begin(op);
}

/* Submits the resolution of every recipient. Returns 0, or -1 (nothing
 * submitted). */
static int resolve_query(struct mail_op *op)
{
	struct pn_buf arr;
	const char *values[1];
	struct store_pg_query q = { .stmt = op->d->st_resolve, .nparams = 1, .values = values };
	int ret;

	pn_buf_init(&arr, (size_t)(2 * MAIL_DELIVERY_ADDRESS_MAX + 4) *
		    (MAIL_DELIVERY_MAX_RCPTS + 1));
	ret = array_text(&arr, op->rcpts, op->nrcpt);
	values[0] = (const char *)pn_buf_rptr(&arr);
	if (ret == 0)
		ret = store_pgpool_query(op->d->pool, &q, resolve_done, op);
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
	if (resolve_query(op) < 0) {
		set_error(op, "resolve not submitted", NULL);
		rcpts_fail(op, MAIL_DELIVER_TEMPFAIL);
		deliver_finish(op);
	}
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
	/* HEADROOM bytes for our header lines, then the message with CRLF
	 * line ends (a normalized message can at most double). */
	/* bytea parameters are int-sized (and PostgreSQL stops at 1 GiB) */
	if (req->message_len > ((size_t)INT_MAX - HEADROOM) / 2) {
		*error_r = "mail_deliver: message too big";
		op_free(op);
		return NULL;
	}
	pn_buf_init(&op->body, HEADROOM + 2 * req->message_len + 1);
	if (pn_buf_reserve(&op->body, HEADROOM) == NULL)
		goto nomem;
	pn_buf_commit(&op->body, HEADROOM);
	if (mail_crlf_normalize(req->message, req->message_len, &op->body) < 0)
		goto nomem;
	if (prepare_meta(op, op->body.data + op->body.start + HEADROOM,
			 pn_buf_len(&op->body) - HEADROOM) < 0)
		goto nomem;
	if (op->account_id != 0) {
		if (op->nfrom == 0) {
			/* no From: address to check: refuse, asynchronously */
			if (from_add(op, "missing@invalid") < 0)
				goto nomem;
		}
		if (sender_query(op, from_check_done) < 0) {
			*error_r = "sender check not submitted";
			op_free(op);
			return NULL;
		}
		return op;
	}
	if (resolve_query(op) < 0) {
		*error_r = "recipient resolution not submitted";
		op_free(op);
		return NULL;
	}
	return op;
nomem:
	*error_r = "out of memory";
	op_free(op);
	return NULL;
}
