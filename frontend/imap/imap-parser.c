/* The sans-IO IMAP command parser: input buffering, line segmentation, the
 * tokenizer (tag, command name, atoms, quoted strings, literal headers,
 * lists, FETCH sections), literal buffering and streaming, error recovery by
 * skipping to the end of the bad command, raw lines, and the argument
 * helpers. The contract is in imap-parser.h.
 *
 * How a command is read. Bytes go to an input buffer. A command is a series
 * of line segments separated by literals: "a APPEND box {5}" CRLF, 5 bytes,
 * then " (x)" CRLF. Each segment is parsed whole once its LF is in the
 * buffer (so no token is ever split between feeds, and a segment is
 * scanned for LF only once); the argument tree under construction lives in
 * a stack of frames (top level, open lists, an open section) that survives
 * from one segment to the next. Strings and literal bytes are copied into a
 * per-command arena, bounded by max_command, so the input buffer only ever
 * holds one partial segment between next() calls.
 *
 * Recovery. After an error the rest of the command is dropped by a small
 * byte-level state machine (the skipper) that needs no buffering: it stops at
 * the end of a line, unless that line ends in a literal header. For "{n}" the
 * command is over (the client waits for a "+" it will not get, and gets our
 * error instead); for "{n+}" the client sends n bytes anyway, so exactly n
 * bytes are skipped and skipping goes on with the next line. When the size of
 * such a literal cannot be read, nothing can tell where the next command
 * starts: that is the fatal case.
 */
#include "imap-parser.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "imap-utf7.h"
#include "postern/buf.h"

#define NUMBER64_MAX ((uint64_t)INT64_MAX)
#define ARENA_BLOCK 8192u

/* ---- per-command arena ------------------------------------------------ */

struct arena_block {
	struct arena_block *next;
	size_t size, used;
	size_t pad_; /* keeps data 16-byte aligned after malloc */
	unsigned char data[];
};

struct arena {
	struct arena_block *blocks; /* the head is where small allocations go */
	size_t total;               /* bytes handed out since the last reset */
	size_t max;
};

/* ---- argument tree frames ---------------------------------------------- */

enum frame_kind { FRAME_TOP, FRAME_LIST, FRAME_SECTION };

struct frame {
	enum frame_kind kind;
	struct imap_arg *items; /* malloc'd, reused between commands */
	size_t count, cap;
	struct imap_arg head; /* SECTION: the node being built */
};

/* ---- the skipper --------------------------------------------------------- */

enum sk_state { SK_TEXT, SK_BRACE, SK_CLOSE, SK_CLOSE_CR };

struct skipper {
	enum sk_state st;
	bool plus, bad, ovf;
	unsigned ndig;
	uint64_t val;
};

enum sk_outcome {
	SK_MORE,    /* consumed everything given, line not over */
	SK_END,     /* end of the command (plain line end or "{n}") */
	SK_LITERAL, /* line ended in "{n+}": n bytes follow */
	SK_FATAL,   /* line ended in an unreadable "{...+}" */
};

/* ---- the parser -------------------------------------------------------- */

enum pstate {
	PS_LINE,         /* reading a line segment of a command */
	PS_HEAD_SENT,    /* streamed command head delivered */
	PS_CONT_SENT,    /* IMAP_EV_LITERAL_CONTINUE delivered */
	PS_LITERAL,      /* buffering literal bytes */
	PS_STREAM,       /* streaming literal bytes */
	PS_SKIP_LINE,    /* dropping a void command up to its line end */
	PS_SKIP_LITERAL, /* dropping skip_left literal bytes, then PS_SKIP_LINE */
	PS_RAW_LINE,     /* reading one raw line */
	PS_RAW_SKIP,     /* dropping an overlong raw line up to LF */
	PS_FATAL,
};

struct literal_state {
	uint64_t size, done;
	bool nonsync, literal8, streamed;
	unsigned char *buf; /* arena, size + 1 bytes; NULL when streamed */
};

struct imap_parser {
	struct imap_parser_limits lim;
	enum imap_literal_mode lit_mode;
	bool utf8;
	uint64_t stream_min;

	struct pn_buf in;
	size_t scan; /* leading bytes of in known to hold no LF */

	enum pstate state;
	/* The last event ended a command; forget it at the next next(). */
	bool reset_pending;

	/* The command in progress. */
	bool in_command;  /* tag and name read */
	bool continued;   /* a streamed literal has split it */
	bool need_sep;    /* a token just ended: SP, ")", "]" or CRLF next */
	bool is_append;   /* APPEND: literal limit and streaming */
	bool fetch_mode;  /* FETCH or UID FETCH: sections */
	bool uid_cmd;     /* UID: FETCH may follow */
	char *tag, *name; /* in hdr */
	char *hdr;
	size_t hdr_cap;
	unsigned nargs;   /* nodes made for this part of the command */
	unsigned depth;   /* frames[0..depth] are open */
	unsigned sections_open;
	struct frame *frames;
	struct arena arena;
	struct literal_state lit;

	struct skipper sk;
	uint64_t skip_left;

	struct imap_parse_error err;
};

enum seg_result { SEG_ERROR = -1, SEG_COMPLETE = 0, SEG_LITERAL = 1 };
/* Internal step result: loop again in next(). */
#define STEP_AGAIN 2

struct literal_header {
	uint64_t size;
	bool nonsync, literal8;
};

/* ---- errors ------------------------------------------------------------- */

static void set_error(struct imap_parser *p, enum imap_parse_error_kind kind,
		      const char *msg)
{
	p->err.kind = kind;
	p->err.status = "BAD";
	p->err.msg = msg;
	p->err.fatal = kind == IMAP_PERR_NOMEM;
}

static int seg_error(struct imap_parser *p, enum imap_parse_error_kind kind,
		     const char *msg)
{
	set_error(p, kind, msg);
	return SEG_ERROR;
}

static int error_event(struct imap_parser *p, struct imap_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = IMAP_EV_ERROR;
	ev->tag = p->tag;
	ev->name = p->name;
	ev->error = p->err;
	if (p->err.fatal)
		p->state = PS_FATAL;
	return -1;
}

/* ---- arena -------------------------------------------------------------- */

static void arena_reset(struct arena *a)
{
	struct arena_block *keep = NULL, *b = a->blocks;

	while (b != NULL) {
		struct arena_block *next = b->next;
		if (keep == NULL && b->size == ARENA_BLOCK)
			keep = b;
		else
			free(b);
		b = next;
	}
	if (keep != NULL) {
		keep->next = NULL;
		keep->used = 0;
	}
	a->blocks = keep;
	a->total = 0;
}

static void arena_free(struct arena *a)
{
	struct arena_block *b = a->blocks;

	while (b != NULL) {
		struct arena_block *next = b->next;
		free(b);
		b = next;
	}
	a->blocks = NULL;
	a->total = 0;
}

/* Returns n bytes aligned to align (a power of two <= 16), or NULL with the
 * error set (over max_command, or out of memory). */
static void *arena_alloc(struct imap_parser *p, size_t n, size_t align)
{
	struct arena *a = &p->arena;
	struct arena_block *b = a->blocks;

	if (n > a->max - a->total) {
		set_error(p, IMAP_PERR_LIMIT, "Command too large");
		return NULL;
	}
	if (b != NULL) {
		size_t off = (b->used + align - 1) & ~(align - 1);
		if (off <= b->size && n <= b->size - off) {
			b->used = off + n;
			a->total += n;
			return b->data + off;
		}
	}
	size_t size = n > ARENA_BLOCK / 2 ? n : ARENA_BLOCK;
	struct arena_block *nb = malloc(sizeof(*nb) + size);
	if (nb == NULL) {
		set_error(p, IMAP_PERR_NOMEM, "Out of memory");
		return NULL;
	}
	nb->size = size;
	nb->used = n;
	if (size > ARENA_BLOCK || b == NULL) {
		/* A big one-off block: keep the head for small allocations. */
		if (b != NULL) {
			nb->next = b->next;
			b->next = nb;
		} else {
			nb->next = NULL;
			a->blocks = nb;
		}
	} else {
		nb->next = b;
		a->blocks = nb;
	}
	a->total += n;
	return nb->data;
}

static char *arena_strdup(struct imap_parser *p, const void *s, size_t len)
{
	char *d = arena_alloc(p, len + 1, 1);

	if (d == NULL)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

/* ---- character classes -------------------------------------------------- */

/* RFC 3501 section 9:
 *   atom            = 1*ATOM-CHAR
 *   ATOM-CHAR       = <any CHAR except atom-specials>
 *   atom-specials   = "(" / ")" / "{" / SP / CTL / list-wildcards /
 *                     quoted-specials / resp-specials
 *   list-wildcards  = "%" / "*"
 *   quoted-specials = DQUOTE / "\"
 *   resp-specials   = "]"
 */
static bool is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	switch (c) {
	case '(': case ')': case '{': case '%': case '*': case '"': case '\\':
	case ']':
		return false;
	default:
		return true;
	}
}

/*   tag             = 1*<any ASTRING-CHAR except "+">
 *   ASTRING-CHAR    = ATOM-CHAR / resp-specials
 */
static bool is_tag_char(unsigned char c)
{
	return c == ']' || (is_atom_char(c) && c != '+');
}

/* The bare words the tokenizer accepts as one atom argument: ATOM-CHAR plus
 * the characters other productions allow in the same position, which the
 * session checks: "]" (astring), "%" "*" (list-mailbox, sequence-set), "\"
 * (flag). Inside a FETCH section "]" ends the section; in FETCH "[" opens
 * one. */
static bool is_word_char(const struct imap_parser *p, unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	switch (c) {
	case '(': case ')': case '{': case '"':
		return false;
	case ']':
		return p->sections_open == 0;
	case '[':
		return !p->fetch_mode;
	default:
		return true;
	}
}

/* Why c cannot start a token here, or NULL if it can. */
static const char *bad_start_char(const struct imap_parser *p, unsigned char c)
{
	if (c == 0)
		return "NUL byte in command line";
	if (c == '\r')
		return "CR without LF in command line";
	if (c < 0x20 || c == 0x7f)
		return "Control character in command line";
	if (c >= 0x80)
		return "8-bit byte outside a quoted string or literal";
	if (c == '[')
		return "Unexpected '['";
	if (c == ']')
		return "Unexpected ']'";
	return NULL;
}

static bool ascii_ieq(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
		if (x >= 'a' && x <= 'z')
			x = (unsigned char)(x - 32);
		if (y >= 'a' && y <= 'z')
			y = (unsigned char)(y - 32);
		if (x != y)
			return false;
	}
	return true;
}

/* ---- command state ------------------------------------------------------ */

static void frames_clear(struct imap_parser *p)
{
	for (unsigned i = 0; i <= p->lim.max_depth; i++) {
		struct frame *f = &p->frames[i];
		f->count = 0;
		/* Give back what one huge command made us grow. */
		if (f->cap > 1024) {
			free(f->items);
			f->items = NULL;
			f->cap = 0;
		}
	}
	p->frames[0].kind = FRAME_TOP;
	p->depth = 0;
	p->sections_open = 0;
}

/* Forgets the arguments delivered so far (the head before a streamed
 * literal); tag, name and command flags stay. */
static void part_reset(struct imap_parser *p)
{
	arena_reset(&p->arena);
	frames_clear(p);
	p->nargs = 0;
}

static void command_reset(struct imap_parser *p)
{
	part_reset(p);
	p->in_command = false;
	p->continued = false;
	p->need_sep = false;
	p->is_append = p->fetch_mode = p->uid_cmd = false;
	p->tag = p->name = NULL;
	memset(&p->lit, 0, sizeof(p->lit));
	memset(&p->err, 0, sizeof(p->err));
}

/* Command over after the event being returned; forget it at next(). */
static void command_done(struct imap_parser *p)
{
	p->reset_pending = true;
	p->state = PS_LINE;
}

/* The unparsed input. Never NULL, even before the buffer got storage
 * (pointer arithmetic on NULL is undefined). */
static unsigned char *in_bytes(struct imap_parser *p)
{
	static unsigned char empty[1];

	return p->in.data != NULL ? p->in.data + p->in.start : empty;
}

static void consume(struct imap_parser *p, size_t n)
{
	pn_buf_consume(&p->in, n);
	p->scan = 0;
}

static int store_tag_name(struct imap_parser *p, const unsigned char *tag,
			  size_t tlen, const unsigned char *name, size_t nlen)
{
	size_t need = tlen + 1 + nlen + 1;

	if (need > p->hdr_cap) {
		char *h = realloc(p->hdr, need);
		if (h == NULL) {
			set_error(p, IMAP_PERR_NOMEM, "Out of memory");
			return -1;
		}
		p->hdr = h;
		p->hdr_cap = need;
	}
	memcpy(p->hdr, tag, tlen);
	p->hdr[tlen] = '\0';
	p->tag = p->hdr;
	if (name == NULL) {
		p->name = NULL;
		return 0;
	}
	char *n = p->hdr + tlen + 1;
	for (size_t i = 0; i < nlen; i++) {
		unsigned char c = name[i];
		n[i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
	}
	n[nlen] = '\0';
	p->name = n;
	return 0;
}

/* Length of a valid tag at the start of s followed by SP, or 0. */
static size_t scan_tag(const unsigned char *s, size_t n)
{
	size_t j = 0;

	while (j < n && is_tag_char(s[j]))
		j++;
	if (j == 0 || j == n || s[j] != ' ')
		return 0;
	return j;
}

/* For errors found before the tokenizer ran (line too long, bare LF):
 * remember the tag if the line starts with one. */
static void salvage_tag(struct imap_parser *p, const unsigned char *s, size_t n)
{
	if (p->in_command)
		return;
	size_t j = scan_tag(s, n);
	if (j > 0 && store_tag_name(p, s, j, NULL, 0) < 0)
		p->tag = NULL;
}

/* ---- argument tree -------------------------------------------------------- */

static int count_arg(struct imap_parser *p)
{
	if (p->nargs >= p->lim.max_args) {
		set_error(p, IMAP_PERR_LIMIT, "Too many arguments");
		return -1;
	}
	p->nargs++;
	return 0;
}

/* Appends a node (already counted) to the innermost open frame. */
static int frame_append(struct imap_parser *p, const struct imap_arg *arg)
{
	struct frame *f = &p->frames[p->depth];

	if (f->count == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 16;
		struct imap_arg *items = realloc(f->items, cap * sizeof(*items));
		if (items == NULL) {
			set_error(p, IMAP_PERR_NOMEM, "Out of memory");
			return -1;
		}
		f->items = items;
		f->cap = cap;
	}
	f->items[f->count++] = *arg;
	return 0;
}

static int add_arg(struct imap_parser *p, const struct imap_arg *arg)
{
	if (count_arg(p) < 0)
		return -1;
	return frame_append(p, arg);
}

/* Copies the innermost frame's items to the arena as an EOL-terminated
 * array. */
static struct imap_arg *frame_seal(struct imap_parser *p, size_t *count_r)
{
	struct frame *f = &p->frames[p->depth];
	struct imap_arg *arr = arena_alloc(p, (f->count + 1) * sizeof(*arr),
					   alignof(struct imap_arg));

	if (arr == NULL)
		return NULL;
	if (f->count > 0)
		memcpy(arr, f->items, f->count * sizeof(*arr));
	memset(&arr[f->count], 0, sizeof(*arr)); /* IMAP_ARG_EOL */
	*count_r = f->count;
	return arr;
}

static int push_frame(struct imap_parser *p, enum frame_kind kind,
		      const struct imap_arg *head)
{
	if (p->depth >= p->lim.max_depth) {
		set_error(p, IMAP_PERR_LIMIT, "Too deeply nested lists");
		return -1;
	}
	if (count_arg(p) < 0)
		return -1;
	p->depth++;
	struct frame *f = &p->frames[p->depth];
	f->kind = kind;
	f->count = 0;
	if (head != NULL)
		f->head = *head;
	else
		memset(&f->head, 0, sizeof(f->head));
	if (kind == FRAME_SECTION)
		p->sections_open++;
	return 0;
}

/* Closes the innermost list or section and appends it to its parent. */
static int pop_frame(struct imap_parser *p)
{
	struct frame *f = &p->frames[p->depth];
	struct imap_arg node = f->head;
	size_t count;
	struct imap_arg *arr = frame_seal(p, &count);

	if (arr == NULL)
		return -1;
	node.type = f->kind == FRAME_SECTION ? IMAP_ARG_SECTION : IMAP_ARG_LIST;
	node.list = arr;
	node.list_count = count;
	if (f->kind == FRAME_SECTION)
		p->sections_open--;
	p->depth--;
	return frame_append(p, &node);
}

/* ---- tokens ----------------------------------------------------------------- */

/* RFC 3501 section 9 (RFC 9051 is the same):
 *   command         = tag SP (command-any / command-auth / command-nonauth /
 *                     command-select) CRLF
 * The command name is an atom; it is upper-cased for the owner. Runs of
 * spaces are accepted wherever one SP is required (clients are sloppy). */
static int parse_tag_name(struct imap_parser *p, const unsigned char *s,
			  size_t n, size_t *pos_r)
{
	size_t j = 0;

	while (j < n && is_tag_char(s[j]))
		j++;
	if (j == 0) {
		if (n == 0)
			return seg_error(p, IMAP_PERR_SYNTAX, "Empty command line");
		if (s[0] == ' ')
			return seg_error(p, IMAP_PERR_SYNTAX, "Missing tag");
		return seg_error(p, IMAP_PERR_SYNTAX, "Invalid tag");
	}
	if (j < n && s[j] != ' ')
		return seg_error(p, IMAP_PERR_SYNTAX, "Invalid character in tag");
	size_t tlen = j;
	while (j < n && s[j] == ' ')
		j++;
	size_t k = j;
	while (k < n && is_atom_char(s[k]))
		k++;
	if (k == j || (k < n && s[k] != ' ')) {
		if (store_tag_name(p, s, tlen, NULL, 0) < 0)
			return SEG_ERROR;
		return seg_error(p, IMAP_PERR_SYNTAX, k == j && (k == n || s[k] == ' ')
				 ? "Missing command name" : "Invalid command name");
	}
	if (store_tag_name(p, s, tlen, s + j, k - j) < 0)
		return SEG_ERROR;
	p->in_command = true;
	p->need_sep = true;
	p->is_append = strcmp(p->name, "APPEND") == 0;
	p->fetch_mode = strcmp(p->name, "FETCH") == 0;
	p->uid_cmd = strcmp(p->name, "UID") == 0;
	*pos_r = k;
	return 0;
}

/* RFC 3501 section 9:
 *   quoted          = DQUOTE *QUOTED-CHAR DQUOTE
 *   QUOTED-CHAR     = <any TEXT-CHAR except quoted-specials> /
 *                     "\" quoted-specials
 *   TEXT-CHAR       = <any CHAR except CR and LF>
 * RFC 9051 section 9 (with UTF8=ACCEPT, RFC 6855):
 *   QUOTED-CHAR     = <any TEXT-CHAR except quoted-specials> /
 *                     "\" quoted-specials / UTF8-2 / UTF8-3 / UTF8-4
 * CHAR is %x01-7F, so NUL is never allowed. */
static int parse_quoted(struct imap_parser *p, const unsigned char *s, size_t n,
			size_t *pos)
{
	size_t i = *pos + 1, outlen = 0;

	/* First pass: validate, find the end and the unescaped length. */
	for (;;) {
		if (i >= n)
			return seg_error(p, IMAP_PERR_SYNTAX, "Unterminated quoted string");
		unsigned char c = s[i];
		if (c == '"')
			break;
		if (c == '\\') {
			if (i + 1 >= n)
				return seg_error(p, IMAP_PERR_SYNTAX, "Unterminated quoted string");
			if (s[i + 1] != '"' && s[i + 1] != '\\')
				return seg_error(p, IMAP_PERR_SYNTAX,
						 "Invalid escape in quoted string (only \\\\ and \\\")");
			i += 2;
			outlen++;
			continue;
		}
		if (c == '\r' || c == '\n')
			return seg_error(p, IMAP_PERR_SYNTAX, "CR or LF in quoted string");
		if (c == 0)
			return seg_error(p, IMAP_PERR_SYNTAX, "NUL byte in quoted string");
		if (c >= 0x80) {
			uint32_t cp;
			if (!p->utf8)
				return seg_error(p, IMAP_PERR_SYNTAX,
						 "8-bit characters in a quoted string need UTF8=ACCEPT; use a literal");
			size_t l = imap_utf8_char(s + i, n - i, &cp);
			if (l == 0)
				return seg_error(p, IMAP_PERR_SYNTAX, "Invalid UTF-8 in quoted string");
			i += l;
			outlen += l;
			continue;
		}
		i++;
		outlen++;
	}
	size_t end = i;
	char *out = arena_alloc(p, outlen + 1, 1);
	if (out == NULL)
		return SEG_ERROR;
	size_t o = 0;
	for (i = *pos + 1; i < end; i++) {
		if (s[i] == '\\')
			i++;
		out[o++] = (char)s[i];
	}
	out[o] = '\0';
	struct imap_arg a = { .type = IMAP_ARG_QUOTED, .str = out, .len = o };
	if (add_arg(p, &a) < 0)
		return SEG_ERROR;
	*pos = end + 1;
	return 0;
}

/* RFC 3501 section 9:
 *   literal         = "{" number "}" CRLF *CHAR8
 *                       ; Number represents the number of CHAR8s
 * RFC 7888 section 8 (LITERAL+ / LITERAL-):
 *   literal         = "{" number ["+"] "}" CRLF *CHAR8
 * RFC 3516 section 4.2 (BINARY):
 *   literal8        = "~{" number ["+"] "}" CRLF *OCTET
 * RFC 9051 section 9 makes the size a number64. The header must end the
 * segment: the CRLF after "}" is where the segment was cut. */
static int parse_literal_header(struct imap_parser *p, const unsigned char *s,
				size_t n, size_t i, bool literal8,
				struct literal_header *lh)
{
	size_t j = i + 1;
	uint64_t v = 0;
	bool ovf = false;

	while (j < n && s[j] >= '0' && s[j] <= '9') {
		unsigned d = (unsigned)(s[j] - '0');
		if (v > (NUMBER64_MAX - d) / 10)
			ovf = true;
		else
			v = v * 10 + d;
		j++;
	}
	if (j == i + 1)
		return seg_error(p, IMAP_PERR_SYNTAX, "Invalid literal size");
	bool nonsync = j < n && s[j] == '+';
	if (nonsync)
		j++;
	if (j >= n || s[j] != '}')
		return seg_error(p, IMAP_PERR_SYNTAX, "Invalid literal size");
	j++;
	if (j != n)
		return seg_error(p, IMAP_PERR_SYNTAX, "Literal size must be followed by CRLF");
	if (ovf) {
		set_error(p, IMAP_PERR_TOOBIG, "Literal size out of range");
		p->err.status = nonsync ? "BAD [TOOBIG]" : "NO [TOOBIG]";
		return SEG_ERROR;
	}
	lh->size = v;
	lh->nonsync = nonsync;
	lh->literal8 = literal8;
	return SEG_LITERAL;
}

/* RFC 3501 section 9 (FETCH):
 *   fetch-att       = ... / "BODY" section ["<" number "." nz-number ">"] /
 *                     "BODY.PEEK" section ["<" number "." nz-number ">"]
 *   section         = "[" [section-spec] "]"
 *   section-spec    = section-msgtext / (section-part ["." section-text])
 *   section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list /
 *                     "TEXT"
 *   section-part    = nz-number *("." nz-number)
 *   section-text    = section-msgtext / "MIME"
 *   header-list     = "(" header-fld-name *(SP header-fld-name) ")"
 *   header-fld-name = astring
 * RFC 3516 adds "BINARY" [".PEEK"] section-binary [partial] and
 * "BINARY.SIZE" section-binary; RFC 9051 section 9:
 *   partial         = "<" number64 "." nz-number64 ">"
 * In FETCH a word followed by "[" opens a section: what is inside is parsed
 * like arguments (atoms, strings, a header list) into the SECTION node, and
 * the section-spec grammar is checked by the session. This parses the
 * partial after "]". */
static int parse_partial(struct imap_parser *p, const unsigned char *s,
			 size_t n, size_t *pos, struct imap_arg *node)
{
	size_t i = *pos + 1;
	uint64_t v[2] = { 0, 0 };

	for (int k = 0; k < 2; k++) {
		size_t start = i;
		while (i < n && s[i] >= '0' && s[i] <= '9') {
			unsigned d = (unsigned)(s[i] - '0');
			if (v[k] > (NUMBER64_MAX - d) / 10)
				return seg_error(p, IMAP_PERR_SYNTAX, "Partial offset or size out of range");
			v[k] = v[k] * 10 + d;
			i++;
		}
		if (i == start || (k == 1 && s[start] == '0') || i >= n ||
		    s[i] != (k == 0 ? '.' : '>'))
			return seg_error(p, IMAP_PERR_SYNTAX, "Invalid partial, expected <offset.size>");
		i++;
	}
	node->has_partial = true;
	node->partial_offset = v[0];
	node->partial_size = v[1];
	*pos = i;
	return 0;
}

/* An atom, NIL, or in FETCH the name in front of a section. */
static int parse_word(struct imap_parser *p, const unsigned char *s, size_t n,
		      size_t *pos)
{
	size_t i = *pos, j = i;

	while (j < n && is_word_char(p, s[j]))
		j++;
	/* The caller made sure s[i] is a word char, so j > i. */
	if (j < n && s[j] == '[' && p->fetch_mode) {
		if (p->sections_open > 0)
			return seg_error(p, IMAP_PERR_SYNTAX, "Unexpected '['");
		struct imap_arg head = { .type = IMAP_ARG_SECTION };
		head.str = arena_strdup(p, s + i, j - i);
		if (head.str == NULL)
			return SEG_ERROR;
		head.len = j - i;
		if (push_frame(p, FRAME_SECTION, &head) < 0)
			return SEG_ERROR;
		*pos = j + 1;
		p->need_sep = false;
		return 0;
	}
	struct imap_arg a = { .type = IMAP_ARG_ATOM, .len = j - i };
	/*   nil             = "NIL"  (case-insensitive like every keyword) */
	if (ascii_ieq((const char *)s + i, j - i, "NIL"))
		a.type = IMAP_ARG_NIL;
	a.str = arena_strdup(p, s + i, j - i);
	if (a.str == NULL)
		return SEG_ERROR;
	/* "UID FETCH" parses sections like FETCH. */
	if (p->uid_cmd && p->depth == 0 && p->frames[0].count == 0 &&
	    !p->continued && ascii_ieq(a.str, a.len, "FETCH"))
		p->fetch_mode = true;
	if (add_arg(p, &a) < 0)
		return SEG_ERROR;
	*pos = j;
	p->need_sep = true;
	return 0;
}

/* Parses one line segment s[0..n) (CRLF removed) into the open frames.
 *
 * Arguments are separated by SP and nest in parentheses wherever the grammar
 * has a list, e.g. (RFC 3501 section 9):
 *   flag-list       = "(" [flag *(SP flag)] ")"
 *   search-key      = ... / "(" search-key *(SP search-key) ")"
 *   fetch           = "FETCH" SP sequence-set SP ("ALL" / "FULL" / "FAST" /
 *                     fetch-att / "(" fetch-att *(SP fetch-att) ")")
 * so the tree is built generically: "(" opens a list, ")" closes it, and
 * after every token comes SP, ")", "]" (closing a section) or the end. */
static int parse_segment(struct imap_parser *p, const unsigned char *s, size_t n,
			 struct literal_header *lh)
{
	size_t i = 0;

	if (!p->in_command && parse_tag_name(p, s, n, &i) < 0)
		return SEG_ERROR;
	while (i < n) {
		unsigned char c = s[i];
		struct frame *f = &p->frames[p->depth];

		if (c == ' ') {
			p->need_sep = false;
			i++;
			continue;
		}
		if (c == ')') {
			if (f->kind != FRAME_LIST)
				return seg_error(p, IMAP_PERR_SYNTAX, "Unexpected ')'");
			if (pop_frame(p) < 0)
				return SEG_ERROR;
			p->need_sep = true;
			i++;
			continue;
		}
		if (c == ']' && p->sections_open > 0) {
			if (f->kind != FRAME_SECTION)
				return seg_error(p, IMAP_PERR_SYNTAX, "Unexpected ']'");
			if (pop_frame(p) < 0)
				return SEG_ERROR;
			i++;
			if (i < n && s[i] == '<') {
				struct frame *parent = &p->frames[p->depth];
				if (parse_partial(p, s, n, &i,
						  &parent->items[parent->count - 1]) < 0)
					return SEG_ERROR;
			}
			p->need_sep = true;
			continue;
		}
		const char *bad = NULL;
		if (c != '(' && c != '"' && c != '{' && !is_word_char(p, c))
			bad = bad_start_char(p, c);
		if (bad != NULL)
			return seg_error(p, IMAP_PERR_SYNTAX, bad);
		if (p->need_sep)
			return seg_error(p, IMAP_PERR_SYNTAX, "Missing space between arguments");
		if (c == '(') {
			if (push_frame(p, FRAME_LIST, NULL) < 0)
				return SEG_ERROR;
			i++;
			continue;
		}
		if (c == '"') {
			if (parse_quoted(p, s, n, &i) < 0)
				return SEG_ERROR;
			p->need_sep = true;
			continue;
		}
		if (c == '{')
			return parse_literal_header(p, s, n, i, false, lh);
		if (c == '~' && i + 1 < n && s[i + 1] == '{')
			return parse_literal_header(p, s, n, i + 1, true, lh);
		if (parse_word(p, s, n, &i) < 0)
			return SEG_ERROR;
	}
	if (p->depth > 0)
		return seg_error(p, IMAP_PERR_SYNTAX,
				 p->frames[p->depth].kind == FRAME_LIST ? "Missing ')'" : "Missing ']'");
	return SEG_COMPLETE;
}

/* ---- the skipper ----------------------------------------------------------- */

static void skipper_reset(struct skipper *sk)
{
	memset(sk, 0, sizeof(*sk));
}

static void skipper_brace(struct skipper *sk)
{
	skipper_reset(sk);
	sk->st = SK_BRACE;
}

static enum sk_outcome skipper_judge(struct skipper *sk, bool closed,
				     uint64_t *lit_r)
{
	bool plus = closed && sk->plus;
	bool valid = closed && sk->ndig > 0 && !sk->bad && !sk->ovf;
	uint64_t val = sk->val;

	skipper_reset(sk);
	if (!plus)
		return SK_END;
	if (!valid)
		return SK_FATAL;
	*lit_r = val;
	return SK_LITERAL;
}

/* Runs over d[0..n) and stops after the LF ending the line. */
static enum sk_outcome skipper_run(struct skipper *sk, const unsigned char *d,
				   size_t n, size_t *used_r, uint64_t *lit_r)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = d[i];
		if (c == '\n') {
			*used_r = i + 1;
			return skipper_judge(sk, sk->st == SK_CLOSE || sk->st == SK_CLOSE_CR,
					     lit_r);
		}
		if (c == '{') {
			skipper_brace(sk);
			continue;
		}
		switch (sk->st) {
		case SK_TEXT:
			break;
		case SK_BRACE:
			if (c == '}') {
				sk->st = SK_CLOSE;
			} else if (c >= '0' && c <= '9' && !sk->plus) {
				unsigned dg = (unsigned)(c - '0');
				if (sk->val > (NUMBER64_MAX - dg) / 10)
					sk->ovf = true;
				else
					sk->val = sk->val * 10 + dg;
				sk->ndig++;
			} else if (c == '+' && !sk->plus) {
				sk->plus = true;
			} else {
				sk->bad = true;
			}
			break;
		case SK_CLOSE:
			if (c == '\r')
				sk->st = SK_CLOSE_CR;
			else
				skipper_reset(sk);
			break;
		case SK_CLOSE_CR:
			skipper_reset(sk);
			break;
		}
	}
	*used_r = n;
	return SK_MORE;
}

static uint64_t skip_bound(const struct imap_parser *p)
{
	return p->lim.max_append_literal > p->lim.max_literal
		? p->lim.max_append_literal : p->lim.max_literal;
}

/* Acts on a skipper outcome. Returns STEP_AGAIN, or -1 if fatal (error set;
 * an error already pending from the caller is replaced). */
static int skip_outcome(struct imap_parser *p, enum sk_outcome o, uint64_t lit)
{
	switch (o) {
	case SK_MORE:
		p->state = PS_SKIP_LINE;
		return STEP_AGAIN;
	case SK_END:
		return STEP_AGAIN;
	case SK_LITERAL:
		if (lit > skip_bound(p)) {
			set_error(p, IMAP_PERR_TOOBIG,
				  "Non-synchronizing literal too large, closing the connection");
			p->err.fatal = true;
			p->err.status = "BAD [TOOBIG]";
			return -1;
		}
		p->skip_left = lit;
		p->state = PS_SKIP_LITERAL;
		return STEP_AGAIN;
	case SK_FATAL:
		set_error(p, IMAP_PERR_SYNTAX,
			  "Unreadable non-synchronizing literal size, closing the connection");
		p->err.fatal = true;
		return -1;
	}
	return STEP_AGAIN;
}

/* ---- steps ------------------------------------------------------------------ */

/* A literal that will not be read: a synchronizing one is refused (the
 * client sends nothing), a non-synchronizing one is skipped. p->err is set;
 * returns the error event. */
static int refuse_literal(struct imap_parser *p, const struct literal_header *lh,
			  struct imap_event *ev)
{
	if (p->err.kind == IMAP_PERR_TOOBIG)
		p->err.status = lh->nonsync ? "BAD [TOOBIG]" : "NO [TOOBIG]";
	if (!lh->nonsync) {
		command_done(p);
	} else if (lh->size > skip_bound(p)) {
		set_error(p, IMAP_PERR_TOOBIG,
			  "Non-synchronizing literal too large, closing the connection");
		p->err.status = "BAD [TOOBIG]";
		p->err.fatal = true;
	} else {
		p->skip_left = lh->size;
		p->state = PS_SKIP_LITERAL;
	}
	return error_event(p, ev);
}

static void command_event(struct imap_parser *p, struct imap_event *ev,
			  const struct imap_arg *args, size_t count)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = IMAP_EV_COMMAND;
	ev->tag = p->tag;
	ev->name = p->name;
	ev->cmd.args = args;
	ev->cmd.count = count;
	ev->cmd.continued = p->continued;
}

static void continue_event(struct imap_parser *p, struct imap_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = IMAP_EV_LITERAL_CONTINUE;
	ev->tag = p->tag;
	ev->name = p->name;
	ev->cont.size = p->lit.size;
	ev->cont.literal8 = p->lit.literal8;
	ev->cont.streamed = p->lit.streamed;
}

/* The segment ended in a literal header: check it against the limits and
 * the literal mode, then buffer it, stream it or ask for continuation. */
static int start_literal(struct imap_parser *p, const struct literal_header *lh,
			 struct imap_event *ev)
{
	uint64_t limit = p->is_append ? p->lim.max_append_literal : p->lim.max_literal;

	if (lh->nonsync && p->lit_mode == IMAP_LITERAL_SYNC_ONLY) {
		set_error(p, IMAP_PERR_SYNTAX, "Non-synchronizing literals are not supported");
		return refuse_literal(p, lh, ev);
	}
	/* RFC 7888 section 4: with LITERAL- a non-synchronizing literal
	 * larger than 4096 bytes gets a tagged BAD [TOOBIG]. */
	if (lh->nonsync && p->lit_mode == IMAP_LITERAL_MINUS &&
	    lh->size > IMAP_LITERAL_MINUS_MAX) {
		set_error(p, IMAP_PERR_TOOBIG,
			  "Non-synchronizing literals are limited to 4096 bytes (LITERAL-)");
		return refuse_literal(p, lh, ev);
	}
	if (lh->size > limit) {
		set_error(p, IMAP_PERR_TOOBIG, "Literal too large");
		return refuse_literal(p, lh, ev);
	}
	bool streamed = p->stream_min != 0 && p->is_append && p->depth == 0 &&
			lh->size >= p->stream_min;
	if (count_arg(p) < 0)
		return refuse_literal(p, lh, ev);

	memset(&p->lit, 0, sizeof(p->lit));
	p->lit.size = lh->size;
	p->lit.nonsync = lh->nonsync;
	p->lit.literal8 = lh->literal8;
	p->lit.streamed = streamed;
	if (streamed) {
		struct imap_arg a = {
			.type = IMAP_ARG_LITERAL, .literal8 = lh->literal8,
			.nonsync = lh->nonsync, .streamed = true,
			.literal_size = lh->size,
		};
		size_t count;
		if (frame_append(p, &a) < 0)
			return error_event(p, ev);
		struct imap_arg *args = frame_seal(p, &count);
		if (args == NULL)
			return refuse_literal(p, lh, ev);
		command_event(p, ev, args, count);
		ev->cmd.literal_follows = true;
		p->state = PS_HEAD_SENT;
		return 1;
	}
	/* Buffered: it must fit in what is left of max_command. */
	if (lh->size >= p->arena.max - p->arena.total) {
		set_error(p, IMAP_PERR_TOOBIG, "Command too large");
		return refuse_literal(p, lh, ev);
	}
	p->lit.buf = arena_alloc(p, (size_t)lh->size + 1, 1);
	if (p->lit.buf == NULL)
		return error_event(p, ev); /* out of memory: fatal */
	if (!lh->nonsync) {
		continue_event(p, ev);
		p->state = PS_CONT_SENT;
		return 1;
	}
	p->state = PS_LITERAL;
	return STEP_AGAIN;
}

/* A segment could not be parsed: drop the rest of the command. The whole
 * segment goes through the skipper, which decides what follows it. */
static int segment_failed(struct imap_parser *p, const unsigned char *d,
			  size_t seg, struct imap_event *ev)
{
	size_t used;
	uint64_t lit = 0;
	struct imap_parse_error saved = p->err;

	skipper_reset(&p->sk);
	enum sk_outcome o = skipper_run(&p->sk, d, seg, &used, &lit);
	consume(p, seg);
	if (p->err.fatal)
		return error_event(p, ev);
	if (skip_outcome(p, o, lit) < 0)
		return error_event(p, ev);
	p->err = saved;
	if (o == SK_END)
		command_done(p);
	return error_event(p, ev);
}

static int step_line(struct imap_parser *p, struct imap_event *ev)
{
	size_t avail = pn_buf_len(&p->in);
	size_t lim = avail < p->lim.max_line ? avail : p->lim.max_line;
	const unsigned char *d = in_bytes(p);
	const unsigned char *lf = NULL;

	if (p->scan < lim)
		lf = memchr(d + p->scan, '\n', lim - p->scan);
	if (lf == NULL) {
		if (avail >= p->lim.max_line) {
			salvage_tag(p, d, avail);
			set_error(p, IMAP_PERR_LIMIT, "Command line too long");
			skipper_reset(&p->sk);
			p->state = PS_SKIP_LINE;
			p->scan = 0;
			return error_event(p, ev);
		}
		p->scan = lim;
		return 0;
	}
	size_t seg = (size_t)(lf - d) + 1;
	size_t n = seg - 1;
	struct literal_header lh;
	int r;

	if (n > 0 && d[n - 1] == '\r') {
		r = parse_segment(p, d, n - 1, &lh);
	} else {
		salvage_tag(p, d, n);
		set_error(p, IMAP_PERR_SYNTAX, "Line must end with CRLF");
		r = SEG_ERROR;
	}
	if (r == SEG_ERROR)
		return segment_failed(p, d, seg, ev);
	consume(p, seg);
	if (r == SEG_LITERAL) {
		p->need_sep = true; /* for what follows the literal data */
		return start_literal(p, &lh, ev);
	}
	size_t count;
	struct imap_arg *args = frame_seal(p, &count);
	if (args == NULL) {
		command_done(p);
		return error_event(p, ev);
	}
	command_event(p, ev, args, count);
	command_done(p);
	return 1;
}

static int literal_has_nul(const struct imap_parser *p, const unsigned char *d,
			   size_t n)
{
	/* RFC 3501: literal is *CHAR8 (%x01-ff); only literal8 may carry NUL. */
	return !p->lit.literal8 && memchr(d, 0, n) != NULL;
}

static int literal_nul_error(struct imap_parser *p, struct imap_event *ev)
{
	set_error(p, IMAP_PERR_SYNTAX, "NUL byte in literal (only literal8 may hold one)");
	p->skip_left = p->lit.size - p->lit.done;
	p->state = PS_SKIP_LITERAL;
	return error_event(p, ev);
}

static int step_literal(struct imap_parser *p, struct imap_event *ev)
{
	size_t avail = pn_buf_len(&p->in);
	uint64_t left = p->lit.size - p->lit.done;
	size_t n = left < avail ? (size_t)left : avail;

	if (n > 0) {
		const unsigned char *d = in_bytes(p);
		if (literal_has_nul(p, d, n))
			return literal_nul_error(p, ev);
		memcpy(p->lit.buf + p->lit.done, d, n);
		p->lit.done += n;
		consume(p, n);
	}
	if (p->lit.done < p->lit.size)
		return 0;
	p->lit.buf[p->lit.size] = '\0';
	struct imap_arg a = {
		.type = IMAP_ARG_LITERAL, .literal8 = p->lit.literal8,
		.nonsync = p->lit.nonsync, .str = (const char *)p->lit.buf,
		.len = (size_t)p->lit.size, .literal_size = p->lit.size,
	};
	/* Counted in start_literal(). */
	if (frame_append(p, &a) < 0)
		return error_event(p, ev);
	p->state = PS_LINE;
	return STEP_AGAIN;
}

static int step_stream(struct imap_parser *p, struct imap_event *ev)
{
	size_t avail = pn_buf_len(&p->in);
	uint64_t left = p->lit.size - p->lit.done;
	size_t n = left < avail ? (size_t)left : avail;

	if (n == 0)
		return 0;
	const unsigned char *d = in_bytes(p);
	if (literal_has_nul(p, d, n))
		return literal_nul_error(p, ev);
	memset(ev, 0, sizeof(*ev));
	ev->type = IMAP_EV_LITERAL_DATA;
	ev->tag = p->tag;
	ev->name = p->name;
	ev->data.data = d;
	ev->data.len = n;
	ev->data.offset = p->lit.done;
	ev->data.size = p->lit.size;
	p->lit.done += n;
	ev->data.last = p->lit.done == p->lit.size;
	/* consume() leaves the bytes in place until the next feed. */
	consume(p, n);
	if (ev->data.last) {
		p->continued = true;
		p->need_sep = true;
		p->state = PS_LINE;
	}
	return 1;
}

static int step_skip_line(struct imap_parser *p, struct imap_event *ev)
{
	size_t avail = pn_buf_len(&p->in), used;
	uint64_t lit = 0;

	if (avail == 0)
		return 0;
	enum sk_outcome o = skipper_run(&p->sk, in_bytes(p), avail, &used, &lit);
	consume(p, used);
	if (o == SK_MORE)
		return 0;
	if (skip_outcome(p, o, lit) < 0)
		return error_event(p, ev);
	if (o == SK_END) {
		command_reset(p);
		p->state = PS_LINE;
	}
	return STEP_AGAIN;
}

static int step_skip_literal(struct imap_parser *p)
{
	size_t avail = pn_buf_len(&p->in);
	size_t n = p->skip_left < avail ? (size_t)p->skip_left : avail;

	consume(p, n);
	p->skip_left -= n;
	if (p->skip_left > 0)
		return 0;
	skipper_reset(&p->sk);
	p->state = PS_SKIP_LINE;
	return STEP_AGAIN;
}

static int step_raw_line(struct imap_parser *p, struct imap_event *ev)
{
	size_t avail = pn_buf_len(&p->in);
	size_t lim = avail < p->lim.max_line ? avail : p->lim.max_line;
	unsigned char *d = in_bytes(p);
	unsigned char *lf = NULL;

	if (p->scan < lim)
		lf = memchr(d + p->scan, '\n', lim - p->scan);
	if (lf == NULL) {
		if (avail >= p->lim.max_line) {
			set_error(p, IMAP_PERR_LIMIT, "Line too long");
			p->state = PS_RAW_SKIP;
			p->scan = 0;
			return error_event(p, ev);
		}
		p->scan = lim;
		return 0;
	}
	size_t seg = (size_t)(lf - d) + 1;
	size_t n = seg - 1;
	if (n == 0 || d[n - 1] != '\r') {
		consume(p, seg);
		set_error(p, IMAP_PERR_SYNTAX, "Line must end with CRLF");
		command_done(p);
		return error_event(p, ev);
	}
	/* The CR becomes the terminating NUL; the bytes stay valid until the
	 * next feed. */
	d[n - 1] = '\0';
	memset(ev, 0, sizeof(*ev));
	ev->type = IMAP_EV_LINE;
	ev->line.data = (const char *)d;
	ev->line.len = n - 1;
	consume(p, seg);
	command_done(p);
	return 1;
}

static int step_raw_skip(struct imap_parser *p)
{
	size_t avail = pn_buf_len(&p->in);
	const unsigned char *d = in_bytes(p);
	const unsigned char *lf = avail ? memchr(d, '\n', avail) : NULL;

	if (lf == NULL) {
		consume(p, avail);
		return 0;
	}
	consume(p, (size_t)(lf - d) + 1);
	command_reset(p);
	p->state = PS_LINE;
	return STEP_AGAIN;
}

/* ---- public API ----------------------------------------------------------- */

void imap_parser_limits_default(struct imap_parser_limits *limits_r)
{
	limits_r->max_line = IMAP_PARSER_DEFAULT_MAX_LINE;
	limits_r->max_literal = IMAP_PARSER_DEFAULT_MAX_LITERAL;
	limits_r->max_append_literal = IMAP_PARSER_DEFAULT_MAX_APPEND_LITERAL;
	limits_r->max_depth = IMAP_PARSER_DEFAULT_MAX_DEPTH;
	limits_r->max_args = IMAP_PARSER_DEFAULT_MAX_ARGS;
	limits_r->max_command = IMAP_PARSER_DEFAULT_MAX_COMMAND;
}

struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits)
{
	struct imap_parser_limits def;
	struct imap_parser *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	imap_parser_limits_default(&def);
	p->lim = def;
	if (limits != NULL) {
		if (limits->max_line != 0)
			p->lim.max_line = limits->max_line < 4 ? 4 : limits->max_line;
		if (limits->max_literal != 0)
			p->lim.max_literal = limits->max_literal;
		if (limits->max_append_literal != 0)
			p->lim.max_append_literal = limits->max_append_literal;
		if (limits->max_depth != 0)
			p->lim.max_depth = limits->max_depth < IMAP_PARSER_MAX_DEPTH_CAP
				? limits->max_depth : IMAP_PARSER_MAX_DEPTH_CAP;
		if (limits->max_args != 0)
			p->lim.max_args = limits->max_args;
		if (limits->max_command != 0)
			p->lim.max_command = limits->max_command;
	}
	p->frames = calloc((size_t)p->lim.max_depth + 1, sizeof(*p->frames));
	if (p->frames == NULL) {
		free(p);
		return NULL;
	}
	pn_buf_init(&p->in, p->lim.max_line + IMAP_PARSER_FEED_ROOM);
	p->arena.max = p->lim.max_command;
	p->state = PS_LINE;
	return p;
}

void imap_parser_free(struct imap_parser **pp)
{
	struct imap_parser *p = *pp;

	if (p == NULL)
		return;
	*pp = NULL;
	for (unsigned i = 0; i <= p->lim.max_depth; i++)
		free(p->frames[i].items);
	free(p->frames);
	arena_free(&p->arena);
	pn_buf_free(&p->in);
	free(p->hdr);
	free(p);
}

int imap_parser_feed(struct imap_parser *p, const void *data, size_t len)
{
	if (p->state == PS_FATAL)
		return -1;
	return pn_buf_append(&p->in, data, len);
}

size_t imap_parser_room(const struct imap_parser *p)
{
	if (p->state == PS_FATAL)
		return 0;
	return pn_buf_room(&p->in);
}

size_t imap_parser_buffered(const struct imap_parser *p)
{
	return pn_buf_len(&p->in);
}

int imap_parser_next(struct imap_parser *p, struct imap_event *ev_r)
{
	if (p->state == PS_FATAL)
		return error_event(p, ev_r);
	if (p->reset_pending) {
		p->reset_pending = false;
		command_reset(p);
	}
	for (;;) {
		int r;
		switch (p->state) {
		case PS_LINE:
			r = step_line(p, ev_r);
			break;
		case PS_HEAD_SENT:
			/* The owner has the head; its memory can go. */
			part_reset(p);
			if (!p->lit.nonsync) {
				continue_event(p, ev_r);
				p->state = PS_CONT_SENT;
				return 1;
			}
			p->state = PS_STREAM;
			r = STEP_AGAIN;
			break;
		case PS_CONT_SENT:
			p->state = p->lit.streamed ? PS_STREAM : PS_LITERAL;
			r = STEP_AGAIN;
			break;
		case PS_LITERAL:
			r = step_literal(p, ev_r);
			break;
		case PS_STREAM:
			r = step_stream(p, ev_r);
			break;
		case PS_SKIP_LINE:
			r = step_skip_line(p, ev_r);
			break;
		case PS_SKIP_LITERAL:
			r = step_skip_literal(p);
			break;
		case PS_RAW_LINE:
			r = step_raw_line(p, ev_r);
			break;
		case PS_RAW_SKIP:
			r = step_raw_skip(p);
			break;
		case PS_FATAL:
		default:
			return error_event(p, ev_r);
		}
		if (r != STEP_AGAIN)
			return r;
	}
}

void imap_parser_abort_command(struct imap_parser *p)
{
	switch (p->state) {
	case PS_HEAD_SENT:
		if (!p->lit.nonsync) {
			/* No "+" was sent: the client sends nothing more. */
			command_done(p);
			break;
		}
		p->skip_left = p->lit.size;
		p->state = PS_SKIP_LITERAL;
		break;
	case PS_CONT_SENT:
		command_done(p);
		break;
	case PS_LITERAL:
	case PS_STREAM:
		p->skip_left = p->lit.size - p->lit.done;
		p->state = PS_SKIP_LITERAL;
		break;
	case PS_LINE:
		if (p->in_command && !p->reset_pending) {
			/* Between a literal and the rest of its command. */
			skipper_reset(&p->sk);
			p->state = PS_SKIP_LINE;
		}
		break;
	default:
		break;
	}
}

int imap_parser_read_line(struct imap_parser *p)
{
	if (p->state != PS_LINE || (p->in_command && !p->reset_pending))
		return -1;
	p->state = PS_RAW_LINE;
	return 0;
}

void imap_parser_discard_input(struct imap_parser *p)
{
	pn_buf_reset(&p->in);
	p->scan = 0;
	if (p->state != PS_FATAL)
		command_done(p);
}

void imap_parser_set_utf8_accept(struct imap_parser *p, bool on)
{
	p->utf8 = on;
}

void imap_parser_set_literal_mode(struct imap_parser *p, enum imap_literal_mode mode)
{
	p->lit_mode = mode;
}

void imap_parser_set_append_stream(struct imap_parser *p, uint64_t min_size)
{
	p->stream_min = min_size;
}

/* RFC 2177 section 3:
 *   idle            = "IDLE" CRLF "DONE"
 */
bool imap_line_is_done(const char *line, size_t len)
{
	return ascii_ieq(line, len, "DONE");
}

/* ---- argument helpers --------------------------------------------------- */

bool imap_arg_get_atom(const struct imap_arg *arg, const char **str_r)
{
	if (arg->type != IMAP_ARG_ATOM && arg->type != IMAP_ARG_NIL)
		return false;
	for (size_t i = 0; i < arg->len; i++) {
		if (!is_atom_char((unsigned char)arg->str[i]))
			return false;
	}
	*str_r = arg->str;
	return true;
}

/* RFC 3501 section 9:
 *   astring         = 1*ASTRING-CHAR / string
 *   string          = quoted / literal
 *   nstring         = string / nil
 */
bool imap_arg_get_astring(const struct imap_arg *arg, const char **str_r,
			  size_t *len_r)
{
	if (arg->type == IMAP_ARG_ATOM || arg->type == IMAP_ARG_NIL) {
		for (size_t i = 0; i < arg->len; i++) {
			unsigned char c = (unsigned char)arg->str[i];
			if (c != ']' && !is_atom_char(c))
				return false;
		}
		*str_r = arg->str;
		*len_r = arg->len;
		return true;
	}
	return imap_arg_get_string(arg, str_r, len_r);
}

bool imap_arg_get_string(const struct imap_arg *arg, const char **str_r,
			 size_t *len_r)
{
	if (arg->type != IMAP_ARG_QUOTED &&
	    (arg->type != IMAP_ARG_LITERAL || arg->streamed))
		return false;
	*str_r = arg->str;
	*len_r = arg->len;
	return true;
}

bool imap_arg_get_nstring(const struct imap_arg *arg, const char **str_r,
			  size_t *len_r)
{
	if (arg->type == IMAP_ARG_NIL) {
		*str_r = NULL;
		*len_r = 0;
		return true;
	}
	return imap_arg_get_string(arg, str_r, len_r);
}

bool imap_arg_get_list(const struct imap_arg *arg,
		       const struct imap_arg **list_r, size_t *count_r)
{
	if (arg->type != IMAP_ARG_LIST)
		return false;
	*list_r = arg->list;
	*count_r = arg->list_count;
	return true;
}

bool imap_arg_atom_equals(const struct imap_arg *arg, const char *word)
{
	return (arg->type == IMAP_ARG_ATOM || arg->type == IMAP_ARG_NIL) &&
	       ascii_ieq(arg->str, arg->len, word);
}
