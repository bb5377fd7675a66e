/* Address lists (RFC 5322 3.4 and the obsolete forms of 4.4) parsed for
 * IMAP ENVELOPE: mailboxes with display names, groups, source routes.
 * Liberal: missing '>' or ';', stray separators, bare local parts,
 * 8-bit names and a comment used as the name ("user@host (Real Name)") are
 * all read the way Dovecot reads them. Input is an unfolded value. */
#include "mime-private.h"

#include "mail-arena.h"

#include <stdlib.h>

enum tok_type {
	T_END,
	T_ATOM,    /* run of atext (and any other non-special byte) */
	T_QUOTED,  /* quoted-string; start/len is the content, escapes kept */
	T_DLIT,    /* domain-literal including the brackets */
	T_SPECIAL, /* one of < > @ , ; : . */
};

struct tok {
	enum tok_type type;
	const char *start;
	size_t len;
	char c;          /* T_SPECIAL */
	bool ws_before;  /* whitespace or a comment preceded it */
};

struct lexer {
	const char *p;
	const char *comment; /* content of the last comment seen */
	size_t comment_len;
};

/* RFC 5322 3.2.3 specials, minus '"' '(' '[' which start their own
 * tokens. */
static bool is_special(char c)
{
	return c != '\0' && strchr("<>@,;:.)]", c) != NULL;
}

static bool is_atom_char(char c)
{
	return c != '\0' && c != ' ' && c != '\t' && c != '"' && c != '(' &&
	       c != '[' && !is_special(c);
}

/* RFC 5322 3.2.2 CFWS: whitespace and nested comments. */
static bool skip_cfws(struct lexer *lx)
{
	const char *start = lx->p;
	for (;;) {
		while (*lx->p == ' ' || *lx->p == '\t')
			lx->p++;
		if (*lx->p != '(')
			break;
		const char *c = ++lx->p;
		int level = 1;
		while (*lx->p != '\0') {
			if (*lx->p == '\\' && lx->p[1] != '\0') {
				lx->p += 2;
				continue;
			}
			if (*lx->p == '(')
				level++;
			else if (*lx->p == ')' && --level == 0)
				break;
			lx->p++;
		}
		lx->comment = c;
		lx->comment_len = (size_t)(lx->p - c);
		if (*lx->p == ')')
			lx->p++;
	}
	return lx->p != start;
}

static void lex_next(struct lexer *lx, struct tok *t)
{
	t->ws_before = skip_cfws(lx);
	const char *p = lx->p;
	t->start = p;
	t->len = 0;
	if (*p == '\0') {
		t->type = T_END;
	} else if (*p == '"') {
		/* RFC 5322 3.2.4 quoted-string */
		t->type = T_QUOTED;
		t->start = ++p;
		while (*p != '\0' && *p != '"') {
			if (*p == '\\' && p[1] != '\0')
				p++;
			p++;
		}
		t->len = (size_t)(p - t->start);
		lx->p = *p == '"' ? p + 1 : p;
	} else if (*p == '[') {
		/* RFC 5322 3.4.1 domain-literal */
		t->type = T_DLIT;
		while (*p != '\0' && *p != ']') {
			if (*p == '\\' && p[1] != '\0')
				p++;
			p++;
		}
		if (*p == ']')
			p++;
		t->len = (size_t)(p - t->start);
		lx->p = p;
	} else if (is_special(*p)) {
		t->type = T_SPECIAL;
		t->c = *p;
		t->len = 1;
		lx->p = p + 1;
	} else {
		t->type = T_ATOM;
		while (is_atom_char(*p))
			p++;
		t->len = (size_t)(p - t->start);
		lx->p = p;
	}
}

/* Looks at the next token without taking it (comments seen on the way
 * are still noted). */
static void lex_peek(struct lexer *lx, struct tok *t)
{
	const char *p = lx->p;
	lex_next(lx, t);
	lx->p = p;
}

/* A growing string in caller-provided scratch space. */
struct sbuf {
	char *s;
	size_t len;
};

static void sb_add(struct sbuf *b, const char *p, size_t n)
{
	memcpy(b->s + b->len, p, n);
	b->len += n;
}

static void sb_add_unquoted(struct sbuf *b, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\\' && i + 1 < n)
			i++;
		b->s[b->len++] = p[i];
	}
}

struct parser {
	struct mail_arena *arena;
	struct lexer lx;
	struct mail_address *head, **tail;
	unsigned int count, max;
	bool *limited;
	bool full;   /* max reached: stop */
	bool failed; /* arena full */
	bool group_emitted; /* the open group's start entry is in the list */
	struct sbuf display, local, domain, route;
};

static char *dup_sb(struct parser *ps, const struct sbuf *b)
{
	char *s = mail_arena_strndup(ps->arena, b->s, b->len);
	if (s == NULL)
		ps->failed = true;
	return s;
}

static bool emit(struct parser *ps, const char *name, const char *route,
		 const char *mailbox, const char *domain)
{
	if (ps->failed || ps->full)
		return false;
	if (ps->count == ps->max) {
		*ps->limited = true;
		ps->full = true;
		return false;
	}
	struct mail_address *a = mail_arena_alloc(ps->arena, sizeof(*a));
	if (a == NULL) {
		ps->failed = true;
		return false;
	}
	a->name = name;
	a->route = route;
	a->mailbox = mailbox;
	a->domain = domain;
	*ps->tail = a;
	ps->tail = &a->next;
	ps->count++;
	return true;
}

/* Ends the open group. The end entry is added past the limit too, so that
 * a list cut by max_addresses stays well formed. */
static void close_group(struct parser *ps, bool *in_group)
{
	if (*in_group && ps->group_emitted && !ps->failed) {
		bool full = ps->full;
		ps->full = false;
		ps->max++;
		emit(ps, NULL, NULL, NULL, NULL);
		ps->full = full;
	}
	*in_group = false;
	ps->group_emitted = false;
}

/* phrase (RFC 5322 3.2.5, obs-phrase 4.1) or local-part words: fills
 * display (words with one space where the source had whitespace, quotes
 * removed) and local (the words joined as a local-part). Returns the
 * number of words. */
static unsigned int parse_words(struct parser *ps)
{
	struct tok t;
	unsigned int n = 0;

	ps->display.len = 0;
	ps->local.len = 0;
	for (;;) {
		lex_peek(&ps->lx, &t);
		if (t.type != T_ATOM && t.type != T_QUOTED && t.type != T_DLIT &&
		    !(t.type == T_SPECIAL && t.c == '.'))
			break;
		lex_next(&ps->lx, &t);
		if (t.ws_before && ps->display.len > 0)
			sb_add(&ps->display, " ", 1);
		if (t.type == T_QUOTED) {
			sb_add_unquoted(&ps->display, t.start, t.len);
			sb_add_unquoted(&ps->local, t.start, t.len);
		} else {
			sb_add(&ps->display, t.start, t.len);
			sb_add(&ps->local, t.start, t.len);
		}
		n++;
	}
	return n;
}

/* domain (RFC 5322 3.4.1): dot-atom, domain-literal or obs-domain. */
static void parse_domain(struct parser *ps)
{
	struct tok t;
	ps->domain.len = 0;
	for (;;) {
		lex_peek(&ps->lx, &t);
		if (t.type != T_ATOM && t.type != T_DLIT &&
		    !(t.type == T_SPECIAL && t.c == '.'))
			return;
		lex_next(&ps->lx, &t);
		sb_add(&ps->domain, t.start, t.len);
	}
}

static const char *missing_or(struct parser *ps, const struct sbuf *b,
			      const char *missing)
{
	return b->len > 0 ? dup_sb(ps, b) : missing;
}

/* angle-addr = [CFWS] "<" addr-spec ">" [CFWS] / obs-angle-addr
 * obs-angle-addr = [CFWS] "<" obs-route addr-spec ">" [CFWS]
 * obs-route = obs-domain-list ":"
 * obs-domain-list = *(CFWS / ",") "@" domain *("," [CFWS] ["@" domain])
 * Called after "<"; name is the display name or NULL. */
static void parse_angle(struct parser *ps, const char *name)
{
	struct tok t;
	const char *route = NULL;

	lex_peek(&ps->lx, &t);
	if (t.type == T_SPECIAL && t.c == '@') {
		ps->route.len = 0;
		for (;;) {
			lex_peek(&ps->lx, &t);
			if (t.type == T_SPECIAL && t.c == '@') {
				lex_next(&ps->lx, &t);
				parse_domain(ps);
				if (ps->route.len > 0)
					sb_add(&ps->route, ",", 1);
				sb_add(&ps->route, "@", 1);
				sb_add(&ps->route, ps->domain.s, ps->domain.len);
			} else if (t.type == T_SPECIAL && t.c == ',') {
				lex_next(&ps->lx, &t);
			} else {
				break;
			}
		}
		if (t.type == T_SPECIAL && t.c == ':')
			lex_next(&ps->lx, &t);
		route = dup_sb(ps, &ps->route);
	}
	struct sbuf keep = ps->display;
	parse_words(ps);
	ps->display = keep;
	ps->domain.len = 0;
	lex_peek(&ps->lx, &t);
	if (t.type == T_SPECIAL && t.c == '@') {
		lex_next(&ps->lx, &t);
		parse_domain(ps);
	}
	/* Skip whatever is left up to '>' (or the end of this address). */
	for (;;) {
		lex_peek(&ps->lx, &t);
		if (t.type == T_END || (t.type == T_SPECIAL && (t.c == ',' || t.c == ';')))
			break;
		lex_next(&ps->lx, &t);
		if (t.type == T_SPECIAL && t.c == '>')
			break;
	}
	const char *mailbox = missing_or(ps, &ps->local, "MISSING_MAILBOX");
	const char *domain = missing_or(ps, &ps->domain, "MISSING_DOMAIN");
	emit(ps, name, route, mailbox, domain);
}

/* address = mailbox / group ; mailbox = name-addr / addr-spec
 * group = display-name ":" [group-list] ";" [CFWS] */
static void parse_address(struct parser *ps, bool *in_group)
{
	struct tok t;

	ps->lx.comment = NULL;
	unsigned int words = parse_words(ps);
	lex_peek(&ps->lx, &t);
	if (t.type == T_SPECIAL && t.c == '<') {
		lex_next(&ps->lx, &t);
		const char *name = words > 0 ? dup_sb(ps, &ps->display) : NULL;
		parse_angle(ps, name);
		return;
	}
	if (t.type == T_SPECIAL && t.c == ':') {
		lex_next(&ps->lx, &t);
		if (*in_group)
			return; /* groups do not nest; ignore the inner one */
		*in_group = true;
		ps->group_emitted = emit(ps, NULL, NULL, dup_sb(ps, &ps->display), NULL);
		return;
	}
	if (words == 0) {
		/* Not an address start: skip one token. */
		if (t.type != T_END && !(t.type == T_SPECIAL && (t.c == ',' || t.c == ';')))
			lex_next(&ps->lx, &t);
		return;
	}
	const char *mailbox, *domain = "MISSING_DOMAIN";
	if (t.type == T_SPECIAL && t.c == '@') {
		/* addr-spec = local-part "@" domain */
		lex_next(&ps->lx, &t);
		mailbox = dup_sb(ps, &ps->local);
		parse_domain(ps);
		domain = missing_or(ps, &ps->domain, "MISSING_DOMAIN");
	} else {
		/* A bare word list (no '@'): a local part only. */
		mailbox = dup_sb(ps, &ps->display);
	}
	lex_peek(&ps->lx, &t); /* notes a trailing comment */
	const char *name = NULL;
	if (ps->lx.comment != NULL) {
		name = mail_arena_strndup(ps->arena, ps->lx.comment,
					  ps->lx.comment_len);
		if (name == NULL)
			ps->failed = true;
	}
	emit(ps, name, NULL, mailbox, domain);
	/* Anything up to the next separator is garbage. */
	while (t.type != T_END && !(t.type == T_SPECIAL && (t.c == ',' || t.c == ';'))) {
		lex_next(&ps->lx, &t);
		lex_peek(&ps->lx, &t);
	}
}

/* address-list = (address *("," address)) / obs-addr-list
 * obs-addr-list = *([CFWS] ",") address *("," [address / CFWS]) */
int mime_address_list_parse(struct mail_arena *arena, const char *value,
			    unsigned int max, struct mail_address **list_r,
			    bool *limited)
{
	size_t len = strlen(value);
	struct parser ps;
	bool in_group = false;
	struct tok t;

	memset(&ps, 0, sizeof(ps));
	/* display, local and domain never hold more than the value's bytes;
	 * the route adds "," and "@" around each domain, up to two bytes per
	 * input byte ("<@@@@..."), so it gets twice the room. */
	char *scratch = malloc(5 * (len + 8));
	if (scratch == NULL)
		return -1;
	ps.display.s = scratch;
	ps.local.s = scratch + (len + 8);
	ps.domain.s = scratch + 2 * (len + 8);
	ps.route.s = scratch + 3 * (len + 8);	/* 2 * (len + 8) bytes */
	ps.arena = arena;
	ps.lx.p = value;
	ps.tail = &ps.head;
	ps.max = max;
	ps.limited = limited;
	while (!ps.failed && !ps.full) {
		lex_peek(&ps.lx, &t);
		if (t.type == T_END)
			break;
		if (t.type == T_SPECIAL && t.c == ',') {
			lex_next(&ps.lx, &t);
			continue;
		}
		if (t.type == T_SPECIAL && t.c == ';') {
			lex_next(&ps.lx, &t);
			close_group(&ps, &in_group);
			continue;
		}
		parse_address(&ps, &in_group);
	}
	close_group(&ps, &in_group); /* a missing ';' */
	free(scratch);
	if (ps.failed)
		return -1;
	*list_r = ps.head;
	return 0;
}
