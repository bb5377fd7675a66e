/* Mailbox operations, part 1: the store object with its prepared
 * statements, names and flags, LIST/LSUB matching, STATUS, SELECT/EXAMINE,
 * CREATE/DELETE/RENAME/(UN)SUBSCRIBE, the changes-since poll and the Redis
 * change notifications. Messages (APPEND, FETCH, STORE, COPY/MOVE,
 * EXPUNGE) are in mailbox-msg.c, SEARCH in mailbox-search.c. */
#include "mailbox-private.h"

#include "postern/buf.h"
#include "postern/store-redis-ops.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- statements ---- */

#define UIDSET_SQL "m.uid BETWEEN $3 AND $4 AND m.uid <@ $5::int8multirange"

static const struct {
	const char *name;
	int nparams;
	const char *sql;
} stmt_defs[MS_COUNT] = {
	[MS_LIST] = { "mbox_list", 1,
		"SELECT mb.id, mb.name, mb.special_use, mb.subscribed, mb.noselect"
		" FROM mailboxes mb WHERE mb.account_id = $1 ORDER BY mb.name" },
	[MS_STATUS] = { "mbox_status", 2,
		"SELECT mb.id, mb.noselect, mb.uidvalidity, mb.uidnext, mb.highestmodseq,"
		" count(m.uid), count(m.uid) FILTER (WHERE m.uid > mb.recent_uid),"
		" count(m.uid) FILTER (WHERE m.flags & 1 = 0), coalesce(sum(m.size), 0)"
		" FROM mailboxes mb LEFT JOIN messages m ON m.account_id = mb.account_id"
		" AND m.mailbox_id = mb.id WHERE mb.account_id = $1 AND mb.name = $2"
		" GROUP BY mb.account_id, mb.id" },
	[MS_SELECT] = { "mbox_select", 3,
		"SELECT s.mailbox_id, s.uidvalidity, s.uidnext, s.highestmodseq,"
		" s.recent_after, s.uids, s.unseen, coalesce(s.first_unseen, 0), s.keywords"
		" FROM mailbox_select($1, $2, $3) s" },
	[MS_CREATE] = { "mbox_create", 2, "SELECT mailbox_create($1, $2)" },
	[MS_DELETE] = { "mbox_delete", 2,
		"SELECT (SELECT mb.id FROM mailboxes mb WHERE mb.account_id = $1"
		" AND mb.name = $2), mailbox_delete($1, $2)" },
	/* The subqueries see the names before the rename (the statement's
	 * snapshot): the old mailbox and its inferiors, to notify. */
	[MS_RENAME] = { "mbox_rename", 3,
		"SELECT mailbox_rename($1, $2, $3), (SELECT mb.id FROM mailboxes mb"
		" WHERE mb.account_id = $1 AND mb.name = $2),"
		" (SELECT string_agg(mb.id::text, ',') FROM mailboxes mb"
		" WHERE mb.account_id = $1 AND $2 <> 'INBOX'"
		" AND left(mb.name, length($2) + 1) = $2 || '/')" },
	[MS_SUBSCRIBE] = { "mbox_subscribe", 3,
		"UPDATE mailboxes SET subscribed = $3 WHERE account_id = $1 AND name = $2"
		" RETURNING id" },
	[MS_APPEND] = { "mbox_append", 11,
		"SELECT d.mailbox_id, d.uid, d.modseq, d.status, mb.uidvalidity"
		" FROM mailboxes mb, LATERAL deliver_message($3::bytea, $4::bigint, $5::bytea,"
		" ARRAY[$1::bigint], ARRAY[mb.id], to_timestamp($6::double precision),"
		" $7::integer, $8::text[], $9::jsonb, true, $10::boolean, $11::integer) d"
		" WHERE mb.account_id = $1 AND mb.name = $2 AND NOT mb.noselect" },
	[MS_FETCH] = { "mbox_fetch", 7,
		"SELECT m.uid, m.modseq, m.flags, array_to_string(m.keywords, ' '),"
		" extract(epoch FROM m.internaldate)::bigint, m.size, m.envelope,"
		" m.bodystructure, encode(m.blob_sha256, 'hex'), CASE WHEN $7 THEN"
		" (SELECT b.body FROM mail_blobs b WHERE b.sha256 = m.blob_sha256) END,"
		" m.internaldate_tz FROM messages m WHERE m.account_id = $1 AND m.mailbox_id = $2"
		" AND " UIDSET_SQL " ORDER BY m.uid LIMIT $6" },
	[MS_STORE] = { "mbox_store", 9,
		"SELECT s.uid, s.modseq, s.flags, array_to_string(s.keywords, ' '), s.updated"
		" FROM store_flags($1, $2, ARRAY(SELECT m.uid FROM messages m"
		" WHERE m.account_id = $1 AND m.mailbox_id = $2 AND " UIDSET_SQL "),"
		" $6, $7, $8::text[], $9) s ORDER BY s.uid" },
	[MS_COPY] = { "mbox_copy", 6,
		"SELECT c.src_uid, c.dst_uid, c.modseq, d.id, d.uidvalidity, 0"
		" FROM (SELECT mb.id, mb.uidvalidity FROM mailboxes mb WHERE mb.account_id = $1"
		" AND mb.name = $6 AND NOT mb.noselect) d LEFT JOIN LATERAL copy_messages($1, $2,"
		" ARRAY(SELECT m.uid FROM messages m WHERE m.account_id = $1"
		" AND m.mailbox_id = $2 AND " UIDSET_SQL "), d.id) c ON true ORDER BY c.src_uid" },
	[MS_MOVE] = { "mbox_move", 6,
		"SELECT c.src_uid, c.dst_uid, c.dst_modseq, d.id, d.uidvalidity, c.src_modseq"
		" FROM (SELECT mb.id, mb.uidvalidity FROM mailboxes mb WHERE mb.account_id = $1"
		" AND mb.name = $6 AND NOT mb.noselect) d LEFT JOIN LATERAL move_messages($1, $2,"
		" ARRAY(SELECT m.uid FROM messages m WHERE m.account_id = $1"
		" AND m.mailbox_id = $2 AND " UIDSET_SQL "), d.id) c ON true ORDER BY c.src_uid" },
	[MS_EXPUNGE] = { "mbox_expunge", 6,
		"SELECT e.modseq, array_to_string(e.expunged, ',') FROM expunge_messages($1, $2,"
		" CASE WHEN $6 THEN ARRAY(SELECT m.uid FROM messages m WHERE m.account_id = $1"
		" AND m.mailbox_id = $2 AND " UIDSET_SQL ") END, true) e" },
	[MS_CHANGES] = { "mbox_changes", 5,
		"SELECT c.kind, c.uid, c.modseq, c.flags, c.keywords, c.extra, c.uidvalidity,"
		" (SELECT mb.name FROM mailboxes mb WHERE mb.account_id = $1 AND mb.id = $2)"
		" FROM mailbox_changes($1, $2, $3, $4, $5) c" },
	/* the bodies a FETCH did not find in the cache: $1 is a comma list of
	 * hex SHA-256 (the result is read in binary: no hex on either side) */
	[MS_BODIES] = { "mbox_bodies", 1,
		"SELECT b.sha256, b.body FROM mail_blobs b WHERE b.sha256 = ANY (ARRAY("
		"SELECT decode(h, 'hex') FROM unnest(string_to_array($1::text, ',')) AS h))" },
};

struct mail_mbox_store *mail_mbox_store_new(const struct mail_mbox_settings *set,
					    const char **error_r)
{
	struct mail_mbox_store *st;

	if (set == NULL || set->pool == NULL) {
		*error_r = "mailbox store: no PostgreSQL pool";
		return NULL;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	st->pool = set->pool;
	st->blob = set->blob;
	st->redis = set->redis;
	snprintf(st->node, sizeof(st->node), "%s", set->node != NULL ? set->node : "node");
	st->max_message_size = set->max_message_size != 0 ? set->max_message_size
							   : MAIL_MBOX_MESSAGE_MAX_DEFAULT;
	st->fetch_chunk = set->fetch_chunk != 0 ? set->fetch_chunk : 32;
	st->cache = set->cache;
	for (int i = 0; i < MS_COUNT; i++) {
		st->stmt[i] = store_pgpool_declare(st->pool, stmt_defs[i].name, stmt_defs[i].sql,
						   stmt_defs[i].nparams, NULL, error_r);
		if (st->stmt[i] == NULL) {
			free(st);
			return NULL;
		}
	}
	return st;
}

void mail_mbox_store_free(struct mail_mbox_store **st)
{
	if (*st == NULL)
		return;
	free(*st);
	*st = NULL;
}

int mbox_run(struct mail_mbox_store *st, enum mbox_stmt s, int n, const char *const *vals,
	     const int *lens, const int *fmts, store_pg_cb *cb, void *ctx)
{
	struct store_pg_query q = {
		.stmt = st->stmt[s],
		.nparams = n,
		.values = vals,
		.lengths = lens,
		.formats = fmts,
	};

	return store_pgpool_query(st->pool, &q, cb, ctx);
}

const char *mail_mbox_result_name(enum mail_mbox_result r)
{
	switch (r) {
	case MAIL_MBOX_OK: return "ok";
	case MAIL_MBOX_TEMPFAIL: return "tempfail";
	case MAIL_MBOX_FAILED: return "failed";
	case MAIL_MBOX_NONEXISTENT: return "nonexistent";
	case MAIL_MBOX_ALREADYEXISTS: return "alreadyexists";
	case MAIL_MBOX_CANNOT: return "cannot";
	case MAIL_MBOX_OVERQUOTA: return "overquota";
	case MAIL_MBOX_FULL: return "full";
	}
	return "?";
}

enum mail_mbox_result mbox_reply_result(const struct store_pg_reply *r)
{
	const char *s = r->sqlstate != NULL ? r->sqlstate : "";

	if (r->status == STORE_OK)
		return MAIL_MBOX_OK;
	if (strcmp(s, "PN001") == 0)
		return MAIL_MBOX_NONEXISTENT;
	if (strcmp(s, "PN002") == 0)
		return MAIL_MBOX_FULL;
	if (strcmp(s, "PN003") == 0)
		return MAIL_MBOX_OVERQUOTA;
	if (strcmp(s, "PN007") == 0 || strcmp(s, "23514") == 0)
		return MAIL_MBOX_CANNOT;
	if (strcmp(s, "PN008") == 0 || strcmp(s, "23505") == 0)
		return MAIL_MBOX_ALREADYEXISTS;
	if (r->status == STORE_TEMPORARY)
		return MAIL_MBOX_TEMPFAIL;
	return MAIL_MBOX_FAILED;
}

uint64_t mbox_u64(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return 0;
	return strtoull(PQgetvalue(res, row, col), NULL, 10);
}

/* ---- notifications ---- */

static void notify_done(void *ctx, enum store_status status, int64_t value, const char *error)
{
	(void)ctx;
	(void)status;
	(void)value;
	(void)error;
}

void mbox_notify(struct mail_mbox_store *st, uint64_t account_id, uint64_t mailbox_id,
		 uint64_t modseq, uint64_t uidnext)
{
	char msg[160];
	int n;

	if (st->redis == NULL || mailbox_id == 0)
		return;
	if (uidnext != 0)
		n = snprintf(msg, sizeof(msg), "v=1 modseq=%" PRIu64 " uidnext=%" PRIu64 " node=%s",
			     modseq, uidnext, st->node);
	else
		n = snprintf(msg, sizeof(msg), "v=1 modseq=%" PRIu64 " node=%s", modseq, st->node);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return;
	/* A refusal (-1) or a later failure only delays other sessions until
	 * their next poll. */
	(void)store_rnotify_publish(st->redis, account_id, mailbox_id, msg, (size_t)n,
				    notify_done, NULL);
}

/* ---- names, flags, keywords ---- */

int mail_mbox_name_normalize(const char *name, char *out, size_t size)
{
	size_t len;

	if (name == NULL)
		return -1;
	len = strlen(name);
	if (len > 0 && name[len - 1] == '/')
		len--;
	if (len == 0 || len > MAIL_MBOX_NAME_MAX || len + 1 > size || name[0] == '/'
	    || name[len - 1] == '/')
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c > 0x7e || c == '*' || c == '%')
			return -1;
		if (c == '/' && i + 1 < len && name[i + 1] == '/')
			return -1;
	}
	memcpy(out, name, len);
	out[len] = '\0';
	if (len >= 5 && strncasecmp(out, "INBOX", 5) == 0 && (len == 5 || out[5] == '/'))
		memcpy(out, "INBOX", 5);
	return 0;
}

static const char *const flag_names[] = {
	"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft",
};

unsigned int mail_flag_bit(const char *name)
{
	for (unsigned int i = 0; i < 5; i++) {
		if (strcasecmp(name, flag_names[i]) == 0)
			return 1u << i;
	}
	return 0;
}

const char *mail_flag_name(unsigned int bit)
{
	for (unsigned int i = 0; i < 5; i++) {
		if (bit == 1u << i)
			return flag_names[i];
	}
	return NULL;
}

/* RFC 3501 9: atom = 1*ATOM-CHAR; ATOM-CHAR = <any CHAR except
 * atom-specials>; atom-specials = "(" / ")" / "{" / SP / CTL /
 * list-wildcards / quoted-specials / resp-specials. flag-keyword = atom. */
bool mail_keyword_valid(const char *kw)
{
	size_t len = strlen(kw);

	if (len == 0 || len > MAIL_MBOX_KEYWORD_MAX || kw[0] == '\\')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)kw[i];

		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return false;
	}
	return true;
}

char *mbox_keyword_array(const char *const *kw, size_t n)
{
	struct pn_buf b;
	char *out;

	pn_buf_init(&b, (size_t)n * (MAIL_MBOX_KEYWORD_MAX + 3) + 8);
	if (pn_buf_append_str(&b, "{") < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		/* Keywords are atoms: no '"' or '\\' to escape. */
		if (pn_buf_printf(&b, "%s\"%s\"", i > 0 ? "," : "", kw[i]) < 0)
			goto fail;
	}
	if (pn_buf_append(&b, "}", 2) < 0)
		goto fail;
	out = malloc(pn_buf_len(&b));
	if (out != NULL)
		memcpy(out, pn_buf_rptr(&b), pn_buf_len(&b));
	pn_buf_free(&b);
	return out;
fail:
	pn_buf_free(&b);
	return NULL;
}

int mbox_split_rows(const PGresult *res, int col, int nrows, const char *const **lists,
		    size_t *counts, void **mem_r)
{
	size_t words = 0, bytes = 0;
	const char **ptrs;
	char *text;
	size_t wi = 0;

	for (int r = 0; r < nrows; r++) {
		const char *s = PQgetvalue(res, r, col);
		size_t len = strlen(s);

		bytes += len + 1;
		for (size_t i = 0; i < len; i++) {
			if (s[i] != ' ' && (i == 0 || s[i - 1] == ' '))
				words++;
		}
	}
	*mem_r = malloc((words + 1) * sizeof(char *) + bytes + 1);
	if (*mem_r == NULL)
		return -1;
	ptrs = *mem_r;
	text = (char *)(ptrs + words + 1);
	for (int r = 0; r < nrows; r++) {
		const char *s = PQgetvalue(res, r, col);
		size_t len = strlen(s);

		memcpy(text, s, len + 1);
		lists[r] = ptrs + wi;
		counts[r] = 0;
		for (size_t i = 0; i < len; i++) {
			if (text[i] == ' ') {
				text[i] = '\0';
			} else if (i == 0 || text[i - 1] == '\0') {
				ptrs[wi++] = text + i;
				counts[r]++;
			}
		}
		text += len + 1;
	}
	return 0;
}

int mbox_parse_uids(const char *s, uint32_t **uids_r, size_t *count_r)
{
	size_t n = 0, cap = 0;
	uint32_t *v;

	for (const char *p = s; *p != '\0'; p++) {
		if (*p == ',')
			cap++;
	}
	cap += 1;
	v = malloc(cap * sizeof(*v));
	if (v == NULL)
		return -1;
	while (*s != '\0') {
		char *end;
		unsigned long long u = strtoull(s, &end, 10);

		if (end == s || u == 0 || u > UINT32_MAX || n >= cap) {
			free(v);
			return -1;
		}
		v[n++] = (uint32_t)u;
		s = *end == ',' ? end + 1 : end;
	}
	*uids_r = v;
	*count_r = n;
	return 0;
}

int mbox_uidset_sql(const struct mail_uidset *set, char lo[24], char hi[24], char **mr_r)
{
	struct pn_buf b;
	size_t n = set != NULL ? set->count : 0;

	if (n == 0) {
		snprintf(lo, 24, "1");
		snprintf(hi, 24, "0");
		*mr_r = strdup("{}");
		return *mr_r != NULL ? 0 : -1;
	}
	for (size_t i = 0; i < n; i++) {
		const struct mail_uid_range *r = &set->ranges[i];

		if (r->lo == 0 || r->lo > r->hi || (i > 0 && r->lo <= set->ranges[i - 1].hi))
			return -1;
	}
	snprintf(lo, 24, "%" PRIu32, set->ranges[0].lo);
	snprintf(hi, 24, "%" PRIu32, set->ranges[n - 1].hi);
	pn_buf_init(&b, n * 24 + 8);
	if (pn_buf_append_str(&b, "{") < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (pn_buf_printf(&b, "%s[%" PRIu32 ",%" PRIu32 "]", i > 0 ? "," : "",
				  set->ranges[i].lo, set->ranges[i].hi) < 0)
			goto fail;
	}
	if (pn_buf_append(&b, "}", 2) < 0)
		goto fail;
	*mr_r = malloc(pn_buf_len(&b));
	if (*mr_r == NULL)
		goto fail;
	memcpy(*mr_r, pn_buf_rptr(&b), pn_buf_len(&b));
	pn_buf_free(&b);
	return 0;
fail:
	pn_buf_free(&b);
	return -1;
}

/* ---- LIST / LSUB ---- */

/* RFC 3501 6.3.8: "The reference and mailbox name arguments are
 * interpreted into a canonical form that represents an unambiguous left-to-
 * right hierarchy." A pattern starting with the delimiter is absolute. */
int mail_mbox_list_canonical(const char *reference, const char *pattern, char *out,
			     size_t size)
{
	int n;

	if (pattern[0] == '/' || reference[0] == '\0')
		n = snprintf(out, size, "%s", pattern);
	else
		n = snprintf(out, size, "%s%s", reference, pattern);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* '*' matches any run, '%' any run without '/'. Dynamic programming over
 * the name (one row per pattern byte), so no input is exponential. The
 * first five bytes of a name "INBOX" or "INBOX/..." compare
 * case-insensitively. */
bool mail_mbox_list_match(const char *pattern, const char *name)
{
	size_t n = strlen(name);
	size_t ci = (strncmp(name, "INBOX", 5) == 0 && (name[5] == '\0' || name[5] == '/')) ? 5 : 0;
	bool *row, *next;
	bool ok;

	row = calloc(2 * (n + 1), sizeof(bool));
	if (row == NULL)
		return false;
	next = row + n + 1;
	row[0] = true;
	for (const char *p = pattern; *p != '\0'; p++) {
		memset(next, 0, (n + 1) * sizeof(bool));
		if (*p == '*' || *p == '%') {
			bool run = false;

			for (size_t j = 0; j <= n; j++) {
				/* a '%' run may not take in a '/' */
				if (*p == '%' && j > 0 && name[j - 1] == '/')
					run = false;
				if (row[j])
					run = true;
				next[j] = run;
			}
		} else {
			for (size_t j = 1; j <= n; j++) {
				char a = name[j - 1], b = *p;

				if (j - 1 < ci)
					ok = toupper((unsigned char)a) == toupper((unsigned char)b);
				else
					ok = a == b;
				next[j] = row[j - 1] && ok;
			}
		}
		bool *t = row;

		row = next;
		next = t;
	}
	ok = row[n];
	free(row < next ? row : next);
	return ok;
}

struct list_op {
	struct mail_mbox_store *st;
	mail_mbox_list_cb *cb;
	void *ctx;
	bool lsub;
	char pattern[MAIL_MBOX_PATTERN_MAX * 2 + 2];
};

static int info_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mail_mbox_info *)a)->name,
		      ((const struct mail_mbox_info *)b)->name);
}

/* The rows come sorted by name in byte order (COLLATE "C"): the first row
 * not below key[0..len) (as a byte string), by binary search. */
static int lower_bound(const PGresult *res, int nrows, const char *key, size_t len)
{
	int lo = 0, hi = nrows;

	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		const char *o = PQgetvalue(res, mid, 1);
		size_t olen = strlen(o);
		int c = memcmp(o, key, olen < len ? olen : len);

		if (c < 0 || (c == 0 && olen < len))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool has_children(const PGresult *res, int nrows, const char *name)
{
	size_t len = strlen(name);
	char key[MAIL_MBOX_NAME_MAX + 2];
	int r;

	if (len + 1 >= sizeof(key))
		return false;
	memcpy(key, name, len);
	key[len] = '/';
	r = lower_bound(res, nrows, key, len + 1);
	return r < nrows && strncmp(PQgetvalue(res, r, 1), key, len + 1) == 0;
}

static int find_row(const PGresult *res, int nrows, const char *name, size_t len)
{
	int r = lower_bound(res, nrows, name, len);

	if (r < nrows && strlen(PQgetvalue(res, r, 1)) == len
	    && memcmp(PQgetvalue(res, r, 1), name, len) == 0)
		return r;
	return -1;
}

static void list_done(void *ctx, struct store_pg_reply *reply)
{
	struct list_op *op = ctx;
	enum mail_mbox_result res = mbox_reply_result(reply);
	struct mail_mbox_info *out = NULL;
	char **implied = NULL;
	size_t n = 0, nimplied = 0, cap;
	int nrows;

	if (res != MAIL_MBOX_OK) {
		op->cb(op->ctx, res, NULL, 0, reply->error);
		free(op);
		return;
	}
	nrows = PQntuples(reply->res);
	/* every row, plus at most one superior per '/' */
	cap = (size_t)nrows + 1;
	for (int r = 0; r < nrows; r++) {
		for (const char *p = PQgetvalue(reply->res, r, 1); *p != '\0'; p++)
			cap += *p == '/';
	}
	out = calloc(cap, sizeof(*out));
	implied = calloc(cap, sizeof(*implied));
	if (out == NULL || implied == NULL) {
		op->cb(op->ctx, MAIL_MBOX_TEMPFAIL, NULL, 0, "out of memory");
		goto out;
	}
	for (int r = 0; r < nrows; r++) {
		const char *name = PQgetvalue(reply->res, r, 1);
		bool sub = PQgetvalue(reply->res, r, 3)[0] == 't';

		if (op->lsub && !sub)
			continue;
		if (mail_mbox_list_match(op->pattern, name)) {
			struct mail_mbox_info *i = &out[n++];

			i->name = name;
			i->id = mbox_u64(reply->res, r, 0);
			i->special_use = PQgetisnull(reply->res, r, 2) ? NULL
					 : PQgetvalue(reply->res, r, 2);
			i->subscribed = sub;
			i->noselect = PQgetvalue(reply->res, r, 4)[0] == 't';
			i->has_children = has_children(reply->res, nrows, name);
		}
		/* Superiors that are no mailbox of the listed set (LIST: none
		 * exists; LSUB: not subscribed) but match: \Noselect. */
		for (const char *p = strchr(name, '/'); p != NULL; p = strchr(p + 1, '/')) {
			size_t len = (size_t)(p - name);
			int row = find_row(reply->res, nrows, name, len);
			bool dup = false;
			char *sup;

			if (row >= 0 && (!op->lsub || PQgetvalue(reply->res, row, 3)[0] == 't'))
				continue;
			sup = strndup(name, len);
			if (sup == NULL)
				continue;
			if (!mail_mbox_list_match(op->pattern, sup)) {
				free(sup);
				continue;
			}
			for (size_t k = 0; k < n && !dup; k++)
				dup = strcmp(out[k].name, sup) == 0;
			if (dup || n >= cap) {
				free(sup);
				continue;
			}
			implied[nimplied++] = sup;
			out[n].name = sup;
			out[n].id = row >= 0 ? mbox_u64(reply->res, row, 0) : 0;
			out[n].noselect = true;
			out[n].has_children = true;
			n++;
		}
	}
	qsort(out, n, sizeof(*out), info_cmp);
	op->cb(op->ctx, MAIL_MBOX_OK, out, n, "");
out:
	for (size_t k = 0; k < nimplied; k++)
		free(implied[k]);
	free(implied);
	free(out);
	free(op);
}

static void list_empty_done(void *ctx, struct store_pg_reply *reply)
{
	struct list_op *op = ctx;
	enum mail_mbox_result res = mbox_reply_result(reply);
	struct mail_mbox_info root = { .name = "", .noselect = true };

	if (res != MAIL_MBOX_OK)
		op->cb(op->ctx, res, NULL, 0, reply->error);
	else
		op->cb(op->ctx, MAIL_MBOX_OK, &root, 1, "");
	free(op);
}

int mail_mbox_list(struct mail_mbox_store *st, uint64_t account_id, const char *reference,
		   const char *pattern, bool lsub, mail_mbox_list_cb *cb, void *ctx)
{
	struct list_op *op;
	char acc[24];
	const char *vals[1] = { acc };

	if (reference == NULL || pattern == NULL || strlen(reference) > MAIL_MBOX_PATTERN_MAX
	    || strlen(pattern) > MAIL_MBOX_PATTERN_MAX) {
		errno = EINVAL;
		return -1;
	}
	op = calloc(1, sizeof(*op));
	if (op == NULL)
		return -1;
	op->st = st;
	op->cb = cb;
	op->ctx = ctx;
	op->lsub = lsub;
	if (mail_mbox_list_canonical(reference, pattern, op->pattern, sizeof(op->pattern)) < 0) {
		free(op);
		errno = EINVAL;
		return -1;
	}
	snprintf(acc, sizeof(acc), "%" PRIu64, account_id);
	if (pattern[0] == '\0') {
		/* Still one round trip, so that the callback comes later. */
		if (store_pgpool_exec(st->pool, "SELECT 1", 0, NULL, list_empty_done, op) < 0) {
			free(op);
			return -1;
		}
		return 0;
	}
	if (mbox_run(st, MS_LIST, 1, vals, NULL, NULL, list_done, op) < 0) {
		free(op);
		return -1;
	}
	return 0;
}

/* ---- STATUS ---- */

struct status_op {
	mail_mbox_status_cb *cb;
	void *ctx;
};

static void status_done(void *ctx, struct store_pg_reply *reply)
{
	struct status_op *op = ctx;
	enum mail_mbox_result res = mbox_reply_result(reply);
	struct mail_mbox_status s = { 0 };

	if (res == MAIL_MBOX_OK && PQntuples(reply->res) == 0)
		res = MAIL_MBOX_NONEXISTENT;
	if (res == MAIL_MBOX_OK && PQgetvalue(reply->res, 0, 1)[0] == 't')
		res = MAIL_MBOX_CANNOT;
	if (res != MAIL_MBOX_OK) {
		op->cb(op->ctx, res, NULL, reply->error[0] != '\0' ? reply->error
					  : mail_mbox_result_name(res));
		free(op);
		return;
	}
	s.id = mbox_u64(reply->res, 0, 0);
	s.uidvalidity = (uint32_t)mbox_u64(reply->res, 0, 2);
	s.uidnext = (uint32_t)mbox_u64(reply->res, 0, 3);
	s.highestmodseq = mbox_u64(reply->res, 0, 4);
	s.messages = (uint32_t)mbox_u64(reply->res, 0, 5);
	s.recent = (uint32_t)mbox_u64(reply->res, 0, 6);
	s.unseen = (uint32_t)mbox_u64(reply->res, 0, 7);
	s.size = mbox_u64(reply->res, 0, 8);
	op->cb(op->ctx, MAIL_MBOX_OK, &s, "");
	free(op);
}

int mail_mbox_status(struct mail_mbox_store *st, uint64_t account_id, const char *name,
		     mail_mbox_status_cb *cb, void *ctx)
{
	char acc[24], nm[MAIL_MBOX_NAME_MAX + 1];
	const char *vals[2] = { acc, nm };
	struct status_op *op;

	if (mail_mbox_name_normalize(name, nm, sizeof(nm)) < 0) {
		errno = EINVAL;
		return -1;
	}
	op = calloc(1, sizeof(*op));
	if (op == NULL)
		return -1;
	op->cb = cb;
	op->ctx = ctx;
	snprintf(acc, sizeof(acc), "%" PRIu64, account_id);
	if (mbox_run(st, MS_STATUS, 2, vals, NULL, NULL, status_done, op) < 0) {
		free(op);
		return -1;
	}
	return 0;
}

/* ---- SELECT / EXAMINE ---- */

struct select_op {
	mail_mbox_select_cb *cb;
	void *ctx;
};

static void select_done(void *ctx, struct store_pg_reply *reply)
{
	struct select_op *op = ctx;
	enum mail_mbox_result res = mbox_reply_result(reply);
	struct mail_mbox_selected s = { 0 };
	uint32_t *uids = NULL;
	const char *const *kw = NULL;
	size_t kwn = 0;
	void *kwmem = NULL;

	if (res == MAIL_MBOX_OK && PQntuples(reply->res) != 1)
		res = MAIL_MBOX_FAILED;
	if (res != MAIL_MBOX_OK) {
		op->cb(op->ctx, res, NULL, reply->error[0] != '\0' ? reply->error
					  : mail_mbox_result_name(res));
		free(op);
		return;
	}
	if (mbox_parse_uids(PQgetvalue(reply->res, 0, 5), &uids, &s.count) < 0
	    || mbox_split_rows(reply->res, 8, 1, &kw, &kwn, &kwmem) < 0) {
		op->cb(op->ctx, MAIL_MBOX_TEMPFAIL, NULL, "out of memory");
		goto out;
	}
	s.id = mbox_u64(reply->res, 0, 0);
	s.uidvalidity = (uint32_t)mbox_u64(reply->res, 0, 1);
	s.uidnext = (uint32_t)mbox_u64(reply->res, 0, 2);
	s.highestmodseq = mbox_u64(reply->res, 0, 3);
	s.recent_after = (uint32_t)mbox_u64(reply->res, 0, 4);
	s.uids = uids;
	for (size_t i = s.count; i > 0 && uids[i - 1] > s.recent_after; i--)
		s.recent++;
	s.unseen = (uint32_t)mbox_u64(reply->res, 0, 6);
	s.first_unseen_uid = (uint32_t)mbox_u64(reply->res, 0, 7);
	s.keywords = kw;
	s.keyword_count = kwn;
	op->cb(op->ctx, MAIL_MBOX_OK, &s, "");
out:
	free(uids);
	free(kwmem);
	free(op);
}

int mail_mbox_select(struct mail_mbox_store *st, uint64_t account_id, const char *name,
		     bool claim_recent, mail_mbox_select_cb *cb, void *ctx)
{
	char acc[24], nm[MAIL_MBOX_NAME_MAX + 1];
	const char *vals[3] = { acc, nm, claim_recent ? "t" : "f" };
	struct select_op *op;

	if (mail_mbox_name_normalize(name, nm, sizeof(nm)) < 0) {
		errno = EINVAL;
		return -1;
	}
	op = calloc(1, sizeof(*op));
	if (op == NULL)
		return -1;
	op->cb = cb;
	op->ctx = ctx;
	snprintf(acc, sizeof(acc), "%" PRIu64, account_id);
	if (mbox_run(st, MS_SELECT, 3, vals, NULL, NULL, select_done, op) < 0) {
		free(op);
		return -1;
	}
	return 0;
}

/* ---- CREATE / DELETE / RENAME / SUBSCRIBE ---- */

struct done_op {
	struct mail_mbox_store *st;
	enum mbox_stmt stmt;
	uint64_t account_id;
	bool inbox;
	mail_mbox_done_cb *cb;
	void *ctx;
};

static void done_done(void *ctx, struct store_pg_reply *reply)
{
	struct done_op *op = ctx;
	enum mail_mbox_result res = mbox_reply_result(reply);
	uint64_t id = 0;

	if (res == MAIL_MBOX_OK && PQntuples(reply->res) == 0)
		res = MAIL_MBOX_NONEXISTENT;
	if (res == MAIL_MBOX_OK) {
		switch (op->stmt) {
		case MS_CREATE:
		case MS_SUBSCRIBE:
			id = mbox_u64(reply->res, 0, 0);
			break;
		case MS_DELETE:
			/* sessions that have it selected find it gone */
			mbox_notify(op->st, op->account_id, mbox_u64(reply->res, 0, 0), 0, 0);
			break;
		case MS_RENAME:
			id = mbox_u64(reply->res, 0, 0);
			if (op->inbox) {
				mbox_notify(op->st, op->account_id, mbox_u64(reply->res, 0, 1), 0, 0);
				break;
			}
			/* sessions with it or an inferior selected find it
			 * renamed (IMAP: BYE) */
			mbox_notify(op->st, op->account_id, id, 0, 0);
			for (const char *p = PQgetvalue(reply->res, 0, 2); *p != '\0';) {
				char *end;
				uint64_t inferior = strtoull(p, &end, 10);

				if (end == p)
					break;
				mbox_notify(op->st, op->account_id, inferior, 0, 0);
				p = *end == ',' ? end + 1 : end;
			}
			break;
		default:
			break;
		}
	}
	op->cb(op->ctx, res, id, res == MAIL_MBOX_OK ? ""
		: reply->error[0] != '\0' ? reply->error : mail_mbox_result_name(res));
	free(op);
}

static int run_done(struct mail_mbox_store *st, enum mbox_stmt s, uint64_t account_id,
		    const char *name, const char *arg3, mail_mbox_done_cb *cb, void *ctx)
{
	char acc[24], nm[MAIL_MBOX_NAME_MAX + 1], nm2[MAIL_MBOX_NAME_MAX + 1];
	const char *vals[3] = { acc, nm, arg3 };
	struct done_op *op;

	if (mail_mbox_name_normalize(name, nm, sizeof(nm)) < 0) {
		errno = EINVAL;
		return -1;
	}
	if (s == MS_RENAME) {
		if (mail_mbox_name_normalize(arg3, nm2, sizeof(nm2)) < 0) {
			errno = EINVAL;
			return -1;
		}
		vals[2] = nm2;
	}
	op = calloc(1, sizeof(*op));
	if (op == NULL)
		return -1;
	op->st = st;
	op->stmt = s;
	op->account_id = account_id;
	op->inbox = strcmp(nm, "INBOX") == 0;
	op->cb = cb;
	op->ctx = ctx;
	snprintf(acc, sizeof(acc), "%" PRIu64, account_id);
	if (mbox_run(st, s, arg3 != NULL ? 3 : 2, vals, NULL, NULL, done_done, op) < 0) {
		free(op);
		return -1;
	}
	return 0;
}

int mail_mbox_create(struct mail_mbox_store *st, uint64_t account_id, const char *name,
		     mail_mbox_done_cb *cb, void *ctx)
{
	return run_done(st, MS_CREATE, account_id, name, NULL, cb, ctx);
}

int mail_mbox_delete(struct mail_mbox_store *st, uint64_t account_id, const char *name,
		     mail_mbox_done_cb *cb, void *ctx)
{
	return run_done(st, MS_DELETE, account_id, name, NULL, cb, ctx);
}

int mail_mbox_rename(struct mail_mbox_store *st, uint64_t account_id, const char *old_name,
		     const char *new_name, mail_mbox_done_cb *cb, void *ctx)
{
	if (new_name == NULL) {
		errno = EINVAL;
		return -1;
	}
	return run_done(st, MS_RENAME, account_id, old_name, new_name, cb, ctx);
}

int mail_mbox_subscribe(struct mail_mbox_store *st, uint64_t account_id, const char *name,
			bool subscribe, mail_mbox_done_cb *cb, void *ctx)
{
	return run_done(st, MS_SUBSCRIBE, account_id, name, subscribe ? "t" : "f", cb, ctx);
}

/* ---- changes since ---- */

struct changes_op {
	mail_mbox_changes_cb *cb;
	void *ctx;
};

static void changes_done(void *ctx, struct store_pg_reply *reply)
{
	struct changes_op *op = ctx;
	enum mail_mbox_result res = mbox_reply_result(reply);
	struct mail_mbox_changes ch = { 0 };
	int nrows;
	const char *const **lists = NULL;
	size_t *counts = NULL;
	void *mem = NULL;
	uint32_t *exp = NULL;
	struct mail_mbox_flagmsg *fm = NULL;

	if (res == MAIL_MBOX_OK && (PQntuples(reply->res) < 1
				    || PQgetvalue(reply->res, 0, 0)[0] != 'M'))
		res = MAIL_MBOX_FAILED;
	if (res != MAIL_MBOX_OK) {
		op->cb(op->ctx, res, NULL, reply->error[0] != '\0' ? reply->error
					  : mail_mbox_result_name(res));
		free(op);
		return;
	}
	nrows = PQntuples(reply->res);
	lists = calloc((size_t)nrows, sizeof(*lists));
	counts = calloc((size_t)nrows, sizeof(*counts));
	exp = calloc((size_t)nrows, sizeof(*exp));
	fm = calloc((size_t)nrows, sizeof(*fm));
	if (lists == NULL || counts == NULL || exp == NULL || fm == NULL
	    || mbox_split_rows(reply->res, 4, nrows, (const char *const **)lists, counts, &mem) < 0) {
		op->cb(op->ctx, MAIL_MBOX_TEMPFAIL, NULL, "out of memory");
		goto out;
	}
	ch.name = PQgetvalue(reply->res, 0, 7);
	ch.uidnext = (uint32_t)mbox_u64(reply->res, 0, 1);
	ch.highestmodseq = mbox_u64(reply->res, 0, 2);
	ch.recent_after = (uint32_t)mbox_u64(reply->res, 0, 5);
	ch.uidvalidity = (uint32_t)mbox_u64(reply->res, 0, 6);
	ch.expunged = exp;
	/* rows come grouped: E, then F, then N */
	for (int r = 1; r < nrows; r++) {
		char kind = PQgetvalue(reply->res, r, 0)[0];
		uint32_t uid = (uint32_t)mbox_u64(reply->res, r, 1);

		if (kind == 'E') {
			exp[ch.expunged_count++] = uid;
			continue;
		}
		struct mail_mbox_flagmsg *m = &fm[ch.changed_count + ch.added_count];

		m->uid = uid;
		m->modseq = mbox_u64(reply->res, r, 2);
		m->flags = (unsigned int)mbox_u64(reply->res, r, 3);
		m->keywords = lists[r];
		m->keyword_count = counts[r];
		if (kind == 'F')
			ch.changed_count++;
		else
			ch.added_count++;
	}
	ch.changed = fm;
	ch.added = fm + ch.changed_count;
	op->cb(op->ctx, MAIL_MBOX_OK, &ch, "");
out:
	free(lists);
	free(counts);
	free(mem);
	free(exp);
	free(fm);
	free(op);
}

int mail_mbox_changes(struct mail_mbox_store *st, uint64_t account_id, uint64_t mailbox_id,
		      uint64_t since_modseq, uint32_t known_uidnext, bool claim_recent,
		      mail_mbox_changes_cb *cb, void *ctx)
{
	char acc[24], mb[24], since[24], known[24];
	const char *vals[5] = { acc, mb, since, known, claim_recent ? "t" : "f" };
	struct changes_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return -1;
	op->cb = cb;
	op->ctx = ctx;
	snprintf(acc, sizeof(acc), "%" PRIu64, account_id);
	snprintf(mb, sizeof(mb), "%" PRIu64, mailbox_id);
	snprintf(since, sizeof(since), "%" PRIu64, since_modseq);
	snprintf(known, sizeof(known), "%" PRIu32, known_uidnext);
	if (mbox_run(st, MS_CHANGES, 5, vals, NULL, NULL, changes_done, op) < 0) {
		free(op);
		return -1;
	}
	return 0;
}
