/* SEARCH and UID SEARCH of the IMAP session engine: every search key of
 * RFC 3501 section 6.4.4 parsed into a tree, evaluated by the engine on the
 * per-message data the daemon supplies (flags, internal date, size, and the
 * message bytes only when a header, body, text or sent-date key needs them).
 * Text keys match case-insensitively after MIME decoding (backend mime
 * library). CHARSET UTF-8 and US-ASCII are accepted.
 */
#include "imap-session-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/mail-date.h"
#include "postern/mail-decode.h"
#include "postern/mail-message.h"

#define SEARCH_MAX_DEPTH 32
#define SEARCH_MAX_NODES 1000
/* Most decoded bytes one text key may look at in one message. */
#define SEARCH_MAX_DECODE (32u * 1024 * 1024)

enum sk_kind {
	SK_ALL, SK_AND, SK_OR, SK_NOT, SK_FLAG, SK_UNFLAG, SK_NEW,
	SK_HEADER, SK_BODY, SK_TEXT,
	SK_BEFORE, SK_ON, SK_SINCE, SK_SENTBEFORE, SK_SENTON, SK_SENTSINCE,
	SK_LARGER, SK_SMALLER, SK_SEQ, SK_UID, SK_MODSEQ,
};

struct search_key {
	enum sk_kind kind;
	struct search_key *child, *next; /* AND/OR/NOT: children */
	struct search_key *reg_next;     /* every node of the command */
	const char *str;                 /* flag or header name */
	struct mail_search_key key;
	bool key_init, set_init;
	long day;
	uint64_t size;
	struct imap_seqset set;
};

struct search_parse {
	struct imap_session *s;
	unsigned int nodes;
	const char *error;
	bool no; /* answer NO instead of BAD */
};

void search_free(struct imap_session *s)
{
	/* Nodes live in command memory; free what they hold. */
	for (struct search_key *k = s->search_reg; k != NULL; k = k->reg_next) {
		if (k->key_init)
			mail_search_key_free(&k->key);
		if (k->set_init)
			imap_seqset_free(&k->set);
	}
	s->search_reg = NULL;
	s->search = NULL;
	free(s->search_hits);
	s->search_hits = NULL;
	s->search_n = s->search_cap = 0;
}

static struct search_key *node(struct search_parse *sp, enum sk_kind kind)
{
	if (++sp->nodes > SEARCH_MAX_NODES) {
		sp->error = "Search program too complex";
		return NULL;
	}
	struct search_key *k = cmd_alloc(sp->s, sizeof(*k));
	if (k == NULL) {
		sp->error = "Out of memory";
		sp->no = true;
		return NULL;
	}
	k->kind = kind;
	k->reg_next = sp->s->search_reg;
	sp->s->search_reg = k;
	return k;
}

static const struct imap_arg *next_arg(struct search_parse *sp,
				       const struct imap_arg *args, size_t *i)
{
	if (args[*i].type == IMAP_ARG_EOL) {
		sp->error = "Missing search key argument";
		return NULL;
	}
	return &args[(*i)++];
}

static bool string_arg(struct search_parse *sp, const struct imap_arg *args,
		       size_t *i, const char **str_r, size_t *len_r)
{
	const struct imap_arg *a = next_arg(sp, args, i);
	if (a == NULL)
		return false;
	if (!imap_arg_get_astring(a, str_r, len_r)) {
		sp->error = "Expected a string";
		return false;
	}
	return true;
}

static struct search_key *parse_key(struct search_parse *sp,
				    const struct imap_arg *args, size_t *i,
				    unsigned int depth);

/* Parses keys up to the end of args into a chain (an implicit AND). */
static struct search_key *parse_list(struct search_parse *sp,
				     const struct imap_arg *args, unsigned int depth)
{
	struct search_key *head = NULL, **tail = &head;
	size_t i = 0;

	if (args[0].type == IMAP_ARG_EOL) {
		sp->error = "Missing search key";
		return NULL;
	}
	while (args[i].type != IMAP_ARG_EOL) {
		struct search_key *k = parse_key(sp, args, &i, depth);
		if (k == NULL)
			return NULL;
		*tail = k;
		tail = &k->next;
	}
	return head;
}

static struct search_key *text_key(struct search_parse *sp, enum sk_kind kind,
				   const char *header, const struct imap_arg *args,
				   size_t *i)
{
	const char *str;
	size_t len;
	if (!string_arg(sp, args, i, &str, &len))
		return NULL;
	struct search_key *k = node(sp, kind);
	if (k == NULL)
		return NULL;
	k->str = header;
	if (mail_search_key_init(&k->key, (const uint8_t *)str, len) < 0) {
		sp->error = "Search string too long";
		return NULL;
	}
	k->key_init = true;
	return k;
}

/* RFC 3501 6.4.4 / 9:
 * search-key = "ALL" / "ANSWERED" / "BCC" SP astring / "BEFORE" SP date /
 *   "BODY" SP astring / "CC" SP astring / "DELETED" / "FLAGGED" /
 *   "FROM" SP astring / "KEYWORD" SP flag-keyword / "NEW" / "OLD" /
 *   "ON" SP date / "RECENT" / "SEEN" / "SINCE" SP date /
 *   "SUBJECT" SP astring / "TEXT" SP astring / "TO" SP astring /
 *   "UNANSWERED" / "UNDELETED" / "UNFLAGGED" / "UNKEYWORD" SP flag-keyword /
 *   "UNSEEN" / "DRAFT" / "HEADER" SP header-fld-name SP astring /
 *   "LARGER" SP number / "NOT" SP search-key /
 *   "OR" SP search-key SP search-key / "SENTBEFORE" SP date /
 *   "SENTON" SP date / "SENTSINCE" SP date / "SMALLER" SP number /
 *   "UID" SP sequence-set / "UNDRAFT" / sequence-set /
 *   "(" search-key *(SP search-key) ")" */
static struct search_key *parse_key(struct search_parse *sp,
				    const struct imap_arg *args, size_t *i,
				    unsigned int depth)
{
	static const struct { const char *name; enum sk_kind kind; const char *flag; } flags[] = {
		{ "ANSWERED", SK_FLAG, "\\Answered" }, { "DELETED", SK_FLAG, "\\Deleted" },
		{ "DRAFT", SK_FLAG, "\\Draft" }, { "FLAGGED", SK_FLAG, "\\Flagged" },
		{ "SEEN", SK_FLAG, "\\Seen" }, { "RECENT", SK_FLAG, "\\Recent" },
		{ "UNANSWERED", SK_UNFLAG, "\\Answered" }, { "UNDELETED", SK_UNFLAG, "\\Deleted" },
		{ "UNDRAFT", SK_UNFLAG, "\\Draft" }, { "UNFLAGGED", SK_UNFLAG, "\\Flagged" },
		{ "UNSEEN", SK_UNFLAG, "\\Seen" }, { "OLD", SK_UNFLAG, "\\Recent" },
	};
	static const struct { const char *name; const char *header; } headers[] = {
		{ "BCC", "Bcc" }, { "CC", "Cc" }, { "FROM", "From" },
		{ "SUBJECT", "Subject" }, { "TO", "To" },
	};
	static const struct { const char *name; enum sk_kind kind; } dates[] = {
		{ "BEFORE", SK_BEFORE }, { "ON", SK_ON }, { "SINCE", SK_SINCE },
		{ "SENTBEFORE", SK_SENTBEFORE }, { "SENTON", SK_SENTON },
		{ "SENTSINCE", SK_SENTSINCE },
	};
	struct search_key *k;
	const char *str;
	size_t len;

	if (depth > SEARCH_MAX_DEPTH) {
		sp->error = "Search program nested too deeply";
		return NULL;
	}
	const struct imap_arg *a = next_arg(sp, args, i);
	if (a == NULL)
		return NULL;
	if (a->type == IMAP_ARG_LIST) {
		if ((k = node(sp, SK_AND)) == NULL)
			return NULL;
		k->child = parse_list(sp, a->list, depth + 1);
		return k->child != NULL ? k : NULL;
	}
	if (a->type != IMAP_ARG_ATOM) {
		sp->error = "Expected a search key";
		return NULL;
	}
	const char *w = a->str;
	if (strcasecmp(w, "ALL") == 0)
		return node(sp, SK_ALL);
	if (strcasecmp(w, "NEW") == 0)
		return node(sp, SK_NEW);
	for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
		if (strcasecmp(w, flags[f].name) == 0) {
			if ((k = node(sp, flags[f].kind)) != NULL)
				k->str = flags[f].flag;
			return k;
		}
	}
	if (strcasecmp(w, "KEYWORD") == 0 || strcasecmp(w, "UNKEYWORD") == 0) {
		const struct imap_arg *kw = next_arg(sp, args, i);
		if (kw == NULL)
			return NULL;
		if (kw->type != IMAP_ARG_ATOM || !is_atom_safe(kw->str, kw->len) ||
		    kw->str[0] == '\\') {
			sp->error = "Invalid keyword";
			return NULL;
		}
		if ((k = node(sp, w[0] == 'U' || w[0] == 'u' ? SK_UNFLAG : SK_FLAG)) != NULL)
			k->str = kw->str;
		return k;
	}
	for (size_t h = 0; h < sizeof(headers) / sizeof(headers[0]); h++)
		if (strcasecmp(w, headers[h].name) == 0)
			return text_key(sp, SK_HEADER, headers[h].header, args, i);
	if (strcasecmp(w, "HEADER") == 0) {
		if (!string_arg(sp, args, i, &str, &len))
			return NULL;
		if (len == 0 || !is_atom_safe(str, len) || strchr(str, ':') != NULL) {
			sp->error = "Invalid header field name";
			return NULL;
		}
		return text_key(sp, SK_HEADER, str, args, i);
	}
	if (strcasecmp(w, "BODY") == 0)
		return text_key(sp, SK_BODY, NULL, args, i);
	if (strcasecmp(w, "TEXT") == 0)
		return text_key(sp, SK_TEXT, NULL, args, i);
	for (size_t d = 0; d < sizeof(dates) / sizeof(dates[0]); d++) {
		if (strcasecmp(w, dates[d].name) == 0) {
			if (!string_arg(sp, args, i, &str, &len))
				return NULL;
			if ((k = node(sp, dates[d].kind)) == NULL)
				return NULL;
			if (mail_imap_date_parse(str, len, &k->day) < 0) {
				sp->error = "Invalid date (expected d-Mon-yyyy)";
				return NULL;
			}
			return k;
		}
	}
	if (strcasecmp(w, "LARGER") == 0 || strcasecmp(w, "SMALLER") == 0) {
		const struct imap_arg *num = next_arg(sp, args, i);
		uint64_t v;
		if (num == NULL)
			return NULL;
		if (num->type != IMAP_ARG_ATOM || imap_parse_number64(num->str, num->len, &v) < 0) {
			sp->error = "Expected a number";
			return NULL;
		}
		if ((k = node(sp, w[0] == 'L' || w[0] == 'l' ? SK_LARGER : SK_SMALLER)) != NULL)
			k->size = v;
		return k;
	}
	/* RFC 7162 3.1.5: search-modsequence = "MODSEQ" [search-modseq-ext]
	 *   SP mod-sequence-valzer; search-modseq-ext = SP entry-name SP
	 *   entry-type-req. Per-flag MODSEQs are not kept: the entry is
	 *   checked for syntax and the message's MODSEQ is used. */
	if (strcasecmp(w, "MODSEQ") == 0) {
		const struct imap_arg *num = next_arg(sp, args, i);
		uint64_t v;
		if (num == NULL)
			return NULL;
		if (num->type == IMAP_ARG_QUOTED) {
			const struct imap_arg *type = next_arg(sp, args, i);
			if (type == NULL)
				return NULL;
			if (strncasecmp(num->str, "/flags/", 7) != 0 ||
			    !(imap_arg_atom_equals(type, "priv") || imap_arg_atom_equals(type, "shared") ||
			      imap_arg_atom_equals(type, "all"))) {
				sp->error = "Invalid MODSEQ entry";
				return NULL;
			}
			if ((num = next_arg(sp, args, i)) == NULL)
				return NULL;
		}
		if (num->type != IMAP_ARG_ATOM || imap_parse_number64(num->str, num->len, &v) < 0) {
			sp->error = "Expected a mod-sequence value";
			return NULL;
		}
		if ((k = node(sp, SK_MODSEQ)) != NULL)
			k->size = v;
		sp->s->search_modseq = true;
		return k;
	}
	if (strcasecmp(w, "NOT") == 0) {
		if ((k = node(sp, SK_NOT)) == NULL)
			return NULL;
		k->child = parse_key(sp, args, i, depth + 1);
		return k->child != NULL ? k : NULL;
	}
	if (strcasecmp(w, "OR") == 0) {
		if ((k = node(sp, SK_OR)) == NULL)
			return NULL;
		k->child = parse_key(sp, args, i, depth + 1);
		if (k->child == NULL)
			return NULL;
		k->child->next = parse_key(sp, args, i, depth + 1);
		return k->child->next != NULL ? k : NULL;
	}
	bool uid = strcasecmp(w, "UID") == 0;
	if (uid && (a = next_arg(sp, args, i)) == NULL)
		return NULL;
	if (a->type != IMAP_ARG_ATOM) {
		sp->error = "Expected a sequence set";
		return NULL;
	}
	if ((k = node(sp, uid ? SK_UID : SK_SEQ)) == NULL)
		return NULL;
	if (imap_seqset_parse(a->str, a->len, 10000, &k->set, &sp->error) < 0) {
		if (!uid)
			sp->error = "Unknown search key";
		return NULL;
	}
	k->set_init = true;
	if (k->set.last_result) {
		sp->error = "Search result variable $ not supported";
		return NULL;
	}
	struct imap_session *s = sp->s;
	imap_seqset_normalize(&k->set, uid ? (s->count ? s->uids[s->count - 1] : 0)
					   : (uint32_t)s->count);
	return k;
}

static unsigned int key_need(const struct search_key *k)
{
	unsigned int need = 0;
	for (; k != NULL; k = k->next) {
		switch (k->kind) {
		case SK_FLAG: case SK_UNFLAG: case SK_NEW:
			need |= IMAP_NEED_FLAGS;
			break;
		case SK_BEFORE: case SK_ON: case SK_SINCE:
			need |= IMAP_NEED_INTERNALDATE;
			break;
		case SK_LARGER: case SK_SMALLER:
			need |= IMAP_NEED_SIZE;
			break;
		case SK_MODSEQ:
			need |= IMAP_NEED_MODSEQ;
			break;
		case SK_HEADER: case SK_BODY: case SK_TEXT:
		case SK_SENTBEFORE: case SK_SENTON: case SK_SENTSINCE:
			need |= IMAP_NEED_MESSAGE;
			break;
		default:
			break;
		}
		need |= key_need(k->child);
	}
	return need;
}

static bool has_flag(const struct imap_message_data *md, const char *flag)
{
	for (size_t i = 0; i < md->flag_count; i++)
		if (md->flags[i] != NULL && strcasecmp(md->flags[i], flag) == 0)
			return true;
	return false;
}

struct eval_ctx {
	struct imap_session *s;
	const struct imap_message_data *md;
	struct mail_message *msg;
	const char *error;
};

static int need_msg(struct eval_ctx *c)
{
	if (c->msg != NULL)
		return 0;
	if (c->md->data == NULL) {
		c->error = "message data missing";
		return -1;
	}
	return mail_message_parse(c->md->data, c->md->data_len, NULL, &c->msg, &c->error);
}

static int eval(struct eval_ctx *c, const struct search_key *k);

static int eval_all(struct eval_ctx *c, const struct search_key *k)
{
	for (; k != NULL; k = k->next) {
		int r = eval(c, k);
		if (r <= 0)
			return r;
	}
	return 1;
}

static int eval(struct eval_ctx *c, const struct search_key *k)
{
	const struct imap_message_data *md = c->md;
	int r;

	switch (k->kind) {
	case SK_ALL:
		return 1;
	case SK_AND:
		return eval_all(c, k->child);
	case SK_OR:
		r = eval(c, k->child);
		return r != 0 ? r : eval(c, k->child->next);
	case SK_NOT:
		r = eval(c, k->child);
		return r < 0 ? r : !r;
	case SK_FLAG:
		return has_flag(md, k->str);
	case SK_UNFLAG:
		return !has_flag(md, k->str);
	case SK_NEW:
		return has_flag(md, "\\Recent") && !has_flag(md, "\\Seen");
	case SK_HEADER:
	case SK_BODY:
	case SK_TEXT:
		if (need_msg(c) < 0)
			return -1;
		r = k->kind == SK_HEADER ?
			mail_search_header(c->msg, k->str, &k->key, SEARCH_MAX_DECODE) :
			k->kind == SK_BODY ? mail_search_body(c->msg, &k->key, SEARCH_MAX_DECODE) :
			mail_search_text(c->msg, &k->key, SEARCH_MAX_DECODE);
		/* Too much to decode: what was looked at did not match. */
		return r < 0 ? 0 : r;
	case SK_BEFORE:
	case SK_ON:
	case SK_SINCE: {
		/* RFC 3501: internal date disregarding time and timezone. */
		long day = mail_date_day(md->internaldate, md->internaldate_tz);
		return k->kind == SK_BEFORE ? day < k->day :
		       k->kind == SK_ON ? day == k->day : day >= k->day;
	}
	case SK_SENTBEFORE:
	case SK_SENTON:
	case SK_SENTSINCE: {
		struct mail_header_field f;
		time_t t;
		int tz;
		if (need_msg(c) < 0)
			return -1;
		if (mail_part_header_find(c->msg, c->msg->root, "Date", &f) <= 0 ||
		    mail_date_parse((const char *)f.value, f.value_len, &t, &tz) < 0)
			return 0;
		long day = mail_date_day(t, tz);
		return k->kind == SK_SENTBEFORE ? day < k->day :
		       k->kind == SK_SENTON ? day == k->day : day >= k->day;
	}
	case SK_LARGER:
		return md->size > k->size;
	case SK_SMALLER:
		return md->size < k->size;
	case SK_SEQ:
		return imap_seqset_contains(&k->set, view_seq(c->s, md->uid));
	case SK_UID:
		return imap_seqset_contains(&k->set, md->uid);
	case SK_MODSEQ:
		return md->modseq >= k->size;
	}
	return 0;
}

static int add_hit(struct imap_session *s, uint32_t v)
{
	if (s->search_n == s->search_cap) {
		size_t nc = s->search_cap ? s->search_cap * 2 : 64;
		uint32_t *na = realloc(s->search_hits, nc * sizeof(uint32_t));
		if (na == NULL)
			return -1;
		s->search_hits = na;
		s->search_cap = nc;
	}
	s->search_hits[s->search_n++] = v;
	return 0;
}

int search_message(struct imap_session *s, const struct imap_message_data *md,
		   const char **error_r)
{
	uint32_t seq = view_seq(s, md->uid);
	if (seq == 0)
		return 0;
	struct eval_ctx c = { .s = s, .md = md };
	int r = eval_all(&c, s->search);
	mail_message_free(&c.msg);
	if (r < 0) {
		*error_r = c.error != NULL ? c.error : "search failed";
		return -1;
	}
	if (r > 0 && add_hit(s, s->uid_cmd ? md->uid : seq) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	if (r > 0 && md->modseq > s->search_max_modseq)
		s->search_max_modseq = md->modseq;
	return 0;
}

void search_finish(struct imap_session *s)
{
	out_str(s, "* SEARCH");
	for (size_t i = 0; i < s->search_n; i++)
		out_printf(s, " %u", s->search_hits[i]);
	/* RFC 7162 3.1.5: the highest MODSEQ of the hits. */
	if (s->search_modseq && s->search_n > 0)
		out_printf(s, " (MODSEQ %llu)", (unsigned long long)s->search_max_modseq);
	out_str(s, "\r\n");
	cmd_done(s, "OK", "%sSEARCH completed", s->uid_cmd ? "UID " : "");
}

/* search = "SEARCH" [SP "CHARSET" SP astring] 1*(SP search-key) */
void cmd_search(struct imap_session *s, const struct imap_arg *args)
{
	struct search_parse sp = { .s = s };

	s->cmd = CMD_SEARCH;
	if (imap_arg_atom_equals(&args[0], "CHARSET")) {
		const char *cs;
		size_t len;
		if (!imap_arg_get_astring(&args[1], &cs, &len)) {
			cmd_done(s, "BAD", "Expected CHARSET name");
			return;
		}
		if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
			cmd_done(s, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
			return;
		}
		args += 2;
	}
	s->search = parse_list(&sp, args, 0);
	if (s->search != NULL && s->search_modseq && !condstore_enable(s))
		return;
	if (s->search == NULL) {
		if (sp.no)
			cmd_done(s, "NO", "[SERVERBUG] %s", sp.error);
		else
			cmd_done(s, "BAD", "%s", sp.error != NULL ? sp.error : "Invalid search");
		return;
	}
	unsigned int need = key_need(s->search);
	if (need == 0 || s->count == 0) {
		/* Sequence numbers, UIDs and ALL: the view is enough. */
		for (size_t i = 0; i < s->count; i++) {
			struct imap_message_data md = { .uid = s->uids[i] };
			const char *error;
			if (search_message(s, &md, &error) < 0) {
				cmd_done(s, "NO", "[SERVERBUG] %s", error);
				return;
			}
		}
		search_finish(s);
		return;
	}
	uint32_t *uids = cmd_alloc(s, s->count * sizeof(uint32_t));
	if (uids == NULL) {
		cmd_done(s, "NO", "[SERVERBUG] Out of memory");
		return;
	}
	/* Only messages that pass the top-level sequence and UID keys are
	 * worth reading ("UID SEARCH UID 500:* ..." of a syncing client). */
	size_t n = 0;
	for (size_t i = 0; i < s->count; i++) {
		bool in = true;
		for (const struct search_key *k = s->search; k != NULL && in; k = k->next) {
			if (k->kind == SK_UID)
				in = imap_seqset_contains(&k->set, s->uids[i]);
			else if (k->kind == SK_SEQ)
				in = imap_seqset_contains(&k->set, (uint32_t)(i + 1));
		}
		if (in)
			uids[n++] = s->uids[i];
	}
	if (n == 0) {
		search_finish(s);
		return;
	}
	s->req.uids = uids;
	s->req.uid_count = n;
	s->req.need = need;
	cmd_request(s, IMAP_REQ_MESSAGES);
}
