/* Mailbox operations, part 3: SEARCH (RFC 3501 6.4.4). The key tree is
 * turned into a SQL condition that is exact for the keys the database can
 * decide (UIDs, flags, keywords, internal dates, sizes, MODSEQ) and a
 * superset for the others (SENT* keys get a one-day margin each side, text
 * keys are left to the message). When the tree holds a key of the second
 * kind, the candidates are read with their bytes (the FETCH scan) and the
 * whole tree is evaluated on the parsed message with the MIME library's
 * search helpers. */
#include "mailbox-private.h"

#include "postern/buf.h"
#include "postern/mail-date.h"
#include "postern/mail-decode.h"
#include "postern/mail-message.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SEARCH_DECODE_MAX (32u * 1024 * 1024)
#define SEARCH_SQL_MAX (1u << 20)
#define DAY_SECS 86400LL

struct search_key {
	const struct mail_search_node *node;
	struct mail_search_key key;
};

struct search_op {
	mail_mbox_search_cb *cb;
	void *ctx;
	const struct mail_search_node *tree;  /* our deep copy */
	struct mail_search_node *nodes;       /* storage of the copy */
	struct mail_uid_range *ranges;
	char *strings;
	struct search_key keys[MAIL_SEARCH_MAX_NODES];
	size_t nkeys;
	bool need_msg;
	uint32_t *uids;
	size_t count, cap;
	bool failed;
};

/* ---- validation and copy ---- */

static int tree_measure(const struct mail_search_node *n, unsigned int depth,
			size_t *nodes, size_t *ranges, size_t *bytes, bool *need_msg)
{
	for (; n != NULL; n = n->next) {
		if (depth > MAIL_SEARCH_MAX_DEPTH || ++*nodes > MAIL_SEARCH_MAX_NODES)
			return -1;
		switch (n->type) {
		case MAIL_SK_ALL:
		case MAIL_SK_FLAG:
		case MAIL_SK_BEFORE:
		case MAIL_SK_ON:
		case MAIL_SK_SINCE:
		case MAIL_SK_LARGER:
		case MAIL_SK_SMALLER:
		case MAIL_SK_MODSEQ:
			break;
		case MAIL_SK_SENTBEFORE:
		case MAIL_SK_SENTON:
		case MAIL_SK_SENTSINCE:
			*need_msg = true;
			break;
		case MAIL_SK_AND:
		case MAIL_SK_OR:
		case MAIL_SK_NOT:
			if (n->type == MAIL_SK_NOT && (n->children == NULL
						       || n->children->next != NULL))
				return -1;
			if (tree_measure(n->children, depth + 1, nodes, ranges, bytes,
					 need_msg) < 0)
				return -1;
			break;
		case MAIL_SK_UIDSET:
			for (size_t i = 0; i < n->uids.count; i++) {
				const struct mail_uid_range *r = &n->uids.ranges[i];

				if (r->lo == 0 || r->lo > r->hi
				    || (i > 0 && r->lo <= n->uids.ranges[i - 1].hi))
					return -1;
			}
			*ranges += n->uids.count;
			break;
		case MAIL_SK_KEYWORD:
			if (n->str == NULL)
				return -1;
			*bytes += strlen(n->str) + 1;
			break;
		case MAIL_SK_HEADER:
			if (n->name == NULL || n->name[0] == '\0' || strlen(n->name) > 256)
				return -1;
			*bytes += strlen(n->name) + 1;
			/* fall through */
		case MAIL_SK_BODY:
		case MAIL_SK_TEXT:
			if (n->str == NULL || strlen(n->str) > 65536)
				return -1;
			*bytes += strlen(n->str) + 1;
			*need_msg = true;
			break;
		default:
			return -1;
		}
	}
	return 0;
}

struct copier {
	struct mail_search_node *nodes;
	size_t ni;
	struct mail_uid_range *ranges;
	size_t ri;
	char *strings;
	size_t si;
};

static const char *copy_str(struct copier *c, const char *s)
{
	size_t len;
	char *d;

	if (s == NULL)
		return NULL;
	len = strlen(s) + 1;
	d = c->strings + c->si;
	memcpy(d, s, len);
	c->si += len;
	return d;
}

static struct mail_search_node *copy_tree(struct copier *c, const struct mail_search_node *n)
{
	struct mail_search_node *first = NULL, **tail = &first;

	for (; n != NULL; n = n->next) {
		struct mail_search_node *d = &c->nodes[c->ni++];

		*d = *n;
		d->next = NULL;
		d->name = copy_str(c, n->type == MAIL_SK_HEADER ? n->name : NULL);
		d->str = copy_str(c, n->type == MAIL_SK_KEYWORD || n->type == MAIL_SK_HEADER
				  || n->type == MAIL_SK_BODY || n->type == MAIL_SK_TEXT
				  ? n->str : NULL);
		if (n->type == MAIL_SK_UIDSET && n->uids.count > 0) {
			memcpy(c->ranges + c->ri, n->uids.ranges, n->uids.count * sizeof(*c->ranges));
			d->uids.ranges = c->ranges + c->ri;
			c->ri += n->uids.count;
		}
		d->children = copy_tree(c, n->children);
		*tail = d;
		tail = &d->next;
	}
	return first;
}

/* ---- SQL ---- */

struct sqlgen {
	struct pn_buf sql;
	struct mbox_scan *sc;
	int failed;
};

static void gen_param(struct sqlgen *g, const char *cast, const char *value)
{
	int idx = mbox_scan_param(g->sc, "%s", value);

	if (idx < 0 || pn_buf_printf(&g->sql, "$%d%s", idx, cast) < 0)
		g->failed = 1;
}

static void gen_text(struct sqlgen *g, const char *s)
{
	if (pn_buf_append_str(&g->sql, s) < 0)
		g->failed = 1;
}

/* text, then the number v */
/* The zone of a message's internal date as an interval. */
#define IDATE_ZONE_SQL "make_interval(mins => m.internaldate_tz)"

static void gen_num(struct sqlgen *g, const char *text, long long v)
{
	if (pn_buf_printf(&g->sql, "%s%lld", text, v) < 0)
		g->failed = 1;
}

/* Appends a condition that holds for every matching message; returns true
 * when it holds for no other (exact). */
static bool gen_node(struct sqlgen *g, const struct mail_search_node *n)
{
	bool exact = true;
	size_t mark;

	switch (n->type) {
	case MAIL_SK_ALL:
		gen_text(g, "TRUE");
		return true;
	case MAIL_SK_AND:
	case MAIL_SK_OR:
		if (n->children == NULL) {
			gen_text(g, n->type == MAIL_SK_AND ? "TRUE" : "FALSE");
			return true;
		}
		gen_text(g, "(");
		for (const struct mail_search_node *c = n->children; c != NULL; c = c->next) {
			if (c != n->children)
				gen_text(g, n->type == MAIL_SK_AND ? " AND " : " OR ");
			if (!gen_node(g, c))
				exact = false;
		}
		gen_text(g, ")");
		return exact;
	case MAIL_SK_NOT:
		mark = g->sql.end;
		gen_text(g, "NOT (");
		if (gen_node(g, n->children)) {
			gen_text(g, ")");
			return true;
		}
		/* NOT of a superset is no superset: leave it to the message */
		g->sql.end = mark;
		gen_text(g, "TRUE");
		return false;
	case MAIL_SK_UIDSET: {
		char lo[24], hi[24], *mr;

		if (n->uids.count == 0) {
			gen_text(g, "FALSE");
			return true;
		}
		if (mbox_uidset_sql(&n->uids, lo, hi, &mr) < 0) {
			g->failed = 1;
			return true;
		}
		gen_text(g, "(m.uid BETWEEN ");
		gen_text(g, lo);
		gen_text(g, " AND ");
		gen_text(g, hi);
		gen_text(g, " AND m.uid <@ ");
		gen_param(g, "::int8multirange", mr);
		gen_text(g, ")");
		free(mr);
		return true;
	}
	case MAIL_SK_FLAG:
		gen_num(g, "(m.flags & ", (long long)(n->flag & 31));
		gen_text(g, ") <> 0");
		return true;
	case MAIL_SK_KEYWORD:
		gen_text(g, "EXISTS (SELECT 1 FROM unnest(m.keywords) AS k (k) WHERE lower(k.k) = lower(");
		gen_param(g, "::text", n->str);
		gen_text(g, "))");
		return true;
	/* The day of the internal date in its own zone (RFC 3501 6.4.4
	 * "disregarding time and timezone", as Dovecot): the local midnight
	 * of day D is the instant D * 86400 - zone. */
	case MAIL_SK_BEFORE:
		gen_num(g, "m.internaldate < to_timestamp(", n->day * DAY_SECS);
		gen_text(g, ") - " IDATE_ZONE_SQL);
		return true;
	case MAIL_SK_ON:
		gen_num(g, "(m.internaldate >= to_timestamp(", n->day * DAY_SECS);
		gen_text(g, ") - " IDATE_ZONE_SQL);
		gen_num(g, " AND m.internaldate < to_timestamp(", (n->day + 1) * DAY_SECS);
		gen_text(g, ") - " IDATE_ZONE_SQL ")");
		return true;
	case MAIL_SK_SINCE:
		gen_num(g, "m.internaldate >= to_timestamp(", n->day * DAY_SECS);
		gen_text(g, ") - " IDATE_ZONE_SQL);
		return true;
	/* The Date: header's own zone is at most a day off UTC; a message
	 * without a usable Date: is judged by its internal date. */
	case MAIL_SK_SENTBEFORE:
		gen_num(g, "(m.sent_date IS NULL OR m.sent_date < to_timestamp(",
			(n->day + 1) * DAY_SECS);
		gen_text(g, "))");
		return false;
	case MAIL_SK_SENTON:
		gen_num(g, "(m.sent_date IS NULL OR (m.sent_date >= to_timestamp(", (n->day - 1) * DAY_SECS);
		gen_text(g, ")");
		gen_num(g, " AND m.sent_date < to_timestamp(", (n->day + 2) * DAY_SECS);
		gen_text(g, ")))");
		return false;
	case MAIL_SK_SENTSINCE:
		gen_num(g, "(m.sent_date IS NULL OR m.sent_date >= to_timestamp(", (n->day - 1) * DAY_SECS);
		gen_text(g, "))");
		return false;
	case MAIL_SK_LARGER:
		gen_num(g, "m.size > ", (long long)(n->num > INT64_MAX ? INT64_MAX : n->num));
		return true;
	case MAIL_SK_SMALLER:
		gen_num(g, "m.size < ", (long long)(n->num > INT64_MAX ? INT64_MAX : n->num));
		return true;
	case MAIL_SK_MODSEQ:
		gen_num(g, "m.modseq >= ", (long long)(n->num > INT64_MAX ? INT64_MAX : n->num));
		return true;
	case MAIL_SK_HEADER:
	case MAIL_SK_BODY:
	case MAIL_SK_TEXT:
		gen_text(g, "TRUE");
		return false;
	}
	g->failed = 1;
	return false;
}

/* ---- evaluation on a message ---- */

static const struct mail_search_key *key_of(struct search_op *op, const struct mail_search_node *n)
{
	for (size_t i = 0; i < op->nkeys; i++) {
		if (op->keys[i].node == n)
			return &op->keys[i].key;
	}
	return NULL;
}

static long sent_day(const struct mail_message *msg, const struct mail_mbox_msg *m)
{
	struct mail_header_field f;
	struct pn_buf v;
	long day = mail_date_day(m->internaldate, m->internaldate_tz);
	time_t t;
	int tz;

	if (msg == NULL || mail_part_header_find(msg, msg->root, "date", &f) != 1)
		return day;
	pn_buf_init(&v, 4096);
	if (mail_header_unfold(f.value, f.value_len, &v) == 0
	    && mail_date_parse((const char *)pn_buf_rptr(&v), pn_buf_len(&v), &t, &tz) == 0)
		day = mail_date_day(t, tz);
	pn_buf_free(&v);
	return day;
}

static bool in_uidset(const struct mail_uidset *s, uint32_t uid)
{
	size_t lo = 0, hi = s->count;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (uid < s->ranges[mid].lo)
			hi = mid;
		else if (uid > s->ranges[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/* 1 match, 0 no match, -1 decoding limit hit (counted as no match). */
static int eval(struct search_op *op, const struct mail_search_node *n,
		const struct mail_mbox_msg *m, const struct mail_message *msg)
{
	long iday = mail_date_day(m->internaldate, m->internaldate_tz);
	const struct mail_search_key *key;
	int r;

	switch (n->type) {
	case MAIL_SK_ALL:
		return 1;
	case MAIL_SK_AND:
		for (const struct mail_search_node *c = n->children; c != NULL; c = c->next) {
			if ((r = eval(op, c, m, msg)) != 1)
				return r;
		}
		return 1;
	case MAIL_SK_OR:
		for (const struct mail_search_node *c = n->children; c != NULL; c = c->next) {
			if (eval(op, c, m, msg) == 1)
				return 1;
		}
		return 0;
	case MAIL_SK_NOT:
		r = eval(op, n->children, m, msg);
		return r < 0 ? r : !r;
	case MAIL_SK_UIDSET:
		return in_uidset(&n->uids, m->uid);
	case MAIL_SK_FLAG:
		return (m->flags & n->flag) != 0;
	case MAIL_SK_KEYWORD:
		for (size_t i = 0; i < m->keyword_count; i++) {
			if (strcasecmp(m->keywords[i], n->str) == 0)
				return 1;
		}
		return 0;
	case MAIL_SK_BEFORE:
		return iday < n->day;
	case MAIL_SK_ON:
		return iday == n->day;
	case MAIL_SK_SINCE:
		return iday >= n->day;
	case MAIL_SK_SENTBEFORE:
		return sent_day(msg, m) < n->day;
	case MAIL_SK_SENTON:
		return sent_day(msg, m) == n->day;
	case MAIL_SK_SENTSINCE:
		return sent_day(msg, m) >= n->day;
	case MAIL_SK_LARGER:
		return m->size > n->num;
	case MAIL_SK_SMALLER:
		return m->size < n->num;
	case MAIL_SK_MODSEQ:
		return m->modseq >= n->num;
	case MAIL_SK_HEADER:
	case MAIL_SK_BODY:
	case MAIL_SK_TEXT:
		key = key_of(op, n);
		if (msg == NULL || key == NULL)
			return 0;
		if (n->type == MAIL_SK_HEADER)
			return mail_search_header(msg, n->name, key, SEARCH_DECODE_MAX);
		if (n->type == MAIL_SK_BODY)
			return mail_search_body(msg, key, SEARCH_DECODE_MAX);
		return mail_search_text(msg, key, SEARCH_DECODE_MAX);
	}
	return 0;
}

/* ---- the operation ---- */

static void op_free(struct search_op *op)
{
	for (size_t i = 0; i < op->nkeys; i++)
		mail_search_key_free(&op->keys[i].key);
	free(op->nodes);
	free(op->ranges);
	free(op->strings);
	free(op->uids);
	free(op);
}

static void add_uid(struct search_op *op, uint32_t uid)
{
	if (op->count == op->cap) {
		size_t cap = op->cap != 0 ? op->cap * 2 : 64;
		uint32_t *n = realloc(op->uids, cap * sizeof(*n));

		if (n == NULL) {
			op->failed = true;
			return;
		}
		op->uids = n;
		op->cap = cap;
	}
	op->uids[op->count++] = uid;
}

static void search_row(void *ctx, const struct mail_mbox_msg *m)
{
	struct search_op *op = ctx;
	struct mail_message *msg = NULL;
	const char *error;

	if (!op->need_msg) {
		add_uid(op, m->uid);
		return;
	}
	if (m->data != NULL && mail_message_parse(m->data, m->data_len, NULL, &msg, &error) < 0)
		msg = NULL;
	if (eval(op, op->tree, m, msg) == 1)
		add_uid(op, m->uid);
	mail_message_free(&msg);
}

static void search_done(void *ctx, enum mail_mbox_result res, uint64_t id, const char *error)
{
	struct search_op *op = ctx;

	(void)id;
	if (res == MAIL_MBOX_OK && op->failed)
		op->cb(op->ctx, MAIL_MBOX_TEMPFAIL, NULL, 0, "out of memory");
	else if (res != MAIL_MBOX_OK)
		op->cb(op->ctx, res, NULL, 0, error);
	else
		op->cb(op->ctx, MAIL_MBOX_OK, op->uids, op->count, "");
	op_free(op);
}

static int init_keys(struct search_op *op, const struct mail_search_node *n)
{
	for (; n != NULL; n = n->next) {
		if (n->type == MAIL_SK_HEADER || n->type == MAIL_SK_BODY
		    || n->type == MAIL_SK_TEXT) {
			struct search_key *k = &op->keys[op->nkeys];

			if (mail_search_key_init(&k->key, (const uint8_t *)n->str,
						 strlen(n->str)) < 0)
				return -1;
			k->node = n;
			op->nkeys++;
		}
		if (init_keys(op, n->children) < 0)
			return -1;
	}
	return 0;
}

int mail_mbox_search(struct mail_mbox_store *st, uint64_t account_id, uint64_t mailbox_id,
		     const struct mail_search_node *tree, mail_mbox_search_cb *cb, void *ctx)
{
	size_t nodes = 0, ranges = 0, bytes = 0;
	bool need_msg = false;
	struct search_op *op;
	struct copier c = { 0 };
	struct sqlgen g = { 0 };

	if (tree == NULL || tree->next != NULL
	    || tree_measure(tree, 0, &nodes, &ranges, &bytes, &need_msg) < 0) {
		errno = EINVAL;
		return -1;
	}
	op = calloc(1, sizeof(*op));
	if (op == NULL)
		return -1;
	op->cb = cb;
	op->ctx = ctx;
	op->need_msg = need_msg;
	op->nodes = calloc(nodes, sizeof(*op->nodes));
	op->ranges = calloc(ranges + 1, sizeof(*op->ranges));
	op->strings = malloc(bytes + 1);
	if (op->nodes == NULL || op->ranges == NULL || op->strings == NULL)
		goto fail;
	c.nodes = op->nodes;
	c.ranges = op->ranges;
	c.strings = op->strings;
	op->tree = copy_tree(&c, tree);
	if (init_keys(op, op->tree) < 0)
		goto fail;

	g.sc = mbox_scan_new(st, need_msg, search_row, search_done, op);
	if (g.sc == NULL)
		goto fail;
	pn_buf_init(&g.sql, SEARCH_SQL_MAX);
	/* $1 account, $2 mailbox, $3 first UID, $4 limit, $5 want body */
	if (mbox_scan_param(g.sc, "%" PRIu64, account_id) < 0
	    || mbox_scan_param(g.sc, "%" PRIu64, mailbox_id) < 0
	    || mbox_scan_param(g.sc, "%s", "1") < 0
	    || mbox_scan_param(g.sc, "%u", mbox_scan_limit(g.sc)) < 0
	    || mbox_scan_param(g.sc, "%s", need_msg ? "t" : "f") < 0)
		g.failed = 1;
	gen_text(&g, "SELECT m.uid, m.modseq, m.flags, array_to_string(m.keywords, ' '),"
		 " extract(epoch FROM m.internaldate)::bigint, m.size, NULL, NULL,"
		 " encode(m.blob_sha256, 'hex'), CASE WHEN $5 THEN (SELECT b.body FROM"
		 " mail_blobs b WHERE b.sha256 = m.blob_sha256) END, m.internaldate_tz"
		 " FROM messages m"
		 " WHERE m.account_id = $1 AND m.mailbox_id = $2 AND m.uid >= $3 AND ");
	(void)gen_node(&g, op->tree);
	gen_text(&g, " ORDER BY m.uid LIMIT $4");
	if (g.failed || pn_buf_append(&g.sql, "", 1) < 0
	    || mbox_scan_start(g.sc, (const char *)pn_buf_rptr(&g.sql), 2) < 0) {
		mbox_scan_abort(g.sc);
		pn_buf_free(&g.sql);
		goto fail;
	}
	pn_buf_free(&g.sql);
	return 0;
fail:
	op_free(op);
	errno = ENOMEM;
	return -1;
}
